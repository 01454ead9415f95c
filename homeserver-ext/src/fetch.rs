//! Fetching URLs whose host came from untrusted input (`account/register`'s `matrix_server_name`): no
//! redirects, no proxy, a bounded time, and only public addresses unless the operator allows others.
//!
//! The host is resolved once, by [`Guarded`] inside the HTTP client, and the client connects only to the
//! addresses that resolution returned and the check passed: there is no second lookup a DNS-rebinding server
//! could answer differently. A host that is an IP address is checked by [`check_url`] before the request.

use crate::net::Cidr;
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

/// Whether `ip` may be contacted: a public address, or one in `allowed`.
pub fn permitted(ip: IpAddr, allowed: &[Cidr]) -> bool {
    crate::net::is_public(ip) || allowed.iter().any(|c| c.contains(ip))
}

/// A resolver that answers only the addresses [`permitted`] lets through, and fails with [`Refused`] when
/// none is left.
#[derive(Debug, Clone)]
pub struct Guarded {
    allowed: Arc<[Cidr]>,
}

impl Resolve for Guarded {
    fn resolve(&self, name: Name) -> Resolving {
        let allowed = self.allowed.clone();
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let all: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let ok: Vec<SocketAddr> = all.iter().copied().filter(|a| permitted(a.ip(), &allowed)).collect();
            if ok.is_empty() {
                tracing::warn!(%host, addresses = ?all, "refused to contact a host that resolves to no public address");
                return Err(Box::new(Refused { host }) as Box<dyn std::error::Error + Send + Sync>);
            }
            Ok(Box::new(ok.into_iter()) as Addrs)
        })
    }
}

/// An HTTP client for untrusted hosts: [`Guarded`] resolution, no redirects, no proxy, `timeout` for the
/// whole request. `allowed` are the non-public ranges that may be contacted anyway.
pub fn client(allowed: Vec<Cidr>, timeout: Duration) -> reqwest::Client {
    reqwest::Client::builder()
        .dns_resolver(Arc::new(Guarded { allowed: allowed.into() }))
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .timeout(timeout)
        .connect_timeout(timeout)
        .build()
        .expect("HTTP client")
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

/// Whether a request failed because its host was [`Refused`].
pub fn refused(e: &reqwest::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(s) = source {
        if s.downcast_ref::<Refused>().is_some() {
            return true;
        }
        source = s.source();
    }
    false
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
}
