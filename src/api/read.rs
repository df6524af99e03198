//! Read API handlers (SPEC §4): GitLab v4 shapes over the store.
//!
//! Every handler resolves the project through `resolve_project`, which
//! applies the token's scope before looking anything up, so a token never
//! learns whether a project outside its scope exists (403 either way).
//! A handler reads one live generation and answers from it alone, so the
//! tree, the files and the ids in one response describe one state.

use std::sync::Arc;

use hyper::header;
use hyper::{Response, StatusCode};
use serde::Serialize;
use sha2::{Digest, Sha256};

use super::response::{
    json, paginated, set_header, set_shared_header, with_body, JSON, X_GITLAB_BLOB_ID,
    X_GITLAB_COMMIT_ID,
};
use super::route::{ProjectId, ReadEndpoint};
use super::{App, Body, Request};
use crate::auth::TokenRecord;
use crate::error::{Error, Result};
use crate::names::{BranchName, FilePath, ProjectRef};
use crate::store::{tree, BranchInfo, Generation};

/// Every read endpoint to its handler.
pub(super) fn dispatch(
    app: &App,
    req: &Request,
    token: &TokenRecord,
    endpoint: &ReadEndpoint,
) -> Result<Response<Body>> {
    use ReadEndpoint as R;
    let r = &Reader { app, req, token };
    match endpoint {
        R::Projects => projects(r),
        R::User => user(token),
        R::Project { id } => project(app, token, id),
        R::Branches { id } => branches(r, id),
        R::Branch { id, branch: name } => branch(r, id, name),
        R::Tree { id } => tree(r, id),
        R::FileRaw { id, path } => file_raw(r, id, path),
        R::FileMeta { id, path } => file_meta(r, id, path),
        R::BlobRaw { id, sha } => blob_raw(r, id, sha),
        R::Blob { id, sha } => blob(r, id, sha),
        R::Archive { id } => archive(r, id),
    }
}

/// One read as its handlers see it: the daemon, the request and the token
/// it was admitted with.
struct Reader<'a, 'r> {
    app: &'a App,
    req: &'a Request<'r>,
    token: &'a TokenRecord,
}

pub fn health(app: &App) -> Result<Response<Body>> {
    let now = crate::store::format_time(app.now());
    Ok(json(&serde_json::json!({ "status": "ok", "time": now })))
}

/// The project a token means by `id` (a bare repoId is the token owner's).
/// Scope first (403), then existence (404).
fn resolve_project<'a>(
    app: &App,
    token: &TokenRecord,
    id: &'a ProjectId,
) -> Result<std::borrow::Cow<'a, ProjectRef>> {
    let project = id.resolve(&token.owner);
    if !token.covers(&project) {
        return Err(Error::Forbidden(format!("token does not cover {project}")));
    }
    app.store.require_project(&project)?;
    Ok(project)
}

/// The state a `ref` names: absent, empty or `HEAD` is the default
/// branch; a branch name is its live state; `branch@vNNNN`, or a commit id
/// (40 hex) or `short_id` (8 hex) of a retained version, pins that
/// version (`Store::resolve`), so a client
/// that listed a tree can fetch every file of that one state. A ref that
/// names nothing is a 404 in GitLab's words for the endpoint (`missing`),
/// with a hint naming the branches that exist. A pinned state is read
/// beyond the read cache's pointers (`Request::beyond_pointers`).
fn resolve_ref(
    r: &Reader,
    project: &ProjectRef,
    reference: Option<&str>,
    missing: &'static str,
) -> Result<(BranchName, Arc<Generation>)> {
    let app = r.app;
    let name = match reference {
        None | Some("") | Some("HEAD") => {
            let branch = app
                .store
                .default_branch(project)?
                .ok_or_else(|| Error::not_found(missing, "default branch"))?;
            let gen = app.store.live(project, &branch)?;
            return Ok((branch, gen));
        }
        Some(name) => name,
    };
    if let Some(found) = app.store.resolve(project, name)? {
        if found.0.as_str() != name {
            r.req.beyond_pointers.set(true);
        }
        return Ok(found);
    }
    Err(Error::UnknownRef {
        what: missing,
        reference: name.to_string(),
        branches: app
            .store
            .branch_names(project)?
            .iter()
            .map(|b| b.to_string())
            .collect(),
    })
}

/// Notes in the fleet view (`crate::fleet`) that this client read
/// `project` and received `states` (branch, `short_id`).
fn served(r: &Reader, project: &ProjectRef, states: &[(&str, &str)]) {
    let (app, req, token) = (r.app, r.req, r.token);
    let header = |name: &hyper::header::HeaderName| {
        req.parts.headers.get(name).and_then(|v| v.to_str().ok())
    };
    // Wall-clock seconds, not the app's clock: when a client was seen is
    // compared with when versions were written, which is wall-clock too.
    let now = crate::coarse::unix_seconds() as i64;
    let visit = crate::fleet::Visit {
        token_id: &token.id,
        instance_id: header(&super::authn::X_INSTANCE_ID).unwrap_or(""),
        address: req.client_ip,
        user_agent: header(&header::USER_AGENT),
        now,
    };
    app.fleet.note(&app.store, project, &visit, states);
    if let Some(noted) = &req.noted {
        noted
            .borrow_mut()
            .push(super::replay::Noted::of(project, &visit, states));
    }
}

/// `served` for a read answered from one state of one branch.
fn served_state(r: &Reader, project: &ProjectRef, branch: &BranchName, gen: &Generation) {
    served(r, project, &[(branch.as_str(), &gen.meta.short_id)]);
}

#[derive(Serialize)]
struct GitlabBranch {
    name: String,
    commit: GitlabCommit,
    default: bool,
    protected: bool,
    merged: bool,
    developers_can_push: bool,
    developers_can_merge: bool,
    can_push: bool,
}

#[derive(Serialize)]
struct GitlabCommit {
    id: String,
    short_id: String,
    title: String,
    message: String,
    created_at: String,
    committed_date: String,
    authored_date: String,
    author_name: String,
    committer_name: String,
    parent_ids: Vec<String>,
}

impl From<BranchInfo> for GitlabBranch {
    fn from(b: BranchInfo) -> GitlabBranch {
        GitlabBranch {
            name: b.name.to_string(),
            commit: GitlabCommit {
                id: b.commit_id,
                short_id: b.short_id,
                title: b.reason.clone(),
                message: b.reason,
                created_at: b.updated_at.clone(),
                committed_date: b.updated_at.clone(),
                authored_date: b.updated_at,
                author_name: b.actor.clone(),
                committer_name: b.actor,
                parent_ids: Vec::new(),
            },
            default: b.default,
            protected: false,
            merged: false,
            developers_can_push: false,
            developers_can_merge: false,
            can_push: false,
        }
    }
}

/// The answer to an unfiltered, unpaginated branches list: exactly what
/// `paginated` and `finish` would make of the list (body, pagination
/// headers, the body's ETag), and the states it shows, for the fleet view.
struct BranchList {
    body: bytes::Bytes,
    headers: Vec<(header::HeaderName, header::HeaderValue)>,
    states: Vec<(String, String)>,
}

impl BranchList {
    fn of(app: &App, project: &ProjectRef) -> Result<BranchList> {
        let list: Vec<GitlabBranch> = app
            .store
            .list_branches(project)?
            .into_iter()
            .map(GitlabBranch::from)
            .collect();
        let mut model = paginated(
            &hyper::Request::new(()).into_parts().0,
            &super::request::Query::default(),
            &list,
        )?;
        let body = std::mem::take(model.body_mut());
        let etag = format!("\"{}\"", &blake3::hash(&body).to_hex()[..32]);
        let mut headers: Vec<_> = model
            .headers()
            .iter()
            .filter(|(name, _)| *name != header::CONTENT_TYPE)
            .map(|(name, value)| (name.clone(), value.clone()))
            .collect();
        headers.push((
            header::ETAG,
            header::HeaderValue::from_str(&etag).expect("hex is a header value"),
        ));
        Ok(BranchList {
            body,
            headers,
            states: list
                .into_iter()
                .map(|b| (b.name, b.commit.short_id))
                .collect(),
        })
    }
}

/// `GET projects/:id/repository/branches?search=`: `^term` is a prefix,
/// `term$` a suffix, otherwise a substring; case-insensitive.
fn branches(r: &Reader, id: &ProjectId) -> Result<Response<Body>> {
    let (app, req, token) = (r.app, r.req, r.token);
    let project = resolve_project(app, token, id)?;
    let search = req.query.get("search").unwrap_or("").to_lowercase();
    let (prefix, rest) = match search.strip_prefix('^') {
        Some(rest) => (true, rest),
        None => (false, search.as_str()),
    };
    let (suffix, term) = match rest.strip_suffix('$') {
        Some(term) => (true, term),
        None => (false, rest),
    };
    let matches = |name: &str| {
        let name = name.to_lowercase();
        match (prefix, suffix) {
            (true, true) => name == term,
            (true, false) => name.starts_with(term),
            (false, true) => name.ends_with(term),
            (false, false) => name.contains(term),
        }
    };
    // Every poll of every ERP (SPEC §12) asks for the whole list: its
    // answer is made once per state of the project's branches.
    if search.is_empty() && !req.query.has("page") && !req.query.has("per_page") {
        let answer = app
            .store
            .project_answer(&project, "read.branches", || BranchList::of(app, &project))?;
        let mut response = with_body(StatusCode::OK, JSON, answer.body.clone());
        for (name, value) in &answer.headers {
            response.headers_mut().insert(name, value.clone());
        }
        let states: Vec<(&str, &str)> = answer
            .states
            .iter()
            .map(|(b, s)| (b.as_str(), s.as_str()))
            .collect();
        served(r, &project, &states);
        return Ok(response);
    }
    let list: Vec<GitlabBranch> = app
        .store
        .list_branches(&project)?
        .into_iter()
        .filter(|b| matches(b.name.as_str()))
        .map(GitlabBranch::from)
        .collect();
    let response = paginated(req.parts, &req.query, &list)?;
    // The client received the branches of the page it was sent.
    let states: Vec<(&str, &str)> = list[super::response::page_range(&req.query, list.len())?]
        .iter()
        .map(|b| (b.name.as_str(), b.commit.short_id.as_str()))
        .collect();
    served(r, &project, &states);
    Ok(response)
}

fn branch(r: &Reader, id: &ProjectId, name: &BranchName) -> Result<Response<Body>> {
    let (app, token) = (r.app, r.token);
    let project = resolve_project(app, token, id)?;
    let branch = app.store.branch(&project, name)?;
    served(r, &project, &[(name.as_str(), &branch.short_id)]);
    Ok(json(&GitlabBranch::from(branch)))
}

/// `GET projects/:id/repository/tree?ref=&path=&recursive=`
fn tree(r: &Reader, id: &ProjectId) -> Result<Response<Body>> {
    let (app, req, token) = (r.app, r.req, r.token);
    let project = resolve_project(app, token, id)?;
    let (branch, gen) = resolve_ref(r, &project, req.query.get("ref"), "tree")?;
    let response = listing(req, &gen)?;
    served_state(r, &project, &branch, &gen);
    Ok(response)
}

/// A tree listing of `gen` as `path` and `recursive` in the query ask,
/// paginated when asked: shared by the read and admin APIs.
pub(super) fn listing(req: &Request, gen: &Generation) -> Result<Response<Body>> {
    let recursive = req.query.flag("recursive", false)?;
    let under = match req.query.get("path").map(|p| p.trim_end_matches('/')) {
        None | Some("") => None,
        Some(p) => Some(FilePath::parse(p)?),
    };
    match gen.tree().select(under.as_ref(), recursive)? {
        tree::Selection::Slice(entries) => paginated(req.parts, &req.query, entries),
        tree::Selection::Picked(entries) => paginated(req.parts, &req.query, &entries),
    }
}

fn find_file<'g>(gen: &'g Generation, path: &FilePath) -> Result<&'g crate::store::Entry> {
    gen.find(path).ok_or_else(|| Error::not_found("file", path))
}

fn content_type(bytes: &[u8]) -> &'static str {
    crate::store::content_type(crate::store::is_text(bytes))
}

/// GitLab's `X-Gitlab-*` file headers, for the metadata endpoint (whose
/// `HEAD` is answered by them). The raw endpoint, which ERPs poll all day,
/// carries only the ids (`file_raw`).
fn gitlab_file_headers(
    r: &mut Response<Body>,
    entry: &crate::store::Entry,
    gen: &Generation,
    branch: &BranchName,
) {
    set_header(r, X_GITLAB_BLOB_ID, entry.blob_id());
    set_header(r, X_GITLAB_COMMIT_ID, &gen.meta.commit_id);
    set_header(r, "x-gitlab-last-commit-id", &gen.meta.commit_id);
    set_header(r, "x-gitlab-file-name", entry.path.file_name());
    set_header(r, "x-gitlab-file-path", entry.path.as_str());
    set_header(r, "x-gitlab-ref", branch.as_str());
    set_header(r, "x-gitlab-size", &entry.size.to_string());
    set_header(r, "x-gitlab-encoding", "base64");
    set_header(r, "x-gitlab-execute-filemode", "false");
}

/// `GET|HEAD projects/:id/repository/files/:path/raw?ref=` (ref optional).
fn file_raw(r: &Reader, id: &ProjectId, path: &FilePath) -> Result<Response<Body>> {
    let (app, req, token) = (r.app, r.req, r.token);
    let project = resolve_project(app, token, id)?;
    let (branch, gen) = resolve_ref(r, &project, req.query.get("ref"), "file")?;
    let entry = find_file(&gen, path)?;
    let content = app.store.read_content(&project, entry)?;
    served_state(r, &project, &branch, &gen);
    // The headers ERPs get all day, from values built once per content.
    let mut r = with_body(
        StatusCode::OK,
        content.content_type(),
        content.bytes.clone(),
    );
    set_shared_header(&mut r, header::ETAG, content.quoted_blob_id.clone());
    set_shared_header(&mut r, X_GITLAB_BLOB_ID, content.blob_id());
    set_header(&mut r, X_GITLAB_COMMIT_ID, &gen.meta.commit_id);
    // The same bytes as a file held open: the lean path sends them from it.
    if let Some(file) = content.file {
        r.extensions_mut().insert(file);
    }
    Ok(r)
}

#[derive(Serialize)]
struct GitlabFile {
    file_name: String,
    file_path: String,
    size: u64,
    encoding: &'static str,
    content: String,
    content_sha256: String,
    #[serde(rename = "ref")]
    reference: String,
    blob_id: String,
    commit_id: String,
    last_commit_id: String,
    execute_filemode: bool,
}

/// `GET|HEAD projects/:id/repository/files/:path?ref=` — GitLab's file
/// JSON, where `ref` is required.
fn file_meta(r: &Reader, id: &ProjectId, path: &FilePath) -> Result<Response<Body>> {
    let (app, req, token) = (r.app, r.req, r.token);
    let project = resolve_project(app, token, id)?;
    let reference = req
        .query
        .get("ref")
        .filter(|r| !r.is_empty())
        .ok_or_else(|| Error::invalid("ref is missing"))?;
    let (branch, gen) = resolve_ref(r, &project, Some(reference), "file")?;
    let entry = find_file(&gen, path)?;
    let bytes = app.store.read_entry(&project, entry)?;
    served_state(r, &project, &branch, &gen);
    let file = GitlabFile {
        file_name: entry.path.file_name().to_string(),
        file_path: entry.path.to_string(),
        size: entry.size,
        encoding: "base64",
        content: base64(&bytes),
        content_sha256: crate::hex::encode(&Sha256::digest(&bytes)),
        reference: reference.to_string(),
        blob_id: entry.blob_id().to_string(),
        commit_id: gen.meta.commit_id.clone(),
        last_commit_id: gen.meta.commit_id.clone(),
        execute_filemode: false,
    };
    let mut r = json(&file);
    gitlab_file_headers(&mut r, entry, &gen, &branch);
    set_header(&mut r, "x-gitlab-content-sha256", &file.content_sha256);
    // No blob ETag: the JSON body differs with `ref`, the blob does not, so
    // `response::finish` tags the body.
    Ok(r)
}

/// The content a blob id names, for both blob endpoints (a read of the
/// project for the fleet view, of no branch in particular).
fn blob_bytes(r: &Reader, id: &ProjectId, sha: &str) -> Result<Vec<u8>> {
    let (app, token) = (r.app, r.token);
    let project = resolve_project(app, token, id)?;
    let bytes = app.store.read_blob(&project, sha)?;
    served(r, &project, &[]);
    Ok(bytes)
}

/// `GET projects/:id/repository/blobs/:sha/raw`
fn blob_raw(r: &Reader, id: &ProjectId, sha: &str) -> Result<Response<Body>> {
    let bytes = blob_bytes(r, id, sha)?;
    let mut r = with_body(StatusCode::OK, content_type(&bytes), bytes);
    set_header(&mut r, "etag", &format!("\"{sha}\""));
    Ok(r)
}

/// `GET projects/:id/repository/blobs/:sha`
fn blob(r: &Reader, id: &ProjectId, sha: &str) -> Result<Response<Body>> {
    let bytes = blob_bytes(r, id, sha)?;
    Ok(json(&serde_json::json!({
        "size": bytes.len(),
        "encoding": "base64",
        "content": base64(&bytes),
        "sha": sha,
    })))
}

/// `GET projects/:id/repository/archive[.tar.gz]?sha=`: every file of one
/// generation, so the archive is one consistent state of the branch.
fn archive(r: &Reader, id: &ProjectId) -> Result<Response<Body>> {
    let (app, req, token) = (r.app, r.req, r.token);
    let project = resolve_project(app, token, id)?;
    let (branch, gen) = resolve_ref(r, &project, req.query.get("sha"), "file")?;
    served_state(r, &project, &branch, &gen);
    let folder = format!(
        "{}-{}-{}",
        project.repo,
        branch.as_str().replace('/', "-"),
        gen.meta.commit_id
    );
    let encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    let mut builder = tar::Builder::new(encoder);
    let mtime = time::OffsetDateTime::parse(
        &gen.meta.created_at,
        &time::format_description::well_known::Rfc3339,
    )
    .map(|t| t.unix_timestamp().max(0) as u64)
    .unwrap_or(0);
    let tar_error = |e: std::io::Error| Error::io("archive", e);
    for entry in gen.entries() {
        let bytes = app.store.read_entry(&project, entry)?;
        let mut header = tar::Header::new_gnu();
        header.set_size(bytes.len() as u64);
        header.set_mode(0o644);
        header.set_mtime(mtime);
        header.set_entry_type(tar::EntryType::Regular);
        builder
            .append_data(&mut header, format!("{folder}/{}", entry.path), &bytes[..])
            .map_err(tar_error)?;
    }
    let gz = builder
        .into_inner()
        .map_err(tar_error)?
        .finish()
        .map_err(tar_error)?;
    let mut r = with_body(StatusCode::OK, "application/gzip", gz);
    set_header(
        &mut r,
        "content-disposition",
        &format!("attachment; filename=\"{folder}.tar.gz\""),
    );
    set_header(&mut r, "etag", &format!("\"{}\"", gen.meta.commit_id));
    Ok(r)
}

/// `GET projects/:id`: `id` echoes the id the client used, so non-lazy
/// python-gitlab objects address later calls the same way.
fn project(app: &App, token: &TokenRecord, id: &ProjectId) -> Result<Response<Body>> {
    let project = resolve_project(app, token, id)?;
    Ok(json(&project_json(app, &project, &id.to_string())?))
}

/// GitLab's project object. `id` echoes the id the client used, so
/// non-lazy python-gitlab objects address later calls the same way.
fn project_json(app: &App, project: &ProjectRef, id: &str) -> Result<serde_json::Value> {
    let info = app.store.project(project)?;
    let default_branch = app.store.default_branch(project)?;
    Ok(serde_json::json!({
        "id": id,
        "name": info.repo,
        "path": info.repo,
        "description": "",
        "path_with_namespace": project.to_string(),
        "name_with_namespace": format!("{} / {}", project.owner, project.repo),
        "default_branch": default_branch,
        "visibility": if project.owner.is_public() { "public" } else { "private" },
        "created_at": info.created_at,
        "archived": false,
        "empty_repo": default_branch.is_none(),
        "namespace": {
            "id": project.owner,
            "name": project.owner,
            "path": project.owner,
            "full_path": project.owner,
            "kind": "user",
        },
        "cfgstore": { "owner": project.owner, "repo_id": project.repo, "type": info.kind },
    }))
}

/// `GET projects`: every project the token may read — its owner's (all,
/// or those it names) and the public area's. Ids are the forms the token
/// resolves: a bare repoId for the owner's, `public/…` for the others.
fn projects(r: &Reader) -> Result<Response<Body>> {
    let (app, req, token) = (r.app, r.req, r.token);
    let public = crate::names::OwnerName::parse(crate::names::OwnerName::PUBLIC)?;
    let mut list = Vec::new();
    for owner in [&token.owner, &public] {
        for info in app.store.list_projects(Some(owner))? {
            let project = info.project_ref();
            if !token.covers(&project) {
                continue;
            }
            let id = if project.owner == token.owner {
                project.repo.to_string()
            } else {
                project.to_string()
            };
            list.push(project_json(app, &project, &id)?);
        }
    }
    paginated(req.parts, &req.query, &list)
}

/// `GET user`: the token's owner, GitLab-shaped, for `gl.auth()`.
fn user(token: &TokenRecord) -> Result<Response<Body>> {
    Ok(json(&serde_json::json!({
        "id": token.owner,
        "username": token.owner,
        "name": token.owner,
        "state": "active",
        "bot": false,
        "is_admin": false,
        "cfgstore": { "token_id": token.id, "token_name": token.name },
    })))
}

/// Standard base64 with padding (RFC 4648), for GitLab's `content` fields.
fn base64(bytes: &[u8]) -> String {
    const TABLE: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(TABLE[(n >> (18 - 6 * i)) as usize & 63] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn base64_matches_rfc_4648_vectors() {
        for (input, want) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(super::base64(input.as_bytes()), want);
        }
        assert_eq!(super::base64(&[0xff, 0xfe, 0x00]), "//4A");
    }

    #[test]
    fn text_or_bytes() {
        assert_eq!(
            super::content_type(b"{\"a\":1}"),
            "text/plain; charset=utf-8"
        );
        assert_eq!(
            super::content_type("café".as_bytes()),
            "text/plain; charset=utf-8"
        );
        assert_eq!(super::content_type(b"\xff\xfe"), "application/octet-stream");
        assert_eq!(super::content_type(b"a\0b"), "application/octet-stream");
    }
}
