//! Answers: how one request is answered ([`Ctx`]), with what ([`Answer`]),
//! built once, cached for retransmissions (RFC 8489 §6.3.4) and queued.
//! Authentication refusals and 420 are answered here too.

use std::time::Instant;

use super::Server;
use crate::auth::{Rejection, Signer};
use crate::stun::attributes::{self, AttributeType};
use crate::stun::unknown::UnknownAttributes;
use crate::stun::{Message, MessageBuilder, MessageType, TransactionId};
use crate::turn::error::{BAD_REQUEST, STALE_NONCE, UNAUTHORIZED, UNKNOWN_ATTRIBUTE};
use crate::turn::{FiveTuple, Transmit};

/// Largest control message built.
pub(super) const CONTROL_MAX: usize = 1500;

/// How to answer one request.
#[derive(Debug, Clone)]
pub(crate) struct Ctx {
    pub(crate) tuple: FiveTuple,
    pub(crate) message_type: MessageType,
    pub(crate) txid: TransactionId,
    pub(crate) fingerprint: bool,
}

/// An answer's content: success, or an error code.
pub(crate) enum Answer {
    Success,
    Error(u16),
    /// An error code with a reason phrase of its own.
    ErrorWithReason(u16, &'static str),
}

impl Server {
    /// 420 for unknown comprehension-required attributes (RFC 8489
    /// §6.3.1.1), checked once the request is authenticated.
    pub(super) fn unknown_attributes(
        &mut self,
        now: Instant,
        ctx: &Ctx,
        msg: &Message<'_>,
        signer: &Signer,
    ) -> bool {
        let Some(unknown) = UnknownAttributes::find(msg, AttributeType::is_known) else {
            return false;
        };
        self.answer(
            now,
            ctx,
            Answer::Error(UNKNOWN_ATTRIBUTE),
            Some(signer),
            true,
            |b| {
                b.add_unknown_attributes(unknown.types());
            },
        );
        true
    }

    /// A 400, 401 or 438; the challenge names `realm`, the one the
    /// request was served in.
    pub(super) fn reject(&mut self, now: Instant, ctx: &Ctx, r: Rejection, realm: &str) {
        let code = match r {
            Rejection::Unauthorized => {
                self.stats.auth_unauthorized += 1;
                UNAUTHORIZED
            }
            Rejection::BadRequest => {
                self.stats.auth_bad_request += 1;
                BAD_REQUEST
            }
            Rejection::StaleNonce => {
                self.stats.auth_stale_nonce += 1;
                STALE_NONCE
            }
        };
        if !self.shared.reply_budget.allow(now, ctx.tuple.client.ip()) {
            return;
        }
        let shared = self.shared.clone();
        let ip = ctx.tuple.client.ip();
        self.answer(now, ctx, Answer::Error(code), None, false, |b| {
            if code != BAD_REQUEST {
                shared.auth.add_challenge_in(realm, now, ip, b);
            }
        });
    }

    /// Builds and queues an answer: SOFTWARE if configured, the content,
    /// integrity with the request's key, FINGERPRINT if the request had one.
    pub(in crate::turn) fn answer(
        &mut self,
        now: Instant,
        ctx: &Ctx,
        answer: Answer,
        signer: Option<&Signer>,
        cache: bool,
        content: impl FnOnce(&mut MessageBuilder<'_>),
    ) {
        let mut buf = [0u8; CONTROL_MAX];
        let message_type = match answer {
            Answer::Success => ctx.message_type.success(),
            Answer::Error(_) | Answer::ErrorWithReason(..) => ctx.message_type.error(),
        };
        let mut b = MessageBuilder::new(&mut buf, message_type, ctx.txid);
        match answer {
            Answer::Success => {}
            Answer::Error(code) => b.add_error_code(code, attributes::reason_phrase(code)),
            Answer::ErrorWithReason(code, reason) => b.add_error_code(code, reason),
        }
        content(&mut b);
        if let Some(software) = &self.shared.config().software {
            b.add_software(software);
        }
        if let Some(s) = signer {
            s.sign(&mut b);
        }
        if ctx.fingerprint {
            b.add_fingerprint();
        }
        let Ok(n) = b.finish() else { return };
        let data = buf[..n].to_vec();
        if cache {
            self.cache.insert(
                now,
                ctx.tuple,
                ctx.message_type.method,
                ctx.txid,
                data.clone(),
            );
        }
        self.transmits.push_back(Transmit {
            to: ctx.tuple,
            data,
        });
    }

    pub(in crate::turn) fn error(&mut self, now: Instant, ctx: &Ctx, code: u16, signer: &Signer) {
        self.answer(now, ctx, Answer::Error(code), Some(signer), true, |_| {});
    }
}
