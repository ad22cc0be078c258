//! Allocate and Refresh: the checks and their codes, lifetimes, expiry,
//! relay sockets and what clients are told.

use super::*;

#[test]
fn allocate_succeeds_with_relayed_mapped_lifetime_and_integrity() {
    let mut h = harness(Opts::default());
    let now = h.at(0);
    let answer = h.allocate(now, client(), &|b| transport_udp(b));
    let m = Message::parse(&answer).unwrap();
    assert_eq!(
        m.message_type(),
        MessageType::new(Method::ALLOCATE, Class::SuccessResponse)
    );
    let relayed = relayed(&answer);
    assert_eq!(relayed.len(), 1);
    assert_eq!(relayed[0].ip(), "192.0.2.10".parse::<IpAddr>().unwrap());
    assert!((50000..=50999).contains(&relayed[0].port()));
    assert_eq!(lifetime_of(&answer), 600);
    let mapped = decode_xor_address(
        m.get(AttributeType::XOR_MAPPED_ADDRESS).unwrap(),
        &m.transaction_id(),
    )
    .unwrap();
    assert_eq!(mapped, client().client);
    assert_eq!(verify_sha1(&m, &key("alice")), Ok(()));
    assert_eq!(h.opened.len(), 1);
    assert_eq!(h.opened[0].1, relayed[0]);
    assert!(!h.opened[0].2, "no DONT-FRAGMENT asked");
    assert_eq!(h.server.shared().quotas.total(), 1);
}

#[test]
fn retransmitted_allocate_gets_the_same_answer_not_437() {
    let mut h = harness(Opts::default());
    let now = h.at(0);
    let nonce = h.nonce(now, client());
    let req = request(Method::ALLOCATE, [5; 12], Some(("alice", &nonce)), &|b| {
        transport_udp(b)
    });
    let first = h.send(now, client(), &req);
    let again = h.send(h.at(2), client(), &req);
    assert_eq!(first, again);
    assert_eq!(h.opened.len(), 1, "one relay only");
    // A new transaction on the same 5-tuple is a second Allocate: 437.
    let other = request(Method::ALLOCATE, [6; 12], Some(("alice", &nonce)), &|b| {
        transport_udp(b)
    });
    assert_eq!(code_of(&h.send(now, client(), &other)[0]), Some(437));
}

#[test]
fn allocate_transport_checks_give_400_and_442() {
    let mut h = harness(Opts::default());
    let now = h.at(0);
    assert_eq!(code_of(&h.allocate(now, client(), &|_| {})), Some(400));
    let tcp = h.allocate(now, udp("203.0.113.5:40001"), &|b| {
        b.add(AttributeType::REQUESTED_TRANSPORT, &[6, 0, 0, 0])
    });
    let m = Message::parse(&tcp).unwrap();
    assert_eq!(code(&m), Some(442));
    assert_eq!(
        verify_sha1(&m, &key("alice")),
        Ok(()),
        "errors after authentication are signed"
    );
    assert_eq!(h.server.allocation_count(), 0);
}

#[test]
fn unknown_comprehension_required_attribute_in_allocate_gets_420() {
    let mut h = harness(Opts::default());
    let answer = h.allocate(h.at(0), client(), &|b| {
        transport_udp(b);
        b.add(AttributeType(0x7F01), b"??");
    });
    let m = Message::parse(&answer).unwrap();
    assert_eq!(code(&m), Some(420));
    assert_eq!(
        m.get(AttributeType::UNKNOWN_ATTRIBUTES),
        Some(&[0x7F, 0x01][..])
    );
}

#[test]
fn lifetime_is_capped_at_3600_and_raised_to_600() {
    let mut h = harness(Opts::default());
    let now = h.at(0);
    let long = h.allocate(now, client(), &|b| {
        transport_udp(b);
        b.add_u32(AttributeType::LIFETIME, 100_000);
    });
    assert_eq!(lifetime_of(&long), 3600);
    let short = h.allocate(now, udp("203.0.113.5:2"), &|b| {
        transport_udp(b);
        b.add_u32(AttributeType::LIFETIME, 30);
    });
    assert_eq!(lifetime_of(&short), 600);
}

#[test]
fn allocate_with_lifetime_zero_gets_the_default_not_zero() {
    let mut h = harness(Opts::default());
    let a = h.allocate(h.at(0), client(), &|b| {
        transport_udp(b);
        b.add_u32(AttributeType::LIFETIME, 0);
    });
    assert_eq!(code_of(&a), None);
    assert_eq!(lifetime_of(&a), 600);
    h.server.handle_timeout(h.at(599));
    assert_eq!(h.server.allocation_count(), 1, "alive until the default");
    h.server.handle_timeout(h.at(600));
    assert_eq!(h.server.allocation_count(), 0);
}

#[test]
fn a_refresh_flood_keeps_one_timer_entry_and_the_last_lifetime_still_rules() {
    let mut h = harness(Opts::default());
    h.allocate(h.at(0), client(), &|b| transport_udp(b));
    // 20,000 Refreshes, lengthening and shortening in turn: the heap must
    // not keep an entry per Refresh (F2: 600k Refreshes grew it 36 MiB).
    let mut last = h.at(0);
    for i in 0..20_000u32 {
        let now = h.at(u64::from(i / 100));
        let lifetime = if i % 2 == 0 { 3600 } else { 600 };
        let r = h.call(now, client(), Method::REFRESH, "alice", 3, &|b| {
            b.add_u32(AttributeType::LIFETIME, lifetime)
        });
        assert_eq!(lifetime_of(&r), lifetime);
        last = now;
        h.server.handle_timeout(now);
    }
    assert!(
        h.server.timer_entries() <= 2 * h.server.allocation_count() + 64,
        "{} timer entries for one allocation",
        h.server.timer_entries()
    );
    // The last Refresh asked for 600 s: it expires then, not an hour on.
    let end = last + Duration::from_secs(600);
    h.server.handle_timeout(end - Duration::from_secs(1));
    assert_eq!(h.server.allocation_count(), 1);
    h.server.handle_timeout(end);
    assert_eq!(h.server.allocation_count(), 0);

    // A lengthened allocation survives its first entry and dies at the end.
    h.allocate(h.at(10_000), client(), &|b| transport_udp(b));
    h.call(h.at(10_100), client(), Method::REFRESH, "alice", 4, &|b| {
        b.add_u32(AttributeType::LIFETIME, 3600)
    });
    assert_eq!(h.server.timer_entries(), 1, "extending pushes nothing");
    h.server.handle_timeout(h.at(10_600));
    assert_eq!(h.server.allocation_count(), 1, "re-armed, not expired");
    assert_eq!(h.server.poll_timeout(), Some(h.at(13_700)));
    // Shortened below the armed entry: a new entry, due first.
    h.call(h.at(10_700), client(), Method::REFRESH, "alice", 5, &|b| {
        b.add_u32(AttributeType::LIFETIME, 600)
    });
    assert_eq!(h.server.poll_timeout(), Some(h.at(11_300)));
    h.server.handle_timeout(h.at(11_299));
    assert_eq!(h.server.allocation_count(), 1);
    h.server.handle_timeout(h.at(11_300));
    assert_eq!(h.server.allocation_count(), 0);
}

#[test]
fn allocation_expires_at_its_lifetime_and_releases_everything_at_once() {
    let mut h = harness(Opts {
        min_port: 50000,
        max_port: 50000,
        ..Default::default()
    });
    h.allocate(h.at(0), client(), &|b| transport_udp(b));
    assert_eq!(h.server.poll_timeout(), Some(h.at(600)));
    h.server.handle_timeout(h.at(599));
    assert_eq!(h.server.allocation_count(), 1);
    h.server.handle_timeout(h.at(600));
    h.pump(h.at(600));
    assert_eq!(h.server.allocation_count(), 0);
    assert_eq!(h.closed, vec![h.opened[0].0], "relay socket closed");
    assert_eq!(h.server.shared().quotas.total(), 0, "quota released");
    // The single port is free again.
    let again = h.allocate(h.at(601), udp("203.0.113.5:3"), &|b| transport_udp(b));
    assert_eq!(relayed(&again)[0].port(), 50000);
}

#[test]
fn refresh_extends_and_refresh_zero_deletes_and_its_retransmission_is_not_437() {
    let mut h = harness(Opts::default());
    h.allocate(h.at(0), client(), &|b| transport_udp(b));
    let r = h.call(h.at(500), client(), Method::REFRESH, "alice", 9, &|b| {
        b.add_u32(AttributeType::LIFETIME, 1200)
    });
    assert_eq!(lifetime_of(&r), 1200);
    h.server.handle_timeout(h.at(1000));
    assert_eq!(
        h.server.allocation_count(),
        1,
        "refreshed allocation outlives the old expiry"
    );
    h.server.handle_timeout(h.at(1700));
    assert_eq!(h.server.allocation_count(), 0);

    h.allocate(h.at(2000), client(), &|b| transport_udp(b));
    let nonce = h.nonce(h.at(2000), client());
    let zero = request(Method::REFRESH, [10; 12], Some(("alice", &nonce)), &|b| {
        b.add_u32(AttributeType::LIFETIME, 0)
    });
    let first = h.send(h.at(2000), client(), &zero);
    assert_eq!(lifetime_of(&first[0]), 0);
    assert_eq!(h.server.allocation_count(), 0);
    assert_eq!(
        h.send(h.at(2001), client(), &zero),
        first,
        "retransmission answered the same"
    );
}

#[test]
fn refresh_without_allocation_gets_437_and_another_users_refresh_gets_441() {
    let mut h = harness(Opts::default());
    let r = h.call(h.at(0), client(), Method::REFRESH, "alice", 1, &|_| {});
    assert_eq!(code_of(&r), Some(437));
    h.allocate(h.at(0), client(), &|b| transport_udp(b));
    let r = h.call(h.at(1), client(), Method::REFRESH, "bob", 2, &|_| {});
    assert_eq!(code_of(&r), Some(441));
    let r = h.call(
        h.at(1),
        client(),
        Method::CREATE_PERMISSION,
        "bob",
        3,
        &peer_attr(sa(PEER)),
    );
    assert_eq!(code_of(&r), Some(441));
}

#[test]
fn exhausted_port_range_gives_508_and_ports_are_reused_after_release() {
    let mut h = harness(Opts {
        min_port: 50000,
        max_port: 50001,
        ..Default::default()
    });
    let now = h.at(0);
    assert_eq!(h.allocate_code(now, "203.0.113.5:1"), None);
    assert_eq!(h.allocate_code(now, "203.0.113.5:2"), None);
    assert_eq!(h.allocate_code(now, "203.0.113.5:3"), Some(508));
    assert_eq!(
        h.server.shared().quotas.total(),
        2,
        "the refused one holds no quota"
    );
    h.call(
        now,
        udp("203.0.113.5:1"),
        Method::REFRESH,
        "alice",
        2,
        &|b| b.add_u32(AttributeType::LIFETIME, 0),
    );
    assert_eq!(h.allocate_code(now, "203.0.113.5:3"), None);
}

#[test]
fn relay_socket_that_cannot_bind_is_retried_on_another_port_then_508() {
    let mut h = harness(Opts::default());
    h.fail_opens = 1;
    let answer = h.allocate(h.at(0), client(), &|b| transport_udp(b));
    assert_eq!(code_of(&answer), None);
    assert_eq!(h.opened.len(), 2);
    assert_ne!(h.opened[0].1, h.opened[1].1);
    assert_eq!(relayed(&answer), vec![h.opened[1].1]);

    h.fail_opens = 100;
    let answer = h.allocate(h.at(0), udp("203.0.113.5:2"), &|b| transport_udp(b));
    assert_eq!(code_of(&answer), Some(508));
    assert_eq!(h.server.allocation_count(), 1);
    assert_eq!(h.server.shared().quotas.total(), 1);
    assert_eq!(h.server.shared().ports.lock().unwrap().free(), 1000 - 1);
}

#[test]
fn dont_fragment_is_passed_to_the_relay_socket() {
    let mut h = harness(Opts::default());
    h.allocate(h.at(0), client(), &|b| {
        transport_udp(b);
        b.add(AttributeType::DONT_FRAGMENT, &[]);
    });
    assert!(h.opened[0].2);
}

#[test]
fn external_ip_is_what_clients_are_told() {
    let mut h = harness(Opts::default());
    let mut config = (**h.server.shared().config()).clone();
    config.external_ips = vec![(
        "192.0.2.10".parse().unwrap(),
        "203.0.113.77".parse().unwrap(),
    )];
    let shared = Shared::new(
        config,
        Authenticator::new(
            Directory::new({
                let mut c = Credentials::new(REALM);
                c.add_spec("alice:wonderland").unwrap();
                c
            }),
            NonceIssuer::new([9; 32], h.t0, Duration::from_secs(600), 0),
        ),
        Quotas::new(0, 0),
        PortPool::new(50000, 50010),
        TEST_KEYS,
    );
    h.server = Server::new(Arc::new(shared), 1);
    let a = h.allocate(h.at(0), client(), &|b| transport_udp(b));
    let r = relayed(&a)[0];
    assert_eq!(r.ip(), "203.0.113.77".parse::<IpAddr>().unwrap());
    assert_eq!(
        h.opened[0].1.ip(),
        "192.0.2.10".parse::<IpAddr>().unwrap(),
        "the socket binds the private address"
    );
}
