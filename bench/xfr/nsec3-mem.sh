#!/usr/bin/env bash
# bench/xfr/nsec3-mem.sh BIN [N] [nsec3|plain]: resident memory of `tincan-directory serve` on N numbers (default
# 100000, from bench/dns/gen.py, loaded with `numbers import`), with one `nsec3` secondary (nobody at its address:
# the first copy is made at start regardless) once `first NSEC3 copy ready` is logged, or with no secondary
# ("plain") once it listens. Prints VmHWM/VmRSS from /proc/PID/status and the copy's log lines. Loopback only; the
# server is stopped at the end. Not a CI test.
set -euo pipefail
BIN=$1; N=${2:-100000}; MODE=${3:-nsec3}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
unset TINCAN_DIRECTORY_BIN  # the directory reads every TINCAN_DIRECTORY_* variable as config
DATA=${BENCH_DATA:-/var/tmp/tincan-bench/dns-$N}
OUT=${BENCH_OUT:-/var/tmp/tincan-bench/nsec3-mem-$N}
[ -s "$DATA/numbers.jsonl" ] || python3 "$ROOT/bench/dns/gen.py" "$N" "$DATA" e164.tincan.test. >/dev/null
rm -rf "$OUT"; mkdir -p "$OUT/directory"; D=$OUT/directory
freeport() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
DP=$(freeport); AP=$(freeport); KP=$(freeport)
head -c 32 /dev/urandom | base64 > "$OUT/tsig"
"$BIN" --data-dir "$D" keys generate >/dev/null
"$BIN" --data-dir "$D" provider add bench --prefix +44 >/dev/null
"$BIN" --data-dir "$D" numbers import --provider bench --progress-secs 60 "$DATA/numbers.jsonl" >/dev/null
ready="listening"
if [ "$MODE" = nsec3 ]; then
  export TINCAN_DIRECTORY_XFR__SECONDARIES__SEC__ADDRESS="127.0.0.1:$KP"
  export TINCAN_DIRECTORY_XFR__SECONDARIES__SEC__TSIG_KEY=bench-xfr
  export TINCAN_DIRECTORY_XFR__SECONDARIES__SEC__TSIG_SECRET_FILE="$OUT/tsig"
  export TINCAN_DIRECTORY_XFR__SECONDARIES__SEC__FLAVOUR=nsec3
  ready="first NSEC3 copy ready"
fi
: > "$D/serve.log"
RUST_LOG=info "$BIN" --data-dir "$D" serve --dns "127.0.0.1:$DP" --api "127.0.0.1:$AP" >> "$D/serve.log" 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null || true' EXIT
until grep -q "$ready" "$D/serve.log"; do
  kill -0 $pid 2>/dev/null || { tail "$D/serve.log" >&2; exit 1; }
  sleep 0.5
done
sleep 2
echo "$MODE: $(grep -E 'VmHWM|VmRSS' /proc/$pid/status | tr -s ' \t\n' ' ')"
grep -E "signed the NSEC3 copy|first NSEC3 copy ready" "$D/serve.log" | sed 's/\x1b\[[0-9;]*m//g' || true
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"
