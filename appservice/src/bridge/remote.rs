//! Network → Matrix: a remote event sent into its portal room as the ghost, creating room and ghost on demand.

use super::{BridgeHandle, Result};
use crate::connector::{RemoteEvent, RemoteEventKind};
use crate::ids::{RemoteMessageId, RemoteUserId, escape_localpart};
use crate::store::{MessageMapping, Portal};
use ruma::api::client::config::set_global_account_data;
use ruma::api::client::message::send_message_event;
use ruma::api::client::receipt::create_receipt;
use ruma::api::client::redact::redact_event;
use ruma::api::client::room::{Visibility, create_room};
use ruma::api::client::typing::create_typing_event::{self, v3::Typing};
use ruma::events::MessageLikeEventContent;
use ruma::events::direct::{DirectEventContent, OwnedDirectUserIdentifier};
use ruma::events::reaction::ReactionEventContent;
use ruma::events::receipt::ReceiptThread;
use ruma::events::relation::Annotation;
use ruma::events::room::message::{ReplacementMetadata, RoomMessageEventContent};
use ruma::{OwnedRoomId, OwnedTransactionId, OwnedUserId, RoomId, TransactionId, UserId};

pub(crate) async fn handle(bridge: &BridgeHandle, event: RemoteEvent) -> Result<()> {
    let key = event.portal.clone();
    let (portal, room) = ensure_portal_room(bridge, &event).await?;
    let ghost = super::ghost::ensure_ghost(bridge, &event.sender).await?;
    if event.sender != portal.other_user {
        // Not the DM partner (a later group chat): make sure the ghost is in the room.
        let creator = bridge.0.namer.user_id(&portal.other_user);
        let invite = ruma::api::client::membership::invite_user::v3::Request::new(
            room.clone(),
            ruma::api::client::membership::invite_user::v3::InvitationRecipient::UserId(
                ruma::api::client::membership::invite_user::v3::InviteUserId::new(ghost.clone()),
            ),
        );
        let _ = bridge.0.hs.send(invite, Some(&creator)).await;
        bridge
            .0
            .hs
            .send(ruma::api::client::membership::join_room_by_id::v3::Request::new(room.clone()), Some(&ghost))
            .await?;
    }
    let mapped = |id: &RemoteMessageId| {
        let store = bridge.0.store.clone();
        let key = key.clone();
        let id = id.clone();
        async move { store.message_by_remote(&key, &id).await }
    };
    match event.kind {
        RemoteEventKind::Message { id, body } => {
            if mapped(&id).await?.is_some() {
                return Ok(());
            }
            let txn = txn_id(&ghost, &id, "m");
            let content = RoomMessageEventContent::text_plain(body);
            let event_id = send(bridge, &room, &ghost, txn, &content).await?;
            bridge
                .0
                .store
                .insert_message(&MessageMapping {
                    portal: key,
                    remote_id: id,
                    event_id,
                    room_id: room,
                    sender: ghost,
                    metadata: Default::default(),
                })
                .await?;
        }
        RemoteEventKind::Edit { target, body } => {
            let Some(m) = mapped(&target).await? else { return Ok(()) };
            let content = RoomMessageEventContent::text_plain(body)
                .make_replacement(ReplacementMetadata::new(m.event_id.clone(), None));
            let txn = TransactionId::new();
            send(bridge, &room, &ghost, txn, &content).await?;
        }
        RemoteEventKind::Redaction { target } => {
            let Some(m) = mapped(&target).await? else { return Ok(()) };
            let req = redact_event::v3::Request::new(room, m.event_id, txn_id(&ghost, &target, "r"));
            bridge.0.hs.send(req, Some(&ghost)).await?;
        }
        RemoteEventKind::Reaction { target, key: emoji } => {
            let Some(m) = mapped(&target).await? else { return Ok(()) };
            let content = ReactionEventContent::new(Annotation::new(m.event_id, emoji));
            send(bridge, &room, &ghost, TransactionId::new(), &content).await?;
        }
        RemoteEventKind::ReadReceipt { up_to } => {
            let Some(m) = mapped(&up_to).await? else { return Ok(()) };
            let mut req = create_receipt::v3::Request::new(room, create_receipt::v3::ReceiptType::Read, m.event_id);
            req.thread = ReceiptThread::Unthreaded;
            bridge.0.hs.send(req, Some(&ghost)).await?;
        }
        RemoteEventKind::Typing { timeout } => {
            let state = if timeout.is_zero() {
                Typing::No
            } else {
                Typing::Yes(create_typing_event::v3::TypingInfo::new(timeout))
            };
            let req = create_typing_event::v3::Request::new(ghost.clone(), room, state);
            bridge.0.hs.send(req, Some(&ghost)).await?;
        }
    }
    Ok(())
}

/// A transaction ID that is the same when the same remote event is bridged again, so the homeserver
/// deduplicates a send whose answer was lost.
fn txn_id(ghost: &UserId, id: &RemoteMessageId, what: &str) -> OwnedTransactionId {
    OwnedTransactionId::from(format!(
        "tc.{what}.{}.{}",
        escape_localpart(ghost.localpart()),
        escape_localpart(id.as_str())
    ))
}

async fn send<C: MessageLikeEventContent>(
    bridge: &BridgeHandle,
    room: &RoomId,
    ghost: &UserId,
    txn: OwnedTransactionId,
    content: &C,
) -> Result<ruma::OwnedEventId> {
    let req = send_message_event::v3::Request::new(room.to_owned(), txn, content)
        .map_err(|e| crate::homeserver::HomeserverError::Build(e.to_string()))?;
    Ok(bridge.0.hs.send(req, Some(ghost)).await?.event_id)
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
    let existing = bridge.0.store.portal(&event.portal).await?;
    if let Some(p) = &existing
        && let Some(room) = &p.room_id
    {
        return Ok((p.clone(), room.clone()));
    }
    let other =
        existing.as_ref().map(|p| p.other_user.clone()).unwrap_or_else(|| RemoteUserId(event.portal.chat.0.clone()));
    let ghost = super::ghost::ensure_ghost(bridge, &other).await?;
    let receiver: OwnedUserId = event.portal.receiver.clone();
    let mut req = create_room::v3::Request::new();
    req.invite = vec![receiver.clone()];
    req.is_direct = true;
    req.preset = Some(create_room::v3::RoomPreset::TrustedPrivateChat);
    req.visibility = Visibility::Private;
    let room = bridge.0.hs.send(req, Some(&ghost)).await?.room_id;
    let portal = Portal {
        key: event.portal.clone(),
        room_id: Some(room.clone()),
        other_user: other,
        metadata: existing.map(|p| p.metadata).unwrap_or_default(),
    };
    bridge.0.store.upsert_portal(&portal).await?;
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
