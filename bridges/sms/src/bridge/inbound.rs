//! SMS → Matrix: a message to one of the provider's numbers goes to the DM of the user holding that number with
//! the sender's ghost. A part of a long message is stored before the SMSC is answered and waits for its
//! siblings in the reassembler (rebuilt from the store at start); after `sms.reassembly.timeout_secs` what came
//! is delivered with a note naming the missing parts. STOP and START are recorded per (sender, our number) and
//! the user is told.

use super::Inner;
use super::status::notice;
use crate::link::{HandlerError, Inbound, InboundHandler};
use crate::mms::{FetchError, IncomingMedia, IncomingMms};
use crate::protocol::keywords::{Keyword, country_of};
use crate::protocol::reassembly::{InboundPart, Message};
use crate::protocol::udh::{Concat, Reference};
use crate::store::{StoreError, StoredPart};
use async_trait::async_trait;
use ruma::OwnedUserId;
use std::sync::Arc;
use std::time::Duration;
use tincan_appservice::{
    Media, MediaKind, PortalKey, RemoteChatId, RemoteEvent, RemoteEventKind, RemoteMessageId, RemoteUserId,
};

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
        opt_keyword(b, handle, &key, &sender, &id, k, &m.from, &m.to, &m.text).await?;
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
    #[error("the MMS carrier: {0}")]
    Carrier(String),
}

/// Records a STOP or START `text` from `from` to our number `to` and tells the user (a notice `{id}.kw`).
#[allow(clippy::too_many_arguments)]
async fn opt_keyword(
    b: &Inner,
    handle: &tincan_appservice::BridgeHandle,
    key: &PortalKey,
    sender: &RemoteUserId,
    id: &str,
    k: Keyword,
    from: &str,
    to: &str,
    text: &str,
) -> Result<(), DeliverError> {
    let mut tx = b.store.begin().await?;
    let text = match k {
        Keyword::Stop => {
            tx.opt_outs().stop(from, to, text.trim(), b.now_ms() as i64).await?;
            b.metrics.inc(&b.metrics.opt_outs);
            format!(
                "ℹ {from} opted out (\"{}\"): no SMS will be sent to them from {to} until they send START",
                text.trim()
            )
        }
        Keyword::Start => {
            tx.opt_outs().start(from, to).await?;
            format!("ℹ {from} opted in again: SMS from {to} reach them")
        }
    };
    tx.commit().await?;
    notice(handle, key, sender, &format!("{id}.kw"), &text).await?;
    Ok(())
}

/// An incoming message of the MMS carrier (already verified) into the DM of the user holding its number: each
/// attachment fetched and queued as `m.image`/`m.audio`/`m.video`/`m.file` (the text as the first one's
/// caption), all in one durable step under ids made of the carrier's message id, so a webhook sent again is
/// not doubled. An attachment the carrier cannot give, or one larger than the core's `media.max_bytes`,
/// becomes a ⚠ notice; one the carrier could not give *now* fails the whole message (the carrier retries).
pub(crate) async fn mms(b: &Inner, m: IncomingMms) -> Result<(), DeliverError> {
    let Some(handle) = b.handle.get() else { return Err(DeliverError::NotStarted) };
    let mut tx = b.store.begin().await?;
    let holder = tx.numbers().holder(&m.to).await?;
    drop(tx);
    let Some(holder) = holder.and_then(|h| OwnedUserId::try_from(h).ok()) else {
        b.metrics.inc(&b.metrics.unrouted);
        tracing::warn!(to = %m.to, "MMS to a number nobody holds; dropped");
        return Ok(());
    };
    let key = PortalKey { receiver: holder, chat: RemoteChatId::new(m.from.clone()) };
    let sender = RemoteUserId::new(m.from.clone());
    let event = |kind| RemoteEvent { portal: key.clone(), sender: sender.clone(), kind };
    let mut events = Vec::new();
    let mut caption = Some(m.body.clone()).filter(|c| !c.trim().is_empty());
    for (i, item) in m.media.iter().enumerate() {
        let id = format!("mms.{}.{i}", m.id);
        match carrier_media(b, item).await? {
            Ok(media) => events.push(event(RemoteEventKind::Media {
                id: RemoteMessageId::new(id),
                kind: media_kind(media.mimetype.as_deref()),
                media: Media { filename: file_name(&m.id, i, media.mimetype.as_deref()), ..media },
                caption: caption.take(),
            })),
            Err(why) => events.push(event(RemoteEventKind::Message {
                id: RemoteMessageId::new(id),
                body: format!("⚠ an attachment of this MMS did not come through: {why}"),
            })),
        }
    }
    if let Some(text) = caption.clone() {
        let id = format!("mms.{}", m.id);
        events.push(event(RemoteEventKind::Message { id: RemoteMessageId::new(id), body: text }));
    }
    handle.queue_remote_events(events).await?;
    b.metrics.inc(&b.metrics.messages_in);
    if let Some(k) = b.config.opt_out.keywords.classify(country_of(&m.from).as_deref(), &m.body) {
        opt_keyword(b, handle, &key, &sender, &format!("mms.{}", m.id), k, &m.from, &m.to, &m.body).await?;
    }
    Ok(())
}

/// One attachment from the carrier: the media, or why it will not come (`Err` of the outer result: try later).
async fn carrier_media(b: &Inner, item: &IncomingMedia) -> Result<Result<Media, String>, DeliverError> {
    let (Some(carrier), Some(handle)) = (b.mms.as_ref(), b.handle.get()) else {
        return Err(DeliverError::NotStarted);
    };
    let max = handle.media_max_bytes();
    match carrier.fetch_media(&item.url, max).await {
        Ok((mimetype, data)) => {
            Ok(Ok(Media { mimetype: mimetype.or_else(|| item.content_type.clone()), filename: String::new(), data }))
        }
        Err(FetchError::Temporary(why)) => Err(DeliverError::Carrier(why)),
        Err(e @ (FetchError::TooLarge { .. } | FetchError::Refused(_))) => {
            tracing::warn!(url = %item.url, error = %e, "an MMS attachment was not fetched");
            Ok(Err(match e {
                FetchError::TooLarge { max } => {
                    format!("it is larger than this bridge's limit of {} MB", max.div_ceil(1024 * 1024))
                }
                other => other.to_string(),
            }))
        }
    }
}

/// The `msgtype` for a MIME type.
fn media_kind(mimetype: Option<&str>) -> MediaKind {
    match mimetype.and_then(|t| t.split('/').next()) {
        Some("image") => MediaKind::Image,
        Some("audio") => MediaKind::Audio,
        Some("video") => MediaKind::Video,
        _ => MediaKind::File,
    }
}

/// A file name for attachment `i` of message `id` (carriers give none): `{id}-{i}.{extension}`.
fn file_name(id: &str, i: usize, mimetype: Option<&str>) -> String {
    let sub = mimetype.and_then(|t| t.split('/').nth(1)).unwrap_or_default();
    let ext = match sub {
        "jpeg" | "pjpeg" => "jpg",
        "plain" => "txt",
        "vcard" | "x-vcard" => "vcf",
        "quicktime" => "mov",
        s if !s.is_empty() && s.len() <= 8 && s.bytes().all(|c| c.is_ascii_alphanumeric()) => s,
        _ => "bin",
    };
    format!("{id}-{i}.{ext}")
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
