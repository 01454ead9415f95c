//! Delivery receipts into the outbox, in batches: one transaction for whatever arrived meanwhile, then each
//! receipt's `deliver_sm` is answered (so the SMSC resends any that were not recorded).

use crate::protocol::dlr::{Receipt, id_candidates};
use crate::store::{Store, StoreError};
use std::sync::Arc;
use tincan_common::Clock;
use tokio::sync::{Notify, mpsc, oneshot};
use tokio::task::JoinHandle;

/// Where sessions hand receipts.
#[derive(Debug, Clone)]
pub(crate) struct ReceiptSink(mpsc::UnboundedSender<(Receipt, oneshot::Sender<bool>)>);

impl ReceiptSink {
    /// Records `receipt`; `true` once it is durable.
    pub(crate) async fn record(&self, receipt: Receipt) -> bool {
        let (tx, rx) = oneshot::channel();
        if self.0.send((receipt, tx)).is_err() {
            return false;
        }
        rx.await.unwrap_or(false)
    }
}

/// Starts the writer; `changed` is notified after each batch.
pub(crate) fn spawn(
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    changed: Arc<Notify>,
) -> (ReceiptSink, JoinHandle<()>) {
    let (tx, rx) = mpsc::unbounded_channel();
    (ReceiptSink(tx), tokio::spawn(run(store, clock, rx, changed)))
}

/// The reason shown for a failed message: the state, and the SMSC's error code when it gave one.
fn reason(r: &Receipt) -> Option<String> {
    let code = match (&r.error, r.network_error) {
        (_, Some(n)) => Some(format!("network {} error {}", n.network, n.code)),
        (Some(e), None) => Some(format!("error {e}")),
        (None, None) => None,
    }?;
    Some(format!("{} ({code})", r.state.describe()))
}

async fn run(
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    mut rx: mpsc::UnboundedReceiver<(Receipt, oneshot::Sender<bool>)>,
    changed: Arc<Notify>,
) {
    let mut batch = Vec::new();
    loop {
        if rx.recv_many(&mut batch, 256).await == 0 {
            return;
        }
        let now = clock.now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0);
        let result = async {
            let mut tx = store.begin().await?;
            for (r, _) in &batch {
                tx.outbox().receipt(&id_candidates(&r.message_id), r.state, reason(r).as_deref(), now).await?;
            }
            tx.commit().await?;
            Ok::<_, StoreError>(())
        }
        .await;
        if let Err(e) = &result {
            tracing::error!(error = %e, "recording delivery receipts failed; the SMSC will resend them");
        }
        for (_, done) in batch.drain(..) {
            let _ = done.send(result.is_ok());
        }
        changed.notify_waiters();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::dlr::{DeliveryState, NetworkError};

    #[test]
    fn reasons_name_the_carriers_code() {
        let mut r =
            Receipt { message_id: "1".into(), state: DeliveryState::Undeliverable, error: None, network_error: None };
        assert_eq!(reason(&r), None);
        r.error = Some("034".into());
        assert_eq!(reason(&r).as_deref(), Some("undeliverable (error 034)"));
        r.network_error = Some(NetworkError { network: 3, code: 27 });
        assert_eq!(reason(&r).as_deref(), Some("undeliverable (network 3 error 27)"));
    }
}
