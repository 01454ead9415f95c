//! The ghosts' crypto stores in the bridge's own database (`crypto_object`), SQLite or PostgreSQL: one
//! implementation, the same SQL text on either pool (matrix-rust-sdk has a SQLite crypto store, one file per
//! device, and none on PostgreSQL; a bridge keeps all its state in one database).
//!
//! A write-through store: every object the `OlmMachine` saves (account, Olm and Megolm sessions, devices,
//! identities, message hashes…) is written to the database — one database transaction per save, so a crash
//! keeps all of a save or none of it — and then to a [`MemoryStore`] that answers every read. Opening a store
//! loads its rows into the memory store. Values are the crypto crate's own serde forms (pickles), encrypted
//! with a [`StoreCipher`] when `encryption.store_passphrase` is set; the cipher itself is stored once,
//! encrypted with the passphrase, as the row of owner `""`.
//!
//! One process uses a ghost's device at a time (the bridge's ghosts live in one bridge process), so the
//! memory store's in-process lease serves `try_take_leased_lock`.

use async_trait::async_trait;
use matrix_sdk_common::cross_process_lock::CrossProcessLockGeneration;
use matrix_sdk_crypto::olm::{
    Curve25519PublicKey, InboundGroupSession, OlmMessageHash, OutboundGroupSession, PickledAccount,
    PickledCrossSigningIdentity, PickledInboundGroupSession, PickledOutboundGroupSession, PickledSession,
    PrivateCrossSigningIdentity, SenderDataType, Session,
};
use matrix_sdk_crypto::store::types::{
    BackupDecryptionKey, BackupKeys, Changes, DehydratedDeviceKey, DeviceChanges, IdentityChanges, PendingChanges,
    RoomKeyCounts, RoomKeyWithheldEntry, RoomPendingKeyBundleDetails, RoomSettings, SecretsInboxItem,
    StoredRoomKeyBundleData, TrackedUser,
};
use matrix_sdk_crypto::store::{CryptoStore, CryptoStoreError, MemoryStore};
use matrix_sdk_crypto::{Account, DeviceData, GossipRequest, SecretInfo, UserIdentityData};
use matrix_sdk_store_encryption::StoreCipher;
use ruma::events::secret::request::SecretName;
use ruma::{DeviceId, OwnedDeviceId, OwnedRoomId, RoomId, TransactionId, UserId};
use serde::{Deserialize, Serialize};
use sqlx::{PgPool, SqlitePool};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use zeroize::Zeroizing;

/// Why a crypto store in the bridge's database failed.
#[derive(Debug, thiserror::Error)]
pub enum DbCryptoStoreError {
    /// The database failed.
    #[error("crypto store database: {0}")]
    Database(#[from] sqlx::Error),
    /// A value could not be written or read back.
    #[error("crypto store value {kind}: {message}")]
    Value {
        /// The kind of object.
        kind: &'static str,
        /// What went wrong.
        message: String,
    },
    /// The database could not be opened or migrated.
    #[error("crypto store database: {0}")]
    Open(crate::store::StoreError),
    /// The stores are encrypted and `encryption.store_passphrase` is empty.
    #[error("the crypto stores are encrypted: encryption.store_passphrase is needed")]
    PassphraseMissing,
    /// The passphrase does not open the stored cipher, or a value does not decrypt.
    #[error("crypto store encryption: {0}")]
    Cipher(#[from] matrix_sdk_store_encryption::Error),
}

impl From<DbCryptoStoreError> for CryptoStoreError {
    fn from(e: DbCryptoStoreError) -> Self {
        CryptoStoreError::backend(e)
    }
}

type Result<T, E = DbCryptoStoreError> = std::result::Result<T, E>;

fn value_error(kind: &'static str, e: impl std::fmt::Display) -> DbCryptoStoreError {
    DbCryptoStoreError::Value { kind, message: e.to_string() }
}

/// The bridge's database, either backend.
#[derive(Clone)]
enum Pool {
    Postgres(PgPool),
    Sqlite(SqlitePool),
}

/// Evaluates `$body` with `$p` bound to the pool, whichever backend it is: the SQL is the same text for both
/// (`$n` placeholders and `ON CONFLICT` mean the same in SQLite and PostgreSQL).
macro_rules! on_pool {
    ($pool:expr, $p:ident => $body:expr) => {
        match $pool {
            Pool::Postgres($p) => $body,
            Pool::Sqlite($p) => $body,
        }
    };
}

/// The connection and the cipher shared by every ghost's store.
#[derive(Clone)]
pub struct DbCryptoBackend {
    pool: Pool,
    cipher: Option<Arc<StoreCipher>>,
}

impl std::fmt::Debug for DbCryptoBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let backend = match self.pool {
            Pool::Postgres(_) => "postgres",
            Pool::Sqlite(_) => "sqlite",
        };
        f.debug_struct("DbCryptoBackend")
            .field("backend", &backend)
            .field("encrypted", &self.cipher.is_some())
            .finish_non_exhaustive()
    }
}

const SELECT_CIPHER: &str = "SELECT value FROM crypto_object WHERE owner = '' AND kind = 'cipher' AND key = ''";

impl DbCryptoBackend {
    /// Connects to the bridge's database at `url` (`sqlite:…` or `postgres://…`, migrating it); with a
    /// passphrase, opens the stored cipher (a wrong passphrase is [`DbCryptoStoreError::Cipher`]) or creates
    /// and stores one.
    pub async fn connect(url: &str, max_connections: u32, passphrase: Option<&str>) -> Result<Self> {
        let pool = if crate::store::is_postgres(url) {
            Pool::Postgres(crate::store::postgres::pool(url, max_connections).await.map_err(DbCryptoStoreError::Open)?)
        } else if url.starts_with("sqlite:") {
            Pool::Sqlite(crate::store::sqlite::pool(url, max_connections).await.map_err(DbCryptoStoreError::Open)?)
        } else {
            return Err(DbCryptoStoreError::Open(crate::store::StoreError::UnsupportedUrl(url.to_owned())));
        };
        Self::new(pool, passphrase).await
    }

    async fn new(pool: Pool, passphrase: Option<&str>) -> Result<Self> {
        let stored: Option<Vec<u8>> = on_pool!(&pool, p => sqlx::query_scalar(SELECT_CIPHER).fetch_optional(p).await?);
        let Some(passphrase) = passphrase else {
            return match stored {
                Some(_) => Err(DbCryptoStoreError::PassphraseMissing),
                None => Ok(Self { pool, cipher: None }),
            };
        };
        let cipher = match stored {
            Some(bytes) => StoreCipher::import(passphrase, &bytes)?,
            None => {
                let cipher = StoreCipher::new()?;
                let exported = cipher.export(passphrase)?;
                // Two processes creating it at once: the first one wins and the other reads it.
                let bytes: Vec<u8> = on_pool!(&pool, p => {
                    sqlx::query(
                        "INSERT INTO crypto_object (owner, kind, key, value) VALUES ('', 'cipher', '', $1) \
                         ON CONFLICT DO NOTHING",
                    )
                    .bind(&exported)
                    .execute(p)
                    .await?;
                    sqlx::query_scalar(SELECT_CIPHER).fetch_one(p).await?
                });
                if bytes == exported { cipher } else { StoreCipher::import(passphrase, &bytes)? }
            }
        };
        Ok(Self { pool, cipher: Some(Arc::new(cipher)) })
    }

    fn seal(&self, kind: &'static str, value: &impl Serialize) -> Result<Vec<u8>> {
        match &self.cipher {
            Some(c) => Ok(c.encrypt_value(value)?),
            None => serde_json::to_vec(value).map_err(|e| value_error(kind, e)),
        }
    }

    fn open<T: serde::de::DeserializeOwned>(&self, kind: &'static str, bytes: &[u8]) -> Result<T> {
        match &self.cipher {
            Some(c) => Ok(c.decrypt_value(bytes)?),
            None => serde_json::from_slice(bytes).map_err(|e| value_error(kind, e)),
        }
    }
}

/// Kinds of stored objects (the `kind` column).
mod kind {
    pub(super) const ACCOUNT: &str = "account";
    pub(super) const IDENTITY: &str = "identity";
    pub(super) const SESSION: &str = "session";
    pub(super) const INBOUND: &str = "inbound";
    pub(super) const OUTBOUND: &str = "outbound";
    pub(super) const DEVICE: &str = "device";
    pub(super) const USER_IDENTITY: &str = "user_identity";
    pub(super) const OLM_HASH: &str = "olm_hash";
    pub(super) const KEY_REQUEST: &str = "key_request";
    pub(super) const WITHHELD: &str = "withheld";
    pub(super) const ROOM_SETTINGS: &str = "room_settings";
    pub(super) const SECRET: &str = "secret";
    pub(super) const BACKUP_VERSION: &str = "backup_version";
    pub(super) const BACKUP_KEY: &str = "backup_key";
    pub(super) const DEHYDRATED_KEY: &str = "dehydrated_key";
    pub(super) const NEXT_BATCH: &str = "next_batch";
    pub(super) const BUNDLE: &str = "bundle";
    pub(super) const BACKUP_DOWNLOADED: &str = "backup_downloaded";
    pub(super) const PENDING_BUNDLE: &str = "pending_bundle";
    pub(super) const TRACKED: &str = "tracked";
    pub(super) const CUSTOM: &str = "custom";
}

/// Two parts of a key, joined by a character no Matrix ID, session ID or secret name holds.
fn pair(a: &str, b: &str) -> String {
    format!("{a}\n{b}")
}

/// An inbound group session and the backup version it was saved to.
#[derive(Serialize, Deserialize)]
struct StoredInbound {
    pickle: PickledInboundGroupSession,
    backed_up_to: Option<String>,
}

/// One row to write (`Some`) or delete (`None`).
type Row = (&'static str, String, Option<Vec<u8>>);

/// A ghost's crypto store in the bridge's database.
pub struct DbCryptoStore {
    backend: DbCryptoBackend,
    owner: String,
    memory: MemoryStore,
    /// One save at a time, so rows and memory agree.
    saving: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for DbCryptoStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DbCryptoStore").field("owner", &self.owner).finish_non_exhaustive()
    }
}

impl DbCryptoStore {
    /// The store of `owner` (a ghost's user ID): its rows loaded into memory.
    pub async fn open(backend: DbCryptoBackend, owner: &UserId) -> Result<Self> {
        let store =
            Self { backend, owner: owner.to_string(), memory: MemoryStore::new(), saving: tokio::sync::Mutex::new(()) };
        store.load().await?;
        Ok(store)
    }

    async fn load(&self) -> Result<()> {
        let rows: Vec<(String, String, Vec<u8>)> = on_pool!(&self.backend.pool, p => {
            sqlx::query_as("SELECT kind, key, value FROM crypto_object WHERE owner = $1 ORDER BY kind, key")
                .bind(&self.owner)
                .fetch_all(p)
                .await?
        });
        let mut by_kind: HashMap<String, Vec<(String, Vec<u8>)>> = HashMap::new();
        for (k, key, value) in rows {
            by_kind.entry(k).or_default().push((key, value));
        }
        let take = |k: &str| -> Vec<(String, Vec<u8>)> { by_kind.get(k).cloned().unwrap_or_default() };
        let one = |k: &'static str| -> Result<Option<Vec<u8>>> { Ok(take(k).into_iter().next().map(|(_, v)| v)) };
        let b = &self.backend;
        let mem = &self.memory;

        let Some(account) = one(kind::ACCOUNT)? else {
            return Ok(());
        };
        let pickle: PickledAccount = b.open(kind::ACCOUNT, &account)?;
        let account = Account::from_pickle(pickle).map_err(|e| value_error(kind::ACCOUNT, e))?;
        let device_keys = account.device_keys();
        let static_data = account.static_data().clone();
        mem.save_pending_changes(PendingChanges { account: Some(account) }).await.map_err(infallible)?;

        let mut changes = Changes::default();
        if let Some(v) = one(kind::IDENTITY)? {
            let pickle: PickledCrossSigningIdentity = b.open(kind::IDENTITY, &v)?;
            changes.private_identity =
                Some(PrivateCrossSigningIdentity::from_pickle(pickle).map_err(|e| value_error(kind::IDENTITY, e))?);
        }
        for (_, v) in take(kind::SESSION) {
            let pickle: PickledSession = b.open(kind::SESSION, &v)?;
            let session =
                Session::from_pickle(device_keys.clone(), pickle).map_err(|e| value_error(kind::SESSION, e))?;
            changes.sessions.push(session);
        }
        for (_, v) in take(kind::OUTBOUND) {
            let pickle: PickledOutboundGroupSession = b.open(kind::OUTBOUND, &v)?;
            let session = OutboundGroupSession::from_pickle(
                static_data.device_id.clone(),
                static_data.identity_keys.clone(),
                pickle,
            )
            .map_err(|e| value_error(kind::OUTBOUND, e))?;
            changes.outbound_group_sessions.push(session);
        }
        for (_, v) in take(kind::DEVICE) {
            changes.devices.new.push(b.open(kind::DEVICE, &v)?);
        }
        for (_, v) in take(kind::USER_IDENTITY) {
            changes.identities.new.push(b.open(kind::USER_IDENTITY, &v)?);
        }
        for (_, v) in take(kind::OLM_HASH) {
            changes.message_hashes.push(b.open(kind::OLM_HASH, &v)?);
        }
        for (_, v) in take(kind::KEY_REQUEST) {
            changes.key_requests.push(b.open(kind::KEY_REQUEST, &v)?);
        }
        for (_, v) in take(kind::WITHHELD) {
            let (room, session, entry): (OwnedRoomId, String, RoomKeyWithheldEntry) = b.open(kind::WITHHELD, &v)?;
            changes.withheld_session_info.entry(room).or_default().insert(session, entry);
        }
        for (_, v) in take(kind::ROOM_SETTINGS) {
            let (room, settings): (OwnedRoomId, RoomSettings) = b.open(kind::ROOM_SETTINGS, &v)?;
            changes.room_settings.insert(room, settings);
        }
        for (_, v) in take(kind::SECRET) {
            let (name, secret): (SecretName, String) = b.open(kind::SECRET, &v)?;
            changes.secrets.push(SecretsInboxItem { secret_name: name, secret: Zeroizing::new(secret) });
        }
        if let Some(v) = one(kind::BACKUP_VERSION)? {
            changes.backup_version = Some(b.open(kind::BACKUP_VERSION, &v)?);
        }
        if let Some(v) = one(kind::BACKUP_KEY)? {
            changes.backup_decryption_key = Some(b.open::<BackupDecryptionKey>(kind::BACKUP_KEY, &v)?);
        }
        if let Some(v) = one(kind::DEHYDRATED_KEY)? {
            changes.dehydrated_device_pickle_key = Some(b.open::<DehydratedDeviceKey>(kind::DEHYDRATED_KEY, &v)?);
        }
        if let Some(v) = one(kind::NEXT_BATCH)? {
            changes.next_batch_token = Some(b.open(kind::NEXT_BATCH, &v)?);
        }
        for (_, v) in take(kind::BUNDLE) {
            changes.received_room_key_bundles.push(b.open::<StoredRoomKeyBundleData>(kind::BUNDLE, &v)?);
        }
        for (_, v) in take(kind::BACKUP_DOWNLOADED) {
            changes.room_key_backups_fully_downloaded.insert(b.open(kind::BACKUP_DOWNLOADED, &v)?);
        }
        for (_, v) in take(kind::PENDING_BUNDLE) {
            let details: RoomPendingKeyBundleDetails = b.open(kind::PENDING_BUNDLE, &v)?;
            changes.rooms_pending_key_bundle.insert(details.room_id.clone(), Some(details));
        }
        mem.save_changes(changes).await.map_err(infallible)?;

        let mut inbound: BTreeMap<Option<String>, Vec<InboundGroupSession>> = BTreeMap::new();
        for (_, v) in take(kind::INBOUND) {
            let stored: StoredInbound = b.open(kind::INBOUND, &v)?;
            let session = InboundGroupSession::from_pickle(stored.pickle).map_err(|e| value_error(kind::INBOUND, e))?;
            inbound.entry(stored.backed_up_to).or_default().push(session);
        }
        for (version, sessions) in inbound {
            mem.save_inbound_group_sessions(sessions, version.as_deref()).await.map_err(infallible)?;
        }
        let mut tracked = Vec::new();
        for (_, v) in take(kind::TRACKED) {
            tracked.push(b.open::<TrackedUser>(kind::TRACKED, &v)?);
        }
        let tracked: Vec<(&UserId, bool)> = tracked.iter().map(|t| (&*t.user_id, t.dirty)).collect();
        mem.save_tracked_users(&tracked).await.map_err(infallible)?;
        for (key, v) in take(kind::CUSTOM) {
            let value: Vec<u8> = b.open(kind::CUSTOM, &v)?;
            mem.set_custom_value(&key, value).await.map_err(infallible)?;
        }
        Ok(())
    }

    /// Writes `rows` in one database transaction.
    async fn write(&self, rows: Vec<Row>) -> Result<()> {
        if rows.is_empty() {
            return Ok(());
        }
        on_pool!(&self.backend.pool, p => {
            let mut tx = p.begin().await?;
            for (k, key, value) in &rows {
                match value {
                    Some(v) => {
                        sqlx::query(
                            "INSERT INTO crypto_object (owner, kind, key, value) VALUES ($1, $2, $3, $4) \
                             ON CONFLICT (owner, kind, key) DO UPDATE SET value = EXCLUDED.value",
                        )
                        .bind(&self.owner)
                        .bind(*k)
                        .bind(key)
                        .bind(v)
                        .execute(&mut *tx)
                        .await?;
                    }
                    None => {
                        sqlx::query("DELETE FROM crypto_object WHERE owner = $1 AND kind = $2 AND key = $3")
                            .bind(&self.owner)
                            .bind(*k)
                            .bind(key)
                            .execute(&mut *tx)
                            .await?;
                    }
                }
            }
            tx.commit().await?;
        });
        Ok(())
    }

    fn row(&self, k: &'static str, key: impl Into<String>, value: &impl Serialize) -> Result<Row> {
        Ok((k, key.into(), Some(self.backend.seal(k, value)?)))
    }

    async fn inbound_row(&self, session: &InboundGroupSession, backed_up_to: Option<&str>) -> Result<Row> {
        let stored = StoredInbound { pickle: session.pickle().await, backed_up_to: backed_up_to.map(str::to_owned) };
        self.row(kind::INBOUND, pair(session.room_id().as_str(), session.session_id()), &stored)
    }

    async fn rows_of(&self, changes: &Changes) -> Result<Vec<Row>> {
        let mut rows = Vec::new();
        if let Some(identity) = &changes.private_identity {
            rows.push(self.row(kind::IDENTITY, "", &identity.pickle().await)?);
        }
        if let Some(version) = &changes.backup_version {
            rows.push(self.row(kind::BACKUP_VERSION, "", version)?);
        }
        if let Some(key) = &changes.backup_decryption_key {
            rows.push(self.row(kind::BACKUP_KEY, "", key)?);
        }
        if let Some(key) = &changes.dehydrated_device_pickle_key {
            rows.push(self.row(kind::DEHYDRATED_KEY, "", key)?);
        }
        for session in &changes.sessions {
            rows.push(self.row(kind::SESSION, session.session_id(), &session.pickle().await)?);
        }
        for hash in &changes.message_hashes {
            rows.push(self.row(kind::OLM_HASH, pair(&hash.sender_key, &hash.hash), hash)?);
        }
        for session in &changes.inbound_group_sessions {
            // As the memory store does: a session saved through `save_changes` is not backed up.
            rows.push(self.inbound_row(session, None).await?);
        }
        for session in &changes.outbound_group_sessions {
            rows.push(self.row(kind::OUTBOUND, session.room_id().as_str(), &session.pickle().await)?);
        }
        for request in &changes.key_requests {
            rows.push(self.row(kind::KEY_REQUEST, request.request_id.as_str(), request)?);
        }
        let IdentityChanges { new, changed, .. } = &changes.identities;
        for identity in new.iter().chain(changed) {
            rows.push(self.row(kind::USER_IDENTITY, identity.user_id().as_str(), identity)?);
        }
        let DeviceChanges { new, changed, deleted } = &changes.devices;
        for device in new.iter().chain(changed) {
            rows.push(self.row(kind::DEVICE, pair(device.user_id().as_str(), device.device_id().as_str()), device)?);
        }
        for device in deleted {
            rows.push((kind::DEVICE, pair(device.user_id().as_str(), device.device_id().as_str()), None));
        }
        for (room, sessions) in &changes.withheld_session_info {
            for (session, entry) in sessions {
                rows.push(self.row(kind::WITHHELD, pair(room.as_str(), session), &(room, session, entry))?);
            }
        }
        for (room, settings) in &changes.room_settings {
            rows.push(self.row(kind::ROOM_SETTINGS, room.as_str(), &(room, settings))?);
        }
        for secret in &changes.secrets {
            // Several secrets of one name wait in the inbox: each its own row.
            let id = TransactionId::new();
            let value = (&secret.secret_name, secret.secret.as_str());
            rows.push(self.row(kind::SECRET, pair(secret.secret_name.as_str(), id.as_str()), &value)?);
        }
        if let Some(token) = &changes.next_batch_token {
            rows.push(self.row(kind::NEXT_BATCH, "", token)?);
        }
        for bundle in &changes.received_room_key_bundles {
            let key = pair(bundle.bundle_data.room_id.as_str(), bundle.sender_user.as_str());
            rows.push(self.row(kind::BUNDLE, key, bundle)?);
        }
        for room in &changes.room_key_backups_fully_downloaded {
            rows.push(self.row(kind::BACKUP_DOWNLOADED, room.as_str(), room)?);
        }
        for (room, details) in &changes.rooms_pending_key_bundle {
            rows.push(match details {
                Some(d) => self.row(kind::PENDING_BUNDLE, room.as_str(), d)?,
                None => (kind::PENDING_BUNDLE, room.to_string(), None),
            });
        }
        Ok(rows)
    }
}

/// The memory store cannot fail.
fn infallible(e: std::convert::Infallible) -> DbCryptoStoreError {
    match e {}
}

#[async_trait]
impl CryptoStore for DbCryptoStore {
    type Error = DbCryptoStoreError;

    async fn load_account(&self) -> Result<Option<Account>> {
        self.memory.load_account().await.map_err(infallible)
    }

    async fn load_identity(&self) -> Result<Option<PrivateCrossSigningIdentity>> {
        self.memory.load_identity().await.map_err(infallible)
    }

    async fn save_changes(&self, changes: Changes) -> Result<()> {
        let _saving = self.saving.lock().await;
        let rows = self.rows_of(&changes).await?;
        self.write(rows).await?;
        self.memory.save_changes(changes).await.map_err(infallible)
    }

    async fn save_pending_changes(&self, changes: PendingChanges) -> Result<()> {
        let _saving = self.saving.lock().await;
        let Some(account) = &changes.account else {
            return Ok(());
        };
        self.write(vec![self.row(kind::ACCOUNT, "", &account.pickle())?]).await?;
        self.memory.save_pending_changes(changes).await.map_err(infallible)
    }

    async fn save_inbound_group_sessions(
        &self,
        sessions: Vec<InboundGroupSession>,
        backed_up_to_version: Option<&str>,
    ) -> Result<()> {
        let _saving = self.saving.lock().await;
        let mut rows = Vec::with_capacity(sessions.len());
        for s in &sessions {
            rows.push(self.inbound_row(s, backed_up_to_version).await?);
        }
        self.write(rows).await?;
        self.memory.save_inbound_group_sessions(sessions, backed_up_to_version).await.map_err(infallible)
    }

    async fn get_sessions(&self, sender_key: &str) -> Result<Option<Vec<Session>>> {
        self.memory.get_sessions(sender_key).await.map_err(infallible)
    }

    async fn get_inbound_group_session(
        &self,
        room_id: &RoomId,
        session_id: &str,
    ) -> Result<Option<InboundGroupSession>> {
        self.memory.get_inbound_group_session(room_id, session_id).await.map_err(infallible)
    }

    async fn get_withheld_info(&self, room_id: &RoomId, session_id: &str) -> Result<Option<RoomKeyWithheldEntry>> {
        self.memory.get_withheld_info(room_id, session_id).await.map_err(infallible)
    }

    async fn get_withheld_sessions_by_room_id(&self, room_id: &RoomId) -> Result<Vec<RoomKeyWithheldEntry>> {
        self.memory.get_withheld_sessions_by_room_id(room_id).await.map_err(infallible)
    }

    async fn get_inbound_group_sessions(&self) -> Result<Vec<InboundGroupSession>> {
        self.memory.get_inbound_group_sessions().await.map_err(infallible)
    }

    async fn inbound_group_session_counts(&self, backup_version: Option<&str>) -> Result<RoomKeyCounts> {
        self.memory.inbound_group_session_counts(backup_version).await.map_err(infallible)
    }

    async fn get_inbound_group_sessions_by_room_id(&self, room_id: &RoomId) -> Result<Vec<InboundGroupSession>> {
        self.memory.get_inbound_group_sessions_by_room_id(room_id).await.map_err(infallible)
    }

    async fn get_inbound_group_sessions_for_device_batch(
        &self,
        curve_key: Curve25519PublicKey,
        sender_data_type: SenderDataType,
        after_session_id: Option<String>,
        limit: usize,
    ) -> Result<Vec<InboundGroupSession>> {
        self.memory
            .get_inbound_group_sessions_for_device_batch(curve_key, sender_data_type, after_session_id, limit)
            .await
            .map_err(infallible)
    }

    async fn inbound_group_sessions_for_backup(
        &self,
        backup_version: &str,
        limit: usize,
    ) -> Result<Vec<InboundGroupSession>> {
        self.memory.inbound_group_sessions_for_backup(backup_version, limit).await.map_err(infallible)
    }

    async fn mark_inbound_group_sessions_as_backed_up(
        &self,
        backup_version: &str,
        room_and_session_ids: &[(&RoomId, &str)],
    ) -> Result<()> {
        let _saving = self.saving.lock().await;
        self.memory
            .mark_inbound_group_sessions_as_backed_up(backup_version, room_and_session_ids)
            .await
            .map_err(infallible)?;
        let mut rows = Vec::new();
        for (room, session) in room_and_session_ids {
            if let Some(s) = self.memory.get_inbound_group_session(room, session).await.map_err(infallible)? {
                rows.push(self.inbound_row(&s, Some(backup_version)).await?);
            }
        }
        self.write(rows).await
    }

    async fn reset_backup_state(&self) -> Result<()> {
        // Backed-up state is per backup version (as in the memory store): nothing to reset.
        self.memory.reset_backup_state().await.map_err(infallible)
    }

    async fn load_backup_keys(&self) -> Result<BackupKeys> {
        self.memory.load_backup_keys().await.map_err(infallible)
    }

    async fn load_dehydrated_device_pickle_key(&self) -> Result<Option<DehydratedDeviceKey>> {
        self.memory.load_dehydrated_device_pickle_key().await.map_err(infallible)
    }

    async fn delete_dehydrated_device_pickle_key(&self) -> Result<()> {
        let _saving = self.saving.lock().await;
        self.write(vec![(kind::DEHYDRATED_KEY, String::new(), None)]).await?;
        self.memory.delete_dehydrated_device_pickle_key().await.map_err(infallible)
    }

    async fn get_outbound_group_session(&self, room_id: &RoomId) -> Result<Option<OutboundGroupSession>> {
        self.memory.get_outbound_group_session(room_id).await.map_err(infallible)
    }

    async fn load_tracked_users(&self) -> Result<Vec<TrackedUser>> {
        self.memory.load_tracked_users().await.map_err(infallible)
    }

    async fn save_tracked_users(&self, users: &[(&UserId, bool)]) -> Result<()> {
        let _saving = self.saving.lock().await;
        let rows = users
            .iter()
            .map(|(u, dirty)| {
                self.row(kind::TRACKED, u.as_str(), &TrackedUser { user_id: (*u).to_owned(), dirty: *dirty })
            })
            .collect::<Result<Vec<_>>>()?;
        self.write(rows).await?;
        self.memory.save_tracked_users(users).await.map_err(infallible)
    }

    async fn get_device(&self, user_id: &UserId, device_id: &DeviceId) -> Result<Option<DeviceData>> {
        self.memory.get_device(user_id, device_id).await.map_err(infallible)
    }

    async fn get_user_devices(&self, user_id: &UserId) -> Result<HashMap<OwnedDeviceId, DeviceData>> {
        self.memory.get_user_devices(user_id).await.map_err(infallible)
    }

    async fn get_own_device(&self) -> Result<DeviceData> {
        self.memory.get_own_device().await.map_err(infallible)
    }

    async fn get_user_identity(&self, user_id: &UserId) -> Result<Option<UserIdentityData>> {
        self.memory.get_user_identity(user_id).await.map_err(infallible)
    }

    async fn is_message_known(&self, message_hash: &OlmMessageHash) -> Result<bool> {
        self.memory.is_message_known(message_hash).await.map_err(infallible)
    }

    async fn get_outgoing_secret_requests(&self, request_id: &TransactionId) -> Result<Option<GossipRequest>> {
        self.memory.get_outgoing_secret_requests(request_id).await.map_err(infallible)
    }

    async fn get_secret_request_by_info(&self, secret_info: &SecretInfo) -> Result<Option<GossipRequest>> {
        self.memory.get_secret_request_by_info(secret_info).await.map_err(infallible)
    }

    async fn get_unsent_secret_requests(&self) -> Result<Vec<GossipRequest>> {
        self.memory.get_unsent_secret_requests().await.map_err(infallible)
    }

    async fn delete_outgoing_secret_requests(&self, request_id: &TransactionId) -> Result<()> {
        let _saving = self.saving.lock().await;
        self.write(vec![(kind::KEY_REQUEST, request_id.to_string(), None)]).await?;
        self.memory.delete_outgoing_secret_requests(request_id).await.map_err(infallible)
    }

    async fn get_secrets_from_inbox(&self, secret_name: &SecretName) -> Result<Vec<Zeroizing<String>>> {
        self.memory.get_secrets_from_inbox(secret_name).await.map_err(infallible)
    }

    async fn delete_secrets_from_inbox(&self, secret_name: &SecretName) -> Result<()> {
        let _saving = self.saving.lock().await;
        // The keys are `name\nid`; matched here rather than with LIKE, whose escaping and case differ between
        // the backends.
        let keys: Vec<String> = on_pool!(&self.backend.pool, p => {
            sqlx::query_scalar("SELECT key FROM crypto_object WHERE owner = $1 AND kind = $2")
                .bind(&self.owner)
                .bind(kind::SECRET)
                .fetch_all(p)
                .await?
        });
        let prefix = pair(secret_name.as_str(), "");
        let rows = keys.into_iter().filter(|k| k.starts_with(&prefix)).map(|k| (kind::SECRET, k, None)).collect();
        self.write(rows).await?;
        self.memory.delete_secrets_from_inbox(secret_name).await.map_err(infallible)
    }

    async fn get_room_settings(&self, room_id: &RoomId) -> Result<Option<RoomSettings>> {
        self.memory.get_room_settings(room_id).await.map_err(infallible)
    }

    async fn get_received_room_key_bundle_data(
        &self,
        room_id: &RoomId,
        user_id: &UserId,
    ) -> Result<Option<StoredRoomKeyBundleData>> {
        self.memory.get_received_room_key_bundle_data(room_id, user_id).await.map_err(infallible)
    }

    async fn get_pending_key_bundle_details_for_room(
        &self,
        room_id: &RoomId,
    ) -> Result<Option<RoomPendingKeyBundleDetails>> {
        self.memory.get_pending_key_bundle_details_for_room(room_id).await.map_err(infallible)
    }

    async fn get_all_rooms_pending_key_bundles(&self) -> Result<Vec<RoomPendingKeyBundleDetails>> {
        self.memory.get_all_rooms_pending_key_bundles().await.map_err(infallible)
    }

    async fn has_downloaded_all_room_keys(&self, room_id: &RoomId) -> Result<bool> {
        self.memory.has_downloaded_all_room_keys(room_id).await.map_err(infallible)
    }

    async fn get_custom_value(&self, key: &str) -> Result<Option<Vec<u8>>> {
        self.memory.get_custom_value(key).await.map_err(infallible)
    }

    async fn set_custom_value(&self, key: &str, value: Vec<u8>) -> Result<()> {
        let _saving = self.saving.lock().await;
        self.write(vec![self.row(kind::CUSTOM, key, &value)?]).await?;
        self.memory.set_custom_value(key, value).await.map_err(infallible)
    }

    async fn remove_custom_value(&self, key: &str) -> Result<()> {
        let _saving = self.saving.lock().await;
        self.write(vec![(kind::CUSTOM, key.to_owned(), None)]).await?;
        self.memory.remove_custom_value(key).await.map_err(infallible)
    }

    async fn try_take_leased_lock(
        &self,
        lease_duration_ms: u32,
        key: &str,
        holder: &str,
    ) -> Result<Option<CrossProcessLockGeneration>> {
        self.memory.try_take_leased_lock(lease_duration_ms, key, holder).await.map_err(infallible)
    }

    async fn next_batch_token(&self) -> Result<Option<String>> {
        self.memory.next_batch_token().await.map_err(infallible)
    }

    async fn close(&self) -> Result<()> {
        Ok(())
    }

    async fn reopen(&self) -> Result<()> {
        Ok(())
    }

    async fn get_size(&self) -> Result<Option<usize>> {
        Ok(None)
    }
}
