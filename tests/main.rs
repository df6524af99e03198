//! Integration tests: the real `cfgstore` binary on real data directories.
//! One binary, so helpers in `util` are compiled once.

mod cli;
mod crash;
mod util;
