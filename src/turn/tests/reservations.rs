//! EVEN-PORT and RESERVATION-TOKEN: the held port, its 30 s, its end
//! with the allocation, and tokens unique across workers.

use super::*;

#[test]
fn even_port_with_reservation_then_the_token_claims_the_next_port() {
    let mut h = harness(Opts::default());
    let now = h.at(0);
    let a = h.allocate(now, udp("203.0.113.5:1"), &|b| {
        transport_udp(b);
        b.add(AttributeType::EVEN_PORT, &[0x80]);
    });
    let port = relayed(&a)[0].port();
    assert_eq!(port % 2, 0);
    let m = Message::parse(&a).unwrap();
    let token = m.get(AttributeType::RESERVATION_TOKEN).unwrap().to_vec();
    assert_eq!(token.len(), 8);

    let with_token = |b: &mut MessageBuilder<'_>| {
        transport_udp(b);
        b.add(AttributeType::RESERVATION_TOKEN, &token);
    };
    let b2 = h.allocate(now, udp("203.0.113.5:2"), &with_token);
    assert_eq!(relayed(&b2)[0].port(), port + 1);
    // A token is good once; unknown tokens get 508.
    assert_eq!(
        code_of(&h.allocate(now, udp("203.0.113.5:3"), &with_token)),
        Some(508)
    );
    let token_and_even = |b: &mut MessageBuilder<'_>| {
        transport_udp(b);
        b.add(AttributeType::RESERVATION_TOKEN, &[1; 8]);
        b.add(AttributeType::EVEN_PORT, &[0]);
    };
    assert_eq!(
        code_of(&h.allocate(now, udp("203.0.113.5:4"), &token_and_even)),
        Some(400)
    );
}

#[test]
fn even_port_reservations_go_with_their_allocation_and_never_escape_the_quota() {
    // F7: 600 cycles of {Allocate EVEN-PORT R=1; Refresh 0} under
    // user_quota = 1 used to hold every odd port for 30 s.
    let mut h = harness(Opts {
        user_quota: 1,
        min_port: 50000,
        max_port: 50019,
        ..Default::default()
    });
    let free = |h: &Harness| h.server.shared().ports.lock().unwrap().free();
    for i in 0..100u64 {
        let now = h.at(i / 10);
        let a = h.allocate(now, client(), &|b| {
            transport_udp(b);
            b.add(AttributeType::EVEN_PORT, &[0x80]);
        });
        assert_eq!(code_of(&a), None, "cycle {i}");
        assert_eq!(free(&h), 18, "the port and the one held next to it");
        let r = h.call(now, client(), Method::REFRESH, "alice", 8, &|b| {
            b.add_u32(AttributeType::LIFETIME, 0)
        });
        assert_eq!(code_of(&r), None);
        assert_eq!(free(&h), 20, "cycle {i}: both back at once");
    }
    // While the allocation lives, its reservation is claimable as before.
    let a = h.allocate(h.at(20), client(), &|b| {
        transport_udp(b);
        b.add(AttributeType::EVEN_PORT, &[0x80]);
    });
    let token = Message::parse(&a)
        .unwrap()
        .get(AttributeType::RESERVATION_TOKEN)
        .unwrap()
        .to_vec();
    let bob = h.call(
        h.at(20),
        udp("203.0.113.6:1"),
        Method::ALLOCATE,
        "bob",
        2,
        &|b| {
            transport_udp(b);
            b.add(AttributeType::RESERVATION_TOKEN, &token);
        },
    );
    assert_eq!(relayed(&bob)[0].port(), relayed(&a)[0].port() + 1);
    // The first allocation's end leaves the claimed port with its owner.
    h.call(h.at(21), client(), Method::REFRESH, "alice", 9, &|b| {
        b.add_u32(AttributeType::LIFETIME, 0)
    });
    assert_eq!(free(&h), 19);
}

#[test]
fn reservation_token_expires_after_30s_and_its_port_returns() {
    let mut h = harness(Opts {
        min_port: 50000,
        max_port: 50001,
        ..Default::default()
    });
    let a = h.allocate(h.at(0), udp("203.0.113.5:1"), &|b| {
        transport_udp(b);
        b.add(AttributeType::EVEN_PORT, &[0x80]);
    });
    let token = Message::parse(&a)
        .unwrap()
        .get(AttributeType::RESERVATION_TOKEN)
        .unwrap()
        .to_vec();
    let with_token = move |b: &mut MessageBuilder<'_>| {
        transport_udp(b);
        b.add(AttributeType::RESERVATION_TOKEN, &token);
    };
    // Both ports are taken: one allocated, one held.
    assert_eq!(h.allocate_code(h.at(1), "203.0.113.5:2"), Some(508));
    assert_eq!(
        code_of(&h.allocate(h.at(31), udp("203.0.113.5:3"), &with_token)),
        Some(508),
        "expired token"
    );
    let again = h.allocate(h.at(31), udp("203.0.113.5:4"), &|b| transport_udp(b));
    assert_eq!(relayed(&again)[0].port(), 50001, "the held port came back");
}

#[test]
fn unclaimed_reservation_returns_its_port_when_it_expires() {
    let mut h = harness(Opts {
        min_port: 50000,
        max_port: 50001,
        ..Default::default()
    });
    h.allocate(h.at(0), udp("203.0.113.5:1"), &|b| {
        transport_udp(b);
        b.add(AttributeType::EVEN_PORT, &[0x80]);
    });
    h.server.handle_timeout(h.at(29));
    assert_eq!(h.allocate_code(h.at(29), "203.0.113.5:2"), Some(508));
    h.server.handle_timeout(h.at(30));
    let again = h.allocate(h.at(30), udp("203.0.113.5:3"), &|b| transport_udp(b));
    assert_eq!(relayed(&again)[0].port(), 50001);
}

/// Workers share the reservation table: two workers (seeds 0 and 1, as the
/// shell numbers them) must never hand out the same token, or one client's
/// RTCP allocation takes another's port and the other gets 508 (seen with
/// two `turnutils_uclient` runs at once).
#[test]
fn reservation_tokens_differ_between_workers_sharing_one_table() {
    let mut h = harness(Opts::default());
    let shared = h.server.shared().clone();
    let mut tokens = std::collections::HashSet::new();
    for seed in [0x5eed_0000u64, 0x5eed_0001] {
        h.server = Server::new(shared.clone(), seed);
        for i in 0..20u16 {
            let a = h.allocate(
                h.at(0),
                udp(&format!("203.0.113.{}:{}", seed & 1, 100 + i)),
                &|b| {
                    transport_udp(b);
                    b.add(AttributeType::EVEN_PORT, &[0x80]);
                },
            );
            let m = Message::parse(&a).unwrap();
            let t = m.get(AttributeType::RESERVATION_TOKEN).unwrap().to_vec();
            assert!(tokens.insert(t), "token issued twice");
        }
    }
}
