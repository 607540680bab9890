//! Writing outputs the way CLI.md promises: atomically (a 0600 temp file
//! created with O_EXCL in the target folder, then renamed), never over an
//! existing file without `--force`, private keys 0600, other files 0644,
//! both filtered by the umask as open(2) does.
//!
//! Durability: when a write returns, its data and its name are on stable
//! storage. Files written together are synced together (all at once),
//! then renamed, then their folders are synced together — two waits for
//! the disk however many files, instead of one per file.
//!
//! Symlinks: the rename replaces a symlink at the output path itself; it is
//! never followed. Without `--force` an existing symlink (even a dangling
//! one) counts as an existing file and the write is refused.
//!
//! Devices and pipes (`-o /dev/null`, a FIFO) are written
//! into, never replaced: a rename would put a regular file where the device
//! was (as root, `/dev/null` itself), and no file content can be lost there,
//! so no `--force` is needed. Block devices and sockets are refused.
//!
//! Temp files are registered while they exist, so SIGINT/SIGTERM/SIGHUP
//! remove them (see [`remove_temps_on_signals`]).

use std::collections::BTreeSet;
use std::fs::File;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, RwLock};

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

impl Mode {
    fn bits(self) -> u32 {
        match self {
            Mode::Secret => 0o600,
            Mode::Public => 0o644,
        }
    }
}

/// One file written to a temp file next to its target, not yet in place
/// and not yet synced.
pub struct Staged {
    temp: NamedTempFile,
    target: PathBuf,
    // Dropped after `temp` (which removes the file): unregisters it.
    _live: Live,
}

impl Staged {
    pub fn target(&self) -> &Path {
        &self.target
    }

    /// The temp file holding the data, to read back before the rename.
    pub fn temp_path(&self) -> &Path {
        self.temp.path()
    }

    /// Another handle on the temp file, to stream its contents in.
    pub fn writer(&self) -> std::io::Result<File> {
        self.temp.as_file().try_clone()
    }
}

/// Writes `data` to a temp file in the target's folder. Nothing is synced
/// yet: [`commit`] / [`commit_all`] do that for all files at once.
pub fn stage(target: &Path, data: &[u8], mode: Mode) -> Result<Staged> {
    let what = "cannot write output";
    let label = target.display().to_string();
    let (mut temp, live) =
        temp_file(parent_dir(target), mode).map_err(|e| Error::io(what, &label, &e))?;
    temp.write_all(data)
        .map_err(|e| Error::io(what, &label, &e))?;
    Ok(Staged {
        temp,
        target: target.to_path_buf(),
        _live: live,
    })
}

/// A registered `.devcert-XXXXXX.tmp` file in `dir`. The mode is given to
/// open(2), which applies the umask: a key is never readable by others,
/// not even while it is being written, and a public file needs no chmod. A
/// key is set to exactly 0600 (through the descriptor, no path lookup) even
/// under a umask like 0277.
pub fn temp_file(dir: &Path, mode: Mode) -> std::io::Result<(NamedTempFile, Live)> {
    let bits = mode.bits();
    let (temp, live) = track(|| {
        let t = tempfile::Builder::new()
            .prefix(".devcert-")
            .suffix(".tmp")
            .permissions(std::fs::Permissions::from_mode(bits))
            .tempfile_in(dir)?;
        let p = t.path().to_path_buf();
        Ok((t, p))
    })?;
    exactly_secret(temp.as_file(), mode)?;
    Ok((temp, live))
}

/// Sets a key file, just created with mode 0600 & !umask, to exactly 0600
/// when the umask took bits away (a umask like 0277); under the usual
/// umasks (022, 027, 077) there is nothing to do, and a batch saves two
/// system calls per device.
pub fn exactly_secret(file: &File, mode: Mode) -> std::io::Result<()> {
    if mode == Mode::Secret && umask().is_none_or(|m| m & 0o600 != 0) {
        file.set_permissions(std::fs::Permissions::from_mode(Mode::Secret.bits()))?;
    }
    Ok(())
}

/// The process's umask, read once from /proc/self/status (reading it with
/// umask(2) would change it for a moment, under other threads). None where
/// /proc does not tell: then keys are always set to 0600.
fn umask() -> Option<u32> {
    static UMASK: std::sync::OnceLock<Option<u32>> = std::sync::OnceLock::new();
    *UMASK.get_or_init(|| {
        let status = std::fs::read_to_string("/proc/self/status").ok()?;
        let line = status.lines().find_map(|l| l.strip_prefix("Umask:"))?;
        u32::from_str_radix(line.trim(), 8).ok()
    })
}

/// Moves a staged file into place, durably (data synced, renamed, folder
/// synced). Without `force`, an existing target is refused atomically (no
/// check-then-rename race).
pub fn commit(staged: Staged, force: bool) -> Result<()> {
    commit_group(vec![staged], force)
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
    if let Some(kind) = special_kind(Path::new(path)) {
        return write_special(Path::new(path), kind, &mut &data[..]);
    }
    refuse_existing(path, force)?;
    commit(stage(Path::new(path), data, mode)?, force)
}

/// Fails early when `path` exists and `force` is off, before any work is
/// done for it; [`commit`] re-checks atomically.
pub fn refuse_existing(path: &str, force: bool) -> Result<()> {
    if !force && path != "-" && occupied(Path::new(path)) {
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

/// Streams `from` to stdout; a closed pipe is not an error.
pub fn copy_to_stdout(from: &mut impl std::io::Read) -> Result<()> {
    let mut out = std::io::stdout().lock();
    match std::io::copy(from, &mut out).and_then(|_| out.flush()) {
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

/// Refuses to write over the CA files a command signs with (`--ca-key
/// CA.key --key-out CA.key --force` would replace the key just used, for
/// good). `ca_files`: (option, path); a `pkcs11:` URI is not a file.
pub fn refuse_overwriting_ca<'a>(
    outputs: impl IntoIterator<Item = &'a Path>,
    ca_files: &[(&str, &str)],
) -> Result<()> {
    for out in outputs {
        for (option, path) in ca_files {
            if !path.starts_with("pkcs11:") && same_entry(out, Path::new(path)) {
                return Err(Error::new(
                    ErrorKind::Refused,
                    "cannot write output",
                    format!("it is the {option} this command signs with"),
                )
                .file(out.display().to_string())
                .hint("write to another file; --force never replaces the signing CA's files"));
            }
        }
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
    // Different names are different entries: no folder to look up.
    if let (Some(x), Some(y)) = (a.file_name(), b.file_name())
        && x != y
    {
        return false;
    }
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
/// Every file is staged first; they are synced together, then renamed
/// into place, then their folders are synced. If one rename fails, the
/// files already placed are removed again and, with `force`, the files
/// they replaced are put back (each is hard-linked aside before it is
/// replaced).
pub fn commit_all(staged: Vec<Staged>, force: bool) -> Result<()> {
    refuse_duplicates(&staged)?;
    if !force && let Some(s) = staged.iter().find(|s| occupied(&s.target)) {
        return Err(exists_error(&s.target.display().to_string()));
    }
    commit_group(staged, force)
}

/// Fault injection for the kill and signal tests (tests/faults.rs):
/// `DEVCERT_TEST_STOP_AT=<point>` stops the process (SIGSTOP) when it
/// reaches that point, so a test can signal or SIGKILL it exactly there.
/// Points: `staged` (temp files written, nothing synced or renamed),
/// `batch-synced` (a chunk's files synced, not renamed), `batch-renamed`
/// (a chunk in place and synced, not yet in the manifest or registry).
pub fn stop_here(point: &str) {
    static AT: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();
    let at = AT.get_or_init(|| std::env::var("DEVCERT_TEST_STOP_AT").ok());
    if at.as_deref() == Some(point) {
        let _ = signal_hook::low_level::raise(signal_hook::consts::SIGSTOP);
    }
}

fn commit_group(staged: Vec<Staged>, force: bool) -> Result<()> {
    commit_files(staged, force, &[])
}

/// The durable commit of several files: their data synced together, the
/// renames (all or nothing), then their folders and `also_sync` (folders
/// whose entries changed too, e.g. the parents of new folders) synced
/// together. No file is looked up first: without `force` an existing
/// target is refused by the rename itself.
pub fn commit_files(staged: Vec<Staged>, force: bool, also_sync: &[&Path]) -> Result<()> {
    let Some(first) = staged.first() else {
        return Ok(());
    };
    let label = first.target.display().to_string();
    stop_here("staged");
    let files: Vec<&File> = staged.iter().map(|s| s.temp.as_file()).collect();
    sync_together(&files, false).map_err(|e| Error::io("cannot write output", &label, &e))?;
    let folders: BTreeSet<PathBuf> = staged
        .iter()
        .map(|s| parent_dir(&s.target).to_path_buf())
        .chain(also_sync.iter().map(|p| p.to_path_buf()))
        .collect();
    place_all(staged, force)?;
    sync_folders(folders.iter().map(PathBuf::as_path))
        .map_err(|e| Error::io("cannot write output", &label, &e))
}

/// Renames staged files into place, all or nothing (no syncing). A signal
/// cleanup waits until the group is placed, so it never splits one.
pub fn place_all(staged: Vec<Staged>, force: bool) -> Result<()> {
    while_no_cleanup(|| place_each(staged, force))
}

fn place_each(staged: Vec<Staged>, force: bool) -> Result<()> {
    // Keeping replaced files aside only matters when a later file can fail.
    let keep = force && staged.len() > 1;
    let mut placed: Vec<(PathBuf, Option<NamedTempFile<()>>)> = Vec::new();
    for s in staged {
        let target = s.target.clone();
        // A device or pipe is written into: nothing to keep aside or undo
        // (removing it on a rollback would delete the device node).
        let special = special_kind(&target);
        let prior = if keep && special.is_none() {
            keep_aside(&target)
        } else {
            None
        };
        if let Err(e) = rename_staged(s, force, special) {
            for (path, prior) in placed.into_iter().rev() {
                match prior {
                    Some(old) => drop(old.persist(&path)),
                    None => drop(std::fs::remove_file(&path)),
                }
            }
            return Err(e);
        }
        if special.is_none() {
            placed.push((target, prior));
        }
    }
    // Dropping the kept-aside links removes them.
    Ok(())
}

/// `special`: what the target is when it is a device, pipe or socket
/// (looked up once by the caller).
fn rename_staged(staged: Staged, force: bool, special: Option<Special>) -> Result<()> {
    let Staged {
        temp,
        target,
        _live,
    } = staged;
    if let Some(kind) = special {
        let mut data = temp
            .reopen()
            .map_err(|e| Error::io("cannot write output", &target.display().to_string(), &e))?;
        return write_special(&target, kind, &mut data);
    }
    let result = if force {
        temp.persist(&target).map(|_| ())
    } else {
        temp.persist_noclobber(&target).map(|_| ())
    };
    result.map_err(|e| {
        let label = target.display().to_string();
        if e.error.kind() == std::io::ErrorKind::AlreadyExists {
            exists_error(&label)
        } else {
            Error::io("cannot write output", &label, &e.error)
        }
    })
}

/// What an existing output path is, when it is not a regular file, folder
/// or link. Links are not followed (a planted link to a FIFO must not
/// receive a key): `-o /dev/stdout`, a link, is replaced as any link is;
/// `-o -` is stdout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Special {
    /// A character device or FIFO: written into.
    Stream,
    /// A block device or socket: refused.
    Refused(&'static str),
}

/// Whether writing `path` would replace something (a file, folder or
/// link), which needs `--force`.
fn occupied(path: &Path) -> bool {
    path.symlink_metadata().is_ok() && special_kind(path) != Some(Special::Stream)
}

fn special_kind(path: &Path) -> Option<Special> {
    use std::os::unix::fs::FileTypeExt;
    let t = std::fs::symlink_metadata(path).ok()?.file_type();
    if t.is_char_device() || t.is_fifo() {
        Some(Special::Stream)
    } else if t.is_block_device() {
        Some(Special::Refused("it is a block device"))
    } else if t.is_socket() {
        Some(Special::Refused("it is a socket"))
    } else {
        None
    }
}

/// Writes into a device or pipe in place (no temp file, no rename).
fn write_special(path: &Path, kind: Special, data: &mut impl std::io::Read) -> Result<()> {
    let label = path.display().to_string();
    if let Special::Refused(why) = kind {
        return Err(Error::new(ErrorKind::Io, "refusing to write output", why).file(&label));
    }
    let copy = std::fs::OpenOptions::new()
        .write(true)
        .open(path)
        .and_then(|mut f| std::io::copy(data, &mut f).and_then(|_| f.flush()));
    match copy {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        Err(e) => Err(Error::io("cannot write output", &label, &e)),
        Ok(()) => Ok(()),
    }
}

/// The syncs of `files` submitted at once to an io_uring, which runs them
/// side by side in the kernel: no thread of ours per file. `None` where
/// io_uring is not available (an old kernel, a container that forbids
/// it): the caller uses threads.
fn sync_in_ring(files: &[&File], metadata: bool) -> Option<std::io::Result<()>> {
    use io_uring::{IoUring, opcode, types};
    use std::os::fd::AsRawFd;
    let entries = u32::try_from(files.len().next_power_of_two()).ok()?;
    let mut ring = IoUring::new(entries).ok()?;
    for f in files {
        let mut op = opcode::Fsync::new(types::Fd(f.as_raw_fd()));
        if !metadata {
            op = op.flags(types::FsyncFlags::DATASYNC);
        }
        // SAFETY: the entry names only a descriptor, which stays open
        // while the ring runs (and the kernel holds its own reference
        // from submission on); no buffer is lent to the kernel.
        unsafe { ring.submission().push(&op.build()) }.ok()?;
    }
    let mut done = 0;
    let mut result = Ok(());
    while done < files.len() {
        match ring.submit_and_wait(files.len() - done) {
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Some(Err(e)),
            Ok(_) => {}
        }
        for cqe in ring.completion() {
            done += 1;
            if cqe.result() < 0 {
                result = result.and(Err(std::io::Error::from_raw_os_error(-cqe.result())));
            }
        }
    }
    Some(result)
}

/// Makes the contents of `files` durable with as few waits as possible:
/// all synced at once (in an io_uring, else a thread each), so the waits
/// overlap and one journal commit can serve them all. Not `syncfs`: that would also wait
/// for every other program's unwritten data on the filesystem (an `issue`
/// next to a running batch took 62 ms instead of 3-6). `metadata`: fsync
/// (folders), else fdatasync.
pub fn sync_together(files: &[&File], metadata: bool) -> std::io::Result<()> {
    match files {
        [] => Ok(()),
        [one] => sync_one(one, metadata),
        _ => sync_in_ring(files, metadata).unwrap_or_else(|| sync_in_threads(files, metadata)),
    }
}

fn sync_one(f: &File, metadata: bool) -> std::io::Result<()> {
    if metadata {
        f.sync_all()
    } else {
        f.sync_data()
    }
}

/// The fallback of [`sync_in_ring`]: a thread per file but the first.
fn sync_in_threads(files: &[&File], metadata: bool) -> std::io::Result<()> {
    let Some((first, rest)) = files.split_first() else {
        return Ok(());
    };
    std::thread::scope(|scope| {
        let others: Vec<_> = rest
            .iter()
            .map(|f| scope.spawn(move || sync_one(f, metadata)))
            .collect();
        let mut result = sync_one(first, metadata);
        for h in others {
            let r = h
                .join()
                .unwrap_or_else(|_| Err(std::io::Error::other("sync thread failed")));
            result = result.and(r);
        }
        result
    })
}

/// Makes the entries of these folders (new names, renames) durable.
pub fn sync_folders<'a>(dirs: impl IntoIterator<Item = &'a Path>) -> std::io::Result<()> {
    let open: Vec<File> = dirs
        .into_iter()
        .map(File::open)
        .collect::<std::io::Result<_>>()?;
    sync_together(&open.iter().collect::<Vec<_>>(), true)
}

/// Flushes every dirty page and inode of the filesystem holding `fd`, in
/// one call; errors of the writeback are reported (Linux ≥ 5.8). The
/// batch's group commit uses it: one wait for a thousand devices.
pub fn syncfs(fd: &File) -> std::io::Result<()> {
    rustix::fs::syncfs(fd).map_err(std::io::Error::from)
}

/// Creates `dir` and missing parents; returns the folders it created,
/// outermost first. Folders are created 0755 filtered by the umask, so
/// never writable by group or others whatever the umask (they may hold
/// keys: a writable folder lets others swap or delete them, or plant
/// links). One mkdir when only `dir` is missing.
pub fn create_folders(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    match create_folder(dir) {
        Ok(()) => Ok(vec![dir.to_path_buf()]),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && dir.is_dir() => Ok(Vec::new()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let parent = dir
                .parent()
                .filter(|p| !p.as_os_str().is_empty())
                .ok_or(e)?;
            let mut created = create_folders(parent)?;
            create_folder(dir)?;
            created.push(dir.to_path_buf());
            Ok(created)
        }
        Err(e) => Err(e),
    }
}

/// One folder, 0755 & !umask.
pub fn create_folder(dir: &Path) -> std::io::Result<()> {
    std::fs::DirBuilder::new().mode(0o755).create(dir)
}

/// The folders whose entries changed when `created` (from
/// [`create_folders`]) were made: each one's parent.
pub fn parents_of(created: &[PathBuf]) -> Vec<&Path> {
    created.iter().map(|d| parent_dir(d)).collect()
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

pub fn parent_dir(target: &Path) -> &Path {
    match target.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

// --- Temp files removed on SIGINT / SIGTERM / SIGHUP ----------------------

/// Held (shared) while a temp file or folder is created and registered,
/// and (exclusively, for good) by the signal cleanup: nothing is created
/// after the cleanup has listed what to remove.
static GATE: RwLock<()> = RwLock::new(());
/// The temp files and folders that exist now.
static LIVE: Mutex<BTreeSet<PathBuf>> = Mutex::new(BTreeSet::new());
/// Set by the signal handler itself, at delivery: from then on no temp
/// file is made or placed, so a command resumed by SIGCONT after a SIGTERM
/// never races on to finish while the cleanup thread is still waking up.
static ENDING: std::sync::LazyLock<std::sync::Arc<std::sync::atomic::AtomicBool>> =
    std::sync::LazyLock::new(Default::default);

/// Waits for the signal cleanup to end the process, once a signal came.
fn stop_if_ending() {
    while ENDING.load(std::sync::atomic::Ordering::SeqCst) {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// A registered temp path; dropping it unregisters the path (the owner
/// removes or renames the file itself).
pub struct Live(PathBuf);

impl Drop for Live {
    fn drop(&mut self) {
        live().remove(&self.0);
    }
}

fn live() -> std::sync::MutexGuard<'static, BTreeSet<PathBuf>> {
    LIVE.lock().unwrap_or_else(|e| e.into_inner())
}

/// Runs `create` (which makes a temp file or folder and returns its path)
/// so that a signal cleanup either sees the result or runs before it.
pub fn track<T>(
    create: impl FnOnce() -> std::io::Result<(T, PathBuf)>,
) -> std::io::Result<(T, Live)> {
    stop_if_ending();
    let _shared = GATE.read().unwrap_or_else(|e| e.into_inner());
    let (made, path) = create()?;
    live().insert(path.clone());
    Ok((made, Live(path)))
}

/// Runs `create` (something inside a tracked temp folder) so that it
/// cannot race the signal cleanup removing that folder.
pub fn while_no_cleanup<T>(create: impl FnOnce() -> T) -> T {
    stop_if_ending();
    let _shared = GATE.read().unwrap_or_else(|e| e.into_inner());
    create()
}

/// From now on SIGINT, SIGTERM and SIGHUP remove this process's temp files
/// and folders, then end it as the signal would (exit status 128+N). Call
/// once, early, in a command that writes files; a kill -9 still leaves
/// them (`batch` removes a killed run's on its next run).
pub fn remove_temps_on_signals() -> Result<()> {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
    static INSTALLED: std::sync::Once = std::sync::Once::new();
    let mut result = Ok(());
    INSTALLED.call_once(|| {
        result = [SIGINT, SIGTERM, SIGHUP]
            .into_iter()
            .try_for_each(|sig| signal_hook::flag::register(sig, ENDING.clone()).map(drop))
            .and_then(|()| signal_hook::iterator::Signals::new([SIGINT, SIGTERM, SIGHUP]))
            .and_then(|mut signals| {
                std::thread::Builder::new()
                    .name("devcert-signals".into())
                    .spawn(move || {
                        if let Some(sig) = signals.forever().next() {
                            remove_live_temps();
                            let _ = signal_hook::low_level::emulate_default_handler(sig);
                            std::process::exit(128 + sig);
                        }
                    })
                    .map(drop)
            })
            .map_err(|e| Error::io("cannot install signal handlers", "devcert", &e));
    });
    result
}

/// Removes every registered temp path and blocks new ones for good.
fn remove_live_temps() {
    let gate = GATE.write().unwrap_or_else(|e| e.into_inner());
    // Never released: the process is about to end.
    std::mem::forget(gate);
    for path in live().iter() {
        match path.symlink_metadata() {
            Ok(m) if m.is_dir() => drop(std::fs::remove_dir_all(path)),
            Ok(_) => drop(std::fs::remove_file(path)),
            Err(_) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every file's sync is waited for and its failure reported (a pipe
    /// cannot be synced: EINVAL), however the syncs were run.
    #[test]
    fn sync_together_reports_each_failure() {
        let dir = tempfile::tempdir().unwrap();
        let files: Vec<File> = (0..3)
            .map(|i| File::create(dir.path().join(format!("f{i}"))).unwrap())
            .collect();
        let refs: Vec<&File> = files.iter().collect();
        sync_together(&refs, false).unwrap();
        sync_together(&refs, true).unwrap();
        let (reader, _writer) = std::io::pipe().unwrap();
        let pipe = File::from(std::os::fd::OwnedFd::from(reader));
        let with_pipe = [&files[0], &pipe, &files[1]];
        let einval = Some(rustix::io::Errno::INVAL.raw_os_error());
        let code = |r: std::io::Result<()>| r.unwrap_err().raw_os_error();
        assert_eq!(code(sync_together(&with_pipe, false)), einval);
        // Both ways of syncing, whichever this kernel allows.
        assert_eq!(code(sync_in_threads(&with_pipe, false)), einval);
        sync_in_threads(&refs, true).unwrap();
        if let Some(r) = sync_in_ring(&with_pipe, false) {
            assert_eq!(code(r), einval);
            sync_in_ring(&refs, true).unwrap().unwrap();
        }
    }

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
