//! Fleet quotas (issue 15) in the core: an Allocate that passed the local
//! count asks the shell to count it fleet-wide ([`Request::ReserveQuota`])
//! and completes only when its relays are open AND the answer granted it.
//! A refusal ends it like the local refusal: relays closed, local count
//! given back, 486. The core never waits: the answer is one more input.

use std::time::Instant;

use super::{Ctx, Server};
use crate::stun::{Class, MessageType, Method};
use crate::turn::error::{ALLOCATION_QUOTA_REACHED, INSUFFICIENT_CAPACITY};
use crate::turn::quota::{Limits, QuotaAnswer, QuotaKey};
use crate::turn::{EndReason, Refusal, Request};

/// An allocation's place in the fleet's count.
#[derive(Debug, Clone, Copy)]
pub(crate) struct FleetHold {
    key: QuotaKey,
    /// The shell answered [`QuotaAnswer::Granted`].
    granted: bool,
}

impl Server {
    /// With fleet quotas on, asks the shell to count the allocation just
    /// started in `slot` (it already holds its local count).
    pub(super) fn ask_fleet(&mut self, slot: u32, limits: Limits) {
        if !self.shared.quotas.fleet.enabled() {
            return;
        }
        let a = self.allocation_at(slot);
        let key = QuotaKey {
            slot,
            generation: a.generation,
        };
        let request = Request::ReserveQuota {
            key,
            user: a.username.clone(),
            realm: a.realm.to_string(),
            limits: self.shared.quotas.fleet_limits(limits),
        };
        self.fleet_holds.insert(
            slot,
            FleetHold {
                key,
                granted: false,
            },
        );
        self.requests.push_back(request);
    }

    /// Whether the allocation in `slot` may become active as far as fleet
    /// quotas go: not asked, or granted.
    pub(super) fn quota_cleared(&self, slot: u32) -> bool {
        self.fleet_holds.get(&slot).map_or(true, |h| h.granted)
    }

    /// The allocation in `slot` ended: its fleet place, if it asked for
    /// one, goes back (even while the answer is outstanding).
    pub(super) fn release_fleet(&mut self, slot: u32) {
        if let Some(h) = self.fleet_holds.remove(&slot) {
            self.requests
                .push_back(Request::ReleaseQuota { key: h.key });
        }
    }

    /// The shell's answer to [`Request::ReserveQuota`] for `key`. An answer
    /// for an allocation that has ended (or was answered) changes nothing.
    pub fn quota_answered(&mut self, now: Instant, key: QuotaKey, answer: QuotaAnswer) {
        match self.fleet_holds.get(&key.slot) {
            Some(h) if h.key == key && !h.granted => {}
            _ => return,
        }
        let slot = key.slot;
        let a = self.allocation_at(slot);
        let Some(pending) = a.pending.as_ref() else {
            return;
        };
        let code = match answer {
            QuotaAnswer::Granted => {
                if let Some(h) = self.fleet_holds.get_mut(&slot) {
                    h.granted = true;
                }
                if self.allocation_at(slot).relays.iter().all(|r| r.open) {
                    self.activate(now, slot);
                }
                return;
            }
            QuotaAnswer::Exceeded => ALLOCATION_QUOTA_REACHED,
            QuotaAnswer::Busy => INSUFFICIENT_CAPACITY,
        };
        let ctx = Ctx {
            tuple: a.tuple,
            message_type: MessageType::new(Method::ALLOCATE, Class::Request),
            txid: pending.txid,
            fingerprint: pending.fingerprint,
        };
        let (signer, username) = (a.signer.clone(), a.username.clone());
        let reason = if code == ALLOCATION_QUOTA_REACHED {
            self.stats.quota_refusals += 1;
            Refusal::FleetQuota
        } else {
            Refusal::Capacity
        };
        self.refused(now, &ctx, &username, code, reason);
        // Still pending: it ends without an event, its relays closed and
        // its local count given back, as the local refusal leaves things.
        self.delete(now, slot, EndReason::Deleted);
        self.error(now, &ctx, code, &signer);
    }
}
