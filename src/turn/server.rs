//! The TURN state machine of one worker.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::allocation::{Allocation, Bandwidth, Channel, Counters, Relay, CHANNEL_LIFETIME};
use super::ports::PortPool;
use super::quota::{Limits, Quotas};
use super::transactions::TransactionCache;
use super::{Deliver, FiveTuple, Forward, Output, RelayId, Transmit, TurnConfig};
use crate::auth::rate::ReplyBudget;
use crate::auth::{Authenticated, Authenticator, OAuthSession, Origin, Rejection, Signer};
use crate::stun::attributes::{self, AttributeType};
use crate::stun::channel_data::{is_channel_number, ChannelData};
use crate::stun::{Class, Message, MessageBuilder, MessageType, Method, ParseError, TransactionId};

/// Bytes the shell leaves in front of peer data so a Data indication header
/// (20 + XOR-PEER-ADDRESS 24 + DATA 4) can be written in place.
pub const PEER_HEADROOM: usize = 48;
/// Bytes the shell leaves after peer data for padding to four bytes.
pub const PEER_TAILROOM: usize = 4;

/// Relay ports tried before an Allocate gets 508.
const RELAY_ATTEMPTS: u8 = 8;
/// RFC 8656 §7.2: a reserved port is kept "for at least 30 seconds".
const RESERVATION_TTL: Duration = Duration::from_secs(30);
/// Largest control message built.
const CONTROL_MAX: usize = 1500;

const FAMILY_IPV4: u8 = 0x01;
const FAMILY_IPV6: u8 = 0x02;
/// REQUESTED-TRANSPORT value for UDP (RFC 8656 §18.6: IANA protocol 17).
const PROTOCOL_UDP: u8 = 17;
const PROTOCOL_TCP: u8 = 6;

/// State shared by every worker.
pub struct Shared {
    pub config: TurnConfig,
    pub auth: Authenticator,
    pub quotas: Quotas,
    pub ports: Mutex<PortPool>,
    reservations: Mutex<HashMap<[u8; 8], Reservation>>,
    /// RFC 6062 peer connections of every worker.
    pub tcp_conns: super::tcp_relay::TcpConns,
    /// Key for RESERVATION-TOKENs: random in the shell, fixed in tests.
    token_key: [u8; 32],
    /// The per-source budget of unauthenticated answers, one for all
    /// workers (RFC 5780 answers in the shell spend it too).
    pub reply_budget: ReplyBudget,
}

#[derive(Debug, Clone, Copy)]
struct Reservation {
    addr: SocketAddr,
    expires: Instant,
}

impl Shared {
    pub fn new(config: TurnConfig, auth: Authenticator, quotas: Quotas, ports: PortPool) -> Self {
        let reply_budget = ReplyBudget::new(config.auth_reply_rate, [0; 32]);
        Shared {
            config,
            auth,
            quotas,
            ports: Mutex::new(ports),
            reservations: Mutex::default(),
            tcp_conns: Default::default(),
            token_key: [0; 32],
            reply_budget,
        }
    }

    /// Sets the secret that keys the reply budget's buckets (the shell
    /// passes random bytes, so sources cannot aim at a victim's bucket).
    pub fn with_budget_key(mut self, key: [u8; 32]) -> Self {
        self.reply_budget = ReplyBudget::new(self.config.auth_reply_rate, key);
        self
    }

    /// Sets the secret RESERVATION-TOKENs are derived from (the shell
    /// passes random bytes).
    pub fn with_token_key(mut self, key: [u8; 32]) -> Self {
        self.token_key = key;
        self
    }

    fn ports(&self) -> std::sync::MutexGuard<'_, PortPool> {
        self.ports.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn reservations(&self) -> std::sync::MutexGuard<'_, HashMap<[u8; 8], Reservation>> {
        self.reservations.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// What an Allocate waits for while its relay sockets open.
#[derive(Debug, Clone)]
pub struct PendingAllocate {
    txid: TransactionId,
    fingerprint: bool,
    even_port: bool,
    /// Token to return for the port held next to this one.
    token: Option<[u8; 8]>,
    /// The family that could not be served in a dual allocation.
    family_error: Option<u8>,
    draft_code_points: bool,
    attempts: u8,
}

/// How to answer one request.
#[derive(Debug, Clone)]
pub(crate) struct Ctx {
    pub(crate) tuple: FiveTuple,
    pub(crate) message_type: MessageType,
    pub(crate) txid: TransactionId,
    pub(crate) fingerprint: bool,
}

/// An answer's content: success, or an error code.
pub(crate) enum Answer {
    Success,
    Error(u16),
}

pub struct Server {
    pub(super) shared: Arc<Shared>,
    pub(super) allocations: Vec<Option<Allocation>>,
    free_slots: Vec<u32>,
    generation: u32,
    pub(super) by_tuple: HashMap<FiveTuple, u32>,
    /// RelayId → allocation slot.
    pub(super) relays: Vec<Option<u32>>,
    free_relays: Vec<u32>,
    timers: BinaryHeap<Reverse<(Instant, u32, u32)>>,
    cache: TransactionCache,
    pub(super) transmits: VecDeque<Transmit>,
    pub(super) outputs: VecDeque<Output>,
    rng: u64,
    /// This worker's seed and count of tokens issued: with the shared key
    /// they make RESERVATION-TOKENs unique across workers and unguessable.
    seed: u64,
    tokens: u64,
    stats: Stats,
    /// RFC 6062 Connects waiting for the shell, by CONNECTION-ID.
    pub(super) connecting: HashMap<u32, super::tcp_relay::Connecting>,
    /// Bind deadlines of peer connections this worker opened or accepted.
    pub(super) conn_timers: BinaryHeap<Reverse<(Instant, u32)>>,
}

/// What this worker's core has done, for metrics. Plain counters: the
/// shell copies them out once a second.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    pub allocations_created: u64,
    pub binding_requests: u64,
    /// RFC 3489 Binding requests (no magic cookie) that reached the core.
    pub classic_binding_requests: u64,
    /// Authentication failures by answer: 401, 438, 400.
    pub auth_unauthorized: u64,
    pub auth_stale_nonce: u64,
    pub auth_bad_request: u64,
    /// REST usernames refused for having expired (also counted as 401).
    pub auth_expired: u64,
    pub quota_refusals: u64,
    /// Relayed traffic, live allocations included.
    pub to_peer: Counters,
    pub to_client: Counters,
}

/// One active allocation, as the admin API lists it.
#[derive(Debug, Clone)]
pub struct SessionView {
    pub slot: u32,
    pub generation: u32,
    pub username: String,
    pub tuple: FiveTuple,
    pub relayed: Vec<SocketAddr>,
    pub created: Instant,
    pub to_peer: Counters,
    pub to_client: Counters,
}

/// Outcome of reading an address family attribute.
fn family_of(value: &[u8]) -> Result<u8, u16> {
    if value.len() != 4 {
        return Err(400);
    }
    match value[0] {
        FAMILY_IPV4 | FAMILY_IPV6 => Ok(value[0]),
        // RFC 8656 §7.2: an unknown family gets 440.
        _ => Err(440),
    }
}

fn is_v4(family: u8) -> bool {
    family == FAMILY_IPV4
}

impl Server {
    pub fn new(shared: Arc<Shared>, seed: u64) -> Self {
        Server {
            shared,
            allocations: Vec::new(),
            free_slots: Vec::new(),
            generation: 0,
            by_tuple: HashMap::new(),
            relays: Vec::new(),
            free_relays: Vec::new(),
            timers: BinaryHeap::new(),
            cache: TransactionCache::default(),
            transmits: VecDeque::new(),
            outputs: VecDeque::new(),
            // Mixed first: seeds that differ only in the low bit must not
            // give workers the same stream.
            rng: seed.wrapping_mul(0x9E37_79B9_7F4A_7C15).rotate_left(29) | 1,
            seed,
            tokens: 0,
            stats: Stats::default(),
            connecting: HashMap::new(),
            conn_timers: BinaryHeap::new(),
        }
    }

    /// Counters so far, relayed traffic of live allocations included.
    pub fn stats(&self) -> Stats {
        let mut s = self.stats;
        for a in self.allocations.iter().flatten() {
            add(&mut s.to_peer, &a.to_peer);
            add(&mut s.to_client, &a.to_client);
        }
        s
    }

    /// The active allocations.
    pub fn sessions(&self) -> Vec<SessionView> {
        self.allocations
            .iter()
            .enumerate()
            .filter_map(|(slot, a)| {
                let a = a.as_ref().filter(|a| a.is_active())?;
                Some(SessionView {
                    slot: slot as u32,
                    generation: a.generation,
                    username: a.username.clone(),
                    tuple: a.tuple,
                    relayed: a.relays.iter().map(|r| r.advertised).collect(),
                    created: a.created,
                    to_peer: a.to_peer,
                    to_client: a.to_client,
                })
            })
            .collect()
    }

    /// Ends an allocation at an admin's request: relays closed, ports and
    /// quota released now. False if it is already gone.
    pub fn end_session(&mut self, slot: u32, generation: u32) -> bool {
        let live = matches!(
            self.allocations.get(slot as usize),
            Some(Some(a)) if a.generation == generation && a.is_active()
        );
        if live {
            self.delete(slot);
        }
        live
    }

    pub fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    /// Number of allocations this worker holds (pending ones included).
    pub fn allocation_count(&self) -> usize {
        self.by_tuple.len()
    }

    pub fn allocation(&self, tuple: &FiveTuple) -> Option<&Allocation> {
        let slot = *self.by_tuple.get(tuple)?;
        self.allocations[slot as usize].as_ref()
    }

    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    pub fn poll_output(&mut self) -> Option<Output> {
        self.outputs.pop_front()
    }

    /// Puts allocation `slot`'s expiry on the timer heap if it falls due
    /// before the entry already armed (a shortened lifetime). Superseded
    /// entries stay until they pop, so the heap is rebuilt whenever they
    /// outnumber the allocations: memory stays O(allocations).
    fn arm(&mut self, slot: u32) {
        let a = self.allocations[slot as usize].as_mut().expect("live slot");
        if a.armed.is_some_and(|at| at <= a.expires) {
            return;
        }
        a.armed = Some(a.expires);
        self.timers.push(Reverse((a.expires, slot, a.generation)));
        if self.timers.len() > 2 * self.by_tuple.len() + 64 {
            self.timers = self
                .allocations
                .iter()
                .enumerate()
                .filter_map(|(slot, a)| {
                    let a = a.as_ref()?;
                    Some(Reverse((a.armed?, slot as u32, a.generation)))
                })
                .collect();
        }
    }

    /// Entries on the allocation timer heap (tests: it must stay bounded).
    pub fn timer_entries(&self) -> usize {
        self.timers.len()
    }

    /// When [`Server::handle_timeout`] should next run.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let allocation = self.timers.peek().map(|Reverse((at, _, _))| *at);
        let connection = self.conn_timers.peek().map(|Reverse((at, _))| *at);
        match (allocation, connection) {
            (Some(a), Some(c)) => Some(a.min(c)),
            (a, c) => a.or(c),
        }
    }

    /// Expires allocations whose time has come. An allocation's entry
    /// that pops before its (extended) expiry is pushed again for it; an
    /// entry that is no longer the allocation's armed one is dropped.
    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some(&Reverse((at, slot, generation))) = self.timers.peek() {
            if at > now {
                break;
            }
            self.timers.pop();
            let Some(a) = self.allocations[slot as usize].as_mut() else {
                continue;
            };
            if a.generation != generation || a.armed != Some(at) {
                continue;
            }
            if a.expires <= now {
                self.delete(slot);
            } else {
                a.armed = Some(a.expires);
                self.timers.push(Reverse((a.expires, slot, generation)));
            }
        }
        self.cache.expire(now);
        self.expire_reservations(now);
        self.expire_connections(now);
    }

    /// Returns ports held for RESERVATION-TOKENs nobody claimed in time.
    fn expire_reservations(&self, now: Instant) {
        let mut reservations = self.shared.reservations();
        if reservations.is_empty() {
            return;
        }
        let mut ports = self.shared.ports();
        reservations.retain(|_, r| {
            let keep = r.expires > now;
            if !keep {
                ports.release(r.addr.port());
            }
            keep
        });
    }

    /// A fresh RESERVATION-TOKEN: SHA-256 over the shared key, this
    /// worker's seed and a counter. Workers share one reservation table, so
    /// tokens must never collide between them.
    pub(super) fn reservation_token(&mut self) -> [u8; 8] {
        use sha2::{Digest, Sha256};
        self.tokens += 1;
        let mut h = Sha256::new();
        h.update(self.shared.token_key);
        h.update(self.seed.to_be_bytes());
        h.update(self.tokens.to_be_bytes());
        let d = h.finalize();
        let mut t = [0u8; 8];
        t.copy_from_slice(&d[..8]);
        t
    }

    /// A live allocation by slot.
    pub(super) fn allocation_at(&self, slot: u32) -> &Allocation {
        self.allocations[slot as usize].as_ref().expect("live slot")
    }

    pub(super) fn allocation_mut(&mut self, slot: u32) -> &mut Allocation {
        self.allocations[slot as usize].as_mut().expect("live slot")
    }

    /// A transaction id for an indication the server originates.
    pub(super) fn random_txid(&mut self) -> [u8; 12] {
        let (a, b) = (self.next_random(), self.next_random());
        let mut id = [0u8; 12];
        id[..8].copy_from_slice(&a.to_be_bytes());
        id[8..].copy_from_slice(&b.to_be_bytes()[..4]);
        id
    }

    fn next_random(&mut self) -> u64 {
        // xorshift64*: transaction ids of Data indications need only be
        // unique, not secret.
        self.rng ^= self.rng >> 12;
        self.rng ^= self.rng << 25;
        self.rng ^= self.rng >> 27;
        self.rng.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    // ----- input from clients -------------------------------------------

    /// A datagram (UDP) or a frame (TCP) from a client. Control answers are
    /// queued; data for a peer is returned, borrowing `bytes`.
    pub fn handle_client<'a>(
        &mut self,
        now: Instant,
        tuple: FiveTuple,
        bytes: &'a [u8],
    ) -> Option<Forward<'a>> {
        if let Some(cd) = ChannelData::parse(bytes) {
            return self.channel_data(now, tuple, cd);
        }
        let msg = match Message::parse(bytes) {
            Ok(m) => m,
            Err(ParseError::BadMagicCookie) if self.shared.config.stun_backward_compatibility => {
                self.classic_binding(now, tuple, bytes);
                return None;
            }
            Err(_) => return None,
        };
        match msg.class() {
            Class::Request => {
                self.request(now, tuple, &msg);
                None
            }
            Class::Indication if msg.method() == Method::SEND => {
                self.send_indication(now, tuple, &msg)
            }
            _ => None,
        }
    }

    /// The client's TCP connection closed: RFC 8656 §3.1, the allocation
    /// goes with it.
    pub fn handle_client_closed(&mut self, tuple: FiveTuple) {
        if let Some(&slot) = self.by_tuple.get(&tuple) {
            self.delete(slot);
        }
    }

    fn request(&mut self, now: Instant, tuple: FiveTuple, msg: &Message<'_>) {
        let txid = msg.transaction_id();
        if let Some(answer) = self.cache.get(&tuple, msg.method(), &txid) {
            // RFC 8489 §6.3.4: a retransmission gets the same answer.
            let data = answer.clone();
            self.transmits.push_back(Transmit { to: tuple, data });
            return;
        }
        let ctx = Ctx {
            tuple,
            message_type: msg.message_type(),
            txid,
            fingerprint: msg.has_fingerprint(),
        };
        match msg.method() {
            Method::BINDING => {
                self.stats.binding_requests += 1;
                self.binding(tuple, msg)
            }
            Method::ALLOCATE
            | Method::REFRESH
            | Method::CREATE_PERMISSION
            | Method::CHANNEL_BIND
            | Method::CONNECT
            | Method::CONNECTION_BIND => {
                let session = self.oauth_session(&tuple);
                let auth = match self.shared.auth.authenticate(
                    now,
                    msg,
                    tuple.client.ip(),
                    session.as_ref(),
                ) {
                    Ok(a) => a,
                    Err(r) => return self.reject(now, &ctx, r),
                };
                if self.expired(now, msg.method(), &auth) {
                    self.stats.auth_expired += 1;
                    return self.reject(now, &ctx, Rejection::Unauthorized);
                }
                if self.unknown_attributes(now, &ctx, msg, &auth.signer) {
                    return;
                }
                match msg.method() {
                    Method::ALLOCATE => self.allocate(now, &ctx, msg, auth),
                    Method::REFRESH => self.refresh(now, &ctx, msg, auth),
                    Method::CREATE_PERMISSION => self.create_permission(now, &ctx, msg, auth),
                    Method::CONNECT if self.shared.config.tcp_relay => {
                        self.connect(now, &ctx, msg, auth)
                    }
                    Method::CONNECTION_BIND if self.shared.config.tcp_relay => {
                        self.connection_bind(now, &ctx, msg, auth)
                    }
                    // RFC 6062 off: as for any method we do not serve.
                    Method::CONNECT | Method::CONNECTION_BIND => {
                        self.error(now, &ctx, 400, &auth.signer)
                    }
                    _ => self.channel_bind(now, &ctx, msg, auth),
                }
            }
            // A method we do not serve: an unauthenticated reflection too.
            _ => {
                if self.shared.reply_budget.allow(now, tuple.client.ip()) {
                    self.answer(now, &ctx, Answer::Error(400), None, false, |_| {})
                }
            }
        }
    }

    /// The key of this 5-tuple's OAuth allocation, if it has one.
    fn oauth_session(&self, tuple: &FiveTuple) -> Option<OAuthSession> {
        self.shared.auth.oauth_server_name()?;
        let slot = *self.by_tuple.get(tuple)?;
        let a = self.allocations[slot as usize].as_ref()?;
        match a.origin {
            Origin::OAuth { expires } => Some(OAuthSession {
                signer: a.signer.clone(),
                expires,
            }),
            _ => None,
        }
    }

    /// A REST username past its expiry may not Allocate, nor Refresh with
    /// `strict_expiry`. An OAuth token past its lifetime is refused for
    /// every request (RFC 7635: the token's lifetime bounds the use of
    /// its mac key), including those signed with its key alone.
    fn expired(&self, now: Instant, method: Method, auth: &Authenticated) -> bool {
        let unix = self.shared.auth.unix_time(now);
        match auth.origin {
            Origin::Rest { expires } => {
                let checked = method == Method::ALLOCATE
                    || (method == Method::REFRESH && self.shared.config.strict_expiry);
                checked && unix >= expires
            }
            Origin::OAuth {
                expires: Some(expires),
            } => unix >= expires,
            _ => false,
        }
    }

    fn binding(&mut self, tuple: FiveTuple, msg: &Message<'_>) {
        // Built on the stack and copied out at its size: a 1,500-byte
        // buffer per queued answer would multiply a pipelined burst.
        let mut buf = [0u8; CONTROL_MAX];
        let software = self.shared.config.software.as_deref();
        if let Some(n) = crate::binding::answer_with(msg, tuple.client, software, &mut buf) {
            self.transmits.push_back(Transmit {
                to: tuple,
                data: buf[..n].to_vec(),
            });
        }
    }

    /// An RFC 3489 Binding request (RFC 8489 §12). Anything else without
    /// the cookie gets nothing: RFC 8656 TURN needs the RFC 5389 header. The
    /// answer is an unauthenticated reflection and spends the source's
    /// budget like a 401.
    fn classic_binding(&mut self, now: Instant, tuple: FiveTuple, bytes: &[u8]) {
        let Ok(msg) = Message::parse_classic(bytes) else {
            return;
        };
        if msg.class() != Class::Request || msg.method() != Method::BINDING {
            return;
        }
        self.stats.classic_binding_requests += 1;
        if !self.shared.reply_budget.allow(now, tuple.client.ip()) {
            return;
        }
        let mut buf = [0u8; CONTROL_MAX];
        let software = self.shared.config.software.as_deref();
        if let Some(n) = crate::binding::answer_classic(&msg, tuple.client, software, &mut buf) {
            self.transmits.push_back(Transmit {
                to: tuple,
                data: buf[..n].to_vec(),
            });
        }
    }

    /// 420 for unknown comprehension-required attributes (RFC 8489
    /// §6.3.1.1), checked once the request is authenticated.
    fn unknown_attributes(
        &mut self,
        now: Instant,
        ctx: &Ctx,
        msg: &Message<'_>,
        signer: &Signer,
    ) -> bool {
        let mut unknown = [0u16; 16];
        let n = msg.unknown_comprehension_required(AttributeType::is_known, &mut unknown);
        if n == 0 {
            return false;
        }
        self.answer(now, ctx, Answer::Error(420), Some(signer), true, |b| {
            b.add_unknown_attributes(&unknown[..n]);
        });
        true
    }

    fn reject(&mut self, now: Instant, ctx: &Ctx, r: Rejection) {
        let code = match r {
            Rejection::Unauthorized => 401,
            Rejection::BadRequest => 400,
            Rejection::StaleNonce => 438,
        };
        match code {
            401 => self.stats.auth_unauthorized += 1,
            438 => self.stats.auth_stale_nonce += 1,
            _ => self.stats.auth_bad_request += 1,
        }
        if !self.shared.reply_budget.allow(now, ctx.tuple.client.ip()) {
            return;
        }
        let shared = self.shared.clone();
        let ip = ctx.tuple.client.ip();
        self.answer(now, ctx, Answer::Error(code), None, false, |b| {
            if code != 400 {
                shared.auth.add_challenge(now, ip, b);
            }
        });
    }

    /// Builds and queues an answer: SOFTWARE if configured, the content,
    /// integrity with the request's key, FINGERPRINT if the request had one.
    pub(super) fn answer(
        &mut self,
        now: Instant,
        ctx: &Ctx,
        answer: Answer,
        signer: Option<&Signer>,
        cache: bool,
        content: impl FnOnce(&mut MessageBuilder<'_>),
    ) {
        let mut buf = [0u8; CONTROL_MAX];
        let message_type = match answer {
            Answer::Success => ctx.message_type.success(),
            Answer::Error(_) => ctx.message_type.error(),
        };
        let mut b = MessageBuilder::new(&mut buf, message_type, ctx.txid);
        if let Answer::Error(code) = answer {
            b.add_error_code(code, attributes::reason_phrase(code));
        }
        content(&mut b);
        if let Some(software) = &self.shared.config.software {
            b.add_software(software);
        }
        if let Some(s) = signer {
            s.sign(&mut b);
        }
        if ctx.fingerprint {
            b.add_fingerprint();
        }
        let Ok(n) = b.finish() else { return };
        let data = buf[..n].to_vec();
        if cache {
            self.cache.insert(
                now,
                ctx.tuple,
                ctx.message_type.method,
                ctx.txid,
                data.clone(),
            );
        }
        self.transmits.push_back(Transmit {
            to: ctx.tuple,
            data,
        });
    }

    pub(super) fn error(&mut self, now: Instant, ctx: &Ctx, code: u16, signer: &Signer) {
        self.answer(now, ctx, Answer::Error(code), Some(signer), true, |_| {});
    }

    /// The allocation of this 5-tuple, checked against the request's user:
    /// 437 without one, 441 for another user (RFC 8656 §5).
    pub(super) fn own_allocation(
        &mut self,
        now: Instant,
        ctx: &Ctx,
        auth: &Authenticated,
    ) -> Option<u32> {
        let slot = self.by_tuple.get(&ctx.tuple).copied();
        let Some(slot) = slot.filter(|s| {
            self.allocations[*s as usize]
                .as_ref()
                .is_some_and(|a| a.is_active())
        }) else {
            self.error(now, ctx, 437, &auth.signer);
            return None;
        };
        let a = self.allocations[slot as usize].as_mut().expect("live slot");
        // OAuth clients may name another key id with each new token: the
        // allocation belongs to whoever holds a valid token.
        let oauth =
            matches!(a.origin, Origin::OAuth { .. }) && matches!(auth.origin, Origin::OAuth { .. });
        if a.username != auth.username && !oauth {
            self.error(now, ctx, 441, &auth.signer);
            return None;
        }
        a.signer = auth.signer.clone();
        // A new token brings its own lifetime.
        if oauth {
            a.origin = auth.origin;
        }
        Some(slot)
    }

    /// RFC 8656 §7.2: the granted lifetime is the requested one capped at
    /// the maximum, but never below the default.
    fn lifetime(&self, msg: &Message<'_>) -> Result<Duration, u16> {
        let cfg = &self.shared.config;
        match msg.get(AttributeType::LIFETIME) {
            None => Ok(cfg.default_lifetime),
            Some(v) if v.len() == 4 => {
                let asked =
                    Duration::from_secs(u32::from_be_bytes([v[0], v[1], v[2], v[3]]) as u64);
                if asked.is_zero() {
                    return Ok(Duration::ZERO);
                }
                Ok(asked.min(cfg.max_lifetime).max(cfg.default_lifetime))
            }
            Some(_) => Err(400),
        }
    }

    // ----- Allocate -------------------------------------------------------

    fn allocate(&mut self, now: Instant, ctx: &Ctx, msg: &Message<'_>, auth: Authenticated) {
        let signer = auth.signer.clone();
        // RFC 8656 §7.2 step 2: a 5-tuple already allocated gets 437 (the
        // retransmission case was answered from the cache).
        if self.by_tuple.contains_key(&ctx.tuple) {
            return self.error(now, ctx, 437, &signer);
        }
        match self.allocate_checks(now, ctx, msg) {
            Ok(plan) => self.start_allocation(now, ctx, msg, auth, plan),
            Err(code) => self.error(now, ctx, code, &signer),
        }
    }

    fn allocate_checks(&self, now: Instant, ctx: &Ctx, msg: &Message<'_>) -> Result<Plan, u16> {
        let cfg = &self.shared.config;
        // Step 3: REQUESTED-TRANSPORT missing or malformed → 400; other than
        // UDP → 442.
        let transport = msg.get(AttributeType::REQUESTED_TRANSPORT).ok_or(400u16)?;
        if transport.len() != 4 {
            return Err(400);
        }
        let tcp = transport[0] == PROTOCOL_TCP && cfg.tcp_relay;
        if transport[0] != PROTOCOL_UDP && !tcp {
            return Err(442);
        }
        // RFC 6062 §5.1: TCP relays for TCP/TLS clients only, and without
        // the UDP-only attributes.
        if tcp
            && (!ctx.tuple.transport.is_stream()
                || msg.get(AttributeType::DONT_FRAGMENT).is_some()
                || msg.get(AttributeType::EVEN_PORT).is_some()
                || msg.get(AttributeType::RESERVATION_TOKEN).is_some()
                || msg.get(AttributeType::ADDITIONAL_ADDRESS_FAMILY).is_some()
                || msg
                    .get(AttributeType::ADDITIONAL_ADDRESS_FAMILY_DRAFT)
                    .is_some())
        {
            return Err(400);
        }
        // Step 4: DONT-FRAGMENT is supported on UDP relays.
        let dont_fragment = msg.get(AttributeType::DONT_FRAGMENT).is_some();
        let even = msg.get(AttributeType::EVEN_PORT);
        let requested = msg.get(AttributeType::REQUESTED_ADDRESS_FAMILY);
        let (additional, draft_code_points) =
            match msg.get(AttributeType::ADDITIONAL_ADDRESS_FAMILY) {
                Some(v) => (Some(v), false),
                None => (
                    msg.get(AttributeType::ADDITIONAL_ADDRESS_FAMILY_DRAFT),
                    true,
                ),
            };
        // RFC 8656 §7.2: LIFETIME 0 deletes on Refresh only; an Allocate
        // asking for 0 gets the default like any value below it.
        let lifetime = match self.lifetime(msg)? {
            l if l.is_zero() => cfg.default_lifetime,
            l => l,
        };

        // Step 5: RESERVATION-TOKEN with EVEN-PORT or an address family →
        // 400; an unknown token → 508.
        if let Some(token) = msg.get(AttributeType::RESERVATION_TOKEN) {
            if even.is_some() || requested.is_some() || additional.is_some() {
                return Err(400);
            }
            let token: [u8; 8] = token.try_into().map_err(|_| 400u16)?;
            let reserved = self.shared.reservations().remove(&token);
            return match reserved {
                Some(r) if r.expires > now => Ok(Plan {
                    families: vec![if r.addr.is_ipv4() {
                        FAMILY_IPV4
                    } else {
                        FAMILY_IPV6
                    }],
                    family_error: None,
                    draft_code_points,
                    reserved: Some(r.addr),
                    even: false,
                    pair: false,
                    dont_fragment,
                    lifetime,
                    tcp: false,
                }),
                Some(r) => {
                    self.shared.ports().release(r.addr.port());
                    Err(508)
                }
                None => Err(508),
            };
        }

        // Address families (RFC 8656 §7.2 step 6 and 7).
        let (families, family_error) = match (requested, additional) {
            (Some(_), Some(_)) => return Err(400),
            (Some(r), None) => {
                let f = family_of(r)?;
                if cfg.relay_ip(is_v4(f)).is_none() {
                    return Err(440);
                }
                (vec![f], None)
            }
            (None, Some(a)) => {
                // ADDITIONAL-ADDRESS-FAMILY may only name IPv6.
                if family_of(a).map_err(|_| 400u16)? != FAMILY_IPV6 {
                    return Err(400);
                }
                match (cfg.relay_ip(true).is_some(), cfg.relay_ip(false).is_some()) {
                    (true, true) => (vec![FAMILY_IPV4, FAMILY_IPV6], None),
                    (true, false) => (vec![FAMILY_IPV4], Some(FAMILY_IPV6)),
                    (false, true) => (vec![FAMILY_IPV6], Some(FAMILY_IPV4)),
                    (false, false) => return Err(440),
                }
            }
            // A client that names no family gets IPv4.
            (None, None) => {
                if cfg.relay_ip(true).is_none() {
                    return Err(440);
                }
                (vec![FAMILY_IPV4], None)
            }
        };
        let (even, pair) = match even {
            None => (false, false),
            Some(v) if !v.is_empty() => (true, v[0] & 0x80 != 0),
            Some(_) => return Err(400),
        };
        Ok(Plan {
            families,
            family_error,
            draft_code_points,
            reserved: None,
            even,
            pair,
            dont_fragment,
            lifetime,
            tcp,
        })
    }

    fn start_allocation(
        &mut self,
        now: Instant,
        ctx: &Ctx,
        msg: &Message<'_>,
        auth: Authenticated,
        plan: Plan,
    ) {
        let signer = auth.signer.clone();
        // Step 9: quotas → 486.
        let dir = self.shared.auth.directory();
        let limits = Limits {
            user: dir.quota_of(&auth.username).allocations,
            realm: dir.realm_quota.allocations,
        };
        // One snapshot serves both the quota and the bandwidth limit.
        let bps = self.bytes_per_sec(&dir, &auth.username);
        drop(dir);
        let source = ctx.tuple.client.ip();
        if self
            .shared
            .quotas
            .acquire(&auth.username, source, limits)
            .is_err()
        {
            if let Some(r) = plan.reserved {
                self.shared.ports().release(r.port());
            }
            self.stats.quota_refusals += 1;
            return self.error(now, ctx, 486, &signer);
        }
        // Ports for each family; none left → 508.
        let mut relays = Vec::new();
        let mut token = None;
        for (i, &family) in plan.families.iter().enumerate() {
            let ip = self.shared.config.relay_ip(is_v4(family)).expect("checked");
            let port = match plan.reserved {
                Some(addr) => Some(addr.port()),
                None => self.shared.ports().take(plan.even, plan.pair && i == 0),
            };
            let Some(port) = port else {
                for r in &relays {
                    let r: &Relay = r;
                    self.shared.ports().release(r.local.port());
                }
                self.shared.quotas.release(&auth.username, source);
                return self.error(now, ctx, 508, &signer);
            };
            if plan.pair && i == 0 {
                let t = self.reservation_token();
                self.shared.reservations().insert(
                    t,
                    Reservation {
                        addr: SocketAddr::new(ip, port + 1),
                        expires: now + RESERVATION_TTL,
                    },
                );
                token = Some(t);
            }
            let local = SocketAddr::new(ip, port);
            relays.push(Relay {
                id: RelayId(0),
                local,
                advertised: self.shared.config.advertised(local),
                open: false,
            });
        }

        let slot = self.free_slots.pop().unwrap_or_else(|| {
            self.allocations.push(None);
            (self.allocations.len() - 1) as u32
        });
        for r in &mut relays {
            r.id = self.new_relay(slot);
            self.outputs.push_back(Output::OpenRelay {
                relay: r.id,
                addr: r.local,
                dont_fragment: plan.dont_fragment,
                tcp: plan.tcp,
            });
        }
        self.generation = self.generation.wrapping_add(1);
        self.allocations[slot as usize] = Some(Allocation {
            generation: self.generation,
            tuple: ctx.tuple,
            username: auth.username,
            signer: auth.signer,
            created: now,
            expires: now + plan.lifetime,
            lifetime: plan.lifetime,
            armed: None,
            reservation: token,
            relays,
            permissions: Vec::new(),
            channels: Vec::new(),
            dont_fragment: plan.dont_fragment,
            tcp: plan.tcp,
            tcp_peers: Vec::new(),
            connects: Bandwidth::new(now, super::tcp_relay::CONNECT_RATE),
            to_peer: Counters::default(),
            to_client: Counters::default(),
            bw_to_peer: Bandwidth::new(now, bps),
            bw_to_client: Bandwidth::new(now, bps),
            bps,
            origin: auth.origin,
            pending: Some(PendingAllocate {
                txid: ctx.txid,
                fingerprint: msg.has_fingerprint(),
                even_port: plan.even,
                token,
                family_error: plan.family_error,
                draft_code_points: plan.draft_code_points,
                attempts: 1,
            }),
        });
        self.by_tuple.insert(ctx.tuple, slot);
    }

    /// Bytes per second per direction for `user`'s allocations: the user's
    /// stored quota, else the realm's, else `max_bps`.
    fn bytes_per_sec(&self, dir: &crate::auth::Directory, user: &str) -> f64 {
        let bps = dir
            .quota_of(user)
            .bps
            .or(dir.realm_quota.bps)
            .unwrap_or(self.shared.config.max_bps);
        bps as f64 / 8.0
    }

    fn new_relay(&mut self, slot: u32) -> RelayId {
        match self.free_relays.pop() {
            Some(i) => {
                self.relays[i as usize] = Some(slot);
                RelayId(i)
            }
            None => {
                self.relays.push(Some(slot));
                RelayId((self.relays.len() - 1) as u32)
            }
        }
    }

    /// The shell's answer to [`Output::OpenRelay`].
    pub fn relay_opened(&mut self, now: Instant, relay: RelayId, result: Result<(), ()>) {
        let Some(Some(slot)) = self.relays.get(relay.0 as usize).copied() else {
            return;
        };
        let Some(a) = self.allocations[slot as usize].as_mut() else {
            return;
        };
        let Some(pending) = a.pending.as_mut() else {
            return;
        };
        let Some(r) = a.relays.iter_mut().find(|r| r.id == relay) else {
            return;
        };
        match result {
            Ok(()) => r.open = true,
            Err(()) => {
                // The port is taken outside our pool (another program):
                // try another, a bounded number of times.
                let old = r.local;
                let next = if pending.attempts < RELAY_ATTEMPTS {
                    self.shared.ports().take(pending.even_port, false)
                } else {
                    None
                };
                self.shared.ports().release(old.port());
                pending.attempts += 1;
                match next {
                    Some(port) => {
                        r.local = SocketAddr::new(old.ip(), port);
                        r.advertised = self.shared.config.advertised(r.local);
                        let (addr, dont_fragment, tcp) = (r.local, a.dont_fragment, a.tcp);
                        self.outputs.push_back(Output::OpenRelay {
                            relay,
                            addr,
                            dont_fragment,
                            tcp,
                        });
                        return;
                    }
                    None => {
                        let ctx = Ctx {
                            tuple: a.tuple,
                            message_type: MessageType::new(Method::ALLOCATE, Class::Request),
                            txid: pending.txid,
                            fingerprint: pending.fingerprint,
                        };
                        let signer = a.signer.clone();
                        // The failed relay's port is back in the pool already.
                        r.local = SocketAddr::new(old.ip(), 0);
                        self.delete(slot);
                        return self.error(now, &ctx, 508, &signer);
                    }
                }
            }
        }
        if a.relays.iter().all(|r| r.open) {
            self.activate(now, slot);
        }
    }

    fn activate(&mut self, now: Instant, slot: u32) {
        let a = self.allocations[slot as usize].as_mut().expect("live slot");
        let pending = a.pending.take().expect("pending");
        let ctx = Ctx {
            tuple: a.tuple,
            message_type: MessageType::new(Method::ALLOCATE, Class::Request),
            txid: pending.txid,
            fingerprint: pending.fingerprint,
        };
        let relayed: Vec<SocketAddr> = a.relays.iter().map(|r| r.advertised).collect();
        let (lifetime, signer, client) = (a.lifetime, a.signer.clone(), a.tuple.client);
        let created = Output::AllocationCreated {
            tuple: a.tuple,
            username: a.username.clone(),
            relayed: relayed.clone(),
        };
        self.arm(slot);
        self.stats.allocations_created += 1;
        self.outputs.push_back(created);
        self.answer(now, &ctx, Answer::Success, Some(&signer), true, |b| {
            for addr in &relayed {
                b.add_xor_address(AttributeType::XOR_RELAYED_ADDRESS, addr);
            }
            if let Some(family) = pending.family_error {
                // ADDRESS-ERROR-CODE: family, reserved, then ERROR-CODE's layout.
                let reason = attributes::reason_phrase(440);
                let attr = if pending.draft_code_points {
                    AttributeType::ADDRESS_ERROR_CODE_DRAFT
                } else {
                    AttributeType::ADDRESS_ERROR_CODE
                };
                b.add_with(attr, 4 + reason.len(), |out| {
                    attributes::ErrorCode::encode(440, reason, out);
                    out[0] = family;
                });
            }
            b.add_u32(AttributeType::LIFETIME, lifetime.as_secs() as u32);
            if let Some(token) = pending.token {
                b.add(AttributeType::RESERVATION_TOKEN, &token);
            }
            b.add_xor_mapped_address(&client);
        });
    }

    /// Ends an allocation: relay sockets, ports, quota, all at once.
    fn delete(&mut self, slot: u32) {
        let Some(a) = self.allocations[slot as usize].take() else {
            return;
        };
        add(&mut self.stats.to_peer, &a.to_peer);
        add(&mut self.stats.to_client, &a.to_client);
        self.by_tuple.remove(&a.tuple);
        self.free_slots.push(slot);
        {
            let mut ports = self.shared.ports();
            for r in &a.relays {
                if r.local.port() != 0 {
                    ports.release(r.local.port());
                }
            }
        }
        for r in &a.relays {
            self.relays[r.id.0 as usize] = None;
            self.free_relays.push(r.id.0);
            self.outputs.push_back(Output::CloseRelay { relay: r.id });
        }
        self.shared.quotas.release(&a.username, a.tuple.client.ip());
        // F7: the EVEN-PORT `port + 1` held for this allocation goes with
        // it, so reservations are never a way around `user_quota`.
        if let Some(token) = a.reservation {
            if let Some(r) = self.shared.reservations().remove(&token) {
                self.shared.ports().release(r.addr.port());
            }
        }
        self.close_connections(&a.tcp_peers);
        if a.pending.is_none() {
            self.outputs.push_back(Output::AllocationDeleted {
                tuple: a.tuple,
                username: a.username,
            });
        }
    }

    // ----- Refresh, CreatePermission, ChannelBind -------------------------

    fn refresh(&mut self, now: Instant, ctx: &Ctx, msg: &Message<'_>, auth: Authenticated) {
        let Some(slot) = self.own_allocation(now, ctx, &auth) else {
            return;
        };
        let signer = auth.signer;
        // RFC 8656 §7.3: a REQUESTED-ADDRESS-FAMILY the allocation lacks → 443.
        if let Some(f) = msg.get(AttributeType::REQUESTED_ADDRESS_FAMILY) {
            let Ok(f) = family_of(f) else {
                return self.error(now, ctx, 400, &signer);
            };
            let a = self.allocations[slot as usize].as_ref().expect("live");
            if !a.relays.iter().any(|r| r.local.is_ipv4() == is_v4(f)) {
                return self.error(now, ctx, 443, &signer);
            }
        }
        let lifetime = match self.lifetime(msg) {
            Ok(l) => l,
            Err(code) => return self.error(now, ctx, code, &signer),
        };
        if lifetime.is_zero() {
            self.delete(slot);
        } else {
            let a = self.allocations[slot as usize].as_mut().expect("live");
            a.expires = now + lifetime;
            a.lifetime = lifetime;
            self.arm(slot);
        }
        self.answer(now, ctx, Answer::Success, Some(&signer), true, |b| {
            b.add_u32(AttributeType::LIFETIME, lifetime.as_secs() as u32);
        });
    }

    /// Reads one XOR-PEER-ADDRESS and judges it: 400 malformed, 403 policy,
    /// 443 family mismatch.
    pub(super) fn peer_checked(
        &self,
        slot: u32,
        value: &[u8],
        txid: &TransactionId,
    ) -> Result<SocketAddr, u16> {
        let peer = attributes::decode_xor_address(value, txid).map_err(|_| 400u16)?;
        // Policy first: a denied address is refused as such whatever the
        // family it is written in (::ffff:127.0.0.1 on an IPv4 allocation).
        if !self.shared.config.policy.allows(peer) {
            return Err(403);
        }
        let a = self.allocations[slot as usize].as_ref().expect("live");
        if !a.has_family_of(peer.ip()) {
            return Err(443);
        }
        Ok(peer)
    }

    fn create_permission(
        &mut self,
        now: Instant,
        ctx: &Ctx,
        msg: &Message<'_>,
        auth: Authenticated,
    ) {
        let Some(slot) = self.own_allocation(now, ctx, &auth) else {
            return;
        };
        let signer = auth.signer;
        // All or nothing (RFC 8656 §8.2): judge every address first.
        let mut peers: Vec<IpAddr> = Vec::new();
        for a in msg
            .attributes()
            .filter(|a| a.attr_type == AttributeType::XOR_PEER_ADDRESS.0)
        {
            match self.peer_checked(slot, a.value, &ctx.txid) {
                Ok(p) => peers.push(p.ip()),
                Err(code) => return self.error(now, ctx, code, &signer),
            }
        }
        if peers.is_empty() {
            return self.error(now, ctx, 400, &signer);
        }
        let max = self.shared.config.max_permissions;
        let a = self.allocations[slot as usize].as_mut().expect("live");
        a.sweep(now);
        let new = peers
            .iter()
            .enumerate()
            .filter(|(i, ip)| {
                !peers[..*i].contains(ip) && !a.permissions.iter().any(|p| p.ip == **ip)
            })
            .count();
        if a.permissions.len() + new > max {
            return self.error(now, ctx, 508, &signer);
        }
        for ip in peers {
            a.permit(now, ip, max);
        }
        self.answer(now, ctx, Answer::Success, Some(&signer), true, |_| {});
    }

    fn channel_bind(&mut self, now: Instant, ctx: &Ctx, msg: &Message<'_>, auth: Authenticated) {
        let Some(slot) = self.own_allocation(now, ctx, &auth) else {
            return;
        };
        let signer = auth.signer;
        if self.allocation_at(slot).tcp {
            // RFC 6062 §5: channels are for UDP relays.
            return self.error(now, ctx, 400, &signer);
        }
        // RFC 8656 §11.2: CHANNEL-NUMBER in 0x4000-0x4FFF and an
        // XOR-PEER-ADDRESS, else 400.
        let number = match msg.get(AttributeType::CHANNEL_NUMBER) {
            Some(v) if v.len() == 4 => u16::from_be_bytes([v[0], v[1]]),
            _ => return self.error(now, ctx, 400, &signer),
        };
        if !is_channel_number(number) {
            return self.error(now, ctx, 400, &signer);
        }
        let Some(value) = msg.get(AttributeType::XOR_PEER_ADDRESS) else {
            return self.error(now, ctx, 400, &signer);
        };
        let peer = match self.peer_checked(slot, value, &ctx.txid) {
            Ok(p) => p,
            Err(code) => return self.error(now, ctx, code, &signer),
        };
        let (max_channels, max_permissions) = (
            self.shared.config.max_channels,
            self.shared.config.max_permissions,
        );
        let a = self.allocations[slot as usize].as_mut().expect("live");
        a.sweep(now);
        // "The channel number is currently bound to a different transport
        // address" or "the transport address is currently bound to a
        // different channel number" → 400; the cool-down counts as bound.
        if a.channels
            .iter()
            .any(|c| (c.number == number) != (c.peer == peer))
        {
            return self.error(now, ctx, 400, &signer);
        }
        let exists = a.channels.iter().any(|c| c.number == number);
        let needs_permission = !a.permissions.iter().any(|p| p.ip == peer.ip());
        if (!exists && a.channels.len() >= max_channels)
            || (needs_permission && a.permissions.len() >= max_permissions)
        {
            return self.error(now, ctx, 508, &signer);
        }
        match a.channels.iter_mut().find(|c| c.number == number) {
            Some(c) => c.expires = now + CHANNEL_LIFETIME,
            None => a.channels.push(Channel {
                number,
                peer,
                expires: now + CHANNEL_LIFETIME,
            }),
        }
        // RFC 8656 §11.2: binding a channel also installs or refreshes the
        // permission for the peer's IP.
        a.permit(now, peer.ip(), max_permissions);
        self.answer(now, ctx, Answer::Success, Some(&signer), true, |_| {});
    }

    // ----- data path ------------------------------------------------------

    /// The allocation that relays this client's datagrams (TCP relays
    /// carry no ChannelData or Send indications: RFC 6062 §5).
    fn active_slot(&self, tuple: &FiveTuple) -> Option<u32> {
        let slot = *self.by_tuple.get(tuple)?;
        self.allocations[slot as usize]
            .as_ref()
            .filter(|a| a.is_active() && !a.tcp)
            .map(|_| slot)
    }

    fn channel_data<'a>(
        &mut self,
        now: Instant,
        tuple: FiveTuple,
        cd: ChannelData<'a>,
    ) -> Option<Forward<'a>> {
        let slot = self.active_slot(&tuple)?;
        let a = self.allocations[slot as usize].as_mut()?;
        let bps = a.bps;
        // RFC 8656 §12.6: unbound channel or no permission → discard.
        let peer = a.channel(now, cd.channel)?.peer;
        if !a.has_permission(now, peer.ip()) {
            return None;
        }
        let relay = a.relay_of_family(peer.ip())?.id;
        if bps > 0.0 && !a.bw_to_peer.spend(now, bps, cd.data.len()) {
            return None;
        }
        a.to_peer.packets += 1;
        a.to_peer.bytes += cd.data.len() as u64;
        Some(Forward {
            relay,
            peer,
            data: cd.data,
        })
    }

    fn send_indication<'a>(
        &mut self,
        now: Instant,
        tuple: FiveTuple,
        msg: &Message<'a>,
    ) -> Option<Forward<'a>> {
        let slot = self.active_slot(&tuple)?;
        // RFC 8656 §10.2: without XOR-PEER-ADDRESS or DATA, or without a
        // permission, the indication is discarded.
        let peer = attributes::decode_xor_address(
            msg.get(AttributeType::XOR_PEER_ADDRESS)?,
            &msg.transaction_id(),
        )
        .ok()?;
        let data = msg.get(AttributeType::DATA)?;
        if !self.shared.config.policy.allows(peer) {
            return None;
        }
        let a = self.allocations[slot as usize].as_mut()?;
        let bps = a.bps;
        if !a.has_permission(now, peer.ip()) {
            return None;
        }
        let relay = a.relay_of_family(peer.ip())?.id;
        if bps > 0.0 && !a.bw_to_peer.spend(now, bps, data.len()) {
            return None;
        }
        a.to_peer.packets += 1;
        a.to_peer.bytes += data.len() as u64;
        Some(Forward { relay, peer, data })
    }

    /// A datagram from `from` on a relay socket, at `buf[start..start+len]`
    /// with [`PEER_HEADROOM`] before and [`PEER_TAILROOM`] after. Frames it
    /// in place as ChannelData (bound channel) or a Data indication.
    pub fn handle_peer(
        &mut self,
        now: Instant,
        relay: RelayId,
        from: SocketAddr,
        buf: &mut [u8],
        start: usize,
        len: usize,
    ) -> Option<Deliver> {
        if start < PEER_HEADROOM
            || buf.len() < start + len + PEER_TAILROOM
            || len > u16::MAX as usize - 48
        {
            return None;
        }
        let slot = (*self.relays.get(relay.0 as usize)?)?;
        let rand = self.next_random();
        let a = self.allocations[slot as usize].as_mut()?;
        let bps = a.bps;
        if !a.is_active() || !a.has_permission(now, from.ip()) {
            // RFC 8656 §10.3/§12.5: no permission → discard silently.
            return None;
        }
        if bps > 0.0 && !a.bw_to_client.spend(now, bps, len) {
            return None;
        }
        a.to_client.packets += 1;
        a.to_client.bytes += len as u64;
        let stream = a.tuple.transport.is_stream();
        let to = a.tuple;
        if let Some(ch) = a.channel_to(now, from) {
            let begin = start - 4;
            buf[begin..begin + 2].copy_from_slice(&ch.number.to_be_bytes());
            buf[begin + 2..start].copy_from_slice(&(len as u16).to_be_bytes());
            let mut end = start + len;
            // RFC 8656 §12.5: over TCP, ChannelData is padded to 4 bytes.
            if stream {
                let padded = (end - begin + 3) & !3;
                buf[end..begin + padded].fill(0);
                end = begin + padded;
            }
            return Some(Deliver {
                to,
                start: begin,
                end,
            });
        }
        // Data indication: header, XOR-PEER-ADDRESS, DATA header, payload, padding.
        let addr_len = attributes::address_len(&from);
        let begin = start - 4 - (4 + addr_len) - 20;
        let padded_len = (len + 3) & !3;
        let total = 20 + 4 + addr_len + 4 + padded_len;
        let mut txid = [0u8; 12];
        txid[..8].copy_from_slice(&rand.to_be_bytes());
        txid[8..].copy_from_slice(&(relay.0).to_be_bytes());
        let txid = TransactionId(txid);
        let header = MessageType::new(Method::DATA, Class::Indication).to_u16();
        buf[begin..begin + 2].copy_from_slice(&header.to_be_bytes());
        buf[begin + 2..begin + 4].copy_from_slice(&((total - 20) as u16).to_be_bytes());
        buf[begin + 4..begin + 8].copy_from_slice(&crate::stun::MAGIC_COOKIE.to_be_bytes());
        buf[begin + 8..begin + 20].copy_from_slice(&txid.0);
        let at = begin + 20;
        buf[at..at + 2].copy_from_slice(&AttributeType::XOR_PEER_ADDRESS.0.to_be_bytes());
        buf[at + 2..at + 4].copy_from_slice(&(addr_len as u16).to_be_bytes());
        attributes::encode_xor_address(&from, &txid, &mut buf[at + 4..at + 4 + addr_len]);
        let at = at + 4 + addr_len;
        buf[at..at + 2].copy_from_slice(&AttributeType::DATA.0.to_be_bytes());
        buf[at + 2..at + 4].copy_from_slice(&(len as u16).to_be_bytes());
        buf[start + len..start + padded_len].fill(0);
        Some(Deliver {
            to,
            start: begin,
            end: begin + total,
        })
    }
}

/// What an accepted Allocate will get.
struct Plan {
    families: Vec<u8>,
    family_error: Option<u8>,
    /// The client spoke draft code points (0x8032): answer in kind (0x8033).
    draft_code_points: bool,
    reserved: Option<SocketAddr>,
    even: bool,
    pair: bool,
    dont_fragment: bool,
    lifetime: Duration,
    tcp: bool,
}

fn add(total: &mut Counters, c: &Counters) {
    total.packets += c.packets;
    total.bytes += c.bytes;
}
