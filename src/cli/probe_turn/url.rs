//! The `turn:` URL of `probe turn` and its resolution.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, ToSocketAddrs};

use super::Failure;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Transport {
    Udp,
    Tcp,
}

impl fmt::Display for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Transport::Udp => "udp",
            Transport::Tcp => "tcp",
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Host {
    Ip(IpAddr),
    Name(String),
}

/// A parsed `turn:` URL (RFC 7065).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Target {
    pub(super) host: Host,
    pub(super) port: u16,
    pub(super) transport: Transport,
}

impl Target {
    /// `HOST:PORT`, IPv6 in brackets.
    pub(super) fn label(&self) -> String {
        match &self.host {
            Host::Ip(ip) => SocketAddr::new(*ip, self.port).to_string(),
            Host::Name(name) => format!("{name}:{}", self.port),
        }
    }
}

/// `turn:HOST[:PORT][?transport=udp|tcp]`; `None` for anything else.
pub(super) fn parse_url(url: &str) -> Option<Target> {
    let scheme = url.get(..5)?;
    if !scheme.eq_ignore_ascii_case("turn:") {
        return None;
    }
    let rest = &url[5..];
    let (hostport, query) = match rest.split_once('?') {
        Some((h, q)) => (h, Some(q)),
        None => (rest, None),
    };
    let transport = match query {
        None => Transport::Udp,
        Some(q) => {
            let (key, value) = q.split_once('=')?;
            if !key.eq_ignore_ascii_case("transport") {
                return None;
            }
            match value.to_ascii_lowercase().as_str() {
                "udp" => Transport::Udp,
                "tcp" => Transport::Tcp,
                _ => return None,
            }
        }
    };
    let (host, port) = if let Some(v6) = hostport.strip_prefix('[') {
        let (ip, after) = v6.split_once(']')?;
        let ip: Ipv6Addr = ip.parse().ok()?;
        let port = match after {
            "" => 3478,
            _ => parse_port(after.strip_prefix(':')?)?,
        };
        (Host::Ip(IpAddr::V6(ip)), port)
    } else {
        let (host, port) = match hostport.split_once(':') {
            Some((h, p)) => (h, parse_port(p)?),
            None => (hostport, 3478),
        };
        if let Ok(ip) = host.parse::<Ipv4Addr>() {
            (Host::Ip(IpAddr::V4(ip)), port)
        } else if is_host_name(host) {
            (Host::Name(host.to_string()), port)
        } else {
            return None;
        }
    };
    Some(Target {
        host,
        port,
        transport,
    })
}

pub(super) fn parse_port(s: &str) -> Option<u16> {
    if s.is_empty() || s.len() > 5 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok().filter(|&p| p != 0)
}

/// A DNS name: dot-separated labels of letters, digits, `-` and `_`; one
/// trailing dot allowed. All digits and dots is a broken IPv4 address.
pub(super) fn is_host_name(host: &str) -> bool {
    let name = host.strip_suffix('.').unwrap_or(host);
    !name.is_empty()
        && name.len() <= 253
        && !name.bytes().all(|b| b.is_ascii_digit() || b == b'.')
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

/// The server's address; a name's IPv4 address is preferred (most TURN
/// servers listen on IPv4; `localhost` often resolves to ::1 first).
pub(super) fn resolve(target: &Target) -> Result<SocketAddr, Failure> {
    match &target.host {
        Host::Ip(ip) => Ok(SocketAddr::new(*ip, target.port)),
        Host::Name(name) => {
            let addrs: Vec<SocketAddr> = (name.as_str(), target.port)
                .to_socket_addrs()
                .map_err(|e| Failure::new(format!("cannot resolve {name}: {e}")))?
                .collect();
            addrs
                .iter()
                .find(|a| a.is_ipv4())
                .or_else(|| addrs.first())
                .copied()
                .ok_or_else(|| Failure::new(format!("{name} has no address")))
        }
    }
}
