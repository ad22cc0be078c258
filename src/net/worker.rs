//! One worker: a thread with a single-threaded runtime that owns its TURN
//! core, its listener sockets (SO_REUSEPORT keeps each client flow here) and
//! the relay sockets of its allocations.
//!
//! Everything a worker touches per packet is its own: the core sits in a
//! `RefCell` (never borrowed across an await), sockets are read after
//! readiness into one scratch buffer per worker, and sends are non-blocking.
//! No lock, no allocation, no log line per relayed packet.

use std::cell::RefCell;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::{watch, Notify};
use tokio::task::JoinHandle;

use super::socket;
use crate::stun::framing::Framer;
use crate::turn::{
    FiveTuple, Forward, Output, RelayId, Server, Shared, Transport, PEER_HEADROOM, PEER_TAILROOM,
};

/// Largest UDP payload handled.
const MAX_DATAGRAM: usize = 65_535;
/// Bytes queued for one TCP client before new frames are dropped.
const TCP_QUEUE_MAX: usize = 4 << 20;
/// Longest sleep of the timer task (allocation expiry granularity).
const TICK: Duration = Duration::from_secs(1);

pub(crate) struct WorkerSetup {
    pub index: usize,
    pub shared: Arc<Shared>,
    pub udp: Vec<std::net::UdpSocket>,
    pub tcp: Vec<std::net::TcpListener>,
    pub stop: watch::Receiver<bool>,
}

struct RelaySlot {
    socket: Rc<UdpSocket>,
    task: JoinHandle<()>,
}

/// Frames waiting for a TCP client.
struct TcpOut {
    queue: RefCell<Vec<u8>>,
    ready: Notify,
}

struct Worker {
    core: RefCell<Server>,
    relays: RefCell<Vec<Option<RelaySlot>>>,
    udp: Vec<(SocketAddr, Rc<UdpSocket>)>,
    tcp_out: RefCell<HashMap<FiveTuple, Rc<TcpOut>>>,
    /// Receive buffer shared by this worker's sockets; borrowed only between
    /// readiness and the synchronous read, never across an await.
    scratch: RefCell<Vec<u8>>,
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
        mut stop,
    } = setup;
    let mut sockets = Vec::new();
    for s in udp {
        match (s.local_addr(), UdpSocket::from_std(s)) {
            (Ok(addr), Ok(sock)) => sockets.push((addr, Rc::new(sock))),
            (_, Err(e)) | (Err(e), _) => tracing::error!("worker {index}: udp socket: {e}"),
        }
    }
    let w = Rc::new(Worker {
        core: RefCell::new(Server::new(shared, 0x5eed_0000 + index as u64)),
        relays: RefCell::new(Vec::new()),
        udp: sockets,
        tcp_out: RefCell::new(HashMap::new()),
        scratch: RefCell::new(vec![0u8; PEER_HEADROOM + MAX_DATAGRAM + PEER_TAILROOM]),
    });
    for (local, sock) in &w.udp {
        tokio::task::spawn_local(udp_loop(w.clone(), sock.clone(), *local));
    }
    for l in tcp {
        match (l.local_addr(), TcpListener::from_std(l)) {
            (Ok(local), Ok(listener)) => {
                tokio::task::spawn_local(accept_loop(w.clone(), listener, local));
            }
            (_, Err(e)) | (Err(e), _) => tracing::error!("worker {index}: tcp listener: {e}"),
        }
    }
    tokio::task::spawn_local(timer_loop(w.clone()));
    super::stopped(&mut stop).await;
    // Close relay sockets now; the runtime drops the remaining tasks.
    for slot in w.relays.borrow_mut().iter_mut().filter_map(Option::take) {
        slot.task.abort();
    }
}

impl Worker {
    /// Sends client data out of its relay socket.
    fn forward(&self, f: Forward<'_>) {
        if let Some(Some(slot)) = self.relays.borrow().get(f.relay.0 as usize) {
            // A full socket buffer drops the datagram, as the network would.
            let _ = slot.socket.try_send_to(f.data, f.peer);
        }
    }

    fn send_to_client(&self, to: &FiveTuple, data: &[u8]) {
        match to.transport {
            Transport::Udp => {
                if let Some((_, sock)) = self.udp.iter().find(|(local, _)| *local == to.server) {
                    let _ = sock.try_send_to(data, to.client);
                }
            }
            Transport::Tcp => {
                if let Some(out) = self.tcp_out.borrow().get(to) {
                    let mut q = out.queue.borrow_mut();
                    if q.len() + data.len() <= TCP_QUEUE_MAX {
                        q.extend_from_slice(data);
                        out.ready.notify_one();
                    }
                }
            }
        }
    }

    /// Carries out what the core asked for and sends its answers.
    fn drain(self: &Rc<Self>, now: Instant) {
        loop {
            let output = self.core.borrow_mut().poll_output();
            let Some(output) = output else { break };
            match output {
                Output::OpenRelay {
                    relay,
                    addr,
                    dont_fragment,
                } => {
                    let result = match socket::bind_relay(addr, dont_fragment) {
                        Ok(sock) => {
                            let sock = Rc::new(sock);
                            let task = tokio::task::spawn_local(relay_loop(
                                self.clone(),
                                relay,
                                sock.clone(),
                            ));
                            let mut relays = self.relays.borrow_mut();
                            let i = relay.0 as usize;
                            if relays.len() <= i {
                                relays.resize_with(i + 1, || None);
                            }
                            relays[i] = Some(RelaySlot { socket: sock, task });
                            Ok(())
                        }
                        Err(e) => {
                            tracing::debug!("relay bind {addr} failed: {e}");
                            Err(())
                        }
                    };
                    self.core.borrow_mut().relay_opened(now, relay, result);
                }
                Output::CloseRelay { relay } => {
                    let slot = self
                        .relays
                        .borrow_mut()
                        .get_mut(relay.0 as usize)
                        .and_then(Option::take);
                    if let Some(slot) = slot {
                        slot.task.abort();
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
                }
                Output::AllocationDeleted { tuple, username } => {
                    tracing::debug!(
                        "allocation {} {} ended, user {username}",
                        tuple.transport,
                        tuple.client
                    );
                }
            }
        }
        loop {
            let t = self.core.borrow_mut().poll_transmit();
            let Some(t) = t else { break };
            self.send_to_client(&t.to, &t.data);
        }
    }
}

async fn udp_loop(w: Rc<Worker>, sock: Rc<UdpSocket>, local: SocketAddr) {
    loop {
        if sock.readable().await.is_err() {
            return;
        }
        // Read everything that is ready before yielding.
        loop {
            let mut buf = w.scratch.borrow_mut();
            let (n, from) = match sock.try_recv_from(&mut buf[..MAX_DATAGRAM]) {
                Ok(r) => r,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(_) => continue,
            };
            let now = Instant::now();
            let tuple = FiveTuple {
                transport: Transport::Udp,
                client: from,
                server: local,
            };
            let forward = w.core.borrow_mut().handle_client(now, tuple, &buf[..n]);
            if let Some(f) = forward {
                w.forward(f);
            }
            drop(buf);
            w.drain(now);
        }
    }
}

async fn relay_loop(w: Rc<Worker>, relay: RelayId, sock: Rc<UdpSocket>) {
    loop {
        if sock.readable().await.is_err() {
            return;
        }
        loop {
            let mut buf = w.scratch.borrow_mut();
            let (n, from) =
                match sock.try_recv_from(&mut buf[PEER_HEADROOM..PEER_HEADROOM + MAX_DATAGRAM]) {
                    Ok(r) => r,
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                    Err(_) => continue,
                };
            let now = Instant::now();
            let deliver =
                w.core
                    .borrow_mut()
                    .handle_peer(now, relay, from, &mut buf, PEER_HEADROOM, n);
            if let Some(d) = deliver {
                w.send_to_client(&d.to, &buf[d.start..d.end]);
            }
        }
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
    }
}

async fn accept_loop(w: Rc<Worker>, listener: TcpListener, local: SocketAddr) {
    loop {
        match listener.accept().await {
            Ok((stream, peer)) => {
                tokio::task::spawn_local(connection(w.clone(), stream, peer, local));
            }
            Err(e) => {
                // Out of descriptors and the like: back off instead of spinning.
                tracing::warn!("accept on {local}: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

async fn connection(w: Rc<Worker>, stream: TcpStream, peer: SocketAddr, local: SocketAddr) {
    let _ = stream.set_nodelay(true);
    let tuple = FiveTuple {
        transport: Transport::Tcp,
        client: peer,
        server: local,
    };
    let (mut rd, mut wr) = stream.into_split();
    let out = Rc::new(TcpOut {
        queue: RefCell::new(Vec::new()),
        ready: Notify::new(),
    });
    w.tcp_out.borrow_mut().insert(tuple, out.clone());
    let writer_out = out.clone();
    let writer = tokio::task::spawn_local(async move {
        let mut sending = Vec::new();
        loop {
            writer_out.ready.notified().await;
            std::mem::swap(&mut sending, &mut *writer_out.queue.borrow_mut());
            if !sending.is_empty() && wr.write_all(&sending).await.is_err() {
                return;
            }
            sending.clear();
        }
    });
    let mut framer = Framer::new();
    'read: loop {
        let n = match rd.read(framer.unfilled()).await {
            Ok(0) | Err(_) => {
                framer.filled(0);
                break;
            }
            Ok(n) => n,
        };
        framer.filled(n);
        let now = Instant::now();
        loop {
            match framer.next_frame() {
                Ok(Some(frame)) => {
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
    }
    w.core.borrow_mut().handle_client_closed(tuple);
    w.drain(Instant::now());
    w.tcp_out.borrow_mut().remove(&tuple);
    // Let queued answers go out before the connection closes.
    if out.queue.borrow().is_empty() {
        writer.abort();
    } else {
        out.ready.notify_one();
        tokio::task::spawn_local(async move {
            let _ = tokio::time::timeout(Duration::from_secs(2), writer).await;
        });
    }
}
