//! The tokio driver of turnpike's own TURN client (`turnpike::turn_client`),
//! for wire tests that need exact control of every attribute (peer policy,
//! quotas). Interop with clients nobody here wrote is in `coturn.rs` and
//! `webrtc.rs`.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::UdpSocket;
use turnpike::stun::attributes::AttributeType;
use turnpike::stun::client::{ClientCredentials, Schedule, TxIds};
use turnpike::stun::{Message, MessageBuilder, Method, TransactionId};
use turnpike::turn_client::data::send_indication;
use turnpike::turn_client::{
    Call, ClientError, Family, RelayTransport, Request, Step, TurnClient as Core,
};

use crate::{PASSWORD, USER};

/// Every 500 ms, five times, over UDP; one send and 5 s over a stream.
const SCHEDULE: Schedule = Schedule {
    rto: Duration::from_millis(500),
    max_rto: Some(Duration::from_millis(500)),
    rc: 5,
    rm: Some(1),
    timeout: Some(Duration::from_secs(5)),
};

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

impl Link {
    async fn send(&mut self, bytes: &[u8]) {
        match self {
            Link::Udp(sock) => {
                sock.send(bytes).await.unwrap();
            }
            Link::Stream { io, .. } => io.write_all(bytes).await.unwrap(),
        }
    }

    /// The next datagram, or the next STUN message of the stream.
    async fn recv(&mut self) -> Vec<u8> {
        match self {
            Link::Udp(sock) => {
                let mut buf = vec![0u8; 2048];
                // An ICMP error is a lost answer: nothing to hand over.
                let n = sock.recv(&mut buf).await.unwrap_or(0);
                buf.truncate(n);
                buf
            }
            Link::Stream { io, .. } => read_stun(io).await.expect("the connection stays open"),
        }
    }
}

pub struct TurnClient {
    link: Link,
    core: Core,
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

    /// A client from `local` with other credentials (the fleet lab's
    /// clients speak from the bridge address).
    pub async fn connect_with(server: SocketAddr, local: &str, user: &str, password: &str) -> Self {
        let sock = UdpSocket::bind(local).await.unwrap();
        sock.connect(server).await.unwrap();
        Self::with_link(Link::Udp(sock), user, password)
    }

    /// A client from a chosen local address (another loopback source).
    pub async fn connect_from(server: SocketAddr, local: &str) -> Self {
        let sock = UdpSocket::bind(local).await.unwrap();
        sock.connect(server).await.unwrap();
        Self::with_link(Link::Udp(sock), USER, PASSWORD)
    }

    /// A client over an established TCP or TLS stream, as `user`.
    pub fn over_stream_as(
        io: impl Duplex + 'static,
        local: SocketAddr,
        user: &str,
        password: &str,
    ) -> Self {
        Self::with_link(
            Link::Stream {
                io: Box::new(io),
                local,
            },
            user,
            password,
        )
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
        // Each client its own ids, so no two share an answer cache entry.
        static CLIENTS: AtomicU64 = AtomicU64::new(0);
        let seed = 0x5a5a_0000_0000 + CLIENTS.fetch_add(1, Ordering::Relaxed);
        let reliable = matches!(link, Link::Stream { .. });
        let core = Core::new(
            ClientCredentials::new(user, password),
            TxIds::from_u64(seed),
            SCHEDULE,
            reliable,
        );
        TurnClient { link, core }
    }

    /// Runs `call` to its end; a refusal is its code, anything else a
    /// failed test.
    async fn drive(link: &mut Link, call: Call<'_>) -> Answer {
        match Self::drive_to_end(link, call).await {
            Ok(answer) => Ok(answer.into_bytes()),
            Err(ClientError::Refused { code, .. }) => Err(code),
            Err(e) => panic!("no usable answer from the server: {e}"),
        }
    }

    /// Runs `call` to its end, whatever the end: the client's own verdict
    /// (a 300 with its alternate, no answer).
    async fn drive_to_end(
        link: &mut Link,
        mut call: Call<'_>,
    ) -> Result<turnpike::turn_client::Answer, ClientError> {
        loop {
            match call.poll(Instant::now()) {
                Step::Done(r) => return r,
                Step::Transmit(bytes) => link.send(bytes).await,
                Step::Wait(at) => {
                    if let Ok(bytes) = tokio::time::timeout_at(at.into(), link.recv()).await {
                        call.handle_input(Instant::now(), &bytes);
                    }
                }
            }
        }
    }

    /// Sends an authenticated request, fetching a nonce first if needed.
    pub async fn request(
        &mut self,
        method: Method,
        attrs: &(dyn Fn(&mut MessageBuilder<'_>) + Sync),
    ) -> Answer {
        let call = self.core.call_with(Instant::now(), method, attrs).unwrap();
        Self::drive(&mut self.link, call).await
    }

    /// A signed request's bytes, to be sent by hand (with the nonce this
    /// client holds: request something first).
    pub fn signed(
        &mut self,
        method: Method,
        attrs: &(dyn Fn(&mut MessageBuilder<'_>) + Sync),
    ) -> Vec<u8> {
        let mut call = self.core.call_with(Instant::now(), method, attrs).unwrap();
        match call.poll(Instant::now()) {
            Step::Transmit(bytes) => bytes.to_vec(),
            _ => panic!("a request to send"),
        }
    }

    async fn call(&mut self, req: Request) -> Answer {
        let call = self.core.call(Instant::now(), req).unwrap();
        Self::drive(&mut self.link, call).await
    }

    /// Allocates a UDP relay; `family` 1 = IPv4, 2 = IPv6.
    pub async fn allocate(&mut self, family: Option<u8>) -> Result<SocketAddr, u16> {
        let family = family.map(|f| match f {
            1 => Family::V4,
            2 => Family::V6,
            _ => panic!("family {f} is neither 1 nor 2"),
        });
        let resp = self
            .call(Request::Allocate {
                transport: RelayTransport::Udp,
                family,
            })
            .await?;
        let m = Message::parse(&resp).unwrap();
        Ok(turnpike::stun::attributes::decode_xor_address(
            m.get(AttributeType::XOR_RELAYED_ADDRESS).unwrap(),
            &m.transaction_id(),
        )
        .unwrap())
    }

    /// Allocates a UDP relay; the client's verdict as it is (tests of
    /// 300 Try Alternate, of a node that may not answer).
    pub async fn try_allocate(&mut self) -> Result<SocketAddr, ClientError> {
        let req = Request::Allocate {
            transport: RelayTransport::Udp,
            family: None,
        };
        let call = self.core.call(Instant::now(), req).unwrap();
        Self::drive_to_end(&mut self.link, call).await?.relayed()
    }

    /// Refresh; the client's verdict as it is.
    pub async fn try_refresh(&mut self, lifetime: u32) -> Result<(), ClientError> {
        let call = self
            .core
            .call(Instant::now(), Request::Refresh { lifetime })
            .unwrap();
        Self::drive_to_end(&mut self.link, call).await.map(|_| ())
    }

    pub async fn create_permission(&mut self, peer: SocketAddr) -> Result<(), u16> {
        self.call(Request::CreatePermission { peer })
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
        self.link.send(bytes).await
    }

    /// Sends `data` to `peer` in a Send indication (no answer comes).
    pub async fn send_to_peer(&mut self, peer: SocketAddr, data: &[u8]) {
        let mut buf = vec![0u8; 1500];
        let n = send_indication(&mut buf, TransactionId([0x33; 12]), peer, data.len(), |d| {
            d.copy_from_slice(data)
        });
        assert!(n > 0, "the indication fits");
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
                .map(|_| self.core.build(&Request::Refresh { lifetime }).unwrap())
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
        self.call(Request::Refresh { lifetime }).await.map(|_| ())
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
