//! Allocate on a draining node (issue 15): 300 (Try Alternate) with the
//! ALTERNATE-SERVER of a `ready` node of the client's family and transport
//! (RFC 8489 §10, §14.15), plus ALTERNATE-DOMAIN (§14.16) on (D)TLS when
//! that node has a DNS name; 403 "draining" when there is none.
//!
//! The check runs after authentication: the 300 is signed with the
//! client's key (RFC 8489 §10 lets the client trust a redirect only so),
//! and strangers learn no fleet addresses from an unauthenticated request,
//! which gets its 401 as on any node.

use std::time::Instant;

use super::respond::Answer;
use super::{Ctx, Server};
use crate::auth::Signer;
use crate::stun::attributes::AttributeType;
use crate::turn::error::{FORBIDDEN, TRY_ALTERNATE};
use crate::turn::Transport;

/// The reason phrase of the 403 a draining node with no alternate answers
/// (coturn says "Server is draining"; the issue names this one).
pub(crate) const DRAINING: &str = "draining";

impl Server {
    /// Answers a new Allocate if this node drains; the code it answered
    /// (300 or 403) if it did.
    pub(super) fn drain_redirect(
        &mut self,
        now: Instant,
        ctx: &Ctx,
        signer: &Signer,
    ) -> Option<u16> {
        let drain = &self.shared.drain;
        if !drain.is_draining() {
            return None;
        }
        let tls = matches!(ctx.tuple.transport, Transport::Tls | Transport::Dtls);
        match drain.pick(ctx.tuple.transport, ctx.tuple.server.is_ipv4()) {
            Some(alt) => {
                let answer = Answer::Error(TRY_ALTERNATE);
                self.answer(now, ctx, answer, Some(signer), true, |b| {
                    b.add_address(AttributeType::ALTERNATE_SERVER, &alt.addr);
                    if let (true, Some(domain)) = (tls, &alt.domain) {
                        b.add(AttributeType::ALTERNATE_DOMAIN, domain.as_bytes());
                    }
                });
                Some(TRY_ALTERNATE)
            }
            None => {
                let answer = Answer::ErrorWithReason(FORBIDDEN, DRAINING);
                self.answer(now, ctx, answer, Some(signer), true, |_| {});
                Some(FORBIDDEN)
            }
        }
    }
}
