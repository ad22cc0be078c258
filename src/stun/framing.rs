//! Splitting a stream (TCP, TLS) into STUN messages and ChannelData
//! (RFC 8489 §6.2.2, RFC 8656 §12.5: over streams ChannelData is padded to a
//! multiple of four bytes).
//!
//! Lengths are computed in `usize` from 16-bit fields, so a 65535-byte
//! length asks for more bytes and can never wrap into a short frame.

use super::channel_data::{is_channel_number, CHANNEL_DATA_HEADER_LEN};
use super::message::padded;
use super::{HEADER_LEN, MAGIC_COOKIE};

/// What a frame holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameKind {
    /// A STUN message.
    Stun,
    /// A ChannelData message.
    ChannelData,
}

/// The stream does not carry STUN or ChannelData: the connection must close.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FramingError {
    #[error("stream bytes are neither STUN nor ChannelData")]
    /// The first bytes are neither.
    NotStunOrChannelData,
}

/// Largest frame: a ChannelData with 65535 bytes of data plus padding.
pub const MAX_FRAME_LEN: usize = CHANNEL_DATA_HEADER_LEN + 65536;

/// Length of the frame at the front of `buf`: `Ok(None)` means more bytes are
/// needed to tell.
pub fn frame_len(buf: &[u8]) -> Result<Option<(FrameKind, usize)>, FramingError> {
    frame_len_as(buf, false)
}

/// [`frame_len`], also framing RFC 3489 messages (no magic cookie) when
/// `classic`. Without the cookie a stream loses its best garbage check, so
/// a server opts in (`stun_backward_compatibility`); the length rules still
/// bound every frame.
pub fn frame_len_as(buf: &[u8], classic: bool) -> Result<Option<(FrameKind, usize)>, FramingError> {
    let Some(&first) = buf.first() else {
        return Ok(None);
    };
    match first >> 6 {
        0b00 => {
            if buf.len() < 8 {
                return Ok(None);
            }
            if !classic && u32::from_be_bytes([buf[4], buf[5], buf[6], buf[7]]) != MAGIC_COOKIE {
                return Err(FramingError::NotStunOrChannelData);
            }
            let len = u16::from_be_bytes([buf[2], buf[3]]) as usize;
            if len % 4 != 0 {
                return Err(FramingError::NotStunOrChannelData);
            }
            Ok(Some((FrameKind::Stun, HEADER_LEN + len)))
        }
        0b01 => {
            if buf.len() < CHANNEL_DATA_HEADER_LEN {
                return Ok(None);
            }
            if !is_channel_number(u16::from_be_bytes([buf[0], buf[1]])) {
                return Err(FramingError::NotStunOrChannelData);
            }
            let len = u16::from_be_bytes([buf[2], buf[3]]) as usize;
            Ok(Some((
                FrameKind::ChannelData,
                CHANNEL_DATA_HEADER_LEN + padded(len),
            )))
        }
        _ => Err(FramingError::NotStunOrChannelData),
    }
}

/// One frame cut from the stream. For ChannelData, `bytes` includes the
/// padding; [`super::ChannelData::parse`] ignores it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Frame<'a> {
    /// What the frame holds.
    pub kind: FrameKind,
    /// The whole frame, padding included.
    pub bytes: &'a [u8],
}

/// Buffers a byte stream and yields whole frames. Memory is bounded by
/// [`MAX_FRAME_LEN`] plus one read.
#[derive(Debug, Default)]
pub struct Framer {
    buf: Vec<u8>,
    start: usize,
    classic: bool,
}

/// How much room [`Framer::unfilled`] offers at least.
const READ_CHUNK: usize = 16 * 1024;

impl Framer {
    /// A framer with nothing buffered.
    pub fn new() -> Self {
        Framer {
            buf: Vec::with_capacity(READ_CHUNK),
            start: 0,
            classic: false,
        }
    }

    /// Also frames RFC 3489 messages (see [`frame_len_as`]).
    pub fn with_classic(mut self, classic: bool) -> Self {
        self.classic = classic;
        self
    }

    fn compact(&mut self) {
        if self.start > 0 {
            self.buf.drain(..self.start);
            self.start = 0;
        }
    }

    /// Appends received bytes.
    pub fn push(&mut self, data: &[u8]) {
        self.compact();
        self.buf.extend_from_slice(data);
    }

    /// Space to read into directly; follow with [`Framer::filled`].
    pub fn unfilled(&mut self) -> &mut [u8] {
        self.compact();
        let len = self.buf.len();
        self.buf.resize(len + READ_CHUNK, 0);
        &mut self.buf[len..]
    }

    /// Marks `n` bytes of the last [`Framer::unfilled`] slice as received.
    pub fn filled(&mut self, n: usize) {
        let keep = self.buf.len() - READ_CHUNK + n.min(READ_CHUNK);
        self.buf.truncate(keep);
    }

    /// Takes the bytes received but not yet returned as frames (a data
    /// connection's first bytes after its ConnectionBind).
    pub fn take_rest(&mut self) -> Vec<u8> {
        let rest = self.buf[self.start..].to_vec();
        self.buf.clear();
        self.start = 0;
        rest
    }

    /// Bytes received but not yet returned as frames.
    pub fn pending(&self) -> usize {
        self.buf.len() - self.start
    }

    /// The next whole frame, `Ok(None)` when more bytes are needed.
    pub fn next_frame(&mut self) -> Result<Option<Frame<'_>>, FramingError> {
        let rest = &self.buf[self.start..];
        match frame_len_as(rest, self.classic)? {
            Some((kind, len)) if rest.len() >= len => {
                let at = self.start;
                self.start += len;
                Ok(Some(Frame {
                    kind,
                    bytes: &self.buf[at..at + len],
                }))
            }
            _ => {
                if self.start == self.buf.len() {
                    self.buf.clear();
                    self.start = 0;
                }
                Ok(None)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn largest_stun_length_needs_more_bytes_and_never_wraps() {
        let mut hdr = [0u8; 20];
        hdr[2..4].copy_from_slice(&0xFFFCu16.to_be_bytes());
        hdr[4..8].copy_from_slice(&MAGIC_COOKIE.to_be_bytes());
        assert_eq!(frame_len(&hdr), Ok(Some((FrameKind::Stun, 20 + 0xFFFC))));
        let mut f = Framer::new();
        f.push(&hdr);
        assert_eq!(f.next_frame(), Ok(None));
    }

    #[test]
    fn channel_data_on_a_stream_includes_its_padding() {
        let mut f = Framer::new();
        f.push(&[0x40, 0x01, 0x00, 0x01, 0xaa, 0, 0]);
        assert_eq!(f.next_frame(), Ok(None));
        f.push(&[0, 0x40, 0x01, 0x00, 0x00]);
        let frame = f.next_frame().unwrap().unwrap();
        assert_eq!(frame.kind, FrameKind::ChannelData);
        assert_eq!(frame.bytes, &[0x40, 0x01, 0x00, 0x01, 0xaa, 0, 0, 0]);
        let frame = f.next_frame().unwrap().unwrap();
        assert_eq!(frame.bytes, &[0x40, 0x01, 0x00, 0x00]);
        assert_eq!(f.next_frame(), Ok(None));
        assert_eq!(f.pending(), 0);
    }

    #[test]
    fn classic_stun_is_framed_only_when_asked_for() {
        // A Binding request without the cookie, then a modern one.
        let mut bytes = vec![0x00, 0x01, 0x00, 0x00];
        bytes.extend_from_slice(&[0xab; 16]);
        let classic_len = bytes.len();
        bytes.extend_from_slice(&[0x00, 0x01, 0x00, 0x00]);
        bytes.extend_from_slice(&MAGIC_COOKIE.to_be_bytes());
        bytes.extend_from_slice(&[0xcd; 12]);
        let mut strict = Framer::new();
        strict.push(&bytes);
        assert_eq!(strict.next_frame(), Err(FramingError::NotStunOrChannelData));
        let mut f = Framer::new().with_classic(true);
        f.push(&bytes);
        let frame = f.next_frame().unwrap().unwrap();
        assert_eq!(
            (frame.kind, frame.bytes),
            (FrameKind::Stun, &bytes[..classic_len])
        );
        let frame = f.next_frame().unwrap().unwrap();
        assert_eq!(frame.bytes, &bytes[classic_len..]);
        // The length rules still hold without the cookie.
        assert!(frame_len_as(&[0x00, 0x01, 0x00, 0x03, 1, 2, 3, 4], true).is_err());
        assert!(frame_len_as(&[0xc0, 0x01, 0x00, 0x04, 1, 2, 3, 4], true).is_err());
    }

    #[test]
    fn garbage_is_a_framing_error() {
        assert!(frame_len(b"\x16\x03\x01 TLS hello").is_err());
        assert!(frame_len(&[0x00, 0x01, 0x00, 0x00, 0xde, 0xad, 0xbe, 0xef]).is_err());
        assert!(frame_len(&[0x80, 0x00, 0, 0]).is_err());
    }
}
