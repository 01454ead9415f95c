//! Reaching another homeserver by its server name (`account/register`'s `matrix_server_name`): Matrix server
//! discovery as the server-server API's "Resolving server names" gives it — an IP literal or an explicit port
//! is used as it is; otherwise `https://{host}/.well-known/matrix/server` may delegate to another name, whose
//! (or, without delegation, the host's) SRV `_matrix-fed._tcp` records, then the deprecated `_matrix._tcp`, then
//! its address at port 8448 are tried. The certificate is checked against the name the spec says (the
//! delegated name after delegation, never an SRV target), and the `Host` header carries it.
//!
//! The plan is pure ([`first_step`], [`after_well_known`]). The SRV step runs inside the HTTP client's resolver
//! ([`SrvResolver`]): the URL keeps the name the certificate must carry and the connection goes to the SRV
//! targets, still only to addresses [`crate::fetch::permitted`] lets through. Every fetch is guarded as
//! [`crate::fetch`] says; `.well-known` may redirect (the spec follows 30x) at most [`MAX_REDIRECTS`] times, to
//! `https` URLs only, each checked the same way.

use crate::fetch::{DiscoveryError, Dns, Guarded, Srv, boxed, check_url, guard};
use crate::net::Cidr;
use rand::Rng;
use rand::rngs::StdRng;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use ruma::{OwnedServerName, ServerName};
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tincan_common::Clock;

/// The port of a federation API when neither the server name, its delegation nor SRV gives one.
pub const DEFAULT_PORT: u16 = 8448;
/// Redirects a `.well-known/matrix/server` fetch follows.
pub const MAX_REDIRECTS: usize = 5;
/// The largest `.well-known/matrix/server` or federation answer body read.
pub const MAX_BODY: usize = 64 * 1024;
/// How long a `.well-known/matrix/server` answer is kept without `Cache-Control: max-age` (the spec's 24 h).
pub const WELL_KNOWN_TTL_SECS: u64 = 24 * 3600;
/// The longest a `.well-known/matrix/server` answer is kept, whatever `max-age` says (the spec's 48 h).
pub const WELL_KNOWN_MAX_TTL_SECS: u64 = 48 * 3600;
/// How long a failed `.well-known/matrix/server` fetch counts as "no delegation" (the spec's 1 h).
pub const WELL_KNOWN_ERROR_TTL_SECS: u64 = 3600;
/// Hosts whose `.well-known` answer is kept at once (the names come from clients).
pub const WELL_KNOWN_CACHE_ENTRIES: usize = 10_000;

/// Where a server name's federation API is reached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// The URL's authority, `host` or `host:port`: the host is the name the certificate must be valid for.
    pub authority: String,
    /// The `Host` header the spec asks for.
    pub host_header: String,
    /// How the authority's host becomes addresses.
    pub via: Via,
}

/// How a [`Target`]'s host is resolved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    /// The authority has its port (given, or 8448 for an IP literal): A/AAAA, or the literal itself.
    Address,
    /// The authority has no port: SRV `_matrix-fed._tcp`, then `_matrix._tcp`, then A/AAAA at 8448.
    Srv,
}

/// The first step of discovery for a server name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// No `.well-known` needed: an IP literal or a name with a port.
    Done(Target),
    /// Ask `https://{host}/.well-known/matrix/server`, then [`after_well_known`].
    WellKnown {
        /// The server name's host.
        host: String,
    },
}

fn is_ip_literal(host: &str) -> bool {
    host.trim_start_matches('[').trim_end_matches(']').parse::<IpAddr>().is_ok()
}

/// A name used as it is: an IP literal (its port or 8448) or a name with a port.
fn direct(name: &ServerName) -> Option<Target> {
    let host = name.host();
    if is_ip_literal(host) {
        let port = name.port().unwrap_or(DEFAULT_PORT);
        return Some(Target { authority: format!("{host}:{port}"), host_header: name.to_string(), via: Via::Address });
    }
    name.port().map(|_| Target { authority: name.to_string(), host_header: name.to_string(), via: Via::Address })
}

/// Steps 1 and 2 of the spec's resolution.
pub fn first_step(name: &ServerName) -> Step {
    match direct(name) {
        Some(t) => Step::Done(t),
        None => Step::WellKnown { host: name.host().to_owned() },
    }
}

/// Where to go once `.well-known` gave `delegated` (`None`: no usable answer) for `host`.
pub fn after_well_known(host: &str, delegated: Option<&ServerName>) -> Target {
    match delegated {
        Some(d) => direct(d).unwrap_or_else(|| srv_target(d.host())),
        None => srv_target(host),
    }
}

fn srv_target(host: &str) -> Target {
    Target { authority: host.to_owned(), host_header: host.to_owned(), via: Via::Srv }
}

/// SRV records in the order to try: by priority, and within one priority by RFC 2782's weighted draw (records
/// of weight 0 last).
pub fn order_srv(mut records: Vec<Srv>, rng: &mut impl Rng) -> Vec<Srv> {
    records.sort_by_key(|r| r.priority);
    let mut out = Vec::with_capacity(records.len());
    for group in records.chunk_by(|a, b| a.priority == b.priority) {
        let mut left: Vec<&Srv> = group.iter().collect();
        while !left.is_empty() {
            let total: u32 = left.iter().map(|r| u32::from(r.weight)).sum();
            let pick = if total == 0 {
                0
            } else {
                let mut draw = rng.random_range(0..total);
                left.iter()
                    .position(|r| {
                        let w = u32::from(r.weight);
                        if draw < w {
                            true
                        } else {
                            draw -= w;
                            false
                        }
                    })
                    .unwrap_or(0)
            };
            out.push(left.remove(pick).clone());
        }
    }
    out
}

/// The resolver of [`Via::Srv`] hosts: SRV `_matrix-fed._tcp.{host}`, else `_matrix._tcp.{host}`, else the
/// host's addresses at 8448; only [`crate::fetch::permitted`] addresses. The addresses carry their port, which
/// the HTTP client keeps because the URL gives none.
#[derive(Debug, Clone)]
pub struct SrvResolver {
    allowed: Arc<[Cidr]>,
    dns: Dns,
    rng: Arc<Mutex<StdRng>>,
}

impl SrvResolver {
    /// Resolves with `dns`; `rng` orders SRV records of one priority.
    pub fn new(allowed: Arc<[Cidr]>, dns: Dns, rng: StdRng) -> SrvResolver {
        SrvResolver { allowed, dns, rng: Arc::new(Mutex::new(rng)) }
    }

    /// The addresses to connect to for `host`, in order.
    pub async fn addresses(&self, host: &str) -> Result<Vec<SocketAddr>, DiscoveryError> {
        for service in ["_matrix-fed._tcp", "_matrix._tcp"] {
            let name = format!("{service}.{host}");
            let records = self.dns.srv(&name).await?;
            if records.len() == 1 && records[0].target.is_empty() {
                return Err(DiscoveryError::NoService { host: host.to_owned(), srv: name });
            }
            let records: Vec<Srv> = records.into_iter().filter(|r| !r.target.is_empty()).collect();
            if records.is_empty() {
                continue;
            }
            let ordered = order_srv(records, &mut *self.rng.lock().expect("rng lock"));
            let mut all = Vec::new();
            for r in ordered {
                all.extend(self.dns.ips(&r.target).await?.into_iter().map(|ip| SocketAddr::new(ip, r.port)));
            }
            tracing::debug!(%host, srv = %name, addresses = ?all, "homeserver located by SRV");
            return guard(host, all, &self.allowed);
        }
        let all = self.dns.ips(host).await?.into_iter().map(|ip| SocketAddr::new(ip, DEFAULT_PORT)).collect();
        guard(host, all, &self.allowed)
    }
}

impl Resolve for SrvResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let this = self.clone();
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let addrs = this.addresses(&host).await.map_err(boxed)?;
            Ok(Box::new(addrs.into_iter()) as Addrs)
        })
    }
}

/// Why a federation request failed.
#[derive(Debug, thiserror::Error)]
pub enum FederationError {
    /// The server could not be located, or only at addresses this server does not contact.
    #[error(transparent)]
    Discovery(#[from] DiscoveryError),
    /// The request failed (connection, TLS, timeout); the error has no URL (it can hold a token).
    #[error(transparent)]
    Http(reqwest::Error),
    /// The answer is larger than [`MAX_BODY`].
    #[error("the answer is larger than {MAX_BODY} bytes")]
    TooLarge,
}

/// `.well-known/matrix/server` answers by host: the delegation (`None`: none, or the fetch failed) and when the
/// answer expires (Unix seconds).
type WellKnownCache = HashMap<String, (Option<OwnedServerName>, u64)>;

/// HTTP clients for other homeservers' federation APIs, found by Matrix server discovery.
#[derive(Debug, Clone)]
pub struct Federation {
    /// Answers of `.well-known/matrix/server`, kept as the spec says (see [`WELL_KNOWN_TTL_SECS`]).
    cache: Arc<Mutex<WellKnownCache>>,
    clock: Arc<dyn Clock>,
    allowed: Arc<[Cidr]>,
    /// [`Via::Address`] targets.
    direct: reqwest::Client,
    /// [`Via::Srv`] targets.
    srv: reqwest::Client,
    /// `.well-known/matrix/server`, redirects followed as [`MAX_REDIRECTS`] says.
    well_known: reqwest::Client,
}

impl Federation {
    /// Clients contacting public addresses and `allowed`, each request within `timeout`, names resolved with
    /// `dns`; `rng` orders SRV records; `clock` ages `.well-known` answers.
    pub fn new(allowed: Vec<Cidr>, dns: Dns, timeout: Duration, rng: StdRng, clock: Arc<dyn Clock>) -> Federation {
        let allowed: Arc<[Cidr]> = allowed.into();
        let guarded = Arc::new(Guarded::new(allowed.clone(), dns.clone()));
        let srv = Arc::new(SrvResolver::new(allowed.clone(), dns, rng));
        let redirect_allowed = allowed.clone();
        let policy = reqwest::redirect::Policy::custom(move |attempt| {
            let url = attempt.url();
            let looped = attempt.previous().len() > MAX_REDIRECTS || attempt.previous().contains(url);
            if looped || url.scheme() != "https" || check_url(url, &redirect_allowed).is_err() {
                attempt.stop()
            } else {
                attempt.follow()
            }
        });
        Federation {
            cache: Arc::default(),
            clock,
            allowed,
            direct: crate::fetch::client(guarded.clone(), timeout),
            srv: crate::fetch::client(srv, timeout),
            well_known: crate::fetch::builder(guarded, timeout).redirect(policy).build().expect("HTTP client"),
        }
    }

    /// Where `name`'s federation API is: `.well-known` asked when the spec says so.
    pub async fn locate(&self, name: &ServerName) -> Target {
        match first_step(name) {
            Step::Done(t) => t,
            Step::WellKnown { host } => {
                let delegated = self.cached_well_known(&host).await;
                after_well_known(&host, delegated.as_deref())
            }
        }
    }

    /// [`Federation::well_known`], from the cache while its answer is fresh.
    async fn cached_well_known(&self, host: &str) -> Option<OwnedServerName> {
        let now = self.clock.unix_seconds();
        if let Some((delegated, expires)) = self.cache.lock().expect("cache lock").get(host)
            && *expires > now
        {
            return delegated.clone();
        }
        let (delegated, ttl) = self.well_known(host).await;
        let mut cache = self.cache.lock().expect("cache lock");
        if cache.len() >= WELL_KNOWN_CACHE_ENTRIES {
            cache.retain(|_, (_, expires)| *expires > now);
        }
        if ttl > 0 && cache.len() < WELL_KNOWN_CACHE_ENTRIES {
            cache.insert(host.to_owned(), (delegated.clone(), now.saturating_add(ttl)));
        }
        delegated
    }

    /// The delegation `https://{host}/.well-known/matrix/server` gives, and how long to keep the answer; `None`
    /// for any failure, which the spec treats as no delegation.
    async fn well_known(&self, host: &str) -> (Option<OwnedServerName>, u64) {
        let failed = (None, WELL_KNOWN_ERROR_TTL_SECS);
        #[derive(serde::Deserialize)]
        struct WellKnown {
            #[serde(rename = "m.server")]
            server: OwnedServerName,
        }
        let url = format!("https://{host}/.well-known/matrix/server");
        let resp = match self.well_known.get(&url).send().await {
            Ok(r) if r.status() == reqwest::StatusCode::OK => r,
            Ok(r) => {
                tracing::debug!(%host, status = %r.status(), "no .well-known delegation");
                return failed;
            }
            Err(e) => {
                tracing::debug!(%host, error = %e.without_url(), "no .well-known delegation");
                return failed;
            }
        };
        let ttl = resp
            .headers()
            .get(reqwest::header::CACHE_CONTROL)
            .and_then(|v| v.to_str().ok())
            .map_or(WELL_KNOWN_TTL_SECS, well_known_ttl);
        let Ok(body) = read_limited(resp).await else { return failed };
        match serde_json::from_slice::<WellKnown>(&body) {
            Ok(w) => {
                tracing::debug!(%host, delegated = %w.server, ttl, ".well-known delegation");
                (Some(w.server), ttl)
            }
            Err(e) => {
                tracing::debug!(%host, error = %e, "unusable .well-known delegation");
                failed
            }
        }
    }

    /// `GET {path_and_query}` on `name`'s federation API.
    pub async fn get(&self, name: &ServerName, path_and_query: &str) -> Result<reqwest::Response, FederationError> {
        let target = self.locate(name).await;
        let url = url::Url::parse(&format!("https://{}{path_and_query}", target.authority))
            .map_err(|_| DiscoveryError::InvalidServerName(name.to_string()))?;
        check_url(&url, &self.allowed).map_err(DiscoveryError::from)?;
        let client = match target.via {
            Via::Address => &self.direct,
            Via::Srv => &self.srv,
        };
        let mut req = client.get(url);
        // The client writes the URL's authority; only an IP literal without a port differs from the spec's.
        if target.host_header != target.authority {
            req = req.header(reqwest::header::HOST, &target.host_header);
        }
        req.send().await.map_err(|e| match crate::fetch::discovery_error(&e) {
            Some(d) => FederationError::Discovery(d),
            None => FederationError::Http(e.without_url()),
        })
    }
}

/// How long to keep a `.well-known` answer with this `Cache-Control`: 0 for `no-store`/`no-cache`, else its
/// `max-age` up to [`WELL_KNOWN_MAX_TTL_SECS`], else [`WELL_KNOWN_TTL_SECS`].
pub fn well_known_ttl(cache_control: &str) -> u64 {
    let mut ttl = WELL_KNOWN_TTL_SECS;
    for directive in cache_control.split(',').map(|d| d.trim().to_ascii_lowercase()) {
        if directive == "no-store" || directive == "no-cache" {
            return 0;
        }
        if let Some(secs) = directive.strip_prefix("max-age=").and_then(|v| v.trim_matches('"').parse::<u64>().ok()) {
            ttl = secs.min(WELL_KNOWN_MAX_TTL_SECS);
        }
    }
    ttl
}

/// A response body of at most [`MAX_BODY`] bytes (a server cannot make us hold more).
pub async fn read_limited(mut resp: reqwest::Response) -> Result<Vec<u8>, FederationError> {
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(|e| FederationError::Http(e.without_url()))? {
        if body.len() + chunk.len() > MAX_BODY {
            return Err(FederationError::TooLarge);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn name(s: &str) -> OwnedServerName {
        s.try_into().unwrap()
    }
    fn t(authority: &str, host_header: &str, via: Via) -> Target {
        Target { authority: authority.into(), host_header: host_header.into(), via }
    }

    #[test]
    fn ip_literals_and_explicit_ports_skip_well_known() {
        let done = |s: &str| match first_step(&name(s)) {
            Step::Done(t) => t,
            other => panic!("{s}: {other:?}"),
        };
        assert_eq!(done("192.0.2.7"), t("192.0.2.7:8448", "192.0.2.7", Via::Address));
        assert_eq!(done("192.0.2.7:443"), t("192.0.2.7:443", "192.0.2.7:443", Via::Address));
        assert_eq!(done("[2001:db8::1]"), t("[2001:db8::1]:8448", "[2001:db8::1]", Via::Address));
        assert_eq!(done("hs.example:8449"), t("hs.example:8449", "hs.example:8449", Via::Address));
        assert_eq!(first_step(&name("example.org")), Step::WellKnown { host: "example.org".into() });
    }

    #[test]
    fn delegation_decides_the_name_the_certificate_carries() {
        let after = |d: Option<&str>| after_well_known("example.org", d.map(name).as_deref());
        assert_eq!(after(None), t("example.org", "example.org", Via::Srv));
        assert_eq!(after(Some("matrix.example.org")), t("matrix.example.org", "matrix.example.org", Via::Srv));
        assert_eq!(
            after(Some("matrix.example.org:443")),
            t("matrix.example.org:443", "matrix.example.org:443", Via::Address)
        );
        assert_eq!(after(Some("192.0.2.9")), t("192.0.2.9:8448", "192.0.2.9", Via::Address));
    }

    #[test]
    fn well_known_answers_are_kept_as_cache_control_says() {
        assert_eq!(well_known_ttl(""), WELL_KNOWN_TTL_SECS);
        assert_eq!(well_known_ttl("public, max-age=600"), 600);
        assert_eq!(well_known_ttl("Max-Age=\"7200\""), 7200);
        assert_eq!(well_known_ttl("max-age=31536000"), WELL_KNOWN_MAX_TTL_SECS);
        assert_eq!(well_known_ttl("max-age=600, no-store"), 0);
        assert_eq!(well_known_ttl("no-cache"), 0);
    }

    fn srv(priority: u16, weight: u16, target: &str) -> Srv {
        Srv { priority, weight, port: 8448, target: target.into() }
    }

    #[test]
    fn srv_records_go_by_priority_then_weight() {
        let mut rng = StdRng::seed_from_u64(7);
        let records = vec![srv(20, 0, "c"), srv(10, 0, "b0"), srv(10, 60, "a"), srv(10, 40, "b")];
        let mut first_a = 0;
        for _ in 0..1000 {
            let got: Vec<String> = order_srv(records.clone(), &mut rng).into_iter().map(|r| r.target).collect();
            assert_eq!(got.len(), 4);
            assert_eq!(&got[2..], ["b0", "c"], "weight 0 last in its priority, then the next priority");
            first_a += usize::from(got[0] == "a");
        }
        assert!((520..680).contains(&first_a), "a (weight 60 of 100) first {first_a} times in 1000");
    }
}
