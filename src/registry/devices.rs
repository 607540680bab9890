//! Device certificates: registering (one, or a batch in chunks), finding
//! (by serial, common name or certificate), activating, deactivating,
//! revoking and deleting them, and what the registry holds under a serial
//! ([`Standing`]), which the auth rule and the uniqueness errors read.

use super::store::{Lookup, StoreError, StoreResult};
use super::{
    Added, CertRow, DeviceQuery, DeviceRecord, Registry, RevokeReason, Status, now, refused,
};
use crate::error::{Error, ErrorKind, Result};
use crate::input::LoadedCert;

/// How a device is named on the command line.
#[derive(Debug, Clone)]
pub enum DeviceRef {
    /// Its serial, in stored form ([`super::normalize_serial`]).
    Serial(String),
    /// The common name of exactly one registered device.
    Cn(String),
    /// Its certificate.
    Cert(Box<LoadedCert>),
}

impl Registry {
    /// `device add`: registers a device certificate whose issuer is a
    /// registered CA, on `actor`'s behalf (audited).
    pub fn add_device(&mut self, cert: &LoadedCert, actor: &str) -> Result<Added> {
        let ca_id = self
            .ca_certs()?
            .into_iter()
            .find(|(_, ca)| crate::chain::is_issued_by(cert, ca))
            .map(|(id, _)| id);
        let Some(ca_id) = ca_id else {
            let why = match self.same_name_other_key(cert.cert.tbs_certificate().issuer(), None)? {
                Some(serial) => format!(
                    "its issuing CA is not registered (same name as registered CA {serial}, different key)"
                ),
                None => "its issuing CA is not registered".into(),
            };
            return Err(Error::refused("cannot register device", why)
                .file(&cert.label)
                .hint("register the CA first: devcert registry ca add CA.crt"));
        };
        Ok(self.add_devices(ca_id, std::slice::from_ref(cert), Some(actor))?[0])
    }

    /// Registers certificates issued by CA `ca_id` as Active, all in one
    /// transaction. Re-registering the very same certificate is a no-op; a
    /// different certificate with a registered serial (a device's, a CA's
    /// or a revoked one's) is refused and nothing of this call is kept.
    /// With an `actor`, each new device is audited (issuing tools register
    /// in bulk, seen from `registered_at`).
    pub fn add_devices(
        &mut self,
        ca_id: i64,
        certs: &[LoadedCert],
        actor: Option<&str>,
    ) -> Result<Vec<Added>> {
        let what = "cannot register device";
        let (mut tx, fail) = self.write_tx(what)?;
        let mut out = Vec::with_capacity(certs.len());
        let t = now();
        let rows = certs
            .iter()
            .map(|c| CertRow::entering(c, what))
            .collect::<Result<Vec<_>>>()?;
        let devices: Vec<_> = rows.iter().map(|row| row.device(ca_id, t)).collect();
        // All in one statement where the store can (a batch's chunk).
        let inserted = tx.insert_devices(&devices).map_err(&fail)?;
        for ((c, row), new) in certs.iter().zip(&rows).zip(inserted) {
            if new {
                if let Some(actor) = actor {
                    super::audit::record(&mut *tx, actor, "register", &row.serial)
                        .map_err(&fail)?;
                }
                out.push(Added::New);
                continue;
            }
            match standing(&mut *tx, &row.serial).map_err(&fail)? {
                Standing::Device { fingerprint, .. } if fingerprint == row.fingerprint => {
                    out.push(Added::AlreadyRegistered)
                }
                held => {
                    return Err(Error::refused(what, taken_why(&held, &row.serial)).file(&c.label));
                }
            }
        }
        tx.commit().map_err(&fail)?;
        Ok(out)
    }

    /// Removes a device registered moments ago, when writing its files failed.
    pub fn forget_device(&mut self, serial: &str) -> Result<()> {
        let (mut tx, fail) = self.write_tx("cannot update registry")?;
        tx.delete_device(serial).map_err(&fail)?;
        tx.commit().map_err(&fail)
    }

    /// Calls `each` for every device matching `q`, in registration order,
    /// without holding them all in memory.
    pub fn list_devices(
        &self,
        q: &DeviceQuery,
        each: &mut dyn FnMut(DeviceRecord) -> Result<()>,
    ) -> Result<()> {
        let ca_ids = match &q.ca_serial {
            Some(s) => {
                let ids = self.issuer_of_serial(s)?;
                if ids.is_empty() {
                    return Ok(());
                }
                Some(ids)
            }
            None => None,
        };
        if let Some(after) = &q.after {
            // A page that starts after a device nobody has is a mistake,
            // not an empty page.
            let known = self
                .store
                .lookup()
                .device_row(after)
                .map_err(self.err("cannot list devices"))?;
            if known.is_none() {
                return Err(Error::parse(
                    "cannot list devices",
                    format!("the page starts after device {after}, which is not registered (deleted meanwhile?)"),
                )
                .hint("start again from the first page"));
            }
        }
        let mut stopped = Ok(());
        self.store
            .list_devices(q, ca_ids.as_deref(), &mut |d| {
                stopped = each(d);
                stopped.is_ok()
            })
            .map_err(self.err("cannot list devices"))?;
        stopped
    }

    /// One device by serial (normalised); unknown is an error.
    pub fn device(&self, serial: &str) -> Result<DeviceRecord> {
        let found = self
            .store
            .device(serial)
            .map_err(self.err("cannot read device"))?;
        match found {
            Some(d) => Ok(d),
            None => Err(self.unknown(serial)?),
        }
    }

    /// The serial of the device `r` names. A certificate must be the very
    /// one registered under its serial; a common name must match exactly
    /// one device (else the error lists the matches).
    pub fn resolve_device(&self, r: &DeviceRef) -> Result<String> {
        match r {
            DeviceRef::Serial(s) => Ok(s.clone()),
            DeviceRef::Cert(c) => {
                let row = CertRow::of(c);
                let held = standing(&mut *self.store.lookup(), &row.serial)
                    .map_err(self.err("cannot read device"))?;
                match held {
                    Standing::Device { fingerprint, .. } if fingerprint == row.fingerprint => {
                        Ok(row.serial)
                    }
                    Standing::Device { .. } => Err(self
                        .refused(
                            "no such device",
                            format!(
                                "serial {} is registered for another certificate than this one",
                                row.serial
                            ),
                        )
                        .file(&c.label)),
                    _ => Err(self.unknown(&row.serial)?.file(&c.label)),
                }
            }
            DeviceRef::Cn(cn) => {
                let q = DeviceQuery {
                    cn: Some(cn.clone()),
                    limit: Some(21),
                    ..Default::default()
                };
                let mut found = Vec::new();
                self.list_devices(&q, &mut |d| {
                    found.push(d);
                    Ok(())
                })?;
                match found.as_slice() {
                    [one] => Ok(one.serial.clone()),
                    [] => Err(self.refused(
                        "no such device",
                        format!("no registered device has the common name '{cn}'"),
                    )),
                    many => {
                        let shown: Vec<String> = many
                            .iter()
                            .take(20)
                            .map(|d| format!("{} ({}, {})", d.serial, d.status.as_str(), d.subject))
                            .collect();
                        let more = if many.len() > 20 { ", ..." } else { "" };
                        Err(self
                            .refused(
                                "device is ambiguous",
                                format!(
                                    "{}{} devices have the common name '{cn}': {}{more}",
                                    if many.len() > 20 { "more than " } else { "" },
                                    many.len().min(20),
                                    shown.join("; ")
                                ),
                            )
                            .hint("name it by serial or by its certificate file"))
                    }
                }
            }
        }
    }

    fn unknown(&self, serial: &str) -> Result<Error> {
        unknown(
            &mut *self.store.lookup(),
            &self.label,
            serial,
            &self.err("cannot read device"),
        )
    }

    /// Activates or deactivates a device on `actor`'s behalf (audited); a
    /// revoked one stays revoked.
    pub fn set_status(&mut self, serial: &str, status: Status, actor: &str) -> Result<()> {
        let action = match status {
            Status::Revoked => {
                return self
                    .revoke_device(serial, RevokeReason::default(), actor)
                    .map(drop);
            }
            Status::Active => "activate",
            Status::Inactive => "deactivate",
        };
        let what = "cannot update device";
        let label = self.label.clone();
        let (mut tx, fail) = self.write_tx(what)?;
        if !tx.set_status(serial, status, now()).map_err(&fail)? {
            return Err(match standing(&mut *tx, serial).map_err(&fail)? {
                Standing::Device { .. } => refused(
                    &label,
                    what,
                    format!("device {serial} is revoked, which is permanent"),
                ),
                _ => unknown(&mut *tx, &label, serial, &fail)?,
            });
        }
        super::audit::record(&mut *tx, actor, action, serial).map_err(&fail)?;
        tx.commit().map_err(&fail)
    }

    /// Revokes a device for good: status revoked, and a revocation record
    /// (kept by `delete`) that puts it on its issuer's CRL with `reason`
    /// and makes `auth` refuse it. Returns false when it was revoked already
    /// (the first revocation's time and reason are kept).
    pub fn revoke_device(
        &mut self,
        serial: &str,
        reason: RevokeReason,
        actor: &str,
    ) -> Result<bool> {
        let label = self.label.clone();
        let (mut tx, fail) = self.write_tx("cannot revoke device")?;
        let revoked = match standing(&mut *tx, serial).map_err(&fail)? {
            Standing::Device {
                status: Status::Revoked,
                ..
            }
            | Standing::Revoked { .. } => false,
            Standing::Device { .. } => {
                tx.revoke(serial, reason.as_str(), now()).map_err(&fail)?;
                super::audit::record(&mut *tx, actor, "revoke", serial).map_err(&fail)?;
                true
            }
            _ => return Err(unknown(&mut *tx, &label, serial, &fail)?),
        };
        tx.commit().map_err(&fail)?;
        Ok(revoked)
    }

    /// Removes a device; `auth` registers it again on its next connection
    /// unless it was revoked. A held (inactive) device is removed only with
    /// `force`: deleting it would lift the hold.
    pub fn delete_device(&mut self, serial: &str, force: bool, actor: &str) -> Result<Status> {
        let what = "cannot delete device";
        let label = self.label.clone();
        let (mut tx, fail) = self.write_tx(what)?;
        let status = match standing(&mut *tx, serial).map_err(&fail)? {
            Standing::Device { status, .. } => status,
            _ => return Err(unknown(&mut *tx, &label, serial, &fail)?),
        };
        if status == Status::Inactive && !force {
            return Err(refused(
                    &label,
                    what,
                    format!("device {serial} is inactive: deleted, it would leave the CRL and its next connection would register it again"),
                )
                .hint(format!("to keep it off for good: devcert registry device revoke {serial}; to delete it anyway: --force")));
        }
        tx.delete_device(serial).map_err(&fail)?;
        super::audit::record(&mut *tx, actor, "delete", serial).map_err(&fail)?;
        tx.commit().map_err(&fail)?;
        Ok(status)
    }
}

/// "Not registered", or what is known of a serial that is no device's.
fn unknown(
    reads: &mut dyn Lookup,
    label: &str,
    serial: &str,
    fail: &dyn Fn(StoreError) -> Error,
) -> Result<Error> {
    let held = standing(reads, serial).map_err(fail)?;
    let why = match held {
        Standing::Revoked { reason, .. } => format!(
            "serial {serial} is not registered (it was revoked, {reason}, then deleted; the CRL keeps listing it)"
        ),
        Standing::Ca => format!("serial {serial} is a registered CA's, not a device's"),
        _ => format!("serial {serial} is not registered"),
    };
    Ok(Error::new(ErrorKind::NotFound, "no such device", why).file(label))
}

/// What the registry holds under a serial.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Standing {
    Unknown,
    Device {
        status: Status,
        fingerprint: Vec<u8>,
    },
    /// Revoked and deleted: only the revocation record is left.
    Revoked {
        reason: String,
    },
    /// A registered CA's serial.
    Ca,
}

pub(super) fn standing(reads: &mut dyn Lookup, serial: &str) -> StoreResult<Standing> {
    if let Some(d) = reads.device_row(serial)? {
        return Ok(Standing::Device {
            status: d.status,
            fingerprint: d.fingerprint,
        });
    }
    if let Some(r) = reads.revocation(serial)? {
        return Ok(Standing::Revoked { reason: r.reason });
    }
    if reads.ca_by_serial(serial)?.is_some() {
        return Ok(Standing::Ca);
    }
    Ok(Standing::Unknown)
}

/// Why a certificate cannot take `serial`, which `standing` holds.
pub(super) fn taken_why(standing: &Standing, serial: &str) -> String {
    match standing {
        Standing::Ca => format!(
            "serial {serial} is a registered CA's (serials are unique across CAs and devices)"
        ),
        Standing::Revoked { reason } => {
            format!("serial {serial} was revoked ({reason}); it can never be registered again")
        }
        _ => format!(
            "serial {serial} is already registered for another certificate (serials are unique in the registry)"
        ),
    }
}

/// Registers a certificate `ca` has just issued (and `ca` if needed), then
/// runs `write`, which puts the certificate's files in place. If `write`
/// fails the registration is undone: the registry never lists a
/// certificate nobody holds.
pub fn register_issued(
    db: &str,
    ca: &LoadedCert,
    cert_der: &[u8],
    write: impl FnOnce() -> Result<()>,
) -> Result<()> {
    let mut reg = Registry::open(db)?;
    let (ca_id, _) = reg.ensure_ca(ca)?;
    let cert = issued_cert(cert_der)?;
    reg.add_devices(ca_id, std::slice::from_ref(&cert), None)?;
    write().inspect_err(|_| {
        let _ = reg.forget_device(&CertRow::of(&cert).serial);
    })
}

fn issued_cert(der: &[u8]) -> Result<LoadedCert> {
    let input = crate::input::Input::from_bytes("issued certificate", der.to_vec());
    crate::input::load_certificate(&input, "cannot read issued certificate")
}

/// Registers the certificates of one CA as they stream in (a batch), in
/// one transaction per [`Bulk::CHUNK`] certificates rather than per device.
pub struct Bulk {
    reg: Registry,
    ca_id: i64,
    pending: Vec<LoadedCert>,
}

impl Bulk {
    pub const CHUNK: usize = 256;

    /// Opens the registry and registers `ca` if needed, before any work.
    pub fn new(db: &str, ca: &LoadedCert) -> Result<Bulk> {
        let mut reg = Registry::open(db)?;
        let (ca_id, _) = reg.ensure_ca(ca)?;
        Ok(Bulk {
            reg,
            ca_id,
            pending: Vec::with_capacity(Self::CHUNK),
        })
    }

    pub fn add(&mut self, cert_der: &[u8]) -> Result<()> {
        self.pending.push(issued_cert(cert_der)?);
        if self.pending.len() >= Self::CHUNK {
            self.flush()?;
        }
        Ok(())
    }

    /// Writes what is pending; call it also when the batch failed, so the
    /// devices already on disk are registered.
    pub fn flush(&mut self) -> Result<()> {
        if !self.pending.is_empty() {
            self.reg.add_devices(self.ca_id, &self.pending, None)?;
            self.pending.clear();
        }
        Ok(())
    }
}
