//! `devcert sign` (replaces `openssl x509 -req -CA -CAkey -CAcreateserial
//! -extfile`): fidelity items 2–6 and the safety refusals, checked with
//! `openssl verify/x509` and Python `cryptography`.
mod common;
use common::*;

/// `devcert sign --csr CSR --ca CA.crt --ca-key CA.key [extra] -o OUT`.
fn sign(t: &TestDir, csr: &str, ca: &str, out: &str, extra: &[&str]) -> Out {
    let crt = format!("{ca}.crt");
    let key = format!("{ca}.key");
    let mut args = vec!["sign", "--csr", csr, "--ca", &crt, "--ca-key", &key];
    args.extend_from_slice(extra);
    args.extend_from_slice(&["-o", out]);
    t.devcert(&args)
}

#[track_caller]
fn assert_same_extensions(t: &TestDir, dev: &str, reference: &str) {
    t.prefetch(&[("cert", &[dev]), ("cert", &[reference])]);
    let d = t.cert(dev).all("ext");
    let r = t.cert(reference).all("ext");
    assert_eq!(
        d, r,
        "extension list (OID,critical,DER value) differs from openssl's\n devcert: {d:#?}\n openssl: {r:#?}"
    );
}

#[track_caller]
fn assert_verifies(t: &TestDir, ca: &str, crt: &str) {
    let ca_crt = format!("{ca}.crt");
    t.prefetch(&[
        ("issued", &[crt, &ca_crt]),
        ("cert", &[crt]),
        ("cert", &[&ca_crt]),
    ]);
    t.assert_openssl_verify(&["-CAfile", &format!("{ca}.crt")], crt);
    t.assert_issued_by(crt, &format!("{ca}.crt"));
}

fn set(v: Vec<String>) -> std::collections::BTreeSet<String> {
    v.into_iter().collect()
}

// ---------------------------------------------------------------------------
// Chains verify; names and key ids are the CA's own bytes
// ---------------------------------------------------------------------------

#[test]
fn ec_csr_signed_by_ec_ca_verifies() {
    let t = TestDir::new();
    t.ec_ca("CA");
    t.ec_csr("client");
    sign(&t, "client.csr", "CA", "client.crt", &[]).ok();
    assert_verifies(&t, "CA", "client.crt");
    let c = t.cert("client.crt");
    assert_eq!(c.get("version"), "v3");
    assert_eq!(
        c.get("sig_name"),
        "ecdsa-with-SHA256",
        "signature algorithm follows the CA key"
    );
    assert_eq!(
        first_pem_label(&t.read_str("client.crt")).as_deref(),
        Some("CERTIFICATE")
    );
    t.assert_mode("client.crt", 0o644);
}

#[test]
fn rsa_csr_signed_by_rsa_ca_verifies() {
    let t = TestDir::new();
    t.rsa_ca("CA");
    t.rsa_csr("client");
    sign(&t, "client.csr", "CA", "client.crt", &[]).ok();
    assert_verifies(&t, "CA", "client.crt");
    assert_eq!(
        t.cert("client.crt").get("sig_name"),
        "sha256WithRSAEncryption"
    );
}

#[test]
fn mixed_algorithms_verify() {
    let t = TestDir::new();
    t.rsa_ca("RCA");
    t.ec_ca("ECA");
    t.ec_csr("ecdev");
    t.rsa_csr("rsadev");
    sign(&t, "ecdev.csr", "RCA", "ec-by-rsa.crt", &[]).ok();
    sign(&t, "rsadev.csr", "ECA", "rsa-by-ec.crt", &[]).ok();
    assert_verifies(&t, "RCA", "ec-by-rsa.crt");
    assert_verifies(&t, "ECA", "rsa-by-ec.crt");
    assert_eq!(
        t.cert("ec-by-rsa.crt").get("sig_name"),
        "sha256WithRSAEncryption"
    );
    assert_eq!(t.cert("rsa-by-ec.crt").get("sig_name"), "ecdsa-with-SHA256");
}

#[test]
fn subject_is_the_csr_subject_and_issuer_the_ca_subject() {
    let t = TestDir::new();
    t.ec_ca("CA");
    t.seed_configs();
    t.ec_key("client.key");
    t.openssl_ok(&[
        "req",
        "-new",
        "-key",
        "client.key",
        "-config",
        "client.csr.cfg",
        "-out",
        "client.csr",
    ]);
    sign(&t, "client.csr", "CA", "client.crt", &[]).ok();
    let c = t.cert("client.crt");
    assert_eq!(
        c.get("subject_der"),
        t.csr("client.csr").get("subject_der"),
        "subject not copied from CSR"
    );
    assert_eq!(
        c.get("issuer_der"),
        t.cert("CA.crt").get("subject_der"),
        "issuer not the CA subject"
    );
}

#[test]
fn issuer_is_byte_identical_for_printablestring_ca() {
    let t = TestDir::new();
    t.printable_ca("CA");
    t.ec_csr("client");
    sign(&t, "client.csr", "CA", "client.crt", &[]).ok();
    let c = t.cert("client.crt");
    let ca = t.cert("CA.crt");
    assert_eq!(
        c.get("issuer_der"),
        ca.get("subject_der"),
        "issuer re-encoded: PrintableString CA subject not copied byte for byte"
    );
    assert_eq!(c.get("issuer_crypto_der"), ca.get("subject_crypto_der"));
    assert_verifies(&t, "CA", "client.crt");
}

#[test]
fn issuer_is_byte_identical_for_repeated_ou_and_multivalued_rdn() {
    let t = TestDir::new();
    t.multivalue_ca("CA");
    t.ec_csr("client");
    sign(&t, "client.csr", "CA", "client.crt", &[]).ok();
    let c = t.cert("client.crt");
    let ca = t.cert("CA.crt");
    assert_eq!(
        c.get("issuer_der"),
        ca.get("subject_der"),
        "issuer re-encoded (OU=X,OU=Y / CN+UID)"
    );
    assert_eq!(c.get("issuer"), "CN=a+UID=b,OU=Y,OU=X,O=A");
    assert_verifies(&t, "CA", "client.crt");
}

#[test]
fn aki_is_the_ca_custom_ski() {
    let t = TestDir::new();
    t.custom_ski_ca("CA");
    t.ec_csr("client");
    sign(&t, "client.csr", "CA", "client.crt", &[]).ok();
    let c = t.cert("client.crt");
    assert_eq!(
        c.get("aki_keyid"),
        "0102030405060708",
        "AKI key id must be the CA's own SKI"
    );
    assert_verifies(&t, "CA", "client.crt");
    // Also with the seed profile (authorityKeyIdentifier=keyid,issuer).
    t.seed_configs();
    sign(
        &t,
        "client.csr",
        "CA",
        "seed.crt",
        &["--profile", "client.crt.cfg"],
    )
    .ok();
    let s = t.cert("seed.crt");
    assert_eq!(s.get("aki_keyid"), "0102030405060708");
    assert_eq!(
        s.get("aki_issuer"),
        "0",
        "keyid,issuer must hold only the key id when the CA has one"
    );
}

#[test]
fn aki_equals_ca_ski_for_ordinary_cas() {
    let t = TestDir::new();
    t.rsa_ca("CA");
    t.ec_csr("client");
    sign(&t, "client.csr", "CA", "client.crt", &[]).ok();
    assert_eq!(
        t.cert("client.crt").get("aki_keyid"),
        t.cert("CA.crt").get("ski")
    );
}

// ---------------------------------------------------------------------------
// Profiles: same extensions as openssl x509 -req -extfile
// ---------------------------------------------------------------------------

#[test]
fn seed_profile_rsa_matches_openssl_and_warns_keycertsign() {
    let t = TestDir::new();
    t.rsa_ca("CA");
    t.seed_configs();
    t.rsa_key("client.key");
    t.openssl_ok(&[
        "req",
        "-new",
        "-key",
        "client.key",
        "-config",
        "client.csr.cfg",
        "-out",
        "client.csr",
    ]);
    sign(
        &t,
        "client.csr",
        "CA",
        "client.crt",
        &["--profile", "client.crt.cfg"],
    )
    .ok()
    .warns_about(&["keyCertSign"]);
    t.openssl_sign("client.csr", "CA", "ref.crt", Some("client.crt.cfg"));
    assert_same_extensions(&t, "client.crt", "ref.crt");
    let c = t.cert("client.crt");
    assert_eq!(
        c.ext_oids(),
        vec![OID_AKI, OID_BC, OID_KU, OID_SKI],
        "order: profile's, then SKI"
    );
    assert_eq!(
        c.get("ku"),
        "digital_signature,content_commitment,key_encipherment,data_encipherment,key_cert_sign"
    );
    assert_eq!(
        c.get("ski"),
        c.get("ski_method1"),
        "added SKI must be the SHA-1 hash (as openssl)"
    );
    assert_verifies(&t, "CA", "client.crt");
}

#[test]
fn seed_profile_ec_matches_openssl_and_warns_encipherment() {
    let t = TestDir::new();
    t.ec_ca("CA");
    t.seed_configs();
    t.ec_key("client.key");
    t.openssl_ok(&[
        "req",
        "-new",
        "-key",
        "client.key",
        "-config",
        "client.csr.cfg",
        "-out",
        "client.csr",
    ]);
    sign(
        &t,
        "client.csr",
        "CA",
        "client.crt",
        &["--profile", "client.crt.cfg"],
    )
    .ok()
    .warns_about(&["keyCertSign"])
    .warns_about(&["keyEncipherment", "dataEncipherment"]);
    t.openssl_sign("client.csr", "CA", "ref.crt", Some("client.crt.cfg"));
    assert_same_extensions(&t, "client.crt", "ref.crt");
    assert_verifies(&t, "CA", "client.crt");
}

/// Sign with devcert and openssl using the same profile; compare extensions.
#[track_caller]
fn profile_like_openssl(t: &TestDir, name: &str, profile: &str, section: Option<&str>) {
    let file = format!("{name}.ext");
    t.write(&file, profile);
    let dev = format!("{name}.dev.crt");
    let refc = format!("{name}.ref.crt");
    let mut extra = vec!["--profile", file.as_str()];
    if let Some(s) = section {
        extra.extend_from_slice(&["--extensions", s]);
    }
    sign(t, "client.csr", "CA", &dev, &extra).ok();
    let mut args = vec![
        "x509",
        "-req",
        "-in",
        "client.csr",
        "-CA",
        "CA.crt",
        "-CAkey",
        "CA.key",
        "-set_serial",
        "1",
        "-days",
        "365",
        "-extfile",
        &file,
        "-out",
        &refc,
    ];
    if let Some(s) = section {
        args.extend_from_slice(&["-extensions", s]);
    }
    t.openssl_ok(&args);
    assert_same_extensions(t, &dev, &refc);
}

#[test]
fn profiles_with_critical_eku_san_and_aki_variants_match_openssl() {
    // Every profile here names authorityKeyIdentifier: OpenSSL 3.0 also adds
    // AKI=keyid when a profile names none, which CLI.md does not describe
    // (it only mentions the added SKI), so that case is left out.
    let t = TestDir::new();
    t.ec_ca("CA");
    t.ec_csr("client");
    profile_like_openssl(
        &t,
        "full",
        "basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\n\
         extendedKeyUsage=clientAuth,serverAuth\n\
         subjectAltName=DNS:dev.example.com,IP:10.1.2.3,email:dev@example.com,URI:urn:dev:1\n\
         authorityKeyIdentifier=keyid\n",
        None,
    );
    profile_like_openssl(
        &t,
        "noski",
        "basicConstraints=CA:FALSE\nsubjectKeyIdentifier=none\nauthorityKeyIdentifier=keyid,issuer\n",
        None,
    );
    profile_like_openssl(
        &t,
        "issuer_always",
        "authorityKeyIdentifier=keyid,issuer:always\nbasicConstraints=critical,CA:FALSE\n",
        None,
    );
    profile_like_openssl(
        &t,
        "explicit_ski",
        "subjectKeyIdentifier=hash\nkeyUsage=digitalSignature\nextendedKeyUsage=critical,clientAuth\n\
         authorityKeyIdentifier=keyid\n",
        None,
    );
    profile_like_openssl(
        &t,
        "san_section",
        "basicConstraints=CA:FALSE\nsubjectAltName=@alt_names\nauthorityKeyIdentifier=keyid,issuer\n\n[alt_names]\nDNS.1=a.example\n\
         DNS.2=b.example\nIP.1=127.0.0.1\nemail.1=x@y.example\n",
        None,
    );
    let i = t.cert("issuer_always.dev.crt");
    assert_eq!(
        i.get("aki_issuer"),
        "1",
        "issuer:always must add issuer name + serial"
    );
}

#[test]
fn extensions_option_selects_a_section() {
    let t = TestDir::new();
    t.ec_ca("CA");
    t.ec_csr("client");
    profile_like_openssl(
        &t,
        "sections",
        "basicConstraints=critical,CA:TRUE\n\n[v3_device]\nbasicConstraints=critical,CA:FALSE\n\
         keyUsage=critical,digitalSignature\nextendedKeyUsage=clientAuth\nauthorityKeyIdentifier=keyid\n",
        Some("v3_device"),
    );
    assert_eq!(
        t.cert("sections.dev.crt").get("bc"),
        "ca=0,pathlen=None,critical=1"
    );
}

#[test]
fn unknown_extension_in_profile_is_an_error_naming_the_line() {
    let t = TestDir::new();
    t.ec_ca("CA");
    t.ec_csr("client");
    t.write(
        "bad.ext",
        "basicConstraints=CA:FALSE\nfrobnicateExtension = yes\n",
    );
    let out = sign(
        &t,
        "client.csr",
        "CA",
        "client.crt",
        &["--profile", "bad.ext"],
    )
    .fails();
    assert!(
        out.stderr.contains("bad.ext")
            && (out.stderr.contains(":2") || out.stderr.to_lowercase().contains("line 2")),
        "expected the error to name bad.ext and line 2\n{}",
        out.describe()
    );
    t.assert_no_file("client.crt");
}

// ---------------------------------------------------------------------------
// The default `device` profile
// ---------------------------------------------------------------------------

#[track_caller]
fn assert_device_profile(t: &TestDir, crt: &str, ca: &str, rsa: bool) {
    let c = t.cert(crt);
    assert_eq!(
        c.get("bc"),
        "ca=0,pathlen=None,critical=1",
        "basicConstraints critical CA:FALSE"
    );
    assert_eq!(c.get("ku_critical"), "1", "keyUsage must be critical");
    let ku = if rsa {
        "digital_signature,key_encipherment"
    } else {
        "digital_signature"
    };
    assert_eq!(c.get("ku"), ku, "keyUsage");
    assert_eq!(c.get("eku"), OID_CLIENT_AUTH, "extendedKeyUsage clientAuth");
    assert!(!c.get("ski").is_empty(), "subjectKeyIdentifier");
    assert_eq!(
        c.get("aki_keyid"),
        t.cert(&format!("{ca}.crt")).get("ski"),
        "AKI keyid = CA SKI"
    );
    assert_eq!(c.get("aki_issuer"), "0", "device profile AKI: key id only");
    assert_eq!(
        set(c.ext_oids()),
        set(vec![OID_BC, OID_KU, OID_EKU, OID_SKI, OID_AKI]
            .into_iter()
            .map(String::from)
            .collect()),
        "device profile must have exactly BC, KU, EKU, SKI, AKI"
    );
}

#[test]
fn default_device_profile_ec() {
    let t = TestDir::new();
    t.ec_ca("CA");
    t.ec_csr("client");
    sign(&t, "client.csr", "CA", "client.crt", &[])
        .ok()
        .no_warning();
    assert_device_profile(&t, "client.crt", "CA", false);
    // The explicit name gives the same profile.
    sign(
        &t,
        "client.csr",
        "CA",
        "explicit.crt",
        &["--profile", "device"],
    )
    .ok();
    assert_device_profile(&t, "explicit.crt", "CA", false);
}

#[test]
fn default_device_profile_rsa() {
    let t = TestDir::new();
    t.ec_ca("CA");
    t.rsa_csr("client");
    sign(&t, "client.csr", "CA", "client.crt", &[])
        .ok()
        .no_warning();
    assert_device_profile(&t, "client.crt", "CA", true);
}

#[test]
fn device_cert_passes_openssl_x509_strict() {
    let t = TestDir::new();
    t.ec_ca("CA");
    t.ec_csr("client");
    sign(&t, "client.csr", "CA", "client.crt", &[]).ok();
    t.assert_openssl_verify(
        &["-x509_strict", "-purpose", "sslclient", "-CAfile", "CA.crt"],
        "client.crt",
    );
}

#[test]
fn csr_extensions_are_not_copied() {
    let t = TestDir::new();
    t.ec_ca("CA");
    t.ec_key("evil.key");
    let cnf = t.p("fixture-min.cnf");
    t.write("fixture-min.cnf", "[req]\ndistinguished_name = dn\n[dn]\n");
    t.openssl_ok(&[
        "req",
        "-new",
        "-config",
        &cnf,
        "-key",
        "evil.key",
        "-subj",
        "/CN=wants-to-be-a-ca",
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign",
        "-addext",
        "subjectAltName=DNS:evil.example",
        "-out",
        "evil.csr",
    ]);
    sign(&t, "evil.csr", "CA", "evil.crt", &[]).ok();
    let c = t.cert("evil.crt");
    assert_eq!(
        c.get("bc"),
        "ca=0,pathlen=None,critical=1",
        "a CSR asking CA:TRUE must get CA:FALSE"
    );
    assert!(
        !c.get("ku").contains("key_cert_sign"),
        "keyCertSign copied from the CSR"
    );
    assert!(c.opt("san").is_none(), "SAN copied from the CSR");
}

// ---------------------------------------------------------------------------
// Public key, serials, validity, digest
// ---------------------------------------------------------------------------

#[test]
fn spki_is_byte_identical_to_the_csr() {
    let t = TestDir::new();
    t.ec_ca("CA");
    t.ec_csr("ec");
    t.rsa_csr("rsa");
    // A P-256 CSR signed with SHA-384 (rcgen used to mislabel this as P-384).
    t.ec_key("p256-384.key");
    let cnf = t.p("fixture-min.cnf");
    t.openssl_ok(&[
        "req",
        "-new",
        "-sha384",
        "-config",
        &cnf,
        "-key",
        "p256-384.key",
        "-subj",
        "/CN=p256-sha384",
        "-out",
        "p256-384.csr",
    ]);
    // And a P-384 key.
    t.openssl_ok(&[
        "ecparam",
        "-name",
        "secp384r1",
        "-genkey",
        "-out",
        "p384.key",
    ]);
    t.openssl_csr("p384.key", "/CN=p384", "p384.csr");
    for name in ["ec", "rsa", "p256-384", "p384"] {
        let csr = format!("{name}.csr");
        let crt = format!("{name}.crt");
        sign(&t, &csr, "CA", &crt, &[]).ok();
        assert_eq!(
            t.cert(&crt).get("spki_der"),
            t.csr(&csr).get("spki_der"),
            "{name}: certificate SubjectPublicKeyInfo is not the CSR's, byte for byte"
        );
        assert_verifies(&t, "CA", &crt);
    }
    assert_eq!(t.cert("p256-384.crt").get("key"), "ec:secp256r1");
}

#[test]
fn two_hundred_signings_give_distinct_valid_serials_and_no_srl_file() {
    let t = TestDir::new();
    t.ec_ca("CA");
    t.ec_csr("client");
    // 4 threads x 50 processes: concurrent signings must not collide either.
    std::thread::scope(|s| {
        for th in 0..4 {
            let t = &t;
            s.spawn(move || {
                for i in 0..50 {
                    sign(t, "client.csr", "CA", &format!("c{th}-{i:02}.crt"), &[]).ok();
                }
            });
        }
    });
    let files: Vec<String> = (0..4)
        .flat_map(|th| (0..50).map(move |i| format!("c{th}-{i:02}.crt")))
        .collect();
    let args: Vec<&str> = files.iter().map(String::as_str).collect();
    let info = t.info("serials", &args);
    let serials = info.all("serial");
    assert_eq!(serials.len(), 200);
    let mut seen = std::collections::BTreeSet::new();
    for s in &serials {
        let parts: Vec<&str> = s.split(',').collect();
        let (hex, octets, first, positive) = (parts[0], parts[1], parts[2], parts[3]);
        let octets: usize = octets.parse().unwrap();
        assert_eq!(positive, "1", "serial {hex} is not positive");
        assert!(octets <= 20, "serial {hex} has {octets} octets (> 20)");
        assert!(
            octets >= 12,
            "serial {hex} has only {octets} octets: not 16 bytes of entropy"
        );
        assert!(
            first.parse::<u32>().unwrap() < 0x80,
            "serial {hex} encodes as negative"
        );
        assert!(seen.insert(hex.to_string()), "serial {hex} issued twice");
    }
    let stray: Vec<String> = t
        .listing()
        .keys()
        .filter(|k| k.ends_with(".srl") || k.contains("serial"))
        .cloned()
        .collect();
    assert!(stray.is_empty(), "serial files appeared: {stray:?}");
}

#[test]
fn explicit_serial_in_any_spelling() {
    let t = TestDir::new();
    t.ec_ca("CA");
    t.ec_csr("client");
    for (i, spelling) in ["0A1B", "0a1b", "0x0a1b", "0a:1b", "0X0A:1B"]
        .iter()
        .enumerate()
    {
        let crt = format!("s{i}.crt");
        sign(&t, "client.csr", "CA", &crt, &["--serial", spelling]).ok();
        let out = t.openssl_ok(&["x509", "-in", &crt, "-noout", "-serial"]);
        assert_eq!(out.trim(), "serial=0A1B", "--serial {spelling}");
    }
    sign(
        &t,
        "client.csr",
        "CA",
        "big.crt",
        &["--serial", "00FFEEDDCCBBAA99887766554433221100"],
    )
    .ok();
    let out = t.openssl_ok(&["x509", "-in", "big.crt", "-noout", "-serial"]);
    assert_eq!(out.trim(), "serial=FFEEDDCCBBAA99887766554433221100");
}

#[test]
fn days_500_sets_not_after() {
    let t = TestDir::new();
    t.ec_ca("CA");
    t.ec_csr("client");
    let start = now();
    sign(&t, "client.csr", "CA", "client.crt", &["--days", "500"]).ok();
    let end = now();
    let c = t.cert("client.crt");
    let nb = c.int("not_before");
    let na = c.int("not_after");
    assert!(
        nb >= start - 3600 && nb <= end + 60,
        "notBefore {nb} should be now ({start}..{end})"
    );
    assert!(
        na >= start + 500 * DAY - 3600 && na <= end + 500 * DAY + 3600,
        "notAfter {na} should be now+500d ({})",
        start + 500 * DAY
    );
}

#[test]
fn default_validity_is_365_days() {
    let t = TestDir::new();
    t.ec_ca("CA");
    t.ec_csr("client");
    let start = now();
    sign(&t, "client.csr", "CA", "client.crt", &[]).ok();
    let end = now();
    let na = t.cert("client.crt").int("not_after");
    assert!(
        na >= start + 365 * DAY - 3600 && na <= end + 365 * DAY + 3600,
        "default notAfter {na} should be now+365d ({})",
        start + 365 * DAY
    );
}

#[test]
fn not_after_rfc3339() {
    let t = TestDir::new();
    t.ec_ca("CA");
    t.ec_csr("client");
    sign(
        &t,
        "client.csr",
        "CA",
        "client.crt",
        &["--not-after", "2030-01-01T00:00:00Z"],
    )
    .ok();
    let out = t.openssl_ok(&["x509", "-in", "client.crt", "-noout", "-enddate"]);
    assert_eq!(out.trim(), "notAfter=Jan  1 00:00:00 2030 GMT");
    assert_eq!(t.cert("client.crt").int("not_after"), 1_893_456_000);
}

#[test]
fn digest_sha384_and_sha512() {
    let t = TestDir::new();
    t.ec_ca("ECA");
    t.rsa_ca("RCA");
    t.ec_csr("client");
    sign(&t, "client.csr", "ECA", "e384.crt", &["--digest", "sha384"]).ok();
    sign(&t, "client.csr", "RCA", "r384.crt", &["--digest", "sha384"]).ok();
    sign(&t, "client.csr", "ECA", "e512.crt", &["--digest", "sha512"]).ok();
    sign(&t, "client.csr", "RCA", "r512.crt", &["--digest", "sha512"]).ok();
    sign(&t, "client.csr", "RCA", "r256.crt", &["--digest", "sha256"]).ok();
    for (crt, alg) in [
        ("e384.crt", "ecdsa-with-SHA384"),
        ("r384.crt", "sha384WithRSAEncryption"),
        ("e512.crt", "ecdsa-with-SHA512"),
        ("r512.crt", "sha512WithRSAEncryption"),
        ("r256.crt", "sha256WithRSAEncryption"),
    ] {
        let text = t.openssl_ok(&["x509", "-in", crt, "-noout", "-text"]);
        assert!(
            text.contains(&format!("Signature Algorithm: {alg}")),
            "{crt}: expected {alg}:\n{text}"
        );
    }
    assert_verifies(&t, "ECA", "e384.crt");
    assert_verifies(&t, "RCA", "r512.crt");
}

#[test]
fn inputs_in_der_and_from_stdin() {
    let t = TestDir::new();
    t.ec_ca("CA");
    t.ec_csr("client");
    t.openssl_ok(&[
        "req",
        "-in",
        "client.csr",
        "-outform",
        "DER",
        "-out",
        "client.csr.der",
    ]);
    t.openssl_ok(&["x509", "-in", "CA.crt", "-outform", "DER", "-out", "CA.der"]);
    t.openssl_ok(&[
        "pkey",
        "-in",
        "CA.key",
        "-outform",
        "DER",
        "-out",
        "CA.key.der",
    ]);
    t.devcert(&[
        "sign",
        "--csr",
        "client.csr.der",
        "--ca",
        "CA.der",
        "--ca-key",
        "CA.key.der",
        "-o",
        "der.crt",
    ])
    .ok();
    assert_verifies(&t, "CA", "der.crt");
    let csr = t.read("client.csr");
    t.devcert_cmd()
        .stdin(csr)
        .args([
            "sign",
            "--csr",
            "-",
            "--ca",
            "CA.crt",
            "--ca-key",
            "CA.key",
            "-o",
            "stdin.crt",
        ])
        .run()
        .ok();
    assert_verifies(&t, "CA", "stdin.crt");
    // No -o: the certificate goes to stdout.
    let out = t
        .devcert(&[
            "sign",
            "--csr",
            "client.csr",
            "--ca",
            "CA.crt",
            "--ca-key",
            "CA.key",
        ])
        .ok();
    t.write("stdout.crt", &out.stdout);
    assert_verifies(&t, "CA", "stdout.crt");
}

#[test]
fn encrypted_ca_key_with_passphrase_file() {
    // Assumption: sign takes the generic --passphrase-file for an encrypted CA key.
    let t = TestDir::new();
    t.ec_ca("CA");
    t.ec_csr("client");
    t.write("ca.pass", "ca-secret\n");
    t.openssl_ok(&[
        "pkcs8",
        "-topk8",
        "-v2",
        "aes-256-cbc",
        "-in",
        "CA.key",
        "-passout",
        "file:ca.pass",
        "-out",
        "CA.enc.key",
    ]);
    t.devcert(&[
        "sign",
        "--csr",
        "client.csr",
        "--ca",
        "CA.crt",
        "--ca-key",
        "CA.enc.key",
        "--passphrase-file",
        "ca.pass",
        "-o",
        "client.crt",
    ])
    .ok();
    assert_verifies(&t, "CA", "client.crt");
}

// ---------------------------------------------------------------------------
// Refusals: exit 1, one `error:` line, no output file
// ---------------------------------------------------------------------------

#[test]
fn refuses_tampered_csr_pem_and_der() {
    let t = TestDir::new();
    t.ec_ca("CA");
    t.tampered_csr("bad");
    let before = t.listing();
    sign(&t, "bad.csr", "CA", "client.crt", &[]).fails_naming(&["bad.csr"]);
    sign(&t, "bad.der", "CA", "client.crt", &[]).fails_naming(&["bad.der"]);
    t.assert_unchanged(&before);
}

#[test]
fn refuses_ca_key_not_matching_ca_cert() {
    let t = TestDir::new();
    t.ec_ca("CA");
    t.ec_ca("OTHER");
    t.ec_csr("client");
    let before = t.listing();
    let out = t
        .devcert(&[
            "sign",
            "--csr",
            "client.csr",
            "--ca",
            "CA.crt",
            "--ca-key",
            "OTHER.key",
            "-o",
            "client.crt",
        ])
        .fails();
    assert!(
        out.stderr.contains("OTHER.key") || out.stderr.contains("CA.crt"),
        "expected the error to name the CA key or cert\n{}",
        out.describe()
    );
    t.assert_unchanged(&before);
    // An RSA key for an EC CA, too.
    t.rsa_key("rsa.key");
    t.devcert(&[
        "sign",
        "--csr",
        "client.csr",
        "--ca",
        "CA.crt",
        "--ca-key",
        "rsa.key",
        "-o",
        "client.crt",
    ])
    .fails();
    t.assert_no_file("client.crt");
}

#[test]
fn refuses_non_ca_certificates_as_ca() {
    let t = TestDir::new();
    t.non_ca("LEAF");
    t.v1_cert("V1");
    t.ec_csr("client");
    let before = t.listing();
    sign(&t, "client.csr", "LEAF", "client.crt", &[]).fails_naming(&["LEAF.crt"]);
    sign(&t, "client.csr", "V1", "client.crt", &[]).fails_naming(&["V1.crt"]);
    t.assert_unchanged(&before);
}

#[test]
fn refuses_expired_ca() {
    let t = TestDir::new();
    t.expired_ca("OLD");
    t.ec_csr("client");
    let before = t.listing();
    sign(&t, "client.csr", "OLD", "client.crt", &[]).fails_naming(&["OLD.crt"]);
    t.assert_unchanged(&before);
}

#[test]
fn refuses_empty_garbage_and_truncated_inputs() {
    let t = TestDir::new();
    t.ec_ca("CA");
    t.ec_csr("client");
    let csr = t.read_str("client.csr");
    t.write("empty.csr", "");
    t.write("garbage.csr", "hello, I am not a CSR\n");
    t.write("binary.csr", [0x30u8, 0x82, 0xff, 0xff, 0x01, 0x02]);
    t.write("truncated.csr", &csr[..csr.len() / 2]);
    let cert = t.read_str("CA.crt");
    t.write("truncated-ca.crt", &cert[..cert.len() / 2]);
    t.write(
        "garbage.key",
        "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
    );
    let before = t.listing();
    for bad in ["empty.csr", "garbage.csr", "binary.csr", "truncated.csr"] {
        sign(&t, bad, "CA", "client.crt", &[]).fails_naming(&[bad]);
    }
    t.devcert(&[
        "sign",
        "--csr",
        "client.csr",
        "--ca",
        "truncated-ca.crt",
        "--ca-key",
        "CA.key",
        "-o",
        "client.crt",
    ])
    .fails_naming(&["truncated-ca.crt"]);
    t.devcert(&[
        "sign",
        "--csr",
        "client.csr",
        "--ca",
        "CA.crt",
        "--ca-key",
        "garbage.key",
        "-o",
        "client.crt",
    ])
    .fails_naming(&["garbage.key"]);
    // A CSR passed where the CA certificate belongs.
    t.devcert(&[
        "sign",
        "--csr",
        "client.csr",
        "--ca",
        "client.csr",
        "--ca-key",
        "CA.key",
        "-o",
        "client.crt",
    ])
    .fails();
    t.assert_unchanged(&before);
}

#[test]
fn refuses_existing_output_without_force() {
    let t = TestDir::new();
    t.ec_ca("CA");
    t.ec_csr("client");
    t.write("client.crt", "do not touch\n");
    let before = t.listing();
    sign(&t, "client.csr", "CA", "client.crt", &[]).fails_naming(&["client.crt"]);
    t.assert_unchanged(&before);
    sign(&t, "client.csr", "CA", "client.crt", &["--force"]).ok();
    assert_verifies(&t, "CA", "client.crt");
    t.assert_mode("client.crt", 0o644);
}

#[test]
fn missing_inputs_name_the_file() {
    let t = TestDir::new();
    t.ec_ca("CA");
    t.ec_csr("client");
    let base = [
        "--csr",
        "client.csr",
        "--ca",
        "CA.crt",
        "--ca-key",
        "CA.key",
    ];
    for (flag, missing) in [
        ("--csr", "nope.csr"),
        ("--ca", "nope.crt"),
        ("--ca-key", "nope.key"),
    ] {
        let mut args = vec!["sign"];
        let mut it = base.iter();
        while let (Some(f), Some(v)) = (it.next(), it.next()) {
            args.push(f);
            args.push(if *f == flag { missing } else { v });
        }
        args.extend_from_slice(&["-o", "client.crt"]);
        t.devcert(&args).fails_naming(&[missing]);
    }
    sign(
        &t,
        "client.csr",
        "CA",
        "client.crt",
        &["--profile", "nope.cfg"],
    )
    .fails_naming(&["nope.cfg"]);
    t.assert_no_file("client.crt");
}

#[test]
fn invalid_option_values_are_usage_errors() {
    let t = TestDir::new();
    t.ec_ca("CA");
    t.ec_csr("client");
    for extra in [
        &["--days", "0"][..],
        &["--days", "-5"],
        &["--days", "many"],
        &["--digest", "md5"],
        &["--not-after", "next tuesday"],
        &["--serial", "XYZ"],
        &["--days", "10", "--not-after", "2030-01-01T00:00:00Z"],
    ] {
        sign(&t, "client.csr", "CA", "client.crt", extra).usage_error();
        t.assert_no_file("client.crt");
    }
}

// ---------------------------------------------------------------------------
// Warnings (exit 0)
// ---------------------------------------------------------------------------

#[test]
fn warns_when_validity_exceeds_the_ca() {
    let t = TestDir::new();
    t.short_ca("CA", 30);
    t.ec_csr("client");
    sign(&t, "client.csr", "CA", "client.crt", &["--days", "365"])
        .ok()
        .warns_about(&["notafter", "expire", "valid", "CA"]);
    assert_verifies(&t, "CA", "client.crt");
    // Within the CA's validity: no warning.
    sign(&t, "client.csr", "CA", "short.crt", &["--days", "10"])
        .ok()
        .no_warning();
}

#[test]
fn warnings_go_to_stderr_and_stdout_has_only_the_certificate() {
    let t = TestDir::new();
    t.ec_ca("CA");
    t.seed_configs();
    t.ec_csr("client");
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
        ])
        .ok()
        .warns_about(&["keyCertSign"]);
    let stdout = out.stdout_str();
    assert!(
        stdout.starts_with("-----BEGIN CERTIFICATE-----") && !stdout.contains("warning"),
        "stdout must carry only the certificate:\n{stdout}"
    );
}
