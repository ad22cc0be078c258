//! Socket creation: options tokio does not expose (IPV6_V6ONLY, SO_REUSEADDR).

use std::io;
use std::net::SocketAddr;

use socket2::{Domain, Protocol, Socket, Type};

fn new_socket(addr: SocketAddr, ty: Type, proto: Protocol) -> io::Result<Socket> {
    let s = Socket::new(Domain::for_address(addr), ty, Some(proto))?;
    // [::] and 0.0.0.0 on the same port are separate listeners, as coturn does.
    if addr.is_ipv6() {
        s.set_only_v6(true)?;
    }
    s.set_nonblocking(true)?;
    Ok(s)
}

pub fn bind_udp(addr: SocketAddr) -> io::Result<tokio::net::UdpSocket> {
    let s = new_socket(addr, Type::DGRAM, Protocol::UDP)?;
    s.bind(&addr.into())?;
    tokio::net::UdpSocket::from_std(s.into())
}

pub fn bind_tcp(addr: SocketAddr) -> io::Result<tokio::net::TcpListener> {
    let s = new_socket(addr, Type::STREAM, Protocol::TCP)?;
    // Restarts must not wait for TIME_WAIT connections to drain.
    s.set_reuse_address(true)?;
    s.bind(&addr.into())?;
    s.listen(1024)?;
    tokio::net::TcpListener::from_std(s.into())
}

/// The IPv6 wildcard is skipped, not fatal, on a host without IPv6.
pub fn is_optional_ipv6(addr: &SocketAddr, e: &io::Error) -> bool {
    addr.is_ipv6()
        && addr.ip().is_unspecified()
        && (e.kind() == io::ErrorKind::AddrNotAvailable
            || e.raw_os_error() == Some(libc_eafnosupport()))
}

/// EAFNOSUPPORT on Linux; socket creation fails with it when IPv6 is off.
const fn libc_eafnosupport() -> i32 {
    97
}
