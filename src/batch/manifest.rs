//! The batch's manifests: `manifest.json` (a JSON array, one object per
//! device) and the optional CSV. Both are streamed into temp files as
//! devices are recorded (memory stays flat however large the fleet) and
//! committed durably at the end; a failed or killed run leaves the earlier
//! manifests as they were.

use std::fs::File;
use std::io::{BufRead, BufWriter, Read, Seek, Write};
use std::path::{Path, PathBuf};

use serde::Serialize;
use sha2::Digest as _;
use x509_cert::Certificate;

use crate::error::{Error, Result};
use crate::issue::{CERT_FILE, CHAIN_FILE, CSR_FILE, KEY_FILE, PKCS8_FILE};
use crate::output::{Live, Mode, Staged, commit, copy_to_stdout, exists_error, stage, temp_file};
use crate::sign::{format_time, serial_hex};

pub const CSV_HEADER: &str = "cn,serial,not_after,sha256_fingerprint,dir";

/// Where a batch writes its manifest.
pub fn manifest_path(out_dir: &Path) -> PathBuf {
    out_dir.join("manifest.json")
}

/// Where the CSV manifest goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CsvOut {
    File(PathBuf),
    /// Standard output, once the batch is done.
    Stdout,
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

impl ManifestRow {
    pub fn new(
        cn: &str,
        dir: &Path,
        cert: &Certificate,
        der: &[u8],
        status: &'static str,
    ) -> ManifestRow {
        let tbs = cert.tbs_certificate();
        let path = |f: &str| dir.join(f).display().to_string();
        ManifestRow {
            cn: cn.to_string(),
            serial: serial_hex(tbs.serial_number()),
            not_after: format_time(tbs.validity().not_after.to_system_time()),
            sha256_fingerprint: fingerprint(der),
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
}

/// SHA-256 of DER as `AB:CD:...`, as `openssl x509 -fingerprint -sha256`.
pub fn fingerprint(der: &[u8]) -> String {
    sha2::Sha256::digest(der)
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":")
}

pub fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// An existing manifest is replaced only when it is one devcert wrote (a
/// re-run must work) or with `--force`; a link there counts as foreign.
pub fn refuse_foreign_manifests(json: &Path, csv: Option<&CsvOut>, force: bool) -> Result<()> {
    let json_ok = |first: &str| first.trim_end() == "[";
    let csv_ok = |first: &str| first.trim_end() == CSV_HEADER;
    refuse_foreign(json, &json_ok, force)?;
    if let Some(CsvOut::File(p)) = csv {
        refuse_foreign(p, &csv_ok, force)?;
    }
    Ok(())
}

fn refuse_foreign(p: &Path, ours: &dyn Fn(&str) -> bool, force: bool) -> Result<()> {
    let Ok(meta) = p.symlink_metadata() else {
        return Ok(());
    };
    if force {
        return Ok(());
    }
    let mut first = String::new();
    let is_ours = meta.file_type().is_file()
        && File::open(p)
            .and_then(|f| std::io::BufReader::new(f.take(256)).read_line(&mut first))
            .is_ok()
        && ours(&first);
    if is_ours {
        return Ok(());
    }
    Err(exists_error(&p.display().to_string())
        .hint("it is not a devcert manifest; use --force to replace it"))
}

/// The manifests being written.
pub struct Manifest {
    json: (Staged, BufWriter<File>),
    csv: Option<Csv>,
    rows: usize,
}

enum Csv {
    File(Staged, BufWriter<File>),
    /// Waits in a temp file in the out dir until the batch is done.
    Stdout(tempfile::NamedTempFile, Live, BufWriter<File>),
}

impl Manifest {
    pub fn open(json: &Path, out_dir: &Path, csv: Option<&CsvOut>) -> Result<Manifest> {
        let staged = stage(json, b"[\n", Mode::Public)?;
        let out = writer(&staged, json)?;
        let csv = match csv {
            None => None,
            Some(CsvOut::File(p)) => {
                let staged = stage(p, format!("{CSV_HEADER}\n").as_bytes(), Mode::Public)?;
                let out = writer(&staged, p)?;
                Some(Csv::File(staged, out))
            }
            Some(CsvOut::Stdout) => {
                let err = |e: std::io::Error| Error::io("cannot write manifest", "<stdout>", &e);
                let (temp, live) = temp_file(out_dir, Mode::Public).map_err(err)?;
                let mut out = BufWriter::new(temp.as_file().try_clone().map_err(err)?);
                writeln!(out, "{CSV_HEADER}").map_err(err)?;
                Some(Csv::Stdout(temp, live, out))
            }
        };
        Ok(Manifest {
            json: (staged, out),
            csv,
            rows: 0,
        })
    }

    pub fn row(&mut self, row: &ManifestRow) -> Result<()> {
        let sep = if self.rows == 0 { "" } else { ",\n" };
        let json =
            serde_json::to_string(row).map_err(|e| Error::crypto("cannot encode manifest", e))?;
        let (staged, out) = &mut self.json;
        write!(out, "{sep}{json}").map_err(|e| io(staged.target(), e))?;
        if let Some(csv) = &mut self.csv {
            let (label, out) = match csv {
                Csv::File(s, out) => (s.target().display().to_string(), out),
                Csv::Stdout(_, _, out) => ("<stdout>".to_string(), out),
            };
            writeln!(
                out,
                "{},{},{},{},{}",
                csv_field(&row.cn),
                row.serial,
                row.not_after,
                row.sha256_fingerprint,
                csv_field(&row.dir)
            )
            .map_err(|e| Error::io("cannot write manifest", label, &e))?;
        }
        self.rows += 1;
        Ok(())
    }

    /// Puts both manifests in place (durably), or prints the CSV.
    pub fn commit(self) -> Result<()> {
        let (staged, mut out) = self.json;
        out.write_all(b"\n]\n")
            .and_then(|()| out.flush())
            .map_err(|e| io(staged.target(), e))?;
        drop(out);
        match self.csv {
            None => {}
            Some(Csv::File(csv, mut out)) => {
                out.flush().map_err(|e| io(csv.target(), e))?;
                drop(out);
                commit(csv, true)?;
            }
            Some(Csv::Stdout(temp, _live, mut out)) => {
                let err = |e: std::io::Error| Error::io("cannot write manifest", "<stdout>", &e);
                out.flush().map_err(err)?;
                let mut f = out.into_inner().map_err(|e| err(e.into_error()))?;
                f.rewind().map_err(err)?;
                copy_to_stdout(&mut f)?;
                drop(temp);
            }
        }
        commit(staged, true)
    }
}

fn writer(staged: &Staged, target: &Path) -> Result<BufWriter<File>> {
    let mut f = staged.writer().map_err(|e| io(target, e))?;
    f.seek(std::io::SeekFrom::End(0))
        .map_err(|e| io(target, e))?;
    Ok(BufWriter::new(f))
}

fn io(target: &Path, e: std::io::Error) -> Error {
    Error::io("cannot write manifest", target.display().to_string(), &e)
}
