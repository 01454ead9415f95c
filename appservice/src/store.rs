//! Bridge state behind repository traits: the durable inbox, the durable remote queue, ghosts, portals and the
//! message-ID map.
//!
//! Two backends, [`SqliteStore`] (the embedded default) and [`PgStore`] (several bridge nodes or an operator's
//! PostgreSQL), share their SQL text: the queries are written once (`$n` placeholders, which sqlx accepts for
//! SQLite too) and instantiated for both drivers by a macro; only the migrations differ (one folder per backend,
//! embedded with `sqlx::migrate!`). Both pass one conformance suite (`tests/it/store.rs`).

pub(crate) mod postgres;
pub(crate) mod sqlite;

pub use postgres::PgStore;
pub use sqlite::SqliteStore;

use crate::ids::{PortalKey, RemoteMessageId, RemoteUserId};
use async_trait::async_trait;
use ruma::{OwnedEventId, OwnedRoomId, OwnedUserId};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::sync::Arc;

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database refused or failed.
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    /// The migrations could not be applied.
    #[error("migration: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// A stored value does not parse (a Matrix ID or a metadata document).
    #[error("corrupt {what} in the database: {value}")]
    Corrupt {
        /// Which column.
        what: &'static str,
        /// The stored text.
        value: String,
    },
    /// The database URL names no supported backend.
    #[error("unsupported database URL {0:?}: use sqlite:… or postgres://…")]
    UnsupportedUrl(String),
}

/// Store result.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Connector-specific data kept beside a core row, as a JSON document the connector types.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Metadata(pub serde_json::Value);

impl Metadata {
    /// Serializes a connector's typed metadata.
    pub fn from_typed<T: Serialize>(value: &T) -> Self {
        Self(serde_json::to_value(value).unwrap_or(serde_json::Value::Null))
    }

    /// Reads the metadata as the connector's type; `None` when empty or of another shape.
    pub fn typed<T: DeserializeOwned>(&self) -> Option<T> {
        serde_json::from_value(self.0.clone()).ok()
    }

    fn to_text(&self) -> String {
        if self.0.is_null() { "{}".into() } else { self.0.to_string() }
    }

    fn from_text(text: &str) -> Result<Self> {
        serde_json::from_str(text)
            .map(Metadata)
            .map_err(|_| StoreError::Corrupt { what: "metadata", value: text.to_owned() })
    }
}

/// Which part of a transaction an inbox event came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InboxKind {
    /// A room timeline event (`events`).
    Timeline,
    /// An ephemeral event (`ephemeral`: receipts, typing).
    Ephemeral,
    /// The crypto part of a transaction (to-device messages, device lists, one-time-key counts), one entry
    /// recorded ahead of the transaction's events.
    Crypto,
}

impl InboxKind {
    fn as_str(self) -> &'static str {
        match self {
            InboxKind::Timeline => "timeline",
            InboxKind::Ephemeral => "ephemeral",
            InboxKind::Crypto => "crypto",
        }
    }

    fn parse(s: &str) -> Result<Self> {
        match s {
            "timeline" => Ok(InboxKind::Timeline),
            "ephemeral" => Ok(InboxKind::Ephemeral),
            "crypto" => Ok(InboxKind::Crypto),
            _ => Err(StoreError::Corrupt { what: "inbox kind", value: s.to_owned() }),
        }
    }
}

/// An event to record in the inbox.
#[derive(Debug, Clone)]
pub struct NewInboxEvent {
    /// Timeline or ephemeral.
    pub kind: InboxKind,
    /// The event JSON exactly as the homeserver sent it.
    pub json: String,
}

/// A recorded inbox event.
#[derive(Debug, Clone, PartialEq)]
pub struct InboxEntry {
    /// Position in the inbox; events are processed in this order.
    pub seq: i64,
    /// The transaction it came in.
    pub txn_id: String,
    /// Timeline or ephemeral.
    pub kind: InboxKind,
    /// The event JSON.
    pub json: String,
}

/// A ghost user: the Matrix puppet of a remote user.
#[derive(Debug, Clone, PartialEq)]
pub struct Ghost {
    /// The remote user.
    pub remote_id: RemoteUserId,
    /// Its Matrix user ID.
    pub user_id: OwnedUserId,
    /// The display name last set on Matrix.
    pub display_name: Option<String>,
    /// The avatar (`mxc://`) last set on Matrix.
    pub avatar_url: Option<String>,
    /// Whether the account exists on the homeserver.
    pub registered: bool,
    /// Connector data.
    pub metadata: Metadata,
}

/// A portal: the Matrix room standing for one remote chat of one local user.
#[derive(Debug, Clone, PartialEq)]
pub struct Portal {
    /// Receiver and remote chat.
    pub key: PortalKey,
    /// The Matrix room, once created.
    pub room_id: Option<OwnedRoomId>,
    /// The other party of this direct chat; in a group chat, the participant whose ghost hosts the room (see
    /// [`crate::connector::ChatInfo`]).
    pub other_user: RemoteUserId,
    /// Whether the chat is a group: set when the connector describes it with a
    /// [`crate::connector::ChatInfo`] or the receiver adds a participant from Matrix, and kept when the room
    /// goes (the chat's next room is then a group room again, not a DM).
    pub is_group: bool,
    /// Connector data.
    pub metadata: Metadata,
}

/// One message known on both sides.
#[derive(Debug, Clone, PartialEq)]
pub struct MessageMapping {
    /// The portal it belongs to.
    pub portal: PortalKey,
    /// The remote message ID.
    pub remote_id: RemoteMessageId,
    /// The Matrix event ID.
    pub event_id: OwnedEventId,
    /// The Matrix room.
    pub room_id: OwnedRoomId,
    /// The Matrix sender (a ghost or the local user).
    pub sender: OwnedUserId,
    /// Connector data.
    pub metadata: Metadata,
}

/// An event from the network to record in the remote queue.
#[derive(Debug, Clone)]
pub struct NewRemoteEvent {
    /// The portal it goes to.
    pub portal: PortalKey,
    /// The event as JSON (the core's serialized [`crate::RemoteEvent`]).
    pub json: String,
}

/// A recorded remote event not yet bridged.
#[derive(Debug, Clone, PartialEq)]
pub struct RemoteQueueEntry {
    /// Position in the queue; the events of one portal are bridged in this order.
    pub seq: i64,
    /// The portal it goes to.
    pub portal: PortalKey,
    /// The event JSON.
    pub json: String,
    /// When it was queued (ms since the epoch).
    pub queued_at: i64,
}

/// Which durable queue a row marked done is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WorkQueue {
    /// The inbox of homeserver transactions (`inbox_event`).
    Inbox,
    /// The queue of remote events (`remote_event`).
    Remote,
}

/// A row of the inbox or the remote queue whose work is finished, with the message mapping its handling
/// produced.
#[derive(Debug, Clone, PartialEq)]
pub struct Completion {
    /// The queue it is in.
    pub queue: WorkQueue,
    /// Its position there.
    pub seq: i64,
    /// The mapping to record with it (ignored, like [`MessageRepository::insert_message`], when either ID is
    /// already mapped).
    pub mapping: Option<MessageMapping>,
}

/// Marking finished work done, many rows at once.
#[async_trait]
pub trait CompletionRepository: Send + Sync {
    /// Marks every row of `done` done and records their mappings, all in one database transaction (one disk
    /// flush): either all of them or, on an error, none.
    async fn complete_all(&self, done: &[Completion], now: i64) -> Result<()>;
}

/// The durable inbox of homeserver transactions (exactly-once processing).
#[async_trait]
pub trait InboxRepository: Send + Sync {
    /// Records `txn_id` and its events in one database transaction. Returns `false` (and records nothing) when
    /// the transaction was recorded before.
    async fn record_transaction(&self, txn_id: &str, events: &[NewInboxEvent], now: i64) -> Result<bool>;
    /// Whether `txn_id` was recorded.
    async fn transaction_seen(&self, txn_id: &str) -> Result<bool>;
    /// Unprocessed events with `seq > after`, oldest first, at most `limit`.
    async fn pending_after(&self, after: i64, limit: i64) -> Result<Vec<InboxEntry>>;
    /// Marks an event processed (one that produced no message mapping).
    async fn mark_done(&self, seq: i64, now: i64) -> Result<()> {
        self.complete_inbox(seq, None, now).await
    }
    /// Marks an event processed and, in the same database transaction (one disk flush), records the message
    /// mapping its handling produced (ignored, like [`MessageRepository::insert_message`], when either ID is
    /// already mapped).
    async fn complete_inbox(&self, seq: i64, mapping: Option<&MessageMapping>, now: i64) -> Result<()>;
    /// How many events wait to be processed.
    async fn pending_count(&self) -> Result<i64>;
    /// The highest `seq` recorded so far (0 for an empty inbox): an event above it was recorded later.
    async fn last_seq(&self) -> Result<i64>;
}

/// The durable queue of remote events on their way to Matrix (nothing lost on a crash).
#[async_trait]
pub trait RemoteQueueRepository: Send + Sync {
    /// Records `events` in one database transaction, in order; returns their positions.
    async fn queue_remote(&self, events: &[NewRemoteEvent], now: i64) -> Result<Vec<i64>>;
    /// Remote events not done with `seq > after`, oldest first, at most `limit`.
    async fn remote_pending_after(&self, after: i64, limit: i64) -> Result<Vec<RemoteQueueEntry>>;
    /// Marks a remote event done and, in the same database transaction, records the message mapping it produced
    /// (ignored, like [`MessageRepository::insert_message`], when either ID is already mapped).
    async fn complete_remote(&self, seq: i64, mapping: Option<&MessageMapping>, now: i64) -> Result<()>;
    /// How many remote events wait to be bridged.
    async fn remote_pending_count(&self) -> Result<i64>;
}

/// Ghost users.
#[async_trait]
pub trait GhostRepository: Send + Sync {
    /// The ghost of a remote user.
    async fn ghost(&self, remote: &RemoteUserId) -> Result<Option<Ghost>>;
    /// Inserts or replaces a ghost.
    async fn upsert_ghost(&self, ghost: &Ghost) -> Result<()>;
}

/// Portal rooms.
#[async_trait]
pub trait PortalRepository: Send + Sync {
    /// The portal of a receiver and chat.
    async fn portal(&self, key: &PortalKey) -> Result<Option<Portal>>;
    /// The portal whose Matrix room is `room_id`.
    async fn portal_by_room(&self, room_id: &ruma::RoomId) -> Result<Option<Portal>>;
    /// Inserts or replaces a portal.
    async fn upsert_portal(&self, portal: &Portal) -> Result<()>;
    /// Forgets a portal.
    async fn delete_portal(&self, key: &PortalKey) -> Result<()>;
}

/// The message-ID map, both ways.
#[async_trait]
pub trait MessageRepository: Send + Sync {
    /// Records a mapping; `false` when the remote ID or the event ID was already mapped (nothing changes).
    async fn insert_message(&self, message: &MessageMapping) -> Result<bool>;
    /// The mapping of a remote message in a portal.
    async fn message_by_remote(&self, portal: &PortalKey, remote: &RemoteMessageId) -> Result<Option<MessageMapping>>;
    /// The mapping of a Matrix event in `portal`. Scoped to the portal: an event ID named in one room (an edit,
    /// reaction, redaction or receipt) must never resolve to a message bridged in another user's portal.
    async fn message_by_event(&self, portal: &PortalKey, event_id: &ruma::EventId) -> Result<Option<MessageMapping>>;
}

/// A local user's login on the network, made with `login` in the management room: the remote identity the user
/// acts as (the number they send from…) and the connector's data (credentials, settings).
#[derive(Debug, Clone, PartialEq)]
pub struct UserLogin {
    /// The local Matrix user.
    pub user_id: OwnedUserId,
    /// Who the user is on the network.
    pub remote_id: RemoteUserId,
    /// Connector data.
    pub metadata: Metadata,
}

/// Logins and the rooms users talk to the bridge bot in.
#[async_trait]
pub trait LoginRepository: Send + Sync {
    /// The login of a local user.
    async fn user_login(&self, user: &ruma::UserId) -> Result<Option<UserLogin>>;
    /// Inserts or replaces a login.
    async fn upsert_user_login(&self, login: &UserLogin) -> Result<()>;
    /// Deletes a login; `false` when there was none.
    async fn delete_user_login(&self, user: &ruma::UserId) -> Result<bool>;
    /// The user whose management room `room` is (the room they invited the bot into).
    async fn management_room(&self, room: &ruma::RoomId) -> Result<Option<OwnedUserId>>;
    /// Records `room` as the management room of `user`.
    async fn set_management_room(&self, room: &ruma::RoomId, user: &ruma::UserId) -> Result<()>;
}

/// All repositories of one backend.
pub trait Store:
    InboxRepository
    + RemoteQueueRepository
    + CompletionRepository
    + GhostRepository
    + PortalRepository
    + MessageRepository
    + HousekeepingRepository
    + LoginRepository
    + std::fmt::Debug
{
}

/// What one pruning removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pruned {
    /// Inbox events handled before the cutoff.
    pub inbox_events: u64,
    /// Remote events bridged (or given up on) before the cutoff.
    pub remote_events: u64,
    /// Recorded transactions received before the cutoff with no inbox event left.
    pub transactions: u64,
}

/// Clean-up of finished work.
#[async_trait]
pub trait HousekeepingRepository: Send + Sync {
    /// Deletes, in one database transaction, the inbox and remote-queue rows marked done before `before`
    /// (milliseconds) and the transactions received before it that have no inbox event left. Pending rows
    /// and message mappings are never deleted.
    async fn prune_done(&self, before: i64) -> Result<Pruned>;
}

impl<T> Store for T where
    T: InboxRepository
        + HousekeepingRepository
        + RemoteQueueRepository
        + CompletionRepository
        + GhostRepository
        + PortalRepository
        + MessageRepository
        + LoginRepository
        + std::fmt::Debug
{
}

/// Opens the backend named by `url` (`sqlite:path`, `postgres://…`) and applies its migrations.
pub async fn connect(url: &str, max_connections: u32) -> Result<Arc<dyn Store>> {
    if url.starts_with("sqlite:") {
        Ok(Arc::new(SqliteStore::connect(url, max_connections).await?))
    } else if is_postgres(url) {
        Ok(Arc::new(PgStore::connect(url, max_connections).await?))
    } else {
        Err(StoreError::UnsupportedUrl(url.to_owned()))
    }
}

/// Whether `url` names a PostgreSQL database.
pub(crate) fn is_postgres(url: &str) -> bool {
    url.starts_with("postgres:") || url.starts_with("postgresql:")
}

/// At most this many rows in one multi-row statement (7 parameters a row at most: well under SQLite's 32,766 and
/// PostgreSQL's 65,535 bind parameters).
const ROWS_PER_STATEMENT: usize = 256;

fn parse_id<T: TryFrom<String>>(what: &'static str, value: String) -> Result<T> {
    T::try_from(value.clone()).map_err(|_| StoreError::Corrupt { what, value })
}

/// Implements every repository for a backend struct with a `pool` field; the SQL is shared.
macro_rules! impl_repositories {
    ($store:ty, $db:ty, $row:ty) => {
        use crate::ids::{PortalKey, RemoteChatId, RemoteMessageId, RemoteUserId};
        use crate::store::{
            Ghost, GhostRepository, InboxEntry, InboxKind, InboxRepository, MessageMapping, MessageRepository,
            Metadata, NewInboxEvent, NewRemoteEvent, Portal, PortalRepository, RemoteQueueEntry,
            RemoteQueueRepository, Result, parse_id,
        };
        use async_trait::async_trait;
        use sqlx::Row;

        /// Marks the rows of `done` done and records the message mappings their handling produced, in one
        /// database transaction (one disk flush). The mappings go in with multi-row inserts and the inbox rows
        /// with one `UPDATE … WHERE seq IN (…)` per chunk (few statements for a whole batch); a remote row keeps
        /// its own `UPDATE` (it records its event ID). Mappings are inserted in `done`'s order, so the first
        /// of two for one ID wins, as one by one.
        async fn complete_in(pool: &sqlx::Pool<$db>, done: &[crate::store::Completion], now: i64) -> Result<()> {
            let mut tx = pool.begin().await?;
            let mappings: Vec<&MessageMapping> = done.iter().filter_map(|d| d.mapping.as_ref()).collect();
            for chunk in mappings.chunks(crate::store::ROWS_PER_STATEMENT) {
                insert_messages_in(&mut *tx, chunk).await?;
            }
            let inbox: Vec<i64> =
                done.iter().filter(|d| d.queue == crate::store::WorkQueue::Inbox).map(|d| d.seq).collect();
            for chunk in inbox.chunks(crate::store::ROWS_PER_STATEMENT) {
                let mut query = sqlx::QueryBuilder::<$db>::new("UPDATE inbox_event SET done_at = ");
                query.push_bind(now).push(" WHERE seq IN (");
                let mut seqs = query.separated(", ");
                for seq in chunk {
                    seqs.push_bind(*seq);
                }
                seqs.push_unseparated(")");
                // Built per size: not kept in the connection's statement cache.
                query.build().persistent(false).execute(&mut *tx).await?;
            }
            for d in done.iter().filter(|d| d.queue == crate::store::WorkQueue::Remote) {
                sqlx::query("UPDATE remote_event SET done_at = $1, event_id = $3 WHERE seq = $2")
                    .bind(now)
                    .bind(d.seq)
                    .bind(d.mapping.as_ref().map(|m| m.event_id.as_str()))
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await?;
            Ok(())
        }

        /// [`complete_in`] for one row.
        async fn complete_one(
            pool: &sqlx::Pool<$db>,
            queue: crate::store::WorkQueue,
            seq: i64,
            mapping: Option<&MessageMapping>,
            now: i64,
        ) -> Result<()> {
            complete_in(pool, &[crate::store::Completion { queue, seq, mapping: mapping.cloned() }], now).await
        }

        #[async_trait]
        impl crate::store::CompletionRepository for $store {
            async fn complete_all(&self, done: &[crate::store::Completion], now: i64) -> Result<()> {
                complete_in(&self.pool, done, now).await
            }
        }

        /// Records a mapping on `conn` (a pooled connection or an open transaction).
        async fn insert_message_in(conn: &mut <$db as sqlx::Database>::Connection, m: &MessageMapping) -> Result<bool> {
            let n = sqlx::query(
                "INSERT INTO message (receiver, chat_id, remote_id, event_id, room_id, sender, metadata) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT DO NOTHING",
            )
            .bind(m.portal.receiver.as_str())
            .bind(m.portal.chat.as_str())
            .bind(m.remote_id.as_str())
            .bind(m.event_id.as_str())
            .bind(m.room_id.as_str())
            .bind(m.sender.as_str())
            .bind(m.metadata.to_text())
            .execute(conn)
            .await?
            .rows_affected();
            Ok(n == 1)
        }

        /// Records `mappings` on `conn` with one multi-row insert, in their order; each one already mapped
        /// (either ID) is skipped, like [`insert_message_in`].
        async fn insert_messages_in(
            conn: &mut <$db as sqlx::Database>::Connection,
            mappings: &[&MessageMapping],
        ) -> Result<()> {
            let mut query = sqlx::QueryBuilder::<$db>::new(
                "INSERT INTO message (receiver, chat_id, remote_id, event_id, room_id, sender, metadata) ",
            );
            query.push_values(mappings, |mut row, m| {
                row.push_bind(m.portal.receiver.as_str())
                    .push_bind(m.portal.chat.as_str())
                    .push_bind(m.remote_id.as_str())
                    .push_bind(m.event_id.as_str())
                    .push_bind(m.room_id.as_str())
                    .push_bind(m.sender.as_str())
                    .push_bind(m.metadata.to_text());
            });
            query.push(" ON CONFLICT DO NOTHING");
            query.build().persistent(false).execute(conn).await?;
            Ok(())
        }

        fn ghost_from_row(row: &$row) -> Result<Ghost> {
            Ok(Ghost {
                remote_id: RemoteUserId(row.try_get("remote_id")?),
                user_id: parse_id("user id", row.try_get("user_id")?)?,
                display_name: row.try_get("display_name")?,
                avatar_url: row.try_get("avatar_url")?,
                registered: row.try_get::<i64, _>("registered")? != 0,
                metadata: Metadata::from_text(&row.try_get::<String, _>("metadata")?)?,
            })
        }

        fn portal_from_row(row: &$row) -> Result<Portal> {
            let room: Option<String> = row.try_get("room_id")?;
            Ok(Portal {
                key: PortalKey {
                    receiver: parse_id("user id", row.try_get("receiver")?)?,
                    chat: RemoteChatId(row.try_get("chat_id")?),
                },
                room_id: room.map(|r| parse_id("room id", r)).transpose()?,
                other_user: RemoteUserId(row.try_get("other_user")?),
                is_group: row.try_get::<i64, _>("is_group")? != 0,
                metadata: Metadata::from_text(&row.try_get::<String, _>("metadata")?)?,
            })
        }

        fn message_from_row(row: &$row) -> Result<MessageMapping> {
            Ok(MessageMapping {
                portal: PortalKey {
                    receiver: parse_id("user id", row.try_get("receiver")?)?,
                    chat: RemoteChatId(row.try_get("chat_id")?),
                },
                remote_id: RemoteMessageId(row.try_get("remote_id")?),
                event_id: parse_id("event id", row.try_get("event_id")?)?,
                room_id: parse_id("room id", row.try_get("room_id")?)?,
                sender: parse_id("user id", row.try_get("sender")?)?,
                metadata: Metadata::from_text(&row.try_get::<String, _>("metadata")?)?,
            })
        }

        #[async_trait]
        impl InboxRepository for $store {
            async fn record_transaction(&self, txn_id: &str, events: &[NewInboxEvent], now: i64) -> Result<bool> {
                // Begin, act, commit: dropping `tx` on any error rolls everything back.
                let mut tx = self.pool.begin().await?;
                let fresh = sqlx::query(
                    "INSERT INTO as_transaction (txn_id, received_at) VALUES ($1, $2) ON CONFLICT DO NOTHING",
                )
                .bind(txn_id)
                .bind(now)
                .execute(&mut *tx)
                .await?
                .rows_affected()
                    == 1;
                if !fresh {
                    return Ok(false);
                }
                // Multi-row inserts (rows numbered in the order given), not one statement per event.
                for chunk in events.chunks(crate::store::ROWS_PER_STATEMENT) {
                    let mut query = sqlx::QueryBuilder::<$db>::new("INSERT INTO inbox_event (txn_id, kind, event_json) ");
                    query.push_values(chunk, |mut row, event| {
                        row.push_bind(txn_id).push_bind(event.kind.as_str()).push_bind(&event.json);
                    });
                    query.build().persistent(false).execute(&mut *tx).await?;
                }
                tx.commit().await?;
                Ok(true)
            }

            async fn transaction_seen(&self, txn_id: &str) -> Result<bool> {
                let row = sqlx::query("SELECT 1 AS one FROM as_transaction WHERE txn_id = $1")
                    .bind(txn_id)
                    .fetch_optional(&self.pool)
                    .await?;
                Ok(row.is_some())
            }

            async fn pending_after(&self, after: i64, limit: i64) -> Result<Vec<InboxEntry>> {
                let rows = sqlx::query(
                    "SELECT seq, txn_id, kind, event_json FROM inbox_event \
                     WHERE done_at IS NULL AND seq > $1 ORDER BY seq LIMIT $2",
                )
                .bind(after)
                .bind(limit)
                .fetch_all(&self.pool)
                .await?;
                rows.iter()
                    .map(|row| {
                        Ok(InboxEntry {
                            seq: row.try_get("seq")?,
                            txn_id: row.try_get("txn_id")?,
                            kind: InboxKind::parse(&row.try_get::<String, _>("kind")?)?,
                            json: row.try_get("event_json")?,
                        })
                    })
                    .collect()
            }

            async fn complete_inbox(&self, seq: i64, mapping: Option<&MessageMapping>, now: i64) -> Result<()> {
                complete_one(&self.pool, crate::store::WorkQueue::Inbox, seq, mapping, now).await
            }

            async fn pending_count(&self) -> Result<i64> {
                let row = sqlx::query("SELECT COUNT(*) AS n FROM inbox_event WHERE done_at IS NULL")
                    .fetch_one(&self.pool)
                    .await?;
                Ok(row.try_get("n")?)
            }

            async fn last_seq(&self) -> Result<i64> {
                let row = sqlx::query("SELECT COALESCE(MAX(seq), 0) AS n FROM inbox_event").fetch_one(&self.pool).await?;
                Ok(row.try_get("n")?)
            }
        }

        #[async_trait]
        impl crate::store::HousekeepingRepository for $store {
            async fn prune_done(&self, before: i64) -> Result<crate::store::Pruned> {
                let mut tx = self.pool.begin().await?;
                let inbox_events = sqlx::query("DELETE FROM inbox_event WHERE done_at IS NOT NULL AND done_at < $1")
                    .bind(before)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                let remote_events =
                    sqlx::query("DELETE FROM remote_event WHERE done_at IS NOT NULL AND done_at < $1")
                        .bind(before)
                        .execute(&mut *tx)
                        .await?
                        .rows_affected();
                let transactions = sqlx::query(
                    "DELETE FROM as_transaction WHERE received_at < $1 AND NOT EXISTS \
                     (SELECT 1 FROM inbox_event WHERE inbox_event.txn_id = as_transaction.txn_id)",
                )
                .bind(before)
                .execute(&mut *tx)
                .await?
                .rows_affected();
                tx.commit().await?;
                Ok(crate::store::Pruned { inbox_events, remote_events, transactions })
            }
        }

        #[async_trait]
        impl RemoteQueueRepository for $store {
            async fn queue_remote(&self, events: &[NewRemoteEvent], now: i64) -> Result<Vec<i64>> {
                let mut tx = self.pool.begin().await?;
                let mut seqs = Vec::with_capacity(events.len());
                for e in events {
                    let row = sqlx::query(
                        "INSERT INTO remote_event (receiver, chat_id, event_json, queued_at) \
                         VALUES ($1, $2, $3, $4) RETURNING seq",
                    )
                    .bind(e.portal.receiver.as_str())
                    .bind(e.portal.chat.as_str())
                    .bind(&e.json)
                    .bind(now)
                    .fetch_one(&mut *tx)
                    .await?;
                    seqs.push(row.try_get("seq")?);
                }
                tx.commit().await?;
                Ok(seqs)
            }

            async fn remote_pending_after(&self, after: i64, limit: i64) -> Result<Vec<RemoteQueueEntry>> {
                let rows = sqlx::query(
                    "SELECT seq, receiver, chat_id, event_json, queued_at FROM remote_event \
                     WHERE done_at IS NULL AND seq > $1 ORDER BY seq LIMIT $2",
                )
                .bind(after)
                .bind(limit)
                .fetch_all(&self.pool)
                .await?;
                rows.iter()
                    .map(|row| {
                        Ok(RemoteQueueEntry {
                            seq: row.try_get("seq")?,
                            portal: PortalKey {
                                receiver: parse_id("user id", row.try_get("receiver")?)?,
                                chat: RemoteChatId(row.try_get("chat_id")?),
                            },
                            json: row.try_get("event_json")?,
                            queued_at: row.try_get("queued_at")?,
                        })
                    })
                    .collect()
            }

            async fn complete_remote(&self, seq: i64, mapping: Option<&MessageMapping>, now: i64) -> Result<()> {
                complete_one(&self.pool, crate::store::WorkQueue::Remote, seq, mapping, now).await
            }

            async fn remote_pending_count(&self) -> Result<i64> {
                let row = sqlx::query("SELECT COUNT(*) AS n FROM remote_event WHERE done_at IS NULL")
                    .fetch_one(&self.pool)
                    .await?;
                Ok(row.try_get("n")?)
            }
        }

        #[async_trait]
        impl GhostRepository for $store {
            async fn ghost(&self, remote: &RemoteUserId) -> Result<Option<Ghost>> {
                let row = sqlx::query(
                    "SELECT remote_id, user_id, display_name, avatar_url, registered, metadata \
                     FROM ghost WHERE remote_id = $1",
                )
                .bind(remote.as_str())
                .fetch_optional(&self.pool)
                .await?;
                row.as_ref().map(ghost_from_row).transpose()
            }

            async fn upsert_ghost(&self, ghost: &Ghost) -> Result<()> {
                sqlx::query(
                    "INSERT INTO ghost (remote_id, user_id, display_name, avatar_url, registered, metadata) \
                     VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (remote_id) DO UPDATE SET \
                     user_id = excluded.user_id, display_name = excluded.display_name, \
                     avatar_url = excluded.avatar_url, registered = excluded.registered, metadata = excluded.metadata",
                )
                .bind(ghost.remote_id.as_str())
                .bind(ghost.user_id.as_str())
                .bind(ghost.display_name.as_deref())
                .bind(ghost.avatar_url.as_deref())
                .bind(i64::from(ghost.registered))
                .bind(ghost.metadata.to_text())
                .execute(&self.pool)
                .await?;
                Ok(())
            }
        }

        #[async_trait]
        impl PortalRepository for $store {
            async fn portal(&self, key: &PortalKey) -> Result<Option<Portal>> {
                let row = sqlx::query(
                    "SELECT receiver, chat_id, room_id, other_user, is_group, metadata FROM portal \
                     WHERE receiver = $1 AND chat_id = $2",
                )
                .bind(key.receiver.as_str())
                .bind(key.chat.as_str())
                .fetch_optional(&self.pool)
                .await?;
                row.as_ref().map(portal_from_row).transpose()
            }

            async fn portal_by_room(&self, room_id: &ruma::RoomId) -> Result<Option<Portal>> {
                let row = sqlx::query(
                    "SELECT receiver, chat_id, room_id, other_user, is_group, metadata FROM portal WHERE room_id = $1",
                )
                .bind(room_id.as_str())
                .fetch_optional(&self.pool)
                .await?;
                row.as_ref().map(portal_from_row).transpose()
            }

            async fn upsert_portal(&self, portal: &Portal) -> Result<()> {
                let mut tx = self.pool.begin().await?;
                // A room stands for one portal only: a room re-used for another chat moves over.
                if let Some(room) = &portal.room_id {
                    sqlx::query("UPDATE portal SET room_id = NULL WHERE room_id = $1 AND NOT (receiver = $2 AND chat_id = $3)")
                        .bind(room.as_str())
                        .bind(portal.key.receiver.as_str())
                        .bind(portal.key.chat.as_str())
                        .execute(&mut *tx)
                        .await?;
                }
                sqlx::query(
                    "INSERT INTO portal (receiver, chat_id, room_id, other_user, is_group, metadata) \
                     VALUES ($1, $2, $3, $4, $5, $6) \
                     ON CONFLICT (receiver, chat_id) DO UPDATE SET room_id = excluded.room_id, \
                     other_user = excluded.other_user, is_group = excluded.is_group, metadata = excluded.metadata",
                )
                .bind(portal.key.receiver.as_str())
                .bind(portal.key.chat.as_str())
                .bind(portal.room_id.as_ref().map(|r| r.as_str()))
                .bind(portal.other_user.as_str())
                .bind(i64::from(portal.is_group))
                .bind(portal.metadata.to_text())
                .execute(&mut *tx)
                .await?;
                tx.commit().await?;
                Ok(())
            }

            async fn delete_portal(&self, key: &PortalKey) -> Result<()> {
                sqlx::query("DELETE FROM portal WHERE receiver = $1 AND chat_id = $2")
                    .bind(key.receiver.as_str())
                    .bind(key.chat.as_str())
                    .execute(&self.pool)
                    .await?;
                Ok(())
            }
        }

        #[async_trait]
        impl crate::store::LoginRepository for $store {
            async fn user_login(&self, user: &ruma::UserId) -> Result<Option<crate::store::UserLogin>> {
                let row = sqlx::query("SELECT user_id, remote_id, metadata FROM user_login WHERE user_id = $1")
                    .bind(user.as_str())
                    .fetch_optional(&self.pool)
                    .await?;
                row.as_ref()
                    .map(|row| {
                        Ok(crate::store::UserLogin {
                            user_id: parse_id("user id", row.try_get("user_id")?)?,
                            remote_id: RemoteUserId(row.try_get("remote_id")?),
                            metadata: Metadata::from_text(&row.try_get::<String, _>("metadata")?)?,
                        })
                    })
                    .transpose()
            }

            async fn upsert_user_login(&self, login: &crate::store::UserLogin) -> Result<()> {
                sqlx::query(
                    "INSERT INTO user_login (user_id, remote_id, metadata) VALUES ($1, $2, $3) \
                     ON CONFLICT (user_id) DO UPDATE SET remote_id = excluded.remote_id, metadata = excluded.metadata",
                )
                .bind(login.user_id.as_str())
                .bind(login.remote_id.as_str())
                .bind(login.metadata.to_text())
                .execute(&self.pool)
                .await?;
                Ok(())
            }

            async fn delete_user_login(&self, user: &ruma::UserId) -> Result<bool> {
                let n = sqlx::query("DELETE FROM user_login WHERE user_id = $1")
                    .bind(user.as_str())
                    .execute(&self.pool)
                    .await?
                    .rows_affected();
                Ok(n > 0)
            }

            async fn management_room(&self, room: &ruma::RoomId) -> Result<Option<ruma::OwnedUserId>> {
                let row = sqlx::query("SELECT user_id FROM management_room WHERE room_id = $1")
                    .bind(room.as_str())
                    .fetch_optional(&self.pool)
                    .await?;
                row.map(|row| parse_id("user id", row.try_get("user_id")?)).transpose()
            }

            async fn set_management_room(&self, room: &ruma::RoomId, user: &ruma::UserId) -> Result<()> {
                sqlx::query(
                    "INSERT INTO management_room (room_id, user_id) VALUES ($1, $2) \
                     ON CONFLICT (room_id) DO UPDATE SET user_id = excluded.user_id",
                )
                .bind(room.as_str())
                .bind(user.as_str())
                .execute(&self.pool)
                .await?;
                Ok(())
            }
        }

        #[async_trait]
        impl MessageRepository for $store {
            async fn insert_message(&self, m: &MessageMapping) -> Result<bool> {
                let mut conn = self.pool.acquire().await?;
                insert_message_in(&mut *conn, m).await
            }

            async fn message_by_remote(
                &self,
                portal: &PortalKey,
                remote: &RemoteMessageId,
            ) -> Result<Option<MessageMapping>> {
                let row = sqlx::query(
                    "SELECT receiver, chat_id, remote_id, event_id, room_id, sender, metadata FROM message \
                     WHERE receiver = $1 AND chat_id = $2 AND remote_id = $3",
                )
                .bind(portal.receiver.as_str())
                .bind(portal.chat.as_str())
                .bind(remote.as_str())
                .fetch_optional(&self.pool)
                .await?;
                row.as_ref().map(message_from_row).transpose()
            }

            async fn message_by_event(
                &self,
                portal: &PortalKey,
                event_id: &ruma::EventId,
            ) -> Result<Option<MessageMapping>> {
                let row = sqlx::query(
                    "SELECT receiver, chat_id, remote_id, event_id, room_id, sender, metadata FROM message \
                     WHERE event_id = $1 AND receiver = $2 AND chat_id = $3",
                )
                .bind(event_id.as_str())
                .bind(portal.receiver.as_str())
                .bind(portal.chat.as_str())
                .fetch_optional(&self.pool)
                .await?;
                row.as_ref().map(message_from_row).transpose()
            }
        }
    };
}
use impl_repositories;
