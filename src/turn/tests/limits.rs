//! Limits: quotas per user, in total and per source (486), and bandwidth.

use super::*;

#[test]
fn user_quota_gives_486_until_an_allocation_is_freed() {
    let mut h = harness(Opts {
        user_quota: 2,
        ..Default::default()
    });
    let now = h.at(0);
    for port in [1, 2] {
        assert_eq!(h.allocate_code(now, &format!("203.0.113.5:{port}")), None);
    }
    assert_eq!(h.allocate_code(now, "203.0.113.5:3"), Some(486));
    // Bob has his own quota.
    assert_eq!(
        code_of(&h.call(
            now,
            udp("203.0.113.5:4"),
            Method::ALLOCATE,
            "bob",
            1,
            &|b| transport_udp(b)
        )),
        None
    );
    let r = h.call(
        now,
        udp("203.0.113.5:1"),
        Method::REFRESH,
        "alice",
        2,
        &|b| b.add_u32(AttributeType::LIFETIME, 0),
    );
    assert_eq!(code_of(&r), None);
    assert_eq!(h.allocate_code(now, "203.0.113.5:3"), None);
}

#[test]
fn total_quota_gives_486() {
    let mut h = harness(Opts {
        total_quota: 1,
        ..Default::default()
    });
    let now = h.at(0);
    assert_eq!(h.allocate_code(now, "203.0.113.5:1"), None);
    assert_eq!(
        code_of(&h.call(
            now,
            udp("203.0.113.5:2"),
            Method::ALLOCATE,
            "bob",
            1,
            &|b| transport_udp(b)
        )),
        Some(486)
    );
}

#[test]
fn one_address_holds_at_most_max_allocations_per_ip_and_its_slash_64() {
    let mut h = harness(Opts {
        max_allocations_per_ip: 2,
        relay_ips: vec!["192.0.2.10", "2001:db8::10"],
        ..Default::default()
    });
    let now = h.at(0);
    assert_eq!(h.allocate_code(now, "203.0.113.5:1"), None);
    assert_eq!(h.allocate_code(now, "203.0.113.5:2"), None);
    assert_eq!(h.allocate_code(now, "203.0.113.5:3"), Some(486));
    assert_eq!(
        h.allocate_code(now, "203.0.113.6:1"),
        None,
        "another source"
    );
    assert_eq!(h.allocate_code(now, "[2001:db8:5::1]:1"), None);
    assert_eq!(h.allocate_code(now, "[2001:db8:5::2]:1"), None);
    assert_eq!(
        h.allocate_code(now, "[2001:db8:5::ffff:3]:1"),
        Some(486),
        "same /64"
    );
    assert_eq!(h.allocate_code(now, "[2001:db8:5:1::1]:1"), None);
    // Freed on delete.
    h.call(
        now,
        udp("203.0.113.5:1"),
        Method::REFRESH,
        "alice",
        3,
        &|b| b.add_u32(AttributeType::LIFETIME, 0),
    );
    assert_eq!(h.allocate_code(now, "203.0.113.5:3"), None);
}

#[test]
fn max_bps_limits_each_direction() {
    // 8000 bit/s = 1000 bytes per second, one second of burst.
    let mut h = harness(Opts {
        max_bps: 8000,
        ..Default::default()
    });
    let now = h.at(0);
    h.allocate(now, client(), &|b| transport_udp(b));
    h.call(
        now,
        client(),
        Method::CREATE_PERMISSION,
        "alice",
        2,
        &peer_attr(sa(PEER)),
    );
    let ind = send_indication(sa(PEER), &[0; 400]);
    let sent = (0..10)
        .filter(|_| h.forward(now, client(), &ind).is_some())
        .count();
    assert_eq!(sent, 2);
    let relay = h.opened[0].0;
    let got = (0..10)
        .filter(|_| h.peer_sends(now, relay, sa(PEER), &[0; 400]).is_some())
        .count();
    assert_eq!(got, 2);
    let later = h.at(1);
    assert!(h.forward(later, client(), &ind).is_some(), "refilled");
}
