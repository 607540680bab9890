//! The device-certificate registry: the broker console's records of CAs
//! and device certificates, in an embedded SQLite file (the default) or a
//! PostgreSQL database shared by many hosts. The rules are written here,
//! once; the SQL of each database sits below the [`store::Store`] trait.
//!
//! Serials are stored as `openssl x509 -serial` prints them (upper-case hex,
//! no colons, no sign byte) and are unique across the registry. Times are
//! Unix seconds, shown as RFC 3339.

mod audit;
pub mod auth;
pub mod broker;
mod cas;
pub mod crl;
mod devices;
pub mod export;
mod postgres;
mod schema;
/// The registry schema version this build writes (both backends).
pub use schema::VERSION as SCHEMA_VERSION;
mod sqlite;
pub mod store;

pub use audit::AuditRecord;
pub use devices::{Bulk, DeviceRef, register_issued};

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use sha2::Digest as _;

use crate::error::{Error, ErrorKind, Result};
use crate::input::LoadedCert;
use crate::name::{common_name_of, to_rfc4514};
use crate::sign::{format_time, parse_serial, serial_hex};
use store::StoreError;

/// Whether a device may connect.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
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

    pub(crate) fn from_db(s: &str) -> Status {
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

impl CaRecord {
    /// From stored columns (times in Unix seconds).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn from_columns(
        id: i64,
        serial: String,
        subject: String,
        ski: String,
        not_before: i64,
        not_after: i64,
        registered_at: i64,
        devices: i64,
    ) -> CaRecord {
        CaRecord {
            id,
            serial,
            subject,
            ski,
            not_before: rfc3339(not_before),
            not_after: rfc3339(not_after),
            registered_at: rfc3339(registered_at),
            devices: devices.max(0) as u64,
        }
    }
}

impl DeviceRecord {
    /// A stored row (times in Unix seconds) and its revocation as listed.
    pub(crate) fn of(
        d: store::DeviceRow,
        ca_serial: String,
        revocation: Option<store::Revocation>,
    ) -> DeviceRecord {
        let (revoked_at, revocation_reason) = match revocation {
            Some(r) => (Some(rfc3339(r.revoked_at)), Some(r.reason)),
            None => (None, None),
        };
        DeviceRecord {
            revoked_at,
            revocation_reason,
            serial: d.serial,
            ca_serial,
            subject: d.subject,
            status: d.status,
            not_before: rfc3339(d.not_before),
            not_after: rfc3339(d.not_after),
            registered_at: rfc3339(d.registered_at),
            first_connected_at: d.first_connected_at.map(rfc3339),
            last_connected_at: d.last_connected_at.map(rfc3339),
        }
    }
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
    /// Keyset paging: only devices registered after the device with this
    /// serial (the last one of the previous page), so a page costs the same
    /// at the millionth device as at the first (no OFFSET).
    pub after: Option<String>,
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

impl CertRow {
    /// The row of a device of CA `ca_id`, registered Active at `at`.
    fn device(&self, ca_id: i64, at: i64) -> store::DeviceRow {
        store::DeviceRow {
            serial: self.serial.clone(),
            ca_id,
            subject: self.subject.clone(),
            cn: self.cn.clone(),
            status: Status::Active,
            not_before: self.not_before,
            not_after: self.not_after,
            registered_at: at,
            deactivated_at: None,
            fingerprint: self.fingerprint.clone(),
            first_connected_at: None,
            last_connected_at: None,
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

/// An open registry: the rules live in this module's files, the rows in
/// a [`store::Store`] (SQLite or PostgreSQL).
pub struct Registry {
    store: Box<dyn store::Store>,
    label: String,
}

impl Registry {
    /// Opens an existing registry: queries of a mistyped `--db` must not
    /// quietly create an empty database and report "no devices".
    pub fn open_existing(value: &str) -> Result<Registry> {
        Registry::open_existing_waiting(value, store::BUSY_TIMEOUT)
    }

    /// [`Registry::open_existing`] for a caller that must not stall (the
    /// broker): it waits at most `busy` for another process's lock.
    pub fn open_existing_waiting(value: &str, busy: Duration) -> Result<Registry> {
        Registry::open_store(value, false, busy)?.ok_or_else(|| {
            let why = if postgres::settings::is_url(value) {
                "the database holds no registry yet"
            } else {
                "no such file or directory"
            };
            Error::new(ErrorKind::Registry, "cannot open registry", why)
                .file(store::label(value))
                .hint("a registry is created by `devcert registry ca add CA.crt` or `--registry` on sign/issue/batch")
        })
    }

    /// Opens an existing registry, `None` when there is none at `value`
    /// (no such file; a database without devcert's schema).
    pub fn open_if_exists(value: &str) -> Result<Option<Registry>> {
        Registry::open_store(value, false, store::BUSY_TIMEOUT)
    }

    /// Opens (creating if missing) and migrates the registry `value` names:
    /// a `postgres://` or `postgresql://` URL, else a SQLite file.
    pub fn open(value: &str) -> Result<Registry> {
        Registry::open_store(value, true, store::BUSY_TIMEOUT)?.ok_or_else(|| {
            Error::new(
                ErrorKind::Registry,
                "cannot open registry",
                "it could not be created",
            )
            .file(store::label(value))
        })
    }

    fn open_store(value: &str, create: bool, busy: Duration) -> Result<Option<Registry>> {
        let label = store::label(value);
        let store = store::open(value, create, busy)
            .map_err(|e| fail("cannot open registry", &label, e))?;
        Ok(store.map(|store| Registry { store, label }))
    }

    /// The error mapper for `what`.
    fn err(&self, what: &str) -> impl Fn(StoreError) -> Error + '_ {
        let what = what.to_string();
        move |e| fail(&what, &self.label, e)
    }

    /// A write transaction, with the error mapper for `what`.
    fn write_tx(
        &mut self,
        what: &'static str,
    ) -> Result<(
        Box<dyn store::Tx + '_>,
        impl Fn(StoreError) -> Error + use<>,
    )> {
        let label = self.label.clone();
        let fail = move |e| fail(what, &label, e);
        let tx = self.store.write().map_err(&fail)?;
        Ok((tx, fail))
    }

    fn refused(&self, what: &str, why: impl Into<String>) -> Error {
        refused(&self.label, what, why)
    }

    /// What messages call this registry (a path, or a URL without password).
    pub fn label(&self) -> &str {
        &self.label
    }
}

/// A registry rule said no (about the registry at `label`).
fn refused(label: &str, what: &str, why: impl Into<String>) -> Error {
    Error::new(ErrorKind::Refused, what, why).file(label)
}

fn fail(what: &str, label: &str, e: StoreError) -> Error {
    let err = Error::new(ErrorKind::Registry, what, e.why).file(label);
    match e.hint {
        Some(h) => err.hint(h),
        None => err,
    }
}
