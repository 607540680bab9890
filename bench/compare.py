#!/usr/bin/env python3
"""devcert vs OpenSSL, side by side in one run, on the disk you will write to.

    python3 bench/compare.py                  # in the current folder's filesystem
    python3 bench/compare.py --dir /dev/shm   # elsewhere (tmpfs here)
    python3 bench/compare.py --big 1000000    # the large batch at 1,000,000 devices
    python3 bench/compare.py --smoke          # tiny sizes, proves the script works (CI)

Prints the filesystem type, absolute figures and ratios. Every devcert write
is durable (synced before it reports success); OpenSSL's commands do not
sync at all, so on a real disk the comparison favours OpenSSL.
Needs a release build (`cargo build --release`), openssl, and /usr/bin/time.
Machines here are noisy: compare the ratios printed by one run.
"""
import argparse, os, shutil, statistics, subprocess, sys, tempfile, time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEVCERT = os.path.join(ROOT, "target", "release", "devcert")
SEED_CSR_CFG = """[req]
default_bits = 2048
prompt = no
default_md = sha256
distinguished_name = dn
[dn]
C=CN
ST=ZJ
L=HZ
O=ALI
OU=MQTT
emailAddress=xxx@xxx
CN=client-test
"""
SEED_CRT_CFG = """authorityKeyIdentifier=keyid,issuer
basicConstraints=CA:FALSE
keyUsage = digitalSignature, nonRepudiation, keyEncipherment, dataEncipherment, keyCertSign
"""


def run(cmd, cwd):
    subprocess.run(cmd, cwd=cwd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def timed(fn):
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def fs_type(path):
    """The type of the filesystem holding `path` (ext4, xfs, tmpfs, ...)."""
    out = subprocess.run(["df", "--output=fstype", path], capture_output=True, text=True)
    lines = out.stdout.split()
    return lines[-1] if len(lines) > 1 else "unknown"


def fs_notes(path):
    """What about the filesystem changes the figures: an ext4 without a
    journal skips inodes freed in the last 60-300 s when it allocates new
    ones (linux fs/ext4/ialloc.c, recently_deleted), so a run right after
    a large deletion on the same disk creates files much more slowly."""
    src = subprocess.run(["df", "--output=source", path], capture_output=True, text=True).stdout.split()
    dev = os.path.basename(src[-1]) if len(src) > 1 else ""
    try:
        journal = open(f"/sys/fs/ext4/{dev}/journal_task").read().strip()
    except OSError:
        return ""
    if journal == "<none>":
        return " (ext4 without a journal: files freed in the last 1-5 minutes slow new ones down)"
    return " (ext4 with a journal)"


def load():
    return os.getloadavg()[0]


def floor(work, n):
    """What this filesystem allows without devcert: the same device folders
    (a temp folder, five files of a device's sizes, a rename), made by a
    plain loop with no cryptography and no syncing, on one core."""
    sizes = (241, 485, 713, 241, 1308)
    blobs = [b"x" * s for s in sizes]
    names = ("client.key", "client.csr", "client.crt", "client_pkcs8.key", "client_chain.crt")
    out = os.path.join(work, "floor")
    os.makedirs(out)
    t = time.perf_counter()
    for i in range(n):
        tmp = os.path.join(out, f".d{i}.tmp")
        os.mkdir(tmp)
        for name, blob in zip(names, blobs):
            fd = os.open(os.path.join(tmp, name), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            os.write(fd, blob)
            os.close(fd)
        os.rename(tmp, os.path.join(out, f"d{i}"))
    return n / (time.perf_counter() - t)


def openssl_device(d, algo):
    """The seed's OpenSSL workflow for one device, as separate processes."""
    os.makedirs(d)
    if algo == "ec":
        run(["openssl", "ecparam", "-out", "client.key", "-name", "prime256v1", "-genkey"], d)
        run(["openssl", "req", "-new", "-sha256", "-nodes", "-out", "client.csr", "-key", "client.key", "-config", "../client.csr.cfg"], d)
    else:
        run(["openssl", "req", "-new", "-sha256", "-nodes", "-out", "client.csr", "-newkey", "rsa:2048", "-keyout", "client.key", "-config", "../client.csr.cfg"], d)
    run(["openssl", "x509", "-req", "-in", "client.csr", "-CA", "../CA.crt", "-CAkey", "../CA.key", "-CAcreateserial", "-out", "client.crt", "-days", "500", "-sha256", "-extfile", "../client.crt.cfg"], d)
    run(["openssl", "pkcs8", "-topk8", "-nocrypt", "-in", "client.key", "-out", "client_pkcs8.key"], d)
    with open(os.path.join(d, "client_chain.crt"), "wb") as out:
        for f in ("client.crt", "../CA.crt"):
            out.write(open(os.path.join(d, f), "rb").read())


def make_ca(work, algo):
    run([DEVCERT, "ca", "--algo", algo, "--subject", "/CN=Bench CA", "--key-out", "CA.key", "-o", "CA.crt", "--force"], work)


def batch_args(algo, n, out):
    return [DEVCERT, "batch", "--algo", algo, "--config", "client.csr.cfg", "--profile", "client.crt.cfg", "--days", "500",
            "--ca", "CA.crt", "--ca-key", "CA.key", "--count", str(n), "--cn-prefix", "dev-", "--out-dir", out]


def workflow(work, algo, n_ossl, n_issue, n_batch):
    make_ca(work, algo)
    for name, text in (("client.csr.cfg", SEED_CSR_CFG), ("client.crt.cfg", SEED_CRT_CFG)):
        open(os.path.join(work, name), "w").write(text)
    t_ossl = timed(lambda: [openssl_device(os.path.join(work, f"o{i}"), algo) for i in range(n_ossl)])
    t_issue = timed(lambda: [run([DEVCERT, "issue", "--algo", algo, "--config", "client.csr.cfg", "--profile", "client.crt.cfg", "--days", "500",
                                  "--ca", "CA.crt", "--ca-key", "CA.key", "--out-dir", f"d{i}"], work) for i in range(n_issue)])
    t_batch = timed(lambda: run(batch_args(algo, n_batch, "fleet"), work))
    return (t_ossl / n_ossl, n_ossl), (t_issue / n_issue, n_issue), (t_batch / n_batch, n_batch)


def report_workflow(label, t):
    (ossl, n_o), (issue, n_i), (batch, n_b) = t
    print(f"\n[{label}] seed workflow per device (key, csr, sign, pkcs8, chain)")
    print(f"  openssl shell workflow ({n_o:>6} devices): {ossl * 1000:8.2f} ms/device {1 / ossl:9.1f} devices/s")
    print(f"  devcert issue, 1 process ({n_i:>5} devices): {issue * 1000:8.2f} ms/device {1 / issue:9.1f} devices/s  {ossl / issue:7.1f}x openssl")
    print(f"  devcert batch           ({n_b:>6} devices): {batch * 1000:8.3f} ms/device {1 / batch:9.1f} devices/s  {ossl / batch:7.1f}x openssl")


def keygen(work, reps):
    ossl, dev = [], []
    for i in range(reps):
        ossl.append(timed(lambda: run(["openssl", "genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", f"o{i}.key"], work)))
        dev.append(timed(lambda: run([DEVCERT, "key", "--algo", "rsa", "--bits", "2048", "-o", f"d{i}.key"], work)))
    mo, md = statistics.median(ossl), statistics.median(dev)
    print(f"\n[RSA-2048 key generation] median of {reps}")
    print(f"  openssl genpkey        : {mo * 1000:8.1f} ms")
    print(f"  devcert key --algo rsa : {md * 1000:8.1f} ms   {md / mo:5.2f}x the time of openssl")


def big_batch(work, n):
    make_ca(work, "ec")
    fl = floor(work, min(n, 20_000))
    out = subprocess.run(["/usr/bin/time", "-f", "%M %e %U %S", DEVCERT, "batch", "--ca", "CA.crt", "--ca-key", "CA.key", "--count", str(n),
                          "--cn-prefix", "d", "--out-dir", "big"], cwd=work, check=True, capture_output=True, text=True)
    rss_kb, secs, user, system = out.stderr.strip().splitlines()[-1].split()
    print(f"\n[batch {n} ECC devices, one process]")
    rate = n / float(secs)
    print(f"  {rate:9.1f} devices/s over {float(secs):.2f} s (CPU {user} s user + {system} s system), peak RSS {int(rss_kb) / 1024:.1f} MiB")
    print(f"  filesystem floor: {fl:9.1f} device folders/s (no crypto, no sync, one core)  devcert batch = {rate / fl:4.2f}x the floor")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--dir", default=os.getcwd(), help="where to write (default: the current folder's filesystem)")
    ap.add_argument("--smoke", action="store_true", help="tiny sizes: prove the script runs")
    ap.add_argument("--big", type=int, help="devices in the large batch (default 100000; 200 with --smoke)")
    ap.add_argument("--no-registry", action="store_true", help="skip bench/registry.py")
    args = ap.parse_args()
    if not os.path.exists(DEVCERT):
        sys.exit("build first: cargo build --release")
    if args.smoke:
        ec, rsa, reps, big = (5, 10, 200), (2, 3, 5), 3, 200
    else:
        ec, rsa, reps, big = (100, 300, 5000), (20, 30, 100), 30, 100_000
    big = args.big or big
    base = tempfile.mkdtemp(prefix="devcert-bench-", dir=args.dir)
    try:
        print(f"devcert bench ({'smoke' if args.smoke else 'full'}), work dir {base}, filesystem {fs_type(base)}{fs_notes(base)}, "
              f"{os.cpu_count()} cores, load average {load():.2f}")
        print(subprocess.run(["openssl", "version"], capture_output=True, text=True).stdout.strip())
        for label, algo, counts in (("ECC P-256", "ec", ec), ("RSA-2048", "rsa", rsa)):
            work = os.path.join(base, algo)
            os.makedirs(work)
            report_workflow(label, workflow(work, algo, *counts))
        work = os.path.join(base, "keygen")
        os.makedirs(work)
        keygen(work, reps)
        work = os.path.join(base, "big")
        os.makedirs(work)
        big_batch(work, big)
        if not args.no_registry:
            # Registry queries over 1,000,000 rows (2,000 in the smoke run), same binary.
            registry = os.path.join(ROOT, "bench", "registry.py")
            subprocess.run([sys.executable, registry] + (["--smoke"] if args.smoke else []), check=True,
                           env=dict(os.environ, DEVCERT=DEVCERT))
        print(f"\nload average at the end {load():.2f} (1 minute, the bench's own work included; "
              "a high one at the start means other programs shared the cores: compare ratios then)")
    finally:
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
