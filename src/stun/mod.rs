//! Zero-copy STUN codec (RFC 8489, compatible with RFC 5389 clients).
//!
//! * [`Message`] borrows a datagram and validates its framing once; attribute
//!   values are slices of the packet, never copies.
//! * [`MessageBuilder`] writes a message into a caller's buffer.
//! * [`integrity`] computes MESSAGE-INTEGRITY, MESSAGE-INTEGRITY-SHA256 and
//!   FINGERPRINT over exactly the bytes RFC 8489 §14.5, §14.6 and §14.7 name.
//! * [`channel_data`] recognises TURN ChannelData, [`framing`] splits a TCP byte
//!   stream into STUN messages and ChannelData.
//! * [`classic`] holds what RFC 3489 clients (no magic cookie) need.
//!
//! No I/O, no clock, no allocation on the parse path.

#![warn(missing_docs, unreachable_pub, missing_debug_implementations)]

pub mod attributes;
pub(crate) mod builder;
pub mod channel_data;
pub(crate) mod classic;
pub mod client;
pub mod framing;
pub mod integrity;
pub mod message;
pub(crate) mod unknown;

pub use attributes::AttributeType;
pub use builder::{BuildError, MessageBuilder};
pub use channel_data::ChannelData;
pub use classic::ClassicTransactionId;
pub use message::{Message, ParseError, RawAttribute};

/// RFC 8489 §5: "The Magic Cookie field MUST contain the fixed value 0x2112A442".
pub const MAGIC_COOKIE: u32 = 0x2112_A442;
/// Every STUN message starts with a 20-byte header.
pub const HEADER_LEN: usize = 20;
/// Largest STUN message: the length field is 16 bits.
pub const MAX_MESSAGE_LEN: usize = HEADER_LEN + u16::MAX as usize;

/// The four message classes of RFC 8489 §5.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Class {
    /// A request: gets a response.
    Request,
    /// An indication: gets none.
    Indication,
    /// A success response.
    SuccessResponse,
    /// An error response.
    ErrorResponse,
}

/// A 12-bit STUN method.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Method(pub u16);

impl Method {
    /// RFC 8489 §18.2: ask for the reflexive address.
    pub const BINDING: Method = Method(0x001);
    /// RFC 8656 §7: get a relayed address.
    pub const ALLOCATE: Method = Method(0x003);
    /// RFC 8656 §8: extend or end an allocation.
    pub const REFRESH: Method = Method(0x004);
    /// RFC 8656 §11: data to a peer (indication).
    pub const SEND: Method = Method(0x006);
    /// RFC 8656 §11: data from a peer (indication).
    pub const DATA: Method = Method(0x007);
    /// RFC 8656 §9: let a peer's IP in.
    pub const CREATE_PERMISSION: Method = Method(0x008);
    /// RFC 8656 §12: bind a channel number to a peer.
    pub const CHANNEL_BIND: Method = Method(0x009);
    /// RFC 6062 §4.3: open a TCP connection to a peer.
    pub const CONNECT: Method = Method(0x00A);
    /// RFC 6062 §4.4: join a data connection to a peer connection.
    pub const CONNECTION_BIND: Method = Method(0x00B);
    /// RFC 6062 §4.5: a peer connected (indication).
    pub const CONNECTION_ATTEMPT: Method = Method(0x00C);
}

/// Method and class together, as packed into the first 16 bits of the header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct MessageType {
    /// The method.
    pub method: Method,
    /// The class.
    pub class: Class,
}

impl MessageType {
    /// Joins a method and a class.
    pub const fn new(method: Method, class: Class) -> Self {
        MessageType { method, class }
    }

    /// Decodes the 14 meaningful bits of the type field (RFC 8489 §5, figure 3:
    /// method bits M0-M11 interleaved with class bits C0 and C1).
    pub fn from_u16(v: u16) -> Self {
        let class = match ((v >> 7) & 0b10) | ((v >> 4) & 0b1) {
            0 => Class::Request,
            1 => Class::Indication,
            2 => Class::SuccessResponse,
            _ => Class::ErrorResponse,
        };
        let method = (v & 0x000F) | ((v & 0x00E0) >> 1) | ((v & 0x3E00) >> 2);
        MessageType {
            method: Method(method),
            class,
        }
    }

    /// Encodes the 14 bits of the type field (the inverse of `from_u16`).
    pub fn to_u16(self) -> u16 {
        let m = self.method.0 & 0x0FFF;
        let c: u16 = match self.class {
            Class::Request => 0,
            Class::Indication => 1,
            Class::SuccessResponse => 2,
            Class::ErrorResponse => 3,
        };
        (m & 0x000F)
            | ((m & 0x0070) << 1)
            | ((m & 0x0F80) << 2)
            | ((c & 0b1) << 4)
            | ((c & 0b10) << 7)
    }

    /// The success response type for a request of this method.
    pub fn success(self) -> Self {
        MessageType::new(self.method, Class::SuccessResponse)
    }

    /// The error response type for a request of this method.
    pub fn error(self) -> Self {
        MessageType::new(self.method, Class::ErrorResponse)
    }
}

/// The 96-bit transaction id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TransactionId(pub [u8; 12]);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_type_round_trips_every_method_and_class() {
        for m in 0..0x1000u16 {
            for class in [
                Class::Request,
                Class::Indication,
                Class::SuccessResponse,
                Class::ErrorResponse,
            ] {
                let t = MessageType::new(Method(m), class);
                assert_eq!(MessageType::from_u16(t.to_u16()), t);
            }
        }
    }

    #[test]
    fn binding_types_have_the_rfc_values() {
        let req = MessageType::new(Method::BINDING, Class::Request);
        assert_eq!(req.to_u16(), 0x0001);
        assert_eq!(req.success().to_u16(), 0x0101);
        assert_eq!(req.error().to_u16(), 0x0111);
        assert_eq!(
            MessageType::new(Method::SEND, Class::Indication).to_u16(),
            0x0016
        );
        assert_eq!(
            MessageType::new(Method::ALLOCATE, Class::ErrorResponse).to_u16(),
            0x0113
        );
    }
}

#[cfg(test)]
mod vectors;
