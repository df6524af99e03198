//! Store formats: git blob ids everywhere the API names a blob (what
//! `git hash-object` prints, so a client can compare them with its own
//! files), versions as tree objects (format 3), the upgrade of a 0.1 store
//! and of a format-2 store in place, fsck checking ids and trees, and a
//! store of a newer format refused in words.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

use crate::util::{self, create_token, json, ok, request, run, TestDir, TestServer, API};

const P: &str = "demo/b2b-cnc.erp-config";
const R: &str = "/projects/b2b-cnc.erp-config/repository";

/// What `git hash-object` prints for `bytes`, computed independently of
/// cfgstore (Python's hashlib: `sha1(b"blob {len}\0" + bytes)`; the unit
/// test in generation.rs pins the formula to git's own output).
fn git_hash_object(bytes: &[u8]) -> String {
    let mut child = Command::new("python3")
        .args([
            "-c",
            "import hashlib,sys; d=sys.stdin.buffer.read(); print(hashlib.sha1(b'blob %d\\0' % len(d) + d).hexdigest())",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3 (CI has it)");
    child.stdin.take().unwrap().write_all(bytes).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// Every blob of the tree against git's own id, through every endpoint
/// that names one.
fn check_blob_ids(data: &Path) {
    let (_, token) = create_token(data, "demo", &[]);
    let server = TestServer::start(data);
    let auth = [("PRIVATE-TOKEN", token.as_str())];
    let tree = request(
        server.addr,
        "GET",
        &format!("{API}{R}/tree?recursive=true"),
        &auth,
    )
    .json();
    let mut checked = 0;
    for item in tree
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i["type"] == "blob")
    {
        let path = item["path"].as_str().unwrap();
        let encoded = path.replace('/', "%2F").replace(' ', "%20");
        let raw = request(
            server.addr,
            "GET",
            &format!("{API}{R}/files/{encoded}/raw?ref=main"),
            &auth,
        );
        let want = git_hash_object(&raw.body);
        assert_eq!(item["id"], want.as_str(), "tree id of {path}");
        assert_eq!(
            raw.header("x-gitlab-blob-id"),
            Some(want.as_str()),
            "{path}"
        );
        let meta = request(
            server.addr,
            "GET",
            &format!("{API}{R}/files/{encoded}?ref=main"),
            &auth,
        )
        .json();
        assert_eq!(meta["blob_id"], want.as_str(), "{path}");
        let blob = request(
            server.addr,
            "GET",
            &format!("{API}{R}/blobs/{want}/raw"),
            &auth,
        );
        assert_eq!(blob.status, 200, "{path}");
        assert_eq!(blob.body, raw.body, "{path}");
        checked += 1;
    }
    assert!(checked >= 10, "{checked} blobs");
}

#[test]
fn blob_ids_are_git_blob_ids() {
    let dir = TestDir::new("git-ids");
    let data = dir.data();
    ok(&data, &["init", "--example"]);
    check_blob_ids(&data);
    // A blob of an older version only is found too.
    let out = util::run_with_input(
        &data,
        &["file", "put", P, "main", "operations.config.json"],
        b"{\"x\": 1}",
    );
    assert!(out.status.success());
    let old = util::run(
        &data,
        &[
            "file",
            "get",
            P,
            "main",
            "operations.config.json",
            "--version",
            "v0002",
        ],
    );
    {
        let id = git_hash_object(&old.stdout);
        let (_, token) = create_token(&data, "demo", &[]);
        let server = TestServer::start(&data);
        let r = request(
            server.addr,
            "GET",
            &format!("{API}{R}/blobs/{id}/raw"),
            &[("PRIVATE-TOKEN", &token)],
        );
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.body, old.stdout);
    }
}

#[test]
fn a_0_1_store_is_upgraded_in_place_and_keeps_its_ids() {
    let dir = TestDir::new("upgrade");
    let data = dir.path().join("store");
    util::copy_fixture("store-0.1.0", &data);
    let format = || std::fs::read_to_string(data.join(".cfgstore/format")).unwrap();
    assert_eq!(format(), "cfgstore-data 1\n");
    // fsck and a restore read a 0.1 store as it is: neither upgrades it.
    ok(&data, &["fsck", "--repair"]);
    assert_eq!(format(), "cfgstore-data 1\n");
    let restored = dir.path().join("restored");
    ok(&restored, &["restore", data.to_str().unwrap()]);
    assert_eq!(format(), "cfgstore-data 1\n", "the backup is not changed");
    let from_backup = json(&restored, &["branch", "list", P]);
    assert_eq!(
        from_backup[0]["short_id"], "5b44d08e",
        "the restored copy opens (upgraded)"
    );
    let report = json(&data, &["upgrade"]);
    assert_eq!(report["from"], 1);
    assert_eq!(report["to"], 3);
    // Every version file of the fixture, counted on disk.
    let on_disk = walkdir_versions(&data);
    assert_eq!(report["versions"], on_disk, "{report}");
    assert!(on_disk >= 8);
    assert_eq!(format(), "cfgstore-data 3\n");
    assert_eq!(json(&data, &["upgrade"])["upgraded"], false, "once only");
    // An upgrade cut short (one file still format 1, the old format line)
    // is finished by the next open.
    let fixture = Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/store-0.1.0"
    ));
    let v3 = "demo/b2b-cnc.erp-config/branches/main/v0003";
    std::fs::copy(fixture.join(v3), data.join(v3)).unwrap();
    std::fs::write(data.join(".cfgstore/format"), "cfgstore-data 1\n").unwrap();
    let finished = json(&data, &["upgrade"]);
    assert_eq!(finished["versions"], 1, "{finished}");
    assert_eq!(format(), "cfgstore-data 3\n");
    example_is_intact(&data);
}

/// What an upgrade of the example store keeps: the ids ERPs poll, the
/// versions and history, a clean fsck (nothing unreferenced), and blob
/// ids equal to git's through every endpoint.
fn example_is_intact(data: &Path) {
    let branches = json(data, &["branch", "list", P]);
    assert_eq!(branches[0]["short_id"], "5b44d08e");
    assert_eq!(branches[1]["short_id"], "184c7183");
    assert_eq!(
        json(data, &["history", "list", P, "main"])
            .as_array()
            .unwrap()
            .len(),
        7
    );
    // (A checkout does not keep the fixtures' 0600 modes: repaired first.)
    ok(data, &["fsck", "--repair"]);
    let fsck = json(data, &["fsck"]);
    assert_eq!(fsck["problems"], serde_json::json!([]), "{fsck}");
    assert_eq!(fsck["unreferenced_objects"], 0, "{fsck}");
    ok(data, &["init"]); // the fixtures have no server key: tokens need one
    check_blob_ids(data);
}

#[test]
fn a_format_2_store_is_upgraded_to_trees() {
    let dir = TestDir::new("upgrade-2");
    let data = dir.path().join("store");
    util::copy_fixture("store-format-2", &data);
    let format = || std::fs::read_to_string(data.join(".cfgstore/format")).unwrap();
    assert_eq!(format(), "cfgstore-data 2\n");
    let versions = walkdir_versions(&data);
    let report = json(&data, &["upgrade"]);
    assert_eq!(
        (report["from"].as_u64(), report["to"].as_u64()),
        (Some(2), Some(3))
    );
    assert_eq!(report["versions"], versions, "{report}");
    assert_eq!(format(), "cfgstore-data 3\n");
    // Every version file is now two lines naming its tree.
    let main = data.join("demo/b2b-cnc.erp-config/branches/main");
    for entry in std::fs::read_dir(&main).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with('v') {
            let text = std::fs::read_to_string(entry.path()).unwrap();
            assert!(text.starts_with("cfgstore-generation 3\n"), "{name}");
            assert_eq!(text.lines().count(), 2, "{name}: {text}");
            assert!(text.contains("\"tree\":\""), "{name}");
        }
    }
    example_is_intact(&data);
}

/// The root tree object a version file names.
fn tree_of(version: &Path) -> String {
    let text = std::fs::read_to_string(version).unwrap();
    let meta: serde_json::Value = serde_json::from_str(text.lines().nth(1).unwrap()).unwrap();
    meta["tree"].as_str().unwrap().to_string()
}

fn object(data: &Path, id: &str) -> std::path::PathBuf {
    data.join("demo/b2b-cnc.erp-config/objects")
        .join(&id[..2])
        .join(id)
}

#[test]
fn fsck_checks_git_ids_and_trees_and_a_newer_format_is_refused() {
    let dir = TestDir::new("format-checks");
    let data = dir.data();
    ok(&data, &["init", "--example"]);
    let version = data.join("demo/b2b-cnc.erp-config/branches/main/v0002");
    let root = tree_of(&version);
    let text = std::fs::read_to_string(object(&data, &root)).unwrap();
    // A tree whose file line has a git id that does not match the content,
    // stored under its own (correct) hash and named by v0002.
    let line = text
        .lines()
        .find(|l| l.starts_with("f\t"))
        .unwrap()
        .to_string();
    let mut fields: Vec<&str> = line.split('\t').collect();
    let wrong = "0".repeat(40);
    fields[3] = &wrong;
    let bad = text.replace(&line, &fields.join("\t"));
    let bad_id = blake3::hash(bad.as_bytes()).to_hex().to_string();
    std::fs::create_dir_all(object(&data, &bad_id).parent().unwrap()).unwrap();
    std::fs::write(object(&data, &bad_id), &bad).unwrap();
    let version_text = std::fs::read_to_string(&version).unwrap();
    std::fs::write(&version, version_text.replace(&root, &bad_id)).unwrap();
    let out = run(&data, &["fsck"]);
    assert_eq!(out.status.code(), Some(1));
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(
        report.contains("content does not match its git blob id"),
        "{report}"
    );

    // A tree object whose bytes no longer match its name; a missing one.
    std::fs::write(&version, &version_text).unwrap();
    let mut damaged = text.clone().into_bytes();
    let last = damaged.len() - 2;
    damaged[last] ^= 1;
    std::fs::write(object(&data, &root), &damaged).unwrap();
    let out = run(&data, &["fsck"]);
    assert_eq!(out.status.code(), Some(1));
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(
        report.contains("tree object does not match its hash"),
        "{report}"
    );
    std::fs::remove_file(object(&data, &root)).unwrap();
    let out = run(&data, &["fsck"]);
    assert_eq!(out.status.code(), Some(1));
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(report.contains("tree object missing"), "{report}");
    // Reading that version says so, without a panic: the store is damaged.
    let out = run(&data, &["file", "ls", P, "main", "--version", "v0002"]);
    assert!(!out.status.success());

    std::fs::write(data.join(".cfgstore/format"), "cfgstore-data 4\n").unwrap();
    let out = run(&data, &["branch", "list", P]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("this store is format 4, written by a newer cfgstore"),
        "{err}"
    );
}

/// How many version files (`vNNNN`) a data directory holds.
fn walkdir_versions(data: &Path) -> u64 {
    let mut n = 0;
    let mut dirs = vec![data.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let entry = entry.unwrap();
            let name = entry.file_name().to_string_lossy().into_owned();
            if entry.file_type().unwrap().is_dir() {
                dirs.push(entry.path());
            } else if name.len() == 5
                && name.starts_with('v')
                && name[1..].bytes().all(|b| b.is_ascii_digit())
            {
                n += 1;
            }
        }
    }
    n
}
