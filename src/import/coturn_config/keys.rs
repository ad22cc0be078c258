//! The key table: every option of coturn 4.6.1's `turnserver` (its
//! `long_options`), a few of later releases, and what becomes of each. The
//! importer decides by this table and `--mapping-table` prints it, so the
//! README's table cannot drift from the code.

/// How coturn's command line takes the option's value (getopt's terms).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Arg {
    /// A switch: bare means on; `=0`, `=no`, `=off`, `=false` mean off.
    Flag,
    /// An optional value that is not a switch (`stale-nonce[=600]`).
    Optional,
    /// A required value (`listening-port 3478`).
    Required,
}

/// What turnpike does with the option.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Rule {
    /// Written to these turnpike keys (`mapping.rs` computes the values).
    Map {
        to: &'static str,
        note: &'static str,
    },
    /// turnpike already behaves so, always or by default.
    Default(&'static str),
    /// Irrelevant to turnpike, and why.
    Ignored(&'static str),
    /// Cannot be carried over: what to do instead. `security`: dropping it
    /// leaves the server more open or keeps credentials behind (exit 1).
    Unsupported {
        instead: &'static str,
        security: bool,
    },
}

/// One coturn option.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Key {
    pub name: &'static str,
    /// Other spellings coturn accepts for the same option.
    pub aliases: &'static [&'static str],
    /// Its one-letter command-line form.
    pub short: Option<char>,
    pub arg: Arg,
    /// Repeatable and cumulative (each occurrence adds a value); otherwise
    /// the last occurrence counts, as in coturn.
    pub multi: bool,
    pub rule: Rule,
}

const fn key(name: &'static str, arg: Arg, rule: Rule) -> Key {
    Key {
        name,
        aliases: &[],
        short: None,
        arg,
        multi: false,
        rule,
    }
}

impl Key {
    const fn short(mut self, c: char) -> Key {
        self.short = Some(c);
        self
    }
    const fn multi(mut self) -> Key {
        self.multi = true;
        self
    }
    const fn aliases(mut self, a: &'static [&'static str]) -> Key {
        self.aliases = a;
        self
    }
}

use Arg::{Flag, Optional, Required};

const fn map(to: &'static str, note: &'static str) -> Rule {
    Rule::Map { to, note }
}
const fn unsupported(instead: &'static str) -> Rule {
    Rule::Unsupported {
        instead,
        security: false,
    }
}
/// Unsupported, and it matters for who may use the server or reach what.
const fn security(instead: &'static str) -> Rule {
    Rule::Unsupported {
        instead,
        security: true,
    }
}

const NO_CLI: &str = "turnpike has no telnet CLI: the `turnpike` subcommands and the admin API (admin_listen, bearer tokens) do its work";
const WEB_CONSOLE: &str = "the web console is always at /console/ on admin_listen (127.0.0.1:9641; admin_tls for HTTPS); sign in with `turnpike console-link`";
const WEB_ADMIN_ADDRESS: &str = "the web console is served on admin_listen with the rest of the admin API: set admin_listen to move it";
const USER_DB: &str = "coturn's users, secrets and OAuth keys live in that database: copy them with `turnpike import coturn-db`";
/// MongoDB is the one coturn user database the importer cannot read.
const MONGO_DB: &str = "coturn's users, secrets and OAuth keys live in MongoDB, which `turnpike import coturn-db` does not read: add them with `turnpike user add`, `secret add` and `oauth-key add`";
const ALTERNATE: &str = "turnpike sends 300 ALTERNATE-SERVER only while draining, naming a ready node of its fleet; spread clients with DNS, a balancer or /api/v1/credentials (see Running a fleet)";
const LOGS: &str = "turnpike logs to stderr (the journal under systemd)";
const TLS_VERSIONS: &str = "turnpike speaks TLS 1.2 and 1.3 and DTLS 1.2 only";
const RUSTLS_KX: &str = "rustls offers ECDHE (X25519, P-256, P-384) only, no finite-field DH";

/// Every option the importer knows, in the order of coturn's example file.
pub(crate) const KEYS: &[Key] = &[
    // ---- listeners ----
    key("listening-device", Required, security("binding to a device is not supported; give the device's addresses as listening-ip so turnpike listens on those only")).short('d'),
    key("listening-port", Required, map("listen", "with each listening-ip (none: 0.0.0.0 and [::]) as IP:PORT; default 3478")).short('p'),
    key("tls-listening-port", Required, map("tls_listen", "with each listening-ip, when cert and pkey are set and no-tls is not; default 5349")),
    key("alt-listening-port", Required, map("alt_listening_port", "used only with rfc5780 = true")),
    key("alt-tls-listening-port", Required, Rule::Ignored("turnpike serves RFC 5780 over UDP only, on alt_listening_port")),
    key("tcp-proxy-port", Required, unsupported("the PROXY protocol is not supported; run the balancer in L4 pass-through mode (see Running a fleet)")),
    key("listening-ip", Required, map("listen", "IP:PORT with listening-port; IPv6 as [ADDR]:PORT")).short('L').multi(),
    key("aux-server", Required, map("listen", "one more UDP and TCP listener")).multi(),
    key("udp-self-balance", Flag, Rule::Ignored("turnpike spreads UDP over its workers with SO_REUSEPORT, not over aux servers")),
    // ---- relay ----
    key("relay-device", Required, unsupported("relay sockets bind to relay_ip: give the device's address as relay-ip")).short('i'),
    key("relay-ip", Required, map("relay_ip", "the first address of each family is used")).short('E').multi(),
    key("external-ip", Required, map("external_ip", "PUBLIC or PUBLIC/PRIVATE, as in coturn")).short('X').multi(),
    key("relay-threads", Required, map("workers", "0 (coturn's single relay thread) becomes 1")).short('m'),
    key("min-port", Required, map("min_port", "")),
    key("max-port", Required, map("max_port", "")),
    key("no-udp-relay", Flag, security("UDP relays are always offered (RFC 8656 requires them)")),
    key("no-tcp-relay", Flag, Rule::Default("TCP relays (RFC 6062) are off unless tcp_relay = true")),
    key("max-allocate-lifetime", Optional, map("max_allocate_lifetime", "bare = 3600; kept within 600-86400")),
    key("channel-lifetime", Optional, unsupported("channels live RFC 8656's fixed 600 s (a value of 600 is mapped as the default)")),
    key("permission-lifetime", Optional, unsupported("permissions live RFC 8656's fixed 300 s (a value of 300 is mapped as the default)")),
    key("max-allocate-timeout", Required, Rule::Ignored("an Allocate is one request, with no half-made state to time out; handshake_timeout bounds TCP and TLS setup")),
    key("keep-address-family", Flag, unsupported("a client that names no address family gets IPv4 (RFC 6156); clients ask for IPv6 with REQUESTED-ADDRESS-FAMILY")).short('K'),
    key("allocation-default-address-family", Required, unsupported("a client that names no address family gets IPv4 (RFC 6156), which is ipv4 here; ipv6 and keep are not supported")).short('A'),
    key("server-relay", Flag, unsupported("permissions are always checked: a peer needs one to reach the relay")),
    key("mobility", Flag, unsupported("MOBILITY-TICKET (RFC 8016) is not implemented; a client that changes networks allocates again (ICE restart)")),
    // ---- authentication ----
    key("lt-cred-mech", Flag, Rule::Default("long-term credentials are always on")).short('a'),
    key("no-auth", Flag, unsupported("turnpike authenticates every TURN request (Binding needs no credentials): give clients users, REST credentials or OAuth tokens")).short('z'),
    key("user", Required, map("user", "as NAME:0xKEY (MD5 of name:realm:password, as coturn keeps it), so no password is written; left out under use-auth-secret, where coturn ignores static users")).short('u').multi(),
    key("realm", Required, map("realm", "")).short('r'),
    key("use-auth-secret", Flag, Rule::Default("REST credentials are accepted whenever a secret exists (static_auth_secret_file or the store)")),
    key("static-auth-secret", Required, map("static_auth_secret_file", "each secret in a 0600 file beside the output, never inline")).multi(),
    key("server-name", Required, map("server_name", "")),
    key("oauth", Flag, map("oauth", "the keys come from the store: `turnpike import coturn-db`")),
    key("rest-api-separator", Required, map("rest_api_separator", "")).short('C'),
    key("secret-ts-exp-time", Optional, Rule::Ignored("deprecated in coturn: a REST username carries its own expiry")),
    key("no-auth-pings", Flag, Rule::Ignored("turnpike polls its store's revision every second; no secret-table pings")),
    key("no-dynamic-ip-list", Flag, Rule::Default("peer ranges come from the config file only (reloadable on SIGHUP)")),
    key("no-dynamic-realms", Flag, Rule::Default("one realm per server; the store holds only its quotas")),
    key("check-origin-consistency", Flag, unsupported("the ORIGIN attribute is not read; one realm is served per server")),
    key("stale-nonce", Optional, map("stale_nonce", "bare = 600; 0 (never stale) becomes 86400, turnpike's longest")),
    key("secure-stun", Flag, security("Binding requests are answered without credentials (each source's answers are budgeted by auth_reply_rate)")),
    key("userdb", Required, security(USER_DB)).short('b').aliases(&["db"]),
    key("psql-userdb", Required, security(USER_DB)).short('e').aliases(&["sql-userdb"]),
    key("mysql-userdb", Required, security(USER_DB)).short('M'),
    key("mongo-userdb", Required, security(MONGO_DB)).short('J'),
    key("redis-userdb", Required, security(USER_DB)).short('N'),
    key("secret-key-file", Required, unsupported("it decrypts coturn's MySQL password: give `turnpike import coturn-db` the plain connection string")),
    key("redis-statsdb", Required, unsupported("no Redis publishing: sessions are on /api/v1/sessions and counters on /metrics")).short('O'),
    // ---- quotas ----
    key("user-quota", Required, map("user_quota", "")).short('q'),
    key("total-quota", Required, map("total_quota", "")).short('Q'),
    key("max-bps", Required, map("max_bps", "times 8: coturn counts bytes per second, turnpike bits")).short('s'),
    key("bps-capacity", Required, security("no server-wide bandwidth cap (0 is mapped as the default): bound it with max_bps and total_quota, or with tc")).short('B'),
    // ---- TLS and DTLS ----
    key("cert", Required, map("cert", "a relative path is taken from the coturn file's folder")),
    key("pkey", Required, map("key", "a relative path is taken from the coturn file's folder")),
    key("pkey-pwd", Required, security("the key must be unencrypted PEM: `openssl pkey -in KEY -out NEW` and keep NEW mode 0600")),
    key("cipher-list", Required, Rule::Ignored("rustls offers only AEAD suites with forward secrecy; OpenSSL cipher strings are not read")),
    key("CA-file", Required, security("client certificates are neither requested nor checked")),
    key("ec-curve-name", Required, Rule::Ignored(RUSTLS_KX)),
    key("dh566", Flag, Rule::Ignored(RUSTLS_KX)),
    key("dh1066", Flag, Rule::Ignored(RUSTLS_KX)),
    key("dh-file", Required, Rule::Ignored(RUSTLS_KX)),
    key("no-tls", Flag, map("tls_listen", "left out, and cert too unless DTLS needs it (then every TCP port still accepts TLS)")),
    key("no-dtls", Flag, Rule::Default("DTLS is off unless dtls = true")),
    key("dtls", Flag, map("dtls", "coturn 4.7+; needs cert and pkey")),
    key("no-sslv2", Flag, Rule::Default(TLS_VERSIONS)),
    key("no-sslv3", Flag, Rule::Default(TLS_VERSIONS)),
    key("no-tlsv1", Flag, Rule::Default(TLS_VERSIONS)),
    key("no-tlsv1_1", Flag, Rule::Default(TLS_VERSIONS)),
    key("no-tlsv1_2", Flag, security("TLS 1.2 is always offered beside 1.3, and DTLS is 1.2")),
    // ---- what is served ----
    key("no-udp", Flag, security("every listen address gets UDP and TCP: block UDP to it with a firewall")),
    key("no-tcp", Flag, security("every listen address gets UDP and TCP: block TCP to it with a firewall")),
    key("stun-only", Flag, security("turnpike relays for every authenticated client; a server with no users, secrets or OAuth keys relays for nobody")).short('S'),
    key("no-stun", Flag, unsupported("Binding requests are always answered (each source's answers are budgeted)")),
    key("no-rfc5780", Flag, Rule::Default("RFC 5780 is off unless rfc5780 = true")),
    key("rfc5780", Flag, unsupported("set rfc5780 = true and alt_ip = a second address of the host by hand")),
    key("no-stun-backward-compatibility", Flag, map("stun_backward_compatibility", "= false")),
    key("stun-backward-compatibility", Flag, map("stun_backward_compatibility", "coturn 4.7+")),
    key("response-origin-only-with-rfc5780", Flag, Rule::Default("RESPONSE-ORIGIN is sent in RFC 5780 mode only")),
    key("no-software-attribute", Flag, Rule::Default("no SOFTWARE attribute is sent unless software is set")).aliases(&["prod"]),
    key("fingerprint", Flag, Rule::Ignored("an answer carries FINGERPRINT whenever its request did, as every ICE agent's does")).short('f'),
    key("alternate-server", Required, unsupported(ALTERNATE)).multi(),
    key("tls-alternate-server", Required, unsupported(ALTERNATE)).multi(),
    key("udp-alternate-server", Required, unsupported(ALTERNATE)).multi(),
    key("tcp-alternate-server", Required, unsupported(ALTERNATE)).multi(),
    // ---- peers ----
    key("allow-loopback-peers", Flag, map("allow_loopback_peers", "")),
    key("no-multicast-peers", Flag, Rule::Default("multicast peers are always denied (README Security §2)")),
    key("allowed-peer-ip", Required, map("allowed_peer_ip", "IP or FIRST-LAST as in coturn; an allowed range wins over a denied one in both")).multi(),
    key("denied-peer-ip", Required, map("denied_peer_ip", "added to turnpike's default deny list")).multi(),
    // ---- logging and process ----
    key("verbose", Flag, Rule::Ignored("turnpike's default log_level info covers coturn's moderate verbose mode")).short('v'),
    key("Verbose", Flag, map("log_level", "= \"debug\"")).short('V'),
    key("log-file", Required, Rule::Ignored(LOGS)).short('l'),
    key("no-stdout-log", Flag, Rule::Ignored(LOGS)),
    key("syslog", Flag, Rule::Ignored("turnpike logs to stderr; under systemd the journal passes it to syslog")),
    key("syslog-facility", Required, Rule::Ignored("turnpike logs to stderr; under systemd the journal passes it to syslog")),
    key("simple-log", Flag, Rule::Ignored("no log files to roll over: the journal rotates")),
    key("new-log-timestamp", Flag, Rule::Ignored("timestamps are RFC 3339 already")),
    key("new-log-timestamp-format", Required, Rule::Ignored("timestamps are RFC 3339; log_format = \"json\" for log shippers")),
    key("log-binding", Flag, Rule::Ignored("nothing is logged per Binding request at info")),
    key("daemon", Flag, Rule::Ignored("turnpike runs in the foreground; the packaged systemd unit makes it a service")).short('o'),
    key("pidfile", Required, Rule::Ignored("systemd tracks the process (Type=notify)")),
    key("proc-user", Required, security("turnpike does not change user: start it as that user (the packaged unit uses a dynamic user with CAP_NET_BIND_SERVICE only)")),
    key("proc-group", Required, security("turnpike does not change group: start it with that group (the packaged unit uses a dynamic user)")),
    key("ne", Required, Rule::Ignored("coturn's internal network engine choice")),
    key("sock-buf-size", Required, Rule::Ignored("turnpike sizes its socket buffers itself")),
    key("version", Optional, Rule::Ignored("prints coturn's version")),
    // ---- administration ----
    key("no-cli", Flag, Rule::Default(NO_CLI)),
    key("cli", Flag, unsupported(NO_CLI)),
    key("cli-ip", Required, unsupported(NO_CLI)),
    key("cli-port", Required, unsupported(NO_CLI)),
    key("cli-password", Required, unsupported(NO_CLI)),
    key("cli-max-output-sessions", Required, unsupported(NO_CLI)),
    key("web-admin", Flag, Rule::Default(WEB_CONSOLE)),
    key("web-admin-ip", Required, unsupported(WEB_ADMIN_ADDRESS)),
    key("web-admin-port", Required, unsupported(WEB_ADMIN_ADDRESS)),
    key(
        "web-admin-listen-on-workers",
        Flag,
        Rule::Ignored("the console is served by the admin listener alone"),
    ),
    key("acme-redirect", Required, unsupported("turnpike gets its own certificate: set acme_directory and acme_domains (and acme_http_listen for http-01), or keep an external ACME client and reload turnpike after a renewal")),
    key("prometheus", Flag, map("admin_listen", "metrics are /metrics on the admin API, 127.0.0.1:9641 by default, with an admin bearer token")),
    key("prometheus-port", Optional, map("admin_listen", "127.0.0.1:PORT (or prometheus-address:PORT): the whole admin API moves there")),
    key("prometheus-address", Required, map("admin_listen", "ADDRESS:9641 (or :prometheus-port); coturn 4.7+")),
    key("prometheus-path", Required, Rule::Ignored("metrics are always at /metrics")),
    key("prometheus-username-labels", Flag, map("metrics_user_labels", "")),
    key("drain-min-allocations", Required, map("drain_min_allocations", "coturn 4.7+")),
];

/// Switches only coturn's command line has (`-c FILE`, `-n`, `-h`).
pub(crate) const COMMAND_LINE_ONLY: &[Key] = &[
    key("c", Required, Rule::Ignored("names coturn's config file: import that file as well (its keys come first, these flags override them)")).short('c'),
    key("n", Flag, Rule::Ignored("coturn's switch to read no config file")).short('n'),
    key("h", Flag, Rule::Ignored("coturn's help")).short('h'),
];

/// The option named `name` (its main name or an alias).
pub(crate) fn lookup(name: &str) -> Option<&'static Key> {
    KEYS.iter()
        .find(|k| k.name == name || k.aliases.contains(&name))
}

/// The option whose one-letter form is `c`.
pub(crate) fn by_short(c: char) -> Option<&'static Key> {
    KEYS.iter()
        .chain(COMMAND_LINE_ONLY)
        .find(|k| k.short == Some(c))
}

/// The README's table: every option, what it becomes, and why.
pub fn mapping_table() -> String {
    let mut out = String::from("| coturn | turnpike | notes |\n| --- | --- | --- |\n");
    for k in KEYS {
        let mut names = format!("`{}`", k.name);
        for a in k.aliases {
            names += &format!(", `{a}`");
        }
        if let Some(c) = k.short {
            names += &format!(" (`-{c}`)");
        }
        let (target, note) = match k.rule {
            Rule::Map { to, note } => (format!("`{to}`"), note),
            Rule::Default(why) => ("default".to_string(), why),
            Rule::Ignored(why) => ("ignored".to_string(), why),
            Rule::Unsupported {
                instead,
                security: true,
            } => ("unsupported (security: exit 1)".to_string(), instead),
            Rule::Unsupported { instead, .. } => ("unsupported".to_string(), instead),
        };
        let note = if note.is_empty() {
            "as in coturn"
        } else {
            note
        };
        out += &format!("| {names} | {target} | {} |\n", note.replace('|', "\\|"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_coturn_461_option_is_in_the_table_once() {
        // coturn 4.6.1's long_options (src/apps/relay/mainrelay.c), as
        // Debian ships it.
        let coturn = "listening-device listening-port tls-listening-port alt-listening-port \
            alt-tls-listening-port tcp-proxy-port listening-ip relay-device relay-ip external-ip \
            relay-threads min-port max-port lt-cred-mech no-auth user userdb db psql-userdb \
            sql-userdb mysql-userdb mongo-userdb redis-userdb redis-statsdb prometheus \
            prometheus-port prometheus-username-labels use-auth-secret static-auth-secret \
            no-auth-pings no-dynamic-ip-list no-dynamic-realms secret-ts-exp-time realm \
            server-name oauth user-quota total-quota max-bps bps-capacity verbose Verbose daemon \
            prod no-software-attribute fingerprint check-origin-consistency no-udp no-tcp no-tls \
            no-dtls no-udp-relay no-tcp-relay stale-nonce max-allocate-lifetime channel-lifetime \
            permission-lifetime stun-only no-stun cert pkey pkey-pwd log-file no-stdout-log \
            syslog simple-log new-log-timestamp new-log-timestamp-format aux-server \
            udp-self-balance alternate-server tls-alternate-server rest-api-separator \
            max-allocate-timeout no-multicast-peers allow-loopback-peers allowed-peer-ip \
            denied-peer-ip cipher-list pidfile secure-stun CA-file dh-file proc-user proc-group \
            mobility no-cli cli-ip cli-port cli-password web-admin web-admin-ip web-admin-port \
            web-admin-listen-on-workers server-relay cli-max-output-sessions ec-curve-name dh566 \
            dh1066 ne no-sslv2 no-sslv3 no-tlsv1 no-tlsv1_1 no-tlsv1_2 secret-key-file \
            keep-address-family allocation-default-address-family acme-redirect log-binding \
            no-rfc5780 no-stun-backward-compatibility response-origin-only-with-rfc5780 version \
            syslog-facility";
        for name in coturn.split_whitespace() {
            assert!(lookup(name).is_some(), "{name} is missing");
        }
        let mut names: Vec<&str> = KEYS
            .iter()
            .flat_map(|k| std::iter::once(k.name).chain(k.aliases.iter().copied()))
            .collect();
        let all = names.len();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), all, "a name is in the table twice");
    }

    #[test]
    fn short_options_match_coturns_getopt_string() {
        // coturn 4.6.1: "c:d:p:L:E:X:i:m:l:r:u:b:B:e:M:J:N:O:q:Q:s:C:K:A:vVofhznaS"
        let getopt = "c:d:p:L:E:X:i:m:l:r:u:b:B:e:M:J:N:O:q:Q:s:C:K:A:vVofhznaS";
        let chars: Vec<char> = getopt.chars().collect();
        for (i, c) in chars.iter().enumerate() {
            if *c == ':' {
                continue;
            }
            let k = by_short(*c).unwrap_or_else(|| panic!("-{c} is missing"));
            let takes_value = chars.get(i + 1) == Some(&':');
            // -K takes a value in getopt's string although its long form
            // is a switch; reading one is harmless.
            if *c != 'K' {
                assert_eq!(k.arg == Required, takes_value, "-{c} ({})", k.name);
            }
        }
    }

    #[test]
    fn the_table_has_a_row_per_option_and_escapes_pipes() {
        let table = mapping_table();
        assert_eq!(table.lines().count(), KEYS.len() + 2);
        for row in table.lines().skip(2) {
            // Three cells: four unescaped bars.
            assert_eq!(row.replace("\\|", "").matches('|').count(), 4, "{row}");
        }
        assert!(table.contains("| `listening-ip` (`-L`) | `listen` |"));
        assert!(table.contains("| `mobility` | unsupported |"));
    }
}
