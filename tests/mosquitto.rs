//! The registry enforced by a real broker: Mosquitto with `crlfile`,
//! started here on a free 127.0.0.1 port and stopped by PID. A device made
//! by `devcert issue --registry` connects, publishes and receives; after
//! `device deactivate` + `registry crl` + SIGHUP it is refused while another
//! device still connects; `activate` lets it back in; `revoke` keeps it
//! out for good, also once deleted. The broker's `cafile` is what
//! `registry ca export` writes.
//!
//! Skipped (with a message) only when mosquitto is missing and `CI` is not
//! set; in CI a missing broker fails the test.
mod common;
use common::broker::*;
use common::*;

use std::time::Instant;

/// Mutual TLS, the CN as username, and the registry's CRL.
fn crl_mode(t: &TestDir, port: u16, cafile: &str) -> String {
    let root = t.root().display();
    format!(
        "listener {port} 127.0.0.1\n\
         cafile {root}/{cafile}\n\
         certfile {root}/server/client.crt\n\
         keyfile {root}/server/client_pkcs8.key\n\
         require_certificate true\n\
         use_identity_as_username true\n\
         crlfile {root}/ca.crl\n"
    )
}

fn crl(t: &TestDir) {
    t.devcert(&[
        "registry", "--db", "reg.db", "crl", "--ca", "CA.crt", "--ca-key", "CA.key", "-o",
        "ca.crl", "--force",
    ])
    .ok();
}

#[test]
fn broker_enforces_deactivation_through_the_registry_crl() {
    let Some(exe) = find_mosquitto() else {
        return;
    };
    let started = Instant::now();
    let t = TestDir::new();
    ca_and_server(&t);
    for dev in ["dev-a", "dev-b"] {
        t.devcert(&[
            "issue",
            "--cn",
            dev,
            "--ca",
            "CA.crt",
            "--ca-key",
            "CA.key",
            "--registry",
            "reg.db",
            "--out-dir",
            dev,
        ])
        .ok();
    }
    let serial_a = serial_of(&t, "dev-a/client.crt");
    crl(&t);
    t.devcert(&[
        "registry",
        "--db",
        "reg.db",
        "ca",
        "export",
        "-o",
        "cafile.pem",
    ])
    .ok();
    let broker = Broker::start(&t, &exe, |port| crl_mode(&t, port, "cafile.pem"));

    // Active: publishes and receives.
    assert!(
        broker.publish(&t, "dev-a", "fleet/a", "hello-a"),
        "dev-a refused while active"
    );
    assert_eq!(broker.receive(&t, "dev-a", "fleet/a"), "hello-a");
    let log = broker.log_text();
    assert!(
        log.contains("u'dev-a'"),
        "the CN is the MQTT username\n{log}"
    );

    // Deactivated + new CRL + SIGHUP: refused, while dev-b still connects.
    t.devcert(&[
        "registry",
        "--db",
        "reg.db",
        "device",
        "deactivate",
        &serial_a,
    ])
    .ok();
    crl(&t);
    broker.reload();
    broker.wait_until("dev-a refused", || {
        !broker.publish(&t, "dev-a", "fleet/a", "x")
    });
    assert!(
        broker.publish(&t, "dev-b", "fleet/b", "hello-b"),
        "dev-b refused"
    );
    assert_eq!(broker.receive(&t, "dev-b", "fleet/b"), "hello-b");
    let log = broker.log_text();
    assert!(log.contains("certificate verify failed"), "{log}");

    // Activated + CRL + SIGHUP: accepted again.
    t.devcert(&[
        "registry",
        "--db",
        "reg.db",
        "device",
        "activate",
        &serial_a.to_lowercase(),
    ])
    .ok();
    crl(&t);
    broker.reload();
    broker.wait_until("dev-a accepted again", || {
        broker.publish(&t, "dev-a", "fleet/a", "again")
    });
    assert_eq!(broker.receive(&t, "dev-a", "fleet/a"), "again");

    // Deleted: the broker decision (`registry auth`) registers it again.
    t.devcert(&["registry", "--db", "reg.db", "device", "delete", &serial_a])
        .ok();
    t.devcert(&["registry", "--db", "reg.db", "device", "show", &serial_a])
        .fails();
    let out = t
        .devcert(&[
            "registry",
            "--db",
            "reg.db",
            "auth",
            "dev-a/client_chain.crt",
        ])
        .code(0);
    assert!(
        out.stdout_str().contains("registered"),
        "{}",
        out.describe()
    );
    let shown = t
        .devcert(&[
            "registry", "--db", "reg.db", "device", "show", &serial_a, "--json",
        ])
        .ok();
    let v: serde_json::Value = serde_json::from_slice(&shown.stdout).unwrap();
    assert_eq!(v["status"], "active");

    // Revoked (named by its certificate file) + CRL (replacing the file it
    // wrote, without --force) + SIGHUP: refused. Deleted afterwards, it
    // stays on the CRL: still refused by the broker and by `auth`, which
    // does not register it again.
    let reg_cmd = |args: &[&str]| t.devcert(&[&["registry", "--db", "reg.db"][..], args].concat());
    reg_cmd(&["device", "revoke", "dev-a/client.crt"]).ok();
    let crl_again = || {
        reg_cmd(&[
            "crl", "--ca", "CA.crt", "--ca-key", "CA.key", "-o", "ca.crl",
        ])
        .ok();
    };
    crl_again();
    broker.reload();
    broker.wait_until("dev-a refused once revoked", || {
        !broker.publish(&t, "dev-a", "fleet/a", "x")
    });
    reg_cmd(&["device", "delete", &serial_a]).ok();
    crl_again();
    broker.reload();
    assert!(
        !broker.publish(&t, "dev-a", "fleet/a", "x"),
        "a revoked device was admitted once deleted"
    );
    assert!(
        broker.publish(&t, "dev-b", "fleet/b", "still"),
        "dev-b refused"
    );
    let out = reg_cmd(&["auth", "dev-a/client_chain.crt"]).code(3);
    assert!(out.stdout_str().contains("revoked"), "{}", out.describe());
    reg_cmd(&["device", "show", &serial_a]).fails();
    let text = t.openssl_ok(&["crl", "-in", "ca.crl", "-noout", "-text"]);
    assert!(
        text.contains(&format!("Serial Number: {serial_a}")) && text.contains("Key Compromise"),
        "{text}"
    );
    drop(broker);
    println!("broker test took {:.2} s", started.elapsed().as_secs_f64());
}

/// `devcert verify --ca CA.crt --crl ca.crl` decides as the broker does
/// (Mosquitto with `cafile` + `crlfile`): the sslclient purpose (clientAuth,
/// not anyExtendedKeyUsage; nsCertType), the CRL check of the leaf only,
/// and the newest of several CRLs from one CA.
#[test]
fn broker_and_devcert_verify_agree() {
    let Some(exe) = find_mosquitto() else {
        return;
    };
    let t = TestDir::new();
    t.ec_ca("CA");
    t.openssl_intermediate("INT", "CA");
    let (past, future) = ("20200101000000Z", "20991231000000Z");
    let ca = CaDb::new(&t, "CA", AKI);
    let int = CaDb::new(&t, "INT", AKI);
    let server_ext = "basicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n\
                      subjectAltName=DNS:localhost,IP:127.0.0.1\n";
    // (device, issuer db, extensions, accepted by the broker)
    let devices: [(&str, &CaDb, &str, bool); 8] = [
        ("client", &ca, LEAF_EXT, true),
        (
            "any-eku",
            &ca,
            "extendedKeyUsage=anyExtendedKeyUsage\n",
            false,
        ),
        ("server-eku", &ca, "extendedKeyUsage=serverAuth\n", false),
        ("ns-server", &ca, "nsCertType=server\n", false),
        ("ns-client", &ca, "nsCertType=client\n", true),
        ("released", &ca, LEAF_EXT, true),
        ("revoked-late", &ca, LEAF_EXT, false),
        ("under-revoked-int", &int, LEAF_EXT, true),
    ];
    ca.leaf_dated("localhost", server_ext, past, future);
    for (dev, db, ext, _) in &devices {
        db.leaf_dated(dev, ext, past, future);
    }
    for dev in devices.iter().map(|d| d.0).chain(["localhost"]) {
        let dir = if dev == "localhost" { "server" } else { dev };
        let mut chain = t.read(&format!("{dev}.crt"));
        t.write(&format!("{dir}/client.crt"), &chain);
        if dev == "under-revoked-int" {
            chain.extend(t.read("INT.crt"));
        }
        t.write(&format!("{dir}/client_chain.crt"), chain);
        t.openssl_ok(&[
            "pkcs8",
            "-topk8",
            "-nocrypt",
            "-in",
            &format!("{dev}.key"),
            "-out",
            &format!("{dir}/client_pkcs8.key"),
        ]);
    }
    // An older CRL lists `released`; the newer one lists `revoked-late`
    // and INT (which the leaf-only check does not look at).
    let (old, new) = (CaDb::new(&t, "CA", AKI), CaDb::new(&t, "CA", AKI));
    old.revoke("released.crt");
    new.revoke("revoked-late.crt");
    new.revoke("INT.crt");
    old.crl(
        "old.crl",
        &[
            "-crl_lastupdate",
            "20250101000000Z",
            "-crl_nextupdate",
            future,
        ],
    );
    new.crl(
        "new.crl",
        &[
            "-crl_lastupdate",
            "20250601000000Z",
            "-crl_nextupdate",
            future,
        ],
    );
    int.crl("int.crl", &[]);
    t.write(
        "ca.crl",
        [t.read("old.crl"), t.read("new.crl"), t.read("int.crl")].concat(),
    );
    let broker = Broker::start(&t, &exe, |port| crl_mode(&t, port, "CA.crt"));
    for (dev, _, _, expected) in &devices {
        let broker_ok = broker.publish(&t, dev, "fleet/x", dev);
        let out = t.devcert(&[
            "verify",
            "--ca",
            "CA.crt",
            "--crl",
            "ca.crl",
            &format!("{dev}/client_chain.crt"),
        ]);
        let devcert_ok = out.code == Some(0);
        assert!(
            broker_ok == *expected && devcert_ok == *expected,
            "{dev}: expected {expected}, broker {broker_ok}, devcert {devcert_ok}\n{}\nbroker log:\n{}",
            out.describe(),
            broker.log_text()
        );
    }
    // Checking the whole path notices the revoked intermediate.
    t.devcert(&[
        "verify",
        "--ca",
        "CA.crt",
        "--crl",
        "ca.crl",
        "--crl-check-all",
        "under-revoked-int/client_chain.crt",
    ])
    .code(3);
}

/// CLI.md "CA keys in an HSM": the CA key made in a SoftHSM2 token signs
/// the broker's certificate, the devices and the CRL; Mosquitto accepts the
/// device and refuses the one the token-signed CRL holds.
#[test]
fn broker_accepts_devices_and_crl_signed_in_a_token() {
    let Some(exe) = find_mosquitto() else {
        return;
    };
    let t = TestDir::new();
    let Some(tok) = token(&t) else { return };
    let key = tok.uri("broker-ca");
    tok.devcert(&[
        "ca",
        "--subject",
        "/CN=Token Broker CA",
        "--key-out",
        &key,
        "-o",
        "CA.crt",
    ])
    .ok();
    t.write(
        "server.cfg",
        "basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\n\
         extendedKeyUsage=serverAuth\nsubjectAltName=DNS:localhost,IP:127.0.0.1\n",
    );
    tok.devcert(&[
        "issue",
        "--cn",
        "localhost",
        "--ca",
        "CA.crt",
        "--ca-key",
        &key,
        "--profile",
        "server.cfg",
        "--out-dir",
        "server",
    ])
    .ok();
    for dev in ["dev-a", "dev-b"] {
        tok.devcert(&[
            "issue",
            "--cn",
            dev,
            "--ca",
            "CA.crt",
            "--ca-key",
            &key,
            "--registry",
            "reg.db",
            "--out-dir",
            dev,
        ])
        .ok();
    }
    t.devcert(&[
        "registry",
        "--db",
        "reg.db",
        "device",
        "deactivate",
        "dev-b/client.crt",
    ])
    .ok();
    tok.devcert(&[
        "registry", "--db", "reg.db", "crl", "--ca", "CA.crt", "--ca-key", &key, "-o", "ca.crl",
    ])
    .ok();
    let broker = Broker::start(&t, &exe, |port| crl_mode(&t, port, "CA.crt"));
    assert!(
        broker.publish(&t, "dev-a", "token/a", "signed-in-a-token"),
        "dev-a refused"
    );
    assert_eq!(broker.receive(&t, "dev-a", "token/a"), "signed-in-a-token");
    assert!(
        !broker.publish(&t, "dev-b", "token/b", "x"),
        "dev-b, held by the token-signed CRL, was accepted"
    );
}
