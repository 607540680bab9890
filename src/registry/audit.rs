//! The audit trail: who changed what, when. Registry methods that change a
//! device or CA on someone's behalf append one row in the same transaction
//! as the change (the schema keeps the table append-only).

use serde::Serialize;

use super::store::{AuditRow, Tx};
use super::{Registry, now, rfc3339};
use crate::error::Result;

/// One change: `actor` is who asked (`cli`, `api-token`, `console:<id>`),
/// `action` what was done (`activate`, `deactivate`, `revoke`, `delete`,
/// `register`, `ca add`), `serial` the device's (or CA's) serial.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AuditRecord {
    pub at: String,
    pub actor: String,
    pub action: String,
    pub serial: String,
}

/// The row recording `action` on `serial` by `actor`, now.
pub(super) fn row(actor: &str, action: &str, serial: &str) -> AuditRow {
    AuditRow {
        at: now(),
        actor: actor.to_string(),
        action: action.to_string(),
        serial: serial.to_string(),
    }
}

/// Appends the row inside the change's own transaction.
pub(super) fn record(
    tx: &mut dyn Tx,
    actor: &str,
    action: &str,
    serial: &str,
) -> super::store::StoreResult<()> {
    tx.audit(&row(actor, action, serial))
}

impl Registry {
    /// The latest `limit` changes recorded for `serial`, newest first.
    pub fn audit(&self, serial: &str, limit: u32) -> Result<Vec<AuditRecord>> {
        let rows = self
            .store
            .audit_of(serial, limit)
            .map_err(self.err("cannot read the audit trail"))?;
        Ok(rows
            .into_iter()
            .map(|r| AuditRecord {
                at: rfc3339(r.at),
                actor: r.actor,
                action: r.action,
                serial: r.serial,
            })
            .collect())
    }
}
