//! Number porting between providers: a port request's life after it is filed (`POST /v1/ports`). The losing
//! provider releases it (the number moves at once) or objects with a reason from a fixed list before its window
//! ends; without either the number moves when the window ends, found by [`sweep`] (every
//! `ports.check_interval_secs`) or by the next read of the request.
//!
//! A move is one transaction: the number's holder, routes and key change, the journal gets the change and the
//! transparency log a [`tincan_translog::LogEntry::Port`] naming both providers, and the request closes. A
//! request whose number changed holder or was removed meanwhile is cancelled instead (it moves nothing).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use tincan_common::Clock;
use tincan_enum_core::NumberRecord;

use crate::api::{WriteLock, ZoneWriter};
use crate::change::ChangeError;
use crate::config::PortsConfig;
use crate::storage::{PortRequest, PortState, ProviderId, Storage, StorageError};

/// What happens to ports, and who is told: shared by the API and the sweep.
#[derive(Debug)]
pub struct Porting {
    /// The losing provider's window.
    pub window: Duration,
    webhooks: BTreeMap<String, String>,
    http: reqwest::Client,
}

/// What a port request's webhook says happened (the receiver reads the rest with its token).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PortEvent {
    /// A request was filed (sent to the losing provider).
    Filed,
    /// The gaining provider amended a pending request, e.g. with the new account's key (sent to the losing
    /// provider, which may be waiting for it to release the number).
    Amended,
    /// The number moved (sent to both).
    Completed,
    /// The losing provider objected (sent to both).
    Objected,
    /// The request was void (sent to both).
    Cancelled,
}

impl Porting {
    /// From the config.
    pub fn new(config: &PortsConfig) -> Porting {
        let http = reqwest::Client::builder().timeout(Duration::from_secs(10)).build().expect("HTTP client");
        Porting { window: Duration::from_secs(config.window_secs), webhooks: config.webhooks.clone(), http }
    }

    /// Tells `providers` (by name) about `event` on port `id`, in the background: a webhook that fails is
    /// logged, not retried (the providers also list their open ports with `GET /v1/ports`).
    pub fn notify(&self, id: i64, event: PortEvent, providers: &[&str]) {
        for name in providers {
            let Some(url) = self.webhooks.get(*name) else { continue };
            let (http, url, name) = (self.http.clone(), url.clone(), (*name).to_owned());
            tokio::spawn(async move {
                let body = serde_json::json!({ "port_id": id, "event": event });
                match http.post(&url).json(&body).send().await {
                    Ok(r) if r.status().is_success() => {}
                    Ok(r) => {
                        tracing::warn!(provider = %name, port_id = id, status = %r.status(), "port webhook refused")
                    }
                    Err(e) => tracing::warn!(provider = %name, port_id = id, error = %e, "port webhook failed"),
                }
            });
        }
    }
}

/// How [`close`] ended a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Closed {
    /// The number moved; the request as closed.
    Completed(PortRequest),
    /// The request was void (the number changed holder or was removed); nothing moved.
    Cancelled(PortRequest),
    /// It was not pending (closed by someone else first); as it is now.
    NotPending(PortRequest),
}

impl Closed {
    /// The request as it is now.
    pub fn request(&self) -> &PortRequest {
        match self {
            Closed::Completed(p) | Closed::Cancelled(p) | Closed::NotPending(p) => p,
        }
    }
}

/// Moves the number of pending request `id` to its gaining provider (released, or its window ended): one
/// transaction, then published in the zone; the parties are notified. `None` when there is no such request.
pub async fn complete(
    storage: &dyn Storage,
    zone: &dyn ZoneWriter,
    writes: &WriteLock,
    porting: &Porting,
    id: i64,
) -> Result<Option<Closed>, ChangeError> {
    let _order = writes.lock().await;
    let mut tx = storage.begin().await?;
    let Some(port) = tx.ports().get(id).await? else { return Ok(None) };
    if port.state != PortState::Pending {
        return Ok(Some(Closed::NotPending(port)));
    }
    let losing = tx.providers().by_id(port.losing).await?;
    let gaining = tx.providers().by_id(port.gaining).await?;
    let current = tx.numbers().get(&port.number).await?;
    let (Some(losing), Some(gaining), Some(current)) = (losing, gaining, current) else {
        return cancel(tx, porting, port, &[]).await;
    };
    if current.provider != port.losing {
        return cancel(tx, porting, port, &[&losing.name, &gaining.name]).await;
    }
    let record = NumberRecord { number: port.number.clone(), services: port.services.clone(), key: port.key };
    let signed = zone.sign(&record)?;
    let stored = tx
        .numbers()
        .port_signed(
            &record,
            (losing.id, &losing.name),
            (gaining.id, &gaining.name),
            signed.as_ref().map(crate::dns::SignedEntry::as_bytes),
        )
        .await?;
    tx.ports().close(id, PortState::Completed, None).await?;
    let closed = tx.ports().get(id).await?.ok_or(StorageError::Corrupt { table: "port_requests", column: "id" })?;
    tx.commit().await?;
    zone.publish(&stored.record, signed);
    let redacted = tincan_common::telemetry::redact_number(port.number.as_str());
    tracing::info!(number = %redacted, from = %losing.name, to = %gaining.name, version = stored.version, "number ported");
    porting.notify(id, PortEvent::Completed, &[&losing.name, &gaining.name]);
    Ok(Some(Closed::Completed(closed)))
}

async fn cancel(
    mut tx: Box<dyn crate::storage::Repository>,
    porting: &Porting,
    port: PortRequest,
    parties: &[&str],
) -> Result<Option<Closed>, ChangeError> {
    tx.ports().close(port.id, PortState::Cancelled, None).await?;
    let closed = tx.ports().get(port.id).await?.unwrap_or(port);
    tx.commit().await?;
    porting.notify(closed.id, PortEvent::Cancelled, parties);
    Ok(Some(Closed::Cancelled(closed)))
}

/// Completes `port` if its window has ended (a read of a request does this, so its reader never sees one
/// pending past its window); returns it as it is then.
pub async fn settle(
    storage: &dyn Storage,
    zone: &dyn ZoneWriter,
    writes: &WriteLock,
    porting: &Porting,
    clock: &dyn Clock,
    port: PortRequest,
) -> Result<PortRequest, ChangeError> {
    if port.state != PortState::Pending || port.window_ends_at > clock.now() {
        return Ok(port);
    }
    Ok(complete(storage, zone, writes, porting, port.id).await?.map(|c| c.request().clone()).unwrap_or(port))
}

/// Completes every pending request whose window has ended; returns how many numbers moved.
pub async fn sweep(
    storage: &dyn Storage,
    zone: &dyn ZoneWriter,
    writes: &WriteLock,
    porting: &Porting,
    clock: &dyn Clock,
) -> Result<usize, ChangeError> {
    let mut moved = 0;
    loop {
        let due = storage.begin_read().await?.ports().due(clock.now(), 100).await?;
        if due.is_empty() {
            return Ok(moved);
        }
        for port in due {
            if let Some(Closed::Completed(_)) = complete(storage, zone, writes, porting, port.id).await? {
                moved += 1;
            }
        }
    }
}

/// Runs [`sweep`] every `every` until `stop` resolves; a failure is logged and retried on the next tick.
pub async fn sweep_loop(
    storage: Arc<dyn Storage>,
    zone: Arc<dyn ZoneWriter>,
    writes: WriteLock,
    porting: Arc<Porting>,
    clock: Arc<dyn Clock>,
    every: Duration,
    stop: impl Future<Output = ()>,
) {
    tokio::pin!(stop);
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = &mut stop => return,
            _ = tick.tick() => {}
        }
        match sweep(&*storage, &*zone, &writes, &porting, &*clock).await {
            Ok(0) => {}
            Ok(moved) => tracing::info!(moved, "ports completed at the end of their window"),
            Err(e) => tracing::warn!(error = %e, "completing ports failed; retrying at the next tick"),
        }
    }
}

/// Whether `provider` is the losing or gaining side of `port` (`None`: neither).
pub fn side(port: &PortRequest, provider: ProviderId) -> Option<&'static str> {
    if port.losing == provider {
        Some("losing")
    } else if port.gaining == provider {
        Some("gaining")
    } else {
        None
    }
}
