//! Serves [`Zones`] over UDP and TCP (RFC 7766: length-prefixed, several queries per connection, idle timeout),
//! with response rate limiting on UDP and a periodic signature refresher.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::task::JoinSet;

use super::answer::{MAX_UDP_PAYLOAD, Transport, answer_budgeted, answer_in, slip_reply};
use super::budget::{SigningBudget, SigningBudgetConfig};
use super::rrl::{RateLimiter, RrlConfig, Verdict};
use super::wire::rtype;
use super::zones::Zones;

/// Server settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    /// Threads receiving on the UDP socket; 0 (the default): one per available core.
    pub udp_workers: usize,
    /// A TCP connection idle this long (milliseconds) is closed.
    pub tcp_idle_timeout_ms: u64,
    /// TCP connections served at once; more wait in the listen queue.
    pub tcp_max_connections: usize,
    /// How often (seconds) signatures nearing expiry are re-made.
    pub refresh_interval_secs: u64,
    /// Response rate limiting (UDP).
    pub rrl: RrlConfig,
    /// Online signatures per second for UDP denials, across all clients (see [`SigningBudget`]).
    pub signing_budget: SigningBudgetConfig,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            udp_workers: 0,
            tcp_idle_timeout_ms: 10_000,
            tcp_max_connections: 256,
            refresh_interval_secs: 60,
            rrl: RrlConfig::default(),
            signing_budget: SigningBudgetConfig::default(),
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

/// One set of counters, on cache lines of its own.
#[derive(Debug, Default)]
#[repr(align(128))]
struct Counters {
    udp_queries: AtomicU64,
    tcp_queries: AtomicU64,
    dropped: AtomicU64,
    truncated: AtomicU64,
    rrl_dropped: AtomicU64,
    rrl_slipped: AtomicU64,
    signing_budget_exceeded: AtomicU64,
    by_qtype: [AtomicU64; COUNTED_TYPES.len() + 1],
    by_rcode: [AtomicU64; 17],
}

/// Counter sets; each thread counts into one of them (by a per-thread index), so threads answering at the same
/// time never write the same cache line, and a snapshot adds them up.
const SHARDS: usize = 8;

/// Query counters, read through [`Metrics::snapshot`].
#[derive(Debug, Default)]
pub struct Metrics {
    shards: [Counters; SHARDS],
}

/// Which counter set this thread writes.
fn shard_index() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static INDEX: usize = NEXT.fetch_add(1, Ordering::Relaxed) % SHARDS;
    }
    INDEX.with(|i| *i)
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
    /// UDP denials answered truncated because the signing budget was spent.
    pub signing_budget_exceeded: u64,
    /// Queries by type name (`other` for the rest).
    pub by_qtype: Vec<(String, u64)>,
    /// Answers by numeric response code.
    pub by_rcode: Vec<(u16, u64)>,
}

/// A counter of [`Metrics`].
#[derive(Debug, Clone, Copy)]
pub(crate) enum Counter {
    UdpQueries,
    TcpQueries,
    Dropped,
    Truncated,
    RrlDropped,
    RrlSlipped,
    SigningBudgetExceeded,
}

impl Counters {
    fn counter(&self, c: Counter) -> &AtomicU64 {
        match c {
            Counter::UdpQueries => &self.udp_queries,
            Counter::TcpQueries => &self.tcp_queries,
            Counter::Dropped => &self.dropped,
            Counter::Truncated => &self.truncated,
            Counter::RrlDropped => &self.rrl_dropped,
            Counter::RrlSlipped => &self.rrl_slipped,
            Counter::SigningBudgetExceeded => &self.signing_budget_exceeded,
        }
    }
}

impl Metrics {
    fn mine(&self) -> &Counters {
        &self.shards[shard_index()]
    }

    /// Adds one to `c`.
    pub(crate) fn add(&self, c: Counter) {
        self.mine().counter(c).fetch_add(1, Ordering::Relaxed);
    }

    fn count(&self, qtype: u16, rcode: u16) {
        let i = COUNTED_TYPES.iter().position(|(t, _)| *t == qtype).unwrap_or(COUNTED_TYPES.len());
        let mine = self.mine();
        mine.by_qtype[i].fetch_add(1, Ordering::Relaxed);
        mine.by_rcode[usize::from(rcode).min(16)].fetch_add(1, Ordering::Relaxed);
    }

    fn sum(&self, f: impl Fn(&Counters) -> &AtomicU64) -> u64 {
        self.shards.iter().map(|s| f(s).load(Ordering::Relaxed)).sum()
    }

    /// Answers given with response code `rcode`.
    pub fn rcode(&self, rcode: u16) -> u64 {
        self.sum(|s| &s.by_rcode[usize::from(rcode).min(16)])
    }

    /// The counters now.
    pub fn snapshot(&self) -> MetricsSnapshot {
        let c = |c: Counter| self.sum(|s| s.counter(c));
        let names = COUNTED_TYPES.iter().map(|(_, n)| *n).chain(["other"]);
        MetricsSnapshot {
            udp_queries: c(Counter::UdpQueries),
            tcp_queries: c(Counter::TcpQueries),
            dropped: c(Counter::Dropped),
            truncated: c(Counter::Truncated),
            rrl_dropped: c(Counter::RrlDropped),
            rrl_slipped: c(Counter::RrlSlipped),
            signing_budget_exceeded: c(Counter::SigningBudgetExceeded),
            by_qtype: names.enumerate().map(|(i, n)| (n.to_owned(), self.sum(|s| &s.by_qtype[i]))).collect(),
            by_rcode: (0..17u16).map(|c| (c, self.rcode(c))).filter(|(_, n)| *n > 0).collect(),
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
    let context = UdpContext {
        zones: zones.clone(),
        metrics: metrics.clone(),
        rrl: RateLimiter::new(config.rrl.clone()),
        budget: SigningBudget::new(&config.signing_budget),
        started: Instant::now(),
        interceptor: interceptor.clone(),
        runtime: tokio::runtime::Handle::current(),
    };
    let udp_workers = UdpWorkers::start(udp, udp_worker_count(config.udp_workers), context)?;
    let mut tasks = JoinSet::new();
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
    // Joining takes as long as the slowest worker's current answer.
    let _ = tokio::task::spawn_blocking(move || drop(udp_workers)).await;
    result
}

fn is_transient(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::*;
    matches!(e.kind(), ConnectionAborted | ConnectionReset | Interrupted | WouldBlock) || e.raw_os_error() == Some(24)
}

/// What every UDP worker thread answers with.
struct UdpContext {
    zones: Arc<Zones>,
    metrics: Arc<Metrics>,
    rrl: RateLimiter,
    budget: SigningBudget,
    started: Instant,
    interceptor: Option<Arc<dyn Interceptor>>,
    /// Where intercepted requests are handled (they are async).
    runtime: tokio::runtime::Handle,
}

/// The UDP side: `n` OS threads blocking in `recv_from` on the one socket (no reactor round trip per packet; the
/// kernel hands each datagram to one waiting thread). Stopping wakes them by shutting the socket's receive side,
/// and joins them, so the socket is closed when this is dropped (also when the server's future is dropped).
struct UdpWorkers {
    socket: Arc<std::net::UdpSocket>,
    stop: Arc<AtomicBool>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

/// Upper bound on how long a worker can miss the stop signal where shutting the socket does not wake it.
const UDP_WAKE_INTERVAL: Duration = Duration::from_millis(250);

impl UdpWorkers {
    fn start(socket: UdpSocket, workers: usize, context: UdpContext) -> std::io::Result<UdpWorkers> {
        let socket = socket.into_std()?;
        socket.set_nonblocking(false)?;
        socket.set_read_timeout(Some(UDP_WAKE_INTERVAL))?;
        let socket = Arc::new(socket);
        let stop = Arc::new(AtomicBool::new(false));
        let context = Arc::new(context);
        let mut this = UdpWorkers { socket, stop, threads: Vec::with_capacity(workers) };
        for i in 0..workers {
            let (socket, stop, context) = (this.socket.clone(), this.stop.clone(), context.clone());
            let thread = std::thread::Builder::new()
                .name(format!("dns-udp-{i}"))
                .spawn(move || udp_worker(&socket, &stop, &context))?;
            this.threads.push(thread);
        }
        Ok(this)
    }
}

impl Drop for UdpWorkers {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // On Linux this wakes every thread blocked in recv_from at once; elsewhere the read timeout does.
        let _ = rustix::net::shutdown(&*self.socket, rustix::net::Shutdown::Read);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// The number of UDP workers for a configured `n` (0: one per available core).
fn udp_worker_count(n: usize) -> usize {
    match n {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
        n => n,
    }
}

fn udp_worker(socket: &Arc<std::net::UdpSocket>, stop: &AtomicBool, cx: &UdpContext) {
    let mut buf = vec![0u8; 65_535];
    // The response buffer goes out with each answer and comes back to be reused.
    let mut out = Vec::with_capacity(usize::from(MAX_UDP_PAYLOAD));
    while !stop.load(Ordering::Relaxed) {
        let (n, peer): (usize, SocketAddr) = match socket.recv_from(&mut buf) {
            Ok(v) => v,
            Err(e) => {
                if !matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) {
                    tracing::debug!(error = %e, "DNS UDP receive failed");
                }
                continue;
            }
        };
        if stop.load(Ordering::Relaxed) {
            break;
        }
        cx.metrics.add(Counter::UdpQueries);
        let request = &buf[..n];
        if let Some(i) = cx.interceptor.as_ref().filter(|i| i.wants(request, Transport::Udp)) {
            let (i, socket, request) = (i.clone(), socket.clone(), request.to_vec());
            cx.runtime.spawn(async move {
                let (tx, mut rx) = tokio::sync::mpsc::channel(1);
                tokio::spawn(async move { i.handle(request, peer, Transport::Udp, tx).await });
                if let Some(reply) = rx.recv().await {
                    let _ = socket.send_to(&reply, peer);
                }
            });
            continue;
        }
        // Rate limiting depends only on the client and the clock: decide before answering, so a limited
        // client's queries cost no answer work (a denial's online signature above all).
        let reply = match cx.rrl.check(peer.ip(), cx.started.elapsed()) {
            Verdict::Send => {
                let buf = std::mem::take(&mut out);
                let Some(a) = answer_budgeted(&cx.zones, request, Transport::Udp, Some(&cx.budget), buf) else {
                    cx.metrics.add(Counter::Dropped);
                    continue;
                };
                cx.metrics.count(a.qtype, a.rcode.code());
                if a.over_budget {
                    cx.metrics.add(Counter::SigningBudgetExceeded);
                } else if a.truncated {
                    cx.metrics.add(Counter::Truncated);
                }
                out = a.bytes;
                &out
            }
            Verdict::Slip => {
                cx.metrics.add(Counter::RrlSlipped);
                match slip_reply(request) {
                    Some(b) => {
                        out = b;
                        &out
                    }
                    None => continue,
                }
            }
            Verdict::Drop => {
                cx.metrics.add(Counter::RrlDropped);
                continue;
            }
        };
        if let Err(e) = socket.send_to(reply, peer) {
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
        metrics.add(Counter::TcpQueries);
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
        let Some(a) = answer_in(&zones, &buf, Transport::Tcp, Vec::new()) else {
            metrics.add(Counter::Dropped);
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
