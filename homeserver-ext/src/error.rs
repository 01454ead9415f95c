//! The HTTP API's error type: every failure maps to a Matrix error code from ruma's `ErrorKind`.

use crate::limits::Limited;
use crate::number::NumberError;
use axum::response::{IntoResponse, Response};
use ruma::api::OutgoingResponse;
use ruma::api::error::{ErrorBody, ErrorKind, LimitExceededErrorData, RetryAfter, StandardErrorBody};
use std::time::Duration;

/// Why a client request failed.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The phone number is malformed or not valid.
    #[error("invalid phone number: {0}")]
    InvalidNumber(#[from] NumberError),
    /// A request field has a bad value (`client_secret` charset, `send_attempt`…); the field is named.
    #[error("invalid parameter: {0}")]
    InvalidParam(&'static str),
    /// The body is not the expected JSON.
    #[error("bad JSON: {0}")]
    BadJson(String),
    /// The body is not JSON at all.
    #[error("the body is not JSON")]
    NotJson,
    /// The number's country is not in the allowed list, or the number is premium-rate or blocked.
    #[error("this phone number cannot be used here")]
    ThreepidDenied,
    /// A token bucket is empty, the resend is too early, or the session's attempts are used up.
    #[error("too many requests")]
    LimitExceeded(Option<Duration>),
    /// No session matches the sid and client secret (or it was already used).
    #[error("no valid session")]
    NoValidSession,
    /// The session's code expired.
    #[error("the code has expired; request a new one")]
    SessionExpired,
    /// The session has not been validated with the right code yet.
    #[error("the session has not been validated")]
    SessionNotValidated,
    /// A `3pid/bind` would move the number to another Matrix ID with a validation older than the binding it
    /// replaces, or older than `codes.rebind_within_secs`.
    #[error("moving this number to another Matrix ID needs a fresh validation of it")]
    FreshValidationNeeded,
    /// The code is wrong.
    #[error("wrong code")]
    WrongCode,
    /// The account has a registration lock: the sign-in needs its PIN too.
    #[error("this number has a registration lock: send its PIN with the code")]
    RegistrationLocked,
    /// The registration lock PIN is wrong.
    #[error("wrong PIN")]
    WrongPin,
    /// A server-side failure with no better type (a hashing task that died).
    #[error("internal: {0}")]
    Internal(&'static str),
    /// No access token was sent.
    #[error("missing access token")]
    MissingToken,
    /// The access token is unknown.
    #[error("unknown access token")]
    UnknownToken,
    /// The caller may not do this (someone else's binding, a key that is not theirs).
    #[error("forbidden: {0}")]
    Forbidden(&'static str),
    /// `account/close` for an account whose number has not moved away by a port (never ported, the port objected
    /// to or cancelled, or the number came back): only an old account left behind by a port can be closed here.
    #[error("this account's number has not moved away by a port: only such an old account can be closed here")]
    NotMovedAway,
    /// `account/close` while the port taking the account's number away is still pending.
    #[error("the port of this account's number has not completed yet: close the old account once it has moved")]
    PortPending,
    /// A `lookup` used an outdated pepper.
    #[error("the pepper is not the current one")]
    InvalidPepper,
    /// A `lookup` used an algorithm we do not offer.
    #[error("unsupported lookup algorithm")]
    InvalidAlgorithm,
    /// The thing asked for does not exist.
    #[error("not found")]
    NotFound,
    /// This deployment does not offer it: the setting named is not configured.
    #[error("not offered here: {0} is not configured")]
    Unavailable(&'static str),
    /// Storage failed.
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    /// The SMS could not be sent.
    #[error(transparent)]
    Sms(#[from] crate::sms::SmsError),
    /// The homeserver refused or failed.
    #[error(transparent)]
    Homeserver(#[from] crate::homeserver::HomeserverError),
    /// The directory refused or failed.
    #[error(transparent)]
    Directory(#[from] crate::directory::DirectoryError),
    /// Another homeserver (`account/register`'s `matrix_server_name`) could not be located or reached.
    #[error("matrix_server_name: {0}")]
    Federation(#[from] crate::federation::FederationError),
}

impl From<Limited> for ApiError {
    fn from(l: Limited) -> Self {
        ApiError::LimitExceeded(Some(l.retry_after))
    }
}

/// A Matrix error kind for a code ruma does not model (Identity Service codes such as `M_INVALID_PEPPER`).
fn custom(errcode: &str) -> ErrorKind {
    serde_json::from_value(serde_json::json!({ "errcode": errcode })).expect("any errcode deserializes")
}

impl ApiError {
    /// The HTTP status and Matrix error kind.
    pub fn kind(&self) -> (axum::http::StatusCode, ErrorKind) {
        use axum::http::StatusCode as S;
        match self {
            ApiError::InvalidNumber(_) | ApiError::InvalidParam(_) => (S::BAD_REQUEST, ErrorKind::InvalidParam),
            ApiError::BadJson(_) => (S::BAD_REQUEST, ErrorKind::BadJson),
            ApiError::NotJson => (S::BAD_REQUEST, ErrorKind::NotJson),
            ApiError::ThreepidDenied => (S::FORBIDDEN, ErrorKind::ThreepidDenied),
            ApiError::LimitExceeded(wait) => {
                let mut data = LimitExceededErrorData::new();
                data.retry_after = wait.map(|w| RetryAfter::Delay(w.max(Duration::from_millis(1))));
                (S::TOO_MANY_REQUESTS, ErrorKind::LimitExceeded(data))
            }
            ApiError::NoValidSession => (S::BAD_REQUEST, custom("M_NO_VALID_SESSION")),
            ApiError::SessionExpired => (S::BAD_REQUEST, custom("M_SESSION_EXPIRED")),
            ApiError::SessionNotValidated | ApiError::FreshValidationNeeded => {
                (S::BAD_REQUEST, custom("M_SESSION_NOT_VALIDATED"))
            }
            ApiError::WrongCode => (S::BAD_REQUEST, ErrorKind::ThreepidAuthFailed),
            ApiError::RegistrationLocked => (S::FORBIDDEN, custom("IO.TINCAN.REGISTRATION_LOCKED")),
            ApiError::WrongPin => (S::FORBIDDEN, custom("IO.TINCAN.WRONG_PIN")),
            ApiError::Internal(_) => (S::INTERNAL_SERVER_ERROR, ErrorKind::Unknown),
            ApiError::MissingToken => (S::UNAUTHORIZED, ErrorKind::MissingToken),
            ApiError::UnknownToken => (S::UNAUTHORIZED, ErrorKind::Unauthorized),
            ApiError::Forbidden(_) => (S::FORBIDDEN, ErrorKind::Forbidden),
            ApiError::NotMovedAway => (S::CONFLICT, custom("IO.TINCAN.NOT_MOVED_AWAY")),
            ApiError::PortPending => (S::CONFLICT, custom("IO.TINCAN.PORT_PENDING")),
            ApiError::InvalidPepper => (S::BAD_REQUEST, custom("M_INVALID_PEPPER")),
            ApiError::InvalidAlgorithm => (S::BAD_REQUEST, ErrorKind::InvalidParam),
            ApiError::NotFound => (S::NOT_FOUND, ErrorKind::NotFound),
            ApiError::Unavailable(_) => (S::NOT_IMPLEMENTED, ErrorKind::Unrecognized),
            ApiError::Store(_) => (S::INTERNAL_SERVER_ERROR, ErrorKind::Unknown),
            ApiError::Sms(crate::sms::SmsError::SendTimeout(_)) => (S::GATEWAY_TIMEOUT, ErrorKind::Unknown),
            ApiError::Sms(_) | ApiError::Homeserver(_) | ApiError::Directory(_) => (S::BAD_GATEWAY, ErrorKind::Unknown),
            ApiError::Federation(e) => federation_kind(e),
        }
    }
}

/// A server name that names no homeserver is the client's mistake (400, and the body says what discovery
/// found); one that resolves only to addresses we do not contact is refused (403); a DNS or connection failure
/// is the way there failing (502, generic body).
fn federation_kind(e: &crate::federation::FederationError) -> (axum::http::StatusCode, ErrorKind) {
    use crate::federation::FederationError as F;
    use crate::fetch::DiscoveryError as D;
    use axum::http::StatusCode as S;
    match e {
        F::Discovery(D::InvalidServerName(_) | D::NotFound { .. } | D::NoService { .. }) => {
            (S::BAD_REQUEST, ErrorKind::InvalidParam)
        }
        F::Discovery(D::Refused(_)) => (S::FORBIDDEN, ErrorKind::Forbidden),
        F::Discovery(D::Dns { .. }) | F::Http(_) | F::TooLarge => (S::BAD_GATEWAY, ErrorKind::Unknown),
    }
}

/// A fresh reference for one failed request: 16 hex digits, unpredictable across restarts (std's randomly keyed
/// hasher over a counter), unique within the process.
fn error_id() -> String {
    use std::hash::BuildHasher;
    use std::sync::OnceLock;
    use std::sync::atomic::{AtomicU64, Ordering};
    static KEYS: OnceLock<std::collections::hash_map::RandomState> = OnceLock::new();
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    format!("{:016x}", KEYS.get_or_init(Default::default).hash_one(n))
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, kind) = self.kind();
        // A server-side failure's text can hold what clients must not see (a webhook URL with its key, a
        // database message): the body gets a generic message and a reference that finds the whole error in
        // the log.
        let message = if status.is_server_error() {
            let id = error_id();
            tracing::error!(error_id = %id, error = %self, "request failed");
            format!("internal error; reference {id}")
        } else {
            self.to_string()
        };
        let error = ruma::api::error::Error::new(status, ErrorBody::Standard(StandardErrorBody::new(kind, message)));
        match error.try_into_http_response::<Vec<u8>>() {
            Ok(resp) => resp.map(axum::body::Body::from),
            Err(_) => status.into_response(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn body(e: ApiError) -> (u16, serde_json::Value) {
        let r = e.into_response();
        let status = r.status().as_u16();
        let bytes = axum::body::to_bytes(r.into_body(), 10_000).await.unwrap();
        (status, serde_json::from_slice(&bytes).unwrap())
    }

    #[tokio::test]
    async fn limit_exceeded_has_retry_after_ms() {
        let (s, b) = body(ApiError::LimitExceeded(Some(Duration::from_secs(3)))).await;
        assert_eq!(s, 429);
        assert_eq!(b["errcode"], "M_LIMIT_EXCEEDED");
        assert_eq!(b["retry_after_ms"], 3000);
    }

    #[tokio::test]
    async fn server_errors_are_generic_with_a_fresh_reference() {
        let inner = crate::homeserver::HomeserverError::Malformed("sub");
        let (s, a) = body(ApiError::Homeserver(inner)).await;
        let (_, b) = body(ApiError::Store(crate::store::StoreError::NoPepper)).await;
        assert_eq!((s, a["errcode"].as_str().unwrap()), (502, "M_UNKNOWN"));
        let (a, b) = (a["error"].as_str().unwrap(), b["error"].as_str().unwrap());
        assert!(a.starts_with("internal error; reference ") && !a.contains("sub"), "{a}");
        assert_ne!(a, b, "each failure has its own reference");
    }

    #[tokio::test]
    async fn custom_codes() {
        let (s, b) = body(ApiError::InvalidPepper).await;
        assert_eq!((s, b["errcode"].as_str().unwrap()), (400, "M_INVALID_PEPPER"));
        let (s, b) = body(ApiError::ThreepidDenied).await;
        assert_eq!((s, b["errcode"].as_str().unwrap()), (403, "M_THREEPID_DENIED"));
        let (s, b) = body(ApiError::PortPending).await;
        assert_eq!((s, b["errcode"].as_str().unwrap()), (409, "IO.TINCAN.PORT_PENDING"));
    }
}
