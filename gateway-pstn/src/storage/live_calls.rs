//! Calls in progress and the gateway processes that carry them, kept so that a node restarted after a crash
//! settles what its calls used (up to the last second it confirmed them up) and closes their records.
//!
//! A *run* is one process of a node (`calls.node`); it confirms all its calls at once with a heartbeat. A
//! live call is written when its first slice is held, updated as attempts start, the carrier answers, the hold
//! is extended and the call ends, and deleted once its record is stored and its hold closed.

use async_trait::async_trait;

use super::Result;
use crate::charging::AccountId;
use crate::money::Currency;

/// A call holding credit, as last written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiveCall {
    /// The gateway's call id (`<run>-<n>`).
    pub call_id: String,
    /// The process that carries it.
    pub run_id: String,
    /// The paying account.
    pub account_id: AccountId,
    /// The sequence number of its hold.
    pub hold_seq: i64,
    /// The number called.
    pub destination: String,
    /// The account's currency.
    pub currency: Currency,
    /// When the call came in (Unix ms).
    pub started_at_ms: i64,
    /// The carrier attempt under way or last made (0: none yet).
    pub attempt: u32,
    /// Its carrier.
    pub carrier: Option<String>,
    /// When it started (Unix ms).
    pub attempt_started_at_ms: Option<i64>,
    /// When the carrier answered (Unix ms).
    pub answered_at_ms: Option<i64>,
    /// The seconds from the answer its holds pay for.
    pub paid_seconds: u32,
    /// When the gateway saw the call end (Unix ms).
    pub ended_at_ms: Option<i64>,
    /// The caller's SIP dialog (a digest of its INVITE's Call-ID and From tag), for a call that came over SIP:
    /// written with the call's first hold into a table of its own, where it stays past the call
    /// ([`LiveCallRepository::prune_dialogs`]), so that the same INVITE reaching another node (a proxy's
    /// failover from a node slow to answer) starts no second call. Not read back with the call.
    pub sip_dialog: Option<String>,
}

impl LiveCall {
    /// A call just come in: no attempt, answer or end yet. Its run, account and hold are filled in where they are
    /// known (the call's node, and the ledger when it writes the row with the hold).
    pub fn incoming(call_id: &str, destination: &str, currency: Currency, started_at_ms: i64) -> LiveCall {
        LiveCall {
            call_id: call_id.into(),
            run_id: String::new(),
            account_id: AccountId(0),
            hold_seq: 0,
            destination: destination.into(),
            currency,
            started_at_ms,
            attempt: 0,
            carrier: None,
            attempt_started_at_ms: None,
            answered_at_ms: None,
            paid_seconds: 0,
            ended_at_ms: None,
            sip_dialog: None,
        }
    }
}

/// A process of a node that has not been cleaned up after.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GatewayRun {
    /// Its id.
    pub run_id: String,
    /// Its node.
    pub node: String,
    /// When it last confirmed its calls up (Unix ms).
    pub heartbeat_at_ms: i64,
    /// The run that claimed it to settle its calls (it stopped heartbeating), if one did.
    pub claimed_by: Option<String>,
}

/// Live calls and runs.
#[async_trait]
pub trait LiveCallRepository: Send {
    /// Registers a run of `node` starting at `now_ms`.
    async fn start_run(&mut self, run_id: &str, node: &str, now_ms: i64) -> Result<()>;
    /// Every call of the run that was not seen to end before `at_ms` was up then. False when the run is no
    /// longer its own: another run claimed it (it was silent too long) or it was forgotten.
    async fn heartbeat(&mut self, run_id: &str, at_ms: i64) -> Result<bool>;
    /// The node's runs other than `current`, oldest first.
    async fn stale_runs(&mut self, node: &str, current: &str) -> Result<Vec<GatewayRun>>;
    /// The runs of any node other than `current` whose last heartbeat is before `stale_before_ms`, most
    /// silent first.
    async fn silent_runs(&mut self, current: &str, stale_before_ms: i64) -> Result<Vec<GatewayRun>>;
    /// Claims run `run_id` for `claimer` to settle its calls, with one conditional statement: only if its last
    /// heartbeat is before `stale_before_ms` and no other run holds it that is alive itself (unclaimed, with a
    /// heartbeat at or after `alive_since_ms`). True when `claimer` holds it now (also when it held it
    /// already), so of several runs claiming at once exactly one gets it.
    async fn claim_run(
        &mut self,
        run_id: &str,
        claimer: &str,
        stale_before_ms: i64,
        alive_since_ms: i64,
        now_ms: i64,
    ) -> Result<bool>;
    /// Forgets a run (once its calls are dealt with).
    async fn forget_run(&mut self, run_id: &str) -> Result<()>;
    /// Whether run `run_id` is still its own (registered and not claimed): a call may start under it only if
    /// so, checked in the transaction that writes its first hold and live row. The run's row stays so until
    /// the transaction ends — a concurrent claim waits for it (PostgreSQL: `FOR SHARE`; SQLite: the
    /// transaction holds the only write lock) — so a claimer settling the run's calls after its claim sees
    /// every call this transaction starts, or the call is refused.
    async fn own_run(&mut self, run_id: &str) -> Result<bool>;
    /// Writes a new live call (nothing if it is written already), and takes its SIP dialog if it has one; a
    /// dialog another call took is [`StorageError::Duplicate`](super::StorageError::Duplicate) (check first
    /// with [`LiveCallRepository::dialog_taken`]: this is for two nodes taking it at once).
    async fn open(&mut self, call: &LiveCall) -> Result<()>;
    /// Whether SIP dialog `dialog` was taken by a call other than `call_id`.
    async fn dialog_taken(&mut self, dialog: &str, call_id: &str) -> Result<bool>;
    /// Forgets the SIP dialogs taken before `before_ms`; how many.
    async fn prune_dialogs(&mut self, before_ms: i64) -> Result<u64>;
    /// Carrier attempt `attempt` of the call started at `at_ms`.
    async fn attempt(&mut self, call_id: &str, attempt: u32, carrier: &str, at_ms: i64) -> Result<()>;
    /// The call was answered at `at_ms`; its holds pay `paid_seconds`.
    async fn answered(&mut self, call_id: &str, at_ms: i64, paid_seconds: u32) -> Result<()>;
    /// Its holds now pay `paid_seconds`.
    async fn paid(&mut self, call_id: &str, paid_seconds: u32) -> Result<()>;
    /// The call ended at `at_ms`.
    async fn ended(&mut self, call_id: &str, at_ms: i64) -> Result<()>;
    /// Deletes the call (its record is stored and its hold closed).
    async fn close(&mut self, call_id: &str) -> Result<()>;
    /// The calls of a run.
    async fn of_run(&mut self, run_id: &str) -> Result<Vec<LiveCall>>;
}
