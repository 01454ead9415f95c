"""The client core through its generated Python bindings, on the real chain (Synapse, tincan-ext, the directory):
two numbers sign up, find each other verified through the directory, exchange an encrypted message through a
listener; typed errors for a bad code, a tampered directory answer, a key mismatch and an unreachable number;
an app restart (a new process on the same data dir and key) keeps the session. Runs in file order (`-x`):
later tests use the accounts the first one made.
"""

import asyncio
import gc
import os
import queue
import subprocess
import sys
import tempfile
import time

import pytest

import tincan_ffi as t

A_NUM = "+442079460301"
B_NUM = "+442079460302"
# The provider points this number at B's account with a key that is not B's.
WRONG_KEY_NUM = "+442079460303"
# Only a SIP route in the directory.
SIP_NUM = "+442079460304"
NOBODY = "+442079460399"
OTHER_KEY = "WGZmZmZmZmZmZmZmZmZmZmZmZmZmZmZmZmZmZmZmZmY"

# Shared between the tests, in order.
S = {}


def run(coro):
    return asyncio.run(coro)


def new_dir():
    return tempfile.mkdtemp(prefix="tincan-ffi-py-")


async def sign_up(chain, data_dir, key, number):
    client = await t.open(chain.config(t, data_dir, key))
    req = await client.register(number)
    assert req.sid and req.expires_in_secs > 0
    signed = await client.verify(chain.code(number))
    return client, signed


async def wait_verified(client, number, timeout=30.0):
    """The extension's writes reach the directory's DNS asynchronously: poll until the key shows."""
    deadline = time.monotonic() + timeout
    while True:
        contact = await client.lookup(number)
        if isinstance(contact.key_status, t.KeyStatus.VERIFIED):
            return contact
        if time.monotonic() > deadline:
            raise AssertionError(f"{number} not verified after {timeout}s: {contact}")
        await asyncio.sleep(0.2)


def test_two_numbers_sign_up(chain):
    S["chain"] = chain
    S["a_dir"], S["b_dir"] = new_dir(), new_dir()
    S["a_key"], S["b_key"] = os.urandom(32), os.urandom(32)

    async def go():
        a, sa = await sign_up(chain, S["a_dir"], S["a_key"], A_NUM)
        b, sb = await sign_up(chain, S["b_dir"], S["b_key"], B_NUM)
        return a, sa, b, sb

    a, sa, b, sb = run(go())
    assert sa.new_account and sb.new_account
    assert sa.published_for == [A_NUM] and sb.published_for == [B_NUM]
    assert sa.master_key and sb.master_key
    assert run(a.user_id()) == sa.user_id
    assert run(a.number()) == A_NUM
    S.update(a=a, b=b, ua=sa.user_id, ub=sb.user_id, ka=sa.master_key, kb=sb.master_key)


def test_a_bad_code_is_a_typed_refusal():
    chain = S["chain"]

    async def go():
        c = await t.open(chain.config(t, new_dir(), os.urandom(32)))
        await c.register("+442079460310")
        chain.code("+442079460310")
        await c.verify("000000" if chain.code("+442079460310") != "000000" else "111111")

    with pytest.raises(t.ClientError.Refused) as e:
        run(go())
    assert e.value.code == "extension_refused"
    assert e.value.errcode.startswith("M_"), e.value.errcode


def test_invalid_input_is_typed():
    chain = S["chain"]
    with pytest.raises(t.ClientError.InvalidNumber) as e:
        run(S["a"].lookup("12"))
    assert e.value.code == "invalid_number"
    with pytest.raises(t.ClientError.InvalidArgument):
        run(t.open(chain.config(t, new_dir(), b"short")))


def test_contacts_see_each_other_verified_through_the_directory():
    a, b = S["a"], S["b"]
    seen = run(wait_verified(a, B_NUM))
    assert seen.user_id == S["ub"]
    assert seen.key_status == t.KeyStatus.VERIFIED(key=S["kb"])
    assert seen.route == t.Route.MATRIX(user_id=S["ub"], key=S["kb"], secure=True)
    seen = run(wait_verified(b, A_NUM))
    assert seen.key_status == t.KeyStatus.VERIFIED(key=S["ka"])


class Inbox(t.MessageListener):
    def __init__(self):
        self.q = queue.Queue()

    def on_message(self, message):
        self.q.put((time.monotonic(), message))

    def wait(self, pred, timeout=60.0):
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError("no matching message")
            at, m = self.q.get(timeout=left)
            if pred(m):
                return at, m


def test_send_to_number_arrives_encrypted_through_a_listener():
    a, b = S["a"], S["b"]
    inbox = Inbox()
    handle = run(b.start_sync(inbox))
    S["b_sync"], S["inbox"] = handle, inbox
    run(a.sync_once(0))
    started = time.monotonic()
    sent = run(a.send_to_number(B_NUM, "hi from python", False))
    at, got = inbox.wait(lambda m: m.body == "hi from python")
    assert sent.decision == t.Decision.MATRIX(user_id=S["ub"], warning=None)
    assert sent.key_status == t.KeyStatus.VERIFIED(key=S["kb"])
    assert got.encrypted
    assert got.sender == S["ua"]
    assert got.event_id == sent.event_id
    assert got.sender_number == A_NUM
    print(f"\nFIGURE send_to_number -> peer listener (first message, new DM): {(at - started) * 1000:.0f} ms")
    # A second message into the existing DM.
    started = time.monotonic()
    run(a.send_to_number(B_NUM, "second", False))
    at, _ = inbox.wait(lambda m: m.body == "second")
    print(f"FIGURE send_to_number -> peer listener (existing DM): {(at - started) * 1000:.0f} ms")
    assert not handle.is_finished()


class PushGateway:
    """A recording push gateway (the Push Gateway API's `/_matrix/push/v1/notify`), as the app's would be."""

    def __init__(self):
        import http.server
        import json
        import threading

        self.q = queue.Queue()
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                outer.q.put((self.path, body))
                out = b'{"rejected": []}'
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(out)))
                self.end_headers()
                self.wfile.write(out)

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/_matrix/push/v1/notify"

    def wait(self, pred, timeout=60.0):
        deadline = time.monotonic() + timeout
        while True:
            path, body = self.q.get(timeout=max(0.01, deadline - time.monotonic()))
            if pred(body):
                return path, body


def test_push_names_the_event_and_the_notification_path_decrypts_it():
    a, b = S["a"], S["b"]
    gw = PushGateway()
    run(b.register_pusher(gw.url, "org.tincan.test", "pushkey-b", "B's phone", "en"))
    sent = run(a.send_to_number(B_NUM, "pushed text", False))
    path, body = gw.wait(lambda b: b.get("notification", {}).get("event_id") == sent.event_id)
    assert path == "/_matrix/push/v1/notify"
    n = body["notification"]
    assert n["room_id"] == sent.room_id
    assert n["devices"][0]["pushkey"] == "pushkey-b" and n["devices"][0]["app_id"] == "org.tincan.test"
    # event_id_only: no content reaches the gateway.
    assert "content" not in n and "pushed text" not in str(body)
    # The notification extension's path: a client on B's data dir fetches and decrypts that one event.
    got = run(b.decrypt_notification(n["room_id"], n["event_id"]))
    assert got is not None and got.body == "pushed text" and got.encrypted and got.sender == S["ua"]
    gw.server.shutdown()


def test_a_key_mismatch_refuses_and_force_warns():
    chain, a = S["chain"], S["a"]
    chain.put_number(WRONG_KEY_NUM, [("matrix", "matrix:u/" + S["ub"].lstrip("@"))], key=OTHER_KEY)

    async def refused():
        deadline = time.monotonic() + 30
        while True:
            try:
                await a.send_to_number(WRONG_KEY_NUM, "secret", False)
            except t.ClientError.NotReachable:
                # The record has not reached DNS yet.
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.2)

    with pytest.raises(t.ClientError.KeyMismatch) as e:
        run(refused())
    assert e.value.code == "key_mismatch"
    assert e.value.user_id == S["ub"]
    assert e.value.directory_key == OTHER_KEY
    assert e.value.homeserver_key == S["kb"]
    sent = run(a.send_to_number(WRONG_KEY_NUM, "forced", True))
    assert isinstance(sent.decision, t.Decision.MATRIX)
    assert "does not match" in sent.decision.warning


def test_a_tampered_directory_answer_is_untrusted():
    chain, a = S["chain"], S["a"]
    chain.put_number(chain.tampered, [("matrix", "matrix:u/" + S["ua"].lstrip("@"))], key=S["ka"])
    with pytest.raises(t.ClientError.Untrusted) as e:
        run(a.lookup(chain.tampered))
    assert e.value.code == "dnssec_validation_failed"
    with pytest.raises(t.ClientError.Untrusted):
        run(a.send_to_number(chain.tampered, "never", False))


def test_unreachable_numbers_are_named_with_the_reason():
    chain, a = S["chain"], S["a"]
    with pytest.raises(t.ClientError.NotReachable) as e:
        run(a.send_to_number(NOBODY, "hello", False))
    assert e.value.code == "not_reachable" and e.value.number == NOBODY
    assert "no bridge" in str(e.value)
    chain.put_number(SIP_NUM, [("sip", f"sip:{SIP_NUM}@sip.test")])
    deadline = time.monotonic() + 30
    while True:
        contact = run(a.lookup(SIP_NUM))
        if isinstance(contact.route, t.Route.SIP) or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert contact.route == t.Route.SIP(uris=[f"sip:{SIP_NUM}@sip.test"], secure=True)
    with pytest.raises(t.ClientError.NotReachable) as e:
        run(a.route_to_number(SIP_NUM, t.Intent.CALL, False))
    assert "SIP" in str(e.value)


RESTART = r"""
import asyncio, sys, time, json
import tincan_ffi as t
import conftest
started = time.monotonic()
chain = conftest.Chain()
c = asyncio.run(t.open(chain.config(t, sys.argv[1], bytes.fromhex(sys.argv[2]))))
opened = time.monotonic()
contact = asyncio.run(c.lookup(sys.argv[3]))
print(json.dumps({"user_id": asyncio.run(c.user_id()), "number": asyncio.run(c.number()),
                  "verified": isinstance(contact.key_status, t.KeyStatus.VERIFIED),
                  "open_ms": (opened - started) * 1000}))
"""


def test_an_app_restart_keeps_the_session():
    import json

    S["b_sync"].cancel()
    # The first process lets go of A's data dir before another opens it.
    S.pop("a")
    gc.collect()
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([os.environ.get("PYTHONPATH", ""), os.path.dirname(__file__)]))
    out = subprocess.run(
        [sys.executable, "-c", RESTART, S["a_dir"], S["a_key"].hex(), B_NUM],
        env=env, capture_output=True, text=True, timeout=120,
    )
    assert out.returncode == 0, out.stderr
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert got["user_id"] == S["ua"] and got["number"] == A_NUM and got["verified"], got
    print(f"\nFIGURE cold start to signed in (existing session, new process): {got['open_ms']:.0f} ms")
    # The wrong key: a typed storage error, nothing opened.
    out = subprocess.run(
        [sys.executable, "-c", RESTART, S["a_dir"], os.urandom(32).hex(), B_NUM],
        env=env, capture_output=True, text=True, timeout=120,
    )
    assert out.returncode != 0 and "ClientError.Storage" in out.stderr, out.stderr


def test_binding_call_overhead():
    n = 100_000
    started = time.perf_counter()
    for _ in range(n):
        t.noop()
    per_call = (time.perf_counter() - started) / n
    print(f"\nFIGURE no-op exported function: {per_call * 1e9:.0f} ns per call over {n} calls")
    assert per_call < 1e-3
