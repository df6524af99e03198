//! A user's first round in a real browser: login, a project, a file, the
//! editor and its conflict, a token, compare, rollback, audit, logout.

use fantoccini::Locator;
use serde_json::json;

use super::*;

/// The file as the CLI first writes it: markup in a value, to be shown as
/// text.
const ORIGINAL: &str = "{\n  \"name\": \"shop\",\n  \"note\": \"<b>not bold</b> & co\"\n}\n";
/// What alice saves in the editor.
const SAVED: &str = "{\n  \"name\": \"shop\",\n  \"currency\": \"EUR\"\n}\n";
/// Malformed at line 3, column 15 (the `E`).
const INVALID: &str = "{\n  \"name\": \"shop\",\n  \"currency\": EUR\n}\n";
/// Written through the CLI while alice's editor is open.
const THEIRS: &str = "{\n  \"name\": \"shop\",\n  \"currency\": \"USD\"\n}\n";
/// What alice then tries to save over it.
const MINE: &str = "{\n  \"name\": \"shop\",\n  \"currency\": \"CHF\"\n}\n";

/// Without a session every page, `/` included, lands on the login form.
#[test]
fn ui_requires_login() {
    let Some(tools) = browser_tools() else { return };
    let dir = TestDir::new("ui-login");
    let data = dir.data();
    ok(&data, &["init"]);
    add_user(&data, "alice", PASSWORD, &[]);
    let daemon = Daemon::start(&data, dir.path().join("daemon.log"));
    let base = format!("http://{}", daemon.addr);
    runtime().block_on(async {
        let mut b = Browser::start(&tools, dir.path(), &base).await;
        for page in [
            "/site-builder/tokens",
            "/",
            "/site-builder/",
            "/site-builder/audit",
        ] {
            b.goto(page).await;
            b.expect_path(LOGIN).await;
            b.find("form#login input[name=username]").await;
            b.find("form#login input[name=password]").await;
            b.find("form#login button[type=submit]").await;
        }
        b.assert_no_csp_violations().await;
        b.close().await;
    });
}

/// A user's whole round through the UI, the store checked through the CLI
/// and the read API at each step.
#[test]
fn ui_walkthrough() {
    let Some(tools) = browser_tools() else { return };
    let dir = TestDir::new("ui-walk");
    let data = dir.data();
    ok(&data, &["init"]);
    // alice needs no role for the projects in her own folder.
    add_user(&data, "alice", PASSWORD, &[]);
    ok(
        &data,
        &["project", "create", "alice", "shop", "--type", "cfg"],
    );
    put_cli(&data, ORIGINAL);
    // Someone else's project, which alice's home page must not list.
    ok(
        &data,
        &["project", "create", "bob", "other", "--type", "cfg"],
    );
    let daemon = Daemon::start(&data, dir.path().join("daemon.log"));
    let base = format!("http://{}", daemon.addr);
    let tree = &format!("{P}/b/main/tree");
    let file = &format!("{P}/b/main/file/config/app.json");
    let edit = &format!("{P}/b/main/edit/config/app.json");
    let hist = &format!("{P}/b/main/history");
    let textarea = "form#editor textarea[name=content]";

    runtime().block_on(async {
        let mut b = Browser::start(&tools, dir.path(), &base).await;

        // ---- login: a wrong password, then the right one
        b.goto("/").await;
        b.expect_path(LOGIN).await;
        b.fill("form#login input[name=username]", "alice").await;
        b.fill("form#login input[name=password]", "not-the-password")
            .await;
        b.submit("form#login").await;
        b.expect_path(LOGIN).await;
        b.find(".error").await;
        b.login("alice", PASSWORD).await;

        // ---- home: her project only, and the nav
        b.expect_links("a.project", &[P]).await;
        b.shot("projects").await;
        b.expect_links("a#nav-tokens", &["/site-builder/tokens"])
            .await;
        b.expect_links("a#nav-audit", &["/site-builder/audit"])
            .await;
        b.find("form#logout button[type=submit], form#logout input[type=submit]")
            .await;
        b.goto("/").await;
        b.expect_path("/site-builder/").await;

        // ---- project: its branch, marked the default, at its short id
        b.click_css("a.project").await;
        b.expect_path(P).await;
        b.expect_links("a.branch", &[tree]).await;
        b.expect_text(".default", &["main"]).await;
        let live_short_id = history(&data)[0]["short_id"].as_str().unwrap().to_string();
        b.expect_text("code.short-id", &[&live_short_id]).await;

        // ---- tree: crumbs, history link, a folder, the filter
        b.click_css("a.branch").await;
        b.expect_path(tree).await;
        b.shot("tree").await;
        b.find("nav.crumbs").await;
        b.expect_links("a#history", &[hist]).await;
        b.expect_links("a.folder", &[&format!("{tree}/config")])
            .await;
        b.click_css("a.folder").await;
        b.find("nav.crumbs").await;
        b.expect_links("a.file", &[file]).await;
        let filter = "form#filter input[name=filter]";
        b.fill(filter, "zzz-matches-nothing").await;
        b.press_enter(filter).await;
        b.expect_links("a.file", &[]).await;
        b.fill(filter, "app").await;
        b.press_enter(filter).await;
        b.expect_links("a.file", &[file]).await;

        // ---- file page: the content as text, its blob id and size
        b.click_css("a.file").await;
        b.expect_path(file).await;
        b.shot("file").await;
        b.c.set_window_size(390, 844).await.unwrap();
        b.shot("file-phone").await;
        b.c.set_window_size(1280, 900).await.unwrap();
        b.expect_shown("pre#content", ORIGINAL).await;
        let markup = b.find_all("pre#content b").await;
        ensure!(
            b,
            markup.is_empty(),
            "the file's markup is escaped, not rendered"
        );
        b.expect_shown("dd#blob-id", &git_blob_id(ORIGINAL)).await;
        b.expect_text("dd#size", &[&ORIGINAL.len().to_string()])
            .await;

        // ---- editor: check finds the error, save writes as alice
        b.expect_links("a#edit", &[edit]).await;
        b.click_css("a#edit").await;
        b.expect_path(edit).await;
        b.expect_value(textarea, ORIGINAL).await;
        b.expect_value("form#editor input[name=short_id]", &live_short_id)
            .await;
        b.fill(textarea, INVALID).await;
        b.click_css("form#editor button[name=action][value=check]")
            .await;
        b.expect_text(".validation", &["line 3", "column 15"]).await;
        b.shot("editor-check").await;
        assert_eq!(history(&data).len(), 2, "a check writes nothing");
        b.fill(textarea, SAVED).await;
        b.click_css("form#editor button[name=action][value=save]")
            .await;
        b.expect_path(file).await;
        b.expect_text(".flash", &["Saved"]).await;
        b.expect_shown("pre#content", SAVED).await;
        // Byte for byte what was typed: a form sends the textarea's lines
        // with CRLF, and the file must not change its line ends for it.
        assert_eq!(file_get(&data), SAVED, "the store has what alice saved");
        let versions = history(&data);
        assert_eq!(versions.len(), 3);
        assert_eq!(versions[0]["actor"], "alice", "{:?}", versions[0]);
        let saved_version = versions[0]["version"].as_str().unwrap().to_string();

        // ---- a stale save: the branch moved on while the editor was open
        b.goto(edit).await;
        put_cli(&data, THEIRS);
        // The same form sent without the browser, for its status code.
        let (action, mut fields, cookies) = b.form_as_sent("form#editor").await;
        fields.retain(|(k, _)| k != "content");
        fields.extend([
            ("content".into(), MINE.into()),
            ("action".into(), "save".into()),
        ]);
        let r = util::send(
            daemon.addr,
            "POST",
            &action,
            &[
                ("Cookie", cookies.as_str()),
                ("Content-Type", "application/x-www-form-urlencoded"),
                ("Origin", base.as_str()),
            ],
            form_body(&fields).as_bytes(),
        );
        assert_eq!(r.status, 409, "a stale save: {}", r.text());
        assert!(r.text().contains("changed"), "{}", r.text());
        // In the browser: the editor again, the text kept.
        b.fill(textarea, MINE).await;
        b.click_css("form#editor button[name=action][value=save]")
            .await;
        b.expect_text(".error", &["changed"]).await;
        b.expect_value(textarea, MINE).await;
        assert_eq!(file_get(&data), THEIRS, "a stale save overwrites nothing");
        assert_eq!(history(&data).len(), 4);

        // ---- a token made in the UI reads the file through the read API
        b.click_css("a#nav-tokens").await;
        b.expect_path("/site-builder/tokens").await;
        let expires = (time::OffsetDateTime::now_utc() + time::Duration::days(365))
            .date()
            .to_string();
        b.fill("form#new-token input[name=name]", "erp-prod").await;
        b.fill("form#new-token input[name=repos]", "shop.cfg").await;
        b.set_value("form#new-token input[name=expires_at][type=date]", &expires)
            .await;
        let fingerprint = "form#new-token input[name=fingerprint_required][type=checkbox]";
        let checked = b.find(fingerprint).await.is_selected().await.unwrap();
        ensure!(b, !checked, "fingerprint_required starts unchecked");
        b.submit("form#new-token").await;
        let secret = b.text("code#secret").await.trim().to_string();
        ensure!(b, !secret.is_empty(), "code#secret shows the token");
        b.expect_text("tr.token", &["erp-prod"]).await;
        b.shot("tokens").await;
        // Its script must run under the CSP (the console is checked at the
        // end); the script hides it where there is no clipboard.
        let copy = b.find("button#copy").await;
        if copy.is_displayed().await.unwrap() {
            copy.click().await.unwrap();
        }
        b.drain_console().await;
        let listed = util::json(&data, &["token", "list", "--owner", "alice"]);
        let token = listed
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["name"] == "erp-prod")
            .unwrap_or_else(|| panic!("no erp-prod in {listed}"));
        assert_eq!(token["repos"], json!(["shop.cfg"]), "{token}");
        assert_eq!(token["fingerprint_required"], false, "{token}");
        let expires_at = token["expires_at"].as_str().unwrap_or_default();
        assert!(expires_at.starts_with(&expires), "{token}");
        let r = daemon.get(
            &format!(
                "{API}/projects/alice%2Fshop.cfg/repository/files/config%2Fapp.json/raw?ref=main"
            ),
            &[("PRIVATE-TOKEN", secret.as_str())],
        );
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.text(), THEIRS);

        // ---- compare the first version with main
        b.goto(&format!("{P}/compare?from=main@v0001&to=main"))
            .await;
        b.expect_text(".diff", &["USD"]).await;
        b.shot("compare").await;

        // ---- history: roll back to alice's save, with a preview
        b.goto(tree).await;
        b.click_css("a#history").await;
        b.expect_path(hist).await;
        b.shot("history").await;
        let rows = b.find_all("tr.version").await;
        ensure!(b, rows.len() == 4, "{} tr.version rows", rows.len());
        let links = b.find_all("tr.version a.rollback").await;
        ensure!(
            b,
            links.len() == 3,
            "a.rollback on all but the live version"
        );
        let live = history(&data)[0]["version"].as_str().unwrap().to_string();
        let mut target = None;
        for row in rows {
            let text = row.text().await.unwrap();
            let link = row.find_all(Locator::Css("a.rollback")).await.unwrap();
            if text.contains(&live) {
                ensure!(b, link.is_empty(), "the live version has no a.rollback");
            }
            if target.is_none() && text.contains(&saved_version) {
                target = link.into_iter().next();
            }
        }
        let Some(target) = target else {
            let context = b.context().await;
            panic!("no a.rollback in the row of {saved_version}\n{context}");
        };
        b.click(&target).await;
        b.expect_text(".diff", &["USD"]).await;
        assert_eq!(file_get(&data), THEIRS, "a preview changes nothing");
        b.submit("form#rollback").await;
        b.expect_path(hist).await;
        b.find(".flash").await;
        assert_eq!(file_get(&data), SAVED, "rolled back to alice's save");
        let versions = history(&data);
        assert_eq!(versions.len(), 5);
        assert_eq!(versions[0]["actor"], "alice", "{:?}", versions[0]);
        let action = versions[0]["action"].as_str().unwrap_or_default();
        assert!(action.contains("rollback"), "{:?}", versions[0]);

        // ---- audit: alice's save and rollback, then filtered
        b.click_css("a#nav-audit").await;
        b.expect_path("/site-builder/audit").await;
        b.expect_text("table#audit tr.record", &["alice", "file.put"])
            .await;
        b.expect_text("table#audit tr.record", &["alice", "rollback"])
            .await;
        b.shot("audit").await;
        b.fill("form#audit-filter input[name=action]", "file.put")
            .await;
        b.fill("form#audit-filter input[name=actor]", "alice").await;
        b.fill("form#audit-filter input[name=project]", PROJECT)
            .await;
        b.submit("form#audit-filter").await;
        let filtered = b.texts("table#audit tr.record").await;
        let only = |r: &String| r.contains("alice") && r.contains("file.put");
        ensure!(
            b,
            !filtered.is_empty() && filtered.iter().all(only),
            "{filtered:?}"
        );

        // ---- logout: the session is gone
        b.submit("form#logout").await;
        b.expect_path(LOGIN).await;
        b.goto("/site-builder/tokens").await;
        b.expect_path(LOGIN).await;

        b.assert_no_csp_violations().await;
        b.close().await;
    });
}
