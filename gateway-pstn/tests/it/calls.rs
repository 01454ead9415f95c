//! Calls through the real `tincan-gateway` binary: sipp plays the SIP bridge (the caller) and the carriers'
//! trunks; the ledger is the gateway's own SQLite database, read back through the provider API.

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::Value;
use tincan_testkit::ChildGuard;
use tincan_testkit::ports::free_addr;
use tincan_testkit::sip::{Scenario, finished};

use crate::harness::Gateway;

const CALLER_HANGS_UP: &str = include_str!("../scenarios/caller_hangs_up.xml");
const CALLER_IS_CUT: &str = include_str!("../scenarios/caller_is_cut.xml");
const CALLER_REFUSED: &str = include_str!("../scenarios/caller_refused.xml");
const CARRIER_ANSWERS: &str = include_str!("../scenarios/carrier_answers.xml");
const CARRIER_FAILS: &str = include_str!("../scenarios/carrier_fails.xml");
const CARRIER_NO_ANSWER: &str = include_str!("../scenarios/carrier_no_answer.xml");
const CALLER_CANCELS: &str = include_str!("../scenarios/caller_cancels.xml");

/// The customer's deck: Germany at 0.60 a minute, billed per second (0.01 a second); Germany mobile with a
/// connect fee in 60/60.
const DECK: &str = "prefix,description,connect_fee,per_minute,increments,per_sms\n\
                    49,Germany,0,0.60,1/1,\n\
                    49151,Germany mobile,0.05,1.20,60/60,\n";

const NUMBER: &str = "+4930123456";
const MOBILE: &str = "+4915112345678";

/// A carrier: its name, its cost per minute (the order of the routes) and where its sipp trunk listens.
struct Trunk {
    name: &'static str,
    per_minute: &'static str,
    addr: SocketAddr,
    /// More settings of its `[calls.trunks.NAME]` table (TOML lines).
    settings: &'static str,
    /// Its most concurrent calls (the carrier's `--max-concurrent`).
    max_concurrent: u32,
}

fn trunk(name: &'static str, per_minute: &'static str) -> Trunk {
    Trunk { name, per_minute, addr: free_addr(), settings: "", max_concurrent: 10 }
}

/// The gateway with calls on, an account with `credit`, and an operator token.
struct Rig {
    gw: Gateway,
    sip: SocketAddr,
    account: String,
    token: String,
    _dir: tempfile::TempDir,
}

impl Rig {
    async fn start(trunks: &[&Trunk], credit: &str, slice_secs: u32) -> Rig {
        Self::start_with_bridge(trunks, credit, slice_secs, None).await
    }

    async fn start_with_bridge(trunks: &[&Trunk], credit: &str, slice_secs: u32, bridge: Option<SocketAddr>) -> Rig {
        Self::start_with(trunks, credit, slice_secs, bridge, "").await
    }

    /// With extra `[calls]` settings (TOML lines).
    async fn start_with(
        trunks: &[&Trunk],
        credit: &str,
        slice_secs: u32,
        bridge: Option<SocketAddr>,
        extra: &str,
    ) -> Rig {
        Self::start_with_env(trunks, credit, slice_secs, bridge, extra, Vec::new()).await
    }

    /// With extra `[calls]` settings and environment variables for the gateway.
    async fn start_with_env(
        trunks: &[&Trunk],
        credit: &str,
        slice_secs: u32,
        bridge: Option<SocketAddr>,
        extra: &str,
        env: Vec<(String, String)>,
    ) -> Rig {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path();
        let sip = free_addr();
        let mut config = format!(
            "[calls]\nlisten_udp = \"{sip}\"\ntrusted_peers = [\"127.0.0.1\"]\nslice_secs = {slice_secs}\n\
             extend_before_secs = {}\ninvite_timeout_ms = 2000\n",
            slice_secs.saturating_sub(1).min(10)
        );
        config.push_str(extra);
        for t in trunks {
            config.push_str(&format!("[calls.trunks.{}]\naddress = \"{}\"\n{}", t.name, t.addr, t.settings));
        }
        if let Some(b) = bridge {
            config.push_str(&format!("[calls.bridge]\naddress = \"{b}\"\n"));
        }
        let config_path = data.join("gateway.toml");
        std::fs::write(&config_path, config).unwrap();
        let deck = data.join("deck.csv");
        std::fs::write(&deck, DECK).unwrap();
        // The operator's commands use the same database (the rest of `env` is for the server, with its config).
        let cli_env: Vec<(&str, &str)> = env
            .iter()
            .filter(|(k, _)| k.starts_with("TINCAN_GATEWAY_DATABASE__"))
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let cli = |args: &[&str]| {
            let out = crate::harness::cli(data, args, &cli_env);
            assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
            String::from_utf8(out.stdout).unwrap().trim().to_owned()
        };
        cli(&["rates", "import", deck.to_str().unwrap()]);
        for (i, t) in trunks.iter().enumerate() {
            let costs = data.join(format!("{}.csv", t.name));
            std::fs::write(
                &costs,
                format!(
                    "prefix,description,connect_fee,per_minute,increments,per_sms\n49,DE,0,{},1/1,\n",
                    t.per_minute
                ),
            )
            .unwrap();
            let max = t.max_concurrent.to_string();
            cli(&["carriers", "add", t.name, "--kind", "sip", "--priority", &i.to_string(), "--max-concurrent", &max]);
            cli(&["carriers", "import", t.name, costs.to_str().unwrap()]);
        }
        let account = cli(&["accounts", "create", "--business", "Caller Ltd"]);
        cli(&["accounts", "adjust", &account, credit, "--memo", "test credit"]);
        let token = cli(&["tokens", "add", "--scope", "operator", "ops"]);
        let api = free_addr();
        let gw = Gateway::start_with_args(data, api, env, &[std::ffi::OsStr::new("--config"), config_path.as_os_str()])
            .await;
        Rig { gw, sip, account, token, _dir: dir }
    }

    async fn get(&self, path: &str) -> Value {
        let r = reqwest::Client::new()
            .get(format!("{}{path}", self.gw.base()))
            .bearer_auth(&self.token)
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "{path}: {}", r.status());
        r.json().await.unwrap()
    }

    async fn account(&self) -> Value {
        self.get(&format!("/v1/accounts/{}", self.account)).await
    }

    async fn cdrs(&self) -> Vec<Value> {
        self.get(&format!("/v1/accounts/{}/cdrs", self.account)).await["items"].as_array().unwrap().clone()
    }

    /// The account's call records through the API, once at least `n` are there (or after 10 s).
    async fn records(&self, n: usize) -> Vec<Value> {
        self.records_within(n, Duration::from_secs(10)).await
    }

    /// [`records`](Self::records), waiting up to `within`.
    async fn records_within(&self, n: usize, within: Duration) -> Vec<Value> {
        let deadline = Instant::now() + within;
        loop {
            let items =
                self.get(&format!("/v1/accounts/{}/calls", self.account)).await["items"].as_array().unwrap().clone();
            if items.len() >= n || Instant::now() > deadline {
                return items;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The account once it holds nothing (or after 10 s): a call's record is stored before its hold is released,
    /// so the release may commit just after the record can be read.
    async fn released(&self) -> Value {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let acct = self.account().await;
            if amount(&acct["held"]) == "0.00" || Instant::now() > deadline {
                return acct;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Kills the gateway (SIGKILL) and starts it again on the same port, data and arguments.
    async fn crash_and_restart(self) -> Rig {
        let Rig { gw, sip, account, token, _dir } = self;
        let gw = gw.crash_and_restart().await;
        Rig { gw, sip, account, token, _dir }
    }

    /// The CDRs once `n` are written: the gateway settles after both legs' BYE transactions, which may end
    /// after sipp has already exited.
    async fn settled(&self, n: usize) -> Vec<Value> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let cdrs = self.cdrs().await;
            if cdrs.len() >= n || Instant::now() > deadline {
                return cdrs;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Runs the caller scenario to `number` (sipp exits 0 only if the scenario went as written).
    async fn call(&self, scenario: &Scenario, number: &str, talk_ms: u32) -> anyhow::Result<String> {
        self.call_from(free_addr(), scenario, number, talk_ms).await
    }

    /// [`Rig::call`] from a chosen address (a carrier's trunk).
    async fn call_from(
        &self,
        local: SocketAddr,
        scenario: &Scenario,
        number: &str,
        talk_ms: u32,
    ) -> anyhow::Result<String> {
        let mut cmd = scenario.command(self.sip, local, 1);
        cmd.args(["-key", "number", number, "-key", "account", &self.account, "-d", &talk_ms.to_string()]);
        scenario.run(cmd).await
    }

    fn log(&self) -> String {
        self.gw.guard.log_tail(60)
    }
}

/// A sipp trunk running `xml` for one call.
fn carrier(t: &Trunk, name: &str, xml: &str) -> (Scenario, ChildGuard) {
    carrier_for(t, name, xml, 1)
}

/// A sipp trunk running `xml` for `calls` calls.
fn carrier_for(t: &Trunk, name: &str, xml: &str, calls: u32) -> (Scenario, ChildGuard) {
    let s = Scenario::new(name, xml).unwrap();
    let mut cmd = s.uas_command(t.addr);
    cmd.args(["-m", &calls.to_string(), "-trace_msg"]);
    let g = s.spawn(cmd, name).unwrap();
    (s, g)
}

/// What a sipp peer's message log holds (with `-trace_msg`).
fn messages(dir: &Path) -> String {
    tincan_testkit::sip::traced_messages(dir)
}

/// Whether a sipp trunk's message log shows an INVITE it received.
fn got_invite(dir: &Path) -> bool {
    messages(dir).contains("INVITE sip:")
}

fn amount(v: &Value) -> String {
    v.as_str().unwrap_or_else(|| panic!("not an amount: {v}")).to_owned()
}

#[tokio::test]
async fn a_call_completes_and_is_billed_exactly() {
    let a = trunk("cheap", "0.004");
    let rig = Rig::start(&[&a], "10.00", 2).await;
    let (_s, trunk_a) = carrier(&a, "trunk-a", CARRIER_ANSWERS);
    let caller = Scenario::new("caller", CALLER_HANGS_UP).unwrap();
    // 4.2 s of talk with 2 s slices: the hold is extended twice or more while the call runs.
    let started = Instant::now();
    rig.call(&caller, NUMBER, 4200).await.unwrap_or_else(|e| panic!("{e}\n{}", rig.log()));
    assert!(started.elapsed() >= Duration::from_millis(4200));
    assert!(finished(trunk_a, Duration::from_secs(10)).await, "the carrier saw INVITE, ACK and BYE");
    // Billed per second at 0.01: 4 s (4.2 s rounded) = 0.04 from 10.00.
    let cdrs = rig.settled(1).await;
    assert_eq!(cdrs.len(), 1, "{cdrs:?}\n{}", rig.log());
    assert_eq!(cdrs[0]["units"], 4, "{:?}\n{}", cdrs[0], rig.log());
    assert_eq!(cdrs[0]["carrier"], "cheap");
    assert_eq!(amount(&cdrs[0]["charged"]), "0.04");
    let acct = rig.account().await;
    assert_eq!(amount(&acct["balance"]), "9.96");
    assert_eq!(amount(&acct["held"]), "0.00");
}

#[tokio::test]
async fn a_call_with_a_connect_fee_is_billed_in_whole_increments() {
    let a = trunk("cheap", "0.004");
    let rig = Rig::start(&[&a], "10.00", 60).await;
    let (_s, trunk_a) = carrier(&a, "trunk-a", CARRIER_ANSWERS);
    let caller = Scenario::new("caller", CALLER_HANGS_UP).unwrap();
    rig.call(&caller, MOBILE, 1500).await.unwrap_or_else(|e| panic!("{e}\n{}", rig.log()));
    assert!(finished(trunk_a, Duration::from_secs(10)).await);
    // 2 s in 60/60 at 1.20 a minute plus 0.05: one whole minute, 1.25.
    let cdrs = rig.settled(1).await;
    assert_eq!(amount(&cdrs[0]["charged"]), "1.25", "{cdrs:?}");
    assert_eq!(amount(&rig.account().await["balance"]), "8.75");
}

#[tokio::test]
async fn the_first_carrier_answers_503_and_the_call_goes_to_the_second() {
    let (a, b) = (trunk("cheap", "0.004"), trunk("dear", "0.009"));
    let rig = Rig::start(&[&a, &b], "10.00", 60).await;
    let (_sa, trunk_a) = carrier(&a, "trunk-a", &CARRIER_FAILS.replace("CODE", "503"));
    let (_sb, trunk_b) = carrier(&b, "trunk-b", CARRIER_ANSWERS);
    let caller = Scenario::new("caller", CALLER_HANGS_UP).unwrap();
    rig.call(&caller, NUMBER, 1000).await.unwrap_or_else(|e| panic!("{e}\n{}", rig.log()));
    assert!(finished(trunk_a, Duration::from_secs(10)).await, "the cheap carrier was tried first");
    assert!(finished(trunk_b, Duration::from_secs(10)).await, "the dear one carried the call");
    let cdrs = rig.settled(1).await;
    assert_eq!(cdrs.len(), 1);
    assert_eq!(cdrs[0]["carrier"], "dear");
    assert_eq!(amount(&cdrs[0]["charged"]), "0.01");
}

#[tokio::test]
async fn a_486_is_final_and_not_retried() {
    let (a, b) = (trunk("cheap", "0.004"), trunk("dear", "0.009"));
    let rig = Rig::start(&[&a, &b], "10.00", 60).await;
    let (_sa, trunk_a) = carrier(&a, "trunk-a", &CARRIER_FAILS.replace("CODE", "486"));
    let (sb, _trunk_b) = carrier(&b, "trunk-b", CARRIER_ANSWERS);
    let caller = Scenario::new("caller", &CALLER_REFUSED.replace("EXPECTED", "486")).unwrap();
    rig.call(&caller, NUMBER, 0).await.unwrap_or_else(|e| panic!("{e}\n{}", rig.log()));
    assert!(finished(trunk_a, Duration::from_secs(10)).await);
    // Give a wrong failover the time to happen before looking.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!got_invite(sb.dir()), "busy is the called party's answer: no second carrier");
    assert!(rig.cdrs().await.is_empty());
    let acct = rig.account().await;
    assert_eq!(amount(&acct["balance"]), "10.00");
    assert_eq!(amount(&acct["held"]), "0.00", "the hold was released");
}

#[tokio::test]
async fn a_call_is_cut_when_credit_runs_out_and_the_balance_ends_at_zero() {
    let a = trunk("cheap", "0.004");
    // 0.05 at 0.01 a second pays 5 s; 2 s slices, so the call runs on extensions until nothing is left.
    let rig = Rig::start(&[&a], "0.05", 2).await;
    let (_s, trunk_a) = carrier(&a, "trunk-a", CARRIER_ANSWERS);
    let caller = Scenario::new("caller", CALLER_IS_CUT).unwrap();
    let watcher = {
        let (base, token, account) = (rig.gw.base(), rig.token.clone(), rig.account.clone());
        tokio::spawn(async move {
            // Observe the balance all through the call: never below zero, never below its holds.
            let http = reqwest::Client::new();
            let mut seen = 0;
            for _ in 0..200 {
                let v: Value = http
                    .get(format!("{base}/v1/accounts/{account}"))
                    .bearer_auth(&token)
                    .send()
                    .await
                    .unwrap()
                    .json()
                    .await
                    .unwrap();
                let available: rust_decimal::Decimal = amount(&v["available"]).parse().unwrap();
                let balance: rust_decimal::Decimal = amount(&v["balance"]).parse().unwrap();
                assert!(balance >= rust_decimal::Decimal::ZERO && available >= rust_decimal::Decimal::ZERO, "{v}");
                seen += 1;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            seen
        })
    };
    let started = Instant::now();
    rig.call(&caller, NUMBER, 0).await.unwrap_or_else(|e| panic!("{e}\n{}", rig.log()));
    let took = started.elapsed();
    assert!(finished(trunk_a, Duration::from_secs(10)).await, "the carrier got its BYE too");
    // Cut at the fifth paid second (seconds-level: signalling adds milliseconds, not seconds).
    assert!(took >= Duration::from_secs(5) && took < Duration::from_secs(7), "cut after {took:?}\n{}", rig.log());
    let cdrs = rig.settled(1).await;
    assert_eq!(cdrs[0]["units"], 5, "{cdrs:?}");
    assert_eq!(amount(&cdrs[0]["charged"]), "0.05");
    let acct = rig.account().await;
    assert_eq!(amount(&acct["balance"]), "0.00");
    assert_eq!(amount(&acct["held"]), "0.00");
    assert!(watcher.await.unwrap() > 0);
}

#[tokio::test]
async fn a_call_without_credit_is_refused_before_any_carrier() {
    let a = trunk("cheap", "0.004");
    let rig = Rig::start(&[&a], "0.005", 60).await;
    let (sa, _trunk_a) = carrier(&a, "trunk-a", CARRIER_ANSWERS);
    let caller = Scenario::new("caller", &CALLER_REFUSED.replace("EXPECTED", "402")).unwrap();
    rig.call(&caller, NUMBER, 0).await.unwrap_or_else(|e| panic!("{e}\n{}", rig.log()));
    assert!(!got_invite(sa.dir()));
    assert_eq!(amount(&rig.account().await["balance"]), "0.005");
}

#[tokio::test]
async fn a_call_in_from_a_carrier_reaches_the_sip_bridge() {
    let a = trunk("cheap", "0.004");
    let bridge = free_addr();
    let rig = Rig::start_with_bridge(&[&a], "1.00", 60, Some(bridge)).await;
    let bridge_scenario = Scenario::new("bridge", CARRIER_ANSWERS).unwrap();
    let mut cmd = bridge_scenario.uas_command(bridge);
    cmd.arg("-trace_msg");
    let bridge_uas = bridge_scenario.spawn(cmd, "bridge").unwrap();
    // The carrier calls the provider's number from its trunk's address.
    let carrier_side = Scenario::new("carrier", CALLER_HANGS_UP).unwrap();
    rig.call_from(a.addr, &carrier_side, NUMBER, 1000).await.unwrap_or_else(|e| panic!("{e}\n{}", rig.log()));
    assert!(finished(bridge_uas, Duration::from_secs(10)).await, "the bridge saw INVITE, ACK and BYE");
    let seen = messages(bridge_scenario.dir());
    assert!(seen.contains(&format!("INVITE sip:{NUMBER}@")), "{seen}");
    assert!(rig.cdrs().await.is_empty(), "calls in are not charged");
    assert_eq!(amount(&rig.account().await["balance"]), "1.00");
}

#[tokio::test]
async fn a_call_from_an_unknown_address_is_forbidden() {
    let a = trunk("cheap", "0.004");
    let rig = Rig::start(&[&a], "1.00", 60).await;
    let caller = Scenario::new("caller", &CALLER_REFUSED.replace("EXPECTED", "403")).unwrap();
    // The gateway trusts only 127.0.0.1; sipp calls from 127.0.0.2.
    let stranger = SocketAddr::from(([127, 0, 0, 2], free_addr().port()));
    rig.call_from(stranger, &caller, NUMBER, 0).await.unwrap_or_else(|e| panic!("{e}\n{}", rig.log()));
    assert_eq!(amount(&rig.account().await["balance"]), "1.00");
}

#[tokio::test]
async fn a_trunk_that_never_answers_is_given_up_for_the_next() {
    let (a, b) = (trunk("cheap", "0.004"), trunk("dear", "0.009"));
    let rig = Rig::start(&[&a, &b], "10.00", 60).await;
    // The cheap trunk only says 100 Trying: after invite_timeout_ms (2 s here) it gets CANCEL.
    let (_sa, trunk_a) = carrier(&a, "trunk-a", &CARRIER_NO_ANSWER.replace("PROVISIONAL", "100 Trying"));
    let (_sb, trunk_b) = carrier(&b, "trunk-b", CARRIER_ANSWERS);
    let caller = Scenario::new("caller", CALLER_HANGS_UP).unwrap();
    let started = Instant::now();
    rig.call(&caller, NUMBER, 1000).await.unwrap_or_else(|e| panic!("{e}\n{}", rig.log()));
    assert!(started.elapsed() >= Duration::from_secs(3), "2 s on the silent trunk, then 1 s of talk");
    assert!(finished(trunk_a, Duration::from_secs(10)).await, "the silent trunk got CANCEL");
    assert!(finished(trunk_b, Duration::from_secs(10)).await, "the next one carried the call");
    let cdrs = rig.settled(1).await;
    assert_eq!(cdrs[0]["carrier"], "dear", "{cdrs:?}");
    assert_eq!(amount(&cdrs[0]["charged"]), "0.01");
}

#[tokio::test]
async fn a_caller_who_hangs_up_while_it_rings_cancels_the_carrier_and_pays_nothing() {
    let a = trunk("cheap", "0.004");
    let rig = Rig::start(&[&a], "10.00", 60).await;
    let (_sa, trunk_a) = carrier(&a, "trunk-a", &CARRIER_NO_ANSWER.replace("PROVISIONAL", "180 Ringing"));
    let caller = Scenario::new("caller", CALLER_CANCELS).unwrap();
    rig.call(&caller, NUMBER, 500).await.unwrap_or_else(|e| panic!("{e}\n{}", rig.log()));
    assert!(finished(trunk_a, Duration::from_secs(10)).await, "the carrier got CANCEL");
    let deadline = Instant::now() + Duration::from_secs(5);
    let acct = loop {
        let acct = rig.account().await;
        if amount(&acct["held"]) == "0.00" || Instant::now() > deadline {
            break acct;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(amount(&acct["held"]), "0.00", "the hold was released");
    assert_eq!(amount(&acct["balance"]), "10.00");
    assert!(rig.cdrs().await.is_empty());
}

#[tokio::test]
async fn a_carrier_that_keeps_failing_is_skipped_by_its_breaker() {
    let (a, b) = (trunk("cheap", "0.004"), trunk("dear", "0.009"));
    let rig =
        Rig::start_with(&[&a, &b], "10.00", 60, None, "breaker_failures = 2\nbreaker_cooldown_secs = 600\n").await;
    let (sa, _trunk_a) = carrier_for(&a, "trunk-a", &CARRIER_FAILS.replace("CODE", "503"), 10);
    let (_sb, trunk_b) = carrier_for(&b, "trunk-b", CARRIER_ANSWERS, 4);
    for _ in 0..4 {
        let caller = Scenario::new("caller", CALLER_HANGS_UP).unwrap();
        rig.call(&caller, NUMBER, 100).await.unwrap_or_else(|e| panic!("{e}\n{}", rig.log()));
    }
    assert!(finished(trunk_b, Duration::from_secs(10)).await, "the dear carrier carried all four calls");
    // Two 503s open the cheap carrier's breaker: calls three and four go straight to the dear one.
    let invites = messages(sa.dir()).matches("INVITE sip:").count();
    assert_eq!(invites, 2, "{}", rig.log());
    assert_eq!(rig.settled(4).await.len(), 4);
}

#[tokio::test]
async fn the_caller_id_is_the_users_own_number_only_where_the_carrier_takes_it() {
    let own = trunk("cheap", "0.004");
    let rig = Rig::start(&[&own], "10.00", 60).await;
    let (sa, trunk_a) = carrier(&own, "trunk-a", CARRIER_ANSWERS);
    let caller = Scenario::new("caller", CALLER_HANGS_UP).unwrap();
    rig.call(&caller, NUMBER, 100).await.unwrap_or_else(|e| panic!("{e}\n{}", rig.log()));
    assert!(finished(trunk_a, Duration::from_secs(10)).await);
    let seen = messages(sa.dir());
    assert!(seen.contains("From: <sip:+442079460001@"), "{seen}");
    assert!(seen.contains("P-Asserted-Identity: <sip:+442079460001@"), "{seen}");

    let mut provider = trunk("strict", "0.004");
    provider.settings = "asserted_identity = false\nprovider_number = \"+442079460999\"\n";
    let rig = Rig::start(&[&provider], "10.00", 60).await;
    let (sb, trunk_b) = carrier(&provider, "trunk-b", CARRIER_ANSWERS);
    let caller = Scenario::new("caller", CALLER_HANGS_UP).unwrap();
    rig.call(&caller, NUMBER, 100).await.unwrap_or_else(|e| panic!("{e}\n{}", rig.log()));
    assert!(finished(trunk_b, Duration::from_secs(10)).await);
    let seen = messages(sb.dir());
    assert!(seen.contains("From: <sip:+442079460999@"), "{seen}");
    assert!(!seen.contains("+442079460001") && !seen.contains("P-Asserted-Identity"), "{seen}");
}

#[tokio::test]
async fn calls_beyond_the_accounts_concurrent_limit_are_refused() {
    let a = trunk("cheap", "0.004");
    let rig = Rig::start(&[&a], "10.00", 60).await;
    let r = reqwest::Client::new()
        .put(format!("{}/v1/accounts/{}/limits", rig.gw.base(), rig.account))
        .bearer_auth(&rig.token)
        .json(&serde_json::json!({"max_open_holds": 1}))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.status());
    let (sa, trunk_a) = carrier_for(&a, "trunk-a", CARRIER_ANSWERS, 1);
    let first = Scenario::new("first", CALLER_HANGS_UP).unwrap();
    let second = Scenario::new("second", &CALLER_REFUSED.replace("EXPECTED", "403")).unwrap();
    let talking = rig.call(&first, NUMBER, 3000);
    let refused = async {
        // While the first call is up (its hold open), a second one.
        tokio::time::sleep(Duration::from_millis(1500)).await;
        rig.call(&second, MOBILE, 0).await
    };
    let (talked, refused) = tokio::join!(talking, refused);
    talked.unwrap_or_else(|e| panic!("{e}\n{}", rig.log()));
    refused.unwrap_or_else(|e| panic!("{e}\n{}", rig.log()));
    assert!(finished(trunk_a, Duration::from_secs(10)).await);
    assert_eq!(messages(sa.dir()).matches("INVITE sip:").count(), 1, "the refused call never reached a carrier");
    assert_eq!(rig.settled(1).await.len(), 1);
}
/// An amount of the API as a number.
fn dec(v: &Value) -> rust_decimal::Decimal {
    amount(v).parse().unwrap()
}

/// Polls the rig's account every 20 ms until stopped: it must never be below zero (balance or available).
fn watch_balance(
    rig: &Rig,
) -> (std::sync::Arc<std::sync::atomic::AtomicBool>, tokio::task::JoinHandle<(u32, rust_decimal::Decimal)>) {
    let watching = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let (base, token, account) = (rig.gw.base(), rig.token.clone(), rig.account.clone());
    let on = watching.clone();
    let task = tokio::spawn(async move {
        let http = reqwest::Client::new();
        let (mut seen, mut lowest) = (0u32, rust_decimal::Decimal::MAX);
        while on.load(std::sync::atomic::Ordering::Relaxed) {
            let v: Value = http
                .get(format!("{base}/v1/accounts/{account}"))
                .bearer_auth(&token)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            let (balance, available) = (dec(&v["balance"]), dec(&v["available"]));
            assert!(
                balance >= rust_decimal::Decimal::ZERO && available >= rust_decimal::Decimal::ZERO,
                "overdrawn: {v}"
            );
            lowest = lowest.min(available);
            seen += 1;
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        (seen, lowest)
    });
    (watching, task)
}

mod auth;
mod crash;
mod media;
mod money;
mod nodes;
mod outage;
mod records;
