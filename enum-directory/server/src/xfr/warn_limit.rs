//! Log lines about refused requests, rate limited: anyone can send a request with a bogus TSIG key (over UDP
//! from spoofed addresses, too), and one warning each would let them fill the disk and drown the log.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// At most `per_window` lines per `window`; the rest are counted and the count goes with the next line logged.
#[derive(Debug)]
pub(crate) struct WarnLimiter {
    per_window: u32,
    window: Duration,
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    started: Option<Instant>,
    logged: u32,
    suppressed: u64,
}

impl WarnLimiter {
    /// A limiter of `per_window` lines per `window`.
    pub(crate) fn new(per_window: u32, window: Duration) -> WarnLimiter {
        WarnLimiter { per_window, window, state: Mutex::new(State { started: None, logged: 0, suppressed: 0 }) }
    }

    /// Whether to log a line at `now`: `Some(n)` with the lines suppressed since the last one logged, `None` to
    /// stay quiet.
    pub(crate) fn allow(&self, now: Instant) -> Option<u64> {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if s.started.is_none_or(|t| now.saturating_duration_since(t) >= self.window) {
            s.started = Some(now);
            s.logged = 0;
        }
        if s.logged < self.per_window {
            s.logged += 1;
            Some(std::mem::take(&mut s.suppressed))
        } else {
            s.suppressed += 1;
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_few_per_window_and_the_count_of_the_rest() {
        let l = WarnLimiter::new(3, Duration::from_secs(60));
        let t = Instant::now();
        let first: Vec<Option<u64>> = (0..10).map(|i| l.allow(t + Duration::from_millis(i))).collect();
        assert_eq!(first, [Some(0), Some(0), Some(0), None, None, None, None, None, None, None]);
        assert_eq!(l.allow(t + Duration::from_secs(61)), Some(7), "the next window says how many were dropped");
        assert_eq!(l.allow(t + Duration::from_secs(62)), Some(0));
    }
}
