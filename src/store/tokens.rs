//! Read tokens: one record per token, keyed by the HMAC of its secret so a
//! request finds its token with one lookup (the file backend:
//! `.cfgstore/tokens/{mac}.json`) and the daemon never serves a stale copy
//! (SPEC §2 invariant 7). Every change is one change of the backend's token
//! records, durable and announced to every read cache.

use std::io;
use std::sync::Arc;

use time::OffsetDateTime;

use super::backend::{Durability, RecordChange, Records};
use super::fsutil::read_regular;
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
        let path = self.key_file.clone();
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

    /// Runs `change` on the token records, every other writer held off;
    /// a change that returns `Ok` is announced to every read cache.
    fn change_tokens<R>(
        &self,
        change: impl FnOnce(&mut dyn RecordChange) -> Result<R>,
    ) -> Result<R> {
        let out = self.backend().change(Records::Tokens, change)?;
        // Durable now: a marker that cannot be replaced must not turn the
        // change into a reported failure (caches expire within a second).
        self.announce_change();
        Ok(out)
    }

    /// Creates a token. Returns the record and the secret, which is never
    /// stored and cannot be shown again.
    pub fn create_token(&self, new: NewToken) -> Result<(TokenRecord, String)> {
        let (record, secret) = self.new_token(new)?;
        self.change_tokens(|tokens| put_token(tokens, &record, Durability::Durable))?;
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
        tokens_of(self.backend().records(Records::Tokens)?, owner)
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

    pub(super) fn read_token(&self, mac: &str) -> Result<Option<TokenRecord>> {
        self.backend()
            .record(Records::Tokens, mac)?
            .map(|bytes| parse_token(mac, &bytes))
            .transpose()
    }

    /// Applies a partial update. Turning `fingerprint_required` off clears
    /// the binding; turning it on lets the next request bind.
    pub fn update_token(&self, id: &str, update: TokenUpdate) -> Result<TokenRecord> {
        self.edit_token(id, |record| {
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
            Ok(())
        })
    }

    /// Changes one token by id, under the tokens lock. Errors: `NotFound`,
    /// and whatever `edit` refuses.
    fn edit_token(
        &self,
        id: &str,
        edit: impl FnOnce(&mut TokenRecord) -> Result<()>,
    ) -> Result<TokenRecord> {
        self.change_tokens(|tokens| {
            let mut record = find_token(tokens, id)?;
            edit(&mut record)?;
            put_token(tokens, &record, Durability::Durable)?;
            Ok(record)
        })
    }

    /// Forgets the bound fingerprint so the next request binds again.
    pub fn unbind_token(&self, id: &str) -> Result<TokenRecord> {
        self.edit_token(id, |record| {
            record.fingerprint = None;
            Ok(())
        })
    }

    /// Revokes a token: refused from the next request on.
    pub fn revoke_token(&self, id: &str) -> Result<TokenRecord> {
        self.edit_token(id, |record| {
            if record.revoked_at.is_none() {
                record.revoked_at = Some(super::now_rfc3339());
            }
            Ok(())
        })
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
        // One change around the check and both writes: two rotations at
        // once must not both issue a successor, and a failed one leaves
        // neither write in force.
        self.change_tokens(|tokens| {
        let mut old = find_token(tokens, id)?;
        if old.revoked_at.is_some() {
            return Err(Error::Conflict(format!("token {id} is revoked")));
        }
        if let Some(next) = &old.rotated_to {
            let live = match find_token(tokens, next) {
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
        put_token(tokens, &successor, Durability::Durable)?;
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
        put_token(tokens, &old, Durability::Durable)?;
        Ok((successor, secret, old))
        })
    }

    /// Binds a fingerprint MAC to the token with MAC `token_mac` unless one
    /// is bound already. Serialised by the tokens lock, so exactly one of
    /// any number of racing first requests binds.
    pub fn bind_fingerprint(&self, token_mac: &str, fingerprint_mac: &str) -> Result<BindOutcome> {
        self.change_tokens(|tokens| {
            let bytes = tokens
                .get(token_mac)?
                .ok_or_else(|| Error::not_found("token", token_mac))?;
            let mut record = parse_token(token_mac, &bytes)?;
            match &record.fingerprint {
                Some(bound) if bound == fingerprint_mac => Ok(BindOutcome::AlreadyBound),
                Some(_) => Ok(BindOutcome::Mismatch),
                None => {
                    record.fingerprint = Some(fingerprint_mac.to_string());
                    put_token(tokens, &record, Durability::Durable)?;
                    Ok(BindOutcome::Bound)
                }
            }
        })
    }

    /// Records when tokens were last used, many at once: the daemon
    /// collects uses in memory and calls this every so often, so a request
    /// never pays a disk write for it. Not announced to read caches: no
    /// authorization decision reads it.
    pub fn record_token_use(&self, uses: &[(String, OffsetDateTime)]) -> Result<()> {
        if uses.is_empty() {
            return Ok(());
        }
        self.backend().change(Records::Tokens, |tokens| {
            for (mac, at) in uses {
                let Some(Ok(mut record)) = tokens.get(mac)?.map(|b| parse_token(mac, &b)) else {
                    continue;
                };
                let at = format_time(*at);
                if record.last_used_at.as_ref().is_none_or(|old| *old < at) {
                    record.last_used_at = Some(at);
                    put_token(tokens, &record, Durability::Lazy)?;
                }
            }
            Ok(())
        })
    }
}

fn parse_token(key: &str, bytes: &[u8]) -> Result<TokenRecord> {
    serde_json::from_slice(bytes).map_err(|e| {
        Error::corrupt(
            format!("token record {key}"),
            format!("bad token record: {e}"),
        )
    })
}

fn put_token(
    tokens: &mut dyn RecordChange,
    record: &TokenRecord,
    durability: Durability,
) -> Result<()> {
    let bytes = serde_json::to_vec_pretty(record).expect("token record serialises");
    tokens.put(&record.mac, &bytes, durability)
}

/// The tokens among `records` (of one owner, if given), oldest first.
fn tokens_of(
    records: Vec<(String, Vec<u8>)>,
    owner: Option<&OwnerName>,
) -> Result<Vec<TokenRecord>> {
    let mut out = Vec::new();
    for (key, bytes) in records {
        let record = parse_token(&key, &bytes)?;
        if owner.is_none_or(|o| *o == record.owner) {
            out.push(record);
        }
    }
    out.sort_by(|a, b| (&a.created_at, &a.id).cmp(&(&b.created_at, &b.id)));
    Ok(out)
}

/// One token by id, inside a change. Errors: `NotFound`.
fn find_token(tokens: &mut dyn RecordChange, id: &str) -> Result<TokenRecord> {
    tokens_of(tokens.list()?, None)?
        .into_iter()
        .find(|t| t.id == id)
        .ok_or_else(|| Error::not_found("token", id))
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// The read cache checks its pointers once they are a second old. A
    /// token's last use, written every few seconds while it is used, must
    /// not end them (and with them every kept answer); a change of what
    /// authorization reads, even one no marker announced, must.
    #[test]
    fn a_recorded_use_keeps_cached_pointers_an_unannounced_revoke_does_not() {
        let dir = std::env::temp_dir().join(format!("cfgstore-token-use-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let (mut store, _) = Store::init(&dir).unwrap();
        store.enable_read_cache();
        let (record, secret) = store
            .create_token(NewToken {
                owner: OwnerName::parse("acme").unwrap(),
                name: "erp".into(),
                repos: vec![],
                expires_at: None,
                fingerprint_required: false,
            })
            .unwrap();
        let epoch = store.revalidate().unwrap().unwrap();
        // Past the pointers' age limit, so the change check checks them.
        let a_second_on = |store: &Store| {
            std::thread::sleep(Duration::from_millis(1100));
            store.revalidate().unwrap()
        };
        let revoked = |store: &Store| {
            store
                .token_by_secret(&secret)
                .unwrap()
                .unwrap()
                .revoked_at
                .clone()
        };
        assert!(revoked(&store).is_none());

        store
            .record_token_use(&[(record.mac.clone(), OffsetDateTime::now_utc())])
            .unwrap();
        assert_eq!(
            a_second_on(&store),
            Some(epoch),
            "a recorded use dropped the pointers"
        );
        assert!(revoked(&store).is_none());

        // Revoked behind the cache's back: written, no marker replaced.
        let mut record = store.read_token(&record.mac).unwrap().unwrap();
        assert!(record.last_used_at.is_some(), "the use was written");
        record.revoked_at = Some(format_time(OffsetDateTime::now_utc()));
        let write = |tokens: &mut dyn RecordChange| put_token(tokens, &record, Durability::Durable);
        store.backend().change(Records::Tokens, write).unwrap();
        assert_ne!(
            a_second_on(&store),
            Some(epoch),
            "a revoke kept the pointers"
        );
        assert!(revoked(&store).is_some());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
