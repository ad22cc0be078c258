//! TURN attributes as typed values, read through one checked reader
//! ([`get`], [`require`], [`has`]): a handler never parses bytes itself. A
//! malformed value is refused with the code to answer (400, or 440 for an
//! unknown address family), named in [`super::error`].

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use super::error::{ADDRESS_FAMILY_NOT_SUPPORTED, BAD_REQUEST};
use crate::stun::attributes::{decode_xor_address, AttributeType};
use crate::stun::channel_data::is_channel_number;
use crate::stun::{Message, TransactionId};

/// A TURN attribute with one code point and a fixed decoding.
pub(crate) trait Attribute: Sized {
    const TYPE: AttributeType;
    /// The value, or the error code a request carrying it gets.
    fn decode(value: &[u8]) -> Result<Self, u16>;
}

/// The first `T` of `msg`, decoded; `Ok(None)` if absent.
pub(crate) fn get<T: Attribute>(msg: &Message<'_>) -> Result<Option<T>, u16> {
    get_at(msg, T::TYPE)
}

/// As [`get`], at another code point for the same layout (a draft's).
pub(crate) fn get_at<T: Attribute>(msg: &Message<'_>, at: AttributeType) -> Result<Option<T>, u16> {
    msg.get(at).map(T::decode).transpose()
}

/// The first `T` of `msg`: absent is a 400 like malformed.
pub(crate) fn require<T: Attribute>(msg: &Message<'_>) -> Result<T, u16> {
    get(msg)?.ok_or(BAD_REQUEST)
}

/// Whether `msg` carries a `T` at all, well-formed or not.
pub(crate) fn has<T: Attribute>(msg: &Message<'_>) -> bool {
    msg.get(T::TYPE).is_some()
}

/// A four-byte value, else 400.
fn four(value: &[u8]) -> Result<[u8; 4], u16> {
    value.try_into().map_err(|_| BAD_REQUEST)
}

/// REQUESTED-TRANSPORT (RFC 8656 §18.6): "the Protocol field specifies the
/// desired protocol", then 24 RFFU bits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RequestedTransport(pub(crate) u8);

impl RequestedTransport {
    /// IANA protocol numbers: UDP (RFC 8656) and TCP (RFC 6062).
    pub(crate) const UDP: u8 = 17;
    pub(crate) const TCP: u8 = 6;
}

impl Attribute for RequestedTransport {
    const TYPE: AttributeType = AttributeType::REQUESTED_TRANSPORT;
    fn decode(value: &[u8]) -> Result<Self, u16> {
        Ok(RequestedTransport(four(value)?[0]))
    }
}

/// LIFETIME (RFC 8656 §18.4): "the duration for which the server will
/// maintain an allocation", in seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Lifetime(pub(crate) Duration);

impl Attribute for Lifetime {
    const TYPE: AttributeType = AttributeType::LIFETIME;
    fn decode(value: &[u8]) -> Result<Self, u16> {
        let secs = u32::from_be_bytes(four(value)?);
        Ok(Lifetime(Duration::from_secs(secs as u64)))
    }
}

/// CHANNEL-NUMBER (RFC 8656 §18.1): 16 bits of number, 16 RFFU. A number
/// that is not a channel's ([`is_channel_number`]: 0x4000-0x7FFF, as
/// ChannelData parsing accepts) gets 400.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ChannelNumber(pub(crate) u16);

impl Attribute for ChannelNumber {
    const TYPE: AttributeType = AttributeType::CHANNEL_NUMBER;
    fn decode(value: &[u8]) -> Result<Self, u16> {
        let v = four(value)?;
        let number = u16::from_be_bytes([v[0], v[1]]);
        if !is_channel_number(number) {
            return Err(BAD_REQUEST);
        }
        Ok(ChannelNumber(number))
    }
}

/// EVEN-PORT (RFC 8656 §18.8): "R: If 1, the server is requested to reserve
/// the next-higher port number".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct EvenPort {
    pub(crate) reserve: bool,
}

impl Attribute for EvenPort {
    const TYPE: AttributeType = AttributeType::EVEN_PORT;
    fn decode(value: &[u8]) -> Result<Self, u16> {
        let first = value.first().ok_or(BAD_REQUEST)?;
        Ok(EvenPort {
            reserve: first & 0x80 != 0,
        })
    }
}

/// RESERVATION-TOKEN (RFC 8656 §18.9): "an 8-byte token".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ReservationToken(pub(crate) [u8; 8]);

impl Attribute for ReservationToken {
    const TYPE: AttributeType = AttributeType::RESERVATION_TOKEN;
    fn decode(value: &[u8]) -> Result<Self, u16> {
        Ok(ReservationToken(value.try_into().map_err(|_| BAD_REQUEST)?))
    }
}

/// DONT-FRAGMENT (RFC 8656 §18.7): its presence is the request; any value
/// is ignored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct DontFragment;

impl Attribute for DontFragment {
    const TYPE: AttributeType = AttributeType::DONT_FRAGMENT;
    fn decode(_: &[u8]) -> Result<Self, u16> {
        Ok(DontFragment)
    }
}

/// CONNECTION-ID (RFC 6062 §6.2.1): "a 32-bit unsigned integer".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ConnectionId(pub(crate) u32);

impl Attribute for ConnectionId {
    const TYPE: AttributeType = AttributeType::CONNECTION_ID;
    fn decode(value: &[u8]) -> Result<Self, u16> {
        Ok(ConnectionId(u32::from_be_bytes(four(value)?)))
    }
}

/// An address family as REQUESTED-ADDRESS-FAMILY and ADDRESS-ERROR-CODE
/// write it (RFC 8656 §18.10: 0x01 IPv4, 0x02 IPv6).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AddressFamily {
    V4,
    V6,
}

impl AddressFamily {
    pub(crate) fn is_v4(self) -> bool {
        self == AddressFamily::V4
    }

    pub(crate) fn of(ip: IpAddr) -> Self {
        if ip.is_ipv4() {
            AddressFamily::V4
        } else {
            AddressFamily::V6
        }
    }

    /// The wire byte.
    pub(crate) fn wire(self) -> u8 {
        match self {
            AddressFamily::V4 => 0x01,
            AddressFamily::V6 => 0x02,
        }
    }

    /// Family byte then 24 RFFU bits: 400 if short or long; RFC 8656 §7.2:
    /// an unknown family gets 440.
    fn decode(value: &[u8]) -> Result<Self, u16> {
        match four(value)?[0] {
            0x01 => Ok(AddressFamily::V4),
            0x02 => Ok(AddressFamily::V6),
            _ => Err(ADDRESS_FAMILY_NOT_SUPPORTED),
        }
    }
}

/// REQUESTED-ADDRESS-FAMILY (RFC 8656 §18.10).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RequestedAddressFamily(pub(crate) AddressFamily);

impl Attribute for RequestedAddressFamily {
    const TYPE: AttributeType = AttributeType::REQUESTED_ADDRESS_FAMILY;
    fn decode(value: &[u8]) -> Result<Self, u16> {
        AddressFamily::decode(value).map(RequestedAddressFamily)
    }
}

/// ADDITIONAL-ADDRESS-FAMILY (RFC 8656 §18.11): "this attribute MUST be set
/// to 0x02 (IPv6 address family)"; anything else, malformed or unknown,
/// gets 400.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct AdditionalAddressFamily;

impl AdditionalAddressFamily {
    /// Where a request carries it: the RFC's code point, else the draft's
    /// (0x8032), with true for the draft (the answer then speaks it too).
    pub(crate) fn code_point(msg: &Message<'_>) -> (AttributeType, bool) {
        if msg.get(Self::TYPE).is_some() {
            (Self::TYPE, false)
        } else {
            (AttributeType::ADDITIONAL_ADDRESS_FAMILY_DRAFT, true)
        }
    }
}

impl Attribute for AdditionalAddressFamily {
    const TYPE: AttributeType = AttributeType::ADDITIONAL_ADDRESS_FAMILY;
    fn decode(value: &[u8]) -> Result<Self, u16> {
        match AddressFamily::decode(value) {
            Ok(AddressFamily::V6) => Ok(AdditionalAddressFamily),
            _ => Err(BAD_REQUEST),
        }
    }
}

/// XOR-PEER-ADDRESS (RFC 8656 §18.3), XORed with the transaction id: the
/// one attribute whose decoding needs more than its value.
pub(crate) struct XorPeerAddress;

impl XorPeerAddress {
    pub(crate) fn decode(value: &[u8], txid: &TransactionId) -> Result<SocketAddr, u16> {
        decode_xor_address(value, txid).map_err(|_| BAD_REQUEST)
    }

    /// The first one of `msg`: absent or malformed is a 400.
    pub(crate) fn require(msg: &Message<'_>) -> Result<SocketAddr, u16> {
        let value = msg
            .get(AttributeType::XOR_PEER_ADDRESS)
            .ok_or(BAD_REQUEST)?;
        Self::decode(value, &msg.transaction_id())
    }

    /// Every one of `msg`, in order (CreatePermission may carry several).
    pub(crate) fn all<'m>(
        msg: &'m Message<'_>,
    ) -> impl Iterator<Item = Result<SocketAddr, u16>> + 'm {
        let txid = msg.transaction_id();
        msg.attributes()
            .filter(|a| a.attr_type == AttributeType::XOR_PEER_ADDRESS.0)
            .map(move |a| Self::decode(a.value, &txid))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixed_size_values_refuse_other_lengths_with_400() {
        assert_eq!(
            RequestedTransport::decode(&[17, 0, 0, 0]),
            Ok(RequestedTransport(17))
        );
        assert_eq!(RequestedTransport::decode(&[17]), Err(BAD_REQUEST));
        assert_eq!(
            Lifetime::decode(&[0, 0, 2, 88]),
            Ok(Lifetime(Duration::from_secs(600)))
        );
        assert_eq!(Lifetime::decode(&[0, 0, 2, 88, 0]), Err(BAD_REQUEST));
        assert_eq!(ConnectionId::decode(&[0, 0, 0, 7]), Ok(ConnectionId(7)));
        assert_eq!(ConnectionId::decode(&[]), Err(BAD_REQUEST));
        assert_eq!(
            ReservationToken::decode(&[1; 8]),
            Ok(ReservationToken([1; 8]))
        );
        assert_eq!(ReservationToken::decode(&[1; 4]), Err(BAD_REQUEST));
    }

    #[test]
    fn channel_numbers_outside_the_range_get_400() {
        assert_eq!(
            ChannelNumber::decode(&[0x40, 0, 0, 0]),
            Ok(ChannelNumber(0x4000))
        );
        assert_eq!(
            ChannelNumber::decode(&[0x7f, 0xff, 0, 0]),
            Ok(ChannelNumber(0x7fff))
        );
        assert_eq!(ChannelNumber::decode(&[0x80, 0, 0, 0]), Err(BAD_REQUEST));
        assert_eq!(ChannelNumber::decode(&[0x3f, 0xff, 0, 0]), Err(BAD_REQUEST));
        assert_eq!(ChannelNumber::decode(&[0x40, 0]), Err(BAD_REQUEST));
    }

    #[test]
    fn families_unknown_get_440_but_additional_wants_ipv6_or_400() {
        let v = |f: u8| [f, 0, 0, 0];
        assert_eq!(
            RequestedAddressFamily::decode(&v(2)),
            Ok(RequestedAddressFamily(AddressFamily::V6))
        );
        assert_eq!(
            RequestedAddressFamily::decode(&v(3)),
            Err(ADDRESS_FAMILY_NOT_SUPPORTED)
        );
        assert_eq!(RequestedAddressFamily::decode(&[1]), Err(BAD_REQUEST));
        assert_eq!(
            AdditionalAddressFamily::decode(&v(2)),
            Ok(AdditionalAddressFamily)
        );
        assert_eq!(AdditionalAddressFamily::decode(&v(1)), Err(BAD_REQUEST));
        assert_eq!(AdditionalAddressFamily::decode(&v(3)), Err(BAD_REQUEST));
    }

    #[test]
    fn even_port_needs_a_byte_and_reads_the_r_bit() {
        assert_eq!(EvenPort::decode(&[0x80]), Ok(EvenPort { reserve: true }));
        assert_eq!(
            EvenPort::decode(&[0, 0, 0, 0]),
            Ok(EvenPort { reserve: false })
        );
        assert_eq!(EvenPort::decode(&[]), Err(BAD_REQUEST));
    }
}
