//! `devcert batch`: a fleet, one folder per device, re-runnable. Every
//! device is checked with tools devcert did not write: `openssl verify`,
//! `openssl x509`/`pkey`/`req` and Python `cryptography`; the manifest's
//! fields are compared with what OpenSSL reads from the files.
mod common;
use common::*;

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::time::SystemTime;

use serde_json::Value;

const FIVE: [&str; 5] = [
    "client.key",
    "client.csr",
    "client.crt",
    "client_pkcs8.key",
    "client_chain.crt",
];

const SEED_CSR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/seed/client.csr.cfg");
const SEED_CRT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/seed/client.crt.cfg");

/// `devcert batch --ca CA.crt --ca-key CA.key <extra>`.
fn batch(t: &TestDir, extra: &[&str]) -> Out {
    let mut args = vec!["batch", "--ca", "CA.crt", "--ca-key", "CA.key"];
    args.extend_from_slice(extra);
    t.devcert(&args)
}

/// The one JSON document `--json` printed.
fn json_doc(out: &Out) -> Value {
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("stdout is not one JSON document ({e})\n{}", out.describe()))
}

/// `DIR/manifest.json` as rows.
#[track_caller]
fn manifest(t: &TestDir, dir: &str) -> Vec<Value> {
    let text = t.read(&format!("{dir}/manifest.json"));
    let v: Value = serde_json::from_slice(&text)
        .unwrap_or_else(|e| panic!("{dir}/manifest.json is not JSON: {e}"));
    v.as_array()
        .unwrap_or_else(|| panic!("{dir}/manifest.json is not an array: {v}"))
        .clone()
}

fn s<'a>(row: &'a Value, key: &str) -> &'a str {
    row[key]
        .as_str()
        .unwrap_or_else(|| panic!("manifest row has no string `{key}`: {row}"))
}

/// The CSV manifest's data rows (after checking its header).
#[track_caller]
fn csv_rows(t: &TestDir, file: &str) -> Vec<Vec<String>> {
    let text = t.read_str(file);
    let mut lines = text.lines();
    assert_eq!(
        lines.next(),
        Some("cn,serial,not_after,sha256_fingerprint,dir"),
        "{file} header:\n{text}"
    );
    lines
        .map(|l| l.split(',').map(str::to_string).collect())
        .collect()
}

/// A JSON manifest row in the CSV's column order.
fn as_csv(row: &Value) -> Vec<String> {
    ["cn", "serial", "not_after", "sha256_fingerprint", "dir"]
        .iter()
        .map(|k| s(row, k).to_string())
        .collect()
}

/// What OpenSSL reads from a certificate file.
#[derive(Debug, Clone, PartialEq)]
struct Ossl {
    serial: String,
    fingerprint: String,
    /// `-dateopt iso_8601`: `2027-11-29 09:00:00Z`
    not_after: String,
    /// `-nameopt RFC2253`
    subject: String,
    pubkey: String,
}

#[track_caller]
fn ossl_cert(t: &TestDir, file: &str) -> Ossl {
    let out = t.openssl(&[
        "x509",
        "-in",
        file,
        "-noout",
        "-serial",
        "-fingerprint",
        "-sha256",
        "-enddate",
        "-dateopt",
        "iso_8601",
        "-subject",
        "-nameopt",
        "RFC2253",
        "-pubkey",
    ]);
    assert_eq!(out.code, Some(0), "openssl x509\n{}", out.describe());
    let text = out.stdout_str();
    let field = |prefix: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(prefix))
            .unwrap_or_else(|| panic!("openssl x509 printed no {prefix:?}:\n{text}"))
            .trim()
            .to_string()
    };
    Ossl {
        serial: field("serial="),
        fingerprint: field("sha256 Fingerprint="),
        not_after: field("notAfter="),
        subject: field("subject="),
        pubkey: pem_block(&text, "PUBLIC KEY"),
    }
}

/// The first PEM block with this label, normalised (trimmed lines).
fn pem_block(text: &str, label: &str) -> String {
    let begin = format!("-----BEGIN {label}-----");
    let end = format!("-----END {label}-----");
    let start = text
        .find(&begin)
        .unwrap_or_else(|| panic!("no {label} block in:\n{text}"));
    let stop = text[start..]
        .find(&end)
        .unwrap_or_else(|| panic!("unterminated {label} block in:\n{text}"))
        + start
        + end.len();
    text[start..stop]
        .lines()
        .map(str::trim)
        .collect::<Vec<_>>()
        .join("\n")
}

/// `openssl pkey -in KEY -pubout`: the public key of a private-key file.
#[track_caller]
fn ossl_pubkey(t: &TestDir, key: &str) -> String {
    let text = t.openssl_ok(&["pkey", "-in", key, "-pubout"]);
    pem_block(&text, "PUBLIC KEY")
}

/// `openssl verify -CAfile CA.crt` over many certificates in one call:
/// every one must be OK.
#[track_caller]
fn verify_all(t: &TestDir, ca: &str, files: &[String]) {
    let mut args = vec!["verify", "-CAfile", ca];
    args.extend(files.iter().map(String::as_str));
    let out = t.openssl(&args);
    assert_eq!(out.code, Some(0), "openssl verify\n{}", out.describe());
    let text = out.stdout_str();
    for f in files {
        assert!(
            text.lines().any(|l| l == format!("{f}: OK")),
            "openssl verify did not accept {f}\n{}",
            out.describe()
        );
    }
}

/// One device folder, checked with OpenSSL and Python `cryptography`
/// (except `openssl verify` of client.crt, done in bulk by `verify_all`):
/// exactly the five files, key modes, the chain, the CSR and both keys
/// holding the certificate's public key. Returns OpenSSL's reading of the
/// certificate.
#[track_caller]
fn assert_device(t: &TestDir, dir: &str, ca: &str) -> Ossl {
    let f = |n: &str| format!("{dir}/{n}");
    let mut present: Vec<String> = fs::read_dir(t.path(dir))
        .unwrap_or_else(|e| panic!("no device folder {dir}: {e}"))
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    present.sort();
    let mut five: Vec<String> = FIVE.iter().map(|s| s.to_string()).collect();
    five.sort();
    assert_eq!(present, five, "{dir} must hold exactly the five files");
    t.assert_mode(&f("client.key"), 0o600);
    t.assert_mode(&f("client_pkcs8.key"), 0o600);
    for n in ["client.csr", "client.crt", "client_chain.crt"] {
        t.assert_mode(&f(n), 0o644);
    }

    let cert = ossl_cert(t, &f("client.crt"));
    // The chain verifies on its own (its own certificates as untrusted).
    t.assert_openssl_verify(
        &["-CAfile", ca, "-untrusted", &f("client_chain.crt")],
        &f("client_chain.crt"),
    );
    // Both key files: readable by openssl, the certificate's key.
    assert_eq!(
        ossl_pubkey(t, &f("client.key")),
        cert.pubkey,
        "{dir}/client.key is not the certificate's key"
    );
    assert_eq!(
        ossl_pubkey(t, &f("client_pkcs8.key")),
        cert.pubkey,
        "{dir}/client_pkcs8.key is not the certificate's key"
    );
    assert_eq!(
        first_pem_label(&t.read_str(&f("client_pkcs8.key"))).as_deref(),
        Some("PRIVATE KEY"),
        "{dir}/client_pkcs8.key must be PKCS#8 PEM"
    );
    // The CSR's self-signature verifies and it holds the same key.
    let out = t.openssl(&[
        "req",
        "-verify",
        "-noout",
        "-pubkey",
        "-in",
        &f("client.csr"),
    ]);
    assert!(
        out.code == Some(0) && out.text().contains("verify OK"),
        "openssl req -verify {dir}/client.csr\n{}",
        out.describe()
    );
    assert_eq!(
        pem_block(&out.stdout_str(), "PUBLIC KEY"),
        cert.pubkey,
        "{dir}/client.csr holds another key than the certificate"
    );
    // Chain = this certificate, then the CA (Python cryptography).
    let chain = t.certs(&f("client_chain.crt"));
    assert_eq!(chain.int("count"), 2, "{dir}/client_chain.crt: leaf + CA");
    assert_eq!(
        chain.get("c0.fingerprint"),
        cert.fingerprint.replace(':', "").to_lowercase(),
        "{dir}/client_chain.crt must start with client.crt"
    );
    assert_eq!(
        chain.get("c1.fingerprint"),
        t.cert(ca).get("fingerprint"),
        "{dir}/client_chain.crt must end with the CA"
    );
    cert
}

/// The manifest row of `dir` says what OpenSSL reads from its files.
#[track_caller]
fn assert_row(row: &Value, cn: &str, dir: &str, cert: &Ossl, status: &str) {
    assert_eq!(s(row, "cn"), cn, "{row}");
    assert_eq!(s(row, "dir"), dir, "{row}");
    assert_eq!(s(row, "status"), status, "{row}");
    assert_eq!(s(row, "serial"), cert.serial, "serial of {dir}: {row}");
    assert_eq!(
        s(row, "sha256_fingerprint"),
        cert.fingerprint,
        "fingerprint of {dir}: {row}"
    );
    // RFC 3339 in the manifest, ISO 8601 with a space from openssl.
    assert_eq!(
        s(row, "not_after").replacen('T', " ", 1),
        cert.not_after,
        "notAfter of {dir}: {row}"
    );
    let files: Vec<String> = row["files"]
        .as_array()
        .unwrap_or_else(|| panic!("no files in {row}"))
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect();
    let expected: Vec<String> = FIVE.iter().map(|n| format!("{dir}/{n}")).collect();
    assert_eq!(files, expected, "files of {dir}");
}

/// `openssl verify` on every device's certificate, then the per-device
/// checks ([`prefetch_devices`]); the certificates' paths.
fn check_devices(t: &TestDir, dirs: &[String], ca: &str) -> Vec<String> {
    let crts: Vec<String> = dirs.iter().map(|d| format!("{d}/client.crt")).collect();
    verify_all(t, ca, &crts);
    prefetch_devices(t, dirs, ca);
    crts
}

/// Prefetch the Python facts of every device in one process.
fn prefetch_devices(t: &TestDir, dirs: &[String], ca: &str) {
    let chains: Vec<String> = dirs
        .iter()
        .map(|d| format!("{d}/client_chain.crt"))
        .collect();
    let crts: Vec<String> = dirs.iter().map(|d| format!("{d}/client.crt")).collect();
    let mut q: Vec<(&str, Vec<&str>)> = vec![("cert", vec![ca])];
    for (c, k) in chains.iter().zip(&crts) {
        q.push(("certs", vec![c.as_str()]));
        q.push(("cert", vec![k.as_str()]));
    }
    let q: Vec<(&str, &[&str])> = q.iter().map(|(c, a)| (*c, a.as_slice())).collect();
    t.prefetch(&q);
}

/// Sub-folders of `dir`, sorted.
fn folders(t: &TestDir, dir: &str) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(t.path(dir))
        .unwrap()
        .map(|e| e.unwrap())
        .filter(|e| e.file_type().unwrap().is_dir())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

/// Every file under `dir` with its bytes and mtime.
fn snapshot(t: &TestDir, dir: &str) -> BTreeMap<String, (Vec<u8>, SystemTime)> {
    t.listing()
        .into_iter()
        .filter(|(k, _)| k.starts_with(&format!("{dir}/")) && !k.ends_with('/'))
        .map(|(k, v)| {
            let mtime = fs::metadata(t.path(&k)).unwrap().modified().unwrap();
            (k, (v, mtime))
        })
        .collect()
}

/// The one summary line on stderr (stderr is a pipe here, not a terminal:
/// no progress bar).
#[track_caller]
fn assert_summary(out: &Out, devices: usize, dir: &str, issued: usize, skipped: usize) {
    assert!(
        !out.stderr.contains('\r') && !out.stderr.contains('\x1b'),
        "no progress bar when stderr is not a terminal\n{}",
        out.describe()
    );
    let lines: Vec<&str> = out
        .stderr
        .lines()
        .filter(|l| !l.starts_with("warning:"))
        .collect();
    let head = format!(
        "batch: {devices} devices in {dir} ({issued} issued, {skipped} already complete) in "
    );
    // A rate only when devices were made (an all-skipped run is not "0 devices/s").
    let rate = lines.first().is_some_and(|l| l.ends_with(" devices/s"));
    assert!(
        lines.len() == 1 && lines[0].starts_with(&head) && rate == (issued > 0),
        "expected one summary line {head:?}...\n{}",
        out.describe()
    );
}

#[test]
fn count_25_ec_every_device_verifies_and_the_manifests_match_openssl() {
    let t = TestDir::new();
    t.ec_ca("CA");
    let out = batch(
        &t,
        &[
            "--count",
            "25",
            "--cn-prefix",
            "dev-",
            "--jobs",
            "2",
            "--out-dir",
            "fleet",
            "--manifest-csv",
            "fleet.csv",
        ],
    )
    .ok()
    .no_warning();
    assert!(
        out.stdout.is_empty(),
        "stdout without --json\n{}",
        out.describe()
    );
    assert_summary(&out, 25, "fleet", 25, 0);

    let names: Vec<String> = (1..=25).map(|i| format!("dev-{i:04}")).collect();
    assert_eq!(folders(&t, "fleet"), names, "one folder per device");
    let dirs: Vec<String> = names.iter().map(|n| format!("fleet/{n}")).collect();
    // Nothing else in the fleet folder (no temp files left).
    let mut top: Vec<String> = fs::read_dir(t.path("fleet"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    top.sort();
    let mut expected_top = names.clone();
    expected_top.push("manifest.json".into());
    expected_top.sort();
    assert_eq!(top, expected_top);
    t.assert_mode("fleet/manifest.json", 0o644);
    t.assert_mode("fleet.csv", 0o644);

    check_devices(&t, &dirs, "CA.crt");

    let rows = manifest(&t, "fleet");
    assert_eq!(rows.len(), 25, "manifest rows == devices");
    let mut serials = BTreeSet::new();
    for ((row, name), dir) in rows.iter().zip(&names).zip(&dirs) {
        let cert = assert_device(&t, dir, "CA.crt");
        assert_row(row, name, dir, &cert, "issued");
        assert_eq!(cert.subject, format!("CN={name}"), "subject of {dir}");
        assert!(
            serials.insert(cert.serial.clone()),
            "serial repeated: {}",
            cert.serial
        );
        // Default profile on an EC P-256 key.
        let c = t.cert(&format!("{dir}/client.crt"));
        assert_eq!(c.get("eku"), OID_CLIENT_AUTH, "{dir}");
        assert!(c.get("bc").starts_with("ca=0"), "{dir}: {}", c.get("bc"));
    }
    assert_eq!(serials.len(), 25, "serials distinct");
    let text = t.pkey_text("fleet/dev-0001/client.key", &[]);
    assert!(text.contains("prime256v1"), "EC P-256 by default:\n{text}");

    // The CSV says the same as the JSON, row for row.
    let csv = csv_rows(&t, "fleet.csv");
    let from_json: Vec<Vec<String>> = rows.iter().map(as_csv).collect();
    assert_eq!(csv, from_json, "fleet.csv rows != manifest.json rows");
}

#[test]
fn names_file_with_template_profile_and_days() {
    let t = TestDir::new();
    t.ec_ca("CA");
    // Comments, blank lines, CRLF, surrounding blanks, no final newline.
    t.write(
        "devices.txt",
        "# sensors of site 1\r\n\r\n  sensor-a  \r\nsensor_b\r\n\t# indented comment\r\n   \r\n\
         gw.01@site-1\t\r\n# last\r\nlast-one",
    );
    let names = ["sensor-a", "sensor_b", "gw.01@site-1", "last-one"];
    let out = batch(
        &t,
        &[
            "--names",
            "devices.txt",
            "--config",
            SEED_CSR,
            "--profile",
            SEED_CRT,
            "--days",
            "500",
            "--registry",
            "reg.db",
            "--out-dir",
            "out/fleet",
        ],
    )
    .ok();
    assert_summary(&out, 4, "out/fleet", 4, 0);
    assert_eq!(folders(&t, "out/fleet"), {
        let mut v: Vec<String> = names.iter().map(|s| s.to_string()).collect();
        v.sort();
        v
    });
    let dirs: Vec<String> = names.iter().map(|n| format!("out/fleet/{n}")).collect();
    let crts = check_devices(&t, &dirs, "CA.crt");

    let template = fs::read_to_string(SEED_CSR).unwrap();
    assert!(
        template.contains("\nCN=client-test\n"),
        "seed template changed"
    );
    let rows = manifest(&t, "out/fleet");
    assert_eq!(rows.len(), names.len());
    let mut serials = BTreeSet::new();
    for ((row, name), dir) in rows.iter().zip(names).zip(&dirs) {
        let cert = assert_device(&t, dir, "CA.crt");
        assert_row(row, name, dir, &cert, "issued");
        serials.insert(cert.serial.clone());
        // The template's subject with the CN replaced...
        assert_eq!(
            cert.subject,
            format!("CN={name},emailAddress=xxx@xxx,OU=MQTT,O=ALI,L=HZ,ST=ZJ,C=CN"),
            "subject of {dir}"
        );
        // ... DER-identical to what OpenSSL makes of that config.
        let cfg = format!("ref-{name}.cfg");
        t.write(
            &cfg,
            template.replace("CN=client-test", &format!("CN={name}")),
        );
        let refcsr = format!("ref-{name}.csr");
        t.openssl_ok(&[
            "req",
            "-new",
            "-config",
            &cfg,
            "-key",
            &format!("{dir}/client.key"),
            "-out",
            &refcsr,
        ]);
        let crt = t.cert(&format!("{dir}/client.crt"));
        assert_eq!(
            crt.get("subject_der"),
            t.csr(&refcsr).get("subject_der"),
            "subject of {dir} is not what openssl req makes of the template"
        );
        assert_eq!(
            t.csr(&format!("{dir}/client.csr")).get("subject_der"),
            crt.get("subject_der"),
            "{dir}: CSR subject != certificate subject"
        );
        // The seed profile's extensions.
        assert_eq!(
            crt.get("ku"),
            "digital_signature,content_commitment,key_encipherment,data_encipherment,key_cert_sign"
        );
        assert!(crt.get("bc").starts_with("ca=0"), "{}", crt.get("bc"));
        assert!(crt.ext_oids().contains(&OID_AKI.to_string()));
        // --days 500 from now.
        let (nb, na) = (crt.int("not_before"), crt.int("not_after"));
        assert!((nb - now()).abs() < 600, "{dir}: notBefore {nb} is not now");
        assert!(
            (na - nb - 500 * DAY).abs() <= 1,
            "{dir}: validity {} s, expected 500 days",
            na - nb
        );
    }
    // OpenSSL agrees on the 500 days.
    let first = &crts[0];
    let lo = (500 * DAY - 600).to_string();
    let hi = (500 * DAY + 600).to_string();
    t.openssl_ok(&["x509", "-in", first, "-noout", "-checkend", &lo]);
    let out = t.openssl(&["x509", "-in", first, "-noout", "-checkend", &hi]);
    assert_eq!(
        out.code,
        Some(1),
        "expires within 500 d + 10 min\n{}",
        out.describe()
    );

    // --registry registered every device (and the CA).
    let list = t
        .devcert(&["registry", "--db", "reg.db", "device", "list", "--json"])
        .ok();
    let list = json_doc(&list);
    let registered: BTreeSet<String> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["serial"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(registered, serials, "registry devices != fleet");
    let cas = json_doc(
        &t.devcert(&["registry", "--db", "reg.db", "ca", "list", "--json"])
            .ok(),
    );
    assert_eq!(cas.as_array().unwrap().len(), 1, "{cas}");
}

#[test]
fn rerun_skips_complete_devices_and_redoes_half_deleted_ones() {
    let t = TestDir::new();
    t.ec_ca("CA");
    let args = [
        "--count",
        "6",
        "--cn-prefix",
        "r-",
        "--jobs",
        "2",
        "--out-dir",
        "fleet",
        "--json",
    ];
    let first = batch(&t, &args).ok();
    let doc = json_doc(&first);
    assert_eq!(
        (doc["issued"].as_u64(), doc["skipped"].as_u64()),
        (Some(6), Some(0))
    );
    let rows1 = manifest(&t, "fleet");
    let before = snapshot(&t, "fleet");

    // Second run: everything complete, nothing touched.
    let second = batch(&t, &args).ok();
    let doc = json_doc(&second);
    assert_eq!(
        (
            doc["devices"].as_u64(),
            doc["issued"].as_u64(),
            doc["skipped"].as_u64()
        ),
        (Some(6), Some(0), Some(6)),
        "{doc}"
    );
    assert_summary(&second, 6, "fleet", 0, 6);
    let rows2 = manifest(&t, "fleet");
    assert_eq!(rows2.len(), 6);
    for (a, b) in rows1.iter().zip(&rows2) {
        assert_eq!(s(b, "status"), "skipped", "{b}");
        assert_eq!(as_csv(a), as_csv(b), "a skipped device's row changed");
        assert_eq!(a["files"], b["files"]);
    }
    let after = snapshot(&t, "fleet");
    for (k, (bytes, mtime)) in &before {
        if k == "fleet/manifest.json" {
            continue;
        }
        let (b2, m2) = &after[k];
        assert!(b2 == bytes && m2 == mtime, "{k} was rewritten by a re-run");
    }
    assert_eq!(
        before.keys().collect::<Vec<_>>(),
        after.keys().collect::<Vec<_>>()
    );

    // Half-delete two devices (and leave a killed run's temp file in one).
    fs::remove_file(t.path("fleet/r-0002/client.crt")).unwrap();
    t.write("fleet/r-0002/.devcert-stale123.tmp", "half");
    fs::remove_dir_all(t.path("fleet/r-0005")).unwrap();
    // r-0002 is not as a batch leaves a device: refused without --force.
    batch(&t, &args).fails_naming(&["fleet/r-0002", "not a complete device"]);
    let third = batch(&t, &[&args[..], &["--force"]].concat()).ok();
    let doc = json_doc(&third);
    assert_eq!(
        (doc["issued"].as_u64(), doc["skipped"].as_u64()),
        (Some(2), Some(4)),
        "{doc}"
    );
    let rows3 = manifest(&t, "fleet");
    let redone = ["r-0002", "r-0005"];
    let dirs: Vec<String> = (1..=6).map(|i| format!("fleet/r-{i:04}")).collect();
    check_devices(&t, &dirs, "CA.crt");
    let after3 = snapshot(&t, "fleet");
    let mut serials = BTreeSet::new();
    for ((row, old), dir) in rows3.iter().zip(&rows1).zip(&dirs) {
        let cn = dir.trim_start_matches("fleet/");
        let cert = assert_device(&t, dir, "CA.crt");
        serials.insert(cert.serial.clone());
        if redone.contains(&cn) {
            assert_row(row, cn, dir, &cert, "issued");
            assert_ne!(s(row, "serial"), s(old, "serial"), "{dir} not reissued");
        } else {
            assert_row(row, cn, dir, &cert, "skipped");
            assert_eq!(as_csv(row), as_csv(old));
            for n in FIVE {
                let k = format!("{dir}/{n}");
                assert!(after3[&k] == before[&k], "{k} of a complete device changed");
            }
        }
    }
    assert_eq!(serials.len(), 6, "serials distinct after the re-run");
    // r-0002 got a whole new set, not a certificate for its old key.
    assert_ne!(
        after3["fleet/r-0002/client.key"].0, before["fleet/r-0002/client.key"].0,
        "r-0002 was redone with its old key"
    );
}

#[test]
fn bad_name_lists_are_refused_before_any_device() {
    let t = TestDir::new();
    t.ec_ca("CA");
    let long = "a".repeat(65);
    let cases: Vec<(String, usize, &str)> = vec![
        ("dev-1\ndev-2\n# x\n\ndev-1\n".into(), 5, "dev-1"),
        (" dev-1 \r\ndev-1\r\n".into(), 2, "dev-1"),
        ("ok\n../x\n".into(), 2, "../x"),
        ("ok\n\na/b\n".into(), 3, "a/b"),
        ("sensor 01\n".into(), 1, "sensor 01"),
        ("ok\n..\n".into(), 2, ".."),
        ("ok\n.hidden\n".into(), 2, ".hidden"),
        ("/abs\n".into(), 1, "/abs"),
        ("x\\y\n".into(), 1, "x\\y"),
        ("ok\nfine\nbad;rm\n".into(), 3, "bad;rm"),
        ("gerät\n".into(), 1, "gerät"),
        (format!("ok\n{long}\n"), 2, "aaaa"),
    ];
    for (i, (text, line, needle)) in cases.iter().enumerate() {
        let file = format!("names{i}.txt");
        t.write(&file, text);
        let before = t.listing();
        let out = batch(
            &t,
            &[
                "--names",
                &file,
                "--registry",
                "reg.db",
                "--manifest-csv",
                "fleet.csv",
                "--out-dir",
                "fleet",
            ],
        )
        .fails_naming(&[&format!("{file}:{line}"), needle]);
        if text.matches("dev-1").count() > 1 {
            out.stderr_has("duplicate");
        }
        // No folder, no manifest, no registry, nothing.
        t.assert_unchanged(&before);
    }
    // A list with no device at all.
    t.write("empty.txt", "# nothing yet\n\n  \n");
    let before = t.listing();
    batch(&t, &["--names", "empty.txt", "--out-dir", "fleet"]).fails_naming(&["empty.txt"]);
    t.assert_unchanged(&before);
    // --count with a prefix that makes unsafe names.
    for prefix in ["../x", "a/b", "sensor ", ".x"] {
        let before = t.listing();
        batch(
            &t,
            &["--count", "3", "--cn-prefix", prefix, "--out-dir", "fleet"],
        )
        .fails_naming(&["--cn-prefix"]);
        t.assert_unchanged(&before);
    }
}

#[test]
fn manifest_csv_refuses_a_foreign_file_and_replaces_its_own() {
    let t = TestDir::new();
    t.ec_ca("CA");
    let args = |csv: &'static str, force: bool| {
        let mut a = vec![
            "--count",
            "3",
            "--cn-prefix",
            "c-",
            "--out-dir",
            "fleet",
            "--manifest-csv",
            csv,
        ];
        if force {
            a.push("--force");
        }
        a
    };
    // A file that is not a devcert manifest (and an empty one) is refused
    // before any device is made, and left as it was.
    t.write("devices.csv", "name,owner\nc-1,alice\n");
    t.write("empty.csv", "");
    for csv in ["devices.csv", "empty.csv"] {
        let before = t.listing();
        batch(&t, &args(csv, false))
            .fails_naming(&[csv])
            .stderr_has("--force");
        t.assert_unchanged(&before);
    }
    // --force replaces it.
    batch(&t, &args("devices.csv", true)).ok();
    let rows = manifest(&t, "fleet");
    let from_json: Vec<Vec<String>> = rows.iter().map(as_csv).collect();
    assert_eq!(rows.len(), 3);
    assert_eq!(csv_rows(&t, "devices.csv"), from_json);
    t.assert_mode("devices.csv", 0o644);

    // A re-run replaces its own CSV without --force (a stale row goes).
    let mut text = t.read_str("devices.csv");
    text.push_str("stale,00,2000-01-01T00:00:00Z,00,fleet/stale\n");
    t.write("devices.csv", &text);
    let out = batch(&t, &args("devices.csv", false)).ok();
    assert_summary(&out, 3, "fleet", 0, 3);
    assert_eq!(csv_rows(&t, "devices.csv"), from_json);
    // On a re-run too, a foreign file is refused and the fleet left alone.
    t.write("other.csv", "serial\n01\n");
    let before = t.listing();
    batch(&t, &args("other.csv", false)).fails_naming(&["other.csv"]);
    t.assert_unchanged(&before);
}

#[test]
fn small_rsa_batch_verifies_with_rsa_2048_keys() {
    let t = TestDir::new();
    t.ec_ca("CA");
    batch(
        &t,
        &[
            "--algo",
            "rsa",
            "--count",
            "2",
            "--cn-prefix",
            "rsa-",
            "--out-dir",
            "fleet",
        ],
    )
    .ok();
    let dirs = ["fleet/rsa-0001".to_string(), "fleet/rsa-0002".to_string()];
    check_devices(&t, &dirs, "CA.crt");
    let rows = manifest(&t, "fleet");
    assert_eq!(rows.len(), 2);
    for (row, dir) in rows.iter().zip(&dirs) {
        let cert = assert_device(&t, dir, "CA.crt");
        assert_row(row, dir.trim_start_matches("fleet/"), dir, &cert, "issued");
        for key in ["client.key", "client_pkcs8.key"] {
            let text = t.pkey_text(&format!("{dir}/{key}"), &[]);
            assert!(
                text.contains("Private-Key: (2048 bit"),
                "{dir}/{key} is not RSA 2048:\n{}",
                text.lines().next().unwrap_or("")
            );
        }
        let text = t.openssl_ok(&[
            "x509",
            "-in",
            &format!("{dir}/client.crt"),
            "-noout",
            "-text",
        ]);
        assert!(text.contains("rsaEncryption") && text.contains("Public-Key: (2048 bit)"));
    }
    assert_ne!(s(&rows[0], "serial"), s(&rows[1], "serial"));
}

#[test]
fn summary_on_stderr_and_json_on_stdout() {
    let t = TestDir::new();
    t.ec_ca("CA");
    let out = batch(
        &t,
        &[
            "--count",
            "3",
            "--cn-prefix",
            "j",
            "--out-dir",
            "fleet",
            "--json",
        ],
    )
    .ok()
    .no_warning();
    assert_summary(&out, 3, "fleet", 3, 0);
    let doc = json_doc(&out);
    assert_eq!(doc["devices"].as_u64(), Some(3), "{doc}");
    assert_eq!(doc["issued"].as_u64(), Some(3), "{doc}");
    assert_eq!(doc["skipped"].as_u64(), Some(0), "{doc}");
    assert_eq!(doc["out_dir"].as_str(), Some("fleet"), "{doc}");
    assert_eq!(
        doc["manifest"].as_str(),
        Some("fleet/manifest.json"),
        "{doc}"
    );
    assert!(doc["manifest_csv"].is_null(), "{doc}");
    // Without --json: nothing on stdout, the same summary on stderr.
    let out = batch(
        &t,
        &["--count", "3", "--cn-prefix", "j", "--out-dir", "fleet"],
    )
    .ok();
    assert!(out.stdout.is_empty(), "{}", out.describe());
    assert_summary(&out, 3, "fleet", 0, 3);
    // -q silences the summary, not the product.
    let out = t
        .devcert(&[
            "-q",
            "batch",
            "--ca",
            "CA.crt",
            "--ca-key",
            "CA.key",
            "--count",
            "3",
            "--cn-prefix",
            "j",
            "--out-dir",
            "fleet",
            "--json",
        ])
        .ok();
    assert!(out.stderr.is_empty(), "{}", out.describe());
    assert_eq!(json_doc(&out)["skipped"].as_u64(), Some(3));
}

/// `batch` issues each device as `issue` does, so it warns as `issue` (and
/// `sign`, CLI.md) does: a device certificate outliving its CA, and the
/// seed profile's keyCertSign on a CA:FALSE certificate. `issue` is run
/// first as the reference.
#[test]
fn warns_as_issue_does() {
    let t = TestDir::new();
    t.short_ca("CA", 30);
    let profile = ["--profile", SEED_CRT];
    t.devcert(
        &[
            &[
                "issue", "--ca", "CA.crt", "--ca-key", "CA.key", "--cn", "one",
            ][..],
            &profile,
            &["--out-dir", "one"],
        ]
        .concat(),
    )
    .ok()
    .warns_about(&["CA's"])
    .warns_about(&["keyCertSign"]);
    let out = batch(
        &t,
        &[
            &["--count", "2", "--cn-prefix", "w-", "--out-dir", "fleet"][..],
            &profile,
        ]
        .concat(),
    )
    .ok();
    // The devices are still made (a warning, not an error).
    let crts = [
        "fleet/w-0001/client.crt".to_string(),
        "fleet/w-0002/client.crt".to_string(),
    ];
    verify_all(&t, "CA.crt", &crts);
    assert_summary(&out, 2, "fleet", 2, 0);
    out.warns_about(&["CA's"]).warns_about(&["keyCertSign"]);
}

/// A device counts as complete only when its five files agree: a key, CSR,
/// chain or certificate from another device, or a truncated certificate,
/// gets the device redone; a re-run with another CA touches none of them.
#[test]
fn rerun_redoes_inconsistent_devices_and_refuses_devices_of_another_ca() {
    let t = TestDir::new();
    t.ec_ca("CA");
    let args = [
        "--count",
        "7",
        "--cn-prefix",
        "t-",
        "--out-dir",
        "fleet",
        "--json",
    ];
    batch(&t, &args).ok();
    let rows1 = manifest(&t, "fleet");
    let copy = |from: &str, to: &str| {
        fs::copy(
            t.path(&format!("fleet/t-0007/{from}")),
            t.path(&format!("fleet/{to}/{from}")),
        )
        .unwrap();
    };
    copy("client_pkcs8.key", "t-0001");
    copy("client.key", "t-0002");
    copy("client.csr", "t-0003");
    copy("client_chain.crt", "t-0004");
    let crt = t.read("fleet/t-0005/client.crt");
    t.write("fleet/t-0005/client.crt", &crt[..crt.len() / 2]);
    copy("client.crt", "t-0006");
    let keep = snapshot(&t, "fleet/t-0007");

    // A batch never leaves a device folder like these (each appears whole),
    // so without --force they are refused as files it did not write.
    let damaged = snapshot(&t, "fleet");
    batch(&t, &args)
        .fails_naming(&["fleet/t-000", "not a complete device"])
        .stderr_has("--force");
    assert!(
        snapshot(&t, "fleet") == damaged,
        "a refused batch touched the fleet"
    );
    let out = batch(&t, &[&args[..], &["--force"]].concat()).ok();
    let doc = json_doc(&out);
    assert_eq!(
        (doc["issued"].as_u64(), doc["skipped"].as_u64()),
        (Some(6), Some(1)),
        "{doc}"
    );
    let dirs: Vec<String> = (1..=7).map(|i| format!("fleet/t-{i:04}")).collect();
    let crts = check_devices(&t, &dirs, "CA.crt");
    let rows2 = manifest(&t, "fleet");
    let mut serials = BTreeSet::new();
    for ((row, old), dir) in rows2.iter().zip(&rows1).zip(&dirs) {
        let cn = dir.trim_start_matches("fleet/");
        let cert = assert_device(&t, dir, "CA.crt");
        assert!(serials.insert(cert.serial.clone()), "serial repeated");
        if cn == "t-0007" {
            assert_row(row, cn, dir, &cert, "skipped");
            assert_eq!(as_csv(row), as_csv(old));
        } else {
            assert_row(row, cn, dir, &cert, "issued");
            assert_eq!(cert.subject, format!("CN={cn}"));
        }
    }
    let now7 = snapshot(&t, "fleet/t-0007");
    assert!(now7 == keep, "the complete device t-7 was touched");

    // Another CA: its devices are complete, so they are neither skipped as
    // this CA's nor replaced (their keys may be on hardware): refused.
    let before = snapshot(&t, "fleet");
    let cnf = t.min_cnf();
    t.openssl_ca_with("CA2", &cnf, &EC_P256, "/CN=Second CA", &[]);
    t.devcert(
        &[
            &["batch", "--ca", "CA2.crt", "--ca-key", "CA2.key"][..],
            &args,
        ]
        .concat(),
    )
    .fails_naming(&["fleet/t-", "another CA", "Test EC Root CA"]);
    assert!(
        snapshot(&t, "fleet") == before,
        "a device of the other CA was touched"
    );
    verify_all(&t, "CA.crt", &crts);
}

/// A device that cannot be written fails the batch (exit 1, naming it);
/// the previous manifests stay as they were and no temp file is left.
#[test]
fn a_device_that_cannot_be_written_fails_the_batch_cleanly() {
    let t = TestDir::new();
    t.ec_ca("CA");
    let args = |n: &'static str| {
        [
            "--count",
            n,
            "--cn-prefix",
            "x",
            "--jobs",
            "1",
            "--out-dir",
            "fleet",
            "--manifest-csv",
            "fleet.csv",
        ]
    };
    batch(&t, &args("3")).ok();
    // Where device x4 goes there is a file.
    t.write("fleet/x0004", "not a folder");
    let before = t.listing();
    batch(&t, &args("5")).fails_naming(&["fleet/x0004", "not a folder"]);
    let after = t.listing();
    for k in ["fleet/manifest.json", "fleet.csv", "fleet/x0004"] {
        assert!(before[k] == after[k], "{k} changed by a failed batch");
    }
    for (k, v) in &before {
        if k.starts_with("fleet/x0001")
            || k.starts_with("fleet/x0002")
            || k.starts_with("fleet/x0003")
        {
            assert!(after[k] == *v, "{k} of a complete device changed");
        }
    }
    let stray: Vec<&String> = after
        .keys()
        .filter(|k| !before.contains_key(*k) && !k.starts_with("fleet/x0005"))
        .collect();
    assert!(stray.is_empty(), "left behind by a failed batch: {stray:?}");
    // x0005 (after the failure, one job) is either not made or complete.
    if t.exists("fleet/x0005") {
        assert_device(&t, "fleet/x0005", "CA.crt");
    }
    assert_eq!(manifest(&t, "fleet").len(), 3);
}

/// A template in long form with repeated fields: its subject with the CN
/// replaced, DER-identical to what `openssl req` makes of it, and its
/// default_md used. A template without a CN is refused before anything.
#[test]
fn long_form_template_with_repeated_fields_and_its_digest() {
    let t = TestDir::new();
    t.ec_ca("CA");
    let template = "[ req ]\nprompt = no\ndefault_md = sha384\ndistinguished_name = subj\n\
                    [ subj ]\ncountryName = DE\norganizationName = Acme\n\
                    0.organizationalUnitName = Fleet\n1.organizationalUnitName = Sensors\n\
                    commonName = will-be-replaced\nserialNumber = 42\n";
    t.write("tmpl.cfg", template);
    batch(
        &t,
        &[
            "--count",
            "2",
            "--cn-prefix",
            "s-",
            "--config",
            "tmpl.cfg",
            "--out-dir",
            "fleet",
        ],
    )
    .ok();
    let dirs = ["fleet/s-0001".to_string(), "fleet/s-0002".to_string()];
    check_devices(&t, &dirs, "CA.crt");
    for (row, dir) in manifest(&t, "fleet").iter().zip(&dirs) {
        let cn = dir.trim_start_matches("fleet/");
        let cert = assert_device(&t, dir, "CA.crt");
        assert_row(row, cn, dir, &cert, "issued");
        assert_eq!(
            cert.subject,
            format!("serialNumber=42,CN={cn},OU=Sensors,OU=Fleet,O=Acme,C=DE")
        );
        let cfg = format!("ref-{cn}.cfg");
        t.write(&cfg, template.replace("will-be-replaced", cn));
        let refcsr = format!("ref-{cn}.csr");
        t.openssl_ok(&[
            "req",
            "-new",
            "-config",
            &cfg,
            "-key",
            &format!("{dir}/client.key"),
            "-out",
            &refcsr,
        ]);
        assert_eq!(
            t.cert(&format!("{dir}/client.crt")).get("subject_der"),
            t.csr(&refcsr).get("subject_der"),
            "subject of {dir} is not what openssl req makes of the template"
        );
        let text = t.openssl_ok(&[
            "x509",
            "-in",
            &format!("{dir}/client.crt"),
            "-noout",
            "-text",
        ]);
        assert!(
            text.contains("Signature Algorithm: ecdsa-with-SHA384"),
            "the template's default_md sha384 is used:\n{text}"
        );
    }
    t.write(
        "nocn.cfg",
        "[req]\nprompt = no\ndistinguished_name = dn\n[dn]\nO = Acme\n",
    );
    let before = t.listing();
    batch(
        &t,
        &[
            "--count",
            "2",
            "--cn-prefix",
            "n-",
            "--config",
            "nocn.cfg",
            "--out-dir",
            "other",
        ],
    )
    .fails_naming(&["nocn.cfg"]);
    t.assert_unchanged(&before);
}

/// Usage errors are clap's (exit 2) and make nothing; `--names -` reads
/// the list from standard input.
#[test]
fn usage_errors_and_names_from_stdin() {
    let t = TestDir::new();
    t.ec_ca("CA");
    t.write("n.txt", "a\n");
    let before = t.listing();
    for bad in [
        &["--count", "0", "--cn-prefix", "x"][..],
        &["--count", "2"],
        &["--cn-prefix", "x"],
        &[],
        &["--names", "n.txt", "--count", "2", "--cn-prefix", "x"],
        &["--count", "1", "--cn-prefix", "x", "--jobs", "0"],
        &["--count", "1", "--cn-prefix", "x", "--days", "0"],
    ] {
        batch(&t, &[bad, &["--out-dir", "fleet"]].concat()).usage_error();
        t.assert_unchanged(&before);
    }
    let out = t
        .devcert_cmd()
        .args([
            "batch", "--ca", "CA.crt", "--ca-key", "CA.key", "--names", "-",
        ])
        .args(["--out-dir", "fleet", "--json"])
        .stdin("# from a pipe\nin-1\r\nin-2\n")
        .run()
        .ok();
    assert_eq!(json_doc(&out)["issued"].as_u64(), Some(2));
    let dirs = ["fleet/in-1".to_string(), "fleet/in-2".to_string()];
    let crts: Vec<String> = dirs.iter().map(|d| format!("{d}/client.crt")).collect();
    verify_all(&t, "CA.crt", &crts);
    assert_eq!(folders(&t, "fleet"), ["in-1", "in-2"]);
    let rows = manifest(&t, "fleet");
    assert_eq!(
        rows.iter().map(|r| s(r, "cn")).collect::<Vec<_>>(),
        ["in-1", "in-2"]
    );
}

/// Keys are 0600 whatever the umask, also when a device is redone; the
/// other files (and the manifests) are 0644 filtered by the umask.
#[test]
fn file_modes_under_any_umask() {
    let t = TestDir::new();
    t.ec_ca("CA");
    // 0400 takes a bit of 0600 away: keys are set back to 0600 explicitly.
    // Only root can still read what it writes under it.
    let mut umasks = vec![(0o000, 0o644), (0o077, 0o600), (0o027, 0o640)];
    if common::broker::is_root() {
        umasks.push((0o400, 0o244));
    }
    for (umask, public) in umasks {
        let dir = format!("fleet{umask:03o}");
        let csv = format!("{dir}.csv");
        let run = || {
            t.devcert_cmd()
                .umask(umask)
                .args(["batch", "--ca", "CA.crt", "--ca-key", "CA.key"])
                .args(["--count", "2", "--cn-prefix", "m", "--out-dir", &dir])
                .args(["--manifest-csv", &csv])
                // The re-run redoes m0001, no longer a complete device.
                .arg("--force")
                .run()
                .ok()
        };
        run();
        // m0001 is redone on the re-run (its certificate is gone).
        fs::remove_file(t.path(&format!("{dir}/m0001/client.crt"))).unwrap();
        run();
        for m in ["m0001", "m0002"] {
            let f = |n: &str| format!("{dir}/{m}/{n}");
            t.assert_mode(&f("client.key"), 0o600);
            t.assert_mode(&f("client_pkcs8.key"), 0o600);
            for n in ["client.csr", "client.crt", "client_chain.crt"] {
                t.assert_mode(&f(n), public);
            }
        }
        t.assert_mode(&format!("{dir}/manifest.json"), public);
        t.assert_mode(&csv, public);
    }
}

/// A complete device made from another template (a reused --out-dir) is
/// neither skipped as if it were the one asked for nor replaced (its key may
/// already be on a device): the batch stops, naming it.
#[test]
fn a_device_of_another_template_is_refused_not_skipped_or_replaced() {
    let t = TestDir::new();
    t.ec_ca("CA");
    let args = ["--count", "2", "--cn-prefix", "s-", "--out-dir", "fleet"];
    batch(&t, &args).ok();
    let before = snapshot(&t, "fleet");
    t.write(
        "acme.cfg",
        "[req]\nprompt = no\ndistinguished_name = dn\n[dn]\nO = ACME\nCN = x\n",
    );
    batch(&t, &[&args[..], &["--config", "acme.cfg"]].concat()).fails_naming(&[
        "fleet/s-0001",
        "another subject",
        "O=ACME",
    ]);
    assert_eq!(snapshot(&t, "fleet"), before, "nothing replaced");
    let subject = t.openssl_ok(&[
        "x509",
        "-in",
        "fleet/s-0001/client.crt",
        "-noout",
        "-subject",
        "-nameopt",
        "RFC2253",
    ]);
    assert_eq!(subject.trim(), "subject=CN=s-0001");
    // The same template as before still skips.
    let out = batch(&t, &[&args[..], &["--json"]].concat()).ok();
    assert_eq!(json_doc(&out)["skipped"], 2);
}

/// One batch per folder at a time: a second one would take the first's
/// half-written devices for a killed run's leftovers. It is refused at once,
/// naming the folder, and makes nothing.
#[test]
fn a_second_batch_into_a_busy_folder_is_refused() {
    let t = TestDir::new();
    t.ec_ca("CA");
    fs::create_dir(t.path("fleet")).unwrap();
    // The lock a running batch holds: flock on the folder.
    let held = fs::File::open(t.path("fleet")).unwrap();
    held.try_lock().unwrap();
    let args = ["--count", "2", "--cn-prefix", "b-", "--out-dir", "fleet"];
    batch(&t, &args).fails_naming(&["fleet", "busy", "another devcert batch"]);
    assert_eq!(
        fs::read_dir(t.path("fleet")).unwrap().count(),
        0,
        "nothing made"
    );
    drop(held);
    let crts: Vec<String> = (1..=2)
        .map(|i| format!("fleet/b-{i:04}/client.crt"))
        .collect();
    batch(&t, &args).ok();
    verify_all(&t, "CA.crt", &crts);
}

/// `--manifest-csv -` writes the CSV to standard output (a file named `-`
/// would surprise); with `--json`, which wants stdout too, it is a usage
/// error.
#[test]
fn manifest_csv_to_stdout() {
    let t = TestDir::new();
    t.ec_ca("CA");
    let args = [
        "--count",
        "2",
        "--cn-prefix",
        "o-",
        "--out-dir",
        "fleet",
        "--manifest-csv",
        "-",
    ];
    let out = batch(&t, &args).ok();
    let text = String::from_utf8(out.stdout.clone()).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3, "{text}");
    assert_eq!(lines[0], "cn,serial,not_after,sha256_fingerprint,dir");
    let serial = t.openssl_ok(&[
        "x509",
        "-in",
        "fleet/o-0001/client.crt",
        "-noout",
        "-serial",
    ]);
    assert!(lines[1].starts_with(&format!(
        "o-0001,{},",
        serial.trim().trim_start_matches("serial=")
    )));
    t.assert_no_file("-");
    assert_eq!(
        fs::read_dir(t.path("fleet")).unwrap().count(),
        3,
        "two devices and manifest.json"
    );
    batch(&t, &[&args[..], &["--json"]].concat()).usage_error();
}

/// A killed run's manifest temp file in the out dir is removed by the next
/// run; `--manifest-csv` at the JSON manifest's own path is a usage error.
#[test]
fn stale_manifest_temps_go_and_the_csv_cannot_take_the_json_path() {
    let t = TestDir::new();
    t.ec_ca("CA");
    fs::create_dir(t.path("fleet")).unwrap();
    t.write("fleet/.devcert-AbC123.tmp", "[\n{\"cn\":\"half");
    let args = ["--count", "1", "--cn-prefix", "k-", "--out-dir", "fleet"];
    batch(&t, &args).ok();
    t.assert_no_file("fleet/.devcert-AbC123.tmp");
    let before = t.read("fleet/manifest.json");
    batch(
        &t,
        &[&args[..], &["--manifest-csv", "fleet/manifest.json"]].concat(),
    )
    .usage_error();
    assert_eq!(t.read("fleet/manifest.json"), before);
}

/// The subject of a certificate or CSR as OpenSSL shows it with string
/// types, so two subjects compare as encodings, not only as text.
fn typed_subject(t: &TestDir, cmd: &str, file: &str) -> String {
    t.openssl_ok(&[
        cmd,
        "-in",
        file,
        "-noout",
        "-subject",
        "-nameopt",
        "multiline,show_type",
    ])
}

/// What `openssl req -new -subj` makes of `subj` with the device's own key.
fn openssl_subject(t: &TestDir, key: &str, subj: &str) -> String {
    t.openssl_ok(&[
        "req",
        "-new",
        "-key",
        key,
        "-subj",
        subj,
        "-config",
        &t.min_cnf(),
        "-out",
        "ref.csr",
    ]);
    typed_subject(t, "req", "ref.csr")
}

/// Issue 18: `--start`/`--width` grow a fleet under the names it has (four
/// digits by default), and `manifest.json` and the CSV list every complete
/// device of the folder — earlier runs' too — in name order. An all-skipped
/// run prints no "0 devices/s".
#[test]
fn a_grown_fleet_keeps_its_names_and_its_manifest_lists_every_device() {
    let t = TestDir::new();
    t.ec_ca("CA");
    batch(
        &t,
        &["--count", "3", "--cn-prefix", "s-", "--out-dir", "fleet"],
    )
    .ok();
    let grow = [
        "--count",
        "2",
        "--start",
        "4",
        "--cn-prefix",
        "s-",
        "--out-dir",
        "fleet",
        "--manifest-csv",
        "fleet.csv",
    ];
    let out = batch(&t, &[&grow[..], &["--json"]].concat()).ok();
    let doc = json_doc(&out);
    assert_eq!(
        (
            doc["devices"].as_u64(),
            doc["issued"].as_u64(),
            doc["earlier"].as_u64()
        ),
        (Some(2), Some(2), Some(3)),
        "{doc}"
    );
    let cns: Vec<String> = (1..=5).map(|i| format!("s-{i:04}")).collect();
    assert_eq!(folders(&t, "fleet"), cns);
    let dirs: Vec<String> = cns.iter().map(|c| format!("fleet/{c}")).collect();
    check_devices(&t, &dirs, "CA.crt");
    let rows = manifest(&t, "fleet");
    let csv = csv_rows(&t, "fleet.csv");
    assert_eq!(rows.len(), 5);
    assert_eq!(csv.len(), 5);
    for (i, (row, dir)) in rows.iter().zip(&dirs).enumerate() {
        let status = if i < 3 { "skipped" } else { "issued" };
        assert_row(
            row,
            &cns[i],
            dir,
            &ossl_cert(&t, &format!("{dir}/client.crt")),
            status,
        );
        assert_eq!(csv[i], as_csv(row));
    }
    // Nothing left to do: a summary without a rate.
    let again = batch(&t, &grow).ok();
    assert_summary(&again, 2, "fleet", 0, 2);
    assert!(!again.stderr.contains("devices/s"), "{}", again.describe());
    // An explicit width; one too small for the numbers is refused.
    batch(
        &t,
        &[
            "--count",
            "2",
            "--start",
            "7",
            "--width",
            "3",
            "--cn-prefix",
            "w",
            "--out-dir",
            "narrow",
        ],
    )
    .ok();
    assert_eq!(folders(&t, "narrow"), ["w007", "w008"]);
    batch(
        &t,
        &[
            "--count",
            "200",
            "--width",
            "2",
            "--cn-prefix",
            "w",
            "--out-dir",
            "narrow",
        ],
    )
    .fails_naming(&["200", "--width 2"]);
    // Past 9999 the default width grows, as the numbers need.
    batch(
        &t,
        &[
            "--count",
            "2",
            "--start",
            "9999",
            "--cn-prefix",
            "n",
            "--out-dir",
            "wide",
        ],
    )
    .ok();
    assert_eq!(folders(&t, "wide"), ["n09999", "n10000"]);
}

/// Issue 18: `batch --subject` is a subject template like `--config`: its
/// CN (if any) replaced per device, else one added last; each subject is
/// encoded exactly as `openssl req -subj` encodes the same subject.
#[test]
fn subject_template_gives_each_device_its_cn() {
    let t = TestDir::new();
    t.ec_ca("CA");
    for (template, prefix, expected) in [
        ("/C=CN/O=ALI/OU=MQTT", "t-", "/C=CN/O=ALI/OU=MQTT/CN={cn}"),
        ("/C=CN/CN=placeholder/O=ALI", "u-", "/C=CN/CN={cn}/O=ALI"),
    ] {
        let dir = format!("fleet-{prefix}");
        batch(
            &t,
            &[
                "--count",
                "2",
                "--cn-prefix",
                prefix,
                "--subject",
                template,
                "--out-dir",
                &dir,
            ],
        )
        .ok();
        for i in 1..=2 {
            let cn = format!("{prefix}{i:04}");
            let d = format!("{dir}/{cn}");
            let want = openssl_subject(
                &t,
                &format!("{d}/client.key"),
                &expected.replace("{cn}", &cn),
            );
            assert_eq!(
                typed_subject(&t, "x509", &format!("{d}/client.crt")),
                want,
                "{d}"
            );
            assert_eq!(
                typed_subject(&t, "req", &format!("{d}/client.csr")),
                want,
                "{d}"
            );
            t.assert_openssl_verify(&["-CAfile", "CA.crt"], &format!("{d}/client.crt"));
        }
    }
    batch(
        &t,
        &[
            "--count",
            "1",
            "--cn-prefix",
            "x",
            "--subject",
            "/O=A",
            "--config",
            SEED_CSR,
            "--out-dir",
            "f",
        ],
    )
    .usage_error();
}
