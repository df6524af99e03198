//! Answers the lean path keeps by the bytes of their request (`api::replay`
//! says when one may be given again and does what giving it does).
//!
//! The key is the whole request head, byte for byte, and the client's
//! address: two requests alike in both ask the same thing with the same
//! credentials, so between two changes of the store they get the same
//! answer but its `Date`. Kept: the response head without its `Date` line,
//! and the body (shared with the read cache, not copied).
//!
//! Every answer belongs to one epoch of the read cache (which moves with
//! every change to the store). When answers of a newer epoch come, the
//! older ones are retired and dropped a few at each answer kept (dropping
//! tens of thousands at once would hold one request for milliseconds), and
//! by `sweep` (every two seconds, off the request path), so answers of a
//! past epoch go also when no client asks anything more. Live and retired
//! answers together stay within `MAX_ENTRIES` and `Memo::max_bytes`. Only
//! answers of admitted reads are kept: a client without a valid token adds
//! nothing.

use std::collections::HashMap;
use std::hash::BuildHasher;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use bytes::Bytes;

use super::lean::Encoded;
use crate::api::Replay;
use crate::store::held::HeldFile;

/// Answers kept in one epoch at most.
const MAX_ENTRIES: usize = 65_536;
/// A larger body is not kept (configuration files are far smaller).
const MAX_BODY: usize = 1024 * 1024;
/// Retired answers dropped per answer kept.
const DROPS_PER_KEEP: usize = 32;
/// Retired answers dropped per `sweep`: a daemon pinned to one core runs
/// the sweep beside its requests, so it too drops a few at a time.
const DROPS_PER_SWEEP: usize = 1024;

pub(super) struct Memo {
    entries: Mutex<Entries>,
    hasher: foldhash::fast::RandomState,
    /// Bytes kept at most, live and retired answers together
    /// (`ServerOptions::answer_memo_bytes`).
    max_bytes: usize,
}

#[derive(Default)]
struct Entries {
    epoch: u64,
    /// By the hash of (address, request head); a different request with
    /// the same hash replaces it.
    by_hash: HashMap<u64, Arc<Kept>, foldhash::fast::RandomState>,
    bytes: usize,
    /// The answers of older epochs, waiting to be dropped.
    retired: Vec<Arc<Kept>>,
    retired_bytes: usize,
}

impl Entries {
    /// Retires the answers kept so far, for a newer `epoch`.
    fn retire(&mut self, epoch: u64) {
        self.epoch = epoch;
        self.retired_bytes += std::mem::take(&mut self.bytes);
        let old = std::mem::take(&mut self.by_hash);
        self.retired.extend(old.into_values());
    }

    /// Takes up to `n` retired answers out, for the caller to drop once
    /// the lock is let go.
    fn take_retired(&mut self, n: usize) -> Vec<Arc<Kept>> {
        let at = self.retired.len().saturating_sub(n);
        let taken: Vec<_> = self.retired.drain(at..).collect();
        self.retired_bytes -= taken.iter().map(|k| k.size()).sum::<usize>();
        taken
    }
}

/// A kept answer.
pub(super) struct Kept {
    peer: IpAddr,
    request: Box<[u8]>,
    pub replay: Replay,
    /// The response head up to its `Date` line (`lean::encode`).
    pub head: Box<[u8]>,
    /// Whether the handler set a `Date` of its own.
    pub dated: bool,
    pub body: Bytes,
    /// The body as a file held open (`lean::send`).
    pub file: Option<Arc<HeldFile>>,
}

impl Memo {
    /// A memo of at most `max_bytes`.
    pub fn new(max_bytes: usize) -> Memo {
        Memo {
            entries: Mutex::default(),
            hasher: foldhash::fast::RandomState::default(),
            max_bytes,
        }
    }

    /// The answer kept for this request head from this address, if any
    /// (whether it may be given again is `Replay::again`'s to say).
    pub fn find(&self, peer: IpAddr, request: &[u8]) -> Option<Arc<Kept>> {
        let hash = self.hasher.hash_one((peer, request));
        let kept = self
            .entries
            .lock()
            .expect("memo")
            .by_hash
            .get(&hash)?
            .clone();
        (kept.peer == peer && *kept.request == *request).then_some(kept)
    }

    /// Keeps an answer to give again.
    pub fn keep(
        &self,
        peer: IpAddr,
        request: &[u8],
        replay: Replay,
        head: &[u8],
        answer: &Encoded,
    ) {
        let body = &answer.body;
        let size = Kept::size_of(request, head, body, &replay);
        if body.len() > MAX_BODY || size > self.max_bytes {
            return;
        }
        let hash = self.hasher.hash_one((peer, request));
        let epoch = replay.epoch();
        let mut entries = self.entries.lock().expect("memo");
        if epoch < entries.epoch {
            return;
        }
        if epoch > entries.epoch {
            entries.retire(epoch);
        }
        let dropped = entries.take_retired(DROPS_PER_KEEP);
        let used = entries.bytes + entries.retired_bytes;
        if entries.by_hash.len() < MAX_ENTRIES && used + size <= self.max_bytes {
            let kept = Arc::new(Kept {
                peer,
                request: request.into(),
                replay,
                head: head.into(),
                dated: answer.dated,
                body: body.clone(),
                file: answer.file.clone(),
            });
            entries.bytes += size;
            if let Some(replaced) = entries.by_hash.insert(hash, kept) {
                entries.bytes -= replaced.size();
            }
        }
        drop(entries);
        drop(dropped);
    }

    /// Retires the answers of an epoch older than `epoch` (the read
    /// cache's now) and takes out up to `DROPS_PER_SWEEP` retired answers,
    /// for the caller to drop off the request path.
    pub fn sweep(&self, epoch: Option<u64>) -> Vec<Arc<Kept>> {
        let mut entries = self.entries.lock().expect("memo");
        match epoch {
            Some(now) if now > entries.epoch => entries.retire(now),
            _ => {}
        }
        entries.take_retired(DROPS_PER_SWEEP)
    }
}

impl Kept {
    /// What an answer costs the memo: its bytes, and about as much again
    /// as its bookkeeping takes.
    fn size_of(request: &[u8], head: &[u8], body: &[u8], replay: &Replay) -> usize {
        request.len() + head.len() + body.len() + replay.size() + 256
    }

    fn size(&self) -> usize {
        Kept::size_of(&self.request, &self.head, &self.body, &self.replay)
    }
}
