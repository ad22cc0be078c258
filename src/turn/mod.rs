//! TURN (RFC 8656, which folds in RFC 6156's IPv6), sans-IO.
//!
//! [`Server`] is one worker's state machine. Inputs carry `now`; control
//! answers are pulled with [`Server::poll_transmit`]; requests for the shell
//! (open or close a relay socket) and events with [`Server::poll_output`];
//! the shell answers a relay request with [`Server::relay_opened`]. The data
//! path returns its decision directly and borrows the packet, so relaying
//! copies nothing and allocates nothing.
//!
//! * [`allocation`]: one allocation's permissions, channels and counters.
//! * [`policy`]: which peers may be reached.
//! * [`ports`]: the relay port range.
//! * [`quota`]: allocations per user and in total.

pub mod allocation;
pub mod policy;
pub mod ports;
pub mod quota;
mod server;
pub mod tcp_relay;
mod transactions;

#[cfg(test)]
mod tests;

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

pub use server::{
    PendingAllocate, Server, SessionView, Shared, Stats, PEER_HEADROOM, PEER_TAILROOM,
};

/// RFC 8656 §3.2 (allocation lifetime): "the default lifetime is 10 minutes".
pub const DEFAULT_LIFETIME: Duration = Duration::from_secs(600);
/// The usual cap on requested lifetimes (coturn's and turn-proto's).
pub const MAX_LIFETIME: Duration = Duration::from_secs(3600);

/// Transport between client and server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Transport {
    Udp,
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
    pub transport: Transport,
    pub client: SocketAddr,
    pub server: SocketAddr,
}

/// A relay socket, as the shell knows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RelayId(pub u32);

/// A control message for a client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    pub to: FiveTuple,
    pub data: Vec<u8>,
}

/// What the shell must do, or should know.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// Bind a UDP socket to `addr` for relaying; answer with
    /// [`Server::relay_opened`].
    OpenRelay {
        relay: RelayId,
        addr: SocketAddr,
        dont_fragment: bool,
        /// A listening TCP socket (RFC 6062) instead of a UDP one.
        tcp: bool,
    },
    /// Open a TCP connection from `from` (the relayed address) to `peer`;
    /// answer with [`Server::peer_connected`].
    ConnectPeer {
        conn: u32,
        relay: RelayId,
        from: SocketAddr,
        peer: SocketAddr,
    },
    /// The client connection `tuple` is now the data connection of peer
    /// connection `conn`: send what is queued for it, then relay bytes.
    BindData {
        conn: u32,
        tuple: FiveTuple,
    },
    /// Close peer connection `conn` (and its data connection, if bound).
    ClosePeer {
        conn: u32,
    },
    /// Close the relay socket now.
    CloseRelay {
        relay: RelayId,
    },
    AllocationCreated {
        tuple: FiveTuple,
        username: String,
        relayed: Vec<SocketAddr>,
    },
    AllocationDeleted {
        tuple: FiveTuple,
        username: String,
    },
}

/// Client data to send from a relay socket to a peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Forward<'a> {
    pub relay: RelayId,
    pub peer: SocketAddr,
    pub data: &'a [u8],
}

/// Peer data, framed in place for the client: send `buf[start..end]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Deliver {
    pub to: FiveTuple,
    pub start: usize,
    pub end: usize,
}

/// Settings of the TURN core.
#[derive(Debug, Clone)]
pub struct TurnConfig {
    /// Addresses relay sockets bind to: at most one per family is used.
    pub relay_ips: Vec<IpAddr>,
    /// (relay IP, public IP): the public one is told to clients.
    pub external_ips: Vec<(IpAddr, IpAddr)>,
    pub default_lifetime: Duration,
    pub max_lifetime: Duration,
    pub max_permissions: usize,
    pub max_channels: usize,
    /// Bits per second per allocation and direction; 0 = unlimited.
    pub max_bps: u64,
    pub software: Option<String>,
    pub policy: policy::PeerPolicy,
    /// 401/438 answers per second per source address; 0 = no limit.
    pub auth_reply_rate: u32,
    /// Refuse Refresh with an expired REST username.
    pub strict_expiry: bool,
    /// Serve RFC 6062 TCP allocations.
    pub tcp_relay: bool,
    /// RFC 6062 peer connections per TCP allocation and per user.
    pub max_peer_connections: u32,
    pub max_peer_connections_per_user: u32,
    /// Answer RFC 3489 Binding requests (no magic cookie).
    pub stun_backward_compatibility: bool,
}

impl TurnConfig {
    /// The relay IP of a family, if any.
    pub fn relay_ip(&self, v4: bool) -> Option<IpAddr> {
        self.relay_ips.iter().copied().find(|ip| ip.is_ipv4() == v4)
    }

    /// What clients are told for a relay bound to `local`.
    pub fn advertised(&self, local: SocketAddr) -> SocketAddr {
        match self
            .external_ips
            .iter()
            .find(|(private, _)| *private == local.ip())
        {
            Some((_, public)) => SocketAddr::new(*public, local.port()),
            None => local,
        }
    }
}
