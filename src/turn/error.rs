//! The error codes the TURN core answers with, named, each with the
//! sentence that defines it (RFC 8489 §14.8, RFC 8656 §19, RFC 6062 §6.3).
//! This is the one table of numeric codes in `turn/`; reason phrases come
//! from [`crate::stun::attributes::reason_phrase`].

/// RFC 8489 §14.8: "The client should contact an alternate server for this
/// request." (A draining node, issue 15.)
pub const TRY_ALTERNATE: u16 = 300;

/// RFC 8489 §14.8: "The request was malformed. The client SHOULD NOT retry
/// the request without modification from the previous attempt."
pub const BAD_REQUEST: u16 = 400;

/// RFC 8489 §14.8: "The request did not contain the correct credentials to
/// proceed. The client should retry the request with proper credentials."
pub const UNAUTHORIZED: u16 = 401;

/// RFC 8656 §19: "The request was valid but cannot be performed due to
/// administrative or similar restrictions."
pub const FORBIDDEN: u16 = 403;

/// RFC 8489 §14.8: "The server received a STUN packet containing a
/// comprehension-required attribute that it did not understand."
pub const UNKNOWN_ATTRIBUTE: u16 = 420;

/// RFC 8656 §19: "A request was received by the server that requires an
/// allocation to be in place, but no allocation exists, or a request was
/// received that requires no allocation, but an allocation exists."
pub const ALLOCATION_MISMATCH: u16 = 437;

/// RFC 8489 §14.8: "The NONCE used by the client was no longer valid. The
/// client should retry, using the NONCE provided in the response."
pub const STALE_NONCE: u16 = 438;

/// RFC 8656 §19: "The server does not support the address family requested
/// by the client."
pub const ADDRESS_FAMILY_NOT_SUPPORTED: u16 = 440;

/// RFC 8656 §19: "The credentials in the (non-Allocate) request do not match
/// those used to create the allocation."
pub const WRONG_CREDENTIALS: u16 = 441;

/// RFC 8656 §19: "The Allocate request asked the server to use a transport
/// protocol between the server and the peer that the server does not
/// support."
pub const UNSUPPORTED_TRANSPORT_PROTOCOL: u16 = 442;

/// RFC 8656 §19: "A peer address is part of a different address family than
/// that of the relayed transport address of the allocation."
pub const PEER_ADDRESS_FAMILY_MISMATCH: u16 = 443;

/// RFC 6062 §5.2: "If the server is already processing a Connect request
/// coming from the client on this allocation for the same XOR-PEER-ADDRESS,
/// it MUST return a 446 (Connection Already Exists) error."
pub const CONNECTION_ALREADY_EXISTS: u16 = 446;

/// RFC 6062 §5.2: "If the connection attempt fails or times out, the server
/// MUST return a 447 (Connection Timeout or Failure) error."
pub const CONNECTION_TIMEOUT_OR_FAILURE: u16 = 447;

/// RFC 8656 §19: "No more allocations using this username can be created at
/// the present time."
pub const ALLOCATION_QUOTA_REACHED: u16 = 486;

/// RFC 8656 §19: "The server is unable to carry out the request due to some
/// capacity limit being reached. In an Allocate response, this could be due
/// to the server having no more relayed transport addresses available at
/// that time, having none with the requested properties, or the one that
/// corresponds to the specified reservation token is not available."
pub const INSUFFICIENT_CAPACITY: u16 = 508;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stun::attributes::reason_phrase;

    /// The names are the wire values: a renumbering would change answers.
    #[test]
    fn codes_are_the_wire_values_with_their_reason_phrases() {
        let table = [
            (TRY_ALTERNATE, 300, "Try Alternate"),
            (BAD_REQUEST, 400, "Bad Request"),
            (UNAUTHORIZED, 401, "Unauthorized"),
            (FORBIDDEN, 403, "Forbidden"),
            (UNKNOWN_ATTRIBUTE, 420, "Unknown Attribute"),
            (ALLOCATION_MISMATCH, 437, "Allocation Mismatch"),
            (STALE_NONCE, 438, "Stale Nonce"),
            (
                ADDRESS_FAMILY_NOT_SUPPORTED,
                440,
                "Address Family not Supported",
            ),
            (WRONG_CREDENTIALS, 441, "Wrong Credentials"),
            (
                UNSUPPORTED_TRANSPORT_PROTOCOL,
                442,
                "Unsupported Transport Protocol",
            ),
            (
                PEER_ADDRESS_FAMILY_MISMATCH,
                443,
                "Peer Address Family Mismatch",
            ),
            (CONNECTION_ALREADY_EXISTS, 446, "Connection Already Exists"),
            (
                CONNECTION_TIMEOUT_OR_FAILURE,
                447,
                "Connection Timeout or Failure",
            ),
            (ALLOCATION_QUOTA_REACHED, 486, "Allocation Quota Reached"),
            (INSUFFICIENT_CAPACITY, 508, "Insufficient Capacity"),
        ];
        for (name, wire, phrase) in table {
            assert_eq!(name, wire);
            assert_eq!(reason_phrase(name), phrase);
        }
    }
}
