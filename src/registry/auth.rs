//! `registry auth`: what the broker decides when a device connects. The
//! chain must verify (as `devcert verify` judges, i.e. as an OpenSSL-based
//! broker does) up to a registered CA that issued the device certificate;
//! then the device's record decides: unknown → registered Active and
//! accepted, Active → accepted, Inactive → refused.

use std::fmt;
use std::time::SystemTime;

use rusqlite::{OptionalExtension, params};

use super::{CertRow, Registry, now};
use crate::error::Result;
use crate::input::LoadedCert;
use crate::verify::{Policy, Verdict, verify};

/// The broker's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Accepted; `registered` when this connection registered it.
    Accepted {
        serial: String,
        registered: bool,
    },
    Refused(String),
}

impl fmt::Display for Decision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Decision::Accepted {
                serial,
                registered: true,
            } => write!(f, "ACCEPTED: device {serial} registered as active"),
            Decision::Accepted { serial, .. } => write!(f, "ACCEPTED: device {serial} is active"),
            Decision::Refused(why) => write!(f, "REFUSED: {why}"),
        }
    }
}

/// Judges `chain` (leaf first, then any intermediates) at time `at`.
pub fn authorize(reg: &mut Registry, chain: &[LoadedCert], at: SystemTime) -> Result<Decision> {
    let Some((leaf, untrusted)) = chain.split_first() else {
        return Ok(Decision::Refused("no certificate presented".into()));
    };
    let (ids, cas): (Vec<i64>, Vec<LoadedCert>) = reg.ca_certs()?.into_iter().unzip();
    if cas.is_empty() {
        return Ok(Decision::Refused("no CA is registered".into()));
    }
    // A registered intermediate is an anchor of its own, as in a broker's cafile.
    let policy = Policy {
        at,
        strict: false,
        crl_check_all: false,
        partial_chain: true,
    };
    let path = match verify(leaf, untrusted, &cas, &[], &policy) {
        Verdict::Ok(path) => path,
        Verdict::NoPath(why) => {
            return Ok(Decision::Refused(format!(
                "not issued by a registered CA: {why}"
            )));
        }
        Verdict::Rejected(why) => return Ok(Decision::Refused(why)),
    };
    // Index 0 is the leaf, then `untrusted`, then the registered CAs.
    let issuer_der = match path.get(1) {
        Some(&i) if i <= untrusted.len() => &untrusted[i - 1].der,
        Some(&i) => &cas[i - 1 - untrusted.len()].der,
        None => return Ok(Decision::Refused("a CA is not a device".into())),
    };
    let Some(ca_id) = cas
        .iter()
        .position(|c| &c.der == issuer_der)
        .map(|i| ids[i])
    else {
        return Ok(Decision::Refused(
            "the device's issuing CA is not registered".into(),
        ));
    };
    reg.admit(ca_id, leaf)
}

impl Registry {
    /// Looks the device up and registers it if unknown, in one transaction
    /// so two first connections at once register it once.
    fn admit(&mut self, ca_id: i64, leaf: &LoadedCert) -> Result<Decision> {
        let row = CertRow::of(leaf);
        let (tx, fail) = self.write_tx("cannot update registry")?;
        let fail = &fail;
        let found: Option<(String, Vec<u8>)> = tx
            .query_row(
                "SELECT status, fingerprint FROM devices WHERE serial = ?1",
                [&row.serial],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()
            .map_err(fail)?;
        let serial = row.serial.clone();
        let decision = match found {
            None => {
                tx.execute(
                    "INSERT INTO devices (serial, ca_id, subject, status, not_before, not_after, registered_at, fingerprint)
                     VALUES (?1, ?2, ?3, 'active', ?4, ?5, ?6, ?7)",
                    params![row.serial, ca_id, row.subject, row.not_before, row.not_after, now(), row.fingerprint],
                )
                .map_err(fail)?;
                Decision::Accepted {
                    serial,
                    registered: true,
                }
            }
            Some((_, fp)) if fp != row.fingerprint => Decision::Refused(format!(
                "serial {serial} is registered for another certificate"
            )),
            Some((status, _)) if status == "inactive" => {
                Decision::Refused(format!("device {serial} is inactive"))
            }
            Some(_) => Decision::Accepted {
                serial,
                registered: false,
            },
        };
        tx.commit().map_err(fail)?;
        Ok(decision)
    }
}
