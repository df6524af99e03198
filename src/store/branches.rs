//! Branches: names, listing, the default branch, creation, and the
//! versions of a branch (its history and any retained generation).

use std::path::PathBuf;
use std::sync::Arc;

use super::backend::FirstVersion;
use super::trees::Node;
use super::*;
use crate::error::{Error, Result};

/// A branch the store has found: its names, and the key its versions are
/// kept under in the read cache.
#[derive(Debug, Clone)]
pub(crate) struct BranchAt {
    pub project: ProjectRef,
    pub branch: BranchName,
    pub key: PathBuf,
}

impl Store {
    /// The branch names of a project, sorted bytewise.
    pub fn branch_names(&self, project: &ProjectRef) -> Result<Vec<BranchName>> {
        Ok(self.shared_branch_names(project)?.as_ref().clone())
    }

    /// `branch_names`, shared with the cache instead of copied.
    pub(super) fn shared_branch_names(&self, project: &ProjectRef) -> Result<Arc<Vec<BranchName>>> {
        self.cached(
            |c| c.branch_names(project),
            || self.backend.branch_names(project).map(Arc::new),
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
        // A copy names its source's contents: gc must not take them between
        // the read of the source and the new branch's first version.
        let _objects = self.objects_in_flight(project)?;
        let (root, reason) = match from {
            Some(source) => (
                Arc::clone(self.live(project, source)?.root()),
                format!("branch.create from {source}"),
            ),
            None => (Node::empty(), "branch.create".to_string()),
        };
        let first = self.first_version(root, &now_rfc3339(), actor, reason);
        self.backend
            .create_branch(project, name, &first.as_first(), self.lock_timeout)?;
        first.stored();
        self.count(|size| size.branches += 1);
        self.announce_change();
        self.branch(project, name)
    }

    /// The first version of a new branch holding the files of `root`.
    pub(super) fn first_version(
        &self,
        root: Arc<Node>,
        now: &str,
        actor: &str,
        reason: String,
    ) -> NewBranch {
        let mut fresh = Vec::new();
        root.unstored(&mut fresh);
        let first = SnapshotId::new(1).expect("1 is a valid version");
        let added = root.file_count();
        let ids = root.ids(self.cache.is_some());
        let mut gen = Generation::of_tree(first, now.to_string(), actor, reason, root, None, ids);
        gen.meta.changes = Some(ChangeCounts {
            added,
            ..Default::default()
        });
        NewBranch {
            generation: gen.to_bytes(),
            fresh,
        }
    }

    pub(super) fn require_branch(
        &self,
        project: &ProjectRef,
        branch: &BranchName,
    ) -> Result<BranchAt> {
        // The project first: a planted link where it should be is "no such
        // project" (404), not a corrupt branch folder.
        self.require_project(project)?;
        let exists = match &self.cache {
            Some(_) => self.shared_branch_names(project)?.contains(branch),
            None => self.backend.has_branch(project, branch)?,
        };
        if exists {
            return Ok(self.branch_at(project, branch));
        }
        Err(Error::not_found("branch", branch))
    }

    /// A branch by name, not checked to exist.
    pub(super) fn branch_at(&self, project: &ProjectRef, branch: &BranchName) -> BranchAt {
        BranchAt {
            project: project.clone(),
            branch: branch.clone(),
            key: self.layout().branch_dir(project, branch),
        }
    }

    /// A branch's live version (as last published) and its floor.
    pub(super) fn head(&self, at: &BranchAt) -> Result<SnapshotId> {
        self.backend.head(&at.project, &at.branch)
    }

    pub(super) fn floor(&self, at: &BranchAt) -> Result<SnapshotId> {
        self.backend.floor(&at.project, &at.branch)
    }

    /// A version's generation file as the backend holds it. Errors: the
    /// branch reader's `NotFound` when it is not there (never written, or
    /// pruned meanwhile).
    pub(super) fn generation_bytes(&self, at: &BranchAt, version: SnapshotId) -> Result<Vec<u8>> {
        self.backend
            .generation(&at.project, &at.branch, version)?
            .ok_or_else(|| missing_version(at, version))
    }

    /// A version's metadata only: enough for histories and listings.
    pub(super) fn version_meta(
        &self,
        at: &BranchAt,
        version: SnapshotId,
    ) -> Result<GenerationMeta> {
        let start = self
            .backend
            .generation_start(&at.project, &at.branch, version)?
            .ok_or_else(|| missing_version(at, version))?;
        Generation::parse_meta(&at.key.join(version.to_string()), &start)
    }

    /// One version of a branch, the live one included.
    /// Errors: `NotFound` for an unknown branch or version.
    pub fn version(
        &self,
        project: &ProjectRef,
        branch: &BranchName,
        version: SnapshotId,
    ) -> Result<Arc<Generation>> {
        let at = self.require_branch(project, branch)?;
        // A pruned version may still sit in the generation cache: the
        // floor, not the cache, says whether it is kept.
        if version > self.head(&at)? || version < self.floor(&at)? {
            return Err(Error::not_found("version", version));
        }
        // Pruned between the floor's check and the read: gone all the same.
        self.load_generation(&at, version).map_err(|e| match e {
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
            let at = self.branch_at(project, branch);
            let floor = self.floor(&at)?;
            let mut version = Some(self.head(&at)?);
            while let Some(v) = version.filter(|v| *v >= floor) {
                let meta = self.version_meta(&at, v)?;
                if meta.commit_id == id || meta.short_id == id {
                    if let Some(cache) = &self.cache {
                        cache.put_commit(project, id, branch, v);
                    }
                    let gen = self.load_generation(&at, v)?;
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
        let at = self.require_branch(project, branch)?;
        let head = self.head(&at)?;
        let floor = self.floor(&at)?;
        let mut out = Vec::with_capacity(head.number().saturating_sub(floor.number()) as usize + 1);
        let mut version = Some(head);
        // Versions written before 0.2 carry no change counts: those are
        // computed from the manifests (against nothing for the oldest kept
        // version of a pruned branch, whose parent is gone).
        while let Some(v) = version.filter(|v| *v >= floor) {
            let meta = self.version_meta(&at, v)?;
            let parent = meta.parent.as_ref().map(|p| p.version);
            let counts = match meta.changes {
                Some(counts) => counts,
                None => {
                    let this = self.load_generation(&at, v)?;
                    match parent.filter(|p| *p >= floor) {
                        Some(p) => {
                            let before = self.load_generation(&at, p)?;
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

/// A version that is not there, as its branch's reader reports it: gone
/// (pruned meanwhile) or never written.
pub(super) fn missing_version(at: &BranchAt, version: SnapshotId) -> Error {
    Error::Io {
        path: at.key.join(version.to_string()),
        source: std::io::Error::from(std::io::ErrorKind::NotFound),
    }
}

/// A new branch's first version, made but not yet stored.
pub(super) struct NewBranch {
    generation: Vec<u8>,
    /// Its trees not yet stored, children first.
    fresh: Vec<Arc<Node>>,
}

impl NewBranch {
    pub(super) fn as_first(&self) -> FirstVersion<'_> {
        FirstVersion {
            generation: &self.generation,
            trees: self.fresh.iter().map(|n| (n.id(), n.text())).collect(),
        }
    }

    /// Marks its trees stored, once the branch is in place.
    pub(super) fn stored(&self) {
        self.fresh.iter().for_each(|node| node.mark_stored());
    }
}
