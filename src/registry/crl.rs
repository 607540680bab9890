//! `registry crl`: a CRL of the held (Inactive) devices of one CA, so a
//! broker such as Mosquitto (`crlfile`) enforces deactivation.
//!
//! Brokers are unforgiving about CRLs (PITFALLS.md): Mosquitto fails OPEN
//! when it reloads a missing or half-written CRL and refuses EVERY device
//! when the CRL is expired or badly signed. So the CRL is written to a temp
//! file, read back and verified against the CA, and only then renamed over
//! the old one; thisUpdate lies a little in the past for clock skew.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use der::asn1::{OctetString, Uint};
use der::{Decode, Encode};
use rusqlite::params;
use x509_cert::certificate::Version;
use x509_cert::crl::{CertificateList, RevokedCert, TbsCertList};
use x509_cert::ext::Extension;
use x509_cert::ext::pkix::crl::{CrlNumber, CrlReason};
use x509_cert::ext::pkix::{AuthorityKeyIdentifier, KeyUsage};
use x509_cert::serial_number::SerialNumber;

use super::Registry;
use super::cas::ca_key_id;
use crate::error::{Error, ErrorKind, Result};
use crate::keys::pem_encode;
use crate::output::{Mode, commit, refuse_existing, stage, write_stdout};
use crate::sign::{CaSigner, verify_signed, x509_time};

/// How far thisUpdate lies before now: brokers whose clock is a little
/// behind must not see a CRL that is "not yet valid".
const CLOCK_SKEW: Duration = Duration::from_secs(300);

const OID_AKI: der::asn1::ObjectIdentifier = der::asn1::ObjectIdentifier::new_unwrap("2.5.29.35");
const OID_CRL_NUMBER: der::asn1::ObjectIdentifier =
    der::asn1::ObjectIdentifier::new_unwrap("2.5.29.20");
const OID_CRL_REASON: der::asn1::ObjectIdentifier =
    der::asn1::ObjectIdentifier::new_unwrap("2.5.29.21");

/// A signed CRL and what it holds.
pub struct Crl {
    pub der: Vec<u8>,
    pub number: u64,
    /// Serials listed (certificateHold), upper-case hex.
    pub held: Vec<String>,
    pub warnings: Vec<String>,
}

impl Registry {
    /// Takes the next CRL number of CA `ca_id` and its held devices
    /// (serial, deactivation time) in one transaction.
    fn crl_snapshot(&mut self, ca_id: i64) -> Result<(u64, Vec<(String, i64)>)> {
        let (tx, fail) = self.write_tx("cannot read registry")?;
        let fail = &fail;
        let number: i64 = tx
            .query_row(
                "UPDATE cas SET crl_number = crl_number + 1 WHERE id = ?1 RETURNING crl_number",
                [ca_id],
                |r| r.get(0),
            )
            .map_err(fail)?;
        let held = {
            let mut st = tx
                .prepare(
                    "SELECT serial, coalesce(deactivated_at, ?2) FROM devices
                     WHERE ca_id = ?1 AND status = 'inactive' ORDER BY id",
                )
                .map_err(fail)?;
            st.query_map(params![ca_id, super::now()], |r| Ok((r.get(0)?, r.get(1)?)))
                .map_err(fail)?
                .collect::<rusqlite::Result<Vec<_>>>()
                .map_err(fail)?
        };
        tx.commit().map_err(fail)?;
        Ok((number as u64, held))
    }
}

/// Builds and signs the CRL of `ca`, which must be registered.
pub fn build_crl(reg: &mut Registry, ca: &CaSigner, days: u32) -> Result<Crl> {
    let ca_id = reg.ca_id(&ca.cert)?.ok_or_else(|| {
        Error::refused("cannot make CRL", "this CA is not registered")
            .file(&ca.cert.label)
            .hint(format!(
                "register it first: devcert registry ca add {}",
                ca.cert.label
            ))
    })?;
    let mut warnings = Vec::new();
    let ca_tbs = ca.cert.cert.tbs_certificate();
    if let Ok(Some((_, ku))) = ca_tbs.get_extension::<KeyUsage>()
        && !ku.crl_sign()
    {
        warnings.push(format!(
            "the CA's keyUsage lacks cRLSign: brokers will refuse EVERY device of {} once this CRL is loaded",
            ca.cert.label
        ));
    }
    let (number, held) = reg.crl_snapshot(ca_id)?;
    let now = SystemTime::now();
    let enc = |e: der::Error| Error::crypto("cannot encode CRL", e);
    let revoked = held
        .iter()
        .map(|(serial, at)| {
            Ok(RevokedCert {
                serial_number: serial_from_hex(serial)?,
                revocation_date: x509_time(UNIX_EPOCH + Duration::from_secs(*at as u64))?,
                crl_entry_extensions: Some(vec![extension(
                    OID_CRL_REASON,
                    CrlReason::CertificateHold.to_der().map_err(enc)?,
                )?]),
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let aki = AuthorityKeyIdentifier {
        key_identifier: Some(OctetString::new(ca_key_id(&ca.cert)).map_err(enc)?),
        ..Default::default()
    };
    let number_der = CrlNumber(Uint::new(&number.to_be_bytes()).map_err(enc)?)
        .to_der()
        .map_err(enc)?;
    let tbs = TbsCertList {
        version: Version::V2,
        signature: ca.algorithm().clone(),
        issuer: ca_tbs.subject().clone(),
        this_update: x509_time(now - CLOCK_SKEW)?,
        next_update: Some(x509_time(
            now + Duration::from_secs(u64::from(days) * 86_400),
        )?),
        revoked_certificates: (!revoked.is_empty()).then_some(revoked),
        crl_extensions: Some(vec![
            extension(OID_AKI, aki.to_der().map_err(enc)?)?,
            extension(OID_CRL_NUMBER, number_der)?,
        ]),
    };
    let der = ca.sign_tbs(&tbs.to_der().map_err(enc)?)?;
    Ok(Crl {
        der,
        number,
        held: held.into_iter().map(|(s, _)| s).collect(),
        warnings,
    })
}

fn extension(oid: der::asn1::ObjectIdentifier, value: Vec<u8>) -> Result<Extension> {
    Ok(Extension {
        extn_id: oid,
        critical: false,
        extn_value: OctetString::new(value)
            .map_err(|e| Error::crypto("cannot encode CRL extension", e))?,
    })
}

/// A stored serial back to its DER integer (the sign byte is re-added).
fn serial_from_hex(hex: &str) -> Result<SerialNumber> {
    let bytes: Vec<u8> = (0..hex.len())
        .step_by(2)
        .filter_map(|i| {
            hex.get(i..i + 2)
                .and_then(|b| u8::from_str_radix(b, 16).ok())
        })
        .collect();
    SerialNumber::new(&bytes)
        .map_err(|e| Error::crypto(format!("cannot encode serial {hex} in CRL"), e))
}

/// Checks CRL bytes as a broker would load them: parseable, signed by the
/// CA's key, current, and listing exactly `held`.
fn check_crl(bytes: &[u8], ca: &CaSigner, held: &[String]) -> Result<(), String> {
    let der = if bytes.starts_with(b"-----BEGIN") {
        pem::parse(bytes)
            .map_err(|e| format!("unreadable PEM ({e})"))?
            .into_contents()
    } else {
        bytes.to_vec()
    };
    let crl = CertificateList::from_der(&der).map_err(|e| format!("unreadable CRL ({e})"))?;
    let spki = ca
        .cert
        .cert
        .tbs_certificate()
        .subject_public_key_info()
        .to_der()
        .map_err(|e| e.to_string())?;
    verify_signed(&der, &spki)?;
    let tbs = &crl.tbs_cert_list;
    let now = SystemTime::now();
    if tbs.this_update.to_system_time() > now
        || tbs.next_update.is_none_or(|t| t.to_system_time() <= now)
    {
        return Err("not current (thisUpdate/nextUpdate)".into());
    }
    let listed: Vec<String> = tbs
        .revoked_certificates
        .iter()
        .flatten()
        .map(|r| crate::sign::serial_hex(&r.serial_number))
        .collect();
    if listed != held {
        return Err("its entries differ from the registry's held devices".into());
    }
    Ok(())
}

/// Writes the CRL (PEM, or DER with `der`) to `out` (`-`: stdout). A file
/// is replaced only with `force`, and only after the bytes on disk were
/// read back and verified against the CA.
pub fn write_crl(crl: &Crl, ca: &CaSigner, out: &str, der: bool, force: bool) -> Result<()> {
    let bytes = if der {
        crl.der.clone()
    } else {
        pem_encode("X509 CRL", &crl.der).into_bytes()
    };
    let bad = |why: String| {
        Error::new(ErrorKind::Crypto, "CRL failed its check, old CRL kept", why).file(out)
    };
    if out == "-" {
        check_crl(&bytes, ca, &crl.held).map_err(bad)?;
        return write_stdout(&bytes);
    }
    refuse_existing(out, force)?;
    let staged = stage(std::path::Path::new(out), &bytes, Mode::Public)?;
    let written = std::fs::read(staged.temp_path())
        .map_err(|e| Error::io("cannot read back CRL", out, &e))?;
    check_crl(&written, ca, &crl.held).map_err(bad)?;
    commit(staged, force)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_serials_get_their_sign_byte_back() {
        let sn = serial_from_hex("80FF").unwrap();
        assert_eq!(sn.as_bytes(), [0x00, 0x80, 0xFF]);
        assert_eq!(crate::sign::serial_hex(&sn), "80FF");
        let sn = serial_from_hex("0A").unwrap();
        assert_eq!(sn.as_bytes(), [0x0A]);
    }
}
