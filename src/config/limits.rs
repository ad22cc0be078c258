//! Quotas and caps: allocations per user, in total and per source, peer
//! connections, bandwidth, stream and DTLS connection caps and deadlines.

use super::parse::{cap, count, count32, seconds};
use super::{Config, ConfigError, Options};

pub(super) fn resolve(o: &Options, c: &mut Config) -> Result<(), ConfigError> {
    c.user_quota = count32("user_quota", o.user_quota, c.user_quota)?;
    c.total_quota = count32("total_quota", o.total_quota, c.total_quota)?;
    c.max_allocations_per_ip = count32(
        "max_allocations_per_ip",
        o.max_allocations_per_ip,
        c.max_allocations_per_ip,
    )?;
    c.max_bps = count("max_bps", o.max_bps, c.max_bps, u64::MAX >> 1)?;
    c.handshake_timeout = seconds(
        "handshake_timeout",
        o.handshake_timeout,
        c.handshake_timeout,
        600,
    )?;
    c.max_tcp_per_ip = cap("max_tcp_per_ip", o.max_tcp_per_ip, c.max_tcp_per_ip)?;
    c.max_peer_connections = cap(
        "max_peer_connections",
        o.max_peer_connections,
        c.max_peer_connections,
    )?;
    c.max_peer_connections_per_user = cap(
        "max_peer_connections_per_user",
        o.max_peer_connections_per_user,
        c.max_peer_connections_per_user,
    )?;
    c.max_tcp_connections = cap(
        "max_tcp_connections",
        o.max_tcp_connections,
        c.max_tcp_connections,
    )?;
    c.max_dtls_handshakes = cap(
        "max_dtls_handshakes",
        o.max_dtls_handshakes,
        c.max_dtls_handshakes,
    )?;
    Ok(())
}
