//! Syscall faults injected with strace into the daemon and the CLI: every
//! failed request is clean, every success is true.

use super::*;

/// What a fault test looks at before and after each attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
struct State {
    history: usize,
    short_id: String,
    file: String,
    tokens: usize,
    /// `.cfgstore/changes`, the best-effort cache-invalidation marker.
    marker: String,
}

fn state(data: &Path) -> State {
    let history = json(data, &["history", "list", PROJECT, "main"]);
    let branch = json(data, &["branch", "list", PROJECT]);
    State {
        history: history.as_array().unwrap().len(),
        short_id: branch[0]["short_id"]
            .as_str()
            .or(branch[0]["commit"]["short_id"].as_str())
            .unwrap_or_default()
            .to_string(),
        file: String::from_utf8_lossy(
            &run(data, &["file", "get", PROJECT, "main", "a.txt"]).stdout,
        )
        .into_owned(),
        tokens: json(data, &["token", "list"]).as_array().unwrap().len(),
        marker: std::fs::read_to_string(data.join(".cfgstore/changes")).unwrap_or_default(),
    }
}

/// The syscalls strace is told about for one fault (`rename` is whichever
/// of the three the libc uses).
fn syscall_set(syscall: &str) -> &str {
    match syscall {
        "rename" => "rename,renameat,renameat2",
        other => other,
    }
}

/// strace attached to a running process; detached (SIGINT) when dropped.
struct Tracer {
    child: std::process::Child,
}

impl Tracer {
    fn attach(pid: u32, syscall: &str, errno: &str, n: usize, out: &Path) -> Tracer {
        let set = syscall_set(syscall);
        let err = out.with_extension("err");
        let child = Command::new("strace")
            .args(["-f", "-y", "-p", &pid.to_string(), "-o"])
            .arg(out)
            .args([
                "-e",
                &format!("trace={set}"),
                "-e",
                &format!("inject={set}:error={errno}:when={n}"),
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&err).unwrap())
            .spawn()
            .expect("spawn strace");
        let tracer = Tracer { child };
        let deadline = Instant::now() + Duration::from_secs(10);
        while !std::fs::read_to_string(&err)
            .unwrap_or_default()
            .contains("attached")
        {
            assert!(
                Instant::now() < deadline,
                "strace did not attach: {}",
                std::fs::read_to_string(&err).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        tracer
    }
}

impl Drop for Tracer {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-INT", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
    }
}

/// How many calls strace failed on purpose.
fn injected(trace: &Path) -> Vec<String> {
    std::fs::read_to_string(trace)
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains("(INJECTED)"))
        .map(str::to_string)
        .collect()
}

/// Whether the state after an attempt is the operation's new state.
type IsNew = Box<dyn Fn(&State, &State) -> bool>;

/// The write is in: one more version, holding `body`; tokens as they were.
fn saved(body: String) -> IsNew {
    Box::new(move |b: &State, a: &State| {
        a.history == b.history + 1 && a.file == body && a.tokens == b.tokens
    })
}

/// The rollback is in: one more version, at `target`'s state.
fn rolled_back(target: Option<String>) -> IsNew {
    Box::new(move |b: &State, a: &State| {
        a.history == b.history + 1 && Some(&a.short_id) == target.as_ref() && a.tokens == b.tokens
    })
}

/// One attempt's outcome, as the client (or operator) saw it.
struct Attempt {
    /// 2xx / exit 0.
    succeeded: bool,
    /// Status or exit code plus message, for failure reports.
    answer: String,
    /// What the program said about the failure (daemon log lines written
    /// during the attempt, or the CLI's stderr).
    said: String,
    injected: Vec<String>,
}

/// Checks one attempt against I9 and I2/I4: a failure is reported as one
/// (5xx, nonzero exit), leaves the old state (or, when only the audit record
/// or the final output failed, the new state, saying so), fsck stays clean;
/// a success with an injected fault is a success only where the failed step
/// is by design best-effort (the cache marker; an optional lookup's open;
/// the audit record of a change already durable, which must be reported).
fn judge(
    what: &str,
    syscall: &str,
    n: usize,
    data: &Path,
    before: &State,
    attempt: &Attempt,
    is_new: &dyn Fn(&State, &State) -> bool,
) {
    let after = state(data);
    let context = format!(
        "{what} with {syscall} failing at call {n} -> {}; injected {:?}; said {:?}",
        attempt.answer, attempt.injected, attempt.said
    );
    if attempt.succeeded {
        assert!(
            is_new(before, &after),
            "{context}: success but the change is not there: {before:?} -> {after:?}"
        );
        // The audit record is appended after the change is durable: its
        // failure is logged and the answer stays the truthful success.
        let audit_only = !attempt.injected.is_empty()
            && attempt.injected.iter().all(|l| l.contains("audit.log"))
            && attempt.said.contains("audit trail");
        if !attempt.injected.is_empty() && syscall != "openat" && !audit_only {
            assert_eq!(
                after.marker, before.marker,
                "{context}: a failed {syscall} was swallowed outside the best-effort cache marker"
            );
        }
    } else {
        let explained = attempt.said.contains("audit") || attempt.said.contains("stdout");
        assert!(
            after == *before
                || (explained
                    && is_new(
                        before,
                        &State {
                            marker: after.marker.clone(),
                            ..after.clone()
                        }
                    )),
            "{context}: failed, but the state changed: {before:?} -> {after:?}"
        );
        // Only the marker may differ from `before` when the state is old.
    }
    assert_fsck_clean(data, &context);
}

fn full_grid() -> bool {
    std::env::var_os("CFGSTORE_FAULTS_FULL_GRID").is_some()
}

/// The faults of the grid: (syscall, errno).
fn faults(cli: bool) -> Vec<(&'static str, &'static str)> {
    let mut f = vec![
        ("fsync", "EIO"),
        ("fdatasync", "EIO"),
        ("rename", "EIO"),
        ("openat", "EMFILE"),
    ];
    // `write` is for the CLI only: in the daemon it would also fail tokio's
    // eventfd wake-ups, a fault no kernel produces (the disk-full test
    // covers the daemon's ENOSPC for real).
    if cli {
        f.push(("write", "ENOSPC"));
    }
    if full_grid() {
        f.push(("fsync", "ENOSPC"));
        f.push(("rename", "ENOSPC"));
        f.push(("openat", "ENOSPC"));
        if cli {
            f.push(("write", "EIO"));
        }
    }
    f
}

const MAX_CALLS: usize = 150;

#[test]
fn syscall_faults_fail_requests_cleanly() {
    if !have("strace") {
        return skip(
            "syscall_faults_fail_requests_cleanly",
            "strace is not installed (apt-get install strace)",
        );
    }
    let dir = TestDir::new("strace");
    let data = store_with_project(&dir);
    put(&data, "a.txt", b"first\n");
    put(&data, "a.txt", b"second\n");
    add_user(&data, "admin", PASSWORD, &[ROOT_ROLE]);
    let log = dir.path().join("daemon.log");
    let daemon = Daemon::start(&data, log.clone());
    let login = Login::new(daemon.addr, "admin", PASSWORD);
    // Can we trace at all (ptrace may be forbidden in a container)?
    {
        let probe = Command::new("strace")
            .args(["-o", "/dev/null", "true"])
            .output()
            .unwrap();
        if !probe.status.success() {
            return skip(
                "syscall_faults_fail_requests_cleanly",
                &format!(
                    "strace cannot trace here: {}",
                    String::from_utf8_lossy(&probe.stderr)
                ),
            );
        }
    }
    let started = Instant::now();
    let trace = dir.path().join("trace.txt");
    let mut seq = 0;
    let mut cases = 0;
    // Rollbacks go to v0002, the state with a.txt = "first".
    let target = json(&data, &["history", "list", PROJECT, "main"])
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h["version"] == "v0002")
        .and_then(|h| h["short_id"].as_str())
        .map(str::to_string);
    assert!(target.is_some(), "v0002 in the history");

    // The daemon: PUT and rollback over the admin API.
    for op in ["PUT", "rollback"] {
        for (syscall, errno) in faults(false) {
            for n in 1..=MAX_CALLS {
                assert!(n < MAX_CALLS, "{op} never succeeded under {syscall}");
                seq += 1;
                let body = format!("body {seq}\n");
                if op == "rollback" {
                    // A rollback to the state the branch has changes nothing:
                    // give every attempt a write to undo.
                    let setup = admin(
                        daemon.addr,
                        &login,
                        "PUT",
                        &format!("{ADMIN_FILES}/files/a.txt"),
                        format!("undo {seq}\n").as_bytes(),
                    );
                    assert_eq!(setup.map(|a| a.0), Some(200), "setup write");
                }
                let before = state(&data);
                let log_start = std::fs::metadata(&log).unwrap().len() as usize;
                let tracer = Tracer::attach(daemon.pid(), syscall, errno, n, &trace);
                let answer = match op {
                    "PUT" => admin(
                        daemon.addr,
                        &login,
                        "PUT",
                        &format!("{ADMIN_FILES}/files/a.txt"),
                        body.as_bytes(),
                    ),
                    _ => admin(
                        daemon.addr,
                        &login,
                        "POST",
                        &format!("{ADMIN_FILES}/rollback?to=v0002"),
                        b"",
                    ),
                };
                drop(tracer);
                let said = std::fs::read_to_string(&log).unwrap()[log_start..].to_string();
                let attempt = Attempt {
                    succeeded: answer.as_ref().is_some_and(|a| a.0 == 200),
                    answer: format!("{answer:?}"),
                    said,
                    injected: injected(&trace),
                };
                if !attempt.succeeded {
                    // Never a client error for a server fault, never silence.
                    let status = answer.as_ref().map(|a| a.0);
                    assert!(
                        status.is_some_and(|s| s >= 500),
                        "{op} with {syscall} failing at call {n}: {status:?}"
                    );
                }
                let is_new: IsNew = match op {
                    "PUT" => saved(body.clone()),
                    _ => rolled_back(target.clone()),
                };
                judge(op, syscall, n, &data, &before, &attempt, &*is_new);
                assert_eq!(
                    health(&daemon),
                    Some(200),
                    "{op}/{syscall}/{n}: daemon died"
                );
                cases += 1;
                if attempt.succeeded && attempt.injected.is_empty() {
                    break;
                }
            }
        }
    }

    // The CLI: token create and file put (rollback too in the full grid:
    // it shares the daemon's commit path, tested above).
    let cli_ops: &[&str] = if full_grid() {
        &["token create", "file put", "rollback"]
    } else {
        &["token create", "file put"]
    };
    for &op in cli_ops {
        for (syscall, errno) in faults(true) {
            for n in 1..=MAX_CALLS {
                assert!(n < MAX_CALLS, "{op} never succeeded under {syscall}");
                seq += 1;
                let body = format!("cli body {seq}\n");
                if op == "rollback" {
                    // As above: something for the rollback to undo.
                    put(&data, "a.txt", format!("undo {seq}\n").as_bytes());
                }
                std::fs::write(dir.path().join("body"), &body).unwrap();
                let before = state(&data);
                let set = syscall_set(syscall);
                let mut cmd = Command::new("strace");
                cmd.args(["-f", "-y", "-o"])
                    .arg(&trace)
                    .args([
                        "-e",
                        &format!("trace={set}"),
                        "-e",
                        &format!("inject={set}:error={errno}:when={n}"),
                    ])
                    .arg(util::bin())
                    .arg("--data")
                    .arg(&data)
                    .env_remove("CFGSTORE_DATA")
                    // cargo's library path makes the loader probe ~130
                    // files before `main`: faults are for cfgstore's calls.
                    .env_remove("LD_LIBRARY_PATH")
                    .stdin(Stdio::null());
                match op {
                    "token create" => {
                        cmd.args(["token", "create", "--owner", "demo", "--name", "t"]);
                    }
                    "file put" => {
                        cmd.args(["file", "put", PROJECT, "main", "a.txt", "--from"])
                            .arg(dir.path().join("body"));
                    }
                    _ => {
                        cmd.args(["rollback", PROJECT, "main", "--to", "v0002", "--yes"]);
                    }
                }
                let out = cmd.output().unwrap();
                let attempt = Attempt {
                    succeeded: out.status.success(),
                    answer: format!(
                        "{} {}",
                        out.status,
                        String::from_utf8_lossy(&out.stdout).trim()
                    ),
                    said: String::from_utf8_lossy(&out.stderr).into_owned(),
                    injected: injected(&trace),
                };
                if !attempt.succeeded {
                    assert!(
                        !attempt.said.trim().is_empty(),
                        "{op} with {syscall} failing at call {n} failed silently"
                    );
                }
                let is_new: IsNew = match op {
                    "token create" => Box::new(|b: &State, a: &State| {
                        a.tokens == b.tokens + 1 && a.history == b.history
                    }),
                    "file put" => saved(body.clone()),
                    _ => rolled_back(target.clone()),
                };
                judge(op, syscall, n, &data, &before, &attempt, &*is_new);
                cases += 1;
                if attempt.succeeded && attempt.injected.is_empty() {
                    break;
                }
            }
        }
    }
    assert_eq!(health(&daemon), Some(200));
    note(&format!(
        "syscall faults: {cases} injected runs, {:.1} s",
        started.elapsed().as_secs_f64()
    ));
}
