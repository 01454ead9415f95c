#!/usr/bin/env bash
# bench/xfr/run.sh N [CHANGES] [SECONDS]: zone transfer from tincan-directory to a Knot DNS 3.2 secondary signing
# online with the directory's exported keys (TSIG, unsigned flavour), on N numbers from bench/dns/gen.py:
#   - time from knotd's start until it serves the directory's serial (AXFR of N numbers, transfer + load), and
#     Knot's own AXFR log line (seconds, messages, bytes);
#   - CHANGES (default 1000) numbers changed through the API: time from the last 200 OK until Knot serves the final
#     serial (NOTIFY + IXFR), and the IXFR bytes and messages Knot logged;
#   - dnsperf in the same run: Knot signing online on the transferred zone beside the directory itself (positive
#     NAPTR with DO, and a 50/50 mix with numbers that do not exist). Both run with their default worker counts
#     (as in bench/dns), so the qps lines compare the two at full width on this machine.
# Loopback only; every server is stopped at the end. Not a CI test.
#
# Needs: a release build (cargo build --release --bin tincan-directory), knot, keymgr, kdig, dnsperf, curl, python3, bc.
# Numbers are loaded with `tincan-directory numbers import` when the binary has it, else through the API (slow).
set -euo pipefail
N=${1:-10000}
CHANGES=${2:-1000}
SECS=${3:-10}
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
BIN=${TINCAN_DIRECTORY_BIN:-${CARGO_TARGET_DIR:-$ROOT/target}/release/tincan-directory}
unset TINCAN_DIRECTORY_BIN  # the directory reads every TINCAN_DIRECTORY_* variable as config
DATA=${BENCH_DATA:-/var/tmp/tincan-bench/dns-$N}
OUT=${BENCH_OUT:-/var/tmp/tincan-bench/xfr-$N}
APEX=e164.tincan.test.
[ -x "$BIN" ] || { echo "build first: cargo build --release --bin tincan-directory" >&2; exit 1; }
rm -rf "$OUT"; mkdir -p "$OUT" "$DATA"
freeport() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
now() { date +%s.%N; }
since() { echo "$(now) - $1" | bc; }
pids=()
trap 'for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done' EXIT
WAIT_SECS=${XFR_WAIT_SECS:-3600}  # the longest any one wait may take before the run fails (1M numbers: minutes)
wait_for() { # wait_for WHAT PID LOG INTERVAL CMD...: polls CMD until it succeeds; fails if PID dies or WAIT_SECS pass
  local what=$1 pid=$2 log=$3 every=$4; shift 4
  local deadline=$(( $(date +%s) + WAIT_SECS ))
  until "$@"; do
    kill -0 "$pid" 2>/dev/null || { echo "FAILED: $what: process $pid exited" >&2; tail -20 "$log" >&2; exit 1; }
    [ "$(date +%s)" -lt "$deadline" ] || { echo "FAILED: $what: not within $WAIT_SECS s" >&2; tail -20 "$log" >&2; exit 1; }
    sleep "$every"
  done
}
echo "machine: $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg); free disk under $OUT: $(df -h --output=avail "$OUT" | tail -1 | tr -d ' ')"

[ -s "$DATA/numbers.jsonl" ] || { echo "generating $N numbers in $DATA"; python3 "$ROOT/bench/dns/gen.py" "$N" "$DATA" "$APEX"; }

D="$OUT/directory"; mkdir -p "$D"
DP=$(freeport); AP=$(freeport); KP=$(freeport)
SECRET=$(head -c 32 /dev/urandom | base64); echo "$SECRET" > "$OUT/tsig"
export TINCAN_DIRECTORY_XFR__SECONDARIES__KNOT__ADDRESS="127.0.0.1:$KP"
export TINCAN_DIRECTORY_XFR__SECONDARIES__KNOT__TSIG_KEY=bench-xfr
export TINCAN_DIRECTORY_XFR__SECONDARIES__KNOT__TSIG_SECRET_FILE="$OUT/tsig"
export TINCAN_DIRECTORY_API__RATE_LIMIT__BURST=100000000
export TINCAN_DIRECTORY_API__RATE_LIMIT__PER_SECOND=100000000
"$BIN" --data-dir "$D" keys generate >/dev/null
"$BIN" --data-dir "$D" provider add bench --prefix +44 > "$D/token"
TOKEN=$(cat "$D/token")

start_directory() {
  RUST_LOG=info "$BIN" --data-dir "$D" serve --dns "127.0.0.1:$DP" --api "127.0.0.1:$AP" >> "$D/serve.log" 2>&1 &
  dpid=$!; pids+=($dpid)
  wait_for "the directory's API" $dpid "$D/serve.log" 0.1 healthy
}
healthy() { curl -fsS -o /dev/null "http://127.0.0.1:$AP/healthz" 2>/dev/null; }

put_all() { # put_all JSONL: PUT every line's number through the API, 8 at a time
  python3 - "$1" > "$OUT/puts.txt" <<'EOF'
import json, sys
for line in open(sys.argv[1]):
    r = json.loads(line)
    body = {"services": r["services"]}
    print(r["e164"] + " " + json.dumps(body, separators=(",", ":")))
EOF
  export AP TOKEN
  xargs -P 8 -d '\n' -n 50 sh -c '
    for l in "$@"; do n=${l%% *}; b=${l#* }
      curl -fsS -o /dev/null -X PUT "http://127.0.0.1:$AP/v1/numbers/$n" -H "Authorization: Bearer $TOKEN" \
        -H "content-type: application/json" --data-raw "$b" || exit 1
    done' sh < "$OUT/puts.txt"
}

echo "== loading $N numbers"
t0=$(now)
if "$BIN" numbers import --help >/dev/null 2>&1; then
  "$BIN" --data-dir "$D" numbers import --provider bench --progress-secs 30 "$DATA/numbers.jsonl" >/dev/null
  echo "numbers import: $(since "$t0") s"
  t0=$(now)
  start_directory
  echo "directory start with $N numbers (until the API answers): $(since "$t0") s"
else
  start_directory
  put_all "$DATA/numbers.jsonl"
  echo "through the API (8 parallel clients): $(since "$t0") s"
fi
VERSION=$(python3 -c 'import sqlite3,sys; print(sqlite3.connect(sys.argv[1]).execute("SELECT version FROM zone_version").fetchone()[0])' "$D/directory.sqlite3")
echo "zone version $VERSION"

echo "== Knot secondary (mod-onlinesign with the exported keys), AXFR of $N numbers"
K="$OUT/knot"; mkdir -p "$K/db"
"$BIN" --data-dir "$D" keys export --format knot --out "$K/keys" 2>/dev/null
cat > "$K/knot.conf" <<EOF
server:
    rundir: "$K"
    listen: 127.0.0.1@$KP
    # Per message of an incoming transfer (default 5 s): a loaded machine must not fail a 1M-number AXFR.
    tcp-remote-io-timeout: 60000
database:
    storage: "$K/db"
log:
  - target: stderr
    any: info
key:
  - id: bench-xfr
    algorithm: hmac-sha256
    secret: $SECRET
remote:
  - id: primary
    address: 127.0.0.1@$DP
    key: bench-xfr
acl:
  - id: notify
    address: 127.0.0.1
    key: bench-xfr
    action: notify
policy:
  - id: imported
    algorithm: ecdsap256sha256
    manual: on
mod-onlinesign:
  - id: default
    policy: imported
zone:
  - domain: $APEX
    master: primary
    acl: notify
    file: "$K/zone.db"
    zonefile-sync: -1
    zonefile-load: none
    journal-content: changes
    # A failed transfer is retried within 10 s, not after the SOA retry interval.
    retry-max-interval: 10
    module: mod-onlinesign/default
EOF
sh "$K/keys/import.sh" -c "$K/knot.conf" >/dev/null
t0=$(now)
knotd -c "$K/knot.conf" > "$K/knotd.log" 2>&1 &
kpid=$!; pids+=($kpid)
ks() { kdig @127.0.0.1 -p "$KP" +short +timeout=1 +retry=0 "$APEX" SOA 2>/dev/null | awk '{print $3}'; }
serves() { [ "$(ks)" = "$1" ]; }
wait_for "Knot's AXFR of serial $VERSION" $kpid "$K/knotd.log" 0.05 serves "$VERSION"
echo "knotd start → serving serial $VERSION: $(since "$t0") s   knotd RSS $(awk '/VmRSS/ {print $2/1024}' /proc/$kpid/status) MiB"
grep -m1 "AXFR, incoming.*finished" "$K/knotd.log" | sed 's/^.*AXFR/Knot: AXFR/'
failed=$(grep -c "AXFR, incoming.*failed" "$K/knotd.log" || true)
[ "$failed" = 0 ] || { echo "Knot: $failed failed AXFR attempt(s) before that (the time above includes them):"; grep "AXFR, incoming.*failed" "$K/knotd.log" | sed 's/^/  /'; }
grep -m1 "AXFR sent" "$D/serve.log" | sed 's/\x1b\[[0-9;]*m//g; s/^.*AXFR sent/directory: AXFR sent/'

echo "== $CHANGES changes through the API → NOTIFY → IXFR"
python3 - "$DATA/numbers.jsonl" "$CHANGES" > "$OUT/changes.jsonl" <<'EOF'
import json, sys
n = int(sys.argv[2])
for i, line in enumerate(open(sys.argv[1])):
    if i >= n: break
    r = json.loads(line)
    r["services"][0]["uri"] = r["services"][0]["uri"].replace("matrix:u/u", "matrix:u/changed")
    print(json.dumps(r))
EOF
before=$(grep -c "IXFR, incoming.*finished" "$K/knotd.log" || true)
t0=$(now)
put_all "$OUT/changes.jsonl"
t1=$(now)
FINAL=$((VERSION + CHANGES))
wait_for "Knot's IXFR to serial $FINAL" $kpid "$K/knotd.log" 0.01 serves "$FINAL"
echo "API: $CHANGES changes in $(echo "$t1 - $t0" | bc) s; last 200 OK → Knot serves serial $FINAL: $(since "$t1") s"
grep "IXFR, incoming.*finished" "$K/knotd.log" | tail -n +"$((before + 1))" | sed 's/^.*IXFR/Knot: IXFR/'
grep "IXFR, incoming.*finished" "$K/knotd.log" | tail -n +"$((before + 1))" |
  awk '{for (i=1;i<=NF;i++) { if ($(i+1) ~ /^messages/) m+=$i; if ($(i+1) ~ /^bytes/) b+=$i }; n++}
       END {printf "IXFR total: %d transfers, %d messages, %d bytes (%.0f bytes per change)\n", n, m, b, b/'"$CHANGES"'}'

echo "== dnsperf, same run ($SECS s each, 4 clients; load average now $(cut -d' ' -f1-3 /proc/loadavg))"
perf() { # perf NAME PORT QUERYFILE
  local r
  r=$(dnsperf -s 127.0.0.1 -p "$2" -d "$3" -D -c 4 -T 1 -l "$SECS" 2>&1)
  printf '%-40s %10.0f qps   avg %7.3f ms   lost %s\n' "$1" \
    "$(awk '/Queries per second/ {print $4}' <<<"$r")" \
    "$(awk '/Average Latency/ {print $4*1000}' <<<"$r")" \
    "$(awk '/Queries lost/ {print $3}' <<<"$r")"
}
perf "tincan-directory positive (DO)" "$DP" "$DATA/q-pos.txt"
perf "Knot onlinesign (transferred) positive" "$KP" "$DATA/q-pos.txt"
perf "tincan-directory 50/50 mix (DO)" "$DP" "$DATA/q-mix.txt"
perf "Knot onlinesign (transferred) 50/50 mix" "$KP" "$DATA/q-mix.txt"
