//! The reserve/settle pair the ledger benchmarks (`hold_bench`, `heartbeat_bench`) repeat: a 0.50 EUR voice
//! hold to +4930123456 settled at 0.12.

use tincan_enum_core::E164;
use tincan_gateway::charging::{
    AccountId, AccountRef, HoldId, IdempotencyKey, ReserveRequest, ServiceKind, SettleRequest,
};
use tincan_gateway::money::Amount;

/// The benchmarks' destination.
pub const DESTINATION: &str = "+4930123456";

/// A 0.50 hold on `account` under idempotency key `key`.
pub fn reserve(key: String, account: AccountId) -> ReserveRequest {
    ReserveRequest {
        idempotency_key: IdempotencyKey::new(key).unwrap(),
        account: AccountRef::Id { account_id: account },
        service: ServiceKind::Voice,
        destination: E164::parse(DESTINATION).unwrap(),
        amount: Some("0.50".parse().unwrap()),
        seconds: None,
        segments: None,
        ttl_secs: Some(600),
    }
}

/// Settles `hold` at 0.12 under idempotency key `key`.
pub fn settle(key: String, hold: HoldId) -> SettleRequest {
    SettleRequest {
        idempotency_key: IdempotencyKey::new(key).unwrap(),
        hold,
        amount: Some(Amount::from_micros(120_000)),
        seconds: None,
        segments: None,
        carrier: None,
    }
}
