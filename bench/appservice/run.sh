#!/usr/bin/env bash
# bench/appservice/run.sh [CRITERION ARGS…]: the bridge-core benchmark (appservice/benches/bridge.rs), release
# build (cargo's bench profile), with the load of the machine before and after. Groups:
#   transactions/100_events_recorded_and_handled   AS API → durable inbox → per-portal queue → network, no Synapse
#   transactions/100_messages_through_synapse      a Synapse user sends 100 messages, Synapse batches them
#   transactions/100_encrypted_messages_through_synapse   the same from Tincan's client core, encrypted DM
#   remote_queue_100_events/{through_synapse,encrypted_through_synapse}   100 remote messages into a portal
#   remote_to_matrix/{scripted_homeserver,with_synapse}   one remote event until the homeserver accepted it
#   remote_queue_100_events/{one_queue_call_per_event,one_queue_call_per_100}   durable remote queue throughput
# Arguments go to criterion: a name filter (`transactions/100_events`), `--save-baseline before`, `--baseline before`.
# The Synapse groups need the test venv (TINCAN_TEST_VENV, default .venv or /var/tmp/tincan-venv). Not a CI test.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
cd "$ROOT"
echo "# $(date -u +%FT%TZ) $(git rev-parse --short HEAD)"
echo "# before: $(uptime)"
nice -n 5 cargo bench --workspace --bench bridge -- --noplot "$@"
echo "# after: $(uptime)"
