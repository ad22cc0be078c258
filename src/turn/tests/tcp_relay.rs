//! RFC 6062 TCP allocations through the TURN core, with injected time:
//! Connect, ConnectionBind, ConnectionAttempt, 446/447, the peer policy
//! before any SYN, and the 30 s bind timeout.

use super::*;
use crate::turn::tcp_relay::Held;

fn tcp(client: &str) -> FiveTuple {
    FiveTuple {
        transport: Transport::Tcp,
        client: client.parse().unwrap(),
        server: "198.51.100.1:3478".parse().unwrap(),
    }
}

fn transport_tcp(b: &mut MessageBuilder<'_>) {
    b.add(AttributeType::REQUESTED_TRANSPORT, &[6, 0, 0, 0]);
}

fn connection_id(bytes: &[u8]) -> ConnId {
    let m = Message::parse(bytes).unwrap();
    let v = m.get(AttributeType::CONNECTION_ID).expect("CONNECTION-ID");
    ConnId(u32::from_be_bytes(v.try_into().unwrap()))
}

impl Harness {
    /// An authenticated request whose answer may come later: the answers
    /// queued now.
    fn call_async(
        &mut self,
        now: Instant,
        tuple: FiveTuple,
        method: Method,
        user: &str,
        attrs: Attrs<'_>,
    ) -> Vec<Vec<u8>> {
        let nonce = self.nonce(now, tuple);
        self.calls += 1;
        let mut id = [7; 12];
        id[..4].copy_from_slice(&self.calls.to_be_bytes());
        let req = request(method, id, Some((user, &nonce)), attrs);
        self.send(now, tuple, &req)
    }

    /// The answers queued for the client, whatever their destination.
    fn transmits(&mut self) -> Vec<(FiveTuple, Vec<u8>)> {
        let mut out = vec![];
        while let Some(t) = self.server.poll_transmit() {
            out.push((t.to, t.data));
        }
        out
    }
}

#[test]
fn tcp_allocations_are_off_by_default_and_need_a_stream_client() {
    let mut h = harness(Opts::default());
    let now = h.at(0);
    let a = h.allocate(now, tcp("203.0.113.5:40000"), &|b| transport_tcp(b));
    assert_eq!(code_of(&a), Some(442));
    let mut h = harness(Opts {
        tcp_relay: true,
        ..Opts::default()
    });
    let a = h.allocate(now, client(), &|b| transport_tcp(b));
    assert_eq!(
        code_of(&a),
        Some(400),
        "a UDP client cannot have a TCP relay"
    );
    let a = h.allocate(now, tcp("203.0.113.5:40000"), &|b| {
        transport_tcp(b);
        b.add(AttributeType::DONT_FRAGMENT, &[]);
    });
    assert_eq!(code_of(&a), Some(400));
}

#[test]
fn connect_bind_446_447_and_unbound_connections_time_out() {
    let mut h = harness(Opts {
        tcp_relay: true,
        ..Opts::default()
    });
    let now = h.at(0);
    let control = tcp("203.0.113.5:40000");
    let a = h.allocate(now, control, &|b| transport_tcp(b));
    assert_eq!(code_of(&a), None, "TCP allocation");

    // A denied peer: 403 and nothing asked of the shell (no SYN).
    let denied = sa("10.0.0.1:80");
    let r = h.call_async(now, control, Method::CONNECT, "alice", &peer_attr(denied));
    assert_eq!(code_of(&r[0]), Some(403));
    assert!(h.connects.is_empty());

    // Connect: the answer waits for the shell's connection.
    let peer = sa("8.8.8.8:8080");
    let r = h.call_async(now, control, Method::CONNECT, "alice", &peer_attr(peer));
    assert!(r.is_empty(), "no answer before the peer connects");
    let (conn, to) = h.connects[0];
    assert_eq!(to, peer);
    // A second Connect to the same peer while the first is pending: 446.
    let r = h.call_async(now, control, Method::CONNECT, "alice", &peer_attr(peer));
    assert_eq!(code_of(&r[0]), Some(446));
    h.server.peer_connected(now, conn, Ok(()));
    let t = h.transmits();
    assert_eq!(t.len(), 1);
    assert_eq!(t[0].0, control);
    assert_eq!(code_of(&t[0].1), None);
    assert_eq!(connection_id(&t[0].1), conn);
    let r = h.call_async(now, control, Method::CONNECT, "alice", &peer_attr(peer));
    assert_eq!(
        code_of(&r[0]),
        Some(446),
        "a connection to that peer exists"
    );

    // ConnectionBind on a new connection, by another user: 400, the same
    // answer as for an id that does not exist, so the id's existence
    // does not leak (F21); by the owner: success and the shell splices;
    // again: 400.
    let data = tcp("203.0.113.5:40001");
    let id = conn.0.to_be_bytes();
    let bind = |b: &mut MessageBuilder<'_>| b.add(AttributeType::CONNECTION_ID, &id);
    let r = h.call_async(now, data, Method::CONNECTION_BIND, "bob", &bind);
    let unknown_id = (conn.0 ^ 1).to_be_bytes();
    let unknown = h.call_async(now, data, Method::CONNECTION_BIND, "bob", &|b| {
        b.add(AttributeType::CONNECTION_ID, &unknown_id)
    });
    assert_eq!(code_of(&r[0]), Some(400));
    let error = |m: &[u8]| {
        let m = Message::parse(m).unwrap();
        (
            m.attributes().map(|a| a.attr_type).collect::<Vec<_>>(),
            m.get(AttributeType::ERROR_CODE).map(<[u8]>::to_vec),
        )
    };
    assert_eq!(
        error(&r[0]),
        error(&unknown[0]),
        "another user's id and an unknown id get the same answer"
    );
    assert!(h.binds.is_empty());
    let r = h.call_async(now, data, Method::CONNECTION_BIND, "alice", &bind);
    assert_eq!(code_of(&r[0]), None);
    assert_eq!(h.binds, vec![(conn, data)]);
    let r = h.call_async(
        now,
        tcp("203.0.113.5:40002"),
        Method::CONNECTION_BIND,
        "alice",
        &bind,
    );
    assert_eq!(code_of(&r[0]), Some(400));

    // A peer that does not answer: 447.
    let silent = sa("8.8.8.9:8080");
    h.call_async(now, control, Method::CONNECT, "alice", &peer_attr(silent));
    let (conn2, _) = h.connects[1];
    h.server
        .peer_connected(now, conn2, Err(ConnectError::Refused));
    let t = h.transmits();
    assert_eq!(code_of(&t[0].1), Some(447));

    // Connected but never bound: closed at 30 s, not before.
    let other = sa("8.8.8.10:8080");
    h.call_async(now, control, Method::CONNECT, "alice", &peer_attr(other));
    let (conn3, _) = h.connects[2];
    h.server.peer_connected(now, conn3, Ok(()));
    h.transmits();
    h.server.handle_timeout(h.at(29));
    h.pump(h.at(29));
    assert!(h.peer_closes.is_empty());
    assert!(h.server.poll_timeout().unwrap() <= h.at(30));
    h.server.handle_timeout(h.at(31));
    h.pump(h.at(31));
    assert_eq!(h.peer_closes, vec![conn3], "only the unbound one");

    // The allocation ends: its bound connection goes with it.
    let r = h.call(h.at(40), control, Method::REFRESH, "alice", 9, &|b| {
        b.add_u32(AttributeType::LIFETIME, 0)
    });
    assert_eq!(code_of(&r), None);
    assert_eq!(h.peer_closes, vec![conn3, conn]);
    assert!(h.server.shared().tcp_conns.is_empty());
}

#[test]
fn peers_connecting_in_need_a_permission_and_get_a_connection_attempt() {
    let mut h = harness(Opts {
        tcp_relay: true,
        ..Opts::default()
    });
    let now = h.at(0);
    let control = tcp("203.0.113.5:40000");
    h.allocate(now, control, &|b| transport_tcp(b));
    let relay = h.opened[0].0;
    let peer = sa("8.8.4.4:5555");
    assert_eq!(
        h.server.peer_accepted(now, relay, peer),
        None,
        "no permission"
    );
    let r = h.call(
        now,
        control,
        Method::CREATE_PERMISSION,
        "alice",
        3,
        &peer_attr(peer),
    );
    assert_eq!(code_of(&r), None);
    let conn = h.server.peer_accepted(now, relay, peer).expect("permitted");
    let t = h.transmits();
    assert_eq!(t.len(), 1);
    assert_eq!(t[0].0, control);
    let m = Message::parse(&t[0].1).unwrap();
    assert_eq!(
        m.message_type(),
        MessageType::new(Method::CONNECTION_ATTEMPT, Class::Indication)
    );
    assert_eq!(connection_id(&t[0].1), conn);
    let at = decode_xor_address(
        m.get(AttributeType::XOR_PEER_ADDRESS).unwrap(),
        &m.transaction_id(),
    )
    .unwrap();
    assert_eq!(at, peer);
    // ChannelBind and Send have no place on a TCP allocation.
    let r = h.call(now, control, Method::CHANNEL_BIND, "alice", 4, &|b| {
        b.add(AttributeType::CHANNEL_NUMBER, &[0x40, 0, 0, 0]);
        b.add_xor_address(AttributeType::XOR_PEER_ADDRESS, &peer);
    });
    assert_eq!(code_of(&r), Some(400));
}

#[test]
fn peer_connections_are_capped_per_allocation_and_per_user() {
    // F8: one allocation opened 5,000 outbound connections.
    let mut h = harness(Opts {
        tcp_relay: true,
        max_peer_connections: 3,
        max_peer_connections_per_user: 5,
        ..Opts::default()
    });
    let now = h.at(0);
    let control = tcp("203.0.113.5:40000");
    h.allocate(now, control, &|b| transport_tcp(b));
    let peer = |i: u8| sa(&format!("8.8.8.{i}:80"));
    for i in 1..=3 {
        let r = h.call_async(now, control, Method::CONNECT, "alice", &peer_attr(peer(i)));
        assert!(r.is_empty(), "pending");
    }
    let r = h.call_async(now, control, Method::CONNECT, "alice", &peer_attr(peer(4)));
    assert_eq!(code_of(&r[0]), Some(508), "pending Connects count");
    assert_eq!(h.connects.len(), 3, "no SYN beyond the cap");
    // A failed Connect gives its place back; a connected one keeps it.
    h.server
        .peer_connected(now, h.connects[0].0, Err(ConnectError::TimedOut));
    h.server.peer_connected(now, h.connects[1].0, Ok(()));
    h.transmits();
    let r = h.call_async(now, control, Method::CONNECT, "alice", &peer_attr(peer(5)));
    assert!(r.is_empty());
    let r = h.call_async(now, control, Method::CONNECT, "alice", &peer_attr(peer(6)));
    assert_eq!(code_of(&r[0]), Some(508));
    // Peers connecting in count too: at the cap they are closed at once.
    let relay = h.opened[0].0;
    let inbound = sa("8.8.4.4:5555");
    h.call(
        now,
        control,
        Method::CREATE_PERMISSION,
        "alice",
        3,
        &peer_attr(inbound),
    );
    assert_eq!(h.server.peer_accepted(now, relay, inbound), None);
    assert_eq!(h.server.shared().tcp_conns.of_user("alice"), 3);

    // The user's second allocation has the user's remaining two places.
    let control2 = tcp("203.0.113.5:40001");
    h.allocate(now, control2, &|b| transport_tcp(b));
    for i in 10..=11 {
        let r = h.call_async(now, control2, Method::CONNECT, "alice", &peer_attr(peer(i)));
        assert!(r.is_empty());
    }
    let r = h.call_async(
        now,
        control2,
        Method::CONNECT,
        "alice",
        &peer_attr(peer(12)),
    );
    assert_eq!(code_of(&r[0]), Some(508), "per-user cap");
    // Bob is not alice.
    let bob = tcp("203.0.113.6:40000");
    h.call(now, bob, Method::ALLOCATE, "bob", 1, &|b| transport_tcp(b));
    let r = h.call_async(now, bob, Method::CONNECT, "bob", &peer_attr(peer(20)));
    assert!(r.is_empty());

    // Ending the allocations frees every place, pending ones included
    // once the shell reports them.
    for (tuple, id) in [(control, 30), (control2, 31)] {
        h.call(h.at(1), tuple, Method::REFRESH, "alice", id, &|b| {
            b.add_u32(AttributeType::LIFETIME, 0)
        });
    }
    let pending: Vec<ConnId> = h.connects[2..].iter().map(|(c, _)| *c).collect();
    for conn in pending {
        h.server.peer_connected(h.at(2), conn, Ok(()));
    }
    assert_eq!(h.server.shared().tcp_conns.of_user("alice"), 0);
    assert_eq!(
        h.server.shared().tcp_conns.of_user("bob"),
        1,
        "bob's allocation lives on"
    );
    h.pump(h.at(2));
}

#[test]
fn connect_is_rate_limited_per_allocation() {
    let mut h = harness(Opts {
        tcp_relay: true,
        max_peer_connections: 1000,
        max_peer_connections_per_user: 1000,
        ..Opts::default()
    });
    let control = tcp("203.0.113.5:40000");
    h.allocate(h.at(0), control, &|b| transport_tcp(b));
    let connect_burst = |h: &mut Harness, at: u64, base: u16| {
        (0..30u16)
            .filter(|i| {
                let p = sa(&format!(
                    "8.8.{}.{}:80",
                    (base + i) / 250,
                    (base + i) % 250 + 1
                ));
                let r = h.call_async(h.at(at), control, Method::CONNECT, "alice", &peer_attr(p));
                r.is_empty()
            })
            .count()
    };
    assert_eq!(connect_burst(&mut h, 0, 0), 10, "a burst of ten");
    assert_eq!(connect_burst(&mut h, 1, 100), 10, "then ten a second");
    assert_eq!(h.connects.len(), 20);
}

/// What the shell would keep with a connection: a marker to find again.
#[derive(Debug, PartialEq)]
struct Socket(u32);

/// The requests queued now, without the harness's shell answering them.
fn requests(h: &mut Harness) -> Vec<Request> {
    std::iter::from_fn(|| h.server.poll_request()).collect()
}

#[test]
fn a_connect_the_peer_never_answers_gets_447_at_the_core_deadline() {
    // RFC 6062 §5.2: "If the connection attempt fails or times out, the
    // server MUST respond with a 447".
    let mut h = harness(Opts {
        tcp_relay: true,
        ..Opts::default()
    });
    let control = tcp("203.0.113.5:40000");
    h.allocate(h.at(0), control, &|b| transport_tcp(b));
    let peer = sa("8.8.8.8:8080");
    let r = h.call_async(h.at(0), control, Method::CONNECT, "alice", &peer_attr(peer));
    assert!(r.is_empty());
    let (conn, _) = h.connects[0];
    // The shell keeps its connecting task in the core's table.
    let tcp_conns = &h.server.shared().tcp_conns;
    assert!(tcp_conns.hold(conn, Held::new(Socket(1))).is_ok());
    assert_eq!(tcp_conns.of_user("alice"), 1);
    assert_eq!(h.server.poll_timeout(), Some(h.at(30)));

    h.server.handle_timeout(h.at(29));
    assert!(requests(&mut h).is_empty());
    assert!(h.transmits().is_empty(), "no answer before the deadline");

    h.server.handle_timeout(h.at(30));
    let t = h.transmits();
    assert_eq!(t.len(), 1);
    assert_eq!(t[0].0, control);
    assert_eq!(code_of(&t[0].1), Some(447));
    // The shell gets its task back to abort, and the place is free.
    match requests(&mut h).as_slice() {
        [Request::ClosePeer {
            conn: c,
            held: Some(_),
        }] => assert_eq!(*c, conn),
        other => panic!("expected ClosePeer with the held task, got {other:?}"),
    }
    assert_eq!(h.server.shared().tcp_conns.of_user("alice"), 0);
    assert!(h.server.shared().tcp_conns.is_empty());

    // A late answer from the shell changes nothing: no second answer.
    h.server.peer_connected(h.at(31), conn, Ok(()));
    assert!(h.transmits().is_empty());
    assert!(requests(&mut h).is_empty());
    // The same peer may be tried again.
    let r = h.call_async(
        h.at(32),
        control,
        Method::CONNECT,
        "alice",
        &peer_attr(peer),
    );
    assert!(r.is_empty(), "pending again, not 446");
}

#[test]
fn a_failed_connect_gets_447_at_once_whatever_the_failure() {
    let mut h = harness(Opts {
        tcp_relay: true,
        ..Opts::default()
    });
    let control = tcp("203.0.113.5:40000");
    h.allocate(h.at(0), control, &|b| transport_tcp(b));
    for (i, why) in [
        ConnectError::Refused,
        ConnectError::TimedOut,
        ConnectError::Other,
    ]
    .into_iter()
    .enumerate()
    {
        let peer = sa(&format!("8.8.8.{}:80", i + 1));
        h.call_async(h.at(1), control, Method::CONNECT, "alice", &peer_attr(peer));
        let (conn, _) = h.connects[i];
        h.server.peer_connected(h.at(2), conn, Err(why));
        let t = h.transmits();
        assert_eq!(code_of(&t[0].1), Some(447), "{why:?}");
    }
    assert!(h.server.shared().tcp_conns.is_empty());
    // Their connect deadlines find nothing left to end.
    h.server.handle_timeout(h.at(60));
    assert!(h.transmits().is_empty());
    assert!(requests(&mut h).is_empty());
}

#[test]
fn an_unbound_peer_is_handed_back_to_the_shell_at_the_bind_deadline() {
    let mut h = harness(Opts {
        tcp_relay: true,
        ..Opts::default()
    });
    let control = tcp("203.0.113.5:40000");
    h.allocate(h.at(0), control, &|b| transport_tcp(b));
    let relay = h.opened[0].0;
    let peer = sa("8.8.4.4:5555");
    h.call(
        h.at(0),
        control,
        Method::CREATE_PERMISSION,
        "alice",
        3,
        &peer_attr(peer),
    );
    let conn = h.server.peer_accepted(h.at(10), relay, peer).unwrap();
    h.transmits();
    let tcp_conns = &h.server.shared().tcp_conns;
    assert!(tcp_conns.hold(conn, Held::new(Socket(7))).is_ok());
    assert_eq!(h.server.poll_timeout(), Some(h.at(40)), "30 s after accept");
    h.server.handle_timeout(h.at(39));
    assert!(requests(&mut h).is_empty());
    h.server.handle_timeout(h.at(40));
    match requests(&mut h).pop() {
        Some(Request::ClosePeer {
            conn: c,
            held: Some(held),
        }) => {
            assert_eq!(c, conn);
            assert_eq!(held.downcast::<Socket>().unwrap(), Socket(7));
        }
        other => panic!("expected ClosePeer with the socket, got {other:?}"),
    }
    // The table has forgotten it: a late hold is refused (the shell
    // drops, so closes, what it offered).
    let back = h.server.shared().tcp_conns.hold(conn, Held::new(Socket(8)));
    assert_eq!(back.unwrap_err().downcast::<Socket>().unwrap(), Socket(8));
}

#[test]
fn with_oauth_only_the_client_whose_token_allocated_binds_its_connections() {
    use super::credentials::{oauth_opts, signed, token, with_token, NORTH};
    use crate::auth::oauth::Alg;
    let mut h = harness(Opts {
        tcp_relay: true,
        ..oauth_opts()
    });
    let now = h.at(0);
    // Two clients hold tokens of the same key, "north": the same USERNAME,
    // different mac keys ([7; 20] and [9; 20]).
    let mine = token(Alg::A256Gcm, NORTH, 7, UNIX0, 3600);
    let theirs = token(Alg::A256Gcm, NORTH, 9, UNIX0, 3600);
    let call = |h: &mut Harness, tuple: FiveTuple, method, txid, mac: u8, attrs: Attrs<'_>| {
        let nonce = h.nonce(now, tuple);
        let req = signed(method, txid, "north", &[mac; 16], &nonce, attrs);
        h.send(now, tuple, &req)
    };
    let control = tcp("203.0.113.5:40000");
    let a = call(
        &mut h,
        control,
        Method::ALLOCATE,
        1,
        7,
        &with_token(mine.clone(), &|b| transport_tcp(b)),
    );
    assert_eq!(code_of(&a[0]), None, "TCP allocation with a token");
    let peer = sa("8.8.8.8:8080");
    let r = call(&mut h, control, Method::CONNECT, 2, 7, &peer_attr(peer));
    assert!(r.is_empty(), "no answer before the peer connects");
    let (conn, _) = h.connects[0];
    h.server.peer_connected(now, conn, Ok(()));
    let t = h.transmits();
    assert_eq!(connection_id(&t[0].1), conn);

    let id = conn.0.to_be_bytes();
    let bind = |b: &mut MessageBuilder<'_>| b.add(AttributeType::CONNECTION_ID, &id);
    // The other client, with its own valid token of the same key: 400,
    // as for an unknown id, and the connection stays waiting for its owner.
    let other = tcp("203.0.113.9:50000");
    let r = call(
        &mut h,
        other,
        Method::CONNECTION_BIND,
        3,
        9,
        &with_token(theirs, &bind),
    );
    assert_eq!(code_of(&r[0]), Some(400));
    assert!(h.binds.is_empty());
    // The allocating client, on a new connection with its token: bound.
    let data = tcp("203.0.113.5:40001");
    let r = call(
        &mut h,
        data,
        Method::CONNECTION_BIND,
        4,
        7,
        &with_token(mine, &bind),
    );
    assert_eq!(code_of(&r[0]), None);
    h.pump(now);
    assert_eq!(h.binds, [(conn, data)]);
}
