"""The client core through its generated Python bindings, on the real chain (Synapse, tincan-ext, the directory).

Run by the Rust test `bindings_on_the_real_chain` (tests/it/real_chain.rs), which started the chain, signed up
number A through the Rust side of the same API and passes everything in TINCAN_FFI_* variables. Standard library
only: any Python 3.8+ with the generated `tincan_ffi.py` and the library on PYTHONPATH.

This process signs up its own number P in the data dir TINCAN_FFI_P_DIR (key TINCAN_FFI_P_STORE_KEY, hex),
registers an HTTP pusher with the test's recording push gateway, finds A verified through the directory, gets the
route to A (Matrix, no warning) and sends A a message along it; it gets typed exceptions for an unparsable number,
an unreachable number, a tampered directory answer, a wrong sign-up code and an unusable store key. The last line
of stdout is JSON for the Rust side (P's user id and master key, the event it sent); FIGURE lines are measurements. The
client is closed when the process ends; restart.py opens the data dir again.
"""

import asyncio
import json
import os
import sys
import tempfile
import time

import tincan_ffi as t

ENV = os.environ


def expect_error(kind, coro):
    """Awaits `coro`, which must raise the ClientError variant `kind`; returns the exception."""
    try:
        asyncio.run(coro)
    except kind as e:
        assert isinstance(e, t.ClientError), type(e).__mro__
        return e
    except Exception as e:  # noqa: BLE001 - report what came instead
        raise AssertionError(f"expected {kind.__qualname__}, got {type(e).__qualname__}: {e}") from e
    raise AssertionError(f"expected {kind.__qualname__}, got no error")


def sms_code(number, timeout=30.0):
    """The code of the newest SMS the extension's dev sink holds for `number` (a JSON line per SMS)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with open(ENV["TINCAN_FFI_SMS_FILE"]) as f:
                msgs = [json.loads(line) for line in f if line.strip()]
        except FileNotFoundError:
            msgs = []
        for m in reversed(msgs):
            if m.get("to") == number:
                words = "".join(c if c.isdigit() else " " for c in m.get("text", "")).split()
                codes = [w for w in words if len(w) == 6]
                if codes:
                    return codes[0]
        if time.monotonic() > deadline:
            raise AssertionError(f"no SMS code to {number}")
        time.sleep(0.05)


def config(store_key, data_dir=None):
    directory = t.DirectoryConfig(
        servers=[ENV["TINCAN_FFI_DNS"]],
        apex=ENV["TINCAN_FFI_APEX"],
        trust_anchor=ENV["TINCAN_FFI_ANCHOR"],
        allow_insecure=False,
        log_url=ENV["TINCAN_FFI_LOG_URL"],
        log_key=ENV["TINCAN_FFI_LOG_KEY"],
    )
    return t.ClientConfig(
        data_dir=data_dir or tempfile.mkdtemp(prefix="tincan-ffi-py-"),
        store_key=store_key,
        ext_url=ENV["TINCAN_FFI_EXT_URL"],
        directory=directory,
        device_name="python test",
    )


async def wait_verified(client, number, timeout=30.0):
    """The extension's writes reach the directory's DNS asynchronously: poll until the key shows verified."""
    deadline = time.monotonic() + timeout
    while True:
        contact = await client.lookup(number)
        if isinstance(contact.key_status, t.KeyStatus.VERIFIED):
            return contact
        if time.monotonic() > deadline:
            raise AssertionError(f"{number} not verified after {timeout}s: {contact}")
        await asyncio.sleep(0.2)


def main():
    a_num, a_user, a_key = ENV["TINCAN_FFI_A_NUM"], ENV["TINCAN_FFI_A_USER"], ENV["TINCAN_FFI_A_KEY"]
    p_num, nobody, tampered = ENV["TINCAN_FFI_P_NUM"], ENV["TINCAN_FFI_NOBODY"], ENV["TINCAN_FFI_TAMPERED"]

    # Sign up P: register, the code from the SMS, verify.
    started = time.monotonic()
    p = asyncio.run(t.open(config(bytes.fromhex(ENV["TINCAN_FFI_P_STORE_KEY"]), ENV["TINCAN_FFI_P_DIR"])))
    req = asyncio.run(p.register(p_num))
    assert req.sid and req.expires_in_secs > 0, req
    signed = asyncio.run(p.verify(sms_code(p_num)))
    assert signed.new_account and signed.published_for == [p_num], signed
    assert signed.master_key and signed.user_id.startswith("@"), signed
    assert asyncio.run(p.user_id()) == signed.user_id
    assert asyncio.run(p.number()) == p_num
    print(f"FIGURE python: open + register + verify (new account): {(time.monotonic() - started) * 1000:.0f} ms")

    # The homeserver pushes the ids of P's notifying events to the app's push gateway.
    push_url, app_id, pushkey = ENV["TINCAN_FFI_PUSH_URL"], ENV["TINCAN_FFI_APP_ID"], ENV["TINCAN_FFI_PUSHKEY"]
    asyncio.run(p.register_pusher(push_url, app_id, pushkey, "python test", "en"))

    # A, as the directory and A's homeserver say: verified.
    contact = asyncio.run(wait_verified(p, a_num))
    assert contact.number == a_num, contact
    assert contact.user_id == a_user, contact
    assert contact.route == t.Route.MATRIX(user_id=a_user, key=a_key, secure=True), contact.route
    assert contact.key_status == t.KeyStatus.VERIFIED(key=a_key), contact.key_status

    # The one routing decision: Matrix to A without a warning, for texts and calls.
    for intent in (t.Intent.TEXT, t.Intent.CALL):
        decision = asyncio.run(p.route_to_number(a_num, intent, False))
        assert decision == t.Decision.MATRIX(user_id=a_user, warning=None), (intent, decision)

    # ... and the text goes that way, end-to-end encrypted (the Rust side checks A received it).
    sent = asyncio.run(p.send_to_number(a_num, "hi from python", False))
    assert sent.decision == t.Decision.MATRIX(user_id=a_user, warning=None), sent
    assert sent.user_id == a_user and sent.key_status == t.KeyStatus.VERIFIED(key=a_key), sent

    # A number nobody has: a validated denial, and no route for a call (no bridge answers for it).
    contact = asyncio.run(p.lookup(nobody))
    assert contact.route == t.Route.NOT_LISTED(secure=True) and contact.user_id is None, contact
    e = expect_error(t.ClientError.NotReachable, p.route_to_number(nobody, t.Intent.CALL, False))
    assert e.code == "not_reachable" and e.number == nobody, e
    assert "no bridge" in str(e), str(e)

    # Typed errors.
    e = expect_error(t.ClientError.InvalidNumber, p.lookup("12"))
    assert e.code == "invalid_number", e
    e = expect_error(t.ClientError.Untrusted, p.lookup(tampered))
    assert e.code == "dnssec_validation_failed", e
    e = expect_error(t.ClientError.Untrusted, p.send_to_number(tampered, "never", False))
    assert e.code == "dnssec_validation_failed", e
    e = expect_error(t.ClientError.InvalidArgument, t.open(config(b"short")))
    assert "32" in str(e), str(e)
    other = asyncio.run(t.open(config(os.urandom(32))))
    e = expect_error(t.ClientError.NotSignedIn, other.verify("123456"))
    assert e.code == "no_pending_registration", e

    # What one call through the bindings costs.
    n = 100_000
    started = time.perf_counter()
    for _ in range(n):
        t.noop()
    per_call = (time.perf_counter() - started) / n
    print(f"FIGURE python: no-op exported function: {per_call * 1e9:.0f} ns per call over {n} calls")
    assert t.core_version()

    out = {"user_id": signed.user_id, "master_key": signed.master_key, "event_id": sent.event_id}
    print(json.dumps(out))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
