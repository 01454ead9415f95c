//! A recording push gateway: the Matrix push gateway API's notify endpoint (`POST /_matrix/push/v1/notify`) on
//! 127.0.0.1, answering as a gateway that accepted every pushkey and handing each notification to the test.

use axum::extract::State;
use axum::routing::post;
use axum::{Json, Router};
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// The gateway; stopped on drop.
pub struct PushGateway {
    /// The notify URL a pusher is registered with.
    pub url: String,
    /// The `notification` objects the homeserver posted, in order.
    pub received: mpsc::UnboundedReceiver<Value>,
    task: JoinHandle<()>,
}

impl PushGateway {
    pub async fn start() -> anyhow::Result<PushGateway> {
        let (tx, received) = mpsc::unbounded_channel();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}/_matrix/push/v1/notify", listener.local_addr()?);
        let app = Router::new().route("/_matrix/push/v1/notify", post(notify)).with_state(tx);
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(PushGateway { url, received, task })
    }
}

async fn notify(State(tx): State<mpsc::UnboundedSender<Value>>, Json(body): Json<Value>) -> Json<Value> {
    let _ = tx.send(body["notification"].clone());
    Json(json!({"rejected": []}))
}

impl Drop for PushGateway {
    fn drop(&mut self) {
        self.task.abort();
    }
}
