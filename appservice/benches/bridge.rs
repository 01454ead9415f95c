//! Throughput of transaction handling (100-event transactions, Synapse's batch size), latency from a remote
//! event to its Matrix event, and throughput of the durable remote queue; without Synapse (the AS API driven
//! directly, a homeserver stub that answers the client-server calls at once) and with a real Synapse.
//!
//! With Synapse, the same 100 events in the clear and with end-to-bridge encryption, both ways (the issue's
//! "encryption costs under 2×" comparison).
//!
//! `bench/appservice/run.sh` (or `cargo bench --workspace --bench bridge`); the Synapse groups need the test venv
//! (`TINCAN_TEST_VENV`), like the integration tests, and are skipped without it. A name filter runs only some
//! groups: `bench/appservice/run.sh transactions/100_events`.

#![allow(missing_docs)]

#[path = "../tests/it/loopback.rs"]
#[allow(dead_code)]
mod loopback;

use axum::extract::Request;
use axum::response::IntoResponse;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use futures::StreamExt;
use loopback::{HS_TOKEN, Loopback, Seen};
use serde_json::json;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tincan_appservice::registration::{Tokens, registration_yaml};
use tincan_appservice::store::{self, Portal};
use tincan_appservice::{Bridge, PortalKey, RemoteChatId, RemoteEvent, RemoteEventKind, RemoteMessageId, RemoteUserId};

const ROOM: &str = "!portal:hs.test";
const ALICE: &str = "@alice:hs.test";

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap()
}

fn transactions(c: &mut Criterion) {
    let rt = rt();
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite:{}", dir.path().join("b.db").display());
    let (bridge, rx) = rt.block_on(async {
        let store = store::connect(&db, 4).await.unwrap();
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
        let (conn, rx) = Loopback::new(&[ALICE]);
        let config = loopback::config("http://127.0.0.1:9", "hs.test", &db);
        (Bridge::builder(config).store(store).start(conn).await.unwrap(), rx)
    });
    let rx = Arc::new(tokio::sync::Mutex::new(rx));
    let http = reqwest::Client::new();
    let txn = AtomicU64::new(0);
    let url = format!("http://{}/_matrix/app/v1/transactions", bridge.local_addr());
    let mut g = c.benchmark_group("transactions");
    g.throughput(Throughput::Elements(100));
    g.sample_size(20);
    g.bench_function("100_events_recorded_and_handled", |b| {
        b.to_async(&rt).iter(|| async {
            let t = txn.fetch_add(1, Ordering::Relaxed);
            let events: Vec<_> = (0..100)
                .map(|i| {
                    json!({"type": "m.room.message", "event_id": format!("$t{t}e{i}"), "sender": ALICE, "room_id": ROOM,
                           "origin_server_ts": 1, "content": {"msgtype": "m.text", "body": "x"}})
                })
                .collect();
            let resp = http
                .put(format!("{url}/b{t}"))
                .bearer_auth(HS_TOKEN)
                .json(&json!({"events": events}))
                .send()
                .await
                .unwrap();
            assert!(resp.status().is_success());
            let mut rx = rx.lock().await;
            for _ in 0..100 {
                assert!(matches!(rx.recv().await, Some(Seen::Message(..))));
            }
        })
    });
    g.finish();
}

/// A homeserver that accepts every call at once (the bridge's own latency, without Synapse's).
async fn scripted_homeserver() -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    async fn answer(req: Request) -> impl IntoResponse {
        let path = req.uri().path().to_owned();
        let body = if path.ends_with("/createRoom") {
            json!({"room_id": ROOM})
        } else if path.contains("/send/") {
            json!({"event_id": format!("$e{}", N.fetch_add(1, Ordering::Relaxed))})
        } else if path.ends_with("/register") {
            json!({"user_id": "@x:hs.test"})
        } else {
            json!({})
        };
        axum::Json(body)
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, axum::Router::new().fallback(answer)).await });
    url
}

fn remote_latency(c: &mut Criterion) {
    let rt = rt();
    let mut g = c.benchmark_group("remote_to_matrix");
    g.sample_size(30);
    for with_synapse in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let db = format!("sqlite:{}", dir.path().join("b.db").display());
        let setup = rt.block_on(async {
            let mut config = loopback::config("http://127.0.0.1:9", "hs.test", &db);
            let synapse = if with_synapse {
                let tokens = Tokens::from_config(&config).unwrap();
                match tincan_testkit::Synapse::builder()
                    .appservice(registration_yaml(&config, "loop_", &tokens))
                    .start()
                    .await
                {
                    Ok(s) => {
                        s.register_user("alice", false).await.unwrap();
                        config.homeserver.url = s.url();
                        Some(s)
                    }
                    Err(e) => {
                        eprintln!("skipping the Synapse group: {e}");
                        return None;
                    }
                }
            } else {
                config.homeserver.url = scripted_homeserver().await;
                None
            };
            let (conn, _rx) = Loopback::new(&[ALICE]);
            Some((Bridge::builder(config).start(conn).await.unwrap(), synapse))
        });
        let Some((bridge, _synapse)) = setup else { continue };
        let handle = bridge.handle().clone();
        let key = PortalKey { receiver: ALICE.try_into().unwrap(), chat: RemoteChatId::new("+4915112345678") };
        let n = AtomicU64::new(0);
        let one = |id: u64| {
            let handle = handle.clone();
            let key = key.clone();
            async move {
                let id = RemoteMessageId::new(format!("m{id}"));
                handle
                    .queue_remote_event(RemoteEvent {
                        portal: key.clone(),
                        sender: RemoteUserId::new("+4915112345678"),
                        kind: RemoteEventKind::Message { id: id.clone(), body: "hi".into() },
                    })
                    .await
                    .unwrap();
                let deadline = Instant::now() + Duration::from_secs(30);
                while handle.store().message_by_remote(&key, &id).await.unwrap().is_none() {
                    assert!(Instant::now() < deadline, "remote event not bridged");
                    tokio::time::sleep(Duration::from_micros(200)).await;
                }
            }
        };
        // The first event creates ghost and portal room; measure steady state.
        rt.block_on(one(n.fetch_add(1, Ordering::Relaxed)));
        let name = if with_synapse { "with_synapse" } else { "scripted_homeserver" };
        g.bench_function(name, |b| b.to_async(&rt).iter(|| one(n.fetch_add(1, Ordering::Relaxed))));
        rt.block_on(bridge.stop());
    }
    g.finish();
}

/// A bridge on the homeserver stub with one portal whose room exists; remote events queued `batch` per call,
/// `per_iter` per iteration, timed until the remote queue is empty (each event recorded, sent, marked done).
fn remote_throughput(c: &mut Criterion) {
    let rt = rt();
    let mut g = c.benchmark_group("remote_queue_100_events");
    g.throughput(Throughput::Elements(100));
    g.sample_size(20);
    for batch in [1usize, 100] {
        let dir = tempfile::tempdir().unwrap();
        let db = format!("sqlite:{}", dir.path().join("b.db").display());
        let bridge = rt.block_on(async {
            let mut config = loopback::config("http://127.0.0.1:9", "hs.test", &db);
            config.homeserver.url = scripted_homeserver().await;
            let (conn, _rx) = Loopback::new(&[ALICE]);
            Bridge::builder(config).start(conn).await.unwrap()
        });
        let handle = bridge.handle().clone();
        let key = PortalKey { receiver: ALICE.try_into().unwrap(), chat: RemoteChatId::new("+4915112345678") };
        let n = AtomicU64::new(0);
        let run = |count: usize| {
            let handle = handle.clone();
            let key = key.clone();
            let first = n.fetch_add(count as u64, Ordering::Relaxed);
            async move {
                let events: Vec<RemoteEvent> = (0..count as u64)
                    .map(|i| RemoteEvent {
                        portal: key.clone(),
                        sender: RemoteUserId::new("+4915112345678"),
                        kind: RemoteEventKind::Message {
                            id: RemoteMessageId::new(format!("t{}", first + i)),
                            body: "hi".into(),
                        },
                    })
                    .collect();
                for chunk in events.chunks(batch) {
                    handle.queue_remote_events(chunk.to_vec()).await.unwrap();
                }
                let deadline = Instant::now() + Duration::from_secs(60);
                while handle.store().remote_pending_count().await.unwrap() > 0 {
                    assert!(Instant::now() < deadline, "remote events not bridged");
                    tokio::time::sleep(Duration::from_micros(500)).await;
                }
            }
        };
        rt.block_on(run(1));
        let name = if batch == 1 { "one_queue_call_per_event" } else { "one_queue_call_per_100" };
        g.bench_function(name, |b| b.to_async(&rt).iter(|| run(100)));
        rt.block_on(bridge.stop());
    }
    g.finish();
}

/// Waits until the remote queue is empty (every event bridged and marked done).
async fn remote_drained(handle: &tincan_appservice::BridgeHandle, within: Duration) {
    let deadline = Instant::now() + within;
    while handle.store().remote_pending_count().await.unwrap() > 0 {
        assert!(Instant::now() < deadline, "remote events not bridged");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// 100 remote messages for `key` (ids from `first`), queued in one call.
fn hundred_remote(key: &PortalKey, from: &str, first: u64) -> Vec<RemoteEvent> {
    (first..first + 100)
        .map(|i| RemoteEvent {
            portal: key.clone(),
            sender: RemoteUserId::new(from),
            kind: RemoteEventKind::Message { id: RemoteMessageId::new(format!("s{i}")), body: format!("s{i}") },
        })
        .collect()
}

/// Waits for `n` messages at the network.
async fn network_gets(rx: &tokio::sync::Mutex<tokio::sync::mpsc::UnboundedReceiver<Seen>>, n: usize) {
    let mut rx = rx.lock().await;
    let mut seen = 0;
    while seen < n {
        if let Some(Seen::Message(..)) = rx.recv().await {
            seen += 1;
        }
    }
}

/// Synapse in the loop, in the clear. Matrix → network: Alice sends 100 messages into a portal (8 in flight),
/// timed until the network has all of them; Synapse batches them into transactions as it does in production.
/// Network → Matrix: 100 remote messages queued in one call, timed until Synapse accepted each.
fn transactions_with_synapse(c: &mut Criterion) {
    let rt = rt();
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite:{}", dir.path().join("b.db").display());
    let setup = rt.block_on(async {
        let mut config = loopback::config("http://127.0.0.1:9", "hs.test", &db);
        let tokens = Tokens::from_config(&config).unwrap();
        let synapse = match tincan_testkit::Synapse::builder()
            .appservice(registration_yaml(&config, "loop_", &tokens))
            .start()
            .await
        {
            Ok(s) => s,
            Err(e) => {
                eprintln!("skipping the Synapse transaction group: {e}");
                return None;
            }
        };
        let alice = synapse.register_user("alice", false).await.unwrap();
        config.homeserver.url = synapse.url();
        let (conn, rx) = Loopback::new(&[ALICE]);
        let bridge = Bridge::builder(config).start(conn).await.unwrap();
        let key = PortalKey { receiver: ALICE.try_into().unwrap(), chat: RemoteChatId::new("+4915112345678") };
        bridge
            .handle()
            .queue_remote_event(RemoteEvent {
                portal: key.clone(),
                sender: RemoteUserId::new("+4915112345678"),
                kind: RemoteEventKind::Message { id: RemoteMessageId::new("hello"), body: "hello".into() },
            })
            .await
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(60);
        let room = loop {
            if let Some(room) = bridge.handle().store().portal(&key).await.unwrap().and_then(|p| p.room_id) {
                break room;
            }
            assert!(Instant::now() < deadline, "no portal room");
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        let http = reqwest::Client::new();
        let join = format!(
            "{}/_matrix/client/v3/join/{}",
            synapse.url(),
            room.as_str().replace('!', "%21").replace(':', "%3A")
        );
        let resp = http.post(join).bearer_auth(&alice.access_token).json(&json!({})).send().await.unwrap();
        assert!(resp.status().is_success());
        let send = format!(
            "{}/_matrix/client/v3/rooms/{}/send/m.room.message",
            synapse.url(),
            room.as_str().replace('!', "%21").replace(':', "%3A")
        );
        Some((synapse, bridge, rx, http, send, alice.access_token, key))
    });
    let Some((_synapse, bridge, rx, http, send, token, key)) = setup else { return };
    let rx = Arc::new(tokio::sync::Mutex::new(rx));
    let txn = AtomicU64::new(0);
    let mut g = c.benchmark_group("transactions");
    g.throughput(Throughput::Elements(100));
    g.sample_size(10);
    g.bench_function("100_messages_through_synapse", |b| {
        b.to_async(&rt).iter(|| async {
            let first = txn.fetch_add(100, Ordering::Relaxed);
            futures::stream::iter(first..first + 100)
                .for_each_concurrent(8, |t| {
                    let req = http
                        .put(format!("{send}/b{t}"))
                        .bearer_auth(&token)
                        .json(&json!({"msgtype": "m.text", "body": format!("m{t}")}));
                    async move { assert!(req.send().await.unwrap().status().is_success()) }
                })
                .await;
            network_gets(&rx, 100).await;
        })
    });
    g.finish();
    let handle = bridge.handle().clone();
    let n = AtomicU64::new(0);
    let mut g = c.benchmark_group("remote_queue_100_events");
    g.throughput(Throughput::Elements(100));
    g.sample_size(10);
    g.bench_function("through_synapse", |b| {
        b.to_async(&rt).iter(|| async {
            let events = hundred_remote(&key, "+4915112345678", n.fetch_add(100, Ordering::Relaxed));
            handle.queue_remote_events(events).await.unwrap();
            remote_drained(&handle, Duration::from_secs(120)).await;
        })
    });
    g.finish();
    rt.block_on(bridge.stop());
}

/// The same with end-to-bridge encryption, Synapse in the loop. Matrix → network: Alice, on Tincan's client
/// core (matrix-sdk), sends 100 encrypted messages into her encrypted DM with a ghost (8 in flight), timed
/// until the network has all of them decrypted. Network → Matrix: 100 remote messages queued in one call into
/// an encrypted portal, timed until Synapse accepted each (encrypted by the ghost's device).
fn encrypted_with_synapse(c: &mut Criterion) {
    let rt = rt();
    let dir = tempfile::tempdir().unwrap();
    let setup = rt.block_on(async {
        let db = format!("sqlite:{}", dir.path().join("b.db").display());
        let mut config = loopback::config("http://127.0.0.1:9", "hs.test", &db);
        config.encryption.enabled = true;
        config.encryption.store_dir = dir.path().join("crypto").display().to_string();
        config.encryption.store_passphrase = tincan_common::Secret::new("bench fixture passphrase");
        let tokens = Tokens::from_config(&config).unwrap();
        let synapse = match tincan_testkit::Synapse::builder()
            .appservice(registration_yaml(&config, "loop_", &tokens))
            .start()
            .await
        {
            Ok(s) => s,
            Err(e) => {
                eprintln!("skipping the encrypted Synapse group: {e}");
                return None;
            }
        };
        config.homeserver.url = synapse.url();
        let (conn, rx) = Loopback::new(&[ALICE]);
        let bridge = Bridge::builder(config).start(conn).await.unwrap();
        let account = synapse.register_user("alice", false).await.unwrap();
        let mut alice =
            tincan_client_core::TincanClient::open(tincan_client_core::ClientConfig::new(dir.path().join("alice")))
                .await
                .unwrap();
        alice
            .login_with_token(&synapse.url(), &account.user_id, &account.device_id, &account.access_token)
            .await
            .unwrap();
        let sync = alice.spawn_sync().unwrap();
        let ghost = ruma::UserId::parse("@loop_+4915112345678:hs.test").unwrap();
        let dm = alice.dm_room(&ghost).await.unwrap();
        let deadline = Instant::now() + Duration::from_secs(60);
        let key = loop {
            if let Some(p) = bridge.handle().store().portal_by_room(dm.room_id()).await.unwrap() {
                break p.key;
            }
            assert!(Instant::now() < deadline, "the ghost did not join");
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        Some((synapse, bridge, rx, alice, sync, dm, key))
    });
    let Some((_synapse, bridge, rx, alice, sync, dm, key)) = setup else { return };
    let rx = Arc::new(tokio::sync::Mutex::new(rx));
    // The first message shares the room key with the ghost's device: steady state from the second on.
    rt.block_on(async {
        dm.send(ruma::events::room::message::RoomMessageEventContent::text_plain("first")).await.unwrap();
        network_gets(&rx, 1).await;
    });
    let txn = AtomicU64::new(0);
    let mut g = c.benchmark_group("transactions");
    g.throughput(Throughput::Elements(100));
    g.sample_size(10);
    g.bench_function("100_encrypted_messages_through_synapse", |b| {
        b.to_async(&rt).iter(|| async {
            let first = txn.fetch_add(100, Ordering::Relaxed);
            futures::stream::iter(first..first + 100)
                .for_each_concurrent(8, |t| {
                    let send =
                        dm.send(ruma::events::room::message::RoomMessageEventContent::text_plain(format!("m{t}")));
                    async move {
                        send.await.unwrap();
                    }
                })
                .await;
            network_gets(&rx, 100).await;
        })
    });
    g.finish();
    let handle = bridge.handle().clone();
    let n = AtomicU64::new(0);
    let mut g = c.benchmark_group("remote_queue_100_events");
    g.throughput(Throughput::Elements(100));
    g.sample_size(10);
    g.bench_function("encrypted_through_synapse", |b| {
        b.to_async(&rt).iter(|| async {
            let events = hundred_remote(&key, "+4915112345678", n.fetch_add(100, Ordering::Relaxed));
            handle.queue_remote_events(events).await.unwrap();
            remote_drained(&handle, Duration::from_secs(120)).await;
        })
    });
    g.finish();
    sync.abort();
    // The client's stores close on the runtime.
    rt.block_on(async move {
        drop((dm, alice));
        bridge.stop().await;
    });
}

criterion_group!(
    benches,
    transactions,
    transactions_with_synapse,
    encrypted_with_synapse,
    remote_latency,
    remote_throughput
);
criterion_main!(benches);
