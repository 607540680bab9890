//! `registry export` / `registry import`: the whole registry as JSON Lines,
//! to back it up or move it between SQLite and PostgreSQL, either way.
//!
//! The first line names the format; then every CA (its certificate as PEM,
//! its last CRL number), then every device in registration order, each
//! with its status and times, then every revocation record (they outlive
//! deleted devices), then the audit trail, oldest first (format version
//! 2; version 1 files have none). Import runs in one transaction: a bad line,
//! or a serial already registered with other data, keeps nothing.

use std::collections::HashMap;
use std::io::{BufRead, Write};

use serde::{Deserialize, Serialize};
use sha2::Digest as _;

use super::store::{CaRow, DeviceRow, Revocation, StoreError, Tx};
use super::{Registry, Status, rfc3339};
use crate::error::{Error, ErrorKind, Result};

/// The format's name and version in the header line.
const FORMAT: &str = "devcert-registry";
const FORMAT_VERSION: u32 = 2;
/// Devices read per query while exporting.
const PAGE: u32 = 10_000;

#[derive(Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase", deny_unknown_fields)]
enum Line {
    Header {
        format: String,
        version: u32,
    },
    Ca {
        serial: String,
        subject: String,
        ski: String,
        not_before: String,
        not_after: String,
        registered_at: String,
        crl_number: i64,
        pem: String,
    },
    Device {
        serial: String,
        ca_serial: String,
        subject: String,
        status: Status,
        not_before: String,
        not_after: String,
        registered_at: String,
        deactivated_at: Option<String>,
        /// SHA-256 of the certificate, hex.
        fingerprint: String,
        #[serde(default)]
        first_connected_at: Option<String>,
        #[serde(default)]
        last_connected_at: Option<String>,
    },
    Revocation {
        serial: String,
        ca_serial: String,
        subject: String,
        reason: String,
        revoked_at: String,
    },
    Audit {
        at: String,
        actor: String,
        action: String,
        serial: String,
    },
}

/// How many CAs and devices an export wrote or an import added (`skipped`:
/// already present with the same data, under `--merge`).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Counts {
    pub cas: u64,
    pub devices: u64,
    pub revocations: u64,
    pub audit: u64,
    pub skipped: u64,
}

impl Registry {
    /// Writes the whole registry, from one consistent snapshot, to `out`.
    pub fn export(&mut self, out: &mut dyn Write, out_label: &str) -> Result<Counts> {
        let label = self.label.clone();
        let fail = |e: StoreError| super::fail("cannot export registry", &label, e);
        let io = |e: std::io::Error| Error::io("cannot write export", out_label, &e);
        let mut put = |line: &Line| -> Result<()> {
            let text = serde_json::to_string(line).map_err(|e| {
                Error::new(ErrorKind::Registry, "cannot export registry", e.to_string())
            })?;
            writeln!(out, "{text}").map_err(io)
        };
        let mut tx = self.store.snapshot().map_err(fail)?;
        let mut counts = Counts::default();
        put(&Line::Header {
            format: FORMAT.into(),
            version: FORMAT_VERSION,
        })?;
        let mut ca_serials = HashMap::new();
        for (id, ca) in tx.ca_rows().map_err(fail)? {
            put(&Line::Ca {
                serial: ca.serial.clone(),
                subject: ca.subject,
                ski: ca.ski,
                not_before: rfc3339(ca.not_before),
                not_after: rfc3339(ca.not_after),
                registered_at: rfc3339(ca.registered_at),
                crl_number: ca.crl_number,
                pem: crate::keys::pem_encode("CERTIFICATE", &ca.der),
            })?;
            ca_serials.insert(id, ca.serial);
            counts.cas += 1;
        }
        paged(
            |after| tx.device_rows(after, PAGE).map_err(fail),
            |d| {
                put(&Line::Device {
                    serial: d.serial,
                    ca_serial: ca_serials.get(&d.ca_id).cloned().unwrap_or_default(),
                    subject: d.subject,
                    status: d.status,
                    not_before: rfc3339(d.not_before),
                    not_after: rfc3339(d.not_after),
                    registered_at: rfc3339(d.registered_at),
                    deactivated_at: d.deactivated_at.map(rfc3339),
                    fingerprint: hex(&d.fingerprint),
                    first_connected_at: d.first_connected_at.map(rfc3339),
                    last_connected_at: d.last_connected_at.map(rfc3339),
                })?;
                counts.devices += 1;
                Ok(())
            },
        )?;
        for r in tx.revocations().map_err(fail)? {
            put(&Line::Revocation {
                serial: r.serial,
                ca_serial: ca_serials.get(&r.ca_id).cloned().unwrap_or_default(),
                subject: r.subject,
                reason: r.reason,
                revoked_at: rfc3339(r.revoked_at),
            })?;
            counts.revocations += 1;
        }
        paged(
            |after| tx.audit_rows(after, PAGE).map_err(fail),
            |a| {
                put(&Line::Audit {
                    at: rfc3339(a.at),
                    actor: a.actor,
                    action: a.action,
                    serial: a.serial,
                })?;
                counts.audit += 1;
                Ok(())
            },
        )?;
        tx.commit().map_err(fail)?;
        Ok(counts)
    }

    /// Loads an export into this registry, all or nothing. Without `merge`
    /// the registry must be empty; with it, what is already there with the
    /// same data is skipped, and a serial there with other data is refused.
    pub fn import(
        &mut self,
        input: &mut dyn BufRead,
        in_label: &str,
        merge: bool,
    ) -> Result<Counts> {
        let what = "cannot import registry";
        let label = self.label.clone();
        let fail = |e: StoreError| super::fail(what, &label, e);
        let mut tx = self.store.write().map_err(fail)?;
        if !merge && !tx.is_empty().map_err(fail)? {
            return Err(Error::refused(what, "the registry is not empty")
                .file(&label)
                .hint("import into an empty registry, or add --merge to add to this one"));
        }
        let mut counts = Counts::default();
        let mut ca_ids: HashMap<String, i64> = HashMap::new();
        // Device rows go in many at a time; each keeps its line number.
        let mut pending: Vec<(usize, DeviceRow)> = Vec::new();
        let mut text = String::new();
        let mut n = 0usize;
        loop {
            text.clear();
            let read = input
                .read_line(&mut text)
                .map_err(|e| Error::io(what, in_label, &e))?;
            if read == 0 || pending.len() >= PENDING {
                add_pending(&mut *tx, &mut pending, &mut counts, in_label, &fail)?;
            }
            if read == 0 {
                break;
            }
            n += 1;
            let at = format!("{in_label}:{n}");
            let bad = |why: String| Error::parse(what, why).file(&at);
            if text.trim().is_empty() {
                continue;
            }
            let line: Line = serde_json::from_str(&text)
                .map_err(|e| bad(format!("not a registry export line ({e})")))?;
            if !matches!(line, Line::Device { .. }) {
                // CAs and revocations claim serials too: the devices read
                // before them go in first.
                add_pending(&mut *tx, &mut pending, &mut counts, in_label, &fail)?;
            }
            match line {
                Line::Header { format, version } => {
                    if n != 1 || format != FORMAT {
                        return Err(bad("misplaced or foreign header".into()));
                    }
                    if version > FORMAT_VERSION {
                        return Err(bad(format!(
                            "export format version {version} is newer than this devcert's ({FORMAT_VERSION})"
                        ))
                        .hint("upgrade devcert"));
                    }
                }
                _ if n == 1 => {
                    return Err(bad(format!("the first line is not a {FORMAT} header")));
                }

                Line::Ca {
                    serial,
                    subject,
                    ski,
                    not_before,
                    not_after,
                    registered_at,
                    crl_number,
                    pem,
                } => {
                    let der = pem::parse(&pem)
                        .ok()
                        .filter(|p| p.tag() == "CERTIFICATE")
                        .map(pem::Pem::into_contents)
                        .ok_or_else(|| bad(format!("CA {serial}: pem is not a PEM certificate")))?;
                    let row = CaRow {
                        subject,
                        ski,
                        not_before: unix(&not_before).map_err(&bad)?,
                        not_after: unix(&not_after).map_err(&bad)?,
                        registered_at: unix(&registered_at).map_err(&bad)?,
                        fingerprint: sha2::Sha256::digest(&der).to_vec(),
                        der,
                        crl_number,
                        serial,
                    };
                    let id = match tx.insert_ca(&row).map_err(fail)? {
                        Some(id) => {
                            counts.cas += 1;
                            id
                        }
                        None => match tx.ca_by_serial(&row.serial).map_err(fail)? {
                            Some((id, fp)) if fp == row.fingerprint => {
                                tx.raise_crl_number(id, crl_number).map_err(fail)?;
                                counts.skipped += 1;
                                id
                            }
                            _ => {
                                return Err(bad(format!(
                                    "CA {} is already registered with another certificate",
                                    row.serial
                                )));
                            }
                        },
                    };
                    ca_ids.insert(row.serial, id);
                }
                Line::Device {
                    serial,
                    ca_serial,
                    subject,
                    status,
                    not_before,
                    not_after,
                    registered_at,
                    deactivated_at,
                    fingerprint,
                    first_connected_at,
                    last_connected_at,
                } => {
                    let ca_id = ca_of(&mut *tx, &ca_ids, &ca_serial)
                        .map_err(fail)?
                        .ok_or_else(|| {
                            bad(format!("device {serial}: {}", unknown_ca(&ca_serial)))
                        })?;
                    let row = DeviceRow {
                        ca_id,
                        cn: crate::name::common_name_of_rfc4514(&subject),
                        subject,
                        status,
                        not_before: unix(&not_before).map_err(&bad)?,
                        not_after: unix(&not_after).map_err(&bad)?,
                        registered_at: unix(&registered_at).map_err(&bad)?,
                        deactivated_at: optional_unix(&deactivated_at).map_err(&bad)?,
                        first_connected_at: optional_unix(&first_connected_at).map_err(&bad)?,
                        last_connected_at: optional_unix(&last_connected_at).map_err(&bad)?,
                        fingerprint: unhex(&fingerprint).ok_or_else(|| {
                            bad(format!("device {serial}: fingerprint is not SHA-256 hex"))
                        })?,
                        serial,
                    };
                    pending.push((n, row));
                }
                Line::Revocation {
                    serial,
                    ca_serial,
                    subject,
                    reason,
                    revoked_at,
                } => {
                    let ca_id = ca_of(&mut *tx, &ca_ids, &ca_serial)
                        .map_err(fail)?
                        .ok_or_else(|| {
                            bad(format!("revocation {serial}: {}", unknown_ca(&ca_serial)))
                        })?;
                    reason
                        .parse::<super::RevokeReason>()
                        .map_err(|e| bad(format!("revocation {serial}: {e}")))?;
                    let row = Revocation {
                        serial,
                        ca_id,
                        subject,
                        reason,
                        revoked_at: unix(&revoked_at).map_err(&bad)?,
                    };
                    if tx.insert_revocation(&row).map_err(fail)? {
                        counts.revocations += 1;
                    } else if tx.revocation(&row.serial).map_err(fail)?.as_ref() == Some(&row) {
                        counts.skipped += 1;
                    } else {
                        return Err(bad(format!(
                            "serial {} is already revoked with other data",
                            row.serial
                        )));
                    }
                }
                Line::Audit {
                    at,
                    actor,
                    action,
                    serial,
                } => {
                    let row = super::store::AuditRow {
                        at: unix(&at).map_err(&bad)?,
                        actor,
                        action,
                        serial,
                    };
                    // The same export merged twice keeps one trail.
                    if merge && tx.has_audit(&row).map_err(fail)? {
                        counts.skipped += 1;
                    } else {
                        tx.audit(&row).map_err(fail)?;
                        counts.audit += 1;
                    }
                }
            }
        }
        if n == 0 {
            return Err(Error::parse(what, "the file is empty").file(in_label));
        }
        tx.commit().map_err(fail)?;
        Ok(counts)
    }
}

/// Calls `each` with every row `fetch(after_id)` returns, page by page
/// in id order (keyset paging: memory stays one page).
fn paged<T>(
    mut fetch: impl FnMut(i64) -> Result<Vec<(i64, T)>>,
    mut each: impl FnMut(T) -> Result<()>,
) -> Result<()> {
    let mut after = 0;
    loop {
        let page = fetch(after)?;
        let Some((last, _)) = page.last() else {
            return Ok(());
        };
        after = *last;
        page.into_iter().try_for_each(|(_, row)| each(row))?;
    }
}

/// Device rows read per multi-row insert.
const PENDING: usize = 10_000;

/// Inserts the device rows read so far (emptying `pending`): a row whose
/// serial is taken must be the very same row (`--merge`), else the import
/// fails naming its line.
fn add_pending(
    tx: &mut dyn Tx,
    pending: &mut Vec<(usize, DeviceRow)>,
    counts: &mut Counts,
    in_label: &str,
    fail: &dyn Fn(StoreError) -> Error,
) -> Result<()> {
    let (lines, rows): (Vec<usize>, Vec<DeviceRow>) = std::mem::take(pending).into_iter().unzip();
    let inserted = tx.insert_devices(&rows).map_err(fail)?;
    for ((n, row), new) in lines.into_iter().zip(&rows).zip(inserted) {
        if new {
            counts.devices += 1;
        } else if tx.device_row(&row.serial).map_err(fail)?.as_ref() == Some(row) {
            counts.skipped += 1;
        } else {
            return Err(Error::parse(
                "cannot import registry",
                format!(
                    "serial {} is already registered with other data (serials are unique in the registry)",
                    row.serial
                ),
            )
            .file(&format!("{in_label}:{n}")));
        }
    }
    Ok(())
}

/// The id of the CA with `serial`: one the file registered before, else
/// one the registry holds (`--merge`).
fn ca_of(
    tx: &mut dyn super::store::Tx,
    in_file: &HashMap<String, i64>,
    serial: &str,
) -> super::store::StoreResult<Option<i64>> {
    match in_file.get(serial) {
        Some(&id) => Ok(Some(id)),
        None => Ok(tx.ca_by_serial(serial)?.map(|(id, _)| id)),
    }
}

fn unknown_ca(serial: &str) -> String {
    format!("its CA {serial} is neither in the file before it nor registered")
}

fn unix(s: &str) -> std::result::Result<i64, String> {
    time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
        .map(|t| t.unix_timestamp())
        .map_err(|_| format!("'{s}' is not an RFC 3339 time"))
}

fn optional_unix(s: &Option<String>) -> std::result::Result<Option<i64>, String> {
    s.as_deref().map(unix).transpose()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if s.len() != 64 {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_round_trip_and_unknown_fields_are_refused() {
        let l = Line::Device {
            serial: "0A".into(),
            ca_serial: "01".into(),
            subject: "CN=d".into(),
            status: Status::Inactive,
            not_before: "2026-01-01T00:00:00Z".into(),
            not_after: "2027-01-01T00:00:00Z".into(),
            registered_at: "2026-01-02T00:00:00Z".into(),
            deactivated_at: None,
            fingerprint: "00".repeat(32),
            first_connected_at: None,
            last_connected_at: Some("2026-01-03T00:00:00Z".into()),
        };
        let text = serde_json::to_string(&l).unwrap();
        assert!(
            text.starts_with(r#"{"type":"device","serial":"0A""#),
            "{text}"
        );
        assert!(text.contains(r#""status":"inactive""#));
        let back: Line = serde_json::from_str(&text).unwrap();
        assert!(matches!(
            back,
            Line::Device {
                status: Status::Inactive,
                ..
            }
        ));
        let extra = text.replace(r#""type":"device","#, r#""type":"device","x":1,"#);
        assert!(serde_json::from_str::<Line>(&extra).is_err());
    }

    #[test]
    fn times_and_hex() {
        assert_eq!(unix("1970-01-01T00:01:40Z"), Ok(100));
        assert_eq!(
            rfc3339(unix("2026-12-04T01:02:03Z").unwrap()),
            "2026-12-04T01:02:03Z"
        );
        assert!(unix("yesterday").is_err());
        let fp: Vec<u8> = (0..32).collect();
        assert_eq!(unhex(&hex(&fp)), Some(fp));
        assert_eq!(unhex("zz"), None);
    }
}
