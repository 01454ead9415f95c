#!/usr/bin/env bash
# The hot account's latency against its floor: PostgreSQL's commit flush on this machine, then one account's
# reserve+settle pairs through each given hold_bench, alternately (an anchor build and a candidate in the same
# run), closed loop at CALLERS callers and open loop at RATES pairs per second.
# Usage: bench/gateway/hot.sh HOLD_BENCH...   (PostgreSQL at 127.0.0.1:5432, user postgres, trust).
# Env: CALLERS (default "16 32 64"), RATES (pairs/s, default "1000 2000"), PAIRS (closed loop, default 5000),
# SECONDS_PER_RATE (open loop, default 5), ROUNDS (default 2), FLOOR=0 skips the floor, SQLITE=1 adds one SQLite
# hot-account run per binary (64 callers).
set -euo pipefail
cd "$(dirname "$0")/../.."
[ $# -ge 1 ] || { echo "usage: $0 HOLD_BENCH..." >&2; exit 2; }
CALLERS=${CALLERS:-16 32 64}
RATES=${RATES:-1000 2000}
PAIRS=${PAIRS:-5000}
SECONDS_PER_RATE=${SECONDS_PER_RATE:-5}
ROUNDS=${ROUNDS:-2}
DB=tincan_hold_hot
q() { psql -qAtX -h 127.0.0.1 -U postgres "$@"; }
load() { cut -d' ' -f1-3 /proc/loadavg; }
fresh() { q -c "DROP DATABASE IF EXISTS $DB" -c "CREATE DATABASE $DB"; }

if [ "${FLOOR:-1}" = 1 ]; then
  # The disk: one 8 kB write and fdatasync (wal_sync_method's default), as PostgreSQL's own tool measures it.
  dir=$(q -c "SHOW data_directory")
  echo "# floor: pg_test_fsync on $dir's file system (load $(load))"
  /usr/lib/postgresql/15/bin/pg_test_fsync -s 2 -f "$(dirname "$dir")/hot_fsync_test" | sed -n '/one 8kB write/,/^$/p'
  rm -f "$(dirname "$dir")/hot_fsync_test"
  # The server: a bare one-row UPDATE of one hot row, each its own committed transaction, from 1 and 16
  # clients; the WAL flushes it cost (pg_stat_wal, whole cluster) and their mean time.
  fresh
  q -d $DB -c "CREATE TABLE hot (id int PRIMARY KEY, n bigint); INSERT INTO hot VALUES (1, 0)" \
    -c "ALTER DATABASE $DB SET track_wal_io_timing = on"
  echo "UPDATE hot SET n = n + 1 WHERE id = 1;" > /tmp/hot_update.sql
  for c in 1 16; do
    s0=$(q -c "SELECT wal_sync || ' ' || wal_sync_time FROM pg_stat_wal")
    out=$(pgbench -h 127.0.0.1 -U postgres -n -f /tmp/hot_update.sql -c $c -j 1 -T 5 $DB 2>&1)
    s1=$(q -c "SELECT wal_sync || ' ' || wal_sync_time FROM pg_stat_wal")
    echo "$out" | awk -v c=$c -v s0="$s0" -v s1="$s1" -v l="$(load)" '
      /latency average/ { lat = $4 } /^tps/ { tps = $3 }
      END { split(s0, a, " "); split(s1, b, " "); n = b[1] - a[1];
            printf "floor: hot-row UPDATE+COMMIT clients=%d tps=%.0f latency=%.2fms wal_syncs=%d sync_mean=%.2fms load=%s\n",
                   c, tps, lat, n, n ? (b[2] - a[2]) / n : 0, l }'
  done
  rm -f /tmp/hot_update.sql
fi

for round in $(seq "$ROUNDS"); do
  for c in $CALLERS; do
    for bin in "$@"; do
      fresh
      echo "$("$bin" --db postgres://postgres@127.0.0.1:5432/$DB --accounts 1 --concurrency $c --pairs "$PAIRS") bin=$bin load=$(load)"
    done
  done
  for r in $RATES; do
    for bin in "$@"; do
      fresh
      echo "$("$bin" --db postgres://postgres@127.0.0.1:5432/$DB --accounts 1 --rate $r --pairs $((r * SECONDS_PER_RATE))) bin=$bin load=$(load)"
    done
  done
done
if [ "${SQLITE:-0}" = 1 ]; then
  for bin in "$@"; do
    rm -f /tmp/hold_hot.sqlite3*
    echo "$("$bin" --db sqlite:///tmp/hold_hot.sqlite3 --accounts 1 --concurrency 64 --pairs "$PAIRS") bin=$bin load=$(load)"
  done
  rm -f /tmp/hold_hot.sqlite3*
fi
q -c "DROP DATABASE IF EXISTS $DB"
