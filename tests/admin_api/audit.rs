//! The audit trail of every change, secrets at rest and in the log, and
//! project listings by role.

use super::*;

#[test]
fn every_change_is_audited_and_no_secret_is_at_rest_or_in_the_log() {
    let dir = TestDir::new("audit");
    let data = dir.data();
    ok(&data, &["init"]);
    let passwords = ["root-password-1", "demo-password-1"];
    add_user(
        &data,
        "root",
        passwords[0],
        &["ROLE_SITEBUILDER_EDITOR__ROOT"],
    );
    add_user(&data, "demo", passwords[1], &[]);
    // CLI changes.
    ok(
        &data,
        &["project", "create", "demo", "app", "--type", "cfg"],
    );
    ok(
        &data,
        &["branch", "create", "demo/app.cfg", "dev", "--from", "main"],
    );
    put_cli(&data, "demo/app.cfg", "a.json", b"{}");
    ok(&data, &["file", "rm", "demo/app.cfg", "main", "a.json"]);
    let src = dir.path().join("src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("b.json"), "{}").unwrap();
    ok(
        &data,
        &["import", "demo/app.cfg", "main", src.to_str().unwrap()],
    );
    ok(
        &data,
        &["rollback", "demo/app.cfg", "main", "--to", "v0002", "--yes"],
    );
    let (cli_token_id, cli_token) = create_token(&data, "demo", &[]);
    ok(
        &data,
        &["token", "update", &cli_token_id, "--name", "renamed"],
    );
    let rotated = json(&data, &["token", "rotate", &cli_token_id]);
    let rotated_token = rotated["token"].as_str().unwrap().to_string();
    ok(
        &data,
        &["token", "revoke", rotated["id"].as_str().unwrap(), "--yes"],
    );
    ok(&data, &["user", "grant", "demo", "ROLE_SITEBUILDER_USER"]);
    ok(&data, &["user", "revoke", "demo", "ROLE_SITEBUILDER_USER"]);
    add_user(&data, "temp", "temp-password-1", &[]);
    let out = run_with_input(
        &data,
        &["user", "passwd", "temp", "--password-stdin"],
        b"temp-password-2\n",
    );
    assert!(out.status.success());
    ok(&data, &["user", "disable", "temp"]);
    ok(&data, &["token", "unbind", &cli_token_id]);

    // API changes, through the real daemon so its log can be searched.
    let daemon = util::Daemon::start(&data, dir.path().join("daemon.log"));
    let login = Login::new(daemon.addr, "demo", passwords[1]);
    let failed = send(
        daemon.addr,
        "POST",
        "/site-builder/api/user/login",
        &[],
        br#"{"username":"demo","password":"not-the-password"}"#,
    );
    assert_eq!(failed.status, 401);
    let b = "/projects/app.cfg/branches";
    for (method, path, body) in [
        (
            "POST",
            "/projects".to_string(),
            br#"{"name":"second","type":"cfg"}"#.to_vec(),
        ),
        ("POST", b.to_string(), br#"{"name":"feature/x"}"#.to_vec()),
        ("PUT", format!("{b}/main/files/c.json"), b"{}".to_vec()),
        ("DELETE", format!("{b}/main/files/c.json"), vec![]),
        ("POST", format!("{b}/main/rollback?to=v0002"), vec![]),
    ] {
        let r = login.send(daemon.addr, method, &path, &body);
        assert!(r.status < 300, "{method} {path}: {}", r.text());
    }
    let r = login
        .send(
            daemon.addr,
            "POST",
            "/tokens",
            br#"{"name":"api","fingerprint_required":true}"#,
        )
        .json();
    let (api_token_id, api_token) = (
        r["id"].as_str().unwrap().to_string(),
        r["token"].as_str().unwrap().to_string(),
    );
    login.send(
        daemon.addr,
        "PATCH",
        &format!("/tokens/{api_token_id}"),
        br#"{"name":"api2"}"#,
    );
    let read = |token: &str, instance: &str| {
        send(
            daemon.addr,
            "GET",
            &format!("{API}/projects/app.cfg/repository/branches"),
            &[("PRIVATE-TOKEN", token), ("X-Instance-Id", instance)],
            b"",
        )
        .status
    };
    assert_eq!(read(&api_token, "host-1"), 200);
    assert_eq!(read(&api_token, "host-2"), 401);
    let rotated_api = login
        .send(
            daemon.addr,
            "POST",
            &format!("/tokens/{api_token_id}/rotate"),
            b"",
        )
        .json();
    let rotated_api_token = rotated_api["token"].as_str().unwrap().to_string();
    login.send(
        daemon.addr,
        "DELETE",
        &format!("/tokens/{}", rotated_api["id"].as_str().unwrap()),
        b"",
    );
    login.send(daemon.addr, "POST", "/user/logout", b"");

    let root = Login::new(daemon.addr, "root", passwords[0]);
    let records = root.send(daemon.addr, "GET", "/audit", b"").json();
    let seen: Vec<(String, String)> = records
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["actor"].as_str().unwrap().to_string(),
                r["action"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let cli_actor = seen
        .iter()
        .find(|(a, _)| a.starts_with("cli:"))
        .map(|(a, _)| a.clone())
        .expect("CLI records");
    for (actor, action) in [
        (cli_actor.as_str(), "user.add"),
        (&cli_actor, "project.create"),
        (&cli_actor, "branch.create"),
        (&cli_actor, "file.put"),
        (&cli_actor, "file.delete"),
        (&cli_actor, "file.import"),
        (&cli_actor, "rollback"),
        (&cli_actor, "token.create"),
        (&cli_actor, "token.update"),
        (&cli_actor, "token.rotate"),
        (&cli_actor, "token.revoke"),
        (&cli_actor, "user.grant"),
        (&cli_actor, "user.revoke"),
        (&cli_actor, "user.passwd"),
        (&cli_actor, "user.disable"),
        ("demo", "login.success"),
        ("demo", "login.failure"),
        ("demo", "project.create"),
        ("demo", "branch.create"),
        ("demo", "file.put"),
        ("demo", "file.delete"),
        ("demo", "rollback"),
        ("demo", "token.create"),
        ("demo", "token.update"),
        ("demo", "token.rotate"),
        ("demo", "token.revoke"),
        ("demo", "logout"),
        (&format!("token:{api_token_id}"), "fingerprint.bind"),
        ("anonymous", "fingerprint.mismatch"),
        ("root", "login.success"),
    ] {
        assert!(
            seen.iter().any(|(a, b)| a == actor && b == action),
            "no audit record of {actor} {action}: {seen:?}"
        );
    }
    let rec = records
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["action"] == "file.put" && r["actor"] == "demo")
        .unwrap();
    assert_eq!(rec["ip"], "127.0.0.1");
    assert!(
        rec["details"]["old_short_id"].is_string() && rec["details"]["new_short_id"].is_string()
    );
    // Filters, over HTTP and on the command line.
    let tokens_only = root
        .send(daemon.addr, "GET", "/audit?action=token&actor=demo", b"")
        .json();
    assert!(tokens_only.as_array().unwrap().iter().all(|r| r["action"]
        .as_str()
        .unwrap()
        .starts_with("token.")
        && r["actor"] == "demo"));
    assert_eq!(tokens_only.as_array().unwrap().len(), 4);
    let project = json(
        &data,
        &["audit", "--project", "demo/app.cfg", "--action", "file.put"],
    );
    assert!(!project.as_array().unwrap().is_empty());
    assert!(project
        .as_array()
        .unwrap()
        .iter()
        .all(|r| r["target"].as_str().unwrap().starts_with("demo/app.cfg@")));

    drop(daemon);
    let mut secrets: Vec<String> = passwords
        .iter()
        .chain(&["temp-password-1", "temp-password-2"])
        .map(|s| s.to_string())
        .collect();
    secrets.extend([
        cli_token,
        rotated_token,
        api_token,
        rotated_api_token,
        root.cookie.split('=').nth(1).unwrap().to_string(),
    ]);
    let log = std::fs::read_to_string(dir.path().join("daemon.log")).unwrap();
    for secret in &secrets {
        assert!(!log.contains(secret.as_str()), "a secret is in the log");
        for entry in walkdir::WalkDir::new(&data)
            .into_iter()
            .filter_map(|e| e.ok())
            .filter(|e| e.file_type().is_file())
        {
            let bytes = std::fs::read(entry.path()).unwrap();
            assert!(
                !bytes.windows(secret.len()).any(|w| w == secret.as_bytes()),
                "a secret is in {}",
                entry.path().display()
            );
        }
    }
}

#[test]
fn project_listing_follows_roles() {
    let dir = TestDir::new("listing");
    let data = setup(&dir);
    ok(
        &data,
        &["project", "create", "alice", "team-a", "--type", "cfg"],
    );
    add_user(
        &data,
        "carol",
        "carol-password",
        &["ROLE_SITEBUILDER_USER__team-a"],
    );
    add_user(
        &data,
        "eve",
        "eve-password",
        &["ROLE_SITEBUILDER_EDITOR__READONLY"],
    );
    let server = TestServer::start(&data);
    let ids = |user: &str, password: &str| {
        let login = Login::new(server.addr, user, password);
        let r = login.send(server.addr, "GET", "/projects", b"");
        assert_eq!(r.header("cache-control"), Some("no-store"));
        r.json()
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["path_with_namespace"].as_str().unwrap().to_string())
            .collect::<Vec<_>>()
    };
    assert_eq!(
        ids("demo", "demo-password"),
        ["demo/b2b-cnc.erp-config", "public/units.erp-config"]
    );
    assert_eq!(
        ids("carol", "carol-password"),
        ["alice/team-a.cfg", "public/units.erp-config"]
    );
    assert_eq!(
        ids("eve", "eve-password"),
        [
            "alice/team-a.cfg",
            "demo/b2b-cnc.erp-config",
            "public/units.erp-config"
        ]
    );
}
