//! Code sessions shared by sign-up and the Identity Service's msisdn validation: request (send an SMS)
//! and check a code, with every abuse control applied.

use crate::app::App;
use crate::code;
use crate::error::ApiError;
use crate::number::E164;
use crate::sms::SmsError;
use crate::store::{CodeSession, Purpose};
use std::net::IpAddr;
use std::time::Duration;

/// A session an SMS was sent for (or an earlier one, for a repeated `send_attempt`).
#[derive(Debug, Clone)]
pub struct Started {
    /// Session id.
    pub sid: String,
    /// Seconds until the code expires.
    pub expires_in: u64,
    /// Milliseconds until another SMS may be requested.
    pub resend_after_ms: u64,
}

/// `client_secret` per the spec: `[0-9a-zA-Z.=_-]{1,255}`.
pub fn check_client_secret(s: &str) -> Result<(), ApiError> {
    let ok = !s.is_empty() && s.len() <= 255 && s.chars().all(|c| c.is_ascii_alphanumeric() || ".=_-".contains(c));
    if ok { Ok(()) } else { Err(ApiError::InvalidParam("client_secret")) }
}

/// The checks of [`start`] that need only the request: the client secret's charset, and `send_attempt` within
/// what storage keeps (an `i64`), which it returns as such.
pub fn check_start_request(client_secret: &str, send_attempt: u64) -> Result<i64, ApiError> {
    check_client_secret(client_secret)?;
    i64::try_from(send_attempt).map_err(|_| ApiError::InvalidParam("send_attempt"))
}

/// The operator's policy for a number: allowed countries, blocked prefixes, premium-rate numbers.
pub fn check_policy(l: &crate::config::LimitsConfig, number: &E164) -> Result<(), ApiError> {
    let allowed = |region: &str| l.allowed_countries.iter().any(|a| a == "*" || a == region);
    if !number.region().is_some_and(allowed) && !l.allowed_countries.iter().any(|a| a == "*") {
        return Err(ApiError::ThreepidDenied);
    }
    if l.blocked_prefixes.iter().any(|p| number.as_str().starts_with(p.as_str()))
        || (l.block_premium && number.is_premium())
    {
        return Err(ApiError::ThreepidDenied);
    }
    Ok(())
}

/// Starts (or re-sends) a session and sends the code. The session is stored before the SMS is sent, and removed
/// (a resend: put back) when it cannot be sent: nothing is left half-done either way.
pub async fn start(
    app: &App,
    purpose: Purpose,
    number: &E164,
    client_secret: &str,
    send_attempt: u64,
    ip: Option<IpAddr>,
) -> Result<Started, ApiError> {
    let send_attempt = check_start_request(client_secret, send_attempt)?;
    check_policy(&app.config.limits, number)?;
    let now = app.now();
    let codes = &app.config.codes;
    let digest = code::digest(client_secret);
    let resend_after = |s: &CodeSession| {
        let ready = s.last_sent_at + codes.resend_after_secs as i64;
        ((ready - now).max(0) as u64) * 1000
    };
    let existing = app.store.session_by_secret(&digest, number.as_str(), purpose).await?;
    if let Some(s) = existing.filter(|s| s.consumed_at.is_none() && s.attempts < codes.max_attempts as i64) {
        if send_attempt <= s.send_attempt && s.expires_at > now {
            // The client retried the same attempt: answer the same session, send nothing.
            return Ok(Started {
                expires_in: (s.expires_at - now) as u64,
                resend_after_ms: resend_after(&s),
                sid: s.sid,
            });
        }
        if send_attempt > s.send_attempt {
            let wait = resend_after(&s);
            if wait > 0 {
                return Err(ApiError::LimitExceeded(Some(Duration::from_millis(wait))));
            }
            app.limiter.check(number, ip)?;
            let code = app.with_rng(code::generate);
            let expires_at = now + codes.ttl_secs as i64;
            // Stored before it is sent (a code that went out always works), put back when it cannot be sent.
            app.store.resend(&s.sid, &code::hash(app.code_key(), &s.sid, &code), send_attempt, now, expires_at).await?;
            if let Err(e) = send(app, number, &code).await {
                app.store.resend(&s.sid, &s.code_hash, s.send_attempt, s.last_sent_at, s.expires_at).await?;
                return Err(e);
            }
            tracing::info!(number = %number.redacted(), purpose = ?purpose, "code re-sent");
            return Ok(Started {
                sid: s.sid,
                expires_in: codes.ttl_secs,
                resend_after_ms: codes.resend_after_secs * 1000,
            });
        }
    }
    app.limiter.check(number, ip)?;
    let (sid, code) = app.with_rng(|r| (code::random_id(r), code::generate(r)));
    let session = CodeSession {
        code_hash: code::hash(app.code_key(), &sid, &code),
        sid: sid.clone(),
        client_secret_digest: digest,
        number: number.as_str().to_owned(),
        purpose,
        created_at: now,
        expires_at: now + codes.ttl_secs as i64,
        attempts: 0,
        send_attempt,
        last_sent_at: now,
        validated_at: None,
        consumed_at: None,
    };
    // Stored first: an SMS goes out only for a session that exists, and a session whose SMS could not be sent
    // is removed again, so a failure on either side leaves nothing half-done.
    app.store.create_session(&session).await?;
    if let Err(e) = send(app, number, &code).await {
        if let Err(d) = app.store.delete_session(&sid).await {
            tracing::error!(error = %d, "could not remove the session of an unsent code");
        }
        return Err(e);
    }
    tracing::info!(number = %number.redacted(), purpose = ?purpose, "code sent");
    Ok(Started { sid, expires_in: codes.ttl_secs, resend_after_ms: codes.resend_after_secs * 1000 })
}

async fn send(app: &App, number: &E164, code: &str) -> Result<(), ApiError> {
    let s = &app.config.sms;
    let text = crate::sms::render(&s.template, &s.app_name, &s.webotp_domain, code);
    // Bounded as a whole: a backend that hangs fails this sign-up with a typed error, never holds it longer.
    let bound = Duration::from_secs(s.send_timeout_secs);
    tokio::time::timeout(bound, app.sms.send(number, &text)).await.map_err(|_| SmsError::SendTimeout(bound))??;
    app.limiter.note_sent();
    Ok(())
}

/// The session for `sid` if `client_secret` is its secret and it is meant for `purpose`.
pub async fn find(app: &App, purpose: Purpose, sid: &str, client_secret: &str) -> Result<CodeSession, ApiError> {
    use subtle::ConstantTimeEq;
    let s = app.store.session(sid).await?.ok_or(ApiError::NoValidSession)?;
    let same: bool = code::digest(client_secret).as_bytes().ct_eq(s.client_secret_digest.as_bytes()).into();
    if !same || s.purpose != purpose {
        return Err(ApiError::NoValidSession);
    }
    Ok(s)
}

/// Checks `code` against the session: at most `max_attempts` codes are ever judged per session (the attempt is
/// reserved atomically in storage before the comparison, so concurrent guesses cannot exceed it), and codes
/// checked per client IP and per number are limited. On success the session is validated (not consumed) but
/// nothing of that is stored: an Identity Service session is marked so in storage by its caller once the
/// number's registration lock let it through ([`crate::store::SessionRepository::validate`]), for the later
/// requests that bind its number; a sign-up session is used up by the request that checked it, and
/// [`consume`](crate::store::SessionRepository::consume) records the validation with it (one write fewer per
/// sign-up). Either way, a request refused after the code for its registration lock checks the code again
/// when retried with the PIN.
pub async fn check_code(
    app: &App,
    purpose: Purpose,
    sid: &str,
    client_secret: &str,
    code_text: &str,
    ip: Option<IpAddr>,
) -> Result<CodeSession, ApiError> {
    app.limiter.check_verify_ip(ip)?;
    let s = find(app, purpose, sid, client_secret).await?;
    let now = app.now();
    let max = app.config.codes.max_attempts as i64;
    refuse_unusable(&s, max, now)?;
    app.limiter.check_verify_number(&s.number)?;
    let Some(mut s) = app.store.reserve_attempt(&s.sid, max, now).await? else {
        // Used up, consumed or expired since it was read: say which.
        let s = app.store.session(&s.sid).await?.ok_or(ApiError::NoValidSession)?;
        refuse_unusable(&s, max, now)?;
        return Err(ApiError::LimitExceeded(None));
    };
    if !code::matches(app.code_key(), &s.sid, code_text, &s.code_hash) {
        tracing::info!(attempts = s.attempts, "wrong code");
        return Err(ApiError::WrongCode);
    }
    s.validated_at.get_or_insert(now);
    Ok(s)
}

/// When a session's number was validated, if that validation is still usable: not consumed and at most
/// `codes.validated_ttl_secs` old.
pub fn validation(app: &App, s: &CodeSession) -> Result<i64, ApiError> {
    if s.consumed_at.is_some() {
        return Err(ApiError::NoValidSession);
    }
    let validated_at = s.validated_at.ok_or(ApiError::SessionNotValidated)?;
    if validated_at + app.config.codes.validated_ttl_secs as i64 <= app.now() {
        return Err(ApiError::SessionExpired);
    }
    Ok(validated_at)
}

/// Why a session cannot take a code any more, if it cannot.
fn refuse_unusable(s: &CodeSession, max: i64, now: i64) -> Result<(), ApiError> {
    if s.consumed_at.is_some() {
        return Err(ApiError::NoValidSession);
    }
    if s.attempts >= max {
        return Err(ApiError::LimitExceeded(None));
    }
    if s.expires_at <= now {
        return Err(ApiError::SessionExpired);
    }
    Ok(())
}
