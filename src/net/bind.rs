//! Start-up phase one: every socket the server listens on, bound before
//! `serve` returns (port 0 resolved), one per worker with SO_REUSEPORT,
//! and the addresses relay sockets will bind to.

use std::net::{IpAddr, SocketAddr};

use super::socket;
use super::{ServeError, Transport};
use crate::config::Config;
use crate::nat::ServerAddresses;

/// Per worker: its UDP sockets and TCP listeners, in the same order on
/// every worker; and what they are, in bind order.
pub(super) struct Bound {
    pub listeners: Vec<(Transport, SocketAddr)>,
    pub udp: Vec<Vec<std::net::UdpSocket>>,
    pub tcp: Vec<Vec<std::net::TcpListener>>,
    pub reuse: bool,
}

impl Bound {
    pub(super) fn new(workers: usize) -> Bound {
        Bound {
            listeners: Vec::new(),
            udp: (0..workers).map(|_| Vec::new()).collect(),
            tcp: (0..workers).map(|_| Vec::new()).collect(),
            reuse: workers > 1,
        }
    }
}

pub(super) fn worker_count(config: &Config) -> usize {
    if config.workers > 0 {
        config.workers
    } else {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    }
}

/// Binds each `listen` address for UDP and TCP (one port for both).
pub(super) fn listen(config: &Config, b: &mut Bound) -> Result<(), ServeError> {
    let reuse = b.reuse;
    'listen: for want in &config.listen {
        let bind_err = |transport, error| ServeError::Bind {
            transport,
            addr: *want,
            error,
        };
        // On port 0, TCP takes the port UDP got: operators expect one
        // port. When another program holds that port for TCP, a few new
        // UDP ports are tried before the two go their own ways.
        let mut attempts = if want.port() == 0 { 8 } else { 1 };
        let (first, first_tcp) = loop {
            attempts -= 1;
            let udp = match socket::bind_udp(*want, reuse) {
                Ok(s) => s,
                Err(e) if socket::is_optional_ipv6(want, &e) => {
                    tracing::warn!("skipping {want}: no IPv6 on this host ({e})");
                    continue 'listen;
                }
                Err(e) => return Err(bind_err(Transport::Udp, e)),
            };
            let udp_addr = udp.local_addr().map_err(|e| bind_err(Transport::Udp, e))?;
            let tcp = if want.port() == 0 {
                match socket::bind_tcp(udp_addr, reuse) {
                    Ok(t) => Ok(t),
                    Err(_) if attempts > 0 => continue,
                    Err(_) => socket::bind_tcp(*want, reuse),
                }
            } else {
                socket::bind_tcp(*want, reuse)
            };
            break (udp, tcp.map_err(|e| bind_err(Transport::Tcp, e))?);
        };
        let udp_addr = first
            .local_addr()
            .map_err(|e| bind_err(Transport::Udp, e))?;
        b.udp[0].push(first);
        for sockets in b.udp.iter_mut().skip(1) {
            sockets
                .push(socket::bind_udp(udp_addr, true).map_err(|e| bind_err(Transport::Udp, e))?);
        }
        let first = first_tcp;
        let tcp_addr = first
            .local_addr()
            .map_err(|e| bind_err(Transport::Tcp, e))?;
        b.tcp[0].push(first);
        for listeners in b.tcp.iter_mut().skip(1) {
            listeners
                .push(socket::bind_tcp(tcp_addr, true).map_err(|e| bind_err(Transport::Tcp, e))?);
        }
        tracing::info!(event = "listening", "listening udp {udp_addr}");
        tracing::info!(event = "listening", "listening tcp {tcp_addr}");
        b.listeners.push((Transport::Udp, udp_addr));
        b.listeners.push((Transport::Tcp, tcp_addr));
    }
    Ok(())
}

/// Binds the three other RFC 5780 sockets when the mode is on.
pub(super) fn rfc5780(
    config: &Config,
    b: &mut Bound,
) -> Result<Option<ServerAddresses>, ServeError> {
    if !config.rfc5780 {
        return Ok(None);
    }
    let set = bind_rfc5780(config, &b.listeners, &mut b.udp, b.reuse)?;
    for addr in set.local_addresses().into_iter().skip(1) {
        tracing::info!(event = "listening", "listening udp {addr} (RFC 5780)");
        b.listeners.push((Transport::Udp, addr));
    }
    Ok(Some(set))
}

/// Binds each `tls_listen` address for TLS, and for DTLS on the same port
/// number when `dtls` is on.
pub(super) fn tls_listen(config: &Config, b: &mut Bound) -> Result<(), ServeError> {
    let reuse = b.reuse;
    for want in &config.tls_listen {
        let bind_err = |error| ServeError::Bind {
            transport: Transport::Tls,
            addr: *want,
            error,
        };
        let first = socket::bind_tcp(*want, reuse).map_err(bind_err)?;
        let addr = first.local_addr().map_err(bind_err)?;
        b.tcp[0].push(first);
        for listeners in b.tcp.iter_mut().skip(1) {
            listeners.push(socket::bind_tcp(addr, true).map_err(bind_err)?);
        }
        tracing::info!(event = "listening", "listening tls {addr}");
        b.listeners.push((Transport::Tls, addr));
        if config.dtls {
            // DTLS on the same port number, UDP side.
            bind_udp_per_worker(&mut b.udp, addr, reuse, Transport::Dtls)?;
            tracing::info!(event = "listening", "listening dtls {addr}");
            b.listeners.push((Transport::Dtls, addr));
        }
    }
    Ok(())
}

/// Relay addresses: configured ones, else the specific listening addresses,
/// else (wildcard listeners) the host's first non-loopback address of each
/// family, else loopback.
fn relay_ips(config: &Config, bound: &[(Transport, SocketAddr)]) -> Vec<IpAddr> {
    if !config.relay_ips.is_empty() {
        let mut out: Vec<IpAddr> = Vec::new();
        for ip in &config.relay_ips {
            if !out.iter().any(|o| o.is_ipv4() == ip.is_ipv4()) {
                out.push(*ip);
            }
        }
        return out;
    }
    let mut out: Vec<IpAddr> = Vec::new();
    for v4 in [true, false] {
        let listened: Vec<IpAddr> = bound
            .iter()
            .map(|(_, a)| a.ip())
            .filter(|ip| ip.is_ipv4() == v4)
            .collect();
        if let Some(ip) = listened.iter().find(|ip| !ip.is_unspecified()) {
            out.push(*ip);
        } else if !listened.is_empty() {
            let host = if_addrs::get_if_addrs().unwrap_or_default();
            let pick = host.iter().map(|i| i.ip()).find(|ip| {
                ip.is_ipv4() == v4
                    && !ip.is_loopback()
                    && !matches!(ip, IpAddr::V6(v6) if (v6.segments()[0] & 0xffc0) == 0xfe80)
            });
            out.push(pick.unwrap_or(if v4 {
                IpAddr::from([127, 0, 0, 1])
            } else {
                IpAddr::from([0u16, 0, 0, 0, 0, 0, 0, 1])
            }));
        }
    }
    out
}

/// Binds `addr` once per worker (SO_REUSEPORT when there are several);
/// returns the bound address (port 0 resolved by the first bind).
fn bind_udp_per_worker(
    udp: &mut [Vec<std::net::UdpSocket>],
    addr: SocketAddr,
    reuse: bool,
    transport: Transport,
) -> Result<SocketAddr, ServeError> {
    let bind_err = |error| ServeError::Bind {
        transport,
        addr,
        error,
    };
    let first = socket::bind_udp(addr, reuse).map_err(bind_err)?;
    let bound = first.local_addr().map_err(bind_err)?;
    udp[0].push(first);
    for sockets in udp.iter_mut().skip(1) {
        sockets.push(socket::bind_udp(bound, true).map_err(bind_err)?);
    }
    Ok(bound)
}

/// Binds the three other sockets RFC 5780 answers from: the primary IP
/// with the alternate port, and the alternate IP with both ports. The
/// primary is the first UDP listener of a specific IP in alt_ip's family
/// (config validation guarantees one).
fn bind_rfc5780(
    config: &Config,
    listeners: &[(Transport, SocketAddr)],
    udp: &mut [Vec<std::net::UdpSocket>],
    reuse: bool,
) -> Result<ServerAddresses, ServeError> {
    let alt_ip = config
        .alt_ip
        .ok_or(ServeError::Rfc5780("needs alt_ip".into()))?;
    let primary = listeners
        .iter()
        .find(|(t, a)| {
            *t == Transport::Udp && a.is_ipv4() == alt_ip.is_ipv4() && !a.ip().is_unspecified()
        })
        .map(|(_, a)| *a)
        .ok_or_else(|| {
            ServeError::Rfc5780(format!(
                "no UDP listener of a specific IP in the family of {alt_ip}"
            ))
        })?;
    let bind_all = |udp: &mut [Vec<std::net::UdpSocket>], addr| {
        bind_udp_per_worker(udp, addr, reuse, Transport::Udp)
    };
    // Port 0 listeners (tests) let the OS pick the alternate port too.
    let alt_port = match config.alt_listening_port {
        Some(p) => p,
        None if config.listen.iter().any(|l| l.port() == 0) => 0,
        None => primary.port().wrapping_add(1),
    };
    let primary_alt_port = bind_all(udp, SocketAddr::new(primary.ip(), alt_port))?;
    let alternate = SocketAddr::new(alt_ip, primary_alt_port.port());
    bind_all(udp, SocketAddr::new(alt_ip, primary.port()))?;
    bind_all(udp, alternate)?;
    ServerAddresses::with_alternate(primary, alternate)
        .map_err(|e| ServeError::Rfc5780(e.to_string()))
}

/// The relay addresses, logged; an error when a listener has none.
pub(super) fn relays(
    config: &Config,
    listeners: &[(Transport, SocketAddr)],
) -> Result<Vec<IpAddr>, ServeError> {
    let relay_ips = relay_ips(config, listeners);
    if relay_ips.is_empty() && !listeners.is_empty() {
        return Err(ServeError::NoRelayAddress("any family"));
    }
    for ip in &relay_ips {
        tracing::info!("relay ip {ip}");
    }
    Ok(relay_ips)
}
