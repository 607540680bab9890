//! `devcert ca`: the self-signed (or intermediate) CA the workflow presumes,
//! checked with `openssl x509/verify` and Python `cryptography`.
mod common;
use common::*;

#[track_caller]
fn assert_ca_extensions(t: &TestDir, crt: &str) {
    let c = t.cert(crt);
    assert_eq!(c.get("version"), "v3");
    assert!(
        c.get("bc").starts_with("ca=1,"),
        "basicConstraints CA:TRUE: {}",
        c.get("bc")
    );
    assert!(
        c.get("bc").ends_with("critical=1"),
        "basicConstraints must be critical"
    );
    assert_eq!(
        c.get("ku"),
        "key_cert_sign,crl_sign",
        "keyUsage keyCertSign, cRLSign"
    );
    assert_eq!(c.get("ku_critical"), "1", "keyUsage must be critical");
    assert!(!c.get("ski").is_empty(), "subjectKeyIdentifier");
    assert!(c.opt("aki_keyid").is_some(), "authorityKeyIdentifier");
    let text = t.openssl_ok(&["x509", "-in", crt, "-noout", "-text"]);
    for needle in [
        "X509v3 Basic Constraints: critical",
        "CA:TRUE",
        "X509v3 Key Usage: critical",
        "Certificate Sign, CRL Sign",
        "X509v3 Subject Key Identifier",
        "X509v3 Authority Key Identifier",
    ] {
        assert!(
            text.contains(needle),
            "openssl x509 -text of {crt} lacks {needle:?}:\n{text}"
        );
    }
}

#[test]
fn root_ca_from_subject() {
    let t = TestDir::new();
    let start = now();
    t.devcert(&[
        "ca",
        "--subject",
        "/CN=Device Root CA",
        "--key-out",
        "CA.key",
        "-o",
        "CA.crt",
    ])
    .ok();
    let end = now();
    assert_ca_extensions(&t, "CA.crt");
    t.assert_openssl_verify(&["-CAfile", "CA.crt"], "CA.crt");
    t.assert_openssl_verify(&["-x509_strict", "-CAfile", "CA.crt"], "CA.crt");
    let c = t.cert("CA.crt");
    assert_eq!(c.get("subject"), "CN=Device Root CA");
    assert_eq!(
        c.get("issuer_der"),
        c.get("subject_der"),
        "self-signed: issuer = subject"
    );
    assert_eq!(
        c.get("aki_keyid"),
        c.get("ski"),
        "self-signed AKI = own SKI"
    );
    t.assert_key_matches("CA.key", &c.get("spki_der"));
    t.assert_mode("CA.key", 0o600);
    t.assert_mode("CA.crt", 0o644);
    // Default validity: 3650 days.
    let na = c.int("not_after");
    assert!(
        na >= start + 3650 * DAY - 3600 && na <= end + 3650 * DAY + 3600,
        "CA default notAfter {na} should be now+3650d"
    );
    // Serial: positive, at most 20 octets.
    assert!(c.int("serial_octets") <= 20, "serial longer than 20 octets");
    assert!(
        c.int("serial_first_octet") < 0x80,
        "serial encodes as negative"
    );
    assert_ne!(c.get("serial_int"), "0", "serial must be positive");
}

#[test]
fn rsa_root_ca() {
    let t = TestDir::new();
    t.devcert(&[
        "ca",
        "--algo",
        "rsa",
        "--subject",
        "/O=ALI/CN=RSA Root",
        "--key-out",
        "CA.key",
        "-o",
        "CA.crt",
    ])
    .ok();
    assert_ca_extensions(&t, "CA.crt");
    let c = t.cert("CA.crt");
    assert_eq!(c.get("key"), "rsa:2048");
    assert_eq!(c.get("sig_name"), "sha256WithRSAEncryption");
    t.assert_openssl_verify(&["-CAfile", "CA.crt"], "CA.crt");
    t.assert_key_matches("CA.key", &c.get("spki_der"));
}

#[test]
fn pathlen_and_days() {
    let t = TestDir::new();
    let start = now();
    t.devcert(&[
        "ca",
        "--subject",
        "/CN=Pathlen Root",
        "--pathlen",
        "0",
        "--days",
        "100",
        "--key-out",
        "CA.key",
        "-o",
        "CA.crt",
    ])
    .ok();
    let c = t.cert("CA.crt");
    assert_eq!(c.get("bc"), "ca=1,pathlen=0,critical=1");
    let text = t.openssl_ok(&[
        "x509",
        "-in",
        "CA.crt",
        "-noout",
        "-ext",
        "basicConstraints",
    ]);
    assert!(text.contains("pathlen:0"), "{text}");
    let na = c.int("not_after");
    assert!(
        na >= start + 100 * DAY - 3600 && na <= now() + 100 * DAY + 3600,
        "notAfter {na}"
    );
}

#[test]
fn subject_from_config_matches_openssl() {
    let t = TestDir::new();
    let cfg = "[req]\nprompt = no\ndistinguished_name = dn\n[dn]\nC=CN\nO=ALI\n0.OU=IoT\n1.OU=PKI\nCN=Config Root CA\n";
    t.write("ca.cfg", cfg);
    t.devcert(&[
        "ca",
        "--config",
        "ca.cfg",
        "--key-out",
        "CA.key",
        "-o",
        "CA.crt",
    ])
    .ok();
    assert_ca_extensions(&t, "CA.crt");
    t.openssl_ok(&[
        "req", "-new", "-key", "CA.key", "-config", "ca.cfg", "-out", "ref.csr",
    ]);
    assert_eq!(
        t.cert("CA.crt").get("subject_der"),
        t.csr("ref.csr").get("subject_der"),
        "CA subject from --config differs from openssl's"
    );
}

/// `--key-out` and `-o` at one path would leave the certificate and lose
/// the CA key: refused before anything is made.
#[test]
fn key_out_and_out_at_one_path_are_refused() {
    let t = TestDir::new();
    for (key, out) in [("z.x", "z.x"), ("z.x", "./z.x")] {
        t.devcert(&[
            "ca",
            "--subject",
            "/CN=Z",
            "--key-out",
            key,
            "-o",
            out,
            "--force",
        ])
        .fails_naming(&["same file"]);
        t.assert_no_file("z.x");
    }
}

#[test]
fn intermediate_ca_verifies_under_the_root() {
    let t = TestDir::new();
    t.devcert(&[
        "ca",
        "--subject",
        "/CN=Device Root CA",
        "--key-out",
        "CA.key",
        "-o",
        "CA.crt",
    ])
    .ok();
    let made = t
        .devcert(&[
            "ca",
            "--subject",
            "/CN=Device Issuing CA",
            "--ca",
            "CA.crt",
            "--ca-key",
            "CA.key",
            "--key-out",
            "INT.key",
            "-o",
            "INT.crt",
        ])
        .ok();
    // The same default lifetime as the root, made a moment later: its end
    // is at most seconds past the root's, not worth a warning.
    assert!(!made.stderr.contains("past the CA's"), "{}", made.stderr);
    assert_ca_extensions(&t, "INT.crt");
    let i = t.cert("INT.crt");
    let r = t.cert("CA.crt");
    assert_eq!(
        i.get("issuer_der"),
        r.get("subject_der"),
        "intermediate issuer = root subject bytes"
    );
    assert_eq!(
        i.get("aki_keyid"),
        r.get("ski"),
        "intermediate AKI = root SKI"
    );
    assert_ne!(i.get("ski"), r.get("ski"));
    t.assert_issued_by("INT.crt", "CA.crt");
    t.assert_openssl_verify(&["-x509_strict", "-CAfile", "CA.crt"], "INT.crt");
    t.assert_mode("INT.key", 0o600);
}

#[test]
fn intermediate_under_an_openssl_root() {
    let t = TestDir::new();
    t.multivalue_ca("ROOT");
    t.devcert(&[
        "ca",
        "--subject",
        "/CN=Sub",
        "--ca",
        "ROOT.crt",
        "--ca-key",
        "ROOT.key",
        "--key-out",
        "INT.key",
        "-o",
        "INT.crt",
    ])
    .ok();
    assert_eq!(
        t.cert("INT.crt").get("issuer_der"),
        t.cert("ROOT.crt").get("subject_der")
    );
    t.assert_openssl_verify(&["-CAfile", "ROOT.crt"], "INT.crt");
}

#[test]
fn device_cert_from_devcert_ca_passes_x509_strict() {
    let t = TestDir::new();
    t.devcert(&[
        "ca",
        "--subject",
        "/CN=Device Root CA",
        "--key-out",
        "CA.key",
        "-o",
        "CA.crt",
    ])
    .ok();
    t.ec_csr("client");
    t.devcert(&[
        "sign",
        "--csr",
        "client.csr",
        "--ca",
        "CA.crt",
        "--ca-key",
        "CA.key",
        "-o",
        "client.crt",
    ])
    .ok();
    t.assert_openssl_verify(
        &["-x509_strict", "-purpose", "sslclient", "-CAfile", "CA.crt"],
        "client.crt",
    );
    // Three levels, strict, with an intermediate.
    t.devcert(&[
        "ca",
        "--algo",
        "rsa",
        "--subject",
        "/CN=Issuing",
        "--ca",
        "CA.crt",
        "--ca-key",
        "CA.key",
        "--key-out",
        "INT.key",
        "-o",
        "INT.crt",
    ])
    .ok();
    t.devcert(&[
        "sign",
        "--csr",
        "client.csr",
        "--ca",
        "INT.crt",
        "--ca-key",
        "INT.key",
        "-o",
        "client2.crt",
    ])
    .ok();
    t.assert_openssl_verify(
        &["-x509_strict", "-CAfile", "CA.crt", "-untrusted", "INT.crt"],
        "client2.crt",
    );
}

#[test]
fn ca_made_by_openssl_can_sign_a_ca_made_by_devcert_and_vice_versa() {
    let t = TestDir::new();
    t.devcert(&[
        "ca",
        "--subject",
        "/CN=Devcert Root",
        "--key-out",
        "CA.key",
        "-o",
        "CA.crt",
    ])
    .ok();
    // openssl signs with devcert's CA key/cert: the CA is usable by other tools.
    t.ec_csr("client");
    t.openssl_sign("client.csr", "CA", "client.crt", None);
    t.assert_openssl_verify(&["-CAfile", "CA.crt"], "client.crt");
}

#[test]
fn refuses_overwrite_of_key_or_cert() {
    let t = TestDir::new();
    t.write("CA.key", "old key\n");
    let before = t.listing();
    t.devcert(&[
        "ca",
        "--subject",
        "/CN=X",
        "--key-out",
        "CA.key",
        "-o",
        "CA.crt",
    ])
    .fails_naming(&["CA.key"]);
    t.assert_unchanged(&before);
    let t = TestDir::new();
    t.write("CA.crt", "old cert\n");
    let before = t.listing();
    t.devcert(&[
        "ca",
        "--subject",
        "/CN=X",
        "--key-out",
        "CA.key",
        "-o",
        "CA.crt",
    ])
    .fails_naming(&["CA.crt"]);
    t.assert_unchanged(&before);
}

#[test]
fn invalid_values_are_usage_errors() {
    let t = TestDir::new();
    for extra in [
        &["--days", "0"][..],
        &["--pathlen", "-1"],
        &["--algo", "dsa"],
        &["--pathlen", "many"],
    ] {
        let mut args = vec![
            "ca",
            "--subject",
            "/CN=X",
            "--key-out",
            "CA.key",
            "-o",
            "CA.crt",
        ];
        args.extend_from_slice(extra);
        t.devcert(&args).usage_error();
        t.assert_no_file("CA.key");
        t.assert_no_file("CA.crt");
    }
}

#[test]
fn intermediate_refused_with_non_ca_or_mismatched_parent() {
    let t = TestDir::new();
    t.non_ca("LEAF");
    t.ec_ca("ROOT");
    t.ec_ca("OTHER");
    let before = t.listing();
    t.devcert(&[
        "ca",
        "--subject",
        "/CN=I",
        "--ca",
        "LEAF.crt",
        "--ca-key",
        "LEAF.key",
        "--key-out",
        "I.key",
        "-o",
        "I.crt",
    ])
    .fails_naming(&["LEAF.crt"]);
    t.devcert(&[
        "ca",
        "--subject",
        "/CN=I",
        "--ca",
        "ROOT.crt",
        "--ca-key",
        "OTHER.key",
        "--key-out",
        "I.key",
        "-o",
        "I.crt",
    ])
    .fails();
    t.assert_unchanged(&before);
}

#[test]
fn missing_inputs_name_the_file() {
    let t = TestDir::new();
    t.ec_ca("ROOT");
    t.devcert(&[
        "ca",
        "--config",
        "nope.cfg",
        "--key-out",
        "CA.key",
        "-o",
        "CA.crt",
    ])
    .fails_naming(&["nope.cfg"]);
    t.devcert(&[
        "ca",
        "--subject",
        "/CN=I",
        "--ca",
        "nope.crt",
        "--ca-key",
        "ROOT.key",
        "--key-out",
        "I.key",
        "-o",
        "I.crt",
    ])
    .fails_naming(&["nope.crt"]);
    t.devcert(&[
        "ca",
        "--subject",
        "/CN=I",
        "--ca",
        "ROOT.crt",
        "--ca-key",
        "nope.key",
        "--key-out",
        "I.key",
        "-o",
        "I.crt",
    ])
    .fails_naming(&["nope.key"]);
    for f in ["CA.key", "CA.crt", "I.key", "I.crt"] {
        t.assert_no_file(f);
    }
}
