//! The bindings' API on the real chain (`chain.rs`: Synapse, `tincan-ext` with its SMS sink, the directory behind
//! a DNS man-in-the-middle that tampers with one number, its transparency log), from both sides in one run (one
//! chain, to keep CI short):
//! - Rust, calling the exported functions as a foreign caller would (`open`, `register`/`verify`, `lookup`,
//!   `route_to_number`, a `MessageListener` through `start_sync`) and getting the typed `ClientError`s;
//! - Python, through the generated bindings (`tests/python/bindings_smoke.py`): a second number signs up, finds
//!   the first verified, routes and sends to it; the message reaches the Rust side's listener.

use crate::chain::Chain;
use crate::python;
use std::sync::Mutex;
use std::time::{Duration, Instant};
use tincan_ffi::{ClientConfig, ClientError, Decision, DirectoryConfig, IncomingMessage, Intent, KeyStatus, Route};
use tincan_testkit::directory::APEX;
use tokio::sync::mpsc;

const A_NUM: &str = "+442079460301";
/// Signed up by the Python script.
const P_NUM: &str = "+442079460302";
/// Registered by the provider for A, but every answer for it is tampered with on the wire.
const TAMPERED_NUM: &str = "+442079460305";
const NOBODY: &str = "+442079460399";

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
    let Some(chain) = Chain::start(TAMPERED_NUM).await? else { return Ok(()) };
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

    // A listens; the Python side signs up P, finds A verified, routes and sends to A.
    let (tx, mut rx) = mpsc::unbounded_channel();
    let sync = a.start_sync(Box::new(Inbox(Mutex::new(tx)))).await?;
    let env = [
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
        ("TINCAN_FFI_NOBODY", NOBODY.to_owned()),
        ("TINCAN_FFI_TAMPERED", TAMPERED_NUM.to_owned()),
    ];
    let started = Instant::now();
    let out = tokio::task::spawn_blocking({
        let dir = bindings.path().to_owned();
        move || python::run_script("bindings_smoke.py", &dir, &env)
    })
    .await??;
    let stdout = String::from_utf8(out.stdout)?;
    println!("{stdout}python script: {} ms", started.elapsed().as_millis());
    let result: serde_json::Value = serde_json::from_str(stdout.lines().last().unwrap_or_default())?;
    let got = tokio::time::timeout(Duration::from_secs(60), async {
        loop {
            match rx.recv().await {
                Some(m) if m.body == "hi from python" => return Some(m),
                Some(_) => continue,
                None => return None,
            }
        }
    })
    .await?
    .expect("the listener got the message");
    assert_eq!(got.event_id, result["event_id"].as_str().unwrap_or_default());
    assert_eq!(got.sender, result["user_id"].as_str().unwrap_or_default());
    assert!(got.encrypted);
    assert!(!sync.is_finished());
    sync.cancel();
    Ok(())
}
