//! Calls between Matrix users (`m.call.*`) and SIP (INVITE dialogs), media through rtpengine.

use tincan_appservice::BridgeHandle;
use tincan_sip_core::stack::{CallLeg, LegEvents};

/// The call side of the bridge.
#[derive(Debug, Default)]
pub struct Calls {}

impl Calls {
    /// Starts the call side (cleans up what a crash left at rtpengine).
    pub async fn start(&self, _bridge: BridgeHandle) {}

    /// A call arrived from SIP.
    pub fn incoming(self: std::sync::Arc<Self>, leg: CallLeg, _events: LegEvents) {
        let _ = leg.reject(480, "Temporarily Unavailable");
    }
}
