//! Durable state: code sessions, number → account, Identity Service bindings, tokens and peppers, and the
//! OpenID provider's sign-ins, codes and tokens ([`oidc`]), and number ports ([`ports`]).
//!
//! One repository trait per aggregate; SQLite (default) and PostgreSQL implement all of them with the same SQL
//! (`$n` placeholders work in both), generated once by [`impl_store!`]. Times are Unix seconds passed in by
//! the caller (from a `Clock`), so tests control them. Both backends pass one conformance suite
//! (`tests/it/store.rs`).

pub mod oidc;
mod pg;
pub mod ports;
mod sqlite;

pub use oidc::{OidcAccessToken, OidcCode, OidcRepository, OidcSignIn};
pub use pg::PgStore;
pub use ports::{PortRecord, PortRepository, PortSide};
pub use sqlite::SqliteStore;

use std::sync::Arc;

/// A storage failure.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database refused or failed.
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    /// Running migrations failed.
    #[error("migrations: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// A stored value has an unknown shape (written by a newer version?).
    #[error("corrupt row in {0}")]
    Corrupt(&'static str),
    /// A number was to be hashed before any pepper was stored.
    #[error("no lookup pepper is stored yet")]
    NoPepper,
    /// The database URL names neither SQLite nor PostgreSQL.
    #[error("database URL must start with sqlite: or postgres:// (postgresql://), not {0:?}")]
    UnknownUrl(String),
}

/// The lookup hash of a number (first argument) under a pepper (second).
pub type PepperedHash = dyn for<'a> Fn(&'a str, &'a str) -> String + Send + Sync;

/// Storage result.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// What a code session is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// `/_tincan/client/v1/register/*`.
    Register,
    /// Identity Service `validate/msisdn/*`.
    Identity,
}

impl Purpose {
    fn as_str(self) -> &'static str {
        match self {
            Purpose::Register => "register",
            Purpose::Identity => "identity",
        }
    }

    fn parse(s: &str) -> Result<Self> {
        match s {
            "register" => Ok(Purpose::Register),
            "identity" => Ok(Purpose::Identity),
            _ => Err(StoreError::Corrupt("code_sessions.purpose")),
        }
    }
}

/// A code session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CodeSession {
    /// Session id handed to the client.
    pub sid: String,
    /// SHA-256 of the client secret.
    pub client_secret_digest: String,
    /// E.164 number.
    pub number: String,
    /// What it is for.
    pub purpose: Purpose,
    /// HMAC of the code (see [`crate::code::hash`]).
    pub code_hash: Vec<u8>,
    /// Creation time.
    pub created_at: i64,
    /// Expiry of the current code.
    pub expires_at: i64,
    /// Wrong codes so far.
    pub attempts: i64,
    /// The client's `send_attempt` of the last SMS sent.
    pub send_attempt: i64,
    /// When the last SMS was sent.
    pub last_sent_at: i64,
    /// When the right code was entered.
    pub validated_at: Option<i64>,
    /// When the session was used up (account handed out, 3pid bound).
    pub consumed_at: Option<i64>,
}

/// Code sessions.
#[async_trait::async_trait]
pub trait SessionRepository: Send + Sync {
    /// Stores a new session.
    async fn create_session(&self, s: &CodeSession) -> Result<()>;
    /// Forgets a session (one whose SMS could not be sent); true when it existed.
    async fn delete_session(&self, sid: &str) -> Result<bool>;
    /// The session with this id.
    async fn session(&self, sid: &str) -> Result<Option<CodeSession>>;
    /// The newest session of this client secret for this number and purpose (for resends).
    async fn session_by_secret(&self, digest: &str, number: &str, purpose: Purpose) -> Result<Option<CodeSession>>;
    /// Replaces the code after a resend.
    async fn resend(&self, sid: &str, code_hash: &[u8], send_attempt: i64, now: i64, expires_at: i64) -> Result<()>;
    /// Takes one of the session's `max` code attempts before the code is compared, in one conditional
    /// `UPDATE … RETURNING`: the session as it is after the increment, or `None` when it has no attempt left, is
    /// consumed or has expired at `now`. Concurrent callers serialize on the row, so at most `max` attempts are
    /// ever judged whatever the concurrency.
    async fn reserve_attempt(&self, sid: &str, max: i64, now: i64) -> Result<Option<CodeSession>>;
    /// Marks the right code entered.
    async fn validate(&self, sid: &str, now: i64) -> Result<()>;
    /// Marks the session used, and validated at `now` unless it was before; false when it already was used (so two
    /// racing verifies cannot both succeed).
    async fn consume(&self, sid: &str, now: i64) -> Result<bool>;
}

/// A number's Matrix account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    /// E.164 number.
    pub number: String,
    /// Random localpart.
    pub localpart: String,
    /// `@localpart:server`.
    pub user_id: String,
    /// Creation time.
    pub created_at: i64,
    /// When it was published to the directory.
    pub published_at: Option<i64>,
}

/// Number → account.
#[async_trait::async_trait]
pub trait AccountRepository: Send + Sync {
    /// The account of this number.
    async fn account_by_number(&self, number: &str) -> Result<Option<Account>>;
    /// The accounts of this user (normally one).
    async fn accounts_by_user(&self, user_id: &str) -> Result<Vec<Account>>;
    /// Stores `a` unless the number already has an account; returns the account that is stored.
    async fn insert_account(&self, a: &Account) -> Result<Account>;
    /// Records directory publication.
    async fn mark_published(&self, number: &str, at: Option<i64>) -> Result<()>;
    /// Forgets a number's account; true when it existed.
    async fn delete_account(&self, number: &str) -> Result<bool>;
}

/// A phone number bound to a Matrix ID in the Identity Service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Binding {
    /// E.164 number.
    pub number: String,
    /// Matrix ID.
    pub user_id: String,
}

/// Identity Service state.
#[async_trait::async_trait]
pub trait IdentityRepository: Send + Sync {
    /// Binds (or re-binds) a number, with its lookup hash `hash(number, pepper)` under the current pepper. The
    /// pepper is read in the transaction that writes the binding, which serializes with
    /// [`rotate_pepper`](Self::rotate_pepper): the stored hash is never one of a pepper rotated away meanwhile.
    /// Fails with [`StoreError::NoPepper`] before the first pepper ([`add_first_pepper`](Self::add_first_pepper)).
    async fn bind(&self, b: &Binding, hash: &PepperedHash, now: i64) -> Result<()>;
    /// Removes a binding if it belongs to `user_id`; true when removed.
    async fn unbind(&self, number: &str, user_id: &str) -> Result<bool>;
    /// The binding of a number.
    async fn binding(&self, number: &str) -> Result<Option<Binding>>;
    /// The binding of a number and when it was made (or last re-made).
    async fn binding_since(&self, number: &str) -> Result<Option<(Binding, i64)>>;
    /// The bindings of those of `numbers` that are bound, in one query per 500 numbers.
    async fn bindings(&self, numbers: &[String]) -> Result<Vec<Binding>>;
    /// Bindings whose lookup hash is one of `hashes`.
    async fn lookup_hashes(&self, hashes: &[String]) -> Result<Vec<(String, String)>>;
    /// The current pepper.
    async fn current_pepper(&self) -> Result<Option<String>>;
    /// Stores `pepper` as the first pepper, unless there is one already (several nodes may race to make it;
    /// one wins). Later peppers come only from [`rotate_pepper`](Self::rotate_pepper), which re-hashes.
    async fn add_first_pepper(&self, pepper: &str, now: i64) -> Result<()>;
    /// Makes `pepper` current and re-hashes every binding and mirrored number with `hash(number)`, in one
    /// transaction: a lookup sees either the old pepper and hashes or the new ones.
    async fn rotate_pepper(
        &self,
        pepper: &str,
        now: i64,
        hash: &(dyn for<'n> Fn(&'n str) -> String + Send + Sync),
    ) -> Result<()>;
    /// Stores an access token digest for a user whose homeserver `server_name` vouched for them, usable
    /// until `expires_at`; tokens expired at `now` are deleted on the way.
    async fn add_token(&self, digest: &str, t: &IsToken, now: i64, expires_at: i64) -> Result<()>;
    /// The owner of an access token digest, unless the token expired by `now`.
    async fn token_user(&self, digest: &str, now: i64) -> Result<Option<IsToken>>;
    /// Deletes an access token; true when it existed.
    async fn delete_token(&self, digest: &str) -> Result<bool>;
}

/// Whom an Identity Service access token belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IsToken {
    /// The Matrix ID.
    pub user_id: String,
    /// The homeserver that vouched for it in the OpenID exchange.
    pub server_name: String,
}

/// A user's registration lock (see [`crate::registration_lock`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistrationLock {
    /// The account's Matrix ID.
    pub user_id: String,
    /// Argon2id PHC string of the PIN, keyed with `registration_lock.secret`.
    pub pin_hash: String,
    /// The last activity of a device of the account (set, status call, sign-in); the lock lapses
    /// `registration_lock.lapse_secs` after it.
    pub last_active_at: i64,
    /// Wrong PINs since the last right one.
    pub failures: i64,
    /// No PIN is judged before this time.
    pub next_try_at: i64,
}

/// Registration locks.
#[async_trait::async_trait]
pub trait RegistrationLockRepository: Send + Sync {
    /// The lock of `user_id`.
    async fn registration_lock(&self, user_id: &str) -> Result<Option<RegistrationLock>>;
    /// Sets or replaces the lock, active now, without failures.
    async fn set_registration_lock(&self, user_id: &str, pin_hash: &str, now: i64) -> Result<()>;
    /// Removes the lock; true when there was one.
    async fn delete_registration_lock(&self, user_id: &str) -> Result<bool>;
    /// Records activity of the account's devices; true when there is a lock.
    async fn touch_registration_lock(&self, user_id: &str, now: i64) -> Result<bool>;
    /// Counts a PIN attempt if the failure count is still `failures_seen` and no wait is pending at `now`
    /// (one conditional UPDATE, so concurrent attempts cannot exceed the cap); the next may come at
    /// `next_try_at`. True when this attempt got the slot.
    async fn reserve_pin_attempt(&self, user_id: &str, failures_seen: i64, now: i64, next_try_at: i64) -> Result<bool>;
    /// A right PIN: failures cleared, activity now.
    async fn reset_pin_failures(&self, user_id: &str, now: i64) -> Result<()>;
}

/// A number of the directory's listing, as mirrored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MirrorEntry {
    /// E.164 number.
    pub number: String,
    /// The directory's zone version of its last change.
    pub version: i64,
    /// Its lookup hash under the pepper current when it was mirrored.
    pub lookup_hash: String,
}

/// The mirror of the directory's number list (see [`crate::mirror`]).
#[async_trait::async_trait]
pub trait MirrorRepository: Send + Sync {
    /// Mirrored numbers greater than `after` and, when `upto` is given, not greater than it, ordered.
    async fn mirror_range(&self, after: &str, upto: Option<&str>) -> Result<Vec<MirrorEntry>>;
    /// Inserts or replaces entries, whose lookup hashes were made with `pepper`. The current pepper is read in
    /// the writing transaction, serialized with [`IdentityRepository::rotate_pepper`] as a bind is: when a
    /// rotation made another current meanwhile, the entries are stored with `hash(number, current)` instead.
    async fn mirror_upsert(&self, entries: &[MirrorEntry], pepper: &str, hash: &PepperedHash) -> Result<()>;
    /// Forgets numbers.
    async fn mirror_delete(&self, numbers: &[String]) -> Result<()>;
    /// Mirrored numbers whose lookup hash is one of `hashes`: (hash, number).
    async fn mirror_lookup(&self, hashes: &[String]) -> Result<Vec<(String, String)>>;
    /// Those of `numbers` the mirror holds, in one query per 500 numbers.
    async fn mirrored(&self, numbers: &[String]) -> Result<Vec<String>>;
}

/// The database is reachable.
#[async_trait::async_trait]
pub trait HealthRepository: Send + Sync {
    /// One round trip to the database (`/healthz`).
    async fn ping(&self) -> Result<()>;
}

/// The last transparency-log tree head accepted, per log key (see [`crate::log_witness`]).
#[async_trait::async_trait]
pub trait LogHeadRepository: Send + Sync + std::fmt::Debug {
    /// The head accepted last from the log with this key (JSON), if any.
    async fn log_head(&self, log_key: &str) -> Result<Option<String>>;
    /// Records `sth` (JSON) as the head accepted last from the log with this key.
    async fn set_log_head(&self, log_key: &str, sth: &str) -> Result<()>;
}

/// Everything the extension stores.
pub trait Store:
    SessionRepository
    + AccountRepository
    + IdentityRepository
    + MirrorRepository
    + RegistrationLockRepository
    + OidcRepository
    + PortRepository
    + LogHeadRepository
    + HealthRepository
    + std::fmt::Debug
{
}
impl<
    T: SessionRepository
        + AccountRepository
        + IdentityRepository
        + MirrorRepository
        + RegistrationLockRepository
        + OidcRepository
        + PortRepository
        + LogHeadRepository
        + HealthRepository
        + std::fmt::Debug,
> Store for T
{
}

/// `postgres://…` or `postgresql://…`.
pub fn is_postgres_url(url: &str) -> bool {
    url.starts_with("postgres://") || url.starts_with("postgresql://")
}

/// `sqlite:…` (a file or `sqlite::memory:`).
pub fn is_sqlite_url(url: &str) -> bool {
    url.starts_with("sqlite:")
}

/// Opens (and migrates) the store named by a `sqlite:` or `postgres://` (`postgresql://`) URL; any other URL is
/// refused rather than taken for an SQLite path.
pub async fn open(url: &str) -> Result<Arc<dyn Store>> {
    if is_postgres_url(url) {
        Ok(Arc::new(PgStore::connect(url).await?))
    } else if is_sqlite_url(url) {
        Ok(Arc::new(SqliteStore::connect(url).await?))
    } else {
        // Only the scheme: the rest may hold a password.
        Err(StoreError::UnknownUrl(url.split(':').next().unwrap_or_default().to_owned()))
    }
}

/// Implements every repository trait for `$store` (a struct with a `pool: sqlx::Pool<$db>` field).
/// `$lock_and_read_pepper` is one statement that does what [`LOCK_PEPPER`] and then [`CURRENT_PEPPER`] do, for a
/// backend where one statement sees the state the lock protects (SQLite, whose writers are serialized for the
/// whole transaction), or `None` (PostgreSQL: under READ COMMITTED the read after the lock needs a statement of
/// its own, whose snapshot is taken once a rotation holding the lock has committed).
macro_rules! impl_store {
    ($store:ty, $db:ty, $lock_and_read_pepper:expr) => {
        use sqlx::Row;
        use $crate::store::*;

        fn session_from_row(r: &<$db as sqlx::Database>::Row) -> Result<CodeSession> {
            Ok(CodeSession {
                sid: r.try_get("sid")?,
                client_secret_digest: r.try_get("client_secret_digest")?,
                number: r.try_get("number")?,
                purpose: Purpose::parse(r.try_get::<&str, _>("purpose")?)?,
                code_hash: r.try_get("code_hash")?,
                created_at: r.try_get("created_at")?,
                expires_at: r.try_get("expires_at")?,
                attempts: r.try_get("attempts")?,
                send_attempt: r.try_get("send_attempt")?,
                last_sent_at: r.try_get("last_sent_at")?,
                validated_at: r.try_get("validated_at")?,
                consumed_at: r.try_get("consumed_at")?,
            })
        }

        /// The rows of `select` (ending in `WHERE column`) `IN (values)`, one statement per 500 values to stay under
        /// both backends' parameter limits.
        async fn select_in(
            pool: &sqlx::Pool<$db>,
            select: &str,
            values: &[String],
        ) -> Result<Vec<<$db as sqlx::Database>::Row>> {
            let mut rows = Vec::new();
            for chunk in values.chunks(500) {
                let params: Vec<String> = (1..=chunk.len()).map(|i| format!("${i}")).collect();
                let mut q = sqlx::query(sqlx::AssertSqlSafe(format!("{select} IN ({})", params.join(", "))));
                for v in chunk {
                    q = q.bind(v);
                }
                rows.extend(q.fetch_all(pool).await?);
            }
            Ok(rows)
        }

        /// Makes a pepper current: the newest row is the current one.
        const ADD_PEPPER: &str = "INSERT INTO peppers (id, pepper, created_at) \
                                  VALUES ((SELECT COALESCE(MAX(id), 0) + 1 FROM peppers), $1, $2)";

        /// Stores the first pepper unless there is one: ids count from 1 (`ADD_PEPPER`), so the first pepper is
        /// row 1 and only one racer stores it.
        const FIRST_PEPPER: &str =
            "INSERT INTO peppers (id, pepper, created_at) VALUES (1, $1, $2) ON CONFLICT (id) DO NOTHING";

        /// The first statement of a transaction that hashes numbers with the current pepper (a bind) or changes
        /// it (a rotation): a write, so SQLite takes its write lock before any read, and on PostgreSQL a lock on
        /// the first pepper's row (always there once a pepper is, never deleted), which a rotation holds until
        /// its new pepper and hashes commit. A bind waiting on it reads the pepper after the rotation committed;
        /// a rotation waiting on a bind sees its row when re-hashing. (Not the newest row: a bind's view of
        /// which row is newest could be one rotation old, and it would lock a row the next rotation does not.)
        const LOCK_PEPPER: &str = "UPDATE peppers SET created_at = created_at WHERE id = 1";

        /// The current pepper: the newest row.
        const CURRENT_PEPPER: &str = "SELECT pepper FROM peppers ORDER BY id DESC LIMIT 1";

        /// Takes the pepper lock ([`LOCK_PEPPER`]) in `tx` and reads the current pepper under it.
        async fn locked_pepper(tx: &mut sqlx::Transaction<'static, $db>) -> Result<Option<String>> {
            const ONE_STATEMENT: Option<&str> = $lock_and_read_pepper;
            if let Some(sql) = ONE_STATEMENT {
                return Ok(sqlx::query_scalar(sql).fetch_optional(&mut **tx).await?);
            }
            sqlx::query(LOCK_PEPPER).execute(&mut **tx).await?;
            Ok(sqlx::query_scalar(CURRENT_PEPPER).fetch_optional(&mut **tx).await?)
        }

        fn binding_from_row(r: &<$db as sqlx::Database>::Row) -> Result<Binding> {
            Ok(Binding { number: r.try_get("number")?, user_id: r.try_get("user_id")? })
        }

        fn account_from_row(r: &<$db as sqlx::Database>::Row) -> Result<Account> {
            Ok(Account {
                number: r.try_get("number")?,
                localpart: r.try_get("localpart")?,
                user_id: r.try_get("user_id")?,
                created_at: r.try_get("created_at")?,
                published_at: r.try_get("published_at")?,
            })
        }

        #[async_trait::async_trait]
        impl SessionRepository for $store {
            async fn create_session(&self, s: &CodeSession) -> Result<()> {
                sqlx::query(
                    "INSERT INTO code_sessions (sid, client_secret_digest, number, purpose, code_hash, created_at, \
                     expires_at, attempts, send_attempt, last_sent_at, validated_at, consumed_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
                )
                .bind(&s.sid)
                .bind(&s.client_secret_digest)
                .bind(&s.number)
                .bind(s.purpose.as_str())
                .bind(&s.code_hash)
                .bind(s.created_at)
                .bind(s.expires_at)
                .bind(s.attempts)
                .bind(s.send_attempt)
                .bind(s.last_sent_at)
                .bind(s.validated_at)
                .bind(s.consumed_at)
                .execute(&self.pool)
                .await?;
                Ok(())
            }

            async fn delete_session(&self, sid: &str) -> Result<bool> {
                let done =
                    sqlx::query("DELETE FROM code_sessions WHERE sid = $1").bind(sid).execute(&self.pool).await?;
                Ok(done.rows_affected() == 1)
            }

            async fn session(&self, sid: &str) -> Result<Option<CodeSession>> {
                let row = sqlx::query("SELECT * FROM code_sessions WHERE sid = $1")
                    .bind(sid)
                    .fetch_optional(&self.pool)
                    .await?;
                row.as_ref().map(session_from_row).transpose()
            }

            async fn session_by_secret(
                &self,
                digest: &str,
                number: &str,
                purpose: Purpose,
            ) -> Result<Option<CodeSession>> {
                let row = sqlx::query(
                    "SELECT * FROM code_sessions WHERE client_secret_digest = $1 AND number = $2 AND purpose = $3 \
                     ORDER BY created_at DESC LIMIT 1",
                )
                .bind(digest)
                .bind(number)
                .bind(purpose.as_str())
                .fetch_optional(&self.pool)
                .await?;
                row.as_ref().map(session_from_row).transpose()
            }

            async fn resend(
                &self,
                sid: &str,
                code_hash: &[u8],
                send_attempt: i64,
                now: i64,
                expires_at: i64,
            ) -> Result<()> {
                sqlx::query(
                    "UPDATE code_sessions SET code_hash = $2, send_attempt = $3, last_sent_at = $4, \
                     expires_at = $5 WHERE sid = $1",
                )
                .bind(sid)
                .bind(code_hash)
                .bind(send_attempt)
                .bind(now)
                .bind(expires_at)
                .execute(&self.pool)
                .await?;
                Ok(())
            }

            async fn reserve_attempt(&self, sid: &str, max: i64, now: i64) -> Result<Option<CodeSession>> {
                let row = sqlx::query(
                    "UPDATE code_sessions SET attempts = attempts + 1 \
                     WHERE sid = $1 AND attempts < $2 AND consumed_at IS NULL AND expires_at > $3 RETURNING *",
                )
                .bind(sid)
                .bind(max)
                .bind(now)
                .fetch_optional(&self.pool)
                .await?;
                row.as_ref().map(session_from_row).transpose()
            }

            async fn validate(&self, sid: &str, now: i64) -> Result<()> {
                sqlx::query("UPDATE code_sessions SET validated_at = $2 WHERE sid = $1 AND validated_at IS NULL")
                    .bind(sid)
                    .bind(now)
                    .execute(&self.pool)
                    .await?;
                Ok(())
            }

            async fn consume(&self, sid: &str, now: i64) -> Result<bool> {
                let done = sqlx::query(
                    "UPDATE code_sessions SET consumed_at = $2, validated_at = COALESCE(validated_at, $2) \
                         WHERE sid = $1 AND consumed_at IS NULL",
                )
                .bind(sid)
                .bind(now)
                .execute(&self.pool)
                .await?;
                Ok(done.rows_affected() == 1)
            }
        }

        #[async_trait::async_trait]
        impl AccountRepository for $store {
            async fn account_by_number(&self, number: &str) -> Result<Option<Account>> {
                let row = sqlx::query("SELECT * FROM accounts WHERE number = $1")
                    .bind(number)
                    .fetch_optional(&self.pool)
                    .await?;
                row.as_ref().map(account_from_row).transpose()
            }

            async fn accounts_by_user(&self, user_id: &str) -> Result<Vec<Account>> {
                let rows = sqlx::query("SELECT * FROM accounts WHERE user_id = $1 ORDER BY number")
                    .bind(user_id)
                    .fetch_all(&self.pool)
                    .await?;
                rows.iter().map(account_from_row).collect()
            }

            async fn insert_account(&self, a: &Account) -> Result<Account> {
                // The row written comes back with the insert; only a number that already had an account is read.
                let inserted = sqlx::query(
                    "INSERT INTO accounts (number, localpart, user_id, created_at, published_at) \
                     VALUES ($1, $2, $3, $4, $5) ON CONFLICT (number) DO NOTHING RETURNING *",
                )
                .bind(&a.number)
                .bind(&a.localpart)
                .bind(&a.user_id)
                .bind(a.created_at)
                .bind(a.published_at)
                .fetch_optional(&self.pool)
                .await?;
                match inserted {
                    Some(row) => account_from_row(&row),
                    None => self.account_by_number(&a.number).await?.ok_or(StoreError::Corrupt("accounts")),
                }
            }

            async fn delete_account(&self, number: &str) -> Result<bool> {
                let done =
                    sqlx::query("DELETE FROM accounts WHERE number = $1").bind(number).execute(&self.pool).await?;
                Ok(done.rows_affected() == 1)
            }

            async fn mark_published(&self, number: &str, at: Option<i64>) -> Result<()> {
                sqlx::query("UPDATE accounts SET published_at = $2 WHERE number = $1")
                    .bind(number)
                    .bind(at)
                    .execute(&self.pool)
                    .await?;
                Ok(())
            }
        }

        #[async_trait::async_trait]
        impl IdentityRepository for $store {
            async fn bind(&self, b: &Binding, hash: &PepperedHash, now: i64) -> Result<()> {
                let mut tx = self.pool.begin().await?;
                let pepper = locked_pepper(&mut tx).await?.ok_or(StoreError::NoPepper)?;
                sqlx::query(
                    "INSERT INTO bindings (number, user_id, lookup_hash, created_at) VALUES ($1, $2, $3, $4) \
                     ON CONFLICT (number) DO UPDATE SET user_id = $2, lookup_hash = $3, created_at = $4",
                )
                .bind(&b.number)
                .bind(&b.user_id)
                .bind(hash(&b.number, &pepper))
                .bind(now)
                .execute(&mut *tx)
                .await?;
                tx.commit().await?;
                Ok(())
            }

            async fn unbind(&self, number: &str, user_id: &str) -> Result<bool> {
                let done = sqlx::query("DELETE FROM bindings WHERE number = $1 AND user_id = $2")
                    .bind(number)
                    .bind(user_id)
                    .execute(&self.pool)
                    .await?;
                Ok(done.rows_affected() == 1)
            }

            async fn binding(&self, number: &str) -> Result<Option<Binding>> {
                let row = sqlx::query("SELECT number, user_id FROM bindings WHERE number = $1")
                    .bind(number)
                    .fetch_optional(&self.pool)
                    .await?;
                row.as_ref().map(binding_from_row).transpose()
            }

            async fn binding_since(&self, number: &str) -> Result<Option<(Binding, i64)>> {
                let row = sqlx::query("SELECT number, user_id, created_at FROM bindings WHERE number = $1")
                    .bind(number)
                    .fetch_optional(&self.pool)
                    .await?;
                row.as_ref().map(|r| Ok((binding_from_row(r)?, r.try_get("created_at")?))).transpose()
            }

            async fn bindings(&self, numbers: &[String]) -> Result<Vec<Binding>> {
                let rows = select_in(&self.pool, "SELECT number, user_id FROM bindings WHERE number", numbers).await?;
                rows.iter().map(binding_from_row).collect()
            }

            async fn lookup_hashes(&self, hashes: &[String]) -> Result<Vec<(String, String)>> {
                let rows = select_in(&self.pool, "SELECT lookup_hash, user_id FROM bindings WHERE lookup_hash", hashes)
                    .await?;
                rows.iter().map(|r| Ok((r.try_get("lookup_hash")?, r.try_get("user_id")?))).collect()
            }

            async fn current_pepper(&self) -> Result<Option<String>> {
                Ok(sqlx::query_scalar(CURRENT_PEPPER).fetch_optional(&self.pool).await?)
            }

            async fn add_first_pepper(&self, pepper: &str, now: i64) -> Result<()> {
                sqlx::query(FIRST_PEPPER).bind(pepper).bind(now).execute(&self.pool).await?;
                Ok(())
            }

            async fn rotate_pepper(
                &self,
                pepper: &str,
                now: i64,
                hash: &(dyn for<'n> Fn(&'n str) -> String + Send + Sync),
            ) -> Result<()> {
                let mut tx = self.pool.begin().await?;
                // With no pepper yet there is no row to lock, and a first pepper stored meanwhile would take this
                // one's id: store it as the first (then once more as the newest, harmlessly).
                sqlx::query(FIRST_PEPPER).bind(pepper).bind(now).execute(&mut *tx).await?;
                sqlx::query(LOCK_PEPPER).execute(&mut *tx).await?;
                sqlx::query(ADD_PEPPER).bind(pepper).bind(now).execute(&mut *tx).await?;
                for table in ["bindings", "directory_mirror"] {
                    let numbers: Vec<String> =
                        sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT number FROM {table}")))
                            .fetch_all(&mut *tx)
                            .await?;
                    let update = format!("UPDATE {table} SET lookup_hash = $1 WHERE number = $2");
                    for n in &numbers {
                        sqlx::query(sqlx::AssertSqlSafe(update.as_str()))
                            .bind(hash(n))
                            .bind(n)
                            .execute(&mut *tx)
                            .await?;
                    }
                }
                tx.commit().await?;
                Ok(())
            }

            async fn add_token(&self, digest: &str, t: &IsToken, now: i64, expires_at: i64) -> Result<()> {
                sqlx::query("DELETE FROM is_tokens WHERE expires_at <= $1").bind(now).execute(&self.pool).await?;
                sqlx::query(
                    "INSERT INTO is_tokens (token_digest, user_id, server_name, created_at, expires_at) \
                     VALUES ($1, $2, $3, $4, $5)",
                )
                .bind(digest)
                .bind(&t.user_id)
                .bind(&t.server_name)
                .bind(now)
                .bind(expires_at)
                .execute(&self.pool)
                .await?;
                Ok(())
            }

            async fn token_user(&self, digest: &str, now: i64) -> Result<Option<IsToken>> {
                let row = sqlx::query(
                    "SELECT user_id, server_name FROM is_tokens WHERE token_digest = $1 AND expires_at > $2",
                )
                .bind(digest)
                .bind(now)
                .fetch_optional(&self.pool)
                .await?;
                row.map(|r| -> Result<IsToken> {
                    Ok(IsToken { user_id: r.try_get("user_id")?, server_name: r.try_get("server_name")? })
                })
                .transpose()
            }

            async fn delete_token(&self, digest: &str) -> Result<bool> {
                let done = sqlx::query("DELETE FROM is_tokens WHERE token_digest = $1")
                    .bind(digest)
                    .execute(&self.pool)
                    .await?;
                Ok(done.rows_affected() == 1)
            }
        }

        #[async_trait::async_trait]
        impl RegistrationLockRepository for $store {
            async fn registration_lock(&self, user_id: &str) -> Result<Option<RegistrationLock>> {
                let row = sqlx::query(
                    "SELECT user_id, pin_hash, last_active_at, failures, next_try_at FROM registration_locks \
                     WHERE user_id = $1",
                )
                .bind(user_id)
                .fetch_optional(&self.pool)
                .await?;
                row.map(|r| -> Result<RegistrationLock> {
                    Ok(RegistrationLock {
                        user_id: r.try_get("user_id")?,
                        pin_hash: r.try_get("pin_hash")?,
                        last_active_at: r.try_get("last_active_at")?,
                        failures: r.try_get("failures")?,
                        next_try_at: r.try_get("next_try_at")?,
                    })
                })
                .transpose()
            }

            async fn set_registration_lock(&self, user_id: &str, pin_hash: &str, now: i64) -> Result<()> {
                sqlx::query(
                    "INSERT INTO registration_locks (user_id, pin_hash, last_active_at, failures, next_try_at, \
                     created_at) VALUES ($1, $2, $3, 0, 0, $3) ON CONFLICT (user_id) DO UPDATE SET \
                     pin_hash = excluded.pin_hash, last_active_at = excluded.last_active_at, failures = 0, \
                     next_try_at = 0",
                )
                .bind(user_id)
                .bind(pin_hash)
                .bind(now)
                .execute(&self.pool)
                .await?;
                Ok(())
            }

            async fn delete_registration_lock(&self, user_id: &str) -> Result<bool> {
                let done = sqlx::query("DELETE FROM registration_locks WHERE user_id = $1")
                    .bind(user_id)
                    .execute(&self.pool)
                    .await?;
                Ok(done.rows_affected() == 1)
            }

            async fn touch_registration_lock(&self, user_id: &str, now: i64) -> Result<bool> {
                let done = sqlx::query(
                    "UPDATE registration_locks SET last_active_at = $2 WHERE user_id = $1 AND last_active_at < $2",
                )
                .bind(user_id)
                .bind(now)
                .execute(&self.pool)
                .await?;
                if done.rows_affected() == 1 {
                    return Ok(true);
                }
                Ok(self.registration_lock(user_id).await?.is_some())
            }

            async fn reserve_pin_attempt(
                &self,
                user_id: &str,
                failures_seen: i64,
                now: i64,
                next_try_at: i64,
            ) -> Result<bool> {
                let done = sqlx::query(
                    "UPDATE registration_locks SET failures = failures + 1, next_try_at = $4 \
                     WHERE user_id = $1 AND failures = $2 AND next_try_at <= $3",
                )
                .bind(user_id)
                .bind(failures_seen)
                .bind(now)
                .bind(next_try_at)
                .execute(&self.pool)
                .await?;
                Ok(done.rows_affected() == 1)
            }

            async fn reset_pin_failures(&self, user_id: &str, now: i64) -> Result<()> {
                sqlx::query(
                    "UPDATE registration_locks SET failures = 0, next_try_at = 0, last_active_at = $2 \
                     WHERE user_id = $1",
                )
                .bind(user_id)
                .bind(now)
                .execute(&self.pool)
                .await?;
                Ok(())
            }
        }

        #[async_trait::async_trait]
        impl HealthRepository for $store {
            async fn ping(&self) -> Result<()> {
                sqlx::query("SELECT 1").execute(&self.pool).await?;
                Ok(())
            }
        }

        #[async_trait::async_trait]
        impl LogHeadRepository for $store {
            async fn log_head(&self, log_key: &str) -> Result<Option<String>> {
                Ok(sqlx::query_scalar("SELECT sth FROM log_heads WHERE log_key = $1")
                    .bind(log_key)
                    .fetch_optional(&self.pool)
                    .await?)
            }

            async fn set_log_head(&self, log_key: &str, sth: &str) -> Result<()> {
                sqlx::query(
                    "INSERT INTO log_heads (log_key, sth) VALUES ($1, $2) \
                     ON CONFLICT (log_key) DO UPDATE SET sth = excluded.sth",
                )
                .bind(log_key)
                .bind(sth)
                .execute(&self.pool)
                .await?;
                Ok(())
            }
        }

        #[async_trait::async_trait]
        impl MirrorRepository for $store {
            async fn mirror_range(&self, after: &str, upto: Option<&str>) -> Result<Vec<MirrorEntry>> {
                let rows = match upto {
                    Some(upto) => {
                        sqlx::query(
                            "SELECT number, version, lookup_hash FROM directory_mirror \
                         WHERE number > $1 AND number <= $2 ORDER BY number",
                        )
                        .bind(after)
                        .bind(upto)
                        .fetch_all(&self.pool)
                        .await?
                    }
                    None => sqlx::query(
                        "SELECT number, version, lookup_hash FROM directory_mirror WHERE number > $1 ORDER BY number",
                    )
                    .bind(after)
                    .fetch_all(&self.pool)
                    .await?,
                };
                rows.iter()
                    .map(|r| {
                        Ok(MirrorEntry {
                            number: r.try_get("number")?,
                            version: r.try_get("version")?,
                            lookup_hash: r.try_get("lookup_hash")?,
                        })
                    })
                    .collect()
            }

            async fn mirror_upsert(&self, entries: &[MirrorEntry], pepper: &str, hash: &PepperedHash) -> Result<()> {
                if entries.is_empty() {
                    return Ok(());
                }
                let mut tx = self.pool.begin().await?;
                let current = locked_pepper(&mut tx).await?;
                let rehashed: Vec<MirrorEntry>;
                let entries = match current {
                    Some(current) if current != pepper => {
                        rehashed = entries
                            .iter()
                            .map(|e| MirrorEntry { lookup_hash: hash(&e.number, &current), ..e.clone() })
                            .collect();
                        &rehashed[..]
                    }
                    _ => entries,
                };
                for e in entries {
                    sqlx::query(
                        "INSERT INTO directory_mirror (number, version, lookup_hash) VALUES ($1, $2, $3) \
                         ON CONFLICT (number) DO UPDATE SET version = $2, lookup_hash = $3",
                    )
                    .bind(&e.number)
                    .bind(e.version)
                    .bind(&e.lookup_hash)
                    .execute(&mut *tx)
                    .await?;
                }
                tx.commit().await?;
                Ok(())
            }

            async fn mirror_delete(&self, numbers: &[String]) -> Result<()> {
                let mut tx = self.pool.begin().await?;
                for n in numbers {
                    sqlx::query("DELETE FROM directory_mirror WHERE number = $1").bind(n).execute(&mut *tx).await?;
                }
                tx.commit().await?;
                Ok(())
            }

            async fn mirror_lookup(&self, hashes: &[String]) -> Result<Vec<(String, String)>> {
                let select = "SELECT lookup_hash, number FROM directory_mirror WHERE lookup_hash";
                let rows = select_in(&self.pool, select, hashes).await?;
                rows.iter().map(|r| Ok((r.try_get("lookup_hash")?, r.try_get("number")?))).collect()
            }

            async fn mirrored(&self, numbers: &[String]) -> Result<Vec<String>> {
                let rows = select_in(&self.pool, "SELECT number FROM directory_mirror WHERE number", numbers).await?;
                rows.iter().map(|r| Ok(r.try_get("number")?)).collect()
            }
        }
    };
}
pub(crate) use impl_store;
