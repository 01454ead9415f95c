//! Number porting between providers, both sides, through the directory's `/v1/ports`.
//!
//! **Gaining side.** A sign-up verifies a number by SMS; when the directory refuses to publish it because
//! another provider holds it (409 `number_held_by_other_provider`), that verification is this provider's
//! proof of possession: [`file`] asks the directory for the number (`POST /v1/ports`, our token) on behalf of
//! the new account, and `register/verify` answers with `port: {"id", "state": "pending", "window_ends_at_ms"}`.
//! Until the port completes the number is not bound here (the Identity Service does not answer it with the new
//! account). `PUT keys/master` meanwhile amends the request with the user's key, so the directory publishes it
//! with the move.
//!
//! **Losing side.** The directory tells us by webhook (`POST /_tincan/directory/v1/ports`,
//! `{"port_id", "event"}`) and lists our open ports (`GET /v1/ports?open=true`, polled every
//! `porting.poll_interval_secs` since webhooks are not retried). [`sync`] reads the port back from the
//! directory with our token — the webhook's body is never trusted, only its port id — and answers a pending one
//! ([`answer`]): `not_in_service` when no account here has the number, `registration_locked` when its account
//! has a live registration lock, else `porting.unlocked` (`release`, or `wait` for the window's end). A release
//! waits until the request carries the new account's master key (the directory's `amended` webhook says when)
//! or is `porting.release_key_wait_secs` old, so the number, its route and its key move in one port entry of
//! the transparency log: a client that verified the old key then sees a move, not a key change.
//!
//! **Either side, once the port closed.** Completed: the gaining side binds the number to the new account and
//! records it as published (the directory already holds its route and key); the losing side stops treating
//! the number as its own (the Identity Service binding goes, the account is no longer published; the account
//! itself is kept for its user), and the old account tells its direct chats where the number went
//! ([`notice`]). Each port's effect happens once ([`crate::store::PortRepository::close_port`]). The user then
//! keeps the old account — messages sent to it are answered with the same notice — or closes it
//! ([`old_account`]).

pub mod notice;
pub mod old_account;

use crate::app::App;
use crate::config::UnlockedPorts;
use crate::directory::{DirectoryError, PortView};
use crate::error::ApiError;
use crate::number::E164;
use crate::store::{Account, Binding, PortRecord, PortSide, StoreError};
use axum::extract::State;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::Duration;

/// Why a port could not be handled.
#[derive(Debug, thiserror::Error)]
pub enum PortingError {
    /// No directory is configured.
    #[error("no directory configured")]
    NotConfigured,
    /// The directory failed or refused.
    #[error(transparent)]
    Directory(#[from] DirectoryError),
    /// Storage failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A local step failed (the registration-lock check, binding the number).
    #[error(transparent)]
    Local(Box<ApiError>),
}

impl From<PortingError> for ApiError {
    fn from(e: PortingError) -> Self {
        match e {
            PortingError::NotConfigured => ApiError::NotFound,
            PortingError::Directory(d) => ApiError::Directory(d),
            PortingError::Store(s) => ApiError::Store(s),
            PortingError::Local(l) => *l,
        }
    }
}

/// A port as `register/verify` reports it to the user.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortStatus {
    /// The directory's id of the request.
    pub id: i64,
    /// `pending` while the losing provider may still answer; `completed`, `objected` or `cancelled` after.
    pub state: String,
    /// The losing provider's objection reason, when it objected.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// When the number moves at the latest if the losing provider does not object, Unix milliseconds.
    pub window_ends_at_ms: i64,
}

impl From<&PortView> for PortStatus {
    fn from(v: &PortView) -> Self {
        PortStatus {
            id: v.id,
            state: v.state.clone(),
            reason: v.reason.clone(),
            window_ends_at_ms: v.window_ends_at_ms,
        }
    }
}

/// Files (or amends) the port of `number`, which another provider holds, to `account` here, and records it.
pub async fn file(app: &App, number: &E164, account: &Account) -> Result<PortStatus, PortingError> {
    let dir = app.directory.as_ref().ok_or(PortingError::NotConfigured)?;
    let view = dir.file_port(number, &account.user_id, None).await?;
    record(app, &view, PortSide::Gaining, Some(account.user_id.clone())).await?;
    tracing::info!(number = %number.redacted(), port_id = view.id, from = %view.losing, "port filed");
    Ok(PortStatus::from(&view))
}

/// Amends our pending port of `number` with the user's master key; false when there is none.
pub async fn amend_key(
    app: &App,
    number: &E164,
    account: &Account,
    key: &tincan_enum_core::MasterKey,
) -> Result<bool, PortingError> {
    let dir = app.directory.as_ref().ok_or(PortingError::NotConfigured)?;
    let Some(ours) = app.store.port_of_number(number.as_str(), PortSide::Gaining).await? else { return Ok(false) };
    // As the directory has it now (a closing webhook may have been missed): only a pending request is amended,
    // never a new one filed without a fresh SMS verification.
    sync(app, ours.id).await?;
    if app.store.port(ours.id).await?.is_none_or(|p| p.state != "pending") {
        return Ok(false);
    }
    let view = dir.file_port(number, &account.user_id, Some(key)).await?;
    record(app, &view, PortSide::Gaining, Some(account.user_id.clone())).await?;
    Ok(true)
}

async fn record(
    app: &App,
    view: &PortView,
    side: PortSide,
    user_id: Option<String>,
) -> Result<PortRecord, PortingError> {
    let p = PortRecord {
        id: view.id,
        number: view.number.clone(),
        side,
        user_id,
        state: "pending".into(),
        reason: None,
        window_ends_at_ms: view.window_ends_at_ms,
        updated_at: app.now(),
    };
    Ok(app.store.insert_port(&p).await?)
}

/// Reads port `id` from the directory and acts on it: answers it when we are the losing side and it is
/// pending, applies its effect here once it closed. A port we are no party of (404) is ignored.
pub async fn sync(app: &App, id: i64) -> Result<(), PortingError> {
    let dir = app.directory.as_ref().ok_or(PortingError::NotConfigured)?;
    let view = match dir.port(id).await {
        Ok(v) => v,
        Err(DirectoryError::Refused(404) | DirectoryError::PortRefused(_)) => {
            tracing::info!(port_id = id, "no such port of ours at the directory; ignored");
            return Ok(());
        }
        Err(e) => return Err(e.into()),
    };
    sync_view(app, view).await
}

async fn sync_view(app: &App, view: PortView) -> Result<(), PortingError> {
    let known = match app.store.port(view.id).await? {
        Some(p) => p,
        // Not filed by us: another provider asks for one of our numbers.
        None => {
            let user_id = app.store.account_by_number(&view.number).await?.map(|a| a.user_id);
            record(app, &view, PortSide::Losing, user_id).await?
        }
    };
    if view.state == "pending" {
        if known.side == PortSide::Losing {
            answer(app, &known, &view).await?;
        }
        return Ok(());
    }
    settle(app, &known, &view).await
}

/// The losing side's answer to a pending port (see the module doc).
async fn answer(app: &App, known: &PortRecord, view: &PortView) -> Result<(), PortingError> {
    let dir = app.directory.as_ref().ok_or(PortingError::NotConfigured)?;
    let redacted = tincan_common::telemetry::redact_number(&view.number);
    let objection = match app.store.account_by_number(&view.number).await? {
        None => Some("not_in_service"),
        Some(a) => {
            let locked = crate::registration_lock::holds(app, &a.user_id).await;
            locked.map_err(|e| PortingError::Local(Box::new(e)))?.then_some("registration_locked")
        }
    };
    let answered = match (objection, app.config.porting.unlocked) {
        (Some(reason), _) => {
            tracing::info!(number = %redacted, port_id = known.id, to = %view.gaining, reason, "objecting to a port");
            dir.object_port(known.id, reason).await
        }
        (None, UnlockedPorts::Release) if view.key.is_none() && waits_for_key(app, view) => {
            // Released now, the number would move without the new account's key, and the key would follow as an
            // ordinary change: a client that verified the old key would see a key change rather than a move.
            tracing::info!(number = %redacted, port_id = known.id, "releasing once the request carries the key");
            return Ok(());
        }
        (None, UnlockedPorts::Release) => {
            tracing::info!(number = %redacted, port_id = known.id, to = %view.gaining, "releasing a number");
            dir.release_port(known.id).await
        }
        (None, UnlockedPorts::Wait) => return Ok(()),
    };
    match answered {
        Ok(now) if now.state != "pending" => settle(app, known, &now).await,
        Ok(_) => Ok(()),
        // Answered by another node or a second webhook first, or the window just ended: read it as it is.
        Err(DirectoryError::PortRefused(code)) => {
            tracing::info!(port_id = known.id, %code, "the port was closed meanwhile");
            let now = dir.port(known.id).await?;
            if now.state != "pending" { settle(app, known, &now).await } else { Ok(()) }
        }
        Err(e) => Err(e.into()),
    }
}

/// Whether a request to release still waits for the new account's key: `porting.release_key_wait_secs` after
/// it was filed (never when that is 0).
fn waits_for_key(app: &App, view: &PortView) -> bool {
    let wait = app.config.porting.release_key_wait_secs;
    let now_ms = app.clock.now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis());
    let filed_ms = u128::try_from(view.filed_at_ms).unwrap_or(0);
    wait > 0 && now_ms < filed_ms + u128::from(wait) * 1000
}

/// Applies a closed port's effect here, once.
async fn settle(app: &App, known: &PortRecord, view: &PortView) -> Result<(), PortingError> {
    if !app.store.close_port(known.id, &view.state, view.reason.as_deref(), app.now()).await? {
        return Ok(());
    }
    let redacted = tincan_common::telemetry::redact_number(&view.number);
    tracing::info!(number = %redacted, port_id = known.id, side = known.side.as_str(), state = %view.state, reason = ?view.reason, "port closed");
    if view.state != "completed" {
        return Ok(());
    }
    match known.side {
        PortSide::Gaining => {
            let Some(user_id) = &known.user_id else { return Ok(()) };
            let binding = Binding { number: view.number.clone(), user_id: user_id.clone() };
            crate::identity::bind_number(app, &binding).await.map_err(|e| PortingError::Local(Box::new(e)))?;
            app.store.mark_published(&view.number, Some(app.now())).await?;
        }
        PortSide::Losing => {
            if let Some(user_id) = &known.user_id {
                app.store.unbind(&view.number, user_id).await?;
            }
            app.store.mark_published(&view.number, None).await?;
            if let Some(user_id) = &known.user_id {
                tell_contacts(app, user_id, view).await;
            }
            app.moved_away.notify_one();
        }
    }
    Ok(())
}

/// The old account's direct chats hear where the number went ([`notice`]); a failure is logged.
async fn tell_contacts(app: &App, user_id: &str, view: &PortView) {
    let account = match app.store.account_by_number(&view.number).await {
        Ok(Some(a)) if a.user_id == user_id => a,
        Ok(_) => return,
        Err(e) => {
            tracing::warn!(port_id = view.id, error = %e, "no moved notice: the account could not be read");
            return;
        }
    };
    let Some(new_user) = new_user_of(view) else { return };
    match notice::send(app, &account.localpart, &new_user, &view.gaining, view.id).await {
        Ok(rooms) => tracing::info!(port_id = view.id, %user_id, rooms, "moved notice sent"),
        Err(e) => tracing::warn!(port_id = view.id, %user_id, error = %e, "the moved notice could not be sent"),
    }
}

/// The Matrix ID a port moves the number to (its `matrix:` service), if it names one.
fn new_user_of(view: &PortView) -> Option<String> {
    let matrix = view.services.iter().filter(|s| s.kind() == tincan_enum_core::ServiceType::Matrix);
    matrix.filter_map(|s| tincan_enum_lookup::MatrixUser::from_uri(s.uri())).next().map(|u| u.user_id())
}

/// Every port of ours the directory lists as open, and every one still pending here, synced once.
pub async fn sync_all(app: &App) -> Result<usize, PortingError> {
    let dir = app.directory.as_ref().ok_or(PortingError::NotConfigured)?;
    let open = dir.open_ports().await?;
    let mut seen: std::collections::BTreeSet<i64> = open.iter().map(|p| p.id).collect();
    let n = open.len();
    for view in open {
        let id = view.id;
        if let Err(e) = sync_view(app, view).await {
            tracing::warn!(port_id = id, error = %e, "port sync failed");
        }
    }
    for p in app.store.pending_ports().await? {
        if seen.insert(p.id)
            && let Err(e) = sync(app, p.id).await
        {
            tracing::warn!(port_id = p.id, error = %e, "port sync failed");
        }
    }
    Ok(n)
}

/// Runs [`sync_all`] at start and every `porting.poll_interval_secs` (not at all when it is 0).
pub async fn run(app: Arc<App>) {
    let every = app.config.porting.poll_interval_secs;
    if every == 0 {
        return;
    }
    loop {
        if let Err(e) = sync_all(&app).await {
            tracing::warn!(error = %e, "looking at the directory's ports failed; next try at the next interval");
        }
        tokio::time::sleep(Duration::from_secs(every)).await;
    }
}

/// The directory's webhook body.
#[derive(Debug, Deserialize)]
pub struct Webhook {
    /// The port the event is about.
    pub port_id: i64,
    /// `filed`, `completed`, `objected` or `cancelled` (informational: the port is read back).
    #[serde(default)]
    pub event: Option<String>,
}

/// `POST /_tincan/directory/v1/ports`: the directory says something happened to a port. The body is a hint
/// only, so it needs no signature (the directory signs none): the port is read back from the directory with
/// our token, and a port we are no party of is ignored. 404 when no directory is configured.
pub async fn webhook(
    State(app): State<Arc<App>>,
    crate::api::Json(hook): crate::api::Json<Webhook>,
) -> Result<axum::Json<serde_json::Value>, ApiError> {
    if app.directory.is_none() {
        return Err(ApiError::NotFound);
    }
    tracing::debug!(port_id = hook.port_id, event = ?hook.event, "port webhook");
    if let Err(e) = sync(&app, hook.port_id).await {
        tracing::warn!(port_id = hook.port_id, error = %e, "port webhook: sync failed (the poll retries)");
    }
    Ok(axum::Json(serde_json::json!({})))
}
