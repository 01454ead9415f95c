//! The whole bridge against a real Synapse: a user DMs a ghost, 1,000 messages each way in order, receipts,
//! portal creation from the network side, the homeserver's ping and third-party lookups through Synapse.

use crate::loopback::{self, AS_TOKEN, Loopback, Seen};
use futures::StreamExt;
use serde_json::{Value, json};
use std::time::{Duration, Instant};
use tincan_appservice::registration::{Tokens, registration_yaml};
use tincan_appservice::{Bridge, PortalKey, RemoteChatId, RemoteEvent, RemoteEventKind, RemoteMessageId, RemoteUserId};
use tincan_testkit::Synapse;

const N: usize = 1000;
const BOB: &str = "+4915112345678";

pub(crate) use tincan_testkit::matrix::{Client, enc, wait_for};

/// The bodies of the `m.room.message` events `sender` sent in `room`, in the homeserver's timeline order.
async fn timeline_bodies(client: &Client, room: &str, sender: &str) -> Vec<String> {
    let mut bodies = Vec::new();
    let mut from = String::new();
    loop {
        let page = client
            .call(
                reqwest::Method::GET,
                &format!("/_matrix/client/v3/rooms/{}/messages?dir=f&limit=500{from}", enc(room)),
                None,
            )
            .await;
        for ev in page["chunk"].as_array().unwrap() {
            if ev["type"] == "m.room.message" && ev["sender"] == json!(sender) {
                bodies.push(ev["content"]["body"].as_str().unwrap().to_owned());
            }
        }
        match page["end"].as_str() {
            Some(end) if !page["chunk"].as_array().unwrap().is_empty() => from = format!("&from={}", enc(end)),
            _ => break,
        }
    }
    bodies
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dm_a_ghost_and_bridge_a_thousand_messages_each_way() {
    let dir = tempfile::tempdir().unwrap();
    let db_url = format!("sqlite:{}", dir.path().join("bridge.db").display());
    let config = loopback::config("http://127.0.0.1:9", "hs.test", &db_url);
    let tokens = Tokens::from_config(&config).unwrap();
    let synapse = Synapse::builder().appservice(registration_yaml(&config, "loop_", &tokens)).start().await.unwrap();
    let mut config = config;
    config.homeserver.url = synapse.url();
    let (conn, mut rx) = Loopback::new(&["@alice:hs.test"]);
    let bridge = Bridge::builder(config).start(conn.clone()).await.unwrap();
    let handle = bridge.handle().clone();
    let store = handle.store().clone();
    let alice = synapse.register_user("alice", false).await.unwrap();
    let http = reqwest::Client::new();
    let alice_c = Client { http: http.clone(), base: synapse.url(), token: alice.access_token.clone() };
    let as_c = Client { http: http.clone(), base: synapse.url(), token: AS_TOKEN.into() };

    // The homeserver reaches the bridge (MSC2659 ping, through the AS API).
    let ping =
        as_c.call(reqwest::Method::POST, "/_matrix/client/v1/appservice/tincan-loopback/ping", Some(json!({}))).await;
    assert!(ping["duration_ms"].is_number(), "{ping}");

    // Third-party lookup through Synapse's client API.
    let users = alice_c
        .call(
            reqwest::Method::GET,
            "/_matrix/client/v3/thirdparty/user/m.protocol.pstn?m.id.phone=%2B49%20151%2012345678",
            None,
        )
        .await;
    let ghost = format!("@loop_{BOB}:hs.test");
    assert_eq!(users[0]["userid"], json!(ghost), "{users}");
    let protocols = alice_c.call(reqwest::Method::GET, "/_matrix/client/v3/thirdparty/protocols", None).await;
    assert!(protocols["m.protocol.pstn"]["user_fields"].is_array(), "{protocols}");

    // Alice DMs the ghost: it joins and the room becomes a portal.
    let room = alice_c
        .call(
            reqwest::Method::POST,
            "/_matrix/client/v3/createRoom",
            Some(json!({"invite": [ghost], "is_direct": true, "preset": "trusted_private_chat"})),
        )
        .await["room_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let room_id: ruma::OwnedRoomId = room.clone().try_into().unwrap();
    let portal = wait_for("the ghost to join", Duration::from_secs(30), || {
        let store = store.clone();
        let room_id = room_id.clone();
        async move { store.portal_by_room(&room_id).await.unwrap() }
    })
    .await;
    assert_eq!(portal.key.receiver.as_str(), "@alice:hs.test");
    assert_eq!(portal.other_user, RemoteUserId::new(BOB));

    // Matrix → network: 1,000 messages, complete and in the homeserver's timeline order. They are sent eight at
    // a time (one at a time took 158 s on a loaded CI machine), so the order to expect is the timeline's, read back.
    let started = Instant::now();
    futures::stream::iter(0..N)
        .for_each_concurrent(8, |i| {
            let (alice_c, room) = (&alice_c, &room);
            async move {
                alice_c
                    .call(
                        reqwest::Method::PUT,
                        &format!("/_matrix/client/v3/rooms/{}/send/m.room.message/t{i}", enc(room)),
                        Some(json!({"msgtype": "m.text", "body": format!("to network {i}")})),
                    )
                    .await;
            }
        })
        .await;
    let mut got = Vec::new();
    while got.len() < N {
        match tokio::time::timeout(Duration::from_secs(60), rx.recv()).await {
            Ok(Some(Seen::Message(key, m))) => {
                assert_eq!(key, portal.key);
                got.push(m.body);
            }
            Ok(other) => panic!("unexpected {other:?}"),
            Err(_) => panic!("only {} of {N} messages reached the network\n{}", got.len(), synapse.log_tail(30)),
        }
    }
    let expected = timeline_bodies(&alice_c, &room, "@alice:hs.test").await;
    assert_eq!(expected.len(), N);
    assert_eq!(got, expected);
    eprintln!("Matrix → network: {N} messages in {:?}", started.elapsed());

    // Network → Matrix: 1,000 replies from the ghost, complete and in order.
    let started = Instant::now();
    for i in 0..N {
        handle
            .queue_remote_event(RemoteEvent {
                portal: portal.key.clone(),
                sender: RemoteUserId::new(BOB),
                kind: RemoteEventKind::Message {
                    id: RemoteMessageId::new(format!("in-{i}")),
                    body: format!("from network {i}"),
                },
            })
            .await
            .unwrap();
    }
    let last = RemoteMessageId::new(format!("in-{}", N - 1));
    wait_for("1,000 replies", Duration::from_secs(180), || {
        let store = store.clone();
        let key = portal.key.clone();
        let last = last.clone();
        async move { store.message_by_remote(&key, &last).await.unwrap() }
    })
    .await;
    eprintln!("network → Matrix: {N} messages in {:?}", started.elapsed());
    let bodies = timeline_bodies(&alice_c, &room, &ghost).await;
    let expected: Vec<String> = (0..N).map(|i| format!("from network {i}")).collect();
    assert_eq!(bodies, expected);

    // Alice reads the last reply: the receipt (an ephemeral event) reaches the network.
    let last_event = store.message_by_remote(&portal.key, &last).await.unwrap().unwrap().event_id;
    alice_c
        .call(
            reqwest::Method::POST,
            &format!("/_matrix/client/v3/rooms/{}/receipt/m.read/{}", enc(&room), enc(last_event.as_str())),
            Some(json!({})),
        )
        .await;
    let receipt = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            match rx.recv().await {
                Some(Seen::Receipt(_, id)) => return id,
                Some(_) => continue,
                None => panic!("connector gone"),
            }
        }
    })
    .await
    .expect("the read receipt reached the network");
    assert_eq!(receipt, last);

    // A message from a new contact creates a portal room and invites Alice.
    let carol = PortalKey { receiver: portal.key.receiver.clone(), chat: RemoteChatId::new("+442079460018") };
    handle
        .queue_remote_event(RemoteEvent {
            portal: carol.clone(),
            sender: RemoteUserId::new("+442079460018"),
            kind: RemoteEventKind::Message { id: RemoteMessageId::new("c1"), body: "hi from carol".into() },
        })
        .await
        .unwrap();
    let carol_room = wait_for("the new portal", Duration::from_secs(30), || {
        let store = store.clone();
        let key = carol.clone();
        async move { store.portal(&key).await.unwrap().and_then(|p| p.room_id) }
    })
    .await;
    // The room exists before the message is sent into it: wait until the message is bridged too.
    wait_for("carol's message", Duration::from_secs(60), || {
        let store = store.clone();
        let key = carol.clone();
        async move { store.message_by_remote(&key, &RemoteMessageId::new("c1")).await.unwrap() }
    })
    .await;
    alice_c
        .call(reqwest::Method::POST, &format!("/_matrix/client/v3/join/{}", enc(carol_room.as_str())), Some(json!({})))
        .await;
    let page = alice_c
        .call(
            reqwest::Method::GET,
            &format!("/_matrix/client/v3/rooms/{}/messages?dir=b&limit=10", enc(carol_room.as_str())),
            None,
        )
        .await;
    assert!(page["chunk"].as_array().unwrap().iter().any(|e| e["content"]["body"] == "hi from carol"), "{page}");
    drop(bridge);
}

/// A real Synapse with the loopback bridge registered, a local user Alice, and a bridge config (state in a
/// temporary SQLite file) whose `homeserver.url` is Synapse.
pub(crate) struct World {
    pub(crate) synapse: Synapse,
    pub(crate) config: tincan_appservice::AppserviceConfig,
    pub(crate) alice: Client,
    _dir: tempfile::TempDir,
}

pub(crate) async fn world() -> World {
    let dir = tempfile::tempdir().unwrap();
    let db_url = format!("sqlite:{}", dir.path().join("bridge.db").display());
    let mut config = loopback::config("http://127.0.0.1:9", "hs.test", &db_url);
    let tokens = Tokens::from_config(&config).unwrap();
    let synapse = Synapse::builder().appservice(registration_yaml(&config, "loop_", &tokens)).start().await.unwrap();
    config.homeserver.url = synapse.url();
    let alice = synapse.register_user("alice", false).await.unwrap();
    let alice = Client { http: reqwest::Client::new(), base: synapse.url(), token: alice.access_token };
    World { synapse, config, alice, _dir: dir }
}

/// A portal opened from the network side (a first message from `remote`), joined by Alice; its room.
pub(crate) async fn portal_from_network(
    handle: &tincan_appservice::BridgeHandle,
    alice: &Client,
    remote: &str,
    first: &str,
) -> (PortalKey, ruma::OwnedRoomId) {
    let key = PortalKey { receiver: "@alice:hs.test".try_into().unwrap(), chat: RemoteChatId::new(remote) };
    handle
        .queue_remote_event(RemoteEvent {
            portal: key.clone(),
            sender: RemoteUserId::new(remote),
            kind: RemoteEventKind::Message { id: RemoteMessageId::new(first), body: first.into() },
        })
        .await
        .unwrap();
    let store = handle.store().clone();
    let room = wait_for("the portal room", Duration::from_secs(60), || {
        let store = store.clone();
        let key = key.clone();
        async move { store.portal(&key).await.unwrap().and_then(|p| p.room_id) }
    })
    .await;
    alice
        .call(reqwest::Method::POST, &format!("/_matrix/client/v3/join/{}", enc(room.as_str())), Some(json!({})))
        .await;
    (key, room)
}

/// Every event of `room` Alice can see, oldest first.
pub(crate) async fn room_events(alice: &Client, room: &ruma::RoomId) -> Vec<Value> {
    let mut events = Vec::new();
    let mut from = String::new();
    loop {
        let page = alice
            .call(
                reqwest::Method::GET,
                &format!("/_matrix/client/v3/rooms/{}/messages?dir=f&limit=500{from}", enc(room.as_str())),
                None,
            )
            .await;
        let chunk = page["chunk"].as_array().cloned().unwrap_or_default();
        if chunk.is_empty() {
            return events;
        }
        events.extend(chunk);
        match page["end"].as_str() {
            Some(end) => from = format!("&from={}", enc(end)),
            None => return events,
        }
    }
}

/// Waits until the remote queue is empty.
pub(crate) async fn remote_queue_drained(handle: &tincan_appservice::BridgeHandle, timeout: Duration) {
    let store = handle.store().clone();
    wait_for("the remote queue to drain", timeout, || {
        let store = store.clone();
        async move { (store.remote_pending_count().await.unwrap() == 0).then_some(()) }
    })
    .await;
}
