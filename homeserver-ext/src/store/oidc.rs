//! The OpenID provider's state (see [`crate::oidc`]): sign-ins in progress, authorization codes and access
//! tokens, in the database so that any node can serve any step of a sign-in. Codes and tokens are stored by
//! their SHA-256 ([`crate::code::digest`]) only.

use super::Result;

/// A sign-in in progress: the checked authorization request and how far the user got on the pages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OidcSignIn {
    /// The id the pages carry (random).
    pub id: String,
    /// `client_id`.
    pub client_id: String,
    /// The exact `redirect_uri`.
    pub redirect_uri: String,
    /// `state`, returned as is.
    pub state: Option<String>,
    /// `nonce`, put in the ID token.
    pub nonce: Option<String>,
    /// The PKCE S256 challenge.
    pub code_challenge: String,
    /// The granted scope.
    pub scope: String,
    /// SHA-256 of the browser cookie this sign-in belongs to.
    pub browser_digest: String,
    /// The code session's client secret (server-side; the browser never sees it).
    pub session_secret: String,
    /// The code session, once an SMS was sent.
    pub sid: Option<String>,
    /// The number the SMS went to.
    pub number: Option<String>,
    /// SMS sent so far (the session's `send_attempt`).
    pub sends: i64,
    /// Unix seconds after which the pages are dead.
    pub expires_at: i64,
}

/// An issued authorization code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OidcCode {
    /// SHA-256 of the code.
    pub digest: String,
    /// The client it was issued to.
    pub client_id: String,
    /// The `redirect_uri` of the request.
    pub redirect_uri: String,
    /// The PKCE S256 challenge.
    pub code_challenge: String,
    /// `nonce` of the request.
    pub nonce: Option<String>,
    /// The granted scope.
    pub scope: String,
    /// The subject (the account's localpart).
    pub sub: String,
    /// The verified number.
    pub phone_number: String,
    /// When the number was verified (Unix seconds).
    pub auth_time: i64,
    /// Unix seconds: the code's expiry, or once redeemed the expiry of the token it gave.
    pub expires_at: i64,
    /// Once redeemed: the digest of the access token it gave.
    pub redeemed_token: Option<String>,
}

/// An issued access token (good for `userinfo`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OidcAccessToken {
    /// SHA-256 of the token.
    pub digest: String,
    /// The subject.
    pub sub: String,
    /// The verified number.
    pub phone_number: String,
    /// The granted scope.
    pub scope: String,
    /// Unix seconds.
    pub expires_at: i64,
}

/// The OpenID provider's sign-ins, codes and tokens.
#[async_trait::async_trait]
pub trait OidcRepository: Send + Sync {
    /// Stores a new sign-in unless `max` are stored already, in one conditional `INSERT`; sign-ins expired at
    /// `now` are deleted first. False when full.
    async fn insert_oidc_sign_in(&self, s: &OidcSignIn, now: i64, max: i64) -> Result<bool>;
    /// The sign-in `id` if it is alive at `now` and belongs to the browser whose cookie digest is `browser`.
    async fn oidc_sign_in(&self, id: &str, browser: &str, now: i64) -> Result<Option<OidcSignIn>>;
    /// Records the code session of a sign-in (`session_secret`, `sid`, `number`, `sends`); false when it is gone.
    async fn update_oidc_sign_in(&self, s: &OidcSignIn) -> Result<bool>;
    /// Ends the sign-in `id`; true when it was still there (so only one request completes it).
    async fn take_oidc_sign_in(&self, id: &str) -> Result<bool>;
    /// Stores a fresh code (`redeemed_token` is ignored); codes expired at `now` are deleted first.
    async fn insert_oidc_code(&self, c: &OidcCode, now: i64) -> Result<()>;
    /// The code with this digest, redeemed or not, expired or not (while its row is kept).
    async fn oidc_code(&self, digest: &str) -> Result<Option<OidcCode>>;
    /// Redeems the code once, in one conditional `UPDATE`: only if it is not redeemed and alive at `now`. The row
    /// then records `token_digest` and lives until `token_expires_at`, so a replay finds the token to revoke.
    /// False when another redemption came first or the code expired.
    async fn redeem_oidc_code(&self, digest: &str, token_digest: &str, now: i64, token_expires_at: i64)
    -> Result<bool>;
    /// Stores an access token; tokens expired at `now` are deleted first.
    async fn insert_oidc_token(&self, t: &OidcAccessToken, now: i64) -> Result<()>;
    /// The access token with this digest, unless expired at `now`.
    async fn oidc_token(&self, digest: &str, now: i64) -> Result<Option<OidcAccessToken>>;
    /// Revokes an access token; true when it existed.
    async fn delete_oidc_token(&self, digest: &str) -> Result<bool>;
}

/// Implements [`OidcRepository`] for `$store` (a struct with a `pool: sqlx::Pool<$db>` field), in a child module
/// of the caller's.
macro_rules! impl_oidc_store {
    ($store:ident, $db:ty) => {
        mod oidc_repository {
            use super::$store;
            use sqlx::Row;
            use $crate::store::Result;
            use $crate::store::oidc::*;

            fn sign_in_from_row(r: &<$db as sqlx::Database>::Row) -> Result<OidcSignIn> {
                Ok(OidcSignIn {
                    id: r.try_get("id")?,
                    client_id: r.try_get("client_id")?,
                    redirect_uri: r.try_get("redirect_uri")?,
                    state: r.try_get("state")?,
                    nonce: r.try_get("nonce")?,
                    code_challenge: r.try_get("code_challenge")?,
                    scope: r.try_get("scope")?,
                    browser_digest: r.try_get("browser_digest")?,
                    session_secret: r.try_get("session_secret")?,
                    sid: r.try_get("sid")?,
                    number: r.try_get("number")?,
                    sends: r.try_get("sends")?,
                    expires_at: r.try_get("expires_at")?,
                })
            }

            fn code_from_row(r: &<$db as sqlx::Database>::Row) -> Result<OidcCode> {
                Ok(OidcCode {
                    digest: r.try_get("code_digest")?,
                    client_id: r.try_get("client_id")?,
                    redirect_uri: r.try_get("redirect_uri")?,
                    code_challenge: r.try_get("code_challenge")?,
                    nonce: r.try_get("nonce")?,
                    scope: r.try_get("scope")?,
                    sub: r.try_get("sub")?,
                    phone_number: r.try_get("phone_number")?,
                    auth_time: r.try_get("auth_time")?,
                    expires_at: r.try_get("expires_at")?,
                    redeemed_token: r.try_get("redeemed_token")?,
                })
            }

            #[async_trait::async_trait]
            impl OidcRepository for $store {
                async fn insert_oidc_sign_in(&self, s: &OidcSignIn, now: i64, max: i64) -> Result<bool> {
                    sqlx::query("DELETE FROM oidc_sign_ins WHERE expires_at <= $1")
                        .bind(now)
                        .execute(&self.pool)
                        .await?;
                    let done = sqlx::query(
                        "INSERT INTO oidc_sign_ins (id, client_id, redirect_uri, state, nonce, code_challenge, \
                         scope, browser_digest, session_secret, sid, number, sends, expires_at) \
                         SELECT $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13 \
                         WHERE (SELECT COUNT(*) FROM oidc_sign_ins) < $14",
                    )
                    .bind(&s.id)
                    .bind(&s.client_id)
                    .bind(&s.redirect_uri)
                    .bind(&s.state)
                    .bind(&s.nonce)
                    .bind(&s.code_challenge)
                    .bind(&s.scope)
                    .bind(&s.browser_digest)
                    .bind(&s.session_secret)
                    .bind(&s.sid)
                    .bind(&s.number)
                    .bind(s.sends)
                    .bind(s.expires_at)
                    .bind(max)
                    .execute(&self.pool)
                    .await?;
                    Ok(done.rows_affected() == 1)
                }

                async fn oidc_sign_in(&self, id: &str, browser: &str, now: i64) -> Result<Option<OidcSignIn>> {
                    let row = sqlx::query(
                        "SELECT * FROM oidc_sign_ins WHERE id = $1 AND browser_digest = $2 AND expires_at > $3",
                    )
                    .bind(id)
                    .bind(browser)
                    .bind(now)
                    .fetch_optional(&self.pool)
                    .await?;
                    row.as_ref().map(sign_in_from_row).transpose()
                }

                async fn update_oidc_sign_in(&self, s: &OidcSignIn) -> Result<bool> {
                    let done = sqlx::query(
                        "UPDATE oidc_sign_ins SET session_secret = $2, sid = $3, number = $4, sends = $5 \
                         WHERE id = $1",
                    )
                    .bind(&s.id)
                    .bind(&s.session_secret)
                    .bind(&s.sid)
                    .bind(&s.number)
                    .bind(s.sends)
                    .execute(&self.pool)
                    .await?;
                    Ok(done.rows_affected() == 1)
                }

                async fn take_oidc_sign_in(&self, id: &str) -> Result<bool> {
                    let done =
                        sqlx::query("DELETE FROM oidc_sign_ins WHERE id = $1").bind(id).execute(&self.pool).await?;
                    Ok(done.rows_affected() == 1)
                }

                async fn insert_oidc_code(&self, c: &OidcCode, now: i64) -> Result<()> {
                    sqlx::query("DELETE FROM oidc_codes WHERE expires_at <= $1").bind(now).execute(&self.pool).await?;
                    sqlx::query(
                        "INSERT INTO oidc_codes (code_digest, client_id, redirect_uri, code_challenge, nonce, scope, \
                         sub, phone_number, auth_time, expires_at, redeemed_token) \
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, NULL)",
                    )
                    .bind(&c.digest)
                    .bind(&c.client_id)
                    .bind(&c.redirect_uri)
                    .bind(&c.code_challenge)
                    .bind(&c.nonce)
                    .bind(&c.scope)
                    .bind(&c.sub)
                    .bind(&c.phone_number)
                    .bind(c.auth_time)
                    .bind(c.expires_at)
                    .execute(&self.pool)
                    .await?;
                    Ok(())
                }

                async fn oidc_code(&self, digest: &str) -> Result<Option<OidcCode>> {
                    let row = sqlx::query("SELECT * FROM oidc_codes WHERE code_digest = $1")
                        .bind(digest)
                        .fetch_optional(&self.pool)
                        .await?;
                    row.as_ref().map(code_from_row).transpose()
                }

                async fn redeem_oidc_code(
                    &self,
                    digest: &str,
                    token_digest: &str,
                    now: i64,
                    token_expires_at: i64,
                ) -> Result<bool> {
                    let done = sqlx::query(
                        "UPDATE oidc_codes SET redeemed_token = $2, expires_at = $4 \
                         WHERE code_digest = $1 AND redeemed_token IS NULL AND expires_at > $3",
                    )
                    .bind(digest)
                    .bind(token_digest)
                    .bind(now)
                    .bind(token_expires_at)
                    .execute(&self.pool)
                    .await?;
                    Ok(done.rows_affected() == 1)
                }

                async fn insert_oidc_token(&self, t: &OidcAccessToken, now: i64) -> Result<()> {
                    sqlx::query("DELETE FROM oidc_tokens WHERE expires_at <= $1").bind(now).execute(&self.pool).await?;
                    sqlx::query(
                        "INSERT INTO oidc_tokens (token_digest, sub, phone_number, scope, expires_at) \
                         VALUES ($1, $2, $3, $4, $5)",
                    )
                    .bind(&t.digest)
                    .bind(&t.sub)
                    .bind(&t.phone_number)
                    .bind(&t.scope)
                    .bind(t.expires_at)
                    .execute(&self.pool)
                    .await?;
                    Ok(())
                }

                async fn oidc_token(&self, digest: &str, now: i64) -> Result<Option<OidcAccessToken>> {
                    let row = sqlx::query("SELECT * FROM oidc_tokens WHERE token_digest = $1 AND expires_at > $2")
                        .bind(digest)
                        .bind(now)
                        .fetch_optional(&self.pool)
                        .await?;
                    row.map(|r| -> Result<OidcAccessToken> {
                        Ok(OidcAccessToken {
                            digest: r.try_get("token_digest")?,
                            sub: r.try_get("sub")?,
                            phone_number: r.try_get("phone_number")?,
                            scope: r.try_get("scope")?,
                            expires_at: r.try_get("expires_at")?,
                        })
                    })
                    .transpose()
                }

                async fn delete_oidc_token(&self, digest: &str) -> Result<bool> {
                    let done = sqlx::query("DELETE FROM oidc_tokens WHERE token_digest = $1")
                        .bind(digest)
                        .execute(&self.pool)
                        .await?;
                    Ok(done.rows_affected() == 1)
                }
            }
        }
    };
}
pub(crate) use impl_oidc_store;
