//! Counters the allocation slots bump and the reporter reads, all on the
//! load generator's one thread.

use std::cell::{Cell, RefCell};
use std::time::Duration;

/// Where in an allocation's life something failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Phase {
    Socket,
    Allocate,
    Permission,
    Channel,
    Refresh,
    Send,
    Delete,
}

impl Phase {
    pub(super) const ALL: [Phase; 7] = [
        Phase::Socket,
        Phase::Allocate,
        Phase::Permission,
        Phase::Channel,
        Phase::Refresh,
        Phase::Send,
        Phase::Delete,
    ];

    pub(super) fn name(self) -> &'static str {
        match self {
            Phase::Socket => "socket",
            Phase::Allocate => "allocate",
            Phase::Permission => "permission",
            Phase::Channel => "channel",
            Phase::Refresh => "refresh",
            Phase::Send => "send",
            Phase::Delete => "delete",
        }
    }
}

/// Counts over one report interval (or, summed, over the run).
#[derive(Debug, Default, Clone)]
pub(super) struct Window {
    pub allocated: u64,
    pub deleted: u64,
    pub errors: u64,
    pub sent: u64,
    pub echoed: u64,
    pub lost: u64,
    /// Round-trip times in microseconds (capped in number per interval).
    pub rtts_us: Vec<u32>,
}

impl Window {
    /// Adds `w`'s counts (not its samples).
    pub(super) fn add(&mut self, w: &Window) {
        self.allocated += w.allocated;
        self.deleted += w.deleted;
        self.errors += w.errors;
        self.sent += w.sent;
        self.echoed += w.echoed;
        self.lost += w.lost;
    }
}

/// At most this many RTT samples per interval: plenty for a p99.
const MAX_SAMPLES: usize = 2_000_000;
/// Error messages printed as they happen; later ones are only counted.
const MAX_PRINTED: u32 = 20;

#[derive(Default)]
pub(super) struct Stats {
    /// Allocations granted and not yet deleted.
    pub live: Cell<u64>,
    window: RefCell<Window>,
    by_phase: RefCell<[u64; Phase::ALL.len()]>,
    printed: Cell<u32>,
}

impl Stats {
    pub(super) fn allocated(&self) {
        self.live.set(self.live.get() + 1);
        self.window.borrow_mut().allocated += 1;
    }

    /// The allocation is gone from this side: deleted, or given up on.
    pub(super) fn released(&self, deleted: bool) {
        self.live.set(self.live.get().saturating_sub(1));
        if deleted {
            self.window.borrow_mut().deleted += 1;
        }
    }

    pub(super) fn sent(&self) {
        self.window.borrow_mut().sent += 1;
    }

    pub(super) fn echoed(&self, rtt_us: u32) {
        let mut w = self.window.borrow_mut();
        w.echoed += 1;
        if w.rtts_us.len() < MAX_SAMPLES {
            w.rtts_us.push(rtt_us);
        }
    }

    pub(super) fn lost(&self) {
        self.window.borrow_mut().lost += 1;
    }

    /// Counts an error; the first few are printed on stderr as they happen.
    pub(super) fn error(
        &self,
        phase: Phase,
        slot: usize,
        at: Duration,
        what: &dyn std::fmt::Display,
    ) {
        self.window.borrow_mut().errors += 1;
        self.by_phase.borrow_mut()[phase as usize] += 1;
        let n = self.printed.get();
        if n < MAX_PRINTED {
            self.printed.set(n + 1);
            eprintln!(
                "soak: error at {:.1} s, slot {slot}, {}: {what}{}",
                at.as_secs_f64(),
                phase.name(),
                if n + 1 == MAX_PRINTED {
                    " (further errors are only counted)"
                } else {
                    ""
                }
            );
        }
    }

    /// The interval's counts, starting a new interval.
    pub(super) fn take_window(&self) -> Window {
        std::mem::take(&mut *self.window.borrow_mut())
    }

    /// Errors per phase over the run, the non-zero ones.
    pub(super) fn errors_by_phase(&self) -> Vec<(&'static str, u64)> {
        let by = self.by_phase.borrow();
        Phase::ALL
            .iter()
            .map(|p| (p.name(), by[*p as usize]))
            .filter(|(_, n)| *n > 0)
            .collect()
    }
}
