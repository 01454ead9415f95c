//! Where a remote identity is reached: a phone number through its validated ENUM `E2U+sip` routes, then the
//! configured fallbacks (the PSTN gateway, other trunks); a SIP address through RFC 3263. Requests are tried
//! down the list of targets, moving on when one times out or answers 503 (RFC 3263 §4.3); calls and MESSAGEs
//! move on to the next route on 408 and 5xx too (see [`fails_over`], [`send_over`]).

use crate::config::RoutesConfig;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tincan_enum_lookup::{Lookup, LookupConfig, TrustAnchor};
use tincan_sip_core::enum_route;
use tincan_sip_core::resolve::{Dns, HickoryDns, ResolveError, resolve};
use tincan_sip_core::stack::{OutgoingRequest, SipResponse, SipStack, StackError, Target, Transport};
use tincan_sip_core::uri::{NameAddr, SipUri, Uri};

/// Why a destination could not be reached.
#[derive(Debug, thiserror::Error)]
pub enum RouteError {
    /// The number has no SIP route and there is no fallback.
    #[error("no SIP route to {0}")]
    NoRoute(String),
    /// Not a number or SIP address.
    #[error("not a SIP destination: {0}")]
    Invalid(String),
    /// DNS failed (may work later).
    #[error(transparent)]
    Resolve(#[from] ResolveError),
    /// The ENUM lookup failed to validate or to answer (may work later; never a route).
    #[error(transparent)]
    Enum(#[from] enum_route::EnumRouteError),
    /// Every target failed to answer.
    #[error(transparent)]
    Stack(#[from] StackError),
}

impl RouteError {
    /// Whether trying again later may succeed.
    pub fn is_temporary(&self) -> bool {
        matches!(self, RouteError::Resolve(ResolveError::Dns { .. }) | RouteError::Enum(_) | RouteError::Stack(_))
    }
}

/// The request URI and ordered targets of a destination.
#[derive(Debug, Clone, PartialEq)]
pub struct Route {
    /// Request-URI (and To URI).
    pub uri: Uri,
    /// Where to send, in order.
    pub targets: Vec<Target>,
}

/// Routes remote identities.
pub struct Router {
    dns: Arc<dyn Dns>,
    lookup: Option<Lookup>,
    fallback: Vec<SipUri>,
    transports: Vec<Transport>,
    invite_timeout: Duration,
}

impl std::fmt::Debug for Router {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Router").field("fallback", &self.fallback).finish_non_exhaustive()
    }
}

impl Router {
    /// A router from config, sending on `transports` (those we listen on).
    pub fn from_config(c: &RoutesConfig, transports: Vec<Transport>) -> Result<Self, String> {
        let servers: Vec<SocketAddr> = c.dns_servers.iter().filter_map(|s| s.parse().ok()).collect();
        let dns = if servers.is_empty() {
            HickoryDns::new(&system_servers().map_err(|e| format!("system DNS config: {e}"))?, Duration::from_secs(2))
        } else {
            HickoryDns::new(&servers, Duration::from_secs(2))
        }
        .map_err(|e| e.to_string())?;
        let lookup = if c.enum_apex.is_empty() {
            None
        } else {
            let anchor: TrustAnchor =
                c.enum_trust_anchor.parse().map_err(|e| format!("routes.enum_trust_anchor: {e}"))?;
            let apex =
                hickory_proto::rr::Name::from_ascii(&c.enum_apex).map_err(|e| format!("routes.enum_apex: {e}"))?;
            let enum_servers: Vec<SocketAddr> = c.enum_servers.iter().filter_map(|s| s.parse().ok()).collect();
            let servers = if enum_servers.is_empty() { servers.clone() } else { enum_servers };
            Some(Lookup::new(LookupConfig::new(servers, apex, anchor)).map_err(|e| format!("ENUM lookup: {e}"))?)
        };
        let fallback = c
            .fallback
            .iter()
            .map(|f| f.parse().map_err(|e| format!("routes.fallback: {f:?}: {e}")))
            .collect::<Result<_, _>>()?;
        let invite_timeout = Duration::from_millis(c.invite_timeout_ms);
        Ok(Self { dns: Arc::new(dns), lookup, fallback, transports, invite_timeout })
    }

    /// A router on given parts (tests); `fallback` in the order tried.
    pub fn new(dns: Arc<dyn Dns>, lookup: Option<Lookup>, fallback: Vec<SipUri>, transports: Vec<Transport>) -> Self {
        let invite_timeout = Duration::from_millis(RoutesConfig::default().invite_timeout_ms);
        Self { dns, lookup, fallback, transports, invite_timeout }
    }

    /// How long a route has to ring or answer an INVITE before a call moves on to the next
    /// (`routes.invite_timeout_ms`).
    pub fn invite_timeout(&self) -> Duration {
        self.invite_timeout
    }

    /// Every route of `remote`, in the order to try them: a number's validated ENUM `E2U+sip` routes (in
    /// the answer's order), then `routes.fallback` in its order; a SIP address has one. Never empty. A route
    /// whose name does not resolve is left out (an error only when that leaves none).
    pub async fn routes(&self, remote: &str) -> Result<Vec<Route>, RouteError> {
        let uris: Vec<SipUri> = if remote.starts_with('+') {
            let mut uris = Vec::new();
            if let Some(lookup) = &self.lookup {
                uris = enum_route::routes(lookup, remote).await?.sip;
            }
            uris.extend(self.fallback.iter().map(|gw| {
                let mut u = SipUri::new(Some(remote), gw.host.clone());
                u.secure = gw.secure;
                u.port = gw.port;
                u.params = gw.params.clone();
                u.set_param("user", Some("phone"));
                u
            }));
            if uris.is_empty() {
                return Err(RouteError::NoRoute(remote.to_owned()));
            }
            uris
        } else {
            match remote.parse::<Uri>() {
                Ok(Uri::Sip(s)) => vec![s],
                _ => return Err(RouteError::Invalid(remote.to_owned())),
            }
        };
        let mut routes = Vec::with_capacity(uris.len());
        let mut failed = None;
        for uri in uris {
            let mut seed = 0x9e37_79b9u32;
            let resolved = resolve(self.dns.as_ref(), &uri, &self.transports, move || {
                seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                seed
            })
            .await;
            match resolved {
                Ok(targets) => routes.push(Route { uri: Uri::Sip(uri), targets }),
                Err(e) => {
                    tracing::info!(%uri, error = %e, "a route did not resolve; left out");
                    failed = Some(e);
                }
            }
        }
        match failed {
            Some(e) if routes.is_empty() => Err(e.into()),
            _ => Ok(routes),
        }
    }
}

/// Whether a call moves on to its next route after this final response from a route: 408 and 5xx (the
/// route, not the called party, failed). Any other final answer — 4xx, 6xx — is the called party's and goes
/// back to the caller (RFC 3261 §16.7: after a 6xx nothing more is tried).
pub fn fails_over(code: u16) -> bool {
    code == 408 || (500..600).contains(&code)
}

/// The name servers of `/etc/resolv.conf`.
fn system_servers() -> Result<Vec<SocketAddr>, String> {
    let text = std::fs::read_to_string("/etc/resolv.conf").map_err(|e| e.to_string())?;
    let servers: Vec<SocketAddr> = text
        .lines()
        .filter_map(|l| l.strip_prefix("nameserver"))
        .filter_map(|ip| ip.trim().parse::<std::net::IpAddr>().ok())
        .map(|ip| SocketAddr::new(ip, 53))
        .collect();
    if servers.is_empty() { Err("no nameserver in /etc/resolv.conf".into()) } else { Ok(servers) }
}

/// Sends `request` to each target of `route` in turn until one gives a final answer other than 503 (or a
/// timeout); returns that answer and the target that gave it.
pub async fn send_along(
    stack: &dyn SipStack,
    route: &Route,
    mut request: OutgoingRequest,
) -> Result<(SipResponse, Target), RouteError> {
    let mut last = None;
    for &target in &route.targets {
        request.target = target;
        match stack.request(request.clone()).await {
            Ok(r) if r.code == 503 => last = Some(Ok((r, target))),
            Ok(r) => return Ok((r, target)),
            Err(e @ (StackError::Timeout(_) | StackError::Stack(_))) => {
                tracing::debug!(%target, error = %e, "target failed; trying the next");
                last = Some(Err(RouteError::Stack(e)));
            }
            Err(e) => return Err(e.into()),
        }
    }
    last.unwrap_or_else(|| Err(RouteError::NoRoute(route.uri.to_string())))
}

/// Sends `request` (a MESSAGE) down `routes`, in order, each through [`send_along`], with the route's URI as
/// Request-URI and To: a route that fails as a route ([`fails_over`]: 408, 5xx, or no answer from any of its
/// targets) passes the request to the next; any other answer is final. Returns the answer and the index of the
/// route that gave it; when every route failed, the last failure.
pub async fn send_over(
    stack: &dyn SipStack,
    routes: &[Route],
    request: OutgoingRequest,
) -> Result<(SipResponse, usize), RouteError> {
    let mut last = Err(RouteError::NoRoute(request.uri.to_string()));
    for (i, route) in routes.iter().enumerate() {
        let mut request = request.clone();
        request.uri = route.uri.clone();
        request.to = NameAddr { display_name: None, uri: route.uri.clone(), params: Vec::new() };
        match send_along(stack, route, request).await {
            Ok((resp, target)) if fails_over(resp.code) => {
                tracing::info!(%target, code = resp.code, "the route failed; trying the next");
                last = Ok((resp, i));
            }
            Ok((resp, _)) => return Ok((resp, i)),
            Err(e @ RouteError::Stack(_)) => {
                tracing::info!(uri = %route.uri, error = %e, "the route did not answer; trying the next");
                last = Err(e);
            }
            Err(e) => return Err(e),
        }
    }
    last
}
