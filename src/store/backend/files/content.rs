//! Content in folders: `{owner}/{repoId}/` per project (see `layout.rs`).
//!
//! A branch is a folder of generation files `v0001`…, a `HEAD` naming the
//! live one and a `lock` writers hold (flock, so the CLI and the daemon
//! exclude each other). Publishing a version writes its generation file
//! beside the others (temp, fsync, rename, fsync of the folder: the commit
//! point), then replaces `HEAD`. `HEAD` is a hint: a crash between the two
//! leaves a newer complete generation, which the next writer's lock (or
//! the sweep at open) rolls `HEAD` forward to. Objects live once per
//! project in `objects/{ab}/{hash}`. A project or a branch is built whole
//! in scratch and renamed into place, so a crash leaves all of it or none.

use std::fs;
use std::io::{self, BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::time::Duration;

use walkdir::WalkDir;

use super::Files;
use crate::error::{Error, Result};
use crate::names::{BranchName, OwnerName, ProjectRef, RepoId, SnapshotId};
use crate::store::backend::{BranchLock, FirstVersion, ObjectBatch, ObjectsGuard, OpenedObject};
use crate::store::fsutil::{
    self, check_real_dirs, create_dir, create_dir_durable, fsync_dir, move_into_place,
    open_regular, read_regular, LockGuard, RemoveOnDrop,
};
use crate::store::layout;
use crate::store::sorted_names;

impl ObjectsGuard for LockGuard {}

/// Reads a file that may be absent.
pub(super) fn read_if_present(path: &Path) -> Result<Option<Vec<u8>>> {
    if_present(read_regular(path))
}

/// A read of a file that may be absent: `None` for a missing one.
fn if_present<T>(read: Result<T>) -> Result<Option<T>> {
    match read {
        Ok(found) => Ok(Some(found)),
        Err(Error::Io { source, .. }) if source.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// The live version a branch folder's HEAD names.
pub fn read_head(dir: &Path) -> Result<SnapshotId> {
    let path = layout::head_file(dir);
    let bytes = read_regular(&path)?;
    let text = std::str::from_utf8(&bytes).unwrap_or("");
    layout::parse_generation_name(text.trim_end())
        .ok_or_else(|| Error::corrupt(&path, format!("HEAD holds {text:?}")))
}

/// The newest generation in a branch folder, for a missing or broken HEAD.
pub fn newest_generation(dir: &Path) -> Result<SnapshotId> {
    let mut newest = None;
    for entry in fs::read_dir(dir).map_err(|e| Error::io(dir, e))? {
        let entry = entry.map_err(|e| Error::io(dir, e))?;
        if let Some(v) = entry
            .file_name()
            .to_str()
            .and_then(layout::parse_generation_name)
        {
            newest = newest.max(Some(v));
        }
    }
    newest.ok_or_else(|| Error::corrupt(dir, "branch has no versions"))
}

/// The oldest version a branch folder keeps (`v0001` until a prune).
pub fn read_floor(dir: &Path) -> Result<SnapshotId> {
    let path = layout::floor_file(dir);
    match read_if_present(&path)? {
        Some(bytes) => {
            let text = std::str::from_utf8(&bytes).unwrap_or("");
            layout::parse_generation_name(text.trim_end())
                .ok_or_else(|| Error::corrupt(&path, format!("FLOOR holds {text:?}")))
        }
        None => Ok(SnapshotId::new(1).expect("v0001")),
    }
}

impl Files {
    fn project_dir(&self, project: &ProjectRef) -> PathBuf {
        self.layout().project_dir(project)
    }

    fn branch_dir(&self, project: &ProjectRef, branch: &BranchName) -> PathBuf {
        self.layout().branch_dir(project, branch)
    }

    pub(super) fn project_record(&self, project: &ProjectRef) -> Result<Option<Vec<u8>>> {
        // A link planted where an owner or project folder should be is not
        // a project (listings skip it too): it may lead out of the store.
        match check_real_dirs(self.layout().root(), &self.project_dir(project)) {
            Err(Error::Corrupt { .. }) => return Ok(None),
            other => other?,
        }
        read_if_present(&self.layout().project_file(project))
    }

    pub(super) fn project_refs(&self, owner: Option<&OwnerName>) -> Result<Vec<ProjectRef>> {
        let owners: Vec<OwnerName> = match owner {
            Some(o) => vec![o.clone()],
            None => sorted_names(self.layout().root(), |n| OwnerName::parse(n).ok())?,
        };
        let mut out = Vec::new();
        for owner in owners {
            for repo in sorted_names(&self.layout().owner_dir(&owner), |n| RepoId::parse(n).ok())? {
                out.push(ProjectRef::new(owner.clone(), repo));
            }
        }
        Ok(out)
    }

    /// The whole project folder is built in scratch and moved into place
    /// with one rename: a crash leaves either no project or a complete one.
    pub(super) fn create_project_folder(
        &self,
        project: &ProjectRef,
        record: &[u8],
        main: &BranchName,
        first: &FirstVersion<'_>,
        timeout: Duration,
    ) -> Result<()> {
        let _lock = LockGuard::acquire(&self.layout().store_lock(), timeout)?;
        let target = self.project_dir(project);
        if target.exists() {
            return Err(Error::Conflict(format!("project {project} already exists")));
        }
        let staging = self.disk.scratch()?.temp_path();
        create_dir(&staging)?;
        let guard = RemoveOnDrop(staging.clone());
        fsutil::write_new(&staging.join(layout::PROJECT_FILE), record)?;
        let objects = staging.join(layout::OBJECTS_DIR);
        create_dir(&objects)?;
        let branches = staging.join(layout::BRANCHES_DIR);
        create_dir(&branches)?;
        self.stage_branch(&branches.join(main.folder_name()), &objects, first)?;
        fsync_dir(&branches)?;
        fsync_dir(&objects)?;
        fsync_dir(&staging)?;
        let owner_dir = self.layout().owner_dir(&project.owner);
        check_real_dirs(self.layout().root(), &owner_dir)?;
        create_dir_durable(&owner_dir)?;
        move_into_place(&staging, &target, &owner_dir)?;
        std::mem::forget(guard);
        Ok(())
    }

    pub(super) fn branch_names_of(&self, project: &ProjectRef) -> Result<Vec<BranchName>> {
        let dir = self.layout().branches_dir(project);
        check_real_dirs(self.layout().root(), &dir)?;
        sorted_names(&dir, |n| BranchName::from_folder_name(n).ok())
    }

    /// A symlinked branch folder is not a branch (nor in listings).
    pub(super) fn has_branch_folder(&self, project: &ProjectRef, branch: &BranchName) -> bool {
        fs::symlink_metadata(self.branch_dir(project, branch)).is_ok_and(|m| m.is_dir())
    }

    pub(super) fn create_branch_folder(
        &self,
        project: &ProjectRef,
        name: &BranchName,
        first: &FirstVersion<'_>,
        timeout: Duration,
    ) -> Result<()> {
        let branches = self.layout().branches_dir(project);
        check_real_dirs(self.layout().root(), &branches)?;
        let _lock = LockGuard::acquire(&self.layout().project_lock(project), timeout)?;
        // From disk: another process may have just made one.
        let existing = sorted_names(&branches, |n| BranchName::from_folder_name(n).ok())?;
        if existing.contains(name) {
            return Err(Error::Conflict(format!(
                "branch {name} already exists in {project}"
            )));
        }
        if let Some(other) = existing.iter().find(|b| b.conflicts_with(name)) {
            return Err(Error::Conflict(format!(
                "branch {name} conflicts with existing branch {other}: one name cannot be both a branch and a folder of branches"
            )));
        }
        let staging = self.disk.scratch()?.temp_path();
        let guard = RemoveOnDrop(staging.clone());
        self.stage_branch(&staging, &self.layout().objects_dir(project), first)?;
        move_into_place(&staging, &self.branch_dir(project, name), &branches)?;
        std::mem::forget(guard);
        Ok(())
    }

    /// Writes a complete branch folder (first generation, HEAD, lock) at
    /// `dir`, its trees into `objects`, all durable.
    fn stage_branch(&self, dir: &Path, objects: &Path, first: &FirstVersion<'_>) -> Result<()> {
        create_dir(dir)?;
        let mut batch = ObjectBatch::default();
        for (hash, bytes) in &first.trees {
            self.place_object(&layout::object_in(objects, hash), bytes, &mut batch)?;
        }
        self.sync_batch(objects, &batch)?;
        let v1 = SnapshotId::new(1).expect("1 is a valid version");
        fsutil::write_new(&dir.join(v1.to_string()), first.generation)?;
        fsutil::write_new(&layout::head_file(dir), format!("{v1}\n").as_bytes())?;
        fsutil::write_new(&layout::branch_lock(dir), b"")?;
        fsync_dir(dir)
    }

    pub(super) fn generation_file(
        &self,
        project: &ProjectRef,
        branch: &BranchName,
        version: SnapshotId,
        whole: bool,
    ) -> Result<Option<Vec<u8>>> {
        let dir = self.branch_dir(project, branch);
        let path = self.layout().generation_file(&dir, version);
        if whole {
            return read_if_present(&path);
        }
        let file = match open_regular(&path) {
            Ok(file) => file,
            Err(Error::Io { source, .. }) if source.kind() == io::ErrorKind::NotFound => {
                return Ok(None)
            }
            Err(e) => return Err(e),
        };
        let mut reader = BufReader::with_capacity(4096, file);
        let mut start = Vec::new();
        for _ in 0..2 {
            reader
                .read_until(b'\n', &mut start)
                .map_err(|e| Error::io(&path, e))?;
        }
        Ok(Some(start))
    }

    pub(super) fn lock_branch_folder(
        &self,
        project: &ProjectRef,
        branch: &BranchName,
        timeout: Duration,
    ) -> Result<FolderLock<'_>> {
        let dir = self.branch_dir(project, branch);
        // Checked on every write: the lock, the generation and HEAD are all
        // written below this folder.
        check_real_dirs(self.layout().root(), &dir)?;
        if !self.has_branch_folder(project, branch) {
            return Err(Error::not_found("branch", branch));
        }
        let lock = LockGuard::acquire(&layout::branch_lock(&dir), timeout)?;
        let head = self.recover_branch(&dir)?;
        Ok(FolderLock {
            files: self,
            dir,
            head,
            _lock: lock,
        })
    }

    /// Under the branch lock: rolls HEAD forward over complete generations
    /// a crashed writer committed but did not announce. Returns the head.
    pub fn recover_branch(&self, dir: &Path) -> Result<SnapshotId> {
        let recorded = read_head(dir).or_else(|_| newest_generation(dir))?;
        let mut head = recorded;
        while self.layout().generation_file(dir, head.next()).exists() {
            head = head.next();
        }
        if head != recorded || read_head(dir).is_err() {
            self.write_head(dir, head)?;
            fsync_dir(dir)?;
            self.announce_any_change();
        }
        Ok(head)
    }

    /// HEAD is replaced atomically (temp, fsync, rename). Its folder is not
    /// fsynced: a lost HEAD update is repaired by `recover_branch`, because
    /// the generation it names is already durable.
    fn write_head(&self, dir: &Path, version: SnapshotId) -> Result<()> {
        self.disk
            .scratch()?
            .place_file(&layout::head_file(dir), format!("{version}\n").as_bytes())
    }

    pub(super) fn read_object(&self, project: &ProjectRef, hash: &str) -> Result<Option<Vec<u8>>> {
        let path = self.object_path(project, hash)?;
        read_if_present(&path)
    }

    /// `read_object`, and the file it read, still open.
    pub(super) fn read_object_opened(
        &self,
        project: &ProjectRef,
        hash: &str,
    ) -> Result<Option<OpenedObject>> {
        let path = self.object_path(project, hash)?;
        let read = if_present(fsutil::read_regular_open(&path))?;
        Ok(read.map(|(bytes, file)| OpenedObject {
            bytes,
            file: Some(file),
        }))
    }

    /// An object's file, once no folder on its way is a planted link.
    fn object_path(&self, project: &ProjectRef, hash: &str) -> Result<std::path::PathBuf> {
        let path = self.layout().object_file(project, hash);
        check_real_dirs(
            self.layout().root(),
            path.parent().expect("object has a fan-out folder"),
        )?;
        Ok(path)
    }

    /// Places the object `target` with these bytes unless it is there.
    /// Returns whether it was new.
    pub(super) fn place_object(
        &self,
        target: &Path,
        bytes: &[u8],
        batch: &mut ObjectBatch,
    ) -> Result<bool> {
        let size = bytes.len() as u64;
        let present = fs::symlink_metadata(target).is_ok_and(|m| m.is_file() && m.len() == size);
        let fan = target.parent().expect("object has a fan-out folder");
        // Placed through a planted link, the object would land outside.
        check_real_dirs(self.layout().root(), fan)?;
        if present && !batch.bulk {
            // There already, but perhaps placed by a bulk import that has
            // not synced yet: make sure its bytes are on disk before a
            // version names it (cheap when they are).
            let file = open_regular(target)?;
            file.sync_data().map_err(|e| Error::io(target, e))?;
        }
        if !present {
            if batch.bulk {
                create_dir(fan)?;
                self.disk.scratch()?.place_file_unsynced(target, bytes)?;
            } else {
                create_dir_durable(fan)?;
                self.disk.scratch()?.place_file(target, bytes)?;
            }
        }
        // Even an object that is there already may not be durable yet: the
        // writer that placed it may not have fsynced its folders. Ours
        // fsyncs them before the commit, whoever wrote the object.
        batch.folders.insert(fan.to_path_buf());
        batch.folders.insert(
            fan.parent()
                .expect("fan-out folder has a parent")
                .to_path_buf(),
        );
        Ok(!present)
    }

    /// Makes a batch's objects durable; `objects` is the object folder (on
    /// the filesystem a bulk batch syncs).
    pub(super) fn sync_batch(&self, objects: &Path, batch: &ObjectBatch) -> Result<()> {
        if batch.bulk {
            return fsutil::sync_filesystem(objects);
        }
        batch.folders.iter().try_for_each(|d| fsync_dir(d))
    }

    pub(super) fn find_object(
        &self,
        project: &ProjectRef,
        prefix: &str,
    ) -> Result<Option<(String, Vec<u8>)>> {
        let Some(fan_name) = prefix.get(..2) else {
            return Ok(None);
        };
        let fan = self.layout().objects_dir(project).join(fan_name);
        check_real_dirs(self.layout().root(), &fan)?;
        let names = match fs::read_dir(&fan) {
            Ok(names) => names,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Error::io(&fan, e)),
        };
        for name in names {
            let name = name.map_err(|e| Error::io(&fan, e))?.file_name();
            let name = name.to_string_lossy();
            if name.len() == 64 && name.starts_with(prefix) {
                let bytes = read_regular(&fan.join(name.as_ref()))?;
                return Ok(Some((name.into_owned(), bytes)));
            }
        }
        Ok(None)
    }

    /// Counts folders' entries, never reads file contents.
    pub(super) fn count_project_objects(&self, project: &ProjectRef) -> Result<(u64, u64)> {
        let objects = self.layout().objects_dir(project);
        let (mut count, mut bytes) = (0, 0);
        for fan in fs::read_dir(&objects).map_err(|e| Error::io(&objects, e))? {
            let fan = fan.map_err(|e| Error::io(&objects, e))?.path();
            for object in fs::read_dir(&fan).map_err(|e| Error::io(&fan, e))? {
                let meta = object
                    .and_then(|o| o.metadata())
                    .map_err(|e| Error::io(&fan, e))?;
                count += 1;
                bytes += meta.len();
            }
        }
        Ok((count, bytes))
    }

    pub(super) fn gc_guard(
        &self,
        project: &ProjectRef,
        exclusive: bool,
        timeout: Duration,
    ) -> Result<LockGuard> {
        let path = self.layout().gc_lock(project);
        if exclusive {
            LockGuard::acquire(&path, timeout)
        } else {
            LockGuard::acquire_shared(&path, timeout)
        }
    }

    /// Every generation file in the branch folder, ascending.
    pub(super) fn versions_in_folder(
        &self,
        project: &ProjectRef,
        branch: &BranchName,
    ) -> Result<Vec<SnapshotId>> {
        let dir = self.branch_dir(project, branch);
        let mut versions: Vec<SnapshotId> = crate::store::fsutil::entries(&dir)?
            .iter()
            .filter_map(|e| {
                e.file_name()
                    .to_str()
                    .and_then(layout::parse_generation_name)
            })
            .collect();
        versions.sort();
        Ok(versions)
    }

    /// The name of every object file of a project.
    pub(super) fn object_names(&self, project: &ProjectRef) -> Result<Vec<String>> {
        let objects = self.layout().objects_dir(project);
        let mut names = Vec::new();
        // What cannot be listed is skipped: fsck reports it by itself.
        for entry in WalkDir::new(&objects)
            .min_depth(2)
            .max_depth(2)
            .into_iter()
            .flatten()
        {
            names.push(entry.file_name().to_string_lossy().into_owned());
        }
        Ok(names)
    }

    pub(super) fn remove_objects(
        &self,
        project: &ProjectRef,
        keep: &dyn Fn(&str) -> bool,
    ) -> Result<(u64, u64)> {
        let objects = self.layout().objects_dir(project);
        let (mut removed, mut freed) = (0, 0);
        let mut touched = std::collections::BTreeSet::new();
        for entry in WalkDir::new(&objects).min_depth(2).max_depth(2) {
            let entry = entry.map_err(|e| Error::io(&objects, e.into()))?;
            if !entry.file_type().is_file() || keep(&entry.file_name().to_string_lossy()) {
                continue;
            }
            let size = entry.metadata().map(|m| m.len()).unwrap_or(0);
            fs::remove_file(entry.path()).map_err(|e| Error::io(entry.path(), e))?;
            removed += 1;
            freed += size;
            if let Some(parent) = entry.path().parent() {
                touched.insert(parent.to_path_buf());
            }
        }
        for dir in touched {
            fsync_dir(&dir)?;
        }
        Ok((removed, freed))
    }
}

/// A branch folder's lock, held.
pub struct FolderLock<'a> {
    files: &'a Files,
    dir: PathBuf,
    head: SnapshotId,
    _lock: LockGuard,
}

impl BranchLock for FolderLock<'_> {
    fn head(&self) -> SnapshotId {
        self.head
    }

    /// The objects are on disk already (`sync_objects`); the audit line is
    /// the caller's to append: a folder and a log file cannot change in one
    /// step.
    fn publish(
        &mut self,
        next: SnapshotId,
        generation: &[u8],
        _objects: &ObjectBatch,
        _audit: Option<&[u8]>,
    ) -> Result<bool> {
        let (files, dir) = (self.files, &self.dir);
        // The commit point: the generation file renamed into place and its
        // folder fsynced. After this the write survives a crash.
        let gen_path = files.layout().generation_file(dir, next);
        let published = files
            .disk
            .scratch()
            .and_then(|scratch| scratch.replace_file(&gen_path, generation))
            .and_then(|()| fsutil::failpoint("commit.published", &gen_path))
            .and_then(|()| files.write_head(dir, next))
            .and_then(|()| fsutil::failpoint("commit.head", dir));
        if let Err(e) = published {
            // The rename may have happened before the failure (a folder
            // fsync, the HEAD update): take the version back, or the next
            // writer's roll-forward would publish a write reported failed,
            // and point HEAD back at the version it built on.
            if gen_path.exists() {
                if read_head(dir).is_ok_and(|h| h == next) {
                    let _ = files.write_head(dir, self.head);
                }
                let _ = fs::remove_file(&gen_path);
                let _ = fsync_dir(dir);
            }
            return Err(e);
        }
        self.head = next;
        Ok(false)
    }

    fn set_floor(&mut self, floor: SnapshotId) -> Result<()> {
        self.files.disk.scratch()?.replace_file(
            &layout::floor_file(&self.dir),
            format!("{floor}\n").as_bytes(),
        )
    }

    fn remove_below_floor(&mut self) -> Result<u64> {
        remove_below(&self.dir, read_floor(&self.dir)?)
    }
}

/// Removes the generation files below `floor` in a branch folder.
pub fn remove_below(dir: &Path, floor: SnapshotId) -> Result<u64> {
    let mut removed = 0;
    for entry in fs::read_dir(dir).map_err(|e| Error::io(dir, e))? {
        let entry = entry.map_err(|e| Error::io(dir, e))?;
        let below = entry
            .file_name()
            .to_str()
            .and_then(layout::parse_generation_name)
            .is_some_and(|v| v < floor);
        if below {
            fs::remove_file(entry.path()).map_err(|e| Error::io(entry.path(), e))?;
            removed += 1;
        }
    }
    if removed > 0 {
        fsync_dir(dir)?;
    }
    Ok(removed)
}
