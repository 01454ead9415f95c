//! A number's route as the client shows it: a serializable view of a validated directory
//! [`Resolution`](tincan_enum_lookup::Resolution).

use serde::{Deserialize, Serialize};
use tincan_enum_core::{E164, MasterKey};
use tincan_enum_lookup::{Resolution, ValidationStatus};

/// Where a number can be reached, by preference: Matrix first, then SIP, then the phone network.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Route {
    /// A Matrix user; `key` is the master cross-signing key the directory vouches for.
    Matrix {
        /// `@localpart:server`.
        user_id: String,
        /// The directory's key, if published.
        key: Option<MasterKey>,
        /// How the answer was validated.
        validation: Validation,
    },
    /// SIP URIs only.
    Sip {
        /// `sip:`/`sips:` URIs.
        uris: Vec<String>,
        /// How the answer was validated.
        validation: Validation,
    },
    /// Reachable through the phone network (SMS and/or voice termination).
    Tel {
        /// The number SMS terminates at.
        sms: Option<E164>,
        /// The number voice terminates at.
        voice: Option<E164>,
        /// How the answer was validated.
        validation: Validation,
    },
    /// The directory holds nothing for the number (validated denial).
    None {
        /// How the denial was validated.
        validation: Validation,
    },
}

/// The DNSSEC status of the answer a route came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Validation {
    /// Signed in a chain from the trust anchor.
    Secure,
    /// Accepted without a chain (development setups only).
    Insecure,
}

impl From<ValidationStatus> for Validation {
    fn from(s: ValidationStatus) -> Self {
        match s {
            ValidationStatus::Secure => Validation::Secure,
            ValidationStatus::Insecure => Validation::Insecure,
        }
    }
}

impl Route {
    /// The best route of a validated resolution.
    pub fn from_resolution(r: &Resolution) -> Route {
        let validation = r.status.into();
        if let Some(user) = &r.routes.matrix {
            Route::Matrix { user_id: user.user_id(), key: r.key, validation }
        } else if !r.routes.sip.is_empty() {
            Route::Sip { uris: r.routes.sip.clone(), validation }
        } else if r.routes.sms.is_some() || r.routes.voice.is_some() {
            Route::Tel { sms: r.routes.sms.clone(), voice: r.routes.voice.clone(), validation }
        } else {
            Route::None { validation }
        }
    }

    /// The validation status of the answer.
    pub fn validation(&self) -> Validation {
        match self {
            Route::Matrix { validation, .. }
            | Route::Sip { validation, .. }
            | Route::Tel { validation, .. }
            | Route::None { validation } => *validation,
        }
    }
}

impl std::fmt::Display for Route {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Route::Matrix { user_id, .. } => write!(f, "Matrix {user_id}"),
            Route::Sip { uris, .. } => write!(f, "SIP {}", uris.join(", ")),
            Route::Tel { sms, voice, .. } => {
                let mut parts = Vec::new();
                if let Some(n) = sms {
                    parts.push(format!("SMS {n}"));
                }
                if let Some(n) = voice {
                    parts.push(format!("voice {n}"));
                }
                write!(f, "phone network ({})", parts.join(", "))
            }
            Route::None { .. } => write!(f, "none (not in the directory)"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tincan_enum_lookup::{MatrixUser, Routes};

    fn res(routes: Routes, key: Option<MasterKey>) -> Resolution {
        Resolution { number: E164::parse("+442079460001").unwrap(), routes, key, status: ValidationStatus::Secure }
    }

    #[test]
    fn matrix_wins_over_sip_and_tel() {
        let [key, ..] = crate::trust::tests::keys();
        let routes = Routes {
            matrix: MatrixUser::from_uri("matrix:u/alice:hs.test?action=chat"),
            sip: vec!["sip:+442079460001@sip.test".into()],
            sms: Some(E164::parse("+442079460001").unwrap()),
            voice: None,
        };
        let r = Route::from_resolution(&res(routes, Some(key)));
        assert_eq!(
            r,
            Route::Matrix { user_id: "@alice:hs.test".into(), key: Some(key), validation: Validation::Secure }
        );
    }

    #[test]
    fn sip_then_tel_then_none() {
        let sip = Routes { sip: vec!["sip:a@b".into()], ..Default::default() };
        assert!(matches!(Route::from_resolution(&res(sip, None)), Route::Sip { .. }));
        let tel = Routes { voice: Some(E164::parse("+442079460001").unwrap()), ..Default::default() };
        assert!(matches!(Route::from_resolution(&res(tel, None)), Route::Tel { .. }));
        let none = Route::from_resolution(&res(Routes::default(), None));
        assert_eq!(none, Route::None { validation: Validation::Secure });
        assert_eq!(none.to_string(), "none (not in the directory)");
    }

    #[test]
    fn serializes_tagged() {
        let v = serde_json::to_value(Route::None { validation: Validation::Secure }).unwrap();
        assert_eq!(v, serde_json::json!({"kind": "none", "validation": "secure"}));
    }
}
