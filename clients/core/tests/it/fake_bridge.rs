//! A stand-in for the provider's SMS bridge, speaking the real application-service API to Synapse: it answers
//! `m.protocol.pstn` third-party lookups with `@sms_<number>` ghosts (as `tincan-sms` does) and records the
//! events Synapse pushes to it in transactions. The real bridge needs an SMSC and its own database; what the
//! client relies on is only this part of its protocol.

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

#[derive(Clone)]
struct Shared {
    server_name: String,
    events: Arc<Mutex<Vec<Value>>>,
    homeserver: Arc<Mutex<Option<String>>>,
}

/// The running stand-in.
pub struct FakeSmsBridge {
    pub url: String,
    server_name: String,
    events: Arc<Mutex<Vec<Value>>>,
    homeserver: Arc<Mutex<Option<String>>>,
    task: JoinHandle<()>,
}

impl Drop for FakeSmsBridge {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FakeSmsBridge {
    /// Listens on a free port; `server_name` is the homeserver's.
    pub async fn start(server_name: &str) -> anyhow::Result<FakeSmsBridge> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}", listener.local_addr()?);
        let events = Arc::new(Mutex::new(Vec::new()));
        let homeserver = Arc::new(Mutex::new(None));
        let shared =
            Shared { server_name: server_name.to_owned(), events: events.clone(), homeserver: homeserver.clone() };
        let app = Router::new()
            .route("/_matrix/app/v1/thirdparty/user/{protocol}", get(lookup))
            .route("/_matrix/app/v1/transactions/{txn}", put(transaction))
            .fallback(|| async { (axum::http::StatusCode::NOT_FOUND, Json(json!({"errcode": "M_NOT_FOUND"}))) })
            .with_state(shared);
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(FakeSmsBridge { url, server_name: server_name.to_owned(), events, homeserver, task })
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

    /// Waits (at most 30 s) for an `m.room.message` with `body` pushed to the bridge; the event.
    pub async fn wait_for_text(&self, body: &str) -> anyhow::Result<Value> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let found = self.events.lock().unwrap().iter().find(|e| e["content"]["body"] == body).cloned();
            if let Some(e) = found {
                return Ok(e);
            }
            anyhow::ensure!(Instant::now() < deadline, "the bridge never got {body:?}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

async fn lookup(
    State(s): State<Shared>,
    Path(protocol): Path<String>,
    Query(fields): Query<BTreeMap<String, String>>,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let number = fields.get("m.id.phone").cloned().unwrap_or_default();
    if protocol != "m.protocol.pstn" || !number.starts_with('+') {
        return (axum::http::StatusCode::NOT_FOUND, Json(json!({"errcode": "M_NOT_FOUND"}))).into_response();
    }
    Json(json!([{
        "userid": format!("@sms_{number}:{}", s.server_name),
        "protocol": protocol,
        "fields": {"m.id.phone": number},
    }]))
    .into_response()
}

/// Records the events; a ghost invited to a room joins it, as the bridge's ghosts do.
async fn transaction(State(s): State<Shared>, Path(_txn): Path<String>, Json(body): Json<Value>) -> Json<Value> {
    let events = body["events"].as_array().cloned().unwrap_or_default();
    let hs = s.homeserver.lock().unwrap().clone();
    for e in &events {
        let ghost = e["state_key"].as_str().unwrap_or_default().to_owned();
        if e["type"] == "m.room.member" && e["content"]["membership"] == "invite" && ghost.starts_with("@sms_") {
            let (Some(hs), Some(room)) = (hs.clone(), e["room_id"].as_str().map(str::to_owned)) else { continue };
            tokio::spawn(async move {
                let url = format!("{hs}/_matrix/client/v3/join/{}?user_id={}", enc(&room), enc(&ghost));
                let r = reqwest::Client::new().post(url).bearer_auth(AS_TOKEN).json(&json!({})).send().await;
                if let Err(e) = r.and_then(|r| r.error_for_status()) {
                    eprintln!("fake bridge: {ghost} could not join {room}: {e}");
                }
            });
        }
    }
    s.events.lock().unwrap().extend(events);
    Json(json!({}))
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
