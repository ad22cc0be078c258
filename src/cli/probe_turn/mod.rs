//! `turnpike probe turn`: a TURN health check against any server.
//!
//! Allocates a UDP relay (over UDP, or over TCP with `?transport=tcp`) with
//! long-term or REST credentials, permits an echo peer this process runs
//! itself, sends five Send indications through the relay to it and times the
//! Data indications that come back. Frees the allocation at the end.
//!
//! The peer's address is what the server sees: the echo socket first sends a
//! Binding request to the server and uses its XOR-MAPPED-ADDRESS (through a
//! NAT with endpoint-independent filtering the relay can reach it there); with
//! no answer within a second it falls back to the local address of the
//! interface that routes to the server.
//!
//! Blocking std sockets: one run, a handful of packets.

mod client;
mod peer;
mod url;

use std::fmt;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::stun::client::ClientCredentials;
use crate::turn_client::{Family, RelayTransport, Request};

use client::*;
use peer::*;
use url::*;

/// Arguments of `turnpike probe turn`.
#[derive(Debug, clap::Args)]
pub struct TurnProbeArgs {
    /// turn:HOST[:PORT][?transport=udp|tcp] (port 3478 by default)
    pub url: String,
    /// User name (with --secret: the user part of the REST user name)
    #[arg(long)]
    pub user: Option<String>,
    /// Password of the long-term credential
    #[arg(long)]
    pub password: Option<String>,
    /// REST API shared secret: the user name becomes EXPIRY:USER and the
    /// password base64(HMAC-SHA1(secret, user name))
    #[arg(long)]
    pub secret: Option<String>,
    /// Lifetime of the REST credential, in seconds
    #[arg(long, value_name = "SECONDS", default_value_t = 3600)]
    pub ttl: u64,
    /// Seconds to wait for each answer
    #[arg(long, value_name = "SECONDS", default_value_t = 5)]
    pub timeout: u64,
    /// Print one JSON object instead of the report
    #[arg(long)]
    pub json: bool,
}

/// Exit code for a URL or flag that cannot be used.
pub(super) const EXIT_USAGE: u8 = 2;
/// Send indications relayed to the echo peer.
pub(super) const PROBES: usize = 5;
/// Pause between two Send indications.
pub(super) const PROBE_SPACING: Duration = Duration::from_millis(100);
/// How long the peer's Binding request may take before the fallback.
pub(super) const BINDING_WAIT: Duration = Duration::from_secs(1);
/// First UDP retransmission interval (RFC 8489 §6.2.1 suggests 500 ms; a
/// probe wants a quicker second chance).
pub(super) const FIRST_RTO: Duration = Duration::from_millis(250);
/// Cap of the doubling retransmission interval.
pub(super) const MAX_RTO: Duration = Duration::from_secs(2);
/// Every payload starts with this, then the run id and the sequence number.
pub(super) const MAGIC: &[u8; 8] = b"tp-probe";
pub(super) const PAYLOAD_LEN: usize = MAGIC.len() + 8 + 4;
pub(super) const SOFTWARE: &str = "turnpike probe";

/// Runs the check; prints the report, or one line with the reason.
pub(super) fn run(args: TurnProbeArgs) -> ExitCode {
    let json = args.json;
    match probe(args) {
        Ok(report) => {
            if json {
                println!("{}", report.to_json());
            } else {
                print!("{report}");
            }
            ExitCode::SUCCESS
        }
        Err(f) => {
            let message = one_line(&f.message);
            if json {
                println!("{}", serde_json::json!({"ok": false, "error": message}));
            }
            eprintln!("error: {message}");
            ExitCode::from(f.exit)
        }
    }
}

/// Why the probe stopped, and its exit code.
#[derive(Debug)]
pub(super) struct Failure {
    message: String,
    exit: u8,
}

impl Failure {
    fn new(message: impl Into<String>) -> Self {
        Failure {
            message: message.into(),
            exit: 1,
        }
    }

    fn usage(message: impl Into<String>) -> Self {
        Failure {
            message: message.into(),
            exit: EXIT_USAGE,
        }
    }
}

/// Text from the command line or the server, made safe for one line.
pub(super) fn one_line(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

/// What the probe found.
#[derive(Debug)]
struct Report {
    /// `HOST:PORT` as given.
    label: String,
    server: SocketAddr,
    transport: Transport,
    realm: String,
    relayed: SocketAddr,
    mapped: Option<SocketAddr>,
    peer: SocketAddr,
    peer_from_binding: bool,
    /// Round trip of each probe that came back.
    rtts: Vec<Duration>,
}

impl Report {
    /// (min, avg, max) in milliseconds; the probe fails before a report
    /// without any round trip.
    fn rtt_ms(&self) -> (f64, f64, f64) {
        let ms: Vec<f64> = self.rtts.iter().map(|d| d.as_secs_f64() * 1e3).collect();
        let min = ms.iter().copied().fold(f64::INFINITY, f64::min);
        let max = ms.iter().copied().fold(0.0, f64::max);
        let avg = ms.iter().sum::<f64>() / ms.len().max(1) as f64;
        if ms.is_empty() {
            (0.0, 0.0, 0.0)
        } else {
            (min, avg, max)
        }
    }

    fn to_json(&self) -> serde_json::Value {
        let (min, avg, max) = self.rtt_ms();
        let round = |x: f64| (x * 1000.0).round() / 1000.0;
        serde_json::json!({
            "ok": true,
            "server": self.server.to_string(),
            "transport": self.transport.to_string(),
            "relayed": self.relayed.to_string(),
            "mapped": self.mapped.map(|m| m.to_string()),
            "peer": self.peer.to_string(),
            "sent": PROBES,
            "received": self.rtts.len(),
            "rtt_ms": {"min": round(min), "avg": round(avg), "max": round(max)},
        })
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let server = self.server.to_string();
        if server == self.label {
            writeln!(f, "server:    {server}")?;
        } else {
            writeln!(f, "server:    {} ({server})", self.label)?;
        }
        writeln!(f, "transport: {}", self.transport)?;
        writeln!(f, "realm:     {}", one_line(&self.realm))?;
        writeln!(f, "relayed:   {}", self.relayed)?;
        match self.mapped {
            Some(m) => writeln!(f, "mapped:    {m}")?,
            None => writeln!(f, "mapped:    (no XOR-MAPPED-ADDRESS)")?,
        }
        let how = if self.peer_from_binding {
            "as the server saw it in a Binding"
        } else {
            "local address: the server did not answer a Binding"
        };
        writeln!(f, "peer:      {} ({how})", self.peer)?;
        writeln!(f, "received:  {}/{PROBES}", self.rtts.len())?;
        let (min, avg, max) = self.rtt_ms();
        writeln!(
            f,
            "rtt:       min {min:.3} ms, avg {avg:.3} ms, max {max:.3} ms"
        )
    }
}

/// The user name and password to authenticate with.
fn credentials(args: &TurnProbeArgs, now_unix: u64) -> Result<(String, String), Failure> {
    let Some(user) = &args.user else {
        return Err(Failure::usage(
            "--user is required (with --password P, or --secret S for REST credentials)",
        ));
    };
    match (&args.password, &args.secret) {
        (Some(password), None) => Ok((user.clone(), password.clone())),
        (None, Some(secret)) => {
            if secret.is_empty() || args.ttl == 0 {
                return Err(Failure::usage(
                    "--secret must not be empty and --ttl must be at least 1",
                ));
            }
            Ok(crate::auth::rest::mint(
                secret.as_bytes(),
                user,
                args.ttl,
                ':',
                now_unix,
            ))
        }
        (Some(_), Some(_)) => Err(Failure::usage("give --password or --secret, not both")),
        (None, None) => Err(Failure::usage(
            "give --password P, or --secret S for REST credentials",
        )),
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn probe(args: TurnProbeArgs) -> Result<Report, Failure> {
    let target = parse_url(&args.url).ok_or_else(|| {
        Failure::usage(format!(
            "`{}` is not a turn: URL (turn:HOST[:PORT][?transport=udp|tcp])",
            args.url
        ))
    })?;
    if args.timeout == 0 || args.timeout > 3600 {
        return Err(Failure::usage("--timeout must be 1 to 3600 seconds"));
    }
    let timeout = Duration::from_secs(args.timeout);
    let (user, password) = credentials(&args, unix_now())?;
    let rest = args.secret.is_some();
    let server = resolve(&target)?;
    let label = target.label();
    let mut client = Client::connect(
        server,
        target.transport,
        label.clone(),
        ClientCredentials::new(&user, &password),
        timeout,
    )?;

    // IPv4 is the default family: only IPv6 is asked for by name.
    let allocate = Request::Allocate {
        transport: RelayTransport::Udp,
        family: server.is_ipv6().then_some(Family::V6),
    };
    let answer = client
        .call(allocate, timeout)
        .map_err(|e| refusal("Allocate", e, |code| allocate_hint(code, rest)))?;
    let relayed = answer
        .relayed()
        .map_err(|_| Failure::new("Allocate answer has no usable XOR-RELAYED-ADDRESS"))?;
    let mapped = answer.mapped();

    let relay = relay_check(&mut client, server);

    // Free the allocation whatever happened; the answer does not matter.
    let free = Request::Refresh { lifetime: 0 };
    let _ = client.call(free, timeout.min(Duration::from_secs(2)));

    let (peer, rtts) = relay?;
    Ok(Report {
        label,
        server,
        transport: target.transport,
        realm: client.turn.credentials().realm.clone(),
        relayed,
        mapped,
        peer: peer.addr,
        peer_from_binding: peer.from_binding,
        rtts,
    })
}

fn allocate_hint(code: u16, rest: bool) -> Option<String> {
    Some(
        match code {
            401 if rest => "wrong user or secret, or the clocks disagree",
            401 => "wrong user or password",
            403 => "the server refuses this user or this client address",
            437 => "this client address already has an allocation",
            440 => "the server does not relay this address family",
            442 => "the server does not relay UDP",
            486 => "the user's allocation quota is used up",
            508 => "the server is out of relay ports",
            _ => return None,
        }
        .to_string(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(host: Host, port: u16, transport: Transport) -> Option<Target> {
        Some(Target {
            host,
            port,
            transport,
        })
    }

    #[test]
    fn turn_urls_parse() {
        let v4 = |s: &str| Host::Ip(s.parse().unwrap());
        assert_eq!(
            parse_url("turn:127.0.0.1"),
            target(v4("127.0.0.1"), 3478, Transport::Udp)
        );
        assert_eq!(
            parse_url("turn:127.0.0.1:5000?transport=tcp"),
            target(v4("127.0.0.1"), 5000, Transport::Tcp)
        );
        assert_eq!(
            parse_url("TURN:[::1]:19302?transport=UDP"),
            target(v4("::1"), 19302, Transport::Udp)
        );
        assert_eq!(
            parse_url("turn:[2001:db8::1]"),
            target(v4("2001:db8::1"), 3478, Transport::Udp)
        );
        assert_eq!(
            parse_url("turn:turn.example.com:443?transport=tcp"),
            target(Host::Name("turn.example.com".into()), 443, Transport::Tcp)
        );
        assert_eq!(
            target(Host::Ip("::1".parse().unwrap()), 3478, Transport::Udp)
                .unwrap()
                .label(),
            "[::1]:3478"
        );
    }

    #[test]
    fn malformed_urls_are_refused() {
        for bad in [
            "",
            "turn",
            "turn:",
            "stun:127.0.0.1",
            "turns:127.0.0.1",
            "turn://127.0.0.1",
            "turn:127.0.0.1:",
            "turn:127.0.0.1:0",
            "turn:127.0.0.1:65536",
            "turn:127.0.0.1:+1",
            "turn:127.0.0.1:80:90",
            "turn:::1",
            "turn:[::1",
            "turn:[::1]x",
            "turn:[127.0.0.1]",
            "turn:1.2.3",
            "turn:host name",
            "turn:user@host",
            "turn:host/path",
            "turn:host?transport=sctp",
            "turn:host?proto=udp",
            "turn:host?transport",
            "turn:h\u{e9}",
            "turn:a..b",
        ] {
            assert_eq!(parse_url(bad), None, "{bad:?}");
        }
    }

    fn args(user: Option<&str>, password: Option<&str>, secret: Option<&str>) -> TurnProbeArgs {
        TurnProbeArgs {
            url: "turn:127.0.0.1".into(),
            user: user.map(Into::into),
            password: password.map(Into::into),
            secret: secret.map(Into::into),
            ttl: 3600,
            timeout: 5,
            json: false,
        }
    }

    #[test]
    fn rest_credentials_carry_the_expiry_and_the_hmac() {
        let (user, password) =
            credentials(&args(Some("alice"), None, Some("key")), 1_700_000_000).unwrap();
        assert_eq!(user, "1700003600:alice");
        assert_eq!(password, crate::auth::rest::password(b"key", &user));
        let (user, password) =
            credentials(&args(Some("alice"), Some("pw"), None), 1_700_000_000).unwrap();
        assert_eq!((user.as_str(), password.as_str()), ("alice", "pw"));
    }

    #[test]
    fn credential_flags_must_be_complete_and_unambiguous() {
        for a in [
            args(None, Some("pw"), None),
            args(Some("alice"), None, None),
            args(Some("alice"), Some("pw"), Some("key")),
            args(Some("alice"), None, Some("")),
        ] {
            assert_eq!(credentials(&a, 0).unwrap_err().exit, EXIT_USAGE);
        }
    }

    #[test]
    fn report_prints_rtts_and_json() {
        let report = Report {
            label: "localhost:3478".into(),
            server: "127.0.0.1:3478".parse().unwrap(),
            transport: Transport::Tcp,
            realm: "r".into(),
            relayed: "127.0.0.1:50000".parse().unwrap(),
            mapped: None,
            peer: "127.0.0.1:40000".parse().unwrap(),
            peer_from_binding: true,
            rtts: vec![Duration::from_micros(1500), Duration::from_micros(500)],
        };
        let v = report.to_json();
        assert_eq!(v["received"], 2);
        assert_eq!(v["sent"], 5);
        assert_eq!(v["transport"], "tcp");
        assert_eq!(v["mapped"], serde_json::Value::Null);
        assert_eq!(v["rtt_ms"]["min"], 0.5);
        assert_eq!(v["rtt_ms"]["avg"], 1.0);
        assert_eq!(v["rtt_ms"]["max"], 1.5);
        let text = report.to_string();
        assert!(
            text.contains("server:    localhost:3478 (127.0.0.1:3478)"),
            "{text}"
        );
        assert!(text.contains("received:  2/5"), "{text}");
        assert!(
            text.contains("min 0.500 ms, avg 1.000 ms, max 1.500 ms"),
            "{text}"
        );
    }
}
