//! The one routing decision on the real chain: a number with no record goes to the provider's SMS bridge (found
//! through the homeserver's `m.protocol.pstn` lookup, in an encrypted DM with its ghost: end-to-bridge); once the
//! number signs up for Tincan, the next message to it goes over Matrix, end-to-end encrypted, with no step by the
//! sender. A Matrix record is never sent to the bridge. Without a directory: the lookup by the protocol's declared
//! field, the encrypted DM (an unencrypted one is never reused), and what the bridge says became of the text
//! (delivered, failed with its reason, or no word within the wait); no bridge for the protocol is "not reachable".

use crate::chain::{Chain, wait_for_key};
use crate::fake_bridge::{FakeSmsBridge, Reaction};
use crate::harness::{User, wait_for};
use matrix_sdk::ruma::OwnedRoomId;
use matrix_sdk::ruma::api::client::room::create_room;
use std::time::Duration;
use tincan_client_core::{ClientError, Decision, Delivery, Intent, KeyStatus, RouteKind, Unreachable};
use tincan_testkit::Synapse;

const A_NUM: &str = "+442079460401";
/// Not on Tincan at first; signs up halfway through.
const C_NUM: &str = "+442079460402";
const TAMPERED_NUM: &str = "+442079460405";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_number_is_reached_by_sms_until_it_joins_then_over_matrix() -> anyhow::Result<()> {
    let bridge = FakeSmsBridge::start("hs.test").await?;
    let registration = bridge.registration();
    let Some(chain) = Chain::start_with(TAMPERED_NUM, |b| b.appservice(registration)).await? else { return Ok(()) };
    let ghost = bridge.register_ghost(&chain.hs.url(), C_NUM).await?;
    assert_eq!(ghost, format!("@sms_{C_NUM}:hs.test"));
    let (da, dc) = (tempfile::tempdir()?, tempfile::tempdir()?);
    let (a, _) = chain.sign_up(da.path(), A_NUM).await?;

    // Not in the directory: SMS through the bridge, which receives the text (it could not read an encrypted one).
    let (decision, _) = a.route_to_number(C_NUM, Intent::Text, false).await?;
    assert_eq!(decision, Decision::Sms { ghost: ghost.clone() });
    // A call has no way yet (no SIP bridge here): not reachable, with the reason.
    match a.route_to_number(C_NUM, Intent::Call, false).await {
        Err(ClientError::Unreachable { reason, .. }) => assert_eq!(reason, tincan_client_core::Unreachable::NoBridge),
        other => panic!("expected Unreachable, got {other:?}"),
    }
    let sent = a.send_to_number(C_NUM, "by sms", false).await?;
    assert_eq!(sent.decision, Decision::Sms { ghost: ghost.clone() });
    assert_eq!(sent.sent.user_id, ghost);
    assert_eq!(sent.route, RouteKind::Sms);
    // The bridge gets it in the encrypted DM: ciphertext (its ghost's device decrypts it), never the clear text.
    let a_id = a.user_id().expect("signed in").to_string();
    bridge.wait_for_event(&sent.sent.room_id, "m.room.encrypted", &a_id).await?;
    assert!(!bridge.has_text("by sms"));
    // The same conversation is reused for the next text.
    let again = a.send_to_number(C_NUM, "by sms again", false).await?;
    assert_eq!(again.sent.room_id, sent.sent.room_id);

    // C joins Tincan with that number; A's next message goes over Matrix, encrypted, without A doing anything.
    let (c, sc) = chain.sign_up(dc.path(), C_NUM).await?;
    wait_for_key(&a, C_NUM).await?;
    let incoming = c.messages();
    let c_sync = c.spawn_sync()?;
    let sent = a.send_to_number(C_NUM, "over matrix", false).await?;
    assert_eq!(sent.decision, Decision::Matrix { user_id: sc.user_id.clone(), warning: None });
    assert!(matches!(sent.sent.key_status, Some(KeyStatus::Verified { .. })), "{sent:?}");
    let got = wait_for(incoming, |m| m.body == "over matrix").await?;
    assert!(got.encrypted);
    c_sync.abort();
    // And not to the bridge: a later text to another SMS number reaches it, the Matrix one never did.
    bridge.register_ghost(&chain.hs.url(), "+442079460403").await?;
    let later = a.send_to_number("+442079460403", "marker", false).await?;
    assert!(matches!(later.decision, Decision::Sms { .. }));
    bridge.wait_for_event(&later.sent.room_id, "m.room.encrypted", &a_id).await?;
    assert!(bridge.events_in(&sent.sent.room_id).is_empty(), "the bridge saw the Matrix conversation");
    Ok(())
}

const DELIVERED: &str = "+447400123501";
const FAILED: &str = "+447400123502";
const SILENT: &str = "+447400123503";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_directory_a_text_goes_to_the_sms_ghost_encrypted_and_reports_what_the_bridge_says()
-> anyhow::Result<()> {
    // The bridge declares its own user field: the client asks the homeserver which one and looks up by it.
    let bridge = FakeSmsBridge::start_with_field("hs.test", "msisdn").await?;
    let hs = Synapse::builder().appservice(bridge.registration()).start().await?;
    let ghost = bridge.register_ghost(&hs.url(), DELIVERED).await?;
    bridge.register_ghost(&hs.url(), FAILED).await?;
    bridge.register_ghost(&hs.url(), SILENT).await?;
    bridge.react(DELIVERED, Reaction::Receipt);
    bridge.react(FAILED, Reaction::Notice(format!("⚠ Not delivered to {FAILED}: undeliverable")));
    let alice = User::new(&hs, "alice").await?;
    let a = &alice.client;
    let matrix = a.matrix().expect("signed in");

    // An unencrypted DM with the ghost (what an earlier version made): never texted again.
    let mut request = create_room::v3::Request::new();
    request.invite = vec![ghost.as_str().try_into()?];
    request.is_direct = true;
    let plain = matrix.create_room(request).await?.room_id().to_owned();
    a.sync_once(Duration::ZERO).await?;

    let (decision, contact) = a.route_to_number(DELIVERED, Intent::Text, false).await?;
    assert_eq!(decision, Decision::Sms { ghost: ghost.clone() });
    assert!(contact.is_none(), "no directory configured");
    let sent = a.send_to_number_waiting(DELIVERED, "hello by sms", false, Duration::from_secs(60)).await?;
    assert_eq!((sent.route, &sent.delivery), (RouteKind::Sms, &Delivery::Delivered));
    assert_eq!(sent.sent.user_id, ghost);
    assert_ne!(sent.sent.room_id, plain.as_str(), "the unencrypted DM was reused");
    let room_id: OwnedRoomId = sent.sent.room_id.as_str().try_into()?;
    let room = matrix.get_room(&room_id).expect("the DM");
    assert!(room.latest_encryption_state().await?.is_encrypted());
    bridge.wait_for_event(&sent.sent.room_id, "m.room.encrypted", &alice.account.user_id).await?;
    assert!(bridge.events_in(plain.as_str()).iter().all(|e| e["type"] != "m.room.message"), "a text went in clear");
    let json = serde_json::to_value(&sent)?;
    assert_eq!((json["route"].as_str(), json["status"].as_str()), (Some("sms"), Some("delivered")), "{json}");
    // The next text reuses the encrypted DM; not waiting, its status is "sent".
    let again = a.send_to_number(DELIVERED, "again", false).await?;
    assert_eq!((again.sent.room_id.as_str(), &again.delivery), (sent.sent.room_id.as_str(), &Delivery::Sent));

    // The bridge's ⚠ notice after the text: failed, with its words.
    let failed = a.send_to_number_waiting(FAILED, "are you there?", false, Duration::from_secs(60)).await?;
    let reason = format!("Not delivered to {FAILED}: undeliverable");
    assert_eq!(failed.delivery, Delivery::Failed { reason: reason.clone() });
    let json = serde_json::to_value(&failed)?;
    assert_eq!((json["status"].as_str(), json["reason"].as_str()), (Some("failed"), Some(reason.as_str())));

    // No word within the wait: sent.
    let started = std::time::Instant::now();
    let silent = a.send_to_number_waiting(SILENT, "anyone?", false, Duration::from_secs(2)).await?;
    assert_eq!(silent.delivery, Delivery::Sent);
    assert!(started.elapsed() < Duration::from_secs(30), "the wait is bounded: {:?}", started.elapsed());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_bridge_for_the_protocol_a_number_is_not_reachable_and_nothing_is_sent() -> anyhow::Result<()> {
    let hs = Synapse::start().await?;
    let alice = User::new(&hs, "alice").await?;
    match alice.client.send_to_number(DELIVERED, "hello", false).await {
        Err(ClientError::Unreachable { reason, route, .. }) => {
            assert_eq!((reason, route), (Unreachable::NoBridge, None));
        }
        other => panic!("expected Unreachable, got {other:?}"),
    }
    match alice.client.start_chat(DELIVERED, false).await {
        Err(e) => assert_eq!(e.code(), "not_reachable"),
        Ok(chat) => panic!("a chat without a route: {chat:?}"),
    }
    alice.client.sync_once(Duration::ZERO).await?;
    assert!(alice.client.matrix().expect("signed in").joined_rooms().is_empty(), "a room was made");
    Ok(())
}
