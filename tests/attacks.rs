//! Attacks on both APIs and the CLI, over real HTTP (the real server on
//! 127.0.0.1:0, the `cfgstore` binary): half-closed connections, repeated
//! query parameters, session paths, audit visibility, role boundaries,
//! login throttling, forwarded addresses, login CSRF, audit flooding,
//! double rotation, invisible characters, caching headers, wide tables.

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::util::{
    add_user, create_token, json, ok, raw_exchange, run, run_with_input, send, Daemon, Login, Resp,
    TestDir, TestServer, API,
};

const ADMIN: &str = "/site-builder/api";
const LOGIN: &str = "/site-builder/api/user/login";
const PW: &str = "demo-password-1";
const A_JSON: &[u8] = b"{\"a\":1}\n";

/// `cfgstore --data DATA` with the words of `args`; asserts success.
fn cli(data: &Path, args: &str) -> String {
    ok(data, &args.split(' ').collect::<Vec<_>>())
}

/// `cfgstore ... --json` with the words of `args`.
fn cli_json(data: &Path, args: &str) -> Value {
    json(data, &args.split(' ').collect::<Vec<_>>())
}

/// A user whose password is `{name}-password-1`.
fn add(data: &Path, name: &str, roles: &[&str]) {
    add_user(data, name, &format!("{name}-password-1"), roles);
}

fn session(addr: SocketAddr, name: &str) -> Login {
    Login::new(addr, name, &format!("{name}-password-1"))
}

/// How many items `cfgstore ... --json` lists.
fn count(data: &Path, args: &str) -> usize {
    cli_json(data, args).as_array().unwrap().len()
}

fn login_as(addr: SocketAddr, path: &str, headers: &[(&str, &str)], user: &str) -> Resp {
    let password = if user == "demo" { PW } else { "wrong-password" };
    send(addr, "POST", path, headers, &login_body(user, password))
}

fn put_cli(data: &Path, project: &str, path: &str, bytes: &[u8]) {
    let out = run_with_input(data, &["file", "put", project, "main", path], bytes);
    assert!(out.status.success(), "{}", stderr(&out));
}

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// `demo/app.cfg` with `a.json` on `main` and a `develop` branch; the
/// user `demo` (no role), password `PW`.
fn setup(dir: &TestDir) -> PathBuf {
    let data = dir.data();
    ok(&data, &["init"]);
    cli(&data, "project create demo app --type cfg");
    put_cli(&data, "demo/app.cfg", "a.json", A_JSON);
    cli(&data, "branch create demo/app.cfg develop --from main");
    add(&data, "demo", &[]);
    data
}

fn login_body(user: &str, password: &str) -> Vec<u8> {
    serde_json::json!({ "username": user, "password": password })
        .to_string()
        .into_bytes()
}

/// Every record of `.cfgstore/audit.log`, oldest first.
fn audit_log(data: &Path) -> Vec<Value> {
    std::fs::read_to_string(data.join(".cfgstore/audit.log"))
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn audit_len(data: &Path) -> u64 {
    std::fs::metadata(data.join(".cfgstore/audit.log")).map_or(0, |m| m.len())
}

/// The records of one action.
fn audited(data: &Path, action: &str) -> Vec<Value> {
    audit_log(data)
        .into_iter()
        .filter(|r| r["action"] == action)
        .collect()
}

fn targets(records: &Value) -> Vec<String> {
    records
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["target"].as_str().unwrap().to_string())
        .collect()
}

fn tokens(data: &Path) -> Vec<Value> {
    cli_json(data, "token list").as_array().unwrap().clone()
}

fn token_names(data: &Path) -> Vec<String> {
    let name = |t: &Value| t["name"].as_str().unwrap().to_string();
    tokens(data).iter().map(name).collect()
}

fn vm_rss_kb(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[test]
fn half_closed_clients_get_whole_answers() {
    let dir = TestDir::new("attacks-halfclose");
    let data = setup(&dir);
    let server = TestServer::start(&data);
    let addr = server.addr;
    let (_, token) = create_token(&data, "demo", &[]);
    // Keep-alive and `Connection: close` alike: the request is complete,
    // the end of input only says no other request follows.
    for connection in ["", "Connection: close\r\n"] {
        let req = format!(
            "GET {API}/projects/app.cfg/repository/files/a.json/raw?ref=main HTTP/1.1\r\n\
             Host: {addr}\r\n{connection}PRIVATE-TOKEN: {token}\r\n\r\n"
        );
        let started = Instant::now();
        let r = raw_exchange(addr, req.as_bytes(), true);
        let hung = started.elapsed() > Duration::from_secs(10);
        let answer = (
            r.status,
            r.body.as_slice(),
            r.header("content-length"),
            hung,
        );
        assert_eq!(answer, (200, A_JSON, Some("8"), false), "{connection:?}");
    }
    // An admin POST that creates a token: the secret comes back, and the
    // token exists.
    let login = session(addr, "demo");
    let body = br#"{"name":"half-closed"}"#;
    let mut bytes = format!(
        "POST {ADMIN}/tokens HTTP/1.1\r\nHost: {addr}\r\nCookie: {}\r\nX-CSRF-Token: {}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        login.cookie,
        login.csrf,
        body.len()
    )
    .into_bytes();
    bytes.extend_from_slice(body);
    let r = raw_exchange(addr, &bytes, true);
    assert_eq!(r.status, 201, "{}", r.text());
    let created = r.json();
    let secret = created["token"].as_str().unwrap();
    let hex = secret.bytes().all(|b| b"0123456789abcdef".contains(&b));
    assert!(secret.len() == 64 && hex, "{secret}");
    let listed = tokens(&data);
    let found: Vec<&Value> = listed.iter().filter(|t| t["id"] == created["id"]).collect();
    assert_eq!(found.len(), 1, "{listed:?}");
    let (name, owner) = (&found[0]["name"], &found[0]["owner"]);
    assert_eq!(
        (name.as_str(), owner.as_str()),
        (Some("half-closed"), Some("demo"))
    );
    // The secret works.
    let r = server.get(
        &format!("{API}/projects/app.cfg/repository/branches"),
        &[("PRIVATE-TOKEN", secret)],
    );
    assert_eq!(r.status, 200);
}

#[test]
fn a_single_valued_parameter_given_twice_is_refused() {
    let dir = TestDir::new("attacks-twice");
    let data = setup(&dir);
    let server = TestServer::start(&data);
    let (_, token) = create_token(&data, "demo", &[]);
    let auth = [("PRIVATE-TOKEN", token.as_str())];
    let project = format!("{API}/projects/demo%2Fapp.cfg/repository");
    for path in [
        format!("{project}/tree?ref=main&ref=develop"),
        format!("{project}/files/a.json/raw?ref=main&ref=develop"),
        format!("{project}/files/a.json?ref=main&ref=main"),
        format!("{project}/tree?per_page=1&ref=main&per_page=2"),
        format!("{project}/tree?ref=main&r%65f=develop"),
    ] {
        let r = server.get(&path, &auth);
        assert_eq!(r.status, 400, "{path}: {}", r.text());
        let param = ["ref", "per_page"][path.contains("per_page=2") as usize];
        let message = r.message();
        assert!(
            message.contains(&format!("\"{param}\"")) && message.contains("more than once"),
            "{path}: {message}"
        );
    }
    // The token may repeat, the same one: accepted.
    let twice = |path: &str, second: &str| {
        let query = format!("private_token={token}&ref=main&private_token={second}");
        server.get(&format!("{project}/{path}?{query}"), &[])
    };
    let r = twice("tree", &token);
    assert_eq!(
        (r.status, &r.json()[0]["path"]),
        (200, &Value::from("a.json"))
    );
    let r = twice("files/a.json/raw", &token);
    assert_eq!((r.status, r.body.as_slice()), (200, A_JSON));
    // Two different tokens are ambiguous: refused.
    let (_, other) = create_token(&data, "demo", &[]);
    assert_eq!(twice("tree", &other).status, 401);
}

#[test]
fn session_paths_on_the_root_and_method_not_allowed() {
    let dir = TestDir::new("attacks-session-paths");
    let data = setup(&dir);
    let server = TestServer::start(&data);
    let addr = server.addr;
    for prefix in ["", ADMIN] {
        let r = login_as(addr, &format!("{prefix}/user/login"), &[], "demo");
        assert_eq!(r.status, 200, "{prefix}: {}", r.text());
        let cookie = r.header("set-cookie").unwrap();
        let cookie = cookie.split(';').next().unwrap().to_string();
        let csrf = r.json()["csrf_token"].as_str().unwrap().to_string();
        let session = |method, path: &str, csrf: &str| {
            let headers = [("Cookie", cookie.as_str()), ("X-CSRF-Token", csrf)];
            let path = format!("{prefix}/user/{path}");
            send(addr, method, &path, &headers, b"")
        };
        let me = session("GET", "me", "").json();
        let who = (me["username"].as_str(), me["csrf_token"].as_str());
        assert_eq!(who, (Some("demo"), Some(csrf.as_str())), "{prefix}");
        // Logout is unsafe: the CSRF token is required here too.
        assert_eq!(session("POST", "logout", "").status, 403, "{prefix}");
        let out = session("POST", "logout", &csrf);
        assert_eq!(out.status, 200, "{prefix}: {}", out.text());
        assert!(out.header("set-cookie").unwrap().contains("Max-Age=0"));
        let me = session("GET", "me", "");
        assert_eq!(me.status, 401, "{prefix}: the session ended");
    }
    for (method, path, allow) in [
        ("GET", "/site-builder/api/user/login", "POST"),
        ("GET", "/user/login", "POST"),
        ("GET", "/user/logout", "POST"),
        ("POST", "/user/me", "GET, HEAD"),
        ("DELETE", "/site-builder/api/projects", "GET, HEAD, POST"),
        ("PUT", "/site-builder/api/projects", "GET, HEAD, POST"),
    ] {
        let r = send(addr, method, path, &[], b"");
        assert_eq!(r.status, 405, "{method} {path}");
        assert_eq!(r.header("allow"), Some(allow), "{method} {path}");
        assert_eq!(r.json()["code"], "METHOD_NOT_ALLOWED");
    }
}

#[test]
fn the_audit_trail_shows_only_what_the_user_may_read() {
    let dir = TestDir::new("attacks-audit");
    let data = setup(&dir);
    for (owner, name) in [("bob", "secret"), ("carol", "mine"), ("public", "shared")] {
        cli(&data, &format!("project create {owner} {name} --type cfg"));
        put_cli(&data, &format!("{owner}/{name}.cfg"), "a.json", A_JSON);
    }
    add(&data, "bob", &["ROLE_SITEBUILDER_USER"]);
    add(&data, "carol", &[]);
    add(&data, "viewer", &["ROLE_SITEBUILDER_EDITOR__READONLY"]);
    let server = TestServer::start(&data);
    let addr = server.addr;
    let bob = session(addr, "bob");
    let put = |l: &Login, project: &str| {
        let path = format!("/projects/{project}/branches/main/files/b.json");
        let r = l.send(addr, "PUT", &path, b"{\"b\":2}");
        assert_eq!(r.status, 200, "{project}: {}", r.text());
    };
    put(&bob, "bob%2Fsecret.cfg");
    let carol = session(addr, "carol");
    put(&carol, "carol%2Fmine.cfg");

    let r = carol.send(addr, "GET", "/audit", b"");
    assert_eq!(r.status, 200, "{}", r.text());
    let seen = r.json();
    for record in seen.as_array().unwrap() {
        let target = record["target"].as_str().unwrap();
        let own = record["actor"] == "carol";
        assert!(
            own || target.starts_with("carol/") || target.starts_with("public/"),
            "carol sees {record}"
        );
        assert!(
            !target.contains("bob/") && record["actor"] != "bob",
            "carol sees {record}"
        );
    }
    let seen = targets(&seen);
    for want in [
        "carol/mine.cfg",
        "public/shared.cfg",
        "carol/mine.cfg@main:a.json",
        "carol/mine.cfg@main:b.json",
        "public/shared.cfg@main:a.json",
        "user:carol",
    ] {
        assert!(
            seen.iter().any(|t| t == want),
            "{want} missing from {seen:?}"
        );
    }
    // Narrowed to a project carol cannot read: refused, whether or not
    // it exists; to one she can: only that project.
    for project in ["bob%2Fsecret.cfg", "bob%2Fnothing.cfg"] {
        let r = carol.send(addr, "GET", &format!("/audit?project={project}"), b"");
        assert_eq!(r.status, 403, "{project}: {}", r.text());
    }
    let r = carol.send(addr, "GET", "/audit?project=carol%2Fmine.cfg", b"");
    assert_eq!(r.status, 200);
    let mine = targets(&r.json());
    assert_eq!(mine.len(), 3, "{mine:?}");
    assert!(
        mine.iter().all(|t| t.starts_with("carol/mine.cfg")),
        "{mine:?}"
    );

    // READONLY sees every record, bob's private project included.
    let viewer = session(addr, "viewer");
    let r = viewer.send(addr, "GET", "/audit", b"");
    assert_eq!(r.status, 200);
    let all = targets(&r.json());
    assert_eq!(all.len(), audit_log(&data).len(), "every record");
    for want in [
        "bob/secret.cfg",
        "bob/secret.cfg@main:b.json",
        "user:bob",
        "carol/mine.cfg@main:b.json",
    ] {
        assert!(all.iter().any(|t| t == want), "{want} missing from {all:?}");
    }
    let r = viewer.send(addr, "GET", "/audit?project=bob%2Fsecret.cfg", b"");
    assert_eq!((r.status, targets(&r.json()).len()), (200, 3));
}

#[test]
fn prefix_roles_stay_out_of_the_public_area_and_other_folders() {
    let dir = TestDir::new("attacks-prefix");
    let data = setup(&dir);
    for owner in ["public", "bob"] {
        cli(&data, &format!("project create {owner} team-a --type cfg"));
    }
    add(&data, "teama", &["ROLE_SITEBUILDER_USER__team-a"]);
    add(&data, "pubed", &["ROLE_SITEBUILDER_EDITOR__PUBLIC"]);
    let server = TestServer::start(&data);
    let addr = server.addr;
    let file = |project: &str| format!("/projects/{project}/branches/main/files/x.json");
    let teama = session(addr, "teama");
    let r = teama.send(addr, "PUT", &file("public%2Fteam-a.cfg"), A_JSON);
    assert_eq!(
        (r.status, r.json()["code"].as_str()),
        (403, Some("FORBIDDEN")),
        "{}",
        r.text()
    );
    for body in [
        r#"{"name":"team-a","type":"new","owner":"bob"}"#,
        r#"{"name":"team-a","owner":"bob"}"#,
        r#"{"name":"team-a","type":"new","owner":"public"}"#,
    ] {
        let r = teama.send(addr, "POST", "/projects", body.as_bytes());
        assert_eq!(r.status, 403, "{body}: {}", r.text());
    }
    let r = teama.send(
        addr,
        "POST",
        "/projects/public%2Fteam-a.cfg/branches",
        br#"{"name":"b"}"#,
    );
    assert_eq!(r.status, 403, "{}", r.text());
    assert_eq!(count(&data, "project list"), 3, "no project was created");
    assert_eq!(count(&data, "branch list public/team-a.cfg"), 1);
    // What the roles do grant still works.
    let r = teama.send(addr, "PUT", &file("bob%2Fteam-a.cfg"), A_JSON);
    assert_eq!(r.status, 200, "{}", r.text());
    let pubed = session(addr, "pubed");
    let r = pubed.send(addr, "PUT", &file("public%2Fteam-a.cfg"), A_JSON);
    assert_eq!(r.status, 200, "{}", r.text());
    // And the prefix role cannot remove what the public editor wrote.
    let r = teama.send(addr, "DELETE", &file("public%2Fteam-a.cfg"), b"");
    assert_eq!(r.status, 403, "{}", r.text());
    let stored = cli(&data, "file get public/team-a.cfg main x.json");
    assert_eq!(stored.as_bytes(), A_JSON);
}

#[test]
fn no_user_may_be_named_public() {
    let dir = TestDir::new("attacks-public-user");
    let data = setup(&dir);
    let users = cli_json(&data, "user list");
    let trail = audit_log(&data).len();
    for roles in [&[][..], &["--role", "ROLE_SITEBUILDER_EDITOR__ROOT"]] {
        let mut args = vec!["user", "add", "public", "--password-stdin"];
        args.extend_from_slice(roles);
        let out = run_with_input(&data, &args, b"public-password-1\n");
        assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
        assert!(stderr(&out).contains("public area"), "{}", stderr(&out));
    }
    assert_eq!(cli_json(&data, "user list"), users, "no user was added");
    assert_eq!(audit_log(&data).len(), trail, "nothing was recorded");
    let server = TestServer::start(&data);
    assert_eq!(login_as(server.addr, LOGIN, &[], "public").status, 401);
}

/// Sends one login whose last byte waits for the barrier, so that every
/// request reaches the server at once; returns the status.
fn login_at_once(addr: SocketAddr, barrier: &Barrier, body: &[u8]) -> u16 {
    let mut bytes = format!(
        "POST {LOGIN} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    bytes.extend_from_slice(body);
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(120)))
        .unwrap();
    let (head, last) = bytes.split_at(bytes.len() - 1);
    stream.write_all(head).unwrap();
    barrier.wait();
    stream.write_all(last).unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).unwrap();
    let text = String::from_utf8_lossy(&raw);
    text.split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("{text}"))
}

#[test]
fn logins_sent_at_once_are_judged_no_more_than_the_limit() {
    let dir = TestDir::new("attacks-login-burst");
    let data = setup(&dir);
    let server = TestServer::start(&data);
    let addr = server.addr;
    let barrier = Arc::new(Barrier::new(60));
    let threads: Vec<_> = (0..60)
        .map(|i| {
            let barrier = Arc::clone(&barrier);
            let password = if i == 30 {
                PW.to_string()
            } else {
                format!("wrong-password-{i}")
            };
            std::thread::spawn(move || {
                login_at_once(addr, &barrier, &login_body("demo", &password))
            })
        })
        .collect();
    let statuses: Vec<u16> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    assert!(
        statuses.iter().all(|s| [200, 401, 429].contains(s)),
        "{statuses:?}"
    );
    let judged = statuses.iter().filter(|s| **s != 429).count();
    assert!((1..=5).contains(&judged), "{judged} judged: {statuses:?}");
    let checked = audited(&data, "login.failure").len() + audited(&data, "login.success").len();
    assert_eq!(checked, judged, "only judged attempts are recorded");
}

/// `count` failed logins with 30 KB user names, four at a time, from the
/// forwarded address `ip(i)`: how many were judged (401; the rest 429).
fn huge_name_logins(addr: SocketAddr, count: usize, ip: fn(usize) -> String) -> usize {
    let one = move |i: usize| {
        let (name, ip) = (format!("{i}-{}", "n".repeat(30 * 1024)), ip(i));
        let body = login_body(&name, "wrong-pw-1");
        send(addr, "POST", LOGIN, &[("X-Forwarded-For", &ip)], &body).status
    };
    let threads: Vec<_> = (0..4)
        .map(|t| std::thread::spawn(move || (t..count).step_by(4).map(one).collect::<Vec<_>>()))
        .collect();
    let statuses: Vec<u16> = threads
        .into_iter()
        .flat_map(|t| t.join().unwrap())
        .collect();
    assert!(
        statuses.iter().all(|s| *s == 401 || *s == 429),
        "{statuses:?}"
    );
    statuses.iter().filter(|s| **s == 401).count()
}

#[test]
fn failed_logins_with_huge_names_cost_no_memory() {
    let dir = TestDir::new("attacks-login-memory");
    let data = setup(&dir);
    // Behind a trusted proxy, attempts from addresses of their own are
    // each judged (the per-address limit turns none away), so a name
    // kept per attempt would show. The allocator gives freed memory back
    // at once (not 10 ms later, at its next call in that thread), so
    // VmRSS counts what is kept, not hash buffers freed a moment ago.
    let env = [
        ("CFGSTORE_TRUSTED_PROXIES", "127.0.0.1"),
        ("MIMALLOC_PURGE_DELAY", "0"),
    ];
    let daemon = Daemon::start_with(&data, dir.path().join("daemon.log"), &env);
    let addr = daemon.addr;
    let distinct = |i: usize| format!("10.{}.{}.{}", i >> 16, (i >> 8) & 255, i & 255);
    // Warm up the same way as measured below, so the first allocations
    // of each path (and the password hashes' memory) are in the baseline;
    // both measurements follow a run of throttled attempts, which hash
    // nothing.
    assert_eq!(huge_name_logins(addr, 40, |i| format!("10.255.0.{i}")), 40);
    assert_eq!(huge_name_logins(addr, 2000, |_| "192.0.2.1".into()), 20);
    let before = vm_rss_kb(daemon.pid());
    assert_eq!(huge_name_logins(addr, 1000, distinct), 1000);
    assert_eq!(huge_name_logins(addr, 2000, |_| "192.0.2.2".into()), 20);
    let after = vm_rss_kb(daemon.pid());
    assert!(
        after.saturating_sub(before) < 20 * 1024,
        "VmRSS grew from {before} kB to {after} kB"
    );
    // Healthy: it answers, reads work, and it stops cleanly.
    assert_eq!(daemon.get(&format!("{API}/health"), &[]).status, 200);
    let (_, token) = create_token(&data, "demo", &[]);
    let raw = format!("{API}/projects/app.cfg/repository/files/a.json/raw");
    let r = daemon.get(&raw, &[("PRIVATE-TOKEN", &token)]);
    assert_eq!((r.status, r.body.as_slice()), (200, A_JSON));
    assert_eq!(daemon.stop().code(), Some(0));
}

/// 20 failed logins (different unknown users) from `forwarded`, then one
/// more from there and one from `other`: their statuses.
fn failures_then(addr: SocketAddr, forwarded: &str, other: &str) -> (u16, u16) {
    let from = |ip: &str, i: usize| {
        let forwarded = [("X-Forwarded-For", ip)];
        login_as(addr, LOGIN, &forwarded, &format!("ghost{i}")).status
    };
    for i in 0..20 {
        assert_eq!(from(forwarded, i), 401, "attempt {i}");
    }
    (from(forwarded, 20), from(other, 21))
}

#[test]
fn forwarded_addresses_count_only_behind_a_trusted_proxy() {
    let dir = TestDir::new("attacks-forwarded");
    let data = setup(&dir);
    let env = [("CFGSTORE_TRUSTED_PROXIES", "127.0.0.1")];
    let daemon = Daemon::start_with(&data, dir.path().join("daemon.log"), &env);
    let (again, other) = failures_then(daemon.addr, "203.0.113.7", "203.0.113.8");
    assert_eq!(
        (again, other),
        (429, 401),
        "the limit is per forwarded address"
    );
    // Hops the client wrote itself (left of the proxy's) change nothing.
    let spoofed = [("X-Forwarded-For", "198.51.100.1, 203.0.113.7")];
    assert_eq!(login_as(daemon.addr, LOGIN, &spoofed, "ghost").status, 429);
    // The proxy's own address was not charged for them either.
    assert_eq!(login_as(daemon.addr, LOGIN, &[], "ghost").status, 401);
    let failures = audited(&data, "login.failure");
    let from_7 = failures.iter().filter(|r| r["ip"] == "203.0.113.7").count();
    assert_eq!(
        (failures.len(), from_7),
        (22, 20),
        "the trail names the client"
    );
    drop(daemon);

    // Without a trusted proxy the header is the client's word: ignored.
    let dir = TestDir::new("attacks-forwarded-untrusted");
    let data = setup(&dir);
    let server = TestServer::start(&data);
    let (again, other) = failures_then(server.addr, "203.0.113.7", "203.0.113.8");
    assert_eq!(
        (again, other),
        (429, 429),
        "every attempt came from 127.0.0.1"
    );
    let failures = audited(&data, "login.failure");
    assert!(failures.iter().all(|r| r["ip"] == "127.0.0.1"));
}

#[test]
fn login_csrf_is_refused() {
    let dir = TestDir::new("attacks-login-csrf");
    let data = setup(&dir);
    let server = TestServer::start(&data);
    let addr = server.addr;
    let json_type = ("Content-Type", "application/json");
    for (headers, status) in [
        (vec![json_type, ("Origin", "http://evil.example")], 403),
        (vec![json_type, ("Origin", "null")], 403),
        (vec![json_type, ("Sec-Fetch-Site", "cross-site")], 403),
        (vec![("Content-Type", "text/plain")], 415),
        (vec![("Content-Type", "text/plain; charset=utf-8")], 415),
        (
            vec![("Content-Type", "multipart/form-data; boundary=x")],
            415,
        ),
        (vec![json_type, ("Origin", "http://127.0.0.1:1")], 403),
    ] {
        let r = login_as(addr, LOGIN, &headers, "demo");
        assert_eq!(r.status, status, "{headers:?}: {}", r.text());
        assert_eq!(r.header("set-cookie"), None, "{headers:?}: no session");
    }
    assert_eq!(audited(&data, "login.success").len(), 0);
    let origin = format!("http://{addr}");
    let same_site = [
        json_type,
        ("Origin", &origin),
        ("Sec-Fetch-Site", "same-origin"),
    ];
    let r = login_as(addr, LOGIN, &same_site, "demo");
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r
        .header("set-cookie")
        .unwrap()
        .starts_with("cfgstore_session="));
    assert_eq!(audited(&data, "login.success").len(), 1);
}

#[test]
fn refused_requests_cannot_flood_the_audit_trail() {
    let dir = TestDir::new("attacks-audit-flood");
    let data = setup(&dir);
    let before = audit_len(&data);
    let server = TestServer::start(&data);
    let path = format!(
        "{API}/projects/{}/repository/branches",
        "p".repeat(30 * 1024)
    );
    let agent = "a".repeat(1024);
    for i in 0..300 {
        let r = server.get(&path, &[("User-Agent", &agent)]);
        assert_eq!(r.status, 401, "request {i}: {}", r.text());
    }
    let grown = audit_len(&data) - before;
    assert!(grown < 64 * 1024, "the trail grew by {grown} bytes");
    drop(server); // shutdown writes the open summaries
    let records = audit_log(&data);
    for r in &records {
        let target = r["target"].as_str().unwrap();
        assert!(target.len() <= 260, "a target of {} bytes", target.len());
        assert!(
            r.to_string().len() < 1024,
            "a record of {} bytes",
            r.to_string().len()
        );
    }
    let denied: Vec<&Value> = records
        .iter()
        .filter(|r| r["action"] == "auth.denied" && r["ip"] == "127.0.0.1")
        .collect();
    assert_eq!(denied.len(), 20, "the per-address allowance");
    assert!(denied
        .iter()
        .all(|r| r["target"].as_str().unwrap().ends_with('…')));
    let summaries = audited(&data, "auth.denied.summary");
    assert_eq!(summaries.len(), 1, "{summaries:?}");
    assert_eq!(summaries[0]["target"], "127.0.0.1");
    assert_eq!(summaries[0]["details"]["suppressed"], 280);
    assert!(audit_len(&data) - before < 64 * 1024);
}

#[test]
fn a_token_is_rotated_once() {
    let dir = TestDir::new("attacks-rotate");
    let data = setup(&dir);
    let server = TestServer::start(&data);
    let login = session(server.addr, "demo");
    // Through the CLI first, then the API; and the other way round.
    let api = |id: &str| {
        let rotate = format!("/tokens/{id}/rotate");
        login.send(server.addr, "POST", &rotate, br#"{"grace":"1h"}"#)
    };
    let refused_by_cli = |id: &str| {
        let out = run(&data, &["token", "rotate", id, "--grace", "1h"]);
        assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
        assert!(stderr(&out).contains("already rotated"), "{}", stderr(&out));
    };
    let (id, _) = create_token(&data, "demo", &[]);
    cli(&data, &format!("token rotate {id} --grace 1h"));
    refused_by_cli(&id);
    let r = api(&id);
    assert_eq!(r.status, 409, "{}", r.text());
    assert!(r.message().contains("already rotated"), "{}", r.message());

    let id = cli_json(&data, "token create --owner demo --name api")["id"].clone();
    let id = id.as_str().unwrap();
    let r = api(id);
    let name = r.json()["name"].clone();
    assert_eq!(
        (r.status, name.as_str()),
        (201, Some("api-v2")),
        "{}",
        r.text()
    );
    let r = api(id);
    assert_eq!(r.status, 409, "{}", r.text());
    refused_by_cli(id);

    let mut names = token_names(&data);
    names.sort();
    assert_eq!(names, ["api", "api-v2", "test", "test-v2"]);
}

#[test]
fn invisible_characters_are_refused() {
    let dir = TestDir::new("attacks-invisible");
    let data = setup(&dir);
    let server = TestServer::start(&data);
    let login = session(server.addr, "demo");
    let state = |data: &Path| {
        let branches = cli_json(data, "branch list demo/app.cfg");
        (branches, cli_json(data, "history list demo/app.cfg main"))
    };
    let before = state(&data);
    for path in [
        "a%E2%80%AEb.json",
        "a%E2%80%8Bb.json",
        "d%E2%80%AE/x.json",
        "d/%E2%80%8B.json",
    ] {
        let url = format!("/projects/demo%2Fapp.cfg/branches/main/files/{path}");
        let r = login.send(server.addr, "PUT", &url, A_JSON);
        assert_eq!(
            (r.status, r.json()["code"].as_str()),
            (400, Some("BAD_REQUEST")),
            "{path}: {}",
            r.text()
        );
    }
    for path in ["a\u{202e}b.json", "a\u{200b}b.json", "d\u{202e}/x.json"] {
        let args = ["file", "put", "demo/app.cfg", "main", path];
        let out = run_with_input(&data, &args, A_JSON);
        assert_eq!(out.status.code(), Some(2), "{path:?}: {}", stderr(&out));
    }
    assert_eq!(state(&data), before, "nothing changed");
    let names = token_names(&data);
    for name in ["a\u{202e}b", "a\u{200b}b"] {
        let out = run(
            &data,
            &["token", "create", "--owner", "demo", "--name", name],
        );
        assert_eq!(out.status.code(), Some(2), "{name:?}: {}", stderr(&out));
    }
    let body = "{\"name\":\"a\u{202e}b\"}";
    let r = login.send(server.addr, "POST", "/tokens", body.as_bytes());
    assert_eq!(r.status, 400, "{}", r.text());
    assert_eq!(token_names(&data), names, "no token was created");
}

#[test]
fn read_answers_are_private_and_links_carry_no_secret() {
    let dir = TestDir::new("attacks-cache");
    let data = setup(&dir);
    let server = TestServer::start(&data);
    let (_, token) = create_token(&data, "demo", &[]);
    let auth = [("PRIVATE-TOKEN", token.as_str())];
    let project = format!("{API}/projects/app.cfg/repository");
    let private = (Some("private"), Some("PRIVATE-TOKEN"));
    for (path, status) in [
        (format!("{project}/branches"), 200),
        (format!("{project}/files/a.json/raw?ref=main"), 200),
        (format!("{project}/files/nope.json/raw?ref=main"), 404),
        (format!("{project}/branches/nope"), 404),
        (format!("{project}/nothing-here"), 404),
    ] {
        let r = server.get(&path, &auth);
        let caching = (r.header("cache-control"), r.header("vary"));
        assert_eq!((r.status, caching), (status, private), "{path}");
    }
    let r = server.get(&format!("{project}/branches"), &[]);
    let caching = (r.header("cache-control"), r.header("vary"));
    assert_eq!((r.status, caching), (401, private), "without a token");
    for path in [
        format!("{project}/branches?private_token={token}&per_page=1"),
        format!("{project}/branches?per_page=1&private_token={token}&page=1"),
    ] {
        let r = server.get(&path, &[]);
        assert_eq!(r.status, 200, "{path}");
        assert_eq!(r.header("cache-control"), Some("private"));
        assert_eq!(
            (r.header("x-total"), r.json().as_array().unwrap().len()),
            (Some("2"), 1)
        );
        let link = r.header("link").unwrap();
        assert!(
            link.contains("rel=\"next\"") && link.contains("per_page=1") && link.contains("page=2"),
            "{link}"
        );
        assert!(
            !link.contains("private_token") && !link.contains(&token),
            "{link}"
        );
    }
}

#[test]
fn token_list_survives_a_token_scoped_to_many_long_repo_ids() {
    let dir = TestDir::new("attacks-wide-list");
    let data = setup(&dir);
    let repos: Vec<String> = (0..520)
        .map(|i| format!("r{i:03}-{}", "x".repeat(115)))
        .collect();
    assert!(repos.iter().all(|r| r.len() == 120));
    let wide = cli_json(
        &data,
        &format!(
            "token create --owner demo --name wide --repos {}",
            repos.join(",")
        ),
    );
    assert_eq!(wide["repos"].as_array().unwrap().len(), 520);
    let (narrow, _) = create_token(&data, "demo", &[]);
    let out = run(&data, &["token", "list"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3, "a header and a line per token:\n{text}");
    assert!(lines[0].starts_with("ID"));
    for id in [wide["id"].as_str().unwrap(), narrow.as_str()] {
        assert_eq!(
            lines.iter().filter(|l| l.starts_with(id)).count(),
            1,
            "{id}"
        );
    }
    let out = run(&data, &["token", "show", wide["id"].as_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    // The whole scope stays in --json.
    let listed = tokens(&data);
    let scoped = listed.iter().find(|t| t["id"] == wide["id"]).unwrap();
    assert_eq!(scoped["repos"].as_array().unwrap().len(), 520);
    assert_eq!(scoped["repos"][519], repos[519].as_str());
}
