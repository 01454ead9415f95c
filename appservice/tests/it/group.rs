//! Group portals against a real Synapse: a remote chat with several participants is one encrypted room with a
//! ghost per participant; matrix-js-sdk (under node) reads each ghost's message as that ghost's and its own
//! message reaches the network decrypted; the room's ghosts follow the chat's participants (one added joins,
//! one gone leaves, the portal's host handed on) and the receiver adding a participant from Matrix asks the
//! network. The server holds only ciphertext for message events.

use crate::e2be::{encrypted_world, next_message, only_ciphertext_on_the_server, reply};
use crate::loopback::{Loopback, Seen};
use crate::synapse::{Client, enc, wait_for};
use serde_json::json;
use std::collections::BTreeSet;
use std::time::Duration;
use tincan_appservice::connector::ChatInfo;
use tincan_appservice::{Bridge, BridgeError, BridgeHandle, PortalKey, RemoteChatId, RemoteEvent, RemoteEventKind};
use tincan_testkit::node::JsClient;

const A: &str = "+4915100000001";
const B: &str = "+4915100000002";
const C: &str = "+4915100000003";
const D: &str = "+4915100000004";

pub(crate) fn ghost(n: &str) -> String {
    format!("@loop_{n}:hs.test")
}

pub(crate) async fn chat_info(
    handle: &BridgeHandle,
    key: &PortalKey,
    from: &str,
    name: Option<&str>,
    members: &[&str],
) {
    let info = ChatInfo { name: name.map(Into::into), members: members.iter().map(|m| (*m).into()).collect() };
    let event = RemoteEvent { portal: key.clone(), sender: from.into(), kind: RemoteEventKind::ChatInfo(info) };
    handle.queue_remote_event(event).await.unwrap();
}

/// The ghosts joined to `room`, as `client` sees them, once they are `want`.
pub(crate) async fn joined_ghosts(client: &Client, room: &str, want: &[&str]) {
    let want: BTreeSet<String> = want.iter().map(|n| ghost(n)).collect();
    let path = format!("/_matrix/client/v3/rooms/{}/joined_members", enc(room));
    wait_for(&format!("the room's ghosts to be {want:?}"), Duration::from_secs(60), || {
        let (client, path, want) = (client.clone(), path.clone(), want.clone());
        async move {
            let joined = client.call(reqwest::Method::GET, &path, None).await;
            let ghosts: BTreeSet<String> = joined["joined"]
                .as_object()
                .map(|m| m.keys().filter(|u| u.starts_with("@loop_")).cloned().collect())
                .unwrap_or_default();
            (ghosts == want).then_some(())
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_chat_is_one_encrypted_room_with_a_ghost_per_participant_kept_in_step() {
    let dir = tempfile::tempdir().unwrap();
    let (synapse, config) = encrypted_world(dir.path()).await;
    let (conn, mut rx) = Loopback::new(&["@bob:hs.test"]);
    let bridge = Bridge::builder(config).start(conn).await.unwrap();
    let handle = bridge.handle().clone();
    let bob = synapse.register_user("bob", false).await.unwrap();
    let bob_c = Client::new(synapse.url(), bob.access_token.clone());
    let key = PortalKey { receiver: bob.user_id.as_str().try_into().unwrap(), chat: RemoteChatId::new("group-1") };

    // A group without participants is refused when queued.
    let empty = RemoteEvent {
        portal: key.clone(),
        sender: A.into(),
        kind: RemoteEventKind::ChatInfo(ChatInfo { name: None, members: vec![] }),
    };
    assert!(matches!(handle.queue_remote_event(empty).await, Err(BridgeError::EmptyGroup)));

    // The chat starts with A and B: one room, named, encrypted, not a DM, both ghosts in it, bob invited.
    chat_info(&handle, &key, A, Some("Team"), &[A, B]).await;
    let store = handle.store().clone();
    let room = wait_for("the group portal's room", Duration::from_secs(60), || {
        let (store, key) = (store.clone(), key.clone());
        async move { store.portal(&key).await.unwrap().and_then(|p| p.room_id) }
    })
    .await;
    let mut js = JsClient::dm(&json!({
        "base_url": synapse.url(), "user_id": bob.user_id, "access_token": bob.access_token,
        "device_id": bob.device_id, "room_id": room, "expect_senders": [ghost(A), ghost(B)], "timeout_ms": 300_000,
    }))
    .unwrap();
    js.expect("ready", Duration::from_secs(180)).await.unwrap();
    joined_ghosts(&bob_c, room.as_str(), &[A, B]).await;
    let name = bob_c
        .call(
            reqwest::Method::GET,
            &format!("/_matrix/client/v3/rooms/{}/state/m.room.name/", enc(room.as_str())),
            None,
        )
        .await;
    assert_eq!(name["name"], "Team");
    let state =
        bob_c.call(reqwest::Method::GET, &format!("/_matrix/client/v3/rooms/{}/state", enc(room.as_str())), None).await;
    let create = state.as_array().unwrap().iter().find(|e| e["type"] == "m.room.create").unwrap();
    assert_eq!(create["sender"], ghost(A), "the first participant's ghost hosts the room");
    assert!(state.as_array().unwrap().iter().any(|e| e["type"] == "m.room.encryption"), "encrypted: {state}");

    // Each participant writes; bob reads each as that participant's ghost, decrypted.
    reply(&handle, &key, A, "g1", "hello from a").await;
    reply(&handle, &key, B, "g2", "hello from b").await;
    for (body, from) in [("hello from a", A), ("hello from b", B)] {
        let got = js.expect_body(body, Duration::from_secs(90)).await.unwrap();
        assert_eq!(got["sender"], ghost(from), "{got}");
        assert_eq!(got["encrypted"], true, "{got}");
    }
    // Bob writes: the network gets the plaintext, for the group's portal.
    js.send("hello group").unwrap();
    assert_eq!(next_message(&mut rx).await, (key.clone(), "hello group".to_owned()));

    // C joins the chat and A leaves it: C's ghost joins, A's leaves, B hosts the portal now.
    chat_info(&handle, &key, B, None, &[B, C]).await;
    joined_ghosts(&bob_c, room.as_str(), &[B, C]).await;
    let portal = store.portal(&key).await.unwrap().unwrap();
    assert_eq!(portal.other_user.as_str(), B, "the host's participant left: the next one hosts");
    reply(&handle, &key, C, "g3", "hello from c").await;
    let got = js.expect_body("hello from c", Duration::from_secs(90)).await.unwrap();
    assert_eq!((got["sender"].as_str(), got["encrypted"].as_bool()), (Some(ghost(C).as_str()), Some(true)), "{got}");
    // Bob's next message is decrypted by the new host's device (the room key went to the members' devices).
    js.send("after a left").unwrap();
    assert_eq!(next_message(&mut rx).await, (key.clone(), "after a left".to_owned()));

    // Bob adds D from Matrix: the network is asked, and D's ghost joins.
    let invite = json!({"user_id": ghost(D)});
    bob_c
        .call(reqwest::Method::POST, &format!("/_matrix/client/v3/rooms/{}/invite", enc(room.as_str())), Some(invite))
        .await;
    let seen = tokio::time::timeout(Duration::from_secs(60), async {
        loop {
            match rx.recv().await {
                Some(Seen::Invite(k, u)) => return (k, u),
                Some(_) => continue,
                None => panic!("the network went away"),
            }
        }
    })
    .await
    .expect("the network was asked about the invite");
    assert_eq!(seen, (key.clone(), D.into()));
    joined_ghosts(&bob_c, room.as_str(), &[B, C, D]).await;

    only_ciphertext_on_the_server(
        &bob_c,
        &room,
        &["hello from a", "hello from b", "hello from c", "hello group", "after a left"],
    )
    .await;
    js.quit().unwrap();
    bridge.stop().await;
}
