//! The registry's SQLite schema and its forward migrations.
//!
//! `PRAGMA user_version` holds the schema version. Each migration runs in
//! one `BEGIN IMMEDIATE` transaction that re-reads the version first, so
//! several processes opening a fresh database at once (`make -j8`) migrate
//! it exactly once.

use rusqlite::{Connection, TransactionBehavior};

/// The schema this build writes.
pub const VERSION: i64 = 7;

/// `MIGRATIONS[i]` takes the schema from version `i` to `i + 1`.
const MIGRATIONS: [&str; VERSION as usize] = [
    // v1: CAs and devices, serials stored as normalised upper-case hex.
    "CREATE TABLE cas (
        id INTEGER PRIMARY KEY,
        serial TEXT NOT NULL UNIQUE,
        subject TEXT NOT NULL,
        ski TEXT NOT NULL,
        not_before INTEGER NOT NULL,
        not_after INTEGER NOT NULL,
        registered_at INTEGER NOT NULL,
        fingerprint BLOB NOT NULL UNIQUE,
        der BLOB NOT NULL,
        crl_number INTEGER NOT NULL DEFAULT 0
    );
    CREATE INDEX cas_ski ON cas(ski);
    CREATE TABLE devices (
        id INTEGER PRIMARY KEY,
        serial TEXT NOT NULL UNIQUE,
        ca_id INTEGER NOT NULL REFERENCES cas(id),
        subject TEXT NOT NULL,
        status TEXT NOT NULL CHECK (status IN ('active', 'inactive')),
        not_before INTEGER NOT NULL,
        not_after INTEGER NOT NULL,
        registered_at INTEGER NOT NULL,
        fingerprint BLOB NOT NULL
    );
    CREATE INDEX devices_ca ON devices(ca_id);
    CREATE INDEX devices_status ON devices(status);",
    // v2: when a device was deactivated (the CRL's revocationDate), a small
    // index of held devices per CA for `registry crl`, and device counts
    // per CA kept by triggers so `ca list` never counts a million rows.
    "ALTER TABLE devices ADD COLUMN deactivated_at INTEGER;
    CREATE INDEX devices_held ON devices(ca_id) WHERE status = 'inactive';
    ALTER TABLE cas ADD COLUMN devices INTEGER NOT NULL DEFAULT 0;
    UPDATE cas SET devices = (SELECT count(*) FROM devices WHERE ca_id = cas.id);
    CREATE TRIGGER devices_count_add AFTER INSERT ON devices
        BEGIN UPDATE cas SET devices = devices + 1 WHERE id = NEW.ca_id; END;
    CREATE TRIGGER devices_count_del AFTER DELETE ON devices
        BEGIN UPDATE cas SET devices = devices - 1 WHERE id = OLD.ca_id; END;",
    // v3: when the broker plugin first and last admitted a device.
    "ALTER TABLE devices ADD COLUMN first_connected_at INTEGER;
    ALTER TABLE devices ADD COLUMN last_connected_at INTEGER;",
    // v4 (issues 17, 18): status 'revoked' (SQLite cannot widen a CHECK, so
    // the table is rebuilt, ids kept) and the common name for `--cn`
    // (filled in by `backfill`); revocations that outlive the device row;
    // one namespace of serials for CAs and devices, held by a primary key
    // so no transaction of any kind can give a device a CA's serial (and
    // by a CHECK: positive, in stored form).
    "CREATE TABLE devices_v4 (
        id INTEGER PRIMARY KEY,
        serial TEXT NOT NULL UNIQUE,
        ca_id INTEGER NOT NULL REFERENCES cas(id),
        subject TEXT NOT NULL,
        cn TEXT,
        status TEXT NOT NULL CHECK (status IN ('active', 'inactive', 'revoked')),
        not_before INTEGER NOT NULL,
        not_after INTEGER NOT NULL,
        registered_at INTEGER NOT NULL,
        fingerprint BLOB NOT NULL,
        deactivated_at INTEGER,
        first_connected_at INTEGER,
        last_connected_at INTEGER
    );
    INSERT INTO devices_v4 (id, serial, ca_id, subject, status, not_before, not_after, registered_at, fingerprint,
            deactivated_at, first_connected_at, last_connected_at)
        SELECT id, serial, ca_id, subject, status, not_before, not_after, registered_at, fingerprint,
            deactivated_at, first_connected_at, last_connected_at FROM devices;
    DROP TABLE devices;
    ALTER TABLE devices_v4 RENAME TO devices;
    CREATE INDEX devices_ca ON devices(ca_id);
    CREATE INDEX devices_status ON devices(status);
    CREATE INDEX devices_held ON devices(ca_id) WHERE status = 'inactive';
    CREATE INDEX devices_cn ON devices(cn);
    CREATE TRIGGER devices_count_add AFTER INSERT ON devices
        BEGIN UPDATE cas SET devices = devices + 1 WHERE id = NEW.ca_id; END;
    CREATE TRIGGER devices_count_del AFTER DELETE ON devices
        BEGIN UPDATE cas SET devices = devices - 1 WHERE id = OLD.ca_id; END;
    CREATE TABLE revocations (
        serial TEXT PRIMARY KEY,
        ca_id INTEGER NOT NULL REFERENCES cas(id),
        subject TEXT NOT NULL,
        reason TEXT NOT NULL,
        revoked_at INTEGER NOT NULL
    );
    CREATE INDEX revocations_ca ON revocations(ca_id);
    CREATE TABLE serials (
        serial TEXT PRIMARY KEY
            CHECK (serial NOT GLOB '*[^0-9A-F]*' AND trim(serial, '0') <> ''),
        owner TEXT NOT NULL CHECK (owner IN ('ca', 'device'))
    );
    INSERT OR IGNORE INTO serials SELECT serial, 'ca' FROM cas;
    INSERT OR IGNORE INTO serials SELECT serial, 'device' FROM devices;
    CREATE TRIGGER cas_serial_claim AFTER INSERT ON cas
        BEGIN INSERT INTO serials VALUES (NEW.serial, 'ca'); END;
    CREATE TRIGGER devices_serial_claim AFTER INSERT ON devices
        BEGIN INSERT INTO serials VALUES (NEW.serial, 'device'); END;
    CREATE TRIGGER devices_serial_release AFTER DELETE ON devices
        BEGIN DELETE FROM serials WHERE serial = OLD.serial AND owner = 'device'
            AND NOT EXISTS (SELECT 1 FROM revocations WHERE serial = OLD.serial); END;",
    // v5 (issue 15): the audit trail of changes people made (CLI, console,
    // API), kept append-only by triggers; read per serial, newest first.
    "CREATE TABLE audit (
        id INTEGER PRIMARY KEY,
        at INTEGER NOT NULL,
        actor TEXT NOT NULL,
        action TEXT NOT NULL,
        serial TEXT NOT NULL
    );
    CREATE INDEX audit_serial ON audit(serial, id);
    CREATE TRIGGER audit_no_update BEFORE UPDATE ON audit
        BEGIN SELECT RAISE(ABORT, 'the audit trail is append-only'); END;
    CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit
        BEGIN SELECT RAISE(ABORT, 'the audit trail is append-only'); END;",
    // v6 (issue 14): nothing here. PostgreSQL's counters and serial claims
    // became statement-level triggers (a row trigger there made a large
    // import quadratic); SQLite's row triggers cost little per row.
    "",
    // v7 (issue 14): nothing here either. PostgreSQL gained a change
    // counter for the broker plugin; SQLite has `PRAGMA data_version`.
    "",
];

/// Data a migration cannot compute in SQL, filled in by Rust right after
/// the migration to `version`, in the same transaction.
fn backfill(tx: &Connection, version: i64) -> rusqlite::Result<()> {
    if version == 4 {
        // The common name of devices registered before it was stored.
        let rows: Vec<(i64, String)> = tx
            .prepare("SELECT id, subject FROM devices")?
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<rusqlite::Result<_>>()?;
        let mut set = tx.prepare("UPDATE devices SET cn = ?2 WHERE id = ?1")?;
        for (id, subject) in rows {
            if let Some(cn) = crate::name::common_name_of_rfc4514(&subject) {
                set.execute(rusqlite::params![id, cn])?;
            }
        }
    }
    Ok(())
}

/// Why a database cannot be used by this build.
pub enum MigrateError {
    Sql(rusqlite::Error),
    /// Written by a newer devcert.
    TooNew(i64),
    /// Tables of another application, no devcert schema.
    Foreign,
}

impl From<rusqlite::Error> for MigrateError {
    fn from(e: rusqlite::Error) -> Self {
        MigrateError::Sql(e)
    }
}

fn user_version(conn: &Connection) -> rusqlite::Result<i64> {
    conn.query_row("PRAGMA user_version", [], |r| r.get(0))
}

/// Brings the schema up to [`VERSION`].
pub fn migrate(conn: &mut Connection) -> Result<(), MigrateError> {
    let target = super::store::schema_target(VERSION);
    let v = user_version(conn)?;
    if (target..=VERSION).contains(&v) {
        return Ok(());
    }
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    // Another process may have migrated while we waited for the lock.
    let v = user_version(&tx)?;
    if v > VERSION {
        return Err(MigrateError::TooNew(v));
    }
    let tables: i64 = tx.query_row(
        "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'",
        [],
        |r| r.get(0),
    )?;
    if v == 0 && tables > 0 {
        return Err(MigrateError::Foreign);
    }
    for (i, step) in MIGRATIONS
        .iter()
        .enumerate()
        .take(target as usize)
        .skip(v as usize)
    {
        tx.execute_batch(step)?;
        backfill(&tx, i as i64 + 1)?;
    }
    tx.pragma_update(None, "user_version", target.max(v))?;
    tx.commit()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v1_database_migrates_forward_keeping_rows() {
        let mut conn = Connection::open_in_memory().unwrap();
        conn.execute_batch(MIGRATIONS[0]).unwrap();
        conn.pragma_update(None, "user_version", 1).unwrap();
        conn.execute(
            "INSERT INTO cas (serial, subject, ski, not_before, not_after, registered_at, fingerprint, der)
             VALUES ('01', 'CN=CA', '', 0, 0, 0, x'00', x'00')",
            [],
        )
        .unwrap();
        conn.execute(
            "INSERT INTO devices (serial, ca_id, subject, status, not_before, not_after, registered_at, fingerprint)
             VALUES ('0A', 1, 'CN=d', 'inactive', 0, 0, 0, x'00')",
            [],
        )
        .unwrap();
        assert!(migrate(&mut conn).is_ok());
        assert_eq!(user_version(&conn).unwrap(), VERSION);
        let n: i64 = conn
            .query_row("SELECT devices FROM cas", [], |r| r.get(0))
            .unwrap();
        assert_eq!(n, 1);
        // v4 took the common name out of the stored subject.
        let cn: String = conn
            .query_row("SELECT cn FROM devices", [], |r| r.get(0))
            .unwrap();
        assert_eq!(cn, "d");
        // v4: one namespace of serials; a device cannot take the CA's.
        let clash = conn.execute(
            "INSERT INTO devices (serial, ca_id, subject, status, not_before, not_after, registered_at, fingerprint)
             VALUES ('01', 1, 'CN=e', 'active', 0, 0, 0, x'01')",
            [],
        );
        assert!(clash.is_err(), "a device took the CA's serial");
        let negative = conn.execute(
            "INSERT INTO devices (serial, ca_id, subject, status, not_before, not_after, registered_at, fingerprint)
             VALUES ('-4D2', 1, 'CN=e', 'active', 0, 0, 0, x'01')",
            [],
        );
        assert!(negative.is_err(), "a negative serial was stored");
        // A second open is a no-op.
        assert!(migrate(&mut conn).is_ok());
    }

    #[test]
    fn audit_rows_cannot_be_changed_or_removed() {
        let mut conn = Connection::open_in_memory().unwrap();
        assert!(migrate(&mut conn).is_ok());
        conn.execute(
            "INSERT INTO audit (at, actor, action, serial) VALUES (1, 'cli', 'deactivate', '0A')",
            [],
        )
        .unwrap();
        assert!(conn.execute("UPDATE audit SET actor = 'x'", []).is_err());
        assert!(conn.execute("DELETE FROM audit", []).is_err());
    }

    #[test]
    fn newer_schema_is_refused() {
        let mut conn = Connection::open_in_memory().unwrap();
        conn.pragma_update(None, "user_version", VERSION + 1)
            .unwrap();
        assert!(matches!(migrate(&mut conn), Err(MigrateError::TooNew(_))));
    }

    #[test]
    fn another_applications_database_is_refused_untouched() {
        let mut conn = Connection::open_in_memory().unwrap();
        conn.execute_batch("CREATE TABLE devices (x TEXT)").unwrap();
        assert!(matches!(migrate(&mut conn), Err(MigrateError::Foreign)));
        assert_eq!(user_version(&conn).unwrap(), 0);
    }
}
