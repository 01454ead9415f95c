//! What happened to sent messages, shown in Matrix, and their charges closed.
//!
//! A worker reads the messages whose state changed since last reported (the outbox keeps the last reported
//! state, so a restart loses no report and repeats none) and reports each to the core's message status
//! ([`BridgeHandle::report_message_status`]): accepted by an SMSC is `Sent`, a delivery receipt `Delivered`
//! (the core adds the ghost's read receipt), a refusal or an undeliverable receipt `Failed` with the carrier's
//! reason (the core adds the ⚠ notice). Held charges of messages that left the
//! queue are settled for the segments an SMSC accepted, or released when none was; held MMS charges are
//! settled once the carrier took the MMS, released when it refused it.

use super::Inner;
use super::outbound::key_of;
use crate::store::{BillingState, MessageState, MmsState, StoreError, StoredMessage};
use std::sync::Arc;
use std::time::Duration;
use tincan_appservice::{
    BridgeHandle, MessageStatus, PortalKey, RemoteChatId, RemoteEvent, RemoteEventKind, RemoteMessageId, RemoteUserId,
};
use tokio::sync::Notify;

/// Posts `text` into the portal as a message of the ghost, with a stable `id` (the core sends an id once).
/// The core has no notice or bot message for connectors yet: a notice starts with ℹ or ⚠.
pub(crate) async fn notice(
    handle: &BridgeHandle,
    portal: &PortalKey,
    ghost: &RemoteUserId,
    id: &str,
    text: &str,
) -> Result<(), tincan_appservice::BridgeError> {
    handle
        .queue_remote_event(RemoteEvent {
            portal: portal.clone(),
            sender: ghost.clone(),
            kind: RemoteEventKind::Message { id: RemoteMessageId::new(id), body: text.to_owned() },
        })
        .await
}

/// Why a message failed, as its status says (the core's notice reads `⚠ Not delivered: <this>`).
pub fn failure_reason(reason: Option<&str>) -> String {
    reason.unwrap_or("the carrier gave no reason").to_owned()
}

/// Runs until the bridge stops: reports states and closes charges whenever the links record answers.
pub(crate) async fn run(b: Arc<Inner>, changed: Arc<Notify>) {
    loop {
        let wait = changed.notified();
        let mut idle = Duration::from_secs(1);
        if let Err(e) = report(&b).await {
            tracing::error!(error = %e, "reporting message states failed; retrying");
            idle = Duration::from_secs(2);
        }
        if let Err(e) = bill(&b).await {
            tracing::warn!(error = %e, "closing charges failed; retrying");
            idle = Duration::from_secs(5);
        }
        tokio::select! {
            _ = wait => {}
            _ = tokio::time::sleep(idle) => {}
        }
    }
}

#[derive(Debug, thiserror::Error)]
enum StatusError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Core(#[from] tincan_appservice::BridgeError),
    #[error(transparent)]
    Billing(#[from] crate::billing::BillingError),
    #[error("the bridge has not started")]
    NotStarted,
}

async fn report(b: &Inner) -> Result<(), StatusError> {
    let handle = b.handle.get().ok_or(StatusError::NotStarted)?;
    loop {
        let mut tx = b.store.begin().await?;
        let batch = tx.outbox().unreported(200).await?;
        drop(tx);
        if batch.is_empty() {
            return Ok(());
        }
        for m in batch {
            show(b, handle, &m).await?;
            let mut tx = b.store.begin().await?;
            tx.outbox().mark_reported(m.id, m.state).await?;
            tx.commit().await?;
        }
    }
}

async fn show(b: &Inner, handle: &BridgeHandle, m: &StoredMessage) -> Result<(), StatusError> {
    let Ok(receiver) = ruma::OwnedUserId::try_from(m.sender.as_str()) else { return Ok(()) };
    let Ok(event_id) = ruma::OwnedEventId::try_from(m.event_id.as_str()) else { return Ok(()) };
    let portal = PortalKey { receiver, chat: RemoteChatId::new(m.destination.clone()) };
    let status = match m.state {
        MessageState::Queued => return Ok(()),
        MessageState::Submitted => MessageStatus::Sent,
        MessageState::Delivered => {
            b.metrics.inc(&b.metrics.delivered);
            MessageStatus::Delivered
        }
        MessageState::Failed => {
            b.metrics.inc(&b.metrics.failed);
            MessageStatus::Failed { reason: failure_reason(m.reason.as_deref()) }
        }
    };
    handle.report_message_status(&portal, &event_id, status).await?;
    Ok(())
}

async fn bill(b: &Inner) -> Result<(), StatusError> {
    let mut tx = b.store.begin().await?;
    let due = tx.outbox().billing_due(100).await?;
    drop(tx);
    for m in due {
        let Some(hold) = &m.hold else { continue };
        let key = key_of(&m.event_id);
        let state = if m.submitted_parts > 0 {
            let unit = m.unit_price.as_deref().unwrap_or("0");
            b.billing.settle(hold, m.submitted_parts, unit, &format!("sms.settle.{key}")).await?;
            BillingState::Settled
        } else {
            b.billing.release(hold, &format!("sms.release.{key}")).await?;
            BillingState::Released
        };
        let mut tx = b.store.begin().await?;
        tx.outbox().set_billing(m.id, state).await?;
        tx.commit().await?;
    }
    // MMS: one message, charged once the carrier took it, given back when it refused it.
    let mut tx = b.store.begin().await?;
    let due = tx.mms().billing_due(100).await?;
    drop(tx);
    for m in due {
        let Some(hold) = &m.hold else { continue };
        let key = key_of(&m.event_id);
        let state = if m.state == MmsState::Sent {
            b.billing.settle(hold, 1, "", &format!("mms.settle.{key}")).await?;
            BillingState::Settled
        } else {
            b.billing.release(hold, &format!("mms.release.{key}")).await?;
            BillingState::Released
        };
        let mut tx = b.store.begin().await?;
        tx.mms().set_billing(&m.event_id, state).await?;
        tx.commit().await?;
    }
    Ok(())
}
