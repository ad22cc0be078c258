//! How many self-test credentials are minted: a token bucket per source
//! address (an IPv6 /64 counts as one) and one for the whole server, each
//! holding a minute's worth and refilling over a minute. The per-source
//! table is bounded: when it is full, buckets that have refilled (the same
//! as absent) go first, then the least recently used.

use std::collections::HashMap;
use std::net::IpAddr;
#[cfg(test)]
use std::time::Duration;
use std::time::Instant;

/// Sources tracked at once.
pub(super) const MAX_SOURCES: usize = 4096;

/// Why a credential was refused, and in how many seconds one would be given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Refusal {
    /// This source's share is used up.
    Source { per_minute: u32, retry_s: u64 },
    /// The server's total is used up.
    Total { per_minute: u32, retry_s: u64 },
}

impl Refusal {
    /// The page shows this sentence as it is.
    pub(super) fn message(&self) -> String {
        match *self {
            Refusal::Source {
                per_minute,
                retry_s,
            } => format!(
                "Too many self-tests from your address: {per_minute} credentials per minute. Try again in {retry_s} s."
            ),
            Refusal::Total {
                per_minute,
                retry_s,
            } => format!(
                "Too many self-tests on this server right now: {per_minute} credentials per minute in all. Try again in {retry_s} s."
            ),
        }
    }

    pub(super) fn retry_s(&self) -> u64 {
        match *self {
            Refusal::Source { retry_s, .. } | Refusal::Total { retry_s, .. } => retry_s,
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

impl Bucket {
    fn full(capacity: u32, now: Instant) -> Self {
        Bucket {
            tokens: capacity as f64,
            at: now,
        }
    }

    /// Refills for the time since the last look.
    fn refill(&mut self, capacity: u32, now: Instant) {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.tokens = (self.tokens + elapsed * capacity as f64 / 60.0).min(capacity as f64);
        self.at = now;
    }

    /// Seconds until one token is there (at least 1).
    fn wait_s(&self, capacity: u32) -> u64 {
        ((1.0 - self.tokens).max(0.0) * 60.0 / capacity as f64)
            .ceil()
            .max(1.0) as u64
    }
}

/// The two limits and their buckets.
#[derive(Debug)]
pub(super) struct Limiter {
    per_source: u32,
    total: u32,
    sources: HashMap<IpAddr, Bucket>,
    all: Bucket,
}

impl Limiter {
    /// `per_source` and `total` credentials per minute (both at least 1).
    pub(super) fn new(per_source: u32, total: u32, now: Instant) -> Self {
        Limiter {
            per_source: per_source.max(1),
            total: total.max(1),
            sources: HashMap::new(),
            all: Bucket::full(total.max(1), now),
        }
    }

    /// Takes one credential for `ip` at `now`, or says which limit is in
    /// the way. A refused request takes nothing from either bucket.
    pub(super) fn take(&mut self, ip: IpAddr, now: Instant) -> Result<(), Refusal> {
        let key = crate::turn::policy::source_key(ip);
        if !self.sources.contains_key(&key) && self.sources.len() >= MAX_SOURCES {
            self.make_room(now);
        }
        let per_source = self.per_source;
        let mine = self
            .sources
            .entry(key)
            .or_insert_with(|| Bucket::full(per_source, now));
        mine.refill(per_source, now);
        if mine.tokens < 1.0 {
            return Err(Refusal::Source {
                per_minute: per_source,
                retry_s: mine.wait_s(per_source),
            });
        }
        self.all.refill(self.total, now);
        if self.all.tokens < 1.0 {
            return Err(Refusal::Total {
                per_minute: self.total,
                retry_s: self.all.wait_s(self.total),
            });
        }
        mine.tokens -= 1.0;
        self.all.tokens -= 1.0;
        Ok(())
    }

    /// Drops refilled buckets; if none was, the least recently used one.
    fn make_room(&mut self, now: Instant) {
        let per_source = self.per_source;
        self.sources.retain(|_, b| {
            let mut b = *b;
            b.refill(per_source, now);
            b.tokens < per_source as f64
        });
        if self.sources.len() >= MAX_SOURCES {
            if let Some(oldest) = self
                .sources
                .iter()
                .min_by_key(|(_, b)| b.at)
                .map(|(k, _)| *k)
            {
                self.sources.remove(&oldest);
            }
        }
    }

    /// Sources tracked now.
    #[cfg(test)]
    fn tracked(&self) -> usize {
        self.sources.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn a_source_gets_its_share_per_minute_then_a_retry_time() {
        let t0 = Instant::now();
        let mut l = Limiter::new(3, 100, t0);
        for _ in 0..3 {
            assert_eq!(l.take(ip("192.0.2.1"), t0), Ok(()));
        }
        let refused = l.take(ip("192.0.2.1"), t0).unwrap_err();
        // One credential comes back every 20 s.
        assert_eq!(
            refused,
            Refusal::Source {
                per_minute: 3,
                retry_s: 20
            }
        );
        assert_eq!(
            refused.message(),
            "Too many self-tests from your address: 3 credentials per minute. Try again in 20 s."
        );
        // Another source is not held back; the same one is after 20 s.
        assert_eq!(l.take(ip("192.0.2.2"), t0), Ok(()));
        let later = t0 + Duration::from_secs(20);
        assert_eq!(l.take(ip("192.0.2.1"), later), Ok(()));
        assert!(l.take(ip("192.0.2.1"), later).is_err());
    }

    #[test]
    fn an_ipv6_slash_64_is_one_source() {
        let t0 = Instant::now();
        let mut l = Limiter::new(2, 100, t0);
        assert_eq!(l.take(ip("2001:db8:1:2::a"), t0), Ok(()));
        assert_eq!(l.take(ip("2001:db8:1:2:ffff::b"), t0), Ok(()));
        assert!(l.take(ip("2001:db8:1:2::c"), t0).is_err());
        assert_eq!(l.take(ip("2001:db8:1:3::a"), t0), Ok(()));
    }

    #[test]
    fn the_total_holds_across_sources_and_refusals_take_nothing() {
        let t0 = Instant::now();
        let mut l = Limiter::new(2, 3, t0);
        assert_eq!(l.take(ip("192.0.2.1"), t0), Ok(()));
        assert_eq!(l.take(ip("192.0.2.2"), t0), Ok(()));
        assert_eq!(l.take(ip("192.0.2.3"), t0), Ok(()));
        let refused = l.take(ip("192.0.2.4"), t0).unwrap_err();
        assert_eq!(
            refused,
            Refusal::Total {
                per_minute: 3,
                retry_s: 20
            }
        );
        assert!(refused
            .message()
            .contains("3 credentials per minute in all"));
        // 192.0.2.4 was refused by the total, so its own bucket is whole:
        // after 20 s it gets one at once.
        let later = t0 + Duration::from_secs(20);
        assert_eq!(l.take(ip("192.0.2.4"), later), Ok(()));
    }

    #[test]
    fn the_source_table_stays_bounded() {
        let t0 = Instant::now();
        let mut l = Limiter::new(1, u32::MAX, t0);
        for i in 0..(MAX_SOURCES as u32 + 50) {
            let a = IpAddr::from(std::net::Ipv4Addr::from(0x0a00_0000 + i));
            let _ = l.take(a, t0 + Duration::from_millis(u64::from(i)));
            assert!(l.tracked() <= MAX_SOURCES);
        }
        assert_eq!(l.tracked(), MAX_SOURCES);
        // The newest source is still held to its share.
        let last = IpAddr::from(std::net::Ipv4Addr::from(
            0x0a00_0000 + MAX_SOURCES as u32 + 49,
        ));
        assert!(l.take(last, t0 + Duration::from_secs(1)).is_err());
    }
}
