//! Matrix → network: one portal's Matrix events handed to the connector's login API, IDs mapped both ways.

use super::portal::MatrixWork;
use super::{BridgeHandle, Result};
use crate::connector::{ConnectorError, MatrixMessage, PortalRef};
use crate::ids::{PortalKey, escape_localpart};
use crate::store::MessageMapping;
use ruma::events::room::message::{Relation, RoomMessageEventContent};

use std::time::Duration;

/// Temporary connector failures are tried this many times in all.
const ATTEMPTS: u32 = 4;

/// Hands `work` to the connector. `replay`: the event was recorded before this start, so an earlier run may
/// have handled it already (a message is then looked up in the message map first and not sent twice).
pub(crate) async fn handle(
    bridge: &BridgeHandle,
    key: &PortalKey,
    work: MatrixWork,
    replay: bool,
) -> Result<Option<MessageMapping>> {
    let Some(portal) = bridge.portal(key).await? else {
        return Ok(None);
    };
    let work = match work {
        MatrixWork::ReceiverLeft => {
            super::group::receiver_left(bridge, portal).await?;
            return Ok(None);
        }
        MatrixWork::GhostRemoved { user, reason, banned } => {
            super::group::ghost_removed(bridge, portal, &user, reason.as_deref(), banned).await?;
            return Ok(None);
        }
        work => work,
    };
    let caps = bridge.0.connector.capabilities();
    let supported = match &work {
        MatrixWork::Message(ev) => caps.edits || !matches!(ev.content.relates_to, Some(Relation::Replacement(_))),
        MatrixWork::Reaction { .. } => caps.reactions,
        MatrixWork::Redaction { .. } => caps.redactions,
        MatrixWork::ReadReceipt { .. } => caps.read_receipts,
        MatrixWork::Typing { .. } => caps.typing,
        MatrixWork::Call(_) => caps.calls,
        MatrixWork::ReceiverLeft | MatrixWork::GhostRemoved { .. } => true,
    };
    if !supported {
        // The network has no such thing: the connector is not asked (its default would say `Unsupported`).
        tracing::debug!(network = bridge.0.connector.name(), "Matrix event kind not supported by the network");
        return Ok(None);
    }
    let Some(api) = bridge.login(&key.receiver).await? else {
        return Ok(None);
    };
    let pref = PortalRef::from(&portal);
    // The message a failure is reported on (edits, reactions and the rest get the notice only).
    let reported = match &work {
        MatrixWork::Message(ev) if !matches!(ev.content.relates_to, Some(Relation::Replacement(_))) => {
            Some(ev.event_id.clone())
        }
        _ => None,
    };
    let result = match work {
        MatrixWork::Message(ev) => {
            let message = |content: &RoomMessageEventContent| MatrixMessage {
                event_id: ev.event_id.clone(),
                sender: ev.sender.clone(),
                msgtype: content.msgtype().to_owned(),
                body: content.body().to_owned(),
                media: None,
            };
            match &ev.content.relates_to {
                Some(Relation::Replacement(r)) => {
                    let Some(target) = bridge.message_by_event(key, &r.event_id).await? else {
                        return Ok(None);
                    };
                    let new = RoomMessageEventContent::new(r.new_content.msgtype.clone());
                    let msg = message(&new);
                    retry(|| api.handle_matrix_edit(&pref, &target.remote_id, &msg)).await
                }
                _ => {
                    // Handled before a crash that came ahead of its done mark: never send it twice. An event
                    // recorded since this start cannot have been (it is handed to a portal once; its mapping is
                    // committed with its done mark), so only a replayed one costs a lookup.
                    if replay && bridge.message_by_event(key, &ev.event_id).await?.is_some() {
                        return Ok(None);
                    }
                    let mut msg = message(&ev.content);
                    let fetched = if caps.media {
                        let ghost = bridge.0.namer.user_id(&portal.other_user);
                        super::media::fetch(bridge, &ghost, &ev.content.msgtype).await
                    } else {
                        Ok(None)
                    };
                    let sent = match fetched {
                        Ok(media) => {
                            msg.media = media;
                            retry(|| api.handle_matrix_message(&pref, &msg)).await
                        }
                        Err(e) => Err(e),
                    };
                    match sent {
                        Ok(remote_id) => {
                            // Recorded by the worker together with marking the event done (one commit).
                            return Ok(Some(MessageMapping {
                                portal: key.clone(),
                                remote_id,
                                event_id: ev.event_id.clone(),
                                room_id: ev.room_id.clone(),
                                sender: ev.sender.clone(),
                                metadata: Default::default(),
                            }));
                        }
                        Err(e) => Err(e),
                    }
                }
            }
        }
        MatrixWork::Reaction { target, key: emoji } => match bridge.message_by_event(key, &target).await? {
            Some(m) => retry(|| api.handle_matrix_reaction(&pref, &m.remote_id, &emoji)).await,
            None => Ok(()),
        },
        MatrixWork::Redaction { target } => match bridge.message_by_event(key, &target).await? {
            Some(m) => retry(|| api.handle_matrix_redaction(&pref, &m.remote_id)).await,
            None => Ok(()),
        },
        MatrixWork::ReadReceipt { event_id } => match bridge.message_by_event(key, &event_id).await? {
            Some(m) => api.handle_matrix_read_receipt(&pref, &m.remote_id).await,
            None => Ok(()),
        },
        MatrixWork::Typing { typing } => api.handle_matrix_typing(&pref, typing).await,
        MatrixWork::Call(call) => {
            // Not retried and no notice: a call the network cannot place is answered in the call itself
            // (the connector hangs up or rejects), and a retry would come too late to matter.
            if let Err(e) = api.handle_matrix_call(&pref, &call).await {
                tracing::warn!(error = %e, event_type = %call.event_type, "VoIP event not bridged");
            }
            Ok(())
        }
        MatrixWork::ReceiverLeft | MatrixWork::GhostRemoved { .. } => Ok(()),
    };
    match result {
        Ok(()) => Ok(None),
        // Receipts and typing are best effort; say nothing when the network has none.
        Err(ConnectorError::Unsupported) => Ok(None),
        Err(e) => {
            if let Some(room) = &portal.room_id {
                match &reported {
                    Some(event_id) => {
                        let ghost = bridge.0.namer.user_id(&portal.other_user);
                        let report = super::status::Report::of_error(&e);
                        let txn = format!("tc.st.{}", escape_localpart(event_id.as_str()));
                        if let Err(e) = super::status::show(bridge, room, &ghost, event_id, &report, &txn).await {
                            tracing::warn!(error = %e, "reporting a failed message failed");
                        }
                    }
                    None => {
                        let notice = format!("⚠ Not delivered: {e}");
                        super::remote::send_notice(bridge, room, &portal.other_user, &notice).await;
                    }
                }
            }
            Err(e.into())
        }
    }
}

async fn retry<T, F, Fut>(mut call: F) -> Result<T, ConnectorError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, ConnectorError>>,
{
    let mut delay = Duration::from_millis(200);
    let mut attempt = 1;
    loop {
        match call().await {
            Err(ConnectorError::Temporary(why)) if attempt < ATTEMPTS => {
                tracing::debug!(%why, attempt, "temporary network failure, retrying");
                tokio::time::sleep(delay).await;
                delay *= 2;
                attempt += 1;
            }
            other => return other,
        }
    }
}
