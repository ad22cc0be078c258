//! TURN ChannelData messages (RFC 8656 §12.4).

/// RFC 8656 §12 allows 0x4000-0x4FFF, but RFC 5766 §11 allowed 0x4000-0x7FFF
/// and RFC 5766 clients still pick numbers up there (coturn's
/// turnutils_uclient uses 0x73DE, and coturn accepts it). The client-facing
/// port carries no DTLS-SRTP, whose demultiplexing motivated the narrowing
/// (RFC 7983), so the old range is accepted.
pub const CHANNEL_MIN: u16 = 0x4000;
/// Highest channel number (RFC 8656 §12: 0x4000-0x7FFF).
pub const CHANNEL_MAX: u16 = 0x7FFF;

/// Header before the application data: channel number and length.
pub const CHANNEL_DATA_HEADER_LEN: usize = 4;

/// True when `channel` is an allowed channel number.
pub fn is_channel_number(channel: u16) -> bool {
    (CHANNEL_MIN..=CHANNEL_MAX).contains(&channel)
}

/// A ChannelData message borrowing its data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChannelData<'a> {
    /// The channel number.
    pub channel: u16,
    /// The application data, without padding.
    pub data: &'a [u8],
}

impl<'a> ChannelData<'a> {
    /// Recognises a ChannelData datagram. RFC 8656 §12.5: over UDP the
    /// padding is optional, so bytes past the stated length are ignored;
    /// a length past the end is not ChannelData.
    pub fn parse(bytes: &'a [u8]) -> Option<Self> {
        if bytes.len() < CHANNEL_DATA_HEADER_LEN {
            return None;
        }
        let channel = u16::from_be_bytes([bytes[0], bytes[1]]);
        if !is_channel_number(channel) {
            return None;
        }
        let len = u16::from_be_bytes([bytes[2], bytes[3]]) as usize;
        let data = bytes.get(CHANNEL_DATA_HEADER_LEN..CHANNEL_DATA_HEADER_LEN + len)?;
        Some(ChannelData { channel, data })
    }

    /// Writes the 4-byte header for `len` bytes of data on `channel`.
    pub fn write_header(channel: u16, len: u16, out: &mut [u8; 4]) {
        out[..2].copy_from_slice(&channel.to_be_bytes());
        out[2..].copy_from_slice(&len.to_be_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channel_data_is_recognised_only_in_range() {
        assert_eq!(
            ChannelData::parse(&[0x40, 0x00, 0x00, 0x02, 0xaa, 0xbb, 0, 0]),
            Some(ChannelData {
                channel: 0x4000,
                data: &[0xaa, 0xbb]
            })
        );
        assert!(ChannelData::parse(&[0x7f, 0xff, 0x00, 0x00]).is_some());
        assert_eq!(ChannelData::parse(&[0x80, 0x00, 0x00, 0x00]), None);
        assert_eq!(ChannelData::parse(&[0x3f, 0xff, 0x00, 0x00]), None);
        assert_eq!(
            ChannelData::parse(&[0x40, 0x00, 0x00, 0x05, 1, 2, 3, 4]),
            None
        );
    }
}
