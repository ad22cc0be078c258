//! The security checklist: what an attacker controls never steers an
//! answer, never stores anything, never panics.

use super::*;

/// An authenticated request with `after` appended after MESSAGE-INTEGRITY.
fn with_trailer(
    h: &mut Harness,
    now: Instant,
    method: Method,
    attrs: Attrs<'_>,
    after: Attrs<'_>,
) -> Vec<u8> {
    let nonce = h.nonce(now, client());
    h.calls += 1;
    let mut buf = vec![0u8; 1500];
    let mut id = [0x77; 12];
    id[..4].copy_from_slice(&h.calls.to_be_bytes());
    let mut b = MessageBuilder::new(
        &mut buf,
        MessageType::new(method, Class::Request),
        TransactionId(id),
    );
    attrs(&mut b);
    b.add_username("alice");
    b.add_realm(REALM);
    b.add_nonce(&nonce);
    b.add_message_integrity(&key("alice"));
    after(&mut b);
    let n = b.finish().unwrap();
    buf.truncate(n);
    let mut answers = h.send(now, client(), &buf);
    answers.pop().expect("an answer")
}

#[test]
fn attributes_after_message_integrity_never_steer_the_answer() {
    let mut h = harness(Opts::default());
    let now = h.at(0);
    // A LIFETIME smuggled after MESSAGE-INTEGRITY is ignored: default 600.
    let a = with_trailer(&mut h, now, Method::ALLOCATE, &|b| transport_udp(b), &|b| {
        b.add_u32(AttributeType::LIFETIME, 3000)
    });
    assert_eq!(code_of(&a), None);
    assert_eq!(lifetime_of(&a), 600);
    // A denied peer after MESSAGE-INTEGRITY does not poison a good request,
    // and a good peer there does not open anything.
    let r = with_trailer(
        &mut h,
        now,
        Method::CREATE_PERMISSION,
        &peer_attr(sa(PEER)),
        &|b| b.add_xor_address(AttributeType::XOR_PEER_ADDRESS, &sa("10.0.0.1:1")),
    );
    assert_eq!(code_of(&r), None);
    let r = with_trailer(&mut h, now, Method::CREATE_PERMISSION, &|_| {}, &|b| {
        b.add_xor_address(AttributeType::XOR_PEER_ADDRESS, &sa("1.1.1.1:1"))
    });
    assert_eq!(
        code_of(&r),
        Some(400),
        "no XOR-PEER-ADDRESS before MESSAGE-INTEGRITY"
    );
    assert!(!h
        .server
        .allocation(&client())
        .unwrap()
        .has_permission(now, sa("1.1.1.1:1").ip()));
}

#[test]
fn duplicate_singleton_attributes_resolve_to_the_first_every_time() {
    let mut h = harness(Opts::default());
    let now = h.at(0);
    let a = h.allocate(now, client(), &|b| {
        transport_udp(b);
        b.add_u32(AttributeType::LIFETIME, 1200);
        b.add_u32(AttributeType::LIFETIME, 60);
    });
    assert_eq!(lifetime_of(&a), 1200);
    // Two REQUESTED-TRANSPORT: the first (TCP) decides, whatever follows.
    let t = h.allocate(now, udp("203.0.113.5:9"), &|b| {
        b.add(AttributeType::REQUESTED_TRANSPORT, &[6, 0, 0, 0]);
        transport_udp(b);
    });
    assert_eq!(code_of(&t), Some(442));
}

#[test]
fn oversized_or_malformed_credentials_get_400_and_store_nothing() {
    let mut h = harness(Opts::default());
    let now = h.at(0);
    let nonce = h.nonce(now, client());
    let long_user = "u".repeat(513);
    let mut buf = vec![0u8; 1500];
    let mut b = MessageBuilder::new(
        &mut buf,
        MessageType::new(Method::ALLOCATE, Class::Request),
        TransactionId([0x31; 12]),
    );
    transport_udp(&mut b);
    b.add_username(&long_user);
    b.add_realm(REALM);
    b.add_nonce(&nonce);
    b.add_message_integrity(&key("alice"));
    let n = b.finish().unwrap();
    assert_eq!(code_of(&h.send(now, client(), &buf[..n])[0]), Some(400));
    assert_eq!(h.server.allocation_count(), 0);
}

#[test]
fn zero_length_attributes_in_requests_get_400() {
    let mut h = harness(Opts::default());
    let now = h.at(0);
    for (i, attr) in [
        AttributeType::REQUESTED_TRANSPORT,
        AttributeType::LIFETIME,
        AttributeType::REQUESTED_ADDRESS_FAMILY,
        AttributeType::RESERVATION_TOKEN,
    ]
    .into_iter()
    .enumerate()
    {
        let a = h.allocate(now, udp(&format!("203.0.113.5:{}", 100 + i)), &move |b| {
            if attr != AttributeType::REQUESTED_TRANSPORT {
                transport_udp(b);
            }
            b.add(attr, &[]);
        });
        assert_eq!(code_of(&a), Some(400), "{attr:?}");
    }
    h.allocate(now, client(), &|b| transport_udp(b));
    for (i, attr) in [
        AttributeType::XOR_PEER_ADDRESS,
        AttributeType::CHANNEL_NUMBER,
    ]
    .into_iter()
    .enumerate()
    {
        let r = h.call(
            now,
            client(),
            Method::CHANNEL_BIND,
            "alice",
            40 + i as u8,
            &move |b| {
                b.add(attr, &[]);
                if attr == AttributeType::XOR_PEER_ADDRESS {
                    b.add(AttributeType::CHANNEL_NUMBER, &[0x40, 0, 0, 0]);
                } else {
                    b.add_xor_address(AttributeType::XOR_PEER_ADDRESS, &sa(PEER));
                }
            },
        );
        assert_eq!(code_of(&r), Some(400), "{attr:?}");
    }
    let r = h.call(
        now,
        client(),
        Method::CREATE_PERMISSION,
        "alice",
        50,
        &|b| b.add(AttributeType::XOR_PEER_ADDRESS, &[0, 3, 0, 1, 1, 2, 3, 4]),
    );
    assert_eq!(code_of(&r), Some(400), "unknown address family");
}

#[test]
fn send_indication_and_channel_data_without_allocation_or_with_garbage_are_dropped() {
    let mut h = harness(Opts::default());
    let now = h.at(0);
    assert_eq!(
        h.forward(now, client(), &send_indication(sa(PEER), b"x")),
        None
    );
    assert_eq!(h.forward(now, client(), &channel_data(0x4000, b"x")), None);
    h.allocate(now, client(), &|b| transport_udp(b));
    h.call(
        now,
        client(),
        Method::CREATE_PERMISSION,
        "alice",
        2,
        &peer_attr(sa(PEER)),
    );
    // ChannelData whose length runs past the datagram.
    assert_eq!(
        h.forward(now, client(), &[0x40, 0x00, 0x00, 0x10, 1, 2]),
        None
    );
    // A Send indication to a denied address is dropped even with the
    // permission for another IP.
    assert_eq!(
        h.forward(now, client(), &send_indication(sa("10.0.0.1:1"), b"x")),
        None
    );
    assert_eq!(
        h.server.poll_transmit(),
        None,
        "indications and data never get answers"
    );
}

mod never_panics {
    use super::*;
    use proptest::prelude::*;

    fn stun_shaped() -> impl Strategy<Value = Vec<u8>> {
        (0u16..0x4000, prop::collection::vec(any::<u8>(), 0..400)).prop_map(|(t, mut body)| {
            body.truncate(body.len() & !3);
            let mut v = t.to_be_bytes().to_vec();
            v.extend_from_slice(&(body.len() as u16).to_be_bytes());
            v.extend_from_slice(&crate::stun::MAGIC_COOKIE.to_be_bytes());
            v.extend_from_slice(&[3; 12]);
            v.extend_from_slice(&body);
            v
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 1000, ..ProptestConfig::default() })]

        #[test]
        fn client_and_peer_input_never_panics(
            inputs in prop::collection::vec(prop_oneof![prop::collection::vec(any::<u8>(), 0..300), stun_shaped()], 1..20),
            peer_data in prop::collection::vec(any::<u8>(), 0..300),
        ) {
            let mut h = harness(Opts::default());
            let now = h.at(0);
            h.allocate(now, client(), &|b| transport_udp(b));
            h.call(now, client(), Method::CHANNEL_BIND, "alice", 2, &|b| {
                b.add(AttributeType::CHANNEL_NUMBER, &[0x40, 0, 0, 0]);
                b.add_xor_address(AttributeType::XOR_PEER_ADDRESS, &sa(PEER));
            });
            for (i, bytes) in inputs.iter().enumerate() {
                let tuple = if i % 2 == 0 { client() } else { udp("203.0.113.9:1") };
                let _ = h.server.handle_client(now, tuple, bytes);
                h.pump(now);
                while h.server.poll_transmit().is_some() {}
            }
            let relay = h.opened[0].0;
            let _ = h.peer_sends(now, relay, sa(PEER), &peer_data);
            let _ = h.peer_sends(now, RelayId(999), sa(PEER), &peer_data);
            h.server.handle_timeout(h.at(4000));
            h.pump(h.at(4000));
            prop_assert_eq!(h.server.allocation_count(), 0);
        }
    }
}
