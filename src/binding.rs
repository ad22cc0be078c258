//! The Binding service of RFC 8489 §6.3, sans-IO: bytes and a source address
//! in, at most one response out, no state anywhere.

use std::net::SocketAddr;

use crate::stun::{AttributeType, Class, Message, MessageBuilder, Method};

/// Most unknown attribute types listed in one 420 answer; enough for any
/// honest client, and it bounds the response size.
const MAX_UNKNOWN_LISTED: usize = 16;

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
    let mut unknown = [0u16; MAX_UNKNOWN_LISTED];
    let n = msg.unknown_comprehension_required(AttributeType::is_known, &mut unknown);
    if n > 0 {
        let mut b = MessageBuilder::new(out, msg.message_type().error(), msg.transaction_id());
        b.add_error_code(420, "Unknown Attribute");
        b.add_unknown_attributes(&unknown[..n]);
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
