//! TURN (RFC 8656, which folds in RFC 6156's IPv6), sans-IO.
//!
//! [`Server`] is one worker's state machine. Every input carries `now`;
//! control answers are pulled with [`Server::poll_transmit`], requests for
//! the shell (open or close a relay, connect a peer, close a stream) with
//! [`Server::poll_request`], and what happened (allocations created,
//! refreshed, deleted with their counters) with [`Server::poll_event`]. The
//! shell answers requests with typed results ([`Server::relay_opened`],
//! [`Server::peer_connected`]). The data path returns its decision directly
//! and borrows the packet, so relaying copies nothing and allocates nothing.
//!
//! Where things are:
//! * `server/`: the state machine, one room per idea: `mod.rs` (inputs and
//!   request dispatch), `respond.rs` (answers and their cache),
//!   `allocate.rs` (Allocate's checks), `lifecycle.rs` (relay sockets opened,
//!   allocation ended), `refresh.rs`, `permissions.rs` (CreatePermission,
//!   ChannelBind), `relay.rs` (the data path: ChannelData and Send to peers,
//!   peer datagrams back to clients), `timers.rs`, `ids.rs`, `stats.rs`.
//! * `edges.rs`: the boundary's vocabulary: [`Request`], [`Event`], the
//!   typed answers ([`RelayError`], [`ConnectError`]) and ids ([`ConnId`]).
//! * [`tcp_relay`]: RFC 6062 Connect, ConnectionBind, ConnectionAttempt,
//!   their deadlines, and (`tcp_relay/table.rs`) the one connection table.
//! * [`error`]: the error codes, named, with their RFC sentence.
//! * `attributes.rs`: TURN attributes decoded as typed values.
//! * [`allocation`]: one allocation's permissions, channels and counters.
//! * `config.rs`: [`TurnConfig`] and the lifetimes.
//! * `drain.rs`: a draining node's state and alternates ([`Drain`]);
//!   `server/redirect.rs` turns new Allocates away with it.
//! * `shared.rs`: what all workers share ([`Shared`], reservations).
//! * [`policy`]: which peers may be reached; [`clients`]: which clients
//!   are served at all.
//! * [`ports`]: the relay port range.
//! * [`quota`]: allocations per user and in total.
//! * `transactions.rs`: answers kept for retransmitted requests.
//! * `tests/`: the core's tests, one room per idea; `tests/mod.rs` is the
//!   harness.

#![warn(missing_docs)]

pub mod allocation;
mod attributes;
pub mod clients;
mod config;
mod drain;
mod edges;
pub mod error;
pub mod policy;
pub mod ports;
pub mod quota;
mod server;
mod shared;
pub mod tcp_relay;
mod transactions;

#[cfg(test)]
mod tests;

use std::net::SocketAddr;

pub use allocation::PendingAllocate;
pub use config::{TurnConfig, DEFAULT_LIFETIME, MAX_LIFETIME};
pub use drain::{Alternate, Drain};
pub use edges::{
    AllocationEnd, ConnId, ConnectError, CredentialKind, EndReason, Event, Refusal, RelayError,
    Request, SessionGone, SessionId, MAX_COUNTED_PEERS,
};
pub use server::{Server, SessionView, Stats, PEER_HEADROOM, PEER_TAILROOM};
pub use shared::{Shared, SharedKeys};

/// Transport between client and server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Transport {
    /// Plain UDP: one message per datagram.
    Udp,
    /// Plain TCP: a byte stream.
    Tcp,
    /// TLS over TCP: a byte stream, like TCP.
    Tls,
    /// DTLS over UDP: datagrams, like UDP.
    Dtls,
}

impl Transport {
    /// Whether messages arrive as a byte stream (framed, padded ChannelData).
    pub fn is_stream(self) -> bool {
        matches!(self, Transport::Tcp | Transport::Tls)
    }
}

impl std::fmt::Display for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Transport::Udp => "udp",
            Transport::Tcp => "tcp",
            Transport::Tls => "tls",
            Transport::Dtls => "dtls",
        })
    }
}

/// Client address, server address and transport: what names an allocation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FiveTuple {
    /// How the client reaches the server.
    pub transport: Transport,
    /// The client's address, as the server sees it (after any NAT).
    pub client: SocketAddr,
    /// The server address the client sent to.
    pub server: SocketAddr,
}

/// A relay socket, as the shell knows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RelayId(pub u32);

/// A control message for a client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    /// Where it goes: the client, from the server address it used.
    pub to: FiveTuple,
    /// The whole STUN message.
    pub data: Vec<u8>,
}

/// Client data to send from a relay socket to a peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Forward<'a> {
    /// The relay socket to send from.
    pub relay: RelayId,
    /// The peer to send to.
    pub peer: SocketAddr,
    /// The application data, borrowed from the client's packet.
    pub data: &'a [u8],
}

/// Peer data, framed in place for the client: send `buf[start..end]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Deliver {
    /// The client to send to.
    pub to: FiveTuple,
    /// Where the framed message begins in the buffer.
    pub start: usize,
    /// Where it ends (exclusive), padding included.
    pub end: usize,
}
