//! One call to a Matrix homeserver's API with ruma's request and response types, over reqwest: the request is
//! built by ruma (path, query, body, the access token, and for an application service the asserted user and
//! device), sent once, and the answer read back into the endpoint's response or error type. Retries, metrics and
//! the mapping of errors are the caller's: the bridges' appservice core retries transient failures, the sign-up
//! extension answers its own client at once.

use ruma::api::auth_scheme::{AuthScheme, SendAccessToken};
use ruma::api::client::uiaa::{UiaaInfo, UiaaResponse};
use ruma::api::error::FromHttpResponseError;
use ruma::api::path_builder::{PathBuilder, SinglePath, VersionHistory};
use ruma::api::{
    AppserviceUserIdentity, IncomingResponse, OutgoingRequest, OutgoingRequestAppserviceExt, SupportedVersions,
};
use std::borrow::Cow;

/// Why one call failed.
#[derive(Debug, thiserror::Error)]
pub enum CallError<E> {
    /// The homeserver answered with the endpoint's error (a Matrix error, or a UIAA answer).
    #[error("the homeserver answered with an error")]
    Server(E),
    /// The homeserver could not be reached, or its answer was cut off.
    #[error("homeserver unreachable: {0}")]
    Transport(#[from] reqwest::Error),
    /// The request could not be built (a bug, or a base URL that is not one).
    #[error("cannot build request: {0}")]
    Build(String),
    /// The answer was not the endpoint's response.
    #[error("unexpected homeserver answer: {0}")]
    Response(String),
}

/// What a client-server endpoint answered instead of its response, whichever its error type.
#[derive(Debug)]
pub enum Refused {
    /// A Matrix error: status, `errcode` and the rest.
    Matrix(ruma::api::error::Error),
    /// A user-interactive authentication challenge (401), which a service has no way to answer; with the Matrix
    /// error it may carry (`errcode` of a failed stage).
    Uiaa(Box<UiaaInfo>),
}

impl Refused {
    /// The HTTP status.
    pub fn status(&self) -> u16 {
        match self {
            Self::Matrix(e) => e.status_code.as_u16(),
            Self::Uiaa(_) => 401,
        }
    }

    /// The `errcode` (`M_FORBIDDEN`, …), empty when the answer has none.
    pub fn errcode(&self) -> String {
        match self {
            Self::Matrix(e) => e.error_kind().map(|k| k.errcode().to_string()).unwrap_or_default(),
            Self::Uiaa(info) => info.auth_error.as_ref().map(|e| e.kind.errcode().to_string()).unwrap_or_default(),
        }
    }
}

/// The error types of client-server endpoints (a plain Matrix error, or one wrapped in a UIAA answer), read as
/// one [`Refused`].
pub trait EndpointRefusal {
    /// As a [`Refused`].
    fn into_refused(self) -> Refused;
}

impl EndpointRefusal for ruma::api::error::Error {
    fn into_refused(self) -> Refused {
        Refused::Matrix(self)
    }
}

impl EndpointRefusal for UiaaResponse {
    fn into_refused(self) -> Refused {
        match self {
            Self::MatrixError(e) => Refused::Matrix(e),
            Self::AuthResponse(info) => Refused::Uiaa(Box::new(info)),
        }
    }
}

/// Picks the input a ruma path builder needs from the versions the homeserver is assumed to speak.
pub trait PathInput: PathBuilder {
    /// The input for `versions`.
    fn input(versions: &SupportedVersions) -> Self::Input<'_>;
}

impl PathInput for VersionHistory {
    fn input(versions: &SupportedVersions) -> Cow<'_, SupportedVersions> {
        Cow::Borrowed(versions)
    }
}

impl PathInput for SinglePath {
    fn input(_: &SupportedVersions) {}
}

/// The client-server API versions Tincan's services assume of a homeserver (Synapse and the Conduit family
/// speak them all), so ruma picks the stable `v3` paths.
pub fn supported_versions() -> SupportedVersions {
    SupportedVersions::from_parts(
        &["v1.1", "v1.2", "v1.3", "v1.4", "v1.5", "v1.6", "v1.7", "v1.8", "v1.9", "v1.10", "v1.11"].map(String::from),
        &Default::default(),
    )
}

/// A homeserver to call: its base URL (no trailing `/`) and the versions to build paths for.
#[derive(Debug, Clone, Copy)]
pub struct Target<'a> {
    /// The HTTP client.
    pub http: &'a reqwest::Client,
    /// `https://hs.example` (a trailing `/` is tolerated).
    pub base_url: &'a str,
    /// See [`supported_versions`].
    pub versions: &'a SupportedVersions,
}

/// Sends `request` once with `token` (and, for an application service, the asserted `identity`) and reads the
/// answer.
pub async fn send<R>(
    target: Target<'_>,
    request: R,
    token: SendAccessToken<'_>,
    identity: AppserviceUserIdentity<'_>,
) -> Result<R::IncomingResponse, CallError<R::EndpointError>>
where
    R: OutgoingRequest,
    R::PathBuilder: PathInput,
    for<'a> R::Authentication: AuthScheme<Input<'a> = SendAccessToken<'a>>,
{
    let http_request = request
        .try_into_http_request_with_identity::<Vec<u8>>(
            target.base_url.trim_end_matches('/'),
            token,
            identity,
            R::PathBuilder::input(target.versions),
        )
        .map_err(|e| CallError::Build(e.to_string()))?;
    let request = reqwest::Request::try_from(http_request).map_err(|e| CallError::Build(e.to_string()))?;
    let response = target.http.execute(request).await?;
    let mut builder = http::Response::builder().status(response.status().as_u16());
    for (name, value) in response.headers() {
        builder = builder.header(name.as_str(), value.as_bytes());
    }
    let body = response.bytes().await?;
    let http_response = builder.body(body).map_err(|e| CallError::Response(e.to_string()))?;
    R::IncomingResponse::try_from_http_response(http_response).map_err(|e| match e {
        FromHttpResponseError::Server(e) => CallError::Server(e),
        other => CallError::Response(other.to_string()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use ruma::api::client::uiaa::AuthFlow;
    use ruma::api::error::{ErrorBody, ErrorKind, StandardErrorBody};

    fn forbidden() -> StandardErrorBody {
        StandardErrorBody::new(ErrorKind::Forbidden, "no".into())
    }

    #[test]
    fn a_matrix_error_keeps_its_status_and_errcode() {
        let e = ruma::api::error::Error::new(http::StatusCode::FORBIDDEN, ErrorBody::Standard(forbidden()));
        let refused = UiaaResponse::MatrixError(e.clone()).into_refused();
        assert_eq!((refused.status(), refused.errcode().as_str()), (403, "M_FORBIDDEN"));
        let refused = e.into_refused();
        assert_eq!((refused.status(), refused.errcode().as_str()), (403, "M_FORBIDDEN"));
    }

    #[test]
    fn a_uiaa_challenge_is_a_401_with_its_stage_errcode_if_any() {
        let mut info = UiaaInfo::new(vec![AuthFlow::new(Vec::new())]);
        let refused = UiaaResponse::AuthResponse(info.clone()).into_refused();
        assert!(matches!(refused, Refused::Uiaa(_)));
        assert_eq!((refused.status(), refused.errcode().as_str()), (401, ""));
        info.auth_error = Some(forbidden());
        let refused = UiaaResponse::AuthResponse(info).into_refused();
        assert_eq!((refused.status(), refused.errcode().as_str()), (401, "M_FORBIDDEN"));
    }
}
