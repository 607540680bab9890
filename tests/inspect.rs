//! `devcert inspect` (replaces `openssl x509/req/pkey/crl -text`): every
//! kind of file, PEM and DER, made by OpenSSL, Python `cryptography` and
//! devcert; the facts it reports are compared with what OpenSSL reports.
mod common;
use common::*;

use std::collections::BTreeMap;

use serde_json::Value;
use sha2::Digest;

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/py/inspect_fixtures.py");

/// OpenSSL's `req` needs a config; this one adds nothing.
fn min_cnf(t: &TestDir) -> String {
    t.write("min.cnf", "[req]\ndistinguished_name = dn\n[dn]\n");
    "min.cnf".into()
}

#[track_caller]
fn inspect_json(t: &TestDir, file: &str) -> Value {
    let out = t.devcert(&["inspect", "--json", file]).ok();
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("inspect --json is not JSON ({e})\n{}", out.describe()))
}

#[track_caller]
fn inspect_text(t: &TestDir, file: &str) -> String {
    t.devcert(&["inspect", file]).ok().stdout_str()
}

#[track_caller]
fn py(t: &TestDir, args: &[&str]) -> String {
    let out = Cmd::new(t.root(), "python3").arg(FIXTURES).args(args).run();
    assert_eq!(
        out.code,
        Some(0),
        "fixture script failed\n{}",
        out.describe()
    );
    out.stdout_str()
}

/// `Jan  1 00:00:00 1965 GMT` → `1965-01-01T00:00:00Z`.
fn openssl_date(s: &str) -> String {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let p: Vec<&str> = s.split_whitespace().collect();
    assert_eq!(p.len(), 5, "unexpected openssl date {s:?}");
    let month = MONTHS.iter().position(|m| *m == p[0]).unwrap() + 1;
    let day: u32 = p[1].parse().unwrap();
    format!("{}-{month:02}-{day:02}T{}Z", p[3], p[2])
}

/// What `openssl x509 -serial -subject -issuer -dates -fingerprint -sha256` says.
fn openssl_facts(t: &TestDir, file: &str) -> BTreeMap<String, String> {
    let mut args = vec!["x509", "-in", file];
    if !t.read(file).starts_with(b"-----") {
        args.extend(["-inform", "DER"]);
    }
    args.extend([
        "-noout",
        "-serial",
        "-subject",
        "-issuer",
        "-dates",
        "-fingerprint",
        "-sha256",
        "-nameopt",
        "RFC2253,-esc_msb",
    ]);
    let text = t.openssl_ok(&args);
    let mut facts = BTreeMap::new();
    for line in text.lines() {
        if let Some((k, v)) = line.split_once('=') {
            let v = match k {
                "notBefore" | "notAfter" => openssl_date(v),
                _ => v.to_string(),
            };
            facts.insert(k.to_string(), v);
        }
    }
    facts
}

/// The certificate object `cert` states what OpenSSL reads from `file`.
#[track_caller]
fn assert_matches_openssl(t: &TestDir, file: &str, cert: &Value) {
    let f = openssl_facts(t, file);
    let pairs = [
        ("serial", "serial"),
        ("subject", "subject"),
        ("issuer", "issuer"),
        ("not_before", "notBefore"),
        ("not_after", "notAfter"),
        ("sha256_fingerprint", "sha256 Fingerprint"),
    ];
    assert_eq!(cert["kind"], "certificate", "{cert:#}");
    for (ours, theirs) in pairs {
        assert_eq!(
            cert[ours].as_str(),
            Some(f[theirs].as_str()),
            "{file}: {ours} differs from openssl's {theirs}\n{cert:#}"
        );
    }
}

/// PEM → DER copy of a certificate, by OpenSSL.
fn to_der(t: &TestDir, pem: &str) -> String {
    let der = format!("{pem}.der");
    t.openssl_ok(&["x509", "-in", pem, "-outform", "DER", "-out", &der]);
    der
}

/// Checks the PEM file and its DER copy, returns the PEM's JSON.
#[track_caller]
fn check_cert_both_encodings(t: &TestDir, pem: &str) -> Value {
    let json = inspect_json(t, pem);
    assert_matches_openssl(t, pem, &json);
    let der = to_der(t, pem);
    let der_json = inspect_json(t, &der);
    assert_matches_openssl(t, &der, &der_json);
    assert_eq!(json, der_json, "PEM and DER of one certificate differ");
    json
}

fn ext<'a>(cert: &'a Value, name: &str) -> &'a Value {
    cert["extensions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == name)
        .unwrap_or_else(|| panic!("no {name} extension in {cert:#}"))
}

fn sha256_colon(bytes: &[u8]) -> String {
    sha2::Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":")
}

#[test]
fn openssl_certificates_match_openssl_x509() {
    let t = TestDir::new();
    t.ec_ca("ca");
    t.rsa_ca("rca");
    t.ec_key("leaf.key");
    t.openssl_csr("leaf.key", "/C=CN/O=ALI/OU=MQTT/CN=client-test", "leaf.csr");
    t.write("seed.cfg", SEED_CRT_CFG);
    t.openssl_ok(&[
        "x509",
        "-req",
        "-in",
        "leaf.csr",
        "-CA",
        "rca.crt",
        "-CAkey",
        "rca.key",
        "-CAcreateserial",
        "-days",
        "500",
        "-extfile",
        "seed.cfg",
        "-out",
        "leaf.crt",
    ]);
    t.openssl_ok(&[
        "req",
        "-x509",
        "-key",
        "leaf.key",
        "-utf8",
        "-subj",
        "/CN=Zürich \"quoted\"\\+plus",
        "-days",
        "30",
        "-config",
        &min_cnf(&t),
        "-addext",
        "subjectAltName=DNS:a.example,IP:10.0.0.1,email:x@y.z,URI:http://u.example/x",
        "-addext",
        "extendedKeyUsage=clientAuth,serverAuth,1.2.3.9",
        "-addext",
        "nsCertType=client,email",
        "-addext",
        "nsComment=made by openssl",
        "-addext",
        "1.2.3.4=DER:0101FF",
        "-out",
        "ext.crt",
    ]);
    for file in ["ca.crt", "rca.crt", "leaf.crt", "ext.crt"] {
        let cert = check_cert_both_encodings(&t, file);
        let ours: Vec<&str> = cert["extensions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["oid"].as_str().unwrap())
            .collect();
        assert_eq!(
            ours,
            t.cert(file).ext_oids(),
            "{file}: extensions or their order"
        );
        let sig = t.cert(file).get("sig_name");
        assert_eq!(cert["signature_algorithm"], sig.as_str(), "{file}");
    }
    let ca = inspect_json(&t, "ca.crt");
    assert_eq!(ca["public_key"]["algorithm"], "EC");
    assert_eq!(ca["public_key"]["curve"], "prime256v1");
    assert_eq!(ext(&ca, "basicConstraints")["value"]["ca"], true);
    let rca = inspect_json(&t, "rca.crt");
    assert_eq!(rca["public_key"]["algorithm"], "RSA");
    assert_eq!(rca["public_key"]["bits"], 2048);

    // The seed profile: keyCertSign on a leaf, and an AKI with the CA's SKI.
    let leaf = inspect_json(&t, "leaf.crt");
    assert_eq!(
        ext(&leaf, "keyUsage")["value"],
        serde_json::json!([
            "digitalSignature",
            "nonRepudiation",
            "keyEncipherment",
            "dataEncipherment",
            "keyCertSign"
        ])
    );
    assert_eq!(
        ext(&leaf, "authorityKeyIdentifier")["value"]["key_id"],
        ext(&rca, "subjectKeyIdentifier")["value"]
    );

    let e = inspect_json(&t, "ext.crt");
    assert_eq!(
        ext(&e, "subjectAltName")["value"],
        serde_json::json!([
            "DNS:a.example",
            "IP:10.0.0.1",
            "email:x@y.z",
            "URI:http://u.example/x"
        ])
    );
    assert_eq!(
        ext(&e, "extendedKeyUsage")["value"],
        serde_json::json!(["clientAuth", "serverAuth", "1.2.3.9"])
    );
    assert_eq!(
        ext(&e, "nsCertType")["value"],
        serde_json::json!(["SSL Client", "S/MIME"])
    );
    assert_eq!(ext(&e, "nsComment")["value"], "made by openssl");
    let unknown = e["extensions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["oid"] == "1.2.3.4")
        .unwrap();
    assert_eq!(unknown["value"]["der_hex"], "01:01:FF");
    assert!(unknown.get("name").is_none());

    let text = inspect_text(&t, "ext.crt");
    for needle in [
        "Certificate (PEM, X.509 v3)",
        "Subject:              CN=Zürich \\\"quoted\\\"\\+plus",
        "(expires in 30 days)",
        "Public key:           EC prime256v1",
        "Signature algorithm:  ecdsa-with-SHA256",
        "subjectAltName: DNS:a.example, IP:10.0.0.1, email:x@y.z, URI:http://u.example/x",
        "extendedKeyUsage: clientAuth, serverAuth, 1.2.3.9",
        "1.2.3.4: 01:01:FF",
        e["sha256_fingerprint"].as_str().unwrap(),
    ] {
        assert!(text.contains(needle), "missing {needle:?} in:\n{text}");
    }
}

#[test]
fn devcert_certificates_and_chain_match_openssl() {
    let t = TestDir::new();
    t.devcert(&[
        "ca",
        "--subject",
        "/C=CN/O=ALI, Inc./CN=Device Root CA",
        "--key-out",
        "CA.key",
        "-o",
        "CA.crt",
    ])
    .ok();
    t.devcert(&[
        "issue",
        "--cn",
        "dev-001",
        "--ca",
        "CA.crt",
        "--ca-key",
        "CA.key",
        "--days",
        "30",
        "--out-dir",
        "dev",
    ])
    .ok();
    let ca = check_cert_both_encodings(&t, "CA.crt");
    let leaf = check_cert_both_encodings(&t, "dev/client.crt");
    assert_eq!(leaf["subject"], "CN=dev-001");
    assert_eq!(
        ext(&leaf, "extendedKeyUsage")["value"],
        serde_json::json!(["clientAuth"])
    );
    assert_eq!(ext(&leaf, "basicConstraints")["critical"], true);

    let chain = inspect_json(&t, "dev/client_chain.crt");
    assert_eq!(chain["kind"], "chain");
    let certs = chain["certificates"].as_array().unwrap();
    assert_eq!(certs.len(), 2);
    assert_eq!(certs[0], leaf);
    assert_eq!(certs[1], ca);

    let text = inspect_text(&t, "dev/client_chain.crt");
    assert!(text.contains("Chain of 2 certificates (PEM)"), "{text}");
    assert!(text.contains("[1/2] Certificate (X.509 v3)"), "{text}");
    assert!(text.contains("(expires in 30 days)"), "{text}");
    assert!(
        text.contains("basicConstraints (critical): CA:FALSE"),
        "{text}"
    );

    // The key, CSR and certificate of one device share a public key fingerprint.
    let fp = leaf["public_key"]["sha256_fingerprint"].clone();
    assert_eq!(
        inspect_json(&t, "dev/client.csr")["public_key"]["sha256_fingerprint"],
        fp
    );
    assert_eq!(
        inspect_json(&t, "dev/client.key")["public_key"]["sha256_fingerprint"],
        fp
    );
    assert_eq!(
        inspect_json(&t, "dev/client_pkcs8.key")["public_key"]["sha256_fingerprint"],
        fp
    );
}

/// A CA config for `openssl ca`, which can set any start and end date.
fn openssl_ca_dir(t: &TestDir) -> String {
    std::fs::create_dir_all(t.path("db")).unwrap();
    t.write("db/index.txt", "");
    t.write("db/serial", "01\n");
    t.write("db/crlnumber", "1000\n");
    t.write(
        "ca.cnf",
        "[ca]\ndefault_ca = d\n[d]\ndatabase = db/index.txt\nnew_certs_dir = db\nserial = db/serial\n\
         crlnumber = db/crlnumber\ndefault_md = sha256\ndefault_crl_days = 7\npolicy = p\n\
         unique_subject = no\ncrl_extensions = crl_ext\n[p]\ncommonName = optional\n\
         [crl_ext]\nauthorityKeyIdentifier = keyid\n",
    );
    "ca.cnf".into()
}

#[test]
fn odd_serials_dates_and_names_match_openssl() {
    let t = TestDir::new();
    t.ec_ca("ca");
    t.ec_key("k.key");
    t.openssl_csr("k.key", "/CN=odd", "k.csr");
    let long = format!("0x{}", "7f".repeat(25));
    let long_negative = format!("-0x{}", "ab".repeat(22));
    let high_bit = format!("0x{}", "80".repeat(20));
    let mut files = Vec::new();
    for (i, serial) in ["-1", "0", &long, &long_negative, &high_bit]
        .iter()
        .enumerate()
    {
        let out = format!("serial{i}.crt");
        t.openssl_ok(&[
            "x509",
            "-req",
            "-in",
            "k.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-set_serial",
            serial,
            "-days",
            "1",
            "-out",
            &out,
        ]);
        files.push(out);
    }
    let cnf = openssl_ca_dir(&t);
    // UTCTime covers 1950-2049; GeneralizedTime from 2050 on.
    for (i, (start, end)) in [
        ("500101000000Z", "491231235959Z"),
        ("650101000000Z", "20700101000000Z"),
        ("20500101000000Z", "99991231235959Z"),
    ]
    .iter()
    .enumerate()
    {
        let out = format!("dates{i}.crt");
        t.openssl_ok(&[
            "ca",
            "-batch",
            "-notext",
            "-config",
            &cnf,
            "-cert",
            "ca.crt",
            "-keyfile",
            "ca.key",
            "-in",
            "k.csr",
            "-startdate",
            start,
            "-enddate",
            end,
            "-out",
            &out,
        ]);
        files.push(out);
    }
    t.openssl_ok(&[
        "req",
        "-new",
        "-key",
        "k.key",
        "-subj",
        "/",
        "-config",
        &min_cnf(&t),
        "-out",
        "empty.csr",
    ]);
    t.openssl_ok(&[
        "x509",
        "-req",
        "-in",
        "empty.csr",
        "-CA",
        "ca.crt",
        "-CAkey",
        "ca.key",
        "-set_serial",
        "7",
        "-out",
        "empty.crt",
    ]);
    files.push("empty.crt".into());

    for f in &files {
        check_cert_both_encodings(&t, f);
    }
    let serials: Vec<String> = files[..5]
        .iter()
        .map(|f| inspect_json(&t, f)["serial"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(serials[0], "-01");
    assert_eq!(serials[1], "00");
    assert_eq!(serials[2], "7F".repeat(25));
    assert_eq!(serials[3], format!("-{}", "AB".repeat(22)));
    assert_eq!(serials[4], "80".repeat(20));
    let old = inspect_json(&t, "dates1.crt");
    assert_eq!(old["not_before"], "1965-01-01T00:00:00Z");
    assert_eq!(old["not_after"], "2070-01-01T00:00:00Z");
    assert_eq!(
        inspect_json(&t, "dates0.crt")["not_before"],
        "1950-01-01T00:00:00Z"
    );
    assert_eq!(
        inspect_json(&t, "dates2.crt")["not_after"],
        "9999-12-31T23:59:59Z"
    );
    assert_eq!(inspect_json(&t, "empty.crt")["subject"], "");
    assert!(inspect_text(&t, "dates1.crt").contains("(expires in "));
}

#[test]
fn validity_and_unknown_extensions_from_python() {
    let t = TestDir::new();
    py(&t, &["expired", "expired.crt"]);
    py(&t, &["notyet", "notyet.crt"]);
    py(&t, &["unknown", "unknown.crt"]);
    for f in ["expired.crt", "notyet.crt", "unknown.crt"] {
        check_cert_both_encodings(&t, f);
    }
    assert!(inspect_text(&t, "expired.crt").contains("(expired 10 days ago)"));
    assert!(inspect_text(&t, "notyet.crt").contains("(not yet valid: starts in 5 days)"));
    let u = inspect_json(&t, "unknown.crt");
    let exts = u["extensions"].as_array().unwrap();
    assert_eq!(exts[0]["oid"], "1.3.6.1.4.1.99999.1");
    assert_eq!(exts[0]["critical"], true);
    assert_eq!(exts[0]["value"]["der_hex"], "04:03:61:62:63");
    assert_eq!(exts[1]["value"]["der_hex"], "FF:00:67:61:72:62:61:67:65");
    assert!(
        inspect_text(&t, "unknown.crt").contains("1.3.6.1.4.1.99999.1 (critical): 04:03:61:62:63")
    );
}

#[test]
fn huge_san_list() {
    let t = TestDir::new();
    py(&t, &["sans", "5000", "sans.crt"]);
    let cert = check_cert_both_encodings(&t, "sans.crt");
    let sans = ext(&cert, "subjectAltName")["value"]
        .as_array()
        .unwrap()
        .clone();
    assert_eq!(sans.len(), 5000);
    assert_eq!(sans[0], "DNS:d0.example");
    assert_eq!(sans[4999], "DNS:d4999.example");
    assert!(inspect_text(&t, "sans.crt").contains("DNS:d4999.example"));
}

/// The public key fingerprint OpenSSL computes: SHA-256 of `pkey -pubout -outform DER`.
fn openssl_pub_fingerprint(t: &TestDir, key: &str, pass: Option<&str>) -> String {
    let mut args = vec![
        "pkey", "-in", key, "-pubout", "-outform", "DER", "-out", "pub.tmp",
    ];
    let passin = pass.map(|p| format!("pass:{p}"));
    if let Some(p) = &passin {
        args.extend(["-passin", p]);
    }
    t.openssl_ok(&args);
    sha256_colon(&t.read("pub.tmp"))
}

/// No private number of the key, and no part of the file's encoding,
/// appears in either output of inspect.
#[track_caller]
fn assert_no_secret(t: &TestDir, key: &str, pass: Option<&str>) {
    let mut args = vec!["secrets", key];
    args.extend(pass);
    let secrets = py(t, &args);
    let file = t.read(key);
    let file_hex: String = file.iter().map(|b| format!("{b:02x}")).collect();
    let outputs = [
        inspect_text(t, key),
        t.devcert(&["inspect", "--json", key]).ok().stdout_str(),
    ];
    for out in outputs {
        let flat = out.to_lowercase().replace([':', ' ', '\n'], "");
        for s in secrets.lines() {
            assert!(
                !flat.contains(s),
                "{key}: a private number is printed:\n{out}"
            );
        }
        if file.starts_with(b"-----") {
            let text = String::from_utf8_lossy(&file);
            for line in text
                .lines()
                .filter(|l| !l.starts_with("-----") && !l.contains(':') && l.len() > 16)
            {
                assert!(
                    !out.contains(line),
                    "{key}: the key's base64 is printed:\n{out}"
                );
            }
        } else {
            // Every 16-byte window of the DER would be too slow; the middle is enough.
            let mid = &file_hex[file_hex.len() / 2..file_hex.len() / 2 + 32];
            assert!(
                !flat.contains(mid),
                "{key}: the key's DER is printed:\n{out}"
            );
        }
    }
}

#[test]
fn private_keys_in_every_format_without_their_secrets() {
    let t = TestDir::new();
    let o = |args: &[&str]| {
        t.openssl_ok(args);
    };
    o(&[
        "genpkey",
        "-algorithm",
        "EC",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-out",
        "ec8.pem",
    ]);
    o(&[
        "pkcs8", "-topk8", "-nocrypt", "-in", "ec8.pem", "-outform", "DER", "-out", "ec8.der",
    ]);
    o(&[
        "ecparam",
        "-genkey",
        "-name",
        "secp384r1",
        "-out",
        "sec1.pem",
    ]);
    o(&[
        "ec", "-in", "sec1.pem", "-outform", "DER", "-out", "sec1.der",
    ]);
    o(&[
        "genpkey",
        "-algorithm",
        "RSA",
        "-pkeyopt",
        "rsa_keygen_bits:2048",
        "-out",
        "rsa8.pem",
    ]);
    o(&["rsa", "-in", "rsa8.pem", "-traditional", "-out", "rsa1.pem"]);
    o(&[
        "rsa",
        "-in",
        "rsa8.pem",
        "-traditional",
        "-outform",
        "DER",
        "-out",
        "rsa1.der",
    ]);
    o(&[
        "pkcs8",
        "-topk8",
        "-v2",
        "aes-256-cbc",
        "-in",
        "ec8.pem",
        "-passout",
        "pass:pw",
        "-out",
        "enc.pem",
    ]);
    o(&[
        "pkcs8",
        "-topk8",
        "-v2",
        "aes-256-cbc",
        "-in",
        "rsa8.pem",
        "-passout",
        "pass:pw",
        "-outform",
        "DER",
        "-out",
        "enc.der",
    ]);
    o(&[
        "rsa",
        "-in",
        "rsa8.pem",
        "-traditional",
        "-aes256",
        "-passout",
        "pass:pw",
        "-out",
        "legacy.pem",
    ]);
    t.devcert(&[
        "key",
        "--curve",
        "p384",
        "--format",
        "sec1",
        "-o",
        "dc_sec1.pem",
    ])
    .ok();
    t.devcert(&[
        "key",
        "--algo",
        "rsa",
        "--format",
        "pkcs1",
        "-o",
        "dc_rsa1.pem",
    ])
    .ok();
    t.devcert_cmd()
        .args([
            "key",
            "--encrypt",
            "--passphrase-env",
            "PW",
            "-o",
            "dc_enc.pem",
        ])
        .env("PW", "pw")
        .run()
        .ok();

    // file, format, encrypted, algorithm, curve or bits
    let cases: [(&str, &str, bool, &str, &str); 13] = [
        ("ec8.pem", "PKCS#8", false, "EC", "prime256v1"),
        ("ec8.der", "PKCS#8", false, "EC", "prime256v1"),
        ("sec1.pem", "SEC1", false, "EC", "secp384r1"),
        ("sec1.der", "SEC1", false, "EC", "secp384r1"),
        ("rsa8.pem", "PKCS#8", false, "RSA", "2048"),
        ("rsa1.pem", "PKCS#1", false, "RSA", "2048"),
        ("rsa1.der", "PKCS#1", false, "RSA", "2048"),
        ("enc.pem", "PKCS#8", true, "", ""),
        ("enc.der", "PKCS#8", true, "", ""),
        ("legacy.pem", "PKCS#1", true, "", ""),
        ("dc_sec1.pem", "SEC1", false, "EC", "secp384r1"),
        ("dc_rsa1.pem", "PKCS#1", false, "RSA", "2048"),
        ("dc_enc.pem", "PKCS#8", true, "", ""),
    ];
    for (file, format, encrypted, algo, size) in cases {
        let j = inspect_json(&t, file);
        assert_eq!(j["kind"], "private_key", "{file}: {j:#}");
        assert_eq!(j["format"], format, "{file}: {j:#}");
        assert_eq!(j["encrypted"], encrypted, "{file}: {j:#}");
        let pass = encrypted.then_some("pw");
        if encrypted {
            assert!(j.get("public_key").is_none(), "{file}: {j:#}");
            assert!(j["encryption"].is_string(), "{file}: {j:#}");
        } else {
            let pk = &j["public_key"];
            assert_eq!(pk["algorithm"], algo, "{file}");
            let got = if algo == "RSA" {
                pk["bits"].to_string()
            } else {
                pk["curve"].as_str().unwrap().to_string()
            };
            assert_eq!(got, size, "{file}");
            assert_eq!(
                pk["sha256_fingerprint"].as_str().unwrap(),
                openssl_pub_fingerprint(&t, file, None),
                "{file}: public key fingerprint"
            );
        }
        assert_no_secret(&t, file, pass);
    }
    assert_eq!(
        inspect_json(&t, "enc.pem")["encryption"],
        "PBES2, PBKDF2-HMAC-SHA256, 2048 iterations, AES-256-CBC"
    );
    let text = inspect_text(&t, "sec1.pem");
    assert!(
        text.starts_with("sec1.pem: Private key (PEM, SEC1, not encrypted)\n"),
        "{text}"
    );
    let text = inspect_text(&t, "legacy.pem");
    assert!(text.contains("Proc-Type: 4,ENCRYPTED"), "{text}");
}

#[test]
fn public_keys_and_csrs() {
    let t = TestDir::new();
    t.rsa_key("r.key");
    t.openssl_ok(&["pkey", "-in", "r.key", "-pubout", "-out", "r.pub"]);
    t.openssl_ok(&[
        "pkey",
        "-in",
        "r.key",
        "-pubout",
        "-outform",
        "DER",
        "-out",
        "r.pub.der",
    ]);
    t.openssl_ok(&["rsa", "-in", "r.key", "-RSAPublicKey_out", "-out", "r1.pub"]);
    let fp = openssl_pub_fingerprint(&t, "r.key", None);
    for (file, format) in [
        ("r.pub", "SPKI"),
        ("r.pub.der", "SPKI"),
        ("r1.pub", "PKCS#1"),
    ] {
        let j = inspect_json(&t, file);
        assert_eq!(j["kind"], "public_key", "{file}");
        assert_eq!(j["format"], format, "{file}");
        assert_eq!(j["public_key"]["bits"], 2048, "{file}");
        assert_eq!(j["public_key"]["sha256_fingerprint"], fp.as_str(), "{file}");
    }

    t.openssl_ok(&[
        "req",
        "-new",
        "-key",
        "r.key",
        "-subj",
        "/C=CN/O=ALI/CN=req, one",
        "-config",
        &min_cnf(&t),
        "-addext",
        "keyUsage=critical,digitalSignature",
        "-addext",
        "subjectAltName=DNS:dev.example",
        "-out",
        "r.csr",
    ]);
    t.openssl_ok(&[
        "req",
        "-in",
        "r.csr",
        "-outform",
        "DER",
        "-out",
        "r.csr.der",
    ]);
    t.ec_key("e.key");
    t.devcert(&[
        "csr",
        "--key",
        "e.key",
        "--subject",
        "/CN=from devcert",
        "--san",
        "DNS:a,IP:1.2.3.4",
        "-o",
        "e.csr",
    ])
    .ok();
    for file in ["r.csr", "r.csr.der", "e.csr"] {
        let j = inspect_json(&t, file);
        assert_eq!(j["kind"], "csr", "{file}");
        assert_eq!(j["signature_valid"], true, "{file}");
        let subject = t.openssl_ok(&[
            "req",
            "-in",
            file,
            "-inform",
            if file.ends_with("der") { "DER" } else { "PEM" },
            "-noout",
            "-subject",
            "-nameopt",
            "RFC2253,-esc_msb",
        ]);
        assert_eq!(
            format!("subject={}", j["subject"].as_str().unwrap()),
            subject.trim(),
            "{file}"
        );
    }
    let r = inspect_json(&t, "r.csr");
    assert_eq!(r["public_key"]["sha256_fingerprint"], fp.as_str());
    let names: Vec<&str> = r["requested_extensions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["keyUsage", "subjectAltName"]);
    let e = inspect_json(&t, "e.csr");
    assert_eq!(
        ext_named(&e["requested_extensions"], "subjectAltName"),
        serde_json::json!(["DNS:a", "IP:1.2.3.4"])
    );

    // A request whose signature was tampered with is described, and called out.
    let mut der = t.read("r.csr.der");
    let last = der.len() - 1;
    der[last] ^= 1;
    t.write("bad.csr.der", der);
    assert_eq!(inspect_json(&t, "bad.csr.der")["signature_valid"], false);
    assert!(inspect_text(&t, "bad.csr.der").contains("(DOES NOT VERIFY)"));
}

fn ext_named(list: &Value, name: &str) -> Value {
    list.as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == name)
        .map(|e| e["value"].clone())
        .unwrap_or(Value::Null)
}

#[test]
fn crls_from_openssl_ca_and_python() {
    let t = TestDir::new();
    t.ec_ca("ca");
    let cnf = openssl_ca_dir(&t);
    t.ec_key("k.key");
    t.openssl_csr("k.key", "/CN=revoked", "k.csr");
    t.openssl_ok(&[
        "x509",
        "-req",
        "-in",
        "k.csr",
        "-CA",
        "ca.crt",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "10",
        "-out",
        "k.crt",
    ]);
    t.openssl_ok(&[
        "ca",
        "-config",
        &cnf,
        "-cert",
        "ca.crt",
        "-keyfile",
        "ca.key",
        "-revoke",
        "k.crt",
        "-crl_reason",
        "keyCompromise",
    ]);
    t.openssl_ok(&[
        "ca", "-config", &cnf, "-cert", "ca.crt", "-keyfile", "ca.key", "-gencrl", "-out", "ca.crl",
    ]);
    t.openssl_ok(&[
        "crl",
        "-in",
        "ca.crl",
        "-outform",
        "DER",
        "-out",
        "ca.crl.der",
    ]);
    let serial = openssl_facts(&t, "k.crt")["serial"].clone();
    let facts = t.openssl_ok(&[
        "crl",
        "-in",
        "ca.crl",
        "-noout",
        "-issuer",
        "-lastupdate",
        "-nextupdate",
        "-nameopt",
        "RFC2253,-esc_msb",
    ]);
    let get = |k: &str| {
        facts
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{k}=")))
            .unwrap()
            .to_string()
    };
    let crl_text = t.openssl_ok(&["crl", "-in", "ca.crl", "-noout", "-text"]);
    assert!(
        crl_text.contains("X509v3 CRL Number: \n                4096"),
        "{crl_text}"
    );
    for file in ["ca.crl", "ca.crl.der"] {
        let j = inspect_json(&t, file);
        assert_eq!(j["kind"], "crl", "{file}");
        assert_eq!(j["version"], 2);
        assert_eq!(j["issuer"], get("issuer").as_str());
        assert_eq!(j["this_update"], openssl_date(&get("lastUpdate")).as_str());
        assert_eq!(j["next_update"], openssl_date(&get("nextUpdate")).as_str());
        assert_eq!(ext_named(&j["extensions"], "crlNumber"), "4096");
        assert_eq!(
            j["sha256_fingerprint"],
            sha256_colon(&t.read("ca.crl.der")).as_str()
        );
        let revoked = j["revoked"].as_array().unwrap();
        assert_eq!(revoked.len(), 1);
        assert_eq!(revoked[0]["serial"], serial.as_str());
        assert!(crl_text.contains(&format!("Serial Number: {serial}")));
        assert_eq!(revoked[0]["reason"], "keyCompromise");
    }
    let text = inspect_text(&t, "ca.crl");
    assert!(
        text.contains(&format!("{serial}  ")) && text.contains("keyCompromise"),
        "{text}"
    );
    assert!(text.contains("(in 7 days)"), "{text}");

    py(&t, &["crl", "py.crl"]);
    let j = inspect_json(&t, "py.crl");
    let reasons: Vec<(String, Value)> = j["revoked"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["serial"].as_str().unwrap().to_string(),
                r["reason"].clone(),
            )
        })
        .collect();
    assert_eq!(
        reasons,
        [
            ("1001".to_string(), Value::from("keyCompromise")),
            ("1002".to_string(), Value::from("certificateHold")),
            ("1003".to_string(), Value::Null),
        ]
    );
    assert_eq!(
        ext_named(&j["revoked"][1]["extensions"], "invalidityDate"),
        "2020-01-02T03:04:05Z"
    );
    assert_eq!(ext_named(&j["extensions"], "crlNumber"), "42");
    let text = t.openssl_ok(&["crl", "-in", "py.crl", "-noout", "-text"]);
    assert!(
        text.contains("Certificate Hold") && text.contains("Key Compromise"),
        "{text}"
    );
}

#[test]
fn several_blocks_stdin_and_trusted_certificates() {
    let t = TestDir::new();
    t.ec_ca("ca");
    t.ec_key("k.key");
    let bundle = [t.read("ca.crt"), t.read("k.key")].concat();
    t.write("bundle.pem", bundle);
    let j = inspect_json(&t, "bundle.pem");
    assert_eq!(j["kind"], "bundle");
    let kinds: Vec<&str> = j["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["certificate", "private_key"]);
    assert!(inspect_text(&t, "bundle.pem").starts_with("bundle.pem: Bundle of 2 objects (PEM)\n"));

    let out = t
        .devcert_cmd()
        .args(["inspect", "--json", "-"])
        .stdin(t.read("ca.crt"))
        .run()
        .ok();
    let from_stdin: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(from_stdin, inspect_json(&t, "ca.crt"));

    t.openssl_ok(&[
        "x509",
        "-in",
        "ca.crt",
        "-trustout",
        "-addtrust",
        "clientAuth",
        "-out",
        "trusted.pem",
    ]);
    assert!(
        t.read_str("trusted.pem")
            .contains("BEGIN TRUSTED CERTIFICATE")
    );
    assert_eq!(inspect_json(&t, "trusted.pem"), inspect_json(&t, "ca.crt"));

    t.openssl_ok(&["ecparam", "-name", "prime256v1", "-out", "params.pem"]);
    let p = inspect_json(&t, "params.pem");
    assert_eq!(p["kind"], "ec_parameters");
    assert_eq!(p["curve"], "prime256v1");
}

#[test]
fn odd_input_is_an_error_never_a_panic() {
    let t = TestDir::new();
    t.ec_ca("ca");
    let der = t.read(&to_der(&t, "ca.crt"));
    // Every cut of the certificate: one error line, exit 1 (panics are caught by the harness).
    let mut cuts = 0;
    for len in 1..der.len() {
        t.write("cut.der", &der[..len]);
        t.devcert(&["inspect", "cut.der"])
            .fails_naming(&["cannot inspect", "cut.der"]);
        cuts += 1;
    }
    assert!(cuts > 300, "only {cuts} cuts");
    // Bytes after a DER certificate are not silently ignored.
    t.write("trailing.der", [der.clone(), vec![0]].concat());
    t.devcert(&["inspect", "trailing.der"]).fails();

    let pem = t.read_str("ca.crt");
    t.write("cut.pem", &pem[..pem.len() / 2]);
    t.devcert(&["inspect", "cut.pem"])
        .fails_naming(&["truncated"]);
    t.write("empty.crt", "");
    t.devcert(&["inspect", "empty.crt"])
        .fails_naming(&["empty"]);
    t.write("garbage", "hello world");
    t.devcert(&["inspect", "garbage"])
        .fails_naming(&["neither PEM nor DER"]);
    t.write("seq.der", [0x30, 0x03, 0x02, 0x01, 0x05]);
    t.devcert(&["inspect", "seq.der"])
        .fails_naming(&["no certificate, CSR, CRL or key"]);
    t.write(
        "ssh.pem",
        "-----BEGIN OPENSSH PRIVATE KEY-----\nAAAA\n-----END OPENSSH PRIVATE KEY-----\n",
    );
    t.devcert(&["inspect", "ssh.pem"])
        .fails_naming(&["OPENSSH PRIVATE KEY"]);
    t.ec_key("k.key");
    let key_in_cert = t.read_str("k.key").replace("EC PRIVATE KEY", "CERTIFICATE");
    t.write("liar.pem", key_in_cert);
    t.devcert(&["inspect", "liar.pem"])
        .fails_naming(&["not a valid X.509 certificate"]);
    t.devcert(&["inspect", "missing.crt"])
        .fails_naming(&["missing.crt", "no such file"]);
    std::fs::create_dir(t.path("dir")).unwrap();
    t.devcert(&["inspect", "dir"]).fails_naming(&["directory"]);
    t.devcert(&["inspect"]).usage_error();
}
