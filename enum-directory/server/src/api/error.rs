//! The API's errors: a typed code, an HTTP status and a JSON body `{"error":{"code":"…","message":"…"}}`.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::storage::StorageError;

/// The machine-readable error codes, serialised in snake_case.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// No bearer token, or an unknown one (401).
    Unauthorized,
    /// The number lies outside the provider's prefixes (403).
    OutsidePrefixes,
    /// Another provider holds the number (409).
    NumberHeldByOtherProvider,
    /// The number is not registered (404).
    NumberNotFound,
    /// No such route (404).
    NotFound,
    /// The route exists but not with this method (405).
    MethodNotAllowed,
    /// The path does not hold a number in E.164 form (400).
    InvalidNumber,
    /// The body is larger than the limit (400).
    BodyTooLarge,
    /// The body is not the JSON the endpoint expects (400).
    InvalidJson,
    /// A service type other than matrix, sip, sms, voice (400).
    UnknownServiceType,
    /// A URI that does not fit its service type (400).
    InvalidUri,
    /// More services than allowed (400).
    TooManyServices,
    /// An empty services list (400).
    NoServices,
    /// The key is not an unpadded base64 ed25519 public key (400).
    InvalidKey,
    /// Too many requests from this provider (429).
    RateLimited,
    /// A query parameter is missing or malformed (400).
    InvalidQuery,
    /// A log size or range beyond the tree, or reversed (400).
    LogOutOfRange,
    /// The log holds no entry for that number (and version) (404).
    LogEntryNotFound,
    /// No port request with that id that this provider is a party of (404).
    PortNotFound,
    /// The number has an open port request from another provider (409).
    PortInProgress,
    /// The calling provider already holds the number it asks to port (409).
    NumberAlreadyHeld,
    /// The port request is no longer pending (409).
    PortClosed,
    /// The losing provider's objection window has ended (409): the port completes.
    ObjectionWindowClosed,
    /// Only the other party of the port may do this (403).
    NotYourSide,
    /// The provider has no prefixes left (suspended by `provider sync --suspend-unlisted`) (403).
    ProviderSuspended,
    /// Something failed on our side (500).
    Internal,
}

/// An API failure, rendered as its status and the typed JSON error.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 401.
    #[error("a valid bearer token is required")]
    Unauthorized,
    /// 403.
    #[error("{number} is outside the prefixes this provider may serve")]
    OutsidePrefixes {
        /// The number.
        number: String,
    },
    /// 409.
    #[error("the number is held by another provider")]
    HeldByOther,
    /// 404.
    #[error("the number is not registered")]
    NumberNotFound,
    /// 404.
    #[error("no such endpoint")]
    NotFound,
    /// 405.
    #[error("method not allowed")]
    MethodNotAllowed,
    /// 400.
    #[error("not an E.164 number (+ and digits, e.g. +442079460001): {0}")]
    InvalidNumber(String),
    /// 400.
    #[error("request body larger than {limit} bytes")]
    BodyTooLarge {
        /// The limit.
        limit: usize,
    },
    /// 400.
    #[error("invalid JSON body: {0}")]
    InvalidJson(String),
    /// 400.
    #[error("unknown service type {0:?}: expected matrix, sip, sms or voice")]
    UnknownServiceType(String),
    /// 400.
    #[error("invalid URI for service {index}: {source}")]
    InvalidUri {
        /// Position in the services list.
        index: usize,
        /// Why.
        source: tincan_enum_core::ServiceError,
    },
    /// 400.
    #[error("at most {max} services per number")]
    TooManyServices {
        /// The limit.
        max: usize,
    },
    /// 400.
    #[error("a number needs at least one service")]
    NoServices,
    /// 400.
    #[error("invalid ed25519 key: {0}")]
    InvalidKey(#[from] tincan_enum_core::KeyError),
    /// 429.
    #[error("rate limit exceeded; retry in {retry_after_secs} s")]
    RateLimited {
        /// Seconds until a request will be accepted.
        retry_after_secs: u64,
    },
    /// 400.
    #[error("invalid query: {0}")]
    InvalidQuery(String),
    /// 400.
    #[error("log range: {0}")]
    LogRange(&'static str),
    /// 404.
    #[error("the log has no such entry")]
    LogEntryNotFound,
    /// 404.
    #[error("no such port request")]
    PortNotFound,
    /// 409.
    #[error("the number has an open port request from another provider")]
    PortInProgress,
    /// 409.
    #[error("this provider already holds the number")]
    NumberAlreadyHeld,
    /// 409.
    #[error("the port request is {0}, no longer pending")]
    PortClosed(&'static str),
    /// 409.
    #[error("the objection window ended; the port completes")]
    ObjectionWindowClosed,
    /// 403.
    #[error("only the {0} provider of the port may do this")]
    NotYourSide(&'static str),
    /// 403.
    #[error("this provider is suspended (it has no prefixes)")]
    ProviderSuspended,
    /// 500.
    #[error("internal error")]
    Storage(#[from] StorageError),
    /// 500.
    #[error("internal error")]
    Log(crate::translog::LogError),
    /// 500: the records could not be signed (nothing was written).
    #[error("internal error")]
    Sign(crate::dns::ZoneError),
}

impl From<crate::change::ChangeError> for ApiError {
    fn from(e: crate::change::ChangeError) -> Self {
        match e {
            crate::change::ChangeError::Storage(e) => ApiError::Storage(e),
            crate::change::ChangeError::Sign(e) => ApiError::Sign(e),
        }
    }
}

impl ApiError {
    /// The typed code.
    pub fn code(&self) -> ErrorCode {
        match self {
            ApiError::Unauthorized => ErrorCode::Unauthorized,
            ApiError::OutsidePrefixes { .. } => ErrorCode::OutsidePrefixes,
            ApiError::HeldByOther => ErrorCode::NumberHeldByOtherProvider,
            ApiError::NumberNotFound => ErrorCode::NumberNotFound,
            ApiError::NotFound => ErrorCode::NotFound,
            ApiError::MethodNotAllowed => ErrorCode::MethodNotAllowed,
            ApiError::InvalidNumber(_) => ErrorCode::InvalidNumber,
            ApiError::BodyTooLarge { .. } => ErrorCode::BodyTooLarge,
            ApiError::InvalidJson(_) => ErrorCode::InvalidJson,
            ApiError::UnknownServiceType(_) => ErrorCode::UnknownServiceType,
            ApiError::InvalidUri { .. } => ErrorCode::InvalidUri,
            ApiError::TooManyServices { .. } => ErrorCode::TooManyServices,
            ApiError::NoServices => ErrorCode::NoServices,
            ApiError::InvalidKey(_) => ErrorCode::InvalidKey,
            ApiError::RateLimited { .. } => ErrorCode::RateLimited,
            ApiError::InvalidQuery(_) => ErrorCode::InvalidQuery,
            ApiError::LogRange(_) => ErrorCode::LogOutOfRange,
            ApiError::LogEntryNotFound => ErrorCode::LogEntryNotFound,
            ApiError::PortNotFound => ErrorCode::PortNotFound,
            ApiError::PortInProgress => ErrorCode::PortInProgress,
            ApiError::NumberAlreadyHeld => ErrorCode::NumberAlreadyHeld,
            ApiError::PortClosed(_) => ErrorCode::PortClosed,
            ApiError::ObjectionWindowClosed => ErrorCode::ObjectionWindowClosed,
            ApiError::NotYourSide(_) => ErrorCode::NotYourSide,
            ApiError::ProviderSuspended => ErrorCode::ProviderSuspended,
            ApiError::Storage(_) | ApiError::Log(_) | ApiError::Sign(_) => ErrorCode::Internal,
        }
    }

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        match self.code() {
            ErrorCode::Unauthorized => StatusCode::UNAUTHORIZED,
            ErrorCode::OutsidePrefixes | ErrorCode::NotYourSide | ErrorCode::ProviderSuspended => StatusCode::FORBIDDEN,
            ErrorCode::NumberHeldByOtherProvider
            | ErrorCode::PortInProgress
            | ErrorCode::NumberAlreadyHeld
            | ErrorCode::PortClosed
            | ErrorCode::ObjectionWindowClosed => StatusCode::CONFLICT,
            ErrorCode::NumberNotFound | ErrorCode::NotFound | ErrorCode::LogEntryNotFound | ErrorCode::PortNotFound => {
                StatusCode::NOT_FOUND
            }
            ErrorCode::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ErrorCode::RateLimited => StatusCode::TOO_MANY_REQUESTS,
            ErrorCode::Internal => StatusCode::INTERNAL_SERVER_ERROR,
            _ => StatusCode::BAD_REQUEST,
        }
    }
}

#[derive(Serialize)]
struct Body<'a> {
    error: Inner<'a>,
}

#[derive(Serialize)]
struct Inner<'a> {
    code: ErrorCode,
    message: &'a str,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        match &self {
            ApiError::Storage(e) => tracing::error!(error = %e, "storage failure"),
            ApiError::Sign(e) => tracing::error!(error = %e, "signing failure"),
            _ => {}
        }
        if let ApiError::Log(e) = &self {
            tracing::error!(error = %e, "transparency log failure");
        }
        let message = self.to_string();
        let mut response =
            (self.status(), axum::Json(Body { error: Inner { code: self.code(), message: &message } })).into_response();
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
