//! The small parsers of auth and configuration: expiries and durations
//! (src/auth/mod.rs), token shape, the server key file, the session
//! cookie, and every `CFGSTORE_*` setting (src/config.rs).
#![no_main]

use cfgstore::api::session::{session_id_in_cookie_header, COOKIE};
use cfgstore::auth::{is_token_shaped, parse_duration, parse_expiry, successor_name, ServerKey};
use cfgstore::config::{Config, Overrides, KEYS};
use libfuzzer_sys::fuzz_target;
use time::format_description::well_known::Rfc3339;

fuzz_target!(|data: &[u8]| {
    let Some((&first, rest)) = data.split_first() else {
        return;
    };
    let Ok(s) = std::str::from_utf8(rest) else {
        return;
    };
    if let Ok(d) = parse_duration(s) {
        assert!(!d.is_negative(), "{s:?} gave {d}");
    }
    if let Ok(t) = parse_expiry(s) {
        if let Ok(shown) = t.format(&Rfc3339) {
            assert_eq!(parse_expiry(&shown).unwrap(), t, "{s:?} -> {shown:?}");
        }
    }
    assert_eq!(
        is_token_shaped(s),
        s.len() == 64
            && s.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    );
    if ServerKey::from_hex(s).is_some() {
        let t = s.trim();
        assert!(
            t.len() == 64 && t.bytes().all(|b| b.is_ascii_hexdigit()),
            "key file {s:?} accepted"
        );
    }
    let next = successor_name(s);
    assert_ne!(next, s);
    if let Some(id) = session_id_in_cookie_header(s) {
        assert!(!id.contains(';'));
        assert_eq!(
            session_id_in_cookie_header(&format!("other=1; {COOKIE}={id}")),
            Some(id)
        );
    }
    let key = KEYS[first as usize % KEYS.len()];
    let env = [(
        format!("CFGSTORE_{}", key.to_ascii_uppercase()),
        s.to_string(),
    )];
    // An empty file of our own, so /etc/cfgstore/cfgstore.toml never joins in.
    static EMPTY: std::sync::OnceLock<std::path::PathBuf> = std::sync::OnceLock::new();
    let file = EMPTY.get_or_init(|| {
        let path = std::env::temp_dir().join(format!("cfgstore-fuzz-{}.toml", std::process::id()));
        std::fs::write(&path, "").unwrap();
        path
    });
    if let Ok(config) = Config::load(Some(file), &env, &Overrides::default()) {
        let _ = config.to_toml();
    }
});
