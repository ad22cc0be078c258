//! Peer address policy (security checklist §2 and §3.6): which peers an
//! authenticated client may open a permission to, bind a channel to, or
//! send to.
//!
//! Addresses are canonicalised first: every IPv6 form that embeds an IPv4
//! address (IPv4-mapped, IPv4-compatible, 6to4, NAT64 well-known and
//! local-use prefixes) is judged as that IPv4 address, as coturn's
//! `ioa_addr_get_embedded_ipv4` does. Then, in order:
//! 1. the never-set (unspecified, Teredo, 6to4, link-local and cloud
//!    metadata addresses, and the server's own addresses on a listener
//!    port: the TURN loop) is refused whatever the options;
//! 2. loopback is opened by `allow_loopback_peers` only, never by an
//!    allow list;
//! 3. `allowed_peer_ip` ranges, matched on the canonical address only (so
//!    `::/0` cannot open `::ffff:127.0.0.1`), are opened;
//! 4. `denied_peer_ip` ranges and the default deny list are refused;
//! 5. everything else is allowed.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// An inclusive address range of one family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpRange {
    v6: bool,
    start: u128,
    end: u128,
}

/// A range could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not an IP, IP/PREFIX or IP-IP range")]
pub struct RangeParseError(pub String);

fn bits(ip: IpAddr) -> (bool, u128) {
    match ip {
        IpAddr::V4(v4) => (false, u32::from(v4) as u128),
        IpAddr::V6(v6) => (true, u128::from(v6)),
    }
}

impl IpRange {
    /// `a.b.c.d/len`, `a:b::/len`, a single address, or `FIRST-LAST`
    /// (coturn's form).
    pub fn parse(s: &str) -> Result<Self, RangeParseError> {
        let err = || RangeParseError(s.to_string());
        let s = s.trim();
        if let Some((first, last)) = s.split_once('-') {
            let (a, b): (IpAddr, IpAddr) = (
                first.trim().parse().map_err(|_| err())?,
                last.trim().parse().map_err(|_| err())?,
            );
            let ((fa, sa), (fb, sb)) = (bits(a), bits(b));
            if fa != fb || sa > sb {
                return Err(err());
            }
            return Ok(IpRange {
                v6: fa,
                start: sa,
                end: sb,
            });
        }
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p.parse::<u32>().map_err(|_| err())?)),
            None => (s, None),
        };
        let ip: IpAddr = addr.parse().map_err(|_| err())?;
        let (v6, b) = bits(ip);
        let width = if v6 { 128 } else { 32 };
        let prefix = prefix.unwrap_or(width);
        if prefix > width {
            return Err(err());
        }
        let host_bits = width - prefix;
        let mask: u128 = if host_bits == 128 {
            u128::MAX
        } else {
            (1u128 << host_bits) - 1
        };
        Ok(IpRange {
            v6,
            start: b & !mask,
            end: b | mask,
        })
    }

    /// Whether `ip` is in the range: same family, taken as written (callers
    /// canonicalise first where that matters).
    pub fn contains(&self, ip: IpAddr) -> bool {
        let (v6, b) = bits(ip);
        v6 == self.v6 && self.start <= b && b <= self.end
    }
}

fn ranges(list: &[&str]) -> Vec<IpRange> {
    list.iter()
        .map(|s| IpRange::parse(s).expect("built-in range"))
        .collect()
}

/// Never relayed to, whatever the options: unspecified, Teredo, 6to4
/// (tunnels that loop), and link-local with the cloud metadata services
/// in it (169.254.169.254, AWS's fd00:ec2::254): coturn denies link-local
/// before any allow list too.
const NEVER: &[&str] = &[
    "0.0.0.0/8",
    "::/128",
    "2001::/32",
    "2002::/16",
    "169.254.0.0/16",
    "fe80::/10",
    "fd00:ec2::254/128",
];

/// Loopback, opened only by `allow_loopback_peers`.
const LOOPBACK: &[&str] = &["127.0.0.0/8", "::1/128"];

/// The default deny list: eturnal's recommended list joined with Enable
/// Security's recommended coturn list.
const DEFAULT_DENIED: &[&str] = &[
    "10.0.0.0/8",
    "100.64.0.0/10",
    "169.254.0.0/16",
    "172.16.0.0/12",
    "192.0.0.0/24",
    "192.0.2.0/24",
    "192.31.196.0/24",
    "192.52.193.0/24",
    "192.88.99.0/24",
    "192.168.0.0/16",
    "192.175.48.0/24",
    "198.18.0.0/15",
    "198.51.100.0/24",
    "203.0.113.0/24",
    "224.0.0.0/4",
    "240.0.0.0/4",
    "64:ff9b:1::/48",
    "100::/64",
    "2001::/23",
    "2001:db8::/32",
    "2620:4f:8000::/48",
    "3fff::/20",
    "5f00::/16",
    "fc00::/7",
    "fe80::/10",
    "fec0::/10",
    "ff00::/8",
];

/// The IPv4 address an IPv6 address stands for, if it embeds one.
pub fn embedded_ipv4(v6: Ipv6Addr) -> Option<Ipv4Addr> {
    let s = v6.segments();
    let o = v6.octets();
    let last32 = Ipv4Addr::new(o[12], o[13], o[14], o[15]);
    // IPv4-mapped ::ffff:a.b.c.d
    if s[..5] == [0; 5] && s[5] == 0xffff {
        return Some(last32);
    }
    // IPv4-compatible ::a.b.c.d (deprecated), but not :: and ::1 themselves.
    if s[..6] == [0; 6] && u128::from(v6) > 1 {
        return Some(last32);
    }
    // NAT64 well-known prefix 64:ff9b::/96 (RFC 6052).
    if s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        return Some(last32);
    }
    // NAT64 local-use prefix 64:ff9b:1::/48 with a /96 layout.
    if s[..3] == [0x64, 0xff9b, 1] {
        return Some(last32);
    }
    // 6to4 2002:AABB:CCDD::/48 (RFC 3056).
    if s[0] == 0x2002 {
        return Some(Ipv4Addr::new(o[2], o[3], o[4], o[5]));
    }
    None
}

/// The address judged for policy.
pub fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => embedded_ipv4(v6).map(IpAddr::V4).unwrap_or(ip),
        v4 => v4,
    }
}

/// Why a peer was refused (for logs and metrics, never sent to the client).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Denied {
    /// In the never-set: unspecified, Teredo, 6to4, link-local, cloud
    /// metadata.
    Never,
    /// The server itself on a listener port (a TURN loop).
    OwnEndpoint,
    /// In `denied_peer_ip`.
    Configured,
    /// In the default deny list, or loopback not opened by
    /// `allow_loopback_peers`.
    Default,
}

/// The peer policy of one server.
#[derive(Debug, Clone)]
pub struct PeerPolicy {
    never: Vec<IpRange>,
    loopback: Vec<IpRange>,
    default_denied: Vec<IpRange>,
    allowed: Vec<IpRange>,
    denied: Vec<IpRange>,
    allow_loopback: bool,
    /// Listener endpoints; a peer equal to one would loop through us.
    own: Vec<SocketAddr>,
    /// The host's own addresses (every interface address when a listener
    /// is a wildcard, relay and external IPs): none of them is a peer on
    /// a listener port.
    own_ips: Vec<IpAddr>,
}

impl PeerPolicy {
    /// A policy from `allowed_peer_ip`, `denied_peer_ip`,
    /// `allow_loopback_peers` and the listener endpoints known so far; the
    /// never-set, loopback and default deny lists are built in.
    pub fn new(
        allowed: Vec<IpRange>,
        denied: Vec<IpRange>,
        allow_loopback: bool,
        own_endpoints: Vec<SocketAddr>,
    ) -> Self {
        PeerPolicy {
            never: ranges(NEVER),
            loopback: ranges(LOOPBACK),
            default_denied: ranges(DEFAULT_DENIED),
            allowed,
            denied,
            allow_loopback,
            own: own_endpoints,
            own_ips: Vec::new(),
        }
    }

    /// Adds addresses of this host: a peer at one of them on any listener
    /// port would be the server itself (F4: TURN loop through a wildcard
    /// listener, or through a relay or external IP).
    pub fn add_own_ips(&mut self, ips: impl IntoIterator<Item = IpAddr>) {
        for ip in ips {
            let ip = canonical(ip);
            if !self.own_ips.contains(&ip) {
                self.own_ips.push(ip);
            }
        }
    }

    fn is_own(&self, ip: IpAddr, port: u16) -> bool {
        self.own.iter().any(|e| {
            e.port() == port
                && (canonical(e.ip()) == ip
                    || self.own_ips.contains(&ip)
                    // A wildcard listener answers on every local address;
                    // loopback is the one we know for sure.
                    || (e.ip().is_unspecified() && ip.is_loopback()))
        })
    }

    /// Judges a peer transport address.
    pub fn check(&self, peer: SocketAddr) -> Result<(), Denied> {
        let raw = peer.ip();
        let ip = canonical(raw);
        if self.never.iter().any(|r| r.contains(raw) || r.contains(ip)) {
            return Err(Denied::Never);
        }
        if self.is_own(ip, peer.port()) {
            return Err(Denied::OwnEndpoint);
        }
        // Loopback is the host itself: only the explicit (and logged) flag
        // opens it, never a broad allow list such as `0.0.0.0/0`.
        if self.loopback.iter().any(|r| r.contains(ip)) {
            if self.allow_loopback && !self.denied.iter().any(|r| r.contains(ip)) {
                return Ok(());
            }
            return Err(Denied::Default);
        }
        // The canonical form only: `::/0` must not open an IPv4 address
        // written as IPv4-mapped or NAT64.
        if self.allowed.iter().any(|r| r.contains(ip)) {
            return Ok(());
        }
        if self
            .denied
            .iter()
            .any(|r| r.contains(ip) || r.contains(raw))
        {
            return Err(Denied::Configured);
        }
        if self
            .default_denied
            .iter()
            .any(|r| r.contains(ip) || r.contains(raw))
        {
            return Err(Denied::Default);
        }
        Ok(())
    }

    /// Whether [`PeerPolicy::check`] lets the peer through.
    pub fn allows(&self, peer: SocketAddr) -> bool {
        self.check(peer).is_ok()
    }
}

/// The key per-source limits count under: the address, or its /64 for
/// IPv6 (a host owns a whole /64); an IPv4-mapped address is its IPv4.
pub fn source_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let mut o = v6.octets();
                o[8..].fill(0);
                IpAddr::from(o)
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sa(s: &str) -> SocketAddr {
        let ip: IpAddr = s.parse().unwrap();
        SocketAddr::new(ip, 5000)
    }

    fn default_policy() -> PeerPolicy {
        PeerPolicy::new(
            vec![],
            vec![],
            false,
            vec!["127.0.0.1:3478".parse().unwrap()],
        )
    }

    /// Every default-denied form of the checklist and the issue.
    pub(super) const DENIED_BY_DEFAULT: &[&str] = &[
        "127.0.0.1",
        "0.0.0.0",
        "0.1.2.3",
        "10.0.0.1",
        "100.64.0.1",
        "169.254.169.254",
        "172.16.0.1",
        "192.0.0.1",
        "192.0.2.1",
        "192.88.99.1",
        "192.168.1.1",
        "198.18.0.1",
        "198.51.100.1",
        "203.0.113.1",
        "224.0.0.1",
        "239.255.255.250",
        "240.0.0.1",
        "255.255.255.255",
        "::",
        "::1",
        "::ffff:127.0.0.1",
        "::ffff:10.0.0.1",
        "::ffff:169.254.169.254",
        "::127.0.0.1",
        "::10.0.0.1",
        "64:ff9b::7f00:1",
        "64:ff9b::a00:1",
        "64:ff9b:1::a9fe:a9fe",
        "2002:7f00:1::1",
        "2002:0808:0808::1",
        "2001::1",
        "2001:0:4136:e378::1",
        "2001:db8::1",
        "100::1",
        "fc00::1",
        "fd12:3456::1",
        "fe80::1",
        "fec0::1",
        "ff02::1",
        "3fff::1",
        "5f00::1",
    ];

    #[test]
    fn default_policy_denies_every_listed_range_in_every_form() {
        let p = default_policy();
        for a in DENIED_BY_DEFAULT {
            assert!(!p.allows(sa(a)), "{a} should be denied");
        }
    }

    #[test]
    fn public_addresses_are_allowed() {
        let p = default_policy();
        for a in [
            "8.8.8.8",
            "1.1.1.1",
            "2606:4700:4700::1111",
            "::ffff:8.8.8.8",
            "64:ff9b::808:808",
        ] {
            assert!(p.allows(sa(a)), "{a} should be allowed");
        }
    }

    #[test]
    fn allow_loopback_opens_loopback_but_not_the_never_set_or_our_listener() {
        let p = PeerPolicy::new(
            vec![],
            vec![],
            true,
            vec!["127.0.0.1:3478".parse().unwrap()],
        );
        assert!(p.allows(sa("127.0.0.1")));
        assert!(p.allows(sa("::1")));
        assert!(p.allows(sa("::ffff:127.0.0.1")));
        assert!(!p.allows(sa("0.0.0.0")));
        assert!(!p.allows(sa("2002:7f00:1::1")));
        assert!(!p.allows(sa("10.0.0.1")));
        assert_eq!(
            p.check("127.0.0.1:3478".parse().unwrap()),
            Err(Denied::OwnEndpoint)
        );
        assert_eq!(
            p.check("[::ffff:127.0.0.1]:3478".parse().unwrap()),
            Err(Denied::OwnEndpoint)
        );
    }

    #[test]
    fn wildcard_listener_protects_its_port_on_loopback() {
        let p = PeerPolicy::new(vec![], vec![], true, vec!["0.0.0.0:3478".parse().unwrap()]);
        assert_eq!(
            p.check("127.0.0.1:3478".parse().unwrap()),
            Err(Denied::OwnEndpoint)
        );
        assert!(p.allows("127.0.0.1:3479".parse().unwrap()));
    }

    #[test]
    fn allowed_ranges_open_the_configurable_part_only() {
        let allowed = vec![
            IpRange::parse("10.0.0.0/8").unwrap(),
            IpRange::parse("0.0.0.0/0").unwrap(),
            IpRange::parse("2001::/16").unwrap(),
        ];
        let p = PeerPolicy::new(allowed, vec![], false, vec![]);
        assert!(p.allows(sa("10.1.2.3")));
        assert!(p.allows(sa("192.168.1.1")));
        assert!(!p.allows(sa("0.0.0.0")));
        assert!(!p.allows(sa("2001::1")));
        assert!(!p.allows(sa("2002:a00:1::1")));
    }

    #[test]
    fn allowing_everything_still_refuses_loopback_link_local_and_metadata() {
        let everything = || {
            vec![
                IpRange::parse("0.0.0.0/0").unwrap(),
                IpRange::parse("::/0").unwrap(),
            ]
        };
        let p = PeerPolicy::new(everything(), vec![], false, vec![]);
        for a in [
            "127.0.0.1",
            "127.1.2.3",
            "::1",
            "fe80::1",
            "::ffff:127.0.0.1",
            "::127.0.0.1",
            "64:ff9b::7f00:1",
            "169.254.169.254",
            "::ffff:169.254.169.254",
            "64:ff9b::a9fe:a9fe",
            "fd00:ec2::254",
        ] {
            assert!(!p.allows(sa(a)), "{a} must stay closed");
        }
        // What the allow list is for: private space the operator opened.
        for a in ["10.0.0.1", "::ffff:10.0.0.1", "fd12:3456::1", "8.8.8.8"] {
            assert!(p.allows(sa(a)), "{a} was opened");
        }
        // With the loopback flag, loopback opens; link-local never does.
        let p = PeerPolicy::new(everything(), vec![], true, vec![]);
        assert!(p.allows(sa("127.0.0.1")));
        assert!(p.allows(sa("::ffff:127.0.0.1")));
        assert_eq!(p.check(sa("fe80::1")), Err(Denied::Never));
        assert_eq!(p.check(sa("169.254.169.254")), Err(Denied::Never));
    }

    #[test]
    fn own_addresses_are_never_peers_on_a_listener_port_whatever_the_allow_list() {
        let mut p = PeerPolicy::new(
            vec![IpRange::parse("0.0.0.0/0").unwrap()],
            vec![],
            false,
            vec![
                "0.0.0.0:3478".parse().unwrap(),
                "[::]:5349".parse().unwrap(),
            ],
        );
        // Interface, relay and external addresses of this host.
        p.add_own_ips(["8.8.4.4".parse().unwrap(), "2001:db8::7".parse().unwrap()]);
        for a in ["8.8.4.4:3478", "8.8.4.4:5349", "[::ffff:8.8.4.4]:3478"] {
            assert_eq!(p.check(a.parse().unwrap()), Err(Denied::OwnEndpoint), "{a}");
        }
        // Other ports of the host (relay-to-relay) stay open, as documented.
        assert!(p.allows("8.8.4.4:49152".parse().unwrap()));
        assert!(p.allows("8.8.8.8:3478".parse().unwrap()));
    }

    #[test]
    fn denied_ranges_close_public_space() {
        let p = PeerPolicy::new(
            vec![],
            vec![IpRange::parse("8.8.8.0-8.8.8.255").unwrap()],
            false,
            vec![],
        );
        assert_eq!(p.check(sa("8.8.8.8")), Err(Denied::Configured));
        assert!(p.allows(sa("8.8.4.4")));
    }

    #[test]
    fn ranges_parse_in_every_form_and_refuse_nonsense() {
        assert!(IpRange::parse("192.0.2.0/24")
            .unwrap()
            .contains("192.0.2.255".parse().unwrap()));
        assert!(!IpRange::parse("192.0.2.0/24")
            .unwrap()
            .contains("192.0.3.0".parse().unwrap()));
        assert!(IpRange::parse("::/0")
            .unwrap()
            .contains("ffff::1".parse().unwrap()));
        assert!(IpRange::parse("1.2.3.4")
            .unwrap()
            .contains("1.2.3.4".parse().unwrap()));
        for bad in [
            "1.2.3.4/33",
            "::/129",
            "1.2.3.4-::1",
            "2.0.0.0-1.0.0.0",
            "nonsense",
            "1.2.3/8",
        ] {
            assert!(IpRange::parse(bad).is_err(), "{bad}");
        }
    }
}
