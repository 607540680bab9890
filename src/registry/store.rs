//! The registry's storage interface: rows in, rows out, no rules. The
//! rules (duplicate refusal, auth decision, CRL contents, status changes)
//! live above it in `registry/*.rs`; SQLite (`sqlite.rs`) and PostgreSQL
//! (`postgres/`) each implement it, and [`open`] picks one by the value.

use super::{CaRecord, DeviceQuery, DeviceRecord, Status};

/// Why the database refused: a message in the user's terms (never holding
/// a password), which the registry turns into an `Error` naming what was
/// being done and the registry.
#[derive(Debug, Clone)]
pub struct StoreError {
    pub why: String,
    pub hint: Option<String>,
}

impl StoreError {
    pub fn new(why: impl Into<String>) -> StoreError {
        StoreError {
            why: why.into(),
            hint: None,
        }
    }

    pub fn hint(mut self, hint: impl Into<String>) -> StoreError {
        self.hint = Some(hint.into());
        self
    }

    /// The schema was written by a newer devcert.
    pub fn too_new(found: i64) -> StoreError {
        StoreError::new(format!(
            "its schema version {found} is newer than this devcert's ({})",
            super::schema::VERSION
        ))
        .hint("upgrade devcert")
    }

    /// The database holds tables but no devcert schema.
    pub fn foreign() -> StoreError {
        StoreError::new("not a devcert registry: the database holds tables of another application")
            .hint("give devcert a database of its own (an empty one is set up on first use)")
    }
}

pub type StoreResult<T> = std::result::Result<T, StoreError>;

/// How long a writer waits for another process's lock, by default.
pub const BUSY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// A CA's row, as stored and as exported.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaRow {
    pub serial: String,
    pub subject: String,
    pub ski: String,
    pub not_before: i64,
    pub not_after: i64,
    pub registered_at: i64,
    /// SHA-256 of `der`.
    pub fingerprint: Vec<u8>,
    pub der: Vec<u8>,
    /// The last CRL number used.
    pub crl_number: i64,
}

/// A device's row, as stored and as exported.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceRow {
    pub serial: String,
    pub ca_id: i64,
    pub subject: String,
    /// The subject's most specific common name (`--cn`).
    pub cn: Option<String>,
    pub status: Status,
    pub not_before: i64,
    pub not_after: i64,
    pub registered_at: i64,
    /// When it was first deactivated (the CRL's revocationDate).
    pub deactivated_at: Option<i64>,
    /// SHA-256 of the certificate.
    pub fingerprint: Vec<u8>,
    /// When the broker plugin first / last admitted it.
    pub first_connected_at: Option<i64>,
    pub last_connected_at: Option<i64>,
}

/// A revocation record: it outlives the device's row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Revocation {
    pub serial: String,
    pub ca_id: i64,
    pub subject: String,
    /// A [`super::RevokeReason`] name.
    pub reason: String,
    pub revoked_at: i64,
}

/// One change in the audit trail: who (`actor`) did what (`action`) to
/// which serial, when (Unix seconds).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditRow {
    pub at: i64,
    pub actor: String,
    pub action: String,
    pub serial: String,
}

/// What the rules read about one serial, in or outside a transaction.
pub trait Lookup {
    fn device_row(&mut self, serial: &str) -> StoreResult<Option<DeviceRow>>;
    fn revocation(&mut self, serial: &str) -> StoreResult<Option<Revocation>>;
    /// A CA's id and fingerprint by its serial.
    fn ca_by_serial(&mut self, serial: &str) -> StoreResult<Option<(i64, Vec<u8>)>>;
}

/// Reads outside a transaction, and the way into one.
pub trait Store: Send {
    /// A write transaction. SQLite takes the write lock up front; on
    /// PostgreSQL the statements themselves are safe under concurrency
    /// (`ON CONFLICT`, single-statement updates, row locks).
    fn write(&mut self) -> StoreResult<Box<dyn Tx + '_>>;
    /// A read-only transaction seeing one consistent snapshot (export).
    fn snapshot(&mut self) -> StoreResult<Box<dyn Tx + '_>>;
    /// Plain reads, which never wait for a writer (the broker's fast path).
    fn lookup(&self) -> Box<dyn Lookup + '_>;
    /// Every CA with the devices registered under it, oldest first.
    fn cas(&self) -> StoreResult<Vec<CaRecord>>;
    /// Every CA's (id, serial, certificate DER), oldest first.
    fn ca_ders(&self) -> StoreResult<Vec<(i64, String, Vec<u8>)>>;
    fn ca_id_by_fingerprint(&self, fingerprint: &[u8]) -> StoreResult<Option<i64>>;
    /// Every CA's (id, fingerprint), oldest first: changes when the CA
    /// set does.
    fn ca_fingerprints(&self) -> StoreResult<Vec<(i64, Vec<u8>)>>;
    /// Calls `each` for the devices matching `q` (of the CAs `ca_ids`, when
    /// given, instead of `q.ca_serial`) in registration order until it
    /// returns false.
    fn list_devices(
        &self,
        q: &DeviceQuery,
        ca_ids: Option<&[i64]>,
        each: &mut dyn FnMut(DeviceRecord) -> bool,
    ) -> StoreResult<()>;
    fn device(&self, serial: &str) -> StoreResult<Option<DeviceRecord>>;
    /// The rows of those of `serials` that are registered, any order.
    fn device_rows_of(&self, serials: &[&str]) -> StoreResult<Vec<DeviceRow>>;
    /// Of `serials`, those revoked and then deleted, with their reasons.
    fn deleted_revocations_of(&self, serials: &[&str]) -> StoreResult<Vec<(String, String)>>;
    /// The latest `limit` audit rows of `serial`, newest first.
    fn audit_of(&self, serial: &str, limit: u32) -> StoreResult<Vec<AuditRow>>;
    /// A number that changes when a commit may have changed whether a
    /// registered device is refused: SQLite's `data_version` (any other
    /// connection's commit), PostgreSQL's `devcert_changes` (kept by
    /// triggers on status, certificate, deletion and revocation).
    fn change_counter(&self) -> StoreResult<i64>;
}

/// One transaction; dropped without [`Tx::commit`], nothing of it is kept.
pub trait Tx: Lookup {
    /// Inserts a CA; `None` when its serial (a CA's, a device's, a revoked
    /// one's) or its certificate is already there.
    fn insert_ca(&mut self, ca: &CaRow) -> StoreResult<Option<i64>>;
    /// Inserts a device; false when its serial is already there (a
    /// device's, a CA's or a revoked one's).
    fn insert_device(&mut self, d: &DeviceRow) -> StoreResult<bool>;
    /// [`Tx::insert_device`] of many rows: which of them were inserted.
    /// A backend where a statement costs a round trip inserts them in one.
    fn insert_devices(&mut self, rows: &[DeviceRow]) -> StoreResult<Vec<bool>> {
        rows.iter().map(|d| self.insert_device(d)).collect()
    }
    /// Sets a device's status unless it is revoked; a first deactivation
    /// records `at`, an activation clears it. False when no such device
    /// or it is revoked.
    fn set_status(&mut self, serial: &str, status: Status, at: i64) -> StoreResult<bool>;
    /// Records the revocation of device `serial` and marks it revoked.
    fn revoke(&mut self, serial: &str, reason: &str, at: i64) -> StoreResult<()>;
    /// Inserts a revocation record as exported (the serial stays taken);
    /// false when `serial` has one.
    fn insert_revocation(&mut self, r: &Revocation) -> StoreResult<bool>;
    /// False when the serial is unknown.
    fn delete_device(&mut self, serial: &str) -> StoreResult<bool>;
    /// Appends one row to the audit trail.
    fn audit(&mut self, row: &AuditRow) -> StoreResult<()>;
    /// Stamps a broker admission at `at` (first kept, last raised).
    fn record_connection(&mut self, serial: &str, at: i64) -> StoreResult<()>;
    /// Takes the next CRL number of the issuer whose certificates are
    /// `ids` (one more than the highest of theirs, set on all).
    fn next_crl_number(&mut self, ids: &[i64]) -> StoreResult<i64>;
    /// Raises CA `ca_id`'s last CRL number to at least `n` (import).
    fn raise_crl_number(&mut self, ca_id: i64, n: i64) -> StoreResult<()>;
    /// The entries of the CRL of the CAs `ids`: held devices (serial,
    /// deactivation time or `now`, None) in registration order, then
    /// revocations (serial, time, Some(reason)) in revocation order.
    fn crl_entries(
        &mut self,
        ids: &[i64],
        now: i64,
    ) -> StoreResult<Vec<(String, i64, Option<String>)>>;
    /// Whether no CA and no device is registered.
    fn is_empty(&mut self) -> StoreResult<bool>;
    /// Every CA with its id, oldest first.
    fn ca_rows(&mut self) -> StoreResult<Vec<(i64, CaRow)>>;
    /// Up to `limit` devices registered after row `after_id` (0: from the
    /// start), with their row ids: export pages through a million devices.
    fn device_rows(&mut self, after_id: i64, limit: u32) -> StoreResult<Vec<(i64, DeviceRow)>>;
    /// Every revocation record, in revocation order.
    fn revocations(&mut self) -> StoreResult<Vec<Revocation>>;
    /// Audit rows after `after_id`, oldest first (export).
    fn audit_rows(&mut self, after_id: i64, limit: u32) -> StoreResult<Vec<(i64, AuditRow)>>;
    /// Whether this very row is recorded already (import --merge).
    fn has_audit(&mut self, row: &AuditRow) -> StoreResult<bool>;
    fn commit(self: Box<Self>) -> StoreResult<()>;
}

/// The store a registry value names: a `postgres://`/`postgresql://` URL,
/// else a SQLite file. `create`: set up (or migrate) the schema; without
/// it, `Ok(None)` when there is no registry there yet. A statement waits
/// up to `busy` for another client's lock.
pub fn open(
    value: &str,
    create: bool,
    busy: std::time::Duration,
) -> StoreResult<Option<Box<dyn Store>>> {
    if super::postgres::settings::is_url(value) {
        Ok(super::postgres::PgStore::open(value, create, busy)?
            .map(|s| Box::new(s) as Box<dyn Store>))
    } else {
        Ok(super::sqlite::SqliteStore::open(value, create, busy)?
            .map(|s| Box::new(s) as Box<dyn Store>))
    }
}

/// What messages call the registry: the path, or the URL without its
/// password.
/// The schema version to migrate to: the build's, or an older one where
/// `DEVCERT_TEST_SCHEMA_VERSION` asks (tests/registry.rs, to make a
/// registry as an older devcert left it; as `DEVCERT_TEST_STOP_AT` in
/// output.rs). Never a downgrade: a newer database is left as it is.
pub fn schema_target(latest: i64) -> i64 {
    std::env::var("DEVCERT_TEST_SCHEMA_VERSION")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|v| (1..latest).contains(v))
        .unwrap_or(latest)
}

pub fn label(value: &str) -> String {
    if super::postgres::settings::is_url(value) {
        super::postgres::label(value)
    } else {
        value.to_string()
    }
}
