//! Answers the lean path keeps by the bytes of their request (`api::replay`
//! says when one may be given again and does what giving it does).
//!
//! The key is the whole request head, byte for byte, and the client's
//! address: two requests alike in both ask the same thing with the same
//! credentials, so between two changes of the store they get the same
//! answer but its `Date`. Kept: the response head without its `Date` line,
//! and the body (shared with the read cache, not copied).
//!
//! Every answer belongs to one epoch of the read cache; entries of an older
//! epoch are dropped all at once when an answer of a newer one is kept, so
//! the memo holds at most what clients asked within about a second (the
//! read cache's epoch moves at least that often), bounded besides by
//! `MAX_ENTRIES` and `Memo::max_bytes`. Only answers of admitted reads are kept:
//! a client without a valid token adds nothing.

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

pub(super) struct Memo {
    entries: Mutex<Entries>,
    hasher: foldhash::fast::RandomState,
    /// Bytes of request heads, response heads and bodies kept at most
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
    /// The answers of older epochs, dropped a few at each `keep`: dropping
    /// tens of thousands at once would hold one request for milliseconds.
    retired: Vec<Arc<Kept>>,
}

/// Retired answers dropped per answer kept.
const DROPS_PER_KEEP: usize = 32;

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
        let size = request.len() + head.len() + body.len();
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
            entries.epoch = epoch;
            entries.bytes = 0;
            let old = std::mem::take(&mut entries.by_hash);
            entries.retired.extend(old.into_values());
        }
        let at = entries.retired.len().saturating_sub(DROPS_PER_KEEP);
        let old: Vec<_> = entries.retired.drain(at..).collect();
        let full = entries.by_hash.len() >= MAX_ENTRIES || entries.bytes + size > self.max_bytes;
        if !full {
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
        drop(old);
    }
}

impl Kept {
    fn size(&self) -> usize {
        self.request.len() + self.head.len() + self.body.len()
    }
}
