#!/usr/bin/env bash
# Where a reserve+settle pair's time goes on PostgreSQL: statements (each one round trip) and commits per pair on
# one hot account, counted by the server itself (log_statement = all on the benchmark's database only, and
# pg_stat_database's commit counter). Needs to read PostgreSQL's log (root, or the adm group).
# Usage: bench/gateway/statements.sh [PAIRS] [HOLD_BENCH]   (HOLD_BENCH: a built hold_bench; default the debug
# build in CARGO_TARGET_DIR, built if missing). Run it on an otherwise idle database: it counts by database name.
set -euo pipefail
cd "$(dirname "$0")/../.."
PAIRS=${1:-500}
BIN=${2:-}
if [ -z "$BIN" ]; then
  cargo build --quiet -p tincan-gateway --example hold_bench
  BIN=${CARGO_TARGET_DIR:-target}/debug/examples/hold_bench
fi
LOG=${PG_LOG:-/var/log/postgresql/postgresql-15-main.log}
DB=tincan_hold_statements
q() { psql -qAtX -h 127.0.0.1 -U postgres "$@"; }
q -c "DROP DATABASE IF EXISTS $DB" -c "CREATE DATABASE $DB"
q -c "ALTER DATABASE $DB SET log_statement = 'all'"
before_lines=$(grep -c "@$DB " "$LOG" || true)
before_commits=$(q -c "SELECT xact_commit FROM pg_stat_database WHERE datname = '$DB'")
line=$("$BIN" --db "postgres://postgres@127.0.0.1:5432/$DB" --accounts 1 --concurrency 64 --pairs "$PAIRS")
sleep 2 # the server's statistics are flushed at most once a second
after_commits=$(q -c "SELECT xact_commit FROM pg_stat_database WHERE datname = '$DB'")
# One line per statement: simple-protocol ones ("statement: BEGIN") and prepared ones ("execute …").
statements=$(grep "@$DB " "$LOG" | tail -n +"$((before_lines + 1))" | grep -cE "LOG:  (statement|execute)" || true)
q -c "DROP DATABASE IF EXISTS $DB"
echo "$line"
awk -v s="$statements" -v c="$((after_commits - before_commits))" -v p="$PAIRS" \
  'BEGIN { printf "statements=%d (%.2f per pair) commits=%d (%.3f per pair, setup and check included)\n", s, s / p, c, c / p }'
