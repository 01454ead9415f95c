//! `GET /oauth2/authorize` (OpenID Connect Core §3.1.2, RFC 6749 §4.1, RFC 7636) and the sign-in pages it
//! leads to: `POST /oauth2/authorize/phone` (number → SMS code) and `POST /oauth2/authorize/code` (code → back
//! to the client with an authorization code).
//!
//! A request naming an unknown client or a redirect URI not registered for it (compared exactly) gets an error
//! page and is never redirected (RFC 6749 §4.1.2.1); any other bad request is sent back to the client with an
//! OAuth error. PKCE is required and only S256 is accepted. The pages use the sign-up's code sessions, so the
//! same limits, attempt caps, expiry and number policy apply as on the API.

use super::page::{self, EN, Strings};
use super::{Provider, client_ip, pkce_well_formed};
use crate::error::ApiError;
use crate::number::E164;
use crate::store::{OidcCode, OidcSignIn, Purpose};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use std::collections::HashMap;
use std::sync::Arc;

const COOKIE: &str = "tincan_oidc";
/// Form bodies larger than this are refused (the forms hold a few short fields).
const MAX_FORM: usize = 8 * 1024;

/// Parses `application/x-www-form-urlencoded` text; `None` when a parameter repeats (RFC 6749 §3.1).
pub fn parse_params(text: &str) -> Option<HashMap<String, String>> {
    let mut out = HashMap::new();
    for (k, v) in url::form_urlencoded::parse(text.as_bytes()) {
        if out.insert(k.into_owned(), v.into_owned()).is_some() {
            return None;
        }
    }
    Some(out)
}

/// An OAuth error sent back to the client's redirect URI.
fn redirect_error(redirect_uri: &str, error: &str, description: &str, state: Option<&str>) -> Response {
    let mut url = url::Url::parse(redirect_uri).expect("registered redirect URIs are validated URLs");
    {
        let mut q = url.query_pairs_mut();
        q.append_pair("error", error).append_pair("error_description", description);
        if let Some(s) = state {
            q.append_pair("state", s);
        }
    }
    found(StatusCode::FOUND, url.as_str())
}

fn found(status: StatusCode, location: &str) -> Response {
    let mut r = (status, page::no_store()).into_response();
    if let Ok(v) = HeaderValue::from_str(location) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    r
}

fn strings() -> &'static Strings {
    &EN
}

fn rate_limited(t: &Strings, wait: std::time::Duration) -> Response {
    let minutes = wait.as_secs().div_ceil(60).max(1).to_string();
    let mut r = page::error(t, StatusCode::TOO_MANY_REQUESTS, &t.err_rate_limited.replace("{minutes}", &minutes));
    r.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(wait.as_secs().max(1)));
    r
}

/// The browser cookie's value, if the request has one.
fn cookie(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .find(|(k, _)| *k == COOKIE)
        .map(|(_, v)| v.to_owned())
        .filter(|v| !v.is_empty() && v.len() <= 64)
}

fn base_path(p: &Provider) -> String {
    url::Url::parse(&p.config.issuer).map(|u| u.path().trim_end_matches('/').to_owned()).unwrap_or_default()
}

/// `GET /oauth2/authorize`.
pub async fn start(State(p): State<Arc<Provider>>, req: Request) -> Response {
    let (parts, _) = req.into_parts();
    let t = strings();
    if let Err(l) = p.check_ip(client_ip(&p, &parts)) {
        return rate_limited(t, l.retry_after);
    }
    let Some(q) = parse_params(parts.uri.query().unwrap_or("")) else {
        return page::error(t, StatusCode::BAD_REQUEST, t.err_bad_request);
    };
    let get = |k: &str| q.get(k).map(String::as_str).filter(|v| !v.is_empty());
    // Who to answer: until client and redirect URI are known good, only the user sees errors.
    let Some(client) = get("client_id").and_then(|id| p.client(id)) else {
        return page::error(t, StatusCode::BAD_REQUEST, t.err_bad_request);
    };
    let Some(redirect_uri) = get("redirect_uri").filter(|r| client.allows_redirect(r)) else {
        return page::error(t, StatusCode::BAD_REQUEST, t.err_bad_request);
    };
    let state = get("state");
    let refuse = |error: &str, description: &str| redirect_error(redirect_uri, error, description, state);
    if get("request").is_some() || get("request_uri").is_some() {
        return refuse("request_not_supported", "request objects are not supported");
    }
    if get("response_type") != Some("code") {
        return refuse("unsupported_response_type", "only response_type=code is supported");
    }
    if get("response_mode").is_some_and(|m| m != "query") {
        return refuse("invalid_request", "only response_mode=query is supported");
    }
    let scopes: Vec<&str> = get("scope").unwrap_or("").split(' ').filter(|s| !s.is_empty()).collect();
    if !scopes.contains(&"openid") {
        return refuse("invalid_scope", "the openid scope is required");
    }
    let Some(challenge) = get("code_challenge") else {
        return refuse("invalid_request", "PKCE is required: code_challenge with code_challenge_method=S256");
    };
    // Without a method the challenge is "plain" (RFC 7636 §4.3), which is refused as well.
    if get("code_challenge_method") != Some("S256") {
        return refuse("invalid_request", "only code_challenge_method=S256 is supported");
    }
    if !pkce_well_formed(challenge) {
        return refuse("invalid_request", "code_challenge is not a base64url S256 challenge");
    }
    if get("prompt").is_some_and(|pr| pr.split(' ').any(|v| v == "none")) {
        return refuse("login_required", "the user must sign in with their phone number");
    }
    let granted: Vec<&str> = scopes.into_iter().filter(|s| *s == "openid" || *s == "phone").collect();
    let (req_id, session_secret, fresh_cookie) =
        p.app.with_rng(|r| (crate::code::random_id(r), crate::code::random_id(r), crate::code::random_id(r)));
    let browser_cookie = cookie(&parts.headers).unwrap_or(fresh_cookie);
    let now = p.now();
    let pending = OidcSignIn {
        id: req_id.clone(),
        client_id: client.id.clone(),
        redirect_uri: redirect_uri.to_owned(),
        state: state.map(str::to_owned),
        nonce: get("nonce").map(str::to_owned),
        code_challenge: challenge.to_owned(),
        scope: granted.join(" "),
        browser_digest: crate::code::digest(&browser_cookie),
        session_secret,
        sid: None,
        number: None,
        sends: 0,
        expires_at: now + p.config.request_ttl_secs as i64,
    };
    let max = i64::try_from(p.config.max_pending).unwrap_or(i64::MAX);
    match p.app.store.insert_oidc_sign_in(&pending, now, max).await {
        Ok(true) => {}
        Ok(false) => return refuse("temporarily_unavailable", "too many sign-ins in progress"),
        Err(e) => {
            tracing::error!(error = %e, "storing a sign-in failed");
            return refuse("server_error", "the sign-in could not be stored");
        }
    }
    let hint = get("login_hint").filter(|h| h.starts_with('+')).unwrap_or("");
    let base = base_path(&p);
    let secure = if p.config.issuer.starts_with("https:") { "; Secure" } else { "" };
    let set_cookie = format!(
        "{COOKIE}={browser_cookie}; Path={base}/oauth2/; Max-Age={}; HttpOnly; SameSite=Lax{secure}",
        p.config.request_ttl_secs
    );
    let mut r = (page::no_store(), Html(page::phone(t, &base, &req_id, None, hint))).into_response();
    if let Ok(v) = HeaderValue::from_str(&set_cookie) {
        r.headers_mut().insert(header::SET_COOKIE, v);
    }
    r
}

/// A posted sign-in form: the provider, the sign-in it belongs to, its fields and the client IP.
struct Posted {
    req_id: String,
    pending: OidcSignIn,
    fields: HashMap<String, String>,
    ip: Option<std::net::IpAddr>,
}

async fn posted(p: &Provider, req: Request) -> Result<Posted, Response> {
    let t = strings();
    let (parts, body) = req.into_parts();
    let ip = client_ip(p, &parts);
    p.check_ip(ip).map_err(|l| rate_limited(t, l.retry_after))?;
    let bad = || page::error(t, StatusCode::BAD_REQUEST, t.err_bad_request);
    let form = parts.headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    if !form.starts_with("application/x-www-form-urlencoded") {
        return Err(bad());
    }
    let bytes = axum::body::to_bytes(body, MAX_FORM).await.map_err(|_| bad())?;
    let text = std::str::from_utf8(&bytes).map_err(|_| bad())?;
    let fields = parse_params(text).ok_or_else(bad)?;
    let req_id = fields.get("req").cloned().unwrap_or_default();
    let browser = cookie(&parts.headers).map(|c| crate::code::digest(&c)).unwrap_or_default();
    let pending = match p.app.store.oidc_sign_in(&req_id, &browser, p.now()).await {
        Ok(Some(pending)) => pending,
        Ok(None) => return Err(page::error(t, StatusCode::BAD_REQUEST, t.err_session_gone)),
        Err(e) => {
            let (status, msg) = refusal(t, &ApiError::from(e));
            return Err(page::error(t, status, &msg));
        }
    };
    Ok(Posted { req_id, pending, fields, ip })
}

/// The page text and status for a refused step.
fn refusal(t: &Strings, e: &ApiError) -> (StatusCode, String) {
    use StatusCode as S;
    match e {
        ApiError::InvalidNumber(_) => (S::BAD_REQUEST, t.err_invalid_number.into()),
        ApiError::ThreepidDenied => (S::FORBIDDEN, t.err_refused_number.into()),
        ApiError::LimitExceeded(Some(wait)) => {
            let minutes = wait.as_secs().div_ceil(60).max(1).to_string();
            (S::TOO_MANY_REQUESTS, t.err_rate_limited.replace("{minutes}", &minutes))
        }
        ApiError::LimitExceeded(None) => (S::TOO_MANY_REQUESTS, t.err_locked.into()),
        ApiError::WrongCode => (S::BAD_REQUEST, t.err_wrong_code.into()),
        ApiError::SessionExpired => (S::BAD_REQUEST, t.err_expired.into()),
        ApiError::NoValidSession | ApiError::SessionNotValidated => (S::BAD_REQUEST, t.err_session_gone.into()),
        ApiError::Sms(_) => (S::BAD_GATEWAY, t.err_sms_failed.into()),
        ApiError::RegistrationLocked => (S::FORBIDDEN, t.err_registration_locked.into()),
        ApiError::WrongPin => (S::FORBIDDEN, t.err_wrong_pin.into()),
        other => {
            tracing::error!(error = %other, "sign-in failed");
            (S::INTERNAL_SERVER_ERROR, t.err_server.into())
        }
    }
}

/// `POST /oauth2/authorize/phone` (`req`, `phone`): sends the code (again, for the same number) and shows the
/// code form. Without a number it shows the number form again.
pub async fn phone(State(p): State<Arc<Provider>>, req: Request) -> Response {
    let t = strings();
    let Posted { req_id, mut pending, fields, ip } = match posted(&p, req).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let base = base_path(&p);
    let typed = fields.get("phone").map(|s| s.trim()).unwrap_or("");
    let show_phone = |status: StatusCode, error: Option<&str>| {
        (status, page::no_store(), Html(page::phone(t, &base, &req_id, error, typed))).into_response()
    };
    if typed.is_empty() {
        return show_phone(StatusCode::OK, None);
    }
    let number = match E164::parse(typed) {
        Ok(n) => n,
        Err(e) => {
            let (status, msg) = refusal(t, &ApiError::from(e));
            return show_phone(status, Some(msg.as_str()));
        }
    };
    // Another number starts another code session; the same number asks the session for a new SMS.
    if pending.number.as_deref() != Some(number.as_str()) {
        pending.session_secret = p.app.with_rng(crate::code::random_id);
        pending.sends = 0;
    }
    let attempt = pending.sends + 1;
    let send_attempt = u64::try_from(attempt).unwrap_or(u64::MAX);
    match crate::sessions::start(&p.app, Purpose::Register, &number, &pending.session_secret, send_attempt, ip).await {
        Ok(started) => {
            pending.sid = Some(started.sid);
            pending.number = Some(number.as_str().to_owned());
            pending.sends = attempt;
            match p.app.store.update_oidc_sign_in(&pending).await {
                Ok(true) => {}
                Ok(false) => return page::error(t, StatusCode::BAD_REQUEST, t.err_session_gone),
                Err(e) => {
                    let (status, msg) = refusal(t, &ApiError::from(e));
                    return page::error(t, status, &msg);
                }
            }
            let html = page::code(t, &base, &req_id, None, number.as_str(), false);
            (page::no_store(), Html(html)).into_response()
        }
        Err(e) => {
            let (status, msg) = refusal(t, &e);
            // A resend refused (too early, limits) keeps the code form, whose code still works.
            if pending.number.as_deref() == Some(number.as_str()) && pending.sid.is_some() {
                let html = page::code(t, &base, &req_id, Some(msg.as_str()), number.as_str(), false);
                return (status, page::no_store(), Html(html)).into_response();
            }
            show_phone(status, Some(msg.as_str()))
        }
    }
}

/// `POST /oauth2/authorize/code` (`req`, `code`): checks the code and sends the user back to the client with an
/// authorization code.
pub async fn code(State(p): State<Arc<Provider>>, req: Request) -> Response {
    let t = strings();
    let Posted { req_id, pending, fields, ip } = match posted(&p, req).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let base = base_path(&p);
    let (Some(sid), Some(number)) = (pending.sid.clone(), pending.number.clone()) else {
        let html = page::phone(t, &base, &req_id, None, "");
        return (StatusCode::BAD_REQUEST, page::no_store(), Html(html)).into_response();
    };
    let typed = fields.get("code").map(String::as_str).unwrap_or("");
    let pin = fields.get("pin").map(String::as_str).filter(|p| !p.is_empty());
    let show_code = |status: StatusCode, msg: &str, ask_pin: bool| {
        let html = page::code(t, &base, &req_id, Some(msg), &number, ask_pin);
        (status, page::no_store(), Html(html)).into_response()
    };
    let checked =
        crate::sessions::check_code(&p.app, Purpose::Register, &sid, &pending.session_secret, typed, ip).await;
    let session = match checked {
        Ok(s) => s,
        Err(e) => {
            let (status, msg) = refusal(t, &e);
            return show_code(status, &msg, pin.is_some());
        }
    };
    // A locked account needs its PIN too, as on the API; the form asks for it (the code session stays usable).
    let (known, locked) = match p.app.store.account_by_number(&session.number).await {
        Ok(Some(a)) => {
            let locked = crate::registration_lock::check(&p.app, &a.user_id, pin).await.err();
            (Some(a), locked)
        }
        Ok(None) => (None, None),
        Err(e) => (None, Some(ApiError::from(e))),
    };
    if let Some(e) = locked {
        let (status, msg) = refusal(t, &e);
        let ask_pin = matches!(e, ApiError::RegistrationLocked | ApiError::WrongPin | ApiError::LimitExceeded(_));
        return show_code(status, &msg, ask_pin);
    }
    match complete(&p, &req_id, &pending, &session, known).await {
        Ok(location) => found(StatusCode::SEE_OTHER, &location),
        Err(e) => {
            let (status, msg) = refusal(t, &e);
            page::error(t, status, &msg)
        }
    }
}

/// The number is verified: the account (created on first sign-in, shared with the sign-up API), the session
/// consumed, the sign-in ended, and a code for the client.
async fn complete(
    p: &Provider,
    req_id: &str,
    pending: &OidcSignIn,
    session: &crate::store::CodeSession,
    known: Option<crate::store::Account>,
) -> Result<String, ApiError> {
    let app = &p.app;
    let number = E164::parse(&session.number)?;
    let now = app.now();
    // Used up before anything is created, as on the API: of concurrent posts of the right code, one goes on.
    if !app.store.consume(&session.sid, now).await? || !app.store.take_oidc_sign_in(req_id).await? {
        return Err(ApiError::NoValidSession);
    }
    let (account, new_account) = crate::api::register_verify::account_for(app, &number, known).await?;
    // A port it files (the number is another provider's) shows in `register/verify` only; the sign-in goes on.
    crate::api::register_verify::after_sign_in(app, &number, &account).await?;
    let code = app.with_rng(crate::code::random_id);
    let grant = OidcCode {
        digest: crate::code::digest(&code),
        client_id: pending.client_id.clone(),
        redirect_uri: pending.redirect_uri.clone(),
        code_challenge: pending.code_challenge.clone(),
        nonce: pending.nonce.clone(),
        scope: pending.scope.clone(),
        sub: account.localpart.clone(),
        phone_number: account.number.clone(),
        auth_time: session.validated_at.unwrap_or(now),
        expires_at: now + p.config.code_ttl_secs as i64,
        redeemed_token: None,
    };
    app.store.insert_oidc_code(&grant, now).await?;
    tracing::info!(number = %number.redacted(), user_id = %account.user_id, new_account, client = %pending.client_id, "signed in through OpenID");
    let mut url = url::Url::parse(&pending.redirect_uri).expect("registered redirect URIs are validated URLs");
    {
        let mut q = url.query_pairs_mut();
        q.append_pair("code", &code);
        if let Some(s) = &pending.state {
            q.append_pair("state", s);
        }
    }
    Ok(url.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeated_parameters_are_refused() {
        assert!(parse_params("a=1&b=2").is_some());
        assert!(parse_params("a=1&a=1").is_none());
        assert_eq!(parse_params("scope=openid+phone").unwrap()["scope"], "openid phone");
    }

    #[test]
    fn cookie_is_found_among_others() {
        let mut h = HeaderMap::new();
        h.insert(header::COOKIE, HeaderValue::from_static("a=1; tincan_oidc=xyz; b=2"));
        assert_eq!(cookie(&h).as_deref(), Some("xyz"));
        h.insert(header::COOKIE, HeaderValue::from_static("tincan_oidc="));
        assert_eq!(cookie(&h), None);
    }
}
