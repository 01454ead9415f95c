//! Matrix → SMS: one user's messages into the outbox, after every check that can refuse them.

use super::{Inner, commands};
use crate::billing::BillingError;
use crate::mms::{MmsError, OutgoingMms};
use crate::protocol::segment::SegmentError;
use crate::protocol::udh::Reference;
use crate::store::{MmsAttempt, MmsState, NewMessage, NewMms, NewSegment, StoreError, StoredMms};
use async_trait::async_trait;
use ruma::OwnedUserId;
use std::sync::Arc;
use tincan_appservice::{ConnectorError, MatrixMessage, NetworkApi, PortalRef, RemoteMessageId};

/// The remote id of an outbox message: what receipts in Matrix point at.
pub(crate) fn remote_id(id: crate::store::MessageId) -> RemoteMessageId {
    RemoteMessageId::new(format!("sms.{id}"))
}

/// Why a message is refused before anything is sent or charged.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// The portal's remote user is not a phone number.
    #[error("{0} is not a phone number")]
    NotANumber(String),
    /// A premium-rate destination.
    #[error("{0} is a premium-rate number; this provider does not send SMS there")]
    Premium(String),
    /// A blocked destination.
    #[error("SMS to {0} are blocked by this provider")]
    Blocked(String),
    /// The recipient sent STOP.
    #[error("{to} replied STOP to {from}: they get no more SMS from this number (they can send START)")]
    OptedOut {
        /// The recipient.
        to: String,
        /// The sender number.
        from: String,
    },
    /// No sender number is left in the pool.
    #[error("no phone number is free for you to send from; ask the provider")]
    NoNumber,
    /// Too many messages.
    #[error("sending too fast: try again in {0} s")]
    RateLimited(u64),
    /// The text cannot go as SMS.
    #[error("{0}")]
    Text(#[from] SegmentError),
    /// Not a kind of message SMS can carry.
    #[error("{0} messages cannot be sent as SMS")]
    Unsupported(String),
    /// The charge was refused.
    #[error("{0}")]
    Billing(BillingError),
}

fn has_prefix(list: &[String], number: &str) -> bool {
    list.iter().any(|p| number.starts_with(p.as_str()))
}

/// Refuses blocked and premium destinations (before anything is reserved).
pub(crate) fn check_destination(config: &crate::config::SmsConfig, to: &str) -> Result<(), Refusal> {
    if !super::is_phone_number(to) {
        return Err(Refusal::NotANumber(to.to_owned()));
    }
    if has_prefix(&config.prefixes.premium, to) {
        return Err(Refusal::Premium(to.to_owned()));
    }
    if has_prefix(&config.prefixes.blocked, to) {
        return Err(Refusal::Blocked(to.to_owned()));
    }
    Ok(())
}

/// The text of a Matrix message as SMS.
fn text_of(message: &MatrixMessage) -> Result<String, Refusal> {
    match message.msgtype.as_str() {
        "m.text" | "m.notice" => Ok(message.body.clone()),
        "m.emote" => Ok(format!("* {}", message.body)),
        other => Err(Refusal::Unsupported(other.trim_start_matches("m.").to_owned())),
    }
}

/// A concatenation reference from the event id: the same on a replay, spread over its 256 values.
fn reference_of(event_id: &str) -> Reference {
    let h = event_id.bytes().fold(0x811c_9dc5u32, |h, b| (h ^ u32::from(b)).wrapping_mul(0x0100_0193));
    Reference::Eight((h >> 24) as u8 ^ h as u8)
}

impl Inner {
    /// What the outbox knows before a message is taken, in one transaction: whether the event is stored
    /// already, the number `user` sends to `to` from (the conversation's, else the user's default — one is
    /// assigned from the pool on first use — kept for the conversation), and whether `to` stopped it.
    pub(crate) async fn prepare(&self, event: &str, user: &str, to: &str) -> Result<Prepared, StoreError> {
        let mut tx = self.store.begin().await?;
        if let Some(m) = tx.outbox().by_event(event).await? {
            return Ok(Prepared::Stored(m.id));
        }
        let from = match tx.numbers().conversation(user, to).await? {
            Some(n) => n,
            None => {
                let held = tx.numbers().held_by(user).await?;
                let number = match held.iter().find(|h| h.is_default).or(held.first()) {
                    Some(h) => h.number.clone(),
                    None => match tx.numbers().assign(user, self.now_ms() as i64).await? {
                        Some(n) => n,
                        None => return Ok(Prepared::NoNumber),
                    },
                };
                tx.numbers().set_conversation(user, to, &number).await?;
                number
            }
        };
        let stopped = tx.opt_outs().is_stopped(to, &from).await?;
        tx.commit().await?;
        Ok(if stopped { Prepared::Stopped(from) } else { Prepared::From(from) })
    }

    fn prefix<'a>(&self, to: &'a str) -> &'a str {
        let digits = &to[1..];
        &digits[..digits.len().min(self.config.limits.prefix_digits)]
    }

    fn give_back_rate(&self, user: &str, to: &str, segments: u32) {
        self.per_user.lock().expect("not poisoned").give_back(user, segments);
        self.per_prefix.lock().expect("not poisoned").give_back(self.prefix(to), segments);
    }

    fn take_rate(&self, user: &str, to: &str, segments: u32) -> Result<(), Refusal> {
        let now = self.now_ms();
        let prefix = self.prefix(to);
        let mut per_user = self.per_user.lock().expect("not poisoned");
        per_user.take(user, segments, now).map_err(|ms| Refusal::RateLimited(ms.div_ceil(1000)))?;
        let mut per_prefix = self.per_prefix.lock().expect("not poisoned");
        if let Err(ms) = per_prefix.take(prefix, segments, now) {
            per_user.give_back(user, segments);
            return Err(Refusal::RateLimited(ms.div_ceil(1000)));
        }
        Ok(())
    }
}

/// What [`Inner::prepare`] found.
pub(crate) enum Prepared {
    /// The event is in the outbox already.
    Stored(crate::store::MessageId),
    /// No number is free for the user.
    NoNumber,
    /// The recipient stopped messages from this number.
    Stopped(String),
    /// Send from this number.
    From(String),
}

/// One user's side of the network.
#[derive(Debug)]
pub struct SmsApi {
    pub(crate) bridge: Arc<Inner>,
    pub(crate) user: OwnedUserId,
}

fn temporary(e: impl std::fmt::Display) -> ConnectorError {
    ConnectorError::Temporary(e.to_string())
}

impl SmsApi {
    /// Stores the message after every check; `Ok(None)` for a command (answered, not sent).
    async fn send(&self, portal: &PortalRef, message: &MatrixMessage) -> Result<RemoteMessageId, ConnectorError> {
        let b = &self.bridge;
        let user = self.user.as_str();
        let event = message.event_id.as_str();
        let to = portal.other_user.as_str();
        let text = match text_of(message) {
            Ok(text) => text,
            Err(Refusal::Unsupported(kind)) if kind == "image" && b.mms.is_some() => {
                return self.send_mms(portal, message).await;
            }
            Err(Refusal::Unsupported(kind)) if kind == "image" && b.config.mms.images_as_links => {
                let Some(media) = &message.media else { return Err(refused(Refusal::Unsupported(kind))) };
                let mut rng = <rand::rngs::StdRng as rand::SeedableRng>::from_os_rng();
                let link = super::links::store(&b.config.mms, &mut rng, media.mimetype.as_deref(), &media.data)
                    .map_err(|e| ConnectorError::Temporary(format!("keeping the image for its link: {e}")))?;
                b.metrics.inc(&b.metrics.image_links);
                if message.body == media.filename { link } else { format!("{} {link}", message.body) }
            }
            Err(r) => return Err(refused(r)),
        };
        if let Some(command) = commands::parse(&text) {
            commands::run(b, &self.user, portal, command).await;
            return Ok(RemoteMessageId::new(format!("cmd.{event}")));
        }
        // `!!text` sends `!text`.
        let text = match text.trim_start().strip_prefix("!!") {
            Some(rest) => format!("!{rest}"),
            None => text,
        };
        let refuse = |r: Refusal| {
            b.metrics.refused(&r);
            refused(r)
        };
        check_destination(&b.config, to).map_err(refuse)?;
        let from = match b.prepare(event, user, to).await.map_err(temporary)? {
            // Taken before a crash: the outbox holds each event once.
            Prepared::Stored(id) => return Ok(remote_id(id)),
            Prepared::NoNumber => return Err(refuse(Refusal::NoNumber)),
            Prepared::Stopped(from) => return Err(refuse(Refusal::OptedOut { to: to.to_owned(), from })),
            Prepared::From(from) => from,
        };
        let (coding, segments) = NewSegment::split(&text, reference_of(event)).map_err(|e| refuse(e.into()))?;
        let parts = segments.len() as u32;
        b.take_rate(user, to, parts).map_err(refuse)?;
        let (hold, unit_price) = if b.billing.is_free() {
            (None, None)
        } else {
            match b.billing.reserve(user, to, parts, &format!("sms.reserve.{}", key_of(event))).await {
                Ok(h) => (Some(h.id), Some(h.unit_price)),
                Err(e) => {
                    // Not sent: the rate is given back.
                    b.give_back_rate(user, to, parts);
                    if let BillingError::Unavailable(why) = e {
                        b.metrics.inc(&b.metrics.billing_errors);
                        return Err(ConnectorError::Temporary(format!("billing unavailable: {why}")));
                    }
                    return Err(refuse(Refusal::Billing(e)));
                }
            }
        };
        let new = NewMessage {
            event_id: event.to_owned(),
            sender: user.to_owned(),
            source: from,
            destination: to.to_owned(),
            coding,
            segments,
            hold,
            unit_price,
        };
        let mut tx = b.store.begin().await.map_err(temporary)?;
        let stored = tx.outbox().enqueue(&new, b.now_ms() as i64).await.map_err(temporary)?;
        tx.commit().await.map_err(temporary)?;
        b.metrics.inc(&b.metrics.messages_out);
        b.metrics.add(&b.metrics.segments_out, u64::from(parts));
        b.wake_links();
        Ok(remote_id(stored.id))
    }
}

impl SmsApi {
    /// An image as MMS through the carrier's API (`sms.mms.api_url`): the same checks as a text (destination,
    /// sender number, opt-out, one unit of the rate limits), its price held through the gateway (service `mms`,
    /// one message) when billing is on, the image kept behind a link for the carrier to fetch, and the carrier's
    /// answer before the core marks the event done. The carrier's status callbacks (`/mms/status`) become the
    /// message's status.
    ///
    /// The carrier's API has no idempotency key, so the MMS outbox (`sms_mms_out`) stands in for one: the
    /// attempt is committed before the carrier is asked and its answer right after, and an event the core hands
    /// over again (after a crash) gets the recorded answer — never a second MMS. Only a crash between the
    /// carrier's answer and that record can send twice; such attempts are counted
    /// (`tincan_sms_mms_possible_duplicates`). The status worker settles the hold once the carrier took the MMS
    /// and releases it when refused; a hold left by attempts that never got an answer expires by itself.
    async fn send_mms(&self, portal: &PortalRef, message: &MatrixMessage) -> Result<RemoteMessageId, ConnectorError> {
        let b = &self.bridge;
        let Some(carrier) = b.mms.clone() else { return Err(refused(Refusal::Unsupported("image".into()))) };
        let Some(media) = &message.media else { return Err(refused(Refusal::Unsupported("image".into()))) };
        let user = self.user.as_str();
        let event = message.event_id.as_str();
        let to = portal.other_user.as_str();
        let refuse = |r: Refusal| {
            b.metrics.refused(&r);
            refused(r)
        };
        check_destination(&b.config, to).map_err(refuse)?;
        // Handed over before and answered: the same answer, nothing sent or charged again.
        let earlier = {
            let mut tx = b.store.begin().await.map_err(temporary)?;
            tx.mms().by_event(event).await.map_err(temporary)?
        };
        if let Some(done) = earlier.filter(|m| m.state != MmsState::Sending) {
            return answered(done);
        }
        let from = match b.prepare(event, user, to).await.map_err(temporary)? {
            Prepared::Stored(id) => return Ok(remote_id(id)),
            Prepared::NoNumber => return Err(refuse(Refusal::NoNumber)),
            Prepared::Stopped(from) => return Err(refuse(Refusal::OptedOut { to: to.to_owned(), from })),
            Prepared::From(from) => from,
        };
        b.take_rate(user, to, 1).map_err(refuse)?;
        let hold = if b.billing.is_free() {
            None
        } else {
            // A repeat (same key) gets the first hold back while it is open.
            match b.billing.reserve_mms(user, to, &format!("mms.reserve.{}", key_of(event))).await {
                Ok(h) => Some(h.id),
                Err(e) => {
                    b.give_back_rate(user, to, 1);
                    if let BillingError::Unavailable(why) = e {
                        b.metrics.inc(&b.metrics.billing_errors);
                        return Err(ConnectorError::Temporary(format!("billing unavailable: {why}")));
                    }
                    return Err(refuse(Refusal::Billing(e)));
                }
            }
        };
        let mut rng = <rand::rngs::StdRng as rand::SeedableRng>::from_os_rng();
        let media_url = match super::links::store(&b.config.mms, &mut rng, media.mimetype.as_deref(), &media.data) {
            Ok(link) => link,
            Err(e) => {
                b.give_back_rate(user, to, 1);
                return Err(ConnectorError::Temporary(format!("keeping the image for the carrier: {e}")));
            }
        };
        let new = NewMms { event_id: event.to_owned(), sender: user.to_owned(), destination: to.to_owned(), hold };
        let attempt = {
            let mut tx = b.store.begin().await.map_err(temporary)?;
            let attempt = tx.mms().attempt(&new, b.now_ms() as i64).await.map_err(temporary)?;
            tx.commit().await.map_err(temporary)?;
            attempt
        };
        match attempt {
            MmsAttempt::First => {}
            MmsAttempt::Again { earlier } => {
                tracing::warn!(event, earlier, "an MMS asked for before without an answer is sent again");
            }
            MmsAttempt::Done(done) => {
                b.give_back_rate(user, to, 1);
                return answered(done);
            }
        }
        let query: String = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("u", user)
            .append_pair("to", to)
            .append_pair("e", event)
            .finish();
        let mms = OutgoingMms {
            from,
            to: to.to_owned(),
            body: if message.body == media.filename { String::new() } else { message.body.clone() },
            media_url,
            status_callback: format!("{}/mms/status?{query}", b.config.mms.link_base_url.trim_end_matches('/')),
        };
        let outcome = carrier.send(&mms).await;
        let mut tx = b.store.begin().await.map_err(temporary)?;
        let now = b.now_ms() as i64;
        match outcome {
            Ok(sid) => {
                tx.mms().sent(event, &sid, now).await.map_err(temporary)?;
                tx.commit().await.map_err(temporary)?;
                b.metrics.inc(&b.metrics.mms_out);
                tracing::info!(%sid, "MMS taken by the carrier");
                Ok(RemoteMessageId::new(format!("mms.{sid}")))
            }
            Err(e @ MmsError::Rejected(_)) => {
                tx.mms().failed(event, &e.to_string(), now).await.map_err(temporary)?;
                tx.commit().await.map_err(temporary)?;
                b.give_back_rate(user, to, 1);
                Err(ConnectorError::Rejected(e.to_string()))
            }
            Err(e @ MmsError::Temporary(_)) => {
                // Still sending: the next attempt may duplicate it, and is counted so.
                drop(tx);
                b.give_back_rate(user, to, 1);
                Err(ConnectorError::Temporary(e.to_string()))
            }
        }
    }
}

/// The recorded answer of an MMS the carrier answered before.
fn answered(done: StoredMms) -> Result<RemoteMessageId, ConnectorError> {
    match (done.state, done.sid) {
        (MmsState::Sent, Some(sid)) => Ok(RemoteMessageId::new(format!("mms.{sid}"))),
        _ => Err(ConnectorError::Rejected(done.reason.unwrap_or_else(|| "the carrier refused the MMS".into()))),
    }
}

/// An idempotency key from an event id (`$abc:hs` → `abc_hs`): the gateway takes `A-Z a-z 0-9 - _ . :`.
pub(crate) fn key_of(event_id: &str) -> String {
    event_id
        .trim_start_matches('$')
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || "-_.:".contains(c) { c } else { '_' })
        .take(100)
        .collect()
}

fn refused(r: Refusal) -> ConnectorError {
    ConnectorError::Rejected(r.to_string())
}

#[async_trait]
impl NetworkApi for SmsApi {
    async fn handle_matrix_message(
        &self,
        portal: &PortalRef,
        message: &MatrixMessage,
    ) -> Result<RemoteMessageId, ConnectorError> {
        self.send(portal, message).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::SmsConfig;

    #[test]
    fn destinations_are_checked_before_anything_else() {
        let c = SmsConfig::default();
        assert_eq!(check_destination(&c, "+447400123456"), Ok(()));
        assert_eq!(check_destination(&c, "+449098765432"), Err(Refusal::Premium("+449098765432".into())));
        assert!(matches!(check_destination(&c, "+8816123456789"), Err(Refusal::Blocked(_))));
        assert!(matches!(check_destination(&c, "447400123456"), Err(Refusal::NotANumber(_))));
        assert!(matches!(check_destination(&c, "+4474001234564567"), Err(Refusal::NotANumber(_))));
    }

    #[test]
    fn message_kinds() {
        let m = |msgtype: &str| MatrixMessage {
            event_id: "$e:hs".try_into().unwrap(),
            sender: "@a:hs".try_into().unwrap(),
            msgtype: msgtype.into(),
            body: "waves".into(),
            media: None,
        };
        assert_eq!(text_of(&m("m.text")).unwrap(), "waves");
        assert_eq!(text_of(&m("m.emote")).unwrap(), "* waves");
        assert_eq!(text_of(&m("m.image")), Err(Refusal::Unsupported("image".into())));
    }

    #[test]
    fn references_and_keys_are_stable() {
        assert_eq!(reference_of("$abc"), reference_of("$abc"));
        let distinct: std::collections::HashSet<u16> =
            (0..1000).map(|i| reference_of(&format!("$event{i}:hs.test")).value()).collect();
        assert!(distinct.len() > 200, "references spread: {}", distinct.len());
        assert_eq!(key_of("$Ab+/9:hs.test"), "Ab__9:hs.test");
    }
}
