//! Encrypted DMs: find or create the DM with a user (`is_direct`, `m.room.encryption` in the initial state),
//! send text, read history, and the stream of incoming messages fed by the sync loop.
//!
//! Nothing is ever sent in clear: a room counts as a DM only when its state holds `m.room.encryption`, invites
//! are accepted only when their room says it is encrypted, and the send itself checks the room's encryption
//! state again. An unencrypted room someone invites us to (even one marked `is_direct`) is left alone and a
//! new encrypted DM is made instead.

use super::TincanClient;
use super::late_keys::LateKeys;
use crate::delivery::Signal;
use crate::error::{ClientError, Result};
use crate::trust::KeyStatus;
use futures::Stream;
use matrix_sdk::deserialized_responses::{EncryptionInfo, TimelineEvent};
use matrix_sdk::event_handler::RawEvent;
use matrix_sdk::room::MessagesOptions;
use matrix_sdk::ruma::events::room::encrypted::OriginalSyncRoomEncryptedEvent;
use matrix_sdk::ruma::events::room::member::{MembershipState, StrippedRoomMemberEvent};
use matrix_sdk::ruma::events::room::message::{
    MessageType, OriginalSyncRoomMessageEvent, RoomMessageEventContent, SyncRoomMessageEvent,
};
use matrix_sdk::ruma::events::{AnySyncEphemeralRoomEvent, AnySyncMessageLikeEvent, AnySyncTimelineEvent};
use matrix_sdk::ruma::serde::Raw;
use matrix_sdk::ruma::{OwnedRoomId, OwnedUserId, UInt, UserId};
use matrix_sdk::{Client, Room};
use serde::Serialize;
use std::sync::{Arc, Mutex};
use tincan_enum_core::E164;
use tokio::sync::broadcast;

/// A text message, incoming (stream) or from history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct IncomingMessage {
    /// The room.
    pub room_id: String,
    /// The event.
    pub event_id: String,
    /// Who sent it.
    pub sender: String,
    /// The sender's number, when they are a verified contact.
    pub sender_number: Option<E164>,
    /// The text.
    pub body: String,
    /// Whether it arrived end-to-end encrypted.
    pub encrypted: bool,
    /// Origin server time, milliseconds since the Unix epoch.
    pub timestamp_ms: u64,
    /// The sender says its phone number moved to another account (a provider's notice after a port, see
    /// [`MovedNotice`]).
    pub moved: Option<MovedNotice>,
}

/// What a `io.tincan.moved` notice says: the phone number of the account that sent it now belongs to another
/// Matrix ID. A claim of the sender's provider, sent in clear: never act on it alone. Check the number again
/// ([`check_contact`](TincanClient::check_contact)): the directory shows the move backed by the transparency
/// log's port entry ([`KeyStatus::Moved`]), and only then does the new Matrix ID hold the number.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MovedNotice {
    /// The Matrix ID the number moved to, as the notice says.
    pub user_id: String,
    /// The provider it moved to (its name at the directory), as the notice says.
    pub provider: Option<String>,
    /// The number, when the sender is a contact we verified it for (the notice itself does not carry it).
    pub number: Option<E164>,
}

/// The content field of the notice.
const MOVED_FIELD: &str = "io.tincan.moved";

/// The notice in an event's JSON, if it is one.
fn moved_notice(event: &serde_json::Value) -> Option<(String, Option<String>)> {
    let m = &event["content"][MOVED_FIELD];
    let user_id = m["user_id"].as_str().filter(|u| UserId::parse(*u).is_ok())?;
    Some((user_id.to_owned(), m["provider"].as_str().map(str::to_owned)))
}

/// What `send_text` did.
#[derive(Debug, Clone, Serialize)]
pub struct Sent {
    /// The DM room.
    pub room_id: String,
    /// The event.
    pub event_id: String,
    /// The recipient.
    pub user_id: String,
    /// The recipient's key status at sending time (None when sent by Matrix ID without a directory check).
    pub key_status: Option<KeyStatus>,
}

impl TincanClient {
    /// Event handlers: accept invites to us into encrypted rooms (and deliver what was sent before the join),
    /// forward text messages to [`messages`](Self::messages) once each, keep those whose room key has not
    /// arrived yet.
    pub(super) fn install(&mut self, client: Client) {
        let late = self.late.clone();
        client.add_event_handler(move |ev: StrippedRoomMemberEvent, room: Room, client: Client| {
            let late = late.clone();
            async move {
                if ev.content.membership != MembershipState::Invite || Some(&*ev.state_key) != client.user_id() {
                    return;
                }
                // Joining from inside the sync handler would wait on the sync itself.
                tokio::spawn(accept_invite(room, client, late));
            }
        });
        let late = self.late.clone();
        client.add_event_handler(
            move |ev: OriginalSyncRoomMessageEvent, room: Room, enc: Option<EncryptionInfo>, raw: RawEvent| {
                let late = late.clone();
                async move {
                    let json = serde_json::from_str::<serde_json::Value>(raw.0.get()).unwrap_or_default();
                    if let Some(m) = to_message(&ev, room.room_id().as_str(), enc.is_some(), &json, late.state()) {
                        late.deliver(m);
                    }
                }
            },
        );
        // Encrypted events whose room key has not arrived: kept until it does (see `late_keys`).
        let late = self.late.clone();
        client.add_event_handler(move |ev: Raw<OriginalSyncRoomEncryptedEvent>, room: Room, client: Client| {
            let late = late.clone();
            async move { late.keep(&client, room.room_id().as_str(), &ev).await }
        });
        // Timeline events (decrypted), for what bridges say of the texts sent through them and for calls; and
        // read receipts.
        let late = self.late.clone();
        client.add_event_handler(move |ev: Raw<AnySyncTimelineEvent>, room: Room, enc: Option<EncryptionInfo>| {
            let late = late.clone();
            async move { late.signal(room.room_id().as_str(), ev.json().get(), enc.is_some()) }
        });
        let signals = self.signals.clone();
        client.add_event_handler(move |ev: Raw<AnySyncEphemeralRoomEvent>, room: Room| {
            let signals = signals.clone();
            async move {
                let Ok(json) = serde_json::from_str::<serde_json::Value>(ev.json().get()) else { return };
                if let Some(s) = Signal::from_receipt_json(room.room_id().as_str(), &json) {
                    let _ = signals.send(s);
                }
            }
        });
        self.matrix = Some(client);
    }

    /// Incoming text messages (from others and from our other devices) while a sync runs
    /// ([`spawn_sync`](Self::spawn_sync) or [`sync_once`](Self::sync_once)). Subscribe before syncing.
    pub fn messages(&self) -> impl Stream<Item = IncomingMessage> + Send + 'static {
        futures::stream::unfold(self.incoming.subscribe(), |mut rx| async move {
            loop {
                match rx.recv().await {
                    Ok(m) => return Some((m, rx)),
                    Err(broadcast::error::RecvError::Lagged(n)) => {
                        tracing::warn!(missed = n, "incoming message stream lagged");
                    }
                    Err(broadcast::error::RecvError::Closed) => return None,
                }
            }
        })
    }

    /// The joined DM room with `user`, or a new one: encrypted from the first event, `is_direct`, the user
    /// invited.
    pub async fn dm_room(&self, user: &UserId) -> Result<Room> {
        match self.find_dm(user).await? {
            Some(room) => Ok(room),
            None => Ok(self.client()?.create_dm(user).await?),
        }
    }

    /// Our joined, encrypted DM with `user`: a room marked direct with them, else a joined room of at most two
    /// members where they are one (the DM marking is account data that can lag behind the join). A room
    /// without `m.room.encryption` is never one, whatever else it says.
    async fn find_dm(&self, user: &UserId) -> Result<Option<Room>> {
        let client = self.client()?;
        let marked: Vec<Room> = client.get_dm_rooms(user).collect();
        for room in marked {
            if room.state() == matrix_sdk::RoomState::Joined && is_encrypted(&room).await? {
                return Ok(Some(room));
            }
        }
        for room in client.joined_rooms() {
            if room.active_members_count() <= 2
                && room.get_member_no_sync(user).await?.is_some()
                && is_encrypted(&room).await?
            {
                return Ok(Some(room));
            }
        }
        Ok(None)
    }

    /// Sends `text` to a Matrix user in our encrypted DM with them (no directory check: see
    /// [`send_text`](Self::send_text) for sending to a number). Refused with [`ClientError::NotEncrypted`] if
    /// the room turns out not to be encrypted.
    pub async fn send_text_to_user(&self, user_id: &str, text: &str) -> Result<Sent> {
        let user: OwnedUserId = user_id.try_into().map_err(|_| ClientError::InvalidUserId(user_id.into()))?;
        let room = self.dm_room(&user).await?;
        let event_id = send_encrypted(&room, text).await?;
        Ok(Sent { room_id: room.room_id().to_string(), event_id, user_id: user.to_string(), key_status: None })
    }

    /// Sends `text` to the owner of `phone`: resolves it in the directory, checks their key, and sends in the
    /// encrypted DM. Not on Matrix → [`ClientError::NotOnNetwork`] naming the route; the key differs from the
    /// directory's → [`ClientError::KeyMismatch`] and nothing is sent, unless `force`.
    pub async fn send_text(&self, phone: &str, text: &str, force: bool) -> Result<Sent> {
        let contact = self.check_contact(phone).await?;
        let Some(user_id) = contact.user_id.clone() else {
            return Err(ClientError::NotOnNetwork { number: contact.number, route: contact.route });
        };
        if let (Some(KeyStatus::Mismatch(m)), false) = (&contact.key_status, force) {
            return Err(m.clone().into());
        }
        let mut sent = self.send_text_to_user(&user_id, text).await?;
        sent.key_status = contact.key_status;
        Ok(sent)
    }

    /// The last `limit` text messages of our DM with `user_id`, oldest first (decrypted where we hold keys).
    pub async fn history(&self, user_id: &str, limit: u32) -> Result<Vec<IncomingMessage>> {
        let user: OwnedUserId = user_id.try_into().map_err(|_| ClientError::InvalidUserId(user_id.into()))?;
        let Some(room) = self.find_dm(&user).await? else {
            return Ok(Vec::new());
        };
        self.last_messages(&room, limit).await
    }

    /// The last `limit` text messages of a joined room of ours (a conversation from
    /// [`start_chat`](Self::start_chat)), oldest first; an unknown room has none.
    pub async fn room_history(&self, room_id: &str, limit: u32) -> Result<Vec<IncomingMessage>> {
        let id: OwnedRoomId = room_id.try_into().map_err(|_| ClientError::InvalidUserId(room_id.into()))?;
        match self.client()?.get_room(&id) {
            Some(room) => self.last_messages(&room, limit).await,
            None => Ok(Vec::new()),
        }
    }

    async fn last_messages(&self, room: &Room, limit: u32) -> Result<Vec<IncomingMessage>> {
        let mut opts = MessagesOptions::backward();
        opts.limit = UInt::from(limit);
        let page = room.messages(opts).await?;
        let mut out: Vec<IncomingMessage> =
            page.chunk.iter().filter_map(|e| from_timeline(e, room.room_id().as_str(), &self.state)).collect();
        out.reverse();
        Ok(out)
    }
}

/// Sends `text` in `room` and gives its event ID, refused with [`ClientError::NotEncrypted`] unless the room's
/// state holds `m.room.encryption`. The last line of defence, after the choice of room: matrix-sdk sends in clear
/// in a room without it.
pub(super) async fn send_encrypted(room: &Room, text: &str) -> Result<String> {
    if !is_encrypted(room).await? {
        return Err(ClientError::NotEncrypted { room_id: room.room_id().to_string() });
    }
    let resp = room.send(RoomMessageEventContent::text_plain(text)).await?;
    Ok(resp.response.event_id.to_string())
}

/// Whether the room's state holds `m.room.encryption`, asking the server when the local state does not say.
pub(super) async fn is_encrypted(room: &Room) -> Result<bool> {
    let state = room.encryption_state();
    if !state.is_unknown() {
        return Ok(state.is_encrypted());
    }
    Ok(room.latest_encryption_state().await?.is_encrypted())
}

/// Joins `room` (an invite to us) when its invite state holds `m.room.encryption`; an unencrypted room is never
/// joined automatically, since whoever set it up would read what we send there. (Invite state can claim more
/// than the room has: [`find_dm`](TincanClient::find_dm) and the send check the joined room's own state.)
/// Once joined, what was sent before is read from the room's history (see `joined`).
pub(super) async fn accept_invite(room: Room, client: Client, late: LateKeys) {
    // An invited room's encryption state stays "unknown" until joined; the invite state's event is kept apart.
    if room.encryption_settings().is_none() && !room.encryption_state().is_encrypted() {
        tracing::info!(room = %room.room_id(), "not joining an invite to a room without encryption");
        return;
    }
    match room.join().await {
        Ok(_) => late.catch_up(&client, &room).await,
        Err(e) => tracing::debug!(room = %room.room_id(), error = %e, "could not accept an invite"),
    }
}

fn to_message(
    ev: &OriginalSyncRoomMessageEvent,
    room_id: &str,
    encrypted: bool,
    json: &serde_json::Value,
    state: &Mutex<crate::state::ClientState>,
) -> Option<IncomingMessage> {
    // Notices too: a bridge tells what became of a text in one (⚠ Not delivered …).
    let body = match &ev.content.msgtype {
        MessageType::Text(text) => &text.body,
        MessageType::Notice(notice) => &notice.body,
        _ => return None,
    };
    let sender = ev.sender.to_string();
    let sender_number = state.lock().ok().and_then(|s| s.contacts.get(&sender).map(|r| r.number.clone()));
    let moved =
        moved_notice(json).map(|(user_id, provider)| MovedNotice { user_id, provider, number: sender_number.clone() });
    Some(IncomingMessage {
        room_id: room_id.to_owned(),
        event_id: ev.event_id.to_string(),
        sender,
        sender_number,
        body: body.clone(),
        encrypted,
        timestamp_ms: ev.origin_server_ts.0.into(),
        moved,
    })
}

pub(super) fn from_timeline(
    e: &TimelineEvent,
    room_id: &str,
    state: &Arc<Mutex<crate::state::ClientState>>,
) -> Option<IncomingMessage> {
    let ev = e.raw().deserialize().ok()?;
    let AnySyncTimelineEvent::MessageLike(AnySyncMessageLikeEvent::RoomMessage(SyncRoomMessageEvent::Original(m))) = ev
    else {
        return None;
    };
    let json = serde_json::from_str::<serde_json::Value>(e.raw().json().get()).unwrap_or_default();
    to_message(&m, room_id, e.encryption_info().is_some(), &json, state)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ClientConfig;
    use serde_json::{Value, json};
    use std::time::Duration;
    use tincan_testkit::Synapse;

    /// The send's own check, for a room the choice of DM did not vet (that choice skips unencrypted rooms, so
    /// it is tried here on the room itself): the client holds a joined direct room without
    /// `m.room.encryption`, set up by the contact and joined as an earlier version joined every invite. The
    /// send is refused and nothing of ours reaches the room, in clear or otherwise.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_send_into_a_room_without_encryption_is_refused() -> anyhow::Result<()> {
        let hs = Synapse::start().await?;
        let victim = hs.register_user("victim", false).await?;
        let contact = hs.register_user("contact", false).await?;
        let tmp = tempfile::tempdir()?;
        let mut client = TincanClient::open(ClientConfig::new(tmp.path().join("tincan"))).await?;
        client.login_with_token(&hs.url(), &victim.user_id, &victim.device_id, &victim.access_token).await?;

        // The trap, with plain client-server HTTP: the contact's unencrypted direct room, joined by the victim.
        let http = reqwest::Client::new();
        let cs = |path: &str| format!("{}/_matrix/client/v3{path}", hs.url());
        let body = json!({"is_direct": true, "invite": [victim.user_id], "preset": "trusted_private_chat"});
        let created: Value = http
            .post(cs("/createRoom"))
            .bearer_auth(&contact.access_token)
            .json(&body)
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        let room_id = created["room_id"].as_str().expect("room_id").to_owned();
        http.post(cs(&format!("/rooms/{room_id}/join")))
            .bearer_auth(&victim.access_token)
            .json(&json!({}))
            .send()
            .await?
            .error_for_status()?;
        client.sync_once(Duration::ZERO).await?;
        let matrix = client.matrix().expect("signed in");
        let room = matrix.get_room(&OwnedRoomId::try_from(room_id.as_str())?).expect("the joined room is known");
        assert_eq!(room.state(), matrix_sdk::RoomState::Joined);

        match send_encrypted(&room, "secret").await {
            Err(ClientError::NotEncrypted { room_id: refused }) => assert_eq!(refused, room_id),
            other => panic!("a send into a room without encryption: {other:?}"),
        }
        // The room as the contact reads it: nothing from the victim but its join, and no "secret".
        let page: Value = http
            .get(cs(&format!("/rooms/{room_id}/messages?dir=b&limit=50")))
            .bearer_auth(&contact.access_token)
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        let from_victim: Vec<&Value> = page["chunk"]
            .as_array()
            .expect("chunk")
            .iter()
            .filter(|e| e["sender"] == victim.user_id.as_str() && e["type"] != "m.room.member")
            .collect();
        assert!(from_victim.is_empty(), "the victim wrote into the unencrypted room: {from_victim:?}");
        assert!(!page.to_string().contains("secret"), "{page}");
        Ok(())
    }
}
