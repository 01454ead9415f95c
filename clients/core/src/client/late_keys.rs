//! Messages whose room key comes after them. Over federation the event and the to-device message carrying its
//! Megolm key travel apart, and the event often arrives first: matrix-sdk then hands the event handlers the
//! still-encrypted `m.room.encrypted` event and never runs them again when the key arrives, so the message was
//! lost to [`messages`](super::TincanClient::messages).
//!
//! Here such an event is kept (in matrix-sdk's state store, sealed with the data dir's key: the store keeps
//! custom values as given), so a restart does not lose it, and
//! when room keys arrive (matrix-sdk's room-key stream, read while a sync runs) the events waiting for those
//! sessions are decrypted again and delivered in the order they arrived, once: an event leaves the store in the
//! same step that delivers it. At most [`MAX_WAITING`] wait; beyond that the oldest is dropped.

use super::messaging::{IncomingMessage, from_timeline};
use crate::at_rest::DataKey;
use crate::calls::{CallSignal, Caller, CallerSource};
use crate::delivery::Signal;
use crate::state::ClientState;
use futures::{FutureExt, Stream, StreamExt};
use matrix_sdk::Client;
use matrix_sdk::ruma::OwnedRoomId;
use matrix_sdk::ruma::events::room::encrypted::OriginalSyncRoomEncryptedEvent;
use matrix_sdk::ruma::serde::Raw;
use serde::{Deserialize, Serialize};
use std::collections::{HashSet, VecDeque};
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use tokio::sync::broadcast;

/// The state store's key for the waiting events.
const STORE_KEY: &[u8] = b"tincan.late_keys.waiting.v1";
/// What the sealed list is bound to.
const SEAL_AAD: &[u8] = b"tincan events waiting for room keys v1";
/// How many events wait at most.
pub(crate) const MAX_WAITING: usize = 256;
/// How many delivered events are remembered, so that one reaching us twice (by the sync and by the history read
/// after a join, see `joined`; or decrypted again when a key is re-sent) is delivered once.
const REMEMBERED: usize = 1024;

/// One event that could not be decrypted when it arrived.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Waiting {
    room_id: String,
    event_id: String,
    /// The Megolm session its key belongs to (`content.session_id`).
    session_id: String,
    /// The event as the sync gave it.
    event: String,
}

/// Which events a retry tries: those of the sessions whose keys arrived, or all.
#[derive(Debug, Default)]
pub(super) struct Arrived {
    /// Every waiting event (at start, or after the key stream lagged).
    all: bool,
    /// `(room, session)` of the keys that arrived.
    keys: HashSet<(String, String)>,
}

impl Arrived {
    pub(super) fn everything() -> Arrived {
        Arrived { all: true, keys: HashSet::new() }
    }

    fn covers(&self, w: &Waiting) -> bool {
        self.all || self.keys.contains(&(w.room_id.clone(), w.session_id.clone()))
    }

    fn is_empty(&self) -> bool {
        !self.all && self.keys.is_empty()
    }

    /// Takes one item of a [`KeyStream`].
    fn add(&mut self, item: Option<Vec<(String, String)>>) {
        match item {
            Some(keys) => self.keys.extend(keys),
            None => {
                tracing::debug!("missed room-key notices; retrying every waiting event");
                self.all = true;
            }
        }
    }

    /// Takes the items `stream` holds already, without waiting.
    fn add_ready(&mut self, stream: &mut KeyStream) {
        while let Some(Some(item)) = stream.next().now_or_never() {
            self.add(item);
        }
    }
}

/// matrix-sdk's stream of the room keys it stores, as `(room, session)` pairs; `None` when notices were missed
/// (the reader lagged).
pub(super) type KeyStream = std::pin::Pin<Box<dyn Stream<Item = Option<Vec<(String, String)>>> + Send>>;

/// Where decrypted messages go, and the events that wait for their keys.
#[derive(Clone)]
pub(super) struct LateKeys {
    incoming: broadcast::Sender<IncomingMessage>,
    signals: broadcast::Sender<Signal>,
    calls: broadcast::Sender<CallSignal>,
    state: Arc<Mutex<ClientState>>,
    key: DataKey,
    /// Held across a load-change-save of the waiting events, and across a retry's deliveries (their order).
    lock: Arc<tokio::sync::Mutex<()>>,
    /// The latest delivered events.
    delivered: Arc<Mutex<Delivered>>,
}

/// The ids of the last [`REMEMBERED`] delivered events.
#[derive(Default)]
struct Delivered {
    order: VecDeque<String>,
    ids: HashSet<String>,
}

impl Delivered {
    /// Remembers `id`; false when it was delivered already.
    fn first_time(&mut self, id: &str) -> bool {
        if !self.ids.insert(id.to_owned()) {
            return false;
        }
        self.order.push_back(id.to_owned());
        if self.order.len() > REMEMBERED
            && let Some(old) = self.order.pop_front()
        {
            self.ids.remove(&old);
        }
        true
    }
}

impl LateKeys {
    pub(super) fn new(
        incoming: broadcast::Sender<IncomingMessage>,
        signals: broadcast::Sender<Signal>,
        calls: broadcast::Sender<CallSignal>,
        state: Arc<Mutex<ClientState>>,
        key: DataKey,
    ) -> LateKeys {
        LateKeys {
            incoming,
            signals,
            calls,
            state,
            key,
            lock: Arc::new(tokio::sync::Mutex::new(())),
            delivered: Arc::new(Mutex::new(Delivered::default())),
        }
    }

    /// Hands `m` to [`messages`](super::TincanClient::messages), unless it was handed over already.
    pub(super) fn deliver(&self, m: IncomingMessage) {
        let first = self.delivered.lock().map(|mut d| d.first_time(&m.event_id)).unwrap_or(true);
        if first {
            // No receiver is fine: nobody is listening.
            let _ = self.incoming.send(m);
        }
    }

    /// A timeline event (decrypted when it was encrypted: `encrypted`) as the sync, the history read after a
    /// join or a late room key brings it: its word to bridges' delivery reports (see [`Signal`]), and a VoIP
    /// event to [`calls`](super::TincanClient::calls), once.
    pub(super) fn signal(&self, room_id: &str, event: &str, encrypted: bool) {
        let Ok(json) = serde_json::from_str::<serde_json::Value>(event) else { return };
        if let Some(s) = Signal::from_timeline_json(room_id, &json) {
            let _ = self.signals.send(s);
        }
        if let Some(mut call) = CallSignal::from_timeline_json(room_id, &json, encrypted) {
            let first = self.delivered.lock().map(|mut d| d.first_time(&call.event_id)).unwrap_or(true);
            if !first {
                return;
            }
            // A verified contact's number is known here; a bridge's ghost's is looked up by `calls`.
            call.caller = self.state.lock().ok().and_then(|s| {
                let number = s.contacts.get(&call.sender)?.number.clone();
                Some(Caller { number, known_by: CallerSource::VerifiedContact })
            });
            tracing::debug!(room = room_id, call = %call.call_id, event = call.kind.name(), "call signal");
            let _ = self.calls.send(call);
        }
    }

    pub(super) fn state(&self) -> &Arc<Mutex<ClientState>> {
        &self.state
    }

    /// Subscribes to the room keys matrix-sdk stores from now on (`None` before encryption is set up).
    pub(super) async fn subscribe(client: &Client) -> Option<KeyStream> {
        let stream = client.encryption().room_keys_received_stream().await?;
        Some(Box::pin(
            stream
                .map(|r| r.ok().map(|keys| keys.into_iter().map(|k| (k.room_id.to_string(), k.session_id)).collect())),
        ))
    }

    /// The keys that arrived on `stream` so far, without waiting.
    pub(super) fn arrived_now(stream: &mut Option<KeyStream>) -> Arrived {
        let mut arrived = Arrived::default();
        if let Some(s) = stream {
            arrived.add_ready(s);
        }
        arrived
    }

    /// Keeps an event the sync could not decrypt (an event without a Megolm session is not kept: no key will
    /// come for it).
    pub(super) async fn keep(&self, client: &Client, room_id: &str, event: &Raw<OriginalSyncRoomEncryptedEvent>) {
        let json = event.json().get();
        let Ok(v) = serde_json::from_str::<serde_json::Value>(json) else { return };
        let (Some(event_id), Some(session_id)) = (v["event_id"].as_str(), v["content"]["session_id"].as_str()) else {
            return;
        };
        let _guard = self.lock.lock().await;
        let Some(mut waiting) = self.load(client).await else { return };
        if waiting.iter().any(|w| w.event_id == event_id) {
            return;
        }
        tracing::debug!(room = room_id, event = event_id, "no room key yet; keeping the event until it comes");
        waiting.push(Waiting {
            room_id: room_id.to_owned(),
            event_id: event_id.to_owned(),
            session_id: session_id.to_owned(),
            event: json.to_owned(),
        });
        if waiting.len() > MAX_WAITING {
            let dropped = waiting.len() - MAX_WAITING;
            tracing::warn!(dropped, "too many messages waiting for their room keys; dropping the oldest");
            waiting.drain(..dropped);
        }
        self.save(client, &waiting).await;
    }

    /// Decrypts the waiting events `arrived` covers, and delivers those that now decrypt, in the order they
    /// came; they stop waiting before they are delivered.
    pub(super) async fn retry(&self, client: &Client, arrived: &Arrived) {
        if arrived.is_empty() {
            return;
        }
        let _guard = self.lock.lock().await;
        let Some(waiting) = self.load(client).await else { return };
        let mut still = Vec::with_capacity(waiting.len());
        let mut decrypted = Vec::new();
        for w in waiting {
            if !arrived.covers(&w) {
                still.push(w);
                continue;
            }
            let Some(room) = OwnedRoomId::try_from(w.room_id.as_str()).ok().and_then(|id| client.get_room(&id)) else {
                still.push(w);
                continue;
            };
            let Ok(raw) = Raw::<OriginalSyncRoomEncryptedEvent>::from_json_string(w.event.clone()) else {
                continue;
            };
            match room.decrypt_event(&raw, None).await {
                Ok(ev) if ev.encryption_info().is_some() => decrypted.push((w.room_id, ev)),
                Ok(_) => still.push(w),
                Err(e) => {
                    tracing::debug!(event = %w.event_id, error = %e, "decrypting a waiting event failed");
                    still.push(w);
                }
            }
        }
        if decrypted.is_empty() {
            return;
        }
        self.save(client, &still).await;
        tracing::debug!(delivered = decrypted.len(), waiting = still.len(), "room keys arrived for waiting events");
        for (room_id, ev) in decrypted {
            self.signal(&room_id, ev.raw().json().get(), true);
            if let Some(m) = from_timeline(&ev, &room_id, &self.state) {
                self.deliver(m);
            }
        }
    }

    /// Retries every waiting event, then the waiting events of each room key as it arrives on `keys`, for
    /// ever (beside the sync loop that brings the keys).
    pub(super) async fn watch(&self, client: &Client, keys: Option<KeyStream>) -> Infallible {
        self.retry(client, &Arrived::everything()).await;
        if let Some(mut keys) = keys {
            while let Some(item) = keys.next().await {
                let mut arrived = Arrived::default();
                arrived.add(item);
                // Whatever else came with it, in one pass.
                arrived.add_ready(&mut keys);
                self.retry(client, &arrived).await;
            }
        }
        std::future::pending().await
    }
}

impl LateKeys {
    /// The waiting events; `None` when the store could not be read (then nothing is written either).
    async fn load(&self, client: &Client) -> Option<Vec<Waiting>> {
        match client.state_store().get_custom_value(STORE_KEY).await {
            Ok(Some(sealed)) => {
                let list = self.key.open_bytes(&sealed, SEAL_AAD).and_then(|b| serde_json::from_slice(&b).ok());
                if list.is_none() {
                    tracing::warn!("the events waiting for room keys are unreadable; starting afresh");
                }
                Some(list.unwrap_or_default())
            }
            Ok(None) => Some(Vec::new()),
            Err(e) => {
                tracing::warn!(error = %e, "reading the events waiting for room keys failed");
                None
            }
        }
    }

    async fn save(&self, client: &Client, waiting: &[Waiting]) {
        let result = if waiting.is_empty() {
            client.state_store().remove_custom_value(STORE_KEY).await.map(|_| ())
        } else {
            let bytes = serde_json::to_vec(waiting).expect("waiting events serialize");
            client.state_store().set_custom_value_no_read(STORE_KEY, self.key.seal_bytes(&bytes, SEAL_AAD)).await
        };
        if let Err(e) = result {
            tracing::warn!(error = %e, "saving the events waiting for room keys failed");
        }
    }
}
