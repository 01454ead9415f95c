//! A proxy between one client and its homeserver that makes room keys late, the way federation does: while
//! told to hold, it takes the to-device events (where Megolm keys travel, Olm-encrypted) out of every `/sync`
//! answer and keeps them; once released, it puts them into the next answer (asked without waiting). The room
//! events pass at once. Everything else is passed through as it is.
//!
//! An answer that carries the held events gets a `next_batch` of its own (the homeserver's with [`LATE`] and a
//! count after it, taken off again when the client sends it back): the homeserver's answer without news repeats
//! the `since` token, and matrix-sdk skips an answer whose token it has seen ("Got the same sync response
//! twice"), held events and all.

#![allow(dead_code)]

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::Value;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::task::JoinHandle;

/// Marks a `next_batch` the proxy made.
const LATE: &str = ".late";

#[derive(Default)]
struct Held {
    holding: bool,
    /// The to-device events taken out, in order.
    events: Vec<Value>,
    /// Sync answers given so far.
    answers: usize,
    /// Sync requests received so far.
    requests: usize,
    /// Each timeline event passed, and the number of the answer that carried it.
    seen: HashMap<String, usize>,
}

struct Shared {
    upstream: String,
    http: reqwest::Client,
    held: Mutex<Held>,
}

/// The proxy; stopped on drop.
pub struct KeyProxy {
    /// Its base URL (the client's homeserver URL).
    pub url: String,
    shared: Arc<Shared>,
    task: JoinHandle<()>,
}

impl KeyProxy {
    /// Starts a proxy in front of `upstream` (`http://127.0.0.1:PORT`), passing everything.
    pub async fn start(upstream: &str) -> anyhow::Result<KeyProxy> {
        let shared = Arc::new(Shared {
            upstream: upstream.trim_end_matches('/').to_owned(),
            http: reqwest::Client::builder().timeout(Duration::from_secs(120)).build()?,
            held: Mutex::new(Held::default()),
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}", listener.local_addr()?);
        let app = Router::new().fallback(handle).with_state(shared.clone());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(KeyProxy { url, shared, task })
    }

    /// Holds to-device events back from now on (`true`), or lets them and the held ones through.
    pub fn hold(&self, holding: bool) {
        self.shared.held.lock().unwrap().holding = holding;
    }

    /// How many to-device events are held.
    pub fn held(&self) -> usize {
        self.shared.held.lock().unwrap().events.len()
    }

    /// Whether the client received `event_id` in a sync answer.
    pub fn seen(&self, event_id: &str) -> bool {
        self.shared.held.lock().unwrap().seen.contains_key(event_id)
    }

    /// Waits until the client received `event_id` in a sync answer and asked for the next one (so it has
    /// handled that answer).
    pub async fn wait_handled(&self, event_id: &str) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            {
                let h = self.shared.held.lock().unwrap();
                if h.seen.get(event_id).is_some_and(|answer| h.requests > *answer) {
                    return Ok(());
                }
            }
            anyhow::ensure!(Instant::now() < deadline, "the client did not sync {event_id} within 60 s");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for KeyProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn handle(State(s): State<Arc<Shared>>, method: Method, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    forward(&s, method, &uri, &headers, body)
        .await
        .unwrap_or_else(|e| (StatusCode::BAD_GATEWAY, e.to_string()).into_response())
}

async fn forward(s: &Shared, method: Method, uri: &Uri, headers: &HeaderMap, body: Bytes) -> anyhow::Result<Response> {
    let is_sync = method == Method::GET && uri.path().ends_with("/sync");
    let mut path = uri.path_and_query().map_or("/", |p| p.as_str()).to_owned();
    if is_sync {
        path = without_late_marks(&path);
        let mut h = s.held.lock().unwrap();
        h.requests += 1;
        // Held keys to hand over: answer at once instead of long-polling.
        if !h.holding && !h.events.is_empty() {
            path = with_zero_timeout(&path);
        }
    }
    let mut req =
        s.http.request(reqwest::Method::from_bytes(method.as_str().as_bytes())?, format!("{}{path}", s.upstream));
    for name in ["authorization", "content-type", "accept"] {
        if let Some(v) = headers.get(name) {
            req = req.header(name, v.as_bytes());
        }
    }
    let r = req.body(body).send().await?;
    let status = StatusCode::from_u16(r.status().as_u16())?;
    let content_type = r.headers().get("content-type").map(|v| v.to_str().unwrap_or_default().to_owned());
    let bytes = r.bytes().await?;
    let bytes = if is_sync && status.is_success() { rewrite_sync(s, &bytes)? } else { bytes.to_vec() };
    let content_type = content_type.unwrap_or_else(|| "application/json".into());
    Ok((status, [("content-type", content_type)], bytes).into_response())
}

/// The sync answer with the to-device events taken out (holding) or the held ones put in (released).
fn rewrite_sync(s: &Shared, bytes: &[u8]) -> anyhow::Result<Vec<u8>> {
    let mut answer: Value = serde_json::from_slice(bytes)?;
    let mut h = s.held.lock().unwrap();
    h.answers += 1;
    let n = h.answers;
    if let Some(rooms) = answer["rooms"]["join"].as_object() {
        for room in rooms.values() {
            for ev in room["timeline"]["events"].as_array().into_iter().flatten() {
                if let Some(id) = ev["event_id"].as_str() {
                    h.seen.insert(id.to_owned(), n);
                }
            }
        }
    }
    let events = answer["to_device"]["events"].as_array().cloned().unwrap_or_default();
    if h.holding {
        h.events.extend(events);
        answer["to_device"] = serde_json::json!({"events": []});
    } else if !h.events.is_empty() {
        let mut all = std::mem::take(&mut h.events);
        all.extend(events);
        answer["to_device"] = serde_json::json!({ "events": all });
        if let Some(token) = answer["next_batch"].as_str() {
            answer["next_batch"] = Value::String(format!("{token}{LATE}{n}"));
        }
    }
    Ok(serde_json::to_vec(&answer)?)
}

fn with_zero_timeout(path_and_query: &str) -> String {
    let Some((path, query)) = path_and_query.split_once('?') else { return format!("{path_and_query}?timeout=0") };
    let kept: Vec<&str> = query.split('&').filter(|p| !p.starts_with("timeout=")).collect();
    let mut q = kept.join("&");
    if !q.is_empty() {
        q.push('&');
    }
    format!("{path}?{q}timeout=0")
}

/// The query with the proxy's marks taken off the `since` token.
fn without_late_marks(path_and_query: &str) -> String {
    let Some((path, query)) = path_and_query.split_once('?') else { return path_and_query.to_owned() };
    let params: Vec<String> = query
        .split('&')
        .map(|p| match p.strip_prefix("since=") {
            Some(token) => format!("since={}", token.split(LATE).next().unwrap_or(token)),
            None => p.to_owned(),
        })
        .collect();
    format!("{path}?{}", params.join("&"))
}
