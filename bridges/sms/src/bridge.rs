//! The SMS network connector on the bridge core: Matrix DMs with `@sms_+<number>` ghosts become SMS, SMS to the
//! provider's numbers come back into those DMs.
//!
//! - [`outbound`]: a Matrix message → checks (blocked and premium prefixes, opt-outs, rate limits), the user's
//!   sender number, segments, the charge held, the outbox — all before the core marks the event done, so the
//!   event is in the core's inbox or in the outbox at every moment, and in the outbox once (by event id).
//! - [`inbound`]: an SMS to one of the provider's numbers → the user holding it, long messages put back
//!   together (stored part by part before the SMSC is answered), STOP/START recorded.
//! - [`status`]: what the SMSCs report (accepted, delivered, failed) as the core's message status; a failure
//!   is never silent. Charges settled or released once a message leaves the queue.
//! - [`commands`]: `!price`, `!numbers`, `!number new|use`, `!help`, typed in a DM.
//!
//! The core has no bot notices for connectors yet: an opt-out note or a command's answer is a message from the
//! ghost starting with ℹ or ⚠ (see [`status::notice`]).

pub mod commands;
pub mod inbound;
mod links;
pub mod outbound;
pub mod status;

use crate::billing::Billing;
use crate::config::SmsConfig;
use crate::limits::KeyedBuckets;
use crate::link::LinkSet;
use crate::metrics::Metrics;
use crate::mms::{MmsCarrier, MmsStatus, Twilio};
use crate::protocol::reassembly::Reassembler;
use crate::store::Store;
use async_trait::async_trait;
use ruma::UserId;
use std::sync::{Arc, Mutex, OnceLock};
use tincan_appservice::{
    BridgeHandle, Capabilities, ConnectorError, NetworkApi, NetworkConnector, RemoteProfile, RemoteUserId,
};
use tincan_common::Clock;
use tokio::task::JoinHandle;

/// The connector; cheap to clone.
#[derive(Debug, Clone)]
pub struct SmsBridge(pub(crate) Arc<Inner>);

#[derive(Debug)]
pub(crate) struct Inner {
    pub(crate) config: SmsConfig,
    pub(crate) server_name: String,
    pub(crate) store: Arc<dyn Store>,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) billing: Arc<dyn Billing>,
    pub(crate) metrics: Metrics,
    pub(crate) handle: OnceLock<BridgeHandle>,
    pub(crate) links: Mutex<Option<LinkSet>>,
    pub(crate) per_user: Mutex<KeyedBuckets>,
    pub(crate) per_prefix: Mutex<KeyedBuckets>,
    pub(crate) reassembler: tokio::sync::Mutex<Reassembler>,
    pub(crate) tasks: Mutex<Vec<JoinHandle<()>>>,
    /// The carrier's MMS API, when `sms.mms.api_url` is set.
    pub(crate) mms: Option<Arc<dyn MmsCarrier>>,
}

impl SmsBridge {
    /// A connector for `config`, its state in `store`; `server_name` is the homeserver's.
    pub fn new(
        config: SmsConfig,
        server_name: &str,
        store: Arc<dyn Store>,
        billing: Arc<dyn Billing>,
        clock: Arc<dyn Clock>,
    ) -> Self {
        let limits = &config.limits;
        let reassembly = &config.reassembly;
        let mms = (!config.mms.api_url.is_empty())
            .then(|| Twilio::new(&config.mms.api_url, &config.mms.account, config.mms.token.clone()))
            .and_then(|t| t.inspect_err(|e| tracing::error!(error = %e, "no MMS: the HTTP client failed")).ok())
            .map(|t| Arc::new(t) as Arc<dyn MmsCarrier>);
        Self(Arc::new(Inner {
            per_user: Mutex::new(KeyedBuckets::new(limits.per_user, limits.max_tracked)),
            per_prefix: Mutex::new(KeyedBuckets::new(limits.per_prefix, limits.max_tracked)),
            reassembler: tokio::sync::Mutex::new(Reassembler::new(
                reassembly.timeout_secs * 1000,
                reassembly.max_waiting,
            )),
            server_name: server_name.to_owned(),
            store,
            clock,
            billing,
            metrics: Metrics::default(),
            handle: OnceLock::new(),
            links: Mutex::new(None),
            tasks: Mutex::new(Vec::new()),
            mms,
            config,
        }))
    }

    /// The metrics.
    pub fn metrics(&self) -> &Metrics {
        &self.0.metrics
    }

    /// The state.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.0.store
    }

    /// The image behind a link token and its MIME type (`GET /m/<token>`), while the link works.
    pub fn linked_image(&self, token: &str) -> Option<(String, Vec<u8>)> {
        if !self.0.keeps_images() {
            return None;
        }
        links::load(&self.0.config.mms, token, self.0.clock.now())
    }

    /// A status callback of the MMS carrier (`POST /mms/status?QUERY` with the form `params`, signed with
    /// `signature`): checked, then shown as the message's status in Matrix.
    pub async fn mms_status(
        &self,
        query: &str,
        params: &[(String, String)],
        signature: &str,
    ) -> Result<(), MmsCallbackError> {
        let carrier = self.0.mms.as_ref().ok_or(MmsCallbackError::NoMms)?;
        let url = format!("{}/mms/status?{query}", self.0.config.mms.link_base_url.trim_end_matches('/'));
        if !carrier.verify_callback(&url, params, signature) {
            return Err(MmsCallbackError::BadSignature);
        }
        let q: Vec<(String, String)> = url::form_urlencoded::parse(query.as_bytes()).into_owned().collect();
        let get = |k: &str| q.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        let (Some(user), Some(to), Some(event)) = (get("u"), get("to"), get("e")) else {
            return Err(MmsCallbackError::NotOurs);
        };
        let receiver = ruma::OwnedUserId::try_from(user).map_err(|_| MmsCallbackError::NotOurs)?;
        let event_id = ruma::OwnedEventId::try_from(event).map_err(|_| MmsCallbackError::NotOurs)?;
        let status = match carrier.callback_status(params) {
            MmsStatus::Pending => return Ok(()),
            MmsStatus::Sent => tincan_appservice::MessageStatus::Sent,
            MmsStatus::Delivered => {
                self.0.metrics.inc(&self.0.metrics.delivered);
                tincan_appservice::MessageStatus::Delivered
            }
            MmsStatus::Failed(reason) => {
                self.0.metrics.inc(&self.0.metrics.failed);
                tincan_appservice::MessageStatus::Failed { reason }
            }
        };
        let handle = self.0.handle.get().ok_or(MmsCallbackError::NotStarted)?;
        let portal = tincan_appservice::PortalKey { receiver, chat: tincan_appservice::RemoteChatId::new(to) };
        handle
            .report_message_status(&portal, &event_id, status)
            .await
            .map_err(|e| MmsCallbackError::Core(e.to_string()))
    }

    /// A message the MMS carrier received for one of the provider's numbers (`POST /mms/inbound` with the form
    /// `params`, signed with `signature`): checked, its attachments fetched, then queued into the DM of the
    /// user holding the number. `Ok` once it is durably queued (or held by nobody: dropped and counted).
    pub async fn mms_incoming(&self, params: &[(String, String)], signature: &str) -> Result<(), MmsCallbackError> {
        let carrier = self.0.mms.as_ref().ok_or(MmsCallbackError::NoMms)?;
        let url = format!("{}/mms/inbound", self.0.config.mms.link_base_url.trim_end_matches('/'));
        if !carrier.verify_callback(&url, params, signature) {
            return Err(MmsCallbackError::BadSignature);
        }
        let message = carrier.incoming(params).map_err(|why| {
            tracing::warn!(%why, "a signed incoming-message webhook carries no message");
            MmsCallbackError::NotOurs
        })?;
        self.0.metrics.inc(&self.0.metrics.parts_in);
        inbound::mms(&self.0, message).await.map_err(|e| match e {
            inbound::DeliverError::NotStarted => MmsCallbackError::NotStarted,
            other => MmsCallbackError::Core(other.to_string()),
        })
    }

    /// The SMSC links' state (empty before `start`).
    pub fn links(&self) -> Vec<crate::link::LinkStatus> {
        self.0.links.lock().expect("not poisoned").as_ref().map(LinkSet::status).unwrap_or_default()
    }

    /// Unbinds from the SMSCs and stops the workers.
    pub async fn stop(&self) {
        for t in self.0.tasks.lock().expect("not poisoned").drain(..) {
            t.abort();
        }
        let links = self.0.links.lock().expect("not poisoned").take();
        if let Some(l) = links {
            l.stop().await;
        }
    }
}

/// Why an MMS status callback was not taken.
#[derive(Debug, thiserror::Error)]
pub enum MmsCallbackError {
    /// No MMS API is configured.
    #[error("no MMS API is configured")]
    NoMms,
    /// The signature does not match.
    #[error("the callback's signature does not match")]
    BadSignature,
    /// Signed, but without the message it is about (or, for an incoming message, without a message).
    #[error("the callback names no message of this bridge")]
    NotOurs,
    /// Before the bridge started.
    #[error("the bridge has not started")]
    NotStarted,
    /// The core could not take the status or message, or an attachment could not be fetched now (the carrier
    /// calls again).
    #[error("not recorded: {0}")]
    Core(String),
}

impl Inner {
    /// Whether images are kept and served by link: as SMS links, or for the MMS carrier to fetch.
    pub(crate) fn keeps_images(&self) -> bool {
        self.config.mms.images_as_links || self.mms.is_some()
    }

    pub(crate) fn now_ms(&self) -> u64 {
        self.clock.now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
    }

    pub(crate) fn wake_links(&self) {
        if let Some(l) = self.links.lock().expect("not poisoned").as_ref() {
            l.wake();
        }
    }

    /// Whether `user` may use the bridge.
    pub(crate) fn allowed(&self, user: &UserId) -> bool {
        self.config
            .users
            .iter()
            .any(|u| if u == "*" { user.server_name().as_str() == self.server_name } else { u == user.as_str() })
    }
}

/// A phone number as the bridge names remote users: valid E.164.
pub(crate) fn is_phone_number(s: &str) -> bool {
    tincan_enum_core::E164::parse(s).is_ok_and(|e| e.as_str() == s)
}

#[async_trait]
impl NetworkConnector for SmsBridge {
    fn name(&self) -> &str {
        "sms"
    }

    fn ghost_prefix(&self) -> &str {
        "sms_"
    }

    fn capabilities(&self) -> Capabilities {
        let mut c = Capabilities::text_only();
        c.pstn_lookup = true;
        // The core fetches (and decrypts) images only when they become links or MMS.
        c.media = self.0.keeps_images();
        c
    }

    async fn start(&self, bridge: BridgeHandle) -> Result<(), ConnectorError> {
        let _ = self.0.handle.set(bridge);
        if self.0.billing.is_free() {
            tracing::warn!("no billing gateway configured (sms.billing.gateway_url): the bridge sends SMS for free");
        }
        let mut tx = self.0.store.begin().await.map_err(|e| ConnectorError::Temporary(e.to_string()))?;
        let added = tx
            .numbers()
            .add_to_pool(&self.0.config.numbers)
            .await
            .map_err(|e| ConnectorError::Temporary(e.to_string()))?;
        tx.commit().await.map_err(|e| ConnectorError::Temporary(e.to_string()))?;
        tracing::info!(pool = self.0.config.numbers.len(), added, "sender numbers");
        inbound::restore(&self.0).await.map_err(|e| ConnectorError::Temporary(e.to_string()))?;
        let handler = Arc::new(inbound::Handler(self.0.clone()));
        let links = LinkSet::start(&self.0.config.smsc, self.0.store.clone(), handler, self.0.clock.clone())
            .await
            .map_err(|e| ConnectorError::Temporary(e.to_string()))?;
        let changed = links.changed();
        *self.0.links.lock().expect("not poisoned") = Some(links);
        let mut tasks = self.0.tasks.lock().expect("not poisoned");
        tasks.push(tokio::spawn(status::run(self.0.clone(), changed)));
        tasks.push(tokio::spawn(inbound::expire(self.0.clone())));
        if self.0.keeps_images() {
            let mms = self.0.config.mms.clone();
            let clock = self.0.clock.clone();
            tasks.push(tokio::spawn(async move {
                loop {
                    let removed = links::sweep(&mms, clock.now());
                    if removed > 0 {
                        tracing::info!(removed, "expired image links removed");
                    }
                    tokio::time::sleep(std::time::Duration::from_secs(600)).await;
                }
            }));
        }
        Ok(())
    }

    async fn login(&self, user: &UserId) -> Result<Option<Arc<dyn NetworkApi>>, ConnectorError> {
        if !self.0.allowed(user) {
            return Ok(None);
        }
        Ok(Some(Arc::new(outbound::SmsApi { bridge: self.0.clone(), user: user.to_owned() })))
    }

    async fn remote_profile(&self, user: &RemoteUserId) -> Result<RemoteProfile, ConnectorError> {
        let name = phonenumber::parse(None, user.as_str())
            .map(|n| n.format().mode(phonenumber::Mode::International).to_string())
            .unwrap_or_else(|_| user.to_string());
        Ok(RemoteProfile { display_name: Some(format!("{name} (SMS)")), avatar_url: None })
    }

    fn is_valid_remote_user(&self, user: &RemoteUserId) -> bool {
        is_phone_number(user.as_str())
    }

    fn remote_user_for_phone(&self, e164: &str) -> Result<Option<RemoteUserId>, ConnectorError> {
        Ok(is_phone_number(e164).then(|| RemoteUserId::new(e164)))
    }
}
