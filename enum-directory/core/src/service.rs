//! The services a number can be reached by, each one ENUM NAPTR record.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::E164;

/// The longest URI accepted: the NAPTR regexp `!^.*$!<uri>!` is one DNS character-string (≤ 255 octets).
pub const MAX_URI_LEN: usize = 255 - "!^.*$!!".len();

/// The kind of a [`Service`], serialised in lowercase (`"matrix"`, `"sip"`, `"sms"`, `"voice"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ServiceType {
    /// A Matrix user, `E2U+x-matrix` with a `matrix:u/<localpart>:<server>` URI.
    Matrix,
    /// A SIP address, `E2U+sip` with a `sip:` or `sips:` URI.
    Sip,
    /// SMS to the number, `E2U+sms:tel` with a `tel:+<digits>` URI.
    Sms,
    /// Voice calls to the number, `E2U+voice:tel` with a `tel:+<digits>` URI.
    Voice,
}

impl ServiceType {
    /// Every service type, in the order NAPTR records are published.
    pub const ALL: [ServiceType; 4] = [ServiceType::Matrix, ServiceType::Sip, ServiceType::Sms, ServiceType::Voice];

    /// The ENUM service field (RFC 6116 §3.4.3) of this type.
    pub fn enumservice(self) -> &'static str {
        match self {
            ServiceType::Matrix => "E2U+x-matrix",
            ServiceType::Sip => "E2U+sip",
            ServiceType::Sms => "E2U+sms:tel",
            ServiceType::Voice => "E2U+voice:tel",
        }
    }

    /// The type whose enumservice is `s` (case-insensitive), if any.
    pub fn from_enumservice(s: &str) -> Option<ServiceType> {
        ServiceType::ALL.into_iter().find(|t| t.enumservice().eq_ignore_ascii_case(s))
    }

    /// The lowercase name used in JSON and configuration.
    pub fn as_str(self) -> &'static str {
        match self {
            ServiceType::Matrix => "matrix",
            ServiceType::Sip => "sip",
            ServiceType::Sms => "sms",
            ServiceType::Voice => "voice",
        }
    }
}

impl fmt::Display for ServiceType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a URI cannot be published for a service type.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ServiceError {
    /// Longer than [`MAX_URI_LEN`].
    #[error("URI longer than {MAX_URI_LEN} characters")]
    TooLong,
    /// Non-ASCII, whitespace, a control character or `!` (the regexp delimiter).
    #[error("URI contains a character that cannot be published")]
    BadCharacter,
    /// The URI scheme does not fit the service type.
    #[error("a {kind} service needs a {expected} URI")]
    WrongScheme {
        /// The service type.
        kind: ServiceType,
        /// What the URI must start with.
        expected: &'static str,
    },
    /// `matrix:u/<localpart>:<server>[?action=chat]` is malformed.
    #[error("not a Matrix user URI (matrix:u/<localpart>:<server>)")]
    BadMatrixUri,
    /// `sip:`/`sips:` with nothing usable after it.
    #[error("not a SIP URI (sip:[user@]host)")]
    BadSipUri,
    /// `tel:` not followed by a valid E.164 number.
    #[error("not a tel: URI with a valid E.164 number")]
    BadTelUri,
}

/// One way to reach a number: a type and a URI that was checked for it. Always valid: built by [`Service::new`].
///
/// Serialised as `{"type":"matrix","uri":"matrix:u/alice:hs.test"}`; deserialising checks the URI too.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "ServiceRepr", into = "ServiceRepr")]
pub struct Service {
    kind: ServiceType,
    uri: String,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ServiceRepr {
    #[serde(rename = "type")]
    kind: ServiceType,
    uri: String,
}

impl TryFrom<ServiceRepr> for Service {
    type Error = ServiceError;
    fn try_from(r: ServiceRepr) -> Result<Self, Self::Error> {
        Service::new(r.kind, &r.uri)
    }
}

impl From<Service> for ServiceRepr {
    fn from(s: Service) -> Self {
        ServiceRepr { kind: s.kind, uri: s.uri }
    }
}

impl Service {
    /// Checks `uri` for `kind` and builds the service.
    pub fn new(kind: ServiceType, uri: &str) -> Result<Service, ServiceError> {
        if uri.len() > MAX_URI_LEN {
            return Err(ServiceError::TooLong);
        }
        if !uri.bytes().all(|b| b.is_ascii_graphic() && b != b'!') {
            return Err(ServiceError::BadCharacter);
        }
        match kind {
            ServiceType::Matrix => check_matrix(uri)?,
            ServiceType::Sip => check_sip(uri)?,
            ServiceType::Sms | ServiceType::Voice => check_tel(kind, uri)?,
        }
        Ok(Service { kind, uri: uri.to_owned() })
    }

    /// The service type.
    pub fn kind(&self) -> ServiceType {
        self.kind
    }

    /// The URI, e.g. `matrix:u/alice:hs.example?action=chat`.
    pub fn uri(&self) -> &str {
        &self.uri
    }

    /// The ENUM service field of its NAPTR record, e.g. `E2U+x-matrix`.
    pub fn enumservice(&self) -> &'static str {
        self.kind.enumservice()
    }
}

fn check_matrix(uri: &str) -> Result<(), ServiceError> {
    let rest = uri
        .strip_prefix("matrix:u/")
        .ok_or(ServiceError::WrongScheme { kind: ServiceType::Matrix, expected: "matrix:u/" })?;
    let id = match rest.split_once('?') {
        Some((id, "action=chat")) => id,
        Some(_) => return Err(ServiceError::BadMatrixUri),
        None => rest,
    };
    let (localpart, server) = id.split_once(':').ok_or(ServiceError::BadMatrixUri)?;
    // Matrix spec (user identifiers): lowercase letters, digits and ._=-/+ ; the server name is a host with an
    // optional port. Percent-encoding is not needed for these characters.
    let local_ok = !localpart.is_empty()
        && localpart.bytes().all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'.' | b'_' | b'=' | b'-' | b'/' | b'+'));
    if !local_ok || !server_name_ok(server) {
        return Err(ServiceError::BadMatrixUri);
    }
    Ok(())
}

/// A Matrix server name: `host[:port]`, host a DNS name, IPv4 address or `[IPv6]`.
fn server_name_ok(server: &str) -> bool {
    let (host, port) = if let Some(v6) = server.strip_prefix('[') {
        match v6.split_once(']') {
            Some((addr, tail)) if addr.parse::<std::net::Ipv6Addr>().is_ok() => {
                return tail.is_empty() || tail.strip_prefix(':').is_some_and(port_ok);
            }
            _ => return false,
        }
    } else {
        match server.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (server, None),
        }
    };
    let host_ok = !host.is_empty()
        && host.len() <= 255
        && host.split('.').all(|l| !l.is_empty() && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'));
    host_ok && port.is_none_or(port_ok)
}

fn port_ok(p: &str) -> bool {
    !p.is_empty() && p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit()) && p.parse::<u16>().is_ok()
}

fn check_sip(uri: &str) -> Result<(), ServiceError> {
    let rest = uri
        .strip_prefix("sip:")
        .or_else(|| uri.strip_prefix("sips:"))
        .ok_or(ServiceError::WrongScheme { kind: ServiceType::Sip, expected: "sip: or sips:" })?;
    let hostport = match rest.rsplit_once('@') {
        Some((user, hp)) if !user.is_empty() => hp,
        Some(_) => return Err(ServiceError::BadSipUri),
        None => rest,
    };
    let hostport = hostport.split([';', '?']).next().unwrap_or_default();
    if !server_name_ok(hostport) {
        return Err(ServiceError::BadSipUri);
    }
    Ok(())
}

fn check_tel(kind: ServiceType, uri: &str) -> Result<(), ServiceError> {
    let number = uri.strip_prefix("tel:").ok_or(ServiceError::WrongScheme { kind, expected: "tel:" })?;
    match E164::parse(number) {
        Ok(n) if n.as_str() == number => Ok(()),
        _ => Err(ServiceError::BadTelUri),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_good_uris() {
        for (kind, uri) in [
            (ServiceType::Matrix, "matrix:u/alice:hs.example"),
            (ServiceType::Matrix, "matrix:u/alice:hs.example?action=chat"),
            (ServiceType::Matrix, "matrix:u/sms_+4915112345678:hs.example:8448"),
            (ServiceType::Matrix, "matrix:u/a.b_c=d-e/f:[::1]:8008"),
            (ServiceType::Matrix, "matrix:u/bob:127.0.0.1"),
            (ServiceType::Sip, "sip:+442079460001@sip.provider.example"),
            (ServiceType::Sip, "sips:alice@sip.example:5061;transport=tls"),
            (ServiceType::Sip, "sip:sip.example"),
            (ServiceType::Sms, "tel:+442079460001"),
            (ServiceType::Voice, "tel:+12025550143"),
        ] {
            let s = Service::new(kind, uri).unwrap_or_else(|e| panic!("{uri}: {e}"));
            assert_eq!((s.kind(), s.uri()), (kind, uri));
        }
    }

    #[test]
    fn rejects_bad_uris() {
        use ServiceError::*;
        let m = ServiceType::Matrix;
        for (kind, uri, err) in [
            (m, "https://matrix.to/#/@alice:hs", WrongScheme { kind: m, expected: "matrix:u/" }),
            (m, "matrix:r/room:hs", WrongScheme { kind: m, expected: "matrix:u/" }),
            (m, "matrix:u/alice", BadMatrixUri),
            (m, "matrix:u/:hs.example", BadMatrixUri),
            (m, "matrix:u/Alice:hs.example", BadMatrixUri),
            (m, "matrix:u/alice:hs..example", BadMatrixUri),
            (m, "matrix:u/alice:hs.example:99999", BadMatrixUri),
            (m, "matrix:u/alice:hs.example?action=join", BadMatrixUri),
            (m, "matrix:u/alice:hs.example!", BadCharacter),
            (m, "matrix:u/al ice:hs.example", BadCharacter),
            (m, "matrix:u/alicé:hs.example", BadCharacter),
            (ServiceType::Sip, "tel:+442079460001", WrongScheme { kind: ServiceType::Sip, expected: "sip: or sips:" }),
            (ServiceType::Sip, "sip:", BadSipUri),
            (ServiceType::Sip, "sip:@host", BadSipUri),
            (ServiceType::Sip, "sip:alice@", BadSipUri),
            (ServiceType::Sms, "tel:442079460001", BadTelUri),
            (ServiceType::Sms, "tel:+44 20 7946 0001", BadCharacter),
            (ServiceType::Voice, "tel:+4420794600001", BadTelUri),
            (ServiceType::Voice, "sip:x@y", WrongScheme { kind: ServiceType::Voice, expected: "tel:" }),
        ] {
            assert_eq!(Service::new(kind, uri), Err(err), "{uri}");
        }
        let long = format!("sip:{}@h.example", "a".repeat(MAX_URI_LEN));
        assert_eq!(Service::new(ServiceType::Sip, &long), Err(TooLong));
    }

    #[test]
    fn enumservices() {
        assert_eq!(ServiceType::Matrix.enumservice(), "E2U+x-matrix");
        assert_eq!(ServiceType::Sip.enumservice(), "E2U+sip");
        assert_eq!(ServiceType::Sms.enumservice(), "E2U+sms:tel");
        assert_eq!(ServiceType::Voice.enumservice(), "E2U+voice:tel");
        for t in ServiceType::ALL {
            assert_eq!(ServiceType::from_enumservice(&t.enumservice().to_lowercase()), Some(t));
        }
        assert_eq!(ServiceType::from_enumservice("E2U+web:http"), None);
    }

    #[test]
    fn serde_checks_the_uri() {
        let s: Service = serde_json::from_str(r#"{"type":"matrix","uri":"matrix:u/alice:hs.test"}"#).unwrap();
        assert_eq!(s.kind(), ServiceType::Matrix);
        assert_eq!(serde_json::to_string(&s).unwrap(), r#"{"type":"matrix","uri":"matrix:u/alice:hs.test"}"#);
        assert!(serde_json::from_str::<Service>(r#"{"type":"matrix","uri":"sip:a@b"}"#).is_err());
        assert!(serde_json::from_str::<Service>(r#"{"type":"fax","uri":"tel:+442079460001"}"#).is_err());
        assert!(serde_json::from_str::<Service>(r#"{"type":"sms","uri":"tel:+442079460001","x":1}"#).is_err());
    }
}
