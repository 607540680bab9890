//! Registered CAs: adding, listing, and finding them by certificate.

use rusqlite::{OptionalExtension, params};
use sha2::Digest as _;
use x509_cert::ext::pkix::{BasicConstraints, SubjectKeyIdentifier};

use super::{Added, CaRecord, CertRow, Registry, now, rfc3339};
use crate::error::{Error, ErrorKind, Result};
use crate::input::LoadedCert;

/// The CA's key id: its subjectKeyIdentifier, else the SHA-1 of its key
/// (what OpenSSL puts into the AKI of what it signs).
pub(super) fn ca_key_id(c: &LoadedCert) -> Vec<u8> {
    let tbs = c.cert.tbs_certificate();
    match tbs.get_extension::<SubjectKeyIdentifier>() {
        Ok(Some((_, ski))) => ski.0.as_bytes().to_vec(),
        _ => crate::profile::key_id(tbs.subject_public_key_info()),
    }
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
        let row = CertRow::of(ca);
        let ski = colon_hex(&ca_key_id(ca));
        let what = "cannot register CA";
        let (tx, fail) = self.write_tx(what)?;
        let fail = &fail;
        let found: Option<(i64, Vec<u8>)> = tx
            .query_row(
                "SELECT id, fingerprint FROM cas WHERE serial = ?1",
                [&row.serial],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()
            .map_err(fail)?;
        let result = match found {
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
            None => {
                tx.execute(
                    "INSERT INTO cas (serial, subject, ski, not_before, not_after, registered_at, fingerprint, der)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                    params![row.serial, row.subject, ski, row.not_before, row.not_after, now(), row.fingerprint, ca.der],
                )
                .map_err(fail)?;
                (tx.last_insert_rowid(), Added::New)
            }
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
        rows.collect::<rusqlite::Result<_>>().map_err(&fail)
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
