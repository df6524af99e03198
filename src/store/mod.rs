//! The store: the only code that touches the data directory.
//!
//! # Design
//!
//! Every branch state is an immutable *generation*: one file holding the
//! write's metadata and a manifest of `md5, blake3, size, path` per file
//! (`generation.rs`). File contents live once per project in a
//! content-addressed object folder, so a write stores only the bytes that
//! changed; a put into a 20,000-file branch writes one object and one
//! manifest, never touching the other files.
//!
//! A write, under the branch's cross-process lock:
//! 1. stores new contents as objects (temp, fsync, rename, fsync folder),
//! 2. writes generation `v(N+1)` beside `vN` the same way — this rename is
//!    the commit point: once its folder is fsynced the write is durable,
//! 3. points `HEAD` at `v(N+1)`.
//!
//! The superseded generation `vN` *is* the snapshot of the state before the
//! write, so "snapshot first" costs nothing: it was durable before the
//! write began. `HEAD` is a hint readers use to avoid listing the folder;
//! if a crash lands between steps 2 and 3 the recovery sweep (at open and
//! before every write) rolls `HEAD` forward to the newest complete
//! generation. Version numbers come from `HEAD + 1` under the lock, after
//! that roll-forward, so they never repeat.
//!
//! Readers take no lock: they read `HEAD`, then the immutable generation,
//! then immutable objects, so a listing, the files and `short_id` always
//! describe one state. Temp files are born in a per-process scratch folder
//! (`fsutil::Scratch`) and so are never visible inside a branch.
//!
//! The two narrow seams a distributed backend would replace are
//! `read_head`/`commit` ("switch the head") and the object/generation
//! reads and writes ("immutable content").

pub mod audit;
pub mod backup;
mod cache;
pub use cache::{content_type, is_text, Content, DEFAULT_CONTENT_BUDGET};
pub mod failpoint;
pub mod fsck;
pub mod fsutil;
pub mod generation;
pub mod layout;

pub mod tokens;
pub mod tree;

#[cfg(test)]
mod model_test;
pub mod users;

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
pub use crate::names::{BranchName, FilePath, OwnerName, ProjectRef, RepoId, SnapshotId};
use fsutil::{
    check_real_dirs, create_dir, create_dir_durable, fsync_dir, open_regular, read_regular,
    LockGuard, Scratch,
};
pub use generation::{ContentId, Entry, Generation, GenerationMeta, ParentSummary};
use layout::{Layout, FORMAT_LINE, HEAD_FILE, LOCK_FILE};

/// How long a writer waits for a branch lock before answering `Busy`.
pub const DEFAULT_LOCK_TIMEOUT: Duration = Duration::from_secs(10);

/// The data directory, opened.
#[derive(Debug)]
pub struct Store {
    layout: Layout,
    /// This process's scratch folder, made on the first write: a read-only
    /// use (`file get`, `fsck`, the daemon's reads) must keep working on a
    /// disk with no space or inodes left, where making it would fail.
    scratch: std::sync::OnceLock<Scratch>,
    lock_timeout: Duration,
    /// The daemon's read cache (`cache.rs`); `None` in the CLI, which
    /// reads the disk each time.
    cache: Option<cache::ReadCache>,
    server_key: std::sync::OnceLock<crate::auth::ServerKey>,
}

/// A project as listed.
#[derive(Debug, Clone, Serialize)]
pub struct ProjectInfo {
    pub owner: OwnerName,
    #[serde(rename = "id")]
    pub repo: RepoId,
    pub name: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub created_at: String,
}

impl ProjectInfo {
    pub fn project_ref(&self) -> ProjectRef {
        ProjectRef::new(self.owner.clone(), self.repo.clone())
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct ProjectFile {
    name: String,
    #[serde(rename = "type")]
    kind: String,
    created_at: String,
}

/// A branch as listed: its live state and whether it is the default.
#[derive(Debug, Clone, Serialize)]
pub struct BranchInfo {
    pub name: BranchName,
    pub version: SnapshotId,
    pub short_id: String,
    pub commit_id: String,
    pub file_count: u64,
    pub updated_at: String,
    /// What the write that made the live state was, e.g. `file.put a.json`.
    pub reason: String,
    pub actor: String,
    pub default: bool,
}

/// One snapshot in a branch's history: a state that a later write
/// superseded, with who made that write, when and why.
#[derive(Debug, Clone, Serialize)]
pub struct SnapshotInfo {
    pub version: SnapshotId,
    pub created_at: String,
    pub actor: String,
    pub reason: String,
    pub file_count: u64,
    pub short_id: String,
}

/// What a write did.
#[derive(Debug, Clone, Serialize)]
pub struct WriteOutcome {
    /// False when the write changed nothing (same bytes put again): no
    /// snapshot was taken and the version did not move.
    pub changed: bool,
    /// The snapshot holding the state before the write.
    pub snapshot: Option<SnapshotId>,
    /// The live version after the write.
    pub version: SnapshotId,
    pub old_short_id: String,
    pub short_id: String,
    pub file_count: u64,
}

impl WriteOutcome {
    /// What the audit trail records about a write: ids and versions, never content.
    pub fn audit_details(&self) -> serde_json::Value {
        serde_json::json!({
            "old_short_id": self.old_short_id,
            "new_short_id": self.short_id,
            "snapshot": self.snapshot,
            "version": self.version,
            "changed": self.changed,
        })
    }
}

/// Whether `commit` may skip a write that changes nothing.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Unchanged {
    Skip,
    Commit,
}

impl Store {
    /// Creates (or completes) a data directory: the folder itself (0700),
    /// `.cfgstore/`, the format marker and the server key. Never overwrites
    /// an existing key. Returns the opened store and whether anything new
    /// was created.
    pub fn init(root: &Path) -> Result<(Store, bool)> {
        let layout = Layout::new(root);
        let mut created = false;
        if !root.exists() {
            fs::create_dir_all(root).map_err(|e| Error::io(root, e))?;
            set_mode(root, fsutil::DIR_MODE)?;
            created = true;
        }
        created |= create_dir_durable(&layout.internal_dir())?;
        created |= create_dir_durable(&layout.tokens_dir())?;
        create_dir(&layout.scratch_parent())?;
        let scratch = Scratch::create(&layout.scratch_parent())?;
        if !layout.server_key().exists() {
            let mut key = [0u8; 32];
            getrandom::getrandom(&mut key)
                .map_err(|e| Error::io(layout.server_key(), io::Error::other(e)))?;
            scratch.replace_file(&layout.server_key(), fsutil::hex(&key).as_bytes())?;
            created = true;
        }
        if !layout.format_file().exists() {
            scratch.replace_file(&layout.format_file(), format!("{FORMAT_LINE}\n").as_bytes())?;
            created = true;
        }
        drop(scratch);
        Ok((Store::open(root)?, created))
    }

    /// Opens an initialised data directory and runs the recovery sweep:
    /// scratch folders of dead processes are removed and every branch whose
    /// lock is free has its `HEAD` rolled forward to its newest complete
    /// generation.
    pub fn open(root: &Path) -> Result<Store> {
        let layout = Layout::new(root);
        match fs::read_to_string(layout.format_file()) {
            Ok(s) if s.trim_end() == FORMAT_LINE => {}
            Ok(_) => return Err(Error::corrupt(layout.format_file(), "unknown data format")),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(Error::NotFound {
                    what: "store",
                    name: format!("{} (run `cfgstore init` first)", root.display()),
                })
            }
            Err(e) => return Err(Error::io(layout.format_file(), e)),
        }
        check_private(root)?;
        Scratch::sweep_abandoned(&layout.scratch_parent(), true)?;
        let store = Store {
            layout,
            scratch: Default::default(),
            lock_timeout: DEFAULT_LOCK_TIMEOUT,
            cache: None,
            server_key: Default::default(),
        };
        store.sweep_branches()?;
        Ok(store)
    }

    /// The scratch folder temp files are born in, made on first use.
    fn scratch(&self) -> Result<&Scratch> {
        if let Some(scratch) = self.scratch.get() {
            return Ok(scratch);
        }
        // Two threads may race here; the loser's folder is removed when
        // its `Scratch` is dropped.
        let scratch = Scratch::create(&self.layout.scratch_parent())?;
        Ok(self.scratch.get_or_init(|| scratch))
    }

    /// Sets how long writers wait for a busy branch before `Error::Busy`.
    pub fn set_lock_timeout(&mut self, timeout: Duration) {
        self.lock_timeout = timeout;
    }

    pub fn root(&self) -> &Path {
        self.layout.root()
    }

    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    fn sweep_branches(&self) -> Result<()> {
        for project in self.list_projects(None)? {
            let project = project.project_ref();
            for branch in self.branch_names(&project)? {
                let dir = self.layout.branch_dir(&project, &branch);
                if let Some(_lock) = LockGuard::try_acquire(&dir.join(LOCK_FILE))? {
                    self.recover_branch(&dir)?;
                }
            }
        }
        Ok(())
    }

    // ----- projects -------------------------------------------------------

    /// Creates project `{name}.{type}` of `owner` with an empty `main`.
    /// Errors: `Invalid` for a bad name or type, `Conflict` if it exists.
    pub fn create_project(
        &self,
        owner: &OwnerName,
        name: &str,
        kind: &str,
        actor: &str,
    ) -> Result<ProjectInfo> {
        let repo = RepoId::from_name_and_type(name, kind)?;
        let project = ProjectRef::new(owner.clone(), repo);
        let _lock = LockGuard::acquire(&self.layout.store_lock(), self.lock_timeout)?;
        let target = self.layout.project_dir(&project);
        if target.exists() {
            return Err(Error::Conflict(format!("project {project} already exists")));
        }
        let now = now_rfc3339();
        let info = ProjectFile {
            name: name.to_string(),
            kind: kind.to_string(),
            created_at: now.clone(),
        };

        // Build the whole project folder in scratch, then move it into
        // place with one rename: a crash leaves either no project or a
        // complete one.
        let staging = self.scratch()?.temp_path();
        create_dir(&staging)?;
        let guard = RemoveOnDrop(staging.clone());
        let project_json = serde_json::to_vec_pretty(&info).expect("project file serialises");
        fsutil::write_new(&staging.join(layout::PROJECT_FILE), &project_json)?;
        create_dir(&staging.join(layout::OBJECTS_DIR))?;
        let branches = staging.join(layout::BRANCHES_DIR);
        create_dir(&branches)?;
        let main = BranchName::parse("main").expect("main is a valid branch name");
        self.stage_branch(
            &branches.join(main.folder_name()),
            &BTreeMap::new(),
            &now,
            actor,
            "project.create".into(),
        )?;
        fsync_dir(&branches)?;
        fsync_dir(&staging.join(layout::OBJECTS_DIR))?;
        fsync_dir(&staging)?;
        let owner_dir = self.layout.owner_dir(owner);
        check_real_dirs(self.layout.root(), &owner_dir)?;
        create_dir_durable(&owner_dir)?;
        move_into_place(&staging, &target, &owner_dir)?;
        std::mem::forget(guard);
        self.announce_change();
        Ok(ProjectInfo {
            owner: owner.clone(),
            repo: project.repo,
            name: info.name,
            kind: info.kind,
            created_at: now,
        })
    }

    /// One project. Errors: `NotFound`.
    pub fn project(&self, project: &ProjectRef) -> Result<ProjectInfo> {
        match &self.cache {
            Some(_) => Ok(self.shared_project(project)?.as_ref().clone()),
            None => self.read_project(project),
        }
    }

    /// `project` without copying its record: for checks of existence.
    pub fn require_project(&self, project: &ProjectRef) -> Result<()> {
        match &self.cache {
            Some(_) => self.shared_project(project).map(drop),
            None => self.read_project(project).map(drop),
        }
    }

    fn shared_project(&self, project: &ProjectRef) -> Result<Arc<ProjectInfo>> {
        let cache = self.cache.as_ref().expect("called with the cache on");
        let epoch = cache.epoch();
        let found = match cache.project(project) {
            Some(found) => found,
            None => {
                let found = match self.read_project(project) {
                    Ok(info) => Some(Arc::new(info)),
                    Err(Error::NotFound { .. }) => None,
                    Err(e) => return Err(e),
                };
                cache.put_project(epoch, project.clone(), found.clone());
                found
            }
        };
        found.ok_or_else(|| Error::not_found("project", project))
    }

    fn read_project(&self, project: &ProjectRef) -> Result<ProjectInfo> {
        // A link planted where an owner or project folder should be is not
        // a project (listings skip it too): it may lead out of the store.
        match check_real_dirs(self.layout.root(), &self.layout.project_dir(project)) {
            Err(Error::Corrupt { .. }) => return Err(Error::not_found("project", project)),
            other => other?,
        }
        let path = self.layout.project_file(project);
        let bytes = match read_regular(&path) {
            Ok(bytes) => bytes,
            Err(Error::Io { source, .. }) if source.kind() == io::ErrorKind::NotFound => {
                return Err(Error::not_found("project", project))
            }
            Err(e) => return Err(e),
        };
        let file: ProjectFile =
            serde_json::from_slice(&bytes).map_err(|e| Error::corrupt(&path, e.to_string()))?;
        Ok(ProjectInfo {
            owner: project.owner.clone(),
            repo: project.repo.clone(),
            name: file.name,
            kind: file.kind,
            created_at: file.created_at,
        })
    }

    /// Every project, or one owner's, sorted by owner then id.
    pub fn list_projects(&self, owner: Option<&OwnerName>) -> Result<Vec<ProjectInfo>> {
        let owners: Vec<OwnerName> = match owner {
            Some(o) => vec![o.clone()],
            None => sorted_names(self.layout.root(), |n| OwnerName::parse(n).ok())?,
        };
        let mut out = Vec::new();
        for owner in owners {
            for repo in sorted_names(&self.layout.owner_dir(&owner), |n| RepoId::parse(n).ok())? {
                out.push(self.project(&ProjectRef::new(owner.clone(), repo))?);
            }
        }
        Ok(out)
    }

    /// How much the store holds, for metrics: counts folders, never reads
    /// file contents.
    pub fn size(&self) -> Result<crate::metrics::StoreSize> {
        let mut size = crate::metrics::StoreSize::default();
        for project in self.list_projects(None)? {
            let project = project.project_ref();
            size.projects += 1;
            size.branches += self.branch_names(&project)?.len() as u64;
            let objects = self.layout.objects_dir(&project);
            for fan in fs::read_dir(&objects).map_err(|e| Error::io(&objects, e))? {
                let fan = fan.map_err(|e| Error::io(&objects, e))?.path();
                for object in fs::read_dir(&fan).map_err(|e| Error::io(&fan, e))? {
                    let meta = object
                        .and_then(|o| o.metadata())
                        .map_err(|e| Error::io(&fan, e))?;
                    size.objects += 1;
                    size.object_bytes += meta.len();
                }
            }
        }
        Ok(size)
    }

    // ----- branches -------------------------------------------------------

    /// The branch names of a project, sorted bytewise.
    pub fn branch_names(&self, project: &ProjectRef) -> Result<Vec<BranchName>> {
        Ok(self.shared_branch_names(project)?.as_ref().clone())
    }

    /// `branch_names`, shared with the cache instead of copied.
    fn shared_branch_names(&self, project: &ProjectRef) -> Result<Arc<Vec<BranchName>>> {
        let read = || {
            let dir = self.layout.branches_dir(project);
            check_real_dirs(self.layout.root(), &dir)?;
            sorted_names(&dir, |n| BranchName::from_folder_name(n).ok())
        };
        let Some(cache) = &self.cache else {
            return read().map(Arc::new);
        };
        let epoch = cache.epoch();
        if let Some(names) = cache.branch_names(project) {
            return Ok(names);
        }
        let names = Arc::new(read()?);
        cache.put_branch_names(epoch, project.clone(), Arc::clone(&names));
        Ok(names)
    }

    /// The default branch per SPEC §4: `master`, else `main`, else the
    /// first by name. `None` for a project without branches.
    pub fn default_branch(&self, project: &ProjectRef) -> Result<Option<BranchName>> {
        self.require_project(project)?;
        Ok(pick_default(&self.shared_branch_names(project)?).cloned())
    }

    /// Every branch with its live state, sorted by name.
    /// Errors: `NotFound` for an unknown project.
    pub fn list_branches(&self, project: &ProjectRef) -> Result<Vec<BranchInfo>> {
        self.require_project(project)?;
        let names = self.shared_branch_names(project)?;
        let default = pick_default(&names).cloned();
        names
            .iter()
            .map(|name| self.branch_info(project, name, default.as_ref() == Some(name)))
            .collect()
    }

    /// One branch. Errors: `NotFound` for the project or the branch.
    pub fn branch(&self, project: &ProjectRef, branch: &BranchName) -> Result<BranchInfo> {
        self.require_branch(project, branch)?;
        let default = pick_default(&self.shared_branch_names(project)?).cloned();
        self.branch_info(project, branch, default.as_ref() == Some(branch))
    }

    fn branch_info(
        &self,
        project: &ProjectRef,
        branch: &BranchName,
        default: bool,
    ) -> Result<BranchInfo> {
        let meta = self.live(project, branch)?.meta.clone();
        Ok(BranchInfo {
            name: branch.clone(),
            version: meta.version,
            short_id: meta.short_id,
            commit_id: meta.commit_id,
            file_count: meta.file_count,
            updated_at: meta.created_at,
            reason: meta.reason,
            actor: meta.actor,
            default,
        })
    }

    /// Creates a branch, empty or holding a copy of `from`'s live files
    /// (a manifest copy: contents are shared, not duplicated).
    /// Errors: `NotFound` (project, `from`), `Conflict` when the name exists
    /// or nests with an existing branch (`a` vs `a/b`).
    pub fn create_branch(
        &self,
        project: &ProjectRef,
        name: &BranchName,
        from: Option<&BranchName>,
        actor: &str,
    ) -> Result<BranchInfo> {
        self.require_project(project)?;
        check_real_dirs(self.layout.root(), &self.layout.branches_dir(project))?;
        let _lock = LockGuard::acquire(&self.layout.project_lock(project), self.lock_timeout)?;
        // From disk, not the cache: another process may have just made one.
        let existing = sorted_names(&self.layout.branches_dir(project), |n| {
            BranchName::from_folder_name(n).ok()
        })?;
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
        let (files, reason) = match from {
            Some(source) => (
                self.live(project, source)?.file_map(),
                format!("branch.create from {source}"),
            ),
            None => (BTreeMap::new(), "branch.create".to_string()),
        };
        let staging = self.scratch()?.temp_path();
        let guard = RemoveOnDrop(staging.clone());
        self.stage_branch(&staging, &files, &now_rfc3339(), actor, reason)?;
        let target = self.layout.branch_dir(project, name);
        move_into_place(&staging, &target, &self.layout.branches_dir(project))?;
        std::mem::forget(guard);
        self.announce_change();
        self.branch(project, name)
    }

    /// Writes a complete branch folder (first generation and HEAD) at `dir`.
    fn stage_branch(
        &self,
        dir: &Path,
        files: &BTreeMap<FilePath, Entry>,
        now: &str,
        actor: &str,
        reason: String,
    ) -> Result<()> {
        create_dir(dir)?;
        let first = SnapshotId::new(1).expect("1 is a valid version");
        let gen = Generation::build(first, now.to_string(), actor, reason, files, None);
        fsutil::write_new(&dir.join(first.to_string()), &gen.to_bytes())?;
        fsutil::write_new(&dir.join(HEAD_FILE), format!("{first}\n").as_bytes())?;
        fsutil::write_new(&dir.join(LOCK_FILE), b"")?;
        fsync_dir(dir)
    }

    fn require_branch(&self, project: &ProjectRef, branch: &BranchName) -> Result<PathBuf> {
        // The project first: a planted link where it should be is "no such
        // project" (404), not a corrupt branch folder.
        self.require_project(project)?;
        let dir = self.layout.branch_dir(project, branch);
        let exists = match &self.cache {
            Some(_) => self.shared_branch_names(project)?.contains(branch),
            // A symlinked branch folder is not a branch (nor in listings).
            None => fs::symlink_metadata(&dir).is_ok_and(|m| m.is_dir()),
        };
        if exists {
            return Ok(dir);
        }
        Err(Error::not_found("branch", branch))
    }

    // ----- reading --------------------------------------------------------

    /// The live state of a branch. Errors: `NotFound`.
    pub fn live(&self, project: &ProjectRef, branch: &BranchName) -> Result<Arc<Generation>> {
        let Some(cache) = &self.cache else {
            return self.read_live(project, branch);
        };
        let epoch = cache.epoch();
        if let Some(gen) = cache.live(project, branch) {
            return Ok(gen);
        }
        let gen = self.read_live(project, branch)?;
        cache.put_live(epoch, project, branch, Arc::clone(&gen));
        Ok(gen)
    }

    /// What `live` caches: the branch's HEAD, read from disk, and the
    /// generation it names.
    fn read_live(&self, project: &ProjectRef, branch: &BranchName) -> Result<Arc<Generation>> {
        let dir = self.require_branch(project, branch)?;
        let version = read_head(&dir)?;
        self.load_generation(dir, version)
    }

    /// One generation, parsed once per process when the cache is on.
    fn load_generation(&self, dir: PathBuf, version: SnapshotId) -> Result<Arc<Generation>> {
        if let Some(gen) = self
            .cache
            .as_ref()
            .and_then(|c| c.generation(&dir, version))
        {
            return Ok(gen);
        }
        let gen = Arc::new(Generation::read(
            &self.layout.generation_file(&dir, version),
        )?);
        if let Some(cache) = &self.cache {
            cache.put_generation(dir, Arc::clone(&gen));
        }
        Ok(gen)
    }

    /// Turns on the read cache: for a long-running process (the daemon)
    /// that calls `revalidate` at the start of every request.
    pub fn enable_read_cache(&mut self) {
        let cache = cache::ReadCache::default();
        cache.watch_marker(&self.layout.changes_file());
        self.cache = Some(cache);
    }

    /// Sets the read cache's budget for file contents, in bytes.
    pub fn set_content_cache_bytes(&self, bytes: usize) {
        if let Some(cache) = &self.cache {
            cache.set_content_budget(bytes);
        }
    }

    /// Drops cached pointers if any process changed the store since the
    /// last call. One small file read.
    pub fn revalidate(&self) -> Result<()> {
        let Some(cache) = &self.cache else {
            return Ok(());
        };
        cache.check_marker()
    }

    /// `note_change` after a write that is already durable and live: its
    /// failure must not turn the write into a reported failure, so it is
    /// logged; other daemons pick the change up at the next marker change.
    fn announce_change(&self) {
        if let Err(e) = self.note_change() {
            tracing::warn!(error = %e, "could not replace the change marker; caches refresh at the next change");
        }
    }

    /// Announces a committed change to every process's read cache. Not
    /// fsynced: it is a hint, and after a crash every cache starts empty.
    pub(crate) fn note_change(&self) -> Result<()> {
        let mut marker = [0u8; 16];
        getrandom::getrandom(&mut marker)
            .map_err(|e| Error::io("getrandom", io::Error::other(e)))?;
        let marker = fsutil::hex(&marker);
        // This process sees its own change at once, not from its next request.
        if let Some(cache) = &self.cache {
            cache.revalidate(marker.as_bytes());
        }
        self.scratch()?
            .place_file(&self.layout.changes_file(), marker.as_bytes())
    }

    /// A snapshot: a state some write superseded (version below the live
    /// one). Errors: `NotFound` for an unknown branch or snapshot.
    pub fn snapshot(
        &self,
        project: &ProjectRef,
        branch: &BranchName,
        version: SnapshotId,
    ) -> Result<Generation> {
        let dir = self.require_branch(project, branch)?;
        if version >= read_head(&dir)? {
            return Err(Error::not_found("snapshot", version));
        }
        Generation::read(&self.layout.generation_file(&dir, version))
    }

    /// Any generation of a branch: a snapshot or the live state.
    /// Errors: `NotFound` for an unknown branch or version.
    pub fn generation(
        &self,
        project: &ProjectRef,
        branch: &BranchName,
        version: SnapshotId,
    ) -> Result<Generation> {
        let dir = self.require_branch(project, branch)?;
        if version > read_head(&dir)? {
            return Err(Error::not_found("snapshot", version));
        }
        Generation::read(&self.layout.generation_file(&dir, version))
    }

    /// History of a branch, newest snapshot first.
    pub fn history(&self, project: &ProjectRef, branch: &BranchName) -> Result<Vec<SnapshotInfo>> {
        let dir = self.require_branch(project, branch)?;
        let head = read_head(&dir)?;
        let mut out = Vec::with_capacity(head.number() as usize);
        let mut version = head;
        while version.number() > 1 {
            let meta = Generation::read_meta(&self.layout.generation_file(&dir, version))?;
            let parent = meta.parent.ok_or_else(|| {
                Error::corrupt(
                    self.layout.generation_file(&dir, version),
                    "generation without parent summary",
                )
            })?;
            out.push(SnapshotInfo {
                version: parent.version,
                created_at: meta.created_at,
                actor: meta.actor,
                reason: meta.reason,
                file_count: parent.file_count,
                short_id: parent.short_id,
            });
            version = parent.version;
        }
        Ok(out)
    }

    /// The bytes of one file of a generation of `project`.
    /// Errors: `Corrupt` if the object is missing or has the wrong size.
    pub fn read_entry(&self, project: &ProjectRef, entry: &Entry) -> Result<bytes::Bytes> {
        Ok(self.read_content(project, entry)?.bytes)
    }

    /// Like `read_entry`, with whether the bytes are text.
    pub fn read_content(&self, project: &ProjectRef, entry: &Entry) -> Result<Content> {
        if let Some(content) = self.cache.as_ref().and_then(|c| c.object(&entry.hash)) {
            return Ok(content);
        }
        let content = Content::new(
            bytes::Bytes::from(self.read_object(project, entry)?),
            entry.blob_id(),
        );
        if let Some(cache) = &self.cache {
            cache.put_object(&entry.hash, content.clone());
        }
        Ok(content)
    }

    fn read_object(&self, project: &ProjectRef, entry: &Entry) -> Result<Vec<u8>> {
        let path = self.layout.object_file(project, &entry.hash);
        check_real_dirs(
            self.layout.root(),
            path.parent().expect("object has a fan-out folder"),
        )?;
        let mut file = open_regular(&path).map_err(|e| match e {
            Error::Io { source, .. } if source.kind() == io::ErrorKind::NotFound => {
                Error::corrupt(&path, format!("object of {} is missing", entry.path))
            }
            other => other,
        })?;
        let mut bytes = Vec::with_capacity(entry.size as usize);
        file.read_to_end(&mut bytes)
            .map_err(|e| Error::io(&path, e))?;
        if bytes.len() as u64 != entry.size {
            return Err(Error::corrupt(
                &path,
                format!("object of {} has the wrong size", entry.path),
            ));
        }
        Ok(bytes)
    }

    /// The bytes of the object whose blob id (the first 40 hex digits of
    /// its hash) is `blob_id`. Errors: `NotFound("blob")`.
    pub fn read_blob(&self, project: &ProjectRef, blob_id: &str) -> Result<Vec<u8>> {
        let valid = blob_id.len() == 40
            && blob_id
                .bytes()
                .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
        if !valid {
            return Err(Error::not_found("blob", blob_id));
        }
        let fan = self.layout.objects_dir(project).join(&blob_id[..2]);
        check_real_dirs(self.layout.root(), &fan)?;
        let names = match fs::read_dir(&fan) {
            Ok(names) => names,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(Error::not_found("blob", blob_id))
            }
            Err(e) => return Err(Error::io(&fan, e)),
        };
        for name in names {
            let name = name.map_err(|e| Error::io(&fan, e))?.file_name();
            let name = name.to_string_lossy();
            if name.len() == 64 && name.starts_with(blob_id) {
                let path = fan.join(name.as_ref());
                let bytes = read_regular(&path)?;
                if blake3::hash(&bytes).to_hex().as_str() != name {
                    return Err(Error::corrupt(&path, "object does not match its hash"));
                }
                return Ok(bytes);
            }
        }
        Err(Error::not_found("blob", blob_id))
    }

    /// Reads one file of the live branch. Errors: `NotFound`.
    pub fn read_file(
        &self,
        project: &ProjectRef,
        branch: &BranchName,
        path: &FilePath,
    ) -> Result<bytes::Bytes> {
        let gen = self.live(project, branch)?;
        let entry = gen
            .find(path)
            .ok_or_else(|| Error::not_found("file", path))?;
        self.read_entry(project, entry)
    }

    // ----- writing --------------------------------------------------------

    /// Saves one file. `expect_short_id` makes the write conditional on the
    /// branch's current `short_id` (`Conflict` when stale).
    /// Errors: `NotFound`, `Conflict`, `Busy`, `Io`.
    pub fn put_file(
        &self,
        project: &ProjectRef,
        branch: &BranchName,
        path: &FilePath,
        bytes: &[u8],
        actor: &str,
        expect_short_id: Option<&str>,
    ) -> Result<WriteOutcome> {
        self.require_branch(project, branch)?;
        // Refuse early what the commit would refuse (it checks again under
        // the lock), so a refused write leaves no object behind: otherwise
        // every stale If-Match or misplaced path would fill the disk.
        let live = self.live(project, branch)?;
        if let Some(expected) = expect_short_id {
            if expected != live.meta.short_id {
                return Err(Error::Conflict(format!(
                    "branch {branch} is at {} now, not {expected}",
                    live.meta.short_id
                )));
            }
        }
        check_not_nested_in(&live.entries, path)?;
        let mut objects = ObjectBatch::default();
        let entry = self.store_object(project, path.clone(), bytes, &mut objects)?;
        objects.sync()?;
        self.commit(
            project,
            branch,
            actor,
            format!("file.put {path}"),
            expect_short_id,
            Unchanged::Skip,
            |files, _| {
                files.insert(path.clone(), entry);
                check_not_nested(files, path)
            },
        )
    }

    /// Removes one file. Errors: `NotFound` (also for the file), `Conflict`.
    pub fn delete_file(
        &self,
        project: &ProjectRef,
        branch: &BranchName,
        path: &FilePath,
        actor: &str,
        expect_short_id: Option<&str>,
    ) -> Result<WriteOutcome> {
        self.commit(
            project,
            branch,
            actor,
            format!("file.delete {path}"),
            expect_short_id,
            Unchanged::Skip,
            |files, _| {
                files
                    .remove(path)
                    .map(|_| ())
                    .ok_or_else(|| Error::not_found("file", path))
            },
        )
    }

    /// Saves many files as one write and one snapshot. With `replace`, the
    /// branch afterwards holds exactly these files; otherwise they are
    /// added to (or overwrite) what is there.
    pub fn import(
        &self,
        project: &ProjectRef,
        branch: &BranchName,
        files: impl IntoIterator<Item = Result<(FilePath, Vec<u8>)>>,
        replace: bool,
        actor: &str,
    ) -> Result<WriteOutcome> {
        self.require_branch(project, branch)?;
        let mut objects = ObjectBatch::default();
        let mut incoming = BTreeMap::new();
        for item in files {
            let (path, bytes) = item?;
            let entry = self.store_object(project, path.clone(), &bytes, &mut objects)?;
            incoming.insert(path, entry);
        }
        objects.sync()?;
        let reason = format!("import {} files", incoming.len());
        self.commit(
            project,
            branch,
            actor,
            reason,
            None,
            Unchanged::Skip,
            |files, _| {
                if replace {
                    files.clear();
                }
                let paths: Vec<FilePath> = incoming.keys().cloned().collect();
                files.extend(incoming);
                paths.iter().try_for_each(|p| check_not_nested(files, p))
            },
        )
    }

    /// Restores a snapshot. The state before the rollback becomes a
    /// snapshot itself, so a rollback can be rolled back.
    /// Errors: `NotFound` for the branch or the snapshot.
    pub fn rollback(
        &self,
        project: &ProjectRef,
        branch: &BranchName,
        to: SnapshotId,
        actor: &str,
    ) -> Result<WriteOutcome> {
        let dir = self.require_branch(project, branch)?;
        let target = self.layout.generation_file(&dir, to);
        self.commit(
            project,
            branch,
            actor,
            format!("rollback to {to}"),
            None,
            Unchanged::Commit,
            |files, head| {
                if to >= head {
                    return Err(Error::not_found("snapshot", to));
                }
                *files = Generation::read(&target)?.file_map();
                Ok(())
            },
        )
    }

    /// The one write path: lock, recover, edit the file set, write the next
    /// generation, switch HEAD.
    #[allow(clippy::too_many_arguments)]
    fn commit(
        &self,
        project: &ProjectRef,
        branch: &BranchName,
        actor: &str,
        reason: String,
        expect_short_id: Option<&str>,
        unchanged: Unchanged,
        edit: impl FnOnce(&mut BTreeMap<FilePath, Entry>, SnapshotId) -> Result<()>,
    ) -> Result<WriteOutcome> {
        let dir = self.require_branch(project, branch)?;
        // Checked on every write, cache or not: the lock, the generation and
        // HEAD are all written below this folder.
        check_real_dirs(self.layout.root(), &dir)?;
        let _lock = LockGuard::acquire(&dir.join(LOCK_FILE), self.lock_timeout)?;
        // Under the lock, HEAD on disk is the truth: a cached one may be a
        // write behind, and building on it would lose that write.
        fsutil::failpoint("commit.locked", &dir)?;
        let head = self.recover_branch(&dir)?;
        let current = self.load_generation(dir.clone(), head)?;
        if let Some(expected) = expect_short_id {
            if expected != current.meta.short_id {
                return Err(Error::Conflict(format!(
                    "branch {branch} is at {} now, not {expected}",
                    current.meta.short_id
                )));
            }
        }
        let mut files = current.file_map();
        edit(&mut files, head)?;
        fsutil::failpoint("commit.objects", &dir)?;
        if unchanged == Unchanged::Skip && files.values().eq(current.entries.iter()) {
            return Ok(WriteOutcome {
                changed: false,
                snapshot: None,
                version: head,
                old_short_id: current.meta.short_id.clone(),
                short_id: current.meta.short_id.clone(),
                file_count: current.meta.file_count,
            });
        }
        let next = head.next();
        let parent = ParentSummary {
            version: head,
            file_count: current.meta.file_count,
            short_id: current.meta.short_id.clone(),
        };
        let gen = Generation::build(next, now_rfc3339(), actor, reason, &files, Some(parent));
        // The commit point: the generation file renamed into place and its
        // folder fsynced. After this the write survives a crash.
        let gen_path = self.layout.generation_file(&dir, next);
        let published = self
            .scratch()
            .and_then(|scratch| scratch.replace_file(&gen_path, &gen.to_bytes()))
            .and_then(|()| fsutil::failpoint("commit.published", &gen_path))
            .and_then(|()| self.write_head(&dir, next))
            .and_then(|()| fsutil::failpoint("commit.head", &dir));
        if let Err(e) = published {
            // The rename may have happened before the failure (a folder
            // fsync, the HEAD update): take the version back, or the next
            // writer's roll-forward would publish a write reported failed,
            // and point HEAD back at the version it built on.
            if gen_path.exists() {
                if read_head(&dir).is_ok_and(|h| h == next) {
                    let _ = self.write_head(&dir, head);
                }
                let _ = fs::remove_file(&gen_path);
                let _ = fsync_dir(&dir);
            }
            return Err(e);
        }
        let outcome = WriteOutcome {
            changed: true,
            snapshot: Some(head),
            version: next,
            old_short_id: current.meta.short_id.clone(),
            short_id: gen.meta.short_id.clone(),
            file_count: gen.meta.file_count,
        };
        if let Some(cache) = &self.cache {
            cache.put_generation(dir, Arc::new(gen));
        }
        self.announce_change();
        Ok(outcome)
    }

    /// HEAD is replaced atomically (temp, fsync, rename). Its folder is not
    /// fsynced: a lost HEAD update is repaired by `recover_branch`, because
    /// the generation it names is already durable.
    fn write_head(&self, dir: &Path, version: SnapshotId) -> Result<()> {
        self.scratch()?
            .place_file(&dir.join(HEAD_FILE), format!("{version}\n").as_bytes())
    }

    /// Under the branch lock: rolls HEAD forward over complete generations
    /// a crashed writer committed but did not announce. Returns the head.
    fn recover_branch(&self, dir: &Path) -> Result<SnapshotId> {
        let recorded = read_head(dir).or_else(|_| newest_generation(dir))?;
        let mut head = recorded;
        while self.layout.generation_file(dir, head.next()).exists() {
            head = head.next();
        }
        if head != recorded || read_head(dir).is_err() {
            self.write_head(dir, head)?;
            fsync_dir(dir)?;
            self.announce_change();
        }
        Ok(head)
    }

    /// Stores content in the project's object folder unless it is there
    /// already. Objects are immutable and named by their hash, so this is
    /// safe without the branch lock and concurrent writers of the same
    /// bytes do not interfere.
    fn store_object(
        &self,
        project: &ProjectRef,
        path: FilePath,
        bytes: &[u8],
        batch: &mut ObjectBatch,
    ) -> Result<Entry> {
        let id = ContentId::of(bytes);
        let target = self.layout.object_file(project, &id.hash);
        let present =
            fs::symlink_metadata(&target).is_ok_and(|m| m.is_file() && m.len() == id.size);
        let fan = target.parent().expect("object has a fan-out folder");
        // Placed through a planted link, the object would land outside.
        check_real_dirs(self.layout.root(), fan)?;
        if !present {
            create_dir_durable(fan)?;
            self.scratch()?.place_file(&target, bytes)?;
        }
        // Even an object that is there already may not be durable yet: the
        // writer that placed it may not have fsynced its folders. Ours
        // fsyncs them before the commit, whoever wrote the object.
        batch.dirs.insert(fan.to_path_buf());
        batch.dirs.insert(
            fan.parent()
                .expect("fan-out folder has a parent")
                .to_path_buf(),
        );
        Ok(Entry {
            path,
            size: id.size,
            md5: id.md5,
            hash: id.hash,
        })
    }
}

/// Folders whose new entries must be fsynced before a write commits.
#[derive(Default)]
struct ObjectBatch {
    dirs: BTreeSet<PathBuf>,
}

impl ObjectBatch {
    fn sync(&self) -> Result<()> {
        self.dirs.iter().try_for_each(|d| fsync_dir(d))
    }
}

/// Removes a staging folder when an error unwinds past it.
struct RemoveOnDrop(PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// A path cannot be both a file and a folder of other files: `a` and
/// `a/b` never coexist in one branch (a tree listing, an archive and a
/// checkout on disk could not hold both).
fn check_not_nested(files: &BTreeMap<FilePath, Entry>, path: &FilePath) -> Result<()> {
    not_nested(
        |a| files.contains_key(a),
        files.range(path.clone()..).map(|(k, _)| k.as_str()),
        path,
    )
}

/// `check_not_nested` on a generation's sorted entries, without building
/// a map of them (a put on a 20,000-file branch checks this first).
fn check_not_nested_in(entries: &[Entry], path: &FilePath) -> Result<()> {
    let from = entries.partition_point(|e| e.path < *path);
    not_nested(
        |a| entries.binary_search_by(|e| e.path.cmp(a)).is_ok(),
        entries[from..].iter().map(|e| e.path.as_str()),
        path,
    )
}

/// `contains` tells whether a path is a file; `from_path` yields the
/// files from `path` on, in order.
fn not_nested<'a>(
    contains: impl Fn(&FilePath) -> bool,
    from_path: impl Iterator<Item = &'a str>,
    path: &FilePath,
) -> Result<()> {
    let p = path.as_str();
    for (i, _) in p.match_indices('/') {
        let ancestor = &p[..i];
        if FilePath::parse(ancestor).is_ok_and(|a| contains(&a)) {
            return Err(Error::Conflict(format!(
                "{ancestor} is a file, so {p} cannot be inside it"
            )));
        }
    }
    // Keys under `p/` sort after `p` (among the keys that start with `p`).
    for key in from_path {
        let Some(rest) = key.strip_prefix(p) else {
            break;
        };
        if rest.starts_with('/') {
            return Err(Error::Conflict(format!(
                "{p} is a folder (it holds {key}), not a file"
            )));
        }
    }
    Ok(())
}

/// Renames a folder built in scratch to `target` and fsyncs `parent`. If
/// either step fails, the folder is moved back out (the rename may have
/// happened before the fsync failed), so that a creation reported failed
/// does not exist; the caller's guard then removes it from scratch.
fn move_into_place(staging: &Path, target: &Path, parent: &Path) -> Result<()> {
    let placed = fsutil::rename(staging, target).and_then(|()| fsync_dir(parent));
    if let Err(e) = placed {
        if target.exists() && !staging.exists() {
            let _ = fs::rename(target, staging);
            let _ = fsync_dir(parent);
        }
        return Err(e);
    }
    Ok(())
}

/// The live version a branch's HEAD names, checked to exist.
fn read_head(dir: &Path) -> Result<SnapshotId> {
    let path = dir.join(HEAD_FILE);
    let bytes = read_regular(&path)?;
    let text = std::str::from_utf8(&bytes).unwrap_or("");
    let version = layout::parse_generation_name(text.trim_end())
        .ok_or_else(|| Error::corrupt(&path, format!("HEAD holds {text:?}")))?;
    Ok(version)
}

/// The newest generation in a branch folder, for a missing or broken HEAD.
fn newest_generation(dir: &Path) -> Result<SnapshotId> {
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
    newest.ok_or_else(|| Error::corrupt(dir, "branch has no generations"))
}

fn pick_default(names: &[BranchName]) -> Option<&BranchName> {
    names
        .iter()
        .find(|b| b.as_str() == "master")
        .or_else(|| names.iter().find(|b| b.as_str() == "main"))
        .or_else(|| names.first())
}

/// The entries of a folder that parse as `T`, sorted; a missing folder is
/// empty. Names that do not parse (our own files, strays) are skipped.
fn sorted_names<T: Ord>(dir: &Path, parse: impl Fn(&str) -> Option<T>) -> Result<Vec<T>> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::io(dir, e)),
    };
    let mut out = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| Error::io(dir, e))?;
        if !entry.file_type().map_err(|e| Error::io(dir, e))?.is_dir() {
            continue;
        }
        if let Some(value) = entry.file_name().to_str().and_then(&parse) {
            out.push(value);
        }
    }
    out.sort();
    Ok(out)
}

fn set_mode(path: &Path, mode: u32) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).map_err(|e| Error::io(path, e))
}

/// Refuses a data directory others may write to: anyone who can write
/// there can plant files the daemon would serve.
fn check_private(root: &Path) -> Result<()> {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let meta = fs::metadata(root).map_err(|e| Error::io(root, e))?;
    // Files this process creates would belong to it: another user (root,
    // say) writing here would leave files the owner's daemon cannot read.
    let me = fs::metadata("/proc/self")
        .map(|m| m.uid())
        .map_err(|e| Error::io("/proc/self", e))?;
    if meta.uid() != me {
        let owner = user_name(meta.uid()).unwrap_or_else(|| meta.uid().to_string());
        return Err(Error::Forbidden(format!(
            "data directory {} belongs to {owner}, not to the user running this command; run it as {owner}: sudo -u {owner} cfgstore ...",
            root.display()
        )));
    }
    if meta.permissions().mode() & 0o022 != 0 {
        return Err(Error::Invalid(format!(
            "data directory {} is group- or world-writable; run `chmod 700 {}`",
            root.display(),
            root.display()
        )));
    }
    Ok(())
}

/// The name of a local user id, from /etc/passwd.
pub fn user_name(uid: u32) -> Option<String> {
    let passwd = fs::read_to_string("/etc/passwd").ok()?;
    passwd.lines().find_map(|line| {
        let fields: Vec<&str> = line.split(':').collect();
        (fields.len() > 2 && fields[2].parse() == Ok(uid)).then(|| fields[0].to_string())
    })
}

/// The current time as RFC 3339 UTC with second precision.
pub fn now_rfc3339() -> String {
    format_time(time::OffsetDateTime::now_utc())
}

pub fn format_time(t: time::OffsetDateTime) -> String {
    let t = t
        .to_offset(time::UtcOffset::UTC)
        .replace_nanosecond(0)
        .expect("0 ns is valid");
    t.format(&time::format_description::well_known::Rfc3339)
        .expect("UTC times format")
}
