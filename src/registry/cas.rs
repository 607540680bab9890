//! Registered CAs: adding, listing, and finding them by certificate.

use rusqlite::{OptionalExtension, params};
use sha2::Digest as _;
use x509_cert::ext::pkix::{BasicConstraints, SubjectKeyIdentifier};

use super::devices::{Standing, is_constraint, standing, taken_why};
use super::{Added, CaRecord, CertRow, Registry, now, rfc3339};
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
    pub fn add_ca(&mut self, ca: &LoadedCert) -> Result<Added> {
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
        self.ensure_ca(ca).map(|(_, added)| added)
    }

    /// The CA's id, registering it first if it is not registered yet.
    pub fn ensure_ca(&mut self, ca: &LoadedCert) -> Result<(i64, Added)> {
        let what = "cannot register CA";
        let row = CertRow::entering(ca, what)?;
        let ski = colon_hex(&ca_key_id(ca));
        let (tx, fail) = self.write_tx(what)?;
        let fail = &fail;
        let result = match ca_by_serial(&tx, &row.serial).map_err(fail)? {
            Some((id, fp)) if fp == row.fingerprint => (id, Added::AlreadyRegistered),
            Some(_) => {
                return Err(Error::new(
                    ErrorKind::Registry,
                    what,
                    format!(
                        "another CA with serial {} is already registered",
                        row.serial
                    ),
                )
                .file(&ca.label));
            }
            None => match insert_ca(&tx, &row, &ski, &ca.der) {
                Ok(()) => (tx.last_insert_rowid(), Added::New),
                Err(e) if is_constraint(&e) => {
                    let held = standing(&tx, &row.serial).map_err(fail)?;
                    let why = match held {
                        Standing::Device { .. } => format!(
                            "serial {} is a registered device's (serials are unique across CAs and devices)",
                            row.serial
                        ),
                        other => taken_why(&other, &row.serial),
                    };
                    return Err(Error::new(ErrorKind::Registry, what, why).file(&ca.label));
                }
                Err(e) => return Err(fail(e)),
            },
        };
        tx.commit().map_err(fail)?;
        Ok(result)
    }

    /// Every registered CA, oldest first.
    pub fn cas(&self) -> Result<Vec<CaRecord>> {
        let fail = self.err("cannot list CAs");
        let mut st = self
            .conn
            .prepare(
                "SELECT id, serial, subject, ski, not_before, not_after, registered_at, devices
                 FROM cas ORDER BY id",
            )
            .map_err(&fail)?;
        let rows = st
            .query_map([], |r| {
                Ok(CaRecord {
                    id: r.get(0)?,
                    serial: r.get(1)?,
                    subject: r.get(2)?,
                    ski: r.get(3)?,
                    not_before: rfc3339(r.get(4)?),
                    not_after: rfc3339(r.get(5)?),
                    registered_at: rfc3339(r.get(6)?),
                    devices: r.get::<_, i64>(7)?.max(0) as u64,
                })
            })
            .map_err(&fail)?;
        let mut cas: Vec<CaRecord> = rows.collect::<rusqlite::Result<_>>().map_err(&fail)?;
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
        let fail = self.err("cannot read CAs");
        let mut st = self
            .conn
            .prepare("SELECT id, serial, der FROM cas ORDER BY id")
            .map_err(&fail)?;
        let rows: Vec<(i64, String, Vec<u8>)> = st
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .map_err(&fail)?
            .collect::<rusqlite::Result<_>>()
            .map_err(&fail)?;
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
        let id = ca_by_serial(&self.conn, serial).map_err(self.err("cannot read CAs"))?;
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
        self.conn
            .query_row("SELECT id FROM cas WHERE fingerprint = ?1", [fp], |r| {
                r.get(0)
            })
            .optional()
            .map_err(self.err("cannot read CAs"))
    }
}

// One statement each, so they move below a storage trait unchanged.

fn ca_by_serial(
    conn: &rusqlite::Connection,
    serial: &str,
) -> rusqlite::Result<Option<(i64, Vec<u8>)>> {
    conn.query_row(
        "SELECT id, fingerprint FROM cas WHERE serial = ?1",
        [serial],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )
    .optional()
}

fn insert_ca(
    conn: &rusqlite::Connection,
    row: &CertRow,
    ski: &str,
    der: &[u8],
) -> rusqlite::Result<()> {
    conn.execute(
        "INSERT INTO cas (serial, subject, ski, not_before, not_after, registered_at, fingerprint, der)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        params![row.serial, row.subject, ski, row.not_before, row.not_after, now(), row.fingerprint, der],
    )
    .map(drop)
}
