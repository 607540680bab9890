//! Parsing OpenSSL `x509v3_config` lines into the extension specs that
//! [`super::ExtensionProfile::build`] encodes: every value is checked here, so
//! errors name the file and line before anything is signed.

use super::*;

/// At most this many items (names, usages, ...) in one profile: every
/// `subjectAltName = @alt` line reads all of `[alt]` again, and a 10 MiB
/// file of such lines would otherwise build billions of names.
pub const MAX_PROFILE_ITEMS: usize = 65_536;

/// Parses one `name = [critical,]value` line of a profile section; `budget`
/// is how many more items the profile may hold.
pub(super) fn parse_entry(
    conf: &Config,
    entry: &Entry,
    budget: &mut usize,
) -> Result<ProfileEntry> {
    let fail = |why: String| conf.error(entry.line, why);
    // OpenSSL's v3_check_critical: exactly "critical," then optional spaces.
    let (critical, value) = match entry.value.strip_prefix("critical,") {
        Some(rest) => (true, rest.trim_start()),
        None => (false, entry.value.as_str()),
    };
    if value.starts_with("DER:") || value.starts_with("ASN1:") {
        return Err(fail(format!(
            "{}: raw DER:/ASN1: values are not supported",
            entry.key
        )));
    }
    let mut items = || value_items(conf, entry, value, budget);
    let spec = match entry.key.as_str() {
        "basicConstraints" => parse_basic_constraints(&items()?),
        "keyUsage" => parse_key_usage(&items()?).map(ExtSpec::KeyUsage),
        "extendedKeyUsage" => parse_eku(&items()?).map(ExtSpec::ExtendedKeyUsage),
        "subjectKeyIdentifier" => parse_ski(value).map(ExtSpec::SubjectKeyId),
        "authorityKeyIdentifier" => parse_aki(&items()?).map(ExtSpec::AuthorityKeyId),
        "subjectAltName" => parse_names(&items()?, false).map(ExtSpec::SubjectAltName),
        "issuerAltName" => parse_names(&items()?, true).map(ExtSpec::IssuerAltName),
        "crlDistributionPoints" => parse_plain_names(&items()?).map(ExtSpec::CrlDistributionPoints),
        "authorityInfoAccess" => parse_aia(&items()?).map(ExtSpec::AuthorityInfoAccess),
        "nsComment" => Ia5String::new(value)
            .map(ExtSpec::NsComment)
            .map_err(|_| "nsComment must be ASCII".to_string()),
        "certificatePolicies" => parse_policies(&items()?).map(ExtSpec::CertificatePolicies),
        other => Err(format!("unknown or unsupported extension '{other}'")),
    }
    .map_err(|why| fail(format!("{}: {why}", entry.key)))?;
    Ok(ProfileEntry {
        line: entry.line,
        critical,
        spec,
    })
}

/// A `name[:value]` item of a comma-separated list (OpenSSL's CONF_VALUE).
#[derive(Debug)]
struct Item {
    name: String,
    value: Option<String>,
}

/// OpenSSL's X509V3_EXT_nconf: `@sect` reads the items from a section,
/// anything else is `X509V3_parse_list`.
fn value_items(conf: &Config, entry: &Entry, value: &str, budget: &mut usize) -> Result<Vec<Item>> {
    let mut spend = |n: usize| {
        *budget = budget.checked_sub(n).ok_or_else(|| {
            conf.error(
                entry.line,
                format!("the profile names more than {MAX_PROFILE_ITEMS} items"),
            )
        })?;
        Ok::<(), Error>(())
    };
    if let Some(name) = value.strip_prefix('@') {
        let sect = conf.section(name.trim()).ok_or_else(|| {
            conf.error(
                entry.line,
                format!("{}: no section [{}]", entry.key, name.trim()),
            )
        })?;
        spend(sect.entries.len())?;
        return Ok(sect
            .entries
            .iter()
            .map(|e| Item {
                name: e.key.clone(),
                value: Some(e.value.clone()),
            })
            .collect());
    }
    let items = parse_list(value);
    spend(items.len())?;
    Ok(items)
}

/// `a:b, c, d:e` → items, each part trimmed; empty items are skipped.
fn parse_list(value: &str) -> Vec<Item> {
    value
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| match s.split_once(':') {
            Some((n, v)) => Item {
                name: n.trim().to_string(),
                value: Some(v.trim().to_string()),
            },
            None => Item {
                name: s.to_string(),
                value: None,
            },
        })
        .collect()
}

fn non_empty(items: &[Item]) -> std::result::Result<(), String> {
    if items.is_empty() {
        Err("empty value".into())
    } else {
        Ok(())
    }
}

fn parse_basic_constraints(items: &[Item]) -> std::result::Result<ExtSpec, String> {
    non_empty(items)?;
    let (mut ca, mut pathlen) = (false, None);
    for item in items {
        let value = item.value.as_deref().unwrap_or("");
        match item.name.as_str() {
            "CA" => {
                ca =
                    parse_bool(value).ok_or_else(|| format!("'CA:{value}' is not TRUE or FALSE"))?
            }
            "pathlen" => {
                pathlen = Some(
                    value
                        .parse::<u8>()
                        .map_err(|_| format!("'pathlen:{value}' is not a number from 0 to 255"))?,
                )
            }
            other => return Err(format!("unknown option '{other}' (expected CA or pathlen)")),
        }
    }
    Ok(ExtSpec::BasicConstraints { ca, pathlen })
}

/// OpenSSL's X509V3_get_value_bool spellings.
fn parse_bool(s: &str) -> Option<bool> {
    match s {
        "TRUE" | "true" | "Y" | "y" | "YES" | "yes" => Some(true),
        "FALSE" | "false" | "N" | "n" | "NO" | "no" => Some(false),
        _ => None,
    }
}

/// keyUsage bits by OpenSSL's short and long names.
pub(crate) const KEY_USAGE_NAMES: [(&str, &str, KeyUsages); 9] = [
    (
        "digitalSignature",
        "Digital Signature",
        KeyUsages::DigitalSignature,
    ),
    (
        "nonRepudiation",
        "Non Repudiation",
        KeyUsages::NonRepudiation,
    ),
    (
        "keyEncipherment",
        "Key Encipherment",
        KeyUsages::KeyEncipherment,
    ),
    (
        "dataEncipherment",
        "Data Encipherment",
        KeyUsages::DataEncipherment,
    ),
    ("keyAgreement", "Key Agreement", KeyUsages::KeyAgreement),
    ("keyCertSign", "Certificate Sign", KeyUsages::KeyCertSign),
    ("cRLSign", "CRL Sign", KeyUsages::CRLSign),
    ("encipherOnly", "Encipher Only", KeyUsages::EncipherOnly),
    ("decipherOnly", "Decipher Only", KeyUsages::DecipherOnly),
];

fn parse_key_usage(items: &[Item]) -> std::result::Result<FlagSet<KeyUsages>, String> {
    non_empty(items)?;
    let mut usage = FlagSet::default();
    for item in items {
        let bit = KEY_USAGE_NAMES
            .iter()
            .find(|(short, long, _)| item.value.is_none() && (item.name == *short || item.name == *long))
            .map(|(_, _, bit)| *bit)
            .ok_or_else(|| {
                format!(
                    "unknown key usage '{}' (one of digitalSignature, nonRepudiation, keyEncipherment, dataEncipherment, keyAgreement, keyCertSign, cRLSign, encipherOnly, decipherOnly)",
                    item_text(item)
                )
            })?;
        usage |= bit;
    }
    Ok(usage)
}

/// Extended key usages by OpenSSL's short and long names.
pub(crate) const EKU_NAMES: [(&str, &str, &str); 21] = [
    (
        "serverAuth",
        "TLS Web Server Authentication",
        "1.3.6.1.5.5.7.3.1",
    ),
    (
        "clientAuth",
        "TLS Web Client Authentication",
        "1.3.6.1.5.5.7.3.2",
    ),
    ("codeSigning", "Code Signing", "1.3.6.1.5.5.7.3.3"),
    ("emailProtection", "E-mail Protection", "1.3.6.1.5.5.7.3.4"),
    ("ipsecEndSystem", "IPSec End System", "1.3.6.1.5.5.7.3.5"),
    ("ipsecTunnel", "IPSec Tunnel", "1.3.6.1.5.5.7.3.6"),
    ("ipsecUser", "IPSec User", "1.3.6.1.5.5.7.3.7"),
    ("timeStamping", "Time Stamping", "1.3.6.1.5.5.7.3.8"),
    ("OCSPSigning", "OCSP Signing", "1.3.6.1.5.5.7.3.9"),
    ("DVCS", "dvcs", "1.3.6.1.5.5.7.3.10"),
    (
        "ipsecIKE",
        "ipsec Internet Key Exchange",
        "1.3.6.1.5.5.7.3.17",
    ),
    ("secureShellClient", "SSH Client", "1.3.6.1.5.5.7.3.21"),
    ("secureShellServer", "SSH Server", "1.3.6.1.5.5.7.3.22"),
    (
        "anyExtendedKeyUsage",
        "Any Extended Key Usage",
        "2.5.29.37.0",
    ),
    (
        "msCodeInd",
        "Microsoft Individual Code Signing",
        "1.3.6.1.4.1.311.2.1.21",
    ),
    (
        "msCodeCom",
        "Microsoft Commercial Code Signing",
        "1.3.6.1.4.1.311.2.1.22",
    ),
    (
        "msCTLSign",
        "Microsoft Trust List Signing",
        "1.3.6.1.4.1.311.10.3.1",
    ),
    (
        "msSGC",
        "Microsoft Server Gated Crypto",
        "1.3.6.1.4.1.311.10.3.3",
    ),
    (
        "msEFS",
        "Microsoft Encrypted File System",
        "1.3.6.1.4.1.311.10.3.4",
    ),
    (
        "msSmartcardLogin",
        "Microsoft Smartcard Login",
        "1.3.6.1.4.1.311.20.2.2",
    ),
    (
        "nsSGC",
        "Netscape Server Gated Crypto",
        "2.16.840.1.113730.4.1",
    ),
];

fn parse_eku(items: &[Item]) -> std::result::Result<Vec<ObjectIdentifier>, String> {
    non_empty(items)?;
    items
        .iter()
        .map(|item| {
            let text = item_text(item);
            let dotted = EKU_NAMES
                .iter()
                .find(|(short, long, _)| text == *short || text == *long)
                .map_or(text.as_str(), |(_, _, oid)| oid);
            parse_oid(dotted).map_err(|_| format!("unknown extended key usage '{text}'"))
        })
        .collect()
}

fn parse_oid(s: &str) -> std::result::Result<ObjectIdentifier, String> {
    ObjectIdentifier::new(s).map_err(|_| format!("'{s}' is not a dotted OID"))
}

fn item_text(item: &Item) -> String {
    match &item.value {
        Some(v) => format!("{}:{v}", item.name),
        None => item.name.clone(),
    }
}

fn parse_ski(value: &str) -> std::result::Result<SkiSpec, String> {
    match value.trim() {
        "hash" => Ok(SkiSpec::Hash),
        "none" => Ok(SkiSpec::Suppressed),
        hex => parse_hex(hex)
            .map(SkiSpec::Value)
            .ok_or_else(|| format!("'{hex}' is not hash, none or a hex string")),
    }
}

/// OpenSSL's hexstr2buf: pairs of hex digits, optionally separated by ':'.
fn parse_hex(s: &str) -> Option<Vec<u8>> {
    let digits: Vec<u8> = s.bytes().filter(|&b| b != b':').collect();
    if digits.is_empty()
        || !digits.len().is_multiple_of(2)
        || s.starts_with(':')
        || s.contains("::")
    {
        return None;
    }
    digits
        .chunks(2)
        .map(|pair| {
            let text = std::str::from_utf8(pair).ok()?;
            u8::from_str_radix(text, 16).ok()
        })
        .collect()
}

fn parse_aki(items: &[Item]) -> std::result::Result<AkiSpec, String> {
    non_empty(items)?;
    let mut spec = AkiSpec {
        keyid: Want::Off,
        issuer: Want::Off,
        hash_fallback: false,
    };
    if items.len() == 1 && items[0].name == "none" && items[0].value.is_none() {
        return Ok(spec);
    }
    for item in items {
        let want = match item.value.as_deref() {
            None => Want::On,
            Some("always") => Want::Always,
            Some(other) => return Err(format!("unknown option '{}:{other}'", item.name)),
        };
        match item.name.as_str() {
            "keyid" => spec.keyid = spec.keyid.max(want),
            "issuer" => spec.issuer = spec.issuer.max(want),
            other => {
                return Err(format!(
                    "unknown option '{other}' (expected keyid, issuer or none)"
                ));
            }
        }
    }
    Ok(spec)
}

fn parse_names(items: &[Item], issuer_alt: bool) -> std::result::Result<Vec<NameSpec>, String> {
    non_empty(items)?;
    items
        .iter()
        .map(|item| {
            let (kind, value) = name_parts(item)?;
            match (kind, value) {
                ("email", "copy") => Ok(NameSpec::EmailCopy),
                ("email", "move") => Err("email:move is not supported (use email:copy)".into()),
                ("issuer", "copy") if issuer_alt => Ok(NameSpec::IssuerCopy),
                _ => general_name(kind, value).map(NameSpec::Name),
            }
        })
        .collect()
}

fn parse_plain_names(items: &[Item]) -> std::result::Result<Vec<GeneralName>, String> {
    non_empty(items)?;
    items
        .iter()
        .map(|item| {
            let (kind, value) = name_parts(item)?;
            general_name(kind, value)
        })
        .collect()
}

/// Splits `TYPE.N` keys of `@section` lists down to TYPE (OpenSSL ignores
/// everything from the first '.').
fn name_parts(item: &Item) -> std::result::Result<(&str, &str), String> {
    let kind = item.name.split('.').next().unwrap_or("");
    match &item.value {
        Some(v) => Ok((kind, v.as_str())),
        None => Err(format!("'{}' is not TYPE:VALUE", item.name)),
    }
}

/// One general name as OpenSSL's `a2i_GENERAL_NAME` writes it.
pub(super) fn general_name(kind: &str, value: &str) -> std::result::Result<GeneralName, String> {
    let ia5 = |v: &str| Ia5String::new(v).map_err(|_| format!("{kind}:{v} must be ASCII"));
    if value.is_empty() {
        return Err(format!("{kind}: has an empty value"));
    }
    match kind {
        "DNS" => ia5(value).map(GeneralName::DnsName),
        "email" => ia5(value).map(GeneralName::Rfc822Name),
        "URI" => ia5(value).map(GeneralName::UniformResourceIdentifier),
        "IP" => value
            .parse::<IpAddr>()
            .map(GeneralName::from)
            .map_err(|_| format!("'{value}' is not an IPv4 or IPv6 address")),
        "RID" => parse_oid(value).map(GeneralName::RegisteredId),
        "dirName" | "otherName" => Err(format!("{kind} names are not supported")),
        other => Err(format!(
            "unknown name type '{other}' (expected DNS, IP, email, URI or RID)"
        )),
    }
}

/// `OCSP;URI:http://..` / `caIssuers;URI:http://..` access descriptions.
fn parse_aia(items: &[Item]) -> std::result::Result<Vec<AccessDescription>, String> {
    non_empty(items)?;
    items
        .iter()
        .map(|item| {
            let (method, kind) = item
                .name
                .split_once(';')
                .ok_or_else(|| format!("'{}' is not METHOD;TYPE:VALUE", item_text(item)))?;
            let access_method = match method {
                "OCSP" => const_oid::db::rfc5280::ID_AD_OCSP,
                "caIssuers" | "CA Issuers" => const_oid::db::rfc5280::ID_AD_CA_ISSUERS,
                dotted => parse_oid(dotted)
                    .map_err(|_| format!("unknown access method '{dotted}' (OCSP or caIssuers)"))?,
            };
            let value = item.value.as_deref().unwrap_or("");
            Ok(AccessDescription {
                access_method,
                access_location: general_name(kind, value)?,
            })
        })
        .collect()
}

fn parse_policies(items: &[Item]) -> std::result::Result<Vec<ObjectIdentifier>, String> {
    non_empty(items)?;
    items
        .iter()
        .map(|item| match (item.name.as_str(), &item.value) {
            ("anyPolicy" | "X509v3 Any Policy", None) => Ok(const_oid::db::rfc5280::ANY_POLICY),
            (name, None) if !name.starts_with('@') && name != "ia5org" => parse_oid(name),
            _ => Err(format!(
                "'{}': only policy OIDs are supported (no qualifiers)",
                item_text(item)
            )),
        })
        .collect()
}
