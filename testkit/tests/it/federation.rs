//! The federation rig's TLS is real: Synapses with certificates of the test's CA federate, and one whose
//! certificate another CA signed is refused (certificates are verified, not just encrypted).

use serde_json::{Value, json};
use tincan_testkit::Synapse;
use tincan_testkit::federation::TestCa;

/// `POST /createRoom` inviting `invite`, as `token` on `hs`: the status and the answer.
async fn invite(hs: &Synapse, token: &str, invite: &str) -> (u16, Value) {
    let r = reqwest::Client::new()
        .post(format!("{}/_matrix/client/v3/createRoom", hs.url()))
        .bearer_auth(token)
        .json(&json!({"invite": [invite]}))
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn synapses_federate_only_with_certificates_of_the_trusted_ca() {
    let (ca, other_ca) = (TestCa::new().unwrap(), TestCa::new().unwrap());
    let (a, b, stranger) = tokio::join!(
        Synapse::builder().federation(&ca).unwrap().start(),
        Synapse::builder().federation(&ca).unwrap().start(),
        Synapse::builder().federation(&other_ca).unwrap().start(),
    );
    let (a, b, stranger) = (a.unwrap(), b.unwrap(), stranger.unwrap());
    assert!(a.server_name().starts_with("localhost:"), "{}", a.server_name());
    assert_eq!(a.server_name(), format!("localhost:{}", a.federation_port().unwrap()));
    let alice = a.register_user("alice", false).await.unwrap();
    let bob = b.register_user("bob", false).await.unwrap();
    let eve = stranger.register_user("eve", false).await.unwrap();

    // A reaches B over TLS (the invite is delivered over federation before createRoom answers).
    let (status, body) = invite(&a, &alice.access_token, &bob.user_id).await;
    assert_eq!(status, 200, "{body}\n{}", a.log_tail(20));
    // A refuses the stranger's certificate, so the invite cannot be delivered.
    let (status, body) = invite(&a, &alice.access_token, &eve.user_id).await;
    assert_ne!(status, 200, "{body}");
    assert!(
        a.log_tail(200).contains("CERTIFICATE_VERIFY_FAILED") || a.log_tail(200).contains("certificate verify failed"),
        "{}",
        a.log_tail(30)
    );
}
