//! Reaching a number the one way [`routing::decide`](crate::routing::decide) picks: the facts gathered here
//! (the validated directory answer and key status, the bridges' ghosts from the homeserver's third-party
//! lookup), the decision made there, and the text sent along it.

use super::directory::Contact;
use super::messaging::Sent;
use super::{TincanClient, parse_user};
use crate::error::{ClientError, Result};
use crate::route::Route;
use crate::routing::{self, BridgeGhost, Decision, Facts, Intent, Refusal};
use matrix_sdk::Room;
use matrix_sdk::ruma::OwnedRoomId;
use matrix_sdk::ruma::api::client::membership::joined_members;
use matrix_sdk::ruma::api::client::room::create_room;
use matrix_sdk::ruma::api::client::thirdparty::get_user_for_protocol;
use matrix_sdk::ruma::events::room::message::RoomMessageEventContent;
use serde::Serialize;
use std::collections::BTreeMap;
use std::time::Duration;
use tincan_enum_core::E164;

/// The protocol bridges answer phone-number lookups for.
const PSTN_PROTOCOL: &str = "m.protocol.pstn";
/// Its one user field.
const PSTN_FIELD: &str = "m.id.phone";
/// How long a new conversation waits for the bridge's ghost to join it.
const BRIDGE_JOIN_TIMEOUT: Duration = Duration::from_secs(30);

/// What [`TincanClient::send_to_number`] did: the message and the route it took.
#[derive(Debug, Clone, Serialize)]
pub struct SentToNumber {
    /// The message (room, event, recipient and, over Matrix, the key status at sending time).
    #[serde(flatten)]
    pub sent: Sent,
    /// The route.
    pub decision: Decision,
}

/// A conversation opened with [`TincanClient::start_chat`].
#[derive(Debug, Clone, Serialize)]
pub struct Chat {
    /// The room.
    pub room_id: String,
    /// The route its messages take.
    pub decision: Decision,
}

impl TincanClient {
    /// The route a text or call to `phone` takes now: the directory first (validated, checked against the
    /// transparency log, the contact's key compared), then the provider's bridges. See
    /// [`routing`](crate::routing) for the order; a refusal is [`ClientError::KeyMismatch`] or
    /// [`ClientError::Unreachable`].
    pub async fn route_to_number(
        &self,
        phone: &str,
        intent: Intent,
        force: bool,
    ) -> Result<(Decision, Option<Contact>)> {
        let number = E164::parse(phone)?;
        let contact = match self.lookup {
            Some(_) => Some(self.check_contact(phone).await?),
            None => None,
        };
        let route = contact.as_ref().map(|c| &c.route);
        // A Matrix record is never downgraded: the bridges are not even asked.
        let bridges = match route {
            Some(Route::Matrix { .. }) => Vec::new(),
            _ => self.bridge_ghosts(&number).await?,
        };
        let facts = Facts {
            directory: route,
            key_status: contact.as_ref().and_then(|c| c.key_status.as_ref()),
            bridges: &bridges,
            force,
        };
        match routing::decide(intent, facts) {
            Ok(d) => Ok((d, contact)),
            Err(Refusal::KeyMismatch(m)) => Err(ClientError::KeyMismatch(m)),
            Err(Refusal::Unreachable(reason)) => {
                Err(ClientError::Unreachable { number, route: contact.map(|c| c.route), reason })
            }
        }
    }

    /// Sends `text` to `phone` the way [`route_to_number`](Self::route_to_number) decides: end-to-end
    /// encrypted over Matrix to a Tincan user, else through the provider's SIP or SMS bridge.
    pub async fn send_to_number(&self, phone: &str, text: &str, force: bool) -> Result<SentToNumber> {
        let (decision, contact) = self.route_to_number(phone, Intent::Text, force).await?;
        let sent = match &decision {
            Decision::Matrix { user_id, .. } => {
                let mut sent = self.send_text_to_user(user_id, text).await?;
                sent.key_status = contact.and_then(|c| c.key_status);
                sent
            }
            bridge => {
                let room = self.bridge_room(bridge.user_id()).await?;
                let resp = room.send(RoomMessageEventContent::text_plain(text)).await?;
                Sent {
                    room_id: room.room_id().to_string(),
                    event_id: resp.response.event_id.to_string(),
                    user_id: bridge.user_id().to_owned(),
                    key_status: None,
                }
            }
        };
        Ok(SentToNumber { sent, decision })
    }

    /// Opens (or finds) the conversation with `phone` along the route [`route_to_number`](Self::route_to_number)
    /// picks for texts.
    pub async fn start_chat(&self, phone: &str, force: bool) -> Result<Chat> {
        let (decision, _) = self.route_to_number(phone, Intent::Text, force).await?;
        let room = match &decision {
            Decision::Matrix { user_id, .. } => self.dm_room(&parse_user(user_id)?).await?,
            bridge => self.bridge_room(bridge.user_id()).await?,
        };
        Ok(Chat { room_id: room.room_id().to_string(), decision })
    }

    /// The bridges' ghosts for `number` from the homeserver's third-party lookup (`m.protocol.pstn`), those
    /// whose bridge we recognise. No bridge for the protocol (404) is an empty list.
    async fn bridge_ghosts(&self, number: &E164) -> Result<Vec<BridgeGhost>> {
        let client = self.client()?;
        let mut request = get_user_for_protocol::v3::Request::new(PSTN_PROTOCOL.to_owned());
        request.fields = BTreeMap::from([(PSTN_FIELD.to_owned(), number.as_str().to_owned())]);
        let users = match client.send(request).await {
            Ok(r) => r.users,
            Err(e) if e.as_client_api_error().is_some_and(|e| e.status_code.as_u16() == 404) => Vec::new(),
            Err(e) => return Err(e.into()),
        };
        Ok(users
            .into_iter()
            .filter_map(|u| {
                let user_id = u.userid.to_string();
                routing::bridge_kind_of(&user_id).map(|kind| BridgeGhost { kind, user_id })
            })
            .collect())
    }

    /// Our joined room with a bridge's ghost, or a new one: `is_direct`, the ghost invited, and not encrypted,
    /// since the bridge has to read what it carries to the phone network.
    async fn bridge_room(&self, ghost: &str) -> Result<Room> {
        let client = self.client()?;
        let ghost = parse_user(ghost)?;
        let known = self.lock().bridge_rooms.get(ghost.as_str()).cloned();
        let known = known.and_then(|id| OwnedRoomId::try_from(id).ok()).and_then(|id| client.get_room(&id));
        if let Some(room) = known.filter(|r| r.state() == matrix_sdk::RoomState::Joined) {
            return Ok(room);
        }
        for room in client.get_dm_rooms(&ghost) {
            if room.state() == matrix_sdk::RoomState::Joined {
                return Ok(room);
            }
        }
        let mut request = create_room::v3::Request::new();
        request.invite = vec![ghost.clone()];
        request.is_direct = true;
        request.preset = Some(create_room::v3::RoomPreset::TrustedPrivateChat);
        let room = client.create_room(request).await?;
        // The homeserver hands the bridge only the events of rooms its ghost has joined: wait for the join, or
        // the first text would never leave.
        let deadline = tokio::time::Instant::now() + BRIDGE_JOIN_TIMEOUT;
        loop {
            let members = client.send(joined_members::v3::Request::new(room.room_id().to_owned())).await?;
            if members.joined.contains_key(&ghost) {
                self.lock().bridge_rooms.insert(ghost.to_string(), room.room_id().to_string());
                self.save()?;
                return Ok(room);
            }
            if tokio::time::Instant::now() > deadline {
                return Err(ClientError::BridgeUnavailable { ghost: ghost.to_string() });
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}
