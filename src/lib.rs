//! cfgstore: a configuration store for a single box.
//!
//! ERP systems poll config files over a GitLab-v4-shaped HTTP read API;
//! operators manage projects, branches, files, history and tokens with the
//! `cfgstore` command on the same data directory, safely, while the daemon
//! runs.
//!
//! # Layout
//!
//! - [`store`]: the only code that touches the data directory. Validated
//!   names (`store::names`), immutable generations and snapshots, the
//!   durable write path, recovery and `fsck`; tokens, users, sessions and
//!   the audit trail on disk; backup and restore; the daemon's read cache.
//! - [`auth`]: decisions without I/O: token and fingerprint checks (HMAC
//!   under the server key, constant-time compares, expiry, scope), password
//!   hashing, and the one `authorize(principal, action, target)` of roles.
//! - [`api`]: the HTTP API, read (token) and admin (session). `Endpoint`
//!   parsed from the raw path, one authentication step, one handler per
//!   endpoint, one error → status table (`api::response`).
//! - [`server`]: `run(listener, app, shutdown)`, the hyper accept loop and
//!   the limits that hold (sizes, timeouts, connection cap).
//! - [`config`]: every daemon setting, its default and its source.
//! - [`metrics`]: the counters behind `GET /metrics`.
//! - [`error`]: the one error enum; HTTP statuses and exit codes are
//!   assigned where the error leaves the library.
//!
//! The binary lives in `cli/` and holds no logic the library lacks: it
//! parses arguments, calls the store and prints.

#![forbid(unsafe_code)]

pub mod api;
pub mod auth;
pub mod config;
pub mod error;
pub mod hex;
pub mod metrics;
pub mod names;
pub mod ops;
#[cfg(test)]
mod parser_props;
pub mod server;
pub mod store;

pub use error::{Error, Result};
