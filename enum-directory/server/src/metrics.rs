//! Operations metrics in the Prometheus text format (`GET /metrics` on the API listener): DNS queries by type
//! and response code, signatures made, zone transfers, zone size and serial, and the transparency log's size.
//!
//! The counters are plain atomics owned by their subsystems ([`dns::Metrics`], [`TransferCounters`]); this
//! module only renders them. Zone transfer code bumps [`TransferCounters`] through its small API.

use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::dns::{self, Zones};

/// What kind of zone transfer was served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transfer {
    /// A full transfer (AXFR, or IXFR answered with the whole zone).
    Axfr,
    /// An incremental transfer (IXFR from the journal).
    Ixfr,
}

/// Zone transfer counters, bumped by the transfer code.
#[derive(Debug, Default)]
pub struct TransferCounters {
    axfr: AtomicU64,
    ixfr: AtomicU64,
    refused: AtomicU64,
    notifies: AtomicU64,
}

impl TransferCounters {
    /// A transfer was served.
    pub fn served(&self, kind: Transfer) {
        match kind {
            Transfer::Axfr => &self.axfr,
            Transfer::Ixfr => &self.ixfr,
        }
        .fetch_add(1, Ordering::Relaxed);
    }

    /// A transfer request was refused (not a configured secondary, bad or missing TSIG).
    pub fn refused(&self) {
        self.refused.fetch_add(1, Ordering::Relaxed);
    }

    /// A NOTIFY to a secondary was acknowledged.
    pub fn notify_sent(&self) {
        self.notifies.fetch_add(1, Ordering::Relaxed);
    }
}

/// Counters of the journal follower and of refreshed signatures written back to storage.
#[derive(Debug, Default)]
pub struct FollowCounters {
    applied: AtomicU64,
    persisted: AtomicU64,
    dropped: AtomicU64,
}

impl FollowCounters {
    /// `n` numbers changed in the zone by changes found in the journal (made by another process or node).
    pub fn applied(&self, n: u64) {
        self.applied.fetch_add(n, Ordering::Relaxed);
    }

    /// `n` numbers' refreshed signatures were stored.
    pub fn persisted(&self, n: u64) {
        self.persisted.fetch_add(n, Ordering::Relaxed);
    }

    /// A refreshed entry was not queued for storing (the queue was full): it is signed again after a restart.
    pub fn dropped(&self) {
        self.dropped.fetch_add(1, Ordering::Relaxed);
    }
}

/// Everything `/metrics` reports.
#[derive(Debug, Default)]
pub struct DirectoryMetrics {
    /// The DNS server's counters.
    pub dns: Arc<dns::Metrics>,
    /// Zone transfers (shared with the transfer code).
    pub transfers: Arc<TransferCounters>,
    /// The zones served (for their size, serial and signature counts).
    pub zones: Arc<Zones>,
    /// The journal follower and the storing of refreshed signatures.
    pub follow: Arc<FollowCounters>,
}

impl DirectoryMetrics {
    /// Metrics over the DNS server's counters and zones.
    pub fn new(dns: Arc<dns::Metrics>, zones: Arc<Zones>) -> Self {
        DirectoryMetrics { dns, transfers: Arc::default(), zones, follow: Arc::default() }
    }

    /// The Prometheus text exposition (format 0.0.4); `log_size` is the transparency log's size.
    pub fn render(&self, log_size: u64) -> String {
        let mut out = String::new();
        let s = self.dns.snapshot();
        let mut family = |name: &str, kind: &str, help: &str, samples: &[(String, u64)]| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
            for (labels, v) in samples {
                let _ = writeln!(out, "{name}{labels} {v}");
            }
        };
        let plain = |v: u64| vec![(String::new(), v)];
        family(
            "tincan_directory_dns_queries_total",
            "counter",
            "DNS queries received, by query type.",
            &s.by_qtype.iter().map(|(t, v)| (format!("{{qtype=\"{t}\"}}"), *v)).collect::<Vec<_>>(),
        );
        family(
            "tincan_directory_dns_responses_total",
            "counter",
            "DNS responses sent, by response code.",
            &s.by_rcode.iter().map(|(c, v)| (format!("{{rcode=\"{}\"}}", rcode_name(*c)), *v)).collect::<Vec<_>>(),
        );
        family(
            "tincan_directory_dns_transport_queries_total",
            "counter",
            "DNS queries received, by transport.",
            &[("{transport=\"udp\"}".into(), s.udp_queries), ("{transport=\"tcp\"}".into(), s.tcp_queries)],
        );
        family("tincan_directory_dns_dropped_total", "counter", "Requests dropped unanswered.", &plain(s.dropped));
        family("tincan_directory_dns_truncated_total", "counter", "UDP answers truncated.", &plain(s.truncated));
        family(
            "tincan_directory_dns_rrl_total",
            "counter",
            "Answers withheld or slipped by response rate limiting.",
            &[("{action=\"drop\"}".into(), s.rrl_dropped), ("{action=\"slip\"}".into(), s.rrl_slipped)],
        );
        family(
            "tincan_directory_dns_signing_budget_exceeded_total",
            "counter",
            "Denials the global signing budget had no signature left for (UDP: truncated, TCP: SERVFAIL).",
            &plain(s.signing_budget_exceeded),
        );
        family(
            "tincan_directory_dns_tcp_refused_total",
            "counter",
            "TCP connections closed at once: their client had dns.server.tcp_max_connections_per_client open.",
            &plain(s.tcp_refused),
        );
        let zones = self.zones.all();
        let per_zone = |f: &dyn Fn(&dns::Zone) -> u64| -> Vec<(String, u64)> {
            zones.iter().map(|z| (format!("{{zone=\"{}\"}}", z.apex_name()), f(z))).collect()
        };
        family(
            "tincan_directory_signatures_total",
            "counter",
            "DNSSEC signatures made (RRsets signed at write time or refresh, and online-signed denials).",
            &per_zone(&|z| z.keys().signatures_made()),
        );
        family("tincan_directory_zone_numbers", "gauge", "Numbers in the zone.", &per_zone(&|z| z.len() as u64));
        family(
            "tincan_directory_zone_serial",
            "gauge",
            "The zone's SOA serial.",
            &per_zone(&|z| u64::from(z.serial())),
        );
        let t = &self.transfers;
        let l = |a: &AtomicU64| a.load(Ordering::Relaxed);
        family(
            "tincan_directory_transfers_total",
            "counter",
            "Zone transfers served, by kind, and requests refused.",
            &[
                ("{kind=\"axfr\"}".into(), l(&t.axfr)),
                ("{kind=\"ixfr\"}".into(), l(&t.ixfr)),
                ("{kind=\"refused\"}".into(), l(&t.refused)),
            ],
        );
        family("tincan_directory_notifies_total", "counter", "NOTIFY messages acknowledged.", &plain(l(&t.notifies)));
        let f = &self.follow;
        family(
            "tincan_directory_follower_changes_total",
            "counter",
            "Numbers changed in the zone by changes another process or node wrote to the journal.",
            &plain(l(&f.applied)),
        );
        family(
            "tincan_directory_refreshed_signatures_stored_total",
            "counter",
            "Numbers whose refreshed signatures were stored (and whose refreshes could not be queued for storing).",
            &[("{result=\"stored\"}".into(), l(&f.persisted)), ("{result=\"dropped\"}".into(), l(&f.dropped))],
        );
        family("tincan_directory_log_entries", "gauge", "Entries in the transparency log.", &plain(log_size));
        out
    }
}

fn rcode_name(c: u16) -> String {
    match c {
        0 => "NOERROR".into(),
        1 => "FORMERR".into(),
        2 => "SERVFAIL".into(),
        3 => "NXDOMAIN".into(),
        4 => "NOTIMP".into(),
        5 => "REFUSED".into(),
        9 => "NOTAUTH".into(),
        16 => "BADSIG".into(),
        other => other.to_string(),
    }
}
