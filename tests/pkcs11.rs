//! CA keys in a PKCS#11 token, against a real SoftHSM2 token made in the
//! test's folder (`SOFTHSM2_CONF`). Every product is checked with OpenSSL;
//! the keys' attributes with `pkcs11-tool` (OpenSC).
//!
//! Skipped (with a message) only when SoftHSM2 is missing and `CI` is not
//! set; in CI (.ci/run installs softhsm2 and opensc) a missing tool fails.
mod common;
use common::*;

/// The `pkcs11-tool -O` block of the private key labelled `label`.
fn private_object<'a>(objects: &'a str, label: &str) -> &'a str {
    objects
        .split("Private Key Object")
        .skip(1)
        .find(|b| {
            b.lines()
                .any(|l| l.trim() == format!("label:      {label}"))
        })
        .unwrap_or_else(|| panic!("no private key '{label}' in the token:\n{objects}"))
}

/// `openssl X -text` of a signed object without what legitimately differs
/// between two signings of the same fields: the signature value, the clock
/// times and (for --algo runs) nothing else.
fn fields(t: &TestDir, kind: &str, file: &str) -> String {
    let text = t.openssl_ok(&[kind, "-in", file, "-noout", "-text"]);
    let mut out = Vec::new();
    let mut in_signature = false;
    for line in text.lines() {
        let l = line.trim();
        if l.starts_with("Signature Value") {
            in_signature = true;
            continue;
        }
        if in_signature && l.chars().all(|c| c.is_ascii_hexdigit() || c == ':') {
            continue;
        }
        in_signature = false;
        let clock = ["Not Before", "Not After", "Last Update", "Next Update"];
        if !clock.iter().any(|c| l.starts_with(c)) {
            out.push(line.to_string());
        }
    }
    assert!(
        out.iter().any(|l| l.contains("Signature Algorithm")),
        "openssl printed no fields for {file}:\n{text}"
    );
    out.join("\n")
}

/// The seed workflow with the root CA key made in (and kept by) the token:
/// devices, an intermediate (file and token key) and a CRL, all accepted
/// by OpenSSL; the key sensitive and never extractable.
#[test]
fn a_root_made_in_the_token_signs_devices_intermediates_and_crls() {
    let t = TestDir::new();
    let Some(tok) = token(&t) else { return };
    for algo in ["ec", "ec:p384", "rsa:2048"] {
        let root = format!("root-{}", algo.replace(':', "-"));
        let ca = format!("{root}.crt");
        tok.devcert(&[
            "ca",
            "--algo",
            algo,
            "--subject",
            &format!("/O=Test/CN=Token Root {algo}"),
            "--key-out",
            &tok.uri(&root),
            "-o",
            &ca,
        ])
        .ok();
        t.assert_openssl_verify(&["-CAfile", &ca], &ca);
        // Only the certificate was written: no key file beside it.
        let written: Vec<String> = std::fs::read_dir(t.root())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.contains("pkcs11") || (n.starts_with("root") && n.ends_with(".key")))
            .collect();
        assert!(written.is_empty(), "key files written: {written:?}");

        // The key is sensitive, never extractable, signs only, and its id
        // is the certificate's subjectKeyIdentifier.
        let objects = tok.objects();
        let key = private_object(&objects, &root);
        // pkcs11-tool prints CKA_SENSITIVE, CKA_EXTRACTABLE ("extractable")
        // and CKA_NEVER_EXTRACTABLE on the Access line.
        let access = key
            .lines()
            .find(|l| l.trim().starts_with("Access:"))
            .unwrap_or_default();
        assert!(
            access.contains(" sensitive") && access.contains("never extractable"),
            "{key}"
        );
        assert!(
            !access
                .replace("never extractable", "")
                .contains("extractable"),
            "{key}"
        );
        assert!(key.contains("Usage:      sign\n"), "{key}");
        let ski = t.openssl_ok(&["x509", "-in", &ca, "-noout", "-ext", "subjectKeyIdentifier"]);
        let ski = ski
            .lines()
            .nth(1)
            .unwrap()
            .trim()
            .replace(':', "")
            .to_lowercase();
        assert!(
            key.contains(&format!("ID:         {ski}")),
            "id is not {ski}:\n{key}"
        );

        // A device, through `issue` and `sign`.
        let dev = format!("dev-{root}");
        tok.devcert(&[
            "issue",
            "--cn",
            &dev,
            "--ca",
            &ca,
            "--ca-key",
            &tok.uri(&root),
            "--out-dir",
            &dev,
        ])
        .ok();
        t.assert_openssl_verify(&["-CAfile", &ca], &format!("{dev}/client.crt"));
        tok.devcert(&[
            "sign",
            "--csr",
            &format!("{dev}/client.csr"),
            "--ca",
            &ca,
            "--ca-key",
            &tok.uri(&root),
            "-o",
            &format!("{dev}/again.crt"),
        ])
        .ok();
        t.assert_openssl_verify(&["-CAfile", &ca], &format!("{dev}/again.crt"));

        // Intermediates under the token root: one with a file key, one in
        // the token too, which then signs a device.
        let sub_file = format!("sub-file-{root}");
        tok.devcert(&[
            "ca",
            "--subject",
            "/CN=Sub file",
            "--ca",
            &ca,
            "--ca-key",
            &tok.uri(&root),
            "--key-out",
            &format!("{sub_file}.key"),
            "-o",
            &format!("{sub_file}.crt"),
        ])
        .ok();
        t.assert_openssl_verify(&["-CAfile", &ca], &format!("{sub_file}.crt"));
        let sub = format!("sub-{root}");
        tok.devcert(&[
            "ca",
            "--subject",
            "/CN=Sub token",
            "--ca",
            &ca,
            "--ca-key",
            &tok.uri(&root),
            "--key-out",
            &tok.uri(&sub),
            "-o",
            &format!("{sub}.crt"),
        ])
        .ok();
        t.assert_openssl_verify(&["-CAfile", &ca], &format!("{sub}.crt"));
        tok.devcert(&[
            "issue",
            "--cn",
            "leaf",
            "--ca",
            &format!("{sub}.crt"),
            "--ca-key",
            &tok.uri(&sub),
            "--out-dir",
            &format!("leaf-{sub}"),
        ])
        .ok();
        t.assert_openssl_verify(
            &["-CAfile", &ca, "-untrusted", &format!("{sub}.crt")],
            &format!("leaf-{sub}/client.crt"),
        );

        // A CRL signed in the token holds the deactivated device.
        let db = format!("{root}.db");
        tok.devcert(&["registry", "--db", &db, "ca", "add", &ca])
            .ok();
        tok.devcert(&[
            "issue",
            "--cn",
            "held",
            "--ca",
            &ca,
            "--ca-key",
            &tok.uri(&root),
            "--registry",
            &db,
            "--out-dir",
            &format!("held-{root}"),
        ])
        .ok();
        let serial = t.openssl_ok(&[
            "x509",
            "-in",
            &format!("held-{root}/client.crt"),
            "-noout",
            "-serial",
        ]);
        let serial = serial.trim().trim_start_matches("serial=").to_string();
        tok.devcert(&["registry", "--db", &db, "device", "deactivate", &serial])
            .ok();
        let crl = format!("{root}.crl");
        tok.devcert(&[
            "registry",
            "--db",
            &db,
            "crl",
            "--ca",
            &ca,
            "--ca-key",
            &tok.uri(&root),
            "-o",
            &crl,
        ])
        .ok();
        let verified = t.openssl_ok(&[
            "crl", "-in", &crl, "-verify", "-CAfile", &ca, "-noout", "-text",
        ]);
        assert!(
            verified.contains("verify OK") && verified.contains(&serial),
            "{verified}"
        );
    }
}

/// The same CA key in a file and in the token gives certificates, CSRs and
/// CRLs equal in every field but the signature (and the clock).
#[test]
fn token_and_file_keys_sign_the_same_fields() {
    let t = TestDir::new();
    let Some(tok) = token(&t) else { return };
    t.ec_csr("device");
    let cases: [(&[&str], &str); 4] = [
        (
            &["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"],
            "sha256",
        ),
        (
            &["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-384"],
            "sha384",
        ),
        (
            &["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"],
            "sha512",
        ),
        (
            &["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:4096"],
            "sha256",
        ),
    ];
    for (i, (genpkey, digest)) in cases.iter().enumerate() {
        let name = format!("ca{i}");
        let (key, crt) = (format!("{name}.key"), format!("{name}.crt"));
        let mut args = vec!["genpkey", "-out", &key];
        args.extend_from_slice(genpkey);
        t.openssl_ok(&args);
        let cnf = t.min_cnf();
        t.openssl_ok(&[
            "req",
            "-x509",
            "-config",
            &cnf,
            "-key",
            &key,
            "-subj",
            &format!("/O=Test/CN={name}"),
            "-days",
            "3650",
            "-out",
            &crt,
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
        ]);
        tok.import(&key, &name, &format!("0{i}"));
        let uri = tok.uri(&name);
        let what = format!("{name} ({genpkey:?}, {digest})");

        // Certificates.
        for (k, out) in [(key.as_str(), "file"), (uri.as_str(), "token")] {
            tok.devcert(&[
                "sign",
                "--csr",
                "device.csr",
                "--ca",
                &crt,
                "--ca-key",
                k,
                "--digest",
                digest,
                "--serial",
                "0A1B2C",
                "-o",
                &format!("{name}-{out}.crt"),
            ])
            .ok();
            t.assert_openssl_verify(&["-CAfile", &crt], &format!("{name}-{out}.crt"));
        }
        assert_eq!(
            fields(&t, "x509", &format!("{name}-file.crt")),
            fields(&t, "x509", &format!("{name}-token.crt")),
            "certificate fields differ for {what}"
        );

        // CSRs (e.g. an intermediate's key in an HSM, certified offline).
        for (k, out) in [(key.as_str(), "file"), (uri.as_str(), "token")] {
            tok.devcert(&[
                "csr",
                "--key",
                k,
                "--subject",
                "/O=Test/CN=Sub CA",
                "--digest",
                digest,
                "-o",
                &format!("{name}-{out}.csr"),
            ])
            .ok();
            let v = t.openssl_ok(&[
                "req",
                "-in",
                &format!("{name}-{out}.csr"),
                "-verify",
                "-noout",
            ]);
            assert!(v.contains("verify OK"), "{v}");
        }
        assert_eq!(
            fields(&t, "req", &format!("{name}-file.csr")),
            fields(&t, "req", &format!("{name}-token.csr")),
            "CSR fields differ for {what}"
        );

        // CRLs from two copies of one registry (same CRL number).
        let db = format!("{name}.db");
        tok.devcert(&["registry", "--db", &db, "ca", "add", &crt])
            .ok();
        tok.devcert(&[
            "sign",
            "--csr",
            "device.csr",
            "--ca",
            &crt,
            "--ca-key",
            &key,
            "--registry",
            &db,
            "-o",
            &format!("{name}-reg.crt"),
        ])
        .ok();
        let serial = t.openssl_ok(&[
            "x509",
            "-in",
            &format!("{name}-reg.crt"),
            "-noout",
            "-serial",
        ]);
        let serial = serial.trim().trim_start_matches("serial=").to_string();
        tok.devcert(&["registry", "--db", &db, "device", "deactivate", &serial])
            .ok();
        std::fs::copy(t.path(&db), t.path(&format!("{db}2"))).unwrap();
        for (k, out, d) in [
            (key.as_str(), "file", db.clone()),
            (uri.as_str(), "token", format!("{db}2")),
        ] {
            tok.devcert(&[
                "registry",
                "--db",
                &d,
                "crl",
                "--ca",
                &crt,
                "--ca-key",
                k,
                "-o",
                &format!("{name}-{out}.crl"),
            ])
            .ok();
            let v = t.openssl_ok(&[
                "crl",
                "-in",
                &format!("{name}-{out}.crl"),
                "-verify",
                "-CAfile",
                &crt,
                "-noout",
            ]);
            assert!(v.contains("verify OK"), "{v}");
        }
        assert_eq!(
            fields(&t, "crl", &format!("{name}-file.crl")),
            fields(&t, "crl", &format!("{name}-token.crl")),
            "CRL fields differ for {what}"
        );
    }
}

/// `batch` shares the token key between its workers (a session each).
#[test]
fn batch_signs_every_device_through_the_token() {
    let t = TestDir::new();
    let Some(tok) = token(&t) else { return };
    tok.devcert(&[
        "ca",
        "--subject",
        "/CN=Batch Root",
        "--key-out",
        &tok.uri("batch"),
        "-o",
        "CA.crt",
    ])
    .ok();
    tok.devcert(&[
        "batch",
        "--ca",
        "CA.crt",
        "--ca-key",
        &tok.uri("batch"),
        "--count",
        "40",
        "--cn-prefix",
        "dev-",
        "--jobs",
        "4",
        "--out-dir",
        "fleet",
    ])
    .ok();
    let mut args = vec!["verify".to_string(), "-CAfile".into(), "CA.crt".into()];
    for dir in std::fs::read_dir(t.path("fleet")).unwrap() {
        let crt = dir.unwrap().path().join("client.crt");
        if crt.exists() {
            args.push(crt.display().to_string());
        }
    }
    let out = t.openssl(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(out.code, Some(0), "{}", out.describe());
    assert_eq!(
        out.stdout_str().matches(": OK").count(),
        40,
        "{}",
        out.describe()
    );
}

/// Each refusal: one `error:` line naming the cause, exit 1, nothing
/// written, the PIN never shown.
#[test]
fn token_errors_are_clear_and_write_nothing() {
    let t = TestDir::new();
    let Some(tok) = token(&t) else { return };
    tok.devcert(&[
        "ca",
        "--subject",
        "/CN=Root A",
        "--key-out",
        &tok.uri("a"),
        "-o",
        "A.crt",
    ])
    .ok();
    tok.devcert(&[
        "ca",
        "--subject",
        "/CN=Root B",
        "--key-out",
        &tok.uri("b"),
        "-o",
        "B.crt",
    ])
    .ok();
    t.ec_csr("device");
    // A public key with no private half.
    t.ec_key("loose.key");
    t.openssl_ok(&[
        "pkey",
        "-in",
        "loose.key",
        "-pubout",
        "-outform",
        "DER",
        "-out",
        "loose.der",
    ]);
    let w = tok.p11tool(&[
        "--write-object",
        "loose.der",
        "--type",
        "pubkey",
        "--label",
        "pubonly",
    ]);
    assert_eq!(w.code, Some(0), "{}", w.describe());

    let wrong_pin = "pkcs11:token=devcert-test;object=a?pin-value=999111";
    let sign = |key: &str, extra: &[&str]| {
        let mut args = vec![
            "sign",
            "--csr",
            "device.csr",
            "--ca",
            "A.crt",
            "--ca-key",
            key,
            "-o",
            "out.crt",
        ];
        args.extend_from_slice(extra);
        tok.devcert(&args)
    };
    let cases: Vec<(Out, &[&str])> = vec![
        (
            sign(
                &tok.uri("a"),
                &["--pkcs11-module", "/nonexistent/libp11.so"],
            ),
            &["PKCS#11 module", "/nonexistent/libp11.so", "no such file"],
        ),
        (
            sign(&tok.uri("a"), &["--pkcs11-module", &t.p("A.crt")]),
            &["cannot load PKCS#11 module"],
        ),
        (sign(wrong_pin, &[]), &["wrong PIN", "devcert-test"]),
        (
            tok.devcert_cmd()
                .env("DEVCERT_PKCS11_PIN", "999111")
                .args([
                    "sign",
                    "--csr",
                    "device.csr",
                    "--ca",
                    "A.crt",
                    "--ca-key",
                    "pkcs11:token=devcert-test;object=a",
                    "-o",
                    "out.crt",
                ])
                .run(),
            &["wrong PIN"],
        ),
        (
            sign("pkcs11:token=devcert-test;object=a", &[]),
            &["needs a PIN"],
        ),
        (
            sign(
                &tok.uri("a").replace("token=devcert-test", "token=nope"),
                &[],
            ),
            &["no token matches", "token=nope"],
        ),
        (
            sign(&tok.uri("nope"), &[]),
            &["no such private key", "object=nope"],
        ),
        (
            sign(&tok.uri("pubonly"), &[]),
            &["only a public key", "object=pubonly"],
        ),
        (
            sign(&tok.uri("b"), &[]),
            &["does not match the CA certificate", "object=b"],
        ),
        // PIN files are capped like passphrase files (issue 17 item 7).
        (
            sign(
                "pkcs11:token=devcert-test;object=a?pin-source=file:/dev/zero",
                &[],
            ),
            &["cannot read PIN file", "/dev/zero", "longer than 64 KiB"],
        ),
        (
            sign("pkcs11:token=devcert-test;objekt=a", &[]),
            &["invalid PKCS#11 URI", "objekt"],
        ),
    ];
    for (out, needles) in cases {
        let out = out.fails_naming(needles);
        assert!(
            !out.stderr.contains("999111") && !out.stderr.contains(TOKEN_PIN),
            "PIN shown:\n{}",
            out.describe()
        );
        assert!(!t.exists("out.crt"), "out.crt written by {}", out.cmdline);
    }

    // `ca --key-out pkcs11:` refuses before the token gets a key: an
    // existing label, an existing -o, and --encrypt.
    let before = tok.objects();
    tok.devcert(&[
        "ca",
        "--subject",
        "/CN=Again",
        "--key-out",
        &tok.uri("a"),
        "-o",
        "again.crt",
    ])
    .fails_naming(&["already has an object", "object=a"]);
    assert!(!t.exists("again.crt"));
    tok.devcert(&[
        "ca",
        "--subject",
        "/CN=C",
        "--key-out",
        &tok.uri("c"),
        "-o",
        "A.crt",
    ])
    .fails_naming(&["A.crt"]);
    tok.devcert(&[
        "ca",
        "--subject",
        "/CN=C",
        "--key-out",
        &tok.uri("c"),
        "--encrypt",
        "-o",
        "c.crt",
    ])
    .usage_error();
    // A certificate that cannot be written takes its new key away again.
    tok.devcert(&[
        "ca",
        "--subject",
        "/CN=C",
        "--key-out",
        &tok.uri("c"),
        "-o",
        "no/such/dir/c.crt",
    ])
    .fails_naming(&["c.crt"]);
    assert_eq!(before, tok.objects(), "the token changed");
}
