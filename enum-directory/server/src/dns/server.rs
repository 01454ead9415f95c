//! Serves [`Zones`] over UDP and TCP (RFC 7766: length-prefixed, several queries per connection, idle timeout),
//! with response rate limiting on UDP and a periodic signature refresher.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::task::JoinSet;

use super::answer::{Transport, answer_detailed, slip_reply};
use super::rrl::{RateLimiter, RrlConfig, Verdict};
use super::wire::rtype;
use super::zones::Zones;

/// Server settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    /// Tasks receiving on the UDP socket.
    pub udp_workers: usize,
    /// A TCP connection idle this long (milliseconds) is closed.
    pub tcp_idle_timeout_ms: u64,
    /// TCP connections served at once; more wait in the listen queue.
    pub tcp_max_connections: usize,
    /// How often (seconds) signatures nearing expiry are re-made.
    pub refresh_interval_secs: u64,
    /// Response rate limiting (UDP).
    pub rrl: RrlConfig,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            udp_workers: 2,
            tcp_idle_timeout_ms: 10_000,
            tcp_max_connections: 256,
            refresh_interval_secs: 60,
            rrl: RrlConfig::default(),
        }
    }
}

/// Why the server stopped.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// Accepting TCP connections failed.
    #[error("DNS listener failed: {0}")]
    Io(#[from] std::io::Error),
}

/// Query types counted separately; the rest go to `other`.
const COUNTED_TYPES: [(u16, &str); 8] = [
    (1, "A"),
    (rtype::NS, "NS"),
    (rtype::SOA, "SOA"),
    (rtype::TXT, "TXT"),
    (28, "AAAA"),
    (rtype::NAPTR, "NAPTR"),
    (rtype::DNSKEY, "DNSKEY"),
    (rtype::ANY, "ANY"),
];

/// Counters, plain atomics (the API engineer can expose them).
#[derive(Debug, Default)]
pub struct Metrics {
    /// Queries received over UDP.
    pub udp_queries: AtomicU64,
    /// Queries received over TCP.
    pub tcp_queries: AtomicU64,
    /// Requests dropped unanswered (not a query, or too short).
    pub dropped: AtomicU64,
    /// UDP answers truncated for size.
    pub truncated: AtomicU64,
    /// Answers withheld by rate limiting.
    pub rrl_dropped: AtomicU64,
    /// Answers replaced by a truncated one by rate limiting.
    pub rrl_slipped: AtomicU64,
    by_qtype: [AtomicU64; COUNTED_TYPES.len() + 1],
    by_rcode: [AtomicU64; 17],
}

/// A copy of the counters.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct MetricsSnapshot {
    /// Queries over UDP.
    pub udp_queries: u64,
    /// Queries over TCP.
    pub tcp_queries: u64,
    /// Dropped requests.
    pub dropped: u64,
    /// Truncated UDP answers.
    pub truncated: u64,
    /// Rate-limited, dropped.
    pub rrl_dropped: u64,
    /// Rate-limited, slipped.
    pub rrl_slipped: u64,
    /// Queries by type name (`other` for the rest).
    pub by_qtype: Vec<(String, u64)>,
    /// Answers by numeric response code.
    pub by_rcode: Vec<(u16, u64)>,
}

impl Metrics {
    fn count(&self, qtype: u16, rcode: u16) {
        let i = COUNTED_TYPES.iter().position(|(t, _)| *t == qtype).unwrap_or(COUNTED_TYPES.len());
        self.by_qtype[i].fetch_add(1, Ordering::Relaxed);
        self.by_rcode[usize::from(rcode).min(16)].fetch_add(1, Ordering::Relaxed);
    }

    /// Answers given with response code `rcode`.
    pub fn rcode(&self, rcode: u16) -> u64 {
        self.by_rcode[usize::from(rcode).min(16)].load(Ordering::Relaxed)
    }

    /// The counters now.
    pub fn snapshot(&self) -> MetricsSnapshot {
        let l = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let names = COUNTED_TYPES.iter().map(|(_, n)| *n).chain(["other"]);
        MetricsSnapshot {
            udp_queries: l(&self.udp_queries),
            tcp_queries: l(&self.tcp_queries),
            dropped: l(&self.dropped),
            truncated: l(&self.truncated),
            rrl_dropped: l(&self.rrl_dropped),
            rrl_slipped: l(&self.rrl_slipped),
            by_qtype: names.zip(self.by_qtype.iter()).map(|(n, a)| (n.to_owned(), l(a))).collect(),
            by_rcode: (0..17u16).zip(self.by_rcode.iter()).filter(|(_, a)| l(a) > 0).map(|(c, a)| (c, l(a))).collect(),
        }
    }
}

/// Takes over the requests it wants (zone transfers, TSIG-signed queries) from the answering engine.
#[async_trait::async_trait]
pub trait Interceptor: Send + Sync + 'static {
    /// Whether this request is the interceptor's to answer (cheap: called for every request).
    fn wants(&self, request: &[u8], transport: Transport) -> bool;
    /// Answers `request` with zero or more messages sent on `out` (over UDP only the first is sent).
    async fn handle(
        &self,
        request: Vec<u8>,
        peer: SocketAddr,
        transport: Transport,
        out: tokio::sync::mpsc::Sender<Vec<u8>>,
    );
}

/// Serves `zones` on `udp` and `tcp` until `shutdown` resolves.
pub async fn run(
    zones: Arc<Zones>,
    udp: UdpSocket,
    tcp: TcpListener,
    config: ServerConfig,
    metrics: Arc<Metrics>,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), ServerError> {
    run_with(zones, udp, tcp, config, metrics, None, shutdown).await
}

/// [`run`], with an [`Interceptor`] taking the requests it wants.
pub async fn run_with(
    zones: Arc<Zones>,
    udp: UdpSocket,
    tcp: TcpListener,
    config: ServerConfig,
    metrics: Arc<Metrics>,
    interceptor: Option<Arc<dyn Interceptor>>,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), ServerError> {
    let udp = Arc::new(udp);
    let rrl = Arc::new(RateLimiter::new(config.rrl.clone()));
    let started = Instant::now();
    let mut tasks = JoinSet::new();
    for _ in 0..config.udp_workers.max(1) {
        tasks.spawn(udp_loop(zones.clone(), udp.clone(), metrics.clone(), rrl.clone(), started, interceptor.clone()));
    }
    tasks.spawn(refresher(zones.clone(), Duration::from_secs(config.refresh_interval_secs.max(1))));
    let limit = Arc::new(tokio::sync::Semaphore::new(config.tcp_max_connections.max(1)));
    let idle = Duration::from_millis(config.tcp_idle_timeout_ms.max(1));
    let accept = async {
        loop {
            let permit = limit.clone().acquire_owned().await.expect("the semaphore is never closed");
            let (stream, _) = match tcp.accept().await {
                Ok(v) => v,
                Err(e) if is_transient(&e) => {
                    tracing::warn!(error = %e, "DNS TCP accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
                Err(e) => return Err::<(), _>(ServerError::Io(e)),
            };
            let (zones, metrics, interceptor) = (zones.clone(), metrics.clone(), interceptor.clone());
            tokio::spawn(async move {
                tcp_connection(zones, stream, metrics, idle, interceptor).await;
                drop(permit);
            });
        }
    };
    let result = tokio::select! {
        r = accept => r,
        () = shutdown => Ok(()),
    };
    tasks.shutdown().await;
    result
}

fn is_transient(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::*;
    matches!(e.kind(), ConnectionAborted | ConnectionReset | Interrupted | WouldBlock) || e.raw_os_error() == Some(24)
}

async fn udp_loop(
    zones: Arc<Zones>,
    udp: Arc<UdpSocket>,
    metrics: Arc<Metrics>,
    rrl: Arc<RateLimiter>,
    started: Instant,
    interceptor: Option<Arc<dyn Interceptor>>,
) {
    let mut buf = vec![0u8; 65_535];
    loop {
        let (n, peer): (usize, SocketAddr) = match udp.recv_from(&mut buf).await {
            Ok(v) => v,
            Err(e) => {
                tracing::debug!(error = %e, "DNS UDP receive failed");
                continue;
            }
        };
        metrics.udp_queries.fetch_add(1, Ordering::Relaxed);
        let request = &buf[..n];
        if let Some(i) = interceptor.as_ref().filter(|i| i.wants(request, Transport::Udp)) {
            let (i, udp, request) = (i.clone(), udp.clone(), request.to_vec());
            tokio::spawn(async move {
                let (tx, mut rx) = tokio::sync::mpsc::channel(1);
                tokio::spawn(async move { i.handle(request, peer, Transport::Udp, tx).await });
                if let Some(reply) = rx.recv().await {
                    let _ = udp.send_to(&reply, peer).await;
                }
            });
            continue;
        }
        let Some(a) = answer_detailed(&zones, request, Transport::Udp) else {
            metrics.dropped.fetch_add(1, Ordering::Relaxed);
            continue;
        };
        metrics.count(a.qtype, a.rcode.code());
        if a.truncated {
            metrics.truncated.fetch_add(1, Ordering::Relaxed);
        }
        let reply = match rrl.check(peer.ip(), started.elapsed()) {
            Verdict::Send => a.bytes,
            Verdict::Slip => {
                metrics.rrl_slipped.fetch_add(1, Ordering::Relaxed);
                match slip_reply(request) {
                    Some(b) => b,
                    None => continue,
                }
            }
            Verdict::Drop => {
                metrics.rrl_dropped.fetch_add(1, Ordering::Relaxed);
                continue;
            }
        };
        if let Err(e) = udp.send_to(&reply, peer).await {
            tracing::debug!(error = %e, "DNS UDP send failed");
        }
    }
}

async fn tcp_connection(
    zones: Arc<Zones>,
    mut stream: TcpStream,
    metrics: Arc<Metrics>,
    idle: Duration,
    interceptor: Option<Arc<dyn Interceptor>>,
) {
    let peer = match stream.peer_addr() {
        Ok(p) => p,
        Err(_) => return,
    };
    let mut buf = Vec::new();
    loop {
        let len = match tokio::time::timeout(idle, stream.read_u16()).await {
            Ok(Ok(len)) => usize::from(len),
            _ => return,
        };
        buf.resize(len, 0);
        match tokio::time::timeout(idle, stream.read_exact(&mut buf)).await {
            Ok(Ok(_)) => {}
            _ => return,
        }
        metrics.tcp_queries.fetch_add(1, Ordering::Relaxed);
        if let Some(i) = interceptor.as_ref().filter(|i| i.wants(&buf, Transport::Tcp)) {
            let (tx, mut rx) = tokio::sync::mpsc::channel(8);
            let (i, request) = (i.clone(), buf.clone());
            let handler = tokio::spawn(async move { i.handle(request, peer, Transport::Tcp, tx).await });
            while let Some(m) = rx.recv().await {
                let mut out = Vec::with_capacity(m.len() + 2);
                out.extend_from_slice(&(m.len() as u16).to_be_bytes());
                out.extend_from_slice(&m);
                if stream.write_all(&out).await.is_err() {
                    handler.abort();
                    return;
                }
            }
            continue;
        }
        let Some(a) = answer_detailed(&zones, &buf, Transport::Tcp) else {
            metrics.dropped.fetch_add(1, Ordering::Relaxed);
            return;
        };
        metrics.count(a.qtype, a.rcode.code());
        let mut out = Vec::with_capacity(a.bytes.len() + 2);
        out.extend_from_slice(&(a.bytes.len() as u16).to_be_bytes());
        out.extend_from_slice(&a.bytes);
        if stream.write_all(&out).await.is_err() {
            return;
        }
    }
}

async fn refresher(zones: Arc<Zones>, every: Duration) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        for zone in zones.all().iter() {
            let z = zone.clone();
            // Signing a large zone is CPU work: keep it off the query tasks' threads.
            match tokio::task::spawn_blocking(move || z.refresh()).await {
                Ok(Ok(0)) => {}
                Ok(Ok(n)) => tracing::info!(apex = %zone.apex_name(), signed = n, "signatures refreshed"),
                Ok(Err(e)) => tracing::error!(apex = %zone.apex_name(), error = %e, "signature refresh failed"),
                Err(e) => tracing::error!(error = %e, "signature refresh task failed"),
            }
        }
    }
}
