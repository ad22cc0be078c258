//! DTLS clients on the worker's UDP listeners: the cookie gate, the
//! sessions by listener and client address, and their timers. Records
//! ride the same batches as plain UDP; the plaintext goes to the core as
//! from any other client.

use std::cell::RefCell;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::Worker;
use crate::net::dtls::{is_client_hello, is_dtls, Dtls, Gate, Session};
use crate::net::limits::ConnLimits;
use crate::turn::{FiveTuple, Server, Transport};

/// How often DTLS retransmission timers and deadlines are looked at.
const DTLS_TICK: Duration = Duration::from_millis(100);

/// DTLS of one worker: its cookie gate and its clients' sessions, by
/// listener index and client address.
pub(super) struct DtlsSide {
    gate: RefCell<Gate>,
    sessions: RefCell<HashMap<(usize, SocketAddr), Session>>,
}

impl DtlsSide {
    pub(super) fn new(dtls: Arc<Dtls>, limits: Arc<ConnLimits>) -> DtlsSide {
        DtlsSide {
            gate: RefCell::new(Gate::new(dtls, limits)),
            sessions: RefCell::new(HashMap::new()),
        }
    }
}

impl Worker {
    /// Encrypts `data` for the DTLS client of `to` and queues the records.
    pub(super) fn send_dtls(&self, to: &FiveTuple, data: &[u8]) {
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

    /// Runs `f` on the DTLS session of `tuple`, if there is one.
    pub(super) fn with_dtls_session(&self, tuple: &FiveTuple, f: impl FnOnce(&mut Session)) {
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

    /// Takes a datagram that belongs to DTLS: one from a client with a
    /// session, or a DTLS record from anyone else (the cookie gate).
    /// Returns false for plain STUN and ChannelData.
    pub(super) fn dtls_datagram(
        &self,
        core: &mut Server,
        i: usize,
        local: SocketAddr,
        from: SocketAddr,
        data: &[u8],
        now: Instant,
    ) -> bool {
        let Some(d) = &self.dtls else { return false };
        // Everything a DTLS client sends is a DTLS record, so plain STUN
        // and ChannelData skip the session table: relaying pays nothing.
        if !is_dtls(data) {
            return false;
        }
        let key = (i, from);
        let mut out = Vec::new();
        let mut plain = Vec::new();
        let mut ended = false;
        // Set once, when the handshake completes: it may pick a realm.
        let mut server_name = None;
        let restarted;
        {
            let mut sessions = d.sessions.borrow_mut();
            let session = sessions.get_mut(&key);
            // A ClientHello on an established session is a client that
            // restarted on the same port: it must pass the gate again.
            let restart = session
                .as_ref()
                .is_some_and(|s| s.is_established() && is_client_hello(data));
            restarted = restart;
            match session {
                Some(s) if !restart => {
                    let was_established = s.is_established();
                    ended = s.input(now, data, &mut plain).is_err();
                    if !was_established && s.is_established() {
                        server_name = s.server_name().map(str::to_string);
                    }
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
        if restarted {
            core.forget_stream(&tuple);
        }
        if let Some(name) = &server_name {
            core.handle_server_name(tuple, name);
        }
        for m in &plain {
            if let Some(f) = core.handle_client(now, tuple, m) {
                self.forward(f);
            }
        }
        if ended {
            core.handle_client_closed(now, tuple);
        }
        true
    }
}

/// Fires DTLS retransmissions and drops sessions past their handshake
/// deadline or idle limit (with their allocations).
pub(super) async fn dtls_tick(w: Rc<Worker>) {
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
        // Every tick steps, even with nothing ended: the flush sends the
        // retransmissions queued above.
        w.step(now, |core| {
            for (i, client) in ended.drain(..) {
                let tuple = FiveTuple {
                    transport: Transport::Dtls,
                    client,
                    server: w.udp[i].0,
                };
                core.handle_client_closed(now, tuple);
            }
        });
    }
}
