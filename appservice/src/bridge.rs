//! The bridge core: the Matrix side every bridge shares.
//!
//! Data flow:
//! - **Matrix → network.** The AS API records each transaction in the durable inbox (see [`crate::server`]) and
//!   wakes the inbox processor ([`inbox`]). It reads unprocessed events in inbox order, handles invites of ghosts
//!   itself (a new direct portal), and hands every portal event to that portal's queue ([`portal`]), whose
//!   worker calls the connector's [`NetworkApi`](crate::NetworkApi) and marks the event done. A restart resumes
//!   the events not marked done.
//! - **Network → Matrix.** The connector calls [`BridgeHandle::queue_remote_event`], which records the event in
//!   the durable remote queue before it returns, then hands it to the same per-portal queue, so both directions
//!   of one chat stay in order. The worker creates the portal room and the ghost when needed, sends as the ghost
//!   with a transaction ID fixed per queued event, and marks the event done together with its message mapping
//!   once the homeserver accepted it ([`remote`]). Homeserver outages block only that portal, which retries
//!   with backoff; a restart replays every event not marked done, in order.
//!
//! End-to-bridge encryption ([`crypto`], when `encryption.enabled`) plugs in at three places without changing
//! the connector interface: the inbox hands each transaction's crypto entry (MSC2409 to-device messages,
//! MSC3202 device lists and one-time-key counts) to the ghosts' devices and decrypts `m.room.encrypted` into
//! the plain event before [`portal`] sees it; [`remote`]'s `send` encrypts through the ghost's device in an
//! encrypted room; ghosts get their device (MSC4190) when they are ensured. The remote queue keeps the plain
//! [`RemoteEvent`](crate::RemoteEvent) and encryption happens per attempt, so no ciphertext or session state is
//! persisted with a queued event; a resend after a crash carries fresh ciphertext under the same transaction
//! ID, and the homeserver still answers with the first event.

pub mod commands;
pub mod crypto;
mod done;
mod ghost;
mod group;
pub(crate) use ghost::ensure_ghost;
pub mod inbox;
mod matrix;
mod media;
mod portal;
mod portals;
mod remote;
pub mod status;

use crate::config::AppserviceConfig;
use crate::connector::{NetworkApi, NetworkConnector, RemoteEvent};
use crate::homeserver::{Homeserver, HomeserverError};
use crate::ids::{GhostNamer, PortalKey};
use crate::metrics::Metrics;
use crate::store::{NewRemoteEvent, Store, StoreError};
use ruma::{OwnedUserId, UserId};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tincan_common::Clock;
use tokio::sync::{Notify, mpsc, watch};

/// Why the bridge could not do something.
#[derive(Debug, thiserror::Error)]
pub enum BridgeError {
    /// Bridge state could not be read or written.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The homeserver refused or was unreachable.
    #[error(transparent)]
    Homeserver(#[from] HomeserverError),
    /// The connector failed.
    #[error("connector: {0}")]
    Connector(#[from] crate::connector::ConnectorError),
    /// The config is unusable.
    #[error("invalid config: {0}")]
    Config(String),
    /// The bridge is shutting down.
    #[error("the bridge is shutting down")]
    Stopped,
    /// An encryption step failed.
    #[error(transparent)]
    Crypto(#[from] crypto::CryptoError),
    /// A remote event could not be serialized for the queue.
    #[error("cannot encode a remote event: {0}")]
    Encode(String),
    /// A group chat's [`crate::connector::ChatInfo`] lists no remote participant.
    #[error("a group chat needs at least one remote participant")]
    EmptyGroup,
    /// A remote attachment is bigger than `media.max_bytes`.
    #[error("attachment of {size} bytes is larger than media.max_bytes ({max})")]
    MediaTooLarge {
        /// Its size.
        size: u64,
        /// The limit.
        max: u64,
    },
}

/// Bridge result.
pub type Result<T, E = BridgeError> = std::result::Result<T, E>;

pub(crate) struct Inner {
    pub(crate) appservice_id: String,
    pub(crate) hs_token: String,
    pub(crate) bot: OwnedUserId,
    pub(crate) namer: GhostNamer,
    pub(crate) connector: Arc<dyn NetworkConnector>,
    pub(crate) store: Arc<dyn Store>,
    pub(crate) hs: Homeserver,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) metrics: Metrics,
    pub(crate) inbox_wakeup: Notify,
    pub(crate) portals: Mutex<HashMap<PortalKey, mpsc::UnboundedSender<portal::Work>>>,
    /// Portal rows read lately (see [`portals`]).
    pub(crate) portal_cache: portals::PortalCache,
    pub(crate) logins: Mutex<HashMap<OwnedUserId, Arc<dyn NetworkApi>>>,
    pub(crate) shutdown: watch::Sender<bool>,
    /// The ghosts' devices, when end-to-bridge encryption is enabled.
    pub(crate) crypto: Option<crypto::Crypto>,
    /// Encrypted inbox events waiting for their room key, and when they were first tried.
    pub(crate) undecryptable: Mutex<Vec<inbox::Waiting>>,
    pub(crate) undecryptable_timeout: std::time::Duration,
    /// `media.max_bytes`.
    pub(crate) media_max_bytes: u64,
    /// Finished events on their way to being marked done (see [`done`]).
    pub(crate) done: done::DoneLog,
    /// The last inbox `seq` recorded before this start: only an event at or below it can have been handled by
    /// an earlier run (and not marked done before a crash), so only such an event is looked up in the message
    /// map before it goes to the network again.
    pub(crate) replay_until: i64,
    /// Ghosts whose plain sending device exists (see [`ghost::send_device`]).
    pub(crate) send_devices: ghost::SendDevices,
}

impl std::fmt::Debug for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bridge").field("id", &self.appservice_id).field("bot", &self.bot).finish_non_exhaustive()
    }
}

/// A handle on the running bridge core; cheap to clone. Connectors queue remote events with it.
#[derive(Debug, Clone)]
pub struct BridgeHandle(pub(crate) Arc<Inner>);

impl BridgeHandle {
    /// `media.max_bytes`: the largest attachment [`BridgeHandle::queue_remote_event`] takes (for connectors
    /// that download one, to stop early).
    pub fn media_max_bytes(&self) -> u64 {
        self.0.media_max_bytes
    }

    /// Queues an event from the network. When this returns `Ok`, the event is durably recorded: it is bridged
    /// even if the bridge crashes or the homeserver is down for a while, and exactly once (a resend after a
    /// crash reuses the event's transaction ID, so the homeserver deduplicates it). Events of one portal are
    /// bridged in the order they are queued.
    pub async fn queue_remote_event(&self, event: RemoteEvent) -> Result<()> {
        self.queue_remote_events(vec![event]).await
    }

    /// Queues several events from the network in one database transaction (one disk flush), in order; for
    /// connectors that receive bursts. Same guarantees as [`BridgeHandle::queue_remote_event`].
    pub async fn queue_remote_events(&self, events: Vec<RemoteEvent>) -> Result<()> {
        if *self.0.shutdown.borrow() {
            return Err(BridgeError::Stopped);
        }
        let max = self.0.media_max_bytes;
        if let Some(size) = events.iter().find_map(|e| match &e.kind {
            crate::RemoteEventKind::Media { media, .. } if media.data.len() as u64 > max => Some(media.data.len()),
            _ => None,
        }) {
            return Err(BridgeError::MediaTooLarge { size: size as u64, max });
        }
        if events.iter().any(|e| matches!(&e.kind, crate::RemoteEventKind::ChatInfo(i) if i.members.is_empty())) {
            return Err(BridgeError::EmptyGroup);
        }
        let records = events
            .iter()
            .map(|e| {
                let json = serde_json::to_string(e).map_err(|e| BridgeError::Encode(e.to_string()))?;
                Ok(NewRemoteEvent { portal: e.portal.clone(), json })
            })
            .collect::<Result<Vec<_>>>()?;
        let seqs = self.0.store.queue_remote(&records, self.now_ms()).await?;
        self.0.metrics.add(&self.0.metrics.remote_events, events.len() as u64);
        for (seq, event) in seqs.into_iter().zip(events) {
            let key = event.portal.clone();
            // Only fails when the bridge stops meanwhile: the event is recorded and replays at the next start.
            if portal::enqueue(self, &key, portal::Work::Remote { seq, event }).is_err() {
                tracing::debug!(seq, "bridge stopping; remote event left for the next start");
            }
        }
        Ok(())
    }

    /// Reports what became of the Matrix message `event_id` of `portal` on the network (a delivery report, a
    /// final answer); the core shows it in the room (see [`crate::MessageStatus`]). Durable and ordered like
    /// [`BridgeHandle::queue_remote_event`], and fine to call before `handle_matrix_message` for that message
    /// has returned. The report comes from the ghost of the portal's remote user.
    pub async fn report_message_status(
        &self,
        portal: &PortalKey,
        event_id: &ruma::EventId,
        status: crate::MessageStatus,
    ) -> Result<()> {
        let sender = match self.portal(portal).await? {
            Some(p) => p.other_user,
            None => crate::RemoteUserId::new(portal.chat.as_str()),
        };
        self.queue_remote_event(RemoteEvent {
            portal: portal.clone(),
            sender,
            kind: crate::RemoteEventKind::MessageStatus { event_id: event_id.to_owned(), status },
        })
        .await
    }

    /// The ghost user ID of a remote user.
    pub fn ghost_user_id(&self, remote: &crate::RemoteUserId) -> OwnedUserId {
        self.0.namer.user_id(remote)
    }

    /// The bridge bot's user ID.
    pub fn bot_user_id(&self) -> &UserId {
        &self.0.bot
    }

    /// The bridge state.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.0.store
    }

    /// The metrics.
    pub fn metrics(&self) -> &Metrics {
        &self.0.metrics
    }

    /// The homeserver client (as the bridge).
    pub fn homeserver(&self) -> &Homeserver {
        &self.0.hs
    }

    pub(crate) fn now_ms(&self) -> i64 {
        self.0
            .clock
            .now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
            .unwrap_or(0)
    }

    pub(crate) fn wake_inbox(&self) {
        self.0.inbox_wakeup.notify_one();
    }

    /// The login of a local user, cached.
    pub(crate) async fn login(&self, user: &UserId) -> Result<Option<Arc<dyn NetworkApi>>> {
        if let Some(api) = self.0.logins.lock().expect("not poisoned").get(user) {
            return Ok(Some(api.clone()));
        }
        let api = self.0.connector.login(user).await?;
        if let Some(api) = &api {
            self.0.logins.lock().expect("not poisoned").insert(user.to_owned(), api.clone());
        }
        Ok(api)
    }
}

/// Builds and starts the bridge core.
#[derive(Debug)]
pub struct BridgeBuilder {
    config: AppserviceConfig,
    store: Option<Arc<dyn Store>>,
    clock: Arc<dyn Clock>,
    process_inbox: bool,
    start_connector: bool,
}

/// The bridge core: its AS API server and workers. Stops when dropped or with [`Bridge::stop`].
#[derive(Debug)]
pub struct Bridge {
    handle: BridgeHandle,
    addr: std::net::SocketAddr,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Bridge {
    /// A builder for `config` (validated by the caller with `load_config`).
    pub fn builder(config: AppserviceConfig) -> BridgeBuilder {
        BridgeBuilder {
            config,
            store: None,
            clock: Arc::new(tincan_common::SystemClock),
            process_inbox: true,
            start_connector: true,
        }
    }

    /// The handle (for the connector, for tests).
    pub fn handle(&self) -> &BridgeHandle {
        &self.handle
    }

    /// The address the AS API listens on.
    pub fn local_addr(&self) -> std::net::SocketAddr {
        self.addr
    }

    /// Stops the server and the workers; recorded but unprocessed events stay in the inbox.
    pub async fn stop(mut self) {
        self.shutdown().await;
    }

    async fn shutdown(&mut self) {
        let _ = self.handle.0.shutdown.send(true);
        self.handle.0.inbox_wakeup.notify_one();
        self.handle.0.portals.lock().expect("not poisoned").clear();
        // What was handled is marked done before the tasks go (a database that does not answer in time leaves
        // it pending, as a crash would: it is handled again at the next start).
        if tokio::time::timeout(std::time::Duration::from_secs(10), self.handle.flush_done()).await.is_err() {
            tracing::warn!("finished events not all marked done at shutdown; they are handled again at the next start");
        }
        for t in self.tasks.drain(..) {
            t.abort();
            let _ = t.await;
        }
    }
}

impl Drop for Bridge {
    fn drop(&mut self) {
        let _ = self.handle.0.shutdown.send(true);
        for t in &self.tasks {
            t.abort();
        }
    }
}

impl BridgeBuilder {
    /// Uses this store instead of opening `database.url`.
    pub fn store(mut self, store: Arc<dyn Store>) -> Self {
        self.store = Some(store);
        self
    }

    /// Uses this clock (tests).
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Records transactions but does not process the inbox (tests of crash recovery).
    pub fn without_processing(mut self) -> Self {
        self.process_inbox = false;
        self
    }

    /// Does not call the connector's `start` (tests that drive the AS API alone).
    pub fn without_connector_start(mut self) -> Self {
        self.start_connector = false;
        self
    }

    /// Opens the store, binds the AS API, starts the inbox processor and the connector.
    pub async fn start(self, connector: Arc<dyn NetworkConnector>) -> Result<Bridge> {
        let c = &self.config;
        let problems = c.validate_tokens();
        if !problems.is_empty() {
            return Err(BridgeError::Config(problems.join("; ")));
        }
        let store = match self.store {
            Some(s) => s,
            None => crate::store::connect(&c.database.url, c.database.max_connections).await?,
        };
        let bot = UserId::parse(format!("@{}:{}", c.appservice.bot_localpart, c.homeserver.server_name))
            .map_err(|e| BridgeError::Config(format!("bot user id: {e}")))?;
        let crypto = match c.encryption.enabled {
            true => Some(crypto::Crypto::open(c).await?),
            false => None,
        };
        // Before the AS API takes transactions: everything recorded from now on is new to the connector.
        let replay_until = store.last_seq().await?;
        let metrics = Metrics::default();
        let prefix = c.ghost_prefix(connector.ghost_prefix()).to_owned();
        let (shutdown, _) = watch::channel(false);
        let handle = BridgeHandle(Arc::new(Inner {
            appservice_id: c.appservice.id.clone(),
            hs_token: c.appservice.hs_token.expose().to_owned(),
            bot,
            namer: GhostNamer::new(prefix, c.homeserver.server_name.clone()),
            connector: connector.clone(),
            store,
            hs: Homeserver::new(&c.homeserver.url, c.appservice.as_token.expose(), metrics.clone()),
            clock: self.clock,
            metrics,
            inbox_wakeup: Notify::new(),
            portals: Mutex::new(HashMap::new()),
            portal_cache: Default::default(),
            logins: Mutex::new(HashMap::new()),
            shutdown,
            crypto,
            undecryptable: Mutex::new(Vec::new()),
            undecryptable_timeout: std::time::Duration::from_secs(c.encryption.undecryptable_timeout_secs),
            media_max_bytes: c.media.max_bytes,
            done: Default::default(),
            replay_until,
            send_devices: Default::default(),
        }));
        let listener = tokio::net::TcpListener::bind(&c.appservice.listen)
            .await
            .map_err(|e| BridgeError::Config(format!("appservice.listen {}: {e}", c.appservice.listen)))?;
        let addr = listener.local_addr().map_err(|e| BridgeError::Config(e.to_string()))?;
        let mut tasks = vec![tokio::spawn(done::run(handle.clone()))];
        let app = crate::server::router(handle.clone());
        let mut stop = handle.0.shutdown.subscribe();
        tasks.push(tokio::spawn(async move {
            let serve = axum::serve(listener, app).with_graceful_shutdown(async move {
                let _ = stop.wait_for(|s| *s).await;
            });
            if let Err(e) = serve.await {
                tracing::error!(error = %e, "AS API server failed");
            }
        }));
        if self.process_inbox {
            tasks.push(tokio::spawn(inbox::run(handle.clone())));
            if handle.0.crypto.is_some() {
                tasks.push(tokio::spawn(inbox::expire_undecryptable(handle.clone())));
            }
        }
        if self.process_inbox && c.database.retention_secs > 0 {
            let retention = std::time::Duration::from_secs(c.database.retention_secs);
            tasks.push(tokio::spawn(prune(handle.clone(), retention)));
        }
        // Before the connector starts, so that events it queues now come after those left from the last run.
        remote::replay(&handle).await?;
        if self.start_connector {
            connector.start(handle.clone()).await?;
        }
        tracing::info!(%addr, network = connector.name(), "bridge started");
        Ok(Bridge { handle, addr, tasks })
    }
}

/// Runs until the bridge shuts down: every so often (a tenth of `retention`, at most hourly) deletes the
/// finished rows older than `retention` on the bridge's clock (`database.retention_secs`).
async fn prune(bridge: BridgeHandle, retention: std::time::Duration) {
    let every = (retention / 10).clamp(std::time::Duration::from_secs(1), std::time::Duration::from_secs(3600));
    let retention_ms = i64::try_from(retention.as_millis()).unwrap_or(i64::MAX);
    let mut shutdown = bridge.0.shutdown.subscribe();
    loop {
        let before = bridge.now_ms().saturating_sub(retention_ms);
        match bridge.0.store.prune_done(before).await {
            Ok(p) => {
                let rows = p.inbox_events + p.remote_events + p.transactions;
                bridge.0.metrics.add(&bridge.0.metrics.rows_pruned, rows);
                if rows > 0 {
                    tracing::info!(?p, "pruned finished rows");
                }
            }
            Err(e) => tracing::warn!(error = %e, "pruning finished rows failed; trying again later"),
        }
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = shutdown.wait_for(|s| *s) => return,
        }
    }
}
