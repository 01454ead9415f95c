//! A stand-in for the provider's SMS bridge, speaking the real application-service API to Synapse: it describes
//! `m.protocol.pstn` (its `user_fields`), answers third-party lookups with `@sms_<number>` ghosts (as
//! `tincan-sms` does), records the events Synapse pushes to it in transactions, and answers a user's message with
//! what the test set for the number: the ghost's read receipt (delivered), a ⚠ notice (failed), or nothing. It
//! has no crypto: it sees the ciphertext of encrypted DMs, and its notices are in clear. The real bridge (with
//! end-to-bridge encryption, against an SMSC) is the CLI's `sms` test; this one isolates the client's side.

use axum::Json;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::routing::{get, put};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::task::JoinHandle;

const AS_TOKEN: &str = "fake-sms-as-token-0123456789";
const HS_TOKEN: &str = "fake-sms-hs-token-0123456789";

/// What the ghost of a number does when a user writes to it.
#[derive(Debug, Clone)]
pub enum Reaction {
    /// Its read receipt on the message (what `tincan-sms` does on a delivery report).
    Receipt,
    /// A notice from the ghost with this text.
    Notice(String),
}

#[derive(Clone)]
struct Shared {
    server_name: String,
    field: String,
    events: Arc<Mutex<Vec<Value>>>,
    homeserver: Arc<Mutex<Option<String>>>,
    reactions: Arc<Mutex<BTreeMap<String, Reaction>>>,
}

/// The running stand-in.
pub struct FakeSmsBridge {
    pub url: String,
    server_name: String,
    events: Arc<Mutex<Vec<Value>>>,
    homeserver: Arc<Mutex<Option<String>>>,
    reactions: Arc<Mutex<BTreeMap<String, Reaction>>>,
    task: JoinHandle<()>,
}

impl Drop for FakeSmsBridge {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FakeSmsBridge {
    /// Listens on a free port; `server_name` is the homeserver's. Its lookups take `m.id.phone`.
    pub async fn start(server_name: &str) -> anyhow::Result<FakeSmsBridge> {
        Self::start_with_field(server_name, "m.id.phone").await
    }

    /// [`start`](Self::start), declaring and taking `field` as the protocol's user field.
    pub async fn start_with_field(server_name: &str, field: &str) -> anyhow::Result<FakeSmsBridge> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}", listener.local_addr()?);
        let events = Arc::new(Mutex::new(Vec::new()));
        let homeserver = Arc::new(Mutex::new(None));
        let reactions = Arc::new(Mutex::new(BTreeMap::new()));
        let shared = Shared {
            server_name: server_name.to_owned(),
            field: field.to_owned(),
            events: events.clone(),
            homeserver: homeserver.clone(),
            reactions: reactions.clone(),
        };
        let app = Router::new()
            .route("/_matrix/app/v1/thirdparty/protocol/{protocol}", get(protocol))
            .route("/_matrix/app/v1/thirdparty/user/{protocol}", get(lookup))
            .route("/_matrix/app/v1/transactions/{txn}", put(transaction))
            .fallback(|| async { (axum::http::StatusCode::NOT_FOUND, Json(json!({"errcode": "M_NOT_FOUND"}))) })
            .with_state(shared);
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(FakeSmsBridge { url, server_name: server_name.to_owned(), events, homeserver, reactions, task })
    }

    /// What the ghost of `number` does from now on when written to.
    pub fn react(&self, number: &str, reaction: Reaction) {
        self.reactions.lock().unwrap().insert(number.to_owned(), reaction);
    }

    /// The events pushed to the bridge from `room`.
    pub fn events_in(&self, room: &str) -> Vec<Value> {
        self.events.lock().unwrap().iter().filter(|e| e["room_id"] == room).cloned().collect()
    }

    /// Waits (at most 30 s) for an event of `kind` from `sender` in `room`; the event.
    pub async fn wait_for_event(&self, room: &str, kind: &str, sender: &str) -> anyhow::Result<Value> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let found = self.events_in(room).into_iter().find(|e| e["type"] == kind && e["sender"] == sender);
            if let Some(e) = found {
                return Ok(e);
            }
            anyhow::ensure!(Instant::now() < deadline, "no {kind} from {sender} in {room} reached the bridge");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Its registration, as Synapse reads it.
    pub fn registration(&self) -> String {
        json!({
            "id": "fake-sms",
            "url": self.url,
            "as_token": AS_TOKEN,
            "hs_token": HS_TOKEN,
            "sender_localpart": "smsbot",
            "rate_limited": false,
            "protocols": ["m.protocol.pstn"],
            "namespaces": {
                "users": [{"exclusive": true, "regex": format!("@sms_.*:{}", regex_escape(&self.server_name))}],
                "aliases": [],
                "rooms": [],
            },
        })
        .to_string()
    }

    /// Registers the ghost for `number` on the homeserver (as the bridge does before a ghost acts).
    /// Also tells the bridge where the homeserver is, so its ghosts join the rooms they are invited to.
    pub async fn register_ghost(&self, hs_url: &str, number: &str) -> anyhow::Result<String> {
        *self.homeserver.lock().unwrap() = Some(hs_url.to_owned());
        let r = reqwest::Client::new()
            .post(format!("{hs_url}/_matrix/client/v3/register"))
            .bearer_auth(AS_TOKEN)
            .json(&json!({"type": "m.login.application_service", "username": format!("sms_{number}")}))
            .send()
            .await?;
        let status = r.status();
        let body: Value = r.json().await?;
        anyhow::ensure!(status.is_success(), "ghost registration: {status} {body}");
        Ok(body["user_id"].as_str().unwrap_or_default().to_owned())
    }

    /// Whether a text with `body` reached the bridge so far.
    pub fn has_text(&self, body: &str) -> bool {
        self.events.lock().unwrap().iter().any(|e| e["content"]["body"] == body)
    }
}

async fn protocol(State(s): State<Shared>, Path(protocol): Path<String>) -> axum::response::Response {
    use axum::response::IntoResponse;
    if protocol != "m.protocol.pstn" {
        return (axum::http::StatusCode::NOT_FOUND, Json(json!({"errcode": "M_NOT_FOUND"}))).into_response();
    }
    Json(json!({
        "user_fields": [s.field],
        "location_fields": [],
        "icon": "",
        "field_types": {s.field.clone(): {"regexp": "\\+[0-9]+", "placeholder": "+447700900123"}},
        "instances": [],
    }))
    .into_response()
}

async fn lookup(
    State(s): State<Shared>,
    Path(protocol): Path<String>,
    Query(fields): Query<BTreeMap<String, String>>,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let number = fields.get(&s.field).cloned().unwrap_or_default();
    if protocol != "m.protocol.pstn" || !number.starts_with('+') {
        return (axum::http::StatusCode::NOT_FOUND, Json(json!({"errcode": "M_NOT_FOUND"}))).into_response();
    }
    Json(json!([{
        "userid": format!("@sms_{number}:{}", s.server_name),
        "protocol": protocol,
        "fields": {s.field.clone(): number},
    }]))
    .into_response()
}

/// Records the events; a ghost invited to a room joins it, as the bridge's ghosts do; a user's message to a
/// ghost gets the reaction set for its number.
async fn transaction(State(s): State<Shared>, Path(_txn): Path<String>, Json(body): Json<Value>) -> Json<Value> {
    let events = body["events"].as_array().cloned().unwrap_or_default();
    let hs = s.homeserver.lock().unwrap().clone();
    for e in &events {
        let (Some(hs), Some(room)) = (hs.clone(), e["room_id"].as_str().map(str::to_owned)) else { continue };
        let ghost = e["state_key"].as_str().unwrap_or_default().to_owned();
        if e["type"] == "m.room.member" && e["content"]["membership"] == "invite" && ghost.starts_with("@sms_") {
            tokio::spawn(async move {
                let url = format!("{hs}/_matrix/client/v3/join/{}?user_id={}", enc(&room), enc(&ghost));
                let r = reqwest::Client::new().post(url).bearer_auth(AS_TOKEN).json(&json!({})).send().await;
                if let Err(e) = r.and_then(|r| r.error_for_status()) {
                    eprintln!("fake bridge: {ghost} could not join {room}: {e}");
                }
            });
            continue;
        }
        let sender = e["sender"].as_str().unwrap_or_default();
        let is_message = e["type"] == "m.room.encrypted" || e["type"] == "m.room.message";
        if !is_message || sender.starts_with("@sms_") {
            continue;
        }
        // The ghost of this room: the one whose reaction is set and who is in it (the test DMs one ghost a room).
        let reactions = s.reactions.lock().unwrap().clone();
        let event_id = e["event_id"].as_str().unwrap_or_default().to_owned();
        let server = s.server_name.clone();
        tokio::spawn(async move {
            for (number, reaction) in reactions {
                let ghost = format!("@sms_{number}:{server}");
                let members = reqwest::Client::new()
                    .get(format!("{hs}/_matrix/client/v3/rooms/{}/joined_members?user_id={}", enc(&room), enc(&ghost)))
                    .bearer_auth(AS_TOKEN)
                    .send()
                    .await;
                let Ok(members) = members else { continue };
                if !members.status().is_success() {
                    continue;
                }
                let http = reqwest::Client::new();
                let r = match &reaction {
                    Reaction::Receipt => {
                        let url = format!(
                            "{hs}/_matrix/client/v3/rooms/{}/receipt/m.read/{}?user_id={}",
                            enc(&room),
                            enc(&event_id),
                            enc(&ghost)
                        );
                        http.post(url).bearer_auth(AS_TOKEN).json(&json!({})).send().await
                    }
                    Reaction::Notice(text) => {
                        let url = format!(
                            "{hs}/_matrix/client/v3/rooms/{}/send/m.room.message/{}?user_id={}",
                            enc(&room),
                            enc(&format!("n{}", rand_suffix())),
                            enc(&ghost)
                        );
                        http.put(url)
                            .bearer_auth(AS_TOKEN)
                            .json(&json!({"msgtype": "m.notice", "body": text}))
                            .send()
                            .await
                    }
                };
                if let Err(e) = r.and_then(|r| r.error_for_status()) {
                    eprintln!("fake bridge: {ghost} could not answer in {room}: {e}");
                }
            }
        });
    }
    s.events.lock().unwrap().extend(events);
    Json(json!({}))
}

/// A transaction id suffix that differs between calls.
fn rand_suffix() -> String {
    static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    N.fetch_add(1, std::sync::atomic::Ordering::SeqCst).to_string()
}

fn enc(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

fn regex_escape(s: &str) -> String {
    s.chars().flat_map(|c| if c.is_ascii_alphanumeric() { vec![c] } else { vec!['\\', c] }).collect()
}
