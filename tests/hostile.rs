//! The hostile-input suite (RELIABILITY.md "Hostile inputs", I5, I6, I7):
//! table-driven cases over both APIs. Each case is a request and the exact
//! status it must get; for every case the runner also checks that
//!
//! 1. the status is exactly the one in the table,
//! 2. nothing changed on disk (a digest of the whole data directory,
//!    leaving out only what legitimately changes on a refused request:
//!    the audit log, the change marker, scratch space, a token's
//!    `last_used_at` and the contents of session files),
//! 3. no secret of the suite (tokens, passwords, session ids) and no
//!    internal path is in the response bytes,
//! 4. the daemon still serves a valid read afterwards.
//!
//! One server per group, so the whole suite stays fast.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::util::{
    add_user, create_token, ok, raw_exchange, raw_request, run_with_input, Login, Resp, TestDir,
    TestServer, API, NO_RESPONSE, V4,
};

const ADMIN: &str = "/site-builder/api";
const APP: &str = "app.cfg";
const CONFIG: &[u8] = b"{\"a\":1}\n";

// ----- the table --------------------------------------------------------------

enum Req {
    /// A well-formed HTTP/1.1 request; `Content-Length` is set when the
    /// body is not empty.
    Http {
        method: String,
        path: String,
        headers: Vec<(String, String)>,
        body: Vec<u8>,
    },
    /// Bytes on the wire, exactly.
    Raw(Vec<u8>),
    /// Bytes on the wire, then the sending side closed.
    HalfClosed(Vec<u8>),
}

struct Case {
    desc: String,
    req: Req,
    status: u16,
}

fn case(
    desc: impl Into<String>,
    method: &str,
    path: impl Into<String>,
    headers: &[(&str, &str)],
    body: &[u8],
    status: u16,
) -> Case {
    Case {
        desc: desc.into(),
        req: Req::Http {
            method: method.to_string(),
            path: path.into(),
            headers: headers
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            body: body.to_vec(),
        },
        status,
    }
}

fn get(
    desc: impl Into<String>,
    path: impl Into<String>,
    headers: &[(&str, &str)],
    status: u16,
) -> Case {
    case(desc, "GET", path, headers, b"", status)
}

fn raw(desc: impl Into<String>, bytes: impl Into<Vec<u8>>, status: u16) -> Case {
    Case {
        desc: desc.into(),
        req: Req::Raw(bytes.into()),
        status,
    }
}

fn half_closed(desc: impl Into<String>, bytes: impl Into<Vec<u8>>, status: u16) -> Case {
    Case {
        desc: desc.into(),
        req: Req::HalfClosed(bytes.into()),
        status,
    }
}

fn send_case(addr: SocketAddr, req: &Req) -> Resp {
    match req {
        Req::Http {
            method,
            path,
            headers,
            body,
        } => {
            let mut head =
                format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
            if !body.is_empty() {
                head.push_str(&format!("Content-Length: {}\r\n", body.len()));
            }
            for (k, v) in headers {
                head.push_str(&format!("{k}: {v}\r\n"));
            }
            head.push_str("\r\n");
            let mut bytes = head.into_bytes();
            bytes.extend_from_slice(body);
            raw_request(addr, &bytes)
        }
        Req::Raw(bytes) => raw_exchange(addr, bytes, false),
        Req::HalfClosed(bytes) => raw_exchange(addr, bytes, true),
    }
}

// ----- the fixture ------------------------------------------------------------

struct Tokens {
    /// demo, every project of demo.
    demo: String,
    /// demo, only `team-a.cfg`.
    team_a: String,
    revoked: String,
    expired: String,
    /// bob's wildcard token.
    bob: String,
    /// demo, fingerprint required, bound to `host-1`.
    fingerprint: String,
}

struct Sessions {
    /// demo: ROLE_SITEBUILDER_USER.
    demo: Login,
    /// READONLY everywhere.
    viewer: Login,
    /// ROLE_SITEBUILDER_USER__team-a.
    team_a: Login,
    /// Another plain user, for CSRF tokens of another session.
    alice: Login,
}

struct Fixture {
    _dir: TestDir,
    data: PathBuf,
    server: TestServer,
    tokens: Tokens,
    sessions: Option<Sessions>,
    /// Must never appear in a response.
    secrets: Vec<String>,
}

const PASSWORDS: &[(&str, &str, &[&str])] = &[
    ("demo", "demo-secret-pw-1", &["ROLE_SITEBUILDER_USER"]),
    (
        "viewer",
        "viewer-secret-pw-2",
        &["ROLE_SITEBUILDER_EDITOR__READONLY"],
    ),
    (
        "teama",
        "teama-secret-pw-3",
        &["ROLE_SITEBUILDER_USER__team-a"],
    ),
    ("alice", "alice-secret-pw-4", &["ROLE_SITEBUILDER_USER"]),
    ("bob", "bob-secret-pw-5", &["ROLE_SITEBUILDER_USER"]),
];

fn put_cli(data: &Path, project: &str, path: &str, bytes: &[u8]) {
    let out = run_with_input(data, &["file", "put", project, "main", path], bytes);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

impl Fixture {
    fn new(name: &str, with_users: bool) -> Fixture {
        let dir = TestDir::new(name);
        let data = dir.data();
        ok(&data, &["init"]);
        for (owner, name) in [
            ("demo", "app"),
            ("demo", "team-a"),
            ("demo", "team-ab"),
            ("bob", "secret"),
            ("bob", "team-a"),
            ("bob", "team-ab"),
            ("public", "shared"),
        ] {
            ok(&data, &["project", "create", owner, name, "--type", "cfg"]);
        }
        put_cli(&data, "demo/app.cfg", "config.json", CONFIG);
        put_cli(&data, "demo/app.cfg", "dir/nested.json", b"{}");
        put_cli(&data, "bob/secret.cfg", "secret.json", b"bob's");
        put_cli(&data, "bob/team-ab.cfg", "x.json", b"x");
        ok(
            &data,
            &[
                "branch",
                "create",
                "demo/app.cfg",
                "release/2026.1",
                "--from",
                "main",
            ],
        );
        let token = |owner: &str, extra: &[&str]| create_token(&data, owner, extra);
        let (_, demo) = token("demo", &[]);
        let (_, team_a) = token("demo", &["--repos", "team-a.cfg"]);
        let (revoked_id, revoked) = token("demo", &[]);
        ok(&data, &["token", "revoke", &revoked_id, "--yes"]);
        // A token cannot be created expired: it expires by an update.
        let (expired_id, expired) = token("demo", &[]);
        ok(
            &data,
            &["token", "update", &expired_id, "--expires", "2020-01-01"],
        );
        let (_, bob) = token("bob", &[]);
        let (_, fingerprint) = token("demo", &["--fingerprint"]);
        let mut secrets = vec![
            demo.clone(),
            team_a.clone(),
            revoked.clone(),
            expired.clone(),
            bob.clone(),
            fingerprint.clone(),
        ];
        if with_users {
            for (user, password, roles) in PASSWORDS {
                add_user(&data, user, password, roles);
                secrets.push(password.to_string());
            }
        }
        let server = TestServer::start(&data);
        // Bind the fingerprint token to host-1 before the digest is taken.
        let r = server.get(
            &format!("{API}/projects/{APP}/repository/branches"),
            &[("PRIVATE-TOKEN", &fingerprint), ("X-Instance-Id", "host-1")],
        );
        assert_eq!(r.status, 200, "{}", r.text());
        let sessions = with_users.then(|| {
            let login = |user: &str| {
                let password = PASSWORDS.iter().find(|p| p.0 == user).unwrap().1;
                Login::new(server.addr, user, password)
            };
            Sessions {
                demo: login("demo"),
                viewer: login("viewer"),
                team_a: login("teama"),
                alice: login("alice"),
            }
        });
        if let Some(s) = &sessions {
            for login in [&s.demo, &s.viewer, &s.team_a, &s.alice] {
                let id = login.cookie.split_once('=').unwrap().1.to_string();
                secrets.push(id);
            }
        }
        Fixture {
            _dir: dir,
            data,
            server,
            tokens: Tokens {
                demo,
                team_a,
                revoked,
                expired,
                bob,
                fingerprint,
            },
            sessions,
            secrets,
        }
    }

    fn addr(&self) -> SocketAddr {
        self.server.addr
    }

    fn sessions(&self) -> &Sessions {
        self.sessions.as_ref().expect("fixture with users")
    }

    /// A valid read: the daemon is healthy.
    fn healthy(&self) -> Result<(), String> {
        let r = self.server.get(
            &format!("{API}/projects/{APP}/repository/files/config.json/raw"),
            &[("PRIVATE-TOKEN", &self.tokens.demo)],
        );
        if r.status == 200 && r.body == CONFIG {
            Ok(())
        } else {
            Err(format!("valid read answered {}: {}", r.status, r.text()))
        }
    }

    /// Runs a table; every mismatch is collected, then reported at once.
    fn run(&self, group: &str, cases: Vec<Case>) -> usize {
        self.run_watching(group, cases, &[])
    }

    /// `run`, also watching `outside` (folders beyond the data directory)
    /// for any change.
    fn run_watching(&self, group: &str, cases: Vec<Case>, outside: &[&Path]) -> usize {
        let snapshot = || {
            let mut all = digest(&self.data);
            for dir in outside {
                for (k, v) in digest(dir) {
                    all.insert(format!("OUTSIDE {}:{k}", dir.display()), v);
                }
            }
            all
        };
        let mut before = snapshot();
        let mut forbidden = self.secrets.clone();
        forbidden.push(self.data.display().to_string());
        let mut failures = Vec::new();
        for (i, c) in cases.iter().enumerate() {
            let label = format!("[{group} #{i}] {}", c.desc);
            let started = std::time::Instant::now();
            let r = send_case(self.addr(), &c.req);
            if started.elapsed() > std::time::Duration::from_secs(5) {
                failures.push(format!("{label}: took {:?}", started.elapsed()));
            }
            if r.status != c.status {
                failures.push(format!(
                    "{label}: status {} (want {}): {}",
                    r.status,
                    c.status,
                    r.text().chars().take(200).collect::<String>()
                ));
            }
            let wire = response_bytes(&r);
            for secret in &forbidden {
                if contains(&wire, secret.as_bytes()) {
                    failures.push(format!(
                        "{label}: response contains the secret {secret:.12}…"
                    ));
                }
            }
            let after = snapshot();
            if after != before {
                failures.push(format!("{label}: side effect: {}", diff(&before, &after)));
                before = after;
            }
            if let Err(e) = self.healthy() {
                failures.push(format!("{label}: not healthy afterwards: {e}"));
            }
        }
        assert!(
            failures.is_empty(),
            "{} of {} {group} cases failed:\n{}",
            failures.len(),
            cases.len(),
            failures.join("\n")
        );
        cases.len()
    }
}

fn response_bytes(r: &Resp) -> Vec<u8> {
    let mut out = Vec::new();
    for (k, v) in &r.headers {
        out.extend_from_slice(format!("{k}: {v}\r\n").as_bytes());
    }
    out.extend_from_slice(&r.body);
    out
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && haystack.windows(needle.len()).any(|w| w == needle)
}

/// Path → kind and content hash of everything under `root`, leaving out
/// what a refused request may legitimately change.
fn digest(root: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries {
            let entry = entry.unwrap();
            let path = entry.path();
            let rel = path
                .strip_prefix(root)
                .unwrap()
                .to_string_lossy()
                .into_owned();
            if rel == ".cfgstore/audit.log"
                || rel == ".cfgstore/changes"
                || rel.starts_with(".cfgstore/tmp")
            {
                continue;
            }
            let meta = std::fs::symlink_metadata(&path).unwrap();
            let kind = meta.file_type();
            let value = if kind.is_symlink() {
                format!(
                    "symlink -> {}",
                    std::fs::read_link(&path).unwrap().display()
                )
            } else if kind.is_dir() {
                stack.push(path.clone());
                "dir".to_string()
            } else if !kind.is_file() {
                "special".to_string()
            } else if rel.starts_with(".cfgstore/sessions/") {
                // Touched on use; that one exists (or not) is what counts.
                "session".to_string()
            } else {
                let mut bytes = std::fs::read(&path).unwrap();
                if rel.starts_with(".cfgstore/tokens/") {
                    if let Ok(mut v) = serde_json::from_slice::<serde_json::Value>(&bytes) {
                        v["last_used_at"] = serde_json::Value::Null;
                        bytes = v.to_string().into_bytes();
                    }
                }
                let hash: String = Sha256::digest(&bytes)
                    .iter()
                    .map(|b| format!("{b:02x}"))
                    .collect();
                format!("file {hash}")
            };
            out.insert(rel, value);
        }
    }
    out
}

fn diff(before: &BTreeMap<String, String>, after: &BTreeMap<String, String>) -> String {
    let mut changes = Vec::new();
    for (k, v) in after {
        match before.get(k) {
            None => changes.push(format!("+{k}")),
            Some(old) if old != v => changes.push(format!("~{k}")),
            _ => {}
        }
    }
    for k in before.keys().filter(|k| !after.contains_key(*k)) {
        changes.push(format!("-{k}"));
    }
    changes.join(", ")
}

// ----- read API ---------------------------------------------------------------

fn file_raw(path: &str) -> String {
    format!("{API}/projects/{APP}/repository/files/{path}/raw")
}

#[test]
fn read_api_paths_refs_and_repo_ids() {
    let fx = Fixture::new("hostile-read-paths", false);
    let t = fx.tokens.demo.clone();
    let h: &[(&str, &str)] = &[("PRIVATE-TOKEN", &t)];
    let long_segment = "a".repeat(256);
    let long_path = vec!["a"; 513].join("%2F"); // 1025 bytes decoded
    let max_segment = "a".repeat(255);
    let long_ref = "r".repeat(101);
    let long_repo = "p".repeat(129);
    let cases = vec![
        // file paths
        get("encoded ../", file_raw("..%2Fconfig.json"), h, 400),
        get(
            "encoded ../ deep",
            file_raw("..%2F..%2F..%2F..%2Fetc%2Fpasswd"),
            h,
            400,
        ),
        get(
            "encoded dots %2E%2E",
            file_raw("%2E%2E%2Fconfig.json"),
            h,
            400,
        ),
        get(
            "lowercase encoded dots",
            file_raw("%2e%2e%2fconfig.json"),
            h,
            400,
        ),
        get(
            "double-encoded ../ is a literal name",
            file_raw("%252E%252E%252Fconfig.json"),
            h,
            404,
        ),
        get(
            "overlong UTF-8 dot (lowercase)",
            file_raw("%c0%ae%c0%ae%2Fconfig.json"),
            h,
            400,
        ),
        get(
            "overlong UTF-8 slash",
            file_raw("..%c0%afconfig.json"),
            h,
            400,
        ),
        get(
            "3-byte overlong dot",
            file_raw("%e0%80%ae%e0%80%ae%2Fconfig.json"),
            h,
            400,
        ),
        get("NUL after the name", file_raw("config.json%00"), h, 400),
        get(
            "NUL before an extension",
            file_raw("config.json%00.png"),
            h,
            400,
        ),
        get(
            "backslash traversal",
            file_raw("dir%5C..%5Cconfig.json"),
            h,
            400,
        ),
        get("'.' segment encoded", file_raw(".%2Fconfig.json"), h, 400),
        get(
            "empty segment encoded",
            file_raw("dir%2F%2Fnested.json"),
            h,
            400,
        ),
        get("trailing slash encoded", file_raw("dir%2F"), h, 400),
        get(
            "literal .. segment",
            format!("{API}/projects/{APP}/repository/files/dir/../config.json/raw"),
            h,
            400,
        ),
        get(
            "literal . segment",
            format!("{API}/projects/{APP}/repository/files/./config.json/raw"),
            h,
            400,
        ),
        get("reserved name", file_raw(".cfgstore"), h, 400),
        get(
            "reserved folder",
            file_raw(".cfgstore%2Fserver.key"),
            h,
            400,
        ),
        get("reserved prefix", file_raw("dir%2F.cfgstore-x"), h, 400),
        get("segment of 256 bytes", file_raw(&long_segment), h, 400),
        get("path over 1024 bytes", file_raw(&long_path), h, 400),
        get(
            "segment of 255 bytes is valid (missing)",
            file_raw(&max_segment),
            h,
            404,
        ),
        get("newline in a name", file_raw("a%0Ab"), h, 400),
        get("DEL in a name", file_raw("a%7Fb"), h, 400),
        get("C1 control in a name", file_raw("a%C2%85b"), h, 400),
        get("bad escape", file_raw("%zz"), h, 400),
        get("truncated escape", file_raw("a%2"), h, 400),
        get("absolute path", file_raw("%2Fetc%2Fpasswd"), h, 400),
        get(
            "meta endpoint, traversal",
            format!("{API}/projects/{APP}/repository/files/..%2Fx?ref=main"),
            h,
            400,
        ),
        // refs
        get(
            "ref traversal",
            format!("{}?ref=..%2Fmain", file_raw("config.json")),
            h,
            400,
        ),
        get(
            "ref with NUL",
            format!("{}?ref=main%00", file_raw("config.json")),
            h,
            400,
        ),
        get(
            "ref hidden segment",
            format!("{}?ref=.git", file_raw("config.json")),
            h,
            400,
        ),
        get(
            "ref ending .lock",
            format!("{}?ref=main.lock", file_raw("config.json")),
            h,
            400,
        ),
        get(
            "ref with //",
            format!("{}?ref=release%2F%2F2026.1", file_raw("config.json")),
            h,
            400,
        ),
        get(
            "ref with leading /",
            format!("{}?ref=%2Fmain", file_raw("config.json")),
            h,
            400,
        ),
        get(
            "ref with leading -",
            format!("{}?ref=-main", file_raw("config.json")),
            h,
            400,
        ),
        get(
            "ref of 101 bytes",
            format!("{}?ref={long_ref}", file_raw("config.json")),
            h,
            400,
        ),
        get(
            "double-encoded ref",
            format!("{}?ref=%252E%252E", file_raw("config.json")),
            h,
            400,
        ),
        get(
            "ref with backslash",
            format!("{}?ref=main%5C", file_raw("config.json")),
            h,
            400,
        ),
        get(
            "ref with a space",
            format!("{}?ref=ma+in", file_raw("config.json")),
            h,
            400,
        ),
        get(
            "ref not UTF-8",
            format!("{}?ref=%C0%AE", file_raw("config.json")),
            h,
            400,
        ),
        get(
            "unknown ref",
            format!("{}?ref=nope", file_raw("config.json")),
            h,
            404,
        ),
        get(
            "branch endpoint, literal ..",
            format!("{API}/projects/{APP}/repository/branches/.."),
            h,
            400,
        ),
        get(
            "branch endpoint, encoded traversal",
            format!("{API}/projects/{APP}/repository/branches/main%2F..%2F..%2Fx"),
            h,
            400,
        ),
        get(
            "branch endpoint, reserved HEAD",
            format!("{API}/projects/{APP}/repository/branches/HEAD"),
            h,
            400,
        ),
        get(
            "archive, ref traversal",
            format!("{API}/projects/{APP}/repository/archive.tar.gz?sha=..%2Fmain"),
            h,
            400,
        ),
        get(
            "tree, ref with NUL",
            format!("{API}/projects/{APP}/repository/tree?ref=%00"),
            h,
            400,
        ),
        // tree paths
        get(
            "tree path ..",
            format!("{API}/projects/{APP}/repository/tree?path=.."),
            h,
            400,
        ),
        get(
            "tree path absolute",
            format!("{API}/projects/{APP}/repository/tree?path=%2Fetc"),
            h,
            400,
        ),
        get(
            "tree path reserved",
            format!("{API}/projects/{APP}/repository/tree?path=.cfgstore"),
            h,
            400,
        ),
        get(
            "tree path climbing",
            format!("{API}/projects/{APP}/repository/tree?path=dir%2F..%2F.."),
            h,
            400,
        ),
        get(
            "tree path of a file",
            format!("{API}/projects/{APP}/repository/tree?path=nope"),
            h,
            404,
        ),
        // repoIds
        get(
            "repoId traversal",
            format!("{API}/projects/..%2F..%2Fetc/repository/tree"),
            h,
            400,
        ),
        get(
            "repoId ..",
            format!("{API}/projects/%2E%2E/repository/tree"),
            h,
            400,
        ),
        get(
            "repoId .",
            format!("{API}/projects/./repository/tree"),
            h,
            400,
        ),
        get(
            "owner .cfgstore",
            format!("{API}/projects/.cfgstore%2Ftokens/repository/tree"),
            h,
            400,
        ),
        get(
            "repo .cfgstore",
            format!("{API}/projects/demo%2F.cfgstore/repository/tree"),
            h,
            400,
        ),
        get(
            "repoId with two slashes",
            format!("{API}/projects/demo%2Fapp.cfg%2Fx/repository/tree"),
            h,
            400,
        ),
        get(
            "double-encoded namespace",
            format!("{API}/projects/demo%252Fapp.cfg/repository/tree"),
            h,
            400,
        ),
        get(
            "repoId with NUL",
            format!("{API}/projects/app.cfg%00/repository/tree"),
            h,
            400,
        ),
        get(
            "repoId of 129 bytes",
            format!("{API}/projects/{long_repo}/repository/tree"),
            h,
            400,
        ),
        get(
            "uppercase owner",
            format!("{API}/projects/DEMO%2Fapp.cfg/repository/tree"),
            h,
            400,
        ),
        get(
            "public area then traversal",
            format!("{API}/projects/public%2F..%2Fbob%2Fsecret.cfg/repository/tree"),
            h,
            400,
        ),
        get(
            "repoId with backslash",
            format!("{API}/projects/app.cfg%5C..%5C..%5Cbob/repository/tree"),
            h,
            400,
        ),
        get(
            "repoId overlong UTF-8",
            format!("{API}/projects/%C0%AE%C0%AE/repository/tree"),
            h,
            400,
        ),
        get(
            "empty namespace",
            format!("{API}/projects/%2Fapp.cfg/repository/tree"),
            h,
            400,
        ),
        get(
            "blob id traversal",
            format!(
                "{API}/projects/{APP}/repository/blobs/..%2F..%2F..%2F.cfgstore%2Fserver.key/raw"
            ),
            h,
            404,
        ),
        get(
            "blob id uppercase",
            format!(
                "{API}/projects/{APP}/repository/blobs/{}/raw",
                "A".repeat(40)
            ),
            h,
            404,
        ),
        // query abuse
        get(
            "page=-1",
            format!("{API}/projects/{APP}/repository/tree?page=-1"),
            h,
            400,
        ),
        get(
            "page=abc",
            format!("{API}/projects/{APP}/repository/tree?page=abc"),
            h,
            400,
        ),
        get(
            "page beyond u64",
            format!("{API}/projects/{APP}/repository/tree?page=99999999999999999999"),
            h,
            400,
        ),
        get(
            "page=u64::MAX is an empty page",
            format!("{API}/projects/{APP}/repository/tree?page=18446744073709551615&per_page=100"),
            h,
            200,
        ),
        get(
            "per_page=999999 is capped",
            format!("{API}/projects/{APP}/repository/tree?per_page=999999"),
            h,
            200,
        ),
        get(
            "per_page=-5",
            format!("{API}/projects/{APP}/repository/branches?per_page=-5"),
            h,
            400,
        ),
        get(
            "page with NUL",
            format!("{API}/projects/{APP}/repository/tree?page=%00"),
            h,
            400,
        ),
        get(
            "recursive=maybe",
            format!("{API}/projects/{APP}/repository/tree?recursive=maybe"),
            h,
            400,
        ),
        get(
            "query with a bad escape",
            format!("{API}/projects/{APP}/repository/tree?%zz=1"),
            h,
            400,
        ),
        // methods and routes
        case(
            "POST on a read route",
            "POST",
            format!("{API}/projects/{APP}/repository/branches"),
            h,
            b"{}",
            405,
        ),
        case(
            "PUT on a read file",
            "PUT",
            file_raw("config.json"),
            h,
            b"x",
            405,
        ),
        case(
            "DELETE on a read file",
            "DELETE",
            file_raw("config.json"),
            h,
            b"",
            405,
        ),
        case(
            "PATCH on a project",
            "PATCH",
            format!("{V4}/projects/{APP}"),
            h,
            b"{}",
            405,
        ),
        case(
            "TRACE on a read route",
            "TRACE",
            format!("{API}/projects/{APP}"),
            h,
            b"",
            405,
        ),
        case(
            "OPTIONS on a read route",
            "OPTIONS",
            format!("{API}/projects/{APP}"),
            h,
            b"",
            405,
        ),
        case(
            "unknown method",
            "FOO",
            format!("{API}/projects/{APP}"),
            h,
            b"",
            405,
        ),
        case("TRACE on an unknown route", "TRACE", "/nope", h, b"", 404),
        case("POST to /metrics", "POST", "/metrics", &[], b"", 405),
        get("health under /api/v4", format!("{V4}/health"), &[], 404),
        get(
            "a near-miss mount",
            "/site-builder/api/erp-configs/health",
            &[],
            404,
        ),
        get(
            "unknown repository route",
            format!("{API}/projects/{APP}/repository/commits"),
            h,
            404,
        ),
        get(
            "traversal in the route",
            format!("{API}/projects/{APP}/../../../.cfgstore/server.key"),
            h,
            404,
        ),
        get(
            "trailing slash on a list is tolerated",
            format!("{API}/projects/{APP}/repository/branches/"),
            h,
            200,
        ),
        get(
            "extra segments after raw",
            format!("{API}/projects/{APP}/repository/files/config.json/raw/x"),
            h,
            400,
        ),
        get(
            "files without a path",
            format!("{API}/projects/{APP}/repository/files//raw"),
            h,
            400,
        ),
        get(
            "archive format zip",
            format!("{API}/projects/{APP}/repository/archive.zip"),
            h,
            400,
        ),
        get(
            "archive format ../",
            format!("{API}/projects/{APP}/repository/archive...%2F..%2Fx"),
            h,
            400,
        ),
        raw(
            "asterisk request target",
            "OPTIONS * HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
            404,
        ),
    ];
    fx.run("read paths", cases);
}

#[test]
fn read_api_headers_and_tokens() {
    let fx = Fixture::new("hostile-read-tokens", false);
    let tk = &fx.tokens;
    let tree = format!("{API}/projects/{APP}/repository/tree");
    let truncated = &tk.demo[..63];
    let upper = tk.demo.to_uppercase();
    let longer = format!("{}0", tk.demo);
    let bearer = format!("Bearer {}", tk.demo);
    let bearer_extra = format!("Bearer {} extra", tk.demo);
    let basic = format!("Basic {}", tk.demo);
    let huge = "a".repeat(16 * 1024);
    let too_big = "a".repeat(64 * 1024);
    let other = "0".repeat(64);
    let cases = vec![
        get("no token", &tree, &[], 401),
        get("wrong token", &tree, &[("PRIVATE-TOKEN", &other)], 401),
        get("truncated token", &tree, &[("PRIVATE-TOKEN", truncated)], 401),
        get("uppercase hex token", &tree, &[("PRIVATE-TOKEN", &upper)], 401),
        get("token plus a digit", &tree, &[("PRIVATE-TOKEN", &longer)], 401),
        get("revoked token", &tree, &[("PRIVATE-TOKEN", &tk.revoked)], 401),
        get("expired token", &tree, &[("PRIVATE-TOKEN", &tk.expired)], 401),
        get("empty token", &tree, &[("PRIVATE-TOKEN", "")], 401),
        get("token of 16 KiB", &tree, &[("PRIVATE-TOKEN", &huge)], 401),
        get("token of 64 KiB: head too large", &tree, &[("PRIVATE-TOKEN", &too_big)], 431),
        get(
            "duplicate PRIVATE-TOKEN, valid first",
            &tree,
            &[("PRIVATE-TOKEN", &tk.demo), ("PRIVATE-TOKEN", &other)],
            401,
        ),
        get(
            "duplicate PRIVATE-TOKEN, valid second",
            &tree,
            &[("PRIVATE-TOKEN", &other), ("PRIVATE-TOKEN", &tk.demo)],
            401,
        ),
        get(
            "PRIVATE-TOKEN and a different Bearer",
            &tree,
            &[("PRIVATE-TOKEN", &tk.demo), ("Authorization", &format!("Bearer {}", tk.bob))],
            401,
        ),
        get(
            "duplicate Authorization",
            &tree,
            &[("Authorization", &bearer), ("Authorization", "Bearer x")],
            401,
        ),
        get(
            "header token and a different query token",
            format!("{tree}?private_token={other}"),
            &[("PRIVATE-TOKEN", &tk.demo)],
            401,
        ),
        get(
            "two query tokens",
            format!("{tree}?private_token={}&private_token={other}", tk.demo),
            &[],
            401,
        ),
        get("Bearer without a token", &tree, &[("Authorization", "Bearer")], 401),
        get("Bearer with blanks", &tree, &[("Authorization", "Bearer    ")], 401),
        get("Bearer token with trailing words", &tree, &[("Authorization", &bearer_extra)], 401),
        get("Basic scheme", &tree, &[("Authorization", &basic)], 401),
        get("scheme only garbage", &tree, &[("Authorization", "garbage")], 401),
        get("revoked token as Bearer", &tree, &[("Authorization", &format!("Bearer {}", tk.revoked))], 401),
        raw(
            "token with non-ASCII bytes",
            [
                format!("GET {tree} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nPRIVATE-TOKEN: ").as_bytes(),
                &[0xc3, 0xa9, 0xff][..],
                b"\r\n\r\n",
            ]
            .concat(),
            401,
        ),
        raw(
            "control byte in a header value",
            format!("GET {tree} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nPRIVATE-TOKEN: ab\x01cd\r\n\r\n"),
            400,
        ),
        raw(
            "NUL in a header value",
            format!("GET {tree} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nPRIVATE-TOKEN: {}\x00\r\n\r\n", tk.demo),
            400,
        ),
        raw(
            "space in a header name",
            format!("GET {tree} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nPRIVATE TOKEN: {}\r\n\r\n", tk.demo),
            400,
        ),
        raw(
            "header folded over two lines",
            format!("GET {tree} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nPRIVATE-TOKEN: \r\n {}\r\n\r\n", tk.demo),
            400,
        ),
        // fingerprints
        get("fingerprint token without X-Instance-Id", &tree, &[("PRIVATE-TOKEN", &tk.fingerprint)], 401),
        get(
            "fingerprint token, other host",
            &tree,
            &[("PRIVATE-TOKEN", &tk.fingerprint), ("X-Instance-Id", "host-2")],
            401,
        ),
        get(
            "fingerprint token, empty X-Instance-Id",
            &tree,
            &[("PRIVATE-TOKEN", &tk.fingerprint), ("X-Instance-Id", "")],
            401,
        ),
        get(
            "fingerprint token, 16 KiB X-Instance-Id",
            &tree,
            &[("PRIVATE-TOKEN", &tk.fingerprint), ("X-Instance-Id", &huge)],
            401,
        ),
        get(
            "fingerprint token, bound id with a suffix",
            &tree,
            &[("PRIVATE-TOKEN", &tk.fingerprint), ("X-Instance-Id", "host-1x")],
            401,
        ),
        get(
            "fingerprint token, two X-Instance-Id headers",
            &tree,
            &[
                ("PRIVATE-TOKEN", &tk.fingerprint),
                ("X-Instance-Id", "host-1"),
                ("X-Instance-Id", "host-2"),
            ],
            401,
        ),
        raw(
            "fingerprint token, non-ASCII X-Instance-Id",
            [
                format!(
                    "GET {tree} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nPRIVATE-TOKEN: {}\r\nX-Instance-Id: host-1",
                    tk.fingerprint
                )
                .as_bytes(),
                &[0xff][..],
                b"\r\n\r\n",
            ]
            .concat(),
            401,
        ),
        get(
            "revoked token with a fingerprint header",
            &tree,
            &[("PRIVATE-TOKEN", &tk.revoked), ("X-Instance-Id", "host-1")],
            401,
        ),
        // scope: other owners, allowlists, prefix near-misses
        get("another owner's project", format!("{API}/projects/bob%2Fsecret.cfg/repository/tree"), &[("PRIVATE-TOKEN", &tk.demo)], 403),
        get(
            "another owner's missing project",
            format!("{API}/projects/bob%2Fnope.cfg/repository/tree"),
            &[("PRIVATE-TOKEN", &tk.demo)],
            403,
        ),
        get(
            "another owner's token on demo's project",
            format!("{API}/projects/demo%2Fapp.cfg/repository/files/config.json/raw"),
            &[("PRIVATE-TOKEN", &tk.bob)],
            403,
        ),
        get("team-a token on team-ab", format!("{API}/projects/team-ab.cfg/repository/tree"), &[("PRIVATE-TOKEN", &tk.team_a)], 403),
        get("team-a token on team-a (no type)", format!("{API}/projects/team-a/repository/tree"), &[("PRIVATE-TOKEN", &tk.team_a)], 403),
        get("team-a token on team-a.cfg.x", format!("{API}/projects/team-a.cfg.x/repository/tree"), &[("PRIVATE-TOKEN", &tk.team_a)], 403),
        get("team-a token on TEAM-A.cfg", format!("{API}/projects/TEAM-A.cfg/repository/tree"), &[("PRIVATE-TOKEN", &tk.team_a)], 403),
        get("team-a token on app.cfg", format!("{API}/projects/{APP}/repository/tree"), &[("PRIVATE-TOKEN", &tk.team_a)], 403),
        get(
            "team-a token on bob's team-a",
            format!("{API}/projects/bob%2Fteam-a.cfg/repository/tree"),
            &[("PRIVATE-TOKEN", &tk.team_a)],
            403,
        ),
        get(
            "team-a token, archive of team-ab",
            format!("{API}/projects/team-ab.cfg/repository/archive.tar.gz"),
            &[("PRIVATE-TOKEN", &tk.team_a)],
            403,
        ),
        get(
            "Link header ignores an untrusted X-Forwarded-Host",
            format!("{API}/projects/{APP}/repository/tree?per_page=1"),
            &[("PRIVATE-TOKEN", &tk.demo), ("X-Forwarded-Host", "evil.example")],
            200,
        ),
    ];
    fx.run("read tokens", cases);
    // The forwarded host never reaches a Link header.
    let r = fx.server.get(
        &format!("{API}/projects/{APP}/repository/tree?per_page=1"),
        &[
            ("PRIVATE-TOKEN", &tk.demo),
            ("X-Forwarded-Host", "evil.example"),
        ],
    );
    assert!(!r.header("link").unwrap_or("").contains("evil"));
}

// ----- admin API --------------------------------------------------------------

#[test]
fn admin_api_paths_bodies_and_roles() {
    let fx = Fixture::new("hostile-admin", true);
    let s = fx.sessions();
    let demo = [
        ("Cookie", s.demo.cookie.as_str()),
        ("X-CSRF-Token", s.demo.csrf.as_str()),
    ];
    let viewer = [
        ("Cookie", s.viewer.cookie.as_str()),
        ("X-CSRF-Token", s.viewer.csrf.as_str()),
    ];
    let team_a = [
        ("Cookie", s.team_a.cookie.as_str()),
        ("X-CSRF-Token", s.team_a.csrf.as_str()),
    ];
    let d: &[(&str, &str)] = &demo;
    let json = [
        ("Cookie", s.demo.cookie.as_str()),
        ("X-CSRF-Token", s.demo.csrf.as_str()),
        ("Content-Type", "application/json"),
    ];
    let j: &[(&str, &str)] = &json;
    let file = |p: &str| format!("{ADMIN}/projects/{APP}/branches/main/files/{p}");
    let branches = format!("{ADMIN}/projects/{APP}/branches");
    let long_segment = "a".repeat(256);
    let long_path = vec!["a"; 513].join("/");
    let deep_array = "[".repeat(100_000);
    let deep_object = "{\"a\":".repeat(10_000);
    let many_keys = format!(
        "{{{}\"name\":\"x\"}}",
        (0..20_000)
            .map(|i| format!("\"k{i}\":{i},"))
            .collect::<String>()
    );
    let long_name = format!("{{\"name\":\"{}\"}}", "b".repeat(101));
    // The viewer has no folder of its own: it names demo's project.
    let demo_file = |p: &str| format!("{ADMIN}/projects/demo%2F{APP}/branches/main/files/{p}");
    let cases = vec![
        // file paths on PUT and DELETE
        case("PUT encoded ../", "PUT", file("..%2Fescape"), d, b"x", 400),
        case(
            "PUT deep traversal",
            "PUT",
            file("..%2F..%2F..%2F..%2Fescape"),
            d,
            b"x",
            400,
        ),
        case(
            "PUT literal ..",
            "PUT",
            file("dir/../../escape"),
            d,
            b"x",
            400,
        ),
        case(
            "PUT encoded dots",
            "PUT",
            file("%2E%2E%2F%2E%2E%2Fescape"),
            d,
            b"x",
            400,
        ),
        case(
            "viewer PUT of a double-encoded name",
            "PUT",
            demo_file("%252E%252E%252Fescape"),
            &viewer,
            b"x",
            403,
        ),
        case(
            "PUT overlong UTF-8",
            "PUT",
            file("%C0%AE%C0%AE%2Fescape"),
            d,
            b"x",
            400,
        ),
        case("PUT NUL", "PUT", file("a%00b"), d, b"x", 400),
        case(
            "PUT backslash",
            "PUT",
            file("..%5C..%5Cescape"),
            d,
            b"x",
            400,
        ),
        case("PUT newline", "PUT", file("a%0Ab"), d, b"x", 400),
        case(
            "PUT reserved .cfgstore",
            "PUT",
            file(".cfgstore"),
            d,
            b"x",
            400,
        ),
        case(
            "PUT reserved below a folder",
            "PUT",
            file("dir/.cfgstore-tmp"),
            d,
            b"x",
            400,
        ),
        case("PUT . segment", "PUT", file("./x"), d, b"x", 400),
        case(
            "PUT empty segment encoded",
            "PUT",
            file("dir%2F%2Fx"),
            d,
            b"x",
            400,
        ),
        case(
            "PUT segment of 256 bytes",
            "PUT",
            file(&long_segment),
            d,
            b"x",
            400,
        ),
        case(
            "PUT path over 1024 bytes",
            "PUT",
            file(&long_path),
            d,
            b"x",
            400,
        ),
        case(
            "PUT below an existing file",
            "PUT",
            file("config.json/x"),
            d,
            b"x",
            409,
        ),
        case("PUT a file over a folder", "PUT", file("dir"), d, b"x", 409),
        case(
            "PUT with a stale If-Match",
            "PUT",
            file("stale.txt"),
            &[demo[0], demo[1], ("If-Match", "\"00000000\"")],
            b"never stored",
            409,
        ),
        case(
            "DELETE with a stale If-Match",
            "DELETE",
            file("config.json"),
            &[demo[0], demo[1], ("If-Match", "00000000")],
            b"",
            409,
        ),
        case(
            "DELETE traversal",
            "DELETE",
            file("..%2Fconfig.json"),
            d,
            b"",
            400,
        ),
        case("DELETE a missing file", "DELETE", file("nope"), d, b"", 404),
        case(
            "DELETE reserved",
            "DELETE",
            file(".cfgstore%2Fserver.key"),
            d,
            b"",
            400,
        ),
        get(
            "GET traversal",
            file("..%2F..%2F.cfgstore%2Fserver.key"),
            d,
            400,
        ),
        // refs
        case(
            "PUT ref traversal",
            "PUT",
            format!("{ADMIN}/projects/{APP}/branches/..%2Fmain/files/x"),
            d,
            b"x",
            400,
        ),
        case(
            "PUT ref climbing",
            "PUT",
            format!("{ADMIN}/projects/{APP}/branches/main%2F..%2F..%2Fx/files/x"),
            d,
            b"x",
            400,
        ),
        case(
            "PUT ref hidden",
            "PUT",
            format!("{ADMIN}/projects/{APP}/branches/.git/files/x"),
            d,
            b"x",
            400,
        ),
        case(
            "PUT ref HEAD",
            "PUT",
            format!("{ADMIN}/projects/{APP}/branches/HEAD/files/x"),
            d,
            b"x",
            400,
        ),
        case(
            "PUT ref .lock",
            "PUT",
            format!("{ADMIN}/projects/{APP}/branches/main.lock/files/x"),
            d,
            b"x",
            400,
        ),
        case(
            "PUT ref double-encoded",
            "PUT",
            format!("{ADMIN}/projects/{APP}/branches/%252E%252E/files/x"),
            d,
            b"x",
            400,
        ),
        case(
            "PUT ref NUL",
            "PUT",
            format!("{ADMIN}/projects/{APP}/branches/main%00/files/x"),
            d,
            b"x",
            400,
        ),
        case(
            "PUT unknown ref",
            "PUT",
            format!("{ADMIN}/projects/{APP}/branches/nope/files/x"),
            d,
            b"x",
            404,
        ),
        get(
            "tree of ref ..",
            format!("{ADMIN}/projects/{APP}/branches/%2E%2E/tree"),
            d,
            400,
        ),
        get(
            "history of a ref with NUL",
            format!("{ADMIN}/projects/{APP}/branches/a%00/history"),
            d,
            400,
        ),
        // repoIds
        case(
            "PUT repoId traversal",
            "PUT",
            format!("{ADMIN}/projects/..%2F..%2Ftmp/branches/main/files/x"),
            d,
            b"x",
            400,
        ),
        case(
            "PUT repoId .cfgstore",
            "PUT",
            format!("{ADMIN}/projects/.cfgstore/branches/main/files/x"),
            d,
            b"x",
            400,
        ),
        case(
            "PUT owner .cfgstore",
            "PUT",
            format!("{ADMIN}/projects/.cfgstore%2Ftokens/branches/main/files/x"),
            d,
            b"x",
            400,
        ),
        case(
            "PUT public then traversal",
            "PUT",
            format!("{ADMIN}/projects/public%2F..%2Fbob/branches/main/files/x"),
            d,
            b"x",
            400,
        ),
        case(
            "PUT repoId double-encoded",
            "PUT",
            format!("{ADMIN}/projects/bob%252Fsecret.cfg/branches/main/files/x"),
            d,
            b"x",
            400,
        ),
        // roles
        case("viewer PUT", "PUT", demo_file("x"), &viewer, b"x", 403),
        case(
            "viewer DELETE",
            "DELETE",
            demo_file("config.json"),
            &viewer,
            b"",
            403,
        ),
        case(
            "viewer creates a branch",
            "POST",
            format!("{ADMIN}/projects/demo%2F{APP}/branches"),
            &viewer,
            br#"{"name":"v"}"#,
            403,
        ),
        case(
            "viewer rolls back",
            "POST",
            format!("{ADMIN}/projects/demo%2F{APP}/branches/main/rollback?to=v0001"),
            &viewer,
            b"",
            403,
        ),
        case(
            "viewer creates a token for demo",
            "POST",
            format!("{ADMIN}/tokens"),
            &viewer,
            br#"{"name":"x","owner":"demo"}"#,
            403,
        ),
        case(
            "viewer creates a project for demo",
            "POST",
            format!("{ADMIN}/projects"),
            &viewer,
            br#"{"name":"x","type":"cfg","owner":"demo"}"#,
            403,
        ),
        get(
            "plain user reads the audit trail of another's project",
            format!("{ADMIN}/audit?project=bob%2Fsecret.cfg"),
            d,
            403,
        ),
        case(
            "demo PUT in bob's project",
            "PUT",
            format!("{ADMIN}/projects/bob%2Fsecret.cfg/branches/main/files/x"),
            d,
            b"x",
            403,
        ),
        case(
            "demo PUT in bob's missing project",
            "PUT",
            format!("{ADMIN}/projects/bob%2Fnope.cfg/branches/main/files/x"),
            d,
            b"x",
            403,
        ),
        case(
            "demo DELETE in bob's project",
            "DELETE",
            format!("{ADMIN}/projects/bob%2Fsecret.cfg/branches/main/files/secret.json"),
            d,
            b"",
            403,
        ),
        get(
            "demo reads bob's file",
            format!("{ADMIN}/projects/bob%2Fsecret.cfg/branches/main/files/secret.json"),
            d,
            403,
        ),
        case(
            "demo writes the public area",
            "PUT",
            format!("{ADMIN}/projects/public%2Fshared.cfg/branches/main/files/x"),
            d,
            b"x",
            403,
        ),
        case(
            "demo creates a project for bob",
            "POST",
            format!("{ADMIN}/projects"),
            j,
            br#"{"name":"x","type":"cfg","owner":"bob"}"#,
            403,
        ),
        case(
            "demo creates a token for bob",
            "POST",
            format!("{ADMIN}/tokens"),
            j,
            br#"{"name":"x","owner":"bob"}"#,
            403,
        ),
        get(
            "demo lists bob's tokens",
            format!("{ADMIN}/tokens?owner=bob"),
            d,
            403,
        ),
        case(
            "team-a PUT in bob's team-ab",
            "PUT",
            format!("{ADMIN}/projects/bob%2Fteam-ab.cfg/branches/main/files/x"),
            &team_a,
            b"x",
            403,
        ),
        case(
            "team-a DELETE in bob's team-ab",
            "DELETE",
            format!("{ADMIN}/projects/bob%2Fteam-ab.cfg/branches/main/files/x.json"),
            &team_a,
            b"",
            403,
        ),
        case(
            "team-a PUT in bob's team-a_b",
            "PUT",
            format!("{ADMIN}/projects/bob%2Fteam-a_b.cfg/branches/main/files/x"),
            &team_a,
            b"x",
            403,
        ),
        case(
            "team-a PUT in bob's TEAM-A",
            "PUT",
            format!("{ADMIN}/projects/bob%2FTEAM-A.cfg/branches/main/files/x"),
            &team_a,
            b"x",
            403,
        ),
        case(
            "team-a PUT in bob's secret",
            "PUT",
            format!("{ADMIN}/projects/bob%2Fsecret.cfg/branches/main/files/x"),
            &team_a,
            b"x",
            403,
        ),
        case(
            "team-a PUT in a missing covered project",
            "PUT",
            format!("{ADMIN}/projects/bob%2Fteam-a.cfgx/branches/main/files/x"),
            &team_a,
            b"x",
            404,
        ),
        case(
            "team-a creates bob's team-ab.x",
            "POST",
            format!("{ADMIN}/projects"),
            &[team_a[0], team_a[1], ("Content-Type", "application/json")],
            br#"{"name":"team-ab","type":"x","owner":"bob"}"#,
            403,
        ),
        // branch bodies
        case("branch: invalid JSON", "POST", &branches, j, b"{", 400),
        case("branch: empty body", "POST", &branches, j, b"", 400),
        case("branch: null", "POST", &branches, j, b"null", 400),
        case(
            "branch: array bomb",
            "POST",
            &branches,
            j,
            deep_array.as_bytes(),
            400,
        ),
        case(
            "branch: object bomb",
            "POST",
            &branches,
            j,
            deep_object.as_bytes(),
            400,
        ),
        case(
            "branch: 20000 unknown keys",
            "POST",
            &branches,
            j,
            many_keys.as_bytes(),
            400,
        ),
        case(
            "branch: name is a number",
            "POST",
            &branches,
            j,
            br#"{"name":5}"#,
            400,
        ),
        case(
            "branch: name is a list",
            "POST",
            &branches,
            j,
            br#"{"name":["a"]}"#,
            400,
        ),
        case(
            "branch: duplicate key",
            "POST",
            &branches,
            j,
            br#"{"name":"a","name":"b"}"#,
            400,
        ),
        case(
            "branch: trailing garbage",
            "POST",
            &branches,
            j,
            br#"{"name":"a"} x"#,
            400,
        ),
        case(
            "branch: not UTF-8",
            "POST",
            &branches,
            j,
            b"{\"name\":\"\xff\"}",
            400,
        ),
        case(
            "branch: traversal",
            "POST",
            &branches,
            j,
            br#"{"name":"a/../../b"}"#,
            400,
        ),
        case(
            "branch: reserved",
            "POST",
            &branches,
            j,
            br#"{"name":".cfgstore"}"#,
            400,
        ),
        case(
            "branch: 101 bytes",
            "POST",
            &branches,
            j,
            long_name.as_bytes(),
            400,
        ),
        case(
            "branch: from traversal",
            "POST",
            &branches,
            j,
            br#"{"name":"n","from":"../main"}"#,
            400,
        ),
        case(
            "branch: from missing",
            "POST",
            &branches,
            j,
            br#"{"name":"n","from":"nope"}"#,
            404,
        ),
        case(
            "branch: exists",
            "POST",
            &branches,
            j,
            br#"{"name":"main"}"#,
            409,
        ),
        case(
            "branch: nested under an existing one",
            "POST",
            &branches,
            j,
            br#"{"name":"main/sub"}"#,
            409,
        ),
        case(
            "branch: parent of an existing one",
            "POST",
            &branches,
            j,
            br#"{"name":"release"}"#,
            409,
        ),
        // project bodies
        case(
            "project: name ..",
            "POST",
            format!("{ADMIN}/projects"),
            j,
            br#"{"name":"..","type":""}"#,
            400,
        ),
        case(
            "project: type traversal",
            "POST",
            format!("{ADMIN}/projects"),
            j,
            br#"{"name":"x","type":"../../y"}"#,
            400,
        ),
        case(
            "project: name with slash",
            "POST",
            format!("{ADMIN}/projects"),
            j,
            br#"{"name":"x/y","type":"cfg"}"#,
            400,
        ),
        case(
            "project: owner ..",
            "POST",
            format!("{ADMIN}/projects"),
            j,
            br#"{"name":"x","owner":".."}"#,
            400,
        ),
        case(
            "project: reserved name",
            "POST",
            format!("{ADMIN}/projects"),
            j,
            br#"{"name":".cfgstore"}"#,
            400,
        ),
        case(
            "project: exists",
            "POST",
            format!("{ADMIN}/projects"),
            j,
            br#"{"name":"app","type":"cfg"}"#,
            409,
        ),
        case(
            "project: unknown field",
            "POST",
            format!("{ADMIN}/projects"),
            j,
            br#"{"name":"x","type":"cfg","path":"/etc"}"#,
            400,
        ),
        case(
            "project: name null",
            "POST",
            format!("{ADMIN}/projects"),
            j,
            br#"{"name":null}"#,
            400,
        ),
        // tokens
        case(
            "token: repos traversal",
            "POST",
            format!("{ADMIN}/tokens"),
            j,
            br#"{"name":"x","repos":["../bob"]}"#,
            400,
        ),
        case(
            "token: repos not a list",
            "POST",
            format!("{ADMIN}/tokens"),
            j,
            br#"{"name":"x","repos":"app.cfg"}"#,
            400,
        ),
        case(
            "token: expiry garbage",
            "POST",
            format!("{ADMIN}/tokens"),
            j,
            br#"{"name":"x","expires_at":"soon"}"#,
            400,
        ),
        case(
            "token: fingerprint as a string",
            "POST",
            format!("{ADMIN}/tokens"),
            j,
            br#"{"name":"x","fingerprint_required":"yes"}"#,
            400,
        ),
        case(
            "token: array bomb",
            "POST",
            format!("{ADMIN}/tokens"),
            j,
            deep_array.as_bytes(),
            400,
        ),
        case(
            "token: PATCH an unknown id",
            "PATCH",
            format!("{ADMIN}/tokens/nope"),
            j,
            br#"{"name":"y"}"#,
            404,
        ),
        case(
            "token: PATCH a traversal id",
            "PATCH",
            format!("{ADMIN}/tokens/..%2F..%2Fserver.key"),
            j,
            br#"{"name":"y"}"#,
            404,
        ),
        case(
            "token: DELETE a traversal id",
            "DELETE",
            format!("{ADMIN}/tokens/..%2Ftokens"),
            d,
            b"",
            404,
        ),
        case(
            "token: rotate with a week",
            "POST",
            format!("{ADMIN}/tokens/nope/rotate"),
            j,
            br#"{"grace":"1w"}"#,
            404,
        ),
        // rollback and snapshots
        case(
            "rollback to v0000",
            "POST",
            format!("{ADMIN}/projects/{APP}/branches/main/rollback?to=v0000"),
            d,
            b"",
            400,
        ),
        case(
            "rollback to ../v1",
            "POST",
            format!("{ADMIN}/projects/{APP}/branches/main/rollback?to=..%2Fv1"),
            d,
            b"",
            400,
        ),
        case(
            "rollback to 10 digits",
            "POST",
            format!("{ADMIN}/projects/{APP}/branches/main/rollback?to=v9999999999"),
            d,
            b"",
            400,
        ),
        case(
            "rollback to a future version",
            "POST",
            format!("{ADMIN}/projects/{APP}/branches/main/rollback?to=v0999"),
            d,
            b"",
            404,
        ),
        case(
            "rollback to the live version",
            "POST",
            format!("{ADMIN}/projects/{APP}/branches/main/rollback?to=v0003"),
            d,
            b"",
            404,
        ),
        case(
            "rollback without to",
            "POST",
            format!("{ADMIN}/projects/{APP}/branches/main/rollback"),
            d,
            b"",
            400,
        ),
        case(
            "rollback to with NUL",
            "POST",
            format!("{ADMIN}/projects/{APP}/branches/main/rollback?to=v1%00"),
            d,
            b"",
            400,
        ),
        get(
            "snapshot version traversal",
            format!("{ADMIN}/projects/{APP}/branches/main/snapshots/..%2Fv0001/tree"),
            d,
            400,
        ),
        get(
            "snapshot HEAD",
            format!("{ADMIN}/projects/{APP}/branches/main/snapshots/HEAD/tree"),
            d,
            400,
        ),
        get(
            "snapshot file traversal",
            format!("{ADMIN}/projects/{APP}/branches/main/snapshots/v0001/files/..%2F..%2Fx"),
            d,
            400,
        ),
        get(
            "history page=-1",
            format!("{ADMIN}/projects/{APP}/branches/main/history?page=-1"),
            d,
            400,
        ),
        get(
            "history per_page=999999",
            format!("{ADMIN}/projects/{APP}/branches/main/history?per_page=999999"),
            d,
            200,
        ),
        get(
            "audit since garbage",
            format!("{ADMIN}/audit?since=yesterday"),
            &viewer,
            400,
        ),
        // methods and routes
        case("PATCH a file", "PATCH", file("config.json"), d, b"x", 405),
        case("TRACE a file", "TRACE", file("config.json"), d, b"", 405),
        case(
            "unknown method on projects",
            "FOO",
            format!("{ADMIN}/projects"),
            d,
            b"",
            405,
        ),
        case(
            "GET on login",
            "GET",
            format!("{ADMIN}/user/login"),
            &[],
            b"",
            405,
        ),
        case(
            "DELETE me",
            "DELETE",
            format!("{ADMIN}/user/me"),
            d,
            b"",
            405,
        ),
        get("unknown admin route", format!("{ADMIN}/users"), d, 404),
        get(
            "admin route beyond files",
            format!("{ADMIN}/projects/{APP}/branches/main/nothing"),
            d,
            404,
        ),
        get(
            "admin trailing slash tolerated",
            format!("{ADMIN}/projects/"),
            d,
            200,
        ),
    ];
    fx.run("admin", cases);
}

#[test]
fn admin_api_cookies_csrf_and_login() {
    let fx = Fixture::new("hostile-cookies", true);
    let s = fx.sessions();
    let demo_id = s.demo.cookie.split_once('=').unwrap().1;
    let me = format!("{ADMIN}/user/me");
    let put = format!("{ADMIN}/projects/{APP}/branches/main/files/x");
    let logout = format!("{ADMIN}/user/logout");
    let login = format!("{ADMIN}/user/login");
    let cookie = |v: &str| format!("cfgstore_session={v}");
    let upper = cookie(&demo_id.to_uppercase());
    let truncated = cookie(&demo_id[..63]);
    let unknown = cookie(&"0".repeat(64));
    let both_bad_first = format!("cfgstore_session=garbage; {}", s.demo.cookie);
    let both_good_first = format!("{}; cfgstore_session=garbage", s.demo.cookie);
    let two_sessions = format!("{}; {}", s.demo.cookie, s.alice.cookie);
    let csrf_upper = s.demo.csrf.to_uppercase();
    let csrf_short = &s.demo.csrf[..s.demo.csrf.len() - 1];
    let huge_cookie = cookie(&"a".repeat(16 * 1024));
    let json = ("Content-Type", "application/json");
    let cases = vec![
        get("no cookie", &me, &[], 401),
        get("garbage session cookie", &me, &[("Cookie", "cfgstore_session=garbage")], 401),
        get("traversal in the session cookie", &me, &[("Cookie", "cfgstore_session=..%2F..%2F.cfgstore%2Fserver.key")], 401),
        get("unknown 64-hex session", &me, &[("Cookie", &unknown)], 401),
        get("uppercase session id", &me, &[("Cookie", &upper)], 401),
        get("truncated session id", &me, &[("Cookie", &truncated)], 401),
        get("16 KiB session cookie", &me, &[("Cookie", &huge_cookie)], 401),
        get("empty session cookie", &me, &[("Cookie", "cfgstore_session=")], 401),
        get("cookie name near-miss", &me, &[("Cookie", &format!("cfgstore_sessionx={demo_id}"))], 401),
        get("session id as a Bearer token", &me, &[("Authorization", &format!("Bearer {demo_id}"))], 401),
        get("duplicate cookie, garbage first", &me, &[("Cookie", &both_bad_first)], 401),
        get("duplicate cookie, valid first", &me, &[("Cookie", &both_good_first)], 401),
        get("two valid sessions in one header", &me, &[("Cookie", &two_sessions)], 401),
        get(
            "two Cookie headers",
            &me,
            &[("Cookie", &s.demo.cookie), ("Cookie", &s.alice.cookie)],
            401,
        ),
        get("read token instead of a session", &me, &[("PRIVATE-TOKEN", &fx.tokens.demo)], 401),
        raw(
            "non-ASCII cookie",
            [
                format!("GET {me} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nCookie: cfgstore_session=").as_bytes(),
                &[0xff, 0xfe][..],
                b"\r\n\r\n",
            ]
            .concat(),
            401,
        ),
        // CSRF
        case("PUT without CSRF", "PUT", &put, &[("Cookie", &s.demo.cookie)], b"x", 403),
        case("PUT with an empty CSRF", "PUT", &put, &[("Cookie", &s.demo.cookie), ("X-CSRF-Token", "")], b"x", 403),
        case("PUT with alice's CSRF", "PUT", &put, &[("Cookie", &s.demo.cookie), ("X-CSRF-Token", &s.alice.csrf)], b"x", 403),
        case("PUT with the CSRF uppercased", "PUT", &put, &[("Cookie", &s.demo.cookie), ("X-CSRF-Token", &csrf_upper)], b"x", 403),
        case("PUT with the CSRF truncated", "PUT", &put, &[("Cookie", &s.demo.cookie), ("X-CSRF-Token", csrf_short)], b"x", 403),
        case("PUT with the session id as CSRF", "PUT", &put, &[("Cookie", &s.demo.cookie), ("X-CSRF-Token", demo_id)], b"x", 403),
        case(
            "PUT with two CSRF headers",
            "PUT",
            &put,
            &[("Cookie", &s.demo.cookie), ("X-CSRF-Token", "x"), ("X-CSRF-Token", &s.demo.csrf)],
            b"x",
            403,
        ),
        case("PUT with CSRF but no cookie", "PUT", &put, &[("X-CSRF-Token", &s.demo.csrf)], b"x", 401),
        case("DELETE without CSRF", "DELETE", format!("{ADMIN}/projects/{APP}/branches/main/files/config.json"), &[("Cookie", &s.demo.cookie)], b"", 403),
        case("rollback without CSRF", "POST", format!("{ADMIN}/projects/{APP}/branches/main/rollback?to=v0001"), &[("Cookie", &s.demo.cookie)], b"", 403),
        case("token create without CSRF", "POST", format!("{ADMIN}/tokens"), &[("Cookie", &s.demo.cookie), json], br#"{"name":"x"}"#, 403),
        case("logout without CSRF", "POST", &logout, &[("Cookie", &s.demo.cookie)], b"", 403),
        case("logout with alice's CSRF", "POST", &logout, &[("Cookie", &s.demo.cookie), ("X-CSRF-Token", &s.alice.csrf)], b"", 403),
        raw(
            "non-ASCII CSRF",
            [
                format!("PUT {put} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: 1\r\nCookie: {}\r\nX-CSRF-Token: ", s.demo.cookie).as_bytes(),
                &[0xff][..],
                b"\r\n\r\nx",
            ]
            .concat(),
            403,
        ),
        // login
        case("login: invalid JSON", "POST", &login, &[json], b"{", 400),
        case("login: missing password", "POST", &login, &[json], br#"{"username":"demo"}"#, 400),
        case("login: password a number", "POST", &login, &[json], br#"{"username":"demo","password":1}"#, 400),
        case("login: array bomb", "POST", &login, &[json], "[".repeat(60_000).as_bytes(), 400),
        // Past what an anonymous client may send (api::ANONYMOUS_BODY_LIMIT):
        // refused before the body is read.
        case("login: 100 KB array bomb", "POST", &login, &[json], "[".repeat(100_000).as_bytes(), 413),
        case("login: form not UTF-8", "POST", &login, &[("Content-Type", "application/x-www-form-urlencoded")], b"username=\xff&password=x", 400),
        case("login: form bad escape", "POST", &login, &[("Content-Type", "application/x-www-form-urlencoded")], b"username=%zz&password=x", 400),
        case("login: form missing password", "POST", &login, &[("Content-Type", "application/x-www-form-urlencoded")], b"username=demo", 400),
        case("login: traversal user", "POST", &login, &[json], br#"{"username":"../../.cfgstore/server","password":"x"}"#, 401),
        case("login: NUL in user", "POST", &login, &[json], b"{\"username\":\"demo\\u0000\",\"password\":\"demo-secret-pw-1\"}", 401),
        case("login: uppercase user", "POST", &login, &[json], br#"{"username":"DEMO","password":"demo-secret-pw-1"}"#, 401),
        case("login: wrong password", "POST", &login, &[json], br#"{"username":"alice","password":"demo-secret-pw-1"}"#, 401),
    ];
    fx.run("cookies", cases);
}

// ----- HTTP framing -------------------------------------------------------------

#[test]
fn raw_http_framing_on_both_apis() {
    let fx = Fixture::new("hostile-framing", true);
    let s = fx.sessions();
    let put = format!("{ADMIN}/projects/{APP}/branches/main/files/framed.txt");
    let head = |extra: &str| {
        format!(
            "PUT {put} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nCookie: {}\r\nX-CSRF-Token: {}\r\n{extra}\r\n",
            s.demo.cookie, s.demo.csrf
        )
    };
    let read = format!("{API}/projects/{APP}/repository/files/config.json/raw");
    let read_head = |extra: &str| {
        format!(
            "GET {read} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nPRIVATE-TOKEN: {}\r\n{extra}\r\n",
            fx.tokens.demo
        )
    };
    let cases = vec![
        half_closed("body shorter than Content-Length", format!("{}abc", head("Content-Length: 10\r\n")), 400),
        raw("two different Content-Lengths", format!("{}abc", head("Content-Length: 3\r\nContent-Length: 4\r\n")), 400),
        raw("negative Content-Length", format!("{}abc", head("Content-Length: -1\r\n")), 400),
        raw("Content-Length not a number", format!("{}abc", head("Content-Length: abc\r\n")), 400),
        raw("Content-Length with a plus", format!("{}abc", head("Content-Length: +3\r\n")), 400),
        raw("Content-Length over u64", format!("{}abc", head("Content-Length: 99999999999999999999999\r\n")), 400),
        raw("Content-Length over the limit", head("Content-Length: 10485761\r\n"), 413),
        // Both framings: hyper reads the body by Transfer-Encoding alone
        // (RFC 9112 §6.3) and drops Content-Length before we see it.
        raw(
            "Content-Length and chunked: chunked wins",
            format!("{}0\r\n\r\n", read_head("Content-Length: 3\r\nTransfer-Encoding: chunked\r\n")),
            200,
        ),
        raw(
            "Content-Length and a malformed chunked body",
            format!("{}zz\r\nabc\r\n0\r\n\r\n", head("Content-Length: 3\r\nTransfer-Encoding: chunked\r\n")),
            400,
        ),
        raw("chunk size not hex", format!("{}zz\r\nabc\r\n0\r\n\r\n", head("Transfer-Encoding: chunked\r\n")), 400),
        raw(
            "chunk size overflowing",
            format!("{}ffffffffffffffffff\r\nabc\r\n0\r\n\r\n", head("Transfer-Encoding: chunked\r\n")),
            400,
        ),
        half_closed("chunked without the last chunk", format!("{}3\r\nabc\r\n", head("Transfer-Encoding: chunked\r\n")), 400),
        half_closed("chunk shorter than its size", format!("{}a\r\nabc", head("Transfer-Encoding: chunked\r\n")), 400),
        raw(
            "chunked over the limit",
            format!("{}A00001\r\n{}\r\n0\r\n\r\n", head("Transfer-Encoding: chunked\r\n"), "x".repeat(0xA00001)),
            413,
        ),
        raw("unknown transfer coding", format!("{}abc", head("Transfer-Encoding: gzip\r\n")), 400),
        raw("chunked not last", format!("{}3\r\nabc\r\n0\r\n\r\n", head("Transfer-Encoding: chunked, gzip\r\n")), 400),
        raw("HTTP/1.0 with chunked", format!("PUT {put} HTTP/1.0\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"), 400),
        raw("bare LF line endings", format!("GET {read} HTTP/1.1\nHost: x\nConnection: close\nPRIVATE-TOKEN: {}\n\n", fx.tokens.revoked), 401),
        raw("garbage request line", "GARBAGE\r\n\r\n", 400),
        // An HTTP/2 client could not read an HTTP/1 answer: hyper closes.
        raw("HTTP/2 preface on HTTP/1", "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", NO_RESPONSE),
        raw("unknown HTTP version", format!("GET {read} HTTP/9.9\r\nHost: x\r\n\r\n"), 400),
        raw("space in the request target", format!("GET {API}/projects/{APP} x HTTP/1.1\r\nHost: x\r\n\r\n"), 400),
        raw("NUL in the request target", format!("GET {API}/projects/\x00 HTTP/1.1\r\nHost: x\r\n\r\n"), 400),
        raw("non-ASCII in the request target", [format!("GET {API}/projects/").as_bytes(), &[0xc3, 0xa9][..], format!(" HTTP/1.1\r\nHost: x\r\nConnection: close\r\nPRIVATE-TOKEN: {}\r\n\r\n", fx.tokens.demo).as_bytes()].concat(), 400),
        raw("150 headers", format!("GET {API}/health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n{}\r\n", (0..150).map(|i| format!("X-H{i}: v\r\n")).collect::<String>()), 431),
        raw("GET with a body: the body is ignored", format!("{}abc", read_head("Content-Length: 3\r\n")), 200),
        half_closed("GET with a short body", format!("{}abc", read_head("Content-Length: 9\r\n")), 400),
    ];
    fx.run("framing", cases);
}

// ----- planted links and special files (I5) -----------------------------------------

fn object_path(data: &Path, project: &str, bytes: &[u8]) -> PathBuf {
    let hash = blake3::hash(bytes).to_hex().to_string();
    data.join(project)
        .join("objects")
        .join(&hash[..2])
        .join(&hash)
}

fn mkfifo(path: &Path) {
    let status = std::process::Command::new("mkfifo")
        .arg(path)
        .status()
        .expect("mkfifo");
    assert!(status.success());
}

#[test]
fn planted_symlinks_hardlinks_and_fifos() {
    let mut fx = Fixture::new("hostile-planted", true);
    let sessions = fx.sessions.take().unwrap();
    let s = &sessions;
    let outside = fx._dir.path().join("outside");
    std::fs::create_dir_all(&outside).unwrap();
    // Same size as the real content, other bytes: whoever reads through a
    // planted link serves these.
    let decoy = b"{\"X\":9}\n";
    assert_eq!(decoy.len(), CONFIG.len());
    let t = fx.tokens.demo.clone();
    let h: &[(&str, &str)] = &[("PRIVATE-TOKEN", &t)];
    let d = [
        ("Cookie", s.demo.cookie.as_str()),
        ("X-CSRF-Token", s.demo.csrf.as_str()),
    ];

    // 1. An object replaced by a symlink to a file outside.
    let nested = object_path(&fx.data, "demo/app.cfg", b"{}");
    std::fs::write(outside.join("decoy2"), b"XX").unwrap();
    std::fs::remove_file(&nested).unwrap();
    std::os::unix::fs::symlink(outside.join("decoy2"), &nested).unwrap();
    // 2. bob's object replaced by a hard link to a file outside.
    let secret = object_path(&fx.data, "bob/secret.cfg", b"bob's");
    std::fs::write(outside.join("decoy5"), b"HARD!").unwrap();
    std::fs::remove_file(&secret).unwrap();
    std::fs::hard_link(outside.join("decoy5"), &secret).unwrap();
    // 3. team-ab's object replaced by a FIFO.
    let fifo_object = object_path(&fx.data, "bob/team-ab.cfg", b"x");
    std::fs::remove_file(&fifo_object).unwrap();
    mkfifo(&fifo_object);
    // 5. A branch folder that is a symlink to a copy outside.
    let copy = outside.join("branch-copy");
    std::fs::create_dir_all(&copy).unwrap();
    for name in ["HEAD", "v0001", "v0002", "v0003"] {
        std::fs::copy(
            fx.data.join("demo/app.cfg/branches/main").join(name),
            copy.join(name),
        )
        .unwrap();
    }
    std::os::unix::fs::symlink(&copy, fx.data.join("demo/app.cfg/branches/evil")).unwrap();
    // 6. A project folder that is a symlink to a project outside.
    let project_copy = outside.join("project-copy");
    copy_tree(&fx.data.join("demo/team-a.cfg"), &project_copy);
    std::os::unix::fs::symlink(&project_copy, fx.data.join("demo/linked.cfg")).unwrap();
    // 7. The object fan-out folder of content about to be written, a
    //    symlink to a folder outside.
    let planted_write = b"written through a planted link\n";
    let target = object_path(&fx.data, "demo/app.cfg", planted_write);
    let fan_outside = outside.join("fan");
    std::fs::create_dir_all(&fan_outside).unwrap();
    std::os::unix::fs::symlink(&fan_outside, target.parent().unwrap()).unwrap();
    // 8. An owner folder that is a symlink to a folder outside: alice's
    //    new projects would be created there.
    let owner_outside = outside.join("owner");
    std::fs::create_dir_all(&owner_outside).unwrap();
    std::os::unix::fs::symlink(&owner_outside, fx.data.join("alice")).unwrap();
    let alice = [
        ("Cookie", s.alice.cookie.as_str()),
        ("X-CSRF-Token", s.alice.csrf.as_str()),
        ("Content-Type", "application/json"),
    ];

    // The daemon trusts its read cache until a writer announces a change;
    // things planted behind its back are met by a fresh daemon.
    fx.server = TestServer::start(&fx.data);
    // 4. A FIFO where a branch's HEAD should be, planted after the start
    //    (whose recovery would replace a broken HEAD) and before any read.
    let release = fx.data.join("demo/app.cfg/branches/release%2F2026.1");
    std::fs::remove_file(release.join("HEAD")).unwrap();
    mkfifo(&release.join("HEAD"));
    let cases = vec![
        get(
            "object is a symlink",
            format!("{API}/projects/{APP}/repository/files/dir%2Fnested.json/raw"),
            h,
            500,
        ),
        get(
            "object is a hard link",
            format!("{API}/projects/bob%2Fsecret.cfg/repository/files/secret.json/raw"),
            &[("PRIVATE-TOKEN", &fx.tokens.bob)],
            500,
        ),
        get(
            "object is a FIFO",
            format!("{API}/projects/bob%2Fteam-ab.cfg/repository/files/x.json/raw"),
            &[("PRIVATE-TOKEN", &fx.tokens.bob)],
            500,
        ),
        get(
            "archive over a symlinked object",
            format!("{API}/projects/{APP}/repository/archive.tar.gz"),
            h,
            500,
        ),
        get(
            "blob that is a hard link",
            format!(
                "{API}/projects/bob%2Fsecret.cfg/repository/blobs/{}/raw",
                &blake3::hash(b"bob's").to_hex()[..40]
            ),
            &[("PRIVATE-TOKEN", &fx.tokens.bob)],
            500,
        ),
        get(
            "HEAD is a FIFO",
            format!("{API}/projects/{APP}/repository/files/config.json/raw?ref=release%2F2026.1"),
            h,
            500,
        ),
        get(
            "branch folder is a symlink: not a branch",
            format!("{API}/projects/{APP}/repository/files/config.json/raw?ref=evil"),
            h,
            404,
        ),
        get(
            "branch folder is a symlink: not listed",
            format!("{API}/projects/{APP}/repository/branches/evil"),
            h,
            404,
        ),
        case(
            "PUT into a symlinked branch folder",
            "PUT",
            format!("{ADMIN}/projects/{APP}/branches/evil/files/x"),
            &d,
            b"x",
            404,
        ),
        get(
            "project folder is a symlink: not a project",
            format!("{API}/projects/linked.cfg/repository/tree"),
            h,
            404,
        ),
        case(
            "PUT into a symlinked project folder",
            "PUT",
            format!("{ADMIN}/projects/linked.cfg/branches/main/files/x"),
            &d,
            b"x",
            404,
        ),
        case(
            "PUT through a symlinked object folder",
            "PUT",
            format!("{ADMIN}/projects/{APP}/branches/main/files/planted.txt"),
            &d,
            planted_write,
            500,
        ),
        case(
            "project created under a symlinked owner folder",
            "POST",
            format!("{ADMIN}/projects"),
            &alice,
            br#"{"name":"new","type":"cfg"}"#,
            500,
        ),
    ];
    fx.run_watching("planted", cases, &[&outside]);
    // Nothing was read from outside either: the decoys never showed up.
    for (path, headers) in [
        (
            format!("{API}/projects/{APP}/repository/files/dir%2Fnested.json/raw"),
            h,
        ),
        (
            format!("{API}/projects/bob%2Fsecret.cfg/repository/files/secret.json/raw"),
            &[("PRIVATE-TOKEN", fx.tokens.bob.as_str())][..],
        ),
    ] {
        let r = fx.server.get(&path, headers);
        assert!(
            !contains(&r.body, b"XX") && !contains(&r.body, b"HARD!"),
            "{path}: {}",
            r.text()
        );
    }
}

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}
