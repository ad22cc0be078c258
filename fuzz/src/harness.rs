//! An authenticated TURN harness on turnpike's public API: a [`Server`]
//! with static long-term users, REST secrets and OAuth keys, clients that
//! learn their nonce from a 401 and sign every request they send with the
//! right MESSAGE-INTEGRITY (or -SHA256), a shell that answers the core's
//! outputs (relay sockets, RFC 6062 peer connections) and injected time.
//!
//! The fuzzer input is a script of steps ([`Harness::step`]); besides
//! "never panics" the harness checks what the shell relies on:
//!
//! * every control message is a well-formed STUN message for a known
//!   client, and an answer that carries integrity verifies with the key of
//!   the request it answers;
//! * data goes out only through a relay socket the shell opened and did not
//!   close, and only to a peer the peer policy allows;
//! * peer data framed in place stays inside the buffer and carries the
//!   peer's bytes and address;
//! * after a step `poll_timeout` is never in the past;
//! * once everything expires, every relay socket is closed and every port,
//!   quota slot and RFC 6062 connection is given back.

use std::collections::{BTreeSet, HashMap};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use turnpike::auth::credentials::userhash;
use turnpike::auth::nonce::{NonceIssuer, FEATURE_PASSWORD_ALGORITHMS};
use turnpike::auth::oauth::{self, Alg, OAuthKey, Token};
use turnpike::auth::rest::{self, Secret};
use turnpike::auth::{Authenticator, Credentials, Directory, OFFERED_ALGORITHMS};
use turnpike::stun::attributes::decode_xor_address;
use turnpike::stun::integrity::{
    long_term_key_md5, long_term_key_sha256, verify_sha1, verify_sha256,
};
use turnpike::stun::{
    AttributeType, ChannelData, Class, Message, MessageBuilder, MessageType, Method, TransactionId,
};
use turnpike::turn::policy::{IpRange, PeerPolicy};
use turnpike::turn::ports::PortPool;
use turnpike::turn::quota::Quotas;
use turnpike::turn::{
    ConnId, ConnectError, Event, FiveTuple, RelayError, RelayId, Request, Server, Shared,
    SharedKeys, Transport, TurnConfig, DEFAULT_LIFETIME, MAX_LIFETIME, PEER_HEADROOM,
    PEER_TAILROOM,
};

use crate::Reader;

/// `TURNPIKE_FUZZ_TRACE=1` prints what the harness sends and receives
/// (for reading a crash or checking a seed).
fn tracing() -> bool {
    static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ON.get_or_init(|| std::env::var_os("TURNPIKE_FUZZ_TRACE").is_some())
}

fn describe(bytes: &[u8]) -> String {
    if let Some(cd) = ChannelData::parse(bytes) {
        return format!("ChannelData 0x{:04x} {} bytes", cd.channel, cd.data.len());
    }
    match Message::parse(bytes) {
        Ok(m) => {
            let code = m
                .get(AttributeType::ERROR_CODE)
                .and_then(|v| turnpike::stun::attributes::ErrorCode::decode(v).ok())
                .map(|e| format!(" {}", e.code))
                .unwrap_or_default();
            format!("{:?} 0x{:03x}{code}", m.class(), m.method().0)
        }
        Err(e) => format!("not STUN ({e}), {} bytes", bytes.len()),
    }
}

pub const REALM: &str = "turnpike.fuzz";
pub const SERVER_NAME: &str = "auth.turnpike.fuzz";
/// The Unix second `t0` is.
pub const UNIX0: u64 = 1_700_000_000;
const REST_SECRET: &[u8] = b"rest-secret";
const NORTH: &[u8; 32] = b"01234567890123456789012345678901";
const SOUTH: &[u8; 16] = b"0123456789abcdef";
const MIN_PORT: u16 = 50000;

fn sa(s: &str) -> SocketAddr {
    s.parse().expect("literal address")
}

/// Server addresses the clients talk to (also the policy's own endpoints).
fn server_v4() -> SocketAddr {
    sa("198.51.100.1:3478")
}
fn server_v6() -> SocketAddr {
    sa("[2001:db8::1]:3478")
}

/// The clients: two UDP sources sharing an IP, a TCP and a TLS client on
/// another IP, an IPv6 UDP client and a DTLS one.
fn clients() -> Vec<FiveTuple> {
    let t = |transport, client: &str, server| FiveTuple {
        transport,
        client: sa(client),
        server,
    };
    vec![
        t(Transport::Udp, "203.0.113.5:40000", server_v4()),
        t(Transport::Udp, "203.0.113.5:40001", server_v4()),
        t(Transport::Tcp, "203.0.113.6:50000", server_v4()),
        t(Transport::Tls, "203.0.113.6:50001", server_v4()),
        t(Transport::Udp, "[2001:db8:1::5]:40000", server_v6()),
        t(Transport::Dtls, "[2001:db8:1::6]:40000", server_v6()),
    ]
}

/// Peers worth trying: public ones, and every kind the policy must refuse
/// (loopback, private, the server's own endpoint, embedded IPv4 forms,
/// multicast, unspecified, the relay addresses themselves).
const PEERS: &[&str] = &[
    "8.8.8.8:9000",
    "8.8.4.4:9001",
    "[2606:4700:4700::1111]:9000",
    "127.0.0.1:9000",
    "10.0.0.1:5000",
    "198.51.100.1:3478",
    "[::ffff:127.0.0.1]:9000",
    "[64:ff9b::808:808]:9000",
    "[::ffff:8.8.8.8]:9000",
    "0.0.0.0:0",
    "[::1]:1",
    "192.0.2.10:50000",
    "224.0.0.1:9",
    "169.254.169.254:80",
];

/// What a signed request was signed with: its answer must verify with it.
#[derive(Clone)]
struct SentKey {
    key: Vec<u8>,
}

/// Settings drawn from the first bytes of the input.
struct Knobs {
    user_quota: u32,
    total_quota: u32,
    max_bps: u64,
    auth_reply_rate: u32,
    strict_expiry: bool,
    tcp_relay: bool,
    oauth: bool,
    allow_loopback: bool,
    max_permissions: usize,
    max_channels: usize,
    ports: u16,
    software: bool,
    dual_stack: bool,
    max_per_source: u32,
    max_peer_connections: u32,
    classic: bool,
}

impl Knobs {
    fn read(r: &mut Reader<'_>) -> Knobs {
        let (a, b, c) = (r.u8(), r.u8(), r.u8());
        Knobs {
            user_quota: [0, 1, 2, 5][(a & 3) as usize],
            total_quota: [0, 0, 3, 8][((a >> 2) & 3) as usize],
            max_bps: [0, 0, 8_000, 1_000_000][((a >> 4) & 3) as usize],
            auth_reply_rate: [0, 0, 1, 10][((a >> 6) & 3) as usize],
            strict_expiry: b & 1 != 0,
            tcp_relay: b & 2 != 0,
            oauth: b & 4 != 0,
            allow_loopback: b & 8 != 0,
            max_permissions: if b & 16 != 0 { 2 } else { 8 },
            max_channels: if b & 32 != 0 { 2 } else { 8 },
            ports: if b & 64 != 0 { 4 } else { 64 },
            software: b & 128 != 0,
            dual_stack: c & 1 == 0,
            max_per_source: [0, 1, 2, 256][((c >> 1) & 3) as usize],
            max_peer_connections: [64, 1, 2, 64][((c >> 3) & 3) as usize],
            classic: c & 32 == 0,
        }
    }
}

pub struct Harness {
    pub server: Server,
    pub now: Instant,
    policy: PeerPolicy,
    clients: Vec<FiveTuple>,
    nonces: Vec<Vec<u8>>,
    /// Relays the shell opened and has not closed.
    open: BTreeSet<RelayId>,
    /// Relay requests not answered yet (deferred by the input), with the
    /// address asked for.
    unanswered: Vec<(RelayId, SocketAddr)>,
    fail_opens: u8,
    defer_opens: bool,
    /// RFC 6062 connects the shell has not answered yet.
    connecting: Vec<ConnId>,
    /// Allocations announced created and not yet deleted (events).
    announced: std::collections::HashSet<FiveTuple>,
    /// What the client side has learnt: tokens, relayed addresses,
    /// connection ids, channel numbers it asked for.
    tokens: Vec<[u8; 8]>,
    relayed: Vec<SocketAddr>,
    conn_ids: Vec<ConnId>,
    channels: Vec<u16>,
    /// OAuth mac key and its signing length from the last token sent.
    session_mac: Option<([u8; 20], usize)>,
    /// Keys of the signed requests by transaction id.
    sent: HashMap<[u8; 12], SentKey>,
    /// Last request each client sent, for retransmissions.
    last: Vec<Vec<u8>>,
    /// The last control message any client received.
    last_answer: Option<Vec<u8>>,
    calls: u32,
    ports_free: u32,
}

impl Harness {
    /// A server configured from the input's first bytes, and a nonce for
    /// every client from its first 401.
    pub fn new(r: &mut Reader<'_>) -> Harness {
        let k = Knobs::read(r);
        let t0 = Instant::now();
        let mut creds = Credentials::new(REALM);
        creds.add_spec("alice:wonderland").expect("user spec");
        let ha1: String = long_term_key_md5("bob", REALM, "builder")
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        creds.add_spec(&format!("bob:0x{ha1}")).expect("HA1 spec");
        let nonces = NonceIssuer::new(
            [7; 32],
            t0,
            Duration::from_secs(600),
            FEATURE_PASSWORD_ALGORITHMS,
        );
        let mut dir = Directory::new(creds);
        dir.secrets = vec![Secret(REST_SECRET.to_vec())];
        if k.oauth {
            dir.oauth_keys.insert(
                "north".into(),
                OAuthKey::new(Alg::A256Gcm, NORTH, 0).expect("key"),
            );
            dir.oauth_keys.insert(
                "south".into(),
                OAuthKey::new(Alg::A128Gcm, SOUTH, 60).expect("key"),
            );
        }
        let mut auth = Authenticator::new(dir, nonces).with_clock(t0, UNIX0);
        if k.oauth {
            auth = auth.with_oauth(SERVER_NAME);
        }
        let policy = PeerPolicy::new(
            vec![IpRange::parse("10.1.0.0/16").expect("range")],
            vec![IpRange::parse("8.8.4.4").expect("range")],
            k.allow_loopback,
            vec![server_v4(), server_v6()],
        );
        let mut relay_ips: Vec<IpAddr> = vec![Ipv4Addr::new(192, 0, 2, 10).into()];
        if k.dual_stack {
            relay_ips.push("2001:db8::10".parse::<Ipv6Addr>().expect("ip").into());
        }
        let config = TurnConfig {
            relay_ips,
            external_ips: vec![(
                Ipv4Addr::new(192, 0, 2, 10).into(),
                Ipv4Addr::new(203, 0, 113, 200).into(),
            )],
            default_lifetime: DEFAULT_LIFETIME,
            max_lifetime: MAX_LIFETIME,
            max_permissions: k.max_permissions,
            max_channels: k.max_channels,
            max_bps: k.max_bps,
            software: k.software.then(|| "turnpike-fuzz".to_string()),
            policy: policy.clone(),
            clients: Default::default(),
            auth_reply_rate: k.auth_reply_rate,
            strict_expiry: k.strict_expiry,
            tcp_relay: k.tcp_relay,
            max_peer_connections: k.max_peer_connections,
            max_peer_connections_per_user: k.max_peer_connections * 2,
            stun_backward_compatibility: k.classic,
        };
        let ports = PortPool::new(MIN_PORT, MIN_PORT + k.ports - 1);
        let ports_free = ports.free();
        let shared = Shared::new(
            config,
            auth,
            Quotas::new(k.user_quota, k.total_quota).with_per_source(k.max_per_source),
            ports,
            SharedKeys {
                reservation_token: [3; 32],
                reply_budget: [4; 32],
            },
        );
        let clients = clients();
        let n = clients.len();
        let mut h = Harness {
            server: Server::new(Arc::new(shared), 42),
            now: t0,
            policy,
            clients,
            nonces: vec![Vec::new(); n],
            open: BTreeSet::new(),
            unanswered: Vec::new(),
            fail_opens: 0,
            defer_opens: false,
            connecting: Vec::new(),
            announced: Default::default(),
            tokens: Vec::new(),
            relayed: Vec::new(),
            conn_ids: Vec::new(),
            channels: Vec::new(),
            session_mac: None,
            sent: HashMap::new(),
            last: vec![Vec::new(); n],
            last_answer: None,
            calls: 0,
            ports_free,
        };
        // Each client's first unauthenticated Allocate gets a 401 with a
        // nonce (the reply budget starts full for every source).
        for c in 0..n {
            if !h.nonces[c].is_empty() {
                continue;
            }
            let mut buf = [0u8; 64];
            let txid = h.txid();
            let mut b = MessageBuilder::new(
                &mut buf,
                MessageType::new(Method::ALLOCATE, Class::Request),
                txid,
            );
            b.add(AttributeType::REQUESTED_TRANSPORT, &[17, 0, 0, 0]);
            let len = b.finish().expect("fits");
            let _ = h.client_sends(c, &buf[..len]);
            assert!(!h.nonces[c].is_empty(), "no 401 nonce for client {c}");
        }
        h
    }

    fn unix_now(&self) -> u64 {
        self.server.shared().auth.unix_time(self.now)
    }

    fn txid(&mut self) -> TransactionId {
        self.calls += 1;
        let mut id = [0x5a; 12];
        id[..4].copy_from_slice(&self.calls.to_be_bytes());
        TransactionId(id)
    }

    /// One step of the input's script. Returns false when the input is used
    /// up.
    pub fn step(&mut self, r: &mut Reader<'_>) -> bool {
        if r.is_empty() {
            return false;
        }
        match r.pick(16) {
            0..=5 => self.signed_request(r),
            6 => self.send_indication(r),
            7 => self.channel_data(r),
            8 | 9 => self.peer_data(r),
            10 => self.advance(r),
            11 => {
                let c = r.pick(self.clients.len());
                let bytes = r.long_bytes(1500).to_vec();
                let _ = self.client_sends(c, &bytes);
            }
            12 => {
                let c = r.pick(self.clients.len());
                let bytes = self.last[c].clone();
                let _ = self.client_sends(c, &bytes);
            }
            13 => self.shell(r),
            14 => self.tcp_peer(r),
            _ => self.mutated_request(r),
        }
        let now = self.now;
        if let Some(t) = self.server.poll_timeout() {
            if t <= now {
                // A due timer: the shell would run handle_timeout now, and
                // after that nothing may be due any more.
                self.server.handle_timeout(now);
                self.pump();
                if let Some(t) = self.server.poll_timeout() {
                    assert!(t > now, "poll_timeout still due after handle_timeout");
                }
            }
        }
        true
    }

    /// Lets everything expire and checks nothing is left behind.
    pub fn finish(&mut self) {
        // Answer what the shell still owes, as a shell eventually does.
        self.defer_opens = false;
        for (relay, addr) in std::mem::take(&mut self.unanswered) {
            self.server.relay_opened(self.now, relay, Ok(addr));
            self.open.insert(relay);
        }
        for conn in std::mem::take(&mut self.connecting) {
            self.server
                .peer_connected(self.now, conn, Err(ConnectError::Refused));
        }
        self.pump();
        for _ in 0..4 {
            self.now += Duration::from_secs(2 * 86_400);
            self.server.handle_timeout(self.now);
            self.pump();
        }
        assert_eq!(
            self.server.allocation_count(),
            0,
            "allocations outlive expiry"
        );
        assert!(
            self.open.is_empty(),
            "relay sockets never closed: {:?}",
            self.open
        );
        let shared = self.server.shared();
        assert_eq!(shared.quotas.total(), 0, "quota slots leak");
        assert_eq!(
            shared.ports.lock().map(|p| p.free()).unwrap_or(0),
            self.ports_free,
            "relay ports leak"
        );
        assert!(shared.tcp_conns.is_empty(), "RFC 6062 connections leak");
        assert!(
            self.announced.is_empty(),
            "allocations created without a deleted event: {:?}",
            self.announced
        );
    }

    // ----- the shell ------------------------------------------------------

    /// Runs the shell's side of every queued output and reads every queued
    /// control message.
    fn pump(&mut self) {
        while let Some(request) = self.server.poll_request() {
            match request {
                Request::OpenUdpRelay { relay, addr, .. }
                | Request::ListenTcpRelay { relay, addr } => {
                    self.open.remove(&relay);
                    if self.defer_opens {
                        self.unanswered.push((relay, addr));
                        continue;
                    }
                    if self.fail_opens > 0 {
                        self.fail_opens -= 1;
                        self.server
                            .relay_opened(self.now, relay, Err(RelayError::AddrInUse));
                    } else {
                        self.open.insert(relay);
                        self.server.relay_opened(self.now, relay, Ok(addr));
                    }
                }
                Request::CloseRelay { relay } => {
                    self.open.remove(&relay);
                    self.unanswered.retain(|(r, _)| *r != relay);
                }
                Request::ConnectPeer { conn, relay, .. } => {
                    assert!(
                        self.open.contains(&relay),
                        "connect from a relay that is not open"
                    );
                    self.connecting.push(conn);
                }
                // The core's connect deadline ended it: no answer owed.
                Request::ClosePeer { conn, .. } => self.connecting.retain(|c| *c != conn),
                Request::BindData { .. } | Request::CloseStream { .. } => {}
                // One node: the fleet grants every count it is asked for
                // (the local quotas still apply in the core).
                Request::ReserveQuota { key, .. } => self.server.quota_answered(
                    self.now,
                    key,
                    turnpike::turn::quota::QuotaAnswer::Granted,
                ),
                Request::ReleaseQuota { .. } => {}
            }
        }
        while let Some(event) = self.server.poll_event() {
            match event {
                Event::AllocationCreated { tuple, .. } => {
                    assert!(self.announced.insert(tuple), "created twice: {tuple:?}");
                }
                Event::AllocationRefreshed { tuple, .. } => {
                    let known = self.announced.contains(&tuple);
                    assert!(known, "refreshed unknown {tuple:?}");
                }
                Event::AllocationDeleted(end) => {
                    let t = end.tuple;
                    assert!(self.announced.remove(&t), "deleted unknown {t:?}");
                    assert!(end.start <= end.end, "ends before it starts");
                }
                // 300 (draining), 403, 486 or 508: never a success.
                Event::AllocationRefused { code, .. } => {
                    assert!((300..600).contains(&code), "refused with {code}");
                }
            }
        }
        while let Some(t) = self.server.poll_transmit() {
            self.client_receives(t.to, &t.data);
        }
    }

    /// Deferred relay answers, failures and RFC 6062 connect results.
    fn shell(&mut self, r: &mut Reader<'_>) {
        match r.pick(4) {
            0 => self.fail_opens = r.u8() % 4,
            1 => self.defer_opens = !self.defer_opens,
            2 => {
                if !self.unanswered.is_empty() {
                    let i = r.pick(self.unanswered.len());
                    let (relay, addr) = self.unanswered.remove(i);
                    let ok = r.bool();
                    let result = if ok { Ok(addr) } else { Err(RelayError::Other) };
                    self.server.relay_opened(self.now, relay, result);
                    if ok {
                        self.open.insert(relay);
                    }
                }
            }
            _ => {
                if !self.connecting.is_empty() {
                    let i = r.pick(self.connecting.len());
                    let conn = self.connecting.remove(i);
                    let result = match r.pick(3) {
                        0 => Ok(()),
                        1 => Err(ConnectError::Refused),
                        _ => Err(ConnectError::TimedOut),
                    };
                    self.server.peer_connected(self.now, conn, result);
                }
            }
        }
        self.pump();
    }

    /// RFC 6062 events from peers on TCP relays.
    fn tcp_peer(&mut self, r: &mut Reader<'_>) {
        let from = self.peer(r);
        if r.bool() {
            if let Some(relay) = self.pick_relay(r) {
                if let Some(conn) = self.server.peer_accepted(self.now, relay, from) {
                    assert!(
                        self.policy.check(from).is_ok(),
                        "peer connection accepted from a denied peer {from}"
                    );
                    self.conn_ids.push(conn);
                }
            }
        } else {
            let conn = match self.conn_ids.len() {
                0 => ConnId(r.u32()),
                n => self.conn_ids[r.pick(n)],
            };
            self.server.peer_closed(self.now, conn);
        }
        self.pump();
    }

    fn advance(&mut self, r: &mut Reader<'_>) {
        let secs = match r.pick(8) {
            0 => 1,
            1 => 29,
            2 => 31,
            3 => 299,
            4 => 301,
            5 => 601,
            6 => 3601,
            _ => u64::from(r.u16()),
        };
        self.now += Duration::from_millis(secs * 1000 + u64::from(r.u8()));
        if tracing() {
            eprintln!("time +{secs} s");
        }
        self.server.handle_timeout(self.now);
        self.pump();
    }

    // ----- clients --------------------------------------------------------

    /// A datagram or frame from client `c`; checks what comes back and
    /// returns where data went.
    pub fn client_sends(&mut self, c: usize, bytes: &[u8]) -> Option<(SocketAddr, Vec<u8>)> {
        let tuple = self.clients[c];
        if tracing() {
            eprintln!("client {c} -> {}", describe(bytes));
        }
        let mut forwarded = None;
        if let Some(f) = self.server.handle_client(self.now, tuple, bytes) {
            assert!(
                self.open.contains(&f.relay),
                "data forwarded through relay {:?} that is not open",
                f.relay
            );
            assert!(
                self.policy.check(f.peer).is_ok(),
                "data forwarded to a denied peer {}",
                f.peer
            );
            self.check_forwarded(bytes, f.data);
            if tracing() {
                eprintln!("  forwarded {} bytes to {}", f.data.len(), f.peer);
            }
            forwarded = Some((f.peer, f.data.to_vec()));
        }
        self.pump();
        forwarded
    }

    /// A request from client `c` as alice (MD5 key) with `attrs`; the
    /// answer, if one came.
    pub fn alice_request(
        &mut self,
        c: usize,
        method: Method,
        attrs: impl FnOnce(&mut MessageBuilder<'_>),
    ) -> Option<Vec<u8>> {
        let txid = self.txid();
        let mut buf = vec![0u8; 1500];
        let mut b = MessageBuilder::new(&mut buf, MessageType::new(method, Class::Request), txid);
        attrs(&mut b);
        b.add_username("alice");
        b.add_realm(REALM);
        b.add_nonce(&self.nonces[c]);
        let key = long_term_key_md5("alice", REALM, "wonderland");
        b.add_message_integrity(&key);
        let len = b.finish().expect("fits");
        buf.truncate(len);
        self.sent.insert(txid.0, SentKey { key: key.to_vec() });
        self.last_answer = None;
        self.client_sends(c, &buf);
        self.last_answer.take()
    }

    /// A server where client `c` has an allocation with channel 0x4000
    /// bound to the first peer.
    pub fn with_channel(c: usize) -> Harness {
        let mut h = Harness::new(&mut Reader::new(&[]));
        let ok = |answer: Option<Vec<u8>>| {
            let answer = answer.expect("an answer");
            let m = Message::parse(&answer).expect("STUN");
            assert_eq!(m.class(), Class::SuccessResponse, "setup request failed");
        };
        ok(h.alice_request(c, Method::ALLOCATE, |b| {
            b.add(AttributeType::REQUESTED_TRANSPORT, &[17, 0, 0, 0])
        }));
        let peer = sa(PEERS[0]);
        ok(h.alice_request(c, Method::CHANNEL_BIND, |b| {
            b.add(AttributeType::CHANNEL_NUMBER, &[0x40, 0, 0, 0]);
            b.add_xor_address(AttributeType::XOR_PEER_ADDRESS, &peer);
        }));
        h
    }

    /// The client tuples (index = client number).
    pub fn client(&self, c: usize) -> FiveTuple {
        self.clients[c]
    }

    /// Forwarded data is the DATA of a Send indication or the payload of a
    /// ChannelData message: a slice of what the client sent.
    fn check_forwarded(&self, bytes: &[u8], data: &[u8]) {
        if let Some(cd) = ChannelData::parse(bytes) {
            assert_eq!(cd.data, data, "ChannelData payload changed");
            return;
        }
        let m = Message::parse(bytes).expect("forwarded a non-STUN message");
        assert_eq!(m.class(), Class::Indication);
        assert_eq!(m.method(), Method::SEND);
        assert_eq!(m.get(AttributeType::DATA), Some(data), "Send DATA changed");
    }

    /// A control message for `to`: well formed, for a known client, and
    /// signed with the key of the request it answers.
    fn client_receives(&mut self, to: FiveTuple, data: &[u8]) {
        assert!(
            self.clients.contains(&to),
            "control message for an unknown tuple {to:?}"
        );
        let m = match Message::parse(data) {
            Ok(m) => m,
            Err(_) => {
                // Only a classic (RFC 3489) Binding gets a cookie-less answer.
                let m = Message::parse_classic(data).expect("server sent a malformed STUN message");
                assert_eq!(
                    m.method(),
                    Method::BINDING,
                    "a classic answer to a TURN method"
                );
                assert!(m.get(AttributeType::XOR_MAPPED_ADDRESS).is_none());
                assert!(m.integrity_offset().is_none(), "a signed classic answer");
                self.last_answer = Some(data.to_vec());
                return;
            }
        };
        if tracing() {
            eprintln!("  <- {}", describe(data));
        }
        self.last_answer = Some(data.to_vec());
        let txid = m.transaction_id();
        if let Some(k) = self.sent.get(&txid.0) {
            if m.integrity_sha256_offset().is_some() {
                assert!(
                    verify_sha256(&m, &k.key).is_ok(),
                    "answer's MESSAGE-INTEGRITY-SHA256 does not verify"
                );
            } else if m.integrity_offset().is_some() {
                assert!(
                    verify_sha1(&m, &k.key).is_ok(),
                    "answer's MESSAGE-INTEGRITY does not verify"
                );
            }
        }
        if let Some(n) = m.get(AttributeType::NONCE) {
            let ip = to.client.ip();
            for (i, t) in self.clients.iter().enumerate() {
                if t.client.ip() == ip {
                    self.nonces[i] = n.to_vec();
                }
            }
        }
        if let Some(t) = m.get(AttributeType::RESERVATION_TOKEN) {
            if let Ok(t) = <[u8; 8]>::try_from(t) {
                self.tokens.push(t);
            }
        }
        for a in m.attributes() {
            if a.attr_type == AttributeType::XOR_RELAYED_ADDRESS.0 {
                if let Ok(addr) = decode_xor_address(a.value, &txid) {
                    self.relayed.push(addr);
                }
            }
        }
        if let Some(v) = m.get(AttributeType::CONNECTION_ID) {
            if let Ok(v) = <[u8; 4]>::try_from(v) {
                self.conn_ids.push(ConnId(u32::from_be_bytes(v)));
            }
        }
    }

    fn peer(&mut self, r: &mut Reader<'_>) -> SocketAddr {
        let n = PEERS.len();
        match r.pick(n + 3) {
            i if i < n => sa(PEERS[i]),
            i if i == n => SocketAddr::new(IpAddr::V4(Ipv4Addr::from(r.u32())), r.u16()),
            i if i == n + 1 => {
                let mut o = [0u8; 16];
                o.copy_from_slice(&(u128::from(r.u64()) << 64 | u128::from(r.u64())).to_be_bytes());
                SocketAddr::new(IpAddr::V6(Ipv6Addr::from(o)), r.u16())
            }
            _ => match self.relayed.len() {
                0 => sa(PEERS[0]),
                k => self.relayed[r.pick(k)],
            },
        }
    }

    fn channel(&mut self, r: &mut Reader<'_>) -> u16 {
        match r.pick(8) {
            0..=3 => 0x4000 + u16::from(r.u8() % 4),
            4 => match self.channels.len() {
                0 => 0x4000,
                n => self.channels[r.pick(n)],
            },
            5 => [0x3FFF, 0x4FFF, 0x5000, 0x7FFF, 0x8000][r.pick(5)],
            _ => r.u16(),
        }
    }

    /// A relay socket the shell has open, or any id.
    fn pick_relay(&mut self, r: &mut Reader<'_>) -> Option<RelayId> {
        if self.open.is_empty() || r.u8() == 0xff {
            return Some(RelayId(u32::from(r.u8())));
        }
        let i = r.pick(self.open.len());
        self.open.iter().nth(i).copied()
    }

    /// Request attributes chosen by the input (before the credentials).
    fn attributes(&mut self, r: &mut Reader<'_>, b: &mut MessageBuilder<'_>) {
        for _ in 0..r.pick(7) {
            match r.pick(16) {
                0 => {
                    let proto = match r.pick(4) {
                        3 => r.u8(),
                        i => [17, 6, 17][i],
                    };
                    b.add(AttributeType::REQUESTED_TRANSPORT, &[proto, 0, 0, 0]);
                }
                1 => {
                    let secs = match r.pick(8) {
                        7 => r.u32(),
                        i => [0, 1, 599, 600, 3600, 86_400, u32::MAX][i],
                    };
                    b.add_u32(AttributeType::LIFETIME, secs);
                }
                2 | 3 => {
                    let p = self.peer(r);
                    b.add_xor_address(AttributeType::XOR_PEER_ADDRESS, &p);
                }
                4 => {
                    let ch = self.channel(r);
                    self.channels.push(ch);
                    let v = ch.to_be_bytes();
                    b.add(AttributeType::CHANNEL_NUMBER, &[v[0], v[1], 0, 0]);
                }
                5 => b.add(AttributeType::EVEN_PORT, &[r.u8() & 0x80]),
                6 => {
                    let t = match self.tokens.len() {
                        0 => [r.u8(); 8],
                        n => self.tokens[r.pick(n)],
                    };
                    b.add(AttributeType::RESERVATION_TOKEN, &t);
                }
                7 => {
                    let f = [1, 2, 3, 0][r.pick(4)];
                    b.add(AttributeType::REQUESTED_ADDRESS_FAMILY, &[f, 0, 0, 0]);
                }
                8 => {
                    let f = [1, 2, 3][r.pick(3)];
                    let t = if r.bool() {
                        AttributeType::ADDITIONAL_ADDRESS_FAMILY
                    } else {
                        AttributeType::ADDITIONAL_ADDRESS_FAMILY_DRAFT
                    };
                    b.add(t, &[f, 0, 0, 0]);
                }
                9 => b.add(AttributeType::DONT_FRAGMENT, &[]),
                10 => {
                    let v = r.short_bytes();
                    b.add(AttributeType::DATA, v);
                }
                11 => {
                    let id = match self.conn_ids.len() {
                        0 => r.u32(),
                        n => self.conn_ids[r.pick(n)].0,
                    };
                    b.add_u32(AttributeType::CONNECTION_ID, id);
                }
                12 => {
                    // A known type with whatever value (wrong lengths).
                    const KNOWN: &[AttributeType] = &[
                        AttributeType::REQUESTED_TRANSPORT,
                        AttributeType::LIFETIME,
                        AttributeType::XOR_PEER_ADDRESS,
                        AttributeType::CHANNEL_NUMBER,
                        AttributeType::EVEN_PORT,
                        AttributeType::RESERVATION_TOKEN,
                        AttributeType::REQUESTED_ADDRESS_FAMILY,
                        AttributeType::ADDITIONAL_ADDRESS_FAMILY,
                        AttributeType::DONT_FRAGMENT,
                        AttributeType::CONNECTION_ID,
                        AttributeType::CHANGE_REQUEST,
                        AttributeType::RESPONSE_PORT,
                        AttributeType::PADDING,
                        AttributeType::ICMP,
                    ];
                    let t = KNOWN[r.pick(KNOWN.len())];
                    let v = r.short_bytes();
                    b.add(t, v);
                }
                13 => {
                    let sw = r.short_bytes();
                    b.add(AttributeType::SOFTWARE, sw);
                }
                _ => {
                    let t = AttributeType(r.u16());
                    let v = r.short_bytes();
                    b.add(t, v);
                }
            }
        }
    }

    /// Builds a request (or other message) from the input and signs it as
    /// the input says; returns the client and the bytes.
    fn build_request(&mut self, r: &mut Reader<'_>) -> (usize, Vec<u8>) {
        let c = r.pick(self.clients.len());
        let method = match r.pick(12) {
            0..=2 => Method::ALLOCATE,
            3 => Method::REFRESH,
            4 | 5 => Method::CREATE_PERMISSION,
            6 | 7 => Method::CHANNEL_BIND,
            8 => Method::CONNECT,
            9 => Method::CONNECTION_BIND,
            10 => Method::BINDING,
            _ => Method(r.u16() & 0x0FFF),
        };
        let class = match r.pick(16) {
            0 => Class::Indication,
            1 => Class::SuccessResponse,
            2 => Class::ErrorResponse,
            _ => Class::Request,
        };
        let txid = self.txid();
        let mut buf = vec![0u8; 2048];
        let mut b = MessageBuilder::new(&mut buf, MessageType::new(method, class), txid);
        if method == Method::ALLOCATE && r.u8() < 200 {
            let proto = if self.clients[c].transport.is_stream() && r.bool() {
                6
            } else {
                17
            };
            b.add(AttributeType::REQUESTED_TRANSPORT, &[proto, 0, 0, 0]);
        }
        if matches!(
            method,
            Method::CREATE_PERMISSION | Method::CHANNEL_BIND | Method::CONNECT
        ) && r.u8() < 200
        {
            let p = self.peer(r);
            b.add_xor_address(AttributeType::XOR_PEER_ADDRESS, &p);
        }
        self.attributes(r, &mut b);
        let key = self.sign(r, c, &mut b);
        if r.u8() < 16 {
            // Attributes after the integrity attribute must not count.
            let t = AttributeType(r.u16());
            let v = r.short_bytes();
            b.add(t, v);
        }
        if r.bool() {
            b.add_fingerprint();
        }
        // Too big for the buffer: send nothing (an empty datagram).
        let len = b.finish().unwrap_or_default();
        buf.truncate(len);
        if let Some(key) = key {
            self.sent.insert(txid.0, SentKey { key });
        }
        (c, buf)
    }

    fn signed_request(&mut self, r: &mut Reader<'_>) {
        let (c, bytes) = self.build_request(r);
        self.last[c] = bytes.clone();
        let _ = self.client_sends(c, &bytes);
    }

    /// A signed request with bytes changed afterwards.
    fn mutated_request(&mut self, r: &mut Reader<'_>) {
        let (c, mut bytes) = self.build_request(r);
        for _ in 0..=r.pick(4) {
            if bytes.is_empty() {
                break;
            }
            let at = r.u16() as usize % bytes.len();
            match r.pick(4) {
                0 => bytes[at] ^= 1 << (r.u8() % 8),
                1 => bytes[at] = r.u8(),
                2 => bytes.truncate(at),
                _ => {
                    let extra = r.short_bytes();
                    bytes.splice(at..at, extra.iter().copied());
                }
            }
        }
        let _ = self.client_sends(c, &bytes);
    }

    /// Adds credentials and integrity as the input chooses; returns the key
    /// used when the answer is expected to be signed with it.
    fn sign(
        &mut self,
        r: &mut Reader<'_>,
        c: usize,
        b: &mut MessageBuilder<'_>,
    ) -> Option<Vec<u8>> {
        let nonce = match r.pick(16) {
            0 => r.short_bytes().to_vec(),
            _ => self.nonces[c].clone(),
        };
        let realm = if r.u8() == 0 { "other.realm" } else { REALM };
        match r.pick(10) {
            // No credentials: the 401 path.
            0 => None,
            1 | 2 => {
                b.add_username("alice");
                b.add_realm(realm);
                b.add_nonce(&nonce);
                let key = long_term_key_md5("alice", REALM, "wonderland");
                b.add_message_integrity(&key);
                Some(key.to_vec())
            }
            3 => {
                // SHA-256 password algorithm, bid-down protected.
                b.add_username(["alice", "bob"][r.pick(2)]);
                b.add_realm(realm);
                b.add_nonce(&nonce);
                b.add(AttributeType::PASSWORD_ALGORITHMS, &OFFERED_ALGORITHMS);
                b.add(AttributeType::PASSWORD_ALGORITHM, &[0, 2, 0, 0]);
                let key = long_term_key_sha256("alice", REALM, "wonderland");
                b.add_message_integrity_sha256(&key);
                Some(key.to_vec())
            }
            4 => {
                b.add(AttributeType::USERHASH, &userhash("alice", REALM));
                b.add_realm(realm);
                b.add_nonce(&nonce);
                let key = long_term_key_md5("alice", REALM, "wonderland");
                b.add_message_integrity(&key);
                Some(key.to_vec())
            }
            5 => {
                b.add_username("bob");
                b.add_realm(realm);
                b.add_nonce(&nonce);
                let key = long_term_key_md5("bob", REALM, "builder");
                b.add_message_integrity(&key);
                Some(key.to_vec())
            }
            6 => {
                // REST username, possibly expired.
                let expiry = self.unix_now() as i64 + i64::from(r.u16()) - 2000;
                let user = format!("{expiry}:carol");
                let password = rest::password(REST_SECRET, &user);
                b.add_username(&user);
                b.add_realm(realm);
                b.add_nonce(&nonce);
                let key = long_term_key_md5(&user, REALM, &password);
                b.add_message_integrity(&key);
                Some(key.to_vec())
            }
            7 => self.oauth(r, b, realm, &nonce),
            8 => {
                // The mac key of the last token, without the token.
                let (mac, len) = self.session_mac.unwrap_or(([1; 20], 20));
                b.add_username("north");
                b.add_realm(realm);
                b.add_nonce(&nonce);
                b.add_message_integrity(&mac[..len]);
                Some(mac[..len].to_vec())
            }
            _ => {
                // A wrong password.
                b.add_username("alice");
                b.add_realm(realm);
                b.add_nonce(&nonce);
                b.add_message_integrity(&long_term_key_md5("alice", REALM, "wrong"));
                None
            }
        }
    }

    /// RFC 7635: a token sealed for the server, its mac key signing.
    fn oauth(
        &mut self,
        r: &mut Reader<'_>,
        b: &mut MessageBuilder<'_>,
        realm: &str,
        nonce: &[u8],
    ) -> Option<Vec<u8>> {
        let (kid, key) = match r.pick(3) {
            0 => ("north", OAuthKey::new(Alg::A256Gcm, NORTH, 0).expect("key")),
            1 => (
                "south",
                OAuthKey::new(Alg::A128Gcm, SOUTH, 60).expect("key"),
            ),
            _ => (
                "west",
                OAuthKey::new(Alg::A128Gcm, &[9; 16], 0).expect("key"),
            ),
        };
        let mut mac_key = [0u8; 20];
        for (i, m) in mac_key.iter_mut().enumerate() {
            *m = r.u8() ^ i as u8;
        }
        let start = self.unix_now() as i64 + i64::from(r.u16()) - 30_000;
        let token = Token {
            mac_key,
            timestamp: ((start.max(0) as u64) << 16) | u64::from(r.u16()),
            lifetime: match r.pick(5) {
                4 => r.u32(),
                i => [0, 1, 60, 3600][i],
            },
        };
        let mut aead_nonce = [0u8; oauth::NONCE_LEN];
        aead_nonce[0] = r.u8();
        let server_name = if r.u8() == 0 { REALM } else { SERVER_NAME };
        let mut sealed = oauth::encode(&key, server_name, &aead_nonce, &token);
        if r.u8() < 8 {
            sealed = r.short_bytes().to_vec();
        }
        let len = if r.bool() { 16 } else { 20 };
        self.session_mac = Some((mac_key, len));
        b.add_username(kid);
        b.add_realm(realm);
        b.add_nonce(nonce);
        b.add(AttributeType::ACCESS_TOKEN, &sealed);
        b.add_message_integrity(&mac_key[..len]);
        Some(mac_key[..len].to_vec())
    }

    fn send_indication(&mut self, r: &mut Reader<'_>) {
        let c = r.pick(self.clients.len());
        let peer = self.peer(r);
        let data = r.long_bytes(1400).to_vec();
        let txid = self.txid();
        let mut buf = vec![0u8; 2048];
        let mut b = MessageBuilder::new(
            &mut buf,
            MessageType::new(Method::SEND, Class::Indication),
            txid,
        );
        b.add_xor_address(AttributeType::XOR_PEER_ADDRESS, &peer);
        if r.u8() != 0 {
            b.add(AttributeType::DATA, &data);
        }
        if r.u8() < 32 {
            b.add(AttributeType::DONT_FRAGMENT, &[]);
        }
        if r.bool() {
            b.add_fingerprint();
        }
        let len = b.finish().expect("fits");
        buf.truncate(len);
        let _ = self.client_sends(c, &buf);
    }

    fn channel_data(&mut self, r: &mut Reader<'_>) {
        let c = r.pick(self.clients.len());
        let ch = self.channel(r);
        let data = r.long_bytes(1400);
        let mut bytes = ch.to_be_bytes().to_vec();
        let stated = match r.pick(8) {
            0 => r.u16(),
            _ => data.len() as u16,
        };
        bytes.extend_from_slice(&stated.to_be_bytes());
        bytes.extend_from_slice(data);
        if self.clients[c].transport.is_stream() || r.bool() {
            while bytes.len() % 4 != 0 {
                bytes.push(0);
            }
        }
        let _ = self.client_sends(c, &bytes);
    }

    /// A datagram from a peer on a relay socket, framed in place.
    fn peer_data(&mut self, r: &mut Reader<'_>) {
        let Some(relay) = self.pick_relay(r) else {
            return;
        };
        let from = self.peer(r);
        let payload: Vec<u8> = match r.pick(16) {
            0 => vec![0xAB; 65_487 - r.pick(4)],
            1 => vec![0xCD; 65_488 + r.pick(4)],
            _ => r.long_bytes(1400).to_vec(),
        };
        let (head, tail) = match r.pick(16) {
            0 => (r.pick(PEER_HEADROOM + 1), r.pick(PEER_TAILROOM + 1)),
            _ => (PEER_HEADROOM, PEER_TAILROOM),
        };
        let len = payload.len();
        let mut buf = vec![0u8; head + len + tail];
        buf[head..head + len].copy_from_slice(&payload);
        let delivered = self
            .server
            .handle_peer(self.now, relay, from, &mut buf, head, len);
        if tracing() {
            eprintln!(
                "peer {from} on {relay:?}, {len} bytes: delivered {}",
                delivered.is_some()
            );
        }
        let Some(d) = delivered else {
            return;
        };
        assert!(
            self.open.contains(&relay),
            "peer data delivered from relay {relay:?} that is not open"
        );
        assert!(
            self.clients.contains(&d.to),
            "peer data for an unknown client {:?}",
            d.to
        );
        assert!(
            d.start <= d.end && d.end <= buf.len(),
            "delivery out of the buffer"
        );
        let out = &buf[d.start..d.end];
        if let Some(cd) = ChannelData::parse(out) {
            assert_eq!(cd.data, &payload[..], "ChannelData carries other bytes");
            if d.to.transport.is_stream() {
                assert_eq!(out.len() % 4, 0, "stream ChannelData is not padded");
            }
        } else {
            let m = Message::parse(out).expect("Data indication is not STUN");
            assert_eq!(m.method(), Method::DATA);
            assert_eq!(m.class(), Class::Indication);
            assert_eq!(m.get(AttributeType::DATA), Some(&payload[..]));
            let p = m
                .get(AttributeType::XOR_PEER_ADDRESS)
                .expect("Data indication without XOR-PEER-ADDRESS");
            assert_eq!(decode_xor_address(p, &m.transaction_id()), Ok(from));
        }
    }
}
