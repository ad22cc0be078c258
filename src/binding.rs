//! The Binding service of RFC 8489 §6.3, sans-IO: bytes and a source address
//! in, at most one response out, no state anywhere.

#![warn(missing_docs, unreachable_pub, missing_debug_implementations)]

use std::net::SocketAddr;

use crate::stun::unknown::UnknownAttributes;
use crate::stun::{classic, AttributeType, Class, Message, MessageBuilder, Method};

/// Answers one STUN request received from `source`, writing the response
/// into `out`. Returns the response length, or `None` when nothing must be
/// sent: malformed or non-STUN input, indications and responses
/// (RFC 8489 §6.3: "If the message is an indication ... no response is
/// sent"; messages failing the framing checks are discarded).
pub fn answer(packet: &[u8], source: SocketAddr, out: &mut [u8]) -> Option<usize> {
    let msg = Message::parse(packet).ok()?;
    answer_with(&msg, source, None, out)
}

/// [`answer`] for a parsed message, adding SOFTWARE when configured.
pub fn answer_with(
    msg: &Message<'_>,
    source: SocketAddr,
    software: Option<&str>,
    out: &mut [u8],
) -> Option<usize> {
    if msg.class() != Class::Request {
        return None;
    }
    let fingerprint = msg.has_fingerprint();

    // RFC 8489 §6.3.1.1: "If the request contains one or more unknown
    // comprehension-required attributes, the server replies with an error
    // response with an error code of 420 (Unknown Attribute) and includes an
    // UNKNOWN-ATTRIBUTES attribute in the response that lists the unknown
    // comprehension-required attributes."
    if let Some(unknown) = UnknownAttributes::find(msg, AttributeType::is_known) {
        let mut b = MessageBuilder::new(out, msg.message_type().error(), msg.transaction_id());
        unknown.add_420(&mut b, false);
        return finish(b, software, fingerprint);
    }

    if msg.method() != Method::BINDING {
        // Methods this server does not serve over this path.
        let mut b = MessageBuilder::new(out, msg.message_type().error(), msg.transaction_id());
        b.add_error_code(400, "Bad Request");
        return finish(b, software, fingerprint);
    }

    // RFC 5780 §6: "If the server does not have the alternate address
    // ... it MUST respond with an error code of 420" to CHANGE-REQUEST.
    // Without RFC 5780 mode no change can be made (RFC 5780 mode is served
    // by `nat::server` on its own sockets).
    if msg.get(AttributeType::CHANGE_REQUEST).is_some() {
        let mut b = MessageBuilder::new(out, msg.message_type().error(), msg.transaction_id());
        b.add_error_code(420, "Unknown Attribute");
        b.add_unknown_attributes(&[AttributeType::CHANGE_REQUEST.0]);
        return finish(b, software, fingerprint);
    }

    // RFC 8489 §6.3.1.2 and §14.2: the success response carries
    // XOR-MAPPED-ADDRESS with the request's source transport address.
    let mut b = MessageBuilder::new(out, msg.message_type().success(), msg.transaction_id());
    b.add_xor_mapped_address(&source);
    finish(b, software, fingerprint)
}

/// Answers an RFC 3489 Binding request (a [`Message::parse_classic`] one)
/// from `source`, as RFC 8489 §12 describes: MAPPED-ADDRESS instead of
/// XOR-MAPPED-ADDRESS, the client's 16-byte transaction id echoed, no
/// MESSAGE-INTEGRITY and no FINGERPRINT, SOFTWARE only when configured.
/// Anything but a Binding request gets nothing: TURN methods never accept
/// a classic request (RFC 8656 §2: TURN needs the RFC 5389 header).
///
/// RESPONSE-ADDRESS, RFC 3489's "send the answer to this other address",
/// gets 400 at the source and is never honoured: it would let anyone aim
/// this server's answers at a third party. CHANGE-REQUEST gets 420, as in
/// [`answer_with`]; RFC 5780 mode answers it from `nat::server`.
pub fn answer_classic(
    msg: &Message<'_>,
    source: SocketAddr,
    software: Option<&str>,
    out: &mut [u8],
) -> Option<usize> {
    if !msg.is_classic() || msg.class() != Class::Request || msg.method() != Method::BINDING {
        return None;
    }
    let id = msg.classic_transaction_id();
    let unknown = UnknownAttributes::find(msg, |t| {
        classic::is_known(t) && t != AttributeType::CHANGE_REQUEST
    });
    if let Some(unknown) = unknown {
        let mut b = MessageBuilder::new_classic(out, msg.message_type().error(), id);
        unknown.add_420(&mut b, true);
        return finish(b, software, false);
    }
    if msg.get(AttributeType::RESPONSE_ADDRESS).is_some() {
        let mut b = MessageBuilder::new_classic(out, msg.message_type().error(), id);
        classic::add_error_code(&mut b, 400, classic::RESPONSE_ADDRESS_REFUSED);
        return finish(b, software, false);
    }
    let mut b = MessageBuilder::new_classic(out, msg.message_type().success(), id);
    b.add_mapped_address(&source);
    finish(b, software, false)
}

/// SOFTWARE when configured, then FINGERPRINT when the request had one
/// (RFC 8489 §7.3: a response to a request with FINGERPRINT carries one).
pub(crate) fn finish(
    mut b: MessageBuilder<'_>,
    software: Option<&str>,
    fingerprint: bool,
) -> Option<usize> {
    if let Some(s) = software {
        b.add_software(s);
    }
    if fingerprint {
        b.add_fingerprint();
    }
    b.finish().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stun::attributes::{decode_unknown_attributes, ErrorCode};
    use crate::stun::{MessageType, TransactionId};

    const TXID: TransactionId = TransactionId([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]);

    fn request(method: Method, build: impl FnOnce(&mut MessageBuilder)) -> Vec<u8> {
        let mut buf = vec![0u8; 512];
        let mut b = MessageBuilder::new(&mut buf, MessageType::new(method, Class::Request), TXID);
        build(&mut b);
        let n = b.finish().unwrap();
        buf.truncate(n);
        buf
    }

    fn source() -> SocketAddr {
        "203.0.113.7:40000".parse().unwrap()
    }

    #[test]
    fn binding_request_gets_xor_mapped_address_of_its_source() {
        let req = request(Method::BINDING, |_| {});
        let mut out = [0u8; 256];
        let n = answer(&req, source(), &mut out).unwrap();
        let resp = Message::parse(&out[..n]).unwrap();
        assert_eq!(resp.class(), Class::SuccessResponse);
        assert_eq!(resp.method(), Method::BINDING);
        assert_eq!(resp.transaction_id(), TXID);
        let xma = resp.get(AttributeType::XOR_MAPPED_ADDRESS).unwrap();
        assert_eq!(
            crate::stun::attributes::decode_xor_address(xma, &TXID),
            Ok(source())
        );
        assert!(!resp.has_fingerprint());
        assert!(resp.get(AttributeType::SOFTWARE).is_none());
    }

    #[test]
    fn change_request_without_rfc5780_gets_420_listing_it_and_no_other_address() {
        let req = request(Method::BINDING, |b| {
            b.add(AttributeType::CHANGE_REQUEST, &[0, 0, 0, 6])
        });
        let mut out = [0u8; 256];
        let n = answer(&req, source(), &mut out).unwrap();
        let resp = Message::parse(&out[..n]).unwrap();
        assert_eq!(resp.class(), Class::ErrorResponse);
        let e = ErrorCode::decode(resp.get(AttributeType::ERROR_CODE).unwrap()).unwrap();
        assert_eq!(e.code, 420);
        let listed: Vec<u16> =
            decode_unknown_attributes(resp.get(AttributeType::UNKNOWN_ATTRIBUTES).unwrap())
                .unwrap()
                .collect();
        assert_eq!(listed, vec![0x0003]);
        assert!(resp.get(AttributeType::OTHER_ADDRESS).is_none());
        // RESPONSE-PORT and PADDING are ignored: a plain answer to the source.
        let req = request(Method::BINDING, |b| {
            b.add(AttributeType::RESPONSE_PORT, &[0x12, 0x34, 0, 0]);
            b.add(AttributeType::PADDING, &[0; 400]);
        });
        let n = answer(&req, source(), &mut out).unwrap();
        let resp = Message::parse(&out[..n]).unwrap();
        assert_eq!(resp.class(), Class::SuccessResponse);
        assert!(resp.get(AttributeType::RESPONSE_ORIGIN).is_none());
        assert!(n < 100, "no padding without RFC 5780: {n} bytes");
    }

    #[test]
    fn fingerprint_in_the_request_gets_fingerprint_in_the_response() {
        let req = request(Method::BINDING, |b| b.add_fingerprint());
        let mut out = [0u8; 256];
        let n = answer(&req, source(), &mut out).unwrap();
        assert!(Message::parse(&out[..n]).unwrap().has_fingerprint());
    }

    #[test]
    fn unknown_comprehension_required_attributes_get_420_listing_exactly_them() {
        let req = request(Method::BINDING, |b| {
            b.add(AttributeType(0x7777), b"x");
            b.add(AttributeType(0xC001), b"optional is ignored");
            b.add(AttributeType(0x0031), b"");
            b.add(AttributeType(0x7777), b"repeat is listed once");
        });
        let mut out = [0u8; 256];
        let n = answer(&req, source(), &mut out).unwrap();
        let resp = Message::parse(&out[..n]).unwrap();
        assert_eq!(resp.class(), Class::ErrorResponse);
        let ec = ErrorCode::decode(resp.get(AttributeType::ERROR_CODE).unwrap()).unwrap();
        assert_eq!(ec.code, 420);
        let listed: Vec<u16> =
            decode_unknown_attributes(resp.get(AttributeType::UNKNOWN_ATTRIBUTES).unwrap())
                .unwrap()
                .collect();
        assert_eq!(listed, vec![0x7777, 0x0031]);
    }

    #[test]
    fn unknown_comprehension_optional_attributes_are_ignored() {
        let req = request(Method::BINDING, |b| b.add(AttributeType(0xC001), b"x"));
        let mut out = [0u8; 256];
        let n = answer(&req, source(), &mut out).unwrap();
        assert_eq!(
            Message::parse(&out[..n]).unwrap().class(),
            Class::SuccessResponse
        );
    }

    #[test]
    fn indications_responses_and_garbage_get_no_reply() {
        let mut out = [0u8; 256];
        let mut buf = [0u8; 64];
        for class in [
            Class::Indication,
            Class::SuccessResponse,
            Class::ErrorResponse,
        ] {
            let b = MessageBuilder::new(&mut buf, MessageType::new(Method::BINDING, class), TXID);
            let n = b.finish().unwrap();
            assert_eq!(answer(&buf[..n], source(), &mut out), None, "{class:?}");
        }
        assert_eq!(
            answer(b"hello, this is not stun at all", source(), &mut out),
            None
        );
        assert_eq!(answer(&[], source(), &mut out), None);
        let mut bad_fp = request(Method::BINDING, |b| b.add_fingerprint());
        let last = bad_fp.len() - 1;
        bad_fp[last] ^= 1;
        assert_eq!(answer(&bad_fp, source(), &mut out), None);
    }

    /// A classic request: the cookie's place holds 0x01020304.
    fn classic_request(method: Method, attrs: &[(u16, &[u8])]) -> Vec<u8> {
        let mut v = MessageType::new(method, Class::Request)
            .to_u16()
            .to_be_bytes()
            .to_vec();
        v.extend_from_slice(&[0, 0, 1, 2, 3, 4]);
        v.extend_from_slice(&TXID.0);
        for (t, value) in attrs {
            v.extend_from_slice(&t.to_be_bytes());
            v.extend_from_slice(&(value.len() as u16).to_be_bytes());
            v.extend_from_slice(value);
        }
        let len = (v.len() - 20) as u16;
        v[2..4].copy_from_slice(&len.to_be_bytes());
        v
    }

    fn classic_answer(req: &[u8], software: Option<&str>) -> Option<Vec<u8>> {
        let msg = Message::parse_classic(req).unwrap();
        let mut out = [0u8; 256];
        let n = answer_classic(&msg, source(), software, &mut out)?;
        Some(out[..n].to_vec())
    }

    #[test]
    fn a_classic_binding_gets_mapped_address_and_its_whole_id_back_byte_for_byte() {
        let req = classic_request(Method::BINDING, &[]);
        let resp = classic_answer(&req, None).unwrap();
        let mut want = vec![0x01, 0x01, 0x00, 0x0c, 1, 2, 3, 4];
        want.extend_from_slice(&TXID.0);
        // MAPPED-ADDRESS 203.0.113.7:40000, no XOR, no FINGERPRINT.
        want.extend_from_slice(&[0, 1, 0, 8, 0, 1, 0x9c, 0x40, 203, 0, 113, 7]);
        assert_eq!(resp, want);
        // SOFTWARE only when configured.
        let resp = classic_answer(&req, Some("turnpike")).unwrap();
        let m = Message::parse_classic(&resp).unwrap();
        assert_eq!(m.get(AttributeType::SOFTWARE), Some(&b"turnpike"[..]));
        assert!(m.get(AttributeType::MESSAGE_INTEGRITY).is_none());
    }

    #[test]
    fn classic_turn_methods_indications_and_responses_get_nothing() {
        for method in [Method::ALLOCATE, Method::REFRESH, Method::CREATE_PERMISSION] {
            let req = classic_request(method, &[(0x0019, &[17, 0, 0, 0])]);
            assert_eq!(classic_answer(&req, None), None, "{method:?}");
        }
        let mut ind = classic_request(Method::BINDING, &[]);
        ind[1] = 0x11;
        assert_eq!(classic_answer(&ind, None), None);
        let mut resp = classic_request(Method::BINDING, &[]);
        resp[0] = 0x01;
        resp[1] = 0x01;
        assert_eq!(classic_answer(&resp, None), None);
        // A modern message is not this function's.
        let modern = request(Method::BINDING, |_| {});
        let msg = Message::parse(&modern).unwrap();
        assert_eq!(answer_classic(&msg, source(), None, &mut [0u8; 256]), None);
    }

    #[test]
    fn classic_response_address_gets_400_at_the_source_and_change_request_420() {
        let to = [0, 1, 0x13, 0x88, 198, 51, 100, 9];
        let req = classic_request(Method::BINDING, &[(0x0002, &to)]);
        let resp = classic_answer(&req, None).unwrap();
        let m = Message::parse_classic(&resp).unwrap();
        assert_eq!(m.class(), Class::ErrorResponse);
        let e = ErrorCode::decode(m.get(AttributeType::ERROR_CODE).unwrap()).unwrap();
        assert_eq!(e.code, 400);
        assert_eq!(e.reason.trim_end(), classic::RESPONSE_ADDRESS_REFUSED);
        assert!(m.get(AttributeType::MAPPED_ADDRESS).is_none());
        let req = classic_request(Method::BINDING, &[(0x0003, &[0, 0, 0, 6])]);
        let m_bytes = classic_answer(&req, None).unwrap();
        let m = Message::parse_classic(&m_bytes).unwrap();
        let e = ErrorCode::decode(m.get(AttributeType::ERROR_CODE).unwrap()).unwrap();
        assert_eq!(e.code, 420);
        let listed: Vec<u16> =
            decode_unknown_attributes(m.get(AttributeType::UNKNOWN_ATTRIBUTES).unwrap())
                .unwrap()
                .collect();
        assert_eq!(listed, vec![0x0003, 0x0003]);
        // RFC 5389-era mandatory types are unknown to a classic exchange.
        let req = classic_request(Method::BINDING, &[(0x0020, &[0; 8]), (0x0026, &[0; 4])]);
        let m_bytes = classic_answer(&req, None).unwrap();
        let m = Message::parse_classic(&m_bytes).unwrap();
        let listed: Vec<u16> =
            decode_unknown_attributes(m.get(AttributeType::UNKNOWN_ATTRIBUTES).unwrap())
                .unwrap()
                .collect();
        assert_eq!(listed, vec![0x0020, 0x0026]);
    }

    #[test]
    fn other_methods_get_400_for_now() {
        let req = request(Method::ALLOCATE, |_| {});
        let mut out = [0u8; 256];
        let n = answer(&req, source(), &mut out).unwrap();
        let resp = Message::parse(&out[..n]).unwrap();
        let ec = ErrorCode::decode(resp.get(AttributeType::ERROR_CODE).unwrap()).unwrap();
        assert_eq!(ec.code, 400);
    }
}
