//! The SQLite backend (embedded default): one file, WAL journal.

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous};
use std::str::FromStr;

/// Bridge state in a SQLite file.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    pool: SqlitePool,
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `url` (`sqlite:/path/bridge.db`) and migrates it.
    pub async fn connect(url: &str, max_connections: u32) -> crate::store::Result<Self> {
        Ok(Self { pool: pool(url, max_connections).await? })
    }
}

/// A pool on `url`, the database created if missing and migrated (also for the ghosts' crypto stores, which
/// live in it).
pub(crate) async fn pool(url: &str, max_connections: u32) -> crate::store::Result<SqlitePool> {
    let options = SqliteConnectOptions::from_str(url)?
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        // FULL: a transaction acknowledged to the homeserver survives a power cut, not just a crash.
        .synchronous(SqliteSynchronous::Full)
        .busy_timeout(std::time::Duration::from_secs(10));
    let pool = SqlitePoolOptions::new().max_connections(max_connections.max(1)).connect_with(options).await?;
    sqlx::migrate!("migrations/sqlite").run(&pool).await?;
    Ok(pool)
}

crate::store::impl_repositories!(SqliteStore, sqlx::Sqlite, sqlx::sqlite::SqliteRow);
