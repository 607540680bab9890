//! `devcert inspect`: tells what certificate material a file holds
//! (certificate, chain, CSR, private key and its format, public key, CRL;
//! PEM or DER; any number of PEM blocks) and describes it for people
//! ([`text`]) and scripts ([`json`]).
//!
//! Display is lenient where validation is strict: odd serials, pre-1970
//! times and unknown or malformed extensions are shown, not refused (see
//! `asn1.rs`). Private key material never enters a [`Report`].

mod asn1;
mod cert;
pub mod extensions;
pub mod json;
mod key;
pub mod text;

use der::Decode;
use serde::Serialize;
use time::OffsetDateTime;

pub use cert::{CertInfo, CrlInfo, CsrInfo, RevokedInfo};
pub use key::{PrivateKeyInfo, PublicKeyFile, PublicKeyInfo};

use crate::error::{Error, Result};
use crate::input::{Block, Input};
use crate::keys::{Curve, KeyEncoding, sniff_der};

/// Everything found in one input, in file order.
#[derive(Debug, Clone)]
pub struct Report {
    pub label: String,
    pub pem: bool,
    pub items: Vec<Item>,
}

/// One object of the input. The JSON form carries `"kind"`.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Item {
    Certificate(CertInfo),
    Csr(CsrInfo),
    PrivateKey(PrivateKeyInfo),
    PublicKey(PublicKeyFile),
    Crl(CrlInfo),
    /// An `EC PARAMETERS` block on its own (with a key it only names the curve).
    EcParameters {
        curve: String,
    },
}

const WHAT: &str = "cannot inspect";

/// Reads and describes every block of `input`.
pub fn inspect(input: &Input) -> Result<Report> {
    let blocks = input.blocks().map_err(|e| Error {
        what: WHAT.into(),
        ..e
    })?;
    let many = blocks.len() > 1;
    // `openssl ecparam -genkey` writes the curve in its own block before the key.
    let curve_hint = blocks
        .iter()
        .filter(|b| b.tag.as_deref() == Some("EC PARAMETERS"))
        .find_map(|b| der::asn1::ObjectIdentifier::from_der(&b.der).ok())
        .and_then(|o| Curve::from_oid(&o));
    let has_key = blocks
        .iter()
        .any(|b| b.tag.as_deref().is_some_and(|t| t.ends_with("PRIVATE KEY")));
    let mut items = Vec::new();
    for (i, block) in blocks.iter().enumerate() {
        let label = if many {
            format!("{}#{}", input.label, i + 1)
        } else {
            input.label.clone()
        };
        let fail = |why: String| Error::parse(WHAT, why).file(label.clone());
        let item = match block.tag.as_deref() {
            Some("EC PARAMETERS") if has_key => continue,
            Some(tag) => tagged(tag, block, curve_hint).map_err(fail)?,
            None => sniff(&block.der).map_err(fail)?,
        };
        items.push(item);
    }
    Ok(Report {
        label: input.label.clone(),
        pem: input.is_pem(),
        items,
    })
}

/// One certificate described as `inspect --json` describes it; the
/// `--json` reports of the commands that write certificates use it too.
pub fn describe_certificate(der: &[u8]) -> Result<CertInfo> {
    cert::certificate(der, false)
        .map_err(|e| Error::parse(WHAT, format!("not a valid X.509 certificate ({e})")))
}

/// A PEM block, read as its label says.
fn tagged(tag: &str, block: &Block, curve_hint: Option<Curve>) -> Result<Item, String> {
    let der = &block.der;
    let key = |enc| {
        Ok(Item::PrivateKey(key::describe_private(
            der, enc, curve_hint,
        )))
    };
    match tag {
        "CERTIFICATE" | "X509 CERTIFICATE" => cert::certificate(der, false)
            .map(Item::Certificate)
            .map_err(|e| format!("not a valid X.509 certificate ({e})")),
        // OpenSSL's trust settings follow the certificate.
        "TRUSTED CERTIFICATE" => cert::certificate(der, true)
            .map(Item::Certificate)
            .map_err(|e| format!("not a valid X.509 certificate ({e})")),
        "CERTIFICATE REQUEST" | "NEW CERTIFICATE REQUEST" => cert::csr(der)
            .map(Item::Csr)
            .map_err(|e| format!("not a valid PKCS#10 request ({e})")),
        "X509 CRL" => cert::crl(der)
            .map(Item::Crl)
            .map_err(|e| format!("not a valid CRL ({e})")),
        "PRIVATE KEY" => key(KeyEncoding::Pkcs8),
        "ENCRYPTED PRIVATE KEY" => key(KeyEncoding::EncryptedPkcs8),
        "EC PRIVATE KEY" | "RSA PRIVATE KEY" if block.has_headers => {
            Ok(Item::PrivateKey(PrivateKeyInfo {
                format: if tag == "EC PRIVATE KEY" {
                    "SEC1"
                } else {
                    "PKCS#1"
                },
                encrypted: true,
                encryption: Some("legacy OpenSSL PEM encryption (Proc-Type: 4,ENCRYPTED)".into()),
                public_key: None,
                problem: None,
            }))
        }
        "EC PRIVATE KEY" => key(KeyEncoding::Sec1),
        "RSA PRIVATE KEY" => key(KeyEncoding::Pkcs1),
        "PUBLIC KEY" => {
            spki::SubjectPublicKeyInfoRef::from_der(der)
                .map_err(|e| format!("not a valid public key ({e})"))?;
            Ok(Item::PublicKey(PublicKeyFile {
                format: "SPKI",
                public_key: key::describe_spki(der),
            }))
        }
        "RSA PUBLIC KEY" => {
            let spki = key::pkcs1_public_to_spki(der).ok_or("not a valid PKCS#1 RSA public key")?;
            Ok(Item::PublicKey(PublicKeyFile {
                format: "PKCS#1",
                public_key: key::describe_spki(&spki),
            }))
        }
        "EC PARAMETERS" => {
            let curve = der::asn1::ObjectIdentifier::from_der(der)
                .map_err(|_| "EC parameters that are not a named curve")?;
            Ok(Item::EcParameters {
                curve: Curve::from_oid(&curve)
                    .map_or(curve.to_string(), |c| c.openssl_name().to_string()),
            })
        }
        other => Err(format!(
            "a '{other}' PEM block is not certificate material devcert reads"
        )),
    }
}

/// A DER object without a label: tried as each kind in turn.
fn sniff(der: &[u8]) -> Result<Item, String> {
    let cert_err = match cert::certificate(der, false) {
        Ok(c) => return Ok(Item::Certificate(c)),
        Err(e) => e,
    };
    if let Ok(crl) = cert::crl(der) {
        return Ok(Item::Crl(crl));
    }
    if let Ok(csr) = cert::csr(der) {
        return Ok(Item::Csr(csr));
    }
    if let Some(enc) = sniff_der(der) {
        return Ok(Item::PrivateKey(key::describe_private(der, enc, None)));
    }
    if spki::SubjectPublicKeyInfoRef::from_der(der).is_ok() {
        return Ok(Item::PublicKey(PublicKeyFile {
            format: "SPKI",
            public_key: key::describe_spki(der),
        }));
    }
    if let Some(spki) = key::pkcs1_public_to_spki(der) {
        return Ok(Item::PublicKey(PublicKeyFile {
            format: "PKCS#1",
            public_key: key::describe_spki(&spki),
        }));
    }
    Err(format!(
        "DER that is no certificate, CSR, CRL or key (as a certificate: {cert_err})"
    ))
}

/// `AB:CD:...`, as OpenSSL prints key ids and fingerprints.
pub(crate) fn colon_hex(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// RFC 3339 in UTC (`2030-01-01T00:00:00Z`).
pub(crate) fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| t.to_string())
}
