//! One call through the router: check the peer and the number, hold credit for the first slice, try the
//! carriers in order, bridge the two legs, extend the hold slice by slice, cut the call when credit ends,
//! settle (or release) at the end.
//!
//! Money is never at risk from this code's mistakes alone: every hold is made by the ledger's conditional
//! statement, and a hold this code forgets expires by itself. What this code must get right is the call: it
//! never lets a call run past the seconds its holds pay for.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tincan_enum_core::E164;
use tincan_sip_core::stack::{CallLeg, LegEvent, LegEvents, OutgoingRequest, Reason, Target, headers_named};
use tincan_sip_core::uri::{Host, NameAddr, SipUri, Uri};
use tokio::time::{Instant, sleep_until};
use tracing::Instrument;

use super::breaker::Verdict;
use super::media::{Anchor, Side};
use super::policy::{
    self, affordable_extension, billed_seconds, extension_paid, fails_over, first_paid, reason_for, unanswered_result,
};
use super::records::{self, Billed, Ended, Records};
use super::spool::Entry;
use super::{ACCOUNT_HEADER, Slot, Switch, TrunkConfig};
use crate::charging::{
    AccountId, AccountRef, ChargeError, Charging, ExtendRequest, Hold, IdempotencyKey, QuoteRequest, ReleaseRequest,
    ReserveRequest, ServiceKind, SettleRequest,
};
use crate::rating::Rate;
use crate::storage::{CallResult, LiveCall};

/// The Q.850 cause and text of the BYE both legs get when the call's credit ends (RFC 3326): normal clearing,
/// for the call ended as the prepaid terms say.
const CREDIT_ENDS: (u16, &str) = (16, "Prepaid credit exhausted");
/// A billed call whose caller did not ACK our 200 within `calls.ack_timeout_ms` of the carrier's answer: the
/// Q.850 cause of the BYEs (recovery on timer expiry) and how the call ended.
const ACK_TIMED_OUT: (u16, &str) = (102, "ACK Timed Out");

/// Extra hold lifetime beyond the paid time, so that a settlement at the cut still finds the hold open.
const HOLD_GRACE_SECS: u32 = 30;

fn key(call: &str, what: &str) -> IdempotencyKey {
    IdempotencyKey::new(format!("{call}:{what}")).expect("call ids and step names use the key alphabet")
}

/// The SIP dialog an INVITE starts, as stored: a digest of its Call-ID and From tag (fixed length, whatever
/// the caller's Call-ID).
fn dialog_of(invite: &tincan_sip_core::stack::SipRequest) -> String {
    use sha2::Digest;
    let mut h = sha2::Sha256::new();
    h.update(invite.call_id.as_bytes());
    h.update(b"\n");
    h.update(invite.from.tag().unwrap_or("").as_bytes());
    hex::encode(h.finalize())
}

/// The account the peer names: `@user:server` or an account id.
fn account_ref(value: &str) -> Option<AccountRef> {
    let v = value.trim();
    if v.starts_with('@') && v.contains(':') && v.len() <= 255 {
        Some(AccountRef::User { user_id: v.to_owned() })
    } else {
        v.parse::<i64>().ok().filter(|id| *id > 0).map(|id| AccountRef::Id { account_id: AccountId(id) })
    }
}

pub(super) async fn handle(sw: Arc<Switch>, leg: CallLeg, events: LegEvents) {
    let id = sw.call_id();
    let span = tracing::info_span!("call", id = %id, sip_call_id = %leg.invite.call_id);
    handle_in_span(sw, id, leg, events).instrument(span).await;
}

async fn handle_in_span(sw: Arc<Switch>, id: String, leg: CallLeg, mut events: LegEvents) {
    let invite = leg.invite.clone();
    if sw.live.taken_over() {
        // Another node settled this run's calls: it must hold no more credit (restart the node).
        let _ = leg.reject(503, "Service Unavailable");
        return;
    }
    let from_trunk = sw.config.trunks.values().any(|t| t.address == invite.source.addr);
    if !from_trunk && !sw.config.trusted_peers.contains(&invite.source.addr.ip()) {
        tracing::info!(source = %invite.source, "INVITE from an untrusted address; 403");
        let _ = leg.reject(403, "Forbidden");
        return;
    }
    let Some(destination) = invite.uri.phone_number().and_then(|n| E164::parse(&n).ok()) else {
        let _ = leg.reject(484, "Address Incomplete");
        return;
    };
    // Media is anchored when rtpengine is configured and the caller offered SDP (a late offer passes as it is).
    let media = match (&sw.ng, leg.offer()) {
        (Some(ng), Some(offer)) => Some(Anchor::new(ng.clone(), format!("pstn-{id}"), &offer)),
        _ => None,
    };
    let call = Call { sw: sw.clone(), id, leg, destination, media, spooled: AtomicBool::new(false) };
    if from_trunk {
        // A carrier brings a call to one of the provider's numbers: on to the SIP bridge.
        call.inbound(&mut events).await;
    } else if let Some(account) = invite.header(ACCOUNT_HEADER).and_then(account_ref) {
        call.outbound(account, &mut events).await;
    } else {
        tracing::info!("INVITE without a paying account; 403");
        let _ = call.leg.reject(403, "Forbidden");
    }
    // Its record is stored and its hold closed (or it never held credit): nothing left to recover.
    sw.live.close(&call.id);
    if let Some(m) = &call.media {
        m.close().await;
    }
}

struct Call {
    sw: Arc<Switch>,
    id: String,
    leg: CallLeg,
    destination: E164,
    /// The call's media session at rtpengine, when anchored; closed when the call ends.
    media: Option<Anchor>,
    /// Whether a record or settlement of the call went to the spool (the database did not take it in time):
    /// then its later steps go there too, so that they reach the database in order.
    spooled: AtomicBool,
}

/// The money side of a call to the phone network.
struct Billing {
    account: AccountRef,
    hold: Hold,
    rate: Rate,
    /// The seconds from the answer that the holds pay for.
    paid: u32,
    carrier: String,
    /// The carrier's cost for the destination.
    cost: Rate,
    /// The call's records, and this attempt's number and start (Unix ms).
    records: Records,
    attempt: u32,
    started_at_ms: i64,
    /// The carrier's call slot, held while the call lasts.
    _slot: Slot,
}

/// The longest call that is not billed (calls in from a carrier's trunk).
const MAX_UNBILLED_SECS: u32 = 4 * 3600;

/// How a carrier attempt ended.
enum Attempt {
    /// Answered: the carrier's leg, its events, its SDP.
    Answered(CallLeg, LegEvents, Option<String>),
    /// A final answer to pass back to the caller (no failover).
    Final(Failure),
    /// Try the next carrier; this is why.
    Next(Failure),
    /// The caller went away (CANCEL) before an answer.
    CallerGone,
}

/// A carrier leg's failure: its final status and phrase, and the carrier's own Q.850 reason if it gave one.
struct Failure {
    code: u16,
    phrase: String,
    reason: Option<Reason>,
}

impl Failure {
    fn new(code: u16, phrase: impl Into<String>) -> Self {
        Failure { code, phrase: phrase.into(), reason: None }
    }

    /// The reason toward the caller: the carrier's, else the status's cause (RFC 3398).
    fn reason(&self) -> Reason {
        self.reason.clone().unwrap_or_else(|| reason_for(self.code))
    }
}

impl Call {
    /// A call in from a carrier to one of the provider's numbers: passed to the SIP bridge, which knows
    /// whose number it is and rings their Matrix clients and SIP devices. Not billed.
    async fn inbound(&self, events: &mut LegEvents) {
        let Some(bridge) = self.sw.config.bridge.clone() else {
            let _ = self.leg.reject(404, "Not Found");
            return;
        };
        let setup_deadline = Instant::now() + Duration::from_secs(u64::from(self.sw.config.setup_timeout_secs));
        let Some(offer) = self.offer_out().await else {
            let _ = self.leg.reject(503, "Media Relay Unavailable");
            return;
        };
        match self.attempt(&bridge, &offer, events, setup_deadline).await {
            Attempt::Answered(out, out_events, sdp) => {
                let answered = match self.answer_in(sdp).await {
                    Some(sdp) => self.leg.answer(&sdp).is_ok(),
                    None => {
                        let _ = self.leg.reject(503, "Media Relay Unavailable");
                        false
                    }
                };
                if !answered {
                    let _ = out.hangup().await;
                    return;
                }
                self.connected(None, events, out, out_events).await;
            }
            Attempt::Final(f) | Attempt::Next(f) => {
                tracing::info!(code = f.code, "the SIP bridge did not take the call");
                // A challenge we could not answer is ours to fix, not the carrier's to answer.
                let f = if matches!(f.code, 401 | 407) { Failure::new(503, "Service Unavailable") } else { f };
                let _ = self.leg.reject_with_reason(f.code, &f.phrase, &f.reason());
            }
            Attempt::CallerGone => {}
        }
    }

    /// A call out to the phone network, paid by `account`. Every attempt on a carrier, and a call refused
    /// before any, leaves a call record, stored before the hold is settled or released.
    async fn outbound(&self, account: AccountRef, events: &mut LegEvents) {
        let setup_deadline = Instant::now() + Duration::from_secs(u64::from(self.sw.config.setup_timeout_secs));
        let started = self.now_ms();
        let charging = &self.sw.charging;
        // 1. Price the number and hold the first slice (connect fee included).
        let quote = match charging
            .quote(&QuoteRequest {
                account: account.clone(),
                service: ServiceKind::Voice,
                destination: self.destination.clone(),
                seconds: None,
                segments: None,
            })
            .await
        {
            Ok(q) => q,
            Err(e) => return self.refuse_before_hold(&account, started, &e).await,
        };
        let rate = policy::rate_of(&quote);
        let asked = quote.max_seconds.unwrap_or(0).min(self.sw.config.slice_secs);
        if asked == 0 {
            return self.refuse_before_hold(&account, started, &ChargeError::InsufficientFunds).await;
        }
        let ttl = self.sw.config.setup_timeout_secs + first_paid(&rate, asked) + HOLD_GRACE_SECS;
        let reserve = ReserveRequest {
            idempotency_key: key(&self.id, "reserve"),
            account: account.clone(),
            service: ServiceKind::Voice,
            destination: self.destination.clone(),
            amount: None,
            seconds: Some(asked),
            segments: None,
            ttl_secs: Some(ttl),
        };
        // The call is live from its hold on: its row is written in the hold's transaction (one commit), before
        // any carrier sees the call, so a restart after a crash settles it. The carriers are read meanwhile.
        // Its SIP dialog is taken there too: the same INVITE at another node (a proxy's failover) is refused.
        let incoming = LiveCall::incoming(&self.id, self.destination.as_str(), quote.currency, started);
        let live = self.sw.live.row(LiveCall { sip_dialog: Some(dialog_of(&self.leg.invite)), ..incoming });
        let (hold, routes) = tokio::join!(
            charging.reserve_for(&reserve, Some(live)),
            self.sw.ledger.routes(&self.destination, ServiceKind::Voice)
        );
        let hold = match hold {
            Ok(h) => h,
            Err(ChargeError::CallElsewhere) => {
                // Another call (on another node) carries this very INVITE: no record, it is not a call of its own.
                tracing::warn!("the same INVITE is carried by another call (a proxy failed over); 482");
                let _ = self.leg.reject(482, "Loop Detected");
                return;
            }
            Err(ChargeError::RunTakenOver) => {
                // Another node settles this run's calls and would not see this one: refused as a fenced node
                // refuses every call, with nothing held.
                self.sw.live.found_taken_over();
                let _ = self.leg.reject(503, "Service Unavailable");
                return;
            }
            Err(e) => return self.refuse_before_hold(&account, started, &e).await,
        };
        tracing::info!(hold = %hold.id, seconds = asked, amount = %hold.amount, "first slice held");
        let mut records = Records::new(&self.id, hold.account_id, hold.currency, self.destination.as_str());
        records.set_hold(hold.id.seq);
        // 2. The carriers, least cost first.
        let routes = match routes {
            Ok(r) => r,
            Err(e) => {
                let (code, phrase) = policy::refusal(&ChargeError::from(e));
                return self.fail(&records, &hold, started, Failure::new(code, phrase)).await;
            }
        };
        let Some(offer) = self.offer_out().await else {
            return self.fail(&records, &hold, started, Failure::new(503, "Media Relay Unavailable")).await;
        };
        let mut last = None;
        for route in routes {
            let name = route.carrier.name.clone();
            let Some(trunk) = self.sw.config.trunks.get(&name) else {
                tracing::debug!(carrier = %name, "no trunk configured for this carrier; skipped");
                continue;
            };
            if !self.sw.breaker_allows(&name) {
                tracing::info!(carrier = %name, "carrier's breaker is open after failures; skipped");
                continue;
            }
            let Some(slot) = self.sw.take_slot(&name, route.carrier.max_concurrent) else {
                self.sw.breaker_finish(&name, Verdict::Unknown);
                tracing::info!(carrier = %name, "carrier at its most concurrent calls; skipped");
                continue;
            };
            let n = records.next_attempt();
            let attempt_started = self.now_ms();
            self.sw.live.attempt(&self.id, n, &name, attempt_started);
            let attempt = self.attempt(trunk, &offer, events, setup_deadline).await;
            let verdict = match &attempt {
                Attempt::Answered(..) | Attempt::Final(..) => Verdict::Works,
                Attempt::Next(..) => Verdict::Failed,
                Attempt::CallerGone => Verdict::Unknown,
            };
            self.sw.breaker_finish(&name, verdict);
            let unanswered = |f: &Failure| Ended {
                carrier: Some(name.clone()),
                result: unanswered_result(f.code, false),
                sip_status: f.code,
                reason: f.phrase.clone(),
                cause: f.reason().cause,
                started_at_ms: attempt_started,
            };
            match attempt {
                Attempt::Answered(out, out_events, sdp) => {
                    let Some(answer) = self.answer_in(sdp).await else {
                        let _ = out.hangup().await;
                        let f = Failure::new(503, "Media Relay Unavailable");
                        self.store(&records, n, unanswered(&f), None).await;
                        self.release(&hold).await;
                        let _ = self.leg.reject_with_reason(f.code, &f.phrase, &f.reason());
                        return;
                    };
                    if let Err(e) = self.leg.answer(&answer) {
                        tracing::warn!(error = %e, "answering the caller failed; ending the call");
                        let _ = out.hangup().await;
                        self.store(&records, n, unanswered(&Failure::new(500, "Caller Not Answered")), None).await;
                        self.release(&hold).await;
                        return;
                    }
                    let paid = first_paid(&rate, asked);
                    let billing = Billing {
                        account,
                        hold,
                        rate,
                        paid,
                        carrier: name,
                        cost: route.cost,
                        records,
                        attempt: n,
                        started_at_ms: attempt_started,
                        _slot: slot,
                    };
                    return self.connected(Some(billing), events, out, out_events).await;
                }
                Attempt::Final(f) => {
                    tracing::info!(carrier = %name, code = f.code, "final answer; not failing over");
                    self.store(&records, n, unanswered(&f), None).await;
                    self.release(&hold).await;
                    let _ = self.leg.reject_with_reason(f.code, &f.phrase, &f.reason());
                    return;
                }
                Attempt::Next(f) => {
                    tracing::info!(carrier = %name, code = f.code, "carrier failed; trying the next");
                    self.store(&records, n, unanswered(&f), None).await;
                    last = Some(f);
                }
                Attempt::CallerGone => {
                    let ended =
                        Ended { result: CallResult::Cancelled, ..unanswered(&Failure::new(487, "Request Terminated")) };
                    self.store(&records, n, ended, None).await;
                    self.release(&hold).await;
                    return;
                }
            }
        }
        // No carrier took it: a carrier's 5xx goes back as it was; anything else (a challenge we could not
        // answer, a timeout, no carrier tried at all) is 503 with Q.850 34, no circuit available.
        let f = match last {
            Some(f) if (500..600).contains(&f.code) => f,
            _ => Failure {
                reason: Some(Reason::q850(34, policy::q850_text(34))),
                ..Failure::new(503, "No Carrier Available")
            },
        };
        if records.attempts() == 0 {
            // Nothing was tried (no trunk, breakers open, carriers full): one record says why.
            return self.fail(&records, &hold, started, f).await;
        }
        self.release(&hold).await;
        let _ = self.leg.reject_with_reason(f.code, &f.phrase, &f.reason());
    }

    /// Unix ms now, by the ledger's clock.
    fn now_ms(&self) -> i64 {
        records::now_ms(&**self.sw.ledger.clock())
    }

    /// Stores the record of attempt `n` ended now.
    async fn store(&self, records: &Records, n: u32, ended: Ended, billed: Option<Billed>) {
        let r = records.record(n, ended, billed, self.now_ms());
        records::store(&self.sw, &r, &self.spooled).await;
    }

    /// Refuses a call after its hold was made but before any carrier: its record (attempt 0), the hold
    /// released, the caller answered `failure`.
    async fn fail(&self, records: &Records, hold: &Hold, started: i64, f: Failure) {
        let ended = Ended {
            carrier: None,
            result: CallResult::Refused,
            sip_status: f.code,
            reason: f.phrase.clone(),
            cause: f.reason().cause,
            started_at_ms: started,
        };
        self.store(records, 0, ended, None).await;
        self.release(hold).await;
        tracing::info!(code = f.code, "call refused");
        let _ = self.leg.reject_with_reason(f.code, &f.phrase, &f.reason());
    }

    /// Refuses a call the ledger would not hold credit for: its record (attempt 0, when the account exists),
    /// then the caller's answer.
    async fn refuse_before_hold(&self, account: &AccountRef, started: i64, e: &ChargeError) {
        let (code, phrase) = policy::refusal(e);
        tracing::info!(error = %e, code, "call refused");
        let f = Failure::new(code, phrase);
        if let Ok(a) = self.sw.ledger.account(account).await {
            let records = Records::new(&self.id, a.id, a.currency, self.destination.as_str());
            let ended = Ended {
                carrier: None,
                result: CallResult::Refused,
                sip_status: code,
                reason: format!("{phrase}: {e}"),
                cause: f.reason().cause,
                started_at_ms: started,
            };
            self.store(&records, 0, ended, None).await;
        }
        let _ = self.leg.reject_with_reason(code, phrase, &f.reason());
    }

    /// The SDP the gateway's INVITE carries: the caller's offer, rewritten by rtpengine when media is anchored
    /// (`None` when rtpengine refused or did not answer).
    async fn offer_out(&self) -> Option<Vec<u8>> {
        let Some(media) = &self.media else { return Some(self.leg.invite.body.clone()) };
        let offer = self.leg.offer().unwrap_or_default();
        match media.offer(Side::In, &offer).await {
            Ok(sdp) => Some(sdp.into_bytes()),
            Err(e) => {
                tracing::warn!(error = %e, "rtpengine did not take the offer; 503");
                None
            }
        }
    }

    /// The SDP the caller gets for the other side's `sdp` (an answer, or early media): rewritten by rtpengine
    /// when media is anchored (`None` when it failed).
    async fn answer_in(&self, sdp: Option<String>) -> Option<String> {
        let sdp = sdp.unwrap_or_default();
        let Some(media) = &self.media else { return Some(sdp) };
        match media.answer(Side::In, &sdp).await {
            Ok(s) => Some(s),
            Err(e) => {
                tracing::warn!(error = %e, "rtpengine did not take the answer");
                None
            }
        }
    }

    /// One INVITE to one carrier, until it is answered, fails, times out or the caller cancels.
    async fn attempt(
        &self,
        trunk: &TrunkConfig,
        offer: &[u8],
        events: &mut LegEvents,
        setup_deadline: Instant,
    ) -> Attempt {
        let invite = &self.leg.invite;
        let host = match &trunk.domain {
            Some(d) => Host::Domain(d.clone()),
            None => trunk.address.ip().into(),
        };
        let mut to = SipUri::new(Some(self.destination.as_str()), host);
        if trunk.domain.is_none() {
            to.port = Some(trunk.address.port());
        }
        to.set_param("user", Some("phone"));
        let local = self.sw.stack.listeners().into_iter().find(|t| t.transport == trunk.transport);
        let Some(local) = local else { return Attempt::Next(Failure::new(503, "No Listener For Trunk")) };
        // The caller's number as the trusted peer asserts it (P-Asserted-Identity, else From); shown only to
        // carriers that take it, the others get the provider's number.
        let asserted = invite
            .header("P-Asserted-Identity")
            .and_then(|v| v.parse::<NameAddr>().ok())
            .and_then(|n| n.uri.phone_number())
            .or_else(|| invite.from.uri.phone_number());
        let shown = match (trunk.asserted_identity, &trunk.provider_number, &asserted) {
            (true, _, Some(n)) => Some(n.clone()),
            (_, Some(p), _) => Some(p.clone()),
            (false, None, _) | (true, None, None) => None,
        };
        let caller = shown.clone().unwrap_or_else(|| "anonymous".into());
        let mut from_uri = SipUri::new(Some(&caller), local.addr.ip().into());
        from_uri.set_param("user", Some("phone"));
        let mut headers = Vec::new();
        if trunk.asserted_identity && shown.is_some() && shown == asserted {
            headers.push(("P-Asserted-Identity".to_owned(), format!("<{}>", Uri::Sip(from_uri.clone()))));
        }
        let mut request = OutgoingRequest {
            method: tincan_sip_core::stack::Method::Invite,
            uri: Uri::Sip(to.clone()),
            from: NameAddr { display_name: None, uri: Uri::Sip(from_uri), params: Vec::new() },
            to: NameAddr { display_name: None, uri: Uri::Sip(to), params: Vec::new() },
            headers,
            content_type: (!offer.is_empty()).then(|| "application/sdp".into()),
            body: offer.to_vec(),
            target: Target { transport: trunk.transport, addr: trunk.address },
            call_id: None,
        };
        let (mut out, mut out_events) = match self.sw.stack.invite(request.clone()).await {
            Ok(x) => x,
            Err(e) => return Attempt::Next(Failure::new(503, format!("Trunk Unreachable: {e}"))),
        };
        let invite_timeout = Duration::from_millis(self.sw.config.invite_timeout_ms);
        let mut no_response = Instant::now() + invite_timeout;
        let mut responded = false;
        // Challenges answered so far, 401s and 407s apart (a proxy and the carrier behind it may each ask).
        let mut answered = [0u32; 2];
        loop {
            tokio::select! {
                ev = out_events.recv() => match ev {
                    Some(LegEvent::Failed { code: code @ (401 | 407), reason, headers }) => {
                        // The carrier wants credentials: the same INVITE again on the same Call-ID (the stack
                        // gives it a higher CSeq), with the answer beside any given before.
                        let kind = usize::from(code == 407);
                        let uri = out.invite.uri.to_string();
                        let cnonce = self.sw.cnonce();
                        let answer =
                            policy::authorization(trunk.auth.as_ref(), code, &headers, answered[kind], &uri, &cnonce);
                        let Some((name, value)) = answer else {
                            tracing::info!(code, "the trunk refused our credentials (or we have none for it)");
                            return Attempt::Next(Failure::new(code, reason));
                        };
                        answered[kind] += 1;
                        request.headers.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
                        request.headers.push((name.to_owned(), value));
                        request.call_id = Some(out.call_id().to_owned());
                        (out, out_events) = match self.sw.stack.invite(request.clone()).await {
                            Ok(x) => x,
                            Err(e) => return Attempt::Next(Failure::new(503, format!("Trunk Unreachable: {e}"))),
                        };
                        responded = false;
                        no_response = Instant::now() + invite_timeout;
                    }
                    Some(LegEvent::Progress { sdp, .. }) => {
                        responded = true;
                        // Early media without an anchored answer would bypass rtpengine: ring without it.
                        let early = match sdp {
                            Some(sdp) => self.answer_in(Some(sdp)).await,
                            None => None,
                        };
                        let _ = self.leg.ring(early.as_deref());
                    }
                    Some(LegEvent::Answered { sdp }) => return Attempt::Answered(out, out_events, sdp),
                    Some(LegEvent::Failed { code, reason: phrase, headers }) => {
                        let reason = Reason::find_q850(headers_named(&headers, "Reason"));
                        let f = Failure { code, phrase, reason };
                        return if fails_over(code) { Attempt::Next(f) } else { Attempt::Final(f) };
                    }
                    Some(LegEvent::ReInvite { reply, .. }) => { let _ = reply.send(Err(491)); }
                    Some(other) => return Attempt::Next(Failure::new(503, format!("{other:?}"))),
                    None => return Attempt::Next(Failure::new(503, "Trunk Leg Ended")),
                },
                ev = events.recv() => match ev {
                    Some(LegEvent::ReInvite { reply, .. }) => { let _ = reply.send(Err(491)); }
                    _ => {
                        let _ = out.cancel().await;
                        return Attempt::CallerGone;
                    }
                },
                _ = sleep_until(no_response), if !responded => {
                    let _ = out.cancel().await;
                    return Attempt::Next(Failure::new(408, "Request Timeout"));
                }
                _ = sleep_until(setup_deadline) => {
                    let _ = out.cancel().await;
                    return Attempt::Final(Failure::new(480, "Temporarily Unavailable"));
                }
            }
        }
    }

    /// The call is up: relay hang-ups and re-INVITEs; when billed, extend the hold before the paid time ends,
    /// cut the call where it does, then settle.
    async fn connected(
        &self,
        mut billing: Option<Billing>,
        events: &mut LegEvents,
        out: CallLeg,
        mut out_events: LegEvents,
    ) {
        let answered = Instant::now();
        let answered_at_ms = self.now_ms();
        let billed = billing.is_some();
        // The caller's ACK confirms the call (RFC 3261 §13.3.1.4): a call it never confirms (a caller that took
        // another final answer for this INVITE first, such as a 482 from the node a proxy failed over to, drops
        // our late 200) is not charged, and its live row says answered only once it is confirmed, so that a
        // restart does not charge it either. The caller's BYE confirms it too: the caller had our 200, and its
        // ACK may be overtaken by the BYE or lost.
        let mut confirmed = false;
        let cfg = &self.sw.config;
        let mut extensions = 0u32;
        let mut can_extend = billing.is_some();
        // Toll fraud: a caller that never ACKs would have the carrier's leg until the stack gives up at 64*T1
        // (32 s), for nothing. A billed call is ended when its ACK has not come this long after the answer.
        let ack_deadline = answered + Duration::from_millis(cfg.ack_timeout_ms);
        let ended = loop {
            let paid = billing.as_ref().map_or(MAX_UNBILLED_SECS, |b| b.paid);
            let cut_at = answered + Duration::from_secs(u64::from(paid));
            let extend_at = cut_at
                .checked_sub(Duration::from_secs(u64::from(cfg.extend_before_secs)))
                .unwrap_or(answered)
                .max(answered);
            tokio::select! {
                ev = events.recv() => match ev {
                    Some(LegEvent::ReInvite { sdp, reply }) => {
                        relay_reinvite(&out, self.media.as_ref(), Side::In, sdp, reply).await;
                    }
                    Some(LegEvent::Confirmed { .. }) => self.confirm(&mut confirmed, billing.as_ref(), answered_at_ms),
                    ev => {
                        if matches!(ev, Some(LegEvent::HungUp)) {
                            self.confirm(&mut confirmed, billing.as_ref(), answered_at_ms);
                        }
                        let at = self.ends_now(billed);
                        let _ = out.hangup().await;
                        break (at, if confirmed { "Caller Hung Up" } else { "Caller Leg Ended" });
                    }
                },
                ev = out_events.recv() => match ev {
                    Some(LegEvent::ReInvite { sdp, reply }) => {
                        relay_reinvite(&self.leg, self.media.as_ref(), Side::Out, sdp, reply).await;
                    }
                    Some(LegEvent::Progress { .. } | LegEvent::Answered { .. }) => {}
                    _ => {
                        let at = self.ends_now(billed);
                        let _ = self.leg.hangup().await;
                        break (at, "Called Party Hung Up");
                    }
                },
                _ = sleep_until(extend_at), if can_extend => {
                    extensions += 1;
                    let elapsed = u32::try_from(answered.elapsed().as_secs()).unwrap_or(u32::MAX);
                    if let Some(b) = billing.as_mut() {
                        // Never past the paid time: an extension the ledger has not granted by then (its database
                        // away: a pool that cannot connect waits its whole acquire timeout) ends the call there.
                        let more = self.extend(b, extensions, b.paid.saturating_sub(elapsed));
                        match tokio::time::timeout_at(cut_at, more).await {
                            Ok(Some(more)) => {
                                b.paid += more;
                                self.sw.live.paid(&self.id, b.paid);
                            }
                            Ok(None) => can_extend = false,
                            Err(_) => {
                                tracing::warn!(paid, "the ledger did not extend the hold before the paid time ended");
                                can_extend = false;
                            }
                        }
                    }
                }
                _ = sleep_until(ack_deadline), if billed && !confirmed => {
                    tracing::warn!(ack_timeout_ms = cfg.ack_timeout_ms, "no ACK from the caller: hanging up both legs");
                    let at = self.ends_now(billed);
                    let why = Reason::q850(ACK_TIMED_OUT.0, ACK_TIMED_OUT.1);
                    let (a, b) = tokio::join!(self.leg.hangup_with_reason(&why), out.hangup_with_reason(&why));
                    if a.is_err() || b.is_err() {
                        tracing::warn!("a BYE for a call without an ACK failed");
                    }
                    break (at, ACK_TIMED_OUT.1);
                }
                _ = sleep_until(cut_at) => {
                    tracing::info!(paid, "paid time ends: hanging up both legs");
                    let at = self.ends_now(billed);
                    let why = Reason::q850(CREDIT_ENDS.0, CREDIT_ENDS.1);
                    let (a, b) = tokio::join!(self.leg.hangup_with_reason(&why), out.hangup_with_reason(&why));
                    if a.is_err() || b.is_err() {
                        tracing::warn!("a BYE at the end of the paid time failed");
                    }
                    break (at, CREDIT_ENDS.1);
                }
            }
        };
        let (ended, why) = ended;
        if let Some(b) = billing.as_ref().filter(|_| !confirmed) {
            return self.unconfirmed(b, answered_at_ms, ended.duration_since(answered), why).await;
        }
        if let Some(b) = billing {
            let elapsed_ms = u64::try_from(ended.duration_since(answered).as_millis()).unwrap_or(u64::MAX);
            let seconds = billed_seconds(elapsed_ms, b.paid);
            // The record first (with the price the settlement will charge), then the money.
            let price = b.rate.call_price(seconds);
            let cost = b.cost.call_price(seconds).ok();
            match &price {
                Ok(price) => {
                    let ended = Ended {
                        carrier: Some(b.carrier.clone()),
                        result: CallResult::Answered,
                        sip_status: 200,
                        reason: why.to_owned(),
                        cause: policy::q850_cause(200),
                        started_at_ms: b.started_at_ms,
                    };
                    let billed = Billed { answered_at_ms, seconds, price: *price, cost };
                    self.store(&b.records, b.attempt, ended, Some(billed)).await;
                }
                Err(e) => tracing::error!(error = %e, seconds, "the call's price cannot be computed for its record"),
            }
            if let Some(charged) = self.settle(&b.hold, seconds, &b.carrier).await
                && price.as_ref().is_ok_and(|p| *p != charged)
            {
                tracing::error!(%charged, ?price, "the settlement charged other than the call record's price");
            }
        }
    }

    /// The caller confirmed the call (its ACK, or its BYE): a billed call is marked answered in its live row
    /// from then on (at the time of the answer).
    fn confirm(&self, confirmed: &mut bool, billing: Option<&Billing>, answered_at_ms: i64) {
        if std::mem::replace(confirmed, true) {
            return;
        }
        if let Some(b) = billing {
            self.sw.live.answered(&self.id, answered_at_ms, b.paid);
        }
    }

    /// A call the carrier answered but the caller never confirmed (no ACK to our 200 before the call ended:
    /// the stack's 64*T1, the paid time, or the carrier's BYE): its record says so (answered by the carrier at
    /// `answered_at_ms`, 0 s billed at no price, the carrier's cost for the `up` time its leg ran) and its hold
    /// is released in full. `why`: how the call ended.
    async fn unconfirmed(&self, b: &Billing, answered_at_ms: i64, up: Duration, why: &str) {
        let up_secs = billed_seconds(u64::try_from(up.as_millis()).unwrap_or(u64::MAX), u32::MAX);
        tracing::warn!(up_secs, why, "the caller never confirmed the call (no ACK): not charged, hold released");
        let ended = Ended {
            carrier: Some(b.carrier.clone()),
            result: CallResult::Failed,
            sip_status: 200,
            reason: format!("Not Confirmed By The Caller (No ACK); Not Charged; {why}"),
            // Recovery on timer expiry: the caller's ACK never came.
            cause: 102,
            started_at_ms: b.started_at_ms,
        };
        let billed = Billed {
            answered_at_ms,
            seconds: 0,
            price: crate::money::Amount::ZERO,
            cost: b.cost.call_price(up_secs).ok(),
        };
        self.store(&b.records, b.attempt, ended, Some(billed)).await;
        self.release(&b.hold).await;
    }

    /// The moment the call ends, as the BYEs go out: for a billed call also marked live so that the heartbeat
    /// no longer counts it up (a crash while the BYEs are answered bills to here at most).
    fn ends_now(&self, billed: bool) -> Instant {
        if billed {
            self.sw.live.ended(&self.id);
        }
        Instant::now()
    }

    /// Holds one more slice (or what the balance still pays of it); the seconds it adds, or `None` when
    /// nothing more can be held.
    async fn extend(&self, billing: &Billing, n: u32, remaining: u32) -> Option<u32> {
        let (hold, rate) = (&billing.hold, &billing.rate);
        let want = self.sw.config.slice_secs;
        let charging = &self.sw.charging;
        let request = |seconds: u32, step: &str| ExtendRequest {
            idempotency_key: key(&self.id, &format!("extend.{n}{step}")),
            hold: hold.id,
            amount: None,
            seconds: Some(seconds),
            ttl_secs: Some(remaining + extension_paid(rate, seconds) + HOLD_GRACE_SECS),
        };
        let run = Some(self.sw.run_id.as_str());
        match charging.extend_for(&request(want, ""), run).await {
            Ok(_) => return Some(extension_paid(rate, want)),
            Err(ChargeError::InsufficientFunds) => {}
            Err(ChargeError::RunTakenOver) => {
                // Another node settles this run's calls: no more time is held here.
                self.sw.live.found_taken_over();
                tracing::warn!("this run was taken over; the call ends with its paid time");
                return None;
            }
            Err(e) => {
                tracing::warn!(error = %e, "extending the hold failed; the call ends with its paid time");
                return None;
            }
        }
        let available = charging
            .quote(&QuoteRequest {
                account: billing.account.clone(),
                service: ServiceKind::Voice,
                destination: self.destination.clone(),
                seconds: None,
                segments: None,
            })
            .await
            .ok()?
            .available;
        let fits = affordable_extension(rate, available, want);
        if fits == 0 {
            tracing::info!("no credit for more time; the call ends with its paid time");
            return None;
        }
        match charging.extend_for(&request(fits, "b"), run).await {
            Ok(_) => Some(extension_paid(rate, fits)),
            Err(e) => {
                tracing::info!(error = %e, "the last extension failed; the call ends with its paid time");
                None
            }
        }
    }

    /// Settles the call's hold for `seconds`; what was charged, if it settled.
    async fn settle(&self, hold: &Hold, seconds: u32, carrier: &str) -> Option<crate::money::Amount> {
        let req = SettleRequest {
            idempotency_key: key(&self.id, "settle"),
            hold: hold.id,
            amount: None,
            seconds: Some(seconds),
            segments: None,
            carrier: Some(carrier.to_owned()),
        };
        let charging = &self.sw.charging;
        let tries = async {
            for attempt in 0..5u32 {
                match charging.settle(&req).await {
                    Ok(s) => return Ok(Some(s)),
                    Err(e) if e.is_retryable() => tokio::time::sleep(Duration::from_millis(200 << attempt)).await,
                    Err(e) => return Err(e),
                }
            }
            Ok(None)
        };
        let outcome = if self.spooled.load(Ordering::Relaxed) {
            Ok(None)
        } else {
            tokio::time::timeout(records::DATABASE_WITHIN * 2, tries).await.unwrap_or(Ok(None))
        };
        match outcome {
            Ok(Some(s)) => {
                tracing::info!(seconds, charged = %s.charged, released = %s.released, %carrier, "call settled");
                Some(s.charged)
            }
            Ok(None) => {
                // The database is away (or the call's record waits in the spool): the settlement waits there too.
                tracing::warn!(seconds, "the ledger did not take the settlement in time; spooled");
                self.sw.keep(&Entry::settle(&req), &self.spooled).await;
                None
            }
            Err(e) => {
                tracing::error!(error = %e, seconds, "settling the call failed");
                None
            }
        }
    }

    async fn release(&self, hold: &Hold) {
        let req = ReleaseRequest { idempotency_key: key(&self.id, "release"), hold: hold.id };
        let charging = &self.sw.charging;
        let tries = async {
            for attempt in 0..5u32 {
                match charging.release(&req).await {
                    Ok(_) => return true,
                    Err(e) if e.is_retryable() => tokio::time::sleep(Duration::from_millis(200 << attempt)).await,
                    Err(e) => {
                        tracing::warn!(error = %e, "releasing the hold failed; it will expire");
                        return true;
                    }
                }
            }
            false
        };
        let done = !self.spooled.load(Ordering::Relaxed)
            && tokio::time::timeout(records::DATABASE_WITHIN * 2, tries).await.unwrap_or(false);
        if !done {
            // Spooled, after the call's record: the hold goes back as soon as the database does.
            self.sw.keep(&Entry::release(&req), &self.spooled).await;
        }
    }
}

/// Passes a re-INVITE's offer from the `from` side to the `other` leg and its answer back, through rtpengine
/// when media is anchored.
async fn relay_reinvite(
    other: &CallLeg,
    media: Option<&Anchor>,
    from: Side,
    sdp: Option<String>,
    reply: tokio::sync::oneshot::Sender<Result<String, u16>>,
) {
    let Some(mut sdp) = sdp else {
        let _ = reply.send(Err(488));
        return;
    };
    if let Some(m) = media {
        match m.offer(from, &sdp).await {
            Ok(s) => sdp = s,
            Err(e) => {
                tracing::warn!(error = %e, "rtpengine did not take a re-INVITE's offer; 500");
                let _ = reply.send(Err(500));
                return;
            }
        }
    }
    let answer = match other.reinvite(&sdp).await {
        Ok(r) if r.is_success() => Ok(String::from_utf8_lossy(&r.body).into_owned()),
        Ok(r) => Err(r.code),
        Err(_) => Err(500),
    };
    let answer = match (answer, media) {
        (Ok(sdp), Some(m)) => m.answer(from, &sdp).await.map_err(|e| {
            tracing::warn!(error = %e, "rtpengine did not take a re-INVITE's answer; 500");
            500
        }),
        (answer, _) => answer,
    };
    let _ = reply.send(answer);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_paying_account_is_a_user_or_an_id() {
        assert_eq!(account_ref(" @alice:hs.example "), Some(AccountRef::User { user_id: "@alice:hs.example".into() }));
        assert_eq!(account_ref("12"), Some(AccountRef::Id { account_id: AccountId(12) }));
        for bad in ["", "alice", "@alice", "-3", "0", "1e3"] {
            assert_eq!(account_ref(bad), None, "{bad}");
        }
    }
}
