//! The generation (manifest) parser, src/store/generation.rs: any bytes
//! give a generation or an error, never a panic; what parses writes back
//! to bytes that parse to the same generation.
#![no_main]

use std::path::Path;

use cfgstore::store::Generation;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let source = Path::new("fuzz-input");
    if let Ok(generation) = Generation::parse(source, data) {
        assert!(generation.entries.windows(2).all(|w| w[0].path < w[1].path));
        assert_eq!(generation.entries.len() as u64, generation.meta.file_count);
        let bytes = generation.to_bytes();
        let again = Generation::parse(source, &bytes).expect("to_bytes output parses");
        assert_eq!(again.meta, generation.meta);
        assert_eq!(again.entries, generation.entries);
        assert_eq!(again.to_bytes(), bytes);
        for entry in &generation.entries {
            assert_eq!(generation.find(&entry.path), Some(entry));
        }
    }
});
