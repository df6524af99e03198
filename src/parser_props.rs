//! Property tests for the parsers that meet untrusted bytes and are not
//! covered next to their code: generation manifests (round trip, and no
//! panic on damaged files), request routing, percent-decoding, query
//! strings, durations and expiry times. Names and paths have theirs in
//! `store::names`; the store as a whole has its model test.

use std::collections::BTreeMap;

use hyper::Method;
use proptest::prelude::*;

use crate::api::request::{decode_segment, Query};
use crate::api::Endpoint;
use crate::auth::{parse_duration, parse_expiry};
use crate::names::{BranchName, FilePath, SnapshotId};
use crate::store::generation::{compute_ids, ContentId, Entry, Generation};
use crate::store::trees::testing::stored;
use crate::store::trees::NoTrees;

fn temp_file(tag: &str, bytes: &[u8]) -> std::path::PathBuf {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static N: AtomicUsize = AtomicUsize::new(0);
    let dir = std::env::temp_dir().join(format!("cfgstore-props-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(format!("{tag}-{}", N.fetch_add(1, Ordering::Relaxed)));
    std::fs::write(&path, bytes).unwrap();
    path
}

fn files() -> impl Strategy<Value = BTreeMap<FilePath, Entry>> {
    proptest::collection::btree_map(
        "[a-z]{1,6}(/[a-z0-9._-]{1,8}){0,3}",
        proptest::collection::vec(any::<u8>(), 0..64),
        0..12,
    )
    .prop_map(|m| {
        // A branch never holds both `a` and `a/b` (writes refuse it).
        let nests = |p: &str| m.keys().any(|q| p.starts_with(&format!("{q}/")));
        m.iter()
            .filter(|(p, _)| !nests(p))
            .filter_map(|(p, body)| {
                let path = FilePath::parse(p).ok()?;
                let id = ContentId::of(body);
                Some((path.clone(), id.entry(path)))
            })
            .collect()
    })
}

fn method() -> impl Strategy<Value = Method> {
    prop_oneof![
        Just(Method::GET),
        Just(Method::HEAD),
        Just(Method::POST),
        Just(Method::PUT),
        Just(Method::PATCH),
        Just(Method::DELETE),
        Just(Method::OPTIONS),
    ]
}

proptest! {
    #[test]
    fn generations_round_trip_through_their_file(files in files(), n in 1u64..100_000, reason in "\\PC{0,30}") {
        let gen = Generation::build(SnapshotId::new(n).unwrap(), "2026-11-22T10:00:00Z".into(), "cli:test", reason, &files, None);
        let path = temp_file("gen", &gen.to_bytes());
        let read = Generation::read(&path, &stored(gen.root())).unwrap();
        std::fs::remove_file(&path).unwrap();
        prop_assert_eq!(&read.meta, &gen.meta);
        prop_assert_eq!(read.entries(), gen.entries());
        prop_assert_eq!(read.root().ids(false), compute_ids(gen.entries()));
    }

    #[test]
    fn damaged_generation_files_are_errors_not_panics(files in files(), cut in any::<prop::sample::Index>(), flip in any::<prop::sample::Index>(), byte in any::<u8>(), pick_tree in any::<bool>()) {
        let gen = Generation::build(SnapshotId::new(3).unwrap(), "2026-11-22T10:00:00Z".into(), "a", "r".into(), &files, None);
        // The version file or one of its tree objects, damaged.
        // Unverified, so the damaged bytes reach the parser.
        let mut trees = stored(gen.root());
        trees.1 = false;
        let (mut bytes, tree) = if pick_tree {
            let id = trees.0.keys().min().unwrap().clone();
            (trees.0.remove(&id).unwrap(), Some(id))
        } else {
            (gen.to_bytes(), None)
        };
        let at = flip.index(bytes.len());
        bytes[at] = byte;
        bytes.truncate(cut.index(bytes.len() + 1));
        let bytes = match tree {
            Some(id) => {
                trees.0.insert(id, bytes);
                gen.to_bytes()
            }
            None => bytes,
        };
        let path = temp_file("bad", &bytes);
        let read = Generation::read(&path, &trees);
        std::fs::remove_file(&path).unwrap();
        // Damage is either reported or harmless (a flipped byte inside
        // free text such as the reason); a parsed manifest is consistent.
        if let Ok(read) = read {
            prop_assert_eq!(read.entries().len() as u64, read.meta.file_count);
            prop_assert!(read.entries().windows(2).all(|w| w[0].path < w[1].path));
        }
    }

    #[test]
    fn arbitrary_bytes_are_never_a_generation_by_accident(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
        let path = temp_file("junk", &bytes);
        let read = Generation::read(&path, &NoTrees);
        std::fs::remove_file(&path).unwrap();
        prop_assert!(read.is_err());
    }

    #[test]
    fn routing_any_path_is_an_answer_not_a_panic(method in method(), path in "(/[a-zA-Z0-9%._~:@!$&'()*+,;=-]{0,12}){0,10}") {
        let _ = Endpoint::parse(&method, &path);
    }

    #[test]
    fn routing_arbitrary_text_is_an_answer_not_a_panic(method in method(), path in "\\PC{0,80}") {
        let _ = Endpoint::parse(&method, &path);
    }

    #[test]
    fn percent_decoded_nul_never_reaches_a_name(raw in "[a-z%0-9A-F./\\\\]{0,24}") {
        // Decoding is not validation: `%00` decodes to NUL (see
        // request::tests::segments). What must hold is that no name
        // accepts what decoding lets through.
        if let Ok(decoded) = decode_segment(&raw) {
            if let Ok(path) = FilePath::parse(&decoded) {
                prop_assert!(!path.as_str().contains('\0') && !path.as_str().contains('\\'));
            }
            if let Ok(branch) = BranchName::parse(&decoded) {
                prop_assert!(!branch.as_str().contains('\0'));
            }
        }
    }

    #[test]
    fn decoding_what_was_encoded_gives_it_back(text in "[^\0]{0,24}") {
        let encoded = percent_encoding::utf8_percent_encode(&text, percent_encoding::NON_ALPHANUMERIC).to_string();
        prop_assert_eq!(decode_segment(&encoded).ok(), Some(text));
    }

    #[test]
    fn query_strings_parse_or_fail_cleanly(raw in "\\PC{0,60}") {
        let _ = Query::parse(Some(&raw));
    }

    #[test]
    fn durations_parse_or_fail_cleanly(text in "\\PC{0,12}") {
        let _ = parse_duration(&text);
        let _ = parse_expiry(&text);
    }

    #[test]
    fn durations_round_trip(n in 0i64..1_000_000, unit in prop::sample::select(vec![("s", 1i64), ("m", 60), ("h", 3600), ("d", 86_400)])) {
        let d = parse_duration(&format!("{n}{}", unit.0)).unwrap();
        prop_assert_eq!(d.whole_seconds(), n * unit.1);
    }
}
