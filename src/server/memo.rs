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
//! answers together stay within `MAX_ENTRIES` and `Memo::max_bytes`; when
//! an answer finds no room, retired answers make it first, then the live
//! answers kept longest ago (an epoch lasts as long as nothing changes, so
//! without this a full memo would keep nothing new until the next change).
//! Only
//! answers of admitted reads are kept: a client without a valid token adds
//! nothing.

use std::collections::{HashMap, VecDeque};
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
/// Answers dropped at most to make room for one (retired first, then the
/// oldest live ones): enough for the largest kept (`MAX_BODY`) in place of
/// the smallest (over 256 bytes each), so an answer that fits the memo at
/// all is kept, each drop O(1).
const MOST_DROPPED_FOR_ROOM: usize = 4096;
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
    /// The keys of `by_hash`, oldest first.
    order: VecDeque<u64>,
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
        self.order.clear();
        self.retired.extend(old.into_values());
    }

    /// Drops answers, retired ones first, then the oldest live ones, until
    /// an answer of `size` bytes fits under `hash` (in place of the one
    /// there, if any), or `MOST_DROPPED_FOR_ROOM` went; returns them, for
    /// the caller to drop once the lock is let go, and whether it fits.
    fn make_room(&mut self, hash: u64, size: usize, max_bytes: usize) -> (Vec<Arc<Kept>>, bool) {
        let mut dropped = Vec::new();
        loop {
            let replaced = self.by_hash.get(&hash).map(|kept| kept.size());
            let count_fits = replaced.is_some() || self.by_hash.len() < MAX_ENTRIES;
            let bytes_fit =
                self.bytes - replaced.unwrap_or(0) + self.retired_bytes + size <= max_bytes;
            if count_fits && bytes_fit {
                return (dropped, true);
            }
            if dropped.len() >= MOST_DROPPED_FOR_ROOM {
                return (dropped, false);
            }
            // Retired answers free bytes, not places among the live ones.
            if !bytes_fit && !self.retired.is_empty() {
                dropped.extend(self.take_retired(1));
                continue;
            }
            let Some(oldest) = self.order.pop_front() else {
                return (dropped, false);
            };
            let old = self
                .by_hash
                .remove(&oldest)
                .expect("order holds by_hash's keys");
            self.bytes -= old.size();
            dropped.push(old);
        }
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
        let (mut evicted, fits) = entries.make_room(hash, size, self.max_bytes);
        if fits {
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
            match entries.by_hash.insert(hash, kept) {
                // It takes the place, in age too, of the one it replaces.
                Some(replaced) => {
                    entries.bytes -= replaced.size();
                    evicted.push(replaced);
                }
                None => entries.order.push_back(hash),
            }
        }
        drop(entries);
        drop(dropped);
        drop(evicted);
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

#[cfg(test)]
mod tests {
    use super::*;

    fn keep(memo: &Memo, n: usize, epoch: u64, body: &'static [u8]) {
        let answer = Encoded {
            body: Bytes::from_static(body),
            file: None,
            dated: false,
        };
        let request = format!("GET /{n} HTTP/1.1\r\n\r\n");
        memo.keep(
            LOCAL,
            request.as_bytes(),
            Replay::for_tests(epoch),
            b"HTTP/1.1 200 OK\r\n",
            &answer,
        );
    }

    fn found(memo: &Memo, n: usize) -> bool {
        memo.find(LOCAL, format!("GET /{n} HTTP/1.1\r\n\r\n").as_bytes())
            .is_some()
    }

    const LOCAL: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

    /// An epoch lasts while nothing changes; a full memo still keeps new
    /// answers, in place of those kept longest ago, and stays in bounds.
    #[test]
    fn a_full_memo_keeps_new_answers_in_place_of_the_oldest() {
        let body = &[b'x'; 1000];
        let one = Kept::size_of(
            b"GET /10 HTTP/1.1\r\n\r\n",
            b"HTTP/1.1 200 OK\r\n",
            body,
            &Replay::for_tests(1),
        );
        let memo = Memo::new(10 * one);
        for n in 10..30 {
            keep(&memo, n, 1, body);
            assert!(found(&memo, n), "answer {n} was not kept");
            let entries = memo.entries.lock().unwrap();
            assert!(entries.bytes + entries.retired_bytes <= 10 * one);
            assert_eq!(entries.order.len(), entries.by_hash.len());
        }
        assert!(
            (10..20).all(|n| !found(&memo, n)),
            "the oldest ten made room"
        );
        assert!((20..30).all(|n| found(&memo, n)), "the newest ten are kept");

        // The same request again replaces its answer and keeps its age.
        keep(&memo, 20, 1, body);
        keep(&memo, 30, 1, body);
        assert!(!found(&memo, 20) && found(&memo, 21) && found(&memo, 30));

        // A newer epoch: the old answers are retired and make room first.
        keep(&memo, 40, 2, body);
        assert!(found(&memo, 40) && !found(&memo, 30));
        {
            let entries = memo.entries.lock().unwrap();
            assert_eq!(entries.by_hash.len(), 1);
            assert!(entries.bytes + entries.retired_bytes <= 10 * one);
        }

        // One answer of about seven's size: the eight oldest make its room.
        for n in 41..50 {
            keep(&memo, n, 2, body);
        }
        keep(&memo, 50, 2, &[b'y'; 9000]);
        assert!(found(&memo, 50), "the large answer was kept");
        assert!(
            found(&memo, 48) && !found(&memo, 47),
            "only as many went as it needed"
        );
        let entries = memo.entries.lock().unwrap();
        assert!(entries.bytes + entries.retired_bytes <= 10 * one);
        assert_eq!(entries.order.len(), entries.by_hash.len());
    }

    #[test]
    fn an_answer_larger_than_the_memo_is_not_kept_and_drops_nothing() {
        let memo = Memo::new(4096);
        keep(&memo, 1, 1, b"small");
        keep(&memo, 2, 1, &[b'x'; 8192]);
        assert!(found(&memo, 1) && !found(&memo, 2));
    }
}
