//! The self-test page (issue 20): on the admin listener (`selftest`), on a
//! listener of its own that may be public (`selftest_listen`), and its
//! credential endpoint's rate limits.

use std::net::SocketAddr;

use super::parse::{cap, invalid};
use super::{Config, ConfigError, Options};

/// Where the self-test page is served, and how many credentials it mints.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SelftestConfig {
    /// Served on the admin listener too (`selftest`).
    pub on_admin: bool,
    /// A listener serving the page alone (`selftest_listen`); setting it
    /// turns the page on there whatever `selftest` says.
    pub listen: Option<SocketAddr>,
    /// Credentials per minute per source address (an IPv6 /64 is one).
    pub rate_per_ip: u32,
    /// Credentials per minute in total.
    pub rate_total: u32,
}

impl Default for SelftestConfig {
    fn default() -> Self {
        SelftestConfig {
            on_admin: false,
            listen: None,
            rate_per_ip: 10,
            rate_total: 120,
        }
    }
}

impl SelftestConfig {
    /// Whether the page is served anywhere (and its secret is drawn).
    pub fn enabled(&self) -> bool {
        self.on_admin || self.listen.is_some()
    }
}

pub(super) fn resolve(o: &Options, c: &mut Config) -> Result<(), ConfigError> {
    let s = &mut c.selftest;
    s.on_admin = o.selftest.unwrap_or(s.on_admin);
    if let Some(a) = &o.selftest_listen {
        s.listen = Some(
            a.parse::<SocketAddr>()
                .map_err(|_| invalid("selftest_listen", format!("`{a}` is not IP:PORT")))?,
        );
    }
    s.rate_per_ip = cap(
        "selftest_rate_per_ip",
        o.selftest_rate_per_ip,
        s.rate_per_ip,
    )?;
    s.rate_total = cap("selftest_rate_total", o.selftest_rate_total, s.rate_total)?;
    if s.on_admin && c.admin_listen.is_none() && s.listen.is_none() {
        return Err(invalid(
            "selftest",
            "the admin listener is off (admin_listen = \"off\"): set selftest_listen to serve the page"
                .into(),
        ));
    }
    Ok(())
}
