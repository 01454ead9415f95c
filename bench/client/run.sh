#!/usr/bin/env bash
# bench/client/run.sh [ROUNDS] [PROFILE]: wall time from a new user's `verify` to their first message delivered,
# decrypted, to the other user, on loopback with the real chain: Synapse (from the venv), tincan-ext,
# tincan-directory and the client core. Runs the ignored test `bench_verify_to_first_delivery` of
# tincan-client-core (clients/core/tests/it/bench.rs) and prints its per-round lines, framed by `uptime`.
# PROFILE is `release` (default, the figures to report) or `debug`. Not a CI test.
#
# Needs what dev/test needs (the Synapse venv at $TINCAN_TEST_VENV or .venv); builds the three crates itself.
set -euo pipefail
ROUNDS=${1:-5}
PROFILE=${2:-release}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
cd "$ROOT"
flag=()
[ "$PROFILE" = release ] && flag=(--release)
cargo build "${flag[@]}" -p tincan-directory -p tincan-homeserver-ext
export TINCAN_TEST_EXT_BIN=$TARGET/$PROFILE/tincan-ext
export TINCAN_TEST_DIRECTORY_BIN=$TARGET/$PROFILE/tincan-directory
export TINCAN_TEST_BENCH_ROUNDS=$ROUNDS
cargo test "${flag[@]}" -p tincan-client-core --test it --no-run
echo "== $(date -u +%FT%TZ) profile $PROFILE, $ROUNDS rounds, $(nproc) cores"
echo "uptime before: $(uptime)"
cargo test "${flag[@]}" -p tincan-client-core --test it bench_verify_to_first_delivery -- --ignored --nocapture 2>&1 |
  grep -E '^bench|test result|panicked|Error'
echo "uptime after: $(uptime)"
