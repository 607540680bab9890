//! PostgreSQL registries: what only a server database has (many processes
//! on one server, a server that goes away, credentials, TLS, a database of
//! another application) and moving registries with export/import. The
//! common registry suite runs on both backends in tests/registry.rs.
mod common;
use common::pg::*;

#[test]
fn harness_starts_and_stops_a_server() {
    let Some(mut pg) = PgServer::start() else { return };
    assert_eq!(pg.psql(PG_DB, "SELECT 1").trim(), "1");
    pg.stop();
    pg.restart();
    assert_eq!(pg.psql(PG_DB, "SELECT current_user").trim(), PG_USER);
}

