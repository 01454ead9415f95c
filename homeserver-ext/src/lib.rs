//! Tincan's homeserver extension: passwordless phone-number sign-up and phone identity beside an unmodified
//! Matrix homeserver.
//!
//! - [`api`]: `POST /_tincan/client/v1/register/request|verify`, `PUT /_tincan/client/v1/keys/master`, the
//!   appservice endpoints, and the [`identity`] (Identity Service API v2 for phones) routes.
//! - [`sessions`]: code sessions (6-digit CSPRNG codes, expiry, attempts, resend throttle) and [`limits`]
//!   (token buckets per number, prefix, IP, country).
//! - [`sms`]: SMS sending (dev sink, HTTP webhook, SMPP). [`homeserver`]: account creation and login (JWT,
//!   appservice). [`directory`]: publishing to the ENUM directory. [`mirror`]: the directory's number list
//!   for lookups of other providers' numbers, resolved through DNSSEC-validated DNS. [`store`]:
//!   SQLite/PostgreSQL. [`porting`]: moving numbers between providers, both sides.
//! - [`oidc`]: an OpenID provider, so stock Matrix clients sign in by phone number through the homeserver's SSO.

pub mod api;
pub mod app;
pub mod charter;
pub mod code;
pub mod config;
pub mod directory;
pub mod error;
pub mod federation;
pub mod fetch;
pub mod homeserver;
pub mod identity;
pub mod limits;
pub mod log_witness;
pub mod mirror;
pub mod net;
pub mod number;
pub mod oidc;
pub mod porting;
pub mod registration_lock;
pub mod sessions;
pub mod sms;
pub mod store;

pub use app::App;
pub use config::ExtConfig;
pub use error::ApiError;

use std::net::SocketAddr;
use std::sync::Arc;

/// Why the server could not start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// Opening storage failed.
    #[error(transparent)]
    Store(#[from] store::StoreError),
    /// Binding the listen address failed.
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        /// The address.
        addr: String,
        /// The error.
        source: std::io::Error,
    },
    /// The server failed while running.
    #[error("server: {0}")]
    Io(#[from] std::io::Error),
    /// The directory is not on the charter's trust list (`[charter]`), or there is no valid list.
    #[error(transparent)]
    Charter(#[from] charter::CharterCheckError),
}

/// Serves `app` on an already bound listener until the process ends.
pub async fn serve_on(app: Arc<App>, listener: tokio::net::TcpListener) -> Result<(), ServeError> {
    let router = api::router(app);
    axum::serve(listener, router.into_make_service_with_connect_info::<SocketAddr>()).await?;
    Ok(())
}

/// Opens storage, builds the backends and serves on `config.listen`.
pub async fn run(config: ExtConfig) -> Result<(), ServeError> {
    let clock: Arc<dyn tincan_common::Clock> = Arc::new(tincan_common::SystemClock);
    let listen = config.listen.clone();
    let watcher = if config.charter.enabled() {
        let client = charter::client(&config)?;
        let version = charter::check(&client, &config, &*clock).await?;
        tracing::info!(version, directory = %config.directory.url, "the directory is on the charter's trust list");
        Some(charter::watch(client, config.clone(), clock.clone()))
    } else {
        None
    };
    let app = Arc::new(App::from_config(config, clock).await?);
    if app.directory.is_some() && app.lookup.is_some() {
        tokio::spawn(mirror::run(app.clone()));
    }
    if app.directory.is_some() {
        tokio::spawn(porting::run(app.clone()));
        tokio::spawn(porting::old_account::run(app.clone()));
    }
    let listener = tokio::net::TcpListener::bind(&listen)
        .await
        .map_err(|source| ServeError::Listen { addr: listen.clone(), source })?;
    tracing::info!(%listen, sms = ?app.config.sms.backend, homeserver = ?app.config.homeserver.backend, "tincan-ext listening");
    match watcher {
        None => serve_on(app, listener).await,
        Some(watcher) => tokio::select! {
            served = serve_on(app, listener) => served,
            refused = watcher => {
                tracing::error!(error = %refused, "stopping");
                Err(refused.into())
            }
        },
    }
}
