//! Retention: `history prune` and `gc`, audited like every change.

use serde_json::json;

use super::audit::{self, Event};
use super::{Actor, Who};
use crate::auth::roles::{Action, Target};
use crate::error::{Error, Result};
use crate::names::{BranchName, ProjectRef};
use crate::store::retention::{GcReport, Keep, PruneOutcome, PruneRun};
use crate::store::Store;

/// Drops the versions of a branch `keep` does not keep (never the live
/// one). Needs write access to the project.
pub fn prune(
    store: &Store,
    actor: &Actor,
    project: &ProjectRef,
    branch: &BranchName,
    keep: Keep,
) -> Result<PruneOutcome> {
    actor.authorize(Action::Write, Target::Project(project))?;
    let outcome = store.prune_history(project, branch, keep, PruneRun::Apply)?;
    audit::change(
        store,
        actor,
        Event::HistoryPrune,
        &format!("{project}@{branch}"),
        json!({
            "removed": outcome.removed,
            "floor_before": outcome.floor_before.to_string(),
            "floor": outcome.floor.to_string(),
            "live": outcome.live.to_string(),
        }),
    );
    Ok(outcome)
}

/// Removes the contents no kept version references, in every project.
/// The whole store's business: the operator's only.
pub fn gc(store: &Store, actor: &Actor, progress: impl FnMut(&ProjectRef)) -> Result<GcReport> {
    if !matches!(actor.who, Who::Operator(_)) {
        return Err(Error::Forbidden(
            "gc is run by the operator (cfgstore gc)".into(),
        ));
    }
    let report = store.gc(progress)?;
    audit::change(
        store,
        actor,
        Event::StoreGc,
        "store",
        json!({
            "projects": report.projects,
            "objects_removed": report.objects_removed,
            "bytes_freed": report.bytes_freed,
            "objects_kept": report.objects_kept,
        }),
    );
    Ok(report)
}
