//! Users and sessions, as records of the store's backend.
//!
//! A user (key: the name) holds an argon2id password hash (PHC string),
//! roles and a disabled flag. A session is kept under the SHA-256 of its
//! 256-bit id, so the store never holds a usable cookie. Sessions are
//! stored, not kept in memory, and so survive a restart. (The file backend:
//! `.cfgstore/users/{name}.json`, `.cfgstore/sessions/{sha256}.json`.)

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::backend::{Durability, RecordChange, Records};
use super::fsutil::hex;
use super::{now_rfc3339, OwnerName, Store};
use crate::auth::passwords;
use crate::auth::roles::Role;
use crate::error::{Error, Result};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct UserRecord {
    pub name: OwnerName,
    pub password_hash: String,
    pub roles: Vec<Role>,
    pub disabled: bool,
    pub created_at: String,
    pub password_changed_at: String,
}

/// A user as listings show it: no hash.
#[derive(Debug, Clone, Serialize)]
pub struct UserView {
    pub name: String,
    pub roles: Vec<Role>,
    pub disabled: bool,
    pub created_at: String,
    pub password_changed_at: String,
}

impl UserRecord {
    pub fn view(&self) -> UserView {
        UserView {
            name: self.name.to_string(),
            roles: self.roles.clone(),
            disabled: self.disabled,
            created_at: self.created_at.clone(),
            password_changed_at: self.password_changed_at.clone(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SessionRecord {
    pub user: OwnerName,
    pub created_at: String,
    pub last_seen_at: String,
}

/// The SHA-256 of a session id: its file name and lookup key.
pub fn session_key(id: &str) -> String {
    hex(&Sha256::digest(id.as_bytes()))
}

impl Store {
    /// Adds a user. Errors: `Conflict` if the name is taken.
    pub fn create_user(
        &self,
        name: &OwnerName,
        password: &str,
        roles: Vec<Role>,
    ) -> Result<UserRecord> {
        passwords::check_strength(password)?;
        let hash = passwords::hash(password)?;
        self.backend().change(Records::Users, |users| {
            if users.get(name.as_str())?.is_some() {
                return Err(Error::Conflict(format!("user {name} already exists")));
            }
            let now = now_rfc3339();
            let mut roles = roles;
            roles.sort();
            roles.dedup();
            let user = UserRecord {
                name: name.clone(),
                password_hash: hash,
                roles,
                disabled: false,
                created_at: now.clone(),
                password_changed_at: now,
            };
            put_user(users, &user)?;
            Ok(user)
        })
    }

    /// One user. Errors: `NotFound`.
    pub fn user(&self, name: &OwnerName) -> Result<UserRecord> {
        match self.backend().record(Records::Users, name.as_str())? {
            Some(bytes) => parse_user(name.as_str(), &bytes),
            None => Err(Error::not_found("user", name)),
        }
    }

    /// Every user, by name.
    pub fn list_users(&self) -> Result<Vec<UserRecord>> {
        let mut users = Vec::new();
        for (key, bytes) in self.backend().records(Records::Users)? {
            if OwnerName::parse(&key).is_ok() {
                users.push(parse_user(&key, &bytes)?);
            }
        }
        users.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(users)
    }

    /// Changes a user; with `end_sessions`, every session of theirs ends
    /// in the same change.
    fn update_user(
        &self,
        name: &OwnerName,
        end_sessions: bool,
        change: impl FnOnce(&mut UserRecord) -> Result<()>,
    ) -> Result<UserRecord> {
        let user = self.backend().change(Records::Users, |users| {
            let bytes = users
                .get(name.as_str())?
                .ok_or_else(|| Error::not_found("user", name))?;
            let mut user = parse_user(name.as_str(), &bytes)?;
            change(&mut user)?;
            put_user(users, &user)?;
            Ok(user)
        })?;
        if end_sessions {
            self.delete_sessions_of(name)?;
        }
        Ok(user)
    }

    /// Sets a new password and ends every session of the user.
    pub fn set_password(&self, name: &OwnerName, password: &str) -> Result<UserRecord> {
        passwords::check_strength(password)?;
        let hash = passwords::hash(password)?;
        self.update_user(name, true, |u| {
            u.password_hash = hash;
            u.password_changed_at = now_rfc3339();
            Ok(())
        })
    }

    pub fn grant_role(&self, name: &OwnerName, role: Role) -> Result<UserRecord> {
        self.update_user(name, false, |u| {
            if !u.roles.contains(&role) {
                u.roles.push(role);
                u.roles.sort();
            }
            Ok(())
        })
    }

    pub fn revoke_role(&self, name: &OwnerName, role: &Role) -> Result<UserRecord> {
        self.update_user(name, false, |u| {
            u.roles.retain(|r| r != role);
            Ok(())
        })
    }

    /// Disables a user: no login, every session ended.
    pub fn disable_user(&self, name: &OwnerName) -> Result<UserRecord> {
        self.update_user(name, true, |u| {
            u.disabled = true;
            Ok(())
        })
    }

    /// Starts a session; returns its id (the cookie value, never stored).
    pub fn create_session(&self, user: &OwnerName) -> Result<String> {
        let id = crate::auth::new_secret()?;
        let now = now_rfc3339();
        let record = SessionRecord {
            user: user.clone(),
            created_at: now.clone(),
            last_seen_at: now,
        };
        let bytes = serde_json::to_vec(&record).expect("session serialises");
        self.backend().change(Records::Sessions, |sessions| {
            sessions.put(&session_key(&id), &bytes, Durability::Durable)
        })?;
        Ok(id)
    }

    /// The session with this id, if any.
    pub fn session(&self, id: &str) -> Result<Option<SessionRecord>> {
        if !crate::auth::is_token_shaped(id) {
            return Ok(None);
        }
        let bytes = self.backend().record(Records::Sessions, &session_key(id))?;
        Ok(bytes.and_then(|b| serde_json::from_slice(&b).ok()))
    }

    /// Records activity on a session (callers coalesce: not every request).
    pub fn touch_session(&self, id: &str, at: &str) -> Result<()> {
        if !crate::auth::is_token_shaped(id) {
            return Ok(());
        }
        let key = session_key(id);
        self.backend().change(Records::Sessions, |sessions| {
            let Some(bytes) = sessions.get(&key)? else {
                return Ok(());
            };
            let Ok(mut record) = serde_json::from_slice::<SessionRecord>(&bytes) else {
                return Ok(());
            };
            record.last_seen_at = at.to_string();
            let bytes = serde_json::to_vec(&record).expect("session serialises");
            sessions.put(&key, &bytes, Durability::Lazy)
        })
    }

    /// Ends a session. Inside a change of sessions, so a concurrent
    /// `touch_session` cannot write it back.
    pub fn delete_session(&self, id: &str) -> Result<()> {
        self.backend().change(Records::Sessions, |sessions| {
            sessions.remove(&session_key(id))
        })
    }

    /// Ends every session of a user (password change, disable).
    pub fn delete_sessions_of(&self, user: &OwnerName) -> Result<()> {
        self.backend().change(Records::Sessions, |sessions| {
            for (key, bytes) in sessions.list()? {
                if serde_json::from_slice::<SessionRecord>(&bytes).is_ok_and(|s| s.user == *user) {
                    sessions.remove(&key)?;
                }
            }
            Ok(())
        })
    }
}

fn parse_user(key: &str, bytes: &[u8]) -> Result<UserRecord> {
    serde_json::from_slice(bytes).map_err(|e| {
        Error::corrupt(
            format!("user record {key}"),
            format!("bad user record: {e}"),
        )
    })
}

fn put_user(users: &mut dyn RecordChange, user: &UserRecord) -> Result<()> {
    let bytes = serde_json::to_vec_pretty(user).expect("user serialises");
    users.put(user.name.as_str(), &bytes, Durability::Durable)
}
