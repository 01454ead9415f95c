//! RFC 3263 "Locating SIP Servers": a SIP URI → the ordered list of (transport, address) to try.
//!
//! - an IP literal host: that address, the URI's port or the transport's default;
//! - a host with a port: its A/AAAA records, that port;
//! - a host with a `transport` parameter but no port: SRV for that transport, else A/AAAA;
//! - otherwise NAPTR (`SIP+D2U`, `SIP+D2T`, `SIPS+D2T`, `SIP+D2W`, `SIPS+D2W`, flag `s`) → SRV → A/AAAA, else
//!   SRV of each transport we speak, else A/AAAA on UDP (TLS for `sips:`).
//!
//! SRV targets are ordered by priority and, within a priority, by RFC 2782's weighted random draw; the
//! caller fails over down the list (RFC 3263 §4.3). The planning is pure (a [`Dns`] answers the queries) so
//! every branch is unit-tested; [`HickoryDns`] is the real resolver.

use crate::stack::{Target, Transport};
use crate::uri::{Host, SipUri};
use async_trait::async_trait;
use hickory_proto::rr::{Name, RData, RecordType};
use hickory_resolver::TokioResolver;
use hickory_resolver::config::ResolveHosts;
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::net::{DnsError, NetError};
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

/// Why a URI could not be resolved.
#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    /// DNS failed (timeout, SERVFAIL…), as opposed to answering that nothing exists.
    #[error("DNS lookup of {name} {rtype} failed: {reason}")]
    Dns {
        /// The name.
        name: String,
        /// The type.
        rtype: &'static str,
        /// What went wrong.
        reason: String,
    },
    /// DNS answered, but nothing usable: no address for any target.
    #[error("{0} resolves to no address")]
    NoAddress(String),
    /// A host name that is not a DNS name.
    #[error("invalid host name {0:?}")]
    Name(String),
    /// `sips:` with a transport other than TLS/WSS.
    #[error("sips: URI with a non-secure transport")]
    InsecureSips,
}

/// Resolution result.
pub type Result<T, E = ResolveError> = std::result::Result<T, E>;

/// A NAPTR record, as far as RFC 3263 reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Naptr {
    /// Order.
    pub order: u16,
    /// Preference.
    pub preference: u16,
    /// Flags (`s` for an SRV replacement).
    pub flags: String,
    /// Service (`SIP+D2U`…).
    pub service: String,
    /// Replacement (the SRV owner name).
    pub replacement: String,
}

/// An SRV record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Srv {
    /// Priority (lower first).
    pub priority: u16,
    /// Weight within a priority.
    pub weight: u16,
    /// Port.
    pub port: u16,
    /// Target host (`.` means "no service here").
    pub target: String,
}

/// The queries RFC 3263 needs. Empty vectors mean "no such records" (NXDOMAIN or NODATA).
#[async_trait]
pub trait Dns: Send + Sync {
    /// NAPTR records of `name`.
    async fn naptr(&self, name: &str) -> Result<Vec<Naptr>>;
    /// SRV records of `name`.
    async fn srv(&self, name: &str) -> Result<Vec<Srv>>;
    /// A and AAAA records of `name`.
    async fn ips(&self, name: &str) -> Result<Vec<IpAddr>>;
}

/// Resolves `uri` to the targets to try, in order. `transports` are those we can send on (a NAPTR or SRV
/// for another is skipped); `rand` draws SRV weights (0..=u32::MAX).
pub async fn resolve(
    dns: &dyn Dns,
    uri: &SipUri,
    transports: &[Transport],
    mut rand: impl FnMut() -> u32 + Send,
) -> Result<Vec<Target>> {
    let param = uri.param("transport").and_then(Transport::from_param);
    if uri.secure && matches!(param, Some(t) if !t.is_secure()) {
        return Err(ResolveError::InsecureSips);
    }
    let default_transport = || if uri.secure { Transport::Tls } else { Transport::Udp };
    // RFC 3263 §4.1-4.2: an IP literal or an explicit port skips NAPTR and SRV.
    if let Some(ip) = uri.host.ip() {
        let t = param.unwrap_or_else(default_transport);
        return Ok(vec![Target { transport: t, addr: SocketAddr::new(ip, uri.port.unwrap_or(t.default_port())) }]);
    }
    let Host::Domain(domain) = &uri.host else { unreachable!("ip() covered the other variants") };
    if let Some(port) = uri.port {
        let t = param.unwrap_or_else(default_transport);
        return addresses(dns, domain, port, t).await;
    }
    let usable = |t: Transport| transports.contains(&t) && (!uri.secure || t.is_secure());
    let mut srv_names: Vec<(Transport, String)> = Vec::new();
    if let Some(t) = param {
        srv_names.push((t, srv_name(t, domain)));
    } else {
        let mut naptrs: Vec<Naptr> = dns
            .naptr(domain)
            .await?
            .into_iter()
            .filter(|n| n.flags.eq_ignore_ascii_case("s"))
            .filter(|n| Transport::from_naptr_service(&n.service).is_some_and(usable))
            .collect();
        naptrs.sort_by_key(|n| (n.order, n.preference));
        srv_names.extend(naptrs.into_iter().filter_map(|n| {
            let t = Transport::from_naptr_service(&n.service)?;
            Some((t, n.replacement.trim_end_matches('.').to_owned()))
        }));
        if srv_names.is_empty() {
            // §4.1: no NAPTR: SRV of each transport we support, in our preference order.
            for t in [Transport::Tls, Transport::Tcp, Transport::Udp] {
                if usable(t) {
                    srv_names.push((t, srv_name(t, domain)));
                }
            }
        }
    }
    let mut out = Vec::new();
    for (t, name) in srv_names {
        let mut records: Vec<Srv> = dns.srv(&name).await?;
        if records.len() == 1 && records[0].target.trim_end_matches('.').is_empty() {
            continue; // RFC 2782: target "." = decidedly not available
        }
        records.retain(|r| !r.target.trim_end_matches('.').is_empty());
        for r in order_srv(records, &mut rand) {
            for ip in dns.ips(r.target.trim_end_matches('.')).await? {
                let target = Target { transport: t, addr: SocketAddr::new(ip, r.port) };
                if !out.contains(&target) {
                    out.push(target);
                }
            }
        }
    }
    if !out.is_empty() {
        return Ok(out);
    }
    let t = param.unwrap_or_else(default_transport);
    addresses(dns, domain, t.default_port(), t).await
}

async fn addresses(dns: &dyn Dns, domain: &str, port: u16, t: Transport) -> Result<Vec<Target>> {
    let ips = dns.ips(domain).await?;
    if ips.is_empty() {
        return Err(ResolveError::NoAddress(domain.to_owned()));
    }
    Ok(ips.into_iter().map(|ip| Target { transport: t, addr: SocketAddr::new(ip, port) }).collect())
}

fn srv_name(t: Transport, domain: &str) -> String {
    match t {
        Transport::Udp => format!("_sip._udp.{domain}"),
        Transport::Tcp => format!("_sip._tcp.{domain}"),
        Transport::Tls => format!("_sips._tcp.{domain}"),
        Transport::Ws => format!("_sip._ws.{domain}"),
        Transport::Wss => format!("_sips._ws.{domain}"),
    }
}

/// RFC 2782 ordering: ascending priority; within a priority, repeatedly draw one record with probability
/// proportional to its weight (zero-weight records keep a small chance, placed first as the RFC asks).
pub fn order_srv(mut records: Vec<Srv>, rand: &mut impl FnMut() -> u32) -> Vec<Srv> {
    records.sort_by_key(|r| (r.priority, r.weight != 0));
    let mut out = Vec::with_capacity(records.len());
    while !records.is_empty() {
        let prio = records[0].priority;
        let mut group: Vec<Srv> = Vec::new();
        records.retain(|r| {
            if r.priority == prio {
                group.push(r.clone());
                false
            } else {
                true
            }
        });
        while !group.is_empty() {
            let total: u64 = group.iter().map(|r| u64::from(r.weight)).sum();
            let pick = if total == 0 {
                0
            } else {
                let draw = u64::from(rand()) % (total + 1);
                let mut running = 0u64;
                group
                    .iter()
                    .position(|r| {
                        running += u64::from(r.weight);
                        running >= draw
                    })
                    .unwrap_or(group.len() - 1)
            };
            out.push(group.remove(pick));
        }
    }
    out
}

/// [`Dns`] on hickory's resolver, asking the given servers (or the system's).
#[derive(Clone)]
pub struct HickoryDns {
    resolver: TokioResolver,
}

impl std::fmt::Debug for HickoryDns {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HickoryDns").finish_non_exhaustive()
    }
}

impl HickoryDns {
    /// A resolver asking `servers` (UDP, falling back to TCP), with `timeout` per query.
    pub fn new(servers: &[SocketAddr], timeout: Duration) -> Result<Self> {
        let mut builder = TokioResolver::builder_with_config(
            tincan_enum_lookup::name_servers(servers),
            TokioRuntimeProvider::default(),
        );
        let opts = builder.options_mut();
        opts.timeout = timeout;
        opts.attempts = 2;
        opts.use_hosts_file = ResolveHosts::Never;
        opts.try_tcp_on_error = true;
        let resolver = builder.build().map_err(|e| ResolveError::Dns {
            name: String::new(),
            rtype: "-",
            reason: e.to_string(),
        })?;
        Ok(Self { resolver })
    }

    async fn query(&self, name: &str, rtype: RecordType, label: &'static str) -> Result<Vec<RData>> {
        let fqdn = Name::from_ascii(format!("{}.", name.trim_end_matches('.')))
            .map_err(|_| ResolveError::Name(name.to_owned()))?;
        match self.resolver.lookup(fqdn, rtype).await {
            Ok(l) => Ok(l.answers().iter().filter(|r| r.record_type() == rtype).map(|r| r.data.clone()).collect()),
            Err(NetError::Dns(DnsError::NoRecordsFound(_))) => Ok(Vec::new()),
            Err(e) => Err(ResolveError::Dns { name: name.to_owned(), rtype: label, reason: e.to_string() }),
        }
    }
}

#[async_trait]
impl Dns for HickoryDns {
    async fn naptr(&self, name: &str) -> Result<Vec<Naptr>> {
        Ok(self
            .query(name, RecordType::NAPTR, "NAPTR")
            .await?
            .into_iter()
            .filter_map(|d| match d {
                RData::NAPTR(n) => Some(Naptr {
                    order: n.order,
                    preference: n.preference,
                    flags: String::from_utf8_lossy(&n.flags).into_owned(),
                    service: String::from_utf8_lossy(&n.services).into_owned(),
                    replacement: n.replacement.to_ascii(),
                }),
                _ => None,
            })
            .collect())
    }

    async fn srv(&self, name: &str) -> Result<Vec<Srv>> {
        Ok(self
            .query(name, RecordType::SRV, "SRV")
            .await?
            .into_iter()
            .filter_map(|d| match d {
                RData::SRV(s) => {
                    Some(Srv { priority: s.priority, weight: s.weight, port: s.port, target: s.target.to_ascii() })
                }
                _ => None,
            })
            .collect())
    }

    async fn ips(&self, name: &str) -> Result<Vec<IpAddr>> {
        let (v4, v6) = tokio::join!(self.query(name, RecordType::A, "A"), self.query(name, RecordType::AAAA, "AAAA"));
        let mut out: Vec<IpAddr> = Vec::new();
        for d in v4?.into_iter().chain(v6?) {
            match d {
                RData::A(a) => out.push(IpAddr::V4(a.0)),
                RData::AAAA(a) => out.push(IpAddr::V6(a.0)),
                _ => {}
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;
    use std::sync::Mutex;

    #[derive(Default)]
    struct Zone {
        naptr: HashMap<String, Vec<Naptr>>,
        srv: HashMap<String, Vec<Srv>>,
        ips: HashMap<String, Vec<IpAddr>>,
        asked: Mutex<Vec<String>>,
    }

    #[async_trait]
    impl Dns for Zone {
        async fn naptr(&self, name: &str) -> Result<Vec<Naptr>> {
            self.asked.lock().unwrap().push(format!("NAPTR {name}"));
            Ok(self.naptr.get(name).cloned().unwrap_or_default())
        }
        async fn srv(&self, name: &str) -> Result<Vec<Srv>> {
            self.asked.lock().unwrap().push(format!("SRV {name}"));
            Ok(self.srv.get(name).cloned().unwrap_or_default())
        }
        async fn ips(&self, name: &str) -> Result<Vec<IpAddr>> {
            self.asked.lock().unwrap().push(format!("A {name}"));
            Ok(self.ips.get(name).cloned().unwrap_or_default())
        }
    }

    fn naptr(order: u16, pref: u16, service: &str, repl: &str) -> Naptr {
        Naptr { order, preference: pref, flags: "s".into(), service: service.into(), replacement: repl.into() }
    }
    fn srv(priority: u16, weight: u16, port: u16, target: &str) -> Srv {
        Srv { priority, weight, port, target: target.into() }
    }
    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }
    fn t(transport: Transport, addr: &str) -> Target {
        Target { transport, addr: addr.parse().unwrap() }
    }
    const ALL: &[Transport] = &[Transport::Udp, Transport::Tcp, Transport::Tls];

    async fn run(zone: &Zone, uri: &str) -> Result<Vec<Target>> {
        resolve(zone, &uri.parse().unwrap(), ALL, || 0).await
    }

    #[tokio::test]
    async fn ip_literals_and_explicit_ports_skip_naptr_and_srv() {
        let mut zone = Zone::default();
        zone.ips.insert("sip.example".into(), vec![ip("127.0.0.2"), ip("::1")]);
        assert_eq!(run(&zone, "sip:a@127.0.0.9").await.unwrap(), [t(Transport::Udp, "127.0.0.9:5060")]);
        assert_eq!(run(&zone, "sips:a@[::1]").await.unwrap(), [t(Transport::Tls, "[::1]:5061")]);
        assert_eq!(run(&zone, "sip:a@[::1]:7;transport=tcp").await.unwrap(), [t(Transport::Tcp, "[::1]:7")]);
        assert_eq!(
            run(&zone, "sip:a@sip.example:5070").await.unwrap(),
            [t(Transport::Udp, "127.0.0.2:5070"), t(Transport::Udp, "[::1]:5070")]
        );
        assert!(zone.asked.lock().unwrap().iter().all(|q| q.starts_with("A ")), "{:?}", zone.asked);
    }

    #[tokio::test]
    async fn naptr_then_srv_then_addresses_in_order() {
        let mut zone = Zone::default();
        zone.naptr.insert(
            "example.com".into(),
            vec![
                naptr(50, 50, "SIP+D2U", "_sip._udp.example.com."),
                naptr(10, 50, "SIPS+D2T", "_sips._tcp.example.com."),
                naptr(20, 50, "SIP+D2T", "_sip._tcp.example.com."),
                naptr(5, 50, "SIP+D2S", "_sip._sctp.example.com."), // SCTP: not ours
                Naptr { flags: "u".into(), ..naptr(1, 1, "SIP+D2U", "x.example.com.") },
            ],
        );
        zone.srv.insert("_sips._tcp.example.com".into(), vec![srv(0, 0, 5061, "tls.example.com.")]);
        zone.srv.insert("_sip._tcp.example.com".into(), vec![srv(0, 0, 5060, "tcp.example.com.")]);
        zone.srv.insert("_sip._udp.example.com".into(), vec![srv(0, 0, 5060, "udp.example.com.")]);
        zone.ips.insert("tls.example.com".into(), vec![ip("127.0.0.3")]);
        zone.ips.insert("tcp.example.com".into(), vec![ip("127.0.0.4")]);
        zone.ips.insert("udp.example.com".into(), vec![ip("127.0.0.5")]);
        assert_eq!(
            run(&zone, "sip:+15551234@example.com;user=phone").await.unwrap(),
            [
                t(Transport::Tls, "127.0.0.3:5061"),
                t(Transport::Tcp, "127.0.0.4:5060"),
                t(Transport::Udp, "127.0.0.5:5060")
            ]
        );
        // sips: keeps only the secure transports.
        assert_eq!(run(&zone, "sips:x@example.com").await.unwrap(), [t(Transport::Tls, "127.0.0.3:5061")]);
        // A transport we do not speak is skipped.
        let udp_only = resolve(&zone, &"sip:x@example.com".parse().unwrap(), &[Transport::Udp], || 0).await;
        assert_eq!(udp_only.unwrap(), [t(Transport::Udp, "127.0.0.5:5060")]);
    }

    #[tokio::test]
    async fn without_naptr_srv_per_transport_then_a_records() {
        let mut zone = Zone::default();
        zone.srv.insert("_sip._udp.example.net".into(), vec![srv(0, 0, 5080, "pbx.example.net.")]);
        zone.ips.insert("pbx.example.net".into(), vec![ip("127.0.0.6")]);
        zone.ips.insert("plain.example.net".into(), vec![ip("127.0.0.7")]);
        assert_eq!(run(&zone, "sip:x@example.net").await.unwrap(), [t(Transport::Udp, "127.0.0.6:5080")]);
        assert_eq!(run(&zone, "sip:x@plain.example.net").await.unwrap(), [t(Transport::Udp, "127.0.0.7:5060")]);
        assert_eq!(run(&zone, "sips:x@plain.example.net").await.unwrap(), [t(Transport::Tls, "127.0.0.7:5061")]);
        // transport=tcp without a port: SRV for TCP only, then A with TCP's default port.
        assert_eq!(
            run(&zone, "sip:x@plain.example.net;transport=tcp").await.unwrap(),
            [t(Transport::Tcp, "127.0.0.7:5060")]
        );
        assert!(matches!(run(&zone, "sip:x@nowhere.example").await, Err(ResolveError::NoAddress(_))));
        assert!(matches!(run(&zone, "sips:x@plain.example.net;transport=udp").await, Err(ResolveError::InsecureSips)));
    }

    #[tokio::test]
    async fn an_srv_target_of_dot_means_no_service() {
        let mut zone = Zone::default();
        zone.srv.insert("_sips._tcp.example.org".into(), vec![srv(0, 0, 0, ".")]);
        zone.srv.insert("_sip._udp.example.org".into(), vec![srv(0, 0, 5060, "u.example.org.")]);
        zone.ips.insert("u.example.org".into(), vec![ip("127.0.0.8")]);
        assert_eq!(run(&zone, "sip:x@example.org").await.unwrap(), [t(Transport::Udp, "127.0.0.8:5060")]);
    }

    #[test]
    fn srv_priority_then_weight() {
        let records = vec![srv(20, 0, 1, "c."), srv(10, 10, 2, "a."), srv(10, 90, 3, "b."), srv(10, 0, 4, "z.")];
        // draw 0: the zero-weight record (placed first) is chosen first within priority 10.
        let mut zero = || 0u32;
        let order: Vec<u16> = order_srv(records.clone(), &mut zero).iter().map(|r| r.port).collect();
        assert_eq!(order, [4, 2, 3, 1]);
        // A large draw picks the heavy record before the light one.
        let mut big = || 95u32;
        let order: Vec<u16> = order_srv(records, &mut big).iter().map(|r| r.port).collect();
        assert_eq!(order, [3, 2, 4, 1]);
    }

    #[test]
    fn srv_weights_share_the_load() {
        // Over many draws a 90/10 split stays near 90/10 for the first pick.
        let mut state = 12345u32;
        let mut lcg = move || {
            state = state.wrapping_mul(1_103_515_245).wrapping_add(12345);
            state >> 8
        };
        let mut heavy_first = 0;
        for _ in 0..2000 {
            let o = order_srv(vec![srv(1, 10, 1, "a."), srv(1, 90, 2, "b.")], &mut lcg);
            if o[0].port == 2 {
                heavy_first += 1;
            }
        }
        assert!((1650..=1950).contains(&heavy_first), "{heavy_first} of 2000");
    }
}
