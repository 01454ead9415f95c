#!/usr/bin/env bash
# Call attempts per second through the gateway's B2BUA with billing on (quote, reserve, extend, settle per call),
# sipp as the caller and as the carrier, beside the same sipp pair talking directly (the floor of the SIP side).
# TO RUN IDLE: it loads both cores; figures taken while others build say nothing.
# Usage: bench/gateway/calls.sh [RATE] [CALLS] [HOLD_MS]   (defaults 100 cps, 3000 calls, 10000 ms per call, so
# about RATE × HOLD_MS / 1000 calls are up at once).
# Prints sipp's final statistics for both runs: successful/failed calls and the response-time (rtd) percentiles
# of INVITE → 200 (the post-dial delay the caller sees).
set -euo pipefail
cd "$(dirname "$0")/../.."
RATE=${1:-100}; CALLS=${2:-3000}; HOLD=${3:-10000}
cargo build --release --quiet -p tincan-gateway
BIN=${CARGO_TARGET_DIR:-target}/release/tincan-gateway
SCEN=gateway-pstn/tests/scenarios
WORK=$(mktemp -d /tmp/calls-bench.XXXX)
trap 'rm -rf "$WORK"' EXIT
GW_SIP=127.0.0.1:25070; TRUNK=127.0.0.1:25090; API=127.0.0.1:25095
cat >"$WORK/gateway.toml" <<TOML
[calls]
listen_udp = "$GW_SIP"
trusted_peers = ["127.0.0.1"]
per_source_rate = 0
[calls.trunks.bench]
address = "$TRUNK"
TOML
printf 'prefix,description,connect_fee,per_minute,increments,per_sms\n49,Germany,0,0.60,1/1,\n' >"$WORK/deck.csv"
printf 'prefix,description,connect_fee,per_minute,increments,per_sms\n49,DE,0,0.004,1/1,\n' >"$WORK/cost.csv"
gw() { "$BIN" --data-dir "$WORK" "$@"; }
gw rates import "$WORK/deck.csv" >/dev/null
gw carriers add bench --kind sip --priority 1 --max-concurrent 100000 >/dev/null
gw carriers import bench "$WORK/cost.csv" >/dev/null
ACCOUNT=$(gw accounts create --business bench)
gw accounts adjust "$ACCOUNT" 1000000.00 --memo bench >/dev/null
# The carrier: sipp in the background; its PID from its "PID=[…]" line, to stop exactly it.
uas() { sipp -sf "$SCEN/carrier_answers.xml" -i 127.0.0.1 -p "${TRUNK#*:}" -nostdin -bg | sed -n 's/.*PID=\[\([0-9]*\)\].*/\1/p'; }
uac() {
  sipp "$1" -sf "$SCEN/caller_hangs_up.xml" -i 127.0.0.1 -p 25091 -key number +4930123456 -key account "$ACCOUNT" \
    -d "$HOLD" -r "$RATE" -m "$CALLS" -l $((RATE * HOLD / 1000 * 2)) -nostdin -timeout 300s -timeout_error \
    -trace_stat -stf "$WORK/$2.csv" -trace_rtt -rtt_freq 1000000 -trace_screen 2>&1 | tail -5 || true
  echo "== $2: $(tail -n1 "$WORK/$2.csv" | awk -F';' '{print "successful="$16" failed="$18}')"
  ls "$WORK"/*screen.log >/dev/null 2>&1 && grep -A12 "Response Time" "$WORK"/*screen.log | tail -12 || true
}
echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)"
# 1. sipp to sipp directly: the floor.
UAS=$(cd "$WORK" && uas); sleep 1
(cd "$WORK" && uac "$TRUNK" direct)
kill "$UAS" || true; sleep 1
# 2. Through the gateway.
"$BIN" --config "$WORK/gateway.toml" --data-dir "$WORK" --api "$API" serve >"$WORK/serve.log" 2>&1 &
GW=$!
sleep 2
UAS=$(cd "$WORK" && uas); sleep 1
(cd "$WORK" && uac "$GW_SIP" gateway)
echo "resident memory of the gateway after the run: $(ps -o rss= -p "$GW") KiB"
kill "$UAS" "$GW" || true; wait "$GW" 2>/dev/null || true
gw ledger check
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
