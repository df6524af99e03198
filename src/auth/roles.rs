//! Roles and the one authorization decision every handler and the CLI use.
//!
//! Roles stack; none removes another (SPEC §6). Deny by default: anything
//! not granted below is `Forbidden`.

use std::fmt;

use crate::error::{Error, Result};
use crate::names::{OwnerName, ProjectRef};

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Role {
    /// `ROLE_SITEBUILDER_USER`: read and write the user's own folder.
    User,
    /// `ROLE_SITEBUILDER_USER__{prefix}`: read and write projects whose id is
    /// `{prefix}`, `{prefix}.{type}` or `{prefix}/…`, in any user's folder.
    UserPrefix(String),
    /// `ROLE_SITEBUILDER_EDITOR__PUBLIC`: write and remove in the public area.
    EditorPublic,
    /// `ROLE_SITEBUILDER_EDITOR__READONLY`: read and list every owner.
    EditorReadonly,
    /// `ROLE_SITEBUILDER_EDITOR__ROOT`: everything, tokens and users included.
    EditorRoot,
}

const USER: &str = "ROLE_SITEBUILDER_USER";
const PUBLIC: &str = "ROLE_SITEBUILDER_EDITOR__PUBLIC";
const READONLY: &str = "ROLE_SITEBUILDER_EDITOR__READONLY";
const ROOT: &str = "ROLE_SITEBUILDER_EDITOR__ROOT";

impl Role {
    pub fn parse(s: &str) -> Result<Role> {
        match s {
            USER => Ok(Role::User),
            PUBLIC => Ok(Role::EditorPublic),
            READONLY => Ok(Role::EditorReadonly),
            ROOT => Ok(Role::EditorRoot),
            _ => match s.strip_prefix("ROLE_SITEBUILDER_USER__") {
                Some(prefix)
                    if !prefix.is_empty()
                        && prefix.len() <= 128
                        && !prefix.starts_with('.')
                        && prefix.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_')) =>
                {
                    Ok(Role::UserPrefix(prefix.to_string()))
                }
                _ => Err(Error::invalid(format!(
                    "unknown role {s:?}: use {USER}, {USER}__{{prefix}}, {PUBLIC}, {READONLY} or {ROOT}"
                ))),
            },
        }
    }

    /// Whether a prefix role covers `repo`: exactly, or on a `.` or `/`
    /// boundary (`team-a` covers `team-a.cfg`, never `team-ab`).
    fn prefix_covers(prefix: &str, repo: &str) -> bool {
        repo == prefix
            || repo
                .strip_prefix(prefix)
                .is_some_and(|rest| rest.starts_with('.') || rest.starts_with('/'))
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Role::User => f.write_str(USER),
            Role::UserPrefix(prefix) => write!(f, "{USER}__{prefix}"),
            Role::EditorPublic => f.write_str(PUBLIC),
            Role::EditorReadonly => f.write_str(READONLY),
            Role::EditorRoot => f.write_str(ROOT),
        }
    }
}

impl serde::Serialize for Role {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Role {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Role::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// Who is asking.
#[derive(Debug, Clone, Copy)]
pub enum Principal<'a> {
    /// A logged-in user.
    User {
        name: &'a OwnerName,
        roles: &'a [Role],
    },
    /// The operator at the host's shell: whoever can run the CLI on the
    /// data directory already owns every file in it.
    Operator,
    /// No user: a read token or an anonymous client. Granted nothing here
    /// (tokens are checked against their own scope, `TokenRecord::covers`).
    Nobody,
}

/// What they want to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// See a project, its branches, files and history.
    Read,
    /// Create, change or remove in a project: branches, files, rollbacks.
    Write,
    /// Create a project in an owner's folder: one's own, the public area
    /// with the public editor role, any with ROOT. A prefix role writes in
    /// other owners' projects but never creates them.
    CreateProject,
    /// Create, change, revoke and rotate read tokens of an owner.
    ManageTokens,
    /// Read the audit trail.
    ReadAudit,
    /// Add and change users.
    ManageUsers,
}

/// What they want to do it to.
#[derive(Debug, Clone, Copy)]
pub enum Target<'a> {
    Project(&'a ProjectRef),
    Owner(&'a OwnerName),
    Everything,
}

/// The one authorization decision. `Ok` or `Forbidden`.
pub fn authorize(principal: Principal, action: Action, target: Target) -> Result<()> {
    if allowed(principal, action, target) {
        Ok(())
    } else {
        Err(Error::Forbidden(format!(
            "{action:?} on {} is not granted",
            describe(target)
        )))
    }
}

fn allowed(principal: Principal, action: Action, target: Target) -> bool {
    let (name, roles) = match principal {
        Principal::Operator => return true,
        Principal::Nobody => return false,
        Principal::User { name, roles } => (name, roles),
    };
    let has = |role: &Role| roles.contains(role);
    if has(&Role::EditorRoot) {
        return true;
    }
    // A prefix role covers other users' folders, never the public area
    // (only the public editor and ROOT write there).
    let prefix_covers = |project: &ProjectRef| {
        !project.owner.is_public()
            && roles.iter().any(|r| matches!(r, Role::UserPrefix(prefix) if Role::prefix_covers(prefix, project.repo.as_str())))
    };
    match (action, target) {
        (Action::Read, Target::Project(p)) => {
            p.owner == *name
                || p.owner.is_public()
                || has(&Role::EditorReadonly)
                || prefix_covers(p)
        }
        (Action::Read, Target::Owner(o)) => {
            *o == *name || o.is_public() || has(&Role::EditorReadonly)
        }
        (Action::Write, Target::Project(p)) => {
            p.owner == *name
                || (p.owner.is_public() && has(&Role::EditorPublic))
                || prefix_covers(p)
        }
        (Action::CreateProject, Target::Owner(o)) => {
            *o == *name || (o.is_public() && has(&Role::EditorPublic))
        }
        (Action::ManageTokens, Target::Owner(o)) => *o == *name,
        (Action::ReadAudit, Target::Everything) => has(&Role::EditorReadonly),
        // The trail of a project: whoever may read the project.
        (Action::ReadAudit, Target::Project(p)) => {
            p.owner == *name
                || p.owner.is_public()
                || has(&Role::EditorReadonly)
                || prefix_covers(p)
        }
        _ => false,
    }
}

fn describe(target: Target) -> String {
    match target {
        Target::Project(p) => p.to_string(),
        Target::Owner(o) => format!("owner {o}"),
        Target::Everything => "the whole store".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(roles: &[&str], action: Action, project: &str) -> bool {
        let name = OwnerName::parse("alice").unwrap();
        let roles: Vec<Role> = roles.iter().map(|r| Role::parse(r).unwrap()).collect();
        let project = ProjectRef::parse(project).unwrap();
        authorize(
            Principal::User {
                name: &name,
                roles: &roles,
            },
            action,
            Target::Project(&project),
        )
        .is_ok()
    }

    #[test]
    fn roles_parse_and_print() {
        for r in [
            USER,
            PUBLIC,
            READONLY,
            ROOT,
            "ROLE_SITEBUILDER_USER__team-a",
        ] {
            assert_eq!(Role::parse(r).unwrap().to_string(), r);
        }
        for bad in [
            "",
            "ROLE_X",
            "ROLE_SITEBUILDER_USER__",
            "ROLE_SITEBUILDER_USER__a/b",
            "ROLE_SITEBUILDER_USER__.x",
            "role_sitebuilder_user",
        ] {
            assert!(Role::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_role_table() {
        use Action::{Read, Write};
        // Own folder: always.
        assert!(check(&[], Read, "alice/x.cfg") && check(&[], Write, "alice/x.cfg"));
        // Someone else's: never without a role.
        assert!(!check(&[], Read, "bob/x.cfg") && !check(&[], Write, "bob/x.cfg"));
        // Prefix roles match on a boundary only.
        let team = "ROLE_SITEBUILDER_USER__team-a";
        assert!(check(&[team], Write, "bob/team-a") && check(&[team], Write, "bob/team-a.cfg"));
        assert!(check(&[team], Read, "bob/team-a.cfg"));
        assert!(!check(&[team], Write, "bob/team-ab") && !check(&[team], Read, "bob/team-ab.cfg"));
        assert!(!check(&[team], Write, "bob/xteam-a.cfg"));
        // Public: anyone reads; only the public editor writes.
        assert!(check(&[], Read, "public/u.cfg") && !check(&[], Write, "public/u.cfg"));
        assert!(check(&[PUBLIC], Write, "public/u.cfg") && !check(&[PUBLIC], Write, "bob/u.cfg"));
        // Readonly reads everything and writes nothing it did not have.
        assert!(check(&[READONLY], Read, "bob/x.cfg") && !check(&[READONLY], Write, "bob/x.cfg"));
        // Root does everything.
        assert!(check(&[ROOT], Write, "bob/x.cfg") && check(&[ROOT], Write, "public/x.cfg"));
        // Roles stack.
        assert!(check(&[READONLY, team], Write, "bob/team-a.cfg"));
    }

    #[test]
    fn tokens_audit_and_the_operator() {
        let alice = OwnerName::parse("alice").unwrap();
        let bob = OwnerName::parse("bob").unwrap();
        let user = |roles: &'static [Role]| Principal::User {
            name: &alice,
            roles,
        };
        assert!(authorize(user(&[]), Action::ManageTokens, Target::Owner(&alice)).is_ok());
        assert!(authorize(user(&[]), Action::ManageTokens, Target::Owner(&bob)).is_err());
        assert!(authorize(
            user(&[Role::EditorReadonly]),
            Action::ManageTokens,
            Target::Owner(&bob)
        )
        .is_err());
        assert!(authorize(
            user(&[Role::EditorRoot]),
            Action::ManageTokens,
            Target::Owner(&bob)
        )
        .is_ok());
        assert!(authorize(user(&[]), Action::ReadAudit, Target::Everything).is_err());
        assert!(authorize(
            user(&[Role::EditorReadonly]),
            Action::ReadAudit,
            Target::Everything
        )
        .is_ok());
        assert!(authorize(
            user(&[Role::EditorReadonly]),
            Action::ManageUsers,
            Target::Everything
        )
        .is_err());
        assert!(authorize(Principal::Operator, Action::ManageUsers, Target::Everything).is_ok());
    }
}
