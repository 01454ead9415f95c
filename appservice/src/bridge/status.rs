//! Message status in Matrix, after mautrix bridgev2: what became of a user's message on the network, shown in
//! its portal room.
//!
//! Every report is a `com.beeper.message_send_status` event from the DM partner's ghost (encrypted in an
//! encrypted room, like anything the ghost sends), an `m.reference` to the message:
//!
//! ```json
//! {"network": "sms", "m.relates_to": {"rel_type": "m.reference", "event_id": "$msg"},
//!  "status": "SUCCESS", "delivered_to_users": ["@sms_+447700900123:hs"]}
//! {"network": "sms", "m.relates_to": {…}, "status": "FAIL_PERMANENT",
//!  "reason": "m.foreign_network_error", "message": "undeliverable"}
//! ```
//!
//! Stock clients show none of that, so the signals they do show stay: a delivered message gets the ghost's read
//! receipt, a failure a notice `⚠ Not delivered: <reason>`. Reports come from two places: the connector
//! ([`crate::RemoteEventKind::MessageStatus`], through the remote queue, so they are durable and ordered with
//! the rest of the portal), and the core itself when the connector refused a message.

use super::{BridgeHandle, Result};
use crate::connector::{ConnectorError, MessageStatus};
use ruma::api::client::receipt::create_receipt;
use ruma::events::receipt::ReceiptThread;
use ruma::events::room::message::RoomMessageEventContent;
use ruma::serde::Raw;
use ruma::{EventId, OwnedTransactionId, RoomId, UserId};
use serde_json::{Value, json};

/// The event type of status reports.
pub const EVENT_TYPE: &str = "com.beeper.message_send_status";

/// One report, as the status event says it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Report {
    /// `SUCCESS`, `PENDING`, `FAIL_RETRIABLE` or `FAIL_PERMANENT`.
    status: &'static str,
    /// The machine-readable reason of a failure (`m.foreign_network_error`, `com.beeper.unsupported_event`…).
    reason: Option<&'static str>,
    /// For the user.
    message: Option<String>,
    /// Whether the recipient has it (then the ghost is in `delivered_to_users`).
    delivered: bool,
    /// The notice stock clients get (failures).
    notice: Option<String>,
}

impl Report {
    /// A connector's report.
    pub(crate) fn of(status: &MessageStatus) -> Self {
        match status {
            MessageStatus::Sent => {
                Self { status: "SUCCESS", reason: None, message: None, delivered: false, notice: None }
            }
            MessageStatus::Delivered => {
                Self { status: "SUCCESS", reason: None, message: None, delivered: true, notice: None }
            }
            MessageStatus::Retrying { reason } => Self {
                status: "PENDING",
                reason: Some("m.foreign_network_error"),
                message: Some(reason.clone()),
                delivered: false,
                notice: None,
            },
            MessageStatus::Failed { reason } => Self {
                status: "FAIL_PERMANENT",
                reason: Some("m.foreign_network_error"),
                message: Some(reason.clone()),
                delivered: false,
                notice: Some(format!("⚠ Not delivered: {reason}")),
            },
        }
    }

    /// The connector refused a message (its retries used up, for a temporary failure).
    pub(crate) fn of_error(e: &ConnectorError) -> Self {
        let (status, reason) = match e {
            ConnectorError::Temporary(_) => ("FAIL_RETRIABLE", "m.foreign_network_error"),
            ConnectorError::Rejected(_) => ("FAIL_PERMANENT", "m.foreign_network_error"),
            ConnectorError::Unsupported => ("FAIL_PERMANENT", "com.beeper.unsupported_event"),
        };
        let why = match e {
            ConnectorError::Temporary(m) | ConnectorError::Rejected(m) => m.clone(),
            ConnectorError::Unsupported => e.to_string(),
        };
        Self {
            status,
            reason: Some(reason),
            message: Some(why),
            delivered: false,
            notice: Some(format!("⚠ Not delivered: {e}")),
        }
    }

    /// The bridge could not decrypt the message in time.
    pub(crate) fn undecryptable() -> Self {
        Self {
            status: "FAIL_RETRIABLE",
            reason: Some("com.beeper.undecryptable_event"),
            message: Some("the bridge could not decrypt the message".into()),
            delivered: false,
            notice: Some(super::inbox::UNDECRYPTABLE_NOTICE.into()),
        }
    }

    /// The sender's client withheld the room key from the bridge (`code`: `m.unverified`, `m.blacklisted`…).
    pub(crate) fn withheld(code: &str) -> Self {
        Self {
            status: "FAIL_PERMANENT",
            reason: Some("com.beeper.undecryptable_event"),
            message: Some(format!("your client withheld the message's key from the bridge ({code})")),
            delivered: false,
            notice: Some(super::inbox::UNDECRYPTABLE_NOTICE.into()),
        }
    }

    /// The status event's content.
    pub(crate) fn content(&self, network: &str, event_id: &EventId, ghost: &UserId) -> Value {
        let mut c = json!({
            "network": network,
            "m.relates_to": {"rel_type": "m.reference", "event_id": event_id},
            "status": self.status,
        });
        if let Some(r) = self.reason {
            c["reason"] = json!(r);
        }
        if let Some(m) = &self.message {
            c["message"] = json!(m);
        }
        if self.delivered {
            c["delivered_to_users"] = json!([ghost]);
        }
        c
    }
}

/// Shows `report` on `event_id` in `room` as `ghost`: the status event, then the read receipt (delivered) or the
/// notice (failed). Transaction IDs are `txn` with a suffix, so that a replay sends nothing twice.
pub(crate) async fn show(
    bridge: &BridgeHandle,
    room: &RoomId,
    ghost: &UserId,
    event_id: &EventId,
    report: &Report,
    txn: &str,
) -> Result<()> {
    let content = report.content(bridge.0.connector.name(), event_id, ghost);
    let raw = Raw::from_json(
        serde_json::value::to_raw_value(&content).map_err(|e| super::BridgeError::Encode(e.to_string()))?,
    );
    let id = |what: &str| OwnedTransactionId::from(format!("{txn}.{what}"));
    super::remote::send_raw(bridge, room, ghost, id("s"), EVENT_TYPE, raw).await?;
    if report.delivered {
        let mut req = create_receipt::v3::Request::new(
            room.to_owned(),
            create_receipt::v3::ReceiptType::Read,
            event_id.to_owned(),
        );
        req.thread = ReceiptThread::Unthreaded;
        bridge.0.hs.send(req, Some(ghost)).await?;
    }
    if let Some(text) = &report.notice {
        super::remote::send(bridge, room, ghost, id("n"), &RoomMessageEventContent::notice_plain(text)).await?;
    }
    bridge.0.metrics.inc(&bridge.0.metrics.statuses);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_read_as_bridgev2_message_statuses() {
        let ev: &EventId = "$m:hs.test".try_into().unwrap();
        let ghost: &UserId = "@sms_+447700900123:hs.test".try_into().unwrap();
        assert_eq!(
            Report::of(&MessageStatus::Delivered).content("sms", ev, ghost),
            json!({"network": "sms", "m.relates_to": {"rel_type": "m.reference", "event_id": "$m:hs.test"},
                   "status": "SUCCESS", "delivered_to_users": ["@sms_+447700900123:hs.test"]})
        );
        assert_eq!(
            Report::of(&MessageStatus::Sent).content("sms", ev, ghost),
            json!({"network": "sms", "m.relates_to": {"rel_type": "m.reference", "event_id": "$m:hs.test"},
                   "status": "SUCCESS"})
        );
        let failed = Report::of(&MessageStatus::Failed { reason: "undeliverable".into() });
        assert_eq!(
            failed.content("sms", ev, ghost),
            json!({"network": "sms", "m.relates_to": {"rel_type": "m.reference", "event_id": "$m:hs.test"},
                   "status": "FAIL_PERMANENT", "reason": "m.foreign_network_error", "message": "undeliverable"})
        );
        assert_eq!(failed.notice.as_deref(), Some("⚠ Not delivered: undeliverable"));
        let retrying = Report::of(&MessageStatus::Retrying { reason: "throttled".into() });
        assert_eq!((retrying.status, retrying.notice), ("PENDING", None));
        let temporary = Report::of_error(&ConnectorError::Temporary("SIP 503 Service Unavailable".into()));
        assert_eq!(temporary.status, "FAIL_RETRIABLE");
        assert_eq!(temporary.message.as_deref(), Some("SIP 503 Service Unavailable"));
        let unsupported = Report::of_error(&ConnectorError::Unsupported);
        assert_eq!((unsupported.status, unsupported.reason), ("FAIL_PERMANENT", Some("com.beeper.unsupported_event")));
        assert_eq!(Report::undecryptable().reason, Some("com.beeper.undecryptable_event"));
    }
}
