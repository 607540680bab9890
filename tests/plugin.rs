//! The registry in a real broker's connect path: Mosquitto 2.0 with
//! `libdevcert_mosquitto.so`, started here on a free 127.0.0.1 port, and
//! devices connecting with mosquitto_pub / mosquitto_sub and certificates
//! devcert issued. No CRL, no SIGHUP: the CLI changes the registry and the
//! broker follows.
//!
//! Skipped (with a message) only when mosquitto is missing and `CI` is not
//! set; in CI a missing broker fails the test.
mod common;
use common::broker::*;
use common::pg::{Backend, PgServer};
use common::*;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// A folder with a registered CA, the broker's certificate, an
/// unregistered second CA that the broker's cafile also trusts, and the
/// config of a broker with the plugin (plus a plain listener, `plain`).
struct Setup {
    t: TestDir,
    /// The registry: `reg.db` in `t`, or a PostgreSQL URL.
    db: String,
    pg: Option<PgServer>,
    exe: std::path::PathBuf,
    plain: u16,
    /// The broker runs as `mosquitto` (started as root): files are its own.
    as_mosquitto: bool,
}

impl Setup {
    fn new() -> Option<Setup> {
        Setup::on(Backend::Sqlite)
    }

    /// A setup whose registry is a SQLite file or a PostgreSQL database.
    fn on(backend: Backend) -> Option<Setup> {
        let exe = find_mosquitto()?;
        let (db, pg) = common::pg::registry_under_test(backend)?;
        let t = TestDir::new();
        ca_and_server(&t);
        t.devcert(&[
            "ca",
            "--subject",
            "/CN=Other CA",
            "--key-out",
            "Other.key",
            "-o",
            "Other.crt",
        ])
        .ok();
        t.write(
            "cafile.pem",
            [t.read("CA.crt"), t.read("Other.crt")].concat(),
        );
        t.devcert(&["registry", "--db", &db, "ca", "add", "CA.crt"])
            .ok();
        let as_mosquitto = is_root()
            && Command::new("id")
                .arg("mosquitto")
                .stdout(Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
        Some(Setup {
            t,
            db,
            pg,
            exe,
            plain: free_port(),
            as_mosquitto,
        })
    }

    /// A device certificate of `ca`, not registered.
    fn device(&self, name: &str, ca: &str) {
        let key = format!("{ca}.key");
        let ca = format!("{ca}.crt");
        self.t
            .devcert(&[
                "issue",
                "--cn",
                name,
                "--ca",
                &ca,
                "--ca-key",
                &key,
                "--out-dir",
                name,
            ])
            .ok();
    }

    fn serial(&self, dev: &str) -> String {
        serial_of(&self.t, &format!("{dev}/client.crt"))
    }

    fn start(&self, extra: &str) -> Broker {
        let root = self.t.root().display().to_string();
        if self.as_mosquitto {
            // What docs/broker.md asks: the registry (and its folder, for
            // SQLite's -wal/-shm files) belong to the broker's user.
            let ok = Command::new("chown")
                .args(["-R", "mosquitto:mosquitto", &root])
                .status()
                .is_ok_and(|s| s.success());
            assert!(ok, "chown to mosquitto failed");
        }
        let lib = plugin_library().display().to_string();
        let user = if self.as_mosquitto {
            "user mosquitto\n"
        } else {
            ""
        };
        let plain = self.plain;
        let registry = match &self.pg {
            Some(pg) => pg.url(),
            None => format!("{root}/reg.db"),
        };
        Broker::start(&self.t, &self.exe, |port| {
            format!(
                "per_listener_settings false\n\
                 listener {port} 127.0.0.1\n\
                 cafile {root}/cafile.pem\n\
                 certfile {root}/server/client.crt\n\
                 keyfile {root}/server/client_pkcs8.key\n\
                 require_certificate true\n\
                 set_tcp_nodelay true\n\
                 listener {plain} 127.0.0.1\n\
                 allow_anonymous true\n\
                 plugin {lib}\n\
                 plugin_opt_registry {registry}\n\
                 {user}{extra}"
            )
        })
    }

    fn reg(&self, args: &[&str]) -> Out {
        let mut a = vec!["registry", "--db", self.db.as_str()];
        a.extend_from_slice(args);
        self.t.devcert(&a)
    }

    fn show(&self, serial: &str) -> serde_json::Value {
        let out = self.reg(&["device", "show", serial, "--json"]).ok();
        serde_json::from_slice(&out.stdout).expect("device show --json")
    }

    /// A connect with client id `id`: true when accepted (exit 0).
    fn connects(&self, b: &Broker, dev: &str, id: &str) -> bool {
        b.client(&self.t, "mosquitto_pub", dev)
            .args(["-i", id, "-t", &format!("fleet/{dev}"), "-m", "hello"])
            .run()
            .code
            == Some(0)
    }

    /// An anonymous publish on the plain listener (no plugin decision).
    fn plain_answers(&self) -> bool {
        Cmd::new(self.t.root(), "mosquitto_pub")
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &self.plain.to_string(),
                "-t",
                "health",
                "-m",
                "ok",
            ])
            .run()
            .code
            == Some(0)
    }
}

// The connect rules on both registry databases: with PostgreSQL, the
// deactivations come from the CLI as from another host, and the broker
// follows without reload.
both_backends!(
    connect_registers_deactivate_refuses_activate_and_delete_admit_again,
    connected_subscriber_is_disconnected_within_two_seconds,
    device_of_a_ca_in_cafile_but_not_registered_is_refused,
);

/// The plugin's decision lines for client id `id`.
fn decisions(b: &Broker, id: &str) -> Vec<String> {
    let needle = format!("client_id=\"{id}\"");
    b.log_text()
        .lines()
        .filter(|l| l.contains("devcert: ") && l.contains(&needle))
        .map(str::to_string)
        .collect()
}

fn last_decision(b: &Broker, id: &str) -> String {
    decisions(b, id)
        .pop()
        .unwrap_or_else(|| panic!("no decision logged for {id}:\n{}", b.log_text()))
}

fn connect_registers_deactivate_refuses_activate_and_delete_admit_again(b: Backend) {
    let Some(s) = Setup::on(b) else { return };
    s.device("dev-a", "CA");
    s.device("dev-b", "CA");
    let (a, b_serial) = (s.serial("dev-a"), s.serial("dev-b"));
    let b = s.start("");

    // 1. Unknown device of a registered CA: accepted and registered Active.
    assert!(s.connects(&b, "dev-a", "client-a1"), "{}", b.log_text());
    let line = last_decision(&b, "client-a1");
    assert!(
        line.contains(&format!("accepted client_id=\"client-a1\" serial={a}: unknown device of a registered CA: registered as active")),
        "{line}"
    );
    assert_eq!(s.show(&a)["status"], "active");
    // Connection times are written in batches, within poll_ms (1 s).
    b.wait_until("first_connected_at recorded", || {
        !s.show(&a)["first_connected_at"].is_null()
    });
    let first = s.show(&a);
    assert_eq!(first["first_connected_at"], first["last_connected_at"]);

    // 2. Deactivated: refused at once, no CRL, no signal; dev-b unaffected.
    s.reg(&["device", "deactivate", &a]).ok();
    assert!(!s.connects(&b, "dev-a", "client-a2"));
    let line = last_decision(&b, "client-a2");
    assert!(
        line.contains(&format!(
            "refused client_id=\"client-a2\" serial={a}: device {a} is inactive"
        )),
        "{line}"
    );
    assert!(s.connects(&b, "dev-b", "client-b1"), "{}", b.log_text());
    assert_eq!(s.show(&b_serial)["status"], "active");
    assert!(!b.log_text().contains("Reloading config"));

    // 4. Activated: accepted again; last_connected_at moves, first stays.
    s.reg(&["device", "activate", &a]).ok();
    std::thread::sleep(Duration::from_millis(1100));
    assert!(s.connects(&b, "dev-a", "client-a3"));
    assert!(last_decision(&b, "client-a3").contains(": device is active"));
    b.wait_until("last_connected_at moved", || {
        s.show(&a)["last_connected_at"] != first["last_connected_at"]
    });
    assert_eq!(
        s.show(&a)["first_connected_at"],
        first["first_connected_at"]
    );

    // Deleted: unknown again, so the next connect registers it again.
    s.reg(&["device", "delete", &a]).ok();
    s.reg(&["device", "show", &a]).fails();
    assert!(s.connects(&b, "dev-a", "client-a4"));
    assert!(last_decision(&b, "client-a4").contains("registered as active"));
    assert_eq!(s.show(&a)["status"], "active");

    // The MQTT username is the serial (what ACL files and kicks use).
    assert!(
        b.log_text().contains(&format!("u'{a}'")),
        "{}",
        b.log_text()
    );
}

fn connected_subscriber_is_disconnected_within_two_seconds(b: Backend) {
    let Some(s) = Setup::on(b) else { return };
    s.device("sub", "CA");
    s.device("pub", "CA");
    let serial = s.serial("sub");
    let b = s.start("");
    let mut sub = b
        .client(&s.t, "mosquitto_sub", "sub")
        .args(["-i", "watcher", "-t", "fleet/#", "-v"])
        .spawn();
    b.wait_until("subscriber connected", || {
        !decisions(&b, "watcher").is_empty()
    });
    assert!(last_decision(&b, "watcher").contains("accepted"));
    assert!(s.connects(&b, "pub", "publisher"));

    let start = Instant::now();
    s.reg(&["device", "deactivate", &serial]).ok();
    b.wait_until("subscriber kicked", || {
        b.log_text().contains(&format!(
            "disconnected client_id=\"watcher\" serial={serial}: device {serial} is inactive"
        ))
    });
    let kicked = start.elapsed();
    // mosquitto_sub reconnects once, is refused, and gives up.
    let status = sub.wait_timeout(PATIENCE).expect("mosquitto_sub ended");
    assert!(!status.success());
    assert!(kicked < Duration::from_secs(2), "kicked after {kicked:?}");
    assert!(
        last_decision(&b, "watcher").contains("refused"),
        "{}",
        b.log_text()
    );
    assert!(s.connects(&b, "pub", "publisher-2"));
}

fn device_of_a_ca_in_cafile_but_not_registered_is_refused(b: Backend) {
    let Some(s) = Setup::on(b) else { return };
    s.device("stranger", "Other");
    let serial = s.serial("stranger");
    // The broker itself accepts the chain (Other.crt is in its cafile).
    s.t.devcert(&["verify", "--ca", "cafile.pem", "stranger/client_chain.crt"])
        .ok();
    let b = s.start("");
    assert!(!s.connects(&b, "stranger", "stranger-1"));
    let line = last_decision(&b, "stranger-1");
    assert!(
        line.contains(&format!(
            "refused client_id=\"stranger-1\" serial={serial}: not issued by a registered CA"
        )),
        "{line}"
    );
    s.reg(&["device", "show", &serial]).fails();
}

#[test]
fn broken_registry_refuses_while_the_broker_keeps_serving() {
    let Some(s) = Setup::new() else { return };
    s.device("dev", "CA");
    let b = s.start("plugin_opt_busy_ms 300\n");
    assert!(s.connects(&b, "dev", "ok-0"));
    let db = s.t.path("reg.db");
    let aside = s.t.path("reg.db.aside");
    let mut n = 0;
    let mut refused_while = |why: &str, needle: &str, b: &mut Broker| {
        n += 1;
        let id = format!("broken-{n}");
        assert!(
            !s.connects(b, "dev", &id),
            "{why}: accepted\n{}",
            b.log_text()
        );
        let line = last_decision(b, &id);
        assert!(
            line.contains("refused")
                && line.contains("registry unavailable")
                && line.contains(needle),
            "{why}: {line}"
        );
        assert!(b.alive(), "{why}: the broker died");
        assert!(
            s.plain_answers(),
            "{why}: the other listener stopped answering"
        );
        format!("restored-{n}")
    };
    let mut b = b;

    // Removed.
    std::fs::rename(&db, &aside).unwrap();
    let id = refused_while("removed", "no such file", &mut b);
    std::fs::rename(&aside, &db).unwrap();
    assert!(s.connects(&b, "dev", &id), "{}", b.log_text());

    // Replaced by garbage.
    std::fs::rename(&db, &aside).unwrap();
    s.t.write("reg.db", vec![0x5a; 8192]);
    let id = refused_while("garbage", "not a devcert registry", &mut b);
    std::fs::rename(&aside, &db).unwrap();
    assert!(s.connects(&b, "dev", &id), "{}", b.log_text());

    // Unreadable for the broker's user (root reads anything: skipped when
    // the broker cannot run as another user).
    if s.as_mosquitto || !is_root() {
        set_mode(&db, 0o000);
        let id = refused_while("unreadable", "cannot open", &mut b);
        set_mode(&db, 0o600);
        assert!(s.connects(&b, "dev", &id), "{}", b.log_text());
    } else {
        println!("unreadable registry: not checked (root without a mosquitto user)");
    }

    // Another process holding the write lock past plugin_opt_busy_ms: a
    // device that must be registered is refused; known devices are read
    // without waiting (WAL) and still admitted.
    let mut locker = Command::new("python3");
    locker
        .args([
            "-c",
            "import sqlite3,sys\n\
             c=sqlite3.connect(sys.argv[1],isolation_level=None)\n\
             c.execute('BEGIN IMMEDIATE')\n\
             c.execute('UPDATE cas SET crl_number=crl_number')\n\
             print('locked',flush=True)\n\
             sys.stdin.read()",
        ])
        .arg(&db);
    s.device("dev2", "CA");
    refused_while_locked(&s, &b, locker, "locked by another process (waited 300 ms)");
}

/// While `locker` (which prints `locked` once it holds the registry's lock
/// and lets go when its stdin closes) runs, the unregistered `dev2` is
/// refused within `plugin_opt_busy_ms`, naming `why`, and the known `dev`
/// still admitted; once the lock is gone, `dev2` is admitted.
fn refused_while_locked(s: &Setup, b: &Broker, mut locker: Command, why: &str) {
    let mut locker = locker
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("start the locker");
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(locker.stdout.as_mut().unwrap()),
        &mut line,
    )
    .unwrap();
    assert_eq!(line.trim(), "locked");
    let started = Instant::now();
    assert!(!s.connects(b, "dev2", "locked-new"));
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    let line = last_decision(b, "locked-new");
    assert!(line.contains("refused") && line.contains(why), "{line}");
    assert!(s.connects(b, "dev", "locked-known"), "{}", b.log_text());
    drop(locker.stdin.take());
    locker.wait().unwrap();
    assert!(s.connects(b, "dev2", "unlocked-new"), "{}", b.log_text());
}

/// On PostgreSQL, `plugin_opt_busy_ms` bounds the wait for another
/// client's lock too (the connection's `lock_timeout`): while a CRL run
/// elsewhere holds the CA row, a device that must be registered is refused
/// after it, fail closed; a known device is still admitted.
#[test]
fn postgres_lock_held_elsewhere_refuses_new_devices_after_busy_ms() {
    let Some(s) = Setup::on(Backend::Postgres) else {
        return;
    };
    let pg = s.pg.as_ref().unwrap();
    s.device("dev", "CA");
    s.device("dev2", "CA");
    let b = s.start("plugin_opt_busy_ms 300\n");
    assert!(s.connects(&b, "dev", "first"), "{}", b.log_text());
    // psql holds the CA row as `registry crl` does while it numbers a CRL,
    // until its stdin closes (`\! cat`); its transaction then rolls back.
    let mut locker = Command::new(common::pg::pg_bin().unwrap().join("psql"));
    locker
        .args(["-X", "-q", "-A", "-t", "-h"])
        .arg(pg.socket_dir())
        .args(["-p", &pg.port.to_string(), "-U", common::pg::PG_USER, "-d"])
        .arg(common::pg::PG_DB)
        .args(["-c", "BEGIN", "-c", "SELECT 'locked' FROM cas FOR UPDATE"])
        .args(["-c", "\\! cat > /dev/null"]);
    refused_while_locked(&s, &b, locker, "locked by another client");
}

fn set_mode(p: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
}

#[test]
fn hundred_devices_at_once_while_ten_are_deactivated() {
    let Some(s) = Setup::new() else { return };
    // 50 registered beforehand (10 of them deactivated during the storm),
    // 50 registered by their first connect.
    s.t.devcert(&[
        "batch",
        "--count",
        "50",
        "--cn-prefix",
        "known-",
        "--ca",
        "CA.crt",
        "--ca-key",
        "CA.key",
        "--registry",
        "reg.db",
        "--out-dir",
        "known",
    ])
    .ok();
    s.t.devcert(&[
        "batch",
        "--count",
        "50",
        "--cn-prefix",
        "new-",
        "--ca",
        "CA.crt",
        "--ca-key",
        "CA.key",
        "--out-dir",
        "new",
    ])
    .ok();
    let devices = |batch: &str| {
        let mut v: Vec<String> = std::fs::read_dir(s.t.path(batch))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| s.t.exists(&format!("{batch}/{n}/client_chain.crt")))
            .map(|n| format!("{batch}/{n}"))
            .collect();
        v.sort();
        v
    };
    let dirs: Vec<String> = [devices("known"), devices("new")].concat();
    assert_eq!(dirs.len(), 100);
    let victims: Vec<String> = dirs[..10].iter().map(|d| s.serial(d)).collect();
    let b = s.start("");

    let clients: Vec<_> = dirs
        .iter()
        .enumerate()
        .map(|(i, d)| {
            b.client(&s.t, "mosquitto_pub", d)
                .args(["-i", &format!("storm-{i}"), "-t", "fleet/storm", "-m", "x"])
                .spawn()
        })
        .collect();
    // One CLI process per serial, started during the storm.
    let cli: Vec<_> = victims
        .iter()
        .map(|v| {
            s.t.devcert_cmd()
                .args(["registry", "--db", "reg.db", "device", "deactivate", v])
                .spawn()
        })
        .collect();
    for mut c in cli {
        let status = c.wait_timeout(PATIENCE).expect("deactivate ended");
        assert!(
            status.success(),
            "device deactivate failed during the storm"
        );
    }
    for mut c in clients {
        c.wait_timeout(PATIENCE).expect("client ended");
    }

    // Afterwards exactly the 10 are refused.
    for (i, d) in dirs.iter().enumerate() {
        let accepted = s.connects(&b, d, &format!("after-{i}"));
        assert_eq!(
            accepted,
            i >= 10,
            "{d}\n{}",
            last_decision(&b, &format!("after-{i}"))
        );
    }
    // Nothing lost: 100 devices, 10 inactive, every active one's connection recorded.
    let list = s.reg(&["device", "list", "--json"]).ok();
    let all: serde_json::Value = serde_json::from_slice(&list.stdout).unwrap();
    let all = all.as_array().unwrap();
    assert_eq!(all.len(), 100);
    let inactive: Vec<&str> = all
        .iter()
        .filter(|d| d["status"] == "inactive")
        .map(|d| d["serial"].as_str().unwrap())
        .collect();
    let mut want: Vec<&str> = victims.iter().map(String::as_str).collect();
    let mut got = inactive.clone();
    want.sort();
    got.sort();
    assert_eq!(got, want);
    b.wait_until("connection times recorded", || {
        let list = s
            .reg(&["device", "list", "--status", "active", "--json"])
            .ok();
        let v: serde_json::Value = serde_json::from_slice(&list.stdout).unwrap();
        v.as_array()
            .unwrap()
            .iter()
            .all(|d| !d["last_connected_at"].is_null())
    });
}

#[test]
fn a_million_device_registry() {
    let Some(s) = Setup::new() else { return };
    s.device("newcomer", "CA");
    s.device("veteran", "CA");
    s.reg(&["device", "add", "veteran/client.crt"]).ok();
    let started = Instant::now();
    let n = fill_registry(&s.t.path("reg.db"), 1_000_000);
    println!(
        "{n} synthetic devices inserted in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let b = s.start("");
    assert!(s.connects(&b, "veteran", "veteran-1"), "{}", b.log_text());
    assert!(s.connects(&b, "newcomer", "newcomer-1"), "{}", b.log_text());
    assert!(last_decision(&b, "newcomer-1").contains("registered as active"));
    let veteran = s.serial("veteran");
    s.reg(&["device", "deactivate", &veteran]).ok();
    assert!(!s.connects(&b, "veteran", "veteran-2"));
    let cas = s.reg(&["ca", "list", "--json"]).ok();
    let cas: serde_json::Value = serde_json::from_slice(&cas.stdout).unwrap();
    assert_eq!(cas[0]["devices"], n + 2);
}

/// Adds `n` synthetic Active devices of the first CA in one transaction
/// (rows only: no certificate exists for them, none ever connects).
fn fill_registry(db: &Path, n: u64) -> u64 {
    let conn = rusqlite::Connection::open(db).unwrap();
    conn.execute_batch(&format!(
        "BEGIN;
         WITH RECURSIVE seq(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM seq WHERE i < {n})
         INSERT INTO devices (serial, ca_id, subject, status, not_before, not_after, registered_at, fingerprint)
         SELECT printf('7F%038X', i), (SELECT min(id) FROM cas), 'CN=synthetic-' || i, 'active',
                0, 4102444800, 0, randomblob(32) FROM seq;
         COMMIT;"
    ))
    .unwrap();
    n
}

/// examples/mosquitto/: setup.sh's plugin-mode config runs as the README
/// says (absolute paths, pid_file; as root, the broker drops to the user
/// mosquitto and setup.sh gave that user what it needs), a device that was
/// never registered is registered on its first connect, a deactivation
/// refuses it without any reload, and the pid file names this broker.
#[test]
fn example_plugin_recipe() {
    let Some(exe) = find_mosquitto() else { return };
    let t = TestDir::new();
    let examples = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/mosquitto");
    let as_mosquitto = is_root() && Cmd::new(t.root(), "id").arg("mosquitto").run().code == Some(0);
    if as_mosquitto {
        // The test folder itself is root's 0700: let the broker's group in
        // (for its log); certs/ gets what setup.sh gives it.
        Cmd::new(t.root(), "chgrp")
            .args(["mosquitto", "."])
            .run()
            .ok();
        Cmd::new(t.root(), "chmod").args(["0770", "."]).run().ok();
    }
    let lib = plugin_library().display().to_string();
    let b = Broker::start(&t, &exe, |port| {
        Cmd::new(t.root(), "bash")
            .args([&format!("{examples}/setup.sh"), "certs"])
            .env("DEVCERT", DEVCERT)
            .env("PLUGIN", &lib)
            .env("PORT", &port.to_string())
            .run()
            .ok();
        let conf = t.read_str("certs/mosquitto-plugin.conf");
        let root = t.root().display().to_string();
        for path in conf
            .lines()
            .filter_map(|l| l.split_once(' ').map(|(_, v)| v))
        {
            assert!(
                !path.starts_with("certs/"),
                "relative path in the example: {path}"
            );
        }
        assert!(
            conf.contains(&format!("pid_file {root}/certs/mosquitto.pid")),
            "{conf}"
        );
        let user = if as_mosquitto { "user mosquitto\n" } else { "" };
        format!("{conf}{user}")
    });
    let client = format!("{examples}/client.sh");
    let publish = |dev: &str| {
        Cmd::new(t.root(), "bash")
            .args([&client, dev, &b.port.to_string()])
            .run()
            .code
            == Some(0)
    };
    assert!(publish("certs/device-01"), "{}", b.log_text());
    assert!(publish("certs/device-02"), "{}", b.log_text());
    assert!(
        b.log_text().contains("registered as active"),
        "{}",
        b.log_text()
    );
    let reg =
        |args: &[&str]| t.devcert(&[&["registry", "--db", "certs/devcert.db"][..], args].concat());
    let serial = serial_of(&t, "certs/device-02/client.crt");
    reg(&["device", "show", &serial]).ok();
    reg(&["device", "deactivate", &serial]).ok();
    assert!(!publish("certs/device-02"), "{}", b.log_text());
    reg(&["device", "activate", &serial]).ok();
    assert!(publish("certs/device-02"), "{}", b.log_text());
    assert_eq!(
        t.read_str("certs/mosquitto.pid").trim(),
        b.pid().to_string()
    );
}

/// The plugin authenticates; Mosquitto's acl_file still decides topics,
/// with the device serial as the username (`%u`).
#[test]
fn acl_file_still_decides_topics() {
    let Some(s) = Setup::new() else { return };
    s.device("dev", "CA");
    let serial = s.serial("dev");
    s.t.write("acl", "pattern write devices/%u/#\n");
    let b = s.start(&format!("acl_file {}\n", s.t.path("acl").display()));
    let publish = |id: &str, topic: &str| {
        b.client(&s.t, "mosquitto_pub", "dev")
            .args(["-i", id, "-t", topic, "-m", "x", "-q", "1"])
            .run()
            .ok();
    };
    publish("own", &format!("devices/{serial}/temp"));
    publish("other", "devices/someone-else/temp");
    let log = b.log_text();
    assert!(last_decision(&b, "own").contains("accepted"), "{log}");
    assert!(!log.contains("Denied PUBLISH from own"), "{log}");
    assert!(log.contains("Denied PUBLISH from other"), "{log}");
}
