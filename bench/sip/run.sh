#!/usr/bin/env bash
# bench/sip/run.sh [messages|calls|all]: the SIP bridge under sipp (issue #18), on loopback, bounded loads.
#   messages  SIP MESSAGE → Matrix messages/s, 0 lost (BENCH_MESSAGES=3000 at BENCH_MESSAGE_RATE=400/s)
#   calls     call set-ups/s to Matrix ghosts, Alice's client scripted to answer at once (BENCH_CALLS=1000 at
#             BENCH_CPS=50/s from BENCH_CALLERS=10 numbers, each held BENCH_HOLD_MS=10000), bridge memory per
#             active call (rtpengine on BENCH_RTP_MIN..BENCH_RTP_MAX, default 30000..39999)
# Each is followed by the same sipp scenario through Kamailio alone (a stateful proxy to a sipp UAS) as the
# anchor. The benchmarks are #[ignore]d entries of the bridge's integration tests (tests/it/bench.rs), built
# through the workspace like every test (a debug build unless you pass --cargo-profile release in
# NEXTEST_ARGS): the bridge, Synapse (SQLite, one process) and sipp share the machine — the figures are the
# whole chain's, and say little while other work runs; the load average is printed beside each.
set -euo pipefail
cd "$(dirname "$0")/../.."
WHICH=${1:-all}
case "$WHICH" in
  messages) FILTER='test(=bench::bench_messages)' ;;
  calls) FILTER='test(=bench::bench_calls)' ;;
  all) FILTER='test(/^bench::/)' ;;
  *) echo "usage: $0 [messages|calls|all]" >&2; exit 2 ;;
esac
echo "# $(date -u +%FT%TZ) $(git rev-parse --short HEAD)"
echo "# before: $(uptime)"
# --no-capture runs them one at a time (they would load each other) and shows their output.
RUST_LOG=${RUST_LOG:-warn} cargo nextest run --workspace -E "package(tincan-sip) & $FILTER" --run-ignored only \
  --no-capture ${NEXTEST_ARGS:-}
echo "# after: $(uptime)"
