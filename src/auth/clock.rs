//! The Unix clock as a value. REST and OAuth expiry are wall-clock times,
//! while the core only sees injected instants: the shell reads the OS clock
//! once and hands over an instant with the Unix second it was, so nothing
//! in the core reads the OS clock.

use std::time::Instant;

/// An instant and the Unix second it was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UnixClock {
    /// The instant the Unix time was read.
    pub at: Instant,
    /// The Unix second at `at`.
    pub unix: u64,
}

impl UnixClock {
    /// Pairs an instant with the Unix second it was (read once by the shell).
    pub fn new(at: Instant, unix: u64) -> Self {
        UnixClock { at, unix }
    }

    /// The Unix second at `now` (which may lie before `at`).
    pub fn unix_at(&self, now: Instant) -> u64 {
        match now.checked_duration_since(self.at) {
            Some(d) => self.unix + d.as_secs(),
            None => self
                .unix
                .saturating_sub(self.at.duration_since(now).as_secs()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn unix_time_follows_the_instant_both_ways() {
        let t0 = Instant::now() + Duration::from_secs(100);
        let c = UnixClock::new(t0, 1_700_000_000);
        assert_eq!(c.unix_at(t0), 1_700_000_000);
        assert_eq!(c.unix_at(t0 + Duration::from_millis(2_500)), 1_700_000_002);
        assert_eq!(c.unix_at(t0 - Duration::from_secs(30)), 1_699_999_970);
        // Never below the epoch.
        assert_eq!(
            UnixClock::new(t0, 10).unix_at(t0 - Duration::from_secs(30)),
            0
        );
    }
}
