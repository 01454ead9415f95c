#!/usr/bin/env bash
# bench/dns/run.sh N [SECONDS]: dnsperf against tincan-directory and Knot DNS 3.2 in the same run, on the
# same N numbers; Knot both pre-signed (NSEC3, RFC 9276 parameters) and with mod-onlinesign. Also start-up time
# and RSS with N numbers, update-to-visible latency, and each server's CPU time per answered query (user+system,
# from /proc: steadier than qps when other work shares the machine). Loopback only; every server is stopped at
# the end. Not a CI test. Query sets (SETS="pos mix neg-flood mix-flood" by default, any subset in that order):
#   pos        positive NAPTR queries with DO
#   mix        50/50 with non-existent numbers drawn from 1M (they repeat: tincan's denial cache answers most)
#   neg-flood  every query a DISTINCT non-existent number (a random-name flood: every denial signed online)
#   mix-flood  50/50 positives and distinct non-existent numbers
# The flood files hold FLOOD (default 2M) names; a run must send fewer (about SECONDS x qps) or dnsperf loops and
# names repeat. Response rate limiting is off for tincan (TINCAN_DIRECTORY_DNS__SERVER__RRL__ENABLED=false;
# loopback is exempt by default anyway); Knot's RRL is off unless configured.
#
# Less noisy comparisons (on a small machine dnsperf and the server share the cores):
#   PIN=1       every server is pinned to SERVER_CPUS (default 0) once it runs (taskset -a -p: all its threads)
#               and dnsperf to CLIENT_CPUS (default 1); the same for every server compared. Each server then runs
#               WORKERS UDP worker threads (default: one per CPU in SERVER_CPUS; tincan's udp_workers, Knot's
#               udp-workers): two workers sharing one core context-switch, and how dnsperf's sockets happen to
#               hash onto their SO_REUSEPORT sockets made each server's CPU per answer bimodal (about +15 %).
#   WORKERS=n   UDP worker threads of every server (unset and PIN=0: each server's own default, one per core).
#   REPEAT=n    n rounds; in each, every query set is run against tincan, then Knot pre-signed, then Knot
#               onlinesign, one after the other (all servers stay up, idle while another is measured). Each round
#               is printed; the summary gives each server's median qps and the median of the rounds' ratios.
#               With n > 1 the flood sets' names repeat from the second round on (tincan's denial cache then
#               answers some): use REPEAT with SETS=pos (or mix) for the flood-free comparison.
#   KNOT_MODES  which Knot servers to compare with (default "presigned onlinesign").
#   QUOTA=P     caps every server at P % of one CPU (a CPU cgroup of its own: cgroup v2 cpu.max or v1 CFS quota,
#               period QUOTA_PERIOD_US, default 10000), the same cap for every server. On a 2-core machine one
#               dnsperf saturates its core at about 170k qps, below what a fast server answers on the other core:
#               unconstrained, qps then measures dnsperf ("client cpu" in the output shows it at ~100 %). Under a
#               cap below that, the server is the bottleneck and the qps ratio is the ratio of answers per unit of
#               CPU. Needs root. Combine with PIN=1 so the capped servers share one core.
# Defaults (PIN=0, REPEAT=1): one round, unpinned.
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
CGROUPS=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  sleep 0.2
  for c in "${CGROUPS[@]}"; do rmdir "$c" 2>/dev/null || true; done
}
trap cleanup EXIT

# gen.py writes only the files that are missing (an older data dir gets the flood files added).
for f in zone.txt numbers.jsonl q-pos.txt q-mix.txt q-neg-flood.txt q-mix-flood.txt; do
  [ -s "$OUT/$f" ] || { echo "generating $f (and the rest missing) for $N numbers in $OUT"; python3 "$HERE/gen.py" "$N" "$OUT" "$APEX"; break; }
done
declare -A LABEL=([pos]="positive (DO)" [mix]="50/50 mix (DO)" [neg-flood]="distinct-negative flood (DO)"
  [mix-flood]="50/50 distinct-neg mix (DO)")

PIN=${PIN:-0}
REPEAT=${REPEAT:-1}
KNOT_MODES=${KNOT_MODES:-presigned onlinesign}
SERVER_CPUS=${SERVER_CPUS:-0}
CLIENT_CPUS=${CLIENT_CPUS:-1}
CLIENT=()
[ "$PIN" = 1 ] && CLIENT=(taskset -c "$CLIENT_CPUS")
QUOTA=${QUOTA:-}
QUOTA_PERIOD_US=${QUOTA_PERIOD_US:-10000}
WORKERS=${WORKERS:-}
if [ "$PIN" = 1 ] && [ -z "$WORKERS" ]; then WORKERS=$(taskset -c "$SERVER_CPUS" nproc); fi
pin() { # pin PID: the server and all its threads onto SERVER_CPUS, and under QUOTA into a capped cgroup
  if [ "$PIN" = 1 ]; then taskset -a -p -c "$SERVER_CPUS" "$1" >/dev/null; fi
  [ -n "$QUOTA" ] || return 0
  local quota=$((QUOTA * QUOTA_PERIOD_US / 100)) cg
  if [ -d /sys/fs/cgroup/cpu ] && [ -f /sys/fs/cgroup/cpu/cgroup.procs ]; then # cgroup v1
    cg=/sys/fs/cgroup/cpu/tincan-bench-$1
    mkdir -p "$cg"
    echo "$QUOTA_PERIOD_US" > "$cg/cpu.cfs_period_us"; echo "$quota" > "$cg/cpu.cfs_quota_us"
  else # cgroup v2 (the cpu controller enabled for the root's children)
    cg=/sys/fs/cgroup/tincan-bench-$1
    mkdir -p "$cg"
    echo "$quota $QUOTA_PERIOD_US" > "$cg/cpu.max"
  fi
  echo "$1" > "$cg/cgroup.procs"
  CGROUPS+=("$cg")
}

# QPS[server_set_round], LAT[…], CPU[…] (the server's user+system CPU time per answered query, in µs: less
# sensitive to other load on the machine than qps); server is t, presigned or onlinesign.
declare -A QPS LAT CPU
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
perf() { # perf KEY LABEL PORT QUERYFILE SERVER_PID
  local r q l c0 c1 done cpu ccpu tc0 tc1 tc=""
  c0=$(cpu_ticks "$5")
  [ "$5" = "$dpid" ] && tc0=$(budget_tc)
  # dnsperf's own CPU time: the subshell's waited-for children (fields 16 and 17 of its stat), after it ends.
  r=$( ("${CLIENT[@]}" dnsperf -s 127.0.0.1 -p "$3" -d "$4" -D -c 4 -T 1 -l "$SECS" 2>&1
    awk '{ print "client ticks", $16 + $17 }' "/proc/$BASHPID/stat") )
  c1=$(cpu_ticks "$5")
  if [ "$5" = "$dpid" ]; then
    tc1=$(budget_tc)
    tc=$(awk -v t=$((tc1 - tc0)) -v n="$(awk '/Queries completed/ {print $3}' <<<"$r")" \
      'BEGIN { if (n > 0 && t > 0) printf "   over signing budget (TC) %d = %.1f %%", t, t * 100 / n }')
  fi
  ccpu=$(awk -v hz="$(getconf CLK_TCK)" -v s="$SECS" '/^client ticks/ { printf "%.0f", $3 / hz / s * 100 }' <<<"$r")
  q=$(awk '/Queries per second/ {print $4}' <<<"$r")
  l=$(awk '/Average Latency/ {print $4*1000}' <<<"$r")
  done=$(awk '/Queries completed/ {print $3}' <<<"$r")
  cpu=$(awk -v t=$((c1 - c0)) -v hz="$(getconf CLK_TCK)" -v n="$done" 'BEGIN { if (n > 0) printf "%.2f", t / hz * 1e6 / n; else print 0 }')
  QPS[$1]=$q LAT[$1]=$l CPU[$1]=$cpu
  printf '%-46s %10.0f qps   avg %7.3f ms   server cpu %6.2f us/q   client cpu %3s %%   lost %s%s\n' "$2" "$q" "$l" \
    "$cpu" "$ccpu" "$(awk '/Queries lost/ {print $3}' <<<"$r")" "$tc"
}
# UDP denials tincan answered truncated because its online-signing budget (dns.server.signing_budget, default
# 50k/s; TINCAN_DIRECTORY_DNS__SERVER__SIGNING_BUDGET__SIGNATURES_PER_SECOND=0 turns it off) was spent.
budget_tc() {
  curl -fsS "http://127.0.0.1:$AP/metrics" | awk '/^tincan_directory_dns_signing_budget_exceeded_total/ { print $2 }'
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
env TINCAN_DIRECTORY_DNS__SERVER__RRL__ENABLED=false RUST_LOG=warn,tincan_directory::serve=info \
  ${WORKERS:+TINCAN_DIRECTORY_DNS__SERVER__UDP_WORKERS=$WORKERS} "$BIN" --data-dir "$D" serve --dns "127.0.0.1:$DP" --api "127.0.0.1:$AP" > "$D/serve.log" 2>&1 &
dpid=$!; pids+=($dpid)
until kdig @127.0.0.1 -p "$DP" +dnssec +timeout=1 +retry=0 "$probe" NAPTR 2>/dev/null | grep -q 'RRSIG.*NAPTR'; do
  kill -0 $dpid 2>/dev/null || { cat "$D/serve.log"; exit 1; }; sleep 0.05
done
T_START=$(echo "$(date +%s.%N) - $t0" | bc); T_RSS=$(rss_mib $dpid)
echo "start-up to first signed answer: $T_START s   RSS $T_RSS MiB"
grep -o 'loaded_signed=[0-9]* to_sign=[0-9]*' "$D/serve.log" || true
pin $dpid

declare -A KLOAD KRSS KPID KPORT
for mode in $KNOT_MODES; do
  echo "== Knot DNS $(knotd --version | awk '{print $NF}') $mode ($N numbers)"
  KPORT[$mode]=$(freeport)
  res=$(APEX=$APEX UDP_WORKERS=$WORKERS "$HERE/knot.sh" "$mode" "$OUT" "${KPORT[$mode]}")
  echo "$res"
  KPID[$mode]=$(sed -n 's/.*pid=\([0-9]*\).*/\1/p' <<<"$res"); pids+=(${KPID[$mode]})
  KLOAD[$mode]=$(sed -n 's/.*load_seconds=\([0-9.]*\).*/\1/p' <<<"$res")
  pin "${KPID[$mode]}"
done

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2fx", a / b; else print "-" }'; }
median() { tr ' ' '\n' | awk 'NF' | sort -g | awk '{ v[NR] = $1 } END { if (NR == 0) print 0; else if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
echo
echo "== queries: $REPEAT round(s) of ${SECS} s per server and set; UDP workers per server: ${WORKERS:-default}; PIN=$PIN$([ "$PIN" = 1 ] && echo " (servers on CPU $SERVER_CPUS, dnsperf on CPU $CLIENT_CPUS)")$([ -n "$QUOTA" ] && echo "; QUOTA=$QUOTA % of a CPU per server")"
for r in $(seq "$REPEAT"); do
  [ "$REPEAT" -gt 1 ] && echo "-- round $r/$REPEAT"
  for k in $SETS; do
    perf "t_${k}_$r" "tincan-directory ${LABEL[$k]}" "$DP" "$OUT/q-$k.txt" "$dpid"
    for mode in $KNOT_MODES; do
      perf "${mode}_${k}_$r" "knot $mode ${LABEL[$k]}" "${KPORT[$mode]}" "$OUT/q-$k.txt" "${KPID[$mode]}"
    done
    if [ "$REPEAT" -gt 1 ]; then
      line="   round $r $k:"
      for mode in $KNOT_MODES; do line+=" vs $mode $(ratio "${QPS[t_${k}_$r]}" "${QPS[${mode}_${k}_$r]}")"; done
      echo "$line"
    fi
  done
done
T_RSS_AFTER=$(rss_mib $dpid)
for mode in $KNOT_MODES; do KRSS[$mode]=$(rss_mib "${KPID[$mode]}"); done
echo "RSS after load: tincan $T_RSS_AFTER MiB$(for mode in $KNOT_MODES; do printf ', knot %s %s MiB' "$mode" "${KRSS[$mode]}"; done)"
for mode in $KNOT_MODES; do kill "${KPID[$mode]}"; wait "${KPID[$mode]}" 2>/dev/null || true; done

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

# med SERVER SET METRIC(QPS|LAT): the median over the rounds; mratio SET MODE: the median of the rounds' ratios.
med() {
  local -n m=$3
  [ "$1" = t ] || [ -n "${KPORT[$1]:-}" ] || { echo -; return; }
  for r in $(seq "$REPEAT"); do printf '%s ' "${m[${1}_${2}_$r]:-}"; done | median
}
mratio() {
  for r in $(seq "$REPEAT"); do
    awk -v a="${QPS[t_${1}_$r]}" -v b="${QPS[${2}_${1}_$r]:-0}" 'BEGIN { if (b > 0) printf "%f ", a / b }'
  done | median | awk '{ if ($1 > 0) printf "%.2fx", $1; else print "-" }'
}
col() { [ -n "${KPORT[$1]:-}" ] && printf '%s' "$2" || printf '%s' "-"; }
fmt() { [ "$2" = - ] && printf '%s' - || printf "%.${1}f" "$2"; } # fmt DECIMALS VALUE-or--
echo
echo "== summary, $N numbers, $REPEAT round(s), PIN=$PIN${QUOTA:+ QUOTA=$QUOTA} (ratio = tincan / knot; for latency, cpu and RSS lower is better)"
[ "$REPEAT" -gt 1 ] && echo "   qps and latency: each server's median over the rounds; qps ratio: the median of the rounds' ratios"
printf '%-26s %12s %12s %12s %10s %10s\n' "" tincan knot-presig knot-online "vs presig" "vs online"
for k in $SETS; do
  tq=$(med t "$k" QPS); pq=$(med presigned "$k" QPS); oq=$(med onlinesign "$k" QPS)
  tl=$(med t "$k" LAT); pl=$(med presigned "$k" LAT); ol=$(med onlinesign "$k" LAT)
  printf '%-26s %12s %12s %12s %10s %10s\n' "qps $k" "$(fmt 0 "$tq")" "$(fmt 0 "$pq")" "$(fmt 0 "$oq")" \
    "$(col presigned "$(mratio "$k" presigned)")" "$(col onlinesign "$(mratio "$k" onlinesign)")"
  printf '%-26s %12s %12s %12s %10s %10s\n' "avg latency ms $k" "$(fmt 3 "$tl")" "$(fmt 3 "$pl")" "$(fmt 3 "$ol")" \
    "$(col presigned "$(ratio "$tl" "$pl")")" "$(col onlinesign "$(ratio "$tl" "$ol")")"
  tc=$(med t "$k" CPU); pc=$(med presigned "$k" CPU); oc=$(med onlinesign "$k" CPU)
  printf '%-26s %12s %12s %12s %10s %10s\n' "server cpu us/q $k" "$(fmt 2 "$tc")" "$(fmt 2 "$pc")" "$(fmt 2 "$oc")" \
    "$(col presigned "$(ratio "$tc" "$pc")")" "$(col onlinesign "$(ratio "$tc" "$oc")")"
done
printf '%-26s %12s %12s %12s %10s %10s\n' "RSS MiB (after queries)" "$T_RSS_AFTER" "${KRSS[presigned]:--}" \
  "${KRSS[onlinesign]:--}" "$(ratio "$T_RSS_AFTER" "${KRSS[presigned]:-0}")" "$(ratio "$T_RSS_AFTER" "${KRSS[onlinesign]:-0}")"
printf '%-26s %12s %12s %12s %10s %10s\n' "start-up s" "$T_START" "${KLOAD[presigned]:--}" "${KLOAD[onlinesign]:--}" \
  "$(ratio "$T_START" "${KLOAD[presigned]:-0}")" "$(ratio "$T_START" "${KLOAD[onlinesign]:-0}")"
