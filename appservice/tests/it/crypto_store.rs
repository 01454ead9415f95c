//! The ghosts' crypto stores in the bridge's database, one suite run on SQLite and on PostgreSQL: what a
//! ghost's OlmMachine saved is there after a reopen (the same identity keys; the Megolm session it encrypted
//! with decrypts its message), the values are sealed with the passphrase, a missing or wrong passphrase is a
//! typed error, and deleting one secret name from the inbox keeps the others. A ghost's store of an earlier
//! version (a matrix-sdk-sqlite file under `encryption.store_dir`) is imported on first use.

use matrix_sdk_crypto::olm::Account;
use matrix_sdk_crypto::olm::PickledAccount;
use matrix_sdk_crypto::store::CryptoStore;
use matrix_sdk_crypto::store::types::{Changes, PendingChanges, SecretsInboxItem};
use matrix_sdk_crypto::types::requests::AnyOutgoingRequest;
use matrix_sdk_crypto::{CollectStrategy, DecryptionSettings, EncryptionSettings, OlmMachine, TrustRequirement};
use ruma::api::client::keys::{claim_keys, get_keys};
use ruma::events::room::encryption::RoomEncryptionEventContent;
use ruma::events::room::history_visibility::HistoryVisibility;
use ruma::events::secret::request::SecretName;
use ruma::serde::Raw;
use serde_json::json;
use std::collections::BTreeMap;
use tincan_appservice::bridge::crypto::{
    DbCryptoBackend, DbCryptoStore, DbCryptoStoreError, LEGACY_STORE_FILE, import_legacy_store,
};

const PASSPHRASE: &str = "test fixture passphrase";
const GHOST: &str = "@loop_+4915112345678:hs.test";

fn ghost() -> &'static ruma::UserId {
    ruma::user_id!("@loop_+4915112345678:hs.test")
}

async fn machine(backend: &DbCryptoBackend, ghost: &ruma::UserId, device: &ruma::DeviceId) -> OlmMachine {
    let store = DbCryptoStore::open(backend.clone(), ghost).await.unwrap();
    OlmMachine::with_store(ghost, device, store, None).await.unwrap()
}

/// Shares a room key (no other device: its own inbound copy) and encrypts `body` in `room`; the event.
async fn encrypt(machine: &OlmMachine, room: &ruma::RoomId, body: &str) -> serde_json::Value {
    let settings = EncryptionSettings::new(
        RoomEncryptionEventContent::with_recommended_defaults(),
        HistoryVisibility::Shared,
        CollectStrategy::AllDevices,
    );
    let to_device = machine.share_room_key(room, std::iter::once(machine.user_id()), settings).await.unwrap();
    assert!(to_device.is_empty(), "no other device to share with: {to_device:?}");
    let content = Raw::new(&json!({"msgtype": "m.text", "body": body})).unwrap().cast_unchecked();
    let encrypted = machine.encrypt_room_event_raw(room, "m.room.message", &content).await.unwrap();
    json!({"type": "m.room.encrypted", "content": encrypted.content, "sender": machine.user_id(),
        "event_id": "$kept:hs.test", "origin_server_ts": 1, "room_id": room})
}

/// The body `machine` decrypts `event` to.
async fn decrypt(machine: &OlmMachine, room: &ruma::RoomId, event: &serde_json::Value) -> String {
    let settings = DecryptionSettings { sender_device_trust_requirement: TrustRequirement::Untrusted };
    let raw = Raw::from_json_string(event.to_string()).unwrap();
    let plain = machine.decrypt_room_event(&raw, room, &settings).await.unwrap();
    let plain: serde_json::Value = plain.event.deserialize_as_unchecked().unwrap();
    plain["content"]["body"].as_str().unwrap().to_owned()
}

/// Gives `ghost` an Olm session with a device of Alice's, the keys relayed in-process as a homeserver would
/// (her upload answers the ghost's key query, one of her one-time keys its claim); returns her machine.
async fn olm_session_with_alice(ghost: &OlmMachine) -> OlmMachine {
    let alice = OlmMachine::new(ruma::user_id!("@alice:hs.test"), ruma::device_id!("ALICEDEVICE")).await;
    let upload = alice
        .outgoing_requests()
        .await
        .unwrap()
        .into_iter()
        .find_map(|r| match r.request() {
            AnyOutgoingRequest::KeysUpload(u) => Some(u.clone()),
            _ => None,
        })
        .expect("a new device uploads its keys");
    let (user, device) = (alice.user_id().to_owned(), alice.device_id().to_owned());
    ghost.update_tracked_users([alice.user_id()]).await.unwrap();
    for r in ghost.outgoing_requests().await.unwrap() {
        if let AnyOutgoingRequest::KeysQuery(_) = r.request() {
            let mut resp = get_keys::v3::Response::new();
            let keys = upload.device_keys.clone().expect("device keys");
            resp.device_keys = BTreeMap::from([(user.clone(), BTreeMap::from([(device.clone(), keys)]))]);
            ghost.mark_request_as_sent(r.request_id(), &resp).await.unwrap();
        }
    }
    let (txn, _) = ghost.get_missing_sessions(std::iter::once(alice.user_id())).await.unwrap().expect("a claim");
    let (id, key) = upload.one_time_keys.iter().next().expect("one-time keys");
    let claimed = BTreeMap::from([(device.clone(), BTreeMap::from([(id.clone(), key.clone())]))]);
    let resp = claim_keys::v3::Response::new(BTreeMap::from([(user, claimed)]));
    ghost.mark_request_as_sent(&txn, &resp).await.unwrap();
    alice
}

/// The stored account row of `GHOST`, read with a pool of the database's own backend.
async fn stored_account(url: &str) -> Vec<u8> {
    let sql = "SELECT value FROM crypto_object WHERE owner = $1 AND kind = 'account'";
    if url.starts_with("sqlite:") {
        let pool = sqlx::SqlitePool::connect(url).await.unwrap();
        let v = sqlx::query_scalar(sql).bind(GHOST).fetch_one(&pool).await.unwrap();
        pool.close().await;
        v
    } else {
        let pool = sqlx::PgPool::connect(url).await.unwrap();
        let v = sqlx::query_scalar(sql).bind(GHOST).fetch_one(&pool).await.unwrap();
        pool.close().await;
        v
    }
}

/// The suite: a device survives a reopen, sealed by the passphrase.
async fn a_device_survives_a_reopen_sealed(url: &str) {
    let room = ruma::room_id!("!portal:hs.test");
    let device = ruma::device_id!("GHOSTDEVICE");
    let backend = DbCryptoBackend::connect(url, 2, Some(PASSPHRASE)).await.unwrap();

    // A device that encrypts one message in a room (a Megolm session: outbound and its own inbound copy).
    let first = machine(&backend, ghost(), device).await;
    let keys = first.identity_keys();
    let event = encrypt(&first, room, "kept across a reopen").await;
    drop(first);
    drop(backend);

    // Reopened from the database alone: the same account, and the session still decrypts the message.
    let backend = DbCryptoBackend::connect(url, 2, Some(PASSPHRASE)).await.unwrap();
    let second = machine(&backend, ghost(), device).await;
    assert_eq!(second.identity_keys(), keys, "the account was stored");
    assert_eq!(decrypt(&second, room, &event).await, "kept across a reopen");
    drop(second);

    // Sealed: the stored account is not a readable pickle; the passphrase is needed to open the stores.
    let account = stored_account(url).await;
    assert!(serde_json::from_slice::<PickledAccount>(&account).is_err(), "the account is stored in the clear");
    let wrong = DbCryptoBackend::connect(url, 2, Some("not the passphrase")).await;
    assert!(matches!(wrong, Err(DbCryptoStoreError::Cipher(_))), "{wrong:?}");
    let none = DbCryptoBackend::connect(url, 2, None).await;
    assert!(matches!(none, Err(DbCryptoStoreError::PassphraseMissing)), "{none:?}");
}

/// The suite: deleting the secrets of one name from the inbox deletes those rows only.
async fn deleting_a_secret_name_keeps_the_others(url: &str) {
    let backend = DbCryptoBackend::connect(url, 2, None).await.unwrap();
    let [a, b] = [SecretName::RecoveryKey, SecretName::from("m.recovery_key_2")];
    let secret =
        |name: &SecretName, s: &str| SecretsInboxItem { secret_name: name.clone(), secret: s.to_owned().into() };
    let store = DbCryptoStore::open(backend.clone(), ghost()).await.unwrap();
    // A store is loaded from its account on: a ghost's store always has one.
    let account = Account::with_device_id(ghost(), ruma::device_id!("GHOSTDEVICE"));
    store.save_pending_changes(PendingChanges { account: Some(account) }).await.unwrap();
    let secrets = vec![secret(&a, "first a"), secret(&a, "second a"), secret(&b, "only b")];
    store.save_changes(Changes { secrets, ..Default::default() }).await.unwrap();
    store.delete_secrets_from_inbox(&a).await.unwrap();
    drop(store);

    let store = DbCryptoStore::open(backend, ghost()).await.unwrap();
    assert!(
        store.get_secrets_from_inbox(&a).await.unwrap().is_empty(),
        "{}'s secrets came back after a reopen",
        a.as_str()
    );
    let left: Vec<String> =
        store.get_secrets_from_inbox(&b).await.unwrap().iter().map(|s| s.as_str().to_owned()).collect();
    assert_eq!(left, ["only b"]);
}

#[tokio::test]
async fn a_ghost_device_survives_a_reopen_sealed_by_the_passphrase_in_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    a_device_survives_a_reopen_sealed(&format!("sqlite:{}", dir.path().join("bridge.db").display())).await;
}

#[tokio::test]
async fn a_ghost_device_survives_a_reopen_sealed_by_the_passphrase_in_postgres() {
    let Some(pg) = tincan_testkit::Postgres::create().await else { return };
    a_device_survives_a_reopen_sealed(pg.url()).await;
}

#[tokio::test]
async fn deleting_a_secret_name_from_the_inbox_keeps_the_others_in_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    deleting_a_secret_name_keeps_the_others(&format!("sqlite:{}", dir.path().join("bridge.db").display())).await;
}

#[tokio::test]
async fn deleting_a_secret_name_from_the_inbox_keeps_the_others_in_postgres() {
    let Some(pg) = tincan_testkit::Postgres::create().await else { return };
    deleting_a_secret_name_keeps_the_others(pg.url()).await;
}

/// A ghost's matrix-sdk-sqlite store of an earlier version (under `store_dir`) is imported into the bridge's
/// SQLite database on first use: the same identity keys, its Olm session with another device and that device,
/// and its Megolm session decrypts what it encrypted before; its folder is renamed and a second load imports
/// nothing.
#[tokio::test]
async fn a_ghost_store_of_an_earlier_version_is_imported_into_the_bridge_database() {
    let dir = tempfile::tempdir().unwrap();
    let store_dir = dir.path().join("crypto");
    let room = ruma::room_id!("!portal:hs.test");
    let device = ruma::device_id!("GHOSTDEVICE");
    // The earlier layout: `store_dir/<escaped localpart>/matrix-sdk-crypto.sqlite3`.
    let folder = store_dir.join(tincan_appservice::ids::escape_localpart(ghost().localpart()));
    let legacy = matrix_sdk_sqlite::SqliteCryptoStore::open(&folder, Some(PASSPHRASE)).await.unwrap();
    let old = OlmMachine::with_store(ghost(), device, legacy, None).await.unwrap();
    let keys = old.identity_keys();
    let event = encrypt(&old, room, "from before the upgrade").await;
    let alice = olm_session_with_alice(&old).await;
    let alice_key = alice.identity_keys().curve25519.to_base64();
    drop(old);
    assert!(folder.join(LEGACY_STORE_FILE).is_file());

    let url = format!("sqlite:{}", dir.path().join("bridge.db").display());
    let backend = DbCryptoBackend::connect(&url, 2, Some(PASSPHRASE)).await.unwrap();
    let store = DbCryptoStore::open(backend.clone(), ghost()).await.unwrap();
    assert!(import_legacy_store(&store, &store_dir, ghost(), Some(PASSPHRASE)).await.unwrap(), "imported");
    assert!(!folder.exists(), "the legacy folder is renamed");
    let mut renamed = folder.clone().into_os_string();
    renamed.push(".imported");
    assert!(std::path::Path::new(&renamed).join(LEGACY_STORE_FILE).is_file(), "and kept");
    assert!(!import_legacy_store(&store, &store_dir, ghost(), Some(PASSPHRASE)).await.unwrap(), "once");
    let sessions = store.get_sessions(&alice_key).await.unwrap().unwrap_or_default();
    assert_eq!(sessions.len(), 1, "the Olm session with Alice's device came along");
    assert!(store.get_device(alice.user_id(), alice.device_id()).await.unwrap().is_some(), "and her device");
    drop(store);

    // From the bridge's database alone.
    let new = machine(&backend, ghost(), device).await;
    assert_eq!(new.identity_keys(), keys, "the same device");
    assert_eq!(decrypt(&new, room, &event).await, "from before the upgrade");
}
