//! The web UI (SPEC §15) in a real browser: Debian's headless Chromium,
//! driven over WebDriver (chromedriver) with fantoccini, against the real
//! `cfgstore serve` on a fresh data directory, with the store checked
//! through the CLI. Without chromium and chromedriver the tests say so and
//! pass, except under CI (`CI` set), where that is a failure: .ci/run
//! installs both.
//!
//! Pages are read by the ids and classes the UI promises, never by layout.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::elements::Element;
use fantoccini::error::CmdError;
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{json, Value};

use crate::util::{self, add_user, ok, run_with_input, Daemon, TestDir, API};

const PASSWORD: &str = "alice-password-1";
const PROJECT: &str = "alice/shop.cfg";
const P: &str = "/site-builder/p/alice/shop.cfg";
const LOGIN: &str = "/site-builder/login";

// ----- the harness ----------------------------------------------------------

/// Panics with where the browser is and what it shows unless `cond` holds.
macro_rules! ensure {
    ($browser:expr, $cond:expr, $($message:tt)+) => {
        if !$cond {
            let context = $browser.context().await;
            panic!("{}\n{context}", format!($($message)+));
        }
    };
}

/// Chromium and chromedriver, from PATH or /usr/bin. `None` (the test
/// returns early) when either is missing, except under CI.
fn browser_tools() -> Option<(PathBuf, PathBuf)> {
    let find = |names: &[&str]| -> Option<PathBuf> {
        let path = std::env::var_os("PATH").unwrap_or_default();
        std::env::split_paths(&path)
            .chain([PathBuf::from("/usr/bin")])
            .flat_map(|dir| names.iter().map(move |n| dir.join(n)))
            .find(|p| {
                use std::os::unix::fs::PermissionsExt;
                p.metadata()
                    .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
            })
    };
    match (
        find(&["chromium", "chromium-browser"]),
        find(&["chromedriver"]),
    ) {
        (Some(chromium), Some(driver)) => Some((chromium, driver)),
        _ if std::env::var_os("CI").is_some() => panic!(
            "chromium/chromedriver not installed: CI must run the browser tests \
             (.ci/run installs Debian's chromium and chromium-driver)"
        ),
        _ => {
            println!("skipped: chromium/chromedriver not installed");
            None
        }
    }
}

/// The tests are sync; fantoccini's session runs on this runtime.
fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// One request to chromedriver on a fresh connection (it wants a `Host`
/// of its own loopback address); `None` when nothing answers yet.
fn driver_request(addr: SocketAddr, method: &str, path: &str) -> Option<util::Resp> {
    util::try_raw_request(
        addr,
        format!(
            "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"
        )
        .as_bytes(),
    )
    .ok()
}

/// chromedriver's legacy log command (`POST /session/{id}/se/log` with
/// `{"type":"browser"}`): the console entries since the last call, each
/// `{level, message, source, timestamp}`. Not in the W3C protocol, hence a
/// command of our own.
#[derive(Debug)]
struct BrowserLog;

impl fantoccini::wd::WebDriverCompatibleCommand for BrowserLog {
    fn endpoint(
        &self,
        base_url: &url::Url,
        session_id: Option<&str>,
    ) -> Result<url::Url, url::ParseError> {
        base_url.join(&format!(
            "session/{}/se/log",
            session_id.unwrap_or_default()
        ))
    }

    fn method_and_body(&self, _request_url: &url::Url) -> (http::Method, Option<String>) {
        (
            http::Method::POST,
            Some(json!({ "type": "browser" }).to_string()),
        )
    }
}

/// A chromedriver of our own on a free loopback port, leading a process
/// group of its own. Dropped: its session, if still open, is deleted (the
/// browser quits), then the group, the browser's processes included, is
/// killed: a test that fails midway leaves nothing running.
struct Driver {
    child: Child,
    addr: SocketAddr,
    log: PathBuf,
    session: Option<String>,
}

impl Driver {
    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let tail: Vec<&str> = text.lines().rev().take(40).collect();
        tail.into_iter().rev().collect::<Vec<_>>().join("\n")
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        if let Some(session) = self.session.take() {
            let _ = driver_request(self.addr, "DELETE", &format!("/session/{session}"));
        }
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.child.id())])
            .status();
        let _ = self.child.wait();
    }
}

/// One headless Chromium session on a chromedriver of our own, pointed at
/// `base` (the daemon).
struct Browser {
    c: Client,
    base: String,
    driver: Driver,
    /// Every console entry read so far (chromedriver hands each out once),
    /// as `PAGE [LEVEL SOURCE] MESSAGE`.
    console: Vec<String>,
    /// Why the console log could not be read, if it could not.
    console_unavailable: Option<String>,
}

impl Browser {
    async fn start(tools: &(PathBuf, PathBuf), dir: &Path, base: &str) -> Browser {
        use std::os::unix::process::CommandExt;
        let (chromium, chromedriver) = tools;
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let child = Command::new(chromedriver)
            .arg(format!("--port={port}"))
            .arg(format!(
                "--log-path={}",
                dir.join("chromedriver.log").display()
            ))
            // Its own process group: one kill ends it and the browser.
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn chromedriver");
        let mut driver = Driver {
            child,
            addr,
            log: dir.join("chromedriver.log"),
            session: None,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(r) = driver_request(addr, "GET", "/status") {
                if r.status == 200 && r.text().contains("\"ready\":true") {
                    break;
                }
            }
            if let Some(status) = driver.child.try_wait().unwrap() {
                panic!("chromedriver exited ({status}): {}", driver.log_tail());
            }
            assert!(
                Instant::now() < deadline,
                "chromedriver did not answer: {}",
                driver.log_tail()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let mut caps = serde_json::Map::new();
        caps.insert(
            "goog:chromeOptions".into(),
            json!({
                "binary": chromium.to_str().unwrap(),
                "args": [
                    "--headless=new",
                    "--no-sandbox",
                    "--disable-gpu",
                    "--disable-dev-shm-usage",
                    "--window-size=1280,900",
                    // In the test dir, so it goes with it even when the
                    // browser is killed.
                    format!("--user-data-dir={}", dir.join("chromium-profile").display()),
                ],
            }),
        );
        caps.insert("goog:loggingPrefs".into(), json!({ "browser": "ALL" }));
        // A page's `confirm()` is answered as a user who meant the click.
        caps.insert("unhandledPromptBehavior".into(), json!("accept"));
        // Plain HTTP to chromedriver on loopback: no TLS connector.
        let mut builder =
            ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new());
        builder.capabilities(caps);
        let c = match builder.connect(&format!("http://{addr}")).await {
            Ok(c) => c,
            Err(e) => panic!("no browser session ({e}): {}", driver.log_tail()),
        };
        driver.session = c.session_id().await.unwrap();
        Browser {
            c,
            base: base.to_string(),
            driver,
            console: Vec::new(),
            console_unavailable: None,
        }
    }

    /// Ends the session (the browser quits); chromedriver goes on drop.
    async fn close(mut self) {
        if self.driver.session.take().is_some() {
            let _ = self.c.clone().close().await;
        }
    }

    // ----- reading pages --------------------------------------------------

    /// The current URL's path.
    async fn path(&self) -> String {
        self.c
            .current_url()
            .await
            .map(|u| u.path().to_string())
            .unwrap_or_default()
    }

    /// Where the browser is and what it shows, for failure messages.
    async fn context(&self) -> String {
        let url = self
            .c
            .current_url()
            .await
            .map(|u| u.to_string())
            .unwrap_or_default();
        let source = self.c.source().await.unwrap_or_default();
        let source: String = source.chars().take(4000).collect();
        format!("page {url}:\n{source}")
    }

    async fn expect_path(&self, want: &str) {
        let path = self.path().await;
        ensure!(self, path == want, "expected to be at {want}, at {path}");
    }

    /// The links `css` finds lead to exactly `paths`, in order.
    async fn expect_links(&self, css: &str, paths: &[&str]) {
        let got = self.hrefs(css).await;
        let want: Vec<String> = paths.iter().map(|p| self.url(p)).collect();
        ensure!(self, got == want, "{css} links to {got:?}, not {want:?}");
    }

    /// Some element `css` finds has text holding every one of `needles`.
    async fn expect_text(&self, css: &str, needles: &[&str]) {
        let texts = self.texts(css).await;
        let found = texts.iter().any(|t| needles.iter().all(|n| t.contains(n)));
        ensure!(self, found, "no {css} says {needles:?}: {texts:?}");
    }

    /// What the first element `css` finds shows, but for trailing space.
    async fn expect_shown(&self, css: &str, want: &str) {
        let text = self.text(css).await;
        ensure!(
            self,
            text.trim_end() == want.trim_end(),
            "{css} shows {text:?}, not {want:?}"
        );
    }

    /// The value of the control `css` finds.
    async fn expect_value(&self, css: &str, want: &str) {
        let value = self.value(css).await;
        ensure!(self, value == want, "{css} holds {value:?}, not {want:?}");
    }

    async fn find(&self, css: &str) -> Element {
        match self.c.find(Locator::Css(css)).await {
            Ok(e) => e,
            Err(e) => {
                let context = self.context().await;
                panic!("no {css} ({e})\n{context}");
            }
        }
    }

    async fn find_all(&self, css: &str) -> Vec<Element> {
        self.c.find_all(Locator::Css(css)).await.unwrap()
    }

    async fn text(&self, css: &str) -> String {
        self.find(css).await.text().await.unwrap()
    }

    async fn texts(&self, css: &str) -> Vec<String> {
        let mut out = Vec::new();
        for e in self.find_all(css).await {
            out.push(e.text().await.unwrap());
        }
        out
    }

    /// The value a control holds now (what the browser would submit).
    async fn value(&self, css: &str) -> String {
        self.find(css)
            .await
            .prop("value")
            .await
            .unwrap()
            .unwrap_or_default()
    }

    /// Resolved link targets (absolute URLs) of the elements `css` finds.
    async fn hrefs(&self, css: &str) -> Vec<String> {
        let mut out = Vec::new();
        for e in self.find_all(css).await {
            out.push(e.prop("href").await.unwrap().unwrap_or_default());
        }
        out
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    // ----- acting ----------------------------------------------------------

    /// With `CFGSTORE_UI_SCREENSHOTS=DIR`, the page as a PNG in DIR (the
    /// README's screenshots are made this way).
    async fn shot(&self, name: &str) {
        let Ok(dir) = std::env::var("CFGSTORE_UI_SCREENSHOTS") else {
            return;
        };
        let png = self.c.screenshot().await.unwrap();
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(Path::new(&dir).join(format!("{name}.png")), png).unwrap();
    }

    async fn goto(&mut self, path: &str) {
        let url = self.url(path);
        self.c.goto(&url).await.unwrap();
        self.drain_console().await;
    }

    /// Clicks what leads to another page and waits until that page is there
    /// (the old document's root went stale).
    async fn click(&mut self, el: &Element) {
        let old = self.find("html").await;
        if let Err(e) = el.click().await {
            let context = self.context().await;
            panic!("click failed ({e})\n{context}");
        }
        self.wait_for_new_page(&old).await;
    }

    async fn click_css(&mut self, css: &str) {
        let el = self.find(css).await;
        self.click(&el).await;
    }

    /// Submits `form` with its submit button (the first one).
    async fn submit(&mut self, form: &str) {
        self.click_css(&format!(
            "{form} button[type=submit], {form} input[type=submit], {form} button:not([type])"
        ))
        .await;
    }

    /// Presses Enter in a field (an implicit submission) and waits for the
    /// page it leads to.
    async fn press_enter(&mut self, css: &str) {
        let field = self.find(css).await;
        let old = self.find("html").await;
        field.send_keys("\u{E007}").await.unwrap();
        self.wait_for_new_page(&old).await;
    }

    /// Waits until `old` (the previous page's root) went stale.
    async fn wait_for_new_page(&mut self, old: &Element) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            match old.tag_name().await {
                Err(CmdError::Standard(_)) => break,
                Err(e) => panic!("browser lost: {e}"),
                Ok(_) => {}
            }
            ensure!(self, Instant::now() < deadline, "no new page");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        self.drain_console().await;
    }

    /// Signs in through the login form, landing on the projects page.
    async fn login(&mut self, user: &str, password: &str) {
        self.goto(LOGIN).await;
        self.fill("form#login input[name=username]", user).await;
        self.fill("form#login input[name=password]", password).await;
        self.submit("form#login").await;
        self.expect_path("/site-builder/").await;
    }

    /// Types `text` into a field, replacing what it held.
    async fn fill(&self, css: &str, text: &str) {
        let el = self.find(css).await;
        el.clear().await.unwrap();
        el.send_keys(text).await.unwrap();
        let now = el.prop("value").await.unwrap().unwrap_or_default();
        ensure!(
            self,
            now == text,
            "{css} holds {now:?} after typing {text:?}"
        );
    }

    /// Sets a control's value directly (a date input's typing order follows
    /// the browser's locale). WebDriver's script runs outside the page: the
    /// page's CSP does not apply to it.
    async fn set_value(&self, css: &str, value: &str) {
        let el = self.find(css).await;
        self.c
            .execute(
                "arguments[0].value = arguments[1];",
                vec![serde_json::to_value(&el).unwrap(), json!(value)],
            )
            .await
            .unwrap();
    }

    /// The fields `form` would submit now (submit buttons aside), its
    /// target path and the browser's cookies: to send the same form
    /// without the browser and see the status code it gets.
    async fn form_as_sent(&self, form: &str) -> (String, Vec<(String, String)>, String) {
        let f = self.find(form).await;
        // The attribute, not the `action` property: a control named
        // `action` (the editor's buttons) shadows that property.
        let path = f.attr("action").await.unwrap().unwrap_or_default();
        assert!(
            path.starts_with('/'),
            "{form} posts to {path:?}, not to a path of ours"
        );
        let mut fields = Vec::new();
        let controls = format!("{form} input[name], {form} textarea[name], {form} select[name]");
        for el in self.c.find_all(Locator::Css(&controls)).await.unwrap() {
            let kind = el.attr("type").await.unwrap().unwrap_or_default();
            let unchecked =
                matches!(kind.as_str(), "checkbox" | "radio") && !el.is_selected().await.unwrap();
            if matches!(kind.as_str(), "submit" | "button" | "image") || unchecked {
                continue;
            }
            fields.push((
                el.attr("name").await.unwrap().unwrap_or_default(),
                el.prop("value").await.unwrap().unwrap_or_default(),
            ));
        }
        (path, fields, self.cookies().await)
    }

    /// The browser's cookies as a `Cookie` header value: to ask for what
    /// the browser would get (a download) without it.
    async fn cookies(&self) -> String {
        let cookies = self.c.get_all_cookies().await.unwrap();
        let pairs: Vec<String> = cookies
            .iter()
            .map(|c| format!("{}={}", c.name(), c.value()))
            .collect();
        pairs.join("; ")
    }

    // ----- the console -----------------------------------------------------

    /// Reads the console entries chromedriver holds, keeping them here.
    async fn drain_console(&mut self) {
        if self.console_unavailable.is_some() {
            return;
        }
        let page = self.path().await;
        match self.c.issue_cmd(BrowserLog).await {
            Ok(Value::Array(entries)) => {
                self.console.extend(entries.iter().map(|e| {
                    let field = |k: &str| e[k].as_str().unwrap_or_default().to_string();
                    let (level, source) = (field("level"), field("source"));
                    format!("{page} [{level} {source}] {}", field("message"))
                }));
            }
            Ok(other) => {
                self.console_unavailable = Some(format!("unexpected answer {other}"));
            }
            Err(e) => self.console_unavailable = Some(e.to_string()),
        }
    }

    /// No page broke its Content Security Policy: Chromium logs each
    /// blocked inline script, style or resource as a `security` entry
    /// ("… violates the following Content Security Policy directive …";
    /// older versions: "Refused to …").
    async fn assert_no_csp_violations(&mut self) {
        self.drain_console().await;
        if let Some(why) = &self.console_unavailable {
            assert!(
                std::env::var_os("CI").is_none(),
                "the browser console cannot be read ({why}): CSP unchecked"
            );
            println!("CSP not checked: the browser console cannot be read ({why})");
            return;
        }
        let violations: Vec<&str> = self
            .console
            .iter()
            .filter(|e| {
                e.contains(" security] ")
                    || e.contains("Content Security Policy")
                    || e.contains("Refused to")
            })
            .map(String::as_str)
            .collect();
        assert!(
            violations.is_empty(),
            "CSP violations in the console:\n{}",
            violations.join("\n")
        );
    }
}

// ----- the store ------------------------------------------------------------

fn history(data: &Path) -> Vec<Value> {
    util::json(data, &["history", "list", PROJECT, "main"])
        .as_array()
        .unwrap()
        .clone()
}

fn file_get(data: &Path) -> String {
    ok(data, &["file", "get", PROJECT, "main", "config/app.json"])
}

fn put_cli(data: &Path, content: &str) {
    let out = run_with_input(
        data,
        &["file", "put", PROJECT, "main", "config/app.json"],
        content.as_bytes(),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The id Git (and the API) gives `content`: sha1 of `blob {len}\0` and it.
fn git_blob_id(content: &str) -> String {
    use sha1::{Digest, Sha1};
    let mut h = Sha1::new();
    h.update(format!("blob {}\0", content.len()).as_bytes());
    h.update(content.as_bytes());
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// `fields` as a browser posts them (`application/x-www-form-urlencoded`).
fn form_body(fields: &[(String, String)]) -> String {
    use percent_encoding::{utf8_percent_encode, NON_ALPHANUMERIC};
    let enc = |x: &str| utf8_percent_encode(x, NON_ALPHANUMERIC).to_string();
    let pairs: Vec<String> = fields
        .iter()
        .map(|(k, v)| format!("{}={}", enc(k), enc(v)))
        .collect();
    pairs.join("&")
}

mod manage;
mod walk;
