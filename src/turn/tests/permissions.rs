//! CreatePermission and the peer policy, Send indications and peer data
//! judged by permissions.

use super::*;

#[test]
fn create_permission_checks_policy_family_and_presence() {
    let mut h = harness(Opts::default());
    let now = h.at(0);
    h.allocate(now, client(), &|b| transport_udp(b));
    for (i, denied) in [
        "10.0.0.1:1",
        "169.254.169.254:80",
        "[::ffff:127.0.0.1]:1",
        "127.0.0.1:1",
        "198.51.100.1:3478",
    ]
    .iter()
    .enumerate()
    {
        let r = h.call(
            now,
            client(),
            Method::CREATE_PERMISSION,
            "alice",
            20 + i as u8,
            &peer_attr(sa(denied)),
        );
        assert_eq!(code_of(&r), Some(403), "{denied}");
    }
    let r = h.call(
        now,
        client(),
        Method::CREATE_PERMISSION,
        "alice",
        30,
        &peer_attr(sa("[2606:4700::1]:1")),
    );
    assert_eq!(code_of(&r), Some(443), "IPv6 peer on an IPv4 allocation");
    let r = h.call(
        now,
        client(),
        Method::CREATE_PERMISSION,
        "alice",
        31,
        &|_| {},
    );
    assert_eq!(code_of(&r), Some(400));
    let r = h.call(
        now,
        client(),
        Method::CREATE_PERMISSION,
        "alice",
        32,
        &peer_attr(sa(PEER)),
    );
    assert_eq!(code_of(&r), None);
    assert!(h
        .server
        .allocation(&client())
        .unwrap()
        .has_permission(now, sa(PEER).ip()));
}

#[test]
fn create_permission_is_all_or_nothing() {
    let mut h = harness(Opts::default());
    let now = h.at(0);
    h.allocate(now, client(), &|b| transport_udp(b));
    let r = h.call(now, client(), Method::CREATE_PERMISSION, "alice", 2, &|b| {
        b.add_xor_address(AttributeType::XOR_PEER_ADDRESS, &sa(PEER));
        b.add_xor_address(AttributeType::XOR_PEER_ADDRESS, &sa("10.0.0.1:1"));
    });
    assert_eq!(code_of(&r), Some(403));
    assert!(!h
        .server
        .allocation(&client())
        .unwrap()
        .has_permission(now, sa(PEER).ip()));
}

#[test]
fn permission_table_is_bounded_with_508() {
    let mut h = harness(Opts {
        max_permissions: 2,
        ..Default::default()
    });
    let now = h.at(0);
    h.allocate(now, client(), &|b| transport_udp(b));
    for (i, p) in ["8.8.8.8:1", "8.8.4.4:1"].iter().enumerate() {
        assert_eq!(
            code_of(&h.call(
                now,
                client(),
                Method::CREATE_PERMISSION,
                "alice",
                2 + i as u8,
                &peer_attr(sa(p))
            )),
            None
        );
    }
    let r = h.call(
        now,
        client(),
        Method::CREATE_PERMISSION,
        "alice",
        5,
        &peer_attr(sa("1.1.1.1:1")),
    );
    assert_eq!(code_of(&r), Some(508));
    // Refreshing an existing one still works.
    assert_eq!(
        code_of(&h.call(
            now,
            client(),
            Method::CREATE_PERMISSION,
            "alice",
            6,
            &peer_attr(sa("8.8.8.8:2"))
        )),
        None
    );
}

#[test]
fn send_indication_needs_a_permission_and_the_permission_expires_after_300s() {
    let mut h = harness(Opts::default());
    let now = h.at(0);
    h.allocate(now, client(), &|b| transport_udp(b));
    let relay = h.opened[0].0;
    let ind = send_indication(sa(PEER), b"hello");
    assert_eq!(h.forward(now, client(), &ind), None, "no permission yet");
    h.call(
        now,
        client(),
        Method::CREATE_PERMISSION,
        "alice",
        2,
        &peer_attr(sa(PEER)),
    );
    assert_eq!(
        h.forward(h.at(299), client(), &ind),
        Some((relay, sa(PEER), b"hello".to_vec()))
    );
    assert_eq!(
        h.forward(h.at(300), client(), &ind),
        None,
        "permission expired"
    );
    // Another client's 5-tuple has no allocation: dropped.
    assert_eq!(h.forward(now, udp("203.0.113.5:1"), &ind), None);
}

#[test]
fn peer_data_without_permission_is_dropped_and_with_one_becomes_a_data_indication() {
    let mut h = harness(Opts::default());
    let now = h.at(0);
    h.allocate(now, client(), &|b| transport_udp(b));
    let relay = h.opened[0].0;
    assert_eq!(h.peer_sends(now, relay, sa(PEER), b"hi"), None);
    h.call(
        now,
        client(),
        Method::CREATE_PERMISSION,
        "alice",
        2,
        &peer_attr(sa("8.8.8.8:1")),
    );
    let bytes = h
        .peer_sends(now, relay, sa(PEER), b"hello")
        .expect("delivered");
    let m = Message::parse(&bytes).unwrap();
    assert_eq!(
        m.message_type(),
        MessageType::new(Method::DATA, Class::Indication)
    );
    let peer = decode_xor_address(
        m.get(AttributeType::XOR_PEER_ADDRESS).unwrap(),
        &m.transaction_id(),
    )
    .unwrap();
    assert_eq!(
        peer,
        sa(PEER),
        "permission is per IP; the port is the sender's"
    );
    assert_eq!(m.get(AttributeType::DATA), Some(&b"hello"[..]));
    let a = h.server.allocation(&client()).unwrap();
    assert_eq!((a.to_client.packets, a.to_client.bytes), (1, 5));
}
