//! A fleet: one `issue` per device, in parallel, re-runnable. Devices are
//! written all-or-nothing into `DIR/<CN>/`; a re-run skips devices whose
//! five files are complete and consistent, and redoes the rest. The
//! manifest is streamed, so memory stays flat however large the fleet.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use der::{Decode, Encode};
use serde::Serialize;
use sha2::Digest as _;
use x509_cert::Certificate;
use x509_cert::name::Name;

use crate::csr::ReqConfig;
use crate::error::{Error, ErrorKind, Result};
use crate::input::{Input, LoadedCert};
use crate::issue::{
    CERT_FILE, CHAIN_FILE, CSR_FILE, DEVICE_FILES, DeviceSpec, KEY_FILE, PKCS8_FILE, make_device,
    write_device,
};
use crate::keys::PrivateKey;
use crate::name::common_name;
use crate::openssl_conf::Config;
use crate::passphrase::PassphraseSource;
use crate::sign::{CaSigner, format_time, serial_hex};

/// Device names from a file: one CN per line, `#` comments and blank lines
/// ignored. Duplicates and names unfit for a folder are refused up front,
/// before any device is made, naming the line.
pub fn read_names(text: &str, label: &str) -> Result<Vec<String>> {
    let mut seen = std::collections::HashMap::new();
    let mut names = Vec::new();
    // Windows editors start UTF-8 files with a byte-order mark.
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    for (i, raw) in text.lines().enumerate() {
        let line = i + 1;
        let name = raw.trim();
        if name.is_empty() || name.starts_with('#') {
            continue;
        }
        check_folder_name(name).map_err(|why| Error::config(label, line, why))?;
        if let Some(first) = seen.insert(name.to_string(), line) {
            return Err(Error::config(
                label,
                line,
                format!("duplicate device name '{name}' (first on line {first})"),
            ));
        }
        names.push(name.to_string());
    }
    if names.is_empty() {
        return Err(Error::parse("no devices", "the names file lists no device").file(label));
    }
    Ok(names)
}

/// `PFX0001` .. `PFXnnnn`, zero-padded so folders sort in order.
pub fn numbered_names(prefix: &str, count: usize) -> Result<Vec<String>> {
    let width = count.to_string().len();
    let names: Vec<String> = (1..=count)
        .map(|i| format!("{prefix}{i:0width$}"))
        .collect();
    if let Some(first) = names.first() {
        check_folder_name(first).map_err(|why| Error::parse("invalid --cn-prefix", why))?;
    }
    Ok(names)
}

/// A CN becomes a folder name: keep to characters that are safe on every
/// filesystem and in shells, and never `.`/`..` or a path.
fn check_folder_name(name: &str) -> Result<(), String> {
    let ok_chars = name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '@'));
    if !ok_chars || name == "." || name == ".." || name.starts_with('.') || name.len() > 64 {
        return Err(format!(
            "'{name}' is not a safe folder name (use up to 64 of A-Z a-z 0-9 - _ . @, not starting with '.')"
        ));
    }
    Ok(())
}

/// How each device's subject is made: a bare CN, or a `[req]` config
/// template whose CN field is replaced per device.
pub enum SubjectTemplate {
    Cn,
    Config(Box<Config>),
}

impl SubjectTemplate {
    /// Checks the template once, up front.
    pub fn from_config(conf: Config) -> Result<SubjectTemplate> {
        ReqConfig::from_config(&conf)?;
        cn_entry(&conf).ok_or_else(|| {
            Error::parse(
                "invalid template",
                "its distinguished_name section has no CN field",
            )
            .file(&conf.label)
        })?;
        Ok(SubjectTemplate::Config(Box::new(conf)))
    }

    pub fn name_for(&self, cn: &str) -> Result<Name> {
        match self {
            SubjectTemplate::Cn => common_name(cn),
            SubjectTemplate::Config(conf) => {
                let mut conf = (**conf).clone();
                let (s, e) = cn_entry(&conf)
                    .ok_or_else(|| Error::parse("invalid template", "no CN field"))?;
                conf.sections[s].entries[e].value = cn.to_string();
                Ok(ReqConfig::from_config(&conf)?.subject)
            }
        }
    }
}

/// (section, entry) of the CN in the config's distinguished_name section.
fn cn_entry(conf: &Config) -> Option<(usize, usize)> {
    let dn = &conf.get("req", "distinguished_name")?.value;
    let s = conf.sections.iter().position(|x| &x.name == dn)?;
    let e = conf.sections[s].entries.iter().position(|e| {
        let key = e
            .key
            .split(['.', ':', ','])
            .next_back()
            .unwrap_or(&e.key)
            .trim_start_matches('+');
        key == "CN" || key == "commonName"
    })?;
    Some((s, e))
}

/// One line of the manifest.
#[derive(Serialize)]
pub struct ManifestRow {
    pub cn: String,
    pub serial: String,
    pub not_after: String,
    pub sha256_fingerprint: String,
    pub dir: String,
    pub files: [String; 5],
    /// "issued" by this run, or "skipped" (already complete).
    pub status: &'static str,
}

/// Counts for the summary line, and the warnings of the issued devices.
#[derive(Debug, Default, Clone)]
pub struct BatchSummary {
    pub issued: usize,
    pub skipped: usize,
    /// The first device (in order) that got warnings, and those warnings:
    /// the CA, profile and validity are shared, so the others get the same.
    pub warnings: Option<(String, Vec<String>)>,
    /// How many issued devices got warnings.
    pub warned: usize,
}

/// Issues every device in `names` under `out_dir` with `jobs` threads.
/// `on_done` is called (in device order) for each device, e.g. to advance
/// a progress bar; `on_device` with each device's certificate DER, newly
/// issued or already complete (for the registry, which a re-run heals). Manifest rows are written to `manifest` as a JSON
/// array (and CSV lines to `csv` if given) in device order.
pub struct BatchJob<'a> {
    pub ca: &'a CaSigner,
    pub names: &'a [String],
    pub template: &'a SubjectTemplate,
    pub spec: DeviceSpec<'a>,
    pub out_dir: &'a Path,
    pub jobs: usize,
}

impl BatchJob<'_> {
    pub fn run(
        &self,
        manifest: &mut dyn Write,
        mut csv: Option<&mut dyn Write>,
        on_done: &(dyn Fn() + Sync),
        on_device: &mut dyn FnMut(&[u8]) -> Result<()>,
    ) -> Result<BatchSummary> {
        let next = AtomicUsize::new(0);
        let failed = Mutex::new(None::<Error>);
        // Devices are claimed and reported in runs of CLAIM: one wake-up of
        // the manifest writer per run rather than per device (a batch spent
        // 7% of its time in futex calls otherwise).
        const CLAIM: usize = 16;
        type Done = (usize, ManifestRow, Vec<u8>, Option<Vec<String>>);
        let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<Done>>(self.jobs * 8);
        let mut summary = BatchSummary::default();
        std::thread::scope(|scope| -> Result<()> {
            for _ in 0..self.jobs.max(1) {
                let tx = tx.clone();
                let (next, failed) = (&next, &failed);
                scope.spawn(move || {
                    let failed_yet = || failed.lock().map(|f| f.is_some()).unwrap_or(true);
                    loop {
                        let start = next.fetch_add(CLAIM, Ordering::Relaxed);
                        let end = self.names.len().min(start.saturating_add(CLAIM));
                        let mut run = Vec::with_capacity(CLAIM);
                        let mut stop = start >= end;
                        for i in start..end {
                            if failed_yet() {
                                stop = true;
                                break;
                            }
                            match self.device(&self.names[i]) {
                                Ok((row, der, issued)) => run.push((i, row, der, issued)),
                                Err(e) => {
                                    if let Ok(mut f) = failed.lock() {
                                        f.get_or_insert(e);
                                    }
                                    stop = true;
                                    break;
                                }
                            }
                        }
                        if (!run.is_empty() && tx.send(run).is_err()) || stop {
                            break;
                        }
                    }
                });
            }
            drop(tx);
            // Rows arrive out of order; a small buffer puts them back in order.
            let mut pending = std::collections::BTreeMap::new();
            let mut written = 0usize;
            let io = |e: std::io::Error| Error::io("cannot write manifest", "manifest", &e);
            manifest.write_all(b"[\n").map_err(io)?;
            for (i, row, der, issued) in rx.into_iter().flatten() {
                pending.insert(i, (row, der, issued));
                while let Some((row, der, issued)) = pending.remove(&written) {
                    on_device(&der)?;
                    match issued {
                        None => summary.skipped += 1,
                        Some(warnings) => {
                            summary.issued += 1;
                            if !warnings.is_empty() {
                                summary.warned += 1;
                                summary.warnings.get_or_insert((row.cn.clone(), warnings));
                            }
                        }
                    }
                    let sep = if written == 0 { "" } else { ",\n" };
                    let json = serde_json::to_string(&row)
                        .map_err(|e| Error::crypto("cannot encode manifest", e))?;
                    manifest
                        .write_all(format!("{sep}{json}").as_bytes())
                        .map_err(io)?;
                    if let Some(csv) = csv.as_mut() {
                        writeln!(
                            csv,
                            "{},{},{},{},{}",
                            csv_field(&row.cn),
                            row.serial,
                            row.not_after,
                            row.sha256_fingerprint,
                            csv_field(&row.dir)
                        )
                        .map_err(io)?;
                    }
                    written += 1;
                    on_done();
                }
            }
            manifest.write_all(b"\n]\n").map_err(io)?;
            Ok(())
        })?;
        if let Some(e) = failed.into_inner().ok().flatten() {
            return Err(e);
        }
        Ok(summary)
    }

    /// Makes (or finds complete) one device: its row, its certificate's
    /// DER and, when it was issued now, the warnings it got.
    fn device(&self, cn: &str) -> Result<(ManifestRow, Vec<u8>, Option<Vec<String>>)> {
        let dir = self.out_dir.join(cn);
        // A first run finds no folder: nothing to skip or clean up.
        let existed = dir.symlink_metadata().is_ok();
        let subject = self.template.name_for(cn).map_err(|e| e.file(cn))?;
        if existed && let Some(cert) = complete_device(&dir) {
            // A complete device of another CA or template (a reused
            // --out-dir) is neither skipped as if it were asked for, nor
            // replaced: its key may already be on a device.
            let refuse = |what: &str, why: String| {
                Error::new(ErrorKind::Refused, what, why)
                    .file(dir.display().to_string())
                    .hint("use another --out-dir, or remove the folder to issue it again")
            };
            if !crate::chain::is_issued_by(&cert, &self.ca.cert) {
                return Err(refuse(
                    "device exists, issued by another CA",
                    format!(
                        "its issuer is {}, not this CA",
                        crate::name::to_rfc4514(cert.cert.tbs_certificate().issuer())
                    ),
                ));
            }
            let has = cert.cert.tbs_certificate().subject();
            if has != &subject {
                return Err(refuse(
                    "device exists with another subject",
                    format!(
                        "it has {}, this batch would make {}",
                        crate::name::to_rfc4514(has),
                        crate::name::to_rfc4514(&subject)
                    ),
                ));
            }
            let row = manifest_row(cn, &dir, &cert.cert, "skipped");
            return Ok((row, cert.der, None));
        }
        let spec = DeviceSpec {
            subject: &subject,
            ..self.spec
        };
        let files = make_device(self.ca, &spec)?;
        // A half-written device from an interrupted run is replaced, and
        // the temp files a killed run left in its folder go with it.
        if existed {
            remove_stale_temps(&dir);
        }
        write_device(&dir, &files, true)?;
        let cert = Certificate::from_der(&files.cert_der)
            .map_err(|e| Error::crypto("cannot read issued certificate", e))?;
        Ok((
            manifest_row(cn, &dir, &cert, "issued"),
            files.cert_der,
            Some(files.warnings),
        ))
    }
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

fn manifest_row(cn: &str, dir: &Path, cert: &Certificate, status: &'static str) -> ManifestRow {
    let tbs = cert.tbs_certificate();
    let der = cert.to_der().unwrap_or_default();
    let path = |f: &str| dir.join(f).display().to_string();
    ManifestRow {
        cn: cn.to_string(),
        serial: serial_hex(tbs.serial_number()),
        not_after: format_time(tbs.validity().not_after.to_system_time()),
        sha256_fingerprint: fingerprint(&der),
        dir: dir.display().to_string(),
        files: [
            path(KEY_FILE),
            path(CSR_FILE),
            path(CERT_FILE),
            path(PKCS8_FILE),
            path(CHAIN_FILE),
        ],
        status,
    }
}

/// SHA-256 of DER as `AB:CD:...`, as `openssl x509 -fingerprint -sha256`.
pub fn fingerprint(der: &[u8]) -> String {
    sha2::Sha256::digest(der)
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// The device's certificate if its five files are all there, the
/// certificate was issued by this CA, and the key is the certificate's.
/// Anything less is treated as half-written and redone.
fn complete_device(dir: &Path) -> Option<LoadedCert> {
    if !DEVICE_FILES.iter().all(|f| dir.join(f).is_file()) {
        return None;
    }
    let read = |f: &str| Input::read(&dir.join(f).display().to_string()).ok();
    let cert = crate::input::load_certificate(&read(CERT_FILE)?, "").ok()?;
    let spki = cert
        .cert
        .tbs_certificate()
        .subject_public_key_info()
        .to_der()
        .ok()?;
    // Both key files must hold the certificate's key: a kill between two
    // renames, or a file left from an older attempt, fails this.
    for file in [KEY_FILE, PKCS8_FILE] {
        let (key, _) = PrivateKey::load(&read(file)?, &PassphraseSource::Prompt).ok()?;
        if !key.matches_spki(&spki) {
            return None;
        }
    }
    let (csr, _) = crate::input::load_csr(&read(CSR_FILE)?).ok()?;
    if csr.info.public_key.to_der().ok()? != spki
        || crate::input::load_certificates(&read(CHAIN_FILE)?, "")
            .ok()?
            .first()?
            .der
            != cert.der
    {
        return None;
    }
    Some(cert)
}

/// Removes `.devcert-*` temp files (see output.rs) from a folder this
/// batch owns (a device folder, or the out dir under the batch lock); a
/// process killed between staging and renaming leaves them behind.
pub fn remove_stale_temps(dir: &Path) {
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let name = e.file_name();
        let name = name.to_string_lossy();
        if name.starts_with(".devcert-") && (name.ends_with(".tmp") || name.ends_with(".old")) {
            let _ = std::fs::remove_file(e.path());
        }
    }
}

/// Where a batch writes its manifest.
pub fn manifest_path(out_dir: &Path) -> PathBuf {
    out_dir.join("manifest.json")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_file_starting_with_a_byte_order_mark() {
        assert_eq!(
            read_names("\u{feff}dev-1\r\ndev-2\r\n", "n").unwrap(),
            ["dev-1", "dev-2"]
        );
    }

    #[test]
    fn names_file_rules() {
        let n = read_names("# fleet\n\ndev-1\n dev-2 \n", "names.txt").unwrap();
        assert_eq!(n, ["dev-1", "dev-2"]);
        let e = read_names("a\nb\na\n", "names.txt").unwrap_err();
        assert_eq!(e.file.as_deref(), Some("names.txt:3"));
        let e = read_names("ok\n../etc\n", "names.txt").unwrap_err();
        assert_eq!(e.file.as_deref(), Some("names.txt:2"));
        assert!(read_names("# nothing\n", "n").is_err());
        assert!(read_names("a b\n", "n").is_err());
    }

    #[test]
    fn numbered_names_are_padded() {
        assert_eq!(numbered_names("dev-", 10).unwrap()[0], "dev-01");
        assert!(numbered_names("../x", 1).is_err());
    }

    #[test]
    fn csv_quotes_only_when_needed() {
        assert_eq!(csv_field("a"), "a");
        assert_eq!(csv_field("a,b"), "\"a,b\"");
    }
}
