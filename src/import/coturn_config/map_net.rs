//! Listeners, TLS and DTLS, relay addresses, ports and lifetimes.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::Path;

use super::mapping::Mapper;
use super::report::{printable_name, Status};

const DEFAULT_PORT: u16 = 3478;
const DEFAULT_TLS_PORT: u16 = 5349;

pub(super) fn ip(s: &str) -> Option<IpAddr> {
    s.trim()
        .trim_start_matches('[')
        .trim_end_matches(']')
        .parse()
        .ok()
}

pub(super) fn port(s: Option<&str>) -> Result<u16, String> {
    match s.map(str::trim).and_then(|s| s.parse::<u16>().ok()) {
        Some(p) if p > 0 => Ok(p),
        _ => Err(format!(
            "`{}` is not a port (1-65535)",
            printable_name(s.unwrap_or_default())
        )),
    }
}

/// A list as TOML shows it.
pub(super) fn listing<T: ToString>(items: &[T]) -> String {
    let quoted: Vec<String> = items
        .iter()
        .map(|i| format!("\"{}\"", i.to_string()))
        .collect();
    format!("[{}]", quoted.join(", "))
}

/// The values that failed, for a report line (addresses, not secrets).
fn bad_list(bad: &[String]) -> String {
    bad.iter()
        .map(|b| format!("`{}`", printable_name(b)))
        .collect::<Vec<_>>()
        .join(", ")
}

impl Mapper<'_> {
    /// listening-ip × listening-port and aux-server → listen; the
    /// certificate, tls-listening-port, no-tls and dtls → cert, key,
    /// tls_listen, dtls.
    pub(super) fn listeners(&mut self) {
        let mut ips: Vec<IpAddr> = Vec::new();
        let mut bad = Vec::new();
        for v in self.values("listening-ip") {
            match ip(v) {
                Some(a) if !ips.contains(&a) => ips.push(a),
                Some(_) => {}
                None => bad.push(v.to_string()),
            }
        }
        let listen_port = match self.last("listening-port") {
            None => DEFAULT_PORT,
            Some(v) => port(v).unwrap_or_else(|why| {
                self.invalid(
                    "listening-port",
                    format!("{why}; listen uses {DEFAULT_PORT}"),
                );
                DEFAULT_PORT
            }),
        };
        let mut aux = Vec::new();
        let mut bad_aux = Vec::new();
        for v in self.values("aux-server") {
            match v.trim().parse::<SocketAddr>() {
                Ok(a) => aux.push(a),
                Err(_) => bad_aux.push(v.to_string()),
            }
        }
        // coturn listens on every address of the host when none is named.
        let hosts: Vec<IpAddr> = if ips.is_empty() {
            vec![Ipv4Addr::UNSPECIFIED.into(), Ipv6Addr::UNSPECIFIED.into()]
        } else {
            ips.clone()
        };
        let listen: Vec<SocketAddr> = hosts
            .iter()
            .map(|&h| SocketAddr::new(h, listen_port))
            .collect();
        let mut all = if self.open("listening-ip") || self.open("listening-port") {
            listen.clone()
        } else {
            Vec::new()
        };
        all.extend(&aux);
        if !all.is_empty() {
            let from: Vec<&str> = ["listening-ip", "listening-port", "aux-server"]
                .into_iter()
                .filter(|k| self.open(k))
                .collect();
            self.out.set_list("listen", &all, &from);
        }
        let shown = format!("listen = {}", listing(&all));
        if bad.is_empty() {
            self.mapped("listening-ip", shown.clone());
        } else {
            self.invalid(
                "listening-ip",
                format!("{} not an IP address; {shown}", bad_list(&bad)),
            );
        }
        self.mapped("listening-port", shown.clone());
        if bad_aux.is_empty() {
            self.mapped("aux-server", shown);
        } else {
            self.invalid(
                "aux-server",
                format!("{} not IP:PORT; {shown}", bad_list(&bad_aux)),
            );
        }
        let v4 = ips.iter().filter(|i| i.is_ipv4()).count();
        let v6 = ips.len() - v4;
        if (v4 > 1 || v6 > 1)
            && !self
                .groups
                .iter()
                .any(|g| g.key.is_some_and(|k| k.name == "no-rfc5780"))
        {
            self.notes.push("coturn 4.6 answered RFC 5780 (NAT discovery) when it had two listening addresses of a family; turnpike does only with rfc5780 = true and alt_ip.".into());
        }
        self.tls(&hosts);
        match self.last("alt-listening-port") {
            None => {}
            Some(Some("0")) => self.mapped(
                "alt-listening-port",
                "0 = each listen port + 1, turnpike's default too",
            ),
            Some(v) => match port(v) {
                Ok(p) => {
                    self.out
                        .set("alt_listening_port", i64::from(p), "alt-listening-port");
                    self.mapped(
                        "alt-listening-port",
                        format!("alt_listening_port = {p} (used with rfc5780 = true)"),
                    );
                }
                Err(why) => self.invalid("alt-listening-port", why),
            },
        }
    }

    fn tls(&mut self, hosts: &[IpAddr]) {
        let cert = self.last("cert").flatten().map(|c| self.path(c));
        let pkey = self.last("pkey").flatten().map(|k| self.path(k));
        let no_tls = self.open("no-tls");
        let dtls = self.open("dtls");
        let (cert, pkey) = match (cert, pkey) {
            (Some(c), Some(k)) => (c, k),
            (None, None) => {
                let why = "no cert and pkey here, so coturn served no TLS or DTLS either";
                self.ignored("tls-listening-port", why);
                self.ignored("dtls", why);
                self.mapped("no-tls", "no certificate, so no TLS: nothing to do");
                return;
            }
            _ => {
                let why = "cert and pkey go together; TLS is not carried over";
                self.invalid("cert", why);
                self.invalid("pkey", why);
                let why = "no complete certificate (cert and pkey)";
                self.ignored("tls-listening-port", why);
                self.ignored("dtls", why);
                self.ignored("no-tls", why);
                return;
            }
        };
        if no_tls && !dtls {
            let why = "no-tls and no dtls: no certificate is needed";
            self.ignored("cert", why);
            self.ignored("pkey", why);
            self.ignored("tls-listening-port", why);
            self.mapped("no-tls", "tls_listen and cert left out: no TLS");
            return;
        }
        let found = |p: &str| {
            if Path::new(p).exists() {
                ""
            } else {
                " (not found on this host)"
            }
        };
        self.out.set("cert", cert.clone(), "cert");
        self.out.set("key", pkey.clone(), "pkey");
        self.mapped("cert", format!("cert = \"{cert}\"{}", found(&cert)));
        self.mapped("pkey", format!("key = \"{pkey}\"{}", found(&pkey)));
        if no_tls {
            self.settle(
                "no-tls",
                Status::Unsupported { security: false },
                "tls_listen left out, but the certificate stays for dtls and every TCP port then also accepts TLS",
            );
            self.ignored("tls-listening-port", "no-tls: no TLS listener");
        } else {
            let tls_port = match self.last("tls-listening-port") {
                None => DEFAULT_TLS_PORT,
                Some(v) => port(v).unwrap_or_else(|why| {
                    self.invalid(
                        "tls-listening-port",
                        format!("{why}; tls_listen uses {DEFAULT_TLS_PORT}"),
                    );
                    DEFAULT_TLS_PORT
                }),
            };
            let from = if self.open("tls-listening-port") {
                "tls-listening-port"
            } else {
                "cert"
            };
            let tls: Vec<SocketAddr> = hosts
                .iter()
                .map(|&h| SocketAddr::new(h, tls_port))
                .collect();
            self.out.set_list("tls_listen", &tls, &[from]);
            self.mapped(
                "tls-listening-port",
                format!(
                    "tls_listen = {} (every TCP listener also accepts TLS)",
                    listing(&tls)
                ),
            );
        }
        if dtls {
            self.out.set("dtls", true, "dtls");
            self.mapped("dtls", "dtls = true");
        } else if !self
            .groups
            .iter()
            .any(|g| g.key.is_some_and(|k| k.name == "no-dtls"))
        {
            self.notes.push("coturn 4.6 also served DTLS with this certificate; turnpike does with dtls = true (browsers use TLS, not DTLS).".into());
        }
    }

    /// A certificate path: relative ones from the coturn file's folder.
    fn path(&self, p: &str) -> String {
        let path = Path::new(p);
        if path.is_absolute() {
            p.to_string()
        } else {
            self.source_dir.join(path).display().to_string()
        }
    }

    /// relay-ip, external-ip, relay-threads, the port range, lifetimes and
    /// the address family default.
    pub(super) fn relay(&mut self) {
        let mut relay: Vec<IpAddr> = Vec::new();
        let mut extra = Vec::new();
        let mut bad = Vec::new();
        for v in self.values("relay-ip") {
            match ip(v) {
                Some(a) if a.is_unspecified() => bad.push(v.to_string()),
                Some(a) if relay.contains(&a) => {}
                Some(a) if relay.iter().any(|r| r.is_ipv4() == a.is_ipv4()) => extra.push(a),
                Some(a) => relay.push(a),
                None => bad.push(v.to_string()),
            }
        }
        if !relay.is_empty() {
            self.out.set_list("relay_ip", &relay, &["relay-ip"]);
        }
        let mut shown = format!("relay_ip = {}", listing(&relay));
        if !extra.is_empty() {
            shown += &format!(
                "; {} left out: turnpike relays from one address per family",
                listing(&extra)
            );
        }
        if bad.is_empty() {
            self.mapped("relay-ip", shown);
        } else {
            self.invalid(
                "relay-ip",
                format!("{} not a specific IP address; {shown}", bad_list(&bad)),
            );
        }

        let mut external = Vec::new();
        let mut bad = Vec::new();
        for v in self.values("external-ip") {
            let v = v.trim();
            let ok = match v.split_once('/') {
                Some((public, private)) => ip(public).is_some() && ip(private).is_some(),
                None => ip(v).is_some(),
            };
            if ok {
                external.push(v.to_string());
            } else {
                bad.push(v.to_string());
            }
        }
        if !external.is_empty() {
            self.out
                .set_list("external_ip", &external, &["external-ip"]);
        }
        let shown = format!("external_ip = {}", listing(&external));
        if bad.is_empty() {
            self.mapped("external-ip", shown);
        } else {
            self.invalid(
                "external-ip",
                format!(
                    "{} not PUBLIC or PUBLIC/PRIVATE IP addresses; {shown}",
                    bad_list(&bad)
                ),
            );
        }

        if let Some(v) = self.last("relay-threads") {
            match v.unwrap_or_default().trim().parse::<i64>() {
                Ok(n) => {
                    // coturn: 0 or less is one relay thread, at most 128.
                    let workers = n.clamp(1, 128);
                    self.out.set("workers", workers, "relay-threads");
                    self.mapped("relay-threads", format!("workers = {workers}"));
                }
                Err(_) => self.invalid("relay-threads", "not a number"),
            }
        }
        self.port_range();
        self.lifetimes();
        if self
            .last("allocation-default-address-family")
            .flatten()
            .map(str::trim)
            == Some("ipv4")
        {
            self.mapped(
                "allocation-default-address-family",
                "ipv4: turnpike's behaviour (RFC 6156)",
            );
        }
    }

    fn port_range(&mut self) {
        let min = self.last("min-port").map(port);
        let max = self.last("max-port").map(port);
        if let Some(Err(why)) = &min {
            self.invalid("min-port", why.clone());
        }
        if let Some(Err(why)) = &max {
            self.invalid("max-port", why.clone());
        }
        let lo = match &min {
            Some(Ok(p)) => *p,
            _ => 49152,
        };
        let hi = match &max {
            Some(Ok(p)) => *p,
            _ => 65535,
        };
        if lo > hi {
            let why = format!("min-port {lo} is above max-port {hi} (a default where not given); the range is not carried over");
            self.invalid("min-port", why.clone());
            self.invalid("max-port", why);
            return;
        }
        if let Some(Ok(p)) = min {
            self.out.set("min_port", i64::from(p), "min-port");
            self.mapped("min-port", format!("min_port = {p}"));
        }
        if let Some(Ok(p)) = max {
            self.out.set("max_port", i64::from(p), "max-port");
            self.mapped("max-port", format!("max_port = {p}"));
        }
    }

    fn lifetimes(&mut self) {
        if let Some(v) = self.last("max-allocate-lifetime") {
            match v.map_or(Ok(3600), |s| s.trim().parse::<i64>()) {
                Ok(n) if n >= 0 => {
                    let kept = n.clamp(600, 86_400);
                    self.out
                        .set("max_allocate_lifetime", kept, "max-allocate-lifetime");
                    let why = if kept == n {
                        String::new()
                    } else {
                        format!(" ({n} is outside turnpike's 600-86400)")
                    };
                    self.mapped(
                        "max-allocate-lifetime",
                        format!("max_allocate_lifetime = {kept}{why}"),
                    );
                }
                _ => self.invalid("max-allocate-lifetime", "not a number of seconds"),
            }
        }
        for (name, fixed) in [("channel-lifetime", 600), ("permission-lifetime", 300)] {
            let Some(v) = self.last(name) else { continue };
            match v.map_or(Ok(fixed), |s| s.trim().parse::<i64>()) {
                Ok(n) if n == fixed => self.mapped(
                    name,
                    format!("{fixed} s, RFC 8656's fixed value, as in turnpike"),
                ),
                Ok(_) => {} // the table's rule: unsupported
                Err(_) => self.invalid(name, "not a number of seconds"),
            }
        }
    }
}
