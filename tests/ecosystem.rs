//! devcert in the places it is used from: shells (completions, man page,
//! `--quiet`, colours), scripts (`--json`, exit codes), keystores (PKCS#12
//! read by OpenSSL and Java) and the examples in `examples/` run as a user
//! would run them.
mod common;
use common::*;

use std::path::Path;

use serde_json::Value;

/// The seed workflow's CA and one device (`client/`) made with devcert.
fn seed_device(t: &TestDir) {
    t.seed_configs();
    t.devcert(&[
        "ca",
        "--subject",
        "/CN=Eco Root CA",
        "--key-out",
        "CA.key",
        "-o",
        "CA.crt",
    ])
    .ok();
    t.devcert(&[
        "issue",
        "--config",
        "client.csr.cfg",
        "--ca",
        "CA.crt",
        "--ca-key",
        "CA.key",
        "--out-dir",
        "client",
    ])
    .ok();
}

#[track_caller]
fn json(out: &Out) -> Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "expected one JSON document on stdout ({e})\n{}",
            out.describe()
        )
    })
}

/// What `openssl x509` says about a certificate, in `--json`'s field forms.
fn openssl_facts(t: &TestDir, cert: &str) -> (String, String, String) {
    let text = t.openssl_ok(&[
        "x509",
        "-in",
        cert,
        "-noout",
        "-serial",
        "-fingerprint",
        "-sha256",
        "-subject",
        "-nameopt",
        "RFC2253",
    ]);
    let field = |prefix: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(prefix))
            .unwrap_or_else(|| panic!("no {prefix} in {text}"))
            .to_string()
    };
    (
        field("serial="),
        field("sha256 Fingerprint="),
        field("subject="),
    )
}

#[track_caller]
fn assert_cert_json(t: &TestDir, v: &Value, cert: &str) {
    let (serial, fp, subject) = openssl_facts(t, cert);
    assert_eq!(v["serial"], serial.as_str(), "serial of {cert} in {v}");
    assert_eq!(
        v["sha256_fingerprint"],
        fp.as_str(),
        "fingerprint of {cert} in {v}"
    );
    assert_eq!(v["subject"], subject.as_str(), "subject of {cert} in {v}");
}

// ---------------------------------------------------------------------------
// Shell integration
// ---------------------------------------------------------------------------

#[test]
fn bash_completion_loads_and_completes_commands_and_options() {
    let t = TestDir::new();
    let script = format!(
        "source <('{DEVCERT}' completions bash) && complete -p devcert && \
         COMP_WORDS=(devcert p); COMP_CWORD=1; _devcert devcert p devcert; echo \"words: ${{COMPREPLY[*]}}\"; \
         COMP_WORDS=(devcert p12 --le); COMP_CWORD=2; _devcert devcert --le p12; echo \"opts: ${{COMPREPLY[*]}}\""
    );
    let out = Cmd::new(t.root(), "bash").args(["-c", &script]).run().ok();
    let text = out.stdout_str();
    assert!(text.contains("-F _devcert devcert"), "{}", out.describe());
    let words = text.lines().find(|l| l.starts_with("words:")).unwrap();
    for cmd in ["p12", "pkcs8", "pkcs12"] {
        assert!(
            words.split_whitespace().any(|w| w == cmd),
            "no {cmd} in {words}"
        );
    }
    assert!(text.contains("opts: --legacy"), "{}", out.describe());
}

#[test]
fn other_shells_get_scripts_naming_every_command() {
    let t = TestDir::new();
    for shell in ["zsh", "fish", "powershell"] {
        let out = t.devcert(&["completions", shell]).ok();
        let script = out.stdout_str();
        for cmd in ["issue", "batch", "verify", "p12", "completions"] {
            assert!(script.contains(cmd), "{shell} script lacks {cmd}");
        }
        if shell == "zsh" && which("zsh").is_some() {
            t.write("_devcert", &out.stdout);
            Cmd::new(t.root(), "zsh")
                .args(["-n", "_devcert"])
                .run()
                .ok();
        }
    }
    t.devcert(&["completions", "tcsh"]).usage_error();
}

/// The page renders with groff's man macros without a warning and holds
/// what a reader looks for.
#[track_caller]
fn assert_man_page_renders(t: &TestDir, page: &str, needles: &[&str]) {
    let roff = t.read_str(page);
    assert!(roff.contains("\n.TH "), "{page} has no .TH header");
    if which("groff").is_none() {
        eprintln!("NOTICE: groff not found; checked only the roff header of {page}");
        return;
    }
    // -P-cbou: plain text, no bold/underline by overstriking or escapes.
    let out = Cmd::new(t.root(), "groff")
        .args(["-man", "-Tutf8", "-ww", "-P-cbou", page])
        .run()
        .ok();
    assert!(out.stderr.is_empty(), "groff warned\n{}", out.describe());
    let text = out.stdout_str();
    for n in needles {
        assert!(text.contains(n), "{page} rendered without {n:?}\n{text}");
    }
}

#[test]
fn man_page_on_stdout_renders() {
    let t = TestDir::new();
    let out = t.devcert(&["man"]).ok();
    t.write("devcert.1", &out.stdout);
    assert_man_page_renders(&t, "devcert.1", &["NAME", "SYNOPSIS", "p12", "completions"]);
    if which("man").is_some() {
        let out = Cmd::new(t.root(), "man")
            .args(["-l", "devcert.1"])
            .env("MANPAGER", "cat")
            .env("MANWIDTH", "100")
            .run()
            .ok();
        assert!(out.stdout_str().contains("devcert"), "{}", out.describe());
    }
}

#[test]
fn man_dir_gets_one_page_per_command_and_is_not_clobbered() {
    let t = TestDir::new();
    t.devcert(&["man", "-o", "man1"]).ok();
    for cmd in [
        "key", "csr", "sign", "issue", "batch", "verify", "p12", "man",
    ] {
        let page = format!("man1/devcert-{cmd}.1");
        assert!(t.exists(&page), "no {page}");
        assert_man_page_renders(&t, &page, &["NAME", "SYNOPSIS"]);
    }
    assert_man_page_renders(&t, "man1/devcert-p12.1", &["--legacy", "--passphrase-file"]);
    let before = t.listing();
    t.devcert(&["man", "-o", "man1"])
        .fails_naming(&["man1/devcert-"]);
    t.assert_unchanged(&before);
    t.devcert(&["man", "-o", "man1", "--force"]).ok();
}

#[test]
fn quiet_drops_warnings_and_summaries_but_not_errors() {
    let t = TestDir::new();
    seed_device(&t);
    // The seed profile's keyCertSign on CA:FALSE is warned about...
    let sign = [
        "sign",
        "--csr",
        "client/client.csr",
        "--ca",
        "CA.crt",
        "--ca-key",
        "CA.key",
        "--profile",
        "client.crt.cfg",
    ];
    let loud = t.devcert(&[&sign[..], &["-o", "loud.crt"]].concat()).ok();
    loud.warns_about(&["keyCertSign"]);
    // ... and -q (before or after the command) silences it, product intact.
    for q in [&["-q"][..], &["--quiet"][..]] {
        let file = format!("quiet{}.crt", q[0].len());
        let out = t.devcert(&[q, &sign[..], &["-o", &file]].concat()).ok();
        assert!(out.stderr.is_empty(), "{}", out.describe());
        t.assert_openssl_verify(&["-CAfile", "CA.crt"], &file);
    }
    let out = t
        .devcert(&[
            "batch",
            "--ca",
            "CA.crt",
            "--ca-key",
            "CA.key",
            "--count",
            "2",
            "--cn-prefix",
            "q-",
            "--out-dir",
            "fleet",
            "--quiet",
        ])
        .ok();
    assert!(out.stderr.is_empty(), "{}", out.describe());
    let loud = t.devcert(&[
        "batch",
        "--ca",
        "CA.crt",
        "--ca-key",
        "CA.key",
        "--count",
        "2",
        "--cn-prefix",
        "q-",
        "--out-dir",
        "fleet",
    ]);
    loud.ok().stderr_has("batch: 2 devices");
    t.devcert(&["registry", "--db", "r.db", "ca", "add", "CA.crt"])
        .ok();
    let crl = [
        "registry", "--db", "r.db", "crl", "--ca", "CA.crt", "--ca-key", "CA.key",
    ];
    t.devcert(&[&crl[..], &["-o", "loud.crl"]].concat())
        .ok()
        .stderr_has("CRL number 1");
    let out = t
        .devcert(&[&["-q"], &crl[..], &["-o", "quiet.crl"]].concat())
        .ok();
    assert!(out.stderr.is_empty(), "{}", out.describe());
    t.openssl_ok(&["crl", "-in", "quiet.crl", "-CAfile", "CA.crt", "-noout"]);
    // Errors are never silenced.
    t.devcert(&[
        "-q",
        "sign",
        "--csr",
        "missing.csr",
        "--ca",
        "CA.crt",
        "--ca-key",
        "CA.key",
    ])
    .fails_naming(&["missing.csr"]);
}

#[test]
fn colour_only_when_asked_for_and_never_with_no_color() {
    let t = TestDir::new();
    let has_escape = |o: &Out| o.text().contains('\u{1b}');
    // Not a terminal: plain text.
    let plain = t.devcert(&["issue", "--help"]).ok();
    assert!(!has_escape(&plain), "{}", plain.describe());
    let usage = t.devcert(&["issue", "--bogus"]).usage_error();
    assert!(!has_escape(&usage), "{}", usage.describe());
    // CLICOLOR_FORCE stands in for a terminal: colour appears...
    let forced = t
        .devcert_cmd()
        .args(["issue", "--help"])
        .env("CLICOLOR_FORCE", "1")
        .run()
        .ok();
    assert!(
        has_escape(&forced),
        "expected colour\n{}",
        forced.describe()
    );
    // ... unless NO_COLOR is set (https://no-color.org), help and errors alike.
    for args in [&["issue", "--help"][..], &["issue", "--bogus"][..]] {
        let out = t
            .devcert_cmd()
            .args(args)
            .env("CLICOLOR_FORCE", "1")
            .env("NO_COLOR", "1")
            .run();
        assert!(
            !has_escape(&out),
            "colour despite NO_COLOR\n{}",
            out.describe()
        );
    }
}

/// Runs `command` (a shell line) with a real terminal as stdin/stdout/stderr,
/// through util-linux `script`; None when `script` is absent.
fn on_terminal(t: &TestDir, command: &str) -> Option<Out> {
    if which("script").is_none() {
        eprintln!("NOTICE: script (util-linux) not found; skipping the terminal check");
        return None;
    }
    Some(
        Cmd::new(t.root(), "script")
            .args(["-qec", command, "/dev/null"])
            .run(),
    )
}

#[test]
fn on_a_real_terminal_colour_follows_no_color() {
    let t = TestDir::new();
    let Some(coloured) = on_terminal(&t, &format!("'{DEVCERT}' issue --bogus")) else {
        return;
    };
    assert_eq!(coloured.code, Some(2), "{}", coloured.describe());
    assert!(
        coloured.text().contains('\u{1b}'),
        "{}",
        coloured.describe()
    );
    let plain = on_terminal(&t, &format!("NO_COLOR=1 '{DEVCERT}' issue --bogus")).unwrap();
    assert_eq!(plain.code, Some(2), "{}", plain.describe());
    assert!(!plain.text().contains('\u{1b}'), "{}", plain.describe());
}

#[test]
fn every_command_help_shows_a_seed_workflow_example() {
    let t = TestDir::new();
    let top = t.devcert(&["--help"]).ok().stdout_str();
    assert!(top.contains("devcert issue --config client.csr.cfg --profile client.crt.cfg"));
    assert!(top.contains("Exit codes"));
    for cmd in [
        "key",
        "csr",
        "sign",
        "pkcs8",
        "chain",
        "ca",
        "issue",
        "batch",
        "verify",
        "p12",
        "completions",
        "man",
        "inspect",
        "registry",
        "registry ca",
        "registry ca add",
        "registry ca list",
        "registry device",
        "registry device add",
        "registry device list",
        "registry device show",
        "registry device activate",
        "registry device deactivate",
        "registry device delete",
        "registry auth",
        "registry crl",
    ] {
        let mut args: Vec<&str> = cmd.split(' ').collect();
        args.push("--help");
        let help = t.devcert(&args).ok().stdout_str();
        assert!(
            help.contains("Examples:"),
            "{cmd} --help has no examples\n{help}"
        );
        assert!(
            help.contains(&format!("devcert {cmd}")),
            "{cmd} --help has no `devcert {cmd}` example\n{help}"
        );
    }
    // The seed's file names, as the guide uses them.
    let sign = t.devcert(&["sign", "--help"]).ok().stdout_str();
    assert!(sign.contains(
        "--csr client.csr --ca CA.crt --ca-key CA.key --profile client.crt.cfg --days 500"
    ));
}

// ---------------------------------------------------------------------------
// --json
// ---------------------------------------------------------------------------

#[test]
fn json_reports_agree_with_openssl() {
    let t = TestDir::new();
    t.seed_configs();
    let ca = json(
        &t.devcert(&[
            "ca",
            "--subject",
            "/CN=Json Root",
            "--key-out",
            "CA.key",
            "-o",
            "CA.crt",
            "--json",
        ])
        .ok(),
    );
    assert_eq!(ca["files"]["key"], "CA.key");
    assert_eq!(ca["files"]["certificate"], "CA.crt");
    assert_cert_json(&t, &ca["certificate"], "CA.crt");

    let issue = json(
        &t.devcert(&[
            "issue",
            "--config",
            "client.csr.cfg",
            "--ca",
            "CA.crt",
            "--ca-key",
            "CA.key",
            "--out-dir",
            "dev1",
            "--json",
        ])
        .ok(),
    );
    for (role, file) in [
        ("key", "client.key"),
        ("csr", "client.csr"),
        ("certificate", "client.crt"),
        ("pkcs8", "client_pkcs8.key"),
        ("chain", "client_chain.crt"),
    ] {
        let path = issue["files"][role].as_str().unwrap();
        assert_eq!(path, format!("dev1/{file}"));
        assert!(t.exists(path), "{path} reported but missing");
    }
    assert_cert_json(&t, &issue["certificate"], "dev1/client.crt");
    assert_eq!(
        issue["certificate"]["issuer"],
        openssl_facts(&t, "CA.crt").2.as_str()
    );

    let key = json(
        &t.devcert(&["key", "--algo", "rsa", "-o", "k.key", "--json"])
            .ok(),
    );
    assert_eq!(key["files"]["key"], "k.key");
    assert_eq!(key["algorithm"], "RSA 2048");
    assert!(t.pkey_text("k.key", &[]).contains("2048 bit"));

    let csr = json(
        &t.devcert(&[
            "csr",
            "--key",
            "k.key",
            "--config",
            "client.csr.cfg",
            "-o",
            "k.csr",
            "--json",
        ])
        .ok(),
    );
    let subj = t.openssl_ok(&[
        "req", "-in", "k.csr", "-noout", "-subject", "-nameopt", "RFC2253",
    ]);
    assert_eq!(
        csr["subject"].as_str().unwrap(),
        subj.trim().strip_prefix("subject=").unwrap()
    );

    let sign = json(
        &t.devcert(&[
            "sign", "--csr", "k.csr", "--ca", "CA.crt", "--ca-key", "CA.key", "-o", "k.crt",
            "--json",
        ])
        .ok(),
    );
    assert_cert_json(&t, &sign["certificate"], "k.crt");

    let chain = json(
        &t.devcert(&["chain", "k.crt", "CA.crt", "-o", "k_chain.crt", "--json"])
            .ok(),
    );
    assert_cert_json(&t, &chain["certificates"][0], "k.crt");
    assert_cert_json(&t, &chain["certificates"][1], "CA.crt");

    let p8 = json(
        &t.devcert(&["pkcs8", "k.key", "--der", "-o", "k.der", "--json"])
            .ok(),
    );
    assert_eq!(p8["files"]["key"], "k.der");
    assert_eq!(p8["encrypted"], false);
    t.openssl_ok(&["pkey", "-inform", "DER", "-in", "k.der", "-noout"]);

    let batch = json(
        &t.devcert(&[
            "batch",
            "--ca",
            "CA.crt",
            "--ca-key",
            "CA.key",
            "--count",
            "3",
            "--cn-prefix",
            "j-",
            "--out-dir",
            "fleet",
            "--json",
        ])
        .ok(),
    );
    assert_eq!(batch["devices"], 3);
    assert_eq!(batch["issued"], 3);
    assert_eq!(batch["manifest"], "fleet/manifest.json");
    let again = json(
        &t.devcert(&[
            "batch",
            "--ca",
            "CA.crt",
            "--ca-key",
            "CA.key",
            "--count",
            "3",
            "--cn-prefix",
            "j-",
            "--out-dir",
            "fleet",
            "--json",
        ])
        .ok(),
    );
    assert_eq!(again["skipped"], 3);
}

#[test]
fn json_with_the_product_on_stdout_is_a_usage_error() {
    let t = TestDir::new();
    t.devcert(&["key", "--json"])
        .usage_error()
        .stderr_has("-o FILE");
    t.devcert(&["key", "-o", "-", "--json"]).usage_error();
    t.devcert(&["ca", "--subject", "/CN=x", "--key-out", "x.key", "--json"])
        .usage_error();
    t.assert_no_file("x.key");
}

#[test]
fn verify_json_gives_the_verdict_with_the_same_exit_codes() {
    let t = TestDir::new();
    seed_device(&t);
    let ok = t
        .devcert(&[
            "verify",
            "--ca",
            "CA.crt",
            "client/client_chain.crt",
            "--json",
        ])
        .ok();
    let v = json(&ok);
    assert_eq!(v["ok"], true);
    assert!(v["reason"].is_null());
    t.ec_ca("Other");
    let no = t
        .devcert(&["verify", "--ca", "Other.crt", "client/client.crt", "--json"])
        .code(3);
    let v = json(&no);
    assert_eq!(v["ok"], false);
    assert!(v["reason"].as_str().unwrap().len() > 5, "{v}");
    // Unreadable input stays an error, not a verdict.
    t.devcert(&["verify", "--ca", "CA.crt", "missing.crt", "--json"])
        .fails_naming(&["missing.crt"]);
}

// ---------------------------------------------------------------------------
// PKCS#12
// ---------------------------------------------------------------------------

/// OpenSSL takes a non-ASCII passphrase (UTF-8 → BMPString); Java's
/// PKCS12 KeyStore refuses any non-ASCII password, so Java gets ASCII.
const P12_PASS: &str = "device pass ü";
const JAVA_PASS: &str = "device pass";

fn p12(t: &TestDir, out: &str, extra: &[&str]) -> Out {
    if !t.exists("p12.pass") {
        t.write("p12.pass", format!("{P12_PASS}\n"));
    }
    t.devcert(
        &[
            &[
                "p12",
                "--key",
                "client/client_pkcs8.key",
                "--cert",
                "client/client_chain.crt",
                "--passphrase-file",
                "p12.pass",
                "-o",
                out,
            ][..],
            extra,
        ]
        .concat(),
    )
}

/// `openssl pkcs12 -info` of the file (key included, unencrypted).
fn openssl_p12(t: &TestDir, file: &str, extra: &[&str]) -> String {
    t.openssl_ok(
        &[
            &[
                "pkcs12",
                "-info",
                "-in",
                file,
                "-passin",
                "file:p12.pass",
                "-nodes",
            ][..],
            extra,
        ]
        .concat(),
    )
}

/// The key and certificates OpenSSL pulls out of the bundle are the ones
/// that went in.
#[track_caller]
fn assert_p12_holds_device(t: &TestDir, text: &str) {
    t.write("p12-out.pem", text);
    let pub_in = t.openssl_ok(&["pkey", "-in", "client/client_pkcs8.key", "-pubout"]);
    let pub_out = t.openssl_ok(&["pkey", "-in", "p12-out.pem", "-pubout"]);
    assert_eq!(
        pub_in, pub_out,
        "the key in the bundle is not the device key"
    );
    let certs_in = t.openssl_ok(&[
        "crl2pkcs7",
        "-nocrl",
        "-certfile",
        "client/client_chain.crt",
    ]);
    let certs_out = t.openssl_ok(&["crl2pkcs7", "-nocrl", "-certfile", "p12-out.pem"]);
    assert_eq!(
        certs_in, certs_out,
        "the bundle's certificates differ from the chain"
    );
    assert_eq!(pem_blocks(text, "CERTIFICATE"), 2);
}

#[test]
fn p12_default_is_aes_with_sha256_mac_and_openssl_reads_it() {
    let t = TestDir::new();
    seed_device(&t);
    let out = p12(&t, "client.p12", &["--json"]).ok();
    let out = out.warns_about(&["not ASCII"]);
    let report = json(&out);
    t.assert_mode("client.p12", 0o600);
    assert_eq!(report["friendly_name"], "client-test");
    assert_eq!(report["certificates"], 2);
    assert_cert_json(&t, &report["certificate"], "client/client.crt");
    let info = openssl_p12(&t, "client.p12", &[]);
    assert!(info.contains("MAC: sha256"), "{info}");
    assert!(info.contains("PBES2, PBKDF2, AES-256-CBC"), "{info}");
    assert!(
        !info.contains("TripleDES") && !info.contains("RC2"),
        "{info}"
    );
    assert!(info.contains("friendlyName: client-test"), "{info}");
    assert_p12_holds_device(&t, &info);
    // -nokeys: the certificates alone, as `-info -nokeys` users check them.
    let certs = openssl_p12(&t, "client.p12", &["-nokeys"]);
    assert!(!certs.contains("PRIVATE KEY"));
    assert_eq!(pem_blocks(&certs, "CERTIFICATE"), 2);
}

#[test]
fn p12_legacy_is_3des_with_sha1_mac_and_openssl_3_reads_it_without_legacy_provider() {
    let t = TestDir::new();
    seed_device(&t);
    p12(&t, "legacy.p12", &["--legacy", "--name", "Device One"]).ok();
    let info = openssl_p12(&t, "legacy.p12", &[]);
    assert!(info.contains("MAC: sha1"), "{info}");
    assert!(info.contains("pbeWithSHA1And3-KeyTripleDES-CBC"), "{info}");
    assert!(!info.contains("PBES2"), "{info}");
    assert!(info.contains("friendlyName: Device One"), "{info}");
    assert_p12_holds_device(&t, &info);
}

#[test]
fn p12_java_keystore_loads_modern_and_legacy_ec_and_rsa() {
    let t = TestDir::new();
    seed_device(&t);
    t.write("p12.pass", format!("{JAVA_PASS}\n"));
    t.devcert(&[
        "issue",
        "--algo",
        "rsa",
        "--cn",
        "rsa-dev",
        "--ca",
        "CA.crt",
        "--ca-key",
        "CA.key",
        "--out-dir",
        "rsa",
    ])
    .ok();
    p12(&t, "ec.p12", &[]).ok().no_warning();
    p12(&t, "ec-legacy.p12", &["--legacy"]).ok();
    t.devcert(&[
        "p12",
        "--key",
        "rsa/client.key",
        "--cert",
        "rsa/client.crt",
        "--chain",
        "CA.crt",
        "--passphrase-file",
        "p12.pass",
        "--legacy",
        "-o",
        "rsa-legacy.p12",
    ])
    .ok();
    let (ec_serial, _, ec_subject) = openssl_facts(&t, "client/client.crt");
    let (rsa_serial, _, _) = openssl_facts(&t, "rsa/client.crt");
    for (file, alias, alg, serial) in [
        ("ec.p12", "client-test", "EC", &ec_serial),
        ("ec-legacy.p12", "client-test", "EC", &ec_serial),
        ("rsa-legacy.p12", "rsa-dev", "RSA", &rsa_serial),
    ] {
        let Some(out) = t.java("CheckP12", &[file, "p12.pass"]) else {
            return;
        };
        let line = out.stdout_str();
        assert!(
            line.starts_with("OK "),
            "Java refused {file}\n{}",
            out.describe()
        );
        assert!(line.contains(&format!("alias={alias} ")), "{line}");
        assert!(line.contains(&format!("alg={alg} ")), "{line}");
        assert!(line.contains("certs=2 "), "{line}");
        // BigInteger drops leading zeros; so does openssl -serial (it prints
        // the DER magnitude), modulo one leading zero nibble.
        let got = line
            .split("serial=")
            .nth(1)
            .unwrap()
            .split(' ')
            .next()
            .unwrap();
        assert_eq!(
            got.trim_start_matches('0'),
            serial.trim_start_matches('0'),
            "{line}"
        );
        if file.starts_with("ec") {
            assert!(line.contains("CN=client-test"), "{line} vs {ec_subject}");
        }
    }
}

#[test]
fn p12_refuses_a_foreign_key_overwrite_and_a_missing_passphrase() {
    let t = TestDir::new();
    seed_device(&t);
    t.ec_key("other.key");
    t.write("p12.pass", P12_PASS);
    t.devcert(&[
        "p12",
        "--key",
        "other.key",
        "--cert",
        "client/client.crt",
        "--passphrase-file",
        "p12.pass",
        "-o",
        "bad.p12",
    ])
    .fails_naming(&["client/client.crt"])
    .stderr_has("does not belong");
    t.assert_no_file("bad.p12");
    // No passphrase source and no terminal: an error, never a prompt.
    t.devcert(&[
        "p12",
        "--key",
        "client/client.key",
        "--cert",
        "client/client_chain.crt",
        "-o",
        "np.p12",
    ])
    .fails()
    .stderr_has("passphrase");
    t.assert_no_file("np.p12");
    // The passphrase may come from the environment; an existing file stays.
    let env = |out: &str, force: bool| {
        let mut c = t.devcert_cmd().args([
            "pkcs12",
            "--key",
            "client/client.key",
            "--cert",
            "client/client_chain.crt",
            "--passphrase-env",
            "P12_PASS",
            "-o",
            out,
        ]);
        if force {
            c = c.arg("--force");
        }
        c.env("P12_PASS", P12_PASS).run()
    };
    env("env.p12", false).ok();
    openssl_p12(&t, "env.p12", &[]);
    let before = t.listing();
    env("env.p12", false).fails_naming(&["env.p12"]);
    t.assert_unchanged(&before);
    env("env.p12", true).ok();
    t.assert_mode("env.p12", 0o600);
}

#[test]
fn p12_is_never_written_to_a_terminal() {
    let t = TestDir::new();
    seed_device(&t);
    t.write("p12.pass", JAVA_PASS);
    let cmd = format!(
        "'{DEVCERT}' p12 --key client/client.key --cert client/client_chain.crt --passphrase-file p12.pass"
    );
    let Some(out) = on_terminal(&t, &cmd) else {
        return;
    };
    assert_eq!(out.code, Some(2), "{}", out.describe());
    assert!(out.text().contains("-o FILE"), "{}", out.describe());
    // Redirected, stdout is fine: OpenSSL reads what came through the pipe.
    let piped = t
        .devcert(&[
            "p12",
            "--key",
            "client/client.key",
            "--cert",
            "client/client_chain.crt",
            "--passphrase-file",
            "p12.pass",
        ])
        .ok();
    t.write("piped.p12", &piped.stdout);
    t.openssl_ok(&[
        "pkcs12",
        "-info",
        "-nokeys",
        "-in",
        "piped.p12",
        "-passin",
        "file:p12.pass",
    ]);
}

#[test]
fn p12_from_an_encrypted_key_can_take_its_own_passphrase() {
    let t = TestDir::new();
    seed_device(&t);
    t.write("key.pass", "key secret\n");
    t.devcert(&[
        "pkcs8",
        "client/client.key",
        "--encrypt",
        "--passphrase-file",
        "key.pass",
        "-o",
        "enc.key",
    ])
    .ok();
    t.write("p12.pass", P12_PASS);
    t.devcert(&[
        "p12",
        "--key",
        "enc.key",
        "--passphrase-file",
        "key.pass",
        "--out-passphrase-file",
        "p12.pass",
        "--cert",
        "client/client.crt",
        "--chain",
        "CA.crt",
        "-o",
        "enc.p12",
    ])
    .ok();
    let info = openssl_p12(&t, "enc.p12", &[]);
    assert_p12_holds_device(&t, &info);
}

// ---------------------------------------------------------------------------
// The examples, run as a user runs them
// ---------------------------------------------------------------------------

const EXAMPLES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/examples");

/// A script or tool from `examples/`, run in the test folder with
/// `DEVCERT` pointing at the binary under test.
fn example(t: &TestDir, program: &str, args: &[&str]) -> Out {
    Cmd::new(t.root(), program)
        .args(args)
        .env("DEVCERT", DEVCERT)
        .run()
}

#[track_caller]
fn need(tool: &str) -> bool {
    if which(tool).is_some() {
        return true;
    }
    eprintln!("NOTICE: {tool} not found (bash .ci/run installs it); skipping");
    false
}

#[test]
fn provision_script_issues_verifies_and_reports_with_exit_codes() {
    let t = TestDir::new();
    if !need("jq") {
        return;
    }
    let script = format!("{EXAMPLES}/provision.sh");
    t.write(
        "names.txt",
        "# line 3 of the rollout\nhall-a-01\nhall-a-02\n\nhall-b-01\n",
    );
    let out = example(&t, "bash", &[&script, "names.txt", "out"]).ok();
    let report = json(&out);
    assert_eq!(report["ok"], true, "{report}");
    assert_eq!(report["devices"], 3);
    assert_eq!(report["issued"], 3);
    for cn in ["hall-a-01", "hall-a-02", "hall-b-01"] {
        let dir = format!("out/fleet/{cn}");
        t.assert_openssl_verify(&["-CAfile", "out/ca/CA.crt"], &format!("{dir}/client.crt"));
        assert!(
            t.cert(&format!("{dir}/client.crt"))
                .get("subject")
                .contains(cn)
        );
    }
    // Re-run: the CA and complete devices are kept (the manifest is
    // rewritten, its rows now say "skipped").
    let keys_and_certs = |t: &TestDir| {
        let mut files = t.listing();
        files.retain(|name, _| !name.ends_with("manifest.json"));
        files
    };
    let before = keys_and_certs(&t);
    let again = json(&example(&t, "bash", &[&script, "names.txt", "out"]).ok());
    assert_eq!(again["skipped"], 3, "{again}");
    assert!(
        before == keys_and_certs(&t),
        "a re-run changed device files"
    );
    // A verification NO is exit 3 with the devices named on stdout.
    let late = Cmd::new(t.root(), "bash")
        .args([&script, "names.txt", "out"])
        .env("DEVCERT", DEVCERT)
        .env("VALID_AT", "2100-01-01T00:00:00Z")
        .run()
        .code(3);
    let report = json(&late);
    assert_eq!(report["ok"], false);
    assert_eq!(report["rejected"].as_array().unwrap().len(), 3, "{report}");
    assert!(
        report["rejected"][0]["reason"]
            .as_str()
            .unwrap()
            .contains("expired")
    );
    // With REGISTRY, the fleet lands in the registry, Active.
    Cmd::new(t.root(), "bash")
        .args([&script, "names.txt", "out2"])
        .env("DEVCERT", DEVCERT)
        .env("REGISTRY", "fleet.db")
        .run()
        .ok();
    let rows = json(
        &t.devcert(&["registry", "--db", "fleet.db", "device", "list", "--json"])
            .ok(),
    );
    let rows = rows.as_array().unwrap();
    assert_eq!(rows.len(), 3, "{rows:?}");
    assert!(rows.iter().all(|r| r["status"] == "active"), "{rows:?}");
    // An error (unreadable names file) is exit 1, with no report.
    let broken = example(&t, "bash", &[&script, "missing.txt", "out"]).code(1);
    assert!(broken.stdout.is_empty(), "{}", broken.describe());
    assert!(
        broken.stderr.contains("missing.txt"),
        "{}",
        broken.describe()
    );
}

#[test]
fn ca_registration_recipe_makes_a_verification_certificate_for_the_code() {
    let t = TestDir::new();
    t.ec_ca("CA");
    let code = "3f9c07d5e6a84b1c9d2e7f60a1b2c3e1";
    let script = format!("{EXAMPLES}/ca-registration/register-ca.sh");
    let out = example(&t, "bash", &[&script, code, ".", "verification"]).ok();
    assert!(out.stdout_str().contains("verification/verification.crt"));
    let subject = t.openssl_ok(&[
        "x509",
        "-in",
        "verification/verification.crt",
        "-noout",
        "-subject",
        "-nameopt",
        "RFC2253",
    ]);
    assert_eq!(subject.trim(), format!("subject=CN={code}"));
    t.assert_openssl_verify(&["-CAfile", "CA.crt"], "verification/verification.crt");
    t.assert_key_matches(
        "verification/verification.key",
        &t.cert("verification/verification.crt").get("spki_der"),
    );
    example(&t, "bash", &[&script]).code(2);
}

/// `openssl x509 -serial` of a file: the serial the registry uses.
fn serial_of(t: &TestDir, cert: &str) -> String {
    openssl_facts(t, cert).0
}

#[test]
fn makefile_provisions_devices_with_make_j4_and_deactivates_through_the_crl() {
    let t = TestDir::new();
    if !need("make") || !need("jq") {
        return;
    }
    let devices = ["gw-01", "gw-02", "gw-03", "gw-04", "gw-05", "gw-06"];
    let make = |extra: &[&str]| {
        let mut args = vec![
            "-f".to_string(),
            format!("{EXAMPLES}/Makefile"),
            format!("DEVCERT={DEVCERT}"),
            "OUT=prov".into(),
            format!("DEVICES={}", devices.join(" ")),
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
        Cmd::new(t.root(), "make").args(args).run()
    };
    make(&["-j4"]).ok();
    let ca = "prov/ca/CA.crt";
    for d in devices {
        let dir = format!("prov/devices/{d}");
        t.assert_openssl_verify(&["-CAfile", ca], &format!("{dir}/client.crt"));
        t.assert_openssl_verify(
            &[
                "-CAfile",
                ca,
                "-untrusted",
                &format!("{dir}/client_chain.crt"),
            ],
            &format!("{dir}/client_chain.crt"),
        );
        t.assert_key_matches(
            &format!("{dir}/client_pkcs8.key"),
            &t.cert(&format!("{dir}/client.crt")).get("spki_der"),
        );
        t.assert_mode(&format!("{dir}/client.key"), 0o600);
    }
    // Every device is registered Active, with the serial of its file.
    let list = t
        .devcert(&[
            "registry",
            "--db",
            "prov/devcert.db",
            "device",
            "list",
            "--json",
        ])
        .ok();
    let rows = json(&list);
    let rows = rows.as_array().unwrap();
    assert_eq!(rows.len(), devices.len(), "{rows:?}");
    for d in devices {
        let serial = serial_of(&t, &format!("prov/devices/{d}/client.crt"));
        assert!(
            rows.iter()
                .any(|r| r["serial"] == serial.as_str() && r["status"] == "active"),
            "{d} ({serial}) not registered active: {rows:?}"
        );
    }
    // The CRL is valid and empty; a second run changes no device file.
    t.openssl_ok(&["crl", "-in", "prov/ca.crl", "-CAfile", ca, "-noout"]);
    let devices_now = |t: &TestDir| {
        let mut files = t.listing();
        files.retain(|name, _| name.starts_with("prov/devices/"));
        files
    };
    let before = devices_now(&t);
    make(&["-j4"]).ok();
    assert!(before == devices_now(&t), "a second make re-issued devices");
    // Deactivate one: the new CRL holds it, and OpenSSL refuses it with
    // the CRL while its neighbours still pass.
    make(&["deactivate", "DEVICE=gw-02"]).ok();
    let held = serial_of(&t, "prov/devices/gw-02/client.crt");
    let crl = t.openssl_ok(&["crl", "-in", "prov/ca.crl", "-noout", "-text"]);
    assert!(crl.contains(&held), "CRL lacks {held}\n{crl}");
    assert!(crl.contains("Certificate Hold"), "{crl}");
    let check = |d: &str| {
        t.openssl(&[
            "verify",
            "-crl_check",
            "-CRLfile",
            "prov/ca.crl",
            "-CAfile",
            ca,
            &format!("prov/devices/{d}/client.crt"),
        ])
    };
    let refused = check("gw-02");
    assert!(
        refused.code != Some(0) && refused.text().contains("revoked"),
        "{}",
        refused.describe()
    );
    check("gw-01").ok();
    // Activate again: off the CRL.
    make(&["activate", "DEVICE=gw-02"]).ok();
    check("gw-02").ok();
    make(&["deactivate"]).code(2);
    make(&["deactivate", "DEVICE=gw-99"])
        .code(2)
        .stderr_has("no device gw-99");
}

/// A Mosquitto broker started for one test, stopped (by its own PID) when
/// dropped.
struct Broker {
    child: std::process::Child,
    port: u16,
}

impl Broker {
    fn start(t: &TestDir, conf: &str) -> Broker {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut text = t.read_str(conf).replace(
            "listener 8883 127.0.0.1",
            &format!("listener {port} 127.0.0.1"),
        );
        // As root Mosquitto would switch to the `mosquitto` user and then
        // could not read the 0600 key.
        if Cmd::new(t.root(), "id").arg("-u").run().stdout_str().trim() == "0" {
            text.push_str("user root\n");
        }
        t.write("broker.conf", text);
        let log = std::fs::File::create(t.path("broker.log")).unwrap();
        let child = std::process::Command::new("mosquitto")
            .args(["-c", "broker.conf"])
            .current_dir(t.root())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start mosquitto");
        let mut broker = Broker { child, port };
        // Readiness, not timing: wait until the listener accepts.
        for _ in 0..200 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return broker;
            }
            if let Ok(Some(status)) = broker.child.try_wait() {
                panic!("mosquitto exited ({status})\n{}", t.read_str("broker.log"));
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        panic!("mosquitto did not listen\n{}", t.read_str("broker.log"));
    }

    fn reload(&self) {
        Cmd::new(Path::new("/"), "kill")
            .args(["-HUP", &self.child.id().to_string()])
            .run()
            .ok();
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn mosquitto_example_admits_devices_of_the_ca_and_refuses_deactivated_ones() {
    let t = TestDir::new();
    if !need("mosquitto") || !need("mosquitto_pub") {
        return;
    }
    example(&t, "bash", &[&format!("{EXAMPLES}/mosquitto/setup.sh")]).ok();
    t.write(
        "mosquitto.conf",
        std::fs::read(format!("{EXAMPLES}/mosquitto/mosquitto.conf")).unwrap(),
    );
    let broker = Broker::start(&t, "mosquitto.conf");
    let port = broker.port.to_string();
    let client = format!("{EXAMPLES}/mosquitto/client.sh");
    let publish = |device: &str| example(&t, "bash", &[&client, device, &port]);
    publish("certs/device-01").ok();
    assert!(
        t.read_str("broker.log").contains("u'device-01'"),
        "CN is not the username"
    );
    // A device of another CA is refused.
    t.devcert(&[
        "ca",
        "--subject",
        "/CN=Rogue CA",
        "--key-out",
        "rogue.key",
        "-o",
        "rogue.crt",
    ])
    .ok();
    t.devcert(&[
        "issue",
        "--cn",
        "rogue-01",
        "--ca",
        "rogue.crt",
        "--ca-key",
        "rogue.key",
        "--out-dir",
        "rogue-01",
    ])
    .ok();
    let rogue = Cmd::new(t.root(), "bash")
        .args([&client, "rogue-01", &port])
        .env("CA", "certs/CA.crt")
        .run();
    assert_ne!(
        rogue.code,
        Some(0),
        "the broker admitted another CA's device"
    );
    // Deactivate device-01, write the CRL, reload: refused from then on.
    let serial = serial_of(&t, "certs/device-01/client.crt");
    let db = ["registry", "--db", "certs/devcert.db"];
    t.devcert(&[&db[..], &["device", "deactivate", &serial]].concat())
        .ok();
    let crl = [
        "crl",
        "--ca",
        "certs/CA.crt",
        "--ca-key",
        "certs/CA.key",
        "-o",
        "certs/ca.crl",
        "--force",
    ];
    t.devcert(&[&db[..], &crl[..]].concat()).ok();
    broker.reload();
    let refused = (0..100).any(|_| {
        if publish("certs/device-01").code != Some(0) {
            return true;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
        false
    });
    assert!(
        refused,
        "deactivated device still admitted\n{}",
        t.read_str("broker.log")
    );
    // Activate again: admitted after the next CRL.
    t.devcert(&[&db[..], &["device", "activate", &serial]].concat())
        .ok();
    t.devcert(&[&db[..], &crl[..]].concat()).ok();
    broker.reload();
    let admitted = (0..100).any(|_| {
        if publish("certs/device-01").code == Some(0) {
            return true;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
        false
    });
    assert!(
        admitted,
        "re-activated device refused\n{}",
        t.read_str("broker.log")
    );
}

#[test]
fn example_scripts_pass_shellcheck() {
    let t = TestDir::new();
    if !need("shellcheck") {
        return;
    }
    let scripts = [
        "provision.sh",
        "quickstart.sh",
        "mosquitto/setup.sh",
        "mosquitto/client.sh",
        "ca-registration/register-ca.sh",
    ]
    .map(|s| format!("{EXAMPLES}/{s}"));
    Cmd::new(t.root(), "shellcheck").args(scripts).run().ok();
}
