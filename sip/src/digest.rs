//! SIP digest authentication (RFC 3261 §22, RFC 2617 with `qop=auth`, RFC 8760 SHA-256). Server side: the
//! challenge a registrar sends and the check of the `Authorization` header that answers it. Client side: a
//! received challenge ([`Challenge`], parsed here because the stack's own parser does not take
//! `algorithm=SHA-256`) and the credentials that answer it, for the gateway's carrier trunks.
//!
//! Credentials are stored as HA1 = H(username ":" realm ":" password), never as the password: an HA1 is
//! worth a password only in its own realm. Nonces are stateless: `<unix seconds>.<HMAC(secret, seconds
//! realm)>`, so any node sharing the secret checks them and an expired one is answered `stale=true` (the
//! phone retries with the same password without asking its user).

use hmac::{Hmac, Mac};
use sha2::{Digest as _, Sha256};
use std::fmt::Write as _;
use subtle::ConstantTimeEq;

/// A digest algorithm.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Algorithm {
    /// MD5, what every phone speaks.
    Md5,
    /// SHA-256 (RFC 8760).
    Sha256,
}

impl Algorithm {
    /// The `algorithm=` token.
    pub fn token(self) -> &'static str {
        match self {
            Algorithm::Md5 => "MD5",
            Algorithm::Sha256 => "SHA-256",
        }
    }

    /// The lower-case hex hash of `data`.
    pub fn hash(self, data: &str) -> String {
        match self {
            Algorithm::Md5 => {
                use md5::Digest as _;
                hex::encode(md5::Md5::digest(data.as_bytes()))
            }
            Algorithm::Sha256 => hex::encode(Sha256::digest(data.as_bytes())),
        }
    }

    /// HA1 of a password: what is stored.
    pub fn ha1(self, username: &str, realm: &str, password: &str) -> String {
        self.hash(&format!("{username}:{realm}:{password}"))
    }
}

/// Why an `Authorization` header was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DigestError {
    /// Not a `Digest` credential, or a parameter is malformed.
    #[error("malformed digest credentials: {0}")]
    Malformed(&'static str),
    /// An algorithm we do not offer.
    #[error("unsupported digest algorithm {0:?}")]
    Algorithm(String),
    /// Another realm.
    #[error("wrong realm")]
    Realm,
    /// A nonce we did not make.
    #[error("unknown nonce")]
    Nonce,
    /// Our nonce, but expired: challenge again with `stale=true`.
    #[error("stale nonce")]
    Stale,
    /// The response does not match: wrong password (or no such user).
    #[error("wrong credentials")]
    Mismatch,
}

/// The parameters of a `Digest` credential (RFC 2617 §3.2.2).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Credentials {
    /// `username`.
    pub username: String,
    /// `realm`.
    pub realm: String,
    /// `nonce`.
    pub nonce: String,
    /// `uri` (the digest-uri).
    pub uri: String,
    /// `response`.
    pub response: String,
    /// `algorithm`, MD5 when absent.
    pub algorithm: Option<String>,
    /// `cnonce`.
    pub cnonce: Option<String>,
    /// `qop`.
    pub qop: Option<String>,
    /// `nc`.
    pub nc: Option<String>,
    /// `opaque`.
    pub opaque: Option<String>,
}

impl Credentials {
    /// Parses an `Authorization` / `Proxy-Authorization` value: `Digest k=v, k="v", …`.
    pub fn parse(header: &str) -> Result<Self, DigestError> {
        let header = header.trim();
        let (scheme, rest) = header.split_once(char::is_whitespace).ok_or(DigestError::Malformed("scheme"))?;
        if !scheme.eq_ignore_ascii_case("digest") {
            return Err(DigestError::Malformed("scheme"));
        }
        let mut c = Credentials::default();
        for (k, v) in parse_auth_params(rest)? {
            let slot = match k.as_str() {
                "username" => &mut c.username,
                "realm" => &mut c.realm,
                "nonce" => &mut c.nonce,
                "uri" => &mut c.uri,
                "response" => &mut c.response,
                "algorithm" => {
                    c.algorithm = Some(v);
                    continue;
                }
                "cnonce" => {
                    c.cnonce = Some(v);
                    continue;
                }
                "qop" => {
                    c.qop = Some(v);
                    continue;
                }
                "nc" => {
                    c.nc = Some(v);
                    continue;
                }
                "opaque" => {
                    c.opaque = Some(v);
                    continue;
                }
                _ => continue,
            };
            *slot = v;
        }
        if c.username.is_empty() || c.nonce.is_empty() || c.uri.is_empty() || c.response.is_empty() {
            return Err(DigestError::Malformed("username, nonce, uri and response are required"));
        }
        Ok(c)
    }

    /// The algorithm named, MD5 by default.
    pub fn algorithm(&self) -> Result<Algorithm, DigestError> {
        match self.algorithm.as_deref() {
            None => Ok(Algorithm::Md5),
            Some(a) if a.eq_ignore_ascii_case("md5") => Ok(Algorithm::Md5),
            Some(a) if a.eq_ignore_ascii_case("sha-256") => Ok(Algorithm::Sha256),
            Some(a) => Err(DigestError::Algorithm(a.to_owned())),
        }
    }

    /// The response a client holding `ha1` computes for `method` (RFC 2617 §3.2.2.1).
    pub fn expected_response(&self, alg: Algorithm, ha1: &str, method: &str) -> Result<String, DigestError> {
        let ha2 = alg.hash(&format!("{method}:{}", self.uri));
        match self.qop.as_deref() {
            None => Ok(alg.hash(&format!("{ha1}:{}:{ha2}", self.nonce))),
            Some(q) if q.eq_ignore_ascii_case("auth") => {
                let nc = self.nc.as_deref().ok_or(DigestError::Malformed("qop without nc"))?;
                let cnonce = self.cnonce.as_deref().ok_or(DigestError::Malformed("qop without cnonce"))?;
                Ok(alg.hash(&format!("{ha1}:{}:{nc}:{cnonce}:auth:{ha2}", self.nonce)))
            }
            Some(_) => Err(DigestError::Malformed("qop other than auth")),
        }
    }
}

/// `k=v, k="quoted \" v"` pairs, keys lower-cased.
pub fn parse_auth_params(s: &str) -> Result<Vec<(String, String)>, DigestError> {
    let mut out = Vec::new();
    let b = s.as_bytes();
    let mut i = 0;
    let skip_ws = |i: &mut usize| {
        while *i < b.len() && (b[*i] as char).is_whitespace() {
            *i += 1;
        }
    };
    loop {
        skip_ws(&mut i);
        if i >= b.len() {
            return Ok(out);
        }
        let start = i;
        while i < b.len() && b[i] != b'=' && b[i] != b',' && !(b[i] as char).is_whitespace() {
            i += 1;
        }
        let key = s[start..i].to_ascii_lowercase();
        if key.is_empty() {
            return Err(DigestError::Malformed("empty parameter name"));
        }
        skip_ws(&mut i);
        if i >= b.len() || b[i] != b'=' {
            return Err(DigestError::Malformed("parameter without value"));
        }
        i += 1;
        skip_ws(&mut i);
        let value = if i < b.len() && b[i] == b'"' {
            i += 1;
            let mut v = Vec::new();
            loop {
                match b.get(i) {
                    None => return Err(DigestError::Malformed("unterminated quoted string")),
                    Some(b'"') => {
                        i += 1;
                        break;
                    }
                    Some(b'\\') => {
                        v.push(*b.get(i + 1).ok_or(DigestError::Malformed("unterminated quoted string"))?);
                        i += 2;
                    }
                    Some(&c) => {
                        v.push(c);
                        i += 1;
                    }
                }
            }
            String::from_utf8(v).map_err(|_| DigestError::Malformed("quoted string is not UTF-8"))?
        } else {
            let start = i;
            while i < b.len() && b[i] != b',' && !(b[i] as char).is_whitespace() {
                i += 1;
            }
            s[start..i].to_owned()
        };
        out.push((key, value));
        skip_ws(&mut i);
        match b.get(i) {
            None => return Ok(out),
            Some(b',') => i += 1,
            Some(_) => return Err(DigestError::Malformed("expected ','")),
        }
    }
}

fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}

/// Issues and checks nonces and credentials for one realm.
#[derive(Clone)]
pub struct DigestRealm {
    realm: String,
    secret: Vec<u8>,
    nonce_lifetime_secs: u64,
    algorithms: Vec<Algorithm>,
}

impl std::fmt::Debug for DigestRealm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DigestRealm").field("realm", &self.realm).finish_non_exhaustive()
    }
}

impl DigestRealm {
    /// A realm whose nonces are signed with `secret` and live `nonce_lifetime_secs`.
    pub fn new(realm: impl Into<String>, secret: &[u8], nonce_lifetime_secs: u64) -> Self {
        Self {
            realm: realm.into(),
            secret: secret.to_vec(),
            nonce_lifetime_secs,
            algorithms: vec![Algorithm::Sha256, Algorithm::Md5],
        }
    }

    /// Offers (and accepts) only `algorithms`, challenged in this order. RFC 8760 puts the preferred one
    /// first, but many phones (and sipp) read only the first challenge and give up when it is SHA-256: such a
    /// deployment lists MD5 first.
    pub fn with_algorithms(mut self, algorithms: Vec<Algorithm>) -> Self {
        if !algorithms.is_empty() {
            self.algorithms = algorithms;
        }
        self
    }

    /// The realm.
    pub fn realm(&self) -> &str {
        &self.realm
    }

    fn mac(&self, issued: u64) -> String {
        let mut m = Hmac::<Sha256>::new_from_slice(&self.secret).expect("HMAC takes any key length");
        m.update(issued.to_string().as_bytes());
        m.update(b" ");
        m.update(self.realm.as_bytes());
        hex::encode(&m.finalize().into_bytes()[..16])
    }

    /// A nonce issued at `now` (unix seconds).
    pub fn nonce(&self, now: u64) -> String {
        format!("{now}.{}", self.mac(now))
    }

    /// `WWW-Authenticate` values, one per algorithm in order (by default SHA-256 then MD5, as RFC 8760 asks), for
    /// a challenge at `now`.
    pub fn challenges(&self, now: u64, stale: bool) -> Vec<String> {
        let nonce = self.nonce(now);
        self.algorithms
            .iter()
            .copied()
            .map(|alg| {
                let mut h = format!(
                    "Digest realm={}, nonce={}, algorithm={}, qop=\"auth\"",
                    quote(&self.realm),
                    quote(&nonce),
                    alg.token()
                );
                if stale {
                    let _ = write!(h, ", stale=true");
                }
                h
            })
            .collect()
    }

    /// Checks the nonce of `c` at `now`: ours and fresh.
    pub fn check_nonce(&self, c: &Credentials, now: u64) -> Result<(), DigestError> {
        let (issued, mac) = c.nonce.split_once('.').ok_or(DigestError::Nonce)?;
        let issued: u64 = issued.parse().map_err(|_| DigestError::Nonce)?;
        if !bool::from(self.mac(issued).as_bytes().ct_eq(mac.as_bytes())) {
            return Err(DigestError::Nonce);
        }
        // A nonce from the future (clock skew between nodes) is accepted only within a few seconds.
        if issued > now + 5 || now.saturating_sub(issued) > self.nonce_lifetime_secs {
            return Err(DigestError::Stale);
        }
        Ok(())
    }

    /// Verifies credentials `c` for a request with `method`, given the HA1s stored for `c.username` in
    /// `ha1s` (one per device; any may match). Returns the index of the HA1 that matched.
    pub fn verify(
        &self,
        c: &Credentials,
        method: &str,
        now: u64,
        ha1s: &[(Algorithm, &str)],
    ) -> Result<usize, DigestError> {
        if c.realm != self.realm {
            return Err(DigestError::Realm);
        }
        let alg = c.algorithm()?;
        if !self.algorithms.contains(&alg) {
            return Err(DigestError::Algorithm(alg.token().to_owned()));
        }
        self.check_nonce(c, now)?;
        for (i, (a, ha1)) in ha1s.iter().enumerate() {
            if *a != alg {
                continue;
            }
            let expected = c.expected_response(alg, ha1, method)?;
            if bool::from(expected.as_bytes().ct_eq(c.response.to_ascii_lowercase().as_bytes())) {
                return Ok(i);
            }
        }
        Err(DigestError::Mismatch)
    }
}

/// The client side, for tests: the `Authorization` a phone sends to our registrar.
#[derive(Debug, Clone, Copy)]
pub struct DigestAnswer<'a> {
    /// Our username.
    pub username: &'a str,
    /// Our password.
    pub password: &'a str,
    /// The challenge's realm.
    pub realm: &'a str,
    /// The challenge's nonce.
    pub nonce: &'a str,
    /// The method of the request being authorized.
    pub method: &'a str,
    /// Its Request-URI.
    pub uri: &'a str,
    /// Our client nonce.
    pub cnonce: &'a str,
}

impl DigestAnswer<'_> {
    /// The `Authorization` value, with `qop=auth` and `nc=00000001`.
    pub fn header(&self, alg: Algorithm) -> String {
        let c = Credentials {
            username: self.username.into(),
            realm: self.realm.into(),
            nonce: self.nonce.into(),
            uri: self.uri.into(),
            algorithm: Some(alg.token().into()),
            cnonce: Some(self.cnonce.into()),
            qop: Some("auth".into()),
            nc: Some("00000001".into()),
            ..Default::default()
        };
        let ha1 = alg.ha1(self.username, self.realm, self.password);
        c.answered(alg, &ha1, self.method).header()
    }
}

impl Credentials {
    /// These credentials with `response` computed from `ha1` for `method`.
    fn answered(mut self, alg: Algorithm, ha1: &str, method: &str) -> Self {
        self.response = self.expected_response(alg, ha1, method).expect("qop is auth with nc and cnonce, or absent");
        self
    }

    /// The `Authorization` / `Proxy-Authorization` value.
    pub fn header(&self) -> String {
        let mut h = format!(
            "Digest username={}, realm={}, nonce={}, uri={}, response={}",
            quote(&self.username),
            quote(&self.realm),
            quote(&self.nonce),
            quote(&self.uri),
            quote(&self.response)
        );
        if let Some(a) = &self.algorithm {
            let _ = write!(h, ", algorithm={a}");
        }
        if let (Some(q), Some(nc), Some(cnonce)) = (&self.qop, &self.nc, &self.cnonce) {
            let _ = write!(h, ", cnonce={}, qop={q}, nc={nc}", quote(cnonce));
        }
        if let Some(o) = &self.opaque {
            let _ = write!(h, ", opaque={}", quote(o));
        }
        h
    }
}

/// A `WWW-Authenticate` / `Proxy-Authenticate` challenge we can answer (RFC 3261 §22.4, RFC 8760 §2.4).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    /// `realm`.
    pub realm: String,
    /// `nonce`.
    pub nonce: String,
    /// `algorithm` (MD5 when absent).
    pub algorithm: Algorithm,
    /// Whether `qop` offers `auth` (then the answer uses it); `false` when the challenge has no `qop` (RFC 2069
    /// style answer).
    pub qop_auth: bool,
    /// `opaque`, echoed back.
    pub opaque: Option<String>,
    /// `stale=true`: the nonce expired, the password was right.
    pub stale: bool,
}

impl Challenge {
    /// Parses one challenge; `Err` for another scheme, an algorithm other than MD5 and SHA-256 (the `-sess`
    /// variants included), or a `qop` without `auth` (only `auth-int`).
    pub fn parse(value: &str) -> Result<Self, DigestError> {
        let value = value.trim();
        let (scheme, rest) = value.split_once(char::is_whitespace).ok_or(DigestError::Malformed("scheme"))?;
        if !scheme.eq_ignore_ascii_case("digest") {
            return Err(DigestError::Malformed("scheme"));
        }
        let params = parse_auth_params(rest)?;
        let get = |k: &str| params.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        let algorithm = match get("algorithm") {
            None => Algorithm::Md5,
            Some(a) if a.eq_ignore_ascii_case("md5") => Algorithm::Md5,
            Some(a) if a.eq_ignore_ascii_case("sha-256") => Algorithm::Sha256,
            Some(a) => return Err(DigestError::Algorithm(a.to_owned())),
        };
        let qop_auth = match get("qop") {
            None => false,
            Some(q) if q.split(',').any(|o| o.trim().eq_ignore_ascii_case("auth")) => true,
            Some(_) => return Err(DigestError::Malformed("qop without auth")),
        };
        Ok(Challenge {
            realm: get("realm").ok_or(DigestError::Malformed("challenge without realm"))?.to_owned(),
            nonce: get("nonce").ok_or(DigestError::Malformed("challenge without nonce"))?.to_owned(),
            algorithm,
            qop_auth,
            opaque: get("opaque").map(str::to_owned),
            stale: get("stale").is_some_and(|v| v.eq_ignore_ascii_case("true")),
        })
    }

    /// The challenge to answer among header values (each may hold several challenges, comma-separated): the
    /// first one we support, as RFC 8760 §2.4 has a client take the topmost it understands. `realm`, when
    /// given, is the only realm answered (credentials are not given to a realm they were not meant for).
    pub fn pick<'a>(values: impl IntoIterator<Item = &'a str>, realm: Option<&str>) -> Option<Self> {
        values
            .into_iter()
            .flat_map(split_challenges)
            .filter_map(|c| Challenge::parse(c).ok())
            .find(|c| realm.is_none_or(|r| r == c.realm))
    }

    /// The credentials answering this challenge for a request with `method` and Request-URI `uri`; `cnonce` is
    /// the client's random nonce (used only with `qop=auth`).
    pub fn answer(&self, username: &str, password: &str, method: &str, uri: &str, cnonce: &str) -> Credentials {
        let c = Credentials {
            username: username.into(),
            realm: self.realm.clone(),
            nonce: self.nonce.clone(),
            uri: uri.into(),
            algorithm: Some(self.algorithm.token().into()),
            cnonce: self.qop_auth.then(|| cnonce.into()),
            qop: self.qop_auth.then(|| "auth".into()),
            nc: self.qop_auth.then(|| "00000001".into()),
            opaque: self.opaque.clone(),
            ..Default::default()
        };
        let ha1 = self.algorithm.ha1(username, &self.realm, password);
        c.answered(self.algorithm, &ha1, method)
    }
}

/// One header value's challenges: `Digest a=1, b=2, Digest a=3` is two. A new challenge starts at a comma
/// followed by a scheme token and whitespace (auth-params always have `=` after their name).
fn split_challenges(value: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut in_quotes = false;
    let b = value.as_bytes();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'\\' if in_quotes => i += 1,
            b'"' => in_quotes = !in_quotes,
            b',' if !in_quotes => {
                let rest = value[i + 1..].trim_start();
                let token_end = rest.find(|c: char| c.is_whitespace() || c == '=' || c == ',').unwrap_or(rest.len());
                if rest[token_end..].starts_with(char::is_whitespace)
                    && !rest[token_end..].trim_start().starts_with('=')
                    && token_end > 0
                {
                    out.push(value[start..i].trim());
                    start = i + 1;
                }
            }
            _ => {}
        }
        i += 1;
    }
    out.push(value[start..].trim());
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn rfc_2617_example_response() {
        // RFC 2617 §3.5, with MD5 and qop=auth.
        let c = Credentials {
            username: "Mufasa".into(),
            realm: "testrealm@host.com".into(),
            nonce: "dcd98b7102dd2f0e8b11d0f600bfb0c093".into(),
            uri: "/dir/index.html".into(),
            cnonce: Some("0a4f113b".into()),
            qop: Some("auth".into()),
            nc: Some("00000001".into()),
            ..Default::default()
        };
        let ha1 = Algorithm::Md5.ha1("Mufasa", "testrealm@host.com", "Circle Of Life");
        assert_eq!(c.expected_response(Algorithm::Md5, &ha1, "GET").unwrap(), "6629fae49393a05397450978507c4ef1");
    }

    #[test]
    fn parses_what_phones_send() {
        let h = r#"Digest username="+4420794600001", realm="sip.provider.example", nonce="1.abc",
                   uri="sip:sip.provider.example", response="0123", algorithm=MD5, cnonce="x\"y", qop=auth,
                   nc=00000001"#;
        let c = Credentials::parse(h).unwrap();
        assert_eq!(c.username, "+4420794600001");
        assert_eq!(c.cnonce.as_deref(), Some("x\"y"));
        assert_eq!(c.qop.as_deref(), Some("auth"));
        assert_eq!(c.algorithm().unwrap(), Algorithm::Md5);
        assert!(matches!(Credentials::parse("Basic abc"), Err(DigestError::Malformed("scheme"))));
        assert!(Credentials::parse(r#"Digest username="a", nonce="n""#).is_err());
        assert!(Credentials::parse(r#"Digest username="a"#).is_err());
        let sha = Credentials::parse(r#"Digest username=a, nonce=n, uri=u, response=r, algorithm=SHA-256"#);
        assert_eq!(sha.unwrap().algorithm().unwrap(), Algorithm::Sha256);
        let weird = Credentials::parse(r#"Digest username=a, nonce=n, uri=u, response=r, algorithm=AKAv1-MD5"#);
        assert!(matches!(weird.unwrap().algorithm(), Err(DigestError::Algorithm(_))));
    }

    fn realm() -> DigestRealm {
        DigestRealm::new("sip.provider.example", b"secret", 300)
    }

    #[test]
    fn a_correct_answer_to_our_challenge_verifies() {
        let r = realm();
        for alg in [Algorithm::Md5, Algorithm::Sha256] {
            let nonce = r.nonce(1000);
            let h = DigestAnswer {
                username: "dev1",
                password: "pw",
                realm: r.realm(),
                nonce: &nonce,
                method: "REGISTER",
                uri: "sip:sip.provider.example",
                cnonce: "c",
            }
            .header(alg);
            let c = Credentials::parse(&h).unwrap();
            let other = alg.ha1("dev1", r.realm(), "other");
            let right = alg.ha1("dev1", r.realm(), "pw");
            assert_eq!(r.verify(&c, "REGISTER", 1010, &[(alg, &other), (alg, &right)]), Ok(1));
            assert_eq!(r.verify(&c, "REGISTER", 1010, &[(alg, &other)]), Err(DigestError::Mismatch));
            assert_eq!(r.verify(&c, "INVITE", 1010, &[(alg, &right)]), Err(DigestError::Mismatch));
            assert_eq!(r.verify(&c, "REGISTER", 1400, &[(alg, &right)]), Err(DigestError::Stale));
        }
    }

    #[test]
    fn forged_and_foreign_nonces_are_refused() {
        let r = realm();
        let ha1 = Algorithm::Md5.ha1("dev1", r.realm(), "pw");
        let forged = DigestAnswer {
            username: "dev1",
            password: "pw",
            realm: r.realm(),
            nonce: "1000.00",
            method: "REGISTER",
            uri: "sip:x",
            cnonce: "c",
        }
        .header(Algorithm::Md5);
        let c = Credentials::parse(&forged).unwrap();
        assert_eq!(r.verify(&c, "REGISTER", 1000, &[(Algorithm::Md5, &ha1)]), Err(DigestError::Nonce));
        let other = DigestRealm::new("sip.provider.example", b"other secret", 300);
        let h = DigestAnswer {
            username: "dev1",
            password: "pw",
            realm: r.realm(),
            nonce: &other.nonce(1000),
            method: "REGISTER",
            uri: "sip:x",
            cnonce: "c",
        }
        .header(Algorithm::Md5);
        let c = Credentials::parse(&h).unwrap();
        assert_eq!(r.verify(&c, "REGISTER", 1000, &[(Algorithm::Md5, &ha1)]), Err(DigestError::Nonce));
        let wrong_realm = DigestAnswer {
            username: "dev1",
            password: "pw",
            realm: "evil",
            nonce: &r.nonce(1000),
            method: "REGISTER",
            uri: "sip:x",
            cnonce: "c",
        }
        .header(Algorithm::Md5);
        let c = Credentials::parse(&wrong_realm).unwrap();
        assert_eq!(r.verify(&c, "REGISTER", 1000, &[(Algorithm::Md5, &ha1)]), Err(DigestError::Realm));
    }

    #[test]
    fn only_the_configured_algorithms_are_offered_and_accepted() {
        let md5_only = realm().with_algorithms(vec![Algorithm::Md5]);
        let ch = md5_only.challenges(1000, false);
        assert_eq!(ch.len(), 1);
        assert!(ch[0].contains("algorithm=MD5"));
        let h = DigestAnswer {
            username: "dev1",
            password: "pw",
            realm: md5_only.realm(),
            nonce: &md5_only.nonce(1000),
            method: "REGISTER",
            uri: "sip:x",
            cnonce: "c",
        }
        .header(Algorithm::Sha256);
        let ha1 = Algorithm::Sha256.ha1("dev1", md5_only.realm(), "pw");
        let c = Credentials::parse(&h).unwrap();
        assert!(matches!(
            md5_only.verify(&c, "REGISTER", 1000, &[(Algorithm::Sha256, &ha1)]),
            Err(DigestError::Algorithm(_))
        ));
    }

    #[test]
    fn challenges_offer_sha256_then_md5() {
        let ch = realm().challenges(7, true);
        assert!(ch[0].contains("algorithm=SHA-256") && ch[1].contains("algorithm=MD5"));
        assert!(ch.iter().all(|c| c.contains("stale=true") && c.contains("nonce=\"7.")));
        let params = parse_auth_params(ch[1].strip_prefix("Digest ").unwrap()).unwrap();
        assert!(params.contains(&("realm".into(), "sip.provider.example".into())));
    }

    #[test]
    fn rfc_7616_examples_md5_and_sha256() {
        // RFC 7616 §3.9.1: the same request answered with MD5 and with SHA-256 (the digest math RFC 8760 takes
        // into SIP unchanged).
        let challenge = |alg: &str| {
            Challenge::parse(&format!(
                r#"Digest realm="http-auth@example.org", qop="auth, auth-int", algorithm={alg},
                   nonce="7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v",
                   opaque="FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS""#
            ))
            .unwrap()
        };
        let cnonce = "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ";
        let md5 = challenge("MD5").answer("Mufasa", "Circle of Life", "GET", "/dir/index.html", cnonce);
        assert_eq!(md5.response, "8ca523f5e9506fed4657c9700eebdbec");
        let sha = challenge("SHA-256").answer("Mufasa", "Circle of Life", "GET", "/dir/index.html", cnonce);
        assert_eq!(sha.response, "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1");
        // What goes on the wire parses back to the same credentials, opaque echoed.
        let back = Credentials::parse(&sha.header()).unwrap();
        assert_eq!(back, sha);
        assert_eq!(back.opaque.as_deref(), Some("FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS"));
        assert_eq!((back.qop.as_deref(), back.nc.as_deref()), (Some("auth"), Some("00000001")));
    }

    #[test]
    fn a_challenge_without_qop_gets_an_rfc_2069_answer() {
        // RFC 2069's example inputs (its printed response is wrong, a known erratum): no qop, so no cnonce/nc.
        let c = Challenge::parse(r#"Digest realm="testrealm@host.com", nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093""#)
            .unwrap();
        assert_eq!((c.algorithm, c.qop_auth), (Algorithm::Md5, false));
        let a = c.answer("Mufasa", "CircleOfLife", "GET", "/dir/index.html", "unused");
        assert_eq!(a.response, "1949323746fe6a43ef61f9606e7febea");
        let h = a.header();
        assert!(!h.contains("cnonce") && !h.contains("qop") && !h.contains("nc="), "{h}");
    }

    #[test]
    fn the_first_supported_challenge_is_picked() {
        // RFC 8760 §2.4: SHA-256 offered first, MD5 second; a client takes the topmost it supports.
        let both = [
            r#"Digest realm="carrier.example", nonce="n1", algorithm=SHA-256, qop="auth""#,
            r#"Digest realm="carrier.example", nonce="n1", algorithm=MD5, qop="auth""#,
        ];
        assert_eq!(Challenge::pick(both, None).unwrap().algorithm, Algorithm::Sha256);
        let unknown_first = [r#"Digest realm="r", nonce="n", algorithm=SHA-512-256"#, r#"Digest realm="r", nonce="n""#];
        assert_eq!(Challenge::pick(unknown_first, None).unwrap().algorithm, Algorithm::Md5);
        // Two challenges in one header line; a comma inside a quoted value does not split.
        let one_line =
            r#"Digest realm="a, b", nonce="n", algorithm=AKAv1-MD5, Digest realm="a, b", nonce="m", algorithm=MD5"#;
        let c = Challenge::pick([one_line], None).unwrap();
        assert_eq!((c.realm.as_str(), c.nonce.as_str()), ("a, b", "m"));
        // Only the configured realm is answered; nothing we can answer is None.
        assert!(Challenge::pick(both, Some("evil.example")).is_none());
        assert!(Challenge::pick(both, Some("carrier.example")).is_some());
        assert!(Challenge::pick([r#"Digest realm="r", nonce="n", qop="auth-int""#], None).is_none());
        assert!(Challenge::pick([r#"Basic realm="r""#, "Digest nonce=n"], None).is_none());
        assert!(Challenge::parse(r#"Digest realm="r", nonce="n", stale=TRUE"#).unwrap().stale);
    }

    #[test]
    fn our_registrar_accepts_what_the_client_side_computes() {
        let r = realm();
        for ch in r.challenges(1000, false) {
            let c = Challenge::parse(&ch).unwrap();
            let creds = c.answer("dev1", "pw", "INVITE", "sip:+4930123456@127.0.0.1;user=phone", "cn");
            let parsed = Credentials::parse(&creds.header()).unwrap();
            let ha1 = c.algorithm.ha1("dev1", r.realm(), "pw");
            assert_eq!(r.verify(&parsed, "INVITE", 1001, &[(c.algorithm, &ha1)]), Ok(0), "{ch}");
        }
    }

    proptest! {
        #[test]
        fn quoted_values_round_trip(v in "\\PC{0,20}", k in "[a-z]{1,8}") {
            let parsed = parse_auth_params(&format!("{k}={}, other=tok", quote(&v))).unwrap();
            prop_assert_eq!(parsed, vec![(k, v), ("other".into(), "tok".into())]);
        }

        #[test]
        fn parsing_never_panics(s in "\\PC{0,80}") {
            let _ = Credentials::parse(&s);
            let _ = Challenge::pick([s.as_str()], None);
        }
    }
}
