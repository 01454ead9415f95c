//! Calls between Matrix users (`m.call.*`) and SIP (INVITE dialogs), media through rtpengine.
//!
//! One task per call runs it: the SIP leg's events, the Matrix user's VoIP events (handed in by the
//! connector, keyed by the Matrix call ID) and the ring timer go through the call's [`voip::CallState`], and
//! the task does what it says. rtpengine anchors the media: its call is the SIP leg's Call-ID, the SIP party
//! is tag [`SIP_TAG`], the Matrix party [`MATRIX_TAG`]; the Matrix leg is WebRTC (ICE, DTLS-SRTP, rtcp-mux,
//! Opus offered by transcoding), the SIP leg plain RTP (or SDES-SRTP when the phone offers it) with
//! `media.sip_codecs` offered by transcoding. No media passes through the bridge.
//!
//! Once a call is up, either side may offer again (RFC 3264 §8: hold with `sendonly`/`inactive`, resume with
//! `sendrecv`, new media): a phone's re-INVITE becomes the ghost's `m.call.negotiate` offer, answered with
//! the user's negotiate answer; the user's negotiate offer becomes a re-INVITE, whose 200 becomes the ghost's
//! negotiate answer. Both go through rtpengine, which keeps each side's transport (WebRTC, plain RTP). A phone's
//! re-INVITE without an offer (RFC 3264 §4) is answered with rtpengine's offer made from the Matrix side's
//! current SDP, and the answer in its ACK goes to rtpengine; Matrix is not asked. A phone's first INVITE
//! without an offer (RFC 3261 §13.2.1) rings with a stand-in for its media ([`stand_in_offer`]); once answered,
//! the 200 carries rtpengine's offer made from the answering side's SDP the same way, and its ACK the answer.
//!
//! Every rtpengine call is recorded in the store before its `offer` and forgotten after its `delete`; at
//! start, the ones a crash left are deleted.

pub mod fork;
pub mod voip;

use crate::config::MediaConfig;
use crate::devices::Devices;
use crate::routing::{self, Router};
use crate::store::Store;
use crate::subscribers::Subscribers;
use rand::Rng;
use rand::rngs::StdRng;
use ruma::{OwnedUserId, UserId};
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;
use tincan_appservice::{BridgeHandle, PortalKey, RemoteChatId, RemoteEvent, RemoteEventKind, RemoteUserId};
use tincan_common::Clock;
use tincan_sip_core::rtpengine::{Leg, NgClient};
use tincan_sip_core::sdp::{self, Candidate};
use tincan_sip_core::stack::{
    CallLeg, LegEvent, LegEvents, Method, OutgoingRequest, SipResponse, SipStack, StackError, Target,
};
use tincan_sip_core::uri::{NameAddr, Uri};
use tokio::sync::{mpsc, oneshot};
use voip::{CallState, Direction, GhostSide, Outgoing, SdpKind, SipAction, VoipEvent};

/// rtpengine's tag of the SIP party.
pub const SIP_TAG: &str = "sip";
/// rtpengine's tag of the Matrix party.
pub const MATRIX_TAG: &str = "mx";

/// How long to wait for trickled candidates when an offer or answer SDP comes without any.
const CANDIDATE_WAIT: Duration = Duration::from_millis(1000);

/// How long the Matrix side has to answer a phone's re-offer before its re-INVITE is refused (within the
/// 32 s a SIP client waits for the final response).
const NEGOTIATE_WAIT: Duration = Duration::from_secs(20);

/// The answer to a phone's re-INVITE: `Ok(sdp)` for 200, `Err(code)` to refuse.
type ReInviteReply = oneshot::Sender<Result<String, u16>>;

/// A phone's re-INVITE waiting for the Matrix side's answer.
struct PendingReInvite {
    reply: ReInviteReply,
    /// The phone's new offer (its SDP once answered).
    offer: String,
    deadline: tokio::time::Instant,
}

/// What an established call needs to carry new offers between the phone (re-INVITE) and Matrix
/// (`m.call.negotiate`) through rtpengine.
struct Renegotiation {
    /// rtpengine's call (the SIP Call-ID).
    sip_call: String,
    /// How rtpengine presents the SIP party's media to the phone (plain RTP, or SDES-SRTP as it offered).
    toward_phone: Leg,
    /// Whether the Matrix side's SDP carries a BUNDLE group (so ours must too).
    bundled: bool,
    /// The Matrix device in the call, once known: negotiation from any other is ignored.
    party: Option<String>,
    /// The phone's current SDP: what Matrix is answered with when the phone refuses a re-INVITE.
    phone_sdp: String,
    /// The Matrix side's current SDP: what the phone is offered when it asks for an offer.
    matrix_sdp: String,
    /// A phone's re-INVITE waiting for the Matrix answer.
    pending: Option<PendingReInvite>,
    /// Our offer went to the phone in the 200 to its offer-less re-INVITE: its answer comes in the ACK.
    awaiting_ack: bool,
}

impl Renegotiation {
    /// When the pending re-INVITE is to be refused (far ahead when there is none).
    fn deadline(&self) -> tokio::time::Instant {
        self.pending.as_ref().map_or_else(|| tokio::time::Instant::now() + Duration::from_secs(86_400), |p| p.deadline)
    }

    /// rtpengine's options for an offer from the Matrix side to the phone once the call is up: the phone's
    /// transport, and DTLS-passive toward the browser as in the call's first exchange.
    fn matrix_reoffer(&self) -> Leg {
        self.toward_phone.clone().set("to-tag", SIP_TAG).set("DTLS-reverse", "passive")
    }

    /// Whether `party` may negotiate in this call.
    fn may_negotiate(&self, party: Option<&str>) -> bool {
        match (&self.party, party) {
            (Some(ours), Some(theirs)) => ours == theirs,
            _ => true,
        }
    }
}

/// Sends a re-INVITE with `sdp`. While an INVITE transaction of the phone's is still open (its ACK not yet in),
/// RFC 3261 §14.1 forbids a new one: it waits for that, up to 2 s.
async fn reinvite(leg: &CallLeg, sdp: &str) -> Result<SipResponse, StackError> {
    let mut tries = 0;
    loop {
        match leg.reinvite(sdp).await {
            Err(StackError::State(_)) if tries < 40 => {
                tries += 1;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            other => return other,
        }
    }
}

/// What stands for a phone's media while its INVITE came without an offer (RFC 3261 §13.2.1): an offer from
/// the phone's address with `codecs` (those with static payload types: PCMU, PCMA, G722, G729; PCMU when none
/// is), at the discard port, so that rtpengine can make the Matrix side's offer before the phone says anything
/// of its media. Whatever is sent there before the phone's answer arrives (in its ACK) is lost.
pub fn stand_in_offer(phone: std::net::IpAddr, codecs: &[String]) -> String {
    let known: Vec<(u8, &str)> = codecs
        .iter()
        .filter_map(|c| match c.to_ascii_uppercase().as_str() {
            "PCMU" => Some((0, "PCMU/8000")),
            "PCMA" => Some((8, "PCMA/8000")),
            "G722" => Some((9, "G722/8000")),
            "G729" => Some((18, "G729/8000")),
            _ => None,
        })
        .collect();
    let known = if known.is_empty() { vec![(0, "PCMU/8000")] } else { known };
    let ip = if phone.is_ipv6() { "IP6" } else { "IP4" };
    let payloads: Vec<String> = known.iter().map(|(pt, _)| pt.to_string()).collect();
    let mut sdp = format!(
        "v=0\r\no=- 0 0 IN {ip} {phone}\r\ns=-\r\nc=IN {ip} {phone}\r\nt=0 0\r\nm=audio 9 RTP/AVP {}\r\n",
        payloads.join(" ")
    );
    for (pt, name) in &known {
        sdp.push_str(&format!("a=rtpmap:{pt} {name}\r\n"));
    }
    sdp.push_str("a=sendrecv\r\n");
    sdp
}

/// The call side of the bridge.
pub struct Calls {
    ng: NgClient,
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    media: MediaConfig,
    stack: Arc<dyn SipStack>,
    domain: String,
    subscribers: Arc<dyn Subscribers>,
    router: Arc<Router>,
    devices: Devices,
    rng: Mutex<StdRng>,
    bridge: OnceLock<BridgeHandle>,
    /// Calls in progress: (Matrix user, Matrix call ID) → the call's task.
    active: Mutex<HashMap<(OwnedUserId, String), mpsc::UnboundedSender<VoipEvent>>>,
    /// Phone calls ringing in Matrix: (Matrix user, the phone's remote ID) → the ghost's call ID (for glare).
    ringing: Mutex<HashMap<(OwnedUserId, String), String>>,
}

impl std::fmt::Debug for Calls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Calls").field("rtpengine", &self.ng.server()).finish_non_exhaustive()
    }
}

/// What the call side needs from the rest of the bridge.
#[derive(Debug)]
pub struct CallsDeps {
    /// The rtpengine ng client.
    pub ng: NgClient,
    /// Open media sessions are recorded here.
    pub store: Arc<dyn Store>,
    /// The clock.
    pub clock: Arc<dyn Clock>,
    /// The `media` config.
    pub media: MediaConfig,
    /// The SIP stack.
    pub stack: Arc<dyn SipStack>,
    /// Our SIP domain.
    pub domain: String,
    /// Who holds which number.
    pub subscribers: Arc<dyn Subscribers>,
    /// Outbound routing.
    pub router: Arc<Router>,
    /// Users' registered SIP devices (calls to a number ring them too).
    pub devices: Devices,
    /// Call and party IDs come from here.
    pub rng: StdRng,
}

fn random_id(rng: &Mutex<StdRng>, len: usize) -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    let mut rng = rng.lock().expect("not poisoned");
    (0..len).map(|_| char::from(ALPHABET[rng.random_range(0..ALPHABET.len())])).collect()
}

/// Removes a call from the active set however its task ends.
struct Unregister<'a> {
    calls: &'a Calls,
    key: (OwnedUserId, String),
}

impl Drop for Unregister<'_> {
    fn drop(&mut self) {
        self.calls.active.lock().expect("not poisoned").remove(&self.key);
    }
}

/// Removes a phone call from the ringing set once it stops ringing, however its task ends.
struct Ringing<'a> {
    calls: &'a Calls,
    key: (OwnedUserId, String),
    call_id: String,
}

impl Ringing<'_> {
    fn stop(&self) {
        let mut ringing = self.calls.ringing.lock().expect("not poisoned");
        if ringing.get(&self.key) == Some(&self.call_id) {
            ringing.remove(&self.key);
        }
    }
}

impl Drop for Ringing<'_> {
    fn drop(&mut self) {
        self.stop();
    }
}

impl Calls {
    /// The call side over `deps`.
    pub fn new(deps: CallsDeps) -> Self {
        Self {
            ng: deps.ng,
            store: deps.store,
            clock: deps.clock,
            media: deps.media,
            stack: deps.stack,
            domain: deps.domain,
            subscribers: deps.subscribers,
            router: deps.router,
            devices: deps.devices,
            rng: Mutex::new(deps.rng),
            bridge: OnceLock::new(),
            active: Mutex::new(HashMap::new()),
            ringing: Mutex::new(HashMap::new()),
        }
    }

    /// Starts the call side: deletes at rtpengine the calls a crash left open (retrying in the background
    /// while rtpengine does not answer).
    pub async fn start(self: &Arc<Self>, bridge: BridgeHandle) {
        let _ = self.bridge.set(bridge);
        if self.delete_stale().await {
            return;
        }
        let this = self.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_secs(10)).await;
                if this.delete_stale().await {
                    return;
                }
            }
        });
    }

    /// Deletes every recorded rtpengine call; true when none is left.
    async fn delete_stale(&self) -> bool {
        let stale = match self.store.media_sessions().await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "reading open media sessions failed");
                return false;
            }
        };
        if !stale.is_empty() {
            tracing::info!(count = stale.len(), "deleting media sessions left at rtpengine by the last run");
        }
        for call_id in stale {
            if let Err(e) = self.ng.delete(&call_id).await {
                tracing::warn!(error = %e, "rtpengine delete of a stale session failed; retrying later");
                return false;
            }
            if let Err(e) = self.store.remove_media_session(&call_id).await {
                tracing::warn!(error = %e, "forgetting a stale media session failed");
                return false;
            }
        }
        true
    }

    fn id(&self, len: usize) -> String {
        random_id(&self.rng, len)
    }

    fn now(&self) -> i64 {
        i64::try_from(self.clock.unix_seconds()).unwrap_or(i64::MAX)
    }

    fn register(&self, key: (OwnedUserId, String)) -> Option<mpsc::UnboundedReceiver<VoipEvent>> {
        let mut active = self.active.lock().expect("not poisoned");
        if active.contains_key(&key) {
            return None;
        }
        let (tx, rx) = mpsc::unbounded_channel();
        active.insert(key, tx);
        Some(rx)
    }

    /// Sends the ghost's events into the portal (through the core's ordered, durable queue).
    async fn to_matrix(&self, portal: &PortalKey, ghost: &RemoteUserId, events: Vec<Outgoing>) {
        let Some(bridge) = self.bridge.get() else { return };
        let events: Vec<RemoteEvent> = events
            .into_iter()
            .map(|(event_type, content)| RemoteEvent {
                portal: portal.clone(),
                sender: ghost.clone(),
                kind: RemoteEventKind::Call { event_type: event_type.to_owned(), content },
            })
            .collect();
        if events.is_empty() {
            return;
        }
        if let Err(e) = bridge.queue_remote_events(events).await {
            tracing::error!(error = %e, "queueing a VoIP event for Matrix failed");
        }
    }

    async fn open_media(&self, call_id: &str) -> bool {
        match self.store.add_media_session(call_id, self.now()).await {
            Ok(()) => true,
            Err(e) => {
                tracing::error!(error = %e, "recording a media session failed");
                false
            }
        }
    }

    async fn close_media(&self, call_id: &str) {
        match self.ng.delete(call_id).await {
            // Left recorded when rtpengine did not answer: the next start deletes it.
            Err(e) => tracing::warn!(error = %e, "rtpengine delete failed; left for the next start"),
            Ok(()) => {
                if let Err(e) = self.store.remove_media_session(call_id).await {
                    tracing::warn!(error = %e, "forgetting a media session failed");
                }
            }
        }
    }

    /// A call arrived from SIP.
    pub fn incoming(self: Arc<Self>, leg: CallLeg, events: LegEvents) {
        tokio::spawn(async move { self.inbound(leg, events).await });
    }

    /// A VoIP event of `user`, who holds `number`, in the portal with `remote`.
    pub fn from_matrix(
        self: &Arc<Self>,
        user: &UserId,
        number: &str,
        portal: PortalKey,
        remote: RemoteUserId,
        event: VoipEvent,
    ) {
        let key = (user.to_owned(), event.call_id().to_owned());
        if let Some(tx) = self.active.lock().expect("not poisoned").get(&key) {
            let _ = tx.send(event);
            return;
        }
        if let VoipEvent::Invite { .. } = event {
            let Some(rx) = self.register(key.clone()) else { return };
            let this = self.clone();
            let number = number.to_owned();
            tokio::spawn(async move {
                let _unregister = Unregister { calls: &this, key };
                this.outbound(number, portal, remote, event, rx).await;
            });
        }
    }

    /// SIP → Matrix.
    async fn inbound(self: Arc<Self>, leg: CallLeg, mut events: LegEvents) {
        let invite = leg.invite.clone();
        let Some(number) = invite.uri.phone_number().or_else(|| invite.to.uri.phone_number()) else {
            let _ = leg.reject(404, "Not Found");
            return;
        };
        let receiver = match self.subscribers.user_of(&number).await {
            Ok(Some(u)) => u,
            Ok(None) => {
                let _ = leg.reject(404, "Not Found");
                return;
            }
            Err(e) => {
                tracing::warn!(error = %e, "subscriber lookup failed");
                let _ = leg.reject(503, "Service Unavailable");
                return;
            }
        };
        let Some(caller) = crate::messages::remote_id(&invite.from) else {
            let _ = leg.reject(400, "Bad Request");
            return;
        };
        // An INVITE without an offer (RFC 3261 §13.2.1, a "delayed offer"): the call rings with a stand-in for
        // the phone's media, and whoever answers, the 200 carries rtpengine's offer and the ACK the answer.
        let delayed = leg.offer().is_none();
        let offer = leg.offer().unwrap_or_else(|| stand_in_offer(invite.source.addr.ip(), &self.media.sip_codecs));
        if self.bridge.get().is_none() {
            let _ = leg.reject(503, "Service Unavailable");
            return;
        }
        let sip_call = leg.call_id().to_owned();
        let ghost_side = GhostSide { call_id: self.id(24), party_id: self.id(12) };
        let key = (receiver.clone(), ghost_side.call_id.clone());
        let Some(mut rx) = self.register(key.clone()) else {
            let _ = leg.reject(500, "Server Internal Error");
            return;
        };
        let _unregister = Unregister { calls: &self, key };
        if !self.open_media(&sip_call).await {
            let _ = leg.reject(500, "Server Internal Error");
            return;
        }
        let for_matrix = match self.ng.offer(&sip_call, SIP_TAG, &offer, &Leg::webrtc().transcode(&["opus"])).await {
            Ok(sdp) => sdp::with_bundle_group(&sdp),
            Err(e) => {
                tracing::warn!(error = %e, "rtpengine offer failed");
                let _ = leg.reject(503, "Service Unavailable");
                self.close_media(&sip_call).await;
                return;
            }
        };
        let mut reneg = Renegotiation {
            sip_call: sip_call.clone(),
            toward_phone: Leg::sip_like(&offer),
            bundled: true,
            party: None,
            phone_sdp: offer.clone(),
            matrix_sdp: String::new(),
            pending: None,
            awaiting_ack: false,
        };
        let ringing =
            Ringing { calls: &self, key: (receiver.clone(), caller.clone()), call_id: ghost_side.call_id.clone() };
        let portal = PortalKey { receiver, chat: RemoteChatId::new(caller.clone()) };
        let ghost = RemoteUserId::new(caller);
        let ring = Duration::from_secs(self.media.ring_timeout_secs);
        let mut state = CallState::new(Direction::SipToMatrix, ghost_side);
        let ring_ms = u64::try_from(ring.as_millis()).unwrap_or(u64::MAX);
        self.ringing.lock().expect("not poisoned").insert(ringing.key.clone(), ringing.call_id.clone());
        self.to_matrix(&portal, &ghost, vec![state.ghost.invite(&for_matrix, ring_ms)]).await;
        let _ = leg.ring(None);
        tracing::info!(%sip_call, matrix_call = %state.ghost.call_id, "SIP call to a Tincan number ringing in Matrix");
        let mut forks = self.ring_devices(&number, &invite, &offer, delayed).await;
        let mut device_won = None;

        let timer = tokio::time::sleep(ring);
        tokio::pin!(timer);
        let mut candidates: Vec<Candidate> = Vec::new();
        let mut deferred: Vec<VoipEvent> = Vec::new();
        while state.phase != voip::Phase::Ended {
            if state.phase != voip::Phase::Ringing {
                ringing.stop();
            }
            let matrix = if let Some(ev) = (!deferred.is_empty()).then(|| deferred.remove(0)) {
                Some(ev)
            } else {
                tokio::select! {
                    ev = rx.recv() => match ev { Some(ev) => Some(ev), None => break },
                    sip = events.recv() => {
                        let out = match sip {
                            Some(LegEvent::Confirmed { sdp: None }) if reneg.awaiting_ack && delayed => {
                                // RFC 3261 §13.2.1: the ACK must answer the offer in our 200.
                                tracing::warn!(%sip_call, "the phone's ACK carries no answer to our offer; BYE");
                                let _ = leg.hangup().await;
                                state.sip_ended("user_media_failed")
                            }
                            Some(LegEvent::Confirmed { sdp }) => {
                                self.phone_answers_in_ack(&mut reneg, sdp).await;
                                continue;
                            }
                            Some(LegEvent::ReInvite { sdp, reply }) => {
                                self.phone_reoffers(&mut reneg, &state, (&portal, &ghost), sdp, reply).await;
                                continue;
                            }
                            Some(LegEvent::ReInviteAnswer { sdp }) => {
                                self.phone_answers_in_ack(&mut reneg, sdp).await;
                                continue;
                            }
                            Some(LegEvent::Cancelled | LegEvent::HungUp) => state.sip_ended("user_hangup"),
                            Some(LegEvent::Ended { reason }) => {
                                tracing::info!(%reason, "SIP dialog ended");
                                state.sip_ended("user_hangup")
                            }
                            Some(_) => continue,
                            None => state.sip_ended("unknown_error"),
                        };
                        self.to_matrix(&portal, &ghost, out).await;
                        break;
                    }
                    dev = forks.next(), if forks.is_live() => {
                        let Some(dev) = dev else { continue };
                        let out = match self.device_event(&mut forks, dev, &leg, &offer).await {
                            fork::DeviceOutcome::Nothing => continue,
                            fork::DeviceOutcome::Won(i, branch) => {
                                device_won = Some((i, branch));
                                state.sip_ended("answered_elsewhere")
                            }
                            fork::DeviceOutcome::Refused(code) => {
                                let _ = leg.reject(code, "Decline");
                                state.sip_ended("user_hangup")
                            }
                        };
                        self.to_matrix(&portal, &ghost, out).await;
                        break;
                    }
                    _ = tokio::time::sleep_until(reneg.deadline()), if reneg.pending.is_some() => {
                        Self::reoffer_timed_out(&mut reneg);
                        continue;
                    }
                    _ = &mut timer, if state.phase == voip::Phase::Ringing => {
                        let (sip, out) = state.ring_timeout();
                        if let SipAction::Reject(code) = sip {
                            let _ = leg.reject(code, "Temporarily Unavailable");
                        }
                        self.to_matrix(&portal, &ghost, out).await;
                        break;
                    }
                }
            };
            let Some(event) = matrix else { continue };
            if let VoipEvent::Candidates { candidates: c, .. } = &event {
                candidates.extend(c.iter().cloned());
                continue;
            }
            if let VoipEvent::Negotiate { party_id, kind, sdp, .. } = &event {
                let offer = (party_id.as_deref(), *kind, sdp.as_str());
                self.matrix_negotiates(&mut reneg, &state, &leg, (&portal, &ghost), offer, &mut candidates).await;
                continue;
            }
            if let VoipEvent::Replaced { .. } = &event {
                let (sip, out) = state.replaced();
                if let SipAction::Reject(code) = sip {
                    tracing::info!(%sip_call, "glare: the user's call to the phone won; the phone's call is refused");
                    let _ = leg.reject(code, "Busy Here");
                }
                self.to_matrix(&portal, &ghost, out).await;
                continue;
            }
            match state.on_matrix(&event) {
                SipAction::Answer { party_id, sdp } => {
                    let sdp = self.with_candidates(sdp, &mut candidates, &mut rx, &mut deferred).await;
                    let mut for_phone = self.ng.answer(&sip_call, SIP_TAG, MATRIX_TAG, &sdp, &reneg.toward_phone).await;
                    if delayed && for_phone.is_ok() {
                        // The answer to the stand-in is not the phone's: the 200 carries an offer made from the
                        // Matrix side's answer, as for an offer-less re-INVITE, with the SIP codecs offered.
                        let codecs: Vec<&str> = self.media.sip_codecs.iter().map(String::as_str).collect();
                        let toward = reneg.matrix_reoffer().transcode(&codecs);
                        for_phone = self.ng.offer(&sip_call, MATRIX_TAG, &sdp, &toward).await;
                    }
                    match for_phone {
                        Ok(s) if leg.answer(&s).is_ok() => {
                            self.stop_devices(&mut forks).await;
                            reneg.awaiting_ack = delayed;
                            reneg.party.clone_from(&party_id);
                            reneg.matrix_sdp = sdp;
                            self.to_matrix(&portal, &ghost, state.selected(party_id.as_deref())).await;
                        }
                        other => {
                            if let Err(e) = other {
                                tracing::warn!(error = %e, "rtpengine answer failed");
                            }
                            let _ = leg.reject(500, "Server Internal Error");
                            let out = state.sip_ended("user_media_failed");
                            self.to_matrix(&portal, &ghost, out).await;
                        }
                    }
                }
                SipAction::Reject(code) => {
                    let _ = leg.reject(code, if code == 486 { "Busy Here" } else { "Decline" });
                }
                SipAction::Bye => {
                    let _ = leg.hangup().await;
                }
                SipAction::Cancel | SipAction::None => {}
            }
        }
        ringing.stop();
        self.close_media(&sip_call).await;
        match device_won {
            Some(winner) => self.device_call(&leg, &mut events, &mut forks, winner, &offer).await,
            None => self.stop_devices(&mut forks).await,
        }
        tracing::info!(%sip_call, "call over");
    }

    /// `sdp` with the trickled candidates gathered so far, waiting up to [`CANDIDATE_WAIT`] for some when it
    /// has none; other events that arrive meanwhile go to `deferred`.
    async fn with_candidates(
        &self,
        sdp: String,
        candidates: &mut Vec<Candidate>,
        rx: &mut mpsc::UnboundedReceiver<VoipEvent>,
        deferred: &mut Vec<VoipEvent>,
    ) -> String {
        if !sdp::has_candidates(&sdp) && candidates.is_empty() {
            let deadline = tokio::time::Instant::now() + CANDIDATE_WAIT;
            while let Ok(Some(ev)) = tokio::time::timeout_at(deadline, rx.recv()).await {
                match ev {
                    VoipEvent::Candidates { candidates: c, .. } => {
                        let end = c.iter().any(|c| c.candidate.is_empty());
                        candidates.extend(c);
                        if end {
                            break;
                        }
                    }
                    other => {
                        deferred.push(other);
                        break;
                    }
                }
            }
        }
        let merged = sdp::add_candidates(&sdp, candidates);
        candidates.clear();
        merged
    }

    /// The phone offers again (re-INVITE: hold, resume, new media): rtpengine's WebRTC version goes to Matrix
    /// as the ghost's `m.call.negotiate` offer; the re-INVITE is answered when the user's answer comes.
    async fn phone_reoffers(
        &self,
        r: &mut Renegotiation,
        state: &CallState,
        to: (&PortalKey, &RemoteUserId),
        sdp: Option<String>,
        reply: ReInviteReply,
    ) {
        if state.phase != voip::Phase::Up || r.pending.is_some() || r.awaiting_ack {
            // RFC 3261 §14.2: an offer while ours (or the call's first) is unanswered.
            let _ = reply.send(Err(491));
            return;
        }
        let Some(offer) = sdp else {
            self.offer_to_phone(r, reply).await;
            return;
        };
        // The to-tag lets rtpengine find the call whichever party offered first.
        let leg = Leg::webrtc().set("to-tag", MATRIX_TAG);
        let for_matrix = match self.ng.offer(&r.sip_call, SIP_TAG, &offer, &leg).await {
            Ok(s) if r.bundled => sdp::with_bundle_group(&s),
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "rtpengine did not take a re-INVITE's offer");
                let _ = reply.send(Err(500));
                return;
            }
        };
        tracing::info!(sip_call = %r.sip_call, direction = ?sdp::audio_direction(&offer), "the phone offers again");
        let lifetime = u64::try_from(NEGOTIATE_WAIT.as_millis()).unwrap_or(u64::MAX);
        r.pending = Some(PendingReInvite { reply, offer, deadline: tokio::time::Instant::now() + NEGOTIATE_WAIT });
        self.to_matrix(to.0, to.1, vec![state.ghost.negotiate(SdpKind::Offer, &for_matrix, lifetime)]).await;
    }

    /// The phone's re-INVITE came without an offer (RFC 3264 §4: a session refresh, or it wants one): the 200
    /// carries rtpengine's offer for the phone made from the Matrix side's current SDP, shaped as for a Matrix
    /// re-offer; the phone's answer comes in its ACK ([`Calls::phone_answers_in_ack`]). Matrix is not asked:
    /// its side of the media does not change.
    async fn offer_to_phone(&self, r: &mut Renegotiation, reply: ReInviteReply) {
        match self.ng.offer(&r.sip_call, MATRIX_TAG, &r.matrix_sdp, &r.matrix_reoffer()).await {
            Ok(offer) => {
                tracing::info!(sip_call = %r.sip_call, "the phone asks for an offer; ours goes in the 200");
                r.awaiting_ack = true;
                let _ = reply.send(Ok(offer));
            }
            Err(e) => {
                tracing::warn!(error = %e, "rtpengine made no offer for a re-INVITE without one");
                let _ = reply.send(Err(500));
            }
        }
    }

    /// The ACK to our 200 for the phone's offer-less re-INVITE, with its answer for rtpengine. An ACK without
    /// an answer (RFC 3261 §14.2 requires one) leaves the media as it was: rtpengine takes the phone's SDP of
    /// before again.
    async fn phone_answers_in_ack(&self, r: &mut Renegotiation, sdp: Option<String>) {
        if !std::mem::take(&mut r.awaiting_ack) {
            return;
        }
        let answer = sdp.unwrap_or_else(|| {
            tracing::warn!(sip_call = %r.sip_call, "the phone's ACK carries no answer to our offer; media as before");
            r.phone_sdp.clone()
        });
        // What rtpengine says toward Matrix stays what it said before (the Matrix side offered nothing new), so
        // it is not passed on.
        match self.ng.answer(&r.sip_call, MATRIX_TAG, SIP_TAG, &answer, &Leg::webrtc()).await {
            Ok(_) => r.phone_sdp = answer,
            Err(e) => tracing::warn!(error = %e, "rtpengine did not take the answer in the phone's ACK"),
        }
    }

    /// The Matrix side's `m.call.negotiate`: an answer completes the phone's re-INVITE, an offer (a hold from
    /// Element, a resume) becomes a re-INVITE to the phone, whose answer goes back as the ghost's.
    async fn matrix_negotiates(
        &self,
        r: &mut Renegotiation,
        state: &CallState,
        leg: &CallLeg,
        to: (&PortalKey, &RemoteUserId),
        (party, kind, sdp): (Option<&str>, SdpKind, &str),
        candidates: &mut Vec<Candidate>,
    ) {
        if state.phase != voip::Phase::Up || !r.may_negotiate(party) {
            return;
        }
        let sdp = sdp::add_candidates(sdp, candidates);
        candidates.clear();
        match kind {
            SdpKind::Answer => {
                let Some(pending) = r.pending.take() else { return };
                match self.ng.answer(&r.sip_call, SIP_TAG, MATRIX_TAG, &sdp, &r.toward_phone).await {
                    Ok(for_phone) => {
                        r.phone_sdp = pending.offer;
                        r.matrix_sdp = sdp;
                        let _ = pending.reply.send(Ok(for_phone));
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "rtpengine did not take the Matrix answer to a re-INVITE");
                        let _ = pending.reply.send(Err(500));
                    }
                }
            }
            SdpKind::Offer => {
                if let Some(pending) = r.pending.take() {
                    // Both offered at once. matrix-js-sdk negotiates "perfectly": the callee's client is polite
                    // (rolls its offer back and answers ours), the caller's impolite (ignores ours).
                    if state.direction == Direction::SipToMatrix {
                        tracing::info!(sip_call = %r.sip_call, "a Matrix offer while the phone's is pending; ignored");
                        r.pending = Some(pending);
                        return;
                    }
                    // The caller's client will not answer the phone's offer: the phone retries later.
                    tracing::info!(sip_call = %r.sip_call, "a Matrix offer while the phone's is pending; 491 to the phone");
                    let _ = pending.reply.send(Err(491));
                }
                // Our re-INVITE carries a newer offer than the one in a 200 still waiting for the phone's ACK:
                // that ACK's answer is past (`reinvite` waits for the ACK before sending).
                r.awaiting_ack = false;
                let for_phone = match self.ng.offer(&r.sip_call, MATRIX_TAG, &sdp, &r.matrix_reoffer()).await {
                    Ok(s) => s,
                    Err(e) => {
                        tracing::warn!(error = %e, "rtpengine did not take a Matrix re-offer");
                        return;
                    }
                };
                tracing::info!(sip_call = %r.sip_call, direction = ?sdp::audio_direction(&sdp), "Matrix offers again; re-INVITE");
                // A refusal leaves the session as it was (RFC 3261 §14.1): Matrix is answered from the phone's
                // current SDP.
                let phone_answer = match reinvite(leg, &for_phone).await {
                    Ok(resp) if resp.is_success() && !resp.body.is_empty() => {
                        String::from_utf8_lossy(&resp.body).into_owned()
                    }
                    Ok(resp) => {
                        tracing::info!(code = resp.code, "the phone refused a re-INVITE; the media stays as it was");
                        r.phone_sdp.clone()
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "re-INVITE failed; the media stays as it was");
                        r.phone_sdp.clone()
                    }
                };
                match self.ng.answer(&r.sip_call, MATRIX_TAG, SIP_TAG, &phone_answer, &Leg::webrtc()).await {
                    Ok(for_matrix) => {
                        let for_matrix = if r.bundled { sdp::with_bundle_group(&for_matrix) } else { for_matrix };
                        r.phone_sdp = phone_answer;
                        r.matrix_sdp = sdp;
                        let lifetime = u64::try_from(NEGOTIATE_WAIT.as_millis()).unwrap_or(u64::MAX);
                        let out = state.ghost.negotiate(SdpKind::Answer, &for_matrix, lifetime);
                        self.to_matrix(to.0, to.1, vec![out]).await;
                    }
                    Err(e) => tracing::warn!(error = %e, "rtpengine did not take the phone's re-INVITE answer"),
                }
            }
        }
    }

    /// The Matrix side did not answer the phone's re-offer in time: the re-INVITE is refused.
    fn reoffer_timed_out(r: &mut Renegotiation) {
        if let Some(p) = r.pending.take() {
            tracing::info!(sip_call = %r.sip_call, "no Matrix answer to the phone's re-INVITE; 500");
            let _ = p.reply.send(Err(500));
        }
    }

    /// Sends `invite` to the next of `hops` that takes it (the stack may refuse one: no listener for its
    /// transport); `None` when none is left.
    async fn place(
        &self,
        hops: &mut VecDeque<(Uri, Target)>,
        invite: &impl Fn(Uri, Target) -> OutgoingRequest,
    ) -> Option<(CallLeg, LegEvents)> {
        while let Some((uri, target)) = hops.pop_front() {
            match self.stack.invite(invite(uri, target)).await {
                Ok(placed) => {
                    tracing::info!(%target, "INVITE sent");
                    return Some(placed);
                }
                Err(e) => tracing::warn!(%target, error = %e, "sending INVITE failed; trying the next route"),
            }
        }
        None
    }

    /// Matrix → SIP.
    async fn outbound(
        &self,
        number: String,
        portal: PortalKey,
        remote: RemoteUserId,
        invite: VoipEvent,
        mut rx: mpsc::UnboundedReceiver<VoipEvent>,
    ) {
        let VoipEvent::Invite { call_id, sdp, lifetime_ms } = invite else { return };
        let ringing = self
            .ringing
            .lock()
            .expect("not poisoned")
            .get(&(portal.receiver.clone(), remote.as_str().to_owned()))
            .cloned();
        let mut state = CallState::new(Direction::MatrixToSip, GhostSide { call_id, party_id: self.id(12) });
        if let Some(phone_call) = ringing {
            // Glare: the phone is calling the user while the user calls the phone. As the VoIP spec (and
            // matrix-js-sdk) resolve it, the call with the lower ID wins; the user's client does the same with
            // the ghost's invite, so both sides agree.
            if phone_call < state.ghost.call_id {
                tracing::info!(matrix_call = %state.ghost.call_id, "glare: the phone's call wins; this one is replaced");
                let out = state.sip_ended("replaced");
                self.to_matrix(&portal, &remote, out).await;
                return;
            }
            let phone_task =
                self.active.lock().expect("not poisoned").get(&(portal.receiver.clone(), phone_call.clone())).cloned();
            if let Some(tx) = phone_task {
                let _ = tx.send(VoipEvent::Replaced { call_id: phone_call });
            }
        }
        let mut candidates = Vec::new();
        let mut deferred = Vec::new();
        let sdp = self.with_candidates(sdp, &mut candidates, &mut rx, &mut deferred).await;
        // A browser that bundled its offer refuses an answer without the group (rtpengine drops it).
        let bundled = sdp::has_bundle_group(&sdp);
        if deferred.iter().any(|e| matches!(e, VoipEvent::Hangup { .. })) {
            return;
        }
        // Every target of every route, in order: the call moves on down this list when a route fails (see
        // `routing::fails_over`) or does not ring in time.
        let mut hops: VecDeque<(Uri, Target)> = match self.router.routes(remote.as_str()).await {
            Ok(routes) => routes
                .into_iter()
                .flat_map(|r| {
                    let uri = r.uri;
                    r.targets.into_iter().map(move |t| (uri.clone(), t))
                })
                .collect(),
            Err(e) => {
                tracing::info!(error = %e, "no route for a Matrix call");
                VecDeque::new()
            }
        };
        if hops.is_empty() {
            let out = state.sip_failed(404);
            self.to_matrix(&portal, &remote, out).await;
            return;
        }
        let sip_call = format!("{}@{}", self.id(24), self.domain);
        if !self.open_media(&sip_call).await {
            let out = state.sip_failed(500);
            self.to_matrix(&portal, &remote, out).await;
            return;
        }
        let codecs: Vec<&str> = self.media.sip_codecs.iter().map(String::as_str).collect();
        // rtpengine is passive toward the browser from the offer on: left to choose (the browser offers
        // `actpass`) it starts ICE at once and sends a DTLS ClientHello as the active side whenever a check
        // succeeds before the phone answers, then turns passive with the answer — and Chromium, holding that
        // early ClientHello, never completes the handshake.
        let leg = Leg::plain_rtp().transcode(&codecs).set("DTLS-reverse", "passive");
        let for_phone = match self.ng.offer(&sip_call, MATRIX_TAG, &sdp, &leg).await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "rtpengine offer failed");
                let out = state.sip_failed(503);
                self.to_matrix(&portal, &remote, out).await;
                self.close_media(&sip_call).await;
                return;
            }
        };
        let from: Result<NameAddr, _> = format!("<sip:{number}@{};user=phone>", self.domain).parse();
        let Ok(from) = from else {
            self.close_media(&sip_call).await;
            return;
        };
        // Every route gets the same offer and Call-ID (rtpengine's call): whichever answers is the `sip` party.
        let invite = |uri: Uri, target: Target| OutgoingRequest {
            method: Method::Invite,
            uri: uri.clone(),
            from: from.clone(),
            to: NameAddr { display_name: None, uri, params: Vec::new() },
            headers: Vec::new(),
            content_type: Some("application/sdp".into()),
            body: for_phone.clone().into_bytes(),
            target,
            call_id: Some(sip_call.clone()),
        };
        let Some((mut leg, mut events)) = self.place(&mut hops, &invite).await else {
            let out = state.sip_failed(503);
            self.to_matrix(&portal, &remote, out).await;
            self.close_media(&sip_call).await;
            return;
        };
        let invite_timeout = self.router.invite_timeout();
        let mut no_ring = tokio::time::Instant::now() + invite_timeout;
        let mut rang = false;
        tracing::info!(%sip_call, matrix_call = %state.ghost.call_id, "Matrix call to SIP placed");
        let mut reneg = Renegotiation {
            sip_call: sip_call.clone(),
            toward_phone: Leg::plain_rtp(),
            bundled,
            party: None,
            phone_sdp: String::new(),
            matrix_sdp: sdp.clone(),
            pending: None,
            awaiting_ack: false,
        };
        let ring = Duration::from_secs(self.media.ring_timeout_secs).min(Duration::from_millis(lifetime_ms.max(1000)));
        let timer = tokio::time::sleep(ring);
        tokio::pin!(timer);
        while state.phase != voip::Phase::Ended {
            let event = if let Some(ev) = (!deferred.is_empty()).then(|| deferred.remove(0)) {
                ev
            } else {
                tokio::select! {
                    ev = rx.recv() => match ev { Some(ev) => ev, None => break },
                    sip = events.recv() => {
                        let out = match sip {
                            Some(LegEvent::Progress { .. }) => {
                                rang = true;
                                continue;
                            }
                            Some(LegEvent::ReInvite { sdp, reply }) => {
                                self.phone_reoffers(&mut reneg, &state, (&portal, &remote), sdp, reply).await;
                                continue;
                            }
                            Some(LegEvent::ReInviteAnswer { sdp }) => {
                                self.phone_answers_in_ack(&mut reneg, sdp).await;
                                continue;
                            }
                            Some(LegEvent::Answered { sdp: Some(answer) }) => {
                                reneg.phone_sdp.clone_from(&answer);
                                match self.ng.answer(&sip_call, MATRIX_TAG, SIP_TAG, &answer, &Leg::webrtc()).await {
                                    Ok(for_matrix) if bundled => state.sip_answered(&sdp::with_bundle_group(&for_matrix)),
                                    Ok(for_matrix) => state.sip_answered(&for_matrix),
                                    Err(e) => {
                                        tracing::warn!(error = %e, "rtpengine answer failed");
                                        let _ = leg.hangup().await;
                                        state.sip_ended("user_media_failed")
                                    }
                                }
                            }
                            Some(LegEvent::Answered { sdp: None }) => {
                                let _ = leg.hangup().await;
                                state.sip_ended("user_media_failed")
                            }
                            Some(LegEvent::Failed { code, reason, .. })
                                if routing::fails_over(code) && state.phase == voip::Phase::Ringing =>
                            {
                                tracing::info!(%sip_call, code, %reason, "the route failed; trying the next");
                                match self.place(&mut hops, &invite).await {
                                    Some(next) => {
                                        (leg, events) = next;
                                        (rang, no_ring) = (false, tokio::time::Instant::now() + invite_timeout);
                                        continue;
                                    }
                                    None => state.sip_failed(code),
                                }
                            }
                            Some(LegEvent::Failed { code, .. }) => state.sip_failed(code),
                            Some(LegEvent::HungUp) => state.sip_ended("user_hangup"),
                            Some(LegEvent::Ended { reason }) => {
                                tracing::info!(%reason, "SIP dialog ended");
                                state.sip_ended("user_hangup")
                            }
                            Some(LegEvent::Confirmed { .. } | LegEvent::Cancelled) => continue,
                            None => state.sip_ended("unknown_error"),
                        };
                        self.to_matrix(&portal, &remote, out).await;
                        continue;
                    }
                    _ = tokio::time::sleep_until(reneg.deadline()), if reneg.pending.is_some() => {
                        Self::reoffer_timed_out(&mut reneg);
                        continue;
                    }
                    _ = tokio::time::sleep_until(no_ring), if !rang && !hops.is_empty() && state.phase == voip::Phase::Ringing => {
                        tracing::info!(%sip_call, "the route did not ring in time; trying the next");
                        if let Some(next) = self.place(&mut hops, &invite).await {
                            // The stack holds the CANCEL back until the route says anything (RFC 3261 §9.1) and
                            // ends a late 200 with BYE: the route is left holding no call.
                            let _ = leg.cancel().await;
                            (leg, events) = next;
                            (rang, no_ring) = (false, tokio::time::Instant::now() + invite_timeout);
                        }
                        continue;
                    }
                    _ = &mut timer, if state.phase == voip::Phase::Ringing => {
                        let (_, out) = state.ring_timeout();
                        let _ = leg.cancel().await;
                        self.to_matrix(&portal, &remote, out).await;
                        break;
                    }
                }
            };
            match &event {
                VoipEvent::Candidates { candidates: c, .. } => {
                    // Kept for the next negotiation's SDP.
                    candidates.extend(c.iter().cloned());
                    continue;
                }
                VoipEvent::Negotiate { party_id, kind, sdp, .. } => {
                    let offer = (party_id.as_deref(), *kind, sdp.as_str());
                    self.matrix_negotiates(&mut reneg, &state, &leg, (&portal, &remote), offer, &mut candidates).await;
                    continue;
                }
                _ => {}
            }
            match state.on_matrix(&event) {
                SipAction::Cancel => {
                    let _ = leg.cancel().await;
                }
                SipAction::Bye => {
                    let _ = leg.hangup().await;
                }
                SipAction::Answer { .. } | SipAction::Reject(_) | SipAction::None => {}
            }
        }
        self.close_media(&sip_call).await;
        tracing::info!(%sip_call, "call over");
    }
}

#[cfg(test)]
mod tests {
    use super::stand_in_offer;

    #[test]
    fn the_stand_in_offers_the_static_sip_codecs_from_the_phones_address() {
        let sdp = stand_in_offer("192.0.2.7".parse().unwrap(), &["PCMU".into(), "opus".into(), "pcma".into()]);
        assert!(sdp.contains("c=IN IP4 192.0.2.7\r\n"), "{sdp}");
        assert!(sdp.contains("m=audio 9 RTP/AVP 0 8\r\n"), "{sdp}");
        assert!(sdp.contains("a=rtpmap:8 PCMA/8000\r\n") && sdp.ends_with("a=sendrecv\r\n"), "{sdp}");
        let v6 = stand_in_offer("2001:db8::7".parse().unwrap(), &["opus".into()]);
        assert!(v6.contains("c=IN IP6 2001:db8::7\r\n") && v6.contains("m=audio 9 RTP/AVP 0\r\n"), "{v6}");
    }
}
