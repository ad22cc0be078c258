//! What a reload (SIGHUP, `POST /api/v1/reload`) may change in a running
//! server: keys that take effect for new work, and keys that need a
//! restart because they bind sockets, size workers or name the node.

use std::path::Path;

use serde_json::Value;

use super::{Config, ConfigError, Options};

/// Keys a reload applies: new Allocates, permissions, connections and log
/// lines see them; existing allocations keep relaying.
pub const APPLIED: &[&str] = &[
    "log_level",
    "log_format",
    "user",
    "static_auth_secret",
    "static_auth_secret_file",
    "rest_api_separator",
    "strict_expiry",
    "allow_loopback_peers",
    "allowed_peer_ip",
    "denied_peer_ip",
    "allowed_client_ip",
    "denied_client_ip",
    "proxy_protocol_from",
    "user_quota",
    "total_quota",
    "max_allocations_per_ip",
    "max_peer_connections",
    "max_peer_connections_per_user",
    "max_bps",
    "auth_reply_rate",
    "max_allocate_lifetime",
    "max_permissions",
    "max_channels",
    "software",
    "max_tcp_per_ip",
    "max_tcp_connections",
];

/// Keys that need a restart; a reload names them once and keeps the
/// running values. (The certificate and key files are read again on every
/// reload; only a new path needs a restart.)
pub const NEEDS_RESTART: &[&str] = &[
    "listen",
    "tls_listen",
    "admin_listen",
    "health_listen",
    "workers",
    "relay_ip",
    "external_ip",
    "min_port",
    "max_port",
    "realm",
    "realms",
    "stale_nonce",
    "oauth",
    "server_name",
    "db",
    "admin_jwt_secret",
    "admin_jwt_secret_file",
    "metrics_user_labels",
    "admin_tls",
    "cert",
    "key",
    "dtls",
    "tls_passthrough_to",
    "tls_passthrough_sni",
    "tls_passthrough_proxy_protocol",
    "tls_passthrough_idle_timeout",
    "acme_directory",
    "acme_domains",
    "acme_email",
    "acme_contact_key_file",
    "acme_http_listen",
    "acme_ca_file",
    "acme_dir",
    "tcp_relay",
    "handshake_timeout",
    "max_dtls_handshakes",
    "rfc5780",
    "alt_ip",
    "alt_listening_port",
    "node_name",
    "region",
    "stun_backward_compatibility",
    "no_stun_backward_compatibility",
    "drain_min_allocations",
    "drain_timeout",
    "readyz_store_timeout",
    "external_name",
    "usage_interim_s",
    "usage_retention_days",
    "usage_spill_file",
    "webhook_url",
    "webhook_secret",
    "webhook_secret_file",
    "webhook_max_age",
    "selftest",
    "selftest_listen",
    "selftest_rate_per_ip",
    "selftest_rate_total",
];

/// The outcome of reading the file again.
#[derive(Debug, Clone)]
pub struct Reloaded {
    /// The running config with every [`APPLIED`] value taken from the file.
    pub config: Config,
    /// The layered options read this time (compared at the next reload).
    pub options: Options,
    /// Applied keys whose value changed.
    pub applied: Vec<String>,
    /// Changed keys left as they were until a restart.
    pub needs_restart: Vec<String>,
}

/// Reads `file` again under the same command-line `flags` (flags still
/// win), validates it whole, and merges what may change into `running`.
/// `before` is what the running config was made from. An invalid file is
/// an error and changes nothing.
pub fn reload(
    running: &Config,
    before: &Options,
    file: Option<&Path>,
    flags: &Options,
) -> Result<Reloaded, ConfigError> {
    let base = match file {
        Some(p) => Options::from_file(p)?,
        None => Options::default(),
    };
    let options = base.overlay(flags.clone());
    // Static users' keys are hashed with the realm, which only a restart
    // changes: hash them with the running one.
    let mut pinned = options.clone();
    pinned.realm = Some(running.realm.clone());
    let fresh = pinned.resolve()?;
    let (applied, needs_restart) = changed_keys(before, &options);
    Ok(Reloaded {
        config: merge(running, fresh),
        options,
        applied,
        needs_restart,
    })
}

/// The keys whose values differ, split into applied and needs-restart.
fn changed_keys(before: &Options, after: &Options) -> (Vec<String>, Vec<String>) {
    let (Value::Object(a), Value::Object(b)) = (
        serde_json::to_value(before).unwrap_or_default(),
        serde_json::to_value(after).unwrap_or_default(),
    ) else {
        return (vec![], vec![]);
    };
    let mut applied = vec![];
    let mut restart = vec![];
    for (key, new) in &b {
        if a.get(key) == Some(new) {
            continue;
        }
        if APPLIED.contains(&key.as_str()) {
            applied.push(key.clone());
        } else {
            restart.push(key.clone());
        }
    }
    (applied, restart)
}

/// `running` with the [`APPLIED`] settings of `fresh`. Every applied
/// value is taken, changed or not: a secret file's new content counts.
fn merge(running: &Config, fresh: Config) -> Config {
    let mut c = running.clone();
    c.log_level = fresh.log_level;
    c.log_format = fresh.log_format;
    c.users = fresh.users;
    c.static_auth_secrets = fresh.static_auth_secrets;
    c.rest_api_separator = fresh.rest_api_separator;
    c.strict_expiry = fresh.strict_expiry;
    c.allow_loopback_peers = fresh.allow_loopback_peers;
    c.allowed_peer_ips = fresh.allowed_peer_ips;
    c.denied_peer_ips = fresh.denied_peer_ips;
    c.allowed_client_ips = fresh.allowed_client_ips;
    c.denied_client_ips = fresh.denied_client_ips;
    c.proxy_protocol_from = fresh.proxy_protocol_from;
    c.user_quota = fresh.user_quota;
    c.total_quota = fresh.total_quota;
    c.max_allocations_per_ip = fresh.max_allocations_per_ip;
    c.max_peer_connections = fresh.max_peer_connections;
    c.max_peer_connections_per_user = fresh.max_peer_connections_per_user;
    c.max_bps = fresh.max_bps;
    c.auth_reply_rate = fresh.auth_reply_rate;
    c.max_allocate_lifetime = fresh.max_allocate_lifetime;
    c.max_permissions = fresh.max_permissions;
    c.max_channels = fresh.max_channels;
    c.software = fresh.software;
    c.max_tcp_per_ip = fresh.max_tcp_per_ip;
    c.max_tcp_connections = fresh.max_tcp_connections;
    c.warnings = fresh.warnings;
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, text: &str) -> std::path::PathBuf {
        let p = dir.join("turnserver.toml");
        std::fs::write(&p, text).unwrap();
        p
    }

    fn temp_dir(name: &str) -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!("turnpike-reload-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn every_key_is_either_applied_or_needs_a_restart() {
        let Value::Object(keys) = serde_json::to_value(Options::default()).unwrap() else {
            panic!("Options is a map");
        };
        for key in keys.keys() {
            let a = APPLIED.contains(&key.as_str());
            let r = NEEDS_RESTART.contains(&key.as_str());
            assert!(a ^ r, "{key}: applied {a}, needs restart {r}: choose one");
        }
        assert_eq!(keys.len(), APPLIED.len() + NEEDS_RESTART.len());
    }

    #[test]
    fn a_reload_applies_policy_and_quota_and_keeps_listeners_as_they_were() {
        let dir = temp_dir("apply");
        let file = write(
            &dir,
            "listen = [\"127.0.0.1:3478\"]\nuser_quota = 5\nlog_level = \"info\"\n",
        );
        let flags = Options::default();
        let before = Options::from_file(&file).unwrap().overlay(flags.clone());
        let running = before.clone().resolve().unwrap();
        write(
            &dir,
            "listen = [\"127.0.0.1:4000\"]\nuser_quota = 1\nlog_level = \"debug\"\n\
             denied_peer_ip = [\"198.51.100.0/24\"]\nworkers = 3\n",
        );
        let r = reload(&running, &before, Some(&file), &flags).unwrap();
        assert_eq!(r.applied, ["denied_peer_ip", "log_level", "user_quota"]);
        assert_eq!(r.needs_restart, ["listen", "workers"]);
        assert_eq!(r.config.user_quota, 1);
        assert_eq!(r.config.log_level, "debug");
        assert_eq!(r.config.denied_peer_ips.len(), 1);
        assert_eq!(r.config.listen, running.listen, "listeners stay");
        assert_eq!(r.config.realm, running.realm);
        assert_eq!(r.config.workers, running.workers);
    }

    #[test]
    fn flags_still_win_over_the_file_on_reload() {
        let dir = temp_dir("flags");
        let file = write(&dir, "user_quota = 5\n");
        let flags = Options::from_toml("user_quota = 9", "flags").unwrap();
        let before = Options::from_file(&file).unwrap().overlay(flags.clone());
        let running = before.clone().resolve().unwrap();
        write(&dir, "user_quota = 1\n");
        let r = reload(&running, &before, Some(&file), &flags).unwrap();
        assert_eq!(r.config.user_quota, 9);
        assert!(r.applied.is_empty(), "{:?}", r.applied);
    }

    #[test]
    fn an_unknown_key_or_a_bad_value_is_refused_naming_the_key() {
        let dir = temp_dir("bad");
        let file = write(&dir, "user_quota = 5\n");
        let before = Options::from_file(&file).unwrap();
        let running = before.clone().resolve().unwrap();
        write(&dir, "user_quota = 1\nno_such_key = 3\n");
        let e = reload(&running, &before, Some(&file), &Options::default()).unwrap_err();
        assert!(e.to_string().contains("no_such_key"), "{e}");
        write(&dir, "user_quota = -1\n");
        let e = reload(&running, &before, Some(&file), &Options::default()).unwrap_err();
        assert!(e.to_string().contains("user_quota"), "{e}");
    }
}
