//! The UI's static files, compiled into the binary and served under
//! content-hashed names (`ui.{hash}.css`): a changed file gets a new URL,
//! so each can be cached forever (`immutable`).

use std::sync::OnceLock;

use bytes::Bytes;
use hyper::header::{HeaderValue, CACHE_CONTROL};
use hyper::{Response, StatusCode};

use crate::api::response::with_body;
use crate::api::Body;

struct Asset {
    /// `ui.{hash}.css`
    name: String,
    content_type: &'static str,
    bytes: &'static [u8],
}

const FILES: [(&str, &str, &str, &[u8]); 2] = [
    (
        "ui",
        "css",
        "text/css; charset=utf-8",
        include_bytes!("ui.css"),
    ),
    (
        "ui",
        "js",
        "text/javascript; charset=utf-8",
        include_bytes!("ui.js"),
    ),
];

fn assets() -> &'static [Asset] {
    static ASSETS: OnceLock<Vec<Asset>> = OnceLock::new();
    ASSETS.get_or_init(|| {
        FILES
            .iter()
            .map(|(stem, ext, content_type, bytes)| {
                let hash = blake3::hash(bytes).to_hex();
                Asset {
                    name: format!("{stem}.{}.{ext}", &hash[..16]),
                    content_type,
                    bytes,
                }
            })
            .collect()
    })
}

/// The URL of the stylesheet.
pub fn css() -> String {
    format!("/site-builder/static/{}", assets()[0].name)
}

/// The URL of the script.
pub fn js() -> String {
    format!("/site-builder/static/{}", assets()[1].name)
}

/// The asset named `name`, or `None`.
pub fn serve(name: &str) -> Option<Response<Body>> {
    let asset = assets().iter().find(|a| a.name == name)?;
    let mut r = with_body(
        StatusCode::OK,
        asset.content_type,
        Bytes::from_static(asset.bytes),
    );
    r.headers_mut().insert(
        CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=31536000, immutable"),
    );
    Some(r)
}
