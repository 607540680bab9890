#!/usr/bin/env python3
"""`devcert registry serve` over a large registry: per-request time and API reads/s.

    python3 bench/console.py            # 1,000,000 devices
    python3 bench/console.py --smoke    # 2,000 devices: proves the script works (CI)

The registry is made as bench/registry.py makes it (devcert creates the
schema, Python's sqlite3 bulk-inserts the device rows). The server runs on
127.0.0.1; each figure is the median over keep-alive requests from one
client (the time the request spends in the server plus a loopback round
trip), then reads/s from several client processes at once. The clients
share the machine's cores with the server, so reads/s is a floor.
"""
import argparse, http.client, multiprocessing, os, re, shutil, statistics, subprocess, sys, tempfile, time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import registry as regbench  # noqa: E402  (fill, ca, DEVCERT)


def start(work):
    p = subprocess.Popen([regbench.DEVCERT, "registry", "--db", "reg.db", "serve", "--listen", "127.0.0.1:0"],
                         cwd=work, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    for line in p.stderr:
        m = re.match(r"listening on http://(\S+)", line)
        if m:
            host, port = m.group(1).rsplit(":", 1)
            return p, host, int(port)
    sys.exit("the server did not start")


def get(conn, path):
    conn.request("GET", path)
    r = conn.getresponse()
    body = r.read()
    assert r.status == 200, (path, r.status, body[:200])
    return body


def median_ms(host, port, path, reps):
    conn = http.client.HTTPConnection(host, port)
    get(conn, path)  # warm the connection and the page cache
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        get(conn, path)
        times.append(time.perf_counter() - t)
    conn.close()
    return statistics.median(times) * 1000


def hammer(args):
    host, port, paths, seconds = args
    conn = http.client.HTTPConnection(host, port)
    n, end, i = 0, time.perf_counter() + seconds, 0
    while time.perf_counter() < end:
        get(conn, paths[i % len(paths)])
        i += 1
        n += 1
    return n


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--smoke", action="store_true")
    ap.add_argument("--devices", type=int)
    ap.add_argument("--clients", type=int, default=4)
    args = ap.parse_args()
    if not os.path.exists(regbench.DEVCERT):
        sys.exit(f"build first: cargo build --release (looked for {regbench.DEVCERT})")
    n = args.devices or (2_000 if args.smoke else 1_000_000)
    held = min(10_000, n // 10)
    reps = 20 if args.smoke else 200
    seconds = 1 if args.smoke else 10
    tmpfs = "/dev/shm" if os.path.isdir("/dev/shm") else None
    work = tempfile.mkdtemp(prefix="devcert-console-", dir=tmpfs)
    server = None
    try:
        ca1 = regbench.ca(work, "CA")
        t = time.perf_counter()
        picks = regbench.fill(os.path.join(work, "reg.db"), 1, n, held, "dev-")
        fs = subprocess.run(["df", "-T", work], capture_output=True, text=True).stdout.splitlines()[-1].split()[1]
        print(f"\n[console] {n:,} devices ({held:,} inactive), filled in {time.perf_counter() - t:.1f} s,"
              f" {os.cpu_count()} cores, work dir on {fs}")
        server, host, port = start(work)
        x = picks[len(picks) // 2]
        last = picks[-1]
        cases = [
            ("console: device list, first page", "/"),
            ("console: device list, page after device n/2", f"/?after={x}"),
            ("console: search by serial", f"/?serial={x}"),
            ("console: search by CA serial, inactive", f"/?ca_serial={ca1}&status=inactive"),
            ("console: device page (with audit trail)", f"/devices/{x}"),
            ("console: CA list", "/cas"),
            ("api: /api/devices?limit=100", "/api/devices?limit=100"),
            ("api: /api/devices?serial=X", f"/api/devices?serial={x}"),
            ("api: /api/devices/X", f"/api/devices/{x}"),
            ("api: ?ca_serial=&after=X&limit=100", f"/api/devices?ca_serial={ca1}&after={x}&limit=100"),
            ("api: ?q= (subject text, early match)", "/api/devices?q=dev-00000&limit=10"),
            ("api: ?q= (subject text, the last device)", f"/api/devices?q=dev-{n - 1:07d}&limit=10"),
        ]
        for label, path in cases:
            r = reps if "last device" not in label else max(5, reps // 20)
            print(f"  {label:<46}: {median_ms(host, port, path, r):8.2f} ms  (median of {r})")
        # Reads/s: several client processes, each on one keep-alive
        # connection, looking up devices by serial (the API's common read).
        paths = [f"/api/devices/{s}" for s in picks[:200]] + [f"/api/devices?serial={last}"]
        with multiprocessing.Pool(args.clients) as pool:
            t = time.perf_counter()
            done = sum(pool.map(hammer, [(host, port, paths, seconds)] * args.clients))
            elapsed = time.perf_counter() - t
        print(f"  api reads/s ({args.clients} client processes, {seconds} s) : {done / elapsed:8.0f}")
    finally:
        if server:
            server.terminate()
            server.wait()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
