//! Prometheus metrics of the bridge core, served at `GET /metrics` in the text exposition format.
//!
//! A handful of counters do not justify a metrics framework: atomics and a hand-written exposition keep the
//! dependency tree small and the output exactly as documented here.

use std::fmt::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

/// One counter.
#[derive(Debug, Default)]
pub struct Counter(AtomicU64);

impl Counter {
    /// The current value.
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// The core's metrics; cheap to clone (shared).
#[derive(Debug, Clone, Default)]
pub struct Metrics(Arc<Inner>);

/// The counters.
#[derive(Debug, Default)]
pub struct Inner {
    /// Transactions the homeserver pushed and the bridge recorded.
    pub transactions: Counter,
    /// Transactions pushed again (already recorded) and acknowledged without recording.
    pub duplicate_transactions: Counter,
    /// Requests to the AS API refused for a missing or wrong `hs_token`.
    pub auth_failures: Counter,
    /// Events recorded in the inbox.
    pub events_recorded: Counter,
    /// Inbox events processed (marked done).
    pub events_processed: Counter,
    /// Database transactions that marked finished inbox and remote events done (several events each under
    /// load: see `bridge::done`).
    pub done_commits: Counter,
    /// Matrix events the connector failed to handle.
    pub matrix_failures: Counter,
    /// Remote events queued by the connector.
    pub remote_events: Counter,
    /// Remote events bridged to Matrix.
    pub remote_bridged: Counter,
    /// Remote events the homeserver refused for good (skipped).
    pub remote_failures: Counter,
    /// Attempts at a remote event that failed for now and were retried (the portal waits meanwhile).
    pub remote_retries: Counter,
    /// Requests sent to the homeserver.
    pub hs_requests: Counter,
    /// Homeserver requests retried (rate limit, 5xx, connection failure).
    pub hs_retries: Counter,
    /// Encrypted Matrix events decrypted for the connector.
    pub decrypted: Counter,
    /// Encrypted Matrix events given up on (no room key within the wait); the sender got a notice.
    pub undecryptable: Counter,
    /// Events the bridge sent encrypted.
    pub encrypted: Counter,
    /// Message statuses shown in Matrix (`com.beeper.message_send_status`).
    pub statuses: Counter,
    /// Attachments downloaded (and decrypted) for the network.
    pub media_in: Counter,
    /// Attachments uploaded from the network.
    pub media_out: Counter,
    /// Ghost devices unloaded from memory (`encryption.max_loaded_devices`); they load again when needed.
    pub devices_unloaded: Counter,
    /// Finished inbox and remote-queue rows and transaction IDs pruned (`database.retention_secs`).
    pub rows_pruned: Counter,
    /// Inbox events waiting to be processed (gauge).
    pub inbox_pending: AtomicI64,
    /// Encrypted Matrix events the bridge could not decrypt yet, waiting for their room key (gauge).
    pub awaiting_room_key: AtomicI64,
}

impl std::ops::Deref for Metrics {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}

impl Metrics {
    /// Adds one to `counter`.
    pub fn inc(&self, counter: &Counter) {
        counter.0.fetch_add(1, Ordering::Relaxed);
    }

    /// Adds `n` to `counter`.
    pub fn add(&self, counter: &Counter, n: u64) {
        counter.0.fetch_add(n, Ordering::Relaxed);
    }

    /// The Prometheus text exposition of every metric, names prefixed `tincan_appservice_`.
    pub fn render(&self) -> String {
        let counters: [(&str, &str, &Counter); 21] = [
            ("transactions_total", "Transactions recorded", &self.transactions),
            ("duplicate_transactions_total", "Transactions acknowledged again", &self.duplicate_transactions),
            ("auth_failures_total", "AS API requests refused for the hs_token", &self.auth_failures),
            ("events_recorded_total", "Events recorded in the inbox", &self.events_recorded),
            ("events_processed_total", "Inbox events processed", &self.events_processed),
            ("done_commits_total", "Commits marking finished events done", &self.done_commits),
            ("matrix_failures_total", "Matrix events the connector failed to handle", &self.matrix_failures),
            ("remote_events_total", "Remote events queued", &self.remote_events),
            ("remote_bridged_total", "Remote events bridged to Matrix", &self.remote_bridged),
            ("remote_failures_total", "Remote events refused for good", &self.remote_failures),
            ("remote_retries_total", "Remote event attempts retried", &self.remote_retries),
            ("homeserver_requests_total", "Requests to the homeserver", &self.hs_requests),
            ("homeserver_retries_total", "Homeserver requests retried", &self.hs_retries),
            ("decrypted_total", "Encrypted Matrix events decrypted", &self.decrypted),
            ("undecryptable_total", "Encrypted Matrix events given up on with a notice", &self.undecryptable),
            ("encrypted_total", "Events sent encrypted", &self.encrypted),
            ("message_statuses_total", "Message statuses shown in Matrix", &self.statuses),
            ("media_in_total", "Attachments fetched for the network", &self.media_in),
            ("media_out_total", "Attachments uploaded from the network", &self.media_out),
            ("rows_pruned_total", "Finished rows and transaction IDs pruned", &self.rows_pruned),
            ("devices_unloaded_total", "Ghost devices unloaded from memory", &self.devices_unloaded),
        ];
        let mut out = String::new();
        for (name, help, c) in counters {
            let _ = writeln!(out, "# HELP tincan_appservice_{name} {help}.");
            let _ = writeln!(out, "# TYPE tincan_appservice_{name} counter");
            let _ = writeln!(out, "tincan_appservice_{name} {}", c.get());
        }
        let _ = writeln!(out, "# HELP tincan_appservice_inbox_pending Inbox events waiting to be processed.");
        let _ = writeln!(out, "# TYPE tincan_appservice_inbox_pending gauge");
        let _ = writeln!(out, "tincan_appservice_inbox_pending {}", self.inbox_pending.load(Ordering::Relaxed));
        let _ = writeln!(
            out,
            "# HELP tincan_appservice_awaiting_room_key Encrypted Matrix events waiting for their room key."
        );
        let _ = writeln!(out, "# TYPE tincan_appservice_awaiting_room_key gauge");
        let _ = writeln!(out, "tincan_appservice_awaiting_room_key {}", self.awaiting_room_key.load(Ordering::Relaxed));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters() {
        let m = Metrics::default();
        m.inc(&m.transactions);
        m.add(&m.events_recorded, 100);
        let text = m.render();
        assert!(text.contains("tincan_appservice_transactions_total 1\n"));
        assert!(text.contains("tincan_appservice_events_recorded_total 100\n"));
        assert!(text.contains("# TYPE tincan_appservice_inbox_pending gauge\n"));
        m.awaiting_room_key.store(2, Ordering::Relaxed);
        assert!(m.render().contains("tincan_appservice_awaiting_room_key 2\n"));
    }
}
