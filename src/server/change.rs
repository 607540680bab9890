//! The changes a person or script may make to a device, named as in the
//! URL (`/devices/SN/deactivate`, `/api/devices/SN/revoke`), applied through
//! the registry's own methods (which audit them).

use crate::error::{Error, ErrorKind, Result};
use crate::registry::{Registry, RevokeReason, Status};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    Activate,
    Deactivate,
    /// Permanent; the reason goes into the CRL.
    Revoke(RevokeReason),
    /// `force`: delete an inactive device too (lifting its hold).
    Delete {
        force: bool,
    },
}

impl Change {
    /// The change an action name and its options ask for.
    pub fn parse(action: &str, reason: Option<&str>, force: bool) -> Result<Change> {
        let reason = || -> Result<RevokeReason> {
            reason
                .filter(|r| !r.is_empty())
                .map(|r| {
                    r.parse()
                        .map_err(|why: String| Error::parse("bad reason", why))
                })
                .unwrap_or(Ok(RevokeReason::default()))
        };
        Ok(match action {
            "activate" => Change::Activate,
            "deactivate" => Change::Deactivate,
            "revoke" => Change::Revoke(reason()?),
            "delete" => Change::Delete { force },
            _ => {
                return Err(Error::new(
                    ErrorKind::NotFound,
                    "no such action",
                    format!("'{action}' is not one of activate, deactivate, revoke, delete"),
                ));
            }
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Change::Activate => "activate",
            Change::Deactivate => "deactivate",
            Change::Revoke(_) => "revoke",
            Change::Delete { .. } => "delete",
        }
    }

    /// What it does, for the confirmation page.
    pub fn effect(self) -> &'static str {
        match self {
            Change::Activate => "The device may connect again (and leaves the next CRL).",
            Change::Deactivate => {
                "The broker refuses the device's next connection (certificateHold in the next CRL). It can be activated again."
            }
            Change::Revoke(_) => {
                "Permanent: the device is refused for good and listed in every CRL with the reason, even after a delete."
            }
            Change::Delete { .. } => {
                "The device is forgotten; its next connection registers it again as active (a revoked device stays refused)."
            }
        }
    }

    /// Applies it on `actor`'s behalf (the registry audits it).
    pub fn apply(self, reg: &mut Registry, serial: &str, actor: &str) -> Result<()> {
        match self {
            Change::Activate => reg.set_status(serial, Status::Active, actor),
            Change::Deactivate => reg.set_status(serial, Status::Inactive, actor),
            Change::Revoke(reason) => reg.revoke_device(serial, reason, actor).map(drop),
            Change::Delete { force } => reg.delete_device(serial, force, actor).map(drop),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn actions_and_options() {
        assert_eq!(
            Change::parse("activate", None, false).unwrap(),
            Change::Activate
        );
        assert_eq!(
            Change::parse("revoke", Some("superseded"), false).unwrap(),
            Change::Revoke(RevokeReason::Superseded)
        );
        assert_eq!(
            Change::parse("revoke", None, false).unwrap(),
            Change::Revoke(RevokeReason::KeyCompromise)
        );
        assert_eq!(
            Change::parse("revoke", Some("bogus"), false)
                .unwrap_err()
                .kind,
            ErrorKind::Parse
        );
        assert_eq!(
            Change::parse("delete", None, true).unwrap(),
            Change::Delete { force: true }
        );
        assert_eq!(
            Change::parse("explode", None, false).unwrap_err().kind,
            ErrorKind::NotFound
        );
    }
}
