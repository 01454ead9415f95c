//! Calls between Matrix users (`m.call.*`) and SIP (INVITE dialogs), media through rtpengine.
//!
//! One task per call runs it: the SIP leg's events, the Matrix user's VoIP events (handed in by the
//! connector, keyed by the Matrix call ID) and the ring timer go through the call's [`voip::CallState`], and
//! the task does what it says. rtpengine anchors the media: its call is the SIP leg's Call-ID, the SIP party
//! is tag [`SIP_TAG`], the Matrix party [`MATRIX_TAG`]; the Matrix leg is WebRTC (ICE, DTLS-SRTP, rtcp-mux,
//! Opus offered by transcoding), the SIP leg plain RTP (or SDES-SRTP when the phone offers it) with
//! `media.sip_codecs` offered by transcoding. No media passes through the bridge.
//!
//! Every rtpengine call is recorded in the store before its `offer` and forgotten after its `delete`; at
//! start, the ones a crash left are deleted.

pub mod voip;

use crate::config::MediaConfig;
use crate::routing::Router;
use crate::store::Store;
use crate::subscribers::Subscribers;
use rand::Rng;
use rand::rngs::StdRng;
use ruma::{OwnedUserId, UserId};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;
use tincan_appservice::{BridgeHandle, PortalKey, RemoteChatId, RemoteEvent, RemoteEventKind, RemoteUserId};
use tincan_common::Clock;
use tincan_sip_core::rtpengine::{Leg, NgClient};
use tincan_sip_core::sdp::{self, Candidate};
use tincan_sip_core::stack::{CallLeg, LegEvent, LegEvents, Method, OutgoingRequest, SipStack};
use tincan_sip_core::uri::NameAddr;
use tokio::sync::mpsc;
use voip::{CallState, Direction, GhostSide, Outgoing, SipAction, VoipEvent};

/// rtpengine's tag of the SIP party.
pub const SIP_TAG: &str = "sip";
/// rtpengine's tag of the Matrix party.
pub const MATRIX_TAG: &str = "mx";

/// How long to wait for trickled candidates when an offer or answer SDP comes without any.
const CANDIDATE_WAIT: Duration = Duration::from_millis(1000);

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
    rng: Mutex<StdRng>,
    bridge: OnceLock<BridgeHandle>,
    /// Calls in progress: (Matrix user, Matrix call ID) → the call's task.
    active: Mutex<HashMap<(OwnedUserId, String), mpsc::UnboundedSender<VoipEvent>>>,
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
            rng: Mutex::new(deps.rng),
            bridge: OnceLock::new(),
            active: Mutex::new(HashMap::new()),
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
        let Some(offer) = leg.offer() else {
            // An INVITE without an offer would need our offer in the 200 and the answer in the ACK.
            let _ = leg.reject(488, "Not Acceptable Here");
            return;
        };
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
        let portal = PortalKey { receiver, chat: RemoteChatId::new(caller.clone()) };
        let ghost = RemoteUserId::new(caller);
        let ring = Duration::from_secs(self.media.ring_timeout_secs);
        let mut state = CallState::new(Direction::SipToMatrix, ghost_side);
        let ring_ms = u64::try_from(ring.as_millis()).unwrap_or(u64::MAX);
        self.to_matrix(&portal, &ghost, vec![state.ghost.invite(&for_matrix, ring_ms)]).await;
        let _ = leg.ring(None);
        tracing::info!(%sip_call, matrix_call = %state.ghost.call_id, "SIP call to a Tincan number ringing in Matrix");

        let timer = tokio::time::sleep(ring);
        tokio::pin!(timer);
        let mut candidates: Vec<Candidate> = Vec::new();
        let mut deferred: Vec<VoipEvent> = Vec::new();
        while state.phase != voip::Phase::Ended {
            let matrix = if let Some(ev) = (!deferred.is_empty()).then(|| deferred.remove(0)) {
                Some(ev)
            } else {
                tokio::select! {
                    ev = rx.recv() => match ev { Some(ev) => Some(ev), None => break },
                    sip = events.recv() => {
                        let out = match sip {
                            Some(LegEvent::Confirmed) => continue,
                            Some(LegEvent::ReInvite { reply, .. }) => {
                                // Hold and re-negotiation are not bridged yet.
                                let _ = reply.send(Err(488));
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
            match state.on_matrix(&event) {
                SipAction::Answer { party_id, sdp } => {
                    let sdp = self.with_candidates(sdp, &mut candidates, &mut rx, &mut deferred).await;
                    let for_phone = self.ng.answer(&sip_call, SIP_TAG, MATRIX_TAG, &sdp, &Leg::sip_like(&offer)).await;
                    match for_phone {
                        Ok(s) if leg.answer(&s).is_ok() => {
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
        self.close_media(&sip_call).await;
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
        let mut state = CallState::new(Direction::MatrixToSip, GhostSide { call_id, party_id: self.id(12) });
        let mut candidates = Vec::new();
        let mut deferred = Vec::new();
        let sdp = self.with_candidates(sdp, &mut candidates, &mut rx, &mut deferred).await;
        // A browser that bundled its offer refuses an answer without the group (rtpengine drops it).
        let bundled = sdp::has_bundle_group(&sdp);
        if deferred.iter().any(|e| matches!(e, VoipEvent::Hangup { .. })) {
            return;
        }
        let route = match self.router.route(remote.as_str()).await {
            Ok(r) => r,
            Err(e) => {
                tracing::info!(error = %e, "no route for a Matrix call");
                let out = state.sip_failed(404);
                self.to_matrix(&portal, &remote, out).await;
                return;
            }
        };
        let Some(target) = route.targets.first().copied() else {
            let out = state.sip_failed(404);
            self.to_matrix(&portal, &remote, out).await;
            return;
        };
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
        let request = OutgoingRequest {
            method: Method::Invite,
            uri: route.uri.clone(),
            from,
            to: NameAddr { display_name: None, uri: route.uri.clone(), params: Vec::new() },
            headers: Vec::new(),
            content_type: Some("application/sdp".into()),
            body: for_phone.into_bytes(),
            target,
            call_id: Some(sip_call.clone()),
        };
        let (leg, mut events) = match self.stack.invite(request).await {
            Ok(l) => l,
            Err(e) => {
                tracing::warn!(error = %e, "sending INVITE failed");
                let out = state.sip_failed(503);
                self.to_matrix(&portal, &remote, out).await;
                self.close_media(&sip_call).await;
                return;
            }
        };
        tracing::info!(%sip_call, matrix_call = %state.ghost.call_id, "Matrix call to SIP placed");
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
                            Some(LegEvent::Progress { .. }) => continue,
                            Some(LegEvent::ReInvite { reply, .. }) => {
                                let _ = reply.send(Err(488));
                                continue;
                            }
                            Some(LegEvent::Answered { sdp: Some(answer) }) => {
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
                            Some(LegEvent::Failed { code, .. }) => state.sip_failed(code),
                            Some(LegEvent::HungUp) => state.sip_ended("user_hangup"),
                            Some(LegEvent::Ended { reason }) => {
                                tracing::info!(%reason, "SIP dialog ended");
                                state.sip_ended("user_hangup")
                            }
                            Some(LegEvent::Confirmed | LegEvent::Cancelled) => continue,
                            None => state.sip_ended("unknown_error"),
                        };
                        self.to_matrix(&portal, &remote, out).await;
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
