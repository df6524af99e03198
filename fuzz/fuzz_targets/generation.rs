//! The version file parser (src/store/generation.rs) and the tree object
//! parser (src/store/trees/): any bytes give a version, a tree or an
//! error, never a panic; what parses writes back to bytes that parse to
//! the same files.
#![no_main]

use std::collections::HashMap;
use std::path::Path;

use cfgstore::store::generation::{compute_ids, Generation};
use cfgstore::store::trees::testing::{stored, Memory};
use cfgstore::store::trees::{NoTrees, Node};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let source = Path::new("fuzz-input");
    // As a version file of any format (a format-3 one names a tree that
    // is not there: an error).
    if let Ok(generation) = Generation::parse(source, data, &NoTrees) {
        let entries = generation.entries();
        assert!(entries.windows(2).all(|w| w[0].path < w[1].path));
        assert_eq!(entries.len() as u64, generation.meta.file_count);
        let bytes = generation.to_bytes();
        let trees = stored(generation.root());
        let again = Generation::parse(source, &bytes, &trees).expect("to_bytes output parses");
        assert_eq!(again.entries(), entries);
        assert_eq!(again.root().ids(false), compute_ids(entries));
        for entry in entries {
            assert_eq!(generation.find(&entry.path), Some(entry));
        }
    }
    // As a tree object, unchecked against its name.
    let id = "0".repeat(64);
    let memory = Memory(HashMap::from([(id.clone(), data.to_vec())]), false);
    if let Ok(root) = Node::load(&id, &memory) {
        let entries = root.flatten();
        assert!(entries.windows(2).all(|w| w[0].path < w[1].path));
        assert_eq!(entries.len() as u64, root.file_count());
        assert_eq!(Node::from_entries(&entries).text(), root.text(), "a tree's text is canonical");
    }
});
