//! End-to-bridge encryption: one Matrix device per ghost (and one for the bot, which reads and answers
//! encrypted management rooms), an Olm/Megolm account (`matrix-sdk-crypto`'s
//! [`OlmMachine`]) whose store is in the bridge's database, SQLite or PostgreSQL ([`db`]). Stores of earlier
//! versions (a matrix-sdk-sqlite file per ghost under `encryption.store_dir`) are imported on first use
//! ([`legacy`]).
//!
//! After mautrix-go's bridgev2 crypto helper, with one difference: every ghost has its own device rather than
//! the bot encrypting for everyone, so that a message from a ghost is encrypted by a device of that ghost and
//! clients verify it like any other sender's.
//! - **Devices without login (MSC4190).** A ghost's device is created with `PUT /devices/{deviceId}` as the
//!   ghost; its keys are uploaded with the `device_id` query parameter (MSC4326), which every request of
//!   that device carries.
//! - **Key traffic from transactions.** To-device messages (MSC2409/MSC4203), device-list changes and
//!   one-time-key counts (MSC3202) come in the homeserver's transactions; they are recorded in the inbox
//!   with the transaction (so a crash between recording and handling loses none) and handed to the machines
//!   of the ghost devices they concern, in order, before the transaction's timeline events.
//! - **Decryption before the connector.** An `m.room.encrypted` event of a portal is decrypted with the
//!   device of the portal's ghost; the plain event then takes the usual path.
//! - **Encryption after the connector.** A send into an encrypted room first shares the room key with every
//!   device of the room's joined and invited members (device lists kept current by the machine) and then
//!   sends `m.room.encrypted`.

mod db;
mod legacy;

pub use db::{DbCryptoBackend, DbCryptoStore, DbCryptoStoreError};
pub use legacy::{LEGACY_STORE_FILE, import_legacy_store};

use super::{BridgeHandle, Result};
use crate::homeserver::HomeserverError;
use futures::future::BoxFuture;
use matrix_sdk_crypto::store::CryptoStore;
use matrix_sdk_crypto::types::events::room::encrypted::EncryptedEvent;
use matrix_sdk_crypto::types::requests::{AnyOutgoingRequest, ToDeviceRequest};
use matrix_sdk_crypto::{
    CollectStrategy, DecryptionSettings, EncryptionSettings, EncryptionSyncChanges, OlmMachine, TrustRequirement,
};
use ruma::api::client::device::update_device;
use ruma::api::client::keys::get_keys;
use ruma::api::client::membership::get_member_events;
use ruma::api::client::state::get_state_event_for_key;
use ruma::api::client::sync::sync_events::DeviceLists;
use ruma::api::client::to_device::send_event_to_device;
use ruma::api::error::ErrorKind;
use ruma::events::room::encryption::RoomEncryptionEventContent;
use ruma::events::room::history_visibility::HistoryVisibility;
use ruma::events::room::member::MembershipState;
use ruma::events::{AnyMessageLikeEventContent, AnyToDeviceEvent, StateEventType};
use ruma::serde::Raw;
use ruma::{DeviceId, OneTimeKeyAlgorithm, OwnedDeviceId, OwnedRoomId, OwnedUserId, RoomId, UInt, UserId};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

/// Why an encryption step failed.
#[derive(Debug, thiserror::Error)]
pub enum CryptoError {
    /// A ghost's crypto store of an earlier version (matrix-sdk-sqlite) could not be opened for import.
    #[error("opening a crypto store to import: {0}")]
    Open(#[from] matrix_sdk_sqlite::OpenStoreError),
    /// A crypto store operation failed.
    #[error("crypto store: {0}")]
    Store(#[from] matrix_sdk_crypto::CryptoStoreError),
    /// The crypto store in the bridge's database failed.
    #[error(transparent)]
    DbStore(#[from] DbCryptoStoreError),
    /// Olm (to-device, sessions, key sharing) failed.
    #[error("olm: {0}")]
    Olm(#[from] matrix_sdk_crypto::OlmError),
    /// Megolm (room events) failed.
    #[error("megolm: {0}")]
    Megolm(#[from] matrix_sdk_crypto::MegolmError),
    /// A key request to the homeserver failed.
    #[error(transparent)]
    Homeserver(#[from] HomeserverError),
}

/// The crypto part of one transaction, as recorded in the inbox (one entry, ahead of the transaction's
/// events): to-device messages for ghost devices, device-list changes, one-time-key counts and unused
/// fallback key types per ghost device.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct CryptoChanges {
    /// To-device events, each with the `to_user_id` and `to_device_id` it was sent to, as the homeserver sent
    /// them (raw JSON text: see `server::transactions::parse`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub to_device: Vec<Box<serde_json::value::RawValue>>,
    /// Users whose devices changed, or who no longer share a room with a ghost.
    #[serde(default)]
    pub device_lists: DeviceLists,
    /// One-time-key counts per user and device.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub otk_counts: BTreeMap<OwnedUserId, BTreeMap<OwnedDeviceId, BTreeMap<OneTimeKeyAlgorithm, UInt>>>,
    /// Unused fallback key types per user and device.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub fallback_keys: BTreeMap<OwnedUserId, BTreeMap<OwnedDeviceId, Vec<OneTimeKeyAlgorithm>>>,
}

impl CryptoChanges {
    /// Whether there is nothing to hand to a machine.
    pub fn is_empty(&self) -> bool {
        self.to_device.is_empty()
            && self.device_lists.changed.is_empty()
            && self.device_lists.left.is_empty()
            && self.otk_counts.is_empty()
            && self.fallback_keys.is_empty()
    }
}

/// The device that encrypted, and the `m.room.encrypted` content to send with it.
pub(crate) type Encrypted = (Arc<GhostDevice>, Raw<AnyMessageLikeEventContent>);

/// A ghost's device.
pub(crate) struct GhostDevice {
    pub(crate) machine: OlmMachine,
    /// One key flow at a time per device (outgoing requests are sent and marked once).
    busy: tokio::sync::Mutex<()>,
}

impl GhostDevice {
    pub(crate) fn device_id(&self) -> &DeviceId {
        self.machine.device_id()
    }
}

/// Where ghosts' crypto stores of earlier versions are (one matrix-sdk-sqlite store per ghost).
struct LegacyStores {
    /// `encryption.store_dir`.
    dir: PathBuf,
    /// `encryption.store_passphrase`, when set.
    passphrase: Option<String>,
}

impl std::fmt::Debug for LegacyStores {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Not the passphrase.
        f.debug_struct("LegacyStores").field("dir", &self.dir).finish_non_exhaustive()
    }
}

/// The ghosts' devices loaded in this process, least recently used first, at most `max` of them.
#[derive(Default)]
struct LoadedDevices {
    devices: HashMap<OwnedUserId, Arc<GhostDevice>>,
    order: std::collections::VecDeque<OwnedUserId>,
}

impl LoadedDevices {
    fn get(&mut self, ghost: &UserId) -> Option<Arc<GhostDevice>> {
        let device = self.devices.get(ghost)?.clone();
        self.order.retain(|u| u != ghost);
        self.order.push_back(ghost.to_owned());
        Some(device)
    }

    /// Adds `device`, then unloads the least recently used devices no one holds until at most `max` are
    /// loaded (a device in use stays: two machines on one store would diverge). Returns how many went.
    fn insert(&mut self, ghost: &UserId, device: Arc<GhostDevice>, max: usize) -> u64 {
        self.devices.insert(ghost.to_owned(), device);
        self.order.push_back(ghost.to_owned());
        let mut evicted = 0;
        let mut kept = std::collections::VecDeque::new();
        while self.devices.len() > max {
            let Some(oldest) = self.order.pop_front() else { break };
            match self.devices.get(&oldest) {
                Some(d) if Arc::strong_count(d) == 1 && *oldest != *ghost => {
                    self.devices.remove(&oldest);
                    evicted += 1;
                }
                Some(_) => kept.push_back(oldest),
                None => {}
            }
        }
        while let Some(u) = kept.pop_back() {
            self.order.push_front(u);
        }
        evicted
    }
}

/// The ghosts' devices and what is known of the rooms' encryption.
pub(crate) struct Crypto {
    backend: DbCryptoBackend,
    legacy: Option<LegacyStores>,
    devices: tokio::sync::Mutex<LoadedDevices>,
    /// `encryption.max_loaded_devices`.
    max_loaded: usize,
    /// `m.room.encryption` of rooms looked up or seen in transactions (`None`: not encrypted).
    rooms: Mutex<HashMap<OwnedRoomId, Option<RoomEncryptionEventContent>>>,
}

impl std::fmt::Debug for Crypto {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Crypto").field("backend", &self.backend).field("legacy", &self.legacy).finish_non_exhaustive()
    }
}

/// The settings every decryption uses: the bridge decrypts what any device of a portal's receiver sends
/// (verification is between the receiver and the network; the bridge holds no cross-signing identity).
fn decryption_settings() -> DecryptionSettings {
    DecryptionSettings { sender_device_trust_requirement: TrustRequirement::Untrusted }
}

impl Crypto {
    /// The ghosts' stores `config` asks for: in the bridge's database (`database.url`), sealed with
    /// `encryption.store_passphrase` when set; stores of earlier versions imported from
    /// `encryption.store_dir` (unless empty).
    pub(crate) async fn open(config: &crate::config::AppserviceConfig) -> Result<Self, CryptoError> {
        let passphrase = config.encryption.store_passphrase.expose();
        let passphrase = (!passphrase.is_empty()).then(|| passphrase.to_owned());
        let db = &config.database;
        let backend = DbCryptoBackend::connect(&db.url, db.max_connections, passphrase.as_deref()).await?;
        let dir = &config.encryption.store_dir;
        let legacy = (!dir.is_empty()).then(|| LegacyStores { dir: PathBuf::from(dir), passphrase });
        Ok(Self {
            backend,
            legacy,
            devices: Default::default(),
            max_loaded: config.encryption.max_loaded_devices.max(1),
            rooms: Default::default(),
        })
    }

    /// Opens `ghost`'s store (importing its store of an earlier version first, if there is one); its
    /// machine (the stored account, or a new one with a fresh device ID) and whether the account was stored.
    async fn machine(&self, ghost: &UserId) -> Result<(OlmMachine, bool), CryptoError> {
        let store = DbCryptoStore::open(self.backend.clone(), ghost).await?;
        if let Some(legacy) = &self.legacy {
            import_legacy_store(&store, &legacy.dir, ghost, legacy.passphrase.as_deref()).await?;
        }
        machine_with(ghost, store).await
    }

    /// The device of `ghost`: loaded, or created (store, device on the homeserver, keys uploaded). Once per
    /// process and ghost; later calls return the loaded device.
    pub(crate) async fn device(&self, bridge: &BridgeHandle, ghost: &UserId) -> Result<Arc<GhostDevice>, CryptoError> {
        let mut devices = self.devices.lock().await;
        if let Some(d) = devices.get(ghost) {
            return Ok(d);
        }
        let (machine, stored) = self.machine(ghost).await?;
        let device_id = machine.device_id().to_owned();
        // MSC4190: creates the device when missing; harmless when it exists.
        let mut req = update_device::v3::Request::new(device_id.clone());
        req.display_name = Some("Tincan bridge".into());
        bridge.0.hs.send(req, Some(ghost)).await?;
        if stored {
            // Device-list changes that came while this device was not loaded were not handed to it.
            machine.mark_all_tracked_users_as_dirty().await?;
        }
        let device = Arc::new(GhostDevice { machine, busy: tokio::sync::Mutex::new(()) });
        {
            let _busy = device.busy.lock().await;
            send_outgoing(bridge, ghost, &device).await?;
        }
        tracing::info!(%ghost, device = %device_id, new = !stored, "ghost device ready");
        let evicted = devices.insert(ghost, device.clone(), self.max_loaded);
        bridge.0.metrics.add(&bridge.0.metrics.devices_unloaded, evicted);
        Ok(device)
    }

    /// Hands the crypto part of a transaction to the devices it concerns; returns the rooms that got new room
    /// keys (their waiting events can be decrypted now).
    pub(crate) async fn receive(&self, bridge: &BridgeHandle, changes: CryptoChanges) -> Result<Vec<OwnedRoomId>> {
        let mut per_device: BTreeMap<(OwnedUserId, OwnedDeviceId), Vec<Raw<AnyToDeviceEvent>>> = BTreeMap::new();
        /// Whom a to-device event was sent to (MSC4203's two extra fields; the machine ignores them).
        #[derive(Deserialize)]
        struct Recipient {
            to_user_id: OwnedUserId,
            to_device_id: OwnedDeviceId,
        }
        for ev in changes.to_device {
            let Ok(Recipient { to_user_id, to_device_id }) = serde_json::from_str(ev.get()) else { continue };
            per_device.entry((to_user_id, to_device_id)).or_default().push(Raw::from_json(ev));
        }
        for (user, devices) in &changes.otk_counts {
            for device in devices.keys() {
                per_device.entry((user.clone(), device.clone())).or_default();
            }
        }
        for (user, devices) in &changes.fallback_keys {
            for device in devices.keys() {
                per_device.entry((user.clone(), device.clone())).or_default();
            }
        }
        let mut rooms = Vec::new();
        let mut handled = Vec::new();
        let empty = BTreeMap::new();
        for ((user, device_id), events) in per_device {
            if !bridge.0.namer.is_ghost(&user) && user != bridge.0.bot {
                continue;
            }
            let device = self.device(bridge, &user).await?;
            if device.device_id() != device_id {
                tracing::debug!(%user, %device_id, "key traffic for a device that is not the ghost's; ignored");
                continue;
            }
            let counts = changes.otk_counts.get(&user).and_then(|d| d.get(&device_id)).unwrap_or(&empty);
            let fallback = changes.fallback_keys.get(&user).and_then(|d| d.get(&device_id)).map(Vec::as_slice);
            rooms.extend(self.feed(bridge, &user, &device, events, &changes.device_lists, counts, fallback).await?);
            handled.push(user);
        }
        if !changes.device_lists.changed.is_empty() || !changes.device_lists.left.is_empty() {
            let loaded: Vec<(OwnedUserId, Arc<GhostDevice>)> =
                self.devices.lock().await.devices.iter().map(|(u, d)| (u.clone(), d.clone())).collect();
            for (user, device) in loaded.into_iter().filter(|(u, _)| !handled.contains(u)) {
                self.feed(bridge, &user, &device, Vec::new(), &changes.device_lists, &empty, None).await?;
            }
        }
        Ok(rooms)
    }

    #[allow(clippy::too_many_arguments)]
    async fn feed(
        &self,
        bridge: &BridgeHandle,
        user: &UserId,
        device: &GhostDevice,
        to_device_events: Vec<Raw<AnyToDeviceEvent>>,
        device_lists: &DeviceLists,
        counts: &BTreeMap<OneTimeKeyAlgorithm, UInt>,
        fallback: Option<&[OneTimeKeyAlgorithm]>,
    ) -> Result<Vec<OwnedRoomId>, CryptoError> {
        let _busy = device.busy.lock().await;
        let (_, keys) = device
            .machine
            .receive_sync_changes(
                EncryptionSyncChanges {
                    to_device_events,
                    changed_devices: device_lists,
                    one_time_keys_counts: counts,
                    unused_fallback_keys: fallback,
                    next_batch_token: None,
                },
                &decryption_settings(),
            )
            .await?;
        send_outgoing(bridge, user, device).await?;
        Ok(keys.into_iter().map(|k| k.room_id).collect())
    }

    /// Decrypts an encrypted event of `room` with the device of `ghost`.
    pub(crate) async fn decrypt(
        &self,
        bridge: &BridgeHandle,
        ghost: &UserId,
        room: &RoomId,
        event: &Raw<EncryptedEvent>,
    ) -> Result<String, CryptoError> {
        let device = self.device(bridge, ghost).await?;
        let decrypted = device.machine.decrypt_room_event(event, room, &decryption_settings()).await?;
        Ok(decrypted.event.json().get().to_owned())
    }

    /// Records what a transaction said about a room's encryption.
    pub(crate) fn room_encrypted(&self, room: &RoomId, content: RoomEncryptionEventContent) {
        self.rooms.lock().expect("not poisoned").insert(room.to_owned(), Some(content));
    }

    /// The room's `m.room.encryption`, looked up as `ghost` once and remembered.
    pub(crate) async fn room_encryption(
        &self,
        bridge: &BridgeHandle,
        ghost: &UserId,
        room: &RoomId,
    ) -> Result<Option<RoomEncryptionEventContent>, CryptoError> {
        if let Some(known) = self.rooms.lock().expect("not poisoned").get(room) {
            return Ok(known.clone());
        }
        let req =
            get_state_event_for_key::v3::Request::new(room.to_owned(), StateEventType::RoomEncryption, String::new());
        let content = match bridge.0.hs.send(req, Some(ghost)).await {
            Ok(resp) => resp.into_content().deserialize_as_unchecked::<RoomEncryptionEventContent>().ok(),
            Err(e) if matches!(e.kind(), Some(ErrorKind::NotFound)) => None,
            Err(e) => return Err(e.into()),
        };
        let mut rooms = self.rooms.lock().expect("not poisoned");
        // A transaction may have told us meanwhile; what it said wins.
        Ok(rooms.entry(room.to_owned()).or_insert(content).clone())
    }

    /// Encrypts `content` (of `event_type`) for `room` as `ghost`'s device, after sharing the room key with
    /// every device of the room's joined and invited members.
    pub(crate) fn encrypt<'a>(
        &'a self,
        bridge: &'a BridgeHandle,
        ghost: &'a UserId,
        room: &'a RoomId,
        settings: RoomEncryptionEventContent,
        event_type: &'a str,
        content: &'a Raw<AnyMessageLikeEventContent>,
    ) -> BoxFuture<'a, Result<Encrypted, CryptoError>> {
        Box::pin(async move {
            let device = self.device(bridge, ghost).await?;
            let members = room_members(bridge, ghost, room).await?;
            let _busy = device.busy.lock().await;
            let machine = &device.machine;
            // Plain slice iterators: closures here would make the future's `Send` proof fail (rust#96865).
            let users: Vec<&UserId> = members.iter().map(|u| &**u).collect();
            machine.update_tracked_users(users.clone()).await?;
            send_outgoing(bridge, ghost, &device).await?;
            if let Some((txn, claim)) = machine.get_missing_sessions(users.clone().into_iter()).await? {
                let resp = bridge.0.hs.send_as_device(claim, ghost, device.device_id()).await?;
                machine.mark_request_as_sent(&txn, &resp).await?;
            }
            let settings = EncryptionSettings::new(settings, HistoryVisibility::Shared, CollectStrategy::AllDevices);
            for req in machine.share_room_key(room, users.clone().into_iter(), settings).await? {
                send_to_device(bridge, ghost, &device, &req).await?;
            }
            let encrypted = machine.encrypt_room_event_raw(room, event_type, content).await?;
            Ok((device.clone(), encrypted.content.cast_unchecked()))
        })
    }
}

/// The machine of `ghost` on `store`: its stored account, or a new one with a fresh device ID.
async fn machine_with<S: CryptoStore + 'static>(ghost: &UserId, store: S) -> Result<(OlmMachine, bool), CryptoError> {
    let account = store.load_account().await.map_err(Into::<matrix_sdk_crypto::CryptoStoreError>::into)?;
    let device_id = match &account {
        Some(a) => a.device_id().to_owned(),
        None => DeviceId::new(),
    };
    // The account is in the store before the device exists anywhere else, so a crash from here on comes back
    // to the same device ID.
    let machine = OlmMachine::with_store(ghost, &device_id, store, None).await?;
    Ok((machine, account.is_some()))
}

/// Joined and invited members of `room`, as `ghost` sees them.
async fn room_members(bridge: &BridgeHandle, ghost: &UserId, room: &RoomId) -> Result<Vec<OwnedUserId>, CryptoError> {
    let mut req = get_member_events::v3::Request::new(room.to_owned());
    req.not_membership = Some(MembershipState::Leave);
    let resp = bridge.0.hs.send(req, Some(ghost)).await?;
    Ok(resp
        .chunk
        .iter()
        .filter_map(|ev| ev.deserialize().ok())
        .filter(|m| matches!(m.membership(), MembershipState::Join | MembershipState::Invite))
        .map(|m| m.state_key().to_owned())
        .collect())
}

/// Sends what the machine wants sent (key uploads, key queries, claims, to-device messages) as the ghost's
/// device and tells it the answers. The caller holds the device's `busy` lock.
fn send_outgoing<'a>(
    bridge: &'a BridgeHandle,
    ghost: &'a UserId,
    device: &'a GhostDevice,
) -> BoxFuture<'a, Result<(), CryptoError>> {
    // Boxed with one named lifetime: proving the inferred future `Send` for every lifetime fails (rust#96865).
    Box::pin(async move {
        let hs = &bridge.0.hs;
        let device_id = device.device_id();
        for request in device.machine.outgoing_requests().await? {
            let id = request.request_id();
            match request.request() {
                AnyOutgoingRequest::KeysUpload(r) => {
                    let resp = hs.send_as_device(r.clone(), ghost, device_id).await?;
                    device.machine.mark_request_as_sent(id, &resp).await?;
                }
                AnyOutgoingRequest::KeysQuery(r) => {
                    let mut req = get_keys::v3::Request::new();
                    req.device_keys = r.device_keys.clone();
                    let resp = hs.send_as_device(req, ghost, device_id).await?;
                    device.machine.mark_request_as_sent(id, &resp).await?;
                }
                AnyOutgoingRequest::KeysClaim(r) => {
                    let resp = hs.send_as_device(r.clone(), ghost, device_id).await?;
                    device.machine.mark_request_as_sent(id, &resp).await?;
                }
                AnyOutgoingRequest::ToDeviceRequest(r) => send_to_device(bridge, ghost, device, r).await?,
                // Cross-signing and in-room verification: ghosts have no identity to sign with.
                AnyOutgoingRequest::SignatureUpload(_) | AnyOutgoingRequest::RoomMessage(_) => {}
            }
        }
        Ok(())
    })
}

async fn send_to_device(
    bridge: &BridgeHandle,
    ghost: &UserId,
    device: &GhostDevice,
    req: &ToDeviceRequest,
) -> Result<(), CryptoError> {
    let http =
        send_event_to_device::v3::Request::new_raw(req.event_type.clone(), req.txn_id.clone(), req.messages.clone());
    let resp = bridge.0.hs.send_as_device(http, ghost, device.device_id()).await?;
    device.machine.mark_request_as_sent(&req.txn_id, &resp).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn device(ghost: &UserId) -> Arc<GhostDevice> {
        let machine = OlmMachine::new(ghost, "GHOSTDEVICE".into()).await;
        Arc::new(GhostDevice { machine, busy: tokio::sync::Mutex::new(()) })
    }

    #[tokio::test]
    async fn the_least_recently_used_device_no_task_holds_is_unloaded() {
        let [a, b, c, d, e] = ["@g_a:hs.test", "@g_b:hs.test", "@g_c:hs.test", "@g_d:hs.test", "@g_e:hs.test"]
            .map(|u| UserId::parse(u).unwrap());
        let mut loaded = LoadedDevices::default();
        assert_eq!(loaded.insert(&a, device(&a).await, 2), 0);
        assert_eq!(loaded.insert(&b, device(&b).await, 2), 0);
        assert!(loaded.get(&a).is_some(), "a is now the most recently used");
        assert_eq!(loaded.insert(&c, device(&c).await, 2), 1);
        assert!(loaded.get(&b).is_none(), "b, the least recently used, went");
        assert!(loaded.get(&a).is_some());
        // c is the least recently used now, but a task holds it: a goes instead.
        let held = loaded.devices.get(&c).cloned();
        assert_eq!(loaded.insert(&d, device(&d).await, 2), 1);
        assert!(loaded.devices.contains_key(&c) && !loaded.devices.contains_key(&a));
        drop(held);
        assert_eq!(loaded.insert(&e, device(&e).await, 2), 1);
        let mut left: Vec<&OwnedUserId> = loaded.devices.keys().collect();
        left.sort();
        assert_eq!(left, [&d, &e], "c went once no one held it");
    }
}
