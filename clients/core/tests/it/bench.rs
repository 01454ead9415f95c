//! The benchmark (ignored by default; `bench/client/run.sh` runs it with `--release`): the wall time
//! from a new user's `verify` to their first message delivered, decrypted, to the other user, on loopback with
//! the real chain (Synapse, `tincan-ext`, `tincan-directory` through the proxy, which tampers with nothing here).
//!
//! Each round a fresh number asks for a code (not timed), then the clock runs through `verify` (JWT login, first
//! sync, cross-signing bootstrap, master key published to the directory through the extension) and
//! `send_text` to A's number (DNSSEC-validated lookup, `/keys/query`, key check against the directory, DM
//! creation, Megolm key share, send) until A's running sync yields the decrypted message. Rounds:
//! `TINCAN_TEST_BENCH_ROUNDS` (default 5).

use crate::chain::{Chain, wait_for_key};
use crate::harness::wait_for;
use std::time::{Duration, Instant};
use tincan_client_core::{KeyStatus, TincanClient};

const A_NUM: &str = "+442079460500";
/// A number no test answers for (the proxy needs one to tamper with).
const UNUSED: &str = "+442079460599";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark: bench/client/run.sh"]
async fn bench_verify_to_first_delivery() -> anyhow::Result<()> {
    let rounds: usize = std::env::var("TINCAN_TEST_BENCH_ROUNDS").ok().and_then(|v| v.parse().ok()).unwrap_or(5);
    let Some(chain) = Chain::start(UNUSED).await? else { return Ok(()) };
    let da = tempfile::tempdir()?;
    let (a, _) = chain.sign_up(da.path(), A_NUM).await?;
    // A's record and key are served before the clock ever runs.
    wait_for_key(&a, A_NUM).await?;
    let incoming = a.messages();
    let a_sync = a.spawn_sync()?;
    let mut incoming = Box::pin(incoming);

    let mut totals = Vec::new();
    for i in 0..rounds {
        let number = format!("+4420794605{:02}", i + 1);
        let data = tempfile::tempdir()?;
        let mut b = TincanClient::open(chain.config(data.path())).await?;
        b.register(&number).await?;
        let code = chain.ext.code(&number)?;

        let started = Instant::now();
        let signed = b.verify(&code).await?;
        let verified = started.elapsed();
        let send_started = Instant::now();
        let text = format!("hi {i}");
        let sent = b.send_text(A_NUM, &text, false).await?;
        let send_call = send_started.elapsed();
        assert!(matches!(sent.key_status, Some(KeyStatus::Verified { .. })), "{sent:?}");
        let got = wait_for(&mut incoming, |m| m.body == text).await?;
        let total = started.elapsed();
        assert!(got.encrypted && got.sender == signed.user_id, "{got:?}");
        eprintln!(
            "bench round {}: verify {} ms, send_text {} ms, verify→delivered {} ms",
            i + 1,
            verified.as_millis(),
            send_call.as_millis(),
            total.as_millis()
        );
        totals.push(total);
    }
    a_sync.abort();
    totals.sort();
    let ms = |d: Duration| d.as_millis();
    eprintln!(
        "bench summary: {} rounds, verify→delivered min {} ms, median {} ms, max {} ms",
        totals.len(),
        ms(totals[0]),
        ms(totals[totals.len() / 2]),
        ms(totals[totals.len() - 1])
    );
    Ok(())
}
