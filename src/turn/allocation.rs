//! One allocation's state: relayed addresses, permissions, channels,
//! bandwidth buckets and counters. Tables are small vectors scanned
//! linearly: they are bounded by configuration and stay in one cache line
//! or two, which beats hashing for the sizes allowed.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use super::attributes::AddressFamily;
use super::{FiveTuple, RelayId};
use crate::auth::Signer;
use crate::stun::TransactionId;

/// RFC 8656 §9: "a permission ... lifetime of 300 seconds (= 5 minutes)".
pub const PERMISSION_LIFETIME: Duration = Duration::from_secs(300);
/// RFC 8656 §12: "a channel binding lasts for 10 minutes unless refreshed".
pub const CHANNEL_LIFETIME: Duration = Duration::from_secs(600);
/// RFC 8656 §12: after a binding expires, the number and the peer "cannot be
/// bound to a different transport address or channel number (respectively)
/// for 5 minutes".
pub const CHANNEL_COOLDOWN: Duration = Duration::from_secs(300);

/// A permission (RFC 8656 §9): the peer IP whose traffic the relay lets
/// through, ports ignored.
#[derive(Debug, Clone, Copy)]
pub struct Permission {
    /// The peer's IP address.
    pub ip: IpAddr,
    /// When it lapses unless a CreatePermission or ChannelBind refreshes it.
    pub expires: Instant,
}

/// A channel binding (RFC 8656 §12): a channel number tied to one peer
/// transport address.
#[derive(Debug, Clone, Copy)]
pub struct Channel {
    /// The channel number (0x4000 through 0x7FFF).
    pub number: u16,
    /// The peer the channel is bound to.
    pub peer: SocketAddr,
    /// When the binding lapses; it stays in the table, unusable, for
    /// [`CHANNEL_COOLDOWN`] after.
    pub expires: Instant,
}

/// A relayed transport address of the allocation (one per family).
#[derive(Debug, Clone, Copy)]
pub struct Relay {
    /// The shell's name for the relay socket.
    pub id: RelayId,
    /// The address the relay socket is bound to.
    pub local: SocketAddr,
    /// The address told to the client (the external address, if mapped).
    pub advertised: SocketAddr,
    /// Whether the shell has reported the socket open; the allocation
    /// answers its Allocate once all of its relays are.
    pub open: bool,
}

/// A token bucket in bytes for `max_bps`.
#[derive(Debug, Clone, Copy)]
pub struct Bandwidth {
    tokens: f64,
    last: Instant,
}

impl Bandwidth {
    /// A full bucket: one second's worth of `bytes_per_sec`.
    pub fn new(now: Instant, bytes_per_sec: f64) -> Self {
        Bandwidth {
            tokens: bytes_per_sec,
            last: now,
        }
    }

    /// Spends `len` bytes if the bucket (one second deep) holds them.
    pub fn spend(&mut self, now: Instant, bytes_per_sec: f64, len: usize) -> bool {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens = (self.tokens + elapsed * bytes_per_sec).min(bytes_per_sec);
        self.last = now;
        if self.tokens >= len as f64 {
            self.tokens -= len as f64;
            true
        } else {
            false
        }
    }
}

/// Traffic counters, one set per direction.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    /// Packets relayed.
    pub packets: u64,
    /// Payload bytes relayed (application data, without framing).
    pub bytes: u64,
}

impl std::ops::AddAssign for Counters {
    fn add_assign(&mut self, c: Counters) {
        self.packets += c.packets;
        self.bytes += c.bytes;
    }
}

/// One allocation (RFC 8656 §2.2), named by its 5-tuple.
#[derive(Debug)]
pub struct Allocation {
    /// Distinguishes this allocation from earlier ones in the same slot, so
    /// stale timer entries, connections and ids are recognised and ignored.
    pub generation: u32,
    /// The client's 5-tuple: the allocation's key.
    pub tuple: FiveTuple,
    /// Who owns it: later requests on the tuple must authenticate as this
    /// user (OAuth clients excepted) or get 441.
    pub username: String,
    /// The realm it was allocated in (its owner's).
    pub realm: std::sync::Arc<str>,
    /// How to sign its responses: from the latest authenticated request.
    pub signer: Signer,
    /// When the Allocate was accepted.
    pub created: Instant,
    /// When it ends unless refreshed.
    pub expires: Instant,
    /// The lifetime last granted (by Allocate or Refresh).
    pub lifetime: Duration,
    /// When this allocation's one live timer entry falls due (F2: a
    /// Refresh flood must not grow the timer heap, so extending the
    /// lifetime pushes nothing; the entry re-arms itself when it pops).
    pub armed: Option<Instant>,
    /// The RESERVATION-TOKEN of the port held next to this one (EVEN-PORT
    /// with R): released with the allocation if nobody claimed it.
    pub reservation: Option<[u8; 8]>,
    /// At most one IPv4 and one IPv6 relay.
    pub relays: Vec<Relay>,
    /// Its permissions, at most `max_permissions`.
    pub permissions: Vec<Permission>,
    /// Its channel bindings, at most `max_channels`, including those in
    /// their cool-down.
    pub channels: Vec<Channel>,
    /// The Allocate carried DONT-FRAGMENT (RFC 8656 §18.9): relay sockets
    /// are opened with DF set.
    pub dont_fragment: bool,
    /// An RFC 6062 TCP allocation: its relay is a listening TCP socket.
    pub tcp: bool,
    /// Its peer connections: (CONNECTION-ID, peer address).
    pub tcp_peers: Vec<(super::ConnId, std::net::SocketAddr)>,
    /// Connect's rate limit (one token per Connect).
    pub connects: Bandwidth,
    /// Traffic relayed from the client to peers.
    pub to_peer: Counters,
    /// Traffic relayed from peers to the client.
    pub to_client: Counters,
    /// The bandwidth budget from the client to peers.
    pub bw_to_peer: Bandwidth,
    /// The bandwidth budget from peers to the client.
    pub bw_to_client: Bandwidth,
    /// Bytes per second per direction; 0 = unlimited.
    pub bps: f64,
    /// How the allocation's owner authenticated.
    pub origin: crate::auth::Origin,
    /// The same, as usage records name it.
    pub credential: super::CredentialKind,
    /// Distinct peer IPs given permission so far, up to
    /// [`super::MAX_COUNTED_PEERS`] (usage records count them).
    pub peers: Vec<IpAddr>,
    /// Set while relay sockets are being opened.
    pub pending: Option<PendingAllocate>,
}

impl Allocation {
    /// Whether its relay sockets are all open and the Allocate answered;
    /// until then it relays nothing and answers no other request.
    pub fn is_active(&self) -> bool {
        self.pending.is_none()
    }

    /// Whether it has a relay of `ip`'s address family.
    pub fn has_family_of(&self, ip: IpAddr) -> bool {
        self.relays
            .iter()
            .any(|r| r.local.is_ipv4() == ip.is_ipv4())
    }

    /// Its relay of `ip`'s address family, the one that talks to that peer.
    pub fn relay_of_family(&self, ip: IpAddr) -> Option<&Relay> {
        self.relays
            .iter()
            .find(|r| r.local.is_ipv4() == ip.is_ipv4())
    }

    /// Whether a live permission lets `ip`'s traffic through.
    pub fn has_permission(&self, now: Instant, ip: IpAddr) -> bool {
        self.permissions
            .iter()
            .any(|p| p.ip == ip && p.expires > now)
    }

    /// Drops expired permissions and channels past their cool-down.
    pub fn sweep(&mut self, now: Instant) {
        self.permissions.retain(|p| p.expires > now);
        self.channels.retain(|c| c.expires + CHANNEL_COOLDOWN > now);
    }

    /// Installs or refreshes a permission; false if the table is full.
    pub fn permit(&mut self, now: Instant, ip: IpAddr, max: usize) -> bool {
        if let Some(p) = self.permissions.iter_mut().find(|p| p.ip == ip) {
            p.expires = now + PERMISSION_LIFETIME;
            return true;
        }
        if self.permissions.len() >= max {
            return false;
        }
        if self.peers.len() < super::MAX_COUNTED_PEERS && !self.peers.contains(&ip) {
            self.peers.push(ip);
        }
        self.permissions.push(Permission {
            ip,
            expires: now + PERMISSION_LIFETIME,
        });
        true
    }

    /// A live channel by number (the client→peer path).
    pub fn channel(&self, now: Instant, number: u16) -> Option<&Channel> {
        self.channels
            .iter()
            .find(|c| c.number == number && c.expires > now)
    }

    /// A live channel by peer (the peer→client path).
    pub fn channel_to(&self, now: Instant, peer: SocketAddr) -> Option<&Channel> {
        self.channels
            .iter()
            .find(|c| c.peer == peer && c.expires > now)
    }
}

/// What an Allocate waits for while its relay sockets open.
#[derive(Debug, Clone)]
pub struct PendingAllocate {
    // Fields are the core's: `pub(crate)` for the server rooms that fill them.
    pub(crate) txid: TransactionId,
    pub(crate) fingerprint: bool,
    pub(crate) even_port: bool,
    /// Token to return for the port held next to this one.
    pub(crate) token: Option<[u8; 8]>,
    /// The family that could not be served in a dual allocation.
    pub(crate) family_error: Option<AddressFamily>,
    pub(crate) draft_code_points: bool,
    pub(crate) attempts: u8,
}
