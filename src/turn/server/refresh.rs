//! Whose allocation a request acts on (437, 441), the lifetime rule, and
//! Refresh (RFC 8656 §7.3).

use std::time::{Duration, Instant};

use super::{Answer, Ctx, Server};
use crate::auth::{Authenticated, Origin};
use crate::stun::attributes::AttributeType;
use crate::stun::Message;
use crate::turn::attributes::{self as attr, Lifetime, RequestedAddressFamily};
use crate::turn::error::{
    ALLOCATION_MISMATCH, BAD_REQUEST, PEER_ADDRESS_FAMILY_MISMATCH, WRONG_CREDENTIALS,
};
use crate::turn::{EndReason, Event};

impl Server {
    /// The allocation of this 5-tuple, checked against the request's user:
    /// 437 without one, 441 for another user (RFC 8656 §5: requests after
    /// the Allocate use the credentials it was created with).
    pub(in crate::turn) fn own_allocation(
        &mut self,
        now: Instant,
        ctx: &Ctx,
        auth: &Authenticated,
    ) -> Option<u32> {
        let slot = self.by_tuple.get(&ctx.tuple).copied();
        let Some(slot) = slot.filter(|s| {
            self.allocations[*s as usize]
                .as_ref()
                .is_some_and(|a| a.is_active())
        }) else {
            // RFC 8656 §5: a request that needs an allocation, on a 5-tuple
            // without one, gets 437 (Allocation Mismatch).
            self.error(now, ctx, ALLOCATION_MISMATCH, &auth.signer);
            return None;
        };
        let a = self.allocations[slot as usize].as_mut().expect("live slot");
        // OAuth clients may name another key id with each new token: the
        // allocation belongs to whoever holds a valid token.
        let oauth =
            matches!(a.origin, Origin::OAuth { .. }) && matches!(auth.origin, Origin::OAuth { .. });
        if a.username != auth.username && !oauth {
            self.error(now, ctx, WRONG_CREDENTIALS, &auth.signer);
            return None;
        }
        a.signer = auth.signer.clone();
        // A new token brings its own lifetime.
        if oauth {
            a.origin = auth.origin;
        }
        Some(slot)
    }

    /// The granted lifetime (RFC 8656, the "desired lifetime"): zero if
    /// asked, else "the minimum of the client's requested lifetime and the
    /// server's maximum allowed lifetime", but never below the default. A
    /// malformed LIFETIME is a 400.
    pub(super) fn lifetime(&self, msg: &Message<'_>) -> Result<Duration, u16> {
        let cfg = self.shared.config();
        match attr::get::<Lifetime>(msg)? {
            None => Ok(cfg.default_lifetime),
            Some(Lifetime(asked)) if asked.is_zero() => Ok(Duration::ZERO),
            Some(Lifetime(asked)) => Ok(asked.min(cfg.max_lifetime).max(cfg.default_lifetime)),
        }
    }

    /// A self-test credential's allocation (issue 20) lives no longer
    /// than the credential: a public page must not hand out a relay for
    /// longer than the 60 s it promised. Other lifetimes pass unchanged.
    pub(super) fn capped_lifetime(
        &self,
        now: Instant,
        auth: &Authenticated,
        lifetime: Duration,
    ) -> Duration {
        let Origin::Rest { expires } = auth.origin else {
            return lifetime;
        };
        if lifetime.is_zero() || !self.shared.auth.is_selftest(&auth.username) {
            return lifetime;
        }
        let left = expires.saturating_sub(self.shared.auth.unix_time(now));
        lifetime.min(Duration::from_secs(left.max(1)))
    }

    pub(super) fn refresh(
        &mut self,
        now: Instant,
        ctx: &Ctx,
        msg: &Message<'_>,
        auth: Authenticated,
    ) {
        let Some(slot) = self.own_allocation(now, ctx, &auth) else {
            return;
        };
        let cap = |lifetime| self.capped_lifetime(now, &auth, lifetime);
        let lifetime = self.lifetime(msg).map(cap);
        let signer = auth.signer;
        // RFC 8656 §7.3: "If the server receives a Refresh Request with a
        // REQUESTED-ADDRESS-FAMILY attribute and the attribute value does
        // not match the address family of the allocation, the server MUST
        // reply with a 443 (Peer Address Family Mismatch)". Malformed or
        // unknown: 400.
        let family = match attr::get::<RequestedAddressFamily>(msg) {
            Ok(f) => f,
            Err(_) => return self.error(now, ctx, BAD_REQUEST, &signer),
        };
        if let Some(RequestedAddressFamily(f)) = family {
            let a = self.allocation_at(slot);
            if !a.relays.iter().any(|r| r.local.is_ipv4() == f.is_v4()) {
                return self.error(now, ctx, PEER_ADDRESS_FAMILY_MISMATCH, &signer);
            }
        }
        let lifetime = match lifetime {
            Ok(l) => l,
            Err(code) => return self.error(now, ctx, code, &signer),
        };
        // "If the 'desired lifetime' is zero, then the request succeeds and
        // the allocation is deleted."
        if lifetime.is_zero() {
            self.delete(now, slot, EndReason::Deleted);
        } else {
            let a = self.allocations[slot as usize].as_mut().expect("live");
            a.expires = now + lifetime;
            a.lifetime = lifetime;
            let refreshed = Event::AllocationRefreshed {
                tuple: a.tuple,
                username: a.username.clone(),
                lifetime,
                at: now,
            };
            self.arm(slot);
            self.events.push_back(refreshed);
        }
        self.answer(now, ctx, Answer::Success, Some(&signer), true, |b| {
            b.add_u32(AttributeType::LIFETIME, lifetime.as_secs() as u32);
        });
    }
}
