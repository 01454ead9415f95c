//! The inbox processor: unprocessed events, in inbox order, to the portal that handles them.
//!
//! Events come out of the durable inbox exactly in the order they were recorded. Invites of ghosts are handled
//! here (they create portals, which later events need); every other event of a portal room goes to that
//! portal's queue, whose worker marks it done once handled. Events that concern no portal are marked done at
//! once. After a restart, everything not marked done is read again and handled.
//!
//! With end-to-bridge encryption, a transaction's crypto entry goes to the ghost devices first, and an
//! `m.room.encrypted` event is decrypted here, before any portal sees it. One that cannot be decrypted yet
//! stays pending: it is tried again whenever a transaction brings room keys for its room, and once
//! `encryption.undecryptable_timeout_secs` have passed on the bridge's clock since the first try, the sender
//! gets a failure status and a notice in the room and the event is marked done (a key arriving after that is
//! not acted on: the sender was told to send again). The wait starts again after a restart.

use super::crypto::CryptoChanges;
use super::portal::{self, MatrixWork, Work};
use super::{BridgeHandle, Result};
use crate::ids::{PortalKey, RemoteChatId};
use crate::store::{InboxEntry, InboxKind, Portal};
use matrix_sdk_crypto::types::events::room::encrypted::EncryptedEvent;
use ruma::events::room::member::MembershipState;
use ruma::events::{AnyMessageLikeEvent, AnyStateEvent, AnyTimelineEvent, MessageLikeEvent, StateEvent};
use ruma::serde::Raw;
use ruma::{OwnedEventId, OwnedRoomId, OwnedUserId, RoomId, UserId};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::time::Duration;

const BATCH: i64 = 256;

/// What the sender of an event the bridge could not decrypt in time reads in the room.
pub const UNDECRYPTABLE_NOTICE: &str =
    "⚠ Your message could not be decrypted by the bridge and was not delivered. Please send it again.";

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

/// Marks an event that needs nothing more done (committed with others: see [`super::done`]).
async fn done(bridge: &BridgeHandle, seq: i64) -> Result<()> {
    bridge.inbox_done(seq, None);
    Ok(())
}

/// Routes one inbox event.
async fn dispatch(bridge: &BridgeHandle, entry: InboxEntry) -> Result<()> {
    match entry.kind {
        InboxKind::Timeline => dispatch_timeline(bridge, entry).await,
        InboxKind::Ephemeral => dispatch_ephemeral(bridge, entry).await,
        InboxKind::Crypto => dispatch_crypto(bridge, entry).await,
    }
}

/// An encrypted inbox event waiting for its room key (left pending in the inbox meanwhile, so a restart
/// tries it again).
#[derive(Debug)]
pub(crate) struct Waiting {
    seq: i64,
    room: OwnedRoomId,
    /// The encrypted event (its status is reported when it is given up on).
    event_id: Option<OwnedEventId>,
    /// The first try, in milliseconds on the bridge's clock.
    since_ms: i64,
}

/// Updates the gauge of events waiting for a room key.
fn count_waiting(bridge: &BridgeHandle, waiting: &[Waiting]) {
    let n = i64::try_from(waiting.len()).unwrap_or(i64::MAX);
    bridge.0.metrics.awaiting_room_key.store(n, std::sync::atomic::Ordering::Relaxed);
}

/// The crypto part of a transaction: to the ghost devices, then a new try at the events waiting for the room
/// keys that came.
async fn dispatch_crypto(bridge: &BridgeHandle, entry: InboxEntry) -> Result<()> {
    let Some(crypto) = &bridge.0.crypto else {
        return done(bridge, entry.seq).await;
    };
    let changes = match serde_json::from_str::<CryptoChanges>(&entry.json) {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!(error = %e, seq = entry.seq, "unreadable crypto entry; skipped");
            return done(bridge, entry.seq).await;
        }
    };
    // A sender's client that withholds a room key says so (`m.room_key.withheld`): the events of that room
    // waiting for a key are tried again, and the ones whose key was withheld fail at once.
    let withheld_rooms: Vec<OwnedRoomId> = changes
        .to_device
        .iter()
        .filter_map(|e| serde_json::from_str::<serde_json::Value>(e.get()).ok())
        .filter(|e| e["type"] == "m.room_key.withheld")
        .filter_map(|e| e["content"]["room_id"].as_str().and_then(|r| OwnedRoomId::try_from(r).ok()))
        .collect();
    let mut rooms = crypto.receive(bridge, changes).await?;
    rooms.extend(withheld_rooms);
    done(bridge, entry.seq).await?;
    if !rooms.is_empty() {
        retry_waiting(bridge, &rooms).await;
    }
    Ok(())
}

/// Tries again the waiting events of `rooms`.
async fn retry_waiting(bridge: &BridgeHandle, rooms: &[OwnedRoomId]) {
    let seqs: Vec<i64> = {
        let waiting = bridge.0.undecryptable.lock().expect("not poisoned");
        waiting.iter().filter(|w| rooms.contains(&w.room)).map(|w| w.seq).collect()
    };
    for seq in seqs {
        match bridge.0.store.pending_after(seq - 1, 1).await {
            Ok(entries) => {
                // Waiting entries are timeline events (this does not recurse into the crypto pass).
                if let Some(entry) = entries.into_iter().find(|e| e.seq == seq)
                    && let Err(e) = dispatch_timeline(bridge, entry).await
                {
                    tracing::warn!(error = %e, seq, "retrying an encrypted event failed");
                }
            }
            Err(e) => tracing::warn!(error = %e, seq, "reading a waiting event failed"),
        }
    }
}

/// Runs until the bridge shuts down: events still undecryptable after the configured wait are given up on
/// with a notice in their room (never a silent loss) and marked done.
pub(crate) async fn expire_undecryptable(bridge: BridgeHandle) {
    let mut shutdown = bridge.0.shutdown.subscribe();
    let tick = (bridge.0.undecryptable_timeout / 4).clamp(Duration::from_millis(100), Duration::from_secs(5));
    loop {
        tokio::select! {
            _ = tokio::time::sleep(tick) => {}
            _ = shutdown.wait_for(|s| *s) => return,
        }
        let now = bridge.now_ms();
        let timeout = i64::try_from(bridge.0.undecryptable_timeout.as_millis()).unwrap_or(i64::MAX);
        let expired: Vec<Waiting> = {
            let mut waiting = bridge.0.undecryptable.lock().expect("not poisoned");
            let (old, young): (Vec<Waiting>, Vec<Waiting>) =
                std::mem::take(&mut *waiting).into_iter().partition(|w| now.saturating_sub(w.since_ms) >= timeout);
            *waiting = young;
            count_waiting(&bridge, &waiting);
            old
        };
        for w in expired {
            tracing::warn!(seq = w.seq, room = %w.room, "no room key came for an encrypted event; telling the sender");
            give_up(&bridge, &w, &super::status::Report::undecryptable()).await;
        }
    }
}

/// Tells the sender of an event the bridge cannot decrypt that it was not delivered (the status `report` and
/// its notice), and marks the event done.
async fn give_up(bridge: &BridgeHandle, w: &Waiting, report: &super::status::Report) {
    bridge.0.metrics.inc(&bridge.0.metrics.undecryptable);
    if let Ok(Some(portal)) = bridge.portal_by_room(&w.room).await {
        match &w.event_id {
            Some(event_id) => {
                let ghost = bridge.0.namer.user_id(&portal.other_user);
                let txn = format!("tc.ud{}", w.seq);
                if let Err(e) = super::status::show(bridge, &w.room, &ghost, event_id, report, &txn).await {
                    tracing::warn!(error = %e, "reporting an undecryptable message failed");
                }
            }
            None => super::remote::send_notice(bridge, &w.room, &portal.other_user, UNDECRYPTABLE_NOTICE).await,
        }
    } else if let (Ok(Some(_)), Some(event_id)) = (bridge.0.store.management_room(&w.room).await, &w.event_id) {
        // A command the bot could not read.
        if let Err(e) = super::commands::reply(bridge, &w.room, event_id, UNDECRYPTABLE_NOTICE).await {
            tracing::warn!(error = %e, "telling the sender of an undecryptable command failed");
        }
    }
    if let Err(e) = done(bridge, w.seq).await {
        tracing::error!(error = %e, seq = w.seq, "marking an undecryptable event done failed");
    }
}

/// What decryption made of an encrypted portal event.
enum Decryption {
    /// The plain event (JSON).
    Plain(String),
    /// Not decryptable yet: it waits for its room key (see [`Waiting`]).
    Later,
    /// The sender's client withheld the room key from the ghost's device (the code says why): it will not come.
    Withheld(Waiting, String),
    /// Not an encrypted event we can read at all.
    Unreadable,
}

/// Decrypts an encrypted event of `room` with the device of `reader` (the ghost of a portal, or the bot in a
/// management room).
async fn decrypt(bridge: &BridgeHandle, seq: i64, json: &str, room: &RoomId, reader: &UserId) -> Decryption {
    let Some(crypto) = &bridge.0.crypto else {
        return Decryption::Unreadable;
    };
    let Ok(raw) = Raw::<EncryptedEvent>::from_json_string(json.to_owned()) else {
        return Decryption::Unreadable;
    };
    let room = room.to_owned();
    match crypto.decrypt(bridge, reader, &room, &raw).await {
        Ok(plain) => {
            bridge.0.metrics.inc(&bridge.0.metrics.decrypted);
            let mut waiting = bridge.0.undecryptable.lock().expect("not poisoned");
            waiting.retain(|w| w.seq != seq);
            count_waiting(bridge, &waiting);
            Decryption::Plain(plain)
        }
        Err(super::crypto::CryptoError::Megolm(matrix_sdk_crypto::MegolmError::MissingRoomKey(Some(code)))) => {
            tracing::info!(%code, seq, %room, "the sender's client withheld the room key from the bridge");
            let mut waiting = bridge.0.undecryptable.lock().expect("not poisoned");
            waiting.retain(|w| w.seq != seq);
            count_waiting(bridge, &waiting);
            let event_id = raw.get_field::<OwnedEventId>("event_id").ok().flatten();
            let w = Waiting { seq, room: room.clone(), event_id, since_ms: bridge.now_ms() };
            Decryption::Withheld(w, code.to_string())
        }
        Err(e) => {
            tracing::debug!(error = %e, seq, %room, "cannot decrypt yet; waiting for the room key");
            let mut waiting = bridge.0.undecryptable.lock().expect("not poisoned");
            if !waiting.iter().any(|w| w.seq == seq) {
                let event_id = raw.get_field::<OwnedEventId>("event_id").ok().flatten();
                waiting.push(Waiting { seq, room: room.clone(), event_id, since_ms: bridge.now_ms() });
                count_waiting(bridge, &waiting);
            }
            Decryption::Later
        }
    }
}

async fn dispatch_timeline(bridge: &BridgeHandle, entry: InboxEntry) -> Result<()> {
    let mut event: AnyTimelineEvent = match serde_json::from_str(&entry.json) {
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
    if let AnyTimelineEvent::State(AnyStateEvent::RoomEncryption(StateEvent::Original(e))) = &event
        && let Some(crypto) = &bridge.0.crypto
    {
        crypto.room_encrypted(&e.room_id, e.content.clone());
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
    let Some(portal) = bridge.portal_by_room(&room_id).await? else {
        if bridge.0.store.management_room(&room_id).await?.is_some_and(|owner| owner == sender) {
            return management_command(bridge, entry, &event).await;
        }
        return done(bridge, entry.seq).await;
    };
    if sender != portal.key.receiver {
        return done(bridge, entry.seq).await;
    }
    // The receiver removed a ghost from the room (a kick, a ban): the connector decides what it means.
    if let AnyTimelineEvent::State(AnyStateEvent::RoomMember(StateEvent::Original(m))) = &event
        && matches!(m.content.membership, MembershipState::Leave | MembershipState::Ban)
        && let Some(user) = bridge.0.namer.remote_id(&m.state_key)
    {
        let banned = m.content.membership == MembershipState::Ban;
        let work = MatrixWork::GhostRemoved { user, reason: m.content.reason.clone(), banned };
        return portal::enqueue(bridge, &portal.key, Work::Matrix { seq: entry.seq, work });
    }
    let mut json = entry.json;
    if let AnyTimelineEvent::MessageLike(AnyMessageLikeEvent::RoomEncrypted(_)) = &event
        && bridge.0.crypto.is_some()
    {
        let (Some(room), ghost) = (&portal.room_id, bridge.0.namer.user_id(&portal.other_user)) else {
            return done(bridge, entry.seq).await;
        };
        event = match decrypt(bridge, entry.seq, &json, room, &ghost).await {
            Decryption::Plain(plain) => match serde_json::from_str::<AnyTimelineEvent>(&plain) {
                Ok(e) if *e.sender() == *sender && *e.room_id() == *room_id => {
                    json = plain;
                    e
                }
                _ => return done(bridge, entry.seq).await,
            },
            // Left pending: tried again when its room key comes, given up on with a notice after the wait.
            Decryption::Later => return Ok(()),
            Decryption::Withheld(w, code) => {
                give_up(bridge, &w, &super::status::Report::withheld(&code)).await;
                return Ok(());
            }
            Decryption::Unreadable => return done(bridge, entry.seq).await,
        };
    }
    let event_type = event.event_type().to_string();
    if event_type.starts_with("m.call.") {
        // Passed as JSON: ruma's call types lag behind what clients send (MSC2746 fields, SDP stream metadata).
        let work = match serde_json::from_str::<CallEnvelope>(&json) {
            Ok(e) => MatrixWork::Call(crate::connector::MatrixCall {
                event_id: e.event_id,
                sender: sender.clone(),
                event_type,
                content: e.content,
            }),
            Err(_) => return done(bridge, entry.seq).await,
        };
        return portal::enqueue(bridge, &portal.key, Work::Matrix { seq: entry.seq, work });
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

/// A message of its user in a management room: a command for the bot. With end-to-bridge encryption the bot
/// reads an encrypted management room with its own device (waiting for the room key like a portal's ghost);
/// without, it says there that it cannot.
async fn management_command(bridge: &BridgeHandle, entry: InboxEntry, event: &AnyTimelineEvent) -> Result<()> {
    let AnyTimelineEvent::MessageLike(message) = event else { return done(bridge, entry.seq).await };
    let room = message.room_id();
    let plain;
    let message = match message {
        AnyMessageLikeEvent::RoomEncrypted(MessageLikeEvent::Original(ev)) => {
            if bridge.0.crypto.is_none() {
                super::commands::reply(bridge, room, &ev.event_id, super::commands::ENCRYPTED).await?;
                return done(bridge, entry.seq).await;
            }
            plain = match decrypt(bridge, entry.seq, &entry.json, room, &bridge.0.bot).await {
                Decryption::Plain(json) => match serde_json::from_str::<AnyMessageLikeEvent>(&json) {
                    Ok(e) if e.sender() == message.sender() && e.room_id() == room => e,
                    _ => return done(bridge, entry.seq).await,
                },
                Decryption::Later => return Ok(()),
                Decryption::Withheld(w, code) => {
                    give_up(bridge, &w, &super::status::Report::withheld(&code)).await;
                    return Ok(());
                }
                Decryption::Unreadable => return done(bridge, entry.seq).await,
            };
            &plain
        }
        other => other,
    };
    if let AnyMessageLikeEvent::RoomMessage(MessageLikeEvent::Original(ev)) = message
        && ev.content.relates_to.is_none()
    {
        super::commands::handle(bridge, room, &ev.sender, &ev.event_id, ev.content.body()).await?;
    }
    done(bridge, entry.seq).await
}

/// The parts of a VoIP event the connector gets.
#[derive(Deserialize)]
struct CallEnvelope {
    event_id: OwnedEventId,
    content: serde_json::Value,
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
    let Some(portal) = bridge.portal_by_room(&room_id).await? else {
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
        is_group: false,
        metadata: Default::default(),
    }
}
