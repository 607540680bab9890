//! `devcert chain` (replaces `cat client.crt CA.crt > client_chain.crt`).
//! Fixtures are made with openssl only, so these tests do not depend on
//! `devcert sign`.
mod common;
use common::*;

/// The chain file holds exactly these certificates, in this order, as PEM.
#[track_caller]
fn assert_chain_is(t: &TestDir, chain: &str, certs: &[&str]) {
    let text = t.read_str(chain);
    assert_eq!(
        pem_blocks(&text, "CERTIFICATE"),
        certs.len(),
        "expected {} PEM certificates in {chain}:\n{text}",
        certs.len()
    );
    let info = t.certs(chain);
    assert_eq!(info.int("count"), certs.len() as i64);
    for (i, c) in certs.iter().enumerate() {
        assert_eq!(
            info.get(&format!("c{i}.fingerprint")),
            t.cert(c).get("fingerprint"),
            "certificate #{i} of {chain} should be {c}"
        );
    }
}

fn two_level(t: &TestDir) {
    t.ec_ca("CA");
    t.openssl_leaf("client", "CA");
}

fn three_level(t: &TestDir) {
    t.ec_ca("ROOT");
    t.openssl_intermediate("INT", "ROOT");
    t.openssl_leaf("client", "INT");
}

#[test]
fn leaf_then_ca() {
    let t = TestDir::new();
    two_level(&t);
    t.devcert(&["chain", "client.crt", "CA.crt", "-o", "client_chain.crt"])
        .ok();
    assert_chain_is(&t, "client_chain.crt", &["client.crt", "CA.crt"]);
    t.assert_mode("client_chain.crt", 0o644);
    // openssl verify checks the first certificate of the file: the leaf.
    t.assert_openssl_verify(&["-CAfile", "CA.crt"], "client_chain.crt");
    t.assert_openssl_verify(
        &["-CAfile", "CA.crt", "-untrusted", "client_chain.crt"],
        "client_chain.crt",
    );
}

#[test]
fn wrong_order_is_an_error_naming_both_files() {
    let t = TestDir::new();
    two_level(&t);
    let before = t.listing();
    t.devcert(&["chain", "CA.crt", "client.crt", "-o", "client_chain.crt"])
        .fails_naming(&["CA.crt", "client.crt"]);
    t.assert_unchanged(&before);
}

#[test]
fn sort_fixes_the_order() {
    let t = TestDir::new();
    two_level(&t);
    t.devcert(&[
        "chain",
        "--sort",
        "CA.crt",
        "client.crt",
        "-o",
        "client_chain.crt",
    ])
    .ok();
    assert_chain_is(&t, "client_chain.crt", &["client.crt", "CA.crt"]);
    t.assert_openssl_verify(&["-CAfile", "CA.crt"], "client_chain.crt");
}

#[test]
fn three_levels_with_an_intermediate() {
    let t = TestDir::new();
    three_level(&t);
    t.devcert(&[
        "chain",
        "client.crt",
        "INT.crt",
        "ROOT.crt",
        "-o",
        "client_chain.crt",
    ])
    .ok();
    assert_chain_is(
        &t,
        "client_chain.crt",
        &["client.crt", "INT.crt", "ROOT.crt"],
    );
    t.assert_openssl_verify(
        &["-CAfile", "ROOT.crt", "-untrusted", "client_chain.crt"],
        "client_chain.crt",
    );
    // Without the root (what a device usually sends) is fine too.
    t.devcert(&["chain", "client.crt", "INT.crt", "-o", "short_chain.crt"])
        .ok();
    assert_chain_is(&t, "short_chain.crt", &["client.crt", "INT.crt"]);
    t.assert_openssl_verify(
        &["-CAfile", "ROOT.crt", "-untrusted", "short_chain.crt"],
        "short_chain.crt",
    );
}

#[test]
fn three_levels_sorted_from_any_order() {
    let t = TestDir::new();
    three_level(&t);
    for (i, order) in [
        ["ROOT.crt", "INT.crt", "client.crt"],
        ["INT.crt", "client.crt", "ROOT.crt"],
        ["ROOT.crt", "client.crt", "INT.crt"],
    ]
    .iter()
    .enumerate()
    {
        let out = format!("chain{i}.crt");
        let mut args = vec!["chain", "--sort"];
        args.extend_from_slice(order);
        args.extend_from_slice(&["-o", &out]);
        t.devcert(&args).ok();
        assert_chain_is(&t, &out, &["client.crt", "INT.crt", "ROOT.crt"]);
    }
}

#[test]
fn three_levels_wrong_order_names_the_pair() {
    let t = TestDir::new();
    three_level(&t);
    t.devcert(&["chain", "client.crt", "ROOT.crt", "INT.crt", "-o", "c.crt"])
        .fails_naming(&["client.crt", "ROOT.crt"]);
    t.assert_no_file("c.crt");
}

#[test]
fn missing_link_is_an_error_even_with_sort() {
    let t = TestDir::new();
    three_level(&t);
    let before = t.listing();
    t.devcert(&["chain", "client.crt", "ROOT.crt", "-o", "c.crt"])
        .fails_naming(&["client.crt", "ROOT.crt"]);
    t.devcert(&["chain", "--sort", "client.crt", "ROOT.crt", "-o", "c.crt"])
        .fails();
    t.devcert(&["chain", "--sort", "ROOT.crt", "client.crt", "-o", "c.crt"])
        .fails();
    t.assert_unchanged(&before);
}

#[test]
fn unrelated_ca_is_an_error() {
    let t = TestDir::new();
    two_level(&t);
    t.ec_ca("OTHER");
    t.devcert(&["chain", "client.crt", "OTHER.crt", "-o", "c.crt"])
        .fails_naming(&["client.crt", "OTHER.crt"]);
    t.assert_no_file("c.crt");
}

#[test]
fn der_inputs_give_a_pem_chain() {
    let t = TestDir::new();
    two_level(&t);
    t.openssl_ok(&[
        "x509",
        "-in",
        "client.crt",
        "-outform",
        "DER",
        "-out",
        "client.der",
    ]);
    t.openssl_ok(&["x509", "-in", "CA.crt", "-outform", "DER", "-out", "CA.der"]);
    t.devcert(&["chain", "client.der", "CA.der", "-o", "client_chain.crt"])
        .ok();
    assert_chain_is(&t, "client_chain.crt", &["client.crt", "CA.crt"]);
}

#[test]
fn chain_to_stdout() {
    let t = TestDir::new();
    two_level(&t);
    let out = t.devcert(&["chain", "client.crt", "CA.crt"]).ok();
    t.write("stdout_chain.crt", &out.stdout);
    assert_chain_is(&t, "stdout_chain.crt", &["client.crt", "CA.crt"]);
}

#[test]
fn refuses_existing_output_and_force_replaces() {
    let t = TestDir::new();
    two_level(&t);
    t.write("client_chain.crt", "old\n");
    let before = t.listing();
    t.devcert(&["chain", "client.crt", "CA.crt", "-o", "client_chain.crt"])
        .fails_naming(&["client_chain.crt"]);
    t.assert_unchanged(&before);
    t.devcert(&[
        "chain",
        "client.crt",
        "CA.crt",
        "--force",
        "-o",
        "client_chain.crt",
    ])
    .ok();
    assert_chain_is(&t, "client_chain.crt", &["client.crt", "CA.crt"]);
}

#[test]
fn missing_and_garbage_inputs() {
    let t = TestDir::new();
    two_level(&t);
    t.write("junk.crt", "junk\n");
    t.devcert(&["chain", "client.crt", "nope.crt", "-o", "c.crt"])
        .fails_naming(&["nope.crt"]);
    t.devcert(&["chain", "junk.crt", "CA.crt", "-o", "c.crt"])
        .fails_naming(&["junk.crt"]);
    t.devcert(&["chain", "client.key", "CA.crt", "-o", "c.crt"])
        .fails_naming(&["client.key"]);
    t.assert_no_file("c.crt");
}
