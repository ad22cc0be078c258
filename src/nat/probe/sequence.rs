//! What runs after what: the order of the tests of a [`Probe`] (see the
//! module doc of `probe`), the §4.6 lifetime search, and the verdict once
//! the last test is over.

use std::time::{Duration, Instant};

use super::{LifetimeSearch, Probe, Search};
use crate::nat::report::{Behaviour, Lifetime, ProbeError, Report, Test};

impl Probe {
    pub(super) fn after_filtering(&mut self, now: Instant) {
        if self.nat() {
            self.begin(Test::MappingAlternateIp, now);
        } else {
            // §4.3: "the client knows that it is not NATed and the effective
            // mapping will be Endpoint-Independent."
            self.found.mapping = Some(Behaviour::EndpointIndependent);
            self.after_mapping(now);
        }
    }

    pub(super) fn after_mapping(&mut self, now: Instant) {
        if self.options.hairpinning && self.nat() {
            self.begin(Test::Hairpinning, now);
        } else {
            self.after_hairpinning(now);
        }
    }

    pub(super) fn after_hairpinning(&mut self, now: Instant) {
        if self.options.large_packet_padding.is_some() {
            self.begin(Test::LargePacket, now);
        } else {
            self.after_large_packet(now);
        }
    }

    pub(super) fn after_large_packet(&mut self, now: Instant) {
        let Some(bounds) = self.options.lifetime else {
            return self.finish();
        };
        // A zero resolution would bisect forever.
        let bounds = LifetimeSearch {
            resolution: bounds.resolution.max(Duration::from_millis(1)),
            max: bounds.max.max(Duration::from_millis(1)),
            first: bounds.first.max(Duration::from_millis(1)),
        };
        self.search = Some(Search {
            bounds,
            lo: Duration::ZERO,
            hi: None,
            trial: bounds.first.min(bounds.max),
            port: 0,
        });
        self.begin(Test::LifetimeRefresh, now);
    }

    /// One §4.6 trial is over: double, bisect, or stop. §4.6: "the client
    /// must resend a binding request from the original source port before
    /// beginning a second test with a different value of T."
    pub(super) fn lifetime_trial(&mut self, alive: bool, now: Instant) {
        let Some(s) = self.search.as_mut() else {
            return self.finish();
        };
        if alive {
            s.lo = s.trial;
        } else {
            s.hi = Some(s.trial);
        }
        let next = match s.hi {
            None if s.lo >= s.bounds.max => None,
            None => Some((s.trial * 2).min(s.bounds.max)),
            Some(hi) if hi.saturating_sub(s.lo) <= s.bounds.resolution => None,
            Some(hi) => Some(s.lo + (hi - s.lo) / 2),
        };
        match next {
            Some(t) => {
                s.trial = t;
                self.begin(Test::LifetimeRefresh, now);
            }
            None => {
                self.found.lifetime = Some(Lifetime {
                    at_least: s.lo,
                    less_than: s.hi,
                });
                self.finish();
            }
        }
    }

    pub(super) fn finish(&mut self) {
        let f = &self.found;
        let (Some(mapped), Some(other), Some(mapping), Some(filtering)) =
            (f.mapped, f.other, f.mapping, f.filtering)
        else {
            // Only reachable after test I and the filtering tests succeeded.
            return self.fail(ProbeError::NoAnswer {
                test: Test::Connectivity,
                to: self.server,
            });
        };
        let report = Report {
            server: self.server,
            local: self.local,
            mapped,
            other_address: other,
            response_origin: f.origin,
            nat: mapped != self.local,
            mapping,
            filtering,
            mapped_alternate_ip: f.mapped2,
            mapped_alternate_address: f.mapped3,
            hairpinning: f.hairpin,
            large_packets: f.large,
            alg: f.mapped_plain.map(|plain| plain != mapped),
            lifetime: f.lifetime,
            tests: std::mem::take(&mut self.records),
        };
        self.verdict = Some(Ok(report));
        self.tx = None;
        self.wait_until = None;
        self.queue.clear();
    }
}
