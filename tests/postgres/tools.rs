//! The store-wide tools on a database store: `fsck` checks every kept
//! version, tree and content through the backend (and repairs what an
//! interrupted prune left); `backup` writes a data directory from a
//! database; `restore` loads a backup into an empty database in one
//! transaction, with the backup's server key, so its tokens verify.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use super::PgServer;
use crate::util::{bin, copy_fixture, Daemon, TestDir, API};

/// The database password in the URLs the commands get (the test server
/// trusts loopback, so it is never checked): it must never be printed.
const SECRET: &str = "s3cret-pw";

fn with_password(url: &str) -> String {
    url.replacen(
        "postgres://cfgstore@",
        &format!("postgres://cfgstore:{SECRET}@"),
        1,
    )
}

/// Where a command points: a database with its key file, or a data
/// directory.
enum At<'a> {
    Db(&'a str, &'a Path),
    Dir(&'a Path),
}

fn run(at: &At<'_>, args: &[&str], input: Option<&[u8]>) -> Output {
    let mut command = command(at);
    command
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let Some(input) = input else {
        return command.stdin(Stdio::null()).output().unwrap();
    };
    let mut child = command.stdin(Stdio::piped()).spawn().unwrap();
    use std::io::Write;
    child.stdin.take().unwrap().write_all(input).unwrap();
    child.wait_with_output().unwrap()
}

fn command(at: &At<'_>) -> Command {
    let mut command = Command::new(bin());
    match at {
        At::Db(url, key) => command.args(["--store", url, "--server-key-file"]).arg(key),
        At::Dir(dir) => command.arg("--data").arg(dir),
    };
    command
        .env_remove("CFGSTORE_DATA")
        .env_remove("CFGSTORE_STORE")
        .env_remove("CFGSTORE_SERVER_KEY_FILE");
    command
}

fn ok(at: &At<'_>, args: &[&str]) -> String {
    ok_with(at, args, None)
}

fn ok_with(at: &At<'_>, args: &[&str], input: Option<&[u8]>) -> String {
    let out = run(at, args, input);
    assert!(
        out.status.success(),
        "cfgstore {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn json(at: &At<'_>, args: &[&str]) -> serde_json::Value {
    serde_json::from_str(&ok(at, args)).unwrap()
}

/// `fsck --json` (with `--repair` if asked) and its exit code.
fn fsck(at: &At<'_>, repair: bool) -> (serde_json::Value, Option<i32>) {
    let mut args = vec!["fsck", "--json"];
    if repair {
        args.push("--repair");
    }
    let out = run(at, &args, None);
    let report = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "fsck printed no report ({e}): {}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (report, out.status.code())
}

/// What the store holds, as every command sees it: each branch's history
/// (versions and short_ids), the files of main, the token and user lists,
/// the audit trail's length.
fn state(at: &At<'_>) -> serde_json::Value {
    let history = json(at, &["history", "list", "demo/app.cfg", "main", "--json"]);
    let staging = json(
        at,
        &["history", "list", "demo/app.cfg", "staging", "--json"],
    );
    let ids = |h: &serde_json::Value| -> Vec<(String, String)> {
        h.as_array()
            .unwrap()
            .iter()
            .map(|v| {
                (
                    v["version"].as_str().unwrap().to_string(),
                    v["short_id"].as_str().unwrap().to_string(),
                )
            })
            .collect()
    };
    let tokens: Vec<String> = json(at, &["token", "list", "--json"])
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["id"].as_str().unwrap().to_string())
        .collect();
    let users: Vec<String> = json(at, &["user", "list", "--json"])
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["name"].as_str().unwrap().to_string())
        .collect();
    let audit = json(at, &["audit", "--json"]).as_array().unwrap().len();
    serde_json::json!({
        "main": ids(&history),
        "staging": ids(&staging),
        "files": json(at, &["file", "ls", "demo/app.cfg", "main", "--recursive", "--json"]),
        "tokens": tokens,
        "users": users,
        "audit": audit,
    })
}

/// Adds the user `editor` and a read token for `demo`; returns the token.
fn editor_and_token(at: &At<'_>) -> String {
    ok_with(
        at,
        &[
            "user",
            "add",
            "editor",
            "--password-stdin",
            "--role",
            "ROLE_SITEBUILDER_EDITOR__ROOT",
        ],
        Some(b"password-1234\n"),
    );
    let token = json(
        at,
        &[
            "token", "create", "--owner", "demo", "--name", "erp", "--json",
        ],
    );
    token["token"].as_str().unwrap().to_string()
}

/// A node serving `at`: the token reads `app.json` from main.
fn read_with_token(at: &At<'_>, token: &str, log: &Path) -> (u16, Vec<u8>) {
    let node = Daemon::spawn(command(at), log).unwrap_or_else(|status| {
        panic!(
            "node exited ({status}): {}",
            std::fs::read_to_string(log).unwrap_or_default()
        )
    });
    let r = node.get(
        &format!("{API}/projects/app.cfg/repository/files/app.json/raw?ref=main"),
        &[("PRIVATE-TOKEN", token)],
    );
    (r.status, r.body)
}

/// Issue 17's last items: fsck, backup and restore on a database store.
#[test]
fn fsck_backup_and_restore_work_on_a_database_store() {
    let Some(pg) = PgServer::start("fsck_backup_and_restore_work_on_a_database_store") else {
        return;
    };
    let dir = TestDir::new("pg-tools");
    let key = dir.path().join("server.key");
    let url = with_password(&pg.url());
    let db = At::Db(&url, &key);

    // A store with history on two branches, a prune, a user and a token.
    ok(&db, &["init"]);
    ok(&db, &["project", "create", "demo", "app", "--type", "cfg"]);
    for n in 1..=4 {
        let body = format!("{{\"v\": {n}}}");
        ok_with(
            &db,
            &["file", "put", "demo/app.cfg", "main", "app.json"],
            Some(body.as_bytes()),
        );
    }
    ok_with(
        &db,
        &["file", "put", "demo/app.cfg", "main", "conf/db.yaml"],
        Some(b"host: a\n"),
    );
    ok(
        &db,
        &[
            "branch",
            "create",
            "demo/app.cfg",
            "staging",
            "--from",
            "main",
        ],
    );
    ok_with(
        &db,
        &["file", "put", "demo/app.cfg", "staging", "conf/db.yaml"],
        Some(b"host: b\n"),
    );
    ok(
        &db,
        &[
            "history",
            "prune",
            "demo/app.cfg",
            "main",
            "--keep",
            "3",
            "--yes",
        ],
    );
    let token = editor_and_token(&db);
    let before = state(&db);
    assert_eq!(before["main"].as_array().unwrap().len(), 3, "{before}");

    // fsck reads every kept version and content through the database.
    let (report, code) = fsck(&db, false);
    assert_eq!(code, Some(0), "{report}");
    assert_eq!(report["problems"], serde_json::json!([]), "{report}");
    assert_eq!(report["projects"], 1);
    assert_eq!(report["branches"], 2);
    // main keeps v0004-v0006 (after the prune); staging has v0001-v0002.
    assert_eq!(report["generations"], 5, "{report}");
    // Contents: {"v": 3} and {"v": 4}, host a (main), host b (staging);
    // those of the pruned versions stay until gc, unreferenced.
    assert_eq!(report["objects_verified"], 4, "{report}");
    assert!(
        report["unreferenced_objects"].as_u64().unwrap() >= 2,
        "{report}"
    );

    // A backup of the database is a data directory: it checks clean, it
    // serves with --data, and the copied key verifies the token.
    let backup = dir.path().join("backup");
    let b = json(&db, &["backup", backup.to_str().unwrap(), "--json"]);
    assert_eq!(b["fsck_clean"], true, "{b}");
    assert_eq!(b["backup"]["projects"], 1, "{b}");
    assert_eq!(b["backup"]["branches"], 2, "{b}");
    assert_eq!(b["backup"]["generations"], 5, "{b}");
    assert_eq!(b["backup"]["tokens"], 1, "{b}");
    assert_eq!(b["backup"]["users"], 1, "{b}");
    let copy = dir.path().join("copy");
    ok(&At::Dir(&copy), &["restore", backup.to_str().unwrap()]);
    assert_eq!(
        state(&At::Dir(&copy)),
        before,
        "the copy holds what the database held"
    );
    let (status, body) = read_with_token(&At::Dir(&copy), &token, &dir.path().join("copy.log"));
    assert_eq!((status, body.as_slice()), (200, &b"{\"v\": 4}"[..]));

    // Restored into a new database: the same store, the backup's key in
    // the new key file, the token verifies on a node of it.
    let url2 = with_password(&pg.new_database("restored"));
    let key2 = dir.path().join("restored.key");
    let restored = At::Db(&url2, &key2);
    let r: serde_json::Value = serde_json::from_str(&ok(
        &restored,
        &["restore", backup.to_str().unwrap(), "--json"],
    ))
    .unwrap();
    assert_eq!(r["restored"]["generations"], 5, "{r}");
    assert!(!r.to_string().contains(SECRET), "{r}");
    assert_eq!(std::fs::read(&key2).unwrap(), std::fs::read(&key).unwrap());
    assert_eq!(state(&restored), before);
    let (report, code) = fsck(&restored, false);
    assert_eq!(
        (code, &report["problems"]),
        (Some(0), &serde_json::json!([])),
        "{report}"
    );
    let (status, body) = read_with_token(&restored, &token, &dir.path().join("restored.log"));
    assert_eq!((status, body.as_slice()), (200, &b"{\"v\": 4}"[..]));
    // The restored store takes writes and numbers on from the head.
    ok_with(
        &restored,
        &["file", "put", "demo/app.cfg", "main", "app.json"],
        Some(b"{\"v\": 5}"),
    );
    let history = json(
        &restored,
        &["history", "list", "demo/app.cfg", "main", "--json"],
    );
    assert_eq!(history[0]["version"], "v0007", "{history}");

    // Never over a store: a second restore into it is refused and changes
    // nothing; a key file holding another key is refused before anything
    // is loaded, and left as it was.
    let again = run(&restored, &["restore", backup.to_str().unwrap()], None);
    assert!(!again.status.success());
    let err = String::from_utf8_lossy(&again.stderr);
    assert!(err.contains("already holds a store"), "{err}");
    assert!(!err.contains(SECRET), "{err}");
    let history_after = json(
        &restored,
        &["history", "list", "demo/app.cfg", "main", "--json"],
    );
    assert_eq!(history_after, history);
    let url3 = with_password(&pg.new_database("other_key"));
    let key3 = dir.path().join("other.key");
    std::fs::write(&key3, "00".repeat(32)).unwrap();
    let other = At::Db(&url3, &key3);
    let out = run(&other, &["restore", backup.to_str().unwrap()], None);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("holds another server key"), "{err}");
    assert_eq!(std::fs::read_to_string(&key3).unwrap(), "00".repeat(32));
    assert_eq!(
        pg.psql(
            "other_key",
            "SELECT to_regclass('cfgstore.projects') IS NULL"
        ),
        "t"
    );

    // A restore that fails part-way (the database refuses the versions)
    // leaves no project, record or content, and no key file.
    let url5 = with_password(&pg.new_database("fails"));
    let key5 = dir.path().join("fails.key");
    let fails = At::Db(&url5, &key5);
    ok(&fails, &["init"]);
    std::fs::remove_file(&key5).unwrap();
    pg.psql(
        "fails",
        "CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS
             $$ BEGIN RAISE EXCEPTION 'refused by the test'; END $$;
         CREATE TRIGGER refuse BEFORE INSERT ON cfgstore.generations
             FOR EACH ROW EXECUTE FUNCTION refuse()",
    );
    let out = run(&fails, &["restore", backup.to_str().unwrap()], None);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("refused by the test"), "{err}");
    assert!(!key5.exists(), "the key file made for the restore is gone");
    let count = "SELECT (SELECT count(*) FROM cfgstore.projects) + (SELECT count(*) FROM cfgstore.objects)
                      + (SELECT count(*) FROM cfgstore.records) + (SELECT count(*) FROM cfgstore.audit)";
    assert_eq!(pg.psql("fails", count), "0");
    // Once the database takes it, the same restore goes through.
    pg.psql("fails", "DROP TRIGGER refuse ON cfgstore.generations");
    ok(&fails, &["restore", backup.to_str().unwrap()]);
    assert_eq!(state(&fails), before);

    // A backup of an older cfgstore goes through a data directory first.
    let old = dir.path().join("old");
    copy_fixture("store-0.1.0", &old);
    ok(&At::Dir(&old), &["fsck", "--repair"]); // a git checkout's modes
    let url4 = with_password(&pg.new_database("old_format"));
    let key4 = dir.path().join("old.key");
    let out = run(
        &At::Db(&url4, &key4),
        &["restore", old.to_str().unwrap()],
        None,
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("older cfgstore") && err.contains("upgrade"),
        "{err}"
    );
    assert!(!key4.exists(), "no key file is left by a refused restore");

    // Damage fsck must find: a version an interrupted prune left below the
    // floor (repaired: removed), a content whose bytes changed, and a head
    // behind the newest version (reported, never "repaired" by a guess).
    let leftover = "INSERT INTO cfgstore.generations
                    SELECT owner, repo, branch, 2, body FROM cfgstore.generations
                    WHERE branch = 'main' AND version = 5";
    pg.psql("postgres", leftover);
    let (report, code) = fsck(&db, false);
    assert_eq!(code, Some(1), "{report}");
    let problems = report["problems"].to_string();
    assert!(problems.contains("below FLOOR v0004"), "{problems}");
    let (report, code) = fsck(&db, true);
    assert_eq!(code, Some(0), "{report}");
    assert_eq!(report["problems"][0]["repaired"], true, "{report}");
    let below = "SELECT count(*) FROM cfgstore.generations WHERE branch = 'main' AND version < 4";
    assert_eq!(pg.psql("postgres", below), "0");
    assert_eq!(fsck(&db, false).0["problems"], serde_json::json!([]));

    // The floor's own version gone: a gap, counted from the floor.
    let floor_row = "FROM cfgstore.generations WHERE branch = 'main' AND version = 4";
    pg.psql(
        "postgres",
        &format!("CREATE TABLE kept AS SELECT * {floor_row}"),
    );
    pg.psql("postgres", &format!("DELETE {floor_row}"));
    let (report, code) = fsck(&db, true);
    assert_eq!(code, Some(1), "{report}");
    assert!(
        report["problems"]
            .to_string()
            .contains("version numbers have gaps"),
        "{report}"
    );
    pg.psql(
        "postgres",
        "INSERT INTO cfgstore.generations SELECT * FROM kept",
    );
    assert_eq!(fsck(&db, false).0["problems"], serde_json::json!([]));

    pg.psql(
        "postgres",
        "UPDATE cfgstore.objects SET body = convert_to('{\"v\": 9}', 'UTF8')
         WHERE body = convert_to('{\"v\": 4}', 'UTF8')",
    );
    pg.psql(
        "postgres",
        "UPDATE cfgstore.branches SET head = head - 1 WHERE name = 'staging'",
    );
    let (report, code) = fsck(&db, true);
    assert_eq!(code, Some(1), "{report}");
    let problems = report["problems"].as_array().unwrap();
    let find = |what: &str| {
        problems
            .iter()
            .find(|p| p["detail"].as_str().unwrap().contains(what))
            .unwrap_or_else(|| panic!("no problem {what:?} in {problems:?}"))
    };
    let content = find("content does not match its hash");
    assert!(
        content["detail"].as_str().unwrap().contains("app.json"),
        "{content}"
    );
    assert_eq!(content["repaired"], false);
    let head = find("head names v0001 but v0002 is the newest");
    assert!(head["path"].as_str().unwrap().contains("staging"), "{head}");
    assert_eq!(head["repaired"], false);
    assert!(
        !report.to_string().contains(SECRET),
        "no database password in the report"
    );
    let text = ok_or_fail(&db, &["fsck"]);
    assert!(text.contains("PROBLEMS FOUND"), "{text}");
}

/// The output of a command expected to exit 1 (problems found).
fn ok_or_fail(at: &At<'_>, args: &[&str]) -> String {
    let out = run(at, args, None);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// From a data directory to a database: a file store's backup restores
/// into PostgreSQL (the way to move a store onto several nodes).
#[test]
fn a_data_directory_moves_into_a_database_by_backup_and_restore() {
    let Some(pg) = PgServer::start("a_data_directory_moves_into_a_database_by_backup_and_restore")
    else {
        return;
    };
    let dir = TestDir::new("pg-move");
    let data: PathBuf = dir.path().join("data");
    let files = At::Dir(&data);
    ok(&files, &["init"]);
    ok(
        &files,
        &["project", "create", "demo", "app", "--type", "cfg"],
    );
    ok_with(
        &files,
        &["file", "put", "demo/app.cfg", "main", "app.json"],
        Some(b"{\"v\": 4}"),
    );
    ok(
        &files,
        &[
            "branch",
            "create",
            "demo/app.cfg",
            "staging",
            "--from",
            "main",
        ],
    );
    let token = editor_and_token(&files);
    let before = state(&files);
    let backup = dir.path().join("backup");
    ok(&files, &["backup", backup.to_str().unwrap()]);

    let url = pg.url();
    let key = dir.path().join("server.key");
    let db = At::Db(&url, &key);
    ok(&db, &["restore", backup.to_str().unwrap()]);
    assert_eq!(state(&db), before);
    assert_eq!(
        std::fs::read(&key).unwrap(),
        std::fs::read(data.join(".cfgstore/server.key")).unwrap()
    );
    let (status, body) = read_with_token(&db, &token, &dir.path().join("node.log"));
    assert_eq!((status, body.as_slice()), (200, &b"{\"v\": 4}"[..]));
    let (report, code) = fsck(&db, false);
    assert_eq!(
        (code, &report["problems"]),
        (Some(0), &serde_json::json!([])),
        "{report}"
    );
}

/// Two writers storing the same new contents at once (imports of one
/// folder into two branches) both succeed: they insert the contents in
/// one order, so neither waits for the other in a cycle (a deadlock the
/// database would break by failing one of them).
#[test]
fn concurrent_writes_of_the_same_contents_on_two_branches_both_succeed() {
    let Some(pg) =
        PgServer::start("concurrent_writes_of_the_same_contents_on_two_branches_both_succeed")
    else {
        return;
    };
    let dir = TestDir::new("pg-same");
    let key = dir.path().join("server.key");
    let url = pg.url();
    let db = At::Db(&url, &key);
    ok(&db, &["init"]);
    ok(&db, &["project", "create", "demo", "app", "--type", "cfg"]);
    ok(&db, &["branch", "create", "demo/app.cfg", "staging"]);
    for round in 0..6 {
        let files = dir.path().join(format!("round{round}"));
        for n in 0..300 {
            let path = files.join(format!("f{n:03}.txt"));
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, format!("round {round} file {n}\n")).unwrap();
        }
        let folder = files.to_str().unwrap();
        let imports: Vec<_> = ["main", "staging"]
            .into_iter()
            .map(|branch| {
                let mut command = command(&db);
                command
                    .args(["import", "demo/app.cfg", branch, folder])
                    .stdout(Stdio::null())
                    .stderr(Stdio::piped())
                    .spawn()
                    .unwrap()
            })
            .collect();
        for import in imports {
            let out = import.wait_with_output().unwrap();
            assert!(
                out.status.success(),
                "round {round}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
    let (report, code) = fsck(&db, false);
    assert_eq!(
        (code, &report["problems"]),
        (Some(0), &serde_json::json!([])),
        "{report}"
    );
}
