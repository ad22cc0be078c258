//! What the core tells the rest of the server (`poll_event`): allocations
//! created, refreshed and deleted, with their counters and why they
//! ended; and what it asks of the shell when one ends (`poll_request`).

use super::*;

/// An allocation for `tuple` that carried "abcd" to PEER and "xyz" back,
/// over channel 0x4000.
fn busy_allocation(h: &mut Harness, tuple: FiveTuple) -> RelayId {
    let a = h.allocate(h.at(0), tuple, &|b| transport_udp(b));
    assert_eq!(code_of(&a), None);
    let relay = h.opened.last().unwrap().0;
    let peer = sa(PEER);
    let r = h.call(
        h.at(0),
        tuple,
        Method::CHANNEL_BIND,
        "alice",
        2,
        &move |b| {
            b.add(AttributeType::CHANNEL_NUMBER, &[0x40, 0x00, 0, 0]);
            b.add_xor_address(AttributeType::XOR_PEER_ADDRESS, &peer);
        },
    );
    assert_eq!(code_of(&r), None);
    assert!(h
        .forward(h.at(1), tuple, &channel_data(0x4000, b"abcd"))
        .is_some());
    assert!(h.peer_sends(h.at(1), relay, peer, b"xyz").is_some());
    relay
}

#[test]
fn created_and_refreshed_events_name_the_allocation() {
    let mut h = harness(Opts::default());
    let a = h.allocate(h.at(0), client(), &|b| transport_udp(b));
    assert_eq!(h.events.len(), 1);
    let session = h.server.sessions()[0].id;
    assert_eq!(
        h.events[0],
        Event::AllocationCreated {
            session,
            tuple: client(),
            username: "alice".into(),
            realm: REALM.into(),
            credential: CredentialKind::Static,
            relayed: relayed(&a),
            lifetime: DEFAULT_LIFETIME,
            at: h.at(0),
        }
    );
    let r = h.call(h.at(5), client(), Method::REFRESH, "alice", 3, &|b| {
        b.add_u32(AttributeType::LIFETIME, 1200)
    });
    assert_eq!(code_of(&r), None);
    assert_eq!(
        h.events[1],
        Event::AllocationRefreshed {
            tuple: client(),
            username: "alice".into(),
            lifetime: Duration::from_secs(1200),
            at: h.at(5),
        }
    );
    assert!(h.ended().is_empty());
}

#[test]
fn expiry_ends_an_allocation_with_its_counters() {
    let mut h = harness(Opts::default());
    busy_allocation(&mut h, client());
    let lifetime = DEFAULT_LIFETIME.as_secs();
    h.server.handle_timeout(h.at(lifetime - 1));
    h.pump(h.at(lifetime - 1));
    assert!(h.ended().is_empty(), "not before its time");
    h.server.handle_timeout(h.at(lifetime));
    h.pump(h.at(lifetime));
    let ended = h.ended();
    assert_eq!(ended.len(), 1);
    let e = ended[0];
    assert_eq!(e.reason, EndReason::Expired);
    assert_eq!(e.tuple, client());
    assert_eq!(e.username, "alice");
    assert_eq!(e.realm, REALM);
    assert_eq!(e.relayed.len(), 1);
    assert_eq!(e.relayed[0].ip(), sa("192.0.2.10:0").ip());
    assert_eq!((e.start, e.end), (h.at(0), h.at(lifetime)));
    assert_eq!(
        e.to_peer,
        allocation::Counters {
            packets: 1,
            bytes: 4
        }
    );
    assert_eq!(
        e.to_client,
        allocation::Counters {
            packets: 1,
            bytes: 3
        }
    );
    assert!(h.stream_closes.is_empty(), "a UDP client has no stream");
}

#[test]
fn refresh_zero_ends_an_allocation_as_deleted() {
    let mut h = harness(Opts::default());
    busy_allocation(&mut h, client());
    let r = h.call(h.at(7), client(), Method::REFRESH, "alice", 3, &|b| {
        b.add_u32(AttributeType::LIFETIME, 0)
    });
    assert_eq!(code_of(&r), None);
    let ended = h.ended();
    assert_eq!(ended.len(), 1);
    assert_eq!(ended[0].reason, EndReason::Deleted);
    assert_eq!(ended[0].end, h.at(7));
    assert_eq!(ended[0].to_peer.bytes, 4);
    assert_eq!(ended[0].to_client.bytes, 3);
}

#[test]
fn an_admin_kill_ends_an_allocation_as_killed_once() {
    let mut h = harness(Opts::default());
    busy_allocation(&mut h, client());
    let id = h.server.sessions()[0].id;
    assert_eq!(h.server.end_session(h.at(9), id), Ok(()));
    assert_eq!(h.server.end_session(h.at(9), id), Err(SessionGone));
    h.pump(h.at(9));
    let ended = h.ended();
    assert_eq!(ended.len(), 1);
    assert_eq!(ended[0].reason, EndReason::Killed);
    assert_eq!(ended[0].end, h.at(9));
    assert_eq!(ended[0].to_peer.packets, 1);
    assert_eq!(h.closed.len(), 1, "its relay is closed");
}

#[test]
fn a_closed_stream_ends_its_allocation_and_a_refresh_zero_closes_the_stream() {
    let mut h = harness(Opts::default());
    let tcp = FiveTuple {
        transport: Transport::Tcp,
        ..client()
    };
    busy_allocation(&mut h, tcp);
    h.server.handle_client_closed(h.at(3), tcp);
    h.pump(h.at(3));
    let ended = h.ended();
    assert_eq!(ended.len(), 1);
    assert_eq!(ended[0].reason, EndReason::ClientClosed);
    assert_eq!(ended[0].tuple, tcp);
    assert_eq!(ended[0].to_client.bytes, 3);

    // RFC 8656 §3.1: the stream and its allocation end together, the
    // Refresh answer first.
    let tcp2 = FiveTuple {
        transport: Transport::Tcp,
        ..udp("203.0.113.5:40001")
    };
    h.allocate(h.at(4), tcp2, &|b| transport_udp(b));
    let r = h.call(h.at(5), tcp2, Method::REFRESH, "alice", 3, &|b| {
        b.add_u32(AttributeType::LIFETIME, 0)
    });
    assert_eq!(code_of(&r), None, "the answer is sent");
    assert_eq!(h.stream_closes.last(), Some(&tcp2));
    assert_eq!(h.ended().last().unwrap().reason, EndReason::Deleted);
}

#[test]
fn an_allocate_that_never_opened_its_relay_ends_without_an_event() {
    let mut h = harness(Opts::default());
    h.fail_opens = 100;
    let a = h.allocate(h.at(0), client(), &|b| transport_udp(b));
    assert_eq!(code_of(&a), Some(508));
    // Only the refusal: never created, so never deleted.
    assert!(matches!(
        h.events[..],
        [Event::AllocationRefused {
            code: 508,
            reason: Refusal::Capacity,
            ..
        }]
    ));
    assert!(h.stream_closes.is_empty());
}

#[test]
fn records_name_the_credential_kind_and_count_distinct_peers() {
    let mut h = harness(Opts::default());
    let bob = udp("203.0.113.6:40000");
    let a = h.call(h.at(0), bob, Method::ALLOCATE, "bob", 1, &|b| {
        transport_udp(b)
    });
    assert_eq!(code_of(&a), None);
    h.pump(h.at(0));
    assert!(matches!(
        h.events.last(),
        Some(Event::AllocationCreated {
            credential: CredentialKind::Stored,
            ..
        })
    ));
    // Three permissions to two IPs, one of them twice (a refresh): two peers.
    for (i, peer) in ["8.8.8.8:1000", "8.8.4.4:1000", "8.8.8.8:2000"]
        .iter()
        .enumerate()
    {
        let peer = sa(peer);
        let r = h.call(
            h.at(1),
            bob,
            Method::CREATE_PERMISSION,
            "bob",
            10 + i as u8,
            &move |b| b.add_xor_address(AttributeType::XOR_PEER_ADDRESS, &peer),
        );
        assert_eq!(code_of(&r), None);
    }
    assert_eq!(h.server.sessions()[0].peers, 2);
    assert_eq!(h.server.sessions()[0].credential, CredentialKind::Stored);
    h.server.end_all(h.at(2), EndReason::Shutdown);
    h.pump(h.at(2));
    let ended = h.ended();
    assert_eq!(ended.len(), 1);
    assert_eq!((ended[0].peers, ended[0].reason), (2, EndReason::Shutdown));
    assert_eq!(ended[0].credential, CredentialKind::Stored);
    assert_eq!(EndReason::Shutdown.as_str(), "shutdown");
}

#[test]
fn end_all_ends_every_allocation_once_with_the_reason_given() {
    let mut h = harness(Opts::default());
    busy_allocation(&mut h, client());
    h.allocate(h.at(0), udp("203.0.113.5:40001"), &|b| transport_udp(b));
    h.server.end_all(h.at(3), EndReason::Drained);
    h.pump(h.at(3));
    let reasons: Vec<_> = h.ended().iter().map(|e| e.reason).collect();
    assert_eq!(reasons, [EndReason::Drained, EndReason::Drained]);
    assert!(h.server.sessions().is_empty());
    h.server.end_all(h.at(4), EndReason::Shutdown);
    h.pump(h.at(4));
    assert_eq!(h.ended().len(), 2, "nothing ends twice");
}

#[test]
fn a_quota_refusal_is_an_event_naming_the_quota() {
    let mut h = harness(Opts {
        user_quota: 1,
        ..Opts::default()
    });
    h.allocate(h.at(0), client(), &|b| transport_udp(b));
    let r = h.allocate(h.at(1), udp("203.0.113.5:40001"), &|b| transport_udp(b));
    assert_eq!(code_of(&r), Some(486));
    let refused: Vec<_> = h
        .events
        .iter()
        .filter_map(|e| match e {
            Event::AllocationRefused {
                username,
                code,
                reason,
                ..
            } => Some((username.as_str(), *code, *reason)),
            _ => None,
        })
        .collect();
    assert_eq!(refused, [("alice", 486, Refusal::UserQuota)]);
}

#[test]
fn session_ids_of_two_starts_differ_when_their_first_generations_do() {
    // A restarted node must not give a new client the id an admin (or a
    // queued fleet command) still holds from the run before.
    let first_id = |first_generation| {
        let mut h = harness(Opts {
            first_generation,
            ..Default::default()
        });
        h.allocate(h.at(0), client(), &|b| transport_udp(b));
        h.server.sessions()[0].id
    };
    let before = first_id(0);
    let after = first_id(0x9e37_79b9);
    assert_eq!(before.slot, after.slot, "the same slot is reused");
    assert_ne!(before, after);
    assert_eq!(after.generation, 0x9e37_79b9u32.wrapping_add(1));
    // The last generation wraps instead of overflowing.
    assert_eq!(first_id(u32::MAX).generation, 0);
}
