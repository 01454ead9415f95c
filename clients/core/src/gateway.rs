//! The provider's gateway (`tincan-gateway`, the money side): the user's balance, voucher top-up, transaction
//! history and prices, through its `/v1` API. Sign-in is the Identity Service pattern: an OpenID token from the
//! user's homeserver (`POST /_matrix/client/v3/user/{userId}/openid/request_token`) exchanged at
//! `POST /v1/auth/openid` for an API token ([`TincanClient::gateway`]). Amounts are the gateway's exact decimal
//! strings, shown as they come (never parsed into floats).

use crate::TincanClient;
use crate::error::{ClientError, Result};
use matrix_sdk::ruma::api::client::account::request_openid_token;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use url::Url;

/// The user's account as `GET /v1/me` answers it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Balance {
    /// The account's id at the gateway.
    pub id: i64,
    /// The Matrix user.
    #[serde(default)]
    pub user_id: Option<String>,
    /// The number, when the gateway knows it.
    #[serde(default)]
    pub number: Option<String>,
    /// The account's currency (`EUR`).
    pub currency: String,
    /// The sum of the account's ledger entries.
    pub balance: String,
    /// Held for calls and messages in progress.
    pub held: String,
    /// Balance minus holds: what can be spent.
    pub available: String,
    /// The price plan.
    pub plan: String,
}

/// One movement of the account (`GET /v1/me/history`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HistoryItem {
    /// The paging cursor.
    pub id: i64,
    /// What it records: `voucher`, `charge`, `payment`, `refund`, `adjustment`…
    pub kind: String,
    /// Positive: credited; negative: debited.
    pub amount: String,
    /// What it refers to (a hold, a voucher batch, a payment).
    #[serde(default)]
    pub reference: String,
    /// The entry's note.
    #[serde(default)]
    pub memo: String,
    /// When (Unix ms).
    pub at_ms: i64,
}

/// One page of history, newest first.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HistoryPage {
    /// The movements.
    pub items: Vec<HistoryItem>,
    /// Pass as `before` for the next (older) page; absent on the last page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next: Option<String>,
}

/// `POST /v1/me/vouchers` answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Redeemed {
    /// What was credited.
    pub credited: String,
    /// The balance now.
    pub balance: String,
}

/// The price of a destination for this account (`GET /v1/rates/{number}`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Price {
    /// The account's currency.
    pub currency: String,
    /// The rate deck prefix that matched.
    pub prefix: String,
    /// The destination's name.
    #[serde(default)]
    pub description: String,
    /// Voice: charged once when a call is answered.
    pub connect_fee: String,
    /// Voice: the price of a minute.
    pub per_minute: String,
    /// Voice: the first billed increment in seconds.
    pub first_increment: u32,
    /// Voice: each later increment in seconds.
    pub next_increment: u32,
    /// SMS: the price of a segment.
    pub per_segment: String,
    /// Balance minus holds.
    pub available: String,
    /// Voice: the longest call the available balance pays for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_seconds: Option<u32>,
    /// SMS: how many segments the available balance pays for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_segments: Option<u32>,
}

/// Which price [`Gateway::price`] asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Service {
    /// Calls.
    Voice,
    /// Text messages.
    Sms,
}

#[derive(Deserialize)]
struct Session {
    token: String,
}

/// A signed-in session at the gateway (an API token for the user's own endpoints).
#[derive(Debug, Clone)]
pub struct Gateway {
    base: Url,
    token: String,
    http: reqwest::Client,
}

impl TincanClient {
    /// Signs in to the provider's gateway at `url` as the signed-in Matrix user: an OpenID token from the
    /// homeserver, exchanged for the gateway's API token (the account is created on first use).
    pub async fn gateway(&self, url: &Url) -> Result<Gateway> {
        let client = self.matrix().ok_or(ClientError::NotLoggedIn)?;
        let me = client.user_id().ok_or(ClientError::NotLoggedIn)?.to_owned();
        let openid = client.send(request_openid_token::v3::Request::new(me)).await?;
        let http = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(30))
            .build()
            .map_err(ClientError::GatewayUnreachable)?;
        let mut gw = Gateway { base: url.clone(), token: String::new(), http };
        let body = json!({
            "access_token": openid.access_token,
            "token_type": openid.token_type.to_string(),
            "matrix_server_name": openid.matrix_server_name.to_string(),
            "expires_in": openid.expires_in.as_secs(),
        });
        let session: Session = gw.call(reqwest::Method::POST, &["v1", "auth", "openid"], &[], Some(body)).await?;
        gw.token = session.token;
        Ok(gw)
    }
}

impl Gateway {
    /// The balance (`GET /v1/me`).
    pub async fn balance(&self) -> Result<Balance> {
        self.call(reqwest::Method::GET, &["v1", "me"], &[], None).await
    }

    /// Redeems a voucher code (`POST /v1/me/vouchers`).
    pub async fn top_up(&self, code: &str) -> Result<Redeemed> {
        self.call(reqwest::Method::POST, &["v1", "me", "vouchers"], &[], Some(json!({ "code": code }))).await
    }

    /// A page of the account's movements, newest first; `before` is the previous page's `next`.
    pub async fn history(&self, limit: u32, before: Option<&str>) -> Result<HistoryPage> {
        let limit = limit.to_string();
        let mut query = vec![("limit", limit.as_str())];
        if let Some(b) = before {
            query.push(("before", b));
        }
        self.call(reqwest::Method::GET, &["v1", "me", "history"], &query, None).await
    }

    /// The account's price for `number` (international form) and what its balance affords.
    pub async fn price(&self, number: &str, service: Service) -> Result<Price> {
        let service = match service {
            Service::Voice => "voice",
            Service::Sms => "sms",
        };
        self.call(reqwest::Method::GET, &["v1", "rates", number], &[("service", service)], None).await
    }

    async fn call<T: DeserializeOwned>(
        &self,
        method: reqwest::Method,
        path: &[&str],
        query: &[(&str, &str)],
        body: Option<Value>,
    ) -> Result<T> {
        let mut url = self.base.clone();
        url.path_segments_mut()
            .map_err(|()| ClientError::GatewayConfig(format!("{} cannot be a base URL", self.base)))?
            .pop_if_empty()
            .extend(path);
        if !query.is_empty() {
            url.query_pairs_mut().extend_pairs(query);
        }
        let mut req = self.http.request(method, url);
        if !self.token.is_empty() {
            req = req.bearer_auth(&self.token);
        }
        if let Some(body) = body {
            req = req.json(&body);
        }
        let resp = req.send().await.map_err(ClientError::GatewayUnreachable)?;
        let status = resp.status();
        let bytes = resp.bytes().await.map_err(ClientError::GatewayUnreachable)?;
        if status.is_success() {
            return serde_json::from_slice(&bytes).map_err(|e| ClientError::GatewayAnswer(e.to_string()));
        }
        // `{"error":{"code","message"}}`; anything else (a proxy's page) keeps the status.
        let v: Value = serde_json::from_slice(&bytes).unwrap_or_default();
        Err(ClientError::Gateway {
            status: status.as_u16(),
            code: v["error"]["code"].as_str().unwrap_or("http_error").to_owned(),
            message: v["error"]["message"].as_str().map_or_else(|| status.to_string(), str::to_owned),
        })
    }
}
