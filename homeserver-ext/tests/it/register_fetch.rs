//! `account/register` fetches `https://{matrix_server_name}`, a name the client chose (issue #14 item 7): it
//! must not become a way into the extension's own network. Names resolving to loopback are refused unless
//! allowed (nothing is contacted), redirects are not followed, and a silent server is given up on within
//! `identity.homeserver_timeout_secs`. The homeserver is a real HTTPS server (`tests/https_hs.py`) on loopback,
//! allowed through `identity.homeserver_allowed_addresses = ["127.0.0.1"]`.

use crate::harness::{Api, Ext, read_jsonl};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tincan_testkit::ChildGuard;

const BASE: &str = "server_name = \"hs.test\"\n[homeserver]\njwt_secret = \"unused-secret-0123456789\"\n";
const ALLOW_LOOPBACK: &str =
    "[identity]\nhomeserver_allowed_addresses = [\"127.0.0.1\"]\nhomeserver_timeout_secs = 1\n";

/// A TCP listener on 127.0.0.1 that counts connections; it closes each at once, or holds it open and silent.
async fn listener(hold: bool) -> (u16, Arc<AtomicUsize>) {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    let count = Arc::new(AtomicUsize::new(0));
    let c = count.clone();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = l.accept().await {
            c.fetch_add(1, Ordering::SeqCst);
            if hold {
                held.push(s);
            }
        }
    });
    (port, count)
}

pub async fn register(ext: &Ext, server_name: &str, token: &str) -> (u16, Value) {
    let body =
        json!({"access_token": token, "token_type": "Bearer", "matrix_server_name": server_name, "expires_in": 3600});
    ext.post("/_matrix/identity/v2/account/register", body).await
}

/// `tests/https_hs.py`: its certificate and its request log.
pub struct HttpsHomeserver {
    _guard: ChildGuard,
    pub port: u16,
    dir: tempfile::TempDir,
}

impl HttpsHomeserver {
    /// On 127.0.0.1 and a free port, with a certificate for `localhost` and 127.0.0.1.
    async fn start(redirect: &str) -> HttpsHomeserver {
        Self::start_with(tincan_testkit::ports::free_port(), redirect, &[]).await
    }

    /// On `port`, with the script's further `args` (`--bind`, `--names`, `--sub`, `--well-known`).
    pub async fn start_with(port: u16, redirect: &str, args: &[&str]) -> HttpsHomeserver {
        let dir = tempfile::tempdir().unwrap();
        let python = tincan_testkit::synapse::venv().join("bin/python");
        let mut cmd = Command::new(python);
        cmd.arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/https_hs.py"))
            .arg(port.to_string())
            .arg(dir.path())
            .arg(redirect)
            .args(args);
        let mut guard = ChildGuard::spawn_logged("https-hs", cmd, dir.path().join("log.jsonl")).unwrap();
        let deadline = Instant::now() + Duration::from_secs(15);
        while !read_jsonl(&dir.path().join("log.jsonl")).iter().any(|e| e["event"] == "listening") {
            guard.ensure_running().unwrap();
            assert!(Instant::now() < deadline, "https_hs.py did not start\n{}", guard.log_tail(20));
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        HttpsHomeserver { _guard: guard, port, dir }
    }

    pub fn cert(&self) -> PathBuf {
        self.dir.path().join("cert.pem")
    }

    pub fn requests(&self) -> usize {
        self.request_log().len()
    }

    /// The requests it answered: `{"path": …, "host": …}` each.
    pub fn request_log(&self) -> Vec<Value> {
        read_jsonl(&self.dir.path().join("log.jsonl")).into_iter().filter(|e| e["event"] == "request").collect()
    }
}

#[tokio::test]
async fn register_refuses_server_names_on_loopback_and_contacts_nothing() {
    let (port, connections) = listener(false).await;
    let ext = Ext::start(BASE).await.unwrap();
    for name in [format!("localhost:{port}"), format!("127.0.0.1:{port}"), format!("[::1]:{port}")] {
        let (status, body) = register(&ext, &name, "t").await;
        assert_eq!(status, 403, "{name}: {body}");
        assert_eq!(body["errcode"], "M_FORBIDDEN", "{name}: {body}");
    }
    assert_eq!(connections.load(Ordering::SeqCst), 0, "the extension connected to a loopback server");
}

#[tokio::test]
async fn register_follows_no_redirect_and_contacts_an_allowed_loopback_homeserver() {
    let (target, redirected) = listener(false).await;
    let hs = HttpsHomeserver::start(&format!("http://127.0.0.1:{target}/_matrix/federation/v1/openid/userinfo")).await;
    let cert = hs.cert();
    let ext = Ext::start_env(None, &format!("{BASE}{ALLOW_LOOPBACK}"), &[("SSL_CERT_FILE", cert.to_str().unwrap())])
        .await
        .unwrap();
    let name = format!("localhost:{}", hs.port);

    // The homeserver answers 302 to a loopback URL: not followed, so the token is not accepted.
    let (status, body) = register(&ext, &name, "redirect").await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(hs.requests(), 1);
    assert_eq!(redirected.load(Ordering::SeqCst), 0, "the extension followed the redirect");

    // Allowed, the same homeserver vouches for its user and the token works.
    let (status, body) = register(&ext, &name, "good").await;
    assert_eq!(status, 200, "{body}");
    let token = body["token"].as_str().unwrap().to_owned();
    let (status, account) = ext.get("/_matrix/identity/v2/account", &token).await;
    assert_eq!((status, account["user_id"].as_str()), (200, Some(format!("@alice:{name}").as_str())));
}

#[tokio::test]
async fn register_gives_up_on_a_silent_homeserver_within_the_timeout() {
    let (port, connections) = listener(true).await;
    let ext = Ext::start(&format!("{BASE}{ALLOW_LOOPBACK}")).await.unwrap();
    let started = Instant::now();
    let (status, body) =
        tokio::time::timeout(Duration::from_secs(15), register(&ext, &format!("localhost:{port}"), "t"))
            .await
            .expect("account/register still waiting for a silent homeserver after 15 s");
    let took = started.elapsed();
    assert_eq!(status, 502, "{body}");
    assert_eq!(connections.load(Ordering::SeqCst), 1, "the allowed address was contacted once");
    assert!(took < Duration::from_secs(5), "took {took:?} with homeserver_timeout_secs = 1");
}
