//! Retention: dropping old versions of a branch (`prune_history`) and the
//! contents no kept version references (`gc`).
//!
//! Versions keep their numbers. A prune writes the branch's `FLOOR` (the
//! oldest version kept) durably, then removes the generation files below
//! it; every reader treats a version below the floor as gone, and a prune
//! interrupted between the two steps leaves files `fsck --repair` (or the
//! next prune) removes. The live version is never dropped.
//!
//! `gc` is safe beside running writers. A writer stores its new objects
//! before it commits the version that references them; from the first
//! object to the commit it holds the project's `gc.lock` shared
//! (`objects_in_flight`). `gc` takes that lock exclusively, so while it
//! looks for references no object is waiting for its version: everything
//! a writer has stored is either referenced by a version on disk or not
//! stored yet. Writers wait for a project's collection, never for another
//! writer.

use std::collections::HashSet;

use serde::Serialize;
use time::OffsetDateTime;

use super::backend::ObjectsGuard;
use super::generation::Generation;
use super::{BranchAt, Store};
use crate::error::{Error, Result};
use crate::names::{BranchName, ProjectRef, SnapshotId};

/// Which versions a prune keeps (the live one always).
#[derive(Debug, Clone, Copy)]
pub enum Keep {
    /// The newest N versions, the live one included (N ≥ 1).
    Newest(u64),
    /// The versions that were live at or after this instant: a version
    /// replaced before it goes.
    LiveSince(OffsetDateTime),
}

/// Whether `Store::prune_history` drops versions or only plans it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PruneRun {
    Plan,
    Apply,
}

/// What a prune did (or, planned, would do).
#[derive(Debug, Clone, Serialize)]
pub struct PruneOutcome {
    pub branch: String,
    /// Versions dropped.
    pub removed: u64,
    /// The oldest version kept, before and after.
    pub floor_before: SnapshotId,
    pub floor: SnapshotId,
    pub live: SnapshotId,
}

/// What `gc` freed.
#[derive(Debug, Clone, Default, Serialize)]
pub struct GcReport {
    pub projects: u64,
    /// Contents kept: referenced by some kept version.
    pub objects_kept: u64,
    pub objects_removed: u64,
    pub bytes_freed: u64,
}

impl Store {
    /// Held (shared) by a writer from its first stored object to its
    /// commit, so `gc` never takes an object for unreferenced that a
    /// version is about to reference.
    pub(crate) fn objects_in_flight(
        &self,
        project: &ProjectRef,
    ) -> Result<Box<dyn ObjectsGuard + '_>> {
        self.backend
            .objects_in_flight(project, false, self.lock_timeout)
    }

    /// Drops the versions of a branch that `keep` does not keep (never the
    /// live one), under the branch's writer lock; with `PruneRun::Plan`,
    /// only says what it would drop now.
    pub fn prune_history(
        &self,
        project: &ProjectRef,
        branch: &BranchName,
        keep: Keep,
        run: PruneRun,
    ) -> Result<PruneOutcome> {
        let at = self.require_branch(project, branch)?;
        if run == PruneRun::Plan {
            return self.prune_target(&at, self.head(&at)?, keep);
        }
        let mut lock = self
            .backend
            .lock_branch(project, branch, self.lock_timeout)?;
        let outcome = self.prune_target(&at, lock.head(), keep)?;
        if outcome.removed == 0 {
            // Leftovers of an interrupted prune go all the same.
            lock.remove_below_floor()?;
            return Ok(outcome);
        }
        // The floor first, durably: from here every reader treats the
        // versions below it as gone, whatever a crash leaves of them.
        lock.set_floor(outcome.floor)?;
        lock.remove_below_floor()?;
        self.announce_change();
        Ok(outcome)
    }

    fn prune_target(&self, at: &BranchAt, head: SnapshotId, keep: Keep) -> Result<PruneOutcome> {
        let floor_before = self.floor(at)?;
        let mut floor = floor_before;
        match keep {
            Keep::Newest(0) => return Err(Error::invalid("--keep must be at least 1")),
            Keep::Newest(n) => {
                let first_kept = head.number().saturating_sub(n - 1).max(1);
                if first_kept > floor.number() {
                    floor = SnapshotId::new(first_kept).expect("between 1 and head");
                }
            }
            Keep::LiveSince(cutoff) => {
                // A version stopped being live when its successor was
                // written: the first version whose successor came at or
                // after the cutoff is the oldest kept.
                while floor < head {
                    let next = floor.next();
                    let meta = self.version_meta(at, next)?;
                    let replaced_at = OffsetDateTime::parse(
                        &meta.created_at,
                        &time::format_description::well_known::Rfc3339,
                    )
                    .map_err(|_| {
                        Error::corrupt(
                            at.key.join(next.to_string()),
                            "created_at is not an RFC 3339 time",
                        )
                    })?;
                    if replaced_at >= cutoff {
                        break;
                    }
                    floor = next;
                }
            }
        }
        Ok(PruneOutcome {
            branch: at.branch.to_string(),
            removed: floor.number() - floor_before.number(),
            floor_before,
            floor,
            live: head,
        })
    }

    /// Removes, project by project, the contents no kept version of any
    /// branch references; `progress` is told each project as it starts.
    pub fn gc(&self, mut progress: impl FnMut(&ProjectRef)) -> Result<GcReport> {
        let mut report = GcReport::default();
        for info in self.list_projects(None)? {
            let project = info.project_ref();
            progress(&project);
            report.projects += 1;
            let _exclusive = self
                .backend
                .objects_in_flight(&project, true, self.lock_timeout)?;
            let referenced = self.referenced_objects(&project)?;
            let kept = std::cell::Cell::new(0);
            let (removed, freed) = self.backend.collect_objects(&project, &|hash| {
                let keep = referenced.contains(hash);
                kept.set(kept.get() + u64::from(keep));
                keep
            })?;
            report.objects_kept += kept.get();
            report.objects_removed += removed;
            report.bytes_freed += freed;
            self.count(|s| {
                s.objects = s.objects.saturating_sub(removed);
                s.object_bytes = s.object_bytes.saturating_sub(freed);
            });
        }
        if report.objects_removed > 0 {
            self.announce_change();
        }
        Ok(report)
    }

    /// The hashes every kept version of every branch of a project names.
    /// Each branch is read under its writer lock, so a prune cannot take
    /// a version away halfway through; a version committed after its
    /// branch was read references only what a kept version does (a
    /// rollback, a removal) or objects stored under the shared `gc.lock`,
    /// which the caller holds exclusively.
    fn referenced_objects(&self, project: &ProjectRef) -> Result<HashSet<String>> {
        let mut named = Named::default();
        for branch in self.branch_names(project)? {
            self.walk_kept_versions(project, &branch, &mut named, |_, _| Ok(()))?;
        }
        Ok(named.all())
    }

    /// Reads every kept version of a branch, oldest first, under its
    /// write lock (a writer or a prune of the branch waits meanwhile):
    /// hands each one's generation file to `each` and gathers what it
    /// names into `named`. Returns the branch's floor and head as read.
    pub(super) fn walk_kept_versions(
        &self,
        project: &ProjectRef,
        branch: &BranchName,
        named: &mut Named,
        mut each: impl FnMut(SnapshotId, &[u8]) -> Result<()>,
    ) -> Result<(SnapshotId, SnapshotId)> {
        let at = self.branch_at(project, branch);
        let lock = self
            .backend
            .lock_branch(project, branch, self.lock_timeout)?;
        let head = lock.head();
        let floor = self.floor(&at)?;
        let trees = super::reads::BranchTrees::new(self, project, None, false).remembering();
        let mut v = floor;
        loop {
            let bytes = self.generation_bytes(&at, v)?;
            let gen = Generation::parse(&at.key.join(v.to_string()), &bytes, &trees)?;
            // Its folders' trees (a folder seen in another version is
            // not walked again) and its files' contents.
            gen.named_objects(
                &mut |tree| named.trees.insert(tree.to_string()),
                &mut |hash| {
                    if !named.contents.contains(hash) {
                        named.contents.insert(hash.to_string());
                    }
                },
            );
            trees.keep_only(&gen);
            each(v, &bytes)?;
            if v >= head {
                break;
            }
            v = v.next();
        }
        Ok((floor, head))
    }
}

/// The objects kept versions name. Trees and contents in separate sets: a
/// file whose bytes are a tree object's is the same object, and must not
/// stop that tree's files from being walked.
#[derive(Default)]
pub(super) struct Named {
    trees: HashSet<String>,
    contents: HashSet<String>,
}

impl Named {
    /// Every object named, trees and contents.
    pub(super) fn all(self) -> HashSet<String> {
        let mut all = self.trees;
        all.extend(self.contents);
        all
    }
}
