//! Reaching a number the one way [`routing::decide`](crate::routing::decide) picks: the facts gathered here
//! (the validated directory answer and key status, the bridges' ghosts from the homeserver's third-party
//! lookup), the decision made there, the text sent along it, and (through a bridge) what the bridge says became
//! of it ([`delivery`](crate::delivery)).
//!
//! A bridge is reached in an encrypted DM with its ghost only (end-to-bridge encryption: the bridge's ghost
//! has a device and decrypts): a conversation is reused only when it is encrypted and nobody but the ghost is in
//! it with us, and the send checks the room's encryption again.

use super::directory::Contact;
use super::messaging::{Sent, is_encrypted, send_encrypted};
use super::{TincanClient, parse_user};
use crate::calls::{CallSignal, Caller, CallerSource};
use crate::delivery::{Delivery, Signal, Watch};
use crate::error::{ClientError, Result};
use crate::route::Route;
use crate::routing::{self, BridgeGhost, BridgeKind, Decision, Facts, Intent, Refusal, RouteKind};
use futures::Stream;
use matrix_sdk::Client;
use matrix_sdk::config::SyncSettings;
use matrix_sdk::ruma::api::client::membership::joined_members;
use matrix_sdk::ruma::api::client::thirdparty::get_user_for_protocol;
use matrix_sdk::ruma::{OwnedRoomId, UserId};
use matrix_sdk::{Room, RoomMemberships};
use serde::Serialize;
use std::collections::BTreeMap;
use std::time::Duration;
use tincan_enum_core::E164;
use tokio::sync::broadcast;

/// The protocol bridges answer phone-number lookups for.
const PSTN_PROTOCOL: &str = "m.protocol.pstn";
/// Its usual user field, used when the homeserver's description of the protocol names none.
const PSTN_FIELD: &str = "m.id.phone";
/// How long a new conversation waits for the bridge's ghost to join it.
const BRIDGE_JOIN_TIMEOUT: Duration = Duration::from_secs(30);
/// The longest single sync while waiting for a bridge's word.
const DELIVERY_POLL: Duration = Duration::from_secs(10);

/// What [`TincanClient::send_to_number`] did: the message, the route it took and, through a bridge, what became
/// of it.
#[derive(Debug, Clone, Serialize)]
pub struct SentToNumber {
    /// The message (room, event, recipient and, over Matrix, the key status at sending time).
    #[serde(flatten)]
    pub sent: Sent,
    /// The route, in one word (`matrix`, `sip`, `sms`, `pstn`).
    pub route: RouteKind,
    /// `status` (`sent`, `delivered`, `failed`) and, when failed, `reason`. Over Matrix always `sent`.
    #[serde(flatten)]
    pub delivery: Delivery,
    /// The route in full.
    pub decision: Decision,
}

/// A text sent through a bridge whose word on delivery is still to come (see
/// [`TincanClient::send_to_number_watched`]): it hears the conversation from before the send on.
#[derive(Debug)]
pub struct PendingDelivery {
    signals: broadcast::Receiver<Signal>,
    watch: Watch,
}

impl PendingDelivery {
    /// The room the text went to.
    pub fn room_id(&self) -> &str {
        self.watch.room_id()
    }

    /// The text's event.
    pub fn event_id(&self) -> &str {
        self.watch.event_id()
    }
}

/// A conversation opened with [`TincanClient::start_chat`].
#[derive(Debug, Clone, Serialize)]
pub struct Chat {
    /// The room.
    pub room_id: String,
    /// The route its messages take.
    pub decision: Decision,
    /// What the directory says of the number (when one is configured).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub contact: Option<Contact>,
}

impl TincanClient {
    /// The route a text or call to `phone` takes now: the directory first (validated, checked against the
    /// transparency log, the contact's key compared), then the provider's bridges. See
    /// [`routing`](crate::routing) for the order; a refusal is [`ClientError::KeyMismatch`] or
    /// [`ClientError::Unreachable`]. The bridges are asked only when there is no directory at all: a directory
    /// that is refused or fails (see [`resolve`](Self::resolve)), including one a configured charter gives no
    /// current list for ([`ClientError::TrustListNotCurrent`]), is that error, never a fall-back.
    pub async fn route_to_number(
        &self,
        phone: &str,
        intent: Intent,
        force: bool,
    ) -> Result<(Decision, Option<Contact>)> {
        let number = E164::parse(phone)?;
        // A directory refused (no current charter list included) is an error, not "no directory": no bridge.
        let contact = match self.directory_lookup()? {
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
    /// encrypted over Matrix to a Tincan user, else through the provider's SIP or SMS bridge (in an encrypted DM
    /// with its ghost). Does not wait for the bridge's word: `status` is `sent` (see
    /// [`send_to_number_waiting`](Self::send_to_number_waiting)).
    pub async fn send_to_number(&self, phone: &str, text: &str, force: bool) -> Result<SentToNumber> {
        self.send_to_number_waiting(phone, text, force, Duration::ZERO).await
    }

    /// [`send_to_number`](Self::send_to_number), then, through a bridge, waits up to `wait` for the bridge to
    /// say the message was delivered or failed (see [`delivery`](crate::delivery)); after `wait` the status is
    /// `sent`. Syncs while waiting unless [`spawn_sync`](Self::spawn_sync) runs. Over Matrix nothing is awaited.
    pub async fn send_to_number_waiting(
        &self,
        phone: &str,
        text: &str,
        force: bool,
        wait: Duration,
    ) -> Result<SentToNumber> {
        let (mut sent, pending) = self.send_to_number_watched(phone, text, force).await?;
        if let Some(pending) = pending.filter(|_| !wait.is_zero()) {
            sent.delivery = self.await_delivery(pending, wait).await?;
        }
        Ok(sent)
    }

    /// [`send_to_number`](Self::send_to_number) that, through a bridge, also hands back the watch on the
    /// bridge's word about the message, for [`await_delivery`](Self::await_delivery) now or later (a chat
    /// goes on while reports come). The watch listens from before the send, so nothing the sync brings after it
    /// is missed. `None` over Matrix.
    pub async fn send_to_number_watched(
        &self,
        phone: &str,
        text: &str,
        force: bool,
    ) -> Result<(SentToNumber, Option<PendingDelivery>)> {
        let (decision, contact) = self.route_to_number(phone, Intent::Text, force).await?;
        let route = decision.route();
        let (sent, pending) = match &decision {
            Decision::Matrix { user_id, .. } => {
                let mut sent = self.send_text_to_user(user_id, text).await?;
                sent.key_status = contact.and_then(|c| c.key_status);
                (sent, None)
            }
            bridge => {
                let ghost = bridge.user_id();
                let room = self.bridge_room(ghost).await?;
                // Subscribed before sending: the bridge's word can come in the first sync after it.
                let signals = self.signals.subscribe();
                let event_id = send_encrypted(&room, text).await?;
                let sent =
                    Sent { room_id: room.room_id().to_string(), event_id, user_id: ghost.to_owned(), key_status: None };
                let watch = Watch::new(&sent.room_id, &sent.event_id, ghost);
                (sent, Some(PendingDelivery { signals, watch }))
            }
        };
        Ok((SentToNumber { sent, route, delivery: Delivery::Sent, decision }, pending))
    }

    /// Opens (or finds) the conversation with `phone` along the route [`route_to_number`](Self::route_to_number)
    /// picks for texts.
    pub async fn start_chat(&self, phone: &str, force: bool) -> Result<Chat> {
        let (decision, contact) = self.route_to_number(phone, Intent::Text, force).await?;
        let room = match &decision {
            Decision::Matrix { user_id, .. } => self.dm_room(&parse_user(user_id)?).await?,
            bridge => self.bridge_room(bridge.user_id()).await?,
        };
        Ok(Chat { room_id: room.room_id().to_string(), decision, contact })
    }

    /// The bridges' ghosts for `number` from the homeserver's third-party lookup (see [`bridge_ghosts`]).
    async fn bridge_ghosts(&self, number: &E164) -> Result<Vec<BridgeGhost>> {
        bridge_ghosts(self.client()?, &self.http, number).await
    }

    /// Call signalling in our rooms (`m.call.*`: a call ringing, answered, hung up…), from others and from our
    /// other devices, while a sync runs ([`spawn_sync`](Self::spawn_sync) or [`sync_once`](Self::sync_once)),
    /// each event once; subscribe before syncing. A call from a phone through the provider's SIP (or SMS)
    /// bridge comes from the bridge's ghost, and its [`caller`](CallSignal::caller) is the ghost's number when
    /// the homeserver's `m.protocol.pstn` lookup of that number names the ghost (asked for each event from a
    /// ghost); a verified contact's number is known without asking.
    pub fn calls(&self) -> impl Stream<Item = CallSignal> + Send + 'static {
        let lookup = self.matrix.clone().map(|c| (c, self.http.clone()));
        futures::stream::unfold((self.calls.subscribe(), lookup), |(mut rx, lookup)| async move {
            loop {
                match rx.recv().await {
                    Ok(mut signal) => {
                        if signal.caller.is_none()
                            && let Some((client, http)) = &lookup
                        {
                            signal.caller = bridge_caller(client, http, &signal.sender).await;
                        }
                        return Some((signal, (rx, lookup)));
                    }
                    Err(broadcast::error::RecvError::Lagged(n)) => {
                        tracing::warn!(missed = n, "call signal stream lagged");
                    }
                    Err(broadcast::error::RecvError::Closed) => return None,
                }
            }
        })
    }

    /// Our encrypted DM with a bridge's ghost, or a new one (encrypted from its first event, `is_direct`, the
    /// ghost invited) once the ghost joined it. A room is reused only when we are joined, it is encrypted and
    /// nobody but the ghost is in it with us; an unencrypted one (an earlier version made those) is left alone.
    async fn bridge_room(&self, ghost: &str) -> Result<Room> {
        let client = self.client()?;
        let ghost = parse_user(ghost)?;
        let known = self.lock().bridge_rooms.get(ghost.as_str()).cloned();
        let known = known.and_then(|id| OwnedRoomId::try_from(id).ok()).and_then(|id| client.get_room(&id));
        let candidates: Vec<Room> = known.into_iter().chain(client.get_dm_rooms(&ghost)).collect();
        for room in candidates {
            if self.is_bridge_dm(&room, &ghost).await? {
                self.remember_bridge_room(&ghost, &room)?;
                return Ok(room);
            }
        }
        let room = client.create_dm(&ghost).await?;
        // The homeserver hands the bridge only the events of rooms its ghost has joined, and the room key goes
        // to the devices of members: wait for the join, or the first text would never leave.
        let deadline = tokio::time::Instant::now() + BRIDGE_JOIN_TIMEOUT;
        loop {
            let members = client.send(joined_members::v3::Request::new(room.room_id().to_owned())).await?;
            if members.joined.contains_key(&ghost) {
                self.remember_bridge_room(&ghost, &room)?;
                return Ok(room);
            }
            if tokio::time::Instant::now() > deadline {
                return Err(ClientError::BridgeUnavailable { ghost: ghost.to_string() });
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Whether `room` is a conversation with `ghost` we may text it in: joined, encrypted, the ghost in it and
    /// nobody else but us.
    async fn is_bridge_dm(&self, room: &Room, ghost: &UserId) -> Result<bool> {
        if room.state() != matrix_sdk::RoomState::Joined || !is_encrypted(room).await? {
            return Ok(false);
        }
        let me = self.client()?.user_id().ok_or(ClientError::NotLoggedIn)?.to_owned();
        let members = room.members(RoomMemberships::ACTIVE).await?;
        let only_us_and_the_ghost = members.iter().all(|m| m.user_id() == me || m.user_id() == ghost);
        Ok(only_us_and_the_ghost && members.iter().any(|m| m.user_id() == ghost))
    }

    fn remember_bridge_room(&self, ghost: &UserId, room: &Room) -> Result<()> {
        let id = room.room_id().to_string();
        let changed = self.lock().bridge_rooms.insert(ghost.to_string(), id.clone()).as_ref() != Some(&id);
        if changed { self.save() } else { Ok(()) }
    }

    /// Waits (at most `wait`) for what the bridge says of the watched message, syncing unless a sync loop runs
    /// ([`spawn_sync`](Self::spawn_sync)); `sent` when it said nothing in time.
    pub async fn await_delivery(&self, pending: PendingDelivery, wait: Duration) -> Result<Delivery> {
        let PendingDelivery { mut signals, mut watch } = pending;
        let client = self.client()?;
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            loop {
                match signals.try_recv() {
                    Ok(s) => {
                        if let Some(d) = watch.judge(&s) {
                            return Ok(d);
                        }
                    }
                    Err(broadcast::error::TryRecvError::Lagged(n)) => {
                        tracing::warn!(missed = n, "delivery signals lagged");
                    }
                    Err(broadcast::error::TryRecvError::Empty | broadcast::error::TryRecvError::Closed) => break,
                }
            }
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if left.is_zero() {
                return Ok(Delivery::Sent);
            }
            if self.is_syncing() {
                // The sync loop feeds the signals.
                match tokio::time::timeout(left, signals.recv()).await {
                    Ok(Ok(s)) => {
                        if let Some(d) = watch.judge(&s) {
                            return Ok(d);
                        }
                    }
                    Ok(Err(broadcast::error::RecvError::Lagged(_))) => {}
                    Ok(Err(broadcast::error::RecvError::Closed)) | Err(_) => return Ok(Delivery::Sent),
                }
            } else {
                client.sync_once(SyncSettings::default().timeout(left.min(DELIVERY_POLL))).await?;
            }
        }
    }
}

/// The user field the homeserver says bridges take for `m.protocol.pstn` (`user_fields` of
/// `GET /thirdparty/protocol/m.protocol.pstn`): `m.id.phone` when it is among them or none is declared, else the
/// first. `None` when no bridge serves the protocol (404).
async fn pstn_field(client: &Client, http: &reqwest::Client) -> Result<Option<String>> {
    let token = client.access_token().ok_or(ClientError::NotLoggedIn)?;
    let url = format!(
        "{}/_matrix/client/v3/thirdparty/protocol/{PSTN_PROTOCOL}",
        client.homeserver().as_str().trim_end_matches('/')
    );
    let resp = http.get(url).bearer_auth(token).send().await.map_err(ClientError::Homeserver)?;
    if resp.status() == reqwest::StatusCode::NOT_FOUND {
        return Ok(None);
    }
    let resp = resp.error_for_status().map_err(ClientError::Homeserver)?;
    // A bridge that did not describe itself leaves the homeserver with `{}`: the usual field then.
    let body: serde_json::Value = resp.json().await.map_err(ClientError::Homeserver)?;
    let fields: Vec<&str> = body
        .get("user_fields")
        .and_then(|f| f.as_array())
        .map(|a| a.iter().filter_map(|f| f.as_str()).collect())
        .unwrap_or_default();
    Ok(Some(match fields.first() {
        Some(first) if !fields.contains(&PSTN_FIELD) => (*first).to_owned(),
        _ => PSTN_FIELD.to_owned(),
    }))
}

/// The bridges' ghosts for `number` from the homeserver's third-party lookup (`m.protocol.pstn`, by the field the
/// protocol declares), those whose bridge we recognise. No bridge for the protocol (404) is an empty list.
async fn bridge_ghosts(client: &Client, http: &reqwest::Client, number: &E164) -> Result<Vec<BridgeGhost>> {
    let Some(field) = pstn_field(client, http).await? else { return Ok(Vec::new()) };
    let mut request = get_user_for_protocol::v3::Request::new(PSTN_PROTOCOL.to_owned());
    request.fields = BTreeMap::from([(field, number.as_str().to_owned())]);
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

/// The caller behind a bridge's ghost: the number its localpart names, when the homeserver's lookup of that
/// number names this very ghost (a user elsewhere with a look-alike ID is nobody's number). `None` for anyone
/// else, and when the lookup fails (logged).
async fn bridge_caller(client: &Client, http: &reqwest::Client, sender: &str) -> Option<Caller> {
    let number = crate::calls::ghost_number(sender)?;
    let ghosts = match bridge_ghosts(client, http, &number).await {
        Ok(g) => g,
        Err(e) => {
            tracing::warn!(error = %e, "looking up the number of a call's sender failed");
            return None;
        }
    };
    let ghost = ghosts.into_iter().find(|g| g.user_id == sender)?;
    let known_by = match ghost.kind {
        BridgeKind::Sip => CallerSource::SipBridge,
        BridgeKind::Sms => CallerSource::SmsBridge,
    };
    Some(Caller { number, known_by })
}
