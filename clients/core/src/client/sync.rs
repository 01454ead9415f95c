//! The background sync behind [`TincanClient::spawn_sync`](super::TincanClient::spawn_sync): a long-poll loop over
//! matrix-sdk's `sync_once` that lives through network failures. matrix-sdk's own `Client::sync` ends at the first
//! failed request (its HTTP layer retries server errors for a while, but not a refused or dropped connection),
//! so a phone that lost the network, or a homeserver restart, stopped every incoming message until the app
//! started a new sync. Here a failure a retry can cure (no connection, a timeout, a 5xx or 429 answer) waits and
//! asks again, longer after each failure in a row (0.5 s doubling to 30 s, less up to a quarter at random so
//! that the clients of one homeserver do not all come back at once); only an error no retry cures (the session
//! revoked, the store broken) ends the loop.
//!
//! Its pace is not `Client::sync`'s either: that loop sleeps a second before any request that follows the previous
//! answer within a second (against servers that ignore the long-poll timeout), so of two messages less than a
//! second apart the second reached us up to a second late — every other message of a burst
//! (bench/client/ffi.sh: send → listener alternated ~50 ms and ~1020 ms). Here the next request goes out at once
//! after an answer with news; only an answer with nothing in it that came back early waits out the rest of a
//! second. Nothing of what the pause used to cover by luck is lost: a message whose room key comes in a later
//! answer is delivered when the key comes (`late_keys`), and texts sent in a room before our homeserver joined
//! it, which no sync brings, are read from its history after the join (`joined`).

use matrix_sdk::config::SyncSettings;
use matrix_sdk::{Client, HttpError};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::time::{Duration, Instant};

/// How long one sync request waits on the server for news.
const POLL: Duration = Duration::from_secs(10);
/// An answer with nothing in it that came back sooner than this after its request waits out the rest: the
/// server did not hold the long poll, and asking again at once would spin.
const MIN_EMPTY_ROUND: Duration = Duration::from_secs(1);
/// The first wait after a failure, doubled after each further one…
const FIRST_RETRY: Duration = Duration::from_millis(500);
/// …up to this.
const MAX_RETRY: Duration = Duration::from_secs(30);

/// Syncs until an error no retry cures, which it returns.
pub(super) async fn sync_forever(client: &Client) -> matrix_sdk::Error {
    let mut settings = SyncSettings::default().timeout(POLL);
    let mut rng = StdRng::from_os_rng();
    let mut failures = 0u32;
    loop {
        let asked = Instant::now();
        match client.sync_once(settings.clone()).await {
            Ok(r) => {
                if failures > 0 {
                    tracing::info!(failures, "sync is back");
                    failures = 0;
                }
                settings = settings.token(r.next_batch.clone());
                if let Some(rest) = pause_after(has_news(&r), asked.elapsed()) {
                    tokio::time::sleep(rest).await;
                }
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

/// Whether a sync answer brought anything: room updates (timeline, state, invites, receipts), to-device events
/// (room keys), account data, presence or notifications.
fn has_news(r: &matrix_sdk::sync::SyncResponse) -> bool {
    !r.rooms.is_empty()
        || !r.to_device.is_empty()
        || !r.account_data.is_empty()
        || !r.presence.is_empty()
        || !r.notifications.is_empty()
}

/// How long to wait before the next request after an answer that took `took`: nothing after news; after an empty
/// answer, the rest of [`MIN_EMPTY_ROUND`].
fn pause_after(news: bool, took: Duration) -> Option<Duration> {
    if news {
        return None;
    }
    MIN_EMPTY_ROUND.checked_sub(took).filter(|rest| !rest.is_zero())
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
    fn news_is_asked_for_again_at_once_and_only_an_early_empty_answer_waits_out_the_second() {
        let ms = Duration::from_millis;
        assert_eq!(pause_after(true, ms(5)), None, "news: at once, however quick");
        assert_eq!(pause_after(true, ms(10_000)), None);
        assert_eq!(pause_after(false, ms(300)), Some(ms(700)), "empty and early: the rest of the second");
        assert_eq!(pause_after(false, ms(1_000)), None);
        assert_eq!(pause_after(false, ms(10_000)), None, "a long poll that ran out: at once");
    }

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
