//! The little SDP (RFC 8866) the SIP side reads and writes itself: the direction of the audio stream (hold
//! and resume, RFC 3264 §8.4), the codecs offered, trickled ICE candidates folded into an offer, and the BUNDLE
//! group browsers insist on.
//! Everything else about the media — ICE, DTLS, SRTP, transcoding — is rtpengine's job.

/// The direction of a media stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// `a=sendrecv` (the default).
    SendRecv,
    /// `a=sendonly`: the sender put the other side on hold.
    SendOnly,
    /// `a=recvonly`.
    RecvOnly,
    /// `a=inactive`, or the old RFC 2543 hold `c=IN IP4 0.0.0.0`.
    Inactive,
}

impl Direction {
    /// Whether this direction means the sender holds the call.
    pub fn is_hold(self) -> bool {
        matches!(self, Direction::SendOnly | Direction::Inactive)
    }

    fn from_attr(line: &str) -> Option<Self> {
        match line.trim_end() {
            "a=sendrecv" => Some(Direction::SendRecv),
            "a=sendonly" => Some(Direction::SendOnly),
            "a=recvonly" => Some(Direction::RecvOnly),
            "a=inactive" => Some(Direction::Inactive),
            _ => None,
        }
    }
}

/// Lines of one media section (`m=` and what follows it up to the next `m=`).
fn media_sections(sdp: &str) -> (Vec<&str>, Vec<Vec<&str>>) {
    let mut session = Vec::new();
    let mut medias: Vec<Vec<&str>> = Vec::new();
    for line in sdp.lines().map(|l| l.trim_end_matches('\r')).filter(|l| !l.is_empty()) {
        if line.starts_with("m=") {
            medias.push(vec![line]);
        } else if let Some(m) = medias.last_mut() {
            m.push(line);
        } else {
            session.push(line);
        }
    }
    (session, medias)
}

/// The direction of the first audio stream: its own attribute, else the session's, else `sendrecv`; a
/// connection address of `0.0.0.0` counts as inactive. `None` when there is no audio stream.
pub fn audio_direction(sdp: &str) -> Option<Direction> {
    let (session, medias) = media_sections(sdp);
    let audio = medias.iter().find(|m| m[0].starts_with("m=audio "))?;
    let zero = |lines: &[&str]| lines.iter().any(|l| l.trim_end() == "c=IN IP4 0.0.0.0");
    let has_own_c = audio.iter().any(|l| l.starts_with("c="));
    if zero(audio) || (!has_own_c && zero(&session)) {
        return Some(Direction::Inactive);
    }
    let own = audio.iter().find_map(|l| Direction::from_attr(l));
    let sess = session.iter().find_map(|l| Direction::from_attr(l));
    Some(own.or(sess).unwrap_or(Direction::SendRecv))
}

/// The codec names of the first audio stream in `m=` order, upper-cased (`OPUS`, `PCMU`, `TELEPHONE-EVENT`);
/// static payload types without `a=rtpmap` get their RFC 3551 names.
pub fn audio_codecs(sdp: &str) -> Vec<String> {
    let (_, medias) = media_sections(sdp);
    let Some(audio) = medias.iter().find(|m| m[0].starts_with("m=audio ")) else { return Vec::new() };
    let payloads: Vec<&str> = audio[0].split_whitespace().skip(3).collect();
    payloads
        .iter()
        .filter_map(|pt| {
            let mapped = audio.iter().find_map(|l| {
                let rest = l.strip_prefix("a=rtpmap:")?;
                let (num, enc) = rest.split_once(' ')?;
                (num == *pt).then(|| enc.split('/').next().unwrap_or(enc).to_ascii_uppercase())
            });
            mapped.or_else(|| {
                match *pt {
                    "0" => Some("PCMU"),
                    "8" => Some("PCMA"),
                    "9" => Some("G722"),
                    "18" => Some("G729"),
                    _ => None,
                }
                .map(str::to_owned)
            })
        })
        .collect()
}

/// Whether any media section carries an `a=candidate` line.
pub fn has_candidates(sdp: &str) -> bool {
    sdp.lines().any(|l| l.starts_with("a=candidate:"))
}

/// A trickled ICE candidate (`m.call.candidates`, RTCIceCandidate): the `candidate:` line and which media
/// section it belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    /// `candidate:…` (without the `a=`); empty for an end-of-candidates marker.
    pub candidate: String,
    /// The `a=mid` of its media section.
    pub sdp_mid: Option<String>,
    /// The index of its media section.
    pub sdp_m_line_index: Option<usize>,
}

/// `sdp` with `candidates` added as `a=candidate` lines to their media sections (matched by mid, else by
/// index; unmatched candidates go to the first section), and `a=end-of-candidates` where an empty candidate
/// marks the end. Lines are CRLF-terminated.
pub fn add_candidates(sdp: &str, candidates: &[Candidate]) -> String {
    let (session, medias) = media_sections(sdp);
    let mids: Vec<Option<&str>> =
        medias.iter().map(|m| m.iter().find_map(|l| l.strip_prefix("a=mid:").map(str::trim))).collect();
    let mut extra: Vec<Vec<String>> = vec![Vec::new(); medias.len()];
    for c in candidates {
        let by_mid = c.sdp_mid.as_deref().and_then(|mid| mids.iter().position(|m| *m == Some(mid)));
        let index = by_mid.or(c.sdp_m_line_index.filter(|i| *i < medias.len())).unwrap_or(0);
        let Some(slot) = extra.get_mut(index) else { continue };
        let line = if c.candidate.trim().is_empty() {
            "a=end-of-candidates".to_owned()
        } else {
            format!("a={}", c.candidate.trim().trim_start_matches("a="))
        };
        if !slot.contains(&line) {
            slot.push(line);
        }
    }
    let mut out = String::with_capacity(sdp.len() + 128 * candidates.len());
    for l in session {
        out.push_str(l);
        out.push_str("\r\n");
    }
    for (m, add) in medias.iter().zip(extra) {
        for l in m {
            out.push_str(l);
            out.push_str("\r\n");
        }
        for l in add {
            if !m.contains(&l.as_str()) {
                out.push_str(&l);
                out.push_str("\r\n");
            }
        }
    }
    out
}

/// Whether `sdp` groups media sections with `a=group:BUNDLE` (RFC 8843), as browsers' offers do.
pub fn has_bundle_group(sdp: &str) -> bool {
    media_sections(sdp).0.iter().any(|l| l.starts_with("a=group:BUNDLE"))
}

/// `sdp` with a session-level `a=group:BUNDLE` of its media sections' `mid`s when it has none and they all
/// share one port (as one audio section trivially does). rtpengine (10.5) writes WebRTC SDP without the group,
/// and a browser whose peer connection uses `bundlePolicy: "max-bundle"` — matrix-js-sdk's, so Element Web's —
/// refuses such an offer ("max-bundle configured but session description has no BUNDLE group") and such an
/// answer to its own bundled offer ("Answer cannot remove m= section with mid='0' from already-established
/// BUNDLE group"). Unchanged when a section has no `mid`.
pub fn with_bundle_group(sdp: &str) -> String {
    let (session, medias) = media_sections(sdp);
    let mids: Option<Vec<&str>> =
        medias.iter().map(|m| m.iter().find_map(|l| l.strip_prefix("a=mid:").map(str::trim))).collect();
    let ports: Vec<Option<&str>> = medias.iter().map(|m| m[0].split_whitespace().nth(1)).collect();
    let Some(mids) = mids.filter(|m| !m.is_empty()) else { return sdp.to_owned() };
    if has_bundle_group(sdp) || ports.windows(2).any(|w| w[0] != w[1]) {
        return sdp.to_owned();
    }
    let group = format!("a=group:BUNDLE {}", mids.join(" "));
    // Session attributes follow the timing (`t=`, then any `r=`/`z=`).
    let at = session.iter().rposition(|l| l.starts_with("t=") || l.starts_with("r=") || l.starts_with("z="));
    let at = at.map_or(session.len(), |i| i + 1);
    let mut out = String::with_capacity(sdp.len() + group.len() + 2);
    for (i, l) in session.iter().enumerate() {
        if i == at {
            out.push_str(&group);
            out.push_str("\r\n");
        }
        out.push_str(l);
        out.push_str("\r\n");
    }
    if at == session.len() {
        out.push_str(&group);
        out.push_str("\r\n");
    }
    for l in medias.iter().flatten() {
        out.push_str(l);
        out.push_str("\r\n");
    }
    out
}

/// `sdp` with the direction of every media section set to `dir` (for re-INVITEs that hold or resume).
pub fn with_direction(sdp: &str, dir: Direction) -> String {
    let attr = match dir {
        Direction::SendRecv => "a=sendrecv",
        Direction::SendOnly => "a=sendonly",
        Direction::RecvOnly => "a=recvonly",
        Direction::Inactive => "a=inactive",
    };
    let (session, medias) = media_sections(sdp);
    let mut out = String::new();
    for l in session.iter().filter(|l| Direction::from_attr(l).is_none()) {
        out.push_str(l);
        out.push_str("\r\n");
    }
    for m in medias {
        for l in m.iter().filter(|l| Direction::from_attr(l).is_none()) {
            out.push_str(l);
            out.push_str("\r\n");
        }
        out.push_str(attr);
        out.push_str("\r\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const PHONE: &str = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
                         m=audio 4000 RTP/AVP 0 8 101\r\na=rtpmap:101 telephone-event/8000\r\n";

    #[test]
    fn directions_and_old_style_hold() {
        assert_eq!(audio_direction(PHONE), Some(Direction::SendRecv));
        assert_eq!(audio_direction(&format!("{PHONE}a=sendonly\r\n")), Some(Direction::SendOnly));
        assert!(audio_direction(&format!("{PHONE}a=inactive\r\n")).unwrap().is_hold());
        assert_eq!(audio_direction(&PHONE.replace("127.0.0.1\r\nt=", "0.0.0.0\r\nt=")), Some(Direction::Inactive));
        let session_level = PHONE.replace("t=0 0\r\n", "t=0 0\r\na=recvonly\r\n");
        assert_eq!(audio_direction(&session_level), Some(Direction::RecvOnly));
        assert_eq!(audio_direction("v=0\r\nm=video 1 RTP/AVP 96\r\n"), None);
        let held = with_direction(PHONE, Direction::SendOnly);
        assert_eq!(audio_direction(&held), Some(Direction::SendOnly));
        assert_eq!(audio_direction(&with_direction(&held, Direction::SendRecv)), Some(Direction::SendRecv));
    }

    #[test]
    fn a_bundle_group_is_added_to_webrtc_sdp_that_lacks_one() {
        let rtpengine = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
                         a=msid-semantic: WMS x\r\nm=audio 30000 UDP/TLS/RTP/SAVPF 111\r\na=mid:0\r\na=rtcp-mux\r\n";
        let bundled = with_bundle_group(rtpengine);
        assert!(has_bundle_group(&bundled) && !has_bundle_group(rtpengine));
        assert_eq!(
            bundled,
            rtpengine.replace("t=0 0\r\n", "t=0 0\r\na=group:BUNDLE 0\r\n"),
            "after the timing, before the other session attributes"
        );
        assert_eq!(with_bundle_group(&bundled), bundled, "a group is not added twice");
        // Two sections on two ports are not one transport; sections without a mid cannot be named.
        let two = format!("{rtpengine}m=audio 30002 UDP/TLS/RTP/SAVPF 111\r\na=mid:1\r\n");
        assert_eq!(with_bundle_group(&two), two);
        assert_eq!(with_bundle_group(PHONE), PHONE);
        let same_port = two.replace("m=audio 30002", "m=audio 30000");
        assert!(with_bundle_group(&same_port).contains("a=group:BUNDLE 0 1\r\n"));
        // Without a timing line the group ends the session part.
        assert!(
            with_bundle_group("v=0\r\nm=audio 1 RTP/AVP 0\r\na=mid:a\r\n").starts_with("v=0\r\na=group:BUNDLE a\r\nm=")
        );
    }

    #[test]
    fn codecs_by_name_including_static_payloads() {
        assert_eq!(audio_codecs(PHONE), ["PCMU", "PCMA", "TELEPHONE-EVENT"]);
        let webrtc = "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111 0\r\na=rtpmap:111 opus/48000/2\r\n";
        assert_eq!(audio_codecs(webrtc), ["OPUS", "PCMU"]);
        assert!(audio_codecs("v=0\r\n").is_empty());
    }

    #[test]
    fn trickled_candidates_land_in_their_section() {
        let offer = "v=0\r\ns=-\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\n\
                     a=mid:1\r\n";
        let c = |cand: &str, mid: Option<&str>, idx: Option<usize>| Candidate {
            candidate: cand.into(),
            sdp_mid: mid.map(Into::into),
            sdp_m_line_index: idx,
        };
        let out = add_candidates(
            offer,
            &[
                c("candidate:1 1 udp 2122260223 127.0.0.1 50000 typ host", Some("0"), None),
                c("candidate:2 1 udp 2122260223 127.0.0.1 50002 typ host", None, Some(1)),
                c("candidate:1 1 udp 2122260223 127.0.0.1 50000 typ host", Some("0"), None),
                c("", Some("0"), None),
            ],
        );
        assert!(has_candidates(&out) && !has_candidates(offer));
        let audio = out.split("m=video").next().unwrap();
        assert_eq!(audio.matches("50000 typ host").count(), 1, "{out}");
        assert!(audio.contains("a=end-of-candidates"));
        assert!(out.split("m=video").nth(1).unwrap().contains("50002 typ host"));
    }

    proptest! {
        #[test]
        fn never_panics(s in "\\PC{0,200}") {
            let _ = audio_direction(&s);
            let _ = audio_codecs(&s);
            let _ = add_candidates(&s, &[Candidate { candidate: "candidate:x".into(), sdp_mid: None, sdp_m_line_index: Some(3) }]);
            let _ = with_direction(&s, Direction::Inactive);
        }
    }
}
