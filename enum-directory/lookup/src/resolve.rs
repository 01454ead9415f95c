//! `Lookup::resolve`: NAPTR and TXT for one number through hickory's validating resolver.

use std::net::SocketAddr;
use std::sync::Arc;

use hickory_proto::dnssec::rdata::{DNSKEY, DNSSECRData};
use hickory_proto::dnssec::{Proof, TrustAnchors};
use hickory_proto::op::ResponseCode;
use hickory_proto::rr::rdata::{NAPTR, TXT};
use hickory_proto::rr::{LowerName, Name, RData, Record, RecordType};
use hickory_resolver::TokioResolver;
use hickory_resolver::config::{NameServerConfig, ResolveHosts, ResolverConfig};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::net::{DnsError, NetError, NoRecords};
use tincan_enum_core::{E164, MasterKey, owner_name};
use tokio::sync::Mutex;

use crate::config::LookupConfig;
use crate::error::{BogusReason, ConfigError, LookupError, Result};
use crate::keys::{self, ApexKeys};
use crate::routes::{Routes, key_from_txts};

/// RFC 9824 NXNAME meta-type: in the NSEC bitmap of a compact denial, "this name does not exist".
pub const NXNAME: u16 = 128;

/// How an answer was validated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ValidationStatus {
    /// Every record (or the denial) is signed in a chain from the trust anchor.
    Secure,
    /// No chain to the anchor; only returned when [`LookupConfig::allow_insecure`] is on.
    Insecure,
}

/// What the directory says about a number, validated.
///
/// A number the directory does not hold is **not an error**: it is a `Resolution` whose routes are empty and
/// whose key is `None` ([`Resolution::is_registered`] is false), validated like any other answer (a compact
/// denial, RFC 9824, or an NSEC proof).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolution {
    /// The number looked up.
    pub number: E164,
    /// Where it can be reached.
    pub routes: Routes,
    /// The owner's master cross-signing key (`v=tc1` TXT), if published.
    pub key: Option<MasterKey>,
    /// How the answer was validated.
    pub status: ValidationStatus,
}

impl Resolution {
    /// Whether the directory holds anything for the number (a route or a key).
    pub fn is_registered(&self) -> bool {
        !self.routes.is_empty() || self.key.is_some()
    }
}

/// A resolver and the apex keys it trusts.
#[derive(Clone)]
struct Validator {
    resolver: TokioResolver,
    keys: Vec<DNSKEY>,
    /// False only for an unsigned apex accepted through `allow_insecure`: no validation at all.
    secure: bool,
    expires_unix: u64,
}

/// Resolves phone numbers in one ENUM apex and validates the answers up to the configured trust anchor.
/// Cheap to clone (shared state); keeps a cache of answers for their TTL.
#[derive(Clone)]
pub struct Lookup {
    inner: Arc<Inner>,
}

struct Inner {
    config: LookupConfig,
    servers: Vec<SocketAddr>,
    validator: Mutex<Option<Validator>>,
}

impl std::fmt::Debug for Lookup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lookup").field("apex", &self.inner.config.apex).field("servers", &self.inner.servers).finish()
    }
}

impl Lookup {
    /// Checks the configuration; no network traffic until the first [`Lookup::resolve`].
    pub fn new(mut config: LookupConfig) -> Result<Self, ConfigError> {
        config.apex.set_fqdn(true);
        if *config.trust_anchor.zone() != config.apex {
            return Err(ConfigError::AnchorZoneMismatch {
                apex: Box::new(config.apex.clone()),
                anchor: Box::new(config.trust_anchor.zone().clone()),
            });
        }
        if config.timeout.is_zero() {
            return Err(ConfigError::ZeroTimeout);
        }
        let servers = if config.servers.is_empty() { system_servers()? } else { config.servers.clone() };
        if servers.is_empty() {
            return Err(ConfigError::NoServers);
        }
        Ok(Self { inner: Arc::new(Inner { config, servers, validator: Mutex::new(None) }) })
    }

    /// The apex this lookup resolves in.
    pub fn apex(&self) -> &Name {
        &self.inner.config.apex
    }

    /// The DNS servers it asks (the configured ones, or the system's).
    pub fn servers(&self) -> &[SocketAddr] {
        &self.inner.servers
    }

    /// Resolves `number`: its NAPTR and TXT records, validated. A bogus answer (bad or missing signature,
    /// wrong key, unproven denial) is [`LookupError::Bogus`], never a route.
    pub async fn resolve(&self, number: &E164) -> Result<Resolution> {
        let name = owner_name(number, &self.inner.config.apex);
        let validator = self.validator(false).await?;
        match self.query_both(&validator, number, &name).await {
            // The apex keys may have changed (a rollover) since they were fetched: fetch them again, and retry
            // once if they did. Trust still comes only from the configured anchor.
            Err(err @ LookupError::Bogus { reason: BogusReason::BadSignature, .. }) => {
                let fresh = self.validator(true).await?;
                if fresh.keys == validator.keys {
                    return Err(err);
                }
                tracing::info!(apex = %self.inner.config.apex, "apex DNSKEY set changed; retrying");
                self.query_both(&fresh, number, &name).await
            }
            other => other,
        }
    }

    fn now(&self) -> u64 {
        self.inner.config.clock.unix_seconds()
    }

    async fn query_both(&self, v: &Validator, number: &E164, name: &Name) -> Result<Resolution> {
        let (naptr, txt) = if v.secure {
            tokio::join!(query(&v.resolver, name, RecordType::NAPTR), query(&v.resolver, name, RecordType::TXT))
        } else {
            tokio::join!(
                query_unvalidated(&v.resolver, name, RecordType::NAPTR),
                query_unvalidated(&v.resolver, name, RecordType::TXT)
            )
        };
        let (naptr, naptr_status) = naptr?;
        let (txt, txt_status) = txt?;
        let status = if naptr_status == ValidationStatus::Secure && txt_status == ValidationStatus::Secure {
            ValidationStatus::Secure
        } else if self.inner.config.allow_insecure {
            ValidationStatus::Insecure
        } else {
            let record_type =
                if naptr_status == ValidationStatus::Secure { RecordType::TXT } else { RecordType::NAPTR };
            return Err(LookupError::Insecure { name: name.clone(), record_type });
        };
        let naptrs: Vec<&NAPTR> = naptr
            .iter()
            .filter_map(|r| match r {
                RData::NAPTR(n) => Some(n),
                _ => None,
            })
            .collect();
        let txts: Vec<&TXT> = txt
            .iter()
            .filter_map(|r| match r {
                RData::TXT(t) => Some(t),
                _ => None,
            })
            .collect();
        let routes = Routes::from_naptrs(naptrs);
        let key = key_from_txts(txts).map_err(|source| LookupError::ConflictingKeys { name: name.clone(), source })?;
        Ok(Resolution { number: number.clone(), routes, key, status })
    }

    /// The current validator, fetching the apex keys when there are none, they expired, or `force`.
    async fn validator(&self, force: bool) -> Result<Validator> {
        let mut slot = self.inner.validator.lock().await;
        let now = self.now();
        if let Some(v) = slot.as_ref().filter(|v| !force && v.expires_unix > now) {
            return Ok(v.clone());
        }
        let cfg = &self.inner.config;
        let fetched = keys::fetch(&self.inner.servers, &cfg.apex, &cfg.trust_anchor, cfg.timeout, now).await;
        let ApexKeys { keys, ttl } = match fetched {
            Err(LookupError::Insecure { .. }) if cfg.allow_insecure => {
                tracing::warn!(apex = %cfg.apex, "apex is unsigned; answers are insecure (allow_insecure is on)");
                let resolver = build_resolver(&self.inner.servers, cfg, None).map_err(LookupError::Resolver)?;
                let v = Validator { resolver, keys: vec![], secure: false, expires_unix: now + 60 };
                *slot = Some(v.clone());
                return Ok(v);
            }
            other => other?,
        };
        // Re-check the keys at least every 5 minutes, whatever their TTL, so a rollover is picked up.
        let ttl = ttl.as_secs().clamp(1, 300);
        let mut anchors = TrustAnchors::empty();
        for key in &keys {
            anchors.insert_with_name(key.public_key(), LowerName::from(&cfg.apex));
        }
        let resolver = build_resolver(&self.inner.servers, cfg, Some(anchors)).map_err(LookupError::Resolver)?;
        let v = Validator { resolver, keys, secure: true, expires_unix: now + ttl };
        *slot = Some(v.clone());
        Ok(v)
    }
}

/// A resolver configuration asking exactly `servers`, each on its own port, over UDP falling back to TCP: what this
/// library and SIP's RFC 3263 resolution (tincan-sip-core) start their resolvers from.
pub fn name_servers(servers: &[SocketAddr]) -> ResolverConfig {
    ResolverConfig::from_name_servers(
        servers
            .iter()
            .map(|addr| {
                let mut ns = NameServerConfig::udp_and_tcp(addr.ip());
                for conn in &mut ns.connections {
                    conn.port = addr.port();
                }
                ns
            })
            .collect(),
    )
}

fn build_resolver(
    servers: &[SocketAddr],
    cfg: &LookupConfig,
    anchors: Option<TrustAnchors>,
) -> std::result::Result<TokioResolver, NetError> {
    let mut builder = TokioResolver::builder_with_config(name_servers(servers), TokioRuntimeProvider::default());
    let validate = anchors.is_some();
    if let Some(anchors) = anchors {
        builder = builder.with_trust_anchor(Arc::new(anchors));
    }
    let opts = builder.options_mut();
    opts.timeout = cfg.timeout;
    opts.attempts = cfg.attempts.max(1);
    opts.use_hosts_file = ResolveHosts::Never;
    opts.edns0 = true;
    opts.validate = validate;
    opts.try_tcp_on_error = true;
    opts.num_concurrent_reqs = 1;
    builder.build()
}

/// One validated query: the records of `rtype` (empty for a proven denial) and how they were validated.
async fn query(resolver: &TokioResolver, name: &Name, rtype: RecordType) -> Result<(Vec<RData>, ValidationStatus)> {
    let bogus = |reason| LookupError::Bogus { name: name.clone(), record_type: rtype, reason };
    match resolver.lookup(name.clone(), rtype).await {
        Ok(lookup) => {
            let records: Vec<&Record> = lookup.answers().iter().filter(|r| r.record_type() == rtype).collect();
            let mut status = ValidationStatus::Secure;
            for r in &records {
                match r.proof {
                    Proof::Secure => {}
                    Proof::Insecure => status = ValidationStatus::Insecure,
                    Proof::Bogus | Proof::Indeterminate => return Err(bogus(BogusReason::BadSignature)),
                }
            }
            Ok((records.into_iter().map(|r| r.data.clone()).collect(), status))
        }
        Err(NetError::Dns(DnsError::NoRecordsFound(no_records))) => denial(name, rtype, &no_records),
        Err(NetError::Dns(DnsError::DnssecBogus)) => Err(bogus(BogusReason::BadSignature)),
        Err(NetError::Dns(DnsError::Nsec { proof: Proof::Insecure, .. })) => Ok((vec![], ValidationStatus::Insecure)),
        Err(NetError::Dns(DnsError::Nsec { .. })) => Err(bogus(BogusReason::UnprovenDenial)),
        Err(e) => Err(net_error(e)),
    }
}

/// One query without validation (unsigned apex, `allow_insecure`): everything is `Insecure`.
async fn query_unvalidated(
    resolver: &TokioResolver,
    name: &Name,
    rtype: RecordType,
) -> Result<(Vec<RData>, ValidationStatus)> {
    match resolver.lookup(name.clone(), rtype).await {
        Ok(lookup) => Ok((
            lookup.answers().iter().filter(|r| r.record_type() == rtype).map(|r| r.data.clone()).collect(),
            ValidationStatus::Insecure,
        )),
        Err(NetError::Dns(DnsError::NoRecordsFound(_))) => Ok((vec![], ValidationStatus::Insecure)),
        Err(e) => Err(net_error(e)),
    }
}

/// A negative answer that the validator let through: accept it only with a secure NSEC/NSEC3 in it.
fn denial(name: &Name, rtype: RecordType, no_records: &NoRecords) -> Result<(Vec<RData>, ValidationStatus)> {
    let authorities: &[Record] = no_records.authorities.as_deref().unwrap_or_default();
    let proven = authorities
        .iter()
        .any(|r| r.proof == Proof::Secure && matches!(r.record_type(), RecordType::NSEC | RecordType::NSEC3));
    if proven {
        tracing::debug!(
            %name, %rtype, nxname = is_nonexistent(name, no_records.response_code, authorities),
            "validated denial"
        );
        return Ok((vec![], ValidationStatus::Secure));
    }
    if !authorities.is_empty() && authorities.iter().all(|r| r.proof == Proof::Insecure) {
        return Ok((vec![], ValidationStatus::Insecure));
    }
    Err(LookupError::Bogus { name: name.clone(), record_type: rtype, reason: BogusReason::UnprovenDenial })
}

/// Whether a validated denial says the name itself does not exist: NXDOMAIN, or a compact denial (RFC 9824:
/// NODATA whose NSEC, owned by the name, lists NXNAME).
pub(crate) fn is_nonexistent(name: &Name, code: ResponseCode, authorities: &[Record]) -> bool {
    code == ResponseCode::NXDomain
        || authorities.iter().any(|r| match &r.data {
            RData::DNSSEC(DNSSECRData::NSEC(nsec)) => {
                r.name == *name && nsec.type_set().contains(RecordType::from(NXNAME))
            }
            _ => false,
        })
}

/// Transport and server errors.
pub(crate) fn net_error(e: NetError) -> LookupError {
    match e {
        NetError::Timeout => LookupError::Timeout,
        NetError::Dns(DnsError::ResponseCode(ResponseCode::Refused)) => LookupError::Refused,
        NetError::Dns(DnsError::ResponseCode(ResponseCode::ServFail)) => LookupError::ServerFailure,
        NetError::Dns(DnsError::ResponseCode(code)) => LookupError::ErrorResponse(code),
        NetError::Io(io) => LookupError::Io(std::io::Error::new(io.kind(), io.to_string())),
        other => LookupError::Resolver(other),
    }
}

#[cfg(feature = "system-resolver")]
fn system_servers() -> Result<Vec<SocketAddr>, ConfigError> {
    let (config, _) =
        hickory_resolver::system_conf::read_system_conf().map_err(|e| ConfigError::SystemConfig(Box::new(e)))?;
    Ok(config
        .name_servers()
        .iter()
        .filter_map(|ns| ns.connections.first().map(|c| SocketAddr::new(ns.ip, c.port)))
        .collect())
}

#[cfg(not(feature = "system-resolver"))]
fn system_servers() -> Result<Vec<SocketAddr>, ConfigError> {
    Err(ConfigError::NoServers)
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_proto::dnssec::rdata::NSEC;

    fn nsec(owner: &Name, types: &[RecordType]) -> Record {
        let next = owner.prepend_label("x").unwrap(); // any successor: only the owner and bitmap matter
        Record::from_rdata(owner.clone(), 300, RData::DNSSEC(DNSSECRData::NSEC(NSEC::new(next, types.to_vec()))))
    }

    #[test]
    fn nxname_in_the_bitmap_means_no_such_name() {
        let name = Name::from_ascii("3.0.0.0.6.4.9.7.0.2.4.4.e164.tincan.test.").unwrap();
        let other = Name::from_ascii("4.0.0.0.6.4.9.7.0.2.4.4.e164.tincan.test.").unwrap();
        let compact = nsec(&name, &[RecordType::RRSIG, RecordType::NSEC, RecordType::from(NXNAME)]);
        let nodata = nsec(&name, &[RecordType::NAPTR, RecordType::RRSIG, RecordType::NSEC]);
        assert!(is_nonexistent(&name, ResponseCode::NoError, std::slice::from_ref(&compact)));
        assert!(!is_nonexistent(&name, ResponseCode::NoError, std::slice::from_ref(&nodata)));
        assert!(is_nonexistent(&name, ResponseCode::NXDomain, &[]));
        // An NXNAME NSEC for another name says nothing about this one.
        assert!(!is_nonexistent(&other, ResponseCode::NoError, &[compact]));
    }

    #[test]
    fn transport_errors_are_typed() {
        assert!(matches!(net_error(NetError::Timeout), LookupError::Timeout));
        assert!(matches!(
            net_error(NetError::Dns(DnsError::ResponseCode(ResponseCode::Refused))),
            LookupError::Refused
        ));
        assert!(matches!(
            net_error(NetError::Dns(DnsError::ResponseCode(ResponseCode::ServFail))),
            LookupError::ServerFailure
        ));
        assert!(matches!(
            net_error(NetError::Dns(DnsError::ResponseCode(ResponseCode::FormErr))),
            LookupError::ErrorResponse(ResponseCode::FormErr)
        ));
    }
}
