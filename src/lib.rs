//! turnpike: a STUN/TURN/ICE NAT-traversal server.
//!
//! # Shape
//!
//! The crate has a sans-IO core and an I/O shell (see `../shared/design.md`
//! in the project workspace):
//!
//! * core, no tokio, no sockets, no clock reads (time is an argument):
//!   * [`stun`]: zero-copy codec for RFC 8489 (and RFC 5389 clients),
//!     ChannelData, stream framing; RFC 5769 vectors are its unit tests.
//!   * [`binding`]: the Binding service of RFC 8489 §6.3.
//!   * [`auth`]: long-term credentials, stateless nonces, reply budget.
//!   * [`turn`]: the TURN allocation state machine, peer policy, ports,
//!     quotas.
//!   * [`nat`]: RFC 5780 NAT behaviour discovery: the server's
//!     CHANGE-REQUEST/RESPONSE-PORT/PADDING rules and the probe's tests.
//! * shell:
//!   * [`net`]: worker threads, UDP (batched, on the worker's own epoll) and
//!     TCP listeners, relay sockets; [`serve`] starts them.
//!   * [`config`]: `turnserver.toml` and the matching flags.
//!   * [`cli`]: the `turnpike` command line.
//!   * [`bench`]: the load generator behind `turnpike bench`.
//!
//! # RFCs
//!
//! RFC 8489 (STUN), RFC 5769 (test vectors), RFC 8656 (TURN, with RFC
//! 6156's IPv6 folded in), RFC 6062 (TCP relays), RFC 5780 (NAT behaviour
//! discovery), RFC 7635 (OAuth), RFC 6347 (DTLS, through OpenSSL).

pub mod admin;
pub mod auth;
pub(crate) mod bench;
pub mod binding;
pub mod cli;
pub mod config;
pub mod nat;
pub mod net;
pub mod secret_file;
pub mod store;
pub mod stun;
pub mod turn;
pub mod turn_client;

pub use config::Config;
pub use net::{serve, Running, ServeError, Transport};
