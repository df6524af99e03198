//! A model-based test of the store: random operations, with the store
//! reopened now and then, against a plain in-memory model of what every
//! branch and every version must hold.

use std::collections::BTreeMap;

use proptest::prelude::*;

use super::{BranchName, FilePath, OwnerName, ProjectRef, SnapshotId, Store};

#[derive(Debug, Clone)]
enum Op {
    Put {
        branch: usize,
        path: usize,
        value: u8,
    },
    Delete {
        branch: usize,
        path: usize,
    },
    Rollback {
        branch: usize,
        back: usize,
    },
    Import {
        branch: usize,
        paths: Vec<(usize, u8)>,
        replace: bool,
    },
    Reopen,
}

const BRANCHES: [&str; 2] = ["main", "release/1.0"];
const PATHS: [&str; 4] = ["a.json", "conf/b.yaml", "conf/deep/c.txt", "d e.txt"];

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0..2usize, 0..4usize, any::<u8>()).prop_map(|(branch, path, value)| Op::Put { branch, path, value }),
        2 => (0..2usize, 0..4usize).prop_map(|(branch, path)| Op::Delete { branch, path }),
        1 => (0..2usize, 1..4usize).prop_map(|(branch, back)| Op::Rollback { branch, back }),
        1 => (0..2usize, proptest::collection::vec((0..4usize, any::<u8>()), 1..4), any::<bool>())
            .prop_map(|(branch, paths, replace)| Op::Import { branch, paths, replace }),
        1 => Just(Op::Reopen),
    ]
}

type Files = BTreeMap<String, Vec<u8>>;

/// Per branch: every state so far; the last is live, the others are the
/// snapshots v0001, v0002, ... in order.
struct Model {
    states: Vec<Vec<Files>>,
}

fn body(path: usize, value: u8) -> Vec<u8> {
    format!("{}={value}\n", PATHS[path]).into_bytes()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn the_store_behaves_like_its_model(ops in proptest::collection::vec(op(), 1..40)) {
        let dir = std::env::temp_dir().join(format!("cfgstore-model-{}-{}", std::process::id(), rand_suffix()));
        let _ = std::fs::remove_dir_all(&dir);
        let (store, _) = Store::init(&dir).unwrap();
        let owner = OwnerName::parse("demo").unwrap();
        let project: ProjectRef = store.create_project(&owner, "m", "cfg", "test").unwrap().project_ref();
        let branches: Vec<BranchName> = BRANCHES.iter().map(|b| BranchName::parse(b).unwrap()).collect();
        store.create_branch(&project, &branches[1], None, "test").unwrap();
        let mut store = Some(store);
        let mut model = Model { states: vec![vec![Files::new()], vec![Files::new()]] };
        for op in ops {
            let s = store.as_ref().unwrap();
            match op {
                Op::Put { branch, path, value } => {
                    let out = s.put_file(&project, &branches[branch], &FilePath::parse(PATHS[path]).unwrap(), &body(path, value), "t".into(), None);
                    let mut next = model.states[branch].last().unwrap().clone();
                    // A path is a file or a folder, never both.
                    let nested = next.keys().any(|k| k.starts_with(&format!("{}/", PATHS[path])) || PATHS[path].starts_with(&format!("{k}/")));
                    if nested {
                        prop_assert!(out.is_err());
                        continue;
                    }
                    let changed = next.insert(PATHS[path].to_string(), body(path, value)) != Some(body(path, value));
                    prop_assert_eq!(out.unwrap().changed, changed);
                    if changed {
                        model.states[branch].push(next);
                    }
                }
                Op::Delete { branch, path } => {
                    let out = s.delete_file(&project, &branches[branch], &FilePath::parse(PATHS[path]).unwrap(), "t".into(), None);
                    let mut next = model.states[branch].last().unwrap().clone();
                    if next.remove(PATHS[path]).is_some() {
                        prop_assert!(out.unwrap().changed);
                        model.states[branch].push(next);
                    } else {
                        let not_found = matches!(out, Err(crate::Error::NotFound { .. }));
                        prop_assert!(not_found, "deleting a missing file: {:?}", out);
                    }
                }
                Op::Rollback { branch, back } => {
                    let live = model.states[branch].len();
                    if back >= live {
                        continue;
                    }
                    let to = SnapshotId::new((live - back) as u64).unwrap();
                    let out = s.rollback(&project, &branches[branch], to, "t".into()).unwrap();
                    let restored = model.states[branch][live - back - 1].clone();
                    // Back to the state the branch has: no change, no version.
                    let changed = &restored != model.states[branch].last().unwrap();
                    prop_assert_eq!(out.changed, changed);
                    if changed {
                        model.states[branch].push(restored);
                    }
                }
                Op::Import { branch, paths, replace } => {
                    let items: Vec<crate::Result<(FilePath, Vec<u8>)>> = paths.iter().map(|&(p, v)| Ok((FilePath::parse(PATHS[p]).unwrap(), body(p, v)))).collect();
                    let out = s.import(&project, &branches[branch], items, replace, "t".into());
                    let mut next = if replace { Files::new() } else { model.states[branch].last().unwrap().clone() };
                    for &(p, v) in &paths {
                        next.insert(PATHS[p].to_string(), body(p, v));
                    }
                    let nested = next.keys().any(|a| next.keys().any(|b| b.starts_with(&format!("{a}/"))));
                    if nested {
                        prop_assert!(out.is_err());
                        continue;
                    }
                    let changed = &next != model.states[branch].last().unwrap();
                    prop_assert_eq!(out.unwrap().changed, changed);
                    if changed {
                        model.states[branch].push(next);
                    }
                }
                Op::Reopen => {
                    // Closed first: a reopen sees only what is on disk.
                    drop(store.take());
                    store = Some(Store::open(&dir).unwrap());
                }
            }
            // After every step: the live files, the version and every version before.
            let s = store.as_ref().unwrap();
            for (b, branch) in branches.iter().enumerate() {
                let states = &model.states[b];
                let live = s.live(&project, branch).unwrap();
                prop_assert_eq!(live.meta.version.number() as usize, states.len());
                let mut files = Files::new();
                for e in live.entries() {
                    files.insert(e.path.to_string(), s.read_entry(&project, e).unwrap().to_vec());
                }
                prop_assert_eq!(&files, states.last().unwrap());
                let history = s.history(&project, branch).unwrap();
                prop_assert_eq!(history.len(), states.len());
                prop_assert!(history[0].live && history.iter().skip(1).all(|v| !v.live));
                for (i, state) in states.iter().enumerate() {
                    let snap = s.version(&project, branch, SnapshotId::new(i as u64 + 1).unwrap()).unwrap();
                    let paths: Vec<String> = snap.entries().iter().map(|e| e.path.to_string()).collect();
                    prop_assert_eq!(paths, state.keys().cloned().collect::<Vec<_>>());
                }
            }
        }
        let report = store.as_ref().unwrap().fsck(false).unwrap();
        prop_assert!(report.is_clean(), "{:?}", report.problems);
        drop(store);
        let _ = std::fs::remove_dir_all(&dir);
    }
}

fn rand_suffix() -> String {
    let mut b = [0u8; 6];
    getrandom::getrandom(&mut b).unwrap();
    super::fsutil::hex(&b)
}
