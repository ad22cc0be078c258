//! [`Options`]: the one schema of `turnserver.toml` and the `serve` flags
//! (every key is a flag of the same name), and how the layers merge.

use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::ConfigError;

/// One schema for the file and the flags; every field optional so layers merge.
#[derive(Debug, Default, Clone, Deserialize, Serialize, clap::Args)]
#[serde(deny_unknown_fields)]
pub struct Options {
    /// Address to listen on for UDP and TCP, repeatable [default: 0.0.0.0:3478 and [::]:3478]
    #[arg(long = "listen", value_name = "IP:PORT")]
    #[serde(default)]
    pub listen: Vec<String>,

    /// Log verbosity: error, warn, info, debug or trace [default: info]
    #[arg(long, value_name = "LEVEL")]
    pub log_level: Option<String>,

    /// Log format: text, or json (one object per line) [default: text]
    #[arg(long, value_name = "FORMAT")]
    pub log_format: Option<String>,

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

    /// Tenant realm NAME[;sni=A,B][;origins=O1,O2], repeatable (in the file: `[[realms]]` tables)
    #[arg(long = "realms", value_name = "NAME[;sni=..][;origins=..]")]
    #[serde(default)]
    pub realms: Vec<super::realms::RealmTable>,

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

    /// Client range served (IP, IP/PREFIX or IP-IP), repeatable; when any is set, only these [default: all]
    #[arg(long = "allowed-client-ip", value_name = "RANGE")]
    #[serde(default)]
    pub allowed_client_ip: Vec<String>,

    /// Client range never answered on any transport (wins over allowed_client_ip), repeatable
    #[arg(long = "denied-client-ip", value_name = "RANGE")]
    #[serde(default)]
    pub denied_client_ip: Vec<String>,

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
    #[arg(long, value_name = "URL", env = "TURNPIKE_DB", hide_env_values = true)]
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

    /// Serve the admin API (and the console) over HTTPS with the TLS certificate (cert and key, or ACME's) [default: false]
    #[arg(long, value_name = "BOOL", num_args = 0..=1, default_missing_value = "true")]
    pub admin_tls: Option<bool>,

    /// Label per-user metrics with user names [default: false]
    #[arg(long, value_name = "BOOL", num_args = 0..=1, default_missing_value = "true")]
    pub metrics_user_labels: Option<bool>,

    /// Address for TURN over TLS (and DTLS with --dtls), repeatable; the port defaults to 5349
    #[arg(long = "tls-listen", value_name = "IP[:PORT]")]
    #[serde(default)]
    pub tls_listen: Vec<String>,

    /// Proxy range whose TCP and TLS connections must start with a PROXY protocol header (v1 or v2), repeatable [default: none]
    #[arg(long = "proxy-protocol-from", value_name = "RANGE")]
    #[serde(default)]
    pub proxy_protocol_from: Vec<String>,

    /// Certificate chain, PEM (reloaded on SIGHUP and POST /api/v1/reload)
    #[arg(long, value_name = "FILE")]
    pub cert: Option<String>,

    /// Private key, PEM (coturn: --pkey)
    #[arg(long, alias = "pkey", value_name = "FILE")]
    pub key: Option<String>,

    /// Send TLS connections that ask for the web (ALPN h2 or http/1.1 without stun.turn, or an SNI in tls_passthrough_sni), still encrypted, to this HTTPS server
    #[arg(long, value_name = "HOST:PORT")]
    pub tls_passthrough_to: Option<String>,

    /// Server names (SNI) whose TLS connections go to tls_passthrough_to whatever their ALPN, repeatable
    #[arg(long = "tls-passthrough-sni", value_name = "NAME")]
    #[serde(default)]
    pub tls_passthrough_sni: Vec<String>,

    /// Send the passthrough backend a PROXY protocol header naming the real client first [default: false]
    #[arg(long, value_name = "BOOL", num_args = 0..=1, default_missing_value = "true")]
    pub tls_passthrough_proxy_protocol: Option<bool>,

    /// Seconds a passed-through connection may go without a byte either way before it is closed (nginx: proxy_timeout) [default: 600]
    #[arg(long, value_name = "SECONDS")]
    pub tls_passthrough_idle_timeout: Option<i64>,

    /// ACME directory URL to obtain the TLS certificate from (RFC 8555), instead of cert and key
    #[arg(long, value_name = "URL")]
    pub acme_directory: Option<String>,

    /// Domain names the ACME certificate covers, repeatable (the first is the default for clients without SNI)
    #[arg(long = "acme-domains", value_name = "NAME")]
    #[serde(default)]
    pub acme_domains: Vec<String>,

    /// Contact e-mail given to the ACME CA
    #[arg(long, value_name = "EMAIL")]
    pub acme_email: Option<String>,

    /// The ACME account key (PEM, PKCS#8 P-256); created 0600 if absent [default: ACME_DIR/account.key]
    #[arg(long, value_name = "FILE")]
    pub acme_contact_key_file: Option<String>,

    /// Also answer ACME http-01 challenges on this address (IP:PORT, usually port 80)
    #[arg(long, value_name = "IP:PORT")]
    pub acme_http_listen: Option<String>,

    /// PEM root certificate to trust for the ACME directory's HTTPS (a test CA) instead of the system roots
    #[arg(long, value_name = "FILE")]
    pub acme_ca_file: Option<String>,

    /// Where the ACME certificate and key are kept [default: /var/lib/turnpike/acme]
    #[arg(long, value_name = "DIR")]
    pub acme_dir: Option<String>,

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

    /// This node's name in a fleet: letters, digits, '.', '_', '-' [default: the host name]
    #[arg(long, value_name = "NAME", env = "TURNPIKE_NODE_NAME")]
    pub node_name: Option<String>,

    /// This node's region in a fleet, free text [default: none]
    #[arg(long, value_name = "TEXT")]
    pub region: Option<String>,

    /// Answer classic RFC 3489 Binding requests (no magic cookie), as coturn does [default: true]
    #[arg(long, value_name = "BOOL", num_args = 0..=1, default_missing_value = "true")]
    pub stun_backward_compatibility: Option<bool>,

    /// A draining node exits once it holds at most this many allocations [default: 0]
    #[arg(long, value_name = "N")]
    pub drain_min_allocations: Option<i64>,

    /// Seconds a draining node waits for its allocations before it exits; 0 = no deadline [default: 3600]
    #[arg(long, value_name = "SECONDS")]
    pub drain_timeout: Option<i64>,

    /// Address serving only /livez, /readyz and /healthz, without a token [default: none]
    #[arg(long, value_name = "IP:PORT")]
    pub health_listen: Option<String>,

    /// /readyz answers 503 once the store has been unreachable this many seconds; 0 = never [default: 0]
    #[arg(long, value_name = "SECONDS")]
    pub readyz_store_timeout: Option<i64>,

    /// The DNS name clients reach this node by; turns: URLs and ALTERNATE-DOMAIN use it [default: none]
    #[arg(long, value_name = "NAME")]
    pub external_name: Option<String>,

    /// coturn's switch: true = stun_backward_compatibility false [default: false]
    #[arg(long, value_name = "BOOL", num_args = 0..=1, default_missing_value = "true")]
    pub no_stun_backward_compatibility: Option<bool>,

    /// Seconds between interim usage records of a live allocation; 0 = final records only [default: 300]
    #[arg(long = "usage-interim-s", value_name = "SECONDS")]
    pub usage_interim_s: Option<i64>,

    /// Days usage records are kept (pruned daily); 0 = forever [default: 90]
    #[arg(long, value_name = "DAYS")]
    pub usage_retention_days: Option<i64>,

    /// Local file where usage records and events wait while the store is unreachable [default: turnpike-usage.spill]
    #[arg(long, value_name = "FILE")]
    pub usage_spill_file: Option<String>,

    /// URL that receives event webhooks (HTTP POST, signed), repeatable [default: none]
    #[arg(long = "webhook-url", value_name = "URL")]
    #[serde(default)]
    pub webhook_url: Vec<String>,

    /// HMAC-SHA256 key that signs webhooks (Turnpike-Signature); prefer webhook_secret_file
    #[arg(long, value_name = "SECRET")]
    pub webhook_secret: Option<String>,

    /// Seconds an undelivered webhook is retried before it is dropped [default: 86400]
    #[arg(long, value_name = "SECONDS")]
    pub webhook_max_age: Option<i64>,

    /// Serve the self-test page (/selftest) on the admin listener, without a token [default: false]
    #[arg(long, value_name = "BOOL", num_args = 0..=1, default_missing_value = "true")]
    pub selftest: Option<bool>,

    /// Address serving only the self-test page and its credentials (may be public); turns the page on there [default: none]
    #[arg(long, value_name = "IP:PORT")]
    pub selftest_listen: Option<String>,

    /// Self-test credentials per minute per source address (IPv6: per /64) [default: 10]
    #[arg(long, value_name = "N")]
    pub selftest_rate_per_ip: Option<i64>,

    /// Self-test credentials per minute in total [default: 120]
    #[arg(long, value_name = "N")]
    pub selftest_rate_total: Option<i64>,

    // ----- secrets from files (the env and file alternatives to argv) -----
    /// File holding one REST API shared secret (a trailing newline is ignored), repeatable
    #[arg(long = "static-auth-secret-file", value_name = "FILE")]
    #[serde(default)]
    pub static_auth_secret_file: Vec<String>,

    /// File holding the HS256 secret for admin API tokens
    #[arg(long, value_name = "FILE")]
    pub admin_jwt_secret_file: Option<String>,

    /// File holding the webhook signing key
    #[arg(long, value_name = "FILE")]
    pub webhook_secret_file: Option<String>,
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

    /// Layers `over` (flags) on top of `self` (file): every key `over`
    /// sets (a value, or a non-empty list) replaces the file's. Done on the
    /// serialized form, so a new key needs no code here; keys that are one
    /// setting spelled two ways move together ([`LINKED`]).
    pub fn overlay(self, over: Options) -> Options {
        let (Value::Object(mut base), Value::Object(over)) = (to_value(self), to_value(over))
        else {
            unreachable!("Options serializes to a map")
        };
        let set = |v: &Value| !(v.is_null() || v.as_array().is_some_and(Vec::is_empty));
        for (key, value) in &over {
            if !set(value) {
                continue;
            }
            match LINKED.iter().find(|keys| keys.contains(&key.as_str())) {
                Some(keys) => {
                    for k in *keys {
                        base.insert(k.to_string(), over.get(*k).cloned().unwrap_or(Value::Null));
                    }
                }
                None => {
                    base.insert(key.clone(), value.clone());
                }
            }
        }
        serde_json::from_value(Value::Object(base)).expect("a merge of two Options is an Options")
    }
}

/// Keys that are one setting: when a layer gives any of them, that layer's
/// values replace all of them (a secret and its file; coturn's negative
/// switch and ours).
const LINKED: &[&[&str]] = &[
    &["static_auth_secret", "static_auth_secret_file"],
    &["admin_jwt_secret", "admin_jwt_secret_file"],
    &["webhook_secret", "webhook_secret_file"],
    &[
        "stun_backward_compatibility",
        "no_stun_backward_compatibility",
    ],
];

fn to_value(o: Options) -> Value {
    serde_json::to_value(o).expect("Options holds strings, numbers and lists only")
}
