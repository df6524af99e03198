//! Long-poll (SPEC §4): `If-None-Match` plus `?wait=SECONDS` holds the
//! branches list, one branch, a tree or a raw file until its answer would
//! differ — woken by a write from the CLI or the admin API — or answers
//! 304 when the wait ends. One answer per change, none spurious, no wake
//! lost under concurrent writers; a thousand parked polls answered by one
//! put; parked polls count against the connection cap and drain on SIGTERM.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::util::{
    self, create_token, ok, request, run_with_input, Daemon, Login, TestDir, TestServer, API,
};

const P: &str = "demo/b2b-cnc.erp-config";
const RAW: &str =
    "/projects/b2b-cnc.erp-config/repository/files/operations.config.json/raw?ref=main";
const BRANCH: &str = "/projects/b2b-cnc.erp-config/repository/branches/main";
const BRANCHES: &str = "/projects/b2b-cnc.erp-config/repository/branches";
const TREE: &str = "/projects/b2b-cnc.erp-config/repository/tree?recursive=true";

fn setup(dir: &TestDir) -> (std::path::PathBuf, String) {
    let data = dir.data();
    ok(&data, &["init", "--example"]);
    let (_, token) = create_token(&data, "demo", &[]);
    (data, token)
}

fn put(data: &std::path::Path, path: &str, bytes: &[u8]) {
    let out = run_with_input(data, &["file", "put", P, "main", path], bytes);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn get(addr: SocketAddr, path: &str, token: &str, etag: Option<&str>) -> util::Resp {
    let mut headers = vec![("PRIVATE-TOKEN", token)];
    if let Some(etag) = etag {
        headers.push(("If-None-Match", etag));
    }
    request(addr, "GET", &format!("{API}{path}"), &headers)
}

fn etag(r: &util::Resp) -> String {
    r.header("etag").expect("an ETag").to_string()
}

fn with_wait(path: &str, seconds: u64) -> String {
    let sep = if path.contains('?') { '&' } else { '?' };
    format!("{path}{sep}wait={seconds}")
}

/// `cfgstore_long_polls_parked` from `/metrics`.
fn parked(addr: SocketAddr) -> u64 {
    let text = request(addr, "GET", "/metrics", &[]).text();
    text.lines()
        .find_map(|l| l.strip_prefix("cfgstore_long_polls_parked "))
        .expect("the parked gauge")
        .parse()
        .unwrap()
}

fn wait_for_parked(addr: SocketAddr, n: u64) {
    let until = Instant::now() + Duration::from_secs(20);
    while parked(addr) < n {
        assert!(
            Instant::now() < until,
            "{} of {n} polls parked",
            parked(addr)
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A long poll in a thread: its answer and how long it took.
fn poll_in_background(
    addr: SocketAddr,
    path: String,
    token: &str,
    etag: &str,
) -> std::thread::JoinHandle<(util::Resp, Duration)> {
    let (token, etag) = (token.to_string(), etag.to_string());
    std::thread::spawn(move || {
        let started = Instant::now();
        let r = get(addr, &path, &token, Some(&etag));
        (r, started.elapsed())
    })
}

#[test]
fn a_parked_poll_answers_the_write_that_changes_it_and_only_that() {
    let dir = TestDir::new("longpoll-wake");
    let (data, token) = setup(&dir);
    let server = TestServer::start(&data);
    let first = get(server.addr, RAW, &token, None);
    assert_eq!(first.status, 200);
    let tag = etag(&first);
    let poll = poll_in_background(server.addr, with_wait(RAW, 20), &token, &tag);
    wait_for_parked(server.addr, 1);
    // Another file of the branch changes: the file's answer does not, so
    // the poll stays parked (woken inside, unseen by the client).
    put(&data, "other.txt", b"unrelated");
    std::thread::sleep(Duration::from_millis(300));
    assert!(!poll.is_finished(), "a change elsewhere answered the poll");
    assert_eq!(parked(server.addr), 1);
    // The file itself changes, from the CLI (another process).
    put(&data, "operations.config.json", b"{\"maxParallelJobs\": 7}");
    let (r, took) = poll.join().unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.body, b"{\"maxParallelJobs\": 7}");
    assert_ne!(etag(&r), tag);
    assert!(
        took < Duration::from_secs(15),
        "answered by the wait, not the write: {took:?}"
    );

    // A poll on the branch is woken by a write through the admin API.
    util::add_user(&data, "demo", "demo-password", &[]);
    let login = Login::new(server.addr, "demo", "demo-password");
    let branch = get(server.addr, BRANCH, &token, None);
    let poll = poll_in_background(server.addr, with_wait(BRANCH, 20), &token, &etag(&branch));
    wait_for_parked(server.addr, 1);
    let w = login.send(
        server.addr,
        "PUT",
        "/projects/b2b-cnc.erp-config/branches/main/files/new.json",
        b"{}",
    );
    assert_eq!(w.status, 200, "{}", w.text());
    let (r, _) = poll.join().unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["commit"]["short_id"], w.json()["short_id"]);

    // The branches list and a tree wake when a branch is created.
    let list = get(server.addr, BRANCHES, &token, None);
    let tree = get(server.addr, TREE, &token, None);
    let list_poll = poll_in_background(server.addr, with_wait(BRANCHES, 20), &token, &etag(&list));
    let tree_poll = poll_in_background(server.addr, with_wait(TREE, 20), &token, &etag(&tree));
    wait_for_parked(server.addr, 2);
    ok(&data, &["branch", "create", P, "feature", "--from", "main"]);
    let (r, _) = list_poll.join().unwrap();
    assert_eq!(r.status, 200);
    assert!(r.text().contains("\"feature\""), "{}", r.text());
    // The tree of the default branch did not change: still parked.
    std::thread::sleep(Duration::from_millis(300));
    assert!(!tree_poll.is_finished());
    put(&data, "config/added.json", b"{}");
    let (r, _) = tree_poll.join().unwrap();
    assert_eq!(r.status, 200);
    assert!(r.text().contains("config/added.json"), "{}", r.text());
}

#[test]
fn a_wait_ends_in_304_and_bad_waits_are_refused() {
    let dir = TestDir::new("longpoll-304");
    let (data, token) = setup(&dir);
    let server = TestServer::start(&data);
    let tag = etag(&get(server.addr, RAW, &token, None));
    let started = Instant::now();
    let r = get(server.addr, &with_wait(RAW, 1), &token, Some(&tag));
    assert_eq!(r.status, 304);
    assert_eq!(r.header("etag"), Some(tag.as_str()));
    assert!(
        started.elapsed() >= Duration::from_millis(990),
        "{:?}",
        started.elapsed()
    );
    // Nothing to wait against, or a stale tag: answered at once.
    let r = get(server.addr, &with_wait(RAW, 20), &token, None);
    assert_eq!(r.status, 200);
    let r = get(server.addr, &with_wait(RAW, 20), &token, Some("\"stale\""));
    assert_eq!(r.status, 200);
    // wait=0 is an ordinary conditional request.
    let r = get(server.addr, &with_wait(RAW, 0), &token, Some(&tag));
    assert_eq!(r.status, 304);
    for (path, says) in [
        (format!("{RAW}&wait=301"), "at most 300 seconds"),
        (format!("{RAW}&wait=-1"), "not a number of seconds"),
        (format!("{RAW}&wait=1.5"), "not a number of seconds"),
        (
            "/projects/b2b-cnc.erp-config/repository/files/operations.config.json?ref=main&wait=5"
                .to_string(),
            "branches list, one branch, tree and raw file only",
        ),
    ] {
        let r = get(server.addr, &path, &token, Some(&tag));
        assert_eq!(r.status, 400, "{path}: {}", r.text());
        assert!(r.text().contains(says), "{path}: {}", r.text());
    }
    // Scope is checked before any wait: another owner's project is 403 now.
    ok(
        &data,
        &["project", "create", "acme", "secret", "--type", "cfg"],
    );
    let r = get(
        server.addr,
        "/projects/acme%2Fsecret.cfg/repository/branches?wait=20",
        &token,
        Some("\"x\""),
    );
    assert_eq!(r.status, 403);
}

/// Pollers follow a branch while writers change it: every 200 carries a
/// state the poller did not have, and once the writers stop every poller
/// holds the final state. Then the server shuts down, which answers the
/// parked polls 304: a poller still holding an older state was parked
/// through a change of it — a lost wake.
#[test]
fn concurrent_writers_lose_no_wake_and_send_no_spurious_answer() {
    let dir = TestDir::new("longpoll-race");
    let (data, token) = setup(&dir);
    let server = TestServer::start(&data);
    let addr = server.addr;
    let final_tag: Arc<Mutex<Option<String>>> = Arc::new(Mutex::new(None));
    let pollers: Vec<_> = (0..4)
        .map(|_| {
            let (token, final_tag) = (token.clone(), Arc::clone(&final_tag));
            std::thread::spawn(move || {
                let first = get(addr, BRANCH, &token, None);
                let mut commits = vec![first.json()["commit"]["id"].as_str().unwrap().to_string()];
                let mut tag = etag(&first);
                let mut seen = vec![tag.clone()];
                loop {
                    let r = get(addr, &with_wait(BRANCH, 25), &token, Some(&tag));
                    match r.status {
                        200 => {
                            // A real change: the branch's commit moved.
                            let commit = r.json()["commit"]["id"].as_str().unwrap().to_string();
                            assert_ne!(Some(&commit), commits.last(), "answered without a change");
                            commits.push(commit);
                            tag = etag(&r);
                            seen.push(tag.clone());
                        }
                        // The shutdown: the poller must hold the final state.
                        304 => {
                            let last = final_tag.lock().unwrap().clone();
                            assert_eq!(
                                last.as_ref(),
                                Some(&tag),
                                "parked through a change: a lost wake"
                            );
                            return seen;
                        }
                        other => panic!("status {other}: {}", r.text()),
                    }
                }
            })
        })
        .collect();
    let writers: Vec<_> = (0..3)
        .map(|w| {
            let data = data.clone();
            std::thread::spawn(move || {
                for i in 0..8 {
                    put(
                        &data,
                        &format!("w{w}.json"),
                        format!("{{\"i\": {i}}}").as_bytes(),
                    );
                }
            })
        })
        .collect();
    for w in writers {
        w.join().unwrap();
    }
    // Wakes take milliseconds (the watcher also checks once a second):
    // after this every poller has been answered the last state and is
    // parked on it.
    std::thread::sleep(Duration::from_secs(2));
    *final_tag.lock().unwrap() = Some(etag(&get(addr, BRANCH, &token, None)));
    assert_eq!(parked(addr), 4);
    drop(server);
    for p in pollers {
        let seen = p.join().expect("a poller failed");
        assert!(seen.len() >= 2, "the poller saw no change: {seen:?}");
        let distinct: std::collections::BTreeSet<_> = seen.iter().collect();
        assert_eq!(
            distinct.len(),
            seen.len(),
            "a state answered twice: {seen:?}"
        );
    }
}

/// One raw connection with a long poll sent on it, from one site of a
/// fleet (`X-Instance-Id: site`).
fn park_as(addr: SocketAddr, token: &str, tag: &str, site: &str) -> TcpStream {
    let mut s = TcpStream::connect(addr).unwrap();
    write!(
        s,
        "GET {API}{} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nPRIVATE-TOKEN: {token}\r\nIf-None-Match: {tag}\r\nX-Instance-Id: {site}\r\n\r\n",
        with_wait(RAW, 60)
    )
    .unwrap();
    s
}

/// A long poll from the one site `plant-1`.
fn park(addr: SocketAddr, token: &str, tag: &str) -> TcpStream {
    park_as(addr, token, tag, "plant-1")
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .unwrap()
        .trim()
        .trim_end_matches(" kB")
        .parse()
        .unwrap()
}

#[test]
fn a_thousand_parked_polls_are_answered_by_one_put_and_drain_on_sigterm() {
    let dir = TestDir::new("longpoll-1000");
    let (data, token) = setup(&dir);
    let daemon = Daemon::start(&data, dir.path().join("log"));
    let tag = etag(&daemon.get(&format!("{API}{RAW}"), &[("PRIVATE-TOKEN", &token)]));
    let before = rss_kib(daemon.pid());
    // A thousand sites sharing one token, each with its instance id.
    let mut polls: Vec<TcpStream> = (0..1000)
        .map(|i| park_as(daemon.addr, &token, &tag, &format!("site-{i}")))
        .collect();
    wait_for_parked(daemon.addr, 1000);
    let per_poll = (rss_kib(daemon.pid()).saturating_sub(before)) as f64 / 1000.0;
    eprintln!("1,000 parked polls: {per_poll:.1} KiB of daemon memory each");
    assert!(per_poll < 64.0, "{per_poll} KiB per parked poll");
    put(&data, "operations.config.json", b"{\"maxParallelJobs\": 9}");
    for s in &mut polls {
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        let mut raw = Vec::new();
        s.read_to_end(&mut raw).unwrap();
        let text = String::from_utf8_lossy(&raw);
        assert!(text.starts_with("HTTP/1.1 200"), "{text}");
        assert!(text.ends_with("{\"maxParallelJobs\": 9}"), "{text}");
    }
    assert_eq!(parked(daemon.addr), 0);

    // SIGTERM: parked polls answer 304 at once and the daemon exits 0.
    let tag = etag(&daemon.get(&format!("{API}{RAW}"), &[("PRIVATE-TOKEN", &token)]));
    let mut polls: Vec<TcpStream> = (0..50)
        .map(|i| park_as(daemon.addr, &token, &tag, &format!("site-{i}")))
        .collect();
    wait_for_parked(daemon.addr, 50);
    let stopping = Instant::now();
    let status = daemon.stop();
    assert!(status.success(), "{status}");
    assert!(
        stopping.elapsed() < Duration::from_secs(8),
        "the drain waited for the polls"
    );
    for s in &mut polls {
        let mut raw = Vec::new();
        s.read_to_end(&mut raw).unwrap();
        assert!(String::from_utf8_lossy(&raw).starts_with("HTTP/1.1 304"));
    }
}

/// Parked polls hold their connections: with the cap reached, the next
/// client waits in the backlog until a change frees them.
#[test]
fn parked_polls_count_against_the_connection_cap() {
    let dir = TestDir::new("longpoll-cap");
    let (data, token) = setup(&dir);
    let options = cfgstore::server::ServerOptions {
        max_connections: 3,
        ..Default::default()
    };
    let server = TestServer::start_with_options(&data, options);
    let tag = etag(&get(server.addr, RAW, &token, None));
    let mut polls: Vec<TcpStream> = (0..3).map(|_| park(server.addr, &token, &tag)).collect();
    // The gauge cannot be read over HTTP now (no slot): give them time.
    std::thread::sleep(Duration::from_millis(500));
    let waiting = {
        let token = token.clone();
        let addr = server.addr;
        std::thread::spawn(move || get(addr, RAW, &token, None).status)
    };
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        !waiting.is_finished(),
        "a fourth connection was served beyond the cap"
    );
    put(&data, "operations.config.json", b"{\"maxParallelJobs\": 3}");
    for s in &mut polls {
        let mut raw = Vec::new();
        s.read_to_end(&mut raw).unwrap();
        assert!(String::from_utf8_lossy(&raw).starts_with("HTTP/1.1 200"));
    }
    assert_eq!(waiting.join().unwrap(), 200);
}

/// The wake comes from the inotify watch on the change marker, not from
/// the once-a-second backstop: with the backstop at an hour, a CLI write
/// still answers a parked poll at once.
#[test]
fn a_write_from_another_process_wakes_a_poll_through_inotify() {
    let dir = TestDir::new("longpoll-inotify");
    let (data, token) = setup(&dir);
    let options = cfgstore::server::ServerOptions {
        change_check: Duration::from_secs(3600),
        ..Default::default()
    };
    let server = TestServer::start_with_options(&data, options);
    let tag = etag(&get(server.addr, RAW, &token, None));
    let poll = poll_in_background(server.addr, with_wait(RAW, 20), &token, &tag);
    wait_for_parked(server.addr, 1);
    put(
        &data,
        "operations.config.json",
        b"{\"maxParallelJobs\": 11}",
    );
    let (r, took) = poll.join().unwrap();
    assert_eq!(r.status, 200);
    assert!(
        took < Duration::from_secs(10),
        "woken by the 20 s wait, not the write: {took:?}"
    );
}

/// A token revoked while its poll is parked gets nothing more: the next
/// change answers 401.
#[test]
fn a_token_revoked_while_parked_is_refused_at_the_next_change() {
    let dir = TestDir::new("longpoll-revoke");
    let (data, token) = setup(&dir);
    let server = TestServer::start(&data);
    let id = crate::util::json(&data, &["token", "list"])[0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let tag = etag(&get(server.addr, RAW, &token, None));
    let poll = poll_in_background(server.addr, with_wait(RAW, 20), &token, &tag);
    wait_for_parked(server.addr, 1);
    ok(&data, &["token", "revoke", &id, "--yes"]);
    put(
        &data,
        "operations.config.json",
        b"{\"maxParallelJobs\": 12}",
    );
    let (r, _) = poll.join().unwrap();
    assert_eq!(r.status, 401, "{}", r.text());
    assert!(!r.text().contains("maxParallelJobs"));
}

/// One client (token, instance id, address) parks at most 32 polls: the
/// 33rd releases the oldest (304), so an ERP that gives up on its polls
/// and asks again cannot fill the connection cap with abandoned ones.
#[test]
fn one_client_parks_at_most_32_polls() {
    let dir = TestDir::new("longpoll-per-token");
    let (data, token) = setup(&dir);
    let server = TestServer::start(&data);
    let tag = etag(&get(server.addr, RAW, &token, None));
    let mut first = park(server.addr, &token, &tag);
    wait_for_parked(server.addr, 1);
    let mut rest: Vec<TcpStream> = (0..31).map(|_| park(server.addr, &token, &tag)).collect();
    wait_for_parked(server.addr, 32);
    first
        .set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let mut byte = [0u8; 1];
    assert!(
        first.read(&mut byte).is_err(),
        "released before the cap was passed"
    );
    rest.push(park(server.addr, &token, &tag));
    first
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut raw = Vec::new();
    first.read_to_end(&mut raw).unwrap();
    assert!(
        String::from_utf8_lossy(&raw).starts_with("HTTP/1.1 304"),
        "{}",
        String::from_utf8_lossy(&raw)
    );
    wait_for_parked(server.addr, 32);
    assert_eq!(parked(server.addr), 32);
    // Another token, or another site of the same token, is not limited
    // by this one's polls.
    let sibling = park_as(server.addr, &token, &tag, "plant-2");
    wait_for_parked(server.addr, 33);
    let (_, other) = create_token(&data, "demo", &[]);
    let other_poll = poll_in_background(server.addr, with_wait(RAW, 20), &other, &tag);
    wait_for_parked(server.addr, 34);
    put(
        &data,
        "operations.config.json",
        b"{\"maxParallelJobs\": 13}",
    );
    assert_eq!(other_poll.join().unwrap().0.status, 200);
    rest.push(sibling);
    for s in &mut rest {
        let mut raw = Vec::new();
        s.read_to_end(&mut raw).unwrap();
        assert!(String::from_utf8_lossy(&raw).starts_with("HTTP/1.1 200"));
    }
}
