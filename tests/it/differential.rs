//! Differential tests against the webrtc-rs `stun` crate: what one side
//! builds, the other parses, and they agree on every field.

use std::net::{IpAddr, SocketAddr};

use stun::error_code::{ErrorCode as TheirCode, ErrorCodeAttribute};
use stun::fingerprint::FINGERPRINT;
use stun::integrity::MessageIntegrity;
use stun::message::{Getter, Message as TheirMessage, Setter, BINDING_ERROR, BINDING_SUCCESS};
use stun::xoraddr::XorMappedAddress;
use turnpike::stun::attributes::{decode_xor_address, AttributeType, ErrorCode};
use turnpike::stun::integrity::verify_sha1;
use turnpike::stun::{Class, Message, MessageBuilder, MessageType, Method, TransactionId};

const PASSWORD: &str = "differential-key";

fn addrs() -> Vec<SocketAddr> {
    vec![
        "192.0.2.1:32853".parse().unwrap(),
        "203.0.113.200:1".parse().unwrap(),
        "[2001:db8:1234:5678:11:2233:4455:6677]:65535"
            .parse()
            .unwrap(),
        "[::1]:3478".parse().unwrap(),
    ]
}

fn theirs(bytes: &[u8]) -> TheirMessage {
    let mut m = TheirMessage::new();
    m.unmarshal_binary(bytes)
        .expect("webrtc-rs stun parses turnpike's message");
    m
}

#[test]
fn turnpike_success_response_parses_in_webrtc_stun() {
    for (i, addr) in addrs().into_iter().enumerate() {
        let txid = TransactionId([i as u8 + 1; 12]);
        let mut buf = [0u8; 256];
        let mut b = MessageBuilder::new(
            &mut buf,
            MessageType::new(Method::BINDING, Class::SuccessResponse),
            txid,
        );
        b.add_xor_mapped_address(&addr);
        b.add_message_integrity(PASSWORD.as_bytes());
        b.add_fingerprint();
        let n = b.finish().unwrap();

        let mut m = theirs(&buf[..n]);
        assert_eq!(m.typ, BINDING_SUCCESS);
        assert_eq!(m.transaction_id.0, txid.0);
        let mut xma = XorMappedAddress::default();
        xma.get_from(&m).unwrap();
        assert_eq!(SocketAddr::new(xma.ip, xma.port), addr);
        MessageIntegrity::new_short_term_integrity(PASSWORD.into())
            .check(&mut m)
            .expect("their MESSAGE-INTEGRITY check passes");
        assert!(MessageIntegrity::new_short_term_integrity("wrong".into())
            .check(&mut m)
            .is_err());
        FINGERPRINT
            .check(&m)
            .expect("their FINGERPRINT check passes");
    }
}

#[test]
fn turnpike_error_response_parses_in_webrtc_stun() {
    for (code, reason) in [
        (420u16, "Unknown Attribute"),
        (400, "Bad Request"),
        (438, "Stale Nonce"),
    ] {
        let mut buf = [0u8; 256];
        let mut b = MessageBuilder::new(
            &mut buf,
            MessageType::new(Method::BINDING, Class::ErrorResponse),
            TransactionId([9; 12]),
        );
        b.add_error_code(code, reason);
        b.add_fingerprint();
        let n = b.finish().unwrap();
        let m = theirs(&buf[..n]);
        assert_eq!(m.typ, BINDING_ERROR);
        let mut ec = ErrorCodeAttribute::default();
        ec.get_from(&m).unwrap();
        assert_eq!(ec.code.0, code);
        assert_eq!(ec.reason, reason.as_bytes());
        FINGERPRINT.check(&m).unwrap();
    }
}

#[test]
fn webrtc_stun_messages_parse_in_turnpike() {
    for addr in addrs() {
        let mut m = TheirMessage::new();
        let setters: Vec<Box<dyn Setter>> = vec![
            Box::new(BINDING_SUCCESS),
            Box::new(stun::agent::TransactionId::new()),
            Box::new(XorMappedAddress {
                ip: addr.ip(),
                port: addr.port(),
            }),
            Box::new(MessageIntegrity::new_short_term_integrity(PASSWORD.into())),
            Box::new(FINGERPRINT),
        ];
        m.build(&setters).unwrap();
        let ours = Message::parse(&m.raw)
            .expect("turnpike parses webrtc-rs stun's message (FINGERPRINT checked)");
        assert_eq!(ours.class(), Class::SuccessResponse);
        assert_eq!(ours.method(), Method::BINDING);
        assert_eq!(ours.transaction_id().0, m.transaction_id.0);
        let got = decode_xor_address(
            ours.get(AttributeType::XOR_MAPPED_ADDRESS).unwrap(),
            &ours.transaction_id(),
        )
        .unwrap();
        assert_eq!(got, addr);
        assert!(matches!(got.ip(), IpAddr::V4(_)) == addr.is_ipv4());
        assert_eq!(verify_sha1(&ours, PASSWORD.as_bytes()), Ok(()));
        assert!(verify_sha1(&ours, b"wrong").is_err());
        assert!(ours.has_fingerprint());
    }

    let mut m = TheirMessage::new();
    let setters: Vec<Box<dyn Setter>> = vec![
        Box::new(BINDING_ERROR),
        Box::new(stun::agent::TransactionId::new()),
        Box::new(ErrorCodeAttribute {
            code: TheirCode(486),
            reason: b"Allocation Quota Reached".to_vec(),
        }),
        Box::new(MessageIntegrity::new_long_term_integrity(
            "user".into(),
            "realm".into(),
            "pass".into(),
        )),
        Box::new(FINGERPRINT),
    ];
    m.build(&setters).unwrap();
    let ours = Message::parse(&m.raw).unwrap();
    let ec = ErrorCode::decode(ours.get(AttributeType::ERROR_CODE).unwrap()).unwrap();
    assert_eq!((ec.code, ec.reason), (486, "Allocation Quota Reached"));
    let key = turnpike::stun::integrity::long_term_key_md5("user", "realm", "pass");
    assert_eq!(verify_sha1(&ours, &key), Ok(()));
}

#[test]
fn webrtc_stun_binding_request_is_answered_by_turnpike() {
    let mut m = TheirMessage::new();
    let setters: Vec<Box<dyn Setter>> = vec![
        Box::new(stun::message::BINDING_REQUEST),
        Box::new(stun::agent::TransactionId::new()),
        Box::new(FINGERPRINT),
    ];
    m.build(&setters).unwrap();
    let source: SocketAddr = "198.51.100.4:5000".parse().unwrap();
    let mut out = [0u8; 256];
    let n = turnpike::binding::answer(&m.raw, source, &mut out).unwrap();
    let resp = theirs(&out[..n]);
    assert_eq!(resp.typ, BINDING_SUCCESS);
    assert_eq!(resp.transaction_id.0, m.transaction_id.0);
    let mut xma = XorMappedAddress::default();
    xma.get_from(&resp).unwrap();
    assert_eq!(SocketAddr::new(xma.ip, xma.port), source);
    FINGERPRINT.check(&resp).unwrap();
}
