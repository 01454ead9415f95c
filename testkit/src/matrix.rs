//! Small helpers the Matrix-facing integration tests share: a client-server API caller (with the encrypted
//! DM the bridges' tests open), percent-encoding of a path segment, and polling until something holds.

use serde_json::Value;
use std::time::{Duration, Instant};

/// Calls a homeserver's client-server API with one access token.
#[derive(Debug, Clone)]
pub struct Client {
    /// The HTTP client.
    pub http: reqwest::Client,
    /// The homeserver's base URL.
    pub base: String,
    /// The access token.
    pub token: String,
}

impl Client {
    /// A caller of `base` with `token`.
    pub fn new(base: impl Into<String>, token: impl Into<String>) -> Self {
        Self { http: reqwest::Client::new(), base: base.into(), token: token.into() }
    }

    /// `method path` with an optional JSON body; panics (with the answer) unless it succeeds.
    pub async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let mut req = self.http.request(method, format!("{}{path}", self.base)).bearer_auth(&self.token);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.unwrap_or_else(|e| panic!("{path}: {e}"));
        let status = resp.status();
        let v: Value = resp.json().await.unwrap_or(Value::Null);
        assert!(status.is_success(), "{path}: {status} {v}");
        v
    }

    /// Opens an encrypted direct room with `ghost` (as Element, matrix-js-sdk and the Tincan client do:
    /// `trusted_private_chat` with `m.room.encryption` in the initial state) and waits until the ghost has
    /// joined; returns the room ID.
    pub async fn encrypted_dm(&self, ghost: &str) -> String {
        let created = self
            .call(
                reqwest::Method::POST,
                "/_matrix/client/v3/createRoom",
                Some(serde_json::json!({"invite": [ghost], "is_direct": true, "preset": "trusted_private_chat",
                    "initial_state": [{"type": "m.room.encryption", "state_key": "",
                                       "content": {"algorithm": "m.megolm.v1.aes-sha2"}}]})),
            )
            .await;
        let room = created["room_id"].as_str().unwrap_or_else(|| panic!("createRoom answered {created}")).to_owned();
        wait_for("the ghost to join the encrypted DM", Duration::from_secs(60), || async {
            let path = format!("/_matrix/client/v3/rooms/{}/joined_members", enc(&room));
            self.call(reqwest::Method::GET, &path, None).await["joined"].get(ghost).map(|_| ())
        })
        .await;
        room
    }
}

/// Percent-encodes everything but unreserved characters (for room IDs, user IDs, tokens in paths).
pub fn enc(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// Polls `f` every 100 ms until it gives a value; panics naming `what` after `timeout`.
pub async fn wait_for<T, F, Fut>(what: &str, timeout: Duration, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
