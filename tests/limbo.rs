//! devcert's verifier over the x509-limbo path-validation cases kept in
//! `tests/data/x509-limbo` (see its README.md). The default mode must agree with OpenSSL 3.0 `openssl verify`
//! run as a broker verifies a client (`-purpose sslclient`, `-crl_check`
//! when the case has CRLs), computed here for every case, except the few
//! allow-listed below. `--strict` is scored against limbo's own expected
//! results (reported, not asserted: devcert follows the broker where the
//! two part). Run with `-- --nocapture` to see the counts.
mod common;
use common::*;

use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use devcert::input::{Input, load_certificates};
use devcert::verify::{Policy, Verdict, load_crls, verify};
use serde_json::Value;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// Cases where devcert's default mode knowingly differs from `openssl
/// verify`, with the reason (docs/verify.md).
const ALLOWED_DIFFERENCES: &[(&str, &str)] = &[];

fn corpus() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/x509-limbo/cases.json")
}

/// One case's inputs, loaded for the library.
struct Loaded {
    leaf: devcert::input::LoadedCert,
    untrusted: Vec<devcert::input::LoadedCert>,
    trusted: Vec<devcert::input::LoadedCert>,
    crls: Vec<devcert::verify::LoadedCrl>,
}

fn pems(case: &Value, key: &str) -> Vec<String> {
    case[key]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

fn load(case: &Value) -> Result<Loaded, String> {
    let certs = |key: &str| -> Result<Vec<_>, String> {
        let mut out = Vec::new();
        for (i, pem) in pems(case, key).into_iter().enumerate() {
            let input = Input::from_bytes(format!("{key}#{i}"), pem.into_bytes());
            out.extend(load_certificates(&input, "limbo").map_err(|e| e.to_string())?);
        }
        Ok(out)
    };
    let mut crls = Vec::new();
    for (i, pem) in pems(case, "crls").into_iter().enumerate() {
        let input = Input::from_bytes(format!("crl#{i}"), pem.into_bytes());
        crls.extend(load_crls(&input).map_err(|e| e.to_string())?);
    }
    let peer = case["peer_certificate"].as_str().unwrap_or_default();
    let mut leaf = load_certificates(
        &Input::from_bytes("peer", peer.as_bytes().to_vec()),
        "limbo",
    )
    .map_err(|e| e.to_string())?;
    Ok(Loaded {
        leaf: leaf.remove(0),
        untrusted: certs("untrusted_intermediates")?,
        trusted: certs("trusted_certs")?,
        crls,
    })
}

/// The case's validation time in whole seconds (`openssl -attime` takes
/// no fraction, so both verifiers get the same instant), or now.
fn validation_time(case: &Value) -> Option<i64> {
    case["validation_time"].as_str().map(|s| {
        OffsetDateTime::parse(s, &Rfc3339)
            .unwrap_or_else(|e| panic!("bad validation_time {s}: {e}"))
            .unix_timestamp()
    })
}

fn devcert_accepts(l: &Result<Loaded, String>, policy: &Policy) -> bool {
    match l {
        Ok(l) => matches!(
            verify(&l.leaf, &l.untrusted, &l.trusted, &l.crls, policy),
            Verdict::Ok(_)
        ),
        // Unreadable input is never an acceptance.
        Err(_) => false,
    }
}

/// `openssl verify` as the broker runs it, on files written for the case.
fn openssl_accepts(t: &TestDir, n: usize, case: &Value, at: Option<i64>) -> (bool, String) {
    let write = |what: &str, pems: Vec<String>| {
        let name = format!("{n}-{what}.pem");
        t.write(&name, pems.concat());
        name
    };
    let trusted = write("trusted", pems(case, "trusted_certs"));
    let untrusted = write("untrusted", pems(case, "untrusted_intermediates"));
    let leaf = write(
        "leaf",
        vec![case["peer_certificate"].as_str().unwrap_or_default().into()],
    );
    let mut args = vec![
        "verify".to_string(),
        "-purpose".into(),
        "sslclient".into(),
        "-CAfile".into(),
        trusted,
    ];
    if !pems(case, "untrusted_intermediates").is_empty() {
        args.extend(["-untrusted".into(), untrusted]);
    }
    if !pems(case, "crls").is_empty() {
        let crls = write("crls", pems(case, "crls"));
        args.extend(["-crl_check".into(), "-CRLfile".into(), crls]);
    }
    if let Some(at) = at {
        args.extend(["-attime".into(), at.to_string()]);
    }
    args.push(leaf);
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = t.openssl(&argv);
    let ok = out.code == Some(0) && out.stdout_str().contains(": OK");
    (ok, out.text().replace('\n', " | "))
}

#[test]
fn limbo_default_agrees_with_openssl_and_strict_is_scored() {
    let path = corpus();
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("x509-limbo corpus not found at {} ({e})", path.display()));
    let doc: Value = serde_json::from_str(&text).expect("cases.json is JSON");
    let cases = doc["testcases"].as_array().expect("testcases array");
    let t = TestDir::new();
    let (mut agree, mut allowed, mut skipped) = (0, 0, Vec::new());
    let (mut strict_miss, mut default_miss) = (Vec::new(), Vec::new());
    let mut disagreements = Vec::new();
    for (n, case) in cases.iter().enumerate() {
        let id = case["id"].as_str().unwrap_or("?");
        let kind = case["validation_kind"].as_str().unwrap_or("");
        if kind != "CLIENT" && kind != "SERVER" {
            skipped.push(format!("{id} ({kind})"));
            continue;
        }
        let at = validation_time(case);
        let when = at.map_or_else(SystemTime::now, |s| {
            SystemTime::UNIX_EPOCH + Duration::from_secs(s as u64)
        });
        let loaded = load(case);
        let broker = Policy {
            at: when,
            strict: false,
            crl_check_all: false,
            partial_chain: false,
        };
        // limbo's model: every trusted certificate is an anchor, every CRL
        // given is checked.
        let limbo = Policy {
            strict: true,
            crl_check_all: true,
            partial_chain: true,
            ..broker
        };
        let dev = devcert_accepts(&loaded, &broker);
        let strict = devcert_accepts(&loaded, &limbo);
        let expected = case["expected_result"].as_str() == Some("SUCCESS");
        if strict != expected {
            strict_miss.push(id);
        }
        if dev != expected {
            default_miss.push(id);
        }
        let (ssl, ssl_text) = openssl_accepts(&t, n, case, at);
        if dev == ssl {
            agree += 1;
        } else if ALLOWED_DIFFERENCES.iter().any(|(a, _)| *a == id) {
            allowed += 1;
        } else {
            let why = match &loaded {
                Ok(l) => format!(
                    "{:?}",
                    verify(&l.leaf, &l.untrusted, &l.trusted, &l.crls, &broker)
                ),
                Err(e) => e.clone(),
            };
            disagreements.push(format!(
                "{id}: devcert {dev} ({why}), openssl {ssl} ({ssl_text})"
            ));
        }
    }
    let judged = cases.len() - skipped.len();
    println!(
        "x509-limbo: {} cases; default mode vs openssl verify: {agree} agree, {} disagree, \
         {allowed} allow-listed, {} skipped {skipped:?}",
        cases.len(),
        disagreements.len(),
        skipped.len()
    );
    println!(
        "x509-limbo expected results: --strict matches {}/{judged} (misses {strict_miss:?}); \
         default mode {}/{judged} (misses {default_miss:?})",
        judged - strict_miss.len(),
        judged - default_miss.len()
    );
    assert!(
        disagreements.is_empty(),
        "default mode disagrees with openssl verify on {} case(s):\n{}",
        disagreements.len(),
        disagreements.join("\n")
    );
    for (id, _) in ALLOWED_DIFFERENCES {
        assert!(
            cases.iter().any(|c| c["id"].as_str() == Some(id)),
            "allow-listed case {id} is not in the corpus"
        );
    }
}
