//! Fetching URLs whose host came from untrusted input (`account/register`'s `matrix_server_name`): no
//! redirects, no proxy, a bounded time, and only public addresses unless the operator allows others.
//!
//! The host is resolved once, by [`Guarded`] (A/AAAA) or [`crate::federation::SrvResolver`] (Matrix SRV)
//! inside the HTTP client, and the client connects only to the addresses that resolution returned and the
//! check passed: there is no second lookup a DNS-rebinding server could answer differently. A host that is an
//! IP address is checked by [`check_url`] before the request.

use crate::net::Cidr;
use hickory_proto::rr::{Name as DnsName, RData, RecordType};
use hickory_resolver::TokioResolver;
use hickory_resolver::config::ResolveHosts;
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::net::{DnsError, NetError};
use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

/// The host resolves only to addresses this server does not contact (not public, not allowed).
#[derive(Debug, Clone, thiserror::Error)]
#[error("{host} resolves to no address this server contacts")]
pub struct Refused {
    /// The host.
    pub host: String,
}

/// Why another homeserver could not be located (Matrix server discovery, see [`crate::federation`]).
#[derive(Debug, Clone, thiserror::Error)]
pub enum DiscoveryError {
    /// Not a Matrix server name (`host[:port]`).
    #[error("{0:?} is not a Matrix server name")]
    InvalidServerName(String),
    /// DNS answered that the name has no SRV record and no address (or SRV targets without addresses).
    #[error("no homeserver found for {host}: no SRV record and no address")]
    NotFound {
        /// The name looked up.
        host: String,
    },
    /// The only SRV record's target is `.`: the domain says it offers no such service (RFC 2782).
    #[error("{srv} says {host} offers no Matrix federation service")]
    NoService {
        /// The name looked up.
        host: String,
        /// The SRV owner name.
        srv: String,
    },
    /// DNS failed (timeout, SERVFAIL, unreachable server), as opposed to answering that nothing exists.
    #[error("DNS lookup of {name} {rtype} failed: {reason}")]
    Dns {
        /// The name.
        name: String,
        /// The record type.
        rtype: &'static str,
        /// What went wrong.
        reason: String,
    },
    /// Every address found is one this server does not contact.
    #[error(transparent)]
    Refused(#[from] Refused),
}

/// Whether `ip` may be contacted: a public address, or one in `allowed`.
pub fn permitted(ip: IpAddr, allowed: &[Cidr]) -> bool {
    crate::net::is_public(ip) || allowed.iter().any(|c| c.contains(ip))
}

/// The addresses of `host` that may be contacted: [`DiscoveryError::NotFound`] when there are none at all,
/// [`Refused`] when there are some but none [`permitted`].
pub fn guard(host: &str, all: Vec<SocketAddr>, allowed: &[Cidr]) -> Result<Vec<SocketAddr>, DiscoveryError> {
    if all.is_empty() {
        return Err(DiscoveryError::NotFound { host: host.to_owned() });
    }
    let ok: Vec<SocketAddr> = all.iter().copied().filter(|a| permitted(a.ip(), allowed)).collect();
    if ok.is_empty() {
        tracing::warn!(%host, addresses = ?all, "refused to contact a host that resolves to no public address");
        return Err(Refused { host: host.to_owned() }.into());
    }
    Ok(ok)
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
    /// Target host, without the final dot (empty: the root, "no service here").
    pub target: String,
}

/// DNS for other homeservers' names: the system's resolvers (`/etc/resolv.conf`, with `/etc/hosts` for
/// addresses), or exactly `identity.homeserver_dns_servers` when set. Both ways go through one resolver, so
/// a name that does not exist (NXDOMAIN, no record) is told from a DNS failure (timeout, SERVFAIL, no server
/// reachable) the same way: [`DiscoveryError::NotFound`] (400) against [`DiscoveryError::Dns`] (502).
#[derive(Clone)]
pub struct Dns {
    /// `None`: the system's configuration could not be read; every lookup fails with [`DiscoveryError::Dns`].
    resolver: Option<Arc<TokioResolver>>,
}

impl std::fmt::Debug for Dns {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dns").field("configured", &self.resolver.is_some()).finish_non_exhaustive()
    }
}

impl Dns {
    /// Asks `servers`, or the system's resolvers (and `/etc/hosts`) when empty; each query waits at most
    /// `timeout`.
    pub fn new(servers: &[SocketAddr], timeout: Duration) -> Result<Dns, DiscoveryError> {
        let failed = |e: &dyn std::fmt::Display| DiscoveryError::Dns {
            name: String::new(),
            rtype: "-",
            reason: format!("resolver configuration: {e}"),
        };
        let (config, opts) = if servers.is_empty() {
            hickory_resolver::system_conf::read_system_conf().map_err(|e| failed(&e))?
        } else {
            (tincan_enum_lookup::name_servers(servers), Default::default())
        };
        let mut builder = TokioResolver::builder_with_config(config, TokioRuntimeProvider::default());
        *builder.options_mut() = opts;
        let opts = builder.options_mut();
        opts.timeout = timeout;
        opts.attempts = 2;
        // The system's way counts `/etc/hosts`, as getaddrinfo would; configured servers are asked alone.
        opts.use_hosts_file = if servers.is_empty() { ResolveHosts::Always } else { ResolveHosts::Never };
        opts.try_tcp_on_error = true;
        let resolver = builder.build().map_err(|e| failed(&e))?;
        Ok(Dns { resolver: Some(Arc::new(resolver)) })
    }

    /// A DNS whose every lookup fails (what is left when [`Dns::new`] cannot read the system's configuration):
    /// other homeservers cannot be located (502), rather than located by another way that cannot tell a
    /// missing name from a failure.
    pub fn unavailable() -> Dns {
        Dns { resolver: None }
    }

    async fn query(&self, name: &str, rtype: RecordType, label: &'static str) -> Result<Vec<RData>, DiscoveryError> {
        let fqdn = DnsName::from_ascii(format!("{}.", name.trim_end_matches('.')))
            .map_err(|_| DiscoveryError::InvalidServerName(name.to_owned()))?;
        let Some(resolver) = &self.resolver else {
            return Err(DiscoveryError::Dns { name: name.to_owned(), rtype: label, reason: "no resolver".into() });
        };
        match resolver.lookup(fqdn, rtype).await {
            Ok(l) => Ok(l.answers().iter().filter(|r| r.record_type() == rtype).map(|r| r.data.clone()).collect()),
            Err(NetError::Dns(DnsError::NoRecordsFound(_))) => Ok(Vec::new()),
            Err(e) => Err(DiscoveryError::Dns { name: name.to_owned(), rtype: label, reason: e.to_string() }),
        }
    }

    /// The SRV records at `name` (empty: none).
    pub async fn srv(&self, name: &str) -> Result<Vec<Srv>, DiscoveryError> {
        Ok(self
            .query(name, RecordType::SRV, "SRV")
            .await?
            .into_iter()
            .filter_map(|d| match d {
                RData::SRV(s) => Some(Srv {
                    priority: s.priority,
                    weight: s.weight,
                    port: s.port,
                    target: s.target.to_ascii().trim_end_matches('.').to_owned(),
                }),
                _ => None,
            })
            .collect())
    }

    /// The addresses of `host` (empty: the name has none). When one of A and AAAA fails and the other gives
    /// addresses, those are used; when nothing was found and a query failed, that failure is the answer.
    pub async fn ips(&self, host: &str) -> Result<Vec<IpAddr>, DiscoveryError> {
        let (v4, v6) = tokio::join!(self.query(host, RecordType::A, "A"), self.query(host, RecordType::AAAA, "AAAA"));
        let ips: Vec<IpAddr> = [&v4, &v6]
            .into_iter()
            .flat_map(|r| r.iter().flatten())
            .filter_map(|d| match d {
                RData::A(a) => Some(IpAddr::V4(a.0)),
                RData::AAAA(a) => Some(IpAddr::V6(a.0)),
                _ => None,
            })
            .collect();
        if ips.is_empty() {
            v4?;
            v6?;
        }
        Ok(ips)
    }
}

/// A resolver that answers only the addresses [`permitted`] lets through, and fails with [`Refused`] when
/// none is left (or [`DiscoveryError::NotFound`] when there is no address at all).
#[derive(Debug, Clone)]
pub struct Guarded {
    allowed: Arc<[Cidr]>,
    dns: Dns,
}

impl Guarded {
    /// Resolves with `dns`, letting through public addresses and those in `allowed`.
    pub fn new(allowed: Arc<[Cidr]>, dns: Dns) -> Guarded {
        Guarded { allowed, dns }
    }
}

impl Resolve for Guarded {
    fn resolve(&self, name: Name) -> Resolving {
        let this = self.clone();
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let all = this.dns.ips(&host).await.map_err(boxed)?;
            let ok = guard(&host, all.into_iter().map(|ip| SocketAddr::new(ip, 0)).collect(), &this.allowed)
                .map_err(boxed)?;
            Ok(Box::new(ok.into_iter()) as Addrs)
        })
    }
}

/// A resolver's error as reqwest carries it (found again by [`discovery_error`]).
pub fn boxed(e: DiscoveryError) -> Box<dyn std::error::Error + Send + Sync> {
    Box::new(e)
}

/// An HTTP client for untrusted hosts: `resolver` (one that checks addresses, [`Guarded`] or
/// [`crate::federation::SrvResolver`]), no redirects, no proxy, `timeout` for the whole request.
pub fn client(resolver: Arc<dyn Resolve>, timeout: Duration) -> reqwest::Client {
    builder(resolver, timeout).redirect(reqwest::redirect::Policy::none()).build().expect("HTTP client")
}

/// [`client`]'s settings, without the redirect policy.
pub fn builder(resolver: Arc<dyn Resolve>, timeout: Duration) -> reqwest::ClientBuilder {
    reqwest::Client::builder().dns_resolver(resolver).no_proxy().timeout(timeout).connect_timeout(timeout)
}

/// Refuses a URL whose host is an IP address that may not be contacted (a name is checked when it is
/// resolved).
pub fn check_url(url: &url::Url, allowed: &[Cidr]) -> Result<(), Refused> {
    let ip = match url.host() {
        Some(url::Host::Ipv4(v4)) => IpAddr::V4(v4),
        Some(url::Host::Ipv6(v6)) => IpAddr::V6(v6),
        Some(url::Host::Domain(_)) => return Ok(()),
        None => return Err(Refused { host: String::new() }),
    };
    if permitted(ip, allowed) { Ok(()) } else { Err(Refused { host: ip.to_string() }) }
}

/// The [`DiscoveryError`] a request failed with, when its host could not be resolved or was [`Refused`].
pub fn discovery_error(e: &reqwest::Error) -> Option<DiscoveryError> {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(s) = source {
        if let Some(d) = s.downcast_ref::<DiscoveryError>() {
            return Some(d.clone());
        }
        if let Some(r) = s.downcast_ref::<Refused>() {
            return Some(r.clone().into());
        }
        source = s.source();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literal_addresses_are_checked() {
        let u = |s: &str| url::Url::parse(s).unwrap();
        assert!(check_url(&u("https://127.0.0.1:8448/x"), &[]).is_err());
        assert!(check_url(&u("https://[::1]/x"), &[]).is_err());
        assert!(check_url(&u("https://169.254.169.254/x"), &[]).is_err());
        assert!(check_url(&u("https://100.64.1.1/x"), &[]).is_err());
        assert!(check_url(&u("https://[fd00::1]/x"), &[]).is_err());
        assert!(check_url(&u("https://8.8.8.8/x"), &[]).is_ok());
        assert!(check_url(&u("https://example.org/x"), &[]).is_ok(), "names are checked when resolved");
        let lo: Vec<Cidr> = vec!["127.0.0.1".parse().unwrap()];
        assert!(check_url(&u("https://127.0.0.1:8448/x"), &lo).is_ok());
        assert!(check_url(&u("https://127.0.0.2:8448/x"), &lo).is_err());
    }

    #[test]
    fn guard_tells_no_address_from_refused_ones() {
        let a = |s: &str| -> SocketAddr { s.parse().unwrap() };
        assert!(matches!(guard("h", vec![], &[]), Err(DiscoveryError::NotFound { .. })));
        assert!(matches!(guard("h", vec![a("127.0.0.1:8448")], &[]), Err(DiscoveryError::Refused(_))));
        let got = guard("h", vec![a("127.0.0.1:8448"), a("192.0.2.1:8448"), a("8.8.8.8:8448")], &[]).unwrap();
        assert_eq!(got, [a("8.8.8.8:8448")]);
    }
}
