//! The admin API over real HTTP: the golden role table, sessions, CSRF,
//! throttling, conditional writes, rollback, audit, and no secret at rest.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use crate::util::{
    self, add_user, create_token, json, ok, run_with_input, send, Login, TestDir, TestServer, API,
};

const ROLES: &[(&str, &[&str])] = &[
    ("none", &[]),
    ("user", &["ROLE_SITEBUILDER_USER"]),
    ("prefix", &["ROLE_SITEBUILDER_USER__team-a"]),
    ("public", &["ROLE_SITEBUILDER_EDITOR__PUBLIC"]),
    ("readonly", &["ROLE_SITEBUILDER_EDITOR__READONLY"]),
    ("root", &["ROLE_SITEBUILDER_EDITOR__ROOT"]),
];

fn put_cli(data: &std::path::Path, project: &str, path: &str, bytes: &[u8]) {
    let out = run_with_input(data, &["file", "put", project, "main", path], bytes);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Every role of SPEC §6 × every admin endpoint × {own project, another
/// user's, prefix match, prefix near-miss, public area}, against the frozen
/// expectations in tests/golden/admin_roles.tsv.
#[test]
fn golden_role_table() {
    let dir = TestDir::new("golden");
    let data = dir.data();
    ok(&data, &["init"]);
    for (role, grants) in ROLES {
        let user = format!("u-{role}");
        add_user(&data, &user, "password-1234", grants);
        ok(&data, &["project", "create", &user, "own", "--type", "cfg"]);
    }
    for (owner, name) in [
        ("bob", "other"),
        ("bob", "team-a"),
        ("bob", "team-ab"),
        ("public", "shared"),
    ] {
        ok(&data, &["project", "create", owner, name, "--type", "cfg"]);
    }
    let shared = [
        "bob/other.cfg",
        "bob/team-a.cfg",
        "bob/team-ab.cfg",
        "public/shared.cfg",
    ];
    let owns: Vec<String> = ROLES
        .iter()
        .map(|(r, _)| format!("u-{r}/own.cfg"))
        .collect();
    for project in shared
        .iter()
        .copied()
        .chain(owns.iter().map(String::as_str))
    {
        // v0002 holds seed.txt = "1" (a snapshot once "2" is written).
        put_cli(&data, project, "seed.txt", b"1");
        put_cli(&data, project, "seed.txt", b"2");
    }
    let server = TestServer::start(&data);
    let golden = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/golden/admin_roles.tsv"
    ))
    .unwrap();
    let mut expected: BTreeMap<(String, String, String), u16> = BTreeMap::new();
    for line in golden
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let f: Vec<&str> = line.split('\t').collect();
        expected.insert(
            (f[0].into(), f[1].into(), f[2].into()),
            f[3].parse().unwrap(),
        );
    }
    let mut mismatches = Vec::new();
    let mut checked = 0;
    // Every answer is compared with its golden row; mismatches are listed
    // together at the end.
    let mut compare = |role: &str, endpoint: &str, target: &str, r: &util::Resp| {
        let key = (role.to_string(), endpoint.to_string(), target.to_string());
        let want = expected
            .get(&key)
            .unwrap_or_else(|| panic!("golden table lacks {key:?}"));
        checked += 1;
        if r.status != *want {
            mismatches.push(format!(
                "{key:?}: got {} want {want}: {}",
                r.status,
                r.text()
            ));
        }
    };
    for (role, _) in ROLES {
        let user = format!("u-{role}");
        let login = Login::new(server.addr, &user, "password-1234");
        // Earlier roles' rollbacks changed these; put them back.
        for project in shared
            .iter()
            .copied()
            .chain(std::iter::once(format!("{user}/own.cfg").as_str()))
        {
            put_cli(&data, project, "seed.txt", b"2");
        }
        let targets = [
            ("own", "own.cfg".to_string(), format!("{user}/own.cfg")),
            ("other", "bob%2Fother.cfg".into(), "bob/other.cfg".into()),
            (
                "prefix_match",
                "bob%2Fteam-a.cfg".into(),
                "bob/team-a.cfg".into(),
            ),
            (
                "prefix_near_miss",
                "bob%2Fteam-ab.cfg".into(),
                "bob/team-ab.cfg".into(),
            ),
            (
                "public",
                "public%2Fshared.cfg".into(),
                "public/shared.cfg".into(),
            ),
        ];
        for (target, id, project) in &targets {
            let b = format!("/projects/{id}/branches");
            let calls: Vec<(&str, &str, String, Vec<u8>)> = vec![
                ("branches.list", "GET", b.clone(), vec![]),
                ("tree", "GET", format!("{b}/main/tree?recursive=1"), vec![]),
                (
                    "file.get",
                    "GET",
                    format!("{b}/main/files/seed.txt"),
                    vec![],
                ),
                ("history", "GET", format!("{b}/main/history"), vec![]),
                (
                    "compare",
                    "GET",
                    format!("/projects/{id}/compare?from=main@v0002&to=main"),
                    vec![],
                ),
                ("fleet", "GET", format!("/projects/{id}/fleet"), vec![]),
                (
                    "snapshot.tree",
                    "GET",
                    format!("{b}/main/snapshots/v0002/tree"),
                    vec![],
                ),
                (
                    "snapshot.file",
                    "GET",
                    format!("{b}/main/snapshots/v0002/files/seed.txt"),
                    vec![],
                ),
                (
                    "branch.create",
                    "POST",
                    b.clone(),
                    format!("{{\"name\":\"b-{role}\"}}").into_bytes(),
                ),
                (
                    "file.put",
                    "PUT",
                    format!("{b}/main/files/put-{role}.txt"),
                    b"x".to_vec(),
                ),
                (
                    "file.delete",
                    "DELETE",
                    format!("{b}/main/files/del-{role}.txt"),
                    vec![],
                ),
                (
                    "rollback",
                    "POST",
                    format!("{b}/main/rollback?to=v0002"),
                    vec![],
                ),
            ];
            for (endpoint, method, path, body) in calls {
                if endpoint == "file.delete" {
                    put_cli(&data, project, &format!("del-{role}.txt"), b"to delete");
                }
                let r = login.send(server.addr, method, &path, &body);
                compare(role, endpoint, target, &r);
                if r.status == 403 {
                    assert_eq!(r.message(), "403 Forbidden");
                }
            }
        }
        let owner_level: Vec<(&str, &str, &str, String, String)> = vec![
            (
                "project.create",
                "own",
                "POST",
                "/projects".into(),
                format!("{{\"name\":\"p-{role}\",\"type\":\"cfg\"}}"),
            ),
            (
                "project.create",
                "public",
                "POST",
                "/projects".into(),
                format!("{{\"name\":\"p-{role}\",\"type\":\"cfg\",\"owner\":\"public\"}}"),
            ),
            (
                "project.create",
                "other",
                "POST",
                "/projects".into(),
                format!("{{\"name\":\"p-{role}\",\"type\":\"cfg\",\"owner\":\"bob\"}}"),
            ),
            ("tokens.list", "own", "GET", "/tokens".into(), String::new()),
            (
                "tokens.list",
                "other",
                "GET",
                "/tokens?owner=bob".into(),
                String::new(),
            ),
            (
                "token.create",
                "own",
                "POST",
                "/tokens".into(),
                "{\"name\":\"t\"}".into(),
            ),
            (
                "token.create",
                "other",
                "POST",
                "/tokens".into(),
                "{\"name\":\"t\",\"owner\":\"bob\"}".into(),
            ),
            (
                "audit",
                "-",
                "GET",
                "/audit?per_page=5".into(),
                String::new(),
            ),
        ];
        for (endpoint, target, method, path, body) in owner_level {
            let r = login.send(server.addr, method, &path, body.as_bytes());
            compare(role, endpoint, target, &r);
        }
    }
    assert_eq!(checked, expected.len(), "every golden row was exercised");
    assert!(
        mismatches.is_empty(),
        "{} mismatches:\n{}",
        mismatches.len(),
        mismatches.join("\n")
    );
}

/// `setup` in a temp dir named `name`, served by a test server.
fn served(name: &str) -> (TestDir, std::path::PathBuf, TestServer) {
    let dir = TestDir::new(name);
    let data = setup(&dir);
    let server = TestServer::start(&data);
    (dir, data, server)
}

fn setup(dir: &TestDir) -> std::path::PathBuf {
    let data = dir.data();
    ok(&data, &["init", "--example"]);
    add_user(&data, "demo", "demo-password", &[]);
    add_user(&data, "alice", "alice-password", &[]);
    data
}

#[test]
fn login_me_logout_and_cookie_flags() {
    let (_dir, _data, server) = served("login");
    let body = br#"{"username":"demo","password":"demo-password"}"#;
    let r = send(
        server.addr,
        "POST",
        "/site-builder/api/user/login",
        &[("Content-Type", "application/json")],
        body,
    );
    assert_eq!(r.status, 200);
    let cookie = r.header("set-cookie").unwrap();
    for flag in ["HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(cookie.contains(flag), "{cookie}");
    }
    assert!(!cookie.contains("Secure"), "plain HTTP by default");
    assert_eq!(r.header("cache-control"), Some("no-store"));
    let j = r.json();
    assert_eq!(j["username"], "demo");
    assert!(j["roles"].as_array().unwrap().is_empty());
    assert_eq!(j["csrf_token"].as_str().unwrap().len(), 64);

    // A form body works too.
    let form = send(
        server.addr,
        "POST",
        "/site-builder/api/user/login",
        &[("Content-Type", "application/x-www-form-urlencoded")],
        b"username=demo&password=demo-password",
    );
    assert_eq!(form.status, 200);

    let login = Login::new(server.addr, "demo", "demo-password");
    let me = login.send(server.addr, "GET", "/user/me", b"");
    assert_eq!(
        (me.status, me.json()["username"].as_str()),
        (200, Some("demo"))
    );
    assert_eq!(me.json()["csrf_token"], login.csrf);
    let out = login.send(server.addr, "POST", "/user/logout", b"");
    assert_eq!(out.status, 200);
    assert!(out.header("set-cookie").unwrap().contains("Max-Age=0"));
    assert_eq!(login.send(server.addr, "GET", "/user/me", b"").status, 401);

    // Wrong password, unknown user, missing fields, no cookie.
    let log_in = |body: &[u8]| {
        send(
            server.addr,
            "POST",
            "/site-builder/api/user/login",
            &[],
            body,
        )
    };
    for body in [
        &br#"{"username":"demo","password":"nope-nope"}"#[..],
        br#"{"username":"ghost","password":"whatever1"}"#,
    ] {
        let r = log_in(body);
        assert_eq!((r.status, r.message()), (401, "401 Unauthorized".into()));
    }
    assert_eq!(log_in(b"{}").status, 400);
    assert_eq!(log_in(b"not json").status, 400);
    assert_eq!(
        send(server.addr, "GET", "/site-builder/api/projects", &[], b"").status,
        401
    );
    assert_eq!(
        send(
            server.addr,
            "GET",
            "/site-builder/api/projects",
            &[("Cookie", "cfgstore_session=forged")],
            b""
        )
        .status,
        401
    );
}

#[test]
fn sessions_survive_a_restart_and_end_on_password_change_disable_and_timeouts() {
    let dir = TestDir::new("sessions");
    let data = setup(&dir);
    let now = Arc::new(AtomicI64::new(
        time::OffsetDateTime::now_utc().unix_timestamp(),
    ));
    let clock_now = Arc::clone(&now);
    let clock: cfgstore::api::Clock = Arc::new(move || {
        time::OffsetDateTime::from_unix_timestamp(clock_now.load(Ordering::SeqCst)).unwrap()
    });
    let server = TestServer::start_with_clock(&data, Arc::clone(&clock));
    let login = Login::new(server.addr, "demo", "demo-password");
    drop(server);
    let server = TestServer::start_with_clock(&data, clock);
    assert_eq!(
        login.send(server.addr, "GET", "/user/me", b"").status,
        200,
        "sessions survive a restart"
    );

    // Idle timeout (2 h by default).
    now.fetch_add(3 * 3600, Ordering::SeqCst);
    assert_eq!(login.send(server.addr, "GET", "/user/me", b"").status, 401);
    // Absolute timeout (24 h), even when used every hour. The store stamps
    // sessions with the real time, so the clock starts from it again.
    now.store(
        time::OffsetDateTime::now_utc().unix_timestamp(),
        Ordering::SeqCst,
    );
    let login = Login::new(server.addr, "demo", "demo-password");
    for _ in 0..23 {
        now.fetch_add(3600, Ordering::SeqCst);
        assert_eq!(login.send(server.addr, "GET", "/user/me", b"").status, 200);
    }
    now.fetch_add(3600 + 60, Ordering::SeqCst);
    assert_eq!(login.send(server.addr, "GET", "/user/me", b"").status, 401);
    now.store(
        time::OffsetDateTime::now_utc().unix_timestamp(),
        Ordering::SeqCst,
    );

    // A password change or disabling the user ends sessions at once.
    let login = Login::new(server.addr, "demo", "demo-password");
    run_with_input(
        &data,
        &["user", "passwd", "demo", "--password-stdin"],
        b"new-password-1\n",
    );
    assert_eq!(login.send(server.addr, "GET", "/user/me", b"").status, 401);
    let login = Login::new(server.addr, "demo", "new-password-1");
    ok(&data, &["user", "disable", "demo"]);
    assert_eq!(login.send(server.addr, "GET", "/user/me", b"").status, 401);
    let r = send(
        server.addr,
        "POST",
        "/site-builder/api/user/login",
        &[],
        br#"{"username":"demo","password":"new-password-1"}"#,
    );
    assert_eq!(r.status, 401, "a disabled user cannot log in");
}

#[test]
fn csrf_is_required_on_every_unsafe_request() {
    let (_dir, data, server) = served("csrf");
    let login = Login::new(server.addr, "demo", "demo-password");
    let path = format!(
        "/site-builder/api/projects/{}/branches/main/files/x.txt",
        "b2b-cnc.erp-config"
    );
    for csrf in [None, Some("wrong"), Some("")] {
        let mut headers = vec![("Cookie", login.cookie.as_str())];
        if let Some(c) = csrf {
            headers.push(("X-CSRF-Token", c));
        }
        for method in ["PUT", "DELETE", "POST"] {
            let r = send(server.addr, method, &path, &headers, b"x");
            assert!(
                r.status == 403 || r.status == 405,
                "{method} {csrf:?}: {}",
                r.status
            );
        }
        let r = send(server.addr, "PUT", &path, &headers, b"x");
        assert_eq!((r.status, r.message()), (403, "403 Forbidden".into()));
    }
    // Another session's token does not fit this session.
    let other = Login::new(server.addr, "alice", "alice-password");
    let r = send(
        server.addr,
        "PUT",
        &path,
        &[("Cookie", &login.cookie), ("X-CSRF-Token", &other.csrf)],
        b"x",
    );
    assert_eq!(r.status, 403);
    assert_eq!(
        login
            .send(
                server.addr,
                "PUT",
                path.trim_start_matches("/site-builder/api"),
                b"x"
            )
            .status,
        200
    );
    // A read token is no credential here, and a cookie none on the read API.
    let (_, token) = create_token(&data, "demo", &[]);
    let r = send(
        server.addr,
        "GET",
        "/site-builder/api/projects",
        &[("PRIVATE-TOKEN", &token)],
        b"",
    );
    assert_eq!(r.status, 401);
    let r = send(
        server.addr,
        "GET",
        &format!("{API}/projects/b2b-cnc.erp-config/repository/branches"),
        &[("Cookie", &login.cookie)],
        b"",
    );
    assert_eq!(r.status, 401);
}

#[test]
fn failed_logins_are_throttled() {
    let (_dir, _data, server) = served("throttle");
    for _ in 0..5 {
        let r = send(
            server.addr,
            "POST",
            "/site-builder/api/user/login",
            &[],
            br#"{"username":"demo","password":"wrong-password"}"#,
        );
        assert_eq!(r.status, 401);
    }
    let r = send(
        server.addr,
        "POST",
        "/site-builder/api/user/login",
        &[],
        br#"{"username":"demo","password":"demo-password"}"#,
    );
    assert_eq!(r.status, 429, "even the right password waits");
    let retry: u64 = r.header("retry-after").unwrap().parse().unwrap();
    assert!(retry > 0 && retry <= 900);
    // Other users are not locked out by demo's failures.
    Login::new(server.addr, "alice", "alice-password");
}

#[test]
fn if_match_conflicts_rollback_and_concurrent_cli_and_api_writers() {
    let (_dir, data, server) = served("writes");
    let login = Login::new(server.addr, "demo", "demo-password");
    let branch = "/projects/b2b-cnc.erp-config/branches/main";
    let short = |login: &Login| {
        let list = login
            .send(
                server.addr,
                "GET",
                "/projects/b2b-cnc.erp-config/branches",
                b"",
            )
            .json();
        util::short_id_in(&list, "main")
    };
    // Two editors read the same state; the first write wins, the second is told.
    let seen = short(&login);
    let put = |body: &[u8], if_match: &str| {
        send(
            server.addr,
            "PUT",
            &format!("/site-builder/api{branch}/files/operations.config.json"),
            &[
                ("Cookie", &login.cookie),
                ("X-CSRF-Token", &login.csrf),
                ("If-Match", if_match),
            ],
            body,
        )
    };
    assert_eq!(put(b"{\"editor\": 1}\n", &seen).status, 200);
    let stale = put(b"{\"editor\": 2}\n", &seen);
    assert_eq!(stale.status, 409);
    assert_eq!(stale.json()["code"], "CONFLICT");
    assert_eq!(
        login
            .send(
                server.addr,
                "GET",
                &format!("{branch}/files/operations.config.json"),
                b""
            )
            .text(),
        "{\"editor\": 1}\n"
    );
    assert_eq!(
        put(b"{\"editor\": 2}\n", &format!("\"{}\"", short(&login))).status,
        200,
        "quoted short_id works"
    );

    // Rollback through HTTP restores exact bytes and keeps the state before.
    let binary: Vec<u8> = (0..=255u8).rev().collect();
    let r = login.send(
        server.addr,
        "PUT",
        &format!("{branch}/files/bin/x.bin"),
        &binary,
    );
    let before_binary = r.json()["snapshot"].as_str().unwrap().to_string();
    login.send(
        server.addr,
        "PUT",
        &format!("{branch}/files/bin/x.bin"),
        b"overwritten",
    );
    let history = login.send(
        server.addr,
        "GET",
        &format!("{branch}/history?per_page=2&page=1"),
        b"",
    );
    assert_eq!(history.header("x-per-page"), Some("2"));
    // The top row is the live version; the one below it holds the binary.
    assert_eq!(history.json()[0]["live"], true);
    let newest = history.json()[1]["version"].as_str().unwrap().to_string();
    let r = login.send(
        server.addr,
        "POST",
        &format!("{branch}/rollback?to={newest}"),
        b"",
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        login
            .send(
                server.addr,
                "GET",
                &format!("{branch}/files/bin/x.bin"),
                b""
            )
            .body,
        binary
    );
    let old = login.send(
        server.addr,
        "GET",
        &format!("{branch}/snapshots/{before_binary}/files/operations.config.json"),
        b"",
    );
    assert_eq!(old.text(), "{\"editor\": 2}\n");
    assert_eq!(
        login
            .send(server.addr, "POST", &format!("{branch}/rollback"), b"")
            .status,
        400
    );
    assert_eq!(
        login
            .send(
                server.addr,
                "POST",
                &format!("{branch}/rollback?to=v9999"),
                b""
            )
            .status,
        404
    );

    // The CLI and the API write the same branch at once: nothing is lost.
    std::thread::scope(|s| {
        s.spawn(|| {
            for i in 0..15 {
                put_cli(
                    &data,
                    "demo/b2b-cnc.erp-config",
                    &format!("race/cli-{i}.txt"),
                    format!("cli {i}").as_bytes(),
                );
            }
        });
        s.spawn(|| {
            for i in 0..15 {
                let r = login.send(
                    server.addr,
                    "PUT",
                    &format!("{branch}/files/race%2Fapi-{i}.txt"),
                    format!("api {i}").as_bytes(),
                );
                assert_eq!(r.status, 200);
            }
        });
    });
    let tree = login
        .send(server.addr, "GET", &format!("{branch}/tree?path=race"), b"")
        .json();
    assert_eq!(tree.as_array().unwrap().len(), 30);
    assert!(ok(&data, &["fsck"]).contains("clean"));
}

#[test]
fn bodies_are_limited_and_validated() {
    let (dir, _data, server) = served("bodies");
    let login = Login::new(server.addr, "demo", "demo-password");
    let big = vec![b'x'; 10 * 1024 * 1024 + 1];
    let r = login.send(
        server.addr,
        "PUT",
        "/projects/b2b-cnc.erp-config/branches/main/files/big.bin",
        &big,
    );
    assert_eq!(r.status, 413);
    // Exactly at the limit is fine.
    let r = login.send(
        server.addr,
        "PUT",
        "/projects/b2b-cnc.erp-config/branches/main/files/big.bin",
        &big[1..],
    );
    assert_eq!(r.status, 200);
    for body in [
        &b"{"[..],
        b"[]",
        br#"{"name":"x","bogus":1}"#,
        br#"{"name":"../x"}"#,
        &[b'['; 100_000],
    ] {
        let r = login.send(
            server.addr,
            "POST",
            "/projects/b2b-cnc.erp-config/branches",
            body,
        );
        assert_eq!(
            r.status,
            400,
            "{}",
            String::from_utf8_lossy(&body[..body.len().min(40)])
        );
    }
    let r = login.send(
        server.addr,
        "POST",
        "/projects",
        br#"{"name":"../../etc","type":"x"}"#,
    );
    assert_eq!(r.status, 400);
    let r = login.send(
        server.addr,
        "PUT",
        "/projects/b2b-cnc.erp-config/branches/main/files/..%2F..%2Fescape",
        b"x",
    );
    assert_eq!(r.status, 400);
    assert!(!dir.path().join("escape").exists());
    let r = login.send(server.addr, "PATCH", "/projects", b"");
    assert_eq!(r.status, 405);
}

#[test]
fn tokens_through_the_admin_api() {
    let (_dir, _data, server) = served("admin-tokens");
    let login = Login::new(server.addr, "demo", "demo-password");
    let r = login.send(server.addr, "POST", "/tokens", br#"{"name":"erp","repos":["b2b-cnc.erp-config"],"expires_at":"2099-01-01","fingerprint_required":true}"#);
    assert_eq!(r.status, 201);
    let created = r.json();
    let (id, token) = (
        created["id"].as_str().unwrap().to_string(),
        created["token"].as_str().unwrap().to_string(),
    );
    let read = |headers: &[(&str, &str)]| {
        send(
            server.addr,
            "GET",
            &format!("{API}/projects/b2b-cnc.erp-config/repository/branches"),
            headers,
            b"",
        )
        .status
    };
    assert_eq!(
        read(&[("PRIVATE-TOKEN", &token), ("X-Instance-Id", "erp-1")]),
        200
    );
    let list = login.send(server.addr, "GET", "/tokens", b"").json();
    assert_eq!(list.as_array().unwrap().len(), 1);
    assert!(
        list[0].get("token").is_none(),
        "listings never show the secret"
    );
    assert_eq!(list[0]["fingerprint_bound"], true);
    // PATCH: clear the binding by turning the requirement off, narrow the scope.
    let r = login.send(
        server.addr,
        "PATCH",
        &format!("/tokens/{id}"),
        br#"{"fingerprint_required":false,"repos":["other.cfg"]}"#,
    );
    assert_eq!(r.status, 200);
    assert_eq!(read(&[("PRIVATE-TOKEN", &token)]), 403);
    let r = login.send(
        server.addr,
        "PATCH",
        &format!("/tokens/{id}"),
        br#"{"repos":[],"expires_at":null}"#,
    );
    assert_eq!(r.json()["expires_at"], serde_json::Value::Null);
    assert_eq!(read(&[("PRIVATE-TOKEN", &token)]), 200);
    // An absurd grace period is refused before anything is written.
    let r = login.send(
        server.addr,
        "POST",
        &format!("/tokens/{id}/rotate"),
        br#"{"grace":"99999999999d"}"#,
    );
    assert_eq!(r.status, 400, "{}", r.text());
    assert_eq!(
        login
            .send(server.addr, "GET", "/tokens", b"")
            .json()
            .as_array()
            .unwrap()
            .len(),
        1
    );
    // Rotate with a grace period, then revoke the successor.
    let r = login.send(
        server.addr,
        "POST",
        &format!("/tokens/{id}/rotate"),
        br#"{"grace":"1h"}"#,
    );
    assert_eq!(r.status, 201);
    let successor = r.json();
    assert_eq!(successor["name"], "erp-v2");
    let new_token = successor["token"].as_str().unwrap();
    assert_eq!(read(&[("PRIVATE-TOKEN", new_token)]), 200);
    assert_eq!(
        read(&[("PRIVATE-TOKEN", &token)]),
        200,
        "the old one works during the grace period"
    );
    let r = login.send(
        server.addr,
        "DELETE",
        &format!("/tokens/{}", successor["id"].as_str().unwrap()),
        b"",
    );
    assert_eq!(r.status, 204);
    assert_eq!(read(&[("PRIVATE-TOKEN", new_token)]), 401);
    // Another user's token ids are not found, not forbidden.
    let alice = Login::new(server.addr, "alice", "alice-password");
    assert_eq!(
        alice
            .send(server.addr, "DELETE", &format!("/tokens/{id}"), b"")
            .status,
        404
    );
    assert_eq!(read(&[("PRIVATE-TOKEN", &token)]), 200);
}

mod audit;
