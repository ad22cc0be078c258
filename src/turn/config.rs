//! Settings of the TURN core, and the lifetimes RFC 8656 names.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use super::policy;

/// RFC 8656 §3.2 (allocation lifetime): "the default lifetime is 10 minutes".
pub const DEFAULT_LIFETIME: Duration = Duration::from_secs(600);
/// The usual cap on requested lifetimes (coturn's and turn-proto's).
pub const MAX_LIFETIME: Duration = Duration::from_secs(3600);

/// Settings of the TURN core.
#[derive(Debug, Clone)]
pub struct TurnConfig {
    /// Addresses relay sockets bind to: at most one per family is used.
    pub relay_ips: Vec<IpAddr>,
    /// (relay IP, public IP): the public one is told to clients.
    pub external_ips: Vec<(IpAddr, IpAddr)>,
    /// The lifetime granted when the client asks for none, and the floor
    /// for lifetimes asked (RFC 8656 §7.2).
    pub default_lifetime: Duration,
    /// The cap on lifetimes asked.
    pub max_lifetime: Duration,
    /// Permissions per allocation; beyond, 508 (Insufficient Capacity).
    pub max_permissions: usize,
    /// Channel bindings per allocation, those cooling down included;
    /// beyond, 508 (Insufficient Capacity).
    pub max_channels: usize,
    /// Bits per second per allocation and direction; 0 = unlimited.
    pub max_bps: u64,
    /// SOFTWARE (RFC 8489 §14.14) added to every answer; `None`: none.
    pub software: Option<String>,
    /// Which peers may be reached; others get 403 (Forbidden).
    pub policy: policy::PeerPolicy,
    /// Which clients are answered at all (the shell asks before any
    /// input reaches the core).
    pub clients: super::clients::ClientList,
    /// 401/438 answers per second per source address; 0 = no limit.
    pub auth_reply_rate: u32,
    /// Refuse Refresh with an expired REST username.
    pub strict_expiry: bool,
    /// Serve RFC 6062 TCP allocations.
    pub tcp_relay: bool,
    /// RFC 6062 peer connections per TCP allocation, pending Connects
    /// included.
    pub max_peer_connections: u32,
    /// RFC 6062 peer connections per user, across workers.
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
