//! ChannelBind and ChannelData: the binding rules, expiry and cool-down,
//! and padding over TCP.

use super::*;

#[test]
fn channel_bind_rules_give_400_and_channels_carry_data_both_ways() {
    let mut h = harness(Opts::default());
    let now = h.at(0);
    h.allocate(now, client(), &|b| transport_udp(b));
    let relay = h.opened[0].0;
    assert_eq!(h.bind(now, 2, 0x3FFF, PEER), Some(400));
    assert_eq!(h.bind(now, 3, 0x8000, PEER), Some(400));
    assert_eq!(h.bind(now, 4, 0x4000, "10.0.0.1:1"), Some(403));
    assert_eq!(h.bind(now, 5, 0x4000, PEER), None);
    assert_eq!(
        h.bind(now, 6, 0x4000, PEER),
        None,
        "rebinding the same pair refreshes"
    );
    assert_eq!(
        h.bind(now, 7, 0x4000, "8.8.4.4:1"),
        Some(400),
        "number bound to another peer"
    );
    assert_eq!(
        h.bind(now, 8, 0x4001, PEER),
        Some(400),
        "peer bound to another number"
    );
    let r = h.call(now, client(), Method::CHANNEL_BIND, "alice", 9, &|b| {
        b.add(AttributeType::CHANNEL_NUMBER, &[0x40, 0x02, 0, 0]);
    });
    assert_eq!(code_of(&r), Some(400), "no XOR-PEER-ADDRESS");

    // ChannelBind installed the permission too.
    assert_eq!(
        h.forward(now, client(), &channel_data(0x4000, b"abc")),
        Some((relay, sa(PEER), b"abc".to_vec()))
    );
    assert_eq!(
        h.forward(now, client(), &channel_data(0x4001, b"abc")),
        None,
        "unbound channel"
    );
    let back = h.peer_sends(now, relay, sa(PEER), b"xyz").unwrap();
    assert_eq!(back, channel_data(0x4000, b"xyz"), "UDP: no padding");
}

#[test]
fn channel_expires_after_600s_and_cools_down_for_300s() {
    let mut h = harness(Opts::default());
    h.allocate(h.at(0), client(), &|b| transport_udp(b));
    assert_eq!(h.bind(h.at(0), 2, 0x4000, PEER), None);
    // Keep the allocation alive.
    h.call(h.at(500), client(), Method::REFRESH, "alice", 3, &|b| {
        b.add_u32(AttributeType::LIFETIME, 3600)
    });
    h.call(
        h.at(500),
        client(),
        Method::CREATE_PERMISSION,
        "alice",
        4,
        &peer_attr(sa(PEER)),
    );
    assert!(h
        .forward(h.at(599), client(), &channel_data(0x4000, b"x"))
        .is_some());
    assert!(
        h.forward(h.at(600), client(), &channel_data(0x4000, b"x"))
            .is_none(),
        "channel expired"
    );
    assert_eq!(
        h.bind(h.at(700), 5, 0x4000, "8.8.4.4:1"),
        Some(400),
        "cooling down"
    );
    assert_eq!(
        h.bind(h.at(901), 6, 0x4000, "8.8.4.4:1"),
        None,
        "free after 5 minutes"
    );
}

#[test]
fn channel_data_over_tcp_is_padded() {
    let mut h = harness(Opts::default());
    let tcp = FiveTuple {
        transport: Transport::Tcp,
        ..client()
    };
    h.call(h.at(0), tcp, Method::ALLOCATE, "alice", 1, &|b| {
        transport_udp(b)
    });
    let relay = h.opened[0].0;
    let peer = sa(PEER);
    h.call(h.at(0), tcp, Method::CHANNEL_BIND, "alice", 2, &move |b| {
        b.add(AttributeType::CHANNEL_NUMBER, &[0x40, 0x00, 0, 0]);
        b.add_xor_address(AttributeType::XOR_PEER_ADDRESS, &peer);
    });
    let back = h.peer_sends(h.at(0), relay, peer, b"xyz").unwrap();
    assert_eq!(back, [0x40, 0x00, 0x00, 0x03, b'x', b'y', b'z', 0]);
    h.server.handle_client_closed(h.at(1), tcp);
    h.pump(h.at(1));
    assert_eq!(
        h.server.allocation_count(),
        0,
        "closing the connection ends the allocation"
    );
    assert_eq!(h.closed.len(), 1);
}
