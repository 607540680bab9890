//! `devcert pkcs8` (replaces `openssl pkcs8 -topk8 -nocrypt`), fidelity 7:
//! the same private key as OpenSSL's conversion, accepted by `openssl pkey`
//! and by the JDK's `PKCS8EncodedKeySpec`.
mod common;
use common::*;

/// Same private key: `openssl pkey -noout -text` dumps are equal, and Python
/// `cryptography` sees the same secret and public key.
#[track_caller]
fn assert_same_private_key(
    t: &TestDir,
    got: &str,
    got_extra: &[&str],
    reference: &str,
    ref_extra: &[&str],
) {
    let a = t.pkey_text(got, got_extra);
    let b = t.pkey_text(reference, ref_extra);
    assert_eq!(
        a, b,
        "`openssl pkey -text` of {got} differs from {reference}"
    );
}

#[track_caller]
fn assert_plain_pkcs8_pem(t: &TestDir, file: &str) {
    let text = t.read_str(file);
    assert_eq!(
        first_pem_label(&text).as_deref(),
        Some("PRIVATE KEY"),
        "expected {file} to be PKCS#8 PEM (`BEGIN PRIVATE KEY`):\n{text}"
    );
    assert_eq!(
        pem_blocks(&text, "PRIVATE KEY"),
        1,
        "expected one PEM block in {file}"
    );
    assert!(
        !text.contains("EC PARAMETERS"),
        "PKCS#8 output must not carry an EC PARAMETERS block"
    );
    t.assert_mode(file, 0o600);
}

/// openssl's own conversion, for reference.
fn openssl_topk8(t: &TestDir, input: &str, out: &str, extra: &[&str]) {
    let mut args = vec!["pkcs8", "-topk8", "-nocrypt", "-in", input, "-out", out];
    args.extend_from_slice(extra);
    t.openssl_ok(&args);
}

#[test]
fn ecparam_key_with_params_block_like_openssl_pkcs8() {
    let t = TestDir::new();
    t.ec_key("client.key");
    let text = t.read_str("client.key");
    assert!(
        text.starts_with("-----BEGIN EC PARAMETERS-----"),
        "fixture: {text}"
    );
    t.devcert(&["pkcs8", "client.key", "-o", "client_pkcs8.key"])
        .ok();
    assert_plain_pkcs8_pem(&t, "client_pkcs8.key");
    openssl_topk8(&t, "client.key", "ref_pkcs8.key", &[]);
    assert_same_private_key(&t, "client_pkcs8.key", &[], "ref_pkcs8.key", &[]);
    let a = t.key("client_pkcs8.key");
    let b = t.key("client.key");
    assert_eq!(a.get("secret_sha256"), b.get("secret_sha256"));
    assert_eq!(a.get("spki_der"), b.get("spki_der"));
    // openssl pkcs8 -inform... reads it back as PKCS#8 without conversion.
    t.openssl_ok(&[
        "pkcs8",
        "-nocrypt",
        "-in",
        "client_pkcs8.key",
        "-out",
        "roundtrip.key",
    ]);
}

#[test]
fn sec1_without_params_block() {
    let t = TestDir::new();
    t.ec_key("with-params.key");
    t.openssl_ok(&["ec", "-in", "with-params.key", "-out", "sec1.key"]);
    let text = t.read_str("sec1.key");
    assert_eq!(
        first_pem_label(&text).as_deref(),
        Some("EC PRIVATE KEY"),
        "fixture: {text}"
    );
    t.devcert(&["pkcs8", "sec1.key", "-o", "out.key"]).ok();
    assert_plain_pkcs8_pem(&t, "out.key");
    openssl_topk8(&t, "sec1.key", "ref.key", &[]);
    assert_same_private_key(&t, "out.key", &[], "ref.key", &[]);
}

#[test]
fn sec1_der_and_p384() {
    let t = TestDir::new();
    t.openssl_ok(&[
        "ecparam",
        "-name",
        "secp384r1",
        "-genkey",
        "-out",
        "p384.key",
    ]);
    t.openssl_ok(&[
        "ec", "-in", "p384.key", "-outform", "DER", "-out", "p384.der",
    ]);
    t.devcert(&["pkcs8", "p384.der", "-o", "out.key"]).ok();
    assert_plain_pkcs8_pem(&t, "out.key");
    openssl_topk8(&t, "p384.key", "ref.key", &[]);
    assert_same_private_key(&t, "out.key", &[], "ref.key", &[]);
    assert_eq!(t.key("out.key").get("key"), "ec:secp384r1");
}

#[test]
fn pkcs1_rsa() {
    let t = TestDir::new();
    t.rsa_key("rsa8.key");
    t.openssl_ok(&["rsa", "-in", "rsa8.key", "-traditional", "-out", "rsa1.key"]);
    assert_eq!(
        first_pem_label(&t.read_str("rsa1.key")).as_deref(),
        Some("RSA PRIVATE KEY")
    );
    t.devcert(&["pkcs8", "rsa1.key", "-o", "out.key"]).ok();
    assert_plain_pkcs8_pem(&t, "out.key");
    openssl_topk8(&t, "rsa1.key", "ref.key", &[]);
    assert_same_private_key(&t, "out.key", &[], "ref.key", &[]);
}

#[test]
fn pkcs8_der_and_pem_inputs() {
    let t = TestDir::new();
    t.ec_key("ec.key");
    openssl_topk8(&t, "ec.key", "ref.key", &[]);
    openssl_topk8(&t, "ec.key", "ref.der", &["-outform", "DER"]);
    t.devcert(&["pkcs8", "ref.der", "-o", "from-der.key"]).ok();
    t.devcert(&["pkcs8", "ref.key", "-o", "from-pem.key"]).ok();
    for f in ["from-der.key", "from-pem.key"] {
        assert_plain_pkcs8_pem(&t, f);
        assert_same_private_key(&t, f, &[], "ref.key", &[]);
    }
}

#[test]
fn encrypted_pkcs8_inputs_aes256_des3_scrypt() {
    let t = TestDir::new();
    t.ec_key("ec.key");
    t.rsa_key("rsa.key");
    t.write("P", "input passphrase\n");
    for (key, tag, extra) in [
        ("ec.key", "aes", &["-v2", "aes-256-cbc"][..]),
        ("ec.key", "des3", &["-v2", "des3"][..]),
        ("ec.key", "scrypt", &["-scrypt"][..]),
        ("rsa.key", "rsa-aes", &["-v2", "aes-256-cbc"][..]),
    ] {
        let enc = format!("{tag}.enc");
        let mut args = vec![
            "pkcs8", "-topk8", "-in", key, "-passout", "file:P", "-out", &enc,
        ];
        args.extend_from_slice(extra);
        t.openssl_ok(&args);
        assert!(t.read_str(&enc).contains("BEGIN ENCRYPTED PRIVATE KEY"));
        let out = format!("{tag}.plain.key");
        t.devcert(&["pkcs8", &enc, "--passphrase-file", "P", "-o", &out])
            .ok();
        assert_plain_pkcs8_pem(&t, &out);
        let refk = format!("{tag}.ref.key");
        openssl_topk8(&t, key, &refk, &[]);
        assert_same_private_key(&t, &out, &[], &refk, &[]);
    }
}

#[test]
fn encrypted_der_input() {
    let t = TestDir::new();
    t.ec_key("ec.key");
    t.write("P", "pw\n");
    t.openssl_ok(&[
        "pkcs8", "-topk8", "-in", "ec.key", "-passout", "file:P", "-outform", "DER", "-out",
        "enc.der",
    ]);
    t.devcert(&[
        "pkcs8",
        "enc.der",
        "--passphrase-file",
        "P",
        "-o",
        "out.key",
    ])
    .ok();
    openssl_topk8(&t, "ec.key", "ref.key", &[]);
    assert_same_private_key(&t, "out.key", &[], "ref.key", &[]);
}

#[test]
fn passphrase_env_for_input() {
    let t = TestDir::new();
    t.ec_key("ec.key");
    t.openssl_ok(&[
        "pkcs8",
        "-topk8",
        "-in",
        "ec.key",
        "-passout",
        "pass:env-secret",
        "-out",
        "enc.key",
    ]);
    t.devcert_cmd()
        .env("DEVCERT_TEST_PW", "env-secret")
        .args([
            "pkcs8",
            "enc.key",
            "--passphrase-env",
            "DEVCERT_TEST_PW",
            "-o",
            "out.key",
        ])
        .run()
        .ok();
    openssl_topk8(&t, "ec.key", "ref.key", &[]);
    assert_same_private_key(&t, "out.key", &[], "ref.key", &[]);
}

#[test]
fn der_output_is_read_by_openssl_pkey_inform_der() {
    let t = TestDir::new();
    t.ec_key("client.key");
    t.devcert(&["pkcs8", "client.key", "--der", "-o", "client_pkcs8.der"])
        .ok();
    let der = t.read("client_pkcs8.der");
    assert_eq!(
        der.first(),
        Some(&0x30u8),
        "--der output must be DER (a SEQUENCE), not PEM"
    );
    t.assert_mode("client_pkcs8.der", 0o600);
    openssl_topk8(&t, "client.key", "ref.key", &[]);
    assert_same_private_key(&t, "client_pkcs8.der", &["-inform", "DER"], "ref.key", &[]);
    // It is PKCS#8, not SEC1: openssl pkcs8 reads it.
    t.openssl_ok(&[
        "pkcs8",
        "-nocrypt",
        "-inform",
        "DER",
        "-in",
        "client_pkcs8.der",
        "-out",
        "roundtrip.key",
    ]);
}

#[test]
fn encrypt_output_decrypts_with_openssl() {
    let t = TestDir::new();
    t.ec_key("client.key");
    t.write("P", "out-secret\n");
    t.devcert(&[
        "pkcs8",
        "client.key",
        "--encrypt",
        "--passphrase-file",
        "P",
        "-o",
        "enc.key",
    ])
    .ok();
    let text = t.read_str("enc.key");
    assert_eq!(
        first_pem_label(&text).as_deref(),
        Some("ENCRYPTED PRIVATE KEY"),
        "{text}"
    );
    t.assert_mode("enc.key", 0o600);
    openssl_topk8(&t, "client.key", "ref.key", &[]);
    assert_same_private_key(&t, "enc.key", &["-passin", "file:P"], "ref.key", &[]);
    let asn1 = t.openssl_ok(&["asn1parse", "-in", "enc.key"]);
    assert!(
        asn1.contains("PBES2") && asn1.contains("aes-256-cbc"),
        "{asn1}"
    );
}

#[test]
fn reencrypt_with_out_passphrase_file() {
    let t = TestDir::new();
    t.ec_key("client.key");
    t.write("IN", "old-pass\n");
    t.write("OUT", "new-pass\n");
    t.openssl_ok(&[
        "pkcs8",
        "-topk8",
        "-in",
        "client.key",
        "-passout",
        "file:IN",
        "-out",
        "in.enc",
    ]);
    t.devcert(&[
        "pkcs8",
        "in.enc",
        "--passphrase-file",
        "IN",
        "--encrypt",
        "--out-passphrase-file",
        "OUT",
        "-o",
        "out.enc",
    ])
    .ok();
    openssl_topk8(&t, "client.key", "ref.key", &[]);
    assert_same_private_key(&t, "out.enc", &["-passin", "pass:new-pass"], "ref.key", &[]);
    let old = t.openssl(&[
        "pkey",
        "-in",
        "out.enc",
        "-passin",
        "pass:old-pass",
        "-noout",
    ]);
    assert_ne!(
        old.code,
        Some(0),
        "output must be encrypted with the --out-passphrase-file passphrase"
    );
}

#[test]
fn wrong_passphrase_is_a_clear_error() {
    let t = TestDir::new();
    t.ec_key("ec.key");
    t.write("P", "right\n");
    t.write("W", "wrong\n");
    t.openssl_ok(&[
        "pkcs8", "-topk8", "-in", "ec.key", "-passout", "file:P", "-out", "enc.key",
    ]);
    let before = t.listing();
    t.devcert(&[
        "pkcs8",
        "enc.key",
        "--passphrase-file",
        "W",
        "-o",
        "out.key",
    ])
    .fails_naming(&["enc.key"])
    .stderr_has("pass");
    t.assert_unchanged(&before);
}

#[test]
fn encrypted_input_without_passphrase_and_no_tty_is_an_error() {
    let t = TestDir::new();
    t.ec_key("ec.key");
    t.openssl_ok(&[
        "pkcs8", "-topk8", "-in", "ec.key", "-passout", "pass:x", "-out", "enc.key",
    ]);
    t.devcert_cmd()
        .stdin("")
        .args(["pkcs8", "enc.key", "-o", "out.key"])
        .run()
        .fails_naming(&["enc.key"]);
    t.assert_no_file("out.key");
}

#[test]
fn legacy_proc_type_encrypted_pem_is_refused_with_an_openssl_hint() {
    let t = TestDir::new();
    t.ec_key("ec.key");
    t.rsa_key("rsa.key");
    t.write("P", "legacy\n");
    t.openssl_ok(&[
        "ec",
        "-in",
        "ec.key",
        "-aes256",
        "-passout",
        "file:P",
        "-out",
        "legacy-ec.key",
    ]);
    t.openssl_ok(&[
        "rsa",
        "-in",
        "rsa.key",
        "-aes256",
        "-traditional",
        "-passout",
        "file:P",
        "-out",
        "legacy-rsa.key",
    ]);
    for f in ["legacy-ec.key", "legacy-rsa.key"] {
        assert!(
            t.read_str(f).contains("Proc-Type: 4,ENCRYPTED"),
            "fixture {f}"
        );
        let out = t
            .devcert(&["pkcs8", f, "--passphrase-file", "P", "-o", "out.key"])
            .fails_naming(&[f]);
        assert!(
            out.stderr.contains("openssl "),
            "expected a hint naming an openssl command to convert {f}\n{}",
            out.describe()
        );
        t.assert_no_file("out.key");
    }
}

#[test]
fn java_pkcs8encodedkeyspec_accepts_ec_output() {
    let t = TestDir::new();
    t.ec_ca("CA");
    t.openssl_leaf("client", "CA"); // client.key is ecparam output (2 blocks)
    t.devcert(&["pkcs8", "client.key", "-o", "client_pkcs8.key"])
        .ok();
    t.write(
        "client_chain.crt",
        [t.read("client.crt"), t.read("CA.crt")].concat(),
    );
    t.assert_java_accepts("client_pkcs8.key", "client_chain.crt");
    // The DER form too.
    t.devcert(&["pkcs8", "client.key", "--der", "-o", "client_pkcs8.der"])
        .ok();
    t.assert_java_accepts("client_pkcs8.der", "client_chain.crt");
}

#[test]
fn java_pkcs8encodedkeyspec_accepts_rsa_output() {
    let t = TestDir::new();
    t.ec_ca("CA");
    t.rsa_csr("client");
    t.openssl_sign("client.csr", "CA", "client.crt", None);
    t.openssl_ok(&[
        "rsa",
        "-in",
        "client.key",
        "-traditional",
        "-out",
        "client.pkcs1.key",
    ]);
    t.devcert(&["pkcs8", "client.pkcs1.key", "-o", "client_pkcs8.key"])
        .ok();
    t.write(
        "client_chain.crt",
        [t.read("client.crt"), t.read("CA.crt")].concat(),
    );
    t.assert_java_accepts("client_pkcs8.key", "client_chain.crt");
}

#[test]
fn output_is_0600_even_with_umask_000_and_force() {
    let t = TestDir::new();
    t.ec_key("client.key");
    t.devcert_cmd()
        .umask(0o000)
        .args(["pkcs8", "client.key", "-o", "a.key"])
        .run()
        .ok();
    t.assert_mode("a.key", 0o600);
    t.write("b.key", "old\n");
    std::fs::set_permissions(
        t.path("b.key"),
        std::os::unix::fs::PermissionsExt::from_mode(0o644),
    )
    .unwrap();
    let before = t.listing();
    t.devcert(&["pkcs8", "client.key", "-o", "b.key"])
        .fails_naming(&["b.key"]);
    t.assert_unchanged(&before);
    t.devcert_cmd()
        .umask(0o000)
        .args(["pkcs8", "client.key", "--force", "-o", "b.key"])
        .run()
        .ok();
    t.assert_mode("b.key", 0o600);
    assert_same_private_key(&t, "b.key", &[], "a.key", &[]);
}

#[test]
fn stdin_to_stdout() {
    let t = TestDir::new();
    t.ec_key("client.key");
    let out = t
        .devcert_cmd()
        .stdin(t.read("client.key"))
        .args(["pkcs8", "-"])
        .run()
        .ok();
    assert!(
        out.stdout_str().starts_with("-----BEGIN PRIVATE KEY-----"),
        "{}",
        out.describe()
    );
    t.write("stdout.key", &out.stdout);
    openssl_topk8(&t, "client.key", "ref.key", &[]);
    assert_same_private_key(&t, "stdout.key", &[], "ref.key", &[]);
}

#[test]
fn not_a_key_and_missing_file_are_errors() {
    let t = TestDir::new();
    t.ec_ca("CA");
    t.write("junk.key", "not a key at all\n");
    t.write("empty.key", "");
    t.devcert(&["pkcs8", "CA.crt", "-o", "out.key"])
        .fails_naming(&["CA.crt"]);
    t.devcert(&["pkcs8", "junk.key", "-o", "out.key"])
        .fails_naming(&["junk.key"]);
    t.devcert(&["pkcs8", "empty.key", "-o", "out.key"])
        .fails_naming(&["empty.key"]);
    t.devcert(&["pkcs8", "no-such.key", "-o", "out.key"])
        .fails_naming(&["no-such.key"]);
    t.assert_no_file("out.key");
}

/// `base` (DER of `openssl ecparam -genkey`'s SEC1 key) with its curve
/// parameters replaced by `params` (None: left out).
fn sec1_with_params(base: &[u8], params: Option<der::asn1::ObjectIdentifier>) -> Vec<u8> {
    use der::{Decode, Encode};
    let mut k = sec1::EcPrivateKey::from_der(base).unwrap();
    k.parameters = params.map(sec1::EcParameters::NamedCurve);
    k.to_der().unwrap()
}

/// pyca's `EC/ec-missing-curve.pem` and `PKCS8/ec-inconsistent-curve.pem`,
/// made here: a key whose curve is missing or contradicts itself is refused
/// by every key reader, as `openssl pkey` refuses it; never guessed.
#[test]
fn keys_without_a_curve_or_with_two_are_refused_by_every_reader() {
    use der::Encode;
    let p256 = der::asn1::ObjectIdentifier::new_unwrap("1.2.840.10045.3.1.7");
    let p384 = der::asn1::ObjectIdentifier::new_unwrap("1.3.132.0.34");
    let t = TestDir::new();
    t.ec_ca("CA");
    t.ec_key("good.key");
    t.ec_csr("x");
    let base = t
        .openssl(&["ec", "-in", "good.key", "-outform", "DER"])
        .stdout;
    let pem = |tag: &str, der: &[u8]| pem::encode(&pem::Pem::new(tag, der.to_vec()));
    t.write(
        "missing.pem",
        pem("EC PRIVATE KEY", &sec1_with_params(&base, None)),
    );
    // With an EC PARAMETERS block that names another curve than the key.
    let params = t.openssl_ok(&["ecparam", "-name", "secp384r1"]);
    let good = t.read_str("good.key");
    let key_block = &good[good.find("-----BEGIN EC PRIVATE KEY").unwrap()..];
    t.write("two.pem", format!("{params}{key_block}"));
    // PKCS#8 says P-256; the SEC1 key inside says secp384r1.
    let inner = sec1_with_params(&base, Some(p384));
    let info = pkcs8::PrivateKeyInfoRef::new(
        pkcs8::AlgorithmIdentifierRef {
            oid: "1.2.840.10045.2.1".parse().unwrap(),
            parameters: Some((&p256).into()),
        },
        der::asn1::OctetStringRef::new(&inner).unwrap(),
    );
    t.write(
        "inconsistent.pem",
        pem("PRIVATE KEY", &info.to_der().unwrap()),
    );
    let cases = [
        ("missing.pem", "names no curve"),
        (
            "two.pem",
            "EC PARAMETERS block names P-384, the key names P-256",
        ),
        (
            "inconsistent.pem",
            "PKCS#8 names P-256 (prime256v1), the EC key inside names P-384 (secp384r1)",
        ),
    ];
    for (key, why) in cases {
        if key != "two.pem" {
            t.openssl(&["pkey", "-in", key, "-noout"]).code(1);
        }
        for args in [
            vec!["pkcs8", key],
            vec!["csr", "--key", key, "--subject", "/CN=x"],
            vec!["sign", "--csr", "x.csr", "--ca", "CA.crt", "--ca-key", key],
            vec![
                "ca",
                "--subject",
                "/CN=I",
                "--ca",
                "CA.crt",
                "--ca-key",
                key,
                "--key-out",
                "i.key",
            ],
            vec![
                "p12",
                "--key",
                key,
                "--cert",
                "CA.crt",
                "--passphrase-env",
                "PW",
            ],
        ] {
            t.devcert_cmd()
                .args(&args)
                .env("PW", "pw")
                .run()
                .fails_naming(&[key, why]);
        }
    }
}
