//! `devcert verify` against `openssl verify`: every verdict of the matrix is
//! computed by both and must agree, and must be the verdict the case is
//! built for. OpenSSL runs as a broker verifies a client certificate:
//! `-purpose sslclient` (libssl's server side uses the ssl_client purpose),
//! `-crl_check` when a CRL is given (what Mosquitto's `crlfile` sets).
//! Fixtures are made with openssl only.
mod common;
use common::*;

/// One row of the matrix.
struct Case {
    name: &'static str,
    file: &'static str,
    ca: &'static str,
    untrusted: &'static [&'static str],
    crls: &'static [&'static str],
    at: Option<String>,
    strict: bool,
    crl_check_all: bool,
    /// Also give the file itself to openssl as -untrusted (it verifies only
    /// the first certificate of a file).
    chain_file: bool,
    expect_ok: bool,
}

impl Case {
    fn new(name: &'static str, file: &'static str, ca: &'static str, expect_ok: bool) -> Self {
        Case {
            name,
            file,
            ca,
            untrusted: &[],
            crls: &[],
            at: None,
            strict: false,
            crl_check_all: false,
            chain_file: false,
            expect_ok,
        }
    }
    fn untrusted(mut self, u: &'static [&'static str]) -> Self {
        self.untrusted = u;
        self
    }
    fn crls(mut self, c: &'static [&'static str]) -> Self {
        self.crls = c;
        self
    }
    fn at(mut self, unix: i64) -> Self {
        self.at = Some(unix.to_string());
        self
    }
    fn strict(mut self) -> Self {
        self.strict = true;
        self
    }
    fn crl_check_all(mut self) -> Self {
        self.crl_check_all = true;
        self
    }
    fn chain_file(mut self) -> Self {
        self.chain_file = true;
        self
    }

    /// (devcert accepted, devcert output, openssl accepted, openssl output)
    fn run(&self, t: &TestDir) -> (bool, String, bool, String) {
        let mut d: Vec<String> = vec!["verify".into(), "--ca".into(), self.ca.into()];
        let mut o: Vec<String> = vec![
            "verify".into(),
            "-purpose".into(),
            "sslclient".into(),
            "-CAfile".into(),
            self.ca.into(),
        ];
        for u in self.untrusted {
            d.extend(["--untrusted".into(), u.to_string()]);
            o.extend(["-untrusted".into(), u.to_string()]);
        }
        if self.chain_file {
            o.extend(["-untrusted".into(), self.file.into()]);
        }
        for c in self.crls {
            d.extend(["--crl".into(), c.to_string()]);
            o.extend(["-CRLfile".into(), c.to_string()]);
        }
        if !self.crls.is_empty() {
            o.push(
                if self.crl_check_all {
                    "-crl_check_all"
                } else {
                    "-crl_check"
                }
                .into(),
            );
        }
        if self.crl_check_all {
            d.push("--crl-check-all".into());
        }
        if let Some(at) = &self.at {
            let secs: i64 = at.parse().unwrap();
            let rfc3339 = time::OffsetDateTime::from_unix_timestamp(secs)
                .unwrap()
                .format(&time::format_description::well_known::Rfc3339)
                .unwrap();
            d.extend(["--at".into(), rfc3339]);
            o.extend(["-attime".into(), at.clone()]);
        }
        if self.strict {
            d.push("--strict".into());
            o.push("-x509_strict".into());
        }
        d.push(self.file.into());
        o.push(self.file.into());
        let dv: Vec<&str> = d.iter().map(String::as_str).collect();
        let ov: Vec<&str> = o.iter().map(String::as_str).collect();
        let dev = t.devcert(&dv);
        assert_no_panic(&dev);
        let dev_ok = match dev.code {
            Some(0) if dev.stdout_str() == "OK\n" => true,
            Some(3) if dev.stdout_str().starts_with("REJECTED: ") => false,
            _ => panic!(
                "case {}: expected a verdict (OK exit 0 / REJECTED exit 3)\n{}",
                self.name,
                dev.describe()
            ),
        };
        let ssl = t.openssl(&ov);
        let ssl_ok = ssl.code == Some(0) && ssl.stdout_str().contains(": OK");
        (dev_ok, dev.text(), ssl_ok, ssl.text())
    }
}

/// Runs every case; all mismatches are reported together.
fn assert_matrix(t: &TestDir, cases: &[Case]) {
    let mut failures = Vec::new();
    for c in cases {
        let (dev_ok, dev, ssl_ok, ssl) = c.run(t);
        if dev_ok != ssl_ok || dev_ok != c.expect_ok {
            failures.push(format!(
                "{}: expected {}, devcert {}, openssl {}\n  devcert: {}\n  openssl: {}",
                c.name,
                verdict(c.expect_ok),
                verdict(dev_ok),
                verdict(ssl_ok),
                dev.trim(),
                ssl.trim().replace('\n', " | ")
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases disagree:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

fn verdict(ok: bool) -> &'static str {
    if ok { "OK" } else { "REJECTED" }
}

/// A self-signed CA `name` with the subject of CA `of` and its own key.
fn impostor_of(t: &TestDir, of: &str, name: &str) {
    let subject = t.cert(&format!("{of}.crt")).get("subject");
    let slash: String = subject.split(',').rev().map(|p| format!("/{p}")).collect();
    t.write("min.cnf", "[req]\ndistinguished_name = dn\n[dn]\n");
    t.openssl_ca_with(name, "min.cnf", &EC_P256, &slash, &[]);
    assert_eq!(t.cert(&format!("{name}.crt")).get("subject"), subject);
}

/// ROOT → INT → deep; ROOT → good; and the odd certificates of the matrix.
fn chain_fixtures(t: &TestDir) {
    t.ec_ca("ROOT");
    t.ec_ca("OTHER");
    impostor_of(t, "ROOT", "IMPOSTOR");
    t.openssl_intermediate("INT", "ROOT");
    t.openssl_leaf("good", "ROOT");
    t.openssl_leaf("deep", "INT");
    t.openssl_leaf("forged", "IMPOSTOR");
    t.write("good.der", t.cert_der("good.crt"));
    t.write(
        "chain.crt",
        [t.read("deep.crt"), t.read("INT.crt")].concat(),
    );

    let leaf_ext = |name: &str, ca: &str, ext: &str| {
        t.ec_csr(name);
        let extfile = format!("{name}.ext");
        t.write(&extfile, ext);
        t.openssl_sign(
            &format!("{name}.csr"),
            ca,
            &format!("{name}.crt"),
            Some(&extfile),
        );
    };
    let ca_ext = |name: &str, ext: &str| {
        let key = format!("{name}.key");
        t.ec_key(&key);
        t.openssl_csr(&key, &format!("/CN={name}"), &format!("{name}.csr"));
        t.write(&format!("{name}.ext"), ext);
        t.openssl_sign(
            &format!("{name}.csr"),
            "ROOT",
            &format!("{name}.crt"),
            Some(&format!("{name}.ext")),
        );
    };
    ca_ext(
        "NONCA",
        "basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature,keyCertSign\n",
    );
    ca_ext(
        "NOKCS",
        "basicConstraints=critical,CA:TRUE\nkeyUsage=critical,digitalSignature,cRLSign\n",
    );
    ca_ext(
        "ANYEKU",
        "basicConstraints=critical,CA:TRUE\nkeyUsage=critical,keyCertSign,cRLSign\n\
         extendedKeyUsage=anyExtendedKeyUsage\n",
    );
    // A root whose own EKU lacks clientAuth (the purpose applies to it too).
    t.openssl_ca_with(
        "SRVROOT",
        "min.cnf",
        &EC_P256,
        "/CN=Server-only Root",
        &["-addext", "extendedKeyUsage=serverAuth"],
    );
    t.openssl_leaf("under-SRVROOT", "SRVROOT");
    for ca in ["NONCA", "NOKCS", "ANYEKU"] {
        leaf_ext(&format!("under-{ca}"), ca, LEAF_EXT);
    }
    leaf_ext(
        "server-only",
        "ROOT",
        "basicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
    );
    leaf_ext(
        "any-eku",
        "ROOT",
        "basicConstraints=CA:FALSE\nextendedKeyUsage=anyExtendedKeyUsage\n",
    );
    leaf_ext(
        "any-and-client",
        "ROOT",
        "extendedKeyUsage=anyExtendedKeyUsage,clientAuth\n",
    );
    leaf_ext("ns-server", "ROOT", "nsCertType=server\n");
    leaf_ext("ns-client", "ROOT", "nsCertType=client,email\n");
    leaf_ext("ku-encipher", "ROOT", "keyUsage=keyEncipherment\n");
    // The seed's profile: keyUsage keyCertSign on a CA:FALSE device cert.
    t.seed_configs();
    t.ec_csr("seed");
    t.openssl_sign("seed.csr", "ROOT", "seed.crt", Some("client.crt.cfg"));
    // `openssl x509 -req` without -extfile: a v1 certificate.
    t.ec_csr("v1");
    t.openssl_sign("v1.csr", "ROOT", "v1.crt", None);
    assert_eq!(t.cert("v1.crt").get("version"), "v1");
}

#[test]
fn chain_matrix_agrees_with_openssl() {
    let t = TestDir::new();
    chain_fixtures(&t);
    let db = CaDb::new(&t, "ROOT", AKI);
    db.leaf_dated("expired", LEAF_EXT, "20200101000000Z", "20210101000000Z");
    let good = t.cert("good.crt");
    let (nb, na) = (good.int("not_before"), good.int("not_after"));
    let cases = vec![
        Case::new("good leaf", "good.crt", "ROOT.crt", true),
        Case::new("DER leaf", "good.der", "ROOT.crt", true),
        Case::new("chain file", "chain.crt", "ROOT.crt", true).chain_file(),
        Case::new("intermediate via --untrusted", "deep.crt", "ROOT.crt", true)
            .untrusted(&["INT.crt"]),
        Case::new("missing intermediate", "deep.crt", "ROOT.crt", false),
        Case::new("another CA", "good.crt", "OTHER.crt", false),
        Case::new("same-name impostor CA", "good.crt", "IMPOSTOR.crt", false),
        Case::new("leaf of the impostor", "forged.crt", "ROOT.crt", false),
        Case::new("expired leaf", "expired.crt", "ROOT.crt", false),
        Case::new("--at before notBefore", "good.crt", "ROOT.crt", false).at(nb - 1),
        Case::new("--at notBefore", "good.crt", "ROOT.crt", true).at(nb),
        Case::new("--at after notAfter", "good.crt", "ROOT.crt", false).at(na + 1),
        Case::new("--at within validity", "good.crt", "ROOT.crt", true).at(na - 60),
        Case::new("non-CA intermediate", "under-NONCA.crt", "ROOT.crt", false)
            .untrusted(&["NONCA.crt"]),
        Case::new(
            "intermediate without keyCertSign",
            "under-NOKCS.crt",
            "ROOT.crt",
            false,
        )
        .untrusted(&["NOKCS.crt"]),
        Case::new(
            "intermediate EKU anyEKU only",
            "under-ANYEKU.crt",
            "ROOT.crt",
            false,
        )
        .untrusted(&["ANYEKU.crt"]),
        Case::new(
            "leaf EKU without clientAuth",
            "server-only.crt",
            "ROOT.crt",
            false,
        ),
        Case::new("leaf EKU anyEKU only", "any-eku.crt", "ROOT.crt", false),
        Case::new(
            "leaf EKU anyEKU + clientAuth",
            "any-and-client.crt",
            "ROOT.crt",
            true,
        ),
        Case::new(
            "nsCertType without SSL client",
            "ns-server.crt",
            "ROOT.crt",
            false,
        ),
        Case::new(
            "nsCertType with SSL client",
            "ns-client.crt",
            "ROOT.crt",
            true,
        ),
        Case::new(
            "keyUsage without digitalSignature",
            "ku-encipher.crt",
            "ROOT.crt",
            false,
        ),
        Case::new("v1 leaf", "v1.crt", "ROOT.crt", true),
        Case::new(
            "keyCertSign on a CA:FALSE leaf",
            "seed.crt",
            "ROOT.crt",
            true,
        ),
        Case::new(
            "keyCertSign on a CA:FALSE leaf, strict",
            "seed.crt",
            "ROOT.crt",
            false,
        )
        .strict(),
        Case::new("good leaf, strict", "good.crt", "ROOT.crt", true).strict(),
    ];
    assert_matrix(&t, &cases);
}

#[test]
fn crl_matrix_agrees_with_openssl() {
    let t = TestDir::new();
    t.ec_ca("ROOT");
    impostor_of(&t, "ROOT", "IMPOSTOR");
    t.openssl_intermediate("INT", "ROOT");
    let root = CaDb::new(&t, "ROOT", AKI);
    let int = CaDb::new(&t, "INT", AKI);
    let (past, future) = ("20200101000000Z", "20991231000000Z");
    root.leaf_dated("ok", LEAF_EXT, past, future);
    root.leaf_dated("revoked", LEAF_EXT, past, future);
    int.leaf_dated("deep", LEAF_EXT, past, future);

    root.crl("root-empty.crl", &[]);
    int.crl("int-empty.crl", &[]);
    // Same database state, two dates: an older CRL without the leaf and a
    // newer one with it, and the other way round.
    let old = [
        "-crl_lastupdate",
        "20250101000000Z",
        "-crl_nextupdate",
        future,
    ];
    let new = [
        "-crl_lastupdate",
        "20250601000000Z",
        "-crl_nextupdate",
        future,
    ];
    root.crl("old-empty.crl", &old);
    root.crl("new-empty.crl", &new);
    root.crl(
        "expired-empty.crl",
        &[
            "-crl_lastupdate",
            "20250701000000Z",
            "-crl_nextupdate",
            "20250702000000Z",
        ],
    );
    root.revoke("revoked.crt");
    root.revoke("INT.crt");
    root.crl("root.crl", &[]);
    root.crl("old-revoked.crl", &old);
    root.crl("new-revoked.crl", &new);
    root.crl(
        "expired.crl",
        &[
            "-crl_lastupdate",
            "20200101000000Z",
            "-crl_nextupdate",
            "20210101000000Z",
        ],
    );
    t.openssl_ok(&[
        "crl",
        "-in",
        "root.crl",
        "-outform",
        "DER",
        "-out",
        "root.der.crl",
    ]);
    // The same name, signed by the impostor's key: with an AKI that names
    // the impostor, and without one (so only the signature tells).
    let imp = CaDb::new(&t, "IMPOSTOR", AKI);
    imp.crl("imp-aki.crl", &[]);
    let imp_bare = CaDb::new(&t, "IMPOSTOR", "");
    imp_bare.crl("imp-bare.crl", &[]);
    // Scope: an issuingDistributionPoint limits what a CRL covers.
    let idp = |name: &str, idp: &str| {
        let db = CaDb::new(
            &t,
            "ROOT",
            &format!("{AKI}issuingDistributionPoint = critical, @idp\n[idp]\n{idp}"),
        );
        db.crl(name, &[]);
    };
    idp("only-ca.crl", "onlyCA = TRUE\n");
    idp("only-user.crl", "onlyuser = TRUE\n");
    idp(
        "idp-uri.crl",
        "fullname = URI:http://crl.example/root.crl\n",
    );
    root.leaf_dated(
        "with-dp",
        &format!("{LEAF_EXT}crlDistributionPoints = URI:http://crl.example/root.crl\n"),
        past,
        future,
    );
    // An entry with reason removeFromCRL does not revoke.
    let removed = CaDb::new(&t, "ROOT", AKI);
    removed.run(&["-revoke", "ok.crt", "-crl_reason", "removeFromCRL"]);
    removed.crl("removed.crl", &[]);
    for (crl, what) in [
        ("removed.crl", "Remove From CRL"),
        ("only-ca.crl", "Only CA Certificates"),
        ("idp-uri.crl", "URI:http://crl.example/root.crl"),
    ] {
        let text = t.openssl_ok(&["crl", "-in", crl, "-noout", "-text"]);
        assert!(text.contains(what), "fixture {crl} lacks {what}:\n{text}");
    }

    let cases = vec![
        Case::new("not revoked", "ok.crt", "ROOT.crt", true).crls(&["root.crl"]),
        Case::new("revoked leaf, PEM CRL", "revoked.crt", "ROOT.crt", false).crls(&["root.crl"]),
        Case::new("revoked leaf, DER CRL", "revoked.crt", "ROOT.crt", false)
            .crls(&["root.der.crl"]),
        Case::new("not revoked, DER CRL", "ok.crt", "ROOT.crt", true).crls(&["root.der.crl"]),
        Case::new("CRL signed by wrong key", "ok.crt", "ROOT.crt", false).crls(&["imp-bare.crl"]),
        Case::new("CRL of another key (AKI)", "ok.crt", "ROOT.crt", false).crls(&["imp-aki.crl"]),
        Case::new("expired CRL", "ok.crt", "ROOT.crt", false).crls(&["expired.crl"]),
        Case::new(
            "no CRL from the leaf's issuer",
            "deep.crt",
            "ROOT.crt",
            false,
        )
        .untrusted(&["INT.crt"])
        .crls(&["root-empty.crl"]),
        // -crl_check: the leaf only; the revoked intermediate goes unnoticed.
        Case::new(
            "revoked intermediate, leaf-only check",
            "deep.crt",
            "ROOT.crt",
            true,
        )
        .untrusted(&["INT.crt"])
        .crls(&["root.crl", "int-empty.crl"]),
        Case::new(
            "revoked intermediate, --crl-check-all",
            "deep.crt",
            "ROOT.crt",
            false,
        )
        .untrusted(&["INT.crt"])
        .crls(&["root.crl", "int-empty.crl"])
        .crl_check_all(),
        Case::new(
            "--crl-check-all, nothing revoked",
            "deep.crt",
            "ROOT.crt",
            true,
        )
        .untrusted(&["INT.crt"])
        .crls(&["root-empty.crl", "int-empty.crl"])
        .crl_check_all(),
        Case::new(
            "--crl-check-all, no CRL of ROOT",
            "deep.crt",
            "ROOT.crt",
            false,
        )
        .untrusted(&["INT.crt"])
        .crls(&["int-empty.crl"])
        .crl_check_all(),
        Case::new(
            "newest CRL lists the leaf",
            "revoked.crt",
            "ROOT.crt",
            false,
        )
        .crls(&["old-empty.crl", "new-revoked.crl"]),
        Case::new(
            "newest CRL lists the leaf (given first)",
            "revoked.crt",
            "ROOT.crt",
            false,
        )
        .crls(&["new-revoked.crl", "old-empty.crl"]),
        Case::new("newest CRL drops the leaf", "revoked.crt", "ROOT.crt", true)
            .crls(&["old-revoked.crl", "new-empty.crl"]),
        Case::new(
            "newest CRL drops the leaf (given first)",
            "revoked.crt",
            "ROOT.crt",
            true,
        )
        .crls(&["new-empty.crl", "old-revoked.crl"]),
        Case::new(
            "newer but expired CRL loses",
            "revoked.crt",
            "ROOT.crt",
            false,
        )
        .crls(&["expired-empty.crl", "old-revoked.crl"]),
        Case::new(
            "an expired CRL beside a valid one",
            "ok.crt",
            "ROOT.crt",
            true,
        )
        .crls(&["expired.crl", "root.crl"]),
    ];
    assert_matrix(&t, &cases);
}

#[test]
fn unreadable_input_is_an_error_not_a_verdict() {
    let t = TestDir::new();
    t.ec_ca("CA");
    t.openssl_leaf("client", "CA");
    t.write("garbage", "not a certificate\n");
    t.write("empty", "");
    let runs: [(&[&str], &str); 7] = [
        (&["verify", "--ca", "CA.crt", "missing.crt"], "missing.crt"),
        (&["verify", "--ca", "CA.crt", "garbage"], "garbage"),
        (&["verify", "--ca", "CA.crt", "empty"], "empty"),
        (&["verify", "--ca", "garbage", "client.crt"], "garbage"),
        (
            &[
                "verify",
                "--ca",
                "CA.crt",
                "--untrusted",
                "garbage",
                "client.crt",
            ],
            "garbage",
        ),
        (
            &["verify", "--ca", "CA.crt", "--crl", "garbage", "client.crt"],
            "garbage",
        ),
        // A certificate where a CRL was expected.
        (
            &["verify", "--ca", "CA.crt", "--crl", "CA.crt", "client.crt"],
            "CA.crt",
        ),
    ];
    for (args, file) in runs {
        let out = t.devcert(args);
        assert_no_panic(&out);
        out.fails_naming(&[file]);
    }
    // --crl-check-all without a CRL is a usage error.
    t.devcert(&["verify", "--ca", "CA.crt", "--crl-check-all", "client.crt"])
        .usage_error();
}

/// `verify` says when an expired certificate ended and when a not yet
/// valid one starts (issue 18), with the dates Python `cryptography` reads.
#[test]
fn expiry_verdicts_give_the_dates() {
    let t = TestDir::new();
    t.ec_ca("CA");
    t.devcert(&[
        "issue",
        "--cn",
        "d",
        "--days",
        "30",
        "--ca",
        "CA.crt",
        "--ca-key",
        "CA.key",
        "--out-dir",
        "d",
    ])
    .ok();
    let info = t.cert("d/client.crt");
    let rfc3339 = |secs: i64| {
        let out = Cmd::new(t.root(), "date")
            .args(["-u", "-d", &format!("@{secs}"), "+%Y-%m-%dT%H:%M:%SZ"])
            .run()
            .ok();
        out.stdout_str().trim().to_string()
    };
    let (nb, na) = (
        rfc3339(info.int("not_before")),
        rfc3339(info.int("not_after")),
    );
    let early = rfc3339(info.int("not_before") - DAY);
    let late = rfc3339(info.int("not_after") + DAY);
    for (at, said) in [
        (
            early,
            format!("certificate is not yet valid (it starts {nb})"),
        ),
        (late, format!("certificate has expired (it ended {na})")),
    ] {
        let out = t
            .devcert(&["verify", "--ca", "CA.crt", "--at", &at, "d/client.crt"])
            .code(3);
        assert!(out.stdout_str().contains(&said), "{}", out.describe());
    }
}
