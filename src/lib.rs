//! cfgstore: a configuration store for a single box.
//!
//! ERP systems poll config files over a GitLab-v4-shaped HTTP read API;
//! operators manage projects, branches, files, history and tokens with the
//! `cfgstore` command on the same data directory, safely, while the daemon
//! runs.
//!
//! # Layout
//!
//! Imports point one way: `error` → `names` → `auth` → `store` → `ops` →
//! `api` → `server`, with the binary (`cli/`) on top.
//!
//! - [`error`]: the one error enum; HTTP statuses and exit codes are
//!   assigned where the error leaves the library.
//! - [`names`]: validated names (`OwnerName`, `RepoId`, `BranchName`,
//!   `FilePath`, `SnapshotId`): the only way a caller's string reaches the
//!   filesystem. [`hex`]: the hex encoding ids and MACs share.
//! - [`auth`]: decisions without I/O: token and fingerprint checks (HMAC
//!   under the server key, constant-time compares, expiry, scope), password
//!   hashing, and the one `authorize(principal, action, target)` of roles.
//! - [`store`]: the only code that touches the data directory: immutable
//!   generations, the durable write path, recovery and `fsck`; tokens,
//!   users, sessions and the audit trail on disk; backup and restore; the
//!   daemon's read cache.
//! - [`ops`]: one function per change (put, rollback, token create, user
//!   add, …) for every front end: authorize, write, append the audit
//!   record. The audit vocabulary lives there (`ops::audit`).
//! - [`api`]: the HTTP API, read (token) and admin (session): routing into
//!   a typed `Endpoint`, one authentication step before the body is read,
//!   one exhaustive dispatch, one error → status table (`api::response`).
//! - [`server`]: `run(listener, app, shutdown)`, the hyper accept loop, the
//!   execution model and the limits that hold (sizes, timeouts, connection
//!   cap).
//! - [`compare`]: two states of a project side by side: files, unified
//!   diffs and changed keys of JSON, YAML and TOML files.
//! - [`fleet`]: which read client holds which state of a branch, and
//!   who is behind since when.
//! - [`config`]: every daemon setting, its default and its source.
//! - [`metrics`]: the counters behind `GET /metrics`.
//!
//! The binary lives in `cli/` and holds no logic the library lacks: it
//! parses arguments, calls the operations (changes) or the store (reads)
//! and prints.

#![forbid(unsafe_code)]

pub mod api;
pub mod auth;
pub mod coarse;
pub mod compare;
pub mod config;
pub mod diff;
pub mod error;
pub mod fleet;
pub mod hex;
pub mod metrics;
pub mod names;
pub mod ops;
#[cfg(test)]
mod parser_props;
pub mod server;
pub mod store;

pub use error::{Error, Result};
