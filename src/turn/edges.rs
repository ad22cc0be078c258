//! The core's edges: what it asks of the shell ([`Request`], pulled with
//! `Server::poll_request`), what it tells the rest of the server
//! ([`Event`], pulled with `Server::poll_event`), and the typed answers and
//! ids that cross the boundary.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::allocation::Counters;
use super::tcp_relay::Held;
use super::{FiveTuple, RelayId};

/// An RFC 6062 connection, by its CONNECTION-ID (never zero, unique
/// across workers).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnId(pub u32);

/// An allocation as the admin API names it: its slot, and the generation
/// that tells it from a later allocation in the same slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SessionId {
    pub slot: u32,
    pub generation: u32,
}

/// `Server::end_session`: that allocation has ended already.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionGone;

/// Why the shell could not open a relay socket. Either way the core tries
/// another port, a bounded number of times.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RelayError {
    /// The port is taken outside our pool (another program).
    AddrInUse,
    Other,
}

impl From<&std::io::Error> for RelayError {
    fn from(e: &std::io::Error) -> Self {
        match e.kind() {
            std::io::ErrorKind::AddrInUse => RelayError::AddrInUse,
            _ => RelayError::Other,
        }
    }
}

/// Why a Connect's peer connection failed: the client gets 447 either way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectError {
    Refused,
    /// The kernel gave up (the core's own deadline is `CONNECT_TIMEOUT`).
    TimedOut,
    /// The socket could not be made (bind, options).
    Other,
}

impl From<&std::io::Error> for ConnectError {
    fn from(e: &std::io::Error) -> Self {
        match e.kind() {
            std::io::ErrorKind::ConnectionRefused => ConnectError::Refused,
            std::io::ErrorKind::TimedOut => ConnectError::TimedOut,
            _ => ConnectError::Other,
        }
    }
}

/// What the shell must do. Each variant is one action.
#[derive(Debug)]
pub enum Request {
    /// Bind a UDP socket to `addr` for relaying; answer with
    /// `Server::relay_opened`.
    OpenUdpRelay {
        relay: RelayId,
        addr: SocketAddr,
        dont_fragment: bool,
    },
    /// Listen on `addr` for peers of a TCP allocation (RFC 6062); answer
    /// with `Server::relay_opened`.
    ListenTcpRelay { relay: RelayId, addr: SocketAddr },
    /// Close the relay socket (or listener) now.
    CloseRelay { relay: RelayId },
    /// Open a TCP connection from `from` (the relayed address) to `peer`;
    /// answer with `Server::peer_connected`. The core times the attempt.
    ConnectPeer {
        conn: ConnId,
        relay: RelayId,
        from: SocketAddr,
        peer: SocketAddr,
    },
    /// The client connection `tuple` is now the data connection of peer
    /// connection `conn`: send what is queued for it, then relay bytes.
    BindData { conn: ConnId, tuple: FiveTuple },
    /// The core ended peer connection `conn`: close what the shell held
    /// for it (`held`, dropped, does it: sockets closed, tasks aborted).
    ClosePeer { conn: ConnId, held: Option<Held> },
    /// Close the client's stream once what is queued for it is sent (its
    /// allocation ended: RFC 8656 §3.1, they live and die together).
    CloseStream { tuple: FiveTuple },
}

/// Why an allocation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndReason {
    /// Its lifetime ran out.
    Expired,
    /// A Refresh with LIFETIME 0.
    Deleted,
    /// Ended through the admin API (the session was killed).
    Killed,
    /// The client's stream (TCP, TLS) or DTLS session closed.
    ClientClosed,
}

/// An allocation's whole life, as usage accounting needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllocationEnd {
    pub tuple: FiveTuple,
    pub username: String,
    pub realm: String,
    pub relayed: Vec<SocketAddr>,
    pub start: Instant,
    pub end: Instant,
    /// Relayed traffic, client to peer and peer to client.
    pub to_peer: Counters,
    pub to_client: Counters,
    pub reason: EndReason,
}

/// What happened, for logs, DTLS idling, usage accounting and the fleet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    AllocationCreated {
        tuple: FiveTuple,
        username: String,
        realm: String,
        relayed: Vec<SocketAddr>,
        lifetime: Duration,
        at: Instant,
    },
    /// A Refresh extended (or shortened) the lifetime.
    AllocationRefreshed {
        tuple: FiveTuple,
        username: String,
        lifetime: Duration,
        at: Instant,
    },
    /// Boxed: the record is large, the other events are not.
    AllocationDeleted(Box<AllocationEnd>),
}
