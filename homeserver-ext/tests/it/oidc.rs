//! The OpenID provider: Synapse's SSO login (`oidc_providers`) walked page by page by an HTTP client that keeps
//! cookies and follows redirects as a browser does, ending in a Matrix session for the number's account; and the
//! refusals OAuth 2.0 / OIDC require (redirect URIs, PKCE, replayed and expired codes, client secrets).

use crate::harness::{Api, Ext, Local};
use base64::Engine;
use serde_json::{Value, json};
use sha2::Digest;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use tincan_homeserver_ext::ExtConfig;
use tincan_testkit::Synapse;
use tincan_testkit::synapse_oidc::{OidcProvider, callback_url};

const JWT_SECRET: &str = "test-jwt-secret-0123456789";
const CLIENT_ID: &str = "synapse";
const CLIENT_SECRET: &str = "synapse-client-secret-0123456789";
/// Where the Matrix client wants to land after SSO (Synapse shows a confirmation page linking to it).
const CLIENT_URL: &str = "http://client.test/after-login";

/// Test signing keys made with Debian's openssl: RS256 (PKCS#8) and ES256.
pub struct TestKeys {
    _dir: tempfile::TempDir,
    pub rs256: PathBuf,
    pub es256: PathBuf,
}

fn openssl(args: &[&str]) {
    let out = std::process::Command::new("openssl").args(args).output().expect("openssl (Debian package openssl)");
    assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

pub fn test_keys() -> TestKeys {
    let dir = tempfile::tempdir().unwrap();
    let rs256 = dir.path().join("rs256.pem");
    let es256 = dir.path().join("es256.pem");
    openssl(&["genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", rs256.to_str().unwrap()]);
    openssl(&["genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", es256.to_str().unwrap()]);
    TestKeys { _dir: dir, rs256, es256 }
}

/// The `[oidc]` section: one RS256 key, Synapse's callback registered.
fn oidc_toml(issuer: &str, key: &Path, redirect_uri: &str) -> String {
    format!(
        "[oidc]\nissuer = \"{issuer}\"\n\
         [[oidc.keys]]\nkid = \"k1\"\nalg = \"RS256\"\nprivate_key_file = \"{}\"\n\
         [[oidc.clients]]\nclient_id = \"{CLIENT_ID}\"\nclient_secret = \"{CLIENT_SECRET}\"\nredirect_uris = [\"{redirect_uri}\"]\n",
        key.display()
    )
}

fn jwt_toml(hs: &str) -> String {
    format!(
        "server_name = \"hs.test\"\nhomeserver_url = \"{hs}\"\n\
         [homeserver]\nbackend = \"jwt\"\njwt_secret = \"{JWT_SECRET}\"\n"
    )
}

/// An HTTP client acting as a browser: one cookie jar (every peer is on 127.0.0.1, and cookies do not care
/// about ports), redirects followed by the caller so each hop can be checked.
pub struct Browser {
    http: reqwest::Client,
    cookies: HashMap<String, String>,
}

impl Default for Browser {
    fn default() -> Self {
        Self::new()
    }
}

/// One answer.
#[derive(Debug)]
pub struct Page {
    pub status: u16,
    pub location: Option<String>,
    pub body: String,
}

impl Browser {
    pub fn new() -> Self {
        let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
        Self { http, cookies: HashMap::new() }
    }

    pub fn cookie_header(&self) -> String {
        self.cookies.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join("; ")
    }

    async fn take(&mut self, req: reqwest::RequestBuilder) -> Page {
        let req = if self.cookies.is_empty() { req } else { req.header("cookie", self.cookie_header()) };
        let r = req.send().await.expect("request");
        for c in r.headers().get_all("set-cookie") {
            let c = c.to_str().unwrap();
            let (name, value) = c.split(';').next().unwrap().split_once('=').unwrap();
            self.cookies.insert(name.trim().to_owned(), value.trim().to_owned());
        }
        let status = r.status().as_u16();
        let location = r.headers().get("location").map(|l| l.to_str().unwrap().to_owned());
        let body = r.text().await.unwrap_or_default();
        Page { status, location, body }
    }

    pub async fn get(&mut self, url: &str) -> Page {
        let req = self.http.get(url);
        self.take(req).await
    }

    pub async fn post_form(&mut self, url: &str, fields: &[(String, String)]) -> Page {
        let req = self.http.post(url).header("content-type", "application/x-www-form-urlencoded").body(encode(fields));
        self.take(req).await
    }

    /// Fills in and submits the page's form whose action ends with `action` (hidden fields kept), at `base`.
    pub async fn submit(&mut self, base: &str, page: &Page, action: &str, fill: &[(&str, &str)]) -> Page {
        let (url, mut fields) = form(&page.body, action).unwrap_or_else(|| panic!("no form {action} in {}", page.body));
        for (k, v) in fill {
            fields.retain(|(n, _)| n != k);
            fields.push(((*k).into(), (*v).into()));
        }
        self.post_form(&format!("{base}{url}"), &fields).await
    }
}

/// A form body.
pub fn encode<K: AsRef<str>, V: AsRef<str>>(fields: &[(K, V)]) -> String {
    url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(fields.iter().map(|(k, v)| (k.as_ref(), v.as_ref())))
        .finish()
}

fn unescape(s: &str) -> String {
    s.replace("&quot;", "\"").replace("&#39;", "'").replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")
}

fn attr(tag: &str, name: &str) -> Option<String> {
    let start = tag.find(&format!("{name}=\""))? + name.len() + 2;
    let len = tag[start..].find('"')?;
    Some(unescape(&tag[start..start + len]))
}

/// The first form whose action ends with `action`: its action and its hidden fields.
pub fn form(html: &str, action: &str) -> Option<(String, Vec<(String, String)>)> {
    for chunk in html.split("<form").skip(1) {
        let chunk = chunk.split("</form>").next()?;
        let open = &chunk[..chunk.find('>')?];
        let url = attr(open, "action")?;
        if !url.ends_with(action) {
            continue;
        }
        let hidden = chunk
            .split("<input")
            .skip(1)
            .filter(|i| i.contains("type=\"hidden\""))
            .filter_map(|i| Some((attr(i, "name")?, attr(i, "value").unwrap_or_default())))
            .collect();
        return Some((url, hidden));
    }
    None
}

/// A query parameter of a URL.
pub fn query_param(url: &str, name: &str) -> Option<String> {
    url::Url::parse(url).ok()?.query_pairs().find(|(k, _)| k == name).map(|(_, v)| v.into_owned())
}

/// Synapse's SSO login, as a stock client does it: `login/sso/redirect` → the provider's pages (number, SMS
/// code from the dev sink) → Synapse's callback → the `loginToken` → `m.login.token`. Returns the access token.
async fn sso_sign_in(synapse: &Synapse, ext: &Ext, phone: &str) -> String {
    let mut b = Browser::new();
    let start = format!(
        "{}/_matrix/client/v3/login/sso/redirect?redirectUrl={}",
        synapse.url(),
        url::form_urlencoded::byte_serialize(CLIENT_URL.as_bytes()).collect::<String>()
    );
    let to_idp = b.get(&start).await;
    assert_eq!(to_idp.status, 302, "{}\n{}", to_idp.body, synapse.log_tail(30));
    let authorize = to_idp.location.unwrap();
    assert!(authorize.starts_with(&format!("{}/oauth2/authorize?", ext.url)), "{authorize}");
    assert_eq!(query_param(&authorize, "code_challenge_method").as_deref(), Some("S256"));

    let number_page = b.get(&authorize).await;
    assert_eq!(number_page.status, 200, "{}", number_page.body);
    let code_page = b.submit(&ext.url, &number_page, "/oauth2/authorize/phone", &[("phone", phone)]).await;
    assert_eq!(code_page.status, 200, "{}\n{}", code_page.body, ext.guard.log_tail(20));
    let code = ext.last_code(phone);
    let back = b.submit(&ext.url, &code_page, "/oauth2/authorize/code", &[("code", &code)]).await;
    assert_eq!(back.status, 303, "{}\n{}", back.body, ext.guard.log_tail(20));
    let callback = back.location.unwrap();
    assert!(callback.starts_with(&callback_url(&synapse.url())), "{callback}");

    let done = b.get(&callback).await;
    // Synapse either redirects to a whitelisted client or shows a page linking to it with the login token.
    let link = match done.location.clone() {
        Some(l) => l,
        None => {
            let href = format!("href=\"{CLIENT_URL}");
            let i = done.body.find(&href).unwrap_or_else(|| panic!("{}\n{}", done.body, synapse.log_tail(40)));
            unescape(done.body[i + 6..].split('"').next().unwrap())
        }
    };
    let login_token = query_param(&link, "loginToken").unwrap_or_else(|| panic!("no loginToken in {link}"));
    let r = reqwest::Client::new()
        .post(format!("{}/_matrix/client/v3/login", synapse.url()))
        .json(&json!({"type": "m.login.token", "token": login_token}))
        .send()
        .await
        .unwrap();
    let status = r.status();
    let body: Value = r.json().await.unwrap();
    assert!(status.is_success(), "m.login.token: {status} {body}");
    body["access_token"].as_str().unwrap().to_owned()
}

/// Synapse with the extension as its OpenID provider (and JWT login for the Tincan API path).
async fn synapse_and_provider() -> (TestKeys, Synapse, Ext) {
    let keys = test_keys();
    let ext_port = tincan_testkit::ports::free_port();
    let issuer = format!("http://127.0.0.1:{ext_port}");
    let synapse = Synapse::builder()
        .config(json!({"jwt_config": {"enabled": true, "secret": JWT_SECRET, "algorithm": "HS256"}}))
        .config(OidcProvider::new(&issuer, CLIENT_ID, CLIENT_SECRET).synapse_config())
        .start()
        .await
        .unwrap();
    let config =
        format!("{}\n{}", jwt_toml(&synapse.url()), oidc_toml(&issuer, &keys.rs256, &callback_url(&synapse.url())));
    let ext = Ext::start_at(ext_port, None, &config).await.unwrap();
    (keys, synapse, ext)
}

#[tokio::test]
async fn synapse_sso_signs_in_by_phone_number_as_the_same_account() {
    let (_keys, synapse, ext) = synapse_and_provider().await;

    // A number that signed up through the Tincan API first, then signs in from a stock client.
    let (api_user, _) = crate::signup::sign_up(&ext, &synapse, "+447911123401", "secretA").await;
    let token = sso_sign_in(&synapse, &ext, "+447911123401").await;
    assert_eq!(synapse.whoami(&token).await.unwrap(), api_user);

    // A new number signs in from a stock client first; the Tincan API then gives the same account.
    let token = sso_sign_in(&synapse, &ext, "+447911123402").await;
    let sso_user = synapse.whoami(&token).await.unwrap();
    assert!(sso_user.starts_with("@tc_") && sso_user.ends_with(":hs.test"), "{sso_user}");
    let (api_user, _) = crate::signup::sign_up(&ext, &synapse, "+447911123402", "secretB").await;
    assert_eq!(api_user, sso_user);
    // And a second SSO sign-in of that number is the same account again.
    let token = sso_sign_in(&synapse, &ext, "+447911123402").await;
    assert_eq!(synapse.whoami(&token).await.unwrap(), sso_user);
}

/// A relying party without Synapse: PKCE pair, the pages, the code from the redirect.
pub struct Rp {
    pub verifier: String,
    pub challenge: String,
    pub redirect_uri: String,
}

impl Rp {
    pub fn new(redirect_uri: &str) -> Self {
        let verifier = format!("v{}", "x".repeat(50));
        let challenge =
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(verifier.as_bytes()));
        Self { verifier, challenge, redirect_uri: redirect_uri.into() }
    }

    pub fn authorize_url(&self, base: &str, extra: &[(&str, &str)]) -> String {
        let mut u = url::Url::parse(&format!("{base}/oauth2/authorize")).unwrap();
        {
            let mut q = u.query_pairs_mut();
            q.append_pair("response_type", "code")
                .append_pair("client_id", CLIENT_ID)
                .append_pair("redirect_uri", &self.redirect_uri)
                .append_pair("scope", "openid phone")
                .append_pair("state", "st4te")
                .append_pair("nonce", "n0nce")
                .append_pair("code_challenge", &self.challenge)
                .append_pair("code_challenge_method", "S256");
            for (k, v) in extra {
                q.append_pair(k, v);
            }
        }
        u.into()
    }

    /// Walks the pages for `phone`; returns the authorization code.
    pub async fn code<A: Api>(&self, api: &A, base: &str, phone: &str) -> String {
        let mut b = Browser::new();
        let p = b.get(&self.authorize_url(base, &[])).await;
        assert_eq!(p.status, 200, "{}", p.body);
        let p = b.submit(base, &p, "/oauth2/authorize/phone", &[("phone", phone)]).await;
        assert_eq!(p.status, 200, "{}", p.body);
        let code = api.last_code(phone);
        let p = b.submit(base, &p, "/oauth2/authorize/code", &[("code", &code)]).await;
        assert_eq!(p.status, 303, "{}", p.body);
        let loc = p.location.unwrap();
        assert!(loc.starts_with(&self.redirect_uri));
        assert_eq!(query_param(&loc, "state").as_deref(), Some("st4te"));
        query_param(&loc, "code").unwrap()
    }

    /// `POST /oauth2/token` with `client_secret_post` (`secret`) and the verifier; (status, body, headers).
    pub async fn token(
        &self,
        base: &str,
        code: &str,
        secret: &str,
        verifier: &str,
    ) -> (u16, Value, reqwest::header::HeaderMap) {
        let r = reqwest::Client::new()
            .post(format!("{base}/oauth2/token"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(encode(&[
                ("grant_type", "authorization_code"),
                ("code", code),
                ("redirect_uri", self.redirect_uri.as_str()),
                ("code_verifier", verifier),
                ("client_id", CLIENT_ID),
                ("client_secret", secret),
            ]))
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        let headers = r.headers().clone();
        (status, r.json().await.unwrap_or(Value::Null), headers)
    }
}

pub const REDIRECT: &str = "https://rp.test/callback";

pub async fn local_provider(keys: &TestKeys, now: u64) -> Local {
    local_provider_with(keys, now, |c| {
        // Room for the property test's hundreds of requests from one address.
        c.oidc.per_ip = tincan_homeserver_ext::config::BucketConfig { burst: 100_000, refill: 100_000, period_secs: 1 };
    })
    .await
}

/// The extension's config with the test `[oidc]` section (issuer still a placeholder), adjusted by `tweak`.
fn provider_config(keys: &TestKeys, tweak: impl FnOnce(&mut ExtConfig)) -> ExtConfig {
    let mut config = ExtConfig::default();
    config.homeserver.jwt_secret = tincan_common::Secret::new(JWT_SECRET);
    let toml = oidc_toml("http://placeholder.test", &keys.rs256, REDIRECT);
    let parsed: toml::Table = toml::from_str(&toml).unwrap();
    config.oidc = parsed["oidc"].clone().try_into().unwrap();
    tweak(&mut config);
    config
}

/// The provider in this process with a mock clock at `now`, the config adjusted by `tweak`.
pub async fn local_provider_with(keys: &TestKeys, now: u64, tweak: impl FnOnce(&mut ExtConfig)) -> Local {
    let mut config = provider_config(keys, tweak);
    // The issuer names the address Local listens on, known once it is bound.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    config.oidc.issuer = format!("http://{}", listener.local_addr().unwrap());
    Local::start_on(config, now, None, listener).await.unwrap()
}

fn unlimited(c: &mut ExtConfig) {
    c.oidc.per_ip = tincan_homeserver_ext::config::BucketConfig { burst: 100_000, refill: 100_000, period_secs: 1 };
}

/// How a token request authenticates the client.
enum Auth<'a> {
    /// `client_secret_basic` (id, secret).
    Basic(&'a str, &'a str),
    /// `client_secret_post` (id, secret).
    Post(&'a str, &'a str),
    /// Both at once (refused).
    Both(&'a str, &'a str),
}

/// `POST /oauth2/token` for `code` with `auth`, the verifier and `redirect_uri`; (status, body, headers).
async fn token_request(
    base: &str,
    auth: Auth<'_>,
    code: &str,
    verifier: &str,
    redirect_uri: &str,
) -> (u16, Value, reqwest::header::HeaderMap) {
    let mut fields = vec![
        ("grant_type", "authorization_code"),
        ("code", code),
        ("redirect_uri", redirect_uri),
        ("code_verifier", verifier),
    ];
    let basic = |id: &str, secret: &str| {
        let enc = |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
        let raw = format!("{}:{}", enc(id), enc(secret));
        format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(raw))
    };
    let mut req = reqwest::Client::new()
        .post(format!("{base}/oauth2/token"))
        .header("content-type", "application/x-www-form-urlencoded");
    match auth {
        Auth::Basic(id, secret) => req = req.header("authorization", basic(id, secret)),
        Auth::Post(id, secret) => fields.extend([("client_id", id), ("client_secret", secret)]),
        Auth::Both(id, secret) => {
            req = req.header("authorization", basic(id, secret));
            fields.extend([("client_id", id), ("client_secret", secret)]);
        }
    }
    let r = req.body(encode(&fields)).send().await.unwrap();
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    (status, r.json().await.unwrap_or(Value::Null), headers)
}

const OTHER_CLIENT: &str = "other-rp";
const OTHER_SECRET: &str = "other-client-secret-0123456789";

#[tokio::test]
async fn token_requests_are_refused_as_rfc6749_says() {
    use tincan_homeserver_ext::oidc::config::ClientConfig;
    let keys = test_keys();
    let ext = local_provider_with(&keys, 1_000_000, |c| {
        unlimited(c);
        c.oidc.clients.push(ClientConfig {
            client_id: OTHER_CLIENT.into(),
            client_secret: tincan_common::Secret::new(OTHER_SECRET),
            client_secret_file: String::new(),
            redirect_uris: vec![REDIRECT.into()],
        });
    })
    .await;
    let ttl = ext.app.config.oidc.code_ttl_secs;
    let rp = Rp::new(REDIRECT);
    let base = ext.url.as_str();
    let code = rp.code(&ext, base, "+447911124001").await;
    let error = |b: &Value| b["error"].as_str().map(str::to_owned);

    // client_secret_basic with a wrong secret: 401 and a Basic challenge (RFC 6749 §5.2).
    let (s, b, h) =
        token_request(base, Auth::Basic(CLIENT_ID, "not-the-secret-0123456789"), &code, &rp.verifier, REDIRECT).await;
    assert_eq!((s, error(&b).as_deref()), (401, Some("invalid_client")), "{b}");
    assert!(h["www-authenticate"].to_str().unwrap().starts_with("Basic "), "{h:?}");
    // An unknown client through client_secret_post: 401 without a challenge.
    let (s, b, h) = token_request(base, Auth::Post("nobody", CLIENT_SECRET), &code, &rp.verifier, REDIRECT).await;
    assert_eq!((s, error(&b).as_deref(), h.get("www-authenticate")), (401, Some("invalid_client"), None), "{b}");
    // Two authentication methods at once.
    let (s, b, _) = token_request(base, Auth::Both(CLIENT_ID, CLIENT_SECRET), &code, &rp.verifier, REDIRECT).await;
    assert_eq!((s, error(&b).as_deref()), (400, Some("invalid_request")), "{b}");
    // Another redirect URI than the authorization request's, even a near miss (RFC 6749 §4.1.3).
    for other in ["https://rp.test/callback/", "https://rp.test/other"] {
        let (s, b, _) = token_request(base, Auth::Basic(CLIENT_ID, CLIENT_SECRET), &code, &rp.verifier, other).await;
        assert_eq!((s, error(&b).as_deref()), (400, Some("invalid_grant")), "{other}: {b}");
    }
    // Another registered client, with its own good secret.
    let (s, b, _) = token_request(base, Auth::Basic(OTHER_CLIENT, OTHER_SECRET), &code, &rp.verifier, REDIRECT).await;
    assert_eq!((s, error(&b).as_deref()), (400, Some("invalid_grant")), "{b}");
    assert_eq!(b["error_description"], "the code was issued to another client");

    // None of that burnt the code: its client redeems it (client_secret_basic) a second before it expires.
    ext.clock.advance(std::time::Duration::from_secs(ttl - 1));
    let (s, b, _) = token_request(base, Auth::Basic(CLIENT_ID, CLIENT_SECRET), &code, &rp.verifier, REDIRECT).await;
    assert_eq!(s, 200, "{b}");
    let access = b["access_token"].as_str().unwrap().to_owned();
    assert_eq!(userinfo(base, &access).await.0, 200);
    // The other client presenting the used code gets nothing and revokes nothing; the client itself replaying
    // it revokes the token it gave (RFC 6749 §4.1.2).
    let (s, b, _) = token_request(base, Auth::Post(OTHER_CLIENT, OTHER_SECRET), &code, &rp.verifier, REDIRECT).await;
    assert_eq!((s, error(&b).as_deref()), (400, Some("invalid_grant")), "{b}");
    assert_eq!(userinfo(base, &access).await.0, 200, "another client's replay revoked the token");
    let (s, b, _) = token_request(base, Auth::Post(CLIENT_ID, CLIENT_SECRET), &code, &rp.verifier, REDIRECT).await;
    assert_eq!((s, error(&b).as_deref()), (400, Some("invalid_grant")), "{b}");
    assert_eq!(b["error_description"], "the code was already used; its tokens are revoked");
    assert_eq!(userinfo(base, &access).await.0, 401, "the replay did not revoke the token");

    // A code presented the second it expires is refused (the injected clock), and stays refused.
    let code = rp.code(&ext, base, "+447911124002").await;
    ext.clock.advance(std::time::Duration::from_secs(ttl));
    let (s, b, _) = token_request(base, Auth::Basic(CLIENT_ID, CLIENT_SECRET), &code, &rp.verifier, REDIRECT).await;
    assert_eq!((s, error(&b).as_deref()), (400, Some("invalid_grant")), "{b}");
    assert_eq!(b["error_description"], "the code is unknown or expired");
}

/// Two extension nodes on one database, as behind a load balancer: the sign-in starts at one, the number goes
/// to the other, the code back to the first, the authorization code is redeemed at the second, and a replay at
/// the first revokes the token the second gave.
async fn two_nodes_serve_one_sign_in(database_url: &str) {
    let keys = test_keys();
    let now = 1_000_000;
    let first = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let issuer = format!("http://{}", first.local_addr().unwrap());
    let config = || {
        let mut c = provider_config(&keys, unlimited);
        c.database_url = database_url.to_owned();
        c.oidc.issuer = issuer.clone();
        c
    };
    let a = Local::start_on(config(), now, None, first).await.unwrap();
    // Another seed (the clock's start), so the two nodes draw different ids.
    let second = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let b = Local::start_on(config(), now + 1, None, second).await.unwrap();
    let rp = Rp::new(REDIRECT);
    let phone = "+447911124101";

    let mut browser = Browser::new();
    let page = browser.get(&rp.authorize_url(&a.url, &[])).await;
    assert_eq!(page.status, 200, "{}", page.body);
    let page = browser.submit(&b.url, &page, "/oauth2/authorize/phone", &[("phone", phone)]).await;
    assert_eq!(page.status, 200, "{}", page.body);
    let sms_code = b.last_code(phone);
    let back = browser.submit(&a.url, &page, "/oauth2/authorize/code", &[("code", &sms_code)]).await;
    assert_eq!(back.status, 303, "{}", back.body);
    let code = query_param(back.location.as_deref().unwrap(), "code").unwrap();

    let (s, body, _) = rp.token(&b.url, &code, CLIENT_SECRET, &rp.verifier).await;
    assert_eq!(s, 200, "{body}");
    let claims = verify_id_token(&a, &a.url, body["id_token"].as_str().unwrap()).await;
    assert_eq!(claims["phone_number"], phone);
    let access = body["access_token"].as_str().unwrap();
    let (s, info) = userinfo(&a.url, access).await;
    assert_eq!((s, &info["sub"]), (200, &claims["sub"]));
    let (s, body, _) = rp.token(&a.url, &code, CLIENT_SECRET, &rp.verifier).await;
    assert_eq!((s, body["error"].as_str()), (400, Some("invalid_grant")), "{body}");
    assert_eq!(userinfo(&b.url, access).await.0, 401, "the replay at one node revoked the token of the other");
}

#[tokio::test]
async fn two_nodes_on_one_sqlite_file_serve_one_sign_in() {
    let dir = tempfile::tempdir().unwrap();
    two_nodes_serve_one_sign_in(&format!("sqlite://{}?mode=rwc", dir.path().join("shared.db").display())).await;
}

#[tokio::test]
async fn two_nodes_on_one_postgres_database_serve_one_sign_in() {
    let Some(pg) = tincan_testkit::Postgres::create().await else { return };
    two_nodes_serve_one_sign_in(pg.url()).await;
}

#[tokio::test]
async fn provider_requests_are_limited_per_client_ip() {
    let keys = test_keys();
    let ext = local_provider_with(&keys, 1_000_000, |c| {
        c.oidc.per_ip = tincan_homeserver_ext::config::BucketConfig { burst: 3, refill: 1, period_secs: 60 };
    })
    .await;
    let rp = Rp::new(REDIRECT);
    let mut b = Browser::new();
    for _ in 0..3 {
        assert_eq!(b.get(&rp.authorize_url(&ext.url, &[])).await.status, 200);
    }
    let refused = b.get(&rp.authorize_url(&ext.url, &[])).await;
    assert_eq!(refused.status, 429, "{}", refused.body);
    assert!(refused.body.contains("Too many attempts"), "{}", refused.body);
    // The token endpoint shares the bucket and says so in OAuth's shape.
    let (s, body, headers) = rp.token(&ext.url, "c", CLIENT_SECRET, &rp.verifier).await;
    assert_eq!((s, body["error"].as_str()), (429, Some("slow_down")), "{body}");
    assert!(headers.contains_key("retry-after"));
    ext.clock.advance(std::time::Duration::from_secs(60));
    assert_eq!(b.get(&rp.authorize_url(&ext.url, &[])).await.status, 200);
}

#[tokio::test]
async fn codes_are_single_use_bound_to_pkce_client_and_time() {
    let keys = test_keys();
    let ext = local_provider(&keys, 1_000_000).await;
    let rp = Rp::new(REDIRECT);
    let base = ext.url.clone();

    // Wrong secret: invalid_client, and the code stays good for its holder.
    let code = rp.code(&ext, &base, "+447911123501").await;
    let (s, b, _) = rp.token(&base, &code, "not-the-secret-0123456789", &rp.verifier).await;
    assert_eq!((s, b["error"].as_str()), (401, Some("invalid_client")), "{b}");
    // Wrong verifier: invalid_grant; the code is not burnt by it.
    let (s, b, _) = rp.token(&base, &code, CLIENT_SECRET, &"w".repeat(43)).await;
    assert_eq!((s, b["error"].as_str()), (400, Some("invalid_grant")), "{b}");
    // The real redemption.
    let (s, b, h) = rp.token(&base, &code, CLIENT_SECRET, &rp.verifier).await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(h["cache-control"], "no-store");
    let access = b["access_token"].as_str().unwrap().to_owned();
    let claims = verify_id_token(&ext, &base, b["id_token"].as_str().unwrap()).await;
    assert_eq!(claims["nonce"], "n0nce");
    assert_eq!(claims["phone_number"], "+447911123501");
    assert_eq!(claims["phone_number_verified"], true);
    assert!(claims["sub"].as_str().unwrap().starts_with("tc_"));
    let info = userinfo(&base, &access).await;
    assert_eq!((info.0, info.1["sub"].clone()), (200, claims["sub"].clone()));

    // Replay: invalid_grant, and the token the code gave is revoked.
    let (s, b, _) = rp.token(&base, &code, CLIENT_SECRET, &rp.verifier).await;
    assert_eq!((s, b["error"].as_str()), (400, Some("invalid_grant")), "{b}");
    assert_eq!(userinfo(&base, &access).await.0, 401);

    // Expired: a code redeemed after code_ttl_secs.
    let code = rp.code(&ext, &base, "+447911123502").await;
    ext.clock.advance(std::time::Duration::from_secs(61));
    let (s, b, _) = rp.token(&base, &code, CLIENT_SECRET, &rp.verifier).await;
    assert_eq!((s, b["error"].as_str()), (400, Some("invalid_grant")), "{b}");
}

async fn userinfo(base: &str, token: &str) -> (u16, Value) {
    let r = reqwest::Client::new().get(format!("{base}/oauth2/userinfo")).bearer_auth(token).send().await.unwrap();
    let s = r.status().as_u16();
    (s, r.json().await.unwrap_or(Value::Null))
}

/// Checks an ID token against the published JWKS, issuer and audience; returns its claims.
async fn verify_id_token(ext: &Local, base: &str, id_token: &str) -> Value {
    let disco: Value =
        reqwest::get(format!("{base}/.well-known/openid-configuration")).await.unwrap().json().await.unwrap();
    assert_eq!(disco["issuer"], ext.app.config.oidc.issuer.as_str());
    let jwks: jsonwebtoken::jwk::JwkSet =
        reqwest::get(disco["jwks_uri"].as_str().unwrap()).await.unwrap().json().await.unwrap();
    let header = jsonwebtoken::decode_header(id_token).unwrap();
    assert_eq!(header.alg, jsonwebtoken::Algorithm::RS256);
    let jwk = jwks.find(header.kid.as_deref().unwrap()).expect("the signing key is published");
    let key = jsonwebtoken::DecodingKey::from_jwk(jwk).unwrap();
    let mut v = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
    v.set_audience(&[CLIENT_ID]);
    v.set_issuer(&[disco["issuer"].as_str().unwrap()]);
    // The mock clock is far from the wall clock jsonwebtoken checks `exp` against.
    v.validate_exp = false;
    jsonwebtoken::decode::<Value>(id_token, &key, &v).unwrap().claims
}

#[tokio::test]
async fn bad_authorization_requests_are_refused_as_the_specs_say() {
    let keys = test_keys();
    let ext = local_provider(&keys, 1_000_000).await;
    let rp = Rp::new(REDIRECT);
    let base = ext.url.clone();
    let mut b = Browser::new();

    // Unregistered redirect URIs (even a near miss) and unknown clients: an error page, never a redirect.
    for (k, v) in [
        ("redirect_uri", "https://rp.test/callback/"),
        ("redirect_uri", "https://evil.test/callback"),
        ("client_id", "nobody"),
    ] {
        let mut u = url::Url::parse(&rp.authorize_url(&base, &[])).unwrap();
        let pairs: Vec<(String, String)> =
            u.query_pairs().map(|(a, c)| (a.to_string(), if a == k { v.to_owned() } else { c.into_owned() })).collect();
        u.query_pairs_mut().clear().extend_pairs(pairs);
        let p = b.get(u.as_str()).await;
        assert_eq!((p.status, p.location.as_deref()), (400, None), "{k}={v}");
    }
    // Missing or plain PKCE, wrong response type, no openid scope: back to the client with the OAuth error.
    for (omit, add, error) in [
        ("code_challenge", None, "invalid_request"),
        ("code_challenge_method", None, "invalid_request"),
        ("code_challenge_method", Some(("code_challenge_method", "plain")), "invalid_request"),
        ("response_type", Some(("response_type", "token")), "unsupported_response_type"),
        ("scope", Some(("scope", "profile")), "invalid_scope"),
    ] {
        let mut u = url::Url::parse(&rp.authorize_url(&base, &[])).unwrap();
        let mut pairs: Vec<(String, String)> =
            u.query_pairs().filter(|(k, _)| k != omit).map(|(k, v)| (k.into_owned(), v.into_owned())).collect();
        if let Some((k, v)) = add {
            pairs.push((k.into(), v.into()));
        }
        u.query_pairs_mut().clear().extend_pairs(pairs);
        let p = b.get(u.as_str()).await;
        assert_eq!(p.status, 302, "{omit}: {}", p.body);
        let loc = p.location.unwrap();
        assert!(loc.starts_with(REDIRECT), "{loc}");
        assert_eq!(query_param(&loc, "error").as_deref(), Some(error), "{omit} {add:?}");
        assert_eq!(query_param(&loc, "state").as_deref(), Some("st4te"));
    }
    // A repeated parameter is not a valid request either.
    let p = b.get(&format!("{}&state=again", rp.authorize_url(&base, &[]))).await;
    assert_eq!(p.status, 400);
}

/// Runs the independent relying party (`tests/oidc_rp.py`, joserfc) on an ID token: (exit code, stdout, stderr).
pub async fn python_rp(issuer: &str, client_id: &str, nonce: &str, now: u64, id_token: &str) -> (i32, Value, String) {
    let out = tokio::process::Command::new(tincan_testkit::synapse::venv().join("bin/python"))
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/oidc_rp.py"))
        .args([issuer, client_id, nonce, &now.to_string(), id_token])
        .output()
        .await
        .expect("the test venv's python");
    let stdout = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    (out.status.code().unwrap_or(-1), stdout, String::from_utf8_lossy(&out.stderr).into_owned())
}

#[tokio::test]
async fn an_independent_relying_party_checks_discovery_and_the_id_token() {
    let keys = test_keys();
    let now = 1_000_000;
    let ext = local_provider(&keys, now).await;
    let rp = Rp::new(REDIRECT);
    let code = rp.code(&ext, &ext.url, "+447911123701").await;
    let (s, b, _) = rp.token(&ext.url, &code, CLIENT_SECRET, &rp.verifier).await;
    assert_eq!(s, 200, "{b}");
    let id_token = b["id_token"].as_str().unwrap();
    let issuer = ext.app.config.oidc.issuer.clone();

    let (code, out, err) = python_rp(&issuer, CLIENT_ID, "n0nce", now, id_token).await;
    assert_eq!(code, 0, "{err}");
    assert_eq!(out["header"]["alg"], "RS256");
    assert_eq!(out["claims"]["phone_number"], "+447911123701");
    assert_eq!(out["claims"]["phone_number_verified"], true);
    // The same token is refused for another nonce, another audience, and once expired.
    let (code, _, err) = python_rp(&issuer, CLIENT_ID, "another-nonce", now, id_token).await;
    assert!(code == 1 && err.contains("nonce"), "{code} {err}");
    let (code, _, err) = python_rp(&issuer, "someone-else", "n0nce", now, id_token).await;
    assert!(code == 1 && err.contains("aud"), "{code} {err}");
    let ttl = ext.app.config.oidc.id_token_ttl_secs;
    let (code, _, err) = python_rp(&issuer, CLIENT_ID, "n0nce", now + ttl + 1, id_token).await;
    assert!(code == 1 && err.contains("xpired"), "{code} {err}");
}

#[tokio::test]
async fn chromium_signs_in_through_synapse_sso() {
    let modules = std::env::var("TINCAN_NODE_MODULES").unwrap_or_default();
    if !Path::new(&modules).join("playwright-core").exists() || !Path::new("/usr/bin/chromium").exists() {
        assert!(!tincan_testkit::in_ci(), "playwright-core or chromium missing (dev/test installs them)");
        eprintln!("skipped: playwright-core (TINCAN_NODE_MODULES) or /usr/bin/chromium missing; run dev/test");
        return;
    }
    let (_keys, synapse, ext) = synapse_and_provider().await;
    let phone = "+447911123801";
    // The account the Tincan client gets for this number.
    let (api_user, _) = crate::signup::sign_up(&ext, &synapse, phone, "secretC").await;

    let shots = PathBuf::from(concat!(env!("CARGO_TARGET_TMPDIR"), "/oidc-screenshots"));
    std::fs::create_dir_all(&shots).unwrap();
    let start = format!(
        "{}/_matrix/client/v3/login/sso/redirect?redirectUrl={}",
        synapse.url(),
        url::form_urlencoded::byte_serialize(CLIENT_URL.as_bytes()).collect::<String>()
    );
    let out = tokio::process::Command::new("node")
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/oidc_browser.mjs"))
        .args([
            start.as_str(),
            phone,
            ext.dir.path().join("sms.jsonl").to_str().unwrap(),
            shots.to_str().unwrap(),
            CLIENT_URL,
        ])
        .env("TINCAN_NODE_MODULES", &modules)
        .output()
        .await
        .expect("node");
    let result: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|_| {
        panic!("{}\n{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
    });
    assert!(out.status.success(), "{result}\n{}\n{}", String::from_utf8_lossy(&out.stderr), synapse.log_tail(30));
    for name in ["1-number", "2-code", "3-wrong-code"] {
        let shot = shots.join(format!("{name}.png"));
        assert!(std::fs::metadata(&shot).map(|m| m.len() > 1000).unwrap_or(false), "{}", shot.display());
    }
    let r = reqwest::Client::new()
        .post(format!("{}/_matrix/client/v3/login", synapse.url()))
        .json(&json!({"type": "m.login.token", "token": result["loginToken"]}))
        .send()
        .await
        .unwrap();
    let body: Value = r.json().await.unwrap();
    let token = body["access_token"].as_str().unwrap_or_else(|| panic!("{body}"));
    assert_eq!(synapse.whoami(token).await.unwrap(), api_user);
}

#[tokio::test]
async fn a_rotated_key_stays_published_while_the_new_one_signs() {
    use tincan_homeserver_ext::oidc::config::{SigningAlg, SigningKeyConfig};
    let keys = test_keys();
    let now = 1_000_000;
    let ext = local_provider_with(&keys, now, |c| {
        let key = |kid: &str, alg, file: &Path, retired| SigningKeyConfig {
            kid: kid.into(),
            alg,
            private_key_file: file.display().to_string(),
            retired,
        };
        c.oidc.keys =
            vec![key("old", SigningAlg::RS256, &keys.rs256, true), key("new", SigningAlg::ES256, &keys.es256, false)];
    })
    .await;
    let jwks: Value = reqwest::get(format!("{}/oauth2/keys.json", ext.url)).await.unwrap().json().await.unwrap();
    let kids: Vec<&str> = jwks["keys"].as_array().unwrap().iter().map(|k| k["kid"].as_str().unwrap()).collect();
    assert_eq!(kids, ["old", "new"]);
    let disco: Value =
        reqwest::get(format!("{}/.well-known/openid-configuration", ext.url)).await.unwrap().json().await.unwrap();
    assert_eq!(disco["id_token_signing_alg_values_supported"], json!(["RS256", "ES256"]));

    let rp = Rp::new(REDIRECT);
    let code = rp.code(&ext, &ext.url, "+447911123901").await;
    let (s, b, _) = rp.token(&ext.url, &code, CLIENT_SECRET, &rp.verifier).await;
    assert_eq!(s, 200, "{b}");
    let issuer = ext.app.config.oidc.issuer.clone();
    let (code, out, err) = python_rp(&issuer, CLIENT_ID, "n0nce", now, b["id_token"].as_str().unwrap()).await;
    assert_eq!(code, 0, "{err}");
    assert_eq!((out["header"]["alg"].as_str(), out["header"]["kid"].as_str()), (Some("ES256"), Some("new")));
}

/// Each refusal on the sign-in pages is shown on the page, with the form to go on from, and the status says it:
/// an invalid number, a refused country, a wrong code, too many wrong codes, an expired code, an expired page.
#[tokio::test]
async fn the_sign_in_pages_show_each_refusal() {
    let keys = test_keys();
    let ext = local_provider_with(&keys, 1_000_000, |c| {
        unlimited(c);
        c.limits.allowed_countries = vec!["GB".into()];
        c.codes.max_attempts = 2;
    })
    .await;
    let (code_ttl, resend_after) = (ext.app.config.codes.ttl_secs, ext.app.config.codes.resend_after_secs);
    let request_ttl = ext.app.config.oidc.request_ttl_secs;
    let rp = Rp::new(REDIRECT);
    let base = ext.url.as_str();
    let shown = |p: &Page, status: u16, text: &str, form: &str| {
        assert_eq!(p.status, status, "{text}: {}", p.body);
        let error = p.body.split("<p class=\"error\" role=\"alert\">").nth(1).unwrap_or_else(|| panic!("{}", p.body));
        assert!(error.starts_with(text), "{text:?} is not the error shown: {}", p.body);
        assert!(p.body.contains(&format!("name=\"{form}\"")), "no {form} field: {}", p.body);
    };
    let phone = "+447400124201"; // GB (+447911 1… is Guernsey)
    let mut b = Browser::new();
    let page = b.get(&rp.authorize_url(base, &[])).await;

    let p = b.submit(base, &page, "/oauth2/authorize/phone", &[("phone", "12")]).await;
    shown(&p, 400, "This is not a valid phone number.", "phone");
    // A German mobile number, where only GB is allowed.
    let p = b.submit(base, &page, "/oauth2/authorize/phone", &[("phone", "+4915123456789")]).await;
    shown(&p, 403, "This phone number cannot be used here.", "phone");

    let code_page = b.submit(base, &page, "/oauth2/authorize/phone", &[("phone", phone)]).await;
    assert_eq!(code_page.status, 200, "{}", code_page.body);
    let right = ext.last_code(phone);
    let wrong = if right == "000000" { "111111" } else { "000000" };
    let p = b.submit(base, &code_page, "/oauth2/authorize/code", &[("code", wrong)]).await;
    shown(&p, 400, "That code is not right.", "code");
    let p = b.submit(base, &code_page, "/oauth2/authorize/code", &[("code", wrong)]).await;
    shown(&p, 400, "That code is not right.", "code");
    // codes.max_attempts = 2: even the right code is no longer judged.
    let p = b.submit(base, &code_page, "/oauth2/authorize/code", &[("code", &right)]).await;
    shown(&p, 429, "Too many wrong codes.", "code");

    // A new code (a new code session), left to expire.
    ext.clock.advance(std::time::Duration::from_secs(resend_after));
    let code_page = b.submit(base, &code_page, "/oauth2/authorize/phone", &[]).await;
    assert_eq!(code_page.status, 200, "{}", code_page.body);
    let right = ext.last_code(phone);
    ext.clock.advance(std::time::Duration::from_secs(code_ttl));
    let p = b.submit(base, &code_page, "/oauth2/authorize/code", &[("code", &right)]).await;
    shown(&p, 400, "This code has expired.", "code");

    // The page itself expires.
    ext.clock.advance(std::time::Duration::from_secs(request_ttl));
    let p = b.submit(base, &code_page, "/oauth2/authorize/code", &[("code", &right)]).await;
    assert_eq!(p.status, 400, "{}", p.body);
    assert!(p.body.contains("This sign-in page has expired."), "{}", p.body);
}

/// The first step of a rotation: a new key listed after the signing one is published (relying parties cache
/// the JWKS) but does not sign until it is moved first.
#[tokio::test]
async fn a_next_key_is_published_before_it_signs() {
    use tincan_homeserver_ext::oidc::config::{SigningAlg, SigningKeyConfig};
    let keys = test_keys();
    let ext = local_provider_with(&keys, 1_000_000, |c| {
        c.oidc.keys.push(SigningKeyConfig {
            kid: "next".into(),
            alg: SigningAlg::ES256,
            private_key_file: keys.es256.display().to_string(),
            retired: false,
        });
    })
    .await;
    let jwks: Value = reqwest::get(format!("{}/oauth2/keys.json", ext.url)).await.unwrap().json().await.unwrap();
    let kids: Vec<&str> = jwks["keys"].as_array().unwrap().iter().map(|k| k["kid"].as_str().unwrap()).collect();
    assert_eq!(kids, ["k1", "next"]);
    let rp = Rp::new(REDIRECT);
    let code = rp.code(&ext, &ext.url, "+447400124301").await;
    let (s, b, _) = rp.token(&ext.url, &code, CLIENT_SECRET, &rp.verifier).await;
    assert_eq!(s, 200, "{b}");
    let header = jsonwebtoken::decode_header(b["id_token"].as_str().unwrap()).unwrap();
    assert_eq!((header.alg, header.kid.as_deref()), (jsonwebtoken::Algorithm::RS256, Some("k1")));
}
