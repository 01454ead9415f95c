//! The AS API driven directly (no homeserver): tokens, malformed bodies, exactly-once transactions across a
//! restart, third-party lookups.

use crate::loopback::{self, HS_TOKEN, Loopback, Seen};
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;
use tincan_appservice::store::{self, InboxKind, MessageMapping, NewInboxEvent, Portal, Store};
use tincan_appservice::{Bridge, Capabilities, PortalKey, RemoteChatId, RemoteMessageId, RemoteUserId};
use tokio::sync::mpsc::UnboundedReceiver;

const ROOM: &str = "!portal:hs.test";
const ALICE: &str = "@alice:hs.test";

struct Setup {
    _dir: tempfile::TempDir,
    db_url: String,
    store: Arc<dyn Store>,
}

async fn setup() -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let db_url = format!("sqlite:{}", dir.path().join("bridge.db").display());
    let store = store::connect(&db_url, 4).await.unwrap();
    store
        .upsert_portal(&Portal {
            key: PortalKey { receiver: ALICE.try_into().unwrap(), chat: RemoteChatId::new("+491") },
            room_id: Some(ROOM.try_into().unwrap()),
            other_user: RemoteUserId::new("+491"),
            is_group: false,
            metadata: Default::default(),
        })
        .await
        .unwrap();
    Setup { _dir: dir, db_url, store }
}

async fn start(s: &Setup, process: bool) -> (Bridge, UnboundedReceiver<Seen>) {
    let (conn, rx) = Loopback::new(&[ALICE]);
    // Nothing listens on port 9: these tests never reach a homeserver.
    let config = loopback::config("http://127.0.0.1:9", "hs.test", &s.db_url);
    let mut b = Bridge::builder(config).store(s.store.clone());
    if !process {
        b = b.without_processing();
    }
    (b.start(conn).await.unwrap(), rx)
}

fn message(n: u32) -> Value {
    json!({
        "type": "m.room.message",
        "event_id": format!("$m{n}"),
        "sender": ALICE,
        "room_id": ROOM,
        "origin_server_ts": 1_700_000_000_000u64 + u64::from(n),
        "content": {"msgtype": "m.text", "body": format!("hello {n}")},
    })
}

async fn put(bridge: &Bridge, txn: &str, body: &str, token: Option<&str>) -> (u16, Value) {
    let url = format!("http://{}/_matrix/app/v1/transactions/{txn}", bridge.local_addr());
    let mut req = reqwest::Client::new().put(url).header("content-type", "application/json").body(body.to_owned());
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

async fn get(bridge: &Bridge, path: &str, token: Option<&str>) -> (u16, String) {
    let mut req = reqwest::Client::new().get(format!("http://{}{path}", bridge.local_addr()));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let resp = req.send().await.unwrap();
    (resp.status().as_u16(), resp.text().await.unwrap())
}

/// Collects what the network saw until `n` items arrived, then checks nothing more comes.
async fn seen_exactly(rx: &mut UnboundedReceiver<Seen>, n: usize) -> Vec<String> {
    let mut out = Vec::new();
    while out.len() < n {
        match tokio::time::timeout(Duration::from_secs(10), rx.recv()).await {
            Ok(Some(Seen::Message(_, m))) => out.push(m.body),
            Ok(Some(other)) => panic!("unexpected {other:?}"),
            Ok(None) | Err(_) => panic!("only {} of {n} messages reached the network", out.len()),
        }
    }
    if let Ok(Some(extra)) = tokio::time::timeout(Duration::from_millis(500), rx.recv()).await {
        panic!("handled more than once: {extra:?}");
    }
    out
}

#[tokio::test]
async fn wrong_or_missing_token_is_refused_and_nothing_handled() {
    let s = setup().await;
    let (bridge, mut rx) = start(&s, true).await;
    let body = json!({"events": [message(1)]}).to_string();
    let (status, err) = put(&bridge, "t1", &body, None).await;
    assert_eq!((status, err["errcode"].as_str()), (401, Some("M_MISSING_TOKEN")));
    let (status, err) = put(&bridge, "t1", &body, Some("wrong")).await;
    assert_eq!((status, err["errcode"].as_str()), (403, Some("M_FORBIDDEN")));
    let (status, _) = get(&bridge, "/_matrix/app/v1/users/@loop_1:hs.test", Some("wrong")).await;
    assert_eq!(status, 403);
    assert!(!s.store.transaction_seen("t1").await.unwrap());
    assert_eq!(s.store.pending_count().await.unwrap(), 0);
    assert!(tokio::time::timeout(Duration::from_millis(300), rx.recv()).await.is_err());
    let (_, metrics) = get(&bridge, "/metrics", None).await;
    assert!(metrics.contains("tincan_appservice_auth_failures_total 3"), "{metrics}");
}

#[tokio::test]
async fn malformed_bodies_are_400_and_nothing_handled() {
    let s = setup().await;
    let (bridge, mut rx) = start(&s, true).await;
    for (body, code) in [
        ("this is not json", "M_NOT_JSON"),
        ("{\"events\": [", "M_NOT_JSON"),
        ("{\"events\": 5}", "M_BAD_JSON"),
        ("{\"events\": [1, 2]}", "M_BAD_JSON"),
        ("[]", "M_BAD_JSON"),
    ] {
        let (status, err) = put(&bridge, "bad", body, Some(HS_TOKEN)).await;
        assert_eq!((status, err["errcode"].as_str()), (400, Some(code)), "{body}");
    }
    assert!(!s.store.transaction_seen("bad").await.unwrap());
    assert_eq!(s.store.pending_count().await.unwrap(), 0);
    assert!(tokio::time::timeout(Duration::from_millis(300), rx.recv()).await.is_err());
}

#[tokio::test]
async fn unknown_routes_and_plain_endpoints() {
    let s = setup().await;
    let (bridge, _rx) = start(&s, true).await;
    let (status, body) = get(&bridge, "/_matrix/app/v1/nope", Some(HS_TOKEN)).await;
    assert_eq!(status, 404);
    assert!(body.contains("M_UNRECOGNIZED"), "{body}");
    let (status, body) = get(&bridge, "/_matrix/app/v1/rooms/%23x:hs.test", Some(HS_TOKEN)).await;
    assert_eq!((status, body.contains("M_NOT_FOUND")), (404, true));
    let (status, _) = get(&bridge, "/_matrix/app/v1/users/@alice:hs.test", Some(HS_TOKEN)).await;
    assert_eq!(status, 404, "a user outside the ghost namespace does not exist for us");
    let resp = reqwest::Client::new()
        .post(format!("http://{}/_matrix/app/v1/ping", bridge.local_addr()))
        .bearer_auth(HS_TOKEN)
        .json(&json!({"transaction_id": "p1"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    assert_eq!(get(&bridge, "/healthz", None).await.0, 200);
}

#[tokio::test]
async fn the_same_transaction_twice_is_handled_once() {
    let s = setup().await;
    let (bridge, mut rx) = start(&s, true).await;
    let body = json!({"events": [message(1), message(2), message(3)]}).to_string();
    assert_eq!(put(&bridge, "dup", &body, Some(HS_TOKEN)).await.0, 200);
    assert_eq!(put(&bridge, "dup", &body, Some(HS_TOKEN)).await.0, 200);
    // Concurrent retries as well.
    let retries = futures::future::join_all((0..4).map(|_| put(&bridge, "dup", &body, Some(HS_TOKEN)))).await;
    assert!(retries.iter().all(|(s, _)| *s == 200));
    assert_eq!(seen_exactly(&mut rx, 3).await, ["hello 1", "hello 2", "hello 3"]);
    let (_, metrics) = get(&bridge, "/metrics", None).await;
    assert!(metrics.contains("tincan_appservice_transactions_total 1\n"), "{metrics}");
    assert!(metrics.contains("tincan_appservice_duplicate_transactions_total 5\n"), "{metrics}");
    assert_eq!(s.store.pending_count().await.unwrap(), 0);
}

#[tokio::test]
async fn restart_between_receipt_and_processing_handles_each_event_once() {
    let s = setup().await;
    // Recorded and acknowledged, then the bridge stops before processing.
    let (bridge, mut rx) = start(&s, false).await;
    let body = json!({"events": [message(1), message(2)]}).to_string();
    assert_eq!(put(&bridge, "a", &body, Some(HS_TOKEN)).await.0, 200);
    bridge.stop().await;
    assert!(rx.try_recv().is_err());
    // Recorded, then the bridge died before answering: simulated by recording through the store alone.
    let events: Vec<NewInboxEvent> = [message(3), message(4)]
        .iter()
        .map(|m| NewInboxEvent { kind: InboxKind::Timeline, json: m.to_string() })
        .collect();
    assert!(s.store.record_transaction("b", &events, 0).await.unwrap());

    let (bridge, mut rx) = start(&s, true).await;
    // The homeserver retries both transactions after the restart.
    assert_eq!(put(&bridge, "a", &body, Some(HS_TOKEN)).await.0, 200);
    let body_b = json!({"events": [message(3), message(4)]}).to_string();
    assert_eq!(put(&bridge, "b", &body_b, Some(HS_TOKEN)).await.0, 200);
    assert_eq!(seen_exactly(&mut rx, 4).await, ["hello 1", "hello 2", "hello 3", "hello 4"]);
    bridge.stop().await;

    // A third start finds nothing left to do.
    let (_bridge, mut rx) = start(&s, true).await;
    assert!(tokio::time::timeout(Duration::from_millis(500), rx.recv()).await.is_err());
    assert_eq!(s.store.pending_count().await.unwrap(), 0);
}

/// Events are acknowledged to the homeserver once recorded and marked done one by one as they are handled: a
/// crash in the middle of a transaction's events hands on, after the restart, only those not handled yet (the
/// one in flight at the crash again: its call never returned), and the homeserver's retry of the transaction
/// records nothing twice.
#[tokio::test]
async fn a_crash_in_the_middle_of_a_transaction_hands_on_only_what_was_not_handled() {
    let s = setup().await;
    let (conn, mut rx) = Loopback::new(&[ALICE]);
    *conn.stall.lock().unwrap() = Some("hello 3".into());
    let config = loopback::config("http://127.0.0.1:9", "hs.test", &s.db_url);
    let bridge = Bridge::builder(config).store(s.store.clone()).start(conn).await.unwrap();
    let body = json!({"events": [message(1), message(2), message(3), message(4)]}).to_string();
    assert_eq!(put(&bridge, "mid", &body, Some(HS_TOKEN)).await.0, 200);
    // The network takes 1 and 2 and hangs on 3: the bridge dies then.
    assert_eq!(seen_exactly(&mut rx, 3).await, ["hello 1", "hello 2", "hello 3"]);
    bridge.stop().await;
    assert_eq!(s.store.pending_count().await.unwrap(), 2, "1 and 2 are done, 3 and 4 are not");

    let (bridge, mut rx) = start(&s, true).await;
    assert_eq!(put(&bridge, "mid", &body, Some(HS_TOKEN)).await.0, 200, "the retry is acknowledged");
    assert_eq!(seen_exactly(&mut rx, 2).await, ["hello 3", "hello 4"]);
    assert_eq!(s.store.pending_count().await.unwrap(), 0);
    let (_, metrics) = get(&bridge, "/metrics", None).await;
    assert!(metrics.contains("tincan_appservice_duplicate_transactions_total 1\n"), "{metrics}");
}

/// A message recorded before a restart whose mapping was committed (it reached the network before the crash)
/// is not handed to the network again; one recorded after the start goes without a lookup. The mapping of
/// `$m1` stands for a run that handled it and crashed before its done mark.
#[tokio::test]
async fn a_replayed_message_with_a_mapping_is_not_sent_again() {
    let s = setup().await;
    let (bridge, _rx) = start(&s, false).await;
    let body = json!({"events": [message(1), message(2)]}).to_string();
    assert_eq!(put(&bridge, "before", &body, Some(HS_TOKEN)).await.0, 200);
    bridge.stop().await;
    s.store
        .insert_message(&MessageMapping {
            portal: PortalKey { receiver: ALICE.try_into().unwrap(), chat: RemoteChatId::new("+491") },
            remote_id: RemoteMessageId::new("out-before-crash"),
            event_id: "$m1".try_into().unwrap(),
            room_id: ROOM.try_into().unwrap(),
            sender: ALICE.try_into().unwrap(),
            metadata: Default::default(),
        })
        .await
        .unwrap();

    let (bridge, mut rx) = start(&s, true).await;
    assert_eq!(seen_exactly(&mut rx, 1).await, ["hello 2"]);
    let body = json!({"events": [message(3)]}).to_string();
    assert_eq!(put(&bridge, "after", &body, Some(HS_TOKEN)).await.0, 200);
    assert_eq!(seen_exactly(&mut rx, 1).await, ["hello 3"]);
    inbox_drained(&s).await;
}

/// The events of a transaction are marked done together, not one commit each: while another writer holds the
/// database, the 100 events are handled and wait to be marked; once it lets go, they are marked in at most a
/// few commits (the first, begun with what was finished then, and one with the rest).
#[tokio::test]
async fn a_transactions_events_are_marked_done_in_a_few_commits() {
    use sqlx::Connection;
    let s = setup().await;
    let (bridge, _rx) = start(&s, false).await;
    let body = json!({"events": (1..=100).map(message).collect::<Vec<_>>()}).to_string();
    assert_eq!(put(&bridge, "hundred", &body, Some(HS_TOKEN)).await.0, 200);
    bridge.stop().await;

    let mut writer = sqlx::SqliteConnection::connect(&s.db_url).await.unwrap();
    sqlx::query("BEGIN IMMEDIATE").execute(&mut writer).await.unwrap();
    let (bridge, mut rx) = start(&s, true).await;
    assert_eq!(seen_exactly(&mut rx, 100).await.len(), 100);
    assert_eq!(s.store.pending_count().await.unwrap(), 100, "handled, not marked done yet");
    sqlx::query("COMMIT").execute(&mut writer).await.unwrap();
    inbox_drained(&s).await;
    let commits = bridge.handle().metrics().done_commits.get();
    assert!((1..=3).contains(&commits), "{commits} commits marked 100 events done");
    let (_, metrics) = get(&bridge, "/metrics", None).await;
    assert!(metrics.contains("tincan_appservice_events_processed_total 100\n"), "{metrics}");
}

#[tokio::test]
async fn pstn_lookup_directly() {
    let s = setup().await;
    let (bridge, _rx) = start(&s, true).await;
    let (status, body) = get(
        &bridge,
        "/_matrix/app/v1/thirdparty/user/m.protocol.pstn?m.id.phone=%2B49%20151%2012345678",
        Some(HS_TOKEN),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let users: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        users,
        json!([{"userid": "@loop_+4915112345678:hs.test", "protocol": "m.protocol.pstn",
                "fields": {"m.id.phone": "+4915112345678"}}])
    );
    let (status, _) =
        get(&bridge, "/_matrix/app/v1/thirdparty/user/m.protocol.pstn?m.id.phone=12", Some(HS_TOKEN)).await;
    assert_eq!(status, 404);
    let (status, body) = get(&bridge, "/_matrix/app/v1/thirdparty/protocol/m.protocol.pstn", Some(HS_TOKEN)).await;
    assert_eq!(status, 200);
    assert!(body.contains("\"user_fields\":[\"m.id.phone\"]"), "{body}");
}

/// A transaction with an edit, a reaction and a redaction of a bridged message, plus a receipt and a typing
/// notification, all from the portal's receiver.
fn relations_transaction() -> String {
    let rel = |n: u32, ty: &str, content: Value| {
        json!({"type": ty, "event_id": format!("$rel{n}"), "sender": ALICE, "room_id": ROOM,
               "origin_server_ts": 1_700_000_000_000u64, "content": content})
    };
    json!({
        "events": [
            rel(1, "m.room.message", json!({"msgtype": "m.text", "body": "* fixed",
                "m.new_content": {"msgtype": "m.text", "body": "fixed"},
                "m.relates_to": {"rel_type": "m.replace", "event_id": "$bridged"}})),
            rel(2, "m.reaction", json!({"m.relates_to": {"rel_type": "m.annotation", "event_id": "$bridged", "key": "👍"}})),
            rel(3, "m.room.redaction", json!({"redacts": "$bridged"})),
            message(9),
        ],
        "ephemeral": [
            {"type": "m.receipt", "room_id": ROOM,
             "content": {"$bridged": {"m.read": {ALICE: {"ts": 1_700_000_000_000u64}}}}},
            {"type": "m.typing", "room_id": ROOM, "content": {"user_ids": [ALICE]}},
        ],
    })
    .to_string()
}

async fn start_with(s: &Setup, caps: Capabilities) -> (Bridge, UnboundedReceiver<Seen>) {
    s.store
        .insert_message(&MessageMapping {
            portal: PortalKey { receiver: ALICE.try_into().unwrap(), chat: RemoteChatId::new("+491") },
            remote_id: RemoteMessageId::new("r-bridged"),
            event_id: "$bridged".try_into().unwrap(),
            room_id: ROOM.try_into().unwrap(),
            sender: "@loop_+491:hs.test".try_into().unwrap(),
            metadata: Default::default(),
        })
        .await
        .unwrap();
    let (conn, rx) = Loopback::with_capabilities(&[ALICE], caps);
    let config = loopback::config("http://127.0.0.1:9", "hs.test", &s.db_url);
    (Bridge::builder(config).store(s.store.clone()).start(conn).await.unwrap(), rx)
}

#[tokio::test]
async fn edits_reactions_redactions_receipts_typing_reach_a_network_that_supports_them() {
    let s = setup().await;
    let (bridge, mut rx) = start_with(&s, Capabilities::all()).await;
    assert_eq!(put(&bridge, "rel", &relations_transaction(), Some(HS_TOKEN)).await.0, 200);
    let mut seen = Vec::new();
    while seen.len() < 6 {
        match tokio::time::timeout(Duration::from_secs(10), rx.recv()).await {
            Ok(Some(s)) => seen.push(s),
            _ => panic!("only {seen:?} reached the network"),
        }
    }
    let target = RemoteMessageId::new("r-bridged");
    let key = PortalKey { receiver: ALICE.try_into().unwrap(), chat: RemoteChatId::new("+491") };
    assert!(matches!(&seen[0], Seen::Edit(k, t, m) if *k == key && *t == target && m.body == "fixed"), "{seen:?}");
    assert_eq!(seen[1], Seen::Reaction(key.clone(), target.clone(), "👍".into()));
    assert_eq!(seen[2], Seen::Redaction(key.clone(), target.clone()));
    assert!(matches!(&seen[3], Seen::Message(_, m) if m.body == "hello 9"), "{seen:?}");
    assert_eq!(seen[4], Seen::Receipt(key.clone(), target));
    assert_eq!(seen[5], Seen::Typing(key, true));
    inbox_drained(&s).await;
}

/// Waits until every inbox event is marked done (the worker marks an event done after the connector call).
async fn inbox_drained(s: &Setup) {
    for _ in 0..100 {
        if s.store.pending_count().await.unwrap() == 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("inbox events left pending");
}

#[tokio::test]
async fn a_text_only_network_gets_only_the_messages() {
    let s = setup().await;
    let (bridge, mut rx) = start_with(&s, Capabilities::text_only()).await;
    assert_eq!(put(&bridge, "rel", &relations_transaction(), Some(HS_TOKEN)).await.0, 200);
    assert_eq!(seen_exactly(&mut rx, 1).await, ["hello 9"]);
    // Everything else was handled (skipped) as well, not left in the inbox.
    inbox_drained(&s).await;
}

/// Synapse sends up to 100 events per transaction and an event may be 64 KiB: such a body (6.5 MiB, over
/// axum's 2 MiB default) is accepted and recorded rather than refused with 413 and retried forever.
#[tokio::test]
async fn a_transaction_of_a_hundred_events_of_64_kib_is_accepted() {
    let s = setup().await;
    let (bridge, mut rx) = start(&s, true).await;
    let filler = "x".repeat(64 * 1024 - 300);
    let events: Vec<Value> = (0..100)
        .map(|n| {
            let mut m = message(n);
            m["content"]["body"] = json!(format!("{n} {filler}"));
            m
        })
        .collect();
    let body = json!({"events": events}).to_string();
    assert!(body.len() > 100 * 64 * 1000, "{} bytes", body.len());
    let (status, answer) = put(&bridge, "big", &body, Some(HS_TOKEN)).await;
    assert_eq!(status, 200, "{answer}");
    assert!(s.store.transaction_seen("big").await.unwrap());
    let seen = seen_exactly(&mut rx, 100).await;
    assert!(seen[99].starts_with("99 x"), "{}", &seen[99][..10]);
    // Beyond the documented limit the answer is 413, and nothing is recorded.
    let huge =
        format!("{{\"events\": [], \"pad\": \"{}\"}}", "y".repeat(tincan_appservice::server::MAX_TRANSACTION_BYTES));
    assert_eq!(put(&bridge, "huge", &huge, Some(HS_TOKEN)).await.0, 413);
    assert!(!s.store.transaction_seen("huge").await.unwrap());
}

/// Mallory has a portal of his own; his edit, reaction, redaction and read receipt name a message bridged in
/// Alice's portal. None of it reaches the network (it would act on Alice's remote message through Mallory's
/// login); his own plain message after them does.
#[tokio::test]
async fn relations_to_a_message_of_another_portal_are_not_bridged() {
    let s = setup().await;
    const MALLORY: &str = "@mallory:hs.test";
    const HIS_ROOM: &str = "!mallory:hs.test";
    let his = PortalKey { receiver: MALLORY.try_into().unwrap(), chat: RemoteChatId::new("+492") };
    s.store
        .upsert_portal(&Portal {
            key: his.clone(),
            room_id: Some(HIS_ROOM.try_into().unwrap()),
            other_user: RemoteUserId::new("+492"),
            is_group: false,
            metadata: Default::default(),
        })
        .await
        .unwrap();
    s.store
        .insert_message(&MessageMapping {
            portal: PortalKey { receiver: ALICE.try_into().unwrap(), chat: RemoteChatId::new("+491") },
            remote_id: RemoteMessageId::new("r-bridged"),
            event_id: "$bridged".try_into().unwrap(),
            room_id: ROOM.try_into().unwrap(),
            sender: "@loop_+491:hs.test".try_into().unwrap(),
            metadata: Default::default(),
        })
        .await
        .unwrap();
    let (conn, mut rx) = Loopback::new(&[ALICE, MALLORY]);
    let config = loopback::config("http://127.0.0.1:9", "hs.test", &s.db_url);
    let bridge = Bridge::builder(config).store(s.store.clone()).start(conn).await.unwrap();
    let ev = |n: u32, ty: &str, content: Value| {
        json!({"type": ty, "event_id": format!("$m{n}"), "sender": MALLORY, "room_id": HIS_ROOM,
               "origin_server_ts": 1_700_000_000_000u64, "content": content})
    };
    let body = json!({
        "events": [
            ev(1, "m.room.message", json!({"msgtype": "m.text", "body": "* stolen",
                "m.new_content": {"msgtype": "m.text", "body": "stolen"},
                "m.relates_to": {"rel_type": "m.replace", "event_id": "$bridged"}})),
            ev(2, "m.reaction", json!({"m.relates_to": {"rel_type": "m.annotation", "event_id": "$bridged", "key": "👎"}})),
            ev(3, "m.room.redaction", json!({"redacts": "$bridged"})),
            ev(4, "m.room.message", json!({"msgtype": "m.text", "body": "his own"})),
        ],
        "ephemeral": [{"type": "m.receipt", "room_id": HIS_ROOM,
            "content": {"$bridged": {"m.read": {MALLORY: {"ts": 1_700_000_000_000u64}}}}}],
    })
    .to_string();
    assert_eq!(put(&bridge, "cross", &body, Some(HS_TOKEN)).await.0, 200);
    match tokio::time::timeout(Duration::from_secs(10), rx.recv()).await {
        Ok(Some(Seen::Message(k, m))) => assert_eq!((k, m.body.as_str()), (his, "his own")),
        other => panic!("expected only Mallory's own message first, got {other:?}"),
    }
    if let Ok(Some(extra)) = tokio::time::timeout(Duration::from_millis(500), rx.recv()).await {
        panic!("a relation across portals reached the network: {extra:?}");
    }
    inbox_drained(&s).await;
}
