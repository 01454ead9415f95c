//! SIP MESSAGE (RFC 3428) bodies ↔ Matrix text, and who a SIP sender is on the Matrix side. Pure.
//!
//! - `text/plain` (UTF-8, or no charset) is the text;
//! - `message/cpim` (RFC 3862, as many IM clients wrap their messages) is unwrapped: its message headers, a
//!   blank line, the inner MIME headers, a blank line, the inner body — which must itself be text/plain;
//! - anything else is refused with 415 and the types we accept.
//!
//! Outbound text longer than one UDP datagram comfortably carries is cut into several MESSAGEs at character
//! boundaries ([`split`]).

use tincan_sip_core::uri::{NameAddr, Uri};

/// The most text one MESSAGE carries (RFC 3428 §8: stay well under the path MTU over UDP).
pub const MAX_CHUNK: usize = 1200;

/// The most we accept in one inbound MESSAGE body.
pub const MAX_BODY: usize = 64 * 1024;

/// Why an inbound MESSAGE body is not text we bridge.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BodyError {
    /// Not text/plain or message/cpim (→ 415 with `Accept: text/plain, message/cpim`).
    #[error("unsupported media type {0:?}")]
    MediaType(String),
    /// A charset other than UTF-8 (or US-ASCII).
    #[error("unsupported charset {0:?}")]
    Charset(String),
    /// Not valid UTF-8, or a CPIM wrapper that does not parse.
    #[error("malformed body: {0}")]
    Malformed(&'static str),
    /// Empty.
    #[error("empty message")]
    Empty,
    /// Larger than [`MAX_BODY`] (→ 413).
    #[error("message body too large")]
    TooLarge,
}

impl BodyError {
    /// The SIP status this maps to.
    pub fn status(&self) -> (u16, &'static str) {
        match self {
            BodyError::MediaType(_) | BodyError::Charset(_) => (415, "Unsupported Media Type"),
            BodyError::TooLarge => (413, "Request Entity Too Large"),
            BodyError::Malformed(_) | BodyError::Empty => (400, "Bad Request"),
        }
    }
}

/// A `Content-Type` value: media type (lower-case) and its `charset`, if any.
fn media_type(ct: &str) -> (String, Option<String>) {
    let mut parts = ct.split(';');
    let ty = parts.next().unwrap_or("").trim().to_ascii_lowercase();
    let charset = parts.find_map(|p| {
        let (k, v) = p.split_once('=')?;
        k.trim().eq_ignore_ascii_case("charset").then(|| v.trim().trim_matches('"').to_ascii_lowercase())
    });
    (ty, charset)
}

fn text_of(ct: &str, body: &[u8]) -> Result<String, BodyError> {
    let (ty, charset) = media_type(ct);
    if ty != "text/plain" {
        return Err(BodyError::MediaType(ty));
    }
    match charset.as_deref() {
        None | Some("utf-8" | "utf8" | "us-ascii") => {}
        Some(other) => return Err(BodyError::Charset(other.to_owned())),
    }
    let text = std::str::from_utf8(body).map_err(|_| BodyError::Malformed("text is not UTF-8"))?;
    Ok(text.to_owned())
}

/// The text of an inbound MESSAGE with `content_type` (absent: text/plain, RFC 3428 §7 default) and `body`.
pub fn inbound_text(content_type: Option<&str>, body: &[u8]) -> Result<String, BodyError> {
    if body.len() > MAX_BODY {
        return Err(BodyError::TooLarge);
    }
    let ct = content_type.unwrap_or("text/plain");
    let text = match media_type(ct).0.as_str() {
        "message/cpim" => {
            let inner = cpim_inner(body)?;
            text_of(inner.content_type.as_deref().unwrap_or("text/plain"), inner.body)?
        }
        _ => text_of(ct, body)?,
    };
    let trimmed = text.trim_end_matches(['\r', '\n']);
    if trimmed.trim().is_empty() {
        return Err(BodyError::Empty);
    }
    Ok(trimmed.to_owned())
}

/// The MIME part inside a CPIM message.
#[derive(Debug, PartialEq, Eq)]
pub struct CpimInner<'a> {
    /// The CPIM `From:` header, if present (`Alice <im:alice@example.com>`).
    pub from: Option<String>,
    /// The inner Content-Type.
    pub content_type: Option<String>,
    /// The inner body.
    pub body: &'a [u8],
}

/// Splits `body` at its first blank line (CRLF or bare LF).
fn split_blank(body: &[u8]) -> Option<(&[u8], &[u8])> {
    let crlf = body.windows(4).position(|w| w == b"\r\n\r\n").map(|i| (i, i + 4));
    let lf = body.windows(2).position(|w| w == b"\n\n").map(|i| (i, i + 2));
    let (end, start) = match (crlf, lf) {
        (Some(a), Some(b)) => {
            if a.0 <= b.0 {
                a
            } else {
                b
            }
        }
        (a, b) => a.or(b)?,
    };
    Some((&body[..end], &body[start..]))
}

fn headers(block: &[u8]) -> Result<Vec<(String, String)>, BodyError> {
    let text = std::str::from_utf8(block).map_err(|_| BodyError::Malformed("CPIM headers are not UTF-8"))?;
    text.lines()
        .map(|l| l.trim_end_matches('\r'))
        .filter(|l| !l.is_empty())
        .map(|l| {
            let (k, v) = l.split_once(':').ok_or(BodyError::Malformed("CPIM header without ':'"))?;
            Ok((k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        })
        .collect()
}

/// Unwraps a `message/cpim` body.
pub fn cpim_inner(body: &[u8]) -> Result<CpimInner<'_>, BodyError> {
    let (message_headers, rest) = split_blank(body).ok_or(BodyError::Malformed("CPIM without a blank line"))?;
    let (mime_headers, inner) = split_blank(rest).ok_or(BodyError::Malformed("CPIM without its MIME part"))?;
    let mh = headers(message_headers)?;
    let ih = headers(mime_headers)?;
    Ok(CpimInner {
        from: mh.iter().find(|(k, _)| k == "from").map(|(_, v)| v.clone()),
        content_type: ih.iter().find(|(k, _)| k == "content-type").map(|(_, v)| v.clone()),
        body: inner,
    })
}

/// The remote user ID of a SIP identity: its E.164 number when the URI names one (`sip:+44…@host`,
/// `tel:+44…`), else the address of record `sip:user@host` (lower-case host, no port or parameters).
pub fn remote_id(who: &NameAddr) -> Option<String> {
    if let Some(n) = who.uri.phone_number() {
        return Some(n);
    }
    match &who.uri {
        Uri::Sip(s) if s.user.is_some() => Some(s.aor().to_string()),
        _ => None,
    }
}

/// Cuts `text` into pieces of at most `max` bytes, at character boundaries, preferring the last whitespace
/// in a piece when there is one.
pub fn split(text: &str, max: usize) -> Vec<&str> {
    let max = max.max(4);
    let mut out = Vec::new();
    let mut rest = text;
    while rest.len() > max {
        let mut cut = max;
        while !rest.is_char_boundary(cut) {
            cut -= 1;
        }
        if let Some(ws) = rest[..cut].rfind(char::is_whitespace).filter(|&i| i > cut / 2) {
            cut = ws + rest[ws..].chars().next().map_or(1, char::len_utf8);
        }
        out.push(&rest[..cut]);
        rest = &rest[cut..];
    }
    if !rest.is_empty() || out.is_empty() {
        out.push(rest);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn plain_text_and_charsets() {
        assert_eq!(inbound_text(None, b"hello\r\n").unwrap(), "hello");
        assert_eq!(inbound_text(Some("text/plain;charset=UTF-8"), "grüß".as_bytes()).unwrap(), "grüß");
        assert_eq!(inbound_text(Some("Text/Plain; charset=\"us-ascii\""), b"hi").unwrap(), "hi");
        assert_eq!(
            inbound_text(Some("text/plain;charset=iso-8859-1"), b"hi"),
            Err(BodyError::Charset("iso-8859-1".into()))
        );
        assert_eq!(inbound_text(Some("text/html"), b"<b>hi</b>"), Err(BodyError::MediaType("text/html".into())));
        assert_eq!(inbound_text(Some("text/plain"), &[0xff, 0xfe]), Err(BodyError::Malformed("text is not UTF-8")));
        assert_eq!(inbound_text(Some("text/plain"), b" \r\n"), Err(BodyError::Empty));
        assert_eq!(inbound_text(None, &vec![b'a'; MAX_BODY + 1]), Err(BodyError::TooLarge));
        assert_eq!(BodyError::TooLarge.status().0, 413);
        assert_eq!(BodyError::MediaType(String::new()).status().0, 415);
    }

    #[test]
    fn cpim_is_unwrapped() {
        let body = b"From: Alice <im:alice@example.com>\r\nTo: <im:bob@example.com>\r\n\
                     DateTime: 2026-12-01T10:00:00Z\r\n\r\nContent-Type: text/plain;charset=utf-8\r\n\
                     Content-Length: 5\r\n\r\nhello";
        assert_eq!(inbound_text(Some("message/cpim"), body).unwrap(), "hello");
        let inner = cpim_inner(body).unwrap();
        assert_eq!(inner.from.as_deref(), Some("Alice <im:alice@example.com>"));
        // Bare LF line ends (seen from some clients) work too.
        let lf = b"From: <im:a@b>\n\nContent-Type: text/plain\n\nhi there";
        assert_eq!(inbound_text(Some("Message/CPIM"), lf).unwrap(), "hi there");
        let html = b"From: <im:a@b>\r\n\r\nContent-Type: text/html\r\n\r\n<p>x</p>";
        assert_eq!(inbound_text(Some("message/cpim"), html), Err(BodyError::MediaType("text/html".into())));
        assert!(matches!(inbound_text(Some("message/cpim"), b"no blank line"), Err(BodyError::Malformed(_))));
        assert!(matches!(
            inbound_text(Some("message/cpim"), b"bad header\r\n\r\nx\r\n\r\ny"),
            Err(BodyError::Malformed(_))
        ));
    }

    #[test]
    fn senders_become_numbers_or_addresses_of_record() {
        let n = |s: &str| remote_id(&s.parse().unwrap());
        assert_eq!(n("<sip:+15551234567@gw.example;user=phone>;tag=1").as_deref(), Some("+15551234567"));
        assert_eq!(n("\"Bob\" <tel:+1-555-123-4567>").as_deref(), Some("+15551234567"));
        assert_eq!(n("<sip:Bob@Example.COM:5070;transport=tcp>").as_deref(), Some("sip:Bob@example.com"));
        assert_eq!(n("<sip:example.com>"), None);
        assert_eq!(n("<tel:1234;phone-context=example.com>"), None);
    }

    #[test]
    fn splitting_keeps_characters_whole() {
        assert_eq!(split("hello", 1200), ["hello"]);
        assert_eq!(split("", 1200), [""]);
        assert_eq!(split("aaaa bbbb", 6), ["aaaa ", "bbbb"]);
        let emoji = "😀".repeat(10); // 4 bytes each
        assert!(split(&emoji, 6).iter().all(|p| p.len() <= 6 && !p.is_empty()));
    }

    proptest! {
        #[test]
        fn split_pieces_rejoin_and_fit(s in "\\PC{0,400}", max in 4usize..64) {
            let pieces = split(&s, max);
            prop_assert_eq!(pieces.concat(), s.clone());
            prop_assert!(pieces.iter().all(|p| p.len() <= max));
            prop_assert!(s.is_empty() || pieces.iter().all(|p| !p.is_empty()));
        }

        #[test]
        fn bodies_never_panic(ct in "\\PC{0,30}", body in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = inbound_text(Some(&ct), &body);
            let _ = inbound_text(Some("message/cpim"), &body);
        }
    }
}
