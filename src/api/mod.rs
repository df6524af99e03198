//! The HTTP API: one entry path for every request.
//!
//! A request goes, in order:
//! 1. [`admit`]: `route::Endpoint::parse` (once, into validated names), the
//!    store's freshness check (a change by another process is in force
//!    now), the query, then authentication (once): a token for the read
//!    API, the session cookie (and CSRF token when unsafe) for the admin
//!    API. The result, an [`Access`], pairs each endpoint with the
//!    principal its handler needs, and decides the body limit — all before
//!    a byte of the body is read.
//! 2. The server reads the body within that limit.
//! 3. [`respond`]: one exhaustive `match` over the `Access` calls one
//!    handler (`read.rs`, `admin.rs`, `session.rs`); `response::finish`
//!    adds the ETag, `304` and `HEAD` handling; one log line and the
//!    metrics close the request.
//!
//! Handlers are synchronous. The execution model (`server.rs`): read-API
//! GETs run inline on the async workers — they answer from the read cache
//! after at most a small file read, and the rare blocking step (a
//! fingerprint's first bind) steps aside with `block_in_place`; everything
//! else (admission of admin requests, which reads the session file, and
//! every handler that writes) runs on tokio's blocking pool.
//!
//! Mounts: the read API at `/site-builder/api/erp-config` (and `/api/v4`
//! below it), the admin API at `/site-builder/api`, session paths also at
//! `/user/…` on the root (`route.rs`).

pub mod admin;
pub mod app;
mod authn;
pub(crate) use authn::blocking;
pub mod poll;
pub mod read;
mod replay;
pub mod request;
pub mod response;
pub mod route;
pub mod session;
pub mod ui;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use hyper::http::request::Parts;
use hyper::{Method, Response, StatusCode};

pub use app::{App, Clock, SessionOptions};
pub use replay::Replay;
pub use route::{
    AdminEndpoint, Endpoint, ProjectId, ReadEndpoint, RouteError, UiEndpoint, ADMIN_PREFIX,
    READ_PREFIX,
};
pub use session::Session;

use crate::auth::TokenRecord;
use crate::error::{Error, Result, Unauthorized};
use crate::ops::Actor;
use request::Query;

/// Response bodies are built whole; the server wraps them for hyper.
pub type Body = Bytes;

/// What a client may send before it is known to hold a session: a login's
/// JSON, or a stray body on a read, fits easily.
pub const ANONYMOUS_BODY_LIMIT: u64 = 64 * 1024;

/// `scheme://host[:port]` of this request as the client addressed it
/// (kept in the request's extensions for the `Link` headers of lists).
#[derive(Debug, Clone)]
pub struct Origin(pub String);

/// One request as handlers see it.
pub struct Request<'a> {
    pub parts: &'a Parts,
    pub query: Query,
    pub body: Bytes,
    pub peer: Option<SocketAddr>,
    /// The client's address (`App::client_ip`: the forwarded one behind a
    /// trusted proxy).
    pub client_ip: Option<IpAddr>,
    /// The read cache's epoch after the store's change check (`prepare`).
    pub epoch: Option<u64>,
    /// The fleet-view visits its handler noted, when its answer may be
    /// given again (`replay`).
    pub(super) noted: Option<std::cell::RefCell<Vec<replay::Noted>>>,
    /// Its handler read the store beyond the read cache's pointers (a
    /// pinned version): its answer is not given again, since only the
    /// pointers are checked against the store.
    pub(super) beyond_pointers: std::cell::Cell<bool>,
}

impl Request<'_> {
    /// `base` as seen from this request's client: its address and agent,
    /// for the audit trail.
    pub fn actor(&self, base: Actor) -> Actor {
        let agent = self
            .parts
            .headers
            .get(hyper::header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        base.from_client(self.client_ip.map(|ip| ip.to_string()), agent)
    }
}

/// An endpoint with the principal its handler needs.
pub enum Access {
    Metrics,
    Health,
    Login,
    Read(Arc<TokenRecord>, ReadEndpoint),
    Admin(Box<Session>, AdminEndpoint),
    /// A UI page anyone may open (login, assets).
    UiPublic(UiEndpoint),
    /// A UI page or form of a signed-in user.
    Ui(Box<Session>, UiEndpoint),
}

/// A request routed and authenticated, its body not read yet. The request
/// head (`Parts`) stays with the caller, who hands it to `respond`: it is
/// borrowed, never moved, on the way through.
pub struct Admitted {
    started: Instant,
    route: &'static str,
    access: Access,
    query: Query,
    client_ip: Option<IpAddr>,
    /// The wait a read asked for (`poll.rs`), checked at admission.
    long_poll: Option<poll::LongPoll>,
    /// The read cache's epoch when it was admitted.
    epoch: Option<u64>,
    /// Asked to be answerable again (`offer_replay`): the fleet-view
    /// visits its handler noted.
    noting: Option<Vec<replay::Noted>>,
}

/// What admission gives: a request to serve once its body is in, or the
/// answer already (unknown route, bad query, refused credentials).
pub enum Admission {
    /// Boxed: an admitted request is much larger than an answer.
    Admitted(Box<Admitted>),
    Answered(Response<Body>),
}

impl Admitted {
    /// The largest body this request may send: `max` for a signed-in
    /// session, `ANONYMOUS_BODY_LIMIT` for everything else, so no client
    /// without a session can make the daemon buffer `max` bytes.
    pub fn body_limit(&self, max: u64) -> u64 {
        match self.access {
            Access::Admin(..) | Access::Ui(..) => max,
            _ => ANONYMOUS_BODY_LIMIT.min(max),
        }
    }
}

/// Step 1: route, check freshness and query, authenticate.
pub fn admit(app: &App, parts: &mut Parts, peer: Option<SocketAddr>) -> Admission {
    let started = Instant::now();
    let routed = Endpoint::parse(&parts.method, parts.uri.path());
    if let Ok(endpoint) = &routed {
        if needs_origin(endpoint) {
            let origin = Origin(app.origin(parts, peer));
            parts.extensions.insert(origin);
        }
    }
    let client_ip = app.client_ip(parts, peer);
    let mut req = Request {
        parts,
        query: Query::default(),
        body: Bytes::new(),
        peer,
        client_ip,
        epoch: None,
        noted: None,
        beyond_pointers: Default::default(),
    };
    let endpoint = match routed {
        Ok(endpoint) => endpoint,
        Err(RouteError::Invalid(what)) => {
            // Credentials first, even on a malformed name: a client
            // without them learns nothing, not even which names are valid.
            let err = credentials_for_path(app, &mut req)
                .err()
                .unwrap_or(Error::Invalid(what));
            let response = match ui::is_ui_path(req.parts.uri.path()) {
                true => ui::refused(req.parts, &err),
                false => error_response(app, "unrouted", &err),
            };
            return Admission::Answered(close(app, req.parts, "unrouted", None, started, response));
        }
        Err(err) => {
            let response = match ui::is_ui_path(req.parts.uri.path()) {
                // A page that does not exist, as a page.
                true => ui::route_error(err),
                false => route_error(err),
            };
            return Admission::Answered(close(app, req.parts, "unrouted", None, started, response));
        }
    };
    let route = endpoint.name();
    let admitted = authenticate(app, &mut req, endpoint).and_then(|access| {
        let long_poll = match &access {
            Access::Read(token, endpoint) => poll::requested(&req, token, endpoint)?,
            _ => None,
        };
        Ok((access, long_poll))
    });
    match admitted {
        Ok((access, long_poll)) => Admission::Admitted(Box::new(Admitted {
            started,
            route,
            access,
            query: req.query,
            client_ip,
            long_poll,
            epoch: req.epoch,
            noting: None,
        })),
        Err(err) => {
            let response = match route.starts_with("ui.") {
                // A browser without a session goes to the login page.
                true => {
                    count_refusal(app, route, &err);
                    ui::refused(req.parts, &err)
                }
                false => error_response(app, route, &err),
            };
            Admission::Answered(close(app, req.parts, route, None, started, response))
        }
    }
}

/// Step 3: the body is in; answer. With the answer, how to give it again
/// when the request was offered for that (`Admitted::offer_replay`) and
/// its answer qualifies (`replay`).
pub fn respond(
    app: &App,
    parts: &Parts,
    peer: Option<SocketAddr>,
    mut admitted: Admitted,
    body: Bytes,
) -> (Response<Body>, Option<Replay>) {
    let response = answer(app, parts, peer, &mut admitted, body);
    let response = admitted.close(app, parts, response);
    let replay = Replay::of(app, parts, admitted, &response);
    (response, replay)
}

/// The answer to an admitted request, without closing it: a long poll
/// (`server::long_poll`) answers again after each change until its answer
/// differs, then closes it with `Admitted::finish`.
pub fn answer(
    app: &App,
    parts: &Parts,
    peer: Option<SocketAddr>,
    admitted: &mut Admitted,
    body: Bytes,
) -> Response<Body> {
    let req = Request {
        parts,
        query: std::mem::take(&mut admitted.query),
        body,
        peer,
        client_ip: admitted.client_ip,
        epoch: admitted.epoch,
        noted: admitted.noting.take().map(std::cell::RefCell::new),
        beyond_pointers: Default::default(),
    };
    let result = dispatch(app, &req, &admitted.access);
    // Kept for the next answer of a long poll.
    admitted.query = req.query;
    if !req.beyond_pointers.get() {
        admitted.noting = req.noted.map(std::cell::RefCell::into_inner);
    }
    match result {
        Ok(response) => response::finish(parts, response),
        Err(err) => error_response(app, admitted.route, &err),
    }
}

/// The body could not be read (too large, too slow): answer with `err`.
pub fn refuse_body(app: &App, parts: &Parts, admitted: Admitted, err: &Error) -> Response<Body> {
    let response = error_response(app, admitted.route, err);
    admitted.close(app, parts, response)
}

impl Admitted {
    /// Asks `respond` for the way to give this answer again (`replay`).
    pub fn offer_replay(&mut self) {
        self.noting = Some(Vec::new());
    }

    /// `close` for an admitted request: its route, principal and clock.
    fn close(&self, app: &App, parts: &Parts, response: Response<Body>) -> Response<Body> {
        let access = Some(&self.access);
        close(app, parts, self.route, access, self.started, response)
    }

    /// Who a long poll is from, as far as parking goes: the token, the
    /// `X-Instance-Id` sent and the address (`poll::MAX_PARKED_PER_CLIENT`).
    pub fn poll_client(&self, parts: &Parts) -> String {
        let token = match &self.access {
            Access::Read(token, _) => token.id.as_str(),
            _ => "",
        };
        let instance = parts
            .headers
            .get(&authn::X_INSTANCE_ID)
            .map(|v| v.as_bytes())
            .unwrap_or_default();
        let address = self.client_ip.map(|ip| ip.to_string()).unwrap_or_default();
        format!("{token}\n{}\n{address}", String::from_utf8_lossy(instance))
    }

    /// The wait this read asked for, if it may be held.
    pub fn long_poll(&self) -> Option<&poll::LongPoll> {
        self.long_poll.as_ref()
    }

    /// A long poll woken after a wait: its token is checked again (revoked,
    /// expired or bound elsewhere meanwhile), so nothing reaches a client
    /// its token no longer allows. The refusal, when there is one.
    pub fn reauthenticate(
        &mut self,
        app: &App,
        parts: &Parts,
        peer: Option<SocketAddr>,
    ) -> Option<Response<Body>> {
        let Access::Read(token, _) = &mut self.access else {
            return None;
        };
        let req = Request {
            parts,
            query: std::mem::take(&mut self.query),
            body: Bytes::new(),
            peer,
            client_ip: self.client_ip,
            epoch: self.epoch,
            noted: None,
            beyond_pointers: Default::default(),
        };
        let checked = authn::token(app, &req);
        self.query = req.query;
        match checked {
            Ok(fresh) => {
                *token = fresh;
                None
            }
            Err(err) => Some(error_response(app, self.route, &err)),
        }
    }

    /// Closes a long poll with its last answer. Its time in the latency
    /// metrics is that of the last answer, not of the wait.
    pub fn finish(
        mut self,
        app: &App,
        parts: &Parts,
        answered_in: std::time::Duration,
        response: Response<Body>,
    ) -> Response<Body> {
        self.started = Instant::now() - answered_in;
        self.close(app, parts, response)
    }
}

/// Whether a request is a read-API `GET`/`HEAD` answered from the read
/// cache (no write of its own, but a fingerprint's first bind): the
/// server runs those inline on its async workers.
pub fn is_fast_read(parts: &Parts) -> bool {
    let path = parts.uri.path();
    // An archive compresses a whole branch: that belongs on the blocking pool.
    matches!(parts.method, Method::GET | Method::HEAD)
        && path.starts_with(READ_PREFIX)
        && !path.contains("/repository/archive")
}

/// Only lists (their `Link` headers) need the origin; files, which ERPs
/// poll all day, skip the header lookups and the allocation.
fn needs_origin(endpoint: &Endpoint) -> bool {
    !matches!(
        endpoint,
        Endpoint::Health
            | Endpoint::Metrics
            | Endpoint::Read(
                ReadEndpoint::FileRaw { .. }
                    | ReadEndpoint::BlobRaw { .. }
                    | ReadEndpoint::FileMeta { .. }
                    | ReadEndpoint::Blob { .. }
            )
    )
}

/// What every request does before its credentials are looked at.
fn prepare(app: &App, req: &mut Request) -> Result<()> {
    // What other processes changed since the last request is in force now.
    req.epoch = app.store.revalidate()?;
    req.query = Query::parse(req.parts.uri.query())?;
    Ok(())
}

fn authenticate(app: &App, req: &mut Request, endpoint: Endpoint) -> Result<Access> {
    prepare(app, req)?;
    Ok(match endpoint {
        Endpoint::Metrics => Access::Metrics,
        Endpoint::Health => Access::Health,
        Endpoint::Login => Access::Login,
        Endpoint::Read(read) => Access::Read(authn::token(app, req)?, read),
        Endpoint::Admin(admin) => {
            let session = session::authenticate(app, req.parts)?;
            if !matches!(req.parts.method, Method::GET | Method::HEAD) {
                if let Err(err) = session::check_csrf(app, req.parts, &session) {
                    authn::record_denied(app, req, &session.actor(req), &err);
                    return Err(err);
                }
            }
            Access::Admin(Box::new(session), admin)
        }
        Endpoint::Ui(ui) if ui.is_public() => Access::UiPublic(ui),
        Endpoint::Ui(ui) => {
            let session = session::authenticate(app, req.parts)?;
            if !matches!(req.parts.method, Method::GET | Method::HEAD) {
                // A form from another site is refused before its body is
                // read; the CSRF token in the body is checked next.
                let refusal = "a form sent from another site is refused";
                if let Err(err) = session::same_origin(app, req.parts, req.peer, refusal) {
                    authn::record_denied(app, req, &session.actor(req), &err);
                    return Err(err);
                }
            }
            Access::Ui(Box::new(session), ui)
        }
    })
}

/// The credentials the API under this path takes, checked (for a path
/// that names no valid endpoint, whose answer depends on them).
fn credentials_for_path(app: &App, req: &mut Request) -> Result<()> {
    prepare(app, req)?;
    let path = req.parts.uri.path();
    if path.starts_with(READ_PREFIX) {
        authn::token(app, req).map(drop)
    } else if path.starts_with(ADMIN_PREFIX) || path.starts_with("/user/") {
        session::authenticate(app, req.parts).map(drop)
    } else {
        Ok(())
    }
}

/// The one exhaustive dispatch: every access to its handler.
fn dispatch(app: &App, req: &Request, access: &Access) -> Result<Response<Body>> {
    let (result, actor) = match access {
        Access::Metrics => return metrics(app),
        Access::Health => return read::health(app),
        Access::Login => return session::login(app, req),
        Access::Read(token, endpoint) => (
            read::dispatch(app, req, token, endpoint),
            Actor::token(token.id.clone()),
        ),
        Access::Admin(session, endpoint) => (
            admin::dispatch(app, req, session, endpoint),
            Actor::user(session.user.name.clone(), Vec::new()),
        ),
        // The UI answers its errors with pages of its own.
        Access::UiPublic(endpoint) => return Ok(ui::public(app, req, endpoint)),
        Access::Ui(session, endpoint) => return Ok(ui::signed_in(app, req, session, endpoint)),
    };
    if let Err(err @ Error::Forbidden(_)) = &result {
        authn::record_denied(app, req, &req.actor(actor), err);
    }
    result
}

/// `GET /metrics`: counters, and the store's size as last counted.
fn metrics(app: &App) -> Result<Response<Body>> {
    let size = app.store.size()?;
    let audit_failures =
        crate::ops::audit::AUDIT_FAILURES.load(std::sync::atomic::Ordering::Relaxed);
    let mut text = app.metrics.render(&size, audit_failures);
    let (parked, wakes) = app.changes.counts();
    text.push_str(&format!(
        "# HELP cfgstore_long_polls_parked Long polls waiting for a change now.\n# TYPE cfgstore_long_polls_parked gauge\ncfgstore_long_polls_parked {parked}\n\
         # HELP cfgstore_long_poll_wakes_total Long polls woken by a change of what they wait on.\n# TYPE cfgstore_long_poll_wakes_total counter\ncfgstore_long_poll_wakes_total {wakes}\n"
    ));
    let mut r = response::with_body(
        StatusCode::OK,
        "text/plain; version=0.0.4; charset=utf-8",
        text.into_bytes(),
    );
    response::set_header(&mut r, "cache-control", "no-store");
    Ok(r)
}

fn route_error(err: RouteError) -> Response<Body> {
    match err {
        RouteError::NotFound => response::route_not_found(),
        RouteError::MethodNotAllowed(allowed) => response::method_not_allowed(allowed),
        RouteError::Invalid(what) => response::error(&Error::Invalid(what)),
        RouteError::UnsupportedArchive(format) => response::error(&Error::invalid(format!(
            "archive format {format:?} is not supported; use tar.gz"
        ))),
    }
}

fn error_response(app: &App, route: &'static str, err: &Error) -> Response<Body> {
    count_refusal(app, route, err);
    response::error(err)
}

/// Counts a refusal in `cfgstore_auth_failures_total`.
fn count_refusal(app: &App, route: &'static str, err: &Error) {
    if let Some(reason) = failure_reason(err, route) {
        app.metrics.auth_failure(reason);
    }
}

/// The `reason` label of `cfgstore_auth_failures_total`, for refusals.
fn failure_reason(err: &Error, route: &'static str) -> Option<&'static str> {
    Some(match err {
        Error::Unauthorized(_) if route == "admin.login" => "login",
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

const PRIVATE: hyper::header::HeaderValue = hyper::header::HeaderValue::from_static("private");
const NO_STORE: hyper::header::HeaderValue = hyper::header::HeaderValue::from_static("no-store");
const VARY_TOKEN: hyper::header::HeaderValue =
    hyper::header::HeaderValue::from_static("PRIVATE-TOKEN");

/// Caching headers, the request log line and the metrics of an answer.
fn close(
    app: &App,
    parts: &Parts,
    route: &'static str,
    access: Option<&Access>,
    started: Instant,
    mut response: Response<Body>,
) -> Response<Body> {
    let path = parts.uri.path();
    let headers = response.headers_mut();
    if path.starts_with(READ_PREFIX) {
        // Per token: a shared cache must neither keep it nor hand one
        // token's answer to another.
        headers.insert(hyper::header::CACHE_CONTROL, PRIVATE);
        headers.insert(hyper::header::VARY, VARY_TOKEN);
    } else if !headers.contains_key(hyper::header::CACHE_CONTROL) {
        // Admin answers and UI pages; the UI's content-hashed assets set
        // their own (immutable).
        headers.insert(hyper::header::CACHE_CONTROL, NO_STORE);
    }
    let status = response.status();
    count_and_log(app, &parts.method, route, status, started, Who(access));
    response
}

/// What ends every request, answered in full or again (`replay`): the
/// metrics and the log line.
fn count_and_log(
    app: &App,
    method: &Method,
    route: &'static str,
    status: StatusCode,
    started: Instant,
    who: impl std::fmt::Display,
) {
    let elapsed = started.elapsed();
    app.metrics.request(route, status.as_u16(), elapsed);
    // Rounded to the microsecond: `ms=0.412`, not `ms=0.41149300000000005`.
    let ms = (elapsed.as_secs_f64() * 1e6).round() / 1e3;
    let who = tracing::field::display(who);
    if status.is_server_error() {
        tracing::warn!(method = %method, route, status = status.as_u16(), ms, who, "request");
    } else {
        tracing::info!(method = %method, route, status = status.as_u16(), ms, who, "request");
    }
}

/// Who made a request, for the request log: formatted only when a log
/// line is written, not on every request.
struct Who<'a>(Option<&'a Access>);

/// A read token, for the request log.
struct TokenWho<'a>(&'a TokenRecord);

impl std::fmt::Display for TokenWho<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "token:{}", self.0.id)
    }
}

impl std::fmt::Display for Who<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            Some(Access::Read(token, _)) => TokenWho(token).fmt(f),
            Some(Access::Admin(session, _) | Access::Ui(session, _)) => {
                write!(f, "user:{}", session.user.name)
            }
            _ => f.write_str("-"),
        }
    }
}

/// An empty response with a status, for handlers' early answers.
pub fn status_only(status: StatusCode) -> Response<Body> {
    let mut r = Response::new(Bytes::new());
    *r.status_mut() = status;
    r
}
