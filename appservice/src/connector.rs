//! The interface a network connector implements: the network side of a bridge, and nothing of Matrix.
//!
//! After mautrix bridgev2's `networkinterface.go`: a [`NetworkConnector`] per network (name, ghost prefix,
//! [`Capabilities`], start) and a [`NetworkApi`] per login, that is per local Matrix user bridged to the network.
//! Optional operations have a default that returns [`ConnectorError::Unsupported`]; a connector declares what it
//! implements in its [`Capabilities`] so that the core can tell users before trying. Remote events enter the
//! core through one call, [`crate::BridgeHandle::queue_remote_event`].

use crate::ids::{PortalKey, RemoteMessageId, RemoteUserId};
use crate::store::{Metadata, Portal};
use async_trait::async_trait;
use ruma::{OwnedEventId, OwnedUserId};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::Duration;

/// Why a connector could not do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum ConnectorError {
    /// The network (or this connector) has no such operation.
    #[error("not supported by this network")]
    Unsupported,
    /// The operation failed for now and may succeed if tried again (link down, remote busy).
    #[error("temporary network failure: {0}")]
    Temporary(String),
    /// The network refused the operation (unknown recipient, message too long, blocked).
    #[error("rejected by the network: {0}")]
    Rejected(String),
}

/// What a connector supports beyond plain text messages.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Capabilities {
    /// Matrix edits (`m.replace`) are passed to the network.
    pub edits: bool,
    /// Matrix redactions delete the remote message.
    pub redactions: bool,
    /// Matrix reactions are passed to the network.
    pub reactions: bool,
    /// Matrix read receipts are passed to the network.
    pub read_receipts: bool,
    /// Matrix typing notifications are passed to the network.
    pub typing: bool,
    /// `m.protocol.pstn` third-party lookups resolve phone numbers to ghosts.
    pub pstn_lookup: bool,
    /// Matrix VoIP events (`m.call.*`) are passed to the network ([`NetworkApi::handle_matrix_call`]).
    pub calls: bool,
    /// Attachments (`m.image`, `m.file`, `m.audio`, `m.video`) reach the connector with their bytes
    /// ([`MatrixMessage::media`]), downloaded and decrypted by the core up to `media.max_bytes`. Without it
    /// such messages still reach the connector, with their `msgtype` and body but no bytes.
    pub media: bool,
}

impl Capabilities {
    /// Text messages only.
    pub fn text_only() -> Self {
        Self::default()
    }

    /// Everything the core can bridge.
    pub fn all() -> Self {
        Self {
            edits: true,
            redactions: true,
            reactions: true,
            read_receipts: true,
            typing: true,
            pstn_lookup: true,
            calls: true,
            media: true,
        }
    }
}

/// Profile of a remote user, shown on its ghost.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RemoteProfile {
    /// The display name.
    pub display_name: Option<String>,
    /// An avatar already uploaded to the homeserver (`mxc://…`).
    pub avatar_url: Option<String>,
}

/// A network connector: one per bridge process.
#[async_trait]
pub trait NetworkConnector: Send + Sync + 'static {
    /// Short lower-case network name (`sms`, `sip`), used in logs and metrics.
    fn name(&self) -> &str;
    /// The default ghost localpart prefix (`sms_`); the config may override it.
    fn ghost_prefix(&self) -> &str;
    /// What this network supports.
    fn capabilities(&self) -> Capabilities;
    /// Starts the network side (connect to the SMSC, register with the SIP proxy…). `bridge` is the handle to
    /// queue remote events with; the connector keeps it.
    async fn start(&self, bridge: crate::BridgeHandle) -> Result<(), ConnectorError>;
    /// The login of a local Matrix user, `None` when that user is not bridged to the network.
    async fn login(&self, user: &ruma::UserId) -> Result<Option<Arc<dyn NetworkApi>>, ConnectorError>;
    /// The profile of a remote user, for its ghost.
    async fn remote_profile(&self, user: &RemoteUserId) -> Result<RemoteProfile, ConnectorError> {
        Ok(RemoteProfile { display_name: Some(user.to_string()), avatar_url: None })
    }
    /// Whether `user` is a valid identity on this network (ghost queries from the homeserver ask this).
    fn is_valid_remote_user(&self, user: &RemoteUserId) -> bool {
        !user.as_str().is_empty()
    }
    /// Maps a phone number, already normalised to E.164 by the core, to a remote user (`m.protocol.pstn`).
    fn remote_user_for_phone(&self, e164: &str) -> Result<Option<RemoteUserId>, ConnectorError> {
        let _ = e164;
        Err(ConnectorError::Unsupported)
    }
    /// `login <args>` from `user` in the management room: checks what the user gave (the number they send
    /// from, credentials…) and returns the login to keep, or why not ([`ConnectorError::Rejected`]). The core
    /// stores it in the bridge's database, replacing an earlier one, and asks [`NetworkConnector::login`] again
    /// for the user's next event: read the stored login there with
    /// `bridge.store().user_login(user)` ([`crate::store::LoginRepository`]). The default: no logins here.
    async fn create_login(&self, user: &ruma::UserId, args: &str) -> Result<NewLogin, ConnectorError> {
        let _ = (user, args);
        Err(ConnectorError::Unsupported)
    }
    /// `logout` from `user`: their stored `login` is about to be deleted; undo what the network keeps for it.
    /// The core deletes the login whatever this returns (an error is told to the user).
    async fn delete_login(&self, user: &ruma::UserId, login: &crate::store::UserLogin) -> Result<(), ConnectorError> {
        let _ = (user, login);
        Ok(())
    }
}

/// What [`NetworkConnector::create_login`] accepted: kept by the core as the user's
/// [`crate::store::UserLogin`].
#[derive(Debug, Clone, PartialEq)]
pub struct NewLogin {
    /// Who the user is on the network (shown by `status`).
    pub remote_id: RemoteUserId,
    /// Connector data (credentials, settings).
    pub metadata: Metadata,
}

/// A Matrix message going to the network.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MatrixMessage {
    /// The Matrix event.
    pub event_id: OwnedEventId,
    /// The sender (the portal's receiver).
    pub sender: OwnedUserId,
    /// The `msgtype` (`m.text`, `m.notice`, `m.emote`, `m.image`, `m.file`, `m.audio`, `m.video`…).
    pub msgtype: String,
    /// The plain-text body (for attachments: the caption or the file name).
    pub body: String,
    /// The attachment of `m.image`, `m.file`, `m.audio` and `m.video` messages, when the connector declares
    /// [`Capabilities::media`].
    pub media: Option<Media>,
}

/// An attachment, decrypted: what a connector sends and receives.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Media {
    /// Its MIME type (`image/png`), as the sender declared it.
    pub mimetype: Option<String>,
    /// Its file name.
    pub filename: String,
    /// The bytes (stored base64 in the remote queue).
    #[serde(with = "base64_bytes")]
    pub data: Vec<u8>,
}

impl std::fmt::Debug for Media {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Media")
            .field("mimetype", &self.mimetype)
            .field("filename", &self.filename)
            .field("bytes", &self.data.len())
            .finish()
    }
}

/// The kind of an attachment sent into Matrix (its `msgtype`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MediaKind {
    /// `m.image`.
    Image,
    /// `m.file`.
    File,
    /// `m.audio`.
    Audio,
    /// `m.video`.
    Video,
}

impl MediaKind {
    /// The `msgtype`.
    pub fn msgtype(self) -> &'static str {
        match self {
            MediaKind::Image => "m.image",
            MediaKind::File => "m.file",
            MediaKind::Audio => "m.audio",
            MediaKind::Video => "m.video",
        }
    }

    /// The kind of a `msgtype`, if it is an attachment.
    pub fn of_msgtype(msgtype: &str) -> Option<Self> {
        match msgtype {
            "m.image" => Some(MediaKind::Image),
            "m.file" => Some(MediaKind::File),
            "m.audio" => Some(MediaKind::Audio),
            "m.video" => Some(MediaKind::Video),
            _ => None,
        }
    }
}

/// Bytes as standard base64 in JSON.
mod base64_bytes {
    use base64::Engine;
    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(b: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&base64::engine::general_purpose::STANDARD.encode(b))
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let text = String::deserialize(d)?;
        base64::engine::general_purpose::STANDARD.decode(text).map_err(serde::de::Error::custom)
    }
}

/// A Matrix VoIP event (`m.call.invite`, `m.call.candidates`, `m.call.answer`, `m.call.hangup`…) going to the
/// network. The content is passed as JSON: the connector reads the fields its call model needs.
#[derive(Debug, Clone, PartialEq)]
pub struct MatrixCall {
    /// The Matrix event.
    pub event_id: OwnedEventId,
    /// The sender (the portal's receiver).
    pub sender: OwnedUserId,
    /// The event type (`m.call.invite`).
    pub event_type: String,
    /// The event content.
    pub content: serde_json::Value,
}

/// What a remote group chat is, after mautrix bridgev2's `ChatInfo`: its name and its remote participants.
/// Queued as [`RemoteEventKind::ChatInfo`] when the chat starts and whenever it changes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatInfo {
    /// The chat's name, shown as the room name; `None` leaves the name as it is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The remote participants, each shown by its ghost in the room (the portal's receiver is not one of
    /// them). The first one creates the room; one no longer listed leaves it.
    pub members: Vec<RemoteUserId>,
}

/// The portal an operation concerns, as the connector sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct PortalRef {
    /// Receiver and chat.
    pub key: PortalKey,
    /// The remote user of this direct chat; in a group chat, the participant whose ghost hosts the room.
    pub other_user: RemoteUserId,
    /// Whether the chat is a group (see [`Portal::is_group`]).
    pub is_group: bool,
    /// Connector data stored with the portal.
    pub metadata: Metadata,
}

impl From<&Portal> for PortalRef {
    fn from(p: &Portal) -> Self {
        Self {
            key: p.key.clone(),
            other_user: p.other_user.clone(),
            is_group: p.is_group,
            metadata: p.metadata.clone(),
        }
    }
}

/// The network side of one login (one local user).
#[async_trait]
pub trait NetworkApi: Send + Sync {
    /// Sends a Matrix message to the network; returns the remote message ID it got.
    async fn handle_matrix_message(
        &self,
        portal: &PortalRef,
        message: &MatrixMessage,
    ) -> Result<RemoteMessageId, ConnectorError>;

    /// Edits a message already sent (`m.replace`).
    async fn handle_matrix_edit(
        &self,
        portal: &PortalRef,
        target: &RemoteMessageId,
        new_content: &MatrixMessage,
    ) -> Result<(), ConnectorError> {
        let _ = (portal, target, new_content);
        Err(ConnectorError::Unsupported)
    }

    /// Reacts to a message with `key` (an emoji).
    async fn handle_matrix_reaction(
        &self,
        portal: &PortalRef,
        target: &RemoteMessageId,
        key: &str,
    ) -> Result<(), ConnectorError> {
        let _ = (portal, target, key);
        Err(ConnectorError::Unsupported)
    }

    /// Deletes a message.
    async fn handle_matrix_redaction(
        &self,
        portal: &PortalRef,
        target: &RemoteMessageId,
    ) -> Result<(), ConnectorError> {
        let _ = (portal, target);
        Err(ConnectorError::Unsupported)
    }

    /// The local user read the chat up to `up_to`.
    async fn handle_matrix_read_receipt(
        &self,
        portal: &PortalRef,
        up_to: &RemoteMessageId,
    ) -> Result<(), ConnectorError> {
        let _ = (portal, up_to);
        Err(ConnectorError::Unsupported)
    }

    /// The local user started or stopped typing.
    async fn handle_matrix_typing(&self, portal: &PortalRef, typing: bool) -> Result<(), ConnectorError> {
        let _ = (portal, typing);
        Err(ConnectorError::Unsupported)
    }

    /// A VoIP event of the local user (`m.call.*`). Calls are timely: return at once and do the work
    /// elsewhere; an error here is not retried.
    async fn handle_matrix_call(&self, portal: &PortalRef, call: &MatrixCall) -> Result<(), ConnectorError> {
        let _ = (portal, call);
        Err(ConnectorError::Unsupported)
    }

    /// The local user invited the ghost of `user` into the portal's room (a group chat gains a participant).
    /// `Ok` lets the ghost join; an error turns the invite down, with the error as the reason.
    async fn handle_matrix_invite(&self, portal: &PortalRef, user: &RemoteUserId) -> Result<(), ConnectorError> {
        let _ = (portal, user);
        Err(ConnectorError::Unsupported)
    }

    /// The local user left the portal's room (or was removed from it): in a group chat the user leaves the chat.
    /// The core forgets the room whatever this returns (an error is logged): the chat goes on in a new room
    /// when it does (a group chat's portal keeps its group flag, host and metadata for it).
    async fn handle_matrix_leave(&self, portal: &PortalRef) -> Result<(), ConnectorError> {
        let _ = portal;
        Err(ConnectorError::Unsupported)
    }

    /// The local user removed the ghost of `user` from the portal's room (a kick, or a ban; `reason` as they
    /// gave it). In a group chat, `Ok` removes the participant from the chat; an error (also
    /// [`ConnectorError::Unsupported`]) brings the ghost back into the room and tells the user why, so the
    /// room keeps showing who is in the chat. In a direct chat the partner's ghost removed ends the portal
    /// whatever this returns (the next message opens a new room).
    async fn handle_matrix_kick(
        &self,
        portal: &PortalRef,
        user: &RemoteUserId,
        reason: Option<&str>,
    ) -> Result<(), ConnectorError> {
        let _ = (portal, user, reason);
        Err(ConnectorError::Unsupported)
    }
}

/// An event from the network, queued with [`crate::BridgeHandle::queue_remote_event`].
///
/// Queued events are persisted as JSON until bridged: keep the serialized shape backward compatible (new
/// variants and optional fields only) so that events queued by an older version still replay.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RemoteEvent {
    /// The portal: local receiver and remote chat.
    pub portal: PortalKey,
    /// Who did it on the network.
    pub sender: RemoteUserId,
    /// What happened.
    pub kind: RemoteEventKind,
}

/// What happened on the network.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum RemoteEventKind {
    /// A new text message.
    Message {
        /// Its remote ID (used for dedup and later edits, redactions, receipts).
        id: RemoteMessageId,
        /// The text.
        body: String,
    },
    /// An edit of an earlier message.
    Edit {
        /// The edited message.
        target: RemoteMessageId,
        /// The new text.
        body: String,
    },
    /// A deleted message.
    Redaction {
        /// The deleted message.
        target: RemoteMessageId,
    },
    /// A reaction.
    Reaction {
        /// The message reacted to.
        target: RemoteMessageId,
        /// The emoji.
        key: String,
    },
    /// The remote user read the chat up to a message.
    ReadReceipt {
        /// The last message read.
        up_to: RemoteMessageId,
    },
    /// A VoIP event of the remote user (`m.call.invite`, `m.call.answer`, `m.call.hangup`…), sent as is.
    Call {
        /// The event type.
        event_type: String,
        /// The event content.
        content: serde_json::Value,
    },
    /// The remote user is typing (or stopped).
    Typing {
        /// For how long; zero to stop.
        #[serde(rename = "timeout_ms", with = "duration_ms")]
        timeout: Duration,
    },
    /// A new attachment (an MMS image, a file): uploaded by the core (encrypted in an encrypted room) and sent
    /// as `m.image`/`m.file`/`m.audio`/`m.video`. Bigger than `media.max_bytes` is refused when queued.
    Media {
        /// Its remote ID, as for [`RemoteEventKind::Message`].
        id: RemoteMessageId,
        /// Which `msgtype`.
        kind: MediaKind,
        /// The attachment.
        media: Media,
        /// A caption (else the file name is the body).
        caption: Option<String>,
    },
    /// The chat is a group with these participants (its start, a participant added or gone, a new name): the
    /// portal's room — created as a group room when missing, encrypted with end-to-bridge encryption — gets
    /// the ghosts of the listed participants, and the ghosts of those no longer listed leave it. Queue it
    /// before the group's first message; a message from a participant whose ghost is not in the room yet
    /// brings it in too.
    ChatInfo(ChatInfo),
    /// What became of a Matrix message on the network (a delivery report, a final answer): see
    /// [`MessageStatus`]. Usually queued with [`crate::BridgeHandle::report_message_status`].
    MessageStatus {
        /// The Matrix event ([`MatrixMessage::event_id`]); it may come before the connector's
        /// `handle_matrix_message` for it has returned.
        event_id: OwnedEventId,
        /// What happened.
        status: MessageStatus,
    },
}

/// What became of a Matrix message on the network, after mautrix bridgev2's message status.
///
/// The core shows each report in the portal room as a `com.beeper.message_send_status` event from the DM
/// partner's ghost, an `m.reference` to the message (`SUCCESS`, `PENDING`, `FAIL_PERMANENT`; delivered adds
/// the ghost to `delivered_to_users`), and keeps the signals every client understands: a delivered message
/// gets the ghost's read receipt, a failed one a notice `⚠ Not delivered: <reason>`. A connector does not
/// report failures it returns from [`NetworkApi::handle_matrix_message`]: the core reports those itself
/// (`FAIL_PERMANENT` for [`ConnectorError::Rejected`] and [`ConnectorError::Unsupported`], `FAIL_RETRIABLE`
/// for [`ConnectorError::Temporary`] once its retries are used up).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum MessageStatus {
    /// The network took it (an SMSC accepted it, the next hop answered); delivery is not known yet.
    Sent,
    /// It reached the recipient.
    Delivered,
    /// Not through yet; the connector keeps trying (link down, throttled).
    Retrying {
        /// Why, for the user.
        reason: String,
    },
    /// It will not be delivered.
    Failed {
        /// Why, for the user (the carrier's or the peer's reason).
        reason: String,
    },
}

/// A [`Duration`] stored as whole milliseconds.
mod duration_ms {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    pub(super) fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        u64::deserialize(d).map(Duration::from_millis)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remote_events_round_trip_through_their_stored_form() {
        let portal = PortalKey { receiver: "@alice:hs.test".try_into().unwrap(), chat: "+491".into() };
        let kinds = [
            RemoteEventKind::Message { id: "m1".into(), body: "hi".into() },
            RemoteEventKind::Edit { target: "m1".into(), body: "hi!".into() },
            RemoteEventKind::Redaction { target: "m1".into() },
            RemoteEventKind::Reaction { target: "m1".into(), key: "👍".into() },
            RemoteEventKind::ReadReceipt { up_to: "m1".into() },
            RemoteEventKind::Typing { timeout: Duration::from_millis(4500) },
            RemoteEventKind::Media {
                id: "m2".into(),
                kind: MediaKind::Image,
                media: Media { mimetype: Some("image/png".into()), filename: "a.png".into(), data: vec![0, 1, 255] },
                caption: None,
            },
            RemoteEventKind::MessageStatus { event_id: "$e1:hs.test".try_into().unwrap(), status: MessageStatus::Sent },
            RemoteEventKind::MessageStatus {
                event_id: "$e1:hs.test".try_into().unwrap(),
                status: MessageStatus::Failed { reason: "undeliverable".into() },
            },
            RemoteEventKind::ChatInfo(ChatInfo {
                name: Some("Team".into()),
                members: vec!["+491".into(), "+492".into()],
            }),
            RemoteEventKind::Call {
                event_type: "m.call.hangup".into(),
                content: serde_json::json!({"call_id": "c1", "version": "1", "reason": "user_hangup"}),
            },
        ];
        for kind in kinds {
            let ev = RemoteEvent { portal: portal.clone(), sender: "+491".into(), kind };
            let json = serde_json::to_string(&ev).unwrap();
            assert_eq!(serde_json::from_str::<RemoteEvent>(&json).unwrap(), ev, "{json}");
        }
        let stored = r#"{"portal":{"receiver":"@alice:hs.test","chat":"+491"},"sender":"+491",
                        "kind":{"type":"typing","timeout_ms":3000}}"#;
        let ev: RemoteEvent = serde_json::from_str(stored).unwrap();
        assert_eq!(ev.kind, RemoteEventKind::Typing { timeout: Duration::from_secs(3) });
        let stored = r#"{"portal":{"receiver":"@alice:hs.test","chat":"+491"},"sender":"+491",
            "kind":{"type":"message_status","event_id":"$e:hs.test","status":{"state":"retrying","reason":"busy"}}}"#;
        let ev: RemoteEvent = serde_json::from_str(stored).unwrap();
        assert_eq!(
            ev.kind,
            RemoteEventKind::MessageStatus {
                event_id: "$e:hs.test".try_into().unwrap(),
                status: MessageStatus::Retrying { reason: "busy".into() }
            }
        );
    }
}
