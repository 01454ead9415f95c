#!/usr/bin/env bash
# bench/dns/run.sh N [SECONDS]: dnsperf against tincan-directory and Knot DNS 3.2 in the same run, on the
# same N numbers: positive NAPTR queries with DO, and a 50/50 mix with numbers that do not exist; Knot both
# pre-signed (NSEC3, RFC 9276 parameters) and with mod-onlinesign. Also start-up time and RSS with N numbers,
# and update-to-visible latency. Loopback only; every server is stopped at the end. Not a CI test.
#
# Needs: a release build (cargo build --release -p tincan-directory), dnsperf, knot, kdig, python3, bc.
set -euo pipefail
N=${1:-10000}
SECS=${2:-10}
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
BIN=${TINCAN_DIRECTORY_BIN:-${CARGO_TARGET_DIR:-$ROOT/target}/release/tincan-directory}
OUT=${BENCH_OUT:-/var/tmp/tincan-bench/dns-$N}
APEX=e164.tincan.test.
[ -x "$BIN" ] || { echo "build first: cargo build --release -p tincan-directory" >&2; exit 1; }
mkdir -p "$OUT"
freeport() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
pids=()
trap 'for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done' EXIT

[ -s "$OUT/zone.txt" ] || { echo "generating $N numbers in $OUT"; python3 "$HERE/gen.py" "$N" "$OUT" "$APEX"; }

perf() { # perf NAME PORT QUERYFILE
  local r
  r=$(dnsperf -s 127.0.0.1 -p "$2" -d "$3" -D -c 4 -T 1 -l "$SECS" 2>&1)
  printf '%-34s %10.0f qps   avg %7.3f ms   lost %s\n' "$1" \
    "$(awk '/Queries per second/ {print $4}' <<<"$r")" \
    "$(awk '/Average Latency/ {print $4*1000}' <<<"$r")" \
    "$(awk '/Queries lost/ {print $3}' <<<"$r")"
}

echo "== tincan-directory ($N numbers)"
D="$OUT/directory"
rm -rf "$D"; mkdir -p "$D"
"$BIN" --data-dir "$D" keys generate >/dev/null
"$BIN" --data-dir "$D" provider add bench --prefix +44 > "$D/token"
t0=$(date +%s.%N)
"$BIN" --data-dir "$D" numbers import --provider bench "$OUT/numbers.jsonl" >/dev/null
echo "import: $(echo "$(date +%s.%N) - $t0" | bc) s"
DP=$(freeport); AP=$(freeport)
probe=$(head -n1 "$OUT/q-pos.txt" | cut -d' ' -f1)
t0=$(date +%s.%N)
RUST_LOG=warn "$BIN" --data-dir "$D" serve --dns "127.0.0.1:$DP" --api "127.0.0.1:$AP" > "$D/serve.log" 2>&1 &
dpid=$!; pids+=($dpid)
until kdig @127.0.0.1 -p "$DP" +dnssec +timeout=1 +retry=0 "$probe" NAPTR 2>/dev/null | grep -q 'RRSIG.*NAPTR'; do
  kill -0 $dpid 2>/dev/null || { cat "$D/serve.log"; exit 1; }; sleep 0.05
done
echo "start-up to first signed answer: $(echo "$(date +%s.%N) - $t0" | bc) s   RSS $(awk '/VmRSS/ {print $2/1024}' /proc/$dpid/status) MiB"
perf "tincan-directory positive (DO)" "$DP" "$OUT/q-pos.txt"
perf "tincan-directory 50/50 mix (DO)" "$DP" "$OUT/q-mix.txt"
echo "RSS after load: $(awk '/VmRSS/ {print $2/1024}' /proc/$dpid/status) MiB"
# update-to-visible: PUT a new number, poll DNS for its signed NAPTR
lat=()
for i in 1 2 3 4 5; do
  num="+44207300000$i"; owner="$i.0.0.0.0.0.3.7.0.2.4.4.$APEX"
  t0=$(date +%s%N)
  curl -fsS -X PUT "http://127.0.0.1:$AP/v1/numbers/$num" -H "Authorization: Bearer $(cat "$D/token")" \
    -H 'content-type: application/json' -d '{"services":[{"type":"matrix","uri":"matrix:u/new:hs.test"}]}' >/dev/null
  t1=$(date +%s%N)
  until kdig @127.0.0.1 -p "$DP" +dnssec +timeout=1 +retry=0 "$owner" NAPTR 2>/dev/null | grep -q 'RRSIG.*NAPTR'; do :; done
  lat+=("$(( ($(date +%s%N) - t1) / 1000 ))us-after-200 ($(( (t1 - t0) / 1000 ))us PUT)")
done
echo "update-to-visible: ${lat[*]}"
kill $dpid; wait $dpid 2>/dev/null || true

for mode in presigned onlinesign; do
  echo "== Knot DNS $(knotd --version | awk '{print $4}') $mode ($N numbers)"
  KP=$(freeport)
  res=$(APEX=$APEX "$HERE/knot.sh" "$mode" "$OUT" "$KP")
  echo "$res"
  kpid=$(sed -n 's/.*pid=\([0-9]*\).*/\1/p' <<<"$res"); pids+=($kpid)
  perf "knot $mode positive (DO)" "$KP" "$OUT/q-pos.txt"
  perf "knot $mode 50/50 mix (DO)" "$KP" "$OUT/q-mix.txt"
  echo "RSS after load: $(awk '/VmRSS/ {print $2/1024}' /proc/$kpid/status) MiB"
  kill "$kpid"; wait "$kpid" 2>/dev/null || true
done
