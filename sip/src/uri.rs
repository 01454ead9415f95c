//! SIP, SIPS (RFC 3261 §19.1, §25.1) and tel (RFC 3966) URIs, parsed by us.
//!
//! Stacks in Rust get these wrong in ways that matter to a phone-number bridge (rsip 0.4 and rsipstack 0.7
//! split the user part at its first `;`, so `sip:+12125551212;npdi@host;user=phone` loses its host; a
//! percent-escaped user is escaped twice on output; `tel:` numbers become host names). Every URI the bridge
//! acts on is parsed here, from the wire text, and written back in a canonical form: escapes decoded in the
//! stored fields and re-applied only where the grammar needs them, host names lower-cased, parameters kept in
//! order.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

/// Why text is not a URI we accept.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UriError {
    /// Neither `sip:`, `sips:` nor `tel:`.
    #[error("unsupported URI scheme in {0:?}")]
    Scheme(String),
    /// The host is missing or not a host name / IP literal.
    #[error("invalid host {0:?}")]
    Host(String),
    /// The port is not a number in 1..=65535.
    #[error("invalid port {0:?}")]
    Port(String),
    /// A character not allowed in this part of the URI.
    #[error("character {ch:?} not allowed in the {part}")]
    Char {
        /// The character.
        ch: char,
        /// Where.
        part: &'static str,
    },
    /// A `%` not followed by two hex digits, or escapes that do not decode to UTF-8.
    #[error("bad percent-escape in the {0}")]
    Escape(&'static str),
    /// More than one `@`.
    #[error("more than one '@'")]
    TwoAts,
    /// A tel URI whose number is neither global (`+…`) nor local with a `phone-context`.
    #[error("invalid telephone number {0:?}")]
    TelNumber(String),
    /// Empty parameter name.
    #[error("empty parameter name")]
    EmptyParam,
}

/// A host: a domain name (stored lower-case) or an IP address.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Host {
    /// A domain name, lower-case, without a trailing dot.
    Domain(String),
    /// An IPv4 address.
    V4(Ipv4Addr),
    /// An IPv6 address (written in brackets).
    V6(Ipv6Addr),
}

impl Host {
    /// The IP address, if the host is one.
    pub fn ip(&self) -> Option<IpAddr> {
        match self {
            Host::Domain(_) => None,
            Host::V4(a) => Some(IpAddr::V4(*a)),
            Host::V6(a) => Some(IpAddr::V6(*a)),
        }
    }
}

impl From<IpAddr> for Host {
    fn from(ip: IpAddr) -> Self {
        match ip {
            IpAddr::V4(a) => Host::V4(a),
            IpAddr::V6(a) => Host::V6(a),
        }
    }
}

impl fmt::Display for Host {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Host::Domain(d) => f.write_str(d),
            Host::V4(a) => write!(f, "{a}"),
            Host::V6(a) => write!(f, "[{a}]"),
        }
    }
}

/// A URI parameter (`;name=value` or `;name`), name lower-cased, value unescaped.
pub type Param = (String, Option<String>);

/// A `sip:` or `sips:` URI.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SipUri {
    /// `sips:`.
    pub secure: bool,
    /// The user part, unescaped (`+12125551212;npdi`, `alice smith`).
    pub user: Option<String>,
    /// The password of `user:password@` (deprecated, kept only to write it back).
    pub password: Option<String>,
    /// The host.
    pub host: Host,
    /// The port, if given.
    pub port: Option<u16>,
    /// URI parameters in order (`transport`, `user`, `lr`…).
    pub params: Vec<Param>,
    /// URI headers (`?Subject=x&…`), unescaped.
    pub headers: Vec<(String, String)>,
}

/// A `tel:` URI.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TelUri {
    /// The number as written, visual separators removed: `+12015550123` (global) or `5550123` (local).
    pub number: String,
    /// Parameters in order (`phone-context`, `ext`, `isub`…), names lower-cased.
    pub params: Vec<Param>,
}

/// Any URI the bridge handles.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Uri {
    /// `sip:` / `sips:`.
    Sip(SipUri),
    /// `tel:`.
    Tel(TelUri),
}

impl SipUri {
    /// `sip:user@host`.
    pub fn new(user: Option<&str>, host: Host) -> Self {
        Self {
            secure: false,
            user: user.map(str::to_owned),
            password: None,
            host,
            port: None,
            params: Vec::new(),
            headers: Vec::new(),
        }
    }

    /// The value of parameter `name` (`Some("")` for a flag such as `lr`).
    pub fn param(&self, name: &str) -> Option<&str> {
        find_param(&self.params, name)
    }

    /// Sets parameter `name`, replacing an earlier one.
    pub fn set_param(&mut self, name: &str, value: Option<&str>) {
        let name = name.to_ascii_lowercase();
        self.params.retain(|(n, _)| *n != name);
        self.params.push((name, value.map(str::to_owned)));
    }

    /// The global phone number in the user part (`+` and digits, visual separators and user-part parameters
    /// such as `;npdi` dropped), whether or not `;user=phone` is present.
    pub fn phone_number(&self) -> Option<String> {
        global_number(self.user.as_deref()?.split(';').next()?)
    }

    /// The address-of-record form: scheme, user and host only (what a registration binds).
    pub fn aor(&self) -> SipUri {
        SipUri { password: None, port: None, params: Vec::new(), headers: Vec::new(), ..self.clone() }
    }
}

impl TelUri {
    /// Whether the number is global (`+…`).
    pub fn is_global(&self) -> bool {
        self.number.starts_with('+')
    }

    /// The value of parameter `name`.
    pub fn param(&self, name: &str) -> Option<&str> {
        find_param(&self.params, name)
    }
}

impl Uri {
    /// The global phone number this URI names: a global `tel:` number, or the user part of a SIP URI when it
    /// is one.
    pub fn phone_number(&self) -> Option<String> {
        match self {
            Uri::Sip(s) => s.phone_number(),
            Uri::Tel(t) => t.is_global().then(|| t.number.clone()),
        }
    }

    /// The SIP URI, if this is one.
    pub fn as_sip(&self) -> Option<&SipUri> {
        match self {
            Uri::Sip(s) => Some(s),
            Uri::Tel(_) => None,
        }
    }
}

fn find_param<'a>(params: &'a [Param], name: &str) -> Option<&'a str> {
    params.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_deref().unwrap_or(""))
}

/// `+` followed by digits, once visual separators (`-.()` and spaces) are removed.
fn global_number(s: &str) -> Option<String> {
    let rest = s.strip_prefix('+')?;
    let digits: String = rest.chars().filter(|c| !matches!(c, '-' | '.' | '(' | ')' | ' ')).collect();
    (!digits.is_empty() && digits.len() <= 15 && digits.bytes().all(|b| b.is_ascii_digit()))
        .then(|| format!("+{digits}"))
}

// Character classes of RFC 3261 §25.1.
fn unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-_.!~*'()".contains(&b)
}
fn user_ok(b: u8) -> bool {
    unreserved(b) || b"&=+$,;?/".contains(&b)
}
fn password_ok(b: u8) -> bool {
    unreserved(b) || b"&=+$,".contains(&b)
}
fn param_ok(b: u8) -> bool {
    unreserved(b) || b"[]/:&+$".contains(&b)
}
fn header_ok(b: u8) -> bool {
    unreserved(b) || b"[]/?:+$".contains(&b)
}
// RFC 3966: the characters of a tel parameter value (uric minus ';').
fn tel_param_ok(b: u8) -> bool {
    unreserved(b) || b"[]/:&+$?=,@".contains(&b)
}

fn unescape(s: &str, allowed: fn(u8) -> bool, part: &'static str) -> Result<String, UriError> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' => {
                let hex = s.get(i + 1..i + 3).ok_or(UriError::Escape(part))?;
                if !hex.bytes().all(|c| c.is_ascii_hexdigit()) {
                    return Err(UriError::Escape(part));
                }
                out.push(u8::from_str_radix(hex, 16).map_err(|_| UriError::Escape(part))?);
                i += 3;
            }
            c if allowed(c) => {
                out.push(c);
                i += 1;
            }
            _ => {
                let ch = s[i..].chars().next().unwrap_or('?');
                return Err(UriError::Char { ch, part });
            }
        }
    }
    String::from_utf8(out).map_err(|_| UriError::Escape(part))
}

fn escape(s: &str, allowed: fn(u8) -> bool, out: &mut impl fmt::Write) -> fmt::Result {
    for b in s.bytes() {
        if allowed(b) {
            out.write_char(b as char)?;
        } else {
            write!(out, "%{b:02X}")?;
        }
    }
    Ok(())
}

fn parse_host(s: &str) -> Result<(Host, Option<u16>), UriError> {
    let bad = || UriError::Host(s.to_owned());
    let (host, port) = if let Some(rest) = s.strip_prefix('[') {
        let (v6, after) = rest.split_once(']').ok_or_else(bad)?;
        let ip: Ipv6Addr = v6.parse().map_err(|_| bad())?;
        let port = match after {
            "" => None,
            p => Some(p.strip_prefix(':').ok_or_else(bad)?),
        };
        (Host::V6(ip), port)
    } else {
        let (h, port) = match s.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (s, None),
        };
        let host = if let Ok(ip) = h.parse::<Ipv4Addr>() {
            Host::V4(ip)
        } else {
            let h = h.strip_suffix('.').unwrap_or(h);
            let label_ok = |l: &str| {
                !l.is_empty()
                    && l.len() <= 63
                    && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                    && !l.starts_with('-')
                    && !l.ends_with('-')
            };
            // The last label of a domain name starts with a letter (RFC 3261 toplabel): "1.2.3" is no host.
            let top_ok =
                h.rsplit('.').next().is_some_and(|t| t.bytes().next().is_some_and(|b| b.is_ascii_alphabetic()));
            if h.is_empty() || h.len() > 253 || !h.split('.').all(label_ok) || !top_ok {
                return Err(bad());
            }
            Host::Domain(h.to_ascii_lowercase())
        };
        (host, port)
    };
    let port = match port {
        None => None,
        Some(p) => {
            let n: u16 = p
                .parse()
                .ok()
                .filter(|n| *n > 0 && p.bytes().all(|b| b.is_ascii_digit()))
                .ok_or_else(|| UriError::Port(p.to_owned()))?;
            Some(n)
        }
    };
    Ok((host, port))
}

fn parse_params(s: &str, allowed: fn(u8) -> bool, part: &'static str) -> Result<Vec<Param>, UriError> {
    let mut out = Vec::new();
    for p in s.split(';') {
        let (name, value) = match p.split_once('=') {
            Some((n, v)) => (n, Some(unescape(v, allowed, part)?)),
            None => (p, None),
        };
        if name.is_empty() {
            return Err(UriError::EmptyParam);
        }
        out.push((unescape(name, allowed, part)?.to_ascii_lowercase(), value));
    }
    Ok(out)
}

impl FromStr for SipUri {
    type Err = UriError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (scheme, rest) = s.split_once(':').ok_or_else(|| UriError::Scheme(s.to_owned()))?;
        let secure = if scheme.eq_ignore_ascii_case("sip") {
            false
        } else if scheme.eq_ignore_ascii_case("sips") {
            true
        } else {
            return Err(UriError::Scheme(s.to_owned()));
        };
        // '@' appears in no other part of a SIP URI, so the user part is everything before it — `;`, `?`
        // and `/` included.
        let (userinfo, rest) = match rest.find('@') {
            Some(at) => {
                if rest[at + 1..].contains('@') {
                    return Err(UriError::TwoAts);
                }
                (Some(&rest[..at]), &rest[at + 1..])
            }
            None => (None, rest),
        };
        let (user, password) = match userinfo {
            None => (None, None),
            Some(u) => {
                let (user, pw) = match u.split_once(':') {
                    Some((u, p)) => (u, Some(unescape(p, password_ok, "password")?)),
                    None => (u, None),
                };
                if user.is_empty() {
                    return Err(UriError::Char { ch: '@', part: "user" });
                }
                (Some(unescape(user, user_ok, "user")?), pw)
            }
        };
        let (rest, headers) = match rest.split_once('?') {
            Some((r, h)) => (r, Some(h)),
            None => (rest, None),
        };
        let (hostport, params) = match rest.split_once(';') {
            Some((h, p)) => (h, Some(p)),
            None => (rest, None),
        };
        let (host, port) = parse_host(hostport)?;
        let mut params = match params {
            Some(p) => parse_params(p, param_ok, "parameters")?,
            None => Vec::new(),
        };
        // Tokens compared case-insensitively (RFC 3261 §19.1.4): kept lower-case so URIs compare equal.
        for (name, value) in &mut params {
            if matches!(name.as_str(), "transport" | "user") {
                *value = value.as_ref().map(|v| v.to_ascii_lowercase());
            }
        }
        let headers = match headers {
            None => Vec::new(),
            Some(h) => h
                .split('&')
                .map(|kv| {
                    let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
                    if k.is_empty() {
                        return Err(UriError::EmptyParam);
                    }
                    Ok((unescape(k, header_ok, "headers")?, unescape(v, header_ok, "headers")?))
                })
                .collect::<Result<_, _>>()?,
        };
        Ok(SipUri { secure, user, password, host, port, params, headers })
    }
}

impl fmt::Display for SipUri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.secure { "sips:" } else { "sip:" })?;
        if let Some(user) = &self.user {
            escape(user, user_ok, f)?;
            if let Some(pw) = &self.password {
                f.write_char(':')?;
                escape(pw, password_ok, f)?;
            }
            f.write_char('@')?;
        }
        write!(f, "{}", self.host)?;
        if let Some(p) = self.port {
            write!(f, ":{p}")?;
        }
        write_params(&self.params, param_ok, f)?;
        for (i, (k, v)) in self.headers.iter().enumerate() {
            f.write_char(if i == 0 { '?' } else { '&' })?;
            escape(k, header_ok, f)?;
            f.write_char('=')?;
            escape(v, header_ok, f)?;
        }
        Ok(())
    }
}

fn write_params(params: &[Param], allowed: fn(u8) -> bool, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    for (name, value) in params {
        f.write_char(';')?;
        escape(name, allowed, f)?;
        if let Some(v) = value {
            f.write_char('=')?;
            escape(v, allowed, f)?;
        }
    }
    Ok(())
}

use std::fmt::Write as _;

impl FromStr for TelUri {
    type Err = UriError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (scheme, rest) = s.split_once(':').ok_or_else(|| UriError::Scheme(s.to_owned()))?;
        if !scheme.eq_ignore_ascii_case("tel") {
            return Err(UriError::Scheme(s.to_owned()));
        }
        let (number, params) = match rest.split_once(';') {
            Some((n, p)) => (n, parse_params(p, tel_param_ok, "tel parameters")?),
            None => (rest, Vec::new()),
        };
        let bad = || UriError::TelNumber(number.to_owned());
        let number = if number.starts_with('+') {
            global_number(number).ok_or_else(bad)?
        } else {
            let digits: String = number.chars().filter(|c| !matches!(c, '-' | '.' | '(' | ')')).collect();
            let ok = !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_hexdigit() || b == b'*' || b == b'#');
            if !ok || find_param(&params, "phone-context").is_none() {
                return Err(bad());
            }
            digits.to_ascii_uppercase()
        };
        Ok(TelUri { number, params })
    }
}

impl fmt::Display for TelUri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "tel:{}", self.number)?;
        write_params(&self.params, tel_param_ok, f)
    }
}

impl FromStr for Uri {
    type Err = UriError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        let scheme = s.split_once(':').map(|(s, _)| s).unwrap_or("");
        if scheme.eq_ignore_ascii_case("tel") { s.parse().map(Uri::Tel) } else { s.parse().map(Uri::Sip) }
    }
}

impl fmt::Display for Uri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Uri::Sip(s) => s.fmt(f),
            Uri::Tel(t) => t.fmt(f),
        }
    }
}

/// A `From`/`To`/`Contact`-style header value: an optional display name, the URI, header parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NameAddr {
    /// The display name, unquoted.
    pub display_name: Option<String>,
    /// The URI.
    pub uri: Uri,
    /// Header parameters (`tag`, `expires`, `q`…), names lower-cased.
    pub params: Vec<Param>,
}

impl NameAddr {
    /// The `tag` parameter.
    pub fn tag(&self) -> Option<&str> {
        find_param(&self.params, "tag")
    }

    /// A header parameter.
    pub fn param(&self, name: &str) -> Option<&str> {
        find_param(&self.params, name)
    }
}

impl FromStr for NameAddr {
    type Err = UriError;

    /// `"Alice" <sip:…>;tag=x`, `Alice <sip:…>`, `<sip:…>` or a bare `sip:…;tag=x` (where the parameters
    /// belong to the header, RFC 3261 §20.10).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        let (display_name, uri, after) = if let Some(lt) = find_unquoted(s, b'<') {
            let name = s[..lt].trim();
            let name = name.strip_prefix('"').and_then(|n| n.strip_suffix('"')).map_or_else(
                || name.to_owned(),
                |q| {
                    let mut out = String::new();
                    let mut chars = q.chars();
                    while let Some(c) = chars.next() {
                        out.push(if c == '\\' { chars.next().unwrap_or('\\') } else { c });
                    }
                    out
                },
            );
            let gt = s[lt..].find('>').map(|i| lt + i).ok_or(UriError::Char { ch: '<', part: "name-addr" })?;
            (Some(name).filter(|n| !n.is_empty()), &s[lt + 1..gt], &s[gt + 1..])
        } else {
            match s.find(';') {
                Some(i) => (None, &s[..i], &s[i..]),
                None => (None, s, ""),
            }
        };
        let uri: Uri = uri.parse()?;
        let after = after.trim();
        let params = match after.strip_prefix(';') {
            Some(p) => parse_params(p.trim(), |b| unreserved(b) || b"[]/:&+$\"<>@".contains(&b), "header parameters")?,
            None if after.is_empty() => Vec::new(),
            None => return Err(UriError::Char { ch: after.chars().next().unwrap_or('?'), part: "name-addr" }),
        };
        Ok(NameAddr { display_name, uri, params })
    }
}

impl fmt::Display for NameAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(n) = &self.display_name {
            f.write_char('"')?;
            for c in n.chars() {
                if c == '"' || c == '\\' {
                    f.write_char('\\')?;
                }
                f.write_char(c)?;
            }
            f.write_str("\" ")?;
        }
        write!(f, "<{}>", self.uri)?;
        for (name, value) in &self.params {
            write!(f, ";{name}")?;
            if let Some(v) = value {
                write!(f, "={v}")?;
            }
        }
        Ok(())
    }
}

fn find_unquoted(s: &str, needle: u8) -> Option<usize> {
    let mut quoted = false;
    let mut escaped = false;
    for (i, b) in s.bytes().enumerate() {
        match b {
            _ if escaped => escaped = false,
            b'\\' if quoted => escaped = true,
            b'"' => quoted = !quoted,
            _ if b == needle && !quoted => return Some(i),
            _ => {}
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sip(s: &str) -> SipUri {
        s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn a_user_part_with_semicolons_keeps_its_host() {
        // What rsip and rsipstack split at the first ';'.
        let u = sip("sip:+1-212-555-1212;npdi;rn=+12125550000@gw.example.com;user=phone");
        assert_eq!(u.user.as_deref(), Some("+1-212-555-1212;npdi;rn=+12125550000"));
        assert_eq!(u.host, Host::Domain("gw.example.com".into()));
        assert_eq!(u.param("user"), Some("phone"));
        assert_eq!(u.phone_number().as_deref(), Some("+12125551212"));
        assert_eq!(u.to_string(), "sip:+1-212-555-1212;npdi;rn=+12125550000@gw.example.com;user=phone");
    }

    #[test]
    fn escapes_are_decoded_once_and_written_once() {
        let u = sip("sip:%61lice%20smith@Example.COM");
        assert_eq!(u.user.as_deref(), Some("alice smith"));
        assert_eq!(u.host, Host::Domain("example.com".into()));
        assert_eq!(u.to_string(), "sip:alice%20smith@example.com");
        assert_eq!(sip(&u.to_string()), u);
    }

    #[test]
    fn ipv6_hosts_with_and_without_ports() {
        let u = sip("sip:bob@[2001:db8::1]:5080;transport=tcp");
        assert_eq!(u.host, Host::V6("2001:db8::1".parse().unwrap()));
        assert_eq!(u.port, Some(5080));
        assert_eq!(u.param("transport"), Some("tcp"));
        assert_eq!(u.to_string(), "sip:bob@[2001:db8::1]:5080;transport=tcp");
        let u = sip("sips:[::1]");
        assert!(u.secure && u.user.is_none() && u.port.is_none());
        assert_eq!(u.host.ip(), Some("::1".parse().unwrap()));
        assert!("sip:bob@2001:db8::1".parse::<SipUri>().is_err(), "an IPv6 host needs brackets");
        assert!("sip:bob@[2001:db8::1".parse::<SipUri>().is_err());
        assert!("sip:bob@[::1]5060".parse::<SipUri>().is_err());
    }

    #[test]
    fn tel_uris_are_numbers_not_hosts() {
        let t: TelUri = "tel:+1-201-555-0123;ext=22".parse().unwrap();
        assert_eq!(t.number, "+12015550123");
        assert!(t.is_global());
        assert_eq!(t.param("ext"), Some("22"));
        assert_eq!(t.to_string(), "tel:+12015550123;ext=22");
        let local: TelUri = "tel:7042;phone-context=example.com".parse().unwrap();
        assert_eq!(local.number, "7042");
        assert!(!local.is_global());
        assert_eq!(Uri::Tel(local).phone_number(), None);
        assert!("tel:7042".parse::<TelUri>().is_err(), "a local number needs a phone-context");
        assert!("tel:+".parse::<TelUri>().is_err());
        assert!("tel:+12a".parse::<TelUri>().is_err());
        assert!("tel:+1234567890123456".parse::<TelUri>().is_err(), "E.164 has at most 15 digits");
        let any: Uri = "TEL:+442079460001".parse().unwrap();
        assert_eq!(any.phone_number().as_deref(), Some("+442079460001"));
    }

    #[test]
    fn passwords_headers_and_flags() {
        let u = sip("sip:alice:se%3Acret@host.example?subject=project%20x&priority=urgent");
        assert_eq!(u.password.as_deref(), Some("se:cret"));
        assert_eq!(u.headers, vec![("subject".into(), "project x".into()), ("priority".into(), "urgent".into())]);
        let r = sip("sip:proxy.example;lr;Transport=TLS");
        assert_eq!(r.param("lr"), Some(""));
        assert_eq!(r.param("transport"), Some("tls"));
        assert_eq!(r.to_string(), "sip:proxy.example;lr;transport=tls");
    }

    #[test]
    fn rejects_what_the_grammar_forbids() {
        for bad in [
            "sip:",
            "sip:@host.example",
            "http://host.example",
            "sip:a@b@host.example",
            "sip:alice@host.example:0",
            "sip:alice@host.example:99999",
            "sip:alice@host.example:5o60",
            "sip:alice@-host.example",
            "sip:alice@host..example",
            "sip:al ice@host.example",
            "sip:alice@1.2.3",
            "sip:%zz@host.example",
            "sip:%ff@host.example",
            "sip:alice@host.example;",
            "sip:alice@host.example;=x",
            "sip:alice<@host.example",
        ] {
            assert!(bad.parse::<SipUri>().is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn aor_drops_everything_but_user_and_host() {
        let u = sip("sips:+4420794600001@sip.provider.example:5061;transport=tls?x=y");
        assert_eq!(u.aor().to_string(), "sips:+4420794600001@sip.provider.example");
    }

    #[test]
    fn name_addrs() {
        let n: NameAddr = r#""Alice \"A\" Smith" <sip:+15551234@example.com;user=phone>;tag=abc"#.parse().unwrap();
        assert_eq!(n.display_name.as_deref(), Some(r#"Alice "A" Smith"#));
        assert_eq!(n.tag(), Some("abc"));
        assert_eq!(n.uri.phone_number().as_deref(), Some("+15551234"));
        assert_eq!(n.to_string(), r#""Alice \"A\" Smith" <sip:+15551234@example.com;user=phone>;tag=abc"#);
        // Without angle brackets the parameters belong to the header, not the URI.
        let bare: NameAddr = "sip:bob@example.com;tag=1".parse().unwrap();
        assert_eq!(bare.tag(), Some("1"));
        assert!(bare.uri.as_sip().unwrap().params.is_empty());
        let tel: NameAddr = "<tel:+15551234>;tag=9".parse().unwrap();
        assert_eq!(tel.uri, Uri::Tel("tel:+15551234".parse().unwrap()));
        let quoted_lt: NameAddr = r#""a<b" <sip:x@example.com>"#.parse().unwrap();
        assert_eq!(quoted_lt.display_name.as_deref(), Some("a<b"));
        assert!("<sip:x@example.com".parse::<NameAddr>().is_err());
        assert!("<sip:x@example.com> junk".parse::<NameAddr>().is_err());
    }

    fn host() -> impl Strategy<Value = Host> {
        prop_oneof![
            "[a-z][a-z0-9-]{0,8}[a-z0-9](\\.[a-z][a-z0-9]{0,6}){0,3}".prop_map(Host::Domain),
            any::<[u8; 4]>().prop_map(|b| Host::V4(Ipv4Addr::from(b))),
            any::<[u16; 8]>().prop_map(|s| Host::V6(Ipv6Addr::from(s))),
        ]
    }

    fn param() -> impl Strategy<Value = Param> {
        ("[a-z][a-z0-9-]{0,6}", proptest::option::of("\\PC{0,8}"))
            // Their values are lower-cased on parsing (case-insensitive tokens).
            .prop_filter("case-folded parameter", |(n, _)| n != "transport" && n != "user")
    }

    fn sip_uri() -> impl Strategy<Value = SipUri> {
        (
            any::<bool>(),
            proptest::option::of("\\PC{1,12}"),
            proptest::option::of("\\PC{0,6}"),
            host(),
            proptest::option::of(1u16..),
            proptest::collection::vec(param(), 0..3),
            proptest::collection::vec(("[a-zA-Z][a-zA-Z0-9]{0,5}", "\\PC{0,8}"), 0..3),
        )
            .prop_map(|(secure, user, password, host, port, params, headers)| SipUri {
                secure,
                password: user.as_ref().and(password),
                user,
                host,
                port,
                params,
                headers,
            })
    }

    proptest! {
        #[test]
        fn sip_uris_round_trip(u in sip_uri()) {
            let text = u.to_string();
            prop_assert_eq!(text.parse::<SipUri>(), Ok(u), "{}", text);
        }

        #[test]
        fn phone_users_round_trip(n in "\\+[1-9][0-9]{6,14}", extra in "(;npdi|;rn=\\+1[0-9]{10}|;isub=[0-9]{1,4})*") {
            let text = format!("sip:{n}{extra}@sip.provider.example;user=phone");
            let u: SipUri = text.parse().unwrap();
            prop_assert_eq!(u.phone_number(), Some(n));
            prop_assert_eq!(u.to_string(), text);
        }

        #[test]
        fn parsing_never_panics(s in "\\PC{0,60}") {
            let _ = s.parse::<Uri>();
            let _ = s.parse::<NameAddr>();
        }

        #[test]
        fn canonical_text_is_stable(s in "(sip|sips|tel):[a-zA-Z0-9%+;=@.:\\[\\]?&-]{1,30}") {
            if let Ok(u) = s.parse::<Uri>() {
                let once = u.to_string();
                prop_assert_eq!(once.parse::<Uri>().map(|u| u.to_string()), Ok(once));
            }
        }
    }
}
