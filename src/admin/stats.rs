//! `GET /api/v1/stats`: this node's live totals and their last 15 minutes,
//! one sample every 2 s, as JSON for the console's chart (`/metrics` text
//! is awkward to read from a page, and a page opened late still wants the
//! history).
//!
//! A task samples the workers' counters; the history is a ring of at most
//! [`KEEP`] samples, so it costs the same however long the server runs.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State as Extract;
use axum::Json;
use serde::Serialize;
use serde_json::json;

use super::auth::guard;
use super::routes::Reply;
use super::{Caller, Control, State};
use crate::turn::Stats;

/// How often a sample is taken.
pub(super) const INTERVAL: Duration = Duration::from_secs(2);
/// 15 minutes of samples.
pub(super) const KEEP: usize = 450;

/// One interval: the state at its end and what happened during it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub(super) struct Sample {
    /// Unix seconds at the end of the interval.
    pub(super) t: u64,
    pub(super) allocations: u32,
    /// Application bits per second relayed during the interval.
    pub(super) to_peer_bps: u64,
    pub(super) to_client_bps: u64,
    /// Refused authentications during the interval (see [`auth_failures`]).
    pub(super) auth_failures: u64,
    /// Allocates refused 486 during the interval.
    pub(super) quota_refusals: u64,
}

/// Refused authentications: 401s to requests that carried credentials
/// (the first, credential-less 401 is every client's challenge), and
/// 400s. A 438 is a nonce turning over, not a refusal.
pub(super) fn auth_failures(s: &Stats) -> u64 {
    s.auth_unauthorized.saturating_sub(s.auth_challenges) + s.auth_bad_request
}

/// The ring of samples and the counters the next one is measured from.
#[derive(Debug, Default)]
pub(super) struct History {
    samples: VecDeque<Sample>,
    last: Option<(Stats, u64)>,
}

impl History {
    /// Adds the sample ending at `now_ms` (Unix ms) with counters `st`.
    /// The first call only sets the baseline.
    pub(super) fn record(&mut self, st: Stats, allocations: u32, now_ms: u64) {
        if let Some((prev, prev_ms)) = self.last.replace((st, now_ms)) {
            let ms = now_ms.saturating_sub(prev_ms).max(1);
            let bps = |now: u64, then: u64| now.saturating_sub(then) * 8 * 1000 / ms;
            if self.samples.len() == KEEP {
                self.samples.pop_front();
            }
            self.samples.push_back(Sample {
                t: now_ms / 1000,
                allocations,
                to_peer_bps: bps(st.to_peer.bytes, prev.to_peer.bytes),
                to_client_bps: bps(st.to_client.bytes, prev.to_client.bytes),
                auth_failures: auth_failures(&st).saturating_sub(auth_failures(&prev)),
                quota_refusals: st.quota_refusals.saturating_sub(prev.quota_refusals),
            });
        }
    }

    pub(super) fn samples(&self) -> impl Iterator<Item = &Sample> {
        self.samples.iter()
    }
}

/// Samples `control` every [`INTERVAL`] into `history`, until the history
/// has no other owner (the admin API is gone).
pub(super) async fn sample(control: Arc<dyn Control>, history: std::sync::Weak<Mutex<History>>) {
    let mut tick = tokio::time::interval(INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(h) = history.upgrade() else { return };
        let (st, n) = (control.stats(), control.allocations());
        h.lock().unwrap_or_else(|e| e.into_inner()).record(
            st,
            n,
            crate::store::unix_now_ms().max(0) as u64,
        );
    }
}

pub(super) async fn stats(Extract(s): Extract<State>, caller: Caller) -> Reply {
    guard(&s, &caller, None)?;
    let st = s.0.control.stats();
    let allocations = s.0.control.allocations();
    let history: Vec<Sample> = {
        let h = s.0.history.lock().unwrap_or_else(|e| e.into_inner());
        h.samples().copied().collect()
    };
    let now = crate::store::unix_now().max(0) as u64;
    // The live state with the rates of the newest interval.
    let current = history.last().map_or(
        Sample {
            t: now,
            allocations,
            to_peer_bps: 0,
            to_client_bps: 0,
            auth_failures: 0,
            quota_refusals: 0,
        },
        |last| Sample {
            t: now,
            allocations,
            ..*last
        },
    );
    Ok(Json(json!({
        "node": s.0.config.node_name,
        "interval_s": INTERVAL.as_secs(),
        "now": now,
        "current": current,
        "history": history,
        "totals": {
            "allocations_created": st.allocations_created,
            "auth_failures": auth_failures(&st),
            "quota_refusals": st.quota_refusals,
            "to_peer_bytes": st.to_peer.bytes,
            "to_client_bytes": st.to_client.bytes,
        },
    })))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counters(bytes_up: u64, bytes_down: u64, unauthorized: u64, challenges: u64) -> Stats {
        let mut s = Stats::default();
        s.to_peer.bytes = bytes_up;
        s.to_client.bytes = bytes_down;
        s.auth_unauthorized = unauthorized;
        s.auth_challenges = challenges;
        s
    }

    #[test]
    fn a_sample_holds_the_rates_and_counts_of_its_interval() {
        let mut h = History::default();
        h.record(counters(1_000, 0, 10, 4), 1, 10_000);
        assert_eq!(h.samples().count(), 0, "the first call is the baseline");
        let mut st = counters(251_000, 50_000, 13, 5);
        st.quota_refusals = 2;
        h.record(st, 3, 12_000);
        let s = *h.samples().next().unwrap();
        assert_eq!(
            s,
            Sample {
                t: 12,
                allocations: 3,
                to_peer_bps: 1_000_000, // 250,000 B in 2 s
                to_client_bps: 200_000,
                auth_failures: 2, // 3 more 401s, one of them a challenge
                quota_refusals: 2,
            }
        );
    }

    #[test]
    fn the_history_keeps_the_last_15_minutes_only() {
        let mut h = History::default();
        for i in 0..(KEEP as u64 + 100) {
            h.record(Stats::default(), 0, i * 2_000);
        }
        let t: Vec<u64> = h.samples().map(|s| s.t).collect();
        assert_eq!(t.len(), KEEP);
        assert_eq!(*t.last().unwrap(), (KEEP as u64 + 99) * 2);
        assert_eq!(t[0], (100) * 2, "the oldest were dropped");
    }

    #[test]
    fn counters_that_go_back_give_zero_not_a_wrap() {
        let mut h = History::default();
        h.record(counters(5_000, 5_000, 9, 0), 0, 0);
        h.record(counters(0, 0, 0, 0), 0, 2_000);
        let s = *h.samples().next().unwrap();
        assert_eq!((s.to_peer_bps, s.to_client_bps, s.auth_failures), (0, 0, 0));
    }
}
