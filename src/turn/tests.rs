//! State-machine tests of the TURN core with injected time: no sockets, no
//! sleeping. Each test reads as the behaviour it pins down.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::policy::PeerPolicy;
use super::ports::PortPool;
use super::quota::Quotas;
use super::*;
use crate::auth::nonce::{NonceIssuer, FEATURE_PASSWORD_ALGORITHMS};
use crate::auth::rest::Secret;
use crate::auth::{Authenticator, Credentials, Directory};
use crate::stun::attributes::{decode_address, decode_xor_address, AttributeType, ErrorCode};
use crate::stun::integrity::{long_term_key_md5, verify_sha1};
use crate::stun::{Class, Message, MessageBuilder, MessageType, Method, TransactionId};

const REALM: &str = "turnpike.test";

struct Opts {
    relay_ips: Vec<&'static str>,
    min_port: u16,
    max_port: u16,
    user_quota: u32,
    total_quota: u32,
    max_bps: u64,
    software: Option<&'static str>,
    auth_reply_rate: u32,
    max_permissions: usize,
    secrets: Vec<&'static str>,
    strict_expiry: bool,
    tcp_relay: bool,
    /// OAuth on with these (kid, key) pairs.
    oauth: Vec<(&'static str, crate::auth::oauth::OAuthKey)>,
    max_allocations_per_ip: u32,
    max_peer_connections: u32,
    max_peer_connections_per_user: u32,
    stun_backward_compatibility: bool,
}

/// The Unix second the harness's `t0` is.
const UNIX0: u64 = 1_700_000_000;
/// The OAuth server name in the harness.
const SERVER_NAME: &str = "auth.turnpike.test";

impl Default for Opts {
    fn default() -> Self {
        Opts {
            relay_ips: vec!["192.0.2.10"],
            min_port: 50000,
            max_port: 50999,
            user_quota: 0,
            total_quota: 0,
            max_bps: 0,
            software: None,
            auth_reply_rate: 0,
            max_permissions: 8,
            secrets: vec![],
            strict_expiry: false,
            tcp_relay: false,
            oauth: vec![],
            max_allocations_per_ip: 0,
            max_peer_connections: 64,
            max_peer_connections_per_user: 256,
            stun_backward_compatibility: true,
        }
    }
}

struct Harness {
    server: Server,
    t0: Instant,
    /// Fail the next N relay opens.
    fail_opens: usize,
    opened: Vec<(RelayId, SocketAddr, bool)>,
    closed: Vec<RelayId>,
    /// RFC 6062 requests to the shell: connects, binds, closes.
    connects: Vec<(u32, SocketAddr)>,
    binds: Vec<(u32, FiveTuple)>,
    peer_closes: Vec<u32>,
    /// Makes every call a new transaction, as real clients do.
    calls: u32,
}

fn harness(o: Opts) -> Harness {
    let t0 = Instant::now();
    let mut creds = Credentials::new(REALM);
    creds.add_spec("alice:wonderland").unwrap();
    creds.add_spec("bob:builder").unwrap();
    let nonces = NonceIssuer::new(
        [9; 32],
        t0,
        Duration::from_secs(600),
        FEATURE_PASSWORD_ALGORITHMS,
    );
    let config = TurnConfig {
        relay_ips: o.relay_ips.iter().map(|s| s.parse().unwrap()).collect(),
        external_ips: vec![],
        default_lifetime: DEFAULT_LIFETIME,
        max_lifetime: MAX_LIFETIME,
        max_permissions: o.max_permissions,
        max_channels: 4,
        max_bps: o.max_bps,
        software: o.software.map(String::from),
        policy: PeerPolicy::new(
            vec![],
            vec![],
            false,
            vec!["198.51.100.1:3478".parse().unwrap()],
        ),
        auth_reply_rate: o.auth_reply_rate,
        strict_expiry: o.strict_expiry,
        tcp_relay: o.tcp_relay,
        max_peer_connections: o.max_peer_connections,
        max_peer_connections_per_user: o.max_peer_connections_per_user,
        stun_backward_compatibility: o.stun_backward_compatibility,
    };
    let mut dir = Directory::new(creds);
    dir.secrets = o
        .secrets
        .iter()
        .map(|s| Secret(s.as_bytes().to_vec()))
        .collect();
    let oauth = !o.oauth.is_empty();
    dir.oauth_keys = o
        .oauth
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
    let mut auth = Authenticator::new(dir, nonces).with_clock(t0, UNIX0);
    if oauth {
        auth = auth.with_oauth(SERVER_NAME);
    }
    let shared = Shared::new(
        config,
        auth,
        Quotas::new(o.user_quota, o.total_quota).with_per_source(o.max_allocations_per_ip),
        PortPool::new(o.min_port, o.max_port),
    );
    Harness {
        server: Server::new(Arc::new(shared), 42),
        t0,
        fail_opens: 0,
        opened: vec![],
        closed: vec![],
        connects: vec![],
        binds: vec![],
        peer_closes: vec![],
        calls: 0,
    }
}

fn udp(client: &str) -> FiveTuple {
    FiveTuple {
        transport: Transport::Udp,
        client: client.parse().unwrap(),
        server: "198.51.100.1:3478".parse().unwrap(),
    }
}

fn client() -> FiveTuple {
    udp("203.0.113.5:40000")
}

fn key(user: &str) -> [u8; 16] {
    let pw = if user == "alice" {
        "wonderland"
    } else {
        "builder"
    };
    long_term_key_md5(user, REALM, pw)
}

/// Attributes a test request carries, besides the credentials.
type Attrs<'a> = &'a dyn Fn(&mut MessageBuilder<'_>);

impl Harness {
    fn at(&self, secs: u64) -> Instant {
        self.t0 + Duration::from_secs(secs)
    }

    /// Runs the shell's side: answers relay requests, records closes.
    fn pump(&mut self, now: Instant) {
        while let Some(o) = self.server.poll_output() {
            match o {
                Output::OpenRelay {
                    relay,
                    addr,
                    dont_fragment,
                    ..
                } => {
                    self.opened.push((relay, addr, dont_fragment));
                    let r = if self.fail_opens > 0 {
                        self.fail_opens -= 1;
                        Err(())
                    } else {
                        Ok(())
                    };
                    self.server.relay_opened(now, relay, r);
                }
                Output::CloseRelay { relay } => self.closed.push(relay),
                Output::ConnectPeer { conn, peer, .. } => self.connects.push((conn, peer)),
                Output::BindData { conn, tuple } => self.binds.push((conn, tuple)),
                Output::ClosePeer { conn } => self.peer_closes.push(conn),
                _ => {}
            }
        }
    }

    fn send(&mut self, now: Instant, tuple: FiveTuple, bytes: &[u8]) -> Vec<Vec<u8>> {
        assert!(self.server.handle_client(now, tuple, bytes).is_none());
        self.pump(now);
        let mut out = vec![];
        while let Some(t) = self.server.poll_transmit() {
            assert_eq!(t.to, tuple);
            out.push(t.data);
        }
        out
    }

    fn nonce(&mut self, now: Instant, tuple: FiveTuple) -> Vec<u8> {
        let req = request(Method::ALLOCATE, [0; 12], None, &|b| transport_udp(b));
        let answers = self.send(now, tuple, &req);
        let m = Message::parse(&answers[0]).unwrap();
        assert_eq!(code(&m), Some(401));
        m.get(AttributeType::NONCE).unwrap().to_vec()
    }

    /// One authenticated request; returns the single answer.
    fn call(
        &mut self,
        now: Instant,
        tuple: FiveTuple,
        method: Method,
        user: &str,
        txid: u8,
        attrs: Attrs<'_>,
    ) -> Vec<u8> {
        let nonce = self.nonce(now, tuple);
        self.calls += 1;
        let mut id = [txid; 12];
        id[..4].copy_from_slice(&self.calls.to_be_bytes());
        let req = request(method, id, Some((user, &nonce)), attrs);
        let mut answers = self.send(now, tuple, &req);
        assert_eq!(answers.len(), 1, "one answer");
        answers.pop().unwrap()
    }

    fn allocate(&mut self, now: Instant, tuple: FiveTuple, attrs: Attrs<'_>) -> Vec<u8> {
        self.call(now, tuple, Method::ALLOCATE, "alice", 1, attrs)
    }

    /// A plain UDP Allocate for alice from `client`; its error code, if any.
    fn allocate_code(&mut self, now: Instant, client: &str) -> Option<u16> {
        code_of(&self.allocate(now, udp(client), &|b| transport_udp(b)))
    }
}

fn transport_udp(b: &mut MessageBuilder<'_>) {
    b.add(AttributeType::REQUESTED_TRANSPORT, &[17, 0, 0, 0]);
}

fn request(
    method: Method,
    txid: [u8; 12],
    creds: Option<(&str, &[u8])>,
    attrs: Attrs<'_>,
) -> Vec<u8> {
    let mut buf = vec![0u8; 1500];
    let mut b = MessageBuilder::new(
        &mut buf,
        MessageType::new(method, Class::Request),
        TransactionId(txid),
    );
    attrs(&mut b);
    if let Some((user, nonce)) = creds {
        b.add_username(user);
        b.add_realm(REALM);
        b.add_nonce(nonce);
        b.add_message_integrity(&key(user));
    }
    let n = b.finish().unwrap();
    buf.truncate(n);
    buf
}

fn code(m: &Message<'_>) -> Option<u16> {
    m.get(AttributeType::ERROR_CODE)
        .map(|v| ErrorCode::decode(v).unwrap().code)
}

fn code_of(bytes: &[u8]) -> Option<u16> {
    code(&Message::parse(bytes).unwrap())
}

fn relayed(bytes: &[u8]) -> Vec<SocketAddr> {
    let m = Message::parse(bytes).unwrap();
    m.attributes()
        .filter(|a| a.attr_type == AttributeType::XOR_RELAYED_ADDRESS.0)
        .map(|a| decode_xor_address(a.value, &m.transaction_id()).unwrap())
        .collect()
}

fn lifetime_of(bytes: &[u8]) -> u32 {
    let m = Message::parse(bytes).unwrap();
    let v = m.get(AttributeType::LIFETIME).unwrap();
    u32::from_be_bytes([v[0], v[1], v[2], v[3]])
}

fn peer_attr(peer: SocketAddr) -> impl Fn(&mut MessageBuilder<'_>) {
    move |b| b.add_xor_address(AttributeType::XOR_PEER_ADDRESS, &peer)
}

fn sa(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

const PEER: &str = "8.8.8.8:9000";

impl Harness {
    /// Client data through the core; returns where it would go.
    fn forward(
        &mut self,
        now: Instant,
        tuple: FiveTuple,
        bytes: &[u8],
    ) -> Option<(RelayId, SocketAddr, Vec<u8>)> {
        self.server
            .handle_client(now, tuple, bytes)
            .map(|f| (f.relay, f.peer, f.data.to_vec()))
    }
}

fn send_indication(peer: SocketAddr, data: &[u8]) -> Vec<u8> {
    let mut buf = vec![0u8; 1500];
    let mut b = MessageBuilder::new(
        &mut buf,
        MessageType::new(Method::SEND, Class::Indication),
        TransactionId([7; 12]),
    );
    b.add_xor_address(AttributeType::XOR_PEER_ADDRESS, &peer);
    b.add(AttributeType::DATA, data);
    let n = b.finish().unwrap();
    buf.truncate(n);
    buf
}

fn channel_data(ch: u16, data: &[u8]) -> Vec<u8> {
    let mut v = ch.to_be_bytes().to_vec();
    v.extend_from_slice(&(data.len() as u16).to_be_bytes());
    v.extend_from_slice(data);
    v
}

impl Harness {
    /// Peer data into the core; returns the bytes the client would get.
    fn peer_sends(
        &mut self,
        now: Instant,
        relay: RelayId,
        from: SocketAddr,
        data: &[u8],
    ) -> Option<Vec<u8>> {
        let mut buf = vec![0u8; PEER_HEADROOM + data.len() + PEER_TAILROOM];
        buf[PEER_HEADROOM..PEER_HEADROOM + data.len()].copy_from_slice(data);
        let d = self
            .server
            .handle_peer(now, relay, from, &mut buf, PEER_HEADROOM, data.len())?;
        Some(buf[d.start..d.end].to_vec())
    }
}

// ----- authentication -----------------------------------------------------

#[test]
fn allocate_without_integrity_gets_401_with_realm_nonce_and_password_algorithms() {
    let mut h = harness(Opts::default());
    let now = h.at(0);
    let req = request(Method::ALLOCATE, [1; 12], None, &|b| transport_udp(b));
    let answers = h.send(now, client(), &req);
    let m = Message::parse(&answers[0]).unwrap();
    assert_eq!(m.class(), Class::ErrorResponse);
    assert_eq!(code(&m), Some(401));
    assert_eq!(m.get(AttributeType::REALM), Some(REALM.as_bytes()));
    assert!(m
        .get(AttributeType::NONCE)
        .unwrap()
        .starts_with(b"obMatJos2"));
    assert!(m.get(AttributeType::PASSWORD_ALGORITHMS).is_some());
    assert!(m.integrity_offset().is_none());
    assert!(
        m.get(AttributeType::SOFTWARE).is_none(),
        "no SOFTWARE unless configured"
    );
    assert_eq!(
        h.server.allocation_count(),
        0,
        "nothing stored before integrity verifies"
    );
}

#[test]
fn wrong_password_gets_401_and_stale_nonce_gets_438_with_a_fresh_nonce() {
    let mut h = harness(Opts::default());
    let now = h.at(0);
    let nonce = h.nonce(now, client());
    let mut req = request(Method::ALLOCATE, [2; 12], Some(("alice", &nonce)), &|b| {
        transport_udp(b)
    });
    let last = req.len() - 1;
    req[last] ^= 1; // breaks MESSAGE-INTEGRITY
    assert_eq!(code_of(&h.send(now, client(), &req)[0]), Some(401));

    let req = request(Method::ALLOCATE, [3; 12], Some(("alice", &nonce)), &|b| {
        transport_udp(b)
    });
    let later = h.at(600);
    let answer = h.send(later, client(), &req);
    let m = Message::parse(&answer[0]).unwrap();
    assert_eq!(code(&m), Some(438));
    let fresh = m.get(AttributeType::NONCE).unwrap().to_vec();
    assert_ne!(fresh, nonce);
    let req = request(Method::ALLOCATE, [4; 12], Some(("alice", &fresh)), &|b| {
        transport_udp(b)
    });
    assert_eq!(code_of(&h.send(later, client(), &req)[0]), None);
}

#[test]
fn unauthenticated_answers_are_rate_limited_per_source() {
    let mut h = harness(Opts {
        auth_reply_rate: 1,
        ..Default::default()
    });
    let now = h.at(0);
    let req = request(Method::ALLOCATE, [1; 12], None, &|b| transport_udp(b));
    let answered: usize = (0..10).map(|_| h.send(now, client(), &req).len()).sum();
    assert_eq!(answered, 2, "burst of two, then silence");
    assert_eq!(
        h.send(now, udp("203.0.113.6:1"), &req).len(),
        1,
        "another source is answered"
    );
    assert_eq!(
        h.send(h.at(1), client(), &req).len(),
        1,
        "the budget refills"
    );
}

// ----- Allocate -----------------------------------------------------------

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

// ----- address families ---------------------------------------------------

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

// ----- permissions and policy ---------------------------------------------

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

// ----- channels -----------------------------------------------------------

impl Harness {
    fn bind(&mut self, now: Instant, txid: u8, number: u16, peer: &str) -> Option<u16> {
        let peer = sa(peer);
        let r = self.call(
            now,
            client(),
            Method::CHANNEL_BIND,
            "alice",
            txid,
            &move |b| {
                b.add(
                    AttributeType::CHANNEL_NUMBER,
                    &[(number >> 8) as u8, number as u8, 0, 0],
                );
                b.add_xor_address(AttributeType::XOR_PEER_ADDRESS, &peer);
            },
        );
        code_of(&r)
    }
}

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
    h.server.handle_client_closed(tcp);
    h.pump(h.at(1));
    assert_eq!(
        h.server.allocation_count(),
        0,
        "closing the connection ends the allocation"
    );
    assert_eq!(h.closed.len(), 1);
}

// ----- limits and options -------------------------------------------------

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

#[test]
fn software_is_sent_only_when_configured() {
    let mut h = harness(Opts {
        software: Some("turnpike-test"),
        ..Default::default()
    });
    let answer = h.allocate(h.at(0), client(), &|b| transport_udp(b));
    let m = Message::parse(&answer).unwrap();
    assert_eq!(m.get(AttributeType::SOFTWARE), Some(&b"turnpike-test"[..]));
}

#[test]
fn binding_still_works_through_the_turn_core() {
    let mut h = harness(Opts::default());
    let req = request(Method::BINDING, [1; 12], None, &|_| {});
    let answers = h.send(h.at(0), client(), &req);
    let m = Message::parse(&answers[0]).unwrap();
    assert_eq!(m.class(), Class::SuccessResponse);
    assert_eq!(
        decode_xor_address(
            m.get(AttributeType::XOR_MAPPED_ADDRESS).unwrap(),
            &m.transaction_id()
        )
        .unwrap(),
        client().client
    );
}

/// `req` with its magic cookie replaced: an RFC 3489 client's bytes.
fn without_cookie(mut req: Vec<u8>) -> Vec<u8> {
    req[4..8].copy_from_slice(&[0xc1, 0xa5, 0x51, 0xc0]);
    req
}

#[test]
fn classic_binding_is_answered_within_the_budget_and_classic_turn_methods_never() {
    let mut h = harness(Opts {
        auth_reply_rate: 1,
        ..Default::default()
    });
    let now = h.at(0);
    let binding = without_cookie(request(Method::BINDING, [1; 12], None, &|_| {}));
    let answers = h.send(now, client(), &binding);
    assert_eq!(answers.len(), 1);
    let m = Message::parse_classic(&answers[0]).unwrap();
    assert_eq!(m.class(), Class::SuccessResponse);
    assert_eq!(answers[0][4..20], binding[4..20], "the 16-byte id echoed");
    assert_eq!(
        decode_address(m.get(AttributeType::MAPPED_ADDRESS).unwrap()),
        Ok(client().client)
    );
    assert!(m.get(AttributeType::XOR_MAPPED_ADDRESS).is_none());
    // The budget (a burst of two at rate 1) is the one 401s spend.
    assert_eq!(h.send(now, client(), &binding).len(), 1);
    assert_eq!(h.send(now, client(), &binding).len(), 0, "budget spent");
    assert_eq!(h.send(h.at(1), client(), &binding).len(), 1, "refilled");
    // TURN methods without the cookie: nothing, not even a 401.
    let later = h.at(10);
    for method in [Method::ALLOCATE, Method::REFRESH, Method::CREATE_PERMISSION] {
        let req = without_cookie(request(method, [2; 12], None, &|b| transport_udp(b)));
        assert!(
            h.send(later, udp("203.0.113.9:1"), &req).is_empty(),
            "{method:?}"
        );
    }
    assert_eq!(h.server.stats().classic_binding_requests, 4);
    assert_eq!(h.server.stats().allocations_created, 0);
}

#[test]
fn without_backward_compatibility_classic_bindings_get_nothing() {
    let mut h = harness(Opts {
        stun_backward_compatibility: false,
        ..Default::default()
    });
    let binding = without_cookie(request(Method::BINDING, [1; 12], None, &|_| {}));
    assert!(h.send(h.at(0), client(), &binding).is_empty());
    // The modern Binding is still answered.
    let modern = request(Method::BINDING, [1; 12], None, &|_| {});
    assert_eq!(h.send(h.at(0), client(), &modern).len(), 1);
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
fn external_ip_is_what_clients_are_told() {
    let mut h = harness(Opts::default());
    let mut config = h.server.shared().config.clone();
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

// ----- security checklist: what an attacker controls ----------------------

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

mod credentials;
mod tcp_relay;

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
