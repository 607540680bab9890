//! Conventions every command follows (CLI.md "Conventions"): errors on
//! missing inputs, usage errors, stdout only for the product, no panics.
mod common;
use common::*;

/// Fixtures for running every core command.
fn setup(t: &TestDir) {
    t.ec_ca("CA");
    t.ec_csr("client");
    t.seed_configs();
}

#[test]
fn nonexistent_input_files_are_errors_naming_the_file() {
    let t = TestDir::new();
    setup(&t);
    let cases: &[(&str, &[&str])] = &[
        (
            "missing-1.key",
            &[
                "csr",
                "--key",
                "missing-1.key",
                "--subject",
                "/CN=x",
                "-o",
                "x.csr",
            ],
        ),
        (
            "missing-2.cfg",
            &[
                "csr",
                "--key",
                "client.key",
                "--config",
                "missing-2.cfg",
                "-o",
                "x.csr",
            ],
        ),
        (
            "missing-3.csr",
            &[
                "sign",
                "--csr",
                "missing-3.csr",
                "--ca",
                "CA.crt",
                "--ca-key",
                "CA.key",
                "-o",
                "x.crt",
            ],
        ),
        (
            "missing-4.crt",
            &[
                "sign",
                "--csr",
                "client.csr",
                "--ca",
                "missing-4.crt",
                "--ca-key",
                "CA.key",
                "-o",
                "x.crt",
            ],
        ),
        (
            "missing-5.key",
            &[
                "sign",
                "--csr",
                "client.csr",
                "--ca",
                "CA.crt",
                "--ca-key",
                "missing-5.key",
                "-o",
                "x.crt",
            ],
        ),
        (
            "missing-6.cfg",
            &[
                "sign",
                "--csr",
                "client.csr",
                "--ca",
                "CA.crt",
                "--ca-key",
                "CA.key",
                "--profile",
                "missing-6.cfg",
                "-o",
                "x.crt",
            ],
        ),
        ("missing-7.key", &["pkcs8", "missing-7.key", "-o", "x.key"]),
        (
            "missing-8.crt",
            &["chain", "missing-8.crt", "CA.crt", "-o", "x.crt"],
        ),
        (
            "missing-9.crt",
            &["chain", "CA.crt", "missing-9.crt", "-o", "x.crt"],
        ),
        (
            "missing-10.cfg",
            &[
                "ca",
                "--config",
                "missing-10.cfg",
                "--key-out",
                "x.key",
                "-o",
                "x.crt",
            ],
        ),
        (
            "missing-11.crt",
            &[
                "ca",
                "--subject",
                "/CN=I",
                "--ca",
                "missing-11.crt",
                "--ca-key",
                "CA.key",
                "--key-out",
                "x.key",
                "-o",
                "x.crt",
            ],
        ),
        (
            "missing-12.cfg",
            &[
                "issue",
                "--config",
                "missing-12.cfg",
                "--ca",
                "CA.crt",
                "--ca-key",
                "CA.key",
                "--out-dir",
                "xd",
            ],
        ),
        (
            "missing-13.crt",
            &[
                "issue",
                "--cn",
                "d",
                "--ca",
                "missing-13.crt",
                "--ca-key",
                "CA.key",
                "--out-dir",
                "xd",
            ],
        ),
        (
            "missing-14.key",
            &[
                "issue",
                "--cn",
                "d",
                "--ca",
                "CA.crt",
                "--ca-key",
                "missing-14.key",
                "--out-dir",
                "xd",
            ],
        ),
        (
            "missing-15.pass",
            &[
                "key",
                "--encrypt",
                "--passphrase-file",
                "missing-15.pass",
                "-o",
                "x.key",
            ],
        ),
    ];
    let before = t.listing();
    for (missing, args) in cases {
        let out = t.devcert(args).fails();
        let first = out
            .stderr
            .lines()
            .find(|l| !l.starts_with("warning:"))
            .unwrap_or("");
        assert!(
            first.starts_with("error:") && first.contains(missing),
            "first stderr line must be `error: ...` naming {missing}\n{}",
            out.describe()
        );
    }
    t.assert_unchanged(&before);
}

#[test]
fn binary_garbage_never_panics() {
    let t = TestDir::new();
    setup(&t);
    // Deterministic junk: DER-ish headers with absurd lengths, random bytes, a
    // PEM header with a bad body.
    let mut junk = vec![0x30u8, 0x84, 0x7f, 0xff, 0xff, 0xff, 0x02, 0x01];
    let mut x: u32 = 12345;
    for _ in 0..512 {
        x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
        junk.push((x >> 16) as u8);
    }
    t.write("junk.bin", &junk);
    t.write(
        "junk.pem",
        "-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n",
    );
    t.write(
        "deep.der",
        [[0x30u8, 0x80].repeat(2000), vec![0u8; 4000]].concat(),
    );
    for j in ["junk.bin", "junk.pem", "deep.der"] {
        for args in [
            vec!["pkcs8", j, "-o", "x.key"],
            vec!["csr", "--key", j, "--subject", "/CN=x", "-o", "x.csr"],
            vec!["csr", "--key", "client.key", "--config", j, "-o", "x.csr"],
            vec![
                "sign", "--csr", j, "--ca", "CA.crt", "--ca-key", "CA.key", "-o", "x.crt",
            ],
            vec![
                "sign",
                "--csr",
                "client.csr",
                "--ca",
                j,
                "--ca-key",
                "CA.key",
                "-o",
                "x.crt",
            ],
            vec![
                "sign",
                "--csr",
                "client.csr",
                "--ca",
                "CA.crt",
                "--ca-key",
                j,
                "-o",
                "x.crt",
            ],
            vec![
                "sign",
                "--csr",
                "client.csr",
                "--ca",
                "CA.crt",
                "--ca-key",
                "CA.key",
                "--profile",
                j,
                "-o",
                "x.crt",
            ],
            vec!["chain", j, "CA.crt", "-o", "x.crt"],
            vec![
                "issue",
                "--cn",
                "d",
                "--ca",
                j,
                "--ca-key",
                "CA.key",
                "--out-dir",
                "xd",
            ],
        ] {
            // The harness asserts "no panic" on every run; here also exit 1.
            t.devcert(&args).fails();
        }
    }
    for f in ["x.key", "x.csr", "x.crt", "xd"] {
        t.assert_no_file(f);
    }
}

#[test]
fn stdout_is_empty_when_the_product_goes_to_a_file() {
    // Assumption (CLI.md "Stdout carries only the product"): with -o FILE,
    // nothing is printed on stdout.
    let t = TestDir::new();
    setup(&t);
    let runs: &[&[&str]] = &[
        &["key", "-o", "k.key"],
        &[
            "csr",
            "--key",
            "client.key",
            "--subject",
            "/CN=x",
            "-o",
            "x.csr",
        ],
        &[
            "sign",
            "--csr",
            "client.csr",
            "--ca",
            "CA.crt",
            "--ca-key",
            "CA.key",
            "-o",
            "x.crt",
        ],
        &["pkcs8", "client.key", "-o", "p8.key"],
        &["chain", "x.crt", "CA.crt", "-o", "chain.crt"],
        &[
            "ca",
            "--subject",
            "/CN=R",
            "--key-out",
            "r.key",
            "-o",
            "r.crt",
        ],
    ];
    for args in runs {
        let out = t.devcert(args).ok();
        assert!(
            out.stdout.is_empty(),
            "expected empty stdout with -o FILE\n{}",
            out.describe()
        );
    }
}

#[test]
fn help_lists_the_core_commands() {
    let t = TestDir::new();
    let out = t.devcert(&["--help"]).ok();
    let text = out.stdout_str();
    for cmd in ["key", "csr", "sign", "pkcs8", "chain", "ca", "issue"] {
        assert!(
            text.lines().any(|l| l.trim_start().starts_with(cmd)),
            "`devcert --help` does not list `{cmd}`\n{}",
            out.describe()
        );
    }
    for cmd in ["key", "csr", "sign", "pkcs8", "chain", "ca", "issue"] {
        t.devcert(&[cmd, "--help"]).ok();
    }
}

#[test]
fn unknown_subcommand_and_missing_required_args_are_usage_errors() {
    let t = TestDir::new();
    t.devcert(&["frobnicate"]).usage_error();
    t.devcert(&["sign", "--csr", "client.csr"]).usage_error();
    t.devcert(&["chain"]).usage_error();
    t.devcert(&["issue", "--cn", "x"]).usage_error();
}

#[test]
fn no_partial_output_after_a_failure() {
    // A failing sign/csr/pkcs8 leaves neither the output nor a temp file.
    let t = TestDir::new();
    setup(&t);
    t.tampered_csr("bad");
    let before = t.listing();
    t.devcert(&[
        "sign", "--csr", "bad.csr", "--ca", "CA.crt", "--ca-key", "CA.key", "-o", "out.crt",
    ])
    .fails();
    t.assert_unchanged(&before);
    t.write("enc-pass", "x\n");
    t.openssl_ok(&[
        "pkcs8",
        "-topk8",
        "-in",
        "client.key",
        "-passout",
        "pass:right",
        "-out",
        "enc.key",
    ]);
    let before = t.listing();
    t.devcert(&[
        "pkcs8",
        "enc.key",
        "--passphrase-file",
        "enc-pass",
        "-o",
        "out.key",
    ])
    .fails();
    t.assert_unchanged(&before);
}
