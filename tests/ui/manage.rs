//! A second round in a real browser, what the first leaves out: create a
//! project and a branch, write a new file, delete one, read the fleet,
//! unbind a token's fingerprint, rotate a token and revoke one. Each step
//! is checked through the CLI or the read API.

use super::*;

const CAROL_PASSWORD: &str = "carol-password-1";
const BILLING: &str = "alice/billing.cfg";
const B: &str = "/site-builder/p/alice/billing.cfg";
const RAW: &str = "/projects/alice%2Fbilling.cfg/repository/files/rates.json/raw?ref=main";
const RATES: &str = "{\n  \"vat\": 19\n}\n";
/// A PNG's signature and a few bytes that are no text.
const PNG: &[u8] = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR\xff\xfe";

/// `GET` a file through the read API with `token`, as ERP instance
/// `instance`: the status code.
fn api_read(daemon: &Daemon, token: &str, instance: &str) -> u16 {
    let path = format!("{API}{RAW}");
    let r = daemon.get(
        &path,
        &[("PRIVATE-TOKEN", token), ("X-Instance-Id", instance)],
    );
    r.status
}

/// alice's token `id`, as `token list` shows it.
fn listed_token(data: &Path, id: &str) -> Value {
    let listed = util::json(data, &["token", "list", "--owner", "alice"]);
    let found = listed.as_array().unwrap().iter().find(|t| t["id"] == id);
    found
        .unwrap_or_else(|| panic!("no token {id} in {listed}"))
        .clone()
}

/// The label the fleet shows for an instance id (the server key's MAC).
fn instance_label(data: &Path, instance: &str) -> String {
    let store = cfgstore::store::Store::open(data).unwrap();
    store.server_key().unwrap().instance_label(instance)
}

#[test]
fn ui_creates_deletes_and_manages_tokens_and_the_fleet() {
    let Some(tools) = browser_tools() else { return };
    let dir = TestDir::new("ui-manage");
    let data = dir.data();
    ok(&data, &["init"]);
    add_user(&data, "alice", PASSWORD, &[]);
    add_user(
        &data,
        "carol",
        CAROL_PASSWORD,
        &["ROLE_SITEBUILDER_EDITOR__READONLY"],
    );
    // The ERP plant's token: bound to the first instance that reads.
    let (plant_id, plant) =
        util::create_token(&data, "alice", &["--fingerprint", "--repos", "billing.cfg"]);
    let daemon = Daemon::start(&data, dir.path().join("daemon.log"));
    let base = format!("http://{}", daemon.addr);
    let file = &format!("{B}/b/main/file/rates.json");
    let staging_tree = &format!("{B}/b/staging/tree");
    let staging_file = &format!("{B}/b/staging/file/rates.json");

    runtime().block_on(async {
        let mut b = Browser::start(&tools, dir.path(), &base).await;
        b.login("alice", PASSWORD).await;

        // ---- a new project, with its main branch
        b.fill("form#new-project input[name=name]", "billing").await;
        b.submit("form#new-project").await;
        b.expect_path(B).await;
        b.expect_text(".default", &["main"]).await;
        let projects = util::json(&data, &["project", "list", "--owner", "alice"]);
        let created = projects
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["owner"] == "alice" && p["id"] == "billing.cfg" && p["type"] == "cfg");
        ensure!(b, created, "the store has {BILLING}: {projects}");

        // ---- a new file on main, saved from the new-file form
        b.click_css("a.branch").await;
        b.click_css("a#new-file").await;
        b.fill("form#editor input[name=path]", "rates.json").await;
        b.fill("form#editor textarea[name=content]", RATES).await;
        b.click_css("form#editor button[name=action][value=save]")
            .await;
        b.expect_path(file).await;
        b.expect_shown("pre#content", RATES).await;
        let stored = ok(&data, &["file", "get", BILLING, "main", "rates.json"]);
        assert_eq!(stored, RATES, "the store has the new file");
        let versions = util::json(&data, &["history", "list", BILLING, "main"]);
        assert_eq!(versions[0]["actor"], "alice", "{versions}");

        // ---- a branch copied from main, and a file deleted on it only
        b.goto(B).await;
        // The branch's last change: who, and what.
        b.expect_text(
            "table#branches tr.default",
            &["alice", "file.put rates.json"],
        )
        .await;
        b.fill("form#new-branch input[name=name]", "staging").await;
        b.submit("form#new-branch").await;
        b.expect_path(staging_tree).await;
        b.expect_links("a.file", &[staging_file]).await;
        b.click_css("a.file").await;
        b.click_css("a#delete").await;
        b.submit("form#delete-file").await;
        b.expect_path(staging_tree).await;
        b.find(".flash").await;
        b.expect_links("a.file", &[]).await;
        let gone = util::run(&data, &["file", "get", BILLING, "staging", "rates.json"]);
        assert!(!gone.status.success(), "rates.json is gone from staging");
        let kept = ok(&data, &["file", "get", BILLING, "main", "rates.json"]);
        assert_eq!(kept, RATES, "main keeps it");
        let staging = util::json(&data, &["history", "list", BILLING, "staging"]);
        assert_eq!(staging[0]["actor"], "alice", "{staging}");

        // ---- a binary file uploaded into staging: offered as a download
        let logo = dir.path().join("logo.png");
        std::fs::write(&logo, PNG).unwrap();
        let picker = b.find("form#upload input[type=file][name=file]").await;
        picker.send_keys(logo.to_str().unwrap()).await.unwrap();
        b.submit("form#upload").await;
        b.expect_path(&format!("{B}/b/staging/file/logo.png")).await;
        b.expect_text(".flash", &["Saved"]).await;
        b.find("p#binary").await;
        ensure!(
            b,
            b.find_all("pre#content, a#edit").await.is_empty(),
            "no text, no editor"
        );
        let download = b.hrefs("a#download").await;
        let download = download[0].strip_prefix(&base).unwrap();
        let cookie = b.cookies().await;
        let r = util::send(daemon.addr, "GET", download, &[("Cookie", &cookie)], b"");
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.body, PNG, "the download is the uploaded bytes");
        let disposition = r.header("content-disposition").unwrap_or_default();
        assert!(disposition.starts_with("attachment"), "{disposition}");
        let stored = util::run(&data, &["file", "get", BILLING, "staging", "logo.png"]);
        assert_eq!(stored.stdout, PNG, "the store has the uploaded bytes");

        // ---- the two branches compared, and staging's first version read
        b.goto(&format!("{B}/compare")).await;
        b.fill("form#compare-form input[name=from]", "main").await;
        b.fill("form#compare-form input[name=to]", "staging").await;
        b.submit("form#compare-form").await;
        b.expect_text("p#summary", &["1 added", "1 removed"]).await;
        b.expect_text(
            "section.file-change",
            &["rates.json", "removed", "\"vat\": 19"],
        )
        .await;
        b.expect_text("section.file-change", &["logo.png", "added"])
            .await;
        b.goto(&format!("{B}/b/staging/history")).await;
        let first = b.find_all("table#history tr.version a[href*='/v/']").await;
        let first = first.last().expect("staging has versions");
        b.click(first).await;
        b.click_css("a.file").await;
        b.expect_shown("pre#content", RATES).await;
        ensure!(
            b,
            b.find_all("a#edit, a#delete").await.is_empty(),
            "a version is read-only"
        );

        // ---- the fleet: plant-1 reads main, main moves on, plant-1 is behind
        assert_eq!(api_read(&daemon, &plant, "plant-1"), 200);
        let out = run_with_input(
            &data,
            &["file", "put", BILLING, "main", "rates.json"],
            b"{\n  \"vat\": 20\n}\n",
        );
        assert!(out.status.success());
        let label = instance_label(&data, "plant-1");
        b.goto(B).await;
        b.click_css("a#fleet").await;
        b.expect_path(&format!("{B}/fleet")).await;
        b.expect_text("table#fleet tr.client.behind", &["main", &label])
            .await;
        b.expect_text("p#fleet-summary", &["1 behind"]).await;
        b.shot("fleet").await;
        assert_eq!(api_read(&daemon, &plant, "plant-1"), 200);
        b.goto(&format!("{B}/fleet")).await;
        let behind = b.texts("table#fleet tr.client.behind").await;
        ensure!(b, behind.is_empty(), "still behind: {behind:?}");
        b.expect_text("table#fleet tr.client", &["main", &label, "current"])
            .await;
        b.expect_text("p#fleet-summary", &["every client is current"])
            .await;

        // ---- unbind: the token was bound to plant-1; another instance is
        // refused until the binding is removed.
        assert_eq!(api_read(&daemon, &plant, "plant-2"), 401);
        let edit = format!("/site-builder/tokens/{plant_id}");
        b.click_css("a#nav-tokens").await;
        b.expect_text("tr.token", &["test", "required, bound"])
            .await;
        b.click_css(&format!("a.edit[href='{edit}']")).await;
        b.expect_path(&edit).await;
        b.submit("form#unbind").await;
        b.expect_path("/site-builder/tokens").await;
        b.expect_text(".flash", &["binding removed"]).await;
        b.expect_text("tr.token", &["test", "required, not bound yet"])
            .await;
        assert_eq!(listed_token(&data, &plant_id)["fingerprint_bound"], false);
        assert_eq!(api_read(&daemon, &plant, "plant-2"), 200, "binds plant-2");

        // ---- rotate with an hour's grace: a new secret, the old one works
        b.goto(&edit).await;
        b.fill("form#rotate input[name=grace]", "1h").await;
        b.submit("form#rotate").await;
        let secret = b.text("code#secret").await.trim().to_string();
        ensure!(
            b,
            !secret.is_empty() && secret != plant,
            "a new secret: {secret:?}"
        );
        assert_eq!(api_read(&daemon, &secret, "plant-2"), 200, "the new one");
        assert_eq!(api_read(&daemon, &plant, "plant-2"), 200, "in its grace");
        let old = listed_token(&data, &plant_id);
        let successor_id = old["rotated_to"].as_str().unwrap_or_default().to_string();
        let successor = listed_token(&data, &successor_id);
        assert_eq!(successor["fingerprint_bound"], true, "{successor}");
        let grace_ends = time::OffsetDateTime::parse(
            old["expires_at"].as_str().unwrap(),
            &time::format_description::well_known::Rfc3339,
        )
        .unwrap();
        let left = grace_ends - time::OffsetDateTime::now_utc();
        assert!(
            left > time::Duration::minutes(50) && left <= time::Duration::hours(1),
            "the old token ends in an hour: {old}"
        );

        // ---- revoke the old one now, after a confirmation
        b.click_css(&format!("a.revoke[href='{edit}/revoke']"))
            .await;
        b.expect_path(&format!("{edit}/revoke")).await;
        b.submit("form#revoke").await;
        b.expect_path("/site-builder/tokens").await;
        b.expect_text(".flash", &["revoked"]).await;
        let old = listed_token(&data, &plant_id);
        assert_eq!(old["revoked"], true, "{old}");
        assert_eq!(api_read(&daemon, &plant, "plant-2"), 401, "revoked");
        assert_eq!(
            api_read(&daemon, &secret, "plant-2"),
            200,
            "not its successor"
        );

        // ---- edit the successor: renamed, no fingerprint, an expiry
        b.click_css(&format!(
            "a.edit[href='/site-builder/tokens/{successor_id}']"
        ))
        .await;
        b.fill("form#edit-token input[name=name]", "erp-plant")
            .await;
        let expires = (time::OffsetDateTime::now_utc() + time::Duration::days(90))
            .date()
            .to_string();
        b.set_value("form#edit-token input[name=expires_at]", &expires)
            .await;
        // The successor keeps what the old token required; unticked here.
        let required = b
            .find("form#edit-token input[name=fingerprint_required]")
            .await;
        ensure!(b, required.is_selected().await.unwrap(), "inherited");
        required.click().await.unwrap();
        b.submit("form#edit-token").await;
        b.expect_text(".flash", &["updated"]).await;
        let edited = listed_token(&data, &successor_id);
        assert_eq!(edited["name"], "erp-plant", "{edited}");
        assert_eq!(edited["fingerprint_required"], false, "{edited}");
        let expiry = edited["expires_at"].as_str().unwrap_or_default();
        assert!(expiry.starts_with(&expires), "{edited}");
        assert_eq!(
            api_read(&daemon, &secret, "anywhere"),
            200,
            "no fingerprint"
        );

        // ---- the audit trail, 50 a page, the filter kept across pages
        for i in 0..50 {
            let out = run_with_input(
                &data,
                &["file", "put", BILLING, "main", "rates.json"],
                format!("{{\"vat\": {i}}}\n").as_bytes(),
            );
            assert!(out.status.success());
        }
        b.click_css("a#nav-audit").await;
        b.fill("form#audit-filter input[name=action]", "file.put")
            .await;
        b.fill("form#audit-filter input[name=project]", BILLING)
            .await;
        b.submit("form#audit-filter").await;
        // alice's new file and upload, the put that left plant-1 behind,
        // and 50 more: 53, newest first.
        b.expect_text("nav.pager", &["Page 1 of 2", "(53)"]).await;
        let first = b.texts("table#audit tr.record").await;
        ensure!(b, first.len() == 50, "{} records on page 1", first.len());
        ensure!(b, first[0].contains("cli:root"), "newest first: {first:?}");
        b.click_css("nav.pager a[rel=next]").await;
        b.expect_text("nav.pager", &["Page 2 of 2"]).await;
        let second = b.texts("table#audit tr.record").await;
        let put = |r: &String| r.contains("file.put") && r.contains(BILLING);
        ensure!(
            b,
            second.len() == 3 && second.iter().all(put),
            "page 2: {second:?}"
        );
        ensure!(
            b,
            second[2].contains("alice") && second[2].contains("main:rates.json"),
            "the oldest, alice's new file, last: {second:?}"
        );
        // By time: nothing after the newest record's day; all 53 from the
        // oldest's day to the newest's (each row starts with its time).
        let ymd = time::macros::format_description!("[year]-[month]-[day]");
        let day = |row: &str| time::Date::parse(&row[..10], &ymd).unwrap();
        let (oldest, newest) = (day(&second[2]), day(&first[0]));
        let tomorrow = (newest + time::Duration::days(1)).to_string();
        b.set_value("form#audit-filter input[name=since]", &tomorrow)
            .await;
        b.submit("form#audit-filter").await;
        let none = b.texts("table#audit tr.record").await;
        ensure!(b, none.is_empty(), "since tomorrow: {none:?}");
        b.set_value("form#audit-filter input[name=since]", &oldest.to_string())
            .await;
        b.set_value("form#audit-filter input[name=until]", &newest.to_string())
            .await;
        b.submit("form#audit-filter").await;
        b.expect_text("nav.pager", &["Page 1 of 2", "(53)"]).await;

        // ---- a schema governs rates.json: the editor's check and save
        // report where the content breaks it, and save writes nothing
        let schema =
            br#"{"type": "object", "properties": {"vat": {"type": "integer", "maximum": 100}}}"#;
        let out = run_with_input(
            &data,
            &["file", "put", BILLING, "main", "rates.schema.json"],
            schema,
        );
        assert!(out.status.success());
        let before = ok(&data, &["file", "get", BILLING, "main", "rates.json"]);
        b.goto(&format!("{B}/b/main/edit/rates.json")).await;
        b.fill("form#editor textarea[name=content]", "{\"vat\": 500}\n")
            .await;
        b.click_css("form#editor button[name=action][value=check]")
            .await;
        b.expect_text(".validation", &["/vat", "rates.schema.json"])
            .await;
        b.click_css("form#editor button[name=action][value=save]")
            .await;
        b.expect_text(".validation", &["/vat", "rates.schema.json"])
            .await;
        b.expect_value("form#editor textarea[name=content]", "{\"vat\": 500}\n")
            .await;
        let after = ok(&data, &["file", "get", BILLING, "main", "rates.json"]);
        assert_eq!(after, before, "a save the schema refuses writes nothing");

        // ---- who am I, and a reader sees no button to change anything
        b.click_css("a#me").await;
        b.expect_path("/site-builder/me").await;
        b.expect_text("h1", &["alice"]).await;
        b.submit("form#logout").await;
        b.login("carol", CAROL_PASSWORD).await;
        b.expect_links("a.project", &[B]).await;
        b.click_css("a#me").await;
        b.expect_text("table#roles", &["ROLE_SITEBUILDER_EDITOR__READONLY"])
            .await;
        b.goto(B).await;
        b.find("a.branch").await;
        for (page, buttons) in [
            (B.to_string(), "form#new-branch"),
            (format!("{B}/b/main/tree"), "a#new-file, form#upload"),
            (file.to_string(), "a#edit, a#delete"),
            (format!("{B}/b/main/history"), "a.rollback"),
        ] {
            b.goto(&page).await;
            let shown = b.find_all(buttons).await;
            ensure!(b, shown.is_empty(), "a reader sees {buttons} on {page}");
        }
        b.goto(file).await;
        let live = ok(&data, &["file", "get", BILLING, "main", "rates.json"]);
        b.expect_shown("pre#content", &live).await;

        b.assert_no_csp_violations().await;
        b.close().await;
    });
}
