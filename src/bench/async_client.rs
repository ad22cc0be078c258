//! The async twin of `proto::Allocated`, for loads that keep thousands of
//! clients on one thread: the same requests and credentials (proto.rs), over
//! tokio sockets.

use std::io;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tokio::net::UdpSocket;

use super::proto::{bad, judge, request, txid, Creds};
use crate::stun::attributes::{decode_xor_address, AttributeType};
use crate::stun::{Message, MessageBuilder, Method};

/// How long to wait for an answer before sending again, and how often.
#[derive(Debug, Clone, Copy)]
pub struct Retry {
    pub timeout: Duration,
    pub tries: u32,
}

/// Sends `req` until an answer with its transaction id arrives; anything
/// else received meanwhile goes to `stray` (relayed data, late answers).
/// Returns the answer's length and how many times the request was sent.
pub async fn exchange(
    sock: &UdpSocket,
    req: &[u8],
    buf: &mut [u8],
    retry: Retry,
    stray: &mut dyn FnMut(&[u8]),
) -> Option<(usize, u32)> {
    for attempt in 1..=retry.tries {
        sock.send(req).await.ok()?;
        let until = Instant::now() + retry.timeout;
        loop {
            let left = until.saturating_duration_since(Instant::now());
            match tokio::time::timeout(left, sock.recv(buf)).await {
                Ok(Ok(n)) if n >= 20 && buf[8..20] == req[8..20] => return Some((n, attempt)),
                Ok(Ok(n)) => stray(&buf[..n]),
                Ok(Err(_)) | Err(_) => break,
            }
        }
    }
    None
}

/// A client socket with long-term credentials and, once `allocate` has
/// succeeded, a UDP allocation.
pub struct Client {
    pub sock: UdpSocket,
    pub creds: Creds,
    pub relayed: Option<SocketAddr>,
    retry: Retry,
    seq: u64,
    seed: u64,
    /// How many times the last request was sent.
    pub last_attempts: u32,
}

impl Client {
    /// A socket bound to `local` (port 0 for any) and connected to `server`.
    pub async fn connect(
        local: SocketAddr,
        server: SocketAddr,
        user: &str,
        password: &str,
        retry: Retry,
        seed: u64,
    ) -> io::Result<Self> {
        let sock = UdpSocket::bind(local).await?;
        sock.connect(server).await?;
        Ok(Client {
            sock,
            creds: Creds::new(user, password),
            relayed: None,
            retry,
            seq: 0,
            seed,
            last_attempts: 0,
        })
    }

    /// An authenticated request, learning the nonce on 401/438 as needed.
    /// An error answer comes back as an error "refused with CODE" (the
    /// caller knows which request it made).
    pub async fn call(
        &mut self,
        method: Method,
        attrs: impl Fn(&mut MessageBuilder<'_>),
        stray: &mut dyn FnMut(&[u8]),
    ) -> io::Result<Vec<u8>> {
        let mut req = [0u8; 1024];
        let mut buf = [0u8; 2048];
        for _ in 0..3 {
            self.seq += 1;
            let creds = (!self.creds.nonce.is_empty()).then_some(&self.creds);
            let n = request(&mut req, method, txid(self.seed, self.seq), creds, &attrs);
            let (len, attempts) = exchange(&self.sock, &req[..n], &mut buf, self.retry, stray)
                .await
                .ok_or_else(|| io::Error::new(io::ErrorKind::TimedOut, "no answer"))?;
            self.last_attempts = attempts;
            if let Some(ok) = judge(&buf[..len], &mut self.creds, "request")? {
                return Ok(ok);
            }
        }
        Err(bad("could not authenticate"))
    }

    /// Allocates a UDP relay; returns its address.
    pub async fn allocate(&mut self, stray: &mut dyn FnMut(&[u8])) -> io::Result<SocketAddr> {
        let answer = self
            .call(
                Method::ALLOCATE,
                |b| b.add(AttributeType::REQUESTED_TRANSPORT, &[17, 0, 0, 0]),
                stray,
            )
            .await?;
        let m = Message::parse(&answer).map_err(|_| bad("allocate answer"))?;
        let relayed = m
            .get(AttributeType::XOR_RELAYED_ADDRESS)
            .and_then(|v| decode_xor_address(v, &m.transaction_id()).ok())
            .ok_or_else(|| bad("no XOR-RELAYED-ADDRESS"))?;
        self.relayed = Some(relayed);
        Ok(relayed)
    }

    pub async fn create_permission(
        &mut self,
        peer: SocketAddr,
        stray: &mut dyn FnMut(&[u8]),
    ) -> io::Result<()> {
        self.call(
            Method::CREATE_PERMISSION,
            |b| b.add_xor_address(AttributeType::XOR_PEER_ADDRESS, &peer),
            stray,
        )
        .await
        .map(|_| ())
    }

    pub async fn channel_bind(
        &mut self,
        channel: u16,
        peer: SocketAddr,
        stray: &mut dyn FnMut(&[u8]),
    ) -> io::Result<()> {
        self.call(
            Method::CHANNEL_BIND,
            |b| {
                b.add(
                    AttributeType::CHANNEL_NUMBER,
                    &[(channel >> 8) as u8, channel as u8, 0, 0],
                );
                b.add_xor_address(AttributeType::XOR_PEER_ADDRESS, &peer);
            },
            stray,
        )
        .await
        .map(|_| ())
    }

    pub async fn refresh(&mut self, lifetime: u32, stray: &mut dyn FnMut(&[u8])) -> io::Result<()> {
        self.call(
            Method::REFRESH,
            |b| b.add_u32(AttributeType::LIFETIME, lifetime),
            stray,
        )
        .await
        .map(|_| ())
    }

    /// Deletes the allocation (Refresh LIFETIME 0). A 437 to a request that
    /// had to be sent again means an earlier copy already deleted it.
    pub async fn delete(&mut self, stray: &mut dyn FnMut(&[u8])) -> io::Result<()> {
        match self.refresh(0, stray).await {
            Err(e) if self.last_attempts > 1 && e.to_string().ends_with("with 437") => Ok(()),
            r => r,
        }
    }
}
