//! The load generator's blocking driver of the TURN client
//! (`crate::turn_client`): std UDP sockets, since set-up is not what is
//! measured.

use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use crate::stun::client::{ClientCredentials, Schedule, TxIds};
use crate::turn_client::{Answer, Call, ClientError, RelayTransport, Request, Step, TurnClient};

/// Every 300 ms, six times: loopback loses little, and set-up must not
/// stall a run.
const SCHEDULE: Schedule = Schedule {
    rto: Duration::from_millis(300),
    max_rto: Some(Duration::from_millis(300)),
    rc: 6,
    rm: Some(1),
    timeout: None,
};

/// Why a request of the load generator failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Error {
    #[error(transparent)]
    Io(#[from] io::Error),
    #[error("{what} {err}")]
    Client {
        what: &'static str,
        err: ClientError,
    },
}

impl Error {
    /// The error code of a refusal.
    pub(crate) fn code(&self) -> Option<u16> {
        match self {
            Error::Client { err, .. } => err.code(),
            Error::Io(_) => None,
        }
    }
}

/// A transaction id that differs per call, cheap enough for every packet
/// of a load (Send indications, Binding floods).
pub(crate) fn txid(seed: u64, n: u64) -> [u8; 12] {
    let mut id = [0u8; 12];
    id[..8].copy_from_slice(&(seed ^ n.wrapping_mul(0x9E37_79B9_7F4A_7C15)).to_be_bytes());
    id[8..].copy_from_slice(&(n as u32).to_be_bytes());
    id
}

/// A client for the load generator: `seed` keys its transaction ids.
pub(crate) fn client(user: &str, password: &str, schedule: Schedule, seed: u64) -> TurnClient {
    TurnClient::new(
        ClientCredentials::new(user, password),
        TxIds::from_u64(seed),
        schedule,
        false,
    )
}

/// Runs `call` over a blocking, connected UDP socket. Whatever else arrives
/// meanwhile is dropped.
fn drive(sock: &UdpSocket, mut call: Call<'_>, what: &'static str) -> Result<Answer, Error> {
    let mut buf = [0u8; 2048];
    loop {
        let now = Instant::now();
        match call.poll(now) {
            Step::Done(r) => return r.map_err(|err| Error::Client { what, err }),
            Step::Transmit(bytes) => {
                sock.send(bytes)?;
            }
            Step::Wait(at) => {
                let wait = at.saturating_duration_since(now);
                sock.set_read_timeout(Some(wait.max(Duration::from_millis(1))))?;
                match sock.recv(&mut buf) {
                    Ok(n) => {
                        call.handle_input(Instant::now(), &buf[..n]);
                    }
                    Err(e) if is_timeout(&e) => {}
                    Err(e) => return Err(e.into()),
                }
            }
        }
    }
}

/// A read that timed out or was interrupted, not a failure.
pub(crate) fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut | io::ErrorKind::Interrupted
    )
}

/// A client with an allocation, set up over a blocking socket.
#[derive(Debug)]
pub(crate) struct Allocated {
    pub sock: UdpSocket,
    pub client: TurnClient,
    pub relayed: SocketAddr,
}

impl Allocated {
    /// Connects, authenticates and allocates a UDP relay. A source port that
    /// a previous run's allocation still holds on the server (437) is
    /// replaced by a fresh one.
    pub(crate) fn new(
        server: SocketAddr,
        user: &str,
        password: &str,
        seed: u64,
    ) -> Result<Self, Error> {
        let mut last = None;
        for attempt in 0..8u64 {
            match Self::try_new(server, user, password, seed ^ (attempt << 48)) {
                Ok(a) => return Ok(a),
                Err(e) if e.code() == Some(437) => last = Some(e),
                Err(e) => return Err(e),
            }
        }
        Err(last.unwrap_or(Error::Client {
            what: "Allocate",
            err: ClientError::NoAnswer,
        }))
    }

    fn try_new(server: SocketAddr, user: &str, password: &str, seed: u64) -> Result<Self, Error> {
        let bind: SocketAddr = if server.is_ipv4() {
            SocketAddr::from(([0, 0, 0, 0], 0))
        } else {
            SocketAddr::from(([0u16; 8], 0))
        };
        let sock = UdpSocket::bind(bind)?;
        sock.connect(server)?;
        let mut a = Allocated {
            sock,
            client: client(user, password, SCHEDULE, seed),
            relayed: server,
        };
        let answer = a.call(Request::Allocate {
            transport: RelayTransport::Udp,
            family: None,
        })?;
        a.relayed = answer.relayed().map_err(|err| Error::Client {
            what: "Allocate",
            err,
        })?;
        Ok(a)
    }

    /// A client around an existing socket and the client state that
    /// allocated on it.
    pub(crate) fn from_parts(sock: UdpSocket, client: TurnClient) -> Self {
        let relayed = sock
            .peer_addr()
            .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)));
        Allocated {
            sock,
            client,
            relayed,
        }
    }

    /// An authenticated request, learning the nonce on 401/438 as needed.
    pub(crate) fn call(&mut self, req: Request) -> Result<Answer, Error> {
        let what = req.name();
        let call = self
            .client
            .call(Instant::now(), req)
            .map_err(|err| Error::Client { what, err })?;
        drive(&self.sock, call, what)
    }

    pub(crate) fn channel_bind(&mut self, channel: u16, peer: SocketAddr) -> Result<(), Error> {
        self.call(Request::ChannelBind { channel, peer }).map(drop)
    }

    pub(crate) fn create_permission(&mut self, peer: SocketAddr) -> Result<(), Error> {
        self.call(Request::CreatePermission { peer }).map(drop)
    }

    pub(crate) fn refresh(&mut self, lifetime: u32) -> Result<(), Error> {
        self.call(Request::Refresh { lifetime }).map(drop)
    }
}
