//! The facts about a certificate that `--json` reports print, in the forms
//! OpenSSL prints them (`x509 -serial`, `-fingerprint -sha256`), so scripts
//! can compare the two.

use der::Decode;
use serde::Serialize;
use x509_cert::Certificate;

use crate::error::{Error, Result};
use crate::name::to_rfc4514;
use crate::sign::{format_time, serial_hex};

#[derive(Debug, Clone, Serialize)]
pub struct CertSummary {
    /// RFC 4514.
    pub subject: String,
    pub issuer: String,
    /// Upper-case hex, no colons.
    pub serial: String,
    /// RFC 3339, UTC.
    pub not_before: String,
    pub not_after: String,
    /// `AB:CD:...`, as `openssl x509 -fingerprint -sha256`.
    pub sha256_fingerprint: String,
}

impl CertSummary {
    pub fn from_der(der: &[u8]) -> Result<CertSummary> {
        let cert = Certificate::from_der(der)
            .map_err(|e| Error::parse("cannot read certificate", e.to_string()))?;
        Ok(CertSummary::of(&cert, der))
    }

    /// `der` must be `cert`'s encoding (it is what the fingerprint covers).
    pub fn of(cert: &Certificate, der: &[u8]) -> CertSummary {
        let tbs = cert.tbs_certificate();
        CertSummary {
            subject: to_rfc4514(tbs.subject()),
            issuer: to_rfc4514(tbs.issuer()),
            serial: serial_hex(tbs.serial_number()),
            not_before: format_time(tbs.validity().not_before.to_system_time()),
            not_after: format_time(tbs.validity().not_after.to_system_time()),
            sha256_fingerprint: crate::batch::fingerprint(der),
        }
    }
}
