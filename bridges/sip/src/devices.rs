//! A Tincan user's registered SIP devices as destinations: a call or a MESSAGE to their number reaches every
//! live binding the registrar holds, besides their Matrix clients.
//!
//! Each binding is reached at its Contact URI (the Request-URI), sent to the address its REGISTER came from,
//! over the same transport (the device may sit behind NAT; RFC 3261 §10.3 keeps the Contact, the source is how
//! to get there). How a call is forked is in [`crate::calls`] (its `fork` module); MESSAGEs are copied to each
//! device once the Matrix copy is recorded.

use crate::store::{Binding, Store};
use std::sync::Arc;
use tincan_common::Clock;
use tincan_sip_core::stack::{Method, OutgoingRequest, SipRequest, SipStack, Target};
use tincan_sip_core::uri::{NameAddr, Uri};

/// The registered devices of numbers.
#[derive(Debug, Clone)]
pub struct Devices {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
}

impl Devices {
    /// Devices as the registrar stored them in `store`.
    pub fn new(store: Arc<dyn Store>, clock: Arc<dyn Clock>) -> Self {
        Self { store, clock }
    }

    /// The live bindings of `number` (none when the store fails: the call or message still reaches Matrix).
    pub async fn of(&self, number: &str) -> Vec<Binding> {
        let now = i64::try_from(self.clock.unix_seconds()).unwrap_or(i64::MAX);
        match self.store.bindings(number, now).await {
            Ok(b) => b,
            Err(e) => {
                tracing::warn!(error = %e, "reading a number's registered devices failed; Matrix only");
                Vec::new()
            }
        }
    }
}

/// Where a request to a device goes: its Contact as Request-URI, to the REGISTER's source. `None` for a
/// Contact that does not parse (the registrar stored what parsed, so only a corrupt row).
pub fn destination(b: &Binding) -> Option<(Uri, Target)> {
    b.contact.parse::<Uri>().ok().map(|u| (u, b.source))
}

/// `from` as the From of a request we originate on the sender's behalf: its tag dropped (the stack adds ours).
pub fn on_behalf_of(from: &NameAddr) -> NameAddr {
    NameAddr {
        display_name: from.display_name.clone(),
        uri: from.uri.clone(),
        params: from.params.iter().filter(|(n, _)| !n.eq_ignore_ascii_case("tag")).cloned().collect(),
    }
}

/// Copies a MESSAGE (`req`, to `aor`) to each of `bindings`, in the background: From the original sender, To
/// the user's address of record, the body and its type as they came. The sender was answered already (its
/// message is in Matrix); a device that refuses or does not answer is only logged.
pub fn copy_message(stack: &Arc<dyn SipStack>, req: &SipRequest, aor: &NameAddr, bindings: Vec<Binding>) {
    for b in bindings {
        let Some((uri, target)) = destination(&b) else { continue };
        let request = OutgoingRequest {
            method: Method::Message,
            uri,
            from: on_behalf_of(&req.from),
            to: aor.clone(),
            headers: Vec::new(),
            content_type: req.header("Content-Type").map(str::to_owned),
            body: req.body.clone(),
            target,
            call_id: None,
        };
        let stack = stack.clone();
        tokio::spawn(async move {
            match stack.request(request).await {
                Ok(r) if r.is_success() => tracing::debug!(device = %b.username, "MESSAGE copied to a device"),
                Ok(r) => tracing::info!(device = %b.username, code = r.code, "a device refused a MESSAGE copy"),
                Err(e) => tracing::info!(device = %b.username, error = %e, "a MESSAGE copy reached no device"),
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_on_the_senders_behalf_carries_no_tag_of_theirs() {
        let from: NameAddr = r#""Bob" <sip:+15551234567@10.0.0.1;user=phone>;tag=abc;x=1"#.parse().unwrap();
        let ours = on_behalf_of(&from);
        assert_eq!(ours.display_name.as_deref(), Some("Bob"));
        assert_eq!(ours.uri, from.uri);
        assert_eq!(ours.tag(), None);
        assert_eq!(ours.params, vec![("x".to_owned(), Some("1".to_owned()))]);
    }
}
