//! SMS → Matrix: a message to one of the provider's numbers goes to the DM of the user holding that number with
//! the sender's ghost. A part of a long message is stored before the SMSC is answered and waits for its
//! siblings in the reassembler (rebuilt from the store at start); after `sms.reassembly.timeout_secs` what came
//! is delivered with a note naming the missing parts. STOP and START are recorded per (sender, our number) and
//! the user is told.

use super::Inner;
use super::status::notice;
use crate::link::{HandlerError, Inbound, InboundHandler};
use crate::protocol::keywords::{Keyword, country_of};
use crate::protocol::reassembly::{InboundPart, Message};
use crate::protocol::udh::{Concat, Reference};
use crate::store::{StoreError, StoredPart};
use async_trait::async_trait;
use ruma::OwnedUserId;
use std::sync::Arc;
use std::time::Duration;
use tincan_appservice::{PortalKey, RemoteChatId, RemoteEvent, RemoteEventKind, RemoteMessageId, RemoteUserId};

/// The link's handler for inbound messages.
#[derive(Debug)]
pub(crate) struct Handler(pub(crate) Arc<Inner>);

fn failed(e: impl std::fmt::Display) -> HandlerError {
    HandlerError(e.to_string())
}

#[async_trait]
impl InboundHandler for Handler {
    async fn handle(&self, smsc: &str, inbound: Inbound) -> Result<(), HandlerError> {
        let Inbound::Message(part) = inbound else { return Ok(()) };
        let b = &self.0;
        b.metrics.inc(&b.metrics.parts_in);
        let mut tx = b.store.begin().await.map_err(failed)?;
        let holder = tx.numbers().holder(&part.to).await.map_err(failed)?;
        drop(tx);
        let Some(holder) = holder.and_then(|h| OwnedUserId::try_from(h).ok()) else {
            // Nobody holds the number: acknowledge (the SMSC would resend forever) and count it.
            b.metrics.inc(&b.metrics.unrouted);
            tracing::warn!(%smsc, to = %part.to, "SMS to a number nobody holds; dropped");
            return Ok(());
        };
        let mut reassembler = b.reassembler.lock().await;
        let long = part.concat.filter(|c| c.total > 1);
        if let Some(c) = long {
            let mut tx = b.store.begin().await.map_err(failed)?;
            let new = tx.inbound().add_part(&stored(&part, c)).await.map_err(failed)?;
            tx.commit().await.map_err(failed)?;
            if !new {
                return Ok(());
            }
        }
        for message in reassembler.push(part) {
            deliver(b, &holder, message).await.map_err(failed)?;
        }
        Ok(())
    }
}

fn stored(part: &InboundPart, c: Concat) -> StoredPart {
    StoredPart {
        source: part.from.clone(),
        destination: part.to.clone(),
        reference: c.reference.value(),
        total: c.total,
        seq: c.seq,
        coding: part.coding,
        payload: part.payload.clone(),
        received_at: part.received_ms as i64,
    }
}

/// A message, complete or timed out, into the holder's DM with the sender; a long message's stored parts are
/// forgotten once it is queued.
async fn deliver(b: &Inner, holder: &OwnedUserId, m: Message) -> Result<(), DeliverError> {
    let Some(handle) = b.handle.get() else { return Err(DeliverError::NotStarted) };
    let key = PortalKey { receiver: holder.clone(), chat: RemoteChatId::new(m.from.clone()) };
    let sender = RemoteUserId::new(m.from.clone());
    // A stable id: the core sends a message with one id once, so a redelivery after a crash is not doubled.
    let id = match m.reference {
        Some(r) => {
            let mut tx = b.store.begin().await?;
            let first = tx.inbound().first_part_id(&m.from, &m.to, r, m.total).await?.unwrap_or_default();
            format!("in.{}.{}.{first}", m.to, m.from)
        }
        None => format!("in.{}.{}.{}.{:08x}", m.to, m.from, m.first_received_ms, fnv(&m.text)),
    };
    let mut body = m.text.clone();
    if !m.is_complete() {
        b.metrics.inc(&b.metrics.partial_in);
        let missing: Vec<String> = m.missing.iter().map(u8::to_string).collect();
        body.push_str(&format!(
            "\n\n⚠ part{} {} of {} did not arrive",
            if missing.len() > 1 { "s" } else { "" },
            missing.join(", "),
            m.total
        ));
    }
    let keyword = if m.is_complete() {
        b.config.opt_out.keywords.classify(country_of(&m.from).as_deref(), &m.text)
    } else {
        None
    };
    handle
        .queue_remote_event(RemoteEvent {
            portal: key.clone(),
            sender: sender.clone(),
            kind: RemoteEventKind::Message { id: RemoteMessageId::new(id.clone()), body },
        })
        .await?;
    b.metrics.inc(&b.metrics.messages_in);
    if let Some(k) = keyword {
        let mut tx = b.store.begin().await?;
        let text = match k {
            Keyword::Stop => {
                tx.opt_outs().stop(&m.from, &m.to, m.text.trim(), b.now_ms() as i64).await?;
                b.metrics.inc(&b.metrics.opt_outs);
                format!(
                    "ℹ {} opted out (\"{}\"): no SMS will be sent to them from {} until they send START",
                    m.from,
                    m.text.trim(),
                    m.to
                )
            }
            Keyword::Start => {
                tx.opt_outs().start(&m.from, &m.to).await?;
                format!("ℹ {} opted in again: SMS from {} reach them", m.from, m.to)
            }
        };
        tx.commit().await?;
        notice(handle, &key, &sender, &format!("{id}.kw"), &text).await?;
    }
    if let Some(r) = m.reference {
        let mut tx = b.store.begin().await?;
        tx.inbound().remove(&m.from, &m.to, r, m.total).await?;
        tx.commit().await?;
    }
    Ok(())
}

fn fnv(s: &str) -> u32 {
    s.bytes().fold(0x811c_9dc5u32, |h, b| (h ^ u32::from(b)).wrapping_mul(0x0100_0193))
}

/// Why an inbound message could not be handed to the core.
#[derive(Debug, thiserror::Error)]
pub(crate) enum DeliverError {
    #[error("the bridge has not started")]
    NotStarted,
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Core(#[from] tincan_appservice::BridgeError),
}

/// At start: the stored parts back into the reassembler (messages that completed before a crash go out now).
pub(crate) async fn restore(b: &Arc<Inner>) -> Result<(), DeliverError> {
    let mut tx = b.store.begin().await?;
    let parts = tx.inbound().parts().await?;
    drop(tx);
    let mut reassembler = b.reassembler.lock().await;
    for p in parts {
        let part = InboundPart {
            from: p.source,
            to: p.destination,
            coding: p.coding,
            // Stored as a number; the width does not matter for grouping.
            concat: Some(Concat { reference: Reference::Sixteen(p.reference), total: p.total, seq: p.seq }),
            payload: p.payload,
            received_ms: p.received_at as u64,
        };
        for m in reassembler.push(part) {
            redeliver(b, m).await?;
        }
    }
    Ok(())
}

/// Delivers a message rebuilt from stored parts to whoever holds its number now.
async fn redeliver(b: &Inner, m: Message) -> Result<(), DeliverError> {
    let mut tx = b.store.begin().await?;
    let holder = tx.numbers().holder(&m.to).await?;
    drop(tx);
    match holder.and_then(|h| OwnedUserId::try_from(h).ok()) {
        Some(holder) => deliver(b, &holder, m).await,
        None => {
            let mut tx = b.store.begin().await?;
            if let Some(r) = m.reference {
                tx.inbound().remove(&m.from, &m.to, r, m.total).await?;
            }
            Ok(tx.commit().await?)
        }
    }
}

/// Delivers long messages whose missing parts did not come in time; runs until the bridge stops.
pub(crate) async fn expire(b: Arc<Inner>) {
    loop {
        let (due, wait) = {
            let mut r = b.reassembler.lock().await;
            let now = b.now_ms();
            let due = r.expire(now);
            (due, r.next_deadline_ms().map_or(1_000, |d| d.saturating_sub(now).clamp(10, 1_000)))
        };
        for m in due {
            if let Err(e) = redeliver(&b, m).await {
                tracing::error!(error = %e, "delivering a timed-out long message failed; it is retried at the next start");
            }
        }
        tokio::time::sleep(Duration::from_millis(wait)).await;
    }
}
