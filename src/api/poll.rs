//! Long-poll on the poll endpoints (SPEC §4): with `If-None-Match` and
//! `?wait=SECONDS` (at most 300), the branches list, one branch, a tree
//! and a raw file are held until their answer would differ, then answered
//! 200 with the new body, or 304 when the wait runs out.
//!
//! How a change reaches a parked poll, whoever made it (this daemon, the
//! CLI, another process):
//! 1. every write replaces the store's change marker (`Store::note_change`);
//! 2. the server's watcher (`server::watch_changes`) sees that through
//!    inotify within milliseconds (and checks once a second regardless)
//!    and calls [`Changes::refresh`];
//! 3. `refresh` reads the state of every watched [`Key`] — a branch's
//!    commit id, or for a whole project its branches and their commit ids:
//!    one read per key however many polls wait on it — and notifies only
//!    the keys whose state moved;
//! 4. each poll woken answers again from the store; if its answer still
//!    equals what the client holds (a file the change did not touch) it
//!    waits on, unseen by the client. A client is answered 200 once per
//!    change of its answer, never with what it already has.
//!
//! No wake is lost between the check and the wait: a poll subscribes to
//! its key *before* it computes its first answer, and a `watch` channel
//! remembers a change sent in between, so the wait returns at once.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{watch, Notify};

use super::route::ReadEndpoint;
use super::Request;
use crate::auth::TokenRecord;
use crate::error::{Error, Result};
use crate::names::{BranchName, ProjectRef};
use crate::store::Store;

/// The longest wait a client may ask for.
pub const MAX_WAIT: Duration = Duration::from_secs(300);

/// Polls one client — a token, the `X-Instance-Id` it sends and its
/// address — may have parked at once. A parked poll whose client went
/// away is not noticed until it is answered (a client may close its
/// sending side and still wait for the answer, so a closed side says
/// nothing); an ERP that gives up before its `wait` and asks again would
/// pile such polls up against `max_connections`. Past this many, the
/// client's oldest parked poll is answered (304) to make room. A fleet
/// sharing one token is not limited as a whole: its sites differ in
/// instance id or address.
pub const MAX_PARKED_PER_CLIENT: usize = 32;

/// What a poll waits on: one branch of a project, or (`branch: None`) any
/// branch of it — the branches list, and reads of the default branch,
/// which a new branch can change.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Key {
    pub project: ProjectRef,
    pub branch: Option<BranchName>,
}

/// A request that may be held: what it waits on, and for how long.
#[derive(Debug, Clone)]
pub struct LongPoll {
    pub key: Key,
    pub wait: Duration,
}

/// A parked poll: its number (oldest first) and the signal that releases it.
type ParkedPoll = (u64, Arc<Notify>);

/// The watched keys and their last known states, shared by every parked
/// poll and the watcher.
#[derive(Default)]
pub struct Changes {
    keys: Mutex<HashMap<Key, watch::Sender<String>>>,
    /// Set once at shutdown: every parked poll answers now.
    closing: watch::Sender<bool>,
    /// Per client (see `MAX_PARKED_PER_CLIENT`), its parked polls, oldest
    /// first, each with the signal that releases it.
    by_client: Mutex<HashMap<String, VecDeque<ParkedPoll>>>,
    next_park: AtomicU64,
    parked: AtomicU64,
    wakes: AtomicU64,
}

impl Changes {
    /// A receiver for `key`'s state, taken before the poll's first answer
    /// is computed. A key watched for the first time starts at its state
    /// read now.
    pub fn subscribe(&self, store: &Store, key: &Key) -> watch::Receiver<String> {
        if let Some(sender) = self.keys.lock().expect("changes").get(key) {
            return sender.subscribe();
        }
        let state = state(store, key);
        let mut keys = self.keys.lock().expect("changes");
        keys.entry(key.clone())
            .or_insert_with(|| watch::Sender::new(state))
            .subscribe()
    }

    /// Reads the state of every key a poll waits on and notifies those
    /// that moved; forgets keys nobody waits on any more. Called by the
    /// watcher after each change seen (blocking: it reads the store).
    pub fn refresh(&self, store: &Store) {
        if let Err(e) = store.revalidate() {
            tracing::warn!(error = %e, "long-poll: could not check the store for changes");
        }
        let watched: Vec<(Key, watch::Sender<String>)> = {
            let mut keys = self.keys.lock().expect("changes");
            keys.retain(|_, sender| sender.receiver_count() > 0);
            keys.iter().map(|(k, s)| (k.clone(), s.clone())).collect()
        };
        for (key, sender) in watched {
            let now = state(store, &key);
            let moved = sender.send_if_modified(|seen| {
                let moved = *seen != now;
                if moved {
                    *seen = now;
                }
                moved
            });
            if moved {
                self.wakes
                    .fetch_add(sender.receiver_count() as u64, Ordering::Relaxed);
            }
        }
    }

    /// Whether any poll waits (the watcher's periodic check skips the
    /// store otherwise).
    pub fn any_watched(&self) -> bool {
        !self.keys.lock().expect("changes").is_empty()
    }

    /// Shutdown: every parked poll answers now, and none parks again.
    pub fn close(&self) {
        self.closing.send_replace(true);
    }

    pub fn closing(&self) -> watch::Receiver<bool> {
        self.closing.subscribe()
    }

    /// Registers a poll of `client` as parked for as long as the guard
    /// lives; beyond `MAX_PARKED_PER_CLIENT` the client's oldest is released.
    pub fn park(&self, client: &str) -> Parked<'_> {
        self.parked.fetch_add(1, Ordering::Relaxed);
        let id = self.next_park.fetch_add(1, Ordering::Relaxed);
        let release = Arc::new(Notify::new());
        let mut by_client = self.by_client.lock().expect("changes");
        let queue = by_client.entry(client.to_string()).or_default();
        queue.push_back((id, Arc::clone(&release)));
        if queue.len() > MAX_PARKED_PER_CLIENT {
            if let Some((_, oldest)) = queue.pop_front() {
                // Stored as a permit if that poll is between two waits.
                oldest.notify_one();
            }
        }
        Parked {
            changes: self,
            client: client.to_string(),
            id,
            release,
        }
    }

    /// Polls waiting now, and wakes sent so far (for `/metrics`).
    pub fn counts(&self) -> (u64, u64) {
        (
            self.parked.load(Ordering::Relaxed),
            self.wakes.load(Ordering::Relaxed),
        )
    }
}

/// A parked poll's registration (see `Changes::park`).
pub struct Parked<'a> {
    changes: &'a Changes,
    client: String,
    id: u64,
    release: Arc<Notify>,
}

impl Parked<'_> {
    /// Completes when the poll must make room for a newer one of its client.
    pub async fn released(&self) {
        self.release.notified().await
    }
}

impl Drop for Parked<'_> {
    fn drop(&mut self) {
        self.changes.parked.fetch_sub(1, Ordering::Relaxed);
        let mut by_client = self.changes.by_client.lock().expect("changes");
        if let Some(queue) = by_client.get_mut(&self.client) {
            queue.retain(|(id, _)| *id != self.id);
            if queue.is_empty() {
                by_client.remove(&self.client);
            }
        }
    }
}

/// The state of a key: a branch's commit id, or a project's branches with
/// theirs; empty for what does not exist.
fn state(store: &Store, key: &Key) -> String {
    match &key.branch {
        Some(branch) => store
            .live(&key.project, branch)
            .map(|gen| gen.meta.commit_id.clone())
            .unwrap_or_default(),
        None => store
            .list_branches(&key.project)
            .map(|branches| {
                branches
                    .iter()
                    .map(|b| format!("{}={}\n", b.name, b.commit_id))
                    .collect()
            })
            .unwrap_or_default(),
    }
}

/// The query key of a long poll's wait (the lean HTTP path leaves any
/// request carrying it to hyper).
pub const WAIT: &str = "wait";

/// The long-poll a read asks for: `None` when it asks for none, has no
/// `If-None-Match` (nothing to wait against) or waits 0 s. A `wait` that
/// is not a whole number of seconds up to 300, or on an endpoint that
/// cannot be held, is a 400.
pub(super) fn requested(
    req: &Request,
    token: &TokenRecord,
    endpoint: &ReadEndpoint,
) -> Result<Option<LongPoll>> {
    let Some(raw) = req.query.get(WAIT) else {
        return Ok(None);
    };
    let seconds: u64 = raw.parse().map_err(|_| {
        Error::invalid(format!(
            "wait is invalid: {raw:?} is not a number of seconds"
        ))
    })?;
    if seconds > MAX_WAIT.as_secs() {
        return Err(Error::invalid(format!(
            "wait is invalid: at most {} seconds",
            MAX_WAIT.as_secs()
        )));
    }
    let by_ref = || {
        req.query
            .get("ref")
            .filter(|r| !r.is_empty() && *r != "HEAD")
            .and_then(|r| BranchName::parse(r).ok())
    };
    use ReadEndpoint as R;
    let (id, branch) = match endpoint {
        R::Branches { id } => (id, None),
        // A branch's answer says whether it is the default, which other
        // branches decide: it waits on the whole project.
        R::Branch { id, .. } => (id, None),
        R::Tree { id } | R::FileRaw { id, .. } => (id, by_ref()),
        _ => {
            return Err(Error::invalid(
                "wait is supported on the branches list, one branch, tree and raw file only",
            ))
        }
    };
    if seconds == 0 || !req.parts.headers.contains_key(hyper::header::IF_NONE_MATCH) {
        return Ok(None);
    }
    Ok(Some(LongPoll {
        key: Key {
            project: id.resolve(&token.owner).into_owned(),
            branch,
        },
        wait: Duration::from_secs(seconds),
    }))
}
