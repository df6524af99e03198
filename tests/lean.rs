//! The lean HTTP/1.1 path for read-API `GET`s answers exactly as hyper
//! does: the same bytes (but the `Date` line) for every request, whether
//! the lean path serves it or hands the connection to hyper, and for
//! connections that mix the two.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::time::Duration;

use crate::util::{create_token, put, store_with_project, TestDir, TestServer, V4};

const P: &str = "demo%2Fapp.cfg";

/// Sends `bytes`, shuts the write side and reads the whole answer.
fn exchange(addr: std::net::SocketAddr, bytes: &[u8]) -> Vec<u8> {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(bytes).unwrap();
    s.shutdown(Shutdown::Write).unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    out
}

/// The answer without its `Date` lines (the second may turn between the
/// two servers' answers).
fn dateless(raw: &[u8]) -> String {
    String::from_utf8_lossy(raw)
        .split("\r\n")
        .filter(|line| !line.starts_with("date: "))
        .collect::<Vec<_>>()
        .join("\r\n")
}

#[test]
fn lean_path_answers_byte_for_byte_as_hyper() {
    let dir = TestDir::new("lean-vs-hyper");
    let data = store_with_project(&dir);
    put(&data, "app.json", br#"{"a": 1}"#);
    put(&data, "deep/x.yaml", b"a: 1\n");
    // Large enough to be sent from its file (`sendfile`).
    put(&data, "big.txt", &big_text(40_000));
    let (_, token) = create_token(&data, "demo", &[]);
    let lean = TestServer::start(&data);
    let hyper = TestServer::start_with_options(
        &data,
        cfgstore::server::ServerOptions {
            lean: false,
            ..Default::default()
        },
    );
    let raw = format!("{V4}/projects/{P}/repository/files/app.json/raw?ref=main");
    let etag = {
        let answer = String::from_utf8(exchange(
            lean.addr,
            format!("GET {raw} HTTP/1.1\r\nHost: h\r\nPRIVATE-TOKEN: {token}\r\n\r\n").as_bytes(),
        ))
        .unwrap();
        answer
            .lines()
            .find_map(|l| l.strip_prefix("etag: "))
            .expect("an etag")
            .to_string()
    };
    let get = |target: &str, extra: &str| {
        format!(
            "GET {target} HTTP/1.1\r\nHost: cfg.example\r\nPRIVATE-TOKEN: {token}\r\n{extra}\r\n"
        )
    };
    let head = |target: &str, extra: &str| get(target, extra).replacen("GET", "HEAD", 1);
    let branches = format!("{V4}/projects/{P}/repository/branches");
    let tree = format!("{V4}/projects/{P}/repository/tree?recursive=true&per_page=1&page=2");
    let meta = format!("{V4}/projects/{P}/repository/files/deep%2Fx.yaml?ref=main");
    let missing = format!("{V4}/projects/{P}/repository/files/nope.json/raw?ref=main");
    let big = format!("{V4}/projects/{P}/repository/files/big.txt/raw?ref=main");
    let admin_me = "/site-builder/api/user/me";
    let cases: Vec<(&str, String)> = vec![
        ("a file", get(&raw, "")),
        ("HEAD of a file", head(&raw, "")),
        ("a large file, sent from its file", get(&big, "")),
        ("the large file again", get(&big, "")),
        ("HEAD of the large file", head(&big, "")),
        (
            "If-None-Match: 304",
            get(&raw, &format!("If-None-Match: {etag}\r\n")),
        ),
        (
            "HEAD with If-None-Match",
            head(&raw, &format!("If-None-Match: {etag}\r\n")),
        ),
        (
            "the branches list (Link headers from Host)",
            get(&branches, ""),
        ),
        ("a page of the tree", get(&tree, "")),
        ("file metadata", get(&meta, "")),
        ("a missing file", get(&missing, "")),
        ("HEAD of a missing file", head(&missing, "")),
        ("no token", format!("GET {raw} HTTP/1.1\r\nHost: h\r\n\r\n")),
        (
            "an unknown token",
            format!("GET {raw} HTTP/1.1\r\nHost: h\r\nPRIVATE-TOKEN: glpat-nope\r\n\r\n"),
        ),
        (
            "an invalid ref",
            get(
                &format!("{V4}/projects/{P}/repository/files/app.json/raw?ref=..%2Fx"),
                "",
            ),
        ),
        (
            "an unknown route",
            get(&format!("{V4}/projects/{P}/nothing"), ""),
        ),
        (
            "Connection: keep-alive",
            get(&raw, "Connection: keep-alive\r\n"),
        ),
        (
            "Connection: close (hyper)",
            get(&raw, "Connection: close\r\n"),
        ),
        (
            "HTTP/1.0 (hyper)",
            get(&raw, "").replacen("HTTP/1.1", "HTTP/1.0", 1),
        ),
        (
            "an empty body declared (hyper)",
            get(&raw, "Content-Length: 0\r\n"),
        ),
        (
            "a body on a GET (hyper)",
            format!("{}abc", get(&raw, "Content-Length: 3\r\n")),
        ),
        (
            "a long poll with wait=0 (hyper)",
            get(&format!("{raw}&wait=0"), ""),
        ),
        (
            "an escaped query key (hyper)",
            get(&format!("{raw}&w%61it=0"), ""),
        ),
        ("an admin path (hyper)", get(admin_me, "")),
        (
            "a header value with obs-text",
            get(&raw, "X-Note: caf\u{e9}\r\n"),
        ),
        (
            "pipelined: three reads",
            format!(
                "{}{}{}",
                get(&raw, ""),
                head(&missing, ""),
                get(&branches, "")
            ),
        ),
        (
            "pipelined: read, admin, read (hand-off mid-connection)",
            format!("{}{}{}", get(&raw, ""), get(admin_me, ""), get(&meta, "")),
        ),
        (
            "a malformed header line",
            format!("GET {raw} HTTP/1.1\r\nHost h\r\n\r\n"),
        ),
        (
            "a space in the target",
            format!("GET {V4}/projects/a b HTTP/1.1\r\nHost: h\r\n\r\n"),
        ),
        (
            "a non-ASCII target",
            format!("GET {V4}/projects/\u{e9} HTTP/1.1\r\nHost: h\r\n\r\n"),
        ),
        (
            "a bare LF head",
            format!("GET {raw} HTTP/1.1\nHost: h\nPRIVATE-TOKEN: {token}\n\n"),
        ),
        (
            "an unknown method",
            format!("BREW {raw} HTTP/1.1\r\nHost: h\r\n\r\n"),
        ),
        (
            "a head cut short",
            format!("GET {raw} HTTP/1.1\r\nHost: h\r\nPRIVATE-TO"),
        ),
    ];
    // Each case twice: the second answer may be the kept one (`memo.rs`).
    let cases: Vec<_> = cases.iter().chain(&cases).cloned().collect();
    for (what, request) in cases {
        let ours = exchange(lean.addr, request.as_bytes());
        let theirs = exchange(hyper.addr, request.as_bytes());
        assert!(
            !theirs.is_empty() || what.contains("cut short"),
            "{what}: hyper answered nothing"
        );
        assert_eq!(
            dateless(&ours),
            dateless(&theirs),
            "{what}: the lean answer differs from hyper's"
        );
    }
}

/// Text of `len` bytes, different line by line.
fn big_text(len: usize) -> Vec<u8> {
    let mut text = Vec::with_capacity(len);
    let mut n = 0;
    while text.len() < len {
        text.extend_from_slice(format!("line {n}: some configuration\n").as_bytes());
        n += 1;
    }
    text.truncate(len);
    text
}

/// Sends `request` on `s` and reads one answer: its status line, its
/// head, its body (as long as its `content-length` says, none for `HEAD`).
fn ask(s: &mut TcpStream, request: &str) -> (String, String, Vec<u8>) {
    s.write_all(request.as_bytes()).unwrap();
    let mut answer = Vec::new();
    let mut byte = [0u8; 1];
    while !answer.ends_with(b"\r\n\r\n") {
        assert_eq!(s.read(&mut byte).unwrap(), 1, "the connection closed");
        answer.push(byte[0]);
    }
    let text = String::from_utf8(answer).unwrap();
    let length: usize = match request.starts_with("HEAD") {
        true => 0,
        false => text
            .lines()
            .find_map(|l| l.strip_prefix("content-length: "))
            .map_or(0, |n| n.parse().unwrap()),
    };
    let mut body = vec![0u8; length];
    s.read_exact(&mut body).unwrap();
    (text.lines().next().unwrap().to_string(), text, body)
}

fn connect(addr: std::net::SocketAddr) -> TcpStream {
    let s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s
}

#[test]
fn lean_connection_hands_over_mid_way_and_keeps_serving() {
    let dir = TestDir::new("lean-handover");
    let data = store_with_project(&dir);
    put(&data, "app.json", br#"{"a": 1}"#);
    let (_, token) = create_token(&data, "demo", &[]);
    let server = TestServer::start(&data);
    let raw = format!("{V4}/projects/{P}/repository/files/app.json/raw?ref=main");
    let mut s = connect(server.addr);
    let mut ask = |request: String| {
        let (status, _, body) = ask(&mut s, &request);
        (status, body)
    };
    let get = |target: &str| {
        format!("GET {target} HTTP/1.1\r\nHost: h\r\nPRIVATE-TOKEN: {token}\r\n\r\n")
    };
    for _ in 0..3 {
        let (status, body) = ask(get(&raw));
        assert_eq!(status, "HTTP/1.1 200 OK");
        assert_eq!(body, br#"{"a": 1}"#);
    }
    // A change by the CLI is in force for the very next request.
    put(&data, "app.json", br#"{"a": 2}"#);
    assert_eq!(ask(get(&raw)).1, br#"{"a": 2}"#);
    // A long poll hands the connection to hyper, which serves it from
    // then on, reads included.
    let (status, _) = ask(get(&format!("{raw}&wait=0")));
    assert_eq!(status, "HTTP/1.1 200 OK");
    put(&data, "app.json", br#"{"a": 3}"#);
    assert_eq!(ask(get(&raw)).1, br#"{"a": 3}"#);
}

/// `name{labels} value` from `/metrics`.
fn metric(addr: std::net::SocketAddr, name: &str) -> u64 {
    let text = crate::util::request(addr, "GET", "/metrics", &[]).text();
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .map_or(0, |v| v.parse().unwrap())
}

/// A read the lean path keeps and answers again (`server/memo.rs`,
/// `api/replay.rs`) keeps every promise of the full path: a change by the
/// CLI, a revoked token and an expired one are in force for the very next
/// request; every answer given again is counted, its token's use noted,
/// its client seen in the fleet view; a large file sent from its file is
/// exact, and changes like any other.
#[test]
fn answers_given_again_keep_every_promise() {
    use std::sync::atomic::{AtomicI64, Ordering};
    use std::sync::Arc;
    let dir = TestDir::new("lean-again");
    let data = store_with_project(&dir);
    put(&data, "app.json", br#"{"a": 1}"#);
    put(&data, "big.txt", &big_text(30_000));
    let (id, token) = create_token(&data, "demo", &[]);
    let expiry = (time::OffsetDateTime::now_utc() + time::Duration::hours(1))
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    let (_, expiring) = create_token(&data, "demo", &["--expires", &expiry]);
    // The daemon's clock, moved on by the test.
    let skew = Arc::new(AtomicI64::new(0));
    let clock = {
        let skew = Arc::clone(&skew);
        Arc::new(move || {
            time::OffsetDateTime::now_utc() + time::Duration::seconds(skew.load(Ordering::SeqCst))
        })
    };
    let server = TestServer::start_with_clock(&data, clock);
    let raw = format!("{V4}/projects/{P}/repository/files/app.json/raw?ref=main");
    let big = format!("{V4}/projects/{P}/repository/files/big.txt/raw?ref=main");
    let get = |target: &str, token: &str| {
        format!("GET {target} HTTP/1.1\r\nHost: h\r\nPRIVATE-TOKEN: {token}\r\nX-Instance-Id: erp-7\r\n\r\n")
    };
    let mut s = connect(server.addr);
    let counted = r#"cfgstore_requests_total{route="file_raw",status="200"}"#;
    let (before, uses) = (
        metric(server.addr, counted),
        metric(server.addr, "cfgstore_token_uses_total"),
    );
    for _ in 0..5 {
        let (status, _, body) = ask(&mut s, &get(&raw, &token));
        assert_eq!(status, "HTTP/1.1 200 OK");
        assert_eq!(body, br#"{"a": 1}"#);
    }
    assert_eq!(
        metric(server.addr, counted),
        before + 5,
        "every answer counted"
    );
    assert_eq!(metric(server.addr, "cfgstore_token_uses_total"), uses + 5);

    // A change by the CLI: in force for the very next request.
    put(&data, "app.json", br#"{"a": 2}"#);
    assert_eq!(ask(&mut s, &get(&raw, &token)).2, br#"{"a": 2}"#);
    assert_eq!(ask(&mut s, &get(&raw, &token)).2, br#"{"a": 2}"#);

    // A large file, from its file: exact, again and after a change.
    for _ in 0..3 {
        let (status, head, body) = ask(&mut s, &get(&big, &token));
        assert_eq!(status, "HTTP/1.1 200 OK");
        assert!(head.contains("content-length: 30000\r\n"), "{head}");
        assert_eq!(body, big_text(30_000));
    }
    let (_, head, body) = ask(&mut s, &get(&big, &token).replacen("GET", "HEAD", 1));
    assert!(
        head.contains("content-length: 30000\r\n") && body.is_empty(),
        "{head}"
    );
    put(&data, "big.txt", &big_text(20_000));
    assert_eq!(ask(&mut s, &get(&big, &token)).2, big_text(20_000));
    assert_eq!(ask(&mut s, &get(&big, &token)).2, big_text(20_000));

    // The fleet view: the instance holds main's newest state.
    crate::util::add_user(&data, "demo", "demo-password", &[]);
    let login = crate::util::Login::new(server.addr, "demo", "demo-password");
    let rows = login
        .send(server.addr, "GET", "/projects/app.cfg/fleet", b"")
        .json();
    let store = cfgstore::store::Store::open(&data).unwrap();
    let label = store.server_key().unwrap().instance_label("erp-7");
    let row = rows
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["branch"] == "main" && r["instance_id"] == label.as_str())
        .unwrap_or_else(|| panic!("no row of erp-7 in {rows:#}"));
    assert_eq!(row["current"], true, "{row:#}");

    // An expiring token: answered again until the clock passes its expiry.
    for _ in 0..3 {
        assert_eq!(ask(&mut s, &get(&raw, &expiring)).0, "HTTP/1.1 200 OK");
    }
    skew.store(2 * 3600, Ordering::SeqCst);
    let (status, _, body) = ask(&mut s, &get(&raw, &expiring));
    assert_eq!(
        status,
        "HTTP/1.1 401 Unauthorized",
        "{}",
        String::from_utf8_lossy(&body)
    );
    // The other token still reads; revoked by the CLI, it is refused next.
    assert_eq!(ask(&mut s, &get(&raw, &token)).0, "HTTP/1.1 200 OK");
    crate::util::ok(&data, &["token", "revoke", &id, "--yes"]);
    assert_eq!(
        ask(&mut s, &get(&raw, &token)).0,
        "HTTP/1.1 401 Unauthorized"
    );
}
