#!/usr/bin/env bash
# bench/sms/run.sh [link [WINDOW…]] [e2e] [--messages N] [--latency M] [--outbox-dir DIR]: the SMS bridge's benchmark
# (bridges/sms/benches/sms.rs), issue #17:
#   link WINDOW…  submit_sm/s through the carrier link with that SMPP window (default 10 and 100), N messages
#                 (default 20,000) from a SQLite outbox to the smpp34 SMSC peer; lost and duplicated messages.
#                 --outbox-dir /dev/shm puts the outbox on tmpfs (no fsync cost: the bridge's own ceiling)
#   e2e           Matrix message -> submit_sm latency p50/p90/p99 over M texts (default 200), through Synapse and
#                 the bridge (in process), one text at a time
# SMS_BENCH_SAMPLES=1 prints the peer's accepted count every 250 ms; SMS_BENCH_ENQUIRE_LINK_SECS=N sets the link's
# enquire_link interval (default 30; see RESULTS.md on window 100).
# The SMSC peer is bridges/sms/tests/smsc_peer.py on the PyPI smpp34 server (not rusmpp), from the test venv
# (TINCAN_TEST_VENV, default .venv or /var/tmp/tincan-venv); e2e also needs Synapse from it. Not a CI test.
# Built with the dev profile (the workspace's: dependencies at opt-level 1, the bridge at 0) so that the
# workspace's debug build is reused; a release build is faster. Figures go to bench/sms/RESULTS.md by hand, with
# the load printed here.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
cd "$ROOT"
echo "# $(date -u +%FT%TZ) $(git rev-parse --short HEAD) profile=${BENCH_PROFILE:-dev}"
echo "# before: $(uptime)"
nice -n 5 cargo bench --workspace --profile "${BENCH_PROFILE:-dev}" --bench sms -- "$@"
echo "# after: $(uptime)"
