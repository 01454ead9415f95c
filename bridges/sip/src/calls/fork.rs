//! Forking a call to a Tincan number to the user's registered SIP devices, in parallel with the ghost's
//! `m.call.invite` to their Matrix clients — RFC 3261 §16.7's forking with the bridge as a B2BUA:
//!
//! - each live binding gets an INVITE of its own (its own dialog and Call-ID) from the caller's identity, with
//!   the SDP rtpengine makes of the phone's offer in an rtpengine call of its own (the branch's Call-ID; the
//!   phone is tag [`SIP_TAG`], the device [`DEVICE_TAG`]; plain RTP toward the device);
//! - the first answer wins: a device's 200 answers the phone with rtpengine's SDP for that device, the other
//!   devices get CANCEL and the ghost hangs its Matrix invite up (`answered_elsewhere`); an answer from Matrix
//!   cancels every device the same way (rsipstack 0.7 sends CANCEL with the INVITE's headers only, so without
//!   RFC 3326's `Reason: SIP;cause=200;text="Call completed elsewhere"`);
//! - a device's 6xx (603 Decline pressed on the desk phone) refuses the call everywhere; its 4xx/5xx (busy in
//!   another call, unreachable) end that branch only;
//! - the phone's CANCEL, the ring timeout and a refusal from Matrix cancel every device;
//! - a device's 200 that crosses our CANCEL is ACKed and ended with BYE (the stack does it for a cancelled
//!   INVITE; a late answer reported anyway is hung up here);
//! - a phone's INVITE without an offer (RFC 3261 §13.2.1) rings the devices with rtpengine's offer made of a
//!   stand-in for the phone's media; the answering device's 200 becomes rtpengine's offer in our 200 to the
//!   phone, and the answer in the phone's ACK goes to rtpengine;
//! - once a device has the call it is a SIP↔SIP call through rtpengine: BYE and re-INVITEs (hold, resume) are
//!   carried between the phone and the device; a re-INVITE without an offer (RFC 3264 §4) from either is
//!   answered with rtpengine's offer made from the other side's current SDP, and the answer in its ACK goes to
//!   rtpengine (the other side is not asked), as on calls answered in Matrix.

use super::{Calls, ReInviteReply, SIP_TAG, reinvite};
use crate::devices::{destination, on_behalf_of};
use std::collections::HashMap;
use tincan_sip_core::rtpengine::Leg;
use tincan_sip_core::stack::{CallLeg, LegEvent, LegEvents, Method, OutgoingRequest, SipRequest};
use tincan_sip_core::uri::NameAddr;
use tokio::sync::mpsc;

/// rtpengine's tag of a device in its branch's call.
pub const DEVICE_TAG: &str = "dev";

/// One device's INVITE.
pub(super) struct Branch {
    /// The device (digest username), for logs.
    device: String,
    leg: CallLeg,
    /// Its rtpengine call (the branch's Call-ID).
    media: String,
    /// Still ringing: not answered, cancelled or failed.
    ringing: bool,
    /// The device's SDP once it answered.
    answer: Option<String>,
}

/// The device branches of one call and their events, tagged with the branch.
pub(super) struct Forks {
    branches: HashMap<usize, Branch>,
    events: mpsc::UnboundedReceiver<(usize, LegEvent)>,
    /// The phone's INVITE came without an offer (the devices were offered a stand-in): the 200 to the phone
    /// carries an offer made from the answering device's SDP, and the phone's ACK the answer.
    delayed: bool,
}

impl Forks {
    /// Whether any branch may still report something.
    pub(super) fn is_live(&self) -> bool {
        !self.branches.is_empty()
    }

    /// The next event of a branch; `None` once every branch's events are over.
    pub(super) async fn next(&mut self) -> Option<(usize, LegEvent)> {
        let next = self.events.recv().await;
        if next.is_none() {
            self.branches.clear();
        }
        next
    }
}

/// What a device's event means for the call.
pub(super) enum DeviceOutcome {
    /// Nothing for the call as a whole (progress; a branch failing, or a late answer hung up).
    Nothing,
    /// This device has the call: the phone is answered, the other devices cancelled.
    Won(usize, Branch),
    /// A device refused the call for the user (6xx): the phone is to get this status.
    Refused(u16),
}

impl Calls {
    /// Sends an INVITE to each live device of `number` for the phone's `invite` with its `offer` (a stand-in when
    /// `delayed`: the INVITE had none).
    pub(super) async fn ring_devices(&self, number: &str, invite: &SipRequest, offer: &str, delayed: bool) -> Forks {
        let (tx, events) = mpsc::unbounded_channel();
        let mut branches = HashMap::new();
        for (i, b) in self.devices.of(number).await.into_iter().enumerate() {
            let Some((uri, target)) = destination(&b) else { continue };
            let media = format!("{}@{}", self.id(24), self.domain);
            if !self.open_media(&media).await {
                continue;
            }
            let for_device = match self.ng.offer(&media, SIP_TAG, offer, &Leg::plain_rtp()).await {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(error = %e, device = %b.username, "rtpengine offer for a device failed");
                    self.close_media(&media).await;
                    continue;
                }
            };
            let request = OutgoingRequest {
                method: Method::Invite,
                uri: uri.clone(),
                from: on_behalf_of(&invite.from),
                to: NameAddr { display_name: None, uri, params: Vec::new() },
                headers: Vec::new(),
                content_type: Some("application/sdp".into()),
                body: for_device.into_bytes(),
                target,
                call_id: Some(media.clone()),
            };
            match self.stack.invite(request).await {
                Ok((leg, leg_events)) => {
                    tokio::spawn(forward(i, leg.clone(), leg_events, tx.clone()));
                    tracing::info!(device = %b.username, %target, "ringing a registered device");
                    branches.insert(i, Branch { device: b.username, leg, media, ringing: true, answer: None });
                }
                Err(e) => {
                    tracing::warn!(error = %e, device = %b.username, "INVITE to a device failed");
                    self.close_media(&media).await;
                }
            }
        }
        Forks { branches, events, delayed }
    }

    /// Cancels every device still ringing and closes its media.
    pub(super) async fn stop_devices(&self, forks: &mut Forks) {
        for b in forks.branches.values_mut().filter(|b| b.ringing) {
            b.ringing = false;
            if let Err(e) = b.leg.cancel().await {
                tracing::debug!(error = %e, device = %b.device, "CANCEL to a device failed");
            }
            self.close_media(&b.media).await;
        }
    }

    /// A device branch's event, while the call rings (or after: late answers are hung up).
    pub(super) async fn device_event(
        &self,
        forks: &mut Forks,
        (i, event): (usize, LegEvent),
        phone: &CallLeg,
        offer: &str,
    ) -> DeviceOutcome {
        let Some(mut b) = forks.branches.remove(&i) else { return DeviceOutcome::Nothing };
        match event {
            LegEvent::Answered { sdp } if b.ringing => {
                let mut for_phone = match &sdp {
                    Some(s) => self.ng.answer(&b.media, SIP_TAG, DEVICE_TAG, s, &Leg::sip_like(offer)).await.ok(),
                    None => None,
                };
                if let (true, Some(_), Some(device)) = (forks.delayed, &for_phone, &sdp) {
                    // The phone offered nothing: the 200 carries an offer made from the device's answer, as for
                    // the phone's offer-less re-INVITE; its ACK answers it (`device_call`).
                    let toward = Leg::sip_like(offer).set("to-tag", SIP_TAG);
                    for_phone = self.ng.offer(&b.media, DEVICE_TAG, device, &toward).await.ok();
                }
                b.answer = sdp;
                match for_phone {
                    Some(s) if phone.answer(&s).is_ok() => {
                        tracing::info!(device = %b.device, sip_call = %phone.call_id(), "a registered device answered");
                        self.stop_devices(forks).await;
                        DeviceOutcome::Won(i, b)
                    }
                    _ => {
                        tracing::warn!(device = %b.device, "a device's answer could not be bridged; hung up");
                        let _ = b.leg.hangup().await;
                        self.close_media(&b.media).await;
                        DeviceOutcome::Nothing
                    }
                }
            }
            LegEvent::Answered { .. } => {
                // Its 200 crossed our CANCEL (or the call is over): the stack ACKed it, we end it.
                let _ = b.leg.hangup().await;
                DeviceOutcome::Nothing
            }
            LegEvent::Failed { code, .. } => {
                if !b.ringing {
                    return DeviceOutcome::Nothing;
                }
                tracing::info!(device = %b.device, code, "a registered device refused the call");
                self.close_media(&b.media).await;
                if code >= 600 { DeviceOutcome::Refused(code) } else { DeviceOutcome::Nothing }
            }
            LegEvent::HungUp | LegEvent::Ended { .. } => {
                if b.ringing {
                    self.close_media(&b.media).await;
                }
                DeviceOutcome::Nothing
            }
            LegEvent::Progress { .. }
            | LegEvent::Confirmed { .. }
            | LegEvent::Cancelled
            | LegEvent::ReInvite { .. }
            | LegEvent::ReInviteAnswer { .. } => {
                forks.branches.insert(i, b);
                DeviceOutcome::Nothing
            }
        }
    }

    /// The call between the phone and the device that answered, until either hangs up.
    pub(super) async fn device_call(
        &self,
        phone: &CallLeg,
        phone_events: &mut LegEvents,
        forks: &mut Forks,
        (winner, device): (usize, Branch),
        offer: &str,
    ) {
        let mut m = DeviceMedia {
            media: device.media.clone(),
            toward_phone: Leg::sip_like(offer),
            phone_sdp: offer.to_owned(),
            device_sdp: device.answer.clone().unwrap_or_default(),
            // The phone's INVITE had no offer: ours went in the 200, its answer comes in the ACK.
            awaiting_ack: forks.delayed.then_some(Side::Phone),
        };
        loop {
            tokio::select! {
                ev = phone_events.recv() => match ev {
                    Some(LegEvent::ReInvite { sdp, reply }) => {
                        self.reinvited(&mut m, Side::Phone, sdp, reply, &device.leg).await;
                    }
                    Some(LegEvent::ReInviteAnswer { sdp }) => self.answered_in_ack(&mut m, Side::Phone, sdp).await,
                    Some(LegEvent::Confirmed { sdp: None }) if forks.delayed => {
                        // RFC 3261 §13.2.1: the ACK must answer the offer in our 200.
                        tracing::warn!(device = %device.device, "the phone's ACK carries no answer to our offer; BYE");
                        let _ = phone.hangup().await;
                        let _ = device.leg.hangup().await;
                        break;
                    }
                    Some(LegEvent::Confirmed { sdp }) => self.answered_in_ack(&mut m, Side::Phone, sdp).await,
                    Some(LegEvent::Progress { .. }) => {}
                    _ => {
                        let _ = device.leg.hangup().await;
                        break;
                    }
                },
                ev = forks.events.recv() => match ev {
                    Some((i, LegEvent::ReInvite { sdp, reply })) if i == winner => {
                        self.reinvited(&mut m, Side::Device, sdp, reply, phone).await;
                    }
                    Some((i, LegEvent::ReInviteAnswer { sdp })) if i == winner => {
                        self.answered_in_ack(&mut m, Side::Device, sdp).await;
                    }
                    Some((i, LegEvent::HungUp | LegEvent::Ended { .. })) if i == winner => {
                        let _ = phone.hangup().await;
                        break;
                    }
                    Some((i, _)) if i == winner => {}
                    Some(other) => {
                        let _ = self.device_event(forks, other, phone, offer).await;
                    }
                    None => {
                        let _ = phone.hangup().await;
                        break;
                    }
                },
            }
        }
        self.close_media(&device.media).await;
        tracing::info!(device = %device.device, sip_call = %phone.call_id(), "device call over");
    }

    /// A re-INVITE from `from` (the phone or the device) in their call. With an offer, it is carried to the other
    /// side ([`Calls::relay_reoffer`]). Without one (RFC 3264 §4: a session refresh, or a request for an offer),
    /// the 200 carries rtpengine's offer made from the other side's current SDP, shaped for `from`, and the
    /// answer comes in `from`'s ACK ([`Calls::answered_in_ack`]); the other side is not asked, its media does not
    /// change. A re-INVITE while such an answer is awaited gets 491 (RFC 3261 §14.2).
    async fn reinvited(
        &self,
        m: &mut DeviceMedia,
        from: Side,
        sdp: Option<String>,
        reply: ReInviteReply,
        toward: &CallLeg,
    ) {
        if m.awaiting_ack.is_some() {
            let _ = reply.send(Err(491));
            return;
        }
        let (tags, to_other, to_asker) = m.shape(from);
        let Some(offer) = sdp else {
            let (other_tag, asker_tag) = (tags.1, tags.0);
            let other_sdp = match from {
                Side::Phone => &m.device_sdp,
                Side::Device => &m.phone_sdp,
            };
            match self.ng.offer(&m.media, other_tag, other_sdp, &to_asker.set("to-tag", asker_tag)).await {
                Ok(ours) => {
                    tracing::info!(media = %m.media, ?from, "a re-INVITE without an offer; ours goes in the 200");
                    m.awaiting_ack = Some(from);
                    let _ = reply.send(Ok(ours));
                }
                Err(e) => {
                    tracing::warn!(error = %e, "rtpengine made no offer for a re-INVITE without one");
                    let _ = reply.send(Err(500));
                }
            }
            return;
        };
        if let Some(answer) = self.relay_reoffer(&m.media, tags, &offer, reply, toward, (to_other, &to_asker)).await {
            let (offerer, answerer) = match from {
                Side::Phone => (&mut m.phone_sdp, &mut m.device_sdp),
                Side::Device => (&mut m.device_sdp, &mut m.phone_sdp),
            };
            (*offerer, *answerer) = (offer, answer);
        }
    }

    /// The ACK of `side` to our 200 for its offer-less re-INVITE, with its answer for rtpengine. An ACK without
    /// an answer (RFC 3261 §14.2 requires one) leaves the media as it was: rtpengine takes that side's earlier
    /// SDP again.
    async fn answered_in_ack(&self, m: &mut DeviceMedia, side: Side, sdp: Option<String>) {
        if m.awaiting_ack != Some(side) {
            return;
        }
        m.awaiting_ack = None;
        let ((asker_tag, other_tag), to_other, _) = m.shape(side);
        let current = match side {
            Side::Phone => &mut m.phone_sdp,
            Side::Device => &mut m.device_sdp,
        };
        let answer = sdp.unwrap_or_else(|| {
            tracing::warn!(?side, "the ACK carries no answer to our offer; media as before");
            current.clone()
        });
        // The other side offered nothing new: what rtpengine says toward it now is not passed on.
        match self.ng.answer(&m.media, other_tag, asker_tag, &answer, &to_other).await {
            Ok(_) => *current = answer,
            Err(e) => tracing::warn!(error = %e, "rtpengine did not take the answer in an ACK"),
        }
    }

    /// One side's re-INVITE offer (`from_tag`) carried to the other (`toward`, `to_tag`) through rtpengine: its
    /// offer shaped by `legs.0` for the other side, the other side's answer by `legs.1` for it; returns that
    /// answer (the other side's SDP now). A refusal is passed back as it came, and leaves the media as it was.
    async fn relay_reoffer(
        &self,
        media: &str,
        (from_tag, to_tag): (&str, &str),
        offer: &str,
        reply: ReInviteReply,
        toward: &CallLeg,
        legs: (Leg, &Leg),
    ) -> Option<String> {
        let onward = match self.ng.offer(media, from_tag, offer, &legs.0.set("to-tag", to_tag)).await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "rtpengine did not take a re-INVITE's offer");
                let _ = reply.send(Err(500));
                return None;
            }
        };
        let answer = match reinvite(toward, &onward).await {
            Ok(resp) if resp.is_success() && !resp.body.is_empty() => String::from_utf8_lossy(&resp.body).into_owned(),
            Ok(resp) => {
                let _ = reply.send(Err(if resp.code >= 300 { resp.code } else { 500 }));
                return None;
            }
            Err(e) => {
                tracing::warn!(error = %e, "relaying a re-INVITE failed");
                let _ = reply.send(Err(500));
                return None;
            }
        };
        match self.ng.answer(media, from_tag, to_tag, &answer, legs.1).await {
            Ok(back) => {
                let _ = reply.send(Ok(back));
                Some(answer)
            }
            Err(e) => {
                tracing::warn!(error = %e, "rtpengine did not take a re-INVITE's answer");
                let _ = reply.send(Err(500));
                None
            }
        }
    }
}

/// One of the two parties of a call a device answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    /// The caller.
    Phone,
    /// The device that answered.
    Device,
}

/// The media of a call between the phone and a device: the branch's rtpengine call and what each side's SDP is
/// now (what the other is offered when one asks for an offer).
struct DeviceMedia {
    /// The branch's rtpengine call.
    media: String,
    /// How rtpengine presents media to the phone (plain RTP, or SDES-SRTP as it offered).
    toward_phone: Leg,
    phone_sdp: String,
    device_sdp: String,
    /// The side our offer went to in a 200 to its offer-less re-INVITE: its answer comes in its ACK.
    awaiting_ack: Option<Side>,
}

impl DeviceMedia {
    /// For an exchange `from` starts: (its rtpengine tag, the other's), how rtpengine presents media to the
    /// other side, and to `from`.
    fn shape(&self, from: Side) -> ((&'static str, &'static str), Leg, Leg) {
        match from {
            Side::Phone => ((SIP_TAG, DEVICE_TAG), Leg::plain_rtp(), self.toward_phone.clone()),
            Side::Device => ((DEVICE_TAG, SIP_TAG), self.toward_phone.clone(), Leg::plain_rtp()),
        }
    }
}

/// Passes a branch's events on, tagged with the branch. Once nobody listens (the call is over), a late answer
/// is hung up here.
async fn forward(i: usize, leg: CallLeg, mut events: LegEvents, tx: mpsc::UnboundedSender<(usize, LegEvent)>) {
    while let Some(ev) = events.recv().await {
        if let Err(mpsc::error::SendError((_, ev))) = tx.send((i, ev))
            && matches!(ev, LegEvent::Answered { .. })
        {
            let _ = leg.hangup().await;
        }
    }
}
