//! Authentication and authorization decisions. No I/O of its own: records
//! come from the store, the clock from the caller.
//!
//! Read tokens (SPEC §5) are 64 lowercase hex characters from the OS CSPRNG.
//! Only their HMAC-SHA256 under the server key is stored, so a copied data
//! directory without the key reveals nothing; fingerprints (`X-Instance-Id`)
//! are stored the same way and compared in constant time.

pub mod passwords;
pub mod roles;

use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use subtle::ConstantTimeEq;
use time::OffsetDateTime;

use crate::error::{Error, Result, Unauthorized};
use crate::hex::encode as hex;
use crate::names::{OwnerName, ProjectRef, RepoId};

/// The secret key tokens and fingerprints are hashed under, kept as the
/// HMAC state after the key (a MAC per request then costs the message's
/// blocks only, not the key's two).
#[derive(Clone)]
pub struct ServerKey(Hmac<Sha256>);

impl ServerKey {
    /// Parses the 64-hex-digit key file content.
    pub fn from_hex(text: &str) -> Option<ServerKey> {
        let text = text.trim();
        // Checked digit by digit: `from_str_radix` alone would take "+f".
        if text.len() != 64 || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        let mut key = [0u8; 32];
        for (i, chunk) in text.as_bytes().chunks(2).enumerate() {
            let digits = std::str::from_utf8(chunk).ok()?;
            key[i] = u8::from_str_radix(digits, 16).ok()?;
        }
        Some(ServerKey(
            Hmac::<Sha256>::new_from_slice(&key).expect("HMAC takes any key length"),
        ))
    }

    fn mac_bytes(&self, domain: &str, value: &[u8]) -> [u8; 32] {
        let mut mac = self.0.clone();
        mac.update(domain.as_bytes());
        mac.update(value);
        mac.finalize().into_bytes().into()
    }

    fn mac(&self, domain: &str, value: &[u8]) -> String {
        hex(&self.mac_bytes(domain, value))
    }

    /// The stored form of a token (hex of `token_mac_bytes`), also the
    /// name of its record.
    pub fn token_mac(&self, token: &str) -> String {
        hex(&self.token_mac_bytes(token))
    }

    /// A token's MAC as bytes: the daemon's cache key, so a request is
    /// looked up without encoding it.
    pub fn token_mac_bytes(&self, token: &str) -> [u8; 32] {
        self.mac_bytes("token:", token.as_bytes())
    }

    /// The stored form of a bound fingerprint.
    pub fn fingerprint_mac(&self, instance_id: &str) -> String {
        self.mac("fingerprint:", instance_id.as_bytes())
    }

    /// How the fleet view names an `X-Instance-Id` (`i-` and 12 hex
    /// digits): the id is half of a fingerprint-bound credential, so it is
    /// never stored or shown in clear; the label tells instances apart and
    /// is found again from the id (`cfgstore fleet --instance`).
    pub fn instance_label(&self, instance_id: &str) -> String {
        format!("i-{}", &self.mac("instance:", instance_id.as_bytes())[..12])
    }
}

impl std::fmt::Debug for ServerKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ServerKey(..)")
    }
}

/// A new secret: 32 bytes from the OS CSPRNG as 64 lowercase hex digits.
pub fn new_secret() -> Result<String> {
    let mut bytes = [0u8; 32];
    getrandom::getrandom(&mut bytes)
        .map_err(|e| Error::io("getrandom", std::io::Error::other(e)))?;
    Ok(hex(&bytes))
}

/// Whether a string looks like a token at all (cheap reject before any I/O).
pub fn is_token_shaped(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// A read token as stored: never the secret, only its MAC.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenRecord {
    pub id: String,
    pub owner: OwnerName,
    pub name: String,
    /// Exact repoIds of the owner; empty means every project of the owner.
    pub repos: Vec<RepoId>,
    /// `YYYY-MM-DD` (expires at 00:00 UTC that day) or RFC 3339.
    pub expires_at: Option<String>,
    pub fingerprint_required: bool,
    /// MAC of the bound `X-Instance-Id`, once the first request bound one.
    pub fingerprint: Option<String>,
    pub created_at: String,
    pub last_used_at: Option<String>,
    /// The last characters of the secret, for telling tokens apart.
    pub suffix: String,
    /// MAC of the secret: the lookup key.
    pub mac: String,
    pub revoked_at: Option<String>,
    /// Set on a token that was rotated: its successor's id.
    pub rotated_to: Option<String>,
}

/// The fields of a token a listing may show: never the MAC, never the
/// fingerprint.
#[derive(Debug, Clone, Serialize)]
pub struct TokenView {
    pub id: String,
    pub owner: String,
    pub name: String,
    pub repos: Vec<String>,
    pub expires_at: Option<String>,
    pub fingerprint_required: bool,
    pub fingerprint_bound: bool,
    pub created_at: String,
    pub last_used_at: Option<String>,
    pub suffix: String,
    pub revoked: bool,
    pub active: bool,
    pub rotated_to: Option<String>,
}

impl TokenRecord {
    /// Whether two readings of one token (`None`: no such token) are the
    /// same but perhaps for `last_used_at`: the one field written without
    /// telling read caches (`Store::record_token_use`), because no
    /// authorization decision reads it.
    pub fn same_but_last_use(a: Option<&TokenRecord>, b: Option<&TokenRecord>) -> bool {
        let unused = |r: &TokenRecord| TokenRecord {
            last_used_at: None,
            ..r.clone()
        };
        match (a, b) {
            (Some(a), Some(b)) => unused(a) == unused(b),
            (a, b) => a.is_none() && b.is_none(),
        }
    }

    pub fn view(&self, now: OffsetDateTime) -> TokenView {
        TokenView {
            id: self.id.clone(),
            owner: self.owner.to_string(),
            name: self.name.clone(),
            repos: self.repos.iter().map(|r| r.to_string()).collect(),
            expires_at: self.expires_at.clone(),
            fingerprint_required: self.fingerprint_required,
            fingerprint_bound: self.fingerprint.is_some(),
            created_at: self.created_at.clone(),
            last_used_at: self.last_used_at.clone(),
            suffix: format!("…{}", self.suffix),
            revoked: self.revoked_at.is_some(),
            active: self.check_valid(now).is_ok(),
            rotated_to: self.rotated_to.clone(),
        }
    }

    /// Revoked or expired tokens are refused (401).
    pub fn check_valid(&self, now: OffsetDateTime) -> Result<()> {
        if self.revoked_at.is_some() {
            return Err(Error::Unauthorized(Unauthorized::UnknownToken));
        }
        if let Some(expiry) = &self.expires_at {
            // An unparseable expiry fails closed.
            match parse_expiry(expiry) {
                Ok(at) if now < at => {}
                _ => return Err(Error::Unauthorized(Unauthorized::Expired)),
            }
        }
        Ok(())
    }

    /// Whether this token may read `project`: the public area always; the
    /// owner's own projects when the allowlist is empty or names the repo;
    /// never another owner's.
    pub fn covers(&self, project: &ProjectRef) -> bool {
        if project.owner.is_public() {
            return true;
        }
        project.owner == self.owner && (self.repos.is_empty() || self.repos.contains(&project.repo))
    }
}

/// What the fingerprint check decided for one request.
#[derive(Debug, PartialEq, Eq)]
pub enum FingerprintCheck {
    /// The token does not require a fingerprint, or the bound one matches.
    Pass,
    /// The token requires one and none is bound yet: bind this MAC.
    Bind(String),
}

/// Compares the request's `X-Instance-Id` with the token's binding in
/// constant time.
pub fn check_fingerprint(
    key: &ServerKey,
    record: &TokenRecord,
    instance_id: Option<&str>,
) -> Result<FingerprintCheck> {
    if !record.fingerprint_required {
        return Ok(FingerprintCheck::Pass);
    }
    let Some(instance_id) = instance_id.filter(|s| !s.is_empty()) else {
        return Err(Error::Unauthorized(Unauthorized::FingerprintMissing));
    };
    let presented = key.fingerprint_mac(instance_id);
    match &record.fingerprint {
        None => Ok(FingerprintCheck::Bind(presented)),
        Some(bound) if bool::from(bound.as_bytes().ct_eq(presented.as_bytes())) => {
            Ok(FingerprintCheck::Pass)
        }
        Some(_) => Err(Error::Unauthorized(Unauthorized::FingerprintMismatch)),
    }
}

/// Parses an expiry: a date means 00:00 UTC of that date.
pub fn parse_expiry(text: &str) -> Result<OffsetDateTime> {
    use time::format_description::well_known::Rfc3339;
    let bad = || {
        Error::invalid(format!(
            "invalid expiry {text:?}: use YYYY-MM-DD or an RFC 3339 time"
        ))
    };
    if text.len() == 10 {
        let format = time::macros::format_description!("[year]-[month]-[day]");
        let date = time::Date::parse(text, &format).map_err(|_| bad())?;
        return Ok(date.midnight().assume_utc());
    }
    OffsetDateTime::parse(text, &Rfc3339).map_err(|_| bad())
}

/// Parses a duration such as `30s`, `15m`, `24h`, `7d`. The unit is
/// required: a bare `1` could mean a second or a day, and a grace period
/// misread by that much cuts an ERP off or leaves a leaked token alive.
pub fn parse_duration(text: &str) -> Result<time::Duration> {
    let bad = || {
        Error::invalid(format!(
            "invalid duration {text:?}: use e.g. 30s, 15m, 24h, 7d"
        ))
    };
    let (digits, unit) = text.split_at(
        text.find(|c: char| !c.is_ascii_digit())
            .unwrap_or(text.len()),
    );
    let n: i64 = digits.parse().map_err(|_| bad())?;
    let seconds = match unit {
        "s" => n,
        "m" => n.checked_mul(60).ok_or_else(bad)?,
        "h" => n.checked_mul(3600).ok_or_else(bad)?,
        "d" => n.checked_mul(86_400).ok_or_else(bad)?,
        _ => return Err(bad()),
    };
    Ok(time::Duration::seconds(seconds))
}

/// The successor name for a rotation: `name` → `name-v2` → `name-v3`.
pub fn successor_name(name: &str) -> String {
    if let Some((base, n)) = name.rsplit_once("-v") {
        if let Ok(n) = n.parse::<u32>() {
            if n >= 2 && !n.to_string().starts_with('0') {
                return format!("{base}-v{}", n + 1);
            }
        }
    }
    format!("{name}-v2")
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    fn record() -> TokenRecord {
        TokenRecord {
            id: "t1".into(),
            owner: OwnerName::parse("demo").unwrap(),
            name: "erp".into(),
            repos: vec![],
            expires_at: None,
            fingerprint_required: false,
            fingerprint: None,
            created_at: "2026-01-01T00:00:00Z".into(),
            last_used_at: None,
            suffix: "abcd".into(),
            mac: "00".into(),
            revoked_at: None,
            rotated_to: None,
        }
    }

    #[test]
    fn expiry_at_the_boundary() {
        let mut r = record();
        r.expires_at = Some("2027-03-01".into());
        assert!(r.check_valid(datetime!(2027-02-28 23:59:59 UTC)).is_ok());
        assert!(r.check_valid(datetime!(2027-03-01 00:00:00 UTC)).is_err());
        r.expires_at = Some("2027-03-01T12:00:00+02:00".into());
        assert!(r.check_valid(datetime!(2027-03-01 09:59:59 UTC)).is_ok());
        assert!(r.check_valid(datetime!(2027-03-01 10:00:00 UTC)).is_err());
        r.expires_at = Some("garbage".into());
        assert!(
            r.check_valid(datetime!(2020-01-01 00:00:00 UTC)).is_err(),
            "fails closed"
        );
        r.expires_at = None;
        r.revoked_at = Some("2026-01-01T00:00:00Z".into());
        assert!(r.check_valid(datetime!(2020-01-01 00:00:00 UTC)).is_err());
    }

    #[test]
    fn scope() {
        let p = |s| ProjectRef::parse(s).unwrap();
        let mut r = record();
        assert!(r.covers(&p("demo/a.cfg")));
        assert!(r.covers(&p("public/units.cfg")));
        assert!(!r.covers(&p("demoo/a.cfg")));
        assert!(!r.covers(&p("other/a.cfg")));
        r.repos = vec![RepoId::parse("a.cfg").unwrap()];
        assert!(r.covers(&p("demo/a.cfg")));
        assert!(!r.covers(&p("demo/a.cfg2")));
        assert!(!r.covers(&p("demo/b.cfg")));
        assert!(r.covers(&p("public/b.cfg")));
    }

    #[test]
    fn fingerprints() {
        let key = ServerKey::from_hex(&"ab".repeat(32)).unwrap();
        let mut r = record();
        assert_eq!(
            check_fingerprint(&key, &r, None).unwrap(),
            FingerprintCheck::Pass
        );
        r.fingerprint_required = true;
        assert!(matches!(
            check_fingerprint(&key, &r, None),
            Err(Error::Unauthorized(Unauthorized::FingerprintMissing))
        ));
        let FingerprintCheck::Bind(mac) = check_fingerprint(&key, &r, Some("host-a")).unwrap()
        else {
            panic!()
        };
        r.fingerprint = Some(mac);
        assert_eq!(
            check_fingerprint(&key, &r, Some("host-a")).unwrap(),
            FingerprintCheck::Pass
        );
        assert!(matches!(
            check_fingerprint(&key, &r, Some("host-b")),
            Err(Error::Unauthorized(Unauthorized::FingerprintMismatch))
        ));
    }

    #[test]
    fn macs_depend_on_key_and_domain() {
        let a = ServerKey::from_hex(&"01".repeat(32)).unwrap();
        let b = ServerKey::from_hex(&"02".repeat(32)).unwrap();
        assert_ne!(a.token_mac("x"), b.token_mac("x"));
        assert_ne!(a.token_mac("x"), a.fingerprint_mac("x"));
        assert_eq!(a.token_mac("x").len(), 64);
        assert!(ServerKey::from_hex("short").is_none());
    }

    #[test]
    fn durations_and_names() {
        assert_eq!(parse_duration("90s").unwrap(), time::Duration::seconds(90));
        assert!(parse_duration("90").is_err(), "a duration has a unit");
        assert_eq!(parse_duration("15m").unwrap(), time::Duration::minutes(15));
        assert_eq!(parse_duration("7d").unwrap(), time::Duration::days(7));
        assert!(parse_duration("1w").is_err());
    }

    /// Found by the `auth_config` fuzz target: `u8::from_str_radix("+0", 16)`
    /// is Ok, so a key file with `+` signs in it was taken as a key.
    #[test]
    fn a_key_file_is_64_hex_digits_and_nothing_else() {
        let hex = "0123456789abcdef".repeat(4);
        assert!(ServerKey::from_hex(&hex).is_some());
        assert!(ServerKey::from_hex(&format!("{hex}\n")).is_some());
        assert!(ServerKey::from_hex(&hex.to_uppercase()).is_some());
        let plus = format!("+0{}", &hex[2..]);
        assert!(ServerKey::from_hex(&plus).is_none(), "{plus}");
        assert!(ServerKey::from_hex(&format!("-0{}", &hex[2..])).is_none());
        assert!(ServerKey::from_hex(&hex[1..]).is_none());
        assert!(ServerKey::from_hex(&format!("g{}", &hex[1..])).is_none());
        assert!(parse_duration("").is_err());
        assert_eq!(successor_name("erp"), "erp-v2");
        assert_eq!(successor_name("erp-v2"), "erp-v3");
        assert_eq!(successor_name("erp-v9"), "erp-v10");
        assert_eq!(successor_name("my-vpn"), "my-vpn-v2");
        assert!(is_token_shaped(&"a1".repeat(32)));
        assert!(!is_token_shaped(&"A1".repeat(32)));
    }
}
