//! Number porting through the registrar API (`/v1/ports`), the directory serving in this process with an
//! injected clock: the losing provider releases (the number moves at once), objects with a reason (nothing
//! moves), or says nothing (the number moves when the window ends on the clock); each move is one port entry in
//! the transparency log naming both providers, and the losing provider's webhook hears of the request.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};
use tincan_common::MockClock;
use tincan_directory::config::DirectoryConfig;
use tincan_translog::LogEntry;

use crate::harness::add_provider;

const KEY_OLD: &str = "WGZmZmZmZmZmZmZmZmZmZmZmZmZmZmZmZmZmZmZmZmY";
const KEY_NEW: &str = "AQAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";

struct Running {
    api: String,
    clock: Arc<MockClock>,
    http: reqwest::Client,
    hooks: Arc<Mutex<Vec<Value>>>,
    a: String,
    b: String,
    _stop: tokio::sync::oneshot::Sender<()>,
    _dir: tempfile::TempDir,
}

impl Running {
    /// Providers `a` (+44) and `b` (+49), a webhook for `a`, the directory serving with the clock at 1.7e9.
    async fn start() -> Running {
        let dir = tempfile::tempdir().unwrap();
        let a = add_provider(dir.path(), "a", &["+44"]);
        let b = add_provider(dir.path(), "b", &["+49"]);
        let hooks = Arc::new(Mutex::new(Vec::new()));
        let seen = hooks.clone();
        let hook_app = axum::Router::new().route(
            "/hook",
            axum::routing::post(move |axum::Json(v): axum::Json<Value>| {
                let seen = seen.clone();
                async move {
                    seen.lock().unwrap().push(v);
                    "ok"
                }
            }),
        );
        let hook_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let hook_url = format!("http://{}/hook", hook_listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(hook_listener, hook_app).await });

        let mut config = DirectoryConfig { data_dir: Some(dir.path().to_owned()), ..Default::default() };
        config.dns.listen = "127.0.0.1:0".parse().unwrap();
        config.api.listen = "127.0.0.1:0".parse().unwrap();
        config.ports.window_secs = 3600;
        config.ports.webhooks.insert("a".into(), hook_url);
        let clock = Arc::new(MockClock::at(1_700_000_000));
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let (tx, rx) = tokio::sync::oneshot::channel();
        let serve_clock = clock.clone();
        tokio::spawn(async move {
            let on_listening = move |l: tincan_directory::serve::Listening| {
                let _ = tx.send(l.api);
            };
            tincan_directory::serve::serve(config, serve_clock, on_listening, async {
                let _ = stopped.await;
            })
            .await
            .unwrap();
        });
        let api = format!("http://{}", rx.await.unwrap());
        Running { api, clock, http: reqwest::Client::new(), hooks, a, b, _stop: stop, _dir: dir }
    }

    async fn call(&self, method: reqwest::Method, path: &str, token: &str, body: Option<Value>) -> (u16, Value) {
        let mut req = self.http.request(method, format!("{}{path}", self.api)).bearer_auth(token);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let r = req.send().await.unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    /// `a` registers `number` for `@old:a.test` with the old key.
    async fn register_at_a(&self, number: &str) {
        let services = json!({"services": [{"type": "matrix", "uri": "matrix:u/old:a.test"}]});
        let (s, _) = self.call(reqwest::Method::PUT, &format!("/v1/numbers/{number}"), &self.a, Some(services)).await;
        assert_eq!(s, 200);
        let key = json!({"ed25519": KEY_OLD});
        let (s, _) = self.call(reqwest::Method::PUT, &format!("/v1/numbers/{number}/key"), &self.a, Some(key)).await;
        assert_eq!(s, 200);
    }

    /// `b` files a port of `number` for `@new:b.test`.
    async fn file_at_b(&self, number: &str) -> (u16, Value) {
        let body = json!({
            "number": number,
            "services": [{"type": "matrix", "uri": "matrix:u/new:b.test"}],
            "ed25519": KEY_NEW,
        });
        self.call(reqwest::Method::POST, "/v1/ports", &self.b, Some(body)).await
    }

    async fn number(&self, number: &str) -> Value {
        self.call(reqwest::Method::GET, &format!("/v1/numbers/{number}"), &self.a, None).await.1
    }

    /// The newest log entry of `number`, through the public inclusion proof.
    async fn newest_entry(&self, number: &str) -> LogEntry {
        let url = format!("{}/v1/log/proof/inclusion?number={}", self.api, number.replace('+', "%2B"));
        let proof: Value = self.http.get(url).send().await.unwrap().json().await.unwrap();
        LogEntry::parse(proof["entry"].as_str().unwrap()).unwrap()
    }
}

fn assert_moved_to_b(entry: &LogEntry) {
    let LogEntry::Port { from, to, record, .. } = entry else { panic!("not a port entry: {entry:?}") };
    assert_eq!((from.name.as_str(), to.name.as_str()), ("a", "b"));
    assert_eq!(record.services[0].uri(), "matrix:u/new:b.test");
    assert_eq!(record.key.unwrap().to_base64(), KEY_NEW);
}

#[tokio::test]
async fn the_losing_provider_releases_and_the_number_moves_at_once_as_a_logged_port() {
    let d = Running::start().await;
    let n = "+442079460001";
    d.register_at_a(n).await;

    let (s, port) = d.file_at_b(n).await;
    assert_eq!(s, 202, "{port}");
    assert_eq!(
        (port["state"].as_str(), port["losing"].as_str(), port["gaining"].as_str()),
        (Some("pending"), Some("a"), Some("b"))
    );
    let id = port["id"].as_i64().unwrap();
    // The losing provider is told (webhook, then the registrar API says what).
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while d.hooks.lock().unwrap().is_empty() {
        assert!(std::time::Instant::now() < deadline, "no webhook");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(d.hooks.lock().unwrap()[0], json!({"port_id": id, "event": "filed"}));
    let (_, open) = d.call(reqwest::Method::GET, "/v1/ports?open=true", &d.a, None).await;
    assert_eq!(open["ports"][0]["id"], id);
    assert_eq!(d.number(n).await["provider"], "a", "nothing moved yet");

    // Only the losing side releases.
    let (s, e) = d.call(reqwest::Method::POST, &format!("/v1/ports/{id}/release"), &d.b, None).await;
    assert_eq!((s, e["error"]["code"].as_str()), (403, Some("not_your_side")));
    let (s, done) = d.call(reqwest::Method::POST, &format!("/v1/ports/{id}/release"), &d.a, None).await;
    assert_eq!((s, done["state"].as_str()), (200, Some("completed")), "{done}");

    let now = d.number(n).await;
    assert_eq!(now["provider"], "b");
    assert_eq!(now["services"][0]["uri"], "matrix:u/new:b.test");
    assert_eq!(now["key"]["ed25519"], KEY_NEW);
    assert_moved_to_b(&d.newest_entry(n).await);
    // The gaining provider now writes the number though it lies outside its prefixes; the old holder cannot.
    let services = json!({"services": [{"type": "matrix", "uri": "matrix:u/new2:b.test"}]});
    let (s, _) = d.call(reqwest::Method::PUT, &format!("/v1/numbers/{n}"), &d.b, Some(services.clone())).await;
    assert_eq!(s, 200);
    let (s, e) = d.call(reqwest::Method::PUT, &format!("/v1/numbers/{n}"), &d.a, Some(services)).await;
    assert_eq!((s, e["error"]["code"].as_str()), (409, Some("number_held_by_other_provider")));
    let (s, e) = d.call(reqwest::Method::POST, &format!("/v1/ports/{id}/release"), &d.a, None).await;
    assert_eq!((s, e["error"]["code"].as_str()), (409, Some("port_closed")));
}

#[tokio::test]
async fn an_objection_with_a_listed_reason_keeps_the_number_and_other_reasons_are_refused() {
    let d = Running::start().await;
    let n = "+442079460002";
    d.register_at_a(n).await;
    let (_, port) = d.file_at_b(n).await;
    let id = port["id"].as_i64().unwrap();
    // A second request for the same number by another provider waits for this one.
    let c = add_provider(d._dir.path(), "c", &["+33"]);
    let body = json!({"number": n, "services": [{"type": "matrix", "uri": "matrix:u/x:c.test"}]});
    let (s, e) = d.call(reqwest::Method::POST, "/v1/ports", &c, Some(body)).await;
    assert_eq!((s, e["error"]["code"].as_str()), (409, Some("port_in_progress")));
    // A stranger does not see it.
    let (s, _) = d.call(reqwest::Method::GET, &format!("/v1/ports/{id}"), &c, None).await;
    assert_eq!(s, 404);

    let object = |reason: &str| json!({ "reason": reason });
    let (s, e) =
        d.call(reqwest::Method::POST, &format!("/v1/ports/{id}/object"), &d.a, Some(object("we_like_them"))).await;
    assert_eq!((s, e["error"]["code"].as_str()), (400, Some("invalid_json")), "not a listed reason");
    let (s, e) =
        d.call(reqwest::Method::POST, &format!("/v1/ports/{id}/object"), &d.b, Some(object("fraud_suspected"))).await;
    assert_eq!((s, e["error"]["code"].as_str()), (403, Some("not_your_side")));
    let (s, objected) = d
        .call(reqwest::Method::POST, &format!("/v1/ports/{id}/object"), &d.a, Some(object("registration_locked")))
        .await;
    assert_eq!(
        (s, objected["state"].as_str(), objected["reason"].as_str()),
        (200, Some("objected"), Some("registration_locked"))
    );

    // Past the window nothing moves: the objection stands.
    d.clock.advance(Duration::from_secs(7200));
    let (_, later) = d.call(reqwest::Method::GET, &format!("/v1/ports/{id}"), &d.b, None).await;
    assert_eq!(later["state"], "objected");
    let now = d.number(n).await;
    assert_eq!((now["provider"].as_str(), now["key"]["ed25519"].as_str()), (Some("a"), Some(KEY_OLD)));
    assert!(matches!(d.newest_entry(n).await, LogEntry::Number { .. }));
}

#[tokio::test]
async fn without_an_answer_the_number_moves_when_the_window_ends_and_not_before() {
    let d = Running::start().await;
    let n = "+442079460003";
    d.register_at_a(n).await;
    // Filed without a key first (the subscriber has not signed in at b yet), then amended with it.
    let body = json!({"number": n, "services": [{"type": "matrix", "uri": "matrix:u/new:b.test"}]});
    let (s, first) = d.call(reqwest::Method::POST, "/v1/ports", &d.b, Some(body)).await;
    assert_eq!((s, &first["key"]), (202, &Value::Null));
    let (s, port) = d.file_at_b(n).await;
    assert_eq!((s, &port["id"], port["key"]["ed25519"].as_str()), (202, &first["id"], Some(KEY_NEW)));
    let id = port["id"].as_i64().unwrap();

    d.clock.advance(Duration::from_secs(3599));
    let (_, still) = d.call(reqwest::Method::GET, &format!("/v1/ports/{id}"), &d.a, None).await;
    assert_eq!(still["state"], "pending");
    assert_eq!(d.number(n).await["provider"], "a");

    d.clock.advance(Duration::from_secs(1));
    // Too late to object: the window has ended, and the read that finds it so completes the port.
    let (s, e) = d
        .call(
            reqwest::Method::POST,
            &format!("/v1/ports/{id}/object"),
            &d.a,
            Some(json!({"reason": "fraud_suspected"})),
        )
        .await;
    assert_eq!((s, e["error"]["code"].as_str()), (409, Some("objection_window_closed")));
    let (_, done) = d.call(reqwest::Method::GET, &format!("/v1/ports/{id}"), &d.b, None).await;
    assert_eq!(done["state"], "completed");
    assert_eq!(d.number(n).await["provider"], "b");
    assert_moved_to_b(&d.newest_entry(n).await);
}
