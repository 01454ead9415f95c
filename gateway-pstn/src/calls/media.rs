//! One call's media anchored at rtpengine (`calls.rtpengine`): every SDP that crosses the B2BUA is rewritten
//! through the ng protocol so that each side sends its RTP to rtpengine, never to the other side; the
//! session is deleted when the call ends, however it ends.
//!
//! The two parties are tagged by the leg they are on, not by their SIP tags: [`IN`] is the leg that came to
//! the gateway (the SIP bridge, or a carrier calling in), [`OUT`] the leg the gateway placed (a carrier's trunk,
//! or the SIP bridge). A failover to the next carrier answers for the same [`OUT`] party again, which is what
//! rtpengine expects of a re-answered offer. The side toward the gateway's INVITE gets plain RTP (what trunks
//! and the bridge speak); the side that called gets back what it offered (plain RTP, or SDES-SRTP).

use std::sync::atomic::{AtomicBool, Ordering};

use tincan_sip_core::rtpengine::{Leg, NgClient, NgError};

/// rtpengine's tag of the party on the leg that came in.
pub const IN: &str = "in";
/// rtpengine's tag of the party on the leg the gateway placed.
pub const OUT: &str = "out";

/// Which leg an SDP came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// The leg that came in.
    In,
    /// The leg the gateway placed.
    Out,
}

/// One call's session at rtpengine.
#[derive(Debug)]
pub struct Anchor {
    ng: NgClient,
    call_id: String,
    /// How the party that came in is presented: like its own offer.
    in_leg: Leg,
    /// Whether rtpengine may hold a session for the call (an offer was sent), so it must be deleted.
    opened: AtomicBool,
}

impl Anchor {
    /// The anchor of the call `call_id` (rtpengine's Call-ID), whose caller offered `offer`.
    pub fn new(ng: NgClient, call_id: String, offer: &str) -> Self {
        Anchor { ng, call_id, in_leg: Leg::sip_like(offer), opened: AtomicBool::new(false) }
    }

    /// rtpengine's Call-ID of the session.
    pub fn call_id(&self) -> &str {
        &self.call_id
    }

    fn leg_for(&self, side: Side) -> Leg {
        match side {
            Side::In => self.in_leg.clone(),
            Side::Out => Leg::plain_rtp(),
        }
    }

    /// An offer from `from`'s party, rewritten for the other party.
    pub async fn offer(&self, from: Side, sdp: &str) -> Result<String, NgError> {
        self.opened.store(true, Ordering::Release);
        let (tag, to, other) = tags(from);
        // The to-tag lets a re-offer from the party that answered find the dialog in reverse.
        let leg = self.leg_for(other).set("to-tag", to);
        self.ng.offer(&self.call_id, tag, sdp, &leg).await
    }

    /// The answer of the party other than `offerer`, rewritten for `offerer`.
    pub async fn answer(&self, offerer: Side, sdp: &str) -> Result<String, NgError> {
        let (from, to, _) = tags(offerer);
        self.ng.answer(&self.call_id, from, to, sdp, &self.leg_for(offerer)).await
    }

    /// Deletes the session (once an offer went out); a failure is logged, and rtpengine's own timeout for a
    /// session without media ends it later.
    pub async fn close(&self) {
        if !self.opened.swap(false, Ordering::AcqRel) {
            return;
        }
        if let Err(e) = self.ng.delete(&self.call_id).await {
            tracing::warn!(error = %e, call = %self.call_id, "rtpengine delete failed; its timeout will end it");
        }
    }
}

/// The offerer's tag, the answerer's tag, and the answerer's side.
fn tags(offerer: Side) -> (&'static str, &'static str, Side) {
    match offerer {
        Side::In => (IN, OUT, Side::Out),
        Side::Out => (OUT, IN, Side::In),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_side_offers_with_its_own_tag_to_the_other() {
        assert_eq!(tags(Side::In), (IN, OUT, Side::Out));
        assert_eq!(tags(Side::Out), (OUT, IN, Side::In));
    }
}
