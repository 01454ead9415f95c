"""What the bindings' pytest suite shares: the chain's settings, a client config, typed-error and polling helpers,
and a MessageListener that hands messages to the test.

The suite runs against the real chain (Synapse, tincan-ext, the directory behind a DNS man-in-the-middle, its
transparency log) that the Rust test `bindings_on_the_real_chain` (tests/it/real_chain.rs) starts; it passes
everything in TINCAN_FFI_* variables and runs pytest twice, two processes of one app on the same data dirs
(test_app.py, then test_restart.py). Run on its own (no TINCAN_FFI_EXT_URL) the suite is skipped: run it with
`dev/test -p tincan-ffi`. Needs pytest and the generated `tincan_ffi.py` with its library on PYTHONPATH.
"""

import asyncio
import json
import os
import queue
import tempfile
import time

import pytest

if "TINCAN_FFI_EXT_URL" not in os.environ:
    pytest.skip("needs the chain the Rust test starts: dev/test -p tincan-ffi", allow_module_level=True)

import tincan_ffi as t  # noqa: E402 - only once the chain is there

ENV = os.environ


def run(coro):
    """Awaits one call of the bindings (their async methods run on the library's own runtime)."""
    return asyncio.run(coro)


def expect_error(kind, coro):
    """Awaits `coro`, which must raise the ClientError variant `kind`; returns the exception."""
    with pytest.raises(t.ClientError) as info:
        run(coro)
    assert isinstance(info.value, kind), f"expected {kind.__qualname__}, got {type(info.value).__qualname__}: {info.value}"
    return info.value


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


def config(store_key, data_dir=None, session_store=None):
    """A client config for the chain: the DNSSEC-validated directory with its transparency log pinned."""
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
        session_store=session_store,
    )


class Keychain(t.SessionStore):
    """The app's keychain for its session (a SessionStore): a JSON file outside the data dir, which outlives the
    app's processes like a platform keychain. What the core stores is saved as given (the token sealed)."""

    FIELDS = ("homeserver_url", "user_id", "device_id", "number", "access_token_sealed", "key_published")

    def __init__(self, path):
        self.path = path

    def load(self):
        try:
            with open(self.path) as f:
                return t.StoredSession(**json.load(f))
        except FileNotFoundError:
            return None

    def save(self, session):
        with open(self.path, "w") as f:
            json.dump({k: getattr(session, k) for k in self.FIELDS}, f)

    def clear(self):
        try:
            os.remove(self.path)
        except FileNotFoundError:
            pass

    def stored(self):
        """What the keychain holds (JSON), or None."""
        try:
            with open(self.path) as f:
                return json.load(f)
        except FileNotFoundError:
            return None


def keychain(name):
    """The keychain of the app `name` (P): TINCAN_FFI_<NAME>_KEYCHAIN, a path outside its data dir."""
    return Keychain(ENV[f"TINCAN_FFI_{name}_KEYCHAIN"])


def store_key(name):
    """The data dir key of the app `name` (P, Q): hex in TINCAN_FFI_<NAME>_STORE_KEY (the keystore's)."""
    return bytes.fromhex(ENV[f"TINCAN_FFI_{name}_STORE_KEY"])


async def wait_status(client, number, status, timeout=30.0):
    """Polls `number` until its key status is the KeyStatus variant `status` (the extension's and the provider's
    writes reach the directory's DNS asynchronously)."""
    deadline = time.monotonic() + timeout
    while True:
        contact = await client.lookup(number)
        if isinstance(contact.key_status, status):
            return contact
        if time.monotonic() > deadline:
            raise AssertionError(f"{number}: not {status.__qualname__} after {timeout}s: {contact}")
        await asyncio.sleep(0.2)


def wait_verified(client, number):
    return run(wait_status(client, number, t.KeyStatus.VERIFIED))


class Inbox(t.MessageListener):
    """A MessageListener (called on a library thread) that queues what arrives for the test."""

    def __init__(self):
        self.messages = queue.Queue()

    def on_message(self, message):
        self.messages.put(message)

    def wait_for(self, body, timeout=60.0):
        """The first message with `body` within `timeout` seconds (others are skipped)."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"the listener got no {body!r} within {timeout}s")
            try:
                m = self.messages.get(timeout=left)
            except queue.Empty:
                continue
            if m.body == body:
                return m


def write_out(**values):
    """Adds `values` to the JSON file TINCAN_FFI_OUT, which the Rust side reads after pytest ends."""
    path = ENV["TINCAN_FFI_OUT"]
    try:
        with open(path) as f:
            out = json.load(f)
    except FileNotFoundError:
        out = {}
    out.update(values)
    with open(path, "w") as f:
        json.dump(out, f)


def figure(text):
    """A measurement, printed for `--no-capture` (pytest runs with -s)."""
    print(f"FIGURE python: {text}", flush=True)
