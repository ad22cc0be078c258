//! RFC 6062 TCP allocations, sans-IO: Connect, ConnectionBind and
//! ConnectionAttempt.
//!
//! A data connection binds on a new TCP connection, which SO_REUSEPORT may
//! hand to any worker. So connections waiting for their ConnectionBind are
//! kept in a table shared by all workers ([`TcpConns`]): the worker that
//! owns the allocation opens the peer side and runs the 30 s bind timer;
//! the worker that receives the ConnectionBind checks it against the table
//! and, once bound, the shell splices the two streams. The relay path
//! itself (bytes between two TCP streams) is the shell's.
//!
//! This is the one table of RFC 6062 connections: the shell keeps its
//! sockets and tasks in it as a [`Held`] payload the core never reads, and
//! both deadlines are core timers: the Connect's ([`CONNECT_TIMEOUT`], then
//! 447) and the ConnectionBind's ([`BIND_TIMEOUT`]). When the core ends a
//! connection, [`Request::ClosePeer`] hands the payload back to be dropped.
//! The table itself is `table.rs`; this file holds the methods.
//!
//! Peer connections cost a socket each, so they are bounded (F8): per
//! allocation (`max_peer_connections`, pending Connects included), per
//! user (`max_peer_connections_per_user`, across workers), and Connect is
//! rate-limited per allocation ([`CONNECT_RATE`]). Beyond them a Connect
//! gets 508 and an inbound peer is closed at once.

mod table;

use std::cmp::Reverse;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::attributes::{self as attr, ConnectionId, XorPeerAddress};
use super::error::{
    BAD_REQUEST, CONNECTION_ALREADY_EXISTS, CONNECTION_TIMEOUT_OR_FAILURE, INSUFFICIENT_CAPACITY,
};
use super::server::{Answer, Ctx, Server};
use super::{ConnId, ConnectError, FiveTuple, RelayId, Request};
use crate::auth::{Authenticated, Signer};
use crate::stun::attributes::AttributeType;
use crate::stun::{Class, Message, MessageBuilder, MessageType, Method, TransactionId};
use table::{Entry, State};

pub use table::{Held, TcpConns};

/// RFC 6062 §5.2/§5.3: a connection not bound within 30 seconds is closed.
pub const BIND_TIMEOUT: Duration = Duration::from_secs(30);
/// RFC 6062 §5.2: "If the connection attempt fails or times out, the
/// server MUST respond with a 447"; we wait this long for the peer.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// Connects per second per allocation (and the burst): scanning allowed
/// address space from our relay address must be slow.
pub const CONNECT_RATE: f64 = 10.0;

/// Which deadline a connection timer is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Deadline {
    Connect,
    Bind,
}

/// A Connect waiting for the shell's [`Server::peer_connected`] (or its
/// deadline).
#[derive(Debug, Clone)]
pub(crate) struct Connecting {
    ctx: Ctx,
    signer: Signer,
    slot: u32,
    generation: u32,
    peer: SocketAddr,
}

impl Server {
    /// CONNECTION-ID: keyed and unique across workers (the bind may land on
    /// any of them), never zero.
    fn connection_id(&mut self) -> ConnId {
        loop {
            let t = self.reservation_token();
            let id = ConnId(u32::from_be_bytes([t[0], t[1], t[2], t[3]]));
            if id.0 != 0
                && !self.shared.tcp_conns.lock().contains_key(&id)
                && !self.connecting.contains_key(&id)
            {
                return id;
            }
        }
    }

    /// RFC 6062 §5.2.
    pub(crate) fn connect(
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
        let a = self.allocation_at(slot);
        // RFC 6062 §5.2: Connect is for TCP allocations.
        if !a.tcp {
            return self.error(now, ctx, BAD_REQUEST, &signer);
        }
        // The policy is checked here, before the shell is asked for a SYN.
        let checked = XorPeerAddress::require(msg).and_then(|p| self.peer_checked(slot, p));
        let peer = match checked {
            Ok(p) => p,
            Err(code) => return self.error(now, ctx, code, &signer),
        };
        let a = self.allocation_at(slot);
        let generation = a.generation;
        // RFC 6062 §5.2: one connection per peer address and allocation.
        let busy = {
            let table = self.shared.tcp_conns.lock();
            a.tcp_peers
                .iter()
                .any(|(id, p)| *p == peer && table.contains_key(id))
        } || self
            .connecting
            .values()
            .any(|c| c.slot == slot && c.generation == generation && c.peer == peer);
        if busy {
            return self.error(now, ctx, CONNECTION_ALREADY_EXISTS, &signer);
        }
        // F8: beyond the per-allocation or per-user cap, or the Connect
        // rate, "some capacity limit" is reached.
        if !self.peer_connection_allowed(now, slot, true) {
            return self.error(now, ctx, INSUFFICIENT_CAPACITY, &signer);
        }
        let a = self.allocation_at(slot);
        let relay = a.relays[0];
        let entry = Entry::new(a.username.clone(), &a.signer, State::Connecting);
        let conn = self.connection_id();
        // In the table from now on, so that the shell can keep its
        // connecting task there (the place in the user's count is taken).
        self.shared.tcp_conns.lock().entries.insert(conn, entry);
        self.connecting.insert(
            conn,
            Connecting {
                ctx: ctx.clone(),
                signer,
                slot,
                generation,
                peer,
            },
        );
        self.conn_timers
            .push(Reverse((now + CONNECT_TIMEOUT, conn, Deadline::Connect)));
        self.requests.push_back(Request::ConnectPeer {
            conn,
            relay: relay.id,
            from: relay.local,
            peer,
        });
    }

    /// Takes a place for one more peer connection of allocation `slot`:
    /// under its cap, its user's cap and (for a Connect) its rate.
    fn peer_connection_allowed(&mut self, now: Instant, slot: u32, connect: bool) -> bool {
        let cfg = self.shared.config();
        let (max, max_user) = (cfg.max_peer_connections, cfg.max_peer_connections_per_user);
        let generation = self.allocation_at(slot).generation;
        let connecting = self
            .connecting
            .values()
            .filter(|c| c.slot == slot && c.generation == generation)
            .count();
        let shared = self.shared.clone();
        let mut table = shared.tcp_conns.lock();
        let a = self.allocation_mut(slot);
        // Ended connections leave the list here, so it stays bounded too.
        a.tcp_peers.retain(|(id, _)| table.contains_key(id));
        if a.tcp_peers.len() + connecting >= max as usize {
            return false;
        }
        if connect && !a.connects.spend(now, CONNECT_RATE, 1) {
            return false;
        }
        table.reserve(&a.username, max_user)
    }

    /// The shell's answer to [`Request::ConnectPeer`]: success with the
    /// CONNECTION-ID, or 447 (RFC 6062 §5.2). An answer after the core's
    /// deadline finds nothing: the attempt was ended then.
    pub fn peer_connected(&mut self, now: Instant, conn: ConnId, result: Result<(), ConnectError>) {
        let Some(c) = self.connecting.remove(&conn) else {
            return;
        };
        let alive = matches!(
            self.allocations.get(c.slot as usize),
            Some(Some(a)) if a.generation == c.generation
        );
        if !alive || result.is_err() {
            // The place taken at Connect is given back, and what the shell
            // holds for it closed.
            let ended = self.shared.tcp_conns.lock().remove(&conn);
            if result.is_ok() {
                let held = ended.and_then(|e| e.held);
                self.requests.push_back(Request::ClosePeer { conn, held });
            }
        }
        if !alive {
            return;
        }
        if result.is_err() {
            return self.answer(
                now,
                &c.ctx,
                Answer::Error(CONNECTION_TIMEOUT_OR_FAILURE),
                Some(&c.signer),
                false,
                |_| {},
            );
        }
        self.await_bind(now, c.slot, conn, c.peer);
        self.answer(now, &c.ctx, Answer::Success, Some(&c.signer), false, |b| {
            b.add(AttributeType::CONNECTION_ID, &conn.0.to_be_bytes());
        });
    }

    /// A peer connected to the relayed address of a TCP allocation (RFC
    /// 6062 §5.3). Allowed only with a permission for its IP: then the
    /// client gets a ConnectionAttempt and the returned id names the
    /// connection; `None`: close it.
    pub fn peer_accepted(
        &mut self,
        now: Instant,
        relay: RelayId,
        from: SocketAddr,
    ) -> Option<ConnId> {
        let slot = (*self.relays.get(relay.0 as usize)?)?;
        let a = self.allocations.get(slot as usize)?.as_ref()?;
        if !a.tcp || !a.is_active() || !a.has_permission(now, from.ip()) {
            return None;
        }
        if !self.shared.config().policy.allows(from) {
            return None;
        }
        let tuple = a.tuple;
        if !self.peer_connection_allowed(now, slot, false) {
            return None;
        }
        let conn = self.connection_id();
        self.await_bind(now, slot, conn, from);
        self.connection_attempt(tuple, conn, from);
        Some(conn)
    }

    /// Records a connected peer of allocation `slot` as waiting for its
    /// ConnectionBind, for at most [`BIND_TIMEOUT`]. Its place in the
    /// user's count was taken by [`Server::peer_connection_allowed`].
    fn await_bind(&mut self, now: Instant, slot: u32, conn: ConnId, peer: SocketAddr) {
        let a = self.allocation_mut(slot);
        a.tcp_peers.push((conn, peer));
        let entry = Entry::new(a.username.clone(), &a.signer, State::Waiting);
        let mut table = self.shared.tcp_conns.lock();
        let e = table.entries.entry(conn).or_insert(entry);
        e.state = State::Waiting;
        drop(table);
        self.conn_timers
            .push(Reverse((now + BIND_TIMEOUT, conn, Deadline::Bind)));
    }

    fn connection_attempt(&mut self, to: FiveTuple, conn: ConnId, peer: SocketAddr) {
        let mut buf = vec![0u8; 128];
        let txid = TransactionId(self.random_txid());
        let mut b = MessageBuilder::new(
            &mut buf,
            MessageType::new(Method::CONNECTION_ATTEMPT, Class::Indication),
            txid,
        );
        b.add(AttributeType::CONNECTION_ID, &conn.0.to_be_bytes());
        b.add_xor_address(AttributeType::XOR_PEER_ADDRESS, &peer);
        if let Some(software) = &self.shared.config().software {
            b.add_software(software);
        }
        b.add_fingerprint();
        if let Ok(n) = b.finish() {
            buf.truncate(n);
            self.transmits.push_back(super::Transmit { to, data: buf });
        }
    }

    /// RFC 6062 §5.4: binds the new TCP connection `ctx.tuple` to a waiting
    /// peer connection, for the allocation's own user.
    pub(crate) fn connection_bind(
        &mut self,
        now: Instant,
        ctx: &Ctx,
        msg: &Message<'_>,
        auth: Authenticated,
    ) {
        let signer = &auth.signer;
        // A data connection is a fresh TCP connection with no allocation.
        if !ctx.tuple.transport.is_stream() || self.by_tuple.contains_key(&ctx.tuple) {
            return self.error(now, ctx, BAD_REQUEST, signer);
        }
        let conn = match attr::require::<ConnectionId>(msg) {
            Ok(ConnectionId(c)) => ConnId(c),
            Err(code) => return self.error(now, ctx, code, signer),
        };
        let verdict = {
            let mut table = self.shared.tcp_conns.lock();
            match table.entries.get_mut(&conn) {
                Some(e) if e.state == State::Waiting && e.owned_by(&auth) => {
                    e.state = State::Bound;
                    Ok(())
                }
                // RFC 6062 §5.4: an unknown or already bound CONNECTION-ID
                // gets 400 (one still connecting is not known to clients).
                // So does another user's, or another OAuth client's of
                // the same key: a different answer would tell a caller
                // that the id exists (review F21).
                _ => Err(BAD_REQUEST),
            }
        };
        if let Err(code) = verdict {
            return self.error(now, ctx, code, signer);
        }
        // The answer is queued first: the shell sends it, then splices.
        self.answer(now, ctx, Answer::Success, Some(signer), false, |_| {});
        self.requests.push_back(Request::BindData {
            conn,
            tuple: ctx.tuple,
        });
    }

    /// The shell closed a peer connection (either side ended, or it was
    /// never bound).
    pub fn peer_closed(&mut self, _now: Instant, conn: ConnId) {
        self.shared.tcp_conns.lock().remove(&conn);
    }

    /// Ends Connects past [`CONNECT_TIMEOUT`] (447) and connections still
    /// unbound at [`BIND_TIMEOUT`].
    pub(crate) fn expire_connections(&mut self, now: Instant) {
        while let Some(&Reverse((at, conn, deadline))) = self.conn_timers.peek() {
            if at > now {
                break;
            }
            self.conn_timers.pop();
            match deadline {
                Deadline::Connect => self.connect_timed_out(now, conn),
                Deadline::Bind => {
                    let mut table = self.shared.tcp_conns.lock();
                    if table
                        .entries
                        .get(&conn)
                        .is_some_and(|e| e.state == State::Waiting)
                    {
                        let held = table.remove(&conn).and_then(|e| e.held);
                        drop(table);
                        self.requests.push_back(Request::ClosePeer { conn, held });
                    }
                }
            }
        }
    }

    /// RFC 6062 §5.2: the peer did not answer in time: 447, and the shell
    /// abandons the attempt.
    fn connect_timed_out(&mut self, now: Instant, conn: ConnId) {
        let Some(c) = self.connecting.remove(&conn) else {
            return;
        };
        let held = self
            .shared
            .tcp_conns
            .lock()
            .remove(&conn)
            .and_then(|e| e.held);
        self.requests.push_back(Request::ClosePeer { conn, held });
        let alive = matches!(
            self.allocations.get(c.slot as usize),
            Some(Some(a)) if a.generation == c.generation
        );
        if alive {
            self.answer(
                now,
                &c.ctx,
                Answer::Error(CONNECTION_TIMEOUT_OR_FAILURE),
                Some(&c.signer),
                false,
                |_| {},
            );
        }
    }

    /// An allocation ended: so do its peer connections, bound or not.
    pub(crate) fn close_connections(&mut self, peers: &[(ConnId, SocketAddr)]) {
        let mut table = self.shared.tcp_conns.lock();
        for (conn, _) in peers {
            if let Some(e) = table.remove(conn) {
                self.requests.push_back(Request::ClosePeer {
                    conn: *conn,
                    held: e.held,
                });
            }
        }
    }
}
