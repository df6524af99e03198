//! The admin API (SPEC §6, §7): sessions, CSRF, and the handlers behind the
//! web UI, under `/site-builder/api`.
//!
//! Every request but login carries the session cookie; every unsafe one
//! (POST, PUT, PATCH, DELETE) also carries `X-CSRF-Token`, an HMAC of the
//! session id under the server key, so it needs no storage and cannot be
//! forged without the cookie's value. Each handler resolves its target,
//! asks `auth::roles::authorize` (403 before any existence check, so
//! nothing leaks about other users' projects), calls the store, and
//! appends the audit record (fsynced) before answering 2xx.

use hyper::header::{self, HeaderValue};
use hyper::{Response, StatusCode};
use serde::Deserialize;
use serde_json::json;
use subtle::ConstantTimeEq;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use super::request::Query;
use super::response::{json, paginated, set_header, with_body};
use super::{App, Body, Endpoint, Request};
use crate::auth::roles::{authorize, Action, Principal, Target};
use crate::auth::{passwords, TokenRecord};
use crate::error::{Error, Result, Unauthorized};
use crate::store::audit::AuditFilter;
use crate::store::tokens::TokenUpdate;
use crate::store::users::UserRecord;
use crate::store::{BranchName, FilePath, OwnerName, ProjectRef, RepoId, SnapshotId};

pub const COOKIE: &str = "cfgstore_session";

/// Failed logins allowed per user and per client address in the window.
const MAX_FAILURES_PER_USER: usize = 5;
const MAX_FAILURES_PER_IP: usize = 20;
const FAILURE_WINDOW: time::Duration = time::Duration::minutes(15);

/// A logged-in user.
#[derive(Debug, Clone)]
pub struct Session {
    pub id: String,
    pub user: UserRecord,
}

impl Session {
    pub fn principal(&self) -> Principal<'_> {
        Principal::User {
            name: &self.user.name,
            roles: &self.user.roles,
        }
    }

    fn actor(&self) -> String {
        self.user.name.to_string()
    }
}

/// The session id of the request's cookie. Several different values
/// (cookies tossed in by a sibling site, or two sessions) are ambiguous and
/// count as none: authentication fails closed.
fn session_cookie(req: &Request) -> Option<String> {
    let mut found: Option<String> = None;
    for value in req.parts.headers.get_all(header::COOKIE) {
        let Ok(value) = value.to_str() else { continue };
        for v in session_ids_in(value) {
            match &found {
                Some(seen) if seen != v => return None,
                _ => found = Some(v.to_string()),
            }
        }
    }
    found
}

/// The session id one `Cookie` header's value (`a=1; cfgstore_session=ID`)
/// names; `None` if none, or several different ones. Public for the fuzz
/// targets (`fuzz/`).
pub fn session_id_in_cookie_header(value: &str) -> Option<String> {
    let mut ids = session_ids_in(value);
    let first = ids.next()?;
    ids.all(|v| v == first).then(|| first.to_string())
}

fn session_ids_in(value: &str) -> impl Iterator<Item = &str> {
    value
        .split(';')
        .filter_map(|pair| pair.trim().split_once('='))
        .filter(|(name, _)| *name == COOKIE)
        .map(|(_, v)| v.trim())
}

fn parse_time(s: &str) -> Option<OffsetDateTime> {
    OffsetDateTime::parse(s, &Rfc3339).ok()
}

/// The session behind the request's cookie, checked against the idle and
/// absolute timeouts, the user's state and their last password change.
pub fn authenticate(app: &App, req: &Request) -> Result<Session> {
    let unauthorized = || Error::Unauthorized(Unauthorized::MissingToken);
    let id = session_cookie(req).ok_or_else(unauthorized)?;
    let record = app.store.session(&id)?.ok_or_else(unauthorized)?;
    let now = app.now();
    let (Some(created), Some(seen)) = (
        parse_time(&record.created_at),
        parse_time(&record.last_seen_at),
    ) else {
        return Err(unauthorized());
    };
    if now - created > app.sessions.absolute_timeout || now - seen > app.sessions.idle_timeout {
        app.store.delete_session(&id)?;
        return Err(unauthorized());
    }
    let user = match app.store.user(&record.user) {
        Ok(user) => user,
        Err(Error::NotFound { .. }) => return Err(unauthorized()),
        Err(e) => return Err(e),
    };
    if user.disabled || record.created_at < user.password_changed_at {
        return Err(unauthorized());
    }
    // Coalesced: at most one write a minute per session.
    if now - seen > time::Duration::minutes(1) {
        app.store
            .touch_session(&id, &crate::store::format_time(now))?;
    }
    Ok(Session { id, user })
}

fn csrf_token(app: &App, session_id: &str) -> Result<String> {
    Ok(app
        .store
        .server_key()?
        .fingerprint_mac(&format!("csrf:{session_id}")))
}

/// Unsafe admin requests must echo the session's CSRF token.
pub fn check_csrf(app: &App, req: &Request, session: &Session) -> Result<()> {
    let expected = csrf_token(app, &session.id)?;
    let given = req
        .parts
        .headers
        .get("x-csrf-token")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if bool::from(given.as_bytes().ct_eq(expected.as_bytes())) {
        Ok(())
    } else {
        req.audit(
            app,
            &session.actor(),
            "auth.denied",
            req.parts.uri.path(),
            json!({"reason": "CSRF token missing or wrong"}),
            false,
        );
        Err(Error::Forbidden("CSRF token missing or wrong".into()))
    }
}

pub fn dispatch(app: &App, req: &Request, endpoint: &Endpoint) -> Result<Response<Body>> {
    if *endpoint == Endpoint::Login {
        return login(app, req);
    }
    let s = req
        .session
        .as_ref()
        .expect("admin endpoints other than login are authenticated");
    let result = match endpoint {
        Endpoint::Logout => logout(app, req, s),
        Endpoint::Me => me(app, s),
        Endpoint::AdminProjects => list_projects(app, req, s),
        Endpoint::CreateProject => create_project(app, req, s),
        Endpoint::AdminBranches { id } => list_branches(app, req, s, id),
        Endpoint::CreateBranch { id } => create_branch(app, req, s, id),
        Endpoint::AdminTree { id, branch } => tree_listing(app, req, s, id, branch, None),
        Endpoint::GetFile { id, branch, path } => get_file(app, req, s, id, branch, None, path),
        Endpoint::PutFile { id, branch, path } => put_file(app, req, s, id, branch, path),
        Endpoint::DeleteFile { id, branch, path } => delete_file(app, req, s, id, branch, path),
        Endpoint::History { id, branch } => history(app, req, s, id, branch),
        Endpoint::SnapshotTree {
            id,
            branch,
            version,
        } => tree_listing(app, req, s, id, branch, Some(version)),
        Endpoint::SnapshotFile {
            id,
            branch,
            version,
            path,
        } => get_file(app, req, s, id, branch, Some(version), path),
        Endpoint::Rollback { id, branch } => rollback(app, req, s, id, branch),
        Endpoint::Tokens => list_tokens(app, req, s),
        Endpoint::CreateToken => create_token(app, req, s),
        Endpoint::UpdateToken { token } => update_token(app, req, s, token),
        Endpoint::RevokeToken { token } => revoke_token(app, req, s, token),
        Endpoint::RotateToken { token } => rotate_token(app, req, s, token),
        Endpoint::Audit => audit(app, req, s),
        other => unreachable!("{other:?} is not an admin endpoint"),
    };
    if let Err(err @ Error::Forbidden(_)) = &result {
        req.audit(
            app,
            &s.actor(),
            "auth.denied",
            req.parts.uri.path(),
            json!({"reason": err.to_string()}),
            false,
        );
    }
    result
}

// ----- sessions -------------------------------------------------------------

#[derive(Deserialize)]
struct LoginBody {
    username: String,
    password: String,
}

fn login(app: &App, req: &Request) -> Result<Response<Body>> {
    let body = parse_login(req)?;
    let ip = req.peer.map(|p| p.ip().to_string()).unwrap_or_default();
    let keys = [format!("user:{}", body.username), format!("ip:{ip}")];
    throttle(app, &keys)?;
    let user = OwnerName::parse(&body.username)
        .ok()
        .and_then(|name| app.store.user(&name).ok());
    let valid = passwords::verify(
        &body.password,
        user.as_ref().map(|u| u.password_hash.as_str()),
    );
    let user = match user {
        Some(user) if valid && !user.disabled => user,
        _ => {
            record_failure(app, &keys);
            // Only a known user's name goes into the trail: a "user name"
            // that names no one is often a password typed into the wrong
            // field, and the trail must never hold one (I7).
            let (actor, target) = match &user {
                Some(u) => (u.name.to_string(), format!("user:{}", u.name)),
                None => ("anonymous".to_string(), "user:(unknown)".to_string()),
            };
            req.audit(app, &actor, "login.failure", target, json!({}), true);
            return Err(Error::Unauthorized(Unauthorized::UnknownToken));
        }
    };
    app.login_failures
        .lock()
        .expect("login failures")
        .remove(&keys[0]);
    let id = app.store.create_session(&user.name)?;
    req.audit(
        app,
        user.name.as_str(),
        "login.success",
        format!("user:{}", user.name),
        json!({}),
        true,
    );
    let mut r = json(&json!({
        "username": user.name,
        "roles": user.roles,
        "csrf_token": csrf_token(app, &id)?,
    }));
    let secure = if app.sessions.secure_cookie {
        "; Secure"
    } else {
        ""
    };
    let cookie = format!("{COOKIE}={id}; Path=/; HttpOnly; SameSite=Strict{secure}");
    r.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_str(&cookie).expect("cookie is ASCII"),
    );
    Ok(r)
}

/// JSON `{username, password}` or an HTML form.
fn parse_login(req: &Request) -> Result<LoginBody> {
    let content_type = req
        .parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if content_type.starts_with("application/x-www-form-urlencoded") {
        let text =
            std::str::from_utf8(&req.body).map_err(|_| Error::invalid("body is not UTF-8"))?;
        let form = Query::parse(Some(text))?;
        let field = |k: &str| {
            form.get(k)
                .map(str::to_string)
                .ok_or_else(|| Error::invalid(format!("{k} is missing")))
        };
        return Ok(LoginBody {
            username: field("username")?,
            password: field("password")?,
        });
    }
    parse_json(req)
}

fn throttle(app: &App, keys: &[String]) -> Result<()> {
    let now = app.now();
    let mut failures = app.login_failures.lock().expect("login failures");
    for (key, limit) in keys
        .iter()
        .zip([MAX_FAILURES_PER_USER, MAX_FAILURES_PER_IP])
    {
        if let Some(times) = failures.get_mut(key) {
            times.retain(|t| now - *t < FAILURE_WINDOW);
            if times.len() >= limit {
                let retry = (times[0] + FAILURE_WINDOW - now).whole_seconds().max(1) as u64;
                return Err(Error::TooManyRequests { retry_after: retry });
            }
        }
    }
    Ok(())
}

fn record_failure(app: &App, keys: &[String]) {
    let now = app.now();
    let mut failures = app.login_failures.lock().expect("login failures");
    for key in keys {
        failures.entry(key.clone()).or_default().push(now);
    }
}

fn logout(app: &App, req: &Request, s: &Session) -> Result<Response<Body>> {
    app.store.delete_session(&s.id)?;
    req.audit(
        app,
        &s.actor(),
        "logout",
        format!("user:{}", s.user.name),
        json!({}),
        true,
    );
    let mut r = json(&json!({ "status": "logged out" }));
    let cookie = format!("{COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0");
    r.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_str(&cookie).expect("cookie is ASCII"),
    );
    Ok(r)
}

fn me(app: &App, s: &Session) -> Result<Response<Body>> {
    Ok(json(&json!({
        "username": s.user.name,
        "roles": s.user.roles,
        "csrf_token": csrf_token(app, &s.id)?,
    })))
}

// ----- helpers --------------------------------------------------------------

fn parse_json<T: serde::de::DeserializeOwned>(req: &Request) -> Result<T> {
    if req.body.is_empty() {
        return Err(Error::invalid("a JSON body is required"));
    }
    serde_json::from_slice(&req.body).map_err(|e| Error::invalid(format!("invalid JSON body: {e}")))
}

/// `repoId` (the user's own) or `owner/repoId`, authorized for `action`
/// before anything is looked up.
fn resolve(app: &App, s: &Session, id: &str, action: Action) -> Result<ProjectRef> {
    let project = if id.contains('/') {
        ProjectRef::parse(id)?
    } else {
        ProjectRef::new(s.user.name.clone(), RepoId::parse(id)?)
    };
    authorize(s.principal(), action, Target::Project(&project))?;
    app.store.project(&project)?;
    Ok(project)
}

fn created(value: &impl serde::Serialize) -> Response<Body> {
    let mut r = json(value);
    *r.status_mut() = StatusCode::CREATED;
    r
}

// ----- projects and branches ------------------------------------------------

fn list_projects(app: &App, req: &Request, s: &Session) -> Result<Response<Body>> {
    let visible: Vec<_> = app
        .store
        .list_projects(None)?
        .into_iter()
        .filter(|p| {
            authorize(
                s.principal(),
                Action::Read,
                Target::Project(&p.project_ref()),
            )
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

fn create_project(app: &App, req: &Request, s: &Session) -> Result<Response<Body>> {
    let body: CreateProjectBody = parse_json(req)?;
    let owner = match &body.owner {
        Some(o) => OwnerName::parse(o)?,
        None => s.user.name.clone(),
    };
    let repo = RepoId::from_name_and_type(&body.name, &body.kind)?;
    let project = ProjectRef::new(owner.clone(), repo);
    authorize(s.principal(), Action::Write, Target::Project(&project))?;
    let info = app
        .store
        .create_project(&owner, &body.name, &body.kind, &s.actor())?;
    req.audit(
        app,
        &s.actor(),
        "project.create",
        project.to_string(),
        json!({"branch": "main"}),
        true,
    );
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

fn list_branches(app: &App, req: &Request, s: &Session, id: &str) -> Result<Response<Body>> {
    let project = resolve(app, s, id, Action::Read)?;
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

fn create_branch(app: &App, req: &Request, s: &Session, id: &str) -> Result<Response<Body>> {
    let project = resolve(app, s, id, Action::Write)?;
    let body: CreateBranchBody = parse_json(req)?;
    let name = BranchName::parse(&body.name)?;
    let from = body.from.as_deref().map(BranchName::parse).transpose()?;
    let info = app
        .store
        .create_branch(&project, &name, from.as_ref(), &s.actor())?;
    req.audit(
        app,
        &s.actor(),
        "branch.create",
        format!("{project}@{name}"),
        json!({"from": from, "short_id": info.short_id}),
        true,
    );
    Ok(created(&branch_json(&info)))
}

// ----- files, history, rollback ---------------------------------------------

fn generation(
    app: &App,
    project: &ProjectRef,
    branch: &str,
    version: Option<&String>,
) -> Result<crate::store::Generation> {
    let branch = BranchName::parse(branch)?;
    match version {
        None => Ok(app.store.live(project, &branch)?.as_ref().clone()),
        Some(v) => app.store.snapshot(project, &branch, SnapshotId::parse(v)?),
    }
}

fn tree_listing(
    app: &App,
    req: &Request,
    s: &Session,
    id: &str,
    branch: &str,
    version: Option<&String>,
) -> Result<Response<Body>> {
    let project = resolve(app, s, id, Action::Read)?;
    let gen = generation(app, &project, branch, version)?;
    super::read::listing(req, &gen)
}

fn get_file(
    app: &App,
    _req: &Request,
    s: &Session,
    id: &str,
    branch: &str,
    version: Option<&String>,
    path: &str,
) -> Result<Response<Body>> {
    let project = resolve(app, s, id, Action::Read)?;
    let path = FilePath::parse(path)?;
    let gen = generation(app, &project, branch, version)?;
    let entry = gen
        .find(&path)
        .ok_or_else(|| Error::not_found("file", &path))?;
    let content = app.store.read_content(&project, entry)?;
    let mut r = with_body(StatusCode::OK, content.content_type(), content.bytes);
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
    s: &Session,
    id: &str,
    branch: &str,
    path: &str,
) -> Result<Response<Body>> {
    let project = resolve(app, s, id, Action::Write)?;
    let (branch, path) = (BranchName::parse(branch)?, FilePath::parse(path)?);
    let expected = if_match(req)?;
    let outcome = app.store.put_file(
        &project,
        &branch,
        &path,
        &req.body,
        &s.actor(),
        expected.as_deref(),
    )?;
    app.metrics.write(outcome.changed);
    let mut details = outcome.audit_details();
    details["size"] = req.body.len().into();
    req.audit(
        app,
        &s.actor(),
        "file.put",
        format!("{project}@{branch}:{path}"),
        details,
        true,
    );
    Ok(json(&outcome))
}

fn delete_file(
    app: &App,
    req: &Request,
    s: &Session,
    id: &str,
    branch: &str,
    path: &str,
) -> Result<Response<Body>> {
    let project = resolve(app, s, id, Action::Write)?;
    let (branch, path) = (BranchName::parse(branch)?, FilePath::parse(path)?);
    let expected = if_match(req)?;
    let outcome =
        app.store
            .delete_file(&project, &branch, &path, &s.actor(), expected.as_deref())?;
    app.metrics.write(outcome.changed);
    req.audit(
        app,
        &s.actor(),
        "file.delete",
        format!("{project}@{branch}:{path}"),
        outcome.audit_details(),
        true,
    );
    Ok(json(&outcome))
}

fn history(
    app: &App,
    req: &Request,
    s: &Session,
    id: &str,
    branch: &str,
) -> Result<Response<Body>> {
    let project = resolve(app, s, id, Action::Read)?;
    let branch = BranchName::parse(branch)?;
    paginated(
        req.parts,
        &req.query,
        &app.store.history(&project, &branch)?,
    )
}

fn rollback(
    app: &App,
    req: &Request,
    s: &Session,
    id: &str,
    branch: &str,
) -> Result<Response<Body>> {
    let project = resolve(app, s, id, Action::Write)?;
    let branch = BranchName::parse(branch)?;
    let to = SnapshotId::parse(
        req.query
            .get("to")
            .ok_or_else(|| Error::invalid("to is missing (e.g. ?to=v0003)"))?,
    )?;
    let outcome = app.store.rollback(&project, &branch, to, &s.actor())?;
    app.metrics.rollback();
    let mut details = outcome.audit_details();
    details["to"] = to.to_string().into();
    req.audit(
        app,
        &s.actor(),
        "rollback",
        format!("{project}@{branch}"),
        details,
        true,
    );
    Ok(json(&outcome))
}

// ----- tokens ---------------------------------------------------------------

/// A token the user may manage: their own, or any with ROOT. Others are
/// reported as not found, so ids of other owners' tokens do not leak.
fn own_token(app: &App, s: &Session, id: &str) -> Result<TokenRecord> {
    let token = app.store.token(id)?;
    authorize(
        s.principal(),
        Action::ManageTokens,
        Target::Owner(&token.owner),
    )
    .map_err(|_| Error::not_found("token", id))?;
    Ok(token)
}

fn list_tokens(app: &App, req: &Request, s: &Session) -> Result<Response<Body>> {
    let owner = match req.query.get("owner") {
        Some(o) => OwnerName::parse(o)?,
        None => s.user.name.clone(),
    };
    authorize(s.principal(), Action::ManageTokens, Target::Owner(&owner))?;
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

fn create_token(app: &App, req: &Request, s: &Session) -> Result<Response<Body>> {
    let body: CreateTokenBody = parse_json(req)?;
    let owner = match &body.owner {
        Some(o) => OwnerName::parse(o)?,
        None => s.user.name.clone(),
    };
    authorize(s.principal(), Action::ManageTokens, Target::Owner(&owner))?;
    let (record, secret) = app.store.create_token(
        &owner,
        &body.name,
        repo_list(&body.repos)?,
        body.expires_at,
        body.fingerprint_required,
    )?;
    req.audit(
        app,
        &s.actor(),
        "token.create",
        record.id.clone(),
        json!({"owner": owner, "name": record.name, "repos": record.repos}),
        true,
    );
    let mut value = serde_json::to_value(record.view(app.now())).expect("token view serialises");
    value["token"] = secret.into();
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

fn update_token(app: &App, req: &Request, s: &Session, id: &str) -> Result<Response<Body>> {
    own_token(app, s, id)?;
    let body: UpdateTokenBody = parse_json(req)?;
    let update = TokenUpdate {
        name: body.name,
        repos: body.repos.as_deref().map(repo_list).transpose()?,
        expires_at: body.expires_at,
        fingerprint_required: body.fingerprint_required,
    };
    let record = app.store.update_token(id, update)?;
    req.audit(app, &s.actor(), "token.update", id, json!({"repos": record.repos, "expires_at": record.expires_at, "fingerprint_required": record.fingerprint_required}), true);
    Ok(json(&record.view(app.now())))
}

fn revoke_token(app: &App, req: &Request, s: &Session, id: &str) -> Result<Response<Body>> {
    own_token(app, s, id)?;
    app.store.revoke_token(id)?;
    req.audit(app, &s.actor(), "token.revoke", id, json!({}), true);
    Ok(super::status_only(StatusCode::NO_CONTENT))
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RotateBody {
    grace: Option<String>,
}

fn rotate_token(app: &App, req: &Request, s: &Session, id: &str) -> Result<Response<Body>> {
    own_token(app, s, id)?;
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
    let (successor, secret, old) = app.store.rotate_token(id, grace, now)?;
    req.audit(
        app,
        &s.actor(),
        "token.rotate",
        id,
        json!({"successor": successor.id, "grace_seconds": grace.whole_seconds()}),
        true,
    );
    let mut value = serde_json::to_value(successor.view(now)).expect("token view serialises");
    value["token"] = secret.into();
    value["previous"] = serde_json::to_value(old.view(now)).expect("token view serialises");
    Ok(created(&value))
}

// ----- audit ----------------------------------------------------------------

fn audit(app: &App, req: &Request, s: &Session) -> Result<Response<Body>> {
    authorize(s.principal(), Action::ReadAudit, Target::Everything)?;
    let q = &req.query;
    let time_param = |k: &str| -> Result<Option<String>> {
        match q.get(k) {
            None | Some("") => Ok(None),
            Some(v) => {
                let t = crate::auth::parse_expiry(v).map_err(|_| {
                    Error::invalid(format!("{k} is invalid: use YYYY-MM-DD or RFC 3339"))
                })?;
                Ok(Some(crate::store::format_time(t)))
            }
        }
    };
    let filter = AuditFilter {
        action: q.get("action").map(str::to_string),
        actor: q.get("actor").map(str::to_string),
        project: q.get("project").map(str::to_string),
        since: time_param("since")?,
        until: time_param("until")?,
    };
    paginated(req.parts, &req.query, &app.store.read_audit(&filter)?)
}
