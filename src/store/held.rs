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
//! Open files are bounded (`set_budget`: a quarter of the process's limit,
//! at most `MOST_HELD`), since the same limit also counts connections; a
//! content read beyond the budget is served from memory as before.

use std::fs::File;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// Contents smaller than this are copied into the socket with their head
/// in one `writev`: for them a second system call costs more than the copy.
pub const SEND_FROM_FILE_BYTES: u64 = 8 * 1024;
/// Object files held open at most (nginx's `open_file_cache max` in the
/// benchmark's configuration).
const MOST_HELD: usize = 10_000;

/// How many object files may be held open, and how many are.
#[derive(Debug, Default)]
pub(crate) struct FileBudget {
    limit: AtomicUsize,
    held: AtomicUsize,
}

impl FileBudget {
    /// Sets the budget from the process's open-file limit (`None`:
    /// unknown, none held).
    pub fn set(&self, open_file_limit: Option<u64>) {
        let limit = open_file_limit
            .map_or(0, |n| (n / 4) as usize)
            .min(MOST_HELD);
        self.limit.store(limit, Ordering::Relaxed);
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

    pub fn file(&self) -> &File {
        &self.file
    }

    /// Whether `body` may be these bytes: a body of another length is
    /// not (a sender checks before it sends from the file).
    pub fn holds(&self, body: &[u8]) -> bool {
        !body.is_empty() && body.len() as u64 == self.len
    }
}

/// The process's limit of open files (its soft limit), if it has one.
pub fn open_file_limit() -> Option<u64> {
    rustix::process::getrlimit(rustix::process::Resource::Nofile).current
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_budget_bounds_open_files_and_gets_places_back() {
        let budget = Arc::new(FileBudget::default());
        assert!(budget.permit().is_none(), "no budget before it is set");
        budget.set(Some(8));
        let (a, b) = (budget.permit().unwrap(), budget.permit().unwrap());
        assert!(budget.permit().is_none(), "a quarter of 8 is 2");
        drop(a);
        let c = budget.permit().expect("a place given back");
        drop((b, c));
        budget.set(Some(1_000_000));
        assert_eq!(budget.limit.load(Ordering::Relaxed), MOST_HELD);
        budget.set(None);
        assert!(budget.permit().is_none());
    }
}
