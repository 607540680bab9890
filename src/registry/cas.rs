//! Registered CAs: adding, listing, and finding them by certificate.

use sha2::Digest as _;
use x509_cert::ext::pkix::{BasicConstraints, SubjectKeyIdentifier};

use super::devices::{Standing, standing, taken_why};
use super::store::CaRow;
use super::{Added, CaRecord, CertRow, Registry, now};
use crate::error::{Error, ErrorKind, Result};
use crate::input::LoadedCert;
use crate::verify::canonical_name;

/// The CA's key id: its subjectKeyIdentifier, else the SHA-1 of its key
/// (what OpenSSL puts into the AKI of what it signs).
pub(super) fn ca_key_id(c: &LoadedCert) -> Vec<u8> {
    let tbs = c.cert.tbs_certificate();
    match tbs.get_extension::<SubjectKeyIdentifier>() {
        Ok(Some((_, ski))) => ski.0.as_bytes().to_vec(),
        _ => crate::profile::key_id(tbs.subject_public_key_info()),
    }
}

/// An issuer as a broker tells issuers apart: its name (compared as OpenSSL
/// compares names) and its public key. A renewed CA certificate (new serial
/// and dates) and a cross-signed one are the same issuer as the original,
/// so a CRL or a listing made with any of them covers the devices
/// registered under all of them; a re-keyed CA (same name, new key) is
/// another issuer, whose devices a broker checks against its own CRL.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct IssuerId {
    name: crate::verify::CanonName,
    spki: Vec<u8>,
}

impl IssuerId {
    pub(super) fn of(ca: &LoadedCert) -> IssuerId {
        let tbs = ca.cert.tbs_certificate();
        IssuerId {
            name: canonical_name(tbs.subject()),
            spki: der::Encode::to_der(tbs.subject_public_key_info()).unwrap_or_default(),
        }
    }
}

/// [`Registry::same_name_other_key`] among CA certificates at hand.
pub(super) fn same_name_other_key(
    cas: &[LoadedCert],
    name: &x509_cert::name::Name,
    key: Option<&spki::SubjectPublicKeyInfoOwned>,
) -> Option<String> {
    let want = canonical_name(name);
    cas.iter().find_map(|c| {
        let tbs = c.cert.tbs_certificate();
        (canonical_name(tbs.subject()) == want && key != Some(tbs.subject_public_key_info()))
            .then(|| crate::sign::serial_hex(tbs.serial_number()))
    })
}

/// `AB:CD:..`, as OpenSSL prints key identifiers.
fn colon_hex(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":")
}

impl Registry {
    /// `ca add`: registers a CA certificate (it must be a CA).
    /// Audited as `actor`'s.
    pub fn add_ca(&mut self, ca: &LoadedCert, actor: &str) -> Result<Added> {
        let is_ca = matches!(
            ca.cert.tbs_certificate().get_extension::<BasicConstraints>(),
            Ok(Some((_, bc))) if bc.ca
        );
        if !is_ca {
            return Err(
                Error::refused("cannot register CA", "it has no basicConstraints CA:TRUE")
                    .file(&ca.label),
            );
        }
        self.register_ca(ca, Some(actor)).map(|(_, added)| added)
    }

    /// The CA's id, registering it first if it is not registered yet (as
    /// issuing with `--registry` does, unaudited).
    pub fn ensure_ca(&mut self, ca: &LoadedCert) -> Result<(i64, Added)> {
        self.register_ca(ca, None)
    }

    fn register_ca(&mut self, ca: &LoadedCert, actor: Option<&str>) -> Result<(i64, Added)> {
        let what = "cannot register CA";
        let row = CertRow::entering(ca, what)?;
        let new = CaRow {
            serial: row.serial.clone(),
            subject: row.subject,
            ski: colon_hex(&ca_key_id(ca)),
            not_before: row.not_before,
            not_after: row.not_after,
            registered_at: now(),
            fingerprint: row.fingerprint,
            der: ca.der.clone(),
            crl_number: 0,
        };
        let (mut tx, fail) = self.write_tx(what)?;
        // Insert first, then look: two processes registering one CA at
        // once both end up with its single row.
        let result = match tx.insert_ca(&new).map_err(&fail)? {
            Some(id) => {
                if let Some(actor) = actor {
                    super::audit::record(&mut *tx, actor, "ca add", &new.serial).map_err(&fail)?;
                }
                (id, Added::New)
            }
            None => match tx.ca_by_serial(&new.serial).map_err(&fail)? {
                Some((id, fp)) if fp == new.fingerprint => (id, Added::AlreadyRegistered),
                Some(_) => {
                    return Err(Error::new(
                        ErrorKind::Refused,
                        what,
                        format!(
                            "another CA with serial {} is already registered",
                            new.serial
                        ),
                    )
                    .file(&ca.label));
                }
                None => {
                    let why = match standing(&mut *tx, &new.serial).map_err(&fail)? {
                        Standing::Device { .. } => format!(
                            "serial {} is a registered device's (serials are unique across CAs and devices)",
                            new.serial
                        ),
                        other => taken_why(&other, &new.serial),
                    };
                    return Err(Error::new(ErrorKind::Refused, what, why).file(&ca.label));
                }
            },
        };
        tx.commit().map_err(&fail)?;
        Ok(result)
    }

    /// Every registered CA, oldest first.
    pub fn cas(&self) -> Result<Vec<CaRecord>> {
        let mut cas = self.store.cas().map_err(self.err("cannot list CAs"))?;
        // Each certificate counts the devices of its issuer (name and key),
        // registered under any of the issuer's certificates.
        let issuers: Vec<(i64, IssuerId)> = self
            .ca_certs()?
            .iter()
            .map(|(id, c)| (*id, IssuerId::of(c)))
            .collect();
        let issuer_of = |id: i64| issuers.iter().find(|(i, _)| *i == id).map(|(_, k)| k);
        let own: Vec<(i64, u64)> = cas.iter().map(|c| (c.id, c.devices)).collect();
        for c in &mut cas {
            let me = issuer_of(c.id);
            c.devices = own
                .iter()
                .filter(|(id, _)| me.is_some() && issuer_of(*id) == me)
                .map(|(_, n)| n)
                .sum();
        }
        Ok(cas)
    }

    /// The registered CA certificates with their ids (the trust store of
    /// `auth` and `device add`).
    pub fn ca_certs(&self) -> Result<Vec<(i64, LoadedCert)>> {
        let rows = self.store.ca_ders().map_err(self.err("cannot read CAs"))?;
        rows.into_iter()
            .map(|(id, serial, der)| {
                let input = crate::input::Input::from_bytes(format!("registered CA {serial}"), der);
                crate::input::load_certificate(&input, "cannot read registered CA").map(|c| (id, c))
            })
            .collect()
    }

    /// The ids of every registered certificate of the issuer of CA `ca_id`.
    pub(super) fn issuer_ids(&self, ca_id: i64) -> Result<Vec<i64>> {
        let cas = self.ca_certs()?;
        let Some(me) = cas
            .iter()
            .find(|(id, _)| *id == ca_id)
            .map(|(_, c)| IssuerId::of(c))
        else {
            return Ok(Vec::new());
        };
        Ok(cas
            .iter()
            .filter(|(_, c)| IssuerId::of(c) == me)
            .map(|(id, _)| *id)
            .collect())
    }

    /// The ids of the issuer of the CA registered with `serial` (none if
    /// no CA has it).
    pub(super) fn issuer_of_serial(&self, serial: &str) -> Result<Vec<i64>> {
        let id = self
            .store
            .lookup()
            .ca_by_serial(serial)
            .map_err(self.err("cannot read CAs"))?;
        match id {
            Some((id, _)) => self.issuer_ids(id),
            None => Ok(Vec::new()),
        }
    }

    /// The serial of a registered CA named `name` (as OpenSSL compares
    /// names) whose key is not `key`: what an impostor, or a re-keyed CA,
    /// has in common with a registered one.
    pub fn same_name_other_key(
        &self,
        name: &x509_cert::name::Name,
        key: Option<&spki::SubjectPublicKeyInfoOwned>,
    ) -> Result<Option<String>> {
        let cas: Vec<LoadedCert> = self.ca_certs()?.into_iter().map(|(_, c)| c).collect();
        Ok(same_name_other_key(&cas, name, key))
    }

    /// The serial of another registered certificate of `ca`'s issuer (a
    /// renewal or cross-signed certificate of the same name and key).
    pub fn same_issuer_as(&self, ca: &LoadedCert) -> Result<Option<String>> {
        let me = IssuerId::of(ca);
        Ok(self.ca_certs()?.into_iter().find_map(|(_, c)| {
            (c.der != ca.der && IssuerId::of(&c) == me)
                .then(|| crate::sign::serial_hex(c.cert.tbs_certificate().serial_number()))
        }))
    }

    /// The registered CA certificates as one PEM bundle, oldest first: a
    /// broker's `cafile`.
    pub fn ca_bundle(&self) -> Result<String> {
        Ok(self
            .ca_certs()?
            .iter()
            .map(|(_, c)| crate::keys::pem_encode("CERTIFICATE", &c.der))
            .collect())
    }

    /// The id of a registered CA, found by its certificate.
    pub fn ca_id(&self, ca: &LoadedCert) -> Result<Option<i64>> {
        let fp = sha2::Sha256::digest(&ca.der).to_vec();
        self.store
            .ca_id_by_fingerprint(&fp)
            .map_err(self.err("cannot read CAs"))
    }
}
