//! RFC 5780 NAT Behavior Discovery, sans-IO: no sockets, no clock, no
//! randomness of its own (time and a seed are arguments).
//!
//! * [`server`]: the rules a STUN server with a primary and an alternate
//!   address follows — which local address answers a CHANGE-REQUEST,
//!   RESPONSE-PORT redirection, PADDING, the 420 when no alternate exists —
//!   and the response bytes (XOR-MAPPED-ADDRESS, MAPPED-ADDRESS,
//!   RESPONSE-ORIGIN, OTHER-ADDRESS).
//! * [`probe`]: the client's state machine running the mapping (§4.3),
//!   filtering (§4.4), hairpinning (§3.4), large packet (§3.5) and binding
//!   lifetime (§4.6) tests, with STUN retransmission.
//! * [`report`]: its verdict — [`Behaviour`] of mapping and filtering, the
//!   classic RFC 3489 name, addresses seen, JSON.
//! * [`attributes`]: CHANGE-REQUEST and RESPONSE-PORT values.
//! * [`service`]: RFC 5780 mode as one unit for the shell: which datagrams
//!   are its own, the reply budget, the answer.
//!
//! RFC 5780 §1: the results are "instantaneous behavior"; a NAT may become
//! more restrictive at any time, so a report is a diagnosis, not a promise.

#![warn(missing_docs, unreachable_pub, missing_debug_implementations)]

pub mod attributes;
pub(crate) mod probe;
pub(crate) mod report;
pub(crate) mod server;
pub(crate) mod service;

pub use attributes::{ChangeRequest, ResponsePort};
pub(crate) use probe::{LifetimeSearch, Probe, ProbeOptions};
pub(crate) use report::{Outcome, ProbeError, Report, SocketId, TestRecord};
pub(crate) use server::ServerAddresses;
pub(crate) use service::{Handled, Service};

#[cfg(test)]
pub(crate) mod tests;
