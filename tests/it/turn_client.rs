//! A minimal TURN client on turnpike's own codec, for wire tests that need
//! exact control of every attribute (peer policy, quotas). Interop with
//! clients nobody here wrote is in `coturn.rs` and `webrtc.rs`.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::UdpSocket;
use turnpike::stun::attributes::{decode_xor_address, AttributeType, ErrorCode};
use turnpike::stun::integrity::long_term_key_md5;
use turnpike::stun::{Class, Message, MessageBuilder, MessageType, Method, TransactionId};

use crate::{PASSWORD, REALM, USER};

/// A byte stream to the server (TCP or TLS).
pub trait Duplex: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Duplex for T {}

enum Link {
    Udp(UdpSocket),
    Stream {
        io: Box<dyn Duplex>,
        local: SocketAddr,
    },
}

pub struct TurnClient {
    link: Link,
    user: String,
    nonce: Vec<u8>,
    key: [u8; 16],
    next: u32,
}

/// The outcome of a request: an error code or the success bytes.
pub type Answer = Result<Vec<u8>, u16>;

impl TurnClient {
    pub async fn connect(server: SocketAddr) -> Self {
        Self::connect_as(server, USER, PASSWORD).await
    }

    /// A client with other long-term credentials (in the test realm).
    pub async fn connect_as(server: SocketAddr, user: &str, password: &str) -> Self {
        let bind = if server.is_ipv4() {
            "127.0.0.1:0"
        } else {
            "[::1]:0"
        };
        let sock = UdpSocket::bind(bind).await.unwrap();
        sock.connect(server).await.unwrap();
        Self::with_link(Link::Udp(sock), user, password)
    }

    /// A client from a chosen local address (another loopback source).
    pub async fn connect_from(server: SocketAddr, local: &str) -> Self {
        let sock = UdpSocket::bind(local).await.unwrap();
        sock.connect(server).await.unwrap();
        Self::with_link(Link::Udp(sock), USER, PASSWORD)
    }

    /// A client over an established TCP or TLS stream, as the test user.
    pub fn over_stream(io: impl Duplex + 'static, local: SocketAddr) -> Self {
        Self::with_link(
            Link::Stream {
                io: Box::new(io),
                local,
            },
            USER,
            PASSWORD,
        )
    }

    fn with_link(link: Link, user: &str, password: &str) -> Self {
        TurnClient {
            link,
            user: user.to_string(),
            nonce: Vec::new(),
            key: long_term_key_md5(user, REALM, password),
            next: 0,
        }
    }

    fn build(&mut self, method: Method, attrs: &dyn Fn(&mut MessageBuilder<'_>)) -> Vec<u8> {
        self.next += 1;
        let mut id = [0x5a; 12];
        id[..4].copy_from_slice(&self.next.to_be_bytes());
        let mut buf = vec![0u8; 1500];
        let mut b = MessageBuilder::new(
            &mut buf,
            MessageType::new(method, Class::Request),
            TransactionId(id),
        );
        attrs(&mut b);
        if !self.nonce.is_empty() {
            b.add_username(&self.user);
            b.add_realm(REALM);
            b.add_nonce(&self.nonce);
            b.add_message_integrity(&self.key);
        }
        let n = b.finish().unwrap();
        buf.truncate(n);
        buf
    }

    async fn exchange(&mut self, req: &[u8]) -> Vec<u8> {
        let sock = match &mut self.link {
            Link::Udp(sock) => sock,
            Link::Stream { io, .. } => {
                io.write_all(req).await.unwrap();
                return tokio::time::timeout(Duration::from_secs(5), read_stun(io))
                    .await
                    .expect("an answer within 5 s")
                    .expect("the connection stays open");
            }
        };
        let mut buf = vec![0u8; 2048];
        for _ in 0..5 {
            sock.send(req).await.unwrap();
            if let Ok(Ok(n)) =
                tokio::time::timeout(Duration::from_millis(500), sock.recv(&mut buf)).await
            {
                buf.truncate(n);
                return buf;
            }
        }
        panic!("no answer from the server");
    }

    /// Sends an authenticated request, fetching a nonce first if needed.
    pub async fn request(
        &mut self,
        method: Method,
        attrs: &dyn Fn(&mut MessageBuilder<'_>),
    ) -> Answer {
        for _ in 0..3 {
            let req = self.build(method, attrs);
            let resp = self.exchange(&req).await;
            let m = Message::parse(&resp).expect("a STUN answer");
            let code = m
                .get(AttributeType::ERROR_CODE)
                .map(|v| ErrorCode::decode(v).unwrap().code);
            match code {
                None => return Ok(resp),
                Some(401 | 438) if self.nonce.is_empty() || code == Some(438) => {
                    self.nonce = m.get(AttributeType::NONCE).unwrap().to_vec();
                }
                Some(c) => return Err(c),
            }
        }
        panic!("could not authenticate");
    }

    /// Allocates a UDP relay; `family` 1 = IPv4, 2 = IPv6.
    pub async fn allocate(&mut self, family: Option<u8>) -> Result<SocketAddr, u16> {
        let resp = self
            .request(Method::ALLOCATE, &|b| {
                b.add(AttributeType::REQUESTED_TRANSPORT, &[17, 0, 0, 0]);
                if let Some(f) = family {
                    b.add(AttributeType::REQUESTED_ADDRESS_FAMILY, &[f, 0, 0, 0]);
                }
            })
            .await?;
        let m = Message::parse(&resp).unwrap();
        Ok(decode_xor_address(
            m.get(AttributeType::XOR_RELAYED_ADDRESS).unwrap(),
            &m.transaction_id(),
        )
        .unwrap())
    }

    pub async fn create_permission(&mut self, peer: SocketAddr) -> Result<(), u16> {
        self.request(Method::CREATE_PERMISSION, &|b| {
            b.add_xor_address(AttributeType::XOR_PEER_ADDRESS, &peer)
        })
        .await
        .map(|_| ())
    }

    pub fn local_addr(&self) -> SocketAddr {
        match &self.link {
            Link::Udp(sock) => sock.local_addr().unwrap(),
            Link::Stream { local, .. } => *local,
        }
    }

    /// The stream itself, for a data connection after its ConnectionBind.
    pub fn into_stream(self) -> Box<dyn Duplex> {
        match self.link {
            Link::Stream { io, .. } => io,
            Link::Udp(_) => panic!("not a stream client"),
        }
    }

    /// Sends raw bytes (a request built elsewhere, an indication).
    pub async fn send_raw(&mut self, bytes: &[u8]) {
        match &mut self.link {
            Link::Udp(sock) => {
                sock.send(bytes).await.unwrap();
            }
            Link::Stream { io, .. } => io.write_all(bytes).await.unwrap(),
        }
    }

    /// Sends `data` to `peer` in a Send indication (no answer comes).
    pub async fn send_to_peer(&mut self, peer: SocketAddr, data: &[u8]) {
        let mut buf = vec![0u8; 1500];
        let mut b = MessageBuilder::new(
            &mut buf,
            MessageType::new(Method::SEND, Class::Indication),
            TransactionId([0x33; 12]),
        );
        b.add_xor_address(AttributeType::XOR_PEER_ADDRESS, &peer);
        b.add(AttributeType::DATA, data);
        let n = b.finish().unwrap();
        self.send_raw(&buf[..n]).await;
    }

    /// Sends `n` Refreshes over UDP, `window` at a time without waiting
    /// for each answer (a flood); returns how many were answered with
    /// success. The client must hold a nonce (allocate first).
    pub async fn refresh_flood(&mut self, n: usize, lifetime: u32, window: usize) -> usize {
        let mut ok = 0;
        let mut buf = vec![0u8; 2048];
        let mut left = n;
        while left > 0 {
            let k = window.min(left);
            left -= k;
            let reqs: Vec<Vec<u8>> = (0..k)
                .map(|_| {
                    self.build(Method::REFRESH, &|b| {
                        b.add_u32(AttributeType::LIFETIME, lifetime)
                    })
                })
                .collect();
            let Link::Udp(sock) = &self.link else {
                panic!("UDP only");
            };
            for r in &reqs {
                sock.send(r).await.unwrap();
            }
            for _ in 0..k {
                match tokio::time::timeout(Duration::from_secs(1), sock.recv(&mut buf)).await {
                    Ok(Ok(len)) => {
                        let m = Message::parse(&buf[..len]).expect("a STUN answer");
                        ok += usize::from(m.get(AttributeType::ERROR_CODE).is_none());
                    }
                    _ => break,
                }
            }
        }
        ok
    }

    pub async fn refresh(&mut self, lifetime: u32) -> Result<(), u16> {
        self.request(Method::REFRESH, &|b| {
            b.add_u32(AttributeType::LIFETIME, lifetime)
        })
        .await
        .map(|_| ())
    }
}

/// Reads frames from a stream until a STUN message; ChannelData frames
/// (padded to 4 bytes on streams) are skipped. None when the stream ends.
pub async fn read_stun(io: &mut (impl AsyncRead + Unpin + ?Sized)) -> Option<Vec<u8>> {
    loop {
        let mut head = [0u8; 4];
        io.read_exact(&mut head).await.ok()?;
        let len = u16::from_be_bytes([head[2], head[3]]) as usize;
        if head[0] & 0xc0 == 0 {
            let mut msg = vec![0u8; 20 + len];
            msg[..4].copy_from_slice(&head);
            io.read_exact(&mut msg[4..]).await.ok()?;
            return Some(msg);
        }
        let mut skip = vec![0u8; len.div_ceil(4) * 4];
        io.read_exact(&mut skip).await.ok()?;
    }
}
