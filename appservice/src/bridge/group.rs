//! Group portals: a remote chat with several remote participants is one Matrix room holding one ghost per
//! participant, after mautrix bridgev2's `ChatInfo` and member sync.
//!
//! The connector says who is in the chat ([`ChatInfo`], queued like any remote event, so it is durable and
//! ordered with the chat's messages); the room follows: created as a group room (not a DM, encrypted with
//! end-to-bridge encryption) by the first participant's ghost, the portal's *host*, with the receiver
//! invited; a listed participant's ghost is invited by the host and joins; a ghost no longer listed leaves.
//! The host acts for the portal where one ghost has to (decrypting the receiver's messages, status reports,
//! notices); when its participant leaves the chat the next listed participant becomes host first.

use super::{BridgeHandle, Result};
use crate::connector::{ChatInfo, RemoteEvent};
use crate::homeserver::HomeserverError;
use crate::ids::RemoteUserId;
use crate::store::Portal;
use ruma::api::client::membership::invite_user::v3::{self as invite_user, InvitationRecipient, InviteUserId};
use ruma::api::client::membership::{get_member_events, join_room_by_id, leave_room};
use ruma::api::client::room::{Visibility, create_room};
use ruma::api::client::state::{get_state_event_for_key, send_state_event};
use ruma::api::error::ErrorKind;
use ruma::events::room::encryption::RoomEncryptionEventContent;
use ruma::events::room::member::MembershipState;
use ruma::events::room::name::RoomNameEventContent;
use ruma::events::{InitialStateEvent, StateEventType};
use ruma::serde::Raw;
use ruma::{OwnedRoomId, RoomId, UserId};

/// Brings the portal of `event` in step with `info`: its room created when missing, the listed participants'
/// ghosts in it, the others out, the name set.
pub(crate) async fn sync(bridge: &BridgeHandle, event: &RemoteEvent, info: &ChatInfo) -> Result<()> {
    let Some(first) = info.members.first() else {
        // Refused when queued; one queued by an older version is skipped.
        return Ok(());
    };
    let existing = bridge.0.store.portal(&event.portal).await?;
    let (mut portal, room) = match existing {
        Some(p) if p.room_id.is_some() => {
            let room = p.room_id.clone().expect("checked");
            (p, room)
        }
        existing => create_room(bridge, event, info, first, existing).await?,
    };
    let host = super::ghost::ensure_ghost(bridge, &portal.other_user).await?;
    let present = ghosts_in(bridge, &host, &room).await?;
    for member in &info.members {
        if !present.contains(member) {
            join(bridge, &room, &host, member).await?;
        }
    }
    if !info.members.contains(&portal.other_user) {
        // The host's participant left: the next one hosts the portal, before the old host goes.
        portal.other_user = first.clone();
        bridge.0.store.upsert_portal(&portal).await?;
        tracing::info!(%room, host = %first, "group portal has a new host");
    }
    for gone in present.iter().filter(|p| !info.members.contains(p)) {
        let ghost = bridge.0.namer.user_id(gone);
        let mut req = leave_room::v3::Request::new(room.clone());
        req.reason = Some("left the chat".into());
        bridge.0.hs.send(req, Some(&ghost)).await?;
    }
    if let Some(name) = &info.name {
        let host = bridge.0.namer.user_id(&portal.other_user);
        set_name(bridge, &room, &host, name).await?;
    }
    Ok(())
}

/// Creates the group room of `event`'s portal as the ghost of `first`, the receiver invited.
async fn create_room(
    bridge: &BridgeHandle,
    event: &RemoteEvent,
    info: &ChatInfo,
    first: &RemoteUserId,
    existing: Option<Portal>,
) -> Result<(Portal, OwnedRoomId)> {
    let host = super::ghost::ensure_ghost(bridge, first).await?;
    let mut req = create_room::v3::Request::new();
    req.invite = vec![event.portal.receiver.clone()];
    req.preset = Some(create_room::v3::RoomPreset::PrivateChat);
    req.visibility = Visibility::Private;
    req.name = info.name.clone();
    if bridge.0.crypto.is_some() {
        let encryption = RoomEncryptionEventContent::with_recommended_defaults();
        req.initial_state = vec![InitialStateEvent::with_empty_state_key(encryption).to_raw_any()];
    }
    let room = bridge.0.hs.send(req, Some(&host)).await?.room_id;
    let portal = Portal {
        key: event.portal.clone(),
        room_id: Some(room.clone()),
        other_user: first.clone(),
        metadata: existing.map(|p| p.metadata).unwrap_or_default(),
    };
    bridge.0.store.upsert_portal(&portal).await?;
    tracing::info!(%room, members = info.members.len(), "created a group portal room");
    Ok((portal, room))
}

/// The remote participants whose ghosts are in `room` (joined or invited), as `host` sees it.
async fn ghosts_in(bridge: &BridgeHandle, host: &UserId, room: &RoomId) -> Result<Vec<RemoteUserId>> {
    let mut req = get_member_events::v3::Request::new(room.to_owned());
    req.not_membership = Some(MembershipState::Leave);
    let resp = bridge.0.hs.send(req, Some(host)).await?;
    Ok(resp
        .chunk
        .iter()
        .filter_map(|ev| ev.deserialize().ok())
        .filter(|m| matches!(m.membership(), MembershipState::Join | MembershipState::Invite))
        .filter_map(|m| bridge.0.namer.remote_id(m.state_key()))
        .collect())
}

/// Brings the ghost of `member` into `room`: invited by `inviter` (a member), then joined.
pub(crate) async fn join(bridge: &BridgeHandle, room: &RoomId, inviter: &UserId, member: &RemoteUserId) -> Result<()> {
    let ghost = super::ghost::ensure_ghost(bridge, member).await?;
    if *ghost != *inviter {
        let req =
            invite_user::Request::new(room.to_owned(), InvitationRecipient::UserId(InviteUserId::new(ghost.clone())));
        match bridge.0.hs.send(req, Some(inviter)).await {
            Ok(_) => {}
            // Already invited or in the room.
            Err(HomeserverError::Matrix(e)) if matches!(e.error_kind(), Some(ErrorKind::Forbidden)) => {}
            Err(e) => return Err(e.into()),
        }
    }
    bridge.0.hs.send(join_room_by_id::v3::Request::new(room.to_owned()), Some(&ghost)).await?;
    Ok(())
}

/// Sets the room name as `host` unless it is that already.
async fn set_name(bridge: &BridgeHandle, room: &RoomId, host: &UserId, name: &str) -> Result<()> {
    let req = get_state_event_for_key::v3::Request::new(room.to_owned(), StateEventType::RoomName, String::new());
    let current = match bridge.0.hs.send(req, Some(host)).await {
        Ok(resp) => resp.into_content().deserialize_as_unchecked::<RoomNameEventContent>().ok().map(|c| c.name),
        Err(e) if matches!(e.kind(), Some(ErrorKind::NotFound)) => None,
        Err(e) => return Err(e.into()),
    };
    if current.as_deref() == Some(name) {
        return Ok(());
    }
    let content = Raw::new(&RoomNameEventContent::new(name.to_owned()))
        .map_err(|e| super::BridgeError::Encode(e.to_string()))?
        .cast_unchecked();
    let req = send_state_event::v3::Request::new_raw(room.to_owned(), StateEventType::RoomName, String::new(), content);
    bridge.0.hs.send(req, Some(host)).await?;
    Ok(())
}
