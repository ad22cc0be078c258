//! Allocation quotas: per user (`user_quota`) and in total (`total_quota`),
//! shared by all workers. Touched on Allocate and on release only, never
//! per packet.

use std::collections::HashMap;
use std::sync::Mutex;

/// Which quota refused an allocation (both are answered with 486).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QuotaExceeded {
    User,
    Total,
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
    pub fn acquire(&self, user: &str) -> Result<(), QuotaExceeded> {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if self.total_quota != 0 && s.total >= self.total_quota {
            return Err(QuotaExceeded::Total);
        }
        let n = s.per_user.get(user).copied().unwrap_or(0);
        if self.user_quota != 0 && n >= self.user_quota {
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
        assert_eq!(q.acquire("a"), Ok(()));
        assert_eq!(q.acquire("a"), Ok(()));
        assert_eq!(q.acquire("a"), Err(QuotaExceeded::User));
        assert_eq!(q.acquire("b"), Ok(()));
        assert_eq!(q.acquire("c"), Err(QuotaExceeded::Total));
        q.release("a");
        assert_eq!(q.acquire("c"), Ok(()));
        assert_eq!(q.of_user("a"), 1);
        assert_eq!(q.total(), 3);
    }
}
