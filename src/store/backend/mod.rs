//! The backend seam: where a store keeps what it keeps.
//!
//! `Store` holds the rules (names, roles, token checks, what a write may
//! do, the read cache); a backend holds the bytes. The file backend
//! (`files.rs`, `--data DIR`) is the default; a shared database lets
//! several daemons serve one store (SPEC §16).
//!
//! What crosses this seam:
//! - **content**: projects and their branches; a branch's versions, each
//!   an immutable generation (`generation.rs`) numbered from `v0001`; its
//!   head, the live version, switched only under the branch's write lock
//!   (`BranchLock`), which is the one way a version is published; and the
//!   project's objects (file contents and trees, named by blake3 hash,
//!   immutable, shared by every branch and version);
//! - **records** beside the content: tokens, users and sessions, each a
//!   small JSON document under a key (`Records`), read one at a time or
//!   all together, and changed only inside `change_records`, which holds
//!   every other writer of that kind off (in any process, on any node)
//!   and puts all of a change in force together or none of it;
//! - the **audit trail**, append-only;
//! - the **fleet view**, one telemetry document per project;
//! - the **change signal**: every committed change announces a new random
//!   marker, and a daemon's read cache checks the marker at the start of
//!   each request (`ChangeWatch`), so a change made anywhere is in force
//!   for its very next request (SPEC §2 invariant 7).
//!
//! The rules stay above the seam: what a version holds, its `short_id`,
//! which branch is the default, what a write may do, which versions a
//! prune keeps and which objects are referenced. Upgrading a data
//! directory (`upgrade.rs`) and the folder checks of `fsck` (kinds,
//! permissions, stray entries) work on the file backend's folders
//! themselves.
//!
//! A backend's errors are the store's (`crate::Error`): a backend that
//! cannot reach its data answers `Unavailable` (the API's 503) or `Io`.

pub mod files;
pub mod postgres;

use std::fmt::Debug;

use crate::error::Result;
use crate::names::{BranchName, OwnerName, ProjectRef, SnapshotId};

/// The kinds of record a store keeps beside its content.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Records {
    /// Read tokens, by the hex HMAC of their secret.
    Tokens,
    /// Users, by name.
    Users,
    /// Admin sessions, by the hex SHA-256 of their id.
    Sessions,
    /// Recent failed logins, by the hex SHA-256 of what they count against
    /// (a user, an address): kept here by a store shared by several
    /// daemons, so the limit holds across them (one daemon counts in
    /// memory).
    Logins,
}

impl Records {
    /// What a record of this kind is called in errors.
    pub fn what(self) -> &'static str {
        match self {
            Records::Tokens => "token record",
            Records::Users => "user record",
            Records::Sessions => "session record",
            Records::Logins => "login record",
        }
    }
}

/// A fresh change marker: 16 random bytes in hex, what every backend's
/// `announce_change` is given.
pub fn new_marker() -> Result<String> {
    let mut marker = [0u8; 16];
    getrandom::getrandom(&mut marker)
        .map_err(|e| crate::Error::io("getrandom", std::io::Error::other(e)))?;
    Ok(crate::hex::encode(&marker))
}

/// Whether a record written must survive a crash once the change returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// On stable storage when the change returns.
    Durable,
    /// Bookkeeping no decision rests on (a token's last use, a session's
    /// last activity): it may be lost in a crash, never torn.
    Lazy,
}

/// One change of one kind of record, in progress (`Backend::change_records`).
/// What it reads sees its own writes.
pub trait RecordChange {
    fn get(&mut self, key: &str) -> Result<Option<Vec<u8>>>;
    /// Every record of the kind, as `(key, bytes)`, in no particular order.
    fn list(&mut self) -> Result<Vec<(String, Vec<u8>)>>;
    fn put(&mut self, key: &str, bytes: &[u8], durability: Durability) -> Result<()>;
    /// Removes a record; removing one that is not there is no error.
    fn remove(&mut self, key: &str) -> Result<()>;
}

/// Checks a daemon makes at the start of each request: has any process
/// announced a change since the last check?
pub trait ChangeWatch: Send + Sync + Debug {
    /// Calls `changed` with the current marker when it may differ from
    /// the one seen last (not when it is certainly the same), and that
    /// before any check that begins later returns: a request that checks
    /// after another saw a change never gets ahead of that change. Cheap
    /// when nothing changed: it runs on every request.
    fn check(&self, changed: &mut dyn FnMut(&[u8])) -> Result<()>;
}

/// The first version of a new branch: its generation file and the tree
/// objects it names that may not be stored yet.
pub struct FirstVersion<'a> {
    pub generation: &'a [u8],
    /// `(hash, bytes)` of each tree object, children before parents.
    pub trees: Vec<(&'a str, &'a [u8])>,
}

/// Objects being stored for one write, made durable together by
/// `Backend::sync_objects` before the version that names them.
#[derive(Debug, Default)]
pub struct ObjectBatch {
    /// Many objects at once (an import): a backend may defer durability
    /// of each to one sync of all.
    pub bulk: bool,
    /// What the file backend must fsync before the batch is durable.
    pub(crate) folders: std::collections::BTreeSet<std::path::PathBuf>,
    /// What a database backend stores with the version that names them
    /// (`BranchLock::publish`), in its transaction: bytes by hash (shared,
    /// so handing them to the database's task copies no content).
    pub(crate) pending: std::collections::HashMap<String, bytes::Bytes>,
}

impl ObjectBatch {
    pub fn bulk() -> ObjectBatch {
        ObjectBatch {
            bulk: true,
            ..Default::default()
        }
    }

    /// Takes in what another batch of the same write stored.
    pub fn absorb(&mut self, other: ObjectBatch) {
        self.folders.extend(other.folders);
        self.pending.extend(other.pending);
    }
}

/// A branch's write lock, held: no other writer of the branch (in any
/// process, on any node) gets past `Backend::lock_branch` until it is
/// dropped. The head it reports is the truth, not a cached copy.
pub trait BranchLock {
    /// The live version, after rolling forward over versions a crashed
    /// writer published but did not finish switching to.
    fn head(&self) -> SnapshotId;

    /// Publishes `version` (the head's successor) with this generation and
    /// makes it the live one, with the objects of `objects` still pending
    /// (a database stores them here). The commit point: when this returns
    /// `Ok` the write is durable; when it fails the version is not in
    /// force. A backend that can keeps `audit` (an audit trail line) in the
    /// same commit and says so (`true`); else the caller appends it after.
    fn publish(
        &mut self,
        version: SnapshotId,
        generation: &[u8],
        objects: &ObjectBatch,
        audit: Option<&[u8]>,
    ) -> Result<bool>;

    /// Makes `floor` the oldest version kept: from now on, readers treat
    /// the versions below it as gone. Durable when it returns.
    fn set_floor(&mut self, floor: SnapshotId) -> Result<()>;

    /// Removes the generations below the floor (a prune's second step,
    /// also the clean-up of an interrupted one). Returns how many.
    fn remove_below_floor(&mut self) -> Result<u64>;
}

/// A whole store being loaded into an empty one (a restore): nothing of
/// it is in force until `finish` returns `Ok`, and all of it then. A
/// project comes before its objects and branches, a branch before its
/// versions.
pub trait Load {
    fn project(&mut self, project: &ProjectRef, record: &[u8]) -> Result<()>;
    fn object(&mut self, project: &ProjectRef, hash: &str, bytes: &[u8]) -> Result<()>;
    /// A branch with its floor and head; its versions follow.
    fn branch(
        &mut self,
        project: &ProjectRef,
        branch: &BranchName,
        floor: SnapshotId,
        head: SnapshotId,
    ) -> Result<()>;
    fn generation(
        &mut self,
        project: &ProjectRef,
        branch: &BranchName,
        version: SnapshotId,
        bytes: &[u8],
    ) -> Result<()>;
    fn record(&mut self, kind: Records, key: &str, bytes: &[u8]) -> Result<()>;
    fn audit(&mut self, line: &[u8]) -> Result<()>;
    /// Puts everything loaded in force, durably.
    fn finish(self: Box<Self>) -> Result<()>;
}

/// Held (shared) by a writer from its first stored object until it has
/// published the version naming them; held exclusively by a collection
/// of unreferenced objects. Released when dropped.
pub trait ObjectsGuard {}

/// An object's bytes, and the file they were read from when the backend
/// keeps objects as files (`Backend::object_opened`).
pub struct OpenedObject {
    pub bytes: Vec<u8>,
    pub file: Option<std::fs::File>,
}

/// Where a store keeps what it keeps. Implementations must be safe to
/// share between threads; every method may block on storage.
pub trait Backend: Send + Sync + Debug {
    // ---- projects ----

    /// A project's record (JSON: name, type, created_at), `None` when there
    /// is no such project.
    fn project(&self, project: &ProjectRef) -> Result<Option<Vec<u8>>>;

    /// Every project (or one owner's), sorted by owner then id.
    fn projects(&self, owner: Option<&OwnerName>) -> Result<Vec<ProjectRef>>;

    /// Creates a project with its record and one branch, `main`, at its
    /// first version: all of it or nothing. Waits up to `timeout` for
    /// another creation (then `Busy`). Errors: `Conflict` when the project
    /// exists.
    fn create_project(
        &self,
        project: &ProjectRef,
        record: &[u8],
        main: &BranchName,
        first: &FirstVersion<'_>,
        timeout: std::time::Duration,
    ) -> Result<()>;

    // ---- branches ----

    /// The branches of a project, sorted bytewise (none for a project
    /// that does not exist).
    fn branch_names(&self, project: &ProjectRef) -> Result<Vec<BranchName>>;

    /// Whether the branch exists (read now, not from any cache).
    fn has_branch(&self, project: &ProjectRef, branch: &BranchName) -> Result<bool>;

    /// Creates a branch at its first version, all of it or nothing,
    /// waiting up to `timeout` for another creation. Errors: `Conflict` when the name is taken or nests with an
    /// existing branch (`a` vs `a/b`).
    fn create_branch(
        &self,
        project: &ProjectRef,
        branch: &BranchName,
        first: &FirstVersion<'_>,
        timeout: std::time::Duration,
    ) -> Result<()>;

    /// The live version, as last published (no lock: a reader's view).
    fn head(&self, project: &ProjectRef, branch: &BranchName) -> Result<SnapshotId>;

    /// The oldest version kept (`v0001` until a prune).
    fn floor(&self, project: &ProjectRef, branch: &BranchName) -> Result<SnapshotId>;

    /// A version's generation file, `None` when there is none (beyond the
    /// head, or pruned).
    fn generation(
        &self,
        project: &ProjectRef,
        branch: &BranchName,
        version: SnapshotId,
    ) -> Result<Option<Vec<u8>>>;

    /// The start of a version's generation file, at least its first two
    /// lines (format and metadata): enough for histories and listings.
    fn generation_start(
        &self,
        project: &ProjectRef,
        branch: &BranchName,
        version: SnapshotId,
    ) -> Result<Option<Vec<u8>>>;

    /// Every version stored for the branch, ascending, whatever its floor
    /// and head say: versions below the floor are what an interrupted
    /// prune left, versions past the head (the file backend) what a
    /// crashed writer published. For `fsck`.
    fn stored_versions(&self, project: &ProjectRef, branch: &BranchName)
        -> Result<Vec<SnapshotId>>;

    /// Takes the branch's write lock, waiting up to `timeout` (then
    /// `Busy`). Errors: `NotFound` for a branch that does not exist.
    fn lock_branch<'a>(
        &'a self,
        project: &ProjectRef,
        branch: &BranchName,
        timeout: std::time::Duration,
    ) -> Result<Box<dyn BranchLock + 'a>>;

    // ---- objects ----

    /// An object of a project (a file's content or a tree), `None` when
    /// there is none by that hash.
    fn object(&self, project: &ProjectRef, hash: &str) -> Result<Option<Vec<u8>>>;

    /// `object`, read from a file held open afterwards for sending it
    /// (`store::held`), when the backend keeps objects as files; by
    /// default, the bytes only.
    fn object_opened(&self, project: &ProjectRef, hash: &str) -> Result<Option<OpenedObject>> {
        let bytes = self.object(project, hash)?;
        Ok(bytes.map(|bytes| OpenedObject { bytes, file: None }))
    }

    /// Stores an object unless it is there: durable once `sync_objects`
    /// returns for the batch, or (a database) pending in the batch until
    /// the version naming it is published with it. Returns whether it was
    /// new (`false` when the backend cannot tell yet). Safe without any
    /// lock: objects are immutable and named by their hash.
    fn put_object(
        &self,
        project: &ProjectRef,
        hash: &str,
        bytes: &[u8],
        batch: &mut ObjectBatch,
    ) -> Result<bool>;

    /// Makes every object of the batch durable.
    fn sync_objects(&self, project: &ProjectRef, batch: &ObjectBatch) -> Result<()>;

    /// The object whose hash begins with `prefix`, with its hash (links
    /// made before git blob ids, which named a content by its hash).
    fn object_by_prefix(
        &self,
        project: &ProjectRef,
        prefix: &str,
    ) -> Result<Option<(String, Vec<u8>)>>;

    /// The hash of every object a project holds, in no particular order.
    fn object_hashes(&self, project: &ProjectRef) -> Result<Vec<String>>;

    /// How many objects a project holds and their bytes.
    fn count_objects(&self, project: &ProjectRef) -> Result<(u64, u64)>;

    /// Held by writers while their new objects are not yet named by a
    /// published version (shared), and by `collect_objects` (exclusive).
    fn objects_in_flight<'a>(
        &'a self,
        project: &ProjectRef,
        exclusive: bool,
        timeout: std::time::Duration,
    ) -> Result<Box<dyn ObjectsGuard + 'a>>;

    /// Removes every object of the project that `keep` does not keep;
    /// the caller holds `objects_in_flight` exclusively. Returns how many
    /// objects went and their bytes.
    fn collect_objects(
        &self,
        project: &ProjectRef,
        keep: &dyn Fn(&str) -> bool,
    ) -> Result<(u64, u64)>;

    /// Begins loading a whole store into this one (a restore), which must
    /// hold no project, token or user (else `Conflict`). `None` from a
    /// backend restored by copying folders (the file backend:
    /// `backup::restore`).
    fn load(&self) -> Result<Option<Box<dyn Load + '_>>> {
        Ok(None)
    }

    // ---- records, audit, fleet, change signal ----

    /// One record, `None` if there is none under `key`.
    fn record(&self, kind: Records, key: &str) -> Result<Option<Vec<u8>>>;

    /// Every record of a kind, as `(key, bytes)`, in no particular order.
    fn records(&self, kind: Records) -> Result<Vec<(String, Vec<u8>)>>;

    /// Runs `change`, once, with every other writer of `kind` held off, in
    /// this process and any other. When it returns `Ok`, everything it wrote is
    /// in force (and durable, unless written `Lazy`); when it or a write
    /// fails, none of it is. Users and sessions are held off together
    /// (changing a user ends their sessions).
    fn change_records(
        &self,
        kind: Records,
        change: &mut dyn FnMut(&mut dyn RecordChange) -> Result<()>,
    ) -> Result<()>;

    /// Appends one line (a JSON record, no newline) to the audit trail;
    /// with `durable`, it is on stable storage when this returns.
    fn append_audit(&self, line: &[u8], durable: bool) -> Result<()>;

    /// Every line of the audit trail, oldest first. A line torn by a
    /// crash may be among them; the caller skips what does not parse.
    fn audit_lines(&self, each: &mut dyn FnMut(&[u8])) -> Result<()>;

    /// The fleet view of a project as last written, if any.
    fn fleet(&self, project: &ProjectRef) -> Result<Option<Vec<u8>>>;

    /// Replaces the fleet view of a project (atomically, not durably:
    /// telemetry).
    fn put_fleet(&self, project: &ProjectRef, bytes: &[u8]) -> Result<()>;

    /// Makes `marker` the store's change marker, so every daemon's next
    /// check sees a change. Not durable: after a crash every cache starts
    /// empty anyway.
    fn announce_change(&self, marker: &[u8]) -> Result<()>;

    /// A watch of the change marker for a daemon's read cache, set up
    /// before the marker is first read so no change falls between.
    fn watch_changes(&self) -> Box<dyn ChangeWatch>;

    /// A prompt that a change was probably announced, for what waits for
    /// changes (long polls): a hint only, which may come late, twice or not
    /// at all; the marker check decides. `None`: the caller watches the
    /// data directory's marker file itself (the file backend).
    fn change_hints(&self) -> Option<std::sync::Arc<tokio::sync::Notify>> {
        None
    }
}

impl dyn Backend + '_ {
    /// `change_records` with a result: the store's usual shape.
    pub fn change<R>(
        &self,
        kind: Records,
        change: impl FnOnce(&mut dyn RecordChange) -> Result<R>,
    ) -> Result<R> {
        let mut change = Some(change);
        let mut out = None;
        self.change_records(kind, &mut |records| {
            let change = change
                .take()
                .expect("a backend runs a change of records once");
            out = Some(change(records)?);
            Ok(())
        })?;
        Ok(out.expect("a change that returned Ok ran"))
    }
}
