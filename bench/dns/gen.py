#!/usr/bin/env python3
"""Generates the benchmark data set for the ENUM directory and its Knot anchors.

gen.py N OUTDIR [APEX] writes, for N numbers +442071000000, +442071000001, …, every file below that is missing:
  zone.txt           the unsigned zone (SOA, NS, per number two NAPTR and the key TXT) for Knot
  numbers.jsonl      the same records for `numbers import`, one {"e164","services","ed25519"} per line
  q-pos.txt          100k positive NAPTR queries (dnsperf format), random order
  q-mix.txt          100k queries, half for numbers that do not exist (drawn from 1M, so they repeat: a denial
                     cache answers most of them)
  q-neg-flood.txt    FLOOD (default 2M) queries, each for a DISTINCT number that does not exist (+44208…), so a
                     run shorter than FLOOD queries never repeats a name: every negative answer is signed online
  q-mix-flood.txt    FLOOD queries alternating a random existing number and a distinct non-existent one (+44209…,
                     disjoint from q-neg-flood.txt so one run cannot warm the cache for the other)
Each file has its own seeded generator, so it is the same whichever files already existed.

gen.py N OUTDIR --mixed writes only numbers-mixed.jsonl: N distinct numbers of ten countries interleaved (country
codes 1, 44, 49, 33, 34, 39, 31, 46, 61, 81, one after the other; per country a fixed-line area and mobiles
alternately), each drawn from a range where every number is valid per libphonenumber's metadata, for `numbers
import` (the same ranges as enum-directory/core/benches/parse.rs).
"""
import base64, json, os, random, sys

mixed = "--mixed" in sys.argv[1:]
args = [a for a in sys.argv[1:] if a != "--mixed"]
n = int(args[0])
out = args[1]
apex = args[2] if len(args) > 2 else "e164.tincan.test."
flood = int(os.environ.get("FLOOD", "2000000"))
os.makedirs(out, exist_ok=True)
key = base64.b64encode(bytes(range(32))).decode().rstrip("=")

# Per country (prefix, free digits) of a fixed-line area and of mobiles: Washington DC and Toronto (two regions of
# +1), London, Berlin, Paris, Madrid, Rome (leading zero kept), Amsterdam, Stockholm, Sydney, Tokyo.
MIXED_RANGES = [[("12025", 6), ("14165", 6)], [("44207", 7), ("44740", 7)], [("4930", 8), ("49151", 8)],
                [("331", 8), ("3361", 7)], [("3491", 7), ("3460", 7)], [("3906", 8), ("3933", 8)],
                [("3120", 7), ("3161", 7)], [("468", 7), ("4670", 7)], [("6128", 7), ("6141", 7)],
                [("8133", 7), ("81901", 7)]]

if mixed:
    if not os.path.exists(os.path.join(out, "numbers-mixed.jsonl")):
        rnd = random.Random(23)
        ranges = [r for country in MIXED_RANGES for r in country]
        per = -(-n // len(ranges))
        drawn = {r: rnd.sample(range(10 ** r[1]), per) for r in ranges}
        lines = []
        for i in range(n):
            k = i // len(MIXED_RANGES)
            prefix, free = MIXED_RANGES[i % len(MIXED_RANGES)][k % 2]
            d = prefix + str(drawn[(prefix, free)][k // 2]).zfill(free)
            lines.append(json.dumps({"e164": "+" + d, "services": [{"type": "matrix", "uri": f"matrix:u/u{i}:hs.test"}],
                                     "ed25519": key}) + "\n")
        tmp = os.path.join(out, "numbers-mixed.jsonl.tmp")
        with open(tmp, "w") as f:
            f.writelines(lines)
        os.replace(tmp, os.path.join(out, "numbers-mixed.jsonl"))
    sys.exit(0)

def owner(digits):
    return ".".join(reversed(digits)) + "." + apex

def number(i):
    return "442071%06d" % i  # 12 digits: London 020 71xx xxxx

def missing(*names):
    return any(not os.path.exists(os.path.join(out, f)) for f in names)

def write(name, lines):
    tmp = os.path.join(out, name + ".tmp")
    with open(tmp, "w") as f:
        f.writelines(lines)
    os.replace(tmp, os.path.join(out, name))

def distinct_missing(prefix, seed):
    # 12-digit numbers PREFIX + 7 digits: none exists (the zone holds 442071…), all distinct, random order.
    return (owner(f"{prefix}{i:07d}") for i in random.Random(seed).sample(range(10_000_000), flood))

if missing("zone.txt", "numbers.jsonl"):
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
            j.write(json.dumps({"e164": "+" + d, "services": [{"type": "matrix", "uri": m},
                                                              {"type": "sip", "uri": s}], "ed25519": key}) + "\n")

q = 100_000
if missing("q-pos.txt", "q-mix.txt"):
    rnd = random.Random(42)
    write("q-pos.txt", (f"{owner(number(rnd.randrange(n)))} NAPTR\n" for _ in range(q)))
    write("q-mix.txt", (f"{owner(number(rnd.randrange(n)))} NAPTR\n" if k % 2 == 0
                        else f"{owner('442072%06d' % rnd.randrange(1_000_000))} NAPTR\n" for k in range(q)))
if missing("q-neg-flood.txt"):
    write("q-neg-flood.txt", (f"{o} NAPTR\n" for o in distinct_missing("44208", 43)))
if missing("q-mix-flood.txt"):
    rnd = random.Random(44)
    neg = distinct_missing("44209", 45)
    write("q-mix-flood.txt", (f"{owner(number(rnd.randrange(n)))} NAPTR\n" if k % 2 == 0 else f"{next(neg)} NAPTR\n"
                              for k in range(flood)))
