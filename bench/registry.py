#!/usr/bin/env python3
"""Registry queries over a large registry: median ms per `devcert registry` call.

    python3 bench/registry.py            # 1,000,000 devices (+100,000 of a 2nd CA)
    python3 bench/registry.py --smoke    # 2,000 devices: proves the script works (CI)
    python3 bench/registry.py --postgres [--smoke]   # the same on PostgreSQL, plus
                                         # batch --registry URL vs batch without

With --postgres, a throw-away PostgreSQL server is started (initdb in a temp
folder, as the `postgres` user when run as root, 127.0.0.1 on a free port)
and stopped afterwards; devices are loaded through `registry import` (timed).

devcert creates the database (`registry ca add`, so the schema is the real
one); the device rows are then bulk-inserted with Python's sqlite3 (one
transaction), which is far quicker than issuing a million certificates.
Each figure is a whole process (start-up included), median of several runs.
"""
import argparse, contextlib, glob, json, os, shutil, signal, socket, sqlite3, statistics, subprocess, sys, tempfile, time

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


def ca(work, name, db="reg.db"):
    run(["ca", "--subject", f"/CN=Bench {name}", "--key-out", f"{name}.key", "-o", f"{name}.crt"], work)
    run(["registry", "--db", db, "ca", "add", f"{name}.crt"], work)
    out = subprocess.run(["openssl", "x509", "-in", f"{name}.crt", "-noout", "-serial"], cwd=work,
                         check=True, capture_output=True, text=True).stdout
    return out.strip().split("=", 1)[1]


PG_PASSWORD = "bench-pw"


@contextlib.contextmanager
def postgres_server():
    """A PostgreSQL server in a temp folder; yields (url, psql command)."""
    bins = sorted(glob.glob("/usr/lib/postgresql/*/bin"))
    bindir = bins[-1] if bins else os.path.dirname(shutil.which("initdb") or sys.exit("PostgreSQL is not installed"))
    root = tempfile.mkdtemp(prefix="devcert-bench-pg-")
    as_pg = {}
    if os.geteuid() == 0:
        import pwd
        pw = pwd.getpwnam("postgres")
        as_pg = {"user": pw.pw_uid, "group": pw.pw_gid}
        os.chown(root, pw.pw_uid, pw.pw_gid)
    pwfile = os.path.join(root, "pw")
    with open(pwfile, "w") as f:
        f.write(PG_PASSWORD)
    if as_pg:
        os.chown(pwfile, as_pg["user"], as_pg["group"])
    data, sock = os.path.join(root, "data"), os.path.join(root, "sock")
    subprocess.run([f"{bindir}/initdb", "-D", data, "-U", "devcert", "--pwfile", pwfile, "--auth-host=scram-sha-256",
                    "--auth-local=trust", "-E", "UTF8", "--no-instructions"], check=True, capture_output=True,
                   env={**os.environ, "LC_ALL": "C"}, cwd=root, **as_pg)
    os.mkdir(sock)
    if as_pg:
        os.chown(sock, as_pg["user"], as_pg["group"])
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    log = open(os.path.join(root, "log"), "w")
    # Defaults but for the socket and port: what a fresh install runs with.
    server = subprocess.Popen([f"{bindir}/postgres", "-D", data, "-k", sock, "-p", str(port), "-h", "127.0.0.1"],
                              stdout=log, stderr=log, cwd=root, **as_pg)
    psql = [f"{bindir}/psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", sock, "-p", str(port), "-U", "devcert"]
    try:
        for _ in range(200):
            if subprocess.run(psql + ["-d", "postgres", "-c", "SELECT 1"], capture_output=True).returncode == 0:
                break
            time.sleep(0.1)
        subprocess.run(psql + ["-d", "postgres", "-c", "CREATE DATABASE registry"], check=True)
        yield f"postgres://devcert:{PG_PASSWORD}@127.0.0.1:{port}/registry", psql + ["-d", "registry"]
    finally:
        server.send_signal(signal.SIGINT)
        server.wait()
        shutil.rmtree(root, ignore_errors=True)


@contextlib.contextmanager
def pgbouncer(url, psql):
    """PgBouncer (if installed) in front of the server at `url`, session
    pooling, logins checked against the server's own SCRAM verifier (no
    plain password stored); yields its URL, or None."""
    exe = shutil.which("pgbouncer") or (os.path.exists("/usr/sbin/pgbouncer") and "/usr/sbin/pgbouncer")
    if not exe:
        yield None
        return
    verifier = subprocess.run(psql + ["-At", "-c", "SELECT rolpassword FROM pg_authid WHERE rolname = 'devcert'"],
                              capture_output=True, text=True, check=True).stdout.strip()
    server_port = url.rsplit(":", 1)[1].split("/")[0]
    root = tempfile.mkdtemp(prefix="devcert-bench-pgbouncer-")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with open(os.path.join(root, "users.txt"), "w") as f:
        f.write(f'"devcert" "{verifier}"\n')
    with open(os.path.join(root, "pgbouncer.ini"), "w") as f:
        f.write(f"[databases]\nregistry = host=127.0.0.1 port={server_port} dbname=registry\n"
                f"[pgbouncer]\nlisten_addr = 127.0.0.1\nlisten_port = {port}\nunix_socket_dir =\n"
                f"auth_type = scram-sha-256\nauth_file = {root}/users.txt\npool_mode = session\n"
                f"logfile = {root}/log\n")
    as_pg = {}
    if os.geteuid() == 0:
        # PgBouncer refuses to run as root.
        import pwd
        pw = pwd.getpwnam("postgres")
        as_pg = {"user": pw.pw_uid, "group": pw.pw_gid}
        for f in ["", "users.txt", "pgbouncer.ini"]:
            os.chown(os.path.join(root, f), pw.pw_uid, pw.pw_gid)
    proc = subprocess.Popen([exe, os.path.join(root, "pgbouncer.ini")], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, **as_pg)
    try:
        for _ in range(100):
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.05)
        yield f"postgres://devcert:{PG_PASSWORD}@127.0.0.1:{port}/registry"
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait()
        shutil.rmtree(root, ignore_errors=True)


def fill_pg(work, url, ca_serial, n, held, prefix):
    """As fill(), through `devcert registry import --merge` of a JSON Lines
    file (the real path: multi-row inserts, the schema's triggers on)."""
    export = run(["registry", "--db", url, "export"], work, subprocess.PIPE).stdout.decode().splitlines()
    head = [l for l in export if '"type":"header"' in l or '"type":"ca"' in l]
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    until = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 365 * 86400))
    serials = []
    path = os.path.join(work, f"{prefix}import.jsonl")
    with open(path, "w") as f:
        f.write("\n".join(head) + "\n")
        for i in range(n):
            s = serial()
            if i % max(1, n // 1000) == 0:
                serials.append(s)
            inactive = i < held
            f.write(json.dumps({"type": "device", "serial": s, "ca_serial": ca_serial, "subject": f"CN={prefix}{i:07d}",
                                "status": "inactive" if inactive else "active", "not_before": stamp,
                                "not_after": until, "registered_at": stamp,
                                "deactivated_at": stamp if inactive else None, "fingerprint": os.urandom(32).hex(),
                                "first_connected_at": None, "last_connected_at": None}) + "\n")
    t = time.perf_counter()
    run(["registry", "--db", url, "import", "--merge", path], work)
    took = time.perf_counter() - t
    os.remove(path)
    return serials, took


def batch_rate(work, count, extra):
    """Devices per second of `batch --count N` (a fresh --out-dir on disk)."""
    out = os.path.join(work, f"fleet-{len(os.listdir(work))}")
    t = time.perf_counter()
    run(["batch", "--ca", "CA.crt", "--ca-key", "CA.key", "--count", str(count), "--cn-prefix", "b",
         "--out-dir", out] + extra, work)
    return count / (time.perf_counter() - t)


def query_figures(db, work, picks, ca1, ca2, held, n2, reps):
    """The per-query figures, whole processes, on registry `db`."""
    x = picks[len(picks) // 2]
    # Sanity: the queries find what they should.
    found = run(["registry", "--db", db, "device", "list", "--serial", x.lower(), "--json"], work,
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
        ms = timed(["registry", "--db", db] + q, work, reps)
        print(f"  {label:<48}: {ms:8.2f} ms")
    crl = ["registry", "--db", db, "crl", "--ca", "CA.crt", "--ca-key", "CA.key", "-o", "ca.crl", "--force"]
    ms = timed(crl, work, max(3, reps // 3))
    print(f"  {f'registry crl ({held:,} held devices)':<48}: {ms:8.2f} ms")
    text = subprocess.run(["openssl", "crl", "-in", "ca.crl", "-noout", "-text"], cwd=work,
                          check=True, capture_output=True, text=True).stdout
    assert text.count("Certificate Hold") == held, "CRL does not hold every inactive device"
    with open(os.devnull, "wb") as null:
        ms = timed(["registry", "--db", db, "device", "list", "--ca-serial", ca2, "--json"], work, 3, null)
        print(f"  {f'device list --json ({n2:,} devices)':<48}: {ms:8.2f} ms")


def pg_main(args):
    n = args.devices or (2_000 if args.smoke else 1_000_000)
    held = min(10_000, n // 10)
    n2 = n // 10
    reps = 3 if args.smoke else 15
    # On the disk, as users run it (PITFALLS.md: tmpfs hides fsync costs).
    work = tempfile.mkdtemp(prefix="devcert-registry-pg-", dir=os.path.join(ROOT, "target"))
    try:
        with postgres_server() as (url, psql):
            ca1 = ca(work, "CA", url)
            ca2 = ca(work, "CA2", url)
            picks, import_s = fill_pg(work, url, ca1, n, held, "dev-")
            _, import2_s = fill_pg(work, url, ca2, n2, 0, "other-")
            subprocess.run(psql + ["-c", "VACUUM ANALYZE"], check=True)
            size = subprocess.run(psql + ["-At", "-c", "SELECT pg_size_pretty(pg_database_size('registry'))"],
                                  capture_output=True, text=True, check=True).stdout.strip()
            fs = subprocess.run(["df", "-T", work], capture_output=True, text=True).stdout.splitlines()[-1].split()[1]
            print(f"\n[registry, PostgreSQL] {n:,} devices of one CA ({held:,} inactive) + {n2:,} of another,"
                  f" {size}; work dir on {fs}")
            print(f"  registry import --merge ({n:,} devices, one transaction): {import_s:8.1f} s"
                  f" ({n / import_s:,.0f} devices/s); {n2:,} more: {import2_s:.1f} s")
            # The floor: libpq's own client, one trivial query over the same
            # TCP + SCRAM login (a fresh server process per connection).
            floor = []
            for _ in range(reps):
                t = time.perf_counter()
                subprocess.run([psql[0], "-X", "-qAt", "-c", "SELECT 1", url + "?gssencmode=disable"],
                               check=True, stdout=subprocess.DEVNULL)
                floor.append(time.perf_counter() - t)
            label = "psql -c 'SELECT 1' (libpq, same URL: the floor)"
            print(f"  {label:<48}: {statistics.median(floor) * 1000:8.2f} ms")
            query_figures(url, work, picks, ca1, ca2, held, n2, reps)
            with pgbouncer(url, psql) as pooled:
                if pooled:
                    x = picks[len(picks) // 2]
                    print("  through PgBouncer (session pooling, SCRAM verifier; server processes stay up):")
                    for label, q in [("device list --serial X", ["device", "list", "--serial", x]),
                                     ("device show X", ["device", "show", x])]:
                        ms = timed(["registry", "--db", pooled] + q, work, reps)
                        print(f"    {label:<46}: {ms:8.2f} ms")
                else:
                    print("  (PgBouncer not installed: no pooled figures)")
            count = 200 if args.smoke else 2_000
            # Disk speed drifts: the three side by side, several rounds, medians.
            rounds = 1 if args.smoke else 5
            rates = {"none": [], "file": [], "url": []}
            for r in range(rounds):
                rates["none"].append(batch_rate(work, count, []))
                rates["file"].append(batch_rate(work, count, ["--registry", os.path.join(work, f"batch{r}.db")]))
                rates["url"].append(batch_rate(work, count, ["--registry", url]))
            plain, sqlite_rate, pg_rate = (statistics.median(rates[k]) for k in ("none", "file", "url"))
            print(f"  batch --count {count} (EC, on {fs}), devices/s, median of {rounds}: without registry {plain:,.0f};"
                  f" --registry FILE.db {sqlite_rate:,.0f} ({sqlite_rate / plain:.2f}x);"
                  f" --registry URL {pg_rate:,.0f} ({pg_rate / plain:.2f}x)")
            if rounds > 1:
                print("    each round, without / FILE.db / URL: " + "; ".join(
                    f"{a:,.0f} / {b:,.0f} / {c:,.0f}" for a, b, c in zip(rates["none"], rates["file"], rates["url"])))
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--smoke", action="store_true", help="small registry: prove the script runs")
    ap.add_argument("--devices", type=int, help="device rows of the main CA")
    ap.add_argument("--postgres", action="store_true", help="a PostgreSQL registry (a server started here)")
    args = ap.parse_args()
    if not os.path.exists(DEVCERT):
        sys.exit(f"build first: cargo build --release (looked for {DEVCERT})")
    if args.postgres:
        return pg_main(args)
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
        query_figures("reg.db", work, picks, ca1, ca2, held, n2, reps)
        with open(os.devnull, "wb") as null:
            ms = timed(["registry", "--db", "reg.db", "device", "list", "--json"], work, 1 if not args.smoke else 3, null)
            print(f"  {f'device list --json (all {n + n2:,} devices)':<48}: {ms:8.2f} ms")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
