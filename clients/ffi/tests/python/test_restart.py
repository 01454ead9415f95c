"""The app restarted: a new process on the data dirs test_app.py signed P and Q up in (see helpers.py).

Run after test_app.py's process ended and after the Rust side's A answered P while no P process ran (Synapse
pushed that event's id to the test's push gateway). P's session is in its keychain (a SessionStore, see
helpers.Keychain). A wrong store key is a typed error and changes nothing; without the keychain the data dir
alone signs nothing in; a keychain that refuses is a typed error; the right key and the keychain open P's
session: no sign-up, the same device, account, number and cross-signing key, and a message received before the
restart still decrypts. P's listener receives what arrived while the app was closed and what Q sends now; A is
still verified; the pushed event decrypts to A's text; a contact whose key contradicts the directory is a typed
error; a message to A goes out encrypted (the Rust side's listener checks it: the event id in TINCAN_FFI_OUT).
"""

import time

import pytest

from helpers import (
    ENV,
    Inbox,
    config,
    expect_error,
    figure,
    keychain,
    run,
    store_key,
    t,
    wait_status,
    wait_verified,
    write_out,
)

A_NUM, A_USER, A_KEY = ENV["TINCAN_FFI_A_NUM"], ENV["TINCAN_FFI_A_USER"], ENV["TINCAN_FFI_A_KEY"]
P_NUM, P_USER, P_KEY = ENV["TINCAN_FFI_P_NUM"], ENV["TINCAN_FFI_P_USER"], ENV["TINCAN_FFI_P_KEY"]
P_DEVICE = ENV["TINCAN_FFI_P_DEVICE"]
Q_NUM, Q_USER = ENV["TINCAN_FFI_Q_NUM"], ENV["TINCAN_FFI_Q_USER"]


def test_a_wrong_store_key_opens_nothing():
    wrong = bytes(b ^ 0xFF for b in store_key("P"))
    e = expect_error(t.ClientError.Storage, t.open(config(wrong, ENV["TINCAN_FFI_P_DIR"], keychain("P"))))
    assert e.code == "store_key", e
    assert "does not decrypt" in str(e), str(e)


def test_without_its_keychain_p_is_not_signed_in():
    """The session is the keychain's: the data dir alone resumes nothing."""
    client = run(t.open(config(store_key("P"), ENV["TINCAN_FFI_P_DIR"])))
    assert run(client.user_id()) is None and run(client.device_id()) is None


class LockedKeychain(t.SessionStore):
    """A keychain that refuses (the phone is locked)."""

    def load(self):
        raise t.SessionStoreError.Failed(detail="the keychain is locked")

    def save(self, session):
        raise t.SessionStoreError.Failed(detail="the keychain is locked")

    def clear(self):
        raise t.SessionStoreError.Failed(detail="the keychain is locked")


def test_a_failing_keychain_is_a_typed_error():
    e = expect_error(t.ClientError.Storage, t.open(config(store_key("P"), ENV["TINCAN_FFI_P_DIR"], LockedKeychain())))
    assert e.code == "session_store" and "the keychain is locked" in str(e), e


@pytest.fixture(scope="module")
def p():
    """P's app, reopened with the right key and its keychain (after the tests above: pytest runs the file in
    order)."""
    started = time.monotonic()
    client = run(t.open(config(store_key("P"), ENV["TINCAN_FFI_P_DIR"], keychain("P"))))
    assert run(client.user_id()) == P_USER
    figure(f"open an existing session (cold start to signed in): {(time.monotonic() - started) * 1000:.0f} ms")
    return client


@pytest.fixture(scope="module")
def q():
    client = run(t.open(config(store_key("Q"), ENV["TINCAN_FFI_Q_DIR"])))
    assert run(client.user_id()) == Q_USER
    return client


def test_still_signed_in(p):
    """The same device, resumed from the keychain's session: no new sign-in."""
    assert run(p.device_id()) == P_DEVICE
    assert run(p.user_id()) == P_USER
    assert run(p.number()) == P_NUM
    assert run(p.own_master_key()) == P_KEY


def test_the_listener_receives_after_restart(p, q):
    inbox = Inbox()
    handle = run(p.start_sync(inbox))
    try:
        # What A sent while the app was closed arrives with the first sync (first thing after the restart: a
        # sync without a listener, such as decrypt_notification's when it waits for a room key, would take it).
        m = inbox.wait_for("hi from rust")
        assert (m.room_id, m.event_id, m.sender) == (ENV["TINCAN_FFI_PUSH_ROOM"], ENV["TINCAN_FFI_PUSH_EVENT"], A_USER)
        assert m.encrypted, m
        # And what Q (restarted too) sends now.
        sent = run(q.send_to_number(P_NUM, "hi again from q", False))
        assert sent.decision == t.Decision.MATRIX(user_id=P_USER, warning=None), sent
        m = inbox.wait_for("hi again from q")
        assert (m.event_id, m.sender, m.sender_number) == (sent.event_id, Q_USER, Q_NUM), m
        assert m.encrypted, m
        assert not handle.is_finished()
    finally:
        handle.cancel()


def test_a_message_received_before_the_restart_still_decrypts(p):
    """Q's first message, which P's listener got in the first run: its room key is in P's crypto store."""
    m = run(p.decrypt_notification(ENV["TINCAN_FFI_Q_ROOM"], ENV["TINCAN_FFI_Q_EVENT"]))
    assert m is not None, "the message from before the restart did not decrypt"
    assert (m.sender, m.body, m.encrypted) == (Q_USER, "hi from q", True), m


def test_a_verified_contact_stays_verified(p):
    contact = wait_verified(p, A_NUM)
    assert contact.user_id == A_USER and contact.key_status == t.KeyStatus.VERIFIED(key=A_KEY), contact


def test_the_pushed_event_decrypts(p):
    room_id, event_id = ENV["TINCAN_FFI_PUSH_ROOM"], ENV["TINCAN_FFI_PUSH_EVENT"]
    started = time.monotonic()
    m = run(p.decrypt_notification(room_id, event_id))
    figure(f"decrypt_notification after restart: {(time.monotonic() - started) * 1000:.0f} ms")
    assert m is not None, "the pushed event did not decrypt"
    assert (m.room_id, m.event_id, m.sender, m.body) == (room_id, event_id, A_USER, "hi from rust"), m
    assert m.encrypted and m.sender_number == A_NUM, m


def test_a_key_mismatch_is_refused(p):
    """The provider published this number for A's account with P's key: the directory contradicts the homeserver."""
    number = ENV["TINCAN_FFI_WRONG_KEY_NUM"]
    contact = run(wait_status(p, number, t.KeyStatus.MISMATCH))
    assert contact.user_id == A_USER, contact
    assert contact.key_status == t.KeyStatus.MISMATCH(directory_key=P_KEY, homeserver_key=A_KEY), contact
    e = expect_error(t.ClientError.KeyMismatch, p.send_to_number(number, "never", False))
    assert e.code == "key_mismatch", e
    assert (e.user_id, e.directory_key, e.homeserver_key) == (A_USER, P_KEY, A_KEY), e


def test_a_message_to_the_rust_side_after_restart(p):
    sent = run(p.send_to_number(A_NUM, "hi after restart", False))
    assert sent.decision == t.Decision.MATRIX(user_id=A_USER, warning=None), sent
    assert sent.key_status == t.KeyStatus.VERIFIED(key=A_KEY), sent
    write_out(event_id=sent.event_id)
