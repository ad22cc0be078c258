//! The tokio driver of the TURN client (`crate::turn_client`), for loads
//! that keep thousands of clients on one thread (soak, allocation rate).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tokio::net::UdpSocket;

use super::proto::{client, Error};
use crate::stun::client::Schedule;
use crate::turn_client::{Answer, RelayTransport, Request, Step, TurnClient};

/// How long to wait for an answer before sending again, and how often.
#[derive(Debug, Clone, Copy)]
pub(super) struct Retry {
    pub timeout: Duration,
    pub tries: u32,
}

impl Retry {
    /// The same wait after every request, `tries` requests.
    fn schedule(self) -> Schedule {
        Schedule {
            rto: self.timeout,
            max_rto: Some(self.timeout),
            rc: self.tries,
            rm: Some(1),
            timeout: None,
        }
    }
}

/// A client socket with long-term credentials and, once `allocate` has
/// succeeded, a UDP allocation.
#[derive(Debug)]
pub(super) struct Client {
    pub sock: UdpSocket,
    pub client: TurnClient,
    pub relayed: Option<SocketAddr>,
    /// How many times the last request was sent.
    pub last_attempts: u32,
}

impl Client {
    /// A socket bound to `local` (port 0 for any) and connected to `server`.
    pub(super) async fn connect(
        local: SocketAddr,
        server: SocketAddr,
        user: &str,
        password: &str,
        retry: Retry,
        seed: u64,
    ) -> std::io::Result<Self> {
        let sock = UdpSocket::bind(local).await?;
        sock.connect(server).await?;
        Ok(Client {
            sock,
            client: client(user, password, retry.schedule(), seed),
            relayed: None,
            last_attempts: 0,
        })
    }

    /// An authenticated request, learning the nonce on 401/438 as needed.
    /// Anything received meanwhile that is not the answer goes to `stray`
    /// (relayed data, late answers).
    pub(super) async fn call(
        &mut self,
        req: Request,
        stray: &mut dyn FnMut(&[u8]),
    ) -> Result<Answer, Error> {
        let what = req.name();
        let mut call = self
            .client
            .call(Instant::now(), req)
            .map_err(|err| Error::Client { what, err })?;
        let mut buf = [0u8; 2048];
        let result = loop {
            let step = call.poll(Instant::now());
            match step {
                Step::Done(r) => break r,
                Step::Transmit(bytes) => {
                    self.sock.send(bytes).await?;
                }
                Step::Wait(at) => {
                    // A read error (an ICMP unreachable) is a lost answer:
                    // the schedule sends again.
                    let got = tokio::time::timeout_at(at.into(), self.sock.recv(&mut buf)).await;
                    if let Ok(Ok(n)) = got {
                        if !call.handle_input(Instant::now(), &buf[..n]) {
                            stray(&buf[..n]);
                        }
                    }
                }
            }
        };
        self.last_attempts = call.requests();
        result.map_err(|err| Error::Client { what, err })
    }

    /// Allocates a UDP relay; returns its address.
    pub(super) async fn allocate(
        &mut self,
        stray: &mut dyn FnMut(&[u8]),
    ) -> Result<SocketAddr, Error> {
        let req = Request::Allocate {
            transport: RelayTransport::Udp,
            family: None,
        };
        let relayed = self
            .call(req, stray)
            .await?
            .relayed()
            .map_err(|err| Error::Client {
                what: "Allocate",
                err,
            })?;
        self.relayed = Some(relayed);
        Ok(relayed)
    }

    pub(super) async fn create_permission(
        &mut self,
        peer: SocketAddr,
        stray: &mut dyn FnMut(&[u8]),
    ) -> Result<(), Error> {
        self.call(Request::CreatePermission { peer }, stray)
            .await
            .map(drop)
    }

    pub(super) async fn channel_bind(
        &mut self,
        channel: u16,
        peer: SocketAddr,
        stray: &mut dyn FnMut(&[u8]),
    ) -> Result<(), Error> {
        self.call(Request::ChannelBind { channel, peer }, stray)
            .await
            .map(drop)
    }

    pub(super) async fn refresh(
        &mut self,
        lifetime: u32,
        stray: &mut dyn FnMut(&[u8]),
    ) -> Result<(), Error> {
        self.call(Request::Refresh { lifetime }, stray)
            .await
            .map(drop)
    }

    /// Deletes the allocation (Refresh LIFETIME 0). A 437 to a request that
    /// had to be sent again means an earlier copy already deleted it.
    pub(super) async fn delete(&mut self, stray: &mut dyn FnMut(&[u8])) -> Result<(), Error> {
        match self.refresh(0, stray).await {
            Err(e) if self.last_attempts > 1 && e.code() == Some(437) => Ok(()),
            r => r,
        }
    }
}
