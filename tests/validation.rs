//! Nothing malformed reaches an ERP: every write path checks JSON, YAML
//! and TOML (duplicate keys included) and refuses with 422 naming line and
//! column, changing nothing; `--no-validate` / `?validate=false` store it
//! anyway, and say so in the audit trail.

use crate::util::{self, json, ok, run, run_with_input, Login, TestDir, TestServer};

const P: &str = "demo/b2b-cnc.erp-config";
const FILES: &str = "/projects/b2b-cnc.erp-config/branches/main/files";

fn setup(dir: &TestDir) -> std::path::PathBuf {
    let data = dir.data();
    ok(&data, &["init", "--example"]);
    util::add_user(&data, "demo", "demo-password", &[]);
    data
}

fn versions(data: &std::path::Path) -> usize {
    json(data, &["history", "list", P, "main"])
        .as_array()
        .unwrap()
        .len()
}

#[test]
fn the_admin_api_refuses_malformed_files_with_422_and_changes_nothing() {
    let dir = TestDir::new("validate-api");
    let data = setup(&dir);
    let server = TestServer::start(&data);
    let login = Login::new(server.addr, "demo", "demo-password");
    let before = versions(&data);
    for (path, body, says) in [
        (
            "operations.config.json",
            &b"{\n  \"maxParallelJobs\": 20,\n}"[..],
            "line 3, column 1",
        ),
        (
            "dup.json",
            b"{\"a\": 1,\n \"a\": 2}",
            "duplicate key \\\"a\\\"",
        ),
        (
            "erp/connection.yaml",
            b"host: a\nport: 1\nhost: b\n",
            "line 3, column 1: duplicate key",
        ),
        ("broken.yml", b"a: [1, 2\n", "line "),
        ("settings.toml", b"a = 1\na = 2\n", "line 2, column 1"),
    ] {
        let r = login.send(server.addr, "PUT", &format!("{FILES}/{path}"), body);
        assert_eq!(r.status, 422, "{path}: {}", r.text());
        assert!(r.text().contains(says), "{path}: {}", r.text());
        assert_eq!(r.json()["code"], "UNPROCESSABLE");
        assert_eq!(r.json()["errors"].as_array().unwrap().len(), 1);
    }
    assert_eq!(versions(&data), before, "nothing was written");
    // Other files are not looked at; well-formed ones pass.
    let r = login.send(server.addr, "PUT", &format!("{FILES}/notes.txt"), b"{{{");
    assert_eq!(r.status, 200);
    let r = login.send(server.addr, "PUT", &format!("{FILES}/ok.yaml"), b"a: 1\n");
    assert_eq!(r.status, 200);
    // ?validate=false stores it, and the trail says it was not checked.
    let r = login.send(
        server.addr,
        "PUT",
        &format!("{FILES}/dup.json?validate=false"),
        b"{\"a\":1,\"a\":2}",
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let audit = json(&data, &["audit", "--action", "file.put", "--limit", "1"]);
    assert_eq!(audit[0]["target"], format!("{P}@main:dup.json"));
    assert_eq!(audit[0]["details"]["validated"], false);
}

#[test]
fn the_cli_refuses_malformed_files_and_names_every_one_in_an_import() {
    let dir = TestDir::new("validate-cli");
    let data = setup(&dir);
    let before = versions(&data);
    let out = run_with_input(&data, &["file", "put", P, "main", "a.json"], b"{\"x\": }");
    assert_eq!(out.status.code(), Some(2));
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(
        said.contains("a.json is not valid: line 1, column 7"),
        "{said}"
    );
    let src = dir.path().join("src");
    std::fs::create_dir_all(src.join("conf")).unwrap();
    std::fs::write(src.join("good.json"), b"{}").unwrap();
    std::fs::write(src.join("conf/bad.yaml"), b"k: 1\nk: 2\n").unwrap();
    std::fs::write(src.join("conf/bad.toml"), b"x = \n").unwrap();
    let out = run(&data, &["import", P, "main", src.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(
        said.contains("conf/bad.yaml: line 2, column 1: duplicate key"),
        "{said}"
    );
    assert!(said.contains("conf/bad.toml: line 1"), "{said}");
    assert_eq!(versions(&data), before, "nothing was written");
    // --no-validate stores them, audited.
    ok(
        &data,
        &["import", P, "main", src.to_str().unwrap(), "--no-validate"],
    );
    assert_eq!(versions(&data), before + 1);
    let audit = json(&data, &["audit", "--action", "file.import", "--limit", "1"]);
    assert_eq!(audit[0]["details"]["validated"], false);
    let out = run_with_input(
        &data,
        &["file", "put", P, "main", "a.json", "--no-validate"],
        b"{\"x\": }",
    );
    assert!(out.status.success());
}

#[test]
fn a_dry_run_checks_and_diffs_and_writes_nothing() {
    let dir = TestDir::new("dry-run");
    let data = setup(&dir);
    let server = TestServer::start(&data);
    let login = Login::new(server.addr, "demo", "demo-password");
    let before = versions(&data);
    let live = json(&data, &["branch", "list", P])[0]["short_id"].clone();
    let path = format!("{FILES}/operations.config.json?dry_run=true");
    let r = login.send(
        server.addr,
        "PUT",
        &path,
        b"{\n  \"maxParallelJobs\": 20\n}\n",
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let dry = r.json();
    assert_eq!(dry["valid"], true);
    assert_eq!(dry["errors"], serde_json::json!([]));
    assert_eq!(dry["old_short_id"], live);
    assert_ne!(dry["short_id"], live);
    assert_eq!(dry["changed"], true);
    let diff = dry["diff"].as_str().unwrap();
    assert!(
        diff.starts_with("@@ ") && diff.contains("+  \"maxParallelJobs\": 20"),
        "{diff}"
    );
    // An invalid one says why, still writing nothing.
    let bad = login.send(server.addr, "PUT", &path, b"{\"a\": 1, \"a\": 2}");
    assert_eq!(bad.status, 200);
    assert_eq!(bad.json()["valid"], false);
    assert!(bad.json()["errors"][0]
        .as_str()
        .unwrap()
        .contains("duplicate key"));
    assert_eq!(versions(&data), before, "a dry run writes nothing");
    // The real put then makes exactly the short_id the dry run foretold.
    let body = b"{\n  \"maxParallelJobs\": 20\n}\n";
    let put = login.send(
        server.addr,
        "PUT",
        &format!("{FILES}/operations.config.json"),
        body,
    );
    assert_eq!(put.json()["short_id"], dry["short_id"]);
    // The CLI's --dry-run: exit 2 when it would be refused, nothing written.
    let after = versions(&data);
    let cli = run_with_input(
        &data,
        &["file", "put", P, "main", "x.yaml", "--dry-run"],
        b"k: 1\nk: 2\n",
    );
    assert_eq!(cli.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&cli.stderr).contains("line 2, column 1: duplicate key"));
    let ok_run = run_with_input(
        &data,
        &["file", "put", P, "main", "x.yaml", "--dry-run"],
        b"k: 1\n",
    );
    assert!(ok_run.status.success());
    assert!(String::from_utf8_lossy(&ok_run.stdout).contains("+k: 1"));
    assert_eq!(versions(&data), after);
}

#[test]
fn a_schema_kept_with_the_config_is_enforced_on_every_write_path() {
    let dir = TestDir::new("schemas");
    let data = setup(&dir);
    let server = TestServer::start(&data);
    let login = Login::new(server.addr, "demo", "demo-password");
    let schema = br#"{"type": "object", "properties": {"maxParallelJobs": {"type": "integer", "maximum": 64}}}"#;
    let r = login.send(
        server.addr,
        "PUT",
        &format!("{FILES}/operations.config.schema.json"),
        schema,
    );
    assert_eq!(
        r.status,
        200,
        "the example's file satisfies it: {}",
        r.text()
    );
    let before = versions(&data);
    let r = login.send(
        server.addr,
        "PUT",
        &format!("{FILES}/operations.config.json"),
        b"{\"maxParallelJobs\": 500}",
    );
    assert_eq!(r.status, 422, "{}", r.text());
    let error = r.json()["errors"][0].as_str().unwrap().to_string();
    assert!(
        error.starts_with("operations.config.json: /maxParallelJobs: 500"),
        "{error}"
    );
    // The same file as YAML next to it is governed too; the CLI refuses it.
    let out = run_with_input(
        &data,
        &["file", "put", P, "main", "operations.config.yaml"],
        b"maxParallelJobs: 65\n",
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/maxParallelJobs: 65"));
    // A schema change that the file no longer satisfies is refused.
    let tighter = br#"{"type": "object", "properties": {"maxParallelJobs": {"maximum": 1}}}"#;
    let r = login.send(
        server.addr,
        "PUT",
        &format!("{FILES}/operations.config.schema.json"),
        tighter,
    );
    assert_eq!(r.status, 422, "{}", r.text());
    assert!(
        r.text()
            .contains("operations.config.json: /maxParallelJobs"),
        "{}",
        r.text()
    );
    // An import is checked against schemas in the import and in the branch.
    let src = dir.path().join("src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(
        src.join("operations.config.json"),
        b"{\"maxParallelJobs\": 99}",
    )
    .unwrap();
    let out = run(&data, &["import", P, "main", src.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(versions(&data), before, "nothing was written");
    // A dry run reports schema problems without writing.
    let dry = login.send(
        server.addr,
        "PUT",
        &format!("{FILES}/operations.config.json?dry_run=true"),
        b"{\"maxParallelJobs\": 500}",
    );
    assert_eq!(dry.json()["valid"], false);
    assert!(dry.json()["errors"][0]
        .as_str()
        .unwrap()
        .contains("/maxParallelJobs: 500"));
    // Within the schema it is stored.
    let r = login.send(
        server.addr,
        "PUT",
        &format!("{FILES}/operations.config.json"),
        b"{\"maxParallelJobs\": 64}",
    );
    assert_eq!(r.status, 200, "{}", r.text());
}
