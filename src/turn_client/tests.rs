//! The client against the real `turn::Server`, in memory (quinn's "Pair"
//! shape): bytes are shuttled between the two with injected time, so
//! retransmission timing is exact and nothing sleeps.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::data::{channel_data, send_indication, PeerData};
use super::*;
use crate::auth::nonce::{NonceIssuer, FEATURE_PASSWORD_ALGORITHMS};
use crate::auth::{Authenticator, Credentials, Directory};
use crate::stun::client::{ClientCredentials, Integrity};
use crate::stun::TransactionId;
use crate::turn::policy::PeerPolicy;
use crate::turn::ports::PortPool;
use crate::turn::quota::Quotas;
use crate::turn::{
    FiveTuple, Server, Shared, Transport, TurnConfig, DEFAULT_LIFETIME, MAX_LIFETIME,
    PEER_HEADROOM, PEER_TAILROOM,
};

const REALM: &str = "turnpike.test";
/// How long the server's nonces stay fresh.
const NONCE_LIFE: Duration = Duration::from_secs(600);

fn peer() -> SocketAddr {
    "8.8.8.8:5000".parse().unwrap()
}

fn server(t0: Instant, tcp_relay: bool) -> Server {
    let mut users = Credentials::new(REALM);
    users.add_spec("alice:wonderland").unwrap();
    let nonces = NonceIssuer::new([9; 32], t0, NONCE_LIFE, FEATURE_PASSWORD_ALGORITHMS);
    let config = TurnConfig {
        relay_ips: vec!["192.0.2.10".parse().unwrap()],
        external_ips: vec![],
        default_lifetime: DEFAULT_LIFETIME,
        max_lifetime: MAX_LIFETIME,
        max_permissions: 8,
        max_channels: 4,
        max_bps: 0,
        software: None,
        policy: PeerPolicy::new(vec![], vec![], false, vec![]),
        clients: Default::default(),
        auth_reply_rate: 0,
        strict_expiry: false,
        tcp_relay,
        max_peer_connections: 8,
        max_peer_connections_per_user: 8,
        stun_backward_compatibility: true,
    };
    let auth = Authenticator::new(Directory::new(users), nonces).with_clock(t0, 1_700_000_000);
    let keys = crate::turn::SharedKeys {
        reservation_token: [1; 32],
        reply_budget: [2; 32],
    };
    let shared = Shared::new(
        config,
        auth,
        Quotas::new(0, 0),
        PortPool::new(50000, 50999),
        keys,
    );
    Server::new(Arc::new(shared), 42)
}

/// A client and a server joined by a lossy in-memory link.
struct Pair {
    server: Server,
    client: TurnClient,
    tuple: FiveTuple,
    t0: Instant,
    now: Instant,
    /// Client datagrams to lose before the next one gets through.
    lose: usize,
    /// When each client datagram left, from `t0`.
    sent: Vec<Duration>,
}

impl Pair {
    fn new(password: &str) -> Self {
        Self::with(ClientCredentials::new("alice", password), Transport::Udp)
    }

    fn with(creds: ClientCredentials, transport: Transport) -> Self {
        let t0 = Instant::now();
        Pair {
            server: server(t0, transport == Transport::Tcp),
            client: TurnClient::new(
                creds,
                TxIds::new([5; 32]),
                Schedule::RFC8489,
                transport.is_stream(),
            ),
            tuple: FiveTuple {
                transport,
                client: "203.0.113.5:40000".parse().unwrap(),
                server: "198.51.100.1:3478".parse().unwrap(),
            },
            t0,
            now: t0,
            lose: 0,
            sent: vec![],
        }
    }

    fn elapsed(&self) -> Duration {
        self.now - self.t0
    }

    /// Drives `req` to its end; returns the result and the current
    /// request's send count.
    fn run(&mut self, req: Request) -> (Result<Answer, ClientError>, u32) {
        let Pair {
            server,
            client,
            tuple,
            t0,
            now,
            lose,
            sent,
        } = self;
        let mut call = client.call(*now, req).unwrap();
        loop {
            let bytes = match call.poll(*now) {
                Step::Done(r) => return (r, call.requests()),
                Step::Wait(at) => {
                    *now = at;
                    server.handle_timeout(at);
                    continue;
                }
                Step::Transmit(b) => b.to_vec(),
            };
            sent.push(*now - *t0);
            if *lose > 0 {
                *lose -= 1;
                continue;
            }
            server.handle_client(*now, *tuple, &bytes);
            while let Some(r) = server.poll_request() {
                use crate::turn::Request as Shell;
                if let Shell::OpenUdpRelay { relay, addr, .. }
                | Shell::ListenTcpRelay { relay, addr } = r
                {
                    server.relay_opened(*now, relay, Ok(addr));
                }
            }
            while let Some(t) = server.poll_transmit() {
                assert!(call.handle_input(*now, &t.data), "only answers come back");
            }
        }
    }

    fn allocate(&mut self) -> SocketAddr {
        let (r, _) = self.run(Request::Allocate {
            transport: RelayTransport::Udp,
            family: None,
        });
        r.unwrap().relayed().unwrap()
    }

    /// Client data into the server: what it forwards to a peer.
    fn forward(&mut self, bytes: &[u8]) -> Option<(SocketAddr, Vec<u8>)> {
        let f = self.server.handle_client(self.now, self.tuple, bytes)?;
        Some((f.peer, f.data.to_vec()))
    }

    /// Peer data into the server: what the client gets.
    fn peer_sends(&mut self, from: SocketAddr, data: &[u8]) -> Option<Vec<u8>> {
        let relay = crate::turn::RelayId(0);
        let mut buf = vec![0u8; PEER_HEADROOM + data.len() + PEER_TAILROOM];
        buf[PEER_HEADROOM..PEER_HEADROOM + data.len()].copy_from_slice(data);
        let d =
            self.server
                .handle_peer(self.now, relay, from, &mut buf, PEER_HEADROOM, data.len())?;
        Some(buf[d.start..d.end].to_vec())
    }
}

#[test]
fn allocate_learns_realm_and_nonce_from_the_401_and_signs_the_retry() {
    let mut p = Pair::new("wonderland");
    let relayed = p.allocate();
    assert_eq!(relayed.ip().to_string(), "192.0.2.10");
    assert_eq!(
        p.sent.len(),
        2,
        "the unsigned Allocate, then the signed one"
    );
    assert_eq!(p.client.credentials().realm, REALM);
    assert!(p.client.credentials().ready());
    assert_eq!(p.server.allocation_count(), 1);
}

#[test]
fn a_wrong_password_is_refused_with_401_after_one_signed_try() {
    let mut p = Pair::new("looking-glass");
    let (r, _) = p.run(Request::Allocate {
        transport: RelayTransport::Udp,
        family: None,
    });
    assert!(
        matches!(r, Err(ClientError::Refused { code: 401, .. })),
        "{r:?}"
    );
    assert_eq!(p.sent.len(), 2);
    assert_eq!(p.server.allocation_count(), 0);
}

#[test]
fn sha256_integrity_is_accepted() {
    let creds = ClientCredentials::new("alice", "wonderland").with_integrity(Integrity::Sha256);
    let mut p = Pair::with(creds, Transport::Udp);
    p.allocate();
    assert_eq!(p.server.allocation_count(), 1);
}

#[test]
fn a_second_allocate_on_the_five_tuple_is_437() {
    let mut p = Pair::new("wonderland");
    p.allocate();
    let (r, _) = p.run(Request::Allocate {
        transport: RelayTransport::Udp,
        family: None,
    });
    match r {
        Err(ClientError::Refused {
            code: 437, reason, ..
        }) => assert!(!reason.is_empty()),
        other => panic!("{other:?}"),
    }
}

#[test]
fn an_unserved_family_is_refused_with_its_code() {
    let mut p = Pair::new("wonderland");
    let (r, _) = p.run(Request::Allocate {
        transport: RelayTransport::Udp,
        family: Some(Family::V6),
    });
    assert_eq!(r.unwrap_err().code(), Some(440));
}

#[test]
fn refresh_extends_and_zero_deletes_then_437() {
    let mut p = Pair::new("wonderland");
    p.allocate();
    let (r, _) = p.run(Request::Refresh { lifetime: 1200 });
    assert_eq!(r.unwrap().lifetime(), Some(1200));
    let (r, _) = p.run(Request::Refresh { lifetime: 0 });
    assert_eq!(r.unwrap().lifetime(), Some(0));
    assert_eq!(p.server.allocation_count(), 0);
    let (r, _) = p.run(Request::Refresh { lifetime: 0 });
    assert_eq!(r.unwrap_err().code(), Some(437));
}

#[test]
fn a_stale_nonce_gets_438_and_the_retry_succeeds() {
    let mut p = Pair::new("wonderland");
    p.allocate();
    let first = p.client.credentials().nonce.clone();
    p.now += Duration::from_secs(300);
    p.run(Request::Refresh { lifetime: 600 }).0.unwrap();
    p.now += NONCE_LIFE;
    let before = p.sent.len();
    let (r, _) = p.run(Request::Refresh { lifetime: 600 });
    r.unwrap();
    assert_eq!(p.sent.len() - before, 2, "the 438, then the retry");
    assert_ne!(p.client.credentials().nonce, first);
}

#[test]
fn permission_then_send_indication_reaches_the_peer_and_data_comes_back() {
    let mut p = Pair::new("wonderland");
    p.allocate();
    let mut out = [0u8; 128];
    let n = send_indication(&mut out, TransactionId([1; 12]), peer(), 2, |d| {
        d.copy_from_slice(b"hi")
    });
    assert_eq!(p.forward(&out[..n]), None, "no permission yet");
    p.run(Request::CreatePermission { peer: peer() }).0.unwrap();
    assert_eq!(p.forward(&out[..n]), Some((peer(), b"hi".to_vec())));
    let back = p.peer_sends(peer(), b"yo").unwrap();
    assert_eq!(
        PeerData::parse(&back),
        Some(PeerData::Indication {
            peer: peer(),
            data: b"yo"
        })
    );
}

#[test]
fn channel_bind_then_channel_data_both_ways() {
    let mut p = Pair::new("wonderland");
    p.allocate();
    p.run(Request::ChannelBind {
        channel: 0x4001,
        peer: peer(),
    })
    .0
    .unwrap();
    let mut out = [0u8; 16];
    let n = channel_data(&mut out, 0x4001, 3, |d| d.copy_from_slice(b"abc"));
    assert_eq!(p.forward(&out[..n]), Some((peer(), b"abc".to_vec())));
    let back = p.peer_sends(peer(), b"xyz").unwrap();
    assert_eq!(
        PeerData::parse(&back),
        Some(PeerData::Channel {
            channel: 0x4001,
            data: b"xyz"
        })
    );
    let (r, _) = p.run(Request::ChannelBind {
        channel: 0x3000,
        peer: peer(),
    });
    assert_eq!(r.unwrap_err().code(), Some(400), "not a channel number");
}

#[test]
fn lost_requests_are_sent_again_at_rto_doubling() {
    let mut p = Pair::new("wonderland");
    p.lose = 2;
    let (r, requests) = p.run(Request::Allocate {
        transport: RelayTransport::Udp,
        family: None,
    });
    r.unwrap();
    let ms = |v: &[u64]| {
        v.iter()
            .map(|m| Duration::from_millis(*m))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        p.sent,
        ms(&[0, 500, 1500, 1500]),
        "3 tries, then the signed one"
    );
    assert_eq!(requests, 1);
}

#[test]
fn a_silent_server_is_no_answer_after_rc_requests_and_rm_rto() {
    let mut p = Pair::new("wonderland");
    p.lose = usize::MAX;
    let (r, requests) = p.run(Request::Refresh { lifetime: 0 });
    assert_eq!(r, Err(ClientError::NoAnswer));
    assert_eq!(requests, 7);
    assert_eq!(p.elapsed(), Duration::from_millis(39_500));
}

#[test]
fn over_tcp_a_request_goes_once_and_a_tcp_relay_is_allocated() {
    let mut p = Pair::with(
        ClientCredentials::new("alice", "wonderland"),
        Transport::Tcp,
    );
    let (r, _) = p.run(Request::Allocate {
        transport: RelayTransport::Tcp,
        family: Some(Family::V4),
    });
    assert!(r.unwrap().relayed().is_ok());
    p.lose = usize::MAX;
    let (r, requests) = p.run(Request::Refresh { lifetime: 600 });
    assert_eq!((r, requests), (Err(ClientError::NoAnswer), 1));
}

/// A UDP client with no server: answers are written by hand.
fn lone_client() -> TurnClient {
    TurnClient::new(
        ClientCredentials::new("alice", "wonderland"),
        TxIds::new([5; 32]),
        Schedule::RFC8489,
        false,
    )
}

/// The id of the request `call` sends first.
fn first_id(call: &mut Call<'_>, now: Instant) -> TransactionId {
    let Step::Transmit(req) = call.poll(now) else {
        panic!("the request goes out at once");
    };
    Message::parse(req).unwrap().transaction_id()
}

#[test]
fn wrong_method_and_foreign_answers_are_told_apart() {
    let mut client = lone_client();
    let t0 = Instant::now();
    let mut call = client.call(t0, Request::Refresh { lifetime: 0 }).unwrap();
    let id = first_id(&mut call, t0);
    let mut buf = [0u8; 64];
    let mut answer = |method, id| {
        let t = MessageType::new(method, Class::SuccessResponse);
        let n = MessageBuilder::new(&mut buf, t, id).finish().unwrap();
        buf[..n].to_vec()
    };
    let foreign = answer(Method::REFRESH, TransactionId([0; 12]));
    assert!(!call.handle_input(t0, &foreign), "another transaction's");
    assert!(!call.handle_input(t0, b"\x40\x00\x00\x00"), "ChannelData");
    let wrong = answer(Method::ALLOCATE, id);
    assert!(call.handle_input(t0, &wrong));
    assert!(matches!(
        call.poll(t0),
        Step::Done(Err(ClientError::WrongMethod(0x003)))
    ));
}

/// The server drains with one alternate per transport, each named.
fn draining(p: &Pair) {
    use crate::turn::Alternate as Fleet;
    let drain = &p.server.shared().drain;
    drain.set_alternates(
        [
            (Transport::Udp, "192.0.2.50:3478"),
            (Transport::Tls, "192.0.2.50:5349"),
        ]
        .map(|(transport, addr)| Fleet {
            transport,
            addr: addr.parse().unwrap(),
            domain: Some("turn-a.example.com".into()),
        })
        .to_vec(),
    );
    drain.set_draining(true);
}

fn allocate_udp(p: &mut Pair) -> Result<Answer, ClientError> {
    p.run(Request::Allocate {
        transport: RelayTransport::Udp,
        family: None,
    })
    .0
}

#[test]
fn a_300_carries_its_alternate_server_and_over_udp_no_domain() {
    let mut p = Pair::new("wonderland");
    draining(&p);
    let e = allocate_udp(&mut p).unwrap_err();
    assert_eq!(
        e,
        ClientError::Refused {
            code: 300,
            reason: "Try Alternate".into(),
            alternate: Some(AlternateServer {
                addr: "192.0.2.50:3478".parse().unwrap(),
                domain: None,
            }),
        }
    );
    assert_eq!(e.alternate(), Some("192.0.2.50:3478".parse().unwrap()));
}

#[test]
fn a_300_over_tls_carries_the_alternate_domain() {
    let mut p = Pair::with(
        ClientCredentials::new("alice", "wonderland"),
        Transport::Tls,
    );
    draining(&p);
    match allocate_udp(&mut p) {
        Err(ClientError::Refused {
            code: 300,
            alternate: Some(alt),
            ..
        }) => assert_eq!(
            alt,
            AlternateServer {
                addr: "192.0.2.50:5349".parse().unwrap(),
                domain: Some("turn-a.example.com".into()),
            }
        ),
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_draining_node_without_alternates_is_403_draining_with_no_alternate() {
    let mut p = Pair::new("wonderland");
    p.server.shared().drain.set_draining(true);
    let e = allocate_udp(&mut p).unwrap_err();
    assert_eq!(
        e,
        ClientError::Refused {
            code: 403,
            reason: "draining".into(),
            alternate: None,
        }
    );
    assert_eq!(e.alternate(), None);
}

/// A 300 to the first transmission of a Refresh, with `attrs` added.
fn answer_300(attrs: &dyn Fn(&mut MessageBuilder<'_>)) -> Result<Answer, ClientError> {
    let mut client = lone_client();
    let t0 = Instant::now();
    let mut call = client.call(t0, Request::Refresh { lifetime: 0 }).unwrap();
    let id = first_id(&mut call, t0);
    let mut buf = [0u8; 256];
    let t = MessageType::new(Method::REFRESH, Class::ErrorResponse);
    let mut b = MessageBuilder::new(&mut buf, t, id);
    b.add_error_code(300, "Try Alternate");
    attrs(&mut b);
    let n = b.finish().unwrap();
    let answer = buf[..n].to_vec();
    assert!(call.handle_input(t0, &answer));
    match call.poll(t0) {
        Step::Done(r) => r,
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_bare_300_has_no_alternate_and_a_malformed_one_is_malformed() {
    let bare = answer_300(&|_| {});
    assert_eq!(bare.as_ref().unwrap_err().code(), Some(300));
    assert_eq!(bare.unwrap_err().alternate(), None);
    // Family 0x01 with an IPv6 length: not an address.
    let bad = answer_300(&|b| b.add(AttributeType::ALTERNATE_SERVER, &[0, 1, 0, 1, 1, 2, 3]));
    assert!(
        matches!(bad, Err(ClientError::Malformed(m)) if m.contains("ALTERNATE-SERVER")),
        "{bad:?}"
    );
    let bad = answer_300(&|b| {
        b.add(AttributeType::ALTERNATE_SERVER, &[0, 1, 0, 1, 192, 0, 2, 1]);
        b.add(AttributeType::ALTERNATE_DOMAIN, &[0xff, 0xfe]);
    });
    assert!(
        matches!(bad, Err(ClientError::Malformed(m)) if m.contains("ALTERNATE-DOMAIN")),
        "{bad:?}"
    );
}
