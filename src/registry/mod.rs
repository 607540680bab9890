//! The device-certificate registry: the broker console's records of CAs
//! and device certificates, in an embedded SQLite database that many
//! processes may write at once (WAL, a 30 s busy timeout, short
//! `BEGIN IMMEDIATE` transactions).
//!
//! Serials are stored as `openssl x509 -serial` prints them (upper-case hex,
//! no colons, no sign byte) and are unique across the registry. Times are
//! Unix seconds, shown as RFC 3339.

pub mod auth;
pub mod crl;
mod schema;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};
use serde::Serialize;
use sha2::Digest as _;
use x509_cert::ext::pkix::{BasicConstraints, SubjectKeyIdentifier};

use crate::error::{Error, ErrorKind, Result};
use crate::input::LoadedCert;
use crate::name::to_rfc4514;
use crate::sign::{format_time, parse_serial, serial_hex};

/// How long a writer waits for another process's transaction.
const BUSY_TIMEOUT: Duration = Duration::from_secs(30);

/// Whether a device may connect.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Active,
    Inactive,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Active => "active",
            Status::Inactive => "inactive",
        }
    }

    fn from_db(s: &str) -> Status {
        if s == "inactive" {
            Status::Inactive
        } else {
            Status::Active
        }
    }
}

impl std::str::FromStr for Status {
    type Err = String;
    fn from_str(s: &str) -> Result<Status, String> {
        match s.to_ascii_lowercase().as_str() {
            "active" => Ok(Status::Active),
            "inactive" => Ok(Status::Inactive),
            _ => Err(format!("'{s}' is not a status (active or inactive)")),
        }
    }
}

/// A registered CA, as `ca list --json` prints it.
#[derive(Debug, Clone, Serialize)]
pub struct CaRecord {
    #[serde(skip)]
    pub id: i64,
    pub serial: String,
    pub subject: String,
    pub ski: String,
    pub not_before: String,
    pub not_after: String,
    pub registered_at: String,
    pub devices: u64,
}

/// A registered device certificate, as `device list --json` prints it.
#[derive(Debug, Clone, Serialize)]
pub struct DeviceRecord {
    pub serial: String,
    pub ca_serial: String,
    pub subject: String,
    pub status: Status,
    pub not_before: String,
    pub not_after: String,
    pub registered_at: String,
}

/// Filters of `device list`; `None` matches everything.
#[derive(Debug, Clone, Default)]
pub struct DeviceQuery {
    pub serial: Option<String>,
    pub ca_serial: Option<String>,
    pub status: Option<Status>,
    pub limit: Option<u64>,
}

/// What registering a certificate did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Added {
    New,
    /// The very same certificate was already registered.
    AlreadyRegistered,
}

/// A serial as users type it (any case, colons, `0x`) in stored form.
pub fn normalize_serial(s: &str) -> Result<String, String> {
    parse_serial(s).map(|sn| serial_hex(&sn))
}

/// The columns a certificate contributes, taken from it once.
struct CertRow {
    serial: String,
    subject: String,
    not_before: i64,
    not_after: i64,
    fingerprint: Vec<u8>,
}

impl CertRow {
    fn of(c: &LoadedCert) -> CertRow {
        let tbs = c.cert.tbs_certificate();
        let v = tbs.validity();
        CertRow {
            serial: serial_hex(tbs.serial_number()),
            subject: to_rfc4514(tbs.subject()),
            not_before: unix(v.not_before.to_system_time()),
            not_after: unix(v.not_after.to_system_time()),
            fingerprint: sha2::Sha256::digest(&c.der).to_vec(),
        }
    }
}

fn unix(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

fn now() -> i64 {
    unix(SystemTime::now())
}

fn rfc3339(secs: i64) -> String {
    format_time(UNIX_EPOCH + Duration::from_secs(secs.max(0) as u64))
}

/// The CA's key id: its subjectKeyIdentifier, else the SHA-1 of its key
/// (what OpenSSL puts into the AKI of what it signs).
fn ca_key_id(c: &LoadedCert) -> Vec<u8> {
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

/// An open registry database.
pub struct Registry {
    conn: Connection,
    label: String,
}

impl Registry {
    /// Opens (creating if missing) and migrates the database at `path`.
    pub fn open(path: &str) -> Result<Registry> {
        let label = path.to_string();
        let fail = |e: rusqlite::Error| sql_error("cannot open registry", &label, e);
        let mut conn = Connection::open(path).map_err(fail)?;
        conn.busy_timeout(BUSY_TIMEOUT).map_err(fail)?;
        // WAL lets readers run beside one writer; NORMAL is durable enough
        // in WAL mode and keeps commits cheap.
        conn.query_row("PRAGMA journal_mode = WAL", [], |_| Ok(()))
            .map_err(fail)?;
        conn.execute_batch("PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON;")
            .map_err(fail)?;
        schema::migrate(&mut conn).map_err(|e| match e {
            schema::MigrateError::Sql(e) => fail(e),
            schema::MigrateError::TooNew(v) => Error::new(
                ErrorKind::Registry,
                "cannot open registry",
                format!(
                    "its schema version {v} is newer than this devcert's ({})",
                    schema::VERSION
                ),
            )
            .file(&label)
            .hint("upgrade devcert"),
        })?;
        Ok(Registry { conn, label })
    }

    fn err(&self, what: &str) -> impl Fn(rusqlite::Error) -> Error + '_ {
        let what = what.to_string();
        move |e| sql_error(&what, &self.label, e)
    }

    fn refused(&self, what: &str, why: impl Into<String>) -> Error {
        Error::new(ErrorKind::Registry, what, why).file(&self.label)
    }

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
        let row = CertRow::of(ca);
        let ski = colon_hex(&ca_key_id(ca));
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(|e| sql_error(what, &self.label, e))?;
        let fail = |e| sql_error(what, &self.label, e);
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
        let label = self.label.clone();
        let fail = |e| sql_error(what, &label, e);
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(fail)?;
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
            "SELECT d.serial, c.serial, d.subject, d.status, d.not_before, d.not_after, d.registered_at
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
                "SELECT d.serial, c.serial, d.subject, d.status, d.not_before, d.not_after, d.registered_at
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
    })
}

fn sql_error(what: &str, label: &str, e: rusqlite::Error) -> Error {
    let why = match e.sqlite_error_code() {
        Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked) => format!(
            "database is locked by another process (waited {} s)",
            BUSY_TIMEOUT.as_secs()
        ),
        Some(rusqlite::ErrorCode::NotADatabase) => "not a devcert registry (not SQLite)".into(),
        Some(rusqlite::ErrorCode::CannotOpen) => "cannot open the database file".into(),
        _ => e.to_string(),
    };
    Error::new(ErrorKind::Registry, what, why).file(label)
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
