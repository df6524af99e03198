//! The command line as a person meets it: imports that ask before they
//! remove, export, completions and the man page, refusals that explain,
//! `demo`, the committed example store, and the request log.

use std::process::Stdio;

use crate::util::{self, json, ok, put, run, store_with_project, Daemon, TestDir, PROJECT};

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn import_replace_asks_before_it_removes_and_counts_what_it_did() {
    let dir = TestDir::new("import-replace");
    let data = store_with_project(&dir);
    put(&data, "keep.json", b"{}");
    put(&data, "old.json", b"{}");
    let src = dir.path().join("src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("keep.json"), b"{\"v\":2}").unwrap();
    std::fs::write(src.join("new.json"), b"{}").unwrap();
    let src = src.to_str().unwrap();
    let before = util::history_len(&data);
    // Without a terminal and without --yes, a removing replace refuses.
    let refused = run(&data, &["import", PROJECT, "main", src, "--replace"]);
    assert_eq!(refused.status.code(), Some(2), "{}", stderr(&refused));
    assert!(stderr(&refused).contains("removes 1 files") && stderr(&refused).contains("old.json"));
    assert!(stderr(&refused).contains("--yes"));
    assert_eq!(util::history_len(&data), before, "nothing written");
    let done = ok(
        &data,
        &["import", PROJECT, "main", src, "--replace", "--yes"],
    );
    assert!(done.contains("1 added, 1 changed, 1 removed"), "{done}");
    let outcome = json(
        &data,
        &["import", PROJECT, "main", src, "--replace", "--yes"],
    );
    assert_eq!(outcome["changed"], false);
    // A replace that removes nothing does not ask.
    std::fs::write(std::path::Path::new(src).join("more.json"), b"[]").unwrap();
    let added = json(&data, &["import", PROJECT, "main", src, "--replace"]);
    assert_eq!(
        (added["added"].as_u64(), added["removed"].as_u64()),
        (Some(1), Some(0))
    );
}

#[test]
fn export_writes_a_version_as_a_plain_folder_tree() {
    let dir = TestDir::new("export");
    let data = dir.data();
    ok(&data, &["init", "--example"]);
    let p = "demo/b2b-cnc.erp-config";
    let out = dir.path().join("out");
    let said = ok(&data, &["export", p, "main", out.to_str().unwrap()]);
    assert!(said.starts_with("exported "), "{said}");
    let files = json(&data, &["file", "ls", p, "main", "--recursive"]);
    for f in files
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["type"] == "blob")
    {
        let path = f["path"].as_str().unwrap();
        let want = ok(&data, &["file", "get", p, "main", path]);
        assert_eq!(
            std::fs::read_to_string(out.join(path)).unwrap(),
            want,
            "{path}"
        );
    }
    // Round trip: an import of the export changes nothing.
    let back = json(
        &data,
        &[
            "import",
            p,
            "main",
            out.to_str().unwrap(),
            "--replace",
            "--yes",
        ],
    );
    assert_eq!(back["changed"], false);
    // An older version, into an empty folder; a non-empty one is refused.
    let old = dir.path().join("old");
    ok(
        &data,
        &[
            "export",
            p,
            "main",
            old.to_str().unwrap(),
            "--version",
            "v0002",
        ],
    );
    assert!(
        old.join("legacy/old-export.json").exists(),
        "v0002 still had it"
    );
    assert!(!out.join("legacy/old-export.json").exists());
    let again = run(&data, &["export", p, "main", out.to_str().unwrap()]);
    assert_eq!(again.status.code(), Some(2));
    assert!(stderr(&again).contains("not empty"));
}

#[test]
fn completions_and_the_man_page() {
    let dir = TestDir::new("completions");
    let data = dir.data();
    for shell in ["bash", "zsh", "fish"] {
        let script = ok(&data, &["completions", shell]);
        assert!(
            script.contains("rollback") && script.contains("export"),
            "{shell}"
        );
    }
    let bash = dir.path().join("c.bash");
    std::fs::write(&bash, ok(&data, &["completions", "bash"])).unwrap();
    let syntax = std::process::Command::new("bash")
        .arg("-n")
        .arg(&bash)
        .output()
        .unwrap();
    assert!(syntax.status.success(), "{}", stderr(&syntax));
    let man = ok(&data, &["man"]);
    assert!(
        man.starts_with(".ie") && man.contains(".TH cfgstore 1"),
        "{}",
        &man[..200]
    );
    assert_eq!(run(&data, &["completions", "tcsh"]).status.code(), Some(2));
}

#[test]
fn token_create_refuses_what_could_never_work_and_warns_about_missing_repos() {
    let dir = TestDir::new("token-create");
    let data = dir.data();
    ok(&data, &["init", "--example"]);
    let past = run(
        &data,
        &util::token_create("demo", "t", &["--expires", "2020-01-01"]),
    );
    assert_eq!(past.status.code(), Some(2));
    assert!(stderr(&past).contains("in the past"), "{}", stderr(&past));
    let nobody = run(
        &data,
        &["token", "create", "--owner", "demoo", "--name", "t"],
    );
    assert_eq!(nobody.status.code(), Some(2));
    assert!(
        stderr(&nobody).contains("no projects and is no user"),
        "{}",
        stderr(&nobody)
    );
    let typo = run(
        &data,
        &util::token_create("demo", "t", &["--repos", "b2b-cnc.erp-confg"]),
    );
    assert!(typo.status.success());
    assert!(stderr(&typo).contains("warning: demo has no project b2b-cnc.erp-confg"));
    assert_eq!(json(&data, &["token", "list"]).as_array().unwrap().len(), 1);
}

#[test]
fn audit_takes_durations_and_refuses_what_it_cannot_mean() {
    let dir = TestDir::new("audit-cli");
    let data = dir.data();
    ok(&data, &["init", "--example"]);
    let recent = json(&data, &["audit", "--since", "1h"]);
    assert!(
        !recent.as_array().unwrap().is_empty(),
        "the example was made just now"
    );
    let future = json(&data, &["audit", "--until", "7d"]);
    assert!(
        future.as_array().unwrap().is_empty(),
        "nothing is a week old"
    );
    let bad_time = run(&data, &["audit", "--since", "yesterday"]);
    assert_eq!(bad_time.status.code(), Some(2));
    assert!(stderr(&bad_time).contains("invalid time") && !stderr(&bad_time).contains("expiry"));
    let bad_action = run(&data, &["audit", "--action", "file.upload"]);
    assert_eq!(bad_action.status.code(), Some(2));
    assert!(stderr(&bad_action).contains("file.put") && stderr(&bad_action).contains("rollback"));
    let family = json(&data, &["audit", "--action", "file"]);
    assert!(family
        .as_array()
        .unwrap()
        .iter()
        .all(|r| r["action"].as_str().unwrap().starts_with("file.")));
    let bare = run(&data, &["audit", "--project", "b2b-cnc.erp-config"]);
    assert_eq!(bare.status.code(), Some(2));
    assert!(
        stderr(&bare).contains("demo/b2b-cnc.erp-config"),
        "{}",
        stderr(&bare)
    );
}

#[test]
fn demo_binds_its_port_before_it_prints_and_honours_data() {
    let dir = TestDir::new("demo");
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = busy.local_addr().unwrap().to_string();
    let out = std::process::Command::new(util::bin())
        .args(["demo", "--listen", &addr])
        .env_remove("CFGSTORE_DATA")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let all = format!("{}{}", String::from_utf8_lossy(&out.stdout), stderr(&out));
    assert!(all.contains("cannot listen"), "{all}");
    assert!(
        !all.contains("Read token"),
        "no token before the port is ours: {all}"
    );
    // --data: a non-empty directory is refused, untouched.
    let full = dir.path().join("full");
    std::fs::create_dir_all(&full).unwrap();
    std::fs::write(full.join("mine.txt"), b"x").unwrap();
    let refused = std::process::Command::new(util::bin())
        .args([
            "--data",
            full.to_str().unwrap(),
            "demo",
            "--listen",
            "127.0.0.1:0",
        ])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(refused.status.code(), Some(2), "{}", stderr(&refused));
    assert_eq!(std::fs::read_dir(&full).unwrap().count(), 1);
}

#[test]
fn a_copy_of_the_committed_example_serves_and_repairs() {
    let dir = TestDir::new("example-copy");
    let copy = dir.path().join("example");
    let status = std::process::Command::new("cp")
        .arg("-r")
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/data-example"))
        .arg(&copy)
        .status()
        .unwrap();
    assert!(status.success());
    let daemon = Daemon::start(&copy, dir.path().join("daemon.log"));
    let health = util::request(daemon.addr, "GET", &format!("{}/health", util::API), &[]);
    assert_eq!(health.status, 200);
    let (_, token) = util::create_token(&copy, "demo", &[]);
    let branches = util::request(
        daemon.addr,
        "GET",
        &format!(
            "{}/projects/b2b-cnc.erp-config/repository/branches",
            util::API
        ),
        &[("PRIVATE-TOKEN", &token)],
    );
    assert_eq!(branches.status, 200, "{}", branches.text());
    drop(daemon);
    // A checkout's modes are looser than the store's: fsck --repair tightens them.
    ok(&copy, &["fsck", "--repair"]);
    ok(&copy, &["fsck"]);
    // The request log's durations are rounded (ms=0.412, not 0.41149300000000005).
    let log = std::fs::read_to_string(dir.path().join("daemon.log")).unwrap();
    let line = log
        .lines()
        .find(|l| l.contains("route=\"branches\""))
        .unwrap();
    let ms = line
        .split("ms=")
        .nth(1)
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap();
    let decimals = ms.split('.').nth(1).map_or(0, str::len);
    assert!(decimals <= 3, "{line}");
}
