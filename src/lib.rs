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
//!   durable write path, recovery and `fsck`.
//! - [`auth`]: token and fingerprint decisions (HMAC under the server key,
//!   constant-time compares, expiry, scope). No I/O of its own.
//! - [`api`]: the HTTP API. `Endpoint` parsed from the raw path, one
//!   authentication step, one handler per endpoint, one error → status table.
//! - [`server`]: `run(listener, app, shutdown)`, the hyper accept loop.
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
pub mod metrics;
pub mod server;
pub mod store;

pub use error::{Error, Result};
