//! A store written by cfgstore 0.1.0 (`tests/fixtures/store-0.1.0`,
//! committed; its versions carry no change counts) opens with this
//! binary: ids, versions and contents as they were, history computed,
//! fsck clean, and new writes beside the old versions.

use crate::util::{self, json, ok, run_with_input, TestDir};

const P: &str = "demo/b2b-cnc.erp-config";

#[test]
fn a_store_written_by_0_1_0_opens_reads_writes_and_checks_clean() {
    let dir = TestDir::new("old-store");
    let data = dir.path().join("store");
    util::copy_fixture("store-0.1.0", &data);
    // A checkout's modes are the only thing to mend (0.1.0 wrote 0600/0700).
    ok(&data, &["fsck", "--repair"]);
    ok(&data, &["fsck"]);
    let branches = json(&data, &["branch", "list", P]);
    let ids: Vec<(&str, &str, &str)> = branches
        .as_array()
        .unwrap()
        .iter()
        .map(|b| {
            (
                b["name"].as_str().unwrap(),
                b["short_id"].as_str().unwrap(),
                b["version"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        ids,
        [
            ("main", "5b44d08e", "v0007"),
            ("release/2026.1", "184c7183", "v0001")
        ]
    );
    // History of versions that recorded no counts: computed from the manifests.
    let history = json(&data, &["history", "list", P, "main"]);
    let rows: Vec<(String, u64, u64, u64)> = history
        .as_array()
        .unwrap()
        .iter()
        .map(|v| {
            (
                v["version"].as_str().unwrap().to_string(),
                v["added"].as_u64().unwrap(),
                v["changed"].as_u64().unwrap(),
                v["removed"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(rows.len(), 7);
    assert_eq!(rows[1], ("v0006".into(), 0, 1, 0));
    assert_eq!(rows[2], ("v0005".into(), 0, 0, 1));
    assert_eq!(rows[5], ("v0002".into(), 13, 0, 0));
    assert_eq!(history[0]["live"], true);
    // Contents as written, and an old version addressable.
    let flags = ok(
        &data,
        &["file", "get", P, "main", "features/feature flags.json"],
    );
    assert!(flags.contains("newScheduler"), "{flags}");
    ok(
        &data,
        &[
            "file",
            "get",
            P,
            "main",
            "legacy/old-export.json",
            "--version",
            "v0004",
        ],
    );
    // A new write lands beside the old versions, with its counts, and fsck
    // checks both kinds.
    let out = run_with_input(&data, &["file", "put", P, "main", "new.json"], b"{}");
    assert!(out.status.success());
    let history = json(&data, &["history", "list", P, "main"]);
    assert_eq!(
        (history[0]["version"].as_str(), history[0]["added"].as_u64()),
        (Some("v0008"), Some(1))
    );
    ok(&data, &["fsck"]);
    // And the daemon serves it (making the server key 0.1.0's example lacked).
    let daemon = util::Daemon::start(&data, dir.path().join("daemon.log"));
    let health = util::request(daemon.addr, "GET", &format!("{}/health", util::API), &[]);
    assert_eq!(health.status, 200);
}

#[test]
fn fsck_checks_recorded_change_counts() {
    let dir = TestDir::new("fsck-counts");
    let data = util::store_with_project(&dir);
    util::put(&data, "a.json", b"{}");
    ok(&data, &["fsck"]);
    // Tamper with the recorded counts of the live version.
    let gen = data.join("demo/app.cfg/branches/main/v0002");
    let text = std::fs::read_to_string(&gen).unwrap();
    assert!(text.contains("\"added\":1"), "{text}");
    std::fs::write(&gen, text.replacen("\"added\":1", "\"added\":7", 1)).unwrap();
    let out = util::run(&data, &["fsck"]);
    assert!(!out.status.success());
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(said.contains("change counts recompute to"), "{said}");
}
