//! SMS in an encrypted DM (end-to-bridge encryption of the core): matrix-js-sdk, with its Rust crypto under
//! node, texts a phone number's ghost in an encrypted room; the SMSC peer gets the plain text as SMS; the reply
//! SMS reaches the client encrypted by the ghost's device and decrypts; the homeserver holds only ciphertext.

use crate::bridge::{Client, enc, world_configured};
use crate::harness::wait_for;
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;
use tincan_common::Secret;
use tincan_sms::billing::Free;
use tincan_sms::protocol::gsm7;
use tincan_testkit::node::JsClient;

/// The room's timeline events as the homeserver keeps them.
async fn server_copy(client: &Client, room: &str) -> Vec<Value> {
    let path = format!("/_matrix/client/v3/rooms/{}/messages?dir=f&limit=1000", enc(room));
    client.call(reqwest::Method::GET, &path, None).await["chunk"].as_array().unwrap().clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_encrypted_dm_goes_out_as_sms_and_the_reply_sms_comes_back_encrypted() {
    let w = world_configured(Arc::new(Free), |c, dir| {
        c.encryption.enabled = true;
        c.encryption.store_dir = dir.join("crypto").display().to_string();
        c.encryption.store_passphrase = Secret::new("test fixture passphrase");
    })
    .await;
    let carol = w.synapse.register_user("carol", false).await.unwrap();
    let carol_c = Client { http: reqwest::Client::new(), base: w.synapse.url(), token: carol.access_token.clone() };
    let ghost = carol_c.ghost_of("+447400123456").await;
    let room =
        tincan_testkit::matrix::Client::new(w.synapse.url(), carol.access_token.clone()).encrypted_dm(&ghost).await;

    let mut js = JsClient::dm(&json!({
        "base_url": w.synapse.url(), "user_id": carol.user_id, "access_token": carol.access_token,
        "device_id": carol.device_id, "room_id": room, "send": "Hello {world} €5, encrypted",
        "expect_sender": ghost, "expect_body": "Hi Carol, by SMS", "timeout_ms": 180_000,
    }))
    .unwrap();
    let sent = js.expect("sent", Duration::from_secs(120)).await.unwrap();

    // The SMSC gets the plaintext, GSM 7-bit, from Carol's number (the first of the pool).
    let submit = w.smsc.wait_submits(1, Duration::from_secs(90)).await.remove(0);
    assert_eq!(
        (submit["source_addr"].as_str(), submit["destination_addr"].as_str()),
        (Some("447400000001"), Some("447400123456"))
    );
    assert_eq!(
        hex::decode(submit["sm"].as_str().unwrap()).unwrap(),
        gsm7::encode("Hello {world} €5, encrypted").unwrap()
    );

    // The reply SMS reaches Carol's client through Megolm, from the ghost's device.
    w.smsc
        .control(json!({"cmd": "deliver", "source": "447400123456", "dest": "447400000001",
                        "hex": hex::encode(gsm7::encode("Hi Carol, by SMS").unwrap())}))
        .await
        .unwrap();
    let got = js.expect("received", Duration::from_secs(90)).await.unwrap();
    assert_eq!((got["body"].as_str(), got["encrypted"].as_bool()), (Some("Hi Carol, by SMS"), Some(true)), "{got}");

    // The SMSC's delivery receipt marks Carol's message delivered (the ghost's read receipt).
    let event = sent["event_id"].as_str().unwrap().to_owned();
    wait_for("the delivery receipt in Matrix", Duration::from_secs(60), || async {
        carol_c.has_receipt(&room, &event, &ghost).await.then_some(())
    })
    .await;

    // The homeserver's copy: both messages, as ciphertext only.
    let events = server_copy(&carol_c, &room).await;
    let messages: Vec<&Value> = events.iter().filter(|e| e.get("state_key").is_none()).collect();
    assert!(messages.len() >= 2, "both messages are in the room: {events:?}");
    for e in messages {
        assert_eq!(e["type"], "m.room.encrypted", "a message event in the clear: {e}");
        let text = e.to_string();
        for plain in ["Hello {world}", "by SMS"] {
            assert!(!text.contains(plain), "plaintext {plain:?} on the server: {e}");
        }
    }
    js.quit().unwrap();
    w.sms.stop().await;
    w.bridge.stop().await;
}
