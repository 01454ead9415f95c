//! Network → Matrix: a queued remote event sent into its portal room as the ghost, creating room and ghost on
//! demand; retried until the homeserver takes it, then marked done in the remote queue.

use super::crypto::CryptoError;
use super::{BridgeError, BridgeHandle, Result};
use crate::connector::{RemoteEvent, RemoteEventKind};
use crate::homeserver::HomeserverError;
use crate::ids::{RemoteMessageId, RemoteUserId, escape_localpart};
use crate::store::{MessageMapping, Portal};
use ruma::api::client::config::set_global_account_data;
use ruma::api::client::message::send_message_event;
use ruma::api::client::receipt::create_receipt;
use ruma::api::client::redact::redact_event;
use ruma::api::client::room::{Visibility, create_room};
use ruma::api::client::typing::create_typing_event::{self, v3::Typing};
use ruma::api::error::ErrorKind;
use ruma::events::direct::{DirectEventContent, OwnedDirectUserIdentifier};
use ruma::events::reaction::ReactionEventContent;
use ruma::events::receipt::ReceiptThread;
use ruma::events::relation::Annotation;
use ruma::events::room::encryption::RoomEncryptionEventContent;
use ruma::events::room::message::{ReplacementMetadata, RoomMessageEventContent};
use ruma::events::{AnyMessageLikeEventContent, InitialStateEvent, MessageLikeEventContent, MessageLikeEventType};
use ruma::serde::Raw;
use ruma::{OwnedRoomId, OwnedTransactionId, OwnedUserId, RoomId, TransactionId, UserId};
use std::time::Duration;
use tokio::sync::watch;

/// Longest wait between two attempts at a remote event the homeserver keeps refusing for now.
const MAX_BACKOFF: Duration = Duration::from_secs(60);

/// Bridges the remote event recorded at `seq` and marks it done. While the failure is temporary (homeserver
/// unreachable, 5xx, rate limited beyond the client's own retries, database busy) it tries again with backoff,
/// holding up the rest of this portal's queue so that order is kept; a permanent refusal is logged and the
/// event marked done so the portal moves on. Returns `false` when the bridge shut down first (the event stays
/// recorded and replays at the next start).
pub(crate) async fn bridge_until_done(
    bridge: &BridgeHandle,
    seq: i64,
    event: RemoteEvent,
    shutdown: &mut watch::Receiver<bool>,
) -> bool {
    let mut delay = Duration::from_millis(500);
    let mapping = loop {
        // Cancelled with the bridge, like a crash: whatever the homeserver got is resent with the same
        // transaction ID after the restart.
        let result = tokio::select! {
            r = handle(bridge, seq, &event) => r,
            _ = shutdown.wait_for(|s| *s) => return false,
        };
        match result {
            Ok(mapping) => {
                bridge.0.metrics.inc(&bridge.0.metrics.remote_bridged);
                break mapping;
            }
            Err(e) if is_temporary(&e) => {
                bridge.0.metrics.inc(&bridge.0.metrics.remote_retries);
                tracing::warn!(error = %e, seq, ?delay, "remote event not bridged yet; the portal waits and retries");
            }
            Err(e) => {
                bridge.0.metrics.inc(&bridge.0.metrics.remote_failures);
                tracing::warn!(error = %e, seq, "remote event refused for good; skipped");
                break None;
            }
        }
        if !pause(delay, shutdown).await {
            return false;
        }
        delay = (delay * 2).min(MAX_BACKOFF);
    };
    bridge.remote_done(seq, mapping);
    true
}

/// Sleeps `delay` unless the bridge shuts down first (then `false`).
async fn pause(delay: Duration, shutdown: &mut watch::Receiver<bool>) -> bool {
    tokio::select! {
        _ = tokio::time::sleep(delay) => true,
        _ = shutdown.wait_for(|s| *s) => false,
    }
}

/// Whether trying the same remote event later may succeed.
fn is_temporary(e: &BridgeError) -> bool {
    match e {
        BridgeError::Homeserver(h) | BridgeError::Crypto(CryptoError::Homeserver(h)) => match h {
            HomeserverError::Transport(_) => true,
            HomeserverError::Matrix(m) => {
                m.status_code.is_server_error() || matches!(m.error_kind(), Some(ErrorKind::LimitExceeded(_)))
            }
            _ => false,
        },
        BridgeError::Store(_)
        | BridgeError::Crypto(
            CryptoError::Store(_)
            | CryptoError::Open(_)
            | CryptoError::DbStore(super::crypto::DbCryptoStoreError::Database(_)),
        ) => true,
        _ => false,
    }
}

/// Hands every remote event not marked done to its portal's queue, oldest first (at start, before the
/// connector can queue new ones).
pub(crate) async fn replay(bridge: &BridgeHandle) -> Result<()> {
    let mut after = 0;
    let mut replayed = 0u64;
    loop {
        let page = bridge.0.store.remote_pending_after(after, 500).await?;
        if page.is_empty() {
            break;
        }
        for entry in page {
            after = entry.seq;
            match serde_json::from_str::<RemoteEvent>(&entry.json) {
                Ok(event) => {
                    let key = event.portal.clone();
                    super::portal::enqueue(bridge, &key, super::portal::Work::Remote { seq: entry.seq, event })?;
                    replayed += 1;
                }
                Err(e) => {
                    bridge.0.metrics.inc(&bridge.0.metrics.remote_failures);
                    tracing::error!(error = %e, seq = entry.seq, "unreadable remote event in the queue; skipped");
                    bridge.0.store.complete_remote(entry.seq, None, bridge.now_ms()).await?;
                }
            }
        }
    }
    if replayed > 0 {
        tracing::info!(replayed, "bridging remote events left over from the last run");
    }
    Ok(())
}

/// Sends one remote event into its portal room as the ghost; returns the message mapping to record with it.
async fn handle(bridge: &BridgeHandle, seq: i64, event: &RemoteEvent) -> Result<Option<MessageMapping>> {
    let key = event.portal.clone();
    if let RemoteEventKind::ChatInfo(info) = &event.kind {
        super::group::sync(bridge, event, info).await?;
        return Ok(None);
    }
    let (portal, room) = ensure_portal_room(bridge, event).await?;
    let ghost = super::ghost::ensure_ghost(bridge, &event.sender).await?;
    if event.sender != portal.other_user {
        // Not the portal's host (a group chat): make sure the sender's ghost is in the room.
        let host = bridge.0.namer.user_id(&portal.other_user);
        super::group::join(bridge, &room, &host, &event.sender).await?;
    }
    let mapped = |id: &RemoteMessageId| {
        let key = key.clone();
        let id = id.clone();
        async move { bridge.message_by_remote(&key, &id).await }
    };
    match &event.kind {
        RemoteEventKind::Message { id, body } => {
            if mapped(id).await?.is_some() {
                return Ok(None);
            }
            let content = RoomMessageEventContent::text_plain(body.clone());
            let event_id = send(bridge, &room, &ghost, message_txn_id(&ghost, id), &content).await?;
            return Ok(Some(MessageMapping {
                portal: key,
                remote_id: id.clone(),
                event_id,
                room_id: room,
                sender: ghost,
                metadata: Default::default(),
            }));
        }
        RemoteEventKind::Edit { target, body } => {
            let Some(m) = mapped(target).await? else { return Ok(None) };
            let content = RoomMessageEventContent::text_plain(body.clone())
                .make_replacement(ReplacementMetadata::new(m.event_id.clone(), None));
            send(bridge, &room, &ghost, queued_txn_id(seq, "e"), &content).await?;
        }
        RemoteEventKind::Redaction { target } => {
            let Some(m) = mapped(target).await? else { return Ok(None) };
            let req = redact_event::v3::Request::new(room, m.event_id, queued_txn_id(seq, "r"));
            let device = super::ghost::send_device(bridge, &ghost).await?;
            bridge.0.hs.send_from(req, &ghost, device.as_deref()).await?;
        }
        RemoteEventKind::Reaction { target, key: emoji } => {
            let Some(m) = mapped(target).await? else { return Ok(None) };
            let content = ReactionEventContent::new(Annotation::new(m.event_id, emoji.clone()));
            send(bridge, &room, &ghost, queued_txn_id(seq, "a"), &content).await?;
        }
        RemoteEventKind::ReadReceipt { up_to } => {
            let Some(m) = mapped(up_to).await? else { return Ok(None) };
            let mut req = create_receipt::v3::Request::new(room, create_receipt::v3::ReceiptType::Read, m.event_id);
            req.thread = ReceiptThread::Unthreaded;
            bridge.0.hs.send(req, Some(&ghost)).await?;
        }
        RemoteEventKind::Media { id, kind, media, caption } => {
            if mapped(id).await?.is_some() {
                return Ok(None);
            }
            let content = super::media::content(bridge, &room, &ghost, *kind, media, caption.as_deref()).await?;
            let txn = message_txn_id(&ghost, id);
            let event_id = send_raw(bridge, &room, &ghost, txn, "m.room.message", content).await?;
            return Ok(Some(MessageMapping {
                portal: key,
                remote_id: id.clone(),
                event_id,
                room_id: room,
                sender: ghost,
                metadata: Default::default(),
            }));
        }
        RemoteEventKind::MessageStatus { event_id, status } => {
            let report = super::status::Report::of(status);
            super::status::show(bridge, &room, &ghost, event_id, &report, queued_txn_id(seq, "st").as_str()).await?;
        }
        RemoteEventKind::Call { event_type, content } => {
            let raw = Raw::new(content).map_err(|e| BridgeError::Encode(e.to_string()))?.cast_unchecked();
            send_raw(bridge, &room, &ghost, queued_txn_id(seq, "c"), event_type, raw).await?;
        }
        RemoteEventKind::ChatInfo(_) => {}
        RemoteEventKind::Typing { timeout } => {
            let state = if timeout.is_zero() {
                Typing::No
            } else {
                Typing::Yes(create_typing_event::v3::TypingInfo::new(*timeout))
            };
            let req = create_typing_event::v3::Request::new(ghost.clone(), room, state);
            bridge.0.hs.send(req, Some(&ghost)).await?;
        }
    }
    Ok(None)
}

/// The transaction ID of a remote message: the same whenever that message is bridged again (after a crash, or
/// queued twice by the connector), so the homeserver deduplicates a send whose answer was lost. Synapse keys
/// its in-memory transaction cache by path and appservice, not by the asserted user, hence the ghost in the ID;
/// its database keeps the ID per user and device for a day (ghosts send from a device: `ghost::send_device`).
fn message_txn_id(ghost: &UserId, id: &RemoteMessageId) -> OwnedTransactionId {
    OwnedTransactionId::from(format!("tc.m.{}.{}", escape_localpart(ghost.localpart()), escape_localpart(id.as_str())))
}

/// The transaction ID of the remote event queued at `seq` (edits, reactions, redactions): fixed for that event.
fn queued_txn_id(seq: i64, what: &str) -> OwnedTransactionId {
    OwnedTransactionId::from(format!("tc.q{seq}.{what}"))
}

/// Sends `content` into `room` as `ghost`: encrypted with the ghost's device when the room is encrypted (and
/// end-to-bridge encryption is on), else in the clear.
pub(super) async fn send<C: MessageLikeEventContent>(
    bridge: &BridgeHandle,
    room: &RoomId,
    ghost: &UserId,
    txn: OwnedTransactionId,
    content: &C,
) -> Result<ruma::OwnedEventId> {
    let raw = Raw::new(content).map_err(|e| BridgeError::Encode(e.to_string()))?.cast_unchecked();
    send_raw(bridge, room, ghost, txn, &content.event_type().to_string(), raw).await
}

/// [`send`] for content as JSON, of any event type (status events, media with an encrypted `file`).
pub(super) async fn send_raw(
    bridge: &BridgeHandle,
    room: &RoomId,
    ghost: &UserId,
    txn: OwnedTransactionId,
    event_type: &str,
    raw: Raw<AnyMessageLikeEventContent>,
) -> Result<ruma::OwnedEventId> {
    if let Some(crypto) = &bridge.0.crypto
        && let Some(settings) = crypto.room_encryption(bridge, ghost, room).await?
    {
        let (device, encrypted) = crypto.encrypt(bridge, ghost, room, settings, event_type, &raw).await?;
        let req = send_message_event::v3::Request::new_raw(
            room.to_owned(),
            txn,
            MessageLikeEventType::RoomEncrypted,
            encrypted,
        );
        let event_id = bridge.0.hs.send_as_device(req, ghost, device.device_id()).await?.event_id;
        bridge.0.metrics.inc(&bridge.0.metrics.encrypted);
        return Ok(event_id);
    }
    let req = send_message_event::v3::Request::new_raw(room.to_owned(), txn, event_type.into(), raw);
    let device = super::ghost::send_device(bridge, ghost).await?;
    Ok(bridge.0.hs.send_from(req, ghost, device.as_deref()).await?.event_id)
}

/// Posts a notice from the DM partner's ghost (delivery failures); failures to post are only logged.
pub(crate) async fn send_notice(bridge: &BridgeHandle, room: &RoomId, other: &RemoteUserId, text: &str) {
    let ghost = bridge.0.namer.user_id(other);
    let content = RoomMessageEventContent::notice_plain(text);
    if let Err(e) = send(bridge, room, &ghost, TransactionId::new(), &content).await {
        tracing::warn!(error = %e, "posting a notice failed");
    }
}

/// The portal of `event` with its room, created (DM from the ghost, receiver invited) when missing.
async fn ensure_portal_room(bridge: &BridgeHandle, event: &RemoteEvent) -> Result<(Portal, OwnedRoomId)> {
    let existing = bridge.portal(&event.portal).await?;
    if let Some(p) = &existing
        && let Some(room) = &p.room_id
    {
        return Ok((p.clone(), room.clone()));
    }
    let other =
        existing.as_ref().map(|p| p.other_user.clone()).unwrap_or_else(|| RemoteUserId(event.portal.chat.0.clone()));
    if existing.as_ref().is_some_and(|p| p.is_group) {
        // A group chat whose room went (the receiver left it): a group room again, hosted as before; the
        // sender's ghost joins it with the event.
        let info = crate::connector::ChatInfo { name: None, members: vec![other.clone()] };
        return super::group::create_room(bridge, event, &info, &other, existing).await;
    }
    let ghost = super::ghost::ensure_ghost(bridge, &other).await?;
    let receiver: OwnedUserId = event.portal.receiver.clone();
    let mut req = create_room::v3::Request::new();
    req.invite = vec![receiver.clone()];
    req.is_direct = true;
    req.preset = Some(create_room::v3::RoomPreset::TrustedPrivateChat);
    req.visibility = Visibility::Private;
    if bridge.0.crypto.is_some() {
        // With end-to-bridge encryption the bridge opens encrypted portals (Tincan's client uses no other).
        let encryption = RoomEncryptionEventContent::with_recommended_defaults();
        req.initial_state = vec![InitialStateEvent::with_empty_state_key(encryption).to_raw_any()];
    }
    let room = bridge.0.hs.send(req, Some(&ghost)).await?.room_id;
    let portal = Portal {
        key: event.portal.clone(),
        room_id: Some(room.clone()),
        other_user: other,
        is_group: false,
        metadata: existing.map(|p| p.metadata).unwrap_or_default(),
    };
    bridge.upsert_portal(&portal).await?;
    // The ghost's side of the DM; the receiver's client marks it direct from the invite's `is_direct`.
    let mut direct = DirectEventContent::default();
    direct.insert(OwnedDirectUserIdentifier::from(receiver), vec![room.clone()]);
    if let Ok(req) = set_global_account_data::v3::Request::new(ghost.clone(), &direct)
        && let Err(e) = bridge.0.hs.send(req, Some(&ghost)).await
    {
        tracing::debug!(error = %e, "setting m.direct for the ghost failed");
    }
    tracing::info!(%room, "created a portal room");
    Ok((portal, room))
}
