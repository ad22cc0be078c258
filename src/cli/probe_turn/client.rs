//! A blocking TURN client over UDP or TCP: requests with retransmission,
//! long-term credentials learned from the 401, reasons kept for the report.

use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream, UdpSocket};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::{one_line, Failure, Transport, FIRST_RTO, MAX_RTO, SOFTWARE};
use crate::stun::client::{ClientCredentials, Schedule, TxIds};
use crate::stun::framing::{FrameKind, Framer};
use crate::stun::{Message, TransactionId, MAX_MESSAGE_LEN};
use crate::turn_client::{Answer, ClientError, Request, Step, TurnClient};

/// Twelve random bytes; a clock-derived id if the OS has no randomness.
pub(super) fn random_txid() -> TransactionId {
    let mut id = [0u8; 12];
    if getrandom::fill(&mut id).is_err() {
        static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let seed = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        id = TxIds::from_u64(seed ^ N.fetch_add(1, Ordering::Relaxed).rotate_left(32))
            .next_id()
            .0;
    }
    TransactionId(id)
}

pub(super) fn unspecified(like: SocketAddr) -> SocketAddr {
    if like.is_ipv4() {
        SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0))
    } else {
        SocketAddr::from((Ipv6Addr::UNSPECIFIED, 0))
    }
}

pub(super) fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

/// An I/O error in words, without the OS error number.
pub(super) fn describe(e: &io::Error) -> String {
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
pub(super) fn seconds(d: Duration) -> String {
    format!("{} s", d.as_secs_f64())
}

/// The client's connection to the server: datagrams, or a stream cut into
/// STUN messages (ChannelData frames are skipped).
pub(super) enum Conn {
    Udp(UdpSocket),
    Tcp(TcpStream, Framer),
}

impl Conn {
    pub(super) fn send(&mut self, msg: &[u8]) -> io::Result<()> {
        match self {
            Conn::Udp(s) => s.send(msg).map(|_| ()),
            Conn::Tcp(s, _) => s.write_all(msg),
        }
    }

    /// The next STUN message, `Ok(None)` once `deadline` passes.
    pub(super) fn recv(&mut self, deadline: Instant) -> io::Result<Option<Vec<u8>>> {
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
pub(super) enum CallError {
    /// The server could not be reached or did not answer.
    Unreachable(String),
    /// An answer that makes no sense for the request.
    Failed(String),
    /// An error response.
    Refused { code: u16, reason: String },
}

/// The retransmission of `probe turn`: from [`FIRST_RTO`], doubling up to
/// [`MAX_RTO`], until `wait` ends.
fn schedule(wait: Duration) -> Schedule {
    Schedule {
        rto: FIRST_RTO,
        max_rto: Some(MAX_RTO),
        rc: u32::MAX,
        rm: None,
        timeout: Some(wait),
    }
}

/// A connection and the TURN client that talks over it.
pub(super) struct Client {
    pub(super) conn: Conn,
    pub(super) transport: Transport,
    pub(super) label: String,
    pub(super) turn: TurnClient,
    pub(super) timeout: Duration,
}

impl Client {
    pub(super) fn connect(
        server: SocketAddr,
        transport: Transport,
        label: String,
        creds: ClientCredentials,
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
        let mut seed = [0u8; 32];
        for chunk in seed.chunks_mut(12) {
            chunk.copy_from_slice(&random_txid().0[..chunk.len()]);
        }
        let reliable = matches!(transport, Transport::Tcp);
        let turn = TurnClient::new(creds, TxIds::new(seed), schedule(timeout), reliable)
            .with_software(SOFTWARE);
        Ok(Client {
            conn,
            transport,
            label,
            turn,
            timeout,
        })
    }

    /// An authenticated request: learns realm and nonce from a 401, a new
    /// nonce from a 438, and gives up on a 401 to a request that carried
    /// credentials. Each transaction waits at most `wait`.
    pub(super) fn call(&mut self, req: Request, wait: Duration) -> Result<Answer, CallError> {
        let (label, transport) = (&self.label, self.transport);
        let io_error = |e: io::Error| {
            match e.kind() {
            io::ErrorKind::ConnectionRefused => CallError::Unreachable(format!(
                "no answer from {label} over {transport}: connection refused (nothing listens there?)"
            )),
            _ => CallError::Unreachable(format!(
                "talking to {label} over {transport}: {}",
                describe(&e)
            )),
        }
        };
        self.turn.set_schedule(schedule(wait));
        let mut call = self
            .turn
            .call(Instant::now(), req)
            .map_err(|e| CallError::Failed(e.to_string()))?;
        loop {
            match call.poll(Instant::now()) {
                Step::Done(r) => {
                    return r.map_err(|e| match e {
                        ClientError::Refused { code, reason, .. } => CallError::Refused {
                            code,
                            reason: one_line(&reason),
                        },
                        ClientError::NoAnswer => CallError::Unreachable(format!(
                            "no answer from {label} over {transport} within {}",
                            seconds(wait)
                        )),
                        e => CallError::Failed(e.to_string()),
                    })
                }
                Step::Transmit(bytes) => self.conn.send(bytes).map_err(io_error)?,
                Step::Wait(at) => {
                    if let Some(answer) = self.conn.recv(at).map_err(io_error)? {
                        call.handle_input(Instant::now(), &answer);
                    }
                }
            }
        }
    }
}

/// "Allocate refused: 401 Unauthorized (hint)".
pub(super) fn refusal(what: &str, e: CallError, hint: impl Fn(u16) -> Option<String>) -> Failure {
    match e {
        CallError::Unreachable(why) => Failure::new(why),
        CallError::Failed(why) => Failure::new(format!("{what}: {why}")),
        CallError::Refused { code, reason } => Failure::new(match hint(code) {
            Some(h) => format!("{what} refused: {code} {reason} ({h})"),
            None => format!("{what} refused: {code} {reason}"),
        }),
    }
}
