//! Calls to the homeserver's client-server API as the application service, with retries.
//!
//! Every call uses ruma's request and response types; identity assertion (`?user_id=`) makes the call on
//! behalf of a ghost. Rate limiting (`M_LIMIT_EXCEEDED`, honouring `retry_after_ms`), 5xx answers and
//! connection failures are retried with exponential backoff; other errors are returned at once.

use crate::metrics::Metrics;
use ruma::api::auth_scheme::{AuthScheme, SendAccessToken};
use ruma::api::client::authenticated_media::get_content;
use ruma::api::error::{ErrorKind, RetryAfter};
use ruma::api::{
    AppserviceUserIdentity, IncomingResponse, OutgoingRequest, OutgoingRequestAppserviceExt, SupportedVersions,
};
use ruma::{DeviceId, MxcUri, UserId};
use std::sync::Arc;
use std::time::Duration;
use tincan_common::matrix_client::{self, CallError, Refused, Target};

/// Why a homeserver call failed (after retries).
#[derive(Debug, thiserror::Error)]
pub enum HomeserverError {
    /// The homeserver answered with a Matrix error.
    #[error("homeserver error: {0}")]
    Matrix(#[from] ruma::api::error::Error),
    /// The homeserver could not be reached.
    #[error("homeserver unreachable: {0}")]
    Transport(#[from] reqwest::Error),
    /// The request could not be built (a bug, or an invalid base URL).
    #[error("cannot build request: {0}")]
    Build(String),
    /// The answer did not parse.
    #[error("unexpected homeserver answer: {0}")]
    Response(String),
}

impl HomeserverError {
    /// The Matrix error kind, when the homeserver sent one.
    pub fn kind(&self) -> Option<&ErrorKind> {
        match self {
            HomeserverError::Matrix(e) => e.error_kind(),
            _ => None,
        }
    }
}

/// Retry policy for homeserver calls.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    /// Attempts in all, the first included.
    pub attempts: u32,
    /// Delay before the first retry; doubled each time.
    pub initial: Duration,
    /// Longest delay between attempts.
    pub max: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self { attempts: 8, initial: Duration::from_millis(100), max: Duration::from_secs(30) }
    }
}

impl From<Refused> for HomeserverError {
    fn from(r: Refused) -> Self {
        match r {
            Refused::Matrix(e) => Self::Matrix(e),
            // The bridges never answer user-interactive authentication.
            Refused::Uiaa(_) => Self::Response("User-Interactive Authentication required.".into()),
        }
    }
}

impl<E: EndpointRefusal> From<CallError<E>> for HomeserverError {
    fn from(e: CallError<E>) -> Self {
        match e {
            CallError::Server(e) => e.into_refused().into(),
            CallError::Transport(e) => Self::Transport(e),
            CallError::Build(e) => Self::Build(e),
            CallError::Response(e) => Self::Response(e),
        }
    }
}

pub use tincan_common::matrix_client::{EndpointRefusal, PathInput};

/// The homeserver, as the application service sees it.
#[derive(Debug, Clone)]
pub struct Homeserver {
    base_url: Arc<str>,
    as_token: Arc<str>,
    http: reqwest::Client,
    versions: Arc<SupportedVersions>,
    retry: RetryPolicy,
    metrics: Metrics,
}

impl Homeserver {
    /// A client for `base_url` presenting `as_token`.
    pub fn new(base_url: &str, as_token: &str, metrics: Metrics) -> Self {
        let versions = matrix_client::supported_versions();
        Self {
            base_url: base_url.trim_end_matches('/').into(),
            as_token: as_token.into(),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(60))
                .build()
                .expect("a plain reqwest client builds"),
            versions: Arc::new(versions),
            retry: RetryPolicy::default(),
            metrics,
        }
    }

    /// Replaces the retry policy.
    pub fn with_retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    /// Sends `request` as the bridge bot (`as_user` `None`) or as a ghost, retrying transient failures.
    pub async fn send<R>(&self, request: R, as_user: Option<&UserId>) -> Result<R::IncomingResponse, HomeserverError>
    where
        R: OutgoingRequest + Send,
        R::EndpointError: EndpointRefusal,
        R::PathBuilder: PathInput,
        for<'a> R::Authentication: AuthScheme<Input<'a> = SendAccessToken<'a>>,
    {
        self.send_with(request, as_user, None).await
    }

    /// Sends `request` as `user` on its device `device` (the `device_id` query parameter of MSC4326: key
    /// uploads, to-device messages and encrypted sends of a ghost's device), retrying transient failures.
    pub async fn send_as_device<R>(
        &self,
        request: R,
        user: &UserId,
        device: &DeviceId,
    ) -> Result<R::IncomingResponse, HomeserverError>
    where
        R: OutgoingRequest + Send,
        R::EndpointError: EndpointRefusal,
        R::PathBuilder: PathInput,
        for<'a> R::Authentication: AuthScheme<Input<'a> = SendAccessToken<'a>>,
    {
        self.send_with(request, Some(user), Some(device)).await
    }

    /// Sends `request` as `user`, on its device `device` when there is one ([`send_as_device`](Self::send_as_device))
    /// else as [`send`](Self::send) does.
    pub async fn send_from<R>(
        &self,
        request: R,
        user: &UserId,
        device: Option<&DeviceId>,
    ) -> Result<R::IncomingResponse, HomeserverError>
    where
        R: OutgoingRequest + Send,
        R::EndpointError: EndpointRefusal,
        R::PathBuilder: PathInput,
        for<'a> R::Authentication: AuthScheme<Input<'a> = SendAccessToken<'a>>,
    {
        self.send_with(request, Some(user), device).await
    }

    async fn send_with<R>(
        &self,
        request: R,
        as_user: Option<&UserId>,
        device: Option<&DeviceId>,
    ) -> Result<R::IncomingResponse, HomeserverError>
    where
        R: OutgoingRequest + Send,
        R::EndpointError: EndpointRefusal,
        R::PathBuilder: PathInput,
        for<'a> R::Authentication: AuthScheme<Input<'a> = SendAccessToken<'a>>,
    {
        let mut delay = self.retry.initial;
        let mut attempt = 1;
        loop {
            let result = self.send_once(request.clone(), as_user, device).await;
            let wait = match &result {
                Ok(_) => return result,
                Err(e) if attempt >= self.retry.attempts => {
                    tracing::warn!(error = %e, attempt, "homeserver call failed, giving up");
                    return result;
                }
                Err(HomeserverError::Matrix(e)) => match e.error_kind() {
                    Some(ErrorKind::LimitExceeded(data)) => match data.retry_after {
                        Some(RetryAfter::Delay(d)) => d,
                        _ => delay,
                    },
                    _ if e.status_code.is_server_error() => delay,
                    _ => return result,
                },
                Err(HomeserverError::Transport(_)) => delay,
                Err(_) => return result,
            };
            self.metrics.inc(&self.metrics.hs_retries);
            tracing::debug!(?wait, attempt, "retrying homeserver call");
            tokio::time::sleep(wait.min(self.retry.max)).await;
            delay = (delay * 2).min(self.retry.max);
            attempt += 1;
        }
    }

    async fn send_once<R>(
        &self,
        request: R,
        as_user: Option<&UserId>,
        device: Option<&DeviceId>,
    ) -> Result<R::IncomingResponse, HomeserverError>
    where
        R: OutgoingRequest,
        R::EndpointError: EndpointRefusal,
        R::PathBuilder: PathInput,
        for<'a> R::Authentication: AuthScheme<Input<'a> = SendAccessToken<'a>>,
    {
        let mut identity = match as_user {
            Some(u) => AppserviceUserIdentity::new(u),
            None => AppserviceUserIdentity::default(),
        };
        identity.device_id = device;
        self.metrics.inc(&self.metrics.hs_requests);
        let target = Target { http: &self.http, base_url: &self.base_url, versions: &self.versions };
        Ok(matrix_client::send(target, request, SendAccessToken::Appservice(&self.as_token), identity).await?)
    }
}

impl Homeserver {
    /// Downloads `mxc` through the authenticated media API (`GET /_matrix/client/v1/media/download`) as
    /// `as_user`; more than `max` bytes (announced or streamed) is [`DownloadError::TooLarge`] and the rest of
    /// the body is not read. Transport failures and 5xx answers are tried again like other calls.
    pub async fn download(&self, mxc: &MxcUri, as_user: &UserId, max: u64) -> Result<Vec<u8>, DownloadError> {
        let (server, media_id) = mxc.parts().map_err(|e| HomeserverError::Build(format!("{mxc}: {e}")))?;
        let mut delay = self.retry.initial;
        let mut attempt = 1;
        loop {
            let req = get_content::v1::Request::new(media_id.to_owned(), server.to_owned());
            match self.download_once(req, as_user, max).await {
                Err(DownloadError::Homeserver(e))
                    if attempt < self.retry.attempts
                        && match &e {
                            HomeserverError::Transport(_) => true,
                            HomeserverError::Matrix(m) => m.status_code.is_server_error(),
                            _ => false,
                        } =>
                {
                    self.metrics.inc(&self.metrics.hs_retries);
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(self.retry.max);
                    attempt += 1;
                }
                other => return other,
            }
        }
    }

    async fn download_once(
        &self,
        request: get_content::v1::Request,
        as_user: &UserId,
        max: u64,
    ) -> Result<Vec<u8>, DownloadError> {
        let http_request = request
            .try_into_http_request_with_identity::<Vec<u8>>(
                &self.base_url,
                SendAccessToken::Appservice(&self.as_token),
                AppserviceUserIdentity::new(as_user),
                <get_content::v1::Request as ruma::api::Metadata>::PathBuilder::input(&self.versions),
            )
            .map_err(|e| HomeserverError::Build(e.to_string()))?;
        self.metrics.inc(&self.metrics.hs_requests);
        let request = reqwest::Request::try_from(http_request).map_err(|e| HomeserverError::Build(e.to_string()))?;
        let mut response = self.http.execute(request).await.map_err(HomeserverError::from)?;
        let status = response.status();
        if !status.is_success() {
            // The error body, read by ruma into a Matrix error.
            let mut builder = http_response_builder(status);
            for (name, value) in response.headers() {
                builder = builder.header(name, value);
            }
            let body = response.bytes().await.map_err(HomeserverError::from)?;
            let http_response = builder.body(body).map_err(|e| HomeserverError::Response(e.to_string()))?;
            return Err(match get_content::v1::Response::try_from_http_response(http_response) {
                Err(ruma::api::error::FromHttpResponseError::Server(e)) => HomeserverError::Matrix(e).into(),
                Err(other) => HomeserverError::Response(other.to_string()).into(),
                Ok(_) => HomeserverError::Response(format!("status {status} with a body")).into(),
            });
        }
        if let Some(len) = response.content_length()
            && len > max
        {
            return Err(DownloadError::TooLarge { max });
        }
        let mut data = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(HomeserverError::from)? {
            if (data.len() + chunk.len()) as u64 > max {
                return Err(DownloadError::TooLarge { max });
            }
            data.extend_from_slice(&chunk);
        }
        Ok(data)
    }
}

/// Why a media download failed.
#[derive(Debug, thiserror::Error)]
pub enum DownloadError {
    /// Bigger than the limit.
    #[error("larger than the limit of {max} bytes")]
    TooLarge {
        /// The limit.
        max: u64,
    },
    /// The homeserver refused or could not be reached.
    #[error(transparent)]
    Homeserver(#[from] HomeserverError),
}

fn http_response_builder(status: reqwest::StatusCode) -> axum::http::response::Builder {
    axum::http::Response::builder().status(status.as_u16())
}

#[cfg(test)]
mod tests {
    //! Retry behaviour against a scripted HTTP server (the real-Synapse path is in `tests/it/synapse.rs`).

    use super::*;
    use axum::extract::{Request, State};
    use axum::http::StatusCode;
    use axum::response::IntoResponse;
    use ruma::api::client::account::whoami;
    use std::sync::Mutex;

    type Script = Arc<Mutex<(Vec<(u16, &'static str)>, Vec<String>)>>;

    async fn scripted(State(script): State<Script>, req: Request) -> impl IntoResponse {
        let mut s = script.lock().unwrap();
        let auth = req.headers().get("authorization").and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
        s.1.push(format!("{} {}", auth, req.uri()));
        let (status, body) = if s.0.is_empty() { (500, "{}") } else { s.0.remove(0) };
        (StatusCode::from_u16(status).unwrap(), [("content-type", "application/json")], body)
    }

    async fn serve(responses: Vec<(u16, &'static str)>) -> (String, Script) {
        let script: Script = Arc::new(Mutex::new((responses, Vec::new())));
        let app = axum::Router::new().fallback(scripted).with_state(script.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        (url, script)
    }

    fn hs(url: &str) -> Homeserver {
        Homeserver::new(url, "AS", Metrics::default()).with_retry(RetryPolicy {
            attempts: 4,
            initial: Duration::from_millis(10),
            max: Duration::from_millis(200),
        })
    }

    const OK: (u16, &str) = (200, r#"{"user_id": "@bot:hs.test"}"#);

    #[tokio::test]
    async fn rate_limits_and_server_errors_are_retried() {
        let (url, script) = serve(vec![
            (429, r#"{"errcode": "M_LIMIT_EXCEEDED", "error": "slow down", "retry_after_ms": 50}"#),
            (502, r#"{"errcode": "M_UNKNOWN", "error": "bad gateway"}"#),
            OK,
        ])
        .await;
        let hs = hs(&url);
        let ghost = ruma::UserId::parse("@sms_+49:hs.test").unwrap();
        let started = std::time::Instant::now();
        let resp = hs.send(whoami::v3::Request::new(), Some(&ghost)).await.unwrap();
        assert_eq!(resp.user_id.as_str(), "@bot:hs.test");
        assert!(started.elapsed() >= Duration::from_millis(50), "retry_after_ms was honoured");
        let seen = script.lock().unwrap().1.clone();
        assert_eq!(seen.len(), 3);
        assert!(
            seen[0].starts_with("Bearer AS /_matrix/client/v3/account/whoami?user_id=%40sms_%2B49%3Ahs.test"),
            "{seen:?}"
        );
        assert_eq!(hs.metrics.hs_retries.get(), 2);
    }

    #[tokio::test]
    async fn client_errors_are_not_retried() {
        let (url, script) = serve(vec![(403, r#"{"errcode": "M_FORBIDDEN", "error": "no"}"#), OK]).await;
        let err = hs(&url).send(whoami::v3::Request::new(), None).await.unwrap_err();
        assert!(matches!(err.kind(), Some(ErrorKind::Forbidden)), "{err}");
        assert_eq!(script.lock().unwrap().1.len(), 1);
    }

    #[tokio::test]
    async fn gives_up_after_the_last_attempt() {
        let (url, script) = serve(vec![]).await;
        let err = hs(&url).send(whoami::v3::Request::new(), None).await.unwrap_err();
        assert!(matches!(err, HomeserverError::Matrix(_) | HomeserverError::Response(_)), "{err}");
        assert_eq!(script.lock().unwrap().1.len(), 4);
    }
}
