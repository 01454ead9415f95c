//! The API's errors: a typed code, an HTTP status and a JSON body `{"error":{"code":"…","message":"…"}}`.
//! Charging refusals keep the code [`ChargeError::code`] gives them, so [`crate::client::GatewayClient`] maps
//! them back.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

use crate::charging::ChargeError;
use crate::ledger::LedgerError;
use crate::storage::StorageError;

/// An API failure.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// A charging rule refused the request.
    #[error(transparent)]
    Charge(#[from] ChargeError),
    /// 401: no token, or an unknown or expired one.
    #[error("a valid bearer token is required")]
    Unauthorized,
    /// 403: the token's scope does not allow this.
    #[error("this token may not do this: {0}")]
    Forbidden(&'static str),
    /// 404: no such route.
    #[error("no such endpoint")]
    NotFound,
    /// 405.
    #[error("method not allowed")]
    MethodNotAllowed,
    /// 400: the body is larger than the limit.
    #[error("request body larger than {limit} bytes")]
    BodyTooLarge {
        /// The limit.
        limit: usize,
    },
    /// 413: a rate deck larger than `api.max_deck_bytes` (nothing is imported).
    #[error("rate deck larger than {limit} bytes (api.max_deck_bytes)")]
    DeckTooLarge {
        /// The limit.
        limit: usize,
    },
    /// 400: the body is not the JSON the endpoint expects.
    #[error("invalid JSON body: {0}")]
    InvalidJson(String),
    /// 400: a path or query parameter is malformed.
    #[error("invalid parameter: {0}")]
    InvalidParam(String),
    /// 429: too many requests from this caller.
    #[error("rate limit exceeded; retry in {retry_after_secs} s")]
    RateLimited {
        /// Seconds until a request will be accepted.
        retry_after_secs: u64,
    },
    /// 404/409: a voucher could not be redeemed (`voucher_unknown`, `voucher_used`, `voucher_expired`,
    /// `voucher_currency`).
    #[error("{0}")]
    Voucher(String, &'static str),
    /// 400: a webhook's signature or event was refused (`bad_signature`, `bad_event`).
    #[error("{0}")]
    Webhook(String, &'static str),
    /// 502: the homeserver could not vouch for the user.
    #[error("the homeserver could not be asked: {0}")]
    Homeserver(String),
    /// 500.
    #[error("internal error")]
    Storage(#[from] StorageError),
}

impl From<LedgerError> for ApiError {
    fn from(e: LedgerError) -> Self {
        match e {
            LedgerError::Charge(c) => ApiError::Charge(c),
            LedgerError::Storage(s) => ApiError::Storage(s),
        }
    }
}

impl ApiError {
    /// The typed code.
    pub fn code(&self) -> &'static str {
        match self {
            ApiError::Charge(c) => c.code(),
            ApiError::Unauthorized => "unauthorized",
            ApiError::Forbidden(_) => "forbidden",
            ApiError::NotFound => "not_found",
            ApiError::MethodNotAllowed => "method_not_allowed",
            ApiError::BodyTooLarge { .. } => "body_too_large",
            ApiError::DeckTooLarge { .. } => "deck_too_large",
            ApiError::InvalidJson(_) => "invalid_json",
            ApiError::InvalidParam(_) => "invalid_param",
            ApiError::RateLimited { .. } => "rate_limited",
            ApiError::Homeserver(_) => "homeserver_unavailable",
            ApiError::Voucher(_, code) | ApiError::Webhook(_, code) => code,
            ApiError::Storage(_) => "internal",
        }
    }

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::Charge(c) => charge_status(c),
            ApiError::Unauthorized => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::BodyTooLarge { .. } | ApiError::InvalidJson(_) | ApiError::InvalidParam(_) => {
                StatusCode::BAD_REQUEST
            }
            ApiError::DeckTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Homeserver(_) => StatusCode::BAD_GATEWAY,
            ApiError::Voucher(_, "voucher_unknown") => StatusCode::NOT_FOUND,
            ApiError::Voucher(..) => StatusCode::CONFLICT,
            ApiError::Webhook(..) => StatusCode::BAD_REQUEST,
            ApiError::Storage(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

/// The status a charging refusal is sent with.
pub fn charge_status(c: &ChargeError) -> StatusCode {
    match c {
        ChargeError::Invalid(_) => StatusCode::BAD_REQUEST,
        ChargeError::AccountNotFound | ChargeError::HoldNotFound | ChargeError::NoRate => StatusCode::NOT_FOUND,
        ChargeError::AccountDisabled | ChargeError::DestinationBlocked(_) => StatusCode::FORBIDDEN,
        ChargeError::InsufficientFunds => StatusCode::PAYMENT_REQUIRED,
        ChargeError::HoldClosed(_)
        | ChargeError::HoldExpired
        | ChargeError::ExceedsHold
        | ChargeError::IdempotencyConflict
        | ChargeError::CallElsewhere => StatusCode::CONFLICT,
        ChargeError::LimitExceeded(_) => StatusCode::TOO_MANY_REQUESTS,
        ChargeError::Unauthorized(_) => StatusCode::FORBIDDEN,
        ChargeError::Unavailable(_) | ChargeError::RunTakenOver => StatusCode::SERVICE_UNAVAILABLE,
    }
}

/// The error body every failure is sent as.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ErrorBody {
    /// The error.
    pub error: ErrorDetail,
}

/// The error itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ErrorDetail {
    /// The typed code (`insufficient_funds`, `invalid_json`…).
    pub code: String,
    /// A human-readable explanation.
    pub message: String,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if let ApiError::Storage(e) = &self {
            tracing::error!(error = %e, "storage failure");
        }
        let body = ErrorBody { error: ErrorDetail { code: self.code().to_owned(), message: self.to_string() } };
        let mut response = (self.status(), axum::Json(body)).into_response();
        let headers = response.headers_mut();
        match self {
            ApiError::Unauthorized => {
                headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            ApiError::RateLimited { retry_after_secs } => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from(retry_after_secs));
            }
            _ => {}
        }
        response
    }
}

pub(super) async fn not_found() -> ApiError {
    ApiError::NotFound
}

pub(super) async fn method_not_allowed() -> ApiError {
    ApiError::MethodNotAllowed
}
