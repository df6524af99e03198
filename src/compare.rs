//! Comparing two states of a project (`GET …/compare`, `cfgstore compare`,
//! `cfgstore history diff`): the files added, removed and modified, a
//! unified diff of each, and for JSON, YAML and TOML files the keys that
//! changed — `db.port: 5432 → 6543` — compared as data, so reformatting a
//! file or reordering its keys changes no key.
//!
//! A state is named by a reference (`Store::resolve`): a branch (its live
//! state), `branch@vNNNN`, or the commit id or `short_id` of a retained
//! version; the two may be on different branches.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde::Serialize;
use serde_json::Value;

use crate::error::{Error, Result};
use crate::names::{FilePath, ProjectRef};
use crate::store::{Generation, Store};

/// What changed between two states.
#[derive(Debug, Serialize)]
pub struct Comparison {
    pub from: State,
    pub to: State,
    pub added: u64,
    pub removed: u64,
    pub modified: u64,
    /// Every file that differs, by path.
    pub files: Vec<FileChange>,
}

/// One side of a comparison: the reference as given and what it named.
#[derive(Debug, Serialize)]
pub struct State {
    #[serde(rename = "ref")]
    pub reference: String,
    pub branch: String,
    pub version: String,
    pub short_id: String,
    pub commit_id: String,
}

impl State {
    fn of(reference: &str, branch: &crate::names::BranchName, gen: &Generation) -> State {
        State {
            reference: reference.to_string(),
            branch: branch.to_string(),
            version: gen.meta.version.to_string(),
            short_id: gen.meta.short_id.clone(),
            commit_id: gen.meta.commit_id.clone(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Added,
    Removed,
    Modified,
}

/// One file that differs between the two states.
#[derive(Debug, Serialize)]
pub struct FileChange {
    pub path: String,
    pub status: Status,
    /// The unified diff from the old content to the new (an added file
    /// against nothing, a removed one to nothing).
    pub diff: String,
    /// For a modified JSON, YAML or TOML file that parses on both sides:
    /// the keys that changed (empty when only its formatting did).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub keys: Option<Vec<KeyChange>>,
}

/// One value that differs, at a key path such as `db.port`,
/// `servers[0].host` or `labels["app.kubernetes.io/name"]`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct KeyChange {
    pub key: String,
    pub change: KeyStatus,
    /// The old value; absent for an added key.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub from: Option<Value>,
    /// The new value; absent for a removed key.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub to: Option<Value>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum KeyStatus {
    Added,
    Removed,
    Changed,
}

/// `db.port: 5432 → 6543`; an absent side reads `(absent)`.
impl fmt::Display for KeyChange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let side = |v: &Option<Value>| match v {
            Some(v) => v.to_string(),
            None => "(absent)".to_string(),
        };
        let key = if self.key.is_empty() {
            "(document)"
        } else {
            &self.key
        };
        write!(f, "{key}: {} → {}", side(&self.from), side(&self.to))
    }
}

/// Compares the states two references name in `project`. An unknown
/// reference is `UnknownRef` (404, with the branches as a hint).
pub fn compare(store: &Store, project: &ProjectRef, from: &str, to: &str) -> Result<Comparison> {
    let resolve = |reference: &str| {
        store
            .resolve(project, reference)?
            .ok_or_else(|| Error::UnknownRef {
                what: "ref",
                reference: reference.to_string(),
                branches: store
                    .branch_names(project)
                    .map(|names| names.iter().map(|b| b.to_string()).collect())
                    .unwrap_or_default(),
            })
    };
    store.require_project(project)?;
    let (from_branch, old) = resolve(from)?;
    let (to_branch, new) = resolve(to)?;
    let files = files(store, project, &old, &new)?;
    let count = |s: Status| files.iter().filter(|f| f.status == s).count() as u64;
    Ok(Comparison {
        from: State::of(from, &from_branch, &old),
        to: State::of(to, &to_branch, &new),
        added: count(Status::Added),
        removed: count(Status::Removed),
        modified: count(Status::Modified),
        files,
    })
}

/// The files that differ between two generations of a project, by path,
/// each with its diff and (for config formats) its key changes.
pub fn files(
    store: &Store,
    project: &ProjectRef,
    old: &Generation,
    new: &Generation,
) -> Result<Vec<FileChange>> {
    let paths: BTreeSet<&FilePath> = old
        .entries()
        .iter()
        .chain(new.entries())
        .map(|e| &e.path)
        .collect();
    let mut out = Vec::new();
    for path in paths {
        let (before, after) = (old.find(path), new.find(path));
        let status = match (before, after) {
            (None, Some(_)) => Status::Added,
            (Some(_), None) => Status::Removed,
            (Some(a), Some(b)) if a.hash != b.hash => Status::Modified,
            _ => continue,
        };
        let read = |entry: Option<&crate::store::Entry>| match entry {
            Some(e) => store.read_entry(project, e),
            None => Ok(bytes::Bytes::new()),
        };
        let (a, b) = (read(before)?, read(after)?);
        let keys = match status {
            Status::Modified => keys(path, &a, &b),
            _ => None,
        };
        out.push(FileChange {
            path: path.to_string(),
            status,
            diff: crate::diff::unified(&a, &b),
            keys,
        });
    }
    Ok(out)
}

/// The keys that differ between two versions of a config file, or `None`
/// when it is not JSON, YAML or TOML or either side does not parse.
/// Objects are compared key by key (their order does not matter), arrays
/// element by element.
pub fn keys(path: &FilePath, old: &[u8], new: &[u8]) -> Option<Vec<KeyChange>> {
    let old = crate::ops::validate::as_json(path, old)?;
    let new = crate::ops::validate::as_json(path, new)?;
    Some(value_changes(&old, &new))
}

/// The leaf differences between two values.
pub fn value_changes(old: &Value, new: &Value) -> Vec<KeyChange> {
    let (mut before, mut after) = (BTreeMap::new(), BTreeMap::new());
    leaves(String::new(), old, &mut before);
    leaves(String::new(), new, &mut after);
    let keys: BTreeSet<&String> = before.keys().chain(after.keys()).collect();
    keys.into_iter()
        .filter_map(|key| {
            let (from, to) = (before.get(key).copied(), after.get(key).copied());
            let change = match (from, to) {
                (None, Some(_)) => KeyStatus::Added,
                (Some(_), None) => KeyStatus::Removed,
                (Some(a), Some(b)) if a != b => KeyStatus::Changed,
                _ => return None,
            };
            Some(KeyChange {
                key: key.clone(),
                change,
                from: from.cloned(),
                to: to.cloned(),
            })
        })
        .collect()
}

/// Every scalar (and empty object or array) of `value` under its key path.
fn leaves<'v>(path: String, value: &'v Value, out: &mut BTreeMap<String, &'v Value>) {
    match value {
        Value::Object(map) if !map.is_empty() => {
            for (key, v) in map {
                leaves(child(&path, key), v, out);
            }
        }
        Value::Array(items) if !items.is_empty() => {
            for (i, v) in items.iter().enumerate() {
                leaves(format!("{path}[{i}]"), v, out);
            }
        }
        _ => {
            out.insert(path, value);
        }
    }
}

/// `parent.key`, or `parent["key"]` for a key that is not a plain word
/// (so `a.b` as one key never reads like `b` inside `a`).
fn child(parent: &str, key: &str) -> String {
    let plain = !key.is_empty()
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    match (plain, parent.is_empty()) {
        (true, true) => key.to_string(),
        (true, false) => format!("{parent}.{key}"),
        (false, _) => format!("{parent}[{}]", Value::String(key.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn changes(path: &str, old: &str, new: &str) -> Option<Vec<String>> {
        let path = FilePath::parse(path).unwrap();
        keys(&path, old.as_bytes(), new.as_bytes())
            .map(|changes| changes.iter().map(ToString::to_string).collect())
    }

    #[test]
    fn a_changed_value_is_named_by_its_key_path() {
        assert_eq!(
            changes(
                "app.json",
                r#"{"db": {"port": 5432, "host": "a"}, "jobs": [1, 2]}"#,
                r#"{"db": {"port": 6543, "host": "a"}, "jobs": [1, 3, 4]}"#
            )
            .unwrap(),
            [
                "db.port: 5432 → 6543",
                "jobs[1]: 2 → 3",
                "jobs[2]: (absent) → 4"
            ]
        );
    }

    #[test]
    fn key_order_and_formatting_change_no_key() {
        let old = "db:\n  port: 5432\n  host: a\n";
        let new = "db: {host: a,   port: 5432}\n";
        assert_eq!(changes("a.yaml", old, new).unwrap(), Vec::<String>::new());
        let old = "[db]\nport = 5432\nhost = \"a\"\n";
        let new = "[db]\nhost = 'a'\n\n\nport = 5_432\n";
        assert_eq!(changes("a.toml", old, new).unwrap(), Vec::<String>::new());
        let old = r#"{"b":1,"a":{"x":[1,2]}}"#;
        let new = "{\n  \"a\": {\"x\": [1, 2]},\n  \"b\": 1\n}\n";
        assert_eq!(changes("a.json", old, new).unwrap(), Vec::<String>::new());
    }

    #[test]
    fn added_removed_and_odd_keys() {
        assert_eq!(
            changes(
                "x.json",
                r#"{"a.b": 1, "gone": {"deep": true}, "e": {}}"#,
                r#"{"a.b": 2, "new key": null, "e": {"f": 1}}"#
            )
            .unwrap(),
            // In bytewise order of the key paths.
            [
                r#"["a.b"]: 1 → 2"#,
                r#"["new key"]: (absent) → null"#,
                "e: {} → (absent)",
                "e.f: (absent) → 1",
                "gone.deep: true → (absent)",
            ]
        );
        // A scalar document has one key: the document itself.
        assert_eq!(changes("x.json", "1", "2").unwrap(), ["(document): 1 → 2"]);
        // A TOML date reads as its text.
        assert_eq!(
            changes("x.toml", "d = 2026-01-01\n", "d = 2026-01-02\n").unwrap(),
            [r#"d: "2026-01-01" → "2026-01-02""#]
        );
    }

    #[test]
    fn other_files_and_malformed_sides_have_no_key_view() {
        assert_eq!(changes("notes.txt", "a=1", "a=2"), None);
        assert_eq!(changes("x.json", "{", "{}"), None);
        assert_eq!(changes("x.yaml", "a: 1", "a: [1"), None);
    }
}
