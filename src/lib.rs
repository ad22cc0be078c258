//! turnpike: a STUN/TURN/ICE NAT-traversal server.
//!
//! # Shape
//!
//! The crate has a sans-IO core and an I/O shell (see `../shared/design.md`
//! in the project workspace):
//!
//! * core, no tokio, no sockets, no clock reads:
//!   * [`stun`]: zero-copy codec for RFC 8489 (and RFC 5389 clients),
//!     ChannelData, stream framing; RFC 5769 vectors are its unit tests.
//!   * [`binding`]: the Binding service of RFC 8489 §6.3.
//! * shell:
//!   * [`net`]: tokio UDP and TCP listeners; [`serve`] starts them.
//!   * [`config`]: `turnserver.toml` and the matching flags.
//!   * [`cli`]: the `turnpike` command line.
//!   * [`bench`]: the load generator behind `turnpike bench`.
//!
//! # RFCs
//!
//! RFC 8489 (STUN), RFC 5769 (test vectors); TURN (RFC 8656), RFC 6062,
//! RFC 5780 and RFC 7635 follow in later modules.

pub mod bench;
pub mod binding;
pub mod cli;
pub mod config;
pub mod net;
pub mod stun;

pub use config::Config;
pub use net::{serve, Running, ServeError, Transport};
pub mod auth;
pub mod turn;
