//! `devcert registry` and `--registry`: every flow checked through `--json`
//! and through OpenSSL (the CRL with `openssl crl -verify`/`-text`, held
//! devices with `openssl verify -crl_check`) and Python `cryptography`.
//!
//! Every test runs twice, on a SQLite file and on a PostgreSQL database
//! (a server of its own, tests/common/pg.rs): `sqlite::NAME` and
//! `postgres::NAME`, from one body (`both_backends!`).
mod common;
use common::pg::{Backend, PgServer};
use common::*;

use serde_json::Value;

/// A test folder and its registry: `reg.db` in it, or a PostgreSQL
/// database on a server started for the test (stopped when dropped).
struct RegDir {
    t: TestDir,
    /// What `--db`/`--registry` get.
    db: String,
    /// What devcert calls the registry in messages (a URL without password).
    label: String,
    pg: Option<PgServer>,
}

impl std::ops::Deref for RegDir {
    type Target = TestDir;
    fn deref(&self) -> &TestDir {
        &self.t
    }
}

impl RegDir {
    /// `None` when PostgreSQL is missing outside CI (the test is skipped).
    fn new(b: Backend) -> Option<RegDir> {
        let (db, pg) = common::pg::registry_under_test(b)?;
        Some(RegDir {
            t: TestDir::new(),
            label: pg
                .as_ref()
                .map_or(db.clone(), PgServer::url_without_password),
            db,
            pg,
        })
    }

    /// Another, empty registry of the same backend.
    fn second(&self) -> String {
        match &self.pg {
            None => "second.db".into(),
            Some(pg) => {
                pg.psql("postgres", "CREATE DATABASE second");
                pg.url_of("second")
            }
        }
    }

    /// The whole registry as `registry export` writes it.
    fn export(&self) -> String {
        reg(self, &["export"]).ok().stdout_str()
    }

    /// Inserts a device row with `serial` straight into the database,
    /// past devcert (with the database's own client): the database's
    /// answer, `Err` when it refused.
    fn raw_insert_device(&self, serial: &str) -> Result<(), String> {
        self.raw_sql(&format!(
            "INSERT INTO devices (serial, ca_id, subject, status, not_before, not_after, registered_at, fingerprint) VALUES ('{serial}', 1, 'CN=x', 'active', 0, 0, 0, BLOB'00')"
        ))
        .map(drop)
    }

    /// Runs one SQL statement with the database's own client (python's
    /// sqlite3, psql), past devcert: its rows as `a|b` lines, `Err` when
    /// the database refused. Blobs are written `BLOB'<hex>'`.
    fn raw_sql(&self, sql: &str) -> Result<String, String> {
        let out = match &self.pg {
            None => Cmd::new(self.root(), "python3")
                .args([
                    "-c",
                    "import sqlite3, sys\nc = sqlite3.connect(sys.argv[1])\nfor r in c.execute(sys.argv[2]): print('|'.join(map(str, r)))\nc.commit()",
                    "reg.db",
                    &sql.replace("BLOB'", "x'"),
                ])
                .run(),
            Some(pg) => pg.psql_cmd(common::pg::PG_DB, &sql.replace("BLOB'", "'\\x")),
        };
        match out.code {
            Some(0) => Ok(out.stdout_str().trim().to_string()),
            _ => Err(out.text()),
        }
    }

    fn schema_version(&self) -> String {
        let q = match self.pg {
            None => "PRAGMA user_version",
            Some(_) => "SELECT version FROM devcert_schema",
        };
        self.raw_sql(q).unwrap()
    }
}

both_backends!(
    ca_add_and_list_match_openssl_and_python,
    device_flow_crl_and_openssl_crl_check,
    unknown_serials_and_empty_queries,
    device_add_openssl_certificates_and_duplicate_serials,
    auth_decides_as_the_broker,
    crl_refuses_unregistered_ca_and_warns_without_crlsign,
    eight_concurrent_signers_lose_nothing,
    sixteen_concurrent_signers_lose_nothing,
    batch_registers_every_device_and_reruns_heal,
    auth_with_intermediate_cas,
    devices_named_by_cn_or_file_revoked_for_good,
    auth_dry_run_writes_nothing,
    renewed_and_cross_signed_cas_are_one_issuer_rekeyed_is_another,
    negative_and_zero_serials_are_refused_where_certificates_enter,
    serials_are_unique_across_cas_and_devices,
    ca_export_and_one_crl_file_for_several_cas,
    a_version_1_registry_is_migrated_in_place,
);

/// A devcert CA `CA.crt`/`CA.key` (keyUsage keyCertSign, cRLSign).
fn devcert_ca(t: &TestDir, name: &str, subject: &str) {
    t.devcert(&[
        "ca",
        "--subject",
        subject,
        "--key-out",
        &format!("{name}.key"),
        "-o",
        &format!("{name}.crt"),
    ])
    .ok();
}

fn reg(t: &RegDir, args: &[&str]) -> Out {
    let mut all = vec!["registry", "--db", t.db.as_str()];
    all.extend_from_slice(args);
    t.devcert(&all)
}

fn json(out: Out) -> Value {
    let out = out.ok();
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e})\n{}", out.describe()))
}

/// `openssl x509 -serial` of a certificate file: the reference serial form.
fn openssl_serial(t: &TestDir, cert: &str) -> String {
    let text = t.openssl_ok(&["x509", "-in", cert, "-noout", "-serial"]);
    text.trim().trim_start_matches("serial=").to_string()
}

fn issue_dev(t: &RegDir, ca: &str, cn: &str, registry: bool) -> String {
    let (crt, key) = (format!("{ca}.crt"), format!("{ca}.key"));
    let mut args = vec![
        "issue",
        "--cn",
        cn,
        "--ca",
        &crt,
        "--ca-key",
        &key,
        "--out-dir",
        cn,
    ];
    if registry {
        args.extend_from_slice(&["--registry", &t.db]);
    }
    t.devcert(&args).ok();
    openssl_serial(t, &format!("{cn}/client.crt"))
}

/// What `auth FILE` and `auth --dry-run FILE` print, both exiting `code`.
fn auth_and_dry_run(t: &RegDir, file: &str, code: i32) -> Vec<String> {
    [&["auth", file][..], &["auth", "--dry-run", file]]
        .iter()
        .map(|args| reg(t, args).code(code).stdout_str())
        .collect()
}

/// `registry crl` of `CA.crt` into `ca.crl`.
fn ca_crl(t: &RegDir) {
    reg(
        t,
        &[
            "crl", "--ca", "CA.crt", "--ca-key", "CA.key", "-o", "ca.crl",
        ],
    )
    .ok();
}

/// A fresh P-256 key from OpenSSL.
fn openssl_ec_key(t: &TestDir, out: &str) {
    t.openssl_ok(&[
        "genpkey",
        "-algorithm",
        "EC",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-out",
        out,
    ]);
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

fn unix(rfc3339: &str) -> i64 {
    time::OffsetDateTime::parse(rfc3339, &time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|e| panic!("'{rfc3339}' is not RFC 3339: {e}"))
        .unix_timestamp()
}

fn serials(list: &Value) -> Vec<String> {
    let mut v: Vec<String> = list
        .as_array()
        .expect("a JSON array")
        .iter()
        .map(|d| d["serial"].as_str().unwrap().to_string())
        .collect();
    v.sort();
    v
}

/// Serials and reasons `openssl crl -text` lists, and the CRL number.
fn openssl_crl(t: &TestDir, crl: &str, ca: &str, inform: &str) -> (Vec<String>, usize, u64) {
    let verify = t.openssl(&[
        "crl", "-inform", inform, "-in", crl, "-verify", "-CAfile", ca, "-noout",
    ]);
    assert!(
        verify.code == Some(0) && verify.text().contains("verify OK"),
        "openssl crl -verify refused the CRL\n{}",
        verify.describe()
    );
    let text = t.openssl_ok(&["crl", "-inform", inform, "-in", crl, "-noout", "-text"]);
    let mut listed: Vec<String> = text
        .lines()
        .filter_map(|l| l.trim().strip_prefix("Serial Number: "))
        .map(str::to_string)
        .collect();
    listed.sort();
    let holds = text.matches("Certificate Hold").count();
    let lines: Vec<&str> = text.lines().map(str::trim).collect();
    let number = lines
        .iter()
        .position(|l| l.starts_with("X509v3 CRL Number"))
        .and_then(|i| lines.get(i + 1))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no CRL Number in\n{text}"));
    assert!(text.contains("Version 2"), "not a v2 CRL\n{text}");
    assert!(
        text.contains("X509v3 Authority Key Identifier"),
        "no AKI\n{text}"
    );
    (listed, holds, number)
}

/// Python `cryptography`'s view of a PEM CRL: signature valid under the CA,
/// CRL number, and `SERIAL:reason` of every entry (sorted).
fn python_crl(t: &TestDir, crl: &str, ca: &str) -> (u64, Vec<String>) {
    let script = r#"
import sys
from cryptography import x509
crl = x509.load_pem_x509_crl(open(sys.argv[1], "rb").read())
ca = x509.load_pem_x509_certificate(open(sys.argv[2], "rb").read())
assert crl.is_signature_valid(ca.public_key()), "CRL signature invalid"
assert crl.issuer == ca.subject
aki = crl.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
ski = ca.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
assert aki.key_identifier == ski.digest, "AKI is not the CA's SKI"
assert crl.next_update_utc > crl.last_update_utc
print(crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number)
for r in crl:
    try:
        reason = r.extensions.get_extension_for_class(x509.CRLReason).value.reason.name
    except x509.ExtensionNotFound:
        reason = "none"
    print(format(r.serial_number, "X") + ":" + reason)
"#;
    let out = Cmd::new(t.root(), "python3")
        .args(["-c", script, crl, ca])
        .run()
        .ok();
    let text = out.stdout_str();
    let mut lines = text.lines();
    let number = lines
        .next()
        .and_then(|n| n.parse().ok())
        .expect("CRL number");
    let mut entries: Vec<String> = lines.map(str::to_string).collect();
    entries.sort();
    (number, entries)
}

/// `openssl verify -crl_check`: Some(true) accepted, Some(false) revoked.
fn openssl_crl_check(t: &TestDir, ca: &str, crl: &str, cert: &str) -> bool {
    let out = t.openssl(&["verify", "-crl_check", "-CAfile", ca, "-CRLfile", crl, cert]);
    match out.code {
        Some(0) => true,
        _ => {
            assert!(
                out.text().contains("certificate revoked"),
                "openssl refused for another reason\n{}",
                out.describe()
            );
            false
        }
    }
}

fn ca_add_and_list_match_openssl_and_python(b: Backend) {
    let Some(t) = RegDir::new(b) else { return };
    devcert_ca(&t, "CA", "/O=ACME/CN=Reg CA");
    t.ec_ca("ossl"); // a CA OpenSSL made, registered as well
    let out = reg(&t, &["ca", "add", "CA.crt"]).ok();
    assert!(out.stderr.contains("registered CA"));
    // Adding the same CA again is harmless (Makefiles run it every time).
    let again = reg(&t, &["ca", "add", "CA.crt"]).ok();
    assert!(again.stderr.contains("already registered"));
    t.devcert(&["registry", "ca", "add", "ossl.crt", "--db", &t.db])
        .ok();
    let list = json(reg(&t, &["ca", "list", "--json"]));
    let cas = list.as_array().unwrap();
    assert_eq!(cas.len(), 2);
    for (c, file) in cas.iter().zip(["CA.crt", "ossl.crt"]) {
        let keys: Vec<&String> = c.as_object().unwrap().keys().collect();
        let mut expected = vec![
            "devices",
            "not_after",
            "not_before",
            "registered_at",
            "serial",
            "ski",
            "subject",
        ];
        expected.sort();
        assert_eq!(keys, expected, "ca list --json fields");
        assert_eq!(c["serial"], openssl_serial(&t, file).as_str());
        let info = t.cert(file);
        assert_eq!(c["subject"], info.get("subject").as_str());
        assert_eq!(
            unix(c["not_before"].as_str().unwrap()),
            info.int("not_before")
        );
        assert_eq!(
            unix(c["not_after"].as_str().unwrap()),
            info.int("not_after")
        );
        let text = t.openssl_ok(&[
            "x509",
            "-in",
            file,
            "-noout",
            "-ext",
            "subjectKeyIdentifier",
        ]);
        assert!(
            text.contains(c["ski"].as_str().unwrap()),
            "ski {} not in\n{text}",
            c["ski"]
        );
        assert_eq!(c["devices"], 0);
        assert!((unix(c["registered_at"].as_str().unwrap()) - now()).abs() < 600);
    }
    // A leaf is not a CA.
    t.non_ca("leaf");
    reg(&t, &["ca", "add", "leaf.crt"]).fails_naming(&["leaf.crt", "CA"]);
    reg(&t, &["ca", "add", "missing.crt"]).fails_naming(&["missing.crt"]);
}

fn device_flow_crl_and_openssl_crl_check(b: Backend) {
    let Some(t) = RegDir::new(b) else { return };
    devcert_ca(&t, "CA", "/CN=Fleet CA");
    let s: Vec<String> = (1..=3)
        .map(|i| issue_dev(&t, "CA", &format!("dev-{i}"), true))
        .collect();
    // The CA was registered by `issue --registry`.
    let cas = json(reg(&t, &["ca", "list", "--json"]));
    let ca_serial = openssl_serial(&t, "CA.crt");
    assert_eq!(cas[0]["serial"], ca_serial.as_str());
    assert_eq!(cas[0]["devices"], 3);

    let all = json(reg(&t, &["device", "list", "--json"]));
    let mut expected = s.clone();
    expected.sort();
    assert_eq!(serials(&all), expected);
    for d in all.as_array().unwrap() {
        let keys: Vec<&String> = d.as_object().unwrap().keys().collect();
        let mut want = vec![
            "ca_serial",
            "first_connected_at",
            "last_connected_at",
            "not_after",
            "not_before",
            "registered_at",
            "revocation_reason",
            "revoked_at",
            "serial",
            "status",
            "subject",
        ];
        want.sort();
        assert_eq!(keys, want, "device list --json fields");
        assert_eq!(d["revoked_at"], serde_json::Value::Null);
        assert_eq!(d["status"], "active");
        assert_eq!(d["ca_serial"], ca_serial.as_str());
        // Set by the broker plugin only: null for a device never connected.
        assert!(d["first_connected_at"].is_null() && d["last_connected_at"].is_null());
    }

    // show takes the serial in any case, with colons or 0x; fields match Python's view.
    let lower_colons: String = s[0]
        .to_lowercase()
        .as_bytes()
        .chunks(2)
        .map(|c| std::str::from_utf8(c).unwrap())
        .collect::<Vec<_>>()
        .join(":");
    let one = json(reg(&t, &["device", "show", &lower_colons, "--json"]));
    let info = t.cert("dev-1/client.crt");
    assert_eq!(one["serial"], s[0].as_str());
    assert_eq!(one["subject"], info.get("subject").as_str());
    assert_eq!(
        unix(one["not_after"].as_str().unwrap()),
        info.int("not_after")
    );
    assert_eq!(
        unix(one["not_before"].as_str().unwrap()),
        info.int("not_before")
    );
    let by_serial = json(reg(
        &t,
        &[
            "device",
            "list",
            "--serial",
            &format!("0x{}", s[1]),
            "--json",
        ],
    ));
    assert_eq!(serials(&by_serial), vec![s[1].clone()]);
    let by_ca = json(reg(
        &t,
        &[
            "device",
            "list",
            "--ca-serial",
            &ca_serial.to_lowercase(),
            "--json",
        ],
    ));
    assert_eq!(serials(&by_ca).len(), 3);
    let limited = json(reg(&t, &["device", "list", "--limit", "2", "--json"]));
    assert_eq!(limited.as_array().unwrap().len(), 2);

    // Deactivate two: the CRL holds exactly those, and OpenSSL agrees.
    reg(&t, &["device", "deactivate", &s[0]]).ok();
    reg(&t, &["device", "deactivate", &s[1].to_lowercase()]).ok();
    let inactive = json(reg(
        &t,
        &["device", "list", "--status", "inactive", "--json"],
    ));
    let mut held = vec![s[0].clone(), s[1].clone()];
    held.sort();
    assert_eq!(serials(&inactive), held);
    assert_eq!(
        json(reg(&t, &["device", "show", &s[0], "--json"]))["status"],
        "inactive"
    );
    reg(
        &t,
        &[
            "crl", "--ca", "CA.crt", "--ca-key", "CA.key", "-o", "ca.crl",
        ],
    )
    .ok()
    .no_warning();
    let (listed, holds, n1) = openssl_crl(&t, "ca.crl", "CA.crt", "PEM");
    assert_eq!(listed, held);
    assert_eq!(holds, 2);
    let (py_number, py_entries) = python_crl(&t, "ca.crl", "CA.crt");
    assert_eq!(py_number, n1);
    let want: Vec<String> = held
        .iter()
        .map(|s| format!("{s}:certificate_hold"))
        .collect();
    assert_eq!(py_entries, want, "cryptography's view of the CRL");
    assert!(!openssl_crl_check(
        &t,
        "CA.crt",
        "ca.crl",
        "dev-1/client.crt"
    ));
    assert!(!openssl_crl_check(
        &t,
        "CA.crt",
        "ca.crl",
        "dev-2/client.crt"
    ));
    assert!(openssl_crl_check(
        &t,
        "CA.crt",
        "ca.crl",
        "dev-3/client.crt"
    ));
    // devcert verify agrees with OpenSSL.
    t.devcert(&[
        "verify",
        "--ca",
        "CA.crt",
        "--crl",
        "ca.crl",
        "dev-1/client.crt",
    ])
    .code(3);

    // A file that is not this CA's CRL is replaced only with --force; it
    // stays intact.
    t.write("notes.crl", "my notes\n");
    reg(
        &t,
        &[
            "crl",
            "--ca",
            "CA.crt",
            "--ca-key",
            "CA.key",
            "-o",
            "notes.crl",
        ],
    )
    .fails_naming(&["notes.crl", "exists"]);
    assert_eq!(t.read_str("notes.crl"), "my notes\n");

    // Activation drops the entry; the CRL number increases. The CRL file
    // this CA's last run wrote is replaced without --force.
    reg(&t, &["device", "activate", &s[0]]).ok();
    ca_crl(&t);
    let (listed, holds, n2) = openssl_crl(&t, "ca.crl", "CA.crt", "PEM");
    assert_eq!(listed, vec![s[1].clone()]);
    assert_eq!(holds, 1);
    assert!(n2 > n1, "CRL number {n2} after {n1}");
    assert!(openssl_crl_check(
        &t,
        "CA.crt",
        "ca.crl",
        "dev-1/client.crt"
    ));
    assert!(!openssl_crl_check(
        &t,
        "CA.crt",
        "ca.crl",
        "dev-2/client.crt"
    ));
    t.assert_mode("ca.crl", 0o644);

    // DER output, read by OpenSSL as DER; number still increasing.
    reg(
        &t,
        &[
            "crl", "--ca", "CA.crt", "--ca-key", "CA.key", "--der", "--days", "1", "-o", "ca.der",
        ],
    )
    .ok();
    let (listed, _, n3) = openssl_crl(&t, "ca.der", "CA.crt", "DER");
    assert_eq!(listed, vec![s[1].clone()]);
    assert!(n3 > n2);
    let text = t.openssl_ok(&[
        "crl",
        "-inform",
        "DER",
        "-in",
        "ca.der",
        "-noout",
        "-lastupdate",
        "-nextupdate",
    ]);
    assert!(
        text.contains("lastUpdate=") && text.contains("nextUpdate="),
        "{text}"
    );

    // Delete: gone from lists, and an error to show it.
    reg(&t, &["device", "delete", &s[2]]).ok();
    assert_eq!(
        serials(&json(reg(&t, &["device", "list", "--json"]))).len(),
        2
    );
    reg(&t, &["device", "show", &s[2]]).fails_naming(&[&t.label, &s[2]]);
    assert_eq!(json(reg(&t, &["ca", "list", "--json"]))[0]["devices"], 2);
}

fn unknown_serials_and_empty_queries(b: Backend) {
    let Some(t) = RegDir::new(b) else { return };
    devcert_ca(&t, "CA", "/CN=Empty CA");
    reg(&t, &["ca", "add", "CA.crt"]).ok();
    let empty = json(reg(&t, &["device", "list", "--serial", "ABCDEF", "--json"]));
    assert_eq!(empty, serde_json::json!([]));
    let empty = json(reg(&t, &["device", "list", "--ca-serial", "01", "--json"]));
    assert_eq!(empty, serde_json::json!([]));
    let out = reg(&t, &["device", "list"]).ok();
    assert!(out.stdout.is_empty());
    for cmd in ["show", "activate", "deactivate", "delete"] {
        reg(&t, &["device", cmd, "ab:cd:ef"]).fails_naming(&["ABCDEF", "not registered"]);
    }
    reg(&t, &["device", "show", "xyz"]).usage_error();
    reg(&t, &["device", "list", "--status", "retired"]).usage_error();
    let empty = json(reg(
        &t,
        &["device", "list", "--status", "revoked", "--json"],
    ));
    assert_eq!(empty, serde_json::json!([]));
    reg(
        &t,
        &["crl", "--ca", "CA.crt", "--ca-key", "CA.key", "--days", "0"],
    )
    .usage_error();
    // A device whose CA is not registered cannot be added.
    devcert_ca(&t, "other", "/CN=Other CA");
    issue_dev(&t, "other", "stray", false);
    reg(&t, &["device", "add", "stray/client.crt"])
        .fails_naming(&["stray/client.crt", "not registered"]);
    // Queries never create a database. Listing one that does not exist is
    // an empty list (CLI.md) with a warning naming it (a mistyped --db);
    // anything else is an error, and so is `device add` (no CA is there).
    for what in [&["device", "list", "--json"][..], &["ca", "list", "--json"]] {
        let out = t
            .devcert(&[&["registry", "--db", "typo.db"], what].concat())
            .ok()
            .warns_about(&["typo.db"]);
        assert_eq!(json(out), serde_json::json!([]));
    }
    let out = t
        .devcert(&["registry", "--db", "typo.db", "device", "list"])
        .ok();
    assert!(out.stdout.is_empty());
    t.devcert(&["registry", "--db", "typo.db", "device", "show", "01"])
        .fails_naming(&["typo.db"]);
    t.devcert(&[
        "registry",
        "--db",
        "typo.db",
        "device",
        "add",
        "stray/client.crt",
    ])
    .fails_naming(&["typo.db"]);
    t.assert_no_file("typo.db");
    // A missing folder is named.
    t.devcert(&[
        "registry",
        "--db",
        "no/such/dir/r.db",
        "ca",
        "add",
        "CA.crt",
    ])
    .fails_naming(&["no/such/dir", "does not exist"]);
    // A file that is not a registry database.
    t.write("junk.db", vec![b'x'; 4096]);
    t.devcert(&["registry", "--db", "junk.db", "ca", "list"])
        .fails_naming(&["junk.db"]);
}

#[test]
fn db_from_env_and_default_path() {
    let t = TestDir::new();
    devcert_ca(&t, "CA", "/CN=Env CA");
    t.devcert_cmd()
        .env("DEVCERT_REGISTRY", "env.db")
        .args(["registry", "ca", "add", "CA.crt"])
        .run()
        .ok();
    assert!(t.exists("env.db"));
    t.devcert(&["registry", "ca", "add", "CA.crt"]).ok();
    assert!(t.exists("devcert.db"), "default ./devcert.db");
    // --db after the subcommand wins over the variable.
    let out = t
        .devcert_cmd()
        .env("DEVCERT_REGISTRY", "nowhere/x.db")
        .args(["registry", "ca", "list", "--json", "--db", "env.db"])
        .run()
        .ok();
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v.as_array().unwrap().len(), 1);
}

fn device_add_openssl_certificates_and_duplicate_serials(b: Backend) {
    let Some(t) = RegDir::new(b) else { return };
    t.ec_ca("CA");
    t.openssl_leaf("a", "CA");
    reg(&t, &["ca", "add", "CA.crt"]).ok();
    reg(&t, &["device", "add", "a.crt"]).ok();
    let serial = openssl_serial(&t, "a.crt");
    assert_eq!(
        serials(&json(reg(&t, &["device", "list", "--json"]))),
        vec![serial.clone()]
    );
    // The same certificate again is harmless.
    let out = reg(&t, &["device", "add", "a.crt"]).ok();
    assert!(out.stderr.contains("already registered"));
    // Another certificate with that serial is refused, by sign as by add.
    t.ec_csr("b");
    t.devcert(&[
        "sign",
        "--csr",
        "b.csr",
        "--ca",
        "CA.crt",
        "--ca-key",
        "CA.key",
        "--serial",
        &serial,
        "--registry",
        &t.db,
        "-o",
        "b.crt",
    ])
    .fails_naming(&["already registered"]);
    t.assert_no_file("b.crt");
    // A failed write undoes the registration: the next sign with that serial works.
    t.write("c.crt", "keep");
    t.devcert(&[
        "sign",
        "--csr",
        "b.csr",
        "--ca",
        "CA.crt",
        "--ca-key",
        "CA.key",
        "--serial",
        "0A",
        "--registry",
        &t.db,
        "-o",
        "c.crt",
    ])
    .fails_naming(&["c.crt"]);
    assert_eq!(t.read_str("c.crt"), "keep");
    assert_eq!(
        serials(&json(reg(&t, &["device", "list", "--json"]))).len(),
        1
    );
    t.devcert(&[
        "sign",
        "--csr",
        "b.csr",
        "--ca",
        "CA.crt",
        "--ca-key",
        "CA.key",
        "--serial",
        "0A",
        "--registry",
        &t.db,
        "-o",
        "d.crt",
    ])
    .ok();
    assert_eq!(openssl_serial(&t, "d.crt"), "0A");
    let d = json(reg(&t, &["device", "show", "0x0a", "--json"]));
    assert_eq!(d["serial"], "0A");
}

fn auth_decides_as_the_broker(b: Backend) {
    let Some(t) = RegDir::new(b) else { return };
    devcert_ca(&t, "CA", "/CN=Broker CA");
    // Same name, other key: an impostor.
    devcert_ca(&t, "fake", "/CN=Broker CA");
    devcert_ca(&t, "other", "/CN=Unregistered CA");
    reg(&t, &["ca", "add", "CA.crt"]).ok();
    let s = issue_dev(&t, "CA", "dev", false);
    issue_dev(&t, "fake", "imp", false);
    issue_dev(&t, "other", "stray", false);

    let auth = |f: &str| reg(&t, &["auth", f]);
    // Unknown device of a registered CA: registered Active and accepted.
    let out = auth("dev/client.crt").code(0);
    assert!(
        out.stdout_str().starts_with("ACCEPTED"),
        "{}",
        out.describe()
    );
    let d = json(reg(&t, &["device", "show", &s, "--json"]));
    assert_eq!(d["status"], "active");
    // --json says the same, same exit codes.
    let v = json(reg(&t, &["auth", "dev/client.crt", "--json"]).code(0));
    assert_eq!(v["ok"], true);
    assert_eq!(v["serial"], s.as_str());
    assert_eq!(v["registered"], false);
    assert!(v["reason"].is_null());
    // Known and active (the chain file works as well).
    auth("dev/client_chain.crt").code(0);
    assert_eq!(
        serials(&json(reg(&t, &["device", "list", "--json"]))).len(),
        1
    );
    // Inactive: refused, exit 3.
    reg(&t, &["device", "deactivate", &s]).ok();
    let out = auth("dev/client.crt").code(3);
    assert!(out.stdout_str().starts_with("REFUSED") && out.stdout_str().contains("inactive"));
    reg(&t, &["device", "activate", &s]).ok();
    auth("dev/client.crt").code(0);
    // Deleted: registered again on the next connection.
    reg(&t, &["device", "delete", &s]).ok();
    let out = auth("dev/client.crt").code(0);
    assert!(out.stdout_str().contains("registered"));
    assert_eq!(
        json(reg(&t, &["device", "show", &s, "--json"]))["status"],
        "active"
    );
    // Unregistered CA and same-name impostor CA: refused, never registered.
    for f in ["stray/client.crt", "imp/client_chain.crt"] {
        let out = auth(f).code(3);
        assert!(
            out.stdout_str().starts_with("REFUSED"),
            "{}",
            out.describe()
        );
    }
    assert_eq!(
        serials(&json(reg(&t, &["device", "list", "--json"]))),
        vec![s.clone()]
    );
    let out = reg(&t, &["auth", "imp/client.crt", "--json"]).code(3);
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["ok"], false);
    let ca_serial = openssl_serial(&t, "CA.crt");
    assert!(
        v["reason"].as_str().unwrap().contains(&format!(
            "same name as registered CA {ca_serial}, different key"
        )),
        "{v}"
    );
    // OpenSSL agrees about the impostor.
    assert!(
        t.openssl(&["verify", "-CAfile", "CA.crt", "imp/client.crt"])
            .code
            != Some(0)
    );
    // Unreadable input is an error (exit 1), not a verdict.
    t.write("junk.crt", "junk");
    auth("junk.crt").fails_naming(&["junk.crt"]);
}

fn crl_refuses_unregistered_ca_and_warns_without_crlsign(b: Backend) {
    let Some(t) = RegDir::new(b) else { return };
    devcert_ca(&t, "CA", "/CN=Not Registered");
    // No registry yet: an error naming it, no CRL.
    reg(
        &t,
        &[
            "crl", "--ca", "CA.crt", "--ca-key", "CA.key", "-o", "ca.crl",
        ],
    )
    .fails_naming(&[&t.label]);
    devcert_ca(&t, "known", "/CN=Registered");
    reg(&t, &["ca", "add", "known.crt"]).ok();
    reg(
        &t,
        &[
            "crl", "--ca", "CA.crt", "--ca-key", "CA.key", "-o", "ca.crl",
        ],
    )
    .fails_naming(&["CA.crt", "not registered"]);
    t.assert_no_file("ca.crl");
    // A CA whose keyUsage lacks cRLSign: the CRL is made, with a warning.
    let cnf = t.min_cnf();
    t.openssl_ok(&[
        "req",
        "-x509",
        "-config",
        &cnf,
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
        "-keyout",
        "nocrl.key",
        "-out",
        "nocrl.crt",
        "-subj",
        "/CN=No CRL Sign",
        "-days",
        "30",
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign",
    ]);
    reg(&t, &["ca", "add", "nocrl.crt"]).ok();
    reg(
        &t,
        &[
            "crl",
            "--ca",
            "nocrl.crt",
            "--ca-key",
            "nocrl.key",
            "-o",
            "n.crl",
        ],
    )
    .ok()
    .warns_about(&["cRLSign"]);
    // The wrong key for the CA is refused before anything is written.
    devcert_ca(&t, "other", "/CN=Other");
    reg(
        &t,
        &[
            "crl",
            "--ca",
            "nocrl.crt",
            "--ca-key",
            "other.key",
            "-o",
            "o.crl",
        ],
    )
    .fails_naming(&["other.key"]);
    t.assert_no_file("o.crl");
}

/// `n` processes of `sign --registry` on one fresh database, all at once.
fn concurrent_signers(b: Backend, n: usize) {
    let Some(t) = RegDir::new(b) else { return };
    devcert_ca(&t, "CA", "/CN=Parallel CA");
    for i in 0..n {
        t.ec_csr(&format!("c{i}"));
    }
    let children: Vec<_> = (0..n)
        .map(|i| {
            std::process::Command::new(DEVCERT)
                .current_dir(t.root())
                .args([
                    "sign",
                    "--csr",
                    &format!("c{i}.csr"),
                    "--ca",
                    "CA.crt",
                    "--ca-key",
                    "CA.key",
                    "--registry",
                    &t.db,
                    "-o",
                    &format!("c{i}.crt"),
                ])
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .expect("spawn devcert")
        })
        .collect();
    for (i, c) in children.into_iter().enumerate() {
        let out = c.wait_with_output().unwrap();
        assert!(
            out.status.success() && out.stderr.is_empty(),
            "signer {i} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let list = json(reg(&t, &["device", "list", "--json"]));
    let mut expected: Vec<String> = (0..n)
        .map(|i| openssl_serial(&t, &format!("c{i}.crt")))
        .collect();
    expected.sort();
    assert_eq!(
        serials(&list),
        expected,
        "every signed certificate is registered"
    );
    let cas = json(reg(&t, &["ca", "list", "--json"]));
    assert_eq!(cas.as_array().unwrap().len(), 1, "the CA registered once");
    assert_eq!(cas[0]["devices"], n);
}

fn eight_concurrent_signers_lose_nothing(b: Backend) {
    concurrent_signers(b, 8);
}

fn sixteen_concurrent_signers_lose_nothing(b: Backend) {
    concurrent_signers(b, 16);
}

fn batch_registers_every_device_and_reruns_heal(b: Backend) {
    let Some(t) = RegDir::new(b) else { return };
    devcert_ca(&t, "CA", "/CN=Batch CA");
    // More than one registry chunk (256).
    t.devcert(&[
        "batch",
        "--ca",
        "CA.crt",
        "--ca-key",
        "CA.key",
        "--count",
        "300",
        "--cn-prefix",
        "b",
        "--registry",
        &t.db,
        "--out-dir",
        "fleet",
        "--jobs",
        "2",
    ])
    .ok();
    let manifest: Value = serde_json::from_slice(&t.read("fleet/manifest.json")).unwrap();
    let mut from_manifest: Vec<String> = manifest
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["serial"].as_str().unwrap().to_string())
        .collect();
    from_manifest.sort();
    let list = json(reg(&t, &["device", "list", "--json"]));
    assert_eq!(serials(&list), from_manifest);
    assert!(from_manifest.contains(&openssl_serial(&t, "fleet/b0001/client.crt")));
    // A re-run into a fresh registry registers the complete devices it skips.
    let second_db = t.second();
    t.devcert(&[
        "batch",
        "--ca",
        "CA.crt",
        "--ca-key",
        "CA.key",
        "--count",
        "300",
        "--cn-prefix",
        "b",
        "--registry",
        &second_db,
        "--out-dir",
        "fleet",
    ])
    .ok();
    let second = json(t.devcert(&["registry", "--db", &second_db, "device", "list", "--json"]));
    assert_eq!(serials(&second), from_manifest);
}

fn auth_with_intermediate_cas(b: Backend) {
    let Some(t) = RegDir::new(b) else { return };
    devcert_ca(&t, "root", "/CN=Root CA");
    t.devcert(&[
        "ca",
        "--subject",
        "/CN=Sub CA",
        "--ca",
        "root.crt",
        "--ca-key",
        "root.key",
        "--key-out",
        "sub.key",
        "-o",
        "sub.crt",
    ])
    .ok();
    issue_dev(&t, "sub", "leaf", false);
    // Only the root registered: the device's own CA is not, so refused
    // although the chain verifies.
    reg(&t, &["ca", "add", "root.crt"]).ok();
    let out = reg(&t, &["auth", "leaf/client_chain.crt"]).code(3);
    assert!(
        out.stdout_str().contains("not registered"),
        "{}",
        out.describe()
    );
    // The issuing intermediate registered: an anchor of its own, accepted.
    // (A broker's cafile needs the root too; auth judges the registry.)
    reg(&t, &["ca", "add", "sub.crt"]).ok();
    reg(&t, &["auth", "leaf/client.crt"]).code(0);
    let d = json(reg(
        &t,
        &[
            "device",
            "show",
            &openssl_serial(&t, "leaf/client.crt"),
            "--json",
        ],
    ));
    assert_eq!(d["ca_serial"], openssl_serial(&t, "sub.crt").as_str());
    t.assert_openssl_verify(
        &["-CAfile", "root.crt", "-untrusted", "sub.crt"],
        "leaf/client.crt",
    );
}

/// `openssl crl -text` of a PEM file holding one CRL: `SERIAL: reason`
/// lines (reason as OpenSSL prints it, `-` when the entry has none).
fn openssl_reasons(t: &TestDir, crl: &str) -> Vec<String> {
    let text = t.openssl_ok(&["crl", "-in", crl, "-noout", "-text"]);
    let mut out = Vec::new();
    let mut lines = text.lines().map(str::trim).peekable();
    while let Some(l) = lines.next() {
        if let Some(sn) = l.strip_prefix("Serial Number: ") {
            let mut reason = "-".to_string();
            while let Some(next) = lines.peek() {
                if next.starts_with("Serial Number: ") || next.starts_with("Signature Algorithm") {
                    break;
                }
                let next = lines.next().unwrap();
                if next == "X509v3 CRL Reason Code:" {
                    reason = lines.next().unwrap_or_default().to_string();
                }
            }
            out.push(format!("{sn}: {reason}"));
        }
    }
    out.sort();
    out
}

fn devices_named_by_cn_or_file_revoked_for_good(b: Backend) {
    let Some(t) = RegDir::new(b) else { return };
    devcert_ca(&t, "CA", "/O=Fleet/CN=Fleet CA");
    reg(&t, &["ca", "add", "CA.crt"]).ok();
    let s1 = issue_dev(&t, "CA", "sensor-0001", true);
    let s2 = issue_dev(&t, "CA", "sensor-0002", true);
    let s3 = issue_dev(&t, "CA", "sensor-0003", true);
    // Two devices with one common name (issued into different folders).
    let mut dups = Vec::new();
    for dir in ["dup-a", "dup-b"] {
        t.devcert(&[
            "issue",
            "--cn",
            "twin",
            "--ca",
            "CA.crt",
            "--ca-key",
            "CA.key",
            "--registry",
            &t.db,
            "--out-dir",
            dir,
        ])
        .ok();
        dups.push(openssl_serial(&t, &format!("{dir}/client.crt")));
    }

    // list --cn is exact; --subject-contains ignores ASCII case.
    let one = json(reg(
        &t,
        &["device", "list", "--cn", "sensor-0001", "--json"],
    ));
    assert_eq!(serials(&one), vec![s1.clone()]);
    assert!(
        json(reg(&t, &["device", "list", "--cn", "sensor-000", "--json"]))
            .as_array()
            .unwrap()
            .is_empty()
    );
    let sensors = json(reg(
        &t,
        &[
            "device",
            "list",
            "--subject-contains",
            "SENSOR-000",
            "--json",
        ],
    ));
    let mut want = vec![s1.clone(), s2.clone(), s3.clone()];
    want.sort();
    assert_eq!(serials(&sensors), want);
    let mut twins = dups.clone();
    twins.sort();
    assert_eq!(
        serials(&json(reg(
            &t,
            &["device", "list", "--cn", "twin", "--json"]
        ))),
        twins
    );

    // show by --cn, by certificate file; an ambiguous CN lists the matches.
    let d = json(reg(
        &t,
        &["device", "show", "--cn", "sensor-0002", "--json"],
    ));
    assert_eq!(d["serial"], s2.as_str());
    let d = json(reg(
        &t,
        &["device", "show", "sensor-0003/client.crt", "--json"],
    ));
    assert_eq!(d["serial"], s3.as_str());
    reg(&t, &["device", "show", "--cn", "twin"]).fails_naming(&[&dups[0], &dups[1], "twin"]);
    reg(&t, &["device", "deactivate", "--cn", "nobody"]).fails_naming(&["nobody"]);
    reg(&t, &["device", "show", "missing/client.crt"]).fails_naming(&["missing/client.crt"]);
    reg(&t, &["device", "show", "--cn", "twin", "ABCD"]).usage_error();
    // A certificate file with a registered serial but another certificate.
    t.devcert(&[
        "csr",
        "--new-key",
        "ec",
        "--subject",
        "/CN=sensor-0001",
        "--key-out",
        "clone.key",
        "-o",
        "clone.csr",
    ])
    .ok();
    t.devcert(&[
        "sign",
        "--csr",
        "clone.csr",
        "--ca",
        "CA.crt",
        "--ca-key",
        "CA.key",
        "--serial",
        &s1,
        "-o",
        "clone.crt",
    ])
    .ok();
    reg(&t, &["device", "show", "clone.crt"]).fails_naming(&[&s1, "another certificate"]);

    // Deactivate by CN, revoke by file (default reason keyCompromise), and
    // one revoked with another reason.
    reg(&t, &["device", "deactivate", "--cn", "sensor-0001"]).ok();
    reg(&t, &["device", "revoke", "sensor-0002/client.crt"]).ok();
    reg(
        &t,
        &["device", "revoke", &s3, "--reason", "cessationOfOperation"],
    )
    .ok();
    reg(&t, &["device", "revoke", &s3, "--reason", "bogus"]).usage_error();
    let d = json(reg(&t, &["device", "show", &s2, "--json"]));
    assert_eq!(d["status"], "revoked");
    assert_eq!(d["revocation_reason"], "keyCompromise");
    assert!(unix(d["revoked_at"].as_str().unwrap()) > 0);
    let mut revoked = vec![s2.clone(), s3.clone()];
    revoked.sort();
    assert_eq!(
        serials(&json(reg(
            &t,
            &["device", "list", "--status", "revoked", "--json"]
        ))),
        revoked
    );
    // Revoking again keeps the first reason.
    reg(&t, &["device", "revoke", &s3])
        .ok()
        .stderr_has("already revoked");
    assert_eq!(
        json(reg(&t, &["device", "show", &s3, "--json"]))["revocation_reason"],
        "cessationOfOperation"
    );

    // No way back from revoked; an inactive device is deleted only with
    // --force (the hint names revoke).
    reg(&t, &["device", "activate", &s2]).fails_naming(&[&s2, "revoked"]);
    reg(&t, &["device", "deactivate", &s2]).fails_naming(&[&s2, "revoked"]);
    reg(&t, &["device", "delete", &s1])
        .fails_naming(&[&s1, "inactive"])
        .stderr_has("device revoke");
    assert_eq!(
        json(reg(&t, &["device", "show", &s1, "--json"]))["status"],
        "inactive"
    );
    // A revoked device is deleted, but its revocation stays.
    reg(&t, &["device", "delete", &s2])
        .ok()
        .stderr_has("revocation is kept");
    reg(&t, &["device", "show", &s2]).fails_naming(&[&s2, "revoked"]);

    // auth refuses both revoked devices, the deleted one too, and does not
    // register it again; --dry-run says the same.
    for (file, serial) in [
        ("sensor-0002/client.crt", &s2),
        ("sensor-0003/client.crt", &s3),
    ] {
        for said in auth_and_dry_run(&t, file, 3) {
            assert!(
                said.starts_with(&format!("REFUSED: device {serial} is revoked")),
                "{said}"
            );
        }
    }
    reg(&t, &["device", "show", &s2]).fails_naming(&["revoked"]);

    // The CRL: certificateHold for the held device, the revocation reasons
    // for the revoked ones (also the deleted one), per OpenSSL and Python.
    ca_crl(&t);
    let want = sorted(vec![
        format!("{s1}: Certificate Hold"),
        format!("{s2}: Key Compromise"),
        format!("{s3}: Cessation Of Operation"),
    ]);
    assert_eq!(openssl_reasons(&t, "ca.crl"), want);
    let (_, entries) = python_crl(&t, "ca.crl", "CA.crt");
    let want = sorted(vec![
        format!("{s1}:certificate_hold"),
        format!("{s2}:key_compromise"),
        format!("{s3}:cessation_of_operation"),
    ]);
    assert_eq!(entries, want);
    for (dev, ok) in [
        ("sensor-0001", false),
        ("sensor-0002", false),
        ("sensor-0003", false),
        ("dup-a", true),
    ] {
        assert_eq!(
            openssl_crl_check(&t, "CA.crt", "ca.crl", &format!("{dev}/client.crt")),
            ok,
            "{dev}"
        );
    }
    // --force deletes an inactive device; it leaves the CRL.
    reg(&t, &["device", "delete", "--cn", "sensor-0001", "--force"]).ok();
    ca_crl(&t);
    let want = sorted(vec![
        format!("{s2}: Key Compromise"),
        format!("{s3}: Cessation Of Operation"),
    ]);
    assert_eq!(openssl_reasons(&t, "ca.crl"), want);
}

fn auth_dry_run_writes_nothing(b: Backend) {
    let Some(t) = RegDir::new(b) else { return };
    devcert_ca(&t, "CA", "/CN=Dry CA");
    reg(&t, &["ca", "add", "CA.crt"]).ok();
    let s = issue_dev(&t, "CA", "dev", false);
    let before = t.export();
    let out = reg(&t, &["auth", "--dry-run", "dev/client.crt"]).code(0);
    assert!(
        out.stdout_str().contains("would be registered"),
        "{}",
        out.describe()
    );
    let v = json(reg(&t, &["auth", "--dry-run", "--json", "dev/client.crt"]).code(0));
    assert_eq!(
        (
            v["ok"].clone(),
            v["registered"].clone(),
            v["dry_run"].clone()
        ),
        (true.into(), true.into(), true.into())
    );
    assert_eq!(t.export(), before, "--dry-run changed the database");
    assert!(
        json(reg(&t, &["device", "list", "--json"]))
            .as_array()
            .unwrap()
            .is_empty()
    );
    // The real decision registers it; a dry run of a known device says so.
    reg(&t, &["auth", "dev/client.crt"]).code(0);
    let v = json(reg(&t, &["auth", "--dry-run", "--json", "dev/client.crt"]).code(0));
    assert_eq!(
        (v["serial"].as_str(), v["registered"].as_bool()),
        (Some(s.as_str()), Some(false))
    );
    reg(&t, &["device", "deactivate", &s]).ok();
    reg(&t, &["auth", "--dry-run", "dev/client.crt"]).code(3);
}

/// An OpenSSL-made CA certificate for key `key` (made if missing): serial
/// `serial`, `days` long, signed by itself or by `signer` (cert, key).
fn openssl_ca_cert(
    t: &TestDir,
    out: &str,
    key: &str,
    subject: &str,
    serial: &str,
    days: &str,
    signer: Option<(&str, &str)>,
) {
    if !t.exists(key) {
        openssl_ec_key(t, key);
    }
    let ext = [
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign,cRLSign",
        "-addext",
        "subjectKeyIdentifier=hash",
    ];
    match signer {
        None => {
            let mut args = vec![
                "req",
                "-x509",
                "-new",
                "-key",
                key,
                "-subj",
                subject,
                "-set_serial",
                serial,
                "-days",
                days,
                "-out",
                out,
            ];
            args.extend_from_slice(&ext);
            t.openssl_ok(&args);
        }
        Some((ca, ca_key)) => {
            let csr = format!("{out}.csr");
            t.openssl_ok(&["req", "-new", "-key", key, "-subj", subject, "-out", &csr]);
            t.write(
                "ca-ext.cnf",
                "basicConstraints=critical,CA:TRUE\nkeyUsage=critical,keyCertSign,cRLSign\nsubjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid\n",
            );
            t.openssl_ok(&[
                "x509",
                "-req",
                "-in",
                &csr,
                "-CA",
                ca,
                "-CAkey",
                ca_key,
                "-set_serial",
                serial,
                "-days",
                days,
                "-extfile",
                "ca-ext.cnf",
                "-out",
                out,
            ]);
        }
    }
}

fn renewed_and_cross_signed_cas_are_one_issuer_rekeyed_is_another(b: Backend) {
    let Some(t) = RegDir::new(b) else { return };
    // v1 and its renewal v2: same name and key, new serial and dates.
    openssl_ca_cert(
        &t,
        "v1.crt",
        "ca.key",
        "/O=Fleet/CN=Renew CA",
        "0x1001",
        "30",
        None,
    );
    openssl_ca_cert(
        &t,
        "v2.crt",
        "ca.key",
        "/O=Fleet/CN=Renew CA",
        "0x1002",
        "3650",
        None,
    );
    // The same name and key cross-signed by another root.
    openssl_ca_cert(
        &t,
        "root.crt",
        "root.key",
        "/CN=Other Root",
        "0x2001",
        "3650",
        None,
    );
    openssl_ca_cert(
        &t,
        "x.crt",
        "ca.key",
        "/O=Fleet/CN=Renew CA",
        "0x1003",
        "3650",
        Some(("root.crt", "root.key")),
    );
    // Re-keyed: same name, new key: another issuer.
    openssl_ca_cert(
        &t,
        "rk.crt",
        "rk.key",
        "/O=Fleet/CN=Renew CA",
        "0x1004",
        "3650",
        None,
    );
    let sn = |f: &str| openssl_serial(&t, f);
    let (v1, v2, x, rk) = (sn("v1.crt"), sn("v2.crt"), sn("x.crt"), sn("rk.crt"));

    reg(&t, &["ca", "add", "v1.crt"]).ok();
    // Devices issued under v1 while it was the only certificate.
    let issue = |ca: &str, key: &str, cn: &str| {
        t.devcert(&[
            "issue",
            "--cn",
            cn,
            "--ca",
            ca,
            "--ca-key",
            key,
            "--registry",
            &t.db,
            "--out-dir",
            cn,
        ])
        .ok();
        openssl_serial(&t, &format!("{cn}/client.crt"))
    };
    let d1 = issue("v1.crt", "ca.key", "d1");
    let d2 = issue("v1.crt", "ca.key", "d2");
    reg(&t, &["ca", "add", "v2.crt"])
        .ok()
        .stderr_has(&format!("same issuer (name and key) as registered CA {v1}"));
    reg(&t, &["ca", "add", "x.crt"])
        .ok()
        .stderr_has("same issuer");
    reg(&t, &["ca", "add", "rk.crt"])
        .ok()
        .stderr_has(&format!("same name as registered CA {v1}, different key"));
    let d3 = issue("v2.crt", "ca.key", "d3");
    let d4 = issue("rk.crt", "rk.key", "d4");
    let d5 = issue("rk.crt", "rk.key", "d5");
    reg(&t, &["device", "deactivate", &d1]).ok();
    reg(&t, &["device", "revoke", &d3]).ok();
    reg(&t, &["device", "deactivate", &d4]).ok();

    // ca list counts the issuer's devices on each of its certificates.
    let cas = json(reg(&t, &["ca", "list", "--json"]));
    for c in cas.as_array().unwrap() {
        let want = if c["serial"] == rk.as_str() { 2 } else { 3 };
        assert_eq!(c["devices"], want, "{c}");
    }
    // --ca-serial of any certificate of the issuer lists all its devices.
    let mut old_key = vec![d1.clone(), d2.clone(), d3.clone()];
    old_key.sort();
    for ca in [&v1, &v2, &x] {
        let list = json(reg(&t, &["device", "list", "--ca-serial", ca, "--json"]));
        assert_eq!(serials(&list), old_key, "--ca-serial {ca}");
    }
    let mut new_key = vec![d4.clone(), d5.clone()];
    new_key.sort();
    assert_eq!(
        serials(&json(reg(
            &t,
            &["device", "list", "--ca-serial", &rk, "--json"]
        ))),
        new_key
    );

    // The CRL made with the renewal (or the cross-signed certificate)
    // lists the device held under v1 and the revoked one; not the
    // re-keyed CA's device. Checked by OpenSSL and Python.
    for ca in ["v2.crt", "x.crt"] {
        reg(
            &t,
            &[
                "crl", "--ca", ca, "--ca-key", "ca.key", "-o", "old.crl", "--force",
            ],
        )
        .ok();
        let mut want = vec![
            format!("{d1}: Certificate Hold"),
            format!("{d3}: Key Compromise"),
        ];
        want.sort();
        assert_eq!(openssl_reasons(&t, "old.crl"), want, "CRL made with {ca}");
        let (_, entries) = python_crl(&t, "old.crl", ca);
        assert_eq!(entries.len(), 2);
    }
    // A broker trusting only v2 with that CRL refuses d1 (issued under v1).
    assert!(!openssl_crl_check(&t, "v2.crt", "old.crl", "d1/client.crt"));
    assert!(openssl_crl_check(&t, "v2.crt", "old.crl", "d2/client.crt"));
    // v1 and v2 in one run: one issuer, given twice.
    reg(
        &t,
        &[
            "crl", "--ca", "v1.crt", "--ca-key", "ca.key", "--ca", "v2.crt", "--ca-key", "ca.key",
            "-o", "two.crl",
        ],
    )
    .usage_error();
    // Both issuers of that name in one file, and both CAs in the broker's
    // cafile: OpenSSL picks each device's CRL by key.
    reg(
        &t,
        &[
            "crl", "--ca", "v2.crt", "--ca-key", "ca.key", "--ca", "rk.crt", "--ca-key", "rk.key",
            "-o", "all.crl",
        ],
    )
    .ok();
    reg(&t, &["ca", "export", "-o", "cafile.pem"]).ok();
    assert_eq!(t.read_str("all.crl").matches("BEGIN X509 CRL").count(), 2);
    for (dev, ok) in [
        ("d1", false),
        ("d2", true),
        ("d3", false),
        ("d4", false),
        ("d5", true),
    ] {
        assert_eq!(
            openssl_crl_check(&t, "cafile.pem", "all.crl", &format!("{dev}/client.crt")),
            ok,
            "{dev}"
        );
    }
    // auth agrees, whichever certificate issued the device.
    for (dev, code) in [("d1", 3), ("d2", 0), ("d3", 3), ("d4", 3), ("d5", 0)] {
        reg(&t, &["auth", "--dry-run", &format!("{dev}/client.crt")]).code(code);
    }
    // A same-name CA with yet another key, not registered: named as such.
    openssl_ca_cert(
        &t,
        "imp.crt",
        "imp.key",
        "/O=Fleet/CN=Renew CA",
        "0x1005",
        "30",
        None,
    );
    reg(
        &t,
        &[
            "crl", "--ca", "imp.crt", "--ca-key", "imp.key", "-o", "imp.crl",
        ],
    )
    .fails_naming(&["imp.crt", "same name as registered CA", "different key"]);
    t.assert_no_file("imp.crl");
}

fn negative_and_zero_serials_are_refused_where_certificates_enter(b: Backend) {
    let Some(t) = RegDir::new(b) else { return };
    devcert_ca(&t, "CA", "/CN=Serial CA");
    reg(&t, &["ca", "add", "CA.crt"]).ok();
    openssl_ec_key(&t, "d.key");
    t.openssl_ok(&[
        "req", "-new", "-key", "d.key", "-subj", "/CN=neg", "-out", "d.csr",
    ]);
    for (serial, file, printed) in [("-1234", "neg.crt", "-04D2"), ("0", "zero.crt", "zero")] {
        t.openssl_ok(&[
            "x509",
            "-req",
            "-in",
            "d.csr",
            "-CA",
            "CA.crt",
            "-CAkey",
            "CA.key",
            "-set_serial",
            serial,
            "-days",
            "30",
            "-out",
            file,
        ]);
        // OpenSSL makes and accepts it...
        t.assert_openssl_verify(&["-CAfile", "CA.crt"], file);
        // ...the registry refuses it: device add, auth (and --dry-run).
        reg(&t, &["device", "add", file]).fails_naming(&[file, printed]);
        for said in auth_and_dry_run(&t, file, 3) {
            assert!(said.contains(printed), "{said}");
        }
        // revoke by certificate file cannot register it either.
        reg(&t, &["device", "revoke", file]).fails_naming(&[file, printed]);
    }
    assert!(
        json(reg(&t, &["device", "list", "--json"]))
            .as_array()
            .unwrap()
            .is_empty()
    );
    // A CA with a negative serial is refused too.
    openssl_ca_cert(&t, "negca.crt", "negca.key", "/CN=Neg CA", "-5", "30", None);
    reg(&t, &["ca", "add", "negca.crt"]).fails_naming(&["negca.crt", "-05"]);
    // The CA's CRL is made as before.
    let s = issue_dev(&t, "CA", "ok", true);
    reg(&t, &["device", "deactivate", &s]).ok();
    ca_crl(&t);
    assert_eq!(
        openssl_reasons(&t, "ca.crl"),
        vec![format!("{s}: Certificate Hold")]
    );
}

fn serials_are_unique_across_cas_and_devices(b: Backend) {
    let Some(t) = RegDir::new(b) else { return };
    devcert_ca(&t, "CA", "/CN=Unique CA");
    reg(&t, &["ca", "add", "CA.crt"]).ok();
    let ca_serial = openssl_serial(&t, "CA.crt");
    // sign --serial <the CA's serial> --registry: refused, nothing written.
    t.devcert(&[
        "csr",
        "--new-key",
        "ec",
        "--subject",
        "/CN=dev",
        "--key-out",
        "d.key",
        "-o",
        "d.csr",
    ])
    .ok();
    t.devcert(&[
        "sign",
        "--csr",
        "d.csr",
        "--ca",
        "CA.crt",
        "--ca-key",
        "CA.key",
        "--serial",
        &ca_serial,
        "--registry",
        &t.db,
        "-o",
        "d.crt",
    ])
    .fails_naming(&[&ca_serial, "registered CA"]);
    t.assert_no_file("d.crt");
    // The same certificate made without the registry: device add and auth refuse it.
    t.devcert(&[
        "sign", "--csr", "d.csr", "--ca", "CA.crt", "--ca-key", "CA.key", "--serial", &ca_serial,
        "-o", "d.crt",
    ])
    .ok();
    reg(&t, &["device", "add", "d.crt"]).fails_naming(&[&ca_serial, "registered CA"]);
    let out = reg(&t, &["auth", "d.crt"]).code(3);
    assert!(
        out.stdout_str().contains("registered CA"),
        "{}",
        out.describe()
    );
    // And the other way: a CA whose serial is a registered device's.
    let dev = issue_dev(&t, "CA", "dev", true);
    openssl_ca_cert(
        &t,
        "clash.crt",
        "clash.key",
        "/CN=Clash CA",
        &format!("0x{dev}"),
        "30",
        None,
    );
    reg(&t, &["ca", "add", "clash.crt"]).fails_naming(&[&dev, "registered device"]);
    assert_eq!(
        json(reg(&t, &["ca", "list", "--json"]))
            .as_array()
            .unwrap()
            .len(),
        1
    );
    // The database itself refuses it, whatever writes to it (Python's
    // sqlite3, psql).
    let refused = t.raw_insert_device(&ca_serial).unwrap_err();
    assert!(
        refused.contains("UNIQUE") || refused.contains("duplicate key"),
        "{refused}"
    );

    // A registry written before the rule (the trigger dropped to mimic it)
    // holding a held device with the CA's serial: the CRL leaves it out
    // with a warning instead of revoking the CA itself. Only SQLite
    // registries predate the rule.
    if t.pg.is_some() {
        return;
    }
    let legacy = r#"
import sqlite3, sys
c = sqlite3.connect(sys.argv[1])
c.execute("DROP TRIGGER devices_serial_claim")
c.execute("INSERT INTO devices (serial, ca_id, subject, status, not_before, not_after, registered_at, fingerprint, deactivated_at) VALUES (?, 1, 'CN=x', 'inactive', 0, 0, 0, x'00', 0)", (sys.argv[2],))
c.commit()
"#;
    Cmd::new(t.root(), "python3")
        .args(["-c", legacy, "reg.db", &ca_serial])
        .run()
        .ok();
    reg(&t, &["device", "deactivate", &dev]).ok();
    issue_dev(&t, "CA", "dev2", true);
    reg(
        &t,
        &[
            "crl", "--ca", "CA.crt", "--ca-key", "CA.key", "-o", "ca.crl",
        ],
    )
    .ok()
    .warns_about(&[&ca_serial, "left out of the CRL"]);
    assert_eq!(
        openssl_reasons(&t, "ca.crl"),
        vec![format!("{dev}: Certificate Hold")]
    );
    for cert in ["dev2/client.crt", "d.crt"] {
        t.assert_openssl_verify(
            &["-crl_check_all", "-CAfile", "CA.crt", "-CRLfile", "ca.crl"],
            cert,
        );
    }
}

/// The PEM blocks of a CRL file, each written to `{prefix}-N.crl`.
fn split_crls(t: &TestDir, file: &str, prefix: &str) -> Vec<String> {
    let text = t.read_str(file);
    let end = "-----END X509 CRL-----\n";
    text.split_inclusive(end)
        .enumerate()
        .map(|(i, block)| {
            assert!(block.starts_with("-----BEGIN X509 CRL-----\n"), "{text}");
            let name = format!("{prefix}-{i}.crl");
            t.write(&name, block);
            name
        })
        .collect()
}

fn ca_export_and_one_crl_file_for_several_cas(b: Backend) {
    let Some(t) = RegDir::new(b) else { return };
    // No registry, then one without CAs: nothing to export.
    reg(&t, &["ca", "export"]).fails_naming(&[&t.label]);
    devcert_ca(&t, "A", "/CN=Fleet A");
    t.ec_ca("B");
    reg(&t, &["ca", "add", "A.crt"]).ok();
    reg(&t, &["ca", "add", "B.crt"]).ok();
    // ca export: both certificates, in registration order, as a cafile.
    let out = reg(&t, &["ca", "export"]).ok();
    let want = format!("{}{}", t.read_str("A.crt"), t.read_str("B.crt"));
    let der = |pem: &str| {
        t.write("one.pem", pem);
        t.openssl_ok(&[
            "x509", "-in", "one.pem", "-outform", "DER", "-out", "one.der",
        ]);
        t.read("one.der")
    };
    let got = out.stdout_str();
    let blocks: Vec<&str> = got.split_inclusive("-----END CERTIFICATE-----\n").collect();
    let want_blocks: Vec<&str> = want
        .split_inclusive("-----END CERTIFICATE-----\n")
        .collect();
    assert_eq!(blocks.len(), 2);
    for (a, b) in blocks.iter().zip(&want_blocks) {
        assert_eq!(der(a), der(b));
    }
    reg(&t, &["ca", "export", "-o", "cafile.pem"]).ok();
    t.assert_mode("cafile.pem", 0o644);
    reg(&t, &["ca", "export", "-o", "cafile.pem"]).fails_naming(&["cafile.pem"]);

    let a1 = issue_dev(&t, "A", "a1", true);
    let b1 = issue_dev(&t, "B", "b1", true);
    issue_dev(&t, "B", "b2", true);
    reg(&t, &["device", "deactivate", &a1]).ok();
    reg(&t, &["device", "revoke", &b1, "--reason", "superseded"]).ok();

    let both = [
        "crl",
        "--ca",
        "A.crt",
        "--ca-key",
        "A.key",
        "--ca",
        "B.crt",
        "--ca-key",
        "B.key",
        "-o",
        "fleet.crl",
    ];
    reg(&t, &both).ok();
    // One file, one CRL per CA, each verified by OpenSSL and Python.
    let parts = split_crls(&t, "fleet.crl", "part");
    assert_eq!(parts.len(), 2);
    let (n_a, entries) = python_crl(&t, &parts[0], "A.crt");
    assert_eq!(entries, vec![format!("{a1}:certificate_hold")]);
    let (_, entries) = python_crl(&t, &parts[1], "B.crt");
    assert_eq!(entries, vec![format!("{b1}:superseded")]);
    assert_eq!(
        openssl_reasons(&t, &parts[1]),
        vec![format!("{b1}: Superseded")]
    );
    // A broker with the exported cafile and this one crlfile.
    for (dev, ok) in [("a1", false), ("b1", false), ("b2", true)] {
        assert_eq!(
            openssl_crl_check(&t, "cafile.pem", "fleet.crl", &format!("{dev}/client.crt")),
            ok,
            "{dev}"
        );
    }
    // The file it wrote for these CAs is replaced without --force, in
    // either order; the CRL numbers go on.
    reg(&t, &both).ok();
    reg(
        &t,
        &[
            "crl",
            "--ca",
            "B.crt",
            "--ca-key",
            "B.key",
            "--ca",
            "A.crt",
            "--ca-key",
            "A.key",
            "-o",
            "fleet.crl",
        ],
    )
    .ok();
    let parts = split_crls(&t, "fleet.crl", "again");
    let (n_a2, _) = python_crl(&t, &parts[1], "A.crt");
    assert!(n_a2 > n_a, "CRL number {n_a2} after {n_a}");
    // Not for a subset of them (B's CRL would be lost) nor other files.
    let before = t.read("fleet.crl");
    reg(
        &t,
        &[
            "crl",
            "--ca",
            "A.crt",
            "--ca-key",
            "A.key",
            "-o",
            "fleet.crl",
        ],
    )
    .fails_naming(&["fleet.crl", "exists"]);
    assert_eq!(t.read("fleet.crl"), before);
    reg(
        &t,
        &[
            "crl",
            "--ca",
            "A.crt",
            "--ca-key",
            "A.key",
            "-o",
            "cafile.pem",
        ],
    )
    .fails_naming(&["cafile.pem"]);
    // Pairs must match; DER holds one CRL.
    reg(
        &t,
        &[
            "crl", "--ca", "A.crt", "--ca", "B.crt", "--ca-key", "A.key", "-o", "x.crl",
        ],
    )
    .usage_error();
    let mut der = both.to_vec();
    der.extend_from_slice(&["--der", "--force"]);
    reg(&t, &der).usage_error();
    assert_eq!(t.read("fleet.crl"), before);
    t.assert_no_file("x.crl");
}

/// A registry an older devcert left (schema version 1, rows written with
/// the database's own client) is migrated in place by the first command of
/// this one: nothing lost; the device counts, common names and held
/// devices right; one namespace of serials enforced on the old rows too.
fn a_version_1_registry_is_migrated_in_place(b: Backend) {
    let Some(t) = RegDir::new(b) else { return };
    devcert_ca(&t, "CA", "/CN=Old CA");
    // Makes the version 1 schema (the command itself then fails: today's
    // CA row needs tables of version 4).
    t.devcert_cmd()
        .env("DEVCERT_TEST_SCHEMA_VERSION", "1")
        .args(["registry", "--db", &t.db, "ca", "add", "CA.crt"])
        .run();
    assert_eq!(t.schema_version(), "1");
    t.openssl_ok(&["x509", "-in", "CA.crt", "-outform", "DER", "-out", "CA.der"]);
    let der = t.read("CA.der");
    let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
    use sha2::Digest as _;
    let ca_serial = openssl_serial(&t, "CA.crt");
    t.raw_sql(&format!(
        "INSERT INTO cas (serial, subject, ski, not_before, not_after, registered_at, fingerprint, der)
         VALUES ('{ca_serial}', 'CN=Old CA', '', 0, 4102444800, 1700000000, BLOB'{}', BLOB'{}')",
        hex(&sha2::Sha256::digest(&der)),
        hex(&der)
    ))
    .unwrap();
    for (i, status) in ["active", "inactive", "active"].iter().enumerate() {
        t.raw_sql(&format!(
            "INSERT INTO devices (serial, ca_id, subject, status, not_before, not_after, registered_at, fingerprint)
             VALUES ('0A0{i}', 1, 'CN=old-{i},O=Fleet', '{status}', 0, 4102444800, 1700000000, BLOB'0{i}')"
        ))
        .unwrap();
    }
    // The first command of this devcert migrates it.
    let list = json(reg(&t, &["device", "list", "--json"]));
    assert_eq!(
        t.schema_version(),
        devcert::registry::SCHEMA_VERSION.to_string()
    );
    let got: Vec<(String, String)> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            (
                d["serial"].as_str().unwrap().into(),
                d["status"].as_str().unwrap().into(),
            )
        })
        .collect();
    let want: Vec<(String, String)> =
        [("0A00", "active"), ("0A01", "inactive"), ("0A02", "active")]
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect();
    assert_eq!(got, want);
    // Version 4 took the common names out of the stored subjects.
    let by_cn = json(reg(&t, &["device", "list", "--cn", "old-1", "--json"]));
    assert_eq!(by_cn[0]["serial"], "0A01");
    assert_eq!(json(reg(&t, &["ca", "list", "--json"]))[0]["devices"], 3);
    // The held device of version 1 is on the CRL.
    reg(
        &t,
        &[
            "crl", "--ca", "CA.crt", "--ca-key", "CA.key", "-o", "old.crl",
        ],
    )
    .ok();
    let crl = t.openssl_ok(&[
        "crl", "-in", "old.crl", "-noout", "-text", "-CAfile", "CA.crt",
    ]);
    assert!(crl.contains("Serial Number: 0A01"), "{crl}");
    assert!(!crl.contains("Serial Number: 0A00"), "{crl}");
    // Old rows claimed their serials: neither a device's nor the CA's can
    // be taken again, not even past devcert.
    assert!(t.raw_insert_device("0A02").is_err());
    assert!(t.raw_insert_device(&ca_serial).is_err());
    // And the registry goes on: a new device, counted with the old ones.
    t.devcert(&[
        "issue",
        "--cn",
        "new-1",
        "--ca",
        "CA.crt",
        "--ca-key",
        "CA.key",
        "--out-dir",
        "new-1",
        "--registry",
        &t.db,
    ])
    .ok();
    assert_eq!(json(reg(&t, &["ca", "list", "--json"]))[0]["devices"], 4);
}
