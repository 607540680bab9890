//! PostgreSQL registries: what only a server database has (many processes
//! on one server, a server that goes away, credentials, a database of
//! another application) and moving registries with export/import. The
//! common registry suite runs on both backends in tests/registry.rs.
mod common;
use common::pg::*;
use common::*;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

fn ca(t: &TestDir, name: &str) {
    t.devcert(&[
        "ca",
        "--subject",
        &format!("/CN={name}"),
        "--key-out",
        &format!("{name}.key"),
        "-o",
        &format!("{name}.crt"),
    ])
    .ok();
}

fn reg(t: &TestDir, db: &str, args: &[&str]) -> Out {
    t.devcert(&[&["registry", "--db", db], args].concat())
}

fn list(t: &TestDir, db: &str) -> Value {
    let out = reg(t, db, &["device", "list", "--json"]).ok();
    serde_json::from_slice(&out.stdout).unwrap()
}

fn serials(v: &Value) -> Vec<String> {
    let mut s: Vec<String> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["serial"].as_str().unwrap().to_string())
        .collect();
    s.sort();
    s
}

fn openssl_serial(t: &TestDir, cert: &str) -> String {
    let text = t.openssl_ok(&["x509", "-in", cert, "-noout", "-serial"]);
    text.trim().trim_start_matches("serial=").to_string()
}

/// `n` devcert processes with these arguments each (`{i}` replaced), all
/// at once; every one must succeed.
fn at_once(t: &TestDir, n: usize, args: &[&str]) {
    let children: Vec<_> = (0..n)
        .map(|i| {
            let args: Vec<String> = args
                .iter()
                .map(|a| a.replace("{i}", &i.to_string()))
                .collect();
            Command::new(DEVCERT)
                .current_dir(t.root())
                .args(&args)
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("spawn devcert")
        })
        .collect();
    for (i, c) in children.into_iter().enumerate() {
        let out = c.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "process {i} of {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// `n` `devcert issue` processes at once (`dev-{i}/`, by CA.crt), each
/// registering its device in `registry`, which then lists each once and
/// no other. The serials of dev-0, dev-1, ... as OpenSSL reads them, and
/// the `device list --json`.
fn issue_at_once(t: &TestDir, n: usize, registry: &str) -> (Vec<String>, Value) {
    at_once(
        t,
        n,
        &[
            "issue",
            "--cn",
            "dev-{i}",
            "--ca",
            "CA.crt",
            "--ca-key",
            "CA.key",
            "--out-dir",
            "dev-{i}",
            "--registry",
            registry,
        ],
    );
    let issued: Vec<String> = (0..n)
        .map(|i| openssl_serial(t, &format!("dev-{i}/client.crt")))
        .collect();
    let mut want = issued.clone();
    want.sort();
    let listed = list(t, registry);
    assert_eq!(
        serials(&listed),
        want,
        "every issued device registered once"
    );
    (issued, listed)
}

#[test]
fn sixteen_issuers_and_four_deactivators_at_once_lose_nothing() {
    let Some(pg) = PgServer::start() else { return };
    let t = TestDir::new();
    ca(&t, "CA");
    let url = pg.url();
    // 16 provisioning processes on a fresh database: they also race to
    // create the schema and to register the CA.
    let (issued, _) = issue_at_once(&t, 16, &url);
    let cas: Value =
        serde_json::from_slice(&reg(&t, &url, &["ca", "list", "--json"]).ok().stdout).unwrap();
    assert_eq!(cas.as_array().unwrap().len(), 1, "the CA registered once");
    assert_eq!(cas[0]["devices"], 16);
    // The database holds exactly what devcert says (psql, not devcert).
    assert_eq!(
        pg.psql(PG_DB, "SELECT count(DISTINCT serial) FROM devices")
            .trim(),
        "16"
    );
    // 4 deactivations at once, of devices 0..4.
    let four = issued[..4].to_vec();
    let children: Vec<_> = four
        .iter()
        .map(|s| {
            Command::new(DEVCERT)
                .current_dir(t.root())
                .args(["registry", "--db", &url, "device", "deactivate", s])
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for c in children {
        let out = c.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let inactive: Value = serde_json::from_slice(
        &reg(
            &t,
            &url,
            &["device", "list", "--status", "inactive", "--json"],
        )
        .ok()
        .stdout,
    )
    .unwrap();
    let mut want = four.clone();
    want.sort();
    assert_eq!(serials(&inactive), want);
    // Each deactivation is one row of the audit trail, as the CLI's (psql).
    assert_eq!(
        pg.psql(
            PG_DB,
            "SELECT count(*) FROM audit WHERE actor = 'cli' AND action = 'deactivate'"
        )
        .trim(),
        "4"
    );
    let delete = pg.psql_cmd(PG_DB, "DELETE FROM audit");
    assert!(
        delete.code != Some(0) && delete.text().contains("append-only"),
        "the audit trail is append-only: {}",
        delete.describe()
    );
    // The CRL holds exactly those, as OpenSSL reads it.
    reg(
        &t,
        &url,
        &[
            "crl", "--ca", "CA.crt", "--ca-key", "CA.key", "-o", "ca.crl",
        ],
    )
    .ok();
    let text = t.openssl_ok(&["crl", "-in", "ca.crl", "-noout", "-text"]);
    let mut listed: Vec<String> = text
        .lines()
        .filter_map(|l| l.trim().strip_prefix("Serial Number: "))
        .map(str::to_string)
        .collect();
    listed.sort();
    assert_eq!(listed, want);
}

/// Export SQLite → import PostgreSQL → export → import SQLite: the same
/// lines and the same `device list --json` everywhere.
#[test]
fn export_import_round_trip_between_sqlite_and_postgres_loses_nothing() {
    let Some(pg) = PgServer::start() else { return };
    let t = TestDir::new();
    ca(&t, "CA");
    ca(&t, "CA2");
    for (i, c) in ["CA", "CA", "CA", "CA2", "CA", "CA"].iter().enumerate() {
        t.devcert(&[
            "issue",
            "--cn",
            &format!("d{i}"),
            "--ca",
            &format!("{c}.crt"),
            "--ca-key",
            &format!("{c}.key"),
            "--out-dir",
            &format!("d{i}"),
            "--registry",
            "a.db",
        ])
        .ok();
    }
    let s: Vec<String> = (0..6)
        .map(|i| openssl_serial(&t, &format!("d{i}/client.crt")))
        .collect();
    reg(&t, "a.db", &["device", "deactivate", &s[1]]).ok();
    reg(
        &t,
        "a.db",
        &["device", "revoke", &s[2], "--reason", "superseded"],
    )
    .ok();
    reg(&t, "a.db", &["device", "revoke", &s[4]]).ok();
    reg(&t, "a.db", &["device", "delete", &s[4]]).ok();
    reg(
        &t,
        "a.db",
        &["crl", "--ca", "CA.crt", "--ca-key", "CA.key", "-o", "a.crl"],
    )
    .ok();
    reg(&t, "a.db", &["export", "-o", "a.jsonl"]).ok();
    t.assert_mode("a.jsonl", 0o644);
    // The audit trail moves too (format version 2): who changed what.
    let audit: Vec<serde_json::Value> = t
        .read_str("a.jsonl")
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|v| v["type"] == "audit")
        .collect();
    for (action, serial) in [("deactivate", &s[1]), ("revoke", &s[2]), ("delete", &s[4])] {
        assert!(
            audit.iter().any(|a| a["action"] == action
                && a["serial"] == serial.as_str()
                && a["actor"] == "cli"),
            "{action} {serial} in {audit:?}"
        );
    }
    let url = pg.url();
    let out = reg(&t, &url, &["import", "a.jsonl"]).ok();
    assert!(
        out.stderr.contains("imported 2 CA(s) and 5 device(s)"),
        "{}",
        out.describe()
    );
    let pg_export = reg(&t, &url, &["export"]).ok().stdout_str();
    assert_eq!(
        pg_export,
        t.read_str("a.jsonl"),
        "PostgreSQL holds what SQLite held"
    );
    t.write("b.jsonl", &pg_export);
    reg(&t, "c.db", &["import", "b.jsonl"]).ok();
    assert_eq!(reg(&t, "c.db", &["export"]).ok().stdout_str(), pg_export);
    let a = list(&t, "a.db");
    assert_eq!(a.as_array().unwrap().len(), 5);
    assert_eq!(list(&t, &url), a);
    assert_eq!(list(&t, "c.db"), a);
    // The revocation of the deleted device moved too: the next CRL of each
    // copy lists the same serials with the same reasons, and numbers go on.
    for (db, crl) in [(url.as_str(), "p.crl"), ("c.db", "c.crl")] {
        reg(
            &t,
            db,
            &["crl", "--ca", "CA.crt", "--ca-key", "CA.key", "-o", crl],
        )
        .ok();
        let text = |f: &str| {
            let t = t.openssl_ok(&["crl", "-in", f, "-noout", "-text"]);
            let entries: Vec<String> = t
                .lines()
                .skip_while(|l| !l.contains("Revoked Certificates"))
                .take_while(|l| !l.contains("Signature Algorithm"))
                .filter(|l| !l.contains("Revocation Date"))
                .map(str::to_string)
                .collect();
            let number = t
                .lines()
                .skip_while(|l| !l.contains("CRL Number"))
                .nth(1)
                .unwrap_or("")
                .trim()
                .parse::<u64>()
                .unwrap();
            (entries, number)
        };
        let (want, n0) = text("a.crl");
        let (got, n1) = text(crl);
        assert_eq!(got, want, "{db}");
        assert_eq!(n1, n0 + 1, "{db}: the CRL number goes on");
    }
    // Importing again: refused without --merge; with it, everything skipped.
    reg(&t, &url, &["import", "a.jsonl"]).fails_naming(&["not empty"]);
    let out = reg(&t, &url, &["import", "--merge", "a.jsonl"]).ok();
    assert!(
        out.stderr.contains("imported 0 CA(s) and 0 device(s)")
            && out.stderr.contains("0 audit record(s)"),
        "{}",
        out.describe()
    );
    // A serial present with different data: refused, nothing half-imported.
    let before = reg(&t, &url, &["export"]).ok().stdout_str();
    let mut lines: Vec<String> = before.lines().map(str::to_string).collect();
    let changed = lines.iter().position(|l| l.contains(&s[0])).unwrap();
    lines[changed] = lines[changed].replace("\"status\":\"active\"", "\"status\":\"inactive\"");
    ca(&t, "CA3");
    t.devcert(&[
        "issue",
        "--cn",
        "new",
        "--ca",
        "CA3.crt",
        "--ca-key",
        "CA3.key",
        "--out-dir",
        "new",
        "--registry",
        "n.db",
    ])
    .ok();
    let extra = reg(&t, "n.db", &["export"]).ok().stdout_str();
    // A new CA and device first, then the conflicting line.
    let mut merged: Vec<String> = vec![lines[0].clone()];
    merged.extend(extra.lines().skip(1).map(str::to_string));
    merged.push(lines[changed].clone());
    t.write("bad.jsonl", merged.join("\n") + "\n");
    reg(&t, &url, &["import", "--merge", "bad.jsonl"]).fails_naming(&[
        "bad.jsonl:",
        &s[0],
        "other data",
    ]);
    assert_eq!(
        reg(&t, &url, &["export"]).ok().stdout_str(),
        before,
        "nothing of the refused import kept"
    );
    // Not an export at all.
    t.write("junk.jsonl", "hello\n");
    reg(&t, &url, &["import", "--merge", "junk.jsonl"]).fails_naming(&["junk.jsonl:1"]);
}

#[test]
fn server_stopped_mid_batch_then_restarted() {
    let Some(mut pg) = PgServer::start() else {
        return;
    };
    let t = TestDir::new();
    ca(&t, "CA");
    let url = pg.url();
    let batch = |n: &str| {
        Command::new(DEVCERT)
            .current_dir(t.root())
            .args([
                "batch",
                "--ca",
                "CA.crt",
                "--ca-key",
                "CA.key",
                "--count",
                n,
                "--cn-prefix",
                "b",
                "--registry",
                &url,
                "--out-dir",
                "fleet",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let child = batch("2000");
    // Stop the server once the batch has registered some devices.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let n = pg.psql_cmd(PG_DB, "SELECT count(*) FROM devices");
        if n.code == Some(0) && n.stdout_str().trim().parse::<u64>().unwrap_or(0) > 0 {
            break;
        }
        assert!(Instant::now() < deadline, "the batch registered nothing");
        std::thread::sleep(Duration::from_millis(50));
    }
    pg.stop();
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    let error = stderr
        .lines()
        .find(|l| l.starts_with("error:"))
        .unwrap_or_else(|| panic!("no error line: {stderr}"));
    assert!(error.contains(&pg.url_without_password()), "{error}");
    assert!(
        !stderr.contains(PG_PASSWORD),
        "the password was echoed: {stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
    // A command while the server is down: a clear error, at once.
    let started = Instant::now();
    reg(&t, &url, &["device", "list"]).fails_naming(&["cannot connect", "127.0.0.1"]);
    assert!(started.elapsed() < Duration::from_secs(10));
    // Back up: a re-run registers what the first run left unregistered.
    pg.restart();
    let url = pg.url();
    let rerun = Command::new(DEVCERT)
        .current_dir(t.root())
        .args([
            "batch",
            "--ca",
            "CA.crt",
            "--ca-key",
            "CA.key",
            "--count",
            "2000",
            "--cn-prefix",
            "b",
            "--registry",
            &url,
            "--out-dir",
            "fleet",
        ])
        .output()
        .unwrap();
    assert!(
        rerun.status.success(),
        "{}",
        String::from_utf8_lossy(&rerun.stderr)
    );
    let manifest: Value = serde_json::from_slice(&t.read("fleet/manifest.json")).unwrap();
    let mut on_disk: Vec<String> = manifest
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["serial"].as_str().unwrap().to_string())
        .collect();
    on_disk.sort();
    assert_eq!(
        serials(&list(&t, &url)),
        on_disk,
        "every device on disk is registered, no other"
    );
}

#[test]
fn credentials_and_bad_urls_get_clear_errors_never_the_password() {
    let Some(pg) = PgServer::start() else { return };
    let t = TestDir::new();
    ca(&t, "CA");
    let bare = pg.url_without_password();
    // The password from PGPASSWORD, or from a private PGPASSFILE.
    t.devcert_cmd()
        .env("PGPASSWORD", PG_PASSWORD)
        .args(["registry", "--db", &bare, "ca", "add", "CA.crt"])
        .run()
        .ok();
    let pgpass = t.write(
        "pgpass",
        format!("127.0.0.1:{}:*:{PG_USER}:{PG_PASSWORD}\n", pg.port),
    );
    std::fs::set_permissions(&pgpass, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let with_file = |mode: u32| {
        std::fs::set_permissions(&pgpass, std::os::unix::fs::PermissionsExt::from_mode(mode))
            .unwrap();
        t.devcert_cmd()
            .env("PGPASSFILE", pgpass.to_str().unwrap())
            .args(["registry", "--db", &bare, "ca", "list", "--json"])
            .run()
    };
    with_file(0o600).ok();
    // A password file others can read is ignored, and the refusal says so.
    let out = with_file(0o644).fails_naming(&[&bare]);
    assert!(
        out.stderr.contains("readable by others"),
        "{}",
        out.describe()
    );
    // A wrong password: refused, never echoed.
    let wrong = format!(
        "postgres://{PG_USER}:Wrong-Secret-42@127.0.0.1:{}/{PG_DB}",
        pg.port
    );
    let out =
        reg(&t, &wrong, &["ca", "list"]).fails_naming(&["password authentication failed", &bare]);
    assert!(
        !out.stderr.contains("Wrong-Secret-42"),
        "{}",
        out.describe()
    );
    // A malformed URL: named without its password.
    let out = reg(
        &t,
        &format!("postgres://{PG_USER}:Wrong-Secret-42@127.0.0.1:99999/x"),
        &["ca", "list"],
    )
    .fails_naming(&["invalid PostgreSQL URL", "port"]);
    assert!(
        !out.stderr.contains("Wrong-Secret-42"),
        "{}",
        out.describe()
    );
    reg(
        &t,
        &format!("{}?sslmode=sometimes", pg.url()),
        &["ca", "list"],
    )
    .fails_naming(&["sslmode"]);
    // TLS demanded of a server without it.
    reg(
        &t,
        &format!("{}?sslmode=require", pg.url()),
        &["ca", "list"],
    )
    .fails_naming(&["does not offer TLS"]);
    // No database of that name: named, with the way to make it.
    let out =
        reg(&t, &pg.url_of("nosuch"), &["ca", "list"]).fails_naming(&["nosuch", "does not exist"]);
    assert!(out.stderr.contains("createdb"), "{}", out.describe());
    // Nothing listens there: refused at once.
    let down = format!(
        "postgres://{PG_USER}:{PG_PASSWORD}@127.0.0.1:{}/{PG_DB}",
        free_port()
    );
    reg(&t, &down, &["ca", "list"]).fails_naming(&["cannot connect"]);
    // A server that accepts but never answers: the connect timeout bounds the wait.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = silent.local_addr().unwrap().port();
    let started = Instant::now();
    let out = reg(
        &t,
        &format!("postgres://u:Wrong-Secret-42@127.0.0.1:{port}/db?connect_timeout=2"),
        &["ca", "list"],
    )
    .fails();
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "waited {:?}",
        started.elapsed()
    );
    assert!(
        out.error_line().contains("timeout") || out.error_line().contains("timed out"),
        "{}",
        out.describe()
    );
    drop(silent);
    // A database of another application: refused, left as it was.
    pg.psql("postgres", "CREATE DATABASE other");
    pg.psql(
        "other",
        "CREATE TABLE devices (name text); INSERT INTO devices VALUES ('mine')",
    );
    reg(&t, &pg.url_of("other"), &["ca", "add", "CA.crt"]).fails_naming(&["another application"]);
    assert_eq!(
        pg.psql(
            "other",
            "SELECT string_agg(tablename, ',') FROM pg_tables WHERE schemaname = 'public'"
        )
        .trim(),
        "devices"
    );
    // An empty database is no registry yet: listings are empty (warned), nothing created.
    pg.psql("postgres", "CREATE DATABASE empty");
    let out = reg(&t, &pg.url_of("empty"), &["device", "list", "--json"])
        .ok()
        .warns_about(&["does not exist"]);
    assert_eq!(out.stdout_str().trim(), "[]");
    reg(&t, &pg.url_of("empty"), &["device", "show", "01"]).fails_naming(&["no registry"]);
    assert_eq!(
        pg.psql(
            "empty",
            "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'"
        )
        .trim(),
        "0"
    );
    // A schema written by a newer devcert: refused, untouched.
    pg.psql(PG_DB, "UPDATE devcert_schema SET version = 99");
    let out = reg(&t, &pg.url(), &["ca", "list"]).fails_naming(&["newer"]);
    assert!(out.stderr.contains("upgrade devcert"), "{}", out.describe());
    assert_eq!(
        pg.psql(PG_DB, "SELECT version FROM devcert_schema").trim(),
        "99"
    );
    // --help never shows a URL held in DEVCERT_REGISTRY.
    let out = t
        .devcert_cmd()
        .env("DEVCERT_REGISTRY", &pg.url())
        .args(["registry", "--help"])
        .run()
        .ok();
    assert!(!out.stdout_str().contains(PG_PASSWORD));
}

#[test]
fn tls_modes_against_a_server_that_requires_tls() {
    let t = TestDir::new();
    ca(&t, "CA");
    ca(&t, "Other");
    // The server's certificate, issued by devcert: names 127.0.0.1 and
    // localhost, not 127.0.0.2 (where the server listens too).
    t.write(
        "server.ext",
        "basicConstraints = critical, CA:FALSE\nkeyUsage = critical, digitalSignature\n\
         extendedKeyUsage = serverAuth\nsubjectAltName = DNS:localhost, IP:127.0.0.1\n\
         subjectKeyIdentifier = hash\nauthorityKeyIdentifier = keyid\n",
    );
    t.devcert(&[
        "issue",
        "--cn",
        "db.test",
        "--ca",
        "CA.crt",
        "--ca-key",
        "CA.key",
        "--profile",
        "server.ext",
        "--out-dir",
        "server",
    ])
    .ok();
    let Some(pg) = PgServer::start_tls(&t.path("server/client.crt"), &t.path("server/client.key"))
    else {
        return;
    };
    let url = |host: &str, params: &str| {
        format!(
            "postgres://{PG_USER}:{PG_PASSWORD}@{host}:{}/{PG_DB}?{params}",
            pg.port
        )
    };
    let root = |file: &str| format!("sslrootcert={}", t.p(file));
    // No ~/.postgresql/root.crt to fall back on.
    let run = |db: &str| {
        t.devcert_cmd()
            .env("HOME", &t.p("."))
            .args(["registry", "--db", db, "ca", "list", "--json"])
            .run()
    };
    // Each success is one more connection in the server's log, encrypted.
    let connected_with_tls = |db: &str| {
        let before = pg.connections().len();
        run(db).ok();
        let after = pg.connections();
        assert_eq!(after.len(), before + 1, "{after:#?}");
        let line = after.last().unwrap();
        assert!(
            line.contains("SSL enabled") && line.contains("application_name=devcert"),
            "{line}"
        );
    };
    let refused = |db: &str, needles: &[&str]| {
        let before = pg.connections().len();
        let out = run(db).fails_naming(needles);
        assert!(!out.stderr.contains(PG_PASSWORD), "{}", out.describe());
        assert_eq!(pg.connections().len(), before, "no session was opened");
        out
    };
    // prefer (the default) and require: TLS, the certificate unchecked.
    connected_with_tls(&url("127.0.0.1", ""));
    connected_with_tls(&url("127.0.0.1", "sslmode=prefer"));
    connected_with_tls(&url("127.0.0.2", "sslmode=require"));
    // disable against a server that takes TCP clients over TLS only.
    let out = refused(
        &url("127.0.0.1", "sslmode=disable"),
        &["no pg_hba.conf entry", "sslmode=disable"],
    );
    assert!(out.stderr.contains("sslmode=require"), "{}", out.describe());
    // verify-ca: the chain must lead to sslrootcert; any name.
    connected_with_tls(&url(
        "127.0.0.1",
        &format!("sslmode=verify-ca&{}", root("CA.crt")),
    ));
    connected_with_tls(&url(
        "127.0.0.2",
        &format!("sslmode=verify-ca&{}", root("CA.crt")),
    ));
    refused(
        &url(
            "127.0.0.1",
            &format!("sslmode=verify-ca&{}", root("Other.crt")),
        ),
        &["certificate", "not issued by", "Other.crt"],
    );
    // require with a root file checks the chain too (as libpq).
    refused(
        &url(
            "127.0.0.1",
            &format!("sslmode=require&{}", root("Other.crt")),
        ),
        &["not issued by", "Other.crt"],
    );
    // verify-full: also the host name.
    connected_with_tls(&url(
        "127.0.0.1",
        &format!("sslmode=verify-full&{}", root("CA.crt")),
    ));
    refused(
        &url(
            "127.0.0.2",
            &format!("sslmode=verify-full&{}", root("CA.crt")),
        ),
        &["certificate", "127.0.0.2"],
    );
    refused(
        &url("127.0.0.1", "sslmode=verify-full"),
        &["root certificates"],
    );
    // The connections were real TLS sessions, seen from the server:
    // pg_stat_ssl of a session over TLS (psql over TCP) says so.
    let out = Cmd::new(t.root(), pg_bin().unwrap().join("psql"))
        .args([
            "-X",
            "-A",
            "-t",
            "-c",
            "SELECT ssl, version FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
            &url(
                "127.0.0.1",
                &format!("sslmode=verify-full&{}", root("CA.crt")),
            ),
        ])
        .run()
        .ok();
    assert!(
        out.stdout_str().starts_with("t|TLSv1."),
        "{}",
        out.describe()
    );
}

#[test]
fn large_import_is_all_or_nothing_across_insert_chunks() {
    let Some(pg) = PgServer::start() else { return };
    let t = TestDir::new();
    ca(&t, "CA");
    reg(&t, "ca.db", &["ca", "add", "CA.crt"]).ok();
    let head = reg(&t, "ca.db", &["export"]).ok().stdout_str();
    let ca_serial = openssl_serial(&t, "CA.crt");
    let device = |i: usize, status: &str| {
        format!(
            r#"{{"type":"device","serial":"7A{i:038X}","ca_serial":"{ca_serial}","subject":"CN=dev-{i}","status":"{status}","not_before":"2026-01-01T00:00:00Z","not_after":"2027-01-01T00:00:00Z","registered_at":"2026-01-01T00:00:00Z","deactivated_at":null,"fingerprint":"{i:064x}","first_connected_at":null,"last_connected_at":null}}"#
        )
    };
    // More devices than one multi-row insert takes (10,000).
    let n = 25_000;
    let mut lines: Vec<String> = head.lines().map(str::to_string).collect();
    lines.extend((0..n).map(|i| device(i, "active")));
    t.write("big.jsonl", lines.join("\n") + "\n");
    // The same serial twice, the second with other data, in a later chunk.
    lines.push(device(3, "inactive"));
    t.write("clash.jsonl", lines.join("\n") + "\n");
    let url = pg.url();
    reg(&t, &url, &["import", "clash.jsonl"]).fails_naming(&[
        &format!("clash.jsonl:{}", head.lines().count() + n + 1),
        &format!("7A{:038X}", 3),
        "other data",
    ]);
    let count = |sql: &str| pg.psql(PG_DB, sql).trim().to_string();
    assert_eq!(count("SELECT count(*) FROM devices"), "0", "nothing kept");
    assert_eq!(count("SELECT count(*) FROM serials"), "0");
    // The same line twice is one device.
    lines.pop();
    lines.push(device(3, "active"));
    t.write("twice.jsonl", lines.join("\n") + "\n");
    let out = reg(&t, &url, &["import", "twice.jsonl"]).ok();
    assert!(
        out.stderr
            .contains(&format!("imported 1 CA(s) and {n} device(s)"))
            && out.stderr.contains("1 already there"),
        "{}",
        out.describe()
    );
    // Counts and serial claims kept by the database, checked with psql.
    assert_eq!(count("SELECT devices FROM cas"), n.to_string());
    assert_eq!(count("SELECT count(*) FROM serials"), (n + 1).to_string());
    assert_eq!(
        count(
            "SELECT count(*) FROM devices d JOIN serials s USING (serial) WHERE s.owner = 'device'"
        ),
        n.to_string()
    );
    // One device deleted, one added by the CLI: the count follows. The
    // change counter the broker plugin polls moves for the deletion and a
    // deactivation only (registrations cannot refuse a connected device).
    let changes = || count("SELECT n FROM devcert_changes");
    assert_eq!(changes(), "0", "imported devices are no change");
    reg(&t, &url, &["device", "delete", &format!("7A{:038X}", 7)]).ok();
    assert_eq!(changes(), "1");
    reg(
        &t,
        &url,
        &["device", "deactivate", &format!("7A{:038X}", 8)],
    )
    .ok();
    assert_eq!(changes(), "2");
    t.devcert(&[
        "issue",
        "--cn",
        "late",
        "--ca",
        "CA.crt",
        "--ca-key",
        "CA.key",
        "--out-dir",
        "late",
        "--registry",
        &url,
    ])
    .ok();
    assert_eq!(changes(), "2");
    let cas: Value =
        serde_json::from_slice(&reg(&t, &url, &["ca", "list", "--json"]).ok().stdout).unwrap();
    assert_eq!(cas[0]["devices"], n);
    assert_eq!(count("SELECT count(*) FROM devices"), n.to_string());
    // SQLite takes the same file the same way.
    reg(&t, "big.db", &["import", "big.jsonl"]).ok();
    assert_eq!(list(&t, "big.db").as_array().unwrap().len(), n);
}

/// What a user runs, through PgBouncer in session pooling mode
/// (docs/registry.md): each command's result equals what the server itself
/// holds, and PgBouncer's own console shows the traffic went through it.
#[test]
fn a_fleet_through_pgbouncer_in_session_mode() {
    let Some(pg) = PgServer::start() else { return };
    let Some(bouncer) = PgBouncer::start(&pg) else {
        return;
    };
    let t = TestDir::new();
    ca(&t, "CA");
    let (pooled, direct) = (bouncer.url(), pg.url());
    // The schema is created through PgBouncer.
    reg(&t, &pooled, &["ca", "add", "CA.crt"]).ok();
    let (issued, listed) = issue_at_once(&t, 4, &pooled);
    assert_eq!(listed, list(&t, &direct), "the same list read directly");
    assert_eq!(
        pg.psql(PG_DB, "SELECT count(*) FROM devices").trim(),
        "4",
        "psql on the server"
    );
    reg(&t, &pooled, &["auth", "dev-0/client.crt"]).code(0);
    reg(&t, &pooled, &["device", "deactivate", &issued[0]]).ok();
    assert_eq!(
        pg.psql(
            PG_DB,
            &format!("SELECT status FROM devices WHERE serial = '{}'", issued[0])
        )
        .trim(),
        "inactive"
    );
    // Refused after deactivation, the others still admitted.
    reg(&t, &pooled, &["auth", "dev-0/client.crt"]).code(3);
    reg(&t, &pooled, &["auth", "dev-1/client.crt"]).code(0);
    // The CRL, as OpenSSL reads it: signed by the CA, listing dev-0 alone.
    reg(
        &t,
        &pooled,
        &[
            "crl", "--ca", "CA.crt", "--ca-key", "CA.key", "-o", "ca.crl",
        ],
    )
    .ok();
    let verified = t
        .openssl(&[
            "crl", "-in", "ca.crl", "-CAfile", "CA.crt", "-verify", "-noout",
        ])
        .ok();
    assert!(
        verified.text().contains("verify OK"),
        "{}",
        verified.describe()
    );
    let text = t.openssl_ok(&["crl", "-in", "ca.crl", "-noout", "-text"]);
    let revoked: Vec<&str> = text
        .lines()
        .filter_map(|l| l.trim().strip_prefix("Serial Number: "))
        .collect();
    assert_eq!(revoked, [issued[0].as_str()]);
    let export = reg(&t, &pooled, &["export"]).ok().stdout_str();
    assert!(export.contains(&issued[3]), "{export}");
    assert_eq!(
        export,
        reg(&t, &direct, &["export"]).ok().stdout_str(),
        "the export read directly"
    );
    // It all went through PgBouncer (its admin console, over psql): queries
    // counted for the registry database, server connections kept open.
    let stats = bouncer.show("STATS");
    let row = |table: &str| -> std::collections::HashMap<String, String> {
        let mut lines = table.lines();
        let head: Vec<&str> = lines.next().unwrap().split('|').collect();
        let row = lines
            .find(|l| l.starts_with(&format!("{PG_DB}|")))
            .unwrap_or_else(|| panic!("no {PG_DB} row in:\n{table}"));
        head.iter()
            .map(|h| h.to_string())
            .zip(row.split('|').map(str::to_string))
            .collect()
    };
    let queries: u64 = row(&stats)["total_query_count"].parse().unwrap();
    assert!(queries > 0, "{stats}");
    let pools = bouncer.show("POOLS");
    let kept: u64 = row(&pools)["sv_idle"].parse().unwrap();
    assert!(
        kept > 0,
        "server connections stay up between commands: {pools}"
    );
    // A wrong password: refused by PgBouncer with one clear line, never echoed.
    let out = reg(
        &t,
        &bouncer.url_with("Wrong-Secret-42"),
        &["device", "list"],
    )
    .fails_naming(&[
        "password authentication failed",
        &bouncer.url_without_password(),
    ]);
    assert_eq!(
        out.stderr
            .lines()
            .filter(|l| l.starts_with("error:"))
            .count(),
        1,
        "{}",
        out.describe()
    );
    assert!(
        out.stderr.contains("check the password"),
        "{}",
        out.describe()
    );
    assert!(
        !out.stderr.contains("Wrong-Secret-42") && !out.stderr.contains(PG_PASSWORD),
        "{}",
        out.describe()
    );
}
