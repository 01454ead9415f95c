//! End-to-bridge encryption against a real Synapse: a Tincan client (the client core, matrix-sdk) and an
//! independent client (matrix-js-sdk with its Rust crypto, under node) each DM a ghost in an encrypted room;
//! the loopback network gets the plaintext, its replies arrive encrypted and both clients decrypt them; the
//! server holds only ciphertext for message events.

use crate::loopback::{self, Loopback, Seen};
use crate::synapse::{Client, room_events, wait_for};
use serde_json::{Value, json};
use std::time::Duration;
use tincan_appservice::registration::{Tokens, registration_yaml};
use tincan_appservice::{Bridge, BridgeHandle, PortalKey, RemoteEvent, RemoteEventKind, RemoteMessageId, RemoteUserId};
use tincan_client_core::{ClientConfig, TincanClient};
use tincan_testkit::Synapse;
use tincan_testkit::node::JsClient;
use tokio::sync::mpsc::UnboundedReceiver;

const FOR_ALICE: &str = "+4915112345678";
const FOR_BOB: &str = "+4930123456789";

/// A Synapse with the loopback bridge registered with encryption on, and the bridge's config (state and
/// crypto stores in `dir`).
pub(crate) async fn encrypted_world(dir: &std::path::Path) -> (Synapse, tincan_appservice::AppserviceConfig) {
    encrypted_world_on(dir, &format!("sqlite:{}", dir.join("bridge.db").display())).await
}

/// [`encrypted_world`] with the bridge's state at `db_url` (with PostgreSQL, the crypto stores are there too).
async fn encrypted_world_on(dir: &std::path::Path, db_url: &str) -> (Synapse, tincan_appservice::AppserviceConfig) {
    let mut config = loopback::config("http://127.0.0.1:9", "hs.test", db_url);
    config.encryption.enabled = true;
    config.encryption.store_dir = dir.join("crypto").display().to_string();
    config.encryption.store_passphrase = tincan_common::Secret::new("test fixture passphrase");
    let tokens = Tokens::from_config(&config).unwrap();
    let synapse = Synapse::builder().appservice(registration_yaml(&config, "loop_", &tokens)).start().await.unwrap();
    config.homeserver.url = synapse.url();
    (synapse, config)
}

/// The next message the network sees (typing and receipts skipped).
pub(crate) async fn next_message(rx: &mut UnboundedReceiver<Seen>) -> (PortalKey, String) {
    tokio::time::timeout(Duration::from_secs(90), async {
        loop {
            if let Some(Seen::Message(k, m)) = rx.recv().await {
                return (k, m.body);
            }
        }
    })
    .await
    .expect("a message reached the network")
}

pub(crate) async fn portal_of(handle: &BridgeHandle, room: &ruma::RoomId) -> PortalKey {
    let store = handle.store().clone();
    wait_for("the ghost to join and the portal to exist", Duration::from_secs(60), || {
        let store = store.clone();
        let room = room.to_owned();
        async move { store.portal_by_room(&room).await.unwrap().map(|p| p.key) }
    })
    .await
}

pub(crate) async fn reply(handle: &BridgeHandle, key: &PortalKey, from: &str, id: &str, body: &str) {
    handle
        .queue_remote_event(RemoteEvent {
            portal: key.clone(),
            sender: RemoteUserId::new(from),
            kind: RemoteEventKind::Message { id: RemoteMessageId::new(id), body: body.into() },
        })
        .await
        .unwrap();
}

/// The server's copy of `room`: every message event is `m.room.encrypted` and none holds `plaintexts`.
pub(crate) async fn only_ciphertext_on_the_server(reader: &Client, room: &ruma::RoomId, plaintexts: &[&str]) {
    let events = room_events(reader, room).await;
    let messages: Vec<&Value> = events.iter().filter(|e| e.get("state_key").is_none()).collect();
    assert!(messages.len() >= 2, "both messages are in the room: {events:?}");
    for e in &messages {
        assert_eq!(e["type"], "m.room.encrypted", "a message event in the clear: {e}");
        for p in plaintexts {
            assert!(!e.to_string().contains(p), "plaintext {p:?} on the server: {e}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tincan_client_and_matrix_js_sdk_dm_a_ghost_encrypted_end_to_bridge() {
    let dir = tempfile::tempdir().unwrap();
    let (synapse, mut config) = encrypted_world(dir.path()).await;
    // One device in memory at a time: the second ghost's device unloads the first one's.
    config.encryption.max_loaded_devices = 1;
    let (conn, mut rx) = Loopback::new(&["@alice:hs.test", "@bob:hs.test"]);
    let bridge = Bridge::builder(config).start(conn).await.unwrap();
    let handle = bridge.handle().clone();

    // Alice, on the Tincan client core, opens an encrypted DM with a ghost and writes.
    let alice_account = synapse.register_user("alice", false).await.unwrap();
    let alice_dir = tempfile::tempdir().unwrap();
    let mut alice = TincanClient::open(ClientConfig::new(alice_dir.path())).await.unwrap();
    alice
        .login_with_token(&synapse.url(), &alice_account.user_id, &alice_account.device_id, &alice_account.access_token)
        .await
        .unwrap();
    let ghost_a = format!("@loop_{FOR_ALICE}:hs.test");
    let incoming = alice.messages();
    let alice_sync = alice.spawn_sync().unwrap();
    let dm = alice.dm_room(&ruma::UserId::parse(&ghost_a).unwrap()).await.unwrap();
    let room_a = dm.room_id().to_owned();
    let key_a = portal_of(&handle, &room_a).await;
    dm.send(ruma::events::room::message::RoomMessageEventContent::text_plain("hello from tincan")).await.unwrap();
    assert_eq!(next_message(&mut rx).await, (key_a.clone(), "hello from tincan".to_owned()));
    reply(&handle, &key_a, FOR_ALICE, "a1", "reply to tincan").await;
    let got = tokio::time::timeout(Duration::from_secs(90), async {
        let mut incoming = std::pin::pin!(incoming);
        loop {
            let m =
                futures::StreamExt::next(&mut incoming).await.expect("the message stream ends only with the client");
            if m.body == "reply to tincan" {
                return m;
            }
        }
    })
    .await
    .expect("the ghost's reply reached the Tincan client");
    assert!(got.encrypted, "the reply came through Megolm: {got:?}");
    assert_eq!(got.sender, ghost_a);
    alice_sync.abort();

    // Bob, on matrix-js-sdk, opens an encrypted DM with another ghost and writes.
    let bob = synapse.register_user("bob", false).await.unwrap();
    let bob_c = Client { http: reqwest::Client::new(), base: synapse.url(), token: bob.access_token.clone() };
    let ghost_b = format!("@loop_{FOR_BOB}:hs.test");
    let room_b = ruma::OwnedRoomId::try_from(bob_c.encrypted_dm(&ghost_b).await).unwrap();
    let key_b = portal_of(&handle, &room_b).await;
    let mut js = JsClient::dm(&json!({
        "base_url": synapse.url(), "user_id": bob.user_id, "access_token": bob.access_token,
        "device_id": bob.device_id, "room_id": room_b, "send": "hello from js",
        "expect_sender": ghost_b, "expect_body": "reply to js", "timeout_ms": 150_000,
    }))
    .unwrap();
    js.expect("sent", Duration::from_secs(120)).await.unwrap();
    assert_eq!(next_message(&mut rx).await, (key_b.clone(), "hello from js".to_owned()));
    reply(&handle, &key_b, FOR_BOB, "b1", "reply to js").await;
    let got = js.expect("received", Duration::from_secs(90)).await.unwrap();
    assert_eq!(got["encrypted"], true, "{got}");
    assert_eq!(got["body"], "reply to js");

    // The homeserver's copy of both rooms: ciphertext only.
    let alice_c = Client { http: reqwest::Client::new(), base: synapse.url(), token: alice_account.access_token };
    only_ciphertext_on_the_server(&alice_c, &room_a, &["hello from tincan", "reply to tincan"]).await;
    only_ciphertext_on_the_server(&bob_c, &room_b, &["hello from js", "reply to js"]).await;
    let metrics = handle.metrics();
    assert!(metrics.decrypted.get() >= 2 && metrics.encrypted.get() >= 2, "{}", metrics.render());
    assert!(metrics.devices_unloaded.get() >= 1, "{}", metrics.render());
    bridge.stop().await;
}

/// The bridge stops and comes back recording transactions without handling them while matrix-js-sdk opens its
/// Olm session with the ghost's device and shares its room key: the pre-key message, the room key and the
/// message wait in the inbox, and the bridge started again (its crypto stores reopened) decrypts the message
/// and answers. An encrypted message whose room key never comes gets a notice after the configured wait.
/// Here with the bridge's state and the ghosts' crypto stores in its SQLite database.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_mid_key_exchange_loses_nothing_and_an_undecryptable_message_gets_a_notice() {
    let dir = tempfile::tempdir().unwrap();
    let (synapse, config) = encrypted_world(dir.path()).await;
    let db = config.database.url.clone();
    restart_mid_key_exchange(synapse, config).await;
    assert!(!dir.path().join("crypto").exists(), "no crypto store file: it is in the bridge's database");
    let pool = sqlx::SqlitePool::connect(&db).await.unwrap();
    let accounts: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM crypto_object WHERE owner = $1 AND kind = 'account'")
        .bind(format!("@loop_{FOR_BOB}:hs.test"))
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(accounts, 1, "the ghost's account is a row of the bridge's SQLite database");
    pool.close().await;
}

/// The same with the bridge's state and the ghosts' crypto stores in PostgreSQL: the stop and restart reopen
/// the ghost's device from the database.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_mid_key_exchange_loses_nothing_with_the_crypto_store_in_postgres() {
    let Some(pg) = tincan_testkit::Postgres::create().await else { return };
    let dir = tempfile::tempdir().unwrap();
    let (synapse, config) = encrypted_world_on(dir.path(), pg.url()).await;
    assert!(!dir.path().join("crypto").exists());
    restart_mid_key_exchange(synapse, config).await;
    assert!(!dir.path().join("crypto").exists(), "no crypto store on disk: it is in PostgreSQL");
}

async fn restart_mid_key_exchange(synapse: Synapse, mut config: tincan_appservice::AppserviceConfig) {
    config.encryption.undecryptable_timeout_secs = 3;
    let (conn, mut rx) = Loopback::new(&["@bob:hs.test"]);
    let bridge = Bridge::builder(config.clone()).start(conn.clone()).await.unwrap();
    let handle = bridge.handle().clone();
    let store = handle.store().clone();

    let bob = synapse.register_user("bob", false).await.unwrap();
    let bob_c = Client { http: reqwest::Client::new(), base: synapse.url(), token: bob.access_token.clone() };
    let ghost = format!("@loop_{FOR_BOB}:hs.test");
    let room = ruma::OwnedRoomId::try_from(bob_c.encrypted_dm(&ghost).await).unwrap();
    let key = portal_of(&handle, &room).await;
    let mut js = JsClient::dm(&json!({
        "base_url": synapse.url(), "user_id": bob.user_id, "access_token": bob.access_token,
        "device_id": bob.device_id, "room_id": room, "expect_sender": ghost, "timeout_ms": 240_000,
    }))
    .unwrap();
    js.expect("ready", Duration::from_secs(120)).await.unwrap();
    let devices = devices_of(&bob_c, &ghost).await;
    assert_eq!(devices.len(), 1, "the ghost has its device: {devices:?}");

    // Down, then back recording only: the whole key exchange and the message land in the inbox.
    drop(handle);
    bridge.stop().await;
    let recording = Bridge::builder(config.clone()).without_processing().start(conn.clone()).await.unwrap();
    js.send("across the restart").unwrap();
    js.expect("sent", Duration::from_secs(60)).await.unwrap();
    wait_for("the message and its room key recorded", Duration::from_secs(60), || {
        let store = store.clone();
        async move {
            let pending = store.pending_after(0, 100).await.unwrap();
            let crypto = pending.iter().any(|e| e.kind == tincan_appservice::store::InboxKind::Crypto);
            let message = pending.iter().any(|e| e.json.contains("\"m.room.encrypted\""));
            (crypto && message).then_some(())
        }
    })
    .await;
    recording.stop().await;
    assert!(rx.try_recv().is_err(), "nothing was handled while recording only");

    let bridge = Bridge::builder(config.clone()).start(conn.clone()).await.unwrap();
    let handle = bridge.handle().clone();
    assert_eq!(next_message(&mut rx).await, (key.clone(), "across the restart".to_owned()));
    reply(&handle, &key, FOR_BOB, "r1", "answer after the restart").await;
    let got = js.expect_body("answer after the restart", Duration::from_secs(90)).await.unwrap();
    assert_eq!(got["encrypted"], true, "{got}");

    // A message whose room key never comes: the sender reads a notice, the network gets nothing.
    let bogus = json!({"algorithm": "m.megolm.v1.aes-sha2", "device_id": "NOSUCHDEVICE",
        "sender_key": "Xa0ZBnqIaMuZaYsyVu66KY0rNyNJyw5ymw6kHn1K0Ek",
        "session_id": "NoSuchSessionNoSuchSessionNoSuchSessionNos",
        "ciphertext": "AwgAEmA0MTIzNDU2Nzg5MGFiY2RlZjAxMjM0NTY3ODkwYWJjZGVmMDEyMzQ1Njc4OTBhYmNkZWY"});
    let path = format!("/_matrix/client/v3/rooms/{}/send/m.room.encrypted/bogus1", crate::synapse::enc(room.as_str()));
    bob_c.call(reqwest::Method::PUT, &path, Some(bogus)).await;
    let notice = js.expect_body(tincan_appservice::bridge::inbox::UNDECRYPTABLE_NOTICE, Duration::from_secs(60)).await;
    let notice = notice.unwrap();
    assert_eq!(notice["encrypted"], true, "the notice is encrypted too: {notice}");
    assert_eq!(handle.metrics().undecryptable.get(), 1);
    if let Ok(Some(s)) = tokio::time::timeout(Duration::from_millis(500), rx.recv()).await {
        panic!("the undecryptable message reached the network as {s:?}");
    }
    let store = handle.store().clone();
    wait_for("the undecryptable message given up on, not left pending", Duration::from_secs(10), || {
        let store = store.clone();
        async move { (store.pending_count().await.unwrap() == 0).then_some(()) }
    })
    .await;
    assert_eq!(devices_of(&bob_c, &ghost).await, devices, "the ghost kept its device across the restarts");
    js.quit().unwrap();
    bridge.stop().await;
}

/// The device IDs of `user` the homeserver gives `client`.
async fn devices_of(client: &Client, user: &str) -> Vec<String> {
    let query = json!({"device_keys": {user: []}});
    let resp = client.call(reqwest::Method::POST, "/_matrix/client/v3/keys/query", Some(query)).await;
    let mut ids: Vec<String> =
        resp["device_keys"][user].as_object().map(|m| m.keys().cloned().collect()).unwrap_or_default();
    ids.sort();
    ids
}

/// No message reached the network so far (typing and receipts aside).
fn no_message_yet(rx: &mut UnboundedReceiver<Seen>, what: &str) {
    while let Ok(seen) = rx.try_recv() {
        assert!(!matches!(seen, Seen::Message(..)), "{what}: {seen:?}");
    }
}

/// The bridge's gauge of encrypted events waiting for their room key reaches `n`.
async fn awaiting_room_key(handle: &BridgeHandle, n: i64) {
    let metrics = handle.metrics().clone();
    wait_for(&format!("{n} event(s) waiting for a room key"), Duration::from_secs(60), || {
        let got = metrics.awaiting_room_key.load(std::sync::atomic::Ordering::Relaxed);
        async move { (got == n).then_some(()) }
    })
    .await;
}

/// matrix-js-sdk keeps its room key back: the bridge cannot decrypt the message and holds it; when the key
/// comes, the message is decrypted and reaches the network. A second message whose key is kept back for good
/// is given up on once the wait has passed on the bridge's clock: the sender gets a failure status and the
/// notice, and the network gets nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_whose_key_comes_late_is_decrypted_then_and_one_whose_key_never_comes_fails_visibly() {
    let dir = tempfile::tempdir().unwrap();
    let (synapse, mut config) = encrypted_world(dir.path()).await;
    config.encryption.undecryptable_timeout_secs = 600;
    let clock = std::sync::Arc::new(tincan_common::MockClock::at(1_800_000_000));
    let (conn, mut rx) = Loopback::new(&["@bob:hs.test"]);
    let bridge = Bridge::builder(config).clock(clock.clone()).start(conn).await.unwrap();
    let handle = bridge.handle().clone();

    let bob = synapse.register_user("bob", false).await.unwrap();
    let bob_c = Client::new(synapse.url(), bob.access_token.clone());
    let ghost = format!("@loop_{FOR_BOB}:hs.test");
    let room = ruma::OwnedRoomId::try_from(bob_c.encrypted_dm(&ghost).await).unwrap();
    let key = portal_of(&handle, &room).await;
    let mut js = JsClient::dm(&json!({
        "base_url": synapse.url(), "user_id": bob.user_id, "access_token": bob.access_token,
        "device_id": bob.device_id, "room_id": room, "expect_sender": ghost, "timeout_ms": 240_000,
    }))
    .unwrap();
    js.expect("ready", Duration::from_secs(120)).await.unwrap();
    let step = Duration::from_secs(60);

    // The key comes late: the message waits for it, then goes to the network.
    js.withhold_keys(step).await.unwrap();
    js.send("my key comes late").unwrap();
    js.expect("sent", step).await.unwrap();
    awaiting_room_key(&handle, 1).await;
    no_message_yet(&mut rx, "nothing reached the network without the key");
    assert!(js.release_keys(step).await.unwrap() >= 1, "the room key was kept back");
    assert_eq!(next_message(&mut rx).await, (key.clone(), "my key comes late".to_owned()));
    awaiting_room_key(&handle, 0).await;
    assert_eq!(handle.metrics().undecryptable.get(), 0);

    // The key never comes: after the wait, a failure status and the notice; the network gets nothing.
    js.new_session(step).await.unwrap();
    js.withhold_keys(step).await.unwrap();
    js.send("my key never comes").unwrap();
    let sent = js.expect("sent", step).await.unwrap();
    let event_id = sent["event_id"].as_str().unwrap().to_owned();
    awaiting_room_key(&handle, 1).await;
    clock.advance(Duration::from_secs(601));
    let status = js.expect_status(&event_id, step).await.unwrap();
    assert_eq!(status["content"]["status"], "FAIL_RETRIABLE", "{status}");
    assert_eq!(status["content"]["reason"], "com.beeper.undecryptable_event", "{status}");
    assert_eq!(status["encrypted"], true, "{status}");
    let notice = js.expect_body(tincan_appservice::bridge::inbox::UNDECRYPTABLE_NOTICE, step).await.unwrap();
    assert_eq!(notice["encrypted"], true, "{notice}");
    awaiting_room_key(&handle, 0).await;
    assert_eq!(handle.metrics().undecryptable.get(), 1);
    no_message_yet(&mut rx, "the message given up on did not reach the network");
    let store = handle.store().clone();
    wait_for("the message given up on marked done", Duration::from_secs(10), || {
        let store = store.clone();
        async move { (store.pending_count().await.unwrap() == 0).then_some(()) }
    })
    .await;
    js.quit().unwrap();
    bridge.stop().await;
}

/// matrix-js-sdk set to share keys with verified devices only withholds the room key from the ghost's
/// (unverified) device and says so: the sender gets a permanent failure at once, without the wait (the
/// bridge's clock never moves), and the network gets nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_whose_key_the_senders_client_withholds_fails_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let (synapse, mut config) = encrypted_world(dir.path()).await;
    config.encryption.undecryptable_timeout_secs = 600;
    let clock = std::sync::Arc::new(tincan_common::MockClock::at(1_800_000_000));
    let (conn, mut rx) = Loopback::new(&["@bob:hs.test"]);
    let bridge = Bridge::builder(config).clock(clock).start(conn).await.unwrap();
    let handle = bridge.handle().clone();
    let bob = synapse.register_user("bob", false).await.unwrap();
    let bob_c = Client::new(synapse.url(), bob.access_token.clone());
    let ghost = format!("@loop_{FOR_BOB}:hs.test");
    let room = ruma::OwnedRoomId::try_from(bob_c.encrypted_dm(&ghost).await).unwrap();
    portal_of(&handle, &room).await;
    let mut js = JsClient::dm(&json!({
        "base_url": synapse.url(), "user_id": bob.user_id, "access_token": bob.access_token,
        "device_id": bob.device_id, "room_id": room, "expect_sender": ghost, "timeout_ms": 240_000,
    }))
    .unwrap();
    js.expect("ready", Duration::from_secs(120)).await.unwrap();
    let step = Duration::from_secs(60);

    js.blacklist_unverified(step).await.unwrap();
    js.send("not for unverified devices").unwrap();
    let sent = js.expect("sent", step).await.unwrap();
    let status = js.expect_status(sent["event_id"].as_str().unwrap(), step).await.unwrap();
    assert_eq!(status["content"]["status"], "FAIL_PERMANENT", "{status}");
    assert!(status["content"]["message"].as_str().unwrap_or_default().contains("withheld"), "{status}");
    js.expect_body(tincan_appservice::bridge::inbox::UNDECRYPTABLE_NOTICE, step).await.unwrap();
    no_message_yet(&mut rx, "the message whose key was withheld did not reach the network");
    assert_eq!(handle.metrics().undecryptable.get(), 1);
    awaiting_room_key(&handle, 0).await;
    js.quit().unwrap();
    bridge.stop().await;
}
