//! The provider's short-lived state, in memory: sign-ins in progress (the page between the client's redirect
//! and the code), authorization codes and access tokens. Codes and tokens are kept by their SHA-256 only.
//!
//! One extension node holds its own: the relying party redeems a code with the node that issued it, so behind
//! several nodes the provider routes need sticky sessions (or one node). Every table is bounded
//! (`oidc.max_pending`); expired entries are dropped when a table is full.

use std::collections::HashMap;
use std::sync::Mutex;

/// A sign-in in progress: the checked authorization request and how far the user got.
#[derive(Debug, Clone)]
pub struct Pending {
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
    pub browser: String,
    /// The code session's client secret (server-side; the browser never sees it).
    pub session_secret: String,
    /// The code session, once an SMS was sent.
    pub sid: Option<String>,
    /// The number the SMS went to.
    pub number: Option<String>,
    /// SMS sent so far (the session's `send_attempt`).
    pub sends: u64,
    /// Unix seconds after which the page is dead.
    pub expires_at: i64,
}

/// An issued authorization code.
#[derive(Debug, Clone)]
pub struct CodeGrant {
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
    /// Unix seconds.
    pub expires_at: i64,
}

/// An issued access token (good for `userinfo`).
#[derive(Debug, Clone)]
pub struct AccessGrant {
    /// The subject.
    pub sub: String,
    /// The verified number.
    pub phone_number: String,
    /// The granted scope.
    pub scope: String,
    /// Unix seconds.
    pub expires_at: i64,
}

#[derive(Debug, Clone)]
enum CodeState {
    Fresh(Box<CodeGrant>),
    /// Redeemed; kept until expiry so a replay is recognised and revokes the token it gave (RFC 6749 §4.1.2).
    Redeemed {
        token_digest: String,
        expires_at: i64,
    },
}

impl CodeState {
    fn expires_at(&self) -> i64 {
        match self {
            CodeState::Fresh(g) => g.expires_at,
            CodeState::Redeemed { expires_at, .. } => *expires_at,
        }
    }
}

/// Why a code could not be redeemed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Redeem {
    /// No such code, or it expired.
    Unknown,
    /// It was redeemed before (the token it gave is now revoked).
    Replayed,
}

/// The in-memory tables.
#[derive(Debug)]
pub struct Grants {
    max: usize,
    pending: Mutex<HashMap<String, Pending>>,
    codes: Mutex<HashMap<String, CodeState>>,
    tokens: Mutex<HashMap<String, AccessGrant>>,
}

/// Table full even after dropping expired entries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("too many sign-ins in progress")]
pub struct Full;

fn make_room<V>(t: &mut HashMap<String, V>, max: usize, now: i64, exp: impl Fn(&V) -> i64) -> Result<(), Full> {
    if t.len() >= max {
        t.retain(|_, v| exp(v) > now);
    }
    if t.len() >= max { Err(Full) } else { Ok(()) }
}

impl Grants {
    /// Empty tables holding at most `max` entries each.
    pub fn new(max: usize) -> Self {
        Self { max, pending: Mutex::default(), codes: Mutex::default(), tokens: Mutex::default() }
    }

    /// Stores a new sign-in under `id`.
    pub fn insert_pending(&self, id: String, p: Pending, now: i64) -> Result<(), Full> {
        let mut t = self.pending.lock().expect("grants lock");
        make_room(&mut t, self.max, now, |p| p.expires_at)?;
        t.insert(id, p);
        Ok(())
    }

    /// The sign-in `id` if it is alive and belongs to the browser whose cookie digest is `browser`.
    pub fn pending(&self, id: &str, browser: &str, now: i64) -> Option<Pending> {
        let t = self.pending.lock().expect("grants lock");
        t.get(id).filter(|p| p.expires_at > now && p.browser == browser).cloned()
    }

    /// Replaces the sign-in `id` (after an SMS was sent).
    pub fn update_pending(&self, id: &str, p: Pending) {
        self.pending.lock().expect("grants lock").insert(id.to_owned(), p);
    }

    /// Ends the sign-in `id`; true when it was still there (so only one request completes it).
    pub fn take_pending(&self, id: &str) -> bool {
        self.pending.lock().expect("grants lock").remove(id).is_some()
    }

    /// Stores a code by its digest.
    pub fn insert_code(&self, digest: String, g: CodeGrant, now: i64) -> Result<(), Full> {
        let mut t = self.codes.lock().expect("grants lock");
        make_room(&mut t, self.max, now, CodeState::expires_at)?;
        t.insert(digest, CodeState::Fresh(Box::new(g)));
        Ok(())
    }

    /// Redeems the code with this digest once; `token_digest` is the access token the caller is about to
    /// issue, revoked if the code is ever presented again.
    pub fn redeem_code(&self, digest: &str, token_digest: &str, now: i64) -> Result<CodeGrant, Redeem> {
        let mut t = self.codes.lock().expect("grants lock");
        match t.get(digest).cloned() {
            Some(CodeState::Fresh(g)) if g.expires_at > now => {
                let redeemed = CodeState::Redeemed { token_digest: token_digest.to_owned(), expires_at: g.expires_at };
                t.insert(digest.to_owned(), redeemed);
                Ok(*g)
            }
            Some(CodeState::Redeemed { token_digest, .. }) => {
                drop(t);
                self.tokens.lock().expect("grants lock").remove(&token_digest);
                Err(Redeem::Replayed)
            }
            _ => Err(Redeem::Unknown),
        }
    }

    /// Puts back a code whose redemption failed a later check (PKCE, client) so that the legitimate holder can
    /// still redeem it: a wrong guess must not burn someone else's code.
    pub fn restore_code(&self, digest: &str, g: CodeGrant) {
        self.codes.lock().expect("grants lock").insert(digest.to_owned(), CodeState::Fresh(Box::new(g)));
    }

    /// Stores an access token by its digest.
    pub fn insert_token(&self, digest: String, g: AccessGrant, now: i64) -> Result<(), Full> {
        let mut t = self.tokens.lock().expect("grants lock");
        make_room(&mut t, self.max, now, |g| g.expires_at)?;
        t.insert(digest, g);
        Ok(())
    }

    /// The live access token with this digest.
    pub fn token(&self, digest: &str, now: i64) -> Option<AccessGrant> {
        self.tokens.lock().expect("grants lock").get(digest).filter(|g| g.expires_at > now).cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grant(exp: i64) -> CodeGrant {
        CodeGrant {
            client_id: "c".into(),
            redirect_uri: "https://rp/cb".into(),
            code_challenge: "x".into(),
            nonce: None,
            scope: "openid".into(),
            sub: "tc_a".into(),
            phone_number: "+447700900001".into(),
            auth_time: 0,
            expires_at: exp,
        }
    }

    #[test]
    fn a_code_is_redeemed_once_and_a_replay_revokes_its_token() {
        let g = Grants::new(10);
        g.insert_code("c1".into(), grant(100), 0).unwrap();
        let t = AccessGrant { sub: "tc_a".into(), phone_number: "+1".into(), scope: "openid".into(), expires_at: 100 };
        assert!(g.redeem_code("c1", "t1", 10).is_ok());
        g.insert_token("t1".into(), t, 10).unwrap();
        assert!(g.token("t1", 11).is_some());
        assert_eq!(g.redeem_code("c1", "t2", 12).unwrap_err(), Redeem::Replayed);
        assert!(g.token("t1", 13).is_none(), "the replay revoked the token");
        assert_eq!(g.redeem_code("nope", "t3", 12).unwrap_err(), Redeem::Unknown);
    }

    #[test]
    fn expired_codes_are_unknown_and_full_tables_drop_expired_entries() {
        let g = Grants::new(2);
        g.insert_code("a".into(), grant(10), 0).unwrap();
        g.insert_code("b".into(), grant(50), 0).unwrap();
        assert_eq!(g.insert_code("c".into(), grant(50), 5).unwrap_err(), Full);
        assert_eq!(g.redeem_code("a", "t", 10).unwrap_err(), Redeem::Unknown);
        g.insert_code("c".into(), grant(50), 11).unwrap();
        assert!(g.redeem_code("c", "t", 12).is_ok());
    }
}
