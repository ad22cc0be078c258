//! The admin API's bad-token lockout, per source address (an IPv6 /64
//! counts as one, as for the TURN 401 budget).
//!
//! Only requests that present a token which does not verify count, and
//! only distinct tokens: a guesser needs a new token per try, while a
//! client that repeats one stale token (Prometheus after a rotation) is not
//! guessing and keeps getting a 401 that says what is wrong. Five distinct
//! bad tokens within 30 s make that source's bad tokens answer 429 for 30 s.
//! Valid tokens never reach this table: they are always served.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

/// Distinct bad tokens from one source before it is locked out.
pub(super) const LOCKOUT_AFTER: usize = 5;
pub(super) const LOCKOUT_FOR: Duration = Duration::from_secs(30);
/// Sources tracked at once; past this, new sources are not recorded (the
/// table stays bounded; valid tokens are unaffected either way).
const MAX_SOURCES: usize = 4096;

#[derive(Default)]
pub(super) struct Lockout {
    /// Source → (fingerprints of its distinct bad tokens, last one's time).
    sources: HashMap<u128, (Vec<[u8; 8]>, Instant)>,
}

fn source(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(v4) => u32::from(v4).into(),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => u32::from(v4).into(),
            None => (u128::from(v6) >> 64) | (1 << 127),
        },
    }
}

impl Lockout {
    /// Records a bad `token` from `ip`; true when the source is (now or
    /// still) locked out and should get 429 rather than 401.
    pub(super) fn bad_token(&mut self, ip: IpAddr, token: &str, now: Instant) -> bool {
        self.sources
            .retain(|_, (_, at)| now.saturating_duration_since(*at) < LOCKOUT_FOR);
        let key = source(ip);
        if !self.sources.contains_key(&key) && self.sources.len() >= MAX_SOURCES {
            return false;
        }
        let (seen, at) = self.sources.entry(key).or_insert((Vec::new(), now));
        if seen.len() >= LOCKOUT_AFTER {
            // Locked: the lockout runs 30 s from the fifth bad token and
            // is not renewed by more of them.
            return true;
        }
        let digest = Sha256::digest(token.as_bytes());
        let mut fp = [0u8; 8];
        fp.copy_from_slice(&digest[..8]);
        if !seen.contains(&fp) {
            seen.push(fp);
            *at = now;
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 0, 1));

    #[test]
    fn five_distinct_bad_tokens_lock_out_for_30_s() {
        let (mut l, t0) = (Lockout::default(), Instant::now());
        for i in 0..LOCKOUT_AFTER {
            assert!(!l.bad_token(A, &format!("guess-{i}"), t0), "try {i}");
        }
        assert!(l.bad_token(A, "guess-5", t0));
        assert!(l.bad_token(A, "guess-0", t0 + Duration::from_secs(29)));
        let other: IpAddr = "127.0.0.2".parse().unwrap();
        assert!(!l.bad_token(other, "guess-0", t0), "per source");
        assert!(!l.bad_token(A, "guess-6", t0 + LOCKOUT_FOR));
    }

    #[test]
    fn one_stale_token_repeated_never_locks_out() {
        let (mut l, t0) = (Lockout::default(), Instant::now());
        for _ in 0..100 {
            assert!(!l.bad_token(A, "expired.jwt.token", t0));
        }
    }

    #[test]
    fn an_ipv6_slash_64_is_one_source_and_the_table_is_bounded() {
        let (mut l, t0) = (Lockout::default(), Instant::now());
        for i in 0..LOCKOUT_AFTER {
            let ip: IpAddr = format!("2001:db8::{i:x}").parse().unwrap();
            l.bad_token(ip, &format!("g{i}"), t0);
        }
        assert!(l.bad_token("2001:db8::ffff".parse().unwrap(), "g9", t0));
        for i in 0..2 * MAX_SOURCES as u32 {
            l.bad_token(IpAddr::from(((i + 1) << 8).to_be_bytes()), "x", t0);
        }
        assert_eq!(l.sources.len(), MAX_SOURCES);
    }
}
