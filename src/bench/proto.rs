//! The load generator's side of the protocol: building requests with
//! long-term credentials and reading answers. Blocking std sockets: set-up
//! is not what is measured.

use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::time::Duration;

use crate::stun::attributes::{decode_xor_address, AttributeType, ErrorCode};
use crate::stun::integrity::long_term_key_md5;
use crate::stun::{Class, Message, MessageBuilder, MessageType, Method, TransactionId};

/// Credentials and the realm and nonce learned from the server's 401.
#[derive(Clone)]
pub struct Creds {
    pub user: String,
    pub password: String,
    pub realm: String,
    pub nonce: Vec<u8>,
    key: [u8; 16],
}

impl Creds {
    pub fn new(user: &str, password: &str) -> Self {
        Creds {
            user: user.into(),
            password: password.into(),
            realm: String::new(),
            nonce: Vec::new(),
            key: [0; 16],
        }
    }

    /// Takes REALM and NONCE from a 401 or 438.
    pub fn learn(&mut self, challenge: &Message<'_>) -> bool {
        let (Some(realm), Some(nonce)) = (
            challenge.get(AttributeType::REALM),
            challenge.get(AttributeType::NONCE),
        ) else {
            return false;
        };
        self.realm = String::from_utf8_lossy(realm).into_owned();
        self.nonce = nonce.to_vec();
        self.key = long_term_key_md5(&self.user, &self.realm, &self.password);
        true
    }
}

/// Builds a request; with `creds` it carries USERNAME, REALM, NONCE and
/// MESSAGE-INTEGRITY.
pub fn request(
    out: &mut [u8],
    method: Method,
    txid: [u8; 12],
    creds: Option<&Creds>,
    attrs: impl FnOnce(&mut MessageBuilder<'_>),
) -> usize {
    let mut b = MessageBuilder::new(
        out,
        MessageType::new(method, Class::Request),
        TransactionId(txid),
    );
    attrs(&mut b);
    if let Some(c) = creds {
        b.add_username(&c.user);
        b.add_realm(&c.realm);
        b.add_nonce(&c.nonce);
        b.add_message_integrity(&c.key);
    }
    b.finish().unwrap_or(0)
}

pub fn error_code(m: &Message<'_>) -> Option<u16> {
    m.get(AttributeType::ERROR_CODE)
        .and_then(|v| ErrorCode::decode(v).ok())
        .map(|e| e.code)
}

/// A transaction id that differs per call.
pub fn txid(seed: u64, n: u64) -> [u8; 12] {
    let mut id = [0u8; 12];
    id[..8].copy_from_slice(&(seed ^ n.wrapping_mul(0x9E37_79B9_7F4A_7C15)).to_be_bytes());
    id[8..].copy_from_slice(&(n as u32).to_be_bytes());
    id
}

/// One blocking exchange with retransmission; returns the answer bytes.
pub fn exchange(sock: &UdpSocket, req: &[u8], buf: &mut [u8]) -> io::Result<usize> {
    sock.set_read_timeout(Some(Duration::from_millis(300)))?;
    for _ in 0..6 {
        sock.send(req)?;
        match sock.recv(buf) {
            Ok(n) if n >= 20 && buf[8..20] == req[8..20] => return Ok(n),
            Ok(_) => continue,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                continue
            }
            Err(e) => return Err(e),
        }
    }
    Err(io::Error::new(
        io::ErrorKind::TimedOut,
        "no answer from the server",
    ))
}

/// A client with an allocation, set up over a blocking socket.
pub struct Allocated {
    pub sock: UdpSocket,
    pub creds: Creds,
    pub relayed: SocketAddr,
    seq: u64,
    seed: u64,
}

impl Allocated {
    /// Connects, authenticates and allocates a UDP relay. A source port that
    /// a previous run's allocation still holds on the server (437) is
    /// replaced by a fresh one.
    pub fn new(server: SocketAddr, user: &str, password: &str, seed: u64) -> io::Result<Self> {
        let mut last = None;
        for attempt in 0..8u64 {
            match Self::try_new(server, user, password, seed ^ (attempt << 48)) {
                Ok(a) => return Ok(a),
                Err(e) if e.to_string().ends_with("with 437") => last = Some(e),
                Err(e) => return Err(e),
            }
        }
        Err(last.unwrap_or_else(|| bad("allocation failed")))
    }

    fn try_new(server: SocketAddr, user: &str, password: &str, seed: u64) -> io::Result<Self> {
        let bind: SocketAddr = if server.is_ipv4() {
            "0.0.0.0:0"
        } else {
            "[::]:0"
        }
        .parse()
        .unwrap();
        let sock = UdpSocket::bind(bind)?;
        sock.connect(server)?;
        let mut a = Allocated {
            sock,
            creds: Creds::new(user, password),
            relayed: server,
            seq: 0,
            seed,
        };
        let answer = a.call(Method::ALLOCATE, |b| {
            b.add(AttributeType::REQUESTED_TRANSPORT, &[17, 0, 0, 0])
        })?;
        let m = Message::parse(&answer).map_err(|_| bad("allocate answer"))?;
        a.relayed = m
            .get(AttributeType::XOR_RELAYED_ADDRESS)
            .and_then(|v| decode_xor_address(v, &m.transaction_id()).ok())
            .ok_or_else(|| bad("no XOR-RELAYED-ADDRESS"))?;
        Ok(a)
    }

    /// A client around an existing socket and credentials.
    pub fn from_parts(sock: UdpSocket, creds: Creds, seed: u64) -> Self {
        let relayed = sock
            .peer_addr()
            .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)));
        Allocated {
            sock,
            creds,
            relayed,
            seq: 0,
            seed,
        }
    }

    /// An authenticated request, learning the nonce on 401/438 as needed.
    pub fn call(
        &mut self,
        method: Method,
        attrs: impl Fn(&mut MessageBuilder<'_>),
    ) -> io::Result<Vec<u8>> {
        let mut req = [0u8; 1024];
        let mut buf = [0u8; 2048];
        for _ in 0..3 {
            self.seq += 1;
            let creds = (!self.creds.nonce.is_empty()).then_some(&self.creds);
            let n = request(&mut req, method, txid(self.seed, self.seq), creds, &attrs);
            let len = exchange(&self.sock, &req[..n], &mut buf)?;
            if let Some(ok) = judge(&buf[..len], &mut self.creds, &format!("{method:?}"))? {
                return Ok(ok);
            }
        }
        Err(bad("could not authenticate"))
    }

    pub fn channel_bind(&mut self, channel: u16, peer: SocketAddr) -> io::Result<()> {
        self.call(Method::CHANNEL_BIND, |b| {
            b.add(
                AttributeType::CHANNEL_NUMBER,
                &[(channel >> 8) as u8, channel as u8, 0, 0],
            );
            b.add_xor_address(AttributeType::XOR_PEER_ADDRESS, &peer);
        })
        .map(|_| ())
    }

    pub fn create_permission(&mut self, peer: SocketAddr) -> io::Result<()> {
        self.call(Method::CREATE_PERMISSION, |b| {
            b.add_xor_address(AttributeType::XOR_PEER_ADDRESS, &peer)
        })
        .map(|_| ())
    }

    pub fn refresh(&mut self, lifetime: u32) -> io::Result<()> {
        self.call(Method::REFRESH, |b| {
            b.add_u32(AttributeType::LIFETIME, lifetime)
        })
        .map(|_| ())
    }
}

/// One answer to an authenticated request: its bytes on success, `None`
/// after a 401/438 whose nonce was learnt (send again), an error otherwise.
pub fn judge(answer: &[u8], creds: &mut Creds, what: &str) -> io::Result<Option<Vec<u8>>> {
    let m = Message::parse(answer).map_err(|_| bad("unparsable answer"))?;
    match error_code(&m) {
        None => Ok(Some(answer.to_vec())),
        Some(401) | Some(438) if creds.learn(&m) => Ok(None),
        Some(401) | Some(438) => Err(bad("challenge without realm and nonce")),
        Some(code) => Err(bad(&format!("{what} refused with {code}"))),
    }
}

pub fn bad(what: &str) -> io::Error {
    io::Error::other(what.to_string())
}
