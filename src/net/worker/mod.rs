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
//!
//! Rooms: [`udp`] (the epoll engine, listeners, relays, RFC 5780),
//! [`stream`] (TCP and TLS clients), [`dtls`] (DTLS clients on the UDP
//! listeners), [`tcp_relay`] (the RFC 6062 splice) and [`control`] (timers,
//! reports and admin commands). Every input reaches the core through
//! [`Worker::step`], which then carries out what the core asked for.

mod control;
mod dtls;
mod quota;
mod stream;
mod tcp_relay;
mod udp;

use std::cell::RefCell;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::unix::AsyncFd;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};

use super::batch::{Epoll, RecvBatch, SendBatch};
use super::control::{Command, Registry};
use super::limits::ConnLimits;
use super::socket;
use super::tls::Tls;
use crate::nat::ServerAddresses;
use crate::turn::policy::IpRange;
use crate::turn::{
    ConnId, EndReason, Event, FiveTuple, RelayError, RelayId, Request, Server, Shared, Transport,
    PEER_HEADROOM, PEER_TAILROOM,
};

use dtls::DtlsSide;
use stream::TcpOut;
use udp::{NatSide, RELAY_TOKEN};

/// Largest UDP payload handled.
const MAX_DATAGRAM: usize = 65_535;

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
    /// Set with a shared (PostgreSQL) store: quotas count the fleet.
    pub fleet_quota: Option<Arc<super::fleet_quota::FleetQuota>>,
    /// Usage records and events from this worker's core events.
    pub usage: Arc<crate::usage::recorder::Recorder>,
}

/// RFC 5780 server mode: the four addresses.
pub(crate) struct NatSetup {
    pub addresses: ServerAddresses,
    pub software: Option<String>,
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
    /// Web TLS connections go here, still encrypted (issue 19).
    pub passthrough: Option<crate::net::passthrough::Passthrough>,
    /// Sources whose connections start with a PROXY protocol header
    /// (`proxy_protocol_from`); a reload swaps them for new connections.
    pub proxies: arc_swap::ArcSwap<Vec<IpRange>>,
}

impl StreamSetup {
    /// Whether a connection from `ip` must start with a PROXY header.
    fn is_trusted_proxy(&self, ip: std::net::IpAddr) -> bool {
        let proxies = self.proxies.load();
        let mapped = ip.to_canonical();
        proxies.iter().any(|r| r.contains(ip) || r.contains(mapped))
    }
}

struct Worker {
    core: RefCell<Server>,
    /// The core's shared state: the RFC 6062 table keeps our peer streams.
    shared: Arc<Shared>,
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
    bound: RefCell<HashMap<FiveTuple, ConnId>>,
    epoll: AsyncFd<Epoll>,
    /// Set when DTLS is served: every UDP listener then also takes DTLS.
    dtls: Option<DtlsSide>,
    /// Set when RFC 5780 is served.
    nat: Option<NatSide>,
    /// Receive buffers shared by this worker's sockets.
    recv: RefCell<RecvBatch>,
    /// Fleet quotas, when the store is shared.
    quota: Option<quota::WorkerQuota>,
    index: usize,
    usage: Arc<crate::usage::recorder::Recorder>,
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
        fleet_quota,
        usage,
    } = setup;
    let (quota, quota_answers) = quota::link(fleet_quota);
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
    let nat = nat.map(|n| NatSide::new(n, &sockets, shared.clone()));
    let w = Rc::new(Worker {
        core: RefCell::new(
            Server::new(shared.clone(), 0x5eed_0000 + index as u64)
                .with_first_generation(first_generation()),
        ),
        shared,
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
            .map(|d| DtlsSide::new(d, streams.limits.clone())),
        nat,
        recv: RefCell::new(RecvBatch::new(PEER_HEADROOM, MAX_DATAGRAM, PEER_TAILROOM)),
        quota,
        index,
        usage,
    });
    if let Some(answers) = quota_answers {
        tokio::task::spawn_local(quota::answer_loop(w.clone(), answers));
    }
    tokio::task::spawn_local(udp::udp_engine(w.clone()));
    for l in tcp {
        match (l.local_addr(), TcpListener::from_std(l)) {
            (Ok(local), Ok(listener)) => {
                tokio::task::spawn_local(stream::accept_loop(
                    w.clone(),
                    listener,
                    local,
                    streams.clone(),
                ));
            }
            (_, Err(e)) | (Err(e), _) => tracing::error!("worker {index}: tcp listener: {e}"),
        }
    }
    tokio::task::spawn_local(control::timer_loop(w.clone()));
    if w.dtls.is_some() {
        tokio::task::spawn_local(dtls::dtls_tick(w.clone()));
    }
    tokio::task::spawn_local(control::report_loop(w.clone(), registry.clone(), index));
    if index == 0 {
        if let Some(stall) = control::test_stall() {
            tokio::task::spawn_local(stall);
        }
    }
    tokio::task::spawn_local(control::command_loop(w.clone(), registry, index, commands));
    super::stopped(&mut stop).await;
    // Every allocation ends here, so its usage record and event are
    // queued before the process goes (the writer flushes them).
    let now = Instant::now();
    let reason = if w.shared.drain.is_draining() {
        EndReason::Drained
    } else {
        EndReason::Shutdown
    };
    w.step(now, |core| core.end_all(now, reason));
    // Close relay sockets now; the runtime drops the remaining tasks.
    w.relays.borrow_mut().clear();
}

impl Worker {
    /// Feeds one input to the core: borrows it for `input` only, then
    /// carries out what it asked for and sends what it queued. Every task
    /// that touches the core goes through here, so nothing is left queued.
    fn step<R>(self: &Rc<Self>, now: Instant, input: impl FnOnce(&mut Server) -> R) -> R {
        let r = input(&mut self.core.borrow_mut());
        self.drain(now);
        self.flush();
        r
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
            Transport::Dtls => self.send_dtls(to, data),
            Transport::Tcp | Transport::Tls => {
                if let Some(out) = self.tcp_out.borrow().get(to) {
                    out.push(data, relayed);
                }
            }
        }
    }

    /// Carries out what the core asked for, notes what happened and
    /// queues its answers; only [`Worker::step`] calls it, and flushes
    /// afterwards. One arm per request: each is one action.
    fn drain(self: &Rc<Self>, now: Instant) {
        loop {
            let request = self.core.borrow_mut().poll_request();
            let Some(request) = request else { break };
            match request {
                Request::OpenUdpRelay {
                    relay,
                    addr,
                    dont_fragment,
                } => {
                    let result = self.open_udp_relay(relay, addr, dont_fragment);
                    self.core.borrow_mut().relay_opened(now, relay, result);
                }
                Request::ListenTcpRelay { relay, addr } => {
                    let result = self.listen_tcp_relay(relay, addr);
                    self.core.borrow_mut().relay_opened(now, relay, result);
                }
                Request::CloseRelay { relay } => {
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
                Request::ConnectPeer {
                    conn, from, peer, ..
                } => self.connect_peer(conn, from, peer),
                Request::BindData { conn, tuple } => {
                    self.bound.borrow_mut().insert(tuple, conn);
                }
                // Dropping what we held closes the peer stream or aborts
                // its task (connecting or splicing).
                Request::ClosePeer { held, .. } => drop(held),
                // The answer to a Refresh with LIFETIME 0 is queued first
                // and still sent.
                Request::CloseStream { tuple } => {
                    if let Some(out) = self.tcp_out.borrow().get(&tuple) {
                        out.close();
                    }
                }
                Request::ReserveQuota {
                    key,
                    user,
                    realm,
                    limits,
                } => self.reserve_quota(now, key, user, realm, limits),
                Request::ReleaseQuota { key } => self.release_quota(key),
            }
        }
        loop {
            let event = self.core.borrow_mut().poll_event();
            let Some(event) = event else { break };
            self.usage.on_event(self.index, &event);
            match event {
                Event::AllocationCreated {
                    tuple,
                    username,
                    relayed,
                    ..
                } => {
                    tracing::debug!(
                        "allocation {} {} -> {:?} user {username}",
                        tuple.transport,
                        tuple.client,
                        relayed
                    );
                    self.with_dtls_session(&tuple, |s| s.set_allocated(true));
                }
                Event::AllocationRefreshed { .. } | Event::AllocationRefused { .. } => {}
                Event::AllocationDeleted(end) => {
                    tracing::debug!(
                        "allocation {} {} ended ({:?}), user {}",
                        end.tuple.transport,
                        end.tuple.client,
                        end.reason,
                        end.username
                    );
                    // A DTLS session falls back to the short idle limit.
                    self.with_dtls_session(&end.tuple, |s| s.set_allocated(false));
                }
            }
        }
        loop {
            let t = self.core.borrow_mut().poll_transmit();
            let Some(t) = t else { break };
            self.send_to_client(&t.to, &t.data, false);
        }
    }

    fn open_udp_relay(
        &self,
        relay: RelayId,
        addr: SocketAddr,
        dont_fragment: bool,
    ) -> Result<SocketAddr, RelayError> {
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
            Ok(addr)
        });
        result.map_err(|e| {
            tracing::debug!("relay bind {addr} failed: {e}");
            RelayError::from(&e)
        })
    }

    fn listen_tcp_relay(
        self: &Rc<Self>,
        relay: RelayId,
        addr: SocketAddr,
    ) -> Result<SocketAddr, RelayError> {
        match socket::bind_tcp_relay(addr).and_then(TcpListener::from_std) {
            Ok(listener) => {
                let task = tokio::task::spawn_local(tcp_relay::tcp_relay_accept(
                    self.clone(),
                    relay,
                    listener,
                ));
                self.tcp_relays.borrow_mut().insert(relay, task);
                Ok(addr)
            }
            Err(e) => {
                tracing::debug!("tcp relay bind {addr} failed: {e}");
                Err(RelayError::from(&e))
            }
        }
    }
}

/// A per-start random first allocation generation (see
/// [`Server::with_first_generation`]); the clock if randomness fails.
fn first_generation() -> u32 {
    let mut b = [0u8; 4];
    if getrandom::fill(&mut b).is_err() {
        return crate::store::unix_now_ms() as u32;
    }
    u32::from_le_bytes(b)
}
