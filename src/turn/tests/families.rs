//! Address families (RFC 8656 with RFC 6156's IPv6): 440, dual
//! allocations with ADDRESS-ERROR-CODE, 443 on Refresh.

use super::*;

#[test]
fn address_families_440_and_ipv6_relays() {
    let mut h = harness(Opts::default());
    let now = h.at(0);
    let v6 = |b: &mut MessageBuilder<'_>| {
        transport_udp(b);
        b.add(AttributeType::REQUESTED_ADDRESS_FAMILY, &[2, 0, 0, 0]);
    };
    assert_eq!(
        code_of(&h.allocate(now, udp("203.0.113.5:1"), &v6)),
        Some(440)
    );
    let bogus = |b: &mut MessageBuilder<'_>| {
        transport_udp(b);
        b.add(AttributeType::REQUESTED_ADDRESS_FAMILY, &[3, 0, 0, 0]);
    };
    assert_eq!(
        code_of(&h.allocate(now, udp("203.0.113.5:2"), &bogus)),
        Some(440)
    );

    let mut h = harness(Opts {
        relay_ips: vec!["192.0.2.10", "2001:db8::10"],
        ..Default::default()
    });
    let a = h.allocate(now, udp("203.0.113.5:1"), &v6);
    assert_eq!(
        relayed(&a)[0].ip(),
        "2001:db8::10".parse::<IpAddr>().unwrap()
    );
    let plain = h.allocate(now, udp("203.0.113.5:2"), &|b| transport_udp(b));
    assert!(relayed(&plain)[0].is_ipv4(), "no family named: IPv4");
}

#[test]
fn dual_allocation_gives_both_families_or_address_error_code() {
    let dual = |b: &mut MessageBuilder<'_>| {
        transport_udp(b);
        b.add(AttributeType::ADDITIONAL_ADDRESS_FAMILY, &[2, 0, 0, 0]);
    };
    let mut h = harness(Opts {
        relay_ips: vec!["192.0.2.10", "2001:db8::10"],
        ..Default::default()
    });
    let a = h.allocate(h.at(0), client(), &dual);
    let r = relayed(&a);
    assert_eq!(r.len(), 2);
    assert!(r[0].is_ipv4() && r[1].is_ipv6());

    let mut h = harness(Opts::default());
    let a = h.allocate(h.at(0), client(), &dual);
    assert_eq!(relayed(&a).len(), 1);
    let m = Message::parse(&a).unwrap();
    let aec = m.get(AttributeType::ADDRESS_ERROR_CODE).unwrap();
    assert_eq!(aec[0], 2, "the IPv6 family failed");
    assert_eq!(aec[2..4], [4, 40]);

    // Both family attributes together, or an IPv4 additional family: 400.
    let both = |b: &mut MessageBuilder<'_>| {
        transport_udp(b);
        b.add(AttributeType::REQUESTED_ADDRESS_FAMILY, &[1, 0, 0, 0]);
        b.add(AttributeType::ADDITIONAL_ADDRESS_FAMILY, &[2, 0, 0, 0]);
    };
    assert_eq!(
        code_of(&h.allocate(h.at(0), udp("203.0.113.5:9"), &both)),
        Some(400)
    );
    let v4_additional = |b: &mut MessageBuilder<'_>| {
        transport_udp(b);
        b.add(AttributeType::ADDITIONAL_ADDRESS_FAMILY, &[1, 0, 0, 0]);
    };
    assert_eq!(
        code_of(&h.allocate(h.at(0), udp("203.0.113.5:8"), &v4_additional)),
        Some(400)
    );
}

#[test]
fn refresh_naming_a_family_the_allocation_lacks_gets_443() {
    let mut h = harness(Opts::default());
    h.allocate(h.at(0), client(), &|b| transport_udp(b));
    let r = h.call(h.at(1), client(), Method::REFRESH, "alice", 2, &|b| {
        b.add(AttributeType::REQUESTED_ADDRESS_FAMILY, &[2, 0, 0, 0]);
    });
    assert_eq!(code_of(&r), Some(443));
    let r = h.call(h.at(1), client(), Method::REFRESH, "alice", 3, &|b| {
        b.add(AttributeType::REQUESTED_ADDRESS_FAMILY, &[1, 0, 0, 0]);
    });
    assert_eq!(code_of(&r), None);
}
