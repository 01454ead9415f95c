//! Edits, reactions, redactions, read receipts and typing, both ways, against a real Synapse with the
//! loopback network: Matrix → network refers to the remote IDs of the targets, network → Matrix relates to
//! the mapped Matrix events.

use crate::loopback::{Loopback, Seen};
use crate::synapse::{Client, enc, portal_from_network, remote_queue_drained, room_events, wait_for, world};
use reqwest::Method;
use serde_json::{Value, json};
use std::time::Duration;
use tincan_appservice::{Bridge, RemoteEvent, RemoteEventKind, RemoteMessageId, RemoteUserId};
use tokio::sync::mpsc::UnboundedReceiver;

const BOB: &str = "+4915112345678";

/// The next thing the network sees that `want` accepts (other items, such as typing updates Synapse sends
/// on its own, are skipped).
pub(crate) async fn next_seen(rx: &mut UnboundedReceiver<Seen>, what: &str, want: impl Fn(&Seen) -> bool) -> Seen {
    tokio::time::timeout(Duration::from_secs(60), async {
        loop {
            let s = rx.recv().await.expect("connector alive");
            if want(&s) {
                return s;
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("{what} never reached the network"))
}

async fn send(alice: &Client, room: &str, ty: &str, txn: &str, content: Value) -> String {
    let path = format!("/_matrix/client/v3/rooms/{}/send/{ty}/{txn}", enc(room));
    alice.call(Method::PUT, &path, Some(content)).await["event_id"].as_str().unwrap().to_owned()
}

/// Alice's `/sync` until `found` picks something out of the room's ephemeral events.
async fn ephemeral<T>(alice: &Client, room: &str, what: &str, found: impl Fn(&[Value]) -> Option<T>) -> T {
    wait_for(what, Duration::from_secs(60), || async {
        let sync = alice.call(Method::GET, "/_matrix/client/v3/sync?timeout=0", None).await;
        let events = sync["rooms"]["join"][room]["ephemeral"]["events"].as_array().cloned().unwrap_or_default();
        found(&events)
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edits_reactions_redactions_receipts_and_typing_both_ways() {
    let w = world().await;
    let (conn, mut rx) = Loopback::new(&["@alice:hs.test"]);
    let bridge = Bridge::builder(w.config.clone()).start(conn).await.unwrap();
    let handle = bridge.handle().clone();
    let store = handle.store().clone();
    let alice = &w.alice;
    let (key, room_id) = portal_from_network(&handle, alice, BOB, "r1").await;
    let room = room_id.as_str();
    let ghost = format!("@loop_{BOB}:hs.test");
    let r1 = RemoteMessageId::new("r1");
    let r1_event = store.message_by_remote(&key, &r1).await.unwrap().unwrap().event_id.to_string();

    // Matrix → network.
    let mine = send(alice, room, "m.room.message", "a1", json!({"msgtype": "m.text", "body": "mine"})).await;
    let Seen::Message(_, m) = next_seen(&mut rx, "Alice's message", |s| matches!(s, Seen::Message(..))).await else {
        unreachable!()
    };
    assert_eq!(m.body, "mine");
    let mine_remote = wait_for("the mapping of Alice's message", Duration::from_secs(30), || {
        let store = store.clone();
        let mine = mine.clone();
        let key = key.clone();
        async move {
            store
                .message_by_event(&key, &ruma::EventId::parse(mine.as_str()).unwrap())
                .await
                .unwrap()
                .map(|m| m.remote_id)
        }
    })
    .await;

    let edit = json!({"msgtype": "m.text", "body": "* mine, edited",
        "m.new_content": {"msgtype": "m.text", "body": "mine, edited"},
        "m.relates_to": {"rel_type": "m.replace", "event_id": mine}});
    send(alice, room, "m.room.message", "a2", edit).await;
    let seen = next_seen(&mut rx, "the edit", |s| matches!(s, Seen::Edit(..))).await;
    assert!(matches!(&seen, Seen::Edit(k, t, m) if *k == key && *t == mine_remote && m.body == "mine, edited"));

    let reaction = json!({"m.relates_to": {"rel_type": "m.annotation", "event_id": r1_event, "key": "👍"}});
    send(alice, room, "m.reaction", "a3", reaction).await;
    let seen = next_seen(&mut rx, "the reaction", |s| matches!(s, Seen::Reaction(..))).await;
    assert_eq!(seen, Seen::Reaction(key.clone(), r1.clone(), "👍".into()));

    let path = format!("/_matrix/client/v3/rooms/{}/redact/{}/a4", enc(room), enc(&mine));
    alice.call(Method::PUT, &path, Some(json!({}))).await;
    let seen = next_seen(&mut rx, "the redaction", |s| matches!(s, Seen::Redaction(..))).await;
    assert_eq!(seen, Seen::Redaction(key.clone(), mine_remote.clone()));

    let path = format!("/_matrix/client/v3/rooms/{}/receipt/m.read/{}", enc(room), enc(&r1_event));
    alice.call(Method::POST, &path, Some(json!({}))).await;
    let seen = next_seen(&mut rx, "the read receipt", |s| matches!(s, Seen::Receipt(..))).await;
    assert_eq!(seen, Seen::Receipt(key.clone(), r1.clone()));

    let path = format!("/_matrix/client/v3/rooms/{}/typing/{}", enc(room), enc("@alice:hs.test"));
    alice.call(Method::PUT, &path, Some(json!({"typing": true, "timeout": 30000}))).await;
    let seen = next_seen(&mut rx, "typing", |s| matches!(s, Seen::Typing(_, true))).await;
    assert_eq!(seen, Seen::Typing(key.clone(), true));
    alice.call(Method::PUT, &path, Some(json!({"typing": false}))).await;
    next_seen(&mut rx, "typing stopped", |s| matches!(s, Seen::Typing(_, false))).await;

    // Network → Matrix.
    let second = send(alice, room, "m.room.message", "a5", json!({"msgtype": "m.text", "body": "second"})).await;
    next_seen(&mut rx, "Alice's second message", |s| matches!(s, Seen::Message(..))).await;
    let second_remote = wait_for("the mapping of Alice's second message", Duration::from_secs(30), || {
        let store = store.clone();
        let second = second.clone();
        let key = key.clone();
        async move {
            store
                .message_by_event(&key, &ruma::EventId::parse(second.as_str()).unwrap())
                .await
                .unwrap()
                .map(|m| m.remote_id)
        }
    })
    .await;
    let remote = |kind| RemoteEvent { portal: key.clone(), sender: RemoteUserId::new(BOB), kind };
    handle
        .queue_remote_events(vec![
            remote(RemoteEventKind::Edit { target: r1.clone(), body: "r1, edited".into() }),
            remote(RemoteEventKind::Reaction { target: second_remote.clone(), key: "❤️".into() }),
            remote(RemoteEventKind::Message { id: RemoteMessageId::new("r2"), body: "regretted".into() }),
            remote(RemoteEventKind::Redaction { target: RemoteMessageId::new("r2") }),
            remote(RemoteEventKind::ReadReceipt { up_to: second_remote.clone() }),
            remote(RemoteEventKind::Typing { timeout: Duration::from_secs(60) }),
        ])
        .await
        .unwrap();
    remote_queue_drained(&handle, Duration::from_secs(60)).await;
    let r2_event = store.message_by_remote(&key, &RemoteMessageId::new("r2")).await.unwrap().unwrap().event_id;

    let events = room_events(alice, &room_id).await;
    let from_ghost: Vec<&Value> = events.iter().filter(|e| e["sender"] == json!(ghost)).collect();
    let edit = from_ghost
        .iter()
        .find(|e| e["content"]["m.relates_to"]["rel_type"] == "m.replace")
        .unwrap_or_else(|| panic!("no edit from the ghost in {events:?}"));
    assert_eq!(edit["type"], "m.room.message");
    assert_eq!(edit["content"]["m.relates_to"]["event_id"], json!(r1_event));
    assert_eq!(edit["content"]["m.new_content"]["body"], "r1, edited");
    let reaction =
        from_ghost.iter().find(|e| e["type"] == "m.reaction").unwrap_or_else(|| panic!("no reaction in {events:?}"));
    assert_eq!(
        reaction["content"]["m.relates_to"],
        json!({"rel_type": "m.annotation", "event_id": second, "key": "❤️"})
    );
    let redaction = from_ghost
        .iter()
        .find(|e| e["type"] == "m.room.redaction")
        .unwrap_or_else(|| panic!("no redaction in {events:?}"));
    assert_eq!(redaction["redacts"].as_str().or(redaction["content"]["redacts"].as_str()), Some(r2_event.as_str()));
    let path = format!("/_matrix/client/v3/rooms/{}/event/{}", enc(room), enc(r2_event.as_str()));
    let redacted = alice.call(Method::GET, &path, None).await;
    assert_eq!(redacted["content"], json!({}), "{redacted}");
    assert!(redacted["unsigned"]["redacted_because"].is_object(), "{redacted}");

    // The ghost's receipt on Alice's message and its typing notification reach Alice's client.
    ephemeral(alice, room, "the ghost's read receipt", |events| {
        events
            .iter()
            .any(|e| e["type"] == "m.receipt" && e["content"][&second]["m.read"][&ghost].is_object())
            .then_some(())
    })
    .await;
    ephemeral(alice, room, "the ghost typing", |events| {
        events
            .iter()
            .any(|e| {
                e["type"] == "m.typing"
                    && e["content"]["user_ids"].as_array().is_some_and(|u| u.contains(&json!(ghost)))
            })
            .then_some(())
    })
    .await;
    bridge.stop().await;
}
