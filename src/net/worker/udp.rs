//! The UDP engine: listener and relay sockets on the worker's epoll set,
//! read a batch at a time, and the batches that leave at the end of each
//! round. RFC 5780 Binding requests on its four sockets are answered here
//! too, without the TURN core.

use std::cell::RefCell;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Instant;

use super::{NatSetup, Worker};
use crate::nat::{Handled, Service};
use crate::net::batch;
use crate::turn::{FiveTuple, Forward, RelayId, Server, Shared, Transport};

/// Epoll tokens at or above this are relays (token - base = RelayId).
pub(super) const RELAY_TOKEN: u64 = 1 << 32;

/// RFC 5780 on one worker: which listeners are its sockets, and the
/// service (shared budget and all) that answers there.
pub(super) struct NatSide {
    /// Per listener index: one of the four RFC 5780 sockets.
    serves: Vec<bool>,
    service: Service,
    out: RefCell<Vec<u8>>,
}

impl NatSide {
    /// The RFC 5780 side of a worker whose listeners are `sockets`.
    pub(super) fn new(
        n: NatSetup,
        sockets: &[(SocketAddr, std::net::UdpSocket)],
        shared: Arc<Shared>,
    ) -> NatSide {
        let service = Service::new(
            n.addresses,
            n.software,
            shared.config().stun_backward_compatibility,
            shared.reply_budget.clone(),
        );
        let mine = service.addresses().local_addresses();
        NatSide {
            serves: sockets.iter().map(|(a, _)| mine.contains(a)).collect(),
            out: RefCell::new(vec![0u8; service.buffer_len()]),
            service,
        }
    }
}

impl Worker {
    /// Queues client data for its relay socket.
    pub(super) fn forward(&self, f: Forward<'_>) {
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
    pub(super) fn queue_udp(&self, i: usize, to: SocketAddr, data: &[u8]) {
        let mut sends = self.sends.borrow_mut();
        sends[i].push(to, data);
        if sends[i].len() >= batch::BATCH {
            sends[i].flush(self.udp[i].1.as_raw_fd());
        }
    }

    /// Sends the datagrams queued for peers and for UDP clients.
    pub(super) fn flush(&self) {
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

    /// Reads one batch from listener `i`.
    fn listener_ready(&self, core: &mut Server, i: usize, now: Instant) {
        let Some((local, sock)) = self.udp.get(i) else {
            return;
        };
        let mut rb = self.recv.borrow_mut();
        let Ok(n) = rb.recv(sock.as_raw_fd()) else {
            return;
        };
        // Client lists come before DTLS, RFC 5780 and the core: a refused
        // client gets nothing. Read once per batch; empty lists are one
        // branch per datagram.
        let clients = self.shared.config().clients.clone();
        for k in 0..n {
            let (from, slot, at, len) = rb.get_mut(k);
            let Some(from) = from else { continue };
            if !clients.admits(from.ip()) {
                continue;
            }
            let data = &slot[at..at + len];
            if self.dtls_datagram(core, i, *local, from, data, now)
                || self.rfc5780_binding(i, *local, from, data, now)
            {
                continue;
            }
            let tuple = FiveTuple {
                transport: Transport::Udp,
                client: from,
                server: *local,
            };
            if let Some(f) = core.handle_client(now, tuple, data) {
                self.forward(f);
            }
        }
    }

    /// Hands a datagram on an RFC 5780 socket to the RFC 5780 service;
    /// its answer may leave from another of the four. False: not its own.
    fn rfc5780_binding(
        &self,
        i: usize,
        local: SocketAddr,
        from: SocketAddr,
        data: &[u8],
        now: Instant,
    ) -> bool {
        let Some(n) = &self.nat else { return false };
        if !n.serves.get(i).copied().unwrap_or(false) {
            return false;
        }
        let mut out = n.out.borrow_mut();
        match n.service.handle(now, local, from, data, &mut out) {
            Handled::NotMine => false,
            Handled::Dropped => true,
            Handled::Reply(r) => {
                if let Some(j) = self.udp.iter().position(|(a, _)| *a == r.from) {
                    self.queue_udp(j, r.to, &out[..r.len]);
                }
                true
            }
        }
    }

    /// Reads one batch from a relay socket.
    fn relay_ready(&self, core: &mut Server, relay: RelayId, now: Instant) {
        let fd = match self.relays.borrow().get(relay.0 as usize) {
            Some(Some(sock)) => sock.as_raw_fd(),
            _ => return,
        };
        let mut rb = self.recv.borrow_mut();
        let Ok(n) = rb.recv(fd) else { return };
        for k in 0..n {
            let (from, slot, at, len) = rb.get_mut(k);
            let Some(from) = from else { continue };
            if let Some(d) = core.handle_peer(now, relay, from, slot, at, len) {
                self.send_to_client(&d.to, &slot[d.start..d.end], true);
            }
        }
    }
}

/// Serves every ready UDP socket of the worker, round after round, until
/// the epoll set is quiet.
pub(super) async fn udp_engine(w: Rc<Worker>) {
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
            w.step(now, |core| {
                for ev in &events[..n] {
                    let token = ev.u64;
                    if token >= RELAY_TOKEN {
                        w.relay_ready(core, RelayId((token - RELAY_TOKEN) as u32), now);
                    } else {
                        w.listener_ready(core, token as usize, now);
                    }
                }
            });
        }
        guard.clear_ready();
    }
}
