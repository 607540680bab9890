//! The seed's OpenSSL workflow (SEED.md), step by step through devcert with
//! the seed's own config files unchanged, every result checked with openssl,
//! and a JDK client (the broker's Java sample loads client_pkcs8.key) at the
//! end instead of a broker.
mod common;
use common::*;

#[track_caller]
fn req_verify_ok(t: &TestDir, csr: &str) {
    let out = t.openssl(&["req", "-verify", "-in", csr, "-noout"]);
    assert!(
        out.code == Some(0) && out.text().contains("verify OK"),
        "{}",
        out.describe()
    );
}

/// sign + pkcs8 + chain, the common tail of both flows.
fn sign_pkcs8_chain(t: &TestDir, is_ec: bool) {
    // openssl x509 -req -in client.csr -CA CA.crt -CAkey CA.key -CAcreateserial
    //   -out client.crt -days 500 -sha256 -extfile client.crt.cfg
    let start = now();
    let out = t
        .devcert(&[
            "sign",
            "--csr",
            "client.csr",
            "--ca",
            "CA.crt",
            "--ca-key",
            "CA.key",
            "--profile",
            "client.crt.cfg",
            "--days",
            "500",
            "--digest",
            "sha256",
            "-o",
            "client.crt",
        ])
        .ok()
        .warns_about(&["keyCertSign"]);
    if is_ec {
        out.warns_about(&["keyEncipherment", "dataEncipherment"]);
    }
    t.assert_openssl_verify(&["-CAfile", "CA.crt"], "client.crt");
    // Same extensions as OpenSSL's own run of the seed command.
    t.openssl_sign(
        "client.csr",
        "CA",
        "openssl_client.crt",
        Some("client.crt.cfg"),
    );
    t.prefetch(&[
        ("cert", &["client.crt"]),
        ("cert", &["openssl_client.crt"]),
        ("cert", &["CA.crt"]),
        ("csr", &["client.csr"]),
    ]);
    let c = t.cert("client.crt");
    let na = c.int("not_after");
    assert!(
        na >= start + 500 * DAY - 3600 && na <= now() + 500 * DAY + 3600,
        "-days 500"
    );
    assert_eq!(
        c.all("ext"),
        t.cert("openssl_client.crt").all("ext"),
        "extensions differ from openssl's"
    );
    assert_eq!(c.get("issuer_der"), t.cert("CA.crt").get("subject_der"));
    assert_eq!(c.get("spki_der"), t.csr("client.csr").get("spki_der"));
    assert!(
        t.listing().keys().all(|k| !k.ends_with(".srl")),
        "a serial file appeared"
    );

    // openssl pkcs8 -topk8 -nocrypt -in client.key -out client_pkcs8.key
    t.devcert(&["pkcs8", "client.key", "-o", "client_pkcs8.key"])
        .ok();
    t.openssl_ok(&[
        "pkcs8",
        "-topk8",
        "-nocrypt",
        "-in",
        "client.key",
        "-out",
        "openssl_pkcs8.key",
    ]);
    assert_eq!(
        t.pkey_text("client_pkcs8.key", &[]),
        t.pkey_text("openssl_pkcs8.key", &[]),
        "client_pkcs8.key is not the key openssl pkcs8 -topk8 gives"
    );
    assert_eq!(
        first_pem_label(&t.read_str("client_pkcs8.key")).as_deref(),
        Some("PRIVATE KEY")
    );
    t.assert_mode("client_pkcs8.key", 0o600);

    // cat client.crt CA.crt > client_chain.crt
    t.devcert(&["chain", "client.crt", "CA.crt", "-o", "client_chain.crt"])
        .ok();
    let cat = [t.read("client.crt"), t.read("CA.crt")].concat();
    t.write("cat_chain.crt", cat);
    t.prefetch(&[
        ("certs", &["client_chain.crt"]),
        ("certs", &["cat_chain.crt"]),
    ]);
    let chain = t.certs("client_chain.crt");
    let cat = t.certs("cat_chain.crt");
    assert_eq!(chain.int("count"), 2);
    assert_eq!(chain.get("c0.fingerprint"), cat.get("c0.fingerprint"));
    assert_eq!(chain.get("c1.fingerprint"), cat.get("c1.fingerprint"));
    t.assert_openssl_verify(
        &["-CAfile", "CA.crt", "-untrusted", "client_chain.crt"],
        "client_chain.crt",
    );

    // The end of the line: a JDK MQTT client loading the PKCS#8 key + chain.
    t.assert_java_accepts("client_pkcs8.key", "client_chain.crt");
}

#[test]
fn seed_rsa_flow() {
    let t = TestDir::new();
    t.rsa_ca("CA");
    t.seed_configs();
    // openssl req -new -sha256 -nodes -out client.csr -newkey rsa:2048
    //   -keyout client.key -config client.csr.cfg
    t.devcert(&[
        "csr",
        "--new-key",
        "rsa:2048",
        "--key-out",
        "client.key",
        "--config",
        "client.csr.cfg",
        "-o",
        "client.csr",
    ])
    .ok();
    req_verify_ok(&t, "client.csr");
    t.assert_mode("client.key", 0o600);
    assert_eq!(
        first_pem_label(&t.read_str("client.key")).as_deref(),
        Some("PRIVATE KEY")
    );
    assert_eq!(t.key("client.key").get("key"), "rsa:2048");
    t.openssl_ok(&[
        "req",
        "-new",
        "-sha256",
        "-key",
        "client.key",
        "-config",
        "client.csr.cfg",
        "-out",
        "ref.csr",
    ]);
    assert_eq!(
        t.csr("client.csr").get("subject_der"),
        t.csr("ref.csr").get("subject_der")
    );
    assert_eq!(
        t.csr("client.csr").get("sig_oid"),
        "1.2.840.113549.1.1.11",
        "sha256WithRSAEncryption"
    );
    sign_pkcs8_chain(&t, false);
    // The seed config files were not touched.
    assert_eq!(t.read_str("client.csr.cfg"), SEED_CSR_CFG);
    assert_eq!(t.read_str("client.crt.cfg"), SEED_CRT_CFG);
}

#[test]
fn seed_ecc_flow() {
    let t = TestDir::new();
    t.rsa_ca("CA");
    t.seed_configs();
    // openssl ecparam -out client.key -name prime256v1 -genkey
    t.devcert(&[
        "key",
        "--algo",
        "ec",
        "--curve",
        "prime256v1",
        "-o",
        "client.key",
    ])
    .ok();
    assert_eq!(t.key("client.key").get("key"), "ec:secp256r1");
    t.assert_mode("client.key", 0o600);
    // openssl req -new -sha256 -nodes -out client.csr -key client.key -config client.csr.cfg
    t.devcert(&[
        "csr",
        "--key",
        "client.key",
        "--config",
        "client.csr.cfg",
        "-o",
        "client.csr",
    ])
    .ok();
    req_verify_ok(&t, "client.csr");
    t.openssl_ok(&[
        "req",
        "-new",
        "-sha256",
        "-key",
        "client.key",
        "-config",
        "client.csr.cfg",
        "-out",
        "ref.csr",
    ]);
    assert_eq!(
        t.csr("client.csr").get("subject_der"),
        t.csr("ref.csr").get("subject_der")
    );
    assert_eq!(
        t.csr("client.csr").get("sig_oid"),
        "1.2.840.10045.4.3.2",
        "ecdsa-with-SHA256"
    );
    sign_pkcs8_chain(&t, true);
}

#[test]
fn seed_ecc_flow_with_sec1_key_and_ec_ca() {
    let t = TestDir::new();
    t.ec_ca("CA");
    t.seed_configs();
    t.devcert(&[
        "key",
        "--curve",
        "prime256v1",
        "--format",
        "sec1",
        "-o",
        "client.key",
    ])
    .ok();
    assert_eq!(pem_blocks(&t.read_str("client.key"), "EC PRIVATE KEY"), 1);
    t.devcert(&[
        "csr",
        "--key",
        "client.key",
        "--config",
        "client.csr.cfg",
        "-o",
        "client.csr",
    ])
    .ok();
    req_verify_ok(&t, "client.csr");
    sign_pkcs8_chain(&t, true);
}

#[test]
fn openssl_made_key_and_csr_through_devcert() {
    // A user who keeps the first OpenSSL steps and switches to devcert later.
    let t = TestDir::new();
    t.rsa_ca("CA");
    t.seed_configs();
    t.openssl_ok(&[
        "ecparam",
        "-out",
        "client.key",
        "-name",
        "prime256v1",
        "-genkey",
    ]);
    t.openssl_ok(&[
        "req",
        "-new",
        "-sha256",
        "-nodes",
        "-out",
        "client.csr",
        "-key",
        "client.key",
        "-config",
        "client.csr.cfg",
    ]);
    sign_pkcs8_chain(&t, true);
}

#[test]
fn devcert_outputs_work_in_the_openssl_steps() {
    // And the other way round: each devcert artifact is accepted by the next
    // OpenSSL command of the seed workflow.
    let t = TestDir::new();
    t.rsa_ca("CA");
    t.seed_configs();
    t.devcert(&["key", "--format", "sec1", "-o", "client.key"])
        .ok();
    t.openssl_ok(&[
        "req",
        "-new",
        "-sha256",
        "-nodes",
        "-out",
        "o.csr",
        "-key",
        "client.key",
        "-config",
        "client.csr.cfg",
    ]);
    t.devcert(&[
        "csr",
        "--key",
        "client.key",
        "--config",
        "client.csr.cfg",
        "-o",
        "client.csr",
    ])
    .ok();
    t.openssl_ok(&[
        "x509",
        "-req",
        "-in",
        "client.csr",
        "-CA",
        "CA.crt",
        "-CAkey",
        "CA.key",
        "-set_serial",
        "7",
        "-out",
        "o.crt",
        "-days",
        "500",
        "-sha256",
        "-extfile",
        "client.crt.cfg",
    ]);
    t.assert_openssl_verify(&["-CAfile", "CA.crt"], "o.crt");
    t.devcert(&["pkcs8", "client.key", "-o", "client_pkcs8.key"])
        .ok();
    t.openssl_ok(&[
        "pkcs8",
        "-nocrypt",
        "-in",
        "client_pkcs8.key",
        "-out",
        "back.key",
    ]);
    assert_eq!(t.pkey_text("back.key", &[]), t.pkey_text("client.key", &[]));
}

#[test]
fn whole_flow_with_a_devcert_ca() {
    let t = TestDir::new();
    t.seed_configs();
    t.devcert(&[
        "ca",
        "--subject",
        "/C=CN/O=ALI/CN=Device Root CA",
        "--key-out",
        "CA.key",
        "-o",
        "CA.crt",
    ])
    .ok();
    t.devcert(&["key", "-o", "client.key"]).ok();
    t.devcert(&[
        "csr",
        "--key",
        "client.key",
        "--config",
        "client.csr.cfg",
        "-o",
        "client.csr",
    ])
    .ok();
    sign_pkcs8_chain(&t, true);
}
