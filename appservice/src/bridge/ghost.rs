//! Ghost users: registered in the AS namespace on first use, profile from the connector; invites of ghosts.

use super::{BridgeHandle, Result};
use crate::connector::{ConnectorError, PortalRef};
use crate::homeserver::HomeserverError;
use crate::ids::RemoteUserId;
use crate::store::{Ghost, Portal};
use ruma::api::client::account::register::{LoginType, RegistrationKind, v3 as register};
use ruma::api::client::device::update_device;
use ruma::api::client::membership::{join_room_by_id, leave_room};
use ruma::api::client::profile::set_profile_field;
use ruma::api::error::ErrorKind;
use ruma::{DeviceId, OwnedDeviceId, OwnedUserId, RoomId, UserId};
use std::collections::HashSet;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

/// Makes sure the ghost of `remote` exists on the homeserver with its profile (and, with encryption, its
/// device and keys); returns its user ID.
pub(crate) async fn ensure_ghost(bridge: &BridgeHandle, remote: &RemoteUserId) -> Result<OwnedUserId> {
    let user_id = register_ghost(bridge, remote).await?;
    if let Some(crypto) = &bridge.0.crypto {
        crypto.device(bridge, &user_id).await?;
    }
    Ok(user_id)
}

/// The device ID every ghost's unencrypted sends carry when end-to-bridge encryption is off.
pub(crate) const SEND_DEVICE: &str = "TINCANBRIDGE";

/// Ghosts known to have their [`SEND_DEVICE`] this process (forgotten wholesale past [`SendDevices::MAX`]:
/// creating it again is harmless), and whether the homeserver refused to create devices.
#[derive(Debug, Default)]
pub(crate) struct SendDevices {
    known: Mutex<HashSet<OwnedUserId>>,
    unsupported: AtomicBool,
}

impl SendDevices {
    const MAX: usize = 100_000;
}

/// The device `ghost` sends from: its encryption device when end-to-bridge encryption is on, else
/// [`SEND_DEVICE`], created without login (MSC4190) on first use. Sends that name a device are deduplicated by
/// the homeserver from its database (Synapse's `event_txn_id_device_id`, kept a day) rather than only from its
/// in-memory transaction cache, so an event replayed after a crash is not doubled even when the homeserver
/// restarted too. `None` when the homeserver does not create devices for appservice users (no
/// `io.element.msc4190` in the registration): sends then go without a device, as before, with a warning.
pub(crate) async fn send_device(bridge: &BridgeHandle, ghost: &UserId) -> Result<Option<OwnedDeviceId>> {
    if let Some(crypto) = &bridge.0.crypto {
        return Ok(Some(crypto.device(bridge, ghost).await?.device_id().to_owned()));
    }
    let devices = &bridge.0.send_devices;
    if devices.unsupported.load(Ordering::Relaxed) {
        return Ok(None);
    }
    if devices.known.lock().expect("send devices lock").contains(ghost) {
        return Ok(Some(OwnedDeviceId::from(SEND_DEVICE)));
    }
    let device: &DeviceId = SEND_DEVICE.into();
    let mut req = update_device::v3::Request::new(device.to_owned());
    req.display_name = Some("Tincan bridge".into());
    match bridge.0.hs.send(req, Some(ghost)).await {
        Ok(_) => {}
        Err(HomeserverError::Matrix(e)) if e.status_code.is_client_error() => {
            if !devices.unsupported.swap(true, Ordering::Relaxed) {
                tracing::warn!(
                    error = %e,
                    "the homeserver does not create devices for ghosts (add io.element.msc4190: true to the \
                     registration): a message replayed after a crash is deduplicated only by the homeserver's \
                     in-memory transaction cache"
                );
            }
            return Ok(None);
        }
        Err(e) => return Err(e.into()),
    }
    let mut known = devices.known.lock().expect("send devices lock");
    if known.len() >= SendDevices::MAX {
        known.clear();
    }
    known.insert(ghost.to_owned());
    Ok(Some(device.to_owned()))
}

async fn register_ghost(bridge: &BridgeHandle, remote: &RemoteUserId) -> Result<OwnedUserId> {
    let user_id = bridge.0.namer.user_id(remote);
    if let Some(g) = bridge.0.store.ghost(remote).await?
        && g.registered
    {
        return Ok(g.user_id);
    }
    let mut req = register::Request::new();
    req.username = Some(user_id.localpart().to_owned());
    req.login_type = Some(LoginType::ApplicationService);
    req.kind = RegistrationKind::User;
    req.inhibit_login = true;
    match bridge.0.hs.send(req, None).await {
        Ok(_) => {}
        Err(e) if matches!(e.kind(), Some(ErrorKind::UserInUse)) => {}
        Err(e) => return Err(e.into()),
    }
    let profile = bridge.0.connector.remote_profile(remote).await.unwrap_or_default();
    if let Some(name) = &profile.display_name {
        let value = ruma::profile::ProfileFieldValue::DisplayName(name.clone());
        let req = set_profile_field::v3::Request::new(user_id.clone(), value);
        bridge.0.hs.send(req, Some(&user_id)).await?;
    }
    if let Some(avatar) = &profile.avatar_url {
        let mxc = ruma::OwnedMxcUri::from(avatar.as_str());
        let value = ruma::profile::ProfileFieldValue::AvatarUrl(mxc);
        let req = set_profile_field::v3::Request::new(user_id.clone(), value);
        bridge.0.hs.send(req, Some(&user_id)).await?;
    }
    bridge
        .0
        .store
        .upsert_ghost(&Ghost {
            remote_id: remote.clone(),
            user_id: user_id.clone(),
            display_name: profile.display_name,
            avatar_url: profile.avatar_url,
            registered: true,
            metadata: Default::default(),
        })
        .await?;
    Ok(user_id)
}

/// A local user invited `invitee` to `room_id`: a ghost joins and the room becomes the user's direct portal
/// with that remote user; the bot joins rooms it is invited to. Users without a login are turned away.
pub(crate) async fn handle_invite(
    bridge: &BridgeHandle,
    room_id: &RoomId,
    inviter: &UserId,
    invitee: &UserId,
) -> Result<()> {
    if invitee == bridge.0.bot {
        if let Some(crypto) = &bridge.0.crypto {
            // Before joining: the inviter's client then finds the bot's device among the room's and shares
            // room keys with it (an encrypted management room; see `commands`).
            crypto.device(bridge, &bridge.0.bot).await?;
        }
        bridge.0.hs.send(join_room_by_id::v3::Request::new(room_id.to_owned()), None).await?;
        if bridge.portal_by_room(room_id).await?.is_none() && bridge.0.store.management_room(room_id).await?.is_none() {
            // The inviter's management room (see `commands`).
            bridge.0.store.set_management_room(room_id, inviter).await?;
            super::commands::greet(bridge, room_id).await?;
        }
        return Ok(());
    }
    let Some(remote) = bridge.0.namer.remote_id(invitee) else {
        return Ok(());
    };
    let has_login = bridge.login(inviter).await?.is_some();
    if !has_login || !bridge.0.connector.is_valid_remote_user(&remote) {
        let ghost = bridge.0.namer.user_id(&remote);
        let mut req = leave_room::v3::Request::new(room_id.to_owned());
        req.reason =
            Some(if has_login { "unknown on this network" } else { "you are not bridged to this network" }.into());
        // The ghost may not exist; the invite is then simply left pending.
        if let Err(e) = bridge.0.hs.send(req, Some(&ghost)).await {
            tracing::debug!(error = %e, "rejecting an invite failed");
        }
        return Ok(());
    }
    if let Some(portal) = bridge.portal_by_room(room_id).await? {
        return invited_into_portal(bridge, &portal, inviter, remote).await;
    }
    let ghost = ensure_ghost(bridge, &remote).await?;
    match bridge.0.hs.send(join_room_by_id::v3::Request::new(room_id.to_owned()), Some(&ghost)).await {
        Ok(_) => {}
        Err(HomeserverError::Matrix(e)) if matches!(e.error_kind(), Some(ErrorKind::Forbidden)) => {
            tracing::info!(%room_id, "the invite was withdrawn before the ghost joined");
            return Ok(());
        }
        Err(e) => return Err(e.into()),
    }
    let portal = super::inbox::direct_portal(inviter.to_owned(), remote, room_id.to_owned());
    bridge.upsert_portal(&portal).await?;
    tracing::info!(%room_id, "new direct portal from an invite");
    Ok(())
}

/// The receiver of a portal invited another ghost into its room (a participant added to a group chat): the
/// connector decides; the ghost joins, or turns the invite down with the connector's reason.
async fn invited_into_portal(
    bridge: &BridgeHandle,
    portal: &Portal,
    inviter: &UserId,
    remote: RemoteUserId,
) -> Result<()> {
    let Some(room) = &portal.room_id else { return Ok(()) };
    let ghost = bridge.0.namer.user_id(&remote);
    let verdict = match bridge.login(inviter).await? {
        Some(_) if *inviter != *portal.key.receiver => Err(ConnectorError::Rejected("not your portal".into())),
        Some(api) => api.handle_matrix_invite(&PortalRef::from(portal), &remote).await,
        None => Err(ConnectorError::Rejected("you are not bridged to this network".into())),
    };
    match verdict {
        Ok(()) => {
            let ghost = ensure_ghost(bridge, &remote).await?;
            bridge.0.hs.send(join_room_by_id::v3::Request::new(room.clone()), Some(&ghost)).await?;
            if !portal.is_group && remote != portal.other_user {
                // A second participant: the chat is a group from now on.
                let mut group = portal.clone();
                group.is_group = true;
                bridge.upsert_portal(&group).await?;
            }
            tracing::info!(%room, "a participant joined a group portal from Matrix");
        }
        Err(e) => {
            let mut req = leave_room::v3::Request::new(room.clone());
            req.reason = Some(e.to_string());
            if let Err(e) = bridge.0.hs.send(req, Some(&ghost)).await {
                tracing::debug!(error = %e, "turning down an invite failed");
            }
        }
    }
    Ok(())
}
