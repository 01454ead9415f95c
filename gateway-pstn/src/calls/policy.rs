//! The call router's decisions, pure: which final responses fail over to the next carrier, which SIP answer a
//! refused charge gets, how many seconds an answered call is billed, and how much more time a balance pays for.

use tincan_sip_core::digest::Challenge;
use tincan_sip_core::stack::{Headers, Reason, headers_named};

use super::TrunkAuth;
use crate::charging::{ChargeError, Quote};
use crate::money::Amount;
use crate::rating::{Increments, Rate};
use crate::storage::CallResult;

/// Whether a carrier's final response sends the call on to the next carrier: 408, 5xx, and 6xx other than
/// 603 Decline, 604 Does Not Exist Anywhere and 606 Not Acceptable. Everything else (404, 486, 487, 603…) is
/// the called party's answer and goes back to the caller.
/// This is issue #19's rule. RFC 3261 §16.7 has a proxy create no new branch after any 6xx, so 600 Busy
/// Everywhere and 605 here differ from it; the issue's text decides until it is changed.
pub fn fails_over(code: u16) -> bool {
    match code {
        408 => true,
        500..=599 => true,
        603 | 604 | 606 => false,
        600..=699 => true,
        _ => false,
    }
}

/// The credentials answering a carrier's 401 (`WWW-Authenticate`) or 407 (`Proxy-Authenticate`) to an
/// INVITE, as the header to add: `(name, value)`. `None` when the trunk has no credentials, offers no
/// challenge we can answer (another realm, an unknown algorithm), or has refused them already: `answered` is
/// how many challenges of this kind this INVITE has answered, and only a `stale=true` nonce is answered again.
pub fn authorization(
    auth: Option<&TrunkAuth>,
    code: u16,
    headers: &Headers,
    answered: u32,
    uri: &str,
    cnonce: &str,
) -> Option<(&'static str, String)> {
    let auth = auth?;
    let (challenge_header, answer_header) = match code {
        401 => ("WWW-Authenticate", "Authorization"),
        407 => ("Proxy-Authenticate", "Proxy-Authorization"),
        _ => return None,
    };
    let challenge = Challenge::pick(headers_named(headers, challenge_header), auth.realm.as_deref())?;
    if answered > 1 || (answered == 1 && !challenge.stale) {
        return None;
    }
    let credentials = challenge.answer(&auth.username, auth.password.expose(), "INVITE", uri, cnonce);
    Some((answer_header, credentials.header()))
}

/// The Q.850 cause that stands for a SIP final status, after RFC 3398 §8.2.6.1 (200 and 487, which it does
/// not map, are normal clearing: the call ended as someone meant it to). Classes it leaves open: 4xx 21 (call
/// rejected), 5xx 41 (temporary failure), 6xx 31 (normal, unspecified).
pub fn q850_cause(status: u16) -> u16 {
    match status {
        200..=299 | 487 => 16,
        404 | 485 | 604 => 1,
        410 => 22,
        480 => 18,
        482 | 483 => 25,
        484 => 28,
        486 | 600 => 17,
        400 | 481 | 500 | 503 => 41,
        408 | 504 => 102,
        405 => 63,
        406 | 415 | 501 => 79,
        502 => 38,
        603 => 21,
        606 => 58,
        413 | 414 | 416 | 420 | 421 | 488 | 505 | 513 => 127,
        401..=499 => 21,
        500..=599 => 41,
        _ => 31,
    }
}

/// The Q.850 text of the causes [`q850_cause`] gives (and 34, the gateway's "no carrier left").
pub fn q850_text(cause: u16) -> &'static str {
    match cause {
        1 => "Unallocated number",
        16 => "Normal call clearing",
        17 => "User busy",
        18 => "No user responding",
        21 => "Call rejected",
        22 => "Number changed",
        25 => "Exchange routing error",
        28 => "Invalid number format",
        34 => "No circuit/channel available",
        38 => "Network out of order",
        41 => "Temporary failure",
        58 => "Bearer capability not presently available",
        63 => "Service or option not available",
        79 => "Service or option not implemented",
        102 => "Recovery on timer expiry",
        127 => "Interworking, unspecified",
        _ => "Normal, unspecified",
    }
}

/// The RFC 3326 reason for a SIP final status.
pub fn reason_for(status: u16) -> Reason {
    let cause = q850_cause(status);
    Reason::q850(cause, q850_text(cause))
}

/// How a carrier attempt that did not connect is recorded: busy (486, 600), no answer (480, 487, 408 at the
/// setup deadline: `timed_out`), anything else failed.
pub fn unanswered_result(status: u16, timed_out: bool) -> CallResult {
    match status {
        486 | 600 => CallResult::Busy,
        480 | 487 => CallResult::NoAnswer,
        408 if timed_out => CallResult::NoAnswer,
        _ => CallResult::Failed,
    }
}

/// The SIP answer to a call the ledger refused to charge (or could not price).
pub fn refusal(e: &ChargeError) -> (u16, &'static str) {
    match e {
        ChargeError::InsufficientFunds => (402, "Payment Required"),
        ChargeError::NoRate => (404, "No Route To Destination"),
        ChargeError::DestinationBlocked(_) => (403, "Destination Blocked"),
        ChargeError::LimitExceeded(_) => (403, "Call Limit Exceeded"),
        ChargeError::AccountNotFound | ChargeError::AccountDisabled | ChargeError::Unauthorized(_) => {
            (403, "Forbidden")
        }
        ChargeError::Unavailable(_) | ChargeError::RunTakenOver => (503, "Service Unavailable"),
        // The same INVITE twice (RFC 3261 §8.2.2.2, a merged request): the other copy carries the call.
        ChargeError::CallElsewhere => (482, "Loop Detected"),
        ChargeError::Invalid(_)
        | ChargeError::HoldNotFound
        | ChargeError::HoldClosed(_)
        | ChargeError::HoldExpired
        | ChargeError::ExceedsHold
        | ChargeError::IdempotencyConflict => (500, "Server Internal Error"),
    }
}

/// The seconds an answered call of `elapsed_ms` is billed: rounded to the nearest second (as switches
/// usually do, so that a few milliseconds of signalling delay do not cost a whole second), at least 1 for any
/// answered call, and never more than the `paid` seconds its holds cover (the call is cut there).
pub fn billed_seconds(elapsed_ms: u64, paid: u32) -> u32 {
    let rounded = (elapsed_ms + 500) / 1000;
    u32::try_from(rounded.max(1)).unwrap_or(u32::MAX).min(paid)
}

/// The rate a quote describes (voice only).
pub fn rate_of(q: &Quote) -> Rate {
    Rate {
        prefix: q.prefix.trim_start_matches('+').to_owned(),
        description: q.description.clone(),
        connect_fee: q.connect_fee,
        per_minute: Some(q.per_minute),
        increments: Increments { first: q.first_increment, next: q.next_increment },
        per_segment: None,
        per_mms: None,
    }
}

/// The seconds the first hold of a call pays for when `asked` seconds are held: the increments the price
/// covers.
pub fn first_paid(rate: &Rate, asked: u32) -> u32 {
    u32::try_from(rate.increments.billed(asked)).unwrap_or(u32::MAX)
}

/// The seconds an extension of `asked` seconds pays for (whole later increments).
pub fn extension_paid(rate: &Rate, asked: u32) -> u32 {
    let next = rate.increments.next.max(1);
    asked.div_ceil(next).saturating_mul(next)
}

/// The most seconds, up to `want` and in whole later increments, whose extension price `available` pays
/// (0 when not even one increment).
pub fn affordable_extension(rate: &Rate, available: Amount, want: u32) -> u32 {
    let next = rate.increments.next.max(1);
    let fits = |s: u32| rate.extension_price(s).is_ok_and(|p| p <= available);
    if available.is_negative() || !fits(next) {
        return 0;
    }
    let s = extension_paid(rate, want);
    if fits(s) {
        return s;
    }
    // Binary search over whole increments: fits(lo) holds, fits(hi) does not.
    let (mut lo, mut hi) = (1u32, s / next);
    while hi - lo > 1 {
        let mid = lo + (hi - lo) / 2;
        if fits(mid * next) {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    lo * next
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn rate(per_minute: &str, connect: &str, inc: &str) -> Rate {
        Rate {
            prefix: "49".into(),
            description: String::new(),
            connect_fee: connect.parse().unwrap(),
            per_minute: Some(per_minute.parse().unwrap()),
            increments: inc.parse().unwrap(),
            per_segment: None,
            per_mms: None,
        }
    }

    #[test]
    fn failover_follows_the_response_class() {
        for code in [408, 500, 502, 503, 504, 580, 600, 605] {
            assert!(fails_over(code), "{code}");
        }
        for code in [400, 403, 404, 480, 484, 486, 487, 488, 603, 604, 606] {
            assert!(!fails_over(code), "{code}");
        }
    }

    #[test]
    fn a_challenge_is_answered_once_and_only_with_credentials() {
        let auth = TrunkAuth {
            username: "gw".into(),
            password: tincan_common::Secret::new("pw"),
            realm: Some("carrier.example".into()),
        };
        let h = |name: &str, v: &str| vec![(name.to_owned(), v.to_owned())];
        let www = h("WWW-Authenticate", r#"Digest realm="carrier.example", nonce="n", algorithm=SHA-256"#);
        let (name, value) = authorization(Some(&auth), 401, &www, 0, "sip:+49301@127.0.0.1", "c").unwrap();
        assert_eq!(name, "Authorization");
        assert!(value.contains(r#"username="gw""#) && value.contains("algorithm=SHA-256"), "{value}");
        assert!(!value.contains("pw"), "the password itself never goes out");
        let proxy = h("Proxy-Authenticate", r#"Digest realm="carrier.example", nonce="n""#);
        assert_eq!(authorization(Some(&auth), 407, &proxy, 0, "sip:x@y", "c").unwrap().0, "Proxy-Authorization");
        // A 401 whose challenge is in the other header, a second plain challenge (the password was wrong), no
        // credentials, another realm: not answered.
        assert!(authorization(Some(&auth), 401, &proxy, 0, "sip:x@y", "c").is_none());
        assert!(authorization(Some(&auth), 401, &www, 1, "sip:x@y", "c").is_none());
        assert!(authorization(None, 401, &www, 0, "sip:x@y", "c").is_none());
        let other = h("WWW-Authenticate", r#"Digest realm="evil.example", nonce="n""#);
        assert!(authorization(Some(&auth), 401, &other, 0, "sip:x@y", "c").is_none());
        // A stale nonce is answered once more.
        let stale = h("WWW-Authenticate", r#"Digest realm="carrier.example", nonce="m", stale=true"#);
        assert!(authorization(Some(&auth), 401, &stale, 1, "sip:x@y", "c").is_some());
        assert!(authorization(Some(&auth), 401, &stale, 2, "sip:x@y", "c").is_none());
    }

    #[test]
    fn sip_statuses_map_to_q850_causes_as_rfc_3398_has_it() {
        for (status, cause) in [(404, 1), (486, 17), (600, 17), (480, 18), (484, 28), (502, 38), (503, 41)] {
            assert_eq!(q850_cause(status), cause, "{status}");
        }
        for (status, cause) in [(408, 102), (504, 102), (603, 21), (604, 1), (606, 58), (403, 21), (402, 21)] {
            assert_eq!(q850_cause(status), cause, "{status}");
        }
        assert_eq!((q850_cause(200), q850_cause(487), q850_cause(599), q850_cause(699)), (16, 16, 41, 31));
        assert_eq!(reason_for(486).to_string(), r#"Q.850;cause=17;text="User busy""#);
        assert_eq!(q850_text(34), "No circuit/channel available");
        assert_eq!(unanswered_result(486, false), CallResult::Busy);
        assert_eq!(unanswered_result(408, true), CallResult::NoAnswer);
        assert_eq!(unanswered_result(408, false), CallResult::Failed, "a silent trunk is the carrier's failure");
        assert_eq!(unanswered_result(503, false), CallResult::Failed);
    }

    #[test]
    fn billed_seconds_round_and_stop_at_the_paid_time() {
        assert_eq!(billed_seconds(3_020, 60), 3);
        assert_eq!(billed_seconds(3_499, 60), 3);
        assert_eq!(billed_seconds(3_500, 60), 4);
        assert_eq!(billed_seconds(120, 60), 1, "an answered call costs at least a second");
        assert_eq!(billed_seconds(5_900, 5), 5, "cut at the paid second");
    }

    #[test]
    fn paid_time_is_what_the_increments_cover() {
        let r = rate("0.60", "0", "60/60");
        assert_eq!(first_paid(&r, 5), 60);
        assert_eq!(extension_paid(&r, 5), 60);
        let r = rate("0.60", "0", "30/6");
        assert_eq!(first_paid(&r, 31), 36);
        assert_eq!(extension_paid(&r, 13), 18);
    }

    #[test]
    fn extensions_stop_at_what_the_balance_pays() {
        let r = rate("0.60", "0", "1/1"); // 0.01 a second
        assert_eq!(affordable_extension(&r, "0.05".parse().unwrap(), 60), 5);
        assert_eq!(affordable_extension(&r, "1.00".parse().unwrap(), 60), 60);
        assert_eq!(affordable_extension(&r, Amount::ZERO, 60), 0);
        assert_eq!(affordable_extension(&r, "0.009999".parse().unwrap(), 60), 0);
        let r = rate("0.60", "0", "30/6"); // 0.06 per later block
        assert_eq!(affordable_extension(&r, "0.13".parse().unwrap(), 60), 12);
    }

    proptest! {
        #[test]
        fn an_affordable_extension_is_affordable_and_maximal(
            per_minute in 0u32..500_000, next in 1u32..120, avail in 0i64..5_000_000, want in 1u32..7200,
        ) {
            let r = Rate {
                prefix: "1".into(),
                description: String::new(),
                connect_fee: Amount::ZERO,
                per_minute: Some(Amount::from_micros(i64::from(per_minute))),
                increments: Increments { first: next, next },
                per_segment: None,
                per_mms: None,
            };
            let available = Amount::from_micros(avail);
            let s = affordable_extension(&r, available, want);
            prop_assert_eq!(s % next, 0);
            prop_assert!(s <= extension_paid(&r, want));
            if s > 0 {
                prop_assert!(r.extension_price(s).unwrap() <= available);
            }
            if s < extension_paid(&r, want) {
                prop_assert!(r.extension_price(s + next).unwrap() > available);
            }
        }

        #[test]
        fn billed_never_exceeds_paid(elapsed in 0u64..100_000_000, paid in 1u32..100_000) {
            let b = billed_seconds(elapsed, paid);
            prop_assert!(b >= 1 && b <= paid);
        }
    }
}
