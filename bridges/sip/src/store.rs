//! The SIP side's own state, in a database of its own (not the core's, which migrates its schema with its own
//! history): device registrations (bindings) and the rtpengine calls the bridge has open. SQLite (default) or
//! PostgreSQL behind one trait, the same SQL for both, one [`conformance`] suite run against both.

pub mod conformance;
mod pg;
mod sqlite;

pub use pg::PgStore;
pub use sqlite::SqliteStore;

use async_trait::async_trait;
use std::sync::Arc;
use tincan_sip_core::stack::{Target, Transport};

/// A storage failure.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database failed.
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    /// Migrations failed.
    #[error("migrations: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// The URL names no supported backend.
    #[error("unsupported database URL {0:?}: use sqlite:… or postgres://…")]
    UnsupportedUrl(String),
    /// A stored value does not parse.
    #[error("corrupt value in {0}")]
    Corrupt(&'static str),
}

/// Store result.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// A registered contact of a device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Binding {
    /// The number (address of record) it is registered under.
    pub number: String,
    /// The Contact URI.
    pub contact: String,
    /// The device (digest username).
    pub username: String,
    /// Where the REGISTER came from: requests to the device go there (it may sit behind NAT).
    pub source: Target,
    /// The REGISTER's Call-ID and CSeq (RFC 3261 §10.3 step 7: older requests do not overwrite newer ones).
    pub call_id: String,
    /// CSeq number.
    pub cseq: i64,
    /// Expiry, Unix seconds.
    pub expires_at: i64,
    /// The device's User-Agent, for listing.
    pub user_agent: Option<String>,
}

/// Registrations.
#[async_trait]
pub trait BindingRepository: Send + Sync {
    /// Adds or refreshes a binding; a refresh with the same Call-ID and a CSeq not above the stored one is
    /// ignored (returns false).
    async fn upsert_binding(&self, b: &Binding) -> Result<bool>;
    /// Removes one contact of a number.
    async fn remove_binding(&self, number: &str, contact: &str) -> Result<bool>;
    /// Removes every binding of a device under a number.
    async fn remove_device_bindings(&self, number: &str, username: &str) -> Result<u64>;
    /// The live bindings of a number at `now`.
    async fn bindings(&self, number: &str, now: i64) -> Result<Vec<Binding>>;
    /// Deletes expired bindings.
    async fn purge_expired(&self, now: i64) -> Result<u64>;
}

/// rtpengine calls the bridge opened.
#[async_trait]
pub trait MediaRepository: Send + Sync {
    /// Records a call opened at rtpengine (before the `offer`).
    async fn add_media_session(&self, call_id: &str, now: i64) -> Result<()>;
    /// Forgets it (after the `delete`).
    async fn remove_media_session(&self, call_id: &str) -> Result<()>;
    /// Every call still recorded (at start: the ones a crash left).
    async fn media_sessions(&self) -> Result<Vec<String>>;
}

/// Both repositories.
pub trait Store: BindingRepository + MediaRepository + std::fmt::Debug {}
impl<T: BindingRepository + MediaRepository + std::fmt::Debug> Store for T {}

/// Opens (and migrates) the store at `url`.
pub async fn open(url: &str) -> Result<Arc<dyn Store>> {
    if url.starts_with("sqlite:") {
        Ok(Arc::new(SqliteStore::open(url).await?))
    } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Ok(Arc::new(PgStore::open(url).await?))
    } else {
        Err(StoreError::UnsupportedUrl(url.to_owned()))
    }
}

pub(crate) fn transport_of(s: &str) -> Result<Transport> {
    Transport::from_param(s).ok_or(StoreError::Corrupt("sip_bindings.transport"))
}

/// The SQL both backends run (`$n` placeholders work in both).
macro_rules! impl_store {
    ($store:ty) => {
        #[async_trait::async_trait]
        impl $crate::store::BindingRepository for $store {
            async fn upsert_binding(&self, b: &$crate::store::Binding) -> $crate::store::Result<bool> {
                let done = sqlx::query(
                    "INSERT INTO sip_bindings (number, contact, username, transport, source, call_id, cseq, \
                     expires_at, user_agent) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
                     ON CONFLICT (number, contact) DO UPDATE SET username = excluded.username, \
                     transport = excluded.transport, source = excluded.source, call_id = excluded.call_id, \
                     cseq = excluded.cseq, expires_at = excluded.expires_at, user_agent = excluded.user_agent \
                     WHERE sip_bindings.call_id <> excluded.call_id OR sip_bindings.cseq < excluded.cseq",
                )
                .bind(&b.number)
                .bind(&b.contact)
                .bind(&b.username)
                .bind(b.source.transport.as_param())
                .bind(b.source.addr.to_string())
                .bind(&b.call_id)
                .bind(b.cseq)
                .bind(b.expires_at)
                .bind(&b.user_agent)
                .execute(&self.pool)
                .await?;
                Ok(done.rows_affected() > 0)
            }

            async fn remove_binding(&self, number: &str, contact: &str) -> $crate::store::Result<bool> {
                let done = sqlx::query("DELETE FROM sip_bindings WHERE number = $1 AND contact = $2")
                    .bind(number)
                    .bind(contact)
                    .execute(&self.pool)
                    .await?;
                Ok(done.rows_affected() > 0)
            }

            async fn remove_device_bindings(&self, number: &str, username: &str) -> $crate::store::Result<u64> {
                let done = sqlx::query("DELETE FROM sip_bindings WHERE number = $1 AND username = $2")
                    .bind(number)
                    .bind(username)
                    .execute(&self.pool)
                    .await?;
                Ok(done.rows_affected())
            }

            async fn bindings(&self, number: &str, now: i64) -> $crate::store::Result<Vec<$crate::store::Binding>> {
                use sqlx::Row as _;
                let rows = sqlx::query(
                    "SELECT number, contact, username, transport, source, call_id, cseq, expires_at, user_agent \
                     FROM sip_bindings WHERE number = $1 AND expires_at > $2 ORDER BY expires_at DESC, contact",
                )
                .bind(number)
                .bind(now)
                .fetch_all(&self.pool)
                .await?;
                rows.iter()
                    .map(|r| {
                        let source: String = r.try_get("source")?;
                        Ok($crate::store::Binding {
                            number: r.try_get("number")?,
                            contact: r.try_get("contact")?,
                            username: r.try_get("username")?,
                            source: tincan_sip_core::stack::Target {
                                transport: $crate::store::transport_of(&r.try_get::<String, _>("transport")?)?,
                                addr: source
                                    .parse()
                                    .map_err(|_| $crate::store::StoreError::Corrupt("sip_bindings.source"))?,
                            },
                            call_id: r.try_get("call_id")?,
                            cseq: r.try_get("cseq")?,
                            expires_at: r.try_get("expires_at")?,
                            user_agent: r.try_get("user_agent")?,
                        })
                    })
                    .collect()
            }

            async fn purge_expired(&self, now: i64) -> $crate::store::Result<u64> {
                let done = sqlx::query("DELETE FROM sip_bindings WHERE expires_at <= $1")
                    .bind(now)
                    .execute(&self.pool)
                    .await?;
                Ok(done.rows_affected())
            }
        }

        #[async_trait::async_trait]
        impl $crate::store::MediaRepository for $store {
            async fn add_media_session(&self, call_id: &str, now: i64) -> $crate::store::Result<()> {
                sqlx::query(
                    "INSERT INTO sip_media_sessions (call_id, created_at) VALUES ($1, $2) ON CONFLICT DO NOTHING",
                )
                .bind(call_id)
                .bind(now)
                .execute(&self.pool)
                .await?;
                Ok(())
            }

            async fn remove_media_session(&self, call_id: &str) -> $crate::store::Result<()> {
                sqlx::query("DELETE FROM sip_media_sessions WHERE call_id = $1")
                    .bind(call_id)
                    .execute(&self.pool)
                    .await?;
                Ok(())
            }

            async fn media_sessions(&self) -> $crate::store::Result<Vec<String>> {
                use sqlx::Row as _;
                let rows = sqlx::query("SELECT call_id FROM sip_media_sessions ORDER BY created_at, call_id")
                    .fetch_all(&self.pool)
                    .await?;
                rows.iter().map(|r| Ok(r.try_get("call_id")?)).collect()
            }
        }
    };
}
pub(crate) use impl_store;
