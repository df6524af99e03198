//! The web UI over plain HTTP: what a browser is sent, and what a hostile
//! page or a forged form cannot do. (The walkthrough in a real browser is
//! `ui.rs`.)

use crate::util::{self, add_user, json, ok, run_with_input, send, Resp, TestDir, TestServer, API};

const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
                   form-action 'self'; frame-ancestors 'none'; base-uri 'none'";
const FORM: &str = "application/x-www-form-urlencoded";

struct Site {
    _dir: TestDir,
    data: std::path::PathBuf,
    server: TestServer,
}

/// alice owns alice/shop.cfg (config/app.json on main); bob has no role.
fn site(name: &str) -> Site {
    let dir = TestDir::new(name);
    let data = dir.data();
    ok(&data, &["init"]);
    add_user(&data, "alice", "alice-password-1", &[]);
    add_user(&data, "bob", "bob-password-12", &[]);
    ok(
        &data,
        &["project", "create", "alice", "shop", "--type", "cfg"],
    );
    put(&data, "config/app.json", b"{\"a\": 1}\n");
    let server = TestServer::start(&data);
    Site {
        _dir: dir,
        data,
        server,
    }
}

fn put(data: &std::path::Path, path: &str, bytes: &[u8]) {
    let out = run_with_input(
        data,
        &["file", "put", "alice/shop.cfg", "main", path],
        bytes,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn enc(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn form(pairs: &[(&str, &str)]) -> String {
    pairs
        .iter()
        .map(|(k, v)| format!("{}={}", enc(k), enc(v)))
        .collect::<Vec<_>>()
        .join("&")
}

/// A browser's session: its cookie, and the CSRF token its pages carry.
struct Browser {
    addr: std::net::SocketAddr,
    cookie: String,
    csrf: String,
}

impl Browser {
    fn login(site: &Site, user: &str, password: &str) -> Browser {
        let addr = site.server.addr;
        let r = send(
            addr,
            "POST",
            "/site-builder/login",
            &[
                ("Content-Type", FORM),
                ("Origin", &format!("http://{addr}")),
            ],
            form(&[("username", user), ("password", password)]).as_bytes(),
        );
        assert_eq!(r.status, 303, "{}", r.text());
        assert_eq!(r.header("location"), Some("/site-builder/"));
        let cookie = util::session_cookie(&r);
        let mut b = Browser {
            addr,
            cookie,
            csrf: String::new(),
        };
        let home = b.get("/site-builder/");
        b.csrf = field(&home.text(), "csrf").expect("a CSRF field on every signed-in page");
        b
    }

    fn get(&self, path: &str) -> Resp {
        util::request(self.addr, "GET", path, &[("Cookie", &self.cookie)])
    }

    fn post(&self, path: &str, pairs: &[(&str, &str)]) -> Resp {
        let mut all = vec![("csrf", self.csrf.as_str())];
        all.extend_from_slice(pairs);
        self.post_raw(path, &form(&all), &format!("http://{}", self.addr))
    }

    /// The editor's form: `action` (check or save) of `content` on top of
    /// `short_id`.
    fn edit(&self, short_id: &str, content: &str, action: &str) -> Resp {
        self.post(
            EDITOR,
            &[
                ("short_id", short_id),
                ("content", content),
                ("action", action),
            ],
        )
    }

    fn post_raw(&self, path: &str, body: &str, origin: &str) -> Resp {
        send(
            self.addr,
            "POST",
            path,
            &[
                ("Cookie", &self.cookie),
                ("Content-Type", FORM),
                ("Origin", origin),
            ],
            body.as_bytes(),
        )
    }
}

/// The value of the first `<input name=NAME value=...>` in a page.
fn field(page: &str, name: &str) -> Option<String> {
    let at = page.find(&format!("name=\"{name}\" value=\""))?;
    let rest = &page[at + name.len() + 15..];
    Some(rest[..rest.find('"')?].to_string())
}

fn history_len(data: &std::path::Path) -> usize {
    json(data, &["history", "list", "alice/shop.cfg", "main"])
        .as_array()
        .unwrap()
        .len()
}

fn assert_page_headers(r: &Resp) {
    assert_eq!(r.header("content-security-policy"), Some(CSP));
    assert_eq!(r.header("x-content-type-options"), Some("nosniff"));
    assert_eq!(r.header("referrer-policy"), Some("no-referrer"));
    assert_eq!(r.header("cache-control"), Some("no-store"));
}

const FILE_PAGE: &str = "/site-builder/p/alice/shop.cfg/b/main/file/config/app.json";
const EDITOR: &str = "/site-builder/p/alice/shop.cfg/b/main/edit/config/app.json";

#[test]
fn pages_need_a_session_and_say_so_safely() {
    let site = site("ui-session");
    let root = site.server.get("/", &[]);
    assert_eq!(root.status, 303);
    assert_eq!(root.header("location"), Some("/site-builder/"));
    // Without a session: to the login page, and back after it.
    let r = site.server.get("/site-builder/tokens", &[]);
    assert_eq!(r.status, 303);
    assert_eq!(
        r.header("location"),
        Some("/site-builder/login?next=%2Fsite-builder%2Ftokens")
    );
    let login = site.server.get("/site-builder/login", &[]);
    assert_eq!(login.status, 200);
    assert_page_headers(&login);
    assert!(login.text().contains("id=\"login\""));
    // A wrong password: the form again, 401, no cookie.
    let addr = site.server.addr;
    let origin = format!("http://{addr}");
    let bad = send(
        addr,
        "POST",
        "/site-builder/login",
        &[("Content-Type", FORM), ("Origin", &origin)],
        form(&[("username", "alice"), ("password", "wrong-password")]).as_bytes(),
    );
    assert_eq!(bad.status, 401);
    assert!(bad.header("set-cookie").is_none());
    assert!(bad.text().contains("class=\"error\""));
    // `next` leads back only into the UI: never to another site.
    for next in [
        "//evil.example/",
        "https://evil.example/",
        "/site-builder/api/user/me",
    ] {
        let r = send(
            addr,
            "POST",
            "/site-builder/login",
            &[("Content-Type", FORM), ("Origin", &origin)],
            form(&[
                ("username", "alice"),
                ("password", "alice-password-1"),
                ("next", next),
            ])
            .as_bytes(),
        );
        assert_eq!(r.status, 303);
        assert_eq!(r.header("location"), Some("/site-builder/"), "next={next}");
    }
    // A login form posted from another site is refused.
    let cross = send(
        addr,
        "POST",
        "/site-builder/login",
        &[("Content-Type", FORM), ("Origin", "http://evil.example")],
        form(&[("username", "alice"), ("password", "alice-password-1")]).as_bytes(),
    );
    assert_eq!(cross.status, 403);
    assert!(cross.header("set-cookie").is_none());
    // Assets: content-hashed and immutable; an unknown one is a 404.
    let b = Browser::login(&site, "alice", "alice-password-1");
    let home = b.get("/site-builder/").text();
    let css = home
        .split("href=\"")
        .find_map(|s| s.split('"').next().filter(|h| h.ends_with(".css")))
        .unwrap()
        .to_string();
    let r = site.server.get(&css, &[]);
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("cache-control"),
        Some("public, max-age=31536000, immutable")
    );
    assert!(r.header("content-type").unwrap().starts_with("text/css"));
    assert_eq!(
        site.server
            .get("/site-builder/static/ui.0000.css", &[])
            .status,
        404
    );
    // Who am I: the name and the roles (none for alice).
    let me = b.get("/site-builder/me");
    assert_eq!(me.status, 200);
    assert!(me.text().contains("Signed in as alice"));
    assert!(me.text().contains("id=\"roles\""));
    // Logout ends the session: its pages lead to the login again.
    let out = b.post("/site-builder/logout", &[]);
    assert_eq!(out.status, 303);
    assert_eq!(b.get("/site-builder/").status, 303);
}

#[test]
fn the_editor_saves_through_the_snapshot_first_write_and_reports_conflicts() {
    let site = site("ui-editor");
    let b = Browser::login(&site, "alice", "alice-password-1");
    let page = b.get(EDITOR);
    assert_eq!(page.status, 200);
    assert_page_headers(&page);
    let short_id = field(&page.text(), "short_id").unwrap();
    let before = history_len(&site.data);
    // A check writes nothing and reports where the content is broken.
    let check = b.edit(&short_id, "{\"a\": ", "check");
    assert_eq!(check.status, 200);
    assert!(
        check.text().contains("class=\"validation\""),
        "{}",
        check.text()
    );
    assert!(check.text().contains("line 1, column"), "{}", check.text());
    assert_eq!(history_len(&site.data), before);
    // A save with CRLF lines (as browsers send a textarea) stores LF.
    let saved = b.edit(&short_id, "{\"a\": 2}\r\n", "save");
    assert_eq!(saved.status, 303, "{}", saved.text());
    let location = saved.header("location").unwrap().to_string();
    assert!(
        location.starts_with(&format!("{FILE_PAGE}?done=saved&v=v")),
        "{location}"
    );
    assert_eq!(history_len(&site.data), before + 1);
    let raw = util::ok(
        &site.data,
        &["file", "get", "alice/shop.cfg", "main", "config/app.json"],
    );
    assert_eq!(raw, "{\"a\": 2}\n");
    // The new version is alice's, in the history and in the audit trail.
    let audit = json(&site.data, &["audit", "--action", "file.put"]);
    let by_alice = audit
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["actor"] == "alice")
        .count();
    assert_eq!(by_alice, 1, "{audit}");
    let newest = &json(&site.data, &["history", "list", "alice/shop.cfg", "main"])[0];
    assert_eq!(newest["actor"], "alice", "{newest}");
    let shown = b.get(&location).text();
    assert!(shown.contains("class=\"flash\""));
    // The same stale short_id again: a conflict, nothing overwritten, the
    // user's text kept in the editor.
    let stale = b.edit(&short_id, "{\"a\": 3}", "save");
    assert_eq!(stale.status, 409);
    assert!(stale.text().contains("changed since you opened the editor"));
    assert!(stale.text().contains("{&quot;a&quot;: 3}") || stale.text().contains("{\"a\": 3}"));
    assert_eq!(history_len(&site.data), before + 1);
    // Invalid content on save: 422 with the problems, nothing written.
    let fresh = field(&b.get(EDITOR).text(), "short_id").unwrap();
    let invalid = b.edit(&fresh, "{\"a\": }", "save");
    assert_eq!(invalid.status, 422);
    assert!(invalid.text().contains("class=\"validation\""));
    assert_eq!(history_len(&site.data), before + 1);
}

#[test]
fn forged_forms_and_other_users_change_nothing() {
    let site = site("ui-forged");
    let alice = Browser::login(&site, "alice", "alice-password-1");
    let short_id = field(&alice.get(EDITOR).text(), "short_id").unwrap();
    let before = history_len(&site.data);
    let body = |csrf: &str, short_id: &str| {
        form(&[
            ("csrf", csrf),
            ("short_id", short_id),
            ("content", "{}"),
            ("action", "save"),
        ])
    };
    let origin = format!("http://{}", site.server.addr);
    // No CSRF token, a wrong one, and the right one from another site.
    assert_eq!(
        alice
            .post_raw(
                EDITOR,
                &form(&[("content", "{}"), ("action", "save")]),
                &origin
            )
            .status,
        403
    );
    assert_eq!(
        alice
            .post_raw(EDITOR, &body("0123", &short_id), &origin)
            .status,
        403
    );
    assert_eq!(
        alice
            .post_raw(EDITOR, &body(&alice.csrf, &short_id), "http://evil.example")
            .status,
        403
    );
    // `Origin: null` (what a browser sends from a no-referrer page) is
    // this origin only when `Sec-Fetch-Site` says so.
    let with = |headers: &[(&str, &str)], csrf: &str| {
        let mut all = vec![("Cookie", alice.cookie.as_str()), ("Content-Type", FORM)];
        all.extend_from_slice(headers);
        send(
            site.server.addr,
            "POST",
            EDITOR,
            &all,
            body(csrf, &short_id).as_bytes(),
        )
        .status
    };
    assert_eq!(with(&[("Origin", "null")], &alice.csrf), 403);
    assert_eq!(
        with(
            &[("Origin", "null"), ("Sec-Fetch-Site", "cross-site")],
            &alice.csrf
        ),
        403
    );
    assert_eq!(
        with(
            &[("Origin", &origin), ("Sec-Fetch-Site", "same-site")],
            &alice.csrf
        ),
        403
    );
    assert_eq!(history_len(&site.data), before);
    assert_eq!(
        with(
            &[("Origin", "null"), ("Sec-Fetch-Site", "same-origin")],
            &alice.csrf
        ),
        303
    );
    assert_eq!(history_len(&site.data), before + 1);
    let before = before + 1;
    let short_id = field(&alice.get(EDITOR).text(), "short_id").unwrap();
    // Not a form at all.
    let json_body = send(
        site.server.addr,
        "POST",
        EDITOR,
        &[
            ("Cookie", &alice.cookie),
            ("Content-Type", "application/json"),
            ("Origin", &origin),
        ],
        b"{}",
    );
    assert_eq!(json_body.status, 415);
    assert_eq!(history_len(&site.data), before);
    // bob may not read alice's project: no page, no save, no edit link.
    let bob = Browser::login(&site, "bob", "bob-password-12");
    assert_eq!(bob.get(FILE_PAGE).status, 403);
    assert_eq!(bob.get(EDITOR).status, 403);
    let home = bob.get("/site-builder/").text();
    assert!(
        !home.contains("alice/shop.cfg"),
        "bob's list shows alice's project"
    );
    let forged = bob.edit(&short_id, "{}", "save");
    assert_eq!(forged.status, 403);
    assert_eq!(history_len(&site.data), before);
    // alice's session token is not bob's: his CSRF token fails for her.
    assert_eq!(
        alice
            .post_raw(EDITOR, &body(&bob.csrf, &short_id), &origin)
            .status,
        403
    );
}

#[test]
fn stored_content_never_runs_as_a_page() {
    let site = site("ui-escape");
    let hostile = b"<script>alert(1)</script><img src=x onerror=alert(2)>";
    put(&site.data, "evil.html", hostile);
    let b = Browser::login(&site, "alice", "alice-password-1");
    let page = b.get("/site-builder/p/alice/shop.cfg/b/main/file/evil.html");
    assert_eq!(page.status, 200);
    let text = page.text();
    assert!(
        !text.contains("<script>alert"),
        "unescaped content in the page"
    );
    assert!(text.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
    assert_page_headers(&page);
    // The download is an attachment of no type a browser renders.
    let raw = b.get("/site-builder/p/alice/shop.cfg/b/main/raw/evil.html");
    assert_eq!(raw.status, 200);
    assert_eq!(raw.body, hostile);
    assert_eq!(raw.header("content-type"), Some("application/octet-stream"));
    assert_eq!(
        raw.header("content-disposition"),
        Some("attachment; filename=\"evil.html\"; filename*=UTF-8''evil.html")
    );
    // A name beyond ASCII: exact in `filename*` (RFC 6266), replaced by
    // `_` in the fallback.
    put(&site.data, "prix café;x.json", b"{}");
    let raw = b.get("/site-builder/p/alice/shop.cfg/b/main/raw/prix%20caf%C3%A9%3Bx.json");
    assert_eq!(raw.status, 200, "{}", raw.text());
    assert_eq!(
        raw.header("content-disposition"),
        Some(
            "attachment; filename=\"prix_caf__x.json\"; \
             filename*=UTF-8''prix%20caf%C3%A9%3Bx.json"
        )
    );
    assert!(raw
        .header("content-security-policy")
        .unwrap()
        .starts_with("sandbox"));
    // A hostile name in a query is escaped too.
    let r = b.get("/site-builder/p/alice/shop.cfg/b/main/tree?filter=%3Cscript%3Ex");
    assert_eq!(r.status, 200);
    assert!(!r.text().contains("<script>x"));
}

#[test]
fn a_token_made_in_the_ui_is_shown_once_and_reads_the_api() {
    let site = site("ui-token");
    let b = Browser::login(&site, "alice", "alice-password-1");
    let r = b.post(
        "/site-builder/tokens",
        &[
            ("owner", "alice"),
            ("name", "erp-prod"),
            ("repos", "shop.cfg"),
            ("expires_at", ""),
        ],
    );
    assert_eq!(r.status, 201, "{}", r.text());
    let text = r.text();
    let at = text
        .find("<code id=\"secret\">")
        .expect("the secret is shown")
        + 18;
    let secret = text[at..at + text[at..].find('<').unwrap()].to_string();
    assert!(secret.len() >= 20, "{secret}");
    // It reads alice's file through the read API.
    let read = site.server.get(
        &format!("{API}/projects/alice%2Fshop.cfg/repository/files/config%2Fapp.json/raw?ref=main"),
        &[("PRIVATE-TOKEN", &secret)],
    );
    assert_eq!(read.status, 200);
    assert_eq!(read.body, b"{\"a\": 1}\n");
    // Listed afterwards by suffix only; the secret is never shown again.
    let list = b.get("/site-builder/tokens").text();
    assert!(list.contains("erp-prod"));
    assert!(!list.contains(&secret));
    // Revoked from the UI: the API refuses it at once.
    let id = json(&site.data, &["token", "list"])[0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let revoked = b.post(&format!("/site-builder/tokens/{id}/revoke"), &[]);
    assert_eq!(revoked.status, 303);
    let read = site.server.get(
        &format!("{API}/projects/alice%2Fshop.cfg/repository/files/config%2Fapp.json/raw?ref=main"),
        &[("PRIVATE-TOKEN", &secret)],
    );
    assert_eq!(read.status, 401);
}

#[test]
fn history_compare_and_rollback_from_the_ui() {
    let site = site("ui-history");
    put(&site.data, "config/app.json", b"{\"a\": 5}\n");
    let b = Browser::login(&site, "alice", "alice-password-1");
    let history = b.get("/site-builder/p/alice/shop.cfg/b/main/history");
    assert_eq!(history.status, 200);
    let text = history.text();
    assert_eq!(text.matches("class=\"version\"").count(), 3, "{text}");
    assert!(text.contains("rollback?to=v0002"));
    // Any version's tree and files, read-only: no editing there.
    let v2 = "/site-builder/p/alice/shop.cfg/b/main/v/v0002";
    let tree = b.get(&format!("{v2}/tree/config"));
    assert_eq!(tree.status, 200);
    assert!(tree.text().contains(&format!("{v2}/file/config/app.json")));
    assert!(!tree.text().contains("id=\"upload\""));
    let old = b.get(&format!("{v2}/file/config/app.json"));
    assert_eq!(old.status, 200);
    assert!(old.text().contains("{&quot;a&quot;: 1}") || old.text().contains("{\"a\": 1}"));
    assert!(!old.text().contains("id=\"edit\""));
    assert_eq!(b.get(&format!("{v2}/edit/config/app.json")).status, 404);
    assert_eq!(
        b.get("/site-builder/p/alice/shop.cfg/b/main/v/v0099/tree")
            .status,
        404
    );
    let compare = b.get("/site-builder/p/alice/shop.cfg/compare?from=main%40v0002&to=main");
    assert_eq!(compare.status, 200);
    assert!(compare.text().contains("class=\"diff\""));
    assert!(
        compare.text().contains("+{&quot;a&quot;: 5}") || compare.text().contains("+{\"a\": 5}")
    );
    let preview = b.get("/site-builder/p/alice/shop.cfg/b/main/rollback?to=v0002");
    assert_eq!(preview.status, 200);
    let short_id = field(&preview.text(), "short_id").unwrap();
    let done = b.post(
        "/site-builder/p/alice/shop.cfg/b/main/rollback",
        &[("to", "v0002"), ("short_id", &short_id)],
    );
    assert_eq!(done.status, 303, "{}", done.text());
    let raw = util::ok(
        &site.data,
        &["file", "get", "alice/shop.cfg", "main", "config/app.json"],
    );
    assert_eq!(raw, "{\"a\": 1}\n");
    // A preview of a state that moved since: the rollback is refused.
    let stale = b.post(
        "/site-builder/p/alice/shop.cfg/b/main/rollback",
        &[("to", "v0003"), ("short_id", &short_id)],
    );
    assert_eq!(stale.status, 409);
    let audit = b.get("/site-builder/audit?action=rollback");
    assert_eq!(audit.status, 200);
    assert_eq!(audit.text().matches("class=\"record\"").count(), 1);
}

#[test]
fn a_file_uploaded_from_the_browser_is_a_checked_write() {
    let site = site("ui-upload");
    let b = Browser::login(&site, "alice", "alice-password-1");
    let tree = b
        .get("/site-builder/p/alice/shop.cfg/b/main/tree/config")
        .text();
    let short_id = field(&tree, "short_id").unwrap();
    let before = history_len(&site.data);
    let multipart = |csrf: &str, name: &str, bytes: &[u8]| {
        let mut body = Vec::new();
        for (k, v) in [
            ("csrf", csrf),
            ("short_id", short_id.as_str()),
            ("folder", "config"),
        ] {
            body.extend_from_slice(
                format!("--XyZ\r\nContent-Disposition: form-data; name=\"{k}\"\r\n\r\n{v}\r\n")
                    .as_bytes(),
            );
        }
        body.extend_from_slice(
            format!(
                "--XyZ\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{name}\"\r\n\
                 Content-Type: application/octet-stream\r\n\r\n"
            )
            .as_bytes(),
        );
        body.extend_from_slice(bytes);
        body.extend_from_slice(b"\r\n--XyZ--\r\n");
        send(
            site.server.addr,
            "POST",
            "/site-builder/p/alice/shop.cfg/b/main/upload",
            &[
                ("Cookie", &b.cookie),
                ("Content-Type", "multipart/form-data; boundary=XyZ"),
                ("Origin", &format!("http://{}", site.server.addr)),
            ],
            &body,
        )
    };
    // Without the CSRF token: refused, nothing written.
    assert_eq!(multipart("nope", "logo.bin", b"\x00\x01").status, 403);
    // Malformed JSON: refused by the same checks as any write.
    assert_eq!(multipart(&b.csrf, "bad.json", b"{").status, 422);
    assert_eq!(history_len(&site.data), before);
    // Binary bytes into the folder the page showed; the browser's local
    // path is not part of the name.
    let r = multipart(&b.csrf, "C:\\Users\\a\\logo.bin", b"\x00\x01\xff");
    assert_eq!(r.status, 303, "{}", r.text());
    assert!(r
        .header("location")
        .unwrap()
        .contains("/file/config/logo.bin?done=saved"));
    assert_eq!(history_len(&site.data), before + 1);
    let out = util::run(
        &site.data,
        &["file", "get", "alice/shop.cfg", "main", "config/logo.bin"],
    );
    assert_eq!(out.stdout, b"\x00\x01\xff");
    // The file page offers it as a download, not as text.
    let page = b
        .get("/site-builder/p/alice/shop.cfg/b/main/file/config/logo.bin")
        .text();
    assert!(page.contains("id=\"binary\"") && page.contains("id=\"download\""));
    // The same short_id again: the branch moved, a conflict.
    assert_eq!(multipart(&b.csrf, "other.bin", b"x").status, 409);
}

#[test]
fn refusals_are_audited_and_wrong_addresses_answer_as_pages() {
    let site = site("ui-refusals");
    let bob = Browser::login(&site, "bob", "bob-password-12");
    assert_eq!(bob.get(FILE_PAGE).status, 403);
    let denied = json(&site.data, &["audit", "--action", "auth.denied"]);
    assert!(
        denied.as_array().unwrap().iter().any(
            |r| r["actor"] == "bob" && r["target"].as_str().unwrap().contains("alice/shop.cfg")
        ),
        "{denied}"
    );
    // A page that does not exist, or a method a page does not take: HTML
    // with the pages' headers, not the API's JSON.
    let missing = bob.get("/site-builder/nowhere");
    assert_eq!(missing.status, 404);
    assert!(missing
        .header("content-type")
        .unwrap()
        .starts_with("text/html"));
    assert_page_headers(&missing);
    let wrong = send(
        site.server.addr,
        "DELETE",
        "/site-builder/tokens",
        &[("Cookie", &bob.cookie)],
        b"",
    );
    assert_eq!(wrong.status, 405);
    assert_eq!(wrong.header("allow"), Some("GET, HEAD, POST"));
    assert!(wrong
        .header("content-type")
        .unwrap()
        .starts_with("text/html"));
    // A form posted without a session goes to the login page, not back to
    // the form's address (a GET there is a 405).
    let r = send(
        site.server.addr,
        "POST",
        "/site-builder/tokens",
        &[("Content-Type", FORM)],
        b"name=x",
    );
    assert_eq!(r.status, 303);
    assert_eq!(r.header("location"), Some("/site-builder/login"));
    // A save that does not say which state it edits is refused.
    let alice = Browser::login(&site, "alice", "alice-password-1");
    let before = history_len(&site.data);
    let blind = alice.post(EDITOR, &[("content", "{}"), ("action", "save")]);
    assert_eq!(blind.status, 400);
    assert_eq!(history_len(&site.data), before);
}

#[test]
fn editing_a_token_keeps_what_the_form_did_not_change() {
    let site = site("ui-token-edit");
    let (id, _) = util::create_token(&site.data, "alice", &["--expires", "2031-05-04T13:14:15Z"]);
    let b = Browser::login(&site, "alice", "alice-password-1");
    let form_page = b.get(&format!("/site-builder/tokens/{id}")).text();
    assert_eq!(
        field(&form_page, "expires_at").as_deref(),
        Some("2031-05-04")
    );
    let r = b.post(
        &format!("/site-builder/tokens/{id}"),
        &[
            ("name", "renamed"),
            ("repos", ""),
            ("expires_at", "2031-05-04"),
        ],
    );
    assert_eq!(r.status, 303, "{}", r.text());
    assert_eq!(
        r.header("location"),
        Some("/site-builder/tokens?owner=alice&done=updated")
    );
    let token = &json(&site.data, &["token", "list"])[0];
    assert_eq!(token["name"], "renamed");
    assert_eq!(token["expires_at"], "2031-05-04T13:14:15Z", "{token}");
    // A new date is taken as given.
    b.post(
        &format!("/site-builder/tokens/{id}"),
        &[
            ("name", "renamed"),
            ("repos", ""),
            ("expires_at", "2032-01-01"),
        ],
    );
    let token = &json(&site.data, &["token", "list"])[0];
    assert!(
        token["expires_at"]
            .as_str()
            .unwrap()
            .starts_with("2032-01-01"),
        "{token}"
    );
}

/// A folder of 250 files is shown 200 at a time, folders first, with
/// links to the other page; a filter pages the same way.
#[test]
fn a_large_folder_is_paginated() {
    let site = site("ui-pages");
    let src = site._dir.path().join("src");
    for i in 0..250 {
        let dir = src.join("many");
        std::fs::create_dir_all(dir.join("sub")).unwrap();
        std::fs::write(dir.join(format!("f{i:03}.json")), format!("{{\"i\": {i}}}")).unwrap();
    }
    std::fs::write(src.join("many/sub/inner.json"), b"{}").unwrap();
    ok(
        &site.data,
        &["import", "alice/shop.cfg", "main", src.to_str().unwrap()],
    );
    let b = Browser::login(&site, "alice", "alice-password-1");
    let tree = "/site-builder/p/alice/shop.cfg/b/main/tree/many";
    let files = |text: &str| text.matches("class=\"file\"").count();
    let first = b.get(tree);
    assert_eq!(first.status, 200);
    let text = first.text();
    assert!(text.contains("Page 1 of 2 (251)"), "{text}");
    assert_eq!(text.matches("class=\"folder\"").count(), 1, "sub/ first");
    assert_eq!(files(&text), 199);
    assert!(text.contains("f000.json") && !text.contains("f199.json"));
    assert!(text.contains(&format!("href=\"{tree}?page=2\"")), "{text}");
    let second = b.get(&format!("{tree}?page=2")).text();
    assert!(second.contains("Page 2 of 2"));
    assert_eq!(files(&second), 51);
    assert!(second.contains("f199.json") && second.contains("f249.json"));
    // Filtered: every match below, paged alike, the filter kept.
    let filtered = b.get(&format!("{tree}?filter=.json")).text();
    assert!(filtered.contains("Page 1 of 2 (251)"), "{filtered}");
    assert!(filtered.contains("page=2") && filtered.contains("filter=.json"));
}
