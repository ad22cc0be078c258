//! Allocation expiry: one heap entry per allocation (re-armed lazily),
//! plus the sweeps of answers, reservations and RFC 6062 bind deadlines
//! that ride on the same tick.

use std::cmp::Reverse;
use std::time::Instant;

use super::Server;
use crate::turn::EndReason;

impl Server {
    /// Puts allocation `slot`'s expiry on the timer heap if it falls due
    /// before the entry already armed (a shortened lifetime). Superseded
    /// entries stay until they pop, so the heap is rebuilt whenever they
    /// outnumber the allocations: memory stays O(allocations).
    pub(super) fn arm(&mut self, slot: u32) {
        let a = self.allocations[slot as usize].as_mut().expect("live slot");
        if a.armed.is_some_and(|at| at <= a.expires) {
            return;
        }
        a.armed = Some(a.expires);
        self.timers.push(Reverse((a.expires, slot, a.generation)));
        if self.timers.len() > 2 * self.by_tuple.len() + 64 {
            self.timers = self
                .allocations
                .iter()
                .enumerate()
                .filter_map(|(slot, a)| {
                    let a = a.as_ref()?;
                    Some(Reverse((a.armed?, slot as u32, a.generation)))
                })
                .collect();
        }
    }

    /// Entries on the allocation timer heap (tests: it must stay bounded).
    pub fn timer_entries(&self) -> usize {
        self.timers.len()
    }

    /// When [`Server::handle_timeout`] should next run.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let allocation = self.timers.peek().map(|Reverse((at, _, _))| *at);
        let connection = self.conn_timers.peek().map(|Reverse((at, _, _))| *at);
        match (allocation, connection) {
            (Some(a), Some(c)) => Some(a.min(c)),
            (a, c) => a.or(c),
        }
    }

    /// Expires allocations whose time has come. An allocation's entry
    /// that pops before its (extended) expiry is pushed again for it; an
    /// entry that is no longer the allocation's armed one is dropped.
    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some(&Reverse((at, slot, generation))) = self.timers.peek() {
            if at > now {
                break;
            }
            self.timers.pop();
            let Some(a) = self.allocations[slot as usize].as_mut() else {
                continue;
            };
            if a.generation != generation || a.armed != Some(at) {
                continue;
            }
            if a.expires <= now {
                self.delete(now, slot, EndReason::Expired);
            } else {
                a.armed = Some(a.expires);
                self.timers.push(Reverse((a.expires, slot, generation)));
            }
        }
        self.end_revoked(now);
        self.cache.expire(now);
        self.expire_reservations(now);
        self.expire_connections(now);
    }

    /// Returns ports held for RESERVATION-TOKENs nobody claimed in time.
    pub(super) fn expire_reservations(&self, now: Instant) {
        let mut reservations = self.shared.reservations();
        if reservations.is_empty() {
            return;
        }
        let mut ports = self.shared.ports();
        reservations.retain(|_, r| {
            let keep = r.expires > now;
            if !keep {
                ports.release(r.addr.port());
            }
            keep
        });
    }
}
