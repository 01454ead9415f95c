//! The SQLite backend (the embedded default): one file, WAL, writers serialised by `BEGIN IMMEDIATE`.

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous};
use tincan_common::Clock;

type Db = sqlx::Sqlite;

/// Directory storage in an SQLite file.
#[derive(Debug, Clone)]
pub struct SqliteStorage {
    pool: SqlitePool,
    clock: Arc<dyn Clock>,
}

impl SqliteStorage {
    /// Opens `sqlite://PATH` (creating the file if missing) and migrates it.
    pub async fn open(url: &str, clock: Arc<dyn Clock>) -> super::Result<SqliteStorage> {
        let options = SqliteConnectOptions::from_str(url)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(10));
        let pool = SqlitePoolOptions::new().max_connections(4).connect_with(options).await?;
        sqlx::migrate!("./migrations/sqlite").run(&pool).await?;
        Ok(SqliteStorage { pool, clock })
    }
}

#[async_trait::async_trait]
impl super::Storage for SqliteStorage {
    async fn begin(&self) -> super::Result<Box<dyn super::Repository>> {
        // IMMEDIATE takes the write lock up front: a deferred transaction that reads and then writes can fail
        // with SQLITE_BUSY instead of waiting when another writer committed in between.
        let tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        Ok(Box::new(SqliteRepository { tx, clock: self.clock.clone() }))
    }

    async fn begin_read(&self) -> super::Result<Box<dyn super::Repository>> {
        // Deferred: a read transaction under WAL, a snapshot taken at its first read, no write lock.
        let tx = self.pool.begin_with("BEGIN DEFERRED").await?;
        Ok(Box::new(SqliteRepository { tx, clock: self.clock.clone() }))
    }
}

/// One SQLite transaction.
struct SqliteRepository {
    tx: sqlx::Transaction<'static, Db>,
    clock: Arc<dyn Clock>,
}

impl SqliteRepository {
    /// [`super::ProviderRepository::lock_prefixes`]: nothing to do, a write transaction holds the write lock.
    const LOCK_PREFIXES: Option<&'static str> = None;
}

super::sql::impl_repositories!(SqliteRepository);
