//! Nothing from the network is lost or doubled when the homeserver fails or the bridge crashes: remote events
//! are recorded before the queue call returns, wait in order while the homeserver refuses them, and replay
//! after a restart with the same transaction IDs, so Synapse keeps exactly one copy of each.

use crate::gate::{Gate, Mode};
use crate::loopback::Loopback;
use crate::synapse::{Client, World, portal_from_network, remote_queue_drained, room_events, wait_for, world};
use serde_json::json;
use std::time::Duration;
use tincan_appservice::{Bridge, PortalKey, RemoteEvent, RemoteEventKind, RemoteMessageId, RemoteUserId};

const BOB: &str = "+4915112345678";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remote_events_survive_homeserver_errors_and_a_crash_and_arrive_once_in_order() {
    let w = world().await;
    let (gate, config, bridge, handle, key, room) = portal_behind_gate(&w).await;

    // The homeserver fails: queued events are recorded at once and the portal waits, retrying.
    gate.set(Mode::Fail);
    let event = |n: u32| RemoteEvent {
        portal: key.clone(),
        sender: RemoteUserId::new(BOB),
        kind: RemoteEventKind::Message { id: RemoteMessageId::new(format!("m{n}")), body: format!("m{n}") },
    };
    for n in 1..=3 {
        handle.queue_remote_event(event(n)).await.unwrap();
    }
    handle.queue_remote_events(vec![event(4), event(5)]).await.unwrap();
    assert_eq!(handle.store().remote_pending_count().await.unwrap(), 5);
    wait_for("a failed attempt", Duration::from_secs(60), || {
        let n = handle.metrics().hs_retries.get();
        async move { (n > 0).then_some(()) }
    })
    .await;

    // Synapse takes m1 but the answer never reaches the bridge, which then crashes.
    gate.set(Mode::SwallowSendAnswers);
    wait_for("Synapse to accept m1", Duration::from_secs(90), || {
        let n = gate.swallowed();
        async move { (n > 0).then_some(()) }
    })
    .await;
    bridge.stop().await;
    assert_eq!(handle.store().remote_pending_count().await.unwrap(), 5, "nothing was marked done");

    // Restart with the homeserver back: everything is delivered, m1 not twice.
    gate.set(Mode::Open);
    let (bridge, handle) = restart_and_drain(config).await;
    let bodies = ghost_bodies(&w.alice, &room).await;
    assert_eq!(bodies, ["m0", "m1", "m2", "m3", "m4", "m5"]);
    // Each remote message is mapped to the Matrix event it became.
    for n in 0..=5 {
        let m = handle.store().message_by_remote(&key, &RemoteMessageId::new(format!("m{n}"))).await.unwrap();
        assert!(m.is_some_and(|m| m.room_id == room), "m{n} not mapped");
    }
    let metrics = handle.metrics().render();
    assert!(metrics.contains("tincan_appservice_remote_failures_total 0\n"), "{metrics}");
    bridge.stop().await;
}

/// The dedupe does not rest on the homeserver's memory: Synapse takes m1, its answer is lost, the bridge
/// crashes, and Synapse restarts too (its in-memory transaction cache is gone) before the bridge comes back and
/// replays m1 with the same transaction ID. Ghosts send from a device, so Synapse finds the transaction in its
/// database and answers with the first event: the room holds m1 once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replayed_remote_message_is_not_doubled_when_the_homeserver_restarted_meanwhile() {
    let mut w = world().await;
    let (gate, config, bridge, handle, key, room) = portal_behind_gate(&w).await;

    gate.set(Mode::SwallowSendAnswers);
    handle
        .queue_remote_event(RemoteEvent {
            portal: key.clone(),
            sender: RemoteUserId::new(BOB),
            kind: RemoteEventKind::Message { id: RemoteMessageId::new("m1"), body: "m1".into() },
        })
        .await
        .unwrap();
    wait_for("Synapse to accept m1", Duration::from_secs(90), || {
        let n = gate.swallowed();
        async move { (n > 0).then_some(()) }
    })
    .await;
    bridge.stop().await;
    assert_eq!(handle.store().remote_pending_count().await.unwrap(), 1, "m1 was not marked done");

    w.synapse.start_again().await.unwrap();
    gate.set(Mode::Open);
    let (bridge, handle) = restart_and_drain(config).await;
    let bodies = ghost_bodies(&w.alice, &room).await;
    assert_eq!(bodies, ["m0", "m1"], "m1 once, although Synapse forgot its transaction cache");
    let m1 = handle.store().message_by_remote(&key, &RemoteMessageId::new("m1")).await.unwrap().expect("m1 mapped");
    let events = room_events(&w.alice, &room).await;
    let first = events.iter().find(|e| e["content"]["body"] == "m1").expect("m1 in the room");
    assert_eq!(first["event_id"], json!(m1.event_id), "the replay was answered with the first event");
    bridge.stop().await;
}

/// Starts the bridge again on `config` and waits until its remote queue is empty.
async fn restart_and_drain(config: tincan_appservice::AppserviceConfig) -> (Bridge, tincan_appservice::BridgeHandle) {
    let (conn, _rx) = Loopback::new(&["@alice:hs.test"]);
    let bridge = Bridge::builder(config).start(conn).await.unwrap();
    let handle = bridge.handle().clone();
    remote_queue_drained(&handle, Duration::from_secs(120)).await;
    (bridge, handle)
}

/// The bodies of the messages Bob's ghost posted in `room`, oldest first.
async fn ghost_bodies(alice: &Client, room: &ruma::RoomId) -> Vec<String> {
    let ghost = json!(format!("@loop_{BOB}:hs.test"));
    room_events(alice, room)
        .await
        .iter()
        .filter(|e| e["type"] == "m.room.message" && e["sender"] == ghost)
        .map(|e| e["content"]["body"].as_str().unwrap().to_owned())
        .collect()
}

/// The bridge on `w`'s config with Synapse behind a [`Gate`], and a portal opened from the network with m0
/// bridged: the gate, that config, the bridge, its handle, the portal and its room.
async fn portal_behind_gate(
    w: &World,
) -> (Gate, tincan_appservice::AppserviceConfig, Bridge, tincan_appservice::BridgeHandle, PortalKey, ruma::OwnedRoomId)
{
    let gate = Gate::start(&w.synapse.url()).await;
    let mut config = w.config.clone();
    config.homeserver.url = gate.url.clone();
    let (conn, _rx) = Loopback::new(&["@alice:hs.test"]);
    let bridge = Bridge::builder(config.clone()).start(conn).await.unwrap();
    let handle = bridge.handle().clone();
    let (key, room) = portal_from_network(&handle, &w.alice, BOB, "m0").await;
    remote_queue_drained(&handle, Duration::from_secs(60)).await;
    (gate, config, bridge, handle, key, room)
}
