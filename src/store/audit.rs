//! The audit trail: append-only, one JSON record per line (SPEC §9; the
//! file backend keeps it in `.cfgstore/audit.log`). Changes are appended
//! durably before the caller reports success; denied requests are appended
//! without a flush, so a flood of bad tokens cannot turn into a flood of
//! disk flushes.

use serde::{Deserialize, Serialize};

use super::Store;
use crate::error::Result;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditRecord {
    pub time: String,
    /// A user name, `token:{id}`, or `cli:{unix user}`.
    pub actor: String,
    /// `project.create`, `file.put`, `token.revoke`, `login.failure`, ...
    pub action: String,
    /// What it was done to: `owner/repo`, `owner/repo@branch:path`, a token id, a user.
    pub target: String,
    /// Old and new short_id, snapshot version, ... never a secret.
    #[serde(default, skip_serializing_if = "serde_json::Value::is_null")]
    pub details: serde_json::Value,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_agent: Option<String>,
}

impl AuditRecord {
    pub fn new(
        actor: &str,
        action: &str,
        target: impl Into<String>,
        details: serde_json::Value,
    ) -> AuditRecord {
        AuditRecord {
            time: super::now_rfc3339(),
            actor: actor.to_string(),
            action: action.to_string(),
            target: target.into(),
            details,
            ip: None,
            user_agent: None,
        }
    }
}

/// Which records to read. Every field narrows; `None` matches all.
#[derive(Debug, Default, Clone)]
pub struct AuditFilter {
    /// An exact action (`file.put`) or a family (`token` or `token.`).
    pub action: Option<String>,
    pub actor: Option<String>,
    /// `owner/repo`: records whose target is that project or inside it.
    pub project: Option<String>,
    /// RFC 3339 bounds, inclusive.
    pub since: Option<String>,
    pub until: Option<String>,
}

impl AuditFilter {
    fn matches(&self, r: &AuditRecord) -> bool {
        let action = self.action.as_deref().is_none_or(|a| {
            let family = a.trim_end_matches('.');
            r.action == a
                || r.action
                    .strip_prefix(family)
                    .is_some_and(|rest| rest.starts_with('.'))
        });
        let project = self.project.as_deref().is_none_or(|p| {
            r.target == p
                || r.target
                    .strip_prefix(p)
                    .is_some_and(|rest| rest.starts_with('@') || rest.starts_with('/'))
        });
        action
            && project
            && self.actor.as_deref().is_none_or(|a| r.actor == a)
            && self.since.as_deref().is_none_or(|s| r.time.as_str() >= s)
            && self.until.as_deref().is_none_or(|u| r.time.as_str() <= u)
    }
}

impl Store {
    /// Appends one record. With `durable`, it is on stable storage when
    /// this returns.
    pub fn append_audit(&self, record: &AuditRecord, durable: bool) -> Result<()> {
        let line = serde_json::to_vec(record).expect("audit record serialises");
        self.backend.append_audit(&line, durable)
    }

    /// The records that match, newest first.
    pub fn read_audit(&self, filter: &AuditFilter) -> Result<Vec<AuditRecord>> {
        let mut out = Vec::new();
        self.backend.audit_lines(&mut |line| {
            // A torn last line (crash mid-append) is skipped, not fatal.
            if let Ok(record) = serde_json::from_slice::<AuditRecord>(line) {
                if filter.matches(&record) {
                    out.push(record);
                }
            }
        })?;
        out.reverse();
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters() {
        let r = AuditRecord::new(
            "alice",
            "token.revoke",
            "demo/x.cfg@main:a.json",
            serde_json::Value::Null,
        );
        let f = |action: Option<&str>, project: Option<&str>| {
            AuditFilter {
                action: action.map(Into::into),
                project: project.map(Into::into),
                ..Default::default()
            }
            .matches(&r)
        };
        assert!(f(Some("token.revoke"), None));
        assert!(f(Some("token"), None));
        assert!(f(Some("token."), None));
        assert!(!f(Some("tok"), None));
        assert!(!f(Some("token.create"), None));
        assert!(f(None, Some("demo/x.cfg")));
        assert!(!f(None, Some("demo/x")));
        assert!(!f(None, Some("demo/x.cf")));
    }
}
