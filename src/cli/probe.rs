//! `turnpike probe`: diagnostics ops run from any network.
//!
//! `probe nat` is the shell around the sans-IO [`crate::nat::Probe`]: two
//! UDP sockets, a clock, and the report printed for people or as JSON.

use std::io;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs, UdpSocket};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::Subcommand;

use super::probe_turn::{self, TurnProbeArgs};
use crate::nat::{LifetimeSearch, Probe, ProbeOptions, Report, SocketId};

#[derive(Debug, Subcommand)]
pub enum ProbeCommand {
    /// RFC 5780 tests against a STUN server: NAT mapping, filtering, hairpinning, large packets
    Nat(NatProbeArgs),
    /// Allocate, permit and relay to a local echo peer; report the relayed address and round trip
    Turn(TurnProbeArgs),
}

#[derive(Debug, clap::Args)]
pub struct NatProbeArgs {
    /// stun:HOST[:PORT] (port 3478 by default); the server must serve RFC 5780
    pub url: String,
    /// Print one JSON object instead of the report
    #[arg(long)]
    pub json: bool,
    /// Also measure how long the NAT keeps an idle binding (up to about 3 minutes longer)
    #[arg(long)]
    pub lifetime: bool,
    /// Seconds to wait for the answer to each test
    #[arg(long, value_name = "SECONDS", default_value_t = 3)]
    pub timeout: u64,
}

/// Exit code for a URL or flag that cannot be used.
const EXIT_USAGE: u8 = 2;

pub(super) fn run(cmd: ProbeCommand) -> ExitCode {
    match cmd {
        ProbeCommand::Nat(args) => nat(args),
        ProbeCommand::Turn(args) => probe_turn::run(args),
    }
}

/// `HOST[:PORT]` after a scheme, with 3478 as the default port.
pub(crate) fn host_port(rest: &str) -> Option<(String, u16)> {
    if rest.is_empty() {
        return None;
    }
    if let Some(v6) = rest.strip_prefix('[') {
        let (host, after) = v6.split_once(']')?;
        let port = match after.strip_prefix(':') {
            Some(p) => p.parse().ok()?,
            None if after.is_empty() => 3478,
            None => return None,
        };
        return Some((host.to_string(), port));
    }
    match rest.rsplit_once(':') {
        Some((host, port)) if !host.contains(':') => Some((host.to_string(), port.parse().ok()?)),
        Some(_) => rest
            .parse::<IpAddr>()
            .ok()
            .map(|_| (rest.to_string(), 3478)),
        None => Some((rest.to_string(), 3478)),
    }
}

fn resolve(host: &str, port: u16) -> io::Result<SocketAddr> {
    (host, port)
        .to_socket_addrs()?
        .next()
        .ok_or_else(|| io::Error::other(format!("{host} has no address")))
}

fn nat(args: NatProbeArgs) -> ExitCode {
    let Some((host, port)) = args.url.strip_prefix("stun:").and_then(host_port) else {
        eprintln!(
            "error: `{}` is not a stun: URL (stun:HOST[:PORT])",
            args.url
        );
        return ExitCode::from(EXIT_USAGE);
    };
    let fail = |json: bool, kind: &str, message: String| {
        if json {
            println!(
                "{}",
                serde_json::json!({"ok": false, "error": kind, "message": message})
            );
        }
        eprintln!("error: {message}");
        ExitCode::FAILURE
    };
    let server = match resolve(&host, port) {
        Ok(a) => a,
        Err(e) => return fail(args.json, "resolve", format!("cannot resolve {host}: {e}")),
    };
    let mut options = ProbeOptions {
        transaction_timeout: Duration::from_secs(args.timeout.clamp(1, 60)),
        ..ProbeOptions::default()
    };
    if args.lifetime {
        options.lifetime = Some(LifetimeSearch::default());
    }
    match run_probe(server, options) {
        Ok(Ok(report)) => {
            if args.json {
                let mut v = super::nat_json::report(&report);
                v["ok"] = true.into();
                println!("{v}");
            } else {
                print!("{}", human(&report));
            }
            ExitCode::SUCCESS
        }
        Ok(Err(e)) => fail(args.json, e.kind(), format!("{server}: {e}")),
        Err(e) => fail(args.json, "io", format!("{server}: {e}")),
    }
}

/// Binds the sockets and runs the probe to its verdict.
fn run_probe(
    server: SocketAddr,
    options: ProbeOptions,
) -> io::Result<Result<Report, crate::nat::ProbeError>> {
    let any: SocketAddr = if server.is_ipv4() {
        "0.0.0.0:0".parse().expect("literal")
    } else {
        "[::]:0".parse().expect("literal")
    };
    // The local IP toward the server, so that "no NAT" can be told: a
    // connected socket learns it without sending anything.
    let route = UdpSocket::bind(any)?;
    route.connect(server)?;
    let local_ip = route.local_addr()?.ip();
    drop(route);
    let primary = UdpSocket::bind(SocketAddr::new(local_ip, 0))?;
    let secondary = if options.needs_secondary() {
        Some(UdpSocket::bind(SocketAddr::new(local_ip, 0))?)
    } else {
        None
    };
    let local = primary.local_addr()?;
    let mut seed = [0u8; 32];
    getrandom::fill(&mut seed).map_err(|e| io::Error::other(e.to_string()))?;
    let mut probe = Probe::new(server, local, options, seed, Instant::now());
    primary.set_nonblocking(true)?;
    if let Some(s) = &secondary {
        s.set_nonblocking(true)?;
    }
    let mut buf = vec![0u8; 65_536];
    loop {
        while let Some(t) = probe.poll_transmit() {
            let sock = match t.from_socket {
                SocketId::Primary => &primary,
                SocketId::Secondary => secondary.as_ref().unwrap_or(&primary),
            };
            // A send error (say, no route to the alternate address) is
            // what a lost datagram would be: the test times out.
            let _ = sock.send_to(&t.data, t.to);
        }
        if let Some(v) = probe.verdict() {
            return Ok(v);
        }
        let mut got = false;
        for (id, sock) in [
            (SocketId::Primary, Some(&primary)),
            (SocketId::Secondary, secondary.as_ref()),
        ] {
            let Some(sock) = sock else { continue };
            loop {
                match sock.recv_from(&mut buf) {
                    Ok((n, from)) => {
                        got = true;
                        probe.handle_response(Instant::now(), id, from, &buf[..n]);
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    // ICMP errors surface here on Linux; the test times out.
                    Err(_) => break,
                }
            }
        }
        let now = Instant::now();
        if probe.poll_timeout().is_some_and(|t| t <= now) {
            probe.handle_timeout(now);
        } else if !got {
            let wait = probe.poll_timeout().map_or(Duration::from_millis(5), |t| {
                t.saturating_duration_since(now)
            });
            std::thread::sleep(wait.min(Duration::from_millis(2)));
        }
    }
}

fn human(r: &Report) -> String {
    let yes_no = |v: Option<bool>| match v {
        Some(true) => "yes",
        Some(false) => "no",
        None => "not tested",
    };
    let mut s = String::new();
    s += &format!("server            {}\n", r.server);
    if let Some(o) = r.response_origin {
        s += &format!("response origin   {o}\n");
    }
    s += &format!("other address     {}\n", r.other_address);
    s += &format!("local address     {}\n", r.local);
    s += &format!("mapped address    {}\n", r.mapped);
    s += &format!(
        "NAT               {}\n",
        if r.nat { "yes" } else { "no (mapped = local)" }
    );
    s += &format!("mapping           {}\n", r.mapping.as_str());
    s += &format!("filtering         {}\n", r.filtering.as_str());
    s += &format!("hairpinning       {}\n", yes_no(r.hairpinning));
    s += &format!("large packets     {}\n", yes_no(r.large_packets));
    if let Some(l) = r.lifetime {
        match l.less_than {
            Some(t) => {
                s += &format!(
                    "binding lifetime  {}-{} s\n",
                    l.at_least.as_secs(),
                    t.as_secs()
                )
            }
            None => s += &format!("binding lifetime  over {} s\n", l.at_least.as_secs()),
        }
    }
    s += &format!("classic name      {}\n", r.classic_name());
    s
}

#[cfg(test)]
mod tests {
    use super::host_port;

    #[test]
    fn urls_give_host_and_port_with_3478_by_default() {
        assert_eq!(host_port("example.org"), Some(("example.org".into(), 3478)));
        assert_eq!(host_port("10.0.0.1:5000"), Some(("10.0.0.1".into(), 5000)));
        assert_eq!(host_port("[::1]:5000"), Some(("::1".into(), 5000)));
        assert_eq!(host_port("[::1]"), Some(("::1".into(), 3478)));
        assert_eq!(host_port("::1"), Some(("::1".into(), 3478)));
        assert_eq!(host_port("host:port"), None);
        assert_eq!(host_port(""), None);
        assert_eq!(host_port("[::1"), None);
    }
}
