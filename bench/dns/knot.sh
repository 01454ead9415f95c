#!/usr/bin/env bash
# knot.sh MODE DATA PORT: starts Knot DNS (Debian knot 3.2) on 127.0.0.1:PORT serving DATA/zone.txt
#   MODE presigned  — Knot signs the whole zone at load with NSEC3 (RFC 9276: 0 iterations, no salt)
#   MODE onlinesign — Knot's mod-onlinesign signs every answer at query time (compact-ish denial)
# UDP_WORKERS=n sets Knot's udp-workers (default: one per CPU).
# Prints "load_seconds=… rss_kib=… pid=…" once the zone answers signed, and leaves knotd running.
set -euo pipefail
mode=$1 data=$2 port=$3
apex=${APEX:-e164.tincan.test.}
run="$data/knot-$mode"
rm -rf "$run"; mkdir -p "$run/db"
if [ "$mode" = presigned ]; then
  zone_extra="    dnssec-signing: on
    dnssec-policy: nsec3"
else
  zone_extra="    module: mod-onlinesign/os"
fi
cat > "$run/knot.conf" <<CONF
server:
    listen: 127.0.0.1@$port
    rundir: "$run"
${UDP_WORKERS:+    udp-workers: $UDP_WORKERS}
log:
  - target: "$run/knot.log"
    any: info
database:
    storage: "$run/db"
policy:
  - id: nsec3
    algorithm: ecdsap256sha256
    nsec3: on
    nsec3-iterations: 0
    nsec3-salt-length: 0
  - id: os
    algorithm: ecdsap256sha256
mod-onlinesign:
  - id: os
    policy: os
template:
  - id: default
    storage: "$data"
    zonefile-sync: -1
    zonefile-load: whole
    journal-content: none
zone:
  - domain: $apex
    file: "$data/zone.txt"
$zone_extra
CONF
start=$(date +%s.%N)
knotd -c "$run/knot.conf" > "$run/stdout.log" 2>&1 &
pid=$!
probe=$(head -n1 "$data/q-pos.txt" | cut -d' ' -f1)
for _ in $(seq 3000); do
  if kdig @127.0.0.1 -p "$port" +dnssec +timeout=1 +retry=0 "$probe" NAPTR 2>/dev/null | grep -q 'RRSIG.*NAPTR'; then
    end=$(date +%s.%N)
    rss=$(awk '/VmRSS/ {print $2}' "/proc/$pid/status")
    echo "load_seconds=$(echo "$end - $start" | bc) rss_kib=$rss pid=$pid"
    exit 0
  fi
  kill -0 $pid 2>/dev/null || { echo "knotd died:"; cat "$run/knot.log" "$run/stdout.log"; exit 1; }
  sleep 0.1
done
echo "knotd did not serve a signed answer in time"; kill $pid; exit 1
