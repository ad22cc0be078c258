//! Attribute types and typed decoding (RFC 8489 §14, RFC 8656 §18,
//! RFC 5780 §7, RFC 7635 §6, RFC 6062 §6.2).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use super::{TransactionId, MAGIC_COOKIE};

/// A 16-bit attribute type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AttributeType(pub u16);

impl AttributeType {
    /// RFC 8489 §14.1: the reflexive address, not XORed (RFC 3489 clients read it).
    pub const MAPPED_ADDRESS: Self = Self(0x0001);
    /// RFC 3489 only (reserved since RFC 5389): reflect the answer elsewhere.
    pub const RESPONSE_ADDRESS: Self = Self(0x0002);
    /// RFC 5780 §7.2: answer from the other IP and/or port.
    pub const CHANGE_REQUEST: Self = Self(0x0003);
    /// RFC 3489 only: where the answer was sent from (RFC 5780's
    /// RESPONSE-ORIGIN).
    pub const SOURCE_ADDRESS: Self = Self(0x0004);
    /// RFC 3489 only: the server's other address (RFC 5780's OTHER-ADDRESS).
    pub const CHANGED_ADDRESS: Self = Self(0x0005);
    /// RFC 8489 §14.3: the long-term credential user.
    pub const USERNAME: Self = Self(0x0006);
    /// RFC 3489 only: the Shared Secret answer's password.
    pub const PASSWORD: Self = Self(0x0007);
    /// RFC 8489 §14.5: HMAC-SHA1 over the message.
    pub const MESSAGE_INTEGRITY: Self = Self(0x0008);
    /// RFC 8489 §14.8: class, number and reason phrase.
    pub const ERROR_CODE: Self = Self(0x0009);
    /// RFC 8489 §14.9: the types a 420 did not understand.
    pub const UNKNOWN_ATTRIBUTES: Self = Self(0x000A);
    /// RFC 3489 only: who asked, in an answer sent to RESPONSE-ADDRESS.
    pub const REFLECTED_FROM: Self = Self(0x000B);
    /// RFC 8656 §18.1: the channel a ChannelBind asks for.
    pub const CHANNEL_NUMBER: Self = Self(0x000C);
    /// RFC 8656 §18.2: seconds an allocation lives.
    pub const LIFETIME: Self = Self(0x000D);
    /// RFC 8656 §18.3: a peer of the allocation.
    pub const XOR_PEER_ADDRESS: Self = Self(0x0012);
    /// RFC 8656 §18.4: application data in Send and Data indications.
    pub const DATA: Self = Self(0x0013);
    /// RFC 8489 §14.9: the long-term credential realm.
    pub const REALM: Self = Self(0x0014);
    /// RFC 8489 §14.10: the server's nonce for the next request.
    pub const NONCE: Self = Self(0x0015);
    /// RFC 8656 §18.5: the relayed transport address.
    pub const XOR_RELAYED_ADDRESS: Self = Self(0x0016);
    /// RFC 8656 §18.6: IPv4 or IPv6 relay.
    pub const REQUESTED_ADDRESS_FAMILY: Self = Self(0x0017);
    /// RFC 8656 §18.7: ask for an even relay port (and reserve the next).
    pub const EVEN_PORT: Self = Self(0x0018);
    /// RFC 8656 §18.8: UDP, or TCP for RFC 6062.
    pub const REQUESTED_TRANSPORT: Self = Self(0x0019);
    /// RFC 8656 §18.9: set DF toward the peer.
    pub const DONT_FRAGMENT: Self = Self(0x001A);
    /// RFC 7635 §6.2: the OAuth token.
    pub const ACCESS_TOKEN: Self = Self(0x001B);
    /// RFC 8489 §14.6: HMAC-SHA256 over the message.
    pub const MESSAGE_INTEGRITY_SHA256: Self = Self(0x001C);
    /// RFC 8489 §14.12: the algorithm the client chose.
    pub const PASSWORD_ALGORITHM: Self = Self(0x001D);
    /// RFC 8489 §14.4: the hashed username.
    pub const USERHASH: Self = Self(0x001E);
    /// RFC 8489 §14.2: the reflexive address, XORed.
    pub const XOR_MAPPED_ADDRESS: Self = Self(0x0020);
    /// RFC 8656 §18.10: names a port reserved by EVEN-PORT.
    pub const RESERVATION_TOKEN: Self = Self(0x0022);
    /// RFC 8445 §16.1: ICE candidate priority.
    pub const PRIORITY: Self = Self(0x0024);
    /// RFC 8445 §16.1: ICE nomination.
    pub const USE_CANDIDATE: Self = Self(0x0025);
    /// RFC 5780 §7.6: fills a request or answer to test large packets.
    pub const PADDING: Self = Self(0x0026);
    /// RFC 5780 §7.5: send the answer to this port.
    pub const RESPONSE_PORT: Self = Self(0x0027);
    /// RFC 6062 §6.2.1: names a TCP peer connection.
    pub const CONNECTION_ID: Self = Self(0x002A);
    /// RFC 8656 §18.11: a second relay family (dual allocation).
    pub const ADDITIONAL_ADDRESS_FAMILY: Self = Self(0x8000);
    /// RFC 8656 §18.12: why one family of a dual allocation failed.
    pub const ADDRESS_ERROR_CODE: Self = Self(0x8001);
    /// Pre-RFC code points of draft-ietf-tram-turnbis that coturn and its
    /// turnutils_uclient still use for the two attributes above.
    pub const ADDITIONAL_ADDRESS_FAMILY_DRAFT: Self = Self(0x8032);
    /// The draft code point of ADDRESS-ERROR-CODE (see above).
    pub const ADDRESS_ERROR_CODE_DRAFT: Self = Self(0x8033);
    /// RFC 8489 §14.11: the algorithms the server offers.
    pub const PASSWORD_ALGORITHMS: Self = Self(0x8002);
    /// RFC 8489 §14.16: the TLS name of ALTERNATE-SERVER.
    pub const ALTERNATE_DOMAIN: Self = Self(0x8003);
    /// RFC 8656 §18.13: an ICMP error from the peer.
    pub const ICMP: Self = Self(0x8004);
    /// RFC 8489 §14.14: the agent's name and version.
    pub const SOFTWARE: Self = Self(0x8022);
    /// RFC 8489 §14.15: try this server instead.
    pub const ALTERNATE_SERVER: Self = Self(0x8023);
    /// RFC 8489 §14.7: CRC-32 that tells STUN from other protocols.
    pub const FINGERPRINT: Self = Self(0x8028);
    /// RFC 8445 §16.1: ICE role.
    pub const ICE_CONTROLLED: Self = Self(0x8029);
    /// RFC 8445 §16.1: ICE role.
    pub const ICE_CONTROLLING: Self = Self(0x802A);
    /// RFC 5780 §7.3: where the answer was sent from.
    pub const RESPONSE_ORIGIN: Self = Self(0x802B);
    /// RFC 5780 §7.4: the server's alternate address.
    pub const OTHER_ADDRESS: Self = Self(0x802C);
    /// RFC 7635 §6.1: the OAuth server name.
    pub const THIRD_PARTY_AUTHORIZATION: Self = Self(0x802E);
    /// RFC 7635 §6.3 (draft-ietf-tram-stun-origin): the web origin of the
    /// page that made the request; it may pick the realm.
    pub const ORIGIN: Self = Self(0x802F);

    /// RFC 8489 §14: types 0x0000-0x7FFF are comprehension-required.
    pub fn is_comprehension_required(self) -> bool {
        self.0 < 0x8000
    }

    /// Comprehension-required types this codec knows. A request carrying any
    /// other comprehension-required type is answered with 420.
    pub fn is_known(self) -> bool {
        matches!(
            self,
            Self::MAPPED_ADDRESS
                | Self::CHANGE_REQUEST
                | Self::USERNAME
                | Self::MESSAGE_INTEGRITY
                | Self::ERROR_CODE
                | Self::UNKNOWN_ATTRIBUTES
                | Self::CHANNEL_NUMBER
                | Self::LIFETIME
                | Self::XOR_PEER_ADDRESS
                | Self::DATA
                | Self::REALM
                | Self::NONCE
                | Self::XOR_RELAYED_ADDRESS
                | Self::REQUESTED_ADDRESS_FAMILY
                | Self::EVEN_PORT
                | Self::REQUESTED_TRANSPORT
                | Self::DONT_FRAGMENT
                | Self::ACCESS_TOKEN
                | Self::MESSAGE_INTEGRITY_SHA256
                | Self::PASSWORD_ALGORITHM
                | Self::USERHASH
                | Self::XOR_MAPPED_ADDRESS
                | Self::RESERVATION_TOKEN
                | Self::PRIORITY
                | Self::USE_CANDIDATE
                | Self::PADDING
                | Self::RESPONSE_PORT
                | Self::CONNECTION_ID
        ) || !self.is_comprehension_required()
    }
}

/// Why an attribute's value cannot be used. For a request this becomes a 400.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AttributeError {
    #[error("attribute value has the wrong length")]
    /// The value is not the length the attribute has.
    WrongLength,
    #[error("unknown address family 0x{0:02x}")]
    /// The address family byte is neither IPv4 nor IPv6.
    UnknownFamily(u8),
    #[error("text is not UTF-8")]
    /// Text is not UTF-8.
    InvalidUtf8,
    #[error("text is longer than allowed")]
    /// Text is longer than RFC 8489 allows.
    TooLong,
    #[error("error class {0} is not 3-6")]
    /// The error class is outside 3-6.
    BadErrorClass(u8),
}

const FAMILY_IPV4: u8 = 0x01;
const FAMILY_IPV6: u8 = 0x02;

/// Decodes MAPPED-ADDRESS and its layout relatives (RFC 8489 §14.1).
pub fn decode_address(value: &[u8]) -> Result<SocketAddr, AttributeError> {
    if value.len() < 4 {
        return Err(AttributeError::WrongLength);
    }
    let port = u16::from_be_bytes([value[2], value[3]]);
    let ip = match (value[1], value.len()) {
        (FAMILY_IPV4, 8) => IpAddr::V4(Ipv4Addr::new(value[4], value[5], value[6], value[7])),
        (FAMILY_IPV6, 20) => {
            let mut o = [0u8; 16];
            o.copy_from_slice(&value[4..20]);
            IpAddr::V6(Ipv6Addr::from(o))
        }
        (FAMILY_IPV4 | FAMILY_IPV6, _) => return Err(AttributeError::WrongLength),
        (f, _) => return Err(AttributeError::UnknownFamily(f)),
    };
    Ok(SocketAddr::new(ip, port))
}

/// XORs an address in place with the cookie and transaction id
/// (RFC 8489 §14.2); the operation is its own inverse.
fn xor_address(addr: SocketAddr, txid: &TransactionId) -> SocketAddr {
    let cookie = MAGIC_COOKIE.to_be_bytes();
    let port = addr.port() ^ (MAGIC_COOKIE >> 16) as u16;
    let ip = match addr.ip() {
        IpAddr::V4(v4) => {
            let mut o = v4.octets();
            for (b, c) in o.iter_mut().zip(cookie) {
                *b ^= c;
            }
            IpAddr::V4(Ipv4Addr::from(o))
        }
        IpAddr::V6(v6) => {
            let mut o = v6.octets();
            for (b, c) in o.iter_mut().zip(cookie.iter().chain(txid.0.iter())) {
                *b ^= c;
            }
            IpAddr::V6(Ipv6Addr::from(o))
        }
    };
    SocketAddr::new(ip, port)
}

/// Decodes XOR-MAPPED-ADDRESS, XOR-PEER-ADDRESS and XOR-RELAYED-ADDRESS.
pub fn decode_xor_address(
    value: &[u8],
    txid: &TransactionId,
) -> Result<SocketAddr, AttributeError> {
    decode_address(value).map(|a| xor_address(a, txid))
}

/// Encoded length of an address attribute value.
pub fn address_len(addr: &SocketAddr) -> usize {
    match addr {
        SocketAddr::V4(_) => 8,
        SocketAddr::V6(_) => 20,
    }
}

/// Writes an address value; `out` must be [`address_len`] bytes.
pub fn encode_address(addr: &SocketAddr, out: &mut [u8]) {
    out[0] = 0;
    out[2..4].copy_from_slice(&addr.port().to_be_bytes());
    match addr.ip() {
        IpAddr::V4(v4) => {
            out[1] = FAMILY_IPV4;
            out[4..8].copy_from_slice(&v4.octets());
        }
        IpAddr::V6(v6) => {
            out[1] = FAMILY_IPV6;
            out[4..20].copy_from_slice(&v6.octets());
        }
    }
}

/// Writes an XOR-…-ADDRESS value; `out` must be [`address_len`] bytes.
pub fn encode_xor_address(addr: &SocketAddr, txid: &TransactionId, out: &mut [u8]) {
    encode_address(&xor_address(*addr, txid), out)
}

/// RFC 8489 §14.3: USERNAME "MUST contain a UTF-8-encoded sequence of fewer
/// than 509 bytes"; the security checklist caps it below 513.
pub const MAX_USERNAME_BYTES: usize = 512;
/// RFC 8489 §14.9/§14.10/§14.14/§14.8: fewer than 128 characters.
pub const MAX_TEXT_CHARS: usize = 127;

/// Decodes a UTF-8 text attribute of at most `max_chars` characters.
pub fn decode_text(value: &[u8], max_chars: usize) -> Result<&str, AttributeError> {
    // 4 bytes per character at most: reject early without scanning.
    if value.len() > max_chars * 4 {
        return Err(AttributeError::TooLong);
    }
    let s = std::str::from_utf8(value).map_err(|_| AttributeError::InvalidUtf8)?;
    if s.chars().count() > max_chars {
        return Err(AttributeError::TooLong);
    }
    Ok(s)
}

/// USERNAME: UTF-8, at most [`MAX_USERNAME_BYTES`].
pub fn decode_username(value: &[u8]) -> Result<&str, AttributeError> {
    if value.len() > MAX_USERNAME_BYTES {
        return Err(AttributeError::TooLong);
    }
    std::str::from_utf8(value).map_err(|_| AttributeError::InvalidUtf8)
}

/// ERROR-CODE (RFC 8489 §14.8).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ErrorCode<'a> {
    /// 300-699.
    pub code: u16,
    /// The reason phrase.
    pub reason: &'a str,
}

impl<'a> ErrorCode<'a> {
    /// Reads the value; the class must be 3-6 and the number 0-99.
    pub fn decode(value: &'a [u8]) -> Result<Self, AttributeError> {
        if value.len() < 4 {
            return Err(AttributeError::WrongLength);
        }
        let class = value[2] & 0x07;
        let number = value[3];
        if !(3..=6).contains(&class) {
            return Err(AttributeError::BadErrorClass(class));
        }
        if number > 99 {
            return Err(AttributeError::WrongLength);
        }
        let reason = decode_text(&value[4..], MAX_TEXT_CHARS)?;
        Ok(ErrorCode {
            code: class as u16 * 100 + number as u16,
            reason,
        })
    }

    /// Writes the value; `out` must be `4 + reason.len()` bytes.
    pub fn encode(code: u16, reason: &str, out: &mut [u8]) {
        out[0] = 0;
        out[1] = 0;
        out[2] = (code / 100) as u8 & 0x07;
        out[3] = (code % 100) as u8;
        out[4..4 + reason.len()].copy_from_slice(reason.as_bytes());
    }
}

/// Decodes UNKNOWN-ATTRIBUTES (RFC 8489 §14.9) into its list of types.
pub fn decode_unknown_attributes(
    value: &[u8],
) -> Result<impl Iterator<Item = u16> + '_, AttributeError> {
    if value.len() % 2 != 0 {
        return Err(AttributeError::WrongLength);
    }
    Ok(value
        .chunks_exact(2)
        .map(|c| u16::from_be_bytes([c[0], c[1]])))
}

/// The standard reason phrase for an error code, as the RFCs name them.
pub fn reason_phrase(code: u16) -> &'static str {
    match code {
        300 => "Try Alternate",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        405 => "Mobility Forbidden",
        420 => "Unknown Attribute",
        437 => "Allocation Mismatch",
        438 => "Stale Nonce",
        440 => "Address Family not Supported",
        441 => "Wrong Credentials",
        442 => "Unsupported Transport Protocol",
        443 => "Peer Address Family Mismatch",
        446 => "Connection Already Exists",
        447 => "Connection Timeout or Failure",
        486 => "Allocation Quota Reached",
        487 => "Role Conflict",
        500 => "Server Error",
        508 => "Insufficient Capacity",
        _ => "Error",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xor_address_round_trips_both_families() {
        let txid = TransactionId([7; 12]);
        for addr in [
            "192.0.2.1:32853".parse::<SocketAddr>().unwrap(),
            "[2001:db8::1]:1".parse().unwrap(),
        ] {
            let mut buf = [0u8; 20];
            let n = address_len(&addr);
            encode_xor_address(&addr, &txid, &mut buf[..n]);
            assert_eq!(decode_xor_address(&buf[..n], &txid), Ok(addr));
            assert_ne!(decode_address(&buf[..n]), Ok(addr));
        }
    }

    #[test]
    fn address_with_wrong_family_or_length_is_rejected() {
        assert_eq!(
            decode_address(&[0, 3, 0, 1, 1, 2, 3, 4]),
            Err(AttributeError::UnknownFamily(3))
        );
        assert_eq!(
            decode_address(&[0, 1, 0, 1, 1, 2, 3, 4, 0, 0, 0, 0]),
            Err(AttributeError::WrongLength)
        );
        assert_eq!(
            decode_address(&[0, 2, 0, 1, 1, 2, 3, 4]),
            Err(AttributeError::WrongLength)
        );
        assert_eq!(decode_address(&[0, 1]), Err(AttributeError::WrongLength));
    }

    #[test]
    fn text_limits_are_enforced() {
        assert_eq!(
            decode_text(&[b'a'; 127], MAX_TEXT_CHARS),
            Ok(&*"a".repeat(127))
        );
        assert_eq!(
            decode_text(&[b'a'; 128], MAX_TEXT_CHARS),
            Err(AttributeError::TooLong)
        );
        assert_eq!(
            decode_text(&[0xff, 0xfe], MAX_TEXT_CHARS),
            Err(AttributeError::InvalidUtf8)
        );
        assert!(decode_username(&[b'u'; 512]).is_ok());
        assert_eq!(decode_username(&[b'u'; 513]), Err(AttributeError::TooLong));
    }

    #[test]
    fn error_code_round_trips() {
        let mut buf = [0u8; 4 + 17];
        ErrorCode::encode(420, "Unknown Attribute", &mut buf);
        assert_eq!(
            ErrorCode::decode(&buf),
            Ok(ErrorCode {
                code: 420,
                reason: "Unknown Attribute"
            })
        );
        assert_eq!(
            ErrorCode::decode(&[0, 0, 7, 0]),
            Err(AttributeError::BadErrorClass(7))
        );
    }
}
