//! The SQL both backends share: portable statements (`$n` parameters, `ON CONFLICT`, `RETURNING`), written
//! once here and stamped out for each backend by [`impl_repositories!`]; the backends differ only in how they
//! connect and migrate.

use super::{BillingState, MessageState, StoreError};
use crate::protocol::dlr::DeliveryState;
use crate::protocol::reassembly::InboundCoding;
use crate::protocol::segment::Coding;

pub(super) fn corrupt(table: &'static str, column: &'static str, value: &str) -> StoreError {
    StoreError::Corrupt { table, column, value: value.to_owned() }
}

pub(super) fn parse_state(s: &str) -> super::Result<MessageState> {
    MessageState::parse(s).ok_or_else(|| corrupt("sms_messages", "state", s))
}

pub(super) fn parse_billing(s: &str) -> super::Result<BillingState> {
    BillingState::parse(s).ok_or_else(|| corrupt("sms_messages", "billing", s))
}

pub(super) fn parse_mms_state(s: &str) -> super::Result<super::MmsState> {
    super::MmsState::parse(s).ok_or_else(|| corrupt("sms_mms_out", "state", s))
}

/// The columns of an outgoing MMS.
pub(super) const MMS_COLUMNS: &str = "event_id, sender, destination, state, attempts, sid, reason, hold, billing";

pub(super) fn parse_coding(s: &str) -> super::Result<Coding> {
    match s {
        "gsm7" => Ok(Coding::Gsm7),
        "ucs2" => Ok(Coding::Ucs2),
        _ => Err(corrupt("sms_messages", "coding", s)),
    }
}

pub(super) fn parse_receipt(s: &str) -> super::Result<DeliveryState> {
    DeliveryState::from_name(s).ok_or_else(|| corrupt("sms_early_receipts", "state", s))
}

/// Inbound codings as stored: a name, or `dc:NN` for a character set read as unsupported.
pub(super) fn inbound_coding_name(c: InboundCoding) -> String {
    match c {
        InboundCoding::Gsm7 => "gsm7".into(),
        InboundCoding::Ascii => "ascii".into(),
        InboundCoding::Latin1 => "latin1".into(),
        InboundCoding::Ucs2 => "ucs2".into(),
        InboundCoding::Binary => "binary".into(),
        InboundCoding::Unsupported(dc) => format!("dc:{dc}"),
    }
}

pub(super) fn parse_inbound_coding(s: &str) -> super::Result<InboundCoding> {
    Ok(match s {
        "gsm7" => InboundCoding::Gsm7,
        "ascii" => InboundCoding::Ascii,
        "latin1" => InboundCoding::Latin1,
        "ucs2" => InboundCoding::Ucs2,
        "binary" => InboundCoding::Binary,
        other => {
            let dc = other.strip_prefix("dc:").and_then(|d| d.parse().ok());
            InboundCoding::Unsupported(dc.ok_or_else(|| corrupt("sms_inbound_parts", "coding", s))?)
        }
    })
}

pub(super) fn u32_of(v: i32) -> u32 {
    u32::try_from(v).unwrap_or(0)
}

/// The columns of a message, with the count of its accepted segments.
pub(super) const MESSAGE_COLUMNS: &str = "m.id, m.event_id, m.sender, m.source, m.destination, m.coding, m.parts, \
     m.state, m.reason, m.reported_state, m.hold, m.unit_price, m.billing, m.created_at, \
     (SELECT COUNT(*) FROM sms_segments s WHERE s.message_id = m.id AND s.state = 'submitted') AS submitted_parts";

/// Implements [`Repository`](super::Repository) and every repository trait for `$repo`, a struct with a field
/// `tx: sqlx::Transaction<'static, Db>` where `Db` is the backend's database type.
macro_rules! impl_repositories {
    ($repo:ident) => {
        use async_trait::async_trait;
        use sqlx::Row as _;
        use $crate::protocol::dlr::{DeliveryState, Outcome, id_candidates};
        use $crate::store::sql::{
            MESSAGE_COLUMNS, MMS_COLUMNS, inbound_coding_name, parse_billing, parse_coding, parse_inbound_coding,
            parse_mms_state, parse_receipt, parse_state, u32_of,
        };
        use $crate::store::{
            BillingState, Enqueued, HeldNumber, InboundRepository, MessageId, MessageState, MmsAttempt, MmsRepository,
            NewMessage, NewMms, NumberRepository, OptOutRepository, OutSegment, OutboxRepository, Repository,
            Result, SegmentId, StoredMessage, StoredMms, StoredPart,
        };

        impl $repo {
            fn message_from_row(row: &<Db as sqlx::Database>::Row) -> Result<StoredMessage> {
                let reported: Option<String> = row.try_get("reported_state")?;
                Ok(StoredMessage {
                    id: MessageId(row.try_get("id")?),
                    event_id: row.try_get("event_id")?,
                    sender: row.try_get("sender")?,
                    source: row.try_get("source")?,
                    destination: row.try_get("destination")?,
                    coding: parse_coding(&row.try_get::<String, _>("coding")?)?,
                    parts: u32_of(row.try_get("parts")?),
                    state: parse_state(&row.try_get::<String, _>("state")?)?,
                    reason: row.try_get("reason")?,
                    reported_state: reported.as_deref().map(parse_state).transpose()?,
                    hold: row.try_get("hold")?,
                    unit_price: row.try_get("unit_price")?,
                    billing: parse_billing(&row.try_get::<String, _>("billing")?)?,
                    submitted_parts: u32::try_from(row.try_get::<i64, _>("submitted_parts")?).unwrap_or(0),
                    created_at: row.try_get("created_at")?,
                })
            }

            async fn messages_where(&mut self, condition: &str, limit: u32) -> Result<Vec<StoredMessage>> {
                let sql = format!("SELECT {MESSAGE_COLUMNS} FROM sms_messages m WHERE {condition} ORDER BY m.id LIMIT $1");
                let rows = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(i64::from(limit)).fetch_all(&mut *self.tx).await?;
                rows.iter().map(Self::message_from_row).collect()
            }

            /// A message becomes submitted once every segment is.
            async fn settle_submitted(&mut self, message: i64, now_ms: i64) -> Result<()> {
                sqlx::query(
                    "UPDATE sms_messages SET state = 'submitted', updated_at = $2 WHERE id = $1 AND state = 'queued' \
                     AND NOT EXISTS (SELECT 1 FROM sms_segments WHERE message_id = $1 AND state <> 'submitted')",
                )
                .bind(message)
                .bind(now_ms)
                .execute(&mut *self.tx)
                .await?;
                Ok(())
            }

            async fn fail_message(&mut self, message: i64, reason: &str, now_ms: i64) -> Result<()> {
                sqlx::query(
                    "UPDATE sms_messages SET state = 'failed', reason = $2, updated_at = $3 \
                     WHERE id = $1 AND state <> 'failed'",
                )
                .bind(message)
                .bind(reason)
                .bind(now_ms)
                .execute(&mut *self.tx)
                .await?;
                // The other parts will not be sent: the message cannot arrive whole.
                sqlx::query(
                    "UPDATE sms_segments SET state = 'failed', error = 'another part failed' \
                     WHERE message_id = $1 AND state = 'pending'",
                )
                .bind(message)
                .execute(&mut *self.tx)
                .await?;
                Ok(())
            }

            /// Records a receipt on a segment and what it means for its message.
            async fn apply_receipt(
                &mut self,
                segment: i64,
                message: i64,
                state: DeliveryState,
                reason: Option<&str>,
                now_ms: i64,
            ) -> Result<()> {
                sqlx::query("UPDATE sms_segments SET receipt = $2 WHERE id = $1")
                    .bind(segment)
                    .bind(state.name())
                    .execute(&mut *self.tx)
                    .await?;
                match state.outcome() {
                    Outcome::Pending => {}
                    Outcome::Failed => {
                        let why = reason.map(str::to_owned).unwrap_or_else(|| state.describe().to_owned());
                        self.fail_message(message, &why, now_ms).await?;
                    }
                    Outcome::Delivered => {
                        sqlx::query(
                            "UPDATE sms_messages SET state = 'delivered', updated_at = $2 \
                             WHERE id = $1 AND state IN ('queued', 'submitted') AND NOT EXISTS ( \
                               SELECT 1 FROM sms_segments WHERE message_id = $1 \
                               AND (receipt IS NULL OR receipt NOT IN ('delivered', 'accepted')))",
                        )
                        .bind(message)
                        .bind(now_ms)
                        .execute(&mut *self.tx)
                        .await?;
                    }
                }
                Ok(())
            }
        }

        #[async_trait]
        impl Repository for $repo {
            fn outbox(&mut self) -> &mut dyn OutboxRepository {
                self
            }
            fn inbound(&mut self) -> &mut dyn InboundRepository {
                self
            }
            fn numbers(&mut self) -> &mut dyn NumberRepository {
                self
            }
            fn opt_outs(&mut self) -> &mut dyn OptOutRepository {
                self
            }
            fn mms(&mut self) -> &mut dyn MmsRepository {
                self
            }
            async fn commit(self: Box<Self>) -> Result<()> {
                self.tx.commit().await?;
                Ok(())
            }
        }

        #[async_trait]
        impl OutboxRepository for $repo {
            async fn enqueue(&mut self, m: &NewMessage, now_ms: i64) -> Result<Enqueued> {
                let billing = if m.hold.is_some() { BillingState::Held } else { BillingState::Free };
                let id: Option<i64> = sqlx::query_scalar(
                    "INSERT INTO sms_messages (event_id, sender, source, destination, coding, parts, state, hold, \
                     unit_price, billing, created_at, updated_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, 'queued', $7, $8, $9, $10, $10) \
                     ON CONFLICT (event_id) DO NOTHING RETURNING id",
                )
                .bind(&m.event_id)
                .bind(&m.sender)
                .bind(&m.source)
                .bind(&m.destination)
                .bind(m.coding.as_str())
                .bind(i32::try_from(m.segments.len()).unwrap_or(i32::MAX))
                .bind(&m.hold)
                .bind(&m.unit_price)
                .bind(billing.as_str())
                .bind(now_ms)
                .fetch_optional(&mut *self.tx)
                .await?;
                let Some(id) = id else {
                    let existing: i64 = sqlx::query_scalar("SELECT id FROM sms_messages WHERE event_id = $1")
                        .bind(&m.event_id)
                        .fetch_one(&mut *self.tx)
                        .await?;
                    return Ok(Enqueued { id: MessageId(existing), created: false });
                };
                for (i, s) in m.segments.iter().enumerate() {
                    sqlx::query(
                        "INSERT INTO sms_segments (message_id, seq, short_message, esm_class, data_coding, state, \
                         next_attempt_at) VALUES ($1, $2, $3, $4, $5, 'pending', $6)",
                    )
                    .bind(id)
                    .bind(i as i32 + 1)
                    .bind(&s.short_message)
                    .bind(i32::from(s.esm_class))
                    .bind(i32::from(s.data_coding))
                    .bind(now_ms)
                    .execute(&mut *self.tx)
                    .await?;
                }
                Ok(Enqueued { id: MessageId(id), created: true })
            }

            async fn by_event(&mut self, event_id: &str) -> Result<Option<StoredMessage>> {
                let sql = format!("SELECT {MESSAGE_COLUMNS} FROM sms_messages m WHERE m.event_id = $1");
                let row = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(event_id).fetch_optional(&mut *self.tx).await?;
                row.as_ref().map(Self::message_from_row).transpose()
            }

            async fn message(&mut self, id: MessageId) -> Result<Option<StoredMessage>> {
                let sql = format!("SELECT {MESSAGE_COLUMNS} FROM sms_messages m WHERE m.id = $1");
                let row = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(id.0).fetch_optional(&mut *self.tx).await?;
                row.as_ref().map(Self::message_from_row).transpose()
            }

            async fn claim(&mut self, now_ms: i64, limit: u32) -> Result<Vec<OutSegment>> {
                let rows = sqlx::query(
                    "SELECT s.id, s.message_id, s.seq, s.short_message, s.esm_class, s.data_coding, s.attempts, \
                     s.uncertain, m.source, m.destination FROM sms_segments s JOIN sms_messages m ON m.id = s.message_id \
                     WHERE s.state = 'pending' AND s.next_attempt_at <= $1 AND m.state <> 'failed' \
                     ORDER BY s.next_attempt_at, s.id LIMIT $2",
                )
                .bind(now_ms)
                .bind(i64::from(limit))
                .fetch_all(&mut *self.tx)
                .await?;
                if rows.is_empty() {
                    return Ok(Vec::new());
                }
                let mut out = Vec::with_capacity(rows.len());
                let mut update =
                    sqlx::QueryBuilder::<Db>::new("UPDATE sms_segments SET state = 'sending', attempts = attempts + 1 WHERE id IN (");
                let mut ids = update.separated(", ");
                for row in &rows {
                    let id: i64 = row.try_get("id")?;
                    ids.push_bind(id);
                    out.push(OutSegment {
                        id: SegmentId(id),
                        message_id: MessageId(row.try_get("message_id")?),
                        seq: u32_of(row.try_get("seq")?),
                        source: row.try_get("source")?,
                        destination: row.try_get("destination")?,
                        short_message: row.try_get("short_message")?,
                        esm_class: u8::try_from(row.try_get::<i32, _>("esm_class")?).unwrap_or(0),
                        data_coding: u8::try_from(row.try_get::<i32, _>("data_coding")?).unwrap_or(0),
                        attempts: u32_of(row.try_get("attempts")?) + 1,
                        uncertain: u32_of(row.try_get("uncertain")?),
                    });
                }
                ids.push_unseparated(")");
                update.build().execute(&mut *self.tx).await?;
                Ok(out)
            }

            async fn requeue_unfinished(&mut self, now_ms: i64) -> Result<u64> {
                let done = sqlx::query(
                    "UPDATE sms_segments SET state = 'pending', uncertain = uncertain + 1, next_attempt_at = $1, \
                     error = 'the bridge stopped before the SMSC answered' WHERE state = 'sending'",
                )
                .bind(now_ms)
                .execute(&mut *self.tx)
                .await?;
                Ok(done.rows_affected())
            }

            async fn submitted(&mut self, id: SegmentId, smsc: &str, smsc_message_id: &str, now_ms: i64) -> Result<()> {
                let smsc_id = smsc_message_id.trim().to_ascii_lowercase();
                let message: Option<i64> = sqlx::query_scalar(
                    "UPDATE sms_segments SET state = 'submitted', smsc = $2, smsc_message_id = $3, submitted_at = $4, \
                     error = NULL WHERE id = $1 AND state = 'sending' RETURNING message_id",
                )
                .bind(id.0)
                .bind(smsc)
                .bind(&smsc_id)
                .bind(now_ms)
                .fetch_optional(&mut *self.tx)
                .await?;
                let Some(message) = message else { return Ok(()) };
                self.settle_submitted(message, now_ms).await?;
                // A receipt that overtook this answer.
                let mut q = sqlx::QueryBuilder::<Db>::new(
                    "DELETE FROM sms_early_receipts WHERE smsc_message_id IN (",
                );
                let mut list = q.separated(", ");
                for c in id_candidates(&smsc_id) {
                    list.push_bind(c);
                }
                list.push_unseparated(") RETURNING state, reason");
                let early = q.build().fetch_all(&mut *self.tx).await?;
                if let Some(row) = early.first() {
                    let state = parse_receipt(&row.try_get::<String, _>("state")?)?;
                    let reason: Option<String> = row.try_get("reason")?;
                    self.apply_receipt(id.0, message, state, reason.as_deref(), now_ms).await?;
                }
                Ok(())
            }

            async fn retry(&mut self, id: SegmentId, next_attempt_ms: i64, error: &str, uncertain: bool) -> Result<()> {
                sqlx::query(
                    "UPDATE sms_segments SET state = 'pending', next_attempt_at = $2, error = $3, \
                     uncertain = uncertain + $4 WHERE id = $1 AND state = 'sending'",
                )
                .bind(id.0)
                .bind(next_attempt_ms)
                .bind(error)
                .bind(i32::from(uncertain))
                .execute(&mut *self.tx)
                .await?;
                Ok(())
            }

            async fn fail(&mut self, id: SegmentId, reason: &str, now_ms: i64) -> Result<()> {
                let message: Option<i64> = sqlx::query_scalar(
                    "UPDATE sms_segments SET state = 'failed', error = $2 WHERE id = $1 RETURNING message_id",
                )
                .bind(id.0)
                .bind(reason)
                .fetch_optional(&mut *self.tx)
                .await?;
                if let Some(message) = message {
                    self.fail_message(message, reason, now_ms).await?;
                }
                Ok(())
            }

            async fn receipt(
                &mut self,
                smsc_message_ids: &[String],
                state: DeliveryState,
                reason: Option<&str>,
                now_ms: i64,
            ) -> Result<Option<MessageId>> {
                let Some(first) = smsc_message_ids.first() else { return Ok(None) };
                let mut q = sqlx::QueryBuilder::<Db>::new(
                    "SELECT id, message_id FROM sms_segments WHERE smsc_message_id IN (",
                );
                let mut list = q.separated(", ");
                for c in smsc_message_ids {
                    list.push_bind(c.clone());
                }
                list.push_unseparated(") ORDER BY id DESC LIMIT 1");
                let row = q.build().fetch_optional(&mut *self.tx).await?;
                let Some(row) = row else {
                    sqlx::query(
                        "INSERT INTO sms_early_receipts (smsc_message_id, state, reason, at) VALUES ($1, $2, $3, $4) \
                         ON CONFLICT (smsc_message_id) DO UPDATE SET state = $2, reason = $3, at = $4",
                    )
                    .bind(first)
                    .bind(state.name())
                    .bind(reason)
                    .bind(now_ms)
                    .execute(&mut *self.tx)
                    .await?;
                    return Ok(None);
                };
                let (segment, message): (i64, i64) = (row.try_get("id")?, row.try_get("message_id")?);
                self.apply_receipt(segment, message, state, reason, now_ms).await?;
                Ok(Some(MessageId(message)))
            }

            async fn unreported(&mut self, limit: u32) -> Result<Vec<StoredMessage>> {
                self.messages_where("m.reported_state IS DISTINCT FROM m.state", limit).await
            }

            async fn mark_reported(&mut self, id: MessageId, state: MessageState) -> Result<()> {
                sqlx::query("UPDATE sms_messages SET reported_state = $2 WHERE id = $1")
                    .bind(id.0)
                    .bind(state.as_str())
                    .execute(&mut *self.tx)
                    .await?;
                Ok(())
            }

            async fn billing_due(&mut self, limit: u32) -> Result<Vec<StoredMessage>> {
                self.messages_where("m.billing = 'held' AND m.state <> 'queued'", limit).await
            }

            async fn set_billing(&mut self, id: MessageId, billing: BillingState) -> Result<()> {
                sqlx::query("UPDATE sms_messages SET billing = $2 WHERE id = $1")
                    .bind(id.0)
                    .bind(billing.as_str())
                    .execute(&mut *self.tx)
                    .await?;
                Ok(())
            }

            async fn pending_segments(&mut self) -> Result<u64> {
                let n: i64 =
                    sqlx::query_scalar("SELECT COUNT(*) FROM sms_segments WHERE state IN ('pending', 'sending')")
                        .fetch_one(&mut *self.tx)
                        .await?;
                Ok(u64::try_from(n).unwrap_or(0))
            }

            async fn possible_duplicates(&mut self) -> Result<u64> {
                let n: i64 = sqlx::query_scalar(
                    "SELECT CAST(COALESCE(SUM(uncertain), 0) AS BIGINT) FROM sms_segments WHERE state = 'submitted'",
                )
                .fetch_one(&mut *self.tx)
                .await?;
                Ok(u64::try_from(n).unwrap_or(0))
            }
        }

        #[async_trait]
        impl InboundRepository for $repo {
            async fn add_part(&mut self, p: &StoredPart) -> Result<bool> {
                let done = sqlx::query(
                    "INSERT INTO sms_inbound_parts (source, destination, reference, total, seq, coding, payload, \
                     received_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT DO NOTHING",
                )
                .bind(&p.source)
                .bind(&p.destination)
                .bind(i32::from(p.reference))
                .bind(i32::from(p.total))
                .bind(i32::from(p.seq))
                .bind(inbound_coding_name(p.coding))
                .bind(&p.payload)
                .bind(p.received_at)
                .execute(&mut *self.tx)
                .await?;
                Ok(done.rows_affected() == 1)
            }

            async fn parts(&mut self) -> Result<Vec<StoredPart>> {
                let rows = sqlx::query(
                    "SELECT source, destination, reference, total, seq, coding, payload, received_at \
                     FROM sms_inbound_parts ORDER BY id",
                )
                .fetch_all(&mut *self.tx)
                .await?;
                rows.iter()
                    .map(|r| {
                        Ok(StoredPart {
                            source: r.try_get("source")?,
                            destination: r.try_get("destination")?,
                            reference: u16::try_from(r.try_get::<i32, _>("reference")?).unwrap_or(0),
                            total: u8::try_from(r.try_get::<i32, _>("total")?).unwrap_or(0),
                            seq: u8::try_from(r.try_get::<i32, _>("seq")?).unwrap_or(0),
                            coding: parse_inbound_coding(&r.try_get::<String, _>("coding")?)?,
                            payload: r.try_get("payload")?,
                            received_at: r.try_get("received_at")?,
                        })
                    })
                    .collect()
            }

            async fn first_part_id(
                &mut self,
                source: &str,
                destination: &str,
                reference: u16,
                total: u8,
            ) -> Result<Option<i64>> {
                let id: Option<i64> = sqlx::query_scalar(
                    "SELECT MIN(id) FROM sms_inbound_parts \
                     WHERE source = $1 AND destination = $2 AND reference = $3 AND total = $4",
                )
                .bind(source)
                .bind(destination)
                .bind(i32::from(reference))
                .bind(i32::from(total))
                .fetch_one(&mut *self.tx)
                .await?;
                Ok(id)
            }

            async fn remove(&mut self, source: &str, destination: &str, reference: u16, total: u8) -> Result<u64> {
                let done = sqlx::query(
                    "DELETE FROM sms_inbound_parts \
                     WHERE source = $1 AND destination = $2 AND reference = $3 AND total = $4",
                )
                .bind(source)
                .bind(destination)
                .bind(i32::from(reference))
                .bind(i32::from(total))
                .execute(&mut *self.tx)
                .await?;
                Ok(done.rows_affected())
            }
        }

        #[async_trait]
        impl NumberRepository for $repo {
            async fn add_to_pool(&mut self, numbers: &[String]) -> Result<u64> {
                let mut added = 0;
                for n in numbers {
                    let done = sqlx::query("INSERT INTO sms_numbers (number) VALUES ($1) ON CONFLICT DO NOTHING")
                        .bind(n)
                        .execute(&mut *self.tx)
                        .await?;
                    added += done.rows_affected();
                }
                Ok(added)
            }

            async fn assign(&mut self, user: &str, now_ms: i64) -> Result<Option<String>> {
                // Another node may take the same free number between the two statements: try the next one.
                for _ in 0..8 {
                    let free: Option<String> = sqlx::query_scalar(
                        "SELECT number FROM sms_numbers WHERE holder IS NULL ORDER BY number LIMIT 1",
                    )
                    .fetch_optional(&mut *self.tx)
                    .await?;
                    let Some(free) = free else { return Ok(None) };
                    let has_default: bool = sqlx::query_scalar::<_, i64>(
                        "SELECT COUNT(*) FROM sms_numbers WHERE holder = $1 AND is_default = 1",
                    )
                    .bind(user)
                    .fetch_one(&mut *self.tx)
                    .await?
                        > 0;
                    let done = sqlx::query(
                        "UPDATE sms_numbers SET holder = $1, is_default = $2, assigned_at = $3 \
                         WHERE number = $4 AND holder IS NULL",
                    )
                    .bind(user)
                    .bind(i32::from(!has_default))
                    .bind(now_ms)
                    .bind(&free)
                    .execute(&mut *self.tx)
                    .await?;
                    if done.rows_affected() == 1 {
                        return Ok(Some(free));
                    }
                }
                Ok(None)
            }

            async fn held_by(&mut self, user: &str) -> Result<Vec<HeldNumber>> {
                let rows = sqlx::query("SELECT number, is_default FROM sms_numbers WHERE holder = $1 ORDER BY number")
                    .bind(user)
                    .fetch_all(&mut *self.tx)
                    .await?;
                rows.iter()
                    .map(|r| {
                        Ok(HeldNumber {
                            number: r.try_get("number")?,
                            is_default: r.try_get::<i32, _>("is_default")? != 0,
                        })
                    })
                    .collect()
            }

            async fn set_default(&mut self, user: &str, number: &str) -> Result<bool> {
                let held: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM sms_numbers WHERE holder = $1 AND number = $2")
                    .bind(user)
                    .bind(number)
                    .fetch_one(&mut *self.tx)
                    .await?;
                if held == 0 {
                    return Ok(false);
                }
                sqlx::query(
                    "UPDATE sms_numbers SET is_default = CASE WHEN number = $2 THEN 1 ELSE 0 END WHERE holder = $1",
                )
                .bind(user)
                .bind(number)
                .execute(&mut *self.tx)
                .await?;
                Ok(true)
            }

            async fn holder(&mut self, number: &str) -> Result<Option<String>> {
                let h: Option<Option<String>> = sqlx::query_scalar("SELECT holder FROM sms_numbers WHERE number = $1")
                    .bind(number)
                    .fetch_optional(&mut *self.tx)
                    .await?;
                Ok(h.flatten())
            }

            async fn conversation(&mut self, user: &str, remote: &str) -> Result<Option<String>> {
                Ok(sqlx::query_scalar("SELECT number FROM sms_conversations WHERE holder = $1 AND remote = $2")
                    .bind(user)
                    .bind(remote)
                    .fetch_optional(&mut *self.tx)
                    .await?)
            }

            async fn set_conversation(&mut self, user: &str, remote: &str, number: &str) -> Result<()> {
                sqlx::query(
                    "INSERT INTO sms_conversations (holder, remote, number) VALUES ($1, $2, $3) \
                     ON CONFLICT (holder, remote) DO UPDATE SET number = $3",
                )
                .bind(user)
                .bind(remote)
                .bind(number)
                .execute(&mut *self.tx)
                .await?;
                Ok(())
            }
        }

        #[async_trait]
        impl OptOutRepository for $repo {
            async fn stop(&mut self, remote: &str, number: &str, keyword: &str, now_ms: i64) -> Result<()> {
                sqlx::query(
                    "INSERT INTO sms_opt_outs (remote, number, keyword, at) VALUES ($1, $2, $3, $4) \
                     ON CONFLICT (remote, number) DO UPDATE SET keyword = $3, at = $4",
                )
                .bind(remote)
                .bind(number)
                .bind(keyword)
                .bind(now_ms)
                .execute(&mut *self.tx)
                .await?;
                Ok(())
            }

            async fn start(&mut self, remote: &str, number: &str) -> Result<bool> {
                let done = sqlx::query("DELETE FROM sms_opt_outs WHERE remote = $1 AND number = $2")
                    .bind(remote)
                    .bind(number)
                    .execute(&mut *self.tx)
                    .await?;
                Ok(done.rows_affected() > 0)
            }

            async fn is_stopped(&mut self, remote: &str, number: &str) -> Result<bool> {
                let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM sms_opt_outs WHERE remote = $1 AND number = $2")
                    .bind(remote)
                    .bind(number)
                    .fetch_one(&mut *self.tx)
                    .await?;
                Ok(n > 0)
            }
        }

        fn mms_from_row(row: &<Db as sqlx::Database>::Row) -> Result<StoredMms> {
            Ok(StoredMms {
                event_id: row.try_get("event_id")?,
                sender: row.try_get("sender")?,
                destination: row.try_get("destination")?,
                state: parse_mms_state(&row.try_get::<String, _>("state")?)?,
                attempts: u32_of(row.try_get("attempts")?),
                sid: row.try_get("sid")?,
                reason: row.try_get("reason")?,
                hold: row.try_get("hold")?,
                billing: parse_billing(&row.try_get::<String, _>("billing")?)?,
            })
        }

        #[async_trait]
        impl MmsRepository for $repo {
            async fn by_event(&mut self, event_id: &str) -> Result<Option<StoredMms>> {
                let sql = format!("SELECT {MMS_COLUMNS} FROM sms_mms_out WHERE event_id = $1");
                let row = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(event_id).fetch_optional(&mut *self.tx).await?;
                row.as_ref().map(mms_from_row).transpose()
            }

            async fn attempt(&mut self, mms: &NewMms, now_ms: i64) -> Result<MmsAttempt> {
                let billing = if mms.hold.is_some() { BillingState::Held } else { BillingState::Free };
                let created = sqlx::query(
                    "INSERT INTO sms_mms_out (event_id, sender, destination, state, attempts, hold, billing, \
                       created_at, updated_at) VALUES ($1, $2, $3, 'sending', 1, $4, $5, $6, $6) \
                     ON CONFLICT (event_id) DO NOTHING",
                )
                .bind(&mms.event_id)
                .bind(&mms.sender)
                .bind(&mms.destination)
                .bind(&mms.hold)
                .bind(billing.as_str())
                .bind(now_ms)
                .execute(&mut *self.tx)
                .await?;
                if created.rows_affected() == 1 {
                    return Ok(MmsAttempt::First);
                }
                let again: Option<i32> = sqlx::query_scalar(
                    "UPDATE sms_mms_out SET attempts = attempts + 1, hold = COALESCE(hold, $2), updated_at = $3 \
                     WHERE event_id = $1 AND state = 'sending' RETURNING attempts",
                )
                .bind(&mms.event_id)
                .bind(&mms.hold)
                .bind(now_ms)
                .fetch_optional(&mut *self.tx)
                .await?;
                if let Some(attempts) = again {
                    return Ok(MmsAttempt::Again { earlier: u32_of(attempts).saturating_sub(1) });
                }
                let stored = MmsRepository::by_event(self, &mms.event_id).await?;
                Ok(MmsAttempt::Done(stored.ok_or(sqlx::Error::RowNotFound)?))
            }

            async fn sent(&mut self, event_id: &str, sid: &str, now_ms: i64) -> Result<()> {
                sqlx::query(
                    "UPDATE sms_mms_out SET state = 'sent', sid = $2, updated_at = $3 \
                     WHERE event_id = $1 AND state = 'sending'",
                )
                .bind(event_id)
                .bind(sid)
                .bind(now_ms)
                .execute(&mut *self.tx)
                .await?;
                Ok(())
            }

            async fn failed(&mut self, event_id: &str, reason: &str, now_ms: i64) -> Result<()> {
                sqlx::query(
                    "UPDATE sms_mms_out SET state = 'failed', reason = $2, updated_at = $3 \
                     WHERE event_id = $1 AND state = 'sending'",
                )
                .bind(event_id)
                .bind(reason)
                .bind(now_ms)
                .execute(&mut *self.tx)
                .await?;
                Ok(())
            }

            async fn billing_due(&mut self, limit: u32) -> Result<Vec<StoredMms>> {
                let sql = format!(
                    "SELECT {MMS_COLUMNS} FROM sms_mms_out WHERE billing = 'held' AND state <> 'sending' \
                     ORDER BY updated_at, event_id LIMIT $1"
                );
                let rows =
                    sqlx::query(sqlx::AssertSqlSafe(sql)).bind(i64::from(limit)).fetch_all(&mut *self.tx).await?;
                rows.iter().map(mms_from_row).collect()
            }

            async fn set_billing(&mut self, event_id: &str, billing: BillingState) -> Result<()> {
                sqlx::query("UPDATE sms_mms_out SET billing = $2 WHERE event_id = $1")
                    .bind(event_id)
                    .bind(billing.as_str())
                    .execute(&mut *self.tx)
                    .await?;
                Ok(())
            }

            async fn possible_duplicates(&mut self) -> Result<u64> {
                let n: i64 = sqlx::query_scalar(
                    "SELECT CAST(COALESCE(SUM(attempts - 1), 0) AS BIGINT) FROM sms_mms_out WHERE state = 'sent'",
                )
                .fetch_one(&mut *self.tx)
                .await?;
                Ok(u64::try_from(n).unwrap_or(0))
            }
        }
    };
}

pub(super) use impl_repositories;
