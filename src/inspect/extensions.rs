//! Decodes X.509 extensions (certificate, CSR request, CRL and CRL entry)
//! into values people and scripts can read. An extension devcert does not
//! know, or one whose value does not decode, is shown by OID with its DER
//! in hex: never an error.

use std::net::{Ipv4Addr, Ipv6Addr};

use const_oid::ObjectIdentifier;
use der::asn1::{BitStringRef, Ia5StringRef};
use der::{Decode, Tag, Tagged};
use serde::Serialize;
use x509_cert::ext::Extension;
use x509_cert::ext::pkix::crl::CrlDistributionPoints;
use x509_cert::ext::pkix::name::{DistributionPointName, GeneralName, GeneralNames};
use x509_cert::ext::pkix::{
    AuthorityInfoAccessSyntax, AuthorityKeyIdentifier, BasicConstraints, CertificatePolicies,
    ExtendedKeyUsage, KeyUsage, SubjectKeyIdentifier,
};

use super::colon_hex;
use crate::name::to_rfc4514;
use crate::profile::{EKU_NAMES, KEY_USAGE_NAMES};
use crate::sign::integer_hex;

/// One extension: its OID, OpenSSL's short name when known, and its value.
#[derive(Debug, Clone, Serialize)]
pub struct ExtensionInfo {
    pub oid: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<&'static str>,
    pub critical: bool,
    pub value: ExtValue,
}

/// A decoded extension value. JSON shapes: a list of strings, a string,
/// an object for basicConstraints and authorityKeyIdentifier, or
/// `{"der_hex": ...}` (plus `"error"` when a known extension is malformed).
#[derive(Debug, Clone, Serialize)]
#[serde(untagged)]
pub enum ExtValue {
    List(Vec<String>),
    Text(String),
    BasicConstraints {
        ca: bool,
        #[serde(skip_serializing_if = "Option::is_none")]
        path_len: Option<u8>,
    },
    AuthorityKeyId {
        #[serde(skip_serializing_if = "Option::is_none")]
        key_id: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        issuer: Option<Vec<String>>,
        #[serde(skip_serializing_if = "Option::is_none")]
        serial: Option<String>,
    },
    Raw {
        #[serde(skip_serializing_if = "Option::is_none")]
        error: Option<String>,
        der_hex: String,
    },
}

const fn oid(s: &str) -> ObjectIdentifier {
    ObjectIdentifier::new_unwrap(s)
}

const SKI: ObjectIdentifier = oid("2.5.29.14");
const KU: ObjectIdentifier = oid("2.5.29.15");
const SAN: ObjectIdentifier = oid("2.5.29.17");
const IAN: ObjectIdentifier = oid("2.5.29.18");
const BC: ObjectIdentifier = oid("2.5.29.19");
const CRL_NUMBER: ObjectIdentifier = oid("2.5.29.20");
const CRL_REASON: ObjectIdentifier = oid("2.5.29.21");
const INVALIDITY_DATE: ObjectIdentifier = oid("2.5.29.24");
const DELTA_CRL: ObjectIdentifier = oid("2.5.29.27");
const CERT_ISSUER: ObjectIdentifier = oid("2.5.29.29");
const CDP: ObjectIdentifier = oid("2.5.29.31");
const POLICIES: ObjectIdentifier = oid("2.5.29.32");
const AKI: ObjectIdentifier = oid("2.5.29.35");
const EKU: ObjectIdentifier = oid("2.5.29.37");
const FRESHEST_CRL: ObjectIdentifier = oid("2.5.29.46");
const AIA: ObjectIdentifier = oid("1.3.6.1.5.5.7.1.1");
const SIA: ObjectIdentifier = oid("1.3.6.1.5.5.7.1.11");
const NS_CERT_TYPE: ObjectIdentifier = oid("2.16.840.1.113730.1.1");
const NS_COMMENT: ObjectIdentifier = oid("2.16.840.1.113730.1.13");

/// OpenSSL's short names, for display; the value decoders are below.
const NAMES: &[(ObjectIdentifier, &str)] = &[
    (SKI, "subjectKeyIdentifier"),
    (KU, "keyUsage"),
    (SAN, "subjectAltName"),
    (IAN, "issuerAltName"),
    (BC, "basicConstraints"),
    (CRL_NUMBER, "crlNumber"),
    (CRL_REASON, "CRLReason"),
    (INVALIDITY_DATE, "invalidityDate"),
    (DELTA_CRL, "deltaCRL"),
    (oid("2.5.29.28"), "issuingDistributionPoint"),
    (CERT_ISSUER, "certificateIssuer"),
    (oid("2.5.29.30"), "nameConstraints"),
    (CDP, "crlDistributionPoints"),
    (POLICIES, "certificatePolicies"),
    (oid("2.5.29.33"), "policyMappings"),
    (AKI, "authorityKeyIdentifier"),
    (oid("2.5.29.36"), "policyConstraints"),
    (EKU, "extendedKeyUsage"),
    (FRESHEST_CRL, "freshestCRL"),
    (oid("2.5.29.54"), "inhibitAnyPolicy"),
    (AIA, "authorityInfoAccess"),
    (SIA, "subjectInfoAccess"),
    (oid("1.3.6.1.5.5.7.1.24"), "tlsfeature"),
    (oid("1.3.6.1.4.1.11129.2.4.2"), "ct_precert_scts"),
    (oid("1.3.6.1.4.1.11129.2.4.3"), "ct_precert_poison"),
    (NS_CERT_TYPE, "nsCertType"),
    (NS_COMMENT, "nsComment"),
];

/// Netscape certificate type bits, most significant first.
const NS_CERT_TYPES: [&str; 8] = [
    "SSL Client",
    "SSL Server",
    "S/MIME",
    "Object Signing",
    "Unused",
    "SSL CA",
    "S/MIME CA",
    "Object Signing CA",
];

/// CRLReason values by their ENUMERATED number (7 is unused).
const CRL_REASONS: [&str; 11] = [
    "unspecified",
    "keyCompromise",
    "cACompromise",
    "affiliationChanged",
    "superseded",
    "cessationOfOperation",
    "certificateHold",
    "7",
    "removeFromCRL",
    "privilegeWithdrawn",
    "aACompromise",
];

pub fn describe_all(exts: &[Extension]) -> Vec<ExtensionInfo> {
    exts.iter().map(describe).collect()
}

pub fn describe(ext: &Extension) -> ExtensionInfo {
    let bytes = ext.extn_value.as_bytes();
    let value = decode_value(&ext.extn_id, bytes).unwrap_or_else(|error| ExtValue::Raw {
        error,
        der_hex: colon_hex(bytes),
    });
    ExtensionInfo {
        oid: ext.extn_id.to_string(),
        name: NAMES
            .iter()
            .find(|(o, _)| *o == ext.extn_id)
            .map(|(_, n)| *n),
        critical: ext.critical,
        value,
    }
}

/// The reason of a CRL entry, if it has one that decodes.
pub fn crl_reason(exts: &[ExtensionInfo]) -> Option<String> {
    exts.iter()
        .find(|e| e.name == Some("CRLReason"))
        .and_then(|e| match &e.value {
            ExtValue::Text(t) => Some(t.clone()),
            _ => None,
        })
}

/// `Err(Some(why))` for a known extension that does not decode; `Err(None)`
/// for an unknown one.
fn decode_value(oid: &ObjectIdentifier, b: &[u8]) -> Result<ExtValue, Option<String>> {
    let bad = |e: der::Error| Some(format!("malformed value ({e})"));
    Ok(match *oid {
        SKI => ExtValue::Text(colon_hex(
            SubjectKeyIdentifier::from_der(b).map_err(bad)?.0.as_bytes(),
        )),
        KU => {
            let ku = KeyUsage::from_der(b).map_err(bad)?;
            ExtValue::List(
                KEY_USAGE_NAMES
                    .iter()
                    .filter(|(_, _, bit)| ku.0.contains(*bit))
                    .map(|(short, _, _)| short.to_string())
                    .collect(),
            )
        }
        SAN | IAN | CERT_ISSUER => {
            ExtValue::List(general_names(&GeneralNames::from_der(b).map_err(bad)?))
        }
        BC => {
            let bc = BasicConstraints::from_der(b).map_err(bad)?;
            ExtValue::BasicConstraints {
                ca: bc.ca,
                path_len: bc.path_len_constraint,
            }
        }
        CRL_NUMBER | DELTA_CRL => {
            let n = der::asn1::IntRef::from_der(b).map_err(bad)?;
            ExtValue::Text(integer_text(n.as_bytes()))
        }
        CRL_REASON => {
            let any = der::asn1::AnyRef::from_der(b).map_err(bad)?;
            match (any.tag(), any.value()) {
                (Tag::Enumerated, [n]) if usize::from(*n) < CRL_REASONS.len() => {
                    ExtValue::Text(CRL_REASONS[usize::from(*n)].to_string())
                }
                _ => return Err(Some("not a known CRLReason".into())),
            }
        }
        INVALIDITY_DATE => {
            let t = super::asn1::RawTime::from_der(b).map_err(bad)?;
            ExtValue::Text(super::rfc3339(t.to_datetime().map_err(Some)?))
        }
        CDP | FRESHEST_CRL => {
            let mut out = Vec::new();
            for dp in CrlDistributionPoints::from_der(b).map_err(bad)?.0 {
                match dp.distribution_point {
                    Some(DistributionPointName::FullName(names)) => {
                        out.extend(general_names(&names))
                    }
                    Some(DistributionPointName::NameRelativeToCRLIssuer(_)) => {
                        out.push("<relative name>".into())
                    }
                    None => {}
                }
            }
            ExtValue::List(out)
        }
        POLICIES => ExtValue::List(
            CertificatePolicies::from_der(b)
                .map_err(bad)?
                .0
                .iter()
                .map(|p| p.policy_identifier.to_string())
                .collect(),
        ),
        AKI => {
            let aki = AuthorityKeyIdentifier::from_der(b).map_err(bad)?;
            ExtValue::AuthorityKeyId {
                key_id: aki.key_identifier.map(|k| colon_hex(k.as_bytes())),
                issuer: aki.authority_cert_issuer.as_ref().map(general_names),
                serial: aki
                    .authority_cert_serial_number
                    .map(|s| integer_hex(s.as_bytes())),
            }
        }
        EKU => ExtValue::List(
            ExtendedKeyUsage::from_der(b)
                .map_err(bad)?
                .0
                .iter()
                .map(eku_name)
                .collect(),
        ),
        AIA | SIA => ExtValue::List(
            AuthorityInfoAccessSyntax::from_der(b)
                .map_err(bad)?
                .0
                .iter()
                .map(|ad| {
                    let method = match ad.access_method.to_string().as_str() {
                        "1.3.6.1.5.5.7.48.1" => "OCSP".to_string(),
                        "1.3.6.1.5.5.7.48.2" => "caIssuers".to_string(),
                        other => other.to_string(),
                    };
                    format!("{method} - {}", general_name(&ad.access_location))
                })
                .collect(),
        ),
        NS_CERT_TYPE => {
            let bits = BitStringRef::from_der(b).map_err(bad)?;
            ExtValue::List(
                bits.bits()
                    .zip(NS_CERT_TYPES)
                    .filter(|(set, _)| *set)
                    .map(|(_, name)| name.to_string())
                    .collect(),
            )
        }
        NS_COMMENT => ExtValue::Text(Ia5StringRef::from_der(b).map_err(bad)?.to_string()),
        _ => return Err(None),
    })
}

/// An INTEGER as OpenSSL's text output shows it: decimal when it fits in
/// 64 bits, else `0x` and hex.
fn integer_text(bytes: &[u8]) -> String {
    let hex = integer_hex(bytes);
    match hex.strip_prefix('-') {
        Some(mag) => i64::from_str_radix(mag, 16).map_or(format!("-0x{mag}"), |v| (-v).to_string()),
        None => u64::from_str_radix(&hex, 16).map_or(format!("0x{hex}"), |v| v.to_string()),
    }
}

fn eku_name(oid: &ObjectIdentifier) -> String {
    let dotted = oid.to_string();
    EKU_NAMES
        .iter()
        .find(|(_, _, o)| *o == dotted)
        .map_or(dotted.clone(), |(short, _, _)| short.to_string())
}

fn general_names(names: &GeneralNames) -> Vec<String> {
    names.iter().map(general_name).collect()
}

/// A GeneralName in the syntax OpenSSL configs use (`DNS:`, `IP:`, ...).
pub fn general_name(name: &GeneralName) -> String {
    match name {
        GeneralName::OtherName(o) => format!("otherName:{}", o.type_id),
        GeneralName::Rfc822Name(s) => format!("email:{s}"),
        GeneralName::DnsName(s) => format!("DNS:{s}"),
        GeneralName::DirectoryName(n) => format!("dirName:{}", to_rfc4514(n)),
        GeneralName::EdiPartyName(_) => "ediPartyName:<unsupported>".into(),
        GeneralName::UniformResourceIdentifier(s) => format!("URI:{s}"),
        GeneralName::IpAddress(ip) => {
            let b = ip.as_bytes();
            let text = match b.len() {
                4 => <[u8; 4]>::try_from(b).map(|a| Ipv4Addr::from(a).to_string()),
                16 => <[u8; 16]>::try_from(b).map(|a| Ipv6Addr::from(a).to_string()),
                _ => Ok(colon_hex(b)),
            };
            format!("IP:{}", text.unwrap_or_else(|_| colon_hex(b)))
        }
        GeneralName::RegisteredId(o) => format!("RID:{o}"),
    }
}

/// One line of human text for a value.
pub fn value_text(value: &ExtValue) -> String {
    match value {
        ExtValue::List(items) => items.join(", "),
        ExtValue::Text(t) => t.clone(),
        ExtValue::BasicConstraints { ca, path_len } => {
            let mut s = format!("CA:{}", if *ca { "TRUE" } else { "FALSE" });
            if let Some(n) = path_len {
                s.push_str(&format!(", pathlen:{n}"));
            }
            s
        }
        ExtValue::AuthorityKeyId {
            key_id,
            issuer,
            serial,
        } => {
            let mut parts = Vec::new();
            if let Some(k) = key_id {
                parts.push(format!("keyid:{k}"));
            }
            if let Some(names) = issuer {
                parts.extend(names.iter().cloned());
            }
            if let Some(s) = serial {
                parts.push(format!("serial:{s}"));
            }
            parts.join(", ")
        }
        ExtValue::Raw { error, der_hex } => match error {
            Some(e) => format!("{e}: {der_hex}"),
            None => der_hex.clone(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use der::asn1::OctetString;

    fn ext(oid: &str, value: &[u8]) -> ExtensionInfo {
        describe(&Extension {
            extn_id: ObjectIdentifier::new_unwrap(oid),
            critical: false,
            extn_value: OctetString::new(value).unwrap(),
        })
    }

    #[test]
    fn unknown_is_hex_not_error() {
        let e = ext("1.2.3.4.5", &[0x04, 0x01, 0xab]);
        assert!(e.name.is_none());
        assert!(
            matches!(&e.value, ExtValue::Raw { error: None, der_hex } if der_hex == "04:01:AB")
        );
    }

    #[test]
    fn malformed_known_is_hex_with_error() {
        let e = ext("2.5.29.19", &[0x30, 0x05]);
        assert_eq!(e.name, Some("basicConstraints"));
        assert!(matches!(&e.value, ExtValue::Raw { error: Some(_), .. }));
    }

    #[test]
    fn reasons_and_usages() {
        let r = ext("2.5.29.21", &[0x0a, 0x01, 0x06]);
        assert_eq!(value_text(&r.value), "certificateHold");
        // keyUsage digitalSignature + keyCertSign: bits 0 and 5.
        let ku = ext("2.5.29.15", &[0x03, 0x02, 0x02, 0x84]);
        assert_eq!(value_text(&ku.value), "digitalSignature, keyCertSign");
        let n = ext("2.5.29.20", &[0x02, 0x02, 0x10, 0x00]);
        assert_eq!(value_text(&n.value), "4096");
        let big = ext("2.5.29.20", &[0x02, 0x09, 0x01, 0, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(value_text(&big.value), "0x010000000000000000");
        let ns = ext("2.16.840.1.113730.1.1", &[0x03, 0x02, 0x05, 0xa0]);
        assert_eq!(value_text(&ns.value), "SSL Client, S/MIME");
    }
}
