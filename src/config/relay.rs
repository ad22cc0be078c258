//! The relay side: port range, relay and external addresses, RFC 6062,
//! and what one allocation may hold.

use std::net::IpAddr;
use std::time::Duration;

use super::parse::{count, invalid, port};
use super::{Config, ConfigError, Options};

pub(super) fn resolve(o: &Options, c: &mut Config) -> Result<(), ConfigError> {
    c.min_port = port("min_port", o.min_port, c.min_port)?;
    c.max_port = port("max_port", o.max_port, c.max_port)?;
    if c.min_port > c.max_port {
        return Err(invalid(
            "min_port",
            format!("min_port {} is above max_port {}", c.min_port, c.max_port),
        ));
    }
    c.relay_ips = o
        .relay_ip
        .iter()
        .map(|s| {
            s.parse::<IpAddr>()
                .map_err(|_| invalid("relay_ip", format!("`{s}` is not an IP address")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    if let Some(ip) = c.relay_ips.iter().find(|ip| ip.is_unspecified()) {
        return Err(invalid(
            "relay_ip",
            format!("`{ip}` is a wildcard; name a real address"),
        ));
    }
    c.external_ips = o
        .external_ip
        .iter()
        .map(|s| {
            let bad = || {
                invalid(
                    "external_ip",
                    format!("`{s}` is not PUBLIC or PUBLIC/PRIVATE"),
                )
            };
            match s.split_once('/') {
                Some((p, q)) => Ok((
                    p.parse().map_err(|_| bad())?,
                    Some(q.parse().map_err(|_| bad())?),
                )),
                None => Ok((s.parse().map_err(|_| bad())?, None)),
            }
        })
        .collect::<Result<Vec<_>, _>>()?;
    c.tcp_relay = o.tcp_relay.unwrap_or(c.tcp_relay);
    let lifetime = count(
        "max_allocate_lifetime",
        o.max_allocate_lifetime,
        c.max_allocate_lifetime.as_secs(),
        86_400,
    )?;
    let default = crate::turn::DEFAULT_LIFETIME.as_secs();
    if lifetime < default {
        return Err(invalid(
            "max_allocate_lifetime",
            format!("{lifetime} is below the {default} s default lifetime"),
        ));
    }
    c.max_allocate_lifetime = Duration::from_secs(lifetime);
    let permissions = count(
        "max_permissions",
        o.max_permissions,
        c.max_permissions as u64,
        10_000,
    )?;
    let channels = count("max_channels", o.max_channels, c.max_channels as u64, 4096)?;
    if permissions == 0 || channels == 0 {
        return Err(invalid(
            "max_permissions",
            "max_permissions and max_channels must be at least 1".into(),
        ));
    }
    c.max_permissions = permissions as usize;
    c.max_channels = channels as usize;
    Ok(())
}
