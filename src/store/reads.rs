//! Reads, and the daemon's read cache in front of them.
//!
//! With the cache on (the daemon), mutable pointers — a project's record,
//! its branch names, a branch's live generation, a token — go through one
//! helper, `Store::cached`, which looks the value up, else reads the disk
//! and stores what it read unless a change was announced meanwhile (the
//! epoch check). Immutable things — generations, object contents — are
//! cached by their identity and never invalidated. Without the cache (the
//! CLI) every read goes to the disk.

use std::path::PathBuf;
use std::sync::Arc;

use super::trees::{Node, NodeSource, PathOnly};
use super::*;
use crate::error::{Error, Result};

/// How many of a branch's older versions `read_blob` looks through.
const OLD_VERSIONS_SEARCHED: u32 = 100;

impl Store {
    /// A mutable pointer through the read cache: `lookup` there, else
    /// `read` from the disk and `keep` what was read — unless a change was
    /// announced while reading (the epoch moved), in which case it is used
    /// for this request only. Without the cache (the CLI), always `read`.
    pub(super) fn cached<T: Clone>(
        &self,
        lookup: impl FnOnce(&cache::ReadCache) -> Option<T>,
        read: impl FnOnce() -> Result<T>,
        keep: impl FnOnce(&cache::ReadCache, cache::Epoch, T),
    ) -> Result<T> {
        let Some(cache) = &self.cache else {
            return read();
        };
        let epoch = cache.epoch();
        if let Some(found) = lookup(cache) {
            return Ok(found);
        }
        let found = read()?;
        keep(cache, epoch, found.clone());
        Ok(found)
    }

    /// A value made by `make` from a project's current state (its
    /// branches and their live versions), made once per state: the daemon
    /// keeps it until the next change anywhere in the store (the same rule
    /// as every cached pointer). The first request after a change makes it.
    pub fn project_answer<T: Send + Sync + 'static>(
        &self,
        project: &ProjectRef,
        kind: &'static str,
        make: impl FnOnce() -> Result<T>,
    ) -> Result<Arc<T>> {
        self.cached(
            |c| c.answer(project, kind)?.downcast::<T>().ok(),
            || make().map(Arc::new),
            |c, epoch, answer| c.put_answer(epoch, project, kind, answer),
        )
    }

    /// The live state of a branch. Errors: `NotFound`.
    pub fn live(&self, project: &ProjectRef, branch: &BranchName) -> Result<Arc<Generation>> {
        self.cached(
            |c| c.live(project, branch),
            || self.read_live(project, branch),
            |c, epoch, gen| c.put_live(epoch, project, branch, gen),
        )
    }

    /// What `live` caches: the branch's HEAD, read from disk, and the
    /// generation it names.
    pub(super) fn read_live(
        &self,
        project: &ProjectRef,
        branch: &BranchName,
    ) -> Result<Arc<Generation>> {
        let at = self.require_branch(project, branch)?;
        let version = self.head(&at)?;
        self.load_generation(&at, version)
    }

    /// One generation, parsed once per process when the cache is on.
    pub(super) fn load_generation(
        &self,
        at: &BranchAt,
        version: SnapshotId,
    ) -> Result<Arc<Generation>> {
        let dir = &at.key;
        if let Some(gen) = self.cache.as_ref().and_then(|c| c.generation(dir, version)) {
            return Ok(gen);
        }
        if self.cache.is_none() {
            let recent = self.recent.lock().expect("recent generation");
            if let Some((d, v, gen)) = recent.as_ref() {
                if *v == version && d == dir {
                    return Ok(Arc::clone(gen));
                }
            }
        }
        let trees = BranchTrees::new(self, &at.project, self.cache.as_ref(), false);
        let bytes = self.generation_bytes(at, version)?;
        let mut gen = Generation::parse(&dir.join(version.to_string()), &bytes, &trees)?;
        // A format-1 file in an upgraded store (written by a 0.1 process
        // still running when the store was upgraded): its git blob ids come
        // from the contents, so no answer lacks one.
        if gen.meta.tree.is_none() && gen.entries().iter().any(|e| e.git.is_empty()) {
            let objects = self.layout().objects_dir(&at.project);
            super::upgrade::fill_git_ids(
                gen.entries_mut(),
                |hash| Ok(layout::object_in(&objects, hash)),
                &mut Default::default(),
            )?;
        }
        let gen = Arc::new(gen);
        match &self.cache {
            Some(cache) => cache.put_generation(dir.clone(), Arc::clone(&gen)),
            None => {
                *self.recent.lock().expect("recent generation") =
                    Some((dir.clone(), version, Arc::clone(&gen)))
            }
        }
        Ok(gen)
    }

    /// What a write at `path` needs to know of the live state before it
    /// stores anything: the version's metadata and what is at the path.
    /// Without the read cache (the CLI), only the folders on the path are
    /// read, not the branch's whole tree.
    pub fn live_path(
        &self,
        project: &ProjectRef,
        branch: &BranchName,
        path: &FilePath,
    ) -> Result<(GenerationMeta, PathOnly)> {
        if self.cache.is_none() {
            let at = self.require_branch(project, branch)?;
            let version = self.head(&at)?;
            if let Some((meta, root)) = self.read_along(&at, version, path)? {
                return Ok((meta, PathOnly::of(root, path)));
            }
        }
        let live = self.live(project, branch)?;
        Ok((
            live.meta.clone(),
            PathOnly::of(Arc::clone(live.root()), path),
        ))
    }

    /// A version's metadata and its tree with only the folders on `path`
    /// read (`Node::load_path`); `None` for a flat version (format 1 or
    /// 2), which lists its files itself.
    pub(super) fn read_along(
        &self,
        at: &BranchAt,
        version: SnapshotId,
        path: &FilePath,
    ) -> Result<Option<(GenerationMeta, Arc<Node>)>> {
        let meta = self.version_meta(at, version)?;
        if meta.tree.is_none() {
            return Ok(None);
        }
        let trees = BranchTrees::new(self, &at.project, None, false);
        let file = at.key.join(version.to_string());
        let root = meta.load_root(&file, |id| Node::load_path(id, path, &trees))?;
        Ok(Some((meta, root)))
    }

    /// Turns on the read cache: for a long-running process (the daemon)
    /// that calls `revalidate` at the start of every request.
    pub fn enable_read_cache(&mut self) {
        let cache = cache::ReadCache::default();
        cache.watch_changes(self.backend.watch_changes());
        self.cache = Some(cache);
    }

    /// Sets the read cache's budget for file contents, in bytes.
    pub fn set_content_cache_bytes(&self, bytes: usize) {
        if let Some(cache) = &self.cache {
            cache.set_content_budget(bytes);
        }
    }

    /// Lets the read cache hold object files open for sending, within
    /// what the process's open-file limit leaves beside `connections`
    /// (`held.rs`).
    pub fn hold_object_files(&self, connections: usize) {
        if let Some(cache) = &self.cache {
            cache.set_file_budget(super::held::file_budget(connections));
        }
    }

    /// Lets go of held object files that garbage collection removed.
    pub fn release_unlinked_files(&self) {
        if let Some(cache) = &self.cache {
            cache.forget_unlinked_files();
        }
    }

    /// Drops cached pointers if any process changed the store since the
    /// last call (the backend's `ChangeWatch`: cheap when nothing did).
    /// Returns the read cache's epoch after it (`read_epoch`; `None`
    /// without a read cache).
    pub fn revalidate(&self) -> Result<Option<u64>> {
        let Some(cache) = &self.cache else {
            return Ok(None);
        };
        // A database's every read is a round trip: its old pointers are
        // dropped, not checked.
        let on_database = self.on_database();
        let epoch = cache.check_marker(&|held| !on_database && self.pointers_hold(held))?;
        Ok(Some(epoch))
    }

    /// Whether the read cache's pointers still say what the store says
    /// (`cache::renew`): one read each, nothing cached on the way.
    fn pointers_hold(&self, held: &cache::Held) -> bool {
        let project_holds = |(project, info): &(ProjectRef, Option<Arc<ProjectInfo>>)| match self
            .read_project(project)
        {
            Ok(now) => info.as_deref() == Some(&now),
            Err(Error::NotFound { .. }) => info.is_none(),
            Err(_) => false,
        };
        let names_hold = |(project, names): &(ProjectRef, Arc<Vec<BranchName>>)| {
            self.backend
                .branch_names(project)
                .is_ok_and(|now| now == **names)
        };
        let head_holds = |(project, branch, version): &(ProjectRef, BranchName, SnapshotId)| {
            self.require_branch(project, branch)
                .and_then(|at| self.head(&at))
                .is_ok_and(|now| now == *version)
        };
        // A token's last use, written every few seconds while it is used,
        // does not count: it would end every kept answer each time.
        let token_holds = |(mac, record): &([u8; 32], Option<Arc<crate::auth::TokenRecord>>)| {
            self.read_token(&crate::hex::encode(mac)).is_ok_and(|now| {
                crate::auth::TokenRecord::same_but_last_use(now.as_ref(), record.as_deref())
            })
        };
        held.projects.iter().all(project_holds)
            && held.branch_names.iter().all(names_hold)
            && held.live.iter().all(head_holds)
            && held.tokens.iter().all(token_holds)
    }

    /// The read cache's epoch: it moves whenever cached pointers are
    /// dropped (a change seen, or pointers that no longer hold). Read after
    /// `revalidate`, two equal readings mean nothing read from the cache
    /// in between can have changed. `None` without a read cache.
    pub fn read_epoch(&self) -> Option<u64> {
        self.cache.as_ref().map(|cache| cache.epoch().value())
    }

    /// `note_change` after a write that is already durable and live: its
    /// failure must not turn the write into a reported failure, so it is
    /// logged; other daemons pick the change up at the next marker change.
    pub(super) fn announce_change(&self) {
        if let Err(e) = self.note_change() {
            tracing::warn!(error = %e, "could not replace the change marker; caches refresh at the next change");
        }
    }

    /// Announces a committed change to every process's read cache. Not
    /// fsynced: it is a hint, and after a crash every cache starts empty.
    pub(crate) fn note_change(&self) -> Result<()> {
        let marker = super::backend::new_marker()?;
        // This process sees its own change at once, not from its next request.
        if let Some(cache) = &self.cache {
            cache.own_change(marker.as_bytes());
        }
        self.backend.announce_change(marker.as_bytes())
    }

    /// Adjusts the daemon's size count for a change this process makes.
    pub(super) fn count(&self, change: impl FnOnce(&mut crate::metrics::StoreSize)) {
        if let Some(cache) = &self.cache {
            cache.count(change);
        }
    }

    /// The bytes of one file of a generation of `project`.
    /// Errors: `Corrupt` if the object is missing or has the wrong size.
    pub fn read_entry(&self, project: &ProjectRef, entry: &Entry) -> Result<bytes::Bytes> {
        Ok(self.read_content(project, entry)?.bytes)
    }

    /// Like `read_entry`, with whether the bytes are text.
    pub fn read_content(&self, project: &ProjectRef, entry: &Entry) -> Result<Content> {
        if let Some(content) = self.cache.as_ref().and_then(|c| c.object(&entry.hash)) {
            return Ok(content);
        }
        // The daemon holds a larger content's file open for sending.
        let permit = self.cache.as_ref().and_then(|c| c.file_permit(entry.size));
        let (bytes, file) = self.read_object(project, entry, permit.is_some())?;
        let mut content = Content::new(bytes::Bytes::from(bytes), entry.blob_id());
        content.file = file
            .zip(permit)
            .map(|(file, permit)| Arc::new(super::held::HeldFile::new(file, entry.size, permit)));
        if let Some(cache) = &self.cache {
            cache.put_object(&entry.hash, content.clone());
        }
        Ok(content)
    }

    /// An object's bytes by hash. Errors: `Corrupt` when it is missing
    /// (a version names it).
    pub(super) fn object_bytes(&self, project: &ProjectRef, hash: &str) -> Result<Vec<u8>> {
        self.backend.object(project, hash)?.ok_or_else(|| {
            Error::corrupt(self.layout().object_file(project, hash), "content missing")
        })
    }

    /// A file's content, checked against its entry's size; with
    /// `keep_open`, also the file it was read from when the backend keeps
    /// objects as files.
    fn read_object(
        &self,
        project: &ProjectRef,
        entry: &Entry,
        keep_open: bool,
    ) -> Result<(Vec<u8>, Option<std::fs::File>)> {
        let locate = || self.layout().object_file(project, &entry.hash);
        let read = match keep_open {
            true => self
                .backend
                .object_opened(project, &entry.hash)?
                .map(|o| (o.bytes, o.file)),
            false => self
                .backend
                .object(project, &entry.hash)?
                .map(|b| (b, None)),
        };
        let (bytes, file) = read.ok_or_else(|| {
            Error::corrupt(locate(), format!("object of {} is missing", entry.path))
        })?;
        if bytes.len() as u64 != entry.size {
            return Err(Error::corrupt(
                locate(),
                format!("object of {} has the wrong size", entry.path),
            ));
        }
        Ok((bytes, file))
    }

    /// The bytes of the file content whose blob id is `blob_id`: its git
    /// blob id, found in the branches' live states, then in their newest
    /// `OLD_VERSIONS_SEARCHED` kept versions; or, for links made before 0.2,
    /// the first 40 hex digits of its blake3 hash. Errors: `NotFound("blob")`.
    pub fn read_blob(&self, project: &ProjectRef, blob_id: &str) -> Result<Vec<u8>> {
        let valid = blob_id.len() == 40
            && blob_id
                .bytes()
                .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
        if !valid {
            return Err(Error::not_found("blob", blob_id));
        }
        let branches = self.shared_branch_names(project)?;
        for branch in branches.iter() {
            let live = self.live(project, branch)?;
            if let Some(entry) = live.find_blob(blob_id) {
                return Ok(self.read_entry(project, entry)?.to_vec());
            }
        }
        for branch in branches.iter() {
            let at = self.branch_at(project, branch);
            let (head, floor) = (self.head(&at)?, self.floor(&at)?);
            // The newest kept versions only: an unknown id must not make
            // every request read the whole history.
            let mut v = head;
            let mut looked = 0;
            while v > floor && looked < OLD_VERSIONS_SEARCHED {
                looked += 1;
                v = SnapshotId::new(v.number() - 1).expect("above the floor");
                let Ok(gen) = self.version(project, branch, v) else {
                    continue; // pruned meanwhile
                };
                if let Some(entry) = gen.find_blob(blob_id) {
                    return Ok(self.read_entry(project, entry)?.to_vec());
                }
            }
        }
        match self.backend.object_by_prefix(project, blob_id)? {
            Some((hash, bytes)) => {
                if blake3::hash(&bytes).to_hex().as_str() != hash {
                    return Err(Error::corrupt(
                        self.layout().object_file(project, &hash),
                        "object does not match its hash",
                    ));
                }
                Ok(bytes)
            }
            None => Err(Error::not_found("blob", blob_id)),
        }
    }

    /// Reads one file of the live branch. Errors: `NotFound`.
    pub fn read_file(
        &self,
        project: &ProjectRef,
        branch: &BranchName,
        path: &FilePath,
    ) -> Result<bytes::Bytes> {
        let gen = self.live(project, branch)?;
        let entry = gen
            .file(path)
            .ok_or_else(|| Error::not_found("file", path))?;
        self.read_entry(project, &entry)
    }
}

/// The tree objects of a project, read through the backend (and the
/// daemon's cache when there is one).
pub(super) struct BranchTrees<'a> {
    store: &'a Store,
    project: ProjectRef,
    /// The project's object folder: what the cache's trees are keyed by.
    pub(super) objects: PathBuf,
    cache: Option<&'a cache::ReadCache>,
    verify: bool,
    /// For walks over many versions (gc, backup, fsck): the trees of the
    /// version read last, so the next loads only the folders it changed.
    memo: Option<std::sync::Mutex<std::collections::HashMap<String, Arc<Node>>>>,
}

impl<'a> BranchTrees<'a> {
    /// `verify` checks every object against its name (fsck).
    pub(super) fn new(
        store: &'a Store,
        project: &ProjectRef,
        cache: Option<&'a cache::ReadCache>,
        verify: bool,
    ) -> BranchTrees<'a> {
        BranchTrees {
            store,
            project: project.clone(),
            objects: store.layout().objects_dir(project),
            cache,
            verify,
            memo: None,
        }
    }

    /// Remembers the trees loaded until `keep_only` says which to keep.
    pub(super) fn remembering(mut self) -> Self {
        self.memo = Some(Default::default());
        self
    }

    /// Keeps only the trees of `gen` in memory (the version just read;
    /// one of format 1 or 2 has none).
    pub(super) fn keep_only(&self, gen: &Generation) {
        if gen.meta.tree.is_none() {
            return;
        }
        let root = gen.root();
        if let Some(memo) = &self.memo {
            let mut memo = memo.lock().expect("tree memo");
            memo.clear();
            root.for_each_node(&mut |node| {
                memo.insert(node.id().to_string(), Arc::clone(node));
            });
        }
    }

    fn path(&self, id: &str) -> PathBuf {
        layout::object_in(&self.objects, id)
    }
}

impl NodeSource for BranchTrees<'_> {
    fn cached(&self, id: &str) -> Option<Arc<Node>> {
        if let Some(memo) = &self.memo {
            return memo.lock().expect("tree memo").get(id).cloned();
        }
        self.cache?.node(&self.path(id))
    }

    fn read(&self, id: &str) -> Result<(PathBuf, Vec<u8>)> {
        let path = self.path(id);
        match self.store.backend.object(&self.project, id)? {
            Some(bytes) => Ok((path, bytes)),
            None => Err(Error::corrupt(&path, "tree object missing")),
        }
    }

    fn keep(&self, node: &Arc<Node>) {
        if let Some(memo) = &self.memo {
            memo.lock()
                .expect("tree memo")
                .insert(node.id().to_string(), Arc::clone(node));
        }
        if let Some(cache) = self.cache {
            cache.put_node(self.path(node.id()), node);
        }
    }

    fn verify(&self) -> bool {
        self.verify
    }
}
