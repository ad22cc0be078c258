//! Drain (issue 15): a draining node takes no new allocations. The shell
//! sets the state ([`Drain`], on [`super::Shared`]) from the admin API or a
//! signal and keeps the alternates fresh from the node registry; the core
//! reads it at Allocate (`server/redirect.rs`). Existing allocations are not
//! touched: they refresh, permit and relay until they end.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard};

use super::Transport;

/// One place a redirected client may go: a `ready` node's listener.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Alternate {
    /// The transport the listener serves. A `turns:` URL serves TLS, and
    /// DTLS on the same port (as `tls_listen` does).
    pub transport: Transport,
    /// Its address: ALTERNATE-SERVER.
    pub addr: SocketAddr,
    /// Its DNS name, when the node advertises one: ALTERNATE-DOMAIN on
    /// (D)TLS, where the client checks the certificate against it.
    pub domain: Option<String>,
}

/// Whether this node drains, and where new allocations go meanwhile.
#[derive(Debug, Default)]
pub struct Drain {
    draining: AtomicBool,
    alternates: Mutex<Vec<Alternate>>,
    /// Spreads redirects over the matching alternates, in turn.
    next: AtomicUsize,
}

impl Drain {
    /// Starts (true) or ends (false) draining.
    pub fn set_draining(&self, on: bool) {
        self.draining.store(on, Ordering::Release);
    }

    /// Whether new allocations are turned away.
    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Acquire)
    }

    /// Replaces the alternates (the shell's view of the `ready` nodes).
    pub fn set_alternates(&self, alternates: Vec<Alternate>) {
        *self.lock() = alternates;
    }

    /// The alternates known now.
    pub fn alternates(&self) -> Vec<Alternate> {
        self.lock().clone()
    }

    /// An alternate for a client that reached us over `transport` at an
    /// address of the family `v4`: the same transport and family, taken
    /// in turn. DTLS clients go to a `turns:` listener (TLS and DTLS share
    /// the port).
    pub(crate) fn pick(&self, transport: Transport, v4: bool) -> Option<Alternate> {
        let want = match transport {
            Transport::Dtls => Transport::Tls,
            t => t,
        };
        let list = self.lock();
        let matching: Vec<&Alternate> = list
            .iter()
            .filter(|a| a.transport == want && a.addr.is_ipv4() == v4)
            .collect();
        if matching.is_empty() {
            return None;
        }
        let i = self.next.fetch_add(1, Ordering::Relaxed) % matching.len();
        Some(matching[i].clone())
    }

    fn lock(&self) -> MutexGuard<'_, Vec<Alternate>> {
        self.alternates.lock().unwrap_or_else(|e| e.into_inner())
    }
}
