//! Integration tests: the real `cfgstore` binary and the real server on
//! real data directories. One binary, so helpers in `util` compile once.

mod admin_api;
mod attacks;
mod cli;
mod cli_behaves;
mod compare;
mod connections;
mod crash;
#[cfg(feature = "failpoints")]
mod failpoints;
mod faults;
mod fleet;
mod format;
mod gitlab_client;
mod hostile;
mod lean;
mod old_store;
mod ops;
mod postgres;
mod races;

mod read_api;
mod retention;
mod secrets;
mod ui;
mod ui_http;
mod util;
mod validation;
