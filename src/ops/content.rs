//! Changes to projects, branches and files: create, put, delete, import,
//! rollback.

use serde_json::json;

use super::audit::{self, Event};
use super::Actor;
use crate::auth::roles::{Action, Target};
use crate::error::Result;
use crate::names::{BranchName, FilePath, OwnerName, ProjectRef, RepoId, SnapshotId};
use crate::store::{AuditOf, BranchInfo, ProjectInfo, Store, WriteOutcome, Writer};

/// Creates project `{name}.{kind}` in `owner`'s folder, with an empty
/// `main`. Errors: `Forbidden`, `Invalid`, `Conflict`.
pub fn create_project(
    store: &Store,
    actor: &Actor,
    owner: &OwnerName,
    name: &str,
    kind: &str,
) -> Result<ProjectInfo> {
    actor.authorize(Action::CreateProject, Target::Owner(owner))?;
    let repo = RepoId::from_name_and_type(name, kind)?;
    let project = ProjectRef::new(owner.clone(), repo);
    let info = store.create_project(owner, name, kind, &actor.name())?;
    audit::change(
        store,
        actor,
        Event::ProjectCreate,
        &project.to_string(),
        json!({"branch": "main"}),
    );
    Ok(info)
}

/// Creates a branch, empty or as a copy of `from`'s live files.
/// Errors: `Forbidden`, `NotFound`, `Conflict`.
pub fn create_branch(
    store: &Store,
    actor: &Actor,
    project: &ProjectRef,
    name: &BranchName,
    from: Option<&BranchName>,
) -> Result<BranchInfo> {
    actor.authorize(Action::Write, Target::Project(project))?;
    let info = store.create_branch(project, name, from, &actor.name())?;
    audit::change(
        store,
        actor,
        Event::BranchCreate,
        &format!("{project}@{name}"),
        json!({"from": from, "short_id": info.short_id}),
    );
    Ok(info)
}

/// Whether a write checks its JSON, YAML and TOML files (`validate.rs`).
/// Skipping it is for content known to be right that the checks refuse;
/// it is audited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Validation {
    Check,
    Skip,
}

/// One file's new content: what a put and its dry run take.
#[derive(Clone, Copy)]
pub struct FileWrite<'a> {
    pub project: &'a ProjectRef,
    pub branch: &'a BranchName,
    pub path: &'a FilePath,
    pub bytes: &'a [u8],
}

/// Saves one file as a new version. `if_match` makes the write
/// conditional on the branch's `short_id` (`Conflict` when it moved).
/// Errors: `Forbidden`, `Unprocessable` (malformed content), `NotFound`,
/// `Conflict`, `Busy`, `Io`.
pub fn put_file(
    store: &Store,
    actor: &Actor,
    write: FileWrite,
    if_match: Option<&str>,
    validation: Validation,
) -> Result<WriteOutcome> {
    let (project, branch, path, bytes) = (write.project, write.branch, write.path, write.bytes);
    actor.authorize(Action::Write, Target::Project(project))?;
    if validation == Validation::Check {
        super::validate::check(path, bytes)?;
        let state = after_put(store, write);
        super::validate::check_schemas(std::slice::from_ref(path), &state)?;
    }
    let details = |outcome: &WriteOutcome| {
        let mut details = outcome.audit_details();
        details["size"] = bytes.len().into();
        if validation == Validation::Skip {
            details["validated"] = false.into();
        }
        details
    };
    let target = format!("{project}@{branch}:{path}");
    let name = actor.name();
    audit::write(store, actor, Event::FilePut, &target, &details, |audit| {
        store.put_file(project, branch, path, bytes, writer(&name, audit), if_match)
    })
}

/// What a put would do, written nowhere: whether the content passes the
/// checks (and why not), the branch's `short_id` before and after, and a
/// unified diff against the file as it is. Needs the same right as the put.
#[derive(Debug, Clone, serde::Serialize)]
pub struct DryRun {
    pub valid: bool,
    pub errors: Vec<String>,
    pub old_short_id: String,
    pub short_id: String,
    /// False when the bytes are the ones already stored.
    pub changed: bool,
    pub diff: String,
}

/// A dry run of `put_file`. Errors: `Forbidden`, `NotFound`, `Conflict`.
pub fn preview_put(store: &Store, actor: &Actor, write: FileWrite) -> Result<DryRun> {
    let (project, branch, path, bytes) = (write.project, write.branch, write.path, write.bytes);
    actor.authorize(Action::Write, Target::Project(project))?;
    let state = after_put(store, write);
    let checked = super::validate::check(path, bytes)
        .and_then(|()| super::validate::check_schemas(std::slice::from_ref(path), &state));
    let errors = match checked {
        Ok(()) => Vec::new(),
        Err(crate::Error::Unprocessable { problems, .. }) => problems,
        Err(e) => return Err(e),
    };
    let preview = store.preview_put(project, branch, path, bytes)?;
    let previous = preview.previous.as_deref().unwrap_or(b"");
    Ok(DryRun {
        valid: errors.is_empty(),
        errors,
        changed: preview.short_id != preview.old_short_id,
        old_short_id: preview.old_short_id,
        short_id: preview.short_id,
        diff: crate::diff::unified(previous, bytes),
    })
}

/// The content any path will have once `incoming` is written: an incoming
/// file's bytes, else (unless the write replaces the whole branch) the live
/// file's. The live state is loaded once, and only if asked for.
fn state_after<'a>(
    store: &'a Store,
    project: &'a ProjectRef,
    branch: &'a BranchName,
    incoming: std::collections::HashMap<&'a FilePath, &'a [u8]>,
    replace: bool,
) -> impl Fn(&FilePath) -> Result<Option<Vec<u8>>> + 'a {
    move |p: &FilePath| {
        if let Some(bytes) = incoming.get(p) {
            return Ok(Some(bytes.to_vec()));
        }
        if replace {
            return Ok(None);
        }
        // Where the tree is not in memory, the folders on the path only.
        match store.live_path(project, branch, p)?.1.file() {
            Some(content) => Ok(Some(
                store
                    .read_entry(project, &content.entry(p.clone()))?
                    .to_vec(),
            )),
            None => Ok(None),
        }
    }
}

/// `state_after` a put of one file.
fn after_put<'a>(
    store: &'a Store,
    write: FileWrite<'a>,
) -> impl Fn(&FilePath) -> Result<Option<Vec<u8>>> + 'a {
    let incoming = [(write.path, write.bytes)].into_iter().collect();
    state_after(store, write.project, write.branch, incoming, false)
}

/// Removes one file, snapshot first. Errors: as `put_file`; `NotFound`
/// for a file that is not there.
pub fn delete_file(
    store: &Store,
    actor: &Actor,
    project: &ProjectRef,
    branch: &BranchName,
    path: &FilePath,
    if_match: Option<&str>,
) -> Result<WriteOutcome> {
    actor.authorize(Action::Write, Target::Project(project))?;
    let target = format!("{project}@{branch}:{path}");
    let details = |outcome: &WriteOutcome| outcome.audit_details();
    let name = actor.name();
    audit::write(
        store,
        actor,
        Event::FileDelete,
        &target,
        &details,
        |audit| store.delete_file(project, branch, path, writer(&name, audit), if_match),
    )
}

/// Saves many files as one version. With `replace` the branch holds
/// exactly these files afterwards.
pub fn import(
    store: &Store,
    actor: &Actor,
    project: &ProjectRef,
    branch: &BranchName,
    files: Vec<(FilePath, Vec<u8>)>,
    replace: bool,
    validation: Validation,
) -> Result<WriteOutcome> {
    actor.authorize(Action::Write, Target::Project(project))?;
    if validation == Validation::Check {
        // Every malformed file named at once, before anything is stored.
        super::validate::check_all(files.iter().map(|(p, b)| (p, b.as_slice())))?;
        let incoming = files.iter().map(|(p, b)| (p, b.as_slice())).collect();
        let state = state_after(store, project, branch, incoming, replace);
        let written: Vec<FilePath> = files.iter().map(|(p, _)| p.clone()).collect();
        super::validate::check_schemas(&written, &state)?;
    }
    let count = files.len();
    let details = |outcome: &WriteOutcome| {
        let mut details = outcome.audit_details();
        details["files"] = count.into();
        details["replace"] = replace.into();
        if validation == Validation::Skip {
            details["validated"] = false.into();
        }
        details
    };
    let target = format!("{project}@{branch}");
    let name = actor.name();
    audit::write(
        store,
        actor,
        Event::FileImport,
        &target,
        &details,
        |audit| {
            let files = files.into_iter().map(Ok);
            store.import(project, branch, files, replace, writer(&name, audit))
        },
    )
}

/// Sets a branch back to an earlier version; the state before it is kept.
/// Errors: `Forbidden`, `NotFound` (branch or version), `Busy`, `Io`.
pub fn rollback(
    store: &Store,
    actor: &Actor,
    project: &ProjectRef,
    branch: &BranchName,
    to: SnapshotId,
) -> Result<WriteOutcome> {
    actor.authorize(Action::Write, Target::Project(project))?;
    let details = |outcome: &WriteOutcome| {
        let mut details = outcome.audit_details();
        details["to"] = to.to_string().into();
        details
    };
    let target = format!("{project}@{branch}");
    let name = actor.name();
    audit::write(store, actor, Event::Rollback, &target, &details, |audit| {
        store.rollback(project, branch, to, writer(&name, audit))
    })
}

/// The writer of an operation's change: the actor's name and its audit
/// record, for a store that keeps it with the version.
fn writer<'a>(name: &'a str, audit: AuditOf<'a>) -> Writer<'a> {
    Writer {
        actor: name,
        audit: Some(audit),
    }
}
