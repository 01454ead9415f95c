//! Issue 14 item 15: the public reads of the log (head, inclusion and consistency proofs) are no enumeration
//! oracle and no write-starver: a deleted number's proof is refused exactly like a never-registered one's, reads
//! never wait for SQLite's write lock, and each client gets a rate limit of its own.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::harness::Directory;

async fn put(d: &Directory, token: &str, number: &str, user: &str) -> i64 {
    let body = json!({"services": [{"type": "matrix", "uri": format!("matrix:u/{user}:hs.test")}]});
    let r = d.http.put(d.url(&format!("/v1/numbers/{number}"))).bearer_auth(token).json(&body).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 200);
    r.json::<Value>().await.unwrap()["version"].as_i64().unwrap()
}

async fn inclusion(d: &Directory, number: &str, version: Option<i64>) -> (u16, Value) {
    let mut url = d.url(&format!("/v1/log/proof/inclusion?number={}", number.replace('+', "%2B")));
    if let Some(v) = version {
        url += &format!("&version={v}");
    }
    let r = d.http.get(url).send().await.unwrap();
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn a_deleted_numbers_proof_is_refused_like_a_never_registered_ones() {
    let dir = tempfile::tempdir().unwrap();
    let d = Directory::start(dir.path()).await;
    let acme = d.add_provider("acme", &["+44"]);
    let first = put(&d, &acme, "+442079460001", "alice").await;
    let second = put(&d, &acme, "+442079460001", "alice2").await;
    let kept = put(&d, &acme, "+442079460002", "bob").await;
    put(&d, &acme, "+442079460002", "bob2").await;
    let r = d.http.delete(d.url("/v1/numbers/+442079460001")).bearer_auth(&acme).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let deleted = r.json::<Value>().await.unwrap()["version"].as_i64().unwrap();

    let never = inclusion(&d, "+442079460099", None).await;
    assert_eq!(never.0, 404, "{never:?}");
    for version in [None, Some(first), Some(second), Some(deleted)] {
        let got = inclusion(&d, "+442079460001", version).await;
        assert_eq!(got, never, "the deleted number at version {version:?} answers like one never registered");
    }
    // A registered number's proofs, its history included, are still answered.
    for version in [None, Some(kept)] {
        let (status, body) = inclusion(&d, "+442079460002", version).await;
        assert_eq!(status, 200, "{body}");
        let p: tincan_translog::wire::InclusionProof = serde_json::from_value(body).unwrap();
        p.verify().unwrap();
    }
}

/// Another process holds SQLite's write lock (as a registrar write, an import or the follower does): the public
/// reads and the authenticated ones are answered meanwhile, in read transactions, instead of queueing for it.
#[tokio::test]
async fn reads_are_answered_while_another_writer_holds_the_write_lock() {
    use sqlx::Connection as _;
    let dir = tempfile::tempdir().unwrap();
    let d = Directory::start(dir.path()).await;
    let acme = d.add_provider("acme", &["+44"]);
    put(&d, &acme, "+442079460001", "alice").await;
    put(&d, &acme, "+442079460002", "bob").await;
    // The head of the current tree is signed (and stored) now, so the reads below have nothing to write.
    let sth: tincan_translog::wire::SthResponse =
        d.http.get(d.url("/v1/log/sth")).send().await.unwrap().json().await.unwrap();
    let size = sth.sth.head.tree_size;

    let url = format!("sqlite://{}", dir.path().join("directory.sqlite3").display());
    let mut writer = sqlx::SqliteConnection::connect(&url).await.unwrap();
    sqlx::query("BEGIN IMMEDIATE").execute(&mut writer).await.unwrap();
    let http = reqwest::Client::builder().timeout(Duration::from_secs(5)).build().unwrap();
    let reads = [
        ("/v1/log/sth".to_owned(), None),
        ("/v1/log/proof/inclusion?number=%2B442079460001".to_owned(), None),
        (format!("/v1/log/proof/consistency?from=1&to={size}"), None),
        ("/v1/numbers/+442079460002".to_owned(), Some(&acme)),
        ("/v1/numbers".to_owned(), Some(&acme)),
        ("/v1/log/entries".to_owned(), Some(&acme)),
        ("/healthz".to_owned(), None),
        ("/metrics".to_owned(), None),
    ];
    for (path, token) in reads {
        let started = Instant::now();
        let mut req = http.get(d.url(&path));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let status = req.send().await.map(|r| r.status().as_u16());
        let took = started.elapsed();
        assert!(matches!(status, Ok(200)), "GET {path} while the write lock is held: {status:?} after {took:?}");
        assert!(took < Duration::from_secs(2), "GET {path} waited {took:?} for the write lock");
    }
    sqlx::query("ROLLBACK").execute(&mut writer).await.unwrap();
}

/// Each client (address) gets `api.public_rate_limit` of the public reads; another client is not affected, nor
/// is a provider's authenticated read.
#[tokio::test]
async fn public_log_reads_are_rate_limited_per_client() {
    let dir = tempfile::tempdir().unwrap();
    let env = [
        ("TINCAN_DIRECTORY_API__PUBLIC_RATE_LIMIT__BURST", "5"),
        ("TINCAN_DIRECTORY_API__PUBLIC_RATE_LIMIT__PER_SECOND", "0.01"),
    ];
    let d = Directory::start_with(dir.path(), &env).await;
    let acme = d.add_provider("acme", &["+44"]);
    put(&d, &acme, "+442079460001", "alice").await;
    let paths = ["/v1/log/sth", "/v1/log/proof/inclusion?number=%2B442079460001", "/v1/log/proof/consistency?from=1"];
    let mut statuses = Vec::new();
    for i in 0..8 {
        let r = d.http.get(d.url(paths[i % 3])).send().await.unwrap();
        statuses.push(r.status().as_u16());
        if r.status().as_u16() == 429 {
            let retry: u64 = r.headers()["retry-after"].to_str().unwrap().parse().unwrap();
            assert!(retry >= 1, "{retry}");
            let body: Value = r.json().await.unwrap();
            assert_eq!(body["error"]["code"], "rate_limited");
        }
    }
    assert_eq!(statuses, [200, 200, 200, 200, 200, 429, 429, 429]);
    let other = reqwest::Client::builder().local_address(std::net::IpAddr::from([127, 0, 0, 2])).build().unwrap();
    let r = other.get(d.url("/v1/log/sth")).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 200, "another client has its own bucket");
    let r = d.http.get(d.url("/v1/numbers/+442079460001")).bearer_auth(&acme).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 200, "a provider's reads count against its own limit");
}

/// A provider's extension checks every lookup against the log with its token: those reads count against the
/// provider's own limit, not the public limit of its address (here already spent); a token that is no provider's
/// is refused, not taken for an anonymous read.
#[tokio::test]
async fn a_providers_log_reads_count_against_its_own_limit_not_its_addresss() {
    let dir = tempfile::tempdir().unwrap();
    let env = [
        ("TINCAN_DIRECTORY_API__PUBLIC_RATE_LIMIT__BURST", "2"),
        ("TINCAN_DIRECTORY_API__PUBLIC_RATE_LIMIT__PER_SECOND", "0.01"),
    ];
    let d = Directory::start_with(dir.path(), &env).await;
    let acme = d.add_provider("acme", &["+44"]);
    put(&d, &acme, "+442079460001", "alice").await;
    let proof = "/v1/log/proof/inclusion?number=%2B442079460001";
    let statuses: Vec<u16> = {
        let mut s = Vec::new();
        for _ in 0..3 {
            s.push(d.http.get(d.url(proof)).send().await.unwrap().status().as_u16());
        }
        s
    };
    assert_eq!(statuses, [200, 200, 429], "the address's public bucket is spent");
    for path in ["/v1/log/sth", proof, "/v1/log/proof/consistency?from=1"].into_iter().cycle().take(12) {
        let r = d.http.get(d.url(path)).bearer_auth(&acme).send().await.unwrap();
        assert_eq!(r.status().as_u16(), 200, "{path} with the provider's token");
    }
    let r = d.http.get(d.url(proof)).bearer_auth("not-a-provider-token").send().await.unwrap();
    assert_eq!(r.status().as_u16(), 401, "a wrong token is refused");
    let r = d.http.get(d.url(proof)).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 429, "without a token the address's limit still holds");
}
