#!/usr/bin/env bash
# bench/client/ffi.sh [ROUNDS]: through the generated Python bindings on the real chain (Synapse from the venv,
# tincan-ext, tincan-directory with its transparency log, on loopback): the time from `send_to_number` to the
# peer's MessageListener callback (one message in flight at a time), the first message of a new DM, the cold
# start of an existing session in a new process, and the cost of a no-op call. Runs the ignored test
# bench::bench_send_to_listener_callback of tincan-ffi (clients/ffi/tests/it/bench.rs → bench/client/ffi_latency.py)
# in the workspace's debug build (the one dev/test makes, so nothing is rebuilt after it), framed by `uptime`.
# Not a CI test. Needs what dev/test needs.
set -euo pipefail
ROUNDS=${1:-50}
source "$(dirname "$0")/../../dev/lib.sh"
cd "$ROOT"
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
export TINCAN_TEST_EXT_BIN=$TARGET/debug/tincan-ext TINCAN_TEST_DIRECTORY_BIN=$TARGET/debug/tincan-directory
TINCAN_TEST_UNIFFI_BINDGEN=$(ensure_uniffi_bindgen)
export TINCAN_TEST_UNIFFI_BINDGEN TINCAN_BENCH_ROUNDS=$ROUNDS
cargo nextest run --workspace --no-run
echo "== $(date -u +%FT%TZ) debug build, $ROUNDS rounds, $(nproc) cores, at $(git rev-parse --short HEAD)"
echo "uptime before: $(uptime)"
cargo nextest run --workspace -E 'package(tincan-ffi) & test(bench_send_to_listener_callback)' --run-ignored only \
  --no-capture 2>&1 | grep -E '^bench|FAIL|panicked|Error'
echo "uptime after: $(uptime)"
