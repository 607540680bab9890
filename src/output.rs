//! Writing outputs the way CLI.md promises: atomically (a 0600 temp file
//! created with O_EXCL in the target folder, then renamed), never over an
//! existing file without `--force`, private keys 0600, other files 0644,
//! both filtered by the umask as open(2) does.
//!
//! Symlinks: the rename replaces a symlink at the output path itself; it is
//! never followed. Without `--force` an existing symlink (even a dangling
//! one) counts as an existing file and the write is refused.

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use tempfile::NamedTempFile;

use crate::error::{Error, ErrorKind, Result};

/// Who may read a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Private keys: 0600.
    Secret,
    /// Certificates, CSRs, chains: 0644 & !umask.
    Public,
}

/// One file written to a temp file next to its target, not yet in place.
pub struct Staged {
    temp: NamedTempFile,
    target: PathBuf,
}

impl Staged {
    pub fn target(&self) -> &Path {
        &self.target
    }

    /// The temp file holding the data, to read back before the rename.
    pub fn temp_path(&self) -> &Path {
        self.temp.path()
    }
}

/// Writes `data` to a temp file in the target's folder.
pub fn stage(target: &Path, data: &[u8], mode: Mode) -> Result<Staged> {
    let what = "cannot write output";
    let label = target.display().to_string();
    let dir = parent_dir(target);
    // The mode is given to open(2), which applies the umask: a key is
    // never readable by others, not even while it is being written, and a
    // public file needs no chmod. A key is set to exactly 0600 (through
    // the descriptor, no path lookup) even under a umask like 0277.
    let bits = match mode {
        Mode::Secret => 0o600,
        Mode::Public => 0o644,
    };
    let mut temp = tempfile::Builder::new()
        .prefix(".devcert-")
        .suffix(".tmp")
        .permissions(std::fs::Permissions::from_mode(bits))
        .tempfile_in(dir)
        .map_err(|e| Error::io(what, &label, &e))?;
    if mode == Mode::Secret {
        temp.as_file()
            .set_permissions(std::fs::Permissions::from_mode(bits))
            .map_err(|e| Error::io(what, &label, &e))?;
    }
    temp.write_all(data)
        .and_then(|_| temp.as_file().sync_all())
        .map_err(|e| Error::io(what, &label, &e))?;
    Ok(Staged {
        temp,
        target: target.to_path_buf(),
    })
}

/// Moves a staged file into place. Without `force`, an existing target is
/// refused atomically (no check-then-rename race).
pub fn commit(staged: Staged, force: bool) -> Result<()> {
    let label = staged.target.display().to_string();
    let result = if force {
        staged.temp.persist(&staged.target).map(|_| ())
    } else {
        staged.temp.persist_noclobber(&staged.target).map(|_| ())
    };
    result.map_err(|e| {
        if e.error.kind() == std::io::ErrorKind::AlreadyExists {
            exists_error(&label)
        } else {
            Error::io("cannot write output", &label, &e.error)
        }
    })
}

pub fn exists_error(label: &str) -> Error {
    Error::new(ErrorKind::Exists, "refusing to overwrite", "file exists")
        .file(label)
        .hint("use --force to replace it")
}

/// Writes one output file atomically, or to stdout when `path` is `-`.
pub fn write_file(path: &str, data: &[u8], mode: Mode, force: bool) -> Result<()> {
    if path == "-" {
        return write_stdout(data);
    }
    refuse_existing(path, force)?;
    commit(stage(Path::new(path), data, mode)?, force)
}

/// Fails early when `path` exists and `force` is off, before any work is
/// done for it; [`commit`] re-checks atomically.
pub fn refuse_existing(path: &str, force: bool) -> Result<()> {
    if !force && path != "-" && Path::new(path).symlink_metadata().is_ok() {
        return Err(exists_error(path));
    }
    Ok(())
}

/// Writes the product to stdout; a closed pipe (`| head`) is not an error.
pub fn write_stdout(data: &[u8]) -> Result<()> {
    let mut out = std::io::stdout().lock();
    match out.write_all(data).and_then(|_| out.flush()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        Err(e) => Err(Error::io("cannot write output", "<stdout>", &e)),
        Ok(()) => Ok(()),
    }
}

/// Refuses a new key and another output at one path (`--key-out x -o x`,
/// also `d/../x` or through a linked folder), where the second rename
/// would silently replace the key. Checked before any work is done;
/// [`commit_all`] checks every multi-file write again.
pub fn refuse_same_file(key_path: &str, out: &str) -> Result<()> {
    if out != "-" && same_entry(Path::new(key_path), Path::new(out)) {
        return Err(Error::new(
            ErrorKind::Refused,
            "cannot write output",
            "the new key and the other output are the same file",
        )
        .file(key_path)
        .hint("give --key-out and -o different files"));
    }
    Ok(())
}

/// Whether two output paths name the same directory entry, which is what
/// a rename replaces: the same folder (by device and inode, so `..`,
/// `./` and linked folders all count) and the same name. A symlink as the
/// last component is replaced, not followed, so it is its own entry; two
/// hard links are two entries. A path whose folder cannot be looked up
/// (it cannot be written either) is compared by its absolute form.
pub fn same_entry(a: &Path, b: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    let id = |p: &Path| {
        let dir = std::fs::metadata(parent_dir(p)).ok()?;
        Some((dir.dev(), dir.ino(), p.file_name()?.to_os_string()))
    };
    match (id(a), id(b)) {
        (Some(x), Some(y)) => x == y,
        _ => match (std::path::absolute(a), std::path::absolute(b)) {
            (Ok(x), Ok(y)) => x == y,
            _ => a == b,
        },
    }
}

/// No two of `staged` land on one directory entry (the later rename
/// would replace the earlier file, losing it).
fn refuse_duplicates(staged: &[Staged]) -> Result<()> {
    for (i, s) in staged.iter().enumerate() {
        if let Some(other) = staged[..i]
            .iter()
            .find(|o| same_entry(&o.target, &s.target))
        {
            return Err(Error::new(
                ErrorKind::Refused,
                "cannot write output",
                format!(
                    "{} and {} are the same file",
                    other.target.display(),
                    s.target.display()
                ),
            )
            .file(s.target.display().to_string())
            .hint("give each output its own file"));
        }
    }
    Ok(())
}

/// A new private key and what was made with it (a CSR, a CA certificate)
/// land together or not at all: a key without its product, or a product
/// whose key is lost, is useless. `out` may be `-` (stdout, after the key
/// is in place); `key_path` must name a file.
pub fn write_key_and(
    key_path: &str,
    key: &[u8],
    out: &str,
    data: &[u8],
    force: bool,
) -> Result<()> {
    let mut staged = vec![stage(Path::new(key_path), key, Mode::Secret)?];
    if out != "-" {
        staged.push(stage(Path::new(out), data, Mode::Public)?);
    }
    commit_all(staged, force)?;
    if out == "-" {
        write_stdout(data)?;
    }
    Ok(())
}

/// Several files that appear together or not at all (`devcert issue`).
/// Every file is staged first; only then are they renamed into place. If
/// one rename fails, the files already placed are removed again and, with
/// `force`, the files they replaced are put back (each is hard-linked
/// aside before it is replaced).
pub fn commit_all(staged: Vec<Staged>, force: bool) -> Result<()> {
    refuse_duplicates(&staged)?;
    if !force && let Some(s) = staged.iter().find(|s| s.target.symlink_metadata().is_ok()) {
        return Err(exists_error(&s.target.display().to_string()));
    }
    place_all(staged, force)
}

/// [`commit_all`] into a folder this call has just created, under names
/// that differ: there is nothing to refuse or keep aside, so no file is
/// looked up first (a batch
/// of 100,000 devices saves half a million lookups). Another writer that
/// got in first is still refused by the rename.
pub fn commit_all_new(staged: Vec<Staged>) -> Result<()> {
    place_all(staged, false)
}

fn place_all(staged: Vec<Staged>, force: bool) -> Result<()> {
    let mut placed: Vec<(PathBuf, Option<NamedTempFile<()>>)> = Vec::new();
    for s in staged {
        let target = s.target.clone();
        let prior = if force { keep_aside(&target) } else { None };
        if let Err(e) = commit(s, force) {
            for (path, prior) in placed.into_iter().rev() {
                match prior {
                    Some(old) => drop(old.persist(&path)),
                    None => drop(std::fs::remove_file(&path)),
                }
            }
            return Err(e);
        }
        placed.push((target, prior));
    }
    // Dropping the kept-aside links removes them.
    Ok(())
}

/// A hard link to the file (or symlink) at `target` under a temporary
/// name next to it, removed when dropped. None when there is nothing to
/// keep, or the filesystem cannot link (the replaced file is then lost if
/// a later file fails, as with a plain rename).
fn keep_aside(target: &Path) -> Option<NamedTempFile<()>> {
    let meta = target.symlink_metadata().ok()?;
    if meta.is_dir() {
        return None;
    }
    tempfile::Builder::new()
        .prefix(".devcert-")
        .suffix(".old")
        .make_in(parent_dir(target), |p| std::fs::hard_link(target, p))
        .ok()
}

fn parent_dir(target: &Path) -> &Path {
    match target.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_overwrite_and_keeps_content() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.pem");
        let ps = p.to_str().unwrap();
        write_file(ps, b"one", Mode::Public, false).unwrap();
        let e = write_file(ps, b"two", Mode::Public, false).unwrap_err();
        assert_eq!(e.kind, ErrorKind::Exists);
        assert_eq!(std::fs::read(&p).unwrap(), b"one");
        write_file(ps, b"three", Mode::Secret, true).unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"three");
        let mode = std::fs::metadata(&p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        // No temp files left behind.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn symlink_is_replaced_not_followed() {
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("victim");
        std::fs::write(&victim, b"keep").unwrap();
        let link = dir.path().join("out.pem");
        std::os::unix::fs::symlink(&victim, &link).unwrap();
        assert!(write_file(link.to_str().unwrap(), b"x", Mode::Public, false).is_err());
        write_file(link.to_str().unwrap(), b"x", Mode::Public, true).unwrap();
        assert_eq!(std::fs::read(&victim).unwrap(), b"keep");
        assert!(
            !std::fs::symlink_metadata(&link)
                .unwrap()
                .file_type()
                .is_symlink()
        );
    }

    #[test]
    fn commit_all_is_all_or_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a");
        let b = dir.path().join("b");
        std::fs::write(&b, b"old").unwrap();
        let staged = vec![
            stage(&a, b"A", Mode::Public).unwrap(),
            stage(&b, b"B", Mode::Public).unwrap(),
        ];
        assert!(commit_all(staged, false).is_err());
        assert!(!a.exists());
        assert_eq!(std::fs::read(&b).unwrap(), b"old");
    }

    #[test]
    fn forced_commit_all_puts_replaced_files_back_on_failure() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b, c) = (
            dir.path().join("a"),
            dir.path().join("b"),
            dir.path().join("c"),
        );
        std::fs::write(&a, b"old a").unwrap();
        std::fs::create_dir(&c).unwrap();
        std::fs::write(c.join("inside"), b"x").unwrap();
        let staged = vec![
            stage(&a, b"A", Mode::Secret).unwrap(),
            stage(&b, b"B", Mode::Public).unwrap(),
            stage(&c, b"C", Mode::Public).unwrap(),
        ];
        assert!(commit_all(staged, true).is_err());
        assert_eq!(std::fs::read(&a).unwrap(), b"old a");
        assert!(!b.exists());
        let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(left.len(), 2, "no temp or kept-aside files remain");
        // And on success the kept-aside links are gone too.
        let staged = vec![stage(&a, b"new a", Mode::Secret).unwrap()];
        commit_all(staged, true).unwrap();
        assert_eq!(std::fs::read(&a).unwrap(), b"new a");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 2);
    }

    #[test]
    fn same_entry_sees_through_dotdot_and_linked_folders_only() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::create_dir(d.join("sub")).unwrap();
        std::os::unix::fs::symlink(d.join("sub"), d.join("link")).unwrap();
        let k = d.join("sub/k.pem");
        // Neither file exists yet: the folder and name decide.
        assert!(same_entry(&k, &d.join("sub/../sub/k.pem")));
        assert!(same_entry(&k, &d.join("link/k.pem")));
        assert!(same_entry(&k, &d.join("sub/./k.pem")));
        assert!(!same_entry(&k, &d.join("sub/c.pem")));
        // A link as the last component is replaced by the rename, not
        // followed; hard links are two entries: both outputs survive.
        std::fs::write(&k, "x").unwrap();
        std::os::unix::fs::symlink(&k, d.join("sub/alias")).unwrap();
        std::fs::hard_link(&k, d.join("sub/hard")).unwrap();
        assert!(!same_entry(&k, &d.join("sub/alias")));
        assert!(!same_entry(&k, &d.join("sub/hard")));
    }

    #[test]
    fn commit_all_refuses_two_outputs_on_one_entry_even_with_force() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::create_dir(d.join("sub")).unwrap();
        let staged = vec![
            stage(&d.join("k.pem"), b"key", Mode::Secret).unwrap(),
            stage(&d.join("sub/../k.pem"), b"cert", Mode::Public).unwrap(),
        ];
        let e = commit_all(staged, true).unwrap_err();
        assert!(e.why.contains("are the same file"), "{}", e.why);
        assert!(!d.join("k.pem").exists());
    }
}
