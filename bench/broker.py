#!/usr/bin/env python3
"""TLS connects through a real Mosquitto, with and without the devcert plugin.

    python3 bench/broker.py            # 1,000,000 devices registered, 300 connecting devices
    python3 bench/broker.py --smoke    # 2,000 registered, 20 connecting: proves the script works

Two brokers on the same machine and disk, same certificates, one after the
other: "plain" (mutual TLS, `use_identity_as_username`, no plugin: what CRL
mode runs) and "plugin" (`libdevcert_mosquitto.so` deciding every CONNECT
from the registry). Both with `set_tcp_nodelay true`.

A client here is Python's ssl module speaking just enough MQTT 3.1.1: TCP
connect, TLS handshake with the device certificate, CONNECT, CONNACK,
DISCONNECT. Latency = TCP connect to CONNACK. Rounds:
  - first connects: every device once (with the plugin: each is unknown,
    its chain is verified and it is registered among the 1,000,000);
  - known devices: sequential connects, median and p99;
  - throughput: WORKERS client threads connecting for a fixed time.
The plugin logs its own cost per decision ("(N us)"); those are summarised
too. The device rows are bulk-inserted with sqlite3 (devcert made the
schema): issuing a million certificates is not what is measured.
"""
import argparse, os, re, shutil, socket, sqlite3, ssl, statistics, struct, subprocess, sys
import tempfile, threading, time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TARGET = os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target"))
DEVCERT = os.environ.get("DEVCERT", os.path.join(TARGET, "release", "devcert"))
PLUGIN = os.path.join(TARGET, "release", "libdevcert_mosquitto.so")


def run(args, cwd):
    subprocess.run([DEVCERT] + args, cwd=cwd, check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.PIPE)


def mosquitto():
    for p in [shutil.which("mosquitto"), "/usr/sbin/mosquitto"]:
        if p and os.path.exists(p):
            return p
    sys.exit("mosquitto not installed (apt-get install mosquitto)")


def fill(db, n):
    conn = sqlite3.connect(db)
    conn.execute("PRAGMA synchronous = OFF")
    with conn:
        conn.execute(
            f"""WITH RECURSIVE seq(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM seq WHERE i < {n})
            INSERT INTO devices (serial, ca_id, subject, status, not_before, not_after, registered_at, fingerprint)
            SELECT printf('7F%038X', i), 1, 'CN=synthetic-' || i, 'active', 0, 4102444800, 0, randomblob(32)
            FROM seq""")
    conn.close()


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def mqtt_connect_packet(client_id):
    cid = client_id.encode()
    var = b"\x00\x04MQTT\x04\x02\x00\x3c"  # MQTT 3.1.1, clean session, keepalive 60
    payload = struct.pack("!H", len(cid)) + cid
    body = var + payload
    return bytes([0x10, len(body)]) + body


class Client:
    def __init__(self, work, port, devices):
        self.port = port
        self.contexts = []
        for d in devices:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            ctx.load_verify_locations(os.path.join(work, "CA.crt"))
            ctx.load_cert_chain(os.path.join(work, d, "client_chain.crt"),
                                os.path.join(work, d, "client_pkcs8.key"))
            self.contexts.append(ctx)

    def connect(self, i, client_id):
        """Seconds from TCP connect to CONNACK; None if refused."""
        t = time.perf_counter()
        raw = socket.create_connection(("127.0.0.1", self.port))
        raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with self.contexts[i].wrap_socket(raw, server_hostname="localhost") as s:
            s.sendall(mqtt_connect_packet(client_id))
            ack = b""
            while len(ack) < 4:
                chunk = s.recv(4 - len(ack))
                if not chunk:
                    break
                ack += chunk
            elapsed = time.perf_counter() - t
            ok = len(ack) == 4 and ack[0] == 0x20 and ack[3] == 0
            if ok:
                s.sendall(b"\xe0\x00")
            return elapsed if ok else None


def start_broker(exe, work, name, port, plugin_lines):
    conf = os.path.join(work, f"{name}.conf")
    log = os.path.join(work, f"{name}.log")
    lines = [
        "per_listener_settings false",
        f"listener {port} 127.0.0.1",
        f"cafile {work}/CA.crt",
        f"certfile {work}/server/client.crt",
        f"keyfile {work}/server/client_pkcs8.key",
        "require_certificate true",
        "set_tcp_nodelay true",
        "persistence false",
        f"log_dest file {log}",
        "log_type error", "log_type warning", "log_type notice",
        "max_connections -1",
    ] + plugin_lines
    if os.geteuid() == 0:
        lines.append("user root")
    with open(conf, "w") as f:
        f.write("\n".join(lines) + "\n")
    p = subprocess.Popen([exe, "-c", conf], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(200):
        try:
            socket.create_connection(("127.0.0.1", port)).close()
            return p, log
        except OSError:
            time.sleep(0.02)
    p.kill()
    sys.exit(f"{name} broker did not start; see {log}")


def pct(xs, q):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))]


def throughput(c, name, devices, seconds, workers):
    count = [0] * workers
    stop = time.perf_counter() + seconds

    def worker(w):
        i = w
        while time.perf_counter() < stop:
            if c.connect(i % len(devices), f"{name}-w{w}-{i}") is not None:
                count[w] += 1
            i += workers

    threads = [threading.Thread(target=worker, args=(w,)) for w in range(workers)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sum(count), time.perf_counter() - t0


def measure(exe, work, setups, devices, rounds, seconds, workers):
    """Both brokers run at once and are measured alternately, connect by
    connect (and second by second for throughput): on a shared machine the
    load then weighs on both alike."""
    brokers, clients, logs = [], {}, {}
    try:
        for name, lines in setups:
            port = free_port()
            p, logs[name] = start_broker(exe, work, name, port, lines)
            brokers.append(p)
            clients[name] = Client(work, port, devices)
        first = {name: [] for name in clients}
        known = {name: [] for name in clients}
        for r in range(rounds + 1):
            for i in range(len(devices)):
                for name, c in clients.items():
                    dt = c.connect(i, f"{name}-r{r}-{i}")
                    assert dt is not None, f"{name}: {devices[i]} refused; see {logs[name]}"
                    (first if r == 0 else known)[name].append(dt)
        done = {name: [0, 0.0] for name in clients}
        for _ in range(seconds):
            for name, c in clients.items():
                n, t = throughput(c, name, devices, 1, workers)
                done[name][0] += n
                done[name][1] += t
        rate = {name: n / t for name, (n, t) in done.items()}
    finally:
        for p in brokers:
            p.terminate()
            p.wait()
    costs = {"registered": [], "known": []}
    for log in logs.values():
        with open(log) as f:
            for line in f:
                m = re.search(r"devcert: accepted .*: (.*) \((\d+) us\)$", line)
                if m:
                    kind = "registered" if "registered as active" in m.group(1) else "known"
                    costs[kind].append(int(m.group(2)))
    return first, known, rate, costs


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--smoke", action="store_true", help="tiny run: prove the script works")
    ap.add_argument("--registered", type=int, help="synthetic devices in the registry")
    args = ap.parse_args()
    for p in (DEVCERT, PLUGIN):
        if not os.path.exists(p):
            sys.exit(f"build first: cargo build --release (looked for {p})")
    exe = mosquitto()
    n = args.registered or (2_000 if args.smoke else 1_000_000)
    connecting = 20 if args.smoke else 300
    rounds = 1 if args.smoke else 3
    seconds = 1 if args.smoke else 10
    workers = 4
    # On disk, as a broker runs: not tmpfs.
    work = tempfile.mkdtemp(prefix="devcert-broker-bench-", dir=os.environ.get("BENCH_DIR"))
    try:
        fs = subprocess.run(["df", "-T", work], capture_output=True, text=True).stdout.splitlines()[-1].split()
        run(["ca", "--subject", "/CN=Bench CA", "--key-out", "CA.key", "-o", "CA.crt"], work)
        with open(os.path.join(work, "server.cfg"), "w") as f:
            f.write("basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\n"
                    "extendedKeyUsage=serverAuth\nsubjectAltName=DNS:localhost,IP:127.0.0.1\n")
        run(["issue", "--cn", "localhost", "--ca", "CA.crt", "--ca-key", "CA.key", "--profile",
             "server.cfg", "--out-dir", "server"], work)
        run(["batch", "--count", str(connecting), "--cn-prefix", "bench-", "--ca", "CA.crt",
             "--ca-key", "CA.key", "--out-dir", "fleet"], work)
        devices = sorted(os.path.join("fleet", d) for d in os.listdir(os.path.join(work, "fleet"))
                         if os.path.isdir(os.path.join(work, "fleet", d)))
        run(["registry", "--db", "reg.db", "ca", "add", "CA.crt"], work)
        db = os.path.join(work, "reg.db")
        t = time.perf_counter()
        fill(db, n)
        print(f"\n[broker] Mosquitto {subprocess.run([exe, '-h'], capture_output=True, text=True).stdout.split()[2]},"
              f" {os.cpu_count()} cores, filesystem {fs[1]} ({fs[6]}), registry of {n:,} devices"
              f" (filled in {time.perf_counter() - t:.1f} s, {os.path.getsize(db) / 2**20:.0f} MiB),"
              f" {len(devices)} connecting devices (EC P-256), {workers} client threads for throughput,"
              f" load average {os.getloadavg()[0]:.1f}")
        first, known, rate, costs = measure(exe, work, [
            ("plain", ["use_identity_as_username true"]),
            ("plugin", [f"plugin {PLUGIN}", f"plugin_opt_registry {db}"]),
        ], devices, rounds, seconds, workers)
        plain = (first["plain"], known["plain"], rate["plain"])
        plugin = (first["plugin"], known["plugin"], rate["plugin"], costs)
        registered = sqlite3.connect(db).execute("SELECT count(*) FROM devices").fetchone()[0]
        assert registered == n + len(devices), f"registry holds {registered}, expected {n + len(devices)}"
        ms = lambda s: s * 1000
        print(f"  {'':<34}{'plain':>10}{'plugin':>10}{'ratio':>8}")
        rows = [
            ("first connect, median ms", statistics.median(plain[0]), statistics.median(plugin[0]), ms),
            ("first connect, p99 ms", pct(plain[0], 0.99), pct(plugin[0], 0.99), ms),
            ("known device, median ms", statistics.median(plain[1]), statistics.median(plugin[1]), ms),
            ("known device, p99 ms", pct(plain[1], 0.99), pct(plugin[1], 0.99), ms),
            (f"connects/s ({workers} threads)", plain[2], plugin[2], lambda x: x),
        ]
        for label, a, b, f in rows:
            print(f"  {label:<34}{f(a):>10.2f}{f(b):>10.2f}{b / a:>8.2f}")
        d = (statistics.median(plugin[1]) - statistics.median(plain[1])) * 1000
        d99 = (pct(plugin[1], 0.99) - pct(plain[1], 0.99)) * 1000
        print(f"  plugin adds {d:+.2f} ms to the median known-device connect"
              f" ({d / (statistics.median(plain[1]) * 1000) * 100:+.1f} %), {d99:+.2f} ms to p99")
        for kind, xs in plugin[3].items():
            if xs:
                print(f"  decision cost in the broker ({kind}, {len(xs)} decisions): median"
                      f" {statistics.median(xs)} us, p99 {pct(xs, 0.99)} us, max {max(xs)} us")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
