//! The client's data path (RFC 8656 §11, §12): Send indications and
//! ChannelData out, Data indications and ChannelData in.

use std::net::SocketAddr;

use crate::stun::attributes::{decode_xor_address, AttributeType};
use crate::stun::channel_data::CHANNEL_DATA_HEADER_LEN;
use crate::stun::{
    ChannelData, Class, Message, MessageBuilder, MessageType, Method, TransactionId,
};

/// Writes a Send indication for `peer` carrying `len` bytes that `fill`
/// writes in place; returns its length, 0 if `out` is too small.
pub fn send_indication(
    out: &mut [u8],
    id: TransactionId,
    peer: SocketAddr,
    len: usize,
    fill: impl FnOnce(&mut [u8]),
) -> usize {
    let mut b = MessageBuilder::new(out, MessageType::new(Method::SEND, Class::Indication), id);
    b.add_xor_address(AttributeType::XOR_PEER_ADDRESS, &peer);
    b.add_with(AttributeType::DATA, len, fill);
    b.finish().unwrap_or(0)
}

/// Writes a ChannelData message (unpadded, as over UDP) of `len` bytes that
/// `fill` writes in place; returns its length, 0 if it does not fit.
pub fn channel_data(
    out: &mut [u8],
    channel: u16,
    len: usize,
    fill: impl FnOnce(&mut [u8]),
) -> usize {
    let end = CHANNEL_DATA_HEADER_LEN + len;
    if len > u16::MAX as usize || out.len() < end {
        return 0;
    }
    out[..2].copy_from_slice(&channel.to_be_bytes());
    out[2..4].copy_from_slice(&(len as u16).to_be_bytes());
    fill(&mut out[CHANNEL_DATA_HEADER_LEN..end]);
    end
}

/// Data relayed from a peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeerData<'a> {
    /// ChannelData on a bound channel.
    Channel {
        /// The channel number.
        channel: u16,
        /// The application data.
        data: &'a [u8],
    },
    /// A Data indication.
    Indication {
        /// XOR-PEER-ADDRESS.
        peer: SocketAddr,
        /// DATA.
        data: &'a [u8],
    },
}

impl<'a> PeerData<'a> {
    /// Recognises relayed data among what the server sends.
    pub fn parse(bytes: &'a [u8]) -> Option<Self> {
        if let Some(cd) = ChannelData::parse(bytes) {
            return Some(PeerData::Channel {
                channel: cd.channel,
                data: cd.data,
            });
        }
        let m = Message::parse(bytes).ok()?;
        if m.method() != Method::DATA || m.class() != Class::Indication {
            return None;
        }
        let peer = decode_xor_address(m.get(AttributeType::XOR_PEER_ADDRESS)?, &m.transaction_id())
            .ok()?;
        Some(PeerData::Indication {
            peer,
            data: m.get(AttributeType::DATA)?,
        })
    }

    /// The application data.
    pub fn data(&self) -> &'a [u8] {
        match *self {
            PeerData::Channel { data, .. } | PeerData::Indication { data, .. } => data,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channel_data_round_trips_and_refuses_what_does_not_fit() {
        let mut out = [0u8; 16];
        let n = channel_data(&mut out, 0x4001, 3, |d| d.copy_from_slice(b"abc"));
        assert_eq!(&out[..n], &[0x40, 0x01, 0, 3, b'a', b'b', b'c']);
        assert_eq!(
            PeerData::parse(&out[..n]),
            Some(PeerData::Channel {
                channel: 0x4001,
                data: b"abc"
            })
        );
        assert_eq!(channel_data(&mut out, 0x4001, 13, |_| {}), 0);
    }

    #[test]
    fn a_send_indication_is_not_peer_data_but_a_data_indication_is() {
        let peer: SocketAddr = "192.0.2.7:5000".parse().unwrap();
        let mut out = [0u8; 64];
        let n = send_indication(&mut out, TransactionId([3; 12]), peer, 2, |d| {
            d.copy_from_slice(b"hi")
        });
        assert!(n > 0);
        assert_eq!(PeerData::parse(&out[..n]), None);
        let mut b = MessageBuilder::new(
            &mut out,
            MessageType::new(Method::DATA, Class::Indication),
            TransactionId([4; 12]),
        );
        b.add_xor_address(AttributeType::XOR_PEER_ADDRESS, &peer);
        b.add(AttributeType::DATA, b"hi");
        let n = b.finish().unwrap();
        assert_eq!(
            PeerData::parse(&out[..n]),
            Some(PeerData::Indication { peer, data: b"hi" })
        );
    }
}
