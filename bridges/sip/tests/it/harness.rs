//! A running SIP bridge for tests: Synapse with the bridge's registration, the bridge in this process on free
//! ports (core state and SIP state in SQLite), Alice holding +442079460001 with SIP devices `alice-desk` and
//! `alice-soft`.

use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tincan_appservice::registration::{Tokens, registration_yaml};
use tincan_common::Secret;
use tincan_sip::config::{SipBridgeConfig, StaticDevice};
use tincan_sip::run::Running;
use tincan_testkit::Synapse;
pub use tincan_testkit::matrix::{enc, wait_for};
use tincan_testkit::ports::free_port;

pub const ALICE_NUMBER: &str = "+442079460001";
pub const ALICE_DEVICE: &str = "alice-desk";
pub const ALICE_DEVICE_PASSWORD: &str = "desk-password-123";
pub const ALICE_SOFTPHONE: &str = "alice-soft";
pub const ALICE_SOFTPHONE_PASSWORD: &str = "soft-password-456";
pub const DOMAIN: &str = "sip.tincan.test";
pub const AS_TOKEN: &str = "sip-as-token";

pub struct Harness {
    /// Kept for the test's duration (dropping it stops Synapse).
    pub synapse: Synapse,
    pub bridge: Option<Running>,
    pub sip: SocketAddr,
    pub alice_api: tincan_testkit::matrix::Client,
    /// Alice's account (user, token, device), for clients of her own.
    pub alice_account: tincan_testkit::RegisteredUser,
    /// State (and, with encryption, the ghosts' crypto stores).
    pub _dir: tempfile::TempDir,
}

/// A config for a bridge on free ports with state in `dir`; numbers without an ENUM route go to `fallback`.
pub fn config(dir: &std::path::Path, fallback: Option<SocketAddr>) -> SipBridgeConfig {
    let as_port = free_port();
    let sip_port = free_port();
    let mut c = SipBridgeConfig::default();
    c.homeserver.url = "http://127.0.0.1:9".into();
    c.homeserver.server_name = "hs.test".into();
    c.appservice.id = "tincan-sip".into();
    c.appservice.listen = format!("127.0.0.1:{as_port}");
    c.appservice.url = format!("http://127.0.0.1:{as_port}");
    c.appservice.as_token = Secret::new(AS_TOKEN);
    c.appservice.hs_token = Secret::new("sip-hs-token");
    c.appservice.bot_localpart = "sipbot".into();
    c.database.url = format!("sqlite:{}", dir.join("core.db").display());
    c.sip.domain = DOMAIN.into();
    c.sip.listen = vec![format!("udp:127.0.0.1:{sip_port}"), format!("tcp:127.0.0.1:{sip_port}")];
    c.sip.nonce_secret = Secret::new("nonce-secret-for-tests-0123456789");
    c.sip.database_url = format!("sqlite:{}", dir.join("sip.db").display());
    c.sip.min_expires_secs = 30;
    c.subscribers.static_numbers = BTreeMap::from([(ALICE_NUMBER.into(), "@alice:hs.test".into())]);
    c.subscribers.static_devices = BTreeMap::from([
        (
            ALICE_DEVICE.into(),
            StaticDevice { number: ALICE_NUMBER.into(), password: Secret::new(ALICE_DEVICE_PASSWORD) },
        ),
        (
            ALICE_SOFTPHONE.into(),
            StaticDevice { number: ALICE_NUMBER.into(), password: Secret::new(ALICE_SOFTPHONE_PASSWORD) },
        ),
    ]);
    c.routes.dns_servers = vec!["127.0.0.1:9".into()];
    if let Some(f) = fallback {
        c.routes.fallback = vec![format!("sip:{f}")];
    }
    c
}

/// One REGISTER of Alice's number with Contact `sip:desk@` the sender; `auth` adds sipp's answer to the
/// challenge.
fn register_request(cseq: u32, expires: u32, auth: &str) -> String {
    format!(
        r#"  <send retrans="500"><![CDATA[
REGISTER sip:{DOMAIN} SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
From: <sip:{ALICE_NUMBER}@{DOMAIN}>;tag=[call_number]
To: <sip:{ALICE_NUMBER}@{DOMAIN}>
Call-ID: [call_id]
CSeq: {cseq} REGISTER
Contact: <sip:desk@[local_ip]:[local_port]>
{auth}Expires: {expires}
Max-Forwards: 70
Content-Length: 0

]]></send>
"#
    )
}

/// A sipp scenario registering Alice's number as device `user` with `password` for `expires` seconds: the
/// challenge, then the answer to it, expecting `expect`.
pub fn register(user: &str, password: &str, expires: u32, expect: u16) -> String {
    format!(
        "<?xml version=\"1.0\" encoding=\"ISO-8859-1\" ?>\n<scenario name=\"register\">\n{}  <recv response=\"401\" \
         auth=\"true\"/>\n{}  <recv response=\"{expect}\"/>\n</scenario>\n",
        register_request(1, expires, ""),
        register_request(2, expires, &format!("[authentication username={user} password={password}]\n")),
    )
}

impl Harness {
    /// Registers Alice's device `user` (with `password`) from `at` for 300 s, as a phone does.
    pub async fn register_device(&self, user: &str, password: &str, at: SocketAddr) {
        let s = tincan_testkit::sip::Scenario::new("register", &register(user, password, 300, 200)).unwrap();
        s.run(s.command(self.sip, at, 1)).await.unwrap();
    }

    pub async fn start(fallback: Option<SocketAddr>) -> Harness {
        Self::start_with(fallback, |_, _| {}).await
    }

    pub async fn start_with(
        fallback: Option<SocketAddr>,
        edit: impl FnOnce(&mut SipBridgeConfig, &std::path::Path),
    ) -> Harness {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(
                tracing_subscriber::EnvFilter::try_from_default_env()
                    .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
            )
            .with_test_writer()
            .try_init();
        let dir = tempfile::tempdir().unwrap();
        let mut config = config(dir.path(), fallback);
        edit(&mut config, dir.path());
        let core = config.core();
        let tokens = Tokens::from_config(&core).unwrap();
        let synapse = Synapse::builder().appservice(registration_yaml(&core, "sip_", &tokens)).start().await.unwrap();
        config.homeserver.url = synapse.url();
        let problems = tincan_common::config::Validate::validate(&config);
        assert!(problems.is_empty(), "{problems:?}");
        let running = tincan_sip::run::start(config, Arc::new(tincan_common::SystemClock)).await.unwrap();
        let sip = running.sip_listeners()[0].addr;
        let alice = synapse.register_user("alice", false).await.unwrap();
        let alice_api = tincan_testkit::matrix::Client::new(synapse.url(), alice.access_token.clone());
        Harness { synapse, bridge: Some(running), sip, alice_api, alice_account: alice, _dir: dir }
    }

    /// A client-server API call as Alice.
    pub async fn alice(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        self.alice_api.call(method, path, body).await
    }

    /// Waits for an invite to Alice, joins it and returns the room ID. (Synapse caches an initial sync's
    /// answer, so this follows `next_batch` instead of asking the same question again.)
    pub async fn join_invite(&self) -> String {
        let mut since: Option<String> = None;
        let deadline = Instant::now() + Duration::from_secs(30);
        let room = loop {
            assert!(Instant::now() < deadline, "timed out waiting for an invite to Alice");
            let path = match &since {
                Some(s) => format!("/_matrix/client/v3/sync?timeout=1000&since={}", enc(s)),
                None => "/_matrix/client/v3/sync?timeout=0".to_owned(),
            };
            let sync = self.alice(reqwest::Method::GET, &path, None).await;
            if let Some(r) = sync["rooms"]["invite"].as_object().and_then(|r| r.keys().next().cloned()) {
                break r;
            }
            since = sync["next_batch"].as_str().map(str::to_owned);
        };
        self.alice(reqwest::Method::POST, &format!("/_matrix/client/v3/rooms/{}/join", enc(&room)), Some(json!({})))
            .await;
        room
    }

    /// The `m.room.message` events of `room` (oldest first), as (sender, msgtype, body).
    pub async fn messages(&self, room: &str) -> Vec<(String, String, String)> {
        let v = self
            .alice(
                reqwest::Method::GET,
                &format!("/_matrix/client/v3/rooms/{}/messages?dir=b&limit=200", enc(room)),
                None,
            )
            .await;
        let mut out: Vec<(String, String, String)> = v["chunk"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["type"] == "m.room.message")
            .map(|e| {
                (
                    e["sender"].as_str().unwrap_or_default().to_owned(),
                    e["content"]["msgtype"].as_str().unwrap_or_default().to_owned(),
                    e["content"]["body"].as_str().unwrap_or_default().to_owned(),
                )
            })
            .collect();
        out.reverse();
        out
    }

    /// Alice opens an encrypted direct room with `ghost` and waits for the ghost to join; returns the room ID.
    pub async fn encrypted_dm(&self, ghost: &str) -> String {
        self.alice_api.encrypted_dm(ghost).await
    }

    /// The timeline events of `room` as the homeserver keeps them, oldest first.
    pub async fn server_copy(&self, room: &str) -> Vec<Value> {
        let path = format!("/_matrix/client/v3/rooms/{}/messages?dir=f&limit=1000", enc(room));
        self.alice(reqwest::Method::GET, &path, None).await["chunk"].as_array().unwrap().clone()
    }

    /// Waits for a `com.beeper.message_send_status` event on `event` in `room`; returns its content.
    pub async fn status_of(&self, room: &str, event: &str) -> Value {
        wait_for("the message status", Duration::from_secs(30), || async {
            self.server_copy(room).await.into_iter().find_map(|e| {
                (e["type"] == "com.beeper.message_send_status" && e["content"]["m.relates_to"]["event_id"] == event)
                    .then(|| e["content"].clone())
            })
        })
        .await
    }

    /// Alice sends `text` into `room`.
    pub async fn say(&self, room: &str, text: &str) -> String {
        static TXN: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let txn = format!("t{}", TXN.fetch_add(1, std::sync::atomic::Ordering::Relaxed));
        let v = self
            .alice(
                reqwest::Method::PUT,
                &format!("/_matrix/client/v3/rooms/{}/send/m.room.message/{txn}", enc(room)),
                Some(json!({"msgtype": "m.text", "body": text})),
            )
            .await;
        v["event_id"].as_str().unwrap().to_owned()
    }
}
