//! A blocking TURN client over UDP or TCP: requests with retransmission,
//! long-term credentials learned from the 401, reasons kept for the report.

use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream, UdpSocket};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::{one_line, Failure, Transport, FIRST_RTO, MAX_RTO, SOFTWARE};
use crate::bench::proto::{self, Creds};
use crate::stun::attributes::{reason_phrase, ErrorCode};
use crate::stun::framing::{FrameKind, Framer};
use crate::stun::{AttributeType, Class, Message, MessageBuilder, Method};
use crate::stun::{TransactionId, MAX_MESSAGE_LEN};

/// Twelve random bytes; a clock-derived id if the OS has no randomness.
pub(super) fn random_txid() -> TransactionId {
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

/// A connection with credentials and the realm and nonce learned so far.
pub(super) struct Client {
    pub(super) conn: Conn,
    pub(super) transport: Transport,
    pub(super) label: String,
    pub(super) creds: Creds,
    pub(super) timeout: Duration,
}

impl Client {
    pub(super) fn connect(
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
    pub(super) fn transact(&mut self, req: &[u8], wait: Duration) -> Result<Vec<u8>, String> {
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
    pub(super) fn call(
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
