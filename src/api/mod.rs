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
    /// Token uses not yet written to disk: MAC → last use.
    token_uses: Mutex<HashMap<String, OffsetDateTime>>,
}

impl App {
    pub fn new(store: Arc<Store>) -> App {
        App::with_clock(store, Arc::new(OffsetDateTime::now_utc))
    }

    pub fn with_clock(store: Arc<Store>, clock: Clock) -> App {
        App {
            store,
            clock,
            token_uses: Mutex::new(HashMap::new()),
        }
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
    Health,
    Project { id: String },
    Branches { id: String },
    Branch { id: String, branch: String },
    Tree { id: String },
    FileRaw { id: String, path: String },
    FileMeta { id: String, path: String },
    BlobRaw { id: String, sha: String },
    Blob { id: String, sha: String },
    Archive { id: String },
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

impl Endpoint {
    /// Routes on the raw path. Repeated slashes are tolerated (a client
    /// configured with a trailing slash sends `//api/v4`).
    pub fn parse(method: &Method, raw_path: &str) -> std::result::Result<Endpoint, RouteError> {
        let rest = raw_path
            .strip_prefix(READ_PREFIX)
            .ok_or(RouteError::NotFound)?;
        if !rest.is_empty() && !rest.starts_with('/') {
            return Err(RouteError::NotFound);
        }
        let mut segments: Vec<&str> = rest.split('/').filter(|s| !s.is_empty()).collect();
        let mounted_v4 = segments.len() >= 2 && segments[0] == "api" && segments[1] == "v4";
        if mounted_v4 {
            segments.drain(..2);
        }
        let endpoint = match segments.as_slice() {
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

    /// The route's name for logs: no ids, no paths, no secrets.
    pub fn name(&self) -> &'static str {
        match self {
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
        }
    }

    fn needs_token(&self) -> bool {
        !matches!(self, Endpoint::Health)
    }
}

/// A file path given as one encoded segment (`a%2Fb.json`, as clients
/// send it) or, leniently, as several literal segments.
fn decode_path(segments: &[&str]) -> std::result::Result<String, RouteError> {
    let decoded: std::result::Result<Vec<String>, RouteError> =
        segments.iter().map(|s| decode_segment(s)).collect();
    Ok(decoded?.join("/"))
}

/// One request as handlers see it.
pub struct Request<'a> {
    pub parts: &'a Parts,
    pub query: Query,
    pub token: Option<TokenRecord>,
    pub peer: Option<SocketAddr>,
}

/// Handles one request, start to finish. Never panics on input: every
/// malformed path, header or query is a 4xx.
pub fn handle(app: &App, parts: &Parts, peer: Option<SocketAddr>) -> Response<Body> {
    let started = Instant::now();
    let route = Endpoint::parse(&parts.method, parts.uri.path());
    let route_name = route.as_ref().map(Endpoint::name).unwrap_or("unrouted");
    let mut token_id = None;
    let response = match route {
        Err(RouteError::NotFound) => response::route_not_found(),
        Err(RouteError::MethodNotAllowed) => response::method_not_allowed(),
        Err(RouteError::BadEncoding(what)) => response::error(&Error::invalid(what)),
        Err(RouteError::UnsupportedArchive(format)) => response::error(&Error::invalid(format!(
            "archive format {format:?} is not supported; use tar.gz"
        ))),
        Ok(endpoint) => match dispatch(app, parts, peer, &endpoint, &mut token_id) {
            Ok(response) => response::finish(parts, response),
            Err(err) => response::error(&err),
        },
    };
    let status = response.status();
    let elapsed_ms = started.elapsed().as_secs_f64() * 1000.0;
    let token = token_id.as_deref().unwrap_or("-");
    if status.is_server_error() {
        tracing::warn!(method = %parts.method, route = route_name, status = status.as_u16(), ms = elapsed_ms, token, "request");
    } else {
        tracing::info!(method = %parts.method, route = route_name, status = status.as_u16(), ms = elapsed_ms, token, "request");
    }
    response
}

fn dispatch(
    app: &App,
    parts: &Parts,
    peer: Option<SocketAddr>,
    endpoint: &Endpoint,
    token_id: &mut Option<String>,
) -> Result<Response<Body>> {
    let query = Query::parse(parts.uri.query())?;
    let token = if endpoint.needs_token() {
        let record = authenticate(app, parts, &query)?;
        *token_id = Some(record.id.clone());
        Some(record)
    } else {
        None
    };
    let req = Request {
        parts,
        query,
        token,
        peer,
    };
    match endpoint {
        Endpoint::Health => read::health(app),
        Endpoint::Project { id } => read::project(app, &req, id),
        Endpoint::Branches { id } => read::branches(app, &req, id),
        Endpoint::Branch { id, branch } => read::branch(app, &req, id, branch),
        Endpoint::Tree { id } => read::tree(app, &req, id),
        Endpoint::FileRaw { id, path } => read::file_raw(app, &req, id, path),
        Endpoint::FileMeta { id, path } => read::file_meta(app, &req, id, path),
        Endpoint::BlobRaw { id, sha } => read::blob_raw(app, &req, id, sha),
        Endpoint::Blob { id, sha } => read::blob(app, &req, id, sha),
        Endpoint::Archive { id } => read::archive(app, &req, id),
    }
}

/// The token checks of SPEC §4, in order: a token must be present, known,
/// not revoked, not expired (401); then the fingerprint (401). Scope (403)
/// is checked per project by the handlers.
fn authenticate(app: &App, parts: &Parts, query: &Query) -> Result<TokenRecord> {
    let secret =
        presented_token(parts, query)?.ok_or(Error::Unauthorized(Unauthorized::MissingToken))?;
    let record = app
        .store
        .token_by_secret(&secret)?
        .ok_or(Error::Unauthorized(Unauthorized::UnknownToken))?;
    let now = app.now();
    record.check_valid(now)?;
    let instance_id = match parts.headers.get("x-instance-id") {
        Some(v) => Some(
            v.to_str()
                .map_err(|_| Error::Unauthorized(Unauthorized::FingerprintMismatch))?,
        ),
        None => None,
    };
    let key = app.store.server_key()?;
    if let FingerprintCheck::Bind(mac) = auth::check_fingerprint(&key, &record, instance_id)? {
        match app.store.bind_fingerprint(&record.mac, &mac)? {
            BindOutcome::Bound => tracing::info!(token = %record.id, "fingerprint bound"),
            BindOutcome::AlreadyBound => {}
            BindOutcome::Mismatch => {
                return Err(Error::Unauthorized(Unauthorized::FingerprintMismatch))
            }
        }
    }
    app.token_uses
        .lock()
        .expect("token uses")
        .insert(record.mac.clone(), now);
    Ok(record)
}

/// `PRIVATE-TOKEN`, else `Authorization: Bearer`, else `?private_token=`.
/// Header names are case-insensitive (hyper lowercases them).
fn presented_token(parts: &Parts, query: &Query) -> Result<Option<String>> {
    let bad = || Error::Unauthorized(Unauthorized::UnknownToken);
    if let Some(v) = parts.headers.get("private-token") {
        return Ok(Some(v.to_str().map_err(|_| bad())?.trim().to_string()));
    }
    if let Some(v) = parts.headers.get(hyper::header::AUTHORIZATION) {
        let v = v.to_str().map_err(|_| bad())?;
        let (scheme, token) = v.split_once(' ').ok_or_else(bad)?;
        if scheme.eq_ignore_ascii_case("bearer") {
            return Ok(Some(token.trim().to_string()));
        }
        return Err(bad());
    }
    Ok(query.get("private_token").map(str::to_string))
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
}
