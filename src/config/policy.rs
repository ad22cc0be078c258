//! Which peers a relay may reach (allow and deny ranges, loopback), which
//! clients are served at all, and which proxies send PROXY headers.

use super::parse::invalid;
use super::{Config, ConfigError, Options};
use crate::turn::policy::IpRange;

pub(super) fn resolve(o: &Options, c: &mut Config) -> Result<(), ConfigError> {
    let ranges = |key: &'static str, list: &[String]| {
        list.iter()
            .map(|s| IpRange::parse(s).map_err(|e| invalid(key, e.to_string())))
            .collect::<Result<Vec<_>, _>>()
    };
    c.allowed_peer_ips = ranges("allowed_peer_ip", &o.allowed_peer_ip)?;
    c.denied_peer_ips = ranges("denied_peer_ip", &o.denied_peer_ip)?;
    c.allowed_client_ips = ranges("allowed_client_ip", &o.allowed_client_ip)?;
    c.denied_client_ips = ranges("denied_client_ip", &o.denied_client_ip)?;
    c.proxy_protocol_from = ranges("proxy_protocol_from", &o.proxy_protocol_from)?;
    c.allow_loopback_peers = o.allow_loopback_peers.unwrap_or(c.allow_loopback_peers);
    Ok(())
}
