//! The registry in an embedded SQLite file that many processes may write at
//! once (WAL, a 30 s busy timeout, short `BEGIN IMMEDIATE` transactions).

use std::time::{Duration, Instant};

use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};

use super::schema;
use super::store::{
    AuditRow, CaRow, DeviceRow, Lookup, Revocation, Store, StoreError, StoreResult, Tx,
};
use super::{CaRecord, DeviceQuery, DeviceRecord, Status};

pub struct SqliteStore {
    conn: Connection,
    /// Names the file in messages; with `busy`, how errors are told.
    err: Errs,
}

/// What turns a rusqlite error into a [`StoreError`].
#[derive(Clone)]
struct Errs {
    path: String,
    /// How long a statement waits for another process's lock.
    busy: Duration,
}

impl Errs {
    fn map(&self) -> impl Fn(rusqlite::Error) -> StoreError + '_ {
        |e| sql_error(&self.path, self.busy, e)
    }
}

impl SqliteStore {
    /// Opens (with `create`, creating if missing) and migrates the database
    /// at `path`; without `create`, `None` when there is no file: queries
    /// of a mistyped `--db` must not quietly create an empty database.
    pub fn open(path: &str, create: bool, busy: Duration) -> StoreResult<Option<SqliteStore>> {
        if !create && std::fs::symlink_metadata(path).is_err() {
            return Ok(None);
        }
        let err = Errs {
            path: path.to_string(),
            busy,
        };
        let fail = err.map();
        let mut conn = Connection::open(path).map_err(&fail)?;
        conn.busy_timeout(busy).map_err(&fail)?;
        // Switching a fresh database to WAL takes an exclusive lock for which
        // SQLite returns BUSY at once, without its busy handler, when several
        // processes create the registry together: retry for as long.
        let deadline = Instant::now() + busy;
        let mut setup = || -> Result<(), schema::MigrateError> {
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
            schema::MigrateError::TooNew(v) => StoreError::too_new(v),
            schema::MigrateError::Foreign => StoreError::foreign(),
        })?;
        drop(fail);
        Ok(Some(SqliteStore { conn, err }))
    }
}

/// A device's columns, as [`device_row`] reads them.
const DEVICE_ROW_COLUMNS: &str = "serial, ca_id, subject, cn, status, not_before, not_after, registered_at, deactivated_at, fingerprint, first_connected_at, last_connected_at";
/// The same of `devices d`, its CA's serial and its revocation.
const DEVICE_LIST: &str = "SELECT d.serial, d.ca_id, d.subject, d.cn, d.status, d.not_before, d.not_after, d.registered_at,
        d.deactivated_at, d.fingerprint, d.first_connected_at, d.last_connected_at, c.serial, r.revoked_at, r.reason
     FROM devices d JOIN cas c ON c.id = d.ca_id LEFT JOIN revocations r ON r.serial = d.serial";

fn device_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<DeviceRow> {
    Ok(DeviceRow {
        serial: r.get(0)?,
        ca_id: r.get(1)?,
        subject: r.get(2)?,
        cn: r.get(3)?,
        status: Status::from_db(&r.get::<_, String>(4)?),
        not_before: r.get(5)?,
        not_after: r.get(6)?,
        registered_at: r.get(7)?,
        deactivated_at: r.get(8)?,
        fingerprint: r.get(9)?,
        first_connected_at: r.get(10)?,
        last_connected_at: r.get(11)?,
    })
}

fn device_record(r: &rusqlite::Row<'_>) -> rusqlite::Result<DeviceRecord> {
    let d = device_row(r)?;
    let revocation = match r.get::<_, Option<i64>>(13)? {
        Some(revoked_at) => Some(Revocation {
            serial: d.serial.clone(),
            ca_id: d.ca_id,
            subject: d.subject.clone(),
            reason: r.get(14)?,
            revoked_at,
        }),
        None => None,
    };
    Ok(DeviceRecord::of(d, r.get(12)?, revocation))
}

fn revocation(r: &rusqlite::Row<'_>) -> rusqlite::Result<Revocation> {
    Ok(Revocation {
        serial: r.get(0)?,
        ca_id: r.get(1)?,
        subject: r.get(2)?,
        reason: r.get(3)?,
        revoked_at: r.get(4)?,
    })
}

/// `(?,?,..)` for `n` values.
fn list(n: usize) -> String {
    format!("({})", vec!["?"; n].join(","))
}

/// The [`Lookup`] reads on a connection or a transaction (which derefs to
/// one).
fn lookup_device(c: &Connection, e: &Errs, serial: &str) -> StoreResult<Option<DeviceRow>> {
    c.prepare_cached(&format!(
        "SELECT {DEVICE_ROW_COLUMNS} FROM devices WHERE serial = ?1"
    ))
    .and_then(|mut st| st.query_row([serial], device_row).optional())
    .map_err(e.map())
}

fn lookup_revocation(c: &Connection, e: &Errs, serial: &str) -> StoreResult<Option<Revocation>> {
    c.prepare_cached(
        "SELECT serial, ca_id, subject, reason, revoked_at FROM revocations WHERE serial = ?1",
    )
    .and_then(|mut st| st.query_row([serial], revocation).optional())
    .map_err(e.map())
}

fn lookup_ca(c: &Connection, e: &Errs, serial: &str) -> StoreResult<Option<(i64, Vec<u8>)>> {
    c.prepare_cached("SELECT id, fingerprint FROM cas WHERE serial = ?1")
        .and_then(|mut st| {
            st.query_row([serial], |r| Ok((r.get(0)?, r.get(1)?)))
                .optional()
        })
        .map_err(e.map())
}

struct SqliteLookup<'a> {
    conn: &'a Connection,
    err: &'a Errs,
}

impl Lookup for SqliteLookup<'_> {
    fn device_row(&mut self, serial: &str) -> StoreResult<Option<DeviceRow>> {
        lookup_device(self.conn, self.err, serial)
    }

    fn revocation(&mut self, serial: &str) -> StoreResult<Option<Revocation>> {
        lookup_revocation(self.conn, self.err, serial)
    }

    fn ca_by_serial(&mut self, serial: &str) -> StoreResult<Option<(i64, Vec<u8>)>> {
        lookup_ca(self.conn, self.err, serial)
    }
}

impl Store for SqliteStore {
    fn write(&mut self) -> StoreResult<Box<dyn Tx + '_>> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(self.err.map())?;
        Ok(Box::new(SqliteTx { tx, err: &self.err }))
    }

    fn snapshot(&mut self) -> StoreResult<Box<dyn Tx + '_>> {
        // A deferred transaction reads one WAL snapshot from its first read.
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Deferred)
            .map_err(self.err.map())?;
        Ok(Box::new(SqliteTx { tx, err: &self.err }))
    }

    fn lookup(&self) -> Box<dyn Lookup + '_> {
        Box::new(SqliteLookup {
            conn: &self.conn,
            err: &self.err,
        })
    }

    fn cas(&self) -> StoreResult<Vec<CaRecord>> {
        let fail = self.err.map();
        let mut st = self
            .conn
            .prepare(
                "SELECT id, serial, subject, ski, not_before, not_after, registered_at, devices
                 FROM cas ORDER BY id",
            )
            .map_err(&fail)?;
        let rows = st
            .query_map([], |r| {
                Ok(CaRecord::from_columns(
                    r.get(0)?,
                    r.get(1)?,
                    r.get(2)?,
                    r.get(3)?,
                    r.get(4)?,
                    r.get(5)?,
                    r.get(6)?,
                    r.get(7)?,
                ))
            })
            .map_err(&fail)?;
        rows.collect::<rusqlite::Result<_>>().map_err(&fail)
    }

    fn ca_ders(&self) -> StoreResult<Vec<(i64, String, Vec<u8>)>> {
        let fail = self.err.map();
        let mut st = self
            .conn
            .prepare_cached("SELECT id, serial, der FROM cas ORDER BY id")
            .map_err(&fail)?;
        let rows = st
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .map_err(&fail)?;
        rows.collect::<rusqlite::Result<_>>().map_err(&fail)
    }

    fn ca_id_by_fingerprint(&self, fingerprint: &[u8]) -> StoreResult<Option<i64>> {
        self.conn
            .query_row(
                "SELECT id FROM cas WHERE fingerprint = ?1",
                [fingerprint],
                |r| r.get(0),
            )
            .optional()
            .map_err(self.err.map())
    }

    fn ca_fingerprints(&self) -> StoreResult<Vec<(i64, Vec<u8>)>> {
        let fail = self.err.map();
        let mut st = self
            .conn
            .prepare_cached("SELECT id, fingerprint FROM cas ORDER BY id")
            .map_err(&fail)?;
        st.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .map_err(&fail)?
            .collect::<rusqlite::Result<_>>()
            .map_err(&fail)
    }

    fn list_devices(
        &self,
        q: &DeviceQuery,
        ca_ids: Option<&[i64]>,
        each: &mut dyn FnMut(DeviceRecord) -> bool,
    ) -> StoreResult<()> {
        let fail = self.err.map();
        let mut sql = format!("{DEVICE_LIST} WHERE 1");
        let mut args: Vec<rusqlite::types::Value> = Vec::new();
        if let Some(s) = &q.serial {
            sql.push_str(" AND d.serial = ?");
            args.push(s.clone().into());
        }
        if let Some(ids) = ca_ids {
            // Ids, not a join on the serial, so the planner walks devices_ca.
            sql.push_str(&format!(" AND d.ca_id IN {}", list(ids.len())));
            args.extend(ids.iter().map(|&id| id.into()));
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
        if let Some(after) = &q.after {
            // Keyset paging: a range on the rowid, never an OFFSET.
            sql.push_str(" AND d.id > (SELECT id FROM devices WHERE serial = ?)");
            args.push(after.clone().into());
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
            if !each(device_record(r).map_err(&fail)?) {
                break;
            }
        }
        Ok(())
    }

    fn audit_of(&self, serial: &str, limit: u32) -> StoreResult<Vec<AuditRow>> {
        let fail = self.err.map();
        let mut st = self
            .conn
            .prepare_cached(
                "SELECT at, actor, action, serial FROM audit WHERE serial = ?1
                 ORDER BY id DESC LIMIT ?2",
            )
            .map_err(&fail)?;
        let rows = st
            .query_map(params![serial, limit], audit_row)
            .map_err(&fail)?;
        rows.collect::<rusqlite::Result<_>>().map_err(&fail)
    }

    fn device(&self, serial: &str) -> StoreResult<Option<DeviceRecord>> {
        self.conn
            .query_row(
                &format!("{DEVICE_LIST} WHERE d.serial = ?1"),
                [serial],
                device_record,
            )
            .optional()
            .map_err(self.err.map())
    }

    fn device_rows_of(&self, serials: &[&str]) -> StoreResult<Vec<DeviceRow>> {
        let fail = self.err.map();
        let mut out = Vec::new();
        // SQLite binds at most 32,766 parameters; chunks keep each query small.
        for chunk in serials.chunks(500) {
            let sql = format!(
                "SELECT {DEVICE_ROW_COLUMNS} FROM devices WHERE serial IN {}",
                list(chunk.len())
            );
            let mut st = self.conn.prepare_cached(&sql).map_err(&fail)?;
            let rows = st
                .query_map(rusqlite::params_from_iter(chunk), device_row)
                .map_err(&fail)?;
            for r in rows {
                out.push(r.map_err(&fail)?);
            }
        }
        Ok(out)
    }

    fn deleted_revocations_of(&self, serials: &[&str]) -> StoreResult<Vec<(String, String)>> {
        let fail = self.err.map();
        let mut out = Vec::new();
        for chunk in serials.chunks(500) {
            let sql = format!(
                "SELECT r.serial, r.reason FROM revocations r WHERE r.serial IN {}
                 AND NOT EXISTS (SELECT 1 FROM devices d WHERE d.serial = r.serial)",
                list(chunk.len())
            );
            let mut st = self.conn.prepare_cached(&sql).map_err(&fail)?;
            let rows = st
                .query_map(rusqlite::params_from_iter(chunk), |r| {
                    Ok((r.get(0)?, r.get(1)?))
                })
                .map_err(&fail)?;
            for r in rows {
                out.push(r.map_err(&fail)?);
            }
        }
        Ok(out)
    }

    fn change_counter(&self) -> StoreResult<i64> {
        self.conn
            .query_row("PRAGMA data_version", [], |r| r.get(0))
            .map_err(self.err.map())
    }
}

struct SqliteTx<'a> {
    tx: rusqlite::Transaction<'a>,
    err: &'a Errs,
}

impl SqliteTx<'_> {
    /// Runs an insert that a UNIQUE/PRIMARY KEY/CHECK constraint may
    /// refuse (the serial is taken): SQLite undoes only that statement.
    fn insert(&self, sql: &str, args: impl rusqlite::Params) -> StoreResult<usize> {
        let st = self.tx.prepare_cached(sql);
        match st.and_then(|mut st| st.execute(args)) {
            Err(e) if e.sqlite_error_code() == Some(rusqlite::ErrorCode::ConstraintViolation) => {
                Ok(0)
            }
            r => r.map_err(self.err.map()),
        }
    }
}

impl Lookup for SqliteTx<'_> {
    fn device_row(&mut self, serial: &str) -> StoreResult<Option<DeviceRow>> {
        lookup_device(&self.tx, self.err, serial)
    }

    fn revocation(&mut self, serial: &str) -> StoreResult<Option<Revocation>> {
        lookup_revocation(&self.tx, self.err, serial)
    }

    fn ca_by_serial(&mut self, serial: &str) -> StoreResult<Option<(i64, Vec<u8>)>> {
        lookup_ca(&self.tx, self.err, serial)
    }
}

impl Tx for SqliteTx<'_> {
    fn insert_ca(&mut self, ca: &CaRow) -> StoreResult<Option<i64>> {
        let n = self.insert(
            "INSERT INTO cas (serial, subject, ski, not_before, not_after, registered_at, fingerprint, der, crl_number)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
            params![
                ca.serial,
                ca.subject,
                ca.ski,
                ca.not_before,
                ca.not_after,
                ca.registered_at,
                ca.fingerprint,
                ca.der,
                ca.crl_number
            ],
        )?;
        Ok((n == 1).then(|| self.tx.last_insert_rowid()))
    }

    fn insert_device(&mut self, d: &DeviceRow) -> StoreResult<bool> {
        let n = self.insert(
            &format!(
                "INSERT INTO devices ({DEVICE_ROW_COLUMNS})
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)"
            ),
            params![
                d.serial,
                d.ca_id,
                d.subject,
                d.cn,
                d.status.as_str(),
                d.not_before,
                d.not_after,
                d.registered_at,
                d.deactivated_at,
                d.fingerprint,
                d.first_connected_at,
                d.last_connected_at
            ],
        )?;
        Ok(n == 1)
    }

    fn set_status(&mut self, serial: &str, status: Status, at: i64) -> StoreResult<bool> {
        let n = self
            .tx
            .execute(
                // Keep the first deactivation time when deactivated twice.
                "UPDATE devices SET status = ?2,
                     deactivated_at = CASE WHEN ?2 = 'inactive' THEN coalesce(deactivated_at, ?3) END
                 WHERE serial = ?1 AND status <> 'revoked'",
                params![serial, status.as_str(), at],
            )
            .map_err(self.err.map())?;
        Ok(n == 1)
    }

    fn revoke(&mut self, serial: &str, reason: &str, at: i64) -> StoreResult<()> {
        self.tx
            .execute(
                "INSERT INTO revocations (serial, ca_id, subject, reason, revoked_at)
                 SELECT serial, ca_id, subject, ?2, ?3 FROM devices WHERE serial = ?1",
                params![serial, reason, at],
            )
            .and_then(|_| {
                self.tx.execute(
                    "UPDATE devices SET status = 'revoked' WHERE serial = ?1",
                    [serial],
                )
            })
            .map(drop)
            .map_err(self.err.map())
    }

    fn insert_revocation(&mut self, r: &Revocation) -> StoreResult<bool> {
        let n = self.insert(
            "INSERT INTO revocations (serial, ca_id, subject, reason, revoked_at) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![r.serial, r.ca_id, r.subject, r.reason, r.revoked_at],
        )?;
        // A revoked and deleted device's serial stays taken.
        self.tx
            .execute(
                "INSERT OR IGNORE INTO serials VALUES (?1, 'device')",
                [&r.serial],
            )
            .map_err(self.err.map())?;
        Ok(n == 1)
    }

    fn delete_device(&mut self, serial: &str) -> StoreResult<bool> {
        let n = self
            .tx
            .execute("DELETE FROM devices WHERE serial = ?1", [serial])
            .map_err(self.err.map())?;
        Ok(n == 1)
    }

    fn audit(&mut self, row: &AuditRow) -> StoreResult<()> {
        self.tx
            .prepare_cached("INSERT INTO audit (at, actor, action, serial) VALUES (?1, ?2, ?3, ?4)")
            .and_then(|mut st| st.execute(params![row.at, row.actor, row.action, row.serial]))
            .map(drop)
            .map_err(self.err.map())
    }

    fn record_connection(&mut self, serial: &str, at: i64) -> StoreResult<()> {
        self.tx
            .prepare_cached(
                "UPDATE devices SET first_connected_at = coalesce(first_connected_at, ?2),
                     last_connected_at = max(coalesce(last_connected_at, ?2), ?2)
                 WHERE serial = ?1",
            )
            .and_then(|mut st| st.execute(params![serial, at]))
            .map(drop)
            .map_err(self.err.map())
    }

    fn next_crl_number(&mut self, ids: &[i64]) -> StoreResult<i64> {
        let l = list(ids.len());
        let fail = self.err.map();
        self.tx
            .execute(
                &format!(
                    "UPDATE cas SET crl_number = (SELECT max(crl_number) FROM cas WHERE id IN {l}) + 1 WHERE id IN {l}"
                ),
                rusqlite::params_from_iter(ids.iter().chain(ids)),
            )
            .map_err(&fail)?;
        self.tx
            .query_row("SELECT crl_number FROM cas WHERE id = ?1", [ids[0]], |r| {
                r.get(0)
            })
            .map_err(&fail)
    }

    fn raise_crl_number(&mut self, ca_id: i64, n: i64) -> StoreResult<()> {
        self.tx
            .execute(
                "UPDATE cas SET crl_number = max(crl_number, ?2) WHERE id = ?1",
                params![ca_id, n],
            )
            .map(drop)
            .map_err(self.err.map())
    }

    fn crl_entries(
        &mut self,
        ids: &[i64],
        now: i64,
    ) -> StoreResult<Vec<(String, i64, Option<String>)>> {
        let fail = self.err.map();
        let l = list(ids.len());
        let mut st = self
            .tx
            .prepare(&format!(
                "SELECT serial, coalesce(deactivated_at, ?1) FROM devices
                 WHERE ca_id IN {l} AND status = 'inactive' ORDER BY id"
            ))
            .map_err(&fail)?;
        let args = std::iter::once(now).chain(ids.iter().copied());
        let mut out: Vec<(String, i64, Option<String>)> = st
            .query_map(rusqlite::params_from_iter(args), |r| {
                Ok((r.get(0)?, r.get(1)?, None))
            })
            .map_err(&fail)?
            .collect::<rusqlite::Result<_>>()
            .map_err(&fail)?;
        let mut st = self
            .tx
            .prepare(&format!(
                "SELECT serial, revoked_at, reason FROM revocations WHERE ca_id IN {l} ORDER BY rowid"
            ))
            .map_err(&fail)?;
        let revoked = st
            .query_map(rusqlite::params_from_iter(ids), |r| {
                Ok((r.get(0)?, r.get(1)?, Some(r.get(2)?)))
            })
            .map_err(&fail)?;
        for r in revoked {
            out.push(r.map_err(&fail)?);
        }
        Ok(out)
    }

    fn is_empty(&mut self) -> StoreResult<bool> {
        self.tx
            .query_row(
                "SELECT NOT EXISTS (SELECT 1 FROM cas) AND NOT EXISTS (SELECT 1 FROM devices)
                     AND NOT EXISTS (SELECT 1 FROM revocations)",
                [],
                |r| r.get(0),
            )
            .map_err(self.err.map())
    }

    fn ca_rows(&mut self) -> StoreResult<Vec<(i64, CaRow)>> {
        let fail = self.err.map();
        let mut st = self
            .tx
            .prepare(
                "SELECT id, serial, subject, ski, not_before, not_after, registered_at, fingerprint, der, crl_number
                 FROM cas ORDER BY id",
            )
            .map_err(&fail)?;
        let rows = st
            .query_map([], |r| {
                Ok((
                    r.get(0)?,
                    CaRow {
                        serial: r.get(1)?,
                        subject: r.get(2)?,
                        ski: r.get(3)?,
                        not_before: r.get(4)?,
                        not_after: r.get(5)?,
                        registered_at: r.get(6)?,
                        fingerprint: r.get(7)?,
                        der: r.get(8)?,
                        crl_number: r.get(9)?,
                    },
                ))
            })
            .map_err(&fail)?;
        rows.collect::<rusqlite::Result<_>>().map_err(&fail)
    }

    fn device_rows(&mut self, after_id: i64, limit: u32) -> StoreResult<Vec<(i64, DeviceRow)>> {
        let fail = self.err.map();
        let mut st = self
            .tx
            .prepare_cached(&format!(
                "SELECT {DEVICE_ROW_COLUMNS}, id FROM devices WHERE id > ?1 ORDER BY id LIMIT ?2"
            ))
            .map_err(&fail)?;
        let rows = st
            .query_map(params![after_id, limit], |r| {
                Ok((r.get(12)?, device_row(r)?))
            })
            .map_err(&fail)?;
        rows.collect::<rusqlite::Result<_>>().map_err(&fail)
    }

    fn revocations(&mut self) -> StoreResult<Vec<Revocation>> {
        let fail = self.err.map();
        let mut st = self
            .tx
            .prepare(
                "SELECT serial, ca_id, subject, reason, revoked_at FROM revocations ORDER BY rowid",
            )
            .map_err(&fail)?;
        let rows = st.query_map([], revocation).map_err(&fail)?;
        rows.collect::<rusqlite::Result<_>>().map_err(&fail)
    }

    fn audit_rows(&mut self, after_id: i64, limit: u32) -> StoreResult<Vec<(i64, AuditRow)>> {
        let fail = self.err.map();
        let mut st = self
            .tx
            .prepare_cached(
                "SELECT at, actor, action, serial, id FROM audit WHERE id > ?1 ORDER BY id LIMIT ?2",
            )
            .map_err(&fail)?;
        let rows = st
            .query_map(params![after_id, limit], |r| Ok((r.get(4)?, audit_row(r)?)))
            .map_err(&fail)?;
        rows.collect::<rusqlite::Result<_>>().map_err(&fail)
    }

    fn has_audit(&mut self, row: &AuditRow) -> StoreResult<bool> {
        let fail = self.err.map();
        self.tx
            .prepare_cached(
                "SELECT 1 FROM audit WHERE serial = ?1 AND at = ?2 AND actor = ?3 AND action = ?4",
            )
            .and_then(|mut st| st.exists(params![row.serial, row.at, row.actor, row.action]))
            .map_err(&fail)
    }

    fn commit(self: Box<Self>) -> StoreResult<()> {
        let err = self.err;
        self.tx.commit().map_err(err.map())
    }
}

/// `at, actor, action, serial` in this order.
fn audit_row(r: &rusqlite::Row) -> rusqlite::Result<AuditRow> {
    Ok(AuditRow {
        at: r.get(0)?,
        actor: r.get(1)?,
        action: r.get(2)?,
        serial: r.get(3)?,
    })
}

fn is_busy(e: &rusqlite::Error) -> bool {
    matches!(
        e.sqlite_error_code(),
        Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
    )
}

/// "30 s", "200 ms".
fn waited(d: Duration) -> String {
    if d.as_millis() % 1000 == 0 {
        format!("{} s", d.as_secs())
    } else {
        format!("{} ms", d.as_millis())
    }
}

fn sql_error(path: &str, busy: Duration, e: rusqlite::Error) -> StoreError {
    let why = match e.sqlite_error_code() {
        Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked) => format!(
            "database is locked by another process (waited {})",
            waited(busy)
        ),
        Some(rusqlite::ErrorCode::NotADatabase) => "not a devcert registry (not SQLite)".into(),
        Some(rusqlite::ErrorCode::CannotOpen) => {
            let parent = std::path::Path::new(path)
                .parent()
                .filter(|p| !p.as_os_str().is_empty());
            match parent {
                Some(p) if !p.is_dir() => format!("its folder {} does not exist", p.display()),
                _ => "cannot open the database file".into(),
            }
        }
        _ => e.to_string(),
    };
    StoreError::new(why)
}
