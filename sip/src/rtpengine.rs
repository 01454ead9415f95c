//! The rtpengine ng control protocol client: `offer`, `answer`, `delete`, `query`, `list`, `ping`.
//!
//! A request is `<cookie> <bencoded dictionary>` in one UDP datagram; the reply is `<cookie> <dictionary>` with
//! `result` = `ok` | `pong` | `error` (with `error-reason`) | `load limit`. rtpengine keeps the replies of
//! recent cookies, so a request whose reply was lost is retransmitted with the **same** cookie and is
//! executed once. One socket serves every request of a client; a reader task hands each reply to the request
//! that waits for its cookie.
//!
//! The media legs are described by [`Leg`]: [`Leg::webrtc`] (ICE, DTLS-SRTP, rtcp-mux, as browsers and Matrix
//! clients need) and [`Leg::plain_rtp`] / [`Leg::sdes_srtp`] (what SIP phones speak), with codecs to offer by
//! transcoding ([`Leg::transcode`]). The leg given to `offer` is what the *answerer* gets; the leg given to
//! `answer` is what the *offerer* gets back.

use crate::bencode::{self, Dict, Value};
use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::UdpSocket;
use tokio::sync::oneshot;

/// Why an ng command failed.
#[derive(Debug, thiserror::Error)]
pub enum NgError {
    /// The socket failed.
    #[error("ng socket: {0}")]
    Io(#[from] std::io::Error),
    /// No reply after every retransmission.
    #[error("rtpengine did not answer `{command}` within {waited:?}")]
    Timeout {
        /// The command.
        command: String,
        /// How long we waited in all.
        waited: Duration,
    },
    /// The reply was not bencode.
    #[error("undecodable ng reply: {0}")]
    Decode(#[from] bencode::DecodeError),
    /// The reply lacks a field the command needs, or has one of the wrong kind.
    #[error("ng reply to `{command}` lacks {field}")]
    Malformed {
        /// The command.
        command: String,
        /// The field.
        field: &'static str,
    },
    /// rtpengine refused the command.
    #[error("rtpengine refused `{command}`: {reason}")]
    Refused {
        /// The command.
        command: String,
        /// `error-reason`.
        reason: String,
    },
    /// rtpengine is over its configured load limit.
    #[error("rtpengine is over its load limit")]
    LoadLimit,
    /// The client was shut down.
    #[error("ng client closed")]
    Closed,
}

/// ng result.
pub type Result<T, E = NgError> = std::result::Result<T, E>;

/// How one side of a call is to be presented: the ng options of an `offer` or `answer`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Leg {
    options: Dict,
}

impl Leg {
    /// A WebRTC leg: ICE forced, DTLS-SRTP (`UDP/TLS/RTP/SAVPF`), rtcp-mux offered and required, no SDES, a
    /// `mid` generated — what browsers and Matrix clients need.
    pub fn webrtc() -> Self {
        Self::default()
            .set("transport-protocol", "UDP/TLS/RTP/SAVPF")
            .set("ICE", "force")
            .set("DTLS", "passive")
            .set("rtcp-mux", vec!["offer", "require"])
            .set("SDES", vec!["off"])
            .flag("generate-mid")
    }

    /// A plain RTP leg (`RTP/AVP`): no ICE, no DTLS, RTCP on its own port.
    pub fn plain_rtp() -> Self {
        Self::default()
            .set("transport-protocol", "RTP/AVP")
            .set("ICE", "remove")
            .set("DTLS", "off")
            .set("rtcp-mux", vec!["demux"])
    }

    /// An SDES-SRTP leg (`RTP/SAVP`, keys in `a=crypto`): for phones that offer SRTP without DTLS.
    pub fn sdes_srtp() -> Self {
        Self::plain_rtp().set("transport-protocol", "RTP/SAVP")
    }

    /// The SIP-side leg that matches what a phone offered: SDES-SRTP when its SDP offers `RTP/SAVP` with
    /// `a=crypto`, plain RTP otherwise.
    pub fn sip_like(sdp: &str) -> Self {
        let offers_sdes = sdp.lines().any(|l| l.starts_with("m=") && l.split_whitespace().nth(2) == Some("RTP/SAVP"))
            && sdp.lines().any(|l| l.starts_with("a=crypto:"));
        if offers_sdes { Self::sdes_srtp() } else { Self::plain_rtp() }
    }

    /// Adds codecs this leg is offered through transcoding (e.g. `opus` toward WebRTC, `PCMU`, `PCMA` toward a
    /// G.711 phone); rtpengine transcodes when the other side lacks them.
    pub fn transcode(mut self, codecs: &[&str]) -> Self {
        let mut codec = match self.options.remove(b"codec".as_slice()) {
            Some(Value::Dict(d)) => d,
            _ => Dict::new(),
        };
        let mut list = match codec.remove(b"transcode".as_slice()) {
            Some(Value::List(l)) => l,
            _ => Vec::new(),
        };
        list.extend(codecs.iter().map(Value::str));
        codec.insert(b"transcode".to_vec(), Value::List(list));
        self.options.insert(b"codec".to_vec(), Value::Dict(codec));
        self
    }

    /// Sets an ng option (`"ICE"`, `"direction"`…), replacing any earlier value.
    pub fn set(mut self, key: &str, value: impl Into<Value>) -> Self {
        self.options.insert(key.as_bytes().to_vec(), value.into());
        self
    }

    /// Adds a word to the `flags` list (`"trust-address"`, `"strict-source"`…).
    pub fn flag(mut self, flag: &str) -> Self {
        match self.options.entry(b"flags".to_vec()).or_insert_with(|| Value::List(Vec::new())) {
            Value::List(l) => l.push(Value::str(flag)),
            other => *other = Value::List(vec![Value::str(flag)]),
        }
        self
    }

    /// The ng options.
    pub fn options(&self) -> &Dict {
        &self.options
    }
}

/// Packet counters of one party (tag) of a call, as `query` reports them: what rtpengine **received** from
/// that party's endpoint.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TagStats {
    /// RTP packets (and, on an rtcp-muxed stream, RTCP too).
    pub rtp_packets: u64,
    /// RTCP packets on a separate RTCP stream.
    pub rtcp_packets: u64,
    /// Bytes over all streams.
    pub bytes: u64,
    /// Packets rtpengine could not handle (bad SRTP, unknown payload…).
    pub errors: u64,
}

/// The `query` of one call.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CallQuery {
    /// Counters per tag (the From tag of the offerer, the To tag of the answerer).
    pub tags: BTreeMap<String, TagStats>,
}

/// Timing of an [`NgClient`].
#[derive(Debug, Clone, Copy)]
pub struct NgTiming {
    /// Wait for a reply this long before retransmitting.
    pub retransmit_after: Duration,
    /// Retransmissions after the first send.
    pub retransmissions: u32,
}

impl Default for NgTiming {
    fn default() -> Self {
        Self { retransmit_after: Duration::from_millis(500), retransmissions: 3 }
    }
}

type Waiters = Mutex<HashMap<String, oneshot::Sender<Vec<u8>>>>;

/// A client of one rtpengine's ng port. Cheap to clone; every clone shares one socket.
#[derive(Debug, Clone)]
pub struct NgClient {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    socket: Arc<UdpSocket>,
    server: SocketAddr,
    waiters: Arc<Waiters>,
    cookie_prefix: String,
    next: AtomicU64,
    timing: NgTiming,
    reader: tokio::task::JoinHandle<()>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

impl NgClient {
    /// A client of the ng port at `server`, from an ephemeral local port.
    pub async fn new(server: SocketAddr, timing: NgTiming, rng: &mut impl rand::Rng) -> Result<Self> {
        let bind: SocketAddr = if server.is_ipv4() { "0.0.0.0:0" } else { "[::]:0" }.parse().expect("literal");
        let socket = Arc::new(UdpSocket::bind(bind).await?);
        socket.connect(server).await?;
        let waiters: Arc<Waiters> = Arc::default();
        let reader = tokio::spawn(read_replies(socket.clone(), waiters.clone()));
        // Cookies must not repeat across restarts of the bridge while rtpengine still caches old replies.
        let cookie_prefix = format!("{:016x}", rng.random::<u64>());
        Ok(Self {
            inner: Arc::new(Inner { socket, server, waiters, cookie_prefix, next: AtomicU64::new(0), timing, reader }),
        })
    }

    /// The rtpengine this client talks to.
    pub fn server(&self) -> SocketAddr {
        self.inner.server
    }

    /// `ping` → `pong`.
    pub async fn ping(&self) -> Result<()> {
        let reply = self.raw("ping", Dict::new()).await?;
        match reply.get(b"result".as_slice()).and_then(Value::as_str) {
            Some("pong") => Ok(()),
            _ => Err(NgError::Malformed { command: "ping".into(), field: "result: pong" }),
        }
    }

    /// `offer`: the offerer's SDP (`from_tag`) in, the SDP for the answerer out, shaped by `answerer_leg`.
    pub async fn offer(&self, call_id: &str, from_tag: &str, sdp: &str, answerer_leg: &Leg) -> Result<String> {
        let mut args = answerer_leg.options.clone();
        args.insert(b"call-id".to_vec(), Value::str(call_id));
        args.insert(b"from-tag".to_vec(), Value::str(from_tag));
        args.insert(b"sdp".to_vec(), Value::str(sdp));
        let reply = self.command("offer", args).await?;
        sdp_of("offer", &reply)
    }

    /// `answer`: the answerer's SDP (`to_tag`) in, the SDP for the offerer out, shaped by `offerer_leg`.
    pub async fn answer(
        &self,
        call_id: &str,
        from_tag: &str,
        to_tag: &str,
        sdp: &str,
        offerer_leg: &Leg,
    ) -> Result<String> {
        let mut args = offerer_leg.options.clone();
        args.insert(b"call-id".to_vec(), Value::str(call_id));
        args.insert(b"from-tag".to_vec(), Value::str(from_tag));
        args.insert(b"to-tag".to_vec(), Value::str(to_tag));
        args.insert(b"sdp".to_vec(), Value::str(sdp));
        let reply = self.command("answer", args).await?;
        sdp_of("answer", &reply)
    }

    /// `delete` of a whole call at once (no delete delay). Deleting a call rtpengine does not know is not an
    /// error: after a crash the caller cannot know which deletes were done.
    pub async fn delete(&self, call_id: &str) -> Result<()> {
        let args = bencode::dict([("call-id", Value::str(call_id)), ("delete-delay", Value::Int(0))]);
        self.command("delete", args).await.map(drop)
    }

    /// `query`: per-tag packet counters of a call.
    pub async fn query(&self, call_id: &str) -> Result<CallQuery> {
        let reply = self.command("query", bencode::dict([("call-id", Value::str(call_id))])).await?;
        parse_query(&reply)
    }

    /// `list`: the Call-IDs rtpengine holds, at most `limit` of them.
    pub async fn list(&self, limit: u32) -> Result<Vec<String>> {
        let reply = self.command("list", bencode::dict([("limit", Value::Int(i64::from(limit)))])).await?;
        let malformed = || NgError::Malformed { command: "list".into(), field: "calls" };
        let calls = reply.get(b"calls".as_slice()).and_then(Value::as_list).ok_or_else(malformed)?;
        calls.iter().map(|c| c.as_str().map(str::to_owned).ok_or_else(malformed)).collect()
    }

    /// Runs `command` and checks `result` is `ok`.
    pub async fn command(&self, command: &str, args: Dict) -> Result<Dict> {
        let reply = self.raw(command, args).await?;
        match reply.get(b"result".as_slice()).and_then(Value::as_str) {
            Some("ok") => Ok(reply),
            Some("load limit") => Err(NgError::LoadLimit),
            Some("error") => Err(NgError::Refused {
                command: command.into(),
                reason: reply
                    .get(b"error-reason".as_slice())
                    .and_then(Value::as_str)
                    .unwrap_or("(no reason given)")
                    .to_owned(),
            }),
            _ => Err(NgError::Malformed { command: command.into(), field: "result" }),
        }
    }

    /// Sends `command` with `args` and returns the reply dictionary whatever its `result`.
    pub async fn raw(&self, command: &str, mut args: Dict) -> Result<Dict> {
        args.insert(b"command".to_vec(), Value::str(command));
        let n = self.inner.next.fetch_add(1, Ordering::Relaxed);
        let cookie = format!("{}_{n}", self.inner.cookie_prefix);
        let mut datagram = Vec::with_capacity(256);
        datagram.extend_from_slice(cookie.as_bytes());
        datagram.push(b' ');
        bencode::encode_into(&Value::Dict(args), &mut datagram);

        let (tx, mut rx) = oneshot::channel();
        self.inner.waiters.lock().expect("not poisoned").insert(cookie.clone(), tx);
        let _forget = Forget { waiters: &self.inner.waiters, cookie: &cookie };
        let timing = self.inner.timing;
        for _ in 0..=timing.retransmissions {
            self.inner.socket.send(&datagram).await?;
            match tokio::time::timeout(timing.retransmit_after, &mut rx).await {
                Ok(Ok(body)) => {
                    return match bencode::decode(&body)? {
                        Value::Dict(d) => Ok(d),
                        _ => Err(NgError::Malformed { command: command.into(), field: "a dictionary" }),
                    };
                }
                Ok(Err(_)) => return Err(NgError::Closed),
                Err(_elapsed) => continue,
            }
        }
        Err(NgError::Timeout {
            command: command.into(),
            waited: timing.retransmit_after * (timing.retransmissions + 1),
        })
    }
}

/// Removes a request's waiter however the request ends (reply, timeout, cancellation).
struct Forget<'a> {
    waiters: &'a Waiters,
    cookie: &'a str,
}

impl Drop for Forget<'_> {
    fn drop(&mut self) {
        self.waiters.lock().expect("not poisoned").remove(self.cookie);
    }
}

async fn read_replies(socket: Arc<UdpSocket>, waiters: Arc<Waiters>) {
    let mut buf = vec![0u8; 65535];
    loop {
        let n = match socket.recv(&mut buf).await {
            Ok(n) => n,
            // ICMP port unreachable shows up as ECONNREFUSED on a connected socket: rtpengine is not (yet) up.
            // The request retransmits and times out on its own.
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => continue,
            Err(e) => {
                tracing::warn!(error = %e, "ng socket read failed; stopping the reader");
                return;
            }
        };
        let Some((cookie, body)) = split_reply(&buf[..n]) else {
            tracing::debug!(len = n, "ng datagram without a cookie ignored");
            continue;
        };
        let waiter = waiters.lock().expect("not poisoned").remove(cookie);
        match waiter {
            Some(tx) => {
                let _ = tx.send(body.to_vec());
            }
            // A late duplicate (a retransmitted request answered twice) or a reply to a request given up on.
            None => tracing::debug!(cookie, "ng reply nobody waits for"),
        }
    }
}

fn split_reply(datagram: &[u8]) -> Option<(&str, &[u8])> {
    let space = datagram.iter().position(|&b| b == b' ')?;
    let cookie = std::str::from_utf8(&datagram[..space]).ok()?;
    Some((cookie, &datagram[space + 1..]))
}

fn sdp_of(command: &str, reply: &Dict) -> Result<String> {
    reply
        .get(b"sdp".as_slice())
        .and_then(Value::as_str)
        .map(str::to_owned)
        .ok_or_else(|| NgError::Malformed { command: command.into(), field: "sdp" })
}

/// Reads the per-tag counters from a `query` reply: `tags.<tag>.medias[].streams[].stats`.
pub fn parse_query(reply: &Dict) -> Result<CallQuery> {
    let malformed = |field| NgError::Malformed { command: "query".into(), field };
    let tags = reply.get(b"tags".as_slice()).and_then(Value::as_dict).ok_or_else(|| malformed("tags"))?;
    let mut out = CallQuery::default();
    for (tag, info) in tags {
        let mut stats = TagStats::default();
        let medias = info.get("medias").and_then(Value::as_list).unwrap_or_default();
        for stream in medias.iter().flat_map(|m| m.get("streams").and_then(Value::as_list).unwrap_or_default()) {
            let Some(s) = stream.get("stats") else { continue };
            let count = |k: &str| s.get(k).and_then(Value::as_int).and_then(|i| u64::try_from(i).ok()).unwrap_or(0);
            let flags: Vec<&str> = stream
                .get("flags")
                .and_then(Value::as_list)
                .unwrap_or_default()
                .iter()
                .filter_map(Value::as_str)
                .collect();
            if flags.contains(&"RTP") {
                stats.rtp_packets += count("packets");
            } else if flags.contains(&"RTCP") {
                stats.rtcp_packets += count("packets");
            }
            stats.bytes += count("bytes");
            stats.errors += count("errors");
        }
        out.tags.insert(String::from_utf8_lossy(tag).into_owned(), stats);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn webrtc_and_plain_legs_carry_the_documented_flags() {
        let w = Value::Dict(Leg::webrtc().options);
        assert_eq!(w.get("ICE").and_then(Value::as_str), Some("force"));
        assert_eq!(w.get("transport-protocol").and_then(Value::as_str), Some("UDP/TLS/RTP/SAVPF"));
        assert_eq!(w.get("rtcp-mux"), Some(&Value::from(vec!["offer", "require"])));
        assert_eq!(w.get("flags"), Some(&Value::from(vec!["generate-mid"])));
        let p = Value::Dict(Leg::plain_rtp().transcode(&["PCMU"]).transcode(&["PCMA"]).options);
        assert_eq!(p.get("ICE").and_then(Value::as_str), Some("remove"));
        assert_eq!(p.get("rtcp-mux"), Some(&Value::from(vec!["demux"])));
        assert_eq!(p.get("codec").and_then(|c| c.get("transcode")), Some(&Value::from(vec!["PCMU", "PCMA"])));
    }

    #[test]
    fn the_sip_leg_follows_the_phone_offer() {
        let plain = "v=0\r\nm=audio 4000 RTP/AVP 0\r\n";
        let sdes = "v=0\r\nm=audio 4000 RTP/SAVP 0\r\na=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:abc\r\n";
        let savp_without_keys = "v=0\r\nm=audio 4000 RTP/SAVP 0\r\n";
        assert_eq!(Leg::sip_like(plain), Leg::plain_rtp());
        assert_eq!(Leg::sip_like(sdes), Leg::sdes_srtp());
        assert_eq!(Leg::sip_like(savp_without_keys), Leg::plain_rtp());
    }

    #[test]
    fn flags_accumulate() {
        let l = Leg::default().flag("a").flag("b");
        assert_eq!(Value::Dict(l.options).get("flags"), Some(&Value::from(vec!["a", "b"])));
    }

    #[test]
    fn query_counters_are_summed_per_tag() {
        // The shape rtpengine 10.5 answers (trimmed), written in its key order and decoded.
        let stream = |flags: Vec<&str>, packets: i64, bytes: i64, errors: i64| {
            Value::Dict(bencode::dict([
                ("flags", Value::from(flags)),
                (
                    "stats",
                    Value::Dict(bencode::dict([
                        ("packets", Value::Int(packets)),
                        ("bytes", Value::Int(bytes)),
                        ("errors", Value::Int(errors)),
                    ])),
                ),
            ]))
        };
        let tag = |streams: Vec<Value>| {
            Value::Dict(bencode::dict([(
                "medias",
                Value::List(vec![Value::Dict(bencode::dict([("streams", Value::List(streams))]))]),
            )]))
        };
        let reply = Value::Dict(bencode::dict([
            (
                "tags",
                Value::Dict(bencode::dict([
                    ("ft", tag(vec![stream(vec!["RTP"], 12, 480, 0), stream(vec!["RTCP"], 2, 100, 1)])),
                    ("tt", tag(vec![stream(vec!["RTP", "RTCP"], 7, 900, 0)])),
                ])),
            ),
            ("result", Value::str("ok")),
        ]));
        let reply = bencode::decode(&bencode::encode(&reply)).unwrap();
        let q = parse_query(reply.as_dict().unwrap()).unwrap();
        assert_eq!(q.tags["ft"], TagStats { rtp_packets: 12, rtcp_packets: 2, bytes: 580, errors: 1 });
        assert_eq!(q.tags["tt"], TagStats { rtp_packets: 7, rtcp_packets: 0, bytes: 900, errors: 0 });
        assert!(matches!(parse_query(&Dict::new()), Err(NgError::Malformed { field: "tags", .. })));
    }

    #[test]
    fn replies_split_at_the_first_space() {
        assert_eq!(split_reply(b"abc_1 d6:result2:oke"), Some(("abc_1", b"d6:result2:oke".as_slice())));
        assert_eq!(split_reply(b"nospace"), None);
    }
}
