//! Changes to users and sessions: add, password, roles, disable; the
//! start and end of a session.

use serde_json::json;

use super::audit::{self, Event};
use super::Actor;
use crate::auth::roles::{Action, Role, Target};
use crate::error::{Error, Result};
use crate::names::OwnerName;
use crate::store::users::UserRecord;
use crate::store::Store;

fn target(name: &OwnerName) -> String {
    format!("user:{name}")
}

/// Adds a user. `public` is refused: it names the public area, and a user
/// of that name would own it. Errors: `Forbidden`, `Invalid`, `Conflict`.
pub fn add(
    store: &Store,
    actor: &Actor,
    name: &OwnerName,
    password: &str,
    roles: Vec<Role>,
) -> Result<UserRecord> {
    actor.authorize(Action::ManageUsers, Target::Everything)?;
    if name.is_public() {
        return Err(Error::invalid(format!(
            "no user may be named {:?}: it is the public area",
            OwnerName::PUBLIC
        )));
    }
    let user = store.create_user(name, password, roles)?;
    audit::change(
        store,
        actor,
        Event::UserAdd,
        &target(name),
        json!({"roles": user.roles}),
    );
    Ok(user)
}

/// Sets a password; every session of the user ends.
pub fn set_password(
    store: &Store,
    actor: &Actor,
    name: &OwnerName,
    password: &str,
) -> Result<UserRecord> {
    actor.authorize(Action::ManageUsers, Target::Everything)?;
    let user = store.set_password(name, password)?;
    audit::change(store, actor, Event::UserPasswd, &target(name), json!({}));
    Ok(user)
}

pub fn grant(store: &Store, actor: &Actor, name: &OwnerName, role: Role) -> Result<UserRecord> {
    actor.authorize(Action::ManageUsers, Target::Everything)?;
    let user = store.grant_role(name, role.clone())?;
    audit::change(
        store,
        actor,
        Event::UserGrant,
        &target(name),
        json!({"role": role}),
    );
    Ok(user)
}

pub fn revoke(store: &Store, actor: &Actor, name: &OwnerName, role: &Role) -> Result<UserRecord> {
    actor.authorize(Action::ManageUsers, Target::Everything)?;
    let user = store.revoke_role(name, role)?;
    audit::change(
        store,
        actor,
        Event::UserRevoke,
        &target(name),
        json!({"role": role}),
    );
    Ok(user)
}

/// Disables a user: no more logins, every session ended.
pub fn disable(store: &Store, actor: &Actor, name: &OwnerName) -> Result<UserRecord> {
    actor.authorize(Action::ManageUsers, Target::Everything)?;
    let user = store.disable_user(name)?;
    audit::change(store, actor, Event::UserDisable, &target(name), json!({}));
    Ok(user)
}

/// Starts a session for a user whose password was just verified; returns
/// the session id (the cookie's value).
pub fn start_session(store: &Store, actor: &Actor, user: &UserRecord) -> Result<String> {
    let id = store.create_session(&user.name)?;
    audit::change(
        store,
        actor,
        Event::LoginSuccess,
        &target(&user.name),
        json!({}),
    );
    Ok(id)
}

/// Ends a session at the user's request.
pub fn end_session(store: &Store, actor: &Actor, user: &OwnerName, session_id: &str) -> Result<()> {
    store.delete_session(session_id)?;
    audit::change(store, actor, Event::Logout, &target(user), json!({}));
    Ok(())
}

/// Records a refused login: the user's name only if such a user exists (a
/// "name" that names no one is often a password typed into the wrong
/// field, and the trail must never hold one).
pub fn login_failed(store: &Store, actor: &Actor, known_user: Option<&OwnerName>) {
    let target = known_user.map_or_else(|| "user:(unknown)".to_string(), target);
    audit::change(store, actor, Event::LoginFailure, &target, json!({}));
}
