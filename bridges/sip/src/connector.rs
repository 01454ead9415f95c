//! The bridge's network connector on the core: SIP MESSAGE ↔ Matrix text, REGISTER to the registrar, calls to
//! [`crate::calls`].
//!
//! Remote users are E.164 numbers (`+15551234567`, the ghost `@sip_+15551234567:hs`) when the SIP identity is
//! a phone number, else SIP addresses of record (`sip:bob@example.com`). A portal is (Tincan user, remote).
//!
//! Inbound MESSAGEs are taken in batches as they arrive: every MESSAGE waiting is recorded in the core's
//! durable queue in one transaction, and each is answered 202 only once recorded (a crash before that loses
//! nothing: the phone retransmits or reports the failure). Their order of arrival is their order in Matrix.

use crate::devices::Devices;
use crate::messages::{self, BodyError};
use crate::registrar::Registrar;
use crate::routing::{self, RouteError, Router};
use crate::subscribers::Subscribers;
use async_trait::async_trait;
use ruma::UserId;
use sha2::Digest;
use std::sync::{Arc, Mutex, OnceLock};
use tincan_appservice::{
    BridgeHandle, Capabilities, ConnectorError, MatrixCall, MatrixMessage, MessageStatus, NetworkApi, NetworkConnector,
    PortalKey, PortalRef, RemoteChatId, RemoteEvent, RemoteEventKind, RemoteMessageId, RemoteProfile, RemoteUserId,
};
use tincan_sip_core::stack::{Incoming, IncomingRequest, Method, OutgoingRequest, SipStack, Target, Transport};
use tincan_sip_core::uri::{NameAddr, SipUri, Uri};
use tokio::sync::mpsc;

/// What the connector works with.
pub struct Shared {
    /// The SIP stack.
    pub stack: Arc<dyn SipStack>,
    /// Our SIP domain.
    pub domain: String,
    /// Who holds which number.
    pub subscribers: Arc<dyn Subscribers>,
    /// Outbound routing.
    pub router: Arc<Router>,
    /// The registrar.
    pub registrar: Registrar,
    /// Users' registered SIP devices (MESSAGEs to a number are copied to them).
    pub devices: Devices,
    /// Calls.
    pub calls: Option<Arc<crate::calls::Calls>>,
    bridge: OnceLock<BridgeHandle>,
    incoming: Mutex<Option<mpsc::Receiver<Incoming>>>,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared").field("domain", &self.domain).finish_non_exhaustive()
    }
}

/// The SIP network connector.
#[derive(Debug, Clone)]
pub struct SipConnector {
    shared: Arc<Shared>,
}

/// The most MESSAGEs recorded in one database transaction.
const BATCH: usize = 256;

impl SipConnector {
    /// A connector over `stack` (whose incoming requests arrive on `incoming`).
    pub fn new(
        stack: Arc<dyn SipStack>,
        incoming: mpsc::Receiver<Incoming>,
        domain: String,
        subscribers: Arc<dyn Subscribers>,
        router: Arc<Router>,
        registrar: Registrar,
        calls: Option<Arc<crate::calls::Calls>>,
    ) -> Self {
        Self {
            shared: Arc::new(Shared {
                stack,
                domain,
                subscribers,
                router,
                devices: registrar.devices(),
                registrar,
                calls,
                bridge: OnceLock::new(),
                incoming: Mutex::new(Some(incoming)),
            }),
        }
    }

    /// The shared parts.
    pub fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }
}

fn is_number(s: &str) -> bool {
    s.starts_with('+') && s.len() > 2 && s.len() <= 16 && s[1..].bytes().all(|b| b.is_ascii_digit())
}

#[async_trait]
impl NetworkConnector for SipConnector {
    fn name(&self) -> &str {
        "sip"
    }

    fn ghost_prefix(&self) -> &str {
        "sip_"
    }

    fn capabilities(&self) -> Capabilities {
        let mut c = Capabilities::text_only();
        c.pstn_lookup = true;
        c.calls = self.shared.calls.is_some();
        c
    }

    async fn start(&self, bridge: BridgeHandle) -> Result<(), ConnectorError> {
        let _ = self.shared.bridge.set(bridge.clone());
        if let Some(calls) = &self.shared.calls {
            calls.start(bridge).await;
        }
        let rx = self.shared.incoming.lock().expect("not poisoned").take();
        if let Some(rx) = rx {
            tokio::spawn(serve(self.shared.clone(), rx));
        }
        Ok(())
    }

    async fn login(&self, user: &UserId) -> Result<Option<Arc<dyn NetworkApi>>, ConnectorError> {
        let numbers =
            self.shared.subscribers.numbers_of(user).await.map_err(|e| ConnectorError::Temporary(e.to_string()))?;
        Ok(numbers
            .into_iter()
            .next()
            .map(|number| Arc::new(SipLogin { shared: self.shared.clone(), number }) as Arc<dyn NetworkApi>))
    }

    async fn remote_profile(&self, user: &RemoteUserId) -> Result<RemoteProfile, ConnectorError> {
        let s = user.as_str();
        let display = if is_number(s) {
            phonenumber::parse(None, s)
                .map(|n| n.format().mode(phonenumber::Mode::International).to_string())
                .unwrap_or_else(|_| s.to_owned())
        } else {
            s.trim_start_matches("sip:").to_owned()
        };
        Ok(RemoteProfile { display_name: Some(format!("{display} (SIP)")), avatar_url: None })
    }

    fn is_valid_remote_user(&self, user: &RemoteUserId) -> bool {
        let s = user.as_str();
        is_number(s) || matches!(s.parse::<Uri>(), Ok(Uri::Sip(u)) if u.user.is_some())
    }

    fn remote_user_for_phone(&self, e164: &str) -> Result<Option<RemoteUserId>, ConnectorError> {
        Ok(Some(RemoteUserId::new(e164)))
    }
}

/// One Tincan user's side of SIP: messages go out from their number.
struct SipLogin {
    shared: Arc<Shared>,
    number: String,
}

/// A Call-ID fixed by the Matrix event, so a resend of the same event (after a crash, or a retry) carries
/// the same Call-ID and CSeq and a receiver can tell it is the same message.
fn call_id_of(event: &str, part: usize, domain: &str) -> String {
    let h = sha2::Sha256::digest(format!("{event}/{part}").as_bytes());
    format!("{}@{domain}", hex_of(&h[..12]))
}

fn hex_of(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// How a final response maps to a connector result.
fn outcome(code: u16, reason: &str) -> Result<(), ConnectorError> {
    match code {
        200..=299 => Ok(()),
        408 | 480 | 500 | 503 | 504 => Err(ConnectorError::Temporary(format!("SIP {code} {reason}"))),
        _ => Err(ConnectorError::Rejected(format!("SIP {code} {reason}"))),
    }
}

fn route_err(e: RouteError) -> ConnectorError {
    if e.is_temporary() { ConnectorError::Temporary(e.to_string()) } else { ConnectorError::Rejected(e.to_string()) }
}

#[async_trait]
impl NetworkApi for SipLogin {
    async fn handle_matrix_message(
        &self,
        portal: &PortalRef,
        message: &MatrixMessage,
    ) -> Result<RemoteMessageId, ConnectorError> {
        let remote = portal.other_user.as_str();
        let routes = self.shared.router.routes(remote).await.map_err(route_err)?;
        let text = match message.msgtype.as_str() {
            "m.emote" => format!("* {}", message.body),
            "m.text" | "m.notice" => message.body.clone(),
            // Attachments (and locations, polls…) are not text: SIP MESSAGE here carries text/plain only.
            other => {
                let kind = other.strip_prefix("m.").unwrap_or(other);
                return Err(ConnectorError::Rejected(format!("{kind} messages cannot be sent as SIP MESSAGE")));
            }
        };
        let from: NameAddr = format!("<sip:{}@{}>", self.number, self.shared.domain)
            .parse()
            .map_err(|e| ConnectorError::Rejected(format!("our own address: {e}")))?;
        let mut last = String::new();
        let mut all_final = true;
        // The pieces of a long text start at the route that took the ones before.
        let mut first_route = 0;
        for (i, chunk) in messages::split(&text, messages::MAX_CHUNK).into_iter().enumerate() {
            let call_id = call_id_of(message.event_id.as_str(), i, &self.shared.domain);
            let left = &routes[first_route..];
            let route = left.first().ok_or_else(|| ConnectorError::Rejected("no route".into()))?;
            let request = OutgoingRequest {
                method: Method::Message,
                uri: route.uri.clone(),
                from: from.clone(),
                to: NameAddr { display_name: None, uri: route.uri.clone(), params: Vec::new() },
                headers: Vec::new(),
                content_type: Some("text/plain;charset=UTF-8".into()),
                body: chunk.as_bytes().to_vec(),
                target: route.targets.first().copied().ok_or_else(|| ConnectorError::Rejected("no target".into()))?,
                call_id: Some(call_id.clone()),
            };
            let (resp, took) =
                routing::send_over(self.shared.stack.as_ref(), left, request).await.map_err(route_err)?;
            first_route += took;
            outcome(resp.code, &resp.reason)?;
            all_final &= resp.code != 202;
            last = call_id;
        }
        // The final answers are the message's status: 200 from the party's user agent is delivered, 202 (a
        // relay or a gateway took it) is sent; a failure is the error returned, which the core reports itself.
        let status = if all_final { MessageStatus::Delivered } else { MessageStatus::Sent };
        if let Some(bridge) = self.shared.bridge.get()
            && let Err(e) = bridge.report_message_status(&portal.key, &message.event_id, status).await
        {
            tracing::warn!(error = %e, "recording a message status failed");
        }
        Ok(RemoteMessageId::new(last))
    }

    async fn handle_matrix_call(&self, portal: &PortalRef, call: &MatrixCall) -> Result<(), ConnectorError> {
        let Some(calls) = &self.shared.calls else { return Err(ConnectorError::Unsupported) };
        let event = crate::calls::voip::VoipEvent::parse(&call.event_type, &call.content)
            .map_err(|e| ConnectorError::Rejected(e.to_string()))?;
        calls.from_matrix(&call.sender, &self.number, portal.key.clone(), portal.other_user.clone(), event);
        Ok(())
    }
}

/// Serves what the SIP stack hands up, until it stops.
async fn serve(shared: Arc<Shared>, mut rx: mpsc::Receiver<Incoming>) {
    let mut batch: Vec<IncomingRequest> = Vec::new();
    while let Some(first) = rx.recv().await {
        let mut next = Some(first);
        while let Some(incoming) = next.take() {
            match incoming {
                Incoming::Request(req) if req.request.method == Method::Message => batch.push(*req),
                Incoming::Request(req) => dispatch_other(&shared, *req),
                Incoming::Call(leg, events) => match &shared.calls {
                    Some(calls) => calls.clone().incoming(leg, events),
                    None => {
                        let _ = leg.reject(480, "Temporarily Unavailable");
                    }
                },
            }
            if batch.len() < BATCH {
                next = rx.try_recv().ok();
            }
        }
        if !batch.is_empty() {
            messages_in(&shared, std::mem::take(&mut batch)).await;
        }
    }
}

fn dispatch_other(shared: &Arc<Shared>, req: IncomingRequest) {
    match req.request.method {
        Method::Register => {
            let shared = shared.clone();
            tokio::spawn(async move { shared.registrar.handle(req).await });
        }
        Method::Options => req.respond(
            200,
            "OK",
            vec![
                ("Allow".into(), "INVITE, ACK, BYE, CANCEL, OPTIONS, MESSAGE, REGISTER".into()),
                ("Accept".into(), "application/sdp, text/plain, message/cpim".into()),
            ],
            Vec::new(),
        ),
        _ => req.respond(
            405,
            "Method Not Allowed",
            vec![("Allow".into(), "INVITE, ACK, BYE, CANCEL, OPTIONS, MESSAGE, REGISTER".into())],
            Vec::new(),
        ),
    }
}

/// What a MESSAGE becomes (and the Tincan number it is for), or the answer refusing it.
async fn to_event(
    shared: &Shared,
    req: &tincan_sip_core::stack::SipRequest,
) -> Result<(RemoteEvent, String), (u16, &'static str)> {
    let number = req.uri.phone_number().or_else(|| req.to.uri.phone_number()).ok_or((404, "Not Found"))?;
    let receiver = match shared.subscribers.user_of(&number).await {
        Ok(Some(u)) => u,
        Ok(None) => return Err((404, "Not Found")),
        Err(e) => {
            tracing::warn!(error = %e, "subscriber lookup failed");
            return Err((503, "Service Unavailable"));
        }
    };
    let text = messages::inbound_text(req.header("Content-Type"), &req.body).map_err(|e: BodyError| e.status())?;
    let sender = messages::remote_id(&req.from).ok_or((400, "Bad Request"))?;
    let event = RemoteEvent {
        portal: PortalKey { receiver, chat: RemoteChatId::new(sender.clone()) },
        sender: RemoteUserId::new(sender),
        kind: RemoteEventKind::Message {
            id: RemoteMessageId::new(format!("{}/{}", req.call_id, req.cseq)),
            body: text,
        },
    };
    Ok((event, number))
}

async fn messages_in(shared: &Arc<Shared>, batch: Vec<IncomingRequest>) {
    let Some(bridge) = shared.bridge.get() else {
        for r in batch {
            r.respond(503, "Service Unavailable", vec![("Retry-After".into(), "5".into())], Vec::new());
        }
        return;
    };
    let mut accepted = Vec::new();
    let mut events = Vec::new();
    for r in batch {
        match to_event(shared, &r.request).await {
            Ok((ev, number)) => {
                events.push(ev);
                accepted.push((r, number));
            }
            Err((415, reason)) => {
                r.respond(415, reason, vec![("Accept".into(), "text/plain, message/cpim".into())], Vec::new())
            }
            Err((code, reason)) => r.reply(code, reason),
        }
    }
    if events.is_empty() {
        return;
    }
    match bridge.queue_remote_events(events).await {
        Ok(()) => {
            let mut copies = Vec::with_capacity(accepted.len());
            for (r, number) in accepted {
                copies.push((r.request.clone(), number));
                r.reply(202, "Accepted");
            }
            // The user's registered SIP devices get a copy once the Matrix one is safe (off the serving loop).
            let shared = shared.clone();
            tokio::spawn(async move {
                for (request, number) in copies {
                    let bindings = shared.devices.of(&number).await;
                    if !bindings.is_empty() {
                        let uri = Uri::Sip(our_uri(&number, &shared.domain));
                        let aor = NameAddr { display_name: None, uri, params: Vec::new() };
                        crate::devices::copy_message(&shared.stack, &request, &aor, bindings);
                    }
                }
            });
        }
        Err(e) => {
            tracing::error!(error = %e, "recording inbound messages failed");
            for (r, _) in accepted {
                r.respond(500, "Server Internal Error", vec![("Retry-After".into(), "5".into())], Vec::new());
            }
        }
    }
}

/// Our address for `number`: `sip:+…@domain`.
pub fn our_uri(number: &str, domain: &str) -> SipUri {
    let mut u = SipUri::new(Some(number), tincan_sip_core::uri::Host::Domain(domain.to_ascii_lowercase()));
    u.set_param("user", Some("phone"));
    u
}

/// The first listener on `transport`, else the first of all.
pub fn listener_for(stack: &dyn SipStack, transport: Transport) -> Option<Target> {
    let l = stack.listeners();
    l.iter().find(|t| t.transport == transport).or(l.first()).copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn call_ids_are_fixed_by_the_event() {
        let a = call_id_of("$ev1", 0, "sip.test");
        assert_eq!(a, call_id_of("$ev1", 0, "sip.test"));
        assert_ne!(a, call_id_of("$ev1", 1, "sip.test"));
        assert_ne!(a, call_id_of("$ev2", 0, "sip.test"));
        assert!(a.ends_with("@sip.test") && a.len() == 24 + "@sip.test".len());
    }

    #[test]
    fn responses_map_to_connector_results() {
        assert!(outcome(202, "Accepted").is_ok());
        assert!(matches!(outcome(404, "Not Found"), Err(ConnectorError::Rejected(m)) if m == "SIP 404 Not Found"));
        assert!(matches!(outcome(503, "Service Unavailable"), Err(ConnectorError::Temporary(_))));
        assert!(matches!(outcome(408, "Request Timeout"), Err(ConnectorError::Temporary(_))));
        assert!(matches!(outcome(603, "Decline"), Err(ConnectorError::Rejected(_))));
    }

    #[test]
    fn numbers_and_sip_addresses_are_remote_users() {
        assert!(is_number("+442079460001"));
        assert!(!is_number("+"));
        assert!(!is_number("442079460001"));
        assert!(!is_number("+44 20"));
    }
}
