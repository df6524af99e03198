#!/usr/bin/env bash
# What a `cfgstore file put` costs as the branch grows (200, 2,000, 20,000
# and 100,000 files), in time and in bytes added to the store per version.
# Each put is a whole CLI process (start, open, lock, write object, write
# generation, fsync, switch HEAD), i.e. what an operator or script pays.
#
#   bash bench/put-cost.sh [PUTS] [SIZES]   (default 30 puts; sizes "200 2000 20000 100000")
#
# Builds the release binary once, works in a temp dir it removes at exit,
# starts no servers.
set -euo pipefail
cd "$(dirname "$0")/.."
puts=${1:-30}
sizes=${2:-"200 2000 20000 100000"}
cargo build --release --quiet
bin=$PWD/target/release/cfgstore
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
data=$work/data
"$bin" --data "$data" init >/dev/null

make_tree() { # DIR COUNT: COUNT files of 0.5-2 KB in 100 nested folders
  python3 - "$1" "$2" <<'PY'
import os, sys
root, n = sys.argv[1], int(sys.argv[2])
for i in range(n):
    d = os.path.join(root, f"area{i % 10}", f"group{i % 100}")
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, f"file{i}.json"), "w") as f:
        f.write('{"id": %d, "pad": "%s"}\n' % (i, "x" * (500 + (i * 37) % 1500)))
PY
}

median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
p90() { sort -n | awk '{a[NR]=$1} END {i=int(NR*0.9); if (i<1) i=1; print a[i]}'; }

for files in $sizes; do
  "$bin" --data "$data" project create bench "b$files" --type cfg >/dev/null
  make_tree "$work/src$files" "$files"
  start=$(date +%s%N)
  "$bin" --data "$data" import "bench/b$files.cfg" main "$work/src$files" >/dev/null
  import_ms=$(( ($(date +%s%N) - start) / 1000000 ))
  : > "$work/times$files"
  before=$(du -sb "$data/bench/b$files.cfg" | cut -f1)
  for i in $(seq 1 "$puts"); do
    start=$(date +%s%N)
    echo "{\"put\": $i}" | "$bin" --data "$data" file put "bench/b$files.cfg" main "area1/group1/changed.json" >/dev/null
    echo $(( ($(date +%s%N) - start) / 1000 )) >> "$work/times$files"
  done
  after=$(du -sb "$data/bench/b$files.cfg" | cut -f1)
  printf '%7d files: import %6d ms; put median %7.1f ms, p90 %7.1f ms; %8.1f KiB per version (%d puts)\n' "$files" "$import_ms" \
    "$(median < "$work/times$files" | awk '{print $1/1000}')" "$(p90 < "$work/times$files" | awk '{print $1/1000}')" \
    "$(awk -v a="$after" -v b="$before" -v n="$puts" 'BEGIN{print (a-b)/n/1024}')" "$puts"
done
first=${sizes%% *}
for files in $sizes; do
  echo "ratio $files/$first (median put): $(awk -v a="$(median < "$work/times$files")" -v b="$(median < "$work/times$first")" 'BEGIN{printf "%.2f", a/b}')"
done
"$bin" --data "$data" fsck | tail -1
