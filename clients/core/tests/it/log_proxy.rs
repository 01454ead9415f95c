//! A man-in-the-middle on the directory's transparency log API, as a dishonest directory operator would run it
//! for one victim: an HTTP proxy in front of `tincan-directory`'s API that passes everything through unless told
//! to lie ([`LogMode`]). Shared with the CLI's tests (`#[path]`).

#![allow(dead_code)]

use axum::Router;
use axum::extract::{Query, State};
use axum::http::{StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::json;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tincan_translog::wire::{ConsistencyProof, InclusionProof};
use tincan_translog::{Hash, TreeHead, TreeHeadSigner, consistency_proof, inclusion_proof, leaf_hash, root};
use tokio::task::JoinHandle;

/// What the proxy does to the log API.
#[derive(Clone)]
pub enum LogMode {
    /// Passes everything through.
    Honest,
    /// Says the log has no entry for this number (`+E.164`), while DNS keeps serving its record: a record the
    /// log never saw.
    Unlogged(String),
    /// Answers every inclusion proof from a forked tree, signed with the log's own key: as many made-up leaves
    /// as the real tree has, then the real entry (so the record matches DNS), and consistency proofs from that
    /// forked tree. Every signature verifies; only consistency with an earlier real head fails.
    Fork(TreeHeadSigner),
}

struct Shared {
    upstream: String,
    http: reqwest::Client,
    mode: Mutex<LogMode>,
    /// The leaves of the forked tree last shown.
    forked: Mutex<Vec<Hash>>,
}

/// The proxy; stopped on drop.
pub struct LogProxy {
    /// Its base URL (what a client is configured with as the log URL).
    pub url: String,
    shared: Arc<Shared>,
    task: JoinHandle<()>,
}

impl LogProxy {
    /// Starts an honest proxy in front of `upstream` (`http://127.0.0.1:PORT`).
    pub async fn start(upstream: &str) -> anyhow::Result<LogProxy> {
        let shared = Arc::new(Shared {
            upstream: upstream.trim_end_matches('/').to_owned(),
            http: reqwest::Client::new(),
            mode: Mutex::new(LogMode::Honest),
            forked: Mutex::new(Vec::new()),
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}", listener.local_addr()?);
        let app = Router::new().fallback(handle).with_state(shared.clone());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(LogProxy { url, shared, task })
    }

    /// Changes what the proxy does from the next request on.
    pub fn set_mode(&self, mode: LogMode) {
        *self.shared.mode.lock().unwrap() = mode;
    }
}

impl Drop for LogProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn handle(State(s): State<Arc<Shared>>, uri: Uri, Query(q): Query<HashMap<String, String>>) -> Response {
    let mode = s.mode.lock().unwrap().clone();
    let result = match (uri.path(), mode) {
        ("/v1/log/proof/inclusion", LogMode::Unlogged(n)) if q.get("number") == Some(&n) => {
            let body = json!({"error": {"code": "log_entry_not_found", "message": "no such log entry"}});
            return (StatusCode::NOT_FOUND, axum::Json(body)).into_response();
        }
        ("/v1/log/proof/inclusion", LogMode::Fork(signer)) => forked_inclusion(&s, &uri, &signer).await,
        ("/v1/log/proof/consistency", LogMode::Fork(_)) => forked_consistency(&s, &uri, &q).await,
        _ => forward(&s, &uri).await,
    };
    result.unwrap_or_else(|e| (StatusCode::BAD_GATEWAY, e.to_string()).into_response())
}

async fn forward(s: &Shared, uri: &Uri) -> anyhow::Result<Response> {
    let path = uri.path_and_query().map_or("/", |p| p.as_str());
    let r = s.http.get(format!("{}{path}", s.upstream)).send().await?;
    let status = StatusCode::from_u16(r.status().as_u16())?;
    let body = r.bytes().await?;
    Ok((status, [("content-type", "application/json")], body).into_response())
}

async fn forked_inclusion(s: &Shared, uri: &Uri, signer: &TreeHeadSigner) -> anyhow::Result<Response> {
    let path = uri.path_and_query().map_or("/", |p| p.as_str());
    let r = s.http.get(format!("{}{path}", s.upstream)).send().await?;
    if !r.status().is_success() {
        return forward(s, uri).await;
    }
    let real: InclusionProof = r.json().await?;
    let size = real.sth.head.tree_size;
    let mut leaves: Vec<Hash> = (0..size).map(|i| leaf_hash(format!("forked leaf {i}").as_bytes())).collect();
    leaves.push(leaf_hash(real.entry.as_bytes()));
    let index = leaves.len() - 1;
    let head = TreeHead {
        tree_size: leaves.len() as u64,
        timestamp_ms: real.sth.head.timestamp_ms + 1,
        root_hash: root(&leaves),
    };
    let forged = InclusionProof {
        index: index as u64,
        entry: real.entry,
        proof: inclusion_proof(&leaves, index)?,
        sth: signer.sign(head),
    };
    *s.forked.lock().unwrap() = leaves;
    Ok(axum::Json(forged).into_response())
}

async fn forked_consistency(s: &Shared, uri: &Uri, q: &HashMap<String, String>) -> anyhow::Result<Response> {
    let leaves = s.forked.lock().unwrap().clone();
    let size = |k: &str| q.get(k).and_then(|v| v.parse::<usize>().ok());
    match (size("from"), size("to")) {
        (Some(from), Some(to)) if to == leaves.len() && from <= to => Ok(axum::Json(ConsistencyProof {
            from: from as u64,
            to: to as u64,
            from_root: root(&leaves[..from]),
            to_root: root(&leaves),
            proof: consistency_proof(&leaves, from)?,
        })
        .into_response()),
        _ => forward(s, uri).await,
    }
}
