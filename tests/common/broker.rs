//! A real Mosquitto for the broker tests (CRL mode in tests/mosquitto.rs,
//! plugin mode in tests/plugin.rs): started on a free 127.0.0.1 port in
//! the test's folder, killed by PID when dropped (also on panic), and
//! clients run with mosquitto_pub / mosquitto_sub.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use super::{Cmd, TestDir, required, which_or_sbin};

/// How long to wait for the broker to start or reload before failing.
pub const PATIENCE: Duration = Duration::from_secs(20);

/// The broker binary; `None` (the test is skipped, with a line saying so)
/// only outside CI, where .ci/run installs it.
pub fn find_mosquitto() -> Option<PathBuf> {
    required(
        which_or_sbin("mosquitto"),
        "mosquitto",
        "mosquitto mosquitto-clients",
    )
}

/// `target/release/libdevcert_mosquitto.so`, built (or found up to date)
/// once per test binary: `cargo test` does not build a cdylib by itself.
pub fn plugin_library() -> &'static Path {
    static LIB: OnceLock<PathBuf> = OnceLock::new();
    LIB.get_or_init(|| {
        let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let mut build = Command::new(cargo);
        build
            .args(["build", "--release", "-p", "devcert-mosquitto"])
            .current_dir(manifest);
        // The variables cargo sets for this test (CARGO_MANIFEST_DIR, ...)
        // are watched by build scripts (ring's): inherited, they would make
        // this build and the next `cargo test` rebuild each other's deps.
        for (k, _) in std::env::vars_os() {
            let k = k.to_string_lossy();
            let set_by_cargo = [
                "CARGO_PKG_",
                "CARGO_MANIFEST_",
                "CARGO_CRATE_",
                "CARGO_BIN_",
                "CARGO_PRIMARY_",
                "CARGO_TARGET_TMPDIR",
            ]
            .iter()
            .any(|p| k.starts_with(p));
            if set_by_cargo || k == "OUT_DIR" {
                build.env_remove(k.as_ref());
            }
        }
        let status = build.status().expect("run cargo build for the plugin");
        assert!(status.success(), "building the plugin failed");
        // Test binaries run from target/release/deps.
        let exe = std::env::current_exe().expect("test binary path");
        let lib = exe
            .parent()
            .and_then(Path::parent)
            .map(|d| d.join("libdevcert_mosquitto.so"))
            .expect("target dir");
        assert!(lib.is_file(), "{} missing after the build", lib.display());
        lib
    })
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

pub fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| o.stdout == b"0\n")
        .unwrap_or(false)
}

/// A running broker, killed (by its PID) when dropped.
pub struct Broker {
    child: Child,
    pub port: u16,
    pub log: PathBuf,
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Broker {
    /// Starts Mosquitto with `config(port)` (listeners, TLS, plugin) plus
    /// logging to `mosquitto.log`, no persistence and, as root, `user root`
    /// unless the config names a user; waits until `port` accepts.
    pub fn start(t: &TestDir, exe: &Path, config: impl FnOnce(u16) -> String) -> Broker {
        let port = free_port();
        let log = t.path("mosquitto.log");
        let mut conf = config(port);
        conf.push_str(&format!(
            "persistence false\nlog_dest file {}\nlog_type all\n",
            log.display()
        ));
        // As root Mosquitto drops to user `mosquitto` and could not read the keys.
        if is_root() && !conf.lines().any(|l| l.starts_with("user ")) {
            conf.push_str("user root\n");
        }
        t.write("mosquitto.conf", conf);
        let child = Command::new(exe)
            .arg("-c")
            .arg(t.path("mosquitto.conf"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start mosquitto");
        let mut broker = Broker { child, port, log };
        let start = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Ok(Some(status)) = broker.child.try_wait() {
                panic!("mosquitto exited ({status}):\n{}", broker.log_text());
            }
            assert!(
                start.elapsed() < PATIENCE,
                "broker not listening:\n{}",
                broker.log_text()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        broker
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Whether the broker process is still running.
    pub fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Polls `cond` until it holds; fails the test after PATIENCE.
    pub fn wait_until(&self, what: &str, mut cond: impl FnMut() -> bool) {
        let start = Instant::now();
        while !cond() {
            assert!(
                start.elapsed() < PATIENCE,
                "timed out waiting for: {what}\nbroker log:\n{}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn reloads(&self) -> usize {
        self.log_text().matches("Reloading config").count()
    }

    /// SIGHUP: Mosquitto re-reads its CRL without a restart.
    pub fn reload(&self) {
        let before = self.reloads();
        let ok = Command::new("kill")
            .args(["-HUP", &self.child.id().to_string()])
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        assert!(ok, "kill -HUP failed");
        self.wait_until("broker reloaded", || self.reloads() > before);
    }

    /// A client of device `dev` (its folder as `devcert issue` made it).
    pub fn client(&self, t: &TestDir, prog: &str, dev: &str) -> Cmd {
        Cmd::new(t.root(), prog).args([
            "-h",
            "127.0.0.1",
            "-p",
            &self.port.to_string(),
            "--cafile",
            "CA.crt",
            "--cert",
            &format!("{dev}/client_chain.crt"),
            "--key",
            &format!("{dev}/client_pkcs8.key"),
        ])
    }

    /// Publishes a retained message; true when the broker took it.
    pub fn publish(&self, t: &TestDir, dev: &str, topic: &str, msg: &str) -> bool {
        self.client(t, "mosquitto_pub", dev)
            .args(["-t", topic, "-m", msg, "-r"])
            .run()
            .code
            == Some(0)
    }

    /// Receives one (retained) message.
    pub fn receive(&self, t: &TestDir, dev: &str, topic: &str) -> String {
        let out = self
            .client(t, "mosquitto_sub", dev)
            .args(["-t", topic, "-C", "1", "-W", "10"])
            .run()
            .ok();
        out.stdout_str().trim().to_string()
    }
}

/// The device server certificate profile (serverAuth, localhost).
pub const SERVER_PROFILE: &str = "basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\n\
     extendedKeyUsage=serverAuth\nsubjectAltName=DNS:localhost,IP:127.0.0.1\n";

/// `CA.crt`/`CA.key` and the broker's certificate in `server/`, by devcert.
pub fn ca_and_server(t: &TestDir) {
    t.devcert(&[
        "ca",
        "--subject",
        "/CN=Broker Test CA",
        "--key-out",
        "CA.key",
        "-o",
        "CA.crt",
    ])
    .ok();
    t.write("server.cfg", SERVER_PROFILE);
    t.devcert(&[
        "issue",
        "--cn",
        "localhost",
        "--ca",
        "CA.crt",
        "--ca-key",
        "CA.key",
        "--profile",
        "server.cfg",
        "--out-dir",
        "server",
    ])
    .ok();
}

/// The serial of a certificate as `openssl x509 -serial` prints it.
pub fn serial_of(t: &TestDir, cert: &str) -> String {
    t.openssl_ok(&["x509", "-in", cert, "-noout", "-serial"])
        .trim()
        .trim_start_matches("serial=")
        .to_string()
}
