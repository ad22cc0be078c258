//! Operating the server: the admin API's address and token secret,
//! metrics labels, log level.

use std::net::SocketAddr;

use super::parse::invalid;
use super::{Config, ConfigError, Options, LOG_LEVELS};
use crate::auth::rest::Secret;

/// An HS256 key shorter than this is guessable (RFC 7518 §3.2 asks for the
/// hash size; 16 bytes is the floor we enforce).
const MIN_JWT_SECRET: usize = 16;

pub(super) fn resolve(o: &Options, c: &mut Config) -> Result<(), ConfigError> {
    if let Some(level) = &o.log_level {
        c.log_level = level.clone();
    }
    if !LOG_LEVELS.contains(&c.log_level.as_str()) {
        return Err(invalid(
            "log_level",
            format!("`{}` is not one of {}", c.log_level, LOG_LEVELS.join(", ")),
        ));
    }
    if let Some(format) = &o.log_format {
        if !["text", "json"].contains(&format.as_str()) {
            return Err(invalid(
                "log_format",
                format!("`{format}` is not one of text, json"),
            ));
        }
        c.log_format = format.clone();
    }
    c.admin_listen = match o.admin_listen.as_deref() {
        None => c.admin_listen,
        Some("off") => None,
        Some(a) => Some(
            a.parse::<SocketAddr>()
                .map_err(|_| invalid("admin_listen", format!("`{a}` is not IP:PORT or \"off\"")))?,
        ),
    };
    let secret = match (&o.admin_jwt_secret, &o.admin_jwt_secret_file) {
        (Some(_), Some(_)) => {
            return Err(invalid(
                "admin_jwt_secret_file",
                "set admin_jwt_secret or admin_jwt_secret_file, not both".into(),
            ))
        }
        (None, Some(path)) => Some(super::secret_file(c, "admin_jwt_secret_file", path)?),
        (s, None) => s.clone(),
    };
    c.admin_jwt_secret = match secret {
        Some(s) if s.len() < MIN_JWT_SECRET => {
            return Err(invalid(
                "admin_jwt_secret",
                "must be at least 16 bytes".into(),
            ))
        }
        s => s.map(|s| Secret(s.into_bytes())),
    };
    c.metrics_user_labels = o.metrics_user_labels.unwrap_or(c.metrics_user_labels);
    c.admin_tls = o.admin_tls.unwrap_or(c.admin_tls);
    if c.admin_tls && c.cert.is_none() && c.acme.is_none() {
        return Err(invalid(
            "admin_tls",
            "needs a certificate: set cert and key, or acme_domains".into(),
        ));
    }
    // Bearer tokens in clear on a network: said at every start (F18).
    if let Some(a) = c
        .admin_listen
        .filter(|a| !a.ip().is_loopback() && !c.admin_tls)
    {
        c.warnings.push(format!(
            "admin_listen {a} is not loopback and admin_tls is off: admin tokens and \
             the console cross the network in clear; set admin_tls = true"
        ));
    }
    Ok(())
}
