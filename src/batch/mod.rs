//! A fleet: one `issue` per device, in parallel, re-runnable, durable.
//!
//! Devices go into `DIR/<CN>/`, each folder appearing whole (see
//! `device.rs`). Durability is a group commit: workers make devices and
//! write them into temp folders; the committing thread takes them in
//! chunks and, per chunk, syncs the filesystem (`syncfs`: every file of
//! the chunk at once), renames the folders into place, syncs again (the
//! renames), and only then records the chunk: manifest rows, registry
//! rows, progress. A device reported complete is on stable storage; a
//! kill at any point leaves temp folders (removed by the next run) or
//! complete devices (skipped by it), never a device folder a re-run takes
//! for complete when it is not. The manifest lists every complete device
//! in the folder and is written, durably, once at the end.

mod device;
mod manifest;
mod names;

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use der::Decode;
use x509_cert::Certificate;

use crate::error::{Error, ErrorKind, Result};
use crate::issue::{DeviceSpec, make_device};
use crate::output::{
    Staged, create_folders, parents_of, place_all, stage, stop_here, sync_folders, syncfs,
};
use crate::registry::Bulk;
use crate::sign::CaSigner;
use crate::template::SubjectTemplate;

pub use device::complete_device;
use device::{Found, NewFolder, look, not_a_device, sweep};
pub use manifest::{CSV_HEADER, CsvOut, ManifestRow, csv_field, fingerprint, manifest_path};
use manifest::{Manifest, refuse_foreign_manifests};
pub use names::{DEFAULT_WIDTH, DeviceNames, check_folder_name};

/// Devices per group commit, at most: a chunk is committed when it holds
/// this many devices or its first device has waited [`CHUNK_WAIT`].
/// Measured on ext4 (docs/performance.md): larger chunks gain little, and
/// a chunk's devices wait this long for the disk at most.
const CHUNK: usize = 1024;
const CHUNK_WAIT: Duration = Duration::from_millis(500);
/// Devices a worker claims at a time: one wake-up of the committer per run
/// of devices rather than per device (7% of the time went to futex calls).
const CLAIM: usize = 16;
/// A run of devices is sent early once it took this long to make.
const SEND_AFTER: Duration = Duration::from_millis(20);

/// One batch: what to make, where, and how.
pub struct Batch<'a> {
    pub ca: &'a CaSigner,
    pub names: &'a DeviceNames,
    pub template: &'a SubjectTemplate,
    /// Everything but the subject, which comes from the template.
    pub spec: DeviceSpec<'a>,
    pub out_dir: &'a Path,
    pub jobs: usize,
    /// Redo device folders that are not complete devices (a link or file
    /// there is replaced, never followed); replace manifests devcert did
    /// not write.
    pub force: bool,
    pub csv: Option<CsvOut>,
    /// Register every device (and the CA if new) in this registry.
    pub registry: Option<&'a str>,
}

/// What a batch did.
#[derive(Debug, Default, Clone)]
pub struct BatchReport {
    /// Devices asked for.
    pub devices: usize,
    pub issued: usize,
    pub skipped: usize,
    /// Complete devices of earlier runs in the folder that this run was not
    /// asked for; listed in the manifest too.
    pub earlier: usize,
    /// The first device (in order) that got warnings, and those warnings:
    /// the CA, profile and validity are shared, so the others get the same.
    pub warnings: Option<(String, Vec<String>)>,
    /// How many issued devices got warnings.
    pub warned: usize,
    pub manifest: PathBuf,
}

/// What a worker made of one entry: its index, what it is, and for an
/// issued device how its files reach their folder.
type Made = (usize, Outcome, Option<Write>);

enum Outcome {
    Issued {
        row: ManifestRow,
        der: Vec<u8>,
        warnings: Vec<String>,
    },
    /// Asked for and already complete.
    Skipped { row: ManifestRow, der: Vec<u8> },
    /// A complete device of an earlier run, not asked for.
    Earlier(ManifestRow),
    /// An entry of the folder that is not a complete device: not listed.
    Nothing,
}

/// How an issued device's files reach their folder.
enum Write {
    /// A new folder, renamed into place.
    Folder(NewFolder),
    /// Five files renamed into an existing folder (`--force`).
    InPlace(Vec<Staged>),
}

impl Batch<'_> {
    /// Runs the batch. `progress(done, total)` is called as devices are
    /// recorded complete.
    pub fn run(&self, progress: &(dyn Fn(usize, usize) + Sync)) -> Result<BatchReport> {
        let manifest_target = manifest_path(self.out_dir);
        let mut own = vec!["manifest.json".to_string()];
        if let Some(CsvOut::File(p)) = &self.csv
            && let Some(name) = p.file_name().filter(|_| same_folder(p, self.out_dir))
        {
            own.push(name.to_string_lossy().into_owned());
        }
        self.names
            .refuse_own_files(&own.iter().map(String::as_str).collect::<Vec<_>>())?;
        refuse_foreign_manifests(&manifest_target, self.csv.as_ref(), self.force)?;
        // Opened before any device is made, so a bad database costs nothing.
        let registry = self
            .registry
            .map(|db| Bulk::new(db, &self.ca.cert))
            .transpose()?;
        let label = self.out_dir.display().to_string();
        create_folders(self.out_dir)
            .and_then(|c| sync_folders(parents_of(&c)))
            .map_err(|e| Error::io("cannot create output folder", &label, &e))?;
        let _lock = lock_out_dir(self.out_dir)?;
        let out_fd = File::open(self.out_dir)
            .map_err(|e| Error::io("cannot open output folder", &label, &e))?;
        // Under the lock: a killed run's temp files go; complete devices
        // of earlier runs are listed in the manifest too.
        let mut earlier = Vec::new();
        let mut fresh = true;
        sweep(self.out_dir, |name, is_dir| {
            if self.names.contains(name) {
                fresh = false;
            } else if is_dir && check_folder_name(name).is_ok() {
                earlier.push(name.to_string());
            }
        });
        earlier.sort();
        let mut manifest = Manifest::open(&manifest_target, self.out_dir, self.csv.as_ref())?;
        let mut sink = Sink {
            manifest: &mut manifest,
            registry,
            report: BatchReport {
                devices: self.names.len(),
                manifest: manifest_target.clone(),
                ..BatchReport::default()
            },
            pending: std::collections::BTreeMap::new(),
            next: 0,
            total: self.names.len() + earlier.len(),
            progress,
        };
        let result = self.pipeline(&earlier, fresh, &out_fd, &mut sink);
        // Register what is on disk even when the batch failed part-way.
        let flushed = sink.finish(result.is_err());
        result.and(flushed)?;
        let report = sink.report;
        manifest.commit()?;
        Ok(report)
    }

    /// Entry `i` of the manifest: the earlier devices (sorted) that sort
    /// before this run's first device, this run's devices in order, then
    /// the other earlier ones; a fleet grown with `--start` stays in order.
    /// `before`: how many earlier devices sort before this run's first.
    fn entry(&self, i: usize, earlier: &[String], before: usize) -> (String, bool) {
        match i.checked_sub(before) {
            None => (earlier[i].clone(), false),
            Some(j) if j < self.names.len() => (self.names.get(j).into_owned(), true),
            Some(j) => (earlier[before + j - self.names.len()].clone(), false),
        }
    }

    /// `fresh`: none of this run's devices had an entry in the folder when
    /// it was locked, so none needs looking at (a new one is placed with a
    /// no-replace rename in any case).
    fn pipeline(
        &self,
        earlier: &[String],
        fresh: bool,
        out_fd: &File,
        sink: &mut Sink,
    ) -> Result<()> {
        let total = self.names.len() + earlier.len();
        let first = self.names.get(0);
        let before = earlier.partition_point(|e| e.as_str() < first.as_ref());
        let next = AtomicUsize::new(0);
        let failed = Mutex::new(None::<Error>);
        let fail = |e: Error| {
            if let Ok(mut f) = failed.lock() {
                f.get_or_insert(e);
            }
        };
        let failed_yet = || failed.lock().map(|f| f.is_some()).unwrap_or(true);
        // Room for about two chunks in flight: workers keep making devices
        // while the committer waits for the disk.
        let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<Made>>(2 * CHUNK / CLAIM);
        std::thread::scope(|scope| {
            for _ in 0..self.jobs.max(1) {
                let tx = tx.clone();
                let (next, fail, failed_yet) = (&next, &fail, &failed_yet);
                scope.spawn(move || {
                    loop {
                        let start = next.fetch_add(CLAIM, Ordering::Relaxed);
                        let end = total.min(start.saturating_add(CLAIM));
                        if start >= end || failed_yet() {
                            break;
                        }
                        let mut run = Vec::with_capacity(CLAIM);
                        let mut since = Instant::now();
                        for i in start..end {
                            let (cn, asked) = self.entry(i, earlier, before);
                            match self.device(&cn, asked, fresh) {
                                Ok((outcome, write)) => run.push((i, outcome, write)),
                                Err(e) => {
                                    fail(e);
                                    break;
                                }
                            }
                            // Slow devices (RSA) go to the committer one by
                            // one rather than waiting for the whole run.
                            if since.elapsed() >= SEND_AFTER && i + 1 < end {
                                if tx.send(std::mem::take(&mut run)).is_err() {
                                    return;
                                }
                                since = Instant::now();
                            }
                        }
                        if tx.send(run).is_err() || failed_yet() {
                            break;
                        }
                    }
                });
            }
            drop(tx);
            // The committer: group commit, chunk by chunk. Returning drops
            // `rx`, so workers blocked on a full channel stop too.
            let mut commit = move || -> Result<()> {
                let mut chunk: Vec<Made> = Vec::with_capacity(CHUNK + CLAIM);
                let mut opened = Instant::now();
                loop {
                    let wait = CHUNK_WAIT.saturating_sub(opened.elapsed());
                    let done = match rx.recv_timeout(wait) {
                        Ok(run) => {
                            if chunk.is_empty() {
                                opened = Instant::now();
                            }
                            chunk.extend(run);
                            false
                        }
                        Err(std::sync::mpsc::RecvTimeoutError::Timeout) => false,
                        Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => true,
                    };
                    let due = chunk.len() >= CHUNK || opened.elapsed() >= CHUNK_WAIT;
                    if !chunk.is_empty() && (due || done) {
                        self.commit_chunk(std::mem::take(&mut chunk), out_fd, sink)?;
                    }
                    if done {
                        return Ok(());
                    }
                }
            };
            if let Err(e) = commit() {
                fail(e);
            }
        });
        match failed.into_inner().ok().flatten() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Makes the chunk durable, then records it. On a failure part-way the
    /// devices already in place are still recorded.
    fn commit_chunk(&self, chunk: Vec<Made>, out_fd: &File, sink: &mut Sink) -> Result<()> {
        let label = self.out_dir.display().to_string();
        let sync = |what: &str| {
            syncfs(out_fd).map_err(|e| Error::io(format!("cannot write {what}"), &label, &e))
        };
        if chunk.iter().any(|(_, _, w)| w.is_some()) {
            sync("device files")?;
        }
        stop_here("batch-synced");
        let mut placed = Vec::with_capacity(chunk.len());
        let mut failure = None;
        for (i, outcome, write) in chunk {
            let r = match write {
                Some(Write::Folder(f)) => f.place(),
                Some(Write::InPlace(staged)) => place_all(staged, true),
                None => Ok(()),
            };
            if let Err(e) = r {
                failure = Some(e);
                break;
            }
            placed.push((i, outcome));
        }
        // The renames, and any an earlier killed run made and never synced
        // (its devices are skipped now, so they must be durable too).
        sync("device folders")?;
        stop_here("batch-renamed");
        sink.record(placed)?;
        failure.map_or(Ok(()), Err)
    }

    /// Makes (or finds complete) one device. `asked`: one of this run's
    /// devices; else a folder of an earlier run, only listed.
    fn device(&self, cn: &str, asked: bool, fresh: bool) -> Result<(Outcome, Option<Write>)> {
        let dir = self.out_dir.join(cn);
        let found = if asked && fresh {
            Found::Missing
        } else {
            look(&dir)
        };
        if !asked {
            let outcome = match found {
                Found::Complete(cert) => {
                    Outcome::Earlier(ManifestRow::new(cn, &dir, &cert.cert, &cert.der, "skipped"))
                }
                _ => Outcome::Nothing,
            };
            return Ok((outcome, None));
        }
        let subject = self.template.name_for(cn).map_err(|e| e.file(cn))?;
        let in_place = match found {
            Found::Missing => false,
            Found::Complete(cert) => {
                self.check_complete(&dir, &cert, &subject)?;
                let row = ManifestRow::new(cn, &dir, &cert.cert, &cert.der, "skipped");
                return Ok((Outcome::Skipped { row, der: cert.der }, None));
            }
            Found::NotADevice(why) if !self.force => return Err(not_a_device(&dir, why)),
            Found::NotADevice(_) => {
                match dir.symlink_metadata() {
                    // The link (or file) itself goes; its target is never
                    // opened.
                    Ok(m) if !m.is_dir() => {
                        std::fs::remove_file(&dir).map_err(|e| {
                            Error::io("cannot replace", dir.display().to_string(), &e)
                        })?;
                        false
                    }
                    _ => true,
                }
            }
        };
        let spec = DeviceSpec {
            subject: &subject,
            ..self.spec
        };
        let files = make_device(self.ca, &spec)?;
        let write = if in_place {
            sweep(&dir, |_, _| {});
            Write::InPlace(
                files
                    .contents()
                    .into_iter()
                    .map(|(name, data, mode)| stage(&dir.join(name), data, mode))
                    .collect::<Result<_>>()?,
            )
        } else {
            Write::Folder(NewFolder::write(self.out_dir, cn, &files)?)
        };
        let cert = Certificate::from_der(&files.cert_der)
            .map_err(|e| Error::crypto("cannot read issued certificate", e))?;
        let outcome = Outcome::Issued {
            row: ManifestRow::new(cn, &dir, &cert, &files.cert_der, "issued"),
            der: files.cert_der,
            warnings: files.warnings,
        };
        Ok((outcome, Some(write)))
    }

    /// A complete device of another CA or template (a reused --out-dir) is
    /// neither skipped as if it were asked for, nor replaced: its key may
    /// already be on a device.
    fn check_complete(
        &self,
        dir: &Path,
        cert: &crate::input::LoadedCert,
        subject: &x509_cert::name::Name,
    ) -> Result<()> {
        let refuse = |what: &str, why: String| {
            Error::new(ErrorKind::Refused, what, why)
                .file(dir.display().to_string())
                .hint("use another --out-dir, or remove the folder to issue it again")
        };
        if !crate::chain::is_issued_by(cert, &self.ca.cert) {
            return Err(refuse(
                "device exists, issued by another CA",
                format!(
                    "its issuer is {}, not this CA",
                    crate::name::to_rfc4514(cert.cert.tbs_certificate().issuer())
                ),
            ));
        }
        let has = cert.cert.tbs_certificate().subject();
        if has != subject {
            return Err(refuse(
                "device exists with another subject",
                format!(
                    "it has {}, this batch would make {}",
                    crate::name::to_rfc4514(has),
                    crate::name::to_rfc4514(subject)
                ),
            ));
        }
        Ok(())
    }
}

/// Where committed devices go, in entry order: the manifest, the
/// registry, the report and the progress callback.
struct Sink<'a> {
    manifest: &'a mut Manifest,
    registry: Option<Bulk>,
    report: BatchReport,
    /// Committed out of order, waiting for the entries before them.
    pending: std::collections::BTreeMap<usize, Outcome>,
    next: usize,
    total: usize,
    progress: &'a (dyn Fn(usize, usize) + Sync),
}

impl Sink<'_> {
    fn record(&mut self, committed: Vec<(usize, Outcome)>) -> Result<()> {
        self.pending.extend(committed);
        while let Some(outcome) = self.pending.remove(&self.next) {
            self.next += 1;
            self.take(outcome)?;
            (self.progress)(self.next, self.total);
        }
        self.registry.as_mut().map_or(Ok(()), Bulk::flush)
    }

    fn take(&mut self, outcome: Outcome) -> Result<()> {
        let (row, der) = match outcome {
            Outcome::Issued { row, der, warnings } => {
                self.report.issued += 1;
                if !warnings.is_empty() {
                    self.report.warned += 1;
                    self.report
                        .warnings
                        .get_or_insert((row.cn.clone(), warnings));
                }
                (row, Some(der))
            }
            Outcome::Skipped { row, der } => {
                self.report.skipped += 1;
                (row, Some(der))
            }
            Outcome::Earlier(row) => {
                self.report.earlier += 1;
                (row, None)
            }
            Outcome::Nothing => return Ok(()),
        };
        if let (Some(reg), Some(der)) = (self.registry.as_mut(), der) {
            reg.add(&der)?;
        }
        self.manifest.row(&row)
    }

    /// After a failure, devices committed behind the failed one are
    /// registered too (a re-run lists them).
    fn finish(&mut self, failed: bool) -> Result<()> {
        if failed {
            for (_, outcome) in std::mem::take(&mut self.pending) {
                if let (Some(reg), Outcome::Issued { der, .. } | Outcome::Skipped { der, .. }) =
                    (self.registry.as_mut(), outcome)
                {
                    reg.add(&der)?;
                }
            }
        }
        self.registry.as_mut().map_or(Ok(()), Bulk::flush)
    }
}

fn same_folder(file: &Path, dir: &Path) -> bool {
    let parent = crate::output::parent_dir(file);
    match (std::path::absolute(parent), std::path::absolute(dir)) {
        (Ok(a), Ok(b)) => a.components().eq(b.components()),
        _ => false,
    }
}

/// One batch at a time per folder: a second one would take the first's
/// temp folders for leftovers of a killed run and remove them. The lock
/// (flock on the folder itself, no lock file to leave behind) goes when
/// the process ends, however it ends.
fn lock_out_dir(dir: &Path) -> Result<File> {
    let label = dir.display().to_string();
    let f = File::open(dir).map_err(|e| Error::io("cannot open output folder", &label, &e))?;
    match f.try_lock() {
        Ok(()) => Ok(f),
        Err(std::fs::TryLockError::WouldBlock) => Err(Error::new(
            ErrorKind::Refused,
            "output folder is busy",
            "another devcert batch is writing to it",
        )
        .file(label)
        .hint("wait for it to finish, then re-run: complete devices are skipped")),
        // A filesystem without flock still gets its batch.
        Err(std::fs::TryLockError::Error(_)) => Ok(f),
    }
}
