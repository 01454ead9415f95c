//! SMS pumping: the client address behind trusted proxies is the rightmost untrusted `X-Forwarded-For` hop
//! (IPv6 by /64), numbers spread over a prefix share its budget, a global SMS budget caps everything and raises
//! an alarm metric, and the country allowlist must be chosen.

use crate::harness::{Api, Ext};
use serde_json::{Value, json};

const BASE: &str = "server_name = \"hs.test\"\n[homeserver]\njwt_secret = \"pumping-secret-0123456789\"\n";

/// A code request for `phone` through our proxy (127.0.0.1) with this `X-Forwarded-For`.
async fn request(ext: &Ext, phone: &str, forwarded_for: &str) -> (u16, Value) {
    let r = ext
        .http
        .post(format!("{}/_tincan/client/v1/register/request", ext.url))
        .header("x-forwarded-for", forwarded_for)
        .json(&json!({"phone": phone, "client_secret": "pump", "send_attempt": 1}))
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

/// A pseudo-random sequence (the test must not depend on a seed it cannot print).
fn spread(i: u32) -> u32 {
    i.wrapping_mul(2_654_435_761) >> 8
}

fn statuses(answers: &[(u16, Value)]) -> Vec<u16> {
    answers.iter().map(|(s, _)| *s).collect()
}

#[tokio::test]
async fn random_forwarded_for_and_numbers_spread_over_a_prefix_are_refused_once_its_budget_is_spent() {
    let ext = Ext::start(&format!(
        "{BASE}[limits]\ntrusted_proxies = [\"127.0.0.1\"]\n\
         per_prefix = {{ burst = 10, refill = 10, period_secs = 3600 }}\n\
         per_ip = {{ burst = 1000, refill = 1000, period_secs = 3600 }}\n"
    ))
    .await
    .unwrap();
    // Every request from another (client-written) address, to a new number of +44 791…: only the prefix
    // budget sees them all.
    let mut answers = Vec::new();
    // (Only numbers valid in the UK plan: not every +44 791x range is allocated.)
    let valid = |p: &String| tincan_homeserver_ext::number::E164::parse(p).is_ok();
    let phones: Vec<String> = (0..)
        .map(|i: u32| format!("+44791{}{:06}", spread(i) % 10, spread(i) % 1_000_000))
        .filter(valid)
        .take(25)
        .collect();
    assert!(phones.iter().map(|p| &p[6..7]).collect::<std::collections::BTreeSet<_>>().len() > 2, "{phones:?}");
    for (i, phone) in (0..25u32).zip(&phones) {
        let r = spread(i);
        let xff = format!("{}.{}.{}.{}", 1 + r % 200, r >> 8 & 255, r >> 16 & 255, 1 + i);
        answers.push(request(&ext, phone, &xff).await);
    }
    let ok = answers.iter().filter(|(s, _)| *s == 200).count();
    assert_eq!(ok, 10, "SMS sent to one prefix: {:?}", statuses(&answers));
    assert!(answers[10..].iter().all(|(s, b)| *s == 429 && b["errcode"] == "M_LIMIT_EXCEEDED"), "{answers:?}");
    assert_eq!(ext.sms().len(), 10);
    // Another prefix still has its budget.
    let (s, b) = request(&ext, "+447929876543", "203.0.113.9").await;
    assert_eq!(s, 200, "{b}");
}

#[tokio::test]
async fn the_client_is_the_rightmost_untrusted_hop_and_ipv6_counts_by_64() {
    let ext = Ext::start(&format!(
        "{BASE}[limits]\ntrusted_proxies = [\"127.0.0.1\", \"10.0.0.0/8\"]\n\
         per_ip = {{ burst = 3, refill = 3, period_secs = 3600 }}\n"
    ))
    .await
    .unwrap();
    // The client writes a fresh leftmost address each time; our proxies append what they saw.
    let mut answers = Vec::new();
    for i in 0..5u32 {
        let xff = format!("{}.1.2.{i}, 198.51.100.7, 10.1.2.3", 1 + spread(i) % 200);
        answers.push(request(&ext, &format!("+4420794600{i:02}"), &xff).await);
    }
    assert_eq!(statuses(&answers), [200, 200, 200, 429, 429], "one client behind two proxies: {answers:?}");
    // An IPv6 client rotating through its /64.
    let mut answers = Vec::new();
    for i in 0..5u32 {
        let xff = format!("2001:db8:aa:bb:{:x}:{:x}::1", spread(i) & 0xffff, i);
        answers.push(request(&ext, &format!("+4420794601{i:02}"), &xff).await);
    }
    assert_eq!(statuses(&answers), [200, 200, 200, 429, 429], "addresses of one /64: {answers:?}");
}

#[tokio::test]
async fn an_untrusted_peer_cannot_choose_its_address() {
    let ext = Ext::start(&format!("{BASE}[limits]\nper_ip = {{ burst = 3, refill = 3, period_secs = 3600 }}\n"))
        .await
        .unwrap();
    let mut answers = Vec::new();
    for i in 0..5u32 {
        answers.push(request(&ext, &format!("+4420794602{i:02}"), &format!("198.51.100.{i}")).await);
    }
    assert_eq!(statuses(&answers), [200, 200, 200, 429, 429], "X-Forwarded-For from an untrusted peer: {answers:?}");
}

#[tokio::test]
async fn the_global_budget_refuses_and_raises_the_alarm() {
    let ext = Ext::start(&format!(
        "{BASE}[limits]\ntrusted_proxies = [\"127.0.0.1\"]\nglobal = {{ burst = 5, refill = 5, period_secs = 3600 }}\n"
    ))
    .await
    .unwrap();
    let metric = |text: &str, name: &str| -> f64 {
        let line =
            text.lines().find(|l| l.starts_with(&format!("{name} "))).unwrap_or_else(|| panic!("{name}:\n{text}"));
        line.rsplit(' ').next().unwrap().parse().unwrap()
    };
    let scrape = || async { ext.http.get(format!("{}/metrics", ext.url)).send().await.unwrap().text().await.unwrap() };
    assert_eq!(metric(&scrape().await, "tincan_ext_sms_global_budget_exhausted"), 0.0);
    let mut answers = Vec::new();
    for i in 0..8u32 {
        // Every number in another country and prefix, every client another address.
        let phone = [
            "+447911123400",
            "+4915112345678",
            "+33612345678",
            "+34612345678",
            "+393123456789",
            "+436641234567",
            "+41791234567",
            "+61412345678",
        ][i as usize];
        answers.push(request(&ext, phone, &format!("203.0.113.{i}")).await);
    }
    assert_eq!(statuses(&answers), [200, 200, 200, 200, 200, 429, 429, 429], "{answers:?}");
    let text = scrape().await;
    assert_eq!(metric(&text, "tincan_ext_sms_global_budget_exhausted"), 1.0, "{text}");
    assert_eq!(metric(&text, "tincan_ext_sms_sent_total"), 5.0, "{text}");
    assert_eq!(metric(&text, "tincan_ext_limit_refusals_total{scope=\"global\"}"), 3.0, "{text}");
}

#[test]
fn the_country_allowlist_must_be_chosen() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("ext.toml");
    let check = |limits: &str| {
        std::fs::write(
            &file,
            format!(
                "{BASE}[codes]\nsecret = \"test-only-code-secret-0123456789abcdef\"\n\
                 [sms]\nbackend = \"webhook\"\nwebhook_url = \"https://sms.example/send\"\n{limits}"
            ),
        )
        .unwrap();
        std::process::Command::new(env!("CARGO_BIN_EXE_tincan-ext"))
            .args(["--config", file.to_str().unwrap(), "config", "check"])
            .output()
            .unwrap()
    };
    let unset = check("");
    let err = String::from_utf8_lossy(&unset.stderr);
    assert!(!unset.status.success() && err.contains("limits.allowed_countries: choose"), "{err}");
    for chosen in ["[limits]\nallowed_countries = [\"GB\"]\n", "[limits]\nallowed_countries = [\"*\"]\n"] {
        let ok = check(chosen);
        assert!(ok.status.success(), "{chosen}: {}", String::from_utf8_lossy(&ok.stderr));
    }
}
