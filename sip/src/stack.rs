//! The SIP stack as the bridge and the gateway see it: a small trait, [`SipStack`], and plain types in and
//! out of it. Nothing of the underlying stack crate shows through, so a change of stack (or of its API between
//! patch releases) stays inside [`rsip_stack`].
//!
//! - Requests outside dialogs (MESSAGE, OPTIONS) go out with [`SipStack::request`], which waits for the final
//!   response.
//! - Calls go out with [`SipStack::invite`]; the returned [`CallLeg`] is controlled through its methods and
//!   reports what happens on its [`LegEvents`].
//! - What arrives comes out of the [`Incoming`] channel given at start: a request to answer once
//!   ([`IncomingRequest`]) or a new call ([`CallLeg`] in the server role).
//!
//! Every URI and name-addr here is parsed by [`crate::uri`] from the wire text, never by the stack.

pub mod rsip_stack;

use crate::uri::{NameAddr, Uri, UriError};
use async_trait::async_trait;
use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot};

/// A SIP transport.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    /// UDP.
    Udp,
    /// TCP.
    Tcp,
    /// TLS over TCP.
    Tls,
    /// WebSocket (RFC 7118).
    Ws,
    /// Secure WebSocket.
    Wss,
}

impl Transport {
    /// The `transport=` parameter value (RFC 3261, RFC 7118).
    pub fn from_param(s: &str) -> Option<Self> {
        match s.to_ascii_lowercase().as_str() {
            "udp" => Some(Transport::Udp),
            "tcp" => Some(Transport::Tcp),
            "tls" => Some(Transport::Tls),
            "ws" => Some(Transport::Ws),
            "wss" => Some(Transport::Wss),
            _ => None,
        }
    }

    /// The transport of a NAPTR service field (RFC 3263 §4.1, RFC 7118 §7).
    pub fn from_naptr_service(s: &str) -> Option<Self> {
        match s.to_ascii_uppercase().as_str() {
            "SIP+D2U" => Some(Transport::Udp),
            "SIP+D2T" => Some(Transport::Tcp),
            "SIPS+D2T" => Some(Transport::Tls),
            "SIP+D2W" => Some(Transport::Ws),
            "SIPS+D2W" => Some(Transport::Wss),
            _ => None,
        }
    }

    /// The port used when none is given: 5060, 5061 for TLS, 80/443 for WebSocket.
    pub fn default_port(self) -> u16 {
        match self {
            Transport::Udp | Transport::Tcp => 5060,
            Transport::Tls => 5061,
            Transport::Ws => 80,
            Transport::Wss => 443,
        }
    }

    /// TLS or WSS.
    pub fn is_secure(self) -> bool {
        matches!(self, Transport::Tls | Transport::Wss)
    }

    /// The lower-case parameter form.
    pub fn as_param(self) -> &'static str {
        match self {
            Transport::Udp => "udp",
            Transport::Tcp => "tcp",
            Transport::Tls => "tls",
            Transport::Ws => "ws",
            Transport::Wss => "wss",
        }
    }
}

impl fmt::Display for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_param())
    }
}

/// Where to send: a transport and an address (what RFC 3263 resolution yields).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Target {
    /// The transport.
    pub transport: Transport,
    /// The address.
    pub addr: SocketAddr,
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.transport, self.addr)
    }
}

/// A SIP method.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Method {
    /// INVITE.
    Invite,
    /// ACK.
    Ack,
    /// BYE.
    Bye,
    /// CANCEL.
    Cancel,
    /// MESSAGE (RFC 3428).
    Message,
    /// REGISTER.
    Register,
    /// OPTIONS.
    Options,
    /// INFO.
    Info,
    /// Any other method, upper-case.
    Other(String),
}

impl Method {
    /// The method token.
    pub fn as_str(&self) -> &str {
        match self {
            Method::Invite => "INVITE",
            Method::Ack => "ACK",
            Method::Bye => "BYE",
            Method::Cancel => "CANCEL",
            Method::Message => "MESSAGE",
            Method::Register => "REGISTER",
            Method::Options => "OPTIONS",
            Method::Info => "INFO",
            Method::Other(s) => s,
        }
    }

    /// Parses a method token.
    pub fn parse(s: &str) -> Self {
        match s.to_ascii_uppercase().as_str() {
            "INVITE" => Method::Invite,
            "ACK" => Method::Ack,
            "BYE" => Method::Bye,
            "CANCEL" => Method::Cancel,
            "MESSAGE" => Method::Message,
            "REGISTER" => Method::Register,
            "OPTIONS" => Method::Options,
            "INFO" => Method::Info,
            other => Method::Other(other.to_owned()),
        }
    }
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Header fields in order, as (name, value); names as received (compact forms expanded by the stack).
pub type Headers = Vec<(String, String)>;

/// The value of the first header named `name` (case-insensitive).
pub fn header<'a>(headers: &'a Headers, name: &str) -> Option<&'a str> {
    headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
}

/// Every value of the headers named `name`, comma-separated values of one header line kept together.
pub fn headers_named<'a>(headers: &'a Headers, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
    headers.iter().filter(move |(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
}

/// An RFC 3326 `Reason` header value with an ITU-T Q.850 cause: why a call ended (on a BYE or CANCEL) or was
/// refused (on a final response), in the terms the telephone network uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reason {
    /// The Q.850 cause (16: normal call clearing, 17: user busy, 34: no circuit available…).
    pub cause: u16,
    /// The text (`text="…"`), if any.
    pub text: Option<String>,
}

impl Reason {
    /// A Q.850 reason.
    pub fn q850(cause: u16, text: impl Into<String>) -> Self {
        Reason { cause, text: Some(text.into()) }
    }

    /// The Q.850 reason among `Reason` header values (each may list several, comma-separated); `None` when
    /// there is none (a `SIP;cause=…` reason is not one).
    pub fn find_q850<'a>(values: impl IntoIterator<Item = &'a str>) -> Option<Self> {
        values.into_iter().flat_map(|v| split_unquoted(v, ',')).find_map(|one| {
            let mut parts = split_unquoted(one, ';').into_iter().map(str::trim);
            if !parts.next()?.eq_ignore_ascii_case("q.850") {
                return None;
            }
            let (mut cause, mut text) = (None, None);
            for p in parts {
                let (k, v) = p.split_once('=')?;
                match k.trim().to_ascii_lowercase().as_str() {
                    "cause" => cause = v.trim().parse::<u16>().ok(),
                    "text" => text = Some(v.trim().trim_matches('"').to_owned()),
                    _ => {}
                }
            }
            Some(Reason { cause: cause?, text })
        })
    }
}

/// `s` split at each `sep` outside double quotes.
fn split_unquoted(s: &str, sep: char) -> Vec<&str> {
    let (mut out, mut start, mut quoted, mut escaped) = (Vec::new(), 0, false, false);
    for (i, c) in s.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            c if c == sep && !quoted => {
                out.push(&s[start..i]);
                start = i + c.len_utf8();
            }
            _ => {}
        }
    }
    out.push(&s[start..]);
    out
}

impl fmt::Display for Reason {
    /// `Q.850;cause=17;text="User busy"`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Q.850;cause={}", self.cause)?;
        if let Some(t) = &self.text {
            // A quoted-string: quotes and backslashes escaped, line breaks dropped.
            let t: String = t.chars().filter(|c| !c.is_control()).collect();
            write!(f, ";text=\"{}\"", t.replace('\\', "\\\\").replace('"', "\\\""))?;
        }
        Ok(())
    }
}

/// A request that arrived.
#[derive(Debug, Clone, PartialEq)]
pub struct SipRequest {
    /// The method.
    pub method: Method,
    /// The Request-URI.
    pub uri: Uri,
    /// The From header.
    pub from: NameAddr,
    /// The To header.
    pub to: NameAddr,
    /// The Call-ID.
    pub call_id: String,
    /// The CSeq number.
    pub cseq: u32,
    /// All header fields.
    pub headers: Headers,
    /// The body.
    pub body: Vec<u8>,
    /// Where it came from (the transport it arrived on and the peer's address).
    pub source: Target,
}

impl SipRequest {
    /// The first header named `name`.
    pub fn header(&self, name: &str) -> Option<&str> {
        header(&self.headers, name)
    }

    /// The media type of the body (`text/plain`), lower-case, without parameters.
    pub fn content_type(&self) -> Option<String> {
        self.header("Content-Type").map(|v| v.split(';').next().unwrap_or(v).trim().to_ascii_lowercase())
    }
}

/// A response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SipResponse {
    /// The status code.
    pub code: u16,
    /// The reason phrase.
    pub reason: String,
    /// All header fields.
    pub headers: Headers,
    /// The body.
    pub body: Vec<u8>,
}

impl SipResponse {
    /// The first header named `name`.
    pub fn header(&self, name: &str) -> Option<&str> {
        header(&self.headers, name)
    }

    /// 2xx.
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.code)
    }
}

/// A request to send.
#[derive(Debug, Clone, PartialEq)]
pub struct OutgoingRequest {
    /// The method.
    pub method: Method,
    /// The Request-URI.
    pub uri: Uri,
    /// From; a tag is added when it has none.
    pub from: NameAddr,
    /// To.
    pub to: NameAddr,
    /// Extra header fields (Content-Type is set from `content_type`).
    pub headers: Headers,
    /// The body's media type, if there is a body.
    pub content_type: Option<String>,
    /// The body.
    pub body: Vec<u8>,
    /// Where to send it (resolved by the caller, e.g. with [`crate::resolve`]).
    pub target: Target,
    /// A Call-ID to use; a fresh one when `None`.
    pub call_id: Option<String>,
}

/// Why the stack could not do something.
#[derive(Debug, thiserror::Error)]
pub enum StackError {
    /// A listener could not be opened.
    #[error("cannot listen on {target}: {source}")]
    Listen {
        /// Where.
        target: Target,
        /// Why.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// No listener for the transport a target needs.
    #[error("no {0} listener to send from")]
    NoListener(Transport),
    /// The stack refused or failed to send.
    #[error("SIP stack: {0}")]
    Stack(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// No final response in time (the transaction timed out).
    #[error("no response from {0}")]
    Timeout(Target),
    /// A URI or header the stack produced or received could not be parsed.
    #[error(transparent)]
    Uri(#[from] UriError),
    /// A message lacked something we need.
    #[error("invalid SIP message: {0}")]
    Invalid(&'static str),
    /// The operation does not fit the leg's state (answering a leg we placed, cancelling an answered one…).
    #[error("not possible in this call state: {0}")]
    State(&'static str),
    /// The stack was shut down.
    #[error("SIP stack stopped")]
    Stopped,
}

/// Stack result.
pub type Result<T, E = StackError> = std::result::Result<T, E>;

/// A request that arrived outside any dialog (MESSAGE, OPTIONS, REGISTER…): answer it once with
/// [`IncomingRequest::respond`]. Dropped unanswered, it is answered `500`.
#[derive(Debug)]
pub struct IncomingRequest {
    /// The request.
    pub request: SipRequest,
    responder: Option<oneshot::Sender<SipResponse>>,
}

impl IncomingRequest {
    /// Wraps a request and the channel its response goes back on (for stack implementations).
    pub fn new(request: SipRequest, responder: oneshot::Sender<SipResponse>) -> Self {
        Self { request, responder: Some(responder) }
    }

    /// Sends the final response.
    pub fn respond(mut self, code: u16, reason: &str, headers: Headers, body: Vec<u8>) {
        if let Some(tx) = self.responder.take() {
            let _ = tx.send(SipResponse { code, reason: reason.into(), headers, body });
        }
    }

    /// Sends a response without a body.
    pub fn reply(self, code: u16, reason: &str) {
        self.respond(code, reason, Vec::new(), Vec::new());
    }
}

impl Drop for IncomingRequest {
    fn drop(&mut self) {
        if let Some(tx) = self.responder.take() {
            let _ = tx.send(SipResponse {
                code: 500,
                reason: "Server Internal Error".into(),
                headers: Vec::new(),
                body: Vec::new(),
            });
        }
    }
}

/// What the stack hands to the application.
#[derive(Debug)]
pub enum Incoming {
    /// A request outside any dialog, to answer.
    Request(Box<IncomingRequest>),
    /// A new call: ring, answer or reject it through the leg.
    Call(CallLeg, LegEvents),
}

/// Who placed a leg.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// We sent the INVITE.
    Caller,
    /// We received it.
    Callee,
}

/// What happens on a call leg.
#[derive(Debug)]
pub enum LegEvent {
    /// (caller) A provisional response: 180 Ringing, 183 Session Progress with early media.
    Progress {
        /// 18x.
        code: u16,
        /// Early-media SDP, if any.
        sdp: Option<String>,
    },
    /// (caller) The callee answered (2xx, already ACKed) with this SDP.
    Answered {
        /// The answer.
        sdp: Option<String>,
    },
    /// (caller) The call failed with a final non-2xx response (or a local 408 on timeout).
    Failed {
        /// The status code.
        code: u16,
        /// The reason phrase.
        reason: String,
        /// The response's header fields (empty for a local 408): a 401/407's challenge
        /// (`WWW-Authenticate`, `Proxy-Authenticate`), a `Reason`, a `Retry-After`.
        headers: Headers,
    },
    /// (callee) The ACK for our 2xx arrived: the call is up.
    Confirmed {
        /// The answer the ACK carries when the INVITE came without an offer and our 2xx carried one (RFC 3261
        /// §13.2.1, a "delayed offer"); `None` otherwise, or when such an ACK had no body.
        sdp: Option<String>,
    },
    /// (callee) The caller cancelled before we answered (487 already sent).
    Cancelled,
    /// The other side hung up (BYE, already answered 200).
    HungUp,
    /// The other side sent a re-INVITE (hold, resume, new media): answer with `reply`.
    ReInvite {
        /// The new offer; `None` when it came without one (RFC 3264 §4, a session refresh or a request for
        /// our offer): then the SDP of an `Ok` reply is our offer, and the answer comes as
        /// [`LegEvent::ReInviteAnswer`].
        sdp: Option<String>,
        /// Our answer (our offer when `sdp` is `None`): `Ok(sdp)` for 200 with that SDP, `Err(code)` to refuse.
        reply: oneshot::Sender<Result<String, u16>>,
    },
    /// The ACK to our 200 for a re-INVITE without an offer, carrying the answer to the offer in that 200
    /// (RFC 3261 §14.2). Comes only after a [`LegEvent::ReInvite`] with no `sdp` was replied `Ok`; when no
    /// ACK comes, the stack ends the dialog ([`LegEvent::Ended`]) instead.
    ReInviteAnswer {
        /// The answer; `None` when the ACK carried no body.
        sdp: Option<String>,
    },
    /// The dialog ended for another reason (no ACK, transport failure).
    Ended {
        /// Why.
        reason: String,
    },
}

/// The events of one leg, in order.
pub type LegEvents = mpsc::UnboundedReceiver<LegEvent>;

/// The operations on a call leg, implemented by the stack binding.
#[async_trait]
pub trait LegControl: Send + Sync + fmt::Debug {
    /// (callee) Sends 180 Ringing, or 183 with early-media SDP.
    fn ring(&self, sdp: Option<&str>) -> Result<()>;
    /// (callee) Sends 200 OK with our SDP answer.
    fn answer(&self, sdp: &str) -> Result<()>;
    /// (callee) Sends a final failure response (486 Busy Here, 480, 603…).
    fn reject(&self, code: u16, reason: &str) -> Result<()>;
    /// (caller) Sends CANCEL for a call not yet answered.
    async fn cancel(&self) -> Result<()>;
    /// Sends BYE on an established call.
    async fn hangup(&self) -> Result<()>;
    /// Sends BYE (CANCEL before an answer) carrying an RFC 3326 `Reason` header.
    async fn hangup_with_reason(&self, reason: &Reason) -> Result<()> {
        let _ = reason;
        self.hangup().await
    }
    /// (callee) Sends a final failure response carrying an RFC 3326 `Reason` header.
    fn reject_with_reason(&self, code: u16, phrase: &str, reason: &Reason) -> Result<()> {
        let _ = reason;
        self.reject(code, phrase)
    }
    /// Sends a re-INVITE with `sdp` and returns the response.
    async fn reinvite(&self, sdp: &str) -> Result<SipResponse>;
}

/// One call leg (one INVITE dialog). Cheap to clone.
#[derive(Debug, Clone)]
pub struct CallLeg {
    /// Who placed it.
    pub role: Role,
    /// The initial INVITE: ours (for a caller leg: From, To and Call-ID as sent; `source` is our listener) or
    /// theirs.
    pub invite: Arc<SipRequest>,
    control: Arc<dyn LegControl>,
}

impl CallLeg {
    /// A leg (for stack implementations).
    pub fn new(role: Role, invite: SipRequest, control: Arc<dyn LegControl>) -> Self {
        Self { role, invite: Arc::new(invite), control }
    }

    /// The Call-ID.
    pub fn call_id(&self) -> &str {
        &self.invite.call_id
    }

    /// The SDP of the initial INVITE, if any.
    pub fn offer(&self) -> Option<String> {
        (!self.invite.body.is_empty()).then(|| String::from_utf8_lossy(&self.invite.body).into_owned())
    }

    /// See [`LegControl::ring`].
    pub fn ring(&self, sdp: Option<&str>) -> Result<()> {
        self.control.ring(sdp)
    }
    /// See [`LegControl::answer`].
    pub fn answer(&self, sdp: &str) -> Result<()> {
        self.control.answer(sdp)
    }
    /// See [`LegControl::reject`].
    pub fn reject(&self, code: u16, reason: &str) -> Result<()> {
        self.control.reject(code, reason)
    }
    /// See [`LegControl::cancel`].
    pub async fn cancel(&self) -> Result<()> {
        self.control.cancel().await
    }
    /// See [`LegControl::hangup`].
    pub async fn hangup(&self) -> Result<()> {
        self.control.hangup().await
    }
    /// See [`LegControl::hangup_with_reason`].
    pub async fn hangup_with_reason(&self, reason: &Reason) -> Result<()> {
        self.control.hangup_with_reason(reason).await
    }
    /// See [`LegControl::reject_with_reason`].
    pub fn reject_with_reason(&self, code: u16, phrase: &str, reason: &Reason) -> Result<()> {
        self.control.reject_with_reason(code, phrase, reason)
    }
    /// See [`LegControl::reinvite`].
    pub async fn reinvite(&self, sdp: &str) -> Result<SipResponse> {
        self.control.reinvite(sdp).await
    }
}

/// The stack, as the applications use it.
#[async_trait]
pub trait SipStack: Send + Sync + fmt::Debug + 'static {
    /// Sends a request outside any dialog and waits for its final response; a transaction timeout is
    /// [`StackError::Timeout`].
    async fn request(&self, request: OutgoingRequest) -> Result<SipResponse>;
    /// Sends an INVITE; the leg reports progress on its events.
    async fn invite(&self, request: OutgoingRequest) -> Result<(CallLeg, LegEvents)>;
    /// The addresses we listen on.
    fn listeners(&self) -> Vec<Target>;
    /// Stops every listener and transaction.
    fn shutdown(&self);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn q850_reasons_are_written_and_read_as_rfc_3326_says() {
        let r = Reason::q850(34, "No circuit/channel available");
        assert_eq!(r.to_string(), r#"Q.850;cause=34;text="No circuit/channel available""#);
        assert_eq!(Reason::find_q850([r.to_string().as_str()]), Some(r));
        let odd = Reason::q850(16, "say \"hi\", \\ bye\r\n");
        assert_eq!(odd.to_string(), r#"Q.850;cause=16;text="say \"hi\", \\ bye""#);
        // Several reasons in one value or in several; a SIP reason is not a Q.850 one.
        let found =
            Reason::find_q850(["SIP;cause=600;text=\"Busy, everywhere\", Q.850 ; cause=17 ; text=\"User busy\""]);
        assert_eq!(found, Some(Reason::q850(17, "User busy")));
        assert_eq!(Reason::find_q850(["SIP;cause=200"]), None);
        assert_eq!(Reason::find_q850(["Q.850;text=\"no cause\""]), None);
        assert_eq!(Reason::find_q850(["Q.850;cause=31"]), Some(Reason { cause: 31, text: None }));
    }
}
