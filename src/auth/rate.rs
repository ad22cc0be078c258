//! Per-source-address budget for unauthenticated error answers (401, 438):
//! each answer is a reflection an attacker can aim, so their rate is capped.
//!
//! A fixed table of token buckets indexed by a hash of the IP: memory is
//! bounded whatever the number of sources; colliding sources share a bucket.

use std::net::IpAddr;
use std::time::Instant;

const BUCKETS: usize = 4096;

#[derive(Clone, Copy)]
struct Bucket {
    tokens: f32,
    last: Option<Instant>,
}

pub struct ReplyBudget {
    /// Answers per second per source; 0 disables the budget.
    rate: u32,
    burst: f32,
    buckets: Box<[Bucket]>,
    seed: u64,
}

impl ReplyBudget {
    /// `rate` answers per second per source address, with a burst of twice
    /// that; `seed` keys the bucket index so sources cannot pick collisions.
    pub fn new(rate: u32, seed: u64) -> Self {
        ReplyBudget {
            rate,
            burst: (rate as f32 * 2.0).max(1.0),
            buckets: vec![
                Bucket {
                    tokens: 0.0,
                    last: None
                };
                if rate == 0 { 0 } else { BUCKETS }
            ]
            .into_boxed_slice(),
            seed,
        }
    }

    fn index(&self, ip: IpAddr) -> usize {
        let bits: u128 = match ip {
            IpAddr::V4(v4) => u32::from(v4) as u128,
            // One budget per /64: a host owns a whole /64.
            IpAddr::V6(v6) => u128::from(v6) >> 64,
        };
        let mut h = self.seed ^ 0x9E37_79B9_7F4A_7C15;
        for part in [bits as u64, (bits >> 64) as u64] {
            h = (h ^ part).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            h ^= h >> 31;
        }
        (h as usize) % BUCKETS
    }

    /// Takes one answer from `ip`'s budget; false means stay silent.
    pub fn allow(&mut self, now: Instant, ip: IpAddr) -> bool {
        if self.rate == 0 {
            return true;
        }
        let i = self.index(ip);
        let (rate, burst) = (self.rate as f32, self.burst);
        let b = &mut self.buckets[i];
        b.tokens = match b.last {
            None => burst,
            Some(last) => {
                (b.tokens + now.saturating_duration_since(last).as_secs_f32() * rate).min(burst)
            }
        };
        b.last = Some(now);
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn budget_allows_a_burst_then_the_rate() {
        let t0 = Instant::now();
        let mut b = ReplyBudget::new(10, 1);
        let ip: IpAddr = "198.51.100.1".parse().unwrap();
        let allowed = (0..100).filter(|_| b.allow(t0, ip)).count();
        assert_eq!(allowed, 20);
        assert!(!b.allow(t0, ip));
        // Another source has its own budget.
        assert!(b.allow(t0, "198.51.100.2".parse().unwrap()));
        // A second later, ten more.
        let t1 = t0 + Duration::from_secs(1);
        assert_eq!((0..100).filter(|_| b.allow(t1, ip)).count(), 10);
    }

    #[test]
    fn zero_rate_turns_the_budget_off() {
        let t0 = Instant::now();
        let mut b = ReplyBudget::new(0, 1);
        assert!((0..10_000).all(|_| b.allow(t0, "198.51.100.1".parse().unwrap())));
    }
}
