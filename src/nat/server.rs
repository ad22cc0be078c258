//! The server half of RFC 5780 (NAT Behavior Discovery), sans-IO: a parsed
//! Binding request, where it came from and where it arrived in; which local
//! address the answer leaves from, where it goes, and its bytes out.
//!
//! # The addresses
//!
//! RFC 5780 §6: "A server implementing the NAT Behavior Discovery usage SHOULD
//! be configured with two separate IP addresses on the public Internet. On
//! startup, the server SHOULD allocate a pair of ports [...] such that it can
//! send and receive datagrams using the same ports on each IP address". With
//! a primary `A1:P1` and an alternate `A2:P2` that makes four UDP sockets,
//! listed by [`ServerAddresses::local_addresses`]: `A1:P1`, `A1:P2`, `A2:P1`,
//! `A2:P2`. A request may arrive on any of them; the answer may have to leave
//! from any of them.
//!
//! # How a UDP shell calls this
//!
//! For every datagram that parses as a STUN Binding request on one of those
//! sockets: `answer(&msg, source, local, &addresses, &options, &mut buf)`,
//! where `local` is the address of the socket it arrived on. `Some(reply)`
//! means: send `buf[..reply.len]` **from the socket bound to `reply.from`** to
//! `reply.to`. `None` means nothing to send (not a Binding request, or the
//! buffer was too small). Non-Binding requests are not this module's: route
//! them elsewhere (TURN) before calling.
//!
//! The rules are UDP only: RFC 5780 §3.2 "This test applies only to UDP
//! datagrams", and RESPONSE-PORT and PADDING are UDP matters (§3.3, §3.5).

use crate::binding::finish;
use std::net::{IpAddr, SocketAddr};

use super::attributes::{round_up_4, ChangeRequest, ResponsePort, MAX_PADDING};
use crate::stun::unknown::UnknownAttributes;
use crate::stun::{classic, AttributeType, Class, Message, MessageBuilder, Method};

/// Default cap on the PADDING the server sends back: the Ethernet MTU.
/// RFC 5780 §6.1: "The server SHOULD use a length of PADDING equal to the MTU
/// on the outgoing interface, rounded up to an even multiple of four bytes."
pub(crate) const DEFAULT_MAX_PADDING: usize = 1500;

/// Room a response needs beyond its PADDING: header, XOR-MAPPED-ADDRESS,
/// MAPPED-ADDRESS, RESPONSE-ORIGIN, OTHER-ADDRESS (IPv6 sizes), PADDING's own
/// header, SOFTWARE (127 characters of up to 4 bytes) and FINGERPRINT.
pub(crate) const RESPONSE_OVERHEAD: usize = 20 + 4 * 24 + 4 + 4 + 508 + 8;

/// The addresses the server answers from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ServerAddresses {
    primary: SocketAddr,
    alternate: Option<SocketAddr>,
}

/// Why a primary/alternate pair cannot serve RFC 5780.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum AddressSetError {
    /// RFC 5780 §6: the server needs "two separate IP addresses".
    #[error("the alternate address {alternate} has the same IP as the primary {primary}")]
    SameIp {
        primary: SocketAddr,
        alternate: SocketAddr,
    },
    /// Without two ports "change port" (RFC 5780 §7.2, flag B) is impossible.
    #[error("the alternate address {alternate} has the same port as the primary {primary}")]
    SamePort {
        primary: SocketAddr,
        alternate: SocketAddr,
    },
    #[error("the primary {primary} and alternate {alternate} are of different IP families")]
    FamilyMismatch {
        primary: SocketAddr,
        alternate: SocketAddr,
    },
    /// RESPONSE-ORIGIN and OTHER-ADDRESS must name real addresses.
    #[error("{0} is unspecified; RFC 5780 needs the concrete address of each socket")]
    Unspecified(SocketAddr),
}

impl ServerAddresses {
    /// A server with one address: RESPONSE-PORT and PADDING work, CHANGE-REQUEST
    /// gets 420 and no response carries OTHER-ADDRESS (RFC 5780 §6).
    /// The shell only builds RFC 5780 mode with an alternate; tests cover
    /// the single-address rules.
    #[cfg(test)]
    pub(crate) fn single(primary: SocketAddr) -> Self {
        ServerAddresses {
            primary,
            alternate: None,
        }
    }

    /// A full RFC 5780 server: `primary` is `A1:P1`, `alternate` is `A2:P2`.
    pub(crate) fn with_alternate(
        primary: SocketAddr,
        alternate: SocketAddr,
    ) -> Result<Self, AddressSetError> {
        for a in [primary, alternate] {
            if a.ip().is_unspecified() {
                return Err(AddressSetError::Unspecified(a));
            }
        }
        if primary.is_ipv4() != alternate.is_ipv4() {
            return Err(AddressSetError::FamilyMismatch { primary, alternate });
        }
        if primary.ip() == alternate.ip() {
            return Err(AddressSetError::SameIp { primary, alternate });
        }
        if primary.port() == alternate.port() {
            return Err(AddressSetError::SamePort { primary, alternate });
        }
        Ok(ServerAddresses {
            primary,
            alternate: Some(alternate),
        })
    }

    /// Every local address the shell must bind a UDP socket to: the primary
    /// alone, or `A1:P1, A1:P2, A2:P1, A2:P2`.
    pub(crate) fn local_addresses(&self) -> Vec<SocketAddr> {
        match self.alternate {
            None => vec![self.primary],
            Some(alt) => {
                let (a1, p1, a2, p2) =
                    (self.primary.ip(), self.primary.port(), alt.ip(), alt.port());
                vec![
                    SocketAddr::new(a1, p1),
                    SocketAddr::new(a1, p2),
                    SocketAddr::new(a2, p1),
                    SocketAddr::new(a2, p2),
                ]
            }
        }
    }

    /// `(Da:Dp, Ca:Cp)` for a request that arrived on `local`, in the words of
    /// RFC 5780 §6.1: "Let Ca represent the other address, so that if Da is
    /// A1, Ca is A2. If Da is A2, Ca is A1. Similarly, let Cp represent the
    /// other port". `None` without an alternate, or when `local` is not one of
    /// [`Self::local_addresses`].
    fn resolve(&self, local: SocketAddr) -> Option<(SocketAddr, SocketAddr)> {
        let alt = self.alternate?;
        let ip = local.ip().to_canonical();
        let (da, ca) = if ip == self.primary.ip().to_canonical() {
            (self.primary.ip(), alt.ip())
        } else if ip == alt.ip().to_canonical() {
            (alt.ip(), self.primary.ip())
        } else {
            return None;
        };
        let (dp, cp) = if local.port() == self.primary.port() {
            (self.primary.port(), alt.port())
        } else if local.port() == alt.port() {
            (alt.port(), self.primary.port())
        } else {
            return None;
        };
        Some((SocketAddr::new(da, dp), SocketAddr::new(ca, cp)))
    }

    /// OTHER-ADDRESS for a request that arrived on `local`: `Ca:Cp`. RFC 5780
    /// §6.1: "these are Ca and Cp, respectively, regardless of the value of
    /// the CHANGE-REQUEST flags."
    pub(crate) fn other_address(&self, local: SocketAddr) -> Option<SocketAddr> {
        self.resolve(local).map(|(_, c)| c)
    }

    /// The local address the answer to a request received on `local` leaves
    /// from (RFC 5780 §6.1, Table 1), or `None` when the change cannot be
    /// made (no alternate, or `local` unknown) and a change was asked for.
    pub(crate) fn response_source(
        &self,
        local: SocketAddr,
        change: ChangeRequest,
    ) -> Option<SocketAddr> {
        if change == ChangeRequest::NONE {
            // "If neither flag is set, or if the CHANGE-REQUEST attribute is
            // absent entirely, the source IP address of the Binding Response
            // MUST be Da and the source port of the Binding Response MUST be
            // Dp."
            return Some(self.resolve(local).map_or(local, |(d, _)| d));
        }
        let (d, c) = self.resolve(local)?;
        // "If the "change port" flag was set [...] and the "change IP" flag
        // was not set, the source IP address of the Binding Response MUST be
        // Da and the source port of the Binding Response MUST be Cp. If the
        // "change IP" flag was set [...] and the "change port" flag was not
        // set, the source IP address of the Binding Response MUST be Ca and
        // the source port of the Binding Response MUST be Dp. When both flags
        // are set, the source IP address of the Binding Response MUST be Ca
        // and the source port of the Binding Response MUST be Cp."
        let ip: IpAddr = if change.change_ip { c.ip() } else { d.ip() };
        let port = if change.change_port {
            c.port()
        } else {
            d.port()
        };
        Some(SocketAddr::new(ip, port))
    }
}

/// Knobs of the answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ServerOptions<'a> {
    /// SOFTWARE attribute, off by default (security defaults).
    pub software: Option<&'a str>,
    /// Largest PADDING value the server writes; see [`Decision`] for the rule.
    pub max_padding: usize,
}

impl Default for ServerOptions<'_> {
    fn default() -> Self {
        ServerOptions {
            software: None,
            max_padding: DEFAULT_MAX_PADDING,
        }
    }
}

/// A 400 answer's cause.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum BadRequest {
    #[error("CHANGE-REQUEST is not 4 bytes")]
    MalformedChangeRequest,
    #[error("RESPONSE-PORT is not 4 bytes")]
    MalformedResponsePort,
    /// RFC 5780 §7.5 lists 0 as allowed, but nothing can be sent to port 0.
    #[error("RESPONSE-PORT is 0")]
    ResponsePortZero,
    /// RFC 5780 §6.1: "If the Request also contains the RESPONSE-PORT
    /// attribute the server MUST return an error response of type 400."
    #[error("RESPONSE-PORT together with PADDING")]
    ResponsePortWithPadding,
    /// RFC 3489's RESPONSE-ADDRESS asks for the answer to go to another
    /// host: never honoured, as it would aim the server at third parties.
    #[error("RESPONSE-ADDRESS is never honoured")]
    ResponseAddress,
}

/// An error answer. It always leaves from the socket the request arrived on
/// and goes back to the request's source.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BindingRefusal {
    /// 420 with UNKNOWN-ATTRIBUTES listing them.
    UnknownAttributes(UnknownAttributes),
    /// 400.
    BadRequest(BadRequest),
}

impl BindingRefusal {
    pub(crate) fn code(&self) -> u16 {
        match self {
            BindingRefusal::UnknownAttributes { .. } => 420,
            BindingRefusal::BadRequest(_) => 400,
        }
    }

    /// The reason phrase: RFC 3489's refusal names what was refused.
    pub(crate) fn reason(&self) -> &'static str {
        match self {
            BindingRefusal::BadRequest(BadRequest::ResponseAddress) => {
                classic::RESPONSE_ADDRESS_REFUSED
            }
            _ => crate::stun::attributes::reason_phrase(self.code()),
        }
    }
}

/// Where a success answer goes and what it says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Route {
    /// Local address it leaves from; also its RESPONSE-ORIGIN.
    pub from: SocketAddr,
    /// Destination: the request's source, or its IP at RESPONSE-PORT.
    pub to: SocketAddr,
    /// The request's source, for XOR-MAPPED-ADDRESS and MAPPED-ADDRESS.
    pub mapped: SocketAddr,
    /// `Ca:Cp`, when the server has an alternate.
    pub other_address: Option<SocketAddr>,
    /// PADDING value length, when the request carried PADDING.
    pub padding: Option<usize>,
}

/// The decision for one request, before any byte is written.
///
/// PADDING: RFC 5780 §6.1 "If the Request contained a PADDING attribute,
/// PADDING MUST be included in the Binding Response." Its length is the
/// request's PADDING length rounded up to four, capped at
/// [`ServerOptions::max_padding`] (the MTU, as the RFC's SHOULD asks). Never
/// answering with more padding than the client sent keeps the server from
/// being a bandwidth amplifier: a 28-byte request cannot buy a 1500-byte
/// answer. Clients send MTU-sized PADDING anyway (RFC 5780 §5: "When PADDING
/// is used, it SHOULD be equal to the MTU of the outgoing interface").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Decision {
    /// Not a Binding request: not for this module.
    Ignore,
    Answer(Route),
    Reject(BindingRefusal),
}

/// Decides how to answer `msg`, received from `source` on the local socket
/// `local`.
pub(crate) fn decide(
    msg: &Message<'_>,
    source: SocketAddr,
    local: SocketAddr,
    addresses: &ServerAddresses,
    options: &ServerOptions<'_>,
) -> Decision {
    if msg.class() != Class::Request || msg.method() != Method::BINDING {
        return Decision::Ignore;
    }
    let other_address = addresses.other_address(local);

    // RFC 8489 §6.3.1.1: unknown comprehension-required attributes get 420
    // listing them. RFC 5780 §6: "If a server cannot allocate the same ports
    // on two different IP address, then it MUST NOT include an OTHER-ADDRESS
    // attribute in any Response and MUST respond with a 420 (Unknown
    // Attribute) to any Request with a CHANGE-REQUEST attribute." and §6.1:
    // "If the Request contains the CHANGE-REQUEST attribute and the server
    // does not have an alternate address and port as described above, the
    // server MUST generate an error response of type 420."
    let can_change = other_address.is_some();
    // A classic (RFC 3489) client knows RFC 3489's attributes only, so
    // RESPONSE-PORT and PADDING are unknown to it too.
    let known = |t: AttributeType| {
        if msg.is_classic() {
            classic::is_known(t)
        } else {
            t.is_known()
        }
    };
    let unknown = UnknownAttributes::find(msg, |t| {
        known(t) && (can_change || t != AttributeType::CHANGE_REQUEST)
    });
    if let Some(unknown) = unknown {
        return Decision::Reject(BindingRefusal::UnknownAttributes(unknown));
    }
    if msg.is_classic() && msg.get(AttributeType::RESPONSE_ADDRESS).is_some() {
        return Decision::Reject(BindingRefusal::BadRequest(BadRequest::ResponseAddress));
    }

    let change = match msg.get(AttributeType::CHANGE_REQUEST) {
        None => ChangeRequest::NONE,
        Some(v) => match ChangeRequest::decode(v) {
            Ok(c) => c,
            Err(_) => {
                return Decision::Reject(BindingRefusal::BadRequest(
                    BadRequest::MalformedChangeRequest,
                ))
            }
        },
    };
    let padding_len = msg.get(AttributeType::PADDING).map(|v| v.len());
    let response_port = match msg.get(AttributeType::RESPONSE_PORT) {
        None => None,
        Some(v) => match ResponsePort::decode(v) {
            Ok(ResponsePort(0)) => {
                return Decision::Reject(BindingRefusal::BadRequest(BadRequest::ResponsePortZero))
            }
            Ok(ResponsePort(p)) => Some(p),
            Err(_) => {
                return Decision::Reject(BindingRefusal::BadRequest(
                    BadRequest::MalformedResponsePort,
                ))
            }
        },
    };
    // RFC 5780 §7.5: "The server MUST NOT process a request containing a
    // RESPONSE-PORT and a PADDING attribute."
    if response_port.is_some() && padding_len.is_some() {
        return Decision::Reject(BindingRefusal::BadRequest(
            BadRequest::ResponsePortWithPadding,
        ));
    }

    // A change without an alternate was rejected above, so this always
    // resolves.
    let from = addresses.response_source(local, change).unwrap_or(local);

    // RFC 5780 §7.5: "the Binding Response MUST be transmitted to the source
    // IP address of the Binding Request and the port contained in
    // RESPONSE-PORT." and §6.1: "When the server sends the Response, it is
    // sent from the source address as determined above and to the source
    // address of the Request. If RESPONSE-PORT is present, the server sends
    // the response to that port instead of the originating port."
    let to = match response_port {
        Some(port) => SocketAddr::new(source.ip(), port),
        None => source,
    };
    // RFC 5780 §7.6: "PADDING MUST NOT be longer than the length that brings
    // the total IP datagram size to 64K."
    let cap = options.max_padding.min(MAX_PADDING);
    let padding = padding_len.map(|n| round_up_4(n.min(cap)));

    Decision::Answer(Route {
        from,
        to,
        mapped: source,
        other_address,
        padding,
    })
}

/// A response to send: `len` bytes at the front of the buffer, from the
/// local socket bound to `from`, to `to`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Reply {
    pub len: usize,
    pub from: SocketAddr,
    pub to: SocketAddr,
}

/// Answers one Binding request received from `source` on the local socket
/// `local`, writing the response into `out` (make it at least
/// `max_padding + RESPONSE_OVERHEAD` bytes). `None`: nothing to send.
///
/// An RFC 3489 request (see [`Message::parse_classic`]) is answered the way
/// its client reads: its 16-byte id echoed, MAPPED-ADDRESS, SOURCE-ADDRESS
/// and CHANGED-ADDRESS (RFC 3489 §11.2: the counterparts of RESPONSE-ORIGIN
/// and OTHER-ADDRESS), nothing XORed and no FINGERPRINT. The routing is the
/// same: CHANGE-REQUEST picks the socket.
pub(crate) fn answer(
    msg: &Message<'_>,
    source: SocketAddr,
    local: SocketAddr,
    addresses: &ServerAddresses,
    options: &ServerOptions<'_>,
    out: &mut [u8],
) -> Option<Reply> {
    let classic = msg.is_classic();
    let start = |out, success: bool| {
        let t = if success {
            msg.message_type().success()
        } else {
            msg.message_type().error()
        };
        if classic {
            MessageBuilder::new_classic(out, t, msg.classic_transaction_id())
        } else {
            MessageBuilder::new(out, t, msg.transaction_id())
        }
    };
    let fingerprint = msg.has_fingerprint() && !classic;
    match decide(msg, source, local, addresses, options) {
        Decision::Ignore => None,
        Decision::Reject(r) => {
            let mut b = start(out, false);
            match r {
                BindingRefusal::UnknownAttributes(u) => u.add_420(&mut b, classic),
                BindingRefusal::BadRequest(_) if classic => {
                    classic::add_error_code(&mut b, r.code(), r.reason())
                }
                BindingRefusal::BadRequest(_) => {
                    b.add_error_code(r.code(), crate::stun::attributes::reason_phrase(r.code()))
                }
            }
            let len = finish(b, options.software, fingerprint)?;
            Some(Reply {
                len,
                from: local,
                to: source,
            })
        }
        Decision::Answer(route) if classic => {
            let mut b = start(out, true);
            b.add_mapped_address(&route.mapped);
            b.add_address(AttributeType::SOURCE_ADDRESS, &route.from);
            if let Some(other) = route.other_address {
                b.add_address(AttributeType::CHANGED_ADDRESS, &other);
            }
            let len = finish(b, options.software, false)?;
            Some(Reply {
                len,
                from: route.from,
                to: route.to,
            })
        }
        Decision::Answer(route) => {
            let mut b = start(out, true);
            // RFC 5780 §6.1: "The server MUST include both MAPPED-ADDRESS and
            // XOR-MAPPED-ADDRESS in its Response." (The pair also lets a
            // client spot an address-rewriting ALG, §3.6.)
            b.add_xor_mapped_address(&route.mapped);
            b.add_mapped_address(&route.mapped);
            // "The server MUST add a RESPONSE-ORIGIN attribute to the Binding
            // Response, containing the source address and port used to send
            // the Binding Response."
            b.add_address(AttributeType::RESPONSE_ORIGIN, &route.from);
            // "If the server supports an alternate address and port, the
            // server MUST add an OTHER-ADDRESS attribute to the Binding
            // Response." §7.4: "OTHER-ADDRESS MUST NOT be inserted into a
            // Binding Response unless the server has a second IP address."
            if let Some(other) = route.other_address {
                b.add_address(AttributeType::OTHER_ADDRESS, &other);
            }
            // "If the Request contained a PADDING attribute, PADDING MUST be
            // included in the Binding Response."
            if let Some(n) = route.padding {
                b.add_with(AttributeType::PADDING, n, |v| v.fill(0));
            }
            // ALTERNATE-SERVER is never added: "An ALTERNATE-SERVER attribute
            // MUST NOT be included with any other attribute defined in this
            // specification."
            let len = finish(b, options.software, fingerprint)?;
            Some(Reply {
                len,
                from: route.from,
                to: route.to,
            })
        }
    }
}

#[cfg(test)]
#[path = "tests/server.rs"]
mod tests;
