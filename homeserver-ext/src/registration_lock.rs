//! Registration lock: a PIN the user sets, which a new sign-in by SMS code must also give while the lock is on.
//!
//! Whoever receives a number's SMS (after a SIM swap, a ported-out number, an SS7 interception) can pass the
//! code check; with a lock, that is not enough to take the account. The PIN is stored only as Argon2id
//! (19 MiB, 2 passes, a fresh 16-byte salt) keyed with `registration_lock.secret`, which is never in the
//! database: a dump alone gives no way to test PINs. It is never logged.
//!
//! Wrong PINs are limited per account, whatever the client address: each attempt is reserved in storage
//! before the PIN is compared (a compare-and-swap on the failure count, so concurrent guesses cannot exceed
//! the cap), the next attempt must wait `slowdown_secs · 2^(failures−1)` (at most an hour), and after
//! `max_failures` the account is locked out until the lock lapses. The lock lapses when no device of the
//! account was active for `lapse_secs` (7 days, as Signal): the client reports activity
//! (`GET /_tincan/client/v1/registration_lock`), and so does every sign-in; before a lock is judged lapsed the
//! homeserver is asked when the account's devices were last seen (any Matrix client, a stock one signed in
//! through the OpenID provider too; needs the appservice backend or `homeserver.admin_token`). A user who lost
//! every device can therefore still get back in with the SMS code alone once the lapse has passed; the lapsed
//! lock is then removed.

use crate::api::{Json, extract_bearer};
use crate::app::App;
use crate::error::ApiError;
use crate::homeserver::whoami;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use axum::extract::State;
use axum::http::HeaderMap;
use serde::Deserialize;
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;

/// A PIN is 4 to 64 characters.
fn check_pin_shape(pin: &str) -> Result<(), ApiError> {
    let n = pin.chars().count();
    if (4..=64).contains(&n) { Ok(()) } else { Err(ApiError::InvalidParam("pin")) }
}

fn argon2(secret: &[u8]) -> Result<Argon2<'_>, ApiError> {
    let params = Params::new(19 * 1024, 2, 1, None).expect("valid Argon2 parameters");
    Argon2::new_with_secret(secret, Algorithm::Argon2id, Version::V0x13, params)
        .map_err(|_| ApiError::Internal("registration_lock.secret is not usable"))
}

/// The stored form of a PIN: an Argon2id PHC string under `secret` (the salt inside it, the secret not).
pub fn hash_pin(secret: &[u8], pin: &str, salt: &[u8; 16]) -> Result<String, ApiError> {
    let salt = SaltString::encode_b64(salt).expect("16 bytes make a salt");
    let hash = argon2(secret)?.hash_password(pin.as_bytes(), &salt).map_err(|_| ApiError::InvalidParam("pin"))?;
    Ok(hash.to_string())
}

/// Whether `pin` is the one `stored` was made from under `secret`.
pub fn pin_matches(secret: &[u8], pin: &str, stored: &str) -> bool {
    let Ok(parsed) = PasswordHash::new(stored) else { return false };
    argon2(secret).is_ok_and(|a| a.verify_password(pin.as_bytes(), &parsed).is_ok())
}

/// Hashing takes tens of milliseconds of CPU: off the async workers.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f).await.map_err(|_| ApiError::Internal("PIN hashing failed"))
}

/// The wait before the attempt after `failures` wrong PINs.
fn slowdown(app: &App, failures: i64) -> i64 {
    let base = app.config.registration_lock.slowdown_secs as i64;
    let exp = u32::try_from(failures.clamp(1, 20) - 1).unwrap_or(0);
    base.saturating_mul(1i64 << exp).min(3600)
}

/// Whether `user_id` has a lock that has not lapsed (a lapsed one is removed).
pub async fn holds(app: &App, user_id: &str) -> Result<bool, ApiError> {
    let Some(lock) = app.store.registration_lock(user_id).await? else { return Ok(false) };
    if lapsed(app, last_active(app, &lock).await?) {
        app.store.delete_registration_lock(user_id).await?;
        return Ok(false);
    }
    Ok(true)
}

fn lapsed(app: &App, last_active_at: i64) -> bool {
    last_active_at.saturating_add(app.config.registration_lock.lapse_secs as i64) <= app.now()
}

/// When a device of the lock's account was last active: what was reported here (sign-ins, the client's
/// status calls), or — when that alone would let the lock lapse — the homeserver's own record of the
/// account's devices ([`crate::homeserver::last_seen`]), so that a user whose devices never report here (a
/// stock Matrix client signed in through the OpenID provider, an app left open) keeps the lock while any of
/// them is in use. A newer homeserver record is stored as the lock's activity. A homeserver that cannot be
/// asked is an error, not a lapse: an outage must not open a lock.
async fn last_active(app: &App, lock: &crate::store::RegistrationLock) -> Result<i64, ApiError> {
    if !lapsed(app, lock.last_active_at) {
        return Ok(lock.last_active_at);
    }
    let seen = crate::homeserver::last_seen(&app.http, &app.config, &lock.user_id).await?;
    match seen {
        Some(seen) if seen > lock.last_active_at => {
            app.store.touch_registration_lock(&lock.user_id, seen).await?;
            Ok(seen)
        }
        _ => Ok(lock.last_active_at),
    }
}

/// Before a sign-in by SMS code of `user_id` (whose code was right): passes when the account has no lock, the
/// lock lapsed (it is then removed), or `pin` is right. A missing PIN is `IO.TINCAN.REGISTRATION_LOCKED`, a
/// wrong one `IO.TINCAN.WRONG_PIN`; too early after a wrong one, or after `max_failures`, `M_LIMIT_EXCEEDED`.
/// The sign-in's code session is not used up by a refusal, so the owner can send the PIN with the same code.
pub async fn check(app: &App, user_id: &str, pin: Option<&str>) -> Result<(), ApiError> {
    let Some(lock) = app.store.registration_lock(user_id).await? else { return Ok(()) };
    let conf = &app.config.registration_lock;
    let now = app.now();
    let last_active_at = last_active(app, &lock).await?;
    if lapsed(app, last_active_at) {
        tracing::info!(%user_id, "registration lock lapsed (no active device); removed");
        app.store.delete_registration_lock(user_id).await?;
        return Ok(());
    }
    let Some(pin) = pin else { return Err(ApiError::RegistrationLocked) };
    if lock.failures >= i64::from(conf.max_failures) {
        let lapses_at = last_active_at.saturating_add(conf.lapse_secs as i64);
        return Err(ApiError::LimitExceeded(Some(Duration::from_secs((lapses_at - now).max(1) as u64))));
    }
    if lock.next_try_at > now {
        return Err(ApiError::LimitExceeded(Some(Duration::from_secs((lock.next_try_at - now) as u64))));
    }
    // The attempt is counted before the comparison; a concurrent attempt that counted first wins the slot.
    let next_try_at = now + slowdown(app, lock.failures + 1);
    if !app.store.reserve_pin_attempt(user_id, lock.failures, now, next_try_at).await? {
        return Err(ApiError::LimitExceeded(Some(Duration::from_secs(1))));
    }
    let (secret, pin, stored) = (conf.secret.expose().as_bytes().to_vec(), pin.to_owned(), lock.pin_hash);
    if blocking(move || pin_matches(&secret, &pin, &stored)).await? {
        app.store.reset_pin_failures(user_id, now).await?;
        Ok(())
    } else {
        tracing::info!(%user_id, failures = lock.failures + 1, "wrong registration lock PIN");
        Err(ApiError::WrongPin)
    }
}

/// Before a number is validated for someone by SMS code (the Identity Service's msisdn validation, which a
/// homeserver uses to attach the number to an account): [`check`] against the lock of the number's account here
/// and of the Matrix ID it is bound to (each that has one). A number no lock guards passes.
pub async fn check_number(app: &App, number: &str, pin: Option<&str>) -> Result<(), ApiError> {
    let account = app.store.account_by_number(number).await?.map(|a| a.user_id);
    let bound = app.store.binding(number).await?.map(|b| b.user_id).filter(|b| Some(b) != account.as_ref());
    for user_id in account.iter().chain(bound.iter()) {
        if app.store.registration_lock(user_id).await?.is_some() {
            check(app, user_id, pin).await?;
        }
    }
    Ok(())
}

/// `PUT /_tincan/client/v1/registration_lock` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SetLock {
    /// The PIN (4 to 64 characters).
    pub pin: String,
}

async fn caller(app: &App, headers: &HeaderMap) -> Result<String, ApiError> {
    let token = extract_bearer(headers).ok_or(ApiError::MissingToken)?;
    whoami(&app.http, &app.config.homeserver_url, token).await?.ok_or(ApiError::UnknownToken)
}

fn enabled(app: &App) -> Result<(), ApiError> {
    if app.config.registration_lock.secret.is_empty() {
        return Err(ApiError::NotFound);
    }
    Ok(())
}

/// Sets (or replaces) the caller's PIN; counts as activity and clears past failures.
pub async fn set(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Json(req): Json<SetLock>,
) -> Result<axum::Json<Value>, ApiError> {
    enabled(&app)?;
    check_pin_shape(&req.pin)?;
    let user_id = caller(&app, &headers).await?;
    let salt: [u8; 16] = app.with_rng(rand::Rng::random);
    let secret = app.config.registration_lock.secret.expose().as_bytes().to_vec();
    let pin = req.pin;
    let hash = blocking(move || hash_pin(&secret, &pin, &salt)).await??;
    app.store.set_registration_lock(&user_id, &hash, app.now()).await?;
    tracing::info!(%user_id, "registration lock set");
    Ok(axum::Json(json!({})))
}

/// Removes the caller's lock.
pub async fn remove(State(app): State<Arc<App>>, headers: HeaderMap) -> Result<axum::Json<Value>, ApiError> {
    enabled(&app)?;
    let user_id = caller(&app, &headers).await?;
    app.store.delete_registration_lock(&user_id).await?;
    tracing::info!(%user_id, "registration lock removed");
    Ok(axum::Json(json!({})))
}

/// Whether the caller has a lock, and until when it holds without further activity; the call itself is the
/// activity that keeps it from lapsing (clients make it at start and daily).
pub async fn status(State(app): State<Arc<App>>, headers: HeaderMap) -> Result<axum::Json<Value>, ApiError> {
    enabled(&app)?;
    let user_id = caller(&app, &headers).await?;
    let now = app.now();
    let on = app.store.touch_registration_lock(&user_id, now).await?;
    let lapse_ms = app.config.registration_lock.lapse_secs.saturating_mul(1000);
    Ok(axum::Json(if on { json!({"enabled": true, "lapses_in_ms": lapse_ms}) } else { json!({"enabled": false}) }))
}
