//! `devcert key` (replaces `openssl genpkey` / `ecparam -genkey`), checked with
//! `openssl pkey/ec/rsa/asn1parse` and Python `cryptography`.
mod common;
use common::*;

#[track_caller]
fn assert_label(t: &TestDir, file: &str, label: &str) {
    let text = t.read_str(file);
    assert_eq!(
        first_pem_label(&text).as_deref(),
        Some(label),
        "expected {file} to start with `-----BEGIN {label}-----`, got:\n{text}"
    );
    assert_eq!(
        pem_blocks(&text, label),
        1,
        "expected exactly one {label} block in {file}"
    );
}

#[test]
fn default_is_ec_p256_pkcs8_pem_mode_0600() {
    let t = TestDir::new();
    t.devcert(&["key", "-o", "client.key"]).ok();
    assert_label(&t, "client.key", "PRIVATE KEY");
    let text = t.pkey_text("client.key", &[]);
    assert!(
        text.contains("prime256v1") && text.contains("P-256"),
        "openssl pkey -text does not show a P-256 key:\n{text}"
    );
    assert_eq!(t.key("client.key").get("key"), "ec:secp256r1");
    t.assert_mode("client.key", 0o600);
}

#[test]
fn algo_ec_explicit_matches_default() {
    let t = TestDir::new();
    t.devcert(&["key", "--algo", "ec", "-o", "k.key"]).ok();
    assert_eq!(t.key("k.key").get("key"), "ec:secp256r1");
}

#[test]
fn rsa_defaults_to_2048_pkcs8() {
    let t = TestDir::new();
    t.devcert(&["key", "--algo", "rsa", "-o", "rsa.key"]).ok();
    assert_label(&t, "rsa.key", "PRIVATE KEY");
    let text = t.pkey_text("rsa.key", &[]);
    assert!(
        text.contains("(2048 bit"),
        "expected a 2048-bit RSA key:\n{text}"
    );
    t.openssl_ok(&["rsa", "-in", "rsa.key", "-check", "-noout"]);
    assert_eq!(t.key("rsa.key").get("key"), "rsa:2048");
    t.assert_mode("rsa.key", 0o600);
}

#[test]
fn rsa_bits_3072() {
    let t = TestDir::new();
    t.devcert(&["key", "--algo", "rsa", "--bits", "3072", "-o", "rsa.key"])
        .ok();
    assert_eq!(t.key("rsa.key").get("key"), "rsa:3072");
    assert!(t.pkey_text("rsa.key", &[]).contains("(3072 bit"));
}

#[test]
fn rsa_colon_bits_alias_4096() {
    let t = TestDir::new();
    t.devcert(&["key", "--algo", "rsa:4096", "-o", "rsa.key"])
        .ok();
    assert_eq!(t.key("rsa.key").get("key"), "rsa:4096");
    t.openssl_ok(&["rsa", "-in", "rsa.key", "-check", "-noout"]);
}

/// `--bits`/`--curve` may refine a bare `--algo`, never contradict a size
/// or curve it names.
#[test]
fn contradicting_size_or_curve_is_a_usage_error() {
    let t = TestDir::new();
    for args in [
        &["--algo", "rsa:3072", "--bits", "4096"][..],
        &["--algo", "p384", "--curve", "p256"],
        &["--algo", "ec:p256", "--curve", "p384"],
    ] {
        t.devcert(&[&["key"], args, &["-o", "k.key"]].concat())
            .usage_error();
        t.assert_no_file("k.key");
    }
    // Agreeing is fine.
    t.devcert(&[
        "key",
        "--algo",
        "p384",
        "--curve",
        "secp384r1",
        "-o",
        "k.key",
    ])
    .ok();
    assert!(t.pkey_text("k.key", &[]).contains("NIST CURVE: P-384"));
}

/// A passphrase for a key that would not be encrypted is a mistake the
/// user would not notice: exit 2, no key.
#[test]
fn passphrase_without_encrypt_is_a_usage_error() {
    let t = TestDir::new();
    t.write("pw", "secret phrase\n");
    t.devcert(&["key", "--passphrase-file", "pw", "-o", "k.key"])
        .usage_error();
    t.devcert(&["key", "--passphrase-env", "HOME", "-o", "k.key"])
        .usage_error();
    t.assert_no_file("k.key");
    t.devcert(&["key", "-o", "plain.key"]).ok();
    t.devcert(&[
        "pkcs8",
        "plain.key",
        "--out-passphrase-file",
        "pw",
        "-o",
        "k.key",
    ])
    .usage_error();
    t.assert_no_file("k.key");
}

#[test]
fn p384_curve_spellings() {
    let t = TestDir::new();
    let variants: &[&[&str]] = &[
        &["--curve", "p384"],
        &["--curve", "secp384r1"],
        &["--curve", "P-384"],
        &["--algo", "ec", "--curve", "p384"],
        &["--algo", "ec:p384"],
        &["--algo", "p384"],
        &["--algo", "secp384r1"],
    ];
    for (i, v) in variants.iter().enumerate() {
        let f = format!("k{i}.key");
        let mut args = vec!["key"];
        args.extend_from_slice(v);
        args.extend_from_slice(&["-o", &f]);
        t.devcert(&args).ok();
        assert_eq!(t.key(&f).get("key"), "ec:secp384r1", "args {v:?}");
        let text = t.pkey_text(&f, &[]);
        assert!(
            text.contains("secp384r1"),
            "args {v:?}: openssl says:\n{text}"
        );
    }
}

#[test]
fn p256_curve_spellings() {
    let t = TestDir::new();
    let variants: &[&[&str]] = &[
        &["--curve", "p256"],
        &["--curve", "prime256v1"],
        &["--curve", "secp256r1"],
        &["--curve", "P-256"],
        &["--algo", "ec:p256"],
        &["--algo", "prime256v1"],
    ];
    for (i, v) in variants.iter().enumerate() {
        let f = format!("k{i}.key");
        let mut args = vec!["key"];
        args.extend_from_slice(v);
        args.extend_from_slice(&["-o", &f]);
        t.devcert(&args).ok();
        assert_eq!(t.key(&f).get("key"), "ec:secp256r1", "args {v:?}");
    }
}

#[test]
fn format_sec1_is_ec_private_key_read_by_openssl_ec() {
    let t = TestDir::new();
    t.devcert(&["key", "--format", "sec1", "-o", "ec.key"]).ok();
    let text = t.read_str("ec.key");
    assert_eq!(
        pem_blocks(&text, "EC PRIVATE KEY"),
        1,
        "expected one `BEGIN EC PRIVATE KEY` block:\n{text}"
    );
    assert_eq!(
        pem_blocks(&text, "PRIVATE KEY"),
        0,
        "unexpected PKCS#8 block:\n{text}"
    );
    let out = t.openssl_ok(&["ec", "-in", "ec.key", "-check", "-noout"]);
    assert!(out.contains("EC Key valid"), "openssl ec -check:\n{out}");
    assert!(t.pkey_text("ec.key", &[]).contains("prime256v1"));
    t.assert_mode("ec.key", 0o600);
}

#[test]
fn format_sec1_with_p384() {
    let t = TestDir::new();
    t.devcert(&["key", "--curve", "p384", "--format", "sec1", "-o", "ec.key"])
        .ok();
    assert_eq!(pem_blocks(&t.read_str("ec.key"), "EC PRIVATE KEY"), 1);
    assert_eq!(t.key("ec.key").get("key"), "ec:secp384r1");
}

#[test]
fn format_pkcs1_is_rsa_private_key() {
    let t = TestDir::new();
    t.devcert(&["key", "--algo", "rsa", "--format", "pkcs1", "-o", "rsa.key"])
        .ok();
    assert_label(&t, "rsa.key", "RSA PRIVATE KEY");
    let out = t.openssl_ok(&["rsa", "-in", "rsa.key", "-check", "-noout"]);
    assert!(out.contains("RSA key ok"), "openssl rsa -check:\n{out}");
    assert_eq!(t.key("rsa.key").get("key"), "rsa:2048");
    t.assert_mode("rsa.key", 0o600);
}

#[test]
fn key_mode_is_0600_even_with_umask_000() {
    let t = TestDir::new();
    t.devcert_cmd()
        .umask(0o000)
        .args(["key", "-o", "client.key"])
        .run()
        .ok();
    t.assert_mode("client.key", 0o600);
    t.devcert_cmd()
        .umask(0o000)
        .args(["key", "--algo", "rsa", "--format", "pkcs1", "-o", "rsa.key"])
        .run()
        .ok();
    t.assert_mode("rsa.key", 0o600);
    // A umask that takes the owner's write bit still leaves the key 0600,
    // and openssl can read it.
    t.devcert_cmd()
        .umask(0o277)
        .args(["key", "-o", "strict.key"])
        .run()
        .ok();
    t.assert_mode("strict.key", 0o600);
    t.openssl_ok(&["pkey", "-in", "strict.key", "-noout"]);
}

#[test]
fn refuses_to_overwrite_without_force() {
    let t = TestDir::new();
    t.write("client.key", "precious\n");
    let before = t.listing();
    t.devcert(&["key", "-o", "client.key"])
        .fails_naming(&["client.key"]);
    t.assert_unchanged(&before);
}

#[test]
fn force_replaces_and_result_is_0600() {
    let t = TestDir::new();
    t.write("client.key", "old junk\n");
    std::fs::set_permissions(
        t.path("client.key"),
        std::os::unix::fs::PermissionsExt::from_mode(0o644),
    )
    .unwrap();
    t.devcert(&["key", "--force", "-o", "client.key"]).ok();
    assert_eq!(t.key("client.key").get("key"), "ec:secp256r1");
    t.assert_mode("client.key", 0o600);
    // No temporary file is left next to it.
    assert_eq!(
        t.listing().keys().cloned().collect::<Vec<_>>(),
        vec!["client.key".to_string()]
    );
}

#[test]
fn invalid_values_are_usage_errors() {
    let t = TestDir::new();
    let cases: &[&[&str]] = &[
        &["key", "--algo", "rsa", "--bits", "1000", "-o", "k.key"],
        &["key", "--algo", "rsa:1000", "-o", "k.key"],
        &["key", "--curve", "nosuchcurve", "-o", "k.key"],
        &["key", "--algo", "ec:nosuchcurve", "-o", "k.key"],
        &["key", "--algo", "dsa", "-o", "k.key"],
        &["key", "--format", "pkcs99", "-o", "k.key"],
        &["key", "--no-such-flag", "-o", "k.key"],
    ];
    for args in cases {
        t.devcert(args).usage_error();
        t.assert_no_file("k.key");
    }
}

#[test]
fn dash_o_dash_writes_the_key_to_stdout() {
    let t = TestDir::new();
    let out = t.devcert(&["key", "-o", "-"]).ok();
    let text = out.stdout_str();
    assert!(
        text.starts_with("-----BEGIN PRIVATE KEY-----"),
        "stdout:\n{text}"
    );
    t.write("from-stdout.key", &out.stdout);
    assert_eq!(t.key("from-stdout.key").get("key"), "ec:secp256r1");
    t.assert_no_file("-");
}

#[test]
fn no_dash_o_writes_the_key_to_stdout() {
    let t = TestDir::new();
    let out = t.devcert(&["key", "--algo", "rsa"]).ok();
    t.write("k.key", &out.stdout);
    assert_eq!(t.key("k.key").get("key"), "rsa:2048");
}

#[test]
fn encrypt_with_passphrase_file_is_pbes2_aes256cbc() {
    let t = TestDir::new();
    t.write("pass.txt", "correct horse battery staple\n");
    t.devcert(&[
        "key",
        "--encrypt",
        "--passphrase-file",
        "pass.txt",
        "-o",
        "enc.key",
    ])
    .ok();
    assert_label(&t, "enc.key", "ENCRYPTED PRIVATE KEY");
    t.assert_mode("enc.key", 0o600);
    // openssl decrypts it with the same passphrase file.
    let text = t.pkey_text("enc.key", &["-passin", "file:pass.txt"]);
    assert!(text.contains("prime256v1"), "{text}");
    // ... and the algorithm is PBES2 + AES-256-CBC with a modern KDF.
    let asn1 = t.openssl_ok(&["asn1parse", "-in", "enc.key"]);
    assert!(
        asn1.contains("PBES2"),
        "expected PBES2 in asn1parse:\n{asn1}"
    );
    assert!(
        asn1.contains("aes-256-cbc"),
        "expected aes-256-cbc in asn1parse:\n{asn1}"
    );
    assert!(
        asn1.contains("PBKDF2") || asn1.contains("id-scrypt") || asn1.contains("scrypt"),
        "expected a modern KDF (PBKDF2 or scrypt) in asn1parse:\n{asn1}"
    );
    // A wrong passphrase does not open it.
    let bad = t.openssl(&["pkey", "-in", "enc.key", "-passin", "pass:wrong", "-noout"]);
    assert_ne!(
        bad.code,
        Some(0),
        "openssl opened the key with a wrong passphrase"
    );
}

#[test]
fn encrypted_rsa_key() {
    let t = TestDir::new();
    t.write("pass.txt", "s3cret\n");
    t.devcert(&[
        "key",
        "--algo",
        "rsa",
        "--encrypt",
        "--passphrase-file",
        "pass.txt",
        "-o",
        "enc.key",
    ])
    .ok();
    assert_label(&t, "enc.key", "ENCRYPTED PRIVATE KEY");
    let text = t.pkey_text("enc.key", &["-passin", "pass:s3cret"]);
    assert!(text.contains("(2048 bit"), "{text}");
}

#[test]
fn passphrase_file_with_crlf_is_stripped() {
    let t = TestDir::new();
    t.write("pass.txt", "secret\r\n");
    t.devcert(&[
        "key",
        "--encrypt",
        "--passphrase-file",
        "pass.txt",
        "-o",
        "enc.key",
    ])
    .ok();
    // `pass:` takes the literal: only "secret" (without \r\n) must open it.
    t.pkey_text("enc.key", &["-passin", "pass:secret"]);
}

#[test]
fn passphrase_from_env() {
    let t = TestDir::new();
    t.devcert_cmd()
        .env("DEVCERT_TEST_PASSPHRASE", "from-the-env")
        .args([
            "key",
            "--encrypt",
            "--passphrase-env",
            "DEVCERT_TEST_PASSPHRASE",
            "-o",
            "enc.key",
        ])
        .run()
        .ok();
    t.pkey_text("enc.key", &["-passin", "pass:from-the-env"]);
}

#[test]
fn encrypt_without_passphrase_and_no_tty_does_not_prompt() {
    // CLI.md: "an interactive prompt only when stdin is a TTY; never a prompt
    // otherwise". Assumption: this is reported as an error (exit 1, or 2 if
    // treated as a usage error) and nothing is written.
    let t = TestDir::new();
    let out = t
        .devcert_cmd()
        .stdin("")
        .args(["key", "--encrypt", "-o", "enc.key"])
        .run();
    assert!(
        matches!(out.code, Some(1) | Some(2)),
        "expected a refusal (exit 1 or 2) without a passphrase source\n{}",
        out.describe()
    );
    assert!(
        out.stderr.trim_start().starts_with("error:"),
        "{}",
        out.describe()
    );
    t.assert_no_file("enc.key");
}

#[test]
fn missing_passphrase_file_is_an_error_naming_it() {
    let t = TestDir::new();
    t.devcert(&[
        "key",
        "--encrypt",
        "--passphrase-file",
        "no-such-pass.txt",
        "-o",
        "enc.key",
    ])
    .fails_naming(&["no-such-pass.txt"]);
    t.assert_no_file("enc.key");
}

#[test]
fn two_keys_differ() {
    let t = TestDir::new();
    t.devcert(&["key", "-o", "a.key"]).ok();
    t.devcert(&["key", "-o", "b.key"]).ok();
    assert_ne!(
        t.key("a.key").get("secret_sha256"),
        t.key("b.key").get("secret_sha256")
    );
}
