//! The acceptance path over real SMPP: request → submit_sm at the smpp34 simulator → verify → JWT login to
//! Synapse → `/whoami` → the real directory answers a delv-validated NAPTR for the number pointing at that user.

use crate::harness::{Api, Ext, Smsc, code_in};
use serde_json::json;
use tincan_testkit::Synapse;
use tincan_testkit::directory::{Directory, binary_or_skip};

#[tokio::test]
async fn code_over_smpp_then_login_to_synapse() {
    let Some(bin) = binary_or_skip() else { return };
    let dir = Directory::start(&bin).await.unwrap();
    let token = dir.add_provider("tincan", &["+49"]).unwrap().token;
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
         smpp_password = \"pw\"\nwebotp_domain = \"chat.example\"\n\
         [directory]\nurl = \"{}\"\ntoken = \"{token}\"\n",
        synapse.url(),
        smsc.port,
        dir.api
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
    let (access_token, _) = crate::signup::login(&synapse, &v["login"]).await;
    let user_id = v["user_id"].as_str().unwrap();
    assert_eq!(synapse.whoami(&access_token).await.unwrap(), user_id);

    // The directory now answers a DNSSEC-validated NAPTR for the number, pointing at that user.
    let text = dir.delv("+4915112345678", "NAPTR").unwrap();
    assert!(text.contains("; fully validated"), "{text}");
    assert!(text.contains(&format!("matrix:u/{}", user_id.trim_start_matches('@'))), "{text}");

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
