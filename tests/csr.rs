//! `devcert csr` (replaces `openssl req -new`): the subject must be
//! DER-identical to what `openssl req -new -config` writes for the same
//! config (fidelity item 1), checked with openssl and Python `cryptography`.
mod common;
use common::*;

/// `openssl req -verify` exits 0 even on a bad signature: read the text.
#[track_caller]
fn assert_req_verify_ok(t: &TestDir, csr: &str) {
    let out = t.openssl(&["req", "-verify", "-in", csr, "-noout"]);
    assert!(
        out.code == Some(0) && out.text().contains("verify OK"),
        "expected `openssl req -verify` to say verify OK for {csr}\n{}",
        out.describe()
    );
}

fn rfc2253_subject(t: &TestDir, csr: &str) -> String {
    t.openssl_ok(&[
        "req", "-in", csr, "-noout", "-subject", "-nameopt", "RFC2253",
    ])
}

/// devcert csr and openssl req -new, same key and config: same subject bytes.
#[track_caller]
fn assert_subject_like_openssl(t: &TestDir, cfg_name: &str, cfg: &str, key: &str) {
    t.write(cfg_name, cfg);
    let dev = format!("{cfg_name}.devcert.csr");
    let refc = format!("{cfg_name}.openssl.csr");
    t.devcert(&["csr", "--key", key, "--config", cfg_name, "-o", &dev])
        .ok();
    t.openssl_ok(&[
        "req", "-new", "-key", key, "-config", cfg_name, "-out", &refc,
    ]);
    assert_req_verify_ok(t, &dev);
    t.prefetch(&[("csr", &[&dev]), ("csr", &[&refc]), ("key", &[key])]);
    let d = t.csr(&dev);
    let r = t.csr(&refc);
    assert_eq!(
        rfc2253_subject(t, &dev),
        rfc2253_subject(t, &refc),
        "subject (RFC 2253) differs from openssl's for config:\n{cfg}"
    );
    assert_eq!(
        d.get("subject_der"),
        r.get("subject_der"),
        "subject DER differs from openssl req -new's for config:\n{cfg}\n\
         (devcert: {}, openssl: {})",
        d.get("subject"),
        r.get("subject")
    );
    assert_eq!(d.get("subject_crypto_der"), r.get("subject_crypto_der"));
    assert_eq!(d.get("sig_valid"), "1");
    assert_eq!(d.get("version"), "0", "CSR version must be v1 (0)");
    assert_eq!(
        d.get("spki_der"),
        t.key(key).get("spki_der"),
        "CSR public key is not the key's"
    );
}

#[test]
fn seed_config_subject_is_byte_identical_to_openssl() {
    let t = TestDir::new();
    t.ec_key("client.key");
    assert_subject_like_openssl(&t, "client.csr.cfg", SEED_CSR_CFG, "client.key");
    // And the string types are the ones OpenSSL uses.
    let asn1 = t.openssl_ok(&["asn1parse", "-in", "client.csr.cfg.devcert.csr"]);
    assert!(
        asn1.contains("PRINTABLESTRING   :CN"),
        "C must be PrintableString:\n{asn1}"
    );
    assert!(
        asn1.contains("IA5STRING         :xxx@xxx"),
        "emailAddress must be IA5String:\n{asn1}"
    );
    assert!(
        asn1.contains("UTF8STRING        :client-test"),
        "CN must be UTF8String:\n{asn1}"
    );
}

#[test]
fn seed_config_with_rsa_key() {
    let t = TestDir::new();
    t.rsa_key("client.key");
    assert_subject_like_openssl(&t, "client.csr.cfg", SEED_CSR_CFG, "client.key");
    let d = t.csr("client.csr.cfg.devcert.csr");
    assert_eq!(d.get("key"), "rsa:2048");
    // default_md = sha256 → sha256WithRSAEncryption.
    assert_eq!(d.get("sig_oid"), "1.2.840.113549.1.1.11");
}

#[test]
fn repeated_ou_keeps_order() {
    let t = TestDir::new();
    t.ec_key("k.key");
    let cfg = "[req]\nprompt = no\ndistinguished_name = dn\n[dn]\nC=CN\nO=ALI\n0.OU=MQTT\n1.OU=Devices\n2.OU=Floor 3\nCN=client-test\n";
    assert_subject_like_openssl(&t, "ou.cfg", cfg, "k.key");
    let s = t.csr("ou.cfg.devcert.csr").get("subject");
    assert_eq!(s, "CN=client-test,OU=Floor 3,OU=Devices,OU=MQTT,O=ALI,C=CN");
}

#[test]
fn long_field_names() {
    let t = TestDir::new();
    t.ec_key("k.key");
    let cfg = "[ req ]\nprompt = no\ndistinguished_name = req_dn\n\n[ req_dn ]\n\
        countryName = CN\nstateOrProvinceName = ZJ\nlocalityName = HZ\n\
        organizationName = ALI\norganizationalUnitName = MQTT\n\
        emailAddress = dev@example.com\ncommonName = client-long\n";
    assert_subject_like_openssl(&t, "long.cfg", cfg, "k.key");
}

#[test]
fn utf8_values() {
    let t = TestDir::new();
    t.ec_key("k.key");
    // `utf8 = yes` so the OpenSSL reference does not double-encode (CLI.md:
    // devcert reads configs as UTF-8 like OpenSSL with utf8 = yes).
    let cfg = "[req]\nprompt = no\nutf8 = yes\ndistinguished_name = dn\n[dn]\nC=DE\n\
        L=München\nO=Gerätebau AG 阿里\nOU=Ünits ✓\nCN=gerät-001\n";
    assert_subject_like_openssl(&t, "utf8.cfg", cfg, "k.key");
    let s = t.csr("utf8.cfg.devcert.csr").get("subject");
    assert!(
        s.contains("gerät-001") && s.contains("阿里"),
        "subject lost UTF-8: {s}"
    );
}

#[test]
fn dc_uid_serialnumber_and_friends() {
    let t = TestDir::new();
    t.ec_key("k.key");
    let cfg = "[req]\nprompt = no\ndistinguished_name = dn\n[dn]\n0.DC=com\n1.DC=example\n\
        O=ALI\nUID=device-42\nserialNumber=SN-0001\ndnQualifier=q1\nL=HZ\ntitle=sensor\n\
        CN=client-dc\n";
    assert_subject_like_openssl(&t, "dc.cfg", cfg, "k.key");
    let asn1 = t.openssl_ok(&["asn1parse", "-in", "dc.cfg.devcert.csr"]);
    assert!(
        asn1.contains("IA5STRING         :com"),
        "DC must be IA5String:\n{asn1}"
    );
    assert!(
        asn1.contains("PRINTABLESTRING   :SN-0001"),
        "serialNumber must be PrintableString:\n{asn1}"
    );
}

#[test]
fn comments_blank_lines_and_spacing() {
    let t = TestDir::new();
    t.ec_key("k.key");
    let cfg = "# a comment\n\n[ req ]\n  prompt=no   \n default_md = sha256 # trailing\n\
        distinguished_name=my_dn\n\n[my_dn]\n# the subject\n C = CN\nO =  ALI  \nCN=spaced name\n";
    assert_subject_like_openssl(&t, "c.cfg", cfg, "k.key");
}

#[test]
fn semicolon_comment_lines_are_accepted() {
    // CLI.md lists `;` comments; OpenSSL 3.0 itself rejects a `;` line
    // ("missing equal sign"), so compare with the same config without it.
    let t = TestDir::new();
    t.ec_key("k.key");
    let plain = "[req]\nprompt = no\ndistinguished_name = dn\n[dn]\nO=ALI\nCN=semi\n";
    let semi = "; leading comment\n[req]\nprompt = no\n; inside\ndistinguished_name = dn\n[dn]\nO=ALI\nCN=semi\n";
    t.write("plain.cfg", plain);
    t.write("semi.cfg", semi);
    t.devcert(&[
        "csr", "--key", "k.key", "--config", "semi.cfg", "-o", "semi.csr",
    ])
    .ok();
    t.openssl_ok(&[
        "req",
        "-new",
        "-key",
        "k.key",
        "-config",
        "plain.cfg",
        "-out",
        "plain.csr",
    ]);
    assert_eq!(
        t.csr("semi.csr").get("subject_der"),
        t.csr("plain.csr").get("subject_der")
    );
}

#[test]
fn string_mask_default_pkix_nombstr() {
    let t = TestDir::new();
    t.ec_key("k.key");
    for mask in ["default", "pkix", "nombstr", "utf8only"] {
        let cfg = format!(
            "[req]\nprompt = no\nstring_mask = {mask}\ndistinguished_name = dn\n[dn]\nC=CN\n\
             O=Plain Org\nOU=under_score\nemailAddress=a@b.example\nCN=client-{mask}\n"
        );
        assert_subject_like_openssl(&t, &format!("{mask}.cfg"), &cfg, "k.key");
    }
    let asn1 = t.openssl_ok(&["asn1parse", "-in", "default.cfg.devcert.csr"]);
    assert!(asn1.contains("PRINTABLESTRING   :Plain Org"), "{asn1}");
}

#[test]
fn default_md_sha384_is_used() {
    let t = TestDir::new();
    t.ec_key("k.key");
    let cfg = "[req]\nprompt = no\ndefault_md = sha384\ndistinguished_name = dn\n[dn]\nCN=md\n";
    t.write("md.cfg", cfg);
    t.devcert(&[
        "csr", "--key", "k.key", "--config", "md.cfg", "-o", "md.csr",
    ])
    .ok();
    assert_eq!(
        t.csr("md.csr").get("sig_oid"),
        "1.2.840.10045.4.3.3",
        "expected ecdsa-with-SHA384"
    );
    assert_req_verify_ok(&t, "md.csr");
}

#[test]
fn req_extensions_section_is_requested() {
    let t = TestDir::new();
    t.ec_key("k.key");
    let cfg = "[req]\nprompt = no\ndistinguished_name = dn\nreq_extensions = v3_req\n[dn]\nCN=ext\n\
        [v3_req]\nsubjectAltName = DNS:dev.example.com, IP:10.0.0.1\n";
    t.write("ext.cfg", cfg);
    t.devcert(&[
        "csr", "--key", "k.key", "--config", "ext.cfg", "-o", "ext.csr",
    ])
    .ok();
    let text = t.openssl_ok(&["req", "-in", "ext.csr", "-noout", "-text"]);
    assert!(
        text.contains("DNS:dev.example.com") && text.contains("IP Address:10.0.0.1"),
        "requested SAN missing from openssl req -text:\n{text}"
    );
    assert_req_verify_ok(&t, "ext.csr");
    // --san replaces the config's subjectAltName (one SAN, not two), and says so.
    t.devcert(&[
        "csr",
        "--key",
        "k.key",
        "--config",
        "ext.cfg",
        "--san",
        "DNS:other",
        "-o",
        "san.csr",
    ])
    .ok()
    .warns_about(&["replaces the subjectAltName"]);
    let text = t.openssl_ok(&["req", "-in", "san.csr", "-noout", "-text"]);
    assert!(
        text.contains("DNS:other") && !text.contains("dev.example.com"),
        "--san did not replace the config's SAN:\n{text}"
    );
    assert_eq!(
        text.matches("Subject Alternative Name").count(),
        1,
        "{text}"
    );
}

#[test]
fn subject_option_matches_openssl_subj() {
    let t = TestDir::new();
    t.ec_key("client.key");
    let subj = "/C=CN/O=ALI/CN=client-test";
    t.devcert(&[
        "csr",
        "--key",
        "client.key",
        "--subject",
        subj,
        "-o",
        "client.csr",
    ])
    .ok();
    t.openssl_csr("client.key", subj, "ref.csr");
    assert_req_verify_ok(&t, "client.csr");
    assert_eq!(
        t.csr("client.csr").get("subject_der"),
        t.csr("ref.csr").get("subject_der"),
        "--subject DER differs from `openssl req -subj`"
    );
    assert_eq!(
        rfc2253_subject(&t, "client.csr"),
        "subject=CN=client-test,O=ALI,C=CN\n"
    );
    t.assert_mode("client.csr", 0o644);
    assert_eq!(
        first_pem_label(&t.read_str("client.csr")).as_deref(),
        Some("CERTIFICATE REQUEST")
    );
}

#[test]
fn san_option_appears_in_the_request() {
    let t = TestDir::new();
    t.ec_key("k.key");
    t.devcert(&[
        "csr",
        "--key",
        "k.key",
        "--subject",
        "/CN=san-test",
        "--san",
        "DNS:a,IP:1.2.3.4",
        "-o",
        "s.csr",
    ])
    .ok();
    let text = t.openssl_ok(&["req", "-in", "s.csr", "-noout", "-text"]);
    assert!(
        text.contains("DNS:a") && text.contains("IP Address:1.2.3.4"),
        "SAN not in openssl req -text:\n{text}"
    );
    let i = t.csr("s.csr");
    assert_eq!(i.get("san"), "a,1.2.3.4");
    assert_req_verify_ok(&t, "s.csr");
}

#[test]
fn new_key_rsa_writes_pkcs8_0600_matching_key() {
    let t = TestDir::new();
    t.seed_configs();
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
    t.assert_mode("client.key", 0o600);
    t.assert_mode("client.csr", 0o644);
    let text = t.read_str("client.key");
    assert_eq!(
        first_pem_label(&text).as_deref(),
        Some("PRIVATE KEY"),
        "expected PKCS#8:\n{text}"
    );
    let c = t.csr("client.csr");
    assert_eq!(c.get("key"), "rsa:2048");
    t.assert_key_matches("client.key", &c.get("spki_der"));
    assert_req_verify_ok(&t, "client.csr");
    // Subject still identical to openssl's for this config.
    t.openssl_ok(&[
        "req",
        "-new",
        "-key",
        "client.key",
        "-config",
        "client.csr.cfg",
        "-out",
        "ref.csr",
    ]);
    assert_eq!(c.get("subject_der"), t.csr("ref.csr").get("subject_der"));
}

#[test]
fn new_key_ec_default_curve() {
    let t = TestDir::new();
    t.devcert(&[
        "csr",
        "--new-key",
        "ec",
        "--key-out",
        "k.key",
        "--subject",
        "/CN=ec",
        "-o",
        "k.csr",
    ])
    .ok();
    let c = t.csr("k.csr");
    assert_eq!(c.get("key"), "ec:secp256r1");
    t.assert_key_matches("k.key", &c.get("spki_der"));
    t.assert_mode("k.key", 0o600);
}

#[test]
fn key_inputs_sec1_with_params_pkcs1_and_der() {
    let t = TestDir::new();
    // ecparam -genkey output: EC PARAMETERS + EC PRIVATE KEY blocks.
    t.ec_key("ec.key");
    t.devcert(&[
        "csr",
        "--key",
        "ec.key",
        "--subject",
        "/CN=a",
        "-o",
        "a.csr",
    ])
    .ok();
    t.assert_key_matches("ec.key", &t.csr("a.csr").get("spki_der"));
    // PKCS#1 RSA.
    t.rsa_key("rsa8.key");
    t.openssl_ok(&["rsa", "-in", "rsa8.key", "-traditional", "-out", "rsa1.key"]);
    assert_eq!(
        first_pem_label(&t.read_str("rsa1.key")).as_deref(),
        Some("RSA PRIVATE KEY")
    );
    t.devcert(&[
        "csr",
        "--key",
        "rsa1.key",
        "--subject",
        "/CN=b",
        "-o",
        "b.csr",
    ])
    .ok();
    t.assert_key_matches("rsa1.key", &t.csr("b.csr").get("spki_der"));
    // PKCS#8 DER.
    t.openssl_ok(&["pkey", "-in", "ec.key", "-outform", "DER", "-out", "ec.der"]);
    t.devcert(&[
        "csr",
        "--key",
        "ec.der",
        "--subject",
        "/CN=c",
        "-o",
        "c.csr",
    ])
    .ok();
    t.assert_key_matches("ec.key", &t.csr("c.csr").get("spki_der"));
}

#[test]
fn output_mode_follows_umask() {
    let t = TestDir::new();
    t.ec_key("k.key");
    t.devcert_cmd()
        .umask(0o027)
        .args(["csr", "--key", "k.key", "--subject", "/CN=u", "-o", "u.csr"])
        .run()
        .ok();
    t.assert_mode("u.csr", 0o640);
    t.devcert_cmd()
        .umask(0o000)
        .args(["csr", "--key", "k.key", "--subject", "/CN=u", "-o", "v.csr"])
        .run()
        .ok();
    t.assert_mode("v.csr", 0o644);
}

#[test]
fn csr_to_stdout() {
    let t = TestDir::new();
    t.ec_key("k.key");
    let out = t
        .devcert(&["csr", "--key", "k.key", "--subject", "/CN=out"])
        .ok();
    t.write("o.csr", &out.stdout);
    assert_req_verify_ok(&t, "o.csr");
}

/// `--new-key`: the key and the CSR land together or not at all.
#[test]
fn new_key_is_not_left_behind_when_the_csr_cannot_be_written() {
    let t = TestDir::new();
    t.write("c.csr", "keep me\n");
    let before = t.listing();
    let new_key = |out: &str| {
        t.devcert(&[
            "csr",
            "--new-key",
            "ec",
            "--key-out",
            "new.key",
            "--subject",
            "/CN=x",
            "-o",
            out,
        ])
    };
    new_key("c.csr").fails_naming(&["c.csr"]);
    t.assert_unchanged(&before);
    new_key("no/such/dir/c.csr").fails_naming(&["c.csr"]);
    t.assert_unchanged(&before);
    // An existing key is refused too, before any work.
    t.write("new.key", "old key\n");
    let before = t.listing();
    new_key("fresh.csr").fails_naming(&["new.key"]);
    t.assert_unchanged(&before);
    // --key-out and -o at one path: the key would be replaced by the CSR.
    for out in ["new.key", "./new.key"] {
        new_key(out).fails_naming(&["same file"]);
    }
    t.assert_unchanged(&before);
    // Both written: the CSR is signed by the key written beside it.
    std::fs::remove_file(t.path("new.key")).unwrap();
    new_key("fresh.csr").ok();
    t.assert_mode("new.key", 0o600);
    let from_key = t.openssl_ok(&["pkey", "-in", "new.key", "-pubout"]);
    let from_csr = t.openssl_ok(&["req", "-in", "fresh.csr", "-noout", "-pubkey", "-verify"]);
    assert_eq!(
        format!("{from_key}Certificate request self-signature verify OK\n"),
        from_csr
    );
}

#[test]
fn refuses_to_overwrite_csr() {
    let t = TestDir::new();
    t.ec_key("k.key");
    t.write("c.csr", "keep me\n");
    let before = t.listing();
    t.devcert(&["csr", "--key", "k.key", "--subject", "/CN=x", "-o", "c.csr"])
        .fails_naming(&["c.csr"]);
    t.assert_unchanged(&before);
    t.devcert(&[
        "csr",
        "--key",
        "k.key",
        "--subject",
        "/CN=x",
        "--force",
        "-o",
        "c.csr",
    ])
    .ok();
    assert_req_verify_ok(&t, "c.csr");
}

/// An error for a config line must name the file and the line number
/// (assumption: written as `FILE:N` or `line N`).
#[track_caller]
fn assert_names_file_and_line(out: &Out, file: &str, lines: &[usize]) {
    let text = out.stderr.clone();
    assert!(
        text.contains(file),
        "error does not name the file {file}\n{}",
        out.describe()
    );
    assert!(
        lines.iter().any(|n| text.contains(&format!(":{n}"))
            || text.to_lowercase().contains(&format!("line {n}"))),
        "error does not name line {lines:?} (as `{file}:N` or `line N`)\n{}",
        out.describe()
    );
}

#[test]
fn config_prompt_yes_is_an_error_naming_file_and_line() {
    let t = TestDir::new();
    t.ec_key("k.key");
    t.write(
        "p.cfg",
        "[req]\ndistinguished_name = dn\nprompt = yes\n[dn]\nCN=x\n",
    );
    let out = t
        .devcert(&["csr", "--key", "k.key", "--config", "p.cfg", "-o", "p.csr"])
        .fails();
    assert_names_file_and_line(&out, "p.cfg", &[3]);
    t.assert_no_file("p.csr");
}

#[test]
fn config_unknown_dn_field_is_an_error_naming_file_and_line() {
    let t = TestDir::new();
    t.ec_key("k.key");
    t.write(
        "u.cfg",
        "[req]\nprompt = no\ndistinguished_name = dn\n[dn]\nCN=x\nfavouriteColour=blue\n",
    );
    let out = t
        .devcert(&["csr", "--key", "k.key", "--config", "u.cfg", "-o", "u.csr"])
        .fails();
    assert_names_file_and_line(&out, "u.cfg", &[6]);
    t.assert_no_file("u.csr");
}

#[test]
fn config_duplicate_plain_dc_is_an_error_with_hint() {
    let t = TestDir::new();
    t.ec_key("k.key");
    t.write(
        "d.cfg",
        "[req]\nprompt = no\ndistinguished_name = dn\n[dn]\nDC=com\nDC=example\nCN=x\n",
    );
    let out = t
        .devcert(&["csr", "--key", "k.key", "--config", "d.cfg", "-o", "d.csr"])
        .fails();
    // Either occurrence may be the one named.
    assert_names_file_and_line(&out, "d.cfg", &[5, 6]);
    assert!(
        out.stderr.contains("0.DC"),
        "expected the hint to suggest `0.DC=` / `1.DC=`\n{}",
        out.describe()
    );
    t.assert_no_file("d.csr");
}

#[test]
fn config_without_distinguished_name_section_fails_cleanly() {
    let t = TestDir::new();
    t.ec_key("k.key");
    t.write(
        "n.cfg",
        "[req]\nprompt = no\ndistinguished_name = missing_section\n",
    );
    t.devcert(&["csr", "--key", "k.key", "--config", "n.cfg", "-o", "n.csr"])
        .fails_naming(&["n.cfg"]);
    t.assert_no_file("n.csr");
}

#[test]
fn missing_inputs_are_errors_naming_the_file() {
    let t = TestDir::new();
    t.ec_key("k.key");
    t.seed_configs();
    t.devcert(&[
        "csr",
        "--key",
        "nope.key",
        "--config",
        "client.csr.cfg",
        "-o",
        "x.csr",
    ])
    .fails_naming(&["nope.key"]);
    t.devcert(&[
        "csr", "--key", "k.key", "--config", "nope.cfg", "-o", "x.csr",
    ])
    .fails_naming(&["nope.cfg"]);
    t.assert_no_file("x.csr");
}

#[test]
fn garbage_key_is_an_error() {
    let t = TestDir::new();
    t.write("junk.key", "this is not a key\n");
    t.write("empty.key", "");
    t.devcert(&[
        "csr",
        "--key",
        "junk.key",
        "--subject",
        "/CN=x",
        "-o",
        "x.csr",
    ])
    .fails_naming(&["junk.key"]);
    t.devcert(&[
        "csr",
        "--key",
        "empty.key",
        "--subject",
        "/CN=x",
        "-o",
        "x.csr",
    ])
    .fails_naming(&["empty.key"]);
    t.assert_no_file("x.csr");
}
