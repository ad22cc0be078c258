//! Drain (issue 15): a draining node answers a new Allocate with 300 and
//! the ALTERNATE-SERVER of its client's family and transport, or 403
//! "draining"; what is already allocated keeps working.

use super::*;

fn alt(transport: Transport, addr: &str, domain: Option<&str>) -> Alternate {
    Alternate {
        transport,
        addr: sa(addr),
        domain: domain.map(String::from),
    }
}

fn fleet() -> Vec<Alternate> {
    vec![
        alt(
            Transport::Udp,
            "192.0.2.50:3478",
            Some("turn-a.example.com"),
        ),
        alt(Transport::Udp, "[2001:db8::50]:3479", None),
        alt(Transport::Tcp, "192.0.2.50:3478", None),
        alt(
            Transport::Tls,
            "192.0.2.50:5349",
            Some("turn-a.example.com"),
        ),
    ]
}

fn tuple(transport: Transport, client: &str, server: &str) -> FiveTuple {
    FiveTuple {
        transport,
        client: sa(client),
        server: sa(server),
    }
}

/// Each attribute of type `t`, its raw value.
fn raw(bytes: &[u8], t: AttributeType) -> Vec<Vec<u8>> {
    let m = Message::parse(bytes).unwrap();
    m.attributes()
        .filter(|a| a.attr_type == t.0)
        .map(|a| a.value.to_vec())
        .collect()
}

fn reason(bytes: &[u8]) -> String {
    let m = Message::parse(bytes).unwrap();
    let e = ErrorCode::decode(m.get(AttributeType::ERROR_CODE).unwrap()).unwrap();
    e.reason.to_string()
}

fn draining(o: Opts) -> Harness {
    let h = harness(o);
    h.server.shared().drain.set_alternates(fleet());
    h.server.shared().drain.set_draining(true);
    h
}

#[test]
fn a_draining_node_answers_allocate_with_300_and_the_alternate_of_the_clients_family() {
    let mut h = draining(Opts::default());
    let now = h.at(0);
    let r = h.allocate(now, client(), &|b| transport_udp(b));
    let m = Message::parse(&r).unwrap();
    assert_eq!(m.class(), Class::ErrorResponse);
    assert_eq!(code(&m), Some(300));
    assert_eq!(reason(&r), "Try Alternate");
    // RFC 8489 §14.15: a plain MAPPED-ADDRESS-style value, family 0x01.
    assert_eq!(
        raw(&r, AttributeType::ALTERNATE_SERVER),
        [vec![0, 1, 0x0d, 0x96, 192, 0, 2, 50]]
    );
    assert!(
        raw(&r, AttributeType::ALTERNATE_DOMAIN).is_empty(),
        "no ALTERNATE-DOMAIN over UDP"
    );
    assert_eq!(verify_sha1(&m, &key("alice")), Ok(()), "signed");
    assert!(h.opened.is_empty(), "no relay opened");
    assert_eq!(h.server.allocation_count(), 0);
    assert_eq!(h.server.shared().quotas.total(), 0, "no quota taken");

    // An IPv6 client gets the IPv6 alternate, family 0x02.
    let v6 = tuple(Transport::Udp, "[2001:db8::7]:40000", "[2001:db8::1]:3478");
    let r = h.allocate(now, v6, &|b| transport_udp(b));
    assert_eq!(code_of(&r), Some(300));
    let mut want = vec![0, 2, 0x0d, 0x97];
    let ip: std::net::Ipv6Addr = "2001:db8::50".parse().unwrap();
    want.extend_from_slice(&ip.octets());
    assert_eq!(raw(&r, AttributeType::ALTERNATE_SERVER), [want]);
}

#[test]
fn tls_clients_get_the_tls_listener_and_its_alternate_domain() {
    let mut h = draining(Opts::default());
    let now = h.at(0);
    let tls = tuple(Transport::Tls, "203.0.113.5:40001", "198.51.100.1:5349");
    let r = h.allocate(now, tls, &|b| transport_udp(b));
    assert_eq!(code_of(&r), Some(300));
    assert_eq!(
        raw(&r, AttributeType::ALTERNATE_SERVER),
        [vec![0, 1, 0x14, 0xe5, 192, 0, 2, 50]]
    );
    assert_eq!(
        raw(&r, AttributeType::ALTERNATE_DOMAIN),
        [b"turn-a.example.com".to_vec()]
    );
    // TCP goes to the TCP listener, without a domain.
    let tcp = tuple(Transport::Tcp, "203.0.113.5:40002", "198.51.100.1:3478");
    let r = h.allocate(now, tcp, &|b| transport_udp(b));
    assert_eq!(code_of(&r), Some(300));
    assert_eq!(
        raw(&r, AttributeType::ALTERNATE_SERVER),
        [vec![0, 1, 0x0d, 0x96, 192, 0, 2, 50]]
    );
    assert!(raw(&r, AttributeType::ALTERNATE_DOMAIN).is_empty());
}

#[test]
fn alternates_of_one_family_are_taken_in_turn() {
    let mut h = draining(Opts::default());
    h.server.shared().drain.set_alternates(vec![
        alt(Transport::Udp, "192.0.2.50:3478", None),
        alt(Transport::Udp, "192.0.2.51:3478", None),
    ]);
    let now = h.at(0);
    let mut seen = vec![];
    for i in 0..4 {
        let r = h.allocate(now, udp(&format!("203.0.113.5:{}", 41000 + i)), &|b| {
            transport_udp(b)
        });
        seen.push(raw(&r, AttributeType::ALTERNATE_SERVER)[0][7]);
    }
    assert_eq!(seen, [50, 51, 50, 51]);
}

#[test]
fn without_an_alternate_of_the_family_a_draining_node_answers_403_draining() {
    let mut h = harness(Opts::default());
    h.server.shared().drain.set_draining(true);
    let now = h.at(0);
    let r = h.allocate(now, client(), &|b| transport_udp(b));
    assert_eq!(code_of(&r), Some(403));
    assert_eq!(reason(&r), "draining");
    assert!(raw(&r, AttributeType::ALTERNATE_SERVER).is_empty());
    assert_eq!(
        verify_sha1(&Message::parse(&r).unwrap(), &key("alice")),
        Ok(())
    );
    // Only an IPv6 node is ready: an IPv4 client still gets 403.
    h.server
        .shared()
        .drain
        .set_alternates(vec![alt(Transport::Udp, "[2001:db8::50]:3478", None)]);
    let r = h.allocate(now, udp("203.0.113.6:40000"), &|b| transport_udp(b));
    assert_eq!((code_of(&r), reason(&r).as_str()), (Some(403), "draining"));
    assert!(h.opened.is_empty());
}

#[test]
fn an_unauthenticated_allocate_to_a_draining_node_gets_401_first() {
    let mut h = draining(Opts::default());
    let now = h.at(0);
    let req = request(Method::ALLOCATE, [3; 12], None, &|b| transport_udp(b));
    let answers = h.send(now, client(), &req);
    let m = Message::parse(&answers[0]).unwrap();
    assert_eq!(code(&m), Some(401));
    assert!(m.get(AttributeType::ALTERNATE_SERVER).is_none());
}

#[test]
fn existing_allocations_refresh_permit_and_relay_while_draining_and_undrain_allocates_again() {
    let mut h = harness(Opts::default());
    let now = h.at(0);
    let r = h.allocate(now, client(), &|b| transport_udp(b));
    assert_eq!(code_of(&r), None);
    let relay = h.opened[0].0;
    h.server.shared().drain.set_alternates(fleet());
    h.server.shared().drain.set_draining(true);

    let later = h.at(60);
    let r = h.call(later, client(), Method::REFRESH, "alice", 2, &|b| {
        b.add_u32(AttributeType::LIFETIME, 600)
    });
    assert_eq!(code_of(&r), None, "Refresh works while draining");
    assert_eq!(lifetime_of(&r), 600);
    let r = h.call(
        later,
        client(),
        Method::CREATE_PERMISSION,
        "alice",
        3,
        &peer_attr(sa(PEER)),
    );
    assert_eq!(code_of(&r), None, "CreatePermission works while draining");
    let ind = send_indication(sa(PEER), b"to the peer");
    let (from, to, data) = h.forward(later, client(), &ind).expect("relayed");
    assert_eq!(
        (from, to, data.as_slice()),
        (relay, sa(PEER), &b"to the peer"[..])
    );
    let back = h
        .peer_sends(later, relay, sa(PEER), b"to the client")
        .expect("delivered");
    let m = Message::parse(&back).unwrap();
    assert_eq!(m.get(AttributeType::DATA), Some(&b"to the client"[..]));
    // The same client asking again is still 437 (its 5-tuple is in use).
    let r = h.allocate(later, client(), &|b| transport_udp(b));
    assert_eq!(code_of(&r), Some(437));
    // Another client is sent away.
    assert_eq!(h.allocate_code(later, "203.0.113.9:40000"), Some(300));

    // Undrained: new allocations succeed again.
    h.server.shared().drain.set_draining(false);
    assert_eq!(h.allocate_code(later, "203.0.113.9:40000"), None);
    assert_eq!(h.server.allocation_count(), 2);
}
