"""The app restarted: a new process opens the data dir bindings_smoke.py signed up in, through the bindings.

Run by the Rust test `bindings_on_the_real_chain` (tests/it/real_chain.rs) after bindings_smoke.py ended and after
A answered P while no P process ran (Synapse pushed that event's id to the test's push gateway). Standard library
only, like bindings_smoke.py (whose helpers it uses).

A wrong store key is a typed error and changes nothing; the right one opens P's session: no sign-up, the same
account, number and cross-signing key, A still verified. The pushed event (room and event id from the gateway)
decrypts to A's text; a contact whose key contradicts the directory is a typed error; a message to A goes out
encrypted (the Rust side's listener checks it). The last line of stdout is JSON (the event sent).
"""

import asyncio
import json
import sys
import time

import tincan_ffi as t
from bindings_smoke import ENV, config, expect_error, wait_verified


async def wait_mismatch(client, number, timeout=30.0):
    """The provider's record reaches the directory's DNS asynchronously: poll until the key shows a mismatch."""
    deadline = time.monotonic() + timeout
    while True:
        contact = await client.lookup(number)
        if isinstance(contact.key_status, t.KeyStatus.MISMATCH):
            return contact
        if time.monotonic() > deadline:
            raise AssertionError(f"{number}: no key mismatch after {timeout}s: {contact}")
        await asyncio.sleep(0.2)


def main():
    a_num, a_user, a_key = ENV["TINCAN_FFI_A_NUM"], ENV["TINCAN_FFI_A_USER"], ENV["TINCAN_FFI_A_KEY"]
    p_num, p_user, p_key = ENV["TINCAN_FFI_P_NUM"], ENV["TINCAN_FFI_P_USER"], ENV["TINCAN_FFI_P_KEY"]
    data_dir, store_key = ENV["TINCAN_FFI_P_DIR"], bytes.fromhex(ENV["TINCAN_FFI_P_STORE_KEY"])

    # The wrong key: a typed error, nothing opened.
    wrong = bytes(b ^ 0xFF for b in store_key)
    e = expect_error(t.ClientError.Storage, t.open(config(wrong, data_dir)))
    assert e.code == "store_key", e
    assert "does not decrypt" in str(e), str(e)

    # The right key: still signed in as P (no register/verify in this process).
    started = time.monotonic()
    p = asyncio.run(t.open(config(store_key, data_dir)))
    assert asyncio.run(p.user_id()) == p_user
    took = (time.monotonic() - started) * 1000
    print(f"FIGURE python: open an existing session (cold start to signed in): {took:.0f} ms")
    assert asyncio.run(p.number()) == p_num
    assert asyncio.run(p.own_master_key()) == p_key

    # A is still the verified contact (the same key, not a change).
    contact = asyncio.run(wait_verified(p, a_num))
    assert contact.user_id == a_user and contact.key_status == t.KeyStatus.VERIFIED(key=a_key), contact

    # The push named an event: it decrypts to A's text.
    room_id, event_id = ENV["TINCAN_FFI_PUSH_ROOM"], ENV["TINCAN_FFI_PUSH_EVENT"]
    started = time.monotonic()
    m = asyncio.run(p.decrypt_notification(room_id, event_id))
    print(f"FIGURE python: decrypt_notification after restart: {(time.monotonic() - started) * 1000:.0f} ms")
    assert m is not None, "the pushed event did not decrypt"
    assert (m.room_id, m.event_id, m.sender, m.body) == (room_id, event_id, a_user, "hi from rust"), m
    assert m.encrypted and m.sender_number == a_num, m

    # A number whose directory key is not its account's: a mismatch, and sending is refused with a typed error.
    wrong_num = ENV["TINCAN_FFI_WRONG_KEY_NUM"]
    contact = asyncio.run(wait_mismatch(p, wrong_num))
    assert contact.user_id == a_user, contact
    assert contact.key_status == t.KeyStatus.MISMATCH(directory_key=p_key, homeserver_key=a_key), contact
    e = expect_error(t.ClientError.KeyMismatch, p.send_to_number(wrong_num, "never", False))
    assert e.code == "key_mismatch", e
    assert (e.user_id, e.directory_key, e.homeserver_key) == (a_user, p_key, a_key), e

    # And P writes to A again, end-to-end encrypted (the Rust side's listener checks it arrived).
    sent = asyncio.run(p.send_to_number(a_num, "hi after restart", False))
    assert sent.decision == t.Decision.MATRIX(user_id=a_user, warning=None), sent
    assert sent.key_status == t.KeyStatus.VERIFIED(key=a_key), sent

    print(json.dumps({"event_id": sent.event_id}))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
