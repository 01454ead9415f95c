//! Fraud limits, pure: destinations blocked or needing an explicit opt-in (premium, satellite, high-risk
//! countries), the most holds open at once, and the most spent (charged plus held) per hour and per day. The
//! ledger checks them before every reservation, inside the reservation's transaction.

use serde::{Deserialize, Serialize};

use crate::charging::ChargeError;
use crate::money::Amount;
use crate::rating::prefixes_of;
use crate::storage::Limits;

/// The limits for every account (an account's own [`Limits`] override the numbers and add prefixes).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FraudConfig {
    /// Prefixes (digits, country code first) no account may reach.
    pub blocked_prefixes: Vec<String>,
    /// Prefixes only accounts that opted in may reach (premium rate, satellite, high-risk destinations).
    pub opt_in_prefixes: Vec<String>,
    /// The most holds an account may have open at once (unset: no limit).
    pub max_open_holds: Option<u32>,
    /// The most an account may spend (charged plus held) within an hour.
    pub max_spend_hour: Option<Amount>,
    /// The most an account may spend (charged plus held) within a day.
    pub max_spend_day: Option<Amount>,
}

impl FraudConfig {
    /// Problems with the settings.
    pub fn problems(&self) -> Vec<String> {
        let mut p = Vec::new();
        for (key, list) in
            [("fraud.blocked_prefixes", &self.blocked_prefixes), ("fraud.opt_in_prefixes", &self.opt_in_prefixes)]
        {
            for prefix in list {
                if !is_prefix(prefix) {
                    p.push(format!("{key}: {prefix:?} is not 1 to 15 digits"));
                }
            }
        }
        for (key, v) in [("fraud.max_spend_hour", self.max_spend_hour), ("fraud.max_spend_day", self.max_spend_day)] {
            if v.is_some_and(|a| a.is_negative()) {
                p.push(format!("{key}: not negative"));
            }
        }
        p
    }
}

/// Whether `s` is a destination prefix: 1 to 15 digits.
pub fn is_prefix(s: &str) -> bool {
    (1..=15).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_digit())
}

/// The limits that apply to one account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy<'a> {
    /// For every account.
    pub global: &'a FraudConfig,
    /// The account's own.
    pub account: &'a Limits,
}

/// What the account is doing now, as far as the limits that apply need to know.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Activity {
    /// Holds open now.
    pub open_holds: u64,
    /// Held now.
    pub held: Amount,
    /// Charged within the last hour.
    pub charged_hour: Amount,
    /// Charged within the last day.
    pub charged_day: Amount,
}

impl Policy<'_> {
    /// The activity limits that apply.
    pub fn activity(&self) -> ActivityLimits {
        ActivityLimits {
            max_open_holds: self.account.max_open_holds.or(self.global.max_open_holds),
            max_spend_hour: self.account.max_spend_hour.or(self.global.max_spend_hour),
            max_spend_day: self.account.max_spend_day.or(self.global.max_spend_day),
        }
    }

    /// Refuses a destination that is blocked, or that needs an opt-in the account lacks. `digits`: the number
    /// without its `+`.
    pub fn check_destination(&self, digits: &str) -> Result<(), ChargeError> {
        let hit = |list: &[String]| prefixes_of(digits).find(|p| list.iter().any(|l| l == p)).map(str::to_owned);
        if let Some(p) = hit(&self.global.blocked_prefixes).or_else(|| hit(&self.account.blocked)) {
            return Err(ChargeError::DestinationBlocked(format!("+{p} is blocked")));
        }
        if let Some(p) = hit(&self.global.opt_in_prefixes)
            && hit(&self.account.opt_in).is_none()
        {
            return Err(ChargeError::DestinationBlocked(format!("+{p} needs an opt-in")));
        }
        Ok(())
    }

    /// Refuses holding `amount` more when it would exceed the concurrent holds or the spend limits.
    pub fn check_activity(&self, now: &Activity, amount: Amount) -> Result<(), ChargeError> {
        self.activity().check(now, amount)
    }
}

/// The limits on what an account does at once and spends.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ActivityLimits {
    /// The most holds open at once.
    pub max_open_holds: Option<u32>,
    /// The most charged plus held within an hour.
    pub max_spend_hour: Option<Amount>,
    /// The most charged plus held within a day.
    pub max_spend_day: Option<Amount>,
}

impl ActivityLimits {
    /// Whether there is any limit (else the account's activity need not be read).
    pub fn any(&self) -> bool {
        self.max_open_holds.is_some() || self.max_spend_hour.is_some() || self.max_spend_day.is_some()
    }

    /// Refuses holding `amount` more when it would exceed a limit.
    pub fn check(&self, now: &Activity, amount: Amount) -> Result<(), ChargeError> {
        if let Some(max) = self.max_open_holds
            && now.open_holds >= u64::from(max)
        {
            return Err(ChargeError::LimitExceeded(format!("at most {max} holds open at once")));
        }
        let spend = i128::from(now.held.micros()) + i128::from(amount.micros());
        for (charged, max, per) in
            [(now.charged_hour, self.max_spend_hour, "hour"), (now.charged_day, self.max_spend_day, "day")]
        {
            if let Some(m) = max
                && i128::from(charged.micros()) + spend > i128::from(m.micros())
            {
                return Err(ChargeError::LimitExceeded(format!("at most {m} spent per {per}")));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(s: &str) -> Amount {
        s.parse().unwrap()
    }

    fn global() -> FraudConfig {
        FraudConfig {
            blocked_prefixes: vec!["882".into(), "4490".into()],
            opt_in_prefixes: vec!["881".into(), "44871".into()],
            max_open_holds: Some(3),
            max_spend_hour: Some(a("10")),
            max_spend_day: Some(a("50")),
        }
    }

    #[test]
    fn destinations_blocked_or_needing_an_opt_in() {
        let g = global();
        let none = Limits::default();
        let p = Policy { global: &g, account: &none };
        assert!(p.check_destination("4930123456").is_ok());
        let blocked = p.check_destination("88299123456").unwrap_err();
        assert_eq!(blocked, ChargeError::DestinationBlocked("+882 is blocked".into()));
        assert!(p.check_destination("449012345678").is_err(), "longer blocked prefix");
        assert!(p.check_destination("449112345678").is_ok(), "a sibling of a blocked prefix is not blocked");
        assert_eq!(
            p.check_destination("8816123456").unwrap_err(),
            ChargeError::DestinationBlocked("+881 needs an opt-in".into())
        );
        assert!(p.check_destination("448712345678").is_err());

        let opted = Limits { opt_in: vec!["881".into()], blocked: vec!["33".into()], ..Limits::default() };
        let p = Policy { global: &g, account: &opted };
        assert!(p.check_destination("8816123456").is_ok(), "opted in");
        assert!(p.check_destination("448712345678").is_err(), "an opt-in covers its own prefix only");
        assert!(p.check_destination("33123456789").is_err(), "blocked for this account");
        let sneaky = Limits { opt_in: vec!["882".into()], ..Limits::default() };
        let p = Policy { global: &g, account: &sneaky };
        assert!(p.check_destination("88299123456").is_err(), "an opt-in never unblocks a blocked prefix");
    }

    #[test]
    fn concurrent_holds_and_spend_per_hour_and_day() {
        let g = global();
        let none = Limits::default();
        let p = Policy { global: &g, account: &none };
        let idle = Activity::default();
        assert!(p.check_activity(&idle, a("10")).is_ok(), "exactly the hourly limit");
        assert!(matches!(p.check_activity(&idle, a("10.000001")), Err(ChargeError::LimitExceeded(_))));
        let busy = Activity { open_holds: 3, ..idle };
        assert!(
            matches!(p.check_activity(&busy, a("0.01")), Err(ChargeError::LimitExceeded(m)) if m.contains("holds"))
        );
        let spent = Activity { open_holds: 1, held: a("4"), charged_hour: a("5"), charged_day: a("5") };
        assert!(p.check_activity(&spent, a("1")).is_ok());
        assert!(p.check_activity(&spent, a("1.01")).is_err(), "charged + held + asked > 10 per hour");
        let day = Activity { charged_hour: Amount::ZERO, charged_day: a("45"), ..spent };
        assert!(matches!(p.check_activity(&day, a("1.01")), Err(ChargeError::LimitExceeded(m)) if m.contains("day")));

        let own = Limits {
            max_open_holds: Some(10),
            max_spend_hour: Some(a("100")),
            max_spend_day: Some(a("100")),
            ..Limits::default()
        };
        let p = Policy { global: &g, account: &own };
        assert!(p.check_activity(&busy, a("20")).is_ok(), "the account's own limits override the defaults");
        let unlimited = FraudConfig::default();
        let p = Policy { global: &unlimited, account: &none };
        assert!(!p.activity().any());
        assert!(p.check_activity(&Activity { open_holds: 1_000_000, ..idle }, a("1000000")).is_ok());
    }

    #[test]
    fn config_problems_are_named() {
        let bad = FraudConfig {
            blocked_prefixes: vec!["+44".into()],
            max_spend_day: Some(a("-1")),
            ..FraudConfig::default()
        };
        let p = bad.problems();
        assert_eq!(p.len(), 2, "{p:?}");
        assert!(FraudConfig::default().problems().is_empty());
    }
}
