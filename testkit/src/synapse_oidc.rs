//! Synapse as an OpenID Connect relying party: the `oidc_providers` block (merged with
//! [`SynapseBuilder::config`](crate::SynapseBuilder::config)) that points Synapse's SSO login at a provider
//! under test.

use serde_json::{Value, json};

/// One upstream OpenID provider for Synapse.
#[derive(Debug, Clone)]
pub struct OidcProvider {
    /// Synapse's `idp_id` (the SSO redirect is `/_matrix/client/v3/login/sso/redirect/oidc-<idp_id>`).
    pub idp_id: String,
    /// The issuer; Synapse reads `<issuer>/.well-known/openid-configuration`.
    pub issuer: String,
    /// The client Synapse is at the provider.
    pub client_id: String,
    /// Its secret.
    pub client_secret: String,
    /// `client_secret_basic` (Synapse's default) or `client_secret_post`.
    pub client_auth_method: String,
    /// Scopes Synapse asks for.
    pub scopes: Vec<String>,
}

impl OidcProvider {
    /// A provider at `issuer` with Synapse as client `client_id`, `client_secret_basic`, scopes `openid phone`.
    pub fn new(issuer: impl Into<String>, client_id: impl Into<String>, client_secret: impl Into<String>) -> Self {
        Self {
            idp_id: "tincan".into(),
            issuer: issuer.into(),
            client_id: client_id.into(),
            client_secret: client_secret.into(),
            client_auth_method: "client_secret_basic".into(),
            scopes: vec!["openid".into(), "phone".into()],
        }
    }

    /// The settings to merge into `homeserver.yaml`: the provider with PKCE always on, the Matrix localpart
    /// taken from the `sub` claim (`allow_existing_users`, so an account the extension created through another
    /// login path is the same account) and the display name from `phone_number`. Discovery runs over plain
    /// HTTP in tests, which Synapse only accepts with `skip_verification`; the ID token (signature against the
    /// JWKS, `iss`, `aud`, `exp`, `nonce`) is checked all the same.
    pub fn synapse_config(&self) -> Value {
        json!({
            "oidc_providers": [{
                "idp_id": self.idp_id,
                "idp_name": "Phone number",
                "issuer": self.issuer,
                "discover": true,
                "skip_verification": !self.issuer.starts_with("https:"),
                "client_id": self.client_id,
                "client_secret": self.client_secret,
                "client_auth_method": self.client_auth_method,
                "pkce_method": "always",
                "scopes": self.scopes,
                "allow_existing_users": true,
                "user_mapping_provider": {"config": {
                    "subject_claim": "sub",
                    "localpart_template": "{{ user.sub }}",
                    "display_name_template": "{{ user.phone_number }}",
                }},
            }],
        })
    }
}

/// Where Synapse receives the provider's answer, for a Synapse at `synapse_url` (its `public_baseurl`).
pub fn callback_url(synapse_url: &str) -> String {
    format!("{}/_synapse/client/oidc/callback", synapse_url.trim_end_matches('/'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn block_names_the_issuer_and_maps_sub_to_the_localpart() {
        let c = OidcProvider::new("http://127.0.0.1:1", "synapse", "s3cret-s3cret-s3cret").synapse_config();
        let p = &c["oidc_providers"][0];
        assert_eq!(p["issuer"], "http://127.0.0.1:1");
        assert_eq!(p["skip_verification"], true);
        assert_eq!(p["user_mapping_provider"]["config"]["localpart_template"], "{{ user.sub }}");
        assert_eq!(callback_url("http://127.0.0.1:8008/"), "http://127.0.0.1:8008/_synapse/client/oidc/callback");
    }
}
