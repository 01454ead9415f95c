//! One ordered queue per portal: Matrix events and remote events of one chat are handled one at a time, in
//! the order they arrived, by a worker task that lives as long as the bridge. Both kinds are recorded before
//! they get here (the inbox, the remote queue), so the in-memory queue is only the order of work, never its
//! only copy.

use super::{BridgeError, BridgeHandle, Result};
use crate::connector::RemoteEvent;
use crate::ids::PortalKey;
use ruma::OwnedEventId;
use ruma::events::OriginalMessageLikeEvent;
use ruma::events::room::message::RoomMessageEventContent;
use tokio::sync::mpsc;

/// A Matrix event for the network.
#[derive(Debug)]
pub(crate) enum MatrixWork {
    /// A message, or an edit (`m.replace`) of one.
    Message(Box<OriginalMessageLikeEvent<RoomMessageEventContent>>),
    /// A reaction.
    Reaction { target: OwnedEventId, key: String },
    /// A redaction.
    Redaction { target: OwnedEventId },
    /// A read receipt of the local user.
    ReadReceipt { event_id: OwnedEventId },
    /// The local user's typing state.
    Typing { typing: bool },
    /// A VoIP event (`m.call.*`) of the local user.
    Call(crate::connector::MatrixCall),
    /// The local user left the portal room: the connector is told and the room forgotten (a group portal is
    /// kept without a room), a new room is made when needed.
    ReceiverLeft,
    /// The local user kicked (or banned) the ghost of a remote user from the portal room.
    GhostRemoved { user: crate::RemoteUserId, reason: Option<String>, banned: bool },
}

/// Work for a portal's queue.
#[derive(Debug)]
pub(crate) enum Work {
    /// An inbox event; marked done once handled.
    Matrix { seq: i64, work: MatrixWork },
    /// An event from the network, recorded in the remote queue at `seq`; marked done once bridged.
    Remote { seq: i64, event: RemoteEvent },
}

/// Adds `work` to the queue of `key`, starting its worker when needed.
pub(crate) fn enqueue(bridge: &BridgeHandle, key: &PortalKey, work: Work) -> Result<()> {
    let mut portals = bridge.0.portals.lock().expect("not poisoned");
    if *bridge.0.shutdown.borrow() {
        return Err(BridgeError::Stopped);
    }
    let tx = portals.entry(key.clone()).or_insert_with(|| {
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(worker(bridge.clone(), key.clone(), rx));
        tx
    });
    tx.send(work).map_err(|_| BridgeError::Stopped)
}

async fn worker(bridge: BridgeHandle, key: PortalKey, mut rx: mpsc::UnboundedReceiver<Work>) {
    let mut shutdown = bridge.0.shutdown.subscribe();
    loop {
        let work = tokio::select! {
            w = rx.recv() => match w { Some(w) => w, None => return },
            _ = shutdown.wait_for(|s| *s) => return,
        };
        match work {
            Work::Matrix { seq, work } => {
                let replay = seq <= bridge.0.replay_until;
                let mapping = match super::matrix::handle(&bridge, &key, work, replay).await {
                    Ok(mapping) => mapping,
                    Err(e) => {
                        bridge.0.metrics.inc(&bridge.0.metrics.matrix_failures);
                        tracing::warn!(error = %e, seq, "Matrix event not bridged");
                        None
                    }
                };
                // Done whether the network took it or refused it for good: a refusal is reported in the room,
                // and retrying forever would block the portal. Only a crash before the mark is committed
                // replays it. The mapping is recorded with the mark, in a commit shared with other events.
                bridge.inbox_done(seq, mapping);
            }
            Work::Remote { seq, event } => {
                if !super::remote::bridge_until_done(&bridge, seq, event, &mut shutdown).await {
                    return;
                }
            }
        }
    }
}
