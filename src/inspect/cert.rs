//! Certificates, CSRs and CRLs turned into their displayable facts.

use der::{Decode, Encode};
use serde::Serialize;
use time::OffsetDateTime;
use x509_cert::ext::Extension;
use x509_cert::request::CertReq;

use super::asn1::{self, RawTime};
use super::extensions::{ExtensionInfo, crl_reason, describe_all};
use super::key::{PublicKeyInfo, describe_spki};
use super::rfc3339;
use crate::batch::fingerprint;
use crate::crypto::signature_algorithm_name;
use crate::name::to_rfc4514;
use crate::sign::{integer_hex, verify_signed};

#[derive(Debug, Clone, Serialize)]
pub struct CertInfo {
    /// 1, 2 or 3.
    pub version: u16,
    /// RFC 4514, as `openssl x509 -subject -nameopt RFC2253,-esc_msb`.
    pub subject: String,
    pub issuer: String,
    /// Upper-case hex as `openssl x509 -serial` (`-` before a negative one).
    pub serial: String,
    /// RFC 3339.
    pub not_before: String,
    pub not_after: String,
    pub public_key: PublicKeyInfo,
    pub signature_algorithm: String,
    pub extensions: Vec<ExtensionInfo>,
    /// SHA-256 of the certificate DER, `AB:CD:...`.
    pub sha256_fingerprint: String,
    /// Both validity times, when they could be read.
    #[serde(skip)]
    pub validity: Option<(OffsetDateTime, OffsetDateTime)>,
}

#[derive(Debug, Clone, Serialize)]
pub struct CsrInfo {
    pub subject: String,
    pub public_key: PublicKeyInfo,
    pub signature_algorithm: String,
    /// Whether the request is signed by its own key.
    pub signature_valid: bool,
    /// The extensions it asks for (devcert does not copy them, as OpenSSL).
    pub requested_extensions: Vec<ExtensionInfo>,
    /// Other attributes by OID; values are not shown (a challengePassword is a secret).
    pub other_attributes: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct CrlInfo {
    /// 1 or 2.
    pub version: u16,
    pub issuer: String,
    pub this_update: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_update: Option<String>,
    pub signature_algorithm: String,
    pub extensions: Vec<ExtensionInfo>,
    pub revoked: Vec<RevokedInfo>,
    pub sha256_fingerprint: String,
    #[serde(skip)]
    pub next_update_time: Option<OffsetDateTime>,
}

#[derive(Debug, Clone, Serialize)]
pub struct RevokedInfo {
    pub serial: String,
    pub revocation_date: String,
    /// From the entry's CRLReason extension.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    pub extensions: Vec<ExtensionInfo>,
}

/// A time as RFC 3339, or what is wrong with it.
fn time_text(t: &RawTime<'_>) -> (String, Option<OffsetDateTime>) {
    match t.to_datetime() {
        Ok(dt) => (rfc3339(dt), Some(dt)),
        Err(why) => (format!("invalid: {why}"), None),
    }
}

fn exts(list: &Option<Vec<Extension>>) -> Vec<ExtensionInfo> {
    list.as_deref().map(describe_all).unwrap_or_default()
}

/// `trailing_ok`: bytes after the certificate are allowed (`TRUSTED CERTIFICATE`).
pub fn certificate(der: &[u8], trailing_ok: bool) -> der::Result<CertInfo> {
    let cert: asn1::Cert<'_> = if trailing_ok {
        asn1::decode_prefix(der)?
    } else {
        asn1::Cert::from_der(der)?
    };
    let own = &der[..usize::try_from(cert.encoded_len()?)?];
    let tbs = &cert.tbs;
    let (not_before, nb) = time_text(&tbs.validity.not_before);
    let (not_after, na) = time_text(&tbs.validity.not_after);
    Ok(CertInfo {
        version: u16::from(tbs.version) + 1,
        subject: to_rfc4514(&tbs.subject),
        issuer: to_rfc4514(&tbs.issuer),
        serial: integer_hex(tbs.serial.as_bytes()),
        not_before,
        not_after,
        public_key: describe_spki(&tbs.spki.to_der()?),
        signature_algorithm: signature_algorithm_name(&cert.signature_algorithm.oid),
        extensions: exts(&tbs.extensions),
        sha256_fingerprint: fingerprint(own),
        validity: nb.zip(na),
    })
}

pub fn csr(der: &[u8]) -> der::Result<CsrInfo> {
    const EXTENSION_REQUEST: der::asn1::ObjectIdentifier =
        der::asn1::ObjectIdentifier::new_unwrap("1.2.840.113549.1.9.14");
    let req = CertReq::from_der(der)?;
    let spki = req.info.public_key.to_der()?;
    let mut requested = Vec::new();
    let mut other = Vec::new();
    for attr in req.info.attributes.iter() {
        if attr.oid == EXTENSION_REQUEST {
            for value in attr.values.iter() {
                requested.extend(describe_all(&Vec::<Extension>::from_der(&value.to_der()?)?));
            }
        } else {
            other.push(attr.oid.to_string());
        }
    }
    Ok(CsrInfo {
        subject: to_rfc4514(&req.info.subject),
        public_key: describe_spki(&spki),
        signature_algorithm: signature_algorithm_name(&req.algorithm.oid),
        signature_valid: verify_signed(der, &spki).is_ok(),
        requested_extensions: requested,
        other_attributes: other,
    })
}

pub fn crl(der: &[u8]) -> der::Result<CrlInfo> {
    let crl = asn1::Crl::from_der(der)?;
    let tbs = &crl.tbs;
    let (next_update, next_update_time) = match &tbs.next_update {
        Some(t) => {
            let (s, dt) = time_text(t);
            (Some(s), dt)
        }
        None => (None, None),
    };
    let revoked = tbs
        .revoked
        .iter()
        .flatten()
        .map(|r| {
            let extensions = exts(&r.extensions);
            RevokedInfo {
                serial: integer_hex(r.serial.as_bytes()),
                revocation_date: time_text(&r.revocation_date).0,
                reason: crl_reason(&extensions),
                extensions,
            }
        })
        .collect();
    Ok(CrlInfo {
        version: tbs.version.map_or(1, |v| u16::from(v) + 1),
        issuer: to_rfc4514(&tbs.issuer),
        this_update: time_text(&tbs.this_update).0,
        next_update,
        signature_algorithm: signature_algorithm_name(&crl.signature_algorithm.oid),
        extensions: exts(&tbs.extensions),
        revoked,
        sha256_fingerprint: fingerprint(der),
        next_update_time,
    })
}
