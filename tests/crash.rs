//! SIGKILL a writer at random moments: the store must open cleanly, fsck
//! must find nothing wrong, every file must hold a whole value some writer
//! wrote, and no acknowledged write may be lost.

use std::collections::HashMap;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::util::{
    self, check_body, json, ok, store_with_project, verifiable_body, TestDir, PROJECT,
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
        let mut child = Command::new("sh")
            .arg("-c")
            .arg(script)
            .process_group(0)
            .stdin(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(5 + rng.next() % 60));
        let killed = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", child.id())])
            .status()
            .unwrap();
        assert!(killed.success(), "round {round}: kill failed");
        child.wait().unwrap();
        wait_until_group_gone(child.id());

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

/// SIGKILL is delivered at once but a process dies (and drops its locks)
/// a moment later; the children of the killed shell are not ours to wait
/// for, so watch /proc until no live member of the group is left.
fn wait_until_group_gone(pgid: u32) {
    for _ in 0..500 {
        let alive = std::fs::read_dir("/proc")
            .unwrap()
            .filter_map(|e| e.ok())
            .any(|e| {
                let stat = std::fs::read_to_string(e.path().join("stat")).unwrap_or_default();
                // Fields after the parenthesised command: state, ppid, pgrp.
                let rest = stat.rsplit_once(") ").map(|(_, r)| r).unwrap_or("");
                let fields: Vec<&str> = rest.split(' ').collect();
                fields.len() > 2 && fields[0] != "Z" && fields[2] == pgid.to_string()
            });
        if !alive {
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    panic!("process group {pgid} did not die");
}

/// A small deterministic generator, so a failing round can be replayed.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0 >> 33
    }
}
