//! The registry in a PostgreSQL database that many hosts share. Safety
//! under concurrency comes from the database: unique constraints with
//! `ON CONFLICT DO NOTHING` (never check-then-insert), single-statement
//! status changes, and row locks (a CA's CRL number, its device count).

mod schema;
pub mod settings;
mod tls;

use std::cell::{RefCell, RefMut};
use std::collections::{HashMap, HashSet};
use std::time::Duration;

use postgres::error::SqlState;
use postgres::fallible_iterator::FallibleIterator as _;
use postgres::types::{ToSql, Type};
use postgres::{Client, GenericClient, Statement};

use super::store::{
    AuditRow, CaRow, DeviceRow, Lookup, Revocation, Store, StoreError, StoreResult, Tx,
};
use super::{CaRecord, DeviceQuery, DeviceRecord, Status};
use settings::{Env, Settings};

pub struct PgStore {
    /// Reads take `&self` (as SQLite's do); the client needs `&mut`.
    client: RefCell<Client>,
    /// Lookups by serial, prepared once per connection (the broker plugin
    /// and a batch make them all day long).
    statements: RefCell<HashMap<&'static str, Statement>>,
}

/// The label of a registry URL: without its password, even unparsable.
pub fn label(url: &str) -> String {
    match Settings::parse(url, &Env::from_process()) {
        Ok(s) => s.label(),
        Err(_) => settings::redact(url),
    }
}

impl PgStore {
    /// Connects, then sets up or migrates the schema (`create`), or
    /// reports `None` when the database holds no devcert registry.
    pub fn open(url: &str, create: bool, busy: Duration) -> StoreResult<Option<PgStore>> {
        let env = Env::from_process();
        let s = Settings::parse(url, &env).map_err(|why| {
            StoreError::new(format!("invalid PostgreSQL URL: {why}"))
                .hint("postgres://USER@HOST[:PORT]/DBNAME[?sslmode=verify-full&sslrootcert=ca.pem]")
        })?;
        let mut client = connect(&s).map_err(|e| match (&env.pgpass_ignored, &e.hint) {
            (Some(file), Some(_)) => e.hint(format!(
                "check the password (URL, PGPASSWORD or ~/.pgpass); {file} was ignored: it is readable by others (chmod 0600)"
            )),
            _ => e,
        })?;
        // A statement waits up to `busy` for another client's row lock (as
        // SQLite's busy timeout). Set with the schema check, in its round
        // trip, rather than in the startup packet's `options`, which
        // poolers such as PgBouncer refuse (or drop when told to ignore).
        let session = format!("SET lock_timeout = {}", busy.as_millis().max(1));
        if !schema::open(&mut client, create, &session)? {
            return Ok(None);
        }
        Ok(Some(PgStore {
            client: RefCell::new(client),
            statements: RefCell::new(HashMap::new()),
        }))
    }
}

/// Connects (and logs in).
fn connect(s: &Settings) -> StoreResult<Client> {
    let mut c = postgres::Config::new();
    for h in &s.hosts {
        c.host(&h.name).port(h.port);
    }
    c.user(&s.user)
        .dbname(&s.dbname)
        .application_name("devcert")
        .connect_timeout(s.connect_timeout)
        .ssl_mode(match s.sslmode {
            settings::SslMode::Disable => postgres::config::SslMode::Disable,
            settings::SslMode::Prefer => postgres::config::SslMode::Prefer,
            _ => postgres::config::SslMode::Require,
        });
    if let Some(p) = &s.password {
        c.password(p);
    }
    if s.read_write {
        c.target_session_attrs(postgres::config::TargetSessionAttrs::ReadWrite);
    }
    let hosts: Vec<String> = s
        .hosts
        .iter()
        .map(|h| format!("{}:{}", h.name, h.port))
        .collect();
    let hosts = hosts.join(", ");
    // The client's connect_timeout covers opening the socket only: a
    // server that accepts and then never answers would hold the command
    // (or the broker) for ever. The whole handshake runs in a thread that
    // is given up on after the timeout (it ends when the process does).
    let tls = tls::connector(s)?;
    let (sent, answer) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = sent.send(c.connect(tls));
    });
    let limit = s.connect_timeout;
    let client = answer
        .recv_timeout(limit + Duration::from_millis(500))
        .map_err(|_| {
            StoreError::new(format!(
                "cannot connect to {hosts}: timed out, no answer within {} s",
                limit.as_secs()
            ))
            .hint("is it a PostgreSQL server? (connect_timeout=N in the URL sets the wait)")
        })?;
    client.map_err(|e| {
        if let Some(err) = tls::explain(&e, s, &hosts) {
            return err;
        }
        let no_tls = s.sslmode == settings::SslMode::Disable
            && e.as_db_error().is_some_and(|db| {
                *db.code() == SqlState::INVALID_AUTHORIZATION_SPECIFICATION
                    && db.message().contains("no encryption")
            });
        let err = pg_error(e);
        if no_tls {
            StoreError {
                why: format!("cannot connect to {hosts} with sslmode=disable: {}", err.why),
                hint: Some("the server takes this connection over TLS only: use sslmode=require (better verify-full with sslrootcert)".into()),
            }
        } else if err.hint.is_none() && !err.why.contains("password") {
            StoreError {
                why: format!("cannot connect to {hosts}: {}", err.why),
                hint: Some("is the server running and accepting TCP connections there?".into()),
            }
        } else {
            err
        }
    })
}

/// A PostgreSQL error in the user's terms (the client's errors never hold
/// the password).
pub(super) fn pg_error(e: postgres::Error) -> StoreError {
    if let Some(db) = e.as_db_error() {
        let code = db.code();
        let why = match db.detail() {
            Some(d) => format!("{} ({d})", db.message()),
            None => db.message().to_string(),
        };
        // PgBouncer checks the password itself and refuses it with its own
        // words and code 08P01, not the server's 28P01.
        let pooler_refused = matches!(
            db.message(),
            "SASL authentication failed" | "password authentication failed"
        );
        return if *code == SqlState::INVALID_PASSWORD || pooler_refused {
            let why = if why.starts_with("password") {
                why
            } else {
                format!("password authentication failed ({why})")
            };
            StoreError::new(why).hint("check the password (URL, PGPASSWORD or ~/.pgpass)")
        } else if *code == SqlState::INVALID_CATALOG_NAME {
            StoreError::new(why)
                .hint("create it first: createdb DBNAME (devcert sets up its tables)")
        } else if [
            SqlState::ADMIN_SHUTDOWN,
            SqlState::CRASH_SHUTDOWN,
            SqlState::CANNOT_CONNECT_NOW,
        ]
        .contains(code)
        {
            StoreError::new(format!("the server went away: {why}"))
                .hint("nothing of this command was kept; run it again once the server is back")
        } else if *code == SqlState::LOCK_NOT_AVAILABLE {
            StoreError::new("the rows are locked by another client (waited past lock_timeout)")
        } else {
            StoreError::new(why)
        };
    }
    if e.is_closed() {
        return StoreError::new("the connection to the server was lost")
            .hint("nothing of this command was kept; run it again once the server is back");
    }
    StoreError::new(e.to_string())
}

/// A device's columns, as [`device_row`] reads them.
const DEVICE_ROW_COLUMNS: &str = "serial, ca_id, subject, cn, status, not_before, not_after, registered_at, deactivated_at, fingerprint, first_connected_at, last_connected_at";
/// The same of `devices d`, its CA's serial and its revocation.
const DEVICE_LIST: &str = "SELECT d.serial, d.ca_id, d.subject, d.cn, d.status, d.not_before, d.not_after, d.registered_at,
        d.deactivated_at, d.fingerprint, d.first_connected_at, d.last_connected_at, c.serial, r.revoked_at, r.reason
     FROM devices d JOIN cas c ON c.id = d.ca_id LEFT JOIN revocations r ON r.serial = d.serial";
const SELECT_DEVICE_ROW: &str = "SELECT serial, ca_id, subject, cn, status, not_before, not_after, registered_at, deactivated_at, fingerprint, first_connected_at, last_connected_at
     FROM devices WHERE serial = $1";
/// Inserts devices, given as one array per column. The serial must be
/// free of CAs and revocations too (the `serials` table's key guards a
/// race; this keeps the common case from aborting the transaction with
/// its error).
const INSERT_DEVICES: &str = "INSERT INTO devices (serial, ca_id, subject, cn, status, not_before, not_after, registered_at, deactivated_at, fingerprint, first_connected_at, last_connected_at)
     SELECT u.serial, u.ca_id, u.subject, u.cn, u.status, u.not_before, u.not_after, u.registered_at, u.deactivated_at, u.fingerprint, u.first_connected_at, u.last_connected_at
     FROM unnest($1::text[], $2::bigint[], $3::text[], $4::text[], $5::text[], $6::bigint[], $7::bigint[], $8::bigint[], $9::bigint[], $10::bytea[], $11::bigint[], $12::bigint[])
         WITH ORDINALITY AS u(serial, ca_id, subject, cn, status, not_before, not_after, registered_at, deactivated_at, fingerprint, first_connected_at, last_connected_at, n)
     WHERE NOT EXISTS (SELECT 1 FROM serials s WHERE s.serial = u.serial)
     ORDER BY u.n
     ON CONFLICT (serial) DO NOTHING
     RETURNING serial";
/// Rows per multi-row insert (a few MB of parameters).
const INSERT_CHUNK: usize = 10_000;
const SELECT_REVOCATION: &str =
    "SELECT serial, ca_id, subject, reason, revoked_at FROM revocations WHERE serial = $1";
const SELECT_CA: &str = "SELECT id, fingerprint FROM cas WHERE serial = $1";

fn device_row(r: &postgres::Row) -> DeviceRow {
    DeviceRow {
        serial: r.get(0),
        ca_id: r.get(1),
        subject: r.get(2),
        cn: r.get(3),
        status: Status::from_db(r.get::<_, &str>(4)),
        not_before: r.get(5),
        not_after: r.get(6),
        registered_at: r.get(7),
        deactivated_at: r.get(8),
        fingerprint: r.get(9),
        first_connected_at: r.get(10),
        last_connected_at: r.get(11),
    }
}

fn device_record(r: &postgres::Row) -> DeviceRecord {
    let d = device_row(r);
    let revocation = r.get::<_, Option<i64>>(13).map(|revoked_at| Revocation {
        serial: d.serial.clone(),
        ca_id: d.ca_id,
        subject: d.subject.clone(),
        reason: r.get(14),
        revoked_at,
    });
    DeviceRecord::of(d, r.get(12), revocation)
}

fn revocation(r: &postgres::Row) -> Revocation {
    Revocation {
        serial: r.get(0),
        ca_id: r.get(1),
        subject: r.get(2),
        reason: r.get(3),
        revoked_at: r.get(4),
    }
}

/// `sql` prepared once per connection.
fn prepared(
    client: &mut impl GenericClient,
    cache: &mut HashMap<&'static str, Statement>,
    sql: &'static str,
) -> StoreResult<Statement> {
    if let Some(st) = cache.get(sql) {
        return Ok(st.clone());
    }
    let st = client.prepare(sql).map_err(pg_error)?;
    cache.insert(sql, st.clone());
    Ok(st)
}

/// A [`Lookup`] read by serial, on the client or in a transaction.
fn lookup<T>(
    c: &mut impl GenericClient,
    cache: &mut HashMap<&'static str, Statement>,
    sql: &'static str,
    serial: &str,
    row: fn(&postgres::Row) -> T,
) -> StoreResult<Option<T>> {
    let st = prepared(c, cache, sql)?;
    let found = c.query_opt(&st, &[&serial]).map_err(pg_error)?;
    Ok(found.as_ref().map(row))
}

fn ca_row(r: &postgres::Row) -> (i64, Vec<u8>) {
    (r.get(0), r.get(1))
}

struct PgLookup<'a> {
    client: RefMut<'a, Client>,
    statements: RefMut<'a, HashMap<&'static str, Statement>>,
}

impl Lookup for PgLookup<'_> {
    fn device_row(&mut self, serial: &str) -> StoreResult<Option<DeviceRow>> {
        lookup(
            &mut *self.client,
            &mut self.statements,
            SELECT_DEVICE_ROW,
            serial,
            device_row,
        )
    }

    fn revocation(&mut self, serial: &str) -> StoreResult<Option<Revocation>> {
        lookup(
            &mut *self.client,
            &mut self.statements,
            SELECT_REVOCATION,
            serial,
            revocation,
        )
    }

    fn ca_by_serial(&mut self, serial: &str) -> StoreResult<Option<(i64, Vec<u8>)>> {
        lookup(
            &mut *self.client,
            &mut self.statements,
            SELECT_CA,
            serial,
            ca_row,
        )
    }
}

impl Store for PgStore {
    fn write(&mut self) -> StoreResult<Box<dyn Tx + '_>> {
        let tx = self.client.get_mut().transaction().map_err(pg_error)?;
        Ok(Box::new(PgTx {
            tx,
            statements: self.statements.get_mut(),
        }))
    }

    fn snapshot(&mut self) -> StoreResult<Box<dyn Tx + '_>> {
        let tx = self
            .client
            .get_mut()
            .build_transaction()
            .isolation_level(postgres::IsolationLevel::RepeatableRead)
            .read_only(true)
            .start()
            .map_err(pg_error)?;
        Ok(Box::new(PgTx {
            tx,
            statements: self.statements.get_mut(),
        }))
    }

    fn lookup(&self) -> Box<dyn Lookup + '_> {
        Box::new(PgLookup {
            client: self.client.borrow_mut(),
            statements: self.statements.borrow_mut(),
        })
    }

    fn cas(&self) -> StoreResult<Vec<CaRecord>> {
        let rows = self
            .client
            .borrow_mut()
            .query_typed(
                "SELECT id, serial, subject, ski, not_before, not_after, registered_at, devices
                 FROM cas ORDER BY id",
                &[],
            )
            .map_err(pg_error)?;
        Ok(rows
            .iter()
            .map(|r| {
                CaRecord::from_columns(
                    r.get(0),
                    r.get(1),
                    r.get(2),
                    r.get(3),
                    r.get(4),
                    r.get(5),
                    r.get(6),
                    r.get(7),
                )
            })
            .collect())
    }

    fn ca_ders(&self) -> StoreResult<Vec<(i64, String, Vec<u8>)>> {
        let rows = self
            .client
            .borrow_mut()
            .query_typed("SELECT id, serial, der FROM cas ORDER BY id", &[])
            .map_err(pg_error)?;
        Ok(rows
            .iter()
            .map(|r| (r.get(0), r.get(1), r.get(2)))
            .collect())
    }

    fn ca_id_by_fingerprint(&self, fingerprint: &[u8]) -> StoreResult<Option<i64>> {
        let row = self
            .client
            .borrow_mut()
            .query_typed_opt(
                "SELECT id FROM cas WHERE fingerprint = $1",
                &[(&fingerprint, Type::BYTEA)],
            )
            .map_err(pg_error)?;
        Ok(row.map(|r| r.get(0)))
    }

    fn ca_fingerprints(&self) -> StoreResult<Vec<(i64, Vec<u8>)>> {
        let rows = self
            .client
            .borrow_mut()
            .query_typed("SELECT id, fingerprint FROM cas ORDER BY id", &[])
            .map_err(pg_error)?;
        Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
    }

    fn list_devices(
        &self,
        q: &DeviceQuery,
        ca_ids: Option<&[i64]>,
        each: &mut dyn FnMut(DeviceRecord) -> bool,
    ) -> StoreResult<()> {
        let mut sql = format!("{DEVICE_LIST} WHERE true");
        // Typed parameters: one round trip, no statement prepared.
        let mut args: Vec<(Box<dyn ToSql + Sync>, Type)> = Vec::new();
        let mut arg = |sql: &mut String, clause: &str, v: Box<dyn ToSql + Sync>, ty: Type| {
            args.push((v, ty));
            sql.push_str(&clause.replace('?', &format!("${}", args.len())));
        };
        if let Some(s) = &q.serial {
            arg(
                &mut sql,
                " AND d.serial = ?",
                Box::new(s.clone()),
                Type::TEXT,
            );
        }
        if let Some(ids) = ca_ids {
            arg(
                &mut sql,
                " AND d.ca_id = ANY(?)",
                Box::new(ids.to_vec()),
                Type::INT8_ARRAY,
            );
        }
        if let Some(st) = q.status {
            arg(
                &mut sql,
                " AND d.status = ?",
                Box::new(st.as_str()),
                Type::TEXT,
            );
        }
        if let Some(cn) = &q.cn {
            arg(&mut sql, " AND d.cn = ?", Box::new(cn.clone()), Type::TEXT);
        }
        if let Some(text) = &q.subject_contains {
            // ASCII case only, as SQLite's lower().
            arg(
                &mut sql,
                " AND strpos(lower(d.subject COLLATE \"C\"), lower(? COLLATE \"C\")) > 0",
                Box::new(text.clone()),
                Type::TEXT,
            );
        }
        if let Some(after) = &q.after {
            // Keyset paging: a range on the id, never an OFFSET.
            arg(
                &mut sql,
                " AND d.id > (SELECT id FROM devices WHERE serial = ?)",
                Box::new(after.clone()),
                Type::TEXT,
            );
        }
        // LIMIT NULL is no limit.
        let limit = q.limit.map(|l| l.min(i64::MAX as u64) as i64);
        arg(
            &mut sql,
            " ORDER BY d.id LIMIT ?",
            Box::new(limit),
            Type::INT8,
        );
        let mut client = self.client.borrow_mut();
        let mut rows = client
            .query_typed_raw(&sql, args.iter().map(|(a, ty)| (a.as_ref(), ty.clone())))
            .map_err(pg_error)?;
        while let Some(r) = rows.next().map_err(pg_error)? {
            if !each(device_record(&r)) {
                break;
            }
        }
        Ok(())
    }

    fn audit_of(&self, serial: &str, limit: u32) -> StoreResult<Vec<AuditRow>> {
        let rows = self
            .client
            .borrow_mut()
            .query_typed(
                "SELECT at, actor, action, serial FROM audit WHERE serial = $1
                 ORDER BY id DESC LIMIT $2",
                &[(&serial, Type::TEXT), (&i64::from(limit), Type::INT8)],
            )
            .map_err(pg_error)?;
        Ok(rows.iter().map(audit_row).collect())
    }

    fn device(&self, serial: &str) -> StoreResult<Option<DeviceRecord>> {
        let row = self
            .client
            .borrow_mut()
            .query_typed_opt(
                &format!("{DEVICE_LIST} WHERE d.serial = $1"),
                &[(&serial, Type::TEXT)],
            )
            .map_err(pg_error)?;
        Ok(row.as_ref().map(device_record))
    }

    fn device_rows_of(&self, serials: &[&str]) -> StoreResult<Vec<DeviceRow>> {
        let rows = self
            .client
            .borrow_mut()
            .query_typed(
                &format!("SELECT {DEVICE_ROW_COLUMNS} FROM devices WHERE serial = ANY($1)"),
                &[(&serials, Type::TEXT_ARRAY)],
            )
            .map_err(pg_error)?;
        Ok(rows.iter().map(device_row).collect())
    }

    fn deleted_revocations_of(&self, serials: &[&str]) -> StoreResult<Vec<(String, String)>> {
        let rows = self
            .client
            .borrow_mut()
            .query_typed(
                "SELECT r.serial, r.reason FROM revocations r WHERE r.serial = ANY($1)
                 AND NOT EXISTS (SELECT 1 FROM devices d WHERE d.serial = r.serial)",
                &[(&serials, Type::TEXT_ARRAY)],
            )
            .map_err(pg_error)?;
        Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
    }

    fn change_counter(&self) -> StoreResult<i64> {
        let row = self
            .client
            .borrow_mut()
            .query_typed_one("SELECT n FROM devcert_changes", &[])
            .map_err(pg_error)?;
        Ok(row.get(0))
    }
}

struct PgTx<'a> {
    tx: postgres::Transaction<'a>,
    statements: &'a mut HashMap<&'static str, Statement>,
}

impl Lookup for PgTx<'_> {
    fn device_row(&mut self, serial: &str) -> StoreResult<Option<DeviceRow>> {
        lookup(
            &mut self.tx,
            self.statements,
            SELECT_DEVICE_ROW,
            serial,
            device_row,
        )
    }

    fn revocation(&mut self, serial: &str) -> StoreResult<Option<Revocation>> {
        lookup(
            &mut self.tx,
            self.statements,
            SELECT_REVOCATION,
            serial,
            revocation,
        )
    }

    fn ca_by_serial(&mut self, serial: &str) -> StoreResult<Option<(i64, Vec<u8>)>> {
        lookup(&mut self.tx, self.statements, SELECT_CA, serial, ca_row)
    }
}

impl Tx for PgTx<'_> {
    fn insert_ca(&mut self, ca: &CaRow) -> StoreResult<Option<i64>> {
        // ON CONFLICT waits for a concurrent insert of the same CA, then
        // does nothing.
        let row = self
            .tx
            .query_typed_opt(
                "INSERT INTO cas (serial, subject, ski, not_before, not_after, registered_at, fingerprint, der, crl_number)
                 SELECT $1::text, $2::text, $3::text, $4::bigint, $5::bigint, $6::bigint, $7::bytea, $8::bytea, $9::bigint
                 WHERE NOT EXISTS (SELECT 1 FROM serials WHERE serial = $1::text)
                 ON CONFLICT DO NOTHING RETURNING id",
                &[
                    (&ca.serial, Type::TEXT),
                    (&ca.subject, Type::TEXT),
                    (&ca.ski, Type::TEXT),
                    (&ca.not_before, Type::INT8),
                    (&ca.not_after, Type::INT8),
                    (&ca.registered_at, Type::INT8),
                    (&ca.fingerprint, Type::BYTEA),
                    (&ca.der, Type::BYTEA),
                    (&ca.crl_number, Type::INT8),
                ],
            )
            .map_err(pg_error)?;
        Ok(row.map(|r| r.get(0)))
    }

    fn insert_device(&mut self, d: &DeviceRow) -> StoreResult<bool> {
        Ok(self.insert_devices(std::slice::from_ref(d))?[0])
    }

    fn insert_devices(&mut self, rows: &[DeviceRow]) -> StoreResult<Vec<bool>> {
        // One statement per chunk, the columns as arrays: the statement-level
        // triggers (counts, serial claims) then run once per chunk too.
        let mut inserted = Vec::with_capacity(rows.len());
        for chunk in rows.chunks(INSERT_CHUNK) {
            let col = |f: fn(&DeviceRow) -> &str| chunk.iter().map(f).collect::<Vec<_>>();
            let int = |f: fn(&DeviceRow) -> i64| chunk.iter().map(f).collect::<Vec<_>>();
            let opt = |f: fn(&DeviceRow) -> Option<i64>| chunk.iter().map(f).collect::<Vec<_>>();
            let serials = col(|d| &d.serial);
            let cns: Vec<Option<&str>> = chunk.iter().map(|d| d.cn.as_deref()).collect();
            let fingerprints: Vec<&[u8]> = chunk.iter().map(|d| d.fingerprint.as_slice()).collect();
            let done = self
                .tx
                .query_typed(
                    INSERT_DEVICES,
                    &[
                        (&serials, Type::TEXT_ARRAY),
                        (&int(|d| d.ca_id), Type::INT8_ARRAY),
                        (&col(|d| &d.subject), Type::TEXT_ARRAY),
                        (&cns, Type::TEXT_ARRAY),
                        (&col(|d| d.status.as_str()), Type::TEXT_ARRAY),
                        (&int(|d| d.not_before), Type::INT8_ARRAY),
                        (&int(|d| d.not_after), Type::INT8_ARRAY),
                        (&int(|d| d.registered_at), Type::INT8_ARRAY),
                        (&opt(|d| d.deactivated_at), Type::INT8_ARRAY),
                        (&fingerprints, Type::BYTEA_ARRAY),
                        (&opt(|d| d.first_connected_at), Type::INT8_ARRAY),
                        (&opt(|d| d.last_connected_at), Type::INT8_ARRAY),
                    ],
                )
                .map_err(pg_error)?;
            // Rows go in in order: of two with one serial, the first.
            let mut new: HashSet<String> = done.iter().map(|r| r.get(0)).collect();
            inserted.extend(serials.iter().map(|s| new.remove(*s)));
        }
        Ok(inserted)
    }

    fn set_status(&mut self, serial: &str, status: Status, at: i64) -> StoreResult<bool> {
        let n = self
            .tx
            .execute_typed(
                // Keep the first deactivation time when deactivated twice.
                "UPDATE devices SET status = $2,
                     deactivated_at = CASE WHEN $2 = 'inactive' THEN coalesce(deactivated_at, $3) END
                 WHERE serial = $1 AND status <> 'revoked'",
                &[
                    (&serial, Type::TEXT),
                    (&status.as_str(), Type::TEXT),
                    (&at, Type::INT8),
                ],
            )
            .map_err(pg_error)?;
        Ok(n == 1)
    }

    fn revoke(&mut self, serial: &str, reason: &str, at: i64) -> StoreResult<()> {
        self.tx
            .execute_typed(
                "INSERT INTO revocations (serial, ca_id, subject, reason, revoked_at)
                 SELECT serial, ca_id, subject, $2, $3 FROM devices WHERE serial = $1",
                &[
                    (&serial, Type::TEXT),
                    (&reason, Type::TEXT),
                    (&at, Type::INT8),
                ],
            )
            .and_then(|_| {
                self.tx.execute_typed(
                    "UPDATE devices SET status = 'revoked' WHERE serial = $1",
                    &[(&serial, Type::TEXT)],
                )
            })
            .map(drop)
            .map_err(pg_error)
    }

    fn insert_revocation(&mut self, r: &Revocation) -> StoreResult<bool> {
        let n = self
            .tx
            .execute_typed(
                "INSERT INTO revocations (serial, ca_id, subject, reason, revoked_at)
                 VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
                &[
                    (&r.serial, Type::TEXT),
                    (&r.ca_id, Type::INT8),
                    (&r.subject, Type::TEXT),
                    (&r.reason, Type::TEXT),
                    (&r.revoked_at, Type::INT8),
                ],
            )
            .map_err(pg_error)?;
        // A revoked and deleted device's serial stays taken.
        self.tx
            .execute_typed(
                "INSERT INTO serials VALUES ($1, 'device') ON CONFLICT DO NOTHING",
                &[(&r.serial, Type::TEXT)],
            )
            .map_err(pg_error)?;
        Ok(n == 1)
    }

    fn delete_device(&mut self, serial: &str) -> StoreResult<bool> {
        let n = self
            .tx
            .execute_typed(
                "DELETE FROM devices WHERE serial = $1",
                &[(&serial, Type::TEXT)],
            )
            .map_err(pg_error)?;
        Ok(n == 1)
    }

    fn audit(&mut self, row: &AuditRow) -> StoreResult<()> {
        self.tx
            .execute_typed(
                "INSERT INTO audit (at, actor, action, serial) VALUES ($1, $2, $3, $4)",
                &[
                    (&row.at, Type::INT8),
                    (&row.actor, Type::TEXT),
                    (&row.action, Type::TEXT),
                    (&row.serial, Type::TEXT),
                ],
            )
            .map(drop)
            .map_err(pg_error)
    }

    fn record_connection(&mut self, serial: &str, at: i64) -> StoreResult<()> {
        self.tx
            .execute_typed(
                "UPDATE devices SET first_connected_at = coalesce(first_connected_at, $2),
                     last_connected_at = greatest(coalesce(last_connected_at, $2), $2)
                 WHERE serial = $1",
                &[(&serial, Type::TEXT), (&at, Type::INT8)],
            )
            .map(drop)
            .map_err(pg_error)
    }

    fn next_crl_number(&mut self, ids: &[i64]) -> StoreResult<i64> {
        // Lock the issuer's rows first: two CRLs made at once get two numbers.
        let rows = self
            .tx
            .query_typed(
                "SELECT crl_number FROM cas WHERE id = ANY($1) ORDER BY id FOR UPDATE",
                &[(&ids, Type::INT8_ARRAY)],
            )
            .map_err(pg_error)?;
        let next = rows.iter().map(|r| r.get::<_, i64>(0)).max().unwrap_or(0) + 1;
        self.tx
            .execute_typed(
                "UPDATE cas SET crl_number = $2 WHERE id = ANY($1)",
                &[(&ids, Type::INT8_ARRAY), (&next, Type::INT8)],
            )
            .map_err(pg_error)?;
        Ok(next)
    }

    fn raise_crl_number(&mut self, ca_id: i64, n: i64) -> StoreResult<()> {
        self.tx
            .execute_typed(
                "UPDATE cas SET crl_number = greatest(crl_number, $2) WHERE id = $1",
                &[(&ca_id, Type::INT8), (&n, Type::INT8)],
            )
            .map(drop)
            .map_err(pg_error)
    }

    fn crl_entries(
        &mut self,
        ids: &[i64],
        now: i64,
    ) -> StoreResult<Vec<(String, i64, Option<String>)>> {
        let held = self
            .tx
            .query_typed(
                "SELECT serial, coalesce(deactivated_at, $2) FROM devices
                 WHERE ca_id = ANY($1) AND status = 'inactive' ORDER BY id",
                &[(&ids, Type::INT8_ARRAY), (&now, Type::INT8)],
            )
            .map_err(pg_error)?;
        let revoked = self
            .tx
            .query_typed(
                "SELECT serial, revoked_at, reason FROM revocations WHERE ca_id = ANY($1) ORDER BY id",
                &[(&ids, Type::INT8_ARRAY)],
            )
            .map_err(pg_error)?;
        Ok(held
            .iter()
            .map(|r| (r.get(0), r.get(1), None))
            .chain(revoked.iter().map(|r| (r.get(0), r.get(1), Some(r.get(2)))))
            .collect())
    }

    fn is_empty(&mut self) -> StoreResult<bool> {
        let row = self
            .tx
            .query_typed_one(
                "SELECT NOT EXISTS (SELECT 1 FROM cas) AND NOT EXISTS (SELECT 1 FROM devices)
                     AND NOT EXISTS (SELECT 1 FROM revocations)",
                &[],
            )
            .map_err(pg_error)?;
        Ok(row.get(0))
    }

    fn ca_rows(&mut self) -> StoreResult<Vec<(i64, CaRow)>> {
        let rows = self
            .tx
            .query_typed(
                "SELECT id, serial, subject, ski, not_before, not_after, registered_at, fingerprint, der, crl_number
                 FROM cas ORDER BY id",
                &[],
            )
            .map_err(pg_error)?;
        Ok(rows
            .iter()
            .map(|r| {
                (
                    r.get(0),
                    CaRow {
                        serial: r.get(1),
                        subject: r.get(2),
                        ski: r.get(3),
                        not_before: r.get(4),
                        not_after: r.get(5),
                        registered_at: r.get(6),
                        fingerprint: r.get(7),
                        der: r.get(8),
                        crl_number: r.get(9),
                    },
                )
            })
            .collect())
    }

    fn device_rows(&mut self, after_id: i64, limit: u32) -> StoreResult<Vec<(i64, DeviceRow)>> {
        let rows = self
            .tx
            .query_typed(
                &format!(
                    "SELECT {DEVICE_ROW_COLUMNS}, id FROM devices WHERE id > $1 ORDER BY id LIMIT $2"
                ),
                &[(&after_id, Type::INT8), (&i64::from(limit), Type::INT8)],
            )
            .map_err(pg_error)?;
        Ok(rows.iter().map(|r| (r.get(12), device_row(r))).collect())
    }

    fn revocations(&mut self) -> StoreResult<Vec<Revocation>> {
        let rows = self
            .tx
            .query_typed(
                "SELECT serial, ca_id, subject, reason, revoked_at FROM revocations ORDER BY id",
                &[],
            )
            .map_err(pg_error)?;
        Ok(rows.iter().map(revocation).collect())
    }

    fn audit_rows(&mut self, after_id: i64, limit: u32) -> StoreResult<Vec<(i64, AuditRow)>> {
        let rows = self
            .tx
            .query_typed(
                "SELECT at, actor, action, serial, id FROM audit WHERE id > $1 ORDER BY id LIMIT $2",
                &[(&after_id, Type::INT8), (&i64::from(limit), Type::INT8)],
            )
            .map_err(pg_error)?;
        Ok(rows.iter().map(|r| (r.get(4), audit_row(r))).collect())
    }

    fn has_audit(&mut self, row: &AuditRow) -> StoreResult<bool> {
        let found = self
            .tx
            .query_typed(
                "SELECT 1 FROM audit WHERE serial = $1 AND at = $2 AND actor = $3 AND action = $4",
                &[
                    (&row.serial, Type::TEXT),
                    (&row.at, Type::INT8),
                    (&row.actor, Type::TEXT),
                    (&row.action, Type::TEXT),
                ],
            )
            .map_err(pg_error)?;
        Ok(!found.is_empty())
    }

    fn commit(self: Box<Self>) -> StoreResult<()> {
        self.tx.commit().map_err(pg_error)
    }
}

/// `at, actor, action, serial` in this order.
fn audit_row(r: &postgres::Row) -> AuditRow {
    AuditRow {
        at: r.get(0),
        actor: r.get(1),
        action: r.get(2),
        serial: r.get(3),
    }
}
