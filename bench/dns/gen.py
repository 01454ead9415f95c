#!/usr/bin/env python3
"""Generates the benchmark data set for the ENUM directory and its Knot anchors.

gen.py N OUTDIR [APEX] writes, for N numbers +442071000000, +442071000001, …:
  zone.txt        the unsigned zone (SOA, NS, per number two NAPTR and the key TXT) for Knot
  numbers.jsonl   the same records for `numbers import`, one {"e164","services","ed25519"} per line
  q-pos.txt       100k positive NAPTR queries (dnsperf format), random order
  q-mix.txt       100k queries, half for numbers that do not exist
"""
import base64, json, os, random, sys

n = int(sys.argv[1])
out = sys.argv[2]
apex = sys.argv[3] if len(sys.argv) > 3 else "e164.tincan.test."
os.makedirs(out, exist_ok=True)
rnd = random.Random(42)

def owner(digits):
    return ".".join(reversed(digits)) + "." + apex

def number(i):
    return "442071%06d" % i  # 12 digits: London 020 71xx xxxx

key = base64.b64encode(bytes(range(32))).decode().rstrip("=")
with open(os.path.join(out, "zone.txt"), "w") as z, open(os.path.join(out, "numbers.jsonl"), "w") as j:
    z.write(f"$ORIGIN {apex}\n$TTL 300\n@ SOA ns.{apex} hostmaster.{apex} 1 3600 600 86400 300\n")
    z.write(f"@ NS ns.{apex}\nns A 127.0.0.1\n")
    for i in range(n):
        d = number(i)
        o = owner(d)
        m = f"matrix:u/u{i}:hs.test"
        s = f"sip:+{d}@sip.test"
        z.write(f'{o} NAPTR 10 100 "u" "E2U+x-matrix" "!^.*$!{m}!" .\n')
        z.write(f'{o} NAPTR 20 100 "u" "E2U+sip" "!^.*$!{s}!" .\n')
        z.write(f'{o} TXT "v=tc1; mk={key}"\n')
        j.write(json.dumps({"e164": "+" + d, "services": [{"type": "matrix", "uri": m}, {"type": "sip", "uri": s}],
                            "ed25519": key}) + "\n")

q = 100_000
with open(os.path.join(out, "q-pos.txt"), "w") as f:
    for _ in range(q):
        f.write(f"{owner(number(rnd.randrange(n)))} NAPTR\n")
with open(os.path.join(out, "q-mix.txt"), "w") as f:
    for k in range(q):
        if k % 2 == 0:
            f.write(f"{owner(number(rnd.randrange(n)))} NAPTR\n")
        else:
            f.write(f"{owner('442072%06d' % rnd.randrange(1_000_000))} NAPTR\n")
