"""The send → listener latency through the generated Python bindings, on the real chain (bench/client/ffi.sh).

Run by the ignored Rust test `bench::bench_send_to_listener_callback` (clients/ffi/tests/it/bench.rs), which starts
the chain (Synapse, tincan-ext, the directory with its transparency log) and passes it in TINCAN_FFI_* variables,
like the bindings' pytest suite (whose helpers.py this uses). Two numbers sign up in this process; the receiver
syncs with a MessageListener; the sender sends ROUNDS texts one at a time (the next only after the previous one
reached the listener: at most one message in flight), each timed from the call of `send_to_number` to the
receiver's `on_message` for it. The first message (DM creation, key share) is reported apart. Also: cold start of
an existing session (a new process opening the receiver's data dir) and the cost of a no-op call; the anchor,
before and after: a plain HTTP round trip to Synapse.
"""

import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

from helpers import ENV, Inbox, config, run, sms_code, t, wait_verified

ROUNDS = int(ENV.get("TINCAN_BENCH_ROUNDS", "50"))
SENDER, RECEIVER = "+442079460401", "+442079460402"
RECEIVER_KEY = bytes([0x52] * 32)


def sign_up(number, data_dir, key):
    client = run(t.open(config(key, data_dir)))
    run(client.register(number))
    run(client.verify(sms_code(number)))
    return client


def summary(name, ms):
    ms = sorted(ms)
    def q(f):
        return ms[min(len(ms) - 1, int(len(ms) * f))]

    print(
        f"bench {name}: {len(ms)} rounds, min {ms[0]:.1f} ms, p25 {q(0.25):.1f} ms, median "
        f"{statistics.median(ms):.1f} ms, p75 {q(0.75):.1f} ms, p95 {q(0.95):.1f} ms, max {ms[-1]:.1f} ms",
        flush=True,
    )


def cold_start(data_dir):
    """A new process opens the existing session (the receiver's data dir, its sync stopped): the time to import
    the bindings (loading the library) and the time from `open` to signed in, in ms."""
    code = (
        "import time; started = time.monotonic()\n"
        "from helpers import config, run, t\n"
        "imported = time.monotonic()\n"
        f"c = run(t.open(config(bytes([0x52] * 32), {data_dir!r})))\n"
        "assert run(c.user_id())\n"
        "print((imported - started) * 1000, (time.monotonic() - imported) * 1000)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    if out.returncode != 0:
        print(f"bench NOTE: the cold-start process exited with {out.returncode}: {out.stderr[-3000:]}", flush=True)
    imported, opened = out.stdout.strip().splitlines()[-1].split()
    return float(imported), float(opened)


def anchor(rounds=30):
    """The machine's pace in the same run: a plain HTTP round trip to Synapse (GET /_matrix/client/versions)."""
    url = ENV["TINCAN_FFI_HS_URL"].rstrip("/") + "/_matrix/client/versions"
    ms = []
    for _ in range(rounds):
        started = time.perf_counter()
        with urllib.request.urlopen(url) as r:
            r.read()
        ms.append((time.perf_counter() - started) * 1000)
    summary("anchor: HTTP GET to Synapse /versions", ms)


def main():
    anchor()
    sender = sign_up(SENDER, tempfile.mkdtemp(prefix="tincan-bench-s-"), os.urandom(32))
    receiver_dir = tempfile.mkdtemp(prefix="tincan-bench-r-")
    receiver = sign_up(RECEIVER, receiver_dir, RECEIVER_KEY)
    wait_verified(sender, RECEIVER)
    inbox = Inbox()
    handle = run(receiver.start_sync(inbox))

    started = time.perf_counter()
    run(sender.send_to_number(RECEIVER, "bench first", False))
    inbox.wait_for("bench first")
    print(f"bench first message (DM created, key shared): {(time.perf_counter() - started) * 1000:.1f} ms", flush=True)

    to_callback, call, stored = [], [], []
    for i in range(ROUNDS):
        body = f"bench {i}"
        started = time.perf_counter()
        wall = time.time()
        run(sender.send_to_number(RECEIVER, body, False))
        returned = time.perf_counter()
        m = inbox.wait_for(body)
        arrived = time.perf_counter()
        stored.append(m.timestamp_ms - wall * 1000)
        assert m.encrypted, m
        call.append((returned - started) * 1000)
        to_callback.append((arrived - started) * 1000)
    summary("send_to_number returns", call)
    summary("send_to_number → event stored (the homeserver's origin_server_ts, same clock)", stored)
    summary("send_to_number → on_message", to_callback)
    print("bench send_to_number → on_message, in order (ms): " + " ".join(f"{x:.0f}" for x in to_callback), flush=True)
    handle.cancel()
    del receiver, handle

    starts = [cold_start(receiver_dir) for _ in range(int(ENV.get("TINCAN_BENCH_COLD_STARTS", "10")))]
    summary("cold start, new process: import the bindings (load the library)", [i for i, _ in starts])
    summary("cold start, new process: open to signed in", [o for _, o in starts])

    n = 100_000
    started = time.perf_counter()
    for _ in range(n):
        t.noop()
    print(f"bench no-op exported function: {(time.perf_counter() - started) / n * 1e9:.0f} ns per call over {n}")
    anchor()


if __name__ == "__main__":
    main()
