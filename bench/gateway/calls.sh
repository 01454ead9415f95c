#!/usr/bin/env bash
# Call attempts per second through the gateway's B2BUA with billing on (quote, first-slice hold, settle per call;
# the live-call rows and the heartbeat of crash recovery), sipp as the caller and as the carrier, on loopback,
# beside the same sipp run (1) caller to carrier directly (sipp's own floor) and (2) through Kamailio alone
# (Debian's kamailio as a transaction-stateful, record-routing proxy: the anchor of what a SIP hop costs).
#
# Usage: bench/gateway/calls.sh [RATE] [CALLS] [HOLD_MS]
#   defaults 100 calls/s, 2000 calls, 10000 ms per call: about RATE x HOLD_MS / 1000 = 1000 calls up at once.
# The gateway binary: GATEWAY_BIN, else $CARGO_TARGET_DIR/$PROFILE_DIR/tincan-gateway (PROFILE_DIR=debug unless
# set; build it through the workspace first, e.g. `cargo build --workspace [--release]`). DB=postgres uses a
# fresh PostgreSQL database at 127.0.0.1:5432 (user postgres) instead of SQLite.
#
# Per run it prints: calls successful / failed, the rate sipp achieved, INVITE->200 response time p50/p99/max
# (sipp's rtd, every call: with a carrier that answers at once this is the post-dial delay), the most calls up
# at once, and for the gateway its resident memory idle and at the peak, and per call. The load average is
# printed beside every run: the machine may be shared, and figures taken while others build are noisy.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
RATE=${1:-100}; CALLS=${2:-2000}; HOLD=${3:-10000}
BIN=${GATEWAY_BIN:-${CARGO_TARGET_DIR:-target}/${PROFILE_DIR:-debug}/tincan-gateway}
[ -x "$BIN" ] || { echo "no gateway binary at $BIN (build it through the workspace)" >&2; exit 2; }
SCEN=gateway-pstn/tests/scenarios
WORK=$(mktemp -d /tmp/calls-bench.XXXX)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$WORK"; }
trap cleanup EXIT
GW_SIP=127.0.0.1:25070; TRUNK=127.0.0.1:25090; API=127.0.0.1:25095; KAM=127.0.0.1:25080; UAC_PORT=25091
LIMIT=$((RATE * HOLD / 1000 * 2 + 100))

load() { cut -d' ' -f1-3 /proc/loadavg; }

# The carrier: sipp in the background, answering every call at once; its PID from "PID=[…]".
uas_start() {
  (cd "$WORK" && sipp -sf "$ROOT/$SCEN/carrier_answers.xml" -i 127.0.0.1 -p "${TRUNK#*:}" -nostdin -bg \
    -m 1000000 -l 1000000 2>/dev/null || true) | sed -n 's/.*PID=\[\([0-9]*\)\].*/\1/p'
}

# A column of sipp's statistics CSV by its header name (last line).
col() { awk -F';' -v col="$2" 'NR==1{for(i=1;i<=NF;i++) if($i==col) c=i} END{print $c}' "$1"; }
colmax() { awk -F';' -v col="$2" 'NR==1{for(i=1;i<=NF;i++) if($i==col) c=i; next} $c+0>m{m=$c+0} END{print m+0}' "$1"; }

# Runs the caller scenario against $1, named $2; prints one line of figures.
uac() {
  local target=$1 name=$2 dir="$WORK/$2"
  mkdir -p "$dir"
  (cd "$dir" && sipp "$target" -sf "$ROOT/$SCEN/caller_hangs_up.xml" -i 127.0.0.1 -p $UAC_PORT \
    -key number +4930123456 -key account "${ACCOUNT:-0}" -d "$HOLD" -r "$RATE" -m "$CALLS" -l "$LIMIT" \
    -nostdin -timeout $((CALLS / RATE + HOLD / 1000 + 60))s -timeout_error \
    -trace_stat -stf stat.csv -fd 1 -trace_rtt -rtt_freq 1 >/dev/null 2>&1) || true
  local rtt; rtt=$(ls "$dir"/*_rtt.csv 2>/dev/null | head -1 || true)
  local pct="no rtt file"
  if [ -n "$rtt" ]; then
    pct=$(awk -F';' 'NR>1 && $2!="" {print $2}' "$rtt" | sort -g | awk '{a[NR]=$1} END {
      if (NR==0) {print "no samples"; exit}
      p50=a[int(NR*0.50)>0?int(NR*0.50):1]; p99=a[int(NR*0.99)>0?int(NR*0.99):1];
      printf "rtd_ms p50=%.2f p99=%.2f max=%.2f (n=%d)", p50, p99, a[NR], NR}')
  fi
  local ok failed elapsed
  ok=$(col "$dir/stat.csv" "SuccessfulCall(C)"); failed=$(col "$dir/stat.csv" "FailedCall(C)")
  elapsed=$(col "$dir/stat.csv" "ElapsedTime(C)")
  echo "== $name: successful=$ok failed=$failed offered_rate=${RATE}/s $pct max_up=$(colmax "$dir/stat.csv" "CurrentCall") elapsed=$elapsed load=$(load)"
}

echo "gateway binary: $BIN ($(stat -c %y "$BIN" 2>/dev/null | cut -d. -f1 || true)); rate=$RATE calls=$CALLS hold_ms=$HOLD"
echo "uptime: $(uptime)"

# 1. Caller to carrier directly: sipp's floor.
UAS=$(uas_start); PIDS+=("$UAS"); sleep 1
uac "$TRUNK" direct
kill "$UAS" 2>/dev/null || true; sleep 2

# 2. Through Kamailio alone (stateful, record-routing, one relay to the carrier).
if command -v kamailio >/dev/null; then
  sed -e "s/@LISTEN@/$KAM/" -e "s/@TRUNK@/$TRUNK/" "$ROOT/bench/gateway/kamailio.cfg" >"$WORK/kamailio.cfg"
  kamailio -f "$WORK/kamailio.cfg" -DD -E -Y "$WORK" -P "$WORK/kamailio.pid" -m 256 -M 16 >"$WORK/kamailio.log" 2>&1 &
  KPID=$!; PIDS+=("$KPID"); sleep 2
  UAS=$(uas_start); PIDS+=("$UAS"); sleep 1
  uac "$KAM" kamailio
  kill "$UAS" "$KPID" 2>/dev/null || true; wait "$KPID" 2>/dev/null || true; sleep 2
else
  echo "== kamailio: not installed (apt-get install kamailio)"
fi

# 3. Through the gateway, billing on.
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
if [ "${DB:-sqlite}" = postgres ]; then
  PGDB=tincan_calls_bench
  psql -qh 127.0.0.1 -U postgres -c "DROP DATABASE IF EXISTS $PGDB" -c "CREATE DATABASE $PGDB" >/dev/null 2>&1
  export TINCAN_GATEWAY_DATABASE__URL=postgres://postgres@127.0.0.1:5432/$PGDB
fi
gw() { RUST_LOG=error "$BIN" --data-dir "$WORK" "$@"; }
gw rates import "$WORK/deck.csv" >/dev/null
gw carriers add bench --kind sip --priority 1 --max-concurrent 100000 >/dev/null
gw carriers import bench "$WORK/cost.csv" >/dev/null
ACCOUNT=$(gw accounts create --business bench)
gw accounts adjust "$ACCOUNT" 1000000.00 --memo bench >/dev/null
TINCAN_GATEWAY_API__RATE_LIMIT__BURST=1000000 RUST_LOG=warn \
  "$BIN" --config "$WORK/gateway.toml" --data-dir "$WORK" --api "$API" serve >"$WORK/serve.log" 2>&1 &
GW=$!; PIDS+=("$GW")
for _ in $(seq 100); do curl -sf "http://$API/healthz" >/dev/null && break; sleep 0.1; done
sleep 1
IDLE=$(ps -o rss= -p "$GW" | tr -d ' ')
UAS=$(uas_start); PIDS+=("$UAS"); sleep 1
# The gateway's resident memory, sampled every 200 ms while the calls run.
( peak=0; while kill -0 "$GW" 2>/dev/null; do r=$(ps -o rss= -p "$GW" | tr -d ' '); [ "${r:-0}" -gt $peak ] && peak=$r && echo $peak >"$WORK/peak"; sleep 0.2; done ) &
PIDS+=($!)
uac "$GW_SIP" gateway
PEAK=$(cat "$WORK/peak" 2>/dev/null || echo 0)
UP=$(colmax "$WORK/gateway/stat.csv" "CurrentCall")
echo "== gateway memory: idle ${IDLE} KiB, peak ${PEAK} KiB with up to ${UP} calls up: $(( UP > 0 ? (PEAK - IDLE) / UP : 0 )) KiB per call"
sleep 3
kill "$UAS" "$GW" 2>/dev/null || true; wait "$GW" 2>/dev/null || true
gw ledger check | tail -1
echo "records: $(gw calls export | tail -n +2 | cut -d, -f8 | sort | uniq -c | tr '\n' ' ')"
echo "load after: $(load)"
[ "${DB:-sqlite}" = postgres ] && psql -qh 127.0.0.1 -U postgres -c "DROP DATABASE IF EXISTS $PGDB" >/dev/null
true
