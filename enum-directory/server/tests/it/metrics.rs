//! `/metrics` and `/healthz` on the API listener of the real binary.

use hickory_proto::rr::RecordType;
use serde_json::json;

use crate::harness::{Directory, owner, query};

fn sample(text: &str, series: &str) -> Option<u64> {
    text.lines().find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

#[tokio::test]
async fn metrics_count_queries_rcodes_signatures_and_log_size() {
    let dir = tempfile::tempdir().unwrap();
    let d = Directory::start(dir.path()).await;
    let token = d.add_provider("acme", &["+44"]);
    let body = json!({"services": [{"type": "matrix", "uri": "matrix:u/alice:hs.test"}]});
    let r = d.http.put(d.url("/v1/numbers/+442079460001")).bearer_auth(&token).json(&body).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 200);
    for _ in 0..3 {
        query(d.dns, &owner("+442079460001"), RecordType::NAPTR).await;
    }
    query(d.dns, "example.org.", RecordType::A).await;

    let health = d.http.get(d.url("/healthz")).send().await.unwrap();
    assert_eq!(health.status().as_u16(), 200);
    let r = d.http.get(d.url("/metrics")).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert!(r.headers()["content-type"].to_str().unwrap().starts_with("text/plain; version=0.0.4"));
    let text = r.text().await.unwrap();
    assert!(text.contains("# TYPE tincan_directory_dns_queries_total counter"), "{text}");
    assert_eq!(sample(&text, "tincan_directory_dns_queries_total{qtype=\"NAPTR\"}"), Some(3), "{text}");
    assert_eq!(sample(&text, "tincan_directory_dns_queries_total{qtype=\"A\"}"), Some(1), "{text}");
    assert_eq!(sample(&text, "tincan_directory_dns_responses_total{rcode=\"REFUSED\"}"), Some(1), "{text}");
    assert_eq!(sample(&text, "tincan_directory_dns_responses_total{rcode=\"NOERROR\"}"), Some(3), "{text}");
    let zone = "{zone=\"e164.tincan.test.\"}";
    assert!(sample(&text, &format!("tincan_directory_signatures_total{zone}")).unwrap() >= 1, "{text}");
    assert_eq!(sample(&text, &format!("tincan_directory_zone_numbers{zone}")), Some(1), "{text}");
    assert_eq!(sample(&text, "tincan_directory_log_entries"), Some(3), "two zone keys and one number: {text}");
    assert_eq!(sample(&text, "tincan_directory_transfers_total{kind=\"axfr\"}"), Some(0), "{text}");
}
