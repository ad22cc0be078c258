//! The counted events operators alert on, as log lines with stable
//! `event` names: `auth_failure` and `allocation_refused`. One summary per
//! [`ALERT_EVERY`] when a count moved, not a line per request: a flood of
//! bad requests must not become a flood of log lines.
//!
//! The other stable names are logged where they happen: `listening`,
//! `reload`, `drain`, `store_unreachable` and `store_reachable`.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use super::control::Registry;
use super::stopped;
use crate::turn::Stats;

/// How often the counts are looked at.
pub(super) const ALERT_EVERY: Duration = Duration::from_secs(10);

/// What moved between two readings of the counters.
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct Moved {
    /// 401s to signed requests: unknown user or wrong password.
    pub bad_credentials: u64,
    /// 400s: integrity without the attributes it needs, and the like.
    pub bad_requests: u64,
    /// REST usernames past their expiry.
    pub expired: u64,
    /// Names an operator revoked (issue 19): refused on purpose, so not
    /// "bad credentials", which an operator reads as an attack or a typo.
    pub revoked: u64,
    /// 438s: routine (nonces age), shown beside the failures.
    pub stale_nonces: u64,
    /// Allocates answered 486.
    pub quota: u64,
}

impl Moved {
    pub(super) fn between(before: &Stats, now: &Stats) -> Moved {
        let d = |a: u64, b: u64| b.saturating_sub(a);
        let failed = |s: &Stats| s.auth_unauthorized.saturating_sub(s.auth_challenges);
        Moved {
            // Expired and revoked names are answered 401 and counted in
            // both.
            bad_credentials: d(failed(before), failed(now))
                .saturating_sub(d(before.auth_expired, now.auth_expired))
                .saturating_sub(d(before.auth_revoked, now.auth_revoked)),
            bad_requests: d(before.auth_bad_request, now.auth_bad_request),
            expired: d(before.auth_expired, now.auth_expired),
            revoked: d(before.auth_revoked, now.auth_revoked),
            stale_nonces: d(before.auth_stale_nonce, now.auth_stale_nonce),
            quota: d(before.quota_refusals, now.quota_refusals),
        }
    }

    fn log(&self, every: Duration) {
        let secs = every.as_secs();
        if self.bad_credentials + self.bad_requests + self.expired + self.revoked > 0 {
            tracing::warn!(
                event = "auth_failure",
                bad_credentials = self.bad_credentials,
                bad_requests = self.bad_requests,
                expired = self.expired,
                revoked = self.revoked,
                stale_nonces = self.stale_nonces,
                "authentication failures in the last {secs} s: {} bad credentials, {} bad requests, {} expired REST credentials, {} revoked",
                self.bad_credentials,
                self.bad_requests,
                self.expired,
                self.revoked,
            );
        }
        if self.quota > 0 {
            tracing::warn!(
                event = "allocation_refused",
                reason = "quota",
                count = self.quota,
                "allocations refused in the last {secs} s: {} over a quota (486)",
                self.quota,
            );
        }
    }
}

/// Logs what moved every `every`, until `stop`.
pub(super) async fn alert_loop(
    registry: Arc<Registry>,
    every: Duration,
    mut stop: watch::Receiver<bool>,
) {
    let mut last = registry.stats();
    loop {
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = stopped(&mut stop) => return,
        }
        let now = registry.stats();
        Moved::between(&last, &now).log(every);
        last = now;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenges_are_not_failures_and_expired_and_revoked_names_count_once() {
        let before = Stats {
            auth_unauthorized: 10,
            auth_challenges: 8,
            ..Stats::default()
        };
        let now = Stats {
            // 7 more 401s: 2 challenges, 1 expired REST name, 2 revoked
            // names, 2 bad MACs.
            auth_unauthorized: 17,
            auth_challenges: 10,
            auth_expired: 1,
            auth_revoked: 2,
            auth_stale_nonce: 4,
            auth_bad_request: 1,
            quota_refusals: 3,
            ..Stats::default()
        };
        assert_eq!(
            Moved::between(&before, &now),
            Moved {
                bad_credentials: 2,
                bad_requests: 1,
                expired: 1,
                revoked: 2,
                stale_nonces: 4,
                quota: 3,
            }
        );
        assert_eq!(Moved::between(&now, &now), Moved::default());
    }
}
