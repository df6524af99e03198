//! The backend seam: where a store keeps what it keeps.
//!
//! `Store` holds the rules (names, roles, token checks, what a write may
//! do, the read cache); a backend holds the bytes. The file backend
//! (`files.rs`, `--data DIR`) is the default; a shared database lets
//! several daemons serve one store (SPEC §16).
//!
//! What crosses this seam so far:
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
//! Still on the far side, in `Store` itself and bound to files: a branch's
//! head and the immutable content (generations, trees, file contents) —
//! the two narrow seams named in the module doc of `store` — and the
//! wake-up of long polls (`server::watch_changes`). They cross next.
//!
//! A backend's errors are the store's (`crate::Error`): a backend that
//! cannot reach its data answers `Io`, which the API turns into a 5xx.

pub mod files;
pub mod postgres;

use std::fmt::Debug;

use crate::error::Result;
use crate::names::ProjectRef;

/// The kinds of record a store keeps beside its content.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Records {
    /// Read tokens, by the hex HMAC of their secret.
    Tokens,
    /// Users, by name.
    Users,
    /// Admin sessions, by the hex SHA-256 of their id.
    Sessions,
}

impl Records {
    /// What a record of this kind is called in errors.
    pub fn what(self) -> &'static str {
        match self {
            Records::Tokens => "token record",
            Records::Users => "user record",
            Records::Sessions => "session record",
        }
    }
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

/// Where a store keeps its records, audit trail, fleet view and change
/// signal. Implementations must be safe to share between threads; every
/// method may block on storage.
pub trait Backend: Send + Sync + Debug {
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
