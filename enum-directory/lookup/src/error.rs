//! Errors of [`Lookup::new`](crate::Lookup::new) and [`Lookup::resolve`](crate::Lookup::resolve).

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::{Name, RecordType};
use hickory_resolver::net::NetError;

use crate::anchor::AnchorError;
use crate::routes::ConflictingKeys;

/// A configuration that cannot work; returned by [`Lookup::new`](crate::Lookup::new).
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The trust anchor is for another zone than the apex.
    #[error("the trust anchor is for {anchor}, not for the apex {apex}")]
    AnchorZoneMismatch {
        /// The configured apex.
        apex: Box<Name>,
        /// The anchor's zone.
        anchor: Box<Name>,
    },
    /// No servers configured and none found in the system configuration.
    #[error("no DNS servers configured and none found in the system configuration")]
    NoServers,
    /// Reading the system resolver configuration failed.
    #[error("reading the system resolver configuration")]
    SystemConfig(#[source] Box<NetError>),
    /// A zero timeout.
    #[error("the timeout must be above zero")]
    ZeroTimeout,
    /// The anchor text did not parse.
    #[error(transparent)]
    Anchor(#[from] AnchorError),
}

/// What makes an answer bogus.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum BogusReason {
    /// No DNSKEY of the apex matches the trust anchor (wrong anchor, or the zone's keys changed without a
    /// rollover).
    #[error("no apex DNSKEY matches the trust anchor")]
    UntrustedKeys,
    /// The apex DNSKEY RRset carries no valid signature (within its validity window) by a trusted key.
    #[error("the apex DNSKEY RRset is not signed by a trusted key")]
    UnsignedKeys,
    /// A record's signature is missing, invalid, expired or made by a key outside the chain.
    #[error("a signature is missing or does not verify")]
    BadSignature,
    /// A negative answer without a valid NSEC proof.
    #[error("the denial of existence is not proven")]
    UnprovenDenial,
}

/// Why a number could not be resolved. A number that is validated as absent is not an error: it is a
/// [`Resolution`](crate::Resolution) that is not registered.
#[derive(Debug, thiserror::Error)]
pub enum LookupError {
    /// The answer failed DNSSEC validation. Never a route.
    #[error("DNSSEC validation failed for {name} {record_type}: {reason}")]
    Bogus {
        /// The name queried.
        name: Name,
        /// The type queried.
        record_type: RecordType,
        /// What failed.
        reason: BogusReason,
    },
    /// The answer has no chain to the trust anchor (unsigned, or signed under an insecure delegation) and
    /// [`LookupConfig::allow_insecure`](crate::LookupConfig::allow_insecure) is off.
    #[error("answer for {name} {record_type} is not secured by DNSSEC")]
    Insecure {
        /// The name queried.
        name: Name,
        /// The type queried.
        record_type: RecordType,
    },
    /// The validated record publishes two different master keys.
    #[error("{name}: {source}")]
    ConflictingKeys {
        /// The number's owner name.
        name: Name,
        /// The conflict.
        #[source]
        source: ConflictingKeys,
    },
    /// No server answered in time.
    #[error("DNS query timed out")]
    Timeout,
    /// The server refused the query (wrong server, or the apex is not served there).
    #[error("the DNS server refused the query")]
    Refused,
    /// The server failed (SERVFAIL); a validating recursive resolver also says this for bogus data.
    #[error("the DNS server failed (SERVFAIL)")]
    ServerFailure,
    /// Another error response code.
    #[error("the DNS server answered {0}")]
    ErrorResponse(ResponseCode),
    /// Network I/O failed (connection refused, unreachable…).
    #[error("network error")]
    Io(#[source] std::io::Error),
    /// Any other resolver failure (malformed answers, no usable connection…).
    #[error("resolver error")]
    Resolver(#[source] NetError),
}

impl LookupError {
    /// Whether this is a DNSSEC validation failure (bogus or insecure) rather than a transport problem.
    pub fn is_validation_failure(&self) -> bool {
        matches!(self, Self::Bogus { .. } | Self::Insecure { .. })
    }
}

/// `Result` with [`LookupError`].
pub type Result<T, E = LookupError> = std::result::Result<T, E>;
