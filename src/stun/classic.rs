//! RFC 3489 ("classic STUN") on the wire, for the SIP phones and NAT-type
//! testers that still speak it.
//!
//! RFC 5389 carved the magic cookie out of RFC 3489's 128-bit transaction
//! id; a message whose bytes 4-8 are not the cookie comes from a classic
//! client (RFC 8489 §12). [`super::Message::parse_classic`] reads one and
//! [`super::MessageBuilder::new_classic`] answers it, echoing all 16 bytes.
//! This module holds the rest: which attributes such a client may send, and
//! the two encodings where RFC 3489 differs from RFC 8489 (a reason phrase
//! padded with spaces, an UNKNOWN-ATTRIBUTES list of even length).

use super::attributes::{AttributeType, ErrorCode};
use super::message::padded;
use super::MessageBuilder;

/// The reason phrase of the 400 that answers RESPONSE-ADDRESS, which this
/// server never honours (an answer aimed at a third party).
pub(crate) const RESPONSE_ADDRESS_REFUSED: &str = "RESPONSE-ADDRESS not supported";

/// The 128-bit transaction id of an RFC 3489 message (bytes 4-20).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ClassicTransactionId(pub [u8; 16]);

/// The comprehension-required attributes RFC 3489 §11.2 defines
/// (0x0001-0x000B). A classic request with any other type below 0x8000 gets
/// 420: RFC 3489 §8.2 answers unknown mandatory attributes that way, and a
/// classic client has no business sending RFC 5389-era ones.
pub(crate) fn is_known(t: AttributeType) -> bool {
    (0x0001..=0x000B).contains(&t.0) || !t.is_comprehension_required()
}

/// ERROR-CODE as RFC 3489 §11.2.9 writes it: the reason phrase "MUST be a
/// multiple of 4", made so with spaces rather than zero padding.
pub(crate) fn add_error_code(b: &mut MessageBuilder<'_>, code: u16, reason: &str) {
    let len = 4 + padded(reason.len());
    b.add_with(AttributeType::ERROR_CODE, len, |out| {
        ErrorCode::encode(code, reason, &mut out[..4 + reason.len()]);
        out[4 + reason.len()..].fill(b' ');
    });
}

/// UNKNOWN-ATTRIBUTES as RFC 3489 §11.2.10 writes it: an odd list repeats
/// one of its types so the value stays a multiple of four bytes.
pub(crate) fn add_unknown_attributes(b: &mut MessageBuilder<'_>, types: &[u16]) {
    let Some(&last) = types.last() else { return };
    let n = types.len() + types.len() % 2;
    b.add_with(AttributeType::UNKNOWN_ATTRIBUTES, n * 2, |out| {
        for (i, chunk) in out.chunks_exact_mut(2).enumerate() {
            chunk.copy_from_slice(&types.get(i).copied().unwrap_or(last).to_be_bytes());
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stun::attributes::{decode_address, decode_unknown_attributes};
    use crate::stun::{BuildError, Class, Message, MessageType, Method, ParseError, TransactionId};

    /// The 28 bytes Debian's `stun` client (Vovida 0.97) sends for test II:
    /// a Binding request, a random 128-bit id, CHANGE-REQUEST "change IP
    /// and port".
    const VOVIDA_TEST_II: [u8; 28] = [
        0x00, 0x01, 0x00, 0x08, // Binding request, 8 bytes of attributes
        0x6b, 0x8b, 0x45, 0x67, 0x32, 0x7b, 0x23, 0xc6, // transaction id ...
        0x64, 0x3c, 0x98, 0x69, 0x66, 0x33, 0x48, 0x73, // ... 16 bytes
        0x00, 0x03, 0x00, 0x04, 0x00, 0x00, 0x00, 0x06, // CHANGE-REQUEST
    ];

    #[test]
    fn a_classic_request_parses_with_its_16_byte_id_and_the_strict_parser_refuses_it() {
        assert_eq!(
            Message::parse(&VOVIDA_TEST_II).unwrap_err(),
            ParseError::BadMagicCookie
        );
        let m = Message::parse_classic(&VOVIDA_TEST_II).unwrap();
        assert!(m.is_classic());
        assert_eq!(m.class(), Class::Request);
        assert_eq!(m.method(), Method::BINDING);
        assert_eq!(m.classic_transaction_id().0[..], VOVIDA_TEST_II[4..20]);
        assert_eq!(
            m.get(AttributeType::CHANGE_REQUEST),
            Some(&[0u8, 0, 0, 6][..])
        );
        assert!(!m.has_fingerprint());
    }

    #[test]
    fn the_classic_parser_refuses_a_message_with_the_cookie() {
        let mut buf = [0u8; 64];
        let b = MessageBuilder::new(
            &mut buf,
            MessageType::new(Method::BINDING, Class::Request),
            TransactionId([3; 12]),
        );
        let n = b.finish().unwrap();
        assert_eq!(
            Message::parse_classic(&buf[..n]).unwrap_err(),
            ParseError::NotClassic
        );
        assert!(Message::parse(&buf[..n]).is_ok());
    }

    #[test]
    fn fingerprint_in_a_classic_message_is_an_opaque_optional_attribute() {
        let mut req = VOVIDA_TEST_II.to_vec();
        req[3] = 16;
        req.extend_from_slice(&[0x80, 0x28, 0x00, 0x04, 0xde, 0xad, 0xbe, 0xef]);
        let m = Message::parse_classic(&req).unwrap();
        assert!(!m.has_fingerprint());
        assert_eq!(
            m.get(AttributeType::FINGERPRINT),
            Some(&[0xde, 0xad, 0xbe, 0xef][..])
        );
    }

    #[test]
    fn a_classic_answer_echoes_all_16_bytes_and_carries_plain_addresses_only() {
        let req = Message::parse_classic(&VOVIDA_TEST_II).unwrap();
        let mut buf = [0u8; 128];
        let mut b = MessageBuilder::new_classic(
            &mut buf,
            req.message_type().success(),
            req.classic_transaction_id(),
        );
        let mapped = "192.0.2.1:32853".parse().unwrap();
        b.add_mapped_address(&mapped);
        let n = b.finish().unwrap();
        assert_eq!(
            buf[..n],
            [
                0x01, 0x01, 0x00, 0x0c, // Binding success, 12 bytes
                0x6b, 0x8b, 0x45, 0x67, 0x32, 0x7b, 0x23, 0xc6, //
                0x64, 0x3c, 0x98, 0x69, 0x66, 0x33, 0x48, 0x73, //
                0x00, 0x01, 0x00, 0x08, 0x00, 0x01, 0x80, 0x55, // MAPPED-ADDRESS
                0xc0, 0x00, 0x02, 0x01,
            ]
        );
        let resp = Message::parse_classic(&buf[..n]).unwrap();
        assert_eq!(resp.classic_transaction_id(), req.classic_transaction_id());
        assert_eq!(
            decode_address(resp.get(AttributeType::MAPPED_ADDRESS).unwrap()),
            Ok(mapped)
        );
        // An XOR address cannot be decoded without the cookie: refused.
        let mut b = MessageBuilder::new_classic(
            &mut buf,
            req.message_type().success(),
            req.classic_transaction_id(),
        );
        b.add_xor_mapped_address(&mapped);
        b.add_mapped_address(&mapped);
        assert_eq!(b.finish(), Err(BuildError::XorInClassic));
    }

    #[test]
    fn classic_errors_pad_the_reason_with_spaces_and_keep_unknown_lists_even() {
        let mut buf = [0u8; 128];
        let id = ClassicTransactionId([7; 16]);
        let t = MessageType::new(Method::BINDING, Class::ErrorResponse);
        let mut b = MessageBuilder::new_classic(&mut buf, t, id);
        add_error_code(&mut b, 420, "Unknown Attribute");
        add_unknown_attributes(&mut b, &[0x0020, 0x0031, 0x7777]);
        let n = b.finish().unwrap();
        let m = Message::parse_classic(&buf[..n]).unwrap();
        assert_eq!(
            m.get(AttributeType::ERROR_CODE).unwrap(),
            b"\x00\x00\x04\x14Unknown Attribute   "
        );
        let listed: Vec<u16> =
            decode_unknown_attributes(m.get(AttributeType::UNKNOWN_ATTRIBUTES).unwrap())
                .unwrap()
                .collect();
        assert_eq!(listed, [0x0020, 0x0031, 0x7777, 0x7777]);
        // An even list is written as it is.
        let mut b = MessageBuilder::new_classic(&mut buf, t, id);
        add_unknown_attributes(&mut b, &[0x0020, 0x0031]);
        let n = b.finish().unwrap();
        assert_eq!(n, 20 + 4 + 4);
    }

    #[test]
    fn classic_known_attributes_are_rfc_3489s_eleven() {
        for t in 0x0001..=0x000B {
            assert!(is_known(AttributeType(t)), "{t:#06x}");
        }
        for t in [0x0000, 0x000C, 0x0020, 0x0026, 0x0027, 0x7FFF] {
            assert!(!is_known(AttributeType(t)), "{t:#06x}");
        }
        assert!(is_known(AttributeType::SOFTWARE));
    }
}
