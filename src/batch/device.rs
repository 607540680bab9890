//! One device folder of a batch: what is there now (nothing, a complete
//! device, or something devcert did not leave), and writing a new device
//! so that its folder appears whole or not at all.
//!
//! A new device is written into `.devcert-<CN>.tmp/` beside its final
//! folder and the folder is renamed into place once the files are synced
//! (see `mod.rs`). A device folder therefore either does not exist or holds
//! five complete files: one that exists but is not a complete device was
//! not left by a batch, and is not touched without `--force`.

use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use der::Encode;

use crate::error::{Error, ErrorKind, Result};
use crate::input::{Input, LoadedCert};
use crate::issue::{
    CERT_FILE, CHAIN_FILE, CSR_FILE, DEVICE_FILES, DeviceFiles, KEY_FILE, PKCS8_FILE,
};
use crate::keys::PrivateKey;
use crate::output::{Live, Mode, create_folder, track, while_no_cleanup};
use crate::passphrase::PassphraseSource;

/// What a device's folder holds now.
pub enum Found {
    Missing,
    Complete(LoadedCert),
    /// Something else: a link, a file, a folder that is not a complete
    /// device (someone else's files, or a damaged device).
    NotADevice(&'static str),
}

pub fn look(dir: &Path) -> Found {
    match dir.symlink_metadata() {
        Err(_) => Found::Missing,
        Ok(m) if m.file_type().is_symlink() => Found::NotADevice("it is a symbolic link"),
        Ok(m) if !m.is_dir() => Found::NotADevice("it is not a folder"),
        Ok(_) => match complete_device(dir) {
            Some(cert) => Found::Complete(cert),
            None => Found::NotADevice("it is not a complete device"),
        },
    }
}

/// The refusal of a device folder devcert did not leave as it is.
pub fn not_a_device(dir: &Path, why: &str) -> Error {
    Error::new(ErrorKind::Refused, "device folder exists", why)
        .file(dir.display().to_string())
        .hint("check what is in it; --force replaces its five device files (a link or file there is replaced by a folder; nothing is written through a link)")
}

/// The device's certificate if its five files are all regular files (no
/// links), the key files and the CSR hold the certificate's key, and the
/// chain starts with the certificate. Whether the right CA issued it is
/// the caller's question.
pub fn complete_device(dir: &Path) -> Option<LoadedCert> {
    let regular = |f: &str| {
        dir.join(f)
            .symlink_metadata()
            .is_ok_and(|m| m.file_type().is_file())
    };
    if !DEVICE_FILES.iter().all(|f| regular(f)) {
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
    // Both key files must hold the certificate's key: a file left from an
    // older attempt, or planted, fails this.
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

/// A new device's five files in a temp folder, not yet synced or in place.
/// Dropped before [`NewFolder::place`], the temp folder goes.
pub struct NewFolder {
    tmp: PathBuf,
    dir: PathBuf,
    placed: bool,
    _live: Live,
}

impl NewFolder {
    /// Writes the files into `.devcert-<CN>.tmp/` in `out_dir`. The folder
    /// is 0755 & !umask, keys 0600, other files 0644 & !umask.
    pub fn write(out_dir: &Path, cn: &str, files: &DeviceFiles) -> Result<NewFolder> {
        let dir = out_dir.join(cn);
        let tmp = out_dir.join(format!(".devcert-{cn}.tmp"));
        let err =
            |e: std::io::Error| Error::io("cannot write device", dir.display().to_string(), &e);
        let ((), live) = track(|| create_folder(&tmp).map(|()| ((), tmp.clone()))).map_err(err)?;
        let folder = NewFolder {
            tmp,
            dir: dir.clone(),
            placed: false,
            _live: live,
        };
        for (name, data, mode) in files.contents() {
            while_no_cleanup(|| write_new(&folder.tmp.join(name), data, mode)).map_err(err)?;
        }
        Ok(folder)
    }

    /// Renames the folder into place; refused if the device folder exists
    /// by now (never merged into, never replaced).
    pub fn place(mut self) -> Result<()> {
        let label = self.dir.display().to_string();
        // A signal cleanup removing the temp folder never races the rename
        // (it could empty the folder as it becomes the device's).
        while_no_cleanup(|| rename_noreplace(&self.tmp, &self.dir)).map_err(|e| {
            match e.kind() {
                std::io::ErrorKind::AlreadyExists | std::io::ErrorKind::DirectoryNotEmpty => {
                    not_a_device(&self.dir, "it appeared while the batch ran")
                }
                _ => Error::io("cannot write device", &label, &e),
            }
        })?;
        self.placed = true;
        Ok(())
    }
}

impl Drop for NewFolder {
    fn drop(&mut self) {
        if !self.placed {
            let _ = std::fs::remove_dir_all(&self.tmp);
        }
    }
}

fn write_new(path: &Path, data: &[u8], mode: Mode) -> std::io::Result<()> {
    let bits = if mode == Mode::Secret { 0o600 } else { 0o644 };
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(bits)
        .open(path)?;
    crate::output::exactly_secret(&f, mode)?;
    f.write_all(data)
}

fn rename_noreplace(from: &Path, to: &Path) -> std::io::Result<()> {
    use rustix::fs::{CWD, RenameFlags, renameat_with};
    match renameat_with(CWD, from, CWD, to, RenameFlags::NOREPLACE) {
        // A filesystem without RENAME_NOREPLACE: the batch lock keeps other
        // batches out, and a plain rename never replaces a non-empty folder.
        Err(rustix::io::Errno::INVAL) if to.symlink_metadata().is_err() => {
            std::fs::rename(from, to)
        }
        r => r.map_err(std::io::Error::from),
    }
}

/// Removes `.devcert-*` temp files and folders (see output.rs) from a
/// folder this batch owns (a device folder, or the out dir under the batch
/// lock); a process killed before renaming leaves them behind. Calls
/// `other` with every other entry's name and whether it is a folder.
pub fn sweep(dir: &Path, mut other: impl FnMut(&str, bool)) {
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let name = e.file_name();
        let name = name.to_string_lossy();
        let is_dir = e.file_type().is_ok_and(|t| t.is_dir());
        if name.starts_with(".devcert-") && (name.ends_with(".tmp") || name.ends_with(".old")) {
            let _ = if is_dir {
                std::fs::remove_dir_all(e.path())
            } else {
                std::fs::remove_file(e.path())
            };
        } else {
            other(&name, is_dir);
        }
    }
}
