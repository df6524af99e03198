//! The operations: one function per change to the store, shared by every
//! front end (the CLI, the admin API, the web UI).
//!
//! Each operation takes the [`Actor`] asking for it, checks (authorization
//! first, so a refused caller learns nothing about what exists; then the
//! input), writes through [`Store`], and appends the durable audit record
//! (`audit.rs` holds the vocabulary) before it returns. A front end parses
//! its input into validated names, calls the operation and renders the
//! outcome; it never writes to the store or builds an audit record itself.
//!
//! A change that is done and durable stays reported as done even when its
//! audit record cannot be written: the failure is logged at error level
//! (the CLI shows it on stderr, the daemon in its log and in
//! `cfgstore_audit_failures_total`), since an error answer would invite the
//! caller to repeat a change that happened and would lose a token secret
//! shown only once.
//!
//! [`Store`]: crate::store::Store

pub mod audit;
pub mod content;
pub mod retention;
pub mod tokens;
pub mod users;
pub mod validate;

use crate::auth::roles::{authorize, Action, Principal, Role, Target};
use crate::error::Result;
use crate::names::OwnerName;

pub use audit::Event;

/// Who asks for a change, and from where.
#[derive(Debug, Clone)]
pub struct Actor {
    pub who: Who,
    /// The client address (the forwarded one behind a trusted proxy).
    pub ip: Option<String>,
    /// The client's `User-Agent`, cut to 200 characters.
    pub user_agent: Option<String>,
}

/// The identity behind an [`Actor`].
#[derive(Debug, Clone)]
pub enum Who {
    /// The operator at the host's shell (`cfgstore …`), by Unix user name.
    /// Whoever can run the CLI on the data directory already owns every
    /// file in it, so the operator may do everything.
    Operator(String),
    /// A logged-in user of the admin API or the web UI, with their roles.
    User { name: OwnerName, roles: Vec<Role> },
    /// A read token (it changes nothing but its own fingerprint binding).
    Token(String),
    /// Nobody identified yet: a failed login, a request without credentials.
    Anonymous,
}

impl Actor {
    pub fn operator(unix_user: impl Into<String>) -> Actor {
        Actor::new(Who::Operator(unix_user.into()))
    }

    pub fn user(name: OwnerName, roles: Vec<Role>) -> Actor {
        Actor::new(Who::User { name, roles })
    }

    pub fn token(id: impl Into<String>) -> Actor {
        Actor::new(Who::Token(id.into()))
    }

    pub fn anonymous() -> Actor {
        Actor::new(Who::Anonymous)
    }

    fn new(who: Who) -> Actor {
        Actor {
            who,
            ip: None,
            user_agent: None,
        }
    }

    /// The same actor, seen at a client address with a user agent.
    pub fn from_client(mut self, ip: Option<String>, user_agent: Option<String>) -> Actor {
        self.ip = ip;
        self.user_agent = user_agent.map(|a| a.chars().take(200).collect());
        self
    }

    /// The name the audit trail records: `cli:{unix user}`, a user name,
    /// `token:{id}` or `anonymous`.
    pub fn name(&self) -> String {
        match &self.who {
            Who::Operator(unix) => format!("cli:{unix}"),
            Who::User { name, .. } => name.to_string(),
            Who::Token(id) => format!("token:{id}"),
            Who::Anonymous => "anonymous".into(),
        }
    }

    /// The user behind this actor, if a user.
    pub fn user_name(&self) -> Option<&OwnerName> {
        match &self.who {
            Who::User { name, .. } => Some(name),
            _ => None,
        }
    }

    pub fn principal(&self) -> Principal<'_> {
        match &self.who {
            Who::Operator(_) => Principal::Operator,
            Who::User { name, roles } => Principal::User { name, roles },
            Who::Token(_) | Who::Anonymous => Principal::Nobody,
        }
    }

    /// `roles::authorize` for this actor: `Ok` or `Forbidden`.
    pub fn authorize(&self, action: Action, target: Target) -> Result<()> {
        authorize(self.principal(), action, target)
    }
}
