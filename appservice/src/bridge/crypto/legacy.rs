//! Ghost crypto stores of earlier versions — one matrix-sdk-sqlite store per ghost, in the folder
//! `encryption.store_dir/<escaped localpart>` — imported into the bridge's database the first time the ghost's
//! device is loaded, so a bridge keeps its ghosts' devices (their identity keys, and the Olm and Megolm
//! sessions clients hold with them) across the upgrade.
//!
//! The import reads through the [`CryptoStore`] trait, which lists most of a store but not all of it: the
//! account, the cross-signing identity, tracked users with their devices and identities, the Olm sessions with
//! those devices, every inbound group session, and per room of those sessions the outbound session, the room
//! settings and withheld-key notices. Not carried over (the trait has no way to list them): hashes of Olm
//! messages already decrypted (replay detection for to-device messages handled before the upgrade), pending
//! secret requests and the secrets inbox (ghosts use neither), custom values. The account is written last, so
//! a crash during the import repeats it at the next load; the legacy folder is then renamed `<name>.imported`
//! (kept, not deleted: the operator removes it).

use super::CryptoError;
use crate::ids::escape_localpart;
use matrix_sdk_crypto::CryptoStoreError;
use matrix_sdk_crypto::store::CryptoStore;
use matrix_sdk_crypto::store::types::{Changes, PendingChanges};
use matrix_sdk_sqlite::SqliteCryptoStore;
use ruma::{OwnedRoomId, OwnedUserId, UserId};
use std::collections::BTreeSet;
use std::path::Path;

/// The file matrix-sdk-sqlite keeps a crypto store in, inside the store's folder.
pub const LEGACY_STORE_FILE: &str = "matrix-sdk-crypto.sqlite3";

/// Imports `ghost`'s store of an earlier version from `dir` (`encryption.store_dir`) into `store`, opened with
/// `passphrase` as it was written, when `store` holds no account yet and there is such a store; its folder
/// is then renamed `….imported`. Returns whether it imported.
pub async fn import_legacy_store<S: CryptoStore>(
    store: &S,
    dir: &Path,
    ghost: &UserId,
    passphrase: Option<&str>,
) -> Result<bool, CryptoError> {
    if store.load_account().await.map_err(store_error)?.is_some() {
        return Ok(false);
    }
    let folder = dir.join(escape_localpart(ghost.localpart()));
    if !folder.join(LEGACY_STORE_FILE).is_file() {
        return Ok(false);
    }
    let legacy = SqliteCryptoStore::open(&folder, passphrase).await?;
    let copied = copy(&legacy, store, ghost).await?;
    drop(legacy);
    if copied {
        let mut imported = folder.clone().into_os_string();
        imported.push(".imported");
        if let Err(e) = std::fs::rename(&folder, &imported) {
            // The account is in the database now, so the folder is not read again either way.
            tracing::warn!(%ghost, folder = %folder.display(), "imported crypto store not renamed: {e}");
        }
        tracing::info!(%ghost, folder = %folder.display(), "ghost crypto store imported into the bridge's database");
    }
    Ok(copied)
}

/// Copies what the trait can list of `from` (the store of `ghost`) into `to`, the account last. Returns
/// `false` when `from` holds no account of `ghost`.
async fn copy<A: CryptoStore, B: CryptoStore>(from: &A, to: &B, ghost: &UserId) -> Result<bool, CryptoStoreError> {
    let Some(account) = from.load_account().await.map_err(store_error)? else {
        return Ok(false);
    };
    if account.user_id() != ghost {
        tracing::warn!(%ghost, owner = %account.user_id(), "crypto store of another user in the ghost's folder; not imported");
        return Ok(false);
    }
    let mut changes =
        Changes { private_identity: from.load_identity().await.map_err(store_error)?, ..Default::default() };
    let tracked = from.load_tracked_users().await.map_err(store_error)?;
    let mut users: BTreeSet<OwnedUserId> = tracked.iter().map(|t| t.user_id.clone()).collect();
    users.insert(ghost.to_owned());
    for user in &users {
        for device in from.get_user_devices(user).await.map_err(store_error)?.into_values() {
            if let Some(key) = device.curve25519_key()
                && let Some(sessions) = from.get_sessions(&key.to_base64()).await.map_err(store_error)?
            {
                changes.sessions.extend(sessions);
            }
            changes.devices.new.push(device);
        }
        if let Some(identity) = from.get_user_identity(user).await.map_err(store_error)? {
            changes.identities.new.push(identity);
        }
    }
    let inbound = from.get_inbound_group_sessions().await.map_err(store_error)?;
    let rooms: BTreeSet<OwnedRoomId> = inbound.iter().map(|s| s.room_id().to_owned()).collect();
    for room in &rooms {
        if let Some(outbound) = from.get_outbound_group_session(room).await.map_err(store_error)? {
            changes.outbound_group_sessions.push(outbound);
        }
        if let Some(settings) = from.get_room_settings(room).await.map_err(store_error)? {
            changes.room_settings.insert(room.clone(), settings);
        }
        for entry in from.get_withheld_sessions_by_room_id(room).await.map_err(store_error)? {
            if let Some(session) = entry.content.megolm_session_id() {
                let session = session.to_owned();
                changes.withheld_session_info.entry(room.clone()).or_default().insert(session, entry);
            }
        }
    }
    changes.next_batch_token = from.next_batch_token().await.map_err(store_error)?;

    to.save_changes(changes).await.map_err(store_error)?;
    to.save_inbound_group_sessions(inbound, None).await.map_err(store_error)?;
    let tracked: Vec<(&UserId, bool)> = tracked.iter().map(|t| (&*t.user_id, t.dirty)).collect();
    to.save_tracked_users(&tracked).await.map_err(store_error)?;
    // Last: a stored account marks the import done.
    to.save_pending_changes(PendingChanges { account: Some(account) }).await.map_err(store_error)?;
    Ok(true)
}

/// A store's own error as the crypto crate's (each store has its own error type).
fn store_error(e: impl Into<CryptoStoreError>) -> CryptoStoreError {
    e.into()
}
