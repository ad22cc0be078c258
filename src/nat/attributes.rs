//! The request attributes of RFC 5780 §7 as typed values: CHANGE-REQUEST,
//! RESPONSE-PORT and PADDING. The two address attributes (RESPONSE-ORIGIN,
//! OTHER-ADDRESS) have the MAPPED-ADDRESS layout (RFC 5780 §7.1: "Whenever an
//! attribute contains a transport IP address and port, it has the same format
//! as MAPPED-ADDRESS") and are read with
//! [`crate::stun::attributes::decode_address`].

use crate::stun::attributes::AttributeError;

/// CHANGE-REQUEST (RFC 5780 §7.2): "The attribute is 32 bits long, although
/// only two bits (A and B) are used". Other bits are ignored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct ChangeRequest {
    /// Flag A: "send the Binding Response with a different IP address than
    /// the one the Binding Request was received on".
    pub change_ip: bool,
    /// Flag B: "send the Binding Response with a different port than the one
    /// the Binding Request was received on".
    pub change_port: bool,
}

impl ChangeRequest {
    /// Bit A of the 32-bit value.
    pub const CHANGE_IP: u32 = 0x04;
    /// Bit B of the 32-bit value.
    pub const CHANGE_PORT: u32 = 0x02;

    /// Change nothing.
    pub const NONE: Self = Self {
        change_ip: false,
        change_port: false,
    };
    /// Answer from the other IP.
    pub const IP: Self = Self {
        change_ip: true,
        change_port: false,
    };
    /// Answer from the other port.
    pub const PORT: Self = Self {
        change_ip: false,
        change_port: true,
    };
    /// Answer from the other IP and port.
    pub const IP_AND_PORT: Self = Self {
        change_ip: true,
        change_port: true,
    };

    /// Reads the 4-byte value.
    pub fn decode(value: &[u8]) -> Result<Self, AttributeError> {
        let bytes: [u8; 4] = value.try_into().map_err(|_| AttributeError::WrongLength)?;
        let v = u32::from_be_bytes(bytes);
        Ok(Self {
            change_ip: v & Self::CHANGE_IP != 0,
            change_port: v & Self::CHANGE_PORT != 0,
        })
    }

    /// The 4-byte value.
    pub fn encode(self) -> [u8; 4] {
        let mut v = 0;
        if self.change_ip {
            v |= Self::CHANGE_IP;
        }
        if self.change_port {
            v |= Self::CHANGE_PORT;
        }
        v.to_be_bytes()
    }
}

/// RESPONSE-PORT (RFC 5780 §7.5): "a 16-bit unsigned integer in network byte
/// order followed by 2 bytes of padding".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ResponsePort(pub u16);

impl ResponsePort {
    /// Reads the 4-byte value.
    pub fn decode(value: &[u8]) -> Result<Self, AttributeError> {
        match value {
            [hi, lo, _, _] => Ok(Self(u16::from_be_bytes([*hi, *lo]))),
            _ => Err(AttributeError::WrongLength),
        }
    }

    /// The 4-byte value.
    pub fn encode(self) -> [u8; 4] {
        let [hi, lo] = self.0.to_be_bytes();
        [hi, lo, 0, 0]
    }
}

/// Hard cap on PADDING, sent or answered: RFC 5780 §7.6 "PADDING MUST NOT
/// be longer than the length that brings the total IP datagram size to 64K",
/// so stay well below a 64 KiB datagram.
pub(crate) const MAX_PADDING: usize = 65_000;

/// Rounds a PADDING length up to a multiple of four (RFC 5780 §7.6: "rounded
/// up to an even multiple of four bytes").
pub(crate) fn round_up_4(len: usize) -> usize {
    (len + 3) & !3
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn change_request_flags_have_the_rfc_bit_values() {
        assert_eq!(ChangeRequest::IP.encode(), [0, 0, 0, 4]);
        assert_eq!(ChangeRequest::PORT.encode(), [0, 0, 0, 2]);
        assert_eq!(ChangeRequest::IP_AND_PORT.encode(), [0, 0, 0, 6]);
        assert_eq!(ChangeRequest::NONE.encode(), [0, 0, 0, 0]);
        assert_eq!(
            ChangeRequest::decode(&[0xff, 0xff, 0xff, 0xfb]),
            Ok(ChangeRequest::PORT),
            "bits other than A and B are ignored"
        );
        assert_eq!(
            ChangeRequest::decode(&[0, 0, 4]),
            Err(AttributeError::WrongLength)
        );
    }

    #[test]
    fn response_port_is_sixteen_bits_then_two_padding_bytes() {
        assert_eq!(ResponsePort(40000).encode(), [0x9c, 0x40, 0, 0]);
        assert_eq!(
            ResponsePort::decode(&[0x9c, 0x40, 0xaa, 0xbb]),
            Ok(ResponsePort(40000))
        );
        assert_eq!(
            ResponsePort::decode(&[0x9c, 0x40]),
            Err(AttributeError::WrongLength)
        );
    }

    #[test]
    fn padding_lengths_round_up_to_four() {
        assert_eq!(round_up_4(0), 0);
        assert_eq!(round_up_4(1), 4);
        assert_eq!(round_up_4(1500), 1500);
        assert_eq!(round_up_4(1501), 1504);
    }
}
