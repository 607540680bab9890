#!/usr/bin/env python3
"""Registry queries over a large registry: median ms per `devcert registry` call.

    python3 bench/registry.py            # 1,000,000 devices (+100,000 of a 2nd CA)
    python3 bench/registry.py --smoke    # 2,000 devices: proves the script works (CI)

devcert creates the database (`registry ca add`, so the schema is the real
one); the device rows are then bulk-inserted with Python's sqlite3 (one
transaction), which is far quicker than issuing a million certificates.
Each figure is a whole process (start-up included), median of several runs.
"""
import argparse, os, shutil, sqlite3, statistics, subprocess, sys, tempfile, time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def devcert_path():
    if os.environ.get("DEVCERT"):
        return os.environ["DEVCERT"]
    target = os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target"))
    return os.path.join(target, "release", "devcert")


DEVCERT = devcert_path()


def run(args, cwd, out=subprocess.DEVNULL):
    return subprocess.run([DEVCERT] + args, cwd=cwd, check=True, stdout=out, stderr=subprocess.PIPE)


def timed(args, cwd, reps, out=subprocess.DEVNULL):
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        run(args, cwd, out)
        times.append(time.perf_counter() - t)
    return statistics.median(times) * 1000


def serial():
    # 20 octets, positive, no leading zero: what devcert issues.
    b = bytearray(os.urandom(20))
    b[0] = (b[0] & 0x7F) | 0x40
    return b.hex().upper()


def fill(db, ca_id, n, held, prefix):
    """n device rows of CA `ca_id`, the first `held` of them inactive."""
    conn = sqlite3.connect(db)
    conn.execute("PRAGMA synchronous = OFF")
    now = int(time.time())
    serials = []

    def rows():
        for i in range(n):
            s = serial()
            if i % max(1, n // 1000) == 0:
                serials.append(s)
            inactive = i < held
            yield (s, ca_id, f"CN={prefix}{i:07d}", "inactive" if inactive else "active",
                   now, now + 365 * 86400, now, os.urandom(32), now if inactive else None)

    with conn:
        conn.executemany(
            "INSERT INTO devices (serial, ca_id, subject, status, not_before, not_after, registered_at, fingerprint, deactivated_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", rows())
    conn.close()
    return serials


def ca(work, name):
    run(["ca", "--subject", f"/CN=Bench {name}", "--key-out", f"{name}.key", "-o", f"{name}.crt"], work)
    run(["registry", "--db", "reg.db", "ca", "add", f"{name}.crt"], work)
    out = subprocess.run(["openssl", "x509", "-in", f"{name}.crt", "-noout", "-serial"], cwd=work,
                         check=True, capture_output=True, text=True).stdout
    return out.strip().split("=", 1)[1]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--smoke", action="store_true", help="small registry: prove the script runs")
    ap.add_argument("--devices", type=int, help="device rows of the main CA")
    args = ap.parse_args()
    if not os.path.exists(DEVCERT):
        sys.exit(f"build first: cargo build --release (looked for {DEVCERT})")
    n = args.devices or (2_000 if args.smoke else 1_000_000)
    held = min(10_000, n // 10)
    n2 = n // 10
    reps = 3 if args.smoke else 15
    tmpfs = "/dev/shm" if os.path.isdir("/dev/shm") else None
    work = tempfile.mkdtemp(prefix="devcert-registry-", dir=tmpfs)
    try:
        db = os.path.join(work, "reg.db")
        ca1, ca2 = ca(work, "CA"), ca(work, "CA2")
        t = time.perf_counter()
        picks = fill(db, 1, n, held, "dev-")
        fill(db, 2, n2, 0, "other-")
        fill_s = time.perf_counter() - t
        size = os.path.getsize(db) + (os.path.getsize(db + "-wal") if os.path.exists(db + "-wal") else 0)
        print(f"\n[registry] {n:,} devices of one CA ({held:,} inactive) + {n2:,} of another,"
              f" filled in {fill_s:.1f} s, {size / 2**20:.0f} MiB, work dir {work}")
        x = picks[len(picks) // 2]
        # Sanity: the queries find what they should.
        found = run(["registry", "--db", "reg.db", "device", "list", "--serial", x.lower(), "--json"], work,
                    subprocess.PIPE).stdout
        assert x.encode() in found, "device list --serial did not find the device"
        base = timed(["--version"], work, reps)
        print(f"  process start-up (devcert --version)            : {base:8.2f} ms")
        queries = [
            ("device list --serial X", ["device", "list", "--serial", x]),
            ("device show X", ["device", "show", x]),
            ("ca list", ["ca", "list"]),
            ("device list --ca-serial X --limit 100", ["device", "list", "--ca-serial", ca1, "--limit", "100"]),
            ("device list --status inactive --limit 100", ["device", "list", "--status", "inactive", "--limit", "100"]),
        ]
        for label, q in queries:
            ms = timed(["registry", "--db", "reg.db"] + q, work, reps)
            print(f"  {label:<48}: {ms:8.2f} ms")
        crl = ["registry", "--db", "reg.db", "crl", "--ca", "CA.crt", "--ca-key", "CA.key", "-o", "ca.crl", "--force"]
        ms = timed(crl, work, max(3, reps // 3))
        print(f"  {f'registry crl ({held:,} held devices)':<48}: {ms:8.2f} ms")
        text = subprocess.run(["openssl", "crl", "-in", "ca.crl", "-noout", "-text"], cwd=work,
                              check=True, capture_output=True, text=True).stdout
        assert text.count("Certificate Hold") == held, "CRL does not hold every inactive device"
        with open(os.devnull, "wb") as null:
            ms = timed(["registry", "--db", "reg.db", "device", "list", "--ca-serial", ca2, "--json"], work, 3, null)
            print(f"  {f'device list --json ({n2:,} devices)':<48}: {ms:8.2f} ms")
            ms = timed(["registry", "--db", "reg.db", "device", "list", "--json"], work, 1 if not args.smoke else 3, null)
            print(f"  {f'device list --json (all {n + n2:,} devices)':<48}: {ms:8.2f} ms")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
