//! PostgreSQL backend (several extension nodes sharing state).

use sqlx::postgres::{PgPool, PgPoolOptions};

/// State in a PostgreSQL database.
#[derive(Debug, Clone)]
pub struct PgStore {
    pool: PgPool,
}

impl PgStore {
    /// Connects to `url` and runs migrations.
    pub async fn connect(url: &str) -> super::Result<Self> {
        let pool = PgPoolOptions::new().max_connections(8).connect(url).await?;
        sqlx::migrate!("./migrations/postgres").run(&pool).await?;
        Ok(Self { pool })
    }
}

super::impl_store!(PgStore, sqlx::Postgres);
super::oidc::impl_oidc_store!(PgStore, sqlx::Postgres);
super::ports::impl_ports_store!(PgStore, sqlx::Postgres);
