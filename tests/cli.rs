//! The CLI as automation uses it: exact command shapes, `--json`, exit
//! codes, exact bytes, snapshots, rollback, import, concurrency.

use std::collections::HashSet;
use std::os::unix::fs::PermissionsExt;
use std::process::Stdio;

use crate::util::{
    self, history_len, json, ok, put, run, run_with_input, store_with_project, TestDir, PROJECT,
};

#[test]
fn example_store_has_what_the_readme_promises() {
    let dir = TestDir::new("example");
    let data = dir.data();
    ok(&data, &["init", "--example"]);
    let projects = json(&data, &["project", "list"]);
    let ids: Vec<_> = projects
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            format!(
                "{}/{}",
                p["owner"].as_str().unwrap(),
                p["id"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(ids, ["demo/b2b-cnc.erp-config", "public/units.erp-config"]);

    let branches = json(&data, &["branch", "list", "demo/b2b-cnc.erp-config"]);
    let names: Vec<_> = branches
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["main", "release/2026.1"]);
    assert_eq!(branches[0]["default"], true);
    assert_eq!(branches[1]["default"], false);
    for b in branches.as_array().unwrap() {
        assert_eq!(b["short_id"].as_str().unwrap().len(), 8);
        assert_eq!(b["commit_id"].as_str().unwrap().len(), 40);
        assert!(b["commit_id"]
            .as_str()
            .unwrap()
            .starts_with(b["short_id"].as_str().unwrap()));
    }

    let history = json(
        &data,
        &["history", "list", "demo/b2b-cnc.erp-config", "main"],
    );
    assert!(
        history.as_array().unwrap().len() >= 5,
        "several versions on main"
    );
    for h in history.as_array().unwrap() {
        for key in [
            "version",
            "live",
            "created_at",
            "actor",
            "action",
            "short_id",
            "added",
        ] {
            assert!(h.get(key).is_some(), "history entry lacks {key}");
        }
    }
    let files = json(
        &data,
        &[
            "file",
            "ls",
            "demo/b2b-cnc.erp-config",
            "main",
            "--recursive",
        ],
    );
    let blobs: Vec<_> = files
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["type"] == "blob")
        .map(|f| f["path"].as_str().unwrap().to_string())
        .collect();
    assert!(blobs.len() >= 12, "a dozen files, got {}", blobs.len());
    assert!(
        blobs.iter().any(|p| p.contains(' ')),
        "one name with a space"
    );
    assert!(blobs.iter().any(|p| !p.is_ascii()), "one non-ASCII name");
    assert!(
        blobs.iter().any(|p| p.ends_with(".json")) && blobs.iter().any(|p| p.ends_with(".yaml"))
    );
    assert!(files
        .as_array()
        .unwrap()
        .iter()
        .any(|f| f["type"] == "tree"));
    assert!(ok(&data, &["fsck"]).contains("clean"));
}

#[test]
fn data_example_matches_init_example() {
    // The committed data-example/ is what `init --example` builds: same
    // branches with the same short_ids (ids depend on content only).
    let dir = TestDir::new("example-match");
    let data = dir.data();
    ok(&data, &["init", "--example"]);
    let committed = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("data-example");
    // Work on a copy: the checkout must not be modified by tests.
    let copy = dir.path().join("copy");
    let status = std::process::Command::new("cp")
        .arg("-r")
        .arg(&committed)
        .arg(&copy)
        .status()
        .unwrap();
    assert!(status.success());
    std::fs::set_permissions(&copy, std::fs::Permissions::from_mode(0o700)).unwrap();
    for project in ["demo/b2b-cnc.erp-config", "public/units.erp-config"] {
        let ours = json(&data, &["branch", "list", project]);
        let theirs = json(&copy, &["branch", "list", project]);
        let ids = |v: &serde_json::Value| {
            v.as_array()
                .unwrap()
                .iter()
                .map(|b| {
                    (
                        b["name"].to_string(),
                        b["short_id"].to_string(),
                        b["version"].to_string(),
                    )
                })
                .collect::<Vec<_>>()
        };
        assert_eq!(ids(&ours), ids(&theirs), "{project}");
    }
}

#[test]
fn put_get_round_trips_exact_bytes_and_snapshots_first() {
    let dir = TestDir::new("put-get");
    let data = store_with_project(&dir);
    let binary: Vec<u8> = (0..=255u8).chain([0, 0, 13, 10]).collect();
    let out = run_with_input(
        &data,
        &["file", "put", PROJECT, "main", "bin/blob.dat", "--json"],
        &binary,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let outcome: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(outcome["changed"], true);
    assert_eq!(outcome["snapshot"], "v0001");
    assert_eq!(outcome["version"], "v0002");
    let got = util::cfgstore(&data)
        .args(["file", "get", PROJECT, "main", "bin/blob.dat"])
        .output()
        .unwrap();
    assert!(got.status.success());
    assert_eq!(got.stdout, binary);

    // --from, then the old version is still readable from its snapshot.
    let src = dir.path().join("v2.dat");
    std::fs::write(&src, b"second").unwrap();
    ok(
        &data,
        &[
            "file",
            "put",
            PROJECT,
            "main",
            "bin/blob.dat",
            "--from",
            src.to_str().unwrap(),
        ],
    );
    assert_eq!(
        ok(&data, &["file", "get", PROJECT, "main", "bin/blob.dat"]),
        "second"
    );
    let old = util::cfgstore(&data)
        .args([
            "file",
            "get",
            PROJECT,
            "main",
            "bin/blob.dat",
            "--version",
            "v0002",
        ])
        .output()
        .unwrap();
    assert_eq!(old.stdout, binary);

    // The same bytes again change nothing and take no snapshot.
    let again = run_with_input(
        &data,
        &["file", "put", PROJECT, "main", "bin/blob.dat", "--json"],
        b"second",
    );
    let again: serde_json::Value = serde_json::from_slice(&again.stdout).unwrap();
    assert_eq!(again["changed"], false);
    assert_eq!(history_len(&data), 3, "v0001 (created), v0002, v0003");
}

#[test]
fn short_id_changes_exactly_when_content_changes() {
    let dir = TestDir::new("short-id");
    let data = store_with_project(&dir);
    let short = |data: &std::path::Path| {
        json(data, &["branch", "list", PROJECT])[0]["short_id"]
            .as_str()
            .unwrap()
            .to_string()
    };
    // An empty branch has the digest of the empty string.
    assert_eq!(short(&data), "e3b0c442");
    put(&data, "a.txt", b"hello\n");
    run_with_input(
        &data,
        &["file", "put", PROJECT, "main", "conf/b.json"],
        b"{\"x\":1}",
    );
    // Same vector as the unit test, computed with md5sum/sha256sum.
    assert_eq!(short(&data), "cbb97f03");
    put(&data, "a.txt", b"hello\n");
    assert_eq!(short(&data), "cbb97f03");
    ok(&data, &["file", "rm", PROJECT, "main", "a.txt"]);
    assert_ne!(short(&data), "cbb97f03");
}

#[test]
fn rollback_restores_exact_bytes_and_takes_a_snapshot() {
    let dir = TestDir::new("rollback");
    let data = store_with_project(&dir);
    run_with_input(
        &data,
        &["file", "put", PROJECT, "main", "app.json"],
        b"{\"v\":1}\n",
    );
    run_with_input(
        &data,
        &["file", "put", PROJECT, "main", "app.json"],
        b"{\"v\":2}\n",
    );
    put(&data, "extra.yaml", b"k: v\n");
    let before = history_len(&data);
    let v2_short = json(&data, &["history", "list", PROJECT, "main"])
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h["version"] == "v0002")
        .unwrap()["short_id"]
        .clone();

    // Without --yes and without a terminal, a destructive command refuses.
    let refused = run(&data, &["rollback", PROJECT, "main", "--to", "v0002"]);
    assert_eq!(refused.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("--yes"));
    assert_eq!(history_len(&data), before);

    let outcome = json(
        &data,
        &["rollback", PROJECT, "main", "--to", "v0002", "--yes"],
    );
    assert_eq!(
        outcome["snapshot"], "v0004",
        "the pre-rollback state is kept"
    );
    assert_eq!(
        ok(&data, &["file", "get", PROJECT, "main", "app.json"]),
        "{\"v\":1}\n"
    );
    let ls = json(&data, &["file", "ls", PROJECT, "main"]);
    assert_eq!(ls.as_array().unwrap().len(), 1, "extra.yaml is gone again");
    assert_eq!(
        json(&data, &["branch", "list", PROJECT])[0]["short_id"],
        v2_short
    );
    let history = json(&data, &["history", "list", PROJECT, "main"]);
    assert_eq!(history.as_array().unwrap().len(), before + 1);
    assert_eq!(history[0]["version"], "v0005");
    assert_eq!(history[0]["live"], true);
    assert_eq!(history[0]["action"], "rollback to v0002");
    assert_eq!(
        (
            &history[0]["added"],
            &history[0]["changed"],
            &history[0]["removed"]
        ),
        (
            &serde_json::json!(0),
            &serde_json::json!(1),
            &serde_json::json!(1)
        ),
        "app.json back to v1, extra.yaml gone"
    );
    assert_eq!(history[1]["version"], "v0004");
    assert_eq!(history[1]["live"], false);
    assert_eq!(history[1]["action"], "file.put extra.yaml");

    // A rollback to the state the branch has is no change, and no version.
    let same = json(
        &data,
        &["rollback", PROJECT, "main", "--to", "v0005", "--yes"],
    );
    assert_eq!(same["changed"], false);
    let again = json(
        &data,
        &["rollback", PROJECT, "main", "--to", "v0002", "--yes"],
    );
    assert_eq!(again["changed"], false, "v0002 holds what v0005 holds");
    assert_eq!(history_len(&data), before + 1);

    // And the rollback itself can be undone.
    ok(
        &data,
        &["rollback", PROJECT, "main", "--to", "v0004", "--yes"],
    );
    assert_eq!(
        ok(&data, &["file", "get", PROJECT, "main", "app.json"]),
        "{\"v\":2}\n"
    );
    assert_eq!(
        ok(&data, &["file", "get", PROJECT, "main", "extra.yaml"]),
        "k: v\n"
    );

    let missing = run(
        &data,
        &["rollback", PROJECT, "main", "--to", "v0099", "--yes"],
    );
    assert_eq!(missing.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("version not found: v0099"));
}

#[test]
fn import_of_fifty_files_is_one_snapshot() {
    let dir = TestDir::new("import");
    let data = store_with_project(&dir);
    let src = dir.path().join("src");
    for i in 0..50 {
        let path = src.join(format!("group{}/file {i}.json", i % 5));
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, format!("{{\"n\":{i}}}")).unwrap();
    }
    let outcome = json(&data, &["import", PROJECT, "main", src.to_str().unwrap()]);
    assert_eq!(outcome["file_count"], 50);
    assert_eq!(history_len(&data), 2, "the empty v0001 and the import");
    let ls = json(&data, &["file", "ls", PROJECT, "main", "--recursive"]);
    assert_eq!(
        ls.as_array()
            .unwrap()
            .iter()
            .filter(|e| e["type"] == "blob")
            .count(),
        50
    );
    assert_eq!(
        ok(
            &data,
            &["file", "get", PROJECT, "main", "group3/file 13.json"]
        ),
        "{\"n\":13}"
    );

    // --replace leaves exactly the imported files.
    let small = dir.path().join("small");
    std::fs::create_dir_all(&small).unwrap();
    std::fs::write(small.join("only.txt"), "1").unwrap();
    ok(
        &data,
        &[
            "import",
            PROJECT,
            "main",
            small.to_str().unwrap(),
            "--replace",
            "--yes",
        ],
    );
    assert_eq!(
        json(&data, &["file", "ls", PROJECT, "main", "--recursive"])
            .as_array()
            .unwrap()
            .len(),
        1
    );

    // A symlink in the source is refused, and nothing is written.
    std::os::unix::fs::symlink("/etc/passwd", small.join("evil")).unwrap();
    let out = run(&data, &["import", PROJECT, "main", small.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(history_len(&data), 3);
}

#[test]
fn branches_nest_like_git_and_copy_from_another() {
    let dir = TestDir::new("branches");
    let data = store_with_project(&dir);
    put(&data, "a.txt", b"A");
    ok(
        &data,
        &[
            "branch",
            "create",
            PROJECT,
            "release/2026.1",
            "--from",
            "main",
        ],
    );
    assert_eq!(
        ok(&data, &["file", "get", PROJECT, "release/2026.1", "a.txt"]),
        "A"
    );
    ok(&data, &["branch", "create", PROJECT, "a"]);
    let nested = run(&data, &["branch", "create", PROJECT, "a/b"]);
    assert_eq!(nested.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&nested.stderr).contains("conflict"));
    let parent = run(&data, &["branch", "create", PROJECT, "release"]);
    assert_eq!(parent.status.code(), Some(1));
    let dup = run(&data, &["branch", "create", PROJECT, "a"]);
    assert!(String::from_utf8_lossy(&dup.stderr).contains("already exists"));
    let names: Vec<_> = json(&data, &["branch", "list", PROJECT])
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(names, ["a", "main", "release/2026.1"]);
    // The copy is independent of its source.
    put(&data, "a.txt", b"changed");
    assert_eq!(
        ok(&data, &["file", "get", PROJECT, "release/2026.1", "a.txt"]),
        "A"
    );
}

#[test]
fn default_branch_prefers_master_then_main_then_first() {
    let dir = TestDir::new("default");
    let data = dir.data();
    ok(&data, &["init"]);
    ok(
        &data,
        &["project", "create", "demo", "app", "--type", "cfg"],
    );
    let default = |data: &std::path::Path| {
        json(data, &["branch", "list", PROJECT])
            .as_array()
            .unwrap()
            .iter()
            .filter(|b| b["default"] == true)
            .map(|b| b["name"].as_str().unwrap().to_string())
            .collect::<Vec<_>>()
    };
    ok(&data, &["branch", "create", PROJECT, "develop"]);
    assert_eq!(default(&data), ["main"]);
    ok(&data, &["branch", "create", PROJECT, "master"]);
    assert_eq!(default(&data), ["master"]);
}

#[test]
fn hostile_names_are_usage_errors_and_write_nothing() {
    let dir = TestDir::new("hostile");
    let data = store_with_project(&dir);
    let cases: &[&[&str]] = &[
        &["file", "put", PROJECT, "main", "../escape"],
        &["file", "put", PROJECT, "main", "a/../../escape"],
        &["file", "put", PROJECT, "main", "/etc/passwd"],
        &["file", "put", PROJECT, "main", "a\\b"],
        &["file", "put", PROJECT, "main", "a\u{1}b"],
        &["file", "put", PROJECT, "main", ".cfgstore-tmp"],
        &["file", "put", PROJECT, "main", "a//b"],
        &["file", "put", PROJECT, "../main", "x"],
        &["file", "put", PROJECT, "a..b", "x"],
        &["file", "put", "demo/../x", "main", "x"],
        &["file", "put", "../demo/app.cfg", "main", "x"],
        &["file", "put", "demo/.hidden", "main", "x"],
        &["file", "put", "Demo/app.cfg", "main", "x"],
        &["branch", "create", PROJECT, "x.lock"],
        &["branch", "create", PROJECT, "--", "-x"],
        &["branch", "create", PROJECT, "a b"],
        &["project", "create", "demo", "../x"],
        &["project", "create", "../demo", "x"],
        &["project", "create", "demo", "x", "--type", "a/b"],
        &["history", "show", PROJECT, "main", "1"],
        &["history", "show", PROJECT, "main", "v-1"],
        &["file", "get", PROJECT, "main", "a", "--version", "v"],
    ];
    for args in cases {
        let out = run_with_input(&data, args, b"payload");
        assert_eq!(
            out.status.code(),
            Some(2),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.starts_with("cfgstore: ") && stderr.trim_end().lines().count() == 1,
            "{args:?}: {stderr}"
        );
    }
    assert!(!dir.path().join("escape").exists());
    assert_eq!(history_len(&data), 1, "only the project's first version");
    assert_eq!(
        json(&data, &["project", "list"]).as_array().unwrap().len(),
        1
    );
    assert!(ok(&data, &["fsck"]).contains("clean"));
}

#[test]
fn errors_are_one_line_with_exit_codes() {
    let dir = TestDir::new("errors");
    let data = store_with_project(&dir);
    let missing_store = run(&dir.path().join("nope"), &["project", "list"]);
    assert_eq!(missing_store.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&missing_store.stderr).contains("cfgstore init"));
    let missing_file = run(&data, &["file", "get", PROJECT, "main", "nope.txt"]);
    assert_eq!(missing_file.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&missing_file.stderr),
        "cfgstore: file not found: nope.txt\n"
    );
    let missing_branch = run(&data, &["file", "ls", PROJECT, "nope"]);
    assert_eq!(
        String::from_utf8_lossy(&missing_branch.stderr),
        "cfgstore: branch not found: nope\n"
    );
    let missing_project = run(&data, &["branch", "list", "demo/nope"]);
    assert_eq!(
        String::from_utf8_lossy(&missing_project.stderr),
        "cfgstore: project not found: demo/nope\n"
    );
    let unknown_flag = run(&data, &["file", "ls", PROJECT, "main", "--bogus"]);
    assert_eq!(unknown_flag.status.code(), Some(2));
    let stale = run_with_input(
        &data,
        &[
            "file",
            "put",
            PROJECT,
            "main",
            "a",
            "--if-match",
            "00000000",
        ],
        b"x",
    );
    assert_eq!(stale.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&stale.stderr).contains("conflict"));
    // stdin must not be a terminal for put without --from; with no stdin at
    // all (null) it is an empty file, which is a valid put.
    assert!(run(&data, &["--help"]).status.success());
}

#[test]
fn data_dir_falls_back_to_the_environment() {
    let dir = TestDir::new("env");
    let data = store_with_project(&dir);
    let out = std::process::Command::new(util::bin())
        .args(["project", "list", "--json"])
        .env("CFGSTORE_DATA", &data)
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("app.cfg"));
}

#[test]
fn files_are_private() {
    let dir = TestDir::new("perms");
    let data = store_with_project(&dir);
    put(&data, "secret.yaml", b"password: hunter2\n");
    for entry in walkdir::WalkDir::new(&data) {
        let entry = entry.unwrap();
        let mode = entry.metadata().unwrap().permissions().mode() & 0o777;
        let want = if entry.file_type().is_dir() {
            0o700
        } else {
            0o600
        };
        assert_eq!(mode, want, "{}", entry.path().display());
    }
    // A data dir others can write to is refused.
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o777)).unwrap();
    let out = run(&data, &["project", "list"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("world-writable"));
}

#[test]
fn history_show_and_diff() {
    let dir = TestDir::new("diff");
    let data = store_with_project(&dir);
    put(&data, "a.yaml", b"one\ntwo\nthree\n");
    put(&data, "b.bin", b"\xff\xfe");
    put(&data, "a.yaml", b"one\nTWO\nthree\n");
    ok(&data, &["file", "rm", PROJECT, "main", "b.bin"]);
    put(&data, "c.json", b"{}");
    let d = json(
        &data,
        &["history", "diff", PROJECT, "main", "v0003", "v0006"],
    );
    assert_eq!(d["added"], serde_json::json!(["c.json"]));
    assert_eq!(d["removed"], serde_json::json!(["b.bin"]));
    assert_eq!(d["changed"], serde_json::json!(["a.yaml"]));
    let text = ok(
        &data,
        &["history", "diff", PROJECT, "main", "v0003", "v0006"],
    );
    assert!(text.contains("-two\n+TWO\n"), "{text}");
    let show = json(&data, &["history", "show", PROJECT, "main", "v0003"]);
    assert_eq!(show["files"].as_array().unwrap().len(), 2);
    assert_eq!(
        show["version"]["action"], "file.put b.bin",
        "the write that made v0003"
    );
    assert_eq!(show["version"]["added"], 1);
    // The live version is addressable like any other.
    let live = json(&data, &["history", "show", PROJECT, "main", "v0006"]);
    assert_eq!(live["version"]["live"], true);
    assert_eq!(live["version"]["action"], "file.put c.json");
    assert_eq!(
        ok(
            &data,
            &[
                "file",
                "get",
                PROJECT,
                "main",
                "c.json",
                "--version",
                "v0006"
            ]
        ),
        "{}"
    );
    let missing = run(&data, &["history", "show", PROJECT, "main", "v0007"]);
    assert_eq!(missing.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("version not found: v0007"));
    // The table marks the live version and counts what each one did.
    let table = ok(&data, &["history", "list", PROJECT, "main"]);
    let first = table.lines().nth(1).unwrap();
    assert!(first.starts_with("v0006 (live)"), "{table}");
    assert!(
        first.contains("+1 ~0 -0") && first.ends_with("file.put c.json"),
        "{table}"
    );
}

#[test]
fn four_cli_writers_lose_nothing() {
    let dir = TestDir::new("concurrent");
    let data = store_with_project(&dir);
    let writers: Vec<_> = (0..4)
        .map(|w| {
            let script = format!(
                "for i in $(seq 0 24); do printf 'w{w}:%s' $i | {bin} --data {data} file put {PROJECT} main w{w}/f$i.txt >/dev/null || exit 1; done",
                bin = util::bin(),
                data = data.display()
            );
            std::process::Command::new("sh").arg("-c").arg(script).stdin(Stdio::null()).spawn().unwrap()
        })
        .collect();
    for mut w in writers {
        assert!(w.wait().unwrap().success());
    }
    let ls = json(&data, &["file", "ls", PROJECT, "main", "--recursive"]);
    let blobs: Vec<_> = ls
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["type"] == "blob")
        .collect();
    assert_eq!(blobs.len(), 100);
    for w in 0..4 {
        for i in 0..25 {
            assert_eq!(
                ok(
                    &data,
                    &["file", "get", PROJECT, "main", &format!("w{w}/f{i}.txt")]
                ),
                format!("w{w}:{i}")
            );
        }
    }
    let history = json(&data, &["history", "list", PROJECT, "main"]);
    let versions: HashSet<_> = history
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["version"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(history.as_array().unwrap().len(), 101);
    assert_eq!(versions.len(), 101, "versions never repeat");
    assert_eq!(
        json(&data, &["branch", "list", PROJECT])[0]["version"],
        "v0101"
    );
    assert!(ok(&data, &["fsck"]).contains("clean"));
}

#[test]
fn snapshot_numbers_pass_v9999() {
    // Start a branch at v9998 by writing generations through the CLI would
    // take 10,000 processes; instead the store API is driven directly.
    let dir = TestDir::new("v10000");
    let data = store_with_project(&dir);
    let store = cfgstore::store::Store::open(&data).unwrap();
    let project = cfgstore::store::ProjectRef::parse(PROJECT).unwrap();
    let main = cfgstore::store::BranchName::parse("main").unwrap();
    let path = cfgstore::store::FilePath::parse("n").unwrap();
    for i in 0..10_000u32 {
        store
            .put_file(
                &project,
                &main,
                &path,
                i.to_string().as_bytes(),
                "test".into(),
                None,
            )
            .unwrap();
    }
    drop(store);
    let branch = &json(&data, &["branch", "list", PROJECT])[0];
    assert_eq!(branch["version"], "v10001");
    let history = json(&data, &["history", "list", PROJECT, "main"]);
    assert_eq!(history[0]["version"], "v10001");
    assert_eq!(history[1]["version"], "v10000");
    assert_eq!(history[2]["version"], "v9999");
    assert_eq!(
        ok(
            &data,
            &["file", "get", PROJECT, "main", "n", "--version", "v10000"]
        ),
        "9998"
    );
    ok(
        &data,
        &["rollback", PROJECT, "main", "--to", "v9999", "--yes"],
    );
    assert_eq!(ok(&data, &["file", "get", PROJECT, "main", "n"]), "9997");
}

#[test]
fn a_path_is_a_file_or_a_folder_never_both() {
    let dir = TestDir::new("nesting");
    let data = store_with_project(&dir);
    put(&data, "conf", b"a file");
    let nested = run_with_input(
        &data,
        &["file", "put", PROJECT, "main", "conf/app.json"],
        b"{}",
    );
    assert_eq!(nested.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&nested.stderr).contains("conf is a file"));
    put(&data, "dir/app.json", b"{}");
    put(&data, "dir-x", b"a neighbour, not a child");
    let over = run_with_input(&data, &["file", "put", PROJECT, "main", "dir"], b"x");
    assert_eq!(over.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&over.stderr).contains("dir is a folder"));
    // An import is checked the same way, and writes nothing when refused.
    let src = dir.path().join("src");
    std::fs::create_dir_all(src.join("conf")).unwrap();
    std::fs::write(src.join("conf/inner.json"), "{}").unwrap();
    let before = history_len(&data);
    assert_eq!(
        run(&data, &["import", PROJECT, "main", src.to_str().unwrap()])
            .status
            .code(),
        Some(1)
    );
    assert_eq!(history_len(&data), before);
    // Removing the file frees the name for a folder.
    ok(&data, &["file", "rm", PROJECT, "main", "conf"]);
    put(&data, "conf/app.json", b"{}");
}

/// `cfgstore … | head`: a reader that goes away after the first line ends
/// the command quietly with status 0 (no panic, no "Broken pipe"), for
/// tables, JSON and raw file bytes alike.
#[test]
fn a_closed_pipe_ends_the_command_quietly() {
    use std::io::{BufRead, BufReader};
    let dir = TestDir::new("pipe");
    let data = dir.data();
    ok(&data, &["init", "--example"]);
    let big = dir.path().join("big.txt");
    std::fs::write(&big, "line of text\n".repeat(100_000)).unwrap();
    let big_arg = big.to_str().unwrap();
    const EXAMPLE: &str = "demo/b2b-cnc.erp-config";
    ok(
        &data,
        &["file", "put", EXAMPLE, "main", "big.txt", "--from", big_arg],
    );
    for i in 0..200 {
        ok(&data, &util::token_create("demo", &format!("t{i}"), &[]));
    }
    let commands: [&[&str]; 4] = [
        &["token", "list"],
        &["token", "list", "--json"],
        &["file", "get", EXAMPLE, "main", "big.txt"],
        &["audit"],
    ];
    for args in commands {
        let mut child = util::cfgstore(&data)
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut first = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut first)
            .unwrap();
        assert!(!first.is_empty(), "{args:?} printed nothing");
        // The reader is dropped here: the pipe is closed.
        let out = child.wait_with_output().unwrap();
        assert_eq!(
            out.status.code(),
            Some(0),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            out.stderr.is_empty(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// Durations always carry a unit: `--grace 1` (a second? a day?) is a
/// usage error that says how to write one, and nothing is rotated.
#[test]
fn a_duration_without_a_unit_is_refused() {
    let dir = TestDir::new("duration");
    let data = dir.data();
    ok(&data, &["init", "--example"]);
    let (id, _) = util::create_token(&data, "demo", &[]);
    let out = run(&data, &["token", "rotate", &id, "--grace", "1"]);
    assert_eq!(out.status.code(), Some(2));
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(said.contains("30s, 15m, 24h, 7d"), "{said}");
    assert_eq!(json(&data, &["token", "list"]).as_array().unwrap().len(), 1);
    ok(&data, &["token", "rotate", &id, "--grace", "1h"]);
    assert_eq!(json(&data, &["token", "list"]).as_array().unwrap().len(), 2);
}
