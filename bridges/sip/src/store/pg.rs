//! PostgreSQL backend (several bridge nodes sharing registrations).

use sqlx::postgres::{PgPool, PgPoolOptions};

/// SIP state in PostgreSQL.
#[derive(Debug, Clone)]
pub struct PgStore {
    pool: PgPool,
}

impl PgStore {
    /// Connects to `postgres://…` and migrates.
    pub async fn open(url: &str) -> super::Result<Self> {
        let pool = PgPoolOptions::new().max_connections(8).connect(url).await?;
        sqlx::migrate!("./migrations/postgres").run(&pool).await?;
        Ok(Self { pool })
    }
}

super::impl_store!(PgStore);
