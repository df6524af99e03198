//! Object files the daemon holds open, so the server can send a content
//! from its file (`sendfile`: the kernel passes the page cache's pages to
//! the socket) instead of copying its bytes from memory into the socket.
//!
//! A content gets its file (`Content::file`) when it is read into the read
//! cache: the bytes in memory and the file are the one inode, read once
//! through the same checks as any object read. Objects are immutable and
//! named by their hash, and a file held open keeps its inode even once
//! garbage collection removes its name.
//!
//! Open files are bounded (`file_budget`: half of what the process's
//! open-file limit leaves beside the daemon's connections and a reserve, at
//! most `MOST_HELD`); a content read beyond the budget is served from
//! memory as before. A held file that garbage collection removed keeps its
//! disk space until the read cache lets it go: the daemon looks for such
//! files every thirty seconds (`ReadCache::forget_unlinked_files`).

use std::fs::File;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// Contents smaller than this are copied into the socket with their head
/// in one `writev`: for them a second system call costs more than the copy.
pub const SEND_FROM_FILE_BYTES: u64 = 8 * 1024;
/// Object files held open at most (nginx's `open_file_cache max` in the
/// benchmark's configuration).
const MOST_HELD: usize = 10_000;
/// Descriptors left for the rest: the store's own files, logs, listeners.
const RESERVE: u64 = 256;

/// How many object files may be held open, and how many are.
#[derive(Debug, Default)]
pub(crate) struct FileBudget {
    limit: AtomicUsize,
    held: AtomicUsize,
}

impl FileBudget {
    /// Sets how many files may be held open (`file_budget`).
    pub fn set(&self, most: usize) {
        self.limit.store(most, Ordering::Relaxed);
    }

    /// A place for one more open file, if the budget has one.
    pub fn permit(self: &Arc<Self>) -> Option<FilePermit> {
        let limit = self.limit.load(Ordering::Relaxed);
        self.held
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |held| {
                (held < limit).then_some(held + 1)
            })
            .ok()?;
        Some(FilePermit(Arc::clone(self)))
    }
}

/// One place of the budget, given back when dropped.
#[derive(Debug)]
pub(crate) struct FilePermit(Arc<FileBudget>);

impl Drop for FilePermit {
    fn drop(&mut self) {
        self.0.held.fetch_sub(1, Ordering::Relaxed);
    }
}

/// An object file held open for sending, with the bytes read from it.
#[derive(Debug)]
pub struct HeldFile {
    file: File,
    /// The length of the bytes read from it.
    len: u64,
    _permit: FilePermit,
}

impl HeldFile {
    pub(crate) fn new(file: File, len: u64, permit: FilePermit) -> HeldFile {
        HeldFile {
            file,
            len,
            _permit: permit,
        }
    }

    /// The file, to send from.
    pub fn file(&self) -> &File {
        &self.file
    }

    /// Whether `body` may be these bytes: a body of another length is
    /// not (a sender checks before it sends from the file).
    pub fn holds(&self, body: &[u8]) -> bool {
        !body.is_empty() && body.len() as u64 == self.len
    }
}

/// How many object files a daemon serving up to `connections` at once
/// may hold open, by the process's (soft) open-file limit now.
pub fn file_budget(connections: usize) -> usize {
    let limit = rustix::process::getrlimit(rustix::process::Resource::Nofile).current;
    budget_within(limit, connections)
}

/// Half of what `limit` (`None`: unlimited) leaves beside the connections
/// and `RESERVE`, at most `MOST_HELD`.
fn budget_within(limit: Option<u64>, connections: usize) -> usize {
    let Some(limit) = limit else {
        return MOST_HELD;
    };
    let left = limit.saturating_sub(connections as u64 + RESERVE);
    usize::try_from(left / 2)
        .unwrap_or(usize::MAX)
        .min(MOST_HELD)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_budget_bounds_open_files_and_gets_places_back() {
        let budget = Arc::new(FileBudget::default());
        assert!(budget.permit().is_none(), "no budget before it is set");
        budget.set(2);
        let (a, b) = (budget.permit().unwrap(), budget.permit().unwrap());
        assert!(budget.permit().is_none(), "two at most");
        drop(a);
        let c = budget.permit().expect("a place given back");
        drop((b, c));
        budget.set(0);
        assert!(budget.permit().is_none());
    }

    #[test]
    fn the_budget_leaves_room_for_connections() {
        // systemd's LimitNOFILE=65536 with 1,024 connections: the cap.
        assert_eq!(budget_within(Some(65_536), 1024), MOST_HELD);
        assert_eq!(budget_within(Some(20_000), 1024), (20_000 - 1024 - 256) / 2);
        // The common soft limit of 1,024 with 1,024 connections: none.
        assert_eq!(budget_within(Some(1024), 1024), 0);
        assert_eq!(budget_within(None, 1024), MOST_HELD);
    }
}
