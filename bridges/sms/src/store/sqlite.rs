//! The SQLite backend (the embedded default): one file, WAL, writers serialised by `BEGIN IMMEDIATE`.

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous};
use std::str::FromStr;
use std::time::Duration;

type Db = sqlx::Sqlite;

/// Bridge state in an SQLite file.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    pool: SqlitePool,
}

impl SqliteStore {
    /// Opens `sqlite:PATH` (creating the file if missing) and migrates it.
    pub async fn open(url: &str) -> super::Result<SqliteStore> {
        let options = SqliteConnectOptions::from_str(url)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // FULL: a message the bridge took from the core survives a power cut, not just a crash.
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(10));
        let pool = SqlitePoolOptions::new().max_connections(4).connect_with(options).await?;
        sqlx::migrate!("./migrations/sqlite").run(&pool).await?;
        Ok(SqliteStore { pool })
    }
}

#[async_trait::async_trait]
impl super::Store for SqliteStore {
    async fn begin(&self) -> super::Result<Box<dyn super::Repository>> {
        // IMMEDIATE takes the write lock up front: a deferred transaction that reads and then writes can fail
        // with SQLITE_BUSY instead of waiting when another writer committed in between.
        let tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        Ok(Box::new(SqliteRepository { tx }))
    }
}

/// One SQLite transaction.
struct SqliteRepository {
    tx: sqlx::Transaction<'static, Db>,
}

super::sql::impl_repositories!(SqliteRepository);
