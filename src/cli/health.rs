//! `turnpike health`: is the server on this host alive (or ready)? For
//! container HEALTHCHECKs and scripts: exit 0, or 1 with one line saying
//! why. It asks `health_listen`, else the admin API, else (both off) sends
//! a STUN Binding to the first listener.

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream, UdpSocket};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use crate::config::Config;
use crate::stun::{Class, Message, MessageBuilder, MessageType, Method, TransactionId};

/// How long each check may take.
const WITHIN: Duration = Duration::from_secs(3);

#[derive(Debug, clap::Args)]
pub struct HealthArgs {
    /// The server's config file (the same one `serve` reads)
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Ask /readyz (ready for new clients) instead of /livez (alive)
    #[arg(long)]
    pub ready: bool,
}

pub(super) fn run(args: HealthArgs) -> ExitCode {
    let config = match Config::load(args.config.as_deref(), Default::default()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(super::EXIT_CONFIG);
        }
    };
    let path = if args.ready { "/readyz" } else { "/livez" };
    let outcome = match config.health_listen.or(config.admin_listen) {
        Some(addr) => http_ok(local(addr), path),
        None => match config.listen.first() {
            Some(addr) => binding_ok(local(*addr)),
            None => Err("no listener configured".into()),
        },
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(why) => {
            eprintln!("unhealthy: {why}");
            ExitCode::FAILURE
        }
    }
}

/// A wildcard listener is reached on loopback of its family.
pub(super) fn local(addr: SocketAddr) -> SocketAddr {
    match addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => {
            SocketAddr::new(Ipv4Addr::LOCALHOST.into(), addr.port())
        }
        IpAddr::V6(ip) if ip.is_unspecified() => {
            SocketAddr::new(Ipv6Addr::LOCALHOST.into(), addr.port())
        }
        _ => addr,
    }
}

/// GET `path` on `addr`: Ok on a 200.
fn http_ok(addr: SocketAddr, path: &str) -> Result<(), String> {
    let (status, body) = http(addr, "GET", path, None, "")?;
    if status == 200 {
        Ok(())
    } else {
        Err(format!(
            "http://{addr}{path} answered {status} {}",
            body.trim()
        ))
    }
}

/// One small HTTP/1.1 exchange (the health and admin endpoints answer in a
/// few hundred bytes): the status and the body.
pub(super) fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    bearer: Option<&str>,
    body: &str,
) -> Result<(u16, String), String> {
    let mut s = TcpStream::connect_timeout(&addr, WITHIN).map_err(|e| format!("{addr}: {e}"))?;
    s.set_read_timeout(Some(WITHIN)).ok();
    s.set_write_timeout(Some(WITHIN)).ok();
    let auth = bearer.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n{auth}\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes())
        .map_err(|e| format!("{addr}: {e}"))?;
    let mut answer = Vec::new();
    s.take(65_536)
        .read_to_end(&mut answer)
        .map_err(|e| format!("{addr}: {e}"))?;
    let text = String::from_utf8_lossy(&answer);
    let status = text
        .get(9..12)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("{addr}: not an HTTP answer"))?;
    let body = text.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    Ok((status, body.to_string()))
}

/// A STUN Binding to `addr` over UDP: Ok on a success answer.
fn binding_ok(addr: SocketAddr) -> Result<(), String> {
    let bind: SocketAddr = if addr.is_ipv4() {
        (Ipv4Addr::UNSPECIFIED, 0).into()
    } else {
        (Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let sock = UdpSocket::bind(bind).map_err(|e| e.to_string())?;
    sock.set_read_timeout(Some(WITHIN)).ok();
    let mut id = [0u8; 12];
    getrandom::fill(&mut id).map_err(|e| e.to_string())?;
    let txid = TransactionId(id);
    let mut buf = [0u8; 64];
    let n = MessageBuilder::new(
        &mut buf,
        MessageType::new(Method::BINDING, Class::Request),
        txid,
    )
    .finish()
    .map_err(|e| e.to_string())?;
    sock.send_to(&buf[..n], addr)
        .map_err(|e| format!("{addr}: {e}"))?;
    let mut answer = [0u8; 512];
    let (n, _) = sock
        .recv_from(&mut answer)
        .map_err(|e| format!("no Binding answer from {addr}: {e}"))?;
    match Message::parse(&answer[..n]) {
        Ok(m) if m.class() == Class::SuccessResponse && m.transaction_id() == txid => Ok(()),
        _ => Err(format!("{addr} answered the Binding with something else")),
    }
}
