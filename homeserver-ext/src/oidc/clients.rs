//! The registered relying parties and client authentication at the token endpoint (`client_secret_basic`,
//! `client_secret_post`, RFC 6749 §2.3.1).

use super::config::ClientConfig;
use subtle::ConstantTimeEq;
use tincan_common::Secret;

/// A registered client with its secret loaded.
#[derive(Debug, Clone)]
pub struct Client {
    /// `client_id`.
    pub id: String,
    secret: Secret,
    /// Redirect URIs, matched exactly.
    pub redirect_uris: Vec<String>,
}

/// The configured secret, or the content of `client_secret_file`.
pub fn secret_of(c: &ClientConfig) -> std::io::Result<Secret> {
    if c.client_secret_file.is_empty() {
        return Ok(c.client_secret.clone());
    }
    let text = std::fs::read_to_string(&c.client_secret_file)?;
    Ok(Secret::new(text.trim_end_matches(['\n', '\r'])))
}

impl Client {
    /// Loads a client (its secret file read now).
    pub fn load(c: &ClientConfig) -> std::io::Result<Self> {
        Ok(Self { id: c.client_id.clone(), secret: secret_of(c)?, redirect_uris: c.redirect_uris.clone() })
    }

    /// Whether `presented` is this client's secret; constant time in the content.
    pub fn secret_matches(&self, presented: &str) -> bool {
        let (a, b) = (crate::code::digest(presented), crate::code::digest(self.secret.expose()));
        a.as_bytes().ct_eq(b.as_bytes()).into()
    }

    /// Whether `uri` is one of the registered redirect URIs, compared as strings (RFC 6749 §3.1.2.3, OAuth 2.1).
    pub fn allows_redirect(&self, uri: &str) -> bool {
        self.redirect_uris.iter().any(|r| r == uri)
    }
}

/// The client credentials a token request carried.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credentials {
    /// `Authorization: Basic` (id and secret form-urlencoded, then base64).
    Basic {
        /// `client_id`.
        id: String,
        /// `client_secret`.
        secret: String,
    },
    /// `client_id` and `client_secret` in the body.
    Post {
        /// `client_id`.
        id: String,
        /// `client_secret`.
        secret: String,
    },
}

impl Credentials {
    /// The client id presented.
    pub fn id(&self) -> &str {
        match self {
            Credentials::Basic { id, .. } | Credentials::Post { id, .. } => id,
        }
    }

    /// The secret presented.
    pub fn secret(&self) -> &str {
        match self {
            Credentials::Basic { secret, .. } | Credentials::Post { secret, .. } => secret,
        }
    }
}

/// Decodes an `Authorization: Basic …` value into (id, secret); `None` when it is not well formed.
pub fn parse_basic(header: &str) -> Option<(String, String)> {
    use base64::Engine;
    let b64 = header.strip_prefix("Basic ").or_else(|| header.strip_prefix("basic "))?.trim();
    let raw = base64::engine::general_purpose::STANDARD.decode(b64).ok()?;
    let raw = String::from_utf8(raw).ok()?;
    let (id, secret) = raw.split_once(':')?;
    Some((form_decode(id)?, form_decode(secret)?))
}

/// `application/x-www-form-urlencoded` decoding of one value.
fn form_decode(s: &str) -> Option<String> {
    let pair = format!("v={s}");
    url::form_urlencoded::parse(pair.as_bytes()).next().map(|(_, v)| v.into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic_credentials_are_form_decoded() {
        use base64::Engine;
        let h = format!("Basic {}", base64::engine::general_purpose::STANDARD.encode("syn%3Aapse:s%2Bcret+x"));
        assert_eq!(parse_basic(&h), Some(("syn:apse".into(), "s+cret x".into())));
        assert_eq!(parse_basic("Basic !!!"), None);
        assert_eq!(parse_basic("Bearer abc"), None);
        let no_colon = format!("Basic {}", base64::engine::general_purpose::STANDARD.encode("abc"));
        assert_eq!(parse_basic(&no_colon), None);
    }

    #[test]
    fn redirect_uris_match_exactly() {
        let c = Client {
            id: "hs".into(),
            secret: Secret::new("0123456789abcdef"),
            redirect_uris: vec!["https://hs.example/_synapse/client/oidc/callback".into()],
        };
        assert!(c.allows_redirect("https://hs.example/_synapse/client/oidc/callback"));
        assert!(!c.allows_redirect("https://hs.example/_synapse/client/oidc/callback/"));
        assert!(!c.allows_redirect("https://hs.example/_synapse/client/oidc/callback?x=1"));
        assert!(!c.allows_redirect("https://HS.example/_synapse/client/oidc/callback"));
        assert!(c.secret_matches("0123456789abcdef"));
        assert!(!c.secret_matches("0123456789abcdeF"));
    }
}
