//! Branches: names, listing, the default branch, creation, and the
//! versions of a branch (its history and any retained generation).

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::fsutil::{
    self, check_real_dirs, create_dir, fsync_dir, move_into_place, read_regular, LockGuard,
    RemoveOnDrop,
};
use super::layout::{self};
use super::trees::Node;
use super::*;
use crate::error::{Error, Result};

impl Store {
    /// The branch names of a project, sorted bytewise.
    pub fn branch_names(&self, project: &ProjectRef) -> Result<Vec<BranchName>> {
        Ok(self.shared_branch_names(project)?.as_ref().clone())
    }

    /// `branch_names`, shared with the cache instead of copied.
    pub(super) fn shared_branch_names(&self, project: &ProjectRef) -> Result<Arc<Vec<BranchName>>> {
        self.cached(
            |c| c.branch_names(project),
            || {
                let dir = self.layout().branches_dir(project);
                check_real_dirs(self.layout().root(), &dir)?;
                sorted_names(&dir, |n| BranchName::from_folder_name(n).ok()).map(Arc::new)
            },
            |c, epoch, names| c.put_branch_names(epoch, project.clone(), names),
        )
    }

    /// The default branch per SPEC §4: `master`, else `main`, else the
    /// first by name. `None` for a project without branches.
    pub fn default_branch(&self, project: &ProjectRef) -> Result<Option<BranchName>> {
        self.require_project(project)?;
        Ok(pick_default(&self.shared_branch_names(project)?).cloned())
    }

    /// Every branch with its live state, sorted by name.
    /// Errors: `NotFound` for an unknown project.
    pub fn list_branches(&self, project: &ProjectRef) -> Result<Vec<BranchInfo>> {
        self.require_project(project)?;
        let names = self.shared_branch_names(project)?;
        let default = pick_default(&names).cloned();
        names
            .iter()
            .map(|name| self.branch_info(project, name, default.as_ref() == Some(name)))
            .collect()
    }

    /// One branch. Errors: `NotFound` for the project or the branch.
    pub fn branch(&self, project: &ProjectRef, branch: &BranchName) -> Result<BranchInfo> {
        self.require_branch(project, branch)?;
        let default = pick_default(&self.shared_branch_names(project)?).cloned();
        self.branch_info(project, branch, default.as_ref() == Some(branch))
    }

    pub(super) fn branch_info(
        &self,
        project: &ProjectRef,
        branch: &BranchName,
        default: bool,
    ) -> Result<BranchInfo> {
        let meta = self.live(project, branch)?.meta.clone();
        Ok(BranchInfo {
            name: branch.clone(),
            version: meta.version,
            short_id: meta.short_id,
            commit_id: meta.commit_id,
            file_count: meta.file_count,
            updated_at: meta.created_at,
            reason: meta.reason,
            actor: meta.actor,
            default,
        })
    }

    /// Creates a branch, empty or holding a copy of `from`'s live files
    /// (a manifest copy: contents are shared, not duplicated).
    /// Errors: `NotFound` (project, `from`), `Conflict` when the name exists
    /// or nests with an existing branch (`a` vs `a/b`).
    pub fn create_branch(
        &self,
        project: &ProjectRef,
        name: &BranchName,
        from: Option<&BranchName>,
        actor: &str,
    ) -> Result<BranchInfo> {
        self.require_project(project)?;
        check_real_dirs(self.layout().root(), &self.layout().branches_dir(project))?;
        // A copy names its source's contents: gc must not take them between
        // the read of the source and the new branch's first version.
        let _objects = self.objects_in_flight(project)?;
        let _lock = LockGuard::acquire(&self.layout().project_lock(project), self.lock_timeout)?;
        // From disk, not the cache: another process may have just made one.
        let existing = sorted_names(&self.layout().branches_dir(project), |n| {
            BranchName::from_folder_name(n).ok()
        })?;
        if existing.contains(name) {
            return Err(Error::Conflict(format!(
                "branch {name} already exists in {project}"
            )));
        }
        if let Some(other) = existing.iter().find(|b| b.conflicts_with(name)) {
            return Err(Error::Conflict(format!(
                "branch {name} conflicts with existing branch {other}: one name cannot be both a branch and a folder of branches"
            )));
        }
        let (root, reason) = match from {
            Some(source) => (
                Arc::clone(self.live(project, source)?.root()),
                format!("branch.create from {source}"),
            ),
            None => (Node::empty(), "branch.create".to_string()),
        };
        let staging = self.scratch()?.temp_path();
        let guard = RemoveOnDrop(staging.clone());
        let objects = self.layout().objects_dir(project);
        self.stage_branch(&staging, &objects, root, &now_rfc3339(), actor, reason)?;
        let target = self.layout().branch_dir(project, name);
        move_into_place(&staging, &target, &self.layout().branches_dir(project))?;
        std::mem::forget(guard);
        self.count(|size| size.branches += 1);
        self.announce_change();
        self.branch(project, name)
    }

    /// Writes a complete branch folder (first generation and HEAD) at
    /// `dir`, holding the files of `root`, whose trees go to `objects`.
    pub(super) fn stage_branch(
        &self,
        dir: &Path,
        objects: &Path,
        root: Arc<Node>,
        now: &str,
        actor: &str,
        reason: String,
    ) -> Result<()> {
        create_dir(dir)?;
        self.store_tree(objects, &root)?;
        let first = SnapshotId::new(1).expect("1 is a valid version");
        let added = root.file_count();
        let keep_lines = self.cache.is_some();
        let ids = root.ids(keep_lines);
        let mut gen = Generation::of_tree(first, now.to_string(), actor, reason, root, None, ids);
        gen.meta.changes = Some(ChangeCounts {
            added,
            ..Default::default()
        });
        fsutil::write_new(&dir.join(first.to_string()), &gen.to_bytes())?;
        fsutil::write_new(&layout::head_file(dir), format!("{first}\n").as_bytes())?;
        fsutil::write_new(&layout::branch_lock(dir), b"")?;
        fsync_dir(dir)
    }

    pub(super) fn require_branch(
        &self,
        project: &ProjectRef,
        branch: &BranchName,
    ) -> Result<PathBuf> {
        // The project first: a planted link where it should be is "no such
        // project" (404), not a corrupt branch folder.
        self.require_project(project)?;
        let dir = self.layout().branch_dir(project, branch);
        let exists = match &self.cache {
            Some(_) => self.shared_branch_names(project)?.contains(branch),
            // A symlinked branch folder is not a branch (nor in listings).
            None => fs::symlink_metadata(&dir).is_ok_and(|m| m.is_dir()),
        };
        if exists {
            return Ok(dir);
        }
        Err(Error::not_found("branch", branch))
    }

    /// One version of a branch, the live one included.
    /// Errors: `NotFound` for an unknown branch or version.
    pub fn version(
        &self,
        project: &ProjectRef,
        branch: &BranchName,
        version: SnapshotId,
    ) -> Result<Arc<Generation>> {
        let dir = self.require_branch(project, branch)?;
        // A pruned version may still sit in the generation cache: the
        // floor, not the cache, says whether it is kept.
        if version > read_head(&dir)? || version < self.floor(&dir)? {
            return Err(Error::not_found("version", version));
        }
        // Pruned between the floor's check and the read: gone all the same.
        self.load_generation(dir, version).map_err(|e| match e {
            Error::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound => {
                Error::not_found("version", version)
            }
            e => e,
        })
    }

    /// The retained version whose `commit_id` (40 hex) or `short_id` (8
    /// hex) is `id`, searched branch by branch (the default first), newest
    /// version first; with the read cache a found id is remembered, since
    /// versions never change. `None` when no version has it.
    pub fn find_version(
        &self,
        project: &ProjectRef,
        id: &str,
    ) -> Result<Option<(BranchName, Arc<Generation>)>> {
        if let Some((branch, version)) = self.cache.as_ref().and_then(|c| c.commit(project, id)) {
            if let Ok(gen) = self.version(project, &branch, version) {
                return Ok(Some((branch, gen)));
            }
        }
        let names = self.shared_branch_names(project)?;
        let default = pick_default(&names).cloned();
        let ordered = default
            .iter()
            .chain(names.iter().filter(|b| Some(*b) != default.as_ref()));
        for branch in ordered {
            let dir = self.layout().branch_dir(project, branch);
            let floor = self.floor(&dir)?;
            let mut version = Some(read_head(&dir)?);
            while let Some(v) = version.filter(|v| *v >= floor) {
                let meta = Generation::read_meta(&self.layout().generation_file(&dir, v))?;
                if meta.commit_id == id || meta.short_id == id {
                    if let Some(cache) = &self.cache {
                        cache.put_commit(project, id, branch, v);
                    }
                    let gen = self.load_generation(dir, v)?;
                    return Ok(Some((branch.clone(), gen)));
                }
                version = meta.parent.map(|p| p.version);
            }
        }
        Ok(None)
    }

    /// The state `reference` names in a project: a branch (its live
    /// state), `branch@vNNNN` (one of its versions), or the commit id (40
    /// hex) or `short_id` (8 hex) of a retained version. `None` when it
    /// names nothing; a reference that cannot be any of these is
    /// `Invalid`, a `branch@vNNNN` beyond the branch's versions `NotFound`.
    pub fn resolve(
        &self,
        project: &ProjectRef,
        reference: &str,
    ) -> Result<Option<(BranchName, Arc<Generation>)>> {
        let is_commit_id = matches!(reference.len(), 8 | 40)
            && reference
                .bytes()
                .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
        let pinned = || {
            reference
                .rsplit_once('@')
                .and_then(|(b, v)| Some((BranchName::parse(b).ok()?, SnapshotId::parse(v).ok()?)))
        };
        match BranchName::parse(reference) {
            Ok(branch) => match self.live(project, &branch) {
                Ok(gen) => return Ok(Some((branch, gen))),
                Err(Error::NotFound { what: "branch", .. }) => {}
                Err(e) => return Err(e),
            },
            Err(e) if !is_commit_id && pinned().is_none() => return Err(e),
            Err(_) => {}
        }
        if let Some((branch, version)) = pinned() {
            return match self.version(project, &branch, version) {
                Ok(gen) => Ok(Some((branch, gen))),
                Err(Error::NotFound { what: "branch", .. }) => Ok(None),
                Err(e) => Err(e),
            };
        }
        if is_commit_id {
            return self.find_version(project, reference);
        }
        Ok(None)
    }

    /// The versions of a branch, newest (the live one) first.
    pub fn history(&self, project: &ProjectRef, branch: &BranchName) -> Result<Vec<VersionInfo>> {
        let dir = self.require_branch(project, branch)?;
        let head = read_head(&dir)?;
        let floor = self.floor(&dir)?;
        let mut out = Vec::with_capacity(head.number().saturating_sub(floor.number()) as usize + 1);
        let mut version = Some(head);
        // Versions written before 0.2 carry no change counts: those are
        // computed from the manifests (against nothing for the oldest kept
        // version of a pruned branch, whose parent is gone).
        while let Some(v) = version.filter(|v| *v >= floor) {
            let path = self.layout().generation_file(&dir, v);
            let meta = Generation::read_meta(&path)?;
            let parent = meta.parent.as_ref().map(|p| p.version);
            let counts = match meta.changes {
                Some(counts) => counts,
                None => {
                    let this = self.load_generation(dir.clone(), v)?;
                    match parent.filter(|p| *p >= floor) {
                        Some(p) => {
                            let before = self.load_generation(dir.clone(), p)?;
                            ChangeCounts::between(before.entries(), this.entries())
                        }
                        None => ChangeCounts::between(&[], this.entries()),
                    }
                }
            };
            out.push(VersionInfo {
                version: v,
                live: v == head,
                created_at: meta.created_at,
                actor: meta.actor,
                action: meta.reason,
                short_id: meta.short_id,
                commit_id: meta.commit_id,
                file_count: meta.file_count,
                added: counts.added,
                changed: counts.changed,
                removed: counts.removed,
            });
            version = parent;
        }
        Ok(out)
    }
}

pub(super) fn pick_default(names: &[BranchName]) -> Option<&BranchName> {
    names
        .iter()
        .find(|b| b.as_str() == "master")
        .or_else(|| names.iter().find(|b| b.as_str() == "main"))
        .or_else(|| names.first())
}

/// The live version a branch's HEAD names, checked to exist.
pub(crate) fn read_head(dir: &Path) -> Result<SnapshotId> {
    let path = layout::head_file(dir);
    let bytes = read_regular(&path)?;
    let text = std::str::from_utf8(&bytes).unwrap_or("");
    let version = layout::parse_generation_name(text.trim_end())
        .ok_or_else(|| Error::corrupt(&path, format!("HEAD holds {text:?}")))?;
    Ok(version)
}

/// The newest generation in a branch folder, for a missing or broken HEAD.
pub(crate) fn newest_generation(dir: &Path) -> Result<SnapshotId> {
    let mut newest = None;
    for entry in fs::read_dir(dir).map_err(|e| Error::io(dir, e))? {
        let entry = entry.map_err(|e| Error::io(dir, e))?;
        if let Some(v) = entry
            .file_name()
            .to_str()
            .and_then(layout::parse_generation_name)
        {
            newest = newest.max(Some(v));
        }
    }
    newest.ok_or_else(|| Error::corrupt(dir, "branch has no versions"))
}
