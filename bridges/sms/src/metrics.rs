//! Prometheus metrics of the SMS side, served at `GET /metrics` on `sms.listen` (the core serves its own on the
//! AS API listener): counters kept in atomics, the links' state and the outbox gauges read at scrape time.

use crate::bridge::outbound::Refusal;
use crate::link::LinkStatus;
use std::fmt::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// The counters; cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct Metrics(Arc<Counters>);

/// Every counter.
#[derive(Debug, Default)]
pub struct Counters {
    /// Matrix messages stored in the outbox.
    pub messages_out: AtomicU64,
    /// Their segments.
    pub segments_out: AtomicU64,
    /// Matrix messages refused, by reason.
    pub refused_premium: AtomicU64,
    /// Refused: blocked prefix.
    pub refused_blocked: AtomicU64,
    /// Refused: the recipient opted out.
    pub refused_opted_out: AtomicU64,
    /// Refused: rate limit.
    pub refused_rate: AtomicU64,
    /// Refused: no credit or no price.
    pub refused_billing: AtomicU64,
    /// Refused: anything else (not a number, no sender number, text too long, media).
    pub refused_other: AtomicU64,
    /// Gateway unreachable while reserving.
    pub billing_errors: AtomicU64,
    /// Inbound short messages (parts count one each).
    pub parts_in: AtomicU64,
    /// Inbound messages handed to Matrix.
    pub messages_in: AtomicU64,
    /// Long inbound messages delivered with parts missing.
    pub partial_in: AtomicU64,
    /// Inbound messages to numbers nobody holds.
    pub unrouted: AtomicU64,
    /// STOPs recorded.
    pub opt_outs: AtomicU64,
    /// Deliveries shown in Matrix.
    pub delivered: AtomicU64,
    /// Failures shown in Matrix.
    pub failed: AtomicU64,
    /// Images sent as links (`sms.mms.images_as_links`).
    pub image_links: AtomicU64,
    /// MMS the carrier's API took (`sms.mms.api_url`).
    pub mms_out: AtomicU64,
}

impl std::ops::Deref for Metrics {
    type Target = Counters;
    fn deref(&self) -> &Counters {
        &self.0
    }
}

impl Metrics {
    /// Adds one.
    pub fn inc(&self, c: &AtomicU64) {
        c.fetch_add(1, Ordering::Relaxed);
    }

    /// Adds `n`.
    pub fn add(&self, c: &AtomicU64, n: u64) {
        c.fetch_add(n, Ordering::Relaxed);
    }

    /// Counts a refusal under its reason.
    pub fn refused(&self, r: &Refusal) {
        self.inc(match r {
            Refusal::Premium(_) => &self.refused_premium,
            Refusal::Blocked(_) => &self.refused_blocked,
            Refusal::OptedOut { .. } => &self.refused_opted_out,
            Refusal::RateLimited(_) => &self.refused_rate,
            Refusal::Billing(_) => &self.refused_billing,
            _ => &self.refused_other,
        });
    }

    /// The text exposition, with the links and the outbox gauges.
    pub fn render(
        &self,
        links: &[LinkStatus],
        pending_segments: u64,
        possible_duplicates: u64,
        mms_possible_duplicates: u64,
    ) -> String {
        let mut o = String::new();
        let g = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let mut counter = |name: &str, help: &str, samples: &[(&str, u64)]| {
            let _ = writeln!(o, "# HELP tincan_sms_{name} {help}\n# TYPE tincan_sms_{name} counter");
            for (labels, v) in samples {
                let _ = writeln!(o, "tincan_sms_{name}{labels} {v}");
            }
        };
        counter("messages_out_total", "Matrix messages taken into the outbox.", &[("", g(&self.messages_out))]);
        counter("segments_out_total", "Segments of those messages.", &[("", g(&self.segments_out))]);
        counter(
            "refused_total",
            "Matrix messages refused before sending, by reason.",
            &[
                ("{reason=\"premium\"}", g(&self.refused_premium)),
                ("{reason=\"blocked\"}", g(&self.refused_blocked)),
                ("{reason=\"opted_out\"}", g(&self.refused_opted_out)),
                ("{reason=\"rate_limited\"}", g(&self.refused_rate)),
                ("{reason=\"billing\"}", g(&self.refused_billing)),
                ("{reason=\"other\"}", g(&self.refused_other)),
            ],
        );
        counter("billing_errors_total", "Reservations the gateway could not answer.", &[("", g(&self.billing_errors))]);
        counter("parts_in_total", "Inbound short messages (each part counts).", &[("", g(&self.parts_in))]);
        counter("messages_in_total", "Inbound messages handed to Matrix.", &[("", g(&self.messages_in))]);
        counter(
            "partial_in_total",
            "Long inbound messages delivered with parts missing.",
            &[("", g(&self.partial_in))],
        );
        counter("unrouted_in_total", "Inbound messages to numbers nobody holds.", &[("", g(&self.unrouted))]);
        counter("opt_outs_total", "STOP keywords recorded.", &[("", g(&self.opt_outs))]);
        counter("image_links_total", "Images sent as links.", &[("", g(&self.image_links))]);
        counter("mms_out_total", "MMS the carrier's API took.", &[("", g(&self.mms_out))]);
        counter(
            "status_reported_total",
            "Message states shown in Matrix.",
            &[("{state=\"delivered\"}", g(&self.delivered)), ("{state=\"failed\"}", g(&self.failed))],
        );
        let mut link = |name: &str, kind: &str, help: &str, f: &dyn Fn(&LinkStatus) -> u64| {
            let _ = writeln!(o, "# HELP tincan_sms_link_{name} {help}\n# TYPE tincan_sms_link_{name} {kind}");
            for l in links {
                let _ = writeln!(o, "tincan_sms_link_{name}{{smsc=\"{}\"}} {}", l.name, f(l));
            }
        };
        link("up", "gauge", "1 when a session is bound.", &|l| u64::from(l.up));
        link("in_flight", "gauge", "submit_sm awaiting an answer.", &|l| l.in_flight as u64);
        link("binds_total", "counter", "Successful binds.", &|l| l.binds);
        link("drops_total", "counter", "Sessions lost.", &|l| l.drops);
        link("submitted_total", "counter", "submit_sm accepted.", &|l| l.submitted);
        link("throttled_total", "counter", "ESME_RTHROTTLED / ESME_RMSGQFUL answers.", &|l| l.throttled);
        link("rejected_total", "counter", "submit_sm refused for good.", &|l| l.rejected);
        link("uncertain_total", "counter", "submit_sm with an unknown outcome (resent).", &|l| l.uncertain);
        link("received_total", "counter", "deliver_sm received.", &|l| l.received);
        let _ = writeln!(o, "# HELP tincan_sms_outbox_pending_segments Segments not yet accepted or refused.");
        let _ = writeln!(
            o,
            "# TYPE tincan_sms_outbox_pending_segments gauge\ntincan_sms_outbox_pending_segments {pending_segments}"
        );
        let _ = writeln!(
            o,
            "# HELP tincan_sms_possible_duplicates Segments resent after an unknown outcome and then accepted."
        );
        let _ = writeln!(
            o,
            "# TYPE tincan_sms_possible_duplicates gauge\ntincan_sms_possible_duplicates {possible_duplicates}"
        );
        let _ = writeln!(
            o,
            "# HELP tincan_sms_mms_possible_duplicates MMS asked for again after an attempt without an answer, then \
             taken by the carrier.\n# TYPE tincan_sms_mms_possible_duplicates gauge\n\
             tincan_sms_mms_possible_duplicates {mms_possible_duplicates}"
        );
        o
    }
}
