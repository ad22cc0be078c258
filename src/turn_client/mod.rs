//! The one TURN client (RFC 8656, RFC 8489 transactions), sans-IO: it
//! builds requests, signs them with long-term credentials, runs the 401/438
//! dance, retransmits on the RFC 8489 schedule and reads the answers. Time
//! comes in as `now`; bytes go in and out through the driver.
//!
//! Drivers (thin I/O loops over [`Call::poll`] and [`Call::handle_input`]):
//! the bench (`bench/proto.rs` blocking, `bench/async_client.rs` tokio),
//! `turnpike probe turn` (`cli/probe_turn/client.rs`) and the integration
//! tests (`tests/it/turn_client.rs`).
//!
//! * [`data`]: Send indications, ChannelData, and reading relayed data.
//! * [`error`]: why a request failed, [`ClientError`].

#![warn(missing_docs, unreachable_pub, missing_debug_implementations)]

pub mod data;
pub(crate) mod error;
#[cfg(test)]
mod tests;

use std::net::SocketAddr;
use std::time::Instant;

pub use error::{AlternateServer, ClientError};

use crate::stun::attributes::{
    decode_address, decode_text, decode_xor_address, reason_phrase, AttributeType, ErrorCode,
};
use crate::stun::client::{ClientCredentials, Schedule, Transaction, TransactionState, TxIds};
use crate::stun::{Class, Message, MessageBuilder, MessageType, Method};

/// Largest request the client builds.
const MAX_REQUEST: usize = 2048;
/// RFC 8489 §9.2.5: a 438 gets a new nonce and a new try, but not forever.
const MAX_STALE: u8 = 2;
/// RFC 8489 §10: "300 Try Alternate", with ALTERNATE-SERVER.
const TRY_ALTERNATE: u16 = 300;
/// ALTERNATE-DOMAIN is a DNS name: at most 255 characters.
const MAX_DOMAIN_CHARS: usize = 255;

/// REQUESTED-TRANSPORT of an Allocate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RelayTransport {
    /// A UDP relay.
    Udp,
    /// RFC 6062 TCP relay.
    Tcp,
}

/// REQUESTED-ADDRESS-FAMILY (RFC 8656 §18.10).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    /// IPv4.
    V4,
    /// IPv6.
    V6,
}

/// A TURN request with its attributes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// Allocate (RFC 8656 §7).
    Allocate {
        /// REQUESTED-TRANSPORT.
        transport: RelayTransport,
        /// `None` sends no REQUESTED-ADDRESS-FAMILY (IPv4 by default).
        family: Option<Family>,
    },
    /// Refresh (RFC 8656 §8).
    Refresh {
        /// Seconds; 0 deletes the allocation.
        lifetime: u32,
    },
    /// CreatePermission (RFC 8656 §9).
    CreatePermission {
        /// The peer to permit.
        peer: SocketAddr,
    },
    /// ChannelBind (RFC 8656 §12).
    ChannelBind {
        /// 0x4000-0x7FFF.
        channel: u16,
        /// The peer to bind.
        peer: SocketAddr,
    },
}

impl Request {
    /// The STUN method of the request.
    pub fn method(&self) -> Method {
        match self {
            Request::Allocate { .. } => Method::ALLOCATE,
            Request::Refresh { .. } => Method::REFRESH,
            Request::CreatePermission { .. } => Method::CREATE_PERMISSION,
            Request::ChannelBind { .. } => Method::CHANNEL_BIND,
        }
    }

    /// The method's name, for reports.
    pub fn name(&self) -> &'static str {
        match self {
            Request::Allocate { .. } => "Allocate",
            Request::Refresh { .. } => "Refresh",
            Request::CreatePermission { .. } => "CreatePermission",
            Request::ChannelBind { .. } => "ChannelBind",
        }
    }

    /// The attributes, credentials aside.
    fn encode(&self, b: &mut MessageBuilder<'_>) {
        match *self {
            Request::Allocate { transport, family } => {
                let protocol = match transport {
                    RelayTransport::Udp => 17,
                    RelayTransport::Tcp => 6,
                };
                b.add(AttributeType::REQUESTED_TRANSPORT, &[protocol, 0, 0, 0]);
                if let Some(f) = family {
                    let f = match f {
                        Family::V4 => 1,
                        Family::V6 => 2,
                    };
                    b.add(AttributeType::REQUESTED_ADDRESS_FAMILY, &[f, 0, 0, 0]);
                }
            }
            Request::Refresh { lifetime } => b.add_u32(AttributeType::LIFETIME, lifetime),
            Request::CreatePermission { peer } => {
                b.add_xor_address(AttributeType::XOR_PEER_ADDRESS, &peer)
            }
            Request::ChannelBind { channel, peer } => {
                let [hi, lo] = channel.to_be_bytes();
                b.add(AttributeType::CHANNEL_NUMBER, &[hi, lo, 0, 0]);
                b.add_xor_address(AttributeType::XOR_PEER_ADDRESS, &peer);
            }
        }
    }
}

/// Attributes written by the caller, for requests [`Request`] does not
/// name (tests that need exact control of every attribute). `Sync`, so a
/// [`Call`] can be awaited in a task that moves between threads.
pub type Attrs<'a> = &'a (dyn Fn(&mut MessageBuilder<'_>) + Sync);

enum Body<'a> {
    Typed(Request),
    Custom(Method, Attrs<'a>),
}

impl Body<'_> {
    fn method(&self) -> Method {
        match self {
            Body::Typed(r) => r.method(),
            Body::Custom(m, _) => *m,
        }
    }
}

/// A success answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    bytes: Vec<u8>,
}

impl Answer {
    /// The answer's bytes.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// The answer's bytes, owned.
    pub fn into_bytes(self) -> Vec<u8> {
        self.bytes
    }

    /// An XOR address attribute of the answer.
    pub fn xor_address(&self, attr: AttributeType) -> Option<SocketAddr> {
        let m = Message::parse(&self.bytes).ok()?;
        decode_xor_address(m.get(attr)?, &m.transaction_id()).ok()
    }

    /// XOR-RELAYED-ADDRESS of an Allocate answer (the first, with two
    /// families).
    pub fn relayed(&self) -> Result<SocketAddr, ClientError> {
        self.xor_address(AttributeType::XOR_RELAYED_ADDRESS)
            .ok_or(ClientError::Malformed("no XOR-RELAYED-ADDRESS"))
    }

    /// XOR-MAPPED-ADDRESS: the client as the server sees it.
    pub fn mapped(&self) -> Option<SocketAddr> {
        self.xor_address(AttributeType::XOR_MAPPED_ADDRESS)
    }

    /// LIFETIME in seconds.
    pub fn lifetime(&self) -> Option<u32> {
        let m = Message::parse(&self.bytes).ok()?;
        let v = m.get(AttributeType::LIFETIME)?;
        Some(u32::from_be_bytes(v.try_into().ok()?))
    }
}

/// A client's state across requests: credentials with the realm and nonce
/// learned so far, transaction ids, and the retransmission schedule.
#[derive(Debug)]
pub struct TurnClient {
    creds: ClientCredentials,
    ids: TxIds,
    schedule: Schedule,
    reliable: bool,
    software: Option<String>,
}

impl TurnClient {
    /// `reliable`: the transport is TCP or TLS (one send, one deadline).
    pub fn new(creds: ClientCredentials, ids: TxIds, schedule: Schedule, reliable: bool) -> Self {
        TurnClient {
            creds,
            ids,
            schedule,
            reliable,
            software: None,
        }
    }

    /// Every request carries SOFTWARE.
    pub fn with_software(mut self, software: &str) -> Self {
        self.software = Some(software.into());
        self
    }

    /// The credentials, with the last realm and nonce.
    pub fn credentials(&self) -> &ClientCredentials {
        &self.creds
    }

    /// The retransmission schedule.
    pub fn schedule(&self) -> Schedule {
        self.schedule
    }

    /// The schedule of later calls.
    pub fn set_schedule(&mut self, schedule: Schedule) {
        self.schedule = schedule;
    }

    /// Starts `req`; drive the returned call to its end.
    pub fn call(&mut self, now: Instant, req: Request) -> Result<Call<'_>, ClientError> {
        Call::start(self, Body::Typed(req), now)
    }

    /// Starts a request whose attributes `attrs` writes.
    pub fn call_with<'a>(
        &'a mut self,
        now: Instant,
        method: Method,
        attrs: Attrs<'a>,
    ) -> Result<Call<'a>, ClientError> {
        Call::start(self, Body::Custom(method, attrs), now)
    }

    /// A signed request with a fresh id, for a caller that sends without
    /// waiting (floods).
    pub fn build(&mut self, req: &Request) -> Result<Vec<u8>, ClientError> {
        self.encode(&Body::Typed(req.clone()))
            .map(|(_, bytes)| bytes)
    }

    fn encode(
        &mut self,
        body: &Body<'_>,
    ) -> Result<(crate::stun::TransactionId, Vec<u8>), ClientError> {
        let id = self.ids.next_id();
        let mut buf = vec![0u8; MAX_REQUEST];
        let mut b = MessageBuilder::new(
            &mut buf,
            MessageType::new(body.method(), Class::Request),
            id,
        );
        match body {
            Body::Typed(r) => r.encode(&mut b),
            Body::Custom(_, attrs) => attrs(&mut b),
        }
        if let Some(s) = &self.software {
            b.add_software(s);
        }
        self.creds.sign(&mut b);
        let n = b.finish().map_err(|_| ClientError::TooLarge)?;
        buf.truncate(n);
        Ok((id, buf))
    }
}

/// What a driver does next for a [`Call`].
#[derive(Debug)]
pub enum Step<'a> {
    /// Send these bytes to the server.
    Transmit(&'a [u8]),
    /// Wait for input until then, then poll again.
    Wait(Instant),
    /// The call is over.
    Done(Result<Answer, ClientError>),
}

/// One request from start to answer, through the 401/438 dance: a 401 to
/// an unsigned request teaches realm and nonce and the request goes again,
/// signed; a 438 teaches a new nonce (at most [`MAX_STALE`] times).
pub struct Call<'a> {
    client: &'a mut TurnClient,
    body: Body<'a>,
    tx: Transaction,
    signed: bool,
    stale: u8,
    done: Option<Result<Answer, ClientError>>,
}

impl std::fmt::Debug for Call<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Call")
            .field("method", &self.body.method())
            .field("tx", &self.tx)
            .field("done", &self.done)
            .finish_non_exhaustive()
    }
}

impl<'a> Call<'a> {
    fn start(
        client: &'a mut TurnClient,
        body: Body<'a>,
        now: Instant,
    ) -> Result<Self, ClientError> {
        let (id, bytes) = client.encode(&body)?;
        let signed = client.creds.ready();
        let tx = Transaction::new(id, bytes, client.schedule, client.reliable, now);
        Ok(Call {
            client,
            body,
            tx,
            signed,
            stale: 0,
            done: None,
        })
    }

    /// How many times the current request was sent (a 437 to a Refresh
    /// sent twice may mean the first copy already deleted the allocation).
    pub fn requests(&self) -> u32 {
        self.tx.sent()
    }

    /// The next thing to do at `now`.
    pub fn poll(&mut self, now: Instant) -> Step<'_> {
        if let Some(done) = &self.done {
            return Step::Done(done.clone());
        }
        self.tx.handle_timeout(now);
        if self.tx.state() == TransactionState::TimedOut {
            self.done = Some(Err(ClientError::NoAnswer));
            return Step::Done(Err(ClientError::NoAnswer));
        }
        match self.tx.poll_timeout() {
            Some(at) if at <= now => match self.tx.poll_transmit(now) {
                Some(bytes) => Step::Transmit(bytes),
                None => Step::Wait(now),
            },
            Some(at) => Step::Wait(at),
            None => Step::Wait(now),
        }
    }

    /// Bytes from the server. Returns false if they are not this call's
    /// answer (relayed data, a late answer): the driver may use them.
    pub fn handle_input(&mut self, now: Instant, bytes: &[u8]) -> bool {
        if self.done.is_some() || self.tx.state() != TransactionState::Pending {
            return false;
        }
        let msg = match Message::parse(bytes) {
            Ok(m) => m,
            Err(e) if bytes.len() >= 20 && bytes[8..20] == self.tx.id().0 => {
                self.done = Some(Err(ClientError::Unparsable(e)));
                return true;
            }
            Err(_) => return false,
        };
        if !self.tx.handle_response(&msg) {
            return false;
        }
        self.done = match self.judge(&msg) {
            Ok(true) => Some(Ok(Answer {
                bytes: bytes.to_vec(),
            })),
            Ok(false) => self.again(now).err().map(Err),
            Err(e) => Some(Err(e)),
        };
        true
    }

    /// Ok(true) on success, Ok(false) when credentials were learned and the
    /// request must go again.
    fn judge(&mut self, msg: &Message<'_>) -> Result<bool, ClientError> {
        if msg.method() != self.body.method() {
            return Err(ClientError::WrongMethod(msg.method().0));
        }
        match msg.class() {
            Class::SuccessResponse => return Ok(true),
            Class::ErrorResponse => {}
            _ => return Err(ClientError::Malformed("answer is not a response")),
        }
        let error = msg
            .get(AttributeType::ERROR_CODE)
            .and_then(|v| ErrorCode::decode(v).ok())
            .ok_or(ClientError::Malformed(
                "error response without a valid ERROR-CODE",
            ))?;
        match error.code {
            401 if !self.signed => {}
            438 if self.stale < MAX_STALE => self.stale += 1,
            code => {
                let reason = error.reason.trim();
                return Err(ClientError::Refused {
                    code,
                    reason: if reason.is_empty() {
                        reason_phrase(code).to_string()
                    } else {
                        reason.to_string()
                    },
                    alternate: if code == TRY_ALTERNATE {
                        alternate(msg)?
                    } else {
                        None
                    },
                });
            }
        }
        if !self.client.creds.learn(msg) {
            return Err(ClientError::NoChallenge { code: error.code });
        }
        Ok(false)
    }

    /// The same request again, signed with what was learned.
    fn again(&mut self, now: Instant) -> Result<(), ClientError> {
        let (id, bytes) = self.client.encode(&self.body)?;
        self.signed = self.client.creds.ready();
        self.tx = Transaction::new(id, bytes, self.client.schedule, self.client.reliable, now);
        Ok(())
    }
}

/// ALTERNATE-SERVER and ALTERNATE-DOMAIN of a 300, each read through the
/// checked decoders: absent is `None` (the caller sees a bare 300),
/// malformed is an error, never a guessed address.
fn alternate(msg: &Message<'_>) -> Result<Option<AlternateServer>, ClientError> {
    let Some(value) = msg.get(AttributeType::ALTERNATE_SERVER) else {
        return Ok(None);
    };
    let addr = decode_address(value)
        .map_err(|_| ClientError::Malformed("300 with a malformed ALTERNATE-SERVER"))?;
    let domain = msg
        .get(AttributeType::ALTERNATE_DOMAIN)
        .map(|v| decode_text(v, MAX_DOMAIN_CHARS))
        .transpose()
        .map_err(|_| ClientError::Malformed("300 with a malformed ALTERNATE-DOMAIN"))?
        .map(String::from);
    Ok(Some(AlternateServer { addr, domain }))
}
