//! The inbox processor: unprocessed events, in inbox order, to the portal that handles them.
//!
//! Events come out of the durable inbox exactly in the order they were recorded. Invites of ghosts are handled
//! here (they create portals, which later events need); every other event of a portal room goes to that
//! portal's queue, whose worker marks it done once handled. Events that concern no portal are marked done at
//! once. After a restart, everything not marked done is read again and handled.

use super::portal::{self, MatrixWork, Work};
use super::{BridgeHandle, Result};
use crate::ids::{PortalKey, RemoteChatId};
use crate::store::{InboxEntry, InboxKind, Portal};
use ruma::events::room::member::MembershipState;
use ruma::events::{AnyMessageLikeEvent, AnyStateEvent, AnyTimelineEvent, MessageLikeEvent, StateEvent};
use ruma::{OwnedEventId, OwnedRoomId, OwnedUserId};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::time::Duration;

const BATCH: i64 = 256;

/// Runs until the bridge shuts down.
pub(crate) async fn run(bridge: BridgeHandle) {
    let mut last_seq = 0;
    let mut shutdown = bridge.0.shutdown.subscribe();
    loop {
        if *shutdown.borrow() {
            return;
        }
        let wakeup = bridge.0.inbox_wakeup.notified();
        match bridge.0.store.pending_after(last_seq, BATCH).await {
            Ok(entries) if entries.is_empty() => {
                if let Ok(n) = bridge.0.store.pending_count().await {
                    bridge.0.metrics.inbox_pending.store(n, std::sync::atomic::Ordering::Relaxed);
                }
                tokio::select! {
                    _ = wakeup => {}
                    _ = shutdown.changed() => {}
                }
            }
            Ok(entries) => {
                for entry in entries {
                    last_seq = entry.seq;
                    if let Err(e) = dispatch(&bridge, entry).await {
                        // Not marked done: retried after a restart. Keep going with the rest.
                        tracing::error!(error = %e, seq = last_seq, "inbox event failed");
                    }
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "reading the inbox failed; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
}

async fn done(bridge: &BridgeHandle, seq: i64) -> Result<()> {
    bridge.0.store.mark_done(seq, bridge.now_ms()).await?;
    bridge.0.metrics.inc(&bridge.0.metrics.events_processed);
    Ok(())
}

/// Routes one inbox event.
async fn dispatch(bridge: &BridgeHandle, entry: InboxEntry) -> Result<()> {
    match entry.kind {
        InboxKind::Timeline => dispatch_timeline(bridge, entry).await,
        InboxKind::Ephemeral => dispatch_ephemeral(bridge, entry).await,
    }
}

async fn dispatch_timeline(bridge: &BridgeHandle, entry: InboxEntry) -> Result<()> {
    let event: AnyTimelineEvent = match serde_json::from_str(&entry.json) {
        Ok(e) => e,
        Err(e) => {
            tracing::debug!(error = %e, seq = entry.seq, "skipping an event ruma cannot parse");
            return done(bridge, entry.seq).await;
        }
    };
    let sender = event.sender().to_owned();
    if sender == bridge.0.bot || bridge.0.namer.is_ghost(&sender) {
        // Our own echoes.
        return done(bridge, entry.seq).await;
    }
    if let AnyTimelineEvent::State(AnyStateEvent::RoomMember(StateEvent::Original(m))) = &event
        && m.content.membership == MembershipState::Invite
    {
        let invitee = OwnedUserId::try_from(m.state_key.as_str()).ok();
        if let Some(invitee) = invitee {
            super::ghost::handle_invite(bridge, &m.room_id, &sender, &invitee).await?;
        }
        return done(bridge, entry.seq).await;
    }
    let room_id = event.room_id().to_owned();
    let Some(portal) = bridge.0.store.portal_by_room(&room_id).await? else {
        return done(bridge, entry.seq).await;
    };
    if sender != portal.key.receiver {
        return done(bridge, entry.seq).await;
    }
    let work = match event {
        AnyTimelineEvent::MessageLike(AnyMessageLikeEvent::RoomMessage(MessageLikeEvent::Original(ev))) => {
            MatrixWork::Message(Box::new(ev))
        }
        AnyTimelineEvent::MessageLike(AnyMessageLikeEvent::Reaction(MessageLikeEvent::Original(ev))) => {
            MatrixWork::Reaction { target: ev.content.relates_to.event_id, key: ev.content.relates_to.key }
        }
        AnyTimelineEvent::MessageLike(AnyMessageLikeEvent::RoomRedaction(
            ruma::events::room::redaction::RoomRedactionEvent::Original(ev),
        )) => match ev.content.redacts.or(ev.redacts) {
            Some(target) => MatrixWork::Redaction { target },
            None => return done(bridge, entry.seq).await,
        },
        AnyTimelineEvent::State(AnyStateEvent::RoomMember(StateEvent::Original(m)))
            if m.state_key == portal.key.receiver.as_str()
                && matches!(m.content.membership, MembershipState::Leave | MembershipState::Ban) =>
        {
            MatrixWork::ReceiverLeft
        }
        _ => return done(bridge, entry.seq).await,
    };
    portal::enqueue(bridge, &portal.key, Work::Matrix { seq: entry.seq, work })
}

/// `m.receipt` content: event ID → receipt type → user → data.
type ReceiptContent = BTreeMap<OwnedEventId, BTreeMap<String, BTreeMap<OwnedUserId, serde_json::Value>>>;

#[derive(Deserialize)]
struct Ephemeral {
    #[serde(rename = "type")]
    kind: String,
    room_id: Option<OwnedRoomId>,
    content: serde_json::Value,
}

#[derive(Deserialize)]
struct TypingContent {
    user_ids: Vec<OwnedUserId>,
}

async fn dispatch_ephemeral(bridge: &BridgeHandle, entry: InboxEntry) -> Result<()> {
    // Ephemeral events in transactions carry `room_id`, which ruma's sync types leave out: read the envelope
    // here and the content with ruma where it fits.
    let Ok(ev) = serde_json::from_str::<Ephemeral>(&entry.json) else {
        return done(bridge, entry.seq).await;
    };
    let Some(room_id) = ev.room_id else {
        return done(bridge, entry.seq).await;
    };
    let Some(portal) = bridge.0.store.portal_by_room(&room_id).await? else {
        return done(bridge, entry.seq).await;
    };
    let receiver = portal.key.receiver.clone();
    let work = match ev.kind.as_str() {
        "m.receipt" => {
            let Ok(content) = serde_json::from_value::<ReceiptContent>(ev.content) else {
                return done(bridge, entry.seq).await;
            };
            let read = content.into_iter().find(|(_, types)| {
                types.get("m.read").or_else(|| types.get("m.read.private")).is_some_and(|u| u.contains_key(&receiver))
            });
            match read {
                Some((event_id, _)) => MatrixWork::ReadReceipt { event_id },
                None => return done(bridge, entry.seq).await,
            }
        }
        "m.typing" => match serde_json::from_value::<TypingContent>(ev.content) {
            Ok(t) => MatrixWork::Typing { typing: t.user_ids.contains(&receiver) },
            Err(_) => return done(bridge, entry.seq).await,
        },
        _ => return done(bridge, entry.seq).await,
    };
    portal::enqueue(bridge, &portal.key, Work::Matrix { seq: entry.seq, work })
}

/// A portal for `receiver` and the remote user behind `ghost`, bound to `room_id`.
pub(crate) fn direct_portal(receiver: OwnedUserId, remote: crate::RemoteUserId, room_id: OwnedRoomId) -> Portal {
    Portal {
        key: PortalKey { receiver, chat: RemoteChatId::from(&remote) },
        room_id: Some(room_id),
        other_user: remote,
        metadata: Default::default(),
    }
}
