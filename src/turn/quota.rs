//! Allocation quotas: per user (`user_quota`, or the user's stored quota),
//! per realm (stored) and in total (`total_quota`), shared by all workers.
//! Touched on Allocate and on release only, never per packet. The server
//! serves one realm, so the realm's count is the total.

use std::collections::HashMap;
use std::sync::Mutex;

/// Which quota refused an allocation (both are answered with 486).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QuotaExceeded {
    User,
    Realm,
    Total,
}

/// Stored limits that override the configured ones for one request.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Limits {
    /// The user's own quota (0 = unlimited); else `user_quota` applies.
    pub user: Option<u32>,
    /// The realm's quota (0 = unlimited).
    pub realm: Option<u32>,
}

#[derive(Debug, Default)]
pub struct Quotas {
    /// 0 = unlimited.
    user_quota: u32,
    total_quota: u32,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    total: u32,
    per_user: HashMap<String, u32>,
}

impl Quotas {
    pub fn new(user_quota: u32, total_quota: u32) -> Self {
        Quotas {
            user_quota,
            total_quota,
            state: Mutex::default(),
        }
    }

    /// Counts one allocation for `user`, or says which quota is full.
    pub fn acquire(&self, user: &str, limits: Limits) -> Result<(), QuotaExceeded> {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if self.total_quota != 0 && s.total >= self.total_quota {
            return Err(QuotaExceeded::Total);
        }
        if limits.realm.is_some_and(|r| r != 0 && s.total >= r) {
            return Err(QuotaExceeded::Realm);
        }
        let n = s.per_user.get(user).copied().unwrap_or(0);
        let user_quota = limits.user.unwrap_or(self.user_quota);
        if user_quota != 0 && n >= user_quota {
            return Err(QuotaExceeded::User);
        }
        s.total += 1;
        s.per_user.insert(user.to_string(), n + 1);
        Ok(())
    }

    pub fn release(&self, user: &str) {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        s.total = s.total.saturating_sub(1);
        if let Some(n) = s.per_user.get_mut(user) {
            *n -= 1;
            if *n == 0 {
                s.per_user.remove(user);
            }
        }
    }

    pub fn total(&self) -> u32 {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).total
    }

    pub fn of_user(&self, user: &str) -> u32 {
        let s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        s.per_user.get(user).copied().unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_and_total_quotas_refuse_then_free_up() {
        let q = Quotas::new(2, 3);
        let none = Limits::default();
        assert_eq!(q.acquire("a", none), Ok(()));
        assert_eq!(q.acquire("a", none), Ok(()));
        assert_eq!(q.acquire("a", none), Err(QuotaExceeded::User));
        assert_eq!(q.acquire("b", none), Ok(()));
        assert_eq!(q.acquire("c", none), Err(QuotaExceeded::Total));
        q.release("a");
        assert_eq!(q.acquire("c", none), Ok(()));
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
            assert_eq!(q.acquire("vip", three), Ok(()));
        }
        assert_eq!(q.acquire("vip", three), Err(QuotaExceeded::User));
        assert_eq!(q.acquire("a", Limits::default()), Ok(()));
        assert_eq!(q.acquire("a", Limits::default()), Err(QuotaExceeded::User));
        // A stored 0 means unlimited for that user.
        let unlimited = Limits {
            user: Some(0),
            realm: None,
        };
        assert_eq!(q.acquire("a", unlimited), Ok(()));
        // The realm's quota caps everyone.
        let realm = Limits {
            user: Some(0),
            realm: Some(5),
        };
        assert_eq!(q.acquire("b", realm), Err(QuotaExceeded::Realm));
    }
}
