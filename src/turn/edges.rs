//! The core's edges: what it asks of the shell ([`Request`], pulled with
//! `Server::poll_request`), what it tells the rest of the server
//! ([`Event`], pulled with `Server::poll_event`), and the typed answers and
//! ids that cross the boundary.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::allocation::Counters;
use super::quota::{FleetLimits, QuotaKey};
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
    /// The allocation's slot in its worker's table.
    pub slot: u32,
    /// The allocation's generation, so a reused slot is not mistaken for it.
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
    /// Any other failure to bind.
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
    /// The peer refused the connection.
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
        /// The name the core uses for the socket from now on.
        relay: RelayId,
        /// The address (relay IP and port from the pool) to bind to.
        addr: SocketAddr,
        /// Set DF on what the socket sends (RFC 8656 §18.9).
        dont_fragment: bool,
    },
    /// Listen on `addr` for peers of a TCP allocation (RFC 6062); answer
    /// with `Server::relay_opened`.
    ListenTcpRelay {
        /// The name the core uses for the listener from now on.
        relay: RelayId,
        /// The address (relay IP and port from the pool) to listen on.
        addr: SocketAddr,
    },
    /// Close the relay socket (or listener) now.
    CloseRelay {
        /// The socket or listener to close.
        relay: RelayId,
    },
    /// Open a TCP connection from `from` (the relayed address) to `peer`;
    /// answer with `Server::peer_connected`. The core times the attempt.
    ConnectPeer {
        /// The CONNECTION-ID the connection will have.
        conn: ConnId,
        /// The allocation's relay listener.
        relay: RelayId,
        /// The address the relay is bound to, to connect from.
        from: SocketAddr,
        /// The peer to connect to.
        peer: SocketAddr,
    },
    /// The client connection `tuple` is now the data connection of peer
    /// connection `conn`: send what is queued for it, then relay bytes.
    BindData {
        /// The peer connection.
        conn: ConnId,
        /// The client connection that sent the ConnectionBind.
        tuple: FiveTuple,
    },
    /// The core ended peer connection `conn`: close what the shell held
    /// for it (`held`, dropped, does it: sockets closed, tasks aborted).
    ClosePeer {
        /// The peer connection that ended.
        conn: ConnId,
        /// What the shell kept for it in the connection table, if anything.
        held: Option<Held>,
    },
    /// Close the client's stream once what is queued for it is sent (its
    /// allocation ended: RFC 8656 §3.1, they live and die together).
    CloseStream {
        /// The client's stream.
        tuple: FiveTuple,
    },
    /// Count this allocation against the fleet's quotas (it passed the
    /// local count); answer with `Server::quota_answered`, always, within
    /// a bounded time. Until then the allocation stays pending.
    ReserveQuota {
        /// The allocation, as the answer names it.
        key: QuotaKey,
        /// The owner.
        user: String,
        /// The server's realm.
        realm: String,
        /// The limits that apply (0 = unlimited).
        limits: FleetLimits,
    },
    /// The allocation `key` ended (or was refused): give back its place.
    /// Never answered.
    ReleaseQuota {
        /// The allocation named in its `ReserveQuota`.
        key: QuotaKey,
    },
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
    /// The node stopped at the end of a drain.
    Drained,
    /// The node stopped (a signal, or the admin's stop).
    Shutdown,
    /// Its owner's name was revoked (a REST username, a user, an OAuth
    /// kid).
    Revoked,
}

impl EndReason {
    /// The name usage records and webhooks give it.
    pub fn as_str(self) -> &'static str {
        match self {
            EndReason::Expired => "expired",
            EndReason::Deleted => "deleted",
            EndReason::Killed => "killed",
            EndReason::ClientClosed => "closed",
            EndReason::Drained => "drained",
            EndReason::Shutdown => "shutdown",
            EndReason::Revoked => "revoked",
        }
    }
}

/// How an allocation's owner authenticated, as usage records name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CredentialKind {
    /// A long-term user from the configuration.
    Static,
    /// A long-term user from the store.
    Stored,
    /// A REST (time-limited) username.
    Rest,
    /// An OAuth access token.
    OAuth,
}

impl CredentialKind {
    /// The name usage records give it.
    pub fn as_str(self) -> &'static str {
        match self {
            CredentialKind::Static => "static",
            CredentialKind::Stored => "stored",
            CredentialKind::Rest => "rest",
            CredentialKind::OAuth => "oauth",
        }
    }
}

/// Why an authenticated Allocate was refused by quota or policy (its
/// malformed requests are not counted here).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// 486: the user's quota.
    UserQuota,
    /// 486: the realm's quota.
    RealmQuota,
    /// 486: `total_quota`.
    TotalQuota,
    /// 486: `max_allocations_per_ip` for the client's address (or /64).
    SourceQuota,
    /// 486: a quota counted across the fleet.
    FleetQuota,
    /// 508: no relay port, or the fleet's count did not answer.
    Capacity,
    /// 300 or 403: the node drains.
    Draining,
}

impl Refusal {
    /// The name webhooks give it.
    pub fn as_str(self) -> &'static str {
        match self {
            Refusal::UserQuota => "user_quota",
            Refusal::RealmQuota => "realm_quota",
            Refusal::TotalQuota => "total_quota",
            Refusal::SourceQuota => "source_quota",
            Refusal::FleetQuota => "fleet_quota",
            Refusal::Capacity => "capacity",
            Refusal::Draining => "draining",
        }
    }
}

/// Distinct peer addresses an allocation counts at most (its usage
/// record's `peers`): enough for any call, bounded for a scanner.
pub const MAX_COUNTED_PEERS: usize = 256;

/// An allocation's whole life, as usage accounting needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllocationEnd {
    /// The allocation, as the admin API (and interim records) named it.
    pub session: SessionId,
    /// The client's 5-tuple.
    pub tuple: FiveTuple,
    /// The owner.
    pub username: String,
    /// The server's realm.
    pub realm: String,
    /// How the owner authenticated.
    pub credential: CredentialKind,
    /// The relayed addresses told to the client.
    pub relayed: Vec<SocketAddr>,
    /// Distinct peer IPs given permission, up to [`MAX_COUNTED_PEERS`].
    pub peers: u32,
    /// When the Allocate was accepted.
    pub start: Instant,
    /// When it ended.
    pub end: Instant,
    /// Relayed traffic, client to peer.
    pub to_peer: Counters,
    /// Relayed traffic, peer to client.
    pub to_client: Counters,
    /// Why it ended.
    pub reason: EndReason,
}

/// What happened, for logs, DTLS idling, usage accounting and the fleet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// An allocation became active: its relays are open and the success
    /// answer to its Allocate is queued.
    AllocationCreated {
        /// The allocation, as the admin API names it.
        session: SessionId,
        /// The client's 5-tuple.
        tuple: FiveTuple,
        /// The owner.
        username: String,
        /// The server's realm.
        realm: String,
        /// How the owner authenticated.
        credential: CredentialKind,
        /// The relayed addresses told to the client.
        relayed: Vec<SocketAddr>,
        /// The lifetime granted.
        lifetime: Duration,
        /// When.
        at: Instant,
    },
    /// A Refresh extended (or shortened) the lifetime.
    AllocationRefreshed {
        /// The client's 5-tuple.
        tuple: FiveTuple,
        /// The owner.
        username: String,
        /// The lifetime granted, from `at`.
        lifetime: Duration,
        /// When.
        at: Instant,
    },
    /// Boxed: the record is large, the other events are not.
    AllocationDeleted(Box<AllocationEnd>),
    /// An authenticated Allocate was refused by quota or policy.
    AllocationRefused {
        /// The client's 5-tuple.
        tuple: FiveTuple,
        /// Who asked.
        username: String,
        /// The error code answered.
        code: u16,
        /// Which limit or policy.
        reason: Refusal,
        /// When.
        at: Instant,
    },
}
