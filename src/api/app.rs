//! `App`: the daemon's state shared by every request — the store, the
//! clock, session and proxy settings, metrics, and the little in-memory
//! bookkeeping (token uses not yet written, login failures, refusals per
//! address).

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};

use hyper::header::HeaderName;
use hyper::http::request::Parts;
use time::OffsetDateTime;

use super::session::LoginThrottle;
use crate::config::Config;
use crate::error::Result;
use crate::ops::audit::DeniedLimiter;
use crate::store::{Location, Store};

/// The clock, injectable so tests can stand at an expiry boundary.
pub type Clock = Arc<dyn Fn() -> OffsetDateTime + Send + Sync>;

/// Everything a request handler needs.
pub struct App {
    pub store: Arc<Store>,
    pub clock: Clock,
    pub sessions: SessionOptions,
    pub metrics: crate::metrics::Metrics,
    /// The URL clients reach us by (behind a proxy), for `Link` headers.
    pub external_url: Option<String>,
    /// Proxies whose `X-Forwarded-*` headers are believed.
    pub trusted_proxies: Vec<IpAddr>,
    /// Token uses not yet written to disk: MAC → last use.
    /// By token MAC (foldhash: looked up on every read; see Cargo.toml).
    token_uses: Mutex<HashMap<String, OffsetDateTime, foldhash::fast::RandomState>>,
    /// Failed logins per user and per client address.
    pub(crate) logins: LoginThrottle,
    /// Refusals written to the audit trail per client address.
    pub(crate) denied: DeniedLimiter,
    /// What long polls wait on (`poll.rs`).
    pub changes: super::poll::Changes,
    /// Which client read which state (`crate::fleet`), written by `flush`.
    pub fleet: crate::fleet::Fleet,
}

/// Session cookie settings and timeouts.
#[derive(Debug, Clone)]
pub struct SessionOptions {
    /// A session unused this long ends.
    pub idle_timeout: time::Duration,
    /// A session ends this long after login, used or not.
    pub absolute_timeout: time::Duration,
    /// Mark the cookie `Secure` (set when served over TLS, e.g. behind a
    /// TLS-terminating proxy).
    pub secure_cookie: bool,
}

impl Default for SessionOptions {
    fn default() -> Self {
        SessionOptions {
            idle_timeout: time::Duration::hours(2),
            absolute_timeout: time::Duration::hours(24),
            secure_cookie: false,
        }
    }
}

const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");

impl App {
    /// The daemon as `cfgstore serve` runs it, `cfgstore demo` and the
    /// tests alike: the store at `config.data_dir` opened with the read
    /// cache, its server key checked, every setting applied.
    pub fn from_config(config: &Config, clock: Clock) -> Result<App> {
        let location = config
            .store
            .clone()
            .unwrap_or_else(|| Location::Dir(config.data_dir.clone()));
        let store = open_for_serving(&location, config)?;
        let mut app = App::with_clock(Arc::new(store), clock);
        app.configure(config);
        Ok(app)
    }

    pub fn new(store: Arc<Store>) -> App {
        App::with_clock(store, Arc::new(OffsetDateTime::now_utc))
    }

    pub fn with_clock(store: Arc<Store>, clock: Clock) -> App {
        App {
            store,
            clock,
            sessions: SessionOptions::default(),
            metrics: crate::metrics::Metrics::default(),
            external_url: None,
            trusted_proxies: Vec::new(),
            token_uses: Mutex::new(HashMap::default()),
            logins: LoginThrottle::default(),
            denied: DeniedLimiter::default(),
            changes: Default::default(),
            fleet: Default::default(),
        }
    }

    /// Applies the daemon's configuration (sessions, proxy settings).
    pub fn configure(&mut self, config: &Config) {
        let seconds = |d: std::time::Duration| time::Duration::seconds(d.as_secs() as i64);
        self.sessions = SessionOptions {
            idle_timeout: seconds(config.session_idle_timeout),
            absolute_timeout: seconds(config.session_absolute_timeout),
            secure_cookie: config.secure_cookies,
        };
        self.external_url = config.external_url.clone();
        self.trusted_proxies = config.trusted_proxies.clone();
    }

    pub fn now(&self) -> OffsetDateTime {
        (self.clock)()
    }

    fn trusts(&self, peer: Option<SocketAddr>) -> bool {
        peer.is_some_and(|p| self.trusted_proxies.contains(&p.ip()))
    }

    /// `scheme://host[:port]` as the client sees us: the configured
    /// external URL, else what a trusted proxy forwarded, else `Host`.
    pub fn origin(&self, parts: &Parts, peer: Option<SocketAddr>) -> String {
        if let Some(url) = &self.external_url {
            return url.trim_end_matches('/').to_string();
        }
        // Forwarded headers count only from a trusted proxy: from anyone
        // else they are not even looked up.
        let trusted = self.trusts(peer);
        let header = |name: &HeaderName| {
            parts
                .headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::trim)
        };
        let forwarded_host = trusted
            .then(|| header(&X_FORWARDED_HOST))
            .flatten()
            .filter(|h| {
                !h.is_empty()
                    && h.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b".-:[]_".contains(&b))
            });
        let scheme = match trusted.then(|| header(&X_FORWARDED_PROTO)).flatten() {
            Some("https") => "https",
            _ => "http",
        };
        let host = forwarded_host
            .or_else(|| super::response::host_header(parts))
            .unwrap_or("localhost");
        format!("{scheme}://{host}")
    }

    /// The client's address: the peer, or behind a trusted proxy the last
    /// address in `X-Forwarded-For` that is not itself a trusted proxy
    /// (the ones before it are the client's word, not the proxy's).
    pub fn client_ip(&self, parts: &Parts, peer: Option<SocketAddr>) -> Option<IpAddr> {
        let peer_ip = peer.map(|p| p.ip());
        if !self.trusts(peer) {
            return peer_ip;
        }
        let mut hops: Vec<IpAddr> = Vec::new();
        for value in parts.headers.get_all(&X_FORWARDED_FOR) {
            let Ok(value) = value.to_str() else {
                return peer_ip;
            };
            for hop in value.split(',') {
                match hop.trim().parse() {
                    Ok(ip) => hops.push(ip),
                    // A hop that is not an address: believe nothing of it.
                    Err(_) => return peer_ip,
                }
            }
        }
        hops.into_iter()
            .rev()
            .find(|ip| !self.trusted_proxies.contains(ip))
            .or(peer_ip)
    }

    /// Notes that a token was used now; written by `flush`.
    pub(crate) fn note_token_use(&self, mac: &str, now: OffsetDateTime) {
        let mut uses = self.token_uses.lock().expect("token uses");
        // Most requests come from a token already noted: no key to copy.
        match uses.get_mut(mac) {
            Some(last) => *last = now,
            None => {
                uses.insert(mac.to_string(), now);
            }
        }
    }

    /// Writes what is kept in memory between requests: collected token
    /// uses (`last_used_at`), the fleet view, and the summaries of refusals past the
    /// per-address limit. The server calls this every few seconds and at
    /// shutdown (`at_shutdown`: every open summary too).
    pub fn flush(&self, at_shutdown: bool) -> Result<()> {
        self.denied.flush(&self.store, at_shutdown);
        if let Err(e) = self.logins.sweep(&self.store, self.now()) {
            tracing::warn!(error = %e, "could not remove expired failed-login records");
        }
        if let Err(e) = self.fleet.flush(&self.store) {
            tracing::warn!(error = %e, "could not write the fleet view");
        }
        let uses: Vec<_> = std::mem::take(&mut *self.token_uses.lock().expect("token uses"))
            .into_iter()
            .collect();
        self.store.record_token_use(&uses)
    }
}

/// The store as the daemon uses it: read cache on, lock timeout and cache
/// budget from the configuration, the server key present (made if the
/// store has none, as for a copy of the committed example).
fn open_for_serving(location: &Location, config: &Config) -> Result<Store> {
    let mut store = Store::open_at(location, config.server_key_file.as_deref())?;
    store.enable_read_cache();
    store.set_lock_timeout(config.lock_timeout);
    store
        .set_content_cache_bytes(usize::try_from(config.content_cache_bytes).unwrap_or(usize::MAX));
    store.hold_object_files(config.max_connections);
    store.ensure_server_key()?;
    store.server_key()?;
    Ok(store)
}
