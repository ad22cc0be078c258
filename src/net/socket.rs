//! Socket creation: options tokio does not expose (IPV6_V6ONLY, SO_REUSEPORT,
//! path MTU discovery for DONT-FRAGMENT).

use std::io;
use std::net::SocketAddr;

use socket2::{Domain, Protocol, Socket, Type};

fn new_socket(addr: SocketAddr, ty: Type, proto: Protocol, reuse_port: bool) -> io::Result<Socket> {
    let s = Socket::new(Domain::for_address(addr), ty, Some(proto))?;
    // [::] and 0.0.0.0 on the same port are separate listeners, as coturn does.
    if addr.is_ipv6() {
        s.set_only_v6(true)?;
    }
    if reuse_port {
        // One socket per worker on the same port: the kernel keeps each
        // client flow on one worker.
        s.set_reuse_port(true)?;
    }
    s.set_nonblocking(true)?;
    Ok(s)
}

/// A UDP listener socket (not yet registered with a runtime).
pub(super) fn bind_udp(addr: SocketAddr, reuse_port: bool) -> io::Result<std::net::UdpSocket> {
    let s = new_socket(addr, Type::DGRAM, Protocol::UDP, reuse_port)?;
    // Bursts from many clients must not overflow the default buffer.
    let _ = s.set_recv_buffer_size(4 << 20);
    let _ = s.set_send_buffer_size(4 << 20);
    s.bind(&addr.into())?;
    Ok(s.into())
}

/// A TCP listener socket (not yet registered with a runtime).
pub(super) fn bind_tcp(addr: SocketAddr, reuse_port: bool) -> io::Result<std::net::TcpListener> {
    let s = new_socket(addr, Type::STREAM, Protocol::TCP, reuse_port)?;
    // Restarts must not wait for TIME_WAIT connections to drain.
    s.set_reuse_address(true)?;
    s.bind(&addr.into())?;
    s.listen(1024)?;
    Ok(s.into())
}

/// The listening socket of a TCP relay (RFC 6062). SO_REUSEADDR and
/// SO_REUSEPORT let connections to peers leave from the same address.
pub(super) fn bind_tcp_relay(addr: SocketAddr) -> io::Result<std::net::TcpListener> {
    let s = new_socket(addr, Type::STREAM, Protocol::TCP, true)?;
    s.set_reuse_address(true)?;
    s.bind(&addr.into())?;
    s.listen(128)?;
    Ok(s.into())
}

/// A relay socket. With `dont_fragment` the kernel sets DF (IPv4) or
/// refuses to fragment (IPv6): RFC 8656 §7.2, DONT-FRAGMENT.
pub(super) fn bind_relay(addr: SocketAddr, dont_fragment: bool) -> io::Result<std::net::UdpSocket> {
    let s = new_socket(addr, Type::DGRAM, Protocol::UDP, false)?;
    if dont_fragment {
        set_dont_fragment(&s, addr.is_ipv6())?;
    }
    s.bind(&addr.into())?;
    Ok(s.into())
}

fn set_dont_fragment(s: &Socket, v6: bool) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let (level, name, value) = if v6 {
        (
            libc::IPPROTO_IPV6,
            libc::IPV6_MTU_DISCOVER,
            libc::IPV6_PMTUDISC_DO,
        )
    } else {
        (
            libc::IPPROTO_IP,
            libc::IP_MTU_DISCOVER,
            libc::IP_PMTUDISC_DO,
        )
    };
    // SAFETY: a plain int option on a socket we own.
    let rc = unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            level,
            name,
            &value as *const libc::c_int as *const libc::c_void,
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// The IPv6 wildcard is skipped, not fatal, on a host without IPv6.
pub(super) fn is_optional_ipv6(addr: &SocketAddr, e: &io::Error) -> bool {
    addr.is_ipv6()
        && addr.ip().is_unspecified()
        && (e.kind() == io::ErrorKind::AddrNotAvailable
            || e.raw_os_error() == Some(libc::EAFNOSUPPORT))
}

/// Raises the open-file limit to its hard maximum: every TCP client and
/// every relay is a descriptor, and the usual soft limit of 1,024 would
/// cap a server far below its connection caps.
pub(super) fn raise_fd_limit() {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: plain syscalls on a local struct.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && lim.rlim_cur < lim.rlim_max {
            lim.rlim_cur = lim.rlim_max;
            let _ = libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
}
