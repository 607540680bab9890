//! Distinguished names, built byte for byte as OpenSSL 3.0's `req` builds
//! them (from a `prompt = no` DN section or from `-subj`), and shown as
//! RFC 4514 strings the way `openssl x509 -nameopt RFC2253,-esc_msb` does.
//!
//! Why byte for byte: rustls-webpki and mbedTLS compare issuer and subject
//! names as bytes, so a name re-encoded with other string types breaks chain
//! building even though `openssl verify` (which canonicalises) accepts it.
//!
//! The string type of each value follows OpenSSL's `ASN1_STRING_set_by_NID`:
//! a per-attribute table (`tbl_standard.h`) gives the allowed types and
//! length limits; unless the attribute's types are fixed, they are narrowed
//! by the `string_mask`; the first type (PrintableString, IA5String,
//! T61String, BMPString, UTF8String, in that order) that can hold every
//! character wins.

use std::str::FromStr;

use der::asn1::{Any, ObjectIdentifier};
use der::{Decode, Encode, Tag, Tagged};
use x509_cert::attr::AttributeTypeAndValue;
use x509_cert::name::{Name, RdnSequence, RelativeDistinguishedName};

use crate::error::{Error, ErrorKind, Result};
use crate::openssl_conf::Config;

mod attributes;
mod display;
pub use attributes::{StringMask, attribute_short_name};
use attributes::{encode_value, lookup};
pub use display::{common_name_of_rfc4514, to_rfc4514};

/// One attribute on its way into a name.
struct Field {
    oid: ObjectIdentifier,
    value: Any,
    /// Joins the previous RDN (a multi-valued RDN) instead of starting one.
    joins_previous: bool,
}

fn build(fields: Vec<Field>) -> std::result::Result<Name, String> {
    let mut rdns: Vec<Vec<AttributeTypeAndValue>> = Vec::new();
    for f in fields {
        let atv = AttributeTypeAndValue {
            oid: f.oid,
            value: f.value,
        };
        match rdns.last_mut() {
            Some(rdn) if f.joins_previous => rdn.push(atv),
            _ => rdns.push(vec![atv]),
        }
    }
    let mut seq = Vec::with_capacity(rdns.len());
    for rdn in rdns {
        // Sorted into DER order, as OpenSSL's SET OF encoder does.
        seq.push(RelativeDistinguishedName::try_from(rdn).map_err(|e| e.to_string())?);
    }
    // `Name` has no public constructor from an RDN sequence outside the
    // crate's `hazmat` feature; a DER round trip is the supported way.
    let der = RdnSequence::from(seq).to_der().map_err(|e| e.to_string())?;
    Name::from_der(&der).map_err(|e| e.to_string())
}

/// The subject described by the DN section `section` of an OpenSSL `req`
/// config with `prompt = no`, as `openssl req -new -config` (with
/// `utf8 = yes`) writes it for `string_mask = mask`.
///
/// Keys follow OpenSSL's `auto_info`: everything up to the first `.`, `:`
/// or `,` is dropped (so `0.OU` and `1.OU` repeat a field), then a leading
/// `+` joins the attribute to the previous RDN. A dotted OID therefore needs
/// such a prefix too (`0.1.2.3.4 = x`; a bare `1.2.3.4` would mean OID
/// 2.3.4, as it does to OpenSSL). Unlike OpenSSL, which silently keeps the
/// last of a plain key repeated in a section, that is an error here.
/// Empty values, `_default`/`_min`/`_max` keys, unknown fields, over-long
/// values and characters a fixed type cannot hold are errors naming the
/// line, as OpenSSL refuses them too (an empty value is allowed where
/// OpenSSL allows it, e.g. `title` or `dnQualifier`).
pub fn name_from_section(conf: &Config, section: &str, mask: StringMask) -> Result<Name> {
    let sect = conf.section(section).ok_or_else(|| {
        Error::new(
            ErrorKind::Config,
            "invalid config",
            format!("no [{section}] section for the distinguished name"),
        )
        .file(conf.label.clone())
    })?;
    if sect.entries.is_empty() {
        return Err(conf.error(sect.line, format!("[{section}] names no subject fields")));
    }
    let mut fields = Vec::with_capacity(sect.entries.len());
    let mut seen = std::collections::HashSet::new();
    for entry in &sect.entries {
        if !seen.insert(entry.key.as_str()) {
            return Err(conf
                .error(
                    entry.line,
                    format!(
                        "'{}' is repeated in [{section}] (OpenSSL would silently keep only the last)",
                        entry.key
                    ),
                )
                .hint(format!(
                    "write 0.{k}= / 1.{k}= to repeat a field",
                    k = field_of_key(&entry.key).0
                )));
        }
        let (field, joins_previous) = field_of_key(&entry.key);
        let Some((oid, rule)) = lookup(field) else {
            let err = conf.error(entry.line, unknown_field_reason(field));
            return Err(if field.chars().all(|c| c.is_ascii_digit() || c == '.') {
                err.hint(
                    "OpenSSL drops a key up to its first '.': write 0.2.5.4.3= to name OID 2.5.4.3",
                )
            } else {
                err
            });
        };
        let value = encode_value(field, rule, mask, &entry.value)
            .map_err(|why| conf.error(entry.line, why))?;
        fields.push(Field {
            oid,
            value,
            joins_previous,
        });
    }
    build(fields).map_err(|why| conf.error(sect.line, format!("cannot encode the subject: {why}")))
}

/// OpenSSL's `auto_info` key rule: drop up to the first `.`, `:` or `,`
/// (unless nothing follows it), then a leading `+` means "same RDN".
fn field_of_key(key: &str) -> (&str, bool) {
    let field = match key.find(['.', ':', ',']) {
        Some(i) if i + 1 < key.len() => &key[i + 1..],
        _ => key,
    };
    match field.strip_prefix('+') {
        Some(rest) => (rest, true),
        None => (field, false),
    }
}

fn unknown_field_reason(field: &str) -> String {
    if let Some(base) = ["_default", "_min", "_max"]
        .iter()
        .find_map(|s| field.strip_suffix(s))
    {
        format!(
            "'{field}' is only for prompt = yes; with prompt = no write the value itself ({base}=...)"
        )
    } else {
        format!("unknown subject field '{field}'")
    }
}

/// Parses a subject given on the command line.
///
/// OpenSSL's `-subj` syntax, `/C=CN/O=ALI/CN=client-test`: `+` instead of
/// `/` adds to the same (multi-valued) RDN, `\` makes the next character
/// literal (`\/`, `\+`, `\\`), a field may repeat. Where OpenSSL only warns
/// and skips (an unknown field, an empty value), this is an error; a dotted
/// OID is accepted as a field name.
///
/// A string not starting with `/` is read as RFC 4514 (`CN=x,O=y`, most
/// specific RDN first, `\,`/`\XX` escapes, `#hex` DER values), the form
/// [`to_rfc4514`] prints.
///
/// String types follow the same rules as [`name_from_section`].
pub fn parse_subject(subject: &str, mask: StringMask) -> Result<Name> {
    let fail = |why: String| Error::parse("invalid subject", why);
    let fields = match subject.strip_prefix('/') {
        Some(rest) => parse_slash_form(rest, mask).map_err(fail)?,
        None => parse_rfc4514(subject, mask).map_err(fail)?,
    };
    if fields.is_empty() {
        return Err(fail("the subject names no fields".into())
            .hint("write e.g. /C=CN/O=ALI/CN=client-test"));
    }
    build(fields).map_err(fail)
}

/// OpenSSL's `parse_name` (apps/lib/apps.c), `/` already stripped.
fn parse_slash_form(text: &str, mask: StringMask) -> std::result::Result<Vec<Field>, String> {
    let mut fields = Vec::new();
    let mut chars = text.chars().peekable();
    let mut joins_previous = false;
    while chars.peek().is_some() {
        let mut field = String::new();
        loop {
            match chars.next() {
                Some('=') => break,
                Some(c) => field.push(c),
                None => return Err(format!("missing '=' after '{field}'")),
            }
        }
        let mut value = String::new();
        let mut next_joins = false;
        while let Some(c) = chars.next() {
            match c {
                '/' => break,
                '+' => {
                    next_joins = true;
                    break;
                }
                '\\' => match chars.next() {
                    Some(e) => value.push(e),
                    None => return Err("'\\' at the end of the subject".into()),
                },
                _ => value.push(c),
            }
        }
        let Some((oid, rule)) = lookup(&field) else {
            let mut why = unknown_field_reason(&field);
            if joins_previous {
                why.push_str(" (write '\\+' for a '+' inside a value)");
            }
            return Err(why);
        };
        if value.is_empty() {
            return Err(format!("no value for '{field}'"));
        }
        fields.push(Field {
            oid,
            value: encode_value(&field, rule, mask, &value)?,
            joins_previous,
        });
        joins_previous = next_joins;
    }
    Ok(fields)
}

/// RFC 4514: RDNs most specific first, so they are reversed into DER order.
fn parse_rfc4514(text: &str, mask: StringMask) -> std::result::Result<Vec<Field>, String> {
    let mut rdns: Vec<Vec<Field>> = Vec::new();
    let mut current: Vec<Field> = Vec::new();
    let mut rest = text;
    loop {
        let eq = rest
            .find('=')
            .ok_or_else(|| format!("missing '=' in '{rest}'"))?;
        let field = rest[..eq].trim_start();
        let (value, sep, after) = split_rfc4514_value(&rest[eq + 1..])?;
        let Some((oid, rule)) = lookup(field) else {
            return Err(unknown_field_reason(field));
        };
        let value = match value {
            RawValue::Der(der) => {
                Any::from_der(&der).map_err(|e| format!("'{field}=#...' is not DER: {e}"))?
            }
            RawValue::Text(s) => encode_value(field, rule, mask, &s)?,
        };
        current.push(Field {
            oid,
            value,
            joins_previous: !current.is_empty(),
        });
        match sep {
            Some('+') => {}
            Some(_) => rdns.push(std::mem::take(&mut current)),
            None => {
                rdns.push(current);
                break;
            }
        }
        rest = after;
    }
    Ok(rdns.into_iter().rev().flatten().collect())
}

enum RawValue {
    Text(String),
    Der(Vec<u8>),
}

/// Reads one RFC 4514 value up to an unescaped `,` or `+`; returns it, the
/// separator (if any) and the text after it.
fn split_rfc4514_value(s: &str) -> std::result::Result<(RawValue, Option<char>, &str), String> {
    let end = {
        let mut escaped = false;
        s.char_indices()
            .find(|&(_, c)| {
                let stop = !escaped && (c == ',' || c == '+');
                escaped = !escaped && c == '\\';
                stop
            })
            .map(|(i, _)| i)
    };
    let (raw, sep, after) = match end {
        Some(i) => (&s[..i], s[i..].chars().next(), &s[i + 1..]),
        None => (s, None, ""),
    };
    if let Some(hex) = raw.strip_prefix('#') {
        return decode_hex(hex)
            .map(|der| (RawValue::Der(der), sep, after))
            .ok_or_else(|| format!("'#{hex}' is not hexadecimal DER"));
    }
    let mut bytes = Vec::with_capacity(raw.len());
    let mut chars = raw.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            let mut buf = [0u8; 4];
            bytes.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
            continue;
        }
        match chars.next() {
            Some(h) if h.is_ascii_hexdigit() => {
                let lo = chars
                    .next()
                    .filter(char::is_ascii_hexdigit)
                    .ok_or_else(|| format!("bad '\\' escape in '{raw}'"))?;
                let pair: String = [h, lo].iter().collect();
                bytes.push(u8::from_str_radix(&pair, 16).map_err(|e| e.to_string())?);
            }
            Some(e) if "\"+,;<>\\ #=".contains(e) => bytes.push(e as u8),
            _ => return Err(format!("bad '\\' escape in '{raw}'")),
        }
    }
    let text = String::from_utf8(bytes).map_err(|_| format!("'{raw}' is not UTF-8"))?;
    Ok((RawValue::Text(text), sep, after))
}

fn decode_hex(hex: &str) -> Option<Vec<u8>> {
    if hex.is_empty() || !hex.len().is_multiple_of(2) || !hex.is_ascii() {
        return None;
    }
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).ok())
        .collect()
}

/// The (last) common name as text, when it is one of the string types
/// devcert writes; e.g. the default PKCS#12 friendly name.
pub fn common_name_of(name: &Name) -> Option<String> {
    let cn = const_oid::db::rfc4519::CN;
    let atv = name
        .iter_rdn()
        .flat_map(|rdn| rdn.iter())
        .filter(|a| a.oid == cn)
        .last()?;
    match atv.value.tag() {
        Tag::Utf8String | Tag::PrintableString | Tag::Ia5String => {
            String::from_utf8(atv.value.value().to_vec()).ok()
        }
        _ => None,
    }
}

/// A name holding only a common name (`devcert issue --cn`, batch names).
pub fn common_name(cn: &str) -> Result<Name> {
    let escaped = cn
        .replace('\\', "\\\\")
        .replace('/', "\\/")
        .replace('+', "\\+");
    parse_subject(&format!("/CN={escaped}"), StringMask::default())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;
    use std::process::Command;
    use x509_cert::Certificate;
    use x509_cert::request::CertReq;

    const MASKS: [StringMask; 4] = [
        StringMask::Utf8Only,
        StringMask::Default,
        StringMask::Nombstr,
        StringMask::Pkix,
    ];

    /// A temp folder with an EC key, for running the real `openssl`.
    struct Lab {
        dir: tempfile::TempDir,
        key: PathBuf,
    }

    impl Lab {
        fn new() -> Lab {
            let dir = tempfile::tempdir().unwrap();
            let key = dir.path().join("k.pem");
            let lab = Lab { dir, key };
            let key = lab.key.to_str().unwrap().to_string();
            lab.openssl(&[
                "genpkey",
                "-algorithm",
                "EC",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-out",
                &key,
            ])
            .unwrap();
            lab
        }

        fn path(&self, name: &str) -> String {
            self.dir.path().join(name).to_str().unwrap().to_string()
        }

        /// Runs openssl; Ok(stdout) or Err(stderr). A warning counts as a
        /// failure: OpenSSL warns when it skips part of a `-subj`.
        fn openssl(&self, args: &[&str]) -> std::result::Result<Vec<u8>, String> {
            let out = Command::new("openssl").args(args).output().unwrap();
            let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
            if out.status.success() && !stderr.contains("warning") {
                Ok(out.stdout)
            } else {
                Err(stderr)
            }
        }

        /// The subject DER of the CSR `openssl req -new -config` writes.
        fn req_config(&self, cfg: &str) -> std::result::Result<Vec<u8>, String> {
            let (cfg_path, out) = (self.path("c.cfg"), self.path("c.csr"));
            std::fs::write(&cfg_path, cfg).unwrap();
            let key = self.key.to_str().unwrap();
            self.openssl(&[
                "req", "-new", "-key", key, "-config", &cfg_path, "-outform", "DER", "-out", &out,
            ])?;
            Ok(csr_subject(&std::fs::read(&out).unwrap()))
        }

        /// The subject DER of the CSR `openssl req -new -subj S -utf8` writes.
        fn req_subj(&self, subj: &str, mask: StringMask) -> std::result::Result<Vec<u8>, String> {
            let (cfg_path, out) = (self.path("s.cfg"), self.path("s.csr"));
            let cfg = format!(
                "[req]\ndistinguished_name = dn\nstring_mask = {}\n[dn]\n",
                mask.openssl_name()
            );
            std::fs::write(&cfg_path, cfg).unwrap();
            let key = self.key.to_str().unwrap();
            self.openssl(&[
                "req", "-new", "-key", key, "-config", &cfg_path, "-subj", subj, "-utf8",
                "-outform", "DER", "-out", &out,
            ])?;
            Ok(csr_subject(&std::fs::read(&out).unwrap()))
        }

        /// A self-signed certificate for `cfg`, decoded, and the subject
        /// `openssl x509 -nameopt RFC2253,-esc_msb` prints for it.
        fn printed_subject(&self, cfg: &str) -> (Name, String) {
            let (cfg_path, out) = (self.path("x.cfg"), self.path("x.der"));
            std::fs::write(&cfg_path, cfg).unwrap();
            let key = self.key.to_str().unwrap();
            self.openssl(&[
                "req", "-x509", "-new", "-key", key, "-config", &cfg_path, "-days", "1",
                "-outform", "DER", "-out", &out,
            ])
            .unwrap();
            let printed = self
                .openssl(&[
                    "x509",
                    "-inform",
                    "DER",
                    "-in",
                    &out,
                    "-noout",
                    "-subject",
                    "-nameopt",
                    "RFC2253,-esc_msb",
                ])
                .unwrap();
            let printed = String::from_utf8(printed).unwrap();
            let printed = printed.trim_end_matches('\n');
            let printed = printed.strip_prefix("subject=").unwrap().to_string();
            let cert = Certificate::from_der(&std::fs::read(&out).unwrap()).unwrap();
            (cert.tbs_certificate().subject().clone(), printed)
        }
    }

    fn csr_subject(der: &[u8]) -> Vec<u8> {
        CertReq::from_der(der)
            .unwrap()
            .info
            .subject
            .to_der()
            .unwrap()
    }

    fn config(mask: StringMask, dn: &str) -> String {
        format!(
            "[req]\nprompt = no\nutf8 = yes\nstring_mask = {}\ndistinguished_name = dn\n[dn]\n{dn}\n",
            mask.openssl_name()
        )
    }

    fn ours_from_config(cfg: &str, mask: StringMask) -> Result<Vec<u8>> {
        let conf = Config::parse(cfg, "test.cfg")?;
        Ok(name_from_section(&conf, "dn", mask)?.to_der().unwrap())
    }

    /// Both accept with the same bytes, or both refuse.
    fn assert_config_matches(lab: &Lab, mask: StringMask, dn: &str) {
        let cfg = config(mask, dn);
        match (lab.req_config(&cfg), ours_from_config(&cfg, mask)) {
            (Ok(theirs), Ok(ours)) => assert_eq!(ours, theirs, "{mask:?}\n{dn}"),
            (Err(_), Err(_)) => eprintln!("both refuse: {mask:?} {dn:?}"),
            (theirs, ours) => panic!("{mask:?}\n{dn}\nopenssl: {theirs:?}\ndevcert: {ours:?}"),
        }
    }

    fn assert_subj_matches(lab: &Lab, mask: StringMask, subj: &str) {
        let theirs = lab.req_subj(subj, mask);
        let ours = parse_subject(subj, mask).map(|n| n.to_der().unwrap());
        match (theirs, ours) {
            (Ok(theirs), Ok(ours)) => assert_eq!(ours, theirs, "{mask:?} {subj}"),
            (Err(_), Err(_)) => eprintln!("both refuse: {mask:?} {subj:?}"),
            (theirs, ours) => panic!("{mask:?} {subj}\nopenssl: {theirs:?}\ndevcert: {ours:?}"),
        }
    }

    const SEED_DN: &str = "C=CN\nST=ZJ\nL=HZ\nO=ALI\nOU=MQTT\nemailAddress=xxx@xxx\nCN=client-test";

    #[test]
    fn seed_config_matches_openssl() {
        let lab = Lab::new();
        let seed = "[req]\ndefault_bits = 2048\nprompt = no\ndefault_md = sha256\ndistinguished_name = dn\n[dn]\nC=CN\nST=ZJ\nL=HZ\nO=ALI\nOU=MQTT\nemailAddress=xxx@xxx\nCN=client-test\n";
        let theirs = lab.req_config(seed).unwrap();
        let ours = ours_from_config(seed, StringMask::default()).unwrap();
        assert_eq!(ours, theirs);
        assert_config_matches(&lab, StringMask::Utf8Only, SEED_DN);
    }

    #[test]
    fn config_fields_match_openssl() {
        let lab = Lab::new();
        for dn in [
            "0.OU=Sales\n1.OU=MQTT\nCN=x",
            "countryName=CN\nstateOrProvinceName=ZJ\nlocalityName=HZ\norganizationName=ALI\norganizationalUnitName=MQTT\ncommonName=client-test\nemailAddress=a@b",
            "CN=Zürich 東京\nO=😀 Ünïcode",
            "DC=com\n1.DC=example\nUID=u1\nuserId=u2\nserialNumber=SN 0042\ndnQualifier=q\nCN=x",
            "street=Main St 1\ntitle=Dr\nGN=Ann\nSN=Lee\ninitials=A\npseudonym=p\ngenerationQualifier=III\npostalCode=310000\nname=n\ndescription=d\nbusinessCategory=b\nmail=a@b",
            "title=\ndnQualifier=\nCN=x",
            "0.2.5.4.3=dotted\n0.1.2.3.4=private",
            "jurisdictionC=DE\njurisdictionST=BY\njurisdictionL=M\nunstructuredName=a@b",
            "CN=a\n+O=b",
            "CN=longvalue\n+C=US",
            "CN=a\n0.+OU=b\n+1.OU=c\nO=d",
            "CN=\"  quoted  \"\nO=a\\,b",
        ] {
            assert_config_matches(&lab, StringMask::Utf8Only, dn);
        }
    }

    #[test]
    fn string_masks_match_openssl() {
        let lab = Lab::new();
        let values = ["abc 12", "a@b", "a_b*", "Zürich", "東京", "😀", ""];
        for mask in MASKS {
            for v in values {
                let dn = format!(
                    "CN={v}x\nOU={v}y\nunstructuredName={v}z\ntitle={v}\ndnQualifier=q\nDC=dc\nemailAddress=e@x"
                );
                assert_config_matches(&lab, mask, &dn);
            }
            for dn in [
                "C=C€",
                "emailAddress=ü@x",
                "DC=ü",
                "serialNumber=a@b",
                "C=cn",
            ] {
                assert_config_matches(&lab, mask, dn);
            }
        }
    }

    #[test]
    fn length_limits_match_openssl() {
        let lab = Lab::new();
        let a = |n: usize| "a".repeat(n);
        for dn in [
            format!("CN={}", a(64)),
            format!("CN={}", a(65)),
            format!("CN={}", "é".repeat(64)),
            format!("O={}", a(65)),
            format!("L={}", a(128)),
            format!("L={}", a(129)),
            format!("serialNumber={}", a(65)),
            format!("title={}", a(65)),
            format!("DC={}", a(65)),
            "C=CHN".to_string(),
            "C=C".to_string(),
            "CN=".to_string(),
        ] {
            assert_config_matches(&lab, StringMask::Utf8Only, &dn);
        }
    }

    #[test]
    fn subj_matches_openssl() {
        let lab = Lab::new();
        for subj in [
            "/C=CN/ST=ZJ/L=HZ/O=ALI/OU=MQTT/emailAddress=xxx@xxx/CN=client-test",
            "/CN=a\\/b\\+c\\\\d",
            "/CN=a+O=b/OU=x",
            "/CN=longvalue+C=US",
            "/OU=a/OU=b/CN=a=b",
            "/C=US+C=UK",
            "/C=US+C=US",
            "/CN= spaced /",
            "/CN=Zürich 東京/O=😀",
            "/DC=com/DC=example/UID=u/serialNumber=42/dnQualifier=q",
            "/2.5.4.3=by oid",
            "/C=CHN",
            "/CN=a\\",
        ] {
            assert_subj_matches(&lab, StringMask::Utf8Only, subj);
        }
        for mask in MASKS {
            for subj in ["/CN=abc/O=a@b", "/CN=Zürich", "/CN=東京", "/CN=😀/C=DE"] {
                assert_subj_matches(&lab, mask, subj);
            }
        }
    }

    #[test]
    fn rfc4514_subject_is_reversed_into_der_order() {
        let slash = parse_subject("/C=CN/O=ALI/OU=a+CN=b", StringMask::default()).unwrap();
        let rfc = parse_subject("CN=b+OU=a,O=ALI,C=CN", StringMask::default()).unwrap();
        assert_eq!(rfc, slash);
        let spaced = parse_subject("CN=b+OU=a, O=ALI, C=CN", StringMask::default()).unwrap();
        assert_eq!(spaced, slash);
        let escaped = parse_subject(
            r"CN=\#a\,b\+c\\d\ ,O=Z\C3\BCrich,1.2.3.4=#0C0178",
            StringMask::default(),
        )
        .unwrap();
        assert_eq!(
            to_rfc4514(&escaped),
            r"CN=\#a\,b\+c\\d\ ,O=Zürich,1.2.3.4=#0C0178"
        );
    }

    #[test]
    fn to_rfc4514_matches_openssl() {
        let lab = Lab::new();
        for (mask, dn) in [
            (StringMask::Utf8Only, SEED_DN),
            (
                StringMask::Utf8Only,
                "CN=\\#a,b+c\"d\\\\e<f>g;h \\t=\nO=\" lead\"\nOU=Zürich 東京 😀\n0.1.2.3.4=x\ntitle=\"trail \"",
            ),
            (StringMask::Utf8Only, "CN=a\n+O=b\n+OU=c\nDC=x\n1.DC=y"),
            (
                StringMask::Utf8Only,
                "street=a\nGN=a\nSN=a\ninitials=a\npseudonym=a\ngenerationQualifier=a\npostalCode=a\nname=a\ndescription=a\nbusinessCategory=a\nmail=a\nrole=a\norganizationIdentifier=a\npostalAddress=a\npostOfficeBox=a\nunstructuredAddress=a\nunstructuredName=a\njurisdictionC=DE\njurisdictionST=a\njurisdictionL=a\nserialNumber=1\ndnQualifier=a\nUID=a\nDC=a\ntitle=a",
            ),
            (StringMask::Default, "CN=Zürich\nO=東京\nOU=a_b\nL=plain"),
            (StringMask::Pkix, "CN=Zürich\nO=東京\nOU=a@b"),
            (
                StringMask::Nombstr,
                "CN=Zürich*\ndnQualifier=\nserialNumber=00AB",
            ),
        ] {
            let (name, printed) = lab.printed_subject(&config(mask, dn));
            assert_eq!(to_rfc4514(&name), printed, "{dn}");
        }
    }

    fn config_err(dn: &str) -> Error {
        ours_from_config(&config(StringMask::default(), dn), StringMask::default()).unwrap_err()
    }

    #[test]
    fn repeated_plain_key_names_its_line() {
        // [dn] starts on line 6, so its first field is on line 7.
        let e = config_err("DC=example\nCN=x\nDC=com");
        assert_eq!(e.kind, ErrorKind::Config);
        assert_eq!(e.file.as_deref(), Some("test.cfg:9"));
        assert_eq!(
            e.hint.as_deref(),
            Some("write 0.DC= / 1.DC= to repeat a field")
        );
    }

    #[test]
    fn config_errors_name_the_line() {
        for (dn, line, needle) in [
            ("CN=x\nbogus=1", 8, "unknown subject field 'bogus'"),
            ("C=CHN", 7, "C must be 2 characters, got 3"),
            ("CN=x\nC=C€", 8, "PrintableString"),
            ("emailAddress=ü@x", 7, "IA5String"),
            ("CN=", 7, "CN must not be empty"),
            ("CN=x\nCN_default=y", 8, "prompt = yes"),
            ("CN=x\n2.5.4.3=y", 8, "unknown subject field '5.4.3'"),
        ] {
            let e = config_err(dn);
            assert_eq!(
                e.file.as_deref(),
                Some(format!("test.cfg:{line}").as_str()),
                "{dn}"
            );
            assert!(e.why.contains(needle), "{dn}: {}", e.why);
        }
        let oid = config_err("2.5.4.3=x");
        assert!(oid.hint.unwrap_or_default().contains("0.2.5.4.3="));
        let ou = config_err("OU=a\nOU=b");
        assert_eq!(
            ou.hint.as_deref(),
            Some("write 0.OU= / 1.OU= to repeat a field")
        );
        let long = config_err(&format!("CN={}", "a".repeat(65)));
        assert!(long.why.contains("at most 64"), "{}", long.why);
        let e = ours_from_config(&config(StringMask::Nombstr, "CN=東京"), StringMask::Nombstr)
            .unwrap_err();
        assert!(e.why.contains("nombstr"), "{}", e.why);
    }

    #[test]
    fn empty_or_missing_section_is_an_error() {
        let conf = Config::parse("[req]\nprompt = no\n[dn]\n", "e.cfg").unwrap();
        let e = name_from_section(&conf, "dn", StringMask::default()).unwrap_err();
        assert_eq!(e.file.as_deref(), Some("e.cfg:3"));
        let e = name_from_section(&conf, "nope", StringMask::default()).unwrap_err();
        assert_eq!(e.file.as_deref(), Some("e.cfg"));
        assert!(e.why.contains("[nope]"));
    }

    #[test]
    fn subject_errors() {
        for (subj, needle) in [
            ("/CN", "missing '='"),
            ("/CN=x/bogus=1", "unknown subject field 'bogus'"),
            ("/CN=a+b/O=x", "'\\+'"),
            ("/CN=x/O=", "no value for 'O'"),
            ("/", "names no fields"),
            ("", "missing '='"),
            ("/CN=x\\", "end of the subject"),
            ("/C=CHN", "C must be 2"),
            ("CN=x,O=\\q", "bad '\\' escape"),
            ("CN=#zz", "not hexadecimal"),
        ] {
            let e = parse_subject(subj, StringMask::default()).unwrap_err();
            assert_eq!(e.kind, ErrorKind::Parse, "{subj}");
            assert!(e.why.contains(needle), "{subj}: {}", e.why);
        }
    }

    #[test]
    fn string_mask_names() {
        assert_eq!(StringMask::default(), StringMask::Utf8Only);
        for mask in MASKS {
            assert_eq!(mask.openssl_name().parse::<StringMask>().unwrap(), mask);
        }
        assert!("UTF8ONLY".parse::<StringMask>().is_err());
        assert!("MASK:0x2000".parse::<StringMask>().is_err());
    }

    #[test]
    fn short_names() {
        let oid = |s| ObjectIdentifier::new(s).unwrap();
        assert_eq!(attribute_short_name(&oid("2.5.4.3")), Some("CN"));
        assert_eq!(
            attribute_short_name(&oid("1.2.840.113549.1.9.1")),
            Some("emailAddress")
        );
        assert_eq!(
            attribute_short_name(&oid("0.9.2342.19200300.100.1.25")),
            Some("DC")
        );
        assert_eq!(attribute_short_name(&oid("1.2.3.4")), None);
    }
}
