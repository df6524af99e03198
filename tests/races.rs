//! Readers under write load (I3): a reader never sees a mix of two branch
//! states. CLI imports replace the whole branch with a numbered state
//! (files `s1`..`s5` carrying the state number, plus `state-N.txt`), the
//! daemon rolls the branch back to random earlier versions and PUTs a
//! file outside the set, all at once; readers check every answer:
//!
//! - a raw file's body is whole, and its `X-Gitlab-Commit-Id` always goes
//!   with the same state (one commit id is never seen with two states);
//! - an archive holds one state: every `s` file and the one `state-N.txt`
//!   agree, and its commit id agrees with what raw reads saw;
//! - a recursive tree lists exactly one `state-N.txt` and all of `s1`..`s5`.

use std::collections::HashMap;
use std::io::Read;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::util::{
    self, add_user, check_body, create_token, ok, store_with_project, try_raw_request,
    verifiable_body, Daemon, Login, TestDir, PROJECT, V4,
};

const SET: usize = 5;

/// A directory holding state `n`: `s1..s5` and `state-n.txt`.
fn state_dir(root: &std::path::Path, n: usize) -> std::path::PathBuf {
    let dir = root.join(format!("state{n}"));
    std::fs::create_dir_all(dir.join("d")).unwrap();
    for i in 1..=SET {
        let path = if i % 2 == 0 {
            dir.join(format!("d/s{i}.txt"))
        } else {
            dir.join(format!("s{i}.txt"))
        };
        std::fs::write(path, verifiable_body("state", n, 100 * i + n % 50)).unwrap();
    }
    std::fs::write(dir.join(format!("state-{n}.txt")), n.to_string()).unwrap();
    dir
}

fn s_path(i: usize) -> String {
    if i.is_multiple_of(2) {
        format!("d/s{i}.txt")
    } else {
        format!("s{i}.txt")
    }
}

fn get(addr: std::net::SocketAddr, path: &str, token: &str) -> util::Resp {
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nPRIVATE-TOKEN: {token}\r\n\r\n"
    );
    try_raw_request(addr, request.as_bytes()).expect("the daemon answers")
}

/// Records that `commit` holds `state`; panics if it was seen with another.
fn agree(seen: &Mutex<HashMap<String, usize>>, commit: &str, state: usize, what: &str) {
    let mut seen = seen.lock().unwrap();
    let known = *seen.entry(commit.to_string()).or_insert(state);
    assert_eq!(
        known, state,
        "{what}: commit {commit} was seen holding state {known} and now {state}"
    );
}

#[test]
fn readers_never_see_a_mix_of_two_branch_states() {
    let dir = TestDir::new("races");
    let data = store_with_project(&dir);
    ok(
        &data,
        &[
            "import",
            PROJECT,
            "main",
            state_dir(dir.path(), 0).to_str().unwrap(),
            "--replace",
            "--yes",
        ],
    );
    add_user(
        &data,
        "ed",
        "correct horse battery",
        &["ROLE_SITEBUILDER_EDITOR__ROOT"],
    );
    let (_, token) = create_token(&data, "demo", &[]);
    let daemon = Daemon::start(&data, dir.path().join("daemon.log"));
    let addr = daemon.addr;
    let login = Login::new(addr, "ed", "correct horse battery");
    let states: Vec<_> = (1..=40).map(|n| state_dir(dir.path(), n)).collect();

    let repo = PROJECT.replace('/', "%2F");
    let seen: Mutex<HashMap<String, usize>> = Mutex::new(HashMap::new());
    let stop = AtomicBool::new(false);
    let reads = AtomicUsize::new(0);
    let writes = AtomicUsize::new(0);
    let deadline = Instant::now() + Duration::from_secs(4);
    std::thread::scope(|s| {
        // CLI imports, each a whole new state.
        s.spawn(|| {
            for state in &states {
                if Instant::now() > deadline {
                    break;
                }
                util::ok(
                    &data,
                    &[
                        "import",
                        PROJECT,
                        "main",
                        state.to_str().unwrap(),
                        "--replace",
                        "--yes",
                    ],
                );
                writes.fetch_add(1, Ordering::Relaxed);
            }
        });
        // Daemon rollbacks to random earlier versions, and PUTs of p.txt.
        s.spawn(|| {
            let mut rng = 0x9e3779b97f4a7c15u64;
            let mut n = 0;
            while Instant::now() < deadline {
                n += 1;
                rng ^= rng << 13;
                rng ^= rng >> 7;
                rng ^= rng << 17;
                let base = format!("/projects/{repo}/branches/main");
                let r = if n % 3 == 0 {
                    login.send(
                        addr,
                        "PUT",
                        &format!("{}/files/p.txt", base),
                        &verifiable_body("p", n, n % 40),
                    )
                } else {
                    // v0002 is the first import; rollbacks target any
                    // version from there up to the latest.
                    let history =
                        login.send(addr, "GET", &format!("{}/history?per_page=1", base), b"");
                    let newest: u64 = history.header("x-total").unwrap().parse().unwrap();
                    let to = 2 + rng % newest.max(1);
                    login.send(addr, "POST", &format!("{}/rollback?to=v{to:04}", base), b"")
                };
                // A rollback to a version that is the live one is a 404
                // (not a snapshot); anything else must succeed.
                assert!(
                    r.status == 200 || r.status == 404,
                    "{}: {}",
                    r.status,
                    r.text()
                );
                writes.fetch_add(1, Ordering::Relaxed);
            }
        });
        for reader in 0..3 {
            let (seen, stop, reads, token, repo) = (&seen, &stop, &reads, &token, &repo);
            s.spawn(move || {
                let mut k = reader;
                while !stop.load(Ordering::Relaxed) {
                    k += 1;
                    match k % 3 {
                        0 => {
                            let i = 1 + k % SET;
                            let file = s_path(i).replace('/', "%2F");
                            let r = get(addr, &format!("{V4}/projects/{repo}/repository/files/{file}/raw?ref=main"), token);
                            assert_eq!(r.status, 200, "{}", r.text());
                            let (_, state) = check_body(&r.body).expect("a whole body");
                            agree(seen, r.header("x-gitlab-commit-id").unwrap(), state, "raw");
                        }
                        1 => {
                            let r = get(addr, &format!("{V4}/projects/{repo}/repository/archive.tar.gz?sha=main"), token);
                            assert_eq!(r.status, 200, "{}", r.text());
                            let (commit, state) = archive_state(&r.body);
                            agree(seen, &commit, state, "archive");
                        }
                        _ => {
                            let r = get(addr, &format!("{V4}/projects/{repo}/repository/tree?ref=main&recursive=true&per_page=100"), token);
                            assert_eq!(r.status, 200, "{}", r.text());
                            let paths: Vec<String> = r.json().as_array().unwrap().iter()
                                .filter(|e| e["type"] == "blob")
                                .map(|e| e["path"].as_str().unwrap().to_string())
                                .collect();
                            let state_files = paths.iter().filter(|p| p.starts_with("state-")).count();
                            assert_eq!(state_files, 1, "a tree of two states: {paths:?}");
                            for i in 1..=SET {
                                assert!(paths.contains(&s_path(i)), "{} missing: {paths:?}", s_path(i));
                            }
                        }
                    }
                    reads.fetch_add(1, Ordering::Relaxed);
                }
            });
        }
        while Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        // Writers stop at the deadline; let readers see the last states.
        std::thread::sleep(Duration::from_millis(200));
        stop.store(true, Ordering::Relaxed);
    });
    let (reads, writes) = (reads.into_inner(), writes.into_inner());
    eprintln!(
        "{reads} reads checked against {writes} writes, {} commits seen",
        seen.lock().unwrap().len()
    );
    assert!(writes > 20, "too few writes to race: {writes}");
    assert!(reads > 100, "too few reads: {reads}");
    assert!(seen.lock().unwrap().len() > 5, "readers saw too few states");
    let fsck = util::run(&data, &["fsck"]);
    assert!(fsck.status.success());
}

/// The commit id (from the folder name) and the one state an archive
/// holds; panics on a mix.
fn archive_state(gz: &[u8]) -> (String, usize) {
    let mut tar = Vec::new();
    flate2::read::GzDecoder::new(gz)
        .read_to_end(&mut tar)
        .unwrap();
    let mut archive = tar::Archive::new(&tar[..]);
    let mut commit = None;
    let mut states = Vec::new();
    let mut marker = None;
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        let path = entry.path().unwrap().to_string_lossy().into_owned();
        let (folder, name) = path.split_once('/').unwrap();
        commit = Some(folder.rsplit('-').next().unwrap().to_string());
        let mut body = Vec::new();
        entry.read_to_end(&mut body).unwrap();
        if let Some(n) = name.strip_prefix("state-") {
            assert!(marker.is_none(), "two state files in one archive");
            marker = Some(n.trim_end_matches(".txt").parse::<usize>().unwrap());
        } else if name.contains("/s") || name.starts_with('s') {
            states.push(check_body(&body).expect("a whole body in the archive").1);
        }
    }
    let marker = marker.expect("a state file");
    assert_eq!(states.len(), SET, "files of the set missing");
    assert!(
        states.iter().all(|&s| s == marker),
        "an archive mixing states: {states:?} with marker {marker}"
    );
    (commit.unwrap(), marker)
}
