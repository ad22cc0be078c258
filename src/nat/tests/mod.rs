//! RFC 5780 tests by room: the simulator ([`sim`]), the probe against it,
//! the report's names. The server's own unit tests are `server.rs` here,
//! compiled as `nat::server::tests` so they reach its private items.

pub(crate) mod sim;

mod probe;
mod report;

pub(super) use sim::{a1p1, a1p2, a2p1, a2p2};
