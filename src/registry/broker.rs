//! The registry as the Mosquitto plugin uses it: one long-lived connection,
//! the CAs parsed once ([`Trust`]), a decision per CONNECT in microseconds
//! (the broker is single-threaded: its cost is every client's latency),
//! connection times written in batches, and the devices still connected
//! re-checked every `poll` so a deactivation disconnects them.
//!
//! Ordinary Rust: the plugin crate's `extern "C"` shim hands each broker
//! event here and turns the answers into Mosquitto calls and log lines.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant, SystemTime};

use super::Registry;
use super::auth::{Decision, Trust, decide};
use crate::error::{Error, ErrorKind, Result};
use crate::input::{Input, load_certificate};
use crate::sign::serial_hex;

/// The plugin's `plugin_opt_*` settings, checked once at load.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    /// A registry file (or, where supported, a database URL).
    pub registry: String,
    /// How often connected devices are re-checked.
    pub poll: Duration,
    /// How long a decision waits for another process's lock.
    pub busy: Duration,
}

impl Options {
    /// From the `plugin_opt_KEY VALUE` pairs (KEY without the prefix). An
    /// unknown key or a bad value is refused, naming it: a typo must stop
    /// the broker at start, not leave a setting silently at its default.
    pub fn parse<'a>(
        pairs: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<Options, String> {
        let (mut registry, mut poll, mut busy) = (None, 1000, 200);
        let ms = |key: &str, v: &str, range: std::ops::RangeInclusive<u64>| {
            v.trim()
                .parse::<u64>()
                .ok()
                .filter(|n| range.contains(n))
                .ok_or_else(|| {
                    format!(
                        "plugin_opt_{key} '{v}' is not a number of milliseconds from {} to {}",
                        range.start(),
                        range.end()
                    )
                })
        };
        for (key, value) in pairs {
            match key {
                "registry" if value.trim().is_empty() => {
                    return Err("plugin_opt_registry is empty".into());
                }
                "registry" => registry = Some(value.trim().to_string()),
                "poll_ms" => poll = ms(key, value, 100..=60_000)?,
                "busy_ms" => busy = ms(key, value, 0..=5_000)?,
                _ => {
                    return Err(format!(
                        "unknown option plugin_opt_{key} (known: registry, poll_ms, busy_ms)"
                    ));
                }
            }
        }
        let registry = registry
            .ok_or("plugin_opt_registry is missing: name the registry database (a file path)")?;
        Ok(Options {
            registry,
            poll: Duration::from_millis(poll),
            busy: Duration::from_millis(busy),
        })
    }
}

/// What the broker does with a connecting client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Accept,
    Refuse,
    /// No client certificate: not a device; Mosquitto's own rules decide
    /// (a listener without `require_certificate`).
    Defer,
}

/// One decision, as the broker logs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    pub outcome: Outcome,
    /// The certificate's serial (the client's MQTT username once accepted).
    pub serial: Option<String>,
    pub reason: String,
}

/// A device to disconnect: the registry refuses it now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Kick {
    pub serial: String,
    pub client_ids: Vec<String>,
    pub reason: String,
}

/// What a tick did: devices to disconnect, and a registry problem to log
/// (only when it differs from the last one logged).
#[derive(Debug, Default)]
pub struct TickReport {
    pub kicks: Vec<Kick>,
    pub problem: Option<String>,
}

struct Connected {
    serial: String,
    fingerprint: Vec<u8>,
    client_id: String,
}

/// The open registry and what identifies the file it was opened from.
struct Live {
    reg: Registry,
    trust: Trust,
    file: Option<FileStamp>,
    /// The registry's change counter at the last re-check.
    checked: Option<i64>,
}

/// Identity and last change of the registry file. An open SQLite file
/// keeps serving a file that was removed, replaced or made unreadable;
/// comparing this before each decision notices and reopens instead.
#[derive(Debug, Clone, PartialEq, Eq)]
struct FileStamp {
    dev: u64,
    ino: u64,
    size: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
}

impl FileStamp {
    /// `None` for a database URL (nothing on disk to watch).
    fn of(registry: &str) -> Result<Option<FileStamp>> {
        use std::os::unix::fs::MetadataExt as _;
        if registry.contains("://") {
            return Ok(None);
        }
        let m = std::fs::metadata(registry)
            .map_err(|e| Error::io("cannot open registry", registry, &e))?;
        Ok(Some(FileStamp {
            dev: m.dev(),
            ino: m.ino(),
            size: m.size(),
            mtime: (m.mtime(), m.mtime_nsec()),
            ctime: (m.ctime(), m.ctime_nsec()),
        }))
    }
}

/// The plugin's state between broker events.
pub struct Session {
    opts: Options,
    live: Option<Live>,
    /// By the broker's client handle.
    connected: HashMap<usize, Connected>,
    /// Connected devices the registry refuses now (kicked once: a client
    /// that outlives its kick is not reported again).
    refused: HashSet<String>,
    /// Connection times not yet written: serial → unix seconds.
    pending: HashMap<String, i64>,
    next_poll: Instant,
    last_problem: Option<String>,
}

impl Session {
    /// Ready at once: the registry is opened at the first connect (and
    /// reopened whenever it changed on disk or failed), so a registry that
    /// is missing at start refuses devices instead of stopping the broker.
    pub fn new(opts: Options) -> Session {
        Session {
            next_poll: Instant::now() + opts.poll,
            opts,
            live: None,
            connected: HashMap::new(),
            refused: HashSet::new(),
            pending: HashMap::new(),
            last_problem: None,
        }
    }

    pub fn options(&self) -> &Options {
        &self.opts
    }

    /// Opens the registry if needed; a probe at load time for the log.
    pub fn check_registry(&mut self) -> Result<()> {
        self.live().map(|_| ())
    }

    /// The open registry with current CAs, reopened when its file changed.
    fn live(&mut self) -> Result<&mut Live> {
        let file = FileStamp::of(&self.opts.registry);
        let file = match file {
            Ok(f) => f,
            Err(e) => {
                self.live = None;
                return Err(e);
            }
        };
        if self.live.as_ref().is_some_and(|l| l.file != file) {
            self.live = None;
        }
        match self.live.take() {
            Some(mut l) => {
                l.trust.refresh(&l.reg)?;
                Ok(self.live.insert(l))
            }
            None => {
                let reg = Registry::open_existing_waiting(&self.opts.registry, self.opts.busy)?;
                let trust = Trust::load(&reg)?;
                // Opening may itself touch the file (WAL set-up, migration).
                let file = FileStamp::of(&self.opts.registry)?;
                Ok(self.live.insert(Live {
                    reg,
                    trust,
                    file,
                    checked: None,
                }))
            }
        }
    }

    /// BASIC_AUTH: decides on the client's certificate (DER, as the broker
    /// verified it against its cafile), exactly as `registry auth` does.
    pub fn connect(
        &mut self,
        client: usize,
        client_id: &str,
        cert_der: Option<&[u8]>,
        at: SystemTime,
    ) -> Verdict {
        let Some(der) = cert_der else {
            return Verdict {
                outcome: Outcome::Defer,
                serial: None,
                reason: "no client certificate: left to Mosquitto's own authentication".into(),
            };
        };
        let input = Input::from_bytes("client certificate", der.to_vec());
        let leaf = match load_certificate(&input, "cannot read client certificate") {
            Ok(c) => c,
            Err(e) => {
                return Verdict {
                    outcome: Outcome::Refuse,
                    serial: None,
                    reason: e.to_string(),
                };
            }
        };
        let serial = serial_hex(leaf.cert.tbs_certificate().serial_number());
        let refuse = |reason: String| Verdict {
            outcome: Outcome::Refuse,
            serial: Some(serial.clone()),
            reason,
        };
        let decision = self
            .live()
            .and_then(|l| decide(&mut l.reg, &mut l.trust, std::slice::from_ref(&leaf), at));
        match decision {
            Ok(Decision::Accepted { serial, registered }) => {
                let secs = super::unix(at);
                self.pending.insert(serial.clone(), secs);
                self.refused.remove(&serial);
                self.connected.insert(
                    client,
                    Connected {
                        serial: serial.clone(),
                        fingerprint: super::CertRow::of(&leaf).fingerprint,
                        client_id: client_id.to_string(),
                    },
                );
                let reason = if registered {
                    "unknown device of a registered CA: registered as active"
                } else {
                    "device is active"
                };
                Verdict {
                    outcome: Outcome::Accept,
                    serial: Some(serial),
                    reason: reason.into(),
                }
            }
            Ok(Decision::Refused(why)) => refuse(why),
            Err(e) => {
                // Fail closed; reopen from scratch at the next event.
                self.live = None;
                refuse(format!("registry unavailable: {e}"))
            }
        }
    }

    /// DISCONNECT: forgets the client.
    pub fn disconnect(&mut self, client: usize) {
        if let Some(c) = self.connected.remove(&client)
            && !self.connected.values().any(|o| o.serial == c.serial)
        {
            self.refused.remove(&c.serial);
        }
    }

    /// TICK (about every 100 ms): every `poll`, writes pending connection
    /// times and re-checks the connected devices if the registry changed.
    pub fn tick(&mut self, now: Instant) -> TickReport {
        let mut report = TickReport::default();
        if now < self.next_poll {
            return report;
        }
        self.next_poll = now + self.opts.poll;
        let result = self.flush().and_then(|()| self.recheck());
        match result {
            Ok(kicks) => {
                report.kicks = kicks;
                self.last_problem = None;
            }
            Err(e) => {
                let problem = e.to_string();
                if self.last_problem.as_ref() != Some(&problem) {
                    report.problem = Some(problem.clone());
                }
                self.last_problem = Some(problem);
            }
        }
        report
    }

    /// Writes the pending connection times (kept for the next try on failure).
    pub fn flush(&mut self) -> Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let seen: Vec<(String, i64)> = self.pending.iter().map(|(s, &t)| (s.clone(), t)).collect();
        let r = self.live().and_then(|l| l.reg.record_connections(&seen));
        if r.is_ok() {
            self.pending.clear();
        }
        r.map_err(|e| {
            Error::new(
                ErrorKind::Registry,
                "cannot record connection times",
                e.to_string(),
            )
        })
    }

    /// The connected devices the registry refuses now that were not refused
    /// before: to be disconnected.
    fn recheck(&mut self) -> Result<Vec<Kick>> {
        if self.connected.is_empty() {
            return Ok(Vec::new());
        }
        let mut devices: Vec<(String, Vec<u8>)> = self
            .connected
            .values()
            .map(|c| (c.serial.clone(), c.fingerprint.clone()))
            .collect();
        devices.sort();
        devices.dedup();
        let live = self.live()?;
        // Only another process's commit can change a device's status.
        let version = live.reg.change_counter()?;
        if live.checked == Some(version) {
            return Ok(Vec::new());
        }
        let refusals = live.reg.refusals(&devices)?;
        live.checked = Some(version);
        let mut kicks = Vec::new();
        for (serial, reason) in refusals {
            if self.refused.insert(serial.clone()) {
                let client_ids = self
                    .connected
                    .values()
                    .filter(|c| c.serial == serial)
                    .map(|c| c.client_id.clone())
                    .collect();
                kicks.push(Kick {
                    serial,
                    client_ids,
                    reason,
                });
            }
        }
        Ok(kicks)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_are_checked_once_naming_the_bad_one() {
        let o = Options::parse([("registry", "/var/lib/devcert/r.db")]).unwrap();
        assert_eq!(o.poll, Duration::from_millis(1000));
        assert_eq!(o.busy, Duration::from_millis(200));
        let o =
            Options::parse([("registry", "r.db"), ("poll_ms", "250"), ("busy_ms", "0")]).unwrap();
        assert_eq!((o.poll.as_millis(), o.busy.as_millis()), (250, 0));
        let e = Options::parse([]).unwrap_err();
        assert!(e.contains("plugin_opt_registry is missing"), "{e}");
        let e = Options::parse([("registry", " ")]).unwrap_err();
        assert!(e.contains("empty"), "{e}");
        for (k, v) in [
            ("poll_ms", "abc"),
            ("poll_ms", "0"),
            ("busy_ms", "-1"),
            ("busy_ms", "99999"),
        ] {
            let e = Options::parse([("registry", "r.db"), (k, v)]).unwrap_err();
            assert!(e.contains(k) && e.contains(v), "{e}");
        }
        let e = Options::parse([("registry", "r.db"), ("pol_ms", "5")]).unwrap_err();
        assert!(e.contains("unknown option plugin_opt_pol_ms"), "{e}");
    }

    #[test]
    fn a_missing_registry_refuses_and_a_client_without_certificate_is_deferred() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("none.db").display().to_string();
        let mut s = Session::new(Options::parse([("registry", path.as_str())]).unwrap());
        let v = s.connect(1, "c", None, SystemTime::now());
        assert_eq!(v.outcome, Outcome::Defer);
        let v = s.connect(1, "c", Some(b"garbage"), SystemTime::now());
        assert_eq!(v.outcome, Outcome::Refuse);
        assert!(
            v.reason.contains("cannot read client certificate"),
            "{}",
            v.reason
        );
        assert!(s.check_registry().is_err());
        assert!(
            !std::path::Path::new(&path).exists(),
            "a missing registry is not created"
        );
    }
}
