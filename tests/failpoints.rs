//! Every failpoint of `store::failpoint::ALL`, met by real operations: the
//! CLI's `file put`, `rollback` and `token create`, and the daemon's PUT
//! and fingerprint bind. For each failpoint and operation, the n-th time
//! the operation meets the failpoint, for n = 0, 1, … until it runs
//! through: once crashing there and once failing there. After every run:
//!
//! - the store opens and `fsck` is clean (I2, I4);
//! - a crash leaves exactly the old or the new state, whole (I1, I2);
//! - a failure reports failure and leaves the old state; a reported
//!   success leaves the new one (I9);
//! - the next write succeeds (no stale lock, no leftover in the way).
//!
//! Built only with `--features failpoints` (README's test command).

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Output;
use std::time::Duration;

use cfgstore::store::failpoint::{ALL, CRASH_EXIT_CODE};

use crate::util::{
    self, add_user, create_token, json, store_with_project, try_raw_request, Daemon, Login,
    TestDir, PROJECT, V4,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Done,
    Failed,
    Crashed,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Crash,
    Fail,
}

impl Mode {
    /// The `FAILPOINTS` setting that acts on the (skip+1)-th hit of `point`.
    fn config(self, point: &str, skip: usize) -> String {
        let action = match self {
            Mode::Crash => "return(crash)",
            Mode::Fail => "return(EIO)",
        };
        format!("{point}={skip}*off->1*{action}")
    }
}

/// Which failpoints each operation met, for the "every failpoint is
/// exercised" check at the end.
type Met = BTreeMap<&'static str, Vec<&'static str>>;

fn outcome_of(out: &Output, what: &str) -> Outcome {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{what} panicked: {stderr}");
    match out.status.code() {
        Some(0) => Outcome::Done,
        Some(CRASH_EXIT_CODE) => Outcome::Crashed,
        Some(_) => {
            assert!(
                stderr.starts_with("cfgstore: "),
                "{what} failed without a clear message: {stderr}"
            );
            Outcome::Failed
        }
        None => panic!("{what} died of a signal: {:?}", out.status),
    }
}

fn fsck_clean(data: &Path, what: &str) {
    let out = util::run(data, &["fsck"]);
    assert!(
        out.status.success(),
        "{what}: fsck: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Live short_id and history length of PROJECT main: the branch's state.
fn branch_state(data: &Path) -> (String, usize) {
    let history = json(data, &["history", "list", PROJECT, "main"]);
    let branches = json(data, &["branch", "list", PROJECT]);
    let main = branches
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["name"] == "main")
        .expect("main exists");
    (
        main["short_id"].as_str().unwrap().to_string(),
        history.as_array().unwrap().len(),
    )
}

fn cli_with(data: &Path, failpoints: &str, args: &[&str], stdin: Option<&[u8]>) -> Output {
    use std::io::Write;
    let mut cmd = util::cfgstore(data);
    cmd.args(args).env("FAILPOINTS", failpoints);
    match stdin {
        None => cmd.output().unwrap(),
        Some(bytes) => {
            let mut child = cmd
                .stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap();
            // A process that crashed at startup never reads its input.
            let _ = child.stdin.take().unwrap().write_all(bytes);
            child.wait_with_output().unwrap()
        }
    }
}

/// Runs `op` with `point` acting on its 1st, 2nd, … hit until the
/// operation no longer meets it; `check` judges each run. Returns how many
/// hits the operation had.
/// (A failure injected after the commit point, e.g. into the audit
/// record, ends the sweep too: the operation reports success, truthfully.)
fn sweep(point: &'static str, mode: Mode, mut op: impl FnMut(&str) -> Outcome) -> usize {
    for skip in 0..64 {
        if op(&mode.config(point, skip)) == Outcome::Done {
            return skip;
        }
    }
    panic!("{point}: still hit after 64 runs");
}

#[test]
fn cli_operations_survive_a_crash_or_failure_at_every_failpoint() {
    let dir = TestDir::new("failpoints-cli");
    let data = store_with_project(&dir);
    util::put(&data, "base.txt", b"base\n");
    let mut met: Met = BTreeMap::new();
    let mut seq = 0usize;
    for &point in ALL {
        for mode in [Mode::Crash, Mode::Fail] {
            // file put: a new body each run, so old and new states differ.
            let hits = sweep(point, mode, |config| {
                seq += 1;
                let body = util::verifiable_body("put", seq, seq % 300);
                let before = branch_state(&data);
                let out = cli_with(
                    &data,
                    config,
                    &["file", "put", PROJECT, "main", "f.txt"],
                    Some(&body),
                );
                let outcome = outcome_of(&out, &format!("put {config}"));
                fsck_clean(&data, config);
                let after = branch_state(&data);
                let live = util::cfgstore(&data)
                    .args(["file", "get", PROJECT, "main", "f.txt"])
                    .output()
                    .unwrap()
                    .stdout;
                let is_new = live == body;
                match outcome {
                    Outcome::Done => {
                        assert!(is_new, "{config}: put succeeded but f.txt is old");
                        assert_eq!(after.1, before.1 + 1, "{config}");
                    }
                    Outcome::Failed => {
                        assert_eq!(after, before, "{config}: a failed put changed the branch")
                    }
                    Outcome::Crashed => {
                        if is_new {
                            assert_eq!(after.1, before.1 + 1, "{config}");
                        } else {
                            assert_eq!(after, before, "{config}: torn state");
                        }
                    }
                }
                outcome
            });
            if hits > 0 {
                met.entry(point).or_default().push("cli put");
            }
            // The next plain write goes through.
            util::put(&data, "next.txt", format!("{point} {mode:?}\n").as_bytes());

            // rollback to v0001 (the empty branch), from a state that differs.
            sweep(point, mode, |config| {
                seq += 1;
                util::put(
                    &data,
                    "f.txt",
                    format!("before rollback {seq}\n").as_bytes(),
                );
                let before = branch_state(&data);
                let out = cli_with(
                    &data,
                    config,
                    &["rollback", PROJECT, "main", "--to", "v0001", "--yes"],
                    None,
                );
                let outcome = outcome_of(&out, &format!("rollback {config}"));
                fsck_clean(&data, config);
                let after = branch_state(&data);
                let empty = json(&data, &["file", "ls", PROJECT, "main"])
                    .as_array()
                    .unwrap()
                    .is_empty();
                match (outcome, empty) {
                    (Outcome::Done, true) | (Outcome::Crashed, true) => {
                        assert_eq!(after.1, before.1 + 1, "{config}")
                    }
                    (Outcome::Failed, false) | (Outcome::Crashed, false) => {
                        assert_eq!(after, before, "{config}: torn rollback")
                    }
                    (outcome, empty) => {
                        panic!("{config}: rollback {outcome:?} but branch empty={empty}")
                    }
                }
                outcome
            });

            // token create: the token list grows by one, or not at all.
            let tokens = |data: &Path| json(data, &["token", "list"]).as_array().unwrap().len();
            let hits = sweep(point, mode, |config| {
                let before = tokens(&data);
                let out = cli_with(
                    &data,
                    config,
                    &[
                        "token", "create", "--owner", "demo", "--name", "fp", "--json",
                    ],
                    None,
                );
                let outcome = outcome_of(&out, &format!("token create {config}"));
                fsck_clean(&data, config);
                let after = tokens(&data);
                match outcome {
                    Outcome::Done => {
                        assert_eq!(after, before + 1, "{config}");
                        let shown: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
                        assert_eq!(shown["token"].as_str().unwrap().len(), 64);
                    }
                    Outcome::Failed => assert_eq!(after, before, "{config}"),
                    Outcome::Crashed => assert!(after == before || after == before + 1),
                }
                outcome
            });
            if hits > 0 {
                met.entry(point).or_default().push("cli token create");
            }

            // project create, under a new owner each run (new folders).
            let hits = sweep(point, mode, |config| {
                seq += 1;
                let owner = format!("owner{seq}");
                let out = cli_with(
                    &data,
                    config,
                    &["project", "create", &owner, "app", "--type", "cfg"],
                    None,
                );
                let outcome = outcome_of(&out, &format!("project create {config}"));
                fsck_clean(&data, config);
                let id = format!("{owner}/app.cfg");
                let listed = json(&data, &["project", "list"])
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|p| p["owner"] == owner.as_str() && p["id"] == "app.cfg");
                match outcome {
                    Outcome::Done => assert!(listed, "{config}: created but not listed"),
                    Outcome::Failed => assert!(!listed, "{config}: failed but listed"),
                    Outcome::Crashed => {}
                }
                if listed {
                    // Whole: its main branch is there and takes a write.
                    let put = util::run_with_input(&data, &["file", "put", &id, "main", "x"], b"x");
                    assert!(
                        put.status.success(),
                        "{config}: {}",
                        String::from_utf8_lossy(&put.stderr)
                    );
                } else {
                    // Absent entirely: the name can be created again.
                    util::ok(
                        &data,
                        &["project", "create", &owner, "app", "--type", "cfg"],
                    );
                }
                outcome
            });
            if hits > 0 {
                met.entry(point).or_default().push("cli project create");
            }
        }
    }
    // Every failpoint was met by some CLI operation, except the ones only
    // the daemon reaches (none today).
    for &point in ALL {
        assert!(met.contains_key(point), "failpoint {point} was never met");
    }
}

/// The daemon: a PUT through the admin API and a first request binding a
/// fingerprint, each run against a daemon started with the failpoint set.
/// A daemon that crashes (at startup too) is restarted without failpoints
/// for the checks.
#[test]
fn daemon_writes_and_binds_survive_a_crash_or_failure_at_every_failpoint() {
    let dir = TestDir::new("failpoints-daemon");
    let data = store_with_project(&dir);
    add_user(
        &data,
        "ed",
        "correct horse battery",
        &["ROLE_SITEBUILDER_EDITOR__ROOT"],
    );
    let login = {
        let daemon = Daemon::start(&data, dir.path().join("login.log"));
        Login::new(daemon.addr, "ed", "correct horse battery")
    };
    let log = dir.path().join("daemon.log");
    let mut seq = 0usize;
    let mut met: Met = BTreeMap::new();
    for &point in ALL {
        for mode in [Mode::Crash, Mode::Fail] {
            let hits = sweep(point, mode, |config| {
                seq += 1;
                let body = util::verifiable_body("http", seq, seq % 300);
                let before = branch_state(&data);
                let Ok(mut daemon) = Daemon::try_start_with(&data, &log, &[("FAILPOINTS", config)])
                else {
                    // Crashed while starting: the write never began.
                    fsck_clean(&data, config);
                    assert_eq!(branch_state(&data), before, "{config}");
                    return Outcome::Crashed;
                };
                let path = format!(
                    "/site-builder/api/projects/{}/branches/main/files/f.txt",
                    PROJECT.replace('/', "%2F")
                );
                let response = send_raw(daemon.addr, "PUT", &path, &login, &body);
                let outcome = match &response {
                    Some(r) if r.status == 200 => Outcome::Done,
                    Some(r) => {
                        assert!(r.status >= 500, "{config}: PUT answered {}", r.status);
                        assert!(!r.text().contains("panicked"));
                        Outcome::Failed
                    }
                    None => {
                        let status = daemon.exited(Duration::from_secs(5));
                        assert_eq!(
                            status.and_then(|s| s.code()),
                            Some(CRASH_EXIT_CODE),
                            "{config}: no answer, yet the daemon did not crash"
                        );
                        Outcome::Crashed
                    }
                };
                drop(daemon);
                fsck_clean(&data, config);
                let after = branch_state(&data);
                let live = util::cfgstore(&data)
                    .args(["file", "get", PROJECT, "main", "f.txt"])
                    .output()
                    .unwrap()
                    .stdout;
                match (outcome, live == body) {
                    (Outcome::Done, true) | (Outcome::Crashed, true) => {
                        assert_eq!(after.1, before.1 + 1, "{config}")
                    }
                    (Outcome::Failed, false) | (Outcome::Crashed, false) => {
                        assert_eq!(after, before, "{config}: torn state")
                    }
                    (outcome, new) => panic!("{config}: PUT {outcome:?} but new={new}"),
                }
                outcome
            });
            if hits > 0 {
                met.entry(point).or_default().push("daemon put");
            }

            // A token that requires a fingerprint; its first request binds.
            sweep(point, mode, |config| {
                seq += 1;
                let (id, token) = create_token(&data, "demo", &["--fingerprint"]);
                let Ok(mut daemon) = Daemon::try_start_with(&data, &log, &[("FAILPOINTS", config)])
                else {
                    fsck_clean(&data, config);
                    return Outcome::Crashed;
                };
                let url = format!(
                    "{V4}/projects/{}/repository/branches",
                    PROJECT.replace('/', "%2F")
                );
                let instance = format!("host-{seq}");
                let request = format!(
                        "GET {url} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nPRIVATE-TOKEN: {token}\r\nX-Instance-Id: {instance}\r\n\r\n"
                    );
                let outcome = match try_raw_request(daemon.addr, request.as_bytes()) {
                    Ok(r) if r.status == 200 => Outcome::Done,
                    Ok(r) => {
                        assert!(
                            r.status >= 500,
                            "{config}: bind answered {} {}",
                            r.status,
                            r.text()
                        );
                        Outcome::Failed
                    }
                    Err(_) => {
                        let status = daemon.exited(Duration::from_secs(5));
                        assert_eq!(
                            status.and_then(|s| s.code()),
                            Some(CRASH_EXIT_CODE),
                            "{config}"
                        );
                        Outcome::Crashed
                    }
                };
                drop(daemon);
                fsck_clean(&data, config);
                let view = json(&data, &["token", "show", &id]);
                let bound = view["fingerprint_bound"].as_bool().unwrap();
                match outcome {
                    Outcome::Done => assert!(bound, "{config}: bind answered 200 but was lost"),
                    Outcome::Failed => assert!(!bound, "{config}: bind failed but stuck"),
                    Outcome::Crashed => {}
                }
                if bound {
                    // Bound to this request's id, not another.
                    let daemon = Daemon::start(&data, dir.path().join("check.log"));
                    for (other, want) in [("someone-else", 401), (instance.as_str(), 200)] {
                        let r = daemon
                            .get(&url, &[("PRIVATE-TOKEN", &token), ("X-Instance-Id", other)]);
                        assert_eq!(r.status, want, "{config}: {other}");
                    }
                }
                outcome
            });
        }
    }
    for point in [
        "fs.temp.synced",
        "fs.rename.after",
        "commit.published",
        "commit.head",
    ] {
        assert!(met.contains_key(point), "daemon never met {point}: {met:?}");
    }
}

/// A PUT with the session cookie and CSRF token; `None` when the
/// connection ended without an answer.
fn send_raw(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    login: &Login,
    body: &[u8],
) -> Option<util::Resp> {
    let mut bytes = format!(
        "{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nCookie: {}\r\nX-CSRF-Token: {}\r\nContent-Length: {}\r\n\r\n",
        login.cookie,
        login.csrf,
        body.len()
    )
    .into_bytes();
    bytes.extend_from_slice(body);
    try_raw_request(addr, &bytes).ok()
}

/// A CLI revoke whose change marker cannot be written still reaches the
/// running daemon: the revoke reports success (it is durable) with a
/// warning, and the daemon refuses the token within its pointer lifetime
/// (one second), not only at the next change.
#[test]
fn a_revoke_whose_marker_write_fails_is_in_force_within_a_second() {
    let dir = TestDir::new("failpoints-marker");
    let data = store_with_project(&dir);
    let (id, token) = create_token(&data, "demo", &[]);
    let daemon = Daemon::start(&data, dir.path().join("daemon.log"));
    let url = format!(
        "{V4}/projects/{}/repository/branches",
        PROJECT.replace('/', "%2F")
    );
    assert_eq!(daemon.get(&url, &[("PRIVATE-TOKEN", &token)]).status, 200);
    // Revoke writes the token record (first temp file), then the marker.
    let out = cli_with(
        &data,
        "fs.temp.before=1*off->1*return(EIO)",
        &["token", "revoke", &id, "--yes"],
        None,
    );
    assert_eq!(outcome_of(&out, "revoke"), Outcome::Done);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("WARN"), "no warning: {stderr}");
    let revoked = std::time::Instant::now();
    loop {
        let status = daemon.get(&url, &[("PRIVATE-TOKEN", &token)]).status;
        if status == 401 {
            break;
        }
        assert_eq!(status, 200);
        assert!(
            revoked.elapsed() < Duration::from_millis(1500),
            "the daemon still accepts a revoked token"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A put whose change marker cannot be written reaches the running daemon
/// within a second too: the daemon checks its pointers against the store
/// once they are a second old (`store/cache/renew.rs`) and sees the
/// branch's new HEAD. Until then, and while nothing changes, it answers as
/// before.
#[test]
fn a_put_whose_marker_write_fails_is_in_force_within_a_second() {
    let dir = TestDir::new("failpoints-put-marker");
    let data = store_with_project(&dir);
    util::put(&data, "app.json", b"{\"v\": 1}");
    let (_, token) = create_token(&data, "demo", &[]);
    let daemon = Daemon::start(&data, dir.path().join("daemon.log"));
    let url = format!(
        "{V4}/projects/{}/repository/files/app.json/raw?ref=main",
        PROJECT.replace('/', "%2F")
    );
    let read = || {
        let r = daemon.get(&url, &[("PRIVATE-TOKEN", &token)]);
        assert_eq!(r.status, 200, "{}", r.text());
        r.text()
    };
    // Seconds of reads with nothing changed: the same answer throughout.
    for _ in 0..6 {
        assert_eq!(read(), "{\"v\": 1}");
        std::thread::sleep(Duration::from_millis(400));
    }
    // The marker is the put's last temporary file: failing an earlier one
    // fails the put and changes nothing; failing the marker's does not.
    // (New contents each time, so every attempt writes the same files.)
    let mut done = None;
    for skip in 0..30 {
        let failing = format!("fs.temp.before={skip}*off->1*return(EIO)");
        let args = ["file", "put", PROJECT, "main", "app.json"];
        let body = format!("{{\"v\": 2, \"try\": {skip}}}");
        let out = cli_with(&data, &failing, &args, Some(body.as_bytes()));
        if outcome_of(&out, "put") == Outcome::Done {
            done = Some((out, body));
            break;
        }
        assert_eq!(read(), "{\"v\": 1}", "a failed put changed the file");
    }
    let (out, body) = done.expect("the put never succeeded");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("change marker"),
        "the put succeeded without the marker failing: {stderr}"
    );
    let put = std::time::Instant::now();
    while read() != body {
        assert!(
            put.elapsed() < Duration::from_millis(1500),
            "the daemon still serves the old file"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A CLI command stopped while it holds a branch's lock (here: paused at
/// `commit.locked`): the daemon's writes to that branch answer 503 with
/// `Retry-After` once `lock_timeout` passes, its reads are not slowed at
/// all, other branches take writes, and once the CLI is gone writes work.
#[test]
fn a_cli_stopped_holding_the_lock_makes_writes_503_and_leaves_reads_alone() {
    let dir = TestDir::new("failpoints-lock");
    let data = store_with_project(&dir);
    util::ok(&data, &["branch", "create", PROJECT, "other"]);
    util::put(&data, "a.txt", b"before\n");
    add_user(
        &data,
        "ed",
        "correct horse battery",
        &["ROLE_SITEBUILDER_EDITOR__ROOT"],
    );
    let (_, token) = create_token(&data, "demo", &[]);
    let daemon = Daemon::start_with(
        &data,
        dir.path().join("daemon.log"),
        &[("CFGSTORE_LOCK_TIMEOUT", "1s")],
    );
    let login = Login::new(daemon.addr, "ed", "correct horse battery");
    let mut cli = util::cfgstore(&data)
        .args([
            "file",
            "put",
            PROJECT,
            "main",
            "a.txt",
            "--from",
            "/dev/null",
        ])
        .env("FAILPOINTS", "commit.locked=pause")
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let lock = data.join("demo/app.cfg/branches/main/lock");
    // Wait until the CLI holds the lock.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !lock_is_held(&lock) {
        assert!(
            std::time::Instant::now() < deadline,
            "the CLI never took the lock"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let repo = PROJECT.replace('/', "%2F");
    let files =
        |branch: &str| format!("/site-builder/api/projects/{repo}/branches/{branch}/files/a.txt");
    let started = std::time::Instant::now();
    let r = send_raw(
        daemon.addr,
        "PUT",
        &files("main"),
        &login,
        b"from the daemon\n",
    )
    .unwrap();
    assert_eq!(r.status, 503, "{}", r.text());
    assert_eq!(r.header("retry-after"), Some("1"));
    assert!(started.elapsed() >= Duration::from_millis(950));
    // Reads are served from the live generation without the lock.
    let raw = format!("{V4}/projects/{repo}/repository/files/a.txt/raw?ref=main");
    for _ in 0..20 {
        let started = std::time::Instant::now();
        let r = daemon.get(&raw, &[("PRIVATE-TOKEN", &token)]);
        assert_eq!((r.status, r.text().as_str()), (200, "before\n"));
        assert!(
            started.elapsed() < Duration::from_millis(250),
            "a read waited for the lock"
        );
    }
    // Another branch is not held.
    let r = send_raw(daemon.addr, "PUT", &files("other"), &login, b"elsewhere\n").unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    // The CLI dies holding the lock; flock goes with it.
    cli.kill().unwrap();
    cli.wait().unwrap();
    let r = send_raw(
        daemon.addr,
        "PUT",
        &files("main"),
        &login,
        b"from the daemon\n",
    )
    .unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    fsck_clean(&data, "after the stopped CLI");
}

/// Whether another process holds the flock on `path`.
fn lock_is_held(path: &Path) -> bool {
    let Ok(file) = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
    else {
        return false;
    };
    match fs2::FileExt::try_lock_exclusive(&file) {
        Ok(()) => {
            let _ = fs2::FileExt::unlock(&file);
            false
        }
        Err(_) => true,
    }
}

/// A CLI error names the OS error once: `Error`'s `Display` already ends
/// with it, so it has no `source()` for anyhow's `{:#}` to print again.
#[test]
fn a_cli_error_names_the_os_error_once() {
    let dir = TestDir::new("failpoints-message");
    let data = store_with_project(&dir);
    let out = cli_with(
        &data,
        "fs.temp.synced=return(ENOSPC)",
        &["file", "put", PROJECT, "main", "f.txt"],
        Some(b"x"),
    );
    assert_eq!(outcome_of(&out, "put"), Outcome::Failed);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        stderr.matches("No space left on device").count(),
        1,
        "{stderr}"
    );
}
