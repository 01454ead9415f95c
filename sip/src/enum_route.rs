//! A phone number → where it is reached, through the validating ENUM lookup (`tincan-enum-lookup`): its
//! Matrix user (`E2U+x-matrix`) and SIP URIs (`E2U+sip`). A route comes only from an answer validated up to the
//! directory's trust anchor; an insecure answer (only possible with `allow_insecure`) gives none, and a bogus
//! one is an error — the caller then falls back (the PSTN gateway) rather than following a forged route.

use crate::uri::SipUri;
use tincan_enum_lookup::{E164, Lookup, LookupError, ValidationStatus};

/// Why a number has no route.
#[derive(Debug, thiserror::Error)]
pub enum EnumRouteError {
    /// Not an E.164 number.
    #[error("not an E.164 number: {0}")]
    Number(String),
    /// The lookup failed (bogus answer, timeout…): no route may be taken from it.
    #[error(transparent)]
    Lookup(#[from] LookupError),
}

/// What the directory says about a number, from a validated answer.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NumberRoutes {
    /// The Matrix user ID (`@alice:hs.example`), if published.
    pub matrix: Option<String>,
    /// SIP URIs, best first; entries that are not SIP URIs are skipped.
    pub sip: Vec<SipUri>,
    /// Whether the answer was DNSSEC-validated. When false, `matrix` and `sip` are empty: an unvalidated
    /// answer is never used as a route.
    pub validated: bool,
}

/// Looks `number` up and returns its routes. Insecure answers yield no routes (and `validated: false`).
pub async fn routes(lookup: &Lookup, number: &str) -> Result<NumberRoutes, EnumRouteError> {
    let e164 = E164::parse(number).map_err(|_| EnumRouteError::Number(number.to_owned()))?;
    let found = lookup.resolve(&e164).await?;
    Ok(routes_of(&found.routes, found.status))
}

/// The routes of a resolution, only when it validated.
pub fn routes_of(found: &tincan_enum_lookup::Routes, status: ValidationStatus) -> NumberRoutes {
    if status != ValidationStatus::Secure {
        return NumberRoutes::default();
    }
    NumberRoutes {
        matrix: found.matrix.as_ref().map(|m| m.user_id()),
        sip: found.sip.iter().filter_map(|s| s.parse().ok()).collect(),
        validated: true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tincan_enum_lookup::Routes;

    #[test]
    fn only_validated_answers_route() {
        let r = Routes {
            sip: vec!["sip:+4420794600001@sip.provider.example".into(), "not a uri".into()],
            ..Default::default()
        };
        let secure = routes_of(&r, ValidationStatus::Secure);
        assert!(secure.validated);
        assert_eq!(secure.sip.len(), 1);
        assert_eq!(secure.sip[0].phone_number().as_deref(), Some("+4420794600001"));
        let insecure = routes_of(&r, ValidationStatus::Insecure);
        assert_eq!(insecure, NumberRoutes::default());
    }
}
