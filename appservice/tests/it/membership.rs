//! Membership changes the receiver makes on Matrix reach the network, against a real Synapse: removing a
//! participant's ghost from a group portal asks the connector (kept participants come back, with a notice),
//! leaving a portal tells it, and a group portal stays a group across a restart and after its room is gone
//! (the chat's next room is a group room again, not a DM). In a direct portal, the partner's ghost removed or
//! the receiver leaving tells the connector and ends the portal.

use crate::e2be::reply;
use crate::group::{chat_info, ghost, joined_ghosts};
use crate::loopback::{Loopback, Seen};
use crate::relations::next_seen;
use crate::synapse::{enc, portal_from_network, room_events, wait_for, world};
use reqwest::Method;
use serde_json::json;
use std::time::Duration;
use tincan_appservice::{Bridge, PortalKey, RemoteChatId};

const A: &str = "+4915100000011";
const B: &str = "+4915100000012";
const C: &str = "+4915100000013";
const BOB: &str = "+4915100000014";
const CAROL: &str = "+4915100000015";
const ALICE: &str = "@alice:hs.test";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kicks_and_leaves_reach_the_network_and_a_group_portal_stays_a_group() {
    let w = world().await;
    let (conn, mut rx) = Loopback::new(&[ALICE]);
    conn.kept.lock().unwrap().push(C.into());
    let bridge = Bridge::builder(w.config.clone()).start(conn).await.unwrap();
    let handle = bridge.handle().clone();
    let store = handle.store().clone();
    let key = PortalKey { receiver: ALICE.try_into().unwrap(), chat: RemoteChatId::new("group-1") };

    chat_info(&handle, &key, A, Some("Team"), &[A, B, C]).await;
    let room = wait_for("the group portal's room", Duration::from_secs(60), || {
        let (store, key) = (store.clone(), key.clone());
        async move { store.portal(&key).await.unwrap().and_then(|p| p.room_id) }
    })
    .await;
    let room_s = room.as_str().to_owned();
    w.alice.call(Method::POST, &format!("/_matrix/client/v3/join/{}", enc(&room_s)), Some(json!({}))).await;
    joined_ghosts(&w.alice, &room_s, &[A, B, C]).await;
    assert!(store.portal(&key).await.unwrap().unwrap().is_group);

    // Alice removes B: the network is asked, agrees, and B's ghost stays out.
    let kick = format!("/_matrix/client/v3/rooms/{}/kick", enc(&room_s));
    w.alice.call(Method::POST, &kick, Some(json!({"user_id": ghost(B), "reason": "spam"}))).await;
    let seen = next_seen(&mut rx, "the kick of B", |s| matches!(s, Seen::Kick(..))).await;
    assert_eq!(seen, Seen::Kick(key.clone(), B.into(), Some("spam".into())));

    // Alice bans C, whom the network keeps: C's ghost comes back and the host says why.
    let ban = format!("/_matrix/client/v3/rooms/{}/ban", enc(&room_s));
    w.alice.call(Method::POST, &ban, Some(json!({"user_id": ghost(C)}))).await;
    let seen = next_seen(&mut rx, "the ban of C", |s| matches!(s, Seen::Kick(..))).await;
    assert_eq!(seen, Seen::Kick(key.clone(), C.into(), None));
    joined_ghosts(&w.alice, &room_s, &[A, C]).await;
    let notice = wait_for("the notice that C stays", Duration::from_secs(60), || {
        let (alice, room) = (w.alice.clone(), room.clone());
        async move { room_events(&alice, &room).await.into_iter().find(|e| e["content"]["msgtype"] == "m.notice") }
    })
    .await;
    assert_eq!(notice["sender"], ghost(A), "{notice}");
    let body = notice["content"]["body"].as_str().unwrap();
    assert!(body.contains(C) && body.contains("the group cannot lose members"), "{body}");

    // The group flag is stored: after a restart the portal is still a group.
    bridge.stop().await;
    let (conn, mut rx) = Loopback::new(&[ALICE]);
    let bridge = Bridge::builder(w.config.clone()).start(conn).await.unwrap();
    let handle = bridge.handle().clone();
    let store = handle.store().clone();
    assert!(store.portal(&key).await.unwrap().unwrap().is_group, "the group flag survives a restart");

    // Alice leaves: the network is told; the room is forgotten, the portal kept as a group hosted by A.
    w.alice.call(Method::POST, &format!("/_matrix/client/v3/rooms/{}/leave", enc(&room_s)), Some(json!({}))).await;
    let seen = next_seen(&mut rx, "alice's leave", |s| matches!(s, Seen::Leave(..))).await;
    assert_eq!(seen, Seen::Leave(key.clone()));
    let portal = wait_for("the room to be forgotten", Duration::from_secs(60), || {
        let (store, key) = (store.clone(), key.clone());
        async move { store.portal(&key).await.unwrap().filter(|p| p.room_id.is_none()) }
    })
    .await;
    assert!(portal.is_group);
    assert_eq!(portal.other_user.as_str(), A);

    // The chat goes on: a new group room (alice a moderator, as in group rooms; not a DM with a ghost named
    // after the chat), hosted by A, C's ghost brought in with its message.
    reply(&handle, &key, C, "g1", "still here").await;
    let new_room = wait_for("the group's new room", Duration::from_secs(60), || {
        let (store, key) = (store.clone(), key.clone());
        async move { store.portal(&key).await.unwrap().and_then(|p| p.room_id) }
    })
    .await;
    assert_ne!(new_room, room);
    let new_s = new_room.as_str().to_owned();
    w.alice.call(Method::POST, &format!("/_matrix/client/v3/join/{}", enc(&new_s)), Some(json!({}))).await;
    joined_ghosts(&w.alice, &new_s, &[A, C]).await;
    let levels = w
        .alice
        .call(Method::GET, &format!("/_matrix/client/v3/rooms/{}/state/m.room.power_levels/", enc(&new_s)), None)
        .await;
    assert_eq!(levels["users"][ALICE], 50, "{levels}");
    let got = wait_for("C's message in the new room", Duration::from_secs(60), || {
        let (alice, room) = (w.alice.clone(), new_room.clone());
        async move { room_events(&alice, &room).await.into_iter().find(|e| e["content"]["body"] == "still here") }
    })
    .await;
    assert_eq!(got["sender"], ghost(C));
    assert!(store.portal(&key).await.unwrap().unwrap().is_group);

    // A direct portal Alice opened (the ghost without power, so she can remove it; in a room the ghost created,
    // or a `trusted_private_chat` one, it is a creator and cannot be kicked): removing the partner's ghost tells
    // the network and ends the portal.
    let created = w
        .alice
        .call(
            Method::POST,
            "/_matrix/client/v3/createRoom",
            Some(json!({"invite": [ghost(BOB)], "is_direct": true, "preset": "private_chat"})),
        )
        .await;
    let dm_room: ruma::OwnedRoomId = created["room_id"].as_str().unwrap().try_into().unwrap();
    let dm = crate::e2be::portal_of(&handle, &dm_room).await;
    let dm_kick = format!("/_matrix/client/v3/rooms/{}/kick", enc(dm_room.as_str()));
    w.alice.call(Method::POST, &dm_kick, Some(json!({"user_id": ghost(BOB)}))).await;
    let seen = next_seen(&mut rx, "the kick of BOB", |s| matches!(s, Seen::Kick(..))).await;
    assert_eq!(seen, Seen::Kick(dm.clone(), BOB.into(), None));
    let dm_gone = || {
        let (store, dm) = (store.clone(), dm.clone());
        async move { store.portal(&dm).await.unwrap().is_none().then_some(()) }
    };
    wait_for("the direct portal to end", Duration::from_secs(60), dm_gone).await;
    // Leaving one the network opened tells the network and ends it too.
    let (dm2, dm2_room) = portal_from_network(&handle, &w.alice, CAROL, "e0").await;
    let leave = format!("/_matrix/client/v3/rooms/{}/leave", enc(dm2_room.as_str()));
    w.alice.call(Method::POST, &leave, Some(json!({}))).await;
    let seen = next_seen(&mut rx, "alice's leave of the DM", |s| matches!(s, Seen::Leave(..))).await;
    assert_eq!(seen, Seen::Leave(dm2.clone()));
    let dm2_gone = || {
        let (store, dm2) = (store.clone(), dm2.clone());
        async move { store.portal(&dm2).await.unwrap().is_none().then_some(()) }
    };
    wait_for("the second direct portal to end", Duration::from_secs(60), dm2_gone).await;
    bridge.stop().await;
}
