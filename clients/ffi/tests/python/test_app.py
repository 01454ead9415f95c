"""The app's first run, through the generated Python bindings on the real chain (see helpers.py).

Two numbers sign up in this process, P and Q, each in its own data dir (kept by the Rust side for
test_restart.py); P keeps its session in the app's keychain (a SessionStore), Q in its data dir. P registers a pusher with the test's recording push gateway, finds the Rust side's number A
verified through the directory, routes and sends to A (the Rust side's listener checks it arrived); Q finds P
verified and writes to P, whose listener receives it decrypted. Bad input is a typed ClientError with the core's
stable code: a wrong sign-up code, an unparsable or unreachable number, a tampered directory answer, an unusable
store key, verifying with nothing pending, closing an account whose number never moved. For the Rust side: P's user id and key and the event sent to A
(TINCAN_FFI_OUT).
"""

import os
import time

import pytest

import json

from helpers import (
    ENV,
    Inbox,
    config,
    expect_error,
    figure,
    keychain,
    run,
    sms_code,
    store_key,
    t,
    wait_verified,
    write_out,
)

A_NUM, A_USER, A_KEY = ENV["TINCAN_FFI_A_NUM"], ENV["TINCAN_FFI_A_USER"], ENV["TINCAN_FFI_A_KEY"]
P_NUM, Q_NUM = ENV["TINCAN_FFI_P_NUM"], ENV["TINCAN_FFI_Q_NUM"]


def sign_up(name, number, session_store=None):
    """Opens the app `name`'s data dir and signs `number` up: register, the SMS code, verify."""
    started = time.monotonic()
    client = run(t.open(config(store_key(name), ENV[f"TINCAN_FFI_{name}_DIR"], session_store)))
    assert run(client.user_id()) is None
    req = run(client.register(number))
    assert req.sid and req.expires_in_secs > 0, req
    signed = run(client.verify(sms_code(number)))
    figure(f"open + register + verify (new account, {name}): {(time.monotonic() - started) * 1000:.0f} ms")
    return client, signed


@pytest.fixture(scope="module")
def p():
    """P keeps its session in the app's keychain; Q in its data dir."""
    return sign_up("P", P_NUM, keychain("P"))


@pytest.fixture(scope="module")
def q():
    return sign_up("Q", Q_NUM)


@pytest.fixture(scope="module")
def p_inbox(p):
    """P's sync, its messages in an Inbox; stopped after the module."""
    inbox = Inbox()
    handle = run(p[0].start_sync(inbox))
    yield inbox
    handle.cancel()


def test_two_numbers_sign_up(p, q):
    for (client, signed), number in ((p, P_NUM), (q, Q_NUM)):
        assert signed.new_account and signed.published_for == [number], signed
        assert signed.master_key and signed.user_id.startswith("@"), signed
        assert run(client.user_id()) == signed.user_id
        assert run(client.number()) == number
        assert run(client.own_master_key()) == signed.master_key
    assert p[1].user_id != q[1].user_id and p[1].master_key != q[1].master_key
    write_out(p_user=p[1].user_id, p_key=p[1].master_key, q_user=q[1].user_id, q_key=q[1].master_key)


def test_p_keeps_its_session_in_the_apps_keychain(p):
    """What P's next run resumes from: the keychain holds the session (the token sealed), the data dir none."""
    client, signed = p
    stored = keychain("P").stored()
    assert stored is not None, "nothing reached the keychain"
    assert (stored["user_id"], stored["device_id"], stored["number"]) == (signed.user_id, signed.device_id, P_NUM)
    assert stored["key_published"] is True, stored
    assert stored["access_token_sealed"] and "syt_" not in stored["access_token_sealed"], "the token is sealed"
    assert run(client.device_id()) == signed.device_id
    with open(os.path.join(ENV["TINCAN_FFI_P_DIR"], "state.json")) as f:
        assert json.load(f).get("session") is None, "the data dir holds no session"
    write_out(p_device=signed.device_id)


def test_a_pusher_registers(p):
    """The homeserver will push the ids of P's notifying events to the app's push gateway (the Rust side checks)."""
    push_url, app_id, pushkey = ENV["TINCAN_FFI_PUSH_URL"], ENV["TINCAN_FFI_APP_ID"], ENV["TINCAN_FFI_PUSHKEY"]
    run(p[0].register_pusher(push_url, app_id, pushkey, "python test", "en"))


def test_a_contact_is_verified_through_the_directory(p, q):
    contact = wait_verified(p[0], A_NUM)
    assert contact.number == A_NUM and contact.user_id == A_USER, contact
    assert contact.route == t.Route.MATRIX(user_id=A_USER, key=A_KEY, secure=True), contact.route
    assert contact.key_status == t.KeyStatus.VERIFIED(key=A_KEY), contact.key_status
    # Numbers signed up through the bindings are verified for others too.
    contact = wait_verified(q[0], P_NUM)
    assert contact.user_id == p[1].user_id and contact.key_status == t.KeyStatus.VERIFIED(key=p[1].master_key)
    contact = wait_verified(p[0], Q_NUM)
    assert contact.user_id == q[1].user_id and contact.key_status == t.KeyStatus.VERIFIED(key=q[1].master_key)


def test_the_route_to_a_verified_contact_is_matrix(p):
    for intent in (t.Intent.TEXT, t.Intent.CALL):
        decision = run(p[0].route_to_number(A_NUM, intent, False))
        assert decision == t.Decision.MATRIX(user_id=A_USER, warning=None), (intent, decision)


def test_a_message_reaches_the_listener_encrypted(p, q, p_inbox):
    sent = run(q[0].send_to_number(P_NUM, "hi from q", False))
    assert sent.decision == t.Decision.MATRIX(user_id=p[1].user_id, warning=None), sent
    got = p_inbox.wait_for("hi from q")
    assert (got.event_id, got.room_id, got.sender) == (sent.event_id, sent.room_id, q[1].user_id), got
    assert got.encrypted and got.sender_number == Q_NUM, got
    # Decrypted again after the restart (test_restart.py).
    write_out(q_room=sent.room_id, q_event=sent.event_id)


def test_a_message_to_the_rust_side(p):
    """Along the one routing decision, end-to-end encrypted (the Rust side's listener checks it arrived)."""
    sent = run(p[0].send_to_number(A_NUM, "hi from python", False))
    assert sent.decision == t.Decision.MATRIX(user_id=A_USER, warning=None), sent
    assert sent.user_id == A_USER and sent.key_status == t.KeyStatus.VERIFIED(key=A_KEY), sent
    write_out(event_id=sent.event_id)


def test_a_wrong_sign_up_code_is_refused():
    number = ENV["TINCAN_FFI_R_NUM"]
    client = run(t.open(config(os.urandom(32))))
    run(client.register(number))
    wrong = "111111" if sms_code(number) == "000000" else "000000"
    e = expect_error(t.ClientError.Refused, client.verify(wrong))
    assert e.code == "extension_refused" and e.errcode.startswith("M_"), e
    assert run(client.user_id()) is None


def test_closing_an_account_whose_number_never_moved_is_refused(p):
    """Only an account the number left by a completed port can be closed; P keeps its session."""
    e = expect_error(t.ClientError.NotMovedAway, p[0].close_account())
    assert e.code == "not_moved_away", e
    assert run(p[0].user_id()) == p[1].user_id


def test_nobody_is_not_reachable(p):
    nobody = ENV["TINCAN_FFI_NOBODY"]
    contact = run(p[0].lookup(nobody))
    assert contact.route == t.Route.NOT_LISTED(secure=True) and contact.user_id is None, contact
    e = expect_error(t.ClientError.NotReachable, p[0].route_to_number(nobody, t.Intent.CALL, False))
    assert e.code == "not_reachable" and e.number == nobody, e
    assert "no bridge" in str(e), str(e)


def test_a_tampered_directory_answer_is_untrusted(p):
    tampered = ENV["TINCAN_FFI_TAMPERED"]
    e = expect_error(t.ClientError.Untrusted, p[0].lookup(tampered))
    assert e.code == "dnssec_validation_failed", e
    e = expect_error(t.ClientError.Untrusted, p[0].send_to_number(tampered, "never", False))
    assert e.code == "dnssec_validation_failed", e


def test_bad_input_is_typed(p):
    e = expect_error(t.ClientError.InvalidNumber, p[0].lookup("12"))
    assert e.code == "invalid_number", e
    e = expect_error(t.ClientError.InvalidArgument, t.open(config(b"short")))
    assert e.code == "invalid_argument" and "32" in str(e), e
    other = run(t.open(config(os.urandom(32))))
    e = expect_error(t.ClientError.NotSignedIn, other.verify("123456"))
    assert e.code == "no_pending_registration", e


def test_the_cost_of_a_call_through_the_bindings():
    n = 100_000
    started = time.perf_counter()
    for _ in range(n):
        t.noop()
    per_call = (time.perf_counter() - started) / n
    figure(f"no-op exported function: {per_call * 1e9:.0f} ns per call over {n} calls")
    assert t.core_version()
