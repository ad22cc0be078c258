//! Where the server listens and what it says there: `listen`, `workers`,
//! `software`, classic STUN, and RFC 5780's second address.

use std::net::{IpAddr, SocketAddr};

use super::parse::{count, invalid};
use super::{Config, ConfigError, Options};

pub(super) fn resolve(o: &Options, c: &mut Config) -> Result<(), ConfigError> {
    if !o.listen.is_empty() {
        c.listen = o
            .listen
            .iter()
            .map(|s| {
                s.parse::<SocketAddr>().map_err(|_| {
                    invalid(
                        "listen",
                        format!("`{s}` is not IP:PORT (IPv6 as [ADDR]:PORT, port 0-65535)"),
                    )
                })
            })
            .collect::<Result<_, _>>()?;
    }
    c.workers = count("workers", o.workers, 0, 1024)? as usize;
    if let Some(sw) = &o.software {
        if sw.is_empty() || sw.chars().count() > 127 {
            return Err(invalid("software", "must be 1-127 characters".into()));
        }
        c.software = Some(sw.clone());
    }
    c.stun_backward_compatibility = match (
        o.stun_backward_compatibility,
        o.no_stun_backward_compatibility,
    ) {
        (Some(on), Some(off)) if on == off => {
            return Err(invalid(
                "no_stun_backward_compatibility",
                format!("{off} contradicts stun_backward_compatibility = {on}; set one"),
            ))
        }
        (Some(on), _) => on,
        (None, Some(off)) => !off,
        (None, None) => c.stun_backward_compatibility,
    };
    rfc5780(o, c)
}

/// RFC 5780 mode, its alternate address and port, checked against `listen`.
fn rfc5780(o: &Options, c: &mut Config) -> Result<(), ConfigError> {
    c.rfc5780 = o.rfc5780.unwrap_or(c.rfc5780);
    c.alt_ip = match &o.alt_ip {
        None => None,
        Some(s) => match s.trim_matches(|c| c == '[' || c == ']').parse::<IpAddr>() {
            Ok(ip) if !ip.is_unspecified() => Some(ip),
            Ok(_) => {
                return Err(invalid(
                    "alt_ip",
                    format!("`{s}` is a wildcard; name a real address"),
                ))
            }
            Err(_) => return Err(invalid("alt_ip", format!("`{s}` is not an IP address"))),
        },
    };
    c.alt_listening_port = match o.alt_listening_port {
        None => None,
        Some(p) if (1..=65535).contains(&p) => Some(p as u16),
        Some(p) => {
            return Err(invalid(
                "alt_listening_port",
                format!("{p} is not a port (1-65535)"),
            ))
        }
    };
    if !c.rfc5780 {
        return Ok(());
    }
    // RFC 5780 §6: the server needs two IP addresses; answering
    // CHANGE-REQUEST from one would mislead every probe.
    let Some(alt) = c.alt_ip else {
        return Err(invalid(
            "rfc5780",
            "needs alt_ip, a second IP address of this host to answer from".into(),
        ));
    };
    let primary = c
        .listen
        .iter()
        .find(|l| l.is_ipv4() == alt.is_ipv4() && !l.ip().is_unspecified());
    match primary {
        None => Err(invalid(
            "rfc5780",
            format!("needs a listen address of a specific IP of the same family as alt_ip {alt} (not a wildcard)"),
        )),
        Some(p) if p.ip() == alt => Err(invalid(
            "alt_ip",
            format!("{alt} is the listen address; it must be a second one"),
        )),
        Some(_) => Ok(()),
    }
}
