//! The bad-input matrix (issue 6, item 1): every file-reading argument of
//! every command, fed every kind of bad (and a few kinds of unusual but
//! valid) input. A bad input must give exit 1, exactly one `error:` line
//! naming the file with a human reason, no panic, no output file; the
//! unusual-but-valid ones (DER for PEM and back, CRLF, bundles where a
//! bundle is allowed) must work.
//!
//! Each run is bounded by a generous timeout (a hang fails the test); the
//! time each case took is measured and printed, not asserted.
mod common;
use common::*;

use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use wait_timeout::ChildExt;

const TIMEOUT: Duration = Duration::from_secs(10);

/// What an argument expects to read.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    /// One certificate.
    Cert,
    /// One or more certificates (`chain`, `verify FILE`, `--untrusted`, `verify --ca`).
    Certs,
    Csr,
    Key,
    Crl,
    /// OpenSSL req config (text).
    Config,
    /// OpenSSL extfile profile (text).
    Profile,
    /// Device names, one a line (text).
    Names,
}

impl Kind {
    fn is_text(self) -> bool {
        matches!(self, Kind::Config | Kind::Profile | Kind::Names)
    }
}

/// One file-reading argument: `args` with `@` where the file goes; outputs
/// are written under `OUT/` (a per-case folder).
struct Target {
    name: &'static str,
    kind: Kind,
    /// The valid fixture for this argument.
    valid: &'static str,
    args: &'static [&'static str],
}

const TARGETS: &[Target] = &[
    Target {
        name: "csr --key",
        kind: Kind::Key,
        valid: "client.key",
        args: &["csr", "--key", "@", "--subject", "/CN=x", "-o", "OUT/x.csr"],
    },
    Target {
        name: "csr --config",
        kind: Kind::Config,
        valid: "client.csr.cfg",
        args: &[
            "csr",
            "--key",
            "client.key",
            "--config",
            "@",
            "-o",
            "OUT/x.csr",
        ],
    },
    Target {
        name: "sign --csr",
        kind: Kind::Csr,
        valid: "client.csr",
        args: &[
            "sign",
            "--csr",
            "@",
            "--ca",
            "CA.crt",
            "--ca-key",
            "CA.key",
            "-o",
            "OUT/x.crt",
        ],
    },
    Target {
        name: "sign --ca",
        kind: Kind::Cert,
        valid: "CA.crt",
        args: &[
            "sign",
            "--csr",
            "client.csr",
            "--ca",
            "@",
            "--ca-key",
            "CA.key",
            "-o",
            "OUT/x.crt",
        ],
    },
    Target {
        name: "sign --ca-key",
        kind: Kind::Key,
        valid: "CA.key",
        args: &[
            "sign",
            "--csr",
            "client.csr",
            "--ca",
            "CA.crt",
            "--ca-key",
            "@",
            "-o",
            "OUT/x.crt",
        ],
    },
    Target {
        name: "sign --profile",
        kind: Kind::Profile,
        valid: "client.crt.cfg",
        args: &[
            "sign",
            "--csr",
            "client.csr",
            "--ca",
            "CA.crt",
            "--ca-key",
            "CA.key",
            "--profile",
            "@",
            "-o",
            "OUT/x.crt",
        ],
    },
    Target {
        name: "pkcs8 KEY",
        kind: Kind::Key,
        valid: "client.key",
        args: &["pkcs8", "@", "-o", "OUT/x.key"],
    },
    Target {
        name: "chain CERT (leaf)",
        kind: Kind::Certs,
        valid: "client.crt",
        args: &["chain", "@", "CA.crt", "-o", "OUT/x.crt"],
    },
    Target {
        name: "chain CERT (issuer)",
        kind: Kind::Certs,
        valid: "CA.crt",
        args: &["chain", "client.crt", "@", "-o", "OUT/x.crt"],
    },
    Target {
        name: "ca --config",
        kind: Kind::Config,
        valid: "client.csr.cfg",
        args: &[
            "ca",
            "--config",
            "@",
            "--key-out",
            "OUT/x.key",
            "-o",
            "OUT/x.crt",
        ],
    },
    Target {
        name: "ca --ca",
        kind: Kind::Cert,
        valid: "CA.crt",
        args: &[
            "ca",
            "--subject",
            "/CN=Sub",
            "--ca",
            "@",
            "--ca-key",
            "CA.key",
            "--key-out",
            "OUT/x.key",
            "-o",
            "OUT/x.crt",
        ],
    },
    Target {
        name: "ca --ca-key",
        kind: Kind::Key,
        valid: "CA.key",
        args: &[
            "ca",
            "--subject",
            "/CN=Sub",
            "--ca",
            "CA.crt",
            "--ca-key",
            "@",
            "--key-out",
            "OUT/x.key",
            "-o",
            "OUT/x.crt",
        ],
    },
    Target {
        name: "issue --config",
        kind: Kind::Config,
        valid: "client.csr.cfg",
        args: &[
            "issue",
            "--config",
            "@",
            "--ca",
            "CA.crt",
            "--ca-key",
            "CA.key",
            "--out-dir",
            "OUT/d",
        ],
    },
    Target {
        name: "issue --ca",
        kind: Kind::Cert,
        valid: "CA.crt",
        args: &[
            "issue",
            "--cn",
            "d",
            "--ca",
            "@",
            "--ca-key",
            "CA.key",
            "--out-dir",
            "OUT/d",
        ],
    },
    Target {
        name: "issue --ca-key",
        kind: Kind::Key,
        valid: "CA.key",
        args: &[
            "issue",
            "--cn",
            "d",
            "--ca",
            "CA.crt",
            "--ca-key",
            "@",
            "--out-dir",
            "OUT/d",
        ],
    },
    Target {
        name: "issue --profile",
        kind: Kind::Profile,
        valid: "client.crt.cfg",
        args: &[
            "issue",
            "--cn",
            "d",
            "--ca",
            "CA.crt",
            "--ca-key",
            "CA.key",
            "--profile",
            "@",
            "--out-dir",
            "OUT/d",
        ],
    },
    Target {
        name: "batch --names",
        kind: Kind::Names,
        valid: "names.txt",
        args: &[
            "batch",
            "--names",
            "@",
            "--ca",
            "CA.crt",
            "--ca-key",
            "CA.key",
            "--out-dir",
            "OUT/fleet",
        ],
    },
    Target {
        name: "batch --config",
        kind: Kind::Config,
        valid: "client.csr.cfg",
        args: &[
            "batch",
            "--count",
            "1",
            "--cn-prefix",
            "d",
            "--config",
            "@",
            "--ca",
            "CA.crt",
            "--ca-key",
            "CA.key",
            "--out-dir",
            "OUT/fleet",
        ],
    },
    Target {
        name: "batch --ca",
        kind: Kind::Cert,
        valid: "CA.crt",
        args: &[
            "batch",
            "--count",
            "1",
            "--cn-prefix",
            "d",
            "--ca",
            "@",
            "--ca-key",
            "CA.key",
            "--out-dir",
            "OUT/fleet",
        ],
    },
    Target {
        name: "batch --ca-key",
        kind: Kind::Key,
        valid: "CA.key",
        args: &[
            "batch",
            "--count",
            "1",
            "--cn-prefix",
            "d",
            "--ca",
            "CA.crt",
            "--ca-key",
            "@",
            "--out-dir",
            "OUT/fleet",
        ],
    },
    Target {
        name: "batch --profile",
        kind: Kind::Profile,
        valid: "client.crt.cfg",
        args: &[
            "batch",
            "--count",
            "1",
            "--cn-prefix",
            "d",
            "--ca",
            "CA.crt",
            "--ca-key",
            "CA.key",
            "--profile",
            "@",
            "--out-dir",
            "OUT/fleet",
        ],
    },
    Target {
        name: "verify FILE",
        kind: Kind::Certs,
        valid: "client.crt",
        args: &["verify", "--ca", "CA.crt", "@"],
    },
    Target {
        name: "verify --ca",
        kind: Kind::Certs,
        valid: "CA.crt",
        args: &["verify", "--ca", "@", "client.crt"],
    },
    Target {
        name: "verify --untrusted",
        kind: Kind::Certs,
        valid: "CA.crt",
        args: &["verify", "--ca", "CA.crt", "--untrusted", "@", "client.crt"],
    },
    Target {
        name: "verify --crl",
        kind: Kind::Crl,
        valid: "CA.crl",
        args: &["verify", "--ca", "CA.crt", "--crl", "@", "client.crt"],
    },
];

/// The inputs every argument is fed.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Variant {
    Missing,
    Empty,
    Garbage,
    TruncatedPem,
    WrongKindPem,
    WrongKindDer,
    /// The valid object as DER in a file named `.pem`.
    Der,
    /// The valid object as PEM in a file named `.der`.
    PemNamedDer,
    Random5M,
    SeveralBlocks,
    Crlf,
    Directory,
}

const VARIANTS: [Variant; 12] = [
    Variant::Missing,
    Variant::Empty,
    Variant::Garbage,
    Variant::TruncatedPem,
    Variant::WrongKindPem,
    Variant::WrongKindDer,
    Variant::Der,
    Variant::PemNamedDer,
    Variant::Random5M,
    Variant::SeveralBlocks,
    Variant::Crlf,
    Variant::Directory,
];

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Expect {
    Fails,
    Works,
}

/// Whether `variant` is bad input for `kind` (None: does not apply).
fn expectation(kind: Kind, variant: Variant) -> Option<Expect> {
    use Variant::*;
    Some(match variant {
        Crlf => Expect::Works,
        Der | PemNamedDer if kind.is_text() => return None,
        Der | PemNamedDer => Expect::Works,
        SeveralBlocks if matches!(kind, Kind::Certs | Kind::Crl) => Expect::Works,
        // Truncating a names list leaves a shorter valid list.
        TruncatedPem if kind == Kind::Names => return None,
        _ => Expect::Fails,
    })
}

/// Deterministic pseudo-random bytes (xorshift), never starting like DER.
fn random_bytes(n: usize, mut seed: u64) -> Vec<u8> {
    let mut v = Vec::with_capacity(n);
    while v.len() < n {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        v.extend_from_slice(&seed.to_le_bytes());
    }
    v.truncate(n);
    v[0] = 0xA5;
    v
}

fn openssl_der(t: &TestDir, cmd: &str, input: &str, out: &str) {
    t.openssl_ok(&[cmd, "-in", input, "-outform", "DER", "-out", out]);
}

/// Fixtures made by openssl: a CA, a client key/CSR/certificate, a CRL,
/// the seed configs, a names list and their DER forms.
fn fixtures(t: &TestDir) {
    t.ec_ca("CA");
    t.ec_csr("client");
    t.seed_configs();
    t.openssl_sign("client.csr", "CA", "client.crt", None);
    t.write("names.txt", "dev-1\n# comment\ndev-2\n");
    t.write("index.txt", "");
    t.write("crlnumber", "01\n");
    t.write(
        "ca.cnf",
        "[ca]\ndefault_ca = d\n[d]\ndatabase = index.txt\ncrlnumber = crlnumber\n\
         default_md = sha256\ndefault_crl_days = 30\n",
    );
    t.openssl_ok(&[
        "ca", "-gencrl", "-config", "ca.cnf", "-keyfile", "CA.key", "-cert", "CA.crt", "-out",
        "CA.crl",
    ]);
    openssl_der(t, "x509", "CA.crt", "CA.crt.der");
    openssl_der(t, "x509", "client.crt", "client.crt.der");
    openssl_der(t, "req", "client.csr", "client.csr.der");
    openssl_der(t, "pkey", "client.key", "client.key.der");
    openssl_der(t, "pkey", "CA.key", "CA.key.der");
    openssl_der(t, "crl", "CA.crl", "CA.crl.der");
    t.write(
        "big.bin",
        random_bytes(5 * 1024 * 1024, 0x9E37_79B9_7F4A_7C15),
    );
    std::fs::create_dir(t.path("a-directory")).unwrap();
}

/// A PEM file of another kind, and a DER file of another kind.
fn wrong_kind(kind: Kind) -> (&'static str, &'static str) {
    match kind {
        Kind::Key => ("client.crt", "client.crt.der"),
        Kind::Cert | Kind::Certs => ("client.key", "client.csr.der"),
        Kind::Csr => ("client.crt", "client.key.der"),
        Kind::Crl => ("client.crt", "client.crt.der"),
        Kind::Config | Kind::Profile | Kind::Names => ("client.crt", "client.crt.der"),
    }
}

fn crlf(bytes: &[u8]) -> Vec<u8> {
    String::from_utf8_lossy(bytes)
        .replace("\r\n", "\n")
        .replace('\n', "\r\n")
        .into_bytes()
}

/// Writes the input for `variant` and returns its file name.
fn make_input(t: &TestDir, target: &Target, variant: Variant, case: usize) -> String {
    let name = |ext: &str| format!("in-{case}.{ext}");
    let valid = t.read(target.valid);
    let (wrong_pem, wrong_der) = wrong_kind(target.kind);
    let (file, bytes): (String, Vec<u8>) = match variant {
        Variant::Missing => return name("missing"),
        Variant::Directory => return "a-directory".into(),
        Variant::Random5M => return "big.bin".into(),
        Variant::Empty => (name("empty"), vec![]),
        Variant::Garbage => (
            name("txt"),
            b"hello world\x00\xff\xfe not a file we read\n".to_vec(),
        ),
        Variant::TruncatedPem if target.kind.is_text() => {
            // Cut in the middle of a line: an unfinished section or value.
            let cut = valid.len() / 2;
            let text = String::from_utf8_lossy(&valid[..cut]).into_owned();
            let text = match target.kind {
                Kind::Config => format!("{text}\n[req"),
                _ => format!("{text}\nbasicConstraints = CA:FA"),
            };
            (name("cfg"), text.into_bytes())
        }
        Variant::TruncatedPem => (name("pem"), valid[..valid.len() * 2 / 3].to_vec()),
        Variant::WrongKindPem => (name("pem"), t.read(wrong_pem)),
        Variant::WrongKindDer => (name("der"), t.read(wrong_der)),
        Variant::Der => (name("pem"), t.read(&format!("{}.der", target.valid))),
        Variant::PemNamedDer => (name("der"), valid.clone()),
        Variant::SeveralBlocks if target.kind.is_text() => {
            // A text file followed by a PEM block.
            (name("txt"), [valid.clone(), t.read("client.crt")].concat())
        }
        Variant::SeveralBlocks => {
            let other = match target.kind {
                Kind::Key => t.read("CA.key"),
                Kind::Csr => t.read("client.csr"),
                Kind::Crl => t.read("CA.crl"),
                _ => t.read("CA.crt"),
            };
            (name("pem"), [valid.clone(), other].concat())
        }
        Variant::Crlf => (name("pem"), crlf(&valid)),
    };
    t.write(&file, bytes);
    file
}

struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
    elapsed: Duration,
}

/// Runs devcert with stdin from /dev/null (never a TTY), killed after TIMEOUT.
fn run(t: &TestDir, args: &[String], case: usize) -> Run {
    let out_path = t.path(&format!("stdout-{case}"));
    let err_path = t.path(&format!("stderr-{case}"));
    let start = Instant::now();
    let mut child = Command::new(DEVCERT)
        .args(args)
        .current_dir(t.root())
        .env("RUST_BACKTRACE", "1")
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out_path).unwrap())
        .stderr(std::fs::File::create(&err_path).unwrap())
        .spawn()
        .expect("spawn devcert");
    let code = match child.wait_timeout(TIMEOUT).expect("wait") {
        Some(status) => status.code(),
        None => {
            let _ = child.kill();
            let _ = child.wait();
            None
        }
    };
    let elapsed = start.elapsed();
    let read = |p: &Path| {
        let s = std::fs::read_to_string(p).unwrap_or_default();
        let _ = std::fs::remove_file(p);
        s
    };
    Run {
        code,
        stdout: read(&out_path),
        stderr: read(&err_path),
        elapsed,
    }
}

/// Reasons a user can act on; a bare parser message is not one of them.
const HUMAN_REASONS: &[&str] = &[
    "no such file",
    "is a directory",
    "file is empty",
    "neither PEM nor DER",
    "truncated",
    "expected ",
    "not UTF-8",
    "not a valid",
    "invalid",
    "unknown",
    "not a safe folder name",
    "malformed PEM",
    "larger than",
    "does not match",
    "no private key",
    "not a private key",
];

/// Every file and folder name under `dir`, recursively.
fn names_under(dir: &Path) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            out.insert(p.strip_prefix(dir).unwrap().display().to_string());
            if p.is_dir() && !p.is_symlink() {
                stack.push(p);
            }
        }
    }
    out
}

/// The problems with one failing case, empty when it behaved.
fn check_failure(r: &Run, input: &str, before: &BTreeSet<String>, t: &TestDir) -> Vec<String> {
    let mut bad = Vec::new();
    if r.code != Some(1) {
        bad.push(format!("exit {:?}, expected 1", r.code));
    }
    if r.stderr.contains("panicked") || r.stderr.contains("backtrace") {
        bad.push("panic or backtrace on stderr".into());
    }
    let errors: Vec<&str> = r
        .stderr
        .lines()
        .filter(|l| l.starts_with("error:"))
        .collect();
    let others = r
        .stderr
        .lines()
        .filter(|l| !l.starts_with("error:") && !l.starts_with("hint:"))
        .filter(|l| !l.starts_with("warning:") && !l.trim().is_empty())
        .count();
    if errors.len() != 1 || others != 0 {
        bad.push(format!(
            "expected exactly one error: line (+ hint), got {:?}",
            r.stderr
        ));
    } else {
        let line = errors[0];
        if !line.contains(input) {
            bad.push(format!("error line does not name {input}: {line}"));
        }
        let why = line.rsplit_once("): ").map(|(_, w)| w).unwrap_or(line);
        if !HUMAN_REASONS.iter().any(|h| why.contains(h)) {
            bad.push(format!("reason is not in plain words: {line}"));
        }
    }
    if !r.stdout.is_empty() {
        bad.push(format!("stdout not empty: {:?}", r.stdout));
    }
    let after = names_under(t.root());
    if &after != before {
        let added: Vec<_> = after.difference(before).collect();
        let removed: Vec<_> = before.difference(&after).collect();
        bad.push(format!(
            "files changed: added {added:?}, removed {removed:?}"
        ));
    }
    bad
}

#[test]
fn every_file_argument_survives_every_bad_input() {
    let t = TestDir::new();
    fixtures(&t);
    let mut failures = Vec::new();
    let (mut cases, mut fails, mut works) = (0usize, 0usize, 0usize);
    let mut slowest = (Duration::ZERO, String::new());
    let mut total = Duration::ZERO;
    for target in TARGETS {
        for variant in VARIANTS {
            let Some(expect) = expectation(target.kind, variant) else {
                continue;
            };
            cases += 1;
            let input = make_input(&t, target, variant, cases);
            let out_dir = format!("case-{cases}");
            std::fs::create_dir(t.path(&out_dir)).unwrap();
            let args: Vec<String> = target
                .args
                .iter()
                .map(|a| match *a {
                    "@" => input.clone(),
                    a => a.replace("OUT/", &format!("{out_dir}/")),
                })
                .collect();
            let before = names_under(t.root());
            let r = run(&t, &args, cases);
            total += r.elapsed;
            let label = format!("{} <- {variant:?} ({input})", target.name);
            if r.elapsed > slowest.0 {
                slowest = (r.elapsed, label.clone());
            }
            let problems = match expect {
                Expect::Fails => {
                    fails += 1;
                    check_failure(&r, &input, &before, &t)
                }
                Expect::Works => {
                    works += 1;
                    let mut p = Vec::new();
                    if r.code != Some(0) {
                        p.push(format!("expected success, exit {:?}: {}", r.code, r.stderr));
                    }
                    if target.args[0] == "verify" && r.stdout.trim() != "OK" {
                        p.push(format!("verify said {:?}", r.stdout));
                    }
                    if target.args[0] == "chain" {
                        let chain = t.read_str(&format!("{out_dir}/x.crt"));
                        if pem_blocks(&chain, "CERTIFICATE") != 2 {
                            p.push(format!("chain should hold leaf + CA once: {chain}"));
                        }
                    }
                    p
                }
            };
            if !problems.is_empty() {
                failures.push(format!(
                    "{label}: args {args:?}\n    {}",
                    problems.join("\n    ")
                ));
            }
            std::fs::remove_dir_all(t.path(&out_dir)).unwrap();
        }
    }
    println!(
        "bad-input matrix: {cases} cases over {} arguments ({fails} must fail, {works} must work); \
         total {:.2} s, mean {:.1} ms, slowest {:.0} ms ({})",
        TARGETS.len(),
        total.as_secs_f64(),
        total.as_secs_f64() * 1000.0 / cases as f64,
        slowest.0.as_secs_f64() * 1000.0,
        slowest.1
    );
    assert!(
        failures.is_empty(),
        "{} of {cases} cases misbehaved:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// Inputs over the 10 MiB cap are refused after reading at most cap + 1
/// bytes: a sparse 11 MiB file, an endless device and an endless stdin all
/// end quickly with the same error.
#[test]
fn inputs_over_the_cap_are_refused_without_reading_them_whole() {
    let t = TestDir::new();
    let f = std::fs::File::create(t.path("sparse.pem")).unwrap();
    f.set_len(11 * 1024 * 1024).unwrap();
    drop(f);
    let cases: [(&[&str], Stdio, &str); 3] = [
        (
            &["pkcs8", "sparse.pem", "-o", "x.key"],
            Stdio::null(),
            "sparse.pem",
        ),
        (
            &["pkcs8", "/dev/zero", "-o", "x.key"],
            Stdio::null(),
            "/dev/zero",
        ),
        (
            &["pkcs8", "-", "-o", "x.key"],
            Stdio::from(std::fs::File::open("/dev/zero").unwrap()),
            "<stdin>",
        ),
    ];
    for (args, stdin, label) in cases {
        let start = Instant::now();
        let mut child = Command::new(DEVCERT)
            .args(args)
            .current_dir(t.root())
            .stdin(stdin)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let status = child.wait_timeout(TIMEOUT).unwrap();
        if status.is_none() {
            let _ = child.kill();
        }
        let out = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        println!(
            "{args:?}: {:.0} ms: {}",
            start.elapsed().as_secs_f64() * 1000.0,
            stderr.trim()
        );
        assert!(
            status.is_some(),
            "{args:?} did not finish within {TIMEOUT:?}"
        );
        assert_eq!(out.status.code(), Some(1), "{args:?}: {stderr}");
        assert_eq!(
            stderr.trim(),
            format!("error: cannot read input ({label}): larger than 10 MiB")
        );
        t.assert_no_file("x.key");
    }
}
