//! The store: the only code that touches the data directory.
//!
//! # Design
//!
//! Every branch state is an immutable *generation*: one small file holding
//! the write's metadata and the id of its root tree (`generation.rs`). File
//! contents and trees — one per folder, listing `md5, blake3, git id, size,
//! name` per file and the trees of its subfolders (`trees/`) — live once
//! per project in a content-addressed object folder, so a write stores only
//! what changed: a put into a 20,000-file branch writes one content, the
//! trees of the folders on its path and the version file, never touching
//! the other files or folders.
//!
//! A write, under the branch's cross-process lock:
//! 1. stores new contents and trees as objects (temp, fsync, rename, fsync
//!    folder),
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
//!
//! # Layout of this module
//!
//! - `mod.rs`: `Store`, opening and initialising a data directory, the
//!   recovery sweep, the shapes callers get back (`ProjectInfo`, …).
//! - `projects.rs`, `branches.rs`: creating, finding and listing them;
//!   a branch's versions and history.
//! - `reads.rs`: file contents and live states, through the daemon's read
//!   cache (`cache.rs`) by one helper.
//! - `commit.rs`: the one write path of a branch.
//! - `tokens.rs`, `users.rs`, `audit.rs`: the records beside the content.
//! - `backup.rs`, `fsck.rs`: copying and verifying a whole store.
//! - `layout.rs`: every path; `fsutil.rs`: durable file operations;
//!   `generation.rs`, `trees/`: the version file and tree object formats;
//!   `tree.rs`: tree listings for the read API; `upgrade.rs`: older formats.

pub mod audit;
pub mod backend;
pub mod backup;
mod branches;
pub(crate) use backend::files::read_head;
pub(crate) use branches::BranchAt;
mod cache;
mod commit;
pub use cache::{content_type, is_text, Content, DEFAULT_CONTENT_BUDGET};
pub(crate) use commit::parallel_map;
pub use commit::PutPreview;
pub use location::Location;
pub mod failpoint;
pub mod fleet;
pub mod fsck;
pub mod fsutil;
pub mod generation;
pub mod held;
pub mod layout;
mod location;
mod projects;
mod reads;
pub mod retention;

pub mod tokens;
pub mod tree;
pub mod trees;
pub mod upgrade;

#[cfg(test)]
mod model_test;
pub mod users;

use std::fs;
use std::io::{self};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
pub use crate::names::{BranchName, FilePath, OwnerName, ProjectRef, RepoId, SnapshotId};
use fsutil::{create_dir, create_dir_durable, LockGuard, Scratch};
pub use generation::{ChangeCounts, ContentId, Entry, Generation, GenerationMeta, ParentSummary};
use layout::{Layout, FORMAT_LINE};

/// How long a writer waits for a branch lock before answering `Busy`.
pub const DEFAULT_LOCK_TIMEOUT: Duration = Duration::from_secs(10);

/// The data directory, opened.
#[derive(Debug)]
pub struct Store {
    /// The data directory and this process's scratch folder in it.
    disk: Arc<backend::files::Disk>,
    /// Where records, the audit trail, the fleet view and the change signal
    /// live (`backend`).
    backend: Box<dyn backend::Backend>,
    lock_timeout: Duration,
    /// The daemon's read cache (`cache.rs`); `None` in the CLI, which
    /// reads the disk each time.
    cache: Option<cache::ReadCache>,
    /// Without the cache, the generation loaded last: a CLI write loads
    /// the live state to check the path, then again under the branch lock,
    /// and versions never change, so the second load is this.
    recent: std::sync::Mutex<Option<(PathBuf, SnapshotId, Arc<Generation>)>>,
    server_key: std::sync::OnceLock<crate::auth::ServerKey>,
    /// Where the server key is read from (`location.rs`).
    key_file: PathBuf,
    /// Whether the backend is a database (`location.rs`).
    on_database: bool,
    /// What opening it upgraded, if the store was of an older format.
    upgraded: Option<upgrade::UpgradeReport>,
}

/// A project as listed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
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

/// One version of a branch, as its history lists it: the state one write
/// made, who made it, when, and what it did.
#[derive(Debug, Clone, Serialize)]
pub struct VersionInfo {
    pub version: SnapshotId,
    /// The branch's live state: the top row of a history.
    pub live: bool,
    /// When the write that made this version happened (RFC 3339 UTC).
    pub created_at: String,
    /// Who made it: a user, `token:{id}` or `cli:{unix user}`.
    pub actor: String,
    /// What the write did: `file.put b.txt`, `rollback to v0003`,
    /// `import 120 files`, `branch.create from main`.
    pub action: String,
    pub short_id: String,
    pub commit_id: String,
    pub file_count: u64,
    /// Files added, changed and removed against the version before.
    pub added: u64,
    pub changed: u64,
    pub removed: u64,
}

/// What a write did.
#[derive(Debug, Clone, Serialize)]
pub struct WriteOutcome {
    /// False when the write changed nothing (same bytes put again): no
    /// version was made and the live one did not move.
    pub changed: bool,
    /// The version holding the state before the write (the admin API's
    /// name for it, after the seed's "snapshot").
    pub snapshot: Option<SnapshotId>,
    /// The live version after the write.
    pub version: SnapshotId,
    pub old_short_id: String,
    pub short_id: String,
    pub file_count: u64,
    /// Files added, changed and removed by the write.
    pub added: u64,
    pub updated: u64,
    pub removed: u64,
    /// Whether the write's audit record was kept with its version (in one
    /// transaction, by a backend that can); else the caller appends it.
    #[serde(skip)]
    pub audited: bool,
}

/// The audit record of a write, made from its outcome before the version
/// is published, for a backend that keeps both together.
pub type AuditOf<'a> = &'a (dyn Fn(&WriteOutcome) -> audit::AuditRecord + Sync);

/// Who makes a write (the history's actor), and its audit record.
#[derive(Clone, Copy)]
pub struct Writer<'a> {
    pub actor: &'a str,
    pub audit: Option<AuditOf<'a>>,
}

/// A writer by name alone: the caller appends the audit record, if any.
impl<'a> From<&'a str> for Writer<'a> {
    fn from(actor: &'a str) -> Writer<'a> {
        Writer { actor, audit: None }
    }
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
        created |= make_server_key(&layout, &scratch)?;
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
        Store::open_with(root, true)
    }

    /// `open` without upgrading a store of an older format: for reading a
    /// backup (never changed by a restore) and for `fsck`, which must be
    /// able to report what would stop an upgrade.
    pub fn open_as_is(root: &Path) -> Result<Store> {
        Store::open_with(root, false)
    }

    fn open_with(root: &Path, upgrade: bool) -> Result<Store> {
        let layout = Layout::new(root);
        let format = match fs::read_to_string(layout.format_file()) {
            Ok(s) => upgrade::format_of(&s, &layout.format_file())?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(Error::NotFound {
                    what: "store",
                    name: format!("{} (run `cfgstore init` first)", root.display()),
                })
            }
            Err(e) => return Err(Error::io(layout.format_file(), e)),
        };
        check_private(root)?;
        Scratch::sweep_abandoned(&layout.scratch_parent(), true)?;
        let key_file = layout.server_key();
        let disk = Arc::new(backend::files::Disk::new(layout));
        let store = Store {
            key_file,
            on_database: false,
            backend: Box::new(backend::files::Files::new(Arc::clone(&disk))),
            disk,
            lock_timeout: DEFAULT_LOCK_TIMEOUT,
            cache: None,
            recent: Default::default(),
            server_key: Default::default(),
            upgraded: None,
        };
        store.sweep_branches()?;
        if format < upgrade::CURRENT && upgrade {
            let report = store.upgrade(format)?;
            return Ok(Store {
                upgraded: Some(report),
                ..store
            });
        }
        Ok(store)
    }

    /// What opening this store upgraded (`None` when it was current).
    pub fn upgraded(&self) -> Option<&upgrade::UpgradeReport> {
        self.upgraded.as_ref()
    }

    /// The scratch folder temp files are born in, made on first use.
    fn scratch(&self) -> Result<&Scratch> {
        self.disk.scratch()
    }

    /// Where records, the audit trail, the fleet view and the change signal
    /// live.
    pub fn backend(&self) -> &dyn backend::Backend {
        &*self.backend
    }

    /// Sets how long writers wait for a busy branch before `Error::Busy`.
    pub fn set_lock_timeout(&mut self, timeout: Duration) {
        self.lock_timeout = timeout;
    }

    pub fn root(&self) -> &Path {
        self.layout().root()
    }

    pub fn layout(&self) -> &Layout {
        self.disk.layout()
    }

    fn sweep_branches(&self) -> Result<()> {
        let files = self.files();
        for project in self.list_projects(None)? {
            let project = project.project_ref();
            for branch in self.branch_names(&project)? {
                let dir = self.layout().branch_dir(&project, &branch);
                if let Some(_lock) = LockGuard::try_acquire(&layout::branch_lock(&dir))? {
                    files.recover_branch(&dir)?;
                }
            }
        }
        Ok(())
    }

    /// The file backend of this data directory, for what works on its
    /// folders themselves (the sweep at open, backup, fsck, upgrade).
    pub(crate) fn files(&self) -> backend::files::Files {
        backend::files::Files::new(Arc::clone(&self.disk))
    }
}

/// The entries of a folder that parse as `T`, sorted; a missing folder is
/// empty. Names that do not parse (our own files, strays) are skipped.
pub(crate) fn sorted_names<T: Ord>(
    dir: &Path,
    parse: impl Fn(&str) -> Option<T>,
) -> Result<Vec<T>> {
    let mut out = Vec::new();
    for entry in fsutil::entries(dir)? {
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

/// Makes the server key if there is none; never replaces one (tokens are
/// hashed under it). Returns whether it made one.
fn make_server_key(layout: &Layout, scratch: &Scratch) -> Result<bool> {
    if layout.server_key().exists() {
        return Ok(false);
    }
    let mut key = [0u8; 32];
    getrandom::getrandom(&mut key)
        .map_err(|e| Error::io(layout.server_key(), io::Error::other(e)))?;
    scratch.replace_file(&layout.server_key(), fsutil::hex(&key).as_bytes())?;
    Ok(true)
}

impl Store {
    /// For the daemon: a store without a server key (a copy of the
    /// committed example, which holds no secret) gets one, as `init`
    /// would make it. An existing key is never replaced.
    pub fn ensure_server_key(&self) -> Result<()> {
        if location::make_key_file(&self.key_file)? {
            tracing::info!("made a server key for this store");
        }
        Ok(())
    }
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
