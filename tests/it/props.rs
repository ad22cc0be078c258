//! Property tests for the codec: no panics, round trips, framing.

use proptest::prelude::*;
use turnpike::stun::attributes::{self, AttributeType, ErrorCode};
use turnpike::stun::framing::{frame_len, frame_len_as, FrameKind, Framer};
use turnpike::stun::integrity::{verify_sha1, verify_sha256};
use turnpike::stun::{
    ChannelData, Class, Message, MessageBuilder, MessageType, Method, TransactionId, MAGIC_COOKIE,
};

/// Exercises every decoder on whatever parsed.
fn poke(bytes: &[u8]) {
    let _ = ChannelData::parse(bytes);
    let _ = frame_len(bytes);
    let mut out = vec![0u8; 4096];
    let _ = turnpike::binding::answer(bytes, "127.0.0.1:9".parse().unwrap(), &mut out);
    let _ = frame_len_as(bytes, true);
    if let Ok(m) = Message::parse_classic(bytes) {
        let _ =
            turnpike::binding::answer_classic(&m, "127.0.0.1:9".parse().unwrap(), None, &mut out);
        let _ = turnpike::binding::answer_classic(
            &m,
            "[::1]:9".parse().unwrap(),
            Some("x"),
            &mut [0u8; 24],
        );
        for a in m.attributes() {
            let _ = attributes::decode_address(a.value);
            let _ = ErrorCode::decode(a.value);
            let _ = attributes::decode_unknown_attributes(a.value).map(|i| i.count());
        }
    }
    if let Ok(m) = Message::parse(bytes) {
        let txid = m.transaction_id();
        for a in m.attributes() {
            let _ = attributes::decode_address(a.value);
            let _ = attributes::decode_xor_address(a.value, &txid);
            let _ = attributes::decode_text(a.value, attributes::MAX_TEXT_CHARS);
            let _ = attributes::decode_username(a.value);
            let _ = ErrorCode::decode(a.value);
            let _ = attributes::decode_unknown_attributes(a.value).map(|i| i.count());
        }
        let _ = verify_sha1(&m, b"key");
        let _ = verify_sha256(&m, b"key");
    }
}

/// Bytes with a valid STUN header in front of arbitrary attribute bytes.
fn stunish() -> impl Strategy<Value = Vec<u8>> {
    (any::<u16>(), prop::collection::vec(any::<u8>(), 0..600)).prop_map(|(t, mut body)| {
        body.truncate(body.len() & !3);
        let mut v = Vec::with_capacity(20 + body.len());
        v.extend_from_slice(&(t & 0x3FFF).to_be_bytes());
        v.extend_from_slice(&(body.len() as u16).to_be_bytes());
        v.extend_from_slice(&MAGIC_COOKIE.to_be_bytes());
        v.extend_from_slice(&[7; 12]);
        v.extend_from_slice(&body);
        v
    })
}

/// An RFC 3489 header (any 16-byte id but the cookie) in front of
/// arbitrary attribute bytes, its length field honest or not.
fn classic_shaped() -> impl Strategy<Value = Vec<u8>> {
    (
        any::<u16>(),
        any::<[u8; 16]>(),
        prop::collection::vec(any::<u8>(), 0..600),
        any::<bool>(),
        any::<u16>(),
    )
        .prop_map(|(t, mut id, body, honest, len)| {
            if id[..4] == MAGIC_COOKIE.to_be_bytes() {
                id[0] ^= 1;
            }
            let mut v = Vec::with_capacity(20 + body.len());
            v.extend_from_slice(&(t & 0x3FFF).to_be_bytes());
            let len = if honest { body.len() as u16 } else { len };
            v.extend_from_slice(&len.to_be_bytes());
            v.extend_from_slice(&id);
            v.extend_from_slice(&body);
            v
        })
}

/// Attribute types the round trip may use (not the integrity ones, whose
/// placement rules are tested separately).
fn attr_type() -> impl Strategy<Value = u16> {
    any::<u16>().prop_filter("not an integrity attribute", |t| {
        ![0x0008, 0x001C, 0x8028].contains(t)
    })
}

fn attrs() -> impl Strategy<Value = Vec<(u16, Vec<u8>)>> {
    prop::collection::vec(
        (attr_type(), prop::collection::vec(any::<u8>(), 0..64)),
        0..12,
    )
}

fn build(
    ty: MessageType,
    txid: [u8; 12],
    attrs: &[(u16, Vec<u8>)],
    integrity: bool,
    fp: bool,
) -> Vec<u8> {
    let mut buf = vec![0u8; 4096];
    let mut b = MessageBuilder::new(&mut buf, ty, TransactionId(txid));
    for (t, v) in attrs {
        b.add(AttributeType(*t), v);
    }
    if integrity {
        b.add_message_integrity(b"key");
        b.add_message_integrity_sha256(b"key");
    }
    if fp {
        b.add_fingerprint();
    }
    let n = b.finish().unwrap();
    buf.truncate(n);
    buf
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn parsing_never_panics_on_arbitrary_bytes(bytes in prop::collection::vec(any::<u8>(), 0..1500)) {
        poke(&bytes);
    }

    #[test]
    fn parsing_never_panics_on_classic_headers(bytes in classic_shaped()) {
        poke(&bytes);
        // What the classic parser accepts, the strict one refuses.
        if Message::parse_classic(&bytes).is_ok() {
            prop_assert!(Message::parse(&bytes).is_err());
        }
    }

    #[test]
    fn parsing_never_panics_on_stun_shaped_bytes(bytes in stunish()) {
        poke(&bytes);
    }

    #[test]
    fn what_the_builder_writes_parses_back_to_the_same_attributes(
        method in 0u16..0x1000,
        class in 0u8..4,
        txid in any::<[u8; 12]>(),
        attrs in attrs(),
        integrity in any::<bool>(),
        fp in any::<bool>(),
    ) {
        let class = [Class::Request, Class::Indication, Class::SuccessResponse, Class::ErrorResponse][class as usize];
        let ty = MessageType::new(Method(method), class);
        let bytes = build(ty, txid, &attrs, integrity, fp);
        let m = Message::parse(&bytes).unwrap();
        prop_assert_eq!(m.message_type(), ty);
        prop_assert_eq!(m.transaction_id().0, txid);
        let got: Vec<(u16, Vec<u8>)> = m
            .attributes()
            .filter(|a| ![0x0008, 0x001C].contains(&a.attr_type))
            .map(|a| (a.attr_type, a.value.to_vec()))
            .collect();
        prop_assert_eq!(got, attrs);
        prop_assert_eq!(m.has_fingerprint(), fp);
        if integrity {
            prop_assert!(verify_sha1(&m, b"key").is_ok());
            prop_assert!(verify_sha256(&m, b"key").is_ok());
            prop_assert!(verify_sha1(&m, b"other").is_err());
        }
    }

    #[test]
    fn framing_any_split_of_a_stream_yields_the_same_messages(
        frames in prop::collection::vec(
            prop_oneof![
                (attrs(), any::<bool>()).prop_map(|(a, fp)| (FrameKind::Stun, build(
                    MessageType::new(Method::BINDING, Class::Request), [1; 12], &a, false, fp))),
                (0x4000u16..=0x4FFF, prop::collection::vec(any::<u8>(), 0..300)).prop_map(|(ch, d)| {
                    let mut v = ch.to_be_bytes().to_vec();
                    v.extend_from_slice(&(d.len() as u16).to_be_bytes());
                    v.extend_from_slice(&d);
                    while v.len() % 4 != 0 { v.push(0); }
                    (FrameKind::ChannelData, v)
                }),
            ],
            0..10),
        cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..20),
    ) {
        let stream: Vec<u8> = frames.iter().flat_map(|(_, f)| f.clone()).collect();
        let mut points: Vec<usize> = cuts.iter().map(|i| i.index(stream.len() + 1)).collect();
        points.push(0);
        points.push(stream.len());
        points.sort_unstable();
        let mut framer = Framer::new();
        let mut got = Vec::new();
        for w in points.windows(2) {
            framer.push(&stream[w[0]..w[1]]);
            while let Some(f) = framer.next_frame().unwrap() {
                got.push((f.kind, f.bytes.to_vec()));
            }
        }
        prop_assert_eq!(got, frames);
        prop_assert_eq!(framer.pending(), 0);
    }

    #[test]
    fn framing_never_panics_on_arbitrary_streams(
        bytes in prop::collection::vec(any::<u8>(), 0..3000),
        cut in any::<prop::sample::Index>(),
    ) {
        let at = cut.index(bytes.len() + 1);
        let mut framer = Framer::new();
        for chunk in [&bytes[..at], &bytes[at..]] {
            framer.push(chunk);
            while let Ok(Some(f)) = framer.next_frame() {
                prop_assert!(!f.bytes.is_empty());
            }
        }
    }
}
