//! The registrar HTTP API providers write numbers through (`/v1/numbers/{e164}`), the transparency log
//! (`/v1/log/…`, see [`LogReader`] for who may read what), plus `GET /healthz` and `GET /metrics`.
//!
//! Every write runs in one storage transaction (nothing is written on any error) and, once committed, is pushed
//! into the in-memory DNS zone through [`ZoneWriter`] before the response is sent, so a 200 means DNS already
//! answers the change. Writes are serialised by [`WriteLock`] so that the zone sees them in commit order.

use std::sync::Arc;

use axum::Router;
use axum::extract::FromRef;
use axum::routing::{get, post, put};
use tincan_common::Clock;
use tincan_enum_core::{E164, NumberRecord};

use crate::dns::{SignedEntry, ZoneError};
use crate::metrics::DirectoryMetrics;
use crate::storage::Storage;
use crate::translog::TransLog;

mod auth;
mod body;
mod client_limit;
mod error;
mod healthz;
mod list;
mod log;
mod metrics;
mod numbers;
mod path;
pub(crate) mod ports;
mod rate_limit;

pub use auth::Authenticated;
pub use client_limit::{ClientRateLimiter, PublicClient, default_public_limit};
pub use error::{ApiError, ErrorCode};
pub use list::{ListResponse, Listed};
pub use log::{AuditorTokens, LogReader};
pub use numbers::NumberResponse;
pub(crate) use numbers::put::{RawService, services as validate_services};
pub(crate) use path::canonical_number;
pub use ports::{PortList, PortResponse};
pub use rate_limit::{RateLimitConfig, RateLimiter};

/// The services of a `PUT /v1/numbers/{e164}` body, parsed and validated exactly as the handler does (the
/// fuzz targets in `fuzz/` call it; the body-size limit is checked before, when the body is read).
pub fn parse_put_body(bytes: &[u8]) -> Result<Vec<tincan_enum_core::Service>, ApiError> {
    numbers::put::parse(bytes)
}

/// The key of a `PUT /v1/numbers/{e164}/key` body, parsed and checked as the handler does.
pub fn parse_key_body(bytes: &[u8]) -> Result<tincan_enum_core::MasterKey, ApiError> {
    let numbers::KeyBody { ed25519 } =
        serde_json::from_slice(bytes).map_err(|e| ApiError::InvalidJson(e.to_string()))?;
    Ok(tincan_enum_core::MasterKey::from_base64(&ed25519)?)
}

/// A number as the API takes it in a path: canonical E.164 only.
pub fn parse_number(raw: &str) -> Result<E164, ApiError> {
    canonical_number(raw)
}

/// The largest request body accepted (bigger → 400 `body_too_large`).
pub const MAX_BODY_BYTES: usize = 16 * 1024;

/// Where committed changes go so DNS answers them: implemented by the DNS zone. Changes go through
/// [`crate::change`], which signs before storing and publishes after the commit.
pub trait ZoneWriter: Send + Sync + 'static {
    /// The signed form of `record`, stored with it (`None`: this writer does not sign).
    fn sign(&self, record: &NumberRecord) -> Result<Option<SignedEntry>, ZoneError>;
    /// Publishes a committed record with its signed form from [`ZoneWriter::sign`].
    fn publish(&self, record: &NumberRecord, signed: Option<SignedEntry>);
    /// Stops publishing a number.
    fn remove(&self, number: &E164);
    /// Publishes changes committed elsewhere (another process or node, found by [`crate::follow`]) in one step:
    /// each number's signed form from [`crate::dns::Zone::prepare`], `None` to remove it. Returns how many
    /// numbers changed.
    fn publish_many(&self, changes: Vec<(E164, Option<SignedEntry>)>) -> usize;
}

/// A [`ZoneWriter`] that publishes nowhere (API without DNS, tests).
#[derive(Debug, Clone, Copy, Default)]
pub struct NoZone;

impl ZoneWriter for NoZone {
    fn sign(&self, _: &NumberRecord) -> Result<Option<SignedEntry>, ZoneError> {
        Ok(None)
    }
    fn publish(&self, _: &NumberRecord, _: Option<SignedEntry>) {}
    fn remove(&self, _: &E164) {}
    fn publish_many(&self, _: Vec<(E164, Option<SignedEntry>)>) -> usize {
        0
    }
}

/// Serialises writes so the zone is updated in the order the transactions committed.
#[derive(Debug, Clone, Default)]
pub struct WriteLock(Arc<tokio::sync::Mutex<()>>);

impl WriteLock {
    /// Waits for the lock.
    pub async fn lock(&self) -> tokio::sync::MutexGuard<'_, ()> {
        self.0.lock().await
    }
}

/// Everything the handlers need; each handler takes only the parts it uses (via [`FromRef`]).
#[derive(Clone, FromRef)]
pub struct ApiState {
    /// The database.
    pub storage: Arc<dyn Storage>,
    /// The DNS zone to update after each commit.
    pub zone: Arc<dyn ZoneWriter>,
    /// Per-provider rate limits.
    pub limiter: Arc<RateLimiter>,
    /// Per-client rate limits of the public reads (the log's head and proofs).
    pub public_limiter: Arc<ClientRateLimiter>,
    /// Write serialisation.
    pub writes: WriteLock,
    /// The clock.
    pub clock: Arc<dyn Clock>,
    /// The transparency log.
    pub log: Arc<TransLog>,
    /// Who may read every log entry.
    pub auditors: Arc<AuditorTokens>,
    /// What `/metrics` reports.
    pub metrics: Arc<DirectoryMetrics>,
    /// Number porting: the window and the providers' webhooks.
    pub porting: Arc<crate::ports::Porting>,
}

/// The API's routes.
pub fn router(state: ApiState) -> Router {
    Router::new()
        .route("/healthz", get(healthz::handler))
        .route("/metrics", get(metrics::handler))
        .route("/v1/numbers", get(list::handler))
        .route(
            "/v1/numbers/{e164}",
            put(numbers::put::handler).get(numbers::get::handler).delete(numbers::delete::handler),
        )
        .route("/v1/numbers/{e164}/key", put(numbers::put_key::handler))
        .route("/v1/ports", get(ports::list).post(ports::file))
        .route("/v1/ports/{id}", get(ports::get))
        .route("/v1/ports/{id}/release", post(ports::release))
        .route("/v1/ports/{id}/object", post(ports::object))
        .route("/v1/log/sth", get(log::sth::handler))
        .route("/v1/log/proof/inclusion", get(log::inclusion::handler))
        .route("/v1/log/proof/consistency", get(log::consistency::handler))
        .route("/v1/log/entries", get(log::entries::handler))
        .fallback(error::not_found)
        .method_not_allowed_fallback(error::method_not_allowed)
        .with_state(state)
}

/// Serves the API on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: ApiState,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    // With the peer's address, for the per-client limit of the public reads.
    let app = router(state).into_make_service_with_connect_info::<std::net::SocketAddr>();
    axum::serve(listener, app).with_graceful_shutdown(shutdown).await
}
