//! The acceptance path over real SMPP: request → submit_sm at the smpp34 simulator → verify → JWT login to
//! Synapse → `/whoami`.

use crate::harness::{Ext, Smsc, code_in};
use serde_json::json;
use tincan_testkit::Synapse;

#[tokio::test]
async fn code_over_smpp_then_login_to_synapse() {
    let smsc = Smsc::start().await.unwrap();
    let synapse = Synapse::builder()
        .config(json!({"jwt_config": {"enabled": true, "secret": "smpp-test-secret-0123", "algorithm": "HS256"}}))
        .start()
        .await
        .unwrap();
    let ext = Ext::start(&format!(
        "server_name = \"hs.test\"\nhomeserver_url = \"{}\"\n\
         [homeserver]\nbackend = \"jwt\"\njwt_secret = \"smpp-test-secret-0123\"\n\
         [sms]\nbackend = \"smpp\"\nsmpp_address = \"127.0.0.1:{}\"\nsmpp_system_id = \"tincan\"\n\
         smpp_password = \"pw\"\nwebotp_domain = \"chat.example\"\n",
        synapse.url(),
        smsc.port
    ))
    .await
    .unwrap();

    let (s, b) = ext
        .post(
            "/_tincan/client/v1/register/request",
            json!({"phone": "+49 151 12345678", "client_secret": "smpp1", "send_attempt": 1}),
        )
        .await;
    assert_eq!(s, 200, "{b}\n{}", ext.guard.log_tail(30));
    let sub = smsc.submit(1).await.unwrap();
    assert_eq!(sub["destination_addr"], "4915112345678");
    assert_eq!(sub["dest_addr_ton"], 1);
    assert_eq!(sub["esm_class"], 0, "esm_class must be a plain message, not rusmpp's default 0x08");
    let text = sub["text"].as_str().unwrap();
    let code = code_in(text);
    assert!(text.ends_with(&format!("@chat.example #{code}")), "WebOTP line last: {text:?}");

    let (s, v) = ext
        .post("/_tincan/client/v1/register/verify", json!({"sid": b["sid"], "client_secret": "smpp1", "code": code}))
        .await;
    assert_eq!(s, 200, "{v}");
    let (token, _) = crate::signup::login(&synapse, &v["login"]).await;
    assert_eq!(synapse.whoami(&token).await.unwrap(), v["user_id"].as_str().unwrap());

    // A second message reuses the bound session.
    let (s, _) = ext
        .post(
            "/_tincan/client/v1/register/request",
            json!({"phone": "+4915112345679", "client_secret": "smpp2", "send_attempt": 1}),
        )
        .await;
    assert_eq!(s, 200);
    assert_eq!(smsc.submit(2).await.unwrap()["destination_addr"], "4915112345679");
    assert_eq!(smsc.events().iter().filter(|e| e["event"] == "bound").count(), 1);
}
