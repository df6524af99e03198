//! Durable filesystem primitives: the durable replace, directory fsync,
//! safe opens, and the per-process scratch folder temp files are born in.
//!
//! The durable replace is, in order: create the temp file (`O_EXCL`,
//! `O_NOFOLLOW`, 0600) in the scratch folder, write it all, `fsync` it,
//! `rename` it over the target, `fsync` the target's directory. Only after
//! the last step may a caller report success. A failed `fsync` is never
//! retried: Linux marks the pages clean after reporting the error, so a
//! retry would "succeed" without the data.

use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use super::failpoint;
use crate::error::{Error, Result};

/// Passes a failpoint, its error (when a test injects one) naming `path`.
pub fn failpoint(name: &str, path: &Path) -> Result<()> {
    failpoint::hit(name).map_err(|e| Error::io(path, e))
}

pub const FILE_MODE: u32 = 0o600;
pub const DIR_MODE: u32 = 0o700;

/// Opens an existing file for reading, refusing symlinks (`O_NOFOLLOW`) and
/// never blocking on a planted FIFO (`O_NONBLOCK`), then checks that what
/// was opened is a regular file.
pub fn open_regular(path: &Path) -> Result<File> {
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(path)
        .map_err(|e| match e.raw_os_error() {
            Some(libc::ELOOP) => Error::corrupt(path, "symbolic link where a file was expected"),
            _ => Error::io(path, e),
        })?;
    let meta = file.metadata().map_err(|e| Error::io(path, e))?;
    if !meta.is_file() {
        return Err(Error::corrupt(path, "not a regular file"));
    }
    // The store never makes hard links: one here was planted, and may
    // share its inode with a file outside the store.
    if std::os::unix::fs::MetadataExt::nlink(&meta) > 1 {
        return Err(Error::corrupt(path, "file has several hard links"));
    }
    Ok(file)
}

/// Checks that no folder between `root` (exclusive) and `path` (inclusive)
/// is a symbolic link, so that what is read or written under `path` stays
/// inside `root` (`O_NOFOLLOW` guards only the last component of a path).
/// Components that do not exist yet are fine: they will be created as
/// real folders. Errors: `Corrupt` for a link or a non-folder.
pub fn check_real_dirs(root: &Path, path: &Path) -> Result<()> {
    let Ok(relative) = path.strip_prefix(root) else {
        return Err(Error::corrupt(path, "path outside the data directory"));
    };
    let mut current = root.to_path_buf();
    for component in relative.components() {
        current.push(component);
        match fs::symlink_metadata(&current) {
            Ok(meta) if meta.file_type().is_symlink() => {
                return Err(Error::corrupt(
                    &current,
                    "symbolic link where a folder was expected",
                ))
            }
            Ok(meta) if !meta.is_dir() => return Err(Error::corrupt(&current, "not a folder")),
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(Error::io(&current, e)),
        }
    }
    Ok(())
}

/// The entries of a folder; a missing folder has none.
pub fn entries(dir: &Path) -> Result<Vec<fs::DirEntry>> {
    match fs::read_dir(dir) {
        Ok(entries) => entries.map(|e| e.map_err(|e| Error::io(dir, e))).collect(),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(Error::io(dir, e)),
    }
}

/// Reads a whole small file through `open_regular`.
pub fn read_regular(path: &Path) -> Result<Vec<u8>> {
    Ok(read_regular_open(path)?.0)
}

/// `read_regular`, and the file it read, still open.
pub fn read_regular_open(path: &Path) -> Result<(Vec<u8>, File)> {
    let mut file = open_regular(path)?;
    let mut buf = Vec::new();
    file.read_to_end(&mut buf).map_err(|e| Error::io(path, e))?;
    Ok((buf, file))
}

/// `fsync` of a directory, so that entries created, renamed or removed in
/// it survive a power cut.
pub fn fsync_dir(path: &Path) -> Result<()> {
    failpoint("fs.dirsync.before", path)?;
    let dir = File::open(path).map_err(|e| Error::io(path, e))?;
    dir.sync_all().map_err(|e| Error::io(path, e))?;
    failpoint("fs.dirsync.after", path)
}

/// Creates one directory with mode 0700. An existing directory is fine.
pub fn create_dir(path: &Path) -> Result<()> {
    match DirBuilder::new().mode(DIR_MODE).create(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists && path.is_dir() => Ok(()),
        Err(e) => Err(Error::io(path, e)),
    }
}

/// Creates a directory (and its parent's entry) durably: mkdir, then fsync
/// of the parent. Returns whether it was created.
pub fn create_dir_durable(path: &Path) -> Result<bool> {
    match DirBuilder::new().mode(DIR_MODE).create(path) {
        Ok(()) => {
            failpoint("fs.mkdir.after", path)?;
            if let Some(parent) = path.parent() {
                fsync_dir(parent)?;
            }
            Ok(true)
        }
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists && path.is_dir() => Ok(false),
        Err(e) => Err(Error::io(path, e)),
    }
}

/// Writes `bytes` to a new file (`O_EXCL`, mode 0600) and fsyncs it.
pub fn write_new(path: &Path, bytes: &[u8]) -> Result<()> {
    let file = create_and_write(path, bytes)?;
    file.sync_all().map_err(|e| Error::io(path, e))?;
    failpoint("fs.temp.synced", path)
}

/// A new file (never an existing one, never through a link) holding `bytes`.
fn create_and_write(path: &Path, bytes: &[u8]) -> Result<File> {
    failpoint("fs.temp.before", path)?;
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(FILE_MODE)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
        .map_err(|e| Error::io(path, e))?;
    file.write_all(bytes).map_err(|e| Error::io(path, e))?;
    failpoint("fs.temp.written", path)?;
    Ok(file)
}

/// `write_new` without the fsync: for bulk writes that sync the whole
/// filesystem once afterwards (`sync_filesystem`).
pub fn write_new_unsynced(path: &Path, bytes: &[u8]) -> Result<()> {
    create_and_write(path, bytes).map(drop)
}

/// Flushes everything written to the filesystem holding `path`, data and
/// metadata (syncfs(2)): one call instead of an fsync per file.
pub fn sync_filesystem(path: &Path) -> Result<()> {
    let dir = File::open(path).map_err(|e| Error::io(path, e))?;
    rustix::fs::syncfs(&dir).map_err(|e| Error::io(path, e.into()))?;
    failpoint("fs.syncfs.after", path)
}

/// `rename`, with the error naming the target.
pub fn rename(from: &Path, to: &Path) -> Result<()> {
    fs::rename(from, to).map_err(|e| Error::io(to, e))?;
    failpoint("fs.rename.after", to)
}

/// Exclusive cross-process lock on a dedicated lock file (flock through
/// fs2), released when dropped or when the process dies, so SIGKILL leaves
/// no stale lock. The lock file is never replaced by rename.
#[derive(Debug)]
pub struct LockGuard {
    file: File,
}

impl LockGuard {
    /// Waits up to `timeout` for the lock, polling so that a stuck holder
    /// turns into `Error::Busy` instead of a hung caller.
    pub fn acquire(path: &Path, timeout: Duration) -> Result<LockGuard> {
        LockGuard::take(path, timeout, false)
    }

    /// Like `acquire`, but shared: any number of holders at once, none
    /// while someone holds it exclusively.
    pub fn acquire_shared(path: &Path, timeout: Duration) -> Result<LockGuard> {
        LockGuard::take(path, timeout, true)
    }

    fn take(path: &Path, timeout: Duration, shared: bool) -> Result<LockGuard> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(FILE_MODE)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(path)
            .map_err(|e| Error::io(path, e))?;
        let deadline = Instant::now() + timeout;
        let mut pause = Duration::from_millis(1);
        loop {
            // Called through fs2 explicitly: std's File::try_lock has a
            // different signature and would shadow a method call.
            let locked = if shared {
                fs2::FileExt::try_lock_shared(&file)
            } else {
                fs2::FileExt::try_lock_exclusive(&file)
            };
            match locked {
                Ok(()) => return Ok(LockGuard { file }),
                Err(e)
                    if e.kind() == io::ErrorKind::WouldBlock
                        || e.raw_os_error() == Some(libc::EWOULDBLOCK) =>
                {
                    if Instant::now() >= deadline {
                        return Err(Error::Busy(format!(
                            "{} is held by another writer",
                            path.display()
                        )));
                    }
                    std::thread::sleep(pause);
                    pause = (pause * 2).min(Duration::from_millis(20));
                }
                Err(e) => return Err(Error::io(path, e)),
            }
        }
    }

    /// Takes the lock only if it is free right now.
    pub fn try_acquire(path: &Path) -> Result<Option<LockGuard>> {
        match LockGuard::acquire(path, Duration::ZERO) {
            Ok(guard) => Ok(Some(guard)),
            Err(Error::Busy(_)) => Ok(None),
            Err(e) => Err(e),
        }
    }
}

impl Drop for LockGuard {
    fn drop(&mut self) {
        // Closing the file releases the flock anyway; unlocking first makes
        // the release independent of other handles to the same file.
        let _ = fs2::FileExt::unlock(&self.file);
    }
}

/// This process's scratch folder, `.cfgstore/tmp/{pid}.{random}/`, guarded
/// by the sibling lock file `{pid}.{random}.lock`, held for the Store's whole
/// life. The recovery sweep removes every scratch folder whose lock it can
/// take, i.e. whose process is gone, so temp files never linger and never
/// appear inside a branch, project or object folder.
///
/// The lock file is created and locked under a name sweepers ignore
/// (`.lock.new`) and only then renamed to `.lock`, so a sweeper can never
/// take the lock of a folder whose owner is still starting up.
#[derive(Debug)]
pub struct Scratch {
    dir: PathBuf,
    counter: AtomicU64,
    _lock: LockGuard,
}

const SCRATCH_LOCK_SUFFIX: &str = ".lock";
const SCRATCH_NEW_LOCK_SUFFIX: &str = ".lock.new";

impl Scratch {
    pub fn create(parent: &Path) -> Result<Scratch> {
        create_dir(parent)?;
        let mut random = [0u8; 6];
        getrandom::getrandom(&mut random).map_err(|e| Error::io(parent, io::Error::other(e)))?;
        let name = format!("{}.{}", std::process::id(), hex(&random));
        let new_lock = parent.join(format!("{name}{SCRATCH_NEW_LOCK_SUFFIX}"));
        let lock = LockGuard::acquire(&new_lock, Duration::from_secs(1))?;
        rename(
            &new_lock,
            &parent.join(format!("{name}{SCRATCH_LOCK_SUFFIX}")),
        )?;
        let dir = parent.join(name);
        create_dir(&dir)?;
        Ok(Scratch {
            dir,
            counter: AtomicU64::new(0),
            _lock: lock,
        })
    }

    /// A fresh path inside the scratch folder (nothing is created).
    pub fn temp_path(&self) -> PathBuf {
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        self.dir.join(format!("t{n}"))
    }

    /// Writes `bytes` durably to `target`: temp file, fsync, rename, fsync
    /// of the target's folder.
    pub fn replace_file(&self, target: &Path, bytes: &[u8]) -> Result<()> {
        self.place_file(target, bytes)?;
        fsync_dir(target.parent().expect("target has a parent"))
    }

    /// Like `replace_file` but leaves the folder fsync to the caller, who
    /// may place several files in one folder and fsync it once.
    pub fn place_file(&self, target: &Path, bytes: &[u8]) -> Result<()> {
        self.place(target, bytes, true)
    }

    /// `place_file` without any fsync: the caller syncs the filesystem
    /// (`sync_filesystem`) before anything depends on the file.
    pub fn place_file_unsynced(&self, target: &Path, bytes: &[u8]) -> Result<()> {
        self.place(target, bytes, false)
    }

    fn place(&self, target: &Path, bytes: &[u8], sync: bool) -> Result<()> {
        let temp = self.temp_path();
        let guard = TempGuard(&temp);
        if sync {
            write_new(&temp, bytes)?;
        } else {
            write_new_unsynced(&temp, bytes)?;
        }
        rename(&temp, target)?;
        std::mem::forget(guard);
        Ok(())
    }

    /// Finds (and with `remove`, deletes) the scratch space of processes
    /// that are gone. Returns what was found.
    pub fn sweep_abandoned(parent: &Path, remove: bool) -> Result<Vec<PathBuf>> {
        let entries = match fs::read_dir(parent) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(Error::io(parent, e)),
        };
        let old = |path: &Path| {
            fs::symlink_metadata(path)
                .and_then(|m| m.modified())
                .is_ok_and(|t| t.elapsed().unwrap_or_default() > Duration::from_secs(60))
        };
        let mut found = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| Error::io(parent, e))?;
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().into_owned();
            if let Some(stem) = name.strip_suffix(SCRATCH_LOCK_SUFFIX) {
                if let Some(guard) = LockGuard::try_acquire(&path)? {
                    let dir = parent.join(stem);
                    if remove {
                        // Several processes may sweep at once; whoever comes
                        // second finds things gone, which is fine.
                        remove_tree(&dir)?;
                        remove_file(&path)?;
                    }
                    drop(guard);
                    found.push(dir);
                }
            } else if name.ends_with(SCRATCH_NEW_LOCK_SUFFIX) {
                // A process died while starting up.
                if old(&path) {
                    if remove {
                        remove_file(&path)?;
                    }
                    found.push(path);
                }
            } else if !parent.join(format!("{name}{SCRATCH_LOCK_SUFFIX}")).exists() && old(&path) {
                // A folder whose lock a sweeper removed before it died.
                if remove {
                    remove_tree(&path)?;
                }
                found.push(path);
            }
        }
        Ok(found)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

fn remove_file(path: &Path) -> Result<()> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(Error::io(path, e)),
        _ => Ok(()),
    }
}

fn remove_tree(path: &Path) -> Result<()> {
    match fs::remove_dir_all(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(Error::io(path, e)),
        _ => Ok(()),
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.dir);
        let mut lock = self.dir.clone().into_os_string();
        lock.push(SCRATCH_LOCK_SUFFIX);
        let _ = fs::remove_file(lock);
    }
}

/// Removes a temp file when an error unwinds past it.
struct TempGuard<'a>(&'a Path);

impl Drop for TempGuard<'_> {
    fn drop(&mut self) {
        let _ = fs::remove_file(self.0);
    }
}

pub use crate::hex::encode as hex;

/// Removes a staging folder when an error unwinds past it.
pub struct RemoveOnDrop(pub PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// Renames a folder built in scratch to `target` and fsyncs `parent`. If
/// either step fails, the folder is moved back out (the rename may have
/// happened before the fsync failed), so that a creation reported failed
/// does not exist; the caller's guard then removes it from scratch.
pub fn move_into_place(staging: &Path, target: &Path, parent: &Path) -> Result<()> {
    let placed = rename(staging, target).and_then(|()| fsync_dir(parent));
    if let Err(e) = placed {
        if target.exists() && !staging.exists() {
            let _ = fs::rename(target, staging);
            let _ = fsync_dir(parent);
        }
        return Err(e);
    }
    Ok(())
}
