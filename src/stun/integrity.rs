//! MESSAGE-INTEGRITY (RFC 8489 §14.5), MESSAGE-INTEGRITY-SHA256 (§14.6),
//! FINGERPRINT (§14.7) and the long-term key derivation of §9.2.2.
//!
//! The HMACs run over the message "up to and including the attribute
//! preceding the MESSAGE-INTEGRITY attribute", with the header's length field
//! rewritten to end just after the integrity attribute. We feed the header in
//! three pieces instead of copying the message, so nothing is allocated.

use hmac::{Hmac, Mac};
use md5::{Digest, Md5};
use sha1::Sha1;
use sha2::Sha256;

use super::message::Message;
use super::HEADER_LEN;

type HmacSha1 = Hmac<Sha1>;
type HmacSha256 = Hmac<Sha256>;

/// RFC 8489 §14.7: "the CRC-32 of the STUN message up to (but excluding) the
/// FINGERPRINT attribute ... XOR'ed with the 32-bit value 0x5354554e".
pub const FINGERPRINT_XOR: u32 = 0x5354_554E;

/// Length of a MESSAGE-INTEGRITY value.
pub const SHA1_LEN: usize = 20;
/// Length of a full MESSAGE-INTEGRITY-SHA256 value.
pub const SHA256_LEN: usize = 32;

/// FINGERPRINT value for the bytes that precede it (their header length must
/// already count the FINGERPRINT attribute).
pub fn fingerprint(preceding: &[u8]) -> u32 {
    crc32fast::hash(preceding) ^ FINGERPRINT_XOR
}

/// Feeds `prefix` (header plus attributes before the integrity attribute) to
/// `mac`, with the header length set to `adjusted_len`.
fn feed<M: Mac>(mac: &mut M, prefix: &[u8], adjusted_len: usize) {
    mac.update(&prefix[..2]);
    mac.update(&(adjusted_len as u16).to_be_bytes());
    mac.update(&prefix[4..]);
}

/// HMAC-SHA1 over `prefix` as if the message ended `value_len + 4` bytes
/// after it (the integrity attribute itself).
pub fn hmac_sha1(key: &[u8], prefix: &[u8]) -> [u8; SHA1_LEN] {
    let mut mac = HmacSha1::new_from_slice(key).expect("HMAC accepts any key length");
    feed(&mut mac, prefix, prefix.len() - HEADER_LEN + 4 + SHA1_LEN);
    mac.finalize().into_bytes().into()
}

/// HMAC-SHA256 over `prefix`, for an integrity value of `value_len` bytes.
pub fn hmac_sha256(key: &[u8], prefix: &[u8], value_len: usize) -> [u8; SHA256_LEN] {
    let mut mac = HmacSha256::new_from_slice(key).expect("HMAC accepts any key length");
    feed(&mut mac, prefix, prefix.len() - HEADER_LEN + 4 + value_len);
    mac.finalize().into_bytes().into()
}

/// Why an integrity check did not pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum IntegrityError {
    #[error("message has no such integrity attribute")]
    /// The message has no such attribute.
    Missing,
    #[error("integrity attribute has an invalid length")]
    /// The attribute has the wrong length.
    BadLength,
    #[error("integrity does not match")]
    /// The HMAC does not match.
    Mismatch,
}

/// Verifies MESSAGE-INTEGRITY with `key`, in constant time.
pub fn verify_sha1(msg: &Message<'_>, key: &[u8]) -> Result<(), IntegrityError> {
    let at = msg.integrity_offset().ok_or(IntegrityError::Missing)?;
    let bytes = msg.as_bytes();
    let value = &bytes[at + 4..];
    let len = u16::from_be_bytes([bytes[at + 2], bytes[at + 3]]) as usize;
    if len != SHA1_LEN || value.len() < SHA1_LEN {
        return Err(IntegrityError::BadLength);
    }
    let prefix = &bytes[..at];
    let mut mac = HmacSha1::new_from_slice(key).expect("HMAC accepts any key length");
    feed(&mut mac, prefix, at - HEADER_LEN + 4 + SHA1_LEN);
    mac.verify_slice(&value[..SHA1_LEN])
        .map_err(|_| IntegrityError::Mismatch)
}

/// Verifies MESSAGE-INTEGRITY-SHA256 with `key`, in constant time. RFC 8489
/// §14.6: the value is 16 to 32 bytes, a multiple of 4, and may be truncated.
pub fn verify_sha256(msg: &Message<'_>, key: &[u8]) -> Result<(), IntegrityError> {
    let at = msg
        .integrity_sha256_offset()
        .ok_or(IntegrityError::Missing)?;
    let bytes = msg.as_bytes();
    let len = u16::from_be_bytes([bytes[at + 2], bytes[at + 3]]) as usize;
    if !(16..=SHA256_LEN).contains(&len) || len % 4 != 0 || bytes.len() < at + 4 + len {
        return Err(IntegrityError::BadLength);
    }
    let prefix = &bytes[..at];
    let mut mac = HmacSha256::new_from_slice(key).expect("HMAC accepts any key length");
    feed(&mut mac, prefix, at - HEADER_LEN + 4 + len);
    mac.verify_truncated_left(&bytes[at + 4..at + 4 + len])
        .map_err(|_| IntegrityError::Mismatch)
}

/// Long-term key for MESSAGE-INTEGRITY: MD5(username ":" realm ":" password)
/// (RFC 8489 §9.2.2). Strings are taken as already prepared.
pub fn long_term_key_md5(username: &str, realm: &str, password: &str) -> [u8; 16] {
    let mut h = Md5::new();
    h.update(username.as_bytes());
    h.update(b":");
    h.update(realm.as_bytes());
    h.update(b":");
    h.update(password.as_bytes());
    h.finalize().into()
}

/// Long-term key for PASSWORD-ALGORITHM SHA-256 (RFC 8489 §18.5.1.2).
pub fn long_term_key_sha256(username: &str, realm: &str, password: &str) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(username.as_bytes());
    h.update(b":");
    h.update(realm.as_bytes());
    h.update(b":");
    h.update(password.as_bytes());
    h.finalize().into()
}
