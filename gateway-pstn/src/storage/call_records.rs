//! Call detail records: one per attempt of a call on a carrier, answered or not, and one for a call refused
//! before any carrier was tried (attempt 0). Written by the call router before the call's hold is settled or
//! released, so that a record exists for every hold a call made.

use async_trait::async_trait;

use super::{Result, StorageError};
use crate::charging::AccountId;
use crate::money::{Amount, Currency};

/// How one attempt ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum CallResult {
    /// The carrier answered; the call was billed.
    Answered,
    /// The called party was busy (486, 600).
    Busy,
    /// Nobody answered in time (480, 408 at the setup deadline, 487 from the carrier).
    NoAnswer,
    /// The carrier failed (5xx, 6xx, a silent trunk, credentials refused…), or the called party refused.
    Failed,
    /// The caller hung up before an answer.
    Cancelled,
    /// The gateway refused the call before any carrier (no credit, limits, no route).
    Refused,
}

impl CallResult {
    /// The stored and exported name.
    pub fn as_str(self) -> &'static str {
        match self {
            CallResult::Answered => "answered",
            CallResult::Busy => "busy",
            CallResult::NoAnswer => "no_answer",
            CallResult::Failed => "failed",
            CallResult::Cancelled => "cancelled",
            CallResult::Refused => "refused",
        }
    }

    pub(super) fn parse_stored(s: &str) -> Result<Self> {
        Ok(match s {
            "answered" => CallResult::Answered,
            "busy" => CallResult::Busy,
            "no_answer" => CallResult::NoAnswer,
            "failed" => CallResult::Failed,
            "cancelled" => CallResult::Cancelled,
            "refused" => CallResult::Refused,
            _ => return Err(StorageError::Corrupt { table: "call_records", column: "result" }),
        })
    }
}

/// One call detail record.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct CallRecord {
    /// Its id (ignored when adding).
    pub id: i64,
    /// The gateway's id of the call: every attempt of one call shares it.
    pub call_id: String,
    /// 1, 2, … in the order the carriers were tried; 0 for a call refused before any carrier.
    pub attempt: u32,
    /// The paying account.
    pub account_id: AccountId,
    /// The sequence number of the call's hold, if one was made.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hold_seq: Option<i64>,
    /// The number called.
    pub destination: String,
    /// The carrier tried (none for a refused call).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub carrier: Option<String>,
    /// How the attempt ended.
    pub result: CallResult,
    /// The SIP final status of this leg (200 when answered).
    pub sip_status: u16,
    /// Its reason phrase, or why the gateway gave up on the leg.
    pub reason: String,
    /// The ISDN User Part cause (ITU-T Q.850) that stands for the outcome (16: normal clearing).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub q850_cause: Option<u16>,
    /// When the INVITE went to the carrier (or the call was refused), Unix ms.
    pub started_at_ms: i64,
    /// When the carrier answered, Unix ms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub answered_at_ms: Option<i64>,
    /// When the leg ended, Unix ms.
    pub ended_at_ms: i64,
    /// The seconds billed (answered calls).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub billed_seconds: Option<u32>,
    /// What the account is charged for it (answered calls).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub price: Option<Amount>,
    /// What the carrier charges the provider for it, by the carrier's cost deck (answered calls).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cost: Option<Amount>,
    /// The currency of `price` and `cost`.
    #[schema(value_type = String, example = "EUR")]
    pub currency: Currency,
}

/// The header of [`CallRecord::csv_row`]'s rows.
pub const CSV_HEADER: &str = "id,call_id,attempt,account_id,hold,destination,carrier,result,sip_status,reason,\
                              q850_cause,started_at_ms,answered_at_ms,ended_at_ms,billed_seconds,price,cost,currency";

impl CallRecord {
    /// The record as its account's user may see it: without the carrier tried and what the carrier charges the
    /// provider (the provider's suppliers and wholesale costs are its business, not the caller's), and without
    /// the internal hold number. Operators see the whole record.
    pub fn as_seen_by_user(&self) -> CallRecord {
        CallRecord { carrier: None, cost: None, hold_seq: None, ..self.clone() }
    }

    /// The record as one CSV row (RFC 4180 quoting, no line end), in the order of [`CSV_HEADER`].
    pub fn csv_row(&self) -> String {
        fn field(s: &str) -> String {
            if s.contains([',', '"', '\n', '\r']) { format!("\"{}\"", s.replace('"', "\"\"")) } else { s.to_owned() }
        }
        fn opt<T: ToString>(v: Option<T>) -> String {
            v.map(|v| v.to_string()).unwrap_or_default()
        }
        [
            self.id.to_string(),
            field(&self.call_id),
            self.attempt.to_string(),
            self.account_id.0.to_string(),
            opt(self.hold_seq),
            field(&self.destination),
            field(self.carrier.as_deref().unwrap_or("")),
            self.result.as_str().to_owned(),
            self.sip_status.to_string(),
            field(&self.reason),
            opt(self.q850_cause),
            self.started_at_ms.to_string(),
            opt(self.answered_at_ms),
            self.ended_at_ms.to_string(),
            opt(self.billed_seconds),
            opt(self.price),
            opt(self.cost),
            self.currency.as_str().to_owned(),
        ]
        .join(",")
    }
}

/// Call detail records.
#[async_trait]
pub trait CallRecordRepository: Send {
    /// Stores a record (its `id` is ignored); its id. A second record for the same call and attempt is
    /// [`StorageError::Duplicate`].
    async fn add(&mut self, record: &CallRecord) -> Result<i64>;
    /// The record of a call's attempt, if stored.
    async fn get(&mut self, call_id: &str, attempt: u32) -> Result<Option<CallRecord>>;
    /// Records with an id above `after`, oldest first, of one account or of all; at most `limit`.
    async fn list(&mut self, account: Option<AccountId>, after: i64, limit: u32) -> Result<Vec<CallRecord>>;
    /// An account's last `limit` records, newest first (the portal's list).
    async fn recent(&mut self, account: AccountId, limit: u32) -> Result<Vec<CallRecord>>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_user_sees_neither_the_carrier_nor_its_cost() {
        let operator = CallRecord {
            id: 7,
            call_id: "c1".into(),
            attempt: 1,
            account_id: AccountId(3),
            hold_seq: Some(11),
            destination: "+4930123456".into(),
            carrier: Some("cheap-trunk".into()),
            result: CallResult::Answered,
            sip_status: 200,
            reason: "OK".into(),
            q850_cause: Some(16),
            started_at_ms: 1_000,
            answered_at_ms: Some(2_000),
            ended_at_ms: 62_000,
            billed_seconds: Some(60),
            price: Some(Amount::from_micros(600_000)),
            cost: Some(Amount::from_micros(4_000)),
            currency: "EUR".parse().unwrap(),
        };
        let user = operator.as_seen_by_user();
        assert_eq!((user.carrier.as_deref(), user.cost, user.hold_seq), (None, None, None));
        let json = serde_json::to_value(&user).unwrap();
        assert!(json.get("carrier").is_none() && json.get("cost").is_none() && json.get("hold_seq").is_none());
        let row = user.csv_row();
        assert!(!row.contains("cheap-trunk") && !row.contains("0.004"), "{row}");
        // What the user paid for, and why it ended, stay.
        assert_eq!((user.price, user.billed_seconds, user.q850_cause), (operator.price, Some(60), Some(16)));
        assert_eq!(user.destination, operator.destination);
    }
}
