#!/usr/bin/env bash
# bench/numbers/import.sh N [BIN...]: `tincan-directory numbers import` of N numbers of ten countries interleaved
# (bench/dns/gen.py N OUT --mixed: country codes 1, 44, 49, 33, 34, 39, 31, 46, 61, 81 one after the other), with
# each binary given (default: the release build in CARGO_TARGET_DIR or target/), each into a fresh data dir
# (SQLite, keys generated, one provider holding the ten country codes). Prints the load before and after, each
# binary's wall time and the import's own summary line. Give the binaries of two commits to compare them in
# one sitting. Not a CI test.
set -euo pipefail
N=${1:-100000}
shift || true
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
BINS=("$@")
[ ${#BINS[@]} -gt 0 ] || BINS=("${CARGO_TARGET_DIR:-$ROOT/target}/release/tincan-directory")
OUT=${BENCH_OUT:-/var/tmp/tincan-bench/numbers-$N}
mkdir -p "$OUT"
python3 "$HERE/../dns/gen.py" "$N" "$OUT" --mixed
PREFIXES=()
for p in 1 44 49 33 34 39 31 46 61 81; do PREFIXES+=(--prefix "+$p"); done

uptime
for bin in "${BINS[@]}"; do
  [ -x "$bin" ] || { echo "no binary at $bin (cargo build --release -p tincan-directory)" >&2; exit 1; }
  D=$(mktemp -d "$OUT/dir.XXXXXX")
  "$bin" --data-dir "$D" keys generate 2>/dev/null
  "$bin" --data-dir "$D" provider add bench "${PREFIXES[@]}" > /dev/null
  t0=$(date +%s.%N)
  "$bin" --data-dir "$D" numbers import --provider bench --progress-secs 3600 "$OUT/numbers-mixed.jsonl" 2> "$D/import.log"
  t=$(echo "$(date +%s.%N) - $t0" | bc)
  echo "== $bin"
  grep -v '^\s*$' "$D/import.log" | tail -n 2
  echo "import of $N mixed-country numbers: $t s wall"
  rm -rf "$D"
done
uptime
