//! turnpike: a STUN/TURN/ICE NAT-traversal server.
//!
//! # Shape
//!
//! A sans-IO core and an I/O shell (see `../shared/design.md` in the project
//! workspace). The core reads no socket and no clock (time is an argument);
//! `scripts/check_core.sh` builds it alone to prove it.
//!
//! * core:
//!   * [`stun`]: the codec (RFC 8489, RFC 5389 and RFC 3489 clients),
//!     ChannelData, stream framing, and [`stun::client`]: one transaction
//!     engine (retransmission, the 401 dance) for every client.
//!   * [`binding`]: the Binding service of RFC 8489 §6.3.
//!   * [`auth`]: who may allocate. One room per credential kind:
//!     `long_term.rs`, `rest.rs` (where a REST credential is checked and
//!     minted), `oauth.rs`; nonces, the reply budget, the Unix clock value.
//!   * [`turn`]: the TURN server. `turn/server/` holds one room per request
//!     (allocate, refresh, permissions) and `relay.rs`, where ChannelData
//!     and Send indications go to peers and peer datagrams come back;
//!     `error.rs` names the codes, `attributes.rs` reads the attributes.
//!   * [`nat`]: RFC 5780: the server's rules, the service the shell hands
//!     its four sockets' datagrams to, the probe's tests.
//!   * [`turn_client`]: the one sans-IO TURN client, driven by the bench,
//!     the probes and the tests.
//! * shell:
//!   * [`net`]: start-up phases (`bind.rs`, `assemble.rs`, `loops.rs`),
//!     worker threads (`worker/`: UDP engine, streams, DTLS, RFC 6062
//!     splice), TLS and certificates, the control handle the admin API
//!     is given;
//!     [`serve`] starts it all.
//!   * [`admin`]: the admin API (routes per resource), metrics, the
//!     stats the web console draws, and the console's files (`console/`).
//!   * `selftest`: the self-test page (issue 20), its assets, credential
//!     endpoint and rate limits; on the admin listener or its own.
//!   * [`usage`]: usage records and webhooks from the core's events.
//!   * [`store`]: users, secrets, keys and quotas in SQLite or PostgreSQL.
//!   * [`config`]: `turnserver.toml` and the matching flags, one section
//!     per file.
//!   * [`cli`]: the `turnpike` command line; [`bench`]: its load generator;
//!     [`import`]: `turnpike import` (coturn's config and user database);
//!     [`secret_file`]: secrets read from files.
//!
//! # RFCs
//!
//! RFC 8489 (STUN), RFC 5769 (test vectors), RFC 8656 (TURN, with RFC
//! 6156's IPv6 folded in), RFC 6062 (TCP relays), RFC 5780 (NAT behaviour
//! discovery), RFC 7635 (OAuth), RFC 6347 (DTLS, through OpenSSL).

#![warn(unreachable_pub, missing_debug_implementations)]

pub mod admin;
pub mod auth;
pub(crate) mod bench;
pub mod binding;
pub mod cli;
pub mod config;
pub mod import;
pub mod nat;
pub mod net;
pub mod secret_file;
pub(crate) mod selftest;
pub mod store;
pub mod stun;
pub mod turn;
pub mod turn_client;
pub mod usage;

pub use config::Config;
pub use net::{serve, Running, ServeError, Transport};
