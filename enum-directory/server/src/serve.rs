//! `tincan-directory serve`: opens storage, makes sure the zone has keys, loads every number into the signed
//! in-memory zone, then serves DNS (UDP + TCP) and the registrar API until shutdown.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use tincan_common::Clock;
use tokio::net::{TcpListener, UdpSocket};

use crate::api::{self, ApiState, AuditorTokens, RateLimiter, WriteLock};
use crate::config::{ApexError, DirectoryConfig};
use crate::dns::{self, Metrics, Zone, ZoneKeys, Zones};
use crate::follow::{self, Follower};
use crate::keys::{self, KeyError};
use crate::metrics::DirectoryMetrics;
use crate::rollover;
use crate::storage::{self, StorageError};
use crate::translog::{LogError, TransLog};
use crate::xfr::{Transfers, XfrError};

/// Why the server could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The apex in the config is unusable.
    #[error("dns.apex: {0}")]
    Apex(#[from] ApexError),
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
    /// Keys could not be made or loaded.
    #[error(transparent)]
    Keys(#[from] KeyError),
    /// The transparency log could not be opened.
    #[error("transparency log: {0}")]
    Log(#[from] LogError),
    /// The zone could not be built.
    #[error("zone: {0}")]
    Zone(#[from] dns::ZoneError),
    /// A listen address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// The DNS server failed.
    #[error(transparent)]
    Dns(#[from] dns::ServerError),
    /// The API server failed.
    #[error("API server failed: {0}")]
    Api(std::io::Error),
    /// Zone transfer could not be set up.
    #[error(transparent)]
    Xfr(#[from] XfrError),
}

/// Where a started server listens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Listening {
    /// DNS, UDP and TCP.
    pub dns: SocketAddr,
    /// The registrar API (HTTP).
    pub api: SocketAddr,
}

/// Opens storage (creating the data directory for the default SQLite database) and ensures the zone's keys.
pub async fn open_storage(
    config: &DirectoryConfig,
    clock: Arc<dyn Clock>,
) -> Result<Arc<dyn storage::Storage>, ServeError> {
    if config.database.url.is_none() {
        let path = config.data_dir();
        std::fs::create_dir_all(&path).map_err(|source| ServeError::DataDir { path, source })?;
    }
    Ok(storage::open(config.database_url().expose(), clock).await?)
}

/// Runs the directory until `shutdown` resolves; `on_listening` is called once both servers are bound.
pub async fn serve(
    config: DirectoryConfig,
    clock: Arc<dyn Clock>,
    on_listening: impl FnOnce(Listening),
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    let apex = config.apex()?;
    let storage = open_storage(&config, clock.clone()).await?;
    let ensured = keys::ensure(&*storage, &*clock, &apex, config.dns.algorithm).await?;
    if ensured.generated {
        tracing::info!(apex = %apex, algorithm = ?config.dns.algorithm, "generated DNSSEC keys (KSK + ZSK)");
    }
    let zone_keys = Arc::new(keys::load(&*storage, &apex).await?);

    let started = Instant::now();
    let zone_config = config.zone()?;
    let (zone, loaded_version) = load_zone(&config, &*storage, zone_keys.clone(), clock.clone()).await?;
    tracing::info!(numbers = zone.len(), elapsed_ms = started.elapsed().as_millis() as u64, apex = %apex, "zone loaded");

    let (udp, dns_addr, tcp) = bind_dns(config.dns.listen).await?;
    let api_listener = TcpListener::bind(config.api.listen).await.map_err(bind_err(config.api.listen))?;
    let api_addr = api_listener.local_addr().map_err(bind_err(config.api.listen))?;

    let log = Arc::new(TransLog::open(storage.clone(), clock.clone()).await?);
    let rollover_storage = storage.clone();
    let zones = Arc::new(Zones::new(vec![zone.clone()]));
    let metrics = Arc::new(DirectoryMetrics::new(Arc::new(Metrics::default()), zones.clone()));
    // Zone transfer to secondaries: their requests are intercepted by the DNS server, and every committed change
    // goes through the notifier on its way into the zone.
    let (zone_writer, interceptor): (Arc<dyn api::ZoneWriter>, Option<Arc<dyn dns::server::Interceptor>>) =
        if config.xfr.secondaries.is_empty() {
            (zone.clone() as Arc<dyn api::ZoneWriter>, None)
        } else {
            let t = Transfers::new(&config.xfr, zone_config, zone_keys, storage.clone(), clock.clone())?
                .with_counters(metrics.transfers.clone())
                .following(zone.clone());
            let t = Arc::new(t);
            tracing::info!(secondaries = config.xfr.secondaries.len(), "zone transfer enabled");
            (t.start_notifier(zone.clone()), Some(t as Arc<dyn dns::server::Interceptor>))
        };
    let writes = WriteLock::default();
    // Changes written by another process or node reach the zone through the same writer as the API's.
    let follower = Follower::new(
        storage.clone(),
        zone.clone(),
        zone_writer.clone(),
        writes.clone(),
        metrics.follow.clone(),
        loaded_version,
    );
    let porting = Arc::new(crate::ports::Porting::new(&config.ports));
    let ports_sweep = (storage.clone(), zone_writer.clone(), writes.clone(), porting.clone());
    let state = ApiState {
        porting,
        metrics: metrics.clone(),
        log,
        auditors: Arc::new(AuditorTokens::new(&config.log.auditor_tokens)),
        storage: storage.clone(),
        zone: zone_writer,
        limiter: Arc::new(RateLimiter::new(config.api.rate_limit, clock.clone())),
        public_limiter: Arc::new(api::ClientRateLimiter::new(config.api.public_rate_limit, clock.clone())),
        writes,
        clock: clock.clone(),
    };
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let stopped = move || {
        let mut rx = stop_rx.clone();
        async move {
            let _ = rx.wait_for(|s| *s).await;
        }
    };
    let dns_task = tokio::spawn(dns::server::run_with(
        zones,
        udp,
        tcp,
        config.dns.server.clone(),
        metrics.dns.clone(),
        interceptor,
        stopped(),
    ));
    let api_task = tokio::spawn(api::serve(api_listener, state, stopped()));
    let (ports_storage, ports_zone, ports_writes, porting) = ports_sweep;
    let ports_task = tokio::spawn(crate::ports::sweep_loop(
        ports_storage,
        ports_zone,
        ports_writes,
        porting,
        clock.clone(),
        std::time::Duration::from_secs(config.ports.check_interval_secs.max(1)),
        stopped(),
    ));
    let rollover_task = tokio::spawn(rollover_loop(
        rollover_storage,
        clock.clone(),
        zone.clone(),
        config.rollover_policy(),
        config.dns.algorithm,
        std::time::Duration::from_secs(config.dns.rollover.check_interval.max(1)),
        stopped(),
    ));
    let follow_every = std::time::Duration::from_millis(config.database.follow_interval_ms.max(1));
    let follow_task = tokio::spawn(follower.run(follow_every, stopped()));
    let store_task = tokio::spawn(follow::store_refreshed(storage, zone.clone(), metrics.follow.clone(), stopped()));
    tracing::info!(dns = %dns_addr, api = %api_addr, "listening");
    on_listening(Listening { dns: dns_addr, api: api_addr });

    shutdown.await;
    tracing::info!("shutting down");
    let _ = stop_tx.send(true);
    let (dns_result, api_result, _, _, _, _) =
        tokio::join!(dns_task, api_task, rollover_task, follow_task, store_task, ports_task);
    if let Ok(r) = dns_result {
        r?;
    }
    if let Ok(r) = api_result {
        r.map_err(ServeError::Api)?;
    }
    Ok(())
}

/// Runs the rollover schedule every `every` and publishes key changes (made here or by `keys roll`) into the
/// zone; a failed step is logged and retried on the next tick.
async fn rollover_loop(
    storage: Arc<dyn storage::Storage>,
    clock: Arc<dyn Clock>,
    zone: Arc<Zone>,
    policy: rollover::Policy,
    algo: storage::KeyAlgorithm,
    every: std::time::Duration,
    stopped: impl Future<Output = ()>,
) {
    let apex = zone.apex_name().clone();
    let work = async {
        loop {
            tokio::time::sleep(every).await;
            match sync_keys(&*storage, &*clock, &zone, &policy, algo, &apex).await {
                Ok(false) => {}
                // New keys: re-sign the whole zone now, in the background, rather than on each first query.
                Ok(true) => {
                    let z = zone.clone();
                    let started = std::time::Instant::now();
                    tracing::info!(apex = %apex, numbers = z.len(), "re-signing the zone with the new keys");
                    match tokio::task::spawn_blocking(move || z.refresh()).await {
                        Ok(Ok(n)) => tracing::info!(
                            apex = %apex,
                            signed = n,
                            elapsed_ms = started.elapsed().as_millis() as u64,
                            "zone re-signed with the new keys"
                        ),
                        Ok(Err(e)) => tracing::error!(apex = %apex, error = %e, "re-signing failed"),
                        Err(e) => tracing::error!(error = %e, "re-signing task failed"),
                    }
                }
                Err(e) => tracing::error!(error = %e, "key rollover step failed"),
            }
        }
    };
    tokio::select! {
        _ = work => {}
        _ = stopped => {}
    }
}

/// One rollover step, then the zone's keys reloaded from storage and swapped in if they changed.
pub async fn sync_keys(
    storage: &dyn storage::Storage,
    clock: &dyn Clock,
    zone: &Zone,
    policy: &rollover::Policy,
    algo: storage::KeyAlgorithm,
    apex: &hickory_proto::rr::Name,
) -> Result<bool, KeyError> {
    rollover::step(storage, clock, apex, policy, algo).await?;
    let fresh = keys::load(storage, apex).await?;
    if zone.keys().same_keys(&fresh) {
        return Ok(false);
    }
    let zsk = fresh.zsk().key_tag();
    zone.set_keys(Arc::new(fresh))?;
    tracing::info!(apex = %apex, zsk, "zone keys changed; signatures by other keys are re-made before use");
    Ok(true)
}

/// Builds the zone from storage: each number's persisted signed records are loaded as they are (no signing);
/// numbers stored without them, or whose signatures no longer fit the zone's key or TTL, are signed later by the
/// refresher (or by the first query for them). Logs how many signatures were loaded and how many are to make.
/// Returns the zone and the journal version it holds every change up to (later ones are for the follower).
pub async fn load_zone(
    config: &DirectoryConfig,
    storage: &dyn storage::Storage,
    keys: Arc<ZoneKeys>,
    clock: Arc<dyn Clock>,
) -> Result<(Arc<Zone>, i64), ServeError> {
    let mut tx = storage.begin().await?;
    let version = tx.journal().current_version().await?;
    // SOA serials are 32-bit and wrap (RFC 1982); the zone version only grows.
    let serial = (version & 0xFFFF_FFFF) as u32;
    let zone = Arc::new(Zone::new(config.zone()?, keys, clock, serial)?);
    let (mut loaded_signed, mut stale) = (0u64, 0u64);
    let mut without = Vec::new();
    tx.numbers()
        .scan(&mut |row| {
            match row.signed.and_then(|b| zone.load_stored(row.e164, b)) {
                Some(true) => loaded_signed += 1,
                Some(false) => stale += 1,
                None => without.push(row.number()?),
            }
            Ok(())
        })
        .await?;
    // Numbers stored without a usable signed form are loaded from their records (and signed later).
    let unsigned: Vec<_> = tx.numbers().current(&without).await?.into_iter().map(|c| c.record).collect();
    drop(tx);
    let to_sign = stale + unsigned.len() as u64;
    if unsigned.is_empty() {
        zone.finish_load()?;
    } else {
        zone.load(unsigned.iter())?;
    }
    tracing::info!(loaded_signed, to_sign, "signatures loaded from storage");
    Ok((zone, version))
}

/// DNS's UDP socket and TCP listener, on one port. With port 0 the kernel picks the UDP port, and another program
/// may hold that port for TCP: then the pair is tried again on another port (up to 20 times) instead of failing.
async fn bind_dns(listen: SocketAddr) -> Result<(UdpSocket, SocketAddr, TcpListener), ServeError> {
    let mut retries = 0;
    loop {
        let udp = UdpSocket::bind(listen).await.map_err(bind_err(listen))?;
        let addr = udp.local_addr().map_err(bind_err(listen))?;
        match TcpListener::bind(addr).await {
            Ok(tcp) => return Ok((udp, addr, tcp)),
            Err(e) if listen.port() == 0 && e.kind() == std::io::ErrorKind::AddrInUse && retries < 20 => {
                tracing::debug!(%addr, "TCP port taken where the kernel put DNS's UDP socket; trying another");
                retries += 1;
            }
            Err(e) => return Err(bind_err(addr)(e)),
        }
    }
}

fn bind_err(addr: SocketAddr) -> impl FnOnce(std::io::Error) -> ServeError {
    move |source| ServeError::Bind { addr, source }
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
