//! `balance`, `topup`, `history` and `rates` through the real binary against a real `tincan-gateway` whose users
//! sign in through the chain's Synapse (an OpenID token exchanged for the gateway's API token): a number signs up
//! with `register`/`verify`, starts at 0.00, a wrong voucher is refused with the gateway's code and changes
//! nothing, the right one credits once, the history shows it, and the price of a number is the deck's with what
//! the balance pays for.
//!
//! `tincan-gateway` is found through `TINCAN_TEST_GATEWAY_BIN` (exported by `dev/test`), else next to the test
//! executable; without it the test is skipped (under CI it fails).

use crate::acceptance::{sign_up, tincan};
use crate::chain::Chain;
use crate::cli::{err, json, out};
use anyhow::{Context, bail};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};
use tincan_testkit::directory::sibling_binary;
use tincan_testkit::{ChildGuard, Synapse, in_ci};

const GATEWAY_BIN_ENV: &str = "TINCAN_TEST_GATEWAY_BIN";
const NUM: &str = "+442079460301";
const TAMPERED: &str = "+442079460399";

/// How `tincan-gateway` is run: its binary, data dir and the homeserver it trusts for its users.
struct GatewayCli {
    bin: PathBuf,
    dir: tempfile::TempDir,
    hs_url: String,
    server_name: String,
}

impl GatewayCli {
    fn command(&self) -> Command {
        let mut cmd = Command::new(&self.bin);
        cmd.arg("--data-dir")
            .arg(self.dir.path())
            .env("TINCAN_GATEWAY_HOMESERVER__URL", &self.hs_url)
            .env("TINCAN_GATEWAY_HOMESERVER__SERVER_NAME", &self.server_name)
            .env_remove(GATEWAY_BIN_ENV);
        cmd
    }

    /// `tincan-gateway --data-dir … ARGS…`: its stdout.
    fn run(&self, args: &[&str]) -> anyhow::Result<String> {
        let o = self.command().args(args).output().context("tincan-gateway runs")?;
        if !o.status.success() {
            bail!("tincan-gateway {args:?}: {}", err(&o));
        }
        Ok(out(&o))
    }
}

/// A running `tincan-gateway serve` with a rate deck.
struct GatewayProc {
    url: String,
    cli: GatewayCli,
    _guard: ChildGuard,
}

impl GatewayProc {
    async fn start(hs: &Synapse) -> anyhow::Result<Option<GatewayProc>> {
        let Some(bin) = sibling_binary(GATEWAY_BIN_ENV, "tincan-gateway") else {
            assert!(!in_ci(), "{GATEWAY_BIN_ENV} must point at tincan-gateway in CI");
            eprintln!("skipped: no tincan-gateway binary (set {GATEWAY_BIN_ENV} or `cargo build -p tincan-gateway`)");
            return Ok(None);
        };
        let dir = tempfile::Builder::new().prefix("tincan-gateway-").tempdir()?;
        let cli = GatewayCli { bin, dir, hs_url: hs.url(), server_name: hs.server_name().to_owned() };
        let deck = cli.dir.path().join("deck.csv");
        std::fs::write(
            &deck,
            "prefix,description,connect_fee,per_minute,increments,per_sms\n\
             49,Germany,0,1.00,60/60,0.25\n\
             4930,\"Germany, Berlin\",0.10,0.50,30/6,0.20\n",
        )?;
        cli.run(&["rates", "import", "--plan", "default", deck.to_str().context("UTF-8 path")?])?;
        let port = tincan_testkit::ports::free_port();
        let url = format!("http://127.0.0.1:{port}");
        let mut cmd = cli.command();
        cmd.args(["serve", "--api", &format!("127.0.0.1:{port}")]).env("RUST_LOG", "info");
        let mut guard = ChildGuard::spawn_logged("tincan-gateway", cmd, cli.dir.path().join("serve.log"))?;
        let deadline = Instant::now() + Duration::from_secs(30);
        while !reqwest::get(format!("{url}/healthz")).await.is_ok_and(|r| r.status().is_success()) {
            if let Err(e) = guard.ensure_running() {
                bail!("{e}\n{}", guard.log_tail(40));
            }
            if Instant::now() > deadline {
                bail!("tincan-gateway did not come up\n{}", guard.log_tail(40));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(Some(GatewayProc { url, cli, _guard: guard }))
    }
}

/// `tincan … --gateway URL ARGS…`.
fn money(chain: &Chain, gw: &GatewayProc, data: &Path, args: &[&str]) -> Output {
    let mut all = vec!["--gateway", gw.url.as_str()];
    all.extend_from_slice(args);
    tincan(chain, data, &all)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn balance_topup_history_and_rates_through_the_gateway() -> anyhow::Result<()> {
    let Some(chain) = Chain::start(TAMPERED).await? else { return Ok(()) };
    let Some(gw) = GatewayProc::start(&chain.hs).await? else { return Ok(()) };
    let code = gw.cli.run(&["vouchers", "create", "--amount", "10.00", "--count", "1"])?.trim().to_owned();
    let d = tempfile::tempdir()?;
    let d = d.path();
    sign_up(&chain, d, NUM);

    // Without a gateway: a typed error, no network.
    let o = tincan(&chain, d, &["--json", "balance"]);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(json(&o)["error"]["code"], "no_gateway", "{}", out(&o));

    // First use creates the account, empty.
    let o = money(&chain, &gw, d, &["--json", "balance"]);
    assert!(o.status.success(), "{}", err(&o));
    let b = json(&o);
    assert_eq!(
        (b["balance"].as_str(), b["available"].as_str(), b["currency"].as_str()),
        (Some("0.00"), Some("0.00"), Some("EUR"))
    );
    assert!(b["user_id"].as_str().unwrap().ends_with(&format!(":{}", chain.hs.server_name())), "{b}");

    // A code that does not exist: the gateway's code, nothing credited.
    let o = money(&chain, &gw, d, &["--json", "topup", "0000-0000-0000-0000"]);
    assert_eq!(o.status.code(), Some(1));
    let e = json(&o);
    assert_eq!(
        (e["error"]["code"].as_str(), e["error"]["gateway_code"].as_str()),
        (Some("gateway_refused"), Some("voucher_unknown")),
        "{e}"
    );
    assert_eq!(e["error"]["status"], 404);
    let o = money(&chain, &gw, d, &["topup", "0000-0000-0000-0000"]);
    assert!(err(&o).contains("voucher_unknown"), "{}", err(&o));

    // The real code, typed sloppily (lower case): credited once; again, the same answer and no second credit.
    let o = money(&chain, &gw, d, &["topup", &code.to_lowercase()]);
    assert!(o.status.success(), "{}", err(&o));
    assert_eq!(out(&o).trim(), "Credited 10.00. Balance now 10.00.");
    let o = money(&chain, &gw, d, &["--json", "topup", &code]);
    assert_eq!(json(&o)["balance"], "10.00", "{}", err(&o));
    let o = money(&chain, &gw, d, &["balance"]);
    assert!(o.status.success(), "{}", err(&o));
    assert_eq!(
        out(&o).trim(),
        "Balance 10.00 EUR: 10.00 EUR available, 0.00 EUR held for calls and messages in progress"
    );

    // History: the one voucher credit, newest first, no next page.
    let o = money(&chain, &gw, d, &["--json", "history"]);
    assert!(o.status.success(), "{}", err(&o));
    let h = json(&o);
    let items = h["items"].as_array().expect("items");
    assert_eq!(items.len(), 1, "{h}");
    assert_eq!((items[0]["kind"].as_str(), items[0]["amount"].as_str()), (Some("voucher"), Some("10.00")));
    assert!(h.get("next").is_none(), "{h}");
    let o = money(&chain, &gw, d, &["history"]);
    let line = out(&o);
    assert!(line.contains("+10.00  voucher") && line.contains(" UTC"), "{line}");
    let o = money(&chain, &gw, d, &["history", "--limit", "0"]);
    assert_eq!(o.status.code(), Some(2), "clap refuses a limit of 0: {}", err(&o));

    // Prices: the longest prefix wins, and the balance's worth in time (10.00 at 1.00 a minute, 60/60: 10 min).
    let o = money(&chain, &gw, d, &["--json", "rates", "+4940123456"]);
    assert!(o.status.success(), "{}", err(&o));
    let p = json(&o);
    assert_eq!((p["price"]["prefix"].as_str(), p["price"]["per_minute"].as_str()), (Some("+49"), Some("1.00")), "{p}");
    assert_eq!(p["price"]["max_seconds"], 600, "{p}");
    let o = money(&chain, &gw, d, &["rates", "+4930123456"]);
    assert!(o.status.success(), "{}", err(&o));
    assert!(
        out(&o).starts_with(
            "+4930123456 (Germany, Berlin, prefix +4930): 0.50 EUR a minute plus 0.10 EUR when answered, billed 30/6."
        ),
        "{}",
        out(&o)
    );
    let o = money(&chain, &gw, d, &["--json", "rates", "--sms", "+4940123456"]);
    let p = json(&o);
    assert_eq!(
        (p["price"]["per_segment"].as_str(), p["price"]["max_segments"].as_u64()),
        (Some("0.25"), Some(40)),
        "{p}"
    );
    // A number the deck does not price, and one that is not a number (refused before any request).
    let o = money(&chain, &gw, d, &["--json", "rates", "+81312345678"]);
    assert_eq!(json(&o)["error"]["gateway_code"], "no_rate", "{}", out(&o));
    let o = money(&chain, &gw, d, &["--json", "rates", "12345"]);
    assert_eq!(json(&o)["error"]["code"], "invalid_number", "{}", out(&o));

    // A gateway that is not there: its own code.
    let o = tincan(&chain, d, &["--gateway", "http://127.0.0.1:9", "--json", "balance"]);
    assert_eq!(json(&o)["error"]["code"], "gateway_unreachable", "{}", out(&o));
    Ok(())
}
