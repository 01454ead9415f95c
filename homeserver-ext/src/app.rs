//! The extension's shared state: config, storage, SMS, homeserver connection, limits, clock and RNG.

use crate::config::ExtConfig;
use crate::directory::DirectoryClient;
use crate::homeserver::HomeserverConnector;
use crate::limits::Limiter;
use crate::sms::SmsSender;
use crate::store::Store;
use rand::SeedableRng;
use rand::rngs::StdRng;
use std::sync::{Arc, Mutex};
use tincan_common::Clock;

/// Everything a request handler needs.
#[derive(Debug)]
pub struct App {
    /// The config.
    pub config: ExtConfig,
    /// Storage.
    pub store: Arc<dyn Store>,
    /// SMS sending.
    pub sms: Arc<dyn SmsSender>,
    /// Account creation and login.
    pub homeserver: Arc<dyn HomeserverConnector>,
    /// Directory publishing, when configured.
    pub directory: Option<DirectoryClient>,
    /// Validated lookups of other providers' numbers, when `directory.dns_servers` is set.
    pub lookup: Option<tincan_enum_lookup::Lookup>,
    /// The directory's transparency log, every answer of `lookup` is checked against (set whenever `lookup`
    /// is).
    pub log: Option<crate::log_witness::LogWitness>,
    /// Abuse limits.
    pub limiter: Limiter,
    /// Time.
    pub clock: Arc<dyn Clock>,
    /// Randomness for codes, session ids and localparts.
    pub rng: Mutex<StdRng>,
    /// HTTP client for calls to the homeserver (OpenID, `/keys/query`).
    pub http: reqwest::Client,
    /// Other homeservers, named by clients and found by Matrix server discovery (see [`crate::federation`]).
    pub federation: crate::federation::Federation,
    /// Validated resolutions of directory hits running at once, over all lookups
    /// (`identity.lookup_resolve_concurrency`).
    pub resolve_slots: tokio::sync::Semaphore,
    /// Woken when a port away completes or a moved-away account is closed (see
    /// [`crate::porting::old_account`]).
    pub moved_away: tokio::sync::Notify,
}

impl App {
    /// Assembles the state from its parts (tests pass their own SMS sink, clock or seed).
    pub fn new(
        config: ExtConfig,
        store: Arc<dyn Store>,
        sms: Arc<dyn SmsSender>,
        homeserver: Arc<dyn HomeserverConnector>,
        clock: Arc<dyn Clock>,
        mut rng: StdRng,
    ) -> Self {
        let directory = DirectoryClient::from_config(&config.directory);
        // The config was validated on load; a problem here only disables directory lookups.
        let lookup = crate::mirror::build_lookup(&config.directory).unwrap_or_else(|e| {
            tracing::error!(error = %e, "directory lookups disabled");
            None
        });
        // Never a lookup whose answers cannot be checked against the log.
        let (lookup, log) = match crate::log_witness::LogWitness::from_config(&config.directory) {
            Ok(Some(log)) => (lookup, Some(log.with_store(store.clone()))),
            Ok(None) => (None, None),
            Err(e) => {
                tracing::error!(error = %e, "directory lookups disabled");
                (None, None)
            }
        };
        // Validated with the config; an unparsable entry is dropped, which allows less, never more.
        let foreign_allowed: Vec<crate::net::Cidr> =
            config.identity.homeserver_allowed_addresses.iter().filter_map(|a| a.parse().ok()).collect();
        let timeout = std::time::Duration::from_secs(config.identity.homeserver_timeout_secs.max(1));
        let dns_servers: Vec<std::net::SocketAddr> =
            config.identity.homeserver_dns_servers.iter().filter_map(|a| a.parse().ok()).collect();
        let dns = crate::fetch::Dns::new(&dns_servers, timeout).unwrap_or_else(|e| {
            tracing::error!(error = %e, "no DNS resolver for other homeservers: account/register cannot locate them");
            crate::fetch::Dns::unavailable()
        });
        let federation = crate::federation::Federation::new(
            foreign_allowed,
            dns,
            timeout,
            StdRng::from_rng(&mut rng),
            clock.clone(),
        );
        let config_slots = config.identity.lookup_resolve_concurrency.max(1);
        Self {
            limiter: Limiter::new(config.limits.clone(), clock.clone()),
            config,
            store,
            sms,
            homeserver,
            directory,
            lookup,
            log,
            clock,
            rng: Mutex::new(rng),
            http: reqwest::Client::new(),
            federation,
            resolve_slots: tokio::sync::Semaphore::new(config_slots),
            moved_away: tokio::sync::Notify::new(),
        }
    }

    /// The production assembly from config: opens the store, builds SMS and homeserver backends.
    pub async fn from_config(config: ExtConfig, clock: Arc<dyn Clock>) -> Result<Self, crate::store::StoreError> {
        let store = crate::store::open(&config.database_url).await?;
        let sms = crate::sms::from_config(&config.sms);
        let homeserver = crate::homeserver::from_config(&config, clock.clone());
        Ok(Self::new(config, store, sms, homeserver, clock, StdRng::from_os_rng()))
    }

    /// Now, in Unix seconds.
    pub fn now(&self) -> i64 {
        self.clock.unix_seconds() as i64
    }

    /// The key of stored code hashes (`codes.secret`).
    pub fn code_key(&self) -> &[u8] {
        self.config.codes.secret.expose().as_bytes()
    }

    /// Runs `f` with the RNG.
    pub fn with_rng<T>(&self, f: impl FnOnce(&mut StdRng) -> T) -> T {
        f(&mut self.rng.lock().expect("rng lock"))
    }
}
