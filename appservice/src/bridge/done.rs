//! Group commit of finished work: the rows of the inbox and the remote queue whose events were handled are
//! marked done (with the message mappings their handling produced) by one task, many per database
//! transaction, instead of one commit and one disk flush per event.
//!
//! Whoever finishes an event hands its [`Completion`] over and goes on with the next event at once. The task
//! takes everything handed over so far and commits it in one database transaction; what is handed over while
//! that commit flushes goes into the next one. A burst (the 100 events of a homeserver transaction, a
//! connector's batch of remote events) is thus marked done in a few commits, and a single event waits for no
//! one.
//!
//! **Nothing is lost on a crash.** An event is marked done only after it was handled, so a crash before its
//! commit leaves it pending and it is handled again at the next start, as before when the crash came between
//! handling and the per-event commit; batching widens that window from one commit to a few. A replayed Matrix
//! message whose mapping was committed is not sent twice (the worker checks the mapping); one whose mapping
//! was lost with the crash reaches the connector again, at least once as before. Remote events resend with
//! their fixed transaction IDs. Stopping the bridge ([`crate::Bridge::stop`]) commits what was handed over.
//!
//! **Reading one's own writes.** Until its commit, a mapping is kept in memory and the lookups of the core
//! ([`BridgeHandle::message_by_event`], [`BridgeHandle::message_by_remote`]) see it: an edit, reaction or
//! receipt right behind its message, or the same remote message queued twice, finds the mapping made a moment
//! before.
//!
//! Commits keep the order of hand-over (one channel, one task), so a later event of a portal is never marked
//! done while an earlier one is not. A commit that fails is tried again with backoff; events keep being
//! handled meanwhile and their marks wait.

use super::BridgeHandle;
use crate::ids::{PortalKey, RemoteMessageId};
use crate::store::{Completion, MessageMapping, WorkQueue};
use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

/// At most this many rows in one commit.
const MAX_BATCH: usize = 1024;

/// Longest wait before a failed commit is tried again.
const MAX_BACKOFF: Duration = Duration::from_secs(5);

enum Msg {
    Done(Completion),
    /// Answered once everything handed over before it is committed.
    Flush(oneshot::Sender<()>),
}

/// The hand-over of finished work to the committing task.
pub(crate) struct DoneLog {
    tx: mpsc::UnboundedSender<Msg>,
    rx: Mutex<Option<mpsc::UnboundedReceiver<Msg>>>,
    /// Mappings handed over and not committed yet, in hand-over order.
    unsaved: Mutex<VecDeque<MessageMapping>>,
}

impl std::fmt::Debug for DoneLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DoneLog").finish_non_exhaustive()
    }
}

impl Default for DoneLog {
    fn default() -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        Self { tx, rx: Mutex::new(Some(rx)), unsaved: Mutex::new(VecDeque::new()) }
    }
}

impl DoneLog {
    /// Hands over a finished row.
    fn hand_over(&self, done: Completion) {
        // Under the lock: `unsaved` keeps the channel's order, which the task relies on to drop what it
        // committed.
        let mut unsaved = self.unsaved.lock().expect("not poisoned");
        if let Some(m) = &done.mapping {
            unsaved.push_back(m.clone());
        }
        if self.tx.send(Msg::Done(done)).is_err() {
            // Only when the task is gone (the bridge stopped): the row stays pending and replays at the next start.
            tracing::debug!("bridge stopping; a finished event stays pending for the next start");
        }
    }

    fn unsaved(&self, matches: impl Fn(&MessageMapping) -> bool) -> Option<MessageMapping> {
        self.unsaved.lock().expect("not poisoned").iter().rev().find(|m| matches(m)).cloned()
    }
}

impl BridgeHandle {
    /// Marks the inbox event `seq` done once handled, with the mapping its handling produced.
    pub(crate) fn inbox_done(&self, seq: i64, mapping: Option<MessageMapping>) {
        self.0.done.hand_over(Completion { queue: WorkQueue::Inbox, seq, mapping });
    }

    /// Marks the remote event `seq` done once bridged, with the mapping it produced.
    pub(crate) fn remote_done(&self, seq: i64, mapping: Option<MessageMapping>) {
        self.0.done.hand_over(Completion { queue: WorkQueue::Remote, seq, mapping });
    }

    /// Waits until everything marked done so far is committed.
    pub(crate) async fn flush_done(&self) {
        let (tx, rx) = oneshot::channel();
        if self.0.done.tx.send(Msg::Flush(tx)).is_ok() {
            let _ = rx.await;
        }
    }

    /// The mapping of the Matrix event `event_id` in `portal`, committed or about to be.
    pub(crate) async fn message_by_event(
        &self,
        portal: &PortalKey,
        event_id: &ruma::EventId,
    ) -> crate::store::Result<Option<MessageMapping>> {
        if let Some(m) = self.0.done.unsaved(|m| m.portal == *portal && m.event_id == event_id) {
            return Ok(Some(m));
        }
        self.0.store.message_by_event(portal, event_id).await
    }

    /// The mapping of the remote message `remote` in `portal`, committed or about to be.
    pub(crate) async fn message_by_remote(
        &self,
        portal: &PortalKey,
        remote: &RemoteMessageId,
    ) -> crate::store::Result<Option<MessageMapping>> {
        if let Some(m) = self.0.done.unsaved(|m| m.portal == *portal && m.remote_id == *remote) {
            return Ok(Some(m));
        }
        self.0.store.message_by_remote(portal, remote).await
    }
}

/// The committing task; runs until the bridge aborts it (after [`BridgeHandle::flush_done`] when it stops).
pub(crate) async fn run(bridge: BridgeHandle) {
    let Some(mut rx) = bridge.0.done.rx.lock().expect("not poisoned").take() else { return };
    let mut batch: Vec<Completion> = Vec::new();
    let mut flushes: Vec<oneshot::Sender<()>> = Vec::new();
    while let Some(first) = rx.recv().await {
        let mut next = Some(first);
        while let Some(msg) = next {
            match msg {
                Msg::Done(d) => batch.push(d),
                Msg::Flush(f) => flushes.push(f),
            }
            next = if batch.len() < MAX_BATCH { rx.try_recv().ok() } else { None };
        }
        if !batch.is_empty() {
            commit(&bridge, &batch).await;
            batch.clear();
        }
        for f in flushes.drain(..) {
            let _ = f.send(());
        }
    }
}

/// Commits `batch`, trying again until it succeeds, then drops its mappings from the unsaved ones.
async fn commit(bridge: &BridgeHandle, batch: &[Completion]) {
    let mut delay = Duration::from_millis(50);
    loop {
        match bridge.0.store.complete_all(batch, bridge.now_ms()).await {
            Ok(()) => break,
            Err(e) => {
                tracing::error!(error = %e, rows = batch.len(), ?delay, "marking finished events done failed; retrying");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(MAX_BACKOFF);
            }
        }
    }
    let m = &bridge.0.metrics;
    m.inc(&m.done_commits);
    m.add(&m.events_processed, batch.iter().filter(|d| d.queue == WorkQueue::Inbox).count() as u64);
    let mapped = batch.iter().filter(|d| d.mapping.is_some()).count();
    let mut unsaved = bridge.0.done.unsaved.lock().expect("not poisoned");
    let committed = mapped.min(unsaved.len());
    unsaved.drain(..committed);
}
