//! PostgreSQL backend (several extension nodes sharing state).

use sqlx::postgres::{PgPool, PgPoolOptions};

/// How long a pooled connection may sit idle before it is pinged at checkout.
const IDLE_PING_AFTER: std::time::Duration = std::time::Duration::from_secs(30);

/// State in a PostgreSQL database.
#[derive(Debug, Clone)]
pub struct PgStore {
    pool: PgPool,
}

impl PgStore {
    /// Connects to `url` and runs migrations.
    pub async fn connect(url: &str) -> super::Result<Self> {
        // Not a ping (a round trip) before every checkout, only for a connection idle long enough that the server
        // or the network may have dropped it; the pool tests each connection on release as well.
        let pool = PgPoolOptions::new()
            .max_connections(8)
            .test_before_acquire(false)
            .before_acquire(|conn, meta| {
                Box::pin(async move {
                    if meta.idle_for > IDLE_PING_AFTER {
                        sqlx::Connection::ping(conn).await?;
                    }
                    Ok(true)
                })
            })
            .connect(url)
            .await?;
        sqlx::migrate!("./migrations/postgres").run(&pool).await?;
        Ok(Self { pool })
    }
}

super::impl_store!(PgStore, sqlx::Postgres, None);
super::oidc::impl_oidc_store!(PgStore, sqlx::Postgres);
super::ports::impl_ports_store!(PgStore, sqlx::Postgres);
