//! Writes a STUN message into a caller's buffer.
//!
//! Adding attributes never fails on the spot: if the buffer runs out the
//! builder remembers it and [`MessageBuilder::finish`] reports it, which
//! keeps response code free of error plumbing while staying panic-free.

use std::net::SocketAddr;

use super::attributes::{self, AttributeType, ErrorCode};
use super::classic::ClassicTransactionId;
use super::integrity;
use super::message::padded;
use super::{MessageType, TransactionId, HEADER_LEN, MAGIC_COOKIE};

/// Why no message was built.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum BuildError {
    #[error("buffer too small or message over 65535 bytes")]
    /// The buffer is full.
    Overflow,
    /// XOR addresses are keyed with the magic cookie, which an RFC 3489
    /// message does not carry: its client could not decode them.
    #[error("an XOR address in an RFC 3489 message")]
    XorInClassic,
}

/// Writes one STUN message into a caller's buffer; errors are kept until
/// [`MessageBuilder::finish`] so adding attributes needs no `?`.
pub struct MessageBuilder<'b> {
    buf: &'b mut [u8],
    len: usize,
    failed: Option<BuildError>,
    padding_byte: u8,
    txid: TransactionId,
    classic: bool,
}

// By hand: the buffer is mostly unwritten bytes.
impl std::fmt::Debug for MessageBuilder<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MessageBuilder")
            .field("len", &self.len)
            .field("failed", &self.failed)
            .field("txid", &self.txid)
            .field("classic", &self.classic)
            .finish_non_exhaustive()
    }
}

impl<'b> MessageBuilder<'b> {
    /// Starts a message of `message_type` in `buf`.
    pub fn new(buf: &'b mut [u8], message_type: MessageType, txid: TransactionId) -> Self {
        let mut id = [0u8; 16];
        id[..4].copy_from_slice(&MAGIC_COOKIE.to_be_bytes());
        id[4..].copy_from_slice(&txid.0);
        Self::start(buf, message_type, ClassicTransactionId(id), false)
    }

    /// Starts an RFC 3489 message: `id` fills bytes 4-20 where the magic
    /// cookie would be (RFC 8489 §12: the answer to a classic client
    /// echoes what it sent there).
    pub fn new_classic(
        buf: &'b mut [u8],
        message_type: MessageType,
        id: ClassicTransactionId,
    ) -> Self {
        Self::start(buf, message_type, id, true)
    }

    fn start(
        buf: &'b mut [u8],
        message_type: MessageType,
        id: ClassicTransactionId,
        classic: bool,
    ) -> Self {
        let mut txid = TransactionId([0; 12]);
        txid.0.copy_from_slice(&id.0[4..]);
        let mut b = MessageBuilder {
            buf,
            len: HEADER_LEN,
            failed: None,
            padding_byte: 0,
            txid,
            classic,
        };
        if b.buf.len() < HEADER_LEN {
            b.failed = Some(BuildError::Overflow);
            return b;
        }
        b.buf[..2].copy_from_slice(&message_type.to_u16().to_be_bytes());
        b.buf[2..4].copy_from_slice(&[0, 0]);
        b.buf[4..20].copy_from_slice(&id.0);
        b
    }

    /// Byte used to pad attribute values. RFC 8489 §14 asks for zero, but
    /// RFC 5389 allowed any value and RFC 5769's vectors pad with spaces; the
    /// vector tests need this to re-encode byte for byte.
    pub fn padding_byte(mut self, byte: u8) -> Self {
        self.padding_byte = byte;
        self
    }

    /// The transaction id in the header.
    pub fn transaction_id(&self) -> TransactionId {
        self.txid
    }

    /// Reserves an attribute of `value_len` bytes and hands its value to
    /// `write`. Sets the header length to cover it.
    pub fn add_with(
        &mut self,
        attr: AttributeType,
        value_len: usize,
        write: impl FnOnce(&mut [u8]),
    ) {
        if self.failed.is_some() {
            return;
        }
        let end = self.len + 4 + padded(value_len);
        if value_len > u16::MAX as usize
            || end > self.buf.len()
            || end - HEADER_LEN > u16::MAX as usize
        {
            self.failed = Some(BuildError::Overflow);
            return;
        }
        let at = self.len;
        self.buf[at..at + 2].copy_from_slice(&attr.0.to_be_bytes());
        self.buf[at + 2..at + 4].copy_from_slice(&(value_len as u16).to_be_bytes());
        write(&mut self.buf[at + 4..at + 4 + value_len]);
        self.buf[at + 4 + value_len..end].fill(self.padding_byte);
        self.len = end;
        let body = (self.len - HEADER_LEN) as u16;
        self.buf[2..4].copy_from_slice(&body.to_be_bytes());
    }

    /// Adds an attribute with `value` as is.
    pub fn add(&mut self, attr: AttributeType, value: &[u8]) {
        self.add_with(attr, value.len(), |out| out.copy_from_slice(value));
    }

    /// Adds a 4-byte big-endian value.
    pub fn add_u32(&mut self, attr: AttributeType, value: u32) {
        self.add(attr, &value.to_be_bytes());
    }

    /// Adds MAPPED-ADDRESS (RFC 8489 §14.1).
    pub fn add_mapped_address(&mut self, addr: &SocketAddr) {
        self.add_address(AttributeType::MAPPED_ADDRESS, addr);
    }

    /// A plain (non-XOR) address attribute such as MAPPED-ADDRESS.
    pub fn add_address(&mut self, attr: AttributeType, addr: &SocketAddr) {
        self.add_with(attr, attributes::address_len(addr), |out| {
            attributes::encode_address(addr, out)
        });
    }

    /// An XOR-…-ADDRESS attribute (mapped, peer or relayed).
    pub fn add_xor_address(&mut self, attr: AttributeType, addr: &SocketAddr) {
        if self.classic {
            self.failed.get_or_insert(BuildError::XorInClassic);
            return;
        }
        let txid = self.txid;
        self.add_with(attr, attributes::address_len(addr), |out| {
            attributes::encode_xor_address(addr, &txid, out)
        });
    }

    /// Adds XOR-MAPPED-ADDRESS (RFC 8489 §14.2).
    pub fn add_xor_mapped_address(&mut self, addr: &SocketAddr) {
        self.add_xor_address(AttributeType::XOR_MAPPED_ADDRESS, addr);
    }

    /// ERROR-CODE with the given reason phrase.
    pub fn add_error_code(&mut self, code: u16, reason: &str) {
        self.add_with(AttributeType::ERROR_CODE, 4 + reason.len(), |out| {
            ErrorCode::encode(code, reason, out)
        });
    }

    /// Adds UNKNOWN-ATTRIBUTES (RFC 8489 §14.13).
    pub fn add_unknown_attributes(&mut self, types: &[u16]) {
        self.add_with(AttributeType::UNKNOWN_ATTRIBUTES, types.len() * 2, |out| {
            for (chunk, t) in out.chunks_exact_mut(2).zip(types) {
                chunk.copy_from_slice(&t.to_be_bytes());
            }
        });
    }

    /// Adds SOFTWARE.
    pub fn add_software(&mut self, software: &str) {
        self.add(AttributeType::SOFTWARE, software.as_bytes());
    }

    /// Adds USERNAME.
    pub fn add_username(&mut self, username: &str) {
        self.add(AttributeType::USERNAME, username.as_bytes());
    }

    /// Adds REALM.
    pub fn add_realm(&mut self, realm: &str) {
        self.add(AttributeType::REALM, realm.as_bytes());
    }

    /// Adds NONCE.
    pub fn add_nonce(&mut self, nonce: &[u8]) {
        self.add(AttributeType::NONCE, nonce);
    }

    /// MESSAGE-INTEGRITY over everything written so far.
    pub fn add_message_integrity(&mut self, key: &[u8]) {
        if self.failed.is_some() {
            return;
        }
        let mac = integrity::hmac_sha1(key, &self.buf[..self.len]);
        self.add(AttributeType::MESSAGE_INTEGRITY, &mac);
    }

    /// MESSAGE-INTEGRITY-SHA256 (full 32 bytes) over everything written so far.
    pub fn add_message_integrity_sha256(&mut self, key: &[u8]) {
        if self.failed.is_some() {
            return;
        }
        let mac = integrity::hmac_sha256(key, &self.buf[..self.len], integrity::SHA256_LEN);
        self.add(AttributeType::MESSAGE_INTEGRITY_SHA256, &mac);
    }

    /// FINGERPRINT; must be the last attribute added.
    pub fn add_fingerprint(&mut self) {
        if self.failed.is_some() {
            return;
        }
        let end = self.len + 8;
        if end > self.buf.len() || end - HEADER_LEN > u16::MAX as usize {
            self.failed = Some(BuildError::Overflow);
            return;
        }
        // The CRC covers the header with its final length.
        self.buf[2..4].copy_from_slice(&((end - HEADER_LEN) as u16).to_be_bytes());
        let crc = integrity::fingerprint(&self.buf[..self.len]);
        self.add_u32(AttributeType::FINGERPRINT, crc);
    }

    /// Length of the finished message at the front of the buffer.
    pub fn finish(self) -> Result<usize, BuildError> {
        match self.failed {
            Some(e) => Err(e),
            None => Ok(self.len),
        }
    }
}
