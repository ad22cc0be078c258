//! Allocation quotas: per user (`user_quota`, or the user's stored quota),
//! per realm (stored), per source (`max_allocations_per_ip`, an IPv6 /64
//! counting as one source) and in total (`total_quota`), shared by all
//! workers.
//! Touched on Allocate and on release only, never per packet. Users and
//! realm counts are kept per realm (issue 19: tenant realms): the same
//! name in two realms is two users.
//!
//! Fleet quotas (issue 15): with a PostgreSQL store the shell turns on
//! [`Quotas::enable_fleet`]; an Allocate that passes the local count then
//! also asks the shell ([`crate::turn::Request::ReserveQuota`]) to count it
//! against every live node's allocations, and completes on the answer
//! ([`QuotaAnswer`]). The per-source cap stays local. [`FleetStatus`] is
//! how the shell says it fell back to local counting.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::Mutex;

/// Which quota refused an allocation (both are answered with 486).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QuotaExceeded {
    /// The user's quota (stored, else `user_quota`).
    User,
    /// The realm's stored quota.
    Realm,
    /// `total_quota`.
    Total,
    /// `max_allocations_per_ip` for the client's address (or /64).
    Source,
}

/// Stored limits that override the configured ones for one request.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Limits {
    /// The user's own quota (0 = unlimited); else `user_quota` applies.
    pub user: Option<u32>,
    /// The realm's quota (0 = unlimited).
    pub realm: Option<u32>,
}

/// The limits one allocation is counted against fleet-wide (0 =
/// unlimited): what [`Quotas::acquire`] checked locally, resolved.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FleetLimits {
    /// The user's stored quota, else `user_quota`.
    pub user: u32,
    /// The realm's stored quota.
    pub realm: u32,
    /// `total_quota`.
    pub total: u32,
}

/// An allocation waiting for (or holding) a fleet-wide quota place
/// ([`crate::turn::Request::ReserveQuota`]): its slot and generation, so an answer for
/// an allocation that is gone is told from one for a later one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct QuotaKey {
    /// The allocation's slot in its worker's table.
    pub slot: u32,
    /// The allocation's generation.
    pub generation: u32,
}

/// The shell's answer to a [`crate::turn::Request::ReserveQuota`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QuotaAnswer {
    /// Counted (fleet-wide, or locally while the store is unreachable).
    Granted,
    /// A fleet-wide quota is full: the Allocate gets 486.
    Exceeded,
    /// Too many questions to the store at once: the Allocate gets 508
    /// (Insufficient Capacity) rather than an uncounted allocation.
    Busy,
}

/// Whether fleet counting is on, and whether it has fallen back to local
/// counting because the store is unreachable; plain atomics the shell sets
/// and metrics read.
#[derive(Debug, Default)]
pub struct FleetStatus {
    enabled: AtomicBool,
    local: AtomicBool,
    fallbacks: AtomicU64,
}

impl FleetStatus {
    /// Whether Allocates ask the fleet.
    pub fn enabled(&self) -> bool {
        self.enabled.load(Ordering::Relaxed)
    }

    /// Whether quotas are counted on this node only now (store unreachable).
    pub fn local_fallback(&self) -> bool {
        self.local.load(Ordering::Relaxed)
    }

    /// How many times counting fell back to local.
    pub fn fallbacks(&self) -> u64 {
        self.fallbacks.load(Ordering::Relaxed)
    }

    /// Counting falls back to local; true if it was not already (say so).
    pub fn fall_back(&self) -> bool {
        let first = !self.local.swap(true, Ordering::Relaxed);
        if first {
            self.fallbacks.fetch_add(1, Ordering::Relaxed);
        }
        first
    }

    /// The store answers again; true if it was in fallback (say so).
    pub fn recover(&self) -> bool {
        self.local.swap(false, Ordering::Relaxed)
    }
}

/// The allocation counts and their limits; one lock, taken on Allocate and
/// release only.
#[derive(Debug, Default)]
pub struct Quotas {
    /// 0 = unlimited.
    /// Atomics: a reload changes them under running workers.
    user_quota: AtomicU32,
    total_quota: AtomicU32,
    per_source_quota: AtomicU32,
    state: Mutex<State>,
    /// Fleet counting (issue 15), set by the shell.
    pub fleet: FleetStatus,
}

#[derive(Debug, Default)]
struct State {
    total: u32,
    /// By realm, then user.
    per_user: HashMap<(String, String), u32>,
    per_realm: HashMap<String, u32>,
    per_source: HashMap<u128, u32>,
}

/// The source an allocation counts against: the IPv4 address, or the /64
/// of an IPv6 one (a host owns a whole /64).
fn source_key(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(v4) => u128::from(u32::from(v4)),
        IpAddr::V6(v6) => (u128::from(v6) >> 64) | (1 << 127),
    }
}

impl Quotas {
    /// Limits from `user_quota` and `total_quota` (0 = unlimited), no
    /// per-source cap until [`Quotas::with_per_source`].
    pub fn new(user_quota: u32, total_quota: u32) -> Self {
        Quotas {
            user_quota: AtomicU32::new(user_quota),
            total_quota: AtomicU32::new(total_quota),
            per_source_quota: AtomicU32::new(0),
            state: Mutex::default(),
            fleet: FleetStatus::default(),
        }
    }

    /// From now on Allocates also ask the fleet (the shell answers them).
    pub fn enable_fleet(&self) {
        self.fleet.enabled.store(true, Ordering::Relaxed);
    }

    /// The limits `limits` resolve to, as the fleet counts them.
    pub fn fleet_limits(&self, limits: Limits) -> FleetLimits {
        FleetLimits {
            user: limits
                .user
                .unwrap_or(self.user_quota.load(Ordering::Relaxed)),
            realm: limits.realm.unwrap_or(0),
            total: self.total_quota.load(Ordering::Relaxed),
        }
    }

    /// Caps allocations per client address (IPv6: per /64); 0 = unlimited.
    pub fn with_per_source(mut self, max: u32) -> Self {
        self.per_source_quota = AtomicU32::new(max);
        self
    }

    /// New limits for the next Allocates (a reload); allocations already
    /// counted stay, even above a lowered limit.
    pub fn set_limits(&self, user_quota: u32, total_quota: u32, per_source: u32) {
        self.user_quota.store(user_quota, Ordering::Relaxed);
        self.total_quota.store(total_quota, Ordering::Relaxed);
        self.per_source_quota.store(per_source, Ordering::Relaxed);
    }

    /// Counts one allocation for `user` from `source`, or says which quota
    /// is full; a server of one realm (the realm's count is the total).
    pub fn acquire(&self, user: &str, source: IpAddr, limits: Limits) -> Result<(), QuotaExceeded> {
        self.acquire_in("", user, source, limits)
    }

    /// [`Self::acquire`] for `user` of `realm`: `limits.realm` caps that
    /// realm's allocations.
    pub fn acquire_in(
        &self,
        realm: &str,
        user: &str,
        source: IpAddr,
        limits: Limits,
    ) -> Result<(), QuotaExceeded> {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let key = source_key(source);
        let from_source = s.per_source.get(&key).copied().unwrap_or(0);
        let per_source = self.per_source_quota.load(Ordering::Relaxed);
        if per_source != 0 && from_source >= per_source {
            return Err(QuotaExceeded::Source);
        }
        let total = self.total_quota.load(Ordering::Relaxed);
        if total != 0 && s.total >= total {
            return Err(QuotaExceeded::Total);
        }
        let in_realm = s.per_realm.get(realm).copied().unwrap_or(0);
        if limits.realm.is_some_and(|r| r != 0 && in_realm >= r) {
            return Err(QuotaExceeded::Realm);
        }
        let key_user = (realm.to_string(), user.to_string());
        let n = s.per_user.get(&key_user).copied().unwrap_or(0);
        let user_quota = limits
            .user
            .unwrap_or(self.user_quota.load(Ordering::Relaxed));
        if user_quota != 0 && n >= user_quota {
            return Err(QuotaExceeded::User);
        }
        s.total += 1;
        s.per_user.insert(key_user, n + 1);
        s.per_realm.insert(realm.to_string(), in_realm + 1);
        s.per_source.insert(key, from_source + 1);
        Ok(())
    }

    /// Gives back one allocation counted by [`Quotas::acquire`] for `user`
    /// from `source`.
    pub fn release(&self, user: &str, source: IpAddr) {
        self.release_in("", user, source)
    }

    /// Gives back one allocation counted by [`Self::acquire_in`].
    pub fn release_in(&self, realm: &str, user: &str, source: IpAddr) {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        s.total = s.total.saturating_sub(1);
        let key = source_key(source);
        if let Some(n) = s.per_source.get_mut(&key) {
            *n -= 1;
            if *n == 0 {
                s.per_source.remove(&key);
            }
        }
        let key_user = (realm.to_string(), user.to_string());
        if let Some(n) = s.per_user.get_mut(&key_user) {
            *n -= 1;
            if *n == 0 {
                s.per_user.remove(&key_user);
            }
        }
        if let Some(n) = s.per_realm.get_mut(realm) {
            *n -= 1;
            if *n == 0 {
                s.per_realm.remove(realm);
            }
        }
    }

    /// Allocations counted, all users.
    pub fn total(&self) -> u32 {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).total
    }

    /// Allocations counted for `user` (of a server of one realm).
    pub fn of_user(&self, user: &str) -> u32 {
        let s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let key = (String::new(), user.to_string());
        s.per_user.get(&key).copied().unwrap_or(0)
    }

    /// Allocations counted in `realm`.
    pub fn of_realm(&self, realm: &str) -> u32 {
        let s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        s.per_realm.get(realm).copied().unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn realm_quotas_count_each_realm_and_users_are_per_realm() {
        let q = Quotas::new(1, 0);
        let one = Limits {
            user: Some(5),
            realm: Some(1),
        };
        let two = Limits {
            user: None,
            realm: Some(2),
        };
        assert_eq!(q.acquire_in("a", "u", SRC, one), Ok(()));
        assert_eq!(q.acquire_in("a", "v", SRC, one), Err(QuotaExceeded::Realm));
        // Realm b counts its own: a's allocation does not fill it.
        assert_eq!(q.acquire_in("b", "w", SRC, two), Ok(()));
        // `user_quota` 1 counts u of a and u of b apart.
        assert_eq!(q.acquire_in("b", "u", SRC, two), Ok(()));
        assert_eq!(q.acquire_in("b", "x", SRC, two), Err(QuotaExceeded::Realm));
        assert_eq!((q.of_realm("a"), q.of_realm("b"), q.total()), (1, 2, 3));
        q.release_in("a", "u", SRC);
        assert_eq!(q.acquire_in("a", "v", SRC, one), Ok(()));
    }

    const SRC: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(198, 51, 100, 1));

    #[test]
    fn user_and_total_quotas_refuse_then_free_up() {
        let q = Quotas::new(2, 3);
        let none = Limits::default();
        assert_eq!(q.acquire("a", SRC, none), Ok(()));
        assert_eq!(q.acquire("a", SRC, none), Ok(()));
        assert_eq!(q.acquire("a", SRC, none), Err(QuotaExceeded::User));
        assert_eq!(q.acquire("b", SRC, none), Ok(()));
        assert_eq!(q.acquire("c", SRC, none), Err(QuotaExceeded::Total));
        q.release("a", SRC);
        assert_eq!(q.acquire("c", SRC, none), Ok(()));
        assert_eq!(q.of_user("a"), 1);
        assert_eq!(q.total(), 3);
    }

    #[test]
    fn stored_user_and_realm_quotas_override_the_configured_ones() {
        let q = Quotas::new(1, 0);
        // A stored quota of 3 lifts the configured 1 for this user only.
        let three = Limits {
            user: Some(3),
            realm: None,
        };
        for _ in 0..3 {
            assert_eq!(q.acquire("vip", SRC, three), Ok(()));
        }
        assert_eq!(q.acquire("vip", SRC, three), Err(QuotaExceeded::User));
        assert_eq!(q.acquire("a", SRC, Limits::default()), Ok(()));
        assert_eq!(
            q.acquire("a", SRC, Limits::default()),
            Err(QuotaExceeded::User)
        );
        // A stored 0 means unlimited for that user.
        let unlimited = Limits {
            user: Some(0),
            realm: None,
        };
        assert_eq!(q.acquire("a", SRC, unlimited), Ok(()));
        // The realm's quota caps everyone.
        let realm = Limits {
            user: Some(0),
            realm: Some(5),
        };
        assert_eq!(q.acquire("b", SRC, realm), Err(QuotaExceeded::Realm));
    }

    #[test]
    fn a_source_and_its_ipv6_slash_64_share_one_count() {
        let q = Quotas::new(0, 0).with_per_source(2);
        let none = Limits::default();
        let v6a: IpAddr = "2001:db8:1:2::a".parse().unwrap();
        let v6b: IpAddr = "2001:db8:1:2:ffff::b".parse().unwrap();
        let other: IpAddr = "2001:db8:1:3::a".parse().unwrap();
        assert_eq!(q.acquire("a", v6a, none), Ok(()));
        assert_eq!(q.acquire("b", v6b, none), Ok(()));
        assert_eq!(q.acquire("c", v6a, none), Err(QuotaExceeded::Source));
        assert_eq!(q.acquire("c", other, none), Ok(()));
        assert_eq!(q.acquire("c", SRC, none), Ok(()));
        q.release("a", v6a);
        assert_eq!(q.acquire("a", v6b, none), Ok(()));
        assert_eq!(q.total(), 4);
    }

    #[test]
    fn the_fleet_fallback_is_counted_once_per_outage() {
        let q = Quotas::new(1, 0);
        assert!(!q.fleet.enabled());
        q.enable_fleet();
        assert!(q.fleet.enabled());
        assert!(!q.fleet.recover(), "nothing to recover from");
        assert!(q.fleet.fall_back(), "said the first time");
        assert!(!q.fleet.fall_back(), "not again");
        assert!(q.fleet.local_fallback());
        assert!(q.fleet.recover(), "said on recovery");
        assert!(!q.fleet.local_fallback());
        assert!(q.fleet.fall_back());
        assert_eq!(q.fleet.fallbacks(), 2);
    }

    #[test]
    fn fleet_limits_are_the_stored_quotas_else_the_configured_ones() {
        let q = Quotas::new(2, 9);
        let none = Limits::default();
        let l = q.fleet_limits(none);
        assert_eq!((l.user, l.realm, l.total), (2, 0, 9));
        let stored = Limits {
            user: Some(0),
            realm: Some(4),
        };
        let l = q.fleet_limits(stored);
        assert_eq!((l.user, l.realm, l.total), (0, 4, 9));
    }
}
