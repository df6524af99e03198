//! Where a store lives, and the server key beside it.
//!
//! A store is a data directory (the file backend, `--data DIR`) or a
//! PostgreSQL database (`--store postgres://…`, SPEC §16). The server key
//! (tokens and fingerprints are hashed under it) is a file either way: in
//! the data directory by default, or wherever `server_key_file` says. For
//! a database it must be named, and every node must hold the same key: it
//! is never stored in the database, so a dump of it reveals no token.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::backend::files::Disk;
use super::backend::postgres::Postgres;
use super::layout::Layout;
use super::{fsutil, Store};
use crate::error::{Error, Result};

/// Where a store lives.
#[derive(Clone, PartialEq, Eq)]
pub enum Location {
    /// A data directory (the file backend).
    Dir(PathBuf),
    /// A PostgreSQL connection URL (`postgres://user@host:port/db`).
    Postgres(String),
}

impl Location {
    /// A `--store` value: a `postgres://` or `postgresql://` URL. Errors:
    /// `Invalid` for anything else (a data directory is `--data DIR`).
    pub fn parse_store(value: &str) -> Result<Location> {
        if value.starts_with("postgres://") || value.starts_with("postgresql://") {
            return Ok(Location::Postgres(value.to_string()));
        }
        Err(Error::invalid(
            "--store takes a PostgreSQL URL (postgres://user@host:port/database); a data directory is --data DIR",
        ))
    }

    pub fn is_database(&self) -> bool {
        matches!(self, Location::Postgres(_))
    }
}

/// Shows a URL without its password.
impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Location::Dir(dir) => write!(f, "{}", dir.display()),
            Location::Postgres(url) => f.write_str(&redact(url)),
        }
    }
}

/// As displayed: never with its password (`config check` prints it).
impl serde::Serialize for Location {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

impl fmt::Debug for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Location({self})")
    }
}

/// `postgres://user:secret@host/db` as `postgres://user:***@host/db`.
fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _)) => format!("{scheme}://{user}:***@{host}{path}"),
            None => url.to_string(),
        },
        None => url.to_string(),
    }
}

impl Store {
    /// Opens the store at `location`; `key_file` overrides where its server
    /// key is (required for a database). Errors as `Store::open` and
    /// `Postgres::open`; `Invalid` for a database without a key file.
    pub fn open_at(location: &Location, key_file: Option<&Path>) -> Result<Store> {
        let mut store = match location {
            Location::Dir(dir) => Store::open(dir)?,
            Location::Postgres(url) => {
                let key_file = required_key_file(key_file)?;
                let backend = Postgres::open(url)?;
                Store::in_database(backend, key_file.to_path_buf())
            }
        };
        if let Some(file) = key_file {
            store.key_file = file.to_path_buf();
        }
        Ok(store)
    }

    /// Creates (or completes) the store at `location` and its server key
    /// file; returns it and whether anything was created. For a database:
    /// the schema (migrated forward if older) and the key file if missing.
    pub fn init_at(location: &Location, key_file: Option<&Path>) -> Result<(Store, bool)> {
        match location {
            Location::Dir(dir) => {
                let (mut store, mut created) = Store::init(dir)?;
                if let Some(file) = key_file {
                    created |= make_key_file(file)?;
                    store.key_file = file.to_path_buf();
                }
                Ok((store, created))
            }
            Location::Postgres(url) => {
                let key_file = required_key_file(key_file)?;
                let made_key = make_key_file(key_file)?;
                let (backend, created) = Postgres::init(url)?;
                let store = Store::in_database(backend, key_file.to_path_buf());
                Ok((store, created || made_key))
            }
        }
    }

    /// A store whose backend is a database. Its `Layout` is rooted at the
    /// database's place: it names the store's things in messages and keys
    /// the read cache, and no file is ever made under it.
    fn in_database(backend: Postgres, key_file: PathBuf) -> Store {
        let disk = Arc::new(Disk::new(Layout::new(backend.place())));
        Store {
            disk,
            backend: Box::new(backend),
            key_file,
            on_database: true,
            lock_timeout: super::DEFAULT_LOCK_TIMEOUT,
            cache: None,
            recent: Default::default(),
            server_key: Default::default(),
            upgraded: None,
        }
    }

    /// Whether the store is in a database (shared by several daemons),
    /// not in a data directory: copying, checking and upgrading folders
    /// (`backup`, `fsck`) do not apply, and every read may wait on the
    /// network.
    pub fn on_database(&self) -> bool {
        self.on_database
    }

    /// The file the server key is read from.
    pub fn key_file(&self) -> &Path {
        &self.key_file
    }
}

pub(super) fn required_key_file(key_file: Option<&Path>) -> Result<&Path> {
    key_file.ok_or_else(|| {
        Error::invalid(
            "a store in PostgreSQL needs a server key file outside the database: \
             --server-key-file FILE (or CFGSTORE_SERVER_KEY_FILE, or server_key_file in the config); \
             `init` makes it, and every node needs a copy",
        )
    })
}

/// Makes a server key file (0600, 64 hex digits) unless there is one;
/// never replaces one (tokens are hashed under it). Returns whether it
/// made one. Its folder must exist.
pub(super) fn make_key_file(path: &Path) -> Result<bool> {
    if path.exists() {
        return Ok(false);
    }
    let mut key = [0u8; 32];
    getrandom::getrandom(&mut key).map_err(|e| Error::io(path, std::io::Error::other(e)))?;
    write_key_file(path, fsutil::hex(&key).as_bytes())?;
    Ok(true)
}

/// Writes a new key file (0600) with `key` and makes it durable; an
/// existing file is an error. Its folder must exist.
pub(super) fn write_key_file(path: &Path, key: &[u8]) -> Result<()> {
    fsutil::write_new(path, key)?;
    if let Some(folder) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        fsutil::fsync_dir(folder)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_values_and_redaction() {
        let pg = Location::parse_store("postgres://cfg:s3cret@db.local:5433/cfgstore").unwrap();
        assert!(pg.is_database());
        assert_eq!(pg.to_string(), "postgres://cfg:***@db.local:5433/cfgstore");
        assert!(!format!("{pg:?}").contains("s3cret"));
        let plain = Location::parse_store("postgresql://cfg@db/x").unwrap();
        assert_eq!(plain.to_string(), "postgresql://cfg@db/x");
        for bad in ["/var/lib/cfgstore", "mysql://x", "", "postgres:/x"] {
            assert!(
                matches!(Location::parse_store(bad), Err(Error::Invalid(_))),
                "{bad}"
            );
        }
    }
}
