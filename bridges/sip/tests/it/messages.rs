//! SIP MESSAGE ↔ Matrix text with sipp as the phone and Synapse as the homeserver.

use crate::harness::{ALICE_NUMBER, DOMAIN, Harness, wait_for};
use serde_json::{Value, json};
use std::time::Duration;
use tincan_common::Secret;
use tincan_testkit::node::JsClient;
use tincan_testkit::ports::free_addr;
use tincan_testkit::sip::{Scenario, finished};

const PHONE: &str = "+15551234567";

pub(crate) fn message_uac(content_type: &str, body: &str, to: &str, expect: u16) -> String {
    format!(
        r#"<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="message">
  <send retrans="500"><![CDATA[
MESSAGE sip:{to}@[remote_ip]:[remote_port];user=phone SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
From: "Bob" <sip:{PHONE}@[local_ip]:[local_port];user=phone>;tag=[call_number]
To: <sip:{to}@{DOMAIN}>
Call-ID: [call_id]
CSeq: 1 MESSAGE
Max-Forwards: 70
Content-Type: {content_type}
Content-Length: [len]

{body}]]></send>
  <recv response="{expect}"/>
</scenario>
"#
    )
}

/// A phone that takes one MESSAGE from Alice's number, checks its From and body, and answers `code`.
pub(crate) fn message_uas(body_regexp: &str, code: u16) -> String {
    let from = format!(r"sip:\+442079460001@{}", DOMAIN.replace('.', "\\."));
    message_uas_from(&from, r"sip:\+15551234567@", body_regexp, code)
}

/// A SIP user agent that takes one MESSAGE, checks its From, To (regexps of their URIs) and body, and answers
/// `code`.
pub(crate) fn message_uas_from(from: &str, to: &str, body_regexp: &str, code: u16) -> String {
    format!(
        r#"<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="message uas">
  <recv request="MESSAGE">
    <action>
      <ereg regexp="{body_regexp}" search_in="body" check_it="true" assign_to="b"/>
      <ereg regexp="{from}" search_in="hdr" header="From:" check_it="true" assign_to="f"/>
      <ereg regexp="{to}" search_in="hdr" header="To:" check_it="true" assign_to="t"/>
    </action>
  </recv>
  <Reference variables="b,f,t"/>
  <send><![CDATA[
SIP/2.0 {code} Answer
[last_Via:]
[last_From:]
[last_To:];tag=[pid]SIPpTag01[call_number]
[last_Call-ID:]
[last_CSeq:]
Content-Length: 0

]]></send>
</scenario>
"#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_phone_texts_a_tincan_number_and_gets_the_reply() {
    let phone = free_addr();
    let h = Harness::start(Some(phone)).await;
    // The phone texts Alice's number, plain text then a CPIM-wrapped message.
    let plain =
        Scenario::new("plain", &message_uac("text/plain;charset=UTF-8", "hello from the phone ☎", ALICE_NUMBER, 202))
            .unwrap();
    plain.run(plain.command(h.sip, free_addr(), 1)).await.unwrap();
    let cpim_body = "From: Bob <im:bob@example.com>\r\nTo: <im:alice@example.com>\r\n\r\n\
                     Content-Type: text/plain;charset=utf-8\r\n\r\nand a CPIM one";
    let cpim = Scenario::new("cpim", &message_uac("message/cpim", cpim_body, ALICE_NUMBER, 202)).unwrap();
    cpim.run(cpim.command(h.sip, free_addr(), 1)).await.unwrap();

    // Alice is invited by the phone's ghost and sees both, in order.
    let room = h.join_invite().await;
    let ghost = format!("@sip_{PHONE}:hs.test");
    let seen = wait_for("both messages in the portal", Duration::from_secs(30), || async {
        let m = h.messages(&room).await;
        (m.len() >= 2).then_some(m)
    })
    .await;
    assert_eq!(seen[0], (ghost.clone(), "m.text".into(), "hello from the phone ☎".into()));
    assert_eq!(seen[1], (ghost.clone(), "m.text".into(), "and a CPIM one".into()));

    // Alice replies; the phone gets a MESSAGE from her number with her text.
    let uas = Scenario::new("reply", &message_uas("hello from alice", 200)).unwrap();
    let guard = uas.serve(uas.uas_command(phone), phone, "phone").await.unwrap();
    let event = h.say(&room, "hello from alice").await;
    assert!(finished(guard, Duration::from_secs(60)).await, "the phone got Alice's reply");
    // The phone's 200 is the message's status: delivered to the ghost; nothing reported as undelivered.
    let status = h.status_of(&room, &event).await;
    assert_eq!(
        status,
        json!({"network": "sip", "m.relates_to": {"rel_type": "m.reference", "event_id": event},
               "status": "SUCCESS", "delivered_to_users": [ghost]})
    );
    assert!(h.messages(&room).await.iter().all(|(_, t, _)| t != "m.notice"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_reply_is_reported_and_bad_messages_are_refused() {
    let phone = free_addr();
    let h = Harness::start(Some(phone)).await;
    // A number nobody holds here: 404. HTML: 415. No body: 400.
    for (ct, body, to, expect) in [
        ("text/plain", "x", "+442079460099", 404),
        ("text/html", "<b>x</b>", ALICE_NUMBER, 415),
        ("text/plain", "", ALICE_NUMBER, 400),
    ] {
        let s = Scenario::new("refused", &message_uac(ct, body, to, expect)).unwrap();
        s.run(s.command(h.sip, free_addr(), 1)).await.unwrap_or_else(|e| panic!("{ct} to {to}: {e}"));
    }
    let s = Scenario::new("ok", &message_uac("text/plain", "hi", ALICE_NUMBER, 202)).unwrap();
    s.run(s.command(h.sip, free_addr(), 1)).await.unwrap();
    let room = h.join_invite().await;

    // The phone refuses Alice's reply with 404: she sees that it was not delivered, and why.
    let uas = Scenario::new("refuse", &message_uas("are you there", 404)).unwrap();
    let guard = uas.serve(uas.uas_command(phone), phone, "phone").await.unwrap();
    let event = h.say(&room, "are you there").await;
    assert!(finished(guard, Duration::from_secs(60)).await);
    let notice = wait_for("the failure notice", Duration::from_secs(30), || async {
        h.messages(&room).await.into_iter().find(|(_, t, _)| t == "m.notice")
    })
    .await;
    assert_eq!(notice.2, "⚠ Not delivered: rejected by the network: SIP 404 Answer");
    assert_eq!(
        h.status_of(&room, &event).await,
        json!({"network": "sip", "m.relates_to": {"rel_type": "m.reference", "event_id": event},
               "status": "FAIL_PERMANENT", "reason": "m.foreign_network_error", "message": "SIP 404 Answer"})
    );
}

/// End-to-bridge encryption: Alice, on matrix-js-sdk (its Rust crypto, under node), writes to the phone's ghost
/// in an encrypted DM; the phone (sipp) gets her plain text as a SIP MESSAGE; the phone's answer reaches her
/// client encrypted by the ghost's device and decrypts; the homeserver holds only ciphertext.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_encrypted_dm_reaches_the_phone_and_the_phones_answer_comes_back_encrypted() {
    let phone = free_addr();
    let h = Harness::start_with(Some(phone), |c, dir| {
        c.encryption.enabled = true;
        c.encryption.store_dir = dir.join("crypto").display().to_string();
        c.encryption.store_passphrase = Secret::new("test fixture passphrase");
    })
    .await;
    let ghost = format!("@sip_{PHONE}:hs.test");
    let room = h.encrypted_dm(&ghost).await;

    let uas = Scenario::new("encrypted", &message_uas("hello from alice, encrypted", 200)).unwrap();
    let guard = uas.serve(uas.uas_command(phone), phone, "phone").await.unwrap();
    let a = &h.alice_account;
    let mut js = JsClient::dm(&json!({
        "base_url": h.synapse.url(), "user_id": a.user_id, "access_token": a.access_token,
        "device_id": a.device_id, "room_id": room, "send": "hello from alice, encrypted",
        "expect_sender": ghost, "expect_body": "the phone answers", "timeout_ms": 180_000,
    }))
    .unwrap();
    js.expect("sent", Duration::from_secs(120)).await.unwrap();
    assert!(finished(guard, Duration::from_secs(90)).await, "the phone got Alice's decrypted text");

    let answer = Scenario::new("answer", &message_uac("text/plain", "the phone answers", ALICE_NUMBER, 202)).unwrap();
    answer.run(answer.command(h.sip, free_addr(), 1)).await.unwrap();
    let got = js.expect("received", Duration::from_secs(90)).await.unwrap();
    assert_eq!((got["body"].as_str(), got["encrypted"].as_bool()), (Some("the phone answers"), Some(true)), "{got}");

    let events = h.server_copy(&room).await;
    let messages: Vec<&Value> = events.iter().filter(|e| e.get("state_key").is_none()).collect();
    assert!(messages.len() >= 2, "both messages are in the room: {events:?}");
    for e in messages {
        assert_eq!(e["type"], "m.room.encrypted", "a message event in the clear: {e}");
        for plain in ["hello from alice", "the phone answers"] {
            assert!(!e.to_string().contains(plain), "plaintext {plain:?} on the server: {e}");
        }
    }
    js.quit().unwrap();
}
