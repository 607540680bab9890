//! The device-certificate registry: the broker console's records of CAs
//! and device certificates, in an embedded SQLite database that many
//! processes may write at once (WAL, a 30 s busy timeout, short
//! `BEGIN IMMEDIATE` transactions).
//!
//! Serials are stored as `openssl x509 -serial` prints them (upper-case hex,
//! no colons, no sign byte) and are unique across the registry. Times are
//! Unix seconds, shown as RFC 3339.

pub mod auth;
pub mod broker;
mod cas;
pub mod crl;
mod devices;
mod schema;

pub use devices::{Bulk, DeviceRef, register_issued};

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rusqlite::Connection;
use serde::Serialize;
use sha2::Digest as _;

use crate::error::{Error, ErrorKind, Result};
use crate::input::LoadedCert;
use crate::name::{common_name_of, to_rfc4514};
use crate::sign::{format_time, parse_serial, serial_hex};

/// How long a writer waits for another process's transaction.
const BUSY_TIMEOUT: Duration = Duration::from_secs(30);

/// Whether a device may connect.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Active,
    /// Held (certificateHold): `activate` lifts it.
    Inactive,
    /// Revoked for good: no way back, and the revocation outlives `delete`.
    Revoked,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Active => "active",
            Status::Inactive => "inactive",
            Status::Revoked => "revoked",
        }
    }

    fn from_db(s: &str) -> Status {
        match s {
            "active" => Status::Active,
            "inactive" => Status::Inactive,
            // The schema's CHECK allows nothing else; fail closed regardless.
            _ => Status::Revoked,
        }
    }
}

impl std::str::FromStr for Status {
    type Err = String;
    fn from_str(s: &str) -> Result<Status, String> {
        match s.to_ascii_lowercase().as_str() {
            "active" => Ok(Status::Active),
            "inactive" => Ok(Status::Inactive),
            "revoked" => Ok(Status::Revoked),
            _ => Err(format!(
                "'{s}' is not a status (active, inactive or revoked)"
            )),
        }
    }
}

/// Why a device was revoked: the CRL entry's reasonCode (RFC 5280 5.3.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RevokeReason {
    /// Written without a reasonCode, as RFC 5280 asks for `unspecified`.
    Unspecified,
    #[default]
    KeyCompromise,
    AffiliationChanged,
    Superseded,
    CessationOfOperation,
}

impl RevokeReason {
    const ALL: [RevokeReason; 5] = [
        RevokeReason::KeyCompromise,
        RevokeReason::CessationOfOperation,
        RevokeReason::Superseded,
        RevokeReason::AffiliationChanged,
        RevokeReason::Unspecified,
    ];

    /// The name OpenSSL uses (`openssl ca -crl_reason`, `crl -text`'s codes).
    pub fn as_str(self) -> &'static str {
        match self {
            RevokeReason::Unspecified => "unspecified",
            RevokeReason::KeyCompromise => "keyCompromise",
            RevokeReason::AffiliationChanged => "affiliationChanged",
            RevokeReason::Superseded => "superseded",
            RevokeReason::CessationOfOperation => "cessationOfOperation",
        }
    }

    /// The CRL reason code, `None` for unspecified (left out of the CRL).
    pub fn crl_reason(self) -> Option<x509_cert::ext::pkix::crl::CrlReason> {
        use x509_cert::ext::pkix::crl::CrlReason;
        match self {
            RevokeReason::Unspecified => None,
            RevokeReason::KeyCompromise => Some(CrlReason::KeyCompromise),
            RevokeReason::AffiliationChanged => Some(CrlReason::AffiliationChanged),
            RevokeReason::Superseded => Some(CrlReason::Superseded),
            RevokeReason::CessationOfOperation => Some(CrlReason::CessationOfOperation),
        }
    }
}

impl std::str::FromStr for RevokeReason {
    type Err = String;
    fn from_str(s: &str) -> Result<RevokeReason, String> {
        RevokeReason::ALL
            .into_iter()
            .find(|r| r.as_str().eq_ignore_ascii_case(s))
            .ok_or_else(|| {
                let names: Vec<_> = RevokeReason::ALL.iter().map(|r| r.as_str()).collect();
                format!("'{s}' is not a revocation reason ({})", names.join(", "))
            })
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
    /// When and why it was revoked (`null` unless revoked).
    pub revoked_at: Option<String>,
    pub revocation_reason: Option<String>,
    /// When the broker plugin first / last admitted it (null until then).
    pub first_connected_at: Option<String>,
    pub last_connected_at: Option<String>,
}

/// Filters of `device list`; `None` matches everything.
#[derive(Debug, Clone, Default)]
pub struct DeviceQuery {
    pub serial: Option<String>,
    /// Devices of the issuer (name and key) of the CA with this serial,
    /// whichever of its registered certificates they came in under.
    pub ca_serial: Option<String>,
    pub status: Option<Status>,
    /// The subject's (most specific) common name, exactly.
    pub cn: Option<String>,
    /// Text found in the RFC 4514 subject, ignoring ASCII case.
    pub subject_contains: Option<String>,
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
    cn: Option<String>,
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
            cn: common_name_of(tbs.subject()),
            not_before: unix(v.not_before.to_system_time()),
            not_after: unix(v.not_after.to_system_time()),
            fingerprint: sha2::Sha256::digest(&c.der).to_vec(),
        }
    }

    /// The row of a certificate entering the registry: its serial must be
    /// positive (RFC 5280 4.1.2.2). A negative or zero serial could not be
    /// named on the command line nor written into a CRL as its printed
    /// form, so it is refused wherever certificates are registered.
    fn entering(c: &LoadedCert, what: &str) -> Result<CertRow> {
        let row = CertRow::of(c);
        match non_positive(&row.serial) {
            None => Ok(row),
            Some(why) => Err(Error::refused(what, why)
                .file(&c.label)
                .hint("serials must be positive; reissue it with a positive serial (openssl x509 -set_serial, devcert sign --serial)")),
        }
    }
}

/// Why a stored-form serial cannot be registered, if it cannot.
fn non_positive(serial: &str) -> Option<String> {
    if serial.starts_with('-') {
        Some(format!("its serial {serial} is negative"))
    } else if serial.trim_start_matches('0').is_empty() {
        Some("its serial is zero".into())
    } else {
        None
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

/// An open registry database.
pub struct Registry {
    conn: Connection,
    label: String,
    /// How long a statement waits for another process's lock.
    busy: Duration,
}

impl Registry {
    /// Opens an existing registry: queries of a mistyped `--db` must not
    /// quietly create an empty database and report "no devices".
    pub fn open_existing(path: &str) -> Result<Registry> {
        Registry::open_existing_waiting(path, BUSY_TIMEOUT)
    }

    /// [`Registry::open_existing`] for a caller that must not stall (the
    /// broker): it waits at most `busy` for another process's lock.
    pub fn open_existing_waiting(path: &str, busy: Duration) -> Result<Registry> {
        if !std::path::Path::new(path).exists() {
            return Err(Error::new(
                ErrorKind::Registry,
                "cannot open registry",
                "no such file or directory",
            )
            .file(path)
            .hint("a registry is created by `devcert registry ca add CA.crt` or `--registry` on sign/issue/batch"));
        }
        Registry::open_waiting(path, busy)
    }

    /// Opens (creating if missing) and migrates the database at `path`.
    pub fn open(path: &str) -> Result<Registry> {
        Registry::open_waiting(path, BUSY_TIMEOUT)
    }

    fn open_waiting(path: &str, busy: Duration) -> Result<Registry> {
        let label = path.to_string();
        let fail = |e: rusqlite::Error| sql_error("cannot open registry", &label, busy, e);
        let mut conn = Connection::open(path).map_err(fail)?;
        conn.busy_timeout(busy).map_err(fail)?;
        // Switching a fresh database to WAL takes an exclusive lock for which
        // SQLite returns BUSY at once, without its busy handler, when several
        // processes create the registry together: retry for as long.
        let deadline = Instant::now() + busy;
        let mut setup = || -> std::result::Result<(), schema::MigrateError> {
            // WAL lets readers run beside one writer; NORMAL is durable
            // enough in WAL mode and keeps commits cheap.
            conn.query_row("PRAGMA journal_mode = WAL", [], |_| Ok(()))?;
            conn.execute_batch("PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON;")?;
            schema::migrate(&mut conn)
        };
        let setup = loop {
            match setup() {
                Err(schema::MigrateError::Sql(e)) if is_busy(&e) && Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(
                        5 + u64::from(std::process::id() % 20),
                    ));
                }
                r => break r,
            }
        };
        setup.map_err(|e| match e {
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
        Ok(Registry { conn, label, busy })
    }

    /// A write transaction, `BEGIN IMMEDIATE`: the write lock is taken up
    /// front, where the busy timeout applies (a deferred transaction that
    /// upgrades later can fail at once), with the error mapper for `what`.
    fn write_tx(
        &mut self,
        what: &'static str,
    ) -> Result<(
        rusqlite::Transaction<'_>,
        impl Fn(rusqlite::Error) -> Error + use<>,
    )> {
        let (label, busy) = (self.label.clone(), self.busy);
        let fail = move |e| sql_error(what, &label, busy, e);
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(&fail)?;
        Ok((tx, fail))
    }

    fn err(&self, what: &str) -> impl Fn(rusqlite::Error) -> Error + '_ {
        let what = what.to_string();
        move |e| sql_error(&what, &self.label, self.busy, e)
    }

    fn refused(&self, what: &str, why: impl Into<String>) -> Error {
        refused(&self.label, what, why)
    }
}

/// A registry rule said no (about the registry at `label`).
fn refused(label: &str, what: &str, why: impl Into<String>) -> Error {
    Error::new(ErrorKind::Registry, what, why).file(label)
}

/// "30 s", "200 ms".
fn waited(d: Duration) -> String {
    if d.as_millis() % 1000 == 0 {
        format!("{} s", d.as_secs())
    } else {
        format!("{} ms", d.as_millis())
    }
}

fn is_busy(e: &rusqlite::Error) -> bool {
    matches!(
        e.sqlite_error_code(),
        Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
    )
}

fn sql_error(what: &str, label: &str, busy: Duration, e: rusqlite::Error) -> Error {
    let why = match e.sqlite_error_code() {
        Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked) => format!(
            "database is locked by another process (waited {})",
            waited(busy)
        ),
        Some(rusqlite::ErrorCode::NotADatabase) => "not a devcert registry (not SQLite)".into(),
        Some(rusqlite::ErrorCode::CannotOpen) => {
            let parent = std::path::Path::new(label)
                .parent()
                .filter(|p| !p.as_os_str().is_empty());
            match parent {
                Some(p) if !p.is_dir() => format!("its folder {} does not exist", p.display()),
                _ => "cannot open the database file".into(),
            }
        }
        _ => e.to_string(),
    };
    Error::new(ErrorKind::Registry, what, why).file(label)
}
