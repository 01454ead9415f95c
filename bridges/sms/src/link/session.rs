//! One SMSC's session, kept up by a supervisor: connect, bind a transceiver, read what the SMSC sends, and on
//! any failure reconnect after a delay that doubles from `reconnect_min_ms` to `reconnect_max_ms` (reset by a
//! successful bind). rusmppc answers the SMSC's `enquire_link` itself and sends its own on the configured
//! interval; a missing answer closes the connection, which the supervisor sees as a drop.

use super::pdu::{self, Inbound};
use super::receipts::ReceiptSink;
use super::{SharedHandler, SmscConfig};
use crate::limits::{Rate, TokenBucket};
use futures::StreamExt;
use rusmpp::pdus::{BindTransceiver, DeliverSmResp};
use rusmpp::types::COctetString;
use rusmpp::values::{InterfaceVersion, Npi, Ton};
use rusmpp::{CommandStatus, Pdu};
use rusmppc::{Client, ConnectionBuilder, Event};
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tincan_common::Clock;
use tokio::sync::{Notify, Semaphore, watch};

/// Counters of one link.
#[derive(Debug, Default)]
pub struct LinkCounters {
    /// Successful binds.
    pub binds: AtomicU64,
    /// Sessions lost after a bind.
    pub drops: AtomicU64,
    /// `submit_sm` accepted.
    pub submitted: AtomicU64,
    /// `ESME_RTHROTTLED` / `ESME_RMSGQFUL` answers.
    pub throttled: AtomicU64,
    /// `submit_sm` refused for good.
    pub rejected: AtomicU64,
    /// `submit_sm` whose outcome is unknown (timeout, link lost).
    pub uncertain: AtomicU64,
    /// `deliver_sm` received (messages and receipts).
    pub delivered_to_us: AtomicU64,
}

/// A link to one SMSC, shared by its supervisor, the dispatcher and the submit tasks.
#[derive(Debug)]
pub struct Link {
    /// Its config.
    pub config: SmscConfig,
    /// Slots of the send window.
    pub(crate) window: Arc<Semaphore>,
    client: Mutex<Option<Client>>,
    up: AtomicBool,
    paused_until_ms: AtomicU64,
    bucket: Mutex<Option<TokenBucket>>,
    /// Keeps its connection moving while requests wait on it.
    pub(crate) nudge: Arc<Nudge>,
    /// Its counters.
    pub counters: LinkCounters,
}

/// Drives rusmppc's connection future instead of letting rusmppc spawn it.
///
/// rusmppc 0.4's connection takes at most five requests from the client and writes at most a few each time it is
/// polled, and when it stops at that limit it does not wake itself: the requests left over wait for the next
/// thing that wakes it (an answer from the SMSC, or the `enquire_link` timer). With a window larger than a few
/// requests, a burst of `submit_sm` whose answers had all come back left the rest queued inside the connection
/// until the next `enquire_link`, up to 30 s (bench/sms/RESULTS.md, window 100). So every request of ours holds
/// a `Busy` guard while it waits ([`Nudge::during`]), and the driver polls the connection again every millisecond while one is held.
#[derive(Debug, Default)]
pub(crate) struct Nudge {
    waiting: AtomicUsize,
    kick: Notify,
}

/// A request waiting on the connection (see [`Nudge`]); counted until dropped, also when its future is.
struct Busy(Arc<Nudge>);

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.waiting.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Nudge {
    /// Awaits `request`, a request on the connection, keeping the connection polled meanwhile.
    pub(crate) async fn during<T>(self: &Arc<Self>, request: impl std::future::Future<Output = T>) -> T {
        self.waiting.fetch_add(1, Ordering::AcqRel);
        let _busy = Busy(self.clone());
        self.kick.notify_one();
        request.await
    }

    /// Polls `connection` until it ends: whenever it wakes itself, whenever a request starts, and every
    /// millisecond while a request waits.
    async fn drive(self: Arc<Self>, connection: impl std::future::Future<Output = ()>) {
        let mut connection = std::pin::pin!(connection);
        loop {
            let waiting = self.waiting.load(Ordering::Acquire) > 0;
            tokio::select! {
                biased;
                () = &mut connection => return,
                () = self.kick.notified() => {}
                () = tokio::time::sleep(Duration::from_millis(1)), if waiting => {}
            }
        }
    }
}

impl Link {
    pub(crate) fn new(config: SmscConfig, now_ms: u64) -> Self {
        let bucket =
            (config.max_per_second > 0).then(|| TokenBucket::new(Rate::per_second(config.max_per_second), now_ms));
        Self {
            window: Arc::new(Semaphore::new(config.window)),
            client: Mutex::new(None),
            up: AtomicBool::new(false),
            paused_until_ms: AtomicU64::new(0),
            bucket: Mutex::new(bucket),
            nudge: Arc::default(),
            counters: LinkCounters::default(),
            config,
        }
    }

    /// Whether a session is bound.
    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::Acquire)
    }

    /// Whether the link rests after a throttle answer.
    pub fn is_paused(&self, now_ms: u64) -> bool {
        self.paused_until_ms.load(Ordering::Acquire) > now_ms
    }

    /// `submit_sm` outstanding.
    pub fn in_flight(&self) -> usize {
        self.config.window - self.window.available_permits()
    }

    pub(crate) fn client(&self) -> Option<Client> {
        self.client.lock().expect("not poisoned").clone()
    }

    fn set_client(&self, client: Option<Client>) {
        self.up.store(client.is_some(), Ordering::Release);
        *self.client.lock().expect("not poisoned") = client;
    }

    #[cfg(test)]
    pub(crate) fn mark_up_for_tests(&self) {
        self.up.store(true, Ordering::Release);
    }

    #[cfg(test)]
    pub(crate) fn mark_down_for_tests(&self) {
        self.up.store(false, Ordering::Release);
    }

    pub(crate) fn pause(&self, until_ms: u64) {
        self.paused_until_ms.fetch_max(until_ms, Ordering::AcqRel);
    }

    /// How many segments this link can take now: bound, not resting, room in the window and in its rate.
    pub(crate) fn capacity(&self, now_ms: u64) -> usize {
        if !self.is_up() || self.is_paused(now_ms) {
            return 0;
        }
        let room = self.window.available_permits();
        match self.bucket.lock().expect("not poisoned").as_mut() {
            Some(b) => room.min(b.available(now_ms) as usize),
            None => room,
        }
    }

    /// Takes one unit of rate, if there is one.
    pub(crate) fn take_rate(&self, now_ms: u64) -> bool {
        match self.bucket.lock().expect("not poisoned").as_mut() {
            Some(b) => b.take(now_ms).is_ok(),
            None => true,
        }
    }

    /// How long until the rate allows the next segment, when it is what holds the link back.
    pub(crate) fn rate_wait_ms(&self, now_ms: u64) -> Option<u64> {
        let mut bucket = self.bucket.lock().expect("not poisoned");
        let b = bucket.as_mut()?;
        (b.available(now_ms) == 0).then(|| b.wait_ms(now_ms))
    }
}

fn field<const MIN: usize, const MAX: usize>(
    v: &str,
    name: &'static str,
) -> Result<COctetString<MIN, MAX>, SessionError> {
    if v.is_empty() {
        return Ok(COctetString::empty());
    }
    COctetString::from_str(v).map_err(|_| SessionError::Field(name))
}

fn now_ms(clock: &dyn Clock) -> u64 {
    clock.now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

/// Why a session could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    /// TCP connect or bind failed.
    #[error(transparent)]
    Smpp(#[from] rusmppc::error::Error),
    /// A bind field is not valid SMPP.
    #[error("bind field {0} is not valid")]
    Field(&'static str),
    /// No answer in time.
    #[error("timed out")]
    Timeout,
}

async fn connect(
    config: &SmscConfig,
    nudge: &Arc<Nudge>,
) -> Result<(Client, impl futures::Stream<Item = Event> + Unpin), SessionError> {
    let v5 = config.interface_version == "5.0";
    let builder = ConnectionBuilder::new()
        .enquire_link_interval(Duration::from_secs(config.enquire_link_secs))
        .enquire_link_response_timeout(config.response_timeout())
        .response_timeout(config.response_timeout())
        // rusmppc refuses to bind as anything but 5.0 unless told; most SMSCs speak 3.4.
        .with_interface_version_check(false);
    let (client, events, connection) = tokio::time::timeout(
        config.response_timeout(),
        builder.no_spawn().connect(format!("smpp://{}", config.address)),
    )
    .await
    .map_err(|_| SessionError::Timeout)??;
    tokio::spawn(nudge.clone().drive(connection));
    let bind = BindTransceiver::builder()
        .system_id(field(&config.system_id, "system_id")?)
        .password(field(config.password.expose(), "password")?)
        .system_type(field(&config.system_type, "system_type")?)
        .interface_version(if v5 { InterfaceVersion::Smpp5_0 } else { InterfaceVersion::Smpp3_4 })
        .addr_ton(Ton::Unknown)
        .addr_npi(Npi::Unknown)
        .address_range(COctetString::empty())
        .build();
    if let Err(e) = nudge.during(client.bind_transceiver(bind)).await {
        let _ = client.close().await;
        return Err(e.into());
    }
    Ok((client, events))
}

/// Keeps `link` bound until `stop` turns true. `wake` is told when the link comes up (the dispatcher may send).
pub(crate) async fn supervise(
    link: Arc<Link>,
    handler: SharedHandler,
    receipts_sink: ReceiptSink,
    clock: Arc<dyn Clock>,
    wake: Arc<Notify>,
    mut stop: watch::Receiver<bool>,
) {
    let min = Duration::from_millis(link.config.reconnect_min_ms);
    let max = Duration::from_millis(link.config.reconnect_max_ms);
    let mut delay = min;
    let name = link.config.name.clone();
    // Receipts are recorded concurrently (their order does not matter, and the writer batches them); messages
    // are handed on one at a time, in the order the SMSC sent them.
    let receipts = Arc::new(Semaphore::new(256));
    loop {
        if *stop.borrow() {
            return;
        }
        let connected = tokio::select! {
            c = connect(&link.config, &link.nudge) => c,
            _ = stop.wait_for(|s| *s) => return,
        };
        match connected {
            Ok((client, mut events)) => {
                tracing::info!(smsc = %name, "SMPP transceiver bound");
                link.counters.binds.fetch_add(1, Ordering::Relaxed);
                link.set_client(Some(client.clone()));
                delay = min;
                wake.notify_one();
                loop {
                    let event = tokio::select! {
                        e = events.next() => Some(e),
                        _ = stop.wait_for(|s| *s) => None,
                    };
                    let Some(event) = event else {
                        link.set_client(None);
                        // Best effort: the SMSC learns we leave; some answer unbind with a bare close.
                        let _ = tokio::time::timeout(Duration::from_secs(2), link.nudge.during(client.unbind())).await;
                        let _ = client.close().await;
                        return;
                    };
                    match event {
                        Some(Event::Incoming(command)) => {
                            let seq = command.sequence_number();
                            match command.pdu() {
                                Some(Pdu::DeliverSm(d)) => {
                                    link.counters.delivered_to_us.fetch_add(1, Ordering::Relaxed);
                                    let default = link
                                        .config
                                        .inbound_default()
                                        .unwrap_or(crate::protocol::reassembly::InboundCoding::Gsm7);
                                    let read = pdu::read_deliver_sm(
                                        d,
                                        default,
                                        link.config.assume_international,
                                        now_ms(&*clock),
                                    );
                                    let job = answer(
                                        handler.clone(),
                                        receipts_sink.clone(),
                                        client.clone(),
                                        link.nudge.clone(),
                                        name.clone(),
                                        seq,
                                        read,
                                    );
                                    if let Some(job) = job.concurrent {
                                        let permit = receipts.clone().acquire_owned().await.expect("never closed");
                                        tokio::spawn(async move {
                                            job.await;
                                            drop(permit);
                                        });
                                    } else {
                                        job.in_order.await;
                                    }
                                }
                                Some(Pdu::Unbind) => {
                                    tracing::info!(smsc = %name, "the SMSC unbinds");
                                    let _ = link.nudge.during(client.unbind_resp(seq)).await;
                                    break;
                                }
                                other => tracing::debug!(smsc = %name, ?other, "SMPP command ignored"),
                            }
                        }
                        Some(Event::Error(e)) => {
                            tracing::warn!(smsc = %name, error = %e, "SMPP session error");
                            if !client.is_active() {
                                break;
                            }
                        }
                        None => break,
                    }
                }
                link.set_client(None);
                link.counters.drops.fetch_add(1, Ordering::Relaxed);
                let _ = client.close().await;
                tracing::warn!(smsc = %name, ?delay, "SMPP session lost; reconnecting");
            }
            Err(e) => tracing::warn!(smsc = %name, error = %e, ?delay, "SMPP connect or bind failed"),
        }
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        delay = (delay * 2).min(max);
    }
}

/// The answering of one `deliver_sm`: receipts may be answered in any order, messages in order.
struct Job {
    concurrent: Option<std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>>,
    in_order: std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>,
}

/// Records a receipt in the outbox or hands a message to the handler, then answers the SMSC: OK once recorded,
/// `ESME_RX_T_APPN` (try again later) when it could not be recorded, `ESME_RX_P_APPN` (do not resend) when it
/// cannot be read.
fn answer(
    handler: SharedHandler,
    receipts: ReceiptSink,
    client: Client,
    nudge: Arc<Nudge>,
    smsc: String,
    seq: u32,
    read: Result<Inbound, pdu::InboundError>,
) -> Job {
    let is_receipt = matches!(read, Ok(Inbound::Receipt { .. }));
    let fut = async move {
        let status = match read {
            Ok(Inbound::Receipt { receipt, .. }) => {
                if receipts.record(receipt).await {
                    CommandStatus::EsmeRok
                } else {
                    CommandStatus::EsmeRxTAppn
                }
            }
            Ok(inbound) => match handler.handle(&smsc, inbound).await {
                Ok(()) => CommandStatus::EsmeRok,
                Err(e) => {
                    tracing::warn!(%smsc, error = %e, "deliver_sm not taken; the SMSC will resend");
                    CommandStatus::EsmeRxTAppn
                }
            },
            Err(e) => {
                tracing::warn!(%smsc, error = %e, "unreadable deliver_sm refused");
                CommandStatus::EsmeRxPAppn
            }
        };
        let sent = nudge.during(client.status(status).deliver_sm_resp(seq, DeliverSmResp::default())).await;
        if let Err(e) = sent {
            tracing::debug!(%smsc, error = %e, "deliver_sm_resp not sent (link lost): the SMSC will resend");
        }
    };
    if is_receipt {
        Job { concurrent: Some(Box::pin(fut)), in_order: Box::pin(async {}) }
    } else {
        Job { concurrent: None, in_order: Box::pin(fut) }
    }
}
