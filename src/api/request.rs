//! Decoding what a client sent: path segments and query strings.
//!
//! Each path segment is percent-decoded exactly once, after routing, and
//! must be UTF-8. Query values decode `+` as a space (python-gitlab sends
//! form-style encoding) and `%20` likewise (gitbeaker).

use percent_encoding::percent_decode_str;

use super::RouteError;
use crate::error::{Error, Result};

/// Percent-decodes one raw path segment. A `%` not followed by two hex
/// digits, or bytes that are not UTF-8, are refused rather than guessed at.
pub fn decode_segment(raw: &str) -> std::result::Result<String, RouteError> {
    decode_segment_into(raw, String::new())
}

/// `decode_segment`, appended to `out` (a path decoded segment by segment
/// is built in one string).
pub fn decode_segment_into(raw: &str, mut out: String) -> std::result::Result<String, RouteError> {
    if !raw.contains('%') {
        // Nothing to decode (most segments): already UTF-8, copied as is.
        out.push_str(raw);
        return Ok(out);
    }
    check_escapes(raw).map_err(RouteError::Invalid)?;
    // Decoded straight onto `out`'s bytes: no intermediate copy.
    let mut bytes = out.into_bytes();
    bytes.extend(percent_decode_str(raw));
    String::from_utf8(bytes)
        .map_err(|_| RouteError::Invalid(format!("path segment {raw:?} is not UTF-8")))
}

fn check_escapes(raw: &str) -> std::result::Result<(), String> {
    let bytes = raw.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let ok = i + 2 < bytes.len()
                && bytes[i + 1].is_ascii_hexdigit()
                && bytes[i + 2].is_ascii_hexdigit();
            if !ok {
                return Err(format!("malformed percent escape in {raw:?}"));
            }
            i += 3;
        } else {
            i += 1;
        }
    }
    Ok(())
}

/// The one parameter that may appear more than once.
const MULTI_VALUED: &str = "private_token";

/// The query string: decoded pairs for handlers, and the raw pairs so a
/// `Link` header can repeat them exactly as the client sent them.
#[derive(Debug, Default, Clone)]
pub struct Query {
    pairs: Vec<(String, String)>,
    /// The query as sent; `raw_pairs` are byte ranges of it.
    raw: String,
    raw_pairs: Vec<(std::ops::Range<usize>, std::ops::Range<usize>)>,
}

impl Query {
    pub fn parse(raw: Option<&str>) -> Result<Query> {
        let raw = raw.unwrap_or("");
        let mut query = Query::default();
        let range = |part: &str| {
            let start = part.as_ptr() as usize - raw.as_ptr() as usize;
            start..start + part.len()
        };
        for part in raw.split('&').filter(|p| !p.is_empty()) {
            let (k, v) = part.split_once('=').unwrap_or((part, ""));
            let key = decode_query(k)?;
            // A parameter given twice (`ref=main&ref=develop`) is ambiguous:
            // which one a client meant is not ours to guess. Only a token
            // may repeat (the same one; `presented_token` checks that).
            if key != MULTI_VALUED && query.pairs.iter().any(|(seen, _)| *seen == key) {
                return Err(Error::invalid(format!(
                    "query parameter {key:?} is given more than once"
                )));
            }
            query.pairs.push((key, decode_query(v)?));
            let v = if v.is_empty() { 0..0 } else { range(v) };
            query.raw_pairs.push((range(k), v));
        }
        query.raw = raw.to_string();
        Ok(query)
    }

    /// The value of `key` (parameters other than `private_token` appear at
    /// most once: `parse` refuses repeats).
    pub fn get(&self, key: &str) -> Option<&str> {
        self.pairs
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// Every value of `key`, in order.
    pub fn get_all<'a>(&'a self, key: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.pairs
            .iter()
            .filter(move |(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    pub fn has(&self, key: &str) -> bool {
        self.get(key).is_some()
    }

    /// A boolean the GitLab way: `true/false/1/0/yes/no/t/f`, any case.
    /// Absent is `default`; anything else is a 400.
    pub fn flag(&self, key: &str, default: bool) -> Result<bool> {
        match self.get(key).map(str::to_ascii_lowercase).as_deref() {
            None | Some("") => Ok(default),
            Some("true" | "1" | "yes" | "t" | "on") => Ok(true),
            Some("false" | "0" | "no" | "f" | "off") => Ok(false),
            Some(other) => Err(Error::invalid(format!(
                "{key} is invalid: {other:?} is not a boolean"
            ))),
        }
    }

    /// A positive integer parameter; absent is `None`, garbage a 400.
    pub fn number(&self, key: &str) -> Result<Option<u64>> {
        match self.get(key) {
            None | Some("") => Ok(None),
            Some(v) => v
                .parse()
                .map(Some)
                .map_err(|_| Error::invalid(format!("{key} is invalid: {v:?}"))),
        }
    }

    /// The raw query with `page` set to `page`, every other parameter kept
    /// exactly as the client sent it.
    pub fn with_page(&self, page: u64) -> String {
        let mut parts: Vec<String> = Vec::with_capacity(self.raw_pairs.len() + 1);
        let mut replaced = false;
        for ((key, _), (raw_key, raw_value)) in self.pairs.iter().zip(&self.raw_pairs) {
            let (raw_key, raw_value) = (&self.raw[raw_key.clone()], &self.raw[raw_value.clone()]);
            if key == MULTI_VALUED {
                // A `Link` must never carry a secret on to the next request.
                continue;
            } else if key == "page" {
                if !replaced {
                    parts.push(format!("page={page}"));
                    replaced = true;
                }
            } else if raw_value.is_empty() && !raw_key.is_empty() {
                parts.push(format!("{raw_key}="));
            } else {
                parts.push(format!("{raw_key}={raw_value}"));
            }
        }
        if !replaced {
            parts.push(format!("page={page}"));
        }
        parts.join("&")
    }
}

fn decode_query(raw: &str) -> Result<String> {
    if !raw.contains(['%', '+']) {
        return Ok(raw.to_string()); // nothing to decode
    }
    check_escapes(raw).map_err(Error::Invalid)?;
    // Copied only when there is a `+` to turn into a space.
    let spaced = match raw.contains('+') {
        true => std::borrow::Cow::Owned(raw.replace('+', " ")),
        false => std::borrow::Cow::Borrowed(raw),
    };
    percent_decode_str(&spaced)
        .decode_utf8()
        .map(|s| s.into_owned())
        .map_err(|_| Error::invalid(format!("query parameter {raw:?} is not UTF-8")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments() {
        assert_eq!(decode_segment("a%2Fb").unwrap(), "a/b");
        assert_eq!(decode_segment("caf%C3%A9").unwrap(), "café");
        assert_eq!(decode_segment("a+b").unwrap(), "a+b");
        assert!(decode_segment("%").is_err());
        assert!(decode_segment("%2").is_err());
        assert!(decode_segment("%G0").is_err());
        assert!(decode_segment("%C3").is_err());
        assert_eq!(
            decode_segment("%00").unwrap(),
            "\0",
            "decoding is not validation: names reject NUL"
        );
    }

    #[test]
    fn queries() {
        let q = Query::parse(Some(
            "recursive=True&path=config%2Fapp+settings&ref=release%2F2024.1&search=%5Emain%24",
        ))
        .unwrap();
        assert_eq!(q.get("path"), Some("config/app settings"));
        assert_eq!(q.get("ref"), Some("release/2024.1"));
        assert_eq!(q.get("search"), Some("^main$"));
        assert!(q.flag("recursive", false).unwrap());
        for (v, want) in [
            ("1", true),
            ("true", true),
            ("TRUE", true),
            ("0", false),
            ("False", false),
            ("no", false),
        ] {
            assert_eq!(
                Query::parse(Some(&format!("r={v}")))
                    .unwrap()
                    .flag("r", !want)
                    .unwrap(),
                want
            );
        }
        assert!(Query::parse(Some("r=maybe"))
            .unwrap()
            .flag("r", false)
            .is_err());
        assert!(Query::parse(Some("a=%FF")).is_err());
        assert!(Query::parse(Some("a=%")).is_err());
        assert!(Query::parse(Some("page=x"))
            .unwrap()
            .number("page")
            .is_err());
    }

    #[test]
    fn next_page_repeats_every_parameter() {
        let q = Query::parse(Some("recursive=True&ref=main&per_page=20&page=1")).unwrap();
        assert_eq!(q.with_page(2), "recursive=True&ref=main&per_page=20&page=2");
        let q = Query::parse(Some("per_page=10&path=config%2Fapp+settings")).unwrap();
        assert_eq!(
            q.with_page(2),
            "per_page=10&path=config%2Fapp+settings&page=2"
        );
        let q = Query::parse(Some("private_token=s3cret&per_page=1")).unwrap();
        assert_eq!(q.with_page(2), "per_page=1&page=2", "no secret in a Link");
    }

    #[test]
    fn a_parameter_given_twice_is_refused() {
        let err = Query::parse(Some("ref=main&ref=develop")).unwrap_err();
        assert!(
            err.to_string().contains("\"ref\" is given more than once"),
            "{err}"
        );
        assert!(Query::parse(Some("ref=main&path=a&ref=main")).is_err());
        assert!(Query::parse(Some("private_token=a&private_token=a")).is_ok());
    }
}
