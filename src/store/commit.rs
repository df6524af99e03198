//! The commit path: every write to a branch goes through `Store::commit`
//! (lock, recover, edit the tree, store its new folders, write the next
//! generation, switch HEAD), with new contents stored as objects first
//! (see the module docs of `store` for the order and why it is
//! crash-safe).

use std::collections::BTreeMap;
use std::sync::Arc;

use super::backend::ObjectBatch;
use super::fsutil;
use super::reads::BranchTrees;
use super::trees::{Draft, Node};
use super::*;
use crate::error::{Error, Result};

impl Store {
    /// Saves one file. `expect_short_id` makes the write conditional on the
    /// branch's current `short_id` (`Conflict` when stale).
    /// Errors: `NotFound`, `Conflict`, `Busy`, `Io`.
    pub fn put_file(
        &self,
        project: &ProjectRef,
        branch: &BranchName,
        path: &FilePath,
        bytes: &[u8],
        by: Writer<'_>,
        expect_short_id: Option<&str>,
    ) -> Result<WriteOutcome> {
        let Writer { actor, audit } = by;
        self.require_branch(project, branch)?;
        // Refuse early what the commit would refuse (it checks again under
        // the lock), so a refused write leaves no object behind: otherwise
        // every stale If-Match or misplaced path would fill the disk.
        let (live, at) = self.live_path(project, branch, path)?;
        if let Some(expected) = expect_short_id {
            if expected != live.short_id {
                return Err(Error::Conflict(format!(
                    "branch {branch} is at {} now, not {expected}",
                    live.short_id
                )));
            }
        }
        at.check_new_file()?;
        let _objects_in_flight = self.objects_in_flight(project)?;
        let mut objects = ObjectBatch::default();
        let entry = self.store_object(project, path.clone(), bytes, &mut objects)?;
        self.backend.sync_objects(project, &objects)?;
        fsutil::failpoint("commit.stored", &self.layout().objects_dir(project))?;
        let change = Change {
            reason: format!("file.put {path}"),
            expect_short_id,
            only: Some(path),
            audit,
            objects,
        };
        self.commit(project, branch, actor, change, |draft, _| {
            draft.insert(path, entry.content())
        })
    }

    /// What a put would make, without writing anything: the branch's
    /// `short_id` now and after, and the file's current bytes (for a diff).
    /// Errors: `NotFound`, `Conflict` (a path that is a folder, or inside a
    /// file), as `put_file`.
    pub fn preview_put(
        &self,
        project: &ProjectRef,
        branch: &BranchName,
        path: &FilePath,
        bytes: &[u8],
    ) -> Result<PutPreview> {
        let live = self.live(project, branch)?;
        let mut draft = Draft::new(Arc::clone(live.root()));
        draft.insert(path, ContentId::of(bytes))?;
        let (short_id, _) = draft.finish().ids(false);
        let previous = match live.file(path) {
            Some(entry) => Some(self.read_entry(project, &entry)?),
            None => None,
        };
        Ok(PutPreview {
            old_short_id: live.meta.short_id.clone(),
            short_id,
            previous,
        })
    }

    /// Removes one file. Errors: `NotFound` (also for the file), `Conflict`.
    pub fn delete_file(
        &self,
        project: &ProjectRef,
        branch: &BranchName,
        path: &FilePath,
        by: Writer<'_>,
        expect_short_id: Option<&str>,
    ) -> Result<WriteOutcome> {
        let Writer { actor, audit } = by;
        let change = Change {
            reason: format!("file.delete {path}"),
            expect_short_id,
            only: Some(path),
            audit,
            objects: ObjectBatch::default(),
        };
        self.commit(project, branch, actor, change, |draft, _| {
            draft
                .remove(path)
                .then_some(())
                .ok_or_else(|| Error::not_found("file", path))
        })
    }

    /// Saves many files as one write and one snapshot. With `replace`, the
    /// branch afterwards holds exactly these files; otherwise they are
    /// added to (or overwrite) what is there.
    pub fn import(
        &self,
        project: &ProjectRef,
        branch: &BranchName,
        files: impl IntoIterator<Item = Result<(FilePath, Vec<u8>)>>,
        replace: bool,
        by: Writer<'_>,
    ) -> Result<WriteOutcome> {
        let Writer { actor, audit } = by;
        self.require_branch(project, branch)?;
        let files: Vec<(FilePath, Vec<u8>)> = files.into_iter().collect::<Result<_>>()?;
        // Hashing (md5 and blake3 of every file) on every core.
        let ids = parallel_map(&files, |(_, bytes)| ContentId::of(bytes));
        let _objects_in_flight = self.objects_in_flight(project)?;
        // Thousands of objects: written without an fsync each, then the
        // filesystem synced once, before the version that names them.
        let bulk = files.len() > 1;
        // Each content written once, by the first file that has it.
        let mut seen = std::collections::HashSet::new();
        let work: Vec<((FilePath, Vec<u8>), ContentId, bool)> = files
            .into_iter()
            .zip(ids)
            .map(|(file, id)| {
                let first = seen.insert(id.hash.clone());
                (file, id, first)
            })
            .collect();
        let batch = || match bulk {
            true => ObjectBatch::bulk(),
            false => ObjectBatch::default(),
        };
        let stored = parallel_map(&work, |((path, bytes), id, first)| {
            let mut objects = batch();
            let entry = if *first {
                self.store_object_as(project, path.clone(), bytes, id.clone(), &mut objects)?
            } else {
                id.clone().entry(path.clone())
            };
            Ok((entry, objects))
        });
        let mut incoming = BTreeMap::new();
        let mut objects = batch();
        for result in stored {
            let (entry, stored): (Entry, ObjectBatch) = result?;
            objects.absorb(stored);
            incoming.insert(entry.path.clone(), entry);
        }
        self.backend.sync_objects(project, &objects)?;
        let reason = format!("import {} files", incoming.len());
        let change = Change {
            objects,
            ..Change::of(reason, audit)
        };
        self.commit(project, branch, actor, change, |draft, _| {
            if replace {
                draft.reset(Node::empty());
            }
            incoming
                .into_values()
                .try_for_each(|e| draft.insert(&e.path.clone(), e.content()))
        })
    }

    /// Sets a branch back to an earlier version. The state before the
    /// rollback stays a version itself, so a rollback can be rolled back;
    /// a rollback to the state the branch already has changes nothing.
    /// Errors: `NotFound` for the branch or the version.
    pub fn rollback(
        &self,
        project: &ProjectRef,
        branch: &BranchName,
        to: SnapshotId,
        by: Writer<'_>,
    ) -> Result<WriteOutcome> {
        let Writer { actor, audit } = by;
        let at = self.require_branch(project, branch)?;
        let change = Change::of(format!("rollback to {to}"), audit);
        self.commit(project, branch, actor, change, |draft, head| {
            if to > head || to < self.floor(&at)? {
                return Err(Error::not_found("version", to));
            }
            draft.reset(Arc::clone(self.load_generation(&at, to)?.root()));
            Ok(())
        })
    }

    /// The one write path: lock, recover, edit the tree, store its new
    /// folders, write the next generation, switch HEAD.
    pub(super) fn commit(
        &self,
        project: &ProjectRef,
        branch: &BranchName,
        actor: &str,
        change: Change,
        edit: impl FnOnce(&mut Draft, SnapshotId) -> Result<()>,
    ) -> Result<WriteOutcome> {
        let Change {
            reason,
            expect_short_id,
            only,
            audit,
            mut objects,
        } = change;
        let at = self.require_branch(project, branch)?;
        // The new folders' trees are objects: gc must not take them (or a
        // rollback's) before the version that names them is in place.
        let _objects_in_flight = self.objects_in_flight(project)?;
        let mut lock = self
            .backend
            .lock_branch(project, branch, self.lock_timeout)?;
        // Under the lock, the backend's head is the truth: a cached one may
        // be a write behind, and building on it would lose that write.
        fsutil::failpoint("commit.locked", &at.key)?;
        let head = lock.head();
        // Without the read cache, an edit of one path reads only the
        // folders on it: the others are stand-ins, whose `short_id` lines
        // are streamed from their objects below. The daemon has the whole
        // tree in memory.
        let along = match (only, &self.cache) {
            (Some(path), None) => self.read_along(&at, head, path)?,
            _ => None,
        };
        // Whether the version this write builds on was read from (its flat
        // file list made): then the new one will be, too.
        let (current, base, was_read) = match along {
            Some((meta, root)) => (meta, root, false),
            None => {
                let gen = self.load_generation(&at, head)?;
                (gen.meta.clone(), Arc::clone(gen.root()), gen.was_read())
            }
        };
        if let Some(expected) = expect_short_id {
            if expected != current.short_id {
                return Err(Error::Conflict(format!(
                    "branch {branch} is at {} now, not {expected}",
                    current.short_id
                )));
            }
        }
        let mut draft = Draft::new(Arc::clone(&base));
        edit(&mut draft, head)?;
        let root = draft.finish();
        // A write that leaves the files as they are (the same bytes put again,
        // a rollback to the state the branch has) changes nothing: no
        // version is made.
        if root.id() == base.id() {
            return Ok(WriteOutcome {
                changed: false,
                snapshot: None,
                version: head,
                old_short_id: current.short_id.clone(),
                short_id: current.short_id.clone(),
                file_count: current.file_count,
                added: 0,
                updated: 0,
                removed: 0,
                audited: false,
            });
        }
        // The folders this write changed (and, after an upgrade, a tree
        // not yet stored), durable before the version naming them. The
        // new `short_id` hashes a line per file of the branch: on a large
        // one that is milliseconds of work, done on another core while
        // this one waits for the disk.
        let keep_lines = self.cache.is_some();
        let trees = BranchTrees::new(self, project, self.cache.as_ref(), false);
        let (ids, stored) = std::thread::scope(|scope| {
            let hashing = (root.file_count() >= PARALLEL_IDS)
                .then(|| {
                    std::thread::Builder::new()
                        .name("cfgstore-short-id".into())
                        .spawn_scoped(scope, || root.ids_reading(keep_lines, &trees))
                        .ok()
                })
                .flatten();
            let stored = self.store_tree(project, &root);
            let ids = match hashing.map(|h| h.join()) {
                Some(Ok(ids)) => ids,
                Some(Err(panic)) => std::panic::resume_unwind(panic),
                None => root.ids_reading(keep_lines, &trees),
            };
            (ids, stored)
        });
        let (fresh, trees) = stored?;
        objects.absorb(trees);
        let ids = ids?;
        fsutil::failpoint("commit.objects", &at.key)?;
        let next = head.next();
        let parent = ParentSummary {
            version: head,
            file_count: current.file_count,
            short_id: current.short_id.clone(),
        };
        let counts = Node::changes(&base, &root);
        let mut gen =
            Generation::of_tree(next, now_rfc3339(), actor, reason, root, Some(parent), ids);
        gen.meta.changes = Some(counts);
        let mut outcome = WriteOutcome {
            changed: true,
            snapshot: Some(head),
            version: next,
            old_short_id: current.short_id.clone(),
            short_id: gen.meta.short_id.clone(),
            file_count: gen.meta.file_count,
            added: counts.added,
            updated: counts.changed,
            removed: counts.removed,
            audited: false,
        };
        let audit_line = audit
            .map(|audit| serde_json::to_vec(&audit(&outcome)).expect("audit record serialises"));
        // The commit point (see `BranchLock::publish`).
        outcome.audited = lock.publish(next, &gen.to_bytes(), &objects, audit_line.as_deref())?;
        drop(lock);
        fresh.iter().for_each(|node| node.mark_stored());
        if let Some(cache) = &self.cache {
            let gen = Arc::new(gen);
            cache.put_generation(at.key, Arc::clone(&gen));
            // Reads search the flat file list: on a branch that is read
            // (the version before was), it is made from the tree beside
            // the answer to this write, not by the first read after it
            // (20,000 entries take milliseconds of a core). A read that
            // comes first waits for it, as it would have made it itself.
            // A branch nobody reads (staging edited in bulk) is not
            // prepared for reads on every write.
            if was_read {
                let _ = std::thread::Builder::new()
                    .name("cfgstore-prepare".into())
                    .spawn(move || gen.prepare_reads());
            }
        }
        self.announce_change();
        Ok(outcome)
    }

    /// Stores content in the project's object folder unless it is there
    /// already. Objects are immutable and named by their hash, so this is
    /// safe without the branch lock and concurrent writers of the same
    /// bytes do not interfere.
    pub(super) fn store_object(
        &self,
        project: &ProjectRef,
        path: FilePath,
        bytes: &[u8],
        batch: &mut ObjectBatch,
    ) -> Result<Entry> {
        self.store_object_as(project, path, bytes, ContentId::of(bytes), batch)
    }

    /// `store_object` for content whose digests are computed already.
    pub(super) fn store_object_as(
        &self,
        project: &ProjectRef,
        path: FilePath,
        bytes: &[u8],
        id: ContentId,
        batch: &mut ObjectBatch,
    ) -> Result<Entry> {
        self.put_object(project, &id.hash, bytes, batch)?;
        Ok(id.entry(path))
    }

    /// Stores the folders of `root` that are not stored yet (children
    /// first) and makes them durable (a database: pending in the batch,
    /// until the version naming them is published). Returns them, for the
    /// caller to mark stored once they are in force, and the batch.
    pub(super) fn store_tree(
        &self,
        project: &ProjectRef,
        root: &Arc<Node>,
    ) -> Result<(Vec<Arc<Node>>, ObjectBatch)> {
        let mut fresh = Vec::new();
        root.unstored(&mut fresh);
        let mut batch = ObjectBatch::default();
        for node in &fresh {
            self.put_object(project, node.id(), node.text(), &mut batch)?;
        }
        self.backend.sync_objects(project, &batch)?;
        Ok((fresh, batch))
    }

    /// Stores one object through the backend, counting it if it is new.
    fn put_object(
        &self,
        project: &ProjectRef,
        hash: &str,
        bytes: &[u8],
        batch: &mut ObjectBatch,
    ) -> Result<()> {
        if self.backend.put_object(project, hash, bytes, batch)? {
            self.count(|counted| {
                counted.objects += 1;
                counted.object_bytes += bytes.len() as u64;
            });
        }
        Ok(())
    }
}

/// What a commit is: its reason (the history's "what"), the `short_id`
/// the branch must be at, if any, and for an edit of one path (a put, a
/// delete) that path.
pub(super) struct Change<'a> {
    reason: String,
    expect_short_id: Option<&'a str>,
    only: Option<&'a FilePath>,
    /// The write's audit record, for a backend that keeps it with the
    /// version (`BranchLock::publish`).
    audit: Option<AuditOf<'a>>,
    /// The contents stored for it before the commit (pending in the batch
    /// for a database, published with the version).
    objects: ObjectBatch,
}

impl<'a> Change<'a> {
    /// A change of any number of paths, made whatever the branch's state.
    pub(super) fn of(reason: String, audit: Option<AuditOf<'a>>) -> Self {
        Change {
            reason,
            expect_short_id: None,
            only: None,
            audit,
            objects: ObjectBatch::default(),
        }
    }
}

/// Branches from this many files make their `short_id` on a thread of
/// their own during a commit (below it, the hashing takes less than
/// starting a thread).
const PARALLEL_IDS: u64 = 2_000;

/// `f` over `items` on every core (scoped threads, each a contiguous
/// share), results in order. Small inputs stay on this thread.
pub(crate) fn parallel_map<T: Sync, R: Send>(items: &[T], f: impl Fn(&T) -> R + Sync) -> Vec<R> {
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(8);
    if threads < 2 || items.len() < 64 {
        return items.iter().map(&f).collect();
    }
    let share = items.len().div_ceil(threads);
    std::thread::scope(|scope| {
        let workers: Vec<_> = items
            .chunks(share)
            .map(|chunk| scope.spawn(|| chunk.iter().map(&f).collect::<Vec<R>>()))
            .collect();
        workers
            .into_iter()
            .flat_map(|w| w.join().expect("a worker panicked"))
            .collect()
    })
}

/// What `preview_put` found.
pub struct PutPreview {
    pub old_short_id: String,
    pub short_id: String,
    /// The file's bytes in the live state, if it exists.
    pub previous: Option<bytes::Bytes>,
}
