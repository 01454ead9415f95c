//! SMPP PDUs ↔ the bridge's types: `submit_sm` from an outbox segment, and what a `deliver_sm` carries (a
//! delivery receipt or a part of a mobile-originated message).

use crate::protocol::dlr::{self, Receipt, ReceiptKind};
use crate::protocol::reassembly::{InboundCoding, InboundPart, inbound_coding};
use crate::protocol::udh::{self, Concat, Reference};
use crate::store::OutSegment;
use rusmpp::encode::{Encode, Length};
use rusmpp::pdus::{DeliverSm, SubmitSm};
use rusmpp::tlvs::{Tlv, TlvTag, TlvValue};
use rusmpp::types::{COctetString, OctetString};
use rusmpp::values::{DataCoding, EsmClass, Npi, RegisteredDelivery, ServiceType, Ton};
use std::str::FromStr;

/// `esm_class` bit 6: the short message starts with a user data header.
pub const UDHI: u8 = 0x40;

/// A `submit_sm` that cannot be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PduError {
    /// An address does not fit SMPP's 20 characters.
    #[error("{field} {value:?} does not fit a submit_sm")]
    Address {
        /// Which field.
        field: &'static str,
        /// Its value.
        value: String,
    },
    /// The short message is longer than 255 octets.
    #[error("short message of {0} octets is too long")]
    TooLong(usize),
}

/// The TON/NPI and digits of an address: `+digits` is international E.164, anything with a letter is
/// alphanumeric, other digits are as the SMSC numbers them.
pub fn address(number: &str) -> (Ton, Npi, &str) {
    if let Some(digits) = number.strip_prefix('+') {
        (Ton::International, Npi::Isdn, digits)
    } else if number.bytes().all(|b| b.is_ascii_digit()) {
        (Ton::Unknown, Npi::Isdn, number)
    } else {
        (Ton::Alphanumeric, Npi::Unknown, number)
    }
}

fn c_octet<const MIN: usize, const MAX: usize>(
    value: &str,
    field: &'static str,
) -> Result<COctetString<MIN, MAX>, PduError> {
    COctetString::from_str(value).map_err(|_| PduError::Address { field, value: value.to_owned() })
}

/// The `submit_sm` of a segment; `receipts` asks the SMSC for a final delivery receipt.
pub fn submit_sm(segment: &OutSegment, receipts: bool) -> Result<SubmitSm, PduError> {
    let (src_ton, src_npi, src) = address(&segment.source);
    let (dst_ton, dst_npi, dst) = address(&segment.destination);
    let short_message = OctetString::from_vec(segment.short_message.clone())
        .map_err(|_| PduError::TooLong(segment.short_message.len()))?;
    Ok(SubmitSm::builder()
        .service_type(ServiceType::default())
        .source_addr_ton(src_ton)
        .source_addr_npi(src_npi)
        .source_addr(c_octet(src, "source_addr")?)
        .dest_addr_ton(dst_ton)
        .dest_addr_npi(dst_npi)
        .destination_addr(c_octet(dst, "destination_addr")?)
        // Built from the byte: rusmpp's EsmClass::default() is 0x08 (ANSI-41 delivery acknowledgement).
        .esm_class(EsmClass::from(segment.esm_class))
        .registered_delivery(RegisteredDelivery::from(u8::from(receipts)))
        .data_coding(DataCoding::from(segment.data_coding))
        .short_message(short_message)
        .build())
}

/// What a `deliver_sm` carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Inbound {
    /// The state of a message sent earlier.
    Receipt {
        /// Which kind of receipt.
        kind: ReceiptKind,
        /// The receipt.
        receipt: Receipt,
    },
    /// A mobile-originated message, or one part of one.
    Message(InboundPart),
}

/// A `deliver_sm` that cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InboundError {
    /// A receipt without a usable id or state.
    #[error(transparent)]
    Receipt(#[from] dlr::DlrError),
    /// A header that does not parse.
    #[error(transparent)]
    Udh(#[from] udh::UdhError),
}

/// The octets of a TLV's value, as on the wire.
fn tlv_octets(tlvs: &[Tlv], tag: TlvTag) -> Option<Vec<u8>> {
    let value = tlvs.iter().find(|t| t.tag() == tag)?.value()?;
    let mut buf = vec![0u8; value.length()];
    value.encode(&mut buf);
    Some(buf)
}

fn text_of(c: &[u8]) -> String {
    String::from_utf8_lossy(c).trim_end_matches('\0').trim().to_owned()
}

/// An address as the bridge names numbers: `+digits` for international ones (and, with `assume_international`,
/// for digits of unknown type, as many SMSCs send them), as given otherwise.
pub fn number_of(ton: Ton, addr: &str, assume_international: bool) -> String {
    let international = ton == Ton::International || (assume_international && ton == Ton::Unknown);
    if international && !addr.starts_with('+') && !addr.is_empty() && addr.bytes().all(|b| b.is_ascii_digit()) {
        format!("+{addr}")
    } else {
        addr.to_owned()
    }
}

/// Reads a `deliver_sm`. `smsc_default` is what this SMSC means by `data_coding` 0.
pub fn read_deliver_sm(
    d: &DeliverSm,
    smsc_default: InboundCoding,
    assume_international: bool,
    now_ms: u64,
) -> Result<Inbound, InboundError> {
    let esm = u8::from(d.esm_class);
    let tlvs = d.tlvs();
    let payload_tlv = tlv_octets(tlvs, TlvTag::MessagePayload);
    let sm: Vec<u8> = match payload_tlv {
        Some(p) if d.short_message().as_ref().is_empty() => p,
        _ => d.short_message().as_ref().to_vec(),
    };
    if let Some(kind) = dlr::receipt_kind(esm) {
        let receipt = dlr::parse(
            tlv_octets(tlvs, TlvTag::ReceiptedMessageId).as_deref(),
            tlv_octets(tlvs, TlvTag::MessageState).as_deref(),
            tlv_octets(tlvs, TlvTag::NetworkErrorCode).as_deref(),
            &sm,
        )?;
        return Ok(Inbound::Receipt { kind, receipt });
    }
    let (concat, text) = if esm & UDHI != 0 {
        let h = udh::parse(&sm)?;
        (h.concat, sm[h.len..].to_vec())
    } else {
        (sar(tlvs), sm)
    };
    Ok(Inbound::Message(InboundPart {
        from: number_of(d.source_addr_ton, &text_of(d.source_addr.as_ref()), assume_international),
        to: number_of(d.dest_addr_ton, &text_of(d.destination_addr.as_ref()), assume_international),
        coding: inbound_coding(u8::from(d.data_coding), smsc_default),
        concat,
        payload: text,
        received_ms: now_ms,
    }))
}

/// Concatenation from the `sar_*` TLVs (the SMPP way, some SMSCs use instead of a header).
fn sar(tlvs: &[Tlv]) -> Option<Concat> {
    let reference = tlvs.iter().find_map(|t| match t.value() {
        Some(TlvValue::SarMsgRefNum(r)) => Some(*r),
        _ => None,
    })?;
    let total = tlvs.iter().find_map(|t| match t.value() {
        Some(TlvValue::SarTotalSegments(n)) => Some(*n),
        _ => None,
    })?;
    let seq = tlvs.iter().find_map(|t| match t.value() {
        Some(TlvValue::SarSegmentSeqnum(n)) => Some(*n),
        _ => None,
    })?;
    (total > 0 && seq > 0 && seq <= total).then_some(Concat { reference: Reference::Sixteen(reference), total, seq })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::dlr::DeliveryState;
    use crate::store::{MessageId, SegmentId};
    use rusmpp::tlvs::MessageDeliveryRequestTlvValue;
    use rusmpp::values::MessageState;

    fn segment(source: &str, esm_class: u8) -> OutSegment {
        OutSegment {
            id: SegmentId(1),
            message_id: MessageId(1),
            seq: 1,
            source: source.into(),
            destination: "+447700900123".into(),
            short_message: vec![0x05, 0x00, 0x03, 1, 2, 1, 0x48, 0x69],
            esm_class,
            data_coding: 8,
            attempts: 1,
            uncertain: 0,
        }
    }

    #[test]
    fn submit_sm_fields() {
        let s = submit_sm(&segment("+447700900001", UDHI), true).unwrap();
        assert_eq!((s.source_addr_ton, s.source_addr_npi), (Ton::International, Npi::Isdn));
        assert_eq!(s.source_addr.as_str(), "447700900001");
        assert_eq!(s.destination_addr.as_str(), "447700900123");
        assert_eq!(u8::from(s.esm_class), 0x40, "UDHI exactly, not rusmpp's default 0x08");
        assert_eq!(u8::from(s.data_coding), 8);
        assert_eq!(u8::from(s.registered_delivery), 1);
        assert_eq!(s.short_message().as_ref(), &[0x05, 0x00, 0x03, 1, 2, 1, 0x48, 0x69]);
        let plain = submit_sm(&segment("TINCAN", 0), false).unwrap();
        assert_eq!(u8::from(plain.esm_class), 0);
        assert_eq!(u8::from(plain.registered_delivery), 0);
        assert_eq!(plain.source_addr_ton, Ton::Alphanumeric);
        assert!(matches!(submit_sm(&segment("+1234567890123456789012", 0), true), Err(PduError::Address { .. })));
    }

    fn deliver(esm: u8, dc: u8, sm: &[u8], tlvs: Vec<MessageDeliveryRequestTlvValue>) -> DeliverSm {
        DeliverSm::builder()
            .source_addr_ton(Ton::International)
            .source_addr(COctetString::from_str("447700900123").unwrap())
            .dest_addr_ton(Ton::Unknown)
            .destination_addr(COctetString::from_str("447700900001").unwrap())
            .esm_class(EsmClass::from(esm))
            .data_coding(DataCoding::from(dc))
            .short_message(OctetString::from_vec(sm.to_vec()).unwrap())
            .tlvs(tlvs)
            .build()
    }

    #[test]
    fn a_receipt_in_tlvs_and_text() {
        let d = deliver(
            0x04,
            0,
            b"id:777 sub:001 dlvrd:001 submit date:2501011200 done date:2501011201 stat:DELIVRD err:000 text:",
            vec![
                MessageDeliveryRequestTlvValue::ReceiptedMessageId(COctetString::from_str("abc").unwrap()),
                MessageDeliveryRequestTlvValue::MessageState(MessageState::Undeliverable),
            ],
        );
        let Inbound::Receipt { kind, receipt } = read_deliver_sm(&d, InboundCoding::Gsm7, false, 5).unwrap() else {
            panic!("not a receipt")
        };
        assert_eq!(kind, ReceiptKind::SmscDelivery);
        assert_eq!(receipt.message_id, "abc", "the TLV wins");
        assert_eq!(receipt.state, DeliveryState::Undeliverable);
        let text_only = deliver(0x04, 0, b"id:777 stat:DELIVRD", vec![]);
        let Inbound::Receipt { receipt, .. } = read_deliver_sm(&text_only, InboundCoding::Gsm7, false, 5).unwrap()
        else {
            panic!("not a receipt")
        };
        assert_eq!((receipt.message_id.as_str(), receipt.state), ("777", DeliveryState::Delivered));
        assert!(read_deliver_sm(&deliver(0x04, 0, b"garbage", vec![]), InboundCoding::Gsm7, false, 5).is_err());
    }

    #[test]
    fn a_part_with_a_header_and_one_with_sar_tlvs() {
        let d = deliver(UDHI, 8, &[0x05, 0x00, 0x03, 9, 2, 2, 0x04, 0x16], vec![]);
        let Inbound::Message(p) = read_deliver_sm(&d, InboundCoding::Gsm7, true, 42).unwrap() else { panic!() };
        assert_eq!((p.from.as_str(), p.to.as_str()), ("+447700900123", "+447700900001"));
        assert_eq!(p.coding, InboundCoding::Ucs2);
        assert_eq!(p.concat, Some(Concat { reference: Reference::Eight(9), total: 2, seq: 2 }));
        assert_eq!(p.payload, [0x04, 0x16]);
        assert_eq!(p.received_ms, 42);
        let d = deliver(
            0,
            0,
            b"Hi",
            vec![
                MessageDeliveryRequestTlvValue::SarMsgRefNum(513),
                MessageDeliveryRequestTlvValue::SarTotalSegments(3),
                MessageDeliveryRequestTlvValue::SarSegmentSeqnum(1),
            ],
        );
        let Inbound::Message(p) = read_deliver_sm(&d, InboundCoding::Gsm7, false, 0).unwrap() else { panic!() };
        assert_eq!(p.concat, Some(Concat { reference: Reference::Sixteen(513), total: 3, seq: 1 }));
        assert_eq!(p.to, "447700900001", "a number of unknown type stays as the SMSC gave it");
        let bad = deliver(UDHI, 0, &[0x09, 0x00], vec![]);
        assert!(matches!(read_deliver_sm(&bad, InboundCoding::Gsm7, false, 0), Err(InboundError::Udh(_))));
    }
}
