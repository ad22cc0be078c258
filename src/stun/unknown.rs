//! The 420 (Unknown Attribute) answer of RFC 8489 §6.3.1.1, shared by the
//! Binding service and RFC 5780 mode so both list the same, bounded set.

use super::{classic, AttributeType, Message, MessageBuilder};

/// Most unknown attribute types listed in one 420 answer; enough for any
/// honest client, and it bounds the response size.
pub(crate) const MAX_UNKNOWN_LISTED: usize = 16;

/// The unknown comprehension-required attribute types of one request, at
/// most [`MAX_UNKNOWN_LISTED`], without repeats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct UnknownAttributes {
    types: [u16; MAX_UNKNOWN_LISTED],
    len: usize,
}

impl UnknownAttributes {
    /// The types of `msg` that `known` refuses; `None` when there are none
    /// (the request needs no 420).
    pub(crate) fn find(msg: &Message<'_>, known: impl Fn(AttributeType) -> bool) -> Option<Self> {
        let mut types = [0u16; MAX_UNKNOWN_LISTED];
        let len = msg.unknown_comprehension_required(known, &mut types);
        (len > 0).then_some(UnknownAttributes { types, len })
    }

    /// The listed types, in the order the request carried them.
    pub(crate) fn types(&self) -> &[u16] {
        &self.types[..self.len]
    }

    /// Writes ERROR-CODE 420 and UNKNOWN-ATTRIBUTES into `b`, in RFC 3489's
    /// layout when `classic` (its client reads no RFC 8489 attribute shape).
    pub(crate) fn add_420(&self, b: &mut MessageBuilder<'_>, classic: bool) {
        const REASON: &str = "Unknown Attribute";
        if classic {
            classic::add_error_code(b, 420, REASON);
            classic::add_unknown_attributes(b, self.types());
        } else {
            b.add_error_code(420, REASON);
            b.add_unknown_attributes(self.types());
        }
    }
}
