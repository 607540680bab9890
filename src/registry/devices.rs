//! Device certificates: registering (one, or a batch in chunks), finding,
//! activating, deactivating and deleting them.

use rusqlite::{OptionalExtension, params};

use super::{Added, CertRow, DeviceQuery, DeviceRecord, Registry, Status, now, rfc3339};
use crate::error::{Error, Result};
use crate::input::LoadedCert;

impl Registry {
    /// `device add`: registers a device certificate whose issuer is a
    /// registered CA.
    pub fn add_device(&mut self, cert: &LoadedCert) -> Result<Added> {
        let ca_id = self
            .ca_certs()?
            .into_iter()
            .find(|(_, ca)| crate::chain::is_issued_by(cert, ca))
            .map(|(id, _)| id)
            .ok_or_else(|| {
                Error::refused("cannot register device", "its issuing CA is not registered")
                    .file(&cert.label)
                    .hint("register the CA first: devcert registry ca add CA.crt")
            })?;
        Ok(self.add_devices(ca_id, std::slice::from_ref(cert))?[0])
    }

    /// Registers certificates issued by CA `ca_id` as Active, all in one
    /// transaction. Re-registering the very same certificate is a no-op; a
    /// different certificate with a registered serial is refused and
    /// nothing of this call is kept.
    pub fn add_devices(&mut self, ca_id: i64, certs: &[LoadedCert]) -> Result<Vec<Added>> {
        let what = "cannot register device";
        let (tx, fail) = self.write_tx(what)?;
        let fail = &fail;
        let mut out = Vec::with_capacity(certs.len());
        {
            let mut insert = tx
                .prepare_cached(
                    "INSERT INTO devices (serial, ca_id, subject, status, not_before, not_after, registered_at, fingerprint)
                     VALUES (?1, ?2, ?3, 'active', ?4, ?5, ?6, ?7) ON CONFLICT(serial) DO NOTHING",
                )
                .map_err(fail)?;
            let mut existing = tx
                .prepare_cached("SELECT fingerprint FROM devices WHERE serial = ?1")
                .map_err(fail)?;
            let t = now();
            for c in certs {
                let row = CertRow::of(c);
                let n = insert
                    .execute(params![
                        row.serial,
                        ca_id,
                        row.subject,
                        row.not_before,
                        row.not_after,
                        t,
                        row.fingerprint
                    ])
                    .map_err(fail)?;
                if n == 1 {
                    out.push(Added::New);
                    continue;
                }
                let fp: Vec<u8> = existing
                    .query_row([&row.serial], |r| r.get(0))
                    .map_err(fail)?;
                if fp != row.fingerprint {
                    return Err(Error::refused(
                        what,
                        format!(
                            "serial {} is already registered for another certificate (serials are unique in the registry)",
                            row.serial
                        ),
                    )
                    .file(&c.label));
                }
                out.push(Added::AlreadyRegistered);
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
        let mut sql = String::from(
            "SELECT d.serial, c.serial, d.subject, d.status, d.not_before, d.not_after, d.registered_at,
                    d.first_connected_at, d.last_connected_at
             FROM devices d JOIN cas c ON c.id = d.ca_id WHERE 1",
        );
        let mut args: Vec<rusqlite::types::Value> = Vec::new();
        if let Some(s) = &q.serial {
            sql.push_str(" AND d.serial = ?");
            args.push(s.clone().into());
        }
        if let Some(s) = &q.ca_serial {
            // Resolved first so the planner walks the devices_ca index.
            let id: Option<i64> = self
                .conn
                .query_row("SELECT id FROM cas WHERE serial = ?1", [s], |r| r.get(0))
                .optional()
                .map_err(&fail)?;
            let Some(id) = id else { return Ok(()) };
            sql.push_str(" AND d.ca_id = ?");
            args.push(id.into());
        }
        if let Some(st) = q.status {
            sql.push_str(" AND d.status = ?");
            args.push(st.as_str().to_string().into());
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
                "SELECT d.serial, c.serial, d.subject, d.status, d.not_before, d.not_after, d.registered_at,
                    d.first_connected_at, d.last_connected_at
                 FROM devices d JOIN cas c ON c.id = d.ca_id WHERE d.serial = ?1",
                [serial],
                device_record,
            )
            .optional()
            .map_err(self.err("cannot read device"))?;
        found.ok_or_else(|| self.unknown(serial))
    }

    fn unknown(&self, serial: &str) -> Error {
        self.refused(
            "no such device",
            format!("serial {serial} is not registered"),
        )
    }

    /// Activates or deactivates a device.
    pub fn set_status(&mut self, serial: &str, status: Status) -> Result<()> {
        let deactivated_at = (status == Status::Inactive).then(now);
        let n = self
            .conn
            .execute(
                // Keep the first deactivation time when deactivated twice.
                "UPDATE devices SET status = ?2,
                     deactivated_at = CASE WHEN ?2 = 'inactive' THEN coalesce(deactivated_at, ?3) END
                 WHERE serial = ?1",
                params![serial, status.as_str(), deactivated_at],
            )
            .map_err(self.err("cannot update device"))?;
        if n == 0 {
            return Err(self.unknown(serial));
        }
        Ok(())
    }

    /// Removes a device; `auth` registers it again on its next connection.
    pub fn delete_device(&mut self, serial: &str) -> Result<()> {
        let n = self
            .conn
            .execute("DELETE FROM devices WHERE serial = ?1", [serial])
            .map_err(self.err("cannot delete device"))?;
        if n == 0 {
            return Err(self.unknown(serial));
        }
        Ok(())
    }
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
        first_connected_at: r.get::<_, Option<i64>>(7)?.map(rfc3339),
        last_connected_at: r.get::<_, Option<i64>>(8)?.map(rfc3339),
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
