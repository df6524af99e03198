//! The daemon's configuration: every setting, its default, and where it
//! comes from. Precedence, highest first: command-line flags, `CFGSTORE_*`
//! environment variables, the TOML file (`--config FILE`, else
//! `/etc/cfgstore/cfgstore.toml` when it exists), the defaults below.
//!
//! ```toml
//! listen = "127.0.0.1:8080"
//! metrics_listen = "127.0.0.1:9180"   # optional: /metrics only there
//! data_dir = "/var/lib/cfgstore"
//! # store = "postgres://cfgstore@db.internal/cfgstore"  # instead of data_dir
//! # server_key_file = "/etc/cfgstore/server.key"       # required with store
//! max_body_bytes = 10485760
//! max_header_bytes = 32768
//! header_timeout = "10s"
//! body_timeout = "30s"
//! idle_timeout = "60s"
//! max_connections = 1024
//! drain_timeout = "10s"
//! lock_timeout = "10s"
//! content_cache_bytes = 268435456
//! log_format = "human"              # or "json"
//! external_url = "https://config.example.com"
//! trusted_proxies = ["127.0.0.1"]
//! secure_cookies = false
//! session_idle_timeout = "2h"
//! session_absolute_timeout = "24h"
//! ```
//!
//! An unknown key is an error that names it, so a typo never silently
//! leaves a default in force.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

pub const DEFAULT_CONFIG_FILE: &str = "/etc/cfgstore/cfgstore.toml";
pub const DEFAULT_DATA_DIR: &str = "/var/lib/cfgstore";

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Human,
    Json,
}

/// The effective configuration.
#[derive(Debug, Clone, Serialize)]
pub struct Config {
    /// Address the daemon listens on.
    pub listen: SocketAddr,
    /// A separate address for `GET /metrics` (e.g. for a scraper on
    /// another interface); when set, `/metrics` is served there only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metrics_listen: Option<SocketAddr>,
    /// The data directory.
    pub data_dir: PathBuf,
    /// A PostgreSQL store instead of the data directory (`postgres://…`;
    /// shown without its password).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub store: Option<crate::store::Location>,
    /// The server key's file, when not the data directory's own (required
    /// for a PostgreSQL store; the same file on every node).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server_key_file: Option<PathBuf>,
    /// Largest request body of a signed-in admin session (a file upload);
    /// larger ones are answered 413 unread. Requests without a session may
    /// send 64 KiB (`api::ANONYMOUS_BODY_LIMIT`), so no anonymous client can
    /// make the daemon buffer this much per connection.
    pub max_body_bytes: u64,
    /// Largest request head (request line and headers); beyond it, 431.
    pub max_header_bytes: usize,
    /// Time allowed to send a request's head. The server also runs this
    /// timer while a kept-alive connection waits for its next request, so
    /// an idle connection is closed after the smaller of this and
    /// `idle_timeout`.
    #[serde(with = "human_duration")]
    pub header_timeout: Duration,
    /// Time allowed to send a request's body.
    #[serde(with = "human_duration")]
    pub body_timeout: Duration,
    /// A connection with no traffic this long is closed.
    #[serde(with = "human_duration")]
    pub idle_timeout: Duration,
    /// Connections served at once; more wait in the listen backlog.
    pub max_connections: usize,
    /// How long SIGTERM waits for in-flight requests.
    #[serde(with = "human_duration")]
    pub drain_timeout: Duration,
    /// How long a write waits for a branch another writer (a CLI command,
    /// say) holds; then it is refused with 503 and `Retry-After`.
    #[serde(with = "human_duration")]
    pub lock_timeout: Duration,
    /// Most bytes of file contents the read cache keeps in memory. Filled
    /// as files are read, so an idle daemon stays small. The answers the
    /// daemon keeps to give again (`server/memo.rs`) take at most as much
    /// again (their bodies are mostly these same contents, shared).
    pub content_cache_bytes: u64,
    pub log_format: LogFormat,
    /// The URL clients reach the daemon by, when it is behind a proxy:
    /// pagination `Link` headers start with it.
    pub external_url: Option<String>,
    /// Proxies whose `X-Forwarded-For`/`-Proto`/`-Host` are believed.
    pub trusted_proxies: Vec<IpAddr>,
    /// Mark session cookies `Secure` (served over TLS by a proxy).
    pub secure_cookies: bool,
    #[serde(with = "human_duration")]
    pub session_idle_timeout: Duration,
    #[serde(with = "human_duration")]
    pub session_absolute_timeout: Duration,
    /// The file the settings were read from, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub config_file: Option<PathBuf>,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            listen: "127.0.0.1:8080".parse().expect("valid default address"),
            metrics_listen: None,
            data_dir: PathBuf::from(DEFAULT_DATA_DIR),
            store: None,
            server_key_file: None,
            max_body_bytes: 10 * 1024 * 1024,
            max_header_bytes: 32 * 1024,
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(60),
            max_connections: 1024,
            drain_timeout: Duration::from_secs(10),
            lock_timeout: crate::store::DEFAULT_LOCK_TIMEOUT,
            content_cache_bytes: crate::store::DEFAULT_CONTENT_BUDGET as u64,
            log_format: LogFormat::Human,
            external_url: None,
            trusted_proxies: Vec::new(),
            secure_cookies: false,
            session_idle_timeout: Duration::from_secs(2 * 3600),
            session_absolute_timeout: Duration::from_secs(24 * 3600),
            config_file: None,
        }
    }
}

/// The file's shape: every key optional, unknown keys refused.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    listen: Option<String>,
    data_dir: Option<PathBuf>,
    store: Option<String>,
    server_key_file: Option<PathBuf>,
    max_body_bytes: Option<u64>,
    max_header_bytes: Option<usize>,
    header_timeout: Option<String>,
    body_timeout: Option<String>,
    idle_timeout: Option<String>,
    max_connections: Option<usize>,
    drain_timeout: Option<String>,
    lock_timeout: Option<String>,
    content_cache_bytes: Option<u64>,
    log_format: Option<String>,
    external_url: Option<String>,
    metrics_listen: Option<String>,
    trusted_proxies: Option<Vec<String>>,
    secure_cookies: Option<bool>,
    session_idle_timeout: Option<String>,
    session_absolute_timeout: Option<String>,
}

/// Settings given on the command line (highest precedence).
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    pub listen: Option<SocketAddr>,
    pub data_dir: Option<PathBuf>,
    pub store: Option<crate::store::Location>,
    pub server_key_file: Option<PathBuf>,
}

impl Config {
    /// Builds the effective configuration: defaults, then the file (the
    /// one named, else the default path if it exists), then `env`, then
    /// flags. `env` is passed in so tests need not touch the process's.
    pub fn load(
        file: Option<&Path>,
        env: &[(String, String)],
        flags: &Overrides,
    ) -> Result<Config> {
        let mut config = Config::default();
        let path = match file {
            Some(p) => Some(p.to_path_buf()),
            None => Some(PathBuf::from(DEFAULT_CONFIG_FILE)).filter(|p| p.exists()),
        };
        if let Some(path) = &path {
            let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
            let parsed: FileConfig = toml::from_str(&text)
                .map_err(|e| Error::invalid(format!("{}: {}", path.display(), e.message())))?;
            config
                .apply_file(parsed)
                .map_err(|e| Error::invalid(format!("{}: {e}", path.display())))?;
            config.config_file = Some(path.clone());
        }
        for (key, value) in env {
            let Some(name) = key.strip_prefix("CFGSTORE_") else {
                continue;
            };
            config
                .apply_env(&name.to_ascii_lowercase(), value)
                .map_err(|e| Error::invalid(format!("{key}: {e}")))?;
        }
        if let Some(listen) = flags.listen {
            config.listen = listen;
        }
        if let Some(data) = &flags.data_dir {
            config.data_dir = data.clone();
            // A data directory named on the command line is the store,
            // whatever the file or the environment says.
            config.store = None;
        }
        if let Some(store) = &flags.store {
            config.store = Some(store.clone());
        }
        if let Some(file) = &flags.server_key_file {
            config.server_key_file = Some(file.clone());
        }
        config.validate()?;
        Ok(config)
    }

    fn apply_file(&mut self, f: FileConfig) -> Result<()> {
        let entries: Vec<(&str, Option<String>)> = vec![
            ("listen", f.listen),
            (
                "data_dir",
                f.data_dir.map(|p| p.to_string_lossy().into_owned()),
            ),
            ("store", f.store),
            (
                "server_key_file",
                f.server_key_file.map(|p| p.to_string_lossy().into_owned()),
            ),
            ("max_body_bytes", f.max_body_bytes.map(|n| n.to_string())),
            (
                "max_header_bytes",
                f.max_header_bytes.map(|n| n.to_string()),
            ),
            ("header_timeout", f.header_timeout),
            ("body_timeout", f.body_timeout),
            ("idle_timeout", f.idle_timeout),
            ("max_connections", f.max_connections.map(|n| n.to_string())),
            ("drain_timeout", f.drain_timeout),
            ("lock_timeout", f.lock_timeout),
            (
                "content_cache_bytes",
                f.content_cache_bytes.map(|n| n.to_string()),
            ),
            ("log_format", f.log_format),
            ("external_url", f.external_url),
            ("metrics_listen", f.metrics_listen),
            ("trusted_proxies", f.trusted_proxies.map(|v| v.join(","))),
            ("secure_cookies", f.secure_cookies.map(|b| b.to_string())),
            ("session_idle_timeout", f.session_idle_timeout),
            ("session_absolute_timeout", f.session_absolute_timeout),
        ];
        for (key, value) in entries {
            if let Some(value) = value {
                self.set(key, &value)?;
            }
        }
        Ok(())
    }

    /// `CFGSTORE_{KEY}` for every key; `CFGSTORE_DATA` is the data dir too
    /// (the CLI's variable). Other `CFGSTORE_*` variables (`CFGSTORE_LOG`)
    /// belong to other parts and are left alone.
    fn apply_env(&mut self, name: &str, value: &str) -> Result<()> {
        match name {
            "data" => self.set("data_dir", value),
            "log" => Ok(()),
            _ if KEYS.contains(&name) => self.set(name, value),
            _ => Ok(()),
        }
    }

    fn set(&mut self, key: &str, value: &str) -> Result<()> {
        let bad = |what: &str| Error::invalid(format!("{key} = {value:?}: {what}"));
        let duration = |v: &str| {
            crate::auth::parse_duration(v)
                .map(|d| Duration::from_secs(d.whole_seconds().max(0) as u64))
                .map_err(|_| bad("expected a duration such as 30s, 5m, 2h"))
        };
        // Up to i64::MAX: TOML (and so `config check`) cannot hold more.
        let number = |v: &str| {
            v.parse::<u64>()
                .ok()
                .filter(|n| i64::try_from(*n).is_ok())
                .ok_or_else(|| bad("expected a whole number up to 9223372036854775807"))
        };
        match key {
            "listen" => {
                self.listen = value
                    .parse()
                    .map_err(|_| bad("expected ADDRESS:PORT, e.g. 127.0.0.1:8080"))?
            }
            "metrics_listen" => {
                self.metrics_listen = match value {
                    "" => None,
                    v => Some(
                        v.parse()
                            .map_err(|_| bad("expected ADDRESS:PORT, e.g. 127.0.0.1:9180"))?,
                    ),
                }
            }
            "data_dir" => self.data_dir = PathBuf::from(value),
            "store" => {
                self.store = match value {
                    "" => None,
                    v => Some(crate::store::Location::parse_store(v).map_err(|_| {
                        bad("expected a PostgreSQL URL, postgres://user@host:port/database")
                    })?),
                }
            }
            "server_key_file" => {
                self.server_key_file =
                    Some(PathBuf::from(value)).filter(|p| !p.as_os_str().is_empty())
            }
            "max_body_bytes" => self.max_body_bytes = number(value)?,
            "max_header_bytes" => self.max_header_bytes = number(value)? as usize,
            "header_timeout" => self.header_timeout = duration(value)?,
            "body_timeout" => self.body_timeout = duration(value)?,
            "idle_timeout" => self.idle_timeout = duration(value)?,
            "max_connections" => self.max_connections = number(value)? as usize,
            "drain_timeout" => self.drain_timeout = duration(value)?,
            "lock_timeout" => self.lock_timeout = duration(value)?,
            "content_cache_bytes" => self.content_cache_bytes = number(value)?,
            "log_format" => {
                self.log_format = match value {
                    "human" => LogFormat::Human,
                    "json" => LogFormat::Json,
                    _ => return Err(bad("expected human or json")),
                }
            }
            "external_url" => {
                self.external_url =
                    Some(value.trim_end_matches('/').to_string()).filter(|s| !s.is_empty())
            }
            "trusted_proxies" => {
                self.trusted_proxies = value
                    .split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(|s| s.parse().map_err(|_| bad("expected IP addresses")))
                    .collect::<Result<_>>()?
            }
            "secure_cookies" => {
                self.secure_cookies = value.parse().map_err(|_| bad("expected true or false"))?
            }
            "session_idle_timeout" => self.session_idle_timeout = duration(value)?,
            "session_absolute_timeout" => self.session_absolute_timeout = duration(value)?,
            _ => return Err(Error::invalid(format!("unknown setting {key:?}"))),
        }
        Ok(())
    }

    fn validate(&self) -> Result<()> {
        if self.max_header_bytes < 8192 {
            return Err(Error::invalid("max_header_bytes must be at least 8192"));
        }
        // tokio's semaphore panics beyond 2^61 permits; far fewer
        // connections than this already exhaust any file-descriptor limit.
        if !(1..=MAX_CONNECTIONS).contains(&self.max_connections) {
            return Err(Error::invalid(format!(
                "max_connections must be from 1 to {MAX_CONNECTIONS}"
            )));
        }
        for (name, d) in [
            ("header_timeout", self.header_timeout),
            ("body_timeout", self.body_timeout),
            ("idle_timeout", self.idle_timeout),
            ("lock_timeout", self.lock_timeout),
        ] {
            if d.is_zero() {
                return Err(Error::invalid(format!("{name} must be more than 0s")));
            }
        }
        if let Some(url) = &self.external_url {
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                return Err(Error::invalid(format!(
                    "external_url {url:?} must start with http:// or https://"
                )));
            }
        }
        Ok(())
    }

    /// The effective configuration as TOML, for `cfgstore config check`.
    pub fn to_toml(&self) -> String {
        toml::to_string(self).expect("config serialises")
    }
}

/// The largest `max_connections` accepted.
pub const MAX_CONNECTIONS: usize = 1_000_000;

/// Every key the file and the environment accept.
pub const KEYS: &[&str] = &[
    "listen",
    "data_dir",
    "store",
    "server_key_file",
    "max_body_bytes",
    "max_header_bytes",
    "header_timeout",
    "body_timeout",
    "idle_timeout",
    "max_connections",
    "drain_timeout",
    "lock_timeout",
    "content_cache_bytes",
    "log_format",
    "external_url",
    "metrics_listen",
    "trusted_proxies",
    "secure_cookies",
    "session_idle_timeout",
    "session_absolute_timeout",
];

mod human_duration {
    use std::time::Duration;

    /// In the largest unit that is exact: `90s`, `15m`, `2h`, `7d`.
    pub fn serialize<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        let secs = d.as_secs();
        let text = match secs {
            0 => "0s".to_string(),
            _ if secs.is_multiple_of(86_400) => format!("{}d", secs / 86_400),
            _ if secs.is_multiple_of(3600) => format!("{}h", secs / 3600),
            _ if secs.is_multiple_of(60) => format!("{}m", secs / 60),
            _ => format!("{secs}s"),
        };
        s.collect_str(&text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn precedence_flags_over_env_over_file_over_defaults() {
        let dir = std::env::temp_dir().join(format!("cfgstore-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("c.toml");
        std::fs::write(&file, "listen = \"127.0.0.1:1111\"\nmax_body_bytes = 100\nidle_timeout = \"5m\"\nlog_format = \"json\"\n").unwrap();
        let c = Config::load(Some(&file), &[], &Overrides::default()).unwrap();
        assert_eq!(c.listen.port(), 1111);
        assert_eq!(c.max_body_bytes, 100);
        assert_eq!(c.idle_timeout, Duration::from_secs(300));
        assert_eq!(c.log_format, LogFormat::Json);
        assert_eq!(c.header_timeout, Duration::from_secs(10), "default kept");
        let e = env(&[
            ("CFGSTORE_LISTEN", "127.0.0.1:2222"),
            ("CFGSTORE_MAX_BODY_BYTES", "200"),
            ("CFGSTORE_LOG", "debug"),
            ("CFGSTORE_DATA", "/srv/x"),
        ]);
        let c = Config::load(Some(&file), &e, &Overrides::default()).unwrap();
        assert_eq!((c.listen.port(), c.max_body_bytes), (2222, 200));
        assert_eq!(c.data_dir, PathBuf::from("/srv/x"));
        let flags = Overrides {
            listen: Some("127.0.0.1:3333".parse().unwrap()),
            data_dir: Some("/srv/y".into()),
            ..Default::default()
        };
        let c = Config::load(Some(&file), &e, &flags).unwrap();
        assert_eq!(c.listen.port(), 3333);
        assert_eq!(c.data_dir, PathBuf::from("/srv/y"));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// A PostgreSQL store from the file, its key file from the
    /// environment; the password never shows in `config check`; `--data`
    /// on the command line wins over both.
    #[test]
    fn a_database_store_and_its_key_file() {
        let dir = std::env::temp_dir().join(format!("cfgstore-config-pg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("c.toml");
        std::fs::write(
            &file,
            "store = \"postgres://cfg:s3cret@db:5432/cfgstore\"\n",
        )
        .unwrap();
        let e = env(&[("CFGSTORE_SERVER_KEY_FILE", "/etc/cfgstore/server.key")]);
        let c = Config::load(Some(&file), &e, &Overrides::default()).unwrap();
        assert!(c.store.as_ref().is_some_and(|s| s.is_database()));
        assert_eq!(
            c.server_key_file,
            Some(PathBuf::from("/etc/cfgstore/server.key"))
        );
        let shown = c.to_toml();
        assert!(
            shown.contains("postgres://cfg:***@db:5432/cfgstore"),
            "{shown}"
        );
        assert!(!shown.contains("s3cret"), "{shown}");
        let flags = Overrides {
            data_dir: Some("/srv/z".into()),
            ..Default::default()
        };
        let c = Config::load(Some(&file), &e, &flags).unwrap();
        assert_eq!(
            (c.store.is_none(), c.data_dir),
            (true, PathBuf::from("/srv/z"))
        );
        std::fs::write(&file, "store = \"/var/lib/cfgstore\"\n").unwrap();
        let err = Config::load(Some(&file), &[], &Overrides::default())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("store") && err.contains("PostgreSQL URL"),
            "{err}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn errors_name_the_key() {
        let dir = std::env::temp_dir().join(format!("cfgstore-config-err-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("c.toml");
        std::fs::write(&file, "listen = \"127.0.0.1:1\"\nmax_body_byte = 5\n").unwrap();
        let err = Config::load(Some(&file), &[], &Overrides::default())
            .unwrap_err()
            .to_string();
        assert!(err.contains("max_body_byte"), "{err}");
        std::fs::write(&file, "idle_timeout = \"soon\"\n").unwrap();
        let err = Config::load(Some(&file), &[], &Overrides::default())
            .unwrap_err()
            .to_string();
        assert!(err.contains("idle_timeout"), "{err}");
        let err = Config::load(
            None,
            &env(&[("CFGSTORE_MAX_CONNECTIONS", "lots")]),
            &Overrides::default(),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("CFGSTORE_MAX_CONNECTIONS"), "{err}");
        assert!(Config::load(Some(&dir.join("missing.toml")), &[], &Overrides::default()).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// Found by the `auth_config` fuzz target: a number TOML cannot hold
    /// made `config check` panic ("config serialises"), and a huge
    /// `max_connections` made `serve` panic in tokio's semaphore.
    #[test]
    fn out_of_range_numbers_are_errors_not_panics() {
        for (key, value) in [
            ("CFGSTORE_MAX_BODY_BYTES", "18446744073709551615"),
            ("CFGSTORE_MAX_BODY_BYTES", "9223372036854775808"),
            ("CFGSTORE_MAX_CONNECTIONS", "4611686018427387904"),
            ("CFGSTORE_MAX_CONNECTIONS", "1000001"),
            ("CFGSTORE_MAX_HEADER_BYTES", "10000000000000000000"),
        ] {
            let err = Config::load(None, &env(&[(key, value)]), &Overrides::default())
                .map(|c| c.to_toml())
                .unwrap_err()
                .to_string();
            assert!(err.contains(&key[9..].to_ascii_lowercase()), "{key}: {err}");
        }
        let c = Config::load(
            None,
            &env(&[
                ("CFGSTORE_MAX_BODY_BYTES", "9223372036854775807"),
                ("CFGSTORE_MAX_CONNECTIONS", "1000000"),
            ]),
            &Overrides::default(),
        )
        .unwrap();
        assert!(c.to_toml().contains("max_body_bytes = 9223372036854775807"));
    }

    #[test]
    fn check_prints_every_key() {
        let text = Config::default().to_toml();
        for key in KEYS
            .iter()
            // Unset by default: printed only when set.
            .filter(|k| {
                !["external_url", "metrics_listen", "store", "server_key_file"].contains(*k)
            })
        {
            assert!(text.contains(key), "{key} missing from:\n{text}");
        }
        let parsed: toml::Value = toml::from_str(&text).unwrap();
        assert_eq!(parsed["header_timeout"].as_str(), Some("10s"));
        assert_eq!(parsed["idle_timeout"].as_str(), Some("1m"));
        assert_eq!(parsed["session_idle_timeout"].as_str(), Some("2h"));
        assert_eq!(parsed["session_absolute_timeout"].as_str(), Some("1d"));
    }
}
