//! The fleet view: every (token, `X-Instance-Id`) that reads a project,
//! when and from where, and the `short_id` it last received per branch —
//! from the branches listing as from file reads; who is current and who
//! is behind since when, through the admin API and `cfgstore fleet`,
//! kept across a restart.

use crate::util::{
    self, create_token, json, ok, request, run_with_input, Login, TestDir, TestServer, API,
};

const P: &str = "demo/b2b-cnc.erp-config";
const R: &str = "/projects/b2b-cnc.erp-config/repository";

fn read(server: &TestServer, path: &str, token: &str, instance: Option<&str>) -> util::Resp {
    let mut headers = vec![("PRIVATE-TOKEN", token), ("User-Agent", "erp-poller/2.1")];
    if let Some(i) = instance {
        headers.push(("X-Instance-Id", i));
    }
    let r = request(server.addr, "GET", &format!("{API}{R}{path}"), &headers);
    assert_eq!(r.status, 200, "{path}: {}", r.text());
    r
}

/// `GET /site-builder/api/projects/{id}/fleet` as `login` sees it (200).
fn fleet_rows(login: &Login, addr: std::net::SocketAddr, id: &str) -> serde_json::Value {
    let r = login.send(addr, "GET", &format!("/projects/{id}/fleet"), b"");
    assert_eq!(r.status, 200, "{}", r.text());
    r.json()
}

/// The row of a branch and an instance (by its label, as the fleet
/// shows it: `cfgstore fleet --instance` finds the label of an id).
fn row<'a>(
    rows: &'a serde_json::Value,
    branch: &str,
    label: Option<&str>,
) -> &'a serde_json::Value {
    rows.as_array()
        .unwrap()
        .iter()
        .find(|r| r["branch"] == branch && r["instance_id"].as_str() == label)
        .unwrap_or_else(|| panic!("no row for {branch} {label:?} in {rows:#}"))
}

/// The label the fleet gives an instance id (the server key's MAC).
fn label(data: &std::path::Path, instance: &str) -> String {
    let store = cfgstore::store::Store::open(data).unwrap();
    let label = store.server_key().unwrap().instance_label(instance);
    assert!(label.starts_with("i-") && label.len() == 14, "{label}");
    label
}

#[test]
fn the_fleet_shows_who_is_current_and_who_is_behind_since_when() {
    let dir = TestDir::new("fleet");
    let data = dir.data();
    ok(&data, &["init", "--example"]);
    util::add_user(&data, "demo", "demo-password", &[]);
    let (_, plant) = create_token(&data, "demo", &[]);
    let (id_b, office) = create_token(&data, "demo", &[]);
    let branches = json(&data, &["branch", "list", P]);
    let main_before = util::short_id_in(&branches, "main");
    let server = TestServer::start(&data);
    // Site 1 lists the branches (every branch's state counts as received).
    read(&server, "/branches", &plant, Some("site-1"));
    // Site 2 reads a file on main; the office token sends no instance id.
    read(
        &server,
        "/files/operations.config.json/raw?ref=main",
        &plant,
        Some("site-2"),
    );
    read(&server, "/tree?ref=main", &office, None);
    // main moves on; site 1 picks it up, site 2 and the office do not.
    let out = run_with_input(
        &data,
        &["file", "put", P, "main", "operations.config.json"],
        b"{\"maxParallelJobs\": 3}",
    );
    assert!(out.status.success());
    let history = json(&data, &["history", "list", P, "main"]);
    let (main_now, moved_at) = (
        history[0]["short_id"].as_str().unwrap().to_string(),
        history[0]["created_at"].as_str().unwrap().to_string(),
    );
    read(
        &server,
        "/files/operations.config.json/raw?ref=main",
        &plant,
        Some("site-1"),
    );

    let login = Login::new(server.addr, "demo", "demo-password");
    let rows = fleet_rows(&login, server.addr, "b2b-cnc.erp-config");
    let (l1, l2) = (label(&data, "site-1"), label(&data, "site-2"));
    let site1 = row(&rows, "main", Some(&l1));
    assert_eq!(site1["short_id"], main_now.as_str());
    assert_eq!(site1["current"], true);
    assert_eq!(site1["behind_since"], serde_json::Value::Null);
    assert_eq!(site1["address"], "127.0.0.1");
    assert_eq!(site1["user_agent"], "erp-poller/2.1");
    assert_eq!(site1["token_name"], "test");
    let site2 = row(&rows, "main", Some(&l2));
    assert_eq!(site2["short_id"], main_before.as_str());
    assert_eq!(site2["current"], false);
    assert_eq!(site2["live_short_id"], main_now.as_str());
    assert_eq!(site2["behind_since"], moved_at.as_str());
    let office_row = row(&rows, "main", None);
    assert_eq!(office_row["token_id"], id_b.as_str());
    assert_eq!(office_row["current"], false);
    // From the branches listing: site 1 holds every other branch's state.
    for b in branches
        .as_array()
        .unwrap()
        .iter()
        .filter(|b| b["name"] != "main")
    {
        let name = b["name"].as_str().unwrap();
        let r = row(&rows, name, Some(&l1));
        assert_eq!(r["short_id"], b["short_id"], "{name}");
        assert_eq!(r["current"], true, "{name}");
    }
    // Behind first within a branch.
    let main_rows: Vec<_> = rows
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["branch"] == "main")
        .collect();
    assert_eq!(main_rows.last().unwrap()["current"], true);
    assert_eq!(main_rows.first().unwrap()["current"], false);

    // The daemon writes the fleet at shutdown (and every few seconds);
    // the CLI shows the same rows.
    drop(server);
    let cli = json(&data, &["fleet", P]);
    assert_eq!(cli, rows);
    let text = ok(&data, &["fleet", P]);
    assert!(
        text.contains(&format!("behind {main_now} since {moved_at}")),
        "{text}"
    );
    assert!(text.contains(&l2), "{text}");
    // The ids themselves are nowhere: not in the view, not on disk.
    assert!(!cli.to_string().contains("site-1"));
    let on_disk =
        std::fs::read_to_string(data.join(".cfgstore/fleet/demo/b2b-cnc.erp-config.json")).unwrap();
    assert!(
        !on_disk.contains("site-") && on_disk.contains(&l1),
        "{on_disk}"
    );
    // An operator finds an ERP by the id it sends.
    let one = json(&data, &["fleet", P, "--instance", "site-2"]);
    assert_eq!(one.as_array().unwrap().len(), 1);
    assert_eq!(one[0]["instance_id"], l2.as_str());
    // A restarted daemon starts from what was written.
    let server = TestServer::start(&data);
    let login = Login::new(server.addr, "demo", "demo-password");
    let again = fleet_rows(&login, server.addr, "b2b-cnc.erp-config");
    assert_eq!(again, rows);
    read(&server, "/branches/main", &plant, Some("site-2"));
    let after = fleet_rows(&login, server.addr, "b2b-cnc.erp-config");
    assert_eq!(
        row(&after, "main", Some(&l2))["current"],
        true,
        "the single-branch read counts"
    );
    assert_eq!(
        after.as_array().unwrap().len(),
        rows.as_array().unwrap().len()
    );
}

#[test]
fn fleet_of_an_unknown_project_and_an_empty_one() {
    let dir = TestDir::new("fleet-empty");
    let data = dir.data();
    ok(&data, &["init", "--example"]);
    let out = util::run(&data, &["fleet", "demo/nope.cfg"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("project not found"));
    assert_eq!(json(&data, &["fleet", P]), serde_json::json!([]));
}

/// The readers of a public project are every tenant's machines: a user
/// sees the rows of the tokens they manage, ROOT all of them. A paginated
/// branches list counts only the branches of the page sent.
#[test]
fn a_user_sees_only_their_own_tokens_and_pages_count_as_sent() {
    let dir = TestDir::new("fleet-tenants");
    let data = dir.data();
    ok(&data, &["init", "--example"]);
    util::add_user(&data, "demo", "demo-password", &[]);
    util::add_user(&data, "acme", "acme-password", &[]);
    util::add_user(
        &data,
        "boss",
        "boss-password",
        &["ROLE_SITEBUILDER_EDITOR__ROOT"],
    );
    let (demo_id, demo_token) = create_token(&data, "demo", &[]);
    let (acme_id, acme_token) = create_token(&data, "acme", &[]);
    ok(
        &data,
        &[
            "branch",
            "create",
            "public/units.erp-config",
            "zz-extra",
            "--from",
            "main",
        ],
    );
    let server = TestServer::start(&data);
    for token in [&demo_token, &acme_token] {
        let r = request(
            server.addr,
            "GET",
            &format!(
                "{API}/projects/public%2Funits.erp-config/repository/branches?per_page=1&page=1"
            ),
            &[("PRIVATE-TOKEN", token)],
        );
        assert_eq!(r.status, 200, "{}", r.text());
    }
    let fleet = |user: &str, password: &str| {
        let login = Login::new(server.addr, user, password);
        let rows = fleet_rows(&login, server.addr, "public%2Funits.erp-config");
        let mut ids: Vec<String> = rows
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["token_id"].as_str().unwrap().to_string())
            .collect();
        ids.sort();
        (rows, ids)
    };
    let (rows, ids) = fleet("demo", "demo-password");
    assert_eq!(ids, std::slice::from_ref(&demo_id), "{rows}");
    assert_eq!(rows[0]["token_owner"], "demo");
    let (_, ids) = fleet("acme", "acme-password");
    assert_eq!(ids, std::slice::from_ref(&acme_id));
    let (_, ids) = fleet("boss", "boss-password");
    let mut both = vec![demo_id, acme_id];
    both.sort();
    assert_eq!(ids, both);
    // Page 1 of one branch: only that branch was received.
    let branches = json(&data, &["branch", "list", "public/units.erp-config"]);
    assert!(branches.as_array().unwrap().len() >= 2);
    let (rows, _) = fleet("boss", "boss-password");
    let first = branches[0]["name"].as_str().unwrap();
    assert_eq!(
        rows.as_array().unwrap().len(),
        2,
        "one row per token: {rows}"
    );
    assert!(
        rows.as_array()
            .unwrap()
            .iter()
            .all(|r| r["branch"] == first),
        "{rows}"
    );
}
