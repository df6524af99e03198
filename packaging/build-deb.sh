#!/usr/bin/env bash
# Builds target/debian/cfgstore_<version>_amd64.deb: the release binary,
# then the man page and shell completions made by that binary, then the
# package (cargo-deb: `cargo install cargo-deb` once).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release
mkdir -p target/assets
bin=target/release/cfgstore
"$bin" man | gzip -9n > target/assets/cfgstore.1.gz
"$bin" completions bash > target/assets/cfgstore.bash
"$bin" completions zsh > target/assets/_cfgstore
"$bin" completions fish > target/assets/cfgstore.fish
cargo deb --no-build
