#!/bin/sh
# Runs every cargo-fuzz target in fuzz/ for N seconds (default 60):
#   scripts/fuzz.sh [SECONDS] [TARGET...]
# Needs a nightly toolchain and cargo-fuzz (`cargo install cargo-fuzz`);
# without them it says so and exits 0, so it can sit in any pipeline.
# Crashes are written to fuzz/artifacts/TARGET/ and make the script fail.
set -eu
seconds=${1:-60}
[ $# -gt 0 ] && shift
cd "$(dirname "$0")/../fuzz"

if ! cargo +nightly --version >/dev/null 2>&1; then
    echo "fuzz.sh: skipped: no nightly toolchain (rustup toolchain install nightly)"
    exit 0
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "fuzz.sh: skipped: cargo-fuzz is not installed (cargo install cargo-fuzz)"
    exit 0
fi

targets=${*:-$(cargo +nightly fuzz list)}
failed=""
for target in $targets; do
    echo "== $target: ${seconds}s"
    mkdir -p "corpus/$target"
    # corpus/ grows and is kept between runs; seeds/ is read-only input.
    if ! cargo +nightly fuzz run "$target" "corpus/$target" "seeds/$target" -- \
        -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1; then
        failed="$failed $target"
    fi
done
if [ -n "$failed" ]; then
    echo "fuzz.sh: crashes in:$failed (see fuzz/artifacts/)"
    exit 1
fi
echo "fuzz.sh: all targets ran ${seconds}s without a crash"
