//! The whole bridge against a real Synapse and the smpp34 SMSC: a user DMs a phone number's ghost (found by the
//! `m.protocol.pstn` lookup), the text goes out from the user's number, receipts and replies come back into the
//! DM, long replies are put back together; refusals, opt-outs and commands answer in the DM.

use crate::harness::{Smsc, wait_for};
use crate::link::smsc;
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;
use tincan_appservice::registration::{Tokens, registration_yaml};
use tincan_common::{Secret, SystemClock};
use tincan_sms::billing::Free;
use tincan_sms::bridge::SmsBridge;
use tincan_sms::config::Config;
use tincan_sms::protocol::{gsm7, ucs2, udh};
use tincan_testkit::Synapse;

pub const AS_TOKEN: &str = "sms-as-token-for-tests";
pub const HS_TOKEN: &str = "sms-hs-token-for-tests";
pub const DIDS: [&str; 3] = ["+447400000001", "+447400000002", "+447400000003"];

pub struct Client {
    pub http: reqwest::Client,
    pub base: String,
    pub token: String,
}

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

impl Client {
    pub async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let mut req = self.http.request(method, format!("{}{path}", self.base)).bearer_auth(&self.token);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status();
        let v: Value = resp.json().await.unwrap_or(Value::Null);
        assert!(status.is_success(), "{path}: {status} {v}");
        v
    }

    /// The ghost of `number`, through the homeserver's third-party lookup.
    pub async fn ghost_of(&self, number: &str) -> String {
        let v = self
            .call(
                reqwest::Method::GET,
                &format!("/_matrix/client/v3/thirdparty/user/m.protocol.pstn?m.id.phone={}", enc(number)),
                None,
            )
            .await;
        v[0]["userid"].as_str().unwrap().to_owned()
    }

    /// A DM with `ghost`; returns the room once the ghost joined.
    pub async fn dm(&self, ghost: &str) -> String {
        let room = self
            .call(
                reqwest::Method::POST,
                "/_matrix/client/v3/createRoom",
                Some(json!({"invite": [ghost], "is_direct": true, "preset": "trusted_private_chat"})),
            )
            .await["room_id"]
            .as_str()
            .unwrap()
            .to_owned();
        wait_for("the ghost to join", Duration::from_secs(60), || async {
            let members = self
                .call(reqwest::Method::GET, &format!("/_matrix/client/v3/rooms/{}/joined_members", enc(&room)), None)
                .await;
            members["joined"].get(ghost).map(|_| ())
        })
        .await;
        room
    }

    /// Uploads `data` as this user; its `mxc://` URI.
    pub async fn upload(&self, data: Vec<u8>, content_type: &str) -> String {
        let resp = self
            .http
            .post(format!("{}/_matrix/media/v3/upload", self.base))
            .bearer_auth(&self.token)
            .header("Content-Type", content_type)
            .body(data)
            .send()
            .await
            .unwrap();
        assert!(resp.status().is_success(), "upload: {}", resp.status());
        resp.json::<Value>().await.unwrap()["content_uri"].as_str().unwrap().to_owned()
    }

    /// Sends an `m.room.message` with `content`; its event ID.
    pub async fn send_content(&self, room: &str, txn: &str, content: Value) -> String {
        self.call(
            reqwest::Method::PUT,
            &format!("/_matrix/client/v3/rooms/{}/send/m.room.message/{txn}", enc(room)),
            Some(content),
        )
        .await["event_id"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    pub async fn send(&self, room: &str, txn: &str, body: &str) -> String {
        self.call(
            reqwest::Method::PUT,
            &format!("/_matrix/client/v3/rooms/{}/send/m.room.message/{txn}", enc(room)),
            Some(json!({"msgtype": "m.text", "body": body})),
        )
        .await["event_id"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    /// The contents of the messages `sender` posted in `room`, oldest first.
    pub async fn contents_from(&self, room: &str, sender: &str) -> Vec<Value> {
        let page = self
            .call(
                reqwest::Method::GET,
                &format!("/_matrix/client/v3/rooms/{}/messages?dir=f&limit=1000", enc(room)),
                None,
            )
            .await;
        page["chunk"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["type"] == "m.room.message" && e["sender"] == sender)
            .map(|e| e["content"].clone())
            .collect()
    }

    /// Message bodies `sender` posted in `room`, oldest first.
    pub async fn bodies_from(&self, room: &str, sender: &str) -> Vec<String> {
        let contents = self.contents_from(room, sender).await;
        contents.iter().map(|c| c["body"].as_str().unwrap_or_default().to_owned()).collect()
    }

    /// Waits for a message from `sender` in `room` whose body satisfies `pred`.
    pub async fn wait_body(&self, room: &str, sender: &str, what: &str, pred: impl Fn(&str) -> bool) -> String {
        wait_for(what, Duration::from_secs(60), || async {
            self.bodies_from(room, sender).await.into_iter().find(|b| pred(b))
        })
        .await
    }

    /// The contents of the `com.beeper.message_send_status` events on `event` in `room`, oldest first.
    pub async fn statuses(&self, room: &str, event: &str) -> Vec<Value> {
        let page = self
            .call(
                reqwest::Method::GET,
                &format!("/_matrix/client/v3/rooms/{}/messages?dir=f&limit=1000", enc(room)),
                None,
            )
            .await;
        page["chunk"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| {
                e["type"] == "com.beeper.message_send_status" && e["content"]["m.relates_to"]["event_id"] == event
            })
            .map(|e| e["content"].clone())
            .collect()
    }

    /// Waits for a status event on `event` whose `status` is `status`; returns its content.
    pub async fn wait_status(&self, room: &str, event: &str, status: &str) -> Value {
        wait_for(&format!("the {status} status"), Duration::from_secs(60), || async {
            self.statuses(room, event).await.into_iter().find(|c| c["status"] == status)
        })
        .await
    }

    /// Whether `user` has a read receipt on `event` in `room` (from a full sync).
    pub async fn has_receipt(&self, room: &str, event: &str, user: &str) -> bool {
        let sync = self.call(reqwest::Method::GET, "/_matrix/client/v3/sync?timeout=0", None).await;
        let ephemeral = &sync["rooms"]["join"][room]["ephemeral"]["events"];
        ephemeral
            .as_array()
            .into_iter()
            .flatten()
            .any(|e| e["type"] == "m.receipt" && !e["content"][event]["m.read"][user].is_null())
    }
}

pub struct World {
    pub synapse: Synapse,
    pub smsc: Smsc,
    /// The bridge's `sms.listen` (served by the test where it needs it).
    pub sms_listen: String,
    pub bridge: tincan_appservice::Bridge,
    pub sms: SmsBridge,
    pub alice: Client,
    pub bob: Client,
    /// State (and, with encryption, the ghosts' crypto stores).
    pub _dir: tempfile::TempDir,
}

pub fn config(dir: &std::path::Path, smsc_port: u16) -> Config {
    let port = tincan_testkit::ports::free_port();
    let mut c = Config::default();
    c.homeserver.url = "http://127.0.0.1:9".into();
    c.homeserver.server_name = "hs.test".into();
    c.appservice.id = "tincan-sms".into();
    c.appservice.listen = format!("127.0.0.1:{port}");
    c.appservice.url = format!("http://127.0.0.1:{port}");
    c.appservice.as_token = Secret::new(AS_TOKEN);
    c.appservice.hs_token = Secret::new(HS_TOKEN);
    c.appservice.bot_localpart = "smsbot".into();
    c.database.url = format!("sqlite:{}", dir.join("core.db").display());
    c.sms.database_url = format!("sqlite:{}", dir.join("sms.db").display());
    c.sms.listen = format!("127.0.0.1:{}", tincan_testkit::ports::free_port());
    c.sms.numbers = DIDS.map(String::from).to_vec();
    c.sms.smsc = vec![smsc("peer", smsc_port, 0, 10)];
    c.sms.reassembly.timeout_secs = 3;
    c
}

pub async fn world() -> World {
    world_with(Arc::new(Free)).await
}

pub async fn world_with(billing: Arc<dyn tincan_sms::billing::Billing>) -> World {
    world_configured(billing, |_, _| {}).await
}

/// A world whose bridge config `edit` changes first (given the state folder).
pub async fn world_configured(
    billing: Arc<dyn tincan_sms::billing::Billing>,
    edit: impl FnOnce(&mut Config, &std::path::Path),
) -> World {
    let dir = tempfile::tempdir().unwrap();
    let smsc_peer = Smsc::start().await.unwrap();
    smsc_peer.set(json!({"dlr": "tlv"})).await;
    let mut config = config(dir.path(), smsc_peer.port);
    edit(&mut config, dir.path());
    let core = config.core();
    let tokens = Tokens::from_config(&core).unwrap();
    let synapse = Synapse::builder()
        .appservice(registration_yaml(&core, "sms_", &tokens))
        // Polled syncs must see new receipts, not a cached answer.
        .config(json!({"caches": {"sync_response_cache_duration": 0}}))
        .start()
        .await
        .unwrap();
    config.homeserver.url = synapse.url();
    let store = tincan_sms::store::open(&config.sms.database_url).await.unwrap();
    let sms = SmsBridge::new(config.sms.clone(), "hs.test", store, billing, Arc::new(SystemClock));
    let bridge = tincan_appservice::Bridge::builder(config.core()).start(Arc::new(sms.clone())).await.unwrap();
    let client = |u: tincan_testkit::RegisteredUser| Client {
        http: reqwest::Client::new(),
        base: synapse.url(),
        token: u.access_token,
    };
    let alice = client(synapse.register_user("alice", false).await.unwrap());
    let bob = client(synapse.register_user("bob", false).await.unwrap());
    World { synapse, smsc: smsc_peer, sms_listen: config.sms.listen.clone(), bridge, sms, alice, bob, _dir: dir }
}

fn sm(s: &Value) -> Vec<u8> {
    hex::decode(s["sm"].as_str().unwrap()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn texts_go_out_from_the_users_number_and_replies_receipts_and_long_messages_come_back() {
    let w = world().await;
    let ghost = w.alice.ghost_of("+44 7400 123456").await;
    assert_eq!(ghost, "@sms_+447400123456:hs.test");
    let room = w.alice.dm(&ghost).await;

    // Out: GSM 7-bit from Alice's number (the first of the pool), with a receipt request.
    let event = w.alice.send(&room, "t1", "Hello {world} €5").await;
    let submit = w.smsc.wait_submits(1, Duration::from_secs(30)).await.remove(0);
    assert_eq!(
        (submit["source_addr"].as_str(), submit["destination_addr"].as_str()),
        (Some("447400000001"), Some("447400123456"))
    );
    assert_eq!((submit["data_coding"].as_u64(), submit["esm_class"].as_u64()), (Some(0), Some(0)));
    assert_eq!(sm(&submit), gsm7::encode("Hello {world} €5").unwrap());
    // The SMSC's receipt marks it delivered: a message status delivered to the ghost (after the SMSC's
    // acceptance), and the ghost's read receipt on Alice's message for clients that show no status.
    let delivered = wait_for("the delivered status", Duration::from_secs(60), || async {
        w.alice.statuses(&room, &event).await.into_iter().find(|c| c.get("delivered_to_users").is_some())
    })
    .await;
    assert_eq!(
        delivered,
        json!({"network": "sms", "m.relates_to": {"rel_type": "m.reference", "event_id": event},
               "status": "SUCCESS", "delivered_to_users": [ghost]})
    );
    wait_for("the delivery receipt in Matrix", Duration::from_secs(60), || async {
        w.alice.has_receipt(&room, &event, &ghost).await.then_some(())
    })
    .await;

    // In: a reply to Alice's number comes from the ghost.
    w.smsc
        .control(json!({"cmd": "deliver", "source": "447400123456", "dest": "447400000001", "hex": hex::encode(gsm7::encode("Hi Alice!").unwrap())}))
        .await
        .unwrap();
    w.alice.wait_body(&room, &ghost, "the reply", |b| b == "Hi Alice!").await;

    // A long UCS-2 reply in three parts, arriving out of order, is one message.
    let text = format!("{}👍{}", "Привет ".repeat(19), "ок".repeat(30));
    let s = tincan_sms::protocol::segment::segment(&text, udh::Reference::Eight(42)).unwrap();
    assert_eq!(s.segments.len(), 3);
    for i in [2, 0, 1] {
        let r = w
            .smsc
            .control(json!({"cmd": "deliver", "source": "447400123456", "dest": "447400000001", "esm_class": 0x40,
                            "data_coding": 8, "hex": hex::encode(s.segments[i].short_message())}))
            .await
            .unwrap();
        assert_eq!(r["status"], 0);
    }
    w.alice.wait_body(&room, &ghost, "the long reply", |b| b == text).await;

    // A long reply whose second part never comes: what came, after the timeout, with a note.
    let t = "z".repeat(153 * 2 + 10);
    let s = tincan_sms::protocol::segment::segment(&t, udh::Reference::Eight(43)).unwrap();
    for i in [0, 2] {
        w.smsc
            .control(json!({"cmd": "deliver", "source": "447400123456", "dest": "447400000001", "esm_class": 0x40,
                            "hex": hex::encode(s.segments[i].short_message())}))
            .await
            .unwrap();
    }
    let partial = w.alice.wait_body(&room, &ghost, "the partial reply", |b| b.starts_with("zzz")).await;
    assert!(partial.contains("[…]") && partial.ends_with("⚠ part 2 of 3 did not arrive"), "{partial}");

    // UCS-2 out: an emoji splits nothing.
    let long = format!("{}😀{}", "ж".repeat(66), "ж".repeat(10));
    w.alice.send(&room, "t2", &long).await;
    let subs = w.smsc.wait_submits(3, Duration::from_secs(30)).await;
    let mut parts: Vec<_> = subs[1..].iter().map(sm).collect();
    // Parts go out in parallel (the window): put them in order by their header's part number.
    parts.sort_by_key(|p| p[5]);
    let mut joined = Vec::new();
    for p in &parts {
        let h = udh::parse(p).unwrap();
        joined.extend_from_slice(&p[h.len..]);
    }
    assert_eq!(ucs2::decode(&joined), long);

    // Bob gets the next number; an SMS to it reaches Bob, not Alice.
    let bob_room = w.bob.dm(&w.bob.ghost_of("+447400123456").await).await;
    w.bob.send(&bob_room, "b1", "from bob").await;
    let bob_submit = w.smsc.wait_submits(4, Duration::from_secs(30)).await.remove(3);
    assert_eq!(bob_submit["source_addr"], "447400000002");
    w.smsc
        .control(json!({"cmd": "deliver", "source": "447400123456", "dest": "447400000002", "hex": hex::encode(gsm7::encode("for bob").unwrap())}))
        .await
        .unwrap();
    w.bob.wait_body(&bob_room, &ghost, "bob's reply", |b| b == "for bob").await;
    assert!(!w.alice.bodies_from(&room, &ghost).await.iter().any(|b| b == "for bob"));
    w.sms.stop().await;
    w.bridge.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_failures_opt_outs_and_commands_answer_in_the_dm() {
    let w = world().await;
    w.smsc.set(json!({"dlr": "both", "dlr_state": {"447400123466": "UNDELIV"}})).await;

    // A premium-rate number: refused before anything is sent or held.
    let premium = w.alice.ghost_of("+449012345678").await;
    let room = w.alice.dm(&premium).await;
    w.alice.send(&room, "p1", "win a prize").await;
    let why = w.alice.wait_body(&room, &premium, "the refusal", |b| b.starts_with("⚠")).await;
    assert!(why.contains("premium-rate"), "{why}");

    // An image, with images as links off (the default): refused with a notice, nothing sent.
    let pics = w.alice.ghost_of("+447400123499").await;
    let room = w.alice.dm(&pics).await;
    let url = w.alice.upload(b"\x89PNG not really".to_vec(), "image/png").await;
    let image = w.alice.send_content(&room, "i1", json!({"msgtype": "m.image", "body": "cat.png", "url": url})).await;
    let why = w.alice.wait_body(&room, &pics, "the image refusal", |b| b.starts_with("⚠")).await;
    assert_eq!(why, "⚠ Not delivered: rejected by the network: image messages cannot be sent as SMS");
    assert_eq!(
        w.alice.wait_status(&room, &image, "FAIL_PERMANENT").await["message"],
        "image messages cannot be sent as SMS"
    );

    // Undeliverable: the carrier's receipt becomes a failure notice.
    let lost = w.alice.ghost_of("+447400123466").await;
    let room = w.alice.dm(&lost).await;
    let event = w.alice.send(&room, "u1", "are you there?").await;
    let why = w.alice.wait_body(&room, &lost, "the failure notice", |b| b.starts_with("⚠ Not delivered")).await;
    assert_eq!(why, "⚠ Not delivered: undeliverable");
    assert_eq!(
        w.alice.wait_status(&room, &event, "FAIL_PERMANENT").await,
        json!({"network": "sms", "m.relates_to": {"rel_type": "m.reference", "event_id": event},
               "status": "FAIL_PERMANENT", "reason": "m.foreign_network_error", "message": "undeliverable"})
    );

    // The recipient sends STOP: Alice is told, and her next message is refused with the reason.
    let carol = w.alice.ghost_of("+447400123457").await;
    let room = w.alice.dm(&carol).await;
    w.alice.send(&room, "c1", "hello carol").await;
    w.smsc.wait_submits(2, Duration::from_secs(30)).await;
    w.smsc
        .control(json!({"cmd": "deliver", "source": "447400123457", "dest": "447400000001", "hex": hex::encode(gsm7::encode("Stop").unwrap())}))
        .await
        .unwrap();
    w.alice.wait_body(&room, &carol, "the opt-out notice", |b| b.starts_with("ℹ +447400123457 opted out")).await;
    w.alice.send(&room, "c2", "still there?").await;
    let why = w.alice.wait_body(&room, &carol, "the opt-out refusal", |b| b.contains("replied STOP")).await;
    assert!(why.starts_with("⚠"), "{why}");
    assert_eq!(w.smsc.submits().len(), 2, "nothing went to the SMSC after STOP");
    w.smsc
        .control(json!({"cmd": "deliver", "source": "447400123457", "dest": "447400000001", "hex": hex::encode(gsm7::encode("START").unwrap())}))
        .await
        .unwrap();
    w.alice.wait_body(&room, &carol, "the opt-in notice", |b| b.contains("opted in again")).await;
    w.alice.send(&room, "c3", "welcome back").await;
    w.smsc.wait_submits(3, Duration::from_secs(30)).await;

    // Commands: the price of a long text, the numbers, another number, switching to it.
    w.alice.send(&room, "k1", &format!("!price {}", "a".repeat(200))).await;
    let price = w.alice.wait_body(&room, &carol, "the price", |b| b.starts_with("ℹ That is")).await;
    assert_eq!(price, "ℹ That is 2 SMS (GSM 7-bit, 200 characters) to +447400123457: free on this bridge.");
    w.alice.send(&room, "k2", "!number new").await;
    w.alice.wait_body(&room, &carol, "a new number", |b| b.starts_with("ℹ +447400000002 is yours")).await;
    w.alice.send(&room, "k3", "!number use +447400000002").await;
    w.alice.wait_body(&room, &carol, "the switch", |b| b.contains("send from +447400000002 now")).await;
    w.alice.send(&room, "k4", "!numbers").await;
    let numbers = w.alice.wait_body(&room, &carol, "the numbers", |b| b.starts_with("ℹ Your numbers")).await;
    assert_eq!(numbers, "ℹ Your numbers: +447400000001, +447400000002 (default). This chat sends from +447400000002.");
    w.alice.send(&room, "k5", "from my second number").await;
    let last = w.smsc.wait_submits(4, Duration::from_secs(30)).await.remove(3);
    assert_eq!(last["source_addr"], "447400000002");
    assert_eq!(w.smsc.submits().len(), 4, "commands are never sent as SMS");
    w.sms.stop().await;
    w.bridge.stop().await;
}

/// Charging through the gateway's ledger (in process, on SQLite): each segment is held before the message is
/// stored and settled once the SMSC took it; without credit nothing is sent and the user is told why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn billing_charges_per_segment_and_refuses_without_credit() {
    use tincan_gateway::charging::{AccountRef, IdempotencyKey};
    use tincan_gateway::ledger::{Ledger, LedgerConfig};
    use tincan_gateway::storage::EntryKind;
    let dir = tempfile::tempdir().unwrap();
    let storage = tincan_gateway::storage::open(
        &format!("sqlite://{}", dir.path().join("gw.db").display()),
        Arc::new(SystemClock),
    )
    .await
    .unwrap();
    let mut tx = storage.begin().await.unwrap();
    let deck = "prefix,description,connect_fee,per_minute,increments,per_sms\n44,UK,0,0.02,60/60,0.05\n";
    tx.rates().replace("default", &tincan_gateway::rating::parse_csv(deck).unwrap()).await.unwrap();
    tx.commit().await.unwrap();
    let ledger = Ledger::start(storage, Arc::new(SystemClock), LedgerConfig::default());
    let alice = ledger.user_account("@alice:hs.test", None, "EUR".parse().unwrap()).await.unwrap();
    let key = IdempotencyKey::new("seed").unwrap();
    ledger.credit("test", &key, alice.id, "0.12".parse().unwrap(), EntryKind::Adjustment, "seed", "").await.unwrap();
    let w = world_with(Arc::new(tincan_sms::billing::Gateway::new(Arc::new(ledger.charging("svc:sms"))))).await;

    let ghost = w.alice.ghost_of("+447400123456").await;
    let room = w.alice.dm(&ghost).await;
    w.alice.send(&room, "p", &format!("!price {}", "b".repeat(200))).await;
    let price = w.alice.wait_body(&room, &ghost, "the price", |b| b.starts_with("ℹ That is")).await;
    assert_eq!(price, "ℹ That is 2 SMS (GSM 7-bit, 200 characters) to +447400123456: 0.10 EUR (0.05 each).");

    // Two segments: held, sent, settled.
    w.alice.send(&room, "m1", &"b".repeat(200)).await;
    w.smsc.wait_submits(2, Duration::from_secs(30)).await;
    let balance = wait_for("the settlement", Duration::from_secs(30), || async {
        let a = ledger.account(&AccountRef::User { user_id: "@alice:hs.test".into() }).await.unwrap();
        (a.held.to_string() == "0.00").then(|| a.balance.to_string())
    })
    .await;
    assert_eq!(balance, "0.02", "0.12 less two segments at 0.05");

    // One more costs 0.05: refused, nothing sent, and Alice reads why.
    w.alice.send(&room, "m2", "one more").await;
    let why = w.alice.wait_body(&room, &ghost, "the refusal", |b| b.contains("not enough credit")).await;
    assert!(why.contains("1 SMS cost 0.05 EUR; you have 0.02 EUR"), "{why}");
    assert_eq!(w.smsc.submits().len(), 2);
    w.sms.stop().await;
    w.bridge.stop().await;
}

/// With `sms.mms.images_as_links` an image goes out as a link to it (its caption first), served on
/// `sms.listen` at `/m/<token>` with its bytes; the link is unguessable and nothing else is served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_image_goes_out_as_a_link_when_the_operator_enables_it() {
    let w = world_configured(Arc::new(Free), |c, dir| {
        c.sms.mms.images_as_links = true;
        c.sms.mms.link_base_url = format!("http://{}", c.sms.listen);
        c.sms.mms.link_dir = dir.join("links").display().to_string();
    })
    .await;
    let listen = w.sms_listen.clone();
    let http = tokio::spawn(
        axum::serve(tokio::net::TcpListener::bind(&listen).await.unwrap(), tincan_sms::http::router(w.sms.clone()))
            .into_future(),
    );
    let ghost = w.alice.ghost_of("+447400123456").await;
    let room = w.alice.dm(&ghost).await;
    let png = b"\x89PNG\r\n\x1a\n a small picture".to_vec();
    let url = w.alice.upload(png.clone(), "image/png").await;
    let event = w
        .alice
        .send_content(
            &room,
            "i1",
            json!({"msgtype": "m.image", "body": "look at this", "filename": "cat.png",
                                           "url": url, "info": {"mimetype": "image/png", "size": png.len()}}),
        )
        .await;
    let submit = w.smsc.wait_submits(1, Duration::from_secs(60)).await.remove(0);
    let text = gsm7::decode(&sm(&submit));
    let link = text.strip_prefix("look at this ").unwrap_or_else(|| panic!("caption then link: {text:?}"));
    assert!(
        link.starts_with(&format!("http://{listen}/m/")) && link.len() == format!("http://{listen}/m/").len() + 32,
        "{link}"
    );
    let resp = reqwest::get(link).await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "image/png");
    assert_eq!(resp.bytes().await.unwrap().to_vec(), png);
    let guessed = reqwest::get(format!("http://{listen}/m/{}", "0".repeat(32))).await.unwrap();
    assert_eq!(guessed.status(), 404);
    let _ = w.alice.wait_status(&room, &event, "SUCCESS").await;
    http.abort();
    w.sms.stop().await;
    w.bridge.stop().await;
}
