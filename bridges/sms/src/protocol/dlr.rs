//! Delivery receipts: a `deliver_sm` whose `esm_class` says it is a receipt, carrying the state of a message
//! sent earlier in TLVs (`receipted_message_id` 0x001E, `message_state` 0x0427, `network_error_code` 0x0423)
//! and/or in the text form of SMPP 3.4 Appendix B:
//! `id:IIIIIIIIII sub:SSS dlvrd:DDD submit date:YYMMDDhhmm done date:YYMMDDhhmm stat:DDDDDDD err:E text:…`.
//!
//! SMSCs differ: keys in any case, `submit_date` with an underscore, fields missing or reordered, the TLVs
//! without the text or the text without the TLVs, and a message id in hexadecimal in `submit_sm_resp` but
//! decimal in the receipt ([`id_candidates`]). The TLVs win over the text where both are present.

/// TLV tag of `receipted_message_id`.
pub const TAG_RECEIPTED_MESSAGE_ID: u16 = 0x001E;
/// TLV tag of `message_state`.
pub const TAG_MESSAGE_STATE: u16 = 0x0427;
/// TLV tag of `network_error_code`.
pub const TAG_NETWORK_ERROR_CODE: u16 = 0x0423;

/// What kind of receipt a `deliver_sm` is, from `esm_class` bits 5–2 (SMPP 3.4 §5.2.12).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReceiptKind {
    /// `0x04`: SMSC delivery receipt.
    SmscDelivery,
    /// `0x08`: SME delivery acknowledgement.
    SmeDeliveryAck,
    /// `0x10`: SME manual/user acknowledgement.
    SmeManualAck,
    /// `0x20`: intermediate delivery notification.
    Intermediate,
}

/// The receipt kind of `esm_class`, or `None` for an ordinary (mobile-originated) message.
pub fn receipt_kind(esm_class: u8) -> Option<ReceiptKind> {
    match (esm_class >> 2) & 0x0F {
        0b0001 => Some(ReceiptKind::SmscDelivery),
        0b0010 => Some(ReceiptKind::SmeDeliveryAck),
        0b0100 => Some(ReceiptKind::SmeManualAck),
        0b1000 => Some(ReceiptKind::Intermediate),
        _ => None,
    }
}

/// The state of a message (SMPP 5.0 §4.7.15 `message_state`; the text form's `stat`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryState {
    /// Waiting to be sent (SMPP 5.0).
    Scheduled,
    /// On its way.
    Enroute,
    /// Delivered to the handset.
    Delivered,
    /// Its validity period ran out before delivery.
    Expired,
    /// Deleted at the SMSC.
    Deleted,
    /// Cannot be delivered.
    Undeliverable,
    /// Read on the subscriber's behalf by customer service.
    Accepted,
    /// The SMSC does not know.
    Unknown,
    /// Refused.
    Rejected,
    /// Skipped (SMPP 5.0).
    Skipped,
}

/// What a state means for the person who sent the message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Not final yet.
    Pending,
    /// It arrived.
    Delivered,
    /// It will not arrive.
    Failed,
}

impl DeliveryState {
    /// The state of a `message_state` value.
    pub fn from_message_state(v: u8) -> Option<Self> {
        Some(match v {
            0 => Self::Scheduled,
            1 => Self::Enroute,
            2 => Self::Delivered,
            3 => Self::Expired,
            4 => Self::Deleted,
            5 => Self::Undeliverable,
            6 => Self::Accepted,
            7 => Self::Unknown,
            8 => Self::Rejected,
            9 => Self::Skipped,
            _ => return None,
        })
    }

    /// The state of a text receipt's `stat` (the seven-letter forms and the spelt-out ones some SMSCs send).
    pub fn from_stat(stat: &str) -> Option<Self> {
        let s = stat.trim().to_ascii_uppercase();
        Some(match s.as_str() {
            "SCHEDULED" | "SCHEDLD" => Self::Scheduled,
            "ENROUTE" => Self::Enroute,
            "DELIVRD" | "DELIVERED" => Self::Delivered,
            "EXPIRED" => Self::Expired,
            "DELETED" => Self::Deleted,
            "UNDELIV" | "UNDELIVERABLE" => Self::Undeliverable,
            "ACCEPTD" | "ACCEPTED" => Self::Accepted,
            "UNKNOWN" => Self::Unknown,
            "REJECTD" | "REJECTED" => Self::Rejected,
            "SKIPPED" => Self::Skipped,
            _ => return None,
        })
    }

    /// The stored name (`delivered`, `undeliverable`…).
    pub fn name(self) -> &'static str {
        match self {
            Self::Scheduled => "scheduled",
            Self::Enroute => "enroute",
            Self::Delivered => "delivered",
            Self::Expired => "expired",
            Self::Deleted => "deleted",
            Self::Undeliverable => "undeliverable",
            Self::Accepted => "accepted",
            Self::Unknown => "unknown",
            Self::Rejected => "rejected",
            Self::Skipped => "skipped",
        }
    }

    /// The state of a stored name.
    pub fn from_name(s: &str) -> Option<Self> {
        (0..=9).filter_map(Self::from_message_state).find(|st| st.name() == s)
    }

    /// What it means for the sender.
    pub fn outcome(self) -> Outcome {
        match self {
            Self::Scheduled | Self::Enroute => Outcome::Pending,
            Self::Delivered | Self::Accepted => Outcome::Delivered,
            Self::Expired | Self::Deleted | Self::Undeliverable | Self::Unknown | Self::Rejected | Self::Skipped => {
                Outcome::Failed
            }
        }
    }

    /// A short reason, for a failure shown to the sender.
    pub fn describe(self) -> &'static str {
        match self {
            Self::Scheduled => "scheduled",
            Self::Enroute => "on its way",
            Self::Delivered => "delivered",
            Self::Expired => "expired before the phone could be reached",
            Self::Deleted => "deleted by the carrier",
            Self::Undeliverable => "undeliverable",
            Self::Accepted => "accepted by the carrier on the recipient's behalf",
            Self::Unknown => "the carrier does not know its state",
            Self::Rejected => "rejected by the carrier",
            Self::Skipped => "skipped by the carrier",
        }
    }
}

/// `network_error_code`: the network type (1 ANSI-136, 2 IS-95, 3 GSM, …) and its error code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct NetworkError {
    /// The network type.
    pub network: u8,
    /// The error code in that network.
    pub code: u16,
}

/// A delivery receipt, read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Receipt {
    /// The SMSC's id of the message it is about (as the receipt spells it).
    pub message_id: String,
    /// Its state.
    pub state: DeliveryState,
    /// The text form's `err` field, when present and not all zeros.
    pub error: Option<String>,
    /// The `network_error_code` TLV.
    pub network_error: Option<NetworkError>,
}

/// A receipt that cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DlrError {
    /// Neither the TLV nor the text names the message.
    #[error("the receipt names no message id")]
    NoId,
    /// Neither the TLV nor the text gives a state this bridge knows.
    #[error("the receipt has no known state (stat {0:?})")]
    NoState(Option<String>),
}

/// The fields of a text receipt (only those this bridge uses; keys matched in any case).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TextFields<'a> {
    /// `id:`.
    pub id: Option<&'a str>,
    /// `stat:`.
    pub stat: Option<&'a str>,
    /// `err:`.
    pub err: Option<&'a str>,
    /// `text:` (the rest of the message).
    pub text: Option<&'a str>,
}

/// Keys, longest first where one begins another; values run to the next space (`text:` to the end).
const KEYS: [&str; 10] =
    ["submit date:", "submit_date:", "done date:", "done_date:", "id:", "sub:", "dlvrd:", "stat:", "err:", "text:"];

/// Reads the text form (see the module doc).
pub fn parse_text(s: &str) -> TextFields<'_> {
    let b = s.as_bytes();
    let mut f = TextFields::default();
    let mut i = 0;
    while i < b.len() {
        if b[i].is_ascii_whitespace() {
            i += 1;
            continue;
        }
        let key = KEYS.iter().find(|k| b.len() - i >= k.len() && b[i..i + k.len()].eq_ignore_ascii_case(k.as_bytes()));
        let Some(key) = key else {
            // Not a key: skip the word.
            while i < b.len() && !b[i].is_ascii_whitespace() {
                i += 1;
            }
            continue;
        };
        let start = i + key.len();
        let end = if *key == "text:" {
            b.len()
        } else {
            (start..b.len()).find(|&j| b[j].is_ascii_whitespace()).unwrap_or(b.len())
        };
        let value = &s[start..end];
        let slot = match *key {
            "id:" => Some(&mut f.id),
            "stat:" => Some(&mut f.stat),
            "err:" => Some(&mut f.err),
            "text:" => Some(&mut f.text),
            _ => None,
        };
        // The first occurrence counts: a later one may be inside free text.
        if let Some(slot) = slot
            && slot.is_none()
        {
            *slot = Some(value);
        }
        i = end;
    }
    f
}

/// Reads a receipt from its TLV values (raw octets, when present) and its `short_message`.
pub fn parse(
    receipted_message_id: Option<&[u8]>,
    message_state: Option<&[u8]>,
    network_error_code: Option<&[u8]>,
    short_message: &[u8],
) -> Result<Receipt, DlrError> {
    let text: String = short_message.iter().map(|&b| if b.is_ascii() { b as char } else { '?' }).collect();
    let fields = parse_text(&text);
    let tlv_id = receipted_message_id.map(|v| {
        let v = v.split(|&b| b == 0).next().unwrap_or_default();
        String::from_utf8_lossy(v).trim().to_owned()
    });
    let message_id = tlv_id
        .filter(|id| !id.is_empty())
        .or_else(|| fields.id.map(str::to_owned).filter(|id| !id.is_empty()))
        .ok_or(DlrError::NoId)?;
    let tlv_state = message_state.and_then(|v| v.first().copied()).and_then(DeliveryState::from_message_state);
    let state = tlv_state
        .or_else(|| fields.stat.and_then(DeliveryState::from_stat))
        .ok_or_else(|| DlrError::NoState(fields.stat.map(str::to_owned)))?;
    let error = fields.err.filter(|e| !e.is_empty() && e.bytes().any(|c| c != b'0')).map(str::to_owned);
    let network_error = match network_error_code {
        Some(&[network, hi, lo]) => Some(NetworkError { network, code: u16::from_be_bytes([hi, lo]) }),
        _ => None,
    };
    Ok(Receipt { message_id, state, error, network_error })
}

/// The spellings under which an SMSC may name one message id: as given (lower-cased), without leading zeros,
/// and — for SMSCs that answer `submit_sm` in hexadecimal and report in decimal, or the other way round — the
/// number in the other base. Look a receipt's id up under each; store submitted ids lower-cased.
pub fn id_candidates(id: &str) -> Vec<String> {
    let id = id.trim().to_ascii_lowercase();
    let mut out = vec![id.clone()];
    let mut add = |s: String| {
        if !s.is_empty() && !out.contains(&s) {
            out.push(s);
        }
    };
    let stripped = id.trim_start_matches('0');
    add(stripped.to_owned());
    if !id.is_empty() && id.len() <= 32 {
        if id.bytes().all(|c| c.is_ascii_digit())
            && let Ok(n) = id.parse::<u128>()
        {
            add(format!("{n:x}"));
        }
        if id.bytes().all(|c| c.is_ascii_hexdigit())
            && let Ok(n) = u128::from_str_radix(&id, 16)
        {
            add(n.to_string());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const APPENDIX_B: &str =
        "id:0123456789 sub:001 dlvrd:001 submit date:2501011200 done date:2501011201 stat:DELIVRD err:000 text:Hello";

    #[test]
    fn the_appendix_b_form() {
        let f = parse_text(APPENDIX_B);
        assert_eq!(f.id, Some("0123456789"));
        assert_eq!(f.stat, Some("DELIVRD"));
        assert_eq!(f.err, Some("000"));
        assert_eq!(f.text, Some("Hello"));
        let r = parse(None, None, None, APPENDIX_B.as_bytes()).unwrap();
        assert_eq!(
            r,
            Receipt {
                message_id: "0123456789".into(),
                state: DeliveryState::Delivered,
                error: None,
                network_error: None
            }
        );
    }

    #[test]
    fn variants_seen_in_the_wild() {
        let f = parse_text(
            "ID:ab12 SUB:1 DLVRD:0 SUBMIT_DATE:2501011200 DONE_DATE:2501011201 STAT:UNDELIV ERR:034 TEXT:x stat:FAKE",
        );
        assert_eq!((f.id, f.stat, f.err), (Some("ab12"), Some("UNDELIV"), Some("034")));
        assert_eq!(f.text, Some("x stat:FAKE"), "text runs to the end and can hold anything");
        let f = parse_text("stat:EXPIRED id:77");
        assert_eq!((f.id, f.stat), (Some("77"), Some("EXPIRED")), "any order");
        let f = parse_text("  noise words id:9  stat:REJECTD");
        assert_eq!((f.id, f.stat), (Some("9"), Some("REJECTD")));
        assert_eq!(parse_text("idle:5 stat:DELIVRD").id, None, "a key must start a word");
    }

    #[test]
    fn tlvs_win_over_the_text() {
        let r = parse(Some(b"MID-1\0"), Some(&[5]), Some(&[3, 0x00, 0x22]), b"id:other stat:DELIVRD err:000").unwrap();
        assert_eq!(r.message_id, "MID-1");
        assert_eq!(r.state, DeliveryState::Undeliverable);
        assert_eq!(r.network_error, Some(NetworkError { network: 3, code: 0x22 }));
        let r = parse(Some(b"m9\0"), Some(&[2]), None, b"").unwrap();
        assert_eq!((r.message_id.as_str(), r.state), ("m9", DeliveryState::Delivered), "TLVs alone suffice");
    }

    #[test]
    fn unreadable_receipts_are_errors() {
        assert_eq!(parse(None, None, None, b"stat:DELIVRD"), Err(DlrError::NoId));
        assert_eq!(parse(None, None, None, b"id:1 stat:WHATEVER"), Err(DlrError::NoState(Some("WHATEVER".into()))));
        assert_eq!(parse(Some(b"\0"), Some(&[2]), None, b""), Err(DlrError::NoId));
        assert_eq!(parse(Some(b"x"), Some(&[42]), None, b""), Err(DlrError::NoState(None)));
    }

    #[test]
    fn states_and_outcomes() {
        for v in 0..=9u8 {
            let s = DeliveryState::from_message_state(v).unwrap();
            assert!(!s.describe().is_empty());
            assert_eq!(DeliveryState::from_name(s.name()), Some(s));
        }
        assert_eq!(DeliveryState::from_message_state(10), None);
        assert_eq!(DeliveryState::from_stat("delivrd").unwrap().outcome(), Outcome::Delivered);
        assert_eq!(DeliveryState::from_stat("ENROUTE").unwrap().outcome(), Outcome::Pending);
        for s in ["EXPIRED", "DELETED", "UNDELIV", "UNKNOWN", "REJECTD"] {
            assert_eq!(DeliveryState::from_stat(s).unwrap().outcome(), Outcome::Failed, "{s}");
        }
    }

    #[test]
    fn receipt_kinds_from_esm_class() {
        assert_eq!(receipt_kind(0x04), Some(ReceiptKind::SmscDelivery));
        assert_eq!(receipt_kind(0x44), Some(ReceiptKind::SmscDelivery), "UDHI does not change the type");
        assert_eq!(receipt_kind(0x20), Some(ReceiptKind::Intermediate));
        assert_eq!(receipt_kind(0x08), Some(ReceiptKind::SmeDeliveryAck));
        assert_eq!(receipt_kind(0x00), None);
        assert_eq!(receipt_kind(0x40), None, "a long mobile-originated message");
    }

    #[test]
    fn id_spellings_across_bases() {
        let resp = id_candidates("1A2B");
        let dlr = id_candidates("6699");
        assert!(resp.contains(&"1a2b".to_owned()) && dlr.contains(&"1a2b".to_owned()));
        assert!(id_candidates("000123").contains(&"123".to_owned()));
        assert_eq!(id_candidates("msg-7"), vec!["msg-7".to_owned()]);
    }

    proptest! {
        #[test]
        fn any_text_parses_without_panicking(s in "\\PC{0,300}") {
            let _ = parse_text(&s);
            let _ = parse(None, None, None, s.as_bytes());
        }

        #[test]
        fn generated_receipts_read_back(id in "[0-9A-Fa-f]{1,20}", state in 1u8..=9, err in "[0-9]{3}", text in "[ -~]{0,20}") {
            let st = DeliveryState::from_message_state(state).unwrap();
            let stat = match st {
                DeliveryState::Delivered => "DELIVRD", DeliveryState::Expired => "EXPIRED", DeliveryState::Deleted => "DELETED",
                DeliveryState::Undeliverable => "UNDELIV", DeliveryState::Accepted => "ACCEPTD", DeliveryState::Unknown => "UNKNOWN",
                DeliveryState::Rejected => "REJECTD", DeliveryState::Enroute => "ENROUTE", DeliveryState::Skipped => "SKIPPED",
                DeliveryState::Scheduled => "SCHEDULED",
            };
            let s = format!("id:{id} sub:001 dlvrd:001 submit date:2501011200 done date:2501011201 stat:{stat} err:{err} text:{text}");
            let r = parse(None, None, None, s.as_bytes()).unwrap();
            prop_assert_eq!(r.message_id, id);
            prop_assert_eq!(r.state, st);
        }

        #[test]
        fn a_hex_id_and_its_decimal_meet(n in any::<u64>()) {
            let hex = id_candidates(&format!("{n:X}"));
            let dec = id_candidates(&n.to_string());
            prop_assert!(hex.iter().any(|h| dec.contains(h)));
        }
    }
}
