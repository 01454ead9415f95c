//! Calls to the phone network (SIP in, SIP trunks out): a B2BUA that takes an INVITE from a trusted SIP peer
//! (the SIP bridge), prices the dialled number, holds credit for the first slice of the call **before** the
//! INVITE goes on, tries the carriers least cost first with failover, extends the hold slice by slice while
//! the call lasts, ends both legs with BYE when credit cannot be extended, and settles the billed seconds.
//!
//! - [`policy`]: the pure decisions (failover codes, refusal answers, billed seconds, affordable extensions).
//! - `call`: one call's life, from INVITE to settlement.
//! - [`media`]: the call's media anchored at rtpengine (`calls.rtpengine`): SDP rewritten both ways, the
//!   session deleted at hang-up.
//! - `live`: the calls in progress as the database knows them (a heartbeat a second), and the recovery that
//!   settles a crashed run's calls on the next start.
//! - `records`: the call detail records, one per carrier attempt (answered or not) and one per call refused
//!   before any carrier, stored before the hold is settled or released.
//! - `spool`: the records and settlements the database did not take in time (an outage), kept on the node's
//!   disk (`calls.spool_dir`) and replayed in order once it is back.
//!
//! Who pays is asserted by the trusted peer in [`ACCOUNT_HEADER`] (a Matrix user ID or an account id); the
//! peer itself is authenticated by its source address (`calls.trusted_peers`).
//!
//! Calls the other way — from a carrier's trunk (recognised by its exact source address) to one of the
//! provider's numbers — go on to the SIP bridge (`calls.bridge`), which rings the number's holder.

pub mod breaker;
mod call;
mod live;
pub mod media;
pub mod policy;
mod records;
mod spool;

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};
use tincan_sip_core::rtpengine::{NgClient, NgTiming};
use tincan_sip_core::stack::rsip_stack::{RsipStack, StackConfig};
use tincan_sip_core::stack::{Incoming, SipStack, StackError, Target, Transport};
use tokio::sync::mpsc;

use crate::ledger::{Ledger, LocalCharging};

/// The header in which the trusted peer names the paying account: `@alice:hs.example` (a user's account) or
/// the digits of an account id.
pub const ACCOUNT_HEADER: &str = "X-Tincan-Account";

/// How often the spool is replayed.
const SPOOL_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

/// The principal the call router charges as (its holds and idempotency keys).
pub const PRINCIPAL: &str = "svc:pstn";

/// `[calls]`: the SIP side. Calls are off unless a listener is set.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CallsConfig {
    /// UDP listener for SIP (e.g. `127.0.0.1:5070`).
    pub listen_udp: Option<SocketAddr>,
    /// TCP listener for SIP.
    pub listen_tcp: Option<SocketAddr>,
    /// Source addresses whose INVITEs are accepted (the SIP bridge). Everyone else gets 403.
    pub trusted_peers: Vec<IpAddr>,
    /// Seconds of call time held per slice (the first hold and each extension). Default 60.
    pub slice_secs: u32,
    /// How long before the paid time runs out the hold is extended. Default 10.
    pub extend_before_secs: u32,
    /// A carrier that sends no response at all within this time is given up for the next. Default 4000.
    pub invite_timeout_ms: u64,
    /// A billed call whose caller has not ACKed the gateway's 200 this long after the carrier answered is ended
    /// (BYE on both legs) and not charged. Default 4000: an ACK comes within a round trip, and by 4 s the caller
    /// has had the 200 four times (retransmitted at 0.5, 1.5 and 3.5 s). Less than 32000 (64*T1, when the SIP
    /// stack gives up on the ACK itself).
    pub ack_timeout_ms: u64,
    /// The longest a call may take to be answered (ringing included). Default 120.
    pub setup_timeout_secs: u32,
    /// Requests per second accepted from one source address. Default 200.
    pub per_source_rate: u32,
    /// Failures in a row (408, 5xx, a silent trunk) after which a carrier is skipped; 0: never. Default 5.
    pub breaker_failures: u32,
    /// How long a carrier is skipped before one call probes it again. Default 30.
    pub breaker_cooldown_secs: u32,
    /// Where each carrier (by its name in the ledger) is reached. An INVITE from exactly a trunk's address is a
    /// call in from that carrier.
    pub trunks: BTreeMap<String, TrunkConfig>,
    /// Where calls in from carriers go: the SIP bridge. Unset: they are refused `404`.
    pub bridge: Option<TrunkConfig>,
    /// rtpengine's ng control address (UDP, e.g. `127.0.0.1:22222`): every call's media is anchored there.
    /// Unset: the SDP passes through unchanged and media flows between the parties.
    pub rtpengine: Option<SocketAddr>,
    /// This node's name among the gateways sharing a database: on start it settles the calls its earlier
    /// processes left (a crash). Default: its first SIP listener (`udp:127.0.0.1:5070`). Nodes sharing one
    /// database need different names.
    pub node: Option<String>,
    /// A gateway process (of any node sharing the database) that has not confirmed its calls up for this long
    /// is taken for dead: another node claims its calls and settles them from what it had confirmed. 0: never
    /// (each node settles only its own, when it starts again). Default 30.
    pub takeover_after_secs: u32,
    /// Where the node keeps call records and settlements the database did not take when a call ended (an
    /// outage), until it does. Default: `call-spool` in the data directory. Local to the node: not shared.
    pub spool_dir: Option<std::path::PathBuf>,
}

impl Default for CallsConfig {
    fn default() -> Self {
        CallsConfig {
            listen_udp: None,
            listen_tcp: None,
            trusted_peers: Vec::new(),
            slice_secs: 60,
            extend_before_secs: 10,
            invite_timeout_ms: 4000,
            ack_timeout_ms: 4000,
            setup_timeout_secs: 120,
            per_source_rate: 200,
            breaker_failures: 5,
            breaker_cooldown_secs: 30,
            trunks: BTreeMap::new(),
            bridge: None,
            rtpengine: None,
            node: None,
            takeover_after_secs: 30,
            spool_dir: None,
        }
    }
}

/// A SIP peer: one carrier's trunk, or the SIP bridge.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrunkConfig {
    /// The trunk's address.
    pub address: SocketAddr,
    /// Its transport. Default UDP.
    #[serde(default = "udp")]
    pub transport: Transport,
    /// The host part of the Request-URI (default: the address).
    #[serde(default)]
    pub domain: Option<String>,
    /// Whether the carrier takes the caller's own number (From and `P-Asserted-Identity`). Default true; when
    /// false, calls go out from `provider_number`.
    #[serde(default = "yes")]
    pub asserted_identity: bool,
    /// The provider's number, shown to the called party when the carrier does not take the caller's own.
    #[serde(default)]
    pub provider_number: Option<String>,
    /// Credentials for a trunk that challenges INVITEs (401/407, digest MD5 or SHA-256).
    #[serde(default)]
    pub auth: Option<TrunkAuth>,
}

/// `[calls.trunks.NAME.auth]`: how the gateway answers the trunk's digest challenges. The password is best
/// given as `TINCAN_GATEWAY_CALLS__TRUNKS__NAME__AUTH__PASSWORD_FILE`; it never shows in `Debug` or
/// `config check`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrunkAuth {
    /// The username the carrier gave.
    pub username: String,
    /// The password (required; may come from the environment alone, so not required in the file).
    #[serde(default)]
    pub password: tincan_common::Secret,
    /// The only realm these credentials answer (a challenge from another realm fails the trunk over). Unset:
    /// any realm the trunk names.
    #[serde(default)]
    pub realm: Option<String>,
}

fn yes() -> bool {
    true
}

fn udp() -> Transport {
    Transport::Udp
}

impl CallsConfig {
    /// Whether calls are on.
    pub fn enabled(&self) -> bool {
        self.listen_udp.is_some() || self.listen_tcp.is_some()
    }

    /// This node's name ([`CallsConfig::node`]).
    pub fn node_name(&self) -> String {
        match (&self.node, self.listen_udp, self.listen_tcp) {
            (Some(n), _, _) => n.clone(),
            (None, Some(a), _) => format!("udp:{a}"),
            (None, None, Some(a)) => format!("tcp:{a}"),
            (None, None, None) => "calls".into(),
        }
    }

    /// Problems with the settings.
    pub fn problems(&self) -> Vec<String> {
        let mut p = Vec::new();
        if let Some(n) = &self.node
            && (n.is_empty() || n.len() > 100)
        {
            p.push("calls.node: 1 to 100 characters".into());
        }
        if !(1..=3600).contains(&self.slice_secs) {
            p.push("calls.slice_secs: 1 to 3600".into());
        }
        if self.extend_before_secs >= self.slice_secs.max(1) {
            p.push("calls.extend_before_secs: less than calls.slice_secs".into());
        }
        if !(100..=60_000).contains(&self.invite_timeout_ms) {
            p.push("calls.invite_timeout_ms: 100 to 60000".into());
        }
        if !(1..32_000).contains(&self.ack_timeout_ms) {
            // At 64*T1 (32 s) the stack gives up on the ACK itself: a longer wait would never end a call.
            p.push("calls.ack_timeout_ms: 1 to 31999".into());
        }
        if !(1..=600).contains(&self.setup_timeout_secs) {
            p.push("calls.setup_timeout_secs: 1 to 600".into());
        }
        if self.takeover_after_secs != 0 && !(3..=86_400).contains(&self.takeover_after_secs) {
            // A heartbeat a second, written with the calls' updates: a few seconds late is not dead.
            p.push("calls.takeover_after_secs: 0 (off) or 3 to 86400".into());
        }
        if !(1..=86_400).contains(&self.breaker_cooldown_secs) {
            p.push("calls.breaker_cooldown_secs: 1 to 86400".into());
        }
        for (name, t) in &self.trunks {
            if !t.asserted_identity && t.provider_number.is_none() {
                p.push(format!("calls.trunks.{name}.provider_number: needed when asserted_identity = false"));
            }
            if let Some(a) = &t.auth
                && (a.username.is_empty() || a.password.is_empty())
            {
                p.push(format!("calls.trunks.{name}.auth: username and password (or password_file) needed"));
            }
        }
        if self.enabled() && self.trusted_peers.is_empty() {
            p.push("calls.trusted_peers: at least one address when a listener is set".into());
        }
        p
    }
}

/// Why the call router could not start.
#[derive(Debug, thiserror::Error)]
pub enum CallsError {
    /// The SIP stack could not start.
    #[error(transparent)]
    Stack(#[from] StackError),
    /// The ng control socket toward rtpengine could not be opened.
    #[error("rtpengine ng client: {0}")]
    Rtpengine(#[from] tincan_sip_core::rtpengine::NgError),
    /// The run could not be registered in the database.
    #[error("calls: storage: {0}")]
    Storage(#[from] crate::storage::StorageError),
    /// The spool directory (`calls.spool_dir`) is unset or cannot be used.
    #[error("calls: spool directory {path:?}: {source}")]
    Spool {
        /// The directory.
        path: Option<std::path::PathBuf>,
        /// Why.
        source: std::io::Error,
    },
}

/// The call router: the SIP stack, the ledger it charges through, and the calls in flight per carrier.
pub struct Switch {
    ledger: Arc<Ledger>,
    charging: LocalCharging,
    stack: Arc<dyn SipStack>,
    /// rtpengine's ng client, when media is anchored.
    ng: Option<NgClient>,
    config: CallsConfig,
    in_flight: Mutex<HashMap<String, i32>>,
    breakers: Mutex<breaker::Breakers>,
    /// This process's prefix for call ids (random), so keys of two runs never meet.
    run_id: String,
    next: AtomicU64,
    /// Client nonces for digest answers to carriers.
    cnonces: Mutex<rand::rngs::StdRng>,
    /// The calls in progress as the database knows them.
    live: Arc<live::Live>,
    /// What the database did not take in time, kept on disk until it does.
    spool: spool::Spool,
}

impl std::fmt::Debug for Switch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Switch").field("stack", &self.stack).finish_non_exhaustive()
    }
}

impl Switch {
    /// Opens the SIP listeners and starts routing calls; runs until the returned handle is aborted or the
    /// stack stops.
    pub async fn start(
        ledger: Arc<Ledger>,
        config: CallsConfig,
        rng: &mut impl rand::RngCore,
    ) -> Result<(Arc<Switch>, tokio::task::JoinHandle<()>), CallsError> {
        let mut listen = Vec::new();
        if let Some(addr) = config.listen_udp {
            listen.push(Target { transport: Transport::Udp, addr });
        }
        if let Some(addr) = config.listen_tcp {
            listen.push(Target { transport: Transport::Tcp, addr });
        }
        let stack_config = StackConfig { listen, per_source_rate: config.per_source_rate, ..StackConfig::default() };
        let (stack, incoming) = RsipStack::start(stack_config).await?;
        let ng = match config.rtpengine {
            Some(addr) => {
                let ng = NgClient::new(addr, NgTiming::default(), rng).await?;
                // Not fatal: rtpengine may come up later; until then calls are refused 503.
                if let Err(e) = ng.ping().await {
                    tracing::warn!(error = %e, %addr, "rtpengine does not answer ng ping yet");
                }
                Some(ng)
            }
            None => None,
        };
        let spool = match config.spool_dir.clone() {
            Some(path) => spool::Spool::open(path.clone(), ledger.clock().clone())
                .map_err(|source| CallsError::Spool { path: Some(path), source })?,
            None => {
                let source = std::io::Error::other("calls.spool_dir is not set");
                return Err(CallsError::Spool { path: None, source });
            }
        };
        let mut id = [0u8; 6];
        rng.fill_bytes(&mut id);
        let run_id = hex::encode(id);
        let node = config.node_name();
        let live = live::Live::start(ledger.storage().clone(), ledger.clock().clone(), run_id.clone(), &node).await?;
        let breakers = breaker::Breakers::new(
            config.breaker_failures,
            std::time::Duration::from_secs(u64::from(config.breaker_cooldown_secs)),
        );
        let switch = Arc::new(Switch {
            charging: ledger.charging(PRINCIPAL),
            ledger,
            stack,
            ng,
            config,
            in_flight: Mutex::default(),
            breakers: Mutex::new(breakers),
            run_id,
            next: AtomicU64::new(1),
            cnonces: Mutex::new(rand::SeedableRng::from_rng(rng)),
            live,
            spool,
        });
        // The calls an earlier process of this node left when it died: settled from what it had confirmed. Then
        // the watch for other nodes gone silent, whose calls this node takes over.
        let sw = switch.clone();
        tokio::spawn(async move {
            // First what the spool kept (a call that ended during an outage keeps its own record, not one made
            // from its last heartbeat), then the calls of earlier runs.
            while !sw.replay_spool().await {
                tokio::time::sleep(SPOOL_EVERY).await;
            }
            let spooler = Arc::downgrade(&sw);
            tokio::spawn(async move {
                for tick in 0u64.. {
                    tokio::time::sleep(SPOOL_EVERY).await;
                    let Some(sw) = spooler.upgrade() else { return };
                    sw.replay_spool().await;
                    if tick % 60 == 0 {
                        sw.prune_dialogs().await;
                    }
                }
            });
            match live::recover(&sw, &node).await {
                Ok(r) => tracing::info!(?r, "calls of earlier runs settled"),
                Err(e) => {
                    tracing::error!(error = %e, "settling the calls of earlier runs failed; retried on next start")
                }
            }
            let weak = Arc::downgrade(&sw);
            drop(sw);
            live::watch(weak).await;
        });
        let task = tokio::spawn(switch.clone().run(incoming));
        Ok((switch, task))
    }

    /// Where the SIP side listens.
    pub fn listeners(&self) -> Vec<Target> {
        self.stack.listeners()
    }

    async fn run(self: Arc<Self>, mut incoming: mpsc::Receiver<Incoming>) {
        while let Some(what) = incoming.recv().await {
            match what {
                Incoming::Call(leg, events) => {
                    tokio::spawn(call::handle(self.clone(), leg, events));
                }
                Incoming::Request(req) => {
                    // Keep-alive probes are answered (503 once this run was taken over, so that a dispatcher
                    // sends no more calls here); the router takes nothing else outside calls.
                    if req.request.method == tincan_sip_core::stack::Method::Options {
                        if self.live.taken_over() {
                            req.reply(503, "Service Unavailable");
                        } else {
                            req.reply(200, "OK");
                        }
                    } else {
                        req.reply(405, "Method Not Allowed");
                    }
                }
            }
        }
    }

    /// Keeps `entry` in the spool (flushed to disk before this returns) and marks its call as having spooled.
    async fn keep(&self, entry: &spool::Entry, spooled: &std::sync::atomic::AtomicBool) {
        spooled.store(true, Ordering::Relaxed);
        if let Err(e) = self.spool.put(entry).await {
            tracing::error!(error = %e, ?entry, "a call step could not be spooled either: it is lost");
        }
    }

    /// Forgets the SIP dialogs of calls started long enough ago that no copy of their INVITE can still come:
    /// an hour beyond the longest set-up and the takeover time (a node stalled longer is fenced by its run).
    async fn prune_dialogs(&self) {
        let keep_secs = 3600 + i64::from(self.config.setup_timeout_secs) + i64::from(self.config.takeover_after_secs);
        let before = crate::storage::unix_ms(self.ledger.clock().now()) - keep_secs * 1000;
        let pruned = async {
            let mut tx = self.ledger.storage().begin().await?;
            let n = tx.live_calls().prune_dialogs(before).await?;
            tx.commit().await?;
            Ok::<_, crate::storage::StorageError>(n)
        };
        match pruned.await {
            Ok(0) => {}
            Ok(n) => tracing::debug!(n, "old SIP dialogs forgotten"),
            Err(e) => tracing::warn!(error = %e, "forgetting old SIP dialogs failed; tried again later"),
        }
    }

    /// Replays the spool; whether it is empty now.
    async fn replay_spool(&self) -> bool {
        match self.spool.replay(&**self.ledger.storage(), &self.charging).await {
            Ok(r) => r.waiting == 0,
            Err(e) => {
                tracing::error!(error = %e, "reading the call spool failed");
                false
            }
        }
    }

    fn call_id(&self) -> String {
        format!("{}-{}", self.run_id, self.next.fetch_add(1, Ordering::Relaxed))
    }

    /// A fresh client nonce (16 random bytes, hex) for a digest answer.
    fn cnonce(&self) -> String {
        let mut b = [0u8; 16];
        rand::RngCore::fill_bytes(&mut *self.cnonces.lock().expect("cnonce lock"), &mut b);
        hex::encode(b)
    }

    /// Whether the carrier's breaker lets a call through now.
    fn breaker_allows(&self, carrier: &str) -> bool {
        self.breakers.lock().expect("breaker lock").allow(carrier, std::time::Instant::now())
    }

    /// Records how an attempt on the carrier went.
    fn breaker_finish(&self, carrier: &str, verdict: breaker::Verdict) {
        self.breakers.lock().expect("breaker lock").finish(carrier, verdict, std::time::Instant::now());
    }

    /// Takes one of the carrier's call slots; `None` when it carries its most calls already.
    fn take_slot(self: &Arc<Self>, carrier: &str, max: i32) -> Option<Slot> {
        let mut m = self.in_flight.lock().expect("in-flight lock");
        let n = m.entry(carrier.to_owned()).or_insert(0);
        if *n >= max {
            return None;
        }
        *n += 1;
        Some(Slot { switch: self.clone(), carrier: carrier.to_owned() })
    }
}

/// A call slot on a carrier, given back when dropped.
struct Slot {
    switch: Arc<Switch>,
    carrier: String,
}

impl Drop for Slot {
    fn drop(&mut self) {
        if let Some(n) = self.switch.in_flight.lock().expect("in-flight lock").get_mut(&self.carrier) {
            *n -= 1;
        }
    }
}
