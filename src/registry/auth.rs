//! `registry auth`: what the broker decides when a device connects. The
//! chain must verify (as `devcert verify` judges, i.e. as an OpenSSL-based
//! broker does) up to a registered CA that issued the device certificate;
//! then the device's record decides: unknown → registered Active and
//! accepted, Active → accepted, Inactive → refused, revoked → refused for
//! ever (also once deleted: the revocation record stays), a serial that is
//! a registered CA's or not positive → refused.
//!
//! The CLI decides once with [`authorize`]; the broker plugin keeps a
//! [`Trust`] (the registered CAs, parsed once) and calls [`decide`]: the
//! same rules, without re-reading the CAs on every connect.

use std::collections::HashMap;
use std::fmt;
use std::time::SystemTime;

use sha2::Digest as _;

use super::cas::same_name_other_key;
use super::devices::{Standing, standing, taken_why};
use super::{CertRow, Registry, Status, non_positive, now};
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

/// The registered CA certificates with their ids, parsed once: the trust
/// store of every decision.
pub struct Trust {
    ids: Vec<i64>,
    cas: Vec<LoadedCert>,
    /// Ids and SHA-256 fingerprints, to notice a change of the CA table.
    stamp: Vec<(i64, Vec<u8>)>,
    /// Leaves whose chain verified, by fingerprint: the signature check is
    /// the decision's only costly step and its result never changes.
    verified: HashMap<Vec<u8>, Verified>,
}

/// A verified leaf: its issuing CA and the window in which the whole
/// path is within its validity dates.
#[derive(Clone, Copy)]
struct Verified {
    ca_id: i64,
    from: SystemTime,
    until: SystemTime,
}

/// Beyond this many remembered leaves the cache starts over (≈ 100 bytes
/// each): a bound on memory, not on correctness.
const VERIFIED_MAX: usize = 200_000;

impl Trust {
    pub fn load(reg: &Registry) -> Result<Trust> {
        let (ids, cas): (Vec<i64>, Vec<LoadedCert>) = reg.ca_certs()?.into_iter().unzip();
        let stamp = ids
            .iter()
            .zip(&cas)
            .map(|(&id, c)| (id, sha2::Sha256::digest(&c.der).to_vec()))
            .collect();
        Ok(Trust {
            ids,
            cas,
            stamp,
            verified: HashMap::new(),
        })
    }

    /// Re-reads the CAs when the registered set changed since `load` (a
    /// query of the small CA table, no certificate parsing otherwise).
    pub fn refresh(&mut self, reg: &Registry) -> Result<()> {
        if reg.ca_stamp()? != self.stamp {
            *self = Trust::load(reg)?;
        }
        Ok(())
    }

    /// The registered CA that issued `leaf` through a path valid at `at`.
    fn issuer(&mut self, leaf: &LoadedCert, untrusted: &[LoadedCert], at: SystemTime) -> Issuer {
        let key = sha2::Sha256::digest(&leaf.der).to_vec();
        // Intermediates sent along could change the path: only a lone
        // leaf (what a broker hands over) is remembered.
        if untrusted.is_empty()
            && let Some(v) = self.verified.get(&key)
            && v.from <= at
            && at < v.until
        {
            return Issuer::Registered(v.ca_id);
        }
        let found = self.verify_issuer(leaf, untrusted, at);
        if let (Issuer::Registered(ca_id), true) = (&found, untrusted.is_empty()) {
            if self.verified.len() >= VERIFIED_MAX {
                self.verified.clear();
            }
            let (from, until) = self.window(leaf, *ca_id);
            self.verified.insert(
                key,
                Verified {
                    ca_id: *ca_id,
                    from,
                    until,
                },
            );
        }
        found
    }

    fn verify_issuer(&self, leaf: &LoadedCert, untrusted: &[LoadedCert], at: SystemTime) -> Issuer {
        if self.cas.is_empty() {
            return Issuer::Refused("no CA is registered".into());
        }
        // A registered intermediate is an anchor of its own, as in a broker's cafile.
        let policy = Policy {
            at,
            strict: false,
            crl_check_all: false,
            partial_chain: true,
        };
        let path = match verify(leaf, untrusted, &self.cas, &[], &policy) {
            Verdict::Ok(path) => path,
            Verdict::NoPath(why) => {
                // Its issuer's name is registered, but no registered key signed it.
                let issuer = leaf.cert.tbs_certificate().issuer();
                let why = match same_name_other_key(&self.cas, issuer, None) {
                    Some(serial) => format!("same name as registered CA {serial}, different key"),
                    None => why,
                };
                return Issuer::Refused(format!("not issued by a registered CA: {why}"));
            }
            Verdict::Rejected(why) => return Issuer::Refused(why),
        };
        // Index 0 is the leaf, then `untrusted`, then the registered CAs.
        let issuer_der = match path.get(1) {
            Some(&i) if i <= untrusted.len() => &untrusted[i - 1].der,
            Some(&i) => &self.cas[i - 1 - untrusted.len()].der,
            None => return Issuer::Refused("a CA is not a device".into()),
        };
        match self.cas.iter().position(|c| &c.der == issuer_der) {
            Some(i) => Issuer::Registered(self.ids[i]),
            None => Issuer::Refused("the device's issuing CA is not registered".into()),
        }
    }

    /// Where the leaf and its (one-step) issuing CA are both within their
    /// dates: a remembered verdict is only reused inside it.
    fn window(&self, leaf: &LoadedCert, ca_id: i64) -> (SystemTime, SystemTime) {
        let dates = |c: &LoadedCert| {
            let v = c.cert.tbs_certificate().validity();
            (v.not_before.to_system_time(), v.not_after.to_system_time())
        };
        let (mut from, mut until) = dates(leaf);
        if let Some(i) = self.ids.iter().position(|&id| id == ca_id) {
            let (f, u) = dates(&self.cas[i]);
            from = from.max(f);
            until = until.min(u);
        }
        (from, until)
    }
}

enum Issuer {
    Registered(i64),
    Refused(String),
}

/// Judges `chain` (leaf first, then any intermediates) at time `at`.
pub fn authorize(reg: &mut Registry, chain: &[LoadedCert], at: SystemTime) -> Result<Decision> {
    judge(reg, &mut Trust::load(reg)?, chain, at, true)
}

/// [`authorize`] writing nothing: an unknown device is reported with
/// `registered: true` (it would be registered) but is not.
pub fn authorize_dry_run(
    reg: &mut Registry,
    chain: &[LoadedCert],
    at: SystemTime,
) -> Result<Decision> {
    judge(reg, &mut Trust::load(reg)?, chain, at, false)
}

/// [`authorize`] with CAs loaded beforehand (kept current by the caller
/// with [`Trust::refresh`]).
pub fn decide(
    reg: &mut Registry,
    trust: &mut Trust,
    chain: &[LoadedCert],
    at: SystemTime,
) -> Result<Decision> {
    judge(reg, trust, chain, at, true)
}

fn judge(
    reg: &mut Registry,
    trust: &mut Trust,
    chain: &[LoadedCert],
    at: SystemTime,
    write: bool,
) -> Result<Decision> {
    let Some((leaf, untrusted)) = chain.split_first() else {
        return Ok(Decision::Refused("no certificate presented".into()));
    };
    match trust.issuer(leaf, untrusted, at) {
        Issuer::Registered(ca_id) => reg.admit(ca_id, leaf, write),
        Issuer::Refused(why) => Ok(Decision::Refused(why)),
    }
}

/// A device's record as the decision reads it.
struct DeviceState {
    status: Status,
    fingerprint: Vec<u8>,
}

/// The rule on a registered device presenting the certificate with
/// fingerprint `presented`: `None` admits it, `Some(why)` refuses it.
fn refusal(serial: &str, found: &DeviceState, presented: &[u8]) -> Option<String> {
    if found.fingerprint != presented {
        return Some(format!(
            "serial {serial} is registered for another certificate"
        ));
    }
    match found.status {
        Status::Active => None,
        Status::Inactive => Some(format!("device {serial} is inactive")),
        Status::Revoked => Some(format!("device {serial} is revoked")),
    }
}

/// Why a serial no device holds may not be registered: it was revoked
/// (then deleted), it is a registered CA's, or it is not positive.
fn unregistrable(serial: &str, held: &Standing) -> Option<String> {
    if let Some(why) = non_positive(serial) {
        return Some(format!("{why} (serials must be positive)"));
    }
    match held {
        Standing::Revoked { reason } => Some(format!("device {serial} is revoked ({reason})")),
        Standing::Ca => Some(taken_why(held, serial)),
        Standing::Unknown | Standing::Device { .. } => None,
    }
}

impl Registry {
    /// Looks the device up and registers it if unknown. Known devices are
    /// decided by a plain read, which never waits for a writer (WAL); a
    /// registration re-reads inside its transaction so two first
    /// connections at once register it once.
    fn admit(&mut self, ca_id: i64, leaf: &LoadedCert, write: bool) -> Result<Decision> {
        let row = CertRow::of(leaf);
        let serial = row.serial.clone();
        let (found, registered) = match self.device_state(&row.serial)? {
            Some(found) => (found, false),
            None => {
                let held = standing(&mut *self.store.lookup(), &serial)
                    .map_err(self.err("cannot read registry"))?;
                if let Some(why) = unregistrable(&serial, &held) {
                    return Ok(Decision::Refused(why));
                }
                if !write {
                    return Ok(Decision::Accepted {
                        serial,
                        registered: true,
                    });
                }
                self.register_connecting(ca_id, &row)?
            }
        };
        Ok(match refusal(&serial, &found, &row.fingerprint) {
            None => Decision::Accepted { serial, registered },
            Some(why) => Decision::Refused(why),
        })
    }

    fn device_state(&self, serial: &str) -> Result<Option<DeviceState>> {
        Ok(self
            .store
            .lookup()
            .device_row(serial)
            .map_err(self.err("cannot read device"))?
            .map(DeviceState::of))
    }

    /// Registers a connecting device Active unless another process did
    /// first (the insert does nothing then, and the winner's row is read);
    /// the record, and whether this call made it.
    fn register_connecting(&mut self, ca_id: i64, row: &CertRow) -> Result<(DeviceState, bool)> {
        let (mut tx, fail) = self.write_tx("cannot update registry")?;
        let new = row.device(ca_id, now());
        let result = if tx.insert_device(&new).map_err(&fail)? {
            (DeviceState::of(new), true)
        } else {
            match tx.device_row(&row.serial).map_err(&fail)? {
                Some(found) => (DeviceState::of(found), false),
                // Taken meanwhile by a CA or a revocation: refuse this time.
                None => {
                    let held = standing(&mut *tx, &row.serial).map_err(&fail)?;
                    return Err(fail(super::store::StoreError::new(taken_why(
                        &held,
                        &row.serial,
                    ))));
                }
            }
        };
        tx.commit().map_err(&fail)?;
        Ok(result)
    }

    /// Of devices still connected (serial, fingerprint of the certificate
    /// they connected with), those the registry now refuses, and why. A
    /// deleted device is not refused (it would be registered again) unless
    /// it was revoked.
    pub fn refusals(&self, connected: &[(String, Vec<u8>)]) -> Result<Vec<(String, String)>> {
        let fail = self.err("cannot read devices");
        let presented: HashMap<&str, &[u8]> = connected
            .iter()
            .map(|(s, fp)| (s.as_str(), fp.as_slice()))
            .collect();
        let serials: Vec<&str> = presented.keys().copied().collect();
        let mut out = Vec::new();
        for d in self.store.device_rows_of(&serials).map_err(&fail)? {
            let fp = presented
                .get(d.serial.as_str())
                .copied()
                .unwrap_or_default();
            let serial = d.serial.clone();
            if let Some(why) = refusal(&serial, &DeviceState::of(d), fp) {
                out.push((serial, why));
            }
        }
        // Revoked, then deleted: only the revocation record is left.
        for (serial, reason) in self.store.deleted_revocations_of(&serials).map_err(&fail)? {
            let why = unregistrable(&serial, &Standing::Revoked { reason });
            out.extend(why.map(|why| (serial, why)));
        }
        Ok(out)
    }

    /// Ids and fingerprints of the registered CAs (see [`Trust::refresh`]).
    fn ca_stamp(&self) -> Result<Vec<(i64, Vec<u8>)>> {
        self.store
            .ca_fingerprints()
            .map_err(self.err("cannot read CAs"))
    }

    /// Stamps when the broker admitted devices: `(serial, unix time)`,
    /// written together in one transaction (the plugin batches them).
    pub fn record_connections(&mut self, seen: &[(String, i64)]) -> Result<()> {
        let (mut tx, fail) = self.write_tx("cannot record connections")?;
        for (serial, at) in seen {
            tx.record_connection(serial, *at).map_err(&fail)?;
        }
        tx.commit().map_err(&fail)
    }

    /// Changes when another connection commits to the database, so a
    /// long-lived reader knows when to look again.
    pub fn change_counter(&self) -> Result<i64> {
        self.store
            .change_counter()
            .map_err(self.err("cannot read registry"))
    }
}

impl DeviceState {
    fn of(d: super::store::DeviceRow) -> DeviceState {
        DeviceState {
            status: d.status,
            fingerprint: d.fingerprint,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::digest::Digest;
    use crate::input::{Input, load_certificate};
    use crate::issue::{DeviceSpec, make_device};
    use crate::keys::{Curve, KeyAlgo, PrivateKey};
    use crate::name::common_name;
    use crate::profile::ExtensionProfile;
    use crate::registry::RevokeReason;
    use crate::sign::{CaSigner, Lifetime};

    fn cert(der: Vec<u8>) -> LoadedCert {
        load_certificate(&Input::from_bytes("test", der), "test").unwrap()
    }

    fn device(ca: &CaSigner, cn: &str) -> LoadedCert {
        let subject = common_name(cn).unwrap();
        let spec = DeviceSpec {
            algo: KeyAlgo::Ec(Curve::P256),
            subject: &subject,
            req_extensions: None,
            profile: &ExtensionProfile::device(),
            lifetime: Lifetime::Days(30),
            digest: Digest::Sha256,
            key_passphrase: None,
        };
        cert(make_device(ca, &spec).unwrap().cert_der)
    }

    /// What the broker plugin relies on: the decision it calls (`decide`
    /// with a kept `Trust`) and the check of connected devices
    /// (`refusals`) refuse a revoked device, also once it is deleted.
    #[test]
    fn the_plugin_path_refuses_revoked_devices_for_ever() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("r.db").display().to_string();
        let key = PrivateKey::generate(KeyAlgo::Ec(Curve::P256)).unwrap();
        let key = crate::crypto::SigningKey::file(key, "CA.key");
        let name = common_name("Plugin CA").unwrap();
        let root =
            crate::ca::make_root(&key, &name, Lifetime::Days(30), None, Digest::Sha256).unwrap();
        let ca = CaSigner::new(cert(root.der), &key, Digest::Sha256).unwrap();
        let mut reg = Registry::open(&db).unwrap();
        reg.add_ca(&ca.cert, "test").unwrap();
        let (a, b) = (device(&ca, "a"), device(&ca, "b"));
        let mut trust = Trust::load(&reg).unwrap();
        let now = SystemTime::now();
        let serial = |c: &LoadedCert| CertRow::of(c).serial;
        let fp = |c: &LoadedCert| CertRow::of(c).fingerprint;
        for c in [&a, &b] {
            let d = decide(&mut reg, &mut trust, std::slice::from_ref(c), now).unwrap();
            assert_eq!(
                d,
                Decision::Accepted {
                    serial: serial(c),
                    registered: true
                }
            );
        }
        reg.revoke_device(&serial(&a), RevokeReason::KeyCompromise, "test")
            .unwrap();
        let connected = vec![(serial(&a), fp(&a)), (serial(&b), fp(&b))];
        for deleted in [false, true] {
            if deleted {
                reg.delete_device(&serial(&a), false, "test").unwrap();
            }
            let d = decide(&mut reg, &mut trust, std::slice::from_ref(&a), now).unwrap();
            assert!(
                matches!(&d, Decision::Refused(why) if why.contains("revoked")),
                "{d:?}"
            );
            let kicked = reg.refusals(&connected).unwrap();
            assert_eq!(kicked.len(), 1, "{kicked:?}");
            assert_eq!(kicked[0].0, serial(&a));
        }
        // Not registered again by the refused connection.
        assert!(reg.device(&serial(&a)).is_err());
        let d = decide(&mut reg, &mut trust, std::slice::from_ref(&b), now).unwrap();
        assert_eq!(
            d,
            Decision::Accepted {
                serial: serial(&b),
                registered: false
            }
        );
    }
}
