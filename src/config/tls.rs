//! TURN over TLS and DTLS: where, and with which certificate.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

use super::parse::{invalid, seconds};
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
    c.tls_passthrough_to = o.tls_passthrough_to.clone();
    if let Some(to) = &c.tls_passthrough_to {
        if !valid_host_port(to) {
            return Err(invalid(
                "tls_passthrough_to",
                format!("`{to}` is not HOST:PORT"),
            ));
        }
    }
    c.tls_passthrough_sni = o
        .tls_passthrough_sni
        .iter()
        .map(|n| {
            let n = n.trim_end_matches('.').to_ascii_lowercase();
            if n.is_empty()
                || !n
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-.".contains(&b))
            {
                return Err(invalid(
                    "tls_passthrough_sni",
                    format!("`{n}` is not a DNS name"),
                ));
            }
            Ok(n)
        })
        .collect::<Result<_, _>>()?;
    c.tls_passthrough_proxy_protocol = o
        .tls_passthrough_proxy_protocol
        .unwrap_or(c.tls_passthrough_proxy_protocol);
    c.tls_passthrough_idle_timeout = seconds(
        "tls_passthrough_idle_timeout",
        o.tls_passthrough_idle_timeout,
        c.tls_passthrough_idle_timeout,
        86_400,
    )?;
    if c.tls_passthrough_to.is_none()
        && (!c.tls_passthrough_sni.is_empty() || c.tls_passthrough_proxy_protocol)
    {
        return Err(invalid(
            "tls_passthrough_sni",
            "tls_passthrough_sni and tls_passthrough_proxy_protocol need tls_passthrough_to".into(),
        ));
    }
    // ACME stands in for the files: the certificate it keeps is served.
    let has_cert = c.cert.is_some() || c.acme.is_some();
    if c.tls_passthrough_to.is_some() && !has_cert {
        return Err(invalid(
            "tls_passthrough_to",
            "passthrough reads TLS ClientHellos: it needs cert and key (or acme_directory)".into(),
        ));
    }
    if !has_cert && (!c.tls_listen.is_empty() || c.dtls) {
        return Err(invalid(
            "tls_listen",
            "TLS and DTLS need cert and key (PEM files) or acme_directory".into(),
        ));
    }
    Ok(())
}

/// `HOST:PORT` with a port and a host of DNS characters or an IP literal
/// (`[v6]:port` included).
fn valid_host_port(s: &str) -> bool {
    if s.parse::<SocketAddr>().is_ok() {
        return true;
    }
    let Some((host, port)) = s.rsplit_once(':') else {
        return false;
    };
    !host.is_empty()
        && port.parse::<u16>().is_ok_and(|p| p != 0)
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-.".contains(&b))
}
