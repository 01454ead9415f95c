//! The background sync behind [`TincanClient::spawn_sync`](super::TincanClient::spawn_sync): a long-poll loop over
//! matrix-sdk's `sync_once` that lives through network failures. matrix-sdk's own `Client::sync` ends at the first
//! failed request (its HTTP layer retries server errors for a while, but not a refused or dropped connection),
//! so a phone that lost the network, or a homeserver restart, stopped every incoming message until the app
//! started a new sync. Here a failure a retry can cure (no connection, a timeout, a 5xx or 429 answer) waits and
//! asks again, longer after each failure in a row (0.5 s doubling to 30 s, less up to a quarter at random so
//! that the clients of one homeserver do not all come back at once); only an error no retry cures (the session
//! revoked, the store broken) ends the loop.

use matrix_sdk::config::SyncSettings;
use matrix_sdk::{Client, HttpError};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::time::{Duration, Instant};

/// How long one sync request waits on the server for news.
const POLL: Duration = Duration::from_secs(10);
/// The first wait after a failure, doubled after each further one…
const FIRST_RETRY: Duration = Duration::from_millis(500);
/// …up to this.
const MAX_RETRY: Duration = Duration::from_secs(30);

/// Syncs until an error no retry cures, which it returns.
pub(super) async fn sync_forever(client: &Client) -> matrix_sdk::Error {
    let mut settings = SyncSettings::default().timeout(POLL);
    let mut rng = StdRng::from_os_rng();
    let mut failures = 0u32;
    let mut last_answer: Option<Instant> = None;
    loop {
        match client.sync_once(settings.clone()).await {
            Ok(r) => {
                if failures > 0 {
                    tracing::info!(failures, "sync is back");
                    failures = 0;
                }
                settings = settings.token(r.next_batch.clone());
                // matrix-sdk's pace: after an answer that came within a second of the previous one, wait a
                // second (against servers that ignore the long-poll timeout).
                let now = Instant::now();
                if last_answer.is_some_and(|t| now.duration_since(t) <= Duration::from_secs(1)) {
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
                last_answer = Some(now);
            }
            Err(e) if is_transient(&e) => {
                failures = failures.saturating_add(1);
                let wait = retry_delay(failures, rng.random());
                if failures == 1 {
                    tracing::warn!(error = %e, retry_in = ?wait, "sync failed; retrying until the homeserver answers");
                } else {
                    tracing::debug!(error = %e, failures, retry_in = ?wait, "sync failed again");
                }
                tokio::time::sleep(wait).await;
            }
            Err(e) => return e,
        }
    }
}

/// Whether a retry can cure `e`: the homeserver was not reached or did not answer in time, or answered that it
/// is overloaded or failing (5xx, 429). Anything else (401 for a revoked session, a store error) is final.
fn is_transient(e: &matrix_sdk::Error) -> bool {
    let matrix_sdk::Error::Http(http) = e else { return false };
    match http.as_ref() {
        HttpError::Reqwest(_) => true,
        HttpError::Api(_) => http
            .as_client_api_error()
            .is_some_and(|api| api.status_code.as_u16() == 429 || api.status_code.is_server_error()),
        _ => false,
    }
}

/// The wait before the next try after `failures` failures in a row (≥ 1): [`FIRST_RETRY`] doubled per further
/// failure up to [`MAX_RETRY`], shortened by up to a quarter by `jitter` (in `[0, 1)`).
fn retry_delay(failures: u32, jitter: f64) -> Duration {
    let doublings = failures.saturating_sub(1).min(16);
    let full = FIRST_RETRY.saturating_mul(1 << doublings).min(MAX_RETRY);
    full.mul_f64(1.0 - 0.25 * jitter.clamp(0.0, 1.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_retry_delay_doubles_up_to_its_cap_and_jitter_only_shortens_it() {
        let ms = |f, j| retry_delay(f, j).as_millis();
        assert_eq!([ms(1, 0.0), ms(2, 0.0), ms(3, 0.0), ms(4, 0.0)], [500, 1000, 2000, 4000]);
        assert_eq!(ms(7, 0.0), 30_000, "32 s capped at 30 s");
        assert_eq!(ms(u32::MAX, 0.0), 30_000, "no overflow after a very long outage");
        assert_eq!(ms(1, 0.5), 437, "a quarter of the jitter at most: 500 × (1 − 0.125)");
        assert_eq!(ms(5, 1.0), 6000, "8 s less a quarter");
        assert_eq!(ms(3, 7.0), 1500, "jitter out of range is clamped");
    }
}
