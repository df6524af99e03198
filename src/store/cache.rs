//! The daemon's read cache: what ERPs poll, kept in memory, never stale.
//!
//! Two kinds of data are cached:
//! - immutable things (generations by version, file contents by hash):
//!   valid forever once read, bounded by size;
//! - pointers to them (a branch's live generation, i.e. its HEAD, a
//!   project's branch names, whether a project exists, a token record):
//!   valid until the store changes.
//!
//! Every write, by any process, announces a new random change marker
//! after it commits (`Store::note_change`; the file backend replaces
//! `.cfgstore/changes`). The daemon checks that marker at the start of each
//! request (`check_marker`, through the backend's `ChangeWatch`: for files
//! one non-blocking read of an inotify watch, the file itself only when it
//! was replaced); when it differs from the last value seen, every pointer
//! is dropped. So a change made by the CLI is in force for the daemon's very
//! next request, at the cost of one check instead of one read per branch,
//! token and project.
//!
//! The marker is a prompt, not the only line of defence: pointers a second
//! old are checked against the store (`cache/renew.rs`: kept if they still
//! hold, else dropped; dropped outright when many), so a writer that
//! committed but could not replace the marker delays its change by a
//! second at most.
//!
//! Pointer entries carry the epoch in which their read began; one that was
//! read before an invalidation is not stored after it, so a slow request
//! can never put an old HEAD back into a freshly cleared cache.

mod renew;
pub(crate) use renew::Held;

use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::generation::Generation;

/// The maps every read request looks up (a branch's live version, a
/// token, a content): foldhash, as the fleet view's (see Cargo.toml). Their
/// keys are names of stored branches, token MACs and content hashes, which
/// a client cannot pick; a map a client's names reach (projects looked up
/// by any name a request gives) keeps the standard SipHash.
type FastMap<K, V> = HashMap<K, V, foldhash::fast::RandomState>;
use super::trees::Node;
use super::ProjectInfo;
use crate::auth::TokenRecord;
use crate::metrics::StoreSize;
use crate::names::{BranchName, ProjectRef, SnapshotId};

impl std::fmt::Debug for ReadCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ReadCache")
    }
}

/// Most bytes of file contents kept in memory unless configured
/// (`content_cache_bytes`): room for the 20,000-file benchmark project.
pub const DEFAULT_CONTENT_BUDGET: usize = 256 * 1024 * 1024;
/// Contents larger than this are read from disk each time.
const LARGEST_CACHED_OBJECT: usize = 4 * 1024 * 1024;
/// Pointers are checked against the store at least this often, whatever
/// the marker says (`cache/renew.rs`): a change whose writer could not
/// replace the marker (a full disk, say) is in force after about this long,
/// never only at the next change.
const POINTER_MAX_AGE: Duration = Duration::from_secs(1);
/// Generations kept (the live one of every branch, plus recent snapshots).
const GENERATION_SLOTS: usize = 4096;
/// And at most this many files over all of them: a version read from
/// takes some 300 bytes a file (its flat list and path index), so 4,096
/// versions of a 20,000-file branch would hold 24 GiB. About 75 MiB.
const GENERATION_FILES: u64 = 250_000;

#[derive(Default)]
pub(crate) struct ReadCache {
    /// Commit ids and short ids of pinned reads (`ref=<id>`) found once:
    /// versions never change, so a found id stays true.
    commits: Mutex<HashMap<(ProjectRef, String), (BranchName, SnapshotId)>>,
    /// The store's size as last counted (`/metrics`), and the marker it
    /// is true for.
    size: Mutex<Option<CountedSize>>,
    /// The backend's watch of the change marker (set by `watch_changes`).
    watch: std::sync::OnceLock<Box<dyn super::backend::ChangeWatch>>,
    pointers: Mutex<Pointers>,
    generations: Mutex<Bounded<(PathBuf, SnapshotId), Arc<Generation>>>,
    objects: Mutex<ObjectCache>,
    /// Tree objects by path, as long as some cached generation holds them:
    /// a new version loads only the folders it changed.
    nodes: Mutex<NodeCache>,
    /// Object files held open for sending (`held.rs`).
    files: Arc<super::held::FileBudget>,
    /// Taken while old pointers are checked against the store (`renew.rs`).
    checking: Mutex<()>,
}

#[derive(Default)]
struct Pointers {
    marker: Vec<u8>,
    epoch: u64,
    /// When the pointers were last dropped or found to hold (`renew.rs`;
    /// `None`: never). (`coarse::monotonic`: read on every request.)
    cleared_at: Option<Duration>,
    /// A pointer was replaced by a different value within this epoch (or
    /// dropped by a bound): the next check drops them all.
    replaced: bool,
    /// Checks that found the pointers holding (`renew.rs`).
    checks: u64,
    /// A branch's live generation (its HEAD, read from disk once per
    /// epoch, resolved in `generations`), found by name.
    live: FastMap<ProjectRef, FastMap<BranchName, Arc<Generation>>>,
    projects: HashMap<ProjectRef, Option<Arc<ProjectInfo>>>,
    branch_names: HashMap<ProjectRef, Arc<Vec<BranchName>>>,
    /// By the token's MAC (`ServerKey::token_mac_bytes`).
    tokens: FastMap<[u8; 32], Option<Arc<TokenRecord>>>,
    /// Answers made from a project's current state (`Store::project_answer`).
    answers: HashMap<ProjectRef, HashMap<&'static str, Arc<dyn std::any::Any + Send + Sync>>>,
}

impl Pointers {
    fn clear(&mut self) {
        self.epoch += 1;
        self.cleared_at = Some(crate::coarse::monotonic());
        self.replaced = false;
        self.live.clear();
        self.projects.clear();
        self.branch_names.clear();
        self.tokens.clear();
        self.answers.clear();
    }
}

/// A count of the store (`Store::size`), true as of `marker`.
struct CountedSize {
    marker: Vec<u8>,
    counted_at: Instant,
    size: StoreSize,
}

/// A count is walked again after this long even without a change seen,
/// so a change this process missed (see `own_change`) is not missed for good.
const RECOUNT_AFTER: Duration = Duration::from_secs(600);

/// An epoch, taken before reading the disk, that decides whether what was
/// read may still be stored.
///
/// It also counts the pointers' checks against the store (`renew.rs`): a
/// value whose read began before a check that kept the pointers is not
/// stored either, since that check did not see it.
#[derive(Clone, Copy)]
pub(crate) struct Epoch {
    number: u64,
    checks: u64,
}

impl Epoch {
    pub fn value(self) -> u64 {
        self.number
    }
}

impl ReadCache {
    /// Checks the change marker (the backend's `ChangeWatch`), and
    /// pointers past their age limit (`renew.rs`: `hold` says whether the
    /// store still says what they say); without a watch there is nothing
    /// to check. Returns the epoch after the checks.
    pub fn check_marker(&self, hold: &dyn Fn(&Held) -> bool) -> crate::Result<u64> {
        let Some(watch) = self.watch.get() else {
            return Ok(self.epoch().value());
        };
        // The marker first: a change it announces drops the pointers, and
        // they need no check then.
        watch.check(&mut |marker| self.revalidate(marker))?;
        Ok(self.check_old_pointers(hold))
    }

    /// Takes the backend's watch of the change marker; called once, before
    /// the marker is first checked.
    pub fn watch_changes(&self, watch: Box<dyn super::backend::ChangeWatch>) {
        let _ = self.watch.set(watch);
    }

    /// Compares the change marker with the last one seen; a different one
    /// drops every pointer.
    pub fn revalidate(&self, marker: &[u8]) {
        let mut p = self.pointers.lock().expect("cache");
        if p.marker != marker {
            p.marker = marker.to_vec();
            p.clear();
        }
    }

    /// Like `revalidate`, for a change this process made itself: a size
    /// count that was true before it stays true (the write adjusted it
    /// with `count`).
    pub fn own_change(&self, marker: &[u8]) {
        let mut p = self.pointers.lock().expect("cache");
        let mut size = self.size.lock().expect("cache");
        if let Some(counted) = size.as_mut() {
            if counted.marker == p.marker {
                counted.marker = marker.to_vec();
            }
        }
        if p.marker != marker {
            p.marker = marker.to_vec();
            p.clear();
        }
    }

    /// The store's size, if counted since the last change seen.
    pub fn counted_size(&self) -> Option<StoreSize> {
        let p = self.pointers.lock().expect("cache");
        let size = self.size.lock().expect("cache");
        size.as_ref()
            .filter(|c| c.marker == p.marker && c.counted_at.elapsed() < RECOUNT_AFTER)
            .map(|c| c.size.clone())
    }

    pub fn commit(&self, project: &ProjectRef, id: &str) -> Option<(BranchName, SnapshotId)> {
        self.commits
            .lock()
            .expect("cache")
            .get(&(project.clone(), id.to_string()))
            .cloned()
    }

    pub fn put_commit(&self, project: &ProjectRef, id: &str, branch: &BranchName, v: SnapshotId) {
        let mut commits = self.commits.lock().expect("cache");
        // Bounded: ids a client asks for are few; a flood of made-up ids is
        // never stored (only found ones are).
        if commits.len() >= GENERATION_SLOTS {
            commits.clear();
        }
        commits.insert((project.clone(), id.to_string()), (branch.clone(), v));
    }

    /// The current marker, taken before a count begins.
    pub fn marker(&self) -> Vec<u8> {
        self.pointers.lock().expect("cache").marker.clone()
    }

    pub fn put_counted_size(&self, marker: Vec<u8>, size: StoreSize) {
        *self.size.lock().expect("cache") = Some(CountedSize {
            marker,
            counted_at: Instant::now(),
            size,
        });
    }

    /// Adjusts the count for a change this process is making.
    pub fn count(&self, change: impl FnOnce(&mut StoreSize)) {
        if let Some(counted) = self.size.lock().expect("cache").as_mut() {
            change(&mut counted.size);
        }
    }

    pub fn epoch(&self) -> Epoch {
        let p = self.pointers.lock().expect("cache");
        Epoch {
            number: p.epoch,
            checks: p.checks,
        }
    }

    fn store<T>(&self, epoch: Epoch, put: impl FnOnce(&mut Pointers) -> T) -> Option<T> {
        let mut p = self.pointers.lock().expect("cache");
        (p.epoch == epoch.number && p.checks == epoch.checks).then(|| put(&mut p))
    }

    pub fn live(&self, project: &ProjectRef, branch: &BranchName) -> Option<Arc<Generation>> {
        let p = self.pointers.lock().expect("cache");
        p.live.get(project)?.get(branch).cloned()
    }

    pub fn put_live(
        &self,
        epoch: Epoch,
        project: &ProjectRef,
        branch: &BranchName,
        gen: Arc<Generation>,
    ) {
        self.store(epoch, |p| {
            let version = gen.meta.version;
            let branches = p.live.entry(project.clone()).or_default();
            let old = branches.insert(branch.clone(), gen);
            p.replaced |= old.is_some_and(|old| old.meta.version != version);
        });
    }

    pub fn project(&self, project: &ProjectRef) -> Option<Option<Arc<ProjectInfo>>> {
        self.pointers
            .lock()
            .expect("cache")
            .projects
            .get(project)
            .cloned()
    }

    pub fn put_project(&self, epoch: Epoch, project: ProjectRef, info: Option<Arc<ProjectInfo>>) {
        self.store(epoch, |p| {
            let old = p.projects.insert(project, info.clone());
            p.replaced |= old.is_some_and(|old| old != info);
        });
    }

    pub fn branch_names(&self, project: &ProjectRef) -> Option<Arc<Vec<BranchName>>> {
        self.pointers
            .lock()
            .expect("cache")
            .branch_names
            .get(project)
            .cloned()
    }

    pub fn put_branch_names(&self, epoch: Epoch, project: ProjectRef, names: Arc<Vec<BranchName>>) {
        self.store(epoch, |p| {
            let old = p.branch_names.insert(project, Arc::clone(&names));
            p.replaced |= old.is_some_and(|old| old != names);
        });
    }

    pub fn answer(
        &self,
        project: &ProjectRef,
        kind: &'static str,
    ) -> Option<Arc<dyn std::any::Any + Send + Sync>> {
        let p = self.pointers.lock().expect("cache");
        p.answers.get(project)?.get(kind).cloned()
    }

    pub fn put_answer(
        &self,
        epoch: Epoch,
        project: &ProjectRef,
        kind: &'static str,
        answer: Arc<dyn std::any::Any + Send + Sync>,
    ) {
        self.store(epoch, |p| {
            p.answers
                .entry(project.clone())
                .or_default()
                .insert(kind, answer)
        });
    }

    pub fn token(&self, mac: &[u8; 32]) -> Option<Option<Arc<TokenRecord>>> {
        self.pointers
            .lock()
            .expect("cache")
            .tokens
            .get(mac)
            .cloned()
    }

    pub fn put_token(&self, epoch: Epoch, mac: [u8; 32], record: Option<Arc<TokenRecord>>) {
        self.store(epoch, |p| {
            // Unknown tokens are remembered too (a misconfigured ERP polls
            // with one all day), but not without bound.
            if p.tokens.len() >= 100_000 {
                p.tokens.clear();
                // Answers made with a dropped token are not checked again.
                p.replaced = true;
            }
            let old = p.tokens.insert(mac, record.clone());
            // A newer last use alone (written without a marker) is no
            // other state: the check (`renew`) ignores it too.
            p.replaced |= old.is_some_and(|old| {
                !TokenRecord::same_but_last_use(old.as_deref(), record.as_deref())
            });
        });
    }

    pub fn generation(&self, dir: &Path, version: SnapshotId) -> Option<Arc<Generation>> {
        self.generations
            .lock()
            .expect("cache")
            .get(&(dir.to_path_buf(), version))
    }

    pub fn put_generation(&self, dir: PathBuf, gen: Arc<Generation>) {
        let version = gen.meta.version;
        let weight = gen.meta.file_count.saturating_add(1);
        self.generations
            .lock()
            .expect("cache")
            .insert((dir, version), gen, weight);
    }

    pub fn node(&self, path: &Path) -> Option<Arc<Node>> {
        self.nodes.lock().expect("cache").map.get(path)?.upgrade()
    }

    pub fn put_node(&self, path: PathBuf, node: &Arc<Node>) {
        let mut nodes = self.nodes.lock().expect("cache");
        nodes.map.insert(path, Arc::downgrade(node));
        // Forget the trees no cached generation holds any more, once
        // there are twice as many entries as after the last sweep.
        if nodes.map.len() > nodes.sweep_at {
            nodes.map.retain(|_, n| n.strong_count() > 0);
            nodes.sweep_at = (nodes.map.len() * 2).max(1024);
        }
    }

    pub fn object(&self, hash: &str) -> Option<Content> {
        self.objects.lock().expect("cache").map.get(hash).cloned()
    }

    /// A place to hold the file of a content of `size` bytes open, when
    /// it is worth sending from its file and the budget has one.
    pub fn file_permit(&self, size: u64) -> Option<super::held::FilePermit> {
        (size >= super::held::SEND_FROM_FILE_BYTES && size <= LARGEST_CACHED_OBJECT as u64)
            .then(|| self.files.permit())?
    }

    /// Sets how many object files may be held open (`held.rs`).
    pub fn set_file_budget(&self, most: usize) {
        self.files.set(most);
    }

    /// Drops the contents whose held file has no name left (garbage
    /// collection removed it), so its disk space is freed. The files are
    /// looked at without the lock.
    pub fn forget_unlinked_files(&self) {
        use std::os::unix::fs::MetadataExt;
        let held: Vec<(String, Arc<super::held::HeldFile>)> = {
            let objects = self.objects.lock().expect("cache");
            let with_file = objects.map.iter().filter_map(|(hash, content)| {
                Some((hash.clone(), Arc::clone(content.file.as_ref()?)))
            });
            with_file.collect()
        };
        let unlinked: Vec<String> = held
            .into_iter()
            .filter(|(_, held)| held.file().metadata().is_ok_and(|m| m.nlink() == 0))
            .map(|(hash, _)| hash)
            .collect();
        if unlinked.is_empty() {
            return;
        }
        let mut objects = self.objects.lock().expect("cache");
        for hash in unlinked {
            objects.remove(&hash);
        }
    }

    pub fn put_object(&self, hash: &str, content: Content) {
        if content.bytes.len() <= LARGEST_CACHED_OBJECT {
            self.objects
                .lock()
                .expect("cache")
                .insert(hash.to_string(), content);
        }
    }

    /// Sets the most bytes of file contents kept (at least one largest
    /// object's worth, so the cache is never useless).
    pub fn set_content_budget(&self, bytes: usize) {
        let mut objects = self.objects.lock().expect("cache");
        objects.budget = bytes.max(LARGEST_CACHED_OBJECT);
        objects.evict();
    }
}

#[derive(Default)]
struct NodeCache {
    map: HashMap<PathBuf, std::sync::Weak<Node>>,
    sweep_at: usize,
}

/// File contents by hash, oldest evicted first once over budget.
struct ObjectCache {
    map: FastMap<String, Content>,
    order: VecDeque<String>,
    bytes: usize,
    budget: usize,
}

impl Default for ObjectCache {
    fn default() -> ObjectCache {
        ObjectCache {
            map: FastMap::default(),
            order: VecDeque::new(),
            bytes: 0,
            budget: DEFAULT_CONTENT_BUDGET,
        }
    }
}

impl ObjectCache {
    fn insert(&mut self, hash: String, content: Content) {
        if self.map.contains_key(&hash) {
            return;
        }
        self.bytes += content.bytes.len();
        self.order.push_back(hash.clone());
        self.map.insert(hash, content);
        self.evict();
    }

    fn evict(&mut self) {
        while self.bytes > self.budget {
            let Some(old) = self.order.pop_front() else {
                break;
            };
            self.remove(&old);
        }
    }

    /// Removes a content (its hash may stay in `order`: eviction skips
    /// what is gone).
    fn remove(&mut self, hash: &str) {
        if let Some(c) = self.map.remove(hash) {
            self.bytes -= c.bytes.len();
        }
    }
}

/// A file's bytes, shared (a clone is a reference count), and whether they
/// are text, decided once when read rather than on every request.
#[derive(Debug, Clone)]
pub struct Content {
    pub bytes: Bytes,
    /// UTF-8 without NUL bytes: served as `text/plain`.
    pub text: bool,
    /// The blob id in double quotes, as an HTTP entity tag: built once
    /// per content, so serving it copies nothing.
    pub quoted_blob_id: Bytes,
    /// The object file the bytes were read from, held open for sending
    /// (`held.rs`); `None` for small contents or beyond the budget.
    pub file: Option<Arc<super::held::HeldFile>>,
}

impl Content {
    pub fn new(bytes: Bytes, blob_id: &str) -> Content {
        let text = is_text(&bytes);
        let quoted_blob_id = Bytes::from(format!("\"{blob_id}\""));
        Content {
            bytes,
            text,
            quoted_blob_id,
            file: None,
        }
    }

    /// The blob id, unquoted (shares `quoted_blob_id`'s bytes).
    pub fn blob_id(&self) -> Bytes {
        self.quoted_blob_id.slice(1..self.quoted_blob_id.len() - 1)
    }

    pub fn content_type(&self) -> &'static str {
        content_type(self.text)
    }
}

/// UTF-8 without NUL bytes: what is served as text.
pub fn is_text(bytes: &[u8]) -> bool {
    std::str::from_utf8(bytes).is_ok() && !bytes.contains(&0)
}

/// The `Content-Type` of a file's bytes: UTF-8 text as `text/plain` (so
/// gitbeaker yields a string), anything else as bytes.
pub fn content_type(text: bool) -> &'static str {
    if text {
        "text/plain; charset=utf-8"
    } else {
        "application/octet-stream"
    }
}

/// A map that forgets its oldest entries beyond a number of slots or a
/// total weight (the newest entry stays, whatever it weighs).
struct Bounded<K, V> {
    map: HashMap<K, (V, u64)>,
    order: VecDeque<K>,
    weight: u64,
    slots: usize,
    most: u64,
}

impl<K, V> Default for Bounded<K, V> {
    fn default() -> Self {
        Bounded {
            map: HashMap::new(),
            order: VecDeque::new(),
            weight: 0,
            slots: GENERATION_SLOTS,
            most: GENERATION_FILES,
        }
    }
}

impl<K: std::hash::Hash + Eq + Clone, V: Clone> Bounded<K, V> {
    fn get(&self, key: &K) -> Option<V> {
        self.map.get(key).map(|(v, _)| v.clone())
    }

    fn insert(&mut self, key: K, value: V, weight: u64) {
        if let Some((_, old)) = self.map.insert(key.clone(), (value, weight)) {
            // Newest again: moved to the back, where eviction comes last.
            self.weight -= old;
            if let Some(at) = self.order.iter().position(|k| *k == key) {
                self.order.remove(at);
            }
        }
        self.order.push_back(key);
        self.weight += weight;
        while self.order.len() > self.slots || (self.weight > self.most && self.order.len() > 1) {
            if let Some(old) = self.order.pop_front() {
                if let Some((_, w)) = self.map.remove(&old) {
                    self.weight -= w;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Bounded;

    /// A content whose held file garbage collection removed is let go
    /// (its disk space freed); one whose file is still there stays.
    #[test]
    fn contents_whose_file_was_removed_are_let_go() {
        use super::{Content, ReadCache};
        use crate::store::held::HeldFile;
        use std::sync::Arc;
        let dir = std::env::temp_dir().join(format!("cfgstore-held-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let cache = ReadCache::default();
        cache.set_file_budget(2);
        let keep = |name: &str| {
            let path = dir.join(name);
            std::fs::write(&path, vec![b'x'; 10_000]).unwrap();
            let file = std::fs::File::open(&path).unwrap();
            let permit = cache.file_permit(10_000).expect("a place");
            let mut content = Content::new(bytes::Bytes::from(vec![b'x'; 10_000]), name);
            content.file = Some(Arc::new(HeldFile::new(file, 10_000, permit)));
            cache.put_object(name, content);
            path
        };
        let (gone, kept) = (keep("gone"), keep("kept"));
        assert!(cache.file_permit(10_000).is_none(), "both places taken");
        std::fs::remove_file(&gone).unwrap();
        cache.forget_unlinked_files();
        assert!(
            cache.object("gone").is_none(),
            "the removed file's content stays"
        );
        assert!(cache.object("kept").is_some());
        assert!(cache.file_permit(10_000).is_some(), "its place given back");
        std::fs::remove_file(kept).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn bounded_forgets_the_oldest_by_count_and_by_weight() {
        let mut b = Bounded {
            slots: 3,
            most: 100,
            ..Bounded::default()
        };
        for k in 0..5u32 {
            b.insert(k, k, 1);
        }
        assert_eq!(
            (0..5).map(|k| b.get(&k)).collect::<Vec<_>>(),
            [None, None, Some(2), Some(3), Some(4)]
        );
        // Weight: 40 + 40 + 40 > 100 drops the oldest until it fits.
        let mut b = Bounded {
            slots: 10,
            most: 100,
            ..Bounded::default()
        };
        for k in 0..3u32 {
            b.insert(k, k, 40);
        }
        assert_eq!(b.get(&0), None);
        assert_eq!((b.get(&1), b.get(&2)), (Some(1), Some(2)));
        assert_eq!(b.weight, 80);
        // Heavier than the whole budget alone: kept, as the only one.
        b.insert(9, 9, 500);
        assert_eq!((b.get(&1), b.get(&2), b.get(&9)), (None, None, Some(9)));
        // The same key again replaces its weight.
        b.insert(9, 10, 5);
        assert_eq!((b.get(&9), b.weight, b.order.len()), (Some(10), 5, 1));
        // A key inserted again is the newest: the others go first.
        b.insert(1, 1, 40);
        b.insert(9, 11, 50);
        b.insert(2, 2, 40);
        assert_eq!((b.get(&1), b.get(&9), b.get(&2)), (None, Some(11), Some(2)));
        assert_eq!(b.weight, 90);
    }
}
