//! Changes to read tokens: create, update, unbind, revoke, rotate.
//!
//! A user manages their own tokens (ROOT any owner's); a token of another
//! owner is reported as not found, so ids of others' tokens do not leak.

use serde_json::json;
use time::OffsetDateTime;

use super::audit::{self, Event};
use super::Actor;
use crate::auth::roles::{Action, Target};
use crate::auth::TokenRecord;
use crate::error::{Error, Result};
use crate::names::RepoId;
use crate::store::tokens::TokenUpdate;
use crate::store::Store;

pub use crate::store::tokens::NewToken;

/// A token just issued: its record and its secret, shown this once.
pub struct Issued {
    pub record: TokenRecord,
    pub secret: String,
    /// Repos it names that the owner has no project of (yet): allowed,
    /// since the project may come later, but worth a warning.
    pub missing_repos: Vec<RepoId>,
}

/// A token the actor may manage. Errors: `NotFound` for others' tokens.
pub fn manageable(store: &Store, actor: &Actor, id: &str) -> Result<TokenRecord> {
    let token = store.token(id)?;
    actor
        .authorize(Action::ManageTokens, Target::Owner(&token.owner))
        .map_err(|_| Error::not_found("token", id))?;
    Ok(token)
}

/// Issues a token. Refused (`Invalid`): an expiry in the past (such a
/// token could never be used), and an owner that is neither a user nor has
/// a project (a typo would give a token that reads nothing).
/// Errors: `Forbidden`, `Invalid`.
pub fn create(store: &Store, actor: &Actor, new: NewToken, now: OffsetDateTime) -> Result<Issued> {
    actor.authorize(Action::ManageTokens, Target::Owner(&new.owner))?;
    let projects = store.list_projects(Some(&new.owner))?;
    let is_user = match store.user(&new.owner) {
        Ok(_) => true,
        Err(Error::NotFound { .. }) => false,
        Err(e) => return Err(e),
    };
    if projects.is_empty() && !is_user && !new.owner.is_public() {
        return Err(Error::invalid(format!(
            "owner {} has no projects and is no user: create a project first (cfgstore project create {} NAME)",
            new.owner, new.owner
        )));
    }
    let missing_repos: Vec<RepoId> = new
        .repos
        .iter()
        .filter(|r| !projects.iter().any(|p| &p.repo == *r))
        .cloned()
        .collect();
    if let Some(expiry) = &new.expires_at {
        if crate::auth::parse_expiry(expiry)? <= now {
            return Err(Error::invalid(format!(
                "expiry {expiry} is in the past: a token that has expired already could never be used"
            )));
        }
    }
    let (record, secret) = store.create_token(new)?;
    audit::change(
        store,
        actor,
        Event::TokenCreate,
        &record.id,
        json!({"owner": record.owner, "name": record.name, "repos": record.repos}),
    );
    Ok(Issued {
        record,
        secret,
        missing_repos,
    })
}

/// Changes a token's name, scope, expiry or fingerprint requirement.
pub fn update(store: &Store, actor: &Actor, id: &str, update: TokenUpdate) -> Result<TokenRecord> {
    manageable(store, actor, id)?;
    let record = store.update_token(id, update)?;
    audit::change(
        store,
        actor,
        Event::TokenUpdate,
        id,
        json!({
            "name": record.name,
            "repos": record.repos,
            "expires_at": record.expires_at,
            "fingerprint_required": record.fingerprint_required,
        }),
    );
    Ok(record)
}

/// Forgets a token's bound fingerprint: the next request binds again.
pub fn unbind(store: &Store, actor: &Actor, id: &str) -> Result<TokenRecord> {
    manageable(store, actor, id)?;
    let record = store.unbind_token(id)?;
    audit::change(store, actor, Event::TokenUnbind, id, json!({}));
    Ok(record)
}

/// Revokes a token: refused from the next request on.
pub fn revoke(store: &Store, actor: &Actor, id: &str) -> Result<TokenRecord> {
    manageable(store, actor, id)?;
    let record = store.revoke_token(id)?;
    audit::change(store, actor, Event::TokenRevoke, id, json!({}));
    Ok(record)
}

/// A rotation: the successor (with its secret) and the old token as it is
/// now (expiring after the grace period, or revoked).
pub struct Rotated {
    pub successor: Issued,
    pub previous: TokenRecord,
}

/// Issues a successor with the same scope; the old token keeps working for
/// `grace`. Errors: `Conflict` for a revoked token or one whose successor
/// is live, `Invalid` for an absurd grace period.
pub fn rotate(
    store: &Store,
    actor: &Actor,
    id: &str,
    grace: time::Duration,
    now: OffsetDateTime,
) -> Result<Rotated> {
    manageable(store, actor, id)?;
    let (successor, secret, previous) = store.rotate_token(id, grace, now)?;
    audit::change(
        store,
        actor,
        Event::TokenRotate,
        id,
        json!({"successor": successor.id, "grace_seconds": grace.whole_seconds()}),
    );
    Ok(Rotated {
        successor: Issued {
            record: successor,
            secret,
            missing_repos: Vec::new(),
        },
        previous,
    })
}
