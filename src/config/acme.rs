//! ACME (RFC 8555, issue 19): the TLS certificate from a CA instead of
//! `cert` and `key` files.

use std::net::SocketAddr;
use std::path::PathBuf;

use super::parse::invalid;
use super::{Config, ConfigError, Options};

/// The state directory's default: systemd's `StateDirectory=turnpike`.
pub const DEFAULT_ACME_DIR: &str = "/var/lib/turnpike/acme";

/// How the certificate is obtained and where it is kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AcmeConfig {
    pub directory: String,
    /// Lower-case DNS names; the first is served to clients without SNI.
    pub domains: Vec<String>,
    pub email: Option<String>,
    /// The account key (PEM PKCS#8), created 0600 if absent.
    pub account_key: PathBuf,
    /// http-01 answered here too, when set.
    pub http_listen: Option<SocketAddr>,
    /// PEM root trusted for the directory's HTTPS instead of the system's.
    pub ca_file: Option<PathBuf>,
    /// Holds `cert.pem` and `key.pem` (0600).
    pub dir: PathBuf,
}

pub(super) fn resolve(o: &Options, c: &mut Config) -> Result<(), ConfigError> {
    let Some(directory) = o.acme_directory.clone() else {
        let others = !o.acme_domains.is_empty()
            || o.acme_email.is_some()
            || o.acme_contact_key_file.is_some()
            || o.acme_http_listen.is_some()
            || o.acme_ca_file.is_some()
            || o.acme_dir.is_some();
        if others {
            return Err(invalid(
                "acme_directory",
                "the acme_* keys need acme_directory".into(),
            ));
        }
        return Ok(());
    };
    if !directory.starts_with("https://") {
        return Err(invalid(
            "acme_directory",
            format!("`{directory}` is not an https:// URL"),
        ));
    }
    if o.cert.is_some() || o.key.is_some() {
        return Err(invalid(
            "acme_directory",
            "use either acme_directory or cert and key, not both".into(),
        ));
    }
    let domains = o
        .acme_domains
        .iter()
        .map(|n| {
            let n = n.trim_end_matches('.').to_ascii_lowercase();
            let ok = !n.is_empty()
                && n.len() <= 253
                && n.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-.".contains(&b));
            if ok {
                Ok(n)
            } else {
                Err(invalid("acme_domains", format!("`{n}` is not a DNS name")))
            }
        })
        .collect::<Result<Vec<_>, _>>()?;
    if domains.is_empty() {
        return Err(invalid(
            "acme_domains",
            "acme_directory needs at least one domain".into(),
        ));
    }
    if let Some(e) = &o.acme_email {
        if !e.contains('@') || e.contains(char::is_whitespace) {
            return Err(invalid(
                "acme_email",
                format!("`{e}` is not an e-mail address"),
            ));
        }
    }
    let http_listen = o
        .acme_http_listen
        .as_ref()
        .map(|s| {
            s.parse::<SocketAddr>()
                .map_err(|_| invalid("acme_http_listen", format!("`{s}` is not IP:PORT")))
        })
        .transpose()?;
    let dir = PathBuf::from(o.acme_dir.as_deref().unwrap_or(DEFAULT_ACME_DIR));
    c.acme = Some(AcmeConfig {
        directory,
        domains,
        email: o.acme_email.clone(),
        account_key: o
            .acme_contact_key_file
            .as_ref()
            .map(PathBuf::from)
            .unwrap_or_else(|| dir.join("account.key")),
        http_listen,
        ca_file: o.acme_ca_file.as_ref().map(PathBuf::from),
        dir,
    });
    Ok(())
}
