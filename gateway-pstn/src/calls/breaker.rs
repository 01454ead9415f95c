//! A circuit breaker per carrier, pure (time is passed in): after `threshold` failures in a row (408, 5xx, a
//! silent or unreachable trunk) a carrier is skipped for `cooldown`; then one call probes it, and its result
//! closes the breaker or opens it again. An answer, or any final response that is the called party's (486,
//! 404…), counts as the carrier working.

use std::collections::HashMap;
use std::time::{Duration, Instant};

/// What an attempt on a carrier showed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// The carrier worked (answered, or gave the called party's answer).
    Works,
    /// The carrier failed (the call went on to the next one).
    Failed,
    /// Nothing learned (the caller gave up first).
    Unknown,
}

#[derive(Debug, Default)]
struct Health {
    failures: u32,
    open_until: Option<Instant>,
    probing: bool,
}

/// The breakers of all carriers.
#[derive(Debug)]
pub struct Breakers {
    threshold: u32,
    cooldown: Duration,
    carriers: HashMap<String, Health>,
}

impl Breakers {
    /// Breakers that open after `threshold` failures in a row (0: never) for `cooldown`.
    pub fn new(threshold: u32, cooldown: Duration) -> Self {
        Breakers { threshold, cooldown, carriers: HashMap::new() }
    }

    /// Whether a call may be tried on `carrier` now. After the cooldown the first caller gets the probe and
    /// must report it with [`Breakers::finish`].
    pub fn allow(&mut self, carrier: &str, now: Instant) -> bool {
        let Some(h) = self.carriers.get_mut(carrier) else { return true };
        match h.open_until {
            None => true,
            Some(until) if now < until => false,
            Some(_) if h.probing => false,
            Some(_) => {
                h.probing = true;
                true
            }
        }
    }

    /// Records how an attempt allowed by [`Breakers::allow`] went.
    pub fn finish(&mut self, carrier: &str, verdict: Verdict, now: Instant) {
        if self.threshold == 0 {
            return;
        }
        let h = self.carriers.entry(carrier.to_owned()).or_default();
        let was_probe = std::mem::take(&mut h.probing);
        match verdict {
            Verdict::Works => *h = Health::default(),
            Verdict::Failed => {
                h.failures = h.failures.saturating_add(1);
                if was_probe || h.failures >= self.threshold {
                    h.open_until = Some(now + self.cooldown);
                }
            }
            Verdict::Unknown => {}
        }
    }

    /// Whether the carrier's breaker is open (skipped) at `now`.
    pub fn is_open(&self, carrier: &str, now: Instant) -> bool {
        self.carriers.get(carrier).and_then(|h| h.open_until).is_some_and(|until| now < until)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_after_failures_in_a_row_and_probes_after_the_cooldown() {
        let t0 = Instant::now();
        let mut b = Breakers::new(3, Duration::from_secs(30));
        for _ in 0..2 {
            assert!(b.allow("a", t0));
            b.finish("a", Verdict::Failed, t0);
        }
        b.finish("a", Verdict::Works, t0);
        for _ in 0..2 {
            b.finish("a", Verdict::Failed, t0);
        }
        assert!(b.allow("a", t0), "a success in between resets the count");
        b.finish("a", Verdict::Failed, t0);
        assert!(!b.allow("a", t0) && b.is_open("a", t0));
        assert!(b.allow("b", t0), "per carrier");
        let later = t0 + Duration::from_secs(31);
        assert!(b.allow("a", later), "the probe");
        assert!(!b.allow("a", later), "one probe at a time");
        b.finish("a", Verdict::Failed, later);
        assert!(!b.allow("a", later + Duration::from_secs(29)), "a failed probe opens it again");
        let much_later = later + Duration::from_secs(31);
        assert!(b.allow("a", much_later));
        b.finish("a", Verdict::Works, much_later);
        assert!(b.allow("a", much_later) && b.allow("a", much_later), "closed again");
    }

    #[test]
    fn a_probe_without_a_verdict_lets_the_next_call_probe() {
        let t0 = Instant::now();
        let mut b = Breakers::new(1, Duration::from_secs(5));
        b.finish("a", Verdict::Failed, t0);
        let t1 = t0 + Duration::from_secs(6);
        assert!(b.allow("a", t1));
        b.finish("a", Verdict::Unknown, t1);
        assert!(b.allow("a", t1));
    }

    #[test]
    fn threshold_zero_never_opens() {
        let t0 = Instant::now();
        let mut b = Breakers::new(0, Duration::from_secs(5));
        for _ in 0..100 {
            b.finish("a", Verdict::Failed, t0);
        }
        assert!(b.allow("a", t0));
    }
}
