//! The HTTP API: routing, authentication, dispatch.
//!
//! A request goes `Endpoint::parse` (on the raw, still-encoded path, so
//! `%2F` inside an id or file path never splits a segment) → `authenticate`
//! (once, before any handler) → an exhaustive `match` that calls one
//! handler → `finish` (ETag, `304`, `HEAD`). Handlers are synchronous: the
//! server runs `handle` on tokio's blocking pool, next to the store's
//! `std::fs` calls.
//!
//! The read API (SPEC §4, GITLAB-COMPAT.md) is mounted at
//! `/site-builder/api/erp-config` and at `/site-builder/api/erp-config/api/v4`.

pub mod admin;
pub mod read;
pub mod request;
pub mod response;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use bytes::Bytes;
use hyper::http::request::Parts;
use hyper::{Method, Response, StatusCode};
use time::OffsetDateTime;

use crate::auth::{self, FingerprintCheck, TokenRecord};
use crate::error::{Error, Result, Unauthorized};
use crate::store::tokens::BindOutcome;
use crate::store::Store;
use request::{decode_segment, Query};

/// Response bodies are built whole; the server wraps them for hyper.
pub type Body = Bytes;

/// Where the read API lives.
pub const READ_PREFIX: &str = "/site-builder/api/erp-config";

/// The clock, injectable so tests can stand at an expiry boundary.
pub type Clock = Arc<dyn Fn() -> OffsetDateTime + Send + Sync>;

/// Everything a request handler needs.
pub struct App {
    pub store: Arc<Store>,
    pub clock: Clock,
    pub sessions: SessionOptions,
    pub metrics: crate::metrics::Metrics,
    /// The URL clients reach us by (behind a proxy), for `Link` headers.
    pub external_url: Option<String>,
    /// Proxies whose `X-Forwarded-Proto`/`-Host` headers are believed.
    pub trusted_proxies: Vec<std::net::IpAddr>,
    /// Token uses not yet written to disk: MAC → last use.
    token_uses: Mutex<HashMap<String, OffsetDateTime>>,
    /// Recent failed logins per `user:{name}` and `ip:{addr}`.
    pub(crate) login_failures: Mutex<HashMap<String, Vec<OffsetDateTime>>>,
}

/// Session cookie settings and timeouts.
#[derive(Debug, Clone)]
pub struct SessionOptions {
    /// A session unused this long ends.
    pub idle_timeout: time::Duration,
    /// A session ends this long after login, used or not.
    pub absolute_timeout: time::Duration,
    /// Mark the cookie `Secure` (set when served over TLS, e.g. behind a
    /// TLS-terminating proxy).
    pub secure_cookie: bool,
}

impl Default for SessionOptions {
    fn default() -> Self {
        SessionOptions {
            idle_timeout: time::Duration::hours(2),
            absolute_timeout: time::Duration::hours(24),
            secure_cookie: false,
        }
    }
}

impl App {
    pub fn new(store: Arc<Store>) -> App {
        App::with_clock(store, Arc::new(OffsetDateTime::now_utc))
    }

    pub fn with_clock(store: Arc<Store>, clock: Clock) -> App {
        App {
            store,
            clock,
            sessions: SessionOptions::default(),
            metrics: crate::metrics::Metrics::default(),
            external_url: None,
            trusted_proxies: Vec::new(),
            token_uses: Mutex::new(HashMap::new()),
            login_failures: Mutex::new(HashMap::new()),
        }
    }

    /// Applies the daemon's configuration (sessions, proxy settings).
    pub fn configure(&mut self, config: &crate::config::Config) {
        let seconds = |d: std::time::Duration| time::Duration::seconds(d.as_secs() as i64);
        self.sessions = SessionOptions {
            idle_timeout: seconds(config.session_idle_timeout),
            absolute_timeout: seconds(config.session_absolute_timeout),
            secure_cookie: config.secure_cookies,
        };
        self.external_url = config.external_url.clone();
        self.trusted_proxies = config.trusted_proxies.clone();
    }

    /// `scheme://host[:port]` as the client sees us: the configured
    /// external URL, else what a trusted proxy forwarded, else `Host`.
    fn origin(&self, parts: &Parts, peer: Option<SocketAddr>) -> String {
        if let Some(url) = &self.external_url {
            return url.clone();
        }
        let trusted = peer.is_some_and(|p| self.trusted_proxies.contains(&p.ip()));
        let header = |name: &str| {
            parts
                .headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::trim)
        };
        let forwarded_host = header("x-forwarded-host").filter(|h| {
            trusted
                && !h.is_empty()
                && h.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b".-:[]_".contains(&b))
        });
        let scheme = match header("x-forwarded-proto") {
            Some("https") if trusted => "https",
            _ => "http",
        };
        let host = forwarded_host
            .or_else(|| response::host_header(parts))
            .unwrap_or("localhost");
        format!("{scheme}://{host}")
    }

    pub fn now(&self) -> OffsetDateTime {
        (self.clock)()
    }

    /// Writes collected `last_used_at` updates; the server calls this
    /// every few seconds and at shutdown.
    pub fn flush_token_uses(&self) -> Result<()> {
        let uses: Vec<_> = std::mem::take(&mut *self.token_uses.lock().expect("token uses"))
            .into_iter()
            .collect();
        self.store.record_token_use(&uses)
    }
}

/// Every route the API answers, parsed from method and raw path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    // Operations (no credentials; the daemon listens on localhost).
    Metrics,
    // The read API (token).
    Health,
    Project {
        id: String,
    },
    Branches {
        id: String,
    },
    Branch {
        id: String,
        branch: String,
    },
    Tree {
        id: String,
    },
    FileRaw {
        id: String,
        path: String,
    },
    FileMeta {
        id: String,
        path: String,
    },
    BlobRaw {
        id: String,
        sha: String,
    },
    Blob {
        id: String,
        sha: String,
    },
    Archive {
        id: String,
    },
    // The admin API (session cookie).
    Login,
    Logout,
    Me,
    AdminProjects,
    CreateProject,
    AdminBranches {
        id: String,
    },
    CreateBranch {
        id: String,
    },
    AdminTree {
        id: String,
        branch: String,
    },
    GetFile {
        id: String,
        branch: String,
        path: String,
    },
    PutFile {
        id: String,
        branch: String,
        path: String,
    },
    DeleteFile {
        id: String,
        branch: String,
        path: String,
    },
    History {
        id: String,
        branch: String,
    },
    SnapshotTree {
        id: String,
        branch: String,
        version: String,
    },
    SnapshotFile {
        id: String,
        branch: String,
        version: String,
        path: String,
    },
    Rollback {
        id: String,
        branch: String,
    },
    Tokens,
    CreateToken,
    UpdateToken {
        token: String,
    },
    RevokeToken {
        token: String,
    },
    RotateToken {
        token: String,
    },
    Audit,
}

/// Why a path is not an endpoint.
#[derive(Debug, PartialEq, Eq)]
pub enum RouteError {
    NotFound,
    MethodNotAllowed,
    /// A segment that does not decode (bad escape, not UTF-8).
    BadEncoding(String),
    /// An archive format other than tar.gz.
    UnsupportedArchive(String),
}

/// Where the admin API lives.
pub const ADMIN_PREFIX: &str = "/site-builder/api";

impl Endpoint {
    /// Routes on the raw path. Repeated slashes are tolerated (a client
    /// configured with a trailing slash sends `//api/v4`).
    pub fn parse(method: &Method, raw_path: &str) -> std::result::Result<Endpoint, RouteError> {
        if raw_path == "/metrics" {
            return if method == Method::GET || method == Method::HEAD {
                Ok(Endpoint::Metrics)
            } else {
                Err(RouteError::MethodNotAllowed)
            };
        }
        if let Some(rest) = raw_path.strip_prefix(READ_PREFIX) {
            if rest.is_empty() || rest.starts_with('/') {
                return parse_read(method, rest);
            }
        }
        match raw_path.strip_prefix(ADMIN_PREFIX) {
            Some(rest) if rest.starts_with('/') => parse_admin(method, rest),
            _ => Err(RouteError::NotFound),
        }
    }

    /// The route's name for logs and metrics: no ids, no paths, no secrets.
    pub fn name(&self) -> &'static str {
        match self {
            Endpoint::Metrics => "metrics",
            Endpoint::Health => "health",
            Endpoint::Project { .. } => "project",
            Endpoint::Branches { .. } => "branches",
            Endpoint::Branch { .. } => "branch",
            Endpoint::Tree { .. } => "tree",
            Endpoint::FileRaw { .. } => "file_raw",
            Endpoint::FileMeta { .. } => "file_meta",
            Endpoint::BlobRaw { .. } => "blob_raw",
            Endpoint::Blob { .. } => "blob",
            Endpoint::Archive { .. } => "archive",
            Endpoint::Login => "admin.login",
            Endpoint::Logout => "admin.logout",
            Endpoint::Me => "admin.me",
            Endpoint::AdminProjects => "admin.projects",
            Endpoint::CreateProject => "admin.project_create",
            Endpoint::AdminBranches { .. } => "admin.branches",
            Endpoint::CreateBranch { .. } => "admin.branch_create",
            Endpoint::AdminTree { .. } => "admin.tree",
            Endpoint::GetFile { .. } => "admin.file_get",
            Endpoint::PutFile { .. } => "admin.file_put",
            Endpoint::DeleteFile { .. } => "admin.file_delete",
            Endpoint::History { .. } => "admin.history",
            Endpoint::SnapshotTree { .. } => "admin.snapshot_tree",
            Endpoint::SnapshotFile { .. } => "admin.snapshot_file",
            Endpoint::Rollback { .. } => "admin.rollback",
            Endpoint::Tokens => "admin.tokens",
            Endpoint::CreateToken => "admin.token_create",
            Endpoint::UpdateToken { .. } => "admin.token_update",
            Endpoint::RevokeToken { .. } => "admin.token_revoke",
            Endpoint::RotateToken { .. } => "admin.token_rotate",
            Endpoint::Audit => "admin.audit",
        }
    }

    /// Read-API endpoints take a token; admin ones a session cookie.
    pub fn is_admin(&self) -> bool {
        self.name().starts_with("admin.")
    }
}

fn parse_read(method: &Method, rest: &str) -> std::result::Result<Endpoint, RouteError> {
    // The segments of the paths ERPs poll fit on the stack; deeper ones
    // (up to 512 in a 1 KB file path) go to the heap.
    const ON_STACK: usize = 32;
    let mut stack = [""; ON_STACK];
    let mut heap = Vec::new();
    let mut count = 0;
    for segment in rest.split('/').filter(|s| !s.is_empty()) {
        if count < ON_STACK {
            stack[count] = segment;
        } else {
            if heap.is_empty() {
                heap.extend_from_slice(&stack);
            }
            heap.push(segment);
        }
        count += 1;
    }
    let all: &[&str] = if count <= ON_STACK {
        &stack[..count]
    } else {
        &heap
    };
    let mounted_v4 = all.len() >= 2 && all[0] == "api" && all[1] == "v4";
    let segments = if mounted_v4 { &all[2..] } else { all };
    let endpoint = match segments {
        ["health"] if !mounted_v4 => Endpoint::Health,
        ["projects", id] => Endpoint::Project {
            id: decode_segment(id)?,
        },
        ["projects", id, "repository", rest @ ..] => {
            let id = decode_segment(id)?;
            match rest {
                ["branches"] => Endpoint::Branches { id },
                ["branches", branch] => Endpoint::Branch {
                    id,
                    branch: decode_segment(branch)?,
                },
                ["tree"] => Endpoint::Tree { id },
                ["files", path @ .., "raw"] if !path.is_empty() => Endpoint::FileRaw {
                    id,
                    path: decode_path(path)?,
                },
                ["files", path @ ..] if !path.is_empty() => Endpoint::FileMeta {
                    id,
                    path: decode_path(path)?,
                },
                ["blobs", sha, "raw"] => Endpoint::BlobRaw {
                    id,
                    sha: decode_segment(sha)?,
                },
                ["blobs", sha] => Endpoint::Blob {
                    id,
                    sha: decode_segment(sha)?,
                },
                ["archive"] | ["archive.tar.gz"] | ["archive.tgz"] => Endpoint::Archive { id },
                [other] if other.starts_with("archive.") => {
                    return Err(RouteError::UnsupportedArchive(
                        other.trim_start_matches("archive.").to_string(),
                    ))
                }
                _ => return Err(RouteError::NotFound),
            }
        }
        _ => return Err(RouteError::NotFound),
    };
    if method != Method::GET && method != Method::HEAD {
        return Err(RouteError::MethodNotAllowed);
    }
    Ok(endpoint)
}

fn parse_admin(method: &Method, rest: &str) -> std::result::Result<Endpoint, RouteError> {
    use Method as M;
    let segments: Vec<&str> = rest.split('/').filter(|s| !s.is_empty()).collect();
    let get = method == M::GET || method == M::HEAD;
    // (endpoint for this method, whether the path exists at all)
    let pick = |options: Vec<(bool, Endpoint)>| -> std::result::Result<Endpoint, RouteError> {
        options
            .into_iter()
            .find(|(ok, _)| *ok)
            .map(|(_, e)| e)
            .ok_or(RouteError::MethodNotAllowed)
    };
    match segments.as_slice() {
        ["user", "login"] => pick(vec![(method == M::POST, Endpoint::Login)]),
        ["user", "logout"] => pick(vec![(method == M::POST, Endpoint::Logout)]),
        ["user", "me"] => pick(vec![(get, Endpoint::Me)]),
        ["projects"] => pick(vec![
            (get, Endpoint::AdminProjects),
            (method == M::POST, Endpoint::CreateProject),
        ]),
        ["projects", id, "branches", rest @ ..] => {
            let id = decode_segment(id)?;
            match rest {
                [] => pick(vec![
                    (get, Endpoint::AdminBranches { id: id.clone() }),
                    (method == M::POST, Endpoint::CreateBranch { id }),
                ]),
                [branch, tail @ ..] => {
                    let branch = decode_segment(branch)?;
                    match tail {
                        ["tree"] => pick(vec![(get, Endpoint::AdminTree { id, branch })]),
                        ["history"] => pick(vec![(get, Endpoint::History { id, branch })]),
                        ["rollback"] => {
                            pick(vec![(method == M::POST, Endpoint::Rollback { id, branch })])
                        }
                        ["files", path @ ..] if !path.is_empty() => {
                            let path = decode_path(path)?;
                            pick(vec![
                                (
                                    get,
                                    Endpoint::GetFile {
                                        id: id.clone(),
                                        branch: branch.clone(),
                                        path: path.clone(),
                                    },
                                ),
                                (
                                    method == M::PUT,
                                    Endpoint::PutFile {
                                        id: id.clone(),
                                        branch: branch.clone(),
                                        path: path.clone(),
                                    },
                                ),
                                (
                                    method == M::DELETE,
                                    Endpoint::DeleteFile { id, branch, path },
                                ),
                            ])
                        }
                        ["snapshots", version, "tree"] => {
                            let version = decode_segment(version)?;
                            pick(vec![(
                                get,
                                Endpoint::SnapshotTree {
                                    id,
                                    branch,
                                    version,
                                },
                            )])
                        }
                        ["snapshots", version, "files", path @ ..] if !path.is_empty() => {
                            let (version, path) = (decode_segment(version)?, decode_path(path)?);
                            pick(vec![(
                                get,
                                Endpoint::SnapshotFile {
                                    id,
                                    branch,
                                    version,
                                    path,
                                },
                            )])
                        }
                        _ => Err(RouteError::NotFound),
                    }
                }
            }
        }
        ["tokens"] => pick(vec![
            (get, Endpoint::Tokens),
            (method == M::POST, Endpoint::CreateToken),
        ]),
        ["tokens", token] => {
            let token = decode_segment(token)?;
            pick(vec![
                (
                    method == M::PATCH,
                    Endpoint::UpdateToken {
                        token: token.clone(),
                    },
                ),
                (method == M::DELETE, Endpoint::RevokeToken { token }),
            ])
        }
        ["tokens", token, "rotate"] => pick(vec![(
            method == M::POST,
            Endpoint::RotateToken {
                token: decode_segment(token)?,
            },
        )]),
        ["audit"] => pick(vec![(get, Endpoint::Audit)]),
        _ => Err(RouteError::NotFound),
    }
}

/// A file path given as one encoded segment (`a%2Fb.json`, as clients
/// send it) or as several literal segments.
fn decode_path(segments: &[&str]) -> std::result::Result<String, RouteError> {
    let mut path = String::with_capacity(segments.iter().map(|s| s.len() + 1).sum());
    for (i, segment) in segments.iter().enumerate() {
        if i > 0 {
            path.push('/');
        }
        path = request::decode_segment_into(segment, path)?;
    }
    Ok(path)
}

/// Whether a request is a read-API `GET`/`HEAD`: served from the read
/// cache, with no write of its own (but a fingerprint's first bind).
pub fn is_fast_read(parts: &Parts) -> bool {
    let path = parts.uri.path();
    // An archive compresses a whole branch: that belongs on the blocking pool.
    matches!(parts.method, Method::GET | Method::HEAD)
        && path.starts_with(READ_PREFIX)
        && !path.contains("/repository/archive")
}

/// What a client may send before it is known: a login's JSON, or a stray
/// body on a read, fits easily.
pub const ANONYMOUS_BODY_LIMIT: u64 = 64 * 1024;

/// How large a body this request may send, decided before any of it is
/// read: up to `max` for an admin request with a valid session (checked
/// as its handler will check it again), `ANONYMOUS_BODY_LIMIT` for
/// everything else. Otherwise any client could make the daemon buffer
/// `max` bytes per connection without a credential. The second value is
/// the error for a body over the limit where the missing session is the
/// reason (401); `None` means the body is simply too large (413). Reads
/// the session file: call it off the async workers.
pub fn body_allowance(app: &App, parts: &Parts, max: u64) -> (u64, Option<Error>) {
    let anonymous = ANONYMOUS_BODY_LIMIT.min(max);
    match Endpoint::parse(&parts.method, parts.uri.path()) {
        Ok(endpoint) if endpoint.is_admin() && endpoint != Endpoint::Login => {
            let req = Request {
                parts,
                query: Query::default(),
                body: Bytes::new(),
                token: None,
                session: None,
                peer: None,
            };
            match admin::authenticate(app, &req) {
                Ok(_) => (max, None),
                Err(e) => (anonymous, Some(e)),
            }
        }
        _ => (anonymous, None),
    }
}

/// `scheme://host[:port]` of this request as the client addressed it.
#[derive(Debug, Clone)]
pub struct Origin(pub String);

/// One request as handlers see it.
pub struct Request<'a> {
    pub parts: &'a Parts,
    pub query: Query,
    pub body: Bytes,
    pub token: Option<Arc<TokenRecord>>,
    pub session: Option<admin::Session>,
    pub peer: Option<SocketAddr>,
}

impl Request<'_> {
    /// Client address and user agent for the audit trail.
    pub fn origin(&self) -> (Option<String>, Option<String>) {
        let agent = self
            .parts
            .headers
            .get(hyper::header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .map(|s| s.chars().take(200).collect());
        (self.peer.map(|p| p.ip().to_string()), agent)
    }

    /// Appends an audit record with this request's origin. It is called
    /// once the change it records is done and durable, so a failure here
    /// cannot undo the change: it is logged and counted, and the answer
    /// stays the truthful success. An error answer would invite the client
    /// to repeat a change that happened (and hide a token shown only once).
    pub fn audit(
        &self,
        app: &App,
        actor: &str,
        action: &str,
        target: impl Into<String>,
        details: serde_json::Value,
        durable: bool,
    ) {
        let mut record = crate::store::audit::AuditRecord::new(actor, action, target, details);
        (record.ip, record.user_agent) = self.origin();
        if let Err(e) = app.store.append_audit(&record, durable) {
            app.metrics.audit_failure();
            tracing::error!(error = %e, action, "could not append to the audit trail");
        }
    }
}

/// Handles one request, start to finish. Never panics on input: every
/// malformed path, header, query or body is a 4xx.
pub fn handle(
    app: &App,
    mut parts: Parts,
    body: Bytes,
    peer: Option<SocketAddr>,
) -> Response<Body> {
    let started = Instant::now();
    let route = Endpoint::parse(&parts.method, parts.uri.path());
    // Only lists (their `Link` headers) need the origin; files, which
    // ERPs poll all day, skip the header lookups and the allocation.
    if !matches!(
        route,
        Ok(Endpoint::FileRaw { .. }
            | Endpoint::BlobRaw { .. }
            | Endpoint::FileMeta { .. }
            | Endpoint::Health)
    ) {
        let origin = Origin(app.origin(&parts, peer));
        parts.extensions.insert(origin);
    }
    let parts = &parts;
    let route_name = route.as_ref().map(Endpoint::name).unwrap_or("unrouted");
    let mut who = None;
    let mut response = match &route {
        Err(RouteError::NotFound) => response::route_not_found(),
        Err(RouteError::MethodNotAllowed) => response::method_not_allowed(),
        Err(RouteError::BadEncoding(what)) => response::error(&Error::invalid(what.clone())),
        Err(RouteError::UnsupportedArchive(format)) => response::error(&Error::invalid(format!(
            "archive format {format:?} is not supported; use tar.gz"
        ))),
        Ok(endpoint) => match dispatch(app, parts, body, peer, endpoint, &mut who) {
            Ok(response) => response::finish(parts, response),
            Err(err) => {
                if let Some(reason) = failure_reason(&err, endpoint) {
                    app.metrics.auth_failure(reason);
                }
                response::error(&err)
            }
        },
    };
    if route.as_ref().is_ok_and(Endpoint::is_admin)
        || parts.uri.path().starts_with(ADMIN_PREFIX) && !parts.uri.path().starts_with(READ_PREFIX)
    {
        response::set_header(&mut response, "cache-control", "no-store");
    }
    let status = response.status();
    let elapsed = started.elapsed();
    app.metrics.request(route_name, status.as_u16(), elapsed);
    let elapsed_ms = elapsed.as_secs_f64() * 1000.0;
    let who = tracing::field::display(Who::or_dash(who.as_ref()));
    if status.is_server_error() {
        tracing::warn!(method = %parts.method, route = route_name, status = status.as_u16(), ms = elapsed_ms, who, "request");
    } else {
        tracing::info!(method = %parts.method, route = route_name, status = status.as_u16(), ms = elapsed_ms, who, "request");
    }
    response
}

/// Who made a request, for the request log: formatted only when a log
/// line is written, not on every request.
enum Who {
    Token(Arc<TokenRecord>),
    User(String),
}

impl Who {
    fn or_dash(who: Option<&Who>) -> impl std::fmt::Display + '_ {
        struct Shown<'a>(Option<&'a Who>);
        impl std::fmt::Display for Shown<'_> {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                match self.0 {
                    Some(Who::Token(record)) => write!(f, "token:{}", record.id),
                    Some(Who::User(name)) => write!(f, "user:{name}"),
                    None => f.write_str("-"),
                }
            }
        }
        Shown(who)
    }
}

fn dispatch(
    app: &App,
    parts: &Parts,
    body: Bytes,
    peer: Option<SocketAddr>,
    endpoint: &Endpoint,
    who: &mut Option<Who>,
) -> Result<Response<Body>> {
    // What other processes changed since the last request is in force now.
    app.store.revalidate()?;
    let query = Query::parse(parts.uri.query())?;
    let mut req = Request {
        parts,
        query,
        body,
        token: None,
        session: None,
        peer,
    };
    if endpoint.is_admin() {
        if *endpoint != Endpoint::Login {
            let session = admin::authenticate(app, &req)?;
            *who = Some(Who::User(session.user.name.to_string()));
            if !matches!(parts.method, Method::GET | Method::HEAD) {
                admin::check_csrf(app, &req, &session)?;
            }
            req.session = Some(session);
        }
        return admin::dispatch(app, &req, endpoint);
    }
    if *endpoint == Endpoint::Metrics {
        let size = app.store.size()?;
        let mut r = response::with_body(
            hyper::StatusCode::OK,
            "text/plain; version=0.0.4; charset=utf-8",
            app.metrics.render(&size).into_bytes(),
        );
        response::set_header(&mut r, "cache-control", "no-store");
        return Ok(r);
    }
    if *endpoint != Endpoint::Health {
        match authenticate(app, &req) {
            Ok(record) => {
                *who = Some(Who::Token(Arc::clone(&record)));
                req.token = Some(record);
            }
            Err(err) => {
                audit_denied(app, &req, &err, None);
                return Err(err);
            }
        }
    }
    let result = match endpoint {
        Endpoint::Health => read::health(app),
        Endpoint::Metrics => unreachable!("answered above"),
        Endpoint::Project { id } => read::project(app, &req, id),
        Endpoint::Branches { id } => read::branches(app, &req, id),
        Endpoint::Branch { id, branch } => read::branch(app, &req, id, branch),
        Endpoint::Tree { id } => read::tree(app, &req, id),
        Endpoint::FileRaw { id, path } => read::file_raw(app, &req, id, path),
        Endpoint::FileMeta { id, path } => read::file_meta(app, &req, id, path),
        Endpoint::BlobRaw { id, sha } => read::blob_raw(app, &req, id, sha),
        Endpoint::Blob { id, sha } => read::blob(app, &req, id, sha),
        Endpoint::Archive { id } => read::archive(app, &req, id),
        _ => unreachable!("admin endpoints are dispatched above"),
    };
    if let Err(err @ Error::Forbidden(_)) = &result {
        audit_denied(app, &req, err, req.token.as_deref());
    }
    result
}

/// The `reason` label of `cfgstore_auth_failures_total`, for refusals.
fn failure_reason(err: &Error, endpoint: &Endpoint) -> Option<&'static str> {
    Some(match err {
        Error::Unauthorized(_) if *endpoint == Endpoint::Login => "login",
        Error::Unauthorized(Unauthorized::MissingToken) => "missing_credentials",
        Error::Unauthorized(Unauthorized::UnknownToken) => "unknown_token",
        Error::Unauthorized(Unauthorized::Expired) => "expired",
        Error::Unauthorized(Unauthorized::FingerprintMissing) => "fingerprint_missing",
        Error::Unauthorized(Unauthorized::FingerprintMismatch) => "fingerprint_mismatch",
        Error::Forbidden(_) => "forbidden",
        Error::TooManyRequests { .. } => "throttled",
        _ => return None,
    })
}

/// Records a refused read-API request (not fsynced: see `store::audit`).
fn audit_denied(app: &App, req: &Request, err: &Error, token: Option<&TokenRecord>) {
    let action = match err {
        Error::Unauthorized(Unauthorized::FingerprintMismatch) => "fingerprint.mismatch",
        Error::Unauthorized(_) | Error::Forbidden(_) => "auth.denied",
        _ => return,
    };
    let actor = token
        .map(|t| format!("token:{}", t.id))
        .unwrap_or_else(|| "anonymous".into());
    let details = serde_json::json!({ "reason": err.to_string(), "route": req.parts.uri.path() });
    req.audit(
        app,
        &actor,
        action,
        req.parts.uri.path().to_string(),
        details,
        false,
    );
}

/// The token checks of SPEC §4, in order: a token must be present, known,
/// not revoked, not expired (401); then the fingerprint (401). Scope (403)
/// is checked per project by the handlers.
fn authenticate(app: &App, req: &Request) -> Result<Arc<TokenRecord>> {
    let parts = req.parts;
    let secret = presented_token(parts, &req.query)?
        .ok_or(Error::Unauthorized(Unauthorized::MissingToken))?;
    let record = app
        .store
        .token_by_secret(secret)?
        .ok_or(Error::Unauthorized(Unauthorized::UnknownToken))?;
    let now = app.now();
    record.check_valid(now)?;
    // Only a token that requires a fingerprint looks at the header: for
    // the others it is optional and may hold anything.
    let mismatch = || Error::Unauthorized(Unauthorized::FingerprintMismatch);
    let instance_id = match parts.headers.get(&X_INSTANCE_ID) {
        Some(v) if record.fingerprint_required => {
            // Two ids in one request could bind or match either: refuse.
            if parts.headers.get_all(&X_INSTANCE_ID).iter().count() > 1 {
                return Err(mismatch());
            }
            Some(v.to_str().map_err(|_| mismatch())?)
        }
        _ => None,
    };
    let key = app.store.server_key()?;
    if let FingerprintCheck::Bind(mac) = auth::check_fingerprint(key, &record, instance_id)? {
        // Binding takes the tokens lock and fsyncs; read requests run on the
        // async workers, so step off them for it.
        match blocking(|| app.store.bind_fingerprint(&record.mac, &mac))? {
            BindOutcome::Bound => {
                tracing::info!(token = %record.id, "fingerprint bound");
                let actor = format!("token:{}", record.id);
                blocking(|| {
                    req.audit(
                        app,
                        &actor,
                        "fingerprint.bind",
                        record.id.clone(),
                        serde_json::Value::Null,
                        true,
                    );
                    Ok(())
                })?;
            }
            BindOutcome::AlreadyBound => {}
            BindOutcome::Mismatch => {
                return Err(Error::Unauthorized(Unauthorized::FingerprintMismatch));
            }
        }
    }
    // Most requests come from a token already noted: no key to copy.
    let mut uses = app.token_uses.lock().expect("token uses");
    match uses.get_mut(&record.mac) {
        Some(last) => *last = now,
        None => {
            uses.insert(record.mac.clone(), now);
        }
    }
    drop(uses);
    app.metrics.token_use();
    Ok(record)
}

/// Runs blocking work from a request handler: on a multi-threaded tokio
/// worker it tells tokio first (`block_in_place`), so other connections
/// move to another worker; anywhere else it just runs.
fn blocking<T>(f: impl FnOnce() -> T) -> T {
    use tokio::runtime::{Handle, RuntimeFlavor};
    match Handle::try_current() {
        Ok(handle) if handle.runtime_flavor() == RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(f)
        }
        _ => f(),
    }
}

const PRIVATE_TOKEN: hyper::header::HeaderName =
    hyper::header::HeaderName::from_static("private-token");
const X_INSTANCE_ID: hyper::header::HeaderName =
    hyper::header::HeaderName::from_static("x-instance-id");

/// `PRIVATE-TOKEN`, `Authorization: Bearer` or `?private_token=`. Header
/// names are case-insensitive (hyper lowercases them). Credentials that
/// disagree (a repeated header, a header and a query parameter naming
/// different tokens) fail closed: which one a proxy or a client meant is
/// not ours to guess.
fn presented_token<'a>(parts: &'a Parts, query: &'a Query) -> Result<Option<&'a str>> {
    let bad = || Error::Unauthorized(Unauthorized::UnknownToken);
    let mut found: Option<&str> = None;
    // Records a token; a different one than seen before is an error.
    fn present<'a>(found: &mut Option<&'a str>, token: &'a str) -> Result<()> {
        match *found {
            Some(seen) if seen != token => Err(Error::Unauthorized(Unauthorized::UnknownToken)),
            _ => {
                *found = Some(token);
                Ok(())
            }
        }
    }
    for v in parts.headers.get_all(&PRIVATE_TOKEN) {
        present(&mut found, v.to_str().map_err(|_| bad())?.trim())?;
    }
    for v in parts.headers.get_all(hyper::header::AUTHORIZATION) {
        let v = v.to_str().map_err(|_| bad())?;
        let (scheme, token) = v.split_once(' ').ok_or_else(bad)?;
        if !scheme.eq_ignore_ascii_case("bearer") {
            return Err(bad());
        }
        present(&mut found, token.trim())?;
    }
    for token in query.get_all("private_token") {
        present(&mut found, token)?;
    }
    Ok(found)
}

/// An empty response with a status, for handlers' early answers.
pub fn status_only(status: StatusCode) -> Response<Body> {
    let mut r = Response::new(Bytes::new());
    *r.status_mut() = status;
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(path: &str) -> std::result::Result<Endpoint, RouteError> {
        Endpoint::parse(&Method::GET, path)
    }

    #[test]
    fn routing_table() {
        let p = "/site-builder/api/erp-config";
        for mount in [p.to_string(), format!("{p}/api/v4"), format!("{p}//api/v4")] {
            assert_eq!(
                parse(&format!("{mount}/projects/a.b")),
                Ok(Endpoint::Project { id: "a.b".into() })
            );
            assert_eq!(
                parse(&format!("{mount}/projects/acme%2Fa.b/repository/branches")),
                Ok(Endpoint::Branches {
                    id: "acme/a.b".into()
                })
            );
            assert_eq!(
                parse(&format!(
                    "{mount}/projects/a/repository/branches/release%2F2024.1"
                )),
                Ok(Endpoint::Branch {
                    id: "a".into(),
                    branch: "release/2024.1".into()
                })
            );
            assert_eq!(
                parse(&format!("{mount}/projects/a/repository/tree")),
                Ok(Endpoint::Tree { id: "a".into() })
            );
            assert_eq!(
                parse(&format!("{mount}/projects/a/repository/files/config%2Fapp%20settings%2Fcaf%C3%A9.json/raw")),
                Ok(Endpoint::FileRaw { id: "a".into(), path: "config/app settings/café.json".into() })
            );
            assert_eq!(
                parse(&format!("{mount}/projects/a/repository/files/key%2Erb")),
                Ok(Endpoint::FileMeta {
                    id: "a".into(),
                    path: "key.rb".into()
                })
            );
            assert_eq!(
                parse(&format!("{mount}/projects/a/repository/files/a+b")),
                Ok(Endpoint::FileMeta {
                    id: "a".into(),
                    path: "a+b".into()
                }),
                "'+' in a path is a plus, not a space"
            );
            assert_eq!(
                parse(&format!("{mount}/projects/a/repository/blobs/abc/raw")),
                Ok(Endpoint::BlobRaw {
                    id: "a".into(),
                    sha: "abc".into()
                })
            );
            assert_eq!(
                parse(&format!("{mount}/projects/a/repository/archive.tar.gz")),
                Ok(Endpoint::Archive { id: "a".into() })
            );
            assert_eq!(
                parse(&format!("{mount}/projects/a/repository/archive")),
                Ok(Endpoint::Archive { id: "a".into() })
            );
            assert_eq!(
                parse(&format!("{mount}/projects/a/repository/archive.zip")),
                Err(RouteError::UnsupportedArchive("zip".into()))
            );
            assert_eq!(
                parse(&format!("{mount}/projects/a/repository/nope")),
                Err(RouteError::NotFound)
            );
            assert_eq!(parse(&format!("{mount}/user")), Err(RouteError::NotFound));
        }
        assert_eq!(parse(&format!("{p}/health")), Ok(Endpoint::Health));
        assert_eq!(
            parse(&format!("{p}/api/v4/health")),
            Err(RouteError::NotFound)
        );
        assert_eq!(
            parse("/site-builder/api/erp-configX/health"),
            Err(RouteError::NotFound)
        );
        assert_eq!(parse("/health"), Err(RouteError::NotFound));
        assert!(matches!(
            parse(&format!("{p}/projects/%FF")),
            Err(RouteError::BadEncoding(_))
        ));
        assert!(matches!(
            parse(&format!("{p}/projects/%zz")),
            Err(RouteError::BadEncoding(_))
        ));
        assert_eq!(
            Endpoint::parse(&Method::POST, &format!("{p}/projects/a")),
            Err(RouteError::MethodNotAllowed)
        );
        assert_eq!(
            Endpoint::parse(
                &Method::HEAD,
                &format!("{p}/projects/a/repository/files/x/raw")
            ),
            Ok(Endpoint::FileRaw {
                id: "a".into(),
                path: "x".into()
            })
        );
    }

    /// File paths as deep as the router keeps on the stack, one deeper,
    /// and far deeper route alike (the segments move to the heap).
    #[test]
    fn deep_file_paths_route_like_shallow_ones() {
        let p = "/site-builder/api/erp-config";
        for depth in [1, 26, 27, 28, 29, 30, 31, 32, 33, 34, 200] {
            let path: Vec<String> = (0..depth).map(|i| format!("d{i}")).collect();
            let path = path.join("/");
            for mount in [p.to_string(), format!("{p}/api/v4")] {
                assert_eq!(
                    parse(&format!("{mount}/projects/a/repository/files/{path}/raw")),
                    Ok(Endpoint::FileRaw {
                        id: "a".into(),
                        path: path.clone()
                    }),
                    "{depth} under {mount}"
                );
                assert_eq!(
                    parse(&format!("{mount}/projects/a/repository/files/{path}")),
                    Ok(Endpoint::FileMeta {
                        id: "a".into(),
                        path: path.clone()
                    }),
                    "{depth} under {mount}"
                );
            }
        }
    }
}
