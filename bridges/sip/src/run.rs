//! Assembles the bridge from its config: the SIP stack and its listeners, the registrar, routing, rtpengine,
//! the connector, and the core on top.

use crate::calls::{Calls, CallsDeps};
use crate::config::SipBridgeConfig;
use crate::connector::SipConnector;
use crate::registrar::Registrar;
use crate::routing::Router;
use std::sync::Arc;
use std::time::Duration;
use tincan_appservice::{Bridge, BridgeError};
use tincan_common::Clock;
use tincan_sip_core::digest::DigestRealm;
use tincan_sip_core::rtpengine::{NgClient, NgTiming};
use tincan_sip_core::stack::rsip_stack::{RsipStack, StackConfig, TlsFiles};
use tincan_sip_core::stack::{SipStack, Target};

/// Why the bridge could not start.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The config is unusable (beyond what validation catches: unreadable files…).
    #[error("config: {0}")]
    Config(String),
    /// The SIP side's store.
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    /// The SIP stack.
    #[error(transparent)]
    Stack(#[from] tincan_sip_core::stack::StackError),
    /// The rtpengine client.
    #[error(transparent)]
    Media(#[from] tincan_sip_core::rtpengine::NgError),
    /// The core.
    #[error(transparent)]
    Bridge(#[from] BridgeError),
}

/// A running bridge.
#[derive(Debug)]
pub struct Running {
    /// The core.
    pub bridge: Bridge,
    /// The SIP stack.
    pub stack: Arc<RsipStack>,
    /// The connector.
    pub connector: SipConnector,
    /// The SIP side's store.
    pub store: Arc<dyn crate::store::Store>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Running {
    /// Where the SIP stack listens.
    pub fn sip_listeners(&self) -> Vec<Target> {
        self.stack.listeners()
    }

    /// Stops the core, the SIP stack and the housekeeping.
    pub async fn stop(self) {
        for t in &self.tasks {
            t.abort();
        }
        self.stack.shutdown();
        self.bridge.stop().await;
    }
}

/// Starts everything `config` (validated) describes.
pub async fn start(config: SipBridgeConfig, clock: Arc<dyn Clock>) -> Result<Running, RunError> {
    let store = crate::store::open(&config.sip.database_url).await?;
    let targets = config.sip.targets().map_err(RunError::Config)?;
    let tls = match (&config.sip.tls_cert_file, &config.sip.tls_key_file) {
        (Some(c), Some(k)) => Some(TlsFiles {
            cert_pem: std::fs::read(c).map_err(|e| RunError::Config(format!("sip.tls_cert_file {c}: {e}")))?,
            key_pem: std::fs::read(k).map_err(|e| RunError::Config(format!("sip.tls_key_file {k}: {e}")))?,
        }),
        _ => None,
    };
    let stack_config =
        StackConfig { listen: targets.clone(), tls, per_source_rate: config.sip.per_source_rate, ..Default::default() };
    let (stack, incoming) = RsipStack::start(stack_config).await?;
    let transports = {
        let mut t: Vec<_> = targets.iter().map(|t| t.transport).collect();
        t.dedup();
        t
    };
    let subscribers = crate::subscribers::from_config(&config.subscribers, config.sip.realm());
    let router = Arc::new(Router::from_config(&config.routes, transports).map_err(RunError::Config)?);
    let realm = DigestRealm::new(
        config.sip.realm(),
        config.sip.nonce_secret.expose().as_bytes(),
        config.sip.nonce_lifetime_secs,
    )
    .with_algorithms(config.sip.algorithms().map_err(RunError::Config)?);
    let registrar = Registrar::new(
        realm,
        subscribers.clone(),
        store.clone(),
        clock.clone(),
        config.sip.min_expires_secs,
        config.sip.max_expires_secs,
    );
    let ng_addr =
        config.media.rtpengine_ng.parse().map_err(|_| {
            RunError::Config(format!("media.rtpengine_ng {:?} is not ip:port", config.media.rtpengine_ng))
        })?;
    let mut rng = <rand::rngs::StdRng as rand::SeedableRng>::from_os_rng();
    let ng = NgClient::new(ng_addr, NgTiming::default(), &mut rng).await?;
    let calls = Arc::new(Calls::new(CallsDeps {
        ng,
        store: store.clone(),
        clock: clock.clone(),
        media: config.media.clone(),
        stack: stack.clone(),
        domain: config.sip.domain.clone(),
        subscribers: subscribers.clone(),
        router: router.clone(),
        devices: registrar.devices(),
        rng,
    }));
    let connector = SipConnector::new(
        stack.clone(),
        incoming,
        config.sip.domain.clone(),
        subscribers,
        router,
        registrar,
        Some(calls),
    );
    let bridge = Bridge::builder(config.core()).clock(clock.clone()).start(Arc::new(connector.clone())).await?;
    let purge_store = store.clone();
    let purge_clock = clock.clone();
    let purge = tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(60));
        loop {
            tick.tick().await;
            let now = i64::try_from(purge_clock.unix_seconds()).unwrap_or(i64::MAX);
            if let Err(e) = purge_store.purge_expired(now).await {
                tracing::warn!(error = %e, "purging expired registrations failed");
            }
        }
    });
    for t in stack.listeners() {
        tracing::info!(%t, "SIP listening");
    }
    Ok(Running { bridge, stack, connector, store, tasks: vec![purge] })
}
