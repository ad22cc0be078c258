//! The TURN state machine of one worker: [`Server`], its inputs and
//! outputs, and the dispatch of requests to the rooms that serve them.
//!
//! * `respond.rs`: building, caching and queueing answers (`Ctx`, `Answer`).
//! * `allocate.rs`: the Allocate checks and the start of an allocation.
//! * `lifecycle.rs`: relay sockets opened, the success answer, deletion.
//! * `refresh.rs`: whose allocation a request acts on; Refresh.
//! * `permissions.rs`: CreatePermission and ChannelBind.
//! * `redirect.rs`: a draining node's answer to a new Allocate (300 or 403).
//! * `relay.rs`: the data path, client to peer and peer to client.
//! * `timers.rs`: allocation expiry and the timer heap.
//! * `revoke.rs`: allocations of revoked names end on the next tick.
//! * `ids.rs`: relay ids, RESERVATION-TOKENs, indication transaction ids.
//! * `stats.rs`: counters and the session list for the admin API.
//! * `fleet_quota.rs`: Allocates waiting for the fleet's quota answer.

mod allocate;
mod fleet_quota;
mod ids;
mod lifecycle;
mod permissions;
mod redirect;
mod refresh;
mod relay;
mod respond;
mod revoke;
mod stats;
mod timers;

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::sync::Arc;
use std::time::Instant;

use super::allocation::Allocation;
use super::error::BAD_REQUEST;
use super::shared::Shared;
use super::tcp_relay::{Connecting, Deadline};
use super::transactions::TransactionCache;
use super::{ConnId, EndReason, Event, FiveTuple, Forward, Request, Transmit};
use crate::auth::{Authenticated, OAuthSession, Origin, Rejection};
use crate::stun::channel_data::ChannelData;
use crate::stun::{Class, Message, Method, ParseError};

pub use relay::{PEER_HEADROOM, PEER_TAILROOM};
use respond::CONTROL_MAX;
pub(crate) use respond::{Answer, Ctx};
pub use stats::{SessionView, Stats};

/// One worker's TURN core: allocations by slot, their relay ids and
/// timers, and the queues the shell drains.
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
    /// What the shell must do, and what happened: drained by the shell
    /// after every input.
    pub(super) requests: VecDeque<Request>,
    pub(super) events: VecDeque<Event>,
    rng: u64,
    /// This worker's seed and count of tokens issued: with the shared key
    /// they make RESERVATION-TOKENs unique across workers and unguessable.
    seed: u64,
    tokens: u64,
    stats: Stats,
    /// RFC 6062 Connects waiting for the shell, by CONNECTION-ID.
    pub(super) connecting: HashMap<ConnId, Connecting>,
    /// Connect and bind deadlines of peer connections this worker opened
    /// or accepted.
    pub(super) conn_timers: BinaryHeap<Reverse<(Instant, ConnId, Deadline)>>,
    /// Allocations counted against the fleet's quotas, by slot: asked
    /// (pending) or granted. Each gets a `ReleaseQuota` when it ends.
    pub(super) fleet_holds: HashMap<u32, fleet_quota::FleetHold>,
    /// The credential snapshot generation last looked at for revoked
    /// owners (`revoke.rs`).
    directory_seen: u64,
    /// The tenant realm each TLS connection's server name selected (one
    /// entry per open connection that named one).
    sni_realms: HashMap<FiveTuple, Arc<str>>,
}

impl Server {
    /// A worker's core over the state all workers share. `seed` must differ
    /// between workers: it keeps their RESERVATION-TOKENs apart and seeds
    /// indication transaction ids.
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
            requests: VecDeque::new(),
            events: VecDeque::new(),
            // Mixed first: seeds that differ only in the low bit must not
            // give workers the same stream.
            rng: seed.wrapping_mul(0x9E37_79B9_7F4A_7C15).rotate_left(29) | 1,
            seed,
            tokens: 0,
            stats: Stats::default(),
            connecting: HashMap::new(),
            conn_timers: BinaryHeap::new(),
            fleet_holds: HashMap::new(),
            directory_seen: 0,
            sni_realms: HashMap::new(),
        }
    }

    /// Starts the allocation generations at `first` rather than 0. The
    /// shell passes a value that differs per start, so a session id from a
    /// previous run (an admin's stale list, a queued fleet command) never
    /// names a new client's allocation.
    pub fn with_first_generation(mut self, first: u32) -> Self {
        self.generation = first;
        self
    }

    /// The state shared with the other workers.
    pub fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    /// Number of allocations this worker holds (pending ones included).
    pub fn allocation_count(&self) -> usize {
        self.by_tuple.len()
    }

    /// The allocation of a 5-tuple, pending or active.
    pub fn allocation(&self, tuple: &FiveTuple) -> Option<&Allocation> {
        let slot = *self.by_tuple.get(tuple)?;
        self.allocations[slot as usize].as_ref()
    }

    /// The next control message (answer or indication) to send a client.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    /// Whether `tuple` was just accepted as an RFC 6062 data connection
    /// (its [`Request::BindData`] not yet polled): what follows on it is
    /// the application's bytes, which the shell must not frame.
    pub fn binding_data(&self, tuple: &FiveTuple) -> bool {
        self.requests
            .iter()
            .any(|r| matches!(r, Request::BindData { tuple: t, .. } if t == tuple))
    }

    /// The next thing the shell must do.
    pub fn poll_request(&mut self) -> Option<Request> {
        self.requests.pop_front()
    }

    /// The next thing that happened (allocations created, refreshed,
    /// deleted).
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// A live allocation by slot.
    pub(super) fn allocation_at(&self, slot: u32) -> &Allocation {
        self.allocations[slot as usize].as_ref().expect("live slot")
    }

    pub(super) fn allocation_mut(&mut self, slot: u32) -> &mut Allocation {
        self.allocations[slot as usize].as_mut().expect("live slot")
    }

    // ----- input from clients -------------------------------------------

    /// A datagram (UDP) or a frame (TCP) from a client. Control answers are
    /// queued; data for a peer (ChannelData, Send indications: the relay,
    /// `relay.rs`) is returned, borrowing `bytes`.
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
            Err(ParseError::BadMagicCookie) if self.shared.config().stun_backward_compatibility => {
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

    /// The TLS connection `tuple` named `sni` in its handshake: when that
    /// selects a tenant realm, its requests are served there.
    pub fn handle_server_name(&mut self, tuple: FiveTuple, sni: &str) {
        if let Some(realm) = self.shared.auth.realms().by_sni(sni) {
            self.sni_realms.insert(tuple, realm.clone());
        }
    }

    /// The connection `tuple` is no longer a client's (closed, or handed
    /// to an RFC 6062 data connection): forget its server name.
    pub fn forget_stream(&mut self, tuple: &FiveTuple) {
        self.sni_realms.remove(tuple);
    }

    /// The realm a request from `tuple` is served in: its allocation's,
    /// else what the connection's SNI or the request's ORIGIN selects
    /// ([`crate::auth::RealmMap::select`]).
    fn realm_for(&self, tuple: &FiveTuple, msg: &Message<'_>) -> Arc<str> {
        if let Some(a) = self.allocation(tuple) {
            return a.realm.clone();
        }
        let sni = self.sni_realms.get(tuple);
        self.shared.auth.realms().select(sni, msg)
    }

    /// The client's TCP connection (or DTLS session) closed: RFC 8656
    /// §3.1, the allocation goes with it.
    pub fn handle_client_closed(&mut self, now: Instant, tuple: FiveTuple) {
        self.sni_realms.remove(&tuple);
        if let Some(&slot) = self.by_tuple.get(&tuple) {
            self.delete(now, slot, EndReason::ClientClosed);
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
                let realm = self.realm_for(&tuple, msg);
                let auth = match self.shared.auth.authenticate_in(
                    &realm,
                    now,
                    msg,
                    tuple.client.ip(),
                    session.as_ref(),
                ) {
                    Ok(a) => a,
                    Err(r) => {
                        let unsigned = msg.integrity_offset().is_none()
                            && msg.integrity_sha256_offset().is_none();
                        if unsigned && matches!(r, Rejection::Unauthorized) {
                            self.stats.auth_challenges += 1;
                        }
                        return self.reject(now, &ctx, r, &realm);
                    }
                };
                if self.expired(now, msg.method(), &auth) {
                    self.stats.auth_expired += 1;
                    return self.reject(now, &ctx, Rejection::Unauthorized, &realm);
                }
                // A revoked name gets what an unknown one gets; so does a
                // request on its allocation before the tick ends it.
                if self.shared.auth.revoked(now, &auth) {
                    self.stats.auth_revoked += 1;
                    return self.reject(now, &ctx, Rejection::Unauthorized, &realm);
                }
                if self.unknown_attributes(now, &ctx, msg, &auth.signer) {
                    return;
                }
                match msg.method() {
                    Method::ALLOCATE => self.allocate(now, &ctx, msg, auth),
                    Method::REFRESH => self.refresh(now, &ctx, msg, auth),
                    Method::CREATE_PERMISSION => self.create_permission(now, &ctx, msg, auth),
                    Method::CONNECT if self.shared.config().tcp_relay => {
                        self.connect(now, &ctx, msg, auth)
                    }
                    Method::CONNECTION_BIND if self.shared.config().tcp_relay => {
                        self.connection_bind(now, &ctx, msg, auth)
                    }
                    // RFC 6062 off: as for any method we do not serve.
                    Method::CONNECT | Method::CONNECTION_BIND => {
                        self.error(now, &ctx, BAD_REQUEST, &auth.signer)
                    }
                    _ => self.channel_bind(now, &ctx, msg, auth),
                }
            }
            // A method we do not serve: an unauthenticated reflection too.
            _ => {
                if self.shared.reply_budget.allow(now, tuple.client.ip()) {
                    self.answer(now, &ctx, Answer::Error(BAD_REQUEST), None, false, |_| {})
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
    /// A self-test credential (issue 20) is always strict: its allocation
    /// is not refreshed past the credential's 60 s.
    fn expired(&self, now: Instant, method: Method, auth: &Authenticated) -> bool {
        let strict =
            self.shared.config().strict_expiry || self.shared.auth.is_selftest(&auth.username);
        let policy = crate::auth::ExpiryPolicy::strict(strict);
        self.shared.auth.expired(now, method, &auth.origin, policy)
    }

    fn binding(&mut self, tuple: FiveTuple, msg: &Message<'_>) {
        // Built on the stack and copied out at its size: a 1,500-byte
        // buffer per queued answer would multiply a pipelined burst.
        let mut buf = [0u8; CONTROL_MAX];
        let cfg = self.shared.config();
        let software = cfg.software.as_deref();
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
        let cfg = self.shared.config();
        let software = cfg.software.as_deref();
        if let Some(n) = crate::binding::answer_classic(&msg, tuple.client, software, &mut buf) {
            self.transmits.push_back(Transmit {
                to: tuple,
                data: buf[..n].to_vec(),
            });
        }
    }
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("allocations", &self.by_tuple.len())
            .finish_non_exhaustive()
    }
}
