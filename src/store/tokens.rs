//! Read tokens on disk: `.cfgstore/tokens/{mac}.json`, one record per
//! token, named by the HMAC of its secret so a request finds its token with
//! one file read and the daemon never serves a stale copy (SPEC §2
//! invariant 7). Every change is a durable replace under the tokens lock.

use std::fs;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use time::OffsetDateTime;

use super::fsutil::{self, read_regular, LockGuard};
use super::{format_time, OwnerName, RepoId, Store};
use crate::auth::{self, ServerKey, TokenRecord};
use crate::error::{Error, Result};

/// A partial update, as `token update` and `PATCH /tokens/{id}` take it.
#[derive(Debug, Default, Clone)]
pub struct TokenUpdate {
    pub name: Option<String>,
    pub repos: Option<Vec<RepoId>>,
    /// `Some(None)` removes the expiry.
    pub expires_at: Option<Option<String>>,
    pub fingerprint_required: Option<bool>,
}

/// What a new token is to be.
#[derive(Debug, Clone)]
pub struct NewToken {
    pub owner: OwnerName,
    pub name: String,
    /// Exact project ids of the owner; empty is all of them.
    pub repos: Vec<RepoId>,
    /// `YYYY-MM-DD` or RFC 3339.
    pub expires_at: Option<String>,
    pub fingerprint_required: bool,
}

/// What binding a fingerprint did.
#[derive(Debug, PartialEq, Eq)]
pub enum BindOutcome {
    /// This request's fingerprint is now the bound one.
    Bound,
    /// Another request bound first, with this same fingerprint.
    AlreadyBound,
    /// Another request bound first, with a different fingerprint.
    Mismatch,
}

impl Store {
    /// The server key tokens are hashed under (read once per process).
    pub fn server_key(&self) -> Result<&ServerKey> {
        if let Some(key) = self.server_key.get() {
            return Ok(key);
        }
        let path = self.layout().server_key();
        let text = read_regular(&path).map_err(|e| match e {
            Error::Io { source, .. } if source.kind() == io::ErrorKind::NotFound => Error::corrupt(
                &path,
                "server key missing: run `cfgstore init` to create one",
            ),
            other => other,
        })?;
        let key = std::str::from_utf8(&text)
            .ok()
            .and_then(ServerKey::from_hex)
            .ok_or_else(|| Error::corrupt(&path, "server key is not 64 hex digits"))?;
        Ok(self.server_key.get_or_init(|| key))
    }

    fn tokens_lock(&self) -> Result<LockGuard> {
        super::fsutil::create_dir(&self.layout().tokens_dir())?;
        LockGuard::acquire(&self.layout().tokens_lock(), Duration::from_secs(10))
    }

    fn token_path(&self, mac: &str) -> std::path::PathBuf {
        self.layout().tokens_dir().join(format!("{mac}.json"))
    }

    /// Writes a token record and announces the change to read caches.
    fn write_token(&self, record: &TokenRecord) -> Result<()> {
        let path = self.token_path(&record.mac);
        let previous = fs::read(&path).ok();
        if let Err(e) = self.write_token_quietly(record) {
            // The rename may have happened before the failure (the folder
            // fsync failed): put back what was there, so that a change
            // reported failed is not in force.
            let _ = match previous {
                Some(bytes) => self
                    .scratch()
                    .and_then(|scratch| scratch.replace_file(&path, &bytes)),
                None => fs::remove_file(&path)
                    .map_err(|e| Error::io(&path, e))
                    .and_then(|()| fsutil::fsync_dir(&self.layout().tokens_dir())),
            };
            return Err(e);
        }
        // Durable now: a marker that cannot be replaced must not turn the
        // change into a reported failure (caches expire within a second).
        self.announce_change();
        Ok(())
    }

    /// Writes a token record without invalidating caches: only for
    /// `last_used_at`, which no authorization decision reads.
    fn write_token_quietly(&self, record: &TokenRecord) -> Result<()> {
        let bytes = serde_json::to_vec_pretty(record).expect("token record serialises");
        self.scratch()?
            .replace_file(&self.token_path(&record.mac), &bytes)
    }

    /// Creates a token. Returns the record and the secret, which is never
    /// stored and cannot be shown again.
    pub fn create_token(&self, new: NewToken) -> Result<(TokenRecord, String)> {
        let (record, secret) = self.new_token(new)?;
        let _lock = self.tokens_lock()?;
        self.write_token(&record)?;
        Ok((record, secret))
    }

    /// A new token's record and secret, not yet written.
    fn new_token(&self, new: NewToken) -> Result<(TokenRecord, String)> {
        check_token_name(&new.name)?;
        if let Some(e) = &new.expires_at {
            auth::parse_expiry(e)?;
        }
        let key = self.server_key()?;
        let secret = auth::new_secret()?;
        let record = TokenRecord {
            id: auth::new_secret()?[..12].to_string(),
            owner: new.owner,
            name: new.name,
            repos: new.repos,
            expires_at: new.expires_at,
            fingerprint_required: new.fingerprint_required,
            fingerprint: None,
            created_at: super::now_rfc3339(),
            last_used_at: None,
            suffix: secret[secret.len() - 4..].to_string(),
            mac: key.token_mac(&secret),
            revoked_at: None,
            rotated_to: None,
        };
        Ok((record, secret))
    }

    /// Every token (or one owner's), oldest first.
    pub fn list_tokens(&self, owner: Option<&OwnerName>) -> Result<Vec<TokenRecord>> {
        let dir = self.layout().tokens_dir();
        let entries = match fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(Error::io(&dir, e)),
        };
        let mut out = Vec::new();
        for entry in entries {
            let path = entry.map_err(|e| Error::io(&dir, e))?.path();
            if path.extension().is_none_or(|e| e != "json") {
                continue;
            }
            let record: TokenRecord = serde_json::from_slice(&read_regular(&path)?)
                .map_err(|e| Error::corrupt(&path, format!("bad token record: {e}")))?;
            if owner.is_none_or(|o| *o == record.owner) {
                out.push(record);
            }
        }
        out.sort_by(|a, b| (&a.created_at, &a.id).cmp(&(&b.created_at, &b.id)));
        Ok(out)
    }

    /// One token by id. Errors: `NotFound`.
    pub fn token(&self, id: &str) -> Result<TokenRecord> {
        self.list_tokens(None)?
            .into_iter()
            .find(|t| t.id == id)
            .ok_or_else(|| Error::not_found("token", id))
    }

    /// The token a secret belongs to, if any. One file read, no listing.
    pub fn token_by_secret(&self, secret: &str) -> Result<Option<Arc<TokenRecord>>> {
        if !auth::is_token_shaped(secret) {
            return Ok(None);
        }
        let mac = self.server_key()?.token_mac_bytes(secret);
        self.cached(
            |c| c.token(&mac),
            || Ok(self.read_token(&crate::hex::encode(&mac))?.map(Arc::new)),
            |c, epoch, found| c.put_token(epoch, mac, found),
        )
    }

    fn read_token(&self, mac: &str) -> Result<Option<TokenRecord>> {
        let path = self.token_path(mac);
        match read_regular(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|e| Error::corrupt(&path, format!("bad token record: {e}"))),
            Err(Error::Io { source, .. }) if source.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Applies a partial update. Turning `fingerprint_required` off clears
    /// the binding; turning it on lets the next request bind.
    pub fn update_token(&self, id: &str, update: TokenUpdate) -> Result<TokenRecord> {
        let _lock = self.tokens_lock()?;
        let mut record = self.token(id)?;
        if let Some(name) = update.name {
            check_token_name(&name)?;
            record.name = name;
        }
        if let Some(repos) = update.repos {
            record.repos = repos;
        }
        if let Some(expires_at) = update.expires_at {
            if let Some(e) = &expires_at {
                auth::parse_expiry(e)?;
            }
            record.expires_at = expires_at;
        }
        if let Some(required) = update.fingerprint_required {
            if !required || !record.fingerprint_required {
                record.fingerprint = None;
            }
            record.fingerprint_required = required;
        }
        self.write_token(&record)?;
        Ok(record)
    }

    /// Forgets the bound fingerprint so the next request binds again.
    pub fn unbind_token(&self, id: &str) -> Result<TokenRecord> {
        let _lock = self.tokens_lock()?;
        let mut record = self.token(id)?;
        record.fingerprint = None;
        self.write_token(&record)?;
        Ok(record)
    }

    /// Revokes a token: refused from the next request on.
    pub fn revoke_token(&self, id: &str) -> Result<TokenRecord> {
        let _lock = self.tokens_lock()?;
        let mut record = self.token(id)?;
        if record.revoked_at.is_none() {
            record.revoked_at = Some(super::now_rfc3339());
            self.write_token(&record)?;
        }
        Ok(record)
    }

    /// Issues a successor with the same scope, named `{name}-v2` (`-v3`...),
    /// and lets the old token expire after `grace` (at once when zero).
    /// Returns the successor, its secret, and the old record as updated.
    pub fn rotate_token(
        &self,
        id: &str,
        grace: time::Duration,
        now: OffsetDateTime,
    ) -> Result<(TokenRecord, String, TokenRecord)> {
        // One lock around the check and both writes: two rotations at once
        // must not both issue a successor.
        let _lock = self.tokens_lock()?;
        let mut old = self.token(id)?;
        if old.revoked_at.is_some() {
            return Err(Error::Conflict(format!("token {id} is revoked")));
        }
        if let Some(next) = &old.rotated_to {
            let live = match self.token(next) {
                Ok(successor) => successor.revoked_at.is_none(),
                Err(Error::NotFound { .. }) => false,
                Err(e) => return Err(e),
            };
            if live {
                return Err(Error::Conflict(format!(
                    "token {id} was already rotated: its successor {next} is live (rotate that one, or revoke it first)"
                )));
            }
        }
        // Checked before anything is written: an absurd grace period is a
        // 400, not a successor nobody ever sees.
        let until = now
            .checked_add(grace)
            .filter(|t| t.year() <= 9999)
            .ok_or_else(|| Error::invalid("grace period too long"))?;
        let (mut successor, secret) = self.new_token(NewToken {
            owner: old.owner.clone(),
            name: auth::successor_name(&old.name),
            repos: old.repos.clone(),
            expires_at: old.expires_at.clone(),
            fingerprint_required: old.fingerprint_required,
        })?;
        // The successor starts bound to the same host: rotation is about
        // the secret, not about moving the ERP.
        successor.fingerprint = old.fingerprint.clone();
        self.write_token(&successor)?;
        if grace <= time::Duration::ZERO {
            old.revoked_at = Some(format_time(now));
        } else {
            let current = old
                .expires_at
                .as_deref()
                .and_then(|e| auth::parse_expiry(e).ok());
            if current.is_none_or(|c| until < c) {
                old.expires_at = Some(format_time(until));
            }
        }
        old.rotated_to = Some(successor.id.clone());
        self.write_token(&old)?;
        Ok((successor, secret, old))
    }

    /// Binds a fingerprint MAC to the token with MAC `token_mac` unless one
    /// is bound already. Serialised by the tokens lock, so exactly one of
    /// any number of racing first requests binds.
    pub fn bind_fingerprint(&self, token_mac: &str, fingerprint_mac: &str) -> Result<BindOutcome> {
        let _lock = self.tokens_lock()?;
        let path = self.token_path(token_mac);
        let mut record: TokenRecord = serde_json::from_slice(&read_regular(&path)?)
            .map_err(|e| Error::corrupt(&path, format!("bad token record: {e}")))?;
        match &record.fingerprint {
            Some(bound) if bound == fingerprint_mac => Ok(BindOutcome::AlreadyBound),
            Some(_) => Ok(BindOutcome::Mismatch),
            None => {
                record.fingerprint = Some(fingerprint_mac.to_string());
                self.write_token(&record)?;
                Ok(BindOutcome::Bound)
            }
        }
    }

    /// Records when tokens were last used, many at once: the daemon
    /// collects uses in memory and calls this every so often, so a request
    /// never pays a disk write for it.
    pub fn record_token_use(&self, uses: &[(String, OffsetDateTime)]) -> Result<()> {
        if uses.is_empty() {
            return Ok(());
        }
        let _lock = self.tokens_lock()?;
        for (mac, at) in uses {
            let path = self.token_path(mac);
            let Ok(bytes) = read_regular(&path) else {
                continue;
            };
            let Ok(mut record) = serde_json::from_slice::<TokenRecord>(&bytes) else {
                continue;
            };
            let at = format_time(*at);
            if record.last_used_at.as_ref().is_none_or(|old| *old < at) {
                record.last_used_at = Some(at);
                self.write_token_quietly(&record)?;
            }
        }
        Ok(())
    }
}

fn check_token_name(name: &str) -> Result<()> {
    let hidden = |c: char| c.is_control() || crate::names::is_invisible_control(c);
    if name.is_empty() || name.len() > 100 || name.chars().any(hidden) {
        return Err(Error::invalid(
            "token name must be 1-100 characters without control or invisible direction characters",
        ));
    }
    Ok(())
}
