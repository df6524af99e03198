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
//! One server per group, so the whole suite stays fast. This file holds
//! the runner and the fixture; the cases are in `read_api.rs`,
//! `admin_api.rs` and `framing.rs` (sessions, raw HTTP, planted files).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::util::{
    add_user, create_token, ok, raw_exchange, raw_request, run_with_input, Head, Login, Resp,
    TestDir, TestServer, API, NO_RESPONSE, V4,
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
            // No Content-Length without a body, as most clients send a GET.
            let head = Head {
                method,
                path,
                headers,
                length: !body.is_empty(),
            };
            raw_request(addr, &head.with_body(addr, body))
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

/// Stores bytes as they are (`--no-validate`): the fixture's contents are
/// markers to look for, not configuration.
fn put_cli(data: &Path, project: &str, path: &str, bytes: &[u8]) {
    let args = ["file", "put", project, "main", path, "--no-validate"];
    let out = run_with_input(data, &args, bytes);
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

mod admin_api;
mod framing;
mod read_api;
