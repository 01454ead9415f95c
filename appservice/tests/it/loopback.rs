//! A network that lives only in the tests: Matrix messages land in a channel, and the test queues remote events
//! through the bridge handle as the network would.

use async_trait::async_trait;
use ruma::{OwnedUserId, UserId};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use tincan_appservice::config::AppserviceConfig;
use tincan_appservice::store::{Metadata, UserLogin};
use tincan_appservice::{
    BridgeHandle, Capabilities, ConnectorError, MatrixMessage, NetworkApi, NetworkConnector, NewLogin, PortalKey,
    PortalRef, RemoteMessageId, RemoteUserId,
};
use tincan_common::Secret;
use tokio::sync::mpsc;

/// What the network saw.
#[derive(Debug, Clone, PartialEq)]
pub enum Seen {
    Message(PortalKey, MatrixMessage),
    Edit(PortalKey, RemoteMessageId, MatrixMessage),
    Reaction(PortalKey, RemoteMessageId, String),
    Redaction(PortalKey, RemoteMessageId),
    Receipt(PortalKey, RemoteMessageId),
    Typing(PortalKey, bool),
    /// The receiver invited a participant's ghost into the portal (a group chat).
    Invite(PortalKey, RemoteUserId),
    /// The receiver left the portal's room.
    Leave(PortalKey),
    /// The receiver removed a participant's ghost from the portal's room, with this reason.
    Kick(PortalKey, RemoteUserId, Option<String>),
    /// A user logged in with `login <number>` (accepted).
    Login(OwnedUserId, String),
    /// A user logged out.
    Logout(OwnedUserId),
}

#[derive(Debug)]
pub struct Loopback {
    pub handle: OnceLock<BridgeHandle>,
    tx: mpsc::UnboundedSender<Seen>,
    counter: Arc<AtomicU64>,
    pub logins: Mutex<Vec<OwnedUserId>>,
    /// Participants the network keeps when the receiver removes their ghost (their kick is refused).
    pub kept: Arc<Mutex<Vec<RemoteUserId>>>,
    /// A message body the network never answers (the call hangs, as when the bridge dies during it).
    pub stall: Arc<Mutex<Option<String>>>,
    caps: Capabilities,
}

impl Loopback {
    /// A network supporting everything the core bridges.
    pub fn new(logins: &[&str]) -> (Arc<Self>, mpsc::UnboundedReceiver<Seen>) {
        Self::with_capabilities(logins, Capabilities::all())
    }

    /// A network declaring `caps` (it implements every operation, so what reaches it is what the core let by).
    pub fn with_capabilities(logins: &[&str], caps: Capabilities) -> (Arc<Self>, mpsc::UnboundedReceiver<Seen>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let l = Loopback {
            handle: OnceLock::new(),
            tx,
            counter: Arc::new(AtomicU64::new(0)),
            logins: Mutex::new(logins.iter().map(|u| UserId::parse(*u).unwrap()).collect()),
            kept: Arc::default(),
            stall: Arc::default(),
            caps,
        };
        (Arc::new(l), rx)
    }
}

#[async_trait]
impl NetworkConnector for Loopback {
    fn name(&self) -> &str {
        "loopback"
    }
    fn ghost_prefix(&self) -> &str {
        "loop_"
    }
    fn capabilities(&self) -> Capabilities {
        self.caps
    }
    async fn start(&self, bridge: BridgeHandle) -> Result<(), ConnectorError> {
        let _ = self.handle.set(bridge);
        Ok(())
    }
    async fn login(&self, user: &UserId) -> Result<Option<Arc<dyn NetworkApi>>, ConnectorError> {
        // A user is bridged when listed, or logged in with `login` in the management room.
        let logged_in = match self.handle.get() {
            Some(h) => {
                h.store().user_login(user).await.map_err(|e| ConnectorError::Temporary(e.to_string()))?.is_some()
            }
            None => false,
        };
        if logged_in || self.logins.lock().unwrap().iter().any(|u| u == user) {
            Ok(Some(Arc::new(LoopApi {
                tx: self.tx.clone(),
                counter: self.counter.clone(),
                kept: self.kept.clone(),
                stall: self.stall.clone(),
            })))
        } else {
            Ok(None)
        }
    }
    fn remote_user_for_phone(&self, e164: &str) -> Result<Option<RemoteUserId>, ConnectorError> {
        Ok(Some(RemoteUserId::new(e164)))
    }
    /// `login <number>`: a number in E.164 form.
    async fn create_login(&self, user: &UserId, args: &str) -> Result<NewLogin, ConnectorError> {
        let ok = args.strip_prefix('+').is_some_and(|d| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit()));
        if !ok {
            return Err(ConnectorError::Rejected(format!("{args:?} is not a number in E.164 form")));
        }
        let _ = self.tx.send(Seen::Login(user.to_owned(), args.to_owned()));
        Ok(NewLogin { remote_id: RemoteUserId::new(args), metadata: Metadata(serde_json::json!({"from": args})) })
    }
    async fn delete_login(&self, user: &UserId, _login: &UserLogin) -> Result<(), ConnectorError> {
        let _ = self.tx.send(Seen::Logout(user.to_owned()));
        Ok(())
    }
}

struct LoopApi {
    tx: mpsc::UnboundedSender<Seen>,
    counter: Arc<AtomicU64>,
    kept: Arc<Mutex<Vec<RemoteUserId>>>,
    stall: Arc<Mutex<Option<String>>>,
}

#[async_trait]
impl NetworkApi for LoopApi {
    async fn handle_matrix_message(
        &self,
        portal: &PortalRef,
        message: &MatrixMessage,
    ) -> Result<RemoteMessageId, ConnectorError> {
        let n = self.counter.fetch_add(1, Ordering::SeqCst);
        let _ = self.tx.send(Seen::Message(portal.key.clone(), message.clone()));
        if self.stall.lock().unwrap().as_deref() == Some(message.body.as_str()) {
            std::future::pending::<()>().await;
        }
        Ok(RemoteMessageId::new(format!("out-{n}")))
    }
    async fn handle_matrix_edit(
        &self,
        portal: &PortalRef,
        target: &RemoteMessageId,
        new_content: &MatrixMessage,
    ) -> Result<(), ConnectorError> {
        let _ = self.tx.send(Seen::Edit(portal.key.clone(), target.clone(), new_content.clone()));
        Ok(())
    }
    async fn handle_matrix_reaction(
        &self,
        portal: &PortalRef,
        target: &RemoteMessageId,
        key: &str,
    ) -> Result<(), ConnectorError> {
        let _ = self.tx.send(Seen::Reaction(portal.key.clone(), target.clone(), key.to_owned()));
        Ok(())
    }
    async fn handle_matrix_typing(&self, portal: &PortalRef, typing: bool) -> Result<(), ConnectorError> {
        let _ = self.tx.send(Seen::Typing(portal.key.clone(), typing));
        Ok(())
    }
    async fn handle_matrix_redaction(
        &self,
        portal: &PortalRef,
        target: &RemoteMessageId,
    ) -> Result<(), ConnectorError> {
        let _ = self.tx.send(Seen::Redaction(portal.key.clone(), target.clone()));
        Ok(())
    }
    async fn handle_matrix_read_receipt(
        &self,
        portal: &PortalRef,
        up_to: &RemoteMessageId,
    ) -> Result<(), ConnectorError> {
        let _ = self.tx.send(Seen::Receipt(portal.key.clone(), up_to.clone()));
        Ok(())
    }
    async fn handle_matrix_invite(&self, portal: &PortalRef, user: &RemoteUserId) -> Result<(), ConnectorError> {
        let _ = self.tx.send(Seen::Invite(portal.key.clone(), user.clone()));
        Ok(())
    }
    async fn handle_matrix_leave(&self, portal: &PortalRef) -> Result<(), ConnectorError> {
        let _ = self.tx.send(Seen::Leave(portal.key.clone()));
        Ok(())
    }
    async fn handle_matrix_kick(
        &self,
        portal: &PortalRef,
        user: &RemoteUserId,
        reason: Option<&str>,
    ) -> Result<(), ConnectorError> {
        let _ = self.tx.send(Seen::Kick(portal.key.clone(), user.clone(), reason.map(Into::into)));
        if self.kept.lock().unwrap().contains(user) {
            return Err(ConnectorError::Rejected("the group cannot lose members".into()));
        }
        Ok(())
    }
}

pub const HS_TOKEN: &str = "hs-token-for-tests";
pub const AS_TOKEN: &str = "as-token-for-tests";

/// A config for a bridge on a free port, talking to `hs_url`, state in `db_url`.
pub fn config(hs_url: &str, server_name: &str, db_url: &str) -> AppserviceConfig {
    let port = tincan_testkit::ports::free_port();
    let mut c = AppserviceConfig::default();
    c.homeserver.url = hs_url.into();
    c.homeserver.server_name = server_name.into();
    c.appservice.id = "tincan-loopback".into();
    c.appservice.listen = format!("127.0.0.1:{port}");
    c.appservice.url = format!("http://127.0.0.1:{port}");
    c.appservice.as_token = Secret::new(AS_TOKEN);
    c.appservice.hs_token = Secret::new(HS_TOKEN);
    c.appservice.bot_localpart = "loopbot".into();
    c.database.url = db_url.into();
    c
}
