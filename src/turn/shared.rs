//! State every worker shares: configuration, authentication, quotas, the
//! relay port pool, RESERVATION-TOKENs and RFC 6062 peer connections.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::drain::Drain;
use super::ports::PortPool;
use super::quota::Quotas;
use super::TurnConfig;
use crate::auth::rate::ReplyBudget;
use crate::auth::Authenticator;

/// RFC 8656 §7.2: a reserved port is kept "for at least 30 seconds".
pub(crate) const RESERVATION_TTL: Duration = Duration::from_secs(30);

/// State shared by every worker.
pub struct Shared {
    /// The TURN settings; a reload swaps them whole ([`Shared::config`]).
    config: arc_swap::ArcSwap<TurnConfig>,
    /// Verifies requests against the realm's credentials.
    pub auth: Authenticator,
    /// Allocation counts per user, source and in total.
    pub quotas: Quotas,
    /// The relay ports in use.
    pub ports: Mutex<PortPool>,
    /// RESERVATION-TOKEN → the port held for it (RFC 8656 §7.2).
    reservations: Mutex<HashMap<[u8; 8], Reservation>>,
    /// RFC 6062 peer connections of every worker.
    pub tcp_conns: super::tcp_relay::TcpConns,
    /// Key for RESERVATION-TOKENs (see [`SharedKeys`]).
    pub(crate) token_key: [u8; 32],
    /// The per-source budget of unauthenticated answers, one for all
    /// workers (RFC 5780 answers in the shell spend it too).
    pub reply_budget: ReplyBudget,
    /// Whether this node drains, and where new allocations go (issue 15).
    pub drain: Drain,
}

/// A port held for a RESERVATION-TOKEN until `expires`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Reservation {
    pub(crate) addr: SocketAddr,
    pub(crate) expires: Instant,
}

/// The secrets a server keys its tables with. No default: all-zero keys
/// would let anyone compute reservation tokens or aim at a victim's reply
/// budget, so the shell draws random ones and tests name theirs.
#[derive(Clone, Copy)]
pub struct SharedKeys {
    /// RESERVATION-TOKENs are derived from it.
    pub reservation_token: [u8; 32],
    /// Keys the reply budget's buckets, so sources cannot choose theirs.
    pub reply_budget: [u8; 32],
}

impl std::fmt::Debug for SharedKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SharedKeys(..)")
    }
}

impl Shared {
    /// Shared state from its parts, with no reservations or connections
    /// yet; the reply budget is built from `auth_reply_rate` and `keys`.
    pub fn new(
        config: TurnConfig,
        auth: Authenticator,
        quotas: Quotas,
        ports: PortPool,
        keys: SharedKeys,
    ) -> Self {
        let reply_budget = ReplyBudget::new(config.auth_reply_rate, keys.reply_budget);
        Shared {
            config: arc_swap::ArcSwap::from_pointee(config),
            auth,
            quotas,
            ports: Mutex::new(ports),
            reservations: Mutex::default(),
            tcp_conns: Default::default(),
            token_key: keys.reservation_token,
            reply_budget,
            drain: Drain::default(),
        }
    }

    /// The TURN settings now. Each request reads them once; a reload
    /// takes effect for the next.
    pub fn config(&self) -> arc_swap::Guard<std::sync::Arc<TurnConfig>> {
        self.config.load()
    }

    /// New settings for new work (a reload): existing allocations keep
    /// what they were granted.
    pub fn reconfigure(&self, config: TurnConfig) {
        self.reply_budget.set_rate(config.auth_reply_rate);
        self.config.store(std::sync::Arc::new(config));
    }

    pub(crate) fn ports(&self) -> MutexGuard<'_, PortPool> {
        self.ports.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn reservations(&self) -> MutexGuard<'_, HashMap<[u8; 8], Reservation>> {
        self.reservations.lock().unwrap_or_else(|e| e.into_inner())
    }
}

// The token key stays out of Debug.
impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("config", &self.config.load())
            .finish_non_exhaustive()
    }
}
