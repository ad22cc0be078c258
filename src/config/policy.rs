//! Which peers a relay may reach: allow and deny ranges, loopback.

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
    c.allow_loopback_peers = o.allow_loopback_peers.unwrap_or(c.allow_loopback_peers);
    Ok(())
}
