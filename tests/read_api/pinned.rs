//! Pinned reads (`ref` = a commit id or `short_id` of a retained version),
//! the hint of a wrong `ref`, and `GET /projects` and `GET /user`.

use super::*;

fn get_json(server: &TestServer, path: &str, token: &str) -> (u16, serde_json::Value) {
    let r = server.get(path, &[("PRIVATE-TOKEN", token)]);
    (
        r.status,
        serde_json::from_slice(&r.body).unwrap_or_default(),
    )
}

#[test]
fn a_commit_id_pins_every_read_to_one_version() {
    let dir = TestDir::new("pinned");
    let (data, token) = setup(&dir);
    let server = TestServer::start(&data);
    for (round, mount) in [API, V4].into_iter().enumerate() {
        let base = format!("{mount}/projects/{P}/repository");
        let new = format!("new-{round}.txt");
        let (_, branch) = get_json(&server, &format!("{base}/branches/main"), &token);
        let (commit, short) = (
            branch["commit"]["id"].as_str().unwrap().to_string(),
            branch["commit"]["short_id"].as_str().unwrap().to_string(),
        );
        let file = format!("{base}/files/operations.config.json/raw");
        let before = server.get(&format!("{file}?ref=main"), &[("PRIVATE-TOKEN", &token)]);
        assert_eq!(before.status, 200);
        // The branch moves on: a new file, a changed one.
        run_with_input(
            &data,
            &[
                "file",
                "put",
                &format!("demo/{P}"),
                "main",
                "operations.config.json",
            ],
            format!("{{\"moved\": \"{mount}\"}}").as_bytes(),
        );
        run_with_input(
            &data,
            &["file", "put", &format!("demo/{P}"), "main", &new],
            b"n",
        );
        for id in [&commit, &short] {
            let pinned = server.get(&format!("{file}?ref={id}"), &[("PRIVATE-TOKEN", &token)]);
            assert_eq!(
                (pinned.status, &pinned.body),
                (200, &before.body),
                "ref={id}"
            );
            let (status, tree) = get_json(
                &server,
                &format!("{base}/tree?recursive=true&ref={id}"),
                &token,
            );
            assert_eq!(status, 200);
            let paths: Vec<&str> = tree
                .as_array()
                .unwrap()
                .iter()
                .map(|e| e["path"].as_str().unwrap())
                .collect();
            assert!(paths.contains(&"operations.config.json"), "{paths:?}");
            assert!(
                !paths.contains(&new.as_str()),
                "the pinned tree is the old one: {paths:?}"
            );
        }
        let live = server.get(&format!("{file}?ref=main"), &[("PRIVATE-TOKEN", &token)]);
        assert_ne!(live.body, before.body, "the branch itself moved");
    }
}

#[test]
fn a_wrong_ref_is_a_404_with_a_hint_naming_the_branches() {
    let dir = TestDir::new("wrong-ref");
    let (data, token) = setup(&dir);
    let server = TestServer::start(&data);
    let base = format!("{API}/projects/{P}/repository");
    for (path, message) in [
        (format!("{base}/tree?ref=master"), "404 Tree Not Found"),
        (
            format!("{base}/files/operations.config.json/raw?ref=master"),
            "404 File Not Found",
        ),
        (
            format!("{base}/files/operations.config.json/raw?ref=deadbeef"),
            "404 File Not Found",
        ),
        (
            format!("{base}/tree?ref={}", "0".repeat(40)),
            "404 Tree Not Found",
        ),
    ] {
        let (status, body) = get_json(&server, &path, &token);
        assert_eq!(
            (status, body["message"].as_str()),
            (404, Some(message)),
            "{path}"
        );
        let hint = body["hint"].as_str().unwrap_or_default();
        assert!(
            hint.contains("main, release/2026.1"),
            "{path}: the hint names the branches: {body}"
        );
    }
    // A ref that is no name at all is still a 400.
    let (status, _) = get_json(&server, &format!("{base}/tree?ref=..%2Fx"), &token);
    assert_eq!(status, 400);
}

#[test]
fn projects_and_user_answer_for_a_token_on_both_mounts() {
    let dir = TestDir::new("projects-user");
    let (data, token) = setup(&dir);
    ok(
        &data,
        &["project", "create", "demo", "other", "--type", "cfg"],
    );
    let (_, narrow) = create_token(&data, "demo", &["--repos", "other.cfg"]);
    let server = TestServer::start(&data);
    for mount in [API, V4] {
        let (status, all) = get_json(&server, &format!("{mount}/projects"), &token);
        assert_eq!(status, 200);
        let names: Vec<&str> = all
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["path_with_namespace"].as_str().unwrap())
            .collect();
        assert_eq!(
            names,
            [
                "demo/b2b-cnc.erp-config",
                "demo/other.cfg",
                "public/units.erp-config"
            ],
            "never acme's"
        );
        let (_, some) = get_json(&server, &format!("{mount}/projects"), &narrow);
        let ids: Vec<&str> = some
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["id"].as_str().unwrap())
            .collect();
        assert_eq!(ids, ["other.cfg", "public/units.erp-config"]);
        let (status, user) = get_json(&server, &format!("{mount}/user"), &token);
        assert_eq!((status, user["username"].as_str()), (200, Some("demo")));
        let anonymous = server.get(&format!("{mount}/user"), &[]);
        assert_eq!(anonymous.status, 401);
    }
}
