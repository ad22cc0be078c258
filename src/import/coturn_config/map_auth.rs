//! Who may allocate (realm, users, REST secrets, OAuth, nonces), quotas,
//! peer ranges, and the rest (classic STUN, log level, metrics, drain).

use std::net::SocketAddr;
use std::path::PathBuf;

use super::map_net::{ip, listing, port};
use super::mapping::{switch, Mapper};
use super::report::{printable_name, Status};
use crate::stun::integrity::long_term_key_md5;
use crate::turn::policy::IpRange;

/// turnpike's realm when none is set.
const DEFAULT_REALM: &str = "turnpike";
const USER_DBS: &[&str] = &[
    "userdb",
    "psql-userdb",
    "mysql-userdb",
    "mongo-userdb",
    "redis-userdb",
];

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn count(s: Option<&str>, max: u64) -> Result<u64, String> {
    match s.map(str::trim).and_then(|s| s.parse::<u64>().ok()) {
        Some(n) if n <= max => Ok(n),
        _ => Err(format!(
            "`{}` is not a number 0-{max}",
            printable_name(s.unwrap_or_default())
        )),
    }
}

impl Mapper<'_> {
    pub(super) fn auth(&mut self) {
        let realm = self.last("realm").flatten().map(str::to_string);
        if let Some(r) = &realm {
            if (1..=127).contains(&r.chars().count()) {
                self.out.set("realm", r.clone(), "realm");
                self.mapped("realm", format!("realm = \"{}\"", printable_name(r)));
            } else {
                self.invalid("realm", "a realm is 1-127 characters");
            }
        }
        let realm_set = self.out.get("realm").is_some();
        let realm = realm
            .filter(|_| realm_set)
            .unwrap_or_else(|| DEFAULT_REALM.into());
        let rest = self.open("static-auth-secret") || self.open("use-auth-secret");
        let hex_keys = self.users(&realm, rest);
        self.secrets_from_files();
        if self.open("use-auth-secret") {
            let detail = if self.secrets.is_empty() {
                "REST credentials: coturn read their secrets from its database (turn_secret): copy them with `turnpike import coturn-db`, or add one with `turnpike secret add --secret-file FILE`"
            } else {
                "REST credentials, with the secrets of static-auth-secret"
            };
            self.mapped("use-auth-secret", detail);
        }
        if let Some(name) = self.last("server-name").flatten().map(str::to_string) {
            if (1..=255).contains(&name.len()) {
                self.out.set("server_name", name.clone(), "server-name");
                self.mapped(
                    "server-name",
                    format!("server_name = \"{}\"", printable_name(&name)),
                );
            } else {
                self.invalid("server-name", "a server name is 1-255 bytes");
            }
        }
        if self.open("oauth") {
            self.out.set("oauth", true, "oauth");
            self.mapped("oauth", "oauth = true; the keys come from the store: copy coturn's with `turnpike import coturn-db`");
        }
        if let Some(v) = self.last("rest-api-separator") {
            // coturn takes the first character.
            match v.and_then(|s| s.chars().next()) {
                Some(c) if !c.is_ascii_digit() && !c.is_control() => {
                    self.out
                        .set("rest_api_separator", c.to_string(), "rest-api-separator");
                    self.mapped(
                        "rest-api-separator",
                        format!("rest_api_separator = \"{c}\""),
                    );
                }
                _ => self.invalid("rest-api-separator", "one character, not a digit"),
            }
        }
        if let Some(v) = self.last("stale-nonce") {
            match v.map_or(Ok(600), |s| s.trim().parse::<i64>()) {
                Ok(n) if n >= 0 => {
                    // coturn's 0 is "never stale"; turnpike's longest is a day.
                    let kept = if n == 0 { 86_400 } else { n.min(86_400) };
                    self.out.set("stale_nonce", kept, "stale-nonce");
                    let why = if kept == n {
                        String::new()
                    } else {
                        format!(" ({n} is outside turnpike's 1-86400)")
                    };
                    self.mapped("stale-nonce", format!("stale_nonce = {kept}{why}"));
                }
                _ => self.invalid("stale-nonce", "not a number of seconds"),
            }
        }
        self.auth_notes(realm_set, hex_keys);
    }

    /// `user = NAME:PASSWORD` or `NAME:0xKEY` → `NAME:0xKEY` for `realm`.
    /// Returns whether any key was given ready-made (tied to coturn's realm).
    fn users(&mut self, realm: &str, rest: bool) -> bool {
        if !self.open("user") {
            return false;
        }
        if rest {
            // coturn's get_user_key: with use_auth_secret_with_timestamp only
            // REST names are checked, never static (or database) users.
            self.settle(
                "user",
                Status::Ignored,
                "coturn checks no static user while use-auth-secret or static-auth-secret is on (REST credentials only); left out so turnpike accepts the same credentials",
            );
            return false;
        }
        let mut users: Vec<(String, String)> = Vec::new();
        let mut bad = Vec::new();
        let mut hex_keys = false;
        for spec in self.values("user") {
            let Some((name, secret)) = spec.split_once(':').filter(|(n, _)| !n.is_empty()) else {
                bad.push("an entry that is not NAME:PASSWORD".to_string());
                continue;
            };
            let key = match secret.strip_prefix("0x") {
                Some(h) if h.len() == 32 && h.bytes().all(|b| b.is_ascii_hexdigit()) => {
                    hex_keys = true;
                    h.to_ascii_lowercase()
                }
                Some(_) => {
                    bad.push(format!(
                        "`{}` (a key is 0x and 32 hex digits)",
                        printable_name(name)
                    ));
                    continue;
                }
                None => hex(&long_term_key_md5(name, realm, secret)),
            };
            users.retain(|(n, _)| n != name);
            users.push((name.to_string(), key));
        }
        for (name, key) in &users {
            self.out.push("user", format!("{name}:0x{key}"), "user");
        }
        self.holds_user_keys |= !users.is_empty();
        let names: Vec<String> = users.iter().map(|(n, _)| printable_name(n)).collect();
        let shown = format!(
            "user = [{}] as MD5 keys of name:{}:password; no password is written",
            names.join(", "),
            printable_name(realm)
        );
        if bad.is_empty() {
            self.mapped("user", shown);
        } else {
            self.invalid("user", format!("left out: {}; {shown}", bad.join(", ")));
        }
        hex_keys
    }

    /// Each static-auth-secret in its own file; the TOML names the files.
    fn secrets_from_files(&mut self) {
        let mut secrets: Vec<String> = Vec::new();
        for s in self.values("static-auth-secret") {
            if !secrets.iter().any(|t| t == s) {
                secrets.push(s.to_string());
            }
        }
        if secrets.is_empty() {
            return;
        }
        let mut paths = Vec::new();
        for (i, secret) in secrets.into_iter().enumerate() {
            let suffix = if i == 0 {
                String::new()
            } else {
                format!(".{}", i + 1)
            };
            let mut path = self.secret_prefix.as_os_str().to_owned();
            path.push(format!(".static_auth_secret{suffix}"));
            let path = PathBuf::from(path);
            self.out.push(
                "static_auth_secret_file",
                path.display().to_string(),
                "static-auth-secret",
            );
            paths.push(path.display().to_string());
            self.secrets.push((path, secret));
        }
        self.mapped(
            "static-auth-secret",
            format!(
                "static_auth_secret_file = {} (each file mode 0600; the secret is never written inline)",
                listing(&paths)
            ),
        );
    }

    fn auth_notes(&mut self, realm_set: bool, hex_keys: bool) {
        let any = |m: &Self, names: &[&str]| {
            names.iter().any(|n| {
                m.open(n)
                    || m.groups.iter().any(|g| {
                        g.key.is_some_and(|k| k.name == *n)
                            && g.outcome
                                .as_ref()
                                .is_some_and(|(s, _)| *s == Status::Mapped)
                    })
            })
        };
        let credentials = self.holds_user_keys
            || !self.secrets.is_empty()
            || any(self, &["use-auth-secret", "oauth"])
            || any(self, USER_DBS);
        if !credentials {
            self.notes.push("no users, secrets, OAuth or user database: coturn then allowed anonymous TURN; turnpike always authenticates, so add users or secrets before clients move.".into());
        } else if !realm_set {
            let keys = if hex_keys {
                " The 0x keys of user were made for coturn's realm and match only that one."
            } else {
                ""
            };
            self.notes.push(format!("realm is not set: coturn used the host's domain name, turnpike uses \"{DEFAULT_REALM}\". Set realm to the one clients saw.{keys}"));
        }
    }

    pub(super) fn quotas(&mut self) {
        for (name, key) in [("user-quota", "user_quota"), ("total-quota", "total_quota")] {
            let Some(v) = self.last(name) else { continue };
            match count(v, u32::MAX.into()) {
                Ok(n) => {
                    self.out.set(key, n as i64, name);
                    self.mapped(name, format!("{key} = {n}"));
                }
                Err(why) => self.invalid(name, why),
            }
        }
        if let Some(v) = self.last("max-bps") {
            match count(v, u64::MAX >> 4) {
                Ok(bytes) => {
                    let bits = bytes * 8;
                    self.out.set("max_bps", bits as i64, "max-bps");
                    self.mapped(
                        "max-bps",
                        format!("max_bps = {bits} (coturn's {bytes} bytes/s in bits/s)"),
                    );
                }
                Err(why) => self.invalid("max-bps", why),
            }
        }
        if let Some(v) = self.last("bps-capacity") {
            match count(v, u64::MAX) {
                Ok(0) => self.mapped("bps-capacity", "0 = no server-wide cap, as in turnpike"),
                Ok(_) => {} // the table's rule
                Err(why) => self.invalid("bps-capacity", why),
            }
        }
    }

    pub(super) fn peers(&mut self) {
        if self.open("allow-loopback-peers") {
            self.out
                .set("allow_loopback_peers", true, "allow-loopback-peers");
            self.mapped(
                "allow-loopback-peers",
                "allow_loopback_peers = true (turnpike warns at start: for testing only)",
            );
        }
        for (name, key) in [
            ("allowed-peer-ip", "allowed_peer_ip"),
            ("denied-peer-ip", "denied_peer_ip"),
        ] {
            let mut good = Vec::new();
            let mut bad = Vec::new();
            for v in self.values(name) {
                match IpRange::parse(v.trim()) {
                    Ok(_) => good.push(v.trim().to_string()),
                    Err(_) => bad.push(format!("`{}`", printable_name(v))),
                }
            }
            for g in &good {
                self.out.push(key, g.clone(), name);
            }
            let shown = format!("{key} = {}", listing(&good));
            if bad.is_empty() {
                self.mapped(name, shown);
            } else {
                self.invalid(
                    name,
                    format!("{} not IP or FIRST-LAST; {shown}", bad.join(", ")),
                );
            }
        }
    }

    pub(super) fn misc(&mut self) {
        // Two spellings of one setting: the later line wins.
        let mut classic: Option<(usize, &str, bool)> = None;
        for (name, on_means) in [
            ("no-stun-backward-compatibility", false),
            ("stun-backward-compatibility", true),
        ] {
            let Some(line) = self.line_of(name) else {
                continue;
            };
            match switch(self.last(name).flatten()) {
                Ok(on) => {
                    let later = match classic {
                        None => true,
                        Some((l, _, _)) => line > l,
                    };
                    if later {
                        classic = Some((line, name, on == on_means));
                    }
                }
                Err(why) => self.invalid(name, why),
            }
        }
        if let Some((_, from, on)) = classic {
            self.out.set("stun_backward_compatibility", on, from);
            let shown = format!("stun_backward_compatibility = {on}");
            self.mapped("no-stun-backward-compatibility", shown.clone());
            self.mapped("stun-backward-compatibility", shown);
        }
        if self.open("Verbose") {
            self.out.set("log_level", "debug", "Verbose");
            self.mapped("Verbose", "log_level = \"debug\"");
        }
        self.metrics();
        if let Some(v) = self.last("drain-min-allocations") {
            match count(v, u32::MAX.into()) {
                Ok(n) => {
                    self.out
                        .set("drain_min_allocations", n as i64, "drain-min-allocations");
                    self.mapped(
                        "drain-min-allocations",
                        format!("drain_min_allocations = {n}"),
                    );
                }
                Err(why) => self.invalid("drain-min-allocations", why),
            }
        }
    }

    /// coturn's exporter (port 9641 on every address, no token) becomes the
    /// admin API's /metrics (127.0.0.1:9641, bearer token).
    fn metrics(&mut self) {
        let port_v = self.last("prometheus-port");
        let addr_v = self.last("prometheus-address");
        if port_v.is_some() || addr_v.is_some() {
            let p = match port_v {
                None | Some(None) => Ok(9641),
                Some(v) => port(v),
            };
            let a = match addr_v {
                None => Some("127.0.0.1".parse().expect("an address")),
                Some(v) => v.and_then(ip),
            };
            match (p, a) {
                (Ok(p), Some(a)) => {
                    let listen = SocketAddr::new(a, p).to_string();
                    let from = if port_v.is_some() {
                        "prometheus-port"
                    } else {
                        "prometheus-address"
                    };
                    self.out.set("admin_listen", listen.clone(), from);
                    let shown = format!(
                        "admin_listen = \"{listen}\": the admin API, /metrics with a bearer token"
                    );
                    self.mapped("prometheus-port", shown.clone());
                    self.mapped("prometheus-address", shown);
                }
                (Err(why), _) => self.invalid("prometheus-port", why),
                (_, None) => self.invalid("prometheus-address", "not an IP address"),
            }
        }
        if self.open("prometheus") {
            let listen = self
                .out
                .get("admin_listen")
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_else(|| "127.0.0.1:9641".into());
            self.mapped("prometheus", format!("/metrics on the admin API ({listen}), with an admin bearer token; coturn's exporter asked for none"));
        }
        if self.open("prometheus-username-labels") {
            self.out
                .set("metrics_user_labels", true, "prometheus-username-labels");
            self.mapped("prometheus-username-labels", "metrics_user_labels = true");
        }
    }
}
