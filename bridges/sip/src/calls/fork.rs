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
//! - once a device has the call it is a SIP↔SIP call through rtpengine: BYE and re-INVITEs (hold, resume) are
//!   carried between the phone and the device.

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
}

/// The device branches of one call and their events, tagged with the branch.
pub(super) struct Forks {
    branches: HashMap<usize, Branch>,
    events: mpsc::UnboundedReceiver<(usize, LegEvent)>,
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
    /// Sends an INVITE to each live device of `number` for the phone's `invite` with its `offer`.
    pub(super) async fn ring_devices(&self, number: &str, invite: &SipRequest, offer: &str) -> Forks {
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
                    branches.insert(i, Branch { device: b.username, leg, media, ringing: true });
                }
                Err(e) => {
                    tracing::warn!(error = %e, device = %b.username, "INVITE to a device failed");
                    self.close_media(&media).await;
                }
            }
        }
        Forks { branches, events }
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
        let Some(b) = forks.branches.remove(&i) else { return DeviceOutcome::Nothing };
        match event {
            LegEvent::Answered { sdp } if b.ringing => {
                let for_phone = match sdp {
                    Some(s) => self.ng.answer(&b.media, SIP_TAG, DEVICE_TAG, &s, &Leg::sip_like(offer)).await.ok(),
                    None => None,
                };
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
            | LegEvent::Confirmed
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
        let toward_phone = Leg::sip_like(offer);
        loop {
            tokio::select! {
                ev = phone_events.recv() => match ev {
                    Some(LegEvent::ReInvite { sdp, reply }) => {
                        let tags = (SIP_TAG, DEVICE_TAG);
                        self.relay_reoffer(&device.media, tags, sdp, reply, &device.leg, (Leg::plain_rtp(), &toward_phone))
                            .await;
                    }
                    Some(LegEvent::Confirmed | LegEvent::Progress { .. }) => {}
                    _ => {
                        let _ = device.leg.hangup().await;
                        break;
                    }
                },
                ev = forks.events.recv() => match ev {
                    Some((i, LegEvent::ReInvite { sdp, reply })) if i == winner => {
                        let tags = (DEVICE_TAG, SIP_TAG);
                        self.relay_reoffer(&device.media, tags, sdp, reply, phone, (toward_phone.clone(), &Leg::plain_rtp()))
                            .await;
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

    /// One side's re-INVITE (`from_tag`) carried to the other (`toward`, `to_tag`) through rtpengine: its offer
    /// shaped by `legs.0` for the other side, the other side's answer by `legs.1` for it. A refusal is passed
    /// back as it came, and leaves the media as it was.
    async fn relay_reoffer(
        &self,
        media: &str,
        (from_tag, to_tag): (&str, &str),
        sdp: Option<String>,
        reply: ReInviteReply,
        toward: &CallLeg,
        legs: (Leg, &Leg),
    ) {
        let Some(offer) = sdp else {
            // A re-INVITE without an offer would need ours in the 200 and its answer in the ACK.
            let _ = reply.send(Err(488));
            return;
        };
        let onward = match self.ng.offer(media, from_tag, &offer, &legs.0.set("to-tag", to_tag)).await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "rtpengine did not take a re-INVITE's offer");
                let _ = reply.send(Err(500));
                return;
            }
        };
        let answer = match reinvite(toward, &onward).await {
            Ok(resp) if resp.is_success() && !resp.body.is_empty() => String::from_utf8_lossy(&resp.body).into_owned(),
            Ok(resp) => {
                let _ = reply.send(Err(if resp.code >= 300 { resp.code } else { 500 }));
                return;
            }
            Err(e) => {
                tracing::warn!(error = %e, "relaying a re-INVITE failed");
                let _ = reply.send(Err(500));
                return;
            }
        };
        match self.ng.answer(media, from_tag, to_tag, &answer, legs.1).await {
            Ok(back) => {
                let _ = reply.send(Ok(back));
            }
            Err(e) => {
                tracing::warn!(error = %e, "rtpengine did not take a re-INVITE's answer");
                let _ = reply.send(Err(500));
            }
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
