//! `Message::parse` and every attribute decoder, on arbitrary bytes.
//!
//! Checked besides "never panics": a parsed message's counted attributes
//! rebuild (through `MessageBuilder`) into a message that parses to the same
//! attributes; decoded addresses re-encode to what was decoded; the Binding
//! service answers only requests, with a well-formed message; an RFC 3489
//! message is answered only when a Binding request, in RFC 3489's form.
#![no_main]

use libfuzzer_sys::fuzz_target;
use turnpike::nat::attributes::{ChangeRequest, ResponsePort};
use turnpike::stun::attributes::{
    self, decode_address, decode_text, decode_unknown_attributes, decode_username,
    decode_xor_address, ErrorCode, MAX_TEXT_CHARS,
};
use turnpike::stun::integrity::{verify_sha1, verify_sha256};
use turnpike::stun::{AttributeType, Class, Message, MessageBuilder, Method};

fuzz_target!(|data: &[u8]| {
    let Ok(m) = Message::parse(data) else {
        let mut out = [0u8; 1500];
        assert!(
            turnpike::binding::answer(data, "192.0.2.1:1".parse().unwrap(), &mut out).is_none()
        );
        classic(data);
        return;
    };
    let txid = m.transaction_id();
    let _ = (m.class(), m.method(), m.has_fingerprint());
    for a in m.attributes() {
        assert!(a.offset + 4 + a.value.len() <= data.len());
        let v = a.value;
        if let Ok(addr) = decode_address(v) {
            let mut buf = [0u8; 20];
            let n = attributes::address_len(&addr);
            attributes::encode_address(&addr, &mut buf[..n]);
            assert_eq!(decode_address(&buf[..n]), Ok(addr));
            assert_eq!(n, v.len());
        }
        if let Ok(addr) = decode_xor_address(v, &txid) {
            let mut buf = [0u8; 20];
            let n = attributes::address_len(&addr);
            attributes::encode_xor_address(&addr, &txid, &mut buf[..n]);
            assert_eq!(decode_xor_address(&buf[..n], &txid), Ok(addr));
        }
        if let Ok(s) = decode_text(v, MAX_TEXT_CHARS) {
            assert!(s.chars().count() <= MAX_TEXT_CHARS);
        }
        let _ = decode_username(v);
        if let Ok(e) = ErrorCode::decode(v) {
            assert!((300..=699).contains(&e.code));
        }
        if let Ok(list) = decode_unknown_attributes(v) {
            assert_eq!(list.count(), v.len() / 2);
        }
        let _ = ChangeRequest::decode(v);
        let _ = ResponsePort::decode(v);
    }
    let _ = verify_sha1(&m, b"key");
    let _ = verify_sha256(&m, b"key");
    let mut unknown = [0u16; 4];
    let n = m.unknown_comprehension_required(AttributeType::is_known, &mut unknown);
    assert!(n <= unknown.len());
    for t in [
        AttributeType::USERNAME,
        AttributeType::XOR_PEER_ADDRESS,
        AttributeType::FINGERPRINT,
        AttributeType::MESSAGE_INTEGRITY,
    ] {
        if let Some(v) = m.get(t) {
            assert!(m.attributes().any(|a| a.attr_type == t.0 && a.value == v));
        }
    }

    // Rebuild the counted attributes: the result parses to the same list.
    let mut buf = vec![0u8; data.len() + 64];
    let mut b = MessageBuilder::new(&mut buf, m.message_type(), txid);
    for a in m.attributes() {
        b.add(AttributeType(a.attr_type), a.value);
    }
    let n = b.finish().expect("a parsed message fits its own size");
    let again = Message::parse(&buf[..n]).expect("rebuilt message parses");
    assert_eq!(again.message_type(), m.message_type());
    let before: Vec<_> = m.attributes().map(|a| (a.attr_type, a.value)).collect();
    let after: Vec<_> = again.attributes().map(|a| (a.attr_type, a.value)).collect();
    assert_eq!(before, after);

    // The Binding service: an answer only for requests, and it parses.
    let mut out = [0u8; 1500];
    if let Some(n) = turnpike::binding::answer(data, "[2001:db8::1]:5".parse().unwrap(), &mut out) {
        assert_eq!(m.class(), Class::Request);
        let answer = Message::parse(&out[..n]).expect("Binding answer parses");
        assert_eq!(answer.transaction_id(), txid);
    }
});

/// A message without the cookie: the classic parser and the classic Binding
/// answer.
fn classic(data: &[u8]) {
    let Ok(m) = Message::parse_classic(data) else {
        return;
    };
    assert!(m.is_classic() && !m.has_fingerprint());
    let mut out = [0u8; 1500];
    let source = "192.0.2.1:1".parse().unwrap();
    if let Some(n) = turnpike::binding::answer_classic(&m, source, Some("fuzz"), &mut out) {
        assert_eq!((m.class(), m.method()), (Class::Request, Method::BINDING));
        let answer = Message::parse_classic(&out[..n]).expect("classic answer parses");
        assert_eq!(answer.classic_transaction_id(), m.classic_transaction_id());
        assert!(answer.get(AttributeType::XOR_MAPPED_ADDRESS).is_none());
    }
}
