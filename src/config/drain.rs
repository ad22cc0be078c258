//! Leaving a fleet (issue 15): when a draining node exits, the health
//! endpoints balancers poll, and the DNS name a draining peer sends TLS
//! clients here by (ALTERNATE-DOMAIN).

use std::net::SocketAddr;
use std::time::Duration;

use super::parse::{count, count32, invalid};
use super::{Config, ConfigError, Options};

/// Longest drain deadline and store outage window: a week, a day.
pub(crate) const MAX_DRAIN_TIMEOUT: u64 = 7 * 24 * 3600;
const MAX_STORE_TIMEOUT: u64 = 24 * 3600;

pub(super) fn resolve(o: &Options, c: &mut Config) -> Result<(), ConfigError> {
    c.drain_min_allocations = count32(
        "drain_min_allocations",
        o.drain_min_allocations,
        c.drain_min_allocations,
    )?;
    let timeout = count(
        "drain_timeout",
        o.drain_timeout,
        c.drain_timeout.map_or(0, |d| d.as_secs()),
        MAX_DRAIN_TIMEOUT,
    )?;
    c.drain_timeout = (timeout > 0).then(|| Duration::from_secs(timeout));
    let store = count(
        "readyz_store_timeout",
        o.readyz_store_timeout,
        c.readyz_store_timeout.map_or(0, |d| d.as_secs()),
        MAX_STORE_TIMEOUT,
    )?;
    c.readyz_store_timeout = (store > 0).then(|| Duration::from_secs(store));
    if let Some(a) = &o.health_listen {
        c.health_listen = Some(
            a.parse::<SocketAddr>()
                .map_err(|_| invalid("health_listen", format!("`{a}` is not IP:PORT")))?,
        );
    }
    if let Some(name) = &o.external_name {
        if !valid_dns_name(name) {
            return Err(invalid(
                "external_name",
                format!("`{name}` is not a DNS name (an address goes in external_ip)"),
            ));
        }
        c.external_name = Some(name.to_ascii_lowercase());
    }
    Ok(())
}

/// Letters, digits and '-' in dot-separated labels of 1-63, at most 253 in
/// all, and not an IP address.
fn valid_dns_name(name: &str) -> bool {
    let name = name.strip_suffix('.').unwrap_or(name);
    name.len() <= 253
        && name.parse::<std::net::IpAddr>().is_err()
        && !name
            .rsplit('.')
            .next()
            .is_some_and(|tld| tld.chars().all(|c| c.is_ascii_digit()))
        && name.split('.').all(|l| {
            (1..=63).contains(&l.len())
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drain_and_health_keys_have_defaults_and_are_checked() {
        let parse = |t: &str| Options::from_toml(t, "t").unwrap().resolve();
        let c = parse("").unwrap();
        assert_eq!(c.drain_min_allocations, 0);
        assert_eq!(c.drain_timeout, Some(Duration::from_secs(3600)));
        assert_eq!((c.health_listen, c.readyz_store_timeout), (None, None));
        assert_eq!(c.external_name, None);
        let c = parse("external_name = \"Turn-1.Example.com\"").unwrap();
        assert_eq!(c.external_name.as_deref(), Some("turn-1.example.com"));
        let c = parse(
            "drain_min_allocations = 3\ndrain_timeout = 0\n\
             health_listen = \"127.0.0.1:8086\"\nreadyz_store_timeout = 30",
        )
        .unwrap();
        assert_eq!(c.drain_min_allocations, 3);
        assert_eq!(c.drain_timeout, None, "0 = no deadline");
        assert_eq!(c.health_listen, Some("127.0.0.1:8086".parse().unwrap()));
        assert_eq!(c.readyz_store_timeout, Some(Duration::from_secs(30)));
        for (bad, key) in [
            ("drain_min_allocations = -1", "drain_min_allocations"),
            ("drain_timeout = 604801", "drain_timeout"),
            ("health_listen = \"nowhere\"", "health_listen"),
            ("readyz_store_timeout = -5", "readyz_store_timeout"),
            ("external_name = \"192.0.2.1\"", "external_name"),
            ("external_name = \"a..b\"", "external_name"),
            ("external_name = \"-a.example\"", "external_name"),
            ("external_name = \"a b.example\"", "external_name"),
            ("external_name = \"\"", "external_name"),
        ] {
            let e = parse(bad).unwrap_err().to_string();
            assert!(e.starts_with(key), "{e}");
        }
    }
}
