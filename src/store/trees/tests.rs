//! Tests of the tree format and of editing trees.

use super::*;
use crate::store::generation::compute_ids;

fn content(bytes: &[u8]) -> ContentId {
    ContentId::of(bytes)
}

fn path(s: &str) -> FilePath {
    FilePath::parse(s).unwrap()
}

fn tree(files: &[(&str, &[u8])]) -> Arc<Node> {
    let mut draft = Draft::new(Node::empty());
    for (p, bytes) in files {
        draft.insert(&path(p), content(bytes)).unwrap();
    }
    draft.finish()
}

use super::testing::stored;

/// Paths where folder order and bytewise order could disagree: `a.b`
/// sorts before `a/x` ('.' < '/'), `a-` before `a/`, `a0` after.
const AWKWARD: &[(&str, &[u8])] = &[
    ("a/x", b"1"),
    ("a.b", b"2"),
    ("a-", b"3"),
    ("a0/y", b"4"),
    ("a/b/c.json", b"{}"),
    ("B", b"5"),
    ("café/é.txt", b"6"),
    ("z", b""),
];

#[test]
fn files_come_out_in_bytewise_path_order_with_the_same_ids() {
    let root = tree(AWKWARD);
    let flat = root.flatten();
    let paths: Vec<&str> = flat.iter().map(|e| e.path.as_str()).collect();
    let mut sorted = paths.clone();
    sorted.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
    assert_eq!(paths, sorted);
    assert_eq!(flat.len(), AWKWARD.len());
    assert_eq!(root.file_count(), AWKWARD.len() as u64);
    assert_eq!(root.ids(false), compute_ids(&flat));
    assert_eq!(root.ids(true), compute_ids(&flat));
    assert_eq!(root.ids(true), compute_ids(&flat), "from the kept lines");
    assert_eq!(Node::from_entries(&flat).id(), root.id());
}

#[test]
fn stored_trees_load_back_and_unchanged_folders_keep_their_objects() {
    let root = tree(AWKWARD);
    let memory = stored(&root);
    let loaded = Node::load(root.id(), &memory).unwrap();
    assert_eq!(loaded.flatten(), root.flatten());
    assert!(loaded.is_stored());
    // One put deep down: only the folders on its path are new.
    let mut draft = Draft::new(Arc::clone(&loaded));
    draft.insert(&path("a/b/d.json"), content(b"[]")).unwrap();
    let next = draft.finish();
    let mut new = Vec::new();
    next.unstored(&mut new);
    let mut new_ids: Vec<&str> = new.iter().map(|n| n.id()).collect();
    new_ids.sort();
    assert_eq!(new.len(), 3, "a/b, a and the root");
    assert_eq!(
        Node::changes(&loaded, &next),
        ChangeCounts {
            added: 1,
            changed: 0,
            removed: 0
        }
    );
    // Damaged objects are errors.
    let mut damaged = stored(&root);
    let some = damaged.0.keys().next().unwrap().clone();
    damaged.0.get_mut(&some).unwrap().push(b'x');
    assert!(Node::load(root.id(), &damaged).is_err());
}

#[test]
fn edits() {
    let root = tree(AWKWARD);
    let mut draft = Draft::new(Arc::clone(&root));
    assert!(matches!(
        draft.insert(&path("a.b/c"), content(b"x")),
        Err(Error::Conflict(m)) if m.contains("a.b is a file")
    ));
    assert!(matches!(
        draft.insert(&path("a/b"), content(b"x")),
        Err(Error::Conflict(m)) if m.contains("a/b is a folder (it holds a/b/c.json)")
    ));
    assert!(!draft.remove(&path("a")));
    assert!(!draft.remove(&path("a/x/y")));
    assert!(!draft.remove(&path("nope")));
    assert_eq!(
        draft.finish().id(),
        root.id(),
        "refused edits change nothing"
    );

    let mut draft = Draft::new(Arc::clone(&root));
    assert!(draft.remove(&path("a/b/c.json")));
    assert!(draft.remove(&path("a0/y")));
    draft.insert(&path("a.b"), content(b"changed")).unwrap();
    let next = draft.finish();
    let paths: Vec<String> = next
        .flatten()
        .iter()
        .map(|e| e.path.as_str().to_string())
        .collect();
    assert_eq!(
        paths,
        ["B", "a-", "a.b", "a/x", "café/é.txt", "z"],
        "emptied folders are gone"
    );
    assert_eq!(
        Node::changes(&root, &next),
        ChangeCounts {
            added: 0,
            changed: 1,
            removed: 2
        }
    );
    assert_eq!(
        Node::changes(&next, &root),
        ChangeCounts {
            added: 2,
            changed: 1,
            removed: 0
        }
    );
    assert!(matches!(next.get("a/x"), Some(Found::File(f)) if f.size() == 1));
    assert!(matches!(next.get("a"), Some(Found::Folder(n)) if n.file_count() == 1));
    assert!(next.get("a/x/y").is_none());
    assert!(next.get("a/b").is_none());

    // A folder emptied by a removal can become a file in the same draft.
    let mut draft = Draft::new(Arc::clone(&root));
    assert!(draft.remove(&path("a/b/c.json")));
    draft.insert(&path("a/b"), content(b"now a file")).unwrap();
    assert!(matches!(draft.finish().get("a/b"), Some(Found::File(_))));

    let mut draft = Draft::new(root);
    draft.reset(Node::empty());
    let empty = draft.finish();
    assert_eq!(empty.file_count(), 0);
    assert_eq!(empty.ids(false), compute_ids(&[]));
}

/// Folders large and small, so the lines of one folder pass the 32 KiB at
/// which they are hashed without being copied, before and after other
/// lines: every way of computing `short_id` agrees with the definition
/// (a daemon's puts on a 100,000-file branch once recorded wrong ids when
/// a large folder's kept lines were hashed ahead of lines buffered before
/// them).
#[test]
fn short_ids_of_large_folders_match_the_definition() {
    let mut draft = Draft::new(Node::empty());
    for i in 0..3000 {
        let p = match i % 3 {
            0 => format!("a{}/big/file{i:05}.json", i % 2),
            1 => format!("a{}/small{}/f{i}", i % 2, i % 40),
            _ => format!("top{i:05}"),
        };
        draft
            .insert(&path(&p), content(format!("{i}").as_bytes()))
            .unwrap();
    }
    let root = draft.finish();
    let expected = compute_ids(&root.flatten());
    assert_eq!(root.ids(false), expected);
    assert_eq!(root.ids(true), expected, "making the kept lines");
    assert_eq!(root.ids(true), expected, "from the kept lines");
    // A put in the middle: the new folders' lines with the kept others'.
    let mut draft = Draft::new(Arc::clone(&root));
    draft
        .insert(&path("a1/big/file01500.json"), content(b"changed"))
        .unwrap();
    let next = draft.finish();
    assert_eq!(next.ids(true), compute_ids(&next.flatten()));
}

/// A one-path edit of a tree with only that path's folders read gives the
/// same new tree, the same new folders to store, the same changes and the
/// same ids (the other folders' lines streamed from their objects) as the
/// edit of the whole tree, for every kind of path.
#[test]
fn a_path_only_edit_matches_the_whole_tree_edit() {
    let root = tree(AWKWARD);
    let memory = stored(&root);
    let whole = Node::load(root.id(), &memory).unwrap();
    let puts = [
        "a/b/c.json",
        "a/b/new.json",
        "a/x",
        "a.b",
        "new/deep/file",
        "café/é.txt",
        "zz",
    ];
    for p in puts {
        let edit = |base: Arc<Node>| {
            let mut draft = Draft::new(base);
            draft.insert(&path(p), content(b"changed")).unwrap();
            draft.finish()
        };
        let along = Node::load_path(root.id(), &path(p), &memory).unwrap();
        assert_eq!(along.file_count(), root.file_count());
        let (a, b) = (edit(Arc::clone(&whole)), edit(Arc::clone(&along)));
        assert_eq!(a.id(), b.id(), "put {p}");
        assert_eq!(
            Node::changes(&whole, &a),
            Node::changes(&along, &b),
            "put {p}"
        );
        let (mut new_a, mut new_b) = (Vec::new(), Vec::new());
        a.unstored(&mut new_a);
        b.unstored(&mut new_b);
        let ids = |v: &[Arc<Node>]| v.iter().map(|n| n.id().to_string()).collect::<Vec<_>>();
        assert_eq!(ids(&new_a), ids(&new_b), "put {p}");
        let want = compute_ids(&a.flatten());
        assert_eq!(b.ids_reading(false, &memory).unwrap(), want, "put {p}");
        assert_eq!(b.ids_reading(true, &memory).unwrap(), want, "put {p}, kept");
        // What the checks before a put see.
        let at = PathOnly::of(along, &path(p));
        assert_eq!(
            at.file(),
            whole.get(p).and_then(|f| match f {
                Found::File(f) => Some(f.content()),
                Found::Folder(_) => None,
            })
        );
    }
    // Removing a file, and the last file of a folder.
    for p in ["a/x", "a0/y", "a/b/c.json"] {
        let along = Node::load_path(root.id(), &path(p), &memory).unwrap();
        let mut draft = Draft::new(along);
        assert!(draft.remove(&path(p)));
        let after = draft.finish();
        let mut full = Draft::new(Arc::clone(&whole));
        full.remove(&path(p));
        let full = full.finish();
        assert_eq!(after.id(), full.id(), "remove {p}");
        let want = compute_ids(&full.flatten());
        assert_eq!(
            after.ids_reading(false, &memory).unwrap(),
            want,
            "remove {p}"
        );
    }
    // A path that is a folder, or inside a file: refused as on the whole
    // tree, with the same message.
    for p in ["a/b", "a.b/x", "z/y"] {
        let along = Node::load_path(root.id(), &path(p), &memory).unwrap();
        let refused = PathOnly::of(along, &path(p)).check_new_file();
        let whole_refused = whole.check_new_file(&path(p));
        assert_eq!(
            refused.unwrap_err().to_string(),
            whole_refused.unwrap_err().to_string(),
            "{p}"
        );
    }
}

/// The streamed lines of damaged objects are errors, never a panic or a
/// read outside the object folder.
#[test]
fn streaming_a_damaged_tree_is_an_error() {
    let root = tree(AWKWARD);
    let along = Node::load_path(root.id(), &path("B"), &stored(&root)).unwrap();
    let folder = stored(&root)
        .0
        .keys()
        .find(|id| *id != root.id())
        .unwrap()
        .clone();
    let good = stored(&root).0[&folder].clone();
    let text = String::from_utf8(good.clone()).unwrap();
    let first_line = text.lines().nth(1).unwrap().to_string();
    let cases: Vec<Vec<u8>> = vec![
        Vec::new(),
        b"not a tree\n".to_vec(),
        text.trim_end().as_bytes().to_vec(),
        format!("{TREE_MAGIC}\n\n").into_bytes(),
        format!("{TREE_MAGIC}\nf\tabc\n").into_bytes(),
        format!("{TREE_MAGIC}\nd\t../../../../etc/passwd\t1\tx\n").into_bytes(),
        format!("{TREE_MAGIC}\nd\t{}\t1\n", "0".repeat(64)).into_bytes(),
        format!("{TREE_MAGIC}\nx{}\n", &first_line[1..]).into_bytes(),
        good[..good.len() - 2].to_vec(),
        format!("{text}\n").into_bytes(),
        text.replacen('\n', "\n\n", 2).into_bytes(),
    ];
    for bytes in cases {
        let mut memory = stored(&root);
        memory.0.insert(folder.clone(), bytes.clone());
        let got = along.ids_reading(false, &memory);
        assert!(
            got.is_err(),
            "{:?} gave {got:?}",
            String::from_utf8_lossy(&bytes)
        );
    }
}

/// What streaming checks in an untouched folder, as loading would: md5,
/// size and name of each line, their order, and the folder's file count
/// against its parent's line (which also bounds the work).
#[test]
fn streaming_checks_what_goes_into_the_hash_and_the_counts() {
    let root = tree(AWKWARD);
    let along = Node::load_path(root.id(), &path("B"), &stored(&root)).unwrap();
    let object_with = |needle: &str| {
        let memory = stored(&root);
        let (id, bytes) = memory
            .0
            .iter()
            .find(|(id, b)| *id != root.id() && String::from_utf8_lossy(b).contains(needle))
            .unwrap();
        (id.clone(), String::from_utf8(bytes.clone()).unwrap())
    };
    let streams = |id: &str, text: String| {
        let mut memory = stored(&root);
        memory.0.insert(id.to_string(), text.into_bytes());
        along.ids_reading(false, &memory)
    };
    // Unchanged, both stream.
    let (a0, a0_text) = object_with("\ty\n");
    let (a, a_text) = object_with("\tx\n");
    assert!(streams(&a0, a0_text.clone()).is_ok());
    assert!(streams(&a, a_text.clone()).is_ok());
    let line = a0_text.lines().nth(1).unwrap().to_string();
    let fields: Vec<&str> = line.split('\t').collect();
    let with = |i: usize, v: &str| {
        let mut f = fields.clone();
        f[i] = v;
        format!("{TREE_MAGIC}\n{}\n", f.join("\t"))
    };
    let upper = fields[1]
        .to_uppercase()
        .replace(|c: char| c.is_ascii_digit(), "A");
    for (why, text) in [
        ("md5 not lower hex", with(1, &upper)),
        ("size with a leading zero", with(4, "01")),
        ("no size", with(4, "")),
        ("size not a number", with(4, "1x")),
        ("name with a slash", with(5, "y/z")),
        ("name ..", with(5, "..")),
        (
            "one file more than the parent counts",
            format!("{a0_text}{}\n", with(5, "z").lines().nth(1).unwrap()),
        ),
        ("one file fewer", format!("{TREE_MAGIC}\n")),
    ] {
        let got = streams(&a0, text.clone());
        assert!(got.is_err(), "{why}: {text:?} gave {got:?}");
    }
    // Lines out of order, and a folder line whose count is wrong.
    let mut lines: Vec<&str> = a_text.lines().collect();
    lines.swap(1, 2);
    let swapped = format!("{}\n", lines.join("\n"));
    assert!(streams(&a, swapped).is_err(), "unsorted");
    let d = a_text.lines().find(|l| l.starts_with("d\t")).unwrap();
    let parts: Vec<&str> = d.split('\t').collect();
    for count in ["0", "2", "01", "-1"] {
        let wrong = format!("d\t{}\t{count}\t{}", parts[1], parts[3]);
        let text = a_text.replace(d, &wrong);
        assert!(streams(&a, text).is_err(), "count {count}");
    }
}
