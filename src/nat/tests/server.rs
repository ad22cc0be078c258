//! The RFC 5780 server rules, byte by byte (`nat::server::tests`).

use super::*;
use crate::nat::tests::{a1p1, a1p2, a2p1, a2p2};
use crate::stun::attributes::{
    decode_address, decode_unknown_attributes, decode_xor_address, ErrorCode,
};
use crate::stun::{MessageType, TransactionId};

const TXID: TransactionId = TransactionId([9; 12]);

fn client() -> SocketAddr {
    "203.0.113.7:40000".parse().unwrap()
}
fn full() -> ServerAddresses {
    ServerAddresses::with_alternate(a1p1(), a2p2()).unwrap()
}

fn request(build: impl FnOnce(&mut MessageBuilder)) -> Vec<u8> {
    let mut buf = vec![0u8; 8192];
    let mut b = MessageBuilder::new(
        &mut buf,
        MessageType::new(Method::BINDING, Class::Request),
        TXID,
    );
    build(&mut b);
    let n = b.finish().unwrap();
    buf.truncate(n);
    buf
}

fn change(c: ChangeRequest) -> Vec<u8> {
    request(|b| b.add(AttributeType::CHANGE_REQUEST, &c.encode()))
}

fn run(req: &[u8], local: SocketAddr, addrs: &ServerAddresses) -> (Reply, Vec<u8>) {
    let msg = Message::parse(req).unwrap();
    let mut out = vec![0u8; DEFAULT_MAX_PADDING + RESPONSE_OVERHEAD];
    let reply = answer(
        &msg,
        client(),
        local,
        addrs,
        &ServerOptions::default(),
        &mut out,
    )
    .expect("an answer");
    out.truncate(reply.len);
    (reply, out)
}

fn addr_attr(resp: &Message<'_>, t: AttributeType) -> Option<SocketAddr> {
    resp.get(t).map(|v| decode_address(v).unwrap())
}

fn error_code(resp: &Message<'_>) -> u16 {
    ErrorCode::decode(resp.get(AttributeType::ERROR_CODE).unwrap())
        .unwrap()
        .code
}

#[test]
fn plain_request_is_answered_from_where_it_arrived_with_all_four_addresses() {
    let (reply, bytes) = run(&request(|_| {}), a1p1(), &full());
    assert_eq!((reply.from, reply.to), (a1p1(), client()));
    let resp = Message::parse(&bytes).unwrap();
    assert_eq!(resp.class(), Class::SuccessResponse);
    assert_eq!(resp.transaction_id(), TXID);
    let xma = decode_xor_address(resp.get(AttributeType::XOR_MAPPED_ADDRESS).unwrap(), &TXID);
    assert_eq!(xma, Ok(client()));
    assert_eq!(
        addr_attr(&resp, AttributeType::MAPPED_ADDRESS),
        Some(client())
    );
    assert_eq!(
        addr_attr(&resp, AttributeType::RESPONSE_ORIGIN),
        Some(a1p1())
    );
    assert_eq!(addr_attr(&resp, AttributeType::OTHER_ADDRESS), Some(a2p2()));
    assert!(resp.get(AttributeType::PADDING).is_none());
    assert!(resp.get(AttributeType::SOFTWARE).is_none());
}

/// An RFC 3489 Binding request (id 0xA5 x 16) with `attrs`.
fn classic(attrs: &[(u16, &[u8])]) -> Vec<u8> {
    let mut v = vec![0x00, 0x01, 0x00, 0x00];
    v.extend_from_slice(&[0xA5; 16]);
    for (t, value) in attrs {
        v.extend_from_slice(&t.to_be_bytes());
        v.extend_from_slice(&(value.len() as u16).to_be_bytes());
        v.extend_from_slice(value);
    }
    let len = (v.len() - 20) as u16;
    v[2..4].copy_from_slice(&len.to_be_bytes());
    v
}

fn run_classic(req: &[u8], local: SocketAddr, addrs: &ServerAddresses) -> (Reply, Vec<u8>) {
    let msg = Message::parse_classic(req).unwrap();
    let mut out = vec![0u8; DEFAULT_MAX_PADDING + RESPONSE_OVERHEAD];
    let reply = answer(
        &msg,
        client(),
        local,
        addrs,
        &ServerOptions::default(),
        &mut out,
    )
    .expect("an answer");
    out.truncate(reply.len);
    (reply, out)
}

#[test]
fn classic_tests_are_answered_from_the_right_socket_with_source_and_changed_address() {
    // RFC 3489 §10.1: test I (no change), test II (change IP and port),
    // test III (change port), and test I(2) arriving on A2:P1.
    for (flags, arrived, from) in [
        (0u8, a1p1(), a1p1()),
        (6, a1p1(), a2p2()),
        (2, a1p1(), a1p2()),
        (4, a1p1(), a2p1()),
        (0, a2p1(), a2p1()),
    ] {
        let req = classic(&[(0x0003, &[0, 0, 0, flags])]);
        let (reply, bytes) = run_classic(&req, arrived, &full());
        assert_eq!((reply.from, reply.to), (from, client()), "flags {flags}");
        let resp = Message::parse_classic(&bytes).unwrap();
        assert_eq!(resp.class(), Class::SuccessResponse);
        assert_eq!(bytes[4..20], [0xA5; 16]);
        assert_eq!(
            addr_attr(&resp, AttributeType::MAPPED_ADDRESS),
            Some(client())
        );
        assert_eq!(addr_attr(&resp, AttributeType::SOURCE_ADDRESS), Some(from));
        let other = full().other_address(arrived);
        assert_eq!(addr_attr(&resp, AttributeType::CHANGED_ADDRESS), other);
        // Nothing a classic client cannot read.
        let types: Vec<u16> = resp.attributes().map(|a| a.attr_type).collect();
        assert_eq!(types, [0x0001, 0x0004, 0x0005], "flags {flags}");
        assert_eq!(bytes.len(), 20 + 3 * 12);
    }
}

#[test]
fn classic_response_address_gets_400_from_the_arrival_socket_to_the_source() {
    let elsewhere = [0, 1, 0x13, 0x88, 198, 51, 100, 9];
    for flags in [0u8, 6] {
        let req = classic(&[(0x0003, &[0, 0, 0, flags]), (0x0002, &elsewhere)]);
        let (reply, bytes) = run_classic(&req, a1p1(), &full());
        assert_eq!((reply.from, reply.to), (a1p1(), client()));
        let resp = Message::parse_classic(&bytes).unwrap();
        assert_eq!(error_code(&resp), 400);
        assert!(resp.get(AttributeType::MAPPED_ADDRESS).is_none());
    }
}

#[test]
fn classic_requests_may_not_use_rfc5780s_own_attributes() {
    // RESPONSE-PORT would move the answer; PADDING would grow it.
    let req = classic(&[(0x0027, &[0x13, 0x88, 0, 0]), (0x0026, &[0; 8])]);
    let (reply, bytes) = run_classic(&req, a1p1(), &full());
    assert_eq!((reply.from, reply.to), (a1p1(), client()));
    let resp = Message::parse_classic(&bytes).unwrap();
    assert_eq!(error_code(&resp), 420);
    let listed: Vec<u16> =
        decode_unknown_attributes(resp.get(AttributeType::UNKNOWN_ATTRIBUTES).unwrap())
            .unwrap()
            .collect();
    assert_eq!(listed, vec![0x0027, 0x0026]);
    // Without an alternate, CHANGE-REQUEST is listed as RFC 3489 pads it.
    let single = ServerAddresses::single(a1p1());
    let req = classic(&[(0x0003, &[0, 0, 0, 4])]);
    let (_, bytes) = run_classic(&req, a1p1(), &single);
    let resp = Message::parse_classic(&bytes).unwrap();
    let listed: Vec<u16> =
        decode_unknown_attributes(resp.get(AttributeType::UNKNOWN_ATTRIBUTES).unwrap())
            .unwrap()
            .collect();
    assert_eq!(listed, vec![0x0003, 0x0003]);
    // A classic Allocate is not a Binding request: no answer.
    let mut alloc = classic(&[]);
    alloc[1] = 0x03;
    let msg = Message::parse_classic(&alloc).unwrap();
    let mut out = [0u8; 256];
    let opts = ServerOptions::default();
    assert_eq!(
        answer(&msg, client(), a1p1(), &full(), &opts, &mut out),
        None
    );
}

#[test]
fn change_ip_answers_from_the_other_ip_on_the_same_port() {
    let (reply, bytes) = run(&change(ChangeRequest::IP), a1p1(), &full());
    assert_eq!(reply.from, a2p1());
    assert_eq!(reply.to, client());
    let resp = Message::parse(&bytes).unwrap();
    assert_eq!(
        addr_attr(&resp, AttributeType::RESPONSE_ORIGIN),
        Some(a2p1())
    );
    assert_eq!(addr_attr(&resp, AttributeType::OTHER_ADDRESS), Some(a2p2()));
}

#[test]
fn change_port_answers_from_the_same_ip_on_the_other_port() {
    let (reply, bytes) = run(&change(ChangeRequest::PORT), a1p1(), &full());
    assert_eq!(reply.from, a1p2());
    let resp = Message::parse(&bytes).unwrap();
    assert_eq!(
        addr_attr(&resp, AttributeType::RESPONSE_ORIGIN),
        Some(a1p2())
    );
}

#[test]
fn change_ip_and_port_answers_from_the_other_address() {
    let (reply, _) = run(&change(ChangeRequest::IP_AND_PORT), a1p1(), &full());
    assert_eq!(reply.from, a2p2());
}

#[test]
fn change_request_with_no_flags_answers_from_where_it_arrived() {
    let (reply, _) = run(&change(ChangeRequest::NONE), a1p1(), &full());
    assert_eq!(reply.from, a1p1());
}

#[test]
fn requests_on_the_other_sockets_change_relative_to_where_they_arrived() {
    // Arrived on A2:P2: Ca is A1, Cp is P1.
    assert_eq!(
        run(&change(ChangeRequest::IP), a2p2(), &full()).0.from,
        a1p2()
    );
    assert_eq!(
        run(&change(ChangeRequest::PORT), a2p2(), &full()).0.from,
        a2p1()
    );
    assert_eq!(
        run(&change(ChangeRequest::IP_AND_PORT), a2p2(), &full())
            .0
            .from,
        a1p1()
    );
    // Arrived on A1:P2: OTHER-ADDRESS is A2:P1 whatever the flags.
    let (reply, bytes) = run(&change(ChangeRequest::PORT), a1p2(), &full());
    assert_eq!(reply.from, a1p1());
    let resp = Message::parse(&bytes).unwrap();
    assert_eq!(addr_attr(&resp, AttributeType::OTHER_ADDRESS), Some(a2p1()));
}

#[test]
fn response_port_redirects_to_the_source_ip_at_that_port() {
    let req = request(|b| b.add(AttributeType::RESPONSE_PORT, &ResponsePort(50000).encode()));
    let (reply, bytes) = run(&req, a1p1(), &full());
    assert_eq!(reply.to, "203.0.113.7:50000".parse().unwrap());
    assert_eq!(reply.from, a1p1());
    let resp = Message::parse(&bytes).unwrap();
    // The mapped address is still where the request came from.
    assert_eq!(
        addr_attr(&resp, AttributeType::MAPPED_ADDRESS),
        Some(client())
    );
}

#[test]
fn response_port_works_on_a_single_address_server() {
    let req = request(|b| b.add(AttributeType::RESPONSE_PORT, &ResponsePort(50000).encode()));
    let (reply, _) = run(&req, a1p1(), &ServerAddresses::single(a1p1()));
    assert_eq!(reply.to, "203.0.113.7:50000".parse().unwrap());
}

#[test]
fn response_port_with_padding_gets_400() {
    let req = request(|b| {
        b.add(AttributeType::RESPONSE_PORT, &ResponsePort(50000).encode());
        b.add(AttributeType::PADDING, &[0; 100]);
    });
    let (reply, bytes) = run(&req, a1p1(), &full());
    assert_eq!((reply.from, reply.to), (a1p1(), client()));
    let resp = Message::parse(&bytes).unwrap();
    assert_eq!(resp.class(), Class::ErrorResponse);
    assert_eq!(error_code(&resp), 400);
}

#[test]
fn response_port_zero_or_malformed_gets_400() {
    for value in [&[0u8, 0, 0, 0][..], &[0x9c, 0x40][..]] {
        let req = request(|b| b.add(AttributeType::RESPONSE_PORT, value));
        let (_, bytes) = run(&req, a1p1(), &full());
        assert_eq!(
            error_code(&Message::parse(&bytes).unwrap()),
            400,
            "{value:?}"
        );
    }
}

#[test]
fn malformed_change_request_gets_400() {
    let req = request(|b| b.add(AttributeType::CHANGE_REQUEST, &[0, 0, 6]));
    let (_, bytes) = run(&req, a1p1(), &full());
    assert_eq!(error_code(&Message::parse(&bytes).unwrap()), 400);
}

#[test]
fn change_request_without_an_alternate_gets_420_listing_change_request() {
    for flags in [
        ChangeRequest::NONE,
        ChangeRequest::IP,
        ChangeRequest::IP_AND_PORT,
    ] {
        let (reply, bytes) = run(&change(flags), a1p1(), &ServerAddresses::single(a1p1()));
        assert_eq!((reply.from, reply.to), (a1p1(), client()));
        let resp = Message::parse(&bytes).unwrap();
        assert_eq!(resp.class(), Class::ErrorResponse);
        assert_eq!(error_code(&resp), 420);
        let listed: Vec<u16> =
            decode_unknown_attributes(resp.get(AttributeType::UNKNOWN_ATTRIBUTES).unwrap())
                .unwrap()
                .collect();
        assert_eq!(listed, vec![0x0003], "{flags:?}");
    }
}

#[test]
fn change_request_on_a_socket_outside_the_address_set_gets_420() {
    let stray: SocketAddr = "192.0.2.1:9999".parse().unwrap();
    let (reply, bytes) = run(&change(ChangeRequest::PORT), stray, &full());
    assert_eq!(reply.from, stray);
    assert_eq!(error_code(&Message::parse(&bytes).unwrap()), 420);
}

#[test]
fn unknown_attributes_are_listed_together_with_an_unserviceable_change_request() {
    let req = request(|b| {
        b.add(AttributeType(0x7777), b"x");
        b.add(AttributeType::CHANGE_REQUEST, &ChangeRequest::IP.encode());
    });
    let (_, bytes) = run(&req, a1p1(), &ServerAddresses::single(a1p1()));
    let resp = Message::parse(&bytes).unwrap();
    let listed: Vec<u16> =
        decode_unknown_attributes(resp.get(AttributeType::UNKNOWN_ATTRIBUTES).unwrap())
            .unwrap()
            .collect();
    assert_eq!(listed, vec![0x7777, 0x0003]);
}

#[test]
fn single_address_server_sends_response_origin_but_never_other_address() {
    let (reply, bytes) = run(&request(|_| {}), a1p1(), &ServerAddresses::single(a1p1()));
    assert_eq!(reply.from, a1p1());
    let resp = Message::parse(&bytes).unwrap();
    assert_eq!(
        addr_attr(&resp, AttributeType::RESPONSE_ORIGIN),
        Some(a1p1())
    );
    assert_eq!(addr_attr(&resp, AttributeType::OTHER_ADDRESS), None);
    assert_eq!(
        addr_attr(&resp, AttributeType::MAPPED_ADDRESS),
        Some(client())
    );
}

#[test]
fn padding_is_answered_with_padding_of_the_request_length_capped_at_the_mtu() {
    for (asked, expected) in [(1500usize, 1500usize), (7, 8), (0, 0), (4000, 1500)] {
        let req = request(|b| b.add(AttributeType::PADDING, &vec![b'p'; asked]));
        let (_, bytes) = run(&req, a1p1(), &full());
        let resp = Message::parse(&bytes).unwrap();
        assert_eq!(resp.class(), Class::SuccessResponse);
        assert_eq!(
            resp.get(AttributeType::PADDING).map(|v| v.len()),
            Some(expected),
            "asked for {asked}"
        );
    }
}

#[test]
fn padded_answer_is_never_much_larger_than_the_request() {
    let req = request(|b| b.add(AttributeType::PADDING, &[0; 1500]));
    let (_, bytes) = run(&req, a1p1(), &full());
    assert!(bytes.len() > 1500);
    assert!(
        bytes.len() <= req.len() + 64,
        "{} vs {}",
        bytes.len(),
        req.len()
    );
}

#[test]
fn fingerprint_and_software_are_added_when_due() {
    let req = request(|b| b.add_fingerprint());
    let msg = Message::parse(&req).unwrap();
    let mut out = [0u8; 512];
    let opts = ServerOptions {
        software: Some("turnpike"),
        ..ServerOptions::default()
    };
    let reply = answer(&msg, client(), a1p1(), &full(), &opts, &mut out).unwrap();
    let resp = Message::parse(&out[..reply.len]).unwrap();
    assert!(resp.has_fingerprint());
    assert_eq!(resp.get(AttributeType::SOFTWARE), Some(&b"turnpike"[..]));
}

#[test]
fn non_binding_requests_and_non_requests_are_not_answered() {
    let mut out = [0u8; 512];
    let mut buf = [0u8; 64];
    for t in [
        MessageType::new(Method::ALLOCATE, Class::Request),
        MessageType::new(Method::BINDING, Class::Indication),
        MessageType::new(Method::BINDING, Class::SuccessResponse),
    ] {
        let n = MessageBuilder::new(&mut buf, t, TXID).finish().unwrap();
        let msg = Message::parse(&buf[..n]).unwrap();
        let opts = ServerOptions::default();
        assert_eq!(
            decide(&msg, client(), a1p1(), &full(), &opts),
            Decision::Ignore
        );
        assert_eq!(
            answer(&msg, client(), a1p1(), &full(), &opts, &mut out),
            None
        );
    }
}

#[test]
fn too_small_a_buffer_gives_no_answer_rather_than_a_panic() {
    let req = request(|b| b.add(AttributeType::PADDING, &[0; 1500]));
    let msg = Message::parse(&req).unwrap();
    let mut out = [0u8; 100];
    let opts = ServerOptions::default();
    assert_eq!(
        answer(&msg, client(), a1p1(), &full(), &opts, &mut out),
        None
    );
}

#[test]
fn address_sets_need_two_ips_two_ports_one_family() {
    let v6: SocketAddr = "[2001:db8::1]:3479".parse().unwrap();
    let any: SocketAddr = "0.0.0.0:3479".parse().unwrap();
    assert_eq!(
        ServerAddresses::with_alternate(a1p1(), a1p2()),
        Err(AddressSetError::SameIp {
            primary: a1p1(),
            alternate: a1p2()
        })
    );
    assert_eq!(
        ServerAddresses::with_alternate(a1p1(), a2p1()),
        Err(AddressSetError::SamePort {
            primary: a1p1(),
            alternate: a2p1()
        })
    );
    assert!(matches!(
        ServerAddresses::with_alternate(a1p1(), v6),
        Err(AddressSetError::FamilyMismatch { .. })
    ));
    assert_eq!(
        ServerAddresses::with_alternate(a1p1(), any),
        Err(AddressSetError::Unspecified(any))
    );
    assert_eq!(
        full().local_addresses(),
        vec![a1p1(), a1p2(), a2p1(), a2p2()]
    );
    assert_eq!(
        ServerAddresses::single(a1p1()).local_addresses(),
        vec![a1p1()]
    );
}
