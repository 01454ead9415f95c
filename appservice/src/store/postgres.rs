//! The PostgreSQL backend, for operators who run several bridge nodes or keep state in their PostgreSQL.

use sqlx::postgres::{PgPool, PgPoolOptions};

/// Bridge state in PostgreSQL.
#[derive(Debug, Clone)]
pub struct PgStore {
    pool: PgPool,
}

impl PgStore {
    /// Connects to `url` (`postgres://…`) and migrates the database.
    pub async fn connect(url: &str, max_connections: u32) -> crate::store::Result<Self> {
        Ok(Self { pool: pool(url, max_connections).await? })
    }
}

/// A pool on `url`, the database migrated (also for the ghosts' crypto stores, which live in it).
pub(crate) async fn pool(url: &str, max_connections: u32) -> crate::store::Result<PgPool> {
    let pool = PgPoolOptions::new().max_connections(max_connections.max(1)).connect(url).await?;
    sqlx::migrate!("migrations/postgres").run(&pool).await?;
    Ok(pool)
}

crate::store::impl_repositories!(PgStore, sqlx::Postgres, sqlx::postgres::PgRow);
