//! `registry crl`: a CRL per CA of its issuer's held (Inactive, reason
//! certificateHold) and revoked devices (their revocation reason, also once
//! deleted), so a broker such as Mosquitto (`crlfile`) enforces both. The
//! issuer is the CA's name and key: a CRL made with a renewed or
//! cross-signed certificate covers the devices registered under any
//! certificate of that issuer. Several CAs' CRLs go into one PEM file.
//!
//! Brokers are unforgiving about CRLs (PITFALLS.md): Mosquitto fails OPEN
//! when it reloads a missing or half-written CRL and refuses EVERY device
//! when the CRL is expired or badly signed. So the CRL is written to a temp
//! file, read back and verified against the CA, and only then renamed over
//! the old one; thisUpdate lies a little in the past for clock skew.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use der::asn1::{OctetString, Uint};
use der::{Decode, Encode};
use x509_cert::certificate::Version;
use x509_cert::crl::{CertificateList, RevokedCert, TbsCertList};
use x509_cert::ext::Extension;
use x509_cert::ext::pkix::crl::{CrlNumber, CrlReason};
use x509_cert::ext::pkix::{AuthorityKeyIdentifier, KeyUsage};
use x509_cert::serial_number::SerialNumber;

use super::cas::{IssuerId, ca_key_id};
use super::{Registry, RevokeReason};
use crate::error::{Error, ErrorKind, Result};
use crate::input::LoadedCert;
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
    /// What it lists, in order.
    pub entries: Vec<CrlEntry>,
    pub warnings: Vec<String>,
}

/// One listed serial (upper-case hex) and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CrlEntry {
    pub serial: String,
    /// `None`: held (certificateHold); else the revocation reason.
    pub revoked: Option<RevokeReason>,
}

impl Crl {
    pub fn held(&self) -> usize {
        self.entries.iter().filter(|e| e.revoked.is_none()).count()
    }

    pub fn revoked(&self) -> usize {
        self.entries.len() - self.held()
    }
}

impl Registry {
    /// Takes the next CRL number of the issuer whose registered
    /// certificates are `ids`, and its held and revoked devices (serial,
    /// time, revocation reason), in one transaction.
    fn crl_snapshot(&mut self, ids: &[i64]) -> Result<(u64, Vec<(String, i64, Option<String>)>)> {
        let (mut tx, fail) = self.write_tx("cannot read registry")?;
        let number = tx.next_crl_number(ids).map_err(&fail)?;
        let entries = tx.crl_entries(ids, super::now()).map_err(&fail)?;
        tx.commit().map_err(&fail)?;
        Ok((number as u64, entries))
    }
}

/// Builds and signs the CRL of `ca`, which must be registered.
pub fn build_crl(reg: &mut Registry, ca: &CaSigner, days: u32) -> Result<Crl> {
    let Some(ca_id) = reg.ca_id(&ca.cert)? else {
        return Err(not_registered(reg, &ca.cert)?);
    };
    let ids = reg.issuer_ids(ca_id)?;
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
    let (number, rows) = reg.crl_snapshot(&ids)?;
    // A device given a CA's serial before serials were unique across both
    // would put that CA on its own issuer's CRL.
    let ca_serials: Vec<String> = reg.cas()?.into_iter().map(|c| c.serial).collect();
    let mut entries = Vec::with_capacity(rows.len());
    let mut revoked = Vec::with_capacity(rows.len());
    let now = SystemTime::now();
    let enc = |e: der::Error| Error::crypto("cannot encode CRL", e);
    for (serial, at, reason) in rows {
        if ca_serials.contains(&serial) {
            warnings.push(format!(
                "device {serial} has the serial of a registered CA and is left out of the CRL (it would revoke that CA): delete it (device delete {serial} --force) and reissue it"
            ));
            continue;
        }
        let reason = match reason {
            // Unknown text cannot come from devcert; fail closed as keyCompromise.
            Some(r) => Some(r.parse::<RevokeReason>().unwrap_or_default()),
            None => None,
        };
        let code = match reason {
            None => Some(CrlReason::CertificateHold),
            Some(r) => r.crl_reason(),
        };
        let extensions = match code {
            Some(code) => Some(vec![extension(
                OID_CRL_REASON,
                code.to_der().map_err(enc)?,
            )?]),
            None => None,
        };
        revoked.push(RevokedCert {
            serial_number: serial_from_hex(&serial)?,
            revocation_date: x509_time(UNIX_EPOCH + Duration::from_secs(at.max(0) as u64))?,
            crl_entry_extensions: extensions,
        });
        entries.push(CrlEntry {
            serial,
            revoked: reason,
        });
    }
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
        entries,
        warnings,
    })
}

/// Why `ca` has no CRL: a renewal not registered yet, a same-name CA with
/// another key, or simply unknown.
fn not_registered(reg: &Registry, ca: &LoadedCert) -> Result<Error> {
    let tbs = ca.cert.tbs_certificate();
    let why = match reg.same_name_other_key(tbs.subject(), Some(tbs.subject_public_key_info()))? {
        Some(serial) => format!(
            "this CA is not registered (same name as registered CA {serial}, different key)"
        ),
        None => "this CA is not registered".into(),
    };
    Ok(Error::refused("cannot make CRL", why)
        .file(&ca.label)
        .hint(format!(
            "register it first: devcert registry ca add {}",
            ca.label
        )))
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

/// The CRL blocks of a file: PEM `X509 CRL` blocks, or one DER CRL.
fn crl_blocks(bytes: &[u8]) -> Result<Vec<Vec<u8>>, String> {
    if !bytes.starts_with(b"-----BEGIN") {
        return Ok(vec![bytes.to_vec()]);
    }
    let blocks = pem::parse_many(bytes).map_err(|e| format!("unreadable PEM ({e})"))?;
    if let Some(b) = blocks.iter().find(|b| b.tag() != "X509 CRL") {
        return Err(format!("holds a {} block", b.tag()));
    }
    Ok(blocks.into_iter().map(pem::Pem::into_contents).collect())
}

/// Whether `der` is a CRL signed by `ca`'s key under its name.
fn signed_by(der: &[u8], ca: &CaSigner) -> Result<CertificateList, String> {
    let crl = CertificateList::from_der(der).map_err(|e| format!("unreadable CRL ({e})"))?;
    let tbs = ca.cert.cert.tbs_certificate();
    let spki = tbs
        .subject_public_key_info()
        .to_der()
        .map_err(|e| e.to_string())?;
    verify_signed(der, &spki)?;
    if crl.tbs_cert_list.issuer != *tbs.subject() {
        return Err("its issuer is not the CA's name".into());
    }
    Ok(crl)
}

/// Checks one CRL as a broker would load it: parseable, signed by the
/// CA's key, current, and listing exactly `entries`.
fn check_crl(der: &[u8], ca: &CaSigner, entries: &[CrlEntry]) -> Result<(), String> {
    let crl = signed_by(der, ca)?;
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
    let expected: Vec<&String> = entries.iter().map(|e| &e.serial).collect();
    if listed.iter().collect::<Vec<_>>() != expected {
        return Err("its entries differ from the registry's held and revoked devices".into());
    }
    Ok(())
}

/// Refuses a list of CAs that names one issuer twice (a renewal beside
/// its original): two CRLs of one issuer in a file, with different
/// numbers, leave the broker to pick one.
pub fn same_issuer_twice(cas: &[CaSigner]) -> Option<String> {
    cas.iter().enumerate().find_map(|(i, a)| {
        cas[..i]
            .iter()
            .find(|b| IssuerId::of(&b.cert) == IssuerId::of(&a.cert))
            .map(|b| format!(
                "{} and {} are the same issuer (same name and key): one CRL covers the devices of both; give one of them",
                b.cert.label, a.cert.label
            ))
    })
}

/// Whether `out` is a CRL file devcert may replace without `--force`: a
/// regular file holding exactly one CRL of each of `cas` (what `registry
/// crl` wrote for them before), so replacing it loses nothing.
pub fn is_own_crl_file(out: &str, cas: &[CaSigner]) -> bool {
    // A CRL file of a few CAs is small; anything huge is not one of ours.
    let regular = std::fs::symlink_metadata(out)
        .is_ok_and(|m| m.file_type().is_file() && m.len() <= 64 << 20);
    let Some(blocks) = regular
        .then(|| std::fs::read(out).ok())
        .flatten()
        .and_then(|b| crl_blocks(&b).ok())
    else {
        return false;
    };
    blocks.len() == cas.len()
        && cas
            .iter()
            .all(|ca| blocks.iter().filter(|b| signed_by(b, ca).is_ok()).count() == 1)
}

/// Writes the CRLs of `crls` (PEM, one block per CA in order; or DER with
/// `der`, one CA only) to `out` (`-`: stdout). A file is replaced only with
/// `force`, and only after the bytes on disk were read back and each CRL
/// verified against its CA: a broker never reads a half-written file.
pub fn write_crls(crls: &[(Crl, &CaSigner)], out: &str, der: bool, force: bool) -> Result<()> {
    if der && crls.len() != 1 {
        return Err(Error::refused(
            "cannot write CRL",
            "DER holds one CRL: give one CA, or write PEM",
        )
        .file(out));
    }
    let bytes: Vec<u8> = if der {
        crls[0].0.der.clone()
    } else {
        crls.iter()
            .flat_map(|(c, _)| pem_encode("X509 CRL", &c.der).into_bytes())
            .collect()
    };
    let check = |bytes: &[u8]| -> Result<()> {
        let bad = |why: String| {
            Error::new(ErrorKind::Crypto, "CRL failed its check, old CRL kept", why).file(out)
        };
        let blocks = crl_blocks(bytes).map_err(bad)?;
        if blocks.len() != crls.len() {
            return Err(bad(format!(
                "{} CRLs read back, {} written",
                blocks.len(),
                crls.len()
            )));
        }
        for (block, (crl, ca)) in blocks.iter().zip(crls) {
            check_crl(block, ca, &crl.entries)
                .map_err(|why| bad(format!("{}: {why}", ca.cert.label)))?;
        }
        Ok(())
    };
    if out == "-" {
        check(&bytes)?;
        return write_stdout(&bytes);
    }
    refuse_existing(out, force)?;
    let staged = stage(std::path::Path::new(out), &bytes, Mode::Public)?;
    let written = std::fs::read(staged.temp_path())
        .map_err(|e| Error::io("cannot read back CRL", out, &e))?;
    check(&written)?;
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
