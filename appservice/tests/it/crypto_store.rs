//! The ghosts' crypto stores in PostgreSQL (the bridge's database): what a ghost's OlmMachine saved is there
//! after a reopen (the same identity keys; the Megolm session it encrypted with decrypts its message), the
//! values are sealed with the passphrase, and a missing or wrong passphrase is a typed error.

use matrix_sdk_crypto::olm::PickledAccount;
use matrix_sdk_crypto::{CollectStrategy, DecryptionSettings, EncryptionSettings, OlmMachine, TrustRequirement};
use ruma::events::room::encryption::RoomEncryptionEventContent;
use ruma::events::room::history_visibility::HistoryVisibility;
use ruma::serde::Raw;
use serde_json::json;
use tincan_appservice::bridge::crypto::{PgCryptoBackend, PgCryptoStore, PgCryptoStoreError};

const PASSPHRASE: &str = "test fixture passphrase";

async fn machine(backend: &PgCryptoBackend, ghost: &ruma::UserId, device: &ruma::DeviceId) -> OlmMachine {
    let store = PgCryptoStore::open(backend.clone(), ghost).await.unwrap();
    OlmMachine::with_store(ghost, device, store, None).await.unwrap()
}

#[tokio::test]
async fn a_ghost_device_in_postgres_survives_a_reopen_sealed_by_the_passphrase() {
    let Some(pg) = tincan_testkit::Postgres::create().await else { return };
    let ghost = ruma::user_id!("@loop_+4915112345678:hs.test");
    let room = ruma::room_id!("!portal:hs.test");
    let device = ruma::device_id!("GHOSTDEVICE");
    let backend = PgCryptoBackend::connect(pg.url(), 2, Some(PASSPHRASE)).await.unwrap();

    // A device that encrypts one message in a room (a Megolm session: outbound and its own inbound copy).
    let first = machine(&backend, ghost, device).await;
    let keys = first.identity_keys();
    let settings = EncryptionSettings::new(
        RoomEncryptionEventContent::with_recommended_defaults(),
        HistoryVisibility::Shared,
        CollectStrategy::AllDevices,
    );
    let to_device = first.share_room_key(room, std::iter::once(ghost), settings).await.unwrap();
    assert!(to_device.is_empty(), "no other device to share with: {to_device:?}");
    let content = Raw::new(&json!({"msgtype": "m.text", "body": "kept across a reopen"})).unwrap().cast_unchecked();
    let encrypted = first.encrypt_room_event_raw(room, "m.room.message", &content).await.unwrap();
    drop(first);

    // Reopened from PostgreSQL alone: the same account, and the session still decrypts the message.
    let second = machine(&backend, ghost, device).await;
    assert_eq!(second.identity_keys(), keys, "the account was stored");
    let event = json!({"type": "m.room.encrypted", "content": encrypted.content, "sender": ghost,
        "event_id": "$kept:hs.test", "origin_server_ts": 1, "room_id": room});
    let settings = DecryptionSettings { sender_device_trust_requirement: TrustRequirement::Untrusted };
    let plain =
        second.decrypt_room_event(&Raw::from_json_string(event.to_string()).unwrap(), room, &settings).await.unwrap();
    let plain: serde_json::Value = plain.event.deserialize_as_unchecked().unwrap();
    assert_eq!(plain["content"]["body"], "kept across a reopen");
    drop(second);

    // Sealed: the stored account is not a readable pickle; the passphrase is needed to open the stores.
    let pool = sqlx::PgPool::connect(pg.url()).await.unwrap();
    let account: Vec<u8> = sqlx::query_scalar("SELECT value FROM crypto_object WHERE owner = $1 AND kind = 'account'")
        .bind(ghost.as_str())
        .fetch_one(&pool)
        .await
        .unwrap();
    assert!(serde_json::from_slice::<PickledAccount>(&account).is_err(), "the account is stored in the clear");
    let wrong = PgCryptoBackend::connect(pg.url(), 2, Some("not the passphrase")).await;
    assert!(matches!(wrong, Err(PgCryptoStoreError::Cipher(_))), "{wrong:?}");
    let none = PgCryptoBackend::connect(pg.url(), 2, None).await;
    assert!(matches!(none, Err(PgCryptoStoreError::PassphraseMissing)), "{none:?}");
    pool.close().await;
}
