//! Test harness for the devcert integration tests.
//!
//! Every test gets a fresh [`TestDir`]; commands (devcert, openssl, python3,
//! java) run with that directory as their working directory. Every output of
//! devcert is checked with tools this project did not write: OpenSSL 3, the
//! Python `cryptography` package (through `tests/py/x509info.py`) and the JDK
//! (through `tests/java/CheckKey.java`).
//!
//! Every devcert run is checked for Rust panic / backtrace text in stderr,
//! whatever the test expects otherwise.
#![allow(dead_code)]

pub mod broker;

use std::collections::{BTreeMap, HashMap};
use std::ffi::OsString;
use std::fs;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The binary under test, built by cargo for the integration tests.
pub const DEVCERT: &str = env!("CARGO_BIN_EXE_devcert");
/// Independent inspector (Python `cryptography` + a raw DER walker).
pub const X509INFO: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/py/x509info.py");
/// Independent JDK checker (PKCS8EncodedKeySpec + KeyStore + SSLContext).
pub const CHECK_KEY_JAVA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/java/CheckKey.java");

/// Per-command timeout: a hang (e.g. a passphrase prompt on a non-TTY) must
/// fail the test instead of blocking the suite.
const TIMEOUT: Duration = Duration::from_secs(120);

pub const DAY: i64 = 86_400;

// ---------------------------------------------------------------------------
// Seed files, verbatim from SEED.md
// ---------------------------------------------------------------------------

pub const SEED_CSR_CFG: &str = "[req]
default_bits = 2048
prompt = no
default_md = sha256
distinguished_name = dn
[dn]
C=CN
ST=ZJ
L=HZ
O=ALI
OU=MQTT
emailAddress=xxx@xxx
CN=client-test
";

pub const SEED_CRT_CFG: &str = "authorityKeyIdentifier=keyid,issuer
basicConstraints=CA:FALSE
keyUsage = digitalSignature, nonRepudiation, keyEncipherment, dataEncipherment, keyCertSign
";

/// Minimal OpenSSL config so fixture generation does not depend on the
/// system's openssl.cnf.
const MIN_CNF: &str = "[req]\ndistinguished_name = dn\n[dn]\n";

// OIDs used in assertions.
pub const OID_BC: &str = "2.5.29.19";
pub const OID_KU: &str = "2.5.29.15";
pub const OID_EKU: &str = "2.5.29.37";
pub const OID_SKI: &str = "2.5.29.14";
pub const OID_AKI: &str = "2.5.29.35";
pub const OID_SAN: &str = "2.5.29.17";
pub const OID_CLIENT_AUTH: &str = "1.3.6.1.5.5.7.3.2";

pub fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

// ---------------------------------------------------------------------------
// Command results
// ---------------------------------------------------------------------------

/// The result of one command run.
pub struct Out {
    pub cmdline: String,
    /// None when killed by a signal (e.g. the timeout).
    pub code: Option<i32>,
    pub stdout: Vec<u8>,
    pub stderr: String,
}

impl Out {
    pub fn stdout_str(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }

    /// stdout + stderr as text (OpenSSL prints some verdicts on stderr).
    pub fn text(&self) -> String {
        format!("{}{}", self.stdout_str(), self.stderr)
    }

    pub fn describe(&self) -> String {
        let mut stdout = self.stdout_str();
        if stdout.len() > 4000 {
            stdout.truncate(4000);
            stdout.push_str("...[truncated]");
        }
        format!(
            "command: {}\nexit code: {}\n--- stdout ---\n{}\n--- stderr ---\n{}\n--------------",
            self.cmdline,
            match self.code {
                Some(c) => c.to_string(),
                None => "none (killed by a signal / timed out)".into(),
            },
            stdout,
            self.stderr
        )
    }

    /// Expect exit 0.
    #[track_caller]
    pub fn ok(self) -> Self {
        assert_eq!(
            self.code,
            Some(0),
            "expected success (exit 0)\n{}",
            self.describe()
        );
        self
    }

    /// Expect exactly this exit code.
    #[track_caller]
    pub fn code(self, expected: i32) -> Self {
        assert_eq!(
            self.code,
            Some(expected),
            "expected exit code {expected}\n{}",
            self.describe()
        );
        self
    }

    /// Expect an operation failure: exit 1, nothing on stdout, and stderr in
    /// the contract's shape: `error: ...` on the first line (after any
    /// `warning:` lines), optionally followed by one hint line.
    ///
    /// Assumption (CLI.md: "a hint line may follow"): at most one more
    /// non-warning line after the `error:` line.
    #[track_caller]
    pub fn fails(self) -> Self {
        let out = self.code(1);
        assert!(
            out.stdout.is_empty(),
            "expected nothing on stdout on failure (stdout carries only the product)\n{}",
            out.describe()
        );
        out.assert_error_shape();
        out
    }

    #[track_caller]
    fn assert_error_shape(&self) {
        let lines: Vec<&str> = self
            .stderr
            .lines()
            .filter(|l| !l.trim().is_empty() && !l.starts_with("warning:"))
            .collect();
        assert!(
            !lines.is_empty() && lines[0].starts_with("error:"),
            "expected stderr to start with an `error:` line\n{}",
            self.describe()
        );
        assert!(
            lines.len() <= 2,
            "expected a one-line error (plus at most one hint line), got {} lines\n{}",
            lines.len(),
            self.describe()
        );
    }

    /// The `error:` line.
    pub fn error_line(&self) -> String {
        self.stderr
            .lines()
            .find(|l| l.starts_with("error:"))
            .unwrap_or("")
            .to_string()
    }

    /// Expect a failure whose `error:` line names every one of `needles`.
    #[track_caller]
    pub fn fails_naming(self, needles: &[&str]) -> Self {
        let out = self.fails();
        let line = out.error_line();
        for n in needles {
            assert!(
                line.contains(n),
                "expected the error line to name {n:?}\n{}",
                out.describe()
            );
        }
        out
    }

    /// Expect a usage error: exit 2 with clap's `error:` message.
    #[track_caller]
    pub fn usage_error(self) -> Self {
        let out = self.code(2);
        assert!(
            out.stderr.trim_start().starts_with("error:"),
            "expected clap's `error:` message on stderr\n{}",
            out.describe()
        );
        out
    }

    /// Expect `needle` (case-insensitive) somewhere in stderr.
    #[track_caller]
    pub fn stderr_has(self, needle: &str) -> Self {
        assert!(
            self.stderr.to_lowercase().contains(&needle.to_lowercase()),
            "expected stderr to contain {needle:?}\n{}",
            self.describe()
        );
        self
    }

    /// Expect a `warning:` line that mentions one of `needles` (case-insensitive).
    #[track_caller]
    pub fn warns_about(self, needles: &[&str]) -> Self {
        let found = self.stderr.lines().any(|l| {
            let l = l.to_lowercase();
            l.starts_with("warning:") && needles.iter().any(|n| l.contains(&n.to_lowercase()))
        });
        assert!(
            found,
            "expected a `warning:` line on stderr mentioning one of {needles:?}\n{}",
            self.describe()
        );
        self
    }

    /// Expect no `warning:` line at all.
    #[track_caller]
    pub fn no_warning(self) -> Self {
        assert!(
            !self.stderr.lines().any(|l| l.starts_with("warning:")),
            "expected no warning on stderr\n{}",
            self.describe()
        );
        self
    }
}

// ---------------------------------------------------------------------------
// Command builder
// ---------------------------------------------------------------------------

pub struct Cmd {
    program: OsString,
    args: Vec<OsString>,
    dir: PathBuf,
    env: Vec<(String, String)>,
    env_remove: Vec<String>,
    stdin: Vec<u8>,
    umask: Option<u32>,
    is_devcert: bool,
}

impl Cmd {
    pub fn new(dir: &Path, program: impl Into<OsString>) -> Self {
        Cmd {
            program: program.into(),
            args: vec![],
            dir: dir.to_path_buf(),
            env: vec![],
            env_remove: vec![],
            stdin: vec![],
            umask: None,
            is_devcert: false,
        }
    }

    pub fn arg(mut self, a: impl Into<OsString>) -> Self {
        self.args.push(a.into());
        self
    }

    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    pub fn env(mut self, k: &str, v: &str) -> Self {
        self.env.push((k.into(), v.into()));
        self
    }

    pub fn stdin(mut self, data: impl Into<Vec<u8>>) -> Self {
        self.stdin = data.into();
        self
    }

    /// Run under this umask (through `sh -c 'umask U; exec "$0" "$@"'`).
    pub fn umask(mut self, u: u32) -> Self {
        self.umask = Some(u);
        self
    }

    pub fn run(self) -> Out {
        let shown: Vec<String> = std::iter::once(&self.program)
            .chain(self.args.iter())
            .map(|a| shell_quote(&a.to_string_lossy()))
            .collect();
        let mut cmdline = shown.join(" ");
        let mut cmd = match self.umask {
            Some(u) => {
                cmdline = format!("(umask {u:03o}) {cmdline}");
                let mut c = assert_cmd::Command::new("sh");
                c.arg("-c")
                    .arg(format!("umask {u:03o}; exec \"$0\" \"$@\""))
                    .arg(&self.program)
                    .args(&self.args);
                c
            }
            None => {
                let mut c = assert_cmd::Command::new(&self.program);
                c.args(&self.args);
                c
            }
        };
        cmd.current_dir(&self.dir).timeout(TIMEOUT);
        for k in &self.env_remove {
            cmd.env_remove(k);
        }
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        // Always give a (possibly empty) non-TTY stdin: devcert must never prompt.
        cmd.write_stdin(self.stdin.clone());
        let output = cmd
            .output()
            .unwrap_or_else(|e| panic!("could not run `{cmdline}`: {e}"));
        let out = Out {
            cmdline,
            code: output.status.code(),
            stdout: output.stdout,
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        };
        if self.is_devcert {
            assert_no_panic(&out);
        }
        out
    }
}

/// A command running in the background (its output discarded), killed by
/// PID if still running when dropped.
pub struct Running(std::process::Child);

impl Running {
    /// Waits at most `d`; `None` if it is still running.
    pub fn wait_timeout(&mut self, d: Duration) -> Option<std::process::ExitStatus> {
        wait_timeout::ChildExt::wait_timeout(&mut self.0, d)
            .ok()
            .flatten()
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if matches!(self.0.try_wait(), Ok(None)) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

impl Cmd {
    /// Starts the command without waiting (no stdin; stdout and stderr
    /// discarded), e.g. a subscriber that must stay connected.
    pub fn spawn(self) -> Running {
        let child = std::process::Command::new(&self.program)
            .args(&self.args)
            .current_dir(&self.dir)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("could not start {:?}: {e}", self.program));
        Running(child)
    }
}

/// CLI.md: "Never a panic or a Rust backtrace." Checked on every devcert run.
#[track_caller]
pub fn assert_no_panic(out: &Out) {
    for bad in [
        "panicked at",
        "stack backtrace:",
        "Stack backtrace:",
        "RUST_BACKTRACE",
        "thread 'main'",
    ] {
        assert!(
            !out.stderr.contains(bad),
            "devcert printed Rust panic/backtrace text ({bad:?}) on stderr\n{}",
            out.describe()
        );
    }
    if let Some(code) = out.code {
        assert!(
            code != 101,
            "devcert exited 101 (Rust panic exit code)\n{}",
            out.describe()
        );
    }
}

fn shell_quote(s: &str) -> String {
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./:=,+@%".contains(c))
    {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}

// ---------------------------------------------------------------------------
// Facts from the independent Python inspector
// ---------------------------------------------------------------------------

/// `key=value` lines from `tests/py/x509info.py`.
pub struct Info {
    pub what: String,
    pub lines: Vec<(String, String)>,
}

impl Info {
    #[track_caller]
    pub fn get(&self, key: &str) -> String {
        self.lines
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.clone())
            .unwrap_or_else(|| {
                panic!(
                    "x509info: no `{key}` for {}; have:\n{}",
                    self.what,
                    self.dump()
                )
            })
    }

    pub fn opt(&self, key: &str) -> Option<String> {
        self.lines
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.clone())
    }

    pub fn all(&self, key: &str) -> Vec<String> {
        self.lines
            .iter()
            .filter(|(k, _)| k == key)
            .map(|(_, v)| v.clone())
            .collect()
    }

    pub fn int(&self, key: &str) -> i64 {
        self.get(key)
            .parse()
            .unwrap_or_else(|e| panic!("x509info: `{key}` is not an integer: {e}"))
    }

    /// Extension OIDs in certificate order.
    pub fn ext_oids(&self) -> Vec<String> {
        self.all("ext")
            .iter()
            .map(|e| e.split(',').next().unwrap().to_string())
            .collect()
    }

    pub fn dump(&self) -> String {
        self.lines
            .iter()
            .map(|(k, v)| format!("  {k}={v}"))
            .collect::<Vec<_>>()
            .join("\n")
    }
}

// ---------------------------------------------------------------------------
// Test directory
// ---------------------------------------------------------------------------

pub struct TestDir {
    tmp: tempfile::TempDir,
    /// x509info answers keyed by query + content of the files it read
    /// (python start-up is the slowest part of the suite).
    info_cache: Mutex<HashMap<u64, Vec<(String, String)>>>,
}

impl Default for TestDir {
    fn default() -> Self {
        Self::new()
    }
}

impl TestDir {
    pub fn new() -> Self {
        let tmp = tempfile::Builder::new()
            .prefix("devcert-test-")
            .tempdir()
            .expect("create temp dir");
        TestDir {
            tmp,
            info_cache: Mutex::new(HashMap::new()),
        }
    }

    pub fn root(&self) -> &Path {
        self.tmp.path()
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.tmp.path().join(name)
    }

    /// Path as a String (for command arguments).
    pub fn p(&self, name: &str) -> String {
        self.path(name).to_string_lossy().into_owned()
    }

    pub fn write(&self, name: &str, bytes: impl AsRef<[u8]>) -> PathBuf {
        let p = self.path(name);
        if let Some(parent) = p.parent() {
            fs::create_dir_all(parent).unwrap();
        }
        fs::write(&p, bytes).unwrap_or_else(|e| panic!("write {}: {e}", p.display()));
        p
    }

    #[track_caller]
    pub fn read(&self, name: &str) -> Vec<u8> {
        let p = self.path(name);
        fs::read(&p).unwrap_or_else(|e| panic!("expected file {name} to be readable: {e}"))
    }

    #[track_caller]
    pub fn read_str(&self, name: &str) -> String {
        String::from_utf8(self.read(name)).unwrap_or_else(|_| panic!("{name} is not UTF-8 text"))
    }

    pub fn exists(&self, name: &str) -> bool {
        self.path(name).exists()
    }

    #[track_caller]
    pub fn mode(&self, name: &str) -> u32 {
        let md =
            fs::metadata(self.path(name)).unwrap_or_else(|e| panic!("expected file {name}: {e}"));
        md.permissions().mode() & 0o7777
    }

    #[track_caller]
    pub fn assert_mode(&self, name: &str, expected: u32) {
        let got = self.mode(name);
        assert_eq!(
            got, expected,
            "file mode of {name}: expected {expected:04o}, got {got:04o}"
        );
    }

    #[track_caller]
    pub fn assert_no_file(&self, name: &str) {
        assert!(
            !self.path(name).exists(),
            "expected no file {name}, but it exists; directory now holds: {:?}",
            self.listing().keys().collect::<Vec<_>>()
        );
    }

    /// Every regular file under the directory (relative path → content), to
    /// check that a refused command changed nothing and left no temp file.
    pub fn listing(&self) -> BTreeMap<String, Vec<u8>> {
        fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, Vec<u8>>) {
            let Ok(rd) = fs::read_dir(dir) else { return };
            for e in rd.flatten() {
                let p = e.path();
                let rel = p.strip_prefix(root).unwrap().to_string_lossy().into_owned();
                if p.is_dir() {
                    out.insert(format!("{rel}/"), vec![]);
                    walk(root, &p, out);
                } else {
                    out.insert(rel, fs::read(&p).unwrap_or_default());
                }
            }
        }
        let mut m = BTreeMap::new();
        walk(self.root(), self.root(), &mut m);
        m
    }

    #[track_caller]
    pub fn assert_unchanged(&self, before: &BTreeMap<String, Vec<u8>>) {
        let after = self.listing();
        let names = |m: &BTreeMap<String, Vec<u8>>| m.keys().cloned().collect::<Vec<_>>();
        assert_eq!(
            names(before),
            names(&after),
            "the directory's file list changed (left-over or removed files)"
        );
        for (k, v) in before {
            assert!(after[k] == *v, "file {k} was modified");
        }
    }

    // ----- running commands ------------------------------------------------

    /// devcert with cwd = this directory and umask 022.
    pub fn devcert_cmd(&self) -> Cmd {
        // RUST_BACKTRACE=1 as in many developer shells: a panic or an error
        // printed with its backtrace (anyhow's `{:?}`) then shows up in stderr
        // and fails `assert_no_panic`.
        let mut c = Cmd::new(self.root(), DEVCERT)
            .umask(0o022)
            .env("RUST_BACKTRACE", "1");
        c.is_devcert = true;
        c
    }

    pub fn devcert(&self, args: &[&str]) -> Out {
        self.devcert_cmd().args(args).run()
    }

    pub fn openssl(&self, args: &[&str]) -> Out {
        Cmd::new(self.root(), "openssl").args(args).run()
    }

    /// openssl that must succeed; returns stdout+stderr text.
    #[track_caller]
    pub fn openssl_ok(&self, args: &[&str]) -> String {
        let out = self.openssl(args);
        assert_eq!(
            out.code,
            Some(0),
            "openssl (test tool) failed\n{}",
            out.describe()
        );
        out.text()
    }

    /// `openssl verify` must say OK for `file`.
    #[track_caller]
    pub fn assert_openssl_verify(&self, extra: &[&str], file: &str) {
        let mut args = vec!["verify"];
        args.extend_from_slice(extra);
        args.push(file);
        let out = self.openssl(&args);
        assert!(
            out.code == Some(0) && out.stdout_str().contains(": OK"),
            "expected `openssl verify` to accept {file}\n{}",
            out.describe()
        );
    }

    /// Cache key: the query plus the current content of every file it names.
    fn info_key(&self, cmd: &str, args: &[&str]) -> u64 {
        let mut h = DefaultHasher::new();
        cmd.hash(&mut h);
        for a in args {
            a.hash(&mut h);
            fs::read(self.path(a)).ok().hash(&mut h);
        }
        h.finish()
    }

    /// Facts from the independent Python inspector (cached per file content).
    #[track_caller]
    pub fn info(&self, cmd: &str, args: &[&str]) -> Info {
        let what = format!("{cmd} {args:?}");
        let key = self.info_key(cmd, args);
        if let Some(lines) = self.info_cache.lock().unwrap().get(&key) {
            return Info {
                what,
                lines: lines.clone(),
            };
        }
        let out = Cmd::new(self.root(), "python3")
            .arg(X509INFO)
            .arg(cmd)
            .args(args)
            .run();
        assert_eq!(
            out.code,
            Some(0),
            "python cryptography could not read {args:?} as `{cmd}`\n{}",
            out.describe()
        );
        let lines: Vec<(String, String)> = out
            .stdout_str()
            .lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        self.info_cache.lock().unwrap().insert(key, lines.clone());
        Info { what, lines }
    }

    /// Ask several x509info questions in one python process and cache the
    /// answers; later `info`/`cert`/`csr`/`key` calls are then free. Queries
    /// that fail are not cached (the later call reports the failure).
    pub fn prefetch(&self, queries: &[(&str, &[&str])]) {
        let todo: Vec<&(&str, &[&str])> = queries
            .iter()
            .filter(|(c, a)| {
                !self
                    .info_cache
                    .lock()
                    .unwrap()
                    .contains_key(&self.info_key(c, a))
            })
            .collect();
        if todo.is_empty() {
            return;
        }
        let mut cmd = Cmd::new(self.root(), "python3").arg(X509INFO).arg("multi");
        for (c, a) in &todo {
            cmd = cmd.arg(*c).args(a.iter().copied()).arg("--");
        }
        let out = cmd.run();
        if out.code != Some(0) {
            return;
        }
        let text = out.stdout_str();
        let mut sections: Vec<Vec<(String, String)>> = vec![];
        let mut failed: Vec<bool> = vec![];
        for l in text.lines() {
            if let Some(rest) = l.strip_prefix('#') {
                if rest.contains("!error=") {
                    if let Some(f) = failed.last_mut() {
                        *f = true;
                    }
                } else {
                    sections.push(vec![]);
                    failed.push(false);
                }
            } else if let (Some(sec), Some((k, v))) = (sections.last_mut(), l.split_once('=')) {
                sec.push((k.to_string(), v.to_string()));
            }
        }
        for (i, (c, a)) in todo.iter().enumerate() {
            if let (Some(lines), Some(false)) = (sections.get(i), failed.get(i)) {
                let key = self.info_key(c, a);
                self.info_cache.lock().unwrap().insert(key, lines.clone());
            }
        }
    }

    pub fn cert(&self, file: &str) -> Info {
        self.info("cert", &[file])
    }
    pub fn certs(&self, file: &str) -> Info {
        self.info("certs", &[file])
    }
    pub fn csr(&self, file: &str) -> Info {
        self.info("csr", &[file])
    }
    pub fn key(&self, file: &str) -> Info {
        self.info("key", &[file])
    }

    /// Python cryptography: is `leaf` signed by `issuer`'s key (and names chain)?
    #[track_caller]
    pub fn assert_issued_by(&self, leaf: &str, issuer: &str) {
        let i = self.info("issued", &[leaf, issuer]);
        assert_eq!(
            i.get("issued"),
            "1",
            "expected {leaf} to be issued by {issuer}: {}",
            i.opt("reason").unwrap_or_default()
        );
    }

    /// The private key in `key` belongs to the public key of `cert_or_csr`
    /// (SubjectPublicKeyInfo equality).
    #[track_caller]
    pub fn assert_key_matches(&self, key: &str, cert_or_csr_spki: &str) {
        let k = self.key(key);
        assert_eq!(
            k.get("spki_der"),
            cert_or_csr_spki,
            "public key of {key} does not match"
        );
    }

    /// `openssl pkey -noout -text` of a key file (the canonical private-key dump).
    #[track_caller]
    pub fn pkey_text(&self, key: &str, extra: &[&str]) -> String {
        let mut args = vec!["pkey", "-in", key, "-noout", "-text"];
        args.extend_from_slice(extra);
        self.openssl_ok(&args)
    }

    /// `tests/java/CheckKey.java` on a PKCS#8 key + chain (None when
    /// javac/java are absent).
    pub fn java_check(&self, key: &str, chain: &str) -> Option<Out> {
        self.java("CheckKey", &[key, chain])
    }

    /// Runs a checker class from `tests/java/`; None (after a notice) when
    /// javac/java are absent.
    pub fn java(&self, class: &str, args: &[&str]) -> Option<Out> {
        if which("javac").is_none() || which("java").is_none() {
            eprintln!("NOTICE: javac/java not found; skipping the JDK check");
            return None;
        }
        let classes = java_classes();
        Some(
            Cmd::new(self.root(), "java")
                .args([
                    "-XX:TieredStopAtLevel=1",
                    "-cp",
                    classes.to_str().unwrap(),
                    class,
                ])
                .args(args)
                .run(),
        )
    }

    #[track_caller]
    pub fn assert_java_accepts(&self, key: &str, chain: &str) {
        if let Some(out) = self.java_check(key, chain) {
            assert!(
                out.code == Some(0) && out.stdout_str().starts_with("OK"),
                "expected the JDK (PKCS8EncodedKeySpec/KeyStore/SSLContext) to accept {key} + {chain}\n{}",
                out.describe()
            );
        }
    }

    // ----- fixtures made with openssl -------------------------------------

    pub fn min_cnf(&self) -> String {
        if !self.exists("fixture-min.cnf") {
            self.write("fixture-min.cnf", MIN_CNF);
        }
        self.p("fixture-min.cnf")
    }

    /// Self-signed CA via `openssl req -x509` → `{name}.crt`, `{name}.key`.
    /// `newkey` like `["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"]`.
    pub fn openssl_ca_with(
        &self,
        name: &str,
        cnf: &str,
        newkey: &[&str],
        subj: &str,
        extra: &[&str],
    ) {
        let crt = format!("{name}.crt");
        let key = format!("{name}.key");
        let mut args = vec!["req", "-x509", "-config", cnf];
        args.extend_from_slice(newkey);
        args.extend_from_slice(&[
            "-nodes",
            "-keyout",
            &key,
            "-out",
            &crt,
            "-subj",
            subj,
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
        ]);
        if !extra.contains(&"-days") {
            args.extend_from_slice(&["-days", "3650"]);
        }
        args.extend_from_slice(extra);
        self.openssl_ok(&args);
    }

    /// EC P-256 root CA: `{name}.crt`, `{name}.key`.
    pub fn ec_ca(&self, name: &str) {
        let cnf = self.min_cnf();
        self.openssl_ca_with(
            name,
            &cnf,
            &EC_P256,
            &format!("/C=CN/O=Test Org/CN=Test EC Root CA {name}"),
            &[],
        );
    }

    /// RSA-2048 root CA: `{name}.crt`, `{name}.key`.
    pub fn rsa_ca(&self, name: &str) {
        let cnf = self.min_cnf();
        self.openssl_ca_with(
            name,
            &cnf,
            &["-newkey", "rsa:2048"],
            &format!("/C=CN/O=Test Org/CN=Test RSA Root CA {name}"),
            &[],
        );
    }

    /// CA whose subject uses PrintableString (`string_mask = default`, no -utf8).
    pub fn printable_ca(&self, name: &str) {
        self.write(
            "fixture-printable.cnf",
            "[req]\ndistinguished_name = dn\nstring_mask = default\n[dn]\n",
        );
        let cnf = self.p("fixture-printable.cnf");
        self.openssl_ca_with(
            name,
            &cnf,
            &EC_P256,
            "/C=DE/O=Acme Printable/OU=Devices/CN=Printable Root CA",
            &[],
        );
        // Make sure the fixture really is what it claims.
        let dump = self.openssl_ok(&["asn1parse", "-in", &format!("{name}.crt")]);
        assert!(
            dump.contains("PRINTABLESTRING   :Printable Root CA") && !dump.contains("UTF8STRING"),
            "fixture: expected a PrintableString-only CA subject:\n{dump}"
        );
    }

    /// CA with a repeated OU and a multi-valued RDN.
    pub fn multivalue_ca(&self, name: &str) {
        let cnf = self.min_cnf();
        self.openssl_ca_with(
            name,
            &cnf,
            &EC_P256,
            "/O=A/OU=X/OU=Y/CN=a+UID=b",
            &["-multivalue-rdn"],
        );
    }

    /// CA with a custom (non-SHA-1) subject key identifier 0102030405060708.
    pub fn custom_ski_ca(&self, name: &str) {
        let cnf = self.min_cnf();
        self.openssl_ca_with(
            name,
            &cnf,
            &EC_P256,
            "/CN=Custom SKI CA",
            &["-addext", "subjectKeyIdentifier=0102030405060708"],
        );
    }

    /// A CA valid now, expiring after `days` days.
    pub fn short_ca(&self, name: &str, days: u32) {
        let cnf = self.min_cnf();
        let d = days.to_string();
        self.openssl_ca_with(name, &cnf, &EC_P256, "/CN=Short Lived CA", &["-days", &d]);
    }

    /// A CA that expired on 2021-01-01 (made with `openssl ca -selfsign
    /// -startdate -enddate`, no faketime).
    pub fn expired_ca(&self, name: &str) {
        let d = format!("fixture-expired-{name}");
        fs::create_dir_all(self.path(&d)).unwrap();
        self.write(&format!("{d}/index.txt"), "");
        self.write(&format!("{d}/serial"), "01\n");
        self.write(
            &format!("{d}/ca.cnf"),
            format!(
                "[ca]\ndefault_ca = CA_default\n[CA_default]\ndir = {dir}\ndatabase = {dir}/index.txt\n\
                 new_certs_dir = {dir}\nserial = {dir}/serial\ndefault_md = sha256\npolicy = policy_any\n\
                 unique_subject = no\nx509_extensions = v3_ca\n[policy_any]\ncommonName = supplied\n\
                 [v3_ca]\nbasicConstraints = critical,CA:TRUE\nkeyUsage = critical,keyCertSign,cRLSign\n\
                 subjectKeyIdentifier = hash\n[req]\ndistinguished_name = dn\n[dn]\n",
                dir = self.p(&d)
            ),
        );
        let cnf = format!("{d}/ca.cnf");
        let key = format!("{name}.key");
        let csr = format!("{d}/ca.csr");
        let mut args = vec!["req", "-new", "-config", &cnf];
        args.extend_from_slice(&EC_P256);
        args.extend_from_slice(&[
            "-nodes",
            "-keyout",
            &key,
            "-out",
            &csr,
            "-subj",
            "/CN=Expired CA",
        ]);
        self.openssl_ok(&args);
        self.openssl_ok(&[
            "ca",
            "-batch",
            "-config",
            &cnf,
            "-selfsign",
            "-keyfile",
            &key,
            "-in",
            &csr,
            "-out",
            &format!("{name}.crt"),
            "-startdate",
            "20200101000000Z",
            "-enddate",
            "20210101000000Z",
            "-notext",
        ]);
    }

    /// A self-signed end-entity certificate (basicConstraints critical CA:FALSE)
    /// with its key: `{name}.crt`, `{name}.key`.
    pub fn non_ca(&self, name: &str) {
        let cnf = self.min_cnf();
        let key = format!("{name}.key");
        let crt = format!("{name}.crt");
        let mut args = vec!["req", "-x509", "-config", &cnf];
        args.extend_from_slice(&EC_P256);
        args.extend_from_slice(&[
            "-nodes",
            "-keyout",
            &key,
            "-out",
            &crt,
            "-days",
            "365",
            "-subj",
            "/CN=Not A CA",
            "-addext",
            "basicConstraints=critical,CA:FALSE",
            "-addext",
            "keyUsage=critical,digitalSignature",
        ]);
        self.openssl_ok(&args);
    }

    /// A v1 self-signed certificate (no extensions at all, so no
    /// basicConstraints CA:TRUE) with its key.
    pub fn v1_cert(&self, name: &str) {
        let key = format!("{name}.key");
        let csr = format!("{name}.csr.tmp");
        self.ec_key(&key);
        self.openssl_csr(&key, "/CN=V1 Self Signed", &csr);
        self.openssl_ok(&[
            "x509",
            "-req",
            "-in",
            &csr,
            "-signkey",
            &key,
            "-days",
            "365",
            "-out",
            &format!("{name}.crt"),
        ]);
    }

    /// `openssl ecparam -name prime256v1 -genkey`: EC PARAMETERS + EC PRIVATE KEY.
    pub fn ec_key(&self, name: &str) {
        self.openssl_ok(&["ecparam", "-name", "prime256v1", "-genkey", "-out", name]);
    }

    /// RSA-2048 key, PKCS#8 (`BEGIN PRIVATE KEY`).
    pub fn rsa_key(&self, name: &str) {
        self.openssl_ok(&[
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:2048",
            "-out",
            name,
        ]);
    }

    /// `openssl req -new` with a -subj.
    pub fn openssl_csr(&self, key: &str, subj: &str, out: &str) {
        let cnf = self.min_cnf();
        self.openssl_ok(&[
            "req", "-new", "-config", &cnf, "-key", key, "-subj", subj, "-out", out,
        ]);
    }

    /// A fresh EC key `{name}.key` and a CSR `{name}.csr` made by openssl.
    pub fn ec_csr(&self, name: &str) {
        let key = format!("{name}.key");
        self.ec_key(&key);
        self.openssl_csr(
            &key,
            &format!("/C=CN/O=ALI/CN={name}"),
            &format!("{name}.csr"),
        );
    }

    /// A fresh RSA key `{name}.key` and a CSR `{name}.csr` made by openssl.
    pub fn rsa_csr(&self, name: &str) {
        let key = format!("{name}.key");
        self.rsa_key(&key);
        self.openssl_csr(
            &key,
            &format!("/C=CN/O=ALI/CN={name}"),
            &format!("{name}.csr"),
        );
    }

    /// A valid CSR whose signature was damaged (last byte flipped):
    /// `{name}.der` (DER) and `{name}.csr` (PEM of the same bytes).
    pub fn tampered_csr(&self, name: &str) {
        let key = format!("{name}.key");
        self.ec_key(&key);
        let cnf = self.min_cnf();
        let good = format!("{name}.good.der");
        self.openssl_ok(&[
            "req",
            "-new",
            "-config",
            &cnf,
            "-key",
            &key,
            "-subj",
            "/CN=tampered",
            "-outform",
            "DER",
            "-out",
            &good,
        ]);
        let mut der = self.read(&good);
        let n = der.len();
        der[n - 1] ^= 0x01;
        let bad = format!("{name}.der");
        self.write(&bad, &der);
        self.openssl_ok(&[
            "req",
            "-inform",
            "DER",
            "-in",
            &bad,
            "-outform",
            "PEM",
            "-out",
            &format!("{name}.csr"),
        ]);
        // Make sure the fixture really is broken (and still parseable).
        let i = self.csr(&bad);
        assert_eq!(
            i.get("sig_valid"),
            "0",
            "fixture: tampered CSR still verifies"
        );
    }

    /// The seed's `client.csr.cfg` and `client.crt.cfg`, verbatim.
    pub fn seed_configs(&self) {
        self.write("client.csr.cfg", SEED_CSR_CFG);
        self.write("client.crt.cfg", SEED_CRT_CFG);
    }

    /// Sign `csr` with CA `ca` using openssl (reference output / chain fixtures).
    pub fn openssl_sign(&self, csr: &str, ca: &str, out: &str, extfile: Option<&str>) {
        let crt = format!("{ca}.crt");
        let key = format!("{ca}.key");
        let mut args = vec![
            "x509",
            "-req",
            "-in",
            csr,
            "-CA",
            &crt,
            "-CAkey",
            &key,
            "-set_serial",
            "1",
            "-days",
            "365",
            "-sha256",
            "-out",
            out,
        ];
        if let Some(e) = extfile {
            args.extend_from_slice(&["-extfile", e]);
        }
        self.openssl_ok(&args);
    }

    /// An intermediate CA `{name}` signed by CA `parent` (with openssl).
    pub fn openssl_intermediate(&self, name: &str, parent: &str) {
        let key = format!("{name}.key");
        let csr = format!("{name}.csr");
        self.ec_key(&key);
        self.openssl_csr(&key, &format!("/CN=Test Intermediate CA {name}"), &csr);
        let ext = format!("{name}.ext");
        self.write(
            &ext,
            "basicConstraints=critical,CA:TRUE\nkeyUsage=critical,keyCertSign,cRLSign\n\
             authorityKeyIdentifier=keyid\nsubjectKeyIdentifier=hash\n",
        );
        self.openssl_sign(&csr, parent, &format!("{name}.crt"), Some(&ext));
    }

    /// A leaf `{name}.crt` (+ key, csr) signed by CA `ca` with openssl.
    pub fn openssl_leaf(&self, name: &str, ca: &str) {
        self.ec_csr(name);
        let ext = format!("{name}.ext");
        self.write(
            &ext,
            "basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\n\
             extendedKeyUsage=clientAuth\nauthorityKeyIdentifier=keyid\n",
        );
        self.openssl_sign(
            &format!("{name}.csr"),
            ca,
            &format!("{name}.crt"),
            Some(&ext),
        );
    }

    /// DER of the first certificate of a PEM file (via openssl).
    pub fn cert_der(&self, file: &str) -> Vec<u8> {
        let out = self.openssl(&["x509", "-in", file, "-outform", "DER"]);
        assert_eq!(out.code, Some(0), "openssl x509\n{}", out.describe());
        out.stdout
    }
}

/// Directory holding the compiled CheckKey class, compiled at most once per
/// source version (content-addressed, atomic rename, safe across the test
/// threads and processes of one `cargo test`).
/// Every checker in `tests/java/`, compiled together once per source
/// version into cargo's target tmp dir.
fn java_classes() -> PathBuf {
    static DIR: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    DIR.get_or_init(|| {
        let java_dir = Path::new(CHECK_KEY_JAVA).parent().unwrap();
        let mut sources: Vec<PathBuf> = fs::read_dir(java_dir)
            .expect("read tests/java")
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|x| x == "java"))
            .collect();
        sources.sort();
        let mut h = DefaultHasher::new();
        for src in &sources {
            fs::read(src)
                .expect("read a tests/java source")
                .hash(&mut h);
        }
        let base = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
        let dir = base.join(format!("javacheck-{:016x}", h.finish()));
        if dir.is_dir() {
            return dir;
        }
        let tmp = base.join(format!(
            "javacheck-tmp-{}-{}",
            std::process::id(),
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap()
                .as_nanos()
        ));
        fs::create_dir_all(&tmp).unwrap();
        let out = Cmd::new(&base, "javac")
            .args(["-d", tmp.to_str().unwrap()])
            .args(&sources)
            .run();
        assert_eq!(
            out.code,
            Some(0),
            "javac tests/java/*.java failed\n{}",
            out.describe()
        );
        if fs::rename(&tmp, &dir).is_err() {
            // Another process won the race; use its copy.
            let _ = fs::remove_dir_all(&tmp);
        }
        dir
    })
    .clone()
}

pub const EC_P256: [&str; 4] = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"];

pub fn which(prog: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join(prog))
            .find(|p| p.is_file())
    })
}

/// [`which`], else Debian's `/usr/sbin` (daemons such as mosquitto and
/// pgbouncer, not on a non-root PATH).
pub fn which_or_sbin(prog: &str) -> Option<PathBuf> {
    which(prog).or_else(|| {
        let p = Path::new("/usr/sbin").join(prog);
        p.is_file().then_some(p)
    })
}

/// `found`, or, when a tool is missing: a failure in CI (where .ci/run
/// installs `packages`), a printed `SKIPPED:` line elsewhere.
pub fn required<T>(found: Option<T>, what: &str, packages: &str) -> Option<T> {
    if found.is_none() {
        assert!(
            std::env::var_os("CI").is_none(),
            "{what} is required in CI (.ci/run installs {packages})"
        );
        println!("SKIPPED: {what} not installed (apt-get install {packages})");
    }
    found
}

/// Count PEM blocks with this label (e.g. "CERTIFICATE").
pub fn pem_blocks(text: &str, label: &str) -> usize {
    text.matches(&format!("-----BEGIN {label}-----")).count()
}

/// The first PEM label in a text, e.g. "PRIVATE KEY".
pub fn first_pem_label(text: &str) -> Option<String> {
    let start = text.find("-----BEGIN ")? + "-----BEGIN ".len();
    let end = text[start..].find("-----")?;
    Some(text[start..start + end].to_string())
}

// ---------------------------------------------------------------------------
// CA database (`openssl ca`): dated certificates, revocation, CRLs
// ---------------------------------------------------------------------------

/// A CA with an `openssl ca` database: signs with chosen dates, revokes,
/// issues CRLs.
pub struct CaDb<'a> {
    t: &'a TestDir,
    ca: String,
    dir: String,
}

impl<'a> CaDb<'a> {
    /// `crl_ext`: the CRL extension section's lines (none if empty).
    pub fn new(t: &'a TestDir, ca: &str, crl_ext: &str) -> Self {
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let dir = format!(
            "db-{ca}-{}",
            N.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        );
        fs::create_dir_all(t.path(&dir)).unwrap();
        t.write(&format!("{dir}/index.txt"), "");
        t.write(&format!("{dir}/serial"), "1000\n");
        t.write(&format!("{dir}/crlnumber"), "01\n");
        let d = t.p(&dir);
        let (crl_line, crl_section) = if crl_ext.is_empty() {
            (String::new(), String::new())
        } else {
            (
                "crl_extensions = crl_ext\n".into(),
                format!("[crl_ext]\n{crl_ext}"),
            )
        };
        t.write(
            &format!("{dir}/ca.cnf"),
            format!(
                "[ca]\ndefault_ca = X\n[X]\ndatabase = {d}/index.txt\nserial = {d}/serial\n\
                 crlnumber = {d}/crlnumber\nnew_certs_dir = {d}\ndefault_md = sha256\n\
                 default_crl_days = 30\npolicy = any\nunique_subject = no\n{crl_line}\
                 [any]\ncommonName = supplied\n{crl_section}"
            ),
        );
        CaDb {
            t,
            ca: ca.into(),
            dir,
        }
    }

    fn ca_args(&self) -> Vec<String> {
        vec![
            "ca".into(),
            "-batch".into(),
            "-config".into(),
            format!("{}/ca.cnf", self.dir),
            "-cert".into(),
            format!("{}.crt", self.ca),
            "-keyfile".into(),
            format!("{}.key", self.ca),
        ]
    }

    pub fn run(&self, extra: &[&str]) {
        let mut args = self.ca_args();
        args.extend(extra.iter().map(|s| s.to_string()));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        self.t.openssl_ok(&args);
    }

    /// A fresh EC leaf `{name}.crt` valid from `start` to `end`
    /// (YYYYMMDDHHMMSSZ) with the extensions in `ext`.
    pub fn leaf_dated(&self, name: &str, ext: &str, start: &str, end: &str) {
        self.t.ec_csr(name);
        let extfile = format!("{name}.ext");
        self.t.write(&extfile, ext);
        self.run(&[
            "-in",
            &format!("{name}.csr"),
            "-out",
            &format!("{name}.crt"),
            "-extfile",
            &extfile,
            "-startdate",
            start,
            "-enddate",
            end,
            "-notext",
        ]);
    }

    pub fn revoke(&self, crt: &str) {
        self.run(&["-revoke", crt]);
    }

    /// A PEM CRL of everything revoked so far; `extra` e.g. sets its dates.
    pub fn crl(&self, out: &str, extra: &[&str]) {
        let mut args = vec!["-gencrl", "-out", out];
        args.extend_from_slice(extra);
        self.run(&args);
    }
}

pub const AKI: &str = "authorityKeyIdentifier = keyid\n";
pub const LEAF_EXT: &str = "basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\n\
                        extendedKeyUsage=clientAuth\nauthorityKeyIdentifier=keyid\n";

// ---------------------------------------------------------------------------
// A SoftHSM2 token (tests/pkcs11.rs, the broker test of a token-signed device)
// ---------------------------------------------------------------------------

pub const SOFTHSM_MODULE: &str = "/usr/lib/softhsm/libsofthsm2.so";
pub const TOKEN_LABEL: &str = "devcert-test";
pub const TOKEN_PIN: &str = "731946";
pub const TOKEN_SO_PIN: &str = "24680135";

/// A SoftHSM2 token whose files live in the test's folder.
pub struct Token<'a> {
    pub t: &'a TestDir,
    pub conf: String,
}

/// A fresh token, or None (the test is skipped, saying so) outside CI
/// when SoftHSM2 or pkcs11-tool is not installed.
pub fn token(t: &TestDir) -> Option<Token<'_>> {
    let missing: Vec<&str> = [
        (!Path::new(SOFTHSM_MODULE).exists()).then_some(SOFTHSM_MODULE),
        which("softhsm2-util").is_none().then_some("softhsm2-util"),
        which("pkcs11-tool").is_none().then_some("pkcs11-tool"),
    ]
    .into_iter()
    .flatten()
    .collect();
    required(
        missing.is_empty().then_some(()),
        &format!("{missing:?}"),
        "softhsm2 opensc",
    )?;
    std::fs::create_dir_all(t.path("tokens")).unwrap();
    let conf = t
        .write(
            "softhsm2.conf",
            format!(
                "directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\n",
                t.p("tokens")
            ),
        )
        .display()
        .to_string();
    t.write("pin.txt", format!("{TOKEN_PIN}\n"));
    let tok = Token { t, conf };
    let init = tok.tool(
        "softhsm2-util",
        &[
            "--init-token",
            "--free",
            "--label",
            TOKEN_LABEL,
            "--pin",
            TOKEN_PIN,
            "--so-pin",
            TOKEN_SO_PIN,
        ],
    );
    assert_eq!(
        init.code,
        Some(0),
        "softhsm2-util --init-token\n{}",
        init.describe()
    );
    Some(tok)
}

impl Token<'_> {
    /// `pkcs11:` URI of `object`, the PIN read from pin.txt.
    pub fn uri(&self, object: &str) -> String {
        format!(
            "pkcs11:token={TOKEN_LABEL};object={object}?pin-source=file:{}",
            self.t.p("pin.txt")
        )
    }

    pub fn devcert_cmd(&self) -> Cmd {
        self.t
            .devcert_cmd()
            .env("SOFTHSM2_CONF", &self.conf)
            .env("DEVCERT_PKCS11_MODULE", SOFTHSM_MODULE)
    }

    pub fn devcert(&self, args: &[&str]) -> Out {
        self.devcert_cmd().args(args).run()
    }

    pub fn tool(&self, program: &str, args: &[&str]) -> Out {
        Cmd::new(self.t.root(), program)
            .env("SOFTHSM2_CONF", &self.conf)
            .args(args)
            .run()
    }

    #[track_caller]
    pub fn tool_ok(&self, program: &str, args: &[&str]) -> String {
        let out = self.tool(program, args);
        assert_eq!(out.code, Some(0), "{program} failed\n{}", out.describe());
        out.text()
    }

    /// `pkcs11-tool`, logged in.
    pub fn p11tool(&self, args: &[&str]) -> Out {
        let mut all = vec!["--module", SOFTHSM_MODULE, "--login", "--pin", TOKEN_PIN];
        all.extend_from_slice(args);
        self.tool("pkcs11-tool", &all)
    }

    /// Every object of the token, as `pkcs11-tool -O` lists them.
    pub fn objects(&self) -> String {
        let out = self.p11tool(&["-O"]);
        assert_eq!(out.code, Some(0), "pkcs11-tool -O\n{}", out.describe());
        out.stdout_str()
    }

    /// Imports a PKCS#8 key file (private and public objects).
    pub fn import(&self, key: &str, label: &str, id: &str) {
        self.tool_ok(
            "softhsm2-util",
            &[
                "--import",
                key,
                "--token",
                TOKEN_LABEL,
                "--label",
                label,
                "--id",
                id,
                "--pin",
                TOKEN_PIN,
            ],
        );
    }
}

pub mod pg;
