//! Integration tests: the real `cfgstore` binary and the real server on
//! real data directories. One binary, so helpers in `util` compile once.

mod admin_api;
mod cli;
mod connections;
mod crash;
mod gitlab_client;
mod ops;
mod read_api;
mod secrets;
mod util;
