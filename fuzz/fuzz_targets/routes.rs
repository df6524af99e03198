//! Request routing and decoding (src/api/route.rs `Endpoint::parse`, i.e.
//! parse_read and parse_admin; src/api/request.rs decode_segment and
//! Query): never a panic, and percent-encoding round-trips.
#![no_main]

use cfgstore::api::request::{decode_segment, Query};
use cfgstore::api::Endpoint;
use hyper::Method;
use libfuzzer_sys::fuzz_target;
use percent_encoding::{utf8_percent_encode, NON_ALPHANUMERIC};

fuzz_target!(|data: &[u8]| {
    let Some((&first, rest)) = data.split_first() else {
        return;
    };
    let methods = [
        Method::GET,
        Method::HEAD,
        Method::POST,
        Method::PUT,
        Method::DELETE,
        Method::PATCH,
        Method::OPTIONS,
    ];
    let method = &methods[first as usize % methods.len()];
    let Ok(s) = std::str::from_utf8(rest) else {
        return;
    };
    let (path, query) = match s.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (s, None),
    };
    if let Ok(endpoint) = Endpoint::parse(method, path) {
        let _ = endpoint.name();
        let _ = endpoint.is_admin();
        // Routing is a function of the path: the same answer twice.
        assert_eq!(Endpoint::parse(method, path).ok(), Some(endpoint));
    }
    if let Ok(q) = Query::parse(query) {
        for key in ["page", "per_page", "ref", "recursive", "path"] {
            let _ = q.get(key);
            let _ = q.flag(key, false);
            let _ = q.number(key);
        }
        let _ = q.with_page(2);
    }
    let _ = decode_segment(s);
    let encoded = utf8_percent_encode(s, NON_ALPHANUMERIC).to_string();
    assert_eq!(decode_segment(&encoded).as_deref(), Ok(s));
});
