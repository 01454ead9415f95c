#!/usr/bin/env bash
# bench/dns/run.sh N [SECONDS]: dnsperf against tincan-directory and Knot DNS 3.2 in the same run, on the
# same N numbers; Knot both pre-signed (NSEC3, RFC 9276 parameters) and with mod-onlinesign. Also start-up time
# and RSS with N numbers, and update-to-visible latency. Loopback only; every server is stopped at the end. Not
# a CI test. Query sets (SETS="pos mix neg-flood mix-flood" by default, any subset in that order):
#   pos        positive NAPTR queries with DO
#   mix        50/50 with non-existent numbers drawn from 1M (they repeat: tincan's denial cache answers most)
#   neg-flood  every query a DISTINCT non-existent number (a random-name flood: every denial signed online)
#   mix-flood  50/50 positives and distinct non-existent numbers
# The flood files hold FLOOD (default 2M) names; a run must send fewer (about SECONDS x qps) or dnsperf loops and
# names repeat. Response rate limiting is off for tincan (TINCAN_DIRECTORY_DNS__SERVER__RRL__ENABLED=false;
# loopback is exempt by default anyway); Knot's RRL is off unless configured.
#
# Needs: a release build (cargo build --release -p tincan-directory; DIRECTORY_BIN=… to use another binary — not
# TINCAN_DIRECTORY_…, which the binary reads as config), dnsperf, knot, kdig, python3, bc.
set -euo pipefail
N=${1:-10000}
SECS=${2:-10}
SETS=${SETS:-pos mix neg-flood mix-flood}
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
BIN=${DIRECTORY_BIN:-${CARGO_TARGET_DIR:-$ROOT/target}/release/tincan-directory}
OUT=${BENCH_OUT:-/var/tmp/tincan-bench/dns-$N}
APEX=e164.tincan.test.
[ -x "$BIN" ] || { echo "build first: cargo build --release -p tincan-directory" >&2; exit 1; }
mkdir -p "$OUT"
freeport() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
pids=()
trap 'for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done' EXIT

# gen.py writes only the files that are missing (an older data dir gets the flood files added).
for f in zone.txt numbers.jsonl q-pos.txt q-mix.txt q-neg-flood.txt q-mix-flood.txt; do
  [ -s "$OUT/$f" ] || { echo "generating $f (and the rest missing) for $N numbers in $OUT"; python3 "$HERE/gen.py" "$N" "$OUT" "$APEX"; break; }
done
declare -A LABEL=([pos]="positive (DO)" [mix]="50/50 mix (DO)" [neg-flood]="distinct-negative flood (DO)"
  [mix-flood]="50/50 distinct-neg mix (DO)")

declare -A QPS LAT
perf() { # perf KEY LABEL PORT QUERYFILE
  local r q l
  r=$(dnsperf -s 127.0.0.1 -p "$3" -d "$4" -D -c 4 -T 1 -l "$SECS" 2>&1)
  q=$(awk '/Queries per second/ {print $4}' <<<"$r")
  l=$(awk '/Average Latency/ {print $4*1000}' <<<"$r")
  QPS[$1]=$q LAT[$1]=$l
  printf '%-46s %10.0f qps   avg %7.3f ms   lost %s\n' "$2" "$q" "$l" "$(awk '/Queries lost/ {print $3}' <<<"$r")"
}
rss_mib() { awk '/VmRSS/ {printf "%.0f", $2/1024}' "/proc/$1/status"; }

echo "== tincan-directory ($N numbers)"
D="$OUT/directory"
rm -rf "$D"; mkdir -p "$D"
"$BIN" --data-dir "$D" keys generate 2>/dev/null
"$BIN" --data-dir "$D" provider add bench --prefix +44 > "$D/token"
t0=$(date +%s.%N)
"$BIN" --data-dir "$D" numbers import --provider bench --progress-secs 30 "$OUT/numbers.jsonl" 2> "$D/import.log"
echo "import: $(echo "$(date +%s.%N) - $t0" | bc) s wall"
DP=$(freeport); AP=$(freeport)
probe=$(head -n1 "$OUT/q-pos.txt" | cut -d' ' -f1)
t0=$(date +%s.%N)
TINCAN_DIRECTORY_DNS__SERVER__RRL__ENABLED=false RUST_LOG=warn,tincan_directory::serve=info \
  "$BIN" --data-dir "$D" serve --dns "127.0.0.1:$DP" --api "127.0.0.1:$AP" > "$D/serve.log" 2>&1 &
dpid=$!; pids+=($dpid)
until kdig @127.0.0.1 -p "$DP" +dnssec +timeout=1 +retry=0 "$probe" NAPTR 2>/dev/null | grep -q 'RRSIG.*NAPTR'; do
  kill -0 $dpid 2>/dev/null || { cat "$D/serve.log"; exit 1; }; sleep 0.05
done
T_START=$(echo "$(date +%s.%N) - $t0" | bc); T_RSS=$(rss_mib $dpid)
echo "start-up to first signed answer: $T_START s   RSS $T_RSS MiB"
grep -o 'loaded_signed=[0-9]* to_sign=[0-9]*' "$D/serve.log" || true
for k in $SETS; do perf "t_$k" "tincan-directory ${LABEL[$k]}" "$DP" "$OUT/q-$k.txt"; done
T_RSS_AFTER=$(rss_mib $dpid)
echo "RSS after load: $T_RSS_AFTER MiB"
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

declare -A KLOAD KRSS
for mode in presigned onlinesign; do
  echo "== Knot DNS $(knotd --version | awk '{print $NF}') $mode ($N numbers)"
  KP=$(freeport)
  res=$(APEX=$APEX "$HERE/knot.sh" "$mode" "$OUT" "$KP")
  echo "$res"
  kpid=$(sed -n 's/.*pid=\([0-9]*\).*/\1/p' <<<"$res"); pids+=($kpid)
  KLOAD[$mode]=$(sed -n 's/.*load_seconds=\([0-9.]*\).*/\1/p' <<<"$res")
  for k in $SETS; do perf "${mode}_$k" "knot $mode ${LABEL[$k]}" "$KP" "$OUT/q-$k.txt"; done
  KRSS[$mode]=$(rss_mib "$kpid")
  echo "RSS after load: ${KRSS[$mode]} MiB"
  kill "$kpid"; wait "$kpid" 2>/dev/null || true
done

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2fx", a / b; else print "-" }'; }
echo
echo "== summary, $N numbers (ratio = tincan / knot; for latency and RSS lower is better)"
printf '%-26s %12s %12s %12s %10s %10s\n' "" tincan knot-presig knot-online "vs presig" "vs online"
for k in $SETS; do
  printf '%-26s %12.0f %12.0f %12.0f %10s %10s\n' "qps $k" "${QPS[t_$k]}" "${QPS[presigned_$k]}" \
    "${QPS[onlinesign_$k]}" "$(ratio "${QPS[t_$k]}" "${QPS[presigned_$k]}")" \
    "$(ratio "${QPS[t_$k]}" "${QPS[onlinesign_$k]}")"
  printf '%-26s %12.3f %12.3f %12.3f %10s %10s\n' "avg latency ms $k" "${LAT[t_$k]}" "${LAT[presigned_$k]}" \
    "${LAT[onlinesign_$k]}" "$(ratio "${LAT[t_$k]}" "${LAT[presigned_$k]}")" \
    "$(ratio "${LAT[t_$k]}" "${LAT[onlinesign_$k]}")"
done
printf '%-26s %12s %12s %12s %10s %10s\n' "RSS MiB (after queries)" "$T_RSS_AFTER" "${KRSS[presigned]}" \
  "${KRSS[onlinesign]}" "$(ratio "$T_RSS_AFTER" "${KRSS[presigned]}")" "$(ratio "$T_RSS_AFTER" "${KRSS[onlinesign]}")"
printf '%-26s %12s %12s %12s %10s %10s\n' "start-up s" "$T_START" "${KLOAD[presigned]}" "${KLOAD[onlinesign]}" \
  "$(ratio "$T_START" "${KLOAD[presigned]}")" "$(ratio "$T_START" "${KLOAD[onlinesign]}")"
