//! The portal against the real sign-up path: Synapse (JWT login) + `tincan-ext` (sign-up by SMS code, its dev
//! SMS sink) + the real `tincan-gateway` binary with `portal.ext_url` set. Headless Chromium (Debian's, driven
//! by playwright-core) signs in with a number and its code, redeems a voucher and sees the new balance, looks up
//! a price, with a screenshot of every page and an axe-core accessibility check of each; forged forms (a
//! changed number, a missing or wrong CSRF token, a revoked session) change nothing.
//!
//! `tincan-ext` is found through `TINCAN_TEST_EXT_BIN` (exported by `dev/test`) or next to the test executable;
//! without it, playwright-core/axe-core (`TINCAN_NODE_MODULES`) or `/usr/bin/chromium` the tests are skipped (under
//! CI they fail).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tincan_testkit::{ChildGuard, Synapse, in_ci};

use crate::harness::Gateway;

const JWT_SECRET: &str = "portal-test-jwt-secret-0123456789ab";
const EXT_BIN_ENV: &str = "TINCAN_TEST_EXT_BIN";

/// A running `tincan-ext` with the dev SMS sink, on Synapse's JWT login.
struct Ext {
    url: String,
    dir: tempfile::TempDir,
    _guard: ChildGuard,
}

impl Ext {
    fn sms_file(&self) -> PathBuf {
        self.dir.path().join("sms.jsonl")
    }

    /// The code of the newest SMS to `to`.
    fn code(&self, to: &str) -> String {
        let text = std::fs::read_to_string(self.sms_file()).unwrap_or_default();
        let msg: Value = text
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .rfind(|v| v["to"] == to)
            .unwrap_or_else(|| panic!("no SMS to {to}"));
        let body = msg["text"].as_str().unwrap_or_default().to_owned();
        body.split(|c: char| !c.is_ascii_digit()).find(|w| w.len() == 6).expect("a 6-digit code").to_owned()
    }
}

fn ext_binary() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os(EXT_BIN_ENV).filter(|p| !p.is_empty()) {
        return Some(PathBuf::from(p));
    }
    let exe = std::env::current_exe().ok()?;
    let candidate = exe.parent()?.parent()?.join("tincan-ext");
    candidate.exists().then_some(candidate)
}

/// Synapse, the extension and a gateway whose portal uses it; `None` (skipped) without the extension's binary.
async fn services(data: &Path) -> Option<(Synapse, Ext, Gateway)> {
    let Some(bin) = ext_binary() else {
        assert!(!in_ci(), "{EXT_BIN_ENV} must point at tincan-ext in CI");
        eprintln!("skipped: no tincan-ext binary (set {EXT_BIN_ENV} or `cargo build -p tincan-homeserver-ext`)");
        return None;
    };
    let hs = Synapse::builder()
        .config(json!({"jwt_config": {"enabled": true, "secret": JWT_SECRET, "algorithm": "HS256"}}))
        .start()
        .await
        .unwrap();
    let dir = tempfile::Builder::new().prefix("tincan-ext-").tempdir().unwrap();
    let port = tincan_testkit::ports::free_port();
    // The gateway asks on behalf of its users: the extension believes its X-Forwarded-For.
    let config = format!(
        "listen = \"127.0.0.1:{port}\"\nserver_name = \"{}\"\nhomeserver_url = \"{}\"\n\
         database_url = \"sqlite://{}?mode=rwc\"\n\
         [homeserver]\nbackend = \"jwt\"\njwt_secret = \"{JWT_SECRET}\"\n\
         [codes]\nsecret = \"test-only-code-secret-0123456789abcdef\"\n\
         [sms]\nbackend = \"dev\"\ndev_file = \"{}\"\n\
         [limits]\nallowed_countries = [\"*\"]\ntrusted_proxies = [\"127.0.0.1/32\"]\n",
        hs.server_name(),
        hs.url(),
        dir.path().join("ext.db").display(),
        dir.path().join("sms.jsonl").display(),
    );
    std::fs::write(dir.path().join("ext.toml"), config).unwrap();
    let mut cmd = Command::new(bin);
    cmd.arg("--config").arg(dir.path().join("ext.toml")).args(["serve", "--dev-sms"]).env("RUST_LOG", "info");
    let mut guard = ChildGuard::spawn_logged("tincan-ext", cmd, dir.path().join("ext.log")).unwrap();
    let url = format!("http://127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(60);
    while !reqwest::get(format!("{url}/health")).await.is_ok_and(|r| r.status().is_success()) {
        guard.ensure_running().unwrap();
        assert!(Instant::now() < deadline, "tincan-ext did not come up\n{}", guard.log_tail(40));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let ext = Ext { url, dir, _guard: guard };
    let env = [
        ("TINCAN_GATEWAY_HOMESERVER__URL", hs.url()),
        ("TINCAN_GATEWAY_HOMESERVER__SERVER_NAME", hs.server_name().to_owned()),
        ("TINCAN_GATEWAY_PORTAL__EXT_URL", ext.url.clone()),
        // Plain HTTP on loopback in the test.
        ("TINCAN_GATEWAY_PORTAL__COOKIE_SECURE", "false".to_owned()),
    ];
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let gw = Gateway::start(data, &env).await;
    let deck = data.join("deck.csv");
    std::fs::write(
        &deck,
        "prefix,description,connect_fee,per_minute,increments,per_sms\n\
         49,Germany,0,1.00,60/60,0.25\n\
         4930,\"Germany, Berlin\",0.10,0.50,30/6,0.20\n",
    )
    .unwrap();
    gw.cli_ok(&["rates", "import", "--plan", "default", deck.to_str().unwrap()]);
    Some((hs, ext, gw))
}

fn browser_ready() -> Option<String> {
    let modules = std::env::var("TINCAN_NODE_MODULES").unwrap_or_default();
    let ok = Path::new(&modules).join("playwright-core").exists()
        && Path::new(&modules).join("axe-core/axe.min.js").exists()
        && Path::new("/usr/bin/chromium").exists();
    if !ok {
        assert!(!in_ci(), "playwright-core, axe-core or chromium missing (dev/test installs them)");
        eprintln!("skipped: playwright-core/axe-core (TINCAN_NODE_MODULES) or /usr/bin/chromium missing; run dev/test");
        return None;
    }
    Some(modules)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_signs_in_by_sms_code_tops_up_and_looks_up_a_price_with_no_axe_violations() {
    let Some(modules) = browser_ready() else { return };
    let data = tempfile::tempdir().unwrap();
    let Some((_hs, ext, gw)) = services(data.path()).await else { return };
    let voucher = gw.cli_ok(&["vouchers", "create", "--amount", "10.00", "--count", "1"]);
    let phone = "+447911123401";
    let shots = PathBuf::from(concat!(env!("CARGO_TARGET_TMPDIR"), "/portal-screenshots"));
    let _ = std::fs::remove_dir_all(&shots);
    std::fs::create_dir_all(&shots).unwrap();

    let out = tokio::process::Command::new("node")
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/portal_browser.mjs"))
        .arg(format!("{}/portal", gw.base()))
        .args([phone, ext.sms_file().to_str().unwrap(), &voucher, shots.to_str().unwrap(), "+4930123456"])
        .env("TINCAN_NODE_MODULES", &modules)
        .output()
        .await
        .expect("node");
    let r: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|_| {
        panic!("{}\n{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
    });
    assert!(
        out.status.success(),
        "{r:#}\n{}\ngateway:\n{}",
        String::from_utf8_lossy(&out.stderr),
        gw.guard.log_tail(30)
    );

    assert!(r["wrongCode"].as_str().unwrap().contains("not right"), "{r:#}");
    assert_eq!(r["signedInAs"], format!("Signed in as {phone}."));
    assert_eq!(r["balanceBefore"], "0.00 EUR");
    assert_eq!(r["notice"], "Credited 10.00 EUR.");
    assert_eq!(r["balanceAfter"], "10.00 EUR", "the new balance is on the page");
    let history = r["history"].as_array().unwrap();
    assert_eq!(history.len(), 1, "{r:#}");
    assert!(history[0].as_str().unwrap().contains("voucher") && history[0].as_str().unwrap().contains("+10.00 EUR"));
    assert_eq!(r["again"]["balance"], "10.00 EUR", "the same code twice credits once: {r:#}");
    let voice = r["priceVoice"].as_str().unwrap();
    assert!(voice.contains("Germany, Berlin") && voice.contains("0.50 EUR a minute plus 0.10 EUR"), "{voice}");
    assert!(r["priceSms"].as_str().unwrap().contains("0.20 EUR a segment; your balance pays for 50"), "{r:#}");
    assert_eq!(r["afterSignOut"], "Sign in");

    assert!(gw.cli(&["ledger", "check"]).status.success());

    for (page, result) in r["axe"].as_object().unwrap() {
        assert_eq!(result["violations"], json!([]), "axe violations on {page}: {:#}", result["violations"]);
        let passes: Vec<&str> = result["passes"].as_array().unwrap().iter().filter_map(Value::as_str).collect();
        assert!(passes.contains(&"color-contrast"), "axe checked no contrast on {page}: {passes:?}");
        assert!(passes.contains(&"label"), "axe checked no form labels on {page}: {passes:?}");
    }
    assert_eq!(r["axe"].as_object().unwrap().len(), 6);
    for p in r["pages"].as_array().unwrap() {
        let file = p["file"].as_str().unwrap();
        assert!(std::fs::metadata(file).map(|m| m.len() > 1000).unwrap_or(false), "no screenshot {file}");
    }
    assert!(shots.join("5-topped-up.png").exists());
}

fn as_refs(v: &[(String, String)]) -> Vec<(&str, &str)> {
    v.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect()
}

/// The hidden fields of a page's forms, by name.
fn hidden(html: &str) -> HashMap<String, String> {
    html.split("<input type=\"hidden\" ")
        .skip(1)
        .filter_map(|s| {
            let name = s.strip_prefix("name=\"")?.split('"').next()?;
            let value = s.split("value=\"").nth(1)?.split('"').next()?;
            Some((name.to_owned(), value.to_owned()))
        })
        .collect()
}

async fn post(
    http: &reqwest::Client,
    url: &str,
    cookie: Option<&str>,
    form: &[(&str, &str)],
) -> (u16, String, Option<String>) {
    let body: String = url::form_urlencoded::Serializer::new(String::new()).extend_pairs(form).finish();
    let mut req = http.post(url).header("content-type", "application/x-www-form-urlencoded").body(body);
    if let Some(c) = cookie {
        req = req.header("cookie", format!("tincan_portal={c}"));
    }
    let r = req.send().await.unwrap();
    let cookie = r
        .headers()
        .get("set-cookie")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("tincan_portal="))
        .map(|v| v.split(';').next().unwrap_or_default().to_owned());
    (r.status().as_u16(), r.text().await.unwrap(), cookie)
}

async fn get(http: &reqwest::Client, url: &str, cookie: &str) -> (u16, String) {
    let r = http.get(url).header("cookie", format!("tincan_portal={cookie}")).send().await.unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_portal_forms_change_nothing() {
    let data = tempfile::tempdir().unwrap();
    let Some((_hs, ext, gw)) = services(data.path()).await else { return };
    let voucher = gw.cli_ok(&["vouchers", "create", "--amount", "5.00", "--count", "1"]);
    let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let base = format!("{}/portal", gw.base());
    let phone = "+447911123402";

    let (status, page, _) = post(&http, &format!("{base}/number"), None, &[("phone", "not a number")]).await;
    assert_eq!(status, 400);
    assert!(page.contains("international form"), "{page}");
    let (status, page, _) = post(&http, &format!("{base}/number"), None, &[("phone", phone)]).await;
    assert_eq!(status, 200, "{page}");
    let f = hidden(&page);
    assert_eq!(f["phone"], phone);
    let code = ext.code(phone);
    let fields = |phone: &str, sig: &str, code: &str| {
        vec![
            ("phone".to_owned(), phone.to_owned()),
            ("sid".to_owned(), f["sid"].clone()),
            ("secret".to_owned(), f["secret"].clone()),
            ("sig".to_owned(), sig.to_owned()),
            ("code".to_owned(), code.to_owned()),
        ]
    };

    // Another number in the signed fields, or a changed signature: start again, no session.
    let forged = fields("+447911123499", &f["sig"], &code);
    let (status, page, cookie) = post(&http, &format!("{base}/code"), None, &as_refs(&forged)).await;
    assert_eq!((status, cookie), (400, None), "{page}");
    assert!(page.contains("start again"), "{page}");
    let mut sig = f["sig"].clone();
    sig.replace_range(0..1, if sig.starts_with('0') { "1" } else { "0" });
    let (status, _, cookie) = post(&http, &format!("{base}/code"), None, &as_refs(&fields(phone, &sig, &code))).await;
    assert_eq!((status, cookie), (400, None));

    // The real form signs in: 303 to the portal with the session cookie.
    let (status, page, cookie) =
        post(&http, &format!("{base}/code"), None, &as_refs(&fields(phone, &f["sig"], &code))).await;
    assert_eq!(status, 303, "{page}");
    let cookie = cookie.expect("a session cookie");
    let (status, page) = get(&http, &base, &cookie).await;
    assert_eq!(status, 200);
    assert!(page.contains("<dd id=\"balance\">0.00 EUR</dd>"), "{page}");
    let csrf = hidden(&page)["csrf"].clone();

    // A top-up without the page's CSRF token, with a wrong one, or without the session: refused, nothing credited.
    let (status, _, _) = post(&http, &format!("{base}/topup"), Some(&cookie), &[("code", &voucher)]).await;
    assert_eq!(status, 403);
    let (status, _, _) =
        post(&http, &format!("{base}/topup"), Some(&cookie), &[("code", &voucher), ("csrf", "00")]).await;
    assert_eq!(status, 403);
    let (status, _, _) = post(&http, &format!("{base}/topup"), None, &[("code", &voucher), ("csrf", &csrf)]).await;
    assert_eq!(status, 401);
    let (_, page) = get(&http, &base, &cookie).await;
    assert!(page.contains("<dd id=\"balance\">0.00 EUR</dd>"), "{page}");
    // A wrong code: the page says so.
    let (status, page, _) =
        post(&http, &format!("{base}/topup"), Some(&cookie), &[("code", "0000-0000-0000-0000"), ("csrf", &csrf)]).await;
    assert_eq!(status, 200);
    assert!(page.contains("There is no voucher with this code"), "{page}");
    // The real form credits.
    let (_, page, _) =
        post(&http, &format!("{base}/topup"), Some(&cookie), &[("code", &voucher), ("csrf", &csrf)]).await;
    assert!(page.contains("<dd id=\"balance\">5.00 EUR</dd>"), "{page}");
    let (_, page) = get(&http, &format!("{base}/price?number=%2B81312345678"), &cookie).await;
    assert!(page.contains("not offered to this number"), "{page}");
    let (_, page) = get(&http, &format!("{base}/price?number=%3Cscript%3E"), &cookie).await;
    assert!(page.contains("international form") && !page.contains("<script>"), "{page}");

    // Signing out revokes the session on the server, not only in the browser.
    let (status, _, gone) = post(&http, &format!("{base}/signout"), Some(&cookie), &[("csrf", &csrf)]).await;
    assert_eq!((status, gone.as_deref()), (303, Some("")));
    let (status, page) = get(&http, &base, &cookie).await;
    assert_eq!(status, 200);
    assert!(page.contains("Your phone number") && !page.contains("balance"), "{page}");
    let (status, _, _) =
        post(&http, &format!("{base}/topup"), Some(&cookie), &[("code", &voucher), ("csrf", &csrf)]).await;
    assert_eq!(status, 401);
    assert!(gw.cli(&["ledger", "check"]).status.success());

    // Without portal.ext_url there is no portal.
    let other = tempfile::tempdir().unwrap();
    let plain = Gateway::start(other.path(), &[]).await;
    assert_eq!(reqwest::get(format!("{}/portal", plain.base())).await.unwrap().status(), 404);
}

/// Signs `phone` in through the portal's forms (no browser); the session cookie and the account page.
async fn sign_in(http: &reqwest::Client, base: &str, ext: &Ext, phone: &str) -> (String, String) {
    let (status, page, _) = post(http, &format!("{base}/number"), None, &[("phone", phone)]).await;
    assert_eq!(status, 200, "{page}");
    let f = hidden(&page);
    let code = ext.code(phone);
    let form = [
        ("phone", phone),
        ("sid", f["sid"].as_str()),
        ("secret", f["secret"].as_str()),
        ("sig", f["sig"].as_str()),
        ("code", code.as_str()),
    ];
    let (status, page, cookie) = post(http, &format!("{base}/code"), None, &form).await;
    assert_eq!(status, 303, "{page}");
    let cookie = cookie.expect("a session cookie");
    let (status, page) = get(http, base, &cookie).await;
    assert_eq!(status, 200);
    (cookie, page)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_portal_lists_the_users_last_calls_without_the_carrier_or_its_cost() {
    use tincan_gateway::storage::{CallRecord, CallResult};
    let data = tempfile::tempdir().unwrap();
    let Some((_hs, ext, gw)) = services(data.path()).await else { return };
    let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let base = format!("{}/portal", gw.base());
    let phone = "+447911123403";
    let (cookie, page) = sign_in(&http, &base, &ext, phone).await;
    assert!(page.contains("No calls yet."), "{page}");

    // Two attempts of one call, as the call router writes them (the gateway is running: SQLite takes both).
    let url = format!("sqlite://{}", data.path().join("gateway.sqlite3").display());
    let storage = tincan_gateway::storage::open(&url, Arc::new(tincan_common::clock::SystemClock)).await.unwrap();
    let mut tx = storage.begin().await.unwrap();
    let accounts = tx.accounts().list(None, 100).await.unwrap();
    let account = accounts.iter().find(|a| a.number.as_deref() == Some(phone)).expect("the portal made the account");
    let failed = CallRecord {
        id: 0,
        call_id: "portal-1".into(),
        attempt: 1,
        account_id: account.id,
        hold_seq: Some(1),
        destination: "+4930123456".into(),
        carrier: Some("secret-trunk".into()),
        result: CallResult::Failed,
        sip_status: 503,
        reason: "Service Unavailable".into(),
        q850_cause: Some(41),
        started_at_ms: 1_767_225_600_000, // 2026-01-01 00:00 UTC
        answered_at_ms: None,
        ended_at_ms: 1_767_225_601_000,
        billed_seconds: None,
        price: None,
        cost: None,
        currency: account.currency,
    };
    let answered = CallRecord {
        attempt: 2,
        carrier: Some("other-trunk".into()),
        result: CallResult::Answered,
        sip_status: 200,
        reason: "OK".into(),
        q850_cause: Some(16),
        started_at_ms: 1_767_225_660_000, // 00:01
        answered_at_ms: Some(1_767_225_662_000),
        ended_at_ms: 1_767_225_722_000,
        billed_seconds: Some(60),
        price: Some("0.50".parse().unwrap()),
        cost: Some("0.0123".parse().unwrap()),
        ..failed.clone()
    };
    tx.call_records().add(&failed).await.unwrap();
    tx.call_records().add(&answered).await.unwrap();
    tx.commit().await.unwrap();

    let (status, page) = get(&http, &base, &cookie).await;
    assert_eq!(status, 200);
    let table = &page[page.find("<table id=\"calls\">").expect("a calls table")..];
    let rows: Vec<&str> = table.split("<tr>").skip(2).collect();
    assert_eq!(rows.len(), 2, "{table}");
    assert!(rows[0].starts_with("<td>2026-01-01 00:01</td><td>+4930123456</td><td>answered (200 OK)</td>"), "{table}");
    assert!(rows[0].contains("<td class=\"num\">60</td><td class=\"num\">0.50 EUR</td>"), "{table}");
    assert!(rows[1].starts_with("<td>2026-01-01 00:00</td><td>+4930123456</td><td>failed (503 Service Unavailable)"));
    for secret in ["secret-trunk", "other-trunk", "0.0123"] {
        assert!(!page.contains(secret), "the page shows the provider's {secret}");
    }
}
