//! Revocation's second half (the first: requests of a revoked name get
//! 401, `mod.rs`): when a new credential snapshot is swapped in, the next
//! timer tick (at most a second away, the shell's) ends the allocations
//! whose owner it revokes. An OAuth allocation's owner is its kid, a REST
//! one's the whole REST username, so revoking either ends them; revoking
//! a user also ends the REST allocations that name it.

use std::time::Instant;

use super::Server;
use crate::turn::EndReason;

impl Server {
    /// Ends every allocation whose owner the current snapshot revokes, once
    /// per snapshot: a tick without a new one costs one atomic load.
    pub(super) fn end_revoked(&mut self, now: Instant) {
        // The generation is read before the snapshot: a swap in between
        // is seen again on the next tick.
        let generation = self.shared.auth.generation();
        if generation == self.directory_seen {
            return;
        }
        self.directory_seen = generation;
        let auth = &self.shared.auth;
        let dirs: Vec<_> = auth
            .realms()
            .names()
            .filter_map(|r| auth.directory_in(r).map(|d| (r.clone(), d)))
            .filter(|(_, d)| !d.revoked.is_empty())
            .collect();
        if dirs.is_empty() {
            return;
        }
        let unix = auth.unix_time(now);
        let separator = auth.rest_separator();
        // Each allocation is looked up in its own realm's revocations.
        let doomed: Vec<u32> = self
            .allocations
            .iter()
            .enumerate()
            .filter_map(|(slot, a)| {
                let a = a.as_ref()?;
                let (_, dir) = dirs.iter().find(|(r, _)| *r == a.realm)?;
                dir.is_revoked(&a.username, unix, separator)
                    .then_some(slot as u32)
            })
            .collect();
        for slot in doomed {
            self.delete(now, slot, EndReason::Revoked);
        }
    }
}
