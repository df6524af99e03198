//! The lean HTTP/1.1 path: what an ERP sends all day (a read-API `GET` or
//! `HEAD` with no body, on a keep-alive connection) parsed and answered
//! without hyper's connection machinery.
//!
//! It is only a way in and out: the request becomes the same `Parts` hyper
//! would have made (the same parser, `httparse`, the same conversions of
//! method, target and header fields) and goes through the one request path
//! (`serve_one`: admission, the read cache, the log line and the metrics);
//! the answer is written with the header rules hyper applies (`encode`).
//! Anything else, or anything it is not sure of, it leaves untouched for
//! hyper, which then serves the rest of the connection (the bytes already
//! read included): a request head not complete in what was read, one with
//! a body or `Expect`, `Connection` other than `keep-alive`, HTTP/1.0, a
//! long poll (hyper notices a client that leaves while it waits), a path
//! outside the read API, a malformed head (hyper's own 400).

use std::io::IoSlice;
use std::ops::Range;
use std::sync::Arc;

use bytes::Bytes;
use hyper::header::{self, HeaderName, HeaderValue};
use hyper::http::request::Parts;
use hyper::{Method, Response, StatusCode, Uri, Version};

use super::io::IdleIo;
use crate::api::{self, READ_PREFIX};
use crate::store::held::HeldFile;

/// Header fields a lean request may carry (hyper allows 100).
const MAX_HEADERS: usize = 100;

/// A request head the lean path serves: where its parts lie in the buffer.
pub(super) struct Head {
    /// Bytes of the head, the blank line included.
    pub len: usize,
    method: Method,
    target: Range<usize>,
    fields: Vec<(Range<usize>, Range<usize>)>,
}

/// What to do with the bytes read so far.
pub(super) enum Next {
    /// A complete request the lean path serves.
    Serve(Head),
    /// Hand the connection (with these bytes) to hyper.
    HandOff,
}

/// Looks at the start of `buf`: a complete request head the lean path may
/// serve, or the hand-off. `fields` is reused between requests.
pub(super) fn parse(
    buf: &[u8],
    max_head: usize,
    mut fields: Vec<(Range<usize>, Range<usize>)>,
) -> Next {
    // Left uninitialised: the parser writes those it fills.
    let mut headers = [const { std::mem::MaybeUninit::<httparse::Header>::uninit() }; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut []);
    let len = match req.parse_with_uninit_headers(buf, &mut headers) {
        Ok(httparse::Status::Complete(len)) if len <= max_head => len,
        _ => return Next::HandOff,
    };
    let method = match req.method {
        Some("GET") => Method::GET,
        Some("HEAD") => Method::HEAD,
        _ => return Next::HandOff,
    };
    let target = req.path.unwrap_or_default();
    if req.version != Some(1) || !lean_target(target) {
        return Next::HandOff;
    }
    let at = |s: &[u8]| {
        let start = s.as_ptr() as usize - buf.as_ptr() as usize;
        start..start + s.len()
    };
    fields.clear();
    for h in req.headers.iter() {
        if !lean_field(h.name, h.value) {
            return Next::HandOff;
        }
        fields.push((at(h.name.as_bytes()), at(h.value)));
    }
    Next::Serve(Head {
        len,
        method,
        target: at(target.as_bytes()),
        fields,
    })
}

/// A read-API path, and no long poll: no `wait` key, and no key written
/// with percent-escapes (which might spell it).
fn lean_target(target: &str) -> bool {
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    path.starts_with(READ_PREFIX)
        && query.split('&').all(|pair| {
            let key = pair.split_once('=').map_or(pair, |(k, _)| k);
            key != api::poll::WAIT && !key.contains('%')
        })
}

/// A header field that leaves the request a plain keep-alive `GET`: no
/// body (`Content-Length`, `Transfer-Encoding`), no `Expect` or `Upgrade`,
/// `Connection` at most `keep-alive`.
fn lean_field(name: &str, value: &[u8]) -> bool {
    const BODY_OR_CONNECTION: [&str; 5] = [
        "content-length",
        "transfer-encoding",
        "expect",
        "upgrade",
        "te",
    ];
    if name.eq_ignore_ascii_case("connection") {
        return value.eq_ignore_ascii_case(b"keep-alive");
    }
    !BODY_OR_CONNECTION
        .iter()
        .any(|n| name.eq_ignore_ascii_case(n))
}

impl Head {
    /// The request as hyper would have made it from the same bytes, or
    /// `None` where hyper's conversions refuse (then hyper answers).
    pub fn parts(&self, head: &Bytes) -> Option<Parts> {
        let (mut parts, ()) = hyper::Request::new(()).into_parts();
        parts.method = self.method.clone();
        parts.version = Version::HTTP_11;
        parts.uri = Uri::from_maybe_shared(head.slice(self.target.clone())).ok()?;
        parts.headers.reserve(self.fields.len());
        for (name, value) in &self.fields {
            let name = header_name(&head[name.clone()])?;
            let value = HeaderValue::from_maybe_shared(head.slice(value.clone())).ok()?;
            parts.headers.append(name, value);
        }
        Some(parts)
    }

    /// The field list, for the next request's `parse`.
    pub fn into_fields(self) -> Vec<(Range<usize>, Range<usize>)> {
        self.fields
    }
}

/// Header names ERPs send on every request that are not in the http
/// crate's table of standard ones, which it would validate, lowercase and
/// copy into an allocation each time: taken as constants instead.
const FREQUENT: [HeaderName; 2] = [
    HeaderName::from_static("private-token"),
    HeaderName::from_static("x-instance-id"),
];

/// A field name as `HeaderName::from_bytes` makes it (hyper's conversion).
fn header_name(raw: &[u8]) -> Option<HeaderName> {
    match FREQUENT
        .iter()
        .find(|known| raw.eq_ignore_ascii_case(known.as_str().as_bytes()))
    {
        Some(known) => Some(known.clone()),
        None => HeaderName::from_bytes(raw).ok(),
    }
}

/// The response head for `response` to a request with `method`, into
/// `dst`, by the rules hyper applies: the header fields in order; the
/// `Content-Length` of the body unless the status forbids one (a `HEAD`
/// answer keeps the length its handler set). `end_head` adds the `Date`
/// (when the handler set none: `Encoded::dated`) and ends it.
pub(super) fn encode(method: &Method, response: Response<api::Body>, dst: &mut Vec<u8>) -> Encoded {
    let (mut head, body) = response.into_parts();
    let file = head.extensions.remove::<Arc<HeldFile>>();
    let status = head.status;
    dst.clear();
    if status == StatusCode::OK {
        dst.extend_from_slice(b"HTTP/1.1 200 OK\r\n");
    } else {
        dst.extend_from_slice(b"HTTP/1.1 ");
        dst.extend_from_slice(status.as_str().as_bytes());
        dst.push(b' ');
        dst.extend_from_slice(
            status
                .canonical_reason()
                .unwrap_or("<unknown status code>")
                .as_bytes(),
        );
        dst.extend_from_slice(b"\r\n");
    }
    let head_request = *method == Method::HEAD;
    let may_have_length = !status.is_informational()
        && !matches!(status, StatusCode::NO_CONTENT | StatusCode::NOT_MODIFIED);
    let mut wrote_length = false;
    let mut wrote_date = false;
    for (name, value) in &head.headers {
        if name == header::CONTENT_LENGTH {
            // hyper: an empty body keeps the header only for HEAD (a GET's
            // empty answer gets `0` below); one value only.
            if wrote_length || (body.is_empty() && !head_request) {
                continue;
            }
            wrote_length = true;
        }
        wrote_date |= name == header::DATE;
        dst.extend_from_slice(name.as_str().as_bytes());
        dst.extend_from_slice(b": ");
        dst.extend_from_slice(value.as_bytes());
        dst.extend_from_slice(b"\r\n");
    }
    if !wrote_length && may_have_length && (!body.is_empty() || !head_request) {
        dst.extend_from_slice(b"content-length: ");
        dst.extend_from_slice(itoa::Buffer::new().format(body.len()).as_bytes());
        dst.extend_from_slice(b"\r\n");
    }
    let body = if head_request || !may_have_length {
        Bytes::new()
    } else {
        body
    };
    Encoded {
        file: file.filter(|file| file.holds(&body)),
        body,
        dated: wrote_date,
    }
}

/// An answer `encode` began.
pub(super) struct Encoded {
    /// The body to send (none for `HEAD`, `204`, `304`, `1xx`).
    pub body: Bytes,
    /// The body's bytes as a file held open, to send from (`send`).
    pub file: Option<Arc<HeldFile>>,
    /// Whether the handler set a `Date` of its own.
    pub dated: bool,
}

/// Sends an answer: its head and body by `writev`; or, when the body is a
/// held file's bytes, the head marked as more to come and the body from
/// the file (`sendfile`: the page cache's pages, not a copy), which the
/// kernel sends in the same segments. Whatever the file cannot give (a
/// file system without `sendfile`, a read error, a file cut short) is sent
/// from the bytes in memory.
pub(super) async fn send(
    io: &mut IdleIo,
    head: &[u8],
    body: &[u8],
    file: Option<&HeldFile>,
) -> std::io::Result<()> {
    use rustix::net::SendFlags;
    use tokio::io::AsyncWriteExt;
    let Some(file) = file else {
        return write_all(io, head, body).await;
    };
    let mut head = head;
    while !head.is_empty() {
        let more = SendFlags::MORE | SendFlags::NOSIGNAL;
        let n = io
            .write_with(|s| Ok(rustix::net::send(s, head, more)?))
            .await?;
        if n == 0 {
            return Err(std::io::ErrorKind::WriteZero.into());
        }
        head = &head[n..];
    }
    let (mut offset, len) = (0u64, body.len() as u64);
    while offset < len {
        let rest = (len - offset) as usize;
        let from_file = |s: &tokio::net::TcpStream| {
            Ok(rustix::fs::sendfile(
                s,
                file.file(),
                Some(&mut offset),
                rest,
            )?)
        };
        match io.write_with(from_file).await {
            Ok(n) if n > 0 => {}
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            // The rest from memory (a socket that failed fails there too).
            _ => break,
        }
    }
    io.write_all(&body[offset as usize..]).await
}

/// Ends a head `encode` began: the current `Date` unless `dated`, the blank
/// line.
pub(super) fn end_head(dst: &mut Vec<u8>, dated: bool) {
    if !dated {
        dst.extend_from_slice(b"date: ");
        date::extend(dst);
        dst.extend_from_slice(b"\r\n");
    }
    dst.extend_from_slice(b"\r\n");
}

/// Writes `head` and `body` whole, with as few `writev`s as the socket
/// allows.
pub(super) async fn write_all<W>(io: &mut W, head: &[u8], body: &[u8]) -> std::io::Result<()>
where
    W: tokio::io::AsyncWrite + Unpin,
{
    use tokio::io::AsyncWriteExt;
    let (mut head, mut body) = (head, body);
    while !head.is_empty() {
        let n = io
            .write_vectored(&[IoSlice::new(head), IoSlice::new(body)])
            .await?;
        if n == 0 {
            return Err(std::io::ErrorKind::WriteZero.into());
        }
        let from_head = n.min(head.len());
        head = &head[from_head..];
        body = &body[n - from_head..];
    }
    io.write_all(body).await
}

/// The `Date` header's value, formatted once a second per thread (as
/// hyper does).
mod date {
    use std::cell::RefCell;
    use std::time::{Duration, UNIX_EPOCH};

    thread_local!(static CACHED: RefCell<(u64, String)> = const { RefCell::new((0, String::new())) });

    pub fn extend(dst: &mut Vec<u8>) {
        let second = crate::coarse::unix_seconds();
        CACHED.with(|cached| {
            let mut cached = cached.borrow_mut();
            if cached.0 != second || cached.1.is_empty() {
                let at = UNIX_EPOCH + Duration::from_secs(second);
                *cached = (second, httpdate::fmt_http_date(at));
            }
            dst.extend_from_slice(cached.1.as_bytes());
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decide(raw: &str) -> bool {
        matches!(parse(raw.as_bytes(), 8192, Vec::new()), Next::Serve(_))
    }

    #[test]
    fn serves_plain_read_gets_and_hands_off_the_rest() {
        let file = "/site-builder/api/erp-config/api/v4/projects/a%2Fb.cfg/repository/files/x/raw?ref=main";
        let get = |extra: &str| format!("GET {file} HTTP/1.1\r\nHost: h\r\n{extra}\r\n");
        assert!(decide(&get("")));
        assert!(decide(&get("Connection: Keep-Alive\r\n")));
        assert!(decide(&get("If-None-Match: \"x\"\r\n")));
        assert!(decide(&get("").replacen("GET", "HEAD", 1)));
        for handed in [
            get("Connection: close\r\n"),
            get("Connection: keep-alive, Upgrade\r\n"),
            get("Content-Length: 0\r\n"),
            get("transfer-encoding: chunked\r\n"),
            get("Expect: 100-continue\r\n"),
            get("Upgrade: websocket\r\n"),
            get("").replacen("HTTP/1.1", "HTTP/1.0", 1),
            get("").replacen("GET", "POST", 1),
            get("").replacen("ref=main", "ref=main&wait=30", 1),
            get("").replacen("ref=main", "w%61it=30&ref=main", 1),
            get("").replacen("/site-builder/api/erp-config", "/site-builder/api", 1),
            format!("GET {file} HTTP/1.1\r\nHost: h\r\n"),
            format!("GET {file} HTTP/1.1\r\nHost h\r\n\r\n"),
        ] {
            assert!(!decide(&handed), "{handed:?} should go to hyper");
        }
        // A head over the limit goes to hyper (its 431).
        let long = get(&format!("X-Pad: {}\r\n", "a".repeat(9000)));
        assert!(!matches!(
            parse(long.as_bytes(), 8192, Vec::new()),
            Next::Serve(_)
        ));
        // A key that merely contains "wait" is an ordinary one.
        assert!(decide(&get("").replacen(
            "ref=main",
            "ref=main&awaited=1",
            1
        )));
    }

    #[test]
    fn parts_are_what_hyper_makes() {
        let raw = "GET /site-builder/api/erp-config/health?x=1 HTTP/1.1\r\nHost: h\r\nX-A: 1\r\nx-a: 2\r\n\r\nrest";
        let Next::Serve(head) = parse(raw.as_bytes(), 8192, Vec::new()) else {
            panic!("not served");
        };
        assert_eq!(head.len, raw.len() - 4);
        let bytes = Bytes::copy_from_slice(&raw.as_bytes()[..head.len]);
        let parts = head.parts(&bytes).unwrap();
        assert_eq!(parts.method, Method::GET);
        assert_eq!(parts.uri.path(), "/site-builder/api/erp-config/health");
        assert_eq!(parts.uri.query(), Some("x=1"));
        assert_eq!(parts.version, Version::HTTP_11);
        let values: Vec<_> = parts.headers.get_all("x-a").iter().collect();
        assert_eq!(values, ["1", "2"]);
        assert_eq!(parts.headers["host"], "h");
    }

    #[test]
    fn frequent_names_are_the_names_the_http_crate_makes() {
        for raw in [
            "PRIVATE-TOKEN",
            "private-token",
            "X-Instance-Id",
            "x-instance-ID",
            "X-Other",
            "Host",
        ] {
            assert_eq!(
                header_name(raw.as_bytes()),
                HeaderName::from_bytes(raw.as_bytes()).ok(),
                "{raw}"
            );
        }
        assert_eq!(header_name(b"bad name"), None);
    }

    fn encoded(
        method: Method,
        status: StatusCode,
        headers: &[(&str, &str)],
        body: &str,
    ) -> (String, String) {
        let mut r = Response::new(Bytes::copy_from_slice(body.as_bytes()));
        *r.status_mut() = status;
        for (n, v) in headers {
            let name = HeaderName::from_bytes(n.as_bytes()).unwrap();
            r.headers_mut()
                .append(name, HeaderValue::from_str(v).unwrap());
        }
        let mut out = Vec::new();
        let encoded = encode(&method, r, &mut out);
        end_head(&mut out, encoded.dated);
        let body = encoded.body;
        let head = String::from_utf8(out).unwrap();
        let dated = head.lines().filter(|l| l.starts_with("date: ")).count();
        assert_eq!(dated, 1, "{head}");
        let head = head
            .lines()
            .filter(|l| !l.starts_with("date: "))
            .collect::<Vec<_>>()
            .join("\n");
        (head, String::from_utf8(body.to_vec()).unwrap())
    }

    #[test]
    fn answers_follow_hypers_length_rules() {
        let (head, body) = encoded(Method::GET, StatusCode::OK, &[("etag", "\"e\"")], "abc");
        assert_eq!(head, "HTTP/1.1 200 OK\netag: \"e\"\ncontent-length: 3\n");
        assert_eq!(body, "abc");
        // HEAD: the length its handler set, no body.
        let (head, body) = encoded(Method::HEAD, StatusCode::OK, &[("content-length", "3")], "");
        assert_eq!(head, "HTTP/1.1 200 OK\ncontent-length: 3\n");
        assert_eq!(body, "");
        // An empty GET answer says 0; a 304 has no length; neither a body.
        let (head, _) = encoded(Method::GET, StatusCode::OK, &[], "");
        assert_eq!(head, "HTTP/1.1 200 OK\ncontent-length: 0\n");
        let (head, body) = encoded(
            Method::GET,
            StatusCode::NOT_MODIFIED,
            &[("etag", "\"e\"")],
            "",
        );
        assert_eq!(head, "HTTP/1.1 304 Not Modified\netag: \"e\"\n");
        assert_eq!(body, "");
        // An error's body is not sent to HEAD, its length is.
        let (head, body) = encoded(Method::HEAD, StatusCode::NOT_FOUND, &[], "{}");
        assert_eq!(head, "HTTP/1.1 404 Not Found\ncontent-length: 2\n");
        assert_eq!(body, "");
    }
}
