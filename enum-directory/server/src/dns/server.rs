//! Serves [`Zones`] over UDP and TCP (RFC 7766: length-prefixed, several queries per connection, idle timeout),
//! with response rate limiting on UDP, one signing budget for both, caps per TCP client and connection, and a
//! periodic signature refresher.
//!
//! TCP is served by a tokio runtime of its own (`tcp_workers` threads, default 1), apart from the runtime the
//! registrar API and the rest of the process run on: a flood of TCP queries for names that do not exist (each
//! costing an online signature) then takes at most those threads, and registrar writes keep their latency.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::task::JoinSet;

use super::answer::{MAX_UDP_PAYLOAD, Transport, answer_budgeted, slip_reply};
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
    /// Datagrams a UDP worker receives (`recvmmsg`) and answers (`sendmmsg`) per system call at most, on Linux;
    /// 0 or 1: one `recv_from` and one `send_to` per query (as on other systems). At most 64.
    pub udp_batch: usize,
    /// On Linux, a UDP socket per worker (all bound to the address with `SO_REUSEPORT`); false: one shared.
    pub udp_socket_per_worker: bool,
    /// A TCP connection idle this long (milliseconds) is closed.
    pub tcp_idle_timeout_ms: u64,
    /// TCP connections served at once; more wait in the listen queue.
    pub tcp_max_connections: usize,
    /// TCP connections one client (an IPv4 address, an IPv6 /64) may have open at once; more are closed at once.
    pub tcp_max_connections_per_client: usize,
    /// Queries answered on one TCP connection; after that many it is closed (the client reconnects).
    pub tcp_max_queries_per_connection: usize,
    /// Threads of the runtime serving TCP (its own, apart from the registrar API's); 0: 1.
    pub tcp_workers: usize,
    /// How often (seconds) signatures nearing expiry are re-made.
    pub refresh_interval_secs: u64,
    /// Response rate limiting (UDP).
    pub rrl: RrlConfig,
    /// Online signatures per second for denials, across all clients, UDP and TCP (see [`SigningBudget`]).
    pub signing_budget: SigningBudgetConfig,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            udp_workers: 0,
            udp_batch: 32,
            udp_socket_per_worker: true,
            tcp_idle_timeout_ms: 10_000,
            tcp_max_connections: 256,
            tcp_max_connections_per_client: 16,
            tcp_max_queries_per_connection: 1000,
            tcp_workers: 1,
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
    tcp_refused: AtomicU64,
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
    /// Denials the signing budget had no signature left for: truncated over UDP, SERVFAIL over TCP.
    pub signing_budget_exceeded: u64,
    /// TCP connections closed at once because their client had `tcp_max_connections_per_client` open.
    pub tcp_refused: u64,
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
    TcpRefused,
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
            Counter::TcpRefused => &self.tcp_refused,
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
            tcp_refused: c(Counter::TcpRefused),
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
    let budget = SigningBudget::new(&config.signing_budget);
    let context = UdpContext {
        zones: zones.clone(),
        metrics: metrics.clone(),
        rrl: RateLimiter::new(config.rrl.clone()),
        budget: budget.clone(),
        started: Instant::now(),
        interceptor: interceptor.clone(),
        runtime: tokio::runtime::Handle::current(),
    };
    let udp_workers = UdpWorkers::start(udp, &config, context)?;
    let mut tasks = JoinSet::new();
    tasks.spawn(refresher(zones.clone(), Duration::from_secs(config.refresh_interval_secs.max(1))));
    let tcp_runtime = TcpRuntime::start(config.tcp_workers)?;
    let served = Arc::new(TcpContext {
        zones,
        metrics,
        interceptor,
        budget: budget.tcp(),
        idle: Duration::from_millis(config.tcp_idle_timeout_ms.max(1)),
        max_queries: config.tcp_max_queries_per_connection.max(1),
        main: tokio::runtime::Handle::current(),
    });
    let clients = Arc::new(TcpClients::new(config.tcp_max_connections_per_client.max(1)));
    let limit = Arc::new(tokio::sync::Semaphore::new(config.tcp_max_connections.max(1)));
    // The listener moves to the TCP runtime's reactor: accepting, reading and answering all happen there.
    let tcp = tcp.into_std()?;
    let listener = {
        let _inside = tcp_runtime.handle().enter();
        TcpListener::from_std(tcp)?
    };
    let accept = tcp_runtime.handle().spawn(async move {
        loop {
            let permit = limit.clone().acquire_owned().await.expect("the semaphore is never closed");
            let (stream, peer) = match listener.accept().await {
                Ok(v) => v,
                Err(e) if is_transient(&e) => {
                    tracing::warn!(error = %e, "DNS TCP accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
                Err(e) => return Err::<(), _>(ServerError::Io(e)),
            };
            let Some(slot) = clients.open(peer.ip()) else {
                // Over the client's share: closed at once (dropping the stream), its queries unread.
                served.metrics.add(Counter::TcpRefused);
                continue;
            };
            let served = served.clone();
            tokio::spawn(async move {
                tcp_connection(&served, stream, peer).await;
                drop((slot, permit));
            });
        }
    });
    let result = tokio::select! {
        r = accept => r.unwrap_or_else(|e| Err(ServerError::Io(std::io::Error::other(e)))),
        () = shutdown => Ok(()),
    };
    drop(tcp_runtime);
    tasks.shutdown().await;
    // Joining takes as long as the slowest worker's current answer.
    let _ = tokio::task::spawn_blocking(move || drop(udp_workers)).await;
    result
}

/// The runtime serving DNS over TCP, apart from the caller's; dropped (also with the server's future), it stops
/// in the background: its tasks are dropped, which closes the listener and the connections.
struct TcpRuntime(Option<tokio::runtime::Runtime>);

impl TcpRuntime {
    fn start(workers: usize) -> std::io::Result<TcpRuntime> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(workers.max(1))
            .thread_name("dns-tcp")
            .enable_all()
            .build()?;
        Ok(TcpRuntime(Some(runtime)))
    }

    fn handle(&self) -> &tokio::runtime::Handle {
        self.0.as_ref().expect("running until dropped").handle()
    }
}

impl Drop for TcpRuntime {
    fn drop(&mut self) {
        if let Some(runtime) = self.0.take() {
            runtime.shutdown_background();
        }
    }
}

/// What every TCP connection is answered with.
struct TcpContext {
    zones: Arc<Zones>,
    metrics: Arc<Metrics>,
    interceptor: Option<Arc<dyn Interceptor>>,
    /// The TCP view of the signing budget (it may take the reserve).
    budget: SigningBudget,
    idle: Duration,
    max_queries: usize,
    /// Where intercepted requests are handled (zone transfers use storage, which lives on that runtime).
    main: tokio::runtime::Handle,
}

/// Open TCP connections per client (an IPv4 address, an IPv6 /64).
struct TcpClients {
    max: usize,
    open: std::sync::Mutex<std::collections::HashMap<u128, usize>>,
}

/// One connection's place in its client's share; given back on drop.
struct TcpSlot {
    clients: Arc<TcpClients>,
    client: u128,
}

impl TcpClients {
    fn new(max: usize) -> TcpClients {
        TcpClients { max, open: Default::default() }
    }

    fn key(ip: std::net::IpAddr) -> u128 {
        match ip.to_canonical() {
            std::net::IpAddr::V4(v4) => u128::from(u32::from(v4)),
            std::net::IpAddr::V6(v6) => (u128::from(v6) & (u128::MAX << 64)) | 1,
        }
    }

    /// A slot for a new connection from `ip`, unless it has `max` open already.
    fn open(self: &Arc<Self>, ip: std::net::IpAddr) -> Option<TcpSlot> {
        let client = Self::key(ip);
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        let n = open.entry(client).or_insert(0);
        if *n >= self.max {
            return None;
        }
        *n += 1;
        Some(TcpSlot { clients: self.clone(), client })
    }
}

impl Drop for TcpSlot {
    fn drop(&mut self) {
        let mut open = self.clients.open.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = open.get_mut(&self.client) {
            *n -= 1;
            if *n == 0 {
                open.remove(&self.client);
            }
        }
    }
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

/// The UDP side: `n` OS threads blocking in receive (no reactor round trip per packet). On Linux each worker has
/// a socket of its own, all bound to the same address with `SO_REUSEPORT` (the kernel spreads clients over them
/// by address and port, and workers do not contend on one socket's queue), and receives and sends in batches
/// (`recvmmsg`/`sendmmsg`); elsewhere, or if the extra sockets cannot be bound, all workers share the one socket.
/// Stopping wakes them by shutting every socket's receive side, and joins them, so the sockets are closed when
/// this is dropped (also when the server's future is dropped).
struct UdpWorkers {
    sockets: Vec<Arc<std::net::UdpSocket>>,
    stop: Arc<AtomicBool>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

/// Upper bound on how long a worker can miss the stop signal where shutting the socket does not wake it.
const UDP_WAKE_INTERVAL: Duration = Duration::from_millis(250);

impl UdpWorkers {
    fn start(socket: UdpSocket, config: &ServerConfig, context: UdpContext) -> std::io::Result<UdpWorkers> {
        let workers = udp_worker_count(config.udp_workers);
        let batch = config.udp_batch.clamp(1, UDP_MAX_BATCH);
        let socket = socket.into_std()?;
        socket.set_nonblocking(false)?;
        let sockets = if config.udp_socket_per_worker { worker_sockets(socket, workers) } else { vec![socket] };
        for s in &sockets {
            s.set_read_timeout(Some(UDP_WAKE_INTERVAL))?;
        }
        let sockets: Vec<_> = sockets.into_iter().map(Arc::new).collect();
        let stop = Arc::new(AtomicBool::new(false));
        let context = Arc::new(context);
        let mut this = UdpWorkers { sockets, stop, threads: Vec::with_capacity(workers) };
        for i in 0..workers {
            let socket = this.sockets[i % this.sockets.len()].clone();
            let (stop, context) = (this.stop.clone(), context.clone());
            let thread = std::thread::Builder::new()
                .name(format!("dns-udp-{i}"))
                .spawn(move || udp_worker(&socket, &stop, &context, batch))?;
            this.threads.push(thread);
        }
        Ok(this)
    }
}

impl Drop for UdpWorkers {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // On Linux this wakes every thread blocked in receive at once; elsewhere the read timeout does.
        for s in &self.sockets {
            let _ = rustix::net::shutdown(&**s, rustix::net::Shutdown::Read);
        }
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

/// One socket per worker on Linux: `first` and `workers - 1` more bound to its address with `SO_REUSEPORT`
/// (so binding port 0 works: the others take the port the first got). If that fails, the workers share `first`.
#[cfg(target_os = "linux")]
fn worker_sockets(first: std::net::UdpSocket, workers: usize) -> Vec<std::net::UdpSocket> {
    if workers <= 1 {
        return vec![first];
    }
    match reuseport_siblings(&first, workers - 1) {
        Ok(more) => std::iter::once(first).chain(more).collect(),
        Err(e) => {
            let _ = rustix::net::sockopt::set_socket_reuseport(&first, false);
            tracing::warn!(error = %e, "DNS UDP: no socket per worker (SO_REUSEPORT); the workers share one");
            vec![first]
        }
    }
}

#[cfg(not(target_os = "linux"))]
fn worker_sockets(first: std::net::UdpSocket, _workers: usize) -> Vec<std::net::UdpSocket> {
    vec![first]
}

/// `n` UDP sockets bound with `SO_REUSEPORT` to `first`'s address (same family and `IPV6_V6ONLY`), after turning
/// `SO_REUSEPORT` on for `first` too (Linux accepts that on a bound socket and puts them all in one group).
#[cfg(target_os = "linux")]
fn reuseport_siblings(first: &std::net::UdpSocket, n: usize) -> std::io::Result<Vec<std::net::UdpSocket>> {
    use rustix::net::{AddressFamily, SocketFlags, SocketType, sockopt};
    let addr = first.local_addr()?;
    let (family, v6only) = match addr {
        SocketAddr::V4(_) => (AddressFamily::INET, None),
        SocketAddr::V6(_) => (AddressFamily::INET6, Some(sockopt::ipv6_v6only(first)?)),
    };
    sockopt::set_socket_reuseport(first, true)?;
    (0..n)
        .map(|_| {
            let fd = rustix::net::socket_with(family, SocketType::DGRAM, SocketFlags::CLOEXEC, None)?;
            sockopt::set_socket_reuseport(&fd, true)?;
            if let Some(v6only) = v6only {
                sockopt::set_ipv6_v6only(&fd, v6only)?;
            }
            rustix::net::bind(&fd, &addr)?;
            Ok(std::net::UdpSocket::from(fd))
        })
        .collect()
}

/// Answers one UDP request into `out` (whose allocation is reused); whether there is something to send. Counts
/// it; intercepted requests are handed to the runtime, which replies on `socket` itself.
fn respond(
    cx: &UdpContext,
    socket: &Arc<std::net::UdpSocket>,
    request: &[u8],
    peer: SocketAddr,
    out: &mut Vec<u8>,
) -> bool {
    cx.metrics.add(Counter::UdpQueries);
    // Rate limiting depends only on the client and the clock: decide before answering, so a limited client's
    // queries cost no answer work (a denial's online signature above all), and before the interceptor, so
    // TSIG-signed requests (checking a MAC, a warning for a bogus key) are limited like the rest.
    match cx.rrl.check_at(peer.ip(), || cx.started.elapsed()) {
        Verdict::Send => {}
        Verdict::Slip => {
            cx.metrics.add(Counter::RrlSlipped);
            return match slip_reply(request) {
                Some(b) => {
                    *out = b;
                    true
                }
                None => false,
            };
        }
        Verdict::Drop => {
            cx.metrics.add(Counter::RrlDropped);
            return false;
        }
    }
    if let Some(i) = cx.interceptor.as_ref().filter(|i| i.wants(request, Transport::Udp)) {
        let (i, socket, request) = (i.clone(), socket.clone(), request.to_vec());
        cx.runtime.spawn(async move {
            let (tx, mut rx) = tokio::sync::mpsc::channel(1);
            tokio::spawn(async move { i.handle(request, peer, Transport::Udp, tx).await });
            if let Some(reply) = rx.recv().await {
                let _ = socket.send_to(&reply, peer);
            }
        });
        return false;
    }
    let buf = std::mem::take(out);
    let Some(a) = answer_budgeted(&cx.zones, request, Transport::Udp, Some(&cx.budget), buf) else {
        cx.metrics.add(Counter::Dropped);
        return false;
    };
    cx.metrics.count(a.qtype, a.rcode.code());
    if a.over_budget {
        cx.metrics.add(Counter::SigningBudgetExceeded);
    } else if a.truncated {
        cx.metrics.add(Counter::Truncated);
    }
    *out = a.bytes;
    true
}

/// Whether a receive error is only the wake-up timeout.
fn is_wake_timeout(e: &std::io::Error) -> bool {
    matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut)
}

/// The most datagrams per batch ([`ServerConfig::udp_batch`]).
const UDP_MAX_BATCH: usize = 64;

/// One worker: batched on Linux if `batch` > 1, else one datagram at a time.
fn udp_worker(socket: &Arc<std::net::UdpSocket>, stop: &AtomicBool, cx: &UdpContext, batch: usize) {
    #[cfg(target_os = "linux")]
    if batch > 1 {
        return udp_worker_batched(socket, stop, cx, batch);
    }
    let _ = batch;
    udp_worker_single(socket, stop, cx);
}

/// One worker without batching: `recv_from`, answer, `send_to`.
fn udp_worker_single(socket: &Arc<std::net::UdpSocket>, stop: &AtomicBool, cx: &UdpContext) {
    let mut buf = vec![0u8; 65_535];
    // The response buffer goes out with each answer and comes back to be reused.
    let mut out = Vec::with_capacity(usize::from(MAX_UDP_PAYLOAD));
    while !stop.load(Ordering::Relaxed) {
        let (n, peer): (usize, SocketAddr) = match socket.recv_from(&mut buf) {
            Ok(v) => v,
            Err(e) => {
                if !is_wake_timeout(&e) {
                    tracing::debug!(error = %e, "DNS UDP receive failed");
                }
                continue;
            }
        };
        if stop.load(Ordering::Relaxed) {
            break;
        }
        if respond(cx, socket, &buf[..n], peer, &mut out)
            && let Err(e) = socket.send_to(&out, peer)
        {
            tracing::debug!(error = %e, "DNS UDP send failed");
        }
    }
}

/// Bytes per receive slot: any UDP payload, plus two cache lines so the slots' starts do not all fall in the
/// same cache set.
#[cfg(target_os = "linux")]
const UDP_SLOT: usize = 65_535 + 129;

/// One worker, batched: `recvmmsg` with `MSG_WAITFORONE` (blocks for the first datagram, then takes whatever
/// else is already queued, up to `batch`; so at low load each query is answered as soon as it comes), the
/// answers into buffers of their own, then one `sendmmsg` for them all.
#[cfg(target_os = "linux")]
fn udp_worker_batched(socket: &Arc<std::net::UdpSocket>, stop: &AtomicBool, cx: &UdpContext, batch: usize) {
    // Untouched pages of this cost no memory: only the first bytes of each slot are ever written.
    let mut slots = vec![0u8; batch * UDP_SLOT];
    let mut headers = nix::sys::socket::MultiHeaders::<nix::sys::socket::SockaddrStorage>::preallocate(batch, None);
    let mut received = vec![Received::default(); batch];
    // Response buffers go out with each answer and come back to be reused.
    let mut outs: Vec<Vec<u8>> = (0..batch).map(|_| Vec::with_capacity(usize::from(MAX_UDP_PAYLOAD))).collect();
    let mut peers = vec![SocketAddr::from(([0, 0, 0, 0], 0)); batch];
    while !stop.load(Ordering::Relaxed) {
        let n = match receive_batch(socket, &mut headers, &mut slots, &mut received) {
            Ok(n) => n,
            Err(e) => {
                if !is_wake_timeout(&e) {
                    tracing::debug!(error = %e, "DNS UDP receive failed");
                }
                continue;
            }
        };
        if stop.load(Ordering::Relaxed) {
            break;
        }
        let mut ready = 0;
        for (slot, r) in slots.chunks_exact(UDP_SLOT).zip(&received[..n]) {
            // A datagram always has a sender address; a wake-up by shutdown has none.
            let Some(peer) = r.peer else { continue };
            if respond(cx, socket, &slot[..r.len], peer, &mut outs[ready]) {
                peers[ready] = peer;
                ready += 1;
            }
        }
        send_batch(socket, &outs[..ready], &peers[..ready]);
    }
}

/// One datagram of a batch: its length and sender.
#[cfg(target_os = "linux")]
#[derive(Debug, Clone, Copy, Default)]
struct Received {
    len: usize,
    peer: Option<SocketAddr>,
}

/// Receives up to `received.len()` datagrams into `slots` (one per [`UDP_SLOT`]) with one `recvmmsg`, blocking
/// (up to the socket's read timeout) only for the first; fills `received` and returns how many came.
#[cfg(target_os = "linux")]
fn receive_batch(
    socket: &std::net::UdpSocket,
    headers: &mut nix::sys::socket::MultiHeaders<nix::sys::socket::SockaddrStorage>,
    slots: &mut [u8],
    received: &mut [Received],
) -> std::io::Result<usize> {
    use nix::sys::socket::{MsgFlags, SockaddrLike, recvmmsg};
    use std::io::IoSliceMut;
    use std::os::fd::AsRawFd;
    let mut chunks = slots.chunks_exact_mut(UDP_SLOT).take(received.len());
    let mut iovs: [[IoSliceMut<'_>; 1]; UDP_MAX_BATCH] =
        std::array::from_fn(|_| [IoSliceMut::new(chunks.next().unwrap_or_default())]);
    let iovs = &mut iovs[..received.len()];
    let messages = recvmmsg(socket.as_raw_fd(), headers, iovs.iter_mut(), MsgFlags::MSG_WAITFORONE, None)?;
    let mut n = 0;
    for (m, r) in messages.zip(received.iter_mut()) {
        let peer = m.address.and_then(|a| match a.family() {
            Some(nix::sys::socket::AddressFamily::Inet) => a.as_sockaddr_in().map(|a| SocketAddr::from(*a)),
            Some(nix::sys::socket::AddressFamily::Inet6) => a.as_sockaddr_in6().map(|a| SocketAddr::from(*a)),
            _ => None,
        });
        *r = Received { len: m.bytes, peer };
        n += 1;
    }
    Ok(n)
}

/// Sends `replies[i]` to `peers[i]`: one `send_to` for a single answer, else `sendmmsg` (again for the rest if
/// the kernel took only some; an answer that fails is logged and skipped, as a failed `send_to` was).
#[cfg(target_os = "linux")]
fn send_batch(socket: &std::net::UdpSocket, replies: &[Vec<u8>], peers: &[SocketAddr]) {
    use rustix::net::{MMsgHdr, SendAncillaryBuffer, SendFlags, SocketAddrAny};
    use std::io::IoSlice;
    match replies {
        [] => return,
        [one] => {
            if let Err(e) = socket.send_to(one, peers[0]) {
                tracing::debug!(error = %e, "DNS UDP send failed");
            }
            return;
        }
        _ => {}
    }
    // On the stack for the usual batch sizes (no allocation per batch).
    type Few<T> = smallvec::SmallVec<[T; 16]>;
    let addrs: Few<SocketAddrAny> = peers.iter().map(|p| SocketAddrAny::from(*p)).collect();
    let iovs: Few<[IoSlice<'_>; 1]> = replies.iter().map(|r| [IoSlice::new(r)]).collect();
    let mut controls: Few<SendAncillaryBuffer<'_, '_, '_>> = replies.iter().map(|_| Default::default()).collect();
    let mut messages: Few<MMsgHdr<'_>> = addrs
        .iter()
        .zip(&iovs)
        .zip(controls.iter_mut())
        .map(|((addr, iov), control)| MMsgHdr::new_with_addr(addr, iov, control))
        .collect();
    let mut next = 0;
    while next < messages.len() {
        match rustix::net::sendmmsg(socket, &mut messages[next..], SendFlags::empty()) {
            Ok(sent) => next += sent.max(1),
            Err(e) => {
                tracing::debug!(error = %e, "DNS UDP send failed");
                next += 1;
            }
        }
    }
}

/// How long a connection that reached its query cap is read (and what comes discarded) after its last answer,
/// at most, so that closing it does not reset it; and how much is read.
const TCP_LINGER: Duration = Duration::from_secs(2);
const TCP_LINGER_BYTES: usize = 64 * 1024;

/// Serves one TCP connection: queries until the client closes, idles out, or has asked `max_queries`; at the cap
/// the connection is closed gracefully after the last answer (see [`linger_close`]).
async fn tcp_connection(cx: &TcpContext, mut stream: TcpStream, peer: SocketAddr) {
    if serve_tcp_queries(cx, &mut stream, peer).await {
        linger_close(stream).await;
    }
}

/// Closes a connection whose client may still be sending queries without losing the answers already written.
/// Dropping a socket with unread data makes the kernel reset it (RST) and throw away what it had not yet sent, so
/// the client could miss the last answers. Instead:
/// FIN after the answers, then read and discard until the client closes, for at most [`TCP_LINGER`] and
/// [`TCP_LINGER_BYTES`].
async fn linger_close(mut stream: TcpStream) {
    if stream.shutdown().await.is_err() {
        return;
    }
    let drain = async {
        let mut sink = [0u8; 4096];
        let mut read = 0;
        while read < TCP_LINGER_BYTES {
            match stream.read(&mut sink).await {
                Ok(0) | Err(_) => return,
                Ok(n) => read += n,
            }
        }
    };
    let _ = tokio::time::timeout(TCP_LINGER, drain).await;
}

/// Answers a connection's queries; true when it stopped at `max_queries` (the client may still be sending).
async fn serve_tcp_queries(cx: &TcpContext, stream: &mut TcpStream, peer: SocketAddr) -> bool {
    let mut buf = Vec::new();
    for _ in 0..cx.max_queries {
        let len = match tokio::time::timeout(cx.idle, stream.read_u16()).await {
            Ok(Ok(len)) => usize::from(len),
            _ => return false,
        };
        buf.resize(len, 0);
        match tokio::time::timeout(cx.idle, stream.read_exact(&mut buf)).await {
            Ok(Ok(_)) => {}
            _ => return false,
        }
        cx.metrics.add(Counter::TcpQueries);
        if let Some(i) = cx.interceptor.as_ref().filter(|i| i.wants(&buf, Transport::Tcp)) {
            let (tx, mut rx) = tokio::sync::mpsc::channel(8);
            let (i, request) = (i.clone(), buf.clone());
            let handler = cx.main.spawn(async move { i.handle(request, peer, Transport::Tcp, tx).await });
            while let Some(m) = rx.recv().await {
                let mut out = Vec::with_capacity(m.len() + 2);
                out.extend_from_slice(&(m.len() as u16).to_be_bytes());
                out.extend_from_slice(&m);
                if stream.write_all(&out).await.is_err() {
                    handler.abort();
                    return false;
                }
            }
            continue;
        }
        let Some(a) = answer_budgeted(&cx.zones, &buf, Transport::Tcp, Some(&cx.budget), Vec::new()) else {
            cx.metrics.add(Counter::Dropped);
            return false;
        };
        cx.metrics.count(a.qtype, a.rcode.code());
        if a.over_budget {
            cx.metrics.add(Counter::SigningBudgetExceeded);
        }
        let mut out = Vec::with_capacity(a.bytes.len() + 2);
        out.extend_from_slice(&(a.bytes.len() as u16).to_be_bytes());
        out.extend_from_slice(&a.bytes);
        if stream.write_all(&out).await.is_err() {
            return false;
        }
    }
    true
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
