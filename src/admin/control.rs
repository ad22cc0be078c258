//! What the admin API needs from the running server, as a handle it is
//! given: the shell implements it (`net/control.rs`), so admin never
//! reaches into the shell and the shell only depends on admin.

use std::future::Future;
use std::pin::Pin;

use crate::turn::{SessionView, Stats};

/// A future the handle answers with later (ending a session runs on the
/// worker that owns it).
pub(crate) type Answer<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The outcome of a certificate reload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum CertReload {
    /// No certificate is configured.
    NotConfigured,
    Reloaded,
    /// A file was bad: the old pair is still served. The reason names the
    /// file, never its bytes.
    Kept(String),
}

/// The live server, as the admin API sees it.
pub(crate) trait Control: Send + Sync {
    /// Every worker's sessions (as of their last report) with their ids.
    fn sessions(&self) -> Vec<(String, SessionView)>;
    /// Counters summed over workers.
    fn stats(&self) -> Stats;
    /// Allocations alive now, over all workers.
    fn allocations(&self) -> u32;
    /// Ends a session by id; false if there is no such live session.
    fn end_session<'a>(&'a self, id: &'a str) -> Answer<'a, bool>;
    /// Reads the TLS (and DTLS) certificate and key again.
    fn reload_certs(&self) -> CertReload;
    /// `stun:`, `turn:` and `turns:` URLs of every listener, as clients
    /// should dial them.
    fn ice_urls(&self) -> Vec<String>;
    /// Fleet quotas (issue 15): on, and counting locally for now?
    fn fleet_quota(&self) -> &crate::turn::quota::FleetStatus;
}
