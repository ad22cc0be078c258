//! Per-source-address budget for unauthenticated answers (401, 438, 400 to
//! requests we do not serve, RFC 5780 answers): each is a reflection an
//! attacker can aim at a spoofed source, so their rate is capped.
//!
//! One budget serves every worker (F5: a budget per worker let N workers
//! answer N times as much, since SO_REUSEPORT spreads one source's ports
//! over all of them). It is a fixed table of buckets indexed by a keyed
//! hash of the IP (IPv6: of its /64): memory is bounded whatever the number
//! of sources, and without the random key nobody can pick addresses that
//! land in a victim's bucket. Each bucket is one atomic running GCRA (the
//! token bucket as a "theoretical arrival time"), so no lock is taken.

use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use sha2::{Digest, Sha256};

const BUCKETS: usize = 4096;

/// The budget; clones share one table (the TURN core and the RFC 5780
/// service hold the same one).
#[derive(Clone)]
pub struct ReplyBudget(Arc<Table>);

// By hand: the bucket key is secret (it keeps sources from aiming at one
// bucket), and 4096 counters say nothing.
impl std::fmt::Debug for ReplyBudget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReplyBudget")
            .field("interval_ns", &self.0.interval.load(Ordering::Relaxed))
            .field("tolerance_ns", &self.0.tolerance.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

struct Table {
    /// Nanoseconds between answers at the steady rate; 0: no budget.
    /// Atomic so a reload can change the rate under running workers.
    interval: AtomicU64,
    /// How far ahead of now a bucket may run: the burst, less one answer.
    tolerance: AtomicU64,
    /// Per bucket: when it is empty again, in ns since `epoch`.
    buckets: Box<[AtomicU64]>,
    key: [u8; 32],
    /// The first instant seen; times are kept relative to it.
    epoch: OnceLock<Instant>,
}

impl ReplyBudget {
    /// `rate` answers per second per source address, with a burst of twice
    /// that; `key` keys the bucket index (random in the shell).
    pub fn new(rate: u32, key: [u8; 32]) -> Self {
        let b = ReplyBudget(Arc::new(Table {
            interval: AtomicU64::new(0),
            tolerance: AtomicU64::new(0),
            buckets: (0..BUCKETS).map(|_| AtomicU64::new(0)).collect(),
            key,
            epoch: OnceLock::new(),
        }));
        b.set_rate(rate);
        b
    }

    /// A new rate (0: no budget) from now on; buckets keep their times.
    pub fn set_rate(&self, rate: u32) {
        let interval = if rate == 0 {
            0
        } else {
            1_000_000_000 / u64::from(rate)
        };
        let burst = (u64::from(rate) * 2).max(1);
        self.0
            .tolerance
            .store(interval * (burst - 1), Ordering::Relaxed);
        self.0.interval.store(interval, Ordering::Relaxed);
    }

    fn index(&self, ip: IpAddr) -> usize {
        let mut h = Sha256::new();
        h.update(self.0.key);
        match ip {
            IpAddr::V4(v4) => h.update(v4.octets()),
            // One budget per /64: a host owns a whole /64.
            IpAddr::V6(v6) => h.update(&v6.octets()[..8]),
        }
        let d = h.finalize();
        u16::from_be_bytes([d[0], d[1]]) as usize % BUCKETS
    }

    /// Takes one answer from `ip`'s budget; false means stay silent.
    pub fn allow(&self, now: Instant, ip: IpAddr) -> bool {
        let t = &self.0;
        let (interval, tolerance) = (
            t.interval.load(Ordering::Relaxed),
            t.tolerance.load(Ordering::Relaxed),
        );
        if interval == 0 {
            return true;
        }
        let epoch = *t.epoch.get_or_init(|| now);
        // +1 keeps 0 meaning "never used" apart from the first instant.
        let at = now.saturating_duration_since(epoch).as_nanos() as u64 + 1;
        let bucket = &t.buckets[self.index(ip)];
        let mut seen = bucket.load(Ordering::Relaxed);
        loop {
            let start = seen.max(at);
            if start - at > tolerance {
                return false;
            }
            match bucket.compare_exchange_weak(
                seen,
                start + interval,
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => return true,
                Err(current) => seen = current,
            }
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
        let b = ReplyBudget::new(10, [1; 32]);
        let ip: IpAddr = "198.51.100.1".parse().unwrap();
        let allowed = (0..100).filter(|_| b.allow(t0, ip)).count();
        assert_eq!(allowed, 20);
        assert!(!b.allow(t0, ip));
        // Another source has its own budget.
        assert!(b.allow(t0, "198.51.100.2".parse().unwrap()));
        // A second later, ten more.
        let t1 = t0 + Duration::from_secs(1);
        assert_eq!((0..100).filter(|_| b.allow(t1, ip)).count(), 10);
        // An IPv6 /64 is one source.
        let a: IpAddr = "2001:db8::1".parse().unwrap();
        let c: IpAddr = "2001:db8::ffff:2".parse().unwrap();
        let spent = (0..15).filter(|_| b.allow(t0, a)).count();
        assert_eq!(spent, 15);
        assert_eq!((0..100).filter(|_| b.allow(t0, c)).count(), 5);
    }

    #[test]
    fn threads_share_one_budget() {
        let t0 = Instant::now();
        let b = std::sync::Arc::new(ReplyBudget::new(10, [2; 32]));
        let ip: IpAddr = "198.51.100.1".parse().unwrap();
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let b = b.clone();
                std::thread::spawn(move || (0..100).filter(|_| b.allow(t0, ip)).count())
            })
            .collect();
        let total: usize = threads.into_iter().map(|t| t.join().unwrap()).sum();
        assert_eq!(total, 20, "four workers answer no more than one");
    }

    #[test]
    fn the_key_decides_which_sources_share_a_bucket() {
        let a = ReplyBudget::new(10, [3; 32]);
        let b = ReplyBudget::new(10, [4; 32]);
        let ips: Vec<IpAddr> = (0..64u8).map(|i| IpAddr::from([198, 51, 100, i])).collect();
        let differ = ips
            .iter()
            .filter(|ip| a.index(**ip) != b.index(**ip))
            .count();
        assert!(differ > 60, "{differ} of 64 moved with the key");
    }

    #[test]
    fn zero_rate_turns_the_budget_off() {
        let t0 = Instant::now();
        let b = ReplyBudget::new(0, [1; 32]);
        assert!((0..10_000).all(|_| b.allow(t0, "198.51.100.1".parse().unwrap())));
    }
}
