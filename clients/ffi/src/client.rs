//! [`Client`]: the core's `TincanClient` for the foreign side. One object per data dir, shared freely (every
//! method takes `&self`; the core client sits behind a read-write lock, written only by sign-up).

use crate::error::ClientError;
use crate::task::TaskHandle;
use crate::types::{
    Chat, ClientConfig, CodeRequest, Contact, Decision, IncomingMessage, Intent, SentMessage, SignedIn,
};
use crate::{on_runtime, runtime};
use futures::StreamExt;
use std::sync::Arc;
use std::time::Duration;
use tincan_client_core as core;
use tokio::sync::RwLock;

/// Receives the text messages that arrive while a sync runs ([`Client::start_sync`]).
#[uniffi::export(callback_interface)]
pub trait MessageListener: Send + Sync {
    /// One message (called on a background thread, in order of arrival).
    fn on_message(&self, message: IncomingMessage);
}

/// The Tincan client.
#[derive(uniffi::Object)]
pub struct Client {
    /// Always `Some` until dropped (see the `Drop` impl).
    inner: Option<Arc<RwLock<core::TincanClient>>>,
}

impl Client {
    fn inner(&self) -> &Arc<RwLock<core::TincanClient>> {
        self.inner.as_ref().expect("taken only on drop")
    }
}

/// The foreign side drops its last reference on its own thread (Python at interpreter exit, a Kotlin
/// finalizer…), where no tokio runtime runs, and matrix-sdk's stores need one to close (deadpool panics "no
/// reactor running", and a panic in a destructor aborts the process): drop the core client inside ours.
impl Drop for Client {
    fn drop(&mut self) {
        let _in_runtime = runtime().enter();
        drop(self.inner.take());
    }
}

/// Opens the client on its data dir, restoring the saved session if there is one (an app restart).
#[uniffi::export]
pub async fn open(config: ClientConfig) -> Result<Arc<Client>, ClientError> {
    let config = core_config(config)?;
    let inner = on_runtime(core::TincanClient::open(config)).await?;
    Ok(Arc::new(Client { inner: Some(Arc::new(RwLock::new(inner))) }))
}

/// Runs `$call` (an async call on the core client `$c`, read-locked) on the runtime and converts its result.
macro_rules! core_call {
    ($self:ident, |$c:ident| $call:expr) => {{
        let inner = $self.inner().clone();
        let r = on_runtime(async move {
            let $c = inner.read().await;
            $call.await
        })
        .await;
        r.map_err(ClientError::from)
    }};
}

#[uniffi::export]
impl Client {
    /// Step 1 of sign-up: the extension texts a code to `phone`.
    pub async fn register(&self, phone: String) -> Result<CodeRequest, ClientError> {
        core_call!(self, |c| c.register(&phone)).map(Into::into)
    }

    /// Step 2 of sign-up: the code → signed in, cross-signing set up and the key published in the directory.
    pub async fn verify(&self, code: String) -> Result<SignedIn, ClientError> {
        let inner = self.inner().clone();
        let signed = on_runtime(async move { inner.write().await.verify(&code).await }).await?;
        Ok(signed.into())
    }

    /// [`verify`](Self::verify) with the account's registration-lock PIN. A locked account's sign-in without
    /// it is `Refused` with code `registration_locked`, a wrong PIN `wrong_pin`: ask the user for the PIN and
    /// call this with the same code.
    pub async fn verify_with_pin(&self, code: String, pin: Option<String>) -> Result<SignedIn, ClientError> {
        let inner = self.inner().clone();
        let signed =
            on_runtime(async move { inner.write().await.verify_with_pin(&code, pin.as_deref()).await }).await?;
        Ok(signed.into())
    }

    /// Sets (or replaces) the registration-lock PIN (4 to 64 characters): a later sign-in with our number by
    /// SMS code then also needs it, until no device of ours was active for the provider's lapse time.
    pub async fn set_registration_lock(&self, pin: String) -> Result<(), ClientError> {
        core_call!(self, |c| c.set_registration_lock(&pin))
    }

    /// Removes the registration lock.
    pub async fn remove_registration_lock(&self) -> Result<(), ClientError> {
        core_call!(self, |c| c.remove_registration_lock())
    }

    /// Whether we have a registration lock. The call tells the provider this device is active, which keeps the
    /// lock from lapsing: the client makes it when it opens a saved session; an app that stays open makes it
    /// daily.
    pub async fn registration_lock_enabled(&self) -> Result<bool, ClientError> {
        Ok(core_call!(self, |c| c.registration_lock())?.enabled)
    }

    /// Our Matrix ID, when signed in.
    pub async fn user_id(&self) -> Option<String> {
        self.inner().read().await.user_id().map(|u| u.to_string())
    }

    /// The number we signed up with.
    pub async fn number(&self) -> Option<String> {
        self.inner().read().await.number().map(|n| n.to_string())
    }

    /// Our device, when signed in.
    pub async fn device_id(&self) -> Option<String> {
        self.inner().read().await.device_id()
    }

    /// Forgets the session here and in the app's session store (the device stays on the homeserver).
    pub async fn forget_session(&self) -> Result<(), ClientError> {
        let inner = self.inner().clone();
        on_runtime(async move { inner.write().await.forget_session() }).await.map_err(Into::into)
    }

    /// Closes (deactivates) our account at its provider once our number moved away to another provider by a
    /// completed port → the closed Matrix ID; irreversible, and the session is forgotten here and in the app's
    /// session store. `NotMovedAway`, `PortPending` or `CloseNotSupported` when the provider refuses (the
    /// session stays).
    pub async fn close_account(&self) -> Result<String, ClientError> {
        let inner = self.inner().clone();
        on_runtime(async move { inner.write().await.close_account().await }).await.map_err(Into::into)
    }

    /// Our master cross-signing key (unpadded base64).
    pub async fn own_master_key(&self) -> Result<Option<String>, ClientError> {
        let key = core_call!(self, |c| c.own_master_key())?;
        Ok(key.map(|k| k.to_base64()))
    }

    /// A number in the directory (validated, checked against its log) and, on Matrix, the contact's key
    /// compared with the directory's.
    pub async fn lookup(&self, phone: String) -> Result<Contact, ClientError> {
        core_call!(self, |c| c.check_contact(&phone)).map(Into::into)
    }

    /// The route a text or call to `phone` would take now (nothing is sent).
    pub async fn route_to_number(&self, phone: String, intent: Intent, force: bool) -> Result<Decision, ClientError> {
        let (decision, _) = core_call!(self, |c| c.route_to_number(&phone, intent.into(), force))?;
        Ok(decision.into())
    }

    /// Sends `text` to `phone` along the route the core decides: Matrix (end-to-end encrypted) to a Tincan
    /// user, else the provider's SIP or SMS bridge. `force` sends to a contact whose key contradicts the
    /// directory (the user was warned).
    pub async fn send_to_number(&self, phone: String, text: String, force: bool) -> Result<SentMessage, ClientError> {
        core_call!(self, |c| c.send_to_number(&phone, &text, force)).map(Into::into)
    }

    /// [`send_to_number`](Self::send_to_number), then, through a bridge, waits up to `wait_ms` for the bridge to
    /// say the text was delivered or failed (`SentMessage.delivery`); over Matrix nothing is awaited.
    pub async fn send_to_number_waiting(
        &self,
        phone: String,
        text: String,
        force: bool,
        wait_ms: u64,
    ) -> Result<SentMessage, ClientError> {
        let wait = Duration::from_millis(wait_ms);
        core_call!(self, |c| c.send_to_number_waiting(&phone, &text, force, wait)).map(Into::into)
    }

    /// Opens (or finds) the conversation with `phone` along the route the core decides for texts.
    pub async fn start_chat(&self, phone: String, force: bool) -> Result<Chat, ClientError> {
        core_call!(self, |c| c.start_chat(&phone, force)).map(Into::into)
    }

    /// One sync round trip (long-polling at most `timeout_ms`), accepting invites to encrypted DMs.
    pub async fn sync_once(&self, timeout_ms: u64) -> Result<(), ClientError> {
        core_call!(self, |c| c.sync_once(Duration::from_millis(timeout_ms)))
    }

    /// Registers an HTTP pusher for this device: the homeserver posts the ids of events that notify to
    /// `gateway_url` (the app's push gateway, `…/_matrix/push/v1/notify`) for `app_id`, with `pushkey` (the
    /// platform's push token).
    pub async fn register_pusher(
        &self,
        gateway_url: String,
        app_id: String,
        pushkey: String,
        device_name: String,
        lang: String,
    ) -> Result<(), ClientError> {
        let push = core::PushConfig { gateway_url, app_id };
        core_call!(self, |c| c.register_pusher(&push, &pushkey, &device_name, &lang))
    }

    /// The text of the event a push named, fetched and decrypted (the notification extension's path); `None`
    /// when it is not a text message or cannot be decrypted.
    pub async fn decrypt_notification(
        &self,
        room_id: String,
        event_id: String,
    ) -> Result<Option<IncomingMessage>, ClientError> {
        core_call!(self, |c| c.decrypt_notification(&room_id, &event_id)).map(|m| m.map(Into::into))
    }

    /// Starts syncing in the background; messages go to `listener` until the handle is cancelled or dropped.
    pub async fn start_sync(&self, listener: Box<dyn MessageListener>) -> Result<Arc<TaskHandle>, ClientError> {
        let inner = self.inner().clone();
        let handle = on_runtime(async move {
            let client = inner.read().await;
            // Subscribed before the sync starts, so nothing that arrives is missed.
            let mut messages = Box::pin(client.messages());
            let sync = client.spawn_sync()?;
            Ok::<_, core::ClientError>(runtime().spawn(async move {
                let _stop_sync_with_us = AbortOnDrop(sync);
                while let Some(m) = messages.next().await {
                    listener.on_message(m.into());
                }
            }))
        })
        .await?;
        Ok(Arc::new(TaskHandle::new(handle)))
    }
}

/// Aborts the sync task when the feeding task ends (cancelled or done).
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

fn core_config(c: ClientConfig) -> Result<core::ClientConfig, ClientError> {
    let mut out = core::ClientConfig::new(&c.data_dir);
    out.device_name = c.device_name;
    out.session_store = c
        .session_store
        .map(|s| std::sync::Arc::new(crate::session::AppSessionStore(s)) as std::sync::Arc<dyn core::SessionStore>);
    if let Some(key) = c.store_key {
        let key: [u8; 32] = key
            .try_into()
            .map_err(|k: Vec<u8>| ClientError::invalid(format!("store_key: {} bytes, not 32", k.len())))?;
        out.store_key = core::StoreKey::Bytes(key);
    }
    out.ext_url =
        c.ext_url.map(|u| u.parse()).transpose().map_err(|e| ClientError::invalid(format!("ext_url: {e}")))?;
    if let Some(charter) = c.charter {
        if charter.root.is_empty() {
            return Err(ClientError::invalid("charter.root: empty (the charter's root.json)"));
        }
        let url = charter.url.parse().map_err(|e| ClientError::invalid(format!("charter.url: {e}")))?;
        out.charter = Some(core::charter::CharterConfig { url, root: charter.root });
    }
    if let Some(d) = c.directory {
        let servers = d
            .servers
            .iter()
            .map(|s| s.parse().map_err(|e| ClientError::invalid(format!("directory server {s}: {e}"))))
            .collect::<Result<Vec<_>, ClientError>>()?;
        let log = match (d.log_url, d.log_key) {
            (Some(url), Some(key)) => Some(core::TransparencyLogConfig {
                url: url.parse().map_err(|e| ClientError::invalid(format!("log_url: {e}")))?,
                key,
            }),
            (None, None) => None,
            _ => return Err(ClientError::invalid("log_url and log_key go together")),
        };
        out.directory = Some(core::DirectoryConfig {
            servers,
            apex: d.apex,
            trust_anchor: d.trust_anchor,
            allow_insecure: d.allow_insecure,
            log,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(charter: Option<crate::types::CharterConfig>) -> ClientConfig {
        ClientConfig {
            data_dir: "/nonexistent/tincan-ffi-test".into(),
            store_key: None,
            ext_url: None,
            directory: None,
            device_name: "test".into(),
            session_store: None,
            charter,
        }
    }

    /// An app on the bindings can use the charter's trust list: its `ClientConfig.charter` becomes the client
    /// core's, URL and root unchanged; a malformed one is refused as invalid input, not dropped.
    #[test]
    fn the_apps_charter_setting_reaches_the_client_core() {
        let root = br#"{"signed":{"type":"root"}}"#.to_vec();
        let charter = crate::types::CharterConfig { url: "https://charter.example/tincan/".into(), root: root.clone() };
        let out = core_config(config(Some(charter))).unwrap();
        let c = out.charter.expect("the charter setting is passed on");
        assert_eq!((c.url.as_str(), c.root), ("https://charter.example/tincan/", root));
        assert!(core_config(config(None)).unwrap().charter.is_none());

        for (url, root, what) in
            [("not a url", vec![b'{'], "charter.url"), ("https://c.example/", vec![], "charter.root")]
        {
            let e = core_config(config(Some(crate::types::CharterConfig { url: url.into(), root }))).unwrap_err();
            assert!(e.to_string().contains(what), "{what}: {e}");
        }
    }
}
