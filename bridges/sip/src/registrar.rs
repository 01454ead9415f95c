//! The registrar (RFC 3261 §10.3) for Tincan users' SIP devices: a device registers under its user's number
//! (`To: <sip:+442079460001@sip.provider.example>`) with the digest username and password the sign-up
//! extension issued for that device. The bridge is the registrar (see the crate README for why).
//!
//! - no `Authorization`: 401 with SHA-256 and MD5 challenges;
//! - an unknown or revoked device, or one registering under a number not its own: 403;
//! - a stale nonce: 401 `stale=true`; a wrong password: 403;
//! - `Expires` (header or Contact parameter) below the minimum: 423 with `Min-Expires`; above the maximum:
//!   granted the maximum; `0` removes that binding, `Contact: *` with `Expires: 0` removes the device's
//!   bindings (only the authenticated device's: one device cannot unregister another);
//! - a refresh with the same Call-ID and an older CSeq changes nothing (§10.3 step 7);
//! - 200 lists every live binding of the number with its remaining time.

use crate::store::{Binding, Store};
use crate::subscribers::Subscribers;
use std::sync::Arc;
use tincan_common::Clock;
use tincan_sip_core::digest::{Credentials, DigestError, DigestRealm};
use tincan_sip_core::stack::{Headers, IncomingRequest, SipRequest};
use tincan_sip_core::uri::NameAddr;

/// The registrar.
#[derive(Debug)]
pub struct Registrar {
    realm: DigestRealm,
    subscribers: Arc<dyn Subscribers>,
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    min_expires: u32,
    max_expires: u32,
}

/// A response: status, reason, headers.
pub type Answer = (u16, &'static str, Headers);

impl Registrar {
    /// A registrar for `realm` with nonces signed by `secret`.
    pub fn new(
        realm: DigestRealm,
        subscribers: Arc<dyn Subscribers>,
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
        min_expires: u32,
        max_expires: u32,
    ) -> Self {
        Self { realm, subscribers, store, clock, min_expires, max_expires }
    }

    /// The bindings it keeps, as destinations of calls and messages to the users' numbers.
    pub fn devices(&self) -> crate::devices::Devices {
        crate::devices::Devices::new(self.store.clone(), self.clock.clone())
    }

    /// Answers one REGISTER.
    pub async fn handle(&self, incoming: IncomingRequest) {
        let (code, reason, headers) = self.answer(&incoming.request).await;
        incoming.respond(code, reason, headers, Vec::new());
    }

    fn challenge(&self, stale: bool) -> Answer {
        let headers = self
            .realm
            .challenges(self.clock.unix_seconds(), stale)
            .into_iter()
            .map(|c| ("WWW-Authenticate".to_owned(), c))
            .collect();
        (401, "Unauthorized", headers)
    }

    /// The response to `req` (a REGISTER), having applied it.
    pub async fn answer(&self, req: &SipRequest) -> Answer {
        let now = self.clock.unix_seconds();
        let Some(number) = req.to.uri.phone_number() else {
            return (404, "Not Found", Vec::new());
        };
        let Some(auth) = req.header("Authorization") else {
            return self.challenge(false);
        };
        let creds = match Credentials::parse(auth) {
            Ok(c) => c,
            Err(_) => return (400, "Bad Request", Vec::new()),
        };
        let device = match self.subscribers.device(&creds.username).await {
            Ok(Some(d)) => d,
            Ok(None) => return (403, "Forbidden", Vec::new()),
            Err(e) => {
                tracing::warn!(error = %e, "device lookup failed");
                return (503, "Service Unavailable", vec![("Retry-After".into(), "10".into())]);
            }
        };
        if device.number != number {
            return (403, "Forbidden", Vec::new());
        }
        let ha1s: Vec<_> = device.ha1.iter().map(|(a, h)| (*a, h.as_str())).collect();
        match self.realm.verify(&creds, "REGISTER", now, &ha1s) {
            Ok(_) => {}
            Err(DigestError::Stale) => return self.challenge(true),
            Err(DigestError::Nonce) => return self.challenge(false),
            Err(DigestError::Malformed(_) | DigestError::Algorithm(_)) => return (400, "Bad Request", Vec::new()),
            Err(DigestError::Mismatch | DigestError::Realm) => return (403, "Forbidden", Vec::new()),
        }

        let header_expires: Option<u32> = req.header("Expires").and_then(|e| e.trim().parse().ok());
        let contacts: Vec<&str> = req
            .headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case("Contact") || n == "m")
            .flat_map(|(_, v)| split_list(v))
            .collect();
        let now_i = i64::try_from(now).unwrap_or(i64::MAX);
        if contacts.iter().any(|c| c.trim() == "*") {
            if contacts.len() != 1 || header_expires != Some(0) {
                return (400, "Bad Request", Vec::new());
            }
            if let Err(e) = self.store.remove_device_bindings(&number, &device.username).await {
                tracing::warn!(error = %e, "removing bindings failed");
                return (500, "Server Internal Error", Vec::new());
            }
        } else {
            let mut changes = Vec::new();
            for c in &contacts {
                let Ok(na) = c.parse::<NameAddr>() else { return (400, "Bad Request", Vec::new()) };
                let expires =
                    na.param("expires").and_then(|e| e.parse::<u32>().ok()).or(header_expires).unwrap_or(3600);
                if expires != 0 && expires < self.min_expires {
                    return (423, "Interval Too Brief", vec![("Min-Expires".into(), self.min_expires.to_string())]);
                }
                changes.push((na.uri.to_string(), expires.min(self.max_expires)));
            }
            for (contact, expires) in changes {
                let result = if expires == 0 {
                    self.store.remove_binding(&number, &contact).await.map(drop)
                } else {
                    let b = Binding {
                        number: number.clone(),
                        contact,
                        username: device.username.clone(),
                        source: req.source,
                        call_id: req.call_id.clone(),
                        cseq: i64::from(req.cseq),
                        expires_at: now_i + i64::from(expires),
                        user_agent: req.header("User-Agent").map(str::to_owned),
                    };
                    self.store.upsert_binding(&b).await.map(drop)
                };
                if let Err(e) = result {
                    tracing::warn!(error = %e, "storing a binding failed");
                    return (500, "Server Internal Error", Vec::new());
                }
            }
        }
        let bindings = match self.store.bindings(&number, now_i).await {
            Ok(b) => b,
            Err(e) => {
                tracing::warn!(error = %e, "reading bindings failed");
                return (500, "Server Internal Error", Vec::new());
            }
        };
        let headers = bindings
            .iter()
            .map(|b| ("Contact".to_owned(), format!("<{}>;expires={}", b.contact, (b.expires_at - now_i).max(0))))
            .collect();
        tracing::info!(number = %tincan_common::telemetry::redact_number(&number), device = %device.username,
            bindings = bindings.len(), "REGISTER accepted");
        (200, "OK", headers)
    }
}

/// Splits a header value at the commas that separate list elements (not those inside quotes or `<…>`).
pub fn split_list(v: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let (mut quoted, mut angle, mut escaped) = (false, false, false);
    let mut start = 0;
    for (i, b) in v.bytes().enumerate() {
        match b {
            _ if escaped => escaped = false,
            b'\\' if quoted => escaped = true,
            b'"' => quoted = !quoted,
            b'<' if !quoted => angle = true,
            b'>' if !quoted => angle = false,
            b',' if !quoted && !angle => {
                out.push(v[start..i].trim());
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(v[start..].trim());
    out.retain(|s| !s.is_empty());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contact_lists_split_outside_quotes_and_brackets() {
        assert_eq!(
            split_list(r#""a, b" <sip:x@h;p=1,2>;expires=60, <sip:y@h>"#),
            [r#""a, b" <sip:x@h;p=1,2>;expires=60"#, "<sip:y@h>"]
        );
        assert_eq!(split_list("*"), ["*"]);
        assert!(split_list(" , ").is_empty());
    }
}
