//! `tincan-gateway serve`: opens storage, starts the ledger (hold workers and the expiry sweeper) and, when
//! `[calls]` has a listener, the call router; then serves the provider API until shutdown.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use rand::TryRngCore;
use tincan_common::Clock;
use tokio::net::TcpListener;

use crate::api::{self, ApiState, RateLimiter, UserAuth};
use crate::config::GatewayConfig;
use crate::ledger::Ledger;
use crate::storage::{self, Storage, StorageError};

/// Why the server could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The data directory could not be created.
    #[error("cannot create the data directory {path}: {source}")]
    DataDir {
        /// The directory.
        path: std::path::PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// Storage failed.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// The listen address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// The SIP side could not start.
    #[error("calls: {0}")]
    Calls(#[from] crate::calls::CallsError),
    /// The API server failed.
    #[error("api server: {0}")]
    Api(std::io::Error),
}

/// Opens the configured database (creating the data directory for the default SQLite file).
pub async fn open_storage(config: &GatewayConfig, clock: Arc<dyn Clock>) -> Result<Arc<dyn Storage>, ServeError> {
    let url = config.database_url();
    if url.expose().starts_with("sqlite:") && config.database.url.is_none() {
        let dir = config.data_dir();
        std::fs::create_dir_all(&dir).map_err(|source| ServeError::DataDir { path: dir, source })?;
    }
    Ok(storage::open(url.expose(), clock).await?)
}

/// Serves until `shutdown` resolves; `ready` is called with the bound address once it listens.
pub async fn serve(
    config: GatewayConfig,
    clock: Arc<dyn Clock>,
    ready: impl FnOnce(SocketAddr),
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    let storage = open_storage(&config, clock.clone()).await?;
    let ledger = Ledger::start(storage, clock.clone(), config.ledger);
    ledger.set_fraud(config.fraud.clone());
    let sweeper = ledger.spawn_sweeper();
    let calls = if config.calls.enabled() {
        let mut rng = rand::rngs::OsRng.unwrap_err();
        let mut calls = config.calls.clone();
        if calls.spool_dir.is_none() {
            calls.spool_dir = Some(config.data_dir().join("call-spool"));
        }
        let (switch, task) = crate::calls::Switch::start(ledger.clone(), calls, &mut rng).await?;
        tracing::info!(listeners = ?switch.listeners(), "calls: SIP listening");
        Some(task)
    } else {
        None
    };
    let limiter = Arc::new(RateLimiter::new(config.api.rate_limit, clock.clone()));
    let addr = config.api.listen;
    let listener = TcpListener::bind(addr).await.map_err(|source| ServeError::Bind { addr, source })?;
    ready(listener.local_addr().unwrap_or(addr));
    let http = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(10))
        .build()
        .map_err(|e| ServeError::Api(std::io::Error::other(e)))?;
    let auth = Arc::new(UserAuth { homeserver: config.homeserver.clone(), currency: config.accounts.currency, http });
    let vouchers = Arc::new(crate::api::VoucherLimiter(RateLimiter::new_per_minute(
        config.vouchers.attempts_per_minute,
        config.vouchers.attempts_burst,
        ledger.clock().clone(),
    )));
    let payments = Arc::new(config.payments.clone());
    let portal = crate::portal::PortalState::new(ledger.clone(), auth.clone(), vouchers.clone(), config.portal.clone());
    let deck_limit = api::DeckLimit(config.api.max_deck_bytes);
    let state = ApiState { ledger, limiter, auth, vouchers, payments, deck_limit };
    let mut app = api::router(state);
    if let Some(portal) = portal {
        tracing::info!("portal on /portal");
        app = app.merge(crate::portal::router(portal));
    }
    let result = api::serve(listener, app, shutdown).await.map_err(ServeError::Api);
    sweeper.abort();
    if let Some(calls) = calls {
        calls.abort();
    }
    result
}

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("installing a SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
