//! Server configuration: `turnserver.toml` and the `serve` flags are one
//! schema ([`Options`], in `options.rs`): every key is a flag of the same
//! name (`min_port` is `--min-port`). Flags override the file, the file
//! overrides the defaults, and [`Options::resolve`] validates the result
//! into a [`Config`], one section at a time:
//!
//! | section | keys |
//! | --- | --- |
//! | `listeners.rs` | listen, workers, software, classic STUN, RFC 5780 |
//! | `relay.rs` | port range, relay and external IPs, TCP relays, lifetimes, table sizes |
//! | `auth.rs` | realm, users, REST secrets, OAuth, nonces, reply budget |
//! | `realms.rs` | tenant realms and the SNI names and origins that pick them |
//! | `policy.rs` | peer and client allow and deny ranges, loopback, trusted proxies |
//! | `limits.rs` | quotas, bandwidth, connection caps, handshake deadline |
//! | `tls.rs` | TLS and DTLS listeners, certificate |
//! | `store.rs` | the credential store |
//! | `admin.rs` | admin API, metrics labels, log level |
//! | `fleet.rs` | node name and region |
//! | `drain.rs` | drain exit conditions, health listener, readiness |
//! | `usage.rs` | usage records, webhooks |
//! | `selftest.rs` | the self-test page: where, and its rate limits |

#![warn(unreachable_pub, missing_debug_implementations)]

use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::time::Duration;

use crate::auth::rest::Secret;
use crate::auth::UserKeys;
use crate::turn::policy::IpRange;

mod acme;
mod admin;
mod auth;
mod drain;
mod fleet;
mod limits;
mod listeners;
mod options;
mod parse;
mod policy;
pub(crate) mod realms;
mod relay;
pub mod reload;
mod selftest;
mod store;
mod tls;
mod usage;

pub use acme::{AcmeConfig, DEFAULT_ACME_DIR};
pub(crate) use drain::MAX_DRAIN_TIMEOUT;
pub use options::Options;
pub use selftest::SelftestConfig;

/// The documented example configuration, every key at its default.
pub(crate) const EXAMPLE_TOML: &str = include_str!("../../turnserver.toml");

/// A bad configuration, naming the key at fault. Shown as one line: text
/// from the file (a quoted key, a value) may hold control characters, which
/// are shown escaped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {}: {}", printable(path), printable(reason))]
    Unreadable { path: String, reason: String },
    #[error("{}: {}: {}", printable(path), printable(key), printable(reason))]
    Syntax {
        path: String,
        key: String,
        reason: String,
    },
    #[error("{key}: {}", printable(reason))]
    Invalid { key: &'static str, reason: String },
}

/// `s` with control characters (newlines, escapes) written as `\n`, `\u{1b}`.
fn printable(s: &str) -> std::borrow::Cow<'_, str> {
    if !s.chars().any(char::is_control) {
        return s.into();
    }
    s.chars()
        .map(|c| {
            if c.is_control() {
                c.escape_default().to_string()
            } else {
                c.to_string()
            }
        })
        .collect::<String>()
        .into()
}

/// The levels `log_level` accepts.
pub(crate) const LOG_LEVELS: [&str; 5] = ["error", "warn", "info", "debug", "trace"];

/// A validated configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Each address gets a UDP and a TCP listener.
    pub listen: Vec<SocketAddr>,
    pub log_level: String,
    /// "text" or "json".
    pub log_format: String,
    pub min_port: u16,
    pub max_port: u16,
    pub realm: String,
    /// Tenant realms (`[[realms]]`), besides the default `realm`.
    pub realms: Vec<crate::auth::realms::Tenant>,
    /// Static users as (name, keys): passwords are hashed at load.
    pub users: Vec<(String, UserKeys)>,
    pub relay_ips: Vec<IpAddr>,
    /// (public, private or None for "the relay IP of that family").
    pub external_ips: Vec<(IpAddr, Option<IpAddr>)>,
    pub allow_loopback_peers: bool,
    pub allowed_peer_ips: Vec<IpRange>,
    pub denied_peer_ips: Vec<IpRange>,
    /// Clients served at all; empty = everyone.
    pub allowed_client_ips: Vec<IpRange>,
    /// Clients never answered; wins over `allowed_client_ips`.
    pub denied_client_ips: Vec<IpRange>,
    /// Proxies whose TCP and TLS connections start with a PROXY header.
    pub proxy_protocol_from: Vec<IpRange>,
    pub user_quota: u32,
    pub total_quota: u32,
    /// 0 = unlimited.
    pub max_allocations_per_ip: u32,
    pub max_peer_connections: u32,
    pub max_peer_connections_per_user: u32,
    pub max_bps: u64,
    pub stale_nonce: Duration,
    pub auth_reply_rate: u32,
    pub max_allocate_lifetime: Duration,
    pub max_permissions: usize,
    pub max_channels: usize,
    pub software: Option<String>,
    pub workers: usize,
    pub static_auth_secrets: Vec<Secret>,
    pub rest_api_separator: char,
    pub strict_expiry: bool,
    pub oauth: bool,
    /// The OAuth server name (the realm unless set).
    pub server_name: String,
    pub db: String,
    /// `None` = no admin API.
    pub admin_listen: Option<SocketAddr>,
    pub admin_jwt_secret: Option<Secret>,
    /// The admin listener speaks HTTPS with the TLS certificate.
    pub admin_tls: bool,
    pub metrics_user_labels: bool,
    pub tls_listen: Vec<SocketAddr>,
    pub cert: Option<std::path::PathBuf>,
    pub key: Option<std::path::PathBuf>,
    pub dtls: bool,
    /// `tls_passthrough_to`: where web TLS connections go (issue 19).
    pub tls_passthrough_to: Option<String>,
    /// `tls_passthrough_sni`, lower-case.
    pub tls_passthrough_sni: Vec<String>,
    pub tls_passthrough_proxy_protocol: bool,
    /// `tls_passthrough_idle_timeout`: a spliced connection with no byte
    /// either way for this long is closed, giving its slot back.
    pub tls_passthrough_idle_timeout: Duration,
    /// ACME (issue 19): the certificate comes from this CA instead of
    /// `cert` and `key`.
    pub acme: Option<AcmeConfig>,
    pub tcp_relay: bool,
    pub handshake_timeout: Duration,
    pub max_tcp_per_ip: u32,
    pub max_tcp_connections: u32,
    pub max_dtls_handshakes: u32,
    pub rfc5780: bool,
    pub alt_ip: Option<IpAddr>,
    /// `None`: each listen port + 1.
    pub alt_listening_port: Option<u16>,
    /// Answer RFC 3489 Binding requests.
    pub stun_backward_compatibility: bool,
    /// This node's name in the fleet registry.
    pub node_name: String,
    /// This node's region, free text ("" = none).
    pub region: String,
    /// A draining node exits once its allocations are at most this many.
    pub drain_min_allocations: u32,
    /// A draining node exits at the latest this long after the drain began
    /// (`None`: only when its allocations go).
    pub drain_timeout: Option<Duration>,
    /// A listener serving only /livez, /readyz and /healthz, for balancers.
    pub health_listen: Option<SocketAddr>,
    /// /readyz says 503 once the store has been unreachable this long
    /// (`None`: the store does not count).
    pub readyz_store_timeout: Option<Duration>,
    /// The DNS name clients reach this node by (its certificate's name):
    /// `turns:` URLs name it, and draining peers send TLS clients here with
    /// it as ALTERNATE-DOMAIN.
    pub external_name: Option<String>,
    /// Interim usage records of live allocations this often (`None`:
    /// final records only).
    pub usage_interim: Option<Duration>,
    /// Usage records older than this many days are pruned (0 = kept).
    pub usage_retention_days: u32,
    /// Where usage records and events wait while the store is unreachable.
    pub usage_spill_file: std::path::PathBuf,
    /// Webhook receivers.
    pub webhook_urls: Vec<String>,
    /// Signs webhooks; set whenever `webhook_urls` is not empty.
    pub webhook_secret: Option<Secret>,
    /// An undelivered webhook is dropped this long after its event.
    pub webhook_max_age: Duration,
    /// The self-test page (issue 20).
    pub selftest: SelftestConfig,
    /// Lines to log as warnings once logging is up (secret files others
    /// can read); the config is read before the log exists.
    pub warnings: Vec<String>,
}

/// Where the store lives when nothing is said.
pub(crate) const DEFAULT_DB: &str = "sqlite:turnpike.db";

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: vec![
                SocketAddr::from(([0, 0, 0, 0], 3478)),
                SocketAddr::from(([0u16; 8], 3478)),
            ],
            log_level: "info".into(),
            log_format: "text".into(),
            min_port: 49152,
            max_port: 65535,
            realm: "turnpike".into(),
            realms: vec![],
            users: vec![],
            relay_ips: vec![],
            external_ips: vec![],
            allow_loopback_peers: false,
            allowed_peer_ips: vec![],
            denied_peer_ips: vec![],
            allowed_client_ips: vec![],
            denied_client_ips: vec![],
            proxy_protocol_from: vec![],
            user_quota: 0,
            total_quota: 0,
            max_allocations_per_ip: 256,
            max_peer_connections: 64,
            max_peer_connections_per_user: 256,
            max_bps: 0,
            stale_nonce: Duration::from_secs(600),
            auth_reply_rate: 200,
            max_allocate_lifetime: Duration::from_secs(3600),
            max_permissions: 32,
            max_channels: 32,
            software: None,
            workers: 0,
            static_auth_secrets: vec![],
            rest_api_separator: ':',
            strict_expiry: false,
            oauth: false,
            server_name: "turnpike".into(),
            db: DEFAULT_DB.into(),
            admin_listen: Some(SocketAddr::from(([127, 0, 0, 1], 9641))),
            admin_jwt_secret: None,
            admin_tls: false,
            metrics_user_labels: false,
            tls_listen: vec![],
            cert: None,
            key: None,
            dtls: false,
            tls_passthrough_to: None,
            tls_passthrough_sni: Vec::new(),
            tls_passthrough_proxy_protocol: false,
            tls_passthrough_idle_timeout: Duration::from_secs(600),
            acme: None,
            tcp_relay: false,
            handshake_timeout: Duration::from_secs(10),
            max_tcp_per_ip: 256,
            max_tcp_connections: 16384,
            max_dtls_handshakes: 1024,
            rfc5780: false,
            alt_ip: None,
            alt_listening_port: None,
            stun_backward_compatibility: true,
            node_name: fleet::host_name(),
            region: String::new(),
            drain_min_allocations: 0,
            drain_timeout: Some(Duration::from_secs(3600)),
            health_listen: None,
            readyz_store_timeout: None,
            external_name: None,
            usage_interim: Some(Duration::from_secs(300)),
            usage_retention_days: 90,
            usage_spill_file: "turnpike-usage.spill".into(),
            webhook_urls: vec![],
            webhook_secret: None,
            webhook_max_age: Duration::from_secs(86_400),
            selftest: SelftestConfig::default(),
            warnings: vec![],
        }
    }
}

impl Options {
    /// Fills defaults and validates, section by section; the first bad key
    /// is the error.
    pub fn resolve(self) -> Result<Config, ConfigError> {
        let mut c = Config::default();
        listeners::resolve(&self, &mut c)?;
        relay::resolve(&self, &mut c)?;
        auth::resolve(&self, &mut c)?;
        realms::resolve(&self, &mut c)?;
        policy::resolve(&self, &mut c)?;
        limits::resolve(&self, &mut c)?;
        acme::resolve(&self, &mut c)?;
        tls::resolve(&self, &mut c)?;
        store::resolve(&self, &mut c)?;
        admin::resolve(&self, &mut c)?;
        fleet::resolve(&self, &mut c)?;
        drain::resolve(&self, &mut c)?;
        usage::resolve(&self, &mut c)?;
        selftest::resolve(&self, &mut c)?;
        Ok(c)
    }
}

/// Reads a secret from `path`, noting a warning when others can read it.
fn secret_file(c: &mut Config, key: &'static str, path: &str) -> Result<String, ConfigError> {
    c.warnings.extend(crate::secret_file::exposure(path));
    crate::secret_file::read(path).map_err(|e| parse::invalid(key, e))
}

impl Config {
    /// Every realm served: the default, then the tenant realms.
    pub fn realm_names(&self) -> Vec<String> {
        std::iter::once(self.realm.clone())
            .chain(self.realms.iter().map(|t| t.name.to_string()))
            .collect()
    }

    /// Loads an optional file, then applies flags.
    pub fn load(file: Option<&Path>, flags: Options) -> Result<Config, ConfigError> {
        Ok(Self::load_layered(file, flags)?.0)
    }

    /// [`Config::load`], also returning the layered options it was made
    /// from (what a reload compares the file with).
    pub fn load_layered(
        file: Option<&Path>,
        flags: Options,
    ) -> Result<(Config, Options), ConfigError> {
        let base = match file {
            Some(p) => Options::from_file(p)?,
            None => Options::default(),
        };
        let options = base.overlay(flags);
        Ok((options.clone().resolve()?, options))
    }
}

#[cfg(test)]
mod tests;
