//! The wall clock, behind a trait so tests can drive time (signature expiry, rate limits, key rollover).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A source of the current time.
pub trait Clock: Send + Sync + std::fmt::Debug + 'static {
    /// Now, as time since the Unix epoch.
    fn now(&self) -> SystemTime;

    /// Now, in whole seconds since the Unix epoch.
    fn unix_seconds(&self) -> u64 {
        self.now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
    }
}

impl<C: Clock + ?Sized> Clock for Arc<C> {
    fn now(&self) -> SystemTime {
        (**self).now()
    }
}

/// The real clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    #[allow(clippy::disallowed_methods)] // the one sanctioned reader of the wall clock
    fn now(&self) -> SystemTime {
        SystemTime::now()
    }
}

/// A clock that only moves when told to.
#[derive(Debug, Default)]
pub struct MockClock {
    millis: AtomicU64,
}

impl MockClock {
    /// A clock standing at `unix_seconds`.
    pub fn at(unix_seconds: u64) -> Self {
        Self { millis: AtomicU64::new(unix_seconds * 1000) }
    }

    /// Moves the clock forward.
    pub fn advance(&self, by: Duration) {
        self.millis.fetch_add(by.as_millis() as u64, Ordering::SeqCst);
    }

    /// Sets the clock.
    pub fn set(&self, unix_seconds: u64) {
        self.millis.store(unix_seconds * 1000, Ordering::SeqCst);
    }
}

impl Clock for MockClock {
    fn now(&self) -> SystemTime {
        UNIX_EPOCH + Duration::from_millis(self.millis.load(Ordering::SeqCst))
    }
}

/// Unix milliseconds as `YYYY-MM-DD HH:MM` in UTC (the proleptic Gregorian calendar, from days since
/// 1970-01-01), for pages and command output that show when something happened.
pub fn utc_minute(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02} {:02}:{:02}", rem / 3600, rem % 3600 / 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_minutes_follow_the_civil_calendar() {
        assert_eq!(utc_minute(0), "1970-01-01 00:00");
        assert_eq!(utc_minute(951_782_400_000), "2000-02-29 00:00");
        assert_eq!(utc_minute(1_796_553_660_000), "2026-12-06 10:41");
        assert_eq!(utc_minute(-60_000), "1969-12-31 23:59");
    }

    #[test]
    fn mock_clock_moves_only_when_told() {
        let c = MockClock::at(1_000);
        assert_eq!(c.unix_seconds(), 1_000);
        c.advance(Duration::from_secs(61));
        assert_eq!(c.unix_seconds(), 1_061);
        c.set(5);
        assert_eq!(c.unix_seconds(), 5);
    }
}
