//! The file backend: records, audit trail, fleet view and change marker
//! as plain files under `.cfgstore/` (see `layout.rs` for every path).
//!
//! A record is `{kind folder}/{key}.json`, replaced durably (temp, fsync,
//! rename, fsync of the folder) under the kind's lock file, so the CLI and
//! the daemon may change records at the same time. A change that fails
//! part-way puts back what it had replaced, so a change reported failed
//! is not in force.

use std::fs::{self, OpenOptions};
use std::io::{self, BufRead, BufReader, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

mod content;

pub use content::{newest_generation, read_floor, read_head, remove_below};

use super::{
    Backend, BranchLock, ChangeWatch, Durability, FirstVersion, ObjectBatch, ObjectsGuard,
    OpenedObject, RecordChange, Records,
};
use crate::error::{Error, Result};
use crate::names::{BranchName, OwnerName, ProjectRef, SnapshotId};
use crate::store::fsutil::{self, LockGuard, Scratch};
use crate::store::layout::Layout;

/// How long a change of records waits for another writer.
const RECORDS_LOCK_TIMEOUT: Duration = Duration::from_secs(10);

/// A data directory and this process's scratch folder in it, shared by
/// the store and its file backend.
#[derive(Debug)]
pub struct Disk {
    layout: Layout,
    /// Made on the first write: a read-only use (`file get`, `fsck`, the
    /// daemon's reads) must keep working on a disk with no space or inodes
    /// left, where making it would fail.
    scratch: OnceLock<Scratch>,
}

impl Disk {
    pub fn new(layout: Layout) -> Disk {
        Disk {
            layout,
            scratch: OnceLock::new(),
        }
    }

    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// The scratch folder temp files are born in, made on first use.
    pub fn scratch(&self) -> Result<&Scratch> {
        if let Some(scratch) = self.scratch.get() {
            return Ok(scratch);
        }
        // Two threads may race here; the loser's folder is removed when
        // its `Scratch` is dropped.
        let scratch = Scratch::create(&self.layout.scratch_parent())?;
        Ok(self.scratch.get_or_init(|| scratch))
    }
}

/// The file backend of a data directory.
#[derive(Debug)]
pub struct Files {
    disk: Arc<Disk>,
}

impl Files {
    pub fn new(disk: Arc<Disk>) -> Files {
        Files { disk }
    }

    /// Announces a change made below the store's rules (a HEAD rolled
    /// forward): a fresh random marker. Best effort: a change it fails to
    /// announce is in force within a second anyway (see `cache.rs`).
    fn announce_any_change(&self) {
        if let Ok(marker) = super::new_marker() {
            let _ = self.announce_change(marker.as_bytes());
        }
    }

    fn layout(&self) -> &Layout {
        self.disk.layout()
    }

    fn folder(&self, kind: Records) -> PathBuf {
        match kind {
            Records::Tokens => self.layout().tokens_dir(),
            Records::Users => self.layout().users_dir(),
            Records::Sessions => self.layout().sessions_dir(),
            Records::Logins => self.layout().internal_dir().join("logins"),
        }
    }

    /// Users and sessions share a lock: changing a user ends their sessions.
    fn lock_file(&self, kind: Records) -> PathBuf {
        match kind {
            Records::Tokens => self.layout().tokens_lock(),
            Records::Users | Records::Sessions | Records::Logins => self.layout().users_lock(),
        }
    }

    fn path(&self, kind: Records, key: &str) -> Result<PathBuf> {
        // Keys are MACs, hashes and validated names; a key that could
        // leave the folder is a bug above, refused rather than followed.
        let plain = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.');
        if key.is_empty() || key.starts_with('.') || !key.chars().all(plain) {
            return Err(Error::invalid(format!("bad {} key {key:?}", kind.what())));
        }
        Ok(self.folder(kind).join(format!("{key}.json")))
    }
}

use content::read_if_present;

/// Every `{key}.json` in a folder (a missing folder has none).
fn read_folder(dir: &Path) -> Result<Vec<(String, Vec<u8>)>> {
    let mut out = Vec::new();
    for entry in fsutil::entries(dir)? {
        let name = entry.file_name();
        let Some(key) = name.to_str().and_then(|n| n.strip_suffix(".json")) else {
            continue;
        };
        // Removed since the listing (a session ended): not an error.
        if let Some(bytes) = read_if_present(&entry.path())? {
            out.push((key.to_string(), bytes));
        }
    }
    Ok(out)
}

/// A change of records in progress: writes go straight to their files;
/// what each replaced is kept, to be put back if the change fails.
struct FileChange<'a> {
    files: &'a Files,
    kind: Records,
    /// Per key touched, in order, what was there before (`None`: nothing).
    undo: Vec<(PathBuf, Option<Vec<u8>>)>,
}

impl FileChange<'_> {
    fn remember(&mut self, path: &Path) -> Result<()> {
        if !self.undo.iter().any(|(p, _)| p == path) {
            let before = read_if_present(path)?;
            self.undo.push((path.to_path_buf(), before));
        }
        Ok(())
    }

    /// Puts back what the change replaced, newest first. Best effort: the
    /// failure that got us here is the one reported.
    fn roll_back(self) {
        for (path, before) in self.undo.into_iter().rev() {
            let _ = match before {
                Some(bytes) => self
                    .files
                    .disk
                    .scratch()
                    .and_then(|scratch| scratch.replace_file(&path, &bytes)),
                None => match fs::remove_file(&path) {
                    Err(e) if e.kind() != io::ErrorKind::NotFound => Err(Error::io(&path, e)),
                    _ => fsutil::fsync_dir(path.parent().expect("a record has a folder")),
                },
            };
        }
    }
}

impl RecordChange for FileChange<'_> {
    fn get(&mut self, key: &str) -> Result<Option<Vec<u8>>> {
        read_if_present(&self.files.path(self.kind, key)?)
    }

    fn list(&mut self) -> Result<Vec<(String, Vec<u8>)>> {
        read_folder(&self.files.folder(self.kind))
    }

    fn put(&mut self, key: &str, bytes: &[u8], durability: Durability) -> Result<()> {
        let path = self.files.path(self.kind, key)?;
        self.remember(&path)?;
        let scratch = self.files.disk.scratch()?;
        match durability {
            Durability::Durable => scratch.replace_file(&path, bytes),
            Durability::Lazy => scratch.place_file(&path, bytes),
        }
    }

    fn remove(&mut self, key: &str) -> Result<()> {
        let path = self.files.path(self.kind, key)?;
        self.remember(&path)?;
        match fs::remove_file(&path) {
            Ok(()) => fsutil::fsync_dir(&self.files.folder(self.kind)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(Error::io(&path, e)),
        }
    }
}

impl Backend for Files {
    fn project(&self, project: &ProjectRef) -> Result<Option<Vec<u8>>> {
        self.project_record(project)
    }

    fn projects(&self, owner: Option<&OwnerName>) -> Result<Vec<ProjectRef>> {
        self.project_refs(owner)
    }

    fn create_project(
        &self,
        project: &ProjectRef,
        record: &[u8],
        main: &BranchName,
        first: &FirstVersion<'_>,
        timeout: Duration,
    ) -> Result<()> {
        self.create_project_folder(project, record, main, first, timeout)
    }

    fn branch_names(&self, project: &ProjectRef) -> Result<Vec<BranchName>> {
        self.branch_names_of(project)
    }

    fn has_branch(&self, project: &ProjectRef, branch: &BranchName) -> Result<bool> {
        Ok(self.has_branch_folder(project, branch))
    }

    fn create_branch(
        &self,
        project: &ProjectRef,
        branch: &BranchName,
        first: &FirstVersion<'_>,
        timeout: Duration,
    ) -> Result<()> {
        self.create_branch_folder(project, branch, first, timeout)
    }

    fn head(&self, project: &ProjectRef, branch: &BranchName) -> Result<SnapshotId> {
        read_head(&self.layout().branch_dir(project, branch))
    }

    fn floor(&self, project: &ProjectRef, branch: &BranchName) -> Result<SnapshotId> {
        read_floor(&self.layout().branch_dir(project, branch))
    }

    fn generation(
        &self,
        project: &ProjectRef,
        branch: &BranchName,
        version: SnapshotId,
    ) -> Result<Option<Vec<u8>>> {
        self.generation_file(project, branch, version, true)
    }

    fn generation_start(
        &self,
        project: &ProjectRef,
        branch: &BranchName,
        version: SnapshotId,
    ) -> Result<Option<Vec<u8>>> {
        self.generation_file(project, branch, version, false)
    }

    fn stored_versions(
        &self,
        project: &ProjectRef,
        branch: &BranchName,
    ) -> Result<Vec<SnapshotId>> {
        self.versions_in_folder(project, branch)
    }

    fn lock_branch<'a>(
        &'a self,
        project: &ProjectRef,
        branch: &BranchName,
        timeout: Duration,
    ) -> Result<Box<dyn BranchLock + 'a>> {
        Ok(Box::new(self.lock_branch_folder(project, branch, timeout)?))
    }

    fn object(&self, project: &ProjectRef, hash: &str) -> Result<Option<Vec<u8>>> {
        self.read_object(project, hash)
    }

    fn object_opened(&self, project: &ProjectRef, hash: &str) -> Result<Option<OpenedObject>> {
        self.read_object_opened(project, hash)
    }

    fn put_object(
        &self,
        project: &ProjectRef,
        hash: &str,
        bytes: &[u8],
        batch: &mut ObjectBatch,
    ) -> Result<bool> {
        self.place_object(&self.layout().object_file(project, hash), bytes, batch)
    }

    fn sync_objects(&self, project: &ProjectRef, batch: &ObjectBatch) -> Result<()> {
        self.sync_batch(&self.layout().objects_dir(project), batch)
    }

    fn object_by_prefix(
        &self,
        project: &ProjectRef,
        prefix: &str,
    ) -> Result<Option<(String, Vec<u8>)>> {
        self.find_object(project, prefix)
    }

    fn object_hashes(&self, project: &ProjectRef) -> Result<Vec<String>> {
        self.object_names(project)
    }

    fn count_objects(&self, project: &ProjectRef) -> Result<(u64, u64)> {
        self.count_project_objects(project)
    }

    fn objects_in_flight<'a>(
        &'a self,
        project: &ProjectRef,
        exclusive: bool,
        timeout: Duration,
    ) -> Result<Box<dyn ObjectsGuard + 'a>> {
        Ok(Box::new(self.gc_guard(project, exclusive, timeout)?))
    }

    fn collect_objects(
        &self,
        project: &ProjectRef,
        keep: &dyn Fn(&str) -> bool,
    ) -> Result<(u64, u64)> {
        self.remove_objects(project, keep)
    }

    fn record(&self, kind: Records, key: &str) -> Result<Option<Vec<u8>>> {
        read_if_present(&self.path(kind, key)?)
    }

    fn records(&self, kind: Records) -> Result<Vec<(String, Vec<u8>)>> {
        read_folder(&self.folder(kind))
    }

    fn change_records(
        &self,
        kind: Records,
        change: &mut dyn FnMut(&mut dyn RecordChange) -> Result<()>,
    ) -> Result<()> {
        fsutil::create_dir_durable(&self.folder(kind))?;
        let _lock = LockGuard::acquire(&self.lock_file(kind), RECORDS_LOCK_TIMEOUT)?;
        let mut records = FileChange {
            files: self,
            kind,
            undo: Vec::new(),
        };
        match change(&mut records) {
            Ok(()) => Ok(()),
            Err(e) => {
                records.roll_back();
                Err(e)
            }
        }
    }

    fn append_audit(&self, line: &[u8], durable: bool) -> Result<()> {
        let path = self.layout().audit_log();
        fsutil::failpoint("audit.append", &path)?;
        let mut line = line.to_vec();
        line.push(b'\n');
        let _lock = LockGuard::acquire(&self.layout().audit_lock(), RECORDS_LOCK_TIMEOUT)?;
        let existed = path.exists();
        let mut file = OpenOptions::new()
            .append(true)
            .create(true)
            .mode(fsutil::FILE_MODE)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(&path)
            .map_err(|e| Error::io(&path, e))?;
        file.write_all(&line).map_err(|e| Error::io(&path, e))?;
        if durable {
            file.sync_data().map_err(|e| Error::io(&path, e))?;
            if !existed {
                fsutil::fsync_dir(&self.layout().internal_dir())?;
            }
        }
        Ok(())
    }

    fn audit_lines(&self, each: &mut dyn FnMut(&[u8])) -> Result<()> {
        let path = self.layout().audit_log();
        let file = match fsutil::open_regular(&path) {
            Ok(file) => file,
            Err(Error::Io { source, .. }) if source.kind() == io::ErrorKind::NotFound => {
                return Ok(())
            }
            Err(e) => return Err(e),
        };
        let mut reader = BufReader::new(file);
        let mut line = Vec::new();
        loop {
            line.clear();
            let n = reader
                .read_until(b'\n', &mut line)
                .map_err(|e| Error::io(&path, e))?;
            if n == 0 {
                return Ok(());
            }
            each(line.strip_suffix(b"\n").unwrap_or(&line));
        }
    }

    fn fleet(&self, project: &ProjectRef) -> Result<Option<Vec<u8>>> {
        read_if_present(&self.layout().fleet_file(project))
    }

    fn put_fleet(&self, project: &ProjectRef, bytes: &[u8]) -> Result<()> {
        let path = self.layout().fleet_file(project);
        let folder = path.parent().expect("a fleet file has a folder");
        fsutil::create_dir(folder.parent().expect("fleet/{owner}"))?;
        fsutil::create_dir(folder)?;
        self.disk.scratch()?.place_file(&path, bytes)
    }

    fn announce_change(&self, marker: &[u8]) -> Result<()> {
        self.disk
            .scratch()?
            .place_file(&self.layout().changes_file(), marker)
    }

    fn watch_changes(&self) -> Box<dyn ChangeWatch> {
        Box::new(MarkerWatch::new(self.layout().changes_file()))
    }
}

/// The change marker watched by a daemon. Writers replace the marker by
/// rename. Per request, an inotify watch on its folder says whether that
/// happened (one non-blocking read); failing inotify, a `stat` of the path
/// is compared with the held file's inode. Only on a change is the new
/// marker opened and read.
#[derive(Debug)]
struct MarkerWatch {
    path: PathBuf,
    /// The marker file as last opened, with its device and inode.
    held: Mutex<Option<(fs::File, u64, u64)>>,
    /// Whether the marker was read at least once.
    seen: std::sync::atomic::AtomicBool,
    /// An inotify watch on the marker's folder, when the kernel offers one.
    inotify: Mutex<Option<inotify::Inotify>>,
}

impl MarkerWatch {
    /// Watches the folder of the marker; made before the marker is read
    /// for the first time, so no change can fall between the two.
    fn new(path: PathBuf) -> MarkerWatch {
        use inotify::{Inotify, WatchMask};
        let watch = path.parent().map(|folder| {
            Inotify::init().and_then(|inotify| {
                inotify.watches().add(
                    folder,
                    WatchMask::MOVED_TO
                        | WatchMask::CREATE
                        | WatchMask::CLOSE_WRITE
                        | WatchMask::DELETE,
                )?;
                Ok(inotify)
            })
        });
        let inotify = match watch {
            Some(Ok(inotify)) => Some(inotify),
            Some(Err(e)) => {
                tracing::warn!(error = %e, "no inotify watch on the change marker; checking it with stat per request");
                None
            }
            None => None,
        };
        MarkerWatch {
            path,
            held: Mutex::new(None),
            seen: Default::default(),
            inotify: Mutex::new(inotify),
        }
    }

    /// Whether the marker may differ from the held one: with an inotify
    /// watch, one non-blocking read of queued events; without one, always.
    fn may_have_changed(&self) -> bool {
        let mut watch = self.inotify.lock().expect("marker watch");
        let Some(inotify) = watch.as_mut() else {
            return true;
        };
        // Events are rare (a write, a lock taken): the queue is read until
        // empty, so a change is never left behind in an unread batch.
        let mut buffer = [0u8; 1024];
        let name = self.path.file_name();
        let mut changed = false;
        loop {
            match inotify.read_events(&mut buffer) {
                Ok(events) => {
                    let mut any = false;
                    for event in events {
                        any = true;
                        // An overflowed queue may have lost the event we need.
                        changed |= event.mask.contains(inotify::EventMask::Q_OVERFLOW)
                            || event.name == name;
                    }
                    if !any {
                        return changed;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return changed,
                Err(_) => {
                    *watch = None;
                    return true;
                }
            }
        }
    }
}

impl ChangeWatch for MarkerWatch {
    /// `changed` runs with the watch held: a check that comes after one
    /// that saw a change waits until the caches know of it.
    fn check(&self, changed: &mut dyn FnMut(&[u8])) -> Result<()> {
        use std::io::Read;
        use std::os::unix::fs::MetadataExt;
        use std::sync::atomic::Ordering;
        let path = &self.path;
        let mut held = self.held.lock().expect("marker watch");
        let seen = self.seen.load(Ordering::Relaxed);
        if seen && !self.may_have_changed() {
            return Ok(());
        }
        let current = match fs::metadata(path) {
            Ok(meta) => Some((meta.dev(), meta.ino())),
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(Error::io(path, e)),
        };
        // Holding the old marker open keeps its inode number from being
        // reused, so the same (device, inode) at the path is the same marker.
        if let (Some(now), Some((_, dev, ino))) = (current, held.as_ref()) {
            if now == (*dev, *ino) {
                return Ok(());
            }
        }
        let (file, marker) = match fs::File::open(path) {
            Ok(mut file) => {
                let meta = file.metadata().map_err(|e| Error::io(path, e))?;
                let mut marker = Vec::new();
                file.read_to_end(&mut marker)
                    .map_err(|e| Error::io(path, e))?;
                (Some((file, meta.dev(), meta.ino())), marker)
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => (None, Vec::new()),
            Err(e) => return Err(Error::io(path, e)),
        };
        *held = file;
        self.seen.store(true, Ordering::Relaxed);
        changed(&marker);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_files(name: &str) -> (PathBuf, Files) {
        let dir =
            std::env::temp_dir().join(format!("cfgstore-files-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let (store, _) = crate::store::Store::init(&dir).unwrap();
        drop(store);
        let files = Files::new(Arc::new(Disk::new(Layout::new(&dir))));
        (dir, files)
    }

    /// A change that fails part-way leaves nothing of itself in force:
    /// what it replaced is put back, what it created is gone.
    #[test]
    fn a_failed_change_puts_back_what_it_wrote() {
        let (dir, files) = temp_files("undo");
        let backend: &dyn Backend = &files;
        backend
            .change(Records::Tokens, |t| {
                t.put("aa", b"old", Durability::Durable)
            })
            .unwrap();
        let failed = backend.change(Records::Tokens, |t| {
            t.put("aa", b"new", Durability::Durable)?;
            t.put("bb", b"created", Durability::Durable)?;
            assert_eq!(
                t.get("aa")?.as_deref(),
                Some(&b"new"[..]),
                "a change reads its writes"
            );
            t.remove("aa")?;
            Err::<(), _>(Error::Conflict("no".into()))
        });
        assert!(matches!(failed, Err(Error::Conflict(_))));
        assert_eq!(
            backend.record(Records::Tokens, "aa").unwrap().as_deref(),
            Some(&b"old"[..])
        );
        assert_eq!(backend.record(Records::Tokens, "bb").unwrap(), None);
        let mut all = backend.records(Records::Tokens).unwrap();
        all.sort();
        assert_eq!(all, vec![("aa".to_string(), b"old".to_vec())]);
        fs::remove_dir_all(dir).unwrap();
    }

    /// Keys are ours (MACs, hashes, validated names); one that could
    /// leave its folder is refused, never followed.
    #[test]
    fn keys_cannot_leave_their_folder() {
        let (dir, files) = temp_files("keys");
        let backend: &dyn Backend = &files;
        for key in ["", "../users/x", ".hidden", "a/b", "a\0b"] {
            assert!(
                matches!(backend.record(Records::Users, key), Err(Error::Invalid(_))),
                "{key:?}"
            );
            let put = backend.change(Records::Users, |u| u.put(key, b"x", Durability::Durable));
            assert!(matches!(put, Err(Error::Invalid(_))), "{key:?}");
        }
        assert!(backend.records(Records::Users).unwrap().is_empty());
        fs::remove_dir_all(dir).unwrap();
    }

    /// The audit trail comes back oldest first, line by line, a torn last
    /// line (a crash mid-append) included for the caller to skip.
    #[test]
    fn audit_lines_come_back_in_order() {
        let (dir, files) = temp_files("audit");
        files.append_audit(b"{\"a\":1}", true).unwrap();
        files.append_audit(b"{\"a\":2}", false).unwrap();
        let mut log = OpenOptions::new()
            .append(true)
            .open(files.layout().audit_log())
            .unwrap();
        log.write_all(b"{\"a\":").unwrap();
        let mut lines = Vec::new();
        files
            .audit_lines(&mut |line| lines.push(String::from_utf8(line.to_vec()).unwrap()))
            .unwrap();
        assert_eq!(lines, ["{\"a\":1}", "{\"a\":2}", "{\"a\":"]);
        fs::remove_dir_all(dir).unwrap();
    }

    /// A watch reports a marker announced after it was made, once.
    #[test]
    fn a_watch_sees_each_announced_change_once() {
        let (dir, files) = temp_files("watch");
        let watch = files.watch_changes();
        let check = || {
            let mut seen = Vec::new();
            watch.check(&mut |m| seen.push(m.to_vec())).unwrap();
            seen
        };
        assert_eq!(check().len(), 1, "the first check reads the marker");
        assert!(check().is_empty());
        files.announce_change(b"m1").unwrap();
        assert_eq!(check(), [b"m1"]);
        assert!(check().is_empty());
        files.announce_change(b"m2").unwrap();
        assert_eq!(check(), [b"m2"]);
        fs::remove_dir_all(dir).unwrap();
    }
}
