//! The security review's findings (issue 17): each test covers the class of
//! defect, not only the review's example. Configs that expand without end,
//! outputs that are one file under two names, unbounded reads, secrets from
//! `$ENV::` in messages, terminal escapes in printed text, Unicode name
//! folding, and CAs whose keyUsage or pathLen forbid what they sign.
//! See docs/security.md.
mod common;
use common::*;

/// The review's doubling config: line N+1 is twice line N.
fn doubling(lines: usize) -> String {
    let mut t = String::from("v0 = 0123456789abcdef0123456789abcdef\n");
    for i in 1..=lines {
        t.push_str(&format!("v{i} = $v{p}$v{p}\n", p = i - 1));
    }
    t
}

const REQ: &str = "[req]\nprompt = no\ndistinguished_name = dn\n[dn]\nCN = x\n";

/// The line OpenSSL's "Error on line N" names, if it refused the config.
fn openssl_bad_line(t: &TestDir, cnf: &str) -> Option<String> {
    let out = t.openssl(&[
        "req",
        "-config",
        cnf,
        "-new",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-keyout",
        "/dev/null",
        "-out",
        "/dev/null",
    ]);
    let text = out.text();
    let at = text.find("Error on line ")?;
    Some(text[at + 14..].split_whitespace().next()?.to_string())
}

#[test]
fn config_variable_expansion_stops_where_openssl_stops() {
    let t = TestDir::new();
    t.ec_key("d.key");
    // The review's file (well under 1 KiB) doubles to terabytes.
    t.write("bomb.cnf", format!("{}{REQ}", doubling(40)));
    assert!(t.read("bomb.cnf").len() < 1000);
    // 65,535 bytes fit, 65,536 do not, in OpenSSL as in devcert.
    let (a, b) = ("a".repeat(32768), "a".repeat(32767));
    t.write("fits.cnf", format!("x = {a}\ny = {b}\nz = $x$y\n{REQ}"));
    t.write("over.cnf", format!("x = {a}\ny = {b}\nz = $x$x\n{REQ}"));
    for cnf in ["bomb.cnf", "fits.cnf", "over.cnf"] {
        let out = t.devcert(&[
            "csr", "--key", "d.key", "--config", cnf, "-o", "r.csr", "--force",
        ]);
        match openssl_bad_line(&t, cnf) {
            None => drop(out.ok()),
            Some(line) => {
                out.fails_naming(&[&format!("{cnf}:{line}"), "variable expansion too long"]);
            }
        }
    }
    assert!(
        openssl_bad_line(&t, "bomb.cnf").is_some() && openssl_bad_line(&t, "fits.cnf").is_none()
    );
}

#[test]
fn configs_and_profiles_that_multiply_are_refused_quickly() {
    let t = TestDir::new();
    t.ec_ca("CA");
    t.ec_csr("d");
    // Each line re-reads a large section: 1,000 x 1,000 names.
    let mut ext = "subjectAltName = @alt\n".repeat(1000);
    ext.push_str("[alt]\n");
    (0..1000).for_each(|i| ext.push_str(&format!("DNS.{i} = d{i}.example\n")));
    t.write("alt.ext", ext);
    t.devcert(&[
        "sign",
        "--csr",
        "d.csr",
        "--ca",
        "CA.crt",
        "--ca-key",
        "CA.key",
        "--profile",
        "alt.ext",
        "-o",
        "d.crt",
    ])
    .fails_naming(&["alt.ext:", "more than 65536 items"]);
    t.assert_no_file("d.crt");
    // Values that each stay under 64 KiB but add up past 16 MiB.
    let mut cnf = format!("big = {}\n", "b".repeat(60_000));
    (0..300).for_each(|i| cnf.push_str(&format!("k{i} = $big\n")));
    t.write("wide.cnf", format!("{cnf}{REQ}"));
    t.devcert(&[
        "csr", "--key", "d.key", "--config", "wide.cnf", "-o", "w.csr",
    ])
    .fails_naming(&["wide.cnf:", "more than 16 MiB"]);
}

#[test]
fn passphrase_file_reads_are_capped() {
    let t = TestDir::new();
    // /dev/zero never ends; a FIFO nobody writes to would hang; a big file.
    t.write("big.pw", vec![b'p'; 64 * 1024 + 1]);
    for pw in ["/dev/zero", "big.pw"] {
        t.devcert(&["key", "--encrypt", "--passphrase-file", pw, "-o", "k.pem"])
            .fails_naming(&[pw, "longer than 64 KiB"]);
        t.assert_no_file("k.pem");
    }
    t.write("ok.pw", vec![b'p'; 64 * 1024]);
    t.devcert(&[
        "key",
        "--encrypt",
        "--passphrase-file",
        "ok.pw",
        "-o",
        "k.pem",
    ])
    .ok();
}

/// Two outputs of one command that are one directory entry, reached
/// through `..`, `.` or a linked folder: refused even with --force, and
/// nothing is written; the key is never lost.
#[test]
fn two_outputs_that_are_one_file_are_refused_everywhere() {
    let t = TestDir::new();
    t.ec_ca("CA");
    std::fs::create_dir(t.path("sub")).unwrap();
    std::os::unix::fs::symlink(t.path("sub"), t.path("link")).unwrap();
    let same = [
        ("sub/k.pem", "sub/../sub/k.pem"),
        ("sub/k.pem", "link/k.pem"),
        ("k.pem", "./k.pem"),
    ];
    for (key, out) in same {
        for force in [false, true] {
            let mut runs = vec![
                vec!["ca", "--subject", "/CN=R", "--key-out", key, "-o", out],
                vec![
                    "ca",
                    "--subject",
                    "/CN=I",
                    "--ca",
                    "CA.crt",
                    "--ca-key",
                    "CA.key",
                    "--key-out",
                    key,
                    "-o",
                    out,
                ],
                vec![
                    "csr",
                    "--new-key",
                    "ec",
                    "--key-out",
                    key,
                    "--subject",
                    "/CN=d",
                    "-o",
                    out,
                ],
            ];
            for args in &mut runs {
                if force {
                    args.push("--force");
                }
                t.devcert(args).fails_naming(&["same file"]);
                t.assert_no_file(key);
            }
        }
    }
    // A link as the output itself is replaced, not followed: both files
    // survive, each what it should be.
    t.write("c.pem", "old");
    std::os::unix::fs::symlink(t.path("c.pem"), t.path("alias.pem")).unwrap();
    t.devcert(&[
        "ca",
        "--subject",
        "/CN=R",
        "--key-out",
        "alias.pem",
        "-o",
        "c.pem",
        "--force",
    ])
    .ok();
    assert!(
        !std::fs::symlink_metadata(t.path("alias.pem"))
            .unwrap()
            .is_symlink()
    );
    t.assert_key_matches("alias.pem", &t.cert("c.pem").get("spki_der"));
}

/// The files a command signs with are never its outputs, not even with
/// --force: replacing the CA key a command just used loses it for good.
/// Also through `./` and `..`; openssl still verifies with the old files.
#[test]
fn outputs_never_replace_the_signing_ca_files() {
    let t = TestDir::new();
    t.ec_ca("CA");
    std::fs::create_dir(t.path("sub")).unwrap();
    let ca = || (t.read("CA.crt"), t.read("CA.key"));
    let before = ca();
    fn intermediate(key_out: &'static str, out: &'static str) -> Vec<&'static str> {
        let args = [
            "ca",
            "--subject",
            "/CN=I",
            "--ca",
            "CA.crt",
            "--ca-key",
            "CA.key",
        ];
        [&args[..], &["--key-out", key_out, "-o", out, "--force"]].concat()
    }
    let runs: Vec<(Vec<&str>, &str)> = vec![
        (intermediate("CA.key", "I.crt"), "--ca-key"),
        (intermediate("./sub/../CA.key", "I.crt"), "--ca-key"),
        (
            intermediate("I.key", "CA.crt"),
            "--ca this command signs with",
        ),
    ];
    for (args, why) in &runs {
        t.devcert(args).fails_naming(&[why, "cannot write output"]);
    }
    t.devcert(&[
        "csr",
        "--new-key",
        "ec",
        "--key-out",
        "d.key",
        "--subject",
        "/CN=d",
        "-o",
        "d.csr",
    ])
    .ok();
    let sign = [
        "sign", "--csr", "d.csr", "--ca", "CA.crt", "--ca-key", "CA.key", "--force",
    ];
    t.devcert(&[&sign[..], &["-o", "CA.crt"]].concat())
        .fails_naming(&["CA.crt", "--ca this command signs with"]);
    // A CRL written over the CA's key.
    t.devcert(&["registry", "--db", "r.db", "ca", "add", "CA.crt"])
        .ok();
    let crl = [
        "registry", "--db", "r.db", "crl", "--ca", "CA.crt", "--ca-key", "CA.key",
    ];
    t.devcert(&[&crl[..], &["-o", "CA.key", "--force"]].concat())
        .fails_naming(&["CA.key", "--ca-key this command signs with"]);
    // issue's five files: a CA kept as client.crt/client.key in the out dir.
    std::fs::copy(t.path("CA.crt"), t.path("sub/client.crt")).unwrap();
    std::fs::copy(t.path("CA.key"), t.path("sub/client.key")).unwrap();
    let issue = [
        "issue",
        "--subject",
        "/CN=d",
        "--ca",
        "sub/client.crt",
        "--ca-key",
        "sub/client.key",
    ];
    t.devcert(&[&issue[..], &["--out-dir", "sub", "--force"]].concat())
        .fails_naming(&["sub/client.key", "--ca-key"]);
    assert_eq!(ca(), before, "the CA's files are unchanged");
    assert_eq!(t.read("sub/client.key"), before.1);
    t.assert_no_file("I.crt");
    let verify = std::process::Command::new("openssl")
        .args(["verify", "-CAfile", "CA.crt", "CA.crt"])
        .current_dir(t.root())
        .output()
        .unwrap();
    assert!(
        verify.status.success(),
        "openssl still takes CA.crt as the CA"
    );
}

/// A secret a config takes from the environment, and a value no key
/// accepts, so every line below makes an error that could echo it.
const SECRET: &str = "Hunter2\u{e9} s3cr3t:zz,@qq";

/// Every parse failure of every config key the readers know, with the value
/// from `$ENV::`: the error names file and line but never the value.
#[test]
fn values_from_the_environment_never_appear_in_errors() {
    let t = TestDir::new();
    t.ec_ca("CA");
    t.ec_csr("d");
    let e = "$ENV::DEVCERT_REVIEW_SECRET";
    let req = |k: &str, v: &str| {
        let mut r =
            format!("[req]\nprompt = no\ndistinguished_name = dn\n{k} = {v}\n[dn]\nCN = x\n");
        if k == "req_extensions" || k == "distinguished_name" {
            r = format!("[req]\nprompt = no\n{k} = {v}\n[dn]\nCN = x\n");
        }
        r
    };
    let dn = |k: &str| format!("[req]\nprompt = no\ndistinguished_name = dn\n[dn]\n{k} = {e}\n");
    let mut configs: Vec<String> = [
        "prompt",
        "string_mask",
        "default_md",
        "default_bits",
        "distinguished_name",
        "req_extensions",
    ]
    .iter()
    .map(|k| req(k, e))
    .collect();
    configs.extend(["C", "emailAddress", "serialNumber", "DC", "nope"].map(dn));
    configs.push(format!("[req]\nprompt = no\ndistinguished_name = dn\nreq_extensions = x\n[x]\nkeyUsage = {e}\n[dn]\nCN = x\n"));
    let profiles = [
        "basicConstraints",
        "keyUsage",
        "extendedKeyUsage",
        "subjectKeyIdentifier",
        "authorityKeyIdentifier",
        "subjectAltName",
        "issuerAltName",
        "crlDistributionPoints",
        "authorityInfoAccess",
        "nsComment",
        "certificatePolicies",
    ]
    .map(|k| format!("{k} = {e}\n"))
    .into_iter()
    .chain(
        ["DNS", "IP", "email", "URI", "RID", "dirName", "otherName"]
            .map(|ty| format!("subjectAltName = {ty}:{e}\n")),
    )
    .chain([
        format!("authorityInfoAccess = OCSP;URI:{e}\n"),
        format!("basicConstraints = CA:TRUE,pathlen:{e}\n"),
    ]);
    let mut runs = Vec::new();
    for (i, c) in configs.iter().enumerate() {
        let f = format!("c{i}.cnf");
        t.write(&f, c);
        runs.push(vec![
            "csr".to_string(),
            "--key".into(),
            "d.key".into(),
            "--config".into(),
            f,
        ]);
    }
    for (i, p) in profiles.enumerate() {
        let f = format!("p{i}.ext");
        t.write(&f, p);
        runs.push(
            [
                "sign",
                "--csr",
                "d.csr",
                "--ca",
                "CA.crt",
                "--ca-key",
                "CA.key",
                "--profile",
            ]
            .iter()
            .map(|s| s.to_string())
            .chain([f])
            .collect(),
        );
    }
    let windows: Vec<String> = SECRET
        .chars()
        .collect::<Vec<_>>()
        .windows(4)
        .map(|w| w.iter().collect())
        .collect();
    for args in runs {
        let out = t
            .devcert_cmd()
            .args(&args)
            .arg("-o")
            .arg("out.pem")
            .env("DEVCERT_REVIEW_SECRET", SECRET)
            .run()
            .fails();
        let file = args
            .iter()
            .find(|a| a.contains('.') && a.ends_with("cnf") || a.ends_with("ext"));
        assert!(
            out.error_line().contains(file.unwrap().as_str()),
            "{}",
            out.describe()
        );
        for w in &windows {
            assert!(
                !out.stderr.contains(w.as_str()),
                "{w:?} of the secret leaked\n{}",
                out.describe()
            );
        }
    }
}

#[test]
fn a_config_cannot_copy_the_passphrase_variable() {
    let t = TestDir::new();
    t.ec_ca("CA");
    t.write(
        "c.cnf",
        "[req]\nprompt = no\ndistinguished_name = dn\n[dn]\nCN = ${ENV::KEY_PW}\n",
    );
    for cmd in [
        vec![
            "csr",
            "--new-key",
            "ec",
            "--key-out",
            "d.key",
            "--encrypt",
            "--passphrase-env",
            "KEY_PW",
            "--config",
            "c.cnf",
            "-o",
            "d.csr",
        ],
        vec![
            "issue",
            "--config",
            "c.cnf",
            "--ca",
            "CA.crt",
            "--ca-key",
            "CA.key",
            "--encrypt",
            "--out-passphrase-env",
            "KEY_PW",
            "--out-dir",
            "dev",
        ],
        vec![
            "ca",
            "--config",
            "c.cnf",
            "--key-out",
            "r.key",
            "--encrypt",
            "--out-passphrase-env",
            "KEY_PW",
            "-o",
            "r.crt",
        ],
    ] {
        let out = t
            .devcert_cmd()
            .args(&cmd)
            .env("KEY_PW", "pass-phrase-123")
            .run()
            .fails_naming(&["c.cnf:5", "$ENV::KEY_PW holds a passphrase"]);
        assert!(!out.stderr.contains("pass-phrase"), "{}", out.describe());
        for f in ["d.key", "d.csr", "dev", "r.key", "r.crt"] {
            t.assert_no_file(f);
        }
    }
    // Any other variable is OpenSSL's $ENV:: and lands in the subject.
    t.devcert_cmd()
        .args([
            "csr",
            "--new-key",
            "ec",
            "--key-out",
            "d.key",
            "--config",
            "c.cnf",
            "-o",
            "d.csr",
        ])
        .env("KEY_PW", "device-7")
        .run()
        .ok();
    assert!(t.csr("d.csr").get("subject").contains("device-7"));
}

/// A trusted CA and a device signed by the same key under a name that
/// differs from the CA's only as `issued_as` does: OpenSSL finds the CA
/// only if its canonical form (ASCII case and spaces folded, nothing else)
/// is equal, and devcert must say the same.
#[test]
fn name_matching_folds_what_openssl_folds_and_nothing_else() {
    let t = TestDir::new();
    let cnf = t.min_cnf();
    let cases = [
        // (CA subject CN, the device's issuer CN, OpenSSL matches)
        ("ACME Root", "  acme   ROOT ", true),
        ("Key Root", "\u{212A}ey Root", false),
        ("ACME Root", "ACME\u{a0}Root", false),
        ("\u{c4}pfel Root", "\u{e4}pfel Root", false),
        ("ACME\tRoot", "acme root", true),
    ];
    for (i, (ca_cn, issued_as, matches)) in cases.into_iter().enumerate() {
        let ca = format!("ca{i}");
        t.openssl_ca_with(&ca, &cnf, &EC_P256, &format!("/CN={ca_cn}"), &["-utf8"]);
        // The same key under the other name signs the device.
        t.openssl_ok(&[
            "req",
            "-x509",
            "-config",
            &cnf,
            "-utf8",
            "-key",
            &format!("{ca}.key"),
            "-subj",
            &format!("/CN={issued_as}"),
            "-out",
            &format!("alias{i}.crt"),
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=keyCertSign",
        ]);
        t.ec_csr(&format!("d{i}"));
        t.devcert(&[
            "sign",
            "--csr",
            &format!("d{i}.csr"),
            "--ca",
            &format!("alias{i}.crt"),
            "--ca-key",
            &format!("{ca}.key"),
            "-o",
            &format!("d{i}.crt"),
        ])
        .ok();
        let openssl = t.openssl(&[
            "verify",
            "-CAfile",
            &format!("{ca}.crt"),
            &format!("d{i}.crt"),
        ]);
        assert_eq!(openssl.code == Some(0), matches, "{}", openssl.describe());
        if !matches {
            assert!(
                openssl
                    .text()
                    .contains("unable to get local issuer certificate"),
                "{}",
                openssl.describe()
            );
        }
        let out = t.devcert(&["verify", "--ca", &format!("{ca}.crt"), &format!("d{i}.crt")]);
        out.code(if matches { 0 } else { 3 });
    }
}

/// Every signing command warns when the CA's own certificate forbids what
/// it signs (no keyCertSign; pathlen 0 and a new CA), as `registry crl`
/// warns about cRLSign; OpenSSL and `devcert verify` then reject the
/// result. Nothing is said when the CA may sign it.
#[test]
fn signing_warns_when_the_ca_may_not_sign_it() {
    let t = TestDir::new();
    let cnf = t.min_cnf();
    t.devcert(&[
        "ca",
        "--subject",
        "/CN=Root0",
        "--pathlen",
        "0",
        "--key-out",
        "r0.key",
        "-o",
        "r0.crt",
    ])
    .ok();
    t.devcert(&[
        "ca",
        "--subject",
        "/CN=Root",
        "--key-out",
        "r.key",
        "-o",
        "r.crt",
    ])
    .ok();
    t.openssl_ok(&[
        "req",
        "-x509",
        "-config",
        &cnf,
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-keyout",
        "nocs.key",
        "-out",
        "nocs.crt",
        "-subj",
        "/CN=No CertSign",
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,digitalSignature,cRLSign",
    ]);
    t.ec_csr("d");
    let pathlen = ["pathlen 0", "may not sign another CA"];
    let no_cert_sign = ["lacks keyCertSign"];
    // The pathlen-0 root may sign devices, not CAs.
    t.devcert(&[
        "sign", "--csr", "d.csr", "--ca", "r0.crt", "--ca-key", "r0.key", "-o", "ok.crt",
    ])
    .ok()
    .no_warning();
    t.devcert(&[
        "ca",
        "--subject",
        "/CN=Sub",
        "--ca",
        "r0.crt",
        "--ca-key",
        "r0.key",
        "--key-out",
        "sub.key",
        "-o",
        "sub.crt",
    ])
    .ok()
    .warns_about(&pathlen);
    t.devcert(&[
        "sign",
        "--csr",
        "d.csr",
        "--ca",
        "r0.crt",
        "--ca-key",
        "r0.key",
        "--profile",
        "ca",
        "-o",
        "sub2.crt",
    ])
    .ok()
    .warns_about(&pathlen);
    t.devcert(&[
        "issue",
        "--cn",
        "d1",
        "--ca",
        "nocs.crt",
        "--ca-key",
        "nocs.key",
        "--out-dir",
        "d1",
    ])
    .ok()
    .warns_about(&no_cert_sign);
    t.devcert(&[
        "sign", "--csr", "d.csr", "--ca", "nocs.crt", "--ca-key", "nocs.key", "-o", "bad.crt",
    ])
    .ok()
    .warns_about(&no_cert_sign);
    // A root that may do both says nothing.
    t.devcert(&[
        "ca",
        "--subject",
        "/CN=Sub",
        "--ca",
        "r.crt",
        "--ca-key",
        "r.key",
        "--key-out",
        "s.key",
        "-o",
        "s.crt",
    ])
    .ok()
    .no_warning();
    // The warnings are right: both verifiers reject what was made.
    t.devcert(&[
        "sign", "--csr", "d.csr", "--ca", "sub.crt", "--ca-key", "sub.key", "-o", "leaf.crt",
    ])
    .ok();
    let o = t.openssl(&[
        "verify",
        "-CAfile",
        "r0.crt",
        "-untrusted",
        "sub.crt",
        "leaf.crt",
    ]);
    assert!(
        o.code != Some(0) && o.text().contains("path length"),
        "{}",
        o.describe()
    );
    t.devcert(&[
        "verify",
        "--ca",
        "r0.crt",
        "--untrusted",
        "sub.crt",
        "leaf.crt",
    ])
    .code(3);
    let o = t.openssl(&["verify", "-CAfile", "nocs.crt", "bad.crt"]);
    assert!(o.code != Some(0), "{}", o.describe());
    t.devcert(&["verify", "--ca", "nocs.crt", "bad.crt"])
        .code(3);
}

/// Characters a terminal obeys instead of showing.
fn unsafe_chars(s: &str) -> Vec<char> {
    s.chars()
        .filter(|&c| {
            (c.is_control() && c != '\n')
                || matches!(c, '\u{061C}' | '\u{200E}' | '\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
        })
        .collect()
}

/// A CSR and a certificate (made by OpenSSL) whose SANs, subject and an
/// unknown extension carry cursor moves, line erases, C1 controls and bidi
/// overrides: `inspect` and `inspect --json` print none of them raw, and
/// the JSON still decodes to the exact values.
#[test]
fn inspect_never_prints_terminal_controls() {
    let t = TestDir::new();
    let cnf = t.min_cnf();
    t.ec_key("k.pem");
    let erase = "\u{1b}[1A\u{1b}[2K\r";
    let exts = [
        "basicConstraints=critical,CA:TRUE".to_string(),
        format!("subjectAltName=DNS:ok.example{erase},URI:http://x/\u{7f}y,email:a{erase}@b"),
        "1.2.3.4=ASN1:UTF8String:evil\u{202e}txt.exe\u{9b}2J".to_string(),
    ];
    let subj = "/CN=dev\u{202e}ice\u{85}/O=a\tb";
    for (file, x509) in [("crafted.csr", false), ("crafted.crt", true)] {
        let mut args = vec![
            "req", "-new", "-config", &cnf, "-utf8", "-key", "k.pem", "-subj", subj, "-out", file,
        ];
        if x509 {
            args.push("-x509");
        }
        for e in &exts {
            args.extend(["-addext", e.as_str()]);
        }
        t.openssl_ok(&args);
        let text = t.devcert(&["inspect", file]).ok().stdout_str();
        assert!(
            unsafe_chars(&text).is_empty(),
            "{:?} printed raw:\n{text}",
            unsafe_chars(&text)
        );
        assert!(text.contains("ok.example\\x1B[1A\\x1B[2K\\x0D"), "{text}");
        assert!(text.contains("CA:TRUE"), "{text}");
        let json = t.devcert(&["inspect", "--json", file]).ok().stdout_str();
        assert!(
            unsafe_chars(&json).is_empty(),
            "{:?} printed raw:\n{json}",
            unsafe_chars(&json)
        );
        // Another JSON reader gets the exact bytes back.
        let py = Cmd::new(t.root(), "python3")
            .args([
                "-c",
                "import json,sys; d=json.load(sys.stdin); print(json.dumps(d, ensure_ascii=True))",
            ])
            .stdin(json.into_bytes())
            .run()
            .ok()
            .stdout_str();
        assert!(py.contains("ok.example\\u001b[1A\\u001b[2K\\r"), "{py}");
        assert!(py.contains("http://x/\\u007fy"), "{py}");
    }
    // Error lines quote file names (and CNs): escaped too, still one line.
    let out = t.devcert(&["inspect", "no\u{1b}[2K\nfile"]).fails();
    assert!(unsafe_chars(&out.stderr).is_empty(), "{}", out.describe());
    assert!(
        out.error_line().contains("no\\x1B[2K\\x0Afile"),
        "{}",
        out.describe()
    );
}
