//! The portal: a small server-rendered web page (no JavaScript) under `/portal` where a user signs in with their
//! number and an SMS code (through the homeserver extension's sign-up API, `portal.ext_url`), sees their balance
//! and history and their last calls, tops up with a voucher and looks up a price.
//!
//! Sign-in: `POST /portal/number` asks the extension to text a code (`register/request`, the client's address in
//! `X-Forwarded-For`); `POST /portal/code` checks it (`register/verify`), which names the Matrix user the number
//! belongs to (created on first sign-up). The gateway then makes a user API token (as `POST /v1/auth/openid`
//! does) and keeps it in an `HttpOnly`, `SameSite=Strict` cookie; every form that changes something also
//! carries a token derived from it (CSRF). The code page's hidden fields (number, session) are signed with a
//! key made at start, so a code page lasts as long as the process.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{ConnectInfo, FromRequest, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tincan_enum_core::E164;

use crate::api::{ApiError, RateLimiter, UserAuth, VoucherLimiter};
use crate::charging::{AccountId, AccountRef, ChargeError, Charging, Quote, QuoteRequest, ServiceKind};
use crate::ledger::Ledger;
use crate::storage::{CallRecord, HistoryItem, Scope, TokenHash, unix_ms};
use crate::vouchers::{self, VoucherError};

/// The session cookie's name.
pub const COOKIE: &str = "tincan_portal";
/// The largest form accepted.
const MAX_FORM_BYTES: usize = 4 * 1024;
/// History lines shown.
const HISTORY_LINES: u32 = 20;

/// `[portal]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PortalConfig {
    /// The homeserver extension (`tincan-ext`) whose sign-up API texts and checks the codes, e.g.
    /// `http://127.0.0.1:8090`. Unset: no portal (404).
    pub ext_url: Option<String>,
    /// Mark the session cookie `Secure` (sent over HTTPS only). Default true; off only for plain-HTTP
    /// development on loopback.
    pub cookie_secure: bool,
    /// How long a sign-in lasts, in seconds. Default 3600.
    pub session_ttl_secs: u32,
    /// Sign-in attempts (code requests and code checks) per client address: a burst, then this many a minute.
    /// Default 10, 5.
    pub attempts_burst: u32,
    /// Attempts per minute after the burst.
    pub attempts_per_minute: u32,
}

impl Default for PortalConfig {
    fn default() -> Self {
        PortalConfig {
            ext_url: None,
            cookie_secure: true,
            session_ttl_secs: 3600,
            attempts_burst: 10,
            attempts_per_minute: 5,
        }
    }
}

impl PortalConfig {
    /// What is wrong with the settings.
    pub fn problems(&self) -> Vec<String> {
        let mut p = Vec::new();
        if let Some(u) = &self.ext_url
            && !url::Url::parse(u).is_ok_and(|u| u.scheme() == "http" || u.scheme() == "https")
        {
            p.push("portal.ext_url: the extension's URL, like http://127.0.0.1:8090".into());
        }
        if self.session_ttl_secs == 0 {
            p.push("portal.session_ttl_secs: at least 1".into());
        }
        p
    }
}

/// What the portal's handlers share.
#[derive(Clone)]
pub struct PortalState {
    ledger: Arc<Ledger>,
    auth: Arc<UserAuth>,
    vouchers: Arc<VoucherLimiter>,
    config: Arc<PortalConfig>,
    ext: url::Url,
    attempts: Arc<RateLimiter>,
    /// Signs the code page's hidden fields.
    form_key: Arc<[u8; 32]>,
}

impl PortalState {
    /// The portal's state; `None` when `portal.ext_url` is unset.
    pub fn new(
        ledger: Arc<Ledger>,
        auth: Arc<UserAuth>,
        vouchers: Arc<VoucherLimiter>,
        config: PortalConfig,
    ) -> Option<PortalState> {
        let ext = url::Url::parse(config.ext_url.as_deref()?).ok()?;
        let attempts = Arc::new(RateLimiter::new_per_minute(
            config.attempts_per_minute,
            config.attempts_burst,
            ledger.clock().clone(),
        ));
        let mut key = [0u8; 32];
        rand::TryRngCore::try_fill_bytes(&mut rand::rngs::OsRng, &mut key).ok()?;
        Some(PortalState { ledger, auth, vouchers, config: Arc::new(config), ext, attempts, form_key: Arc::new(key) })
    }
}

/// The portal's routes.
pub fn router(state: PortalState) -> Router {
    Router::new()
        .route("/portal", get(home))
        .route("/portal/style.css", get(style))
        .route("/portal/number", post(number))
        .route("/portal/code", post(code))
        .route("/portal/topup", post(topup))
        .route("/portal/price", get(price))
        .route("/portal/signout", post(signout))
        .with_state(state)
}

// ---------------------------------------------------------------------------------------------------------------
// Handlers

async fn home(State(s): State<PortalState>, headers: HeaderMap) -> Response {
    match session(&s, &headers).await {
        Ok(Some(user)) => account_page(&s, &user, None, None).await,
        Ok(None) => page(StatusCode::OK, "Sign in", &number_form(None)),
        Err(e) => failure(e),
    }
}

async fn style() -> Response {
    let mut r = (StatusCode::OK, STYLE).into_response();
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/css; charset=utf-8"));
    r.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("max-age=3600"));
    r
}

async fn number(State(s): State<PortalState>, ConnectInfo(peer): ConnectInfo<SocketAddr>, Form(f): Form) -> Response {
    if s.attempts.check(&format!("ip:{}", peer.ip())).is_err() {
        return page(StatusCode::TOO_MANY_REQUESTS, "Sign in", &number_form(Some(TOO_MANY)));
    }
    let Ok(phone) = E164::parse(f.get("phone")) else {
        return page(StatusCode::BAD_REQUEST, "Sign in", &number_form(Some(NOT_A_NUMBER)));
    };
    let secret = random_hex();
    let body = json!({"phone": phone.as_str(), "client_secret": secret, "send_attempt": 1});
    match ext_call(&s, "register/request", &body, peer.ip()).await {
        Ok(v) => match v["sid"].as_str() {
            Some(sid) => {
                let pending = Pending { phone: phone.as_str().to_owned(), sid: sid.to_owned(), secret };
                page(StatusCode::OK, "Enter the code", &code_form(&s, &pending, None))
            }
            None => page(StatusCode::BAD_GATEWAY, "Sign in", &number_form(Some(EXT_DOWN))),
        },
        Err(e) => page(e.status(), "Sign in", &number_form(Some(e.message()))),
    }
}

async fn code(State(s): State<PortalState>, ConnectInfo(peer): ConnectInfo<SocketAddr>, Form(f): Form) -> Response {
    let pending = Pending { phone: f.get("phone").into(), sid: f.get("sid").into(), secret: f.get("secret").into() };
    if !pending.signed_by(&s, f.get("sig")) {
        return page(StatusCode::BAD_REQUEST, "Sign in", &number_form(Some(START_AGAIN)));
    }
    if s.attempts.check(&format!("ip:{}", peer.ip())).is_err() {
        return page(StatusCode::TOO_MANY_REQUESTS, "Enter the code", &code_form(&s, &pending, Some(TOO_MANY)));
    }
    let code: String = f.get("code").chars().filter(char::is_ascii_digit).collect();
    let body = json!({"sid": pending.sid, "client_secret": pending.secret, "code": code});
    let verified = match ext_call(&s, "register/verify", &body, peer.ip()).await {
        Ok(v) => v,
        Err(e @ ExtError::Refused { .. }) if e.session_over() => {
            return page(e.status(), "Sign in", &number_form(Some(e.message())));
        }
        Err(e) => return page(e.status(), "Enter the code", &code_form(&s, &pending, Some(e.message()))),
    };
    let server = &s.auth.homeserver.server_name;
    let Some(user_id) =
        verified["user_id"].as_str().filter(|u| u.starts_with('@') && u.ends_with(&format!(":{server}")))
    else {
        tracing::warn!(answer = %verified, "portal: the extension vouched for no user of this homeserver");
        return page(StatusCode::BAD_GATEWAY, "Sign in", &number_form(Some(EXT_DOWN)));
    };
    match sign_in(&s, user_id, &pending.phone).await {
        Ok(token) => {
            let mut r = see_other("/portal");
            let cookie = format!(
                "{COOKIE}={token}; Path=/portal; HttpOnly; SameSite=Strict; Max-Age={}{}",
                s.config.session_ttl_secs,
                if s.config.cookie_secure { "; Secure" } else { "" }
            );
            if let Ok(v) = HeaderValue::from_str(&cookie) {
                r.headers_mut().insert(header::SET_COOKIE, v);
            }
            r
        }
        Err(e) => failure(e),
    }
}

async fn topup(State(s): State<PortalState>, headers: HeaderMap, Form(f): Form) -> Response {
    let user = match signed_in(&s, &headers, Some(f.get("csrf"))).await {
        Ok(u) => u,
        Err(r) => return r,
    };
    let notice = match redeem(&s, user.account, f.get("code")).await {
        Ok((credited, currency)) => Notice::Done(format!("Credited {credited} {currency}.")),
        Err(e) => Notice::Error(voucher_message(&e)),
    };
    account_page(&s, &user, Some(notice), None).await
}

#[derive(Deserialize)]
struct PriceQuery {
    #[serde(default)]
    number: String,
}

async fn price(
    State(s): State<PortalState>,
    headers: HeaderMap,
    q: Result<axum::extract::Query<PriceQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let user = match signed_in(&s, &headers, None).await {
        Ok(u) => u,
        Err(r) => return r,
    };
    let raw = q.map(|q| q.0.number).unwrap_or_default();
    let Ok(number) = E164::parse(&raw) else {
        return account_page(&s, &user, Some(Notice::Error(NOT_A_NUMBER.into())), None).await;
    };
    let quote = |service| {
        let req = QuoteRequest {
            account: AccountRef::Id { account_id: user.account },
            service,
            destination: number.clone(),
            seconds: None,
            segments: None,
        };
        let charging = s.ledger.charging(format!("user:{}", user.account.0));
        async move { charging.quote(&req).await }
    };
    let (voice, sms, mms) =
        (quote(ServiceKind::Voice).await, quote(ServiceKind::Sms).await, quote(ServiceKind::Mms).await);
    let lookup = PriceLookup { number: number.as_str().to_owned(), voice, sms, mms };
    account_page(&s, &user, None, Some(lookup)).await
}

async fn signout(State(s): State<PortalState>, headers: HeaderMap, Form(f): Form) -> Response {
    let user = match signed_in(&s, &headers, Some(f.get("csrf"))).await {
        Ok(u) => u,
        Err(r) => return r,
    };
    let revoked = async {
        let mut tx = s.ledger.storage().begin().await?;
        tx.tokens().delete(user.token_id).await?;
        tx.commit().await
    };
    if let Err(e) = revoked.await {
        return failure(e.into());
    }
    let mut r = see_other("/portal");
    let gone = format!("{COOKIE}=; Path=/portal; HttpOnly; SameSite=Strict; Max-Age=0");
    if let Ok(v) = HeaderValue::from_str(&gone) {
        r.headers_mut().insert(header::SET_COOKIE, v);
    }
    r
}

// ---------------------------------------------------------------------------------------------------------------
// Sessions

/// The signed-in user of a request.
struct User {
    token: String,
    token_id: i64,
    account: AccountId,
}

impl User {
    /// The form token that proves a POST came from the portal's own page.
    fn csrf(&self) -> String {
        hex::encode(Sha256::digest(format!("tincan-portal-csrf\0{}", self.token)))
    }
}

async fn session(s: &PortalState, headers: &HeaderMap) -> Result<Option<User>, ApiError> {
    let Some(token) = cookie(headers, COOKIE) else { return Ok(None) };
    let now = unix_ms(s.ledger.clock().now());
    let mut tx = s.ledger.storage().begin_read().await?;
    let found = tx.tokens().by_hash(&TokenHash::of(&token), now).await?;
    Ok(found.and_then(|t| match (t.scope, t.account) {
        (Scope::User, Some(account)) => Some(User { token, token_id: t.id, account }),
        _ => None,
    }))
}

/// The signed-in user, the form's CSRF token checked when given; else the response to send (the sign-in page).
async fn signed_in(s: &PortalState, headers: &HeaderMap, csrf: Option<&str>) -> Result<User, Response> {
    match session(s, headers).await {
        Ok(Some(user)) => match csrf {
            Some(c) if !bool::from(c.as_bytes().ct_eq(user.csrf().as_bytes())) => {
                Err(page(StatusCode::FORBIDDEN, "Sign in", &number_form(Some(START_AGAIN))))
            }
            _ => Ok(user),
        },
        Ok(None) => Err(page(StatusCode::UNAUTHORIZED, "Sign in", &number_form(Some(SIGNED_OUT)))),
        Err(e) => Err(failure(e)),
    }
}

async fn sign_in(s: &PortalState, user_id: &str, phone: &str) -> Result<String, ApiError> {
    let account = s.ledger.user_account(user_id, Some(phone), s.auth.currency).await?;
    let token = crate::cli::new_token().map_err(|_| ApiError::Homeserver("no randomness".into()))?;
    let now = unix_ms(s.ledger.clock().now());
    let expires = now + i64::from(s.config.session_ttl_secs) * 1000;
    let mut tx = s.ledger.storage().begin().await?;
    tx.tokens().add(TokenHash::of(&token), Scope::User, user_id, Some(account.id), Some(expires), now).await?;
    tx.commit().await?;
    Ok(token)
}

fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_owned())
        .filter(|v| !v.is_empty() && v.len() <= 128)
}

/// A code request in progress: what the code page carries back, signed.
struct Pending {
    phone: String,
    sid: String,
    secret: String,
}

impl Pending {
    fn sig(&self, s: &PortalState) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(&s.form_key[..]).expect("any key length");
        for part in [&self.phone, &self.sid, &self.secret] {
            mac.update(part.as_bytes());
            mac.update(b"\0");
        }
        hex::encode(mac.finalize().into_bytes())
    }

    fn signed_by(&self, s: &PortalState, sig: &str) -> bool {
        bool::from(self.sig(s).as_bytes().ct_eq(sig.as_bytes()))
    }
}

// ---------------------------------------------------------------------------------------------------------------
// The extension

enum ExtError {
    Refused { status: u16, errcode: String },
    Unreachable,
}

impl ExtError {
    fn status(&self) -> StatusCode {
        match self {
            ExtError::Refused { status: 429, .. } => StatusCode::TOO_MANY_REQUESTS,
            ExtError::Refused { status, .. } if (400..500).contains(status) => StatusCode::BAD_REQUEST,
            _ => StatusCode::BAD_GATEWAY,
        }
    }

    /// The code session cannot be used any more: ask for a new code.
    fn session_over(&self) -> bool {
        matches!(self, ExtError::Refused { errcode, .. } if errcode == "M_SESSION_EXPIRED" || errcode == "M_NO_VALID_SESSION")
    }

    fn message(&self) -> &'static str {
        let ExtError::Refused { errcode, .. } = self else { return EXT_DOWN };
        match errcode.as_str() {
            "M_LIMIT_EXCEEDED" => TOO_MANY,
            "M_INVALID_PARAM" => NOT_A_NUMBER,
            "M_THREEPID_DENIED" => "Sign-up is not open for this number.",
            "M_THREEPID_AUTH_FAILED" => "That code is not right. Check the text message and try again.",
            "M_SESSION_EXPIRED" | "M_NO_VALID_SESSION" => "That code has expired. Ask for a new one.",
            _ => EXT_DOWN,
        }
    }
}

async fn ext_call(s: &PortalState, what: &str, body: &Value, client: IpAddr) -> Result<Value, ExtError> {
    let url = s.ext.join(&format!("_tincan/client/v1/{what}")).map_err(|_| ExtError::Unreachable)?;
    let resp =
        s.auth.http.post(url).header("x-forwarded-for", client.to_string()).json(body).send().await.map_err(|e| {
            tracing::warn!(error = %e, "portal: the extension cannot be reached");
            ExtError::Unreachable
        })?;
    let status = resp.status().as_u16();
    let v: Value = resp.json().await.unwrap_or_default();
    if (200..300).contains(&status) {
        return Ok(v);
    }
    let errcode = v["errcode"].as_str().unwrap_or("M_UNKNOWN").to_owned();
    if status >= 500 {
        tracing::warn!(status, %errcode, "portal: the extension failed");
    }
    Err(ExtError::Refused { status, errcode })
}

// ---------------------------------------------------------------------------------------------------------------
// Money

async fn redeem(s: &PortalState, account: AccountId, code: &str) -> Result<(String, String), ApiError> {
    s.vouchers.0.check(&format!("voucher:{account}"))?;
    if code.len() > 64 {
        return Err(VoucherError::Unknown.into());
    }
    let done = vouchers::redeem(&s.ledger, account, code).await?;
    let currency = s.ledger.account(&AccountRef::Id { account_id: account }).await?.currency;
    Ok((done.credited.to_string(), currency.as_str().to_owned()))
}

fn voucher_message(e: &ApiError) -> String {
    match e {
        ApiError::Voucher(_, "voucher_unknown") => "There is no voucher with this code. Check it and try again.".into(),
        ApiError::Voucher(_, "voucher_used") => "This voucher has already been used.".into(),
        ApiError::Voucher(_, "voucher_expired") => "This voucher has expired.".into(),
        ApiError::Voucher(_, _) => "This voucher is for another currency.".into(),
        ApiError::RateLimited { retry_after_secs } => {
            format!("Too many tries. Wait {retry_after_secs} seconds and try again.")
        }
        other => {
            tracing::error!(error = %other, "portal: top-up failed");
            "The top-up could not be done just now. Please try again.".into()
        }
    }
}

struct PriceLookup {
    number: String,
    voice: Result<Quote, ChargeError>,
    sms: Result<Quote, ChargeError>,
    mms: Result<Quote, ChargeError>,
}

// ---------------------------------------------------------------------------------------------------------------
// Pages

const TOO_MANY: &str = "Too many attempts. Please wait a few minutes and try again.";
const NOT_A_NUMBER: &str = "That is not a phone number in international form, like +44 7700 900123.";
const EXT_DOWN: &str = "Sign-in is not available just now. Please try again later.";
const START_AGAIN: &str = "That form has expired. Please start again.";
const SIGNED_OUT: &str = "You are signed out. Please sign in again.";

enum Notice {
    Done(String),
    Error(String),
}

fn notice_html(n: &Notice) -> String {
    match n {
        Notice::Done(m) => format!("<p class=\"notice\" role=\"status\">{}</p>", esc(m)),
        Notice::Error(m) => format!("<p class=\"error\" role=\"alert\">{}</p>", esc(m)),
    }
}

fn number_form(error: Option<&str>) -> String {
    let error = error.map(|e| notice_html(&Notice::Error(e.into()))).unwrap_or_default();
    format!(
        "{error}<p>Sign in with your phone number. We will text you a code.</p>\
         <form method=\"post\" action=\"/portal/number\">\
         <label for=\"phone\">Your phone number</label>\
         <input id=\"phone\" name=\"phone\" type=\"tel\" autocomplete=\"tel\" required placeholder=\"+44 7700 900123\">\
         <button type=\"submit\">Send me a code</button></form>"
    )
}

fn code_form(s: &PortalState, p: &Pending, error: Option<&str>) -> String {
    let error = error.map(|e| notice_html(&Notice::Error(e.into()))).unwrap_or_default();
    format!(
        "{error}<p>We sent a code to {phone}.</p>\
         <form method=\"post\" action=\"/portal/code\">\
         <input type=\"hidden\" name=\"phone\" value=\"{phone}\">\
         <input type=\"hidden\" name=\"sid\" value=\"{sid}\">\
         <input type=\"hidden\" name=\"secret\" value=\"{secret}\">\
         <input type=\"hidden\" name=\"sig\" value=\"{sig}\">\
         <label for=\"code\">The 6-digit code</label>\
         <input id=\"code\" name=\"code\" inputmode=\"numeric\" autocomplete=\"one-time-code\" required>\
         <button type=\"submit\">Sign in</button></form>\
         <p><a href=\"/portal\">Use another number</a></p>",
        phone = esc(&p.phone),
        sid = esc(&p.sid),
        secret = esc(&p.secret),
        sig = p.sig(s),
    )
}

async fn account_page(s: &PortalState, user: &User, notice: Option<Notice>, lookup: Option<PriceLookup>) -> Response {
    let account = match s.ledger.account(&AccountRef::Id { account_id: user.account }).await {
        Ok(a) => a,
        Err(e) => return failure(e.into()),
    };
    // The movements and the calls, from one read transaction.
    let lists = async {
        let mut tx = s.ledger.storage().begin_read().await?;
        let history = tx.journal().history(user.account, None, HISTORY_LINES).await?;
        let calls = tx.call_records().recent(user.account, HISTORY_LINES).await?;
        Ok::<_, crate::storage::StorageError>((history, calls))
    };
    let (history, calls): (Vec<HistoryItem>, Vec<CallRecord>) = match lists.await {
        Ok((h, c)) => (h, c.iter().map(CallRecord::as_seen_by_user).collect()),
        Err(e) => return failure(e.into()),
    };
    let c = account.currency.as_str();
    let csrf = user.csrf();
    let mut b = String::new();
    if let Some(n) = &notice {
        b.push_str(&notice_html(n));
    }
    let who = account.number.as_deref().or(account.user_id.as_deref()).unwrap_or(&account.name);
    let _ = write!(
        b,
        "<p>Signed in as {who}.</p>\
         <section aria-labelledby=\"balance-h\"><h2 id=\"balance-h\">Balance</h2>\
         <dl class=\"balance\"><dt>Balance</dt><dd id=\"balance\">{bal} {c}</dd>\
         <dt>Held for calls in progress</dt><dd id=\"held\">{held} {c}</dd>\
         <dt>Available</dt><dd id=\"available\">{avail} {c}</dd></dl></section>\
         <section aria-labelledby=\"topup-h\"><h2 id=\"topup-h\">Top up</h2>\
         <form method=\"post\" action=\"/portal/topup\">\
         <input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
         <label for=\"voucher\">Voucher code</label>\
         <input id=\"voucher\" name=\"code\" autocomplete=\"off\" required placeholder=\"XXXX-XXXX-XXXX-XXXX\">\
         <button type=\"submit\">Top up</button></form></section>\
         <section aria-labelledby=\"price-h\"><h2 id=\"price-h\">Prices</h2>\
         <form method=\"get\" action=\"/portal/price\">\
         <label for=\"number\">Number to call or text</label>\
         <input id=\"number\" name=\"number\" type=\"tel\" required placeholder=\"+49 30 1234567\">\
         <button type=\"submit\">Look up the price</button></form>",
        who = esc(who),
        bal = account.balance,
        held = account.held,
        avail = account.available(),
    );
    if let Some(l) = &lookup {
        b.push_str(&price_html(l, c));
    }
    b.push_str("</section><section aria-labelledby=\"history-h\"><h2 id=\"history-h\">History</h2>");
    if history.is_empty() {
        b.push_str("<p>No movements yet.</p>");
    } else {
        b.push_str(
            "<table><caption>Your last movements, newest first</caption><thead><tr><th scope=\"col\">When \
             (UTC)</th><th scope=\"col\">What</th><th scope=\"col\" class=\"num\">Amount</th><th scope=\"col\">Note</th>\
             </tr></thead><tbody>",
        );
        for h in &history {
            let sign = if h.amount.micros() > 0 { "+" } else { "" };
            let note = if h.memo.is_empty() { &h.reference } else { &h.memo };
            let _ = write!(
                b,
                "<tr><td>{}</td><td>{}</td><td class=\"num\">{sign}{} {c}</td><td>{}</td></tr>",
                tincan_common::clock::utc_minute(h.at_ms),
                h.kind.as_str(),
                h.amount,
                esc(note)
            );
        }
        b.push_str("</tbody></table>");
    }
    b.push_str("</section>");
    b.push_str(&calls_html(&calls));
    let _ = write!(
        b,
        "<form method=\"post\" action=\"/portal/signout\" class=\"signout\">\
         <input type=\"hidden\" name=\"csrf\" value=\"{csrf}\"><button type=\"submit\">Sign out</button></form>"
    );
    page(StatusCode::OK, "Your account", &b)
}

/// The account's last calls, newest first: when, the number, how it ended, the seconds billed and the price (the
/// user's view of the records: no carrier, no cost).
fn calls_html(calls: &[CallRecord]) -> String {
    let mut b = String::from("<section aria-labelledby=\"calls-h\"><h2 id=\"calls-h\">Calls</h2>");
    if calls.is_empty() {
        b.push_str("<p>No calls yet.</p></section>");
        return b;
    }
    b.push_str(
        "<table id=\"calls\"><caption>Your last calls, newest first</caption><thead><tr><th scope=\"col\">When \
         (UTC)</th><th scope=\"col\">Number</th><th scope=\"col\">Result</th><th scope=\"col\" class=\"num\">\
         Seconds</th><th scope=\"col\" class=\"num\">Price</th></tr></thead><tbody>",
    );
    for r in calls {
        let result = r.result.as_str().replace('_', " ");
        let price = r.price.map(|p| format!("{p} {}", r.currency)).unwrap_or_else(|| "—".to_owned());
        let _ = write!(
            b,
            "<tr><td>{}</td><td>{}</td><td>{result} ({} {})</td><td class=\"num\">{}</td><td class=\"num\">{price}</td></tr>",
            tincan_common::clock::utc_minute(r.started_at_ms),
            esc(&r.destination),
            r.sip_status,
            esc(&r.reason),
            r.billed_seconds.unwrap_or(0),
        );
    }
    b.push_str("</tbody></table></section>");
    b
}

fn price_html(l: &PriceLookup, c: &str) -> String {
    let mut b = format!("<div class=\"price\" role=\"status\"><h3>{}</h3><ul>", esc(&l.number));
    match &l.voice {
        Ok(q) => {
            let place = if q.description.is_empty() { String::new() } else { format!("{}: ", esc(&q.description)) };
            let secs = q.max_seconds.unwrap_or(0);
            let _ = write!(
                b,
                "<li id=\"price-voice\">{place}calls {} {c} a minute{}, billed {}/{} seconds; your balance pays for \
                 {}:{:02} minutes.</li>",
                q.per_minute,
                if q.connect_fee.micros() > 0 {
                    format!(" plus {} {c} when answered", q.connect_fee)
                } else {
                    String::new()
                },
                q.first_increment,
                q.next_increment,
                secs / 60,
                secs % 60
            );
        }
        Err(e) => {
            let _ = write!(b, "<li id=\"price-voice\">Calls: {}</li>", refusal(e));
        }
    }
    match &l.sms {
        Ok(q) => {
            let _ = write!(
                b,
                "<li id=\"price-sms\">text messages {} {c} a segment; your balance pays for {}.</li>",
                q.per_segment,
                q.max_segments.unwrap_or(0)
            );
        }
        Err(e) => {
            let _ = write!(b, "<li id=\"price-sms\">Text messages: {}</li>", refusal(e));
        }
    }
    match &l.mms {
        Ok(q) => {
            let _ = write!(
                b,
                "<li id=\"price-mms\">picture messages {} {c} each; your balance pays for {}.</li>",
                q.per_mms,
                q.max_segments.unwrap_or(0)
            );
        }
        Err(e) => {
            let _ = write!(b, "<li id=\"price-mms\">Picture messages: {}</li>", refusal(e));
        }
    }
    b.push_str("</ul></div>");
    b
}

fn refusal(e: &ChargeError) -> &'static str {
    match e {
        ChargeError::NoRate => "not offered to this number.",
        ChargeError::DestinationBlocked(_) => "this destination is blocked for your account.",
        ChargeError::AccountDisabled => "your account is disabled.",
        _ => "no price just now.",
    }
}

/// A whole page, with the security headers every portal page carries.
fn page(status: StatusCode, title: &str, body: &str) -> Response {
    let html = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{t} · Tincan</title><link rel=\"stylesheet\" href=\"/portal/style.css\"></head>\
         <body><header><p class=\"brand\">Tincan</p></header><main><h1>{t}</h1>{body}</main></body></html>",
        t = esc(title)
    );
    let mut r = (status, html).into_response();
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; style-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    r
}

fn see_other(to: &'static str) -> Response {
    let mut r = StatusCode::SEE_OTHER.into_response();
    r.headers_mut().insert(header::LOCATION, HeaderValue::from_static(to));
    r
}

fn failure(e: ApiError) -> Response {
    tracing::error!(error = %e, "portal: request failed");
    page(StatusCode::SERVICE_UNAVAILABLE, "Something went wrong", "<p>Please try again in a moment.</p>")
}

pub use tincan_common::html::escape as esc;

fn random_hex() -> String {
    let mut b = [0u8; 16];
    rand::TryRngCore::try_fill_bytes(&mut rand::rngs::OsRng, &mut b).expect("the OS random source");
    hex::encode(b)
}

/// An `application/x-www-form-urlencoded` body (at most 4 KiB); a missing field reads as empty.
struct Form(Fields);

struct Fields(HashMap<String, String>);

impl Fields {
    fn get(&self, name: &str) -> &str {
        self.0.get(name).map_or("", String::as_str)
    }
}

impl<S: Send + Sync> FromRequest<S> for Form {
    type Rejection = Response;

    async fn from_request(req: Request<Body>, _state: &S) -> Result<Self, Response> {
        let bytes = axum::body::to_bytes(req.into_body(), MAX_FORM_BYTES).await.map_err(|_| {
            page(StatusCode::PAYLOAD_TOO_LARGE, "Something went wrong", "<p>That form was too large.</p>")
        })?;
        Ok(Form(Fields(url::form_urlencoded::parse(&bytes).into_owned().collect())))
    }
}

const STYLE: &str = "\
:root{color-scheme:light}\
body{margin:0;font:16px/1.5 system-ui,sans-serif;color:#1b1b1b;background:#fff}\
header{background:#0a3d7a;color:#fff;padding:.5rem 1rem}\
.brand{margin:0;font-weight:700}\
main{max-width:40rem;margin:0 auto;padding:1rem}\
h1{font-size:1.6rem;margin:.5rem 0 1rem}\
h2{font-size:1.2rem;margin:1.5rem 0 .5rem}\
label{display:block;font-weight:600;margin:.5rem 0 .25rem}\
input{font:inherit;padding:.5rem;border:1px solid #595959;border-radius:4px;width:100%;box-sizing:border-box;color:#1b1b1b;background:#fff}\
button{font:inherit;margin-top:.5rem;padding:.5rem 1rem;border:0;border-radius:4px;background:#0a4a9e;color:#fff;cursor:pointer}\
button:focus,input:focus,a:focus{outline:3px solid #b35c00;outline-offset:2px}\
a{color:#0a4a9e}\
.notice{background:#e6f4ea;color:#0b5a2a;padding:.5rem;border-radius:4px}\
.error{background:#fdecea;color:#8a1111;padding:.5rem;border-radius:4px}\
dl.balance{display:grid;grid-template-columns:auto auto;gap:.25rem 1rem;margin:0}\
dt{color:#3d3d3d}dd{margin:0;font-weight:600;text-align:right}\
table{border-collapse:collapse;width:100%}\
caption{text-align:left;color:#3d3d3d;padding:.25rem 0}\
th,td{border-bottom:1px solid #c4c4c4;padding:.25rem .5rem;text-align:left}\
.num{text-align:right;white-space:nowrap}\
.signout button{background:#4a4a4a}\
";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_html() {
        assert_eq!(esc("<a href=\"x\">'&'</a>"), "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;");
    }

    #[test]
    fn reads_the_session_cookie_among_others() {
        let mut h = HeaderMap::new();
        h.insert(header::COOKIE, HeaderValue::from_static("a=1; tincan_portal=tcg_abc; b=2"));
        assert_eq!(cookie(&h, COOKIE).as_deref(), Some("tcg_abc"));
        h.insert(header::COOKIE, HeaderValue::from_static("tincan_portal="));
        assert_eq!(cookie(&h, COOKIE), None);
    }
}
