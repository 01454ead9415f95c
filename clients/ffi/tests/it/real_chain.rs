//! The bindings' API on the real chain (`chain.rs`: Synapse, `tincan-ext` with its SMS sink, the directory behind
//! a DNS man-in-the-middle that tampers with one number, its transparency log), from both sides in one run (one
//! chain, to keep CI short):
//! - Rust, calling the exported functions as a foreign caller would (`open`, `register`/`verify`, `lookup`,
//!   `route_to_number`, a `MessageListener` through `start_sync`, `close_account` of an account whose number
//!   never moved) and getting the typed `ClientError`s;
//! - Python, through the generated bindings, the pytest suite `tests/python` as two processes of one app on the
//!   same data dirs: `test_app.py` signs up P (its session in the app's keychain, a `SessionStore`) and Q,
//!   registers P's pusher with a recording push gateway, finds A verified, routes and sends to it (the message
//!   reaches the Rust side's listener), has Q write to P (P's Python listener receives it) and gets the typed
//!   errors (a wrong code, a tampered directory answer…); then Rust's A answers P, Synapse posts the event id to
//!   the gateway, and `test_restart.py` (a new process: the app restarted) refuses a wrong store key, signs
//!   nothing in without P's keychain, gets a typed error from a keychain that refuses, opens P's data dir with
//!   the right key and keychain as the same device, decrypts a message from before the restart and the pushed
//!   event, receives in P's listener what A sent while the app was closed and what Q sends now, gets a key
//!   mismatch as a typed error and sends A another message.

use crate::chain::Chain;
use crate::push_gateway::PushGateway;
use crate::python;
use serde_json::json;
use std::sync::Mutex;
use std::time::{Duration, Instant};
use tincan_ffi::{ClientConfig, ClientError, Decision, DirectoryConfig, IncomingMessage, Intent, KeyStatus, Route};
use tincan_testkit::directory::APEX;
use tokio::sync::mpsc;

const A_NUM: &str = "+442079460301";
/// Signed up by the Python suite.
const P_NUM: &str = "+442079460302";
/// Signed up by the Python suite; writes to P.
const Q_NUM: &str = "+442079460303";
/// The Python suite asks a code for it and verifies with a wrong one.
const R_NUM: &str = "+442079460304";
/// Registered by the provider for A, but every answer for it is tampered with on the wire.
const TAMPERED_NUM: &str = "+442079460305";
const NOBODY: &str = "+442079460399";
/// Published by the provider for A's account with P's key: the contact's key contradicts the directory's.
const WRONG_KEY_NUM: &str = "+442079460306";
/// P's data dir key (the app's keystore holds it; a test fixture, not a secret).
const P_STORE_KEY: [u8; 32] = [0x50; 32];
/// Q's.
const Q_STORE_KEY: [u8; 32] = [0x51; 32];
/// The app id and push token P registers its pusher with (test fixtures).
const APP_ID: &str = "org.tincan.test";
const PUSHKEY: &str = "test-push-token-p";

fn config(chain: &Chain, dir: &std::path::Path, store_key: Vec<u8>) -> ClientConfig {
    ClientConfig {
        data_dir: dir.to_str().expect("utf-8 temp dir").to_owned(),
        store_key: Some(store_key),
        ext_url: Some(chain.ext.url.clone()),
        directory: Some(DirectoryConfig {
            servers: vec![chain.proxy.addr.to_string()],
            apex: APEX.into(),
            trust_anchor: chain.anchor.clone(),
            allow_insecure: false,
            log_url: Some(chain.log.url.clone()),
            log_key: Some(chain.log_key.clone()),
        }),
        device_name: "ffi test".into(),
        session_store: None,
        charter: None,
    }
}

/// A listener that hands messages to the test.
struct Inbox(Mutex<mpsc::UnboundedSender<IncomingMessage>>);

impl tincan_ffi::MessageListener for Inbox {
    fn on_message(&self, message: IncomingMessage) {
        let _ = self.0.lock().unwrap().send(message);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bindings_on_the_real_chain() -> anyhow::Result<()> {
    let Some(bindgen) = python::bindgen() else { return Ok(()) };
    // Synapse refuses to post to loopback addresses by default (`ip_range_blacklist`); the recording push
    // gateway listens on 127.0.0.1.
    let loopback_push = json!({"ip_range_whitelist": ["127.0.0.1"]});
    let Some(chain) = Chain::start_with(TAMPERED_NUM, |b| b.config(loopback_push)).await? else { return Ok(()) };
    let bindings = tempfile::Builder::new().prefix("tincan-ffi-py-").tempdir()?;
    python::generate_python(&bindgen, bindings.path())?;
    let da = tempfile::tempdir()?;

    // A signs up through the exported API.
    let a = tincan_ffi::open(config(&chain, da.path(), vec![7; 32])).await?;
    assert_eq!(a.user_id().await, None);
    let req = a.register(A_NUM.into()).await?;
    assert!(!req.sid.is_empty() && req.expires_in_secs > 0, "{req:?}");
    let sa = a.verify(chain.ext.code(A_NUM)?).await?;
    assert!(sa.new_account);
    assert_eq!(sa.published_for, [A_NUM]);
    let ka = sa.master_key.clone().expect("A's cross-signing bootstrapped");
    assert_eq!(a.user_id().await.as_deref(), Some(sa.user_id.as_str()));
    assert_eq!(a.number().await.as_deref(), Some(A_NUM));
    assert_eq!(a.own_master_key().await?.as_deref(), Some(ka.as_str()));
    // The provider points the tampered number at A.
    chain.registrar.put_number(TAMPERED_NUM, &[("matrix", &Chain::matrix_uri(&sa.user_id))]).await?;
    chain.registrar.put_key(TAMPERED_NUM, &ka).await?;

    // A's own number, as the directory says (the extension's write reaches DNS asynchronously).
    let deadline = Instant::now() + Duration::from_secs(30);
    let contact = loop {
        let c = a.lookup(A_NUM.into()).await?;
        if matches!(c.key_status, Some(KeyStatus::Verified { .. })) || Instant::now() > deadline {
            break c;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(contact.route, Route::Matrix { user_id: sa.user_id.clone(), key: Some(ka.clone()), secure: true });
    assert_eq!(contact.key_status, Some(KeyStatus::Verified { key: ka.clone() }));
    assert_eq!(contact.user_id.as_deref(), Some(sa.user_id.as_str()));
    let d = a.route_to_number(A_NUM.into(), Intent::Text, false).await?;
    assert_eq!(d, Decision::Matrix { user_id: sa.user_id.clone(), warning: None });

    // Typed errors, each with its stable code.
    match a.route_to_number(NOBODY.into(), Intent::Text, false).await {
        Err(ClientError::NotReachable { code, number, .. }) => {
            assert_eq!((code.as_str(), number.as_str()), ("not_reachable", NOBODY))
        }
        other => panic!("expected NotReachable, got {other:?}"),
    }
    match a.lookup("12".into()).await {
        Err(ClientError::InvalidNumber { code, .. }) => assert_eq!(code, "invalid_number"),
        other => panic!("expected InvalidNumber, got {other:?}"),
    }
    match a.lookup(TAMPERED_NUM.into()).await {
        Err(ClientError::Untrusted { code, .. }) => assert_eq!(code, "dnssec_validation_failed"),
        other => panic!("expected Untrusted, got {other:?}"),
    }
    let short = tempfile::tempdir()?;
    match tincan_ffi::open(config(&chain, short.path(), vec![1; 31])).await {
        Err(ClientError::InvalidArgument { code, detail }) => {
            assert_eq!(code, "invalid_argument");
            assert!(detail.contains("31 bytes"), "{detail}");
        }
        other => panic!("expected InvalidArgument, got {:?}", other.map(|_| ())),
    }
    // A wrong code: the extension's refusal, with its Matrix errcode.
    let dc = tempfile::tempdir()?;
    let c = tincan_ffi::open(config(&chain, dc.path(), vec![9; 32])).await?;
    c.register("+442079460310".into()).await?;
    let right = chain.ext.code("+442079460310")?;
    let wrong = if right == "000000" { "111111" } else { "000000" };
    match c.verify(wrong.into()).await {
        Err(ClientError::Refused { code, errcode, .. }) => {
            assert_eq!(code, "extension_refused");
            assert!(errcode.starts_with("M_"), "{errcode}");
        }
        other => panic!("expected Refused, got {other:?}"),
    }
    // Closing an account whose number never moved away: the extension's refusal, typed; A stays signed in.
    match a.close_account().await {
        Err(ClientError::NotMovedAway { code, .. }) => assert_eq!(code, "not_moved_away"),
        other => panic!("expected NotMovedAway, got {other:?}"),
    }
    assert_eq!(a.user_id().await.as_deref(), Some(sa.user_id.as_str()));

    // A listens; the Python side signs up P (registering its pusher) and Q, finds A verified, routes and sends to
    // A; Q writes to P.
    let mut gateway = PushGateway::start().await?;
    let (dp, dq) = (tempfile::tempdir()?, tempfile::tempdir()?);
    // P's keychain (its SessionStore, in Python): outside its data dir, kept across the app's processes.
    let keychains = tempfile::tempdir()?;
    let hex = |key: &[u8]| key.iter().map(|b| format!("{b:02x}")).collect::<String>();
    let (tx, mut rx) = mpsc::unbounded_channel();
    let sync = a.start_sync(Box::new(Inbox(Mutex::new(tx)))).await?;
    let mut env = vec![
        ("TINCAN_FFI_EXT_URL", chain.ext.url.clone()),
        ("TINCAN_FFI_SMS_FILE", chain.ext.sms_file().display().to_string()),
        ("TINCAN_FFI_DNS", chain.proxy.addr.to_string()),
        ("TINCAN_FFI_APEX", APEX.to_owned()),
        ("TINCAN_FFI_ANCHOR", chain.anchor.clone()),
        ("TINCAN_FFI_LOG_URL", chain.log.url.clone()),
        ("TINCAN_FFI_LOG_KEY", chain.log_key.clone()),
        ("TINCAN_FFI_A_NUM", A_NUM.to_owned()),
        ("TINCAN_FFI_A_USER", sa.user_id.clone()),
        ("TINCAN_FFI_A_KEY", ka.clone()),
        ("TINCAN_FFI_P_NUM", P_NUM.to_owned()),
        ("TINCAN_FFI_P_DIR", dp.path().display().to_string()),
        ("TINCAN_FFI_P_STORE_KEY", hex(&P_STORE_KEY)),
        ("TINCAN_FFI_P_KEYCHAIN", keychains.path().join("p.json").display().to_string()),
        ("TINCAN_FFI_Q_NUM", Q_NUM.to_owned()),
        ("TINCAN_FFI_Q_DIR", dq.path().display().to_string()),
        ("TINCAN_FFI_Q_STORE_KEY", hex(&Q_STORE_KEY)),
        ("TINCAN_FFI_R_NUM", R_NUM.to_owned()),
        ("TINCAN_FFI_PUSH_URL", gateway.url.clone()),
        ("TINCAN_FFI_APP_ID", APP_ID.to_owned()),
        ("TINCAN_FFI_PUSHKEY", PUSHKEY.to_owned()),
        ("TINCAN_FFI_NOBODY", NOBODY.to_owned()),
        ("TINCAN_FFI_TAMPERED", TAMPERED_NUM.to_owned()),
    ];
    let result = run_pytest("test_app.py", bindings.path(), &env).await?;
    let p_user = result["p_user"].as_str().unwrap_or_default().to_owned();
    let p_key = result["p_key"].as_str().unwrap_or_default().to_owned();
    let q_user = result["q_user"].as_str().unwrap_or_default().to_owned();
    let got = next_message(&mut rx, "hi from python").await?;
    assert_eq!(got.event_id, result["event_id"].as_str().unwrap_or_default());
    assert_eq!(got.sender, p_user);
    assert!(got.encrypted);

    // The provider publishes a number for A's account with P's key (a key A does not have).
    chain.registrar.put_number(WRONG_KEY_NUM, &[("matrix", &Chain::matrix_uri(&sa.user_id))]).await?;
    chain.registrar.put_key(WRONG_KEY_NUM, &p_key).await?;

    // A answers P (the Python app is not running): Synapse pushes the event id to P's pusher, and only that.
    let deadline = Instant::now() + Duration::from_secs(30);
    while !matches!(a.lookup(P_NUM.into()).await?.key_status, Some(KeyStatus::Verified { .. })) {
        assert!(Instant::now() < deadline, "P not verified from A's side");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let answer = a.send_to_number(P_NUM.into(), "hi from rust".into(), false).await?;
    assert_eq!(answer.decision, Decision::Matrix { user_id: p_user.clone(), warning: None });
    let pushed = tokio::time::timeout(Duration::from_secs(60), async {
        while let Some(n) = gateway.received.recv().await {
            if n["event_id"] == answer.event_id.as_str() {
                return Some(n);
            }
        }
        None
    })
    .await?
    .expect("the gateway got the push for A's answer");
    assert_eq!(pushed["room_id"], answer.room_id.as_str(), "{pushed}");
    assert_eq!(pushed["devices"][0]["app_id"], APP_ID, "{pushed}");
    assert_eq!(pushed["devices"][0]["pushkey"], PUSHKEY, "{pushed}");
    assert!(pushed.get("content").is_none() && !pushed.to_string().contains("hi from rust"), "{pushed}");

    // The app restarts: a new Python process on P's data dir, with the pushed ids.
    env.extend([
        ("TINCAN_FFI_P_USER", p_user.clone()),
        ("TINCAN_FFI_P_KEY", p_key.clone()),
        ("TINCAN_FFI_P_DEVICE", str_of(&result, "p_device")),
        ("TINCAN_FFI_Q_ROOM", str_of(&result, "q_room")),
        ("TINCAN_FFI_Q_EVENT", str_of(&result, "q_event")),
        ("TINCAN_FFI_Q_USER", q_user),
        ("TINCAN_FFI_PUSH_ROOM", pushed["room_id"].as_str().unwrap_or_default().to_owned()),
        ("TINCAN_FFI_PUSH_EVENT", pushed["event_id"].as_str().unwrap_or_default().to_owned()),
        ("TINCAN_FFI_WRONG_KEY_NUM", WRONG_KEY_NUM.to_owned()),
    ]);
    let result = run_pytest("test_restart.py", bindings.path(), &env).await?;
    let got = next_message(&mut rx, "hi after restart").await?;
    assert_eq!(got.event_id, result["event_id"].as_str().unwrap_or_default());
    assert_eq!(got.sender, p_user);
    assert!(got.encrypted);
    assert!(!sync.is_finished());
    sync.cancel();
    Ok(())
}

/// The string `key` of what the pytest run wrote (empty when it did not: the next run's check fails on it).
fn str_of(result: &serde_json::Value, key: &str) -> String {
    result[key].as_str().unwrap_or_default().to_owned()
}

/// Runs the pytest file `tests/python/<file>` in a new process (on a blocking thread: the chain keeps running on
/// ours); what its tests wrote for us (JSON).
async fn run_pytest(
    file: &'static str,
    bindings: &std::path::Path,
    env: &[(&'static str, String)],
) -> anyhow::Result<serde_json::Value> {
    let started = Instant::now();
    let (dir, env) = (bindings.to_owned(), env.to_vec());
    let out = tokio::task::spawn_blocking(move || python::run_pytest(file, &dir, &env)).await??;
    println!("{file}: {} ms", started.elapsed().as_millis());
    Ok(out)
}

/// The first message with `body` the listener gets within a minute.
async fn next_message(
    rx: &mut mpsc::UnboundedReceiver<IncomingMessage>,
    body: &str,
) -> anyhow::Result<IncomingMessage> {
    let got = tokio::time::timeout(Duration::from_secs(60), async {
        while let Some(m) = rx.recv().await {
            if m.body == body {
                return Some(m);
            }
        }
        None
    })
    .await?;
    got.ok_or_else(|| anyhow::anyhow!("the listener stopped before {body:?}"))
}
