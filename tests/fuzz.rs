//! Property-based fuzzing (issue 6, item 5): the OpenSSL-config parser, the
//! profile parser (and the extensions it builds), the private-key loader and
//! the certificate / CSR / CRL loaders get random bytes and mutated valid
//! inputs (seeds in tests/corpus/seeds/). The property: Ok or Err, never a
//! panic, never a hang.
//!
//! `cargo test` runs a small bounded number of cases per target (set
//! PROPTEST_CASES to change it). `FUZZ_SECONDS=60 cargo test --release
//! --test fuzz -- --nocapture --test-threads 1` (what bench/fuzz.sh runs)
//! keeps each target going for that long and prints its execution count.
//! A failing input is shrunk and saved under the target dir; once fixed it
//! belongs in tests/corpus/crashes/, which `corpus_replays_cleanly` feeds
//! to every target.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use der::referenced::OwnedToRef;
use devcert::csr::ReqConfig;
use devcert::input::{Input, load_certificates, load_csr};
use devcert::keys::{Curve, KeyAlgo, PrivateKey};
use devcert::name::{common_name, to_rfc4514};
use devcert::openssl_conf::Config;
use devcert::passphrase::PassphraseSource;
use devcert::profile::{ExtContext, ExtensionProfile};
use proptest::prelude::*;
use proptest::test_runner::{Config as RunnerConfig, TestCaseError, TestError, TestRunner};

const SEEDS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/corpus/seeds");
const CRASHES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/corpus/crashes");

fn seed(name: &str) -> Vec<u8> {
    std::fs::read(Path::new(SEEDS).join(name)).unwrap()
}

/// One edit of a seed.
#[derive(Debug, Clone)]
enum Edit {
    Set(usize, u8),
    Insert(usize, Vec<u8>),
    Delete(usize, usize),
    Truncate(usize),
    /// Copy a slice of the input to another place (repeated structure).
    Splice(usize, usize, usize),
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        4 => (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Edit::Set(i, b)),
        2 => (any::<usize>(), proptest::collection::vec(any::<u8>(), 1..8))
            .prop_map(|(i, v)| Edit::Insert(i, v)),
        2 => (any::<usize>(), 1usize..16).prop_map(|(i, n)| Edit::Delete(i, n)),
        1 => any::<usize>().prop_map(Edit::Truncate),
        1 => (any::<usize>(), 1usize..64, any::<usize>()).prop_map(|(a, n, b)| Edit::Splice(a, n, b)),
    ]
}

fn apply(mut data: Vec<u8>, edits: &[Edit]) -> Vec<u8> {
    for e in edits {
        let len = data.len().max(1);
        match e {
            Edit::Set(i, b) if !data.is_empty() => data[i % len] = *b,
            Edit::Insert(i, v) => {
                let at = i % (data.len() + 1);
                data.splice(at..at, v.iter().copied());
            }
            Edit::Delete(i, n) if !data.is_empty() => {
                let at = i % len;
                let end = (at + n).min(data.len());
                data.drain(at..end);
            }
            Edit::Truncate(i) => data.truncate(i % (data.len() + 1)),
            Edit::Splice(a, n, b) if !data.is_empty() => {
                let from = a % len;
                let chunk: Vec<u8> = data[from..(from + n).min(data.len())].to_vec();
                let at = b % (data.len() + 1);
                data.splice(at..at, chunk);
            }
            _ => {}
        }
    }
    data
}

/// Random bytes, or one of `seeds` with a few edits, optionally wrapped as
/// PEM under `tag` (so the DER inside a PEM block gets mutated too).
fn input(seeds: &'static [&'static str], tag: &'static str) -> BoxedStrategy<Vec<u8>> {
    let mutated = (
        proptest::sample::select(seeds),
        proptest::collection::vec(edit(), 1..6),
        any::<bool>(),
    )
        .prop_map(move |(name, edits, wrap)| {
            let der = apply(seed(name), &edits);
            if wrap && !tag.is_empty() {
                pem::encode(&pem::Pem::new(tag, der)).into_bytes()
            } else {
                der
            }
        });
    prop_oneof![
        1 => proptest::collection::vec(any::<u8>(), 0..512),
        4 => mutated,
    ]
    .boxed()
}

// ---------------------------------------------------------------------------
// The targets: each must return normally for any input.
// ---------------------------------------------------------------------------

fn spki() -> &'static spki::SubjectPublicKeyInfoOwned {
    static SPKI: OnceLock<spki::SubjectPublicKeyInfoOwned> = OnceLock::new();
    SPKI.get_or_init(|| {
        let key = PrivateKey::generate(KeyAlgo::Ec(Curve::P256)).unwrap();
        der::Decode::from_der(key.spki_der()).unwrap()
    })
}

/// The config parser, then everything that reads a parsed config: the
/// `[req]` reader (subject, string mask, req_extensions) and the profile
/// reader for every section, building the extensions of a cert and a CSR.
fn config_target(bytes: &[u8]) {
    let text = String::from_utf8_lossy(bytes);
    let Ok(conf) = Config::parse(&text, "fuzz.cnf") else {
        return;
    };
    let _ = ReqConfig::from_config(&conf);
    profile_target_on(&conf);
}

fn profile_target(bytes: &[u8]) {
    if let Ok(conf) = Config::parse(&String::from_utf8_lossy(bytes), "fuzz-ext.cnf") {
        profile_target_on(&conf);
    }
}

fn profile_target_on(conf: &Config) {
    let subject = common_name("fuzz").unwrap();
    let serial = x509_cert::serial_number::SerialNumber::new(&[1]).unwrap();
    let sections = std::iter::once(None).chain(conf.sections.iter().map(|s| Some(s.name.as_str())));
    for section in sections {
        let Ok(profile) = ExtensionProfile::from_config(conf, section) else {
            continue;
        };
        for certificate in [true, false] {
            let _ = profile.build(&ExtContext {
                subject_spki: spki(),
                issuer: None,
                subject_name: &subject,
                serial: &serial,
                certificate,
            });
        }
    }
}

/// The key loader with a passphrase file ("pw", as the encrypted seed):
/// mutated encrypted keys get as far as decryption.
fn key_target(bytes: &[u8]) {
    static PW: OnceLock<(tempfile::TempDir, PathBuf)> = OnceLock::new();
    let (_, pw) = PW.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("pw");
        std::fs::write(&p, "pw\n").unwrap();
        (dir, p)
    });
    let source = PassphraseSource::File(pw.display().to_string());
    if let Ok((key, _)) = PrivateKey::load(&Input::from_bytes("fuzz.key", bytes.to_vec()), &source)
    {
        let _ = key.spki_der();
    }
}

/// Certificates (and what is printed of them), a CSR (and its signature
/// check), CRLs.
fn x509_target(bytes: &[u8]) {
    let input = Input::from_bytes("fuzz.pem", bytes.to_vec());
    if let Ok(certs) = load_certificates(&input, "cannot read certificate") {
        for c in &certs {
            let tbs = c.cert.tbs_certificate();
            let _ = to_rfc4514(tbs.subject());
            let _ = to_rfc4514(tbs.issuer());
            let _ = devcert::keys::spki_algo(&tbs.subject_public_key_info().owned_to_ref());
        }
        if let [leaf, issuer, ..] = certs.as_slice() {
            let _ = devcert::chain::is_issued_by(leaf, issuer);
        }
    }
    if let Ok((csr, der)) = load_csr(&input) {
        let _ = to_rfc4514(&csr.info.subject);
        let _ = devcert::csr::verify_csr(&der, &csr, "fuzz.pem");
    }
    if let Ok(crls) = devcert::verify::load_crls(&input) {
        for crl in &crls {
            let _ = to_rfc4514(&crl.crl.tbs_cert_list.issuer);
        }
    }
}

// ---------------------------------------------------------------------------
// The runner
// ---------------------------------------------------------------------------

/// Cases per target in a plain `cargo test` (PROPTEST_CASES overrides).
const DEFAULT_CASES: u32 = 1000;

fn fuzz(name: &str, strategy: BoxedStrategy<Vec<u8>>, target: fn(&[u8])) {
    let budget = std::env::var("FUZZ_SECONDS")
        .ok()
        .and_then(|s| s.parse::<u64>().ok())
        .map(Duration::from_secs);
    let mut config = RunnerConfig {
        failure_persistence: None,
        ..RunnerConfig::default()
    };
    if std::env::var("PROPTEST_CASES").is_err() {
        config.cases = if budget.is_some() {
            2000
        } else {
            DEFAULT_CASES
        };
    }
    let start = Instant::now();
    let mut executions = 0u64;
    loop {
        let mut runner = TestRunner::new(config.clone());
        let result = runner.run(&strategy, |bytes| {
            target(&bytes);
            Ok::<(), TestCaseError>(())
        });
        executions += u64::from(config.cases);
        if let Err(e) = result {
            let input = match &e {
                TestError::Fail(_, v) => v.clone(),
                TestError::Abort(_) => Vec::new(),
            };
            let path =
                Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("fuzz-crash-{name}.bin"));
            std::fs::write(&path, &input).unwrap();
            panic!(
                "fuzz target {name} failed ({e}); shrunk input saved to {}",
                path.display()
            );
        }
        if budget.is_none_or(|b| start.elapsed() >= b) {
            break;
        }
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "fuzz {name}: {executions} executions in {secs:.1} s ({:.0}/s), no failure",
        executions as f64 / secs.max(1e-9)
    );
}

#[test]
fn fuzz_openssl_config_parser() {
    fuzz(
        "openssl_conf",
        input(&["req.cnf", "profile.cnf"], ""),
        config_target,
    );
}

#[test]
fn fuzz_profile_parser() {
    fuzz(
        "profile",
        input(&["profile.cnf", "req.cnf"], ""),
        profile_target,
    );
}

#[test]
fn fuzz_key_loader() {
    let seeds = &[
        "p256.pkcs8.der",
        "p256.enc1000.der",
        "p384.sec1.pem",
        "rsa1024.pkcs1.pem",
    ];
    fuzz("keys", input(seeds, "PRIVATE KEY"), key_target);
}

#[test]
fn fuzz_certificate_loader() {
    fuzz(
        "certificates",
        input(&["leaf.crt.der", "ca.crt.der"], "CERTIFICATE"),
        x509_target,
    );
}

#[test]
fn fuzz_csr_loader() {
    fuzz(
        "csr",
        input(&["rsa.csr.der"], "CERTIFICATE REQUEST"),
        x509_target,
    );
}

#[test]
fn fuzz_crl_loader() {
    fuzz("crl", input(&["ca.crl.der"], "X509 CRL"), x509_target);
}

/// Every seed and every saved crash input goes through every target.
#[test]
fn corpus_replays_cleanly() {
    let mut files = Vec::new();
    for dir in [SEEDS, CRASHES] {
        for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            files.push(e.path());
        }
    }
    let crashes = files.iter().filter(|f| f.starts_with(CRASHES)).count();
    assert!(crashes >= 3, "crash corpus missing");
    assert!(files.len() >= 10, "corpus missing: {files:?}");
    for f in &files {
        let bytes = std::fs::read(f).unwrap();
        for target in [config_target, profile_target, key_target, x509_target] {
            target(&bytes);
        }
    }
    println!("replayed {} corpus files through 4 targets", files.len());
}
