//! Sessions of the admin API and the web UI: login (with its throttle),
//! the session cookie, CSRF tokens, logout and "who am I".
//!
//! Every admin request but login carries the session cookie; every unsafe
//! one (POST, PUT, PATCH, DELETE) also carries `X-CSRF-Token`, an HMAC of
//! the session id under the server key, so it needs no storage and cannot
//! be forged without the cookie's value. Login itself refuses a cross-site
//! `Origin` and any body but JSON or the UI's form, so no other site can
//! log a visitor in to an account of its choosing.

use std::collections::HashMap;
use std::sync::Mutex;

use hyper::header::{self, HeaderValue};
use hyper::Response;
use serde::Deserialize;
use serde_json::json;
use subtle::ConstantTimeEq;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use super::request::Query;
use super::response::json;
use super::{App, Body, Request};
use crate::error::{Error, Result, Unauthorized};
use crate::names::OwnerName;
use crate::ops::{self, Actor};
use crate::store::backend::{Durability, RecordChange, Records};
use crate::store::users::UserRecord;
use crate::store::Store;
use sha2::Digest;

pub const COOKIE: &str = "cfgstore_session";

/// Failed logins allowed per user and per client address in the window.
const MAX_FAILURES_PER_USER: usize = 5;
const MAX_FAILURES_PER_IP: usize = 20;
const FAILURE_WINDOW: time::Duration = time::Duration::minutes(15);
/// Keys (users and addresses) the throttle remembers at once.
const MAX_THROTTLE_KEYS: usize = 50_000;

/// A logged-in user.
#[derive(Debug, Clone)]
pub struct Session {
    pub id: String,
    pub user: UserRecord,
}

impl Session {
    /// The actor for operations, seen from this request's client.
    pub fn actor(&self, req: &Request) -> Actor {
        req.actor(Actor::user(self.user.name.clone(), self.user.roles.clone()))
    }
}

/// The session id of the request's cookie. Several different values
/// (cookies tossed in by a sibling site, or two sessions) are ambiguous and
/// count as none: authentication fails closed.
fn session_cookie(parts: &hyper::http::request::Parts) -> Option<String> {
    let mut found: Option<String> = None;
    for value in parts.headers.get_all(header::COOKIE) {
        let Ok(value) = value.to_str() else { continue };
        for v in session_ids_in(value) {
            match &found {
                Some(seen) if seen != v => return None,
                _ => found = Some(v.to_string()),
            }
        }
    }
    found
}

/// The session id one `Cookie` header's value (`a=1; cfgstore_session=ID`)
/// names; `None` if none, or several different ones. Public for the fuzz
/// targets (`fuzz/`).
pub fn session_id_in_cookie_header(value: &str) -> Option<String> {
    let mut ids = session_ids_in(value);
    let first = ids.next()?;
    ids.all(|v| v == first).then(|| first.to_string())
}

fn session_ids_in(value: &str) -> impl Iterator<Item = &str> {
    value
        .split(';')
        .filter_map(|pair| pair.trim().split_once('='))
        .filter(|(name, _)| *name == COOKIE)
        .map(|(_, v)| v.trim())
}

fn parse_time(s: &str) -> Option<OffsetDateTime> {
    OffsetDateTime::parse(s, &Rfc3339).ok()
}

/// The session behind the request's cookie, checked against the idle and
/// absolute timeouts, the user's state and their last password change.
pub fn authenticate(app: &App, parts: &hyper::http::request::Parts) -> Result<Session> {
    let unauthorized = || Error::Unauthorized(Unauthorized::MissingToken);
    let id = session_cookie(parts).ok_or_else(unauthorized)?;
    let record = app.store.session(&id)?.ok_or_else(unauthorized)?;
    let now = app.now();
    let (Some(created), Some(seen)) = (
        parse_time(&record.created_at),
        parse_time(&record.last_seen_at),
    ) else {
        return Err(unauthorized());
    };
    if now - created > app.sessions.absolute_timeout || now - seen > app.sessions.idle_timeout {
        app.store.delete_session(&id)?;
        return Err(unauthorized());
    }
    let user = match app.store.user(&record.user) {
        Ok(user) => user,
        Err(Error::NotFound { .. }) => return Err(unauthorized()),
        Err(e) => return Err(e),
    };
    if user.disabled || record.created_at < user.password_changed_at {
        return Err(unauthorized());
    }
    // Coalesced: at most one write a minute per session.
    if now - seen > time::Duration::minutes(1) {
        app.store
            .touch_session(&id, &crate::store::format_time(now))?;
    }
    Ok(Session { id, user })
}

pub fn csrf_token(app: &App, session_id: &str) -> Result<String> {
    Ok(app
        .store
        .server_key()?
        .fingerprint_mac(&format!("csrf:{session_id}")))
}

/// Unsafe admin requests must echo the session's CSRF token.
pub fn check_csrf(app: &App, parts: &hyper::http::request::Parts, session: &Session) -> Result<()> {
    let expected = csrf_token(app, &session.id)?;
    let given = parts
        .headers
        .get("x-csrf-token")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    check_csrf_value(&expected, given)
}

/// A CSRF token as given (the header, or the UI form's hidden field)
/// against the session's, in constant time.
pub fn check_csrf_value(expected: &str, given: &str) -> Result<()> {
    if bool::from(given.as_bytes().ct_eq(expected.as_bytes())) {
        Ok(())
    } else {
        Err(Error::Forbidden("CSRF token missing or wrong".into()))
    }
}

// ----- login ------------------------------------------------------------

#[derive(Deserialize)]
struct LoginBody {
    username: String,
    password: String,
}

pub fn login(app: &App, req: &Request) -> Result<Response<Body>> {
    check_same_origin(app, req)?;
    let body = parse_login(req)?;
    let (id, user) = sign_in(app, req, &body.username, &body.password)?;
    let mut r = json(&json!({
        "username": user.name,
        "roles": user.roles,
        "csrf_token": csrf_token(app, &id)?,
    }));
    r.headers_mut()
        .insert(header::SET_COOKIE, session_cookie_header(app, &id));
    Ok(r)
}

/// Checks a user name and password against the throttle and the user
/// records and starts a session: its id and the user. The API's login and
/// the web UI's form both come here.
pub fn sign_in(
    app: &App,
    req: &Request,
    username: &str,
    password: &str,
) -> Result<(String, UserRecord)> {
    // Only a name that could be a user gets a throttle entry of its own:
    // a megabyte "name" must not cost a megabyte of memory.
    let name = OwnerName::parse(username).ok();
    let ip = req.client_ip.map(|ip| ip.to_string()).unwrap_or_default();
    let mut keys = vec![(format!("ip:{ip}"), MAX_FAILURES_PER_IP)];
    if let Some(name) = &name {
        keys.push((format!("user:{name}"), MAX_FAILURES_PER_USER));
    }
    let now = app.now();
    app.logins.begin(&app.store, &keys, now)?;
    let user = name.as_ref().and_then(|name| app.store.user(name).ok());
    let valid =
        crate::auth::passwords::verify(password, user.as_ref().map(|u| u.password_hash.as_str()));
    let user = match user {
        Some(user) if valid && !user.disabled => user,
        _ => {
            let actor = match &user {
                Some(u) => req.actor(Actor::user(u.name.clone(), Vec::new())),
                None => req.actor(Actor::anonymous()),
            };
            ops::users::login_failed(&app.store, &actor, user.as_ref().map(|u| &u.name));
            return Err(Error::Unauthorized(Unauthorized::UnknownToken));
        }
    };
    app.logins.succeeded(&app.store, &keys, now);
    let actor = req.actor(Actor::user(user.name.clone(), user.roles.clone()));
    let id = ops::users::start_session(&app.store, &actor, &user)?;
    Ok((id, user))
}

/// `Set-Cookie` for a new session: HttpOnly, SameSite=Strict, Secure when
/// configured.
pub fn session_cookie_header(app: &App, id: &str) -> HeaderValue {
    let secure = if app.sessions.secure_cookie {
        "; Secure"
    } else {
        ""
    };
    let cookie = format!("{COOKIE}={id}; Path=/; HttpOnly; SameSite=Strict{secure}");
    HeaderValue::from_str(&cookie).expect("cookie is ASCII")
}

/// `Set-Cookie` that removes the session cookie.
pub fn cleared_cookie_header() -> HeaderValue {
    let cookie = format!("{COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0");
    HeaderValue::from_str(&cookie).expect("cookie is ASCII")
}

/// A browser sends `Origin` (and `Sec-Fetch-Site`) with a cross-site POST:
/// a login from another site's page is refused, so it cannot sign a
/// visitor in to an account of the attacker's (login CSRF). Clients that
/// are not browsers send neither.
fn check_same_origin(app: &App, req: &Request) -> Result<()> {
    same_origin(
        app,
        req.parts,
        req.peer,
        "a login from another site is refused",
    )
}

/// `check_same_origin` for any request: refused with `refusal` when a
/// browser says it comes from another site. The web UI's forms are held
/// to it too.
pub fn same_origin(
    app: &App,
    parts: &hyper::http::request::Parts,
    peer: Option<std::net::SocketAddr>,
    refusal: &str,
) -> Result<()> {
    let header = |name| {
        parts
            .headers
            .get(name)
            .map(|v| v.to_str().unwrap_or("(not text)"))
    };
    let refused = || Error::Forbidden(refusal.into());
    let fetch_site = header("sec-fetch-site");
    if matches!(fetch_site, Some("cross-site" | "same-site")) {
        return Err(refused());
    }
    match header("origin") {
        None => Ok(()),
        // A page with `Referrer-Policy: no-referrer` (the UI's) makes a
        // browser send `Origin: null` with its forms; `Sec-Fetch-Site`
        // still says where the form came from.
        Some("null") if fetch_site == Some("same-origin") => Ok(()),
        Some(origin) if origin == app.origin(parts, peer) => Ok(()),
        Some(_) => Err(refused()),
    }
}

/// JSON `{username, password}`, or the web UI's form. A body sent without
/// a content type is read as JSON (what scripts send); anything else —
/// `text/plain` above all, the one a cross-site page can send without
/// asking — is refused.
fn parse_login(req: &Request) -> Result<LoginBody> {
    let content_type = req
        .parts
        .headers
        .get(header::CONTENT_TYPE)
        .map(|v| v.to_str().unwrap_or("(not text)").to_ascii_lowercase());
    let media = content_type
        .as_deref()
        .map(|c| c.split(';').next().unwrap_or("").trim().to_string());
    match media.as_deref() {
        None | Some("application/json") => super::admin::parse_json(req),
        Some("application/x-www-form-urlencoded") => {
            let text =
                std::str::from_utf8(&req.body).map_err(|_| Error::invalid("body is not UTF-8"))?;
            let form = Query::parse(Some(text))?;
            let field = |k: &str| {
                form.get(k)
                    .map(str::to_string)
                    .ok_or_else(|| Error::invalid(format!("{k} is missing")))
            };
            Ok(LoginBody {
                username: field("username")?,
                password: field("password")?,
            })
        }
        Some(other) => Err(Error::UnsupportedMediaType(format!(
            "a login is application/json (or the web UI's form), not {other}"
        ))),
    }
}

pub fn logout(app: &App, req: &Request, s: &Session) -> Result<Response<Body>> {
    ops::users::end_session(&app.store, &s.actor(req), &s.user.name, &s.id)?;
    let mut r = json(&json!({ "status": "logged out" }));
    r.headers_mut()
        .insert(header::SET_COOKIE, cleared_cookie_header());
    Ok(r)
}

pub fn me(app: &App, s: &Session) -> Result<Response<Body>> {
    Ok(json(&json!({
        "username": s.user.name,
        "roles": s.user.roles,
        "csrf_token": csrf_token(app, &s.id)?,
    })))
}

// ----- the throttle -------------------------------------------------------

/// Recent failed logins per key (`user:{name}`, `ip:{addr}`). An attempt
/// takes its place in the count *before* its password is checked and gives
/// it back only on success, so logins sent all at once are judged no more
/// than the limit allows: the rest are 429 without a password check.
///
/// One daemon on a data directory counts in memory. Daemons sharing a
/// store in a database count in it (`Records::Logins`), each judgement one
/// change of those records, so the limit holds across every node.
#[derive(Default)]
pub(crate) struct LoginThrottle {
    failures: Mutex<HashMap<String, Vec<OffsetDateTime>>>,
    /// When expired records were last removed from the store.
    swept: Mutex<Option<OffsetDateTime>>,
}

/// Where the failure times of a key are kept: memory or the store.
trait FailureTimes {
    fn times(&mut self, key: &str) -> Result<Vec<OffsetDateTime>>;
    fn set(&mut self, key: &str, times: Vec<OffsetDateTime>) -> Result<()>;
    fn forget(&mut self, key: &str) -> Result<()>;
}

/// Counts an attempt against every key, or refuses it (429) if any key is
/// at its limit.
fn judge(at: &mut dyn FailureTimes, keys: &[(String, usize)], now: OffsetDateTime) -> Result<()> {
    let mut current = Vec::with_capacity(keys.len());
    for (key, limit) in keys {
        let mut times = at.times(key)?;
        times.retain(|t| now - *t < FAILURE_WINDOW);
        if times.len() >= *limit {
            let retry = (times[0] + FAILURE_WINDOW - now).whole_seconds().max(1) as u64;
            return Err(Error::TooManyRequests { retry_after: retry });
        }
        current.push(times);
    }
    for ((key, _), mut times) in keys.iter().zip(current) {
        times.push(now);
        at.set(key, times)?;
    }
    Ok(())
}

/// A successful login: the user's failures are forgotten, and the attempt
/// no longer counts against the address.
fn give_back(
    at: &mut dyn FailureTimes,
    keys: &[(String, usize)],
    when: OffsetDateTime,
) -> Result<()> {
    for (key, _) in keys {
        if key.starts_with("user:") {
            at.forget(key)?;
        } else {
            let mut times = at.times(key)?;
            if let Some(i) = times.iter().position(|t| *t == when) {
                times.remove(i);
                at.set(key, times)?;
            }
        }
    }
    Ok(())
}

/// In memory, bounded (`MAX_THROTTLE_KEYS`).
impl FailureTimes for HashMap<String, Vec<OffsetDateTime>> {
    fn times(&mut self, key: &str) -> Result<Vec<OffsetDateTime>> {
        Ok(self.get(key).cloned().unwrap_or_default())
    }

    fn set(&mut self, key: &str, times: Vec<OffsetDateTime>) -> Result<()> {
        if !self.contains_key(key) && self.len() >= MAX_THROTTLE_KEYS {
            let now = times
                .last()
                .copied()
                .unwrap_or_else(OffsetDateTime::now_utc);
            make_room(self, now);
        }
        self.insert(key.to_string(), times);
        Ok(())
    }

    fn forget(&mut self, key: &str) -> Result<()> {
        self.remove(key);
        Ok(())
    }
}

/// In the store: a record per key (the hex SHA-256 of it: an address or a
/// name never becomes a file name), its times as unix nanoseconds.
struct InRecords<'a>(&'a mut dyn RecordChange);

fn login_key(key: &str) -> String {
    crate::hex::encode(&sha2::Sha256::digest(key.as_bytes()))
}

fn parse_times(bytes: &[u8]) -> Vec<OffsetDateTime> {
    serde_json::from_slice::<Vec<i64>>(bytes)
        .unwrap_or_default()
        .into_iter()
        .filter_map(|n| OffsetDateTime::from_unix_timestamp_nanos(n.into()).ok())
        .collect()
}

impl FailureTimes for InRecords<'_> {
    fn times(&mut self, key: &str) -> Result<Vec<OffsetDateTime>> {
        Ok(self
            .0
            .get(&login_key(key))?
            .map_or_else(Vec::new, |b| parse_times(&b)))
    }

    fn set(&mut self, key: &str, times: Vec<OffsetDateTime>) -> Result<()> {
        let nanos: Vec<i64> = times
            .iter()
            .map(|t| t.unix_timestamp_nanos() as i64)
            .collect();
        let bytes = serde_json::to_vec(&nanos).expect("times serialise");
        self.0.put(&login_key(key), &bytes, Durability::Lazy)
    }

    fn forget(&mut self, key: &str) -> Result<()> {
        self.0.remove(&login_key(key))
    }
}

/// How often a daemon on a shared store removes expired failure records.
const SWEEP_EVERY: time::Duration = time::Duration::minutes(1);

impl LoginThrottle {
    fn begin(&self, store: &Store, keys: &[(String, usize)], now: OffsetDateTime) -> Result<()> {
        if store.on_database() {
            return store
                .backend()
                .change(Records::Logins, |r| judge(&mut InRecords(r), keys, now));
        }
        judge(
            &mut *self.failures.lock().expect("login throttle"),
            keys,
            now,
        )
    }

    fn succeeded(&self, store: &Store, keys: &[(String, usize)], at: OffsetDateTime) {
        let given_back = if store.on_database() {
            store
                .backend()
                .change(Records::Logins, |r| give_back(&mut InRecords(r), keys, at))
        } else {
            give_back(
                &mut *self.failures.lock().expect("login throttle"),
                keys,
                at,
            )
        };
        if let Err(e) = given_back {
            tracing::warn!(error = %e, "could not give a login attempt back to the throttle");
        }
    }

    /// On a shared store, at most once a minute: removes the records whose
    /// failures are all older than the window (`App::flush`).
    pub(crate) fn sweep(&self, store: &Store, now: OffsetDateTime) -> Result<()> {
        if !store.on_database() {
            return Ok(());
        }
        {
            let mut swept = self.swept.lock().expect("login throttle");
            if swept.is_some_and(|t| now - t < SWEEP_EVERY) {
                return Ok(());
            }
            *swept = Some(now);
        }
        store.backend().change(Records::Logins, |r| {
            for (key, bytes) in r.list()? {
                if parse_times(&bytes)
                    .iter()
                    .all(|t| now - *t >= FAILURE_WINDOW)
                {
                    r.remove(&key)?;
                }
            }
            Ok(())
        })
    }
}

/// Drops expired entries; if every entry is live, the one whose newest
/// failure is oldest.
fn make_room(failures: &mut HashMap<String, Vec<OffsetDateTime>>, now: OffsetDateTime) {
    failures.retain(|_, times| times.iter().any(|t| now - *t < FAILURE_WINDOW));
    if failures.len() >= MAX_THROTTLE_KEYS {
        if let Some(oldest) = failures
            .iter()
            .min_by_key(|(_, times)| times.last().copied())
            .map(|(k, _)| k.clone())
        {
            failures.remove(&oldest);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    impl LoginThrottle {
        /// `begin` for one daemon on a data directory: in memory.
        fn begin_here(&self, keys: &[(String, usize)], now: OffsetDateTime) -> Result<()> {
            judge(&mut *self.failures.lock().unwrap(), keys, now)
        }
    }

    #[test]
    fn attempts_at_once_are_judged_no_more_than_the_limit() {
        let throttle = LoginThrottle::default();
        let now = OffsetDateTime::now_utc();
        let keys = [
            ("ip:127.0.0.1".to_string(), MAX_FAILURES_PER_IP),
            ("user:demo".to_string(), MAX_FAILURES_PER_USER),
        ];
        let admitted = (0..60)
            .filter(|_| throttle.begin_here(&keys, now).is_ok())
            .count();
        assert_eq!(admitted, MAX_FAILURES_PER_USER);
        // After the window, attempts are judged again.
        assert!(throttle.begin_here(&keys, now + FAILURE_WINDOW).is_ok());
    }

    #[test]
    fn a_success_gives_its_place_back() {
        let throttle = LoginThrottle::default();
        let now = OffsetDateTime::now_utc();
        let keys = [
            ("ip:10.0.0.1".to_string(), MAX_FAILURES_PER_IP),
            ("user:demo".to_string(), MAX_FAILURES_PER_USER),
        ];
        for _ in 0..10 {
            throttle.begin_here(&keys, now).unwrap();
            give_back(&mut *throttle.failures.lock().unwrap(), &keys, now).unwrap();
        }
        let failures = throttle.failures.lock().unwrap();
        assert!(failures["ip:10.0.0.1"].is_empty());
        assert!(!failures.contains_key("user:demo"));
    }

    #[test]
    fn the_throttle_is_bounded() {
        let throttle = LoginThrottle::default();
        let now = OffsetDateTime::now_utc();
        for i in 0..MAX_THROTTLE_KEYS + 100 {
            let keys = [(format!("user:u{i}"), MAX_FAILURES_PER_USER)];
            throttle.begin_here(&keys, now).unwrap();
        }
        assert!(throttle.failures.lock().unwrap().len() <= MAX_THROTTLE_KEYS);
    }
}
