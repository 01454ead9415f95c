//! The dispatcher (outbox → links) and the writer (answers → outbox); see [`crate::link`] for the guarantees.

use super::session::{self, Link};
use super::{SharedHandler, SmscConfig, pdu};
use crate::store::{OutSegment, Store, StoreError};
use rusmpp::CommandStatus;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;
use tincan_common::Clock;
use tokio::sync::{Notify, OwnedSemaphorePermit, mpsc, watch};
use tokio::task::JoinHandle;

/// Most segments claimed from the outbox in one transaction.
const CLAIM_BATCH: usize = 500;
/// Temporary SMSC errors are tried this many times before the message fails.
const MAX_ATTEMPTS: u32 = 10;
/// How long a segment waits after a temporary SMSC error.
const RETRY_DELAY_MS: i64 = 2_000;

/// What became of one `submit_sm`.
#[derive(Debug)]
enum Answer {
    /// Accepted under this id.
    Submitted(String),
    /// Not sent or not taken; try again at the time given. `uncertain`: the SMSC may have it.
    Requeue { at_ms: i64, error: String, uncertain: bool },
    /// Refused for good.
    Fail(String),
}

#[derive(Debug)]
struct Outcome {
    segment: OutSegment,
    link: String,
    result: Answer,
    /// The window slot, freed once the outcome is committed.
    _permit: Option<OwnedSemaphorePermit>,
}

/// A link's state, for `/healthz` and `/metrics`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkStatus {
    /// The SMSC's name.
    pub name: String,
    /// Its priority.
    pub priority: u32,
    /// Whether a session is bound.
    pub up: bool,
    /// `submit_sm` outstanding.
    pub in_flight: usize,
    /// Successful binds.
    pub binds: u64,
    /// Sessions lost.
    pub drops: u64,
    /// `submit_sm` accepted.
    pub submitted: u64,
    /// Throttle answers.
    pub throttled: u64,
    /// Refusals.
    pub rejected: u64,
    /// Outcomes unknown (resent, counted as possible duplicates when then accepted).
    pub uncertain: u64,
    /// `deliver_sm` received.
    pub received: u64,
}

/// Counters of the whole link set.
#[derive(Debug, Default)]
pub struct SetCounters {
    /// Segments found left in flight by a previous process at start (resent).
    pub requeued_at_start: AtomicU64,
    /// Outcome batches committed.
    pub batches: AtomicU64,
}

/// The links to every SMSC and the tasks that send through them. Dropping it stops everything (like a crash
/// for whatever was in flight: it is resent at the next start).
#[derive(Debug)]
pub struct LinkSet {
    links: Arc<Vec<Arc<Link>>>,
    wake: Arc<Notify>,
    changed: Arc<Notify>,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
    counters: Arc<SetCounters>,
}

fn now_ms(clock: &dyn Clock) -> u64 {
    clock.now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

impl LinkSet {
    /// Requeues what a previous process left in flight, then binds every SMSC and starts sending.
    pub async fn start(
        configs: &[SmscConfig],
        store: Arc<dyn Store>,
        handler: SharedHandler,
        clock: Arc<dyn Clock>,
    ) -> Result<LinkSet, StoreError> {
        let counters = Arc::new(SetCounters::default());
        let mut tx = store.begin().await?;
        let requeued = tx.outbox().requeue_unfinished(now_ms(&*clock) as i64).await?;
        tx.commit().await?;
        if requeued > 0 {
            tracing::warn!(requeued, "segments left in flight by the last run are sent again (possible duplicates)");
        }
        counters.requeued_at_start.store(requeued, Ordering::Relaxed);
        let now = now_ms(&*clock);
        let mut links: Vec<Arc<Link>> = configs.iter().map(|c| Arc::new(Link::new(c.clone(), now))).collect();
        links.sort_by_key(|l| l.config.priority);
        let links = Arc::new(links);
        let wake = Arc::new(Notify::new());
        let changed = Arc::new(Notify::new());
        let (stop, _) = watch::channel(false);
        let (results_tx, results_rx) = mpsc::unbounded_channel();
        let mut tasks = Vec::new();
        let (receipts, writer) = super::receipts::spawn(store.clone(), clock.clone(), changed.clone());
        tasks.push(writer);
        for link in links.iter() {
            tasks.push(tokio::spawn(session::supervise(
                link.clone(),
                handler.clone(),
                receipts.clone(),
                clock.clone(),
                wake.clone(),
                stop.subscribe(),
            )));
        }
        tasks.push(tokio::spawn(write(
            store.clone(),
            clock.clone(),
            results_rx,
            wake.clone(),
            changed.clone(),
            counters.clone(),
        )));
        tasks.push(tokio::spawn(dispatch(store, clock, links.clone(), results_tx, wake.clone(), stop.subscribe())));
        Ok(LinkSet { links, wake, changed, stop, tasks, counters })
    }

    /// Tells the dispatcher there is new work in the outbox.
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// Notified whenever answers were recorded (message states may have changed).
    pub fn changed(&self) -> Arc<Notify> {
        self.changed.clone()
    }

    /// Every link's state.
    pub fn status(&self) -> Vec<LinkStatus> {
        self.links
            .iter()
            .map(|l| {
                let c = &l.counters;
                LinkStatus {
                    name: l.config.name.clone(),
                    priority: l.config.priority,
                    up: l.is_up(),
                    in_flight: l.in_flight(),
                    binds: c.binds.load(Ordering::Relaxed),
                    drops: c.drops.load(Ordering::Relaxed),
                    submitted: c.submitted.load(Ordering::Relaxed),
                    throttled: c.throttled.load(Ordering::Relaxed),
                    rejected: c.rejected.load(Ordering::Relaxed),
                    uncertain: c.uncertain.load(Ordering::Relaxed),
                    received: c.delivered_to_us.load(Ordering::Relaxed),
                }
            })
            .collect()
    }

    /// Counters of the set.
    pub fn counters(&self) -> &SetCounters {
        &self.counters
    }

    /// Stops sending, unbinds, and waits for the tasks. Answers already received are recorded first.
    pub async fn stop(mut self) {
        let _ = self.stop.send(true);
        // The supervisors unbind; the dispatcher stops claiming; the writer ends when every submit task ended.
        for t in self.tasks.drain(..) {
            let _ = tokio::time::timeout(Duration::from_secs(15), t).await;
        }
    }
}

impl Drop for LinkSet {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// Picks the link for one segment: best priority first, round robin among equals; takes a window slot and a
/// unit of rate. `None` when no link can take it now.
fn pick(links: &[Arc<Link>], turn: &AtomicUsize, now: u64) -> Option<(Arc<Link>, OwnedSemaphorePermit)> {
    let mut i = 0;
    while i < links.len() {
        let priority = links[i].config.priority;
        let same: Vec<&Arc<Link>> = links[i..].iter().take_while(|l| l.config.priority == priority).collect();
        let start = turn.fetch_add(1, Ordering::Relaxed);
        for k in 0..same.len() {
            let link = same[(start + k) % same.len()];
            if !link.is_up() || link.is_paused(now) {
                continue;
            }
            let Ok(permit) = link.window.clone().try_acquire_owned() else { continue };
            if !link.take_rate(now) {
                continue;
            }
            return Some((link.clone(), permit));
        }
        i += same.len();
    }
    None
}

async fn dispatch(
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    links: Arc<Vec<Arc<Link>>>,
    results: mpsc::UnboundedSender<Outcome>,
    wake: Arc<Notify>,
    mut stop: watch::Receiver<bool>,
) {
    let turn = AtomicUsize::new(0);
    loop {
        if *stop.borrow() {
            return;
        }
        let now = now_ms(&*clock);
        let capacity: usize = links.iter().map(|l| l.capacity(now)).sum();
        let mut idle = Duration::from_millis(250);
        if capacity > 0 {
            let claimed = async {
                let mut tx = store.begin().await?;
                let segments = tx.outbox().claim(now as i64, capacity.min(CLAIM_BATCH) as u32).await?;
                tx.commit().await?;
                Ok::<_, StoreError>(segments)
            }
            .await;
            match claimed {
                Ok(segments) if !segments.is_empty() => {
                    for segment in segments {
                        match pick(&links, &turn, now) {
                            Some((link, permit)) => {
                                tokio::spawn(submit(link, segment, permit, results.clone(), clock.clone()));
                            }
                            None => {
                                let _ = results.send(Outcome {
                                    link: String::new(),
                                    result: Answer::Requeue {
                                        at_ms: now as i64,
                                        error: "no link free".into(),
                                        uncertain: false,
                                    },
                                    segment,
                                    _permit: None,
                                });
                            }
                        }
                    }
                    continue;
                }
                Ok(_) => {}
                Err(e) => tracing::error!(error = %e, "claiming from the outbox failed; retrying"),
            }
        } else if let Some(wait) = links.iter().filter_map(|l| l.rate_wait_ms(now)).min() {
            idle = Duration::from_millis(wait.clamp(1, 250));
        }
        tokio::select! {
            _ = wake.notified() => {}
            _ = tokio::time::sleep(idle) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
    }
}

async fn submit(
    link: Arc<Link>,
    segment: OutSegment,
    permit: OwnedSemaphorePermit,
    results: mpsc::UnboundedSender<Outcome>,
    clock: Arc<dyn Clock>,
) {
    let c = &link.counters;
    let result = match (pdu::submit_sm(&segment, link.config.delivery_receipts), link.client()) {
        (Err(e), _) => Answer::Fail(e.to_string()),
        (Ok(_), None) => Answer::Requeue { at_ms: now_ms(&*clock) as i64, error: "link down".into(), uncertain: false },
        (Ok(pdu), Some(client)) => match link.nudge.during(client.submit_sm(pdu)).await {
            Ok(resp) => {
                c.submitted.fetch_add(1, Ordering::Relaxed);
                Answer::Submitted(resp.message_id().as_str().to_owned())
            }
            Err(rusmppc::error::Error::UnexpectedResponse { response }) => {
                let status = response.status();
                let now = now_ms(&*clock);
                match classify(status) {
                    Class::Throttled => {
                        c.throttled.fetch_add(1, Ordering::Relaxed);
                        link.pause(now + link.config.throttle_pause_ms);
                        let at = (now + link.config.throttle_pause_ms) as i64;
                        Answer::Requeue { at_ms: at, error: format!("{status:?}"), uncertain: false }
                    }
                    Class::Temporary if segment.attempts < MAX_ATTEMPTS => Answer::Requeue {
                        at_ms: now as i64 + RETRY_DELAY_MS,
                        error: format!("{status:?}"),
                        uncertain: false,
                    },
                    Class::Temporary | Class::Permanent => {
                        c.rejected.fetch_add(1, Ordering::Relaxed);
                        Answer::Fail(describe(status))
                    }
                }
            }
            Err(e) => {
                // Timed out, or the link went while the request was out: the SMSC may have it.
                c.uncertain.fetch_add(1, Ordering::Relaxed);
                Answer::Requeue { at_ms: now_ms(&*clock) as i64, error: e.to_string(), uncertain: true }
            }
        },
    };
    let _ = results.send(Outcome { segment, link: link.config.name.clone(), result, _permit: Some(permit) });
}

enum Class {
    Throttled,
    Temporary,
    Permanent,
}

fn classify(status: CommandStatus) -> Class {
    match status {
        CommandStatus::EsmeRthrottled | CommandStatus::EsmeRmsgqful => Class::Throttled,
        CommandStatus::EsmeRsyserr
        | CommandStatus::EsmeRxTAppn
        | CommandStatus::EsmeRsubmitfail
        | CommandStatus::EsmeRinvbndsts
        | CommandStatus::EsmeRunknownerr => Class::Temporary,
        _ => Class::Permanent,
    }
}

/// A refusal as the sender reads it.
fn describe(status: CommandStatus) -> String {
    let why = match status {
        CommandStatus::EsmeRinvdstadr => "the carrier refused the destination number",
        CommandStatus::EsmeRinvsrcadr => "the carrier refused the sender number",
        CommandStatus::EsmeRinvmsglen => "the carrier refused the message length",
        CommandStatus::EsmeRxRAppn => "the recipient's network refused it",
        _ => "the carrier refused it",
    };
    format!("{why} ({status:?}, 0x{:08X})", u32::from(status))
}

/// Records outcomes in batches (one transaction each), then frees their window slots.
async fn write(
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    mut results: mpsc::UnboundedReceiver<Outcome>,
    wake: Arc<Notify>,
    changed: Arc<Notify>,
    counters: Arc<SetCounters>,
) {
    let mut batch = Vec::new();
    loop {
        if results.recv_many(&mut batch, 1024).await == 0 {
            return;
        }
        let mut delay = Duration::from_millis(50);
        // Window slots stay taken until the outcomes are durable: a crash meanwhile leaves at most the window
        // uncertain.
        loop {
            match record(&*store, &batch, now_ms(&*clock) as i64).await {
                Ok(()) => break,
                Err(e) => {
                    tracing::error!(error = %e, "recording SMSC answers failed; retrying");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(5));
                }
            }
        }
        counters.batches.fetch_add(1, Ordering::Relaxed);
        batch.clear();
        wake.notify_one();
        changed.notify_waiters();
    }
}

async fn record(store: &dyn Store, batch: &[Outcome], now: i64) -> Result<(), StoreError> {
    let mut tx = store.begin().await?;
    for o in batch {
        let id = o.segment.id;
        match &o.result {
            Answer::Submitted(smsc_id) => tx.outbox().submitted(id, &o.link, smsc_id, now).await?,
            Answer::Requeue { at_ms, error, uncertain } => tx.outbox().retry(id, *at_ms, error, *uncertain).await?,
            Answer::Fail(reason) => tx.outbox().fail(id, reason, now).await?,
        }
    }
    tx.commit().await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_are_classified() {
        assert!(matches!(classify(CommandStatus::EsmeRthrottled), Class::Throttled));
        assert!(matches!(classify(CommandStatus::EsmeRmsgqful), Class::Throttled));
        assert!(matches!(classify(CommandStatus::EsmeRsyserr), Class::Temporary));
        assert!(matches!(classify(CommandStatus::EsmeRinvdstadr), Class::Permanent));
        assert!(describe(CommandStatus::EsmeRinvdstadr).contains("destination number"));
        assert!(describe(CommandStatus::EsmeRinvdstadr).contains("0x0000000B"));
    }

    fn link(name: &str, priority: u32, window: usize, up: bool) -> Arc<Link> {
        let config = SmscConfig { name: name.into(), priority, window, ..SmscConfig::default() };
        let l = Arc::new(Link::new(config, 0));
        if up {
            l.mark_up_for_tests();
        }
        l
    }

    #[test]
    fn picking_prefers_priority_then_shares_and_fails_over() {
        let a = link("a", 0, 2, true);
        let b = link("b", 0, 2, true);
        let c = link("c", 1, 5, true);
        let links = vec![a.clone(), b.clone(), c.clone()];
        let turn = AtomicUsize::new(0);
        let mut permits = Vec::new();
        let mut names = Vec::new();
        for _ in 0..6 {
            let (l, p) = pick(&links, &turn, 0).unwrap();
            names.push(l.config.name.clone());
            permits.push(p);
        }
        names[..4].sort();
        assert_eq!(names, ["a", "a", "b", "b", "c", "c"], "equal priorities share; the next one takes the overflow");
        drop(permits);
        a.pause(1_000);
        b.mark_down_for_tests();
        assert_eq!(pick(&links, &turn, 500).unwrap().0.config.name, "c", "paused and down links are skipped");
        assert_eq!(pick(&links, &turn, 1_000).unwrap().0.config.name, "a", "the pause ends");
        c.mark_down_for_tests();
        a.mark_down_for_tests();
        assert!(pick(&links, &turn, 1_000).is_none());
    }
}
