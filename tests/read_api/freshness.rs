//! A change from the CLI is in force for the daemon's very next request.

use super::*;

/// The operator's edit: `cfgstore file put` of the project's operations
/// config on `main`.
fn put_operations_config(data: &std::path::Path, body: &[u8]) {
    run_with_input(
        data,
        &[
            "file",
            "put",
            &format!("demo/{P}"),
            "main",
            "operations.config.json",
        ],
        body,
    );
}

/// Other events in the store's internal folder (lock files, audit appends,
/// a backup tool's files) queued before a CLI change must not bury the
/// change marker's event: the daemon drains every queued event per
/// request, not just the first batch (it read 4 KB, about 128 events).
#[test]
fn a_cli_change_queued_behind_many_other_events_is_in_force_for_the_next_request() {
    let dir = TestDir::new("cli-burst");
    let (data, _) = setup(&dir);
    let daemon = Daemon::start(&data, dir.path().join("daemon.log"));
    let (_, token) = create_token(&data, "demo", &[]);
    let url = format!("{API}/projects/{P}/repository/files/operations.config.json/raw");
    // Twice: the second request has read the events of the setup.
    daemon.get(&url, &auth(&token));
    let before = daemon.get(&url, &auth(&token));
    assert_eq!(before.status, 200);
    let internal = data.join(".cfgstore");
    let strays: Vec<_> = (0..300)
        .map(|i| internal.join(format!("stray-{i:04}")))
        .collect();
    for stray in &strays {
        std::fs::write(stray, b"x").unwrap(); // a create and a close-write each
    }
    put_operations_config(&data, b"{\"burst\": true}\n");
    let after = daemon.get(&url, &auth(&token));
    assert_eq!(after.text(), "{\"burst\": true}\n");
    assert_ne!(after.text(), before.text());
    for stray in &strays {
        std::fs::remove_file(stray).unwrap();
    }
}

/// The way operators work: the CLI changes things while the daemon runs,
/// and the daemon's very next request sees it. Also: no secret in the data
/// directory or the daemon's log.
#[test]
fn cli_changes_are_in_force_for_the_daemons_next_request() {
    let dir = TestDir::new("cli-daemon");
    let (data, _) = setup(&dir);
    let daemon = Daemon::start(&data, dir.path().join("daemon.log"));
    let (id, token) = create_token(&data, "demo", &[]);
    let branches = format!("{API}/projects/{P}/repository/branches");
    let r = daemon.get(&branches, &auth(&token));
    assert_eq!(r.status, 200);
    let short_before = r.json()[0]["commit"]["short_id"]
        .as_str()
        .unwrap()
        .to_string();

    put_operations_config(&data, b"{\"changed\": true}\n");
    let r = daemon.get(&branches, &auth(&token));
    assert_ne!(
        r.json()[0]["commit"]["short_id"].as_str().unwrap(),
        short_before
    );
    let file = daemon.get(
        &format!("{API}/projects/{P}/repository/files/operations.config.json/raw"),
        &auth(&token),
    );
    assert_eq!(file.text(), "{\"changed\": true}\n");

    ok(&data, &["token", "update", &id, "--repos", "other.cfg"]);
    let r = daemon.get(&branches, &auth(&token));
    assert_eq!((r.status, r.message()), (403, "403 Forbidden".into()));
    ok(&data, &["token", "update", &id, "--all-repos"]);
    assert_eq!(daemon.get(&branches, &auth(&token)).status, 200);
    ok(&data, &["token", "revoke", &id, "--yes"]);
    assert_eq!(daemon.get(&branches, &auth(&token)).status, 401);

    // Rotation: the successor works, the old one stops (no grace).
    let (old_id, old_token) = create_token(&data, "demo", &[]);
    let rotated = json(&data, &["token", "rotate", &old_id]);
    let new_token = rotated["token"].as_str().unwrap().to_string();
    assert_eq!(rotated["name"], "test-v2");
    assert_eq!(daemon.get(&branches, &auth(&new_token)).status, 200);
    assert_eq!(daemon.get(&branches, &auth(&old_token)).status, 401);
    let (grace_id, grace_token) = create_token(&data, "demo", &[]);
    json(&data, &["token", "rotate", &grace_id, "--grace", "1h"]);
    assert_eq!(
        daemon.get(&branches, &auth(&grace_token)).status,
        200,
        "still inside the grace period"
    );

    let listed = json(&data, &["token", "list", "--owner", "demo"]);
    for t in listed.as_array().unwrap() {
        for key in [
            "id",
            "name",
            "owner",
            "repos",
            "expires_at",
            "fingerprint_required",
            "last_used_at",
            "suffix",
        ] {
            assert!(t.get(key).is_some(), "token list lacks {key}");
        }
        assert!(t.get("token").is_none() && t.get("mac").is_none());
    }

    assert!(daemon.stop().success(), "SIGTERM drains and exits 0");
    // last_used_at was flushed at shutdown.
    let shown = json(&data, &["token", "show", &grace_id]);
    assert!(shown["last_used_at"].is_string(), "{shown}");

    let secrets = [token, old_token, new_token, grace_token];
    let log = std::fs::read_to_string(dir.path().join("daemon.log")).unwrap();
    assert!(
        log.contains("route=\"branches\""),
        "the log has request lines"
    );
    for secret in &secrets {
        assert!(!log.contains(secret.as_str()), "a token is in the log");
        for entry in walkdir::WalkDir::new(&data) {
            let entry = entry.unwrap();
            if entry.file_type().is_file() {
                let bytes = std::fs::read(entry.path()).unwrap();
                assert!(
                    !bytes.windows(secret.len()).any(|w| w == secret.as_bytes()),
                    "a token is in {}",
                    entry.path().display()
                );
            }
        }
    }
}
