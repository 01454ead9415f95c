//! Number porting between two providers (issue #22): two extensions (`tincan-ext`), each beside its own Synapse
//! (`a.test`, `b.test`), on one real directory (`tincan-directory`) whose port webhooks reach them. A user of A
//! signs up at B with the same number: B's sign-up files the port, and A's extension answers it — releases
//! (`porting.unlocked = "release"`), objects with `registration_locked` or `not_in_service`, or says nothing
//! (`"wait"`) so the number moves when the directory's window ends. After a move the number is bound at B
//! and no longer at A.
//!
//! The directory binary is another crate's, found by [`tincan_testkit::directory::binary`]; without it the tests
//! are skipped (a failure under `CI=true`).

use crate::harness::{Api, Ext};
use serde_json::{Value, json};
use std::time::{Duration, Instant};
use tincan_testkit::Synapse;
use tincan_testkit::directory::{Directory, Registrar, binary_or_skip};

const JWT_SECRET: &str = "porting-jwt-secret-0123456789";
/// Registration-lock secret of A (a test fixture).
const LOCK_SECRET: &str = "test-only-registration-lock-pepper-0123456789";

struct Providers {
    dir: Directory,
    a: Ext,
    b: Ext,
    hs_a: Synapse,
    hs_b: Synapse,
    reg_a: Registrar,
    reg_b: Registrar,
    /// A's config, environment and database, for another node of A ([`Providers::another_a`]).
    a_config: String,
    a_env: Vec<(String, String)>,
    a_database: Option<String>,
}

impl Providers {
    /// The directory with an objection window of `window_secs`, providers `a` and `b` both serving +44, and
    /// their extensions; A answers unlocked ports with `a_unlocked`.
    async fn start(window_secs: u64, a_unlocked: &str) -> Option<Providers> {
        Providers::start_as(window_secs, a_unlocked, false).await
    }

    /// [`Providers::start`]; with `a_appservice` A's extension makes its accounts through the appservice
    /// backend (A's Synapse has its registration) and has no `homeserver.admin_token`.
    async fn start_as(window_secs: u64, a_unlocked: &str, a_appservice: bool) -> Option<Providers> {
        Providers::start_with(window_secs, a_unlocked, a_appservice, None).await
    }

    /// [`Providers::start_as`] with A's extension on `a_database` (a PostgreSQL URL; else SQLite of its own).
    async fn start_with(
        window_secs: u64,
        a_unlocked: &str,
        a_appservice: bool,
        a_database: Option<&str>,
    ) -> Option<Providers> {
        let bin = binary_or_skip()?;
        let [port_a, port_b] = tincan_testkit::ports::free_ports::<2>();
        let hook = |port: u16| format!("http://127.0.0.1:{port}/_tincan/directory/v1/ports");
        let (hook_a, hook_b, window) = (hook(port_a), hook(port_b), window_secs.to_string());
        let env = [
            ("TINCAN_DIRECTORY_PORTS__WINDOW_SECS", window.as_str()),
            ("TINCAN_DIRECTORY_PORTS__CHECK_INTERVAL_SECS", "1"),
            ("TINCAN_DIRECTORY_PORTS__WEBHOOKS__A", hook_a.as_str()),
            ("TINCAN_DIRECTORY_PORTS__WEBHOOKS__B", hook_b.as_str()),
        ];
        let dir = Directory::start_env(&bin, &env).await.unwrap();
        let reg_a = dir.add_provider("a", &["+44"]).unwrap();
        let reg_b = dir.add_provider_with("b", &["+44"], &["--shared"]).unwrap();
        let (as_token, hs_token) = ("porting-as-token-0123456789", "porting-hs-token-0123456789");
        let synapse = |name: &'static str, appservice: bool| {
            let mut b = Synapse::builder()
                .server_name(name)
                .config(json!({"jwt_config": {"enabled": true, "secret": JWT_SECRET, "algorithm": "HS256"}}));
            if appservice {
                b = b.appservice(
                    json!({
                        "id": "tincan-ext",
                        "url": format!("http://127.0.0.1:{port_a}"),
                        "as_token": as_token,
                        "hs_token": hs_token,
                        "sender_localpart": "tincan",
                        "rate_limited": false,
                        "namespaces": {"users": [{"exclusive": true, "regex": "@tc_.*:a\\.test"}], "aliases": [], "rooms": []},
                    })
                    .to_string(),
                );
            }
            b.start()
        };
        let (hs_a, hs_b) = tokio::join!(synapse("a.test", a_appservice), synapse("b.test", false));
        let (hs_a, hs_b) = (hs_a.unwrap(), hs_b.unwrap());
        let jwt = format!("[homeserver]\njwt_secret = \"{JWT_SECRET}\"\n");
        let config = |hs: &Synapse, token: &str, homeserver: &str, extra: &str| {
            format!(
                "server_name = \"{}\"\nhomeserver_url = \"{}\"\n{homeserver}\
                 [directory]\nurl = \"{}\"\ntoken = \"{token}\"\n{extra}",
                hs.server_name(),
                hs.url(),
                dir.api,
            )
        };
        // A releases at once even without the new key (these sign-ins upload none; the client tests cover the wait).
        let a_extra = format!("[porting]\nunlocked = \"{a_unlocked}\"\nrelease_key_wait_secs = 0\n");
        let mut a_env = vec![("TINCAN_EXT_REGISTRATION_LOCK__SECRET".to_owned(), LOCK_SECRET.to_owned())];
        let a_config = if a_appservice {
            let homeserver = format!(
                "[homeserver]\nbackend = \"appservice\"\nas_token = \"{as_token}\"\nhs_token = \"{hs_token}\"\n\
                 extension_url = \"http://127.0.0.1:{port_a}\"\n"
            );
            config(&hs_a, &reg_a.token, &homeserver, &a_extra)
        } else {
            // A can deactivate an old account its user closes (Synapse's admin API, see porting::old_account).
            let admin = hs_a.register_user("porting-admin", true).await.unwrap();
            a_env.push(("TINCAN_EXT_HOMESERVER__ADMIN_TOKEN".to_owned(), admin.access_token));
            config(&hs_a, &reg_a.token, &jwt, &a_extra)
        };
        let env: Vec<(&str, &str)> = a_env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let a = Ext::start_env_at(port_a, a_database, &a_config, &env).await.unwrap();
        let b = Ext::start_at(port_b, None, &config(&hs_b, &reg_b.token, &jwt, "")).await.unwrap();
        let a_database = a_database.map(str::to_owned);
        Some(Providers { dir, a, b, hs_a, hs_b, reg_a, reg_b, a_config, a_env, a_database })
    }

    /// Another node of A's extension: A's config and environment, on A's database, listening elsewhere.
    async fn another_a(&self) -> Ext {
        let env: Vec<(&str, &str)> = self.a_env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        Ext::start_env(self.a_database.as_deref(), &self.a_config, &env).await.unwrap()
    }

    /// `GET /v1/ports/{id}` as B.
    async fn port(&self, id: i64) -> Value {
        let r = reqwest::Client::new()
            .get(format!("{}/v1/ports/{id}", self.dir.api))
            .bearer_auth(&self.reg_b.token)
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "GET port {id}: {}", r.status());
        r.json().await.unwrap()
    }

    /// Waits until port `id` is no longer pending; its last state.
    async fn closed_port(&self, id: i64) -> Value {
        eventually("the port closes", move || async move {
            let p = self.port(id).await;
            (p["state"] != "pending").then_some(p)
        })
        .await
    }
}

/// Polls `f` every 100 ms until it gives something (60 s at most: a loaded machine runs two Synapses here).
async fn eventually<T, F, Fut>(what: &str, f: F) -> T
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(t) = f().await {
            return t;
        }
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Signs `number` in at `ext` (request, the dev sink's code, verify): the verify answer.
async fn sign_in(ext: &Ext, number: &str, secret: &str) -> Value {
    let (s, b) = ext
        .post(
            "/_tincan/client/v1/register/request",
            json!({"phone": number, "client_secret": secret, "send_attempt": 1}),
        )
        .await;
    assert_eq!(s, 200, "{b}");
    let body = json!({"sid": b["sid"], "client_secret": secret, "code": ext.last_code(number)});
    let (s, v) = ext.post("/_tincan/client/v1/register/verify", body).await;
    assert_eq!(s, 200, "{v}\n{}", ext.guard.log_tail(30));
    v
}

/// The Matrix ID the directory's record of `number` routes to, and its holder.
async fn holder(reg: &Registrar, number: &str) -> (String, String) {
    let rec = reg.get(number).await.unwrap().expect("the number is registered");
    (rec["provider"].as_str().unwrap().to_owned(), rec["services"][0]["uri"].as_str().unwrap().to_owned())
}

fn matrix_uri(user_id: &str) -> String {
    format!("matrix:u/{}", user_id.trim_start_matches('@'))
}

async fn binding(ext: &Ext, number: &str) -> Option<String> {
    ext.store().await.binding(number).await.unwrap().map(|b| b.user_id)
}

/// Waits until `ext` binds `number` to `user_id` (`None`: to nobody); the closing webhook reaches each side on
/// its own.
async fn bound_to(ext: &Ext, number: &str, user_id: Option<&str>) {
    eventually("the binding changes", move || async move {
        (binding(ext, number).await.as_deref() == user_id).then_some(())
    })
    .await
}

#[tokio::test]
async fn a_number_moves_to_the_provider_that_verified_it_unless_a_lock_or_no_subscriber_objects() {
    let Some(p) = Providers::start(3600, "release").await else { return };

    // Released: a user of A signs up at B with their number.
    let n1 = "+447911124101";
    let (old_user, _) = crate::signup::sign_up_token(&p.a, &p.hs_a, n1, "a-1").await;
    assert_eq!(holder(&p.reg_a, n1).await, ("a".into(), matrix_uri(&old_user)));
    let at_b = sign_in(&p.b, n1, "b-1").await;
    let new_user = at_b["user_id"].as_str().unwrap().to_owned();
    assert!(new_user.ends_with(":b.test"), "{at_b}");
    assert_eq!(at_b["port"]["state"], "pending", "B tells the user the number is being ported: {at_b}");
    let id = at_b["port"]["id"].as_i64().unwrap();
    // A's extension hears of it by webhook and releases it at once (the window is an hour).
    let closed = p.closed_port(id).await;
    assert_eq!(closed["state"], "completed", "{closed}");
    assert_eq!(holder(&p.reg_a, n1).await, ("b".into(), matrix_uri(&new_user)));
    // B binds the number to the new account (the completion webhook); A no longer treats it as its own.
    bound_to(&p.b, n1, Some(&new_user)).await;
    assert_eq!(binding(&p.a, n1).await, None, "A's binding is gone");
    let a_account = p.a.store().await.account_by_number(n1).await.unwrap().expect("A keeps the old account");
    assert_eq!((a_account.user_id.as_str(), a_account.published_at), (old_user.as_str(), None));
    assert!(p.b.store().await.account_by_number(n1).await.unwrap().unwrap().published_at.is_some());
    // Signing in at B again: the same account, no port any more.
    let again = sign_in(&p.b, n1, "b-1b").await;
    assert_eq!((again["user_id"].as_str(), again.get("port")), (Some(new_user.as_str()), None), "{again}");

    // Objected: the account at A has a registration lock.
    let n2 = "+447911124102";
    let (locked_user, token) = crate::signup::sign_up_token(&p.a, &p.hs_a, n2, "a-2").await;
    let r = reqwest::Client::new()
        .put(format!("{}/_tincan/client/v1/registration_lock", p.a.url))
        .bearer_auth(&token)
        .json(&json!({"pin": "482916"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let at_b = sign_in(&p.b, n2, "b-2").await;
    assert_eq!(at_b["port"]["state"], "pending", "{at_b}");
    let closed = p.closed_port(at_b["port"]["id"].as_i64().unwrap()).await;
    assert_eq!((closed["state"].as_str(), closed["reason"].as_str()), (Some("objected"), Some("registration_locked")));
    assert_eq!(holder(&p.reg_a, n2).await, ("a".into(), matrix_uri(&locked_user)));
    assert_eq!(binding(&p.a, n2).await, Some(locked_user.clone()), "A still has it");
    assert_eq!(binding(&p.b, n2).await, None, "B never bound it");

    // Objected: A holds the number in the directory, but no subscriber of A's extension has it.
    let n3 = "+447911124103";
    p.reg_a.put_number(n3, &[("matrix", "matrix:u/someone:a.test")]).await.unwrap();
    let at_b = sign_in(&p.b, n3, "b-3").await;
    let closed = p.closed_port(at_b["port"]["id"].as_i64().unwrap()).await;
    assert_eq!((closed["state"].as_str(), closed["reason"].as_str()), (Some("objected"), Some("not_in_service")));
    assert_eq!(holder(&p.reg_a, n3).await.0, "a");
}

#[tokio::test]
async fn without_an_answer_the_number_moves_with_the_key_when_the_window_ends_and_not_before() {
    // Ten seconds: long enough to upload the key while the port is pending, even on a loaded machine.
    let Some(p) = Providers::start(10, "wait").await else { return };
    let n = "+447911124201";
    crate::signup::sign_up_token(&p.a, &p.hs_a, n, "a-1").await;
    let at_b = sign_in(&p.b, n, "b-1").await;
    let id = at_b["port"]["id"].as_i64().unwrap();
    let new_user = at_b["user_id"].as_str().unwrap().to_owned();

    // Meanwhile the user's device at B uploads its master key: the pending port carries it.
    let (token, _) = crate::signup::login(&p.hs_b, &at_b["login"]).await;
    let b64 = |b: &[u8]| {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD_NO_PAD.encode(b)
    };
    let master = b64(ed25519_dalek::SigningKey::from_bytes(&[5u8; 32]).verifying_key().as_bytes());
    let http = reqwest::Client::new();
    let r = http
        .post(format!("{}/_matrix/client/v3/keys/device_signing/upload", p.hs_b.url()))
        .bearer_auth(&token)
        .json(&json!({"master_key": {
            "user_id": new_user,
            "usage": ["master"],
            "keys": {format!("ed25519:{master}"): master},
        }}))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.text().await.unwrap());
    let r = http
        .put(format!("{}/_tincan/client/v1/keys/master", p.b.url))
        .bearer_auth(&token)
        .json(&json!({"ed25519": master}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let body: Value = r.json().await.unwrap();
    assert_eq!((&body["numbers"], &body["porting"]), (&json!([]), &json!([n])), "{body}");
    assert_eq!(p.port(id).await["key"]["ed25519"], master.as_str());

    // A says nothing: the number moves when the window ends, not before.
    let closed = p.closed_port(id).await;
    assert_eq!(closed["state"], "completed", "{closed}");
    assert!(closed["closed_at_ms"].as_i64().unwrap() >= closed["window_ends_at_ms"].as_i64().unwrap(), "{closed}");
    let rec = p.reg_b.get(n).await.unwrap().unwrap();
    assert_eq!((&rec["provider"], &rec["key"]["ed25519"]), (&json!("b"), &json!(master)), "{rec}");
    bound_to(&p.b, n, Some(&new_user)).await;
    bound_to(&p.a, n, None).await;
}

/// A client-server call as `token` on `hs`; the answer's body (a failure is a panic naming it).
async fn mx(hs: &Synapse, token: &str, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
    let mut r =
        reqwest::Client::new().request(method, format!("{}/_matrix/client/v3/{path}", hs.url())).bearer_auth(token);
    if let Some(body) = body {
        r = r.json(&body);
    }
    let r = r.send().await.unwrap();
    let status = r.status();
    let v: Value = r.json().await.unwrap_or(Value::Null);
    assert!(status.is_success(), "{path}: {status} {v}");
    v
}

/// A direct chat `token`'s user starts with `other`, who joins it (with `other_token`); its room id.
async fn direct_chat(hs: &Synapse, token: &str, other: &str, other_token: &str) -> String {
    let body = json!({"invite": [other], "is_direct": true, "preset": "trusted_private_chat"});
    let room =
        mx(hs, token, reqwest::Method::POST, "createRoom", Some(body)).await["room_id"].as_str().unwrap().to_owned();
    mx(hs, other_token, reqwest::Method::POST, &format!("rooms/{room}/join"), Some(json!({}))).await;
    room
}

/// `token`'s user writes `text` in `room`; the event's id.
async fn say(hs: &Synapse, token: &str, room: &str, txn: &str, text: &str) -> String {
    let path = format!("rooms/{room}/send/m.room.message/{txn}");
    let sent = mx(hs, token, reqwest::Method::PUT, &path, Some(json!({"msgtype": "m.text", "body": text}))).await;
    sent["event_id"].as_str().unwrap().to_owned()
}

/// `ext`'s log so far.
fn log(ext: &Ext) -> String {
    std::fs::read_to_string(ext.dir.path().join("ext.log")).unwrap_or_default()
}

/// Whether `ext`'s log has `text` in it.
fn logged(ext: &Ext, text: &str) -> bool {
    log(ext).contains(text)
}

/// Waits until `ext` watches a moved-away account (its first look at the account's `/sync` is done).
async fn watching(ext: &Ext) {
    eventually("the extension watches the moved-away account", || async {
        logged(ext, "watching a moved-away account").then_some(())
    })
    .await;
}

/// The room's message events, oldest first (the last 50).
async fn messages(hs: &Synapse, token: &str, room: &str) -> Vec<Value> {
    let v = mx(hs, token, reqwest::Method::GET, &format!("rooms/{room}/messages?dir=b&limit=50"), None).await;
    let mut events: Vec<Value> =
        v["chunk"].as_array().unwrap().iter().filter(|e| e["type"] == "m.room.message").cloned().collect();
    events.reverse();
    events
}

/// The moved notices in `events` (the `io.tincan.moved` field's `user_id`).
fn notices(events: &[Value]) -> Vec<&str> {
    events.iter().filter_map(|e| e["content"]["io.tincan.moved"]["user_id"].as_str()).collect()
}

/// After a port away the old account at A is kept: a message Carol sends it then is answered with the moved
/// notice naming the new account (not only the one notice sent when the port completed). Then its user closes it
/// with the old device's token: the account is deactivated at A's Synapse (Synapse's admin API, A's
/// `homeserver.admin_token`), leaves the chat, its token stops working and A forgets it. Carol cannot close an
/// account whose number did not move (409 `IO.TINCAN.NOT_MOVED_AWAY`).
#[tokio::test]
async fn a_moved_away_account_answers_messages_with_the_new_route_until_its_user_closes_it() {
    let Some(p) = Providers::start(3600, "release").await else { return };
    let (alice_n, carol_n) = ("+447911124301", "+447911124302");
    let (old_user, old_token) = crate::signup::sign_up_token(&p.a, &p.hs_a, alice_n, "a-1").await;
    let (_, carol_token) = crate::signup::sign_up_token(&p.a, &p.hs_a, carol_n, "c-1").await;
    // Carol and Alice have a direct chat at A.
    let room = direct_chat(&p.hs_a, &carol_token, &old_user, &old_token).await;
    let carol_says = |txn: &'static str, text: &'static str| say(&p.hs_a, &carol_token, &room, txn, text);
    carol_says("t1", "before the move").await;

    // Alice moves her number to B; A releases it; the old account tells the chat once.
    let at_b = sign_in(&p.b, alice_n, "b-1").await;
    let new_user = at_b["user_id"].as_str().unwrap().to_owned();
    let closed = p.closed_port(at_b["port"]["id"].as_i64().unwrap()).await;
    assert_eq!(closed["state"], "completed", "{closed}");
    eventually("the port's moved notice", || async {
        (notices(&messages(&p.hs_a, &carol_token, &room).await).len() == 1).then_some(())
    })
    .await;

    // Carol writes to the old account after the move: it answers with the notice pointing to the new account.
    carol_says("t2", "are you still there?").await;
    let events = eventually("the old account answers Carol's message", || async {
        let events = messages(&p.hs_a, &carol_token, &room).await;
        (notices(&events).len() == 2).then_some(events)
    })
    .await;
    let last = events.last().unwrap();
    assert_eq!(last["sender"], old_user.as_str(), "{events:?}");
    assert_eq!(last["content"]["io.tincan.moved"], json!({"user_id": new_user, "provider": "b"}), "{last}");
    assert!(last["content"]["body"].as_str().unwrap().contains(&new_user), "{last}");
    assert!(!last["content"].to_string().contains(alice_n), "the notice names no number: {last}");
    let asked_at = events.iter().position(|e| e["content"]["body"] == "are you still there?").unwrap();
    assert_eq!(asked_at + 1, events.len() - 1, "the answer follows the message: {events:?}");

    // Closing: not for an account whose number did not move; for Alice's old account, with its old token.
    let close_url = format!("{}/_tincan/client/v1/account/close", p.a.url);
    let close = |token: String| {
        let url = close_url.clone();
        async move {
            let r = reqwest::Client::new().post(url).bearer_auth(token).send().await.unwrap();
            let status = r.status().as_u16();
            (status, r.json::<Value>().await.unwrap_or(Value::Null))
        }
    };
    let (s, b) = close(carol_token.clone()).await;
    assert_eq!((s, b["errcode"].as_str()), (409, Some("IO.TINCAN.NOT_MOVED_AWAY")), "{b}");
    let (s, b) = close(old_token.clone()).await;
    assert_eq!((s, &b["closed"]), (200, &json!(old_user)), "{b}\n{}", p.a.guard.log_tail(30));
    // Deactivated at A's Synapse: the old token is gone, the account left the chat, and A forgot it.
    let r = reqwest::Client::new()
        .get(format!("{}/_matrix/client/v3/account/whoami", p.hs_a.url()))
        .bearer_auth(&old_token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 401, "the old account's token still works");
    eventually("the closed account leaves the chat", || async {
        let path = format!("rooms/{room}/joined_members");
        let members = mx(&p.hs_a, &carol_token, reqwest::Method::GET, &path, None).await;
        members["joined"].get(&old_user).is_none().then_some(())
    })
    .await;
    assert!(p.a.store().await.account_by_number(alice_n).await.unwrap().is_none(), "A still has the old account");
}

/// Closing an old account made through the appservice backend: A's extension deactivates it with the
/// appservice's own token (`POST /_matrix/client/v3/account/deactivate?user_id=…`, no user-interactive auth, no
/// admin token configured — the JWT route would answer 501), so its token stops working and A forgets it.
#[tokio::test]
async fn an_appservice_made_old_account_is_closed_through_the_appservice() {
    let Some(p) = Providers::start_as(3600, "release", true).await else { return };
    let number = "+447911124311";
    let (old_user, old_token) = crate::signup::sign_up_token(&p.a, &p.hs_a, number, "a-1").await;
    assert!(old_user.starts_with("@tc_") && old_user.ends_with(":a.test"), "{old_user}");

    let at_b = sign_in(&p.b, number, "b-1").await;
    let closed = p.closed_port(at_b["port"]["id"].as_i64().unwrap()).await;
    assert_eq!(closed["state"], "completed", "{closed}");
    bound_to(&p.a, number, None).await;

    // A applies the completion on its own webhook: until then the account is not yet one that moved away.
    let close = || async {
        let r = reqwest::Client::new()
            .post(format!("{}/_tincan/client/v1/account/close", p.a.url))
            .bearer_auth(&old_token)
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        let answer = (status, r.json::<Value>().await.unwrap_or(Value::Null));
        (status != 409).then_some(answer)
    };
    let (s, b) = eventually("A lets the old account close", close).await;
    assert_eq!((s, &b["closed"]), (200, &json!(old_user)), "{b}\n{}", p.a.guard.log_tail(30));
    let r = reqwest::Client::new()
        .get(format!("{}/_matrix/client/v3/account/whoami", p.hs_a.url()))
        .bearer_auth(&old_token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 401, "the old account's token still works");
    assert!(p.a.store().await.account_by_number(number).await.unwrap().is_none(), "A still has the old account");
}

/// `POST account/close` refuses what is not an old account left behind by a port, saying why, and closes one
/// once its port has completed (issue #22; keeping it is the default): no token is 401, a body that is not a
/// JSON object 400, an account whose number never moved (Carol's) 409 `IO.TINCAN.NOT_MOVED_AWAY`, Alice's old
/// account while her port is pending (A says nothing; the directory's window is 15 s) 409
/// `IO.TINCAN.PORT_PENDING`. After the port it closes: A stops watching it, its token is dead (closing again is
/// 401), and what Carol sees is an account that left their chat and whose invitations the homeserver still takes
/// (nothing answers them: the watch has stopped).
#[tokio::test]
async fn an_old_account_can_be_closed_only_once_its_number_has_moved_away() {
    let Some(p) = Providers::start(15, "wait").await else { return };
    let (alice_n, carol_n) = ("+447911124361", "+447911124362");
    let (old_user, old_token) = crate::signup::sign_up_token(&p.a, &p.hs_a, alice_n, "a-1").await;
    let (_, carol_token) = crate::signup::sign_up_token(&p.a, &p.hs_a, carol_n, "c-1").await;
    let room = direct_chat(&p.hs_a, &carol_token, &old_user, &old_token).await;
    let close = |token: Option<&str>| {
        let mut r = reqwest::Client::new().post(format!("{}/_tincan/client/v1/account/close", p.a.url));
        if let Some(token) = token {
            r = r.bearer_auth(token);
        }
        async move {
            let r = r.send().await.unwrap();
            let status = r.status().as_u16();
            let body = r.json::<Value>().await.unwrap_or(Value::Null);
            (status, body["errcode"].as_str().map(str::to_owned), body)
        }
    };
    let (s, code, b) = close(None).await;
    assert_eq!((s, code.as_deref()), (401, Some("M_MISSING_TOKEN")), "{b}");
    let r = reqwest::Client::new()
        .post(format!("{}/_tincan/client/v1/account/close", p.a.url))
        .bearer_auth(&old_token)
        .body("[]")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 400, "a body that is not a JSON object");
    assert_eq!(r.json::<Value>().await.unwrap()["errcode"], "M_BAD_JSON");
    let (s, code, b) = close(Some(&carol_token)).await;
    assert_eq!((s, code.as_deref()), (409, Some("IO.TINCAN.NOT_MOVED_AWAY")), "{b}");

    // Alice files the port at B; until A has heard of it her old account is one whose number did not move.
    let at_b = sign_in(&p.b, alice_n, "b-1").await;
    let id = at_b["port"]["id"].as_i64().unwrap();
    let (s, b) = eventually("A knows of the pending port", || async {
        let (s, code, b) = close(Some(&old_token)).await;
        (code.as_deref() != Some("IO.TINCAN.NOT_MOVED_AWAY")).then_some((s, b))
    })
    .await;
    assert_eq!((s, b["errcode"].as_str()), (409, Some("IO.TINCAN.PORT_PENDING")), "{b}");
    assert_eq!(p.port(id).await["state"], "pending", "the port was still pending when A refused");

    // The window ends: the number moves; A watches the old account (kept, the default) until it is closed.
    let closed = p.closed_port(id).await;
    assert_eq!(closed["state"], "completed", "{closed}");
    watching(&p.a).await;
    let (s, b) = eventually("A lets the old account close", || async {
        let (s, _, b) = close(Some(&old_token)).await;
        (s != 409).then_some((s, b))
    })
    .await;
    assert_eq!((s, &b["closed"]), (200, &json!(old_user)), "{b}\n{}", p.a.guard.log_tail(30));
    eventually("A stops watching the closed account", || async {
        logged(&p.a, "stopped watching a moved-away account").then_some(())
    })
    .await;
    let (s, code, b) = close(Some(&old_token)).await;
    assert_eq!((s, code.as_deref()), (401, Some("M_UNAUTHORIZED")), "closing again: {b}");

    // What Carol sees: the old account left their chat; an invitation to it is taken, and stays one.
    eventually("the closed account leaves the chat", || async {
        let path = format!("rooms/{room}/joined_members");
        let members = mx(&p.hs_a, &carol_token, reqwest::Method::GET, &path, None).await;
        members["joined"].get(&old_user).is_none().then_some(())
    })
    .await;
    let body = json!({"invite": [old_user], "is_direct": true, "preset": "trusted_private_chat"});
    let dm = mx(&p.hs_a, &carol_token, reqwest::Method::POST, "createRoom", Some(body)).await["room_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let path = format!("rooms/{dm}/state/m.room.member/{old_user}");
    assert_eq!(mx(&p.hs_a, &carol_token, reqwest::Method::GET, &path, None).await["membership"], "invite");
}

/// An invitation to the old account after a port away is answered as a message to it is (issue #22): Carol's new
/// direct chat with it is joined and gets the moved notice naming the new account; her group room is declined
/// with the notice's text as the reason, so she learns the new route there too without the old account joining.
#[tokio::test]
async fn invitations_to_a_moved_away_account_are_answered_with_the_new_route() {
    let Some(p) = Providers::start(3600, "release").await else { return };
    let (alice_n, carol_n) = ("+447911124321", "+447911124322");
    let (old_user, _) = crate::signup::sign_up_token(&p.a, &p.hs_a, alice_n, "a-1").await;
    let (_, carol_token) = crate::signup::sign_up_token(&p.a, &p.hs_a, carol_n, "c-1").await;
    let at_b = sign_in(&p.b, alice_n, "b-1").await;
    let new_user = at_b["user_id"].as_str().unwrap().to_owned();
    let closed = p.closed_port(at_b["port"]["id"].as_i64().unwrap()).await;
    assert_eq!(closed["state"], "completed", "{closed}");
    // A watches the old account: what it finds pending at its first look may predate the port and is left alone.
    watching(&p.a).await;

    // Carol, who knew only the old Matrix ID, invites it to a new direct chat and to a group room.
    let create = |body: Value| {
        let (hs, token) = (&p.hs_a, carol_token.clone());
        async move {
            mx(hs, &token, reqwest::Method::POST, "createRoom", Some(body)).await["room_id"]
                .as_str()
                .unwrap()
                .to_owned()
        }
    };
    let dm = create(json!({"invite": [old_user], "is_direct": true, "preset": "trusted_private_chat"})).await;
    let group = create(json!({"invite": [old_user], "preset": "private_chat", "name": "group"})).await;

    // The direct chat: the old account joins it and tells Carol where the number went.
    let events = eventually("the old account answers the invitation to a direct chat", || async {
        let events = messages(&p.hs_a, &carol_token, &dm).await;
        (!notices(&events).is_empty()).then_some(events)
    })
    .await;
    assert_eq!(notices(&events), [new_user.as_str()], "{events:?}");
    assert_eq!(events[0]["sender"], old_user.as_str(), "{events:?}");
    let path = format!("rooms/{dm}/joined_members");
    let members = mx(&p.hs_a, &carol_token, reqwest::Method::GET, &path, None).await;
    assert!(members["joined"].get(&old_user).is_some(), "{members}");

    // The group room: declined, the reason naming the new account.
    let membership = eventually("the old account declines the group room's invitation", || async {
        let path = format!("rooms/{group}/state/m.room.member/{old_user}");
        let m = mx(&p.hs_a, &carol_token, reqwest::Method::GET, &path, None).await;
        (m["membership"] != "invite").then_some(m)
    })
    .await;
    assert_eq!(membership["membership"], "leave", "{membership}");
    assert!(membership["reason"].as_str().unwrap_or("").contains(&new_user), "{membership}");
}

/// Two nodes of A's extension on one PostgreSQL database both watch the kept old account (issue #22), with the
/// appservice backend: a message Carol sends it after the port reaches both, and gets one moved notice, not one
/// from each node. A third node that starts afterwards (as a restarted one would) keeps to the room's interval
/// too: Carol's next message within `porting.moved_reply_interval_secs` gets no notice from any node. (The
/// homeserver merges two nodes' sends of one answer, whose transaction ids are equal, so the first part alone
/// passes with a claim kept in each node's memory; the second does not.)
#[tokio::test]
async fn two_nodes_of_one_provider_answer_a_message_to_a_moved_away_account_once() {
    let Some(pg) = tincan_testkit::Postgres::create().await else { return };
    let Some(p) = Providers::start_with(3600, "release", true, Some(pg.url())).await else { return };
    let (alice_n, carol_n) = ("+447911124331", "+447911124332");
    let (old_user, old_token) = crate::signup::sign_up_token(&p.a, &p.hs_a, alice_n, "a-1").await;
    let (_, carol_token) = crate::signup::sign_up_token(&p.a, &p.hs_a, carol_n, "c-1").await;
    let room = direct_chat(&p.hs_a, &carol_token, &old_user, &old_token).await;
    let notice_ids = || async {
        let events = messages(&p.hs_a, &carol_token, &room).await;
        let moved = events.iter().filter(|e| e["content"]["io.tincan.moved"].is_object());
        moved.map(|e| e["event_id"].as_str().unwrap().to_owned()).collect::<Vec<_>>()
    };

    // Alice moves her number to B; the old account tells the chat once; both nodes of A watch it.
    let at_b = sign_in(&p.b, alice_n, "b-1").await;
    let closed = p.closed_port(at_b["port"]["id"].as_i64().unwrap()).await;
    assert_eq!(closed["state"], "completed", "{closed}");
    eventually("the port's moved notice", || async { (notice_ids().await.len() == 1).then_some(()) }).await;
    watching(&p.a).await;
    let node_2 = p.another_a().await;
    watching(&node_2).await;

    // Carol writes; each node looks at her message (or finds the other's answer newest) before the count.
    let asked = say(&p.hs_a, &carol_token, &room, "t1", "are you there?").await;
    let ids = eventually("both nodes look at Carol's message", || async {
        // The logs first: a node logs an answer once it is sent, so the notices read next include it.
        let logs = [log(&p.a), log(&node_2)];
        let ids = notice_ids().await;
        let seen = |log: &String| log.contains(&asked) || ids.iter().skip(1).any(|id| log.contains(id.as_str()));
        logs.iter().all(seen).then_some(ids)
    })
    .await;
    assert_eq!(ids.len(), 2, "one notice for the port, one for Carol's message: {ids:?}");

    // A node that was not there for the answer: the room's interval (an hour) is in the shared database.
    let node_3 = p.another_a().await;
    watching(&node_3).await;
    let asked = say(&p.hs_a, &carol_token, &room, "t2", "hello?").await;
    let ids = eventually("the three nodes look at Carol's second message", || async {
        let logs = [log(&p.a), log(&node_2), log(&node_3)];
        let ids = notice_ids().await;
        let seen = |log: &String| log.contains(&asked) || ids.iter().skip(2).any(|id| log.contains(id.as_str()));
        logs.iter().all(seen).then_some(ids)
    })
    .await;
    assert_eq!(ids.len(), 2, "no notice for a message within the room's interval, whichever node looks: {ids:?}");
}

/// With the appservice backend the extension watches a kept old account without signing in as it (issue #22):
/// it acts for the user with the appservice's own token, so the watch adds no device to the account — a device
/// whose use the registration lock's lapse would read as the user's activity — and still answers a message sent
/// to the old account with the moved notice.
#[tokio::test]
async fn an_appservice_made_old_account_is_watched_without_a_device_of_its_own() {
    let Some(p) = Providers::start_as(3600, "release", true).await else { return };
    let (alice_n, carol_n) = ("+447911124341", "+447911124342");
    let (old_user, old_token) = crate::signup::sign_up_token(&p.a, &p.hs_a, alice_n, "a-1").await;
    let (_, carol_token) = crate::signup::sign_up_token(&p.a, &p.hs_a, carol_n, "c-1").await;
    let room = direct_chat(&p.hs_a, &carol_token, &old_user, &old_token).await;
    let count = || async { notices(&messages(&p.hs_a, &carol_token, &room).await).len() };
    let at_b = sign_in(&p.b, alice_n, "b-1").await;
    let closed = p.closed_port(at_b["port"]["id"].as_i64().unwrap()).await;
    assert_eq!(closed["state"], "completed", "{closed}");
    eventually("the port's moved notice", || async { (count().await == 1).then_some(()) }).await;

    // The watch answers Carol's message after the port…
    say(&p.hs_a, &carol_token, &room, "t1", "are you there?").await;
    eventually("the watch answers Carol", || async { (count().await == 2).then_some(()) }).await;
    // …and the old account has only its user's own device.
    let get = reqwest::Method::GET;
    let mine = mx(&p.hs_a, &old_token, get.clone(), "account/whoami", None).await["device_id"].clone();
    let devices = mx(&p.hs_a, &old_token, get, "devices", None).await;
    let ids: Vec<&Value> = devices["devices"].as_array().unwrap().iter().map(|d| &d["device_id"]).collect();
    assert_eq!(ids, [&mine], "{devices}");
}

/// With the JWT backend every node of A signs in to watch the old account on the one device `TINCANMOVED`, so a
/// node that ends its session logs the others out too (issue #22, several nodes). A watch whose token stops
/// working signs in again and goes on answering, rather than taking it for the account refused and stopping for
/// good. The other node's logout is played here by deleting the device through Synapse's admin API.
#[tokio::test]
async fn a_watch_logged_out_by_another_node_signs_in_again() {
    let Some(p) = Providers::start(3600, "release").await else { return };
    let (alice_n, carol_n) = ("+447911124351", "+447911124352");
    let (old_user, old_token) = crate::signup::sign_up_token(&p.a, &p.hs_a, alice_n, "a-1").await;
    let (_, carol_token) = crate::signup::sign_up_token(&p.a, &p.hs_a, carol_n, "c-1").await;
    let room = direct_chat(&p.hs_a, &carol_token, &old_user, &old_token).await;
    let count = || async { notices(&messages(&p.hs_a, &carol_token, &room).await).len() };
    let at_b = sign_in(&p.b, alice_n, "b-1").await;
    let closed = p.closed_port(at_b["port"]["id"].as_i64().unwrap()).await;
    assert_eq!(closed["state"], "completed", "{closed}");
    eventually("the port's moved notice", || async { (count().await == 1).then_some(()) }).await;
    watching(&p.a).await;

    // Another node's logout: the watch's device goes, its token with it.
    let admin = &p.a_env.iter().find(|(k, _)| k == "TINCAN_EXT_HOMESERVER__ADMIN_TOKEN").unwrap().1;
    let device = format!("{}/_synapse/admin/v2/users/{old_user}/devices/TINCANMOVED", p.hs_a.url());
    let r = reqwest::Client::new().delete(device).bearer_auth(admin).send().await.unwrap();
    assert!(r.status().is_success(), "{}", r.status());
    // The watch's next request finds its token gone (its long-poll ends within 30 s).
    eventually("the watch finds its token gone", || async {
        (logged(&p.a, "trying again") || logged(&p.a, "no longer watching")).then_some(())
    })
    .await;

    // Carol writes afterwards: the watch, signed in again, answers.
    say(&p.hs_a, &carol_token, &room, "t1", "are you there?").await;
    eventually("the watch answers Carol", || async { (count().await == 2).then_some(()) }).await;
}
