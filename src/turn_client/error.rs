//! Why a TURN request did not succeed, typed so callers match on codes,
//! never on strings.

use std::net::SocketAddr;

use crate::stun::ParseError;

/// A failed request. `Display` gives one line for a report.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClientError {
    /// An error response: ERROR-CODE and its reason (the RFC phrase when
    /// the server sent none).
    #[error("refused with {code}")]
    Refused {
        /// ERROR-CODE's number.
        code: u16,
        /// ERROR-CODE's reason phrase.
        reason: String,
        /// On a 300 (Try Alternate), where to try: ALTERNATE-SERVER and
        /// ALTERNATE-DOMAIN. `None` on other codes, and on a 300 without
        /// ALTERNATE-SERVER.
        alternate: Option<AlternateServer>,
    },
    /// A 401 or 438 without REALM and NONCE: the server does not use
    /// long-term credentials.
    #[error("{code} {} without REALM and NONCE (the server does not use long-term credentials)", crate::stun::attributes::reason_phrase(*code))]
    NoChallenge {
        /// 401 or 438.
        code: u16,
    },
    /// The answer is not STUN.
    #[error("unparsable answer: {0}")]
    Unparsable(ParseError),
    /// The answer is for another method.
    #[error("answer of the wrong method 0x{0:03x}")]
    WrongMethod(u16),
    /// The answer lacks something the request needs, or is not a response.
    #[error("{0}")]
    Malformed(&'static str),
    /// The request does not fit a message.
    #[error("request does not fit a buffer")]
    TooLarge,
    /// Nothing came back before the transaction's deadline.
    #[error("no answer")]
    NoAnswer,
}

/// The server a 300 (Try Alternate) points to (RFC 8489 §10).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlternateServer {
    /// ALTERNATE-SERVER (§14.15).
    pub addr: SocketAddr,
    /// ALTERNATE-DOMAIN (§14.16): the name to check the server's
    /// certificate against over (D)TLS, when the server sent one.
    pub domain: Option<String>,
}

impl ClientError {
    /// The error code of a refusal.
    pub fn code(&self) -> Option<u16> {
        match self {
            ClientError::Refused { code, .. } => Some(*code),
            _ => None,
        }
    }

    /// The ALTERNATE-SERVER of a 300.
    pub fn alternate(&self) -> Option<SocketAddr> {
        match self {
            ClientError::Refused {
                alternate: Some(a), ..
            } => Some(a.addr),
            _ => None,
        }
    }
}
