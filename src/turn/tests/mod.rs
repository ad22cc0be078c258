//! State-machine tests of the TURN core with injected time: no sockets, no
//! sleeping. Each test reads as the behaviour it pins down. This file is
//! the harness (a `Server` with a scripted shell, request builders and
//! answer readers); the tests live in one room per idea, below.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::policy::PeerPolicy;
use super::ports::PortPool;
use super::quota::{self, Quotas};
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
    /// Fleet quotas on: Allocates also ask the (scripted) shell.
    fleet: bool,
    /// Where allocation generations start (the shell draws it per start).
    first_generation: u32,
    /// Tenant realms besides `REALM` (issue 19), with no credentials yet.
    tenants: Vec<crate::auth::Tenant>,
    /// The self-test secret (issue 20), if self-tests are on.
    selftest_secret: Option<&'static str>,
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
            fleet: false,
            first_generation: 0,
            tenants: vec![],
            selftest_secret: None,
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
    connects: Vec<(ConnId, SocketAddr)>,
    binds: Vec<(ConnId, FiveTuple)>,
    peer_closes: Vec<ConnId>,
    /// Client streams the core asked to close.
    stream_closes: Vec<FiveTuple>,
    /// Events, in order.
    events: Vec<Event>,
    /// Makes every call a new transaction, as real clients do.
    calls: u32,
    /// Fleet quota questions, in order, and the places given back.
    quota_asks: Vec<(quota::QuotaKey, String, String, quota::FleetLimits)>,
    quota_releases: Vec<quota::QuotaKey>,
}

/// Fixed keys, so tokens and budgets are the same every run.
const TEST_KEYS: SharedKeys = SharedKeys {
    reservation_token: [5; 32],
    reply_budget: [6; 32],
};

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
        clients: Default::default(),
        auth_reply_rate: o.auth_reply_rate,
        strict_expiry: o.strict_expiry,
        tcp_relay: o.tcp_relay,
        max_peer_connections: o.max_peer_connections,
        max_peer_connections_per_user: o.max_peer_connections_per_user,
        stun_backward_compatibility: o.stun_backward_compatibility,
    };
    let mut dir = Directory::new(creds);
    // alice is configured, bob stored: usage records tell them apart.
    dir.static_users.insert("alice".into());
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
    let mut auth = Authenticator::new(dir, nonces)
        .with_clock(t0, UNIX0)
        .with_realms(o.tenants);
    if oauth {
        auth = auth.with_oauth(SERVER_NAME);
    }
    if let Some(s) = o.selftest_secret {
        auth = auth.with_selftest_secret(Secret(s.as_bytes().to_vec()));
    }
    let shared = Shared::new(
        config,
        auth,
        Quotas::new(o.user_quota, o.total_quota).with_per_source(o.max_allocations_per_ip),
        PortPool::new(o.min_port, o.max_port),
        TEST_KEYS,
    );
    if o.fleet {
        shared.quotas.enable_fleet();
    }
    Harness {
        server: Server::new(Arc::new(shared), 42).with_first_generation(o.first_generation),
        t0,
        fail_opens: 0,
        opened: vec![],
        closed: vec![],
        connects: vec![],
        binds: vec![],
        peer_closes: vec![],
        stream_closes: vec![],
        events: vec![],
        calls: 0,
        quota_asks: vec![],
        quota_releases: vec![],
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

    /// Runs the shell's side: answers relay requests, records closes and
    /// events.
    fn pump(&mut self, now: Instant) {
        while let Some(r) = self.server.poll_request() {
            match r {
                Request::OpenUdpRelay {
                    relay,
                    addr,
                    dont_fragment,
                } => self.open(now, relay, addr, dont_fragment),
                Request::ListenTcpRelay { relay, addr } => self.open(now, relay, addr, false),
                Request::CloseRelay { relay } => self.closed.push(relay),
                Request::ConnectPeer { conn, peer, .. } => self.connects.push((conn, peer)),
                Request::BindData { conn, tuple } => self.binds.push((conn, tuple)),
                Request::ClosePeer { conn, .. } => self.peer_closes.push(conn),
                Request::CloseStream { tuple } => self.stream_closes.push(tuple),
                Request::ReserveQuota {
                    key,
                    user,
                    realm,
                    limits,
                } => self.quota_asks.push((key, user, realm, limits)),
                Request::ReleaseQuota { key } => self.quota_releases.push(key),
            }
        }
        while let Some(e) = self.server.poll_event() {
            self.events.push(e);
        }
    }

    fn open(&mut self, now: Instant, relay: RelayId, addr: SocketAddr, dont_fragment: bool) {
        self.opened.push((relay, addr, dont_fragment));
        let r = if self.fail_opens > 0 {
            self.fail_opens -= 1;
            Err(RelayError::AddrInUse)
        } else {
            Ok(addr)
        };
        self.server.relay_opened(now, relay, r);
    }

    /// The records of ended allocations, in order.
    fn ended(&self) -> Vec<&AllocationEnd> {
        self.events
            .iter()
            .filter_map(|e| match e {
                Event::AllocationDeleted(end) => Some(&**end),
                _ => None,
            })
            .collect()
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

mod allocate;
mod auth;
mod binding;
mod channels;
mod credentials;
mod drain;
mod events;
mod families;
mod fleet_quota;
mod hostile;
mod limits;
mod permissions;
mod realms;
mod reservations;
mod revoke;
mod selftest;
mod tcp_relay;
