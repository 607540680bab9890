//! Device certificates: registering (one, or a batch in chunks), finding,
//! activating, deactivating and deleting them.

use rusqlite::{OptionalExtension, params};

use super::{
    Added, CertRow, DeviceQuery, DeviceRecord, Registry, RevokeReason, Status, now, refused,
    rfc3339,
};
use crate::error::{Error, Result};
use crate::input::LoadedCert;

/// The columns of a [`DeviceRecord`], for every query that shows devices.
const DEVICE_COLUMNS: &str =
    "SELECT d.serial, c.serial, d.subject, d.status, d.not_before, d.not_after, d.registered_at,
            r.revoked_at, r.reason, d.first_connected_at, d.last_connected_at
     FROM devices d JOIN cas c ON c.id = d.ca_id LEFT JOIN revocations r ON r.serial = d.serial";

/// How a device is named on the command line.
#[derive(Debug, Clone)]
pub enum DeviceRef {
    /// Its serial, in stored form ([`super::normalize_serial`]).
    Serial(String),
    /// The common name of exactly one registered device.
    Cn(String),
    /// Its certificate.
    Cert(Box<LoadedCert>),
}

impl Registry {
    /// `device add`: registers a device certificate whose issuer is a
    /// registered CA.
    pub fn add_device(&mut self, cert: &LoadedCert) -> Result<Added> {
        let ca_id = self
            .ca_certs()?
            .into_iter()
            .find(|(_, ca)| crate::chain::is_issued_by(cert, ca))
            .map(|(id, _)| id);
        let Some(ca_id) = ca_id else {
            let why = match self.same_name_other_key(cert.cert.tbs_certificate().issuer(), None)? {
                Some(serial) => format!(
                    "its issuing CA is not registered (same name as registered CA {serial}, different key)"
                ),
                None => "its issuing CA is not registered".into(),
            };
            return Err(Error::refused("cannot register device", why)
                .file(&cert.label)
                .hint("register the CA first: devcert registry ca add CA.crt"));
        };
        Ok(self.add_devices(ca_id, std::slice::from_ref(cert))?[0])
    }

    /// Registers certificates issued by CA `ca_id` as Active, all in one
    /// transaction. Re-registering the very same certificate is a no-op; a
    /// different certificate with a registered serial (a device's, a CA's
    /// or a revoked one's) is refused and nothing of this call is kept.
    pub fn add_devices(&mut self, ca_id: i64, certs: &[LoadedCert]) -> Result<Vec<Added>> {
        let what = "cannot register device";
        let (tx, fail) = self.write_tx(what)?;
        let fail = &fail;
        let mut out = Vec::with_capacity(certs.len());
        let t = now();
        for c in certs {
            let row = CertRow::entering(c, what)?;
            let taken = |tx: &rusqlite::Connection| -> Result<Error> {
                let why = taken_why(&standing(tx, &row.serial).map_err(fail)?, &row.serial);
                Ok(Error::refused(what, why).file(&c.label))
            };
            match insert_device(&tx, ca_id, &row, t) {
                Ok(1) => out.push(Added::New),
                Ok(_) => match standing(&tx, &row.serial).map_err(fail)? {
                    Standing::Device { fingerprint, .. } if fingerprint == row.fingerprint => {
                        out.push(Added::AlreadyRegistered)
                    }
                    _ => return Err(taken(&tx)?),
                },
                Err(e) if is_constraint(&e) => return Err(taken(&tx)?),
                Err(e) => return Err(fail(e)),
            }
        }
        tx.commit().map_err(fail)?;
        Ok(out)
    }

    /// Removes a device registered moments ago, when writing its files failed.
    pub fn forget_device(&mut self, serial: &str) -> Result<()> {
        self.conn
            .execute("DELETE FROM devices WHERE serial = ?1", [serial])
            .map(|_| ())
            .map_err(self.err("cannot update registry"))
    }

    /// Calls `each` for every device matching `q`, in registration order,
    /// without holding them all in memory.
    pub fn list_devices(
        &self,
        q: &DeviceQuery,
        each: &mut dyn FnMut(DeviceRecord) -> Result<()>,
    ) -> Result<()> {
        let fail = self.err("cannot list devices");
        let mut sql = format!("{DEVICE_COLUMNS} WHERE 1");
        let mut args: Vec<rusqlite::types::Value> = Vec::new();
        if let Some(s) = &q.serial {
            sql.push_str(" AND d.serial = ?");
            args.push(s.clone().into());
        }
        if let Some(s) = &q.ca_serial {
            // Resolved first so the planner walks the devices_ca index.
            let ids = self.issuer_of_serial(s)?;
            if ids.is_empty() {
                return Ok(());
            }
            sql.push_str(&format!(
                " AND d.ca_id IN ({})",
                vec!["?"; ids.len()].join(",")
            ));
            args.extend(ids.into_iter().map(Into::into));
        }
        if let Some(st) = q.status {
            sql.push_str(" AND d.status = ?");
            args.push(st.as_str().to_string().into());
        }
        if let Some(cn) = &q.cn {
            sql.push_str(" AND d.cn = ?");
            args.push(cn.clone().into());
        }
        if let Some(text) = &q.subject_contains {
            sql.push_str(" AND instr(lower(d.subject), lower(?)) > 0");
            args.push(text.clone().into());
        }
        sql.push_str(" ORDER BY d.id LIMIT ?");
        args.push(
            q.limit
                .map(|l| l.min(i64::MAX as u64) as i64)
                .unwrap_or(-1)
                .into(),
        );
        let mut st = self.conn.prepare(&sql).map_err(&fail)?;
        let mut rows = st.query(rusqlite::params_from_iter(args)).map_err(&fail)?;
        while let Some(r) = rows.next().map_err(&fail)? {
            each(device_record(r).map_err(&fail)?)?;
        }
        Ok(())
    }

    /// One device by serial (normalised); unknown is an error.
    pub fn device(&self, serial: &str) -> Result<DeviceRecord> {
        let found = self
            .conn
            .query_row(
                &format!("{DEVICE_COLUMNS} WHERE d.serial = ?1"),
                [serial],
                device_record,
            )
            .optional()
            .map_err(self.err("cannot read device"))?;
        match found {
            Some(d) => Ok(d),
            None => Err(self.unknown(serial)?),
        }
    }

    /// The serial of the device `r` names. A certificate must be the very
    /// one registered under its serial; a common name must match exactly
    /// one device (else the error lists the matches).
    pub fn resolve_device(&self, r: &DeviceRef) -> Result<String> {
        match r {
            DeviceRef::Serial(s) => Ok(s.clone()),
            DeviceRef::Cert(c) => {
                let row = CertRow::of(c);
                match standing(&self.conn, &row.serial).map_err(self.err("cannot read device"))? {
                    Standing::Device { fingerprint, .. } if fingerprint == row.fingerprint => {
                        Ok(row.serial)
                    }
                    Standing::Device { .. } => Err(self
                        .refused(
                            "no such device",
                            format!(
                                "serial {} is registered for another certificate than this one",
                                row.serial
                            ),
                        )
                        .file(&c.label)),
                    _ => Err(self.unknown(&row.serial)?.file(&c.label)),
                }
            }
            DeviceRef::Cn(cn) => {
                let q = DeviceQuery {
                    cn: Some(cn.clone()),
                    limit: Some(21),
                    ..Default::default()
                };
                let mut found = Vec::new();
                self.list_devices(&q, &mut |d| {
                    found.push(d);
                    Ok(())
                })?;
                match found.as_slice() {
                    [one] => Ok(one.serial.clone()),
                    [] => Err(self.refused(
                        "no such device",
                        format!("no registered device has the common name '{cn}'"),
                    )),
                    many => {
                        let shown: Vec<String> = many
                            .iter()
                            .take(20)
                            .map(|d| format!("{} ({}, {})", d.serial, d.status.as_str(), d.subject))
                            .collect();
                        let more = if many.len() > 20 { ", ..." } else { "" };
                        Err(self
                            .refused(
                                "device is ambiguous",
                                format!(
                                    "{}{} devices have the common name '{cn}': {}{more}",
                                    if many.len() > 20 { "more than " } else { "" },
                                    many.len().min(20),
                                    shown.join("; ")
                                ),
                            )
                            .hint("name it by serial or by its certificate file"))
                    }
                }
            }
        }
    }

    fn unknown(&self, serial: &str) -> Result<Error> {
        unknown(
            &self.conn,
            &self.label,
            serial,
            &self.err("cannot read device"),
        )
    }

    /// Activates or deactivates a device; a revoked one stays revoked.
    pub fn set_status(&mut self, serial: &str, status: Status) -> Result<()> {
        if status == Status::Revoked {
            return self
                .revoke_device(serial, RevokeReason::default())
                .map(drop);
        }
        let what = "cannot update device";
        let label = self.label.clone();
        let (tx, fail) = self.write_tx(what)?;
        let n = update_status(&tx, serial, status, now()).map_err(&fail)?;
        if n == 0 {
            return Err(match standing(&tx, serial).map_err(&fail)? {
                Standing::Device { .. } => refused(
                    &label,
                    what,
                    format!("device {serial} is revoked, which is permanent"),
                ),
                _ => unknown(&tx, &label, serial, &fail)?,
            });
        }
        tx.commit().map_err(&fail)
    }

    /// Revokes a device for good: status revoked, and a revocation record
    /// (kept by `delete`) that puts it on its issuer's CRL with `reason`
    /// and makes `auth` refuse it. Returns false when it was revoked already
    /// (the first revocation's time and reason are kept).
    pub fn revoke_device(&mut self, serial: &str, reason: RevokeReason) -> Result<bool> {
        let label = self.label.clone();
        let (tx, fail) = self.write_tx("cannot revoke device")?;
        let revoked = match standing(&tx, serial).map_err(&fail)? {
            Standing::Device {
                status: Status::Revoked,
                ..
            }
            | Standing::Revoked { .. } => false,
            Standing::Device { .. } => {
                insert_revocation(&tx, serial, reason, now()).map_err(&fail)?;
                mark_revoked(&tx, serial).map_err(&fail)?;
                true
            }
            _ => return Err(unknown(&tx, &label, serial, &fail)?),
        };
        tx.commit().map_err(&fail)?;
        Ok(revoked)
    }

    /// Removes a device; `auth` registers it again on its next connection
    /// unless it was revoked. A held (inactive) device is removed only with
    /// `force`: deleting it would lift the hold.
    pub fn delete_device(&mut self, serial: &str, force: bool) -> Result<Status> {
        let what = "cannot delete device";
        let label = self.label.clone();
        let (tx, fail) = self.write_tx(what)?;
        let status = match standing(&tx, serial).map_err(&fail)? {
            Standing::Device { status, .. } => status,
            _ => return Err(unknown(&tx, &label, serial, &fail)?),
        };
        if status == Status::Inactive && !force {
            return Err(refused(
                    &label,
                    what,
                    format!("device {serial} is inactive: deleted, it would leave the CRL and its next connection would register it again"),
                )
                .hint(format!("to keep it off for good: devcert registry device revoke {serial}; to delete it anyway: --force")));
        }
        delete_device_row(&tx, serial).map_err(&fail)?;
        tx.commit().map_err(&fail)?;
        Ok(status)
    }
}

/// "Not registered", or what is known of a serial that is no device's.
fn unknown(
    conn: &rusqlite::Connection,
    label: &str,
    serial: &str,
    fail: &dyn Fn(rusqlite::Error) -> Error,
) -> Result<Error> {
    let held = standing(conn, serial).map_err(fail)?;
    let why = match held {
        Standing::Revoked { reason, .. } => format!(
            "serial {serial} is not registered (it was revoked, {reason}, then deleted; the CRL keeps listing it)"
        ),
        Standing::Ca => format!("serial {serial} is a registered CA's, not a device's"),
        _ => format!("serial {serial} is not registered"),
    };
    Ok(refused(label, "no such device", why))
}

/// What the registry holds under a serial.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Standing {
    Unknown,
    Device {
        status: Status,
        fingerprint: Vec<u8>,
    },
    /// Revoked and deleted: only the revocation record is left.
    Revoked {
        reason: String,
    },
    /// A registered CA's serial.
    Ca,
}

pub(super) fn standing(conn: &rusqlite::Connection, serial: &str) -> rusqlite::Result<Standing> {
    if let Some((status, fingerprint)) = device_state(conn, serial)? {
        return Ok(Standing::Device {
            status: Status::from_db(&status),
            fingerprint,
        });
    }
    if let Some(reason) = revocation_reason(conn, serial)? {
        return Ok(Standing::Revoked { reason });
    }
    if ca_has_serial(conn, serial)? {
        return Ok(Standing::Ca);
    }
    Ok(Standing::Unknown)
}

/// Why a certificate cannot take `serial`, which `standing` holds.
pub(super) fn taken_why(standing: &Standing, serial: &str) -> String {
    match standing {
        Standing::Ca => format!(
            "serial {serial} is a registered CA's (serials are unique across CAs and devices)"
        ),
        Standing::Revoked { reason } => {
            format!("serial {serial} was revoked ({reason}); it can never be registered again")
        }
        _ => format!(
            "serial {serial} is already registered for another certificate (serials are unique in the registry)"
        ),
    }
}

/// A UNIQUE, PRIMARY KEY or CHECK constraint refused the row.
pub(super) fn is_constraint(e: &rusqlite::Error) -> bool {
    e.sqlite_error_code() == Some(rusqlite::ErrorCode::ConstraintViolation)
}

// One statement each, so they move below a storage trait unchanged.

fn device_state(
    conn: &rusqlite::Connection,
    serial: &str,
) -> rusqlite::Result<Option<(String, Vec<u8>)>> {
    conn.query_row(
        "SELECT status, fingerprint FROM devices WHERE serial = ?1",
        [serial],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )
    .optional()
}

fn revocation_reason(
    conn: &rusqlite::Connection,
    serial: &str,
) -> rusqlite::Result<Option<String>> {
    conn.query_row(
        "SELECT reason FROM revocations WHERE serial = ?1",
        [serial],
        |r| r.get(0),
    )
    .optional()
}

fn ca_has_serial(conn: &rusqlite::Connection, serial: &str) -> rusqlite::Result<bool> {
    conn.query_row("SELECT 1 FROM cas WHERE serial = ?1", [serial], |_| Ok(()))
        .optional()
        .map(|f| f.is_some())
}

/// Inserts an Active device; 0 rows when its serial is a device's already.
pub(super) fn insert_device(
    conn: &rusqlite::Connection,
    ca_id: i64,
    row: &CertRow,
    at: i64,
) -> rusqlite::Result<usize> {
    conn.prepare_cached(
        "INSERT INTO devices (serial, ca_id, subject, cn, status, not_before, not_after, registered_at, fingerprint)
         VALUES (?1, ?2, ?3, ?4, 'active', ?5, ?6, ?7, ?8) ON CONFLICT(serial) DO NOTHING",
    )?
    .execute(params![
        row.serial,
        ca_id,
        row.subject,
        row.cn,
        row.not_before,
        row.not_after,
        at,
        row.fingerprint
    ])
}

fn update_status(
    conn: &rusqlite::Connection,
    serial: &str,
    status: Status,
    at: i64,
) -> rusqlite::Result<usize> {
    // Keep the first deactivation time when deactivated twice.
    conn.execute(
        "UPDATE devices SET status = ?2,
             deactivated_at = CASE WHEN ?2 = 'inactive' THEN coalesce(deactivated_at, ?3) END
         WHERE serial = ?1 AND status <> 'revoked'",
        params![serial, status.as_str(), at],
    )
}

fn insert_revocation(
    conn: &rusqlite::Connection,
    serial: &str,
    reason: RevokeReason,
    at: i64,
) -> rusqlite::Result<()> {
    conn.execute(
        "INSERT INTO revocations (serial, ca_id, subject, reason, revoked_at)
         SELECT serial, ca_id, subject, ?2, ?3 FROM devices WHERE serial = ?1",
        params![serial, reason.as_str(), at],
    )
    .map(drop)
}

fn mark_revoked(conn: &rusqlite::Connection, serial: &str) -> rusqlite::Result<usize> {
    conn.execute(
        "UPDATE devices SET status = 'revoked' WHERE serial = ?1",
        [serial],
    )
}

fn delete_device_row(conn: &rusqlite::Connection, serial: &str) -> rusqlite::Result<usize> {
    conn.execute("DELETE FROM devices WHERE serial = ?1", [serial])
}

fn device_record(r: &rusqlite::Row<'_>) -> rusqlite::Result<DeviceRecord> {
    Ok(DeviceRecord {
        serial: r.get(0)?,
        ca_serial: r.get(1)?,
        subject: r.get(2)?,
        status: Status::from_db(&r.get::<_, String>(3)?),
        not_before: rfc3339(r.get(4)?),
        not_after: rfc3339(r.get(5)?),
        registered_at: rfc3339(r.get(6)?),
        revoked_at: r.get::<_, Option<i64>>(7)?.map(rfc3339),
        revocation_reason: r.get(8)?,
        first_connected_at: r.get::<_, Option<i64>>(9)?.map(rfc3339),
        last_connected_at: r.get::<_, Option<i64>>(10)?.map(rfc3339),
    })
}

/// Registers a certificate `ca` has just issued (and `ca` if needed), then
/// runs `write`, which puts the certificate's files in place. If `write`
/// fails the registration is undone: the registry never lists a
/// certificate nobody holds.
pub fn register_issued(
    db: &str,
    ca: &LoadedCert,
    cert_der: &[u8],
    write: impl FnOnce() -> Result<()>,
) -> Result<()> {
    let mut reg = Registry::open(db)?;
    let (ca_id, _) = reg.ensure_ca(ca)?;
    let cert = issued_cert(cert_der)?;
    reg.add_devices(ca_id, std::slice::from_ref(&cert))?;
    write().inspect_err(|_| {
        let _ = reg.forget_device(&CertRow::of(&cert).serial);
    })
}

fn issued_cert(der: &[u8]) -> Result<LoadedCert> {
    let input = crate::input::Input::from_bytes("issued certificate", der.to_vec());
    crate::input::load_certificate(&input, "cannot read issued certificate")
}

/// Registers the certificates of one CA as they stream in (a batch), in
/// one transaction per [`Bulk::CHUNK`] certificates rather than per device.
pub struct Bulk {
    reg: Registry,
    ca_id: i64,
    pending: Vec<LoadedCert>,
}

impl Bulk {
    pub const CHUNK: usize = 256;

    /// Opens the registry and registers `ca` if needed, before any work.
    pub fn new(db: &str, ca: &LoadedCert) -> Result<Bulk> {
        let mut reg = Registry::open(db)?;
        let (ca_id, _) = reg.ensure_ca(ca)?;
        Ok(Bulk {
            reg,
            ca_id,
            pending: Vec::with_capacity(Self::CHUNK),
        })
    }

    pub fn add(&mut self, cert_der: &[u8]) -> Result<()> {
        self.pending.push(issued_cert(cert_der)?);
        if self.pending.len() >= Self::CHUNK {
            self.flush()?;
        }
        Ok(())
    }

    /// Writes what is pending; call it also when the batch failed, so the
    /// devices already on disk are registered.
    pub fn flush(&mut self) -> Result<()> {
        if !self.pending.is_empty() {
            self.reg.add_devices(self.ca_id, &self.pending)?;
            self.pending.clear();
        }
        Ok(())
    }
}
