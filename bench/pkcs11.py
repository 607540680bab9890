#!/usr/bin/env python3
"""`devcert batch` with the CA key in a PKCS#11 token (SoftHSM2) against the
same command with the CA key in a file, side by side in one run.

    python3 bench/pkcs11.py            # full run (about a minute)
    python3 bench/pkcs11.py --smoke    # tiny N, proves the script works (CI)

Needs a release build, softhsm2 (module /usr/lib/softhsm/libsofthsm2.so) and
softhsm2-util. Prints devices/s for each CA key type, where the key lives,
the number of workers (--jobs), and the filesystem written to; compare the
ratios of one run, not absolute numbers across runs (machines are shared).
"""
import argparse, os, shutil, subprocess, sys, tempfile, time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from compare import fs_type  # noqa: E402  (one filesystem probe for every bench)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEVCERT = os.path.join(ROOT, "target", "release", "devcert")
MODULE = "/usr/lib/softhsm/libsofthsm2.so"
PIN = "1234"


def run(cmd, cwd, env):
    subprocess.run(cmd, cwd=cwd, env=env, check=True, stdout=subprocess.DEVNULL)


def bench_dir(parent, n, cpus, env, label):
    """devices/s of `batch` for each (CA algo, key place, jobs) in `parent`."""
    work = tempfile.mkdtemp(prefix="devcert-bench-pkcs11-", dir=parent)
    try:
        tokens = os.path.join(work, "tokens")
        os.mkdir(tokens)
        conf = os.path.join(work, "softhsm2.conf")
        with open(conf, "w") as f:
            f.write(f"directories.tokendir = {tokens}\nobjectstore.backend = file\nlog.level = ERROR\n")
        env = dict(env, SOFTHSM2_CONF=conf, DEVCERT_PKCS11_MODULE=MODULE, DEVCERT_PKCS11_PIN=PIN)
        run(["softhsm2-util", "--init-token", "--free", "--label", "bench", "--pin", PIN, "--so-pin", "5678"], work, env)
        print(f"\n{label}: {work} ({fs_type(work)}), {n} EC P-256 devices per run")
        print(f"  {'CA key':10} {'jobs':>4} {'file key/s':>11} {'token key/s':>12} {'token/file':>11}")
        for algo in ("ec", "rsa:2048"):
            tag = algo.replace(":", "")
            run([DEVCERT, "ca", "--algo", algo, "--subject", f"/CN=File {algo}", "--key-out", f"file-{tag}.key", "-o", f"file-{tag}.crt"], work, env)
            uri = f"pkcs11:token=bench;object=ca-{tag}"
            run([DEVCERT, "ca", "--algo", algo, "--subject", f"/CN=Token {algo}", "--key-out", uri, "-o", f"token-{tag}.crt"], work, env)
            for jobs in sorted({1, cpus}):
                rate = {}
                for place, key in (("file", f"file-{tag}.key"), ("token", uri)):
                    out = os.path.join(work, f"fleet-{place}-{tag}-{jobs}")
                    t = time.perf_counter()
                    run([DEVCERT, "-q", "batch", "--ca", f"{place}-{tag}.crt", "--ca-key", key, "--count", str(n),
                         "--cn-prefix", "dev-", "--jobs", str(jobs), "--out-dir", out], work, env)
                    rate[place] = n / (time.perf_counter() - t)
                    shutil.rmtree(out)
                print(f"  {algo:10} {jobs:>4} {rate['file']:>11.0f} {rate['token']:>12.0f} {rate['token'] / rate['file']:>10.2f}x")
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--smoke", action="store_true", help="tiny sizes: prove the script runs")
    args = ap.parse_args()
    if not os.path.exists(DEVCERT):
        sys.exit("build first: cargo build --release")
    if not os.path.exists(MODULE) or shutil.which("softhsm2-util") is None:
        sys.exit("needs softhsm2 (apt-get install softhsm2)")
    n = 20 if args.smoke else 1000
    cpus = os.cpu_count() or 1
    env = dict(os.environ)
    env.pop("DEVCERT_PKCS11_MODULE", None)
    print(f"devcert batch, CA key in a file vs in SoftHSM2 ({cpus} CPUs; --jobs 1 and {cpus})")
    # On disk (what users write to: fsyncs dominate) and in memory (the
    # signing itself shows).
    bench_dir(os.path.join(ROOT, "target"), n, cpus, env, "disk")
    if os.path.isdir("/dev/shm"):
        bench_dir("/dev/shm", n, cpus, env, "tmpfs")


if __name__ == "__main__":
    main()
