//! What a [`super::Probe`] concludes: the [`Report`] of a finished run, or the
//! [`ProbeError`] that stopped it. Names follow RFC 4787 §4.1 (mapping) and
//! §5 (filtering), which RFC 5780 §4 uses. Presentation (JSON) is the
//! CLI's, in `crate::cli::nat_json`, so the core needs no serde_json.

use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

/// Mapping or filtering behaviour (RFC 4787 §4.1, §5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Behaviour {
    EndpointIndependent,
    AddressDependent,
    AddressAndPortDependent,
}

impl Behaviour {
    /// Every behaviour, for tests that walk all combinations.
    #[cfg(test)]
    pub(crate) const ALL: [Behaviour; 3] = [
        Behaviour::EndpointIndependent,
        Behaviour::AddressDependent,
        Behaviour::AddressAndPortDependent,
    ];

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Behaviour::EndpointIndependent => "endpoint-independent",
            Behaviour::AddressDependent => "address-dependent",
            Behaviour::AddressAndPortDependent => "address-and-port-dependent",
        }
    }
}

impl fmt::Display for Behaviour {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which of the probe's two local UDP sockets a datagram leaves from or
/// arrives on. `Secondary` exists only when [`super::ProbeOptions::needs_secondary`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum SocketId {
    /// The socket under test (port X of RFC 5780 §4.6).
    Primary,
    /// A second port (port Y of §4.6; the "different port" of §3.4).
    Secondary,
}

impl SocketId {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            SocketId::Primary => "primary",
            SocketId::Secondary => "secondary",
        }
    }
}

/// The probe's tests, in the order it runs them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Test {
    /// RFC 5780 §4.2 / test I of §4.3 and §4.4: Binding to the primary address.
    Connectivity,
    /// §4.4 test II: CHANGE-REQUEST change IP and port, to the primary address.
    FilteringChangeIpAndPort,
    /// §4.4 test III: CHANGE-REQUEST change port, to the primary address.
    FilteringChangePort,
    /// §4.3 test II: to the alternate IP, primary port.
    MappingAlternateIp,
    /// §4.3 test III: to the alternate IP and port.
    MappingAlternateAddress,
    /// §3.4: from the secondary socket to the primary's mapped address.
    Hairpinning,
    /// §3.5: a Binding with PADDING the size of the MTU.
    LargePacket,
    /// §4.6: refresh port X's binding before an idle period.
    LifetimeRefresh,
    /// §4.6: from port Y, RESPONSE-PORT set to X's mapped port.
    LifetimeCheck,
}

impl Test {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Test::Connectivity => "connectivity",
            Test::FilteringChangeIpAndPort => "filtering-change-ip-and-port",
            Test::FilteringChangePort => "filtering-change-port",
            Test::MappingAlternateIp => "mapping-alternate-ip",
            Test::MappingAlternateAddress => "mapping-alternate-address",
            Test::Hairpinning => "hairpinning",
            Test::LargePacket => "large-packet",
            Test::LifetimeRefresh => "lifetime-refresh",
            Test::LifetimeCheck => "lifetime-check",
        }
    }
}

impl fmt::Display for Test {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How one test transaction ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// A success response (or, for hairpinning, our own request).
    Answered {
        received_on: SocketId,
        /// Source of the datagram as the client saw it.
        from: SocketAddr,
        /// XOR-MAPPED-ADDRESS, else MAPPED-ADDRESS.
        mapped: Option<SocketAddr>,
        response_origin: Option<SocketAddr>,
    },
    ErrorResponse {
        code: u16,
    },
    NoAnswer,
}

/// One transaction of the run, for the record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TestRecord {
    pub test: Test,
    pub socket: SocketId,
    pub to: SocketAddr,
    /// Requests sent, retransmissions included.
    pub requests: u32,
    /// Idle period before a [`Test::LifetimeCheck`].
    pub idle: Option<Duration>,
    pub outcome: Outcome,
}

/// RFC 5780 §4.6 binding lifetime, bracketed by the search: the binding
/// survived `at_least` of idleness and was gone after `less_than`
/// (`None`: it survived the longest idle period tried).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Lifetime {
    pub at_least: Duration,
    pub less_than: Option<Duration>,
}

/// The verdict of a finished run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Report {
    pub server: SocketAddr,
    /// Local address of the primary socket.
    pub local: SocketAddr,
    /// Test I's mapped address (XOR-MAPPED-ADDRESS).
    pub mapped: SocketAddr,
    /// The server's OTHER-ADDRESS.
    pub other_address: SocketAddr,
    /// Test I's RESPONSE-ORIGIN, when the server sent one.
    pub response_origin: Option<SocketAddr>,
    /// `mapped != local`. RFC 5780 §4.3: "If this address and port are the
    /// same as the local IP address and port of the socket used to send the
    /// request, the client knows that it is not NATed".
    pub nat: bool,
    pub mapping: Behaviour,
    pub filtering: Behaviour,
    /// §4.3 test II's mapped address (`None` when not NATed).
    pub mapped_alternate_ip: Option<SocketAddr>,
    /// §4.3 test III's mapped address (`None` when test II settled it).
    pub mapped_alternate_address: Option<SocketAddr>,
    /// §3.4; `None` when not run (disabled, or no NAT to hairpin through).
    pub hairpinning: Option<bool>,
    /// §3.5: an MTU-sized padded request and its padded answer both made it;
    /// `None` when not run or the server refused PADDING.
    pub large_packets: Option<bool>,
    /// §3.6: MAPPED-ADDRESS and XOR-MAPPED-ADDRESS differ, so something on
    /// the path rewrites addresses in payloads. `None` when the server sent
    /// only one of them.
    pub alg: Option<bool>,
    /// §4.6; `None` when not run or the server refused RESPONSE-PORT.
    pub lifetime: Option<Lifetime>,
    pub tests: Vec<TestRecord>,
}

impl Report {
    /// The RFC 3489 name (RFC 3489 §5 and §10.1) for this combination. RFC 5780
    /// dropped these names because they describe too little, but people still
    /// ask for them:
    ///
    /// * no NAT: "open internet" with endpoint-independent filtering, else
    ///   "symmetric udp firewall";
    /// * endpoint-independent mapping: "full cone", "restricted cone" or
    ///   "port-restricted cone" for endpoint-independent, address-dependent
    ///   or address-and-port-dependent filtering;
    /// * any other mapping: "symmetric".
    pub(crate) fn classic_name(&self) -> &'static str {
        if !self.nat {
            return match self.filtering {
                Behaviour::EndpointIndependent => "open internet",
                _ => "symmetric udp firewall",
            };
        }
        match (self.mapping, self.filtering) {
            (Behaviour::EndpointIndependent, Behaviour::EndpointIndependent) => "full cone",
            (Behaviour::EndpointIndependent, Behaviour::AddressDependent) => "restricted cone",
            (Behaviour::EndpointIndependent, Behaviour::AddressAndPortDependent) => {
                "port-restricted cone"
            }
            _ => "symmetric",
        }
    }
}

/// Why a server cannot run the RFC 5780 tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum NoRfc5780Reason {
    /// RFC 5780 §4.3: "If OTHER-ADDRESS is not returned, the server does not
    /// support this usage and this test cannot be run."
    NoOtherAddress,
    /// OTHER-ADDRESS names the server's own IP: "change IP" is impossible.
    OtherAddressSameIp,
    /// OTHER-ADDRESS names the server's own port: "change port" is impossible.
    OtherAddressSamePort,
    /// OTHER-ADDRESS is of the other IP family.
    OtherAddressFamily,
    /// The server answered CHANGE-REQUEST with an error (420, §5).
    ChangeRequestRefused,
}

impl NoRfc5780Reason {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            NoRfc5780Reason::NoOtherAddress => "the response has no OTHER-ADDRESS",
            NoRfc5780Reason::OtherAddressSameIp => "OTHER-ADDRESS has the server's own IP",
            NoRfc5780Reason::OtherAddressSamePort => "OTHER-ADDRESS has the server's own port",
            NoRfc5780Reason::OtherAddressFamily => "OTHER-ADDRESS is of another IP family",
            NoRfc5780Reason::ChangeRequestRefused => "the server refused CHANGE-REQUEST",
        }
    }
}

impl fmt::Display for NoRfc5780Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a run produced no [`Report`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum ProbeError {
    /// No response to a test that must be answered. For
    /// [`Test::Connectivity`], RFC 5780 §4.2: "If this test yields no
    /// response, the client knows right away that it does not have UDP
    /// connectivity with the STUN server."
    #[error("no answer from {to} to the {test} test")]
    NoAnswer { test: Test, to: SocketAddr },
    /// The server does not support NAT behaviour discovery. `mapped` is
    /// what test I learnt.
    #[error("the server does not support RFC 5780 ({reason}); mapped address {mapped}")]
    NoRfc5780 {
        reason: NoRfc5780Reason,
        mapped: SocketAddr,
    },
    #[error("the server answered the {test} test with error {code}")]
    ErrorResponse { test: Test, code: u16 },
    /// A success response without XOR-MAPPED-ADDRESS or MAPPED-ADDRESS.
    #[error("the answer to the {test} test has no mapped address")]
    NoMappedAddress { test: Test },
    /// An answer to a CHANGE-REQUEST test came from somewhere other than the
    /// changed address: the server ignores the flags, and a filtering verdict
    /// would be wrong.
    #[error("the answer to the {test} test came from {actual}, not {expected}")]
    UnexpectedSource {
        test: Test,
        expected: SocketAddr,
        actual: SocketAddr,
    },
}

impl ProbeError {
    /// Short stable name for scripts.
    pub(crate) fn kind(&self) -> &'static str {
        match self {
            ProbeError::NoAnswer { .. } => "no-answer",
            ProbeError::NoRfc5780 { .. } => "no-rfc5780",
            ProbeError::ErrorResponse { .. } => "error-response",
            ProbeError::NoMappedAddress { .. } => "no-mapped-address",
            ProbeError::UnexpectedSource { .. } => "unexpected-source",
        }
    }
}
