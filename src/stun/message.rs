//! Borrowing parser for one STUN message (RFC 8489 §5, §14).

use super::attributes::AttributeType;
use super::classic::ClassicTransactionId;
use super::integrity;
use super::{Class, MessageType, Method, TransactionId, HEADER_LEN, MAGIC_COOKIE};

/// Why bytes are not a STUN message. Every variant means "drop silently" on
/// the wire: RFC 8489 §6.3 lets the server discard what it cannot frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("shorter than the 20-byte header")]
    /// Shorter than the 20-byte header.
    TooShort,
    #[error("the two most significant bits are not zero")]
    /// The top two bits are not zero.
    NotStun,
    #[error("magic cookie is not 0x2112A442")]
    /// The magic cookie is wrong.
    BadMagicCookie,
    /// [`Message::parse_classic`] was handed a message with the cookie.
    #[error("magic cookie present: not an RFC 3489 message")]
    NotClassic,
    #[error("header length {header} does not match the {actual} bytes after the header")]
    /// The header's length is not what follows it.
    LengthMismatch {
        /// The length field.
        header: usize,
        /// Bytes after the header.
        actual: usize,
    },
    #[error("header length is not a multiple of 4")]
    /// The length is not a multiple of 4.
    UnalignedLength,
    #[error("attribute 0x{attribute:04x} runs past the end of the message")]
    /// An attribute runs past the end.
    TruncatedAttribute {
        /// Its type.
        attribute: u16,
    },
    #[error("attribute 0x{attribute:04x} follows FINGERPRINT")]
    /// An attribute follows FINGERPRINT (RFC 8489 §14.7: it is last).
    AttributeAfterFingerprint {
        /// Its type.
        attribute: u16,
    },
    #[error("FINGERPRINT does not match")]
    /// FINGERPRINT does not match.
    BadFingerprint,
}

/// One attribute as it appears in the packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RawAttribute<'a> {
    /// The attribute type.
    pub attr_type: u16,
    /// The value, without padding.
    pub value: &'a [u8],
    /// Offset of the attribute's 4-byte header within the message.
    pub offset: usize,
}

/// A validated STUN message borrowing its bytes.
///
/// Parsing walks the attributes once to check that every TLV fits, that
/// FINGERPRINT (if any) is last and correct, and to note where the integrity
/// attributes sit. RFC 8489 §14.5: "with the exception of the
/// MESSAGE-INTEGRITY-SHA256 and FINGERPRINT attributes, agents MUST ignore all
/// other attributes that follow MESSAGE-INTEGRITY" — so [`Message::attributes`]
/// stops at the first integrity attribute and nothing after it can steer a
/// decision.
#[derive(Debug, Clone, Copy)]
pub struct Message<'a> {
    bytes: &'a [u8],
    message_type: MessageType,
    /// End of the attributes that count: just past the first integrity
    /// attribute, else at FINGERPRINT, else the message end.
    counted_end: usize,
    integrity: Option<usize>,
    integrity_sha256: Option<usize>,
    fingerprint: Option<usize>,
    /// An RFC 3489 message: no magic cookie, a 128-bit transaction id.
    classic: bool,
}

fn read_u16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

/// Value lengths are padded to a multiple of four on the wire (RFC 8489 §14).
pub(crate) fn padded(len: usize) -> usize {
    (len + 3) & !3
}

impl<'a> Message<'a> {
    /// Validates `bytes` as exactly one STUN message (a whole UDP datagram, or
    /// one frame cut from a stream by [`super::framing`]).
    pub fn parse(bytes: &'a [u8]) -> Result<Self, ParseError> {
        Self::parse_as(bytes, false)
    }

    /// Validates `bytes` as one RFC 3489 message: bytes 4-8 are not the
    /// magic cookie but the first quarter of a 128-bit transaction id
    /// (RFC 8489 §12: that absence is how a classic client is recognised).
    /// RFC 3489 has no FINGERPRINT, so 0x8028 is just an unknown
    /// comprehension-optional attribute here and nothing checks it.
    pub fn parse_classic(bytes: &'a [u8]) -> Result<Self, ParseError> {
        Self::parse_as(bytes, true)
    }

    fn parse_as(bytes: &'a [u8], classic: bool) -> Result<Self, ParseError> {
        if bytes.len() < HEADER_LEN {
            return Err(ParseError::TooShort);
        }
        if bytes[0] & 0xC0 != 0 {
            return Err(ParseError::NotStun);
        }
        let cookie = u32::from_be_bytes([bytes[4], bytes[5], bytes[6], bytes[7]]) == MAGIC_COOKIE;
        match (classic, cookie) {
            (false, false) => return Err(ParseError::BadMagicCookie),
            (true, true) => return Err(ParseError::NotClassic),
            _ => {}
        }
        let header_len = read_u16(bytes, 2) as usize;
        if header_len % 4 != 0 {
            return Err(ParseError::UnalignedLength);
        }
        if header_len != bytes.len() - HEADER_LEN {
            return Err(ParseError::LengthMismatch {
                header: header_len,
                actual: bytes.len() - HEADER_LEN,
            });
        }

        let mut msg = Message {
            bytes,
            message_type: MessageType::from_u16(read_u16(bytes, 0)),
            counted_end: bytes.len(),
            integrity: None,
            integrity_sha256: None,
            fingerprint: None,
            classic,
        };
        let mut at = HEADER_LEN;
        let mut integrity_seen = false;
        while at < bytes.len() {
            if bytes.len() - at < 4 {
                return Err(ParseError::TruncatedAttribute { attribute: 0 });
            }
            let attr_type = read_u16(bytes, at);
            let len = read_u16(bytes, at + 2) as usize;
            let next = at + 4 + padded(len);
            if next > bytes.len() {
                return Err(ParseError::TruncatedAttribute {
                    attribute: attr_type,
                });
            }
            if msg.fingerprint.is_some() {
                return Err(ParseError::AttributeAfterFingerprint {
                    attribute: attr_type,
                });
            }
            match AttributeType(attr_type) {
                AttributeType::FINGERPRINT if !classic => {
                    msg.fingerprint = Some(at);
                    if !integrity_seen {
                        msg.counted_end = at;
                    }
                }
                // Only the first integrity attribute starts the protected
                // region; after MESSAGE-INTEGRITY-SHA256 a MESSAGE-INTEGRITY
                // no longer counts (RFC 8489 §14.6).
                AttributeType::MESSAGE_INTEGRITY if !integrity_seen => {
                    msg.integrity = Some(at);
                    msg.counted_end = next;
                    integrity_seen = true;
                }
                AttributeType::MESSAGE_INTEGRITY_SHA256 if msg.integrity_sha256.is_none() => {
                    msg.integrity_sha256 = Some(at);
                    if !integrity_seen {
                        msg.counted_end = next;
                        integrity_seen = true;
                    }
                }
                _ => {}
            }
            at = next;
        }
        if let Some(fp) = msg.fingerprint {
            let value = &bytes[fp + 4..];
            if read_u16(bytes, fp + 2) != 4
                || value.len() != 4
                || u32::from_be_bytes([value[0], value[1], value[2], value[3]])
                    != integrity::fingerprint(&bytes[..fp])
            {
                return Err(ParseError::BadFingerprint);
            }
        }
        Ok(msg)
    }

    /// The whole message.
    pub fn as_bytes(&self) -> &'a [u8] {
        self.bytes
    }

    /// Method and class.
    pub fn message_type(&self) -> MessageType {
        self.message_type
    }

    /// The class.
    pub fn class(&self) -> Class {
        self.message_type.class
    }

    /// The method.
    pub fn method(&self) -> Method {
        self.message_type.method
    }

    /// The 96-bit transaction id (for a classic message, its last 96 bits).
    pub fn transaction_id(&self) -> TransactionId {
        let mut id = [0u8; 12];
        id.copy_from_slice(&self.bytes[8..20]);
        TransactionId(id)
    }

    /// Whether this is an RFC 3489 message (see [`Message::parse_classic`]).
    pub fn is_classic(&self) -> bool {
        self.classic
    }

    /// Bytes 4-20: an RFC 3489 client's whole transaction id, which its
    /// answer must echo.
    pub fn classic_transaction_id(&self) -> ClassicTransactionId {
        let mut id = [0u8; 16];
        id.copy_from_slice(&self.bytes[4..20]);
        ClassicTransactionId(id)
    }

    /// The attributes that count, in order, up to and including the first
    /// integrity attribute.
    pub fn attributes(&self) -> Attributes<'a> {
        Attributes {
            bytes: &self.bytes[..self.counted_end],
            at: HEADER_LEN,
        }
    }

    /// Value of the first counted attribute of this type. Duplicates of
    /// singleton attributes therefore resolve the same way every time.
    pub fn get(&self, attr: AttributeType) -> Option<&'a [u8]> {
        self.attributes()
            .find(|a| a.attr_type == attr.0)
            .map(|a| a.value)
    }

    /// The message ends with FINGERPRINT.
    pub fn has_fingerprint(&self) -> bool {
        self.fingerprint.is_some()
    }

    /// Offset of the MESSAGE-INTEGRITY attribute, if one counts.
    pub fn integrity_offset(&self) -> Option<usize> {
        self.integrity
    }

    /// Offset of the MESSAGE-INTEGRITY-SHA256 attribute, if one counts.
    pub fn integrity_sha256_offset(&self) -> Option<usize> {
        self.integrity_sha256
    }

    /// Comprehension-required attributes (0x0000-0x7FFF) that `known` does not
    /// accept, without repeats, as RFC 8489 §6.3.1.1 asks for the 420 answer.
    /// At most `out.len()` are kept; returns how many were written.
    pub fn unknown_comprehension_required(
        &self,
        known: impl Fn(AttributeType) -> bool,
        out: &mut [u16],
    ) -> usize {
        let mut n = 0;
        for a in self.attributes() {
            let t = AttributeType(a.attr_type);
            if t.is_comprehension_required() && !known(t) && !out[..n].contains(&a.attr_type) {
                if n == out.len() {
                    break;
                }
                out[n] = a.attr_type;
                n += 1;
            }
        }
        n
    }
}

/// Iterator over counted attributes.
#[derive(Debug)]
pub struct Attributes<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Iterator for Attributes<'a> {
    type Item = RawAttribute<'a>;

    fn next(&mut self) -> Option<Self::Item> {
        // Bounds were checked by `Message::parse`; stay defensive anyway.
        if self.bytes.len().saturating_sub(self.at) < 4 {
            return None;
        }
        let attr_type = read_u16(self.bytes, self.at);
        let len = read_u16(self.bytes, self.at + 2) as usize;
        let start = self.at + 4;
        let value = self.bytes.get(start..start + len)?;
        let offset = self.at;
        self.at = start + padded(len);
        Some(RawAttribute {
            attr_type,
            value,
            offset,
        })
    }
}
