//! The audit vocabulary, and the one place records are made.
//!
//! | action                 | target                      | recorded when                              |
//! |------------------------|-----------------------------|--------------------------------------------|
//! | `project.create`       | `owner/repo`                | a project is created (with `main`)         |
//! | `branch.create`        | `owner/repo@branch`         | a branch is created                        |
//! | `file.put`             | `owner/repo@branch:path`    | a file is saved (also when unchanged)      |
//! | `file.delete`          | `owner/repo@branch:path`    | a file is removed                          |
//! | `file.import`          | `owner/repo@branch`         | a folder is imported as one version        |
//! | `rollback`             | `owner/repo@branch`         | a branch is set back to an earlier version |
//! | `history.prune`        | `owner/repo@branch`         | old versions of a branch are dropped       |
//! | `store.gc`             | `store`                     | contents no kept version uses are removed  |
//! | `token.create`         | token id                    | a read token is issued                     |
//! | `token.update`         | token id                    | scope, expiry, fingerprint or name changed |
//! | `token.unbind`         | token id                    | a bound fingerprint is forgotten           |
//! | `token.revoke`         | token id                    | a token is revoked                         |
//! | `token.rotate`         | token id (the old one)      | a successor is issued                      |
//! | `user.add`             | `user:name`                 | a user is added                            |
//! | `user.passwd`          | `user:name`                 | a password is set                          |
//! | `user.grant`           | `user:name`                 | a role is granted                          |
//! | `user.revoke`          | `user:name`                 | a role is taken away                       |
//! | `user.disable`         | `user:name`                 | a user is disabled                         |
//! | `login.success`        | `user:name`                 | a session starts                           |
//! | `login.failure`        | `user:name` or `user:(unknown)` | a login is refused                    |
//! | `logout`               | `user:name`                 | a session ends at the user's request      |
//! | `fingerprint.bind`     | token id                    | a token's first request binds its instance |
//! | `fingerprint.mismatch` | the request path            | a bound token is used from elsewhere       |
//! | `auth.denied`          | the request path            | a request is refused (401/403)             |
//! | `auth.denied.summary`  | the client address          | refusals past the per-address limit, counted |
//!
//! Changes are fsynced before the operation returns; refusals are not (a
//! flood of bad requests must not become a flood of disk flushes), and per
//! client address at most [`DENIED_PER_WINDOW`] of them are written each
//! minute: the rest are counted into one `auth.denied.summary` record, so
//! refused requests cannot fill the disk through the trail. Every target is
//! cut to [`MAX_TARGET_BYTES`].

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::Actor;
use crate::store::audit::AuditRecord;
use crate::store::{AuditOf, Store, WriteOutcome};

/// What happened: the `action` of an audit record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    ProjectCreate,
    BranchCreate,
    FilePut,
    FileDelete,
    FileImport,
    Rollback,
    HistoryPrune,
    StoreGc,
    TokenCreate,
    TokenUpdate,
    TokenUnbind,
    TokenRevoke,
    TokenRotate,
    UserAdd,
    UserPasswd,
    UserGrant,
    UserRevoke,
    UserDisable,
    LoginSuccess,
    LoginFailure,
    Logout,
    FingerprintBind,
    FingerprintMismatch,
    AuthDenied,
    AuthDeniedSummary,
}

impl Event {
    pub const ALL: [Event; 25] = [
        Event::ProjectCreate,
        Event::BranchCreate,
        Event::FilePut,
        Event::FileDelete,
        Event::FileImport,
        Event::Rollback,
        Event::HistoryPrune,
        Event::StoreGc,
        Event::TokenCreate,
        Event::TokenUpdate,
        Event::TokenUnbind,
        Event::TokenRevoke,
        Event::TokenRotate,
        Event::UserAdd,
        Event::UserPasswd,
        Event::UserGrant,
        Event::UserRevoke,
        Event::UserDisable,
        Event::LoginSuccess,
        Event::LoginFailure,
        Event::Logout,
        Event::FingerprintBind,
        Event::FingerprintMismatch,
        Event::AuthDenied,
        Event::AuthDeniedSummary,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Event::ProjectCreate => "project.create",
            Event::BranchCreate => "branch.create",
            Event::FilePut => "file.put",
            Event::FileDelete => "file.delete",
            Event::FileImport => "file.import",
            Event::Rollback => "rollback",
            Event::HistoryPrune => "history.prune",
            Event::StoreGc => "store.gc",
            Event::TokenCreate => "token.create",
            Event::TokenUpdate => "token.update",
            Event::TokenUnbind => "token.unbind",
            Event::TokenRevoke => "token.revoke",
            Event::TokenRotate => "token.rotate",
            Event::UserAdd => "user.add",
            Event::UserPasswd => "user.passwd",
            Event::UserGrant => "user.grant",
            Event::UserRevoke => "user.revoke",
            Event::UserDisable => "user.disable",
            Event::LoginSuccess => "login.success",
            Event::LoginFailure => "login.failure",
            Event::Logout => "logout",
            Event::FingerprintBind => "fingerprint.bind",
            Event::FingerprintMismatch => "fingerprint.mismatch",
            Event::AuthDenied => "auth.denied",
            Event::AuthDeniedSummary => "auth.denied.summary",
        }
    }

    /// Whether `filter` (an exact action or a family such as `token`)
    /// names any action of the vocabulary.
    pub fn is_known_filter(filter: &str) -> bool {
        let family = filter.trim_end_matches('.');
        Event::ALL.iter().any(|e| {
            let a = e.as_str();
            a == filter
                || a.strip_prefix(family)
                    .is_some_and(|rest| rest.starts_with('.'))
        })
    }
}

/// Targets longer than this are cut (on a character boundary) and marked
/// with `…`: a request path of 30 KB must not cost 30 KB of trail.
pub const MAX_TARGET_BYTES: usize = 256;

/// Refusals written per client address and minute; the rest are counted.
pub const DENIED_PER_WINDOW: u32 = 20;
const DENIED_WINDOW: Duration = Duration::from_secs(60);
/// Addresses tracked at once; beyond it the quietest are forgotten.
const MAX_TRACKED_ADDRESSES: usize = 10_000;

/// Appends a change's record, durable. A failure is logged, not returned:
/// see the module docs of `ops`.
pub fn change(store: &Store, actor: &Actor, event: Event, target: &str, details: Value) {
    append(store, actor, event, target, details, true)
}

/// A write of a branch's files, audited: its record goes with its version
/// when the store kept it there (`WriteOutcome::audited`: a database
/// commits both in one transaction); else it is appended now, as `change`.
/// `details` makes the record's details from the outcome.
pub fn write(
    store: &Store,
    actor: &Actor,
    event: Event,
    target: &str,
    details: &(dyn Fn(&WriteOutcome) -> Value + Sync),
    write: impl FnOnce(AuditOf<'_>) -> crate::Result<WriteOutcome>,
) -> crate::Result<WriteOutcome> {
    let audit = |outcome: &WriteOutcome| record(actor, event, target, details(outcome));
    let outcome = write(&audit)?;
    if !outcome.audited {
        change(store, actor, event, target, details(&outcome));
    }
    Ok(outcome)
}

/// The record of an event by `actor`.
fn record(actor: &Actor, event: Event, target: &str, details: Value) -> AuditRecord {
    let mut record = AuditRecord::new(&actor.name(), event.as_str(), cut(target), details);
    record.ip = actor.ip.clone();
    record.user_agent = actor.user_agent.clone();
    record
}

fn append(store: &Store, actor: &Actor, event: Event, target: &str, details: Value, durable: bool) {
    let record = record(actor, event, target, details);
    if let Err(e) = store.append_audit(&record, durable) {
        tracing::error!(
            error = %e,
            action = event.as_str(),
            "the change was made, but recording it in the audit trail failed"
        );
        AUDIT_FAILURES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }
}

/// Audit appends that failed in this process (for the daemon's metrics).
pub static AUDIT_FAILURES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

fn cut(target: &str) -> String {
    if target.len() <= MAX_TARGET_BYTES {
        return target.to_string();
    }
    let mut end = MAX_TARGET_BYTES;
    while !target.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &target[..end])
}

/// Refusals recorded per client address, so that a flood of refused
/// requests is one summary record a minute, not one record each.
#[derive(Default)]
pub struct DeniedLimiter {
    windows: Mutex<HashMap<String, DeniedWindow>>,
}

struct DeniedWindow {
    started: Instant,
    written: u32,
    suppressed: u64,
}

impl DeniedLimiter {
    /// Records a refused request (`auth.denied` or `fingerprint.mismatch`),
    /// not fsynced, unless this address is over its allowance this minute.
    pub fn record(&self, store: &Store, actor: &Actor, event: Event, target: &str, details: Value) {
        let address = actor.ip.clone().unwrap_or_default();
        let now = Instant::now();
        let (summary, write) = {
            let mut windows = self.windows.lock().expect("denied limiter");
            if windows.len() >= MAX_TRACKED_ADDRESSES && !windows.contains_key(&address) {
                // Full: forget the quietest address (its count goes unreported
                // rather than memory growing without bound).
                if let Some(quiet) = windows
                    .iter()
                    .min_by_key(|(_, w)| w.written as u64 + w.suppressed)
                    .map(|(k, _)| k.clone())
                {
                    windows.remove(&quiet);
                }
            }
            let window = windows.entry(address.clone()).or_insert(DeniedWindow {
                started: now,
                written: 0,
                suppressed: 0,
            });
            let mut summary = 0;
            if now.duration_since(window.started) >= DENIED_WINDOW {
                summary = window.suppressed;
                *window = DeniedWindow {
                    started: now,
                    written: 0,
                    suppressed: 0,
                };
            }
            let write = window.written < DENIED_PER_WINDOW;
            if write {
                window.written += 1;
            } else {
                window.suppressed += 1;
            }
            (summary, write)
        };
        if summary > 0 {
            write_summary(store, &address, summary);
        }
        if write {
            append(store, actor, event, target, details, false);
        }
    }

    /// Writes the summary of every window that has ended and forgets it:
    /// the daemon calls this every few seconds and at shutdown, so a flood
    /// that stops is still counted.
    pub fn flush(&self, store: &Store, all: bool) {
        let now = Instant::now();
        let ended: Vec<(String, u64)> = {
            let mut windows = self.windows.lock().expect("denied limiter");
            let mut ended = Vec::new();
            windows.retain(|address, w| {
                let over = all || now.duration_since(w.started) >= DENIED_WINDOW;
                if over && w.suppressed > 0 {
                    ended.push((address.clone(), w.suppressed));
                }
                !over
            });
            ended
        };
        for (address, count) in ended {
            write_summary(store, &address, count);
        }
    }
}

fn write_summary(store: &Store, address: &str, suppressed: u64) {
    let actor = Actor::anonymous().from_client(Some(address.to_string()), None);
    let details = serde_json::json!({
        "suppressed": suppressed,
        "window_seconds": DENIED_WINDOW.as_secs(),
    });
    append(
        store,
        &actor,
        Event::AuthDeniedSummary,
        address,
        details,
        false,
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_are_cut_on_a_character_boundary() {
        assert_eq!(cut("demo/a.cfg"), "demo/a.cfg");
        let long = "é".repeat(300);
        let short = cut(&long);
        assert!(short.len() <= MAX_TARGET_BYTES + "…".len());
        assert!(short.ends_with('…'));
        assert!(short.trim_end_matches('…').chars().all(|c| c == 'é'));
    }

    #[test]
    fn filters_name_the_vocabulary() {
        for e in Event::ALL {
            assert!(Event::is_known_filter(e.as_str()), "{}", e.as_str());
        }
        assert!(Event::is_known_filter("token"));
        assert!(Event::is_known_filter("token."));
        assert!(Event::is_known_filter("auth.denied"));
        assert!(!Event::is_known_filter("tok"));
        assert!(!Event::is_known_filter("token.delete"));
    }
}
