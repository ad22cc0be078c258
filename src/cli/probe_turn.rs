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

use std::fmt;
use std::io::{self, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream, ToSocketAddrs, UdpSocket};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::bench::proto::{self, Creds};
use crate::stun::attributes::{decode_address, decode_xor_address, reason_phrase, ErrorCode};
use crate::stun::framing::{FrameKind, Framer};
use crate::stun::{AttributeType, Class, Message, MessageBuilder, MessageType, Method};
use crate::stun::{TransactionId, MAX_MESSAGE_LEN};

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
const EXIT_USAGE: u8 = 2;
/// Send indications relayed to the echo peer.
const PROBES: usize = 5;
/// Pause between two Send indications.
const PROBE_SPACING: Duration = Duration::from_millis(100);
/// How long the peer's Binding request may take before the fallback.
const BINDING_WAIT: Duration = Duration::from_secs(1);
/// First UDP retransmission interval (RFC 8489 §6.2.1 suggests 500 ms; a
/// probe wants a quicker second chance).
const FIRST_RTO: Duration = Duration::from_millis(250);
/// Cap of the doubling retransmission interval.
const MAX_RTO: Duration = Duration::from_secs(2);
/// Every payload starts with this, then the run id and the sequence number.
const MAGIC: &[u8; 8] = b"tp-probe";
const PAYLOAD_LEN: usize = MAGIC.len() + 8 + 4;
const SOFTWARE: &str = "turnpike probe";

/// Runs the check; prints the report, or one line with the reason.
pub fn run(args: TurnProbeArgs) -> ExitCode {
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
struct Failure {
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
fn one_line(s: &str) -> String {
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

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Transport {
    Udp,
    Tcp,
}

impl fmt::Display for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Transport::Udp => "udp",
            Transport::Tcp => "tcp",
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Host {
    Ip(IpAddr),
    Name(String),
}

/// A parsed `turn:` URL (RFC 7065).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Target {
    host: Host,
    port: u16,
    transport: Transport,
}

impl Target {
    /// `HOST:PORT`, IPv6 in brackets.
    fn label(&self) -> String {
        match &self.host {
            Host::Ip(ip) => SocketAddr::new(*ip, self.port).to_string(),
            Host::Name(name) => format!("{name}:{}", self.port),
        }
    }
}

/// `turn:HOST[:PORT][?transport=udp|tcp]`; `None` for anything else.
fn parse_url(url: &str) -> Option<Target> {
    let scheme = url.get(..5)?;
    if !scheme.eq_ignore_ascii_case("turn:") {
        return None;
    }
    let rest = &url[5..];
    let (hostport, query) = match rest.split_once('?') {
        Some((h, q)) => (h, Some(q)),
        None => (rest, None),
    };
    let transport = match query {
        None => Transport::Udp,
        Some(q) => {
            let (key, value) = q.split_once('=')?;
            if !key.eq_ignore_ascii_case("transport") {
                return None;
            }
            match value.to_ascii_lowercase().as_str() {
                "udp" => Transport::Udp,
                "tcp" => Transport::Tcp,
                _ => return None,
            }
        }
    };
    let (host, port) = if let Some(v6) = hostport.strip_prefix('[') {
        let (ip, after) = v6.split_once(']')?;
        let ip: Ipv6Addr = ip.parse().ok()?;
        let port = match after {
            "" => 3478,
            _ => parse_port(after.strip_prefix(':')?)?,
        };
        (Host::Ip(IpAddr::V6(ip)), port)
    } else {
        let (host, port) = match hostport.split_once(':') {
            Some((h, p)) => (h, parse_port(p)?),
            None => (hostport, 3478),
        };
        if let Ok(ip) = host.parse::<Ipv4Addr>() {
            (Host::Ip(IpAddr::V4(ip)), port)
        } else if is_host_name(host) {
            (Host::Name(host.to_string()), port)
        } else {
            return None;
        }
    };
    Some(Target {
        host,
        port,
        transport,
    })
}

fn parse_port(s: &str) -> Option<u16> {
    if s.is_empty() || s.len() > 5 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok().filter(|&p| p != 0)
}

/// A DNS name: dot-separated labels of letters, digits, `-` and `_`; one
/// trailing dot allowed. All digits and dots is a broken IPv4 address.
fn is_host_name(host: &str) -> bool {
    let name = host.strip_suffix('.').unwrap_or(host);
    !name.is_empty()
        && name.len() <= 253
        && !name.bytes().all(|b| b.is_ascii_digit() || b == b'.')
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

/// The server's address; a name's IPv4 address is preferred (most TURN
/// servers listen on IPv4; `localhost` often resolves to ::1 first).
fn resolve(target: &Target) -> Result<SocketAddr, Failure> {
    match &target.host {
        Host::Ip(ip) => Ok(SocketAddr::new(*ip, target.port)),
        Host::Name(name) => {
            let addrs: Vec<SocketAddr> = (name.as_str(), target.port)
                .to_socket_addrs()
                .map_err(|e| Failure::new(format!("cannot resolve {name}: {e}")))?
                .collect();
            addrs
                .iter()
                .find(|a| a.is_ipv4())
                .or_else(|| addrs.first())
                .copied()
                .ok_or_else(|| Failure::new(format!("{name} has no address")))
        }
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
            let username = format!("{}:{user}", now_unix.saturating_add(args.ttl));
            let password = crate::auth::rest::password(secret.as_bytes(), &username);
            Ok((username, password))
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

/// Twelve random bytes; a clock-derived id if the OS has no randomness.
fn random_txid() -> TransactionId {
    let mut id = [0u8; 12];
    if getrandom::fill(&mut id).is_err() {
        static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let seed = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        id = proto::txid(seed, N.fetch_add(1, Ordering::Relaxed));
    }
    TransactionId(id)
}

fn unspecified(like: SocketAddr) -> SocketAddr {
    if like.is_ipv4() {
        SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0))
    } else {
        SocketAddr::from((Ipv6Addr::UNSPECIFIED, 0))
    }
}

fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

/// An I/O error in words, without the OS error number.
fn describe(e: &io::Error) -> String {
    match e.kind() {
        io::ErrorKind::ConnectionRefused => "connection refused".into(),
        io::ErrorKind::ConnectionReset => "connection reset".into(),
        _ => {
            let s = e.to_string();
            match s.find(" (os error ") {
                Some(at) => s[..at].to_string(),
                None => s,
            }
        }
    }
}

/// "5 s", "1 s".
fn seconds(d: Duration) -> String {
    format!("{} s", d.as_secs_f64())
}

/// The client's connection to the server: datagrams, or a stream cut into
/// STUN messages (ChannelData frames are skipped).
enum Conn {
    Udp(UdpSocket),
    Tcp(TcpStream, Framer),
}

impl Conn {
    fn send(&mut self, msg: &[u8]) -> io::Result<()> {
        match self {
            Conn::Udp(s) => s.send(msg).map(|_| ()),
            Conn::Tcp(s, _) => s.write_all(msg),
        }
    }

    /// The next STUN message, `Ok(None)` once `deadline` passes.
    fn recv(&mut self, deadline: Instant) -> io::Result<Option<Vec<u8>>> {
        match self {
            Conn::Udp(s) => {
                let mut buf = vec![0u8; MAX_MESSAGE_LEN];
                loop {
                    let Some(left) = deadline.checked_duration_since(Instant::now()) else {
                        return Ok(None);
                    };
                    s.set_read_timeout(Some(left.max(Duration::from_millis(1))))?;
                    match s.recv(&mut buf) {
                        Ok(n) if Message::parse(&buf[..n]).is_ok() => {
                            return Ok(Some(buf[..n].to_vec()))
                        }
                        Ok(_) => continue,
                        Err(e) if is_timeout(&e) || e.kind() == io::ErrorKind::Interrupted => {
                            continue
                        }
                        Err(e) => return Err(e),
                    }
                }
            }
            Conn::Tcp(s, framer) => loop {
                match framer.next_frame() {
                    Ok(Some(frame)) if frame.kind == FrameKind::Stun => {
                        return Ok(Some(frame.bytes.to_vec()))
                    }
                    Ok(Some(_)) => continue,
                    Ok(None) => {}
                    Err(e) => return Err(io::Error::new(io::ErrorKind::InvalidData, e)),
                }
                let Some(left) = deadline.checked_duration_since(Instant::now()) else {
                    return Ok(None);
                };
                s.set_read_timeout(Some(left.max(Duration::from_millis(1))))?;
                let read = s.read(framer.unfilled());
                match read {
                    Ok(0) => {
                        framer.filled(0);
                        return Err(io::Error::new(
                            io::ErrorKind::UnexpectedEof,
                            "the server closed the connection",
                        ));
                    }
                    Ok(n) => framer.filled(n),
                    Err(e) => {
                        framer.filled(0);
                        if !is_timeout(&e) && e.kind() != io::ErrorKind::Interrupted {
                            return Err(e);
                        }
                    }
                }
            },
        }
    }
}

/// Why an authenticated request did not succeed.
enum CallError {
    /// The server could not be reached or did not answer.
    Unreachable(String),
    /// An answer that makes no sense for the request.
    Failed(String),
    /// An error response.
    Refused { code: u16, reason: String },
}

/// A connection with credentials and the realm and nonce learned so far.
struct Client {
    conn: Conn,
    transport: Transport,
    label: String,
    creds: Creds,
    timeout: Duration,
}

impl Client {
    fn connect(
        server: SocketAddr,
        transport: Transport,
        label: String,
        creds: Creds,
        timeout: Duration,
    ) -> Result<Self, Failure> {
        let cannot = |e: io::Error| {
            Failure::new(format!(
                "cannot reach {label} over {transport}: {}",
                describe(&e)
            ))
        };
        let conn = match transport {
            Transport::Udp => {
                let s = UdpSocket::bind(unspecified(server)).map_err(cannot)?;
                s.connect(server).map_err(cannot)?;
                Conn::Udp(s)
            }
            Transport::Tcp => {
                let s = TcpStream::connect_timeout(&server, timeout).map_err(|e| {
                    if is_timeout(&e) {
                        Failure::new(format!(
                            "no answer from {label} over tcp within {}",
                            seconds(timeout)
                        ))
                    } else {
                        cannot(e)
                    }
                })?;
                let _ = s.set_nodelay(true);
                Conn::Tcp(s, Framer::new())
            }
        };
        Ok(Client {
            conn,
            transport,
            label,
            creds,
            timeout,
        })
    }

    /// One transaction: the answer with `req`'s transaction id. Over UDP the
    /// request is retransmitted with a doubling interval until `wait` ends.
    fn transact(&mut self, req: &[u8], wait: Duration) -> Result<Vec<u8>, String> {
        let start = Instant::now();
        let deadline = start + wait;
        let mut rto = FIRST_RTO;
        let mut next_send = start;
        let io_error = |e: io::Error, label: &str, transport: Transport| match e.kind() {
            io::ErrorKind::ConnectionRefused => {
                format!("no answer from {label} over {transport}: connection refused (nothing listens there?)")
            }
            _ => format!("talking to {label} over {transport}: {}", describe(&e)),
        };
        loop {
            let now = Instant::now();
            if now >= deadline {
                return Err(format!(
                    "no answer from {} over {} within {}",
                    self.label,
                    self.transport,
                    seconds(wait)
                ));
            }
            if now >= next_send {
                self.conn
                    .send(req)
                    .map_err(|e| io_error(e, &self.label, self.transport))?;
                next_send = match self.conn {
                    Conn::Udp(_) => now + rto,
                    Conn::Tcp(..) => deadline,
                };
                rto = (rto * 2).min(MAX_RTO);
            }
            match self.conn.recv(next_send.min(deadline)) {
                Ok(Some(answer)) if answer[8..20] == req[8..20] => return Ok(answer),
                Ok(_) => {}
                Err(e) => return Err(io_error(e, &self.label, self.transport)),
            }
        }
    }

    /// An authenticated request: learns realm and nonce from a 401, a new
    /// nonce from a 438, and gives up on a 401 to a request that carried
    /// credentials.
    fn call(
        &mut self,
        method: Method,
        wait: Duration,
        attrs: &dyn Fn(&mut MessageBuilder<'_>),
    ) -> Result<Vec<u8>, CallError> {
        let mut req = [0u8; 1500];
        let mut stale = 0;
        for _ in 0..6 {
            let with_creds = !self.creds.nonce.is_empty();
            let creds = with_creds.then_some(&self.creds);
            let txid = random_txid();
            let n = proto::request(&mut req, method, txid.0, creds, |b| {
                attrs(b);
                b.add_software(SOFTWARE);
            });
            if n == 0 {
                return Err(CallError::Failed("request does not fit a buffer".into()));
            }
            let answer = self
                .transact(&req[..n], wait)
                .map_err(CallError::Unreachable)?;
            let m = Message::parse(&answer)
                .map_err(|e| CallError::Failed(format!("unparsable answer: {e}")))?;
            if m.method() != method {
                return Err(CallError::Failed(format!(
                    "answer of the wrong method 0x{:03x}",
                    m.method().0
                )));
            }
            match m.class() {
                Class::SuccessResponse => return Ok(answer),
                Class::ErrorResponse => {}
                _ => return Err(CallError::Failed("answer is not a response".into())),
            }
            let Some(error) = m
                .get(AttributeType::ERROR_CODE)
                .and_then(|v| ErrorCode::decode(v).ok())
            else {
                return Err(CallError::Failed(
                    "error response without a valid ERROR-CODE".into(),
                ));
            };
            let refused = CallError::Refused {
                code: error.code,
                reason: if error.reason.trim().is_empty() {
                    reason_phrase(error.code).to_string()
                } else {
                    one_line(error.reason.trim())
                },
            };
            match error.code {
                401 if !with_creds => {}
                438 if stale < 2 => stale += 1,
                _ => return Err(refused),
            }
            if !self.creds.learn(&m) {
                return Err(CallError::Failed(format!(
                    "{} {} without REALM and NONCE (the server does not use long-term credentials)",
                    error.code,
                    reason_phrase(error.code)
                )));
            }
        }
        Err(CallError::Failed(
            "the server keeps asking to authenticate".into(),
        ))
    }
}

/// "Allocate refused: 401 Unauthorized (hint)".
fn refusal(what: &str, e: CallError, hint: impl Fn(u16) -> Option<String>) -> Failure {
    match e {
        CallError::Unreachable(why) => Failure::new(why),
        CallError::Failed(why) => Failure::new(format!("{what}: {why}")),
        CallError::Refused { code, reason } => Failure::new(match hint(code) {
            Some(h) => format!("{what} refused: {code} {reason} ({h})"),
            None => format!("{what} refused: {code} {reason}"),
        }),
    }
}

/// The echo peer: its socket answers every probe payload to its sender.
struct Peer {
    addr: SocketAddr,
    from_binding: bool,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Peer {
    fn start(server: SocketAddr, run_id: [u8; 8]) -> Result<Peer, Failure> {
        let fail = |e: io::Error| Failure::new(format!("echo peer: {}", describe(&e)));
        let sock = UdpSocket::bind(unspecified(server)).map_err(fail)?;
        let port = sock.local_addr().map_err(fail)?.port();
        let (addr, from_binding) = match binding(&sock, server) {
            Some(mapped) => (mapped, true),
            None => {
                let route = UdpSocket::bind(unspecified(server)).map_err(fail)?;
                route.connect(server).map_err(fail)?;
                (
                    SocketAddr::new(route.local_addr().map_err(fail)?.ip(), port),
                    false,
                )
            }
        };
        sock.set_read_timeout(Some(Duration::from_millis(100)))
            .map_err(fail)?;
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        let thread = std::thread::Builder::new()
            .name("probe-echo".into())
            .spawn(move || {
                let mut buf = [0u8; 2048];
                while !stopped.load(Ordering::Relaxed) {
                    if let Ok((n, from)) = sock.recv_from(&mut buf) {
                        // Only our own probes: this port answers nobody else.
                        if from != server
                            && n == PAYLOAD_LEN
                            && buf[..MAGIC.len()] == MAGIC[..]
                            && buf[MAGIC.len()..MAGIC.len() + 8] == run_id
                        {
                            let _ = sock.send_to(&buf[..n], from);
                        }
                    }
                }
            })
            .map_err(fail)?;
        Ok(Peer {
            addr,
            from_binding,
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The address the server sees `sock` at, from a Binding request; `None`
/// without an answer within [`BINDING_WAIT`].
fn binding(sock: &UdpSocket, server: SocketAddr) -> Option<SocketAddr> {
    let txid = random_txid();
    let mut req = [0u8; 64];
    let n = MessageBuilder::new(
        &mut req,
        MessageType::new(Method::BINDING, Class::Request),
        txid,
    )
    .finish()
    .ok()?;
    let deadline = Instant::now() + BINDING_WAIT;
    let mut rto = FIRST_RTO;
    let mut buf = [0u8; 1500];
    loop {
        let now = Instant::now();
        if now >= deadline {
            return None;
        }
        let _ = sock.send_to(&req[..n], server);
        let until = (now + rto).min(deadline);
        rto *= 2;
        while let Some(left) = until.checked_duration_since(Instant::now()) {
            sock.set_read_timeout(Some(left.max(Duration::from_millis(1))))
                .ok()?;
            let Ok((len, _)) = sock.recv_from(&mut buf) else {
                continue;
            };
            let Ok(m) = Message::parse(&buf[..len]) else {
                continue;
            };
            // Any source: a multihomed server may answer from another
            // address; the random transaction id is what counts.
            if m.transaction_id() != txid {
                continue;
            }
            if m.class() != Class::SuccessResponse {
                return None;
            }
            return m
                .get(AttributeType::XOR_MAPPED_ADDRESS)
                .and_then(|v| decode_xor_address(v, &txid).ok())
                .or_else(|| {
                    m.get(AttributeType::MAPPED_ADDRESS)
                        .and_then(|v| decode_address(v).ok())
                });
        }
    }
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
        Creds::new(&user, &password),
        timeout,
    )?;

    let family = if server.is_ipv4() { 1u8 } else { 2u8 };
    let answer = client
        .call(Method::ALLOCATE, timeout, &|b| {
            b.add(AttributeType::REQUESTED_TRANSPORT, &[17, 0, 0, 0]);
            if family == 2 {
                b.add(AttributeType::REQUESTED_ADDRESS_FAMILY, &[family, 0, 0, 0]);
            }
        })
        .map_err(|e| refusal("Allocate", e, |code| allocate_hint(code, rest)))?;
    let m = Message::parse(&answer).map_err(|_| Failure::new("Allocate: unparsable answer"))?;
    let txid = m.transaction_id();
    let relayed = m
        .get(AttributeType::XOR_RELAYED_ADDRESS)
        .and_then(|v| decode_xor_address(v, &txid).ok())
        .ok_or_else(|| Failure::new("Allocate answer has no usable XOR-RELAYED-ADDRESS"))?;
    let mapped = m
        .get(AttributeType::XOR_MAPPED_ADDRESS)
        .and_then(|v| decode_xor_address(v, &txid).ok());

    let relay = relay_check(&mut client, server);

    // Free the allocation whatever happened; the answer does not matter.
    let _ = client.call(Method::REFRESH, timeout.min(Duration::from_secs(2)), &|b| {
        b.add_u32(AttributeType::LIFETIME, 0)
    });

    let (peer, rtts) = relay?;
    Ok(Report {
        label,
        server,
        transport: target.transport,
        realm: client.creds.realm.clone(),
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

/// Starts the echo peer, permits it, relays [`PROBES`] Send indications to
/// it and collects the round trips of those that come back.
fn relay_check(client: &mut Client, server: SocketAddr) -> Result<(Peer, Vec<Duration>), Failure> {
    let mut run_id = [0u8; 8];
    run_id.copy_from_slice(&random_txid().0[..8]);
    let peer = Peer::start(server, run_id)?;
    let peer_addr = peer.addr;
    let timeout = client.timeout;
    client
        .call(Method::CREATE_PERMISSION, timeout, &|b| {
            b.add_xor_address(AttributeType::XOR_PEER_ADDRESS, &peer_addr)
        })
        .map_err(|e| {
            refusal("CreatePermission", e, |code| match code {
                403 => Some(format!(
                    "the server denies the peer address {peer_addr}{}",
                    loopback_note(peer_addr)
                )),
                443 => Some("the relay and the peer differ in address family".into()),
                _ => None,
            })
        })?;

    let mut sent_at: [Option<Instant>; PROBES] = [None; PROBES];
    let mut rtt: [Option<Duration>; PROBES] = [None; PROBES];
    let io = |e: io::Error| Failure::new(format!("relay: {}", describe(&e)));
    for seq in 0..PROBES {
        let mut payload = [0u8; PAYLOAD_LEN];
        payload[..MAGIC.len()].copy_from_slice(MAGIC);
        payload[MAGIC.len()..MAGIC.len() + 8].copy_from_slice(&run_id);
        payload[MAGIC.len() + 8..].copy_from_slice(&(seq as u32).to_be_bytes());
        let mut buf = [0u8; 256];
        let mut b = MessageBuilder::new(
            &mut buf,
            MessageType::new(Method::SEND, Class::Indication),
            random_txid(),
        );
        b.add_xor_address(AttributeType::XOR_PEER_ADDRESS, &peer_addr);
        b.add(AttributeType::DATA, &payload);
        let n = b
            .finish()
            .map_err(|e| Failure::new(format!("relay: {e}")))?;
        client.conn.send(&buf[..n]).map_err(io)?;
        sent_at[seq] = Some(Instant::now());
        let last = seq + 1 == PROBES;
        let until = if last {
            Instant::now() + timeout
        } else {
            Instant::now() + PROBE_SPACING
        };
        collect(client, run_id, &sent_at, &mut rtt, until, last).map_err(io)?;
    }
    let rtts: Vec<Duration> = rtt.iter().flatten().copied().collect();
    if rtts.is_empty() {
        return Err(Failure::new(format!(
            "relay: no data came back from the echo peer at {peer_addr} (the server may deny \
             this peer address: e.g. coturn needs --allow-loopback-peers for 127.0.0.1)"
        )));
    }
    Ok((peer, rtts))
}

fn loopback_note(peer: SocketAddr) -> &'static str {
    if peer.ip().is_loopback() {
        "; e.g. coturn needs --allow-loopback-peers for 127.0.0.1"
    } else {
        ""
    }
}

/// Reads Data indications until `until` (or, with `all`, until every probe
/// sent is back) and records their round trips.
fn collect(
    client: &mut Client,
    run_id: [u8; 8],
    sent_at: &[Option<Instant>; PROBES],
    rtt: &mut [Option<Duration>; PROBES],
    until: Instant,
    all: bool,
) -> io::Result<()> {
    loop {
        if all && rtt.iter().all(Option::is_some) {
            return Ok(());
        }
        let Some(msg) = client.conn.recv(until)? else {
            return Ok(());
        };
        let now = Instant::now();
        let Ok(m) = Message::parse(&msg) else {
            continue;
        };
        if m.method() != Method::DATA || m.class() != Class::Indication {
            continue;
        }
        let Some(data) = m.get(AttributeType::DATA) else {
            continue;
        };
        if data.len() != PAYLOAD_LEN
            || data[..MAGIC.len()] != MAGIC[..]
            || data[MAGIC.len()..MAGIC.len() + 8] != run_id
        {
            continue;
        }
        let mut seq = [0u8; 4];
        seq.copy_from_slice(&data[MAGIC.len() + 8..]);
        let seq = u32::from_be_bytes(seq) as usize;
        if let (Some(Some(at)), Some(slot)) = (sent_at.get(seq), rtt.get_mut(seq)) {
            if slot.is_none() {
                *slot = Some(now.duration_since(*at));
            }
        }
    }
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
