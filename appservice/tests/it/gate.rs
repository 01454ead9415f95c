//! A gate in front of the real Synapse, to induce homeserver failures: it forwards client-server API calls
//! untouched, answers them with a Matrix 502 error, or forwards a send to Synapse and never answers (the
//! homeserver accepted the event, the bridge never hears of it: a crash between the two).

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};

/// What the gate does with the next calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Mode {
    /// Forward to Synapse and answer with its answer.
    Open = 0,
    /// Answer `502 M_UNKNOWN` without forwarding.
    Fail = 1,
    /// Forward `…/send/…` calls to Synapse but never answer them; forward the rest.
    SwallowSendAnswers = 2,
}

#[derive(Debug)]
pub struct Gate {
    pub url: String,
    state: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

#[derive(Debug)]
struct Shared {
    upstream: String,
    mode: AtomicU8,
    swallowed: AtomicU64,
    http: reqwest::Client,
}

impl Gate {
    pub async fn start(upstream: &str) -> Gate {
        let state = Arc::new(Shared {
            upstream: upstream.trim_end_matches('/').to_owned(),
            mode: AtomicU8::new(Mode::Open as u8),
            swallowed: AtomicU64::new(0),
            http: reqwest::Client::new(),
        });
        let port = tincan_testkit::ports::free_port();
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await.unwrap();
        let app = axum::Router::new().fallback(forward).with_state(state.clone());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Gate { url: format!("http://127.0.0.1:{port}"), state, task }
    }

    pub fn set(&self, mode: Mode) {
        self.state.mode.store(mode as u8, Ordering::SeqCst);
    }

    /// Sends Synapse accepted whose answers the gate swallowed.
    pub fn swallowed(&self) -> u64 {
        self.state.swallowed.load(Ordering::SeqCst)
    }
}

impl Drop for Gate {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn forward(State(s): State<Arc<Shared>>, req: Request) -> Response {
    let mode = s.mode.load(Ordering::SeqCst);
    if mode == Mode::Fail as u8 {
        let body = r#"{"errcode": "M_UNKNOWN", "error": "induced by the test gate"}"#;
        return (StatusCode::BAD_GATEWAY, [("content-type", "application/json")], body).into_response();
    }
    let (parts, body) = req.into_parts();
    let body: Bytes = axum::body::to_bytes(body, usize::MAX).await.unwrap_or_default();
    let path = parts.uri.path_and_query().map(|p| p.as_str()).unwrap_or("/").to_owned();
    let method = reqwest::Method::from_bytes(parts.method.as_str().as_bytes()).unwrap();
    let mut out = s.http.request(method, format!("{}{path}", s.upstream)).body(body);
    for name in ["authorization", "content-type"] {
        if let Some(v) = parts.headers.get(name).and_then(|v| v.to_str().ok()) {
            out = out.header(name, v);
        }
    }
    let answer = match out.send().await {
        Ok(a) => a,
        Err(e) => return (StatusCode::BAD_GATEWAY, e.to_string()).into_response(),
    };
    let status = answer.status().as_u16();
    let bytes = answer.bytes().await.unwrap_or_default();
    if mode == Mode::SwallowSendAnswers as u8 && parts.uri.path().contains("/send/") {
        s.swallowed.fetch_add(1, Ordering::SeqCst);
        std::future::pending::<()>().await;
    }
    Response::builder().status(status).header("content-type", "application/json").body(Body::from(bytes)).unwrap()
}
