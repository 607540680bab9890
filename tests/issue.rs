//! `devcert issue`: the whole workflow for one device, all or nothing.
mod common;
use common::*;

const FIVE: [&str; 5] = [
    "client.key",
    "client.csr",
    "client.crt",
    "client_pkcs8.key",
    "client_chain.crt",
];

fn issue(t: &TestDir, extra: &[&str]) -> Out {
    let mut args = vec!["issue", "--ca", "CA.crt", "--ca-key", "CA.key"];
    args.extend_from_slice(extra);
    t.devcert(&args)
}

/// Everything `issue` wrote in `dir` is consistent and verifiable with
/// openssl / cryptography, against CA `ca`.
#[track_caller]
fn assert_issued_set(t: &TestDir, dir: &str, ca: &str) {
    let f = |n: &str| format!("{dir}/{n}");
    for n in FIVE {
        assert!(t.exists(&f(n)), "issue did not write {dir}/{n}");
    }
    t.assert_mode(&f("client.key"), 0o600);
    t.assert_mode(&f("client_pkcs8.key"), 0o600);
    t.assert_mode(&f("client.csr"), 0o644);
    t.assert_mode(&f("client.crt"), 0o644);
    t.assert_mode(&f("client_chain.crt"), 0o644);

    let ca_crt = format!("{ca}.crt");
    let (key, p8, csr, crt, chain) = (
        f("client.key"),
        f("client_pkcs8.key"),
        f("client.csr"),
        f("client.crt"),
        f("client_chain.crt"),
    );
    t.prefetch(&[
        ("key", &[&key]),
        ("key", &[&p8]),
        ("csr", &[&csr]),
        ("cert", &[&crt]),
        ("certs", &[&chain]),
        ("cert", &[&ca_crt]),
        ("issued", &[&crt, &ca_crt]),
    ]);
    t.assert_openssl_verify(&["-CAfile", &ca_crt], &f("client.crt"));
    t.assert_openssl_verify(
        &["-CAfile", &ca_crt, "-untrusted", &f("client_chain.crt")],
        &f("client_chain.crt"),
    );
    t.assert_issued_by(&f("client.crt"), &ca_crt);

    // CSR: valid signature, same public key as the certificate and the keys.
    let csr = t.csr(&f("client.csr"));
    assert_eq!(csr.get("sig_valid"), "1", "client.csr signature");
    let out = t.openssl(&["req", "-verify", "-in", &f("client.csr"), "-noout"]);
    assert!(out.text().contains("verify OK"), "{}", out.describe());
    let crt = t.cert(&f("client.crt"));
    assert_eq!(
        crt.get("spki_der"),
        csr.get("spki_der"),
        "certificate key != CSR key"
    );
    assert_eq!(
        crt.get("subject_der"),
        csr.get("subject_der"),
        "certificate subject != CSR subject"
    );
    t.assert_key_matches(&f("client.key"), &crt.get("spki_der"));
    t.assert_key_matches(&f("client_pkcs8.key"), &crt.get("spki_der"));

    // client_pkcs8.key is PKCS#8 PEM and the same private key as client.key.
    let p8 = t.read_str(&f("client_pkcs8.key"));
    assert_eq!(
        first_pem_label(&p8).as_deref(),
        Some("PRIVATE KEY"),
        "client_pkcs8.key:\n{p8}"
    );
    assert_eq!(
        t.pkey_text(&f("client.key"), &[]),
        t.pkey_text(&f("client_pkcs8.key"), &[]),
        "client.key and client_pkcs8.key hold different keys"
    );

    // Chain: leaf then CA.
    let chain = t.certs(&f("client_chain.crt"));
    assert_eq!(
        chain.int("count"),
        2,
        "client_chain.crt must hold leaf + CA"
    );
    assert_eq!(
        chain.get("c0.fingerprint"),
        crt.get("fingerprint"),
        "chain[0] must be client.crt"
    );
    assert_eq!(
        chain.get("c1.fingerprint"),
        t.cert(&ca_crt).get("fingerprint"),
        "chain[1] must be the CA"
    );
}

#[test]
fn writes_the_five_seed_files() {
    let t = TestDir::new();
    t.ec_ca("CA");
    t.seed_configs();
    issue(&t, &["--config", "client.csr.cfg", "--out-dir", "out"]).ok();
    assert_issued_set(&t, "out", "CA");
    let mut names: Vec<String> = t
        .listing()
        .keys()
        .filter(|k| k.starts_with("out/"))
        .cloned()
        .collect();
    names.sort();
    let mut want: Vec<String> = FIVE.iter().map(|n| format!("out/{n}")).collect();
    want.push("out/".into());
    want.sort();
    assert_eq!(
        names, want,
        "issue must write exactly the five files (no temp files left)"
    );
    // Subject exactly as openssl req -new writes it for the same config.
    t.openssl_ok(&[
        "req",
        "-new",
        "-key",
        "out/client.key",
        "-config",
        "client.csr.cfg",
        "-out",
        "ref.csr",
    ]);
    assert_eq!(
        t.csr("out/client.csr").get("subject_der"),
        t.csr("ref.csr").get("subject_der")
    );
    // Default algorithm EC P-256 (as `key`) and default device profile.
    let c = t.cert("out/client.crt");
    assert_eq!(c.get("key"), "ec:secp256r1");
    assert_eq!(c.get("bc"), "ca=0,pathlen=None,critical=1");
    assert_eq!(c.get("eku"), OID_CLIENT_AUTH);
    t.assert_openssl_verify(
        &["-x509_strict", "-purpose", "sslclient", "-CAfile", "CA.crt"],
        "out/client.crt",
    );
    // And a JDK client accepts the PKCS#8 key with the chain.
    t.assert_java_accepts("out/client_pkcs8.key", "out/client_chain.crt");
}

#[test]
fn cn_and_rsa() {
    let t = TestDir::new();
    t.rsa_ca("CA");
    issue(
        &t,
        &["--algo", "rsa", "--cn", "dev-001", "--out-dir", "dev-001"],
    )
    .ok();
    assert_issued_set(&t, "dev-001", "CA");
    let c = t.cert("dev-001/client.crt");
    assert_eq!(c.get("key"), "rsa:2048");
    let subj = t.openssl_ok(&[
        "x509",
        "-in",
        "dev-001/client.crt",
        "-noout",
        "-subject",
        "-nameopt",
        "RFC2253",
    ]);
    assert!(subj.contains("CN=dev-001"), "expected CN=dev-001 in {subj}");
    assert_eq!(c.get("ku"), "digital_signature,key_encipherment");
}

/// A bare `--algo rsa` takes the config's `default_bits`, as `openssl req
/// -newkey rsa` does (and `devcert csr --new-key rsa`).
#[test]
fn rsa_size_from_config_default_bits() {
    let t = TestDir::new();
    t.rsa_ca("CA");
    t.write(
        "b3072.cfg",
        "[req]\ndefault_bits = 3072\nprompt = no\ndistinguished_name = dn\n[dn]\nCN = big\n",
    );
    issue(
        &t,
        &["--algo", "rsa", "--config", "b3072.cfg", "--out-dir", "big"],
    )
    .ok();
    assert_issued_set(&t, "big", "CA");
    assert!(t.pkey_text("big/client.key", &[]).contains("(3072 bit"));
    // A size named on the command line wins.
    issue(
        &t,
        &[
            "--algo",
            "rsa:2048",
            "--config",
            "b3072.cfg",
            "--out-dir",
            "named",
        ],
    )
    .ok();
    assert!(t.pkey_text("named/client.key", &[]).contains("(2048 bit"));
    // A size devcert does not make is the config's error (file and line)
    // when a bare rsa asks for it; an EC key ignores it, as OpenSSL does.
    t.write(
        "b1024.cfg",
        "[req]\ndefault_bits = 1024\nprompt = no\ndistinguished_name = dn\n[dn]\nCN = old\n",
    );
    issue(
        &t,
        &["--algo", "rsa", "--config", "b1024.cfg", "--out-dir", "old"],
    )
    .fails_naming(&["b1024.cfg:2", "default_bits 1024"]);
    t.assert_no_file("old");
    issue(&t, &["--config", "b1024.cfg", "--out-dir", "ec"]).ok();
    assert_issued_set(&t, "ec", "CA");
}

#[test]
fn subject_option() {
    let t = TestDir::new();
    t.ec_ca("CA");
    issue(
        &t,
        &[
            "--subject",
            "/C=CN/O=ALI/CN=client-test",
            "--out-dir",
            "out",
        ],
    )
    .ok();
    assert_issued_set(&t, "out", "CA");
    assert_eq!(
        t.cert("out/client.crt").get("subject"),
        "CN=client-test,O=ALI,C=CN"
    );
}

/// Issue 18: `issue --config TEMPLATE --cn CN` takes the template's
/// subject with this CN, encoded exactly as `openssl req` encodes the
/// template with that CN written in.
#[test]
fn config_as_a_template_with_a_cn() {
    let t = TestDir::new();
    t.ec_ca("CA");
    let seed = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/seed/client.csr.cfg");
    issue(
        &t,
        &["--config", seed, "--cn", "sensor-9", "--out-dir", "out"],
    )
    .ok();
    assert_issued_set(&t, "out", "CA");
    let cfg = std::fs::read_to_string(seed).unwrap();
    t.write("s9.cfg", cfg.replace("CN=client-test", "CN=sensor-9"));
    t.openssl_ok(&[
        "req",
        "-new",
        "-key",
        "out/client.key",
        "-config",
        "s9.cfg",
        "-out",
        "ref.csr",
    ]);
    let typed = |cmd: &str, f: &str| {
        t.openssl_ok(&[
            cmd,
            "-in",
            f,
            "-noout",
            "-subject",
            "-nameopt",
            "multiline,show_type",
        ])
    };
    let want = typed("req", "ref.csr");
    assert!(want.contains("sensor-9"), "{want}");
    assert_eq!(typed("x509", "out/client.crt"), want);
    assert_eq!(typed("req", "out/client.csr"), want);
    issue(&t, &["--subject", "/CN=a", "--cn", "b", "--out-dir", "o2"]).usage_error();
}

#[test]
fn profile_and_days() {
    let t = TestDir::new();
    t.rsa_ca("CA");
    t.seed_configs();
    let start = now();
    issue(
        &t,
        &[
            "--algo",
            "rsa",
            "--config",
            "client.csr.cfg",
            "--profile",
            "client.crt.cfg",
            "--days",
            "500",
            "--out-dir",
            "out",
        ],
    )
    .ok()
    .warns_about(&["keyCertSign"]);
    assert_issued_set(&t, "out", "CA");
    let c = t.cert("out/client.crt");
    assert_eq!(c.ext_oids(), vec![OID_AKI, OID_BC, OID_KU, OID_SKI]);
    let na = c.int("not_after");
    assert!(
        na >= start + 500 * DAY - 3600 && na <= now() + 500 * DAY + 3600,
        "notAfter {na} ≈ now+500d"
    );
}

#[test]
fn creates_nested_missing_dirs() {
    let t = TestDir::new();
    t.ec_ca("CA");
    issue(&t, &["--cn", "deep", "--out-dir", "a/b/c/deep"]).ok();
    assert_issued_set(&t, "a/b/c/deep", "CA");
}

#[test]
fn refuses_when_any_of_the_five_exists_and_changes_nothing() {
    for existing in FIVE {
        let t = TestDir::new();
        t.ec_ca("CA");
        t.write(&format!("out/{existing}"), "pre-existing\n");
        t.write("out/notes.txt", "mine\n");
        let before = t.listing();
        issue(&t, &["--cn", "dev", "--out-dir", "out"]).fails_naming(&[existing]);
        t.assert_unchanged(&before);
    }
}

#[test]
fn force_replaces_and_leaves_other_files_alone() {
    let t = TestDir::new();
    t.ec_ca("CA");
    t.write("out/client.crt", "old cert\n");
    t.write("out/client.key", "old key\n");
    t.write("out/notes.txt", "mine\n");
    t.write("out/sub/keep.me", "keep\n");
    issue(&t, &["--cn", "dev", "--force", "--out-dir", "out"]).ok();
    assert_issued_set(&t, "out", "CA");
    assert_eq!(t.read_str("out/notes.txt"), "mine\n");
    assert_eq!(t.read_str("out/sub/keep.me"), "keep\n");
}

#[test]
fn other_files_in_an_existing_dir_are_left_alone() {
    let t = TestDir::new();
    t.ec_ca("CA");
    t.write("out/README", "hello\n");
    issue(&t, &["--cn", "dev", "--out-dir", "out"]).ok();
    assert_issued_set(&t, "out", "CA");
    assert_eq!(t.read_str("out/README"), "hello\n");
}

#[test]
fn failure_leaves_nothing_and_removes_the_dir_it_created() {
    let t = TestDir::new();
    t.ec_ca("CA");
    t.ec_ca("OTHER");
    let before = t.listing();
    t.devcert(&[
        "issue",
        "--cn",
        "dev",
        "--ca",
        "CA.crt",
        "--ca-key",
        "OTHER.key",
        "--out-dir",
        "new/dir",
    ])
    .fails();
    t.assert_unchanged(&before);
    t.assert_no_file("new/dir");
    t.assert_no_file("new");
}

#[test]
fn failure_in_an_existing_dir_leaves_it_and_its_files() {
    let t = TestDir::new();
    t.ec_ca("CA");
    t.ec_ca("OTHER");
    t.write("out/notes.txt", "mine\n");
    let before = t.listing();
    t.devcert(&[
        "issue",
        "--cn",
        "dev",
        "--ca",
        "CA.crt",
        "--ca-key",
        "OTHER.key",
        "--out-dir",
        "out",
    ])
    .fails();
    t.assert_unchanged(&before);
}

#[test]
fn refused_cas_leave_nothing() {
    let t = TestDir::new();
    t.expired_ca("OLD");
    t.non_ca("LEAF");
    let before = t.listing();
    t.devcert(&[
        "issue",
        "--cn",
        "d",
        "--ca",
        "OLD.crt",
        "--ca-key",
        "OLD.key",
        "--out-dir",
        "o1",
    ])
    .fails_naming(&["OLD.crt"]);
    t.devcert(&[
        "issue",
        "--cn",
        "d",
        "--ca",
        "LEAF.crt",
        "--ca-key",
        "LEAF.key",
        "--out-dir",
        "o2",
    ])
    .fails_naming(&["LEAF.crt"]);
    t.assert_unchanged(&before);
}

#[test]
fn bad_config_leaves_nothing() {
    let t = TestDir::new();
    t.ec_ca("CA");
    t.write(
        "bad.cfg",
        "[req]\nprompt = yes\ndistinguished_name = dn\n[dn]\nCN=x\n",
    );
    let before = t.listing();
    issue(&t, &["--config", "bad.cfg", "--out-dir", "out"]).fails_naming(&["bad.cfg"]);
    t.assert_unchanged(&before);
}

#[test]
fn missing_inputs_name_the_file() {
    let t = TestDir::new();
    t.ec_ca("CA");
    let before = t.listing();
    issue(&t, &["--config", "nope.cfg", "--out-dir", "out"]).fails_naming(&["nope.cfg"]);
    t.devcert(&[
        "issue",
        "--cn",
        "d",
        "--ca",
        "nope.crt",
        "--ca-key",
        "CA.key",
        "--out-dir",
        "out",
    ])
    .fails_naming(&["nope.crt"]);
    t.devcert(&[
        "issue",
        "--cn",
        "d",
        "--ca",
        "CA.crt",
        "--ca-key",
        "nope.key",
        "--out-dir",
        "out",
    ])
    .fails_naming(&["nope.key"]);
    issue(
        &t,
        &["--cn", "d", "--profile", "nope.ext", "--out-dir", "out"],
    )
    .fails_naming(&["nope.ext"]);
    t.assert_unchanged(&before);
}

#[test]
fn invalid_values_are_usage_errors() {
    let t = TestDir::new();
    t.ec_ca("CA");
    issue(&t, &["--cn", "d", "--days", "0", "--out-dir", "out"]).usage_error();
    issue(&t, &["--cn", "d", "--algo", "dsa", "--out-dir", "out"]).usage_error();
    t.assert_no_file("out");
}

#[test]
fn key_modes_with_umask_000() {
    let t = TestDir::new();
    t.ec_ca("CA");
    t.devcert_cmd()
        .umask(0o000)
        .args([
            "issue",
            "--cn",
            "dev",
            "--ca",
            "CA.crt",
            "--ca-key",
            "CA.key",
            "--out-dir",
            "out",
        ])
        .run()
        .ok();
    t.assert_mode("out/client.key", 0o600);
    t.assert_mode("out/client_pkcs8.key", 0o600);
    t.assert_mode("out/client.crt", 0o644);
}

#[test]
fn two_devices_get_different_keys_and_serials() {
    let t = TestDir::new();
    t.ec_ca("CA");
    issue(&t, &["--cn", "dev-1", "--out-dir", "d1"]).ok();
    issue(&t, &["--cn", "dev-2", "--out-dir", "d2"]).ok();
    let a = t.cert("d1/client.crt");
    let b = t.cert("d2/client.crt");
    assert_ne!(a.get("serial_hex"), b.get("serial_hex"));
    assert_ne!(a.get("spki_der"), b.get("spki_der"));
}
