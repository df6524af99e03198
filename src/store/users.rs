//! Users and sessions on disk.
//!
//! `.cfgstore/users/{name}.json` holds a user: argon2id password hash
//! (PHC string), roles, disabled flag. `.cfgstore/sessions/{sha256}.json`
//! holds a session under the SHA-256 of its 256-bit id, so the files never
//! contain a usable cookie. Sessions live on disk and so survive a restart.

use std::fs;
use std::io;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::fsutil::{hex, read_regular, LockGuard};
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
    fn users_lock(&self) -> Result<LockGuard> {
        super::fsutil::create_dir_durable(&self.layout().users_dir())?;
        super::fsutil::create_dir_durable(&self.layout().sessions_dir())?;
        LockGuard::acquire(&self.layout().users_lock(), Duration::from_secs(10))
    }

    fn user_path(&self, name: &OwnerName) -> std::path::PathBuf {
        self.layout().users_dir().join(format!("{name}.json"))
    }

    fn session_path(&self, key: &str) -> std::path::PathBuf {
        self.layout().sessions_dir().join(format!("{key}.json"))
    }

    fn write_user(&self, user: &UserRecord) -> Result<()> {
        let bytes = serde_json::to_vec_pretty(user).expect("user serialises");
        self.scratch()?
            .replace_file(&self.user_path(&user.name), &bytes)
    }

    /// Adds a user. Errors: `Conflict` if the name is taken.
    pub fn create_user(
        &self,
        name: &OwnerName,
        password: &str,
        roles: Vec<Role>,
    ) -> Result<UserRecord> {
        passwords::check_strength(password)?;
        let hash = passwords::hash(password)?;
        let _lock = self.users_lock()?;
        if self.user_path(name).exists() {
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
        self.write_user(&user)?;
        Ok(user)
    }

    /// One user. Errors: `NotFound`.
    pub fn user(&self, name: &OwnerName) -> Result<UserRecord> {
        let path = self.user_path(name);
        match read_regular(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map_err(|e| Error::corrupt(&path, format!("bad user record: {e}"))),
            Err(Error::Io { source, .. }) if source.kind() == io::ErrorKind::NotFound => {
                Err(Error::not_found("user", name))
            }
            Err(e) => Err(e),
        }
    }

    pub fn list_users(&self) -> Result<Vec<UserRecord>> {
        let dir = self.layout().users_dir();
        let entries = match fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(Error::io(&dir, e)),
        };
        let mut users = Vec::new();
        for entry in entries {
            let name = entry.map_err(|e| Error::io(&dir, e))?.file_name();
            if let Some(name) = name
                .to_str()
                .and_then(|n| n.strip_suffix(".json"))
                .and_then(|n| OwnerName::parse(n).ok())
            {
                users.push(self.user(&name)?);
            }
        }
        users.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(users)
    }

    fn update_user(
        &self,
        name: &OwnerName,
        change: impl FnOnce(&mut UserRecord) -> Result<()>,
    ) -> Result<UserRecord> {
        let _lock = self.users_lock()?;
        let mut user = self.user(name)?;
        change(&mut user)?;
        self.write_user(&user)?;
        Ok(user)
    }

    /// Sets a new password and ends every session of the user.
    pub fn set_password(&self, name: &OwnerName, password: &str) -> Result<UserRecord> {
        passwords::check_strength(password)?;
        let hash = passwords::hash(password)?;
        let user = self.update_user(name, |u| {
            u.password_hash = hash;
            u.password_changed_at = now_rfc3339();
            Ok(())
        })?;
        self.delete_sessions_of(name)?;
        Ok(user)
    }

    pub fn grant_role(&self, name: &OwnerName, role: Role) -> Result<UserRecord> {
        self.update_user(name, |u| {
            if !u.roles.contains(&role) {
                u.roles.push(role);
                u.roles.sort();
            }
            Ok(())
        })
    }

    pub fn revoke_role(&self, name: &OwnerName, role: &Role) -> Result<UserRecord> {
        self.update_user(name, |u| {
            u.roles.retain(|r| r != role);
            Ok(())
        })
    }

    /// Disables a user: no login, every session ended.
    pub fn disable_user(&self, name: &OwnerName) -> Result<UserRecord> {
        let user = self.update_user(name, |u| {
            u.disabled = true;
            Ok(())
        })?;
        self.delete_sessions_of(name)?;
        Ok(user)
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
        let _lock = self.users_lock()?;
        let bytes = serde_json::to_vec(&record).expect("session serialises");
        self.scratch()?
            .replace_file(&self.session_path(&session_key(&id)), &bytes)?;
        Ok(id)
    }

    /// The session with this id, if any.
    pub fn session(&self, id: &str) -> Result<Option<SessionRecord>> {
        if !crate::auth::is_token_shaped(id) {
            return Ok(None);
        }
        let path = self.session_path(&session_key(id));
        match read_regular(&path) {
            Ok(bytes) => Ok(serde_json::from_slice(&bytes).ok()),
            Err(Error::Io { source, .. }) if source.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Records activity on a session (callers coalesce: not every request).
    pub fn touch_session(&self, id: &str, at: &str) -> Result<()> {
        let _lock = self.users_lock()?;
        if let Some(mut record) = self.session(id)? {
            record.last_seen_at = at.to_string();
            let bytes = serde_json::to_vec(&record).expect("session serialises");
            self.scratch()?
                .place_file(&self.session_path(&session_key(id)), &bytes)?;
        }
        Ok(())
    }

    /// Ends a session. Under the users lock, so a concurrent `touch_session`
    /// cannot write it back.
    pub fn delete_session(&self, id: &str) -> Result<()> {
        let _lock = self.users_lock()?;
        let path = self.session_path(&session_key(id));
        match fs::remove_file(&path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(Error::io(&path, e)),
            _ => super::fsutil::fsync_dir(path.parent().expect("sessions folder")),
        }
    }

    /// Ends every session of a user (password change, disable).
    pub fn delete_sessions_of(&self, user: &OwnerName) -> Result<()> {
        let _lock = self.users_lock()?;
        let dir = self.layout().sessions_dir();
        let entries = match fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(Error::io(&dir, e)),
        };
        for entry in entries {
            let path = entry.map_err(|e| Error::io(&dir, e))?.path();
            let Ok(bytes) = read_regular(&path) else {
                continue;
            };
            if serde_json::from_slice::<SessionRecord>(&bytes).is_ok_and(|s| s.user == *user) {
                fs::remove_file(&path).map_err(|e| Error::io(&path, e))?;
            }
        }
        super::fsutil::fsync_dir(&dir)
    }
}
