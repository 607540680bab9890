//! Secrets (issue 6, item 4): encrypted PKCS#8 out of every key writer,
//! encrypted CA keys into every signer, wrong or missing passphrases,
//! legacy OpenSSL encryption, hostile KDF parameters, and no passphrase in
//! any message. Every encrypted output is opened by `openssl pkey`.
mod common;
use common::*;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use der::Encode;
use wait_timeout::ChildExt;

/// A passphrase distinctive enough to grep stderr for.
const PASS: &str = "Tr0ub4dor&3-secret-passphrase";

fn setup(t: &TestDir) {
    t.ec_ca("CA");
    t.ec_csr("client");
    t.write("pw", format!("{PASS}\n"));
    t.write("wrong", "not the passphrase\n");
    // The CA key encrypted by OpenSSL, PBKDF2 and scrypt.
    t.openssl_ok(&[
        "pkcs8",
        "-topk8",
        "-v2",
        "aes-256-cbc",
        "-in",
        "CA.key",
        "-passout",
        "file:pw",
        "-out",
        "CA.enc.key",
    ]);
    t.openssl_ok(&[
        "pkcs8",
        "-topk8",
        "-scrypt",
        "-in",
        "CA.key",
        "-passout",
        "file:pw",
        "-out",
        "CA.scrypt.key",
    ]);
    t.devcert(&["registry", "--db", "reg.db", "ca", "add", "CA.crt"])
        .ok();
}

#[track_caller]
fn assert_no_secret(out: &Out) {
    assert!(
        !out.stderr.contains(PASS) && !out.stdout_str().contains(PASS),
        "the passphrase appeared in the output\n{}",
        out.describe()
    );
}

/// The file is encrypted PKCS#8 (PBES2, AES-256-CBC) and `openssl pkey`
/// opens it with the passphrase file; returns its public key PEM.
#[track_caller]
fn assert_encrypted_pkcs8(t: &TestDir, file: &str) -> String {
    let text = t.read_str(file);
    assert_eq!(
        first_pem_label(&text).as_deref(),
        Some("ENCRYPTED PRIVATE KEY")
    );
    let parsed = t.openssl_ok(&["asn1parse", "-in", file]);
    assert!(
        parsed.contains("PBES2") && parsed.contains("aes-256-cbc"),
        "{parsed}"
    );
    t.assert_mode(file, 0o600);
    t.openssl_ok(&["pkey", "-in", file, "-passin", "file:pw", "-pubout"])
}

#[test]
fn encrypt_output_of_key_pkcs8_issue_and_ca_opens_with_openssl_pkey_passin() {
    let t = TestDir::new();
    setup(&t);
    let enc = ["--encrypt", "--passphrase-file", "pw"];
    let runs: [(&[&str], &[&str]); 4] = [
        (&["key", "-o", "k.key"], &["k.key"]),
        (&["pkcs8", "client.key", "-o", "p8.key"], &["p8.key"]),
        (
            &[
                "issue",
                "--cn",
                "d1",
                "--ca",
                "CA.crt",
                "--ca-key",
                "CA.key",
                "--out-dir",
                "d1",
            ],
            &["d1/client.key", "d1/client_pkcs8.key"],
        ),
        (
            &[
                "ca",
                "--subject",
                "/CN=Enc Root",
                "--key-out",
                "root.key",
                "-o",
                "root.crt",
            ],
            &["root.key"],
        ),
    ];
    for (args, keys) in runs {
        let out = t.devcert_cmd().args(args).args(enc).run().ok();
        assert_no_secret(&out);
        for k in keys {
            assert_encrypted_pkcs8(&t, k);
        }
    }
    // The keys belong to what was issued with them.
    let pubkey = |cert: &str| t.openssl_ok(&["x509", "-in", cert, "-noout", "-pubkey"]);
    assert_eq!(
        assert_encrypted_pkcs8(&t, "d1/client.key"),
        pubkey("d1/client.crt")
    );
    assert_eq!(assert_encrypted_pkcs8(&t, "root.key"), pubkey("root.crt"));
    assert_eq!(
        assert_encrypted_pkcs8(&t, "p8.key"),
        t.openssl_ok(&["pkey", "-in", "client.key", "-pubout"])
    );
}

#[test]
fn encrypted_ca_keys_are_accepted_by_sign_ca_issue_and_batch() {
    let t = TestDir::new();
    setup(&t);
    for (i, key) in ["CA.enc.key", "CA.scrypt.key"].iter().enumerate() {
        let runs: [Vec<String>; 4] = [
            [
                "sign",
                "--csr",
                "client.csr",
                "--ca",
                "CA.crt",
                "--ca-key",
                key,
                "-o",
            ]
            .map(String::from)
            .into_iter()
            .chain([format!("s{i}.crt")])
            .collect(),
            [
                "ca",
                "--subject",
                "/CN=Sub",
                "--ca",
                "CA.crt",
                "--ca-key",
                key,
                "--key-out",
            ]
            .map(String::from)
            .into_iter()
            .chain([format!("sub{i}.key"), "-o".into(), format!("sub{i}.crt")])
            .collect(),
            [
                "issue",
                "--cn",
                "d",
                "--ca",
                "CA.crt",
                "--ca-key",
                key,
                "--out-dir",
            ]
            .map(String::from)
            .into_iter()
            .chain([format!("d{i}")])
            .collect(),
            [
                "batch",
                "--count",
                "2",
                "--cn-prefix",
                "b",
                "--ca",
                "CA.crt",
                "--ca-key",
                key,
                "--out-dir",
            ]
            .map(String::from)
            .into_iter()
            .chain([format!("fleet{i}")])
            .collect(),
        ];
        for args in runs {
            let out = t
                .devcert_cmd()
                .args(&args)
                .args(["--passphrase-file", "pw"])
                .run()
                .ok();
            assert_no_secret(&out);
        }
        for cert in [
            format!("s{i}.crt"),
            format!("sub{i}.crt"),
            format!("d{i}/client.crt"),
            format!("fleet{i}/b0001/client.crt"),
            format!("fleet{i}/b0002/client.crt"),
        ] {
            t.assert_openssl_verify(&["-CAfile", "CA.crt"], &cert);
        }
    }
    // registry crl signs with the encrypted key too; OpenSSL checks the CRL.
    for key in ["CA.enc.key", "CA.scrypt.key"] {
        t.devcert(&[
            "registry",
            "--db",
            "reg.db",
            "crl",
            "--ca",
            "CA.crt",
            "--ca-key",
            key,
            "--passphrase-file",
            "pw",
            "-o",
            "ca.crl",
            "--force",
        ])
        .ok();
        let out = t.openssl_ok(&["crl", "-in", "ca.crl", "-CAfile", "CA.crt", "-noout"]);
        assert!(out.contains("verify OK"), "{out}");
    }
    // The passphrase may also come from the environment.
    t.devcert_cmd()
        .env("CA_PASS", PASS)
        .args([
            "sign",
            "--csr",
            "client.csr",
            "--ca",
            "CA.crt",
            "--ca-key",
            "CA.enc.key",
            "--passphrase-env",
            "CA_PASS",
            "-o",
            "env.crt",
        ])
        .run()
        .ok();
    t.assert_openssl_verify(&["-CAfile", "CA.crt"], "env.crt");
}

/// Every reader of an encrypted CA key, with args that end in the key.
fn ca_key_readers(key: &str) -> Vec<Vec<String>> {
    let v = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    vec![
        v(&[
            "sign",
            "--csr",
            "client.csr",
            "--ca",
            "CA.crt",
            "-o",
            "x.crt",
            "--ca-key",
            key,
        ]),
        v(&[
            "ca",
            "--subject",
            "/CN=S",
            "--ca",
            "CA.crt",
            "--key-out",
            "x.key",
            "-o",
            "x.crt",
            "--ca-key",
            key,
        ]),
        v(&[
            "issue",
            "--cn",
            "d",
            "--ca",
            "CA.crt",
            "--out-dir",
            "xd",
            "--ca-key",
            key,
        ]),
        v(&[
            "batch",
            "--count",
            "1",
            "--cn-prefix",
            "b",
            "--ca",
            "CA.crt",
            "--out-dir",
            "xf",
            "--ca-key",
            key,
        ]),
        v(&[
            "registry", "--db", "reg.db", "crl", "--ca", "CA.crt", "-o", "x.crl", "--ca-key", key,
        ]),
        v(&["pkcs8", key, "-o", "x.key"]),
        v(&["csr", "--subject", "/CN=x", "-o", "x.csr", "--key", key]),
    ]
}

#[test]
fn wrong_passphrase_is_a_clear_error_that_never_shows_a_passphrase() {
    let t = TestDir::new();
    setup(&t);
    let before = t.listing();
    for key in ["CA.enc.key", "CA.scrypt.key"] {
        for args in ca_key_readers(key) {
            let out = t
                .devcert_cmd()
                .args(&args)
                .args(["--passphrase-file", "wrong"])
                .run()
                .fails_naming(&[key, "wrong passphrase"]);
            assert!(
                !out.stderr.contains("not the passphrase"),
                "{}",
                out.describe()
            );
            // The right passphrase through the environment, but a wrong one in
            // another variable: its value never shows either.
            let out = t
                .devcert_cmd()
                .env("P", "not the passphrase either")
                .args(&args)
                .args(["--passphrase-env", "P"])
                .run()
                .fails_naming(&[key, "wrong passphrase"]);
            assert!(!out.stderr.contains("either"), "{}", out.describe());
        }
    }
    t.assert_unchanged(&before);
}

/// Runs devcert with stdin from /dev/null, killed after 10 s.
fn run_no_tty(t: &TestDir, args: &[String]) -> (Option<i32>, String, Duration) {
    let start = Instant::now();
    let mut child = Command::new(DEVCERT)
        .args(args)
        .current_dir(t.root())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let status = child.wait_timeout(Duration::from_secs(10)).unwrap();
    if status.is_none() {
        let _ = child.kill();
    }
    let out = child.wait_with_output().unwrap();
    let code = status.and_then(|s| s.code());
    (
        code,
        String::from_utf8_lossy(&out.stderr).into_owned(),
        start.elapsed(),
    )
}

#[test]
fn no_passphrase_and_stdin_from_dev_null_is_an_error_not_a_prompt() {
    let t = TestDir::new();
    setup(&t);
    let mut runs = ca_key_readers("CA.enc.key");
    // Writers asked to encrypt without a passphrase source.
    for a in [
        &["key", "--encrypt", "-o", "y.key"][..],
        &[
            "ca",
            "--subject",
            "/CN=R",
            "--encrypt",
            "--key-out",
            "y.key",
            "-o",
            "y.crt",
        ],
        &[
            "issue",
            "--cn",
            "d",
            "--ca",
            "CA.crt",
            "--ca-key",
            "CA.key",
            "--encrypt",
            "--out-dir",
            "yd",
        ],
    ] {
        runs.push(a.iter().map(|s| s.to_string()).collect());
    }
    for args in runs {
        let (code, stderr, took) = run_no_tty(&t, &args);
        println!("{args:?}: {:.0} ms", took.as_secs_f64() * 1000.0);
        assert_eq!(code, Some(1), "{args:?} (None = hung): {stderr}");
        assert!(
            stderr.starts_with("error:") && stderr.contains("not a terminal"),
            "{args:?}: {stderr}"
        );
        assert!(
            stderr.contains("--passphrase-file"),
            "hint missing: {stderr}"
        );
    }
    for f in [
        "x.crt", "x.key", "x.csr", "xd", "xf", "y.key", "y.crt", "yd",
    ] {
        t.assert_no_file(f);
    }
}

#[test]
fn legacy_proc_type_encrypted_keys_are_refused_with_the_openssl_command_to_convert() {
    let t = TestDir::new();
    setup(&t);
    // OpenSSL reads passin and passout from one file as two lines: use a copy.
    t.write("pw2", format!("{PASS}\n"));
    t.openssl_ok(&[
        "genrsa",
        "-traditional",
        "-aes256",
        "-passout",
        "file:pw",
        "-out",
        "genrsa.key",
        "2048",
    ]);
    t.openssl_ok(&[
        "rsa",
        "-in",
        "genrsa.key",
        "-passin",
        "file:pw",
        "-aes256",
        "-traditional",
        "-passout",
        "file:pw2",
        "-out",
        "rsa-trad.key",
    ]);
    t.openssl_ok(&[
        "ec",
        "-in",
        "CA.key",
        "-aes256",
        "-passout",
        "file:pw",
        "-out",
        "ec-trad.key",
    ]);
    for key in ["genrsa.key", "rsa-trad.key", "ec-trad.key"] {
        assert!(t.read_str(key).contains("Proc-Type: 4,ENCRYPTED"));
        for args in ca_key_readers(key) {
            let out = t
                .devcert_cmd()
                .args(&args)
                .args(["--passphrase-file", "pw"])
                .run()
                .fails_naming(&[key, "Proc-Type: 4,ENCRYPTED"]);
            let hint = out
                .stderr
                .lines()
                .find(|l| l.starts_with("hint:"))
                .unwrap_or("");
            assert!(
                hint.contains(&format!("openssl pkcs8 -topk8 -v2 aes-256-cbc -in {key}")),
                "{}",
                out.describe()
            );
        }
        // The command in the hint works, and its output is then accepted.
        t.openssl_ok(&[
            "pkcs8",
            "-topk8",
            "-v2",
            "aes-256-cbc",
            "-in",
            key,
            "-passin",
            "file:pw",
            "-passout",
            "file:pw2",
            "-out",
            "converted.p8",
        ]);
        t.devcert(&[
            "pkcs8",
            "converted.p8",
            "--passphrase-file",
            "pw",
            "-o",
            "-",
        ])
        .ok();
        std::fs::remove_file(t.path("converted.p8")).unwrap();
    }
}

/// An encrypted key whose KDF asks for absurd work, with junk ciphertext:
/// it must be refused up front, not after minutes (or a panic).
fn hostile_key(kdf: pkcs8::pkcs5::pbes2::Kdf) -> Vec<u8> {
    use pkcs8::pkcs5::pbes2;
    let params = pbes2::Parameters {
        kdf,
        encryption: pbes2::EncryptionScheme::Aes256Cbc { iv: [7; 16] },
    };
    let der = pkcs8::EncryptedPrivateKeyInfoRef {
        encryption_algorithm: params.into(),
        encrypted_data: der::asn1::OctetStringRef::new(&[0u8; 48]).unwrap(),
    }
    .to_der()
    .unwrap();
    pem::encode(&pem::Pem::new("ENCRYPTED PRIVATE KEY", der)).into_bytes()
}

#[test]
fn absurd_kdf_parameters_in_a_key_file_are_refused_quickly() {
    use pkcs8::pkcs5::pbes2::{Kdf, Pbkdf2Params, Pbkdf2Prf, Salt, ScryptParams};
    let t = TestDir::new();
    setup(&t);
    let salt = Salt::new([1u8; 16]).unwrap();
    let scrypt = |n, r, p| {
        Kdf::Scrypt(ScryptParams {
            salt,
            cost_parameter: n,
            block_size: r,
            parallelization: p,
            key_length: None,
        })
    };
    let cases = [
        (
            "pbkdf2-4g.key",
            Kdf::Pbkdf2(Pbkdf2Params {
                salt,
                iteration_count: u32::MAX,
                key_length: None,
                prf: Pbkdf2Prf::HmacWithSha256,
            }),
            "iteration count",
        ),
        ("scrypt-2-40.key", scrypt(1 << 40, 8, 1), "scrypt cost"),
        ("scrypt-p.key", scrypt(1 << 14, 8, 60000), "scrypt cost"),
        // N = 0 made the pkcs5 crate panic (log2 of 0) before this check.
        ("scrypt-n0.key", scrypt(0, 8, 1), "invalid scrypt"),
    ];
    for (file, kdf, needle) in cases {
        t.write(file, hostile_key(kdf));
        for args in ca_key_readers(file) {
            let mut full = args.clone();
            full.extend(["--passphrase-file".into(), "pw".into()]);
            let (code, stderr, took) = run_no_tty(&t, &full);
            println!(
                "{file}: {:.0} ms: {}",
                took.as_secs_f64() * 1000.0,
                stderr.trim()
            );
            assert_eq!(code, Some(1), "{full:?}: {stderr}");
            assert!(stderr.contains(needle) && stderr.contains(file), "{stderr}");
            assert!(!stderr.contains("panicked"), "{stderr}");
        }
    }
}

/// With no passphrase source and stdin not a terminal, the error names the
/// key file the passphrase is for, never `<stdin>` (issue 18).
#[test]
fn a_missing_passphrase_names_the_key_file() {
    let t = TestDir::new();
    setup(&t);
    let runs: [(&[&str], &str); 4] = [
        (
            &["csr", "--key", "CA.enc.key", "--subject", "/CN=x"],
            "CA.enc.key",
        ),
        (
            &[
                "sign",
                "--csr",
                "client.csr",
                "--ca",
                "CA.crt",
                "--ca-key",
                "CA.enc.key",
            ],
            "CA.enc.key",
        ),
        (
            &[
                "ca",
                "--subject",
                "/CN=x",
                "--key-out",
                "n.key",
                "--encrypt",
                "-o",
                "n.crt",
            ],
            "n.key",
        ),
        (&["pkcs8", "CA.key", "--encrypt", "-o", "p8.key"], "p8.key"),
    ];
    for (args, file) in runs {
        let out = t
            .devcert_cmd()
            .args(args)
            .stdin("")
            .run()
            .fails_naming(&[&format!("({file})"), "stdin is not a terminal"]);
        assert!(!out.stderr.contains("<stdin>"), "{}", out.describe());
    }
}
