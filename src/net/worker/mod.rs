//! One worker: a thread with a single-threaded runtime that owns its TURN
//! core, its listener sockets (SO_REUSEPORT keeps each client flow here) and
//! the relay sockets of its allocations.
//!
//! UDP (listeners and relays) runs on the worker's own level-triggered
//! epoll set, itself watched by tokio through `AsyncFd`: one wakeup serves
//! every ready socket, each read is a `recvmmsg`, and datagrams for clients
//! leave in one `sendmmsg` per listener at the end of the round. TCP clients
//! and timers are tokio tasks on the same thread. Everything a worker
//! touches per packet is its own: the core sits in a `RefCell` (never
//! borrowed across an await). No lock, no allocation, no log line per
//! relayed packet.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use std::os::fd::AsRawFd;

use tokio::io::unix::AsyncFd;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch, Notify};

use super::batch::{self, Epoll, RecvBatch, SendBatch};
use super::dtls::{self, Gate, Session};
use super::limits::{ConnLimits, ConnSlot};
use super::registry::{Command, Registry, Report};
use super::socket;
use super::tls::Tls;
use crate::nat::{ServerAddresses, ServerOptions};
use crate::stun::framing::{FrameKind, Framer};
use crate::stun::{Message, ParseError};
use crate::turn::{
    FiveTuple, Forward, Output, RelayId, Server, Shared, Transport, PEER_HEADROOM, PEER_TAILROOM,
};

/// Largest UDP payload handled.
const MAX_DATAGRAM: usize = 65_535;
/// Unsent bytes for one TCP or TLS client above which its connection is
/// not read until they drain: a client that does not read its answers is
/// not heard either.
const STREAM_PAUSE: usize = 32 << 10;
/// Unsent bytes past which relayed data for a TCP or TLS client is
/// dropped, as a UDP path would drop it (answers never are). Above the
/// pause, so a burst toward a client that reads a little late survives;
/// below the cap, so answers always have room.
const STREAM_RELAYED_MAX: usize = 192 << 10;
/// Unsent bytes for one TCP or TLS client at which it is closed. Reading
/// stops at [`STREAM_PAUSE`], so only one read's answers can go past that.
const STREAM_QUEUE_MAX: usize = 256 << 10;
/// Longest sleep of the timer task (allocation expiry granularity).
const TICK: Duration = Duration::from_secs(1);
/// How often sessions and counters are copied out for the admin API.
const REPORT_EVERY: Duration = Duration::from_secs(1);

pub(crate) struct WorkerSetup {
    pub index: usize,
    pub shared: Arc<Shared>,
    pub udp: Vec<std::net::UdpSocket>,
    pub tcp: Vec<std::net::TcpListener>,
    pub streams: Arc<StreamSetup>,
    pub stop: watch::Receiver<bool>,
    pub registry: Arc<Registry>,
    pub commands: mpsc::UnboundedReceiver<Command>,
    pub nat: Option<NatSetup>,
}

/// RFC 5780 server mode: the four addresses.
pub(crate) struct NatSetup {
    pub addresses: ServerAddresses,
    pub software: Option<String>,
}

/// RFC 5780 on one worker.
struct NatSide {
    addresses: ServerAddresses,
    /// Per listener index: one of the four RFC 5780 sockets.
    serves: Vec<bool>,
    /// Whose reply budget the answers spend: the one 401s use.
    shared: Arc<Shared>,
    software: Option<String>,
    out: RefCell<Vec<u8>>,
}

/// What TCP and TLS connections share across workers.
pub(crate) struct StreamSetup {
    /// Set when a certificate is configured: every TCP port then also
    /// speaks TLS to clients whose first byte starts a TLS record.
    pub tls: Option<Arc<Tls>>,
    pub limits: Arc<ConnLimits>,
    /// For the TLS handshake and the first complete message together.
    pub handshake_timeout: Duration,
    /// A DTLS session that receives nothing for this long is dropped.
    pub dtls_idle: Duration,
    /// RFC 6062 peer connections by CONNECTION-ID, of every worker: the
    /// ConnectionBind may arrive on any of them.
    pub peers: std::sync::Mutex<HashMap<u32, PeerSide>>,
}

/// The peer side of an RFC 6062 connection.
pub(crate) enum PeerSide {
    /// Connected, waiting for its data connection (the kernel buffers
    /// what the peer sends meanwhile). Held as a std stream so that any
    /// worker's runtime can take it.
    Waiting(std::net::TcpStream),
    /// Spliced with its data connection by this task.
    Relaying(tokio::task::AbortHandle),
}

impl StreamSetup {
    fn peers(&self) -> std::sync::MutexGuard<'_, HashMap<u32, PeerSide>> {
        self.peers.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// RFC 6062 §5.2: a Connect gets 447 if the peer does not answer in 30 s.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

/// The first byte of a TLS record carrying a handshake (the ClientHello).
/// STUN starts with 0x00/0x01 and ChannelData with 0x40-0x7F.
const TLS_HANDSHAKE_RECORD: u8 = 0x16;

/// How often DTLS retransmission timers and deadlines are looked at.
const DTLS_TICK: Duration = Duration::from_millis(100);

/// Epoll tokens at or above this are relays (token - base = RelayId).
const RELAY_TOKEN: u64 = 1 << 32;

/// Frames waiting for a TCP client.
#[derive(Default)]
struct TcpOut {
    queue: RefCell<Vec<u8>>,
    /// Bytes the writer took from `queue` and has not finished writing.
    in_flight: Cell<usize>,
    ready: Notify,
    /// Set when the connection becomes a data connection: the writer
    /// sends what is queued, then hands its half back.
    handing_over: Cell<bool>,
    /// Set when the connection must end: its allocation is gone, its
    /// output passed the hard cap, or writing failed.
    closing: Cell<bool>,
    /// The reader waits for its output to drain.
    paused: Cell<bool>,
    reader: ReaderWake,
}

impl TcpOut {
    fn unsent(&self) -> usize {
        self.queue.borrow().len() + self.in_flight.get()
    }

    /// Queues a frame for the writer. Relayed data is dropped rather than
    /// pass [`STREAM_RELAYED_MAX`]; an answer that would pass
    /// [`STREAM_QUEUE_MAX`] closes the connection instead.
    fn push(&self, data: &[u8], relayed: bool) {
        let mut q = self.queue.borrow_mut();
        let after = q.len() + self.in_flight.get() + data.len();
        let cap = if relayed {
            STREAM_RELAYED_MAX
        } else {
            STREAM_QUEUE_MAX
        };
        if after <= cap {
            q.extend_from_slice(data);
            self.ready.notify_one();
        } else if !relayed {
            drop(q);
            self.close();
        }
    }

    fn close(&self) {
        self.closing.set(true);
        self.reader.wake();
    }
}

/// Wakes a connection's reader task from the writer or the worker: a
/// flag and a waker in cells, so waiting for it costs no lock and no
/// allocation per read.
#[derive(Default)]
struct ReaderWake {
    woken: Cell<bool>,
    waker: RefCell<Option<Waker>>,
}

impl ReaderWake {
    fn wake(&self) {
        self.woken.set(true);
        let waker = self.waker.borrow_mut().take();
        if let Some(w) = waker {
            w.wake();
        }
    }

    fn poll(&self, cx: &mut Context<'_>) -> Poll<()> {
        if self.woken.replace(false) {
            return Poll::Ready(());
        }
        let mut waker = self.waker.borrow_mut();
        if !waker.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
            *waker = Some(cx.waker().clone());
        }
        Poll::Pending
    }
}

/// DTLS of one worker: its cookie gate and its clients' sessions, by
/// listener index and client address.
struct DtlsSide {
    gate: RefCell<Gate>,
    sessions: RefCell<HashMap<(usize, SocketAddr), Session>>,
}

struct Worker {
    core: RefCell<Server>,
    /// Relay sockets by RelayId; dropping one closes it and takes it out of
    /// the epoll set.
    relays: RefCell<Vec<Option<std::net::UdpSocket>>>,
    /// Listener sockets and, per listener, datagrams waiting for sendmmsg.
    udp: Vec<(SocketAddr, std::net::UdpSocket)>,
    sends: RefCell<Vec<SendBatch>>,
    /// Datagrams for peers, per relay socket, sent at the end of the round;
    /// emptied batches go back to `spare` so that steady state allocates
    /// nothing.
    relay_sends: RefCell<Vec<(RelayId, SendBatch)>>,
    spare: RefCell<Vec<SendBatch>>,
    tcp_out: RefCell<HashMap<FiveTuple, Rc<TcpOut>>>,
    streams: Arc<StreamSetup>,
    /// Accept tasks of this worker's TCP relays.
    tcp_relays: RefCell<HashMap<RelayId, tokio::task::JoinHandle<()>>>,
    /// Client connections just bound as data connections, to splice.
    bound: RefCell<HashMap<FiveTuple, u32>>,
    epoll: AsyncFd<Epoll>,
    /// Set when DTLS is served: every UDP listener then also takes DTLS.
    dtls: Option<DtlsSide>,
    /// Set when RFC 5780 is served.
    nat: Option<NatSide>,
    /// Receive buffers shared by this worker's sockets.
    recv: RefCell<RecvBatch>,
}

/// Starts the worker thread.
pub(crate) fn spawn(setup: WorkerSetup) -> std::io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new()
        .name(format!("turnpike-w{}", setup.index))
        .spawn(move || {
            let rt = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    tracing::error!("worker {} cannot start: {e}", setup.index);
                    return;
                }
            };
            let local = tokio::task::LocalSet::new();
            local.block_on(&rt, run(setup));
        })
}

async fn run(setup: WorkerSetup) {
    let WorkerSetup {
        index,
        shared,
        udp,
        tcp,
        streams,
        mut stop,
        registry,
        commands,
        nat,
    } = setup;
    let epoll = match Epoll::new() {
        // SAFETY: Epoll owns its descriptor, which stays open and the same
        // for as long as the AsyncFd holds it.
        Ok(e) => match unsafe { AsyncFd::register_with_interest(e, tokio::io::Interest::READABLE) }
        {
            Ok(e) => e,
            Err(e) => {
                tracing::error!("worker {index}: epoll registration: {e}");
                return;
            }
        },
        Err(e) => {
            tracing::error!("worker {index}: epoll: {e}");
            return;
        }
    };
    let mut sockets = Vec::new();
    for (i, s) in udp.into_iter().enumerate() {
        match s.local_addr() {
            Ok(addr) => {
                if let Err(e) = epoll.get_ref().add(s.as_raw_fd(), i as u64) {
                    tracing::error!("worker {index}: udp socket {addr}: {e}");
                    continue;
                }
                sockets.push((addr, s));
            }
            Err(e) => tracing::error!("worker {index}: udp socket: {e}"),
        }
    }
    let nat = nat.map(|n| {
        let mine = n.addresses.local_addresses();
        NatSide {
            serves: sockets.iter().map(|(a, _)| mine.contains(a)).collect(),
            addresses: n.addresses,
            shared: shared.clone(),
            software: n.software,
            out: RefCell::new(vec![
                0u8;
                crate::nat::server::DEFAULT_MAX_PADDING
                    + crate::nat::server::RESPONSE_OVERHEAD
            ]),
        }
    });
    let w = Rc::new(Worker {
        core: RefCell::new(Server::new(shared, 0x5eed_0000 + index as u64)),
        relays: RefCell::new(Vec::new()),
        sends: RefCell::new((0..sockets.len()).map(|_| SendBatch::default()).collect()),
        relay_sends: RefCell::new(Vec::new()),
        spare: RefCell::new(Vec::new()),
        udp: sockets,
        tcp_out: RefCell::new(HashMap::new()),
        streams: streams.clone(),
        tcp_relays: RefCell::new(HashMap::new()),
        bound: RefCell::new(HashMap::new()),
        epoll,
        dtls: streams
            .tls
            .as_ref()
            .and_then(|t| t.dtls())
            .map(|d| DtlsSide {
                gate: RefCell::new(Gate::new(d, streams.limits.clone())),
                sessions: RefCell::new(HashMap::new()),
            }),
        nat,
        recv: RefCell::new(RecvBatch::new(PEER_HEADROOM, MAX_DATAGRAM, PEER_TAILROOM)),
    });
    tokio::task::spawn_local(udp_engine(w.clone()));
    for l in tcp {
        match (l.local_addr(), TcpListener::from_std(l)) {
            (Ok(local), Ok(listener)) => {
                tokio::task::spawn_local(accept_loop(w.clone(), listener, local, streams.clone()));
            }
            (_, Err(e)) | (Err(e), _) => tracing::error!("worker {index}: tcp listener: {e}"),
        }
    }
    tokio::task::spawn_local(timer_loop(w.clone()));
    if w.dtls.is_some() {
        tokio::task::spawn_local(dtls_tick(w.clone()));
    }
    tokio::task::spawn_local(report_loop(w.clone(), registry.clone(), index));
    tokio::task::spawn_local(command_loop(w.clone(), registry, index, commands));
    super::stopped(&mut stop).await;
    // Close relay sockets now; the runtime drops the remaining tasks.
    w.relays.borrow_mut().clear();
}

impl Worker {
    /// Queues client data for its relay socket.
    fn forward(&self, f: Forward<'_>) {
        let mut pending = self.relay_sends.borrow_mut();
        let i = match pending.iter().position(|(r, _)| *r == f.relay) {
            Some(i) => i,
            None => {
                let b = self.spare.borrow_mut().pop().unwrap_or_default();
                pending.push((f.relay, b));
                pending.len() - 1
            }
        };
        pending[i].1.push(f.peer, f.data);
    }

    /// Queues a datagram for `to` into listener `i`'s batch.
    fn queue_udp(&self, i: usize, to: SocketAddr, data: &[u8]) {
        let mut sends = self.sends.borrow_mut();
        sends[i].push(to, data);
        if sends[i].len() >= batch::BATCH {
            sends[i].flush(self.udp[i].1.as_raw_fd());
        }
    }

    /// Queues data for a client: UDP into its listener's batch, DTLS
    /// encrypted into the same, TCP into the connection's queue. `relayed`
    /// is peer data (dropped first when a stream client falls behind).
    fn send_to_client(&self, to: &FiveTuple, data: &[u8], relayed: bool) {
        match to.transport {
            Transport::Udp => {
                if let Some(i) = self.udp.iter().position(|(local, _)| *local == to.server) {
                    self.queue_udp(i, to.client, data);
                }
            }
            Transport::Dtls => {
                let Some(d) = &self.dtls else { return };
                let Some(i) = self.udp.iter().position(|(local, _)| *local == to.server) else {
                    return;
                };
                let mut sessions = d.sessions.borrow_mut();
                if let Some(s) = sessions.get_mut(&(i, to.client)) {
                    if s.send(data) {
                        for o in s.outgoing() {
                            self.queue_udp(i, to.client, &o);
                        }
                    }
                }
            }
            Transport::Tcp | Transport::Tls => {
                if let Some(out) = self.tcp_out.borrow().get(to) {
                    out.push(data, relayed);
                }
            }
        }
    }

    /// Sends the datagrams queued for peers and for UDP clients.
    fn flush(&self) {
        let mut pending = self.relay_sends.borrow_mut();
        if !pending.is_empty() {
            let relays = self.relays.borrow();
            let mut spare = self.spare.borrow_mut();
            for (relay, mut b) in pending.drain(..) {
                if let Some(Some(sock)) = relays.get(relay.0 as usize) {
                    b.flush(sock.as_raw_fd());
                }
                b.clear();
                spare.push(b);
            }
        }
        let mut sends = self.sends.borrow_mut();
        for (i, batch) in sends.iter_mut().enumerate() {
            if !batch.is_empty() {
                batch.flush(self.udp[i].1.as_raw_fd());
            }
        }
    }

    /// Carries out what the core asked for and queues its answers; call
    /// [`Worker::flush`] afterwards.
    fn drain(self: &Rc<Self>, now: Instant) {
        loop {
            let output = self.core.borrow_mut().poll_output();
            let Some(output) = output else { break };
            match output {
                Output::OpenRelay {
                    relay,
                    addr,
                    tcp: true,
                    ..
                } => {
                    let result = socket::bind_tcp_relay(addr).and_then(TcpListener::from_std);
                    let ok = match result {
                        Ok(listener) => {
                            let task = tokio::task::spawn_local(tcp_relay_accept(
                                self.clone(),
                                relay,
                                listener,
                            ));
                            self.tcp_relays.borrow_mut().insert(relay, task);
                            Ok(())
                        }
                        Err(e) => {
                            tracing::debug!("tcp relay bind {addr} failed: {e}");
                            Err(())
                        }
                    };
                    self.core.borrow_mut().relay_opened(now, relay, ok);
                }
                Output::OpenRelay {
                    relay,
                    addr,
                    dont_fragment,
                    tcp: false,
                } => {
                    let result = socket::bind_relay(addr, dont_fragment).and_then(|sock| {
                        self.epoll
                            .get_ref()
                            .add(sock.as_raw_fd(), RELAY_TOKEN + relay.0 as u64)?;
                        let mut relays = self.relays.borrow_mut();
                        let i = relay.0 as usize;
                        if relays.len() <= i {
                            relays.resize_with(i + 1, || None);
                        }
                        relays[i] = Some(sock);
                        Ok(())
                    });
                    if let Err(e) = &result {
                        tracing::debug!("relay bind {addr} failed: {e}");
                    }
                    self.core
                        .borrow_mut()
                        .relay_opened(now, relay, result.map_err(|_| ()));
                }
                Output::CloseRelay { relay } => {
                    if let Some(task) = self.tcp_relays.borrow_mut().remove(&relay) {
                        task.abort();
                    }
                    // Dropping the socket closes it and leaves the epoll set.
                    let closed = self
                        .relays
                        .borrow_mut()
                        .get_mut(relay.0 as usize)
                        .and_then(Option::take);
                    drop(closed);
                }
                Output::ConnectPeer {
                    conn, from, peer, ..
                } => {
                    tokio::task::spawn_local(connect_peer(self.clone(), conn, from, peer));
                }
                Output::BindData { conn, tuple } => {
                    self.bound.borrow_mut().insert(tuple, conn);
                }
                Output::ClosePeer { conn } => {
                    let side = self.streams.peers().remove(&conn);
                    if let Some(PeerSide::Relaying(task)) = side {
                        task.abort();
                    }
                }
                Output::AllocationCreated {
                    tuple,
                    username,
                    relayed,
                } => {
                    tracing::debug!(
                        "allocation {} {} -> {:?} user {username}",
                        tuple.transport,
                        tuple.client,
                        relayed
                    );
                    self.with_dtls_session(&tuple, |s| s.set_allocated(true));
                }
                Output::AllocationDeleted { tuple, username } => {
                    tracing::debug!(
                        "allocation {} {} ended, user {username}",
                        tuple.transport,
                        tuple.client
                    );
                    // A stream's allocation goes with it (the answer to a
                    // Refresh with LIFETIME 0 is sent first); a DTLS
                    // session falls back to the short idle limit.
                    if let Some(out) = self.tcp_out.borrow().get(&tuple) {
                        out.close();
                    }
                    self.with_dtls_session(&tuple, |s| s.set_allocated(false));
                }
            }
        }
        loop {
            let t = self.core.borrow_mut().poll_transmit();
            let Some(t) = t else { break };
            self.send_to_client(&t.to, &t.data, false);
        }
    }

    /// Runs `f` on the DTLS session of `tuple`, if there is one.
    fn with_dtls_session(&self, tuple: &FiveTuple, f: impl FnOnce(&mut Session)) {
        let Some(d) = &self.dtls else { return };
        if tuple.transport != Transport::Dtls {
            return;
        }
        let Some(i) = self.udp.iter().position(|(a, _)| *a == tuple.server) else {
            return;
        };
        if let Some(s) = d.sessions.borrow_mut().get_mut(&(i, tuple.client)) {
            f(s);
        }
    }

    /// Reads one batch from listener `i`.
    fn listener_ready(&self, i: usize, now: Instant) {
        let Some((local, sock)) = self.udp.get(i) else {
            return;
        };
        let mut rb = self.recv.borrow_mut();
        let Ok(n) = rb.recv(sock.as_raw_fd()) else {
            return;
        };
        for k in 0..n {
            let (from, slot, at, len) = rb.get_mut(k);
            let Some(from) = from else { continue };
            let data = &slot[at..at + len];
            if self.dtls_datagram(i, *local, from, data, now)
                || self.rfc5780_binding(i, *local, from, data, now)
            {
                continue;
            }
            let tuple = FiveTuple {
                transport: Transport::Udp,
                client: from,
                server: *local,
            };
            let forward = self.core.borrow_mut().handle_client(now, tuple, data);
            if let Some(f) = forward {
                self.forward(f);
            }
        }
    }

    /// Takes a datagram that belongs to DTLS: one from a client with a
    /// session, or a DTLS record from anyone else (the cookie gate).
    /// Returns false for plain STUN and ChannelData.
    fn dtls_datagram(
        &self,
        i: usize,
        local: SocketAddr,
        from: SocketAddr,
        data: &[u8],
        now: Instant,
    ) -> bool {
        let Some(d) = &self.dtls else { return false };
        // Everything a DTLS client sends is a DTLS record, so plain STUN
        // and ChannelData skip the session table: relaying pays nothing.
        if !dtls::is_dtls(data) {
            return false;
        }
        let key = (i, from);
        let mut out = Vec::new();
        let mut plain = Vec::new();
        let mut ended = false;
        {
            let mut sessions = d.sessions.borrow_mut();
            let session = sessions.get_mut(&key);
            // A ClientHello on an established session is a client that
            // restarted on the same port: it must pass the gate again.
            let restart = session
                .as_ref()
                .is_some_and(|s| s.is_established() && dtls::is_client_hello(data));
            match session {
                Some(s) if !restart => {
                    ended = s.input(now, data, &mut plain).is_err();
                    out.extend(s.outgoing());
                }
                _ => {
                    let timeout = self.streams.handshake_timeout;
                    // A restart takes over the old session's slot.
                    let replacing = if restart {
                        sessions.get_mut(&key)
                    } else {
                        None
                    };
                    let offered = d
                        .gate
                        .borrow_mut()
                        .offer(now, from, data, timeout, replacing, &mut out);
                    if let Some(mut s) = offered {
                        out.extend(s.outgoing());
                        ended = sessions.insert(key, s).is_some();
                    }
                }
            }
            if ended && !restart {
                sessions.remove(&key);
            }
        }
        for o in &out {
            self.queue_udp(i, from, o);
        }
        let tuple = FiveTuple {
            transport: Transport::Dtls,
            client: from,
            server: local,
        };
        for m in &plain {
            let forward = self.core.borrow_mut().handle_client(now, tuple, m);
            if let Some(f) = forward {
                self.forward(f);
            }
        }
        if ended {
            self.core.borrow_mut().handle_client_closed(tuple);
        }
        true
    }

    /// Answers a Binding request on an RFC 5780 socket, possibly from
    /// another of the four. Returns false for anything else.
    fn rfc5780_binding(
        &self,
        i: usize,
        local: SocketAddr,
        from: SocketAddr,
        data: &[u8],
        now: Instant,
    ) -> bool {
        let Some(n) = &self.nat else { return false };
        // A Binding request: type 0x0001 (the core takes everything else).
        if !n.serves.get(i).copied().unwrap_or(false) || data.len() < 20 || data[..2] != [0, 1] {
            return false;
        }
        // An RFC 3489 client (no magic cookie) runs its NAT-type tests here
        // too; without backward compatibility it gets no answer at all.
        let msg = match Message::parse(data) {
            Ok(m) => m,
            Err(ParseError::BadMagicCookie) if n.shared.config.stun_backward_compatibility => {
                match Message::parse_classic(data) {
                    Ok(m) => m,
                    Err(_) => return true,
                }
            }
            Err(_) => return false,
        };
        // Each answer is an unauthenticated reflection, possibly toward
        // another port: it spends the source's budget, like a 401.
        if !n.shared.reply_budget.allow(now, from.ip()) {
            return true;
        }
        let options = ServerOptions {
            software: n.software.as_deref(),
            ..ServerOptions::default()
        };
        let mut out = n.out.borrow_mut();
        if let Some(r) = crate::nat::answer(&msg, from, local, &n.addresses, &options, &mut out) {
            if let Some(j) = self.udp.iter().position(|(a, _)| *a == r.from) {
                self.queue_udp(j, r.to, &out[..r.len]);
            }
        }
        true
    }

    /// Reads one batch from a relay socket.
    fn relay_ready(&self, relay: RelayId, now: Instant) {
        let fd = match self.relays.borrow().get(relay.0 as usize) {
            Some(Some(sock)) => sock.as_raw_fd(),
            _ => return,
        };
        let mut rb = self.recv.borrow_mut();
        let Ok(n) = rb.recv(fd) else { return };
        for k in 0..n {
            let (from, slot, at, len) = rb.get_mut(k);
            let Some(from) = from else { continue };
            let deliver = self
                .core
                .borrow_mut()
                .handle_peer(now, relay, from, slot, at, len);
            if let Some(d) = deliver {
                self.send_to_client(&d.to, &slot[d.start..d.end], true);
            }
        }
    }
}

/// Serves every ready UDP socket of the worker, round after round, until
/// the epoll set is quiet.
async fn udp_engine(w: Rc<Worker>) {
    let mut events = [libc::epoll_event { events: 0, u64: 0 }; 64];
    loop {
        let Ok(mut guard) = w.epoll.readable().await else {
            return;
        };
        loop {
            let n = w.epoll.get_ref().poll(&mut events);
            if n == 0 {
                break;
            }
            let now = Instant::now();
            for ev in &events[..n] {
                let token = ev.u64;
                if token >= RELAY_TOKEN {
                    w.relay_ready(RelayId((token - RELAY_TOKEN) as u32), now);
                } else {
                    w.listener_ready(token as usize, now);
                }
            }
            w.drain(now);
            w.flush();
        }
        guard.clear_ready();
    }
}

/// Fires DTLS retransmissions and drops sessions past their handshake
/// deadline or idle limit (with their allocations).
async fn dtls_tick(w: Rc<Worker>) {
    let Some(d) = &w.dtls else { return };
    let mut ended = Vec::new();
    loop {
        tokio::time::sleep(DTLS_TICK).await;
        let now = Instant::now();
        {
            let mut sessions = d.sessions.borrow_mut();
            for (&(i, client), s) in sessions.iter_mut() {
                let r = s.tick(now, w.streams.dtls_idle);
                for o in s.outgoing() {
                    w.queue_udp(i, client, &o);
                }
                if let Err(why) = r {
                    tracing::debug!("dtls {client}: {why:?}");
                    ended.push((i, client));
                }
            }
            for key in &ended {
                sessions.remove(key);
            }
        }
        for (i, client) in ended.drain(..) {
            let tuple = FiveTuple {
                transport: Transport::Dtls,
                client,
                server: w.udp[i].0,
            };
            w.core.borrow_mut().handle_client_closed(tuple);
        }
        w.drain(now);
        w.flush();
    }
}

async fn timer_loop(w: Rc<Worker>) {
    loop {
        let now = Instant::now();
        let next = w
            .core
            .borrow()
            .poll_timeout()
            .unwrap_or(now + TICK)
            .min(now + TICK);
        tokio::time::sleep_until(next.into()).await;
        let now = Instant::now();
        w.core.borrow_mut().handle_timeout(now);
        w.drain(now);
        w.flush();
    }
}

/// Copies sessions and counters to the registry once a second.
async fn report_loop(w: Rc<Worker>, registry: Arc<Registry>, index: usize) {
    loop {
        publish(&w, &registry, index);
        tokio::time::sleep(REPORT_EVERY).await;
    }
}

fn publish(w: &Worker, registry: &Registry, index: usize) {
    let core = w.core.borrow();
    registry.publish(
        index,
        Report {
            sessions: core.sessions(),
            stats: core.stats(),
        },
    );
}

/// Carries out the admin API's requests on this worker's thread.
async fn command_loop(
    w: Rc<Worker>,
    registry: Arc<Registry>,
    index: usize,
    mut commands: mpsc::UnboundedReceiver<Command>,
) {
    while let Some(cmd) = commands.recv().await {
        match cmd {
            Command::End {
                slot,
                generation,
                done,
            } => {
                let ended = w.core.borrow_mut().end_session(slot, generation);
                let now = Instant::now();
                w.drain(now);
                w.flush();
                publish(&w, &registry, index);
                let _ = done.send(ended);
            }
        }
    }
}

/// How often a failing accept may log: descriptor exhaustion retries every
/// 50 ms and must not flood the log.
const ACCEPT_WARN_EVERY: Duration = Duration::from_secs(60);

async fn accept_loop(
    w: Rc<Worker>,
    listener: TcpListener,
    local: SocketAddr,
    streams: Arc<StreamSetup>,
) {
    let mut warned: Option<tokio::time::Instant> = None;
    let mut suppressed = 0u64;
    loop {
        match listener.accept().await {
            Ok((stream, peer)) => match streams.limits.acquire(peer.ip()) {
                Ok(slot) => {
                    tokio::task::spawn_local(connection(
                        w.clone(),
                        stream,
                        peer,
                        local,
                        streams.clone(),
                        slot,
                    ));
                }
                // Closed at once: a flood from one source must not cost
                // more than the accept.
                Err(cap) => tracing::debug!("tcp {peer} refused: {cap:?} connection cap"),
            },
            Err(e) => {
                // Out of descriptors and the like: back off instead of
                // spinning, and say so once per window.
                let now = tokio::time::Instant::now();
                if !matches!(warned, Some(at) if now < at + ACCEPT_WARN_EVERY) {
                    if suppressed > 0 {
                        tracing::warn!(
                            "accept on {local}: {e} ({suppressed} more since the last warning)"
                        );
                    } else {
                        tracing::warn!("accept on {local}: {e}");
                    }
                    warned = Some(now);
                    suppressed = 0;
                } else {
                    suppressed += 1;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// Tells TLS from plain TCP by the first byte, then serves the stream.
async fn connection(
    w: Rc<Worker>,
    stream: TcpStream,
    peer: SocketAddr,
    local: SocketAddr,
    streams: Arc<StreamSetup>,
    mut slot: ConnSlot,
) {
    let _ = stream.set_nodelay(true);
    let deadline = tokio::time::Instant::now() + streams.handshake_timeout;
    let mut tuple = FiveTuple {
        transport: Transport::Tcp,
        client: peer,
        server: local,
    };
    let Some(tls) = &streams.tls else {
        return serve_stream(w, stream, tuple, deadline, &mut slot).await;
    };
    let mut first = [0u8; 1];
    match tokio::time::timeout_at(deadline, stream.peek(&mut first)).await {
        Ok(Ok(1)) => {}
        _ => return,
    }
    if first[0] != TLS_HANDSHAKE_RECORD {
        return serve_stream(w, stream, tuple, deadline, &mut slot).await;
    }
    match tokio::time::timeout_at(deadline, tls.accept(stream)).await {
        Ok(Ok(tls_stream)) => {
            tuple.transport = Transport::Tls;
            serve_stream(w, tls_stream, tuple, deadline, &mut slot).await
        }
        Ok(Err(e)) => tracing::debug!("tls {peer}: handshake failed: {e}"),
        Err(_) => tracing::debug!("tls {peer}: handshake timed out"),
    }
}

/// What woke a stream's reader.
enum ReadEvent {
    Read(std::io::Result<usize>),
    Woken,
    Deadline,
}

/// Reads frames from a TCP or TLS client into the core and writes what the
/// core queues for it.
///
/// Every read has a deadline. The first complete message must arrive
/// before `deadline`; then, until the connection owns an allocation, the
/// next STUN message must come within `handshake_timeout` of the last one,
/// and afterwards the allocation's expiry plus `handshake_timeout` bounds
/// the wait. The connection closes when its allocation is deleted or
/// expires. Its reads stop while more than [`STREAM_PAUSE`] bytes wait to
/// be written to it. Only STUN messages move the deadline, so ChannelData
/// costs nothing extra.
async fn serve_stream<S>(
    w: Rc<Worker>,
    stream: S,
    tuple: FiveTuple,
    deadline: tokio::time::Instant,
    slot: &mut ConnSlot,
) where
    S: AsyncRead + AsyncWrite + Unpin + 'static,
{
    let (mut rd, mut wr) = tokio::io::split(stream);
    let out = Rc::new(TcpOut::default());
    w.tcp_out.borrow_mut().insert(tuple, out.clone());
    let writer_out = out.clone();
    let writer = tokio::task::spawn_local(async move {
        let mut sending = Vec::new();
        loop {
            writer_out.ready.notified().await;
            std::mem::swap(&mut sending, &mut *writer_out.queue.borrow_mut());
            writer_out.in_flight.set(sending.len());
            if !sending.is_empty() && wr.write_all(&sending).await.is_err() {
                writer_out.in_flight.set(0);
                writer_out.close();
                return None;
            }
            sending.clear();
            writer_out.in_flight.set(0);
            // A burst leaves no large buffer behind.
            if sending.capacity() > STREAM_PAUSE {
                sending.shrink_to(STREAM_PAUSE);
            }
            if writer_out.paused.get() && writer_out.unsent() <= STREAM_PAUSE / 2 {
                writer_out.reader.wake();
            }
            if writer_out.queue.borrow().is_empty() {
                if writer_out.handing_over.get() {
                    return Some(wr);
                }
                if writer_out.closing.get() {
                    // Everything owed is written: end the stream (TLS
                    // sends close_notify).
                    let _ = wr.shutdown().await;
                    return None;
                }
            }
        }
    });
    let quiet = w.streams.handshake_timeout;
    let timer = tokio::time::sleep_until(deadline);
    tokio::pin!(timer);
    let classic = w.core.borrow().shared().config.stun_backward_compatibility;
    let mut framer = Framer::new().with_classic(classic);
    let mut allocated = false;
    let mut data_conn = None;
    'read: loop {
        if out.closing.get() {
            break;
        }
        if out.unsent() > STREAM_PAUSE {
            // The client does not read its answers: do not read it either
            // until they drain (the writer wakes us), or the deadline.
            out.paused.set(true);
            let woken = tokio::select! {
                () = std::future::poll_fn(|cx| out.reader.poll(cx)) => true,
                () = &mut timer => false,
            };
            out.paused.set(false);
            if !woken {
                tracing::debug!(
                    "{} {}: does not read its answers, closing",
                    tuple.transport,
                    tuple.client
                );
                break;
            }
            continue;
        }
        let event = tokio::select! {
            r = rd.read(framer.unfilled()) => ReadEvent::Read(r),
            () = std::future::poll_fn(|cx| out.reader.poll(cx)) => ReadEvent::Woken,
            () = &mut timer => ReadEvent::Deadline,
        };
        let n = match event {
            ReadEvent::Read(Ok(n)) if n > 0 => n,
            ReadEvent::Read(_) => {
                framer.filled(0);
                break;
            }
            ReadEvent::Woken => {
                framer.filled(0);
                continue;
            }
            ReadEvent::Deadline => {
                framer.filled(0);
                tracing::debug!(
                    "{} {}: no message before the deadline",
                    tuple.transport,
                    tuple.client
                );
                break;
            }
        };
        framer.filled(n);
        let now = Instant::now();
        let mut stun = false;
        loop {
            match framer.next_frame() {
                Ok(Some(frame)) => {
                    stun |= frame.kind == FrameKind::Stun;
                    let forward = w.core.borrow_mut().handle_client(now, tuple, frame.bytes);
                    if let Some(f) = forward {
                        w.forward(f);
                    }
                }
                Ok(None) => break,
                // Bytes that are neither STUN nor ChannelData: framing is lost.
                Err(_) => break 'read,
            }
        }
        w.drain(now);
        w.flush();
        if let Some(conn) = w.bound.borrow_mut().remove(&tuple) {
            // A data connection belongs to its allocation from now on.
            slot.bind();
            data_conn = Some(conn);
            break;
        }
        if stun {
            let expires = w.core.borrow().allocation(&tuple).map(|a| a.expires);
            let next = match expires {
                Some(at) => {
                    if !allocated {
                        allocated = true;
                        slot.bind();
                    }
                    at + quiet
                }
                // Deleted by a Refresh with LIFETIME 0.
                None if allocated => break,
                None => now + quiet,
            };
            timer.as_mut().reset(tokio::time::Instant::from_std(next));
        }
    }
    if let Some(conn) = data_conn {
        w.tcp_out.borrow_mut().remove(&tuple);
        out.handing_over.set(true);
        out.ready.notify_one();
        let rest = framer.take_rest();
        if let Ok(Some(wr)) = writer.await {
            relay_tcp(w, conn, rd.unsplit(wr), rest).await;
        }
        return;
    }
    w.core.borrow_mut().handle_client_closed(tuple);
    w.drain(Instant::now());
    w.flush();
    w.tcp_out.borrow_mut().remove(&tuple);
    // Let queued answers go out before the connection closes; the writer
    // ends once they are written, or is stopped after 2 s.
    if out.unsent() == 0 {
        writer.abort();
    } else {
        out.closing.set(true);
        out.ready.notify_one();
        let stop = writer.abort_handle();
        tokio::task::spawn_local(async move {
            if tokio::time::timeout(Duration::from_secs(2), writer)
                .await
                .is_err()
            {
                stop.abort();
            }
        });
    }
}

/// Accepts peers on a TCP relay's address (RFC 6062 §5.3); the core
/// decides (permission) and tells the client with a ConnectionAttempt.
async fn tcp_relay_accept(w: Rc<Worker>, relay: RelayId, listener: TcpListener) {
    loop {
        let Ok((stream, from)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let now = Instant::now();
        let conn = w.core.borrow_mut().peer_accepted(now, relay, from);
        if let (Some(conn), Ok(std)) = (conn, stream.into_std()) {
            w.streams.peers().insert(conn, PeerSide::Waiting(std));
        }
        w.drain(now);
        w.flush();
    }
}

/// Opens a Connect's peer connection from the relayed address. The core
/// has already checked the peer against the policy.
async fn connect_peer(w: Rc<Worker>, conn: u32, from: SocketAddr, peer: SocketAddr) {
    let attempt = async {
        let sock = if peer.is_ipv4() {
            tokio::net::TcpSocket::new_v4()?
        } else {
            tokio::net::TcpSocket::new_v6()?
        };
        sock.set_reuseaddr(true)?;
        sock.set_reuseport(true)?;
        sock.bind(from)?;
        let stream = tokio::time::timeout(CONNECT_TIMEOUT, sock.connect(peer))
            .await
            .map_err(|_| std::io::Error::from(std::io::ErrorKind::TimedOut))??;
        stream.set_nodelay(true)?;
        stream.into_std()
    };
    let result = attempt.await;
    if let Err(e) = &result {
        tracing::debug!("tcp relay {from} -> {peer}: {e}");
    }
    let ok = result.is_ok();
    if let Ok(std) = result {
        w.streams.peers().insert(conn, PeerSide::Waiting(std));
    }
    let now = Instant::now();
    w.core.borrow_mut().peer_connected(now, conn, ok);
    w.drain(now);
    w.flush();
}

/// Relays bytes between a bound data connection and its peer until
/// either side ends or the allocation goes (the task is aborted).
async fn relay_tcp<S>(w: Rc<Worker>, conn: u32, mut client: S, first: Vec<u8>)
where
    S: AsyncRead + AsyncWrite + Unpin + 'static,
{
    let side = w.streams.peers().remove(&conn);
    let Some(PeerSide::Waiting(std)) = side else {
        w.core.borrow_mut().peer_closed(conn);
        return;
    };
    let Ok(mut peer) = TcpStream::from_std(std) else {
        w.core.borrow_mut().peer_closed(conn);
        return;
    };
    let task = tokio::task::spawn_local(async move {
        if !first.is_empty() && peer.write_all(&first).await.is_err() {
            return;
        }
        let _ = tokio::io::copy_bidirectional(&mut client, &mut peer).await;
    });
    w.streams
        .peers()
        .insert(conn, PeerSide::Relaying(task.abort_handle()));
    let _ = task.await;
    w.streams.peers().remove(&conn);
    w.core.borrow_mut().peer_closed(conn);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_output_drops_relayed_data_past_its_limit_and_closes_past_the_cap() {
        let out = TcpOut::default();
        let chunk = vec![0u8; 16 << 10];
        for _ in 0..12 {
            out.push(&chunk, true);
        }
        assert_eq!(out.unsent(), STREAM_RELAYED_MAX);
        out.push(&[0; 4], true);
        assert_eq!(
            out.unsent(),
            STREAM_RELAYED_MAX,
            "relayed data past 192 KiB is dropped"
        );
        // Answers still queue (in flight counts too), up to the hard cap.
        out.in_flight.set(16 << 10);
        while out.unsent() + chunk.len() <= STREAM_QUEUE_MAX {
            out.push(&chunk, false);
        }
        assert!(!out.closing.get());
        out.push(&chunk, false);
        assert!(out.closing.get(), "an answer past 256 KiB closes");
        assert!(out.unsent() <= STREAM_QUEUE_MAX);
    }
}
