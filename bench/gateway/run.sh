#!/usr/bin/env bash
# Reserve+settle pairs per second through the gateway's ledger (release build, in process: hold workers,
# batching, the database), on SQLite and PostgreSQL, with 1, 8 and 64 accounts and all load on one hot account.
# Usage: bench/gateway/run.sh [PAIRS]   (PostgreSQL at 127.0.0.1:5432, user postgres, trust).
# Prints one line per run and the machine's load average beside it: the machine may be shared.
set -euo pipefail
cd "$(dirname "$0")/../.."
PAIRS=${1:-5000}
# PROFILE=dev uses the debug build (dependencies at opt-level 1, the gateway unoptimised): quicker to build on a
# busy machine, slower to run; say which beside the figures.
# HOLD_BENCH=PATH runs a hold_bench built before (e.g. an older commit's, to compare on the same machine).
PROFILE=${PROFILE:-release}
if [ -n "${HOLD_BENCH:-}" ]; then
  BIN=$HOLD_BENCH; PROFILE="prebuilt:$HOLD_BENCH"
elif [ "$PROFILE" = release ]; then
  cargo build --release --quiet -p tincan-gateway --example hold_bench
  BIN=${CARGO_TARGET_DIR:-target}/release/examples/hold_bench
else
  cargo build --quiet -p tincan-gateway --example hold_bench
  BIN=${CARGO_TARGET_DIR:-target}/debug/examples/hold_bench
fi
BACKENDS=${BACKENDS:-sqlite postgres}
DB=tincan_hold_bench
for backend in $BACKENDS; do
  for accounts in 1 8 64; do
    if [ $backend = sqlite ]; then
      rm -f /tmp/hold_bench.sqlite3*; url=sqlite:///tmp/hold_bench.sqlite3
    else
      psql -qh 127.0.0.1 -U postgres -c "DROP DATABASE IF EXISTS $DB" -c "CREATE DATABASE $DB" >/dev/null
      url=postgres://postgres@127.0.0.1:5432/$DB
    fi
    line=$("$BIN" --db "$url" --accounts $accounts --concurrency 64 --pairs "$PAIRS")
    echo "$line profile=$PROFILE load=$(cut -d' ' -f1-3 /proc/loadavg)"
  done
done
psql -qh 127.0.0.1 -U postgres -c "DROP DATABASE IF EXISTS $DB" >/dev/null
rm -f /tmp/hold_bench.sqlite3*
