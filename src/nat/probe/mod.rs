//! The client half of RFC 5780: a sans-IO state machine that runs the NAT
//! behaviour discovery tests against one server and reaches a verdict.
//!
//! # Driving it
//!
//! The shell binds one UDP socket ([`SocketId::Primary`]), and a second one
//! ([`SocketId::Secondary`]) when [`ProbeOptions::needs_secondary`]; it tells
//! the probe the primary's concrete local address (a wildcard bind does not
//! say which IP the route uses: `connect()` a socket to the server and read
//! `local_addr()`). Then, until [`Probe::verdict`] is `Some`:
//!
//! * send every [`Probe::poll_transmit`] from the named socket;
//! * feed every datagram received on either socket to
//!   [`Probe::handle_response`], saying which socket it arrived on;
//! * wake at [`Probe::poll_timeout`] and call [`Probe::handle_timeout`].
//!
//! # Order of the tests
//!
//! 1. Test I (RFC 5780 §4.2, §4.3, §4.4): Binding to the primary address;
//!    learns the mapped address and OTHER-ADDRESS.
//! 2. Filtering tests II and III (§4.4), *before* any packet goes to the
//!    alternate IP: "a precondition to these tests is that no binding be
//!    established to the alternate address and port" (§3.2). Running the
//!    mapping tests first would open the NAT toward the alternate IP and make
//!    an address-dependent filter look endpoint-independent.
//! 3. Mapping tests II and III (§4.3), skipped when not NATed.
//! 4. Hairpinning (§3.4), large packets (§3.5), binding lifetime (§4.6),
//!    each when enabled.
//!
//! Tests run one at a time, new transactions at least [`ProbeOptions::pace`]
//! apart: RFC 5780 §5 "A client SHOULD NOT generate more than ten new STUN
//! transactions per second".
//!
//! # Retransmission
//!
//! RFC 8489 §6.2.1: a client retransmits "starting with an interval of RTO
//! [...], doubling after each retransmission" until "a total of Rc requests
//! have been sent". The filtering tests *expect* silence when the NAT
//! filters, so waiting the full 39.5 s of the RFC defaults for each would
//! make a run slow; [`ProbeOptions::transaction_timeout`] bounds each
//! transaction instead (3 s by default: requests at 0, 0.5 and 1.5 s).
//! `rto: 500 ms, max_requests: 7, transaction_timeout: 39.5 s` is exactly
//! the RFC 8489 schedule.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::attributes::{round_up_4, ChangeRequest, ResponsePort, MAX_PADDING};
use super::report::{
    Behaviour, Lifetime, NoRfc5780Reason, Outcome, ProbeError, Report, SocketId, Test, TestRecord,
};
use crate::stun::attributes::{decode_address, decode_xor_address, ErrorCode};
use crate::stun::client::{Schedule, Transaction, TransactionState, TxIds};
use crate::stun::{
    AttributeType, Class, Message, MessageBuilder, MessageType, Method, TransactionId,
};

mod sequence;

/// Knobs of a run. [`Default`] gives a run of a few seconds: mapping,
/// filtering, hairpinning and large packets, no lifetime search.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ProbeOptions {
    /// Initial retransmission timeout (RFC 8489 §6.2.1: 500 ms recommended).
    pub rto: Duration,
    /// Rc: most requests per transaction (RFC 8489 default 7).
    pub max_requests: u32,
    /// A transaction with no answer after this long has failed.
    pub transaction_timeout: Duration,
    /// Least time between the starts of two transactions.
    pub pace: Duration,
    /// Run the hairpinning test (needs the secondary socket).
    pub hairpinning: bool,
    /// PADDING length for the large-packet test, `None` to skip it. RFC 5780
    /// §5: "When PADDING is used, it SHOULD be equal to the MTU of the
    /// outgoing interface."
    pub large_packet_padding: Option<usize>,
    /// Binding lifetime search (needs the secondary socket), `None` to skip.
    pub lifetime: Option<LifetimeSearch>,
}

impl Default for ProbeOptions {
    fn default() -> Self {
        ProbeOptions {
            rto: Duration::from_millis(500),
            max_requests: 7,
            transaction_timeout: Duration::from_secs(3),
            pace: Duration::from_millis(100),
            hairpinning: true,
            large_packet_padding: Some(1500),
            lifetime: None,
        }
    }
}

impl ProbeOptions {
    /// Whether the shell must bind [`SocketId::Secondary`].
    pub(crate) fn needs_secondary(&self) -> bool {
        self.hairpinning || self.lifetime.is_some()
    }
}

/// Bounds of the RFC 5780 §4.6 search: idle periods start at `first`, double
/// while the binding survives (up to `max`), then bisect until the bracket
/// is `resolution` wide. Each trial costs its idle period plus a round trip.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct LifetimeSearch {
    pub first: Duration,
    pub max: Duration,
    pub resolution: Duration,
}

impl Default for LifetimeSearch {
    fn default() -> Self {
        LifetimeSearch {
            first: Duration::from_secs(10),
            max: Duration::from_secs(180),
            resolution: Duration::from_secs(5),
        }
    }
}

/// A datagram for the shell to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ProbeTransmit {
    pub from_socket: SocketId,
    pub to: SocketAddr,
    pub data: Vec<u8>,
}

/// One test's request in flight; the retransmission schedule is
/// `stun::client`'s.
struct Running {
    test: Test,
    socket: SocketId,
    to: SocketAddr,
    idle: Option<Duration>,
    tx: Transaction,
}

/// What the tests have learnt so far.
#[derive(Default)]
struct Found {
    mapped: Option<SocketAddr>,
    mapped_plain: Option<SocketAddr>,
    other: Option<SocketAddr>,
    origin: Option<SocketAddr>,
    filtering: Option<Behaviour>,
    mapping: Option<Behaviour>,
    mapped2: Option<SocketAddr>,
    mapped3: Option<SocketAddr>,
    hairpin: Option<bool>,
    large: Option<bool>,
    lifetime: Option<Lifetime>,
}

/// State of the §4.6 search.
struct Search {
    bounds: LifetimeSearch,
    /// Longest idle period the binding survived.
    lo: Duration,
    /// Shortest idle period after which it was gone.
    hi: Option<Duration>,
    /// Idle period of the running trial.
    trial: Duration,
    /// Port X's mapped port, refreshed before each trial.
    port: u16,
}

/// The RFC 5780 client state machine. See the module doc.
pub(crate) struct Probe {
    server: SocketAddr,
    local: SocketAddr,
    options: ProbeOptions,
    ids: TxIds,
    tx: Option<Running>,
    wait_until: Option<Instant>,
    last_start: Option<Instant>,
    queue: VecDeque<ProbeTransmit>,
    records: Vec<TestRecord>,
    found: Found,
    search: Option<Search>,
    verdict: Option<Result<Report, ProbeError>>,
}

impl Probe {
    /// Starts a run against `server` from the primary socket bound at
    /// `local`. `seed` keys the transaction ids (RFC 8489 §6: they must be
    /// "uniformly and randomly chosen"): pass 32 random bytes; tests pass a
    /// constant for determinism. The first request is ready at once.
    pub(crate) fn new(
        server: SocketAddr,
        local: SocketAddr,
        options: ProbeOptions,
        seed: [u8; 32],
        now: Instant,
    ) -> Self {
        let mut p = Probe {
            server,
            local,
            options,
            ids: TxIds::new(seed),
            tx: None,
            wait_until: None,
            last_start: None,
            queue: VecDeque::new(),
            records: Vec::new(),
            found: Found::default(),
            search: None,
            verdict: None,
        };
        p.begin(Test::Connectivity, now);
        p.pump(now);
        p
    }

    /// The next datagram to send.
    pub(crate) fn poll_transmit(&mut self) -> Option<ProbeTransmit> {
        self.queue.pop_front()
    }

    /// When [`Self::handle_timeout`] must next be called; `None` once done.
    pub(crate) fn poll_timeout(&self) -> Option<Instant> {
        if self.verdict.is_some() {
            return None;
        }
        let tx = self.tx.as_ref().and_then(|t| t.tx.poll_timeout());
        match (tx, self.wait_until) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    pub(crate) fn handle_timeout(&mut self, now: Instant) {
        self.pump(now);
    }

    /// A datagram arrived on `socket` from `from`. Anything that is not the
    /// awaited answer (or, in the hairpinning test, our own request) is
    /// ignored.
    pub(crate) fn handle_response(
        &mut self,
        now: Instant,
        socket: SocketId,
        from: SocketAddr,
        bytes: &[u8],
    ) {
        if self.verdict.is_some() {
            return;
        }
        let Ok(msg) = Message::parse(bytes) else {
            return;
        };
        let Some(tx) = self.tx.as_ref() else {
            return;
        };
        if msg.method() != Method::BINDING || msg.transaction_id() != tx.tx.id() {
            return;
        }
        match (msg.class(), tx.test) {
            // RFC 5780 §3.4: "The client then sends a STUN Binding Request to
            // this mapped address from a different port. If the client
            // receives its own request, the NAT hairpins connections."
            (Class::Request, Test::Hairpinning) if socket == SocketId::Primary => {
                let tx = self.take_tx();
                self.record(
                    &tx,
                    Outcome::Answered {
                        received_on: socket,
                        from,
                        mapped: None,
                        response_origin: None,
                    },
                );
                self.found.hairpin = Some(true);
                self.after_hairpinning(now);
            }
            (Class::SuccessResponse | Class::ErrorResponse, test)
                if test != Test::Hairpinning
                    // §4.6: the check's answer may come to either port.
                    && (socket == tx.socket || test == Test::LifetimeCheck) =>
            {
                let tx = self.take_tx();
                self.on_answer(tx, now, socket, from, &msg);
            }
            _ => return,
        }
        self.pump(now);
    }

    /// `Some` once the run is over.
    pub(crate) fn verdict(&self) -> Option<Result<Report, ProbeError>> {
        self.verdict.clone()
    }

    /// Tests ask this; the shell waits for [`Probe::verdict`].
    #[cfg(test)]
    pub(crate) fn is_done(&self) -> bool {
        self.verdict.is_some()
    }

    fn take_tx(&mut self) -> Running {
        self.tx.take().expect("caller checked")
    }

    fn other(&self) -> SocketAddr {
        self.found.other.unwrap_or(self.server)
    }

    fn mapped(&self) -> SocketAddr {
        self.found.mapped.unwrap_or(self.local)
    }

    fn nat(&self) -> bool {
        self.mapped() != self.local
    }

    /// Starts the transaction of `test`, paced after the previous one.
    fn begin(&mut self, test: Test, now: Instant) {
        let server = self.server;
        let other = self.other();
        let mut change = None;
        let mut response_port = None;
        let mut padding = None;
        let mut idle = None;
        let (socket, to) = match test {
            Test::Connectivity | Test::LifetimeRefresh => (SocketId::Primary, server),
            Test::FilteringChangeIpAndPort => {
                change = Some(ChangeRequest::IP_AND_PORT);
                (SocketId::Primary, server)
            }
            Test::FilteringChangePort => {
                change = Some(ChangeRequest::PORT);
                (SocketId::Primary, server)
            }
            Test::MappingAlternateIp => (
                SocketId::Primary,
                SocketAddr::new(other.ip(), server.port()),
            ),
            Test::MappingAlternateAddress => (SocketId::Primary, other),
            Test::Hairpinning => (SocketId::Secondary, self.mapped()),
            Test::LargePacket => {
                padding = self
                    .options
                    .large_packet_padding
                    .map(|p| p.min(MAX_PADDING));
                (SocketId::Primary, server)
            }
            Test::LifetimeCheck => {
                if let Some(s) = &self.search {
                    response_port = Some(ResponsePort(s.port));
                    idle = Some(s.trial);
                }
                (SocketId::Secondary, server)
            }
        };
        let id = self.ids.next_id();
        let data = build_request(id, change, response_port, padding);
        let start = match self.last_start {
            Some(last) => now.max(last + self.options.pace),
            None => now,
        };
        self.last_start = Some(start);
        let schedule = Schedule {
            rto: self.options.rto,
            max_rto: None,
            rc: self.options.max_requests,
            // The probe bounds each transaction by its timeout alone.
            rm: None,
            timeout: Some(self.options.transaction_timeout),
        };
        self.tx = Some(Running {
            test,
            socket,
            to,
            idle,
            tx: Transaction::new(id, data, schedule, false, start),
        });
    }

    /// Sends what is due, expires what is over, until nothing changes.
    fn pump(&mut self, now: Instant) {
        while self.verdict.is_none() {
            if self.wait_until.is_some_and(|w| now >= w) {
                self.wait_until = None;
                self.begin(Test::LifetimeCheck, now);
                continue;
            }
            let Some(tx) = self.tx.as_mut() else {
                break;
            };
            tx.tx.handle_timeout(now);
            if tx.tx.state() == TransactionState::TimedOut {
                let tx = self.take_tx();
                self.record(&tx, Outcome::NoAnswer);
                self.on_no_answer(tx.test, tx.to, now);
                continue;
            }
            let (from_socket, to) = (tx.socket, tx.to);
            match tx.tx.poll_transmit(now) {
                Some(data) => self.queue.push_back(ProbeTransmit {
                    from_socket,
                    to,
                    data: data.to_vec(),
                }),
                None => break,
            }
        }
    }

    fn record(&mut self, tx: &Running, outcome: Outcome) {
        self.records.push(TestRecord {
            test: tx.test,
            socket: tx.socket,
            to: tx.to,
            requests: tx.tx.sent(),
            idle: tx.idle,
            outcome,
        });
    }

    fn fail(&mut self, e: ProbeError) {
        self.verdict = Some(Err(e));
        self.tx = None;
        self.wait_until = None;
        self.queue.clear();
    }

    fn on_no_answer(&mut self, test: Test, to: SocketAddr, now: Instant) {
        match test {
            Test::Connectivity | Test::MappingAlternateIp | Test::MappingAlternateAddress => {
                self.fail(ProbeError::NoAnswer { test, to })
            }
            // RFC 5780 §4.4: "If no response is received, test III must be
            // performed to distinguish between Address-Dependent Filtering
            // and Address and Port-Dependent Filtering."
            Test::FilteringChangeIpAndPort => self.begin(Test::FilteringChangePort, now),
            // "if no response is received, the current behavior is Address
            // and Port-Dependent Filtering."
            Test::FilteringChangePort => {
                self.found.filtering = Some(Behaviour::AddressAndPortDependent);
                self.after_filtering(now);
            }
            Test::Hairpinning => {
                self.found.hairpin = Some(false);
                self.after_hairpinning(now);
            }
            Test::LargePacket => {
                self.found.large = Some(false);
                self.after_large_packet(now);
            }
            // The server stopped answering: no lifetime verdict.
            Test::LifetimeRefresh => self.finish(),
            // §4.6: "or receives no response at all, it knows that the
            // binding has expired."
            Test::LifetimeCheck => self.lifetime_trial(false, now),
        }
    }

    fn on_answer(
        &mut self,
        tx: Running,
        now: Instant,
        socket: SocketId,
        from: SocketAddr,
        msg: &Message<'_>,
    ) {
        let test = tx.test;
        if msg.class() == Class::ErrorResponse {
            let code = msg
                .get(AttributeType::ERROR_CODE)
                .and_then(|v| ErrorCode::decode(v).ok())
                .map_or(0, |e| e.code);
            self.record(&tx, Outcome::ErrorResponse { code });
            return match test {
                // RFC 5780 §5: "Clients MUST be prepared to receive a 420 for
                // requests that include CHANGE-REQUEST when OTHER-ADDRESS was
                // not received".
                Test::FilteringChangeIpAndPort | Test::FilteringChangePort if code == 420 => self
                    .fail(ProbeError::NoRfc5780 {
                        reason: NoRfc5780Reason::ChangeRequestRefused,
                        mapped: self.mapped(),
                    }),
                // A server may refuse PADDING; the path was not the problem.
                Test::LargePacket => self.after_large_packet(now),
                // §5: "As support for RESPONSE-PORT is optional, a client
                // MUST be prepared to receive a 420 (Unknown Attribute) error
                // to requests that include RESPONSE-PORT."
                Test::LifetimeCheck | Test::LifetimeRefresh => self.finish(),
                _ => self.fail(ProbeError::ErrorResponse { test, code }),
            };
        }

        let xor = msg
            .get(AttributeType::XOR_MAPPED_ADDRESS)
            .and_then(|v| decode_xor_address(v, &tx.tx.id()).ok());
        let plain = msg
            .get(AttributeType::MAPPED_ADDRESS)
            .and_then(|v| decode_address(v).ok());
        // RFC 3489 servers send only MAPPED-ADDRESS.
        let mapped = xor.or(plain);
        let origin = msg
            .get(AttributeType::RESPONSE_ORIGIN)
            .and_then(|v| decode_address(v).ok());
        self.record(
            &tx,
            Outcome::Answered {
                received_on: socket,
                from,
                mapped,
                response_origin: origin,
            },
        );

        match test {
            Test::Connectivity => {
                let Some(mapped) = mapped else {
                    return self.fail(ProbeError::NoMappedAddress { test });
                };
                self.found.mapped = Some(mapped);
                self.found.mapped_plain = xor.and(plain);
                self.found.origin = origin;
                let other = msg
                    .get(AttributeType::OTHER_ADDRESS)
                    .and_then(|v| decode_address(v).ok());
                match check_other_address(self.server, other) {
                    Ok(other) => {
                        self.found.other = Some(other);
                        self.begin(Test::FilteringChangeIpAndPort, now);
                    }
                    Err(reason) => self.fail(ProbeError::NoRfc5780 { reason, mapped }),
                }
            }
            Test::FilteringChangeIpAndPort | Test::FilteringChangePort => {
                let other = self.other();
                let (expected, behaviour) = if test == Test::FilteringChangeIpAndPort {
                    // §4.4 test II: "If the client receives a response, the
                    // current behavior of the NAT is Endpoint-Independent
                    // Filtering."
                    (other, Behaviour::EndpointIndependent)
                } else {
                    // Test III: "If the client receives a response, the
                    // current behavior is Address-Dependent Filtering".
                    (
                        SocketAddr::new(self.server.ip(), other.port()),
                        Behaviour::AddressDependent,
                    )
                };
                if from != expected {
                    return self.fail(ProbeError::UnexpectedSource {
                        test,
                        expected,
                        actual: from,
                    });
                }
                self.found.filtering = Some(behaviour);
                self.after_filtering(now);
            }
            Test::MappingAlternateIp => {
                let Some(m2) = mapped else {
                    return self.fail(ProbeError::NoMappedAddress { test });
                };
                self.found.mapped2 = Some(m2);
                // §4.3 test II: "If the XOR-MAPPED-ADDRESS in the Binding
                // Response is the same as test I the NAT currently has
                // Endpoint-Independent Mapping. If not, test III is
                // performed".
                if Some(m2) == self.found.mapped {
                    self.found.mapping = Some(Behaviour::EndpointIndependent);
                    self.after_mapping(now);
                } else {
                    self.begin(Test::MappingAlternateAddress, now);
                }
            }
            Test::MappingAlternateAddress => {
                let Some(m3) = mapped else {
                    return self.fail(ProbeError::NoMappedAddress { test });
                };
                self.found.mapped3 = Some(m3);
                // "If the XOR-MAPPED-ADDRESS matches test II, the NAT
                // currently has Address-Dependent Mapping; if it doesn't
                // match it currently has Address and Port-Dependent Mapping."
                self.found.mapping = Some(if Some(m3) == self.found.mapped2 {
                    Behaviour::AddressDependent
                } else {
                    Behaviour::AddressAndPortDependent
                });
                self.after_mapping(now);
            }
            Test::LargePacket => {
                // Both directions were large only if the answer was padded
                // (RFC 5780 §6.1: "PADDING MUST be included").
                if msg.get(AttributeType::PADDING).is_some() {
                    self.found.large = Some(true);
                }
                self.after_large_packet(now);
            }
            Test::LifetimeRefresh => {
                let (Some(mapped), Some(search)) = (mapped, self.search.as_mut()) else {
                    return self.finish();
                };
                // §4.6: "The client then starts a timer with a value of T
                // seconds. When this timer fires, the client sends another
                // Binding Request [...] from a different source port, Y. This
                // request contains an RESPONSE-PORT attribute, set to Pp".
                search.port = mapped.port();
                self.wait_until = Some(now + search.trial);
            }
            // §4.6: "If the client receives the Binding Response on port X,
            // it knows that the binding has not expired. If the client
            // receives the Binding Response on port Y [...] it knows that the
            // binding has expired."
            Test::LifetimeCheck => self.lifetime_trial(socket == SocketId::Primary, now),
            Test::Hairpinning => {}
        }
    }
}

/// OTHER-ADDRESS must name another IP and another port of the same family.
fn check_other_address(
    server: SocketAddr,
    other: Option<SocketAddr>,
) -> Result<SocketAddr, NoRfc5780Reason> {
    let other = other.ok_or(NoRfc5780Reason::NoOtherAddress)?;
    if other.is_ipv4() != server.is_ipv4() {
        Err(NoRfc5780Reason::OtherAddressFamily)
    } else if other.ip() == server.ip() {
        Err(NoRfc5780Reason::OtherAddressSameIp)
    } else if other.port() == server.port() {
        Err(NoRfc5780Reason::OtherAddressSamePort)
    } else {
        Ok(other)
    }
}

/// A Binding request with the RFC 5780 attributes asked for, and
/// FINGERPRINT (RFC 5780 §5 asks for it when STUN shares a flow).
fn build_request(
    id: TransactionId,
    change: Option<ChangeRequest>,
    response_port: Option<ResponsePort>,
    padding: Option<usize>,
) -> Vec<u8> {
    let len = 20 + 8 + 8 + 8 + padding.map_or(0, |p| 4 + round_up_4(p));
    let mut buf = vec![0u8; len];
    let mut b = MessageBuilder::new(
        &mut buf,
        MessageType::new(Method::BINDING, Class::Request),
        id,
    );
    if let Some(c) = change {
        b.add(AttributeType::CHANGE_REQUEST, &c.encode());
    }
    if let Some(p) = response_port {
        b.add(AttributeType::RESPONSE_PORT, &p.encode());
    }
    if let Some(n) = padding {
        b.add_with(AttributeType::PADDING, n, |v| v.fill(0));
    }
    b.add_fingerprint();
    let n = b.finish().unwrap_or(0);
    buf.truncate(n);
    buf
}

#[cfg(test)]
#[path = "../tests/probe_unit.rs"]
mod tests;
