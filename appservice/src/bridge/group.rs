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
use crate::connector::{ChatInfo, ConnectorError, PortalRef, RemoteEvent};
use crate::homeserver::HomeserverError;
use crate::ids::RemoteUserId;
use crate::store::Portal;
use ruma::api::client::membership::invite_user::v3::{self as invite_user, InvitationRecipient, InviteUserId};
use ruma::api::client::membership::{get_member_events, join_room_by_id, leave_room, unban_user};
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
    let existing = bridge.portal(&event.portal).await?;
    let (mut portal, room) = match existing {
        Some(p) if p.room_id.is_some() => {
            let room = p.room_id.clone().expect("checked");
            (p, room)
        }
        existing => create_room(bridge, event, info, first, existing).await?,
    };
    if !portal.is_group {
        // A chat known as direct until now turns out to be a group.
        portal.is_group = true;
        bridge.upsert_portal(&portal).await?;
    }
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
        bridge.upsert_portal(&portal).await?;
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

/// Creates the group room of `event`'s portal as the ghost of `first`, the receiver invited as a moderator
/// (so that they can remove participants' ghosts, see [`ghost_removed`]).
pub(crate) async fn create_room(
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
    make_moderator(bridge, &room, &host, &event.portal.receiver).await?;
    let portal = Portal {
        key: event.portal.clone(),
        room_id: Some(room.clone()),
        other_user: first.clone(),
        is_group: true,
        metadata: existing.map(|p| p.metadata).unwrap_or_default(),
    };
    bridge.upsert_portal(&portal).await?;
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

/// Gives `user` power level 50 in `room` (kick and ban at the defaults), as `host`, the room's creator. Done
/// after the room is created rather than with `power_level_content_override`: its `users` must name the
/// creator in room versions before 12 and must not in version 12, and the bridge does not choose the version.
async fn make_moderator(bridge: &BridgeHandle, room: &RoomId, host: &UserId, user: &UserId) -> Result<()> {
    let req =
        get_state_event_for_key::v3::Request::new(room.to_owned(), StateEventType::RoomPowerLevels, String::new());
    let resp = bridge.0.hs.send(req, Some(host)).await?;
    let mut levels: serde_json::Value =
        resp.into_content().deserialize_as_unchecked().map_err(|e| super::BridgeError::Encode(e.to_string()))?;
    if !levels["users"].is_object() {
        levels["users"] = serde_json::json!({});
    }
    levels["users"][user.as_str()] = serde_json::json!(50);
    let content = Raw::new(&levels).map_err(|e| super::BridgeError::Encode(e.to_string()))?.cast_unchecked();
    let req = send_state_event::v3::Request::new_raw(
        room.to_owned(),
        StateEventType::RoomPowerLevels,
        String::new(),
        content,
    );
    bridge.0.hs.send(req, Some(host)).await?;
    Ok(())
}

/// The receiver left the portal's room: the connector is told (its answer only logged: the user is gone from
/// the room either way), and the room is forgotten. A direct portal is deleted; a group portal is kept without
/// a room (its group flag, host and metadata survive, so the chat's next event opens a group room again) and
/// its ghosts leave the old room.
pub(crate) async fn receiver_left(bridge: &BridgeHandle, mut portal: Portal) -> Result<()> {
    match bridge.login(&portal.key.receiver).await {
        Ok(Some(api)) => match api.handle_matrix_leave(&PortalRef::from(&portal)).await {
            Ok(()) | Err(ConnectorError::Unsupported) => {}
            Err(e) => tracing::warn!(error = %e, "the network did not take the user's leave"),
        },
        Ok(None) => {}
        Err(e) => tracing::warn!(error = %e, "no login to tell the network of the user's leave"),
    }
    let Some(room) = portal.room_id.take() else { return Ok(()) };
    if !portal.is_group {
        bridge.delete_portal(&portal.key).await?;
        tracing::info!(%room, "receiver left; portal forgotten");
        return Ok(());
    }
    bridge.upsert_portal(&portal).await?;
    tracing::info!(%room, "receiver left a group portal; its room is forgotten, the portal kept");
    let host = bridge.0.namer.user_id(&portal.other_user);
    let mut ghosts = ghosts_in(bridge, &host, &room).await.unwrap_or_default();
    ghosts.retain(|g| *g != portal.other_user);
    // The host last: the others may need it to see the room's members.
    ghosts.push(portal.other_user.clone());
    for g in ghosts {
        let mut req = leave_room::v3::Request::new(room.clone());
        req.reason = Some("the user left the chat".into());
        if let Err(e) = bridge.0.hs.send(req, Some(&bridge.0.namer.user_id(&g))).await {
            tracing::debug!(error = %e, "a ghost leaving a forgotten group room failed");
        }
    }
    Ok(())
}

/// The receiver kicked (or banned) the ghost of `user` from the portal's room. In a group the connector
/// decides: `Ok` and the participant is gone (when it hosted the portal, the next ghost in the room hosts it);
/// an error and the ghost comes back (unbanned, invited, joined) with a notice saying why. In a direct chat the
/// partner's ghost removed ends the portal: the connector is told, the portal forgotten.
pub(crate) async fn ghost_removed(
    bridge: &BridgeHandle,
    mut portal: Portal,
    user: &RemoteUserId,
    reason: Option<&str>,
    banned: bool,
) -> Result<()> {
    let Some(room) = portal.room_id.clone() else { return Ok(()) };
    if !portal.is_group && *user != portal.other_user {
        // Not a participant of this direct chat.
        return Ok(());
    }
    let verdict = match bridge.login(&portal.key.receiver).await? {
        Some(api) => api.handle_matrix_kick(&PortalRef::from(&portal), user, reason).await,
        None => Err(ConnectorError::Rejected("you are not bridged to this network".into())),
    };
    if !portal.is_group {
        if let Err(e) = verdict {
            tracing::info!(error = %e, "the network said no to ending a direct chat; the portal ends anyway");
        }
        bridge.delete_portal(&portal.key).await?;
        tracing::info!(%room, "the partner's ghost was removed; portal forgotten");
        return Ok(());
    }
    let host = bridge.0.namer.user_id(&portal.other_user);
    let ghost = bridge.0.namer.user_id(user);
    match verdict {
        Ok(()) => {
            tracing::info!(%room, "a participant was removed from a group chat from Matrix");
            if *user == portal.other_user {
                hand_on_host(bridge, &mut portal, &room, &ghost).await?;
            }
            Ok(())
        }
        Err(e) => {
            tracing::info!(%room, error = %e, "the network kept a participant the user removed; its ghost comes back");
            // Someone in the room to bring it back: the host, or when the host itself was removed another ghost.
            let inviter = if ghost == host {
                ghosts_in(bridge, &host, &room)
                    .await?
                    .into_iter()
                    .find(|g| g != user)
                    .map(|g| bridge.0.namer.user_id(&g))
            } else {
                Some(host.clone())
            };
            let Some(inviter) = inviter else {
                tracing::warn!(%room, "no ghost left in the room to bring a removed participant back");
                return Ok(());
            };
            if banned {
                let req = unban_user::v3::Request::new(room.clone(), ghost.clone());
                if let Err(err) = bridge.0.hs.send(req, Some(&inviter)).await {
                    tracing::warn!(error = %err, "unbanning a participant the network kept failed");
                    if ghost == host {
                        hand_on_host(bridge, &mut portal, &room, &ghost).await?;
                    }
                    return Ok(());
                }
            }
            join(bridge, &room, &inviter, user).await?;
            let notice = format!("⚠ {} is still in the chat: {e}", user.as_str());
            super::remote::send_notice(bridge, &room, &portal.other_user, &notice).await;
            Ok(())
        }
    }
}

/// The host's ghost `gone` left `room`: the first other ghost still in it hosts the portal.
async fn hand_on_host(bridge: &BridgeHandle, portal: &mut Portal, room: &RoomId, gone: &UserId) -> Result<()> {
    // A departed member still reads the room's members as they were when it left.
    let next =
        ghosts_in(bridge, gone, room).await?.into_iter().find(|g| bridge.0.namer.user_id(g).as_str() != gone.as_str());
    match next {
        Some(next) => {
            tracing::info!(%room, host = %next, "group portal has a new host");
            portal.other_user = next;
            bridge.upsert_portal(portal).await?;
        }
        None => tracing::warn!(%room, "the group portal's last ghost was removed; the host stays as it was"),
    }
    Ok(())
}
