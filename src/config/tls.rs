//! TURN over TLS and DTLS: where, and with which certificate.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

use super::parse::invalid;
use super::{Config, ConfigError, Options};

/// The TLS port when `tls_listen` names only an address (RFC 8656 §3.1).
const DEFAULT_TLS_PORT: u16 = 5349;

pub(super) fn resolve(o: &Options, c: &mut Config) -> Result<(), ConfigError> {
    c.tls_listen = o
        .tls_listen
        .iter()
        .map(|s| {
            s.parse::<SocketAddr>()
                .or_else(|_| {
                    s.trim_matches(|ch| ch == '[' || ch == ']')
                        .parse::<IpAddr>()
                        .map(|ip| SocketAddr::new(ip, DEFAULT_TLS_PORT))
                })
                .map_err(|_| invalid("tls_listen", format!("`{s}` is not IP or IP:PORT")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    c.cert = o.cert.as_ref().map(PathBuf::from);
    c.key = o.key.as_ref().map(PathBuf::from);
    if c.cert.is_some() != c.key.is_some() {
        return Err(invalid("cert", "cert and key go together".into()));
    }
    c.dtls = o.dtls.unwrap_or(c.dtls);
    if c.cert.is_none() && (!c.tls_listen.is_empty() || c.dtls) {
        return Err(invalid(
            "tls_listen",
            "TLS and DTLS need cert and key (PEM files)".into(),
        ));
    }
    Ok(())
}
