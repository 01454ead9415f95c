# Shared by dev/test and dev/up: install what the tests and the local network need, only when missing.
# shellcheck shell=bash

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export TINCAN_TEST_VENV=${TINCAN_TEST_VENV:-$ROOT/.venv}

# Debian packages the tests drive (DNS validators and servers, SIP peers, load tools).
APT_PACKAGES=(bind9-dnsutils bind9-utils ldnsutils unbound unbound-host knot knot-dnsutils knot-dnssecutils nsd dnsperf
  sip-tester kamailio rtpengine-daemon baresip-core postgresql-client openssl chromium)

log() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }

ensure_apt() {
  local missing=() p
  for p in "${APT_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  log "installing Debian packages: ${missing[*]}"
  local sudo=()
  [ "$(id -u)" -eq 0 ] || sudo=(sudo)
  # Installing must not start system daemons (unbound, knot, nsd, kamailio would grab ports).
  local made_policy=0
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' | "${sudo[@]}" tee /usr/sbin/policy-rc.d >/dev/null
    "${sudo[@]}" chmod +x /usr/sbin/policy-rc.d
    made_policy=1
  fi
  "${sudo[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  [ $made_policy -eq 1 ] && "${sudo[@]}" rm -f /usr/sbin/policy-rc.d
  # Some packages start their daemon anyway through other means; stop any that did.
  "${sudo[@]}" pkill -x unbound 2>/dev/null || true
  "${sudo[@]}" pkill -x knotd 2>/dev/null || true
  "${sudo[@]}" pkill -x nsd 2>/dev/null || true
  return 0
}

ensure_venv() {
  local py="$TINCAN_TEST_VENV/bin/python"
  if [ -x "$py" ] && "$py" -c 'import synapse, smpp34' 2>/dev/null; then
    # Added later: the OpenAPI validator the gateway's tests run on its document.
    "$py" -c 'import openapi_spec_validator' 2>/dev/null \
      || "$TINCAN_TEST_VENV/bin/pip" install -q --disable-pip-version-check openapi-spec-validator
    # Added later: pytest, which runs the client bindings' Python suite (clients/ffi/tests/python).
    "$py" -c 'import pytest' 2>/dev/null \
      || "$TINCAN_TEST_VENV/bin/pip" install -q --disable-pip-version-check pytest
    return 0
  fi
  log "creating the Python venv at $TINCAN_TEST_VENV (matrix-synapse[jwt], smpp34)"
  python3 -m venv "$TINCAN_TEST_VENV"
  "$TINCAN_TEST_VENV/bin/pip" install -q --disable-pip-version-check 'matrix-synapse[jwt]' smpp34 openapi-spec-validator pytest
}

# The UniFFI generator for the client bindings (clients/ffi/uniffi-bindgen: outside the workspace, so its
# dependencies do not change the workspace's features), built into $TARGET/uniffi-bindgen; prints its path.
ensure_uniffi_bindgen() {
  local target=${CARGO_TARGET_DIR:-$ROOT/target}/uniffi-bindgen
  CARGO_TARGET_DIR="$target" cargo build -q --locked --manifest-path "$ROOT/clients/ffi/uniffi-bindgen/Cargo.toml" >&2
  echo "$target/debug/uniffi-bindgen"
}

# node and the npm packages of testkit/node, installed from its lock file only when it changed: matrix-js-sdk with
# its Rust crypto and fake-indexeddb (the independent Matrix client of the encryption tests), playwright-core (drives
# Debian's chromium, APT_PACKAGES; downloads no browser of its own) and axe-core (accessibility checks) for the
# browser tests, which find them through TINCAN_NODE_MODULES.
export TINCAN_NODE_MODULES=${TINCAN_NODE_MODULES:-$ROOT/testkit/node/node_modules}
ensure_node() {
  local dir="$ROOT/testkit/node"
  if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
    log "installing node and npm (Debian)"
    local sudo=()
    [ "$(id -u)" -eq 0 ] || sudo=(sudo)
    "${sudo[@]}" apt-get update -qq
    DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends nodejs npm >/dev/null
  fi
  local major
  major=$(node -p 'process.versions.node.split(".")[0]')
  if [ "$major" -lt 20 ]; then
    echo "node $(node --version) is too old for matrix-js-sdk: install node 20 or later" >&2
    return 1
  fi
  if [ ! -e "$dir/node_modules/.package-lock.json" ] || [ "$dir/package-lock.json" -nt "$dir/node_modules/.package-lock.json" ]; then
    log "installing testkit/node's npm packages (matrix-js-sdk, fake-indexeddb, playwright-core, axe-core)"
    (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error)
  fi
}

pg_reachable() {
  pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null
}

ensure_postgres() {
  if pg_reachable; then return 0; fi
  # This machine kind ships PostgreSQL; start it if it is installed but stopped.
  if command -v pg_ctlcluster >/dev/null && [ -d /etc/postgresql ]; then
    log "starting PostgreSQL"
    pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n1)" main start 2>/dev/null || true
    sleep 2
  fi
  if pg_reachable; then return 0; fi
  if [ "${CI:-}" = "true" ]; then
    echo "PostgreSQL is not reachable on 127.0.0.1:5432 and CI=true: failing (tests need it)" >&2
    return 1
  fi
  echo "warning: PostgreSQL is not reachable on 127.0.0.1:5432; its tests will be skipped" >&2
}
