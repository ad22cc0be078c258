//! Server configuration: `turnserver.toml` and the `serve` flags are one
//! schema ([`Options`]): every key is a flag of the same name (`min_port` is
//! `--min-port`). Flags override the file, the file overrides the defaults,
//! and [`Options::resolve`] validates the result into a [`Config`].

use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::time::Duration;

use serde::Deserialize;

use crate::auth::rest::Secret;
use crate::auth::{Credentials, UserKeys};
use crate::turn::policy::IpRange;

/// The documented example configuration, every key at its default.
pub const EXAMPLE_TOML: &str = include_str!("../turnserver.toml");

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
pub const LOG_LEVELS: [&str; 5] = ["error", "warn", "info", "debug", "trace"];

/// One schema for the file and the flags; every field optional so layers merge.
#[derive(Debug, Default, Clone, Deserialize, clap::Args)]
#[serde(deny_unknown_fields)]
pub struct Options {
    /// Address to listen on for UDP and TCP, repeatable [default: 0.0.0.0:3478 and [::]:3478]
    #[arg(long = "listen", value_name = "IP:PORT")]
    #[serde(default)]
    pub listen: Vec<String>,

    /// Log verbosity: error, warn, info, debug or trace [default: info]
    #[arg(long, value_name = "LEVEL")]
    pub log_level: Option<String>,

    /// Lowest relay port [default: 49152]
    #[arg(long, value_name = "PORT")]
    pub min_port: Option<i64>,

    /// Highest relay port [default: 65535]
    #[arg(long, value_name = "PORT")]
    pub max_port: Option<i64>,

    /// Realm for long-term credentials [default: turnpike]
    #[arg(long, value_name = "REALM")]
    pub realm: Option<String>,

    /// Static user NAME:PASSWORD or NAME:0xHA1KEY, repeatable; kept as keys only
    #[arg(long = "user", value_name = "NAME:PASSWORD")]
    #[serde(default)]
    pub user: Vec<String>,

    /// Address relay sockets bind to, repeatable (one IPv4, one IPv6) [default: the listening addresses]
    #[arg(long = "relay-ip", value_name = "IP")]
    #[serde(default)]
    pub relay_ip: Vec<String>,

    /// Public address told to clients, PUBLIC or PUBLIC/PRIVATE (PRIVATE = a relay IP), repeatable
    #[arg(long = "external-ip", value_name = "PUBLIC[/PRIVATE]")]
    #[serde(default)]
    pub external_ip: Vec<String>,

    /// Allow peers on loopback (for local testing only) [default: false]
    #[arg(long, value_name = "BOOL", num_args = 0..=1, default_missing_value = "true")]
    pub allow_loopback_peers: Option<bool>,

    /// Peer range opened despite the default deny list: IP, IP/PREFIX or IP-IP, repeatable
    #[arg(long = "allowed-peer-ip", value_name = "RANGE")]
    #[serde(default)]
    pub allowed_peer_ip: Vec<String>,

    /// Peer range refused in addition to the default deny list, repeatable
    #[arg(long = "denied-peer-ip", value_name = "RANGE")]
    #[serde(default)]
    pub denied_peer_ip: Vec<String>,

    /// Allocations per user, 0 = unlimited [default: 0]
    #[arg(long, value_name = "N")]
    pub user_quota: Option<i64>,

    /// Allocations in total, 0 = unlimited [default: 0]
    #[arg(long, value_name = "N")]
    pub total_quota: Option<i64>,

    /// Allocations per client address (IPv6: per /64), 0 = unlimited [default: 256]
    #[arg(long, value_name = "N")]
    pub max_allocations_per_ip: Option<i64>,

    /// RFC 6062 peer connections (pending and bound) per TCP allocation [default: 64]
    #[arg(long, value_name = "N")]
    pub max_peer_connections: Option<i64>,

    /// RFC 6062 peer connections (pending and bound) per user [default: 256]
    #[arg(long, value_name = "N")]
    pub max_peer_connections_per_user: Option<i64>,

    /// Bits per second per allocation and direction, 0 = unlimited [default: 0]
    #[arg(long, value_name = "BPS")]
    pub max_bps: Option<i64>,

    /// Seconds a nonce stays valid [default: 600]
    #[arg(long, value_name = "SECONDS")]
    pub stale_nonce: Option<i64>,

    /// 401/438 answers per second per source address, 0 = unlimited [default: 200]
    #[arg(long, value_name = "N")]
    pub auth_reply_rate: Option<i64>,

    /// Longest allocation lifetime granted, seconds [default: 3600]
    #[arg(long, value_name = "SECONDS")]
    pub max_allocate_lifetime: Option<i64>,

    /// Permissions per allocation [default: 32]
    #[arg(long, value_name = "N")]
    pub max_permissions: Option<i64>,

    /// Channels per allocation [default: 32]
    #[arg(long, value_name = "N")]
    pub max_channels: Option<i64>,

    /// SOFTWARE attribute value; none is sent unless set [default: none]
    #[arg(long, value_name = "NAME")]
    pub software: Option<String>,

    /// Worker threads, 0 = one per CPU [default: 0]
    #[arg(long, value_name = "N")]
    pub workers: Option<i64>,

    /// REST API shared secret (ephemeral credentials), repeatable: all are accepted; prefer --static-auth-secret-file
    #[arg(
        long = "static-auth-secret",
        value_name = "SECRET",
        env = "TURNPIKE_STATIC_AUTH_SECRET",
        hide_env_values = true
    )]
    #[serde(default)]
    pub static_auth_secret: Vec<String>,

    /// Separator between expiry and user in REST usernames [default: ":"]
    #[arg(long, value_name = "CHAR")]
    pub rest_api_separator: Option<String>,

    /// Also refuse Refresh once a REST username has expired [default: false]
    #[arg(long, value_name = "BOOL", num_args = 0..=1, default_missing_value = "true")]
    pub strict_expiry: Option<bool>,

    /// Accept OAuth access tokens (RFC 7635) [default: false]
    #[arg(long, value_name = "BOOL", num_args = 0..=1, default_missing_value = "true")]
    pub oauth: Option<bool>,

    /// Server name for OAuth: THIRD-PARTY-AUTHORIZATION and the token's associated data [default: the realm]
    #[arg(long, value_name = "NAME")]
    pub server_name: Option<String>,

    /// Credential store: sqlite:PATH (created on first run) or postgres://... [default: sqlite:turnpike.db]
    #[arg(long, value_name = "URL")]
    pub db: Option<String>,

    /// Admin API and metrics address, or "off" [default: 127.0.0.1:9641]
    #[arg(long, value_name = "IP:PORT")]
    pub admin_listen: Option<String>,

    /// HS256 secret for admin API tokens; prefer --admin-jwt-secret-file [default: one generated into the store]
    #[arg(
        long,
        value_name = "SECRET",
        env = "TURNPIKE_ADMIN_JWT_SECRET",
        hide_env_values = true
    )]
    pub admin_jwt_secret: Option<String>,

    /// Label per-user metrics with user names [default: false]
    #[arg(long, value_name = "BOOL", num_args = 0..=1, default_missing_value = "true")]
    pub metrics_user_labels: Option<bool>,

    /// Address for TURN over TLS (and DTLS with --dtls), repeatable; the port defaults to 5349
    #[arg(long = "tls-listen", value_name = "IP[:PORT]")]
    #[serde(default)]
    pub tls_listen: Vec<String>,

    /// Certificate chain, PEM (reloaded on SIGHUP and POST /api/v1/reload)
    #[arg(long, value_name = "FILE")]
    pub cert: Option<String>,

    /// Private key, PEM (coturn: --pkey)
    #[arg(long, alias = "pkey", value_name = "FILE")]
    pub key: Option<String>,

    /// Also serve DTLS: on the UDP side of each TLS address and on every UDP listener [default: false]
    #[arg(long, value_name = "BOOL", num_args = 0..=1, default_missing_value = "true")]
    pub dtls: Option<bool>,

    /// Allow TCP relay allocations (RFC 6062) [default: false]
    #[arg(long, value_name = "BOOL", num_args = 0..=1, default_missing_value = "true")]
    pub tcp_relay: Option<bool>,

    /// Seconds a TCP, TLS or DTLS client has to finish its handshake and send its first message [default: 10]
    #[arg(long, value_name = "SECONDS")]
    pub handshake_timeout: Option<i64>,

    /// TCP and TLS connections per source address (IPv6: per /64) [default: 256]
    #[arg(long, value_name = "N")]
    pub max_tcp_per_ip: Option<i64>,

    /// TCP and TLS connections in total [default: 16384]
    #[arg(long, value_name = "N")]
    pub max_tcp_connections: Option<i64>,

    /// DTLS handshakes past the cookie exchange and not finished, in total [default: 1024]
    #[arg(long, value_name = "N")]
    pub max_dtls_handshakes: Option<i64>,

    /// Serve RFC 5780 NAT behaviour discovery over UDP (needs --alt-ip) [default: false]
    #[arg(long, value_name = "BOOL", num_args = 0..=1, default_missing_value = "true")]
    pub rfc5780: Option<bool>,

    /// The second IP address RFC 5780 answers from (same family as a listen address)
    #[arg(long, value_name = "IP")]
    pub alt_ip: Option<String>,

    /// The alternate port for RFC 5780 [default: each listen port + 1]
    #[arg(long, value_name = "PORT")]
    pub alt_listening_port: Option<i64>,

    /// Answer classic RFC 3489 Binding requests (no magic cookie), as coturn does [default: true]
    #[arg(long, value_name = "BOOL", num_args = 0..=1, default_missing_value = "true")]
    pub stun_backward_compatibility: Option<bool>,

    /// coturn's switch: true = stun_backward_compatibility false [default: false]
    #[arg(long, value_name = "BOOL", num_args = 0..=1, default_missing_value = "true")]
    pub no_stun_backward_compatibility: Option<bool>,

    // ----- secrets from files (the env and file alternatives to argv) -----
    /// File holding one REST API shared secret (a trailing newline is ignored), repeatable
    #[arg(long = "static-auth-secret-file", value_name = "FILE")]
    #[serde(default)]
    pub static_auth_secret_file: Vec<String>,

    /// File holding the HS256 secret for admin API tokens
    #[arg(long, value_name = "FILE")]
    pub admin_jwt_secret_file: Option<String>,
}

/// A validated configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Each address gets a UDP and a TCP listener.
    pub listen: Vec<SocketAddr>,
    pub log_level: String,
    pub min_port: u16,
    pub max_port: u16,
    pub realm: String,
    /// Static users as (name, keys): passwords are hashed at load.
    pub users: Vec<(String, UserKeys)>,
    pub relay_ips: Vec<IpAddr>,
    /// (public, private or None for "the relay IP of that family").
    pub external_ips: Vec<(IpAddr, Option<IpAddr>)>,
    pub allow_loopback_peers: bool,
    pub allowed_peer_ips: Vec<IpRange>,
    pub denied_peer_ips: Vec<IpRange>,
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
    pub metrics_user_labels: bool,
    pub tls_listen: Vec<SocketAddr>,
    pub cert: Option<std::path::PathBuf>,
    pub key: Option<std::path::PathBuf>,
    pub dtls: bool,
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
    /// Lines to log as warnings once logging is up (secret files others
    /// can read); the config is read before the log exists.
    pub warnings: Vec<String>,
}

/// Where the store lives when nothing is said.
pub const DEFAULT_DB: &str = "sqlite:turnpike.db";

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: vec![
                SocketAddr::from(([0, 0, 0, 0], 3478)),
                SocketAddr::from(([0u16; 8], 3478)),
            ],
            log_level: "info".into(),
            min_port: 49152,
            max_port: 65535,
            realm: "turnpike".into(),
            users: vec![],
            relay_ips: vec![],
            external_ips: vec![],
            allow_loopback_peers: false,
            allowed_peer_ips: vec![],
            denied_peer_ips: vec![],
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
            metrics_user_labels: false,
            tls_listen: vec![],
            cert: None,
            key: None,
            dtls: false,
            tcp_relay: false,
            handshake_timeout: Duration::from_secs(10),
            max_tcp_per_ip: 256,
            max_tcp_connections: 16384,
            max_dtls_handshakes: 1024,
            rfc5780: false,
            alt_ip: None,
            alt_listening_port: None,
            stun_backward_compatibility: true,
            warnings: vec![],
        }
    }
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

impl Options {
    /// Parses TOML text; `path` only names the source in errors.
    pub fn from_toml(text: &str, path: &str) -> Result<Options, ConfigError> {
        let de = toml::Deserializer::new(text);
        serde_path_to_error::deserialize(de).map_err(|e| {
            let key = e.path().to_string();
            let inner = e.into_inner();
            let reason = one_line(inner.message());
            // serde names unknown keys in its message, not in the path.
            let key = if key == "." || key.is_empty() {
                "(top level)".to_string()
            } else {
                key
            };
            ConfigError::Syntax {
                path: path.to_string(),
                key,
                reason,
            }
        })
    }

    /// Reads and parses a config file.
    pub fn from_file(path: &Path) -> Result<Options, ConfigError> {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Unreadable {
            path: shown.clone(),
            reason: e.to_string(),
        })?;
        Self::from_toml(&text, &shown)
    }

    /// Layers `over` (flags) on top of `self` (file).
    pub fn overlay(mut self, over: Options) -> Options {
        if !over.listen.is_empty() {
            self.listen = over.listen;
        }
        self.log_level = over.log_level.or(self.log_level);
        self.min_port = over.min_port.or(self.min_port);
        self.max_port = over.max_port.or(self.max_port);
        self.realm = over.realm.or(self.realm);
        for (mine, theirs) in [
            (&mut self.user, over.user),
            (&mut self.relay_ip, over.relay_ip),
            (&mut self.external_ip, over.external_ip),
            (&mut self.allowed_peer_ip, over.allowed_peer_ip),
            (&mut self.denied_peer_ip, over.denied_peer_ip),
        ] {
            if !theirs.is_empty() {
                *mine = theirs;
            }
        }
        self.allow_loopback_peers = over.allow_loopback_peers.or(self.allow_loopback_peers);
        self.user_quota = over.user_quota.or(self.user_quota);
        self.total_quota = over.total_quota.or(self.total_quota);
        self.max_allocations_per_ip = over.max_allocations_per_ip.or(self.max_allocations_per_ip);
        self.max_peer_connections = over.max_peer_connections.or(self.max_peer_connections);
        self.max_peer_connections_per_user = over
            .max_peer_connections_per_user
            .or(self.max_peer_connections_per_user);
        self.max_bps = over.max_bps.or(self.max_bps);
        self.stale_nonce = over.stale_nonce.or(self.stale_nonce);
        self.auth_reply_rate = over.auth_reply_rate.or(self.auth_reply_rate);
        self.max_allocate_lifetime = over.max_allocate_lifetime.or(self.max_allocate_lifetime);
        self.max_permissions = over.max_permissions.or(self.max_permissions);
        self.max_channels = over.max_channels.or(self.max_channels);
        self.software = over.software.or(self.software);
        self.workers = over.workers.or(self.workers);
        self.rest_api_separator = over.rest_api_separator.or(self.rest_api_separator);
        self.strict_expiry = over.strict_expiry.or(self.strict_expiry);
        self.oauth = over.oauth.or(self.oauth);
        self.server_name = over.server_name.or(self.server_name);
        self.db = over.db.or(self.db);
        self.admin_listen = over.admin_listen.or(self.admin_listen);
        if !over.tls_listen.is_empty() {
            self.tls_listen = over.tls_listen;
        }
        self.cert = over.cert.or(self.cert);
        self.key = over.key.or(self.key);
        self.dtls = over.dtls.or(self.dtls);
        self.tcp_relay = over.tcp_relay.or(self.tcp_relay);
        self.handshake_timeout = over.handshake_timeout.or(self.handshake_timeout);
        self.max_tcp_per_ip = over.max_tcp_per_ip.or(self.max_tcp_per_ip);
        self.max_tcp_connections = over.max_tcp_connections.or(self.max_tcp_connections);
        self.max_dtls_handshakes = over.max_dtls_handshakes.or(self.max_dtls_handshakes);
        self.rfc5780 = over.rfc5780.or(self.rfc5780);
        self.alt_ip = over.alt_ip.or(self.alt_ip.take());
        self.alt_listening_port = over.alt_listening_port.or(self.alt_listening_port);
        // The two spellings are one setting: the later layer's wins.
        match (
            over.stun_backward_compatibility,
            over.no_stun_backward_compatibility,
        ) {
            (None, None) => {}
            (on, off) => {
                self.stun_backward_compatibility = on;
                self.no_stun_backward_compatibility = off;
            }
        }
        self.metrics_user_labels = over.metrics_user_labels.or(self.metrics_user_labels);
        // A secret and its file are one setting: flags (or the environment)
        // giving either replace both from the file.
        if !over.static_auth_secret.is_empty() || !over.static_auth_secret_file.is_empty() {
            self.static_auth_secret = over.static_auth_secret;
            self.static_auth_secret_file = over.static_auth_secret_file;
        }
        if over.admin_jwt_secret.is_some() || over.admin_jwt_secret_file.is_some() {
            self.admin_jwt_secret = over.admin_jwt_secret;
            self.admin_jwt_secret_file = over.admin_jwt_secret_file;
        }
        self
    }

    /// Fills defaults and validates.
    pub fn resolve(self) -> Result<Config, ConfigError> {
        let d = Config::default();
        let listen = if self.listen.is_empty() {
            d.listen
        } else {
            self.listen
                .iter()
                .map(|s| {
                    s.parse::<SocketAddr>().map_err(|_| ConfigError::Invalid {
                        key: "listen",
                        reason: format!("`{s}` is not IP:PORT (IPv6 as [ADDR]:PORT, port 0-65535)"),
                    })
                })
                .collect::<Result<_, _>>()?
        };
        let log_level = self.log_level.unwrap_or(d.log_level);
        if !LOG_LEVELS.contains(&log_level.as_str()) {
            return Err(ConfigError::Invalid {
                key: "log_level",
                reason: format!("`{log_level}` is not one of {}", LOG_LEVELS.join(", ")),
            });
        }
        let port = |key: &'static str, v: Option<i64>, default: u16| match v {
            None => Ok(default),
            Some(p) if (1..=65535).contains(&p) => Ok(p as u16),
            Some(p) => Err(ConfigError::Invalid {
                key,
                reason: format!("{p} is not a port number (1-65535)"),
            }),
        };
        let min_port = port("min_port", self.min_port, d.min_port)?;
        let max_port = port("max_port", self.max_port, d.max_port)?;
        if min_port > max_port {
            return Err(ConfigError::Invalid {
                key: "min_port",
                reason: format!("min_port {min_port} is above max_port {max_port}"),
            });
        }
        let realm = self.realm.unwrap_or(d.realm);
        if realm.is_empty() || realm.chars().count() > 127 {
            return Err(invalid(
                "realm",
                format!("`{realm}` must be 1-127 characters"),
            ));
        }
        let mut creds = Credentials::new(&realm);
        let mut users = Vec::new();
        for spec in &self.user {
            // Never echo the spec: it holds a password.
            creds.add_spec(spec).map_err(|e| {
                invalid(
                    "user",
                    format!("{e} (entry for `{}`)", spec.split(':').next().unwrap_or("")),
                )
            })?;
            let name = spec.split_once(':').map(|(n, _)| n).unwrap_or_default();
            let keys = creds.get(name).expect("just added").clone();
            users.retain(|(n, _): &(String, UserKeys)| n != name);
            users.push((name.to_string(), keys));
        }
        let relay_ips = self
            .relay_ip
            .iter()
            .map(|s| {
                s.parse::<IpAddr>()
                    .map_err(|_| invalid("relay_ip", format!("`{s}` is not an IP address")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        if let Some(ip) = relay_ips.iter().find(|ip| ip.is_unspecified()) {
            return Err(invalid(
                "relay_ip",
                format!("`{ip}` is a wildcard; name a real address"),
            ));
        }
        let external_ips = self
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
        let ranges = |key: &'static str, list: &[String]| {
            list.iter()
                .map(|s| IpRange::parse(s).map_err(|e| invalid(key, e.to_string())))
                .collect::<Result<Vec<_>, _>>()
        };
        let allowed_peer_ips = ranges("allowed_peer_ip", &self.allowed_peer_ip)?;
        let denied_peer_ips = ranges("denied_peer_ip", &self.denied_peer_ip)?;
        let count = |key: &'static str, v: Option<i64>, default: u64, max: u64| match v {
            None => Ok(default),
            Some(n) if n >= 0 && (n as u64) <= max => Ok(n as u64),
            Some(n) => Err(invalid(key, format!("{n} is out of range 0-{max}"))),
        };
        let user_quota = count(
            "user_quota",
            self.user_quota,
            d.user_quota.into(),
            u32::MAX.into(),
        )? as u32;
        let total_quota = count(
            "total_quota",
            self.total_quota,
            d.total_quota.into(),
            u32::MAX.into(),
        )? as u32;
        let max_allocations_per_ip = count(
            "max_allocations_per_ip",
            self.max_allocations_per_ip,
            d.max_allocations_per_ip.into(),
            u32::MAX.into(),
        )? as u32;
        let max_bps = count("max_bps", self.max_bps, d.max_bps, u64::MAX >> 1)?;
        let stale_nonce = count(
            "stale_nonce",
            self.stale_nonce,
            d.stale_nonce.as_secs(),
            86_400,
        )?;
        if stale_nonce == 0 {
            return Err(invalid("stale_nonce", "must be at least 1 second".into()));
        }
        let auth_reply_rate = count(
            "auth_reply_rate",
            self.auth_reply_rate,
            d.auth_reply_rate.into(),
            1_000_000,
        )? as u32;
        let max_allocate_lifetime = count(
            "max_allocate_lifetime",
            self.max_allocate_lifetime,
            d.max_allocate_lifetime.as_secs(),
            86_400,
        )?;
        if max_allocate_lifetime < 600 {
            return Err(invalid(
                "max_allocate_lifetime",
                format!("{max_allocate_lifetime} is below the 600 s default lifetime"),
            ));
        }
        let max_permissions = count(
            "max_permissions",
            self.max_permissions,
            d.max_permissions as u64,
            10_000,
        )?;
        let max_channels = count(
            "max_channels",
            self.max_channels,
            d.max_channels as u64,
            4096,
        )?;
        if max_permissions == 0 || max_channels == 0 {
            return Err(invalid(
                "max_permissions",
                "max_permissions and max_channels must be at least 1".into(),
            ));
        }
        let software = self.software.or(d.software);
        if let Some(sw) = &software {
            if sw.is_empty() || sw.chars().count() > 127 {
                return Err(invalid("software", "must be 1-127 characters".into()));
            }
        }
        let workers = count("workers", self.workers, 0, 1024)? as usize;
        let mut static_auth_secrets = Vec::new();
        for secret in &self.static_auth_secret {
            if secret.is_empty() {
                return Err(invalid(
                    "static_auth_secret",
                    "a secret must not be empty".into(),
                ));
            }
            static_auth_secrets.push(Secret(secret.as_bytes().to_vec()));
        }
        let mut warnings = Vec::new();
        let mut secret_file = |key: &'static str, path: &str| {
            warnings.extend(crate::secret_file::exposure(path));
            crate::secret_file::read(path).map_err(|e| invalid(key, e))
        };
        for path in &self.static_auth_secret_file {
            let secret = secret_file("static_auth_secret_file", path)?;
            static_auth_secrets.push(Secret(secret.into_bytes()));
        }
        let admin_jwt_secret = match (self.admin_jwt_secret, &self.admin_jwt_secret_file) {
            (Some(_), Some(_)) => {
                return Err(invalid(
                    "admin_jwt_secret_file",
                    "set admin_jwt_secret or admin_jwt_secret_file, not both".into(),
                ))
            }
            (None, Some(path)) => Some(secret_file("admin_jwt_secret_file", path)?),
            (s, None) => s,
        };
        let rest_api_separator = match self.rest_api_separator.as_deref() {
            None => d.rest_api_separator,
            Some(sep) => {
                let mut chars = sep.chars();
                match (chars.next(), chars.next()) {
                    (Some(c), None) if !c.is_ascii_digit() && !c.is_control() => c,
                    _ => {
                        return Err(invalid(
                            "rest_api_separator",
                            format!("`{sep}` must be one character, not a digit"),
                        ))
                    }
                }
            }
        };
        let server_name = self.server_name.unwrap_or_else(|| realm.clone());
        if server_name.is_empty() || server_name.len() > 255 {
            return Err(invalid("server_name", "must be 1-255 bytes".into()));
        }
        let db = self.db.unwrap_or(d.db);
        if !(db.starts_with("sqlite:")
            || db.starts_with("postgres://")
            || db.starts_with("postgresql://"))
        {
            return Err(invalid(
                "db",
                "expected sqlite:PATH or postgres://USER@HOST/DB".into(),
            ));
        }
        let admin_listen = match self.admin_listen.as_deref() {
            None => d.admin_listen,
            Some("off") => None,
            Some(a) => Some(a.parse::<SocketAddr>().map_err(|_| {
                invalid("admin_listen", format!("`{a}` is not IP:PORT or \"off\""))
            })?),
        };
        let admin_jwt_secret = match admin_jwt_secret {
            Some(s) if s.len() < 16 => {
                return Err(invalid(
                    "admin_jwt_secret",
                    "must be at least 16 bytes".into(),
                ))
            }
            s => s.map(|s| Secret(s.into_bytes())),
        };
        let tls_listen = self
            .tls_listen
            .iter()
            .map(|s| {
                s.parse::<SocketAddr>()
                    .or_else(|_| {
                        s.trim_matches(|c| c == '[' || c == ']')
                            .parse::<IpAddr>()
                            .map(|ip| SocketAddr::new(ip, 5349))
                    })
                    .map_err(|_| invalid("tls_listen", format!("`{s}` is not IP or IP:PORT")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let cert = self.cert.map(std::path::PathBuf::from);
        let key = self.key.map(std::path::PathBuf::from);
        if cert.is_some() != key.is_some() {
            return Err(invalid("cert", "cert and key go together".into()));
        }
        let dtls = self.dtls.unwrap_or(d.dtls);
        if cert.is_none() && (!tls_listen.is_empty() || dtls) {
            return Err(invalid(
                "tls_listen",
                "TLS and DTLS need cert and key (PEM files)".into(),
            ));
        }
        let handshake_timeout = count(
            "handshake_timeout",
            self.handshake_timeout,
            d.handshake_timeout.as_secs(),
            600,
        )?;
        if handshake_timeout == 0 {
            return Err(invalid(
                "handshake_timeout",
                "must be at least 1 second".into(),
            ));
        }
        let cap = |key: &'static str, v: Option<i64>, default: u32| {
            count(key, v, default.into(), 1 << 24).and_then(|n| {
                if n == 0 {
                    Err(invalid(key, "must be at least 1".into()))
                } else {
                    Ok(n as u32)
                }
            })
        };
        let max_tcp_per_ip = cap("max_tcp_per_ip", self.max_tcp_per_ip, d.max_tcp_per_ip)?;
        let max_peer_connections = cap(
            "max_peer_connections",
            self.max_peer_connections,
            d.max_peer_connections,
        )?;
        let max_peer_connections_per_user = cap(
            "max_peer_connections_per_user",
            self.max_peer_connections_per_user,
            d.max_peer_connections_per_user,
        )?;
        let max_tcp_connections = cap(
            "max_tcp_connections",
            self.max_tcp_connections,
            d.max_tcp_connections,
        )?;
        let max_dtls_handshakes = cap(
            "max_dtls_handshakes",
            self.max_dtls_handshakes,
            d.max_dtls_handshakes,
        )?;
        let rfc5780 = self.rfc5780.unwrap_or(d.rfc5780);
        let stun_backward_compatibility = match (
            self.stun_backward_compatibility,
            self.no_stun_backward_compatibility,
        ) {
            (Some(on), Some(off)) if on == off => {
                return Err(invalid(
                    "no_stun_backward_compatibility",
                    format!("{off} contradicts stun_backward_compatibility = {on}; set one"),
                ))
            }
            (Some(on), _) => on,
            (None, Some(off)) => !off,
            (None, None) => d.stun_backward_compatibility,
        };
        let alt_ip = match &self.alt_ip {
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
        let alt_listening_port = match self.alt_listening_port {
            None => None,
            Some(p) if (1..=65535).contains(&p) => Some(p as u16),
            Some(p) => {
                return Err(invalid(
                    "alt_listening_port",
                    format!("{p} is not a port (1-65535)"),
                ))
            }
        };
        if rfc5780 {
            // RFC 5780 §6: the server needs two IP addresses; answering
            // CHANGE-REQUEST from one would mislead every probe.
            let Some(alt) = alt_ip else {
                return Err(invalid(
                    "rfc5780",
                    "needs alt_ip, a second IP address of this host to answer from".into(),
                ));
            };
            let primary = listen
                .iter()
                .find(|l| l.is_ipv4() == alt.is_ipv4() && !l.ip().is_unspecified());
            match primary {
                None => {
                    return Err(invalid(
                        "rfc5780",
                        format!("needs a listen address of a specific IP of the same family as alt_ip {alt} (not a wildcard)"),
                    ))
                }
                Some(p) if p.ip() == alt => {
                    return Err(invalid("alt_ip", format!("{alt} is the listen address; it must be a second one")))
                }
                Some(_) => {}
            }
        }
        Ok(Config {
            listen,
            log_level,
            min_port,
            max_port,
            realm,
            users,
            relay_ips,
            external_ips,
            allow_loopback_peers: self.allow_loopback_peers.unwrap_or(d.allow_loopback_peers),
            allowed_peer_ips,
            denied_peer_ips,
            user_quota,
            total_quota,
            max_allocations_per_ip,
            max_peer_connections,
            max_peer_connections_per_user,
            max_bps,
            stale_nonce: Duration::from_secs(stale_nonce),
            auth_reply_rate,
            max_allocate_lifetime: Duration::from_secs(max_allocate_lifetime),
            max_permissions: max_permissions as usize,
            max_channels: max_channels as usize,
            software,
            workers,
            static_auth_secrets,
            rest_api_separator,
            strict_expiry: self.strict_expiry.unwrap_or(d.strict_expiry),
            oauth: self.oauth.unwrap_or(d.oauth),
            server_name,
            db,
            admin_listen,
            admin_jwt_secret,
            metrics_user_labels: self.metrics_user_labels.unwrap_or(d.metrics_user_labels),
            tls_listen,
            cert,
            key,
            dtls,
            tcp_relay: self.tcp_relay.unwrap_or(d.tcp_relay),
            handshake_timeout: Duration::from_secs(handshake_timeout),
            max_tcp_per_ip,
            max_tcp_connections,
            max_dtls_handshakes,
            rfc5780,
            alt_ip,
            alt_listening_port,
            stun_backward_compatibility,
            warnings,
        })
    }
}

fn invalid(key: &'static str, reason: String) -> ConfigError {
    ConfigError::Invalid { key, reason }
}

impl Config {
    /// Loads an optional file, then applies flags.
    pub fn load(file: Option<&Path>, flags: Options) -> Result<Config, ConfigError> {
        let base = match file {
            Some(p) => Options::from_file(p)?,
            None => Options::default(),
        };
        base.overlay(flags).resolve()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Options::from_toml(text, "test.toml")?.resolve()
    }

    /// Found by the `config` fuzz target (fuzz/artifacts/config/
    /// crash-ef824977…): a quoted key holding a newline made the error two
    /// lines. A value with one does the same through `resolve`.
    #[test]
    fn errors_about_keys_and_values_with_control_characters_stay_on_one_line() {
        let crash = b"\"\\n\"= 702#er,,,,,$,,,,,,\t\t\t\t\t\t\t\tTI";
        let e = parse(std::str::from_utf8(crash).unwrap()).unwrap_err();
        let shown = e.to_string();
        assert!(!shown.contains('\n'), "{shown}");
        assert!(
            shown.starts_with("test.toml: \\n: unknown field"),
            "{shown}"
        );
        let e = parse("listen = [\"a\\nb\\u001b[31m\"]").unwrap_err();
        assert_eq!(
            e.to_string(),
            "listen: `a\\nb\\u{1b}[31m` is not IP:PORT (IPv6 as [ADDR]:PORT, port 0-65535)"
        );
    }

    #[test]
    fn a_user_key_with_multi_byte_characters_is_an_error_not_a_panic() {
        let text = format!("user = [\"u:0xa{}a\"]", "\u{e9}".repeat(15));
        let e = parse(&text).unwrap_err();
        assert!(matches!(e, ConfigError::Invalid { key: "user", .. }), "{e}");
    }

    #[test]
    fn the_example_file_documents_exactly_the_defaults() {
        assert_eq!(parse(EXAMPLE_TOML), Ok(Config::default()));
    }

    #[test]
    fn every_flag_is_a_key_in_the_example_file() {
        use clap::CommandFactory;
        #[derive(clap::Parser)]
        struct Probe {
            #[command(flatten)]
            o: Options,
        }
        for arg in Probe::command().get_arguments() {
            let Some(long) = arg.get_long() else { continue };
            let key = long.replace('-', "_");
            assert!(
                EXAMPLE_TOML
                    .lines()
                    .any(|l| l.starts_with(&format!("{key} = "))
                        || l.starts_with(&format!("# {key} = "))),
                "turnserver.toml does not document `{key}`"
            );
        }
    }

    #[test]
    fn no_file_means_defaults() {
        assert_eq!(
            Config::load(None, Options::default()),
            Ok(Config::default())
        );
    }

    #[test]
    fn rfc5780_without_a_second_address_refuses_to_start_with_a_clear_message() {
        let e = parse("rfc5780 = true").unwrap_err().to_string();
        assert!(e.starts_with("rfc5780:") && e.contains("alt_ip"), "{e}");
        let e = parse("rfc5780 = true\nalt_ip = \"127.0.0.2\"")
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("rfc5780:") && e.contains("wildcard"), "{e}");
        let ok = "rfc5780 = true\nalt_ip = \"127.0.0.2\"\nlisten = [\"127.0.0.1:3478\"]";
        let c = parse(ok).unwrap();
        assert_eq!(
            (c.rfc5780, c.alt_ip),
            (true, Some("127.0.0.2".parse().unwrap()))
        );
        let e = parse("rfc5780 = true\nalt_ip = \"127.0.0.1\"\nlisten = [\"127.0.0.1:3478\"]")
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("alt_ip:"), "{e}");
        let e = parse("alt_ip = \"nope\"").unwrap_err().to_string();
        assert!(e.starts_with("alt_ip:"), "{e}");
        let e = parse("alt_listening_port = 70000").unwrap_err().to_string();
        assert!(e.starts_with("alt_listening_port:"), "{e}");
    }

    #[test]
    fn dtls_needs_a_certificate_and_a_positive_handshake_cap() {
        let e = parse("dtls = true").unwrap_err().to_string();
        assert!(e.starts_with("tls_listen:"), "{e}");
        let c = parse("dtls = true\ncert = \"c.pem\"\nkey = \"k.pem\"").unwrap();
        assert!(c.dtls);
        assert_eq!(c.max_dtls_handshakes, 1024);
        let e = parse("max_dtls_handshakes = 0").unwrap_err().to_string();
        assert!(e.starts_with("max_dtls_handshakes:"), "{e}");
    }

    #[test]
    fn tls_needs_cert_and_key_and_the_port_defaults_to_5349() {
        let e = parse("tls_listen = [\"127.0.0.1\"]").unwrap_err();
        assert!(e.to_string().starts_with("tls_listen:"), "{e}");
        let e = parse("cert = \"a.pem\"").unwrap_err();
        assert!(e.to_string().starts_with("cert:"), "{e}");
        let c =
            parse("tls_listen = [\"127.0.0.1\", \"[::1]:443\"]\ncert = \"c.pem\"\nkey = \"k.pem\"")
                .unwrap();
        assert_eq!(
            c.tls_listen,
            vec![
                "127.0.0.1:5349".parse::<SocketAddr>().unwrap(),
                "[::1]:443".parse().unwrap()
            ]
        );
    }

    #[test]
    fn unknown_key_is_named() {
        let e = parse("listen = [\"127.0.0.1:3478\"]\nrelay_magic = 1\n").unwrap_err();
        let s = e.to_string();
        assert!(s.contains("relay_magic"), "{s}");
        assert!(!s.contains('\n'));
    }

    #[test]
    fn port_70000_is_refused_naming_the_key() {
        let e = parse("min_port = 70000").unwrap_err();
        assert!(e.to_string().starts_with("min_port:"), "{e}");
        let e = parse("listen = [\"0.0.0.0:70000\"]").unwrap_err();
        assert!(e.to_string().starts_with("listen:"), "{e}");
    }

    #[test]
    fn min_port_above_max_port_is_refused() {
        let e = parse("min_port = 60000\nmax_port = 50000").unwrap_err();
        assert!(e.to_string().starts_with("min_port:"), "{e}");
    }

    #[test]
    fn wrong_type_names_the_key() {
        let e = parse("log_level = 3").unwrap_err();
        assert!(e.to_string().contains("log_level"), "{e}");
        let e = parse("log_level = \"loud\"").unwrap_err();
        assert!(e.to_string().starts_with("log_level:"), "{e}");
    }

    #[test]
    fn flags_override_the_file() {
        let file = Options::from_toml("listen = [\"127.0.0.1:1\"]\nmin_port = 1000", "f").unwrap();
        let flags = Options {
            listen: vec!["127.0.0.1:2".into()],
            ..Default::default()
        };
        let c = file.overlay(flags).resolve().unwrap();
        assert_eq!(c.listen, vec!["127.0.0.1:2".parse().unwrap()]);
        assert_eq!(c.min_port, 1000);
    }

    /// Issue 13: on by default; coturn's negative key and flag turn it
    /// off; the later layer wins; one layer saying both ways is an error.
    #[test]
    fn stun_backward_compatibility_has_coturns_off_switch() {
        use clap::Parser;
        #[derive(clap::Parser)]
        struct Flags {
            #[command(flatten)]
            o: Options,
        }
        let flags = |args: &[&str]| {
            let mut argv = vec!["turnpike"];
            argv.extend_from_slice(args);
            Flags::try_parse_from(argv).unwrap().o
        };
        assert!(parse("").unwrap().stun_backward_compatibility);
        assert!(
            !parse("stun_backward_compatibility = false")
                .unwrap()
                .stun_backward_compatibility
        );
        assert!(
            !parse("no_stun_backward_compatibility = true")
                .unwrap()
                .stun_backward_compatibility
        );
        let off = flags(&["--no-stun-backward-compatibility"]);
        assert!(!off.resolve().unwrap().stun_backward_compatibility);
        let file = Options::from_toml("stun_backward_compatibility = true", "f").unwrap();
        let c = file
            .overlay(flags(&["--no-stun-backward-compatibility"]))
            .resolve();
        assert!(!c.unwrap().stun_backward_compatibility);
        let file = Options::from_toml("no_stun_backward_compatibility = true", "f").unwrap();
        let c = file
            .overlay(flags(&["--stun-backward-compatibility"]))
            .resolve();
        assert!(c.unwrap().stun_backward_compatibility);
        let e = parse("stun_backward_compatibility = true\nno_stun_backward_compatibility = true")
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("no_stun_backward_compatibility:"), "{e}");
    }

    fn secret_file(name: &str, contents: &str) -> String {
        let dir = std::env::temp_dir().join(format!("turnpike-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join(name);
        std::fs::write(&p, contents).unwrap();
        p.display().to_string()
    }

    /// F15: secrets need not go on the command line.
    #[test]
    fn secrets_come_from_files_and_a_bad_file_is_named() {
        let rest = secret_file("rest", "rest-from-file\n");
        let jwt = secret_file("jwt", "jwt-from-file-0123456789\n");
        let c = parse(&format!(
            "static_auth_secret = [\"inline\"]\nstatic_auth_secret_file = [\"{rest}\"]\nadmin_jwt_secret_file = \"{jwt}\""
        ))
        .unwrap();
        assert_eq!(
            c.static_auth_secrets,
            vec![
                Secret(b"inline".to_vec()),
                Secret(b"rest-from-file".to_vec())
            ]
        );
        assert_eq!(
            c.admin_jwt_secret,
            Some(Secret(b"jwt-from-file-0123456789".to_vec()))
        );
        let e = parse("admin_jwt_secret_file = \"/nonexistent/jwt\"")
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("admin_jwt_secret_file:") && e.contains("/nonexistent/jwt"),
            "{e}"
        );
        let e = parse("static_auth_secret_file = [\"/nonexistent/rest\"]")
            .unwrap_err()
            .to_string();
        assert!(e.contains("/nonexistent/rest"), "{e}");
        let short = secret_file("short", "short\n");
        let e = parse(&format!("admin_jwt_secret_file = \"{short}\""))
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("admin_jwt_secret:"), "{e}");
        let e = parse(&format!(
            "admin_jwt_secret = \"0123456789abcdef\"\nadmin_jwt_secret_file = \"{jwt}\""
        ))
        .unwrap_err()
        .to_string();
        assert!(e.contains("not both"), "{e}");
        // A flag (or the environment) replaces the file's secret setting.
        let file = Options::from_toml(&format!("admin_jwt_secret_file = \"{jwt}\""), "f").unwrap();
        let flags = Options {
            admin_jwt_secret: Some("from-the-environment-0123".into()),
            ..Default::default()
        };
        let c = file.overlay(flags).resolve().unwrap();
        assert_eq!(
            c.admin_jwt_secret,
            Some(Secret(b"from-the-environment-0123".to_vec()))
        );
    }

    #[test]
    fn unreadable_file_is_reported() {
        let e = Config::load(
            Some(Path::new("/nonexistent/turnpike.toml")),
            Options::default(),
        )
        .unwrap_err();
        assert!(matches!(e, ConfigError::Unreadable { .. }), "{e}");
    }
}
