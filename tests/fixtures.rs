//! Self-test of the harness: the openssl fixture makers and the independent
//! inspectors work (no devcert involved). If these fail, the other failures
//! say nothing about devcert.
mod common;
use common::*;

#[test]
fn ca_fixtures_are_valid_cas() {
    let t = TestDir::new();
    t.ec_ca("EC");
    t.rsa_ca("RSA");
    t.printable_ca("PR");
    t.multivalue_ca("MV");
    t.custom_ski_ca("SKI");
    t.short_ca("SHORT", 30);
    for ca in ["EC", "RSA", "PR", "MV", "SKI", "SHORT"] {
        let crt = format!("{ca}.crt");
        t.assert_openssl_verify(&["-CAfile", &crt], &crt);
        let i = t.cert(&crt);
        assert_eq!(i.get("bc"), "ca=1,pathlen=None,critical=1", "{ca}");
        assert!(i.opt("ski").is_some(), "{ca} has no SKI");
    }
    assert_eq!(t.cert("RSA.crt").get("key"), "rsa:2048");
    assert_eq!(t.cert("EC.crt").get("key"), "ec:secp256r1");
    assert_eq!(t.cert("SKI.crt").get("ski"), "0102030405060708");
    let mv = t.cert("MV.crt");
    assert_eq!(mv.get("subject"), "CN=a+UID=b,OU=Y,OU=X,O=A");
}

#[test]
fn expired_non_ca_and_v1_fixtures() {
    let t = TestDir::new();
    t.expired_ca("OLD");
    let i = t.cert("OLD.crt");
    assert!(i.int("not_after") < now(), "expired fixture is not expired");
    assert_eq!(i.get("bc"), "ca=1,pathlen=None,critical=1");
    t.non_ca("LEAF");
    assert_eq!(t.cert("LEAF.crt").get("bc"), "ca=0,pathlen=None,critical=1");
    t.v1_cert("V1");
    let v1 = t.cert("V1.crt");
    assert_eq!(v1.get("version"), "v1");
    assert!(v1.all("ext").is_empty());
}

#[test]
fn csr_and_key_fixtures() {
    let t = TestDir::new();
    t.tampered_csr("bad");
    t.ec_csr("dev");
    let c = t.csr("dev.csr");
    assert_eq!(c.get("sig_valid"), "1");
    t.assert_key_matches("dev.key", &c.get("spki_der"));
    let text = t.read_str("dev.key");
    assert_eq!(first_pem_label(&text).as_deref(), Some("EC PARAMETERS"));
    assert_eq!(pem_blocks(&text, "EC PRIVATE KEY"), 1);
    t.seed_configs();
    assert_eq!(t.read_str("client.csr.cfg"), SEED_CSR_CFG);
}

#[test]
fn openssl_chain_fixtures_and_reference_signing() {
    let t = TestDir::new();
    t.ec_ca("ROOT");
    t.openssl_intermediate("INT", "ROOT");
    t.openssl_leaf("leaf", "INT");
    t.assert_issued_by("INT.crt", "ROOT.crt");
    t.assert_issued_by("leaf.crt", "INT.crt");
    t.assert_openssl_verify(
        &["-CAfile", "ROOT.crt", "-untrusted", "INT.crt"],
        "leaf.crt",
    );
    t.seed_configs();
    t.ec_csr("client");
    t.openssl_sign("client.csr", "ROOT", "ref.crt", Some("client.crt.cfg"));
    let r = t.cert("ref.crt");
    assert_eq!(r.ext_oids(), vec![OID_AKI, OID_BC, OID_KU, OID_SKI]);
}

#[test]
fn java_checker_accepts_an_openssl_made_pkcs8_key_and_chain() {
    let t = TestDir::new();
    t.ec_ca("CA");
    t.openssl_leaf("client", "CA");
    t.openssl_ok(&[
        "pkcs8",
        "-topk8",
        "-nocrypt",
        "-in",
        "client.key",
        "-out",
        "p8.key",
    ]);
    let chain = [t.read("client.crt"), t.read("CA.crt")].concat();
    t.write("chain.crt", chain);
    t.assert_java_accepts("p8.key", "chain.crt");
    // And it does reject a key that does not match.
    t.ec_key("other.key");
    t.openssl_ok(&[
        "pkcs8",
        "-topk8",
        "-nocrypt",
        "-in",
        "other.key",
        "-out",
        "o8.key",
    ]);
    if let Some(out) = t.java_check("o8.key", "chain.crt") {
        assert_eq!(out.code, Some(1), "{}", out.describe());
    }
}

#[test]
fn harness_reports_devcert_runs() {
    // The binary exists (possibly a stub); whatever it does, the harness must
    // be able to run it and it must not panic on --help.
    let t = TestDir::new();
    let out = t.devcert(&["--help"]);
    assert!(out.code.is_some(), "{}", out.describe());
}
