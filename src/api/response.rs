//! Building responses: JSON bodies, the one error → status table,
//! GitLab-style pagination, and the ETag / `304` / `HEAD` finishing step.

use bytes::Bytes;
use hyper::header::{self, HeaderName, HeaderValue, IntoHeaderName};
use hyper::http::request::Parts;
use hyper::{Method, Response, StatusCode};
use serde::Serialize;

use super::request::Query;
use super::Body;
use crate::error::{Error, Unauthorized};

pub const JSON: &str = "application/json";

/// A 200 response with a JSON body.
pub fn json(value: &impl Serialize) -> Response<Body> {
    let bytes = serde_json::to_vec(value).expect("response values serialise");
    with_body(StatusCode::OK, JSON, bytes)
}

pub fn with_body(
    status: StatusCode,
    content_type: &'static str,
    bytes: impl Into<Bytes>,
) -> Response<Body> {
    let mut r = Response::new(bytes.into());
    *r.status_mut() = status;
    // Room for every header an answer gets (a file: type, length, ETag,
    // two GitLab ids, caching, Vary) without the map growing and rehashing.
    *r.headers_mut() = hyper::HeaderMap::with_capacity(12);
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    r
}

/// Sets a header whose value we built ourselves; a value that is not a
/// valid header (it cannot be, but never panic on it) is skipped. Names
/// on the read path are the constants below (no parsing per request).
pub fn set_header(r: &mut Response<Body>, name: impl IntoHeaderName, value: &str) {
    if let Ok(v) = HeaderValue::from_str(value) {
        r.headers_mut().insert(name, v);
    }
}

/// Sets a header from bytes shared with a cache: no copy.
pub fn set_shared_header(r: &mut Response<Body>, name: impl IntoHeaderName, value: Bytes) {
    if let Ok(v) = HeaderValue::from_maybe_shared(value) {
        r.headers_mut().insert(name, v);
    }
}

pub const X_GITLAB_BLOB_ID: HeaderName = HeaderName::from_static("x-gitlab-blob-id");
pub const X_GITLAB_COMMIT_ID: HeaderName = HeaderName::from_static("x-gitlab-commit-id");

/// The one place errors become statuses, for the API's JSON and the web
/// UI's pages alike: the status, the message and a stable code. No `_ =>`
/// arm: a new variant must be given its status here.
pub fn describe(err: &Error) -> (StatusCode, String, &'static str) {
    match err {
        Error::NotFound { what, .. } | Error::UnknownRef { what, .. } => (
            StatusCode::NOT_FOUND,
            format!("404 {} Not Found", title(what)),
            "NOT_FOUND",
        ),
        Error::Invalid(msg) => (
            StatusCode::BAD_REQUEST,
            format!("400 Bad request - {msg}"),
            "BAD_REQUEST",
        ),
        Error::Unauthorized(Unauthorized::FingerprintMismatch) => (
            StatusCode::UNAUTHORIZED,
            "401 FINGERPRINT_MISMATCH".to_string(),
            "FINGERPRINT_MISMATCH",
        ),
        Error::Unauthorized(Unauthorized::FingerprintMissing) => (
            StatusCode::UNAUTHORIZED,
            "401 Unauthorized".to_string(),
            "FINGERPRINT_REQUIRED",
        ),
        Error::Unauthorized(
            Unauthorized::MissingToken | Unauthorized::UnknownToken | Unauthorized::Expired,
        ) => (
            StatusCode::UNAUTHORIZED,
            "401 Unauthorized".to_string(),
            "UNAUTHORIZED",
        ),
        Error::Forbidden(_) => (
            StatusCode::FORBIDDEN,
            "403 Forbidden".to_string(),
            "FORBIDDEN",
        ),
        Error::Conflict(msg) => (
            StatusCode::CONFLICT,
            format!("409 Conflict - {msg}"),
            "CONFLICT",
        ),
        Error::Busy(_) => (
            StatusCode::SERVICE_UNAVAILABLE,
            "503 Service Unavailable - another writer holds the branch; retry shortly".to_string(),
            "BUSY",
        ),
        Error::TooManyRequests { .. } => (
            StatusCode::TOO_MANY_REQUESTS,
            "429 Too Many Requests".to_string(),
            "TOO_MANY_REQUESTS",
        ),
        Error::TooLarge(msg) => (
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("413 Payload Too Large - {msg}"),
            "TOO_LARGE",
        ),
        Error::Unprocessable { .. } => (
            StatusCode::UNPROCESSABLE_ENTITY,
            format!("422 Unprocessable Entity - {err}"),
            "UNPROCESSABLE",
        ),
        Error::UnsupportedMediaType(msg) => (
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!("415 Unsupported Media Type - {msg}"),
            "UNSUPPORTED_MEDIA_TYPE",
        ),
        Error::TimedOut(msg) => (
            StatusCode::REQUEST_TIMEOUT,
            format!("408 Request Timeout - {msg}"),
            "TIMEOUT",
        ),
        Error::Io { .. } if err.is_storage_full() => {
            // RELIABILITY.md: a full disk degrades writes to a clear 507;
            // the detail (which path) goes to the log only.
            tracing::warn!(error = %err, "storage full");
            (
                StatusCode::INSUFFICIENT_STORAGE,
                "507 Insufficient Storage - the server's disk is full; retry later".to_string(),
                "INSUFFICIENT_STORAGE",
            )
        }
        Error::Unavailable { .. } => {
            // Where the database is and what it said go to the log only.
            tracing::warn!(error = %err, "store unavailable");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                "503 Service Unavailable - the store is unavailable; retry shortly".to_string(),
                "UNAVAILABLE",
            )
        }
        Error::Corrupt { .. } | Error::Io { .. } => {
            // The detail (paths, OS errors) goes to the log, never to the client.
            tracing::warn!(error = %err, "storage error");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "500 Internal Server Error".to_string(),
                "INTERNAL",
            )
        }
    }
}

/// An error as the API's JSON answer.
pub fn error(err: &Error) -> Response<Body> {
    let (status, message, code) = describe(err);
    let mut r = match err {
        // GitLab's message, and a hint for the person reading it: the
        // walkthrough's most common slip is `ref=master` on a `main` project.
        Error::UnknownRef {
            reference,
            branches,
            ..
        } => {
            let hint = match branches.as_slice() {
                [] => format!("no branch or version {reference:?}: the project has no branches"),
                _ => format!(
                    "no branch or version {reference:?}; the branches are: {}",
                    branches.join(", ")
                ),
            };
            let body = serde_json::json!({ "message": message, "code": code, "hint": hint });
            with_body(
                status,
                JSON,
                serde_json::to_vec(&body).expect("error body serialises"),
            )
        }
        // Every problem apart, for a UI to list beside the editor.
        Error::Unprocessable { path, problems } => {
            let body = serde_json::json!({
                "message": message, "code": code, "path": path, "errors": problems,
            });
            with_body(
                status,
                JSON,
                serde_json::to_vec(&body).expect("error body serialises"),
            )
        }
        _ => error_body(status, &message, code),
    };
    match err {
        Error::Busy(_) => set_header(&mut r, "retry-after", "1"),
        Error::Unavailable { .. } => set_header(&mut r, "retry-after", "2"),
        Error::TooManyRequests { retry_after } => {
            set_header(&mut r, "retry-after", &retry_after.to_string())
        }
        _ => {}
    }
    r
}

fn error_body(status: StatusCode, message: &str, code: &str) -> Response<Body> {
    let body = serde_json::json!({ "message": message, "code": code });
    with_body(
        status,
        JSON,
        serde_json::to_vec(&body).expect("error body serialises"),
    )
}

pub fn route_not_found() -> Response<Body> {
    error_body(StatusCode::NOT_FOUND, "404 Not Found", "NOT_FOUND")
}

/// A 405 whose `Allow` names the methods the path really has.
pub fn method_not_allowed(allowed: super::route::Methods) -> Response<Body> {
    let mut r = error_body(
        StatusCode::METHOD_NOT_ALLOWED,
        "405 Method Not Allowed",
        "METHOD_NOT_ALLOWED",
    );
    set_header(&mut r, "allow", &allowed.allow_header());
    r
}

fn title(what: &str) -> String {
    let mut chars = what.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

/// GitLab pagination, only when asked for (SPEC §4): with `page` or
/// `per_page` the list is cut into pages with `Link` and `X-*` headers;
/// with neither, every item comes back in one response.
/// The `page` and `per_page` asked for (defaults 1 and 20, at most 100).
fn page_and_size(query: &Query) -> crate::Result<(u64, u64)> {
    let per_page = query
        .number("per_page")?
        .filter(|&n| n > 0)
        .unwrap_or(20)
        .min(100);
    let page = query.number("page")?.filter(|&n| n > 0).unwrap_or(1);
    Ok((page, per_page))
}

/// Which of `total` items `paginated` answers: all of them unless
/// `page` or `per_page` is given.
pub fn page_range(query: &Query, total: usize) -> crate::Result<std::ops::Range<usize>> {
    if !(query.has("page") || query.has("per_page")) {
        return Ok(0..total);
    }
    let (page, per_page) = page_and_size(query)?;
    let total = total as u64;
    let start = ((page - 1).saturating_mul(per_page)).min(total);
    let end = (start + per_page).min(total);
    Ok(start as usize..end as usize)
}

pub fn paginated<T: Serialize>(
    parts: &Parts,
    query: &Query,
    items: &[T],
) -> crate::Result<Response<Body>> {
    let total = items.len() as u64;
    let asked = query.has("page") || query.has("per_page");
    if !asked {
        let mut r = json(&items);
        set_header(&mut r, "x-total", &total.to_string());
        set_header(&mut r, "x-total-pages", "1");
        set_header(&mut r, "x-page", "1");
        set_header(&mut r, "x-per-page", &total.max(1).to_string());
        return Ok(r);
    }
    let (page, per_page) = page_and_size(query)?;
    let pages = total.div_ceil(per_page).max(1);
    let served = page_range(query, items.len())?;
    let mut r = json(&&items[served]);
    let base = request_url_without_query(parts);
    let link = |p: u64, rel: &str| format!("<{base}?{}>; rel=\"{rel}\"", query.with_page(p));
    let mut links = Vec::new();
    if page > 1 {
        links.push(link((page - 1).min(pages), "prev"));
    }
    if page < pages {
        links.push(link(page + 1, "next"));
    }
    links.push(link(1, "first"));
    links.push(link(pages, "last"));
    set_header(&mut r, "link", &links.join(", "));
    set_header(&mut r, "x-total", &total.to_string());
    set_header(&mut r, "x-total-pages", &pages.to_string());
    set_header(&mut r, "x-page", &page.to_string());
    set_header(&mut r, "x-per-page", &per_page.to_string());
    set_header(
        &mut r,
        "x-next-page",
        &if page < pages {
            (page + 1).to_string()
        } else {
            String::new()
        },
    );
    set_header(
        &mut r,
        "x-prev-page",
        &if page > 1 {
            (page - 1).to_string()
        } else {
            String::new()
        },
    );
    Ok(r)
}

/// The absolute URL the client used, without its query: scheme, the Host
/// it sent, and the raw path (so the mount, `/api/v4` or not, is kept).
fn request_url_without_query(parts: &Parts) -> String {
    let origin = match parts.extensions.get::<super::Origin>() {
        Some(origin) => origin.0.clone(),
        None => format!("http://{}", host_header(parts).unwrap_or("localhost")),
    };
    format!("{origin}{}", parts.uri.path())
}

/// The `Host` header, if it is a plausible host[:port].
pub fn host_header(parts: &Parts) -> Option<&str> {
    parts
        .headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .filter(|h| {
            !h.is_empty()
                && h.len() <= 255
                && h.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b".-:[]_".contains(&b))
        })
}

/// Finishes a successful response: an `ETag` (the handler's, or a digest of
/// the body), `304` when `If-None-Match` matches, and no body for `HEAD`
/// (with the `Content-Length` a `GET` would have).
pub fn finish(parts: &Parts, mut r: Response<Body>) -> Response<Body> {
    if r.status() != StatusCode::OK {
        return r;
    }
    let bytes = std::mem::take(r.body_mut());
    if !r.headers().contains_key(header::ETAG) {
        let tag = format!("\"{}\"", &blake3::hash(&bytes).to_hex()[..32]);
        set_header(&mut r, header::ETAG, &tag);
    }
    if let Some(inm) = parts
        .headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
    {
        let etag = r
            .headers()
            .get(header::ETAG)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        if inm
            .split(',')
            .map(str::trim)
            .any(|t| t == "*" || t == etag || t.strip_prefix("W/") == Some(etag))
        {
            let mut not_modified = super::status_only(StatusCode::NOT_MODIFIED);
            if let Some(tag) = r.headers_mut().remove(header::ETAG) {
                not_modified.headers_mut().insert(header::ETAG, tag);
            }
            return not_modified;
        }
    }
    r.headers_mut()
        .insert(header::CONTENT_LENGTH, HeaderValue::from(bytes.len()));
    if parts.method != Method::HEAD {
        *r.body_mut() = bytes;
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_table() {
        let cases: Vec<(Error, u16, &str)> = vec![
            (Error::not_found("file", "x"), 404, "404 File Not Found"),
            (Error::not_found("branch", "x"), 404, "404 Branch Not Found"),
            (
                Error::not_found("project", "x"),
                404,
                "404 Project Not Found",
            ),
            (Error::not_found("tree", "x"), 404, "404 Tree Not Found"),
            (
                Error::Unauthorized(Unauthorized::Expired),
                401,
                "401 Unauthorized",
            ),
            (
                Error::Unauthorized(Unauthorized::FingerprintMismatch),
                401,
                "401 FINGERPRINT_MISMATCH",
            ),
            (Error::Forbidden("x".into()), 403, "403 Forbidden"),
            (Error::invalid("bad"), 400, "400 Bad request - bad"),
            (Error::Conflict("c".into()), 409, "409 Conflict - c"),
            (
                Error::Busy("b".into()),
                503,
                "503 Service Unavailable - another writer holds the branch; retry shortly",
            ),
            (
                Error::Unavailable {
                    place: "postgresql://cfgstore@/secret/path".into(),
                    detail: "connection refused".into(),
                },
                503,
                "503 Service Unavailable - the store is unavailable; retry shortly",
            ),
            (
                Error::corrupt("/secret/path", "detail"),
                500,
                "500 Internal Server Error",
            ),
            (
                Error::io("/secret/path", std::io::Error::other("disk")),
                500,
                "500 Internal Server Error",
            ),
            (
                Error::io(
                    "/secret/path",
                    std::io::Error::from_raw_os_error(libc::ENOSPC),
                ),
                507,
                "507 Insufficient Storage - the server's disk is full; retry later",
            ),
            (
                Error::io(
                    "/secret/path",
                    std::io::Error::from_raw_os_error(libc::EDQUOT),
                ),
                507,
                "507 Insufficient Storage - the server's disk is full; retry later",
            ),
        ];
        let unavailable = error(&Error::Unavailable {
            place: "p".into(),
            detail: "d".into(),
        });
        assert_eq!(unavailable.headers()["retry-after"], "2");
        for (err, status, message) in cases {
            let r = error(&err);
            assert_eq!(r.status().as_u16(), status, "{err}");
            assert_eq!(r.headers()[header::CONTENT_TYPE], JSON);
            let body: serde_json::Value = serde_json::from_slice(r.body()).unwrap();
            assert_eq!(body["message"], message);
            assert!(body["code"].is_string());
            assert!(!body.to_string().contains("/secret/path"));
        }
    }
}
