//! Compare: two states of a project — branches, `branch@vNNNN`, commit ids,
//! across branches — per file added/removed/modified with a unified diff,
//! and the changed keys of JSON, YAML and TOML files, order- and
//! format-insensitive; through the admin API, `cfgstore compare` and
//! `cfgstore history diff`.

use crate::util::{self, json, ok, run, run_with_input, Login, TestDir, TestServer};

const P: &str = "alice/shop.cfg";
const API: &str = "/projects/shop.cfg/compare";

fn put(data: &std::path::Path, branch: &str, path: &str, bytes: &[u8]) {
    let out = run_with_input(data, &["file", "put", P, branch, path], bytes);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// main: v0001 empty, v0002 app.json, v0003 app.yaml + notes, v0004 the
/// changes under test; `release` is copied from main at v0004 (its v0001).
fn setup(dir: &TestDir) -> std::path::PathBuf {
    let data = dir.data();
    ok(&data, &["init"]);
    util::add_user(&data, "alice", "alice-password", &[]);
    ok(
        &data,
        &["project", "create", "alice", "shop", "--type", "cfg"],
    );
    put(
        &data,
        "main",
        "app.json",
        br#"{"db": {"port": 5432, "host": "db1"}, "jobs": 4}"#,
    );
    put(
        &data,
        "main",
        "app.yaml",
        b"db:\n  port: 5432\n  host: db1\nlist: [a, b]\n",
    );
    put(&data, "main", "notes.txt", b"one\ntwo\n");
    ok(&data, &["branch", "create", P, "release", "--from", "main"]);
    // v0005..v0007 on main: a real change, a reformatting, a removal+add.
    put(
        &data,
        "main",
        "app.json",
        b"{\n  \"jobs\": 4,\n  \"db\": {\"host\": \"db1\", \"port\": 6543}\n}\n",
    );
    put(
        &data,
        "main",
        "app.yaml",
        b"list: [a, b]\ndb: {host: db1, port: 5432}\n",
    );
    ok(&data, &["file", "rm", P, "main", "notes.txt"]);
    put(&data, "main", "settings.toml", b"[cache]\nttl = 60\n");
    data
}

#[test]
fn the_admin_api_compares_branches_versions_and_commit_ids() {
    let dir = TestDir::new("compare-api");
    let data = setup(&dir);
    let server = TestServer::start(&data);
    let login = Login::new(server.addr, "alice", "alice-password");
    let r = login.send(
        server.addr,
        "GET",
        &format!("{API}?from=release&to=main"),
        b"",
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let c = r.json();
    assert_eq!(c["from"]["branch"], "release");
    assert_eq!(c["to"]["branch"], "main");
    assert_eq!(c["to"]["version"], "v0008");
    assert_eq!(
        (
            c["added"].as_u64(),
            c["removed"].as_u64(),
            c["modified"].as_u64()
        ),
        (Some(1), Some(1), Some(2))
    );
    let file = |path: &str| {
        c["files"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["path"] == path)
            .unwrap_or_else(|| panic!("{path} in {c}"))
            .clone()
    };
    let app = file("app.json");
    assert_eq!(app["status"], "modified");
    assert_eq!(
        app["keys"],
        serde_json::json!([{"key": "db.port", "change": "changed", "from": 5432, "to": 6543}]),
        "key order and layout do not count, the port does"
    );
    assert!(
        app["diff"]
            .as_str()
            .unwrap()
            .contains("+  \"db\": {\"host\": \"db1\", \"port\": 6543}"),
        "{app}"
    );
    let yaml = file("app.yaml");
    assert_eq!(yaml["status"], "modified");
    assert_eq!(yaml["keys"], serde_json::json!([]), "reformatted only");
    let notes = file("notes.txt");
    assert_eq!(notes["status"], "removed");
    assert!(notes.get("keys").is_none());
    assert_eq!(notes["diff"], "@@ -1,2 +0,0 @@\n-one\n-two\n");
    assert_eq!(file("settings.toml")["status"], "added");

    // The same states by version and by commit id.
    let commit = c["from"]["commit_id"].as_str().unwrap().to_string();
    let short = c["to"]["short_id"].as_str().unwrap().to_string();
    for (from, to) in [
        ("main@v0004".to_string(), "main@v0008".to_string()),
        (commit.clone(), short.clone()),
        ("release@v0001".to_string(), "main".to_string()),
    ] {
        let again = login
            .send(
                server.addr,
                "GET",
                &format!("{API}?from={}&to={to}", from.replace('@', "%40")),
                b"",
            )
            .json();
        assert_eq!(again["files"], c["files"], "{from} -> {to}");
        assert_eq!(again["from"]["ref"], from.as_str());
    }
    // Equal states: nothing differs.
    let same = login
        .send(
            server.addr,
            "GET",
            &format!("{API}?from=main&to={short}"),
            b"",
        )
        .json();
    assert_eq!(same["files"], serde_json::json!([]));

    // Refusals: a missing side is 400, an unknown ref 404 with the branches
    // named, a version past the branch's last 404, another user's project 403.
    let r = login.send(server.addr, "GET", &format!("{API}?from=main"), b"");
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(r.text().contains("to is missing"), "{}", r.text());
    let r = login.send(server.addr, "GET", &format!("{API}?from=main&to=nope"), b"");
    assert_eq!(r.status, 404);
    assert!(
        r.json()["hint"].as_str().unwrap().contains("main, release"),
        "{}",
        r.text()
    );
    let r = login.send(
        server.addr,
        "GET",
        &format!("{API}?from=main@v0042&to=main"),
        b"",
    );
    assert_eq!(r.status, 404, "{}", r.text());
    let r = login.send(
        server.addr,
        "GET",
        &format!("{API}?from=..%2Fx&to=main"),
        b"",
    );
    assert_eq!(r.status, 400, "{}", r.text());
    ok(
        &data,
        &["project", "create", "bob", "private", "--type", "cfg"],
    );
    let r = login.send(
        server.addr,
        "GET",
        "/projects/bob%2Fprivate.cfg/compare?from=main&to=main",
        b"",
    );
    assert_eq!(r.status, 403);
}

#[test]
fn the_cli_compares_and_history_diff_shows_the_keys() {
    let dir = TestDir::new("compare-cli");
    let data = setup(&dir);
    let text = ok(&data, &["compare", P, "release", "main"]);
    assert!(text.starts_with("release (v0001, "), "{text}");
    assert!(text.contains("1 added, 1 removed, 2 changed"), "{text}");
    assert!(
        text.contains("  changed  app.json\n             db.port: 5432 → 6543\n"),
        "{text}"
    );
    assert!(
        text.contains("  changed  app.yaml\n             (formatting only: no key changed)\n"),
        "{text}"
    );
    assert!(text.contains("  removed  notes.txt\n"), "{text}");
    assert!(text.contains("  added    settings.toml\n"), "{text}");
    assert!(
        text.contains("--- app.json (release)\n+++ app.json (main)\n@@"),
        "{text}"
    );

    let c = json(&data, &["compare", P, "main@v0004", "main"]);
    assert_eq!(c["from"]["version"], "v0004");
    assert_eq!(c["files"].as_array().unwrap().len(), 4);

    let d = json(&data, &["history", "diff", P, "main", "v0004", "v0008"]);
    assert_eq!(d["changed"], serde_json::json!(["app.json", "app.yaml"]));
    assert_eq!(d["keys"]["app.json"][0]["key"], "db.port");
    assert_eq!(d["keys"]["app.yaml"], serde_json::json!([]));
    let text = ok(&data, &["history", "diff", P, "main", "v0004", "v0008"]);
    assert!(text.contains("db.port: 5432 → 6543"), "{text}");

    // An unknown ref is an error that names the branches; a bad one exits 2.
    let out = run(&data, &["compare", P, "main", "nope"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("no branch or version \"nope\" (branches: main, release)"),
        "{err}"
    );
    let out = run(&data, &["compare", P, "main", "bad name!"]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
