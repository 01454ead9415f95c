#!/usr/bin/env bash
# bench/ext/run.sh: the homeserver extension's benchmarks on a release build (the ignored `bench_*` tests of
# homeserver-ext/tests/it/bench.rs, driving the real tincan-ext binary):
#   - sign-ups with homeserver and SMSC excluded (dev SMS sink, JWT backend, SQLite): 1 client, then 8;
#   - sign-ups with both included (SMPP to the smpp34 simulator, JWT login at Synapse): 1 client;
#   - lookup of 1,000 sha256 hashes against 10,000 bindings: the handler's own time and the round trip.
# Prints uptime before and after (the machine is shared) and the BENCH lines. Loopback only. Not a CI test.
#
# Needs: the Synapse + smpp34 venv (TINCAN_TEST_VENV, default /var/tmp/tincan-venv). Builds in release.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
export TINCAN_TEST_VENV=${TINCAN_TEST_VENV:-/var/tmp/tincan-venv}
cd "$ROOT"
nice -n 5 cargo test --release -p tincan-homeserver-ext --test it --no-run 2>&1 | tail -n 1
echo "rustc: $(rustc --version)"
echo "before: $(uptime)"
nice -n 5 cargo test --release -p tincan-homeserver-ext --test it -- --ignored --nocapture --test-threads 1 bench_ \
  2>&1 | grep -oE '(BENCH|test result|panicked).*' || true
echo "after:  $(uptime)"
