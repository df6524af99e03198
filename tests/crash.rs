//! SIGKILL a writer at random moments: the store must open cleanly, fsck
//! must find nothing wrong, every file must hold a whole value some writer
//! wrote, and no acknowledged write may be lost.

use std::collections::HashMap;
use std::time::Duration;

use crate::util::{
    self, check_body, json, ok, store_with_project, try_send, verifiable_body, Daemon, Lcg,
    TestDir, PROJECT,
};

const FILES: usize = 8;

#[test]
fn sigkill_during_writes_leaves_a_clean_store() {
    let dir = TestDir::new("crash");
    let data = store_with_project(&dir);
    // Some bulk so that each write has real work between its steps.
    let bulk = dir.path().join("bulk");
    for i in 0..300 {
        std::fs::create_dir_all(bulk.join(format!("d{}", i % 10))).unwrap();
        std::fs::write(bulk.join(format!("d{}/f{i}", i % 10)), format!("bulk {i}")).unwrap();
    }
    ok(&data, &["import", PROJECT, "main", bulk.to_str().unwrap()]);

    // Bodies to write: file k gets writes k, k+FILES, k+2*FILES, ...
    let bodies = dir.path().join("bodies");
    std::fs::create_dir_all(&bodies).unwrap();
    let total = 400;
    for seq in 0..total {
        std::fs::write(
            bodies.join(seq.to_string()),
            verifiable_body("w", seq, 2000 + seq * 37 % 5000),
        )
        .unwrap();
    }
    let acked = dir.path().join("acked");
    let mut seq_start = 0;
    let mut rng = Lcg(0x5eed_1234);
    for round in 0..50 {
        // A writer loop in its own process group; each completed put is
        // acknowledged by appending its sequence number to `acked`.
        let script = format!(
            "for i in $(seq {seq_start} {end}); do {bin} --data {data} file put {PROJECT} main f$((i % {FILES})).txt --from {bodies}/$i >/dev/null 2>&1 && echo $i >> {acked}; done",
            end = total - 1,
            bin = util::bin(),
            data = data.display(),
            bodies = bodies.display(),
            acked = acked.display(),
        );
        let mut child = util::spawn_group(&script);
        std::thread::sleep(Duration::from_millis(5 + rng.next() % 60));
        assert!(util::kill_group(&child), "round {round}: kill failed");
        util::reap_group(&mut child);

        // Opening runs the recovery sweep; fsck must then find nothing.
        let fsck = util::run(&data, &["fsck"]);
        assert!(
            fsck.status.success(),
            "round {round}: fsck: {}",
            String::from_utf8_lossy(&fsck.stdout)
        );

        let acked_seqs: Vec<usize> = std::fs::read_to_string(&acked)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.parse().ok())
            .collect();
        let mut last_acked: HashMap<usize, usize> = HashMap::new();
        for &s in &acked_seqs {
            last_acked.insert(s % FILES, s);
        }
        let files = json(&data, &["file", "ls", PROJECT, "main"]);
        for entry in files
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["type"] == "blob")
        {
            let path = entry["path"].as_str().unwrap();
            let k: usize = path
                .trim_start_matches('f')
                .trim_end_matches(".txt")
                .parse()
                .unwrap();
            let out = util::cfgstore(&data)
                .args(["file", "get", PROJECT, "main", path])
                .output()
                .unwrap();
            let (_, seq) =
                check_body(&out.stdout).unwrap_or_else(|| panic!("round {round}: {path} is torn"));
            assert_eq!(
                seq % FILES,
                k,
                "round {round}: {path} holds another file's value"
            );
            if let Some(&acked) = last_acked.get(&k) {
                assert!(
                    seq >= acked,
                    "round {round}: {path} lost acknowledged write {acked} (holds {seq})"
                );
            }
        }
        for k in last_acked.keys() {
            assert!(
                files
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|e| e["path"] == format!("f{k}.txt")),
                "round {round}: f{k}.txt was acknowledged but is missing"
            );
        }
        seq_start = acked_seqs.iter().max().map(|m| m + 1).unwrap_or(seq_start);
        if seq_start + 20 >= total {
            seq_start = 0;
        }
    }
    // The history is intact: every snapshot opens and versions are dense.
    let history = json(&data, &["history", "list", PROJECT, "main"]);
    let n = history.as_array().unwrap().len();
    for (i, h) in history.as_array().unwrap().iter().enumerate() {
        assert_eq!(h["version"], format!("v{:04}", n - i));
    }
}

/// What one writer was told: per file, the last body acknowledged, and the
/// highest version any acknowledged write produced per branch.
#[derive(Default)]
struct Acks {
    /// file -> seq of the last acknowledged write of it
    files: HashMap<String, usize>,
    /// branch -> highest version number acknowledged
    versions: HashMap<&'static str, u64>,
    /// (token, instance id) pairs whose first request answered 200
    binds: Vec<(String, String)>,
}

fn version_number(outcome: &serde_json::Value) -> u64 {
    outcome["version"]
        .as_str()
        .and_then(|v| v.strip_prefix('v'))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no version in {outcome}"))
}

/// The crash loop of RELIABILITY.md: a daemon taking HTTP PUTs, rollbacks
/// and first requests that bind fingerprints, CLI writers on the same
/// branch, readers checking every body; SIGKILL to all of them at a random
/// moment; then fsck, and a history check through the restarted daemon:
/// every acknowledged write, rollback and bind is there, every file is a
/// whole value some writer wrote and never older than its last
/// acknowledged write. `CFGSTORE_CRASH_ROUNDS` sets the number of rounds
/// (200 by default; the long tier runs more).
#[test]
fn crash_loop_with_daemon_cli_writers_and_binds() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Arc, Mutex};

    let rounds: usize = std::env::var("CFGSTORE_CRASH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200);
    let dir = TestDir::new("crash-loop");
    let data = store_with_project(&dir);
    ok(&data, &["branch", "create", PROJECT, "rb"]);
    util::add_user(
        &data,
        "ops",
        "crash loop password",
        &["ROLE_SITEBUILDER_EDITOR__ROOT"],
    );
    let (_, read_token) = util::create_token(&data, "demo", &[]);
    // The CLI writer makes `verifiable_body("cli", i, 8)` in shell.
    let body_file = dir.path().join("cli-body");
    let log = dir.path().join("daemon.log");
    let repo = PROJECT.replace('/', "%2F");
    let admin = |branch: &str, rest: &str| {
        format!("/site-builder/api/projects/{repo}/branches/{branch}/{rest}")
    };
    let raw = |path: &str| {
        format!(
            "{}/projects/{repo}/repository/files/{path}/raw?ref=main",
            util::V4
        )
    };

    let acks = Arc::new(Mutex::new(Acks::default()));
    let acked_cli = dir.path().join("acked-cli");
    let mut login = None;
    let mut rng = Lcg(0xc0ffee);
    let mut http_seq = 0usize;
    let mut cli_seq = 0usize;
    for round in 0..rounds {
        let daemon = Daemon::start(&data, log.clone());
        let addr = daemon.addr;
        let login =
            login.get_or_insert_with(|| util::Login::new(addr, "ops", "crash loop password"));

        // ---- the history check of the previous round's crash ----------
        {
            let acks = acks.lock().unwrap();
            let cli_acked: Vec<usize> = std::fs::read_to_string(&acked_cli)
                .unwrap_or_default()
                .lines()
                .filter_map(|l| l.parse().ok())
                .collect();
            let mut last: HashMap<String, usize> = acks.files.clone();
            for s in cli_acked {
                last.insert(format!("c{}.txt", s % 4), s);
            }
            for (file, &acked) in &last {
                let r = util::request(addr, "GET", &raw(file), &[("PRIVATE-TOKEN", &read_token)]);
                assert_eq!(
                    r.status, 200,
                    "round {round}: acknowledged {file} is missing"
                );
                let (_, seq) =
                    check_body(&r.body).unwrap_or_else(|| panic!("round {round}: {file} is torn"));
                assert!(
                    seq >= acked,
                    "round {round}: {file} lost write {acked} (holds {seq})"
                );
            }
            for b in json(&data, &["branch", "list", PROJECT])
                .as_array()
                .unwrap()
            {
                let name = b["name"].as_str().unwrap();
                let live = version_number(b);
                if let Some(&acked) = acks.versions.get(name) {
                    assert!(
                        live >= acked,
                        "round {round}: {name} is at v{live}, v{acked} was acknowledged"
                    );
                }
            }
            // The latest binds every round, all of them now and then.
            let recent = if round % 25 == 0 {
                0
            } else {
                acks.binds.len().saturating_sub(3)
            };
            for (token, instance) in &acks.binds[recent..] {
                let url = format!("{}/projects/{repo}/repository/branches", util::V4);
                let mine = util::request(
                    addr,
                    "GET",
                    &url,
                    &[("PRIVATE-TOKEN", token), ("X-Instance-Id", instance)],
                );
                assert_eq!(mine.status, 200, "round {round}: acknowledged bind lost");
                let other = util::request(
                    addr,
                    "GET",
                    &url,
                    &[("PRIVATE-TOKEN", token), ("X-Instance-Id", "intruder")],
                );
                assert_eq!(
                    other.status, 401,
                    "round {round}: bind to {instance} not in force"
                );
            }
        }

        // ---- writers ----------------------------------------------------
        let stop = Arc::new(AtomicBool::new(false));
        let (bind_id, bind_token) = util::create_token(&data, "demo", &["--fingerprint"]);
        let _ = bind_id;
        let cli_script = format!(
            "i={cli_seq}; while true; do printf 'cli:%s:xxxxxxxx\\n' $i > {body}; printf '#sha256=%s\\n' $(sha256sum < {body} | cut -c1-64) >> {body}; {bin} --data {data} file put {PROJECT} main c$((i % 4)).txt --from {body} >/dev/null 2>&1 && echo $i >> {acked}; i=$((i + 1)); done",
            bin = util::bin(),
            data = data.display(),
            body = body_file.display(),
            acked = acked_cli.display(),
        );
        let mut cli = util::spawn_group(&cli_script);
        let cookie = login.cookie.clone();
        let csrf = login.csrf.clone();
        let session = [("Cookie", cookie.as_str()), ("X-CSRF-Token", csrf.as_str())];
        std::thread::scope(|s| {
            // HTTP PUTs of h0..h3 on main.
            s.spawn(|| {
                while !stop.load(Ordering::Relaxed) {
                    http_seq += 1;
                    let file = format!("h{}.txt", http_seq % 4);
                    let body = verifiable_body("http", http_seq, http_seq * 31 % 2000);
                    let Some(r) = try_send(
                        addr,
                        "PUT",
                        &admin("main", &format!("files/{file}")),
                        &session,
                        &body,
                    ) else {
                        break;
                    };
                    assert_eq!(r.status, 200, "round {round}: PUT {}", r.text());
                    let v = version_number(&r.json());
                    let mut acks = acks.lock().unwrap();
                    acks.files.insert(file, http_seq);
                    let high = acks.versions.entry("main").or_default();
                    *high = (*high).max(v);
                }
            });
            // PUT and rollback alternating on rb.
            s.spawn(|| {
                let mut n = 0;
                while !stop.load(Ordering::Relaxed) {
                    n += 1;
                    let r = if n % 2 == 0 {
                        try_send(
                            addr,
                            "POST",
                            &admin("rb", "rollback?to=v0001"),
                            &session,
                            b"",
                        )
                    } else {
                        try_send(
                            addr,
                            "PUT",
                            &admin("rb", "files/r.txt"),
                            &session,
                            format!("rb {round} {n}\n").as_bytes(),
                        )
                    };
                    let Some(r) = r else { break };
                    assert_eq!(r.status, 200, "round {round}: rb {}", r.text());
                    let v = version_number(&r.json());
                    let mut acks = acks.lock().unwrap();
                    let high = acks.versions.entry("rb").or_default();
                    *high = (*high).max(v);
                }
            });
            // The first request of a fingerprint token binds it.
            s.spawn(|| {
                let instance = format!("erp-{round}");
                let url = format!("{}/projects/{repo}/repository/branches", util::V4);
                if let Some(r) = try_send(
                    addr,
                    "GET",
                    &url,
                    &[("PRIVATE-TOKEN", &bind_token), ("X-Instance-Id", &instance)],
                    b"",
                ) {
                    assert_eq!(r.status, 200, "round {round}: bind {}", r.text());
                    acks.lock()
                        .unwrap()
                        .binds
                        .push((bind_token.clone(), instance));
                }
            });
            // A reader: every body whole, and never older than the last
            // write acknowledged before the read began (history check).
            s.spawn(|| {
                let mut k = 0;
                while !stop.load(Ordering::Relaxed) {
                    k += 1;
                    let file = format!("{}{}.txt", if k % 2 == 0 { "h" } else { "c" }, k % 4);
                    let floor = acks.lock().unwrap().files.get(&file).copied();
                    let Some(r) = try_send(
                        addr,
                        "GET",
                        &raw(&file),
                        &[("PRIVATE-TOKEN", &read_token)],
                        b"",
                    ) else {
                        break;
                    };
                    if r.status == 200 {
                        let (_, seq) = check_body(&r.body)
                            .unwrap_or_else(|| panic!("round {round}: torn read of {file}"));
                        if let Some(floor) = floor {
                            assert!(
                                seq >= floor,
                                "round {round}: {file} read {seq} after {floor} was acknowledged"
                            );
                        }
                    } else {
                        assert!(
                            floor.is_none(),
                            "round {round}: acknowledged {file} is missing"
                        );
                        assert_eq!(r.status, 404, "round {round}: read {file}: {}", r.text());
                    }
                }
            });
            // The crash: everything at once, at a random moment.
            std::thread::sleep(Duration::from_millis(20 + rng.next() % 100));
            util::kill_group(&cli);
            drop(daemon);
            stop.store(true, Ordering::Relaxed);
        });
        util::reap_group(&mut cli);
        cli_seq += 1000;

        let fsck = util::run(&data, &["fsck"]);
        assert!(
            fsck.status.success(),
            "round {round}: fsck: {}",
            String::from_utf8_lossy(&fsck.stdout)
        );
    }
    // The loop did real work: writes of every kind were acknowledged
    // before crashes, not just started.
    let acks = acks.lock().unwrap();
    let cli_acked = std::fs::read_to_string(&acked_cli)
        .unwrap_or_default()
        .lines()
        .count();
    eprintln!(
        "{rounds} rounds: main at v{}, rb at v{}, {} binds, {cli_acked} CLI puts acknowledged",
        acks.versions.get("main").copied().unwrap_or(0),
        acks.versions.get("rb").copied().unwrap_or(0),
        acks.binds.len()
    );
    assert!(acks.versions.get("main").copied().unwrap_or(0) as usize > rounds);
    assert!(acks.versions.get("rb").copied().unwrap_or(0) as usize > rounds);
    assert!(acks.binds.len() > rounds / 2);
    assert!(cli_acked > rounds / 2);
    // Versions are dense on both branches: no number lost or reused.
    for branch in ["main", "rb"] {
        let history = json(&data, &["history", "list", PROJECT, branch]);
        let n = history.as_array().unwrap().len();
        for (i, h) in history.as_array().unwrap().iter().enumerate() {
            assert_eq!(h["version"], format!("v{:04}", n - i), "{branch}");
        }
    }
}
