//! systemd's notify protocol (sd_notify(3)), spoken directly: one datagram
//! per state change to the unix socket `NOTIFY_SOCKET` names (a path, or an
//! abstract name after '@'). Without the variable nothing is sent, so the
//! same binary runs under systemd, in a container or by hand.
//!
//! The watchdog is fed at half of `WATCHDOG_USEC`, and only while every
//! worker has reported lately: a stuck worker stops the pings and systemd
//! restarts the service.

use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::time::Duration;

/// A connection to systemd's notify socket.
#[derive(Debug)]
pub(super) struct Notifier {
    sock: UnixDatagram,
    to: SocketAddr,
}

impl Notifier {
    /// The notifier `NOTIFY_SOCKET` asks for, if any. The variable is
    /// removed so that nothing the server starts inherits it.
    pub(super) fn from_env() -> Option<Notifier> {
        let path = std::env::var_os("NOTIFY_SOCKET")?;
        let path = path.to_str()?.to_string();
        let to = match path.strip_prefix('@') {
            Some(name) => {
                use std::os::linux::net::SocketAddrExt;
                SocketAddr::from_abstract_name(name.as_bytes()).ok()?
            }
            None => SocketAddr::from_pathname(&path).ok()?,
        };
        let sock = UnixDatagram::unbound().ok()?;
        Some(Notifier { sock, to })
    }

    /// Sends `state` (e.g. "READY=1\nSTATUS=..."); a failure is logged and
    /// otherwise ignored: systemd going away must not stop the server.
    pub(super) fn send(&self, state: &str) {
        if let Err(e) = self.sock.send_to_addr(state.as_bytes(), &self.to) {
            tracing::debug!("sd_notify: {e}");
        }
    }
}

/// The watchdog period to feed at: half of `WATCHDOG_USEC`, when it is set
/// for this process (`WATCHDOG_PID`, if present, must be ours).
pub(super) fn watchdog_every() -> Option<Duration> {
    if let Some(pid) = std::env::var_os("WATCHDOG_PID") {
        if pid.to_str()?.parse::<u32>().ok()? != std::process::id() {
            return None;
        }
    }
    let usec: u64 = std::env::var("WATCHDOG_USEC").ok()?.parse().ok()?;
    (usec > 0).then(|| Duration::from_micros(usec / 2))
}

/// CLOCK_MONOTONIC in microseconds, as RELOADING=1 wants it.
pub(super) fn monotonic_usec() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec into the one we pass.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000 + ts.tv_nsec as u64 / 1_000
}
