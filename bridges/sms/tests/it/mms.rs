//! Images as MMS through the carrier's HTTP API: the bridge against `tests/fake_twilio.py` (Twilio's
//! Programmable Messaging API as documented, standard-library Python, since the real carrier cannot run here),
//! Synapse and the smpp34 SMSC. The image leaves from the user's number through the API (the carrier fetches it
//! from the bridge's link), the carrier's signed status callbacks become the message's status, a refusal and an
//! undelivered report are shown with the carrier's reason, a forged callback is refused, and nothing goes by
//! SMPP.

use crate::bridge::{Client, World, world_configured};
use crate::harness::wait_for;
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;
use tincan_sms::billing::Free;
use tincan_testkit::ChildGuard;

const ACCOUNT: &str = "AC0123456789abcdef0123456789abcdef";
const TOKEN: &str = "fake-twilio-auth-token";

struct FakeTwilio {
    _guard: ChildGuard,
    url: String,
    log: PathBuf,
}

impl FakeTwilio {
    async fn start(dir: &Path) -> FakeTwilio {
        let port = tincan_testkit::ports::free_port();
        let log = dir.join("twilio.jsonl");
        let mut cmd = Command::new(tincan_testkit::synapse::venv().join("bin/python"));
        cmd.arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fake_twilio.py"))
            .arg(port.to_string())
            .arg(ACCOUNT)
            .arg(TOKEN);
        let mut guard = ChildGuard::spawn_logged("fake-twilio", cmd, &log).unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while !std::fs::read_to_string(&log).unwrap_or_default().contains("\"listening\"") {
            guard.ensure_running().unwrap();
            assert!(std::time::Instant::now() < deadline, "the fake Twilio did not start\n{}", guard.log_tail(20));
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        FakeTwilio { _guard: guard, url: format!("http://127.0.0.1:{port}"), log }
    }

    fn events(&self) -> Vec<Value> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    /// Has the fake send an incoming message to `webhook` (see `fake_twilio.py`); the webhook's answer.
    async fn inbound(&self, spec: Value) -> Value {
        let resp = reqwest::Client::new().post(format!("{}/_test/inbound", self.url)).json(&spec).send().await.unwrap();
        assert!(resp.status().is_success(), "{}", resp.status());
        resp.json().await.unwrap()
    }

    async fn wait(&self, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        wait_for(what, Duration::from_secs(60), || {
            let found = self.events().into_iter().find(|e| pred(e));
            async move { found }
        })
        .await
    }
}

/// The bridge with MMS through the fake carrier, its SMS side (`/mms/…`) served on `sms.listen`.
struct MmsWorld {
    w: World,
    twilio: FakeTwilio,
    http: tokio::task::JoinHandle<std::io::Result<()>>,
    _dir: tempfile::TempDir,
}

impl MmsWorld {
    /// Started with the config `edit` changes last.
    async fn start(edit: impl FnOnce(&mut tincan_sms::config::Config)) -> MmsWorld {
        MmsWorld::billed(Arc::new(Free), edit).await
    }

    /// Started charging through `billing`.
    async fn billed(
        billing: Arc<dyn tincan_sms::billing::Billing>,
        edit: impl FnOnce(&mut tincan_sms::config::Config),
    ) -> MmsWorld {
        let dir = tempfile::tempdir().unwrap();
        let twilio = FakeTwilio::start(dir.path()).await;
        let api = twilio.url.clone();
        let w = world_configured(billing, |c, state| {
            c.sms.mms.api_url = api;
            c.sms.mms.account = ACCOUNT.into();
            c.sms.mms.token = tincan_common::Secret::new(TOKEN);
            c.sms.mms.link_base_url = format!("http://{}", c.sms.listen);
            c.sms.mms.link_dir = state.join("links").display().to_string();
            edit(c);
        })
        .await;
        let listener = tokio::net::TcpListener::bind(&w.sms_listen).await.unwrap();
        let http = tokio::spawn(axum::serve(listener, tincan_sms::http::router(w.sms.clone())).into_future());
        MmsWorld { w, twilio, http, _dir: dir }
    }
}

/// The bytes behind an `mxc://` URI, through the authenticated media API.
async fn download(c: &Client, mxc: &str) -> Vec<u8> {
    let path = mxc.strip_prefix("mxc://").unwrap();
    let resp = c
        .http
        .get(format!("{}/_matrix/client/v1/media/download/{path}", c.base))
        .bearer_auth(&c.token)
        .send()
        .await
        .unwrap();
    assert!(resp.status().is_success(), "{mxc}: {}", resp.status());
    resp.bytes().await.unwrap().to_vec()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_mms_to_a_users_number_comes_into_their_dm_with_its_image_once() {
    let MmsWorld { w, twilio, http, _dir } = MmsWorld::start(|c| c.media.max_bytes = 64 * 1024).await;
    let listen = w.sms_listen.clone();
    let webhook = format!("http://{listen}/mms/inbound");
    let from = "+447400123456";
    // Alice holds her number (the pool's first) once she has texted someone from it.
    let ghost = w.alice.ghost_of(from).await;
    let room = w.alice.dm(&ghost).await;
    w.alice.send(&room, "t1", "send me the picture").await;
    w.smsc.wait_submits(1, Duration::from_secs(30)).await;
    let images = || async {
        w.alice.contents_from(&room, &ghost).await.into_iter().filter(|c| c["msgtype"] == "m.image").collect::<Vec<_>>()
    };

    // A picture with a caption: in Alice's DM with the sender's ghost, the bytes the carrier served (fetched
    // with the account's credentials), the carrier answered with empty TwiML.
    let png = b"\x89PNG\r\n\x1a\n a picture from a phone".to_vec();
    let spec = json!({"webhook": webhook, "from": from, "to": "+447400000001", "body": "here it is",
                      "media": [{"content_type": "image/png", "hex": hex::encode(&png)}]});
    let answer = twilio.inbound(spec.clone()).await;
    assert_eq!((answer["status"].as_u64(), answer["content_type"].as_str()), (Some(200), Some("text/xml")), "{answer}");
    assert!(answer["body"].as_str().unwrap().contains("<Response></Response>"), "{answer}");
    let image =
        wait_for("the image in the DM", Duration::from_secs(60), || async { images().await.into_iter().next() }).await;
    assert_eq!(
        (image["body"].as_str(), image["info"]["mimetype"].as_str()),
        (Some("here it is"), Some("image/png")),
        "{image}"
    );
    assert_eq!(download(&w.alice, image["url"].as_str().unwrap()).await, png);
    let fetched: Vec<Value> = twilio.events().into_iter().filter(|e| e["event"] == "media").collect();
    assert_eq!(fetched.iter().map(|e| e["status"].as_u64()).collect::<Vec<_>>(), [Some(200)], "{fetched:?}");

    // The carrier sends the same message again (same MessageSid): taken, not shown twice. A text-only message
    // after it shows that the repeat was handled before.
    let mut again = spec.clone();
    again["sid"] = answer["sid"].clone();
    assert_eq!(twilio.inbound(again).await["status"], 200);
    let text = json!({"webhook": webhook, "from": from, "to": "+447400000001", "body": "did you get it?"});
    assert_eq!(twilio.inbound(text).await["status"], 200);
    w.alice.wait_body(&room, &ghost, "the text after the repeat", |b| b == "did you get it?").await;
    assert_eq!(images().await.len(), 1, "the repeated MMS was shown twice");

    // Not signed with the auth token: refused, nothing fetched, nothing shown.
    let mut forged = spec.clone();
    forged["signature"] = json!("AAAAAAAAAAAAAAAAAAAAAAAAAAA=");
    forged["body"] = json!("forged");
    let refused = twilio.inbound(forged).await;
    assert_eq!(refused["status"], 403, "{refused}");
    let sid = refused["sid"].as_str().unwrap();
    assert!(!twilio.events().iter().any(|e| e["event"] == "media" && e["path"].as_str().unwrap().contains(sid)));

    // An attachment over media.max_bytes: a ⚠ notice instead of the image, the caption still shown.
    let big = json!({"webhook": webhook, "from": from, "to": "+447400000001", "body": "a big one",
                     "media": [{"content_type": "image/jpeg", "hex": hex::encode(vec![0xffu8; 100 * 1024])}]});
    assert_eq!(twilio.inbound(big).await["status"], 200);
    let warned = w.alice.wait_body(&room, &ghost, "the too-large notice", |b| b.starts_with('⚠')).await;
    assert!(warned.contains("larger than this bridge's limit"), "{warned}");
    w.alice.wait_body(&room, &ghost, "the big one's caption", |b| b == "a big one").await;

    let bodies = w.alice.bodies_from(&room, &ghost).await;
    assert!(!bodies.iter().any(|b| b == "forged"), "{bodies:?}");
    assert_eq!(images().await.len(), 1);
    http.abort();
    w.sms.stop().await;
    w.bridge.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_image_goes_as_mms_through_the_carriers_api_and_its_callbacks_become_the_status() {
    let MmsWorld { w, twilio, http, _dir } = MmsWorld::start(|_| {}).await;
    let listen = w.sms_listen.clone();
    let png = b"\x89PNG\r\n\x1a\n a small picture".to_vec();
    let image = |url: &str| {
        json!({"msgtype": "m.image", "body": "look at this", "filename": "cat.png", "url": url,
               "info": {"mimetype": "image/png", "size": png.len()}})
    };

    // Delivered: the carrier took it from Alice's number with the image it fetched, and reported it delivered.
    let ghost = w.alice.ghost_of("+447400123456").await;
    let room = w.alice.dm(&ghost).await;
    let url = w.alice.upload(png.clone(), "image/png").await;
    let event = w.alice.send_content(&room, "m1", image(&url)).await;
    let sent = twilio.wait("the MMS at the carrier", |e| e["event"] == "message" && e["to"] == "+447400123456").await;
    assert_eq!((sent["from"].as_str(), sent["body"].as_str()), (Some("+447400000001"), Some("look at this")), "{sent}");
    let media = &sent["media"][0];
    assert_eq!((media["status"].as_u64(), media["content_type"].as_str()), (Some(200), Some("image/png")), "{sent}");
    assert_eq!(hex::decode(media["hex"].as_str().unwrap()).unwrap(), png);
    let delivered = wait_for("the delivered status", Duration::from_secs(60), || async {
        w.alice.statuses(&room, &event).await.into_iter().find(|c| c.get("delivered_to_users").is_some())
    })
    .await;
    assert_eq!(delivered["delivered_to_users"], json!([ghost]), "{delivered}");
    let sid = sent["sid"].as_str().unwrap().to_owned();
    twilio.wait("both callbacks answered", |e| e["sid"] == sid.as_str() && e["status"] == "delivered").await;
    for cb in twilio.events().iter().filter(|e| e["event"] == "callback" && e["sid"] == sid.as_str()) {
        assert_eq!(cb["answer"], 204, "{cb}");
    }

    // Refused by the carrier: failed with its reason, shown in the DM.
    let refused_ghost = w.alice.ghost_of("+447400999001").await;
    let refused_room = w.alice.dm(&refused_ghost).await;
    let url = w.alice.upload(png.clone(), "image/png").await;
    let refused = w.alice.send_content(&refused_room, "m2", image(&url)).await;
    let status = w.alice.wait_status(&refused_room, &refused, "FAIL_PERMANENT").await;
    let message = status["message"].as_str().unwrap_or_default();
    assert!(message.contains("unsubscribed recipient") && message.contains("21610"), "{status}");
    w.alice.wait_body(&refused_room, &refused_ghost, "the ⚠ notice", |b| b.starts_with('⚠')).await;

    // Taken, then reported undelivered: failed with the carrier's error code.
    let lost_ghost = w.alice.ghost_of("+447400999002").await;
    let lost_room = w.alice.dm(&lost_ghost).await;
    let url = w.alice.upload(png.clone(), "image/png").await;
    let lost = w.alice.send_content(&lost_room, "m3", image(&url)).await;
    let status = w.alice.wait_status(&lost_room, &lost, "FAIL_PERMANENT").await;
    assert_eq!(status["message"], "undelivered (carrier error 30003)", "{status}");

    // A callback not signed with the auth token is refused and changes nothing.
    let query = format!("u=%40alice%3Ahs.test&to=%2B447400123456&e={}", tincan_testkit::matrix::enc(&event));
    let forged = reqwest::Client::new()
        .post(format!("http://{listen}/mms/status?{query}"))
        .header("X-Twilio-Signature", "AAAAAAAAAAAAAAAAAAAAAAAAAAA=")
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body("MessageSid=MMx&MessageStatus=undelivered&ErrorCode=30008")
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), 403);
    assert!(
        w.alice.statuses(&room, &event).await.iter().all(|c| c["status"] != "FAIL_PERMANENT"),
        "a forged callback failed the message"
    );
    // Images never went by SMPP.
    assert!(w.smsc.submits().is_empty(), "{:?}", w.smsc.submits());
    http.abort();
    w.sms.stop().await;
    w.bridge.stop().await;
}

/// With billing on, an MMS is held and charged at the deck's own MMS price (not as SMS segments), and without
/// credit it is refused with what it costs; and when the core hands the same event over again (as after a
/// crash between the carrier's answer and the core's record), the recorded answer comes back: no second MMS at
/// the carrier, no second charge.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_mms_is_charged_its_own_price_once_even_when_the_core_hands_it_over_again() {
    use tincan_appservice::{MatrixMessage, Media, NetworkConnector, PortalKey, PortalRef, RemoteChatId, RemoteUserId};
    use tincan_gateway::charging::{AccountRef, IdempotencyKey};
    use tincan_gateway::ledger::{Ledger, LedgerConfig};
    use tincan_gateway::storage::EntryKind;
    let gw = tempfile::tempdir().unwrap();
    let clock = Arc::new(tincan_common::SystemClock);
    let storage =
        tincan_gateway::storage::open(&format!("sqlite://{}", gw.path().join("gw.db").display()), clock.clone())
            .await
            .unwrap();
    let mut tx = storage.begin().await.unwrap();
    let deck = "prefix,description,connect_fee,per_minute,increments,per_sms,per_mms\n44,UK,0,0.02,60/60,0.05,0.25\n";
    tx.rates().replace("default", &tincan_gateway::rating::parse_csv(deck).unwrap()).await.unwrap();
    tx.commit().await.unwrap();
    let ledger = Ledger::start(storage, clock, LedgerConfig::default());
    let alice_account = ledger.user_account("@alice:hs.test", None, "EUR".parse().unwrap()).await.unwrap();
    let key = IdempotencyKey::new("seed").unwrap();
    ledger
        .credit("test", &key, alice_account.id, "0.40".parse().unwrap(), EntryKind::Adjustment, "seed", "")
        .await
        .unwrap();
    let billing = Arc::new(tincan_sms::billing::Gateway::new(Arc::new(ledger.charging("svc:sms"))));
    let MmsWorld { w, twilio, http, _dir } = MmsWorld::billed(billing, |_| {}).await;
    let alice = || AccountRef::User { user_id: "@alice:hs.test".into() };
    let png = b"\x89PNG\r\n\x1a\n a small picture".to_vec();
    let image = |url: &str| {
        json!({"msgtype": "m.image", "body": "look at this", "filename": "cat.png", "url": url,
               "info": {"mimetype": "image/png", "size": png.len()}})
    };
    let to_carrier =
        |to: &str| twilio.events().into_iter().filter(|e| e["event"] == "message" && e["to"] == to).count();

    // Held, sent, settled at the MMS price: 0.40 − 0.25.
    let ghost = w.alice.ghost_of("+447400123456").await;
    let room = w.alice.dm(&ghost).await;
    let url = w.alice.upload(png.clone(), "image/png").await;
    let event = w.alice.send_content(&room, "b1", image(&url)).await;
    let sent = twilio.wait("the MMS at the carrier", |e| e["event"] == "message" && e["to"] == "+447400123456").await;
    let balance = wait_for("the settlement", Duration::from_secs(30), || async {
        let a = ledger.account(&alice()).await.unwrap();
        (a.held.to_string() == "0.00").then(|| a.balance.to_string())
    })
    .await;
    assert_eq!(balance, "0.15", "0.40 less one MMS at 0.25");

    // The core hands the same event over again: the first answer, nothing more at the carrier or the ledger.
    let api = w.sms.login(&ruma::OwnedUserId::try_from("@alice:hs.test").unwrap()).await.unwrap().unwrap();
    let portal = PortalRef {
        key: PortalKey {
            receiver: ruma::OwnedUserId::try_from("@alice:hs.test").unwrap(),
            chat: RemoteChatId::new("+447400123456"),
        },
        other_user: RemoteUserId::new("+447400123456"),
        is_group: false,
        metadata: Default::default(),
    };
    let again = MatrixMessage {
        event_id: ruma::OwnedEventId::try_from(event.as_str()).unwrap(),
        sender: ruma::OwnedUserId::try_from("@alice:hs.test").unwrap(),
        msgtype: "m.image".into(),
        body: "look at this".into(),
        media: Some(Media { mimetype: Some("image/png".into()), filename: "cat.png".into(), data: png.clone() }),
    };
    let id = api.handle_matrix_message(&portal, &again).await.unwrap();
    assert_eq!(id.as_str(), format!("mms.{}", sent["sid"].as_str().unwrap()), "the first answer again");
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(to_carrier("+447400123456"), 1, "one MMS at the carrier for one event");
    let a = ledger.account(&alice()).await.unwrap();
    assert_eq!((a.balance.to_string(), a.held.to_string()), ("0.15".to_owned(), "0.00".to_owned()), "charged once");

    // 0.15 left, an MMS costs 0.25: refused with the price, nothing sent.
    let url = w.alice.upload(png.clone(), "image/png").await;
    let _ = w.alice.send_content(&room, "b2", image(&url)).await;
    let why = w.alice.wait_body(&room, &ghost, "the refusal", |b| b.contains("not enough credit")).await;
    assert!(why.contains("1 MMS cost 0.25 EUR; you have 0.15 EUR"), "{why}");
    assert_eq!(to_carrier("+447400123456"), 1);
    let metrics = reqwest::get(format!("http://{}/metrics", w.sms_listen)).await.unwrap().text().await.unwrap();
    assert!(metrics.contains("tincan_sms_mms_possible_duplicates 0"), "{metrics}");
    http.abort();
    w.sms.stop().await;
    w.bridge.stop().await;
}
