//! I7: no secret at rest in clear, none in any log. One scenario uses
//! every kind of secret the store handles: tokens (made by the CLI and the
//! admin API, with and without a bound instance id, revoked), passwords
//! (right, wrong, changed), session ids, CSRF tokens and instance ids,
//! with the daemon logging JSON at `trace`. Then every byte of the data
//! dir, of a backup, of the daemon's log and of every CLI output (but the
//! one place a token is shown, once) is searched for each of them.

use std::path::Path;
use std::process::Output;

use crate::util::{self, run_with_input, send, Daemon, Login, TestDir, API};

/// A fresh random string with a recognisable prefix.
fn secret(prefix: &str) -> String {
    format!(
        "{prefix}-{}",
        &cfgstore::auth::new_secret().expect("random bytes")[..24]
    )
}

/// Runs the CLI and keeps what it printed for the search.
struct Cli<'a> {
    data: &'a Path,
    outputs: Vec<(String, Vec<u8>)>,
}

impl Cli<'_> {
    fn run(&mut self, args: &[&str], stdin: &[u8]) -> Output {
        let out = run_with_input(self.data, args, stdin);
        assert!(
            out.status.success(),
            "cfgstore {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        self.outputs
            .push((format!("stdout of {args:?}"), out.stdout.clone()));
        self.outputs
            .push((format!("stderr of {args:?}"), out.stderr.clone()));
        out
    }

    /// `token create`: its stdout is the one place the token is shown,
    /// so only its stderr joins the search.
    fn create_token(&mut self, owner: &str, extra: &[&str]) -> (String, String) {
        let mut args = vec![
            "token", "create", "--owner", owner, "--name", "erp", "--json",
        ];
        args.extend_from_slice(extra);
        let out = run_with_input(self.data, &args, b"");
        assert!(out.status.success());
        self.outputs
            .push((format!("stderr of {args:?}"), out.stderr.clone()));
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        (
            v["id"].as_str().unwrap().to_string(),
            v["token"].as_str().unwrap().to_string(),
        )
    }
}

fn login_body(user: &str, password: &str) -> Vec<u8> {
    serde_json::json!({ "username": user, "password": password })
        .to_string()
        .into_bytes()
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

/// Every regular file under `dir`, read as bytes.
fn files_under(dir: &Path) -> Vec<(String, Vec<u8>)> {
    walkdir::WalkDir::new(dir)
        .into_iter()
        .map(|e| e.unwrap())
        .filter(|e| e.file_type().is_file())
        .map(|e| {
            (
                e.path().display().to_string(),
                std::fs::read(e.path()).unwrap(),
            )
        })
        .collect()
}

#[test]
fn no_secret_is_at_rest_in_clear_or_in_any_log() {
    let dir = TestDir::new("secrets");
    let data = dir.data();
    let mut cli = Cli {
        data: &data,
        outputs: Vec::new(),
    };
    let demo_pw = secret("pw-demo");
    let alice_pw = secret("pw-alice");
    let alice_pw2 = secret("pw-alice-new");
    let wrong_pw = secret("pw-wrong");
    let misplaced_pw = secret("pw-in-the-user-field");
    let instance = secret("instance");
    let other_instance = secret("instance-other");
    let ignored_instance = secret("instance-ignored");
    // A token-shaped string that was never issued.
    let unknown_token = cfgstore::auth::new_secret().unwrap();

    cli.run(&["init", "--example"], b"");
    cli.run(
        &["user", "add", "demo", "--password-stdin"],
        format!("{demo_pw}\n").as_bytes(),
    );
    cli.run(
        &["user", "add", "alice", "--password-stdin"],
        format!("{alice_pw}\n").as_bytes(),
    );
    let (_, bound_token) = cli.create_token("demo", &["--fingerprint"]);
    let (plain_id, plain_token) = cli.create_token("demo", &[]);

    let log_path = dir.path().join("daemon.log");
    let daemon = Daemon::start_with(
        &data,
        log_path.clone(),
        &[("CFGSTORE_LOG", "trace"), ("CFGSTORE_LOG_FORMAT", "json")],
    );
    let addr = daemon.addr;
    let branches = format!("{API}/projects/b2b-cnc.erp-config/repository/branches");
    let read = |token: &str, instance: Option<&str>| {
        let mut headers = vec![("PRIVATE-TOKEN", token)];
        if let Some(i) = instance {
            headers.push(("X-Instance-Id", i));
        }
        daemon.get(&branches, &headers).status
    };

    // Tokens bound to an instance id, and not.
    assert_eq!(read(&bound_token, None), 401, "the instance id is required");
    assert_eq!(read(&bound_token, Some(&instance)), 200, "binds");
    assert_eq!(read(&bound_token, Some(&instance)), 200);
    assert_eq!(read(&bound_token, Some(&other_instance)), 401);
    assert_eq!(read(&plain_token, Some(&ignored_instance)), 200);
    assert_eq!(read(&unknown_token, None), 401);
    // In the query string too, where GitLab clients may put it.
    let r = daemon.get(&format!("{branches}?private_token={unknown_token}"), &[]);
    assert_eq!(r.status, 401);

    // A request hyper cannot parse: the connection ends in an error,
    // which is logged at debug level (proof the log is verbose).
    let garbage = util::raw_request(addr, b"NOT HTTP\r\n\r\n");
    assert_eq!(garbage.status, 400);

    // Passwords and sessions.
    let failed = send(
        addr,
        "POST",
        "/site-builder/api/user/login",
        &[("Content-Type", "application/json")],
        &login_body("demo", &wrong_pw),
    );
    assert_eq!(failed.status, 401);
    // A password typed into the user name field, a classic.
    let misplaced = send(
        addr,
        "POST",
        "/site-builder/api/user/login",
        &[("Content-Type", "application/json")],
        &login_body(&misplaced_pw, "demo"),
    );
    assert_eq!(misplaced.status, 401);
    let demo = Login::new(addr, "demo", &demo_pw);
    assert_eq!(demo.send(addr, "GET", "/user/me", b"").status, 200);
    let no_csrf = send(
        addr,
        "POST",
        "/site-builder/api/tokens",
        &[("Cookie", &demo.cookie)],
        br#"{"name":"api"}"#,
    );
    assert_eq!(no_csrf.status, 403, "unsafe request without CSRF token");
    let created = demo.send(
        addr,
        "POST",
        "/tokens",
        br#"{"name":"api","fingerprint_required":false}"#,
    );
    assert_eq!(created.status, 201, "{}", created.text());
    let api_token = created.json()["token"].as_str().unwrap().to_string();
    let api_token_id = created.json()["id"].as_str().unwrap().to_string();
    assert_eq!(read(&api_token, None), 200);
    let revoked = demo.send(addr, "DELETE", &format!("/tokens/{api_token_id}"), b"");
    assert!(revoked.status < 300, "{}", revoked.text());
    assert_eq!(read(&api_token, None), 401, "revoked by the API");

    let alice = Login::new(addr, "alice", &alice_pw);
    assert_eq!(alice.send(addr, "GET", "/user/me", b"").status, 200);
    cli.run(
        &["user", "passwd", "alice", "--password-stdin"],
        format!("{alice_pw2}\n").as_bytes(),
    );
    assert_eq!(
        alice.send(addr, "GET", "/user/me", b"").status,
        401,
        "a password change ends the sessions"
    );
    let old = send(
        addr,
        "POST",
        "/site-builder/api/user/login",
        &[("Content-Type", "application/json")],
        &login_body("alice", &alice_pw),
    );
    assert_eq!(old.status, 401, "the old password no longer works");
    // A form login, with the new password.
    let form = send(
        addr,
        "POST",
        "/site-builder/api/user/login",
        &[("Content-Type", "application/x-www-form-urlencoded")],
        format!("username=alice&password={alice_pw2}").as_bytes(),
    );
    assert_eq!(form.status, 200);
    let alice2 = Login::new(addr, "alice", &alice_pw2);
    assert_eq!(alice2.send(addr, "POST", "/user/logout", b"").status, 200);
    assert_eq!(alice2.send(addr, "GET", "/user/me", b"").status, 401);

    // The CLI's view of it all, and a revoke from the CLI.
    cli.run(&["token", "list", "--json"], b"");
    cli.run(&["token", "show", &plain_id, "--json"], b"");
    cli.run(&["token", "revoke", &plain_id, "--yes"], b"");
    assert_eq!(read(&plain_token, None), 401, "revoked by the CLI");
    cli.run(&["user", "list", "--json"], b"");
    cli.run(&["audit", "--json", "--limit", "1000"], b"");
    cli.run(&["audit", "--limit", "1000"], b"");
    let backup = dir.path().join("backup");
    cli.run(&["backup", backup.to_str().unwrap()], b"");
    cli.run(&["fsck"], b"");

    assert!(daemon.stop().success());
    let log = std::fs::read(&log_path).unwrap();
    let log_text = String::from_utf8_lossy(&log);
    assert!(
        log_text.contains("\"level\":\"DEBUG\""),
        "the log is verbose: {log_text}"
    );
    assert!(log_text.contains("\"route\""), "the log has request lines");

    let session_ids: Vec<String> = [&demo, &alice, &alice2]
        .iter()
        .map(|l| l.cookie.split_once('=').unwrap().1.to_string())
        .collect();
    let form_cookie = form.header("set-cookie").unwrap();
    let form_session = form_cookie
        .split(';')
        .next()
        .unwrap()
        .split_once('=')
        .unwrap()
        .1
        .to_string();
    let csrf: Vec<String> = [&demo, &alice, &alice2]
        .iter()
        .map(|l| l.csrf.clone())
        .chain([form.json()["csrf_token"].as_str().unwrap().to_string()])
        .collect();
    let mut secrets: Vec<(&str, String)> = vec![
        ("token bound to an instance", bound_token),
        ("plain token", plain_token),
        ("API token", api_token),
        ("never-issued token", unknown_token),
        ("demo's password", demo_pw),
        ("alice's password", alice_pw),
        ("alice's new password", alice_pw2),
        ("a wrong password", wrong_pw),
        ("a password typed as a user name", misplaced_pw),
        ("instance id", instance),
        ("other instance id", other_instance),
        ("ignored instance id", ignored_instance),
        ("form session id", form_session),
    ];
    secrets.extend(session_ids.into_iter().map(|s| ("session id", s)));
    secrets.extend(csrf.into_iter().map(|s| ("CSRF token", s)));

    let mut haystacks = files_under(&data);
    haystacks.extend(files_under(&backup));
    assert!(haystacks.len() > 10, "the data dir was searched");
    haystacks.push(("the daemon's log".into(), log));
    haystacks.extend(cli.outputs);
    let mut found = Vec::new();
    for (what, secret) in &secrets {
        assert!(secret.len() >= 16);
        for (place, bytes) in &haystacks {
            if contains(bytes, secret) {
                found.push(format!("{what} in {place}"));
            }
        }
    }
    assert!(found.is_empty(), "secrets in clear:\n{}", found.join("\n"));
}
