//! The admin API (SPEC §6, §7) under `/site-builder/api`: the handlers
//! behind the web UI, for a signed-in session (`session.rs`).
//!
//! Reads resolve their target and ask `auth::roles::authorize` (403 before
//! any existence check, so nothing leaks about other users' projects).
//! Changes parse the request and call one operation of `ops`, which
//! authorizes, writes and appends the audit record; the handler only
//! renders the outcome.

use hyper::header;
use hyper::{Response, StatusCode};
use serde::Deserialize;
use serde_json::json;

use super::response::{json, paginated, set_header, with_body};
use super::route::{AdminEndpoint, ProjectId};
use super::session::{self, Session};
use super::{App, Body, Request};
use crate::auth::roles::{authorize, Action, Target};
use crate::error::{Error, Result};
use crate::names::{BranchName, FilePath, OwnerName, ProjectRef, RepoId, SnapshotId};
use crate::ops::{self, Actor};
use crate::store::audit::{AuditFilter, AuditRecord};
use crate::store::tokens::TokenUpdate;

/// Every admin endpoint to its handler.
pub(super) fn dispatch(
    app: &App,
    req: &Request,
    s: &Session,
    endpoint: &AdminEndpoint,
) -> Result<Response<Body>> {
    use AdminEndpoint as A;
    let actor = s.actor(req);
    match endpoint {
        A::Logout => session::logout(app, req, s),
        A::Me => session::me(app, s),
        A::Projects => list_projects(app, req, &actor),
        A::CreateProject => create_project(app, req, &actor),
        A::Branches { id } => list_branches(app, req, &actor, id),
        A::CreateBranch { id } => create_branch(app, req, &actor, id),
        A::Tree { id, branch } => tree_listing(app, req, &actor, id, branch, None),
        A::GetFile { id, branch, path } => get_file(app, &actor, id, branch, None, path),
        A::PutFile { id, branch, path } => put_file(app, req, &actor, id, branch, path),
        A::DeleteFile { id, branch, path } => delete_file(app, req, &actor, id, branch, path),
        A::History { id, branch } => history(app, req, &actor, id, branch),
        A::SnapshotTree {
            id,
            branch,
            version,
        } => tree_listing(app, req, &actor, id, branch, Some(*version)),
        A::SnapshotFile {
            id,
            branch,
            version,
            path,
        } => get_file(app, &actor, id, branch, Some(*version), path),
        A::Rollback { id, branch } => rollback(app, req, &actor, id, branch),
        A::Tokens => list_tokens(app, req, &actor),
        A::CreateToken => create_token(app, req, &actor),
        A::UpdateToken { token } => update_token(app, req, &actor, token),
        A::RevokeToken { token } => revoke_token(app, &actor, token),
        A::RotateToken { token } => rotate_token(app, req, &actor, token),
        A::Audit => audit(app, req, &actor),
        A::Compare { id } => compare(app, req, &actor, id),
        A::Fleet { id } => fleet(app, req, &actor, id),
    }
}

// ----- helpers --------------------------------------------------------------

pub(super) fn parse_json<T: serde::de::DeserializeOwned>(req: &Request) -> Result<T> {
    if req.body.is_empty() {
        return Err(Error::invalid("a JSON body is required"));
    }
    serde_json::from_slice(&req.body).map_err(|e| Error::invalid(format!("invalid JSON body: {e}")))
}

/// The session user's name (admin actors are always users).
fn user_of(actor: &Actor) -> Result<&OwnerName> {
    actor
        .user_name()
        .ok_or_else(|| Error::Forbidden("the admin API is for signed-in users".into()))
}

/// The project `id` names for this user (a bare repoId is their own).
fn project_of(actor: &Actor, id: &ProjectId) -> Result<ProjectRef> {
    Ok(id.resolve(user_of(actor)?).into_owned())
}

/// A project the user may read: authorized before anything is looked up.
pub(super) fn readable(app: &App, actor: &Actor, id: &ProjectId) -> Result<ProjectRef> {
    let project = project_of(actor, id)?;
    actor.authorize(Action::Read, Target::Project(&project))?;
    app.store.require_project(&project)?;
    Ok(project)
}

fn created(value: &impl serde::Serialize) -> Response<Body> {
    let mut r = json(value);
    *r.status_mut() = StatusCode::CREATED;
    r
}

// ----- projects and branches ------------------------------------------------

fn list_projects(app: &App, req: &Request, actor: &Actor) -> Result<Response<Body>> {
    let visible: Vec<_> = app
        .store
        .list_projects(None)?
        .into_iter()
        .filter(|p| {
            actor
                .authorize(Action::Read, Target::Project(&p.project_ref()))
                .is_ok()
        })
        .map(|p| {
            let project = p.project_ref();
            json!({
                "id": p.repo,
                "owner": p.owner,
                "path_with_namespace": project.to_string(),
                "name": p.name,
                "type": p.kind,
                "created_at": p.created_at,
            })
        })
        .collect();
    paginated(req.parts, &req.query, &visible)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateProjectBody {
    name: String,
    #[serde(rename = "type", default)]
    kind: String,
    /// Another owner's folder (the public area, or any with ROOT).
    owner: Option<String>,
}

fn create_project(app: &App, req: &Request, actor: &Actor) -> Result<Response<Body>> {
    let body: CreateProjectBody = parse_json(req)?;
    let owner = match &body.owner {
        Some(o) => OwnerName::parse(o)?,
        None => user_of(actor)?.clone(),
    };
    let info = ops::content::create_project(&app.store, actor, &owner, &body.name, &body.kind)?;
    Ok(created(&info))
}

fn branch_json(b: &crate::store::BranchInfo) -> serde_json::Value {
    json!({
        "name": b.name,
        "short_id": b.short_id,
        "commit_id": b.commit_id,
        "version": b.version,
        "file_count": b.file_count,
        "updated_at": b.updated_at,
        "default": b.default,
    })
}

fn list_branches(
    app: &App,
    req: &Request,
    actor: &Actor,
    id: &ProjectId,
) -> Result<Response<Body>> {
    let project = readable(app, actor, id)?;
    let list: Vec<_> = app
        .store
        .list_branches(&project)?
        .iter()
        .map(branch_json)
        .collect();
    paginated(req.parts, &req.query, &list)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateBranchBody {
    name: String,
    from: Option<String>,
}

fn create_branch(
    app: &App,
    req: &Request,
    actor: &Actor,
    id: &ProjectId,
) -> Result<Response<Body>> {
    let project = project_of(actor, id)?;
    // Authorized before the body is looked at: a refused caller learns
    // nothing from our complaints about its body.
    actor.authorize(Action::Write, Target::Project(&project))?;
    let body: CreateBranchBody = parse_json(req)?;
    let name = BranchName::parse(&body.name)?;
    let from = body.from.as_deref().map(BranchName::parse).transpose()?;
    let info = ops::content::create_branch(&app.store, actor, &project, &name, from.as_ref())?;
    Ok(created(&branch_json(&info)))
}

// ----- files, history, rollback ---------------------------------------------

/// The live state of a branch, or one of its versions (the live one too).
pub(super) fn generation(
    app: &App,
    project: &ProjectRef,
    branch: &BranchName,
    version: Option<SnapshotId>,
) -> Result<std::sync::Arc<crate::store::Generation>> {
    match version {
        None => app.store.live(project, branch),
        Some(v) => app.store.version(project, branch, v),
    }
}

fn tree_listing(
    app: &App,
    req: &Request,
    actor: &Actor,
    id: &ProjectId,
    branch: &BranchName,
    version: Option<SnapshotId>,
) -> Result<Response<Body>> {
    let project = readable(app, actor, id)?;
    let gen = generation(app, &project, branch, version)?;
    super::read::listing(req, &gen)
}

fn get_file(
    app: &App,
    actor: &Actor,
    id: &ProjectId,
    branch: &BranchName,
    version: Option<SnapshotId>,
    path: &FilePath,
) -> Result<Response<Body>> {
    let project = readable(app, actor, id)?;
    let gen = generation(app, &project, branch, version)?;
    let entry = gen
        .find(path)
        .ok_or_else(|| Error::not_found("file", path))?;
    let content = app.store.read_content(&project, entry)?;
    let mut r = with_body(StatusCode::OK, content.content_type(), content.bytes);
    // Stored bytes on the UI's origin: never sniffed, never a page.
    set_header(&mut r, "x-content-type-options", "nosniff");
    set_header(
        &mut r,
        "content-security-policy",
        "sandbox; default-src 'none'",
    );
    set_header(&mut r, "etag", &format!("\"{}\"", entry.blob_id()));
    set_header(&mut r, "x-cfgstore-short-id", &gen.meta.short_id);
    set_header(&mut r, "x-cfgstore-version", &gen.meta.version.to_string());
    Ok(r)
}

/// `If-Match: {short_id}` (quotes allowed) makes a write conditional.
fn if_match(req: &Request) -> Result<Option<String>> {
    match req.parts.headers.get(header::IF_MATCH) {
        None => Ok(None),
        Some(v) => {
            let v = v
                .to_str()
                .map_err(|_| Error::invalid("If-Match is not ASCII"))?;
            Ok(Some(v.trim().trim_matches('"').to_string()))
        }
    }
}

fn put_file(
    app: &App,
    req: &Request,
    actor: &Actor,
    id: &ProjectId,
    branch: &BranchName,
    path: &FilePath,
) -> Result<Response<Body>> {
    let project = project_of(actor, id)?;
    let write = ops::content::FileWrite {
        project: &project,
        branch,
        path,
        bytes: &req.body,
    };
    if req.query.flag("dry_run", false)? {
        // Checked, diffed and answered; nothing is written.
        let dry = ops::content::preview_put(&app.store, actor, write)?;
        return Ok(json(&dry));
    }
    let expected = if_match(req)?;
    // `?validate=false` stores content the checks refuse (audited).
    let validation = match req.query.flag("validate", true)? {
        true => ops::content::Validation::Check,
        false => ops::content::Validation::Skip,
    };
    let outcome =
        ops::content::put_file(&app.store, actor, write, expected.as_deref(), validation)?;
    app.metrics.write(outcome.changed);
    Ok(json(&outcome))
}

fn delete_file(
    app: &App,
    req: &Request,
    actor: &Actor,
    id: &ProjectId,
    branch: &BranchName,
    path: &FilePath,
) -> Result<Response<Body>> {
    let project = project_of(actor, id)?;
    let expected = if_match(req)?;
    let outcome = ops::content::delete_file(
        &app.store,
        actor,
        &project,
        branch,
        path,
        expected.as_deref(),
    )?;
    app.metrics.write(outcome.changed);
    Ok(json(&outcome))
}

fn history(
    app: &App,
    req: &Request,
    actor: &Actor,
    id: &ProjectId,
    branch: &BranchName,
) -> Result<Response<Body>> {
    let project = readable(app, actor, id)?;
    paginated(req.parts, &req.query, &app.store.history(&project, branch)?)
}

/// `?from=REF&to=REF`: two states side by side (`crate::compare`).
fn compare(app: &App, req: &Request, actor: &Actor, id: &ProjectId) -> Result<Response<Body>> {
    let project = readable(app, actor, id)?;
    let side = |key: &str| {
        req.query.get(key).filter(|v| !v.is_empty()).ok_or_else(|| {
            Error::invalid(format!(
                "{key} is missing (a branch, branch@vNNNN or a commit id)"
            ))
        })
    };
    let (from, to) = (side("from")?, side("to")?);
    Ok(json(&crate::compare::compare(
        &app.store, &project, from, to,
    )?))
}

/// Who read which state (`crate::fleet`), behind first, paginated. A
/// user sees the clients of the tokens they manage (their own; every
/// owner's with ROOT): the readers of a public project are other tenants'
/// machines, whose addresses are not theirs to see.
fn fleet(app: &App, req: &Request, actor: &Actor, id: &ProjectId) -> Result<Response<Body>> {
    let project = readable(app, actor, id)?;
    let rows = fleet_rows(app, actor, &project)?;
    paginated(req.parts, &req.query, &rows)
}

/// The rows `fleet` answers with, for the API and the UI's page.
pub(super) fn fleet_rows(
    app: &App,
    actor: &Actor,
    project: &ProjectRef,
) -> Result<Vec<crate::fleet::Row>> {
    let project = project.clone();
    let clients = app.fleet.clients(&app.store, &project);
    let mut rows = crate::fleet::view(&app.store, &project, &clients)?;
    rows.retain(|row| {
        let owner = match &row.token_owner {
            Some(owner) => OwnerName::parse(owner).ok(),
            // A token gone since: as visible as the project's own tokens.
            None => Some(project.owner.clone()),
        };
        owner.is_some_and(|o| {
            actor
                .authorize(Action::ManageTokens, Target::Owner(&o))
                .is_ok()
        })
    });
    Ok(rows)
}

fn rollback(
    app: &App,
    req: &Request,
    actor: &Actor,
    id: &ProjectId,
    branch: &BranchName,
) -> Result<Response<Body>> {
    let project = project_of(actor, id)?;
    actor.authorize(Action::Write, Target::Project(&project))?;
    let to = SnapshotId::parse(
        req.query
            .get("to")
            .ok_or_else(|| Error::invalid("to is missing (e.g. ?to=v0003)"))?,
    )?;
    let outcome = ops::content::rollback(&app.store, actor, &project, branch, to)?;
    app.metrics.rollback();
    Ok(json(&outcome))
}

// ----- tokens ---------------------------------------------------------------

fn list_tokens(app: &App, req: &Request, actor: &Actor) -> Result<Response<Body>> {
    let owner = match req.query.get("owner") {
        Some(o) => OwnerName::parse(o)?,
        None => user_of(actor)?.clone(),
    };
    actor.authorize(Action::ManageTokens, Target::Owner(&owner))?;
    let now = app.now();
    let views: Vec<_> = app
        .store
        .list_tokens(Some(&owner))?
        .iter()
        .map(|t| t.view(now))
        .collect();
    paginated(req.parts, &req.query, &views)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateTokenBody {
    name: String,
    #[serde(default)]
    repos: Vec<String>,
    expires_at: Option<String>,
    #[serde(default)]
    fingerprint_required: bool,
    owner: Option<String>,
}

fn repo_list(list: &[String]) -> Result<Vec<RepoId>> {
    list.iter().map(|r| RepoId::parse(r)).collect()
}

fn create_token(app: &App, req: &Request, actor: &Actor) -> Result<Response<Body>> {
    let body: CreateTokenBody = parse_json(req)?;
    let owner = match &body.owner {
        Some(o) => OwnerName::parse(o)?,
        None => user_of(actor)?.clone(),
    };
    let new = ops::tokens::NewToken {
        owner,
        name: body.name,
        repos: repo_list(&body.repos)?,
        expires_at: body.expires_at,
        fingerprint_required: body.fingerprint_required,
    };
    let now = app.now();
    let issued = ops::tokens::create(&app.store, actor, new, now)?;
    let mut value = serde_json::to_value(issued.record.view(now)).expect("token view serialises");
    value["token"] = issued.secret.into();
    if !issued.missing_repos.is_empty() {
        value["warnings"] = issued
            .missing_repos
            .iter()
            .map(|r| format!("no project {r} (yet)"))
            .collect();
    }
    Ok(created(&value))
}

/// PATCH: absent fields stay; `"expires_at": null` removes the expiry.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UpdateTokenBody {
    name: Option<String>,
    repos: Option<Vec<String>>,
    #[serde(default, deserialize_with = "present")]
    expires_at: Option<Option<String>>,
    fingerprint_required: Option<bool>,
}

/// Tells a field given as `null` (Some(None)) from one left out (None).
fn present<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> std::result::Result<Option<Option<String>>, D::Error> {
    Option::<String>::deserialize(d).map(Some)
}

fn update_token(app: &App, req: &Request, actor: &Actor, id: &str) -> Result<Response<Body>> {
    ops::tokens::manageable(&app.store, actor, id)?;
    let body: UpdateTokenBody = parse_json(req)?;
    let update = TokenUpdate {
        name: body.name,
        repos: body.repos.as_deref().map(repo_list).transpose()?,
        expires_at: body.expires_at,
        fingerprint_required: body.fingerprint_required,
    };
    let record = ops::tokens::update(&app.store, actor, id, update)?;
    Ok(json(&record.view(app.now())))
}

fn revoke_token(app: &App, actor: &Actor, id: &str) -> Result<Response<Body>> {
    ops::tokens::revoke(&app.store, actor, id)?;
    Ok(super::status_only(StatusCode::NO_CONTENT))
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RotateBody {
    grace: Option<String>,
}

fn rotate_token(app: &App, req: &Request, actor: &Actor, id: &str) -> Result<Response<Body>> {
    ops::tokens::manageable(&app.store, actor, id)?;
    let body: RotateBody = if req.body.is_empty() {
        RotateBody::default()
    } else {
        parse_json(req)?
    };
    let grace = body
        .grace
        .as_deref()
        .map(crate::auth::parse_duration)
        .transpose()?
        .unwrap_or(time::Duration::ZERO);
    let now = app.now();
    let rotated = ops::tokens::rotate(&app.store, actor, id, grace, now)?;
    let successor = &rotated.successor;
    let mut value =
        serde_json::to_value(successor.record.view(now)).expect("token view serialises");
    value["token"] = successor.secret.clone().into();
    value["previous"] =
        serde_json::to_value(rotated.previous.view(now)).expect("token view serialises");
    Ok(created(&value))
}

// ----- audit ----------------------------------------------------------------

/// The audit trail as far as the caller may see it: everything for
/// READONLY and ROOT; for others, the records of projects they may read
/// and their own actions. `project=` narrows to one project, which the
/// caller must be able to read (403 otherwise).
fn audit(app: &App, req: &Request, actor: &Actor) -> Result<Response<Body>> {
    let records = audit_records(app, &req.query, actor)?;
    paginated(req.parts, &req.query, &records)
}

/// The records `audit` answers with (filters `action`, `actor`,
/// `project`, `since`, `until` of `q`), for the API and the UI's page.
pub(super) fn audit_records(
    app: &App,
    q: &super::request::Query,
    actor: &Actor,
) -> Result<Vec<AuditRecord>> {
    let time_param = |k: &str| -> Result<Option<String>> {
        match q.get(k) {
            None | Some("") => Ok(None),
            Some(v) => {
                let mut t = crate::auth::parse_expiry(v).map_err(|_| {
                    Error::invalid(format!("{k} is invalid: use YYYY-MM-DD or RFC 3339"))
                })?;
                // `until=2026-12-06` includes that day.
                if k == "until" && v.len() == 10 {
                    t += time::Duration::days(1) - time::Duration::SECOND;
                }
                Ok(Some(crate::store::format_time(t)))
            }
        }
    };
    // An empty field (a form left blank) filters nothing.
    let given = |k: &str| q.get(k).filter(|v| !v.is_empty());
    let project = given("project").map(ProjectRef::parse).transpose()?;
    let everything = actor
        .authorize(Action::ReadAudit, Target::Everything)
        .is_ok();
    if let Some(project) = &project {
        actor.authorize(Action::ReadAudit, Target::Project(project))?;
    }
    let filter = AuditFilter {
        action: given("action").map(str::to_string),
        actor: given("actor").map(str::to_string),
        project: project.map(|p| p.to_string()),
        since: time_param("since")?,
        until: time_param("until")?,
    };
    let mut records = app.store.read_audit(&filter)?;
    if !everything {
        let me = actor.name();
        records.retain(|r| r.actor == me || visible_project(actor, r));
    }
    Ok(records)
}

/// Whether a record's target is inside a project the actor may read.
fn visible_project(actor: &Actor, record: &AuditRecord) -> bool {
    let project = record
        .target
        .split(['@', ':'])
        .next()
        .filter(|p| p.contains('/'))
        .and_then(|p| ProjectRef::parse(p).ok());
    project.is_some_and(|p| {
        authorize(actor.principal(), Action::ReadAudit, Target::Project(&p)).is_ok()
    })
}
