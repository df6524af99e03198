//! Retention: `history prune` drops old versions (never the live one),
//! `gc` frees the contents no kept version uses — both audited, both safe
//! while the daemon and other writers run, and an interrupted prune is
//! something `fsck --repair` finishes.

use std::path::Path;

use crate::util::{
    self, create_token, json, ok, put, request, run, store_with_project, TestDir, TestServer, API,
    PROJECT,
};

fn fsck(data: &Path) -> serde_json::Value {
    let out = run(data, &["fsck", "--json"]);
    serde_json::from_slice(&out.stdout).expect("fsck --json")
}

#[test]
fn prune_keeps_the_newest_versions_and_gc_frees_what_only_the_dropped_used() {
    let dir = TestDir::new("prune");
    let data = store_with_project(&dir);
    // v0002..v0007: six contents of a.json.
    for i in 1..=6 {
        put(
            &data,
            "a.json",
            format!("{{\"i\": {i}, \"pad\": \"{}\"}}", "x".repeat(100)).as_bytes(),
        );
    }
    assert_eq!(util::history_len(&data), 7);
    let history = json(&data, &["history", "list", PROJECT, "main"]);
    let v3_commit = history[4]["commit_id"].as_str().unwrap().to_string();
    let (_, token) = create_token(&data, "demo", &[]);
    let server = TestServer::start(&data);
    let pinned = format!("{API}/projects/app.cfg/repository/files/a.json/raw?ref={v3_commit}");
    let r = request(server.addr, "GET", &pinned, &[("PRIVATE-TOKEN", &token)]);
    assert_eq!(r.status, 200, "v0003 is readable (and now cached)");

    // No terminal and no --yes: refused, nothing dropped.
    let out = run(&data, &["history", "prune", PROJECT, "main", "--keep", "3"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("Drop 4 version(s)") && err.contains("pass --yes"),
        "{err}"
    );
    assert_eq!(util::history_len(&data), 7);
    for bad in [
        &["--keep", "0"][..],
        &[][..],
        &["--keep", "2", "--older-than", "1d"][..],
        &["--older-than", "5"][..],
    ] {
        let mut args = vec!["history", "prune", PROJECT, "main", "--yes"];
        args.extend_from_slice(bad);
        assert_eq!(run(&data, &args).status.code(), Some(2), "{bad:?}");
    }

    let outcome = json(
        &data,
        &["history", "prune", PROJECT, "main", "--keep", "3", "--yes"],
    );
    assert_eq!(outcome["removed"], 4);
    assert_eq!(outcome["floor"], "v0005");
    assert_eq!(outcome["live"], "v0007");
    let history = json(&data, &["history", "list", PROJECT, "main"]);
    let versions: Vec<_> = history
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["version"].as_str().unwrap())
        .collect();
    assert_eq!(versions, ["v0007", "v0006", "v0005"]);
    assert_eq!(
        history[2]["changed"], 1,
        "the oldest kept keeps its recorded counts"
    );
    // The dropped versions are gone for every reader, the daemon's cache included.
    let r = request(server.addr, "GET", &pinned, &[("PRIVATE-TOKEN", &token)]);
    assert_eq!(r.status, 404, "{}", r.text());
    let out = run(
        &data,
        &[
            "file",
            "get",
            PROJECT,
            "main",
            "a.json",
            "--version",
            "v0003",
        ],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("version not found: v0003"));
    let out = run(
        &data,
        &["rollback", PROJECT, "main", "--to", "v0004", "--yes"],
    );
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    ok(
        &data,
        &["rollback", PROJECT, "main", "--to", "v0005", "--yes"],
    );

    // Their objects stay until gc: fsck counts them unreferenced. Three
    // contents of a.json (v0002..v0004) and the four trees of v0001
    // (empty) to v0004; v0005's tree is kept, and shared by the rollback.
    let report = fsck(&data);
    assert_eq!(report["problems"], serde_json::json!([]), "{report}");
    assert_eq!(report["unreferenced_objects"], 7);
    let freed = json(&data, &["gc"]);
    assert_eq!(freed["objects_removed"], 7);
    assert!(freed["bytes_freed"].as_u64().unwrap() > 300, "{freed}");
    let report = fsck(&data);
    assert_eq!(report["unreferenced_objects"], 0);
    assert_eq!(report["problems"], serde_json::json!([]), "{report}");
    assert_eq!(
        json(&data, &["gc"])["objects_removed"],
        0,
        "nothing left to free"
    );
    // The daemon still serves every kept version.
    let r = request(
        server.addr,
        "GET",
        &format!("{API}/projects/app.cfg/repository/files/a.json/raw?ref=main"),
        &[("PRIVATE-TOKEN", &token)],
    );
    assert_eq!(r.status, 200);
    assert!(
        r.text().contains("\"i\": 4"),
        "rolled back to v0005: {}",
        r.text()
    );

    // A pruned branch backs up and restores with its floor.
    let backup = dir.path().join("backup");
    let b = json(&data, &["backup", backup.to_str().unwrap()]);
    assert_eq!(b["fsck_clean"], true, "{b}");
    let restored = dir.path().join("restored");
    ok(&restored, &["restore", backup.to_str().unwrap()]);
    let history = json(&restored, &["history", "list", PROJECT, "main"]);
    assert_eq!(
        history.as_array().unwrap().len(),
        4,
        "v0005..v0008: {history}"
    );
    assert_eq!(fsck(&restored)["problems"], serde_json::json!([]));

    // Nothing more to drop; both changes are in the audit trail.
    let again = ok(
        &data,
        &["history", "prune", PROJECT, "main", "--keep", "10", "--yes"],
    );
    assert!(again.starts_with("nothing to drop"), "{again}");
    let trail = json(&data, &["audit", "--action", "history.prune"]);
    assert_eq!(trail.as_array().unwrap().len(), 1, "{trail}");
    assert_eq!(trail[0]["target"], "demo/app.cfg@main");
    assert_eq!(trail[0]["details"]["removed"], 4);
    let trail = json(&data, &["audit", "--action", "store.gc"]);
    assert_eq!(trail[1]["details"]["objects_removed"], 7, "{trail}");
}

#[test]
fn older_than_drops_the_versions_replaced_before_then() {
    let dir = TestDir::new("prune-age");
    let data = store_with_project(&dir);
    put(&data, "a.json", b"{\"v\": 1}"); // v0002
    put(&data, "a.json", b"{\"v\": 2}"); // v0003
    std::thread::sleep(std::time::Duration::from_millis(3100));
    put(&data, "a.json", b"{\"v\": 3}"); // v0004: v0003 was live until now
    let outcome = json(
        &data,
        &[
            "history",
            "prune",
            PROJECT,
            "main",
            "--older-than",
            "2s",
            "--yes",
        ],
    );
    assert_eq!(outcome["floor"], "v0003", "{outcome}");
    assert_eq!(outcome["removed"], 2);
    assert_eq!(util::history_len(&data), 2);
}

/// An interrupted prune (the floor written, old versions still there) is
/// reported by fsck and finished by `fsck --repair`.
#[test]
fn fsck_finishes_an_interrupted_prune() {
    let dir = TestDir::new("prune-fsck");
    let data = store_with_project(&dir);
    for i in 0..4 {
        put(&data, "a.json", format!("{{\"i\": {i}}}").as_bytes());
    }
    let branch = data.join("demo/app.cfg/branches/main");
    let saved = std::fs::read(branch.join("v0002")).unwrap();
    json(
        &data,
        &["history", "prune", PROJECT, "main", "--keep", "2", "--yes"],
    );
    std::fs::write(branch.join("v0002"), saved).unwrap();
    let report = fsck(&data);
    let problems = report["problems"].to_string();
    assert!(
        problems.contains("below FLOOR v0004, left by an interrupted prune"),
        "{report}"
    );
    ok(&data, &["fsck", "--repair"]);
    assert!(!branch.join("v0002").exists());
    assert_eq!(fsck(&data)["problems"], serde_json::json!([]));
    assert_eq!(util::history_len(&data), 2);
}

/// gc and prune run again and again while CLI processes and the daemon
/// write: every version kept references only contents that exist (fsck),
/// and every writer's last file reads back whole.
#[test]
fn gc_and_prune_are_safe_beside_running_writers() {
    let dir = TestDir::new("gc-race");
    let data = store_with_project(&dir);
    util::add_user(&data, "demo", "demo-password", &[]);
    let server = TestServer::start(&data);
    let login = util::Login::new(server.addr, "demo", "demo-password");
    let writers: Vec<_> = (0..3)
        .map(|w| {
            let data = data.clone();
            std::thread::spawn(move || {
                for seq in 0..15 {
                    put(
                        &data,
                        &format!("w{w}.txt"),
                        &util::verifiable_body(&format!("w{w}"), seq, 2000),
                    );
                }
            })
        })
        .collect();
    let api_writer = {
        let addr = server.addr;
        std::thread::spawn(move || {
            for seq in 0..15 {
                let r = login.send(
                    addr,
                    "PUT",
                    "/projects/app.cfg/branches/main/files/api.txt",
                    &util::verifiable_body("api", seq, 2000),
                );
                assert_eq!(r.status, 200, "{}", r.text());
            }
        })
    };
    let mut collected = 0;
    for round in 0..12 {
        collected += json(&data, &["gc"])["objects_removed"].as_u64().unwrap();
        if round % 3 == 0 {
            json(
                &data,
                &["history", "prune", PROJECT, "main", "--keep", "2", "--yes"],
            );
        }
    }
    for w in writers {
        w.join().unwrap();
    }
    api_writer.join().unwrap();
    json(
        &data,
        &["history", "prune", PROJECT, "main", "--keep", "2", "--yes"],
    );
    collected += json(&data, &["gc"])["objects_removed"].as_u64().unwrap();
    assert!(collected > 0, "gc never found anything to free");
    let report = fsck(&data);
    assert_eq!(report["problems"], serde_json::json!([]), "{report}");
    assert_eq!(report["unreferenced_objects"], 0);
    for (name, last) in [
        ("w0.txt", 14),
        ("w1.txt", 14),
        ("w2.txt", 14),
        ("api.txt", 14),
    ] {
        let out = run(&data, &["file", "get", PROJECT, "main", name]);
        assert!(out.status.success(), "{name}");
        let (_, seq) = util::check_body(&out.stdout).expect("a whole body");
        assert_eq!(seq, last, "{name}");
    }
}

/// The window the shared `gc.lock` closes: a put whose content is stored
/// but which has not taken its branch's lock yet (held there by a
/// failpoint). gc must wait for it, not take the content as unreferenced
/// (without the lock it does: checked by removing it).
#[cfg(feature = "failpoints")]
#[test]
fn gc_waits_for_a_write_whose_content_is_stored_but_not_committed() {
    use std::io::Write;
    let dir = TestDir::new("gc-window");
    let data = store_with_project(&dir);
    put(&data, "seed.txt", b"seed");
    let objects = data.join("demo/app.cfg/objects");
    let count = || walk_files(&objects);
    let before = count();
    let mut cli = util::cfgstore(&data)
        .args(["file", "put", PROJECT, "main", "held.txt"])
        .env("FAILPOINTS", "commit.stored=sleep(1500)")
        .stdin(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    cli.stdin
        .take()
        .unwrap()
        .write_all(b"stored, not yet committed")
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while count() == before {
        assert!(
            std::time::Instant::now() < deadline,
            "the content was never stored"
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    // The content is on disk, no version names it yet: gc runs now.
    let report = json(&data, &["gc"]);
    assert!(cli.wait().unwrap().success());
    assert_eq!(report["objects_removed"], 0, "{report}");
    assert_eq!(fsck(&data)["problems"], serde_json::json!([]));
    let out = run(&data, &["file", "get", PROJECT, "main", "held.txt"]);
    assert_eq!(out.stdout, b"stored, not yet committed");
}

#[cfg(feature = "failpoints")]
fn walk_files(dir: &Path) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .filter_map(|e| e.ok())
        .map(|e| {
            if e.file_type().unwrap().is_dir() {
                walk_files(&e.path())
            } else {
                1
            }
        })
        .sum()
}
