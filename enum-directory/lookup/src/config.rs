//! What a [`Lookup`](crate::Lookup) needs: servers, the apex, its trust anchor, a timeout.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hickory_proto::rr::Name;
use tincan_common::clock::{Clock, SystemClock};

use crate::anchor::TrustAnchor;

/// Configuration of a [`Lookup`](crate::Lookup).
#[derive(Debug, Clone)]
pub struct LookupConfig {
    /// DNS servers to ask: the directory (or its secondaries) directly, or a recursive resolver that passes
    /// DNSSEC records through. Empty = the system's resolvers (`/etc/resolv.conf`, feature
    /// `system-resolver`).
    pub servers: Vec<SocketAddr>,
    /// The ENUM apex, e.g. `e164.tincan.example.`.
    pub apex: Name,
    /// The trust anchor of the apex (DS or DNSKEY); its zone must be the apex.
    pub trust_anchor: TrustAnchor,
    /// Timeout of one query to one server.
    pub timeout: Duration,
    /// Queries per server before giving up.
    pub attempts: usize,
    /// Accept answers with no DNSSEC chain to the anchor, reported as
    /// [`ValidationStatus::Insecure`](crate::ValidationStatus::Insecure). Off by default: only for development
    /// setups whose directory is unsigned. Bogus answers are an error either way.
    pub allow_insecure: bool,
    /// The clock used to check the apex key signatures' validity window.
    pub clock: Arc<dyn Clock>,
}

impl LookupConfig {
    /// A configuration with defaults: 2 s timeout, 2 attempts, insecure answers refused, the system clock.
    pub fn new(servers: Vec<SocketAddr>, apex: Name, trust_anchor: TrustAnchor) -> Self {
        Self {
            servers,
            apex,
            trust_anchor,
            timeout: Duration::from_secs(2),
            attempts: 2,
            allow_insecure: false,
            clock: Arc::new(SystemClock),
        }
    }
}
