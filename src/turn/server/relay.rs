//! The relay: the data path. Client to peer, a ChannelData message or a
//! Send indication becomes a [`Forward`] for a relay socket; peer to
//! client, a datagram on a relay socket is framed in place as ChannelData
//! or a Data indication and becomes a [`Deliver`]. Nothing here allocates
//! or copies the payload.

use std::net::SocketAddr;
use std::time::Instant;

use super::Server;
use crate::stun::attributes::{self, AttributeType};
use crate::stun::channel_data::ChannelData;
use crate::stun::{Class, Message, MessageType, Method, TransactionId};
use crate::turn::attributes::XorPeerAddress;
use crate::turn::{Deliver, FiveTuple, Forward, RelayId};

/// Bytes the shell leaves in front of peer data so a Data indication header
/// (20 + XOR-PEER-ADDRESS 24 + DATA 4) can be written in place.
pub const PEER_HEADROOM: usize = 48;
/// Bytes the shell leaves after peer data for padding to four bytes.
pub const PEER_TAILROOM: usize = 4;

impl Server {
    /// The allocation that relays this client's datagrams (TCP relays
    /// carry no ChannelData or Send indications: RFC 6062 §5).
    pub(super) fn active_slot(&self, tuple: &FiveTuple) -> Option<u32> {
        let slot = *self.by_tuple.get(tuple)?;
        self.allocations[slot as usize]
            .as_ref()
            .filter(|a| a.is_active() && !a.tcp)
            .map(|_| slot)
    }

    /// Client to peer: a ChannelData message on a bound channel.
    pub(super) fn channel_data<'a>(
        &mut self,
        now: Instant,
        tuple: FiveTuple,
        cd: ChannelData<'a>,
    ) -> Option<Forward<'a>> {
        let slot = self.active_slot(&tuple)?;
        let a = self.allocations[slot as usize].as_mut()?;
        let bps = a.bps;
        // RFC 8656 §12.6: unbound channel or no permission → discard.
        let peer = a.channel(now, cd.channel)?.peer;
        if !a.has_permission(now, peer.ip()) {
            return None;
        }
        let relay = a.relay_of_family(peer.ip())?.id;
        if bps > 0.0 && !a.bw_to_peer.spend(now, bps, cd.data.len()) {
            return None;
        }
        a.to_peer.packets += 1;
        a.to_peer.bytes += cd.data.len() as u64;
        Some(Forward {
            relay,
            peer,
            data: cd.data,
        })
    }

    /// Client to peer: a Send indication.
    pub(super) fn send_indication<'a>(
        &mut self,
        now: Instant,
        tuple: FiveTuple,
        msg: &Message<'a>,
    ) -> Option<Forward<'a>> {
        let slot = self.active_slot(&tuple)?;
        // RFC 8656 §10.2: without XOR-PEER-ADDRESS or DATA, or without a
        // permission, the indication is discarded.
        let peer = XorPeerAddress::require(msg).ok()?;
        let data = msg.get(AttributeType::DATA)?;
        if !self.shared.config().policy.allows(peer) {
            return None;
        }
        let a = self.allocations[slot as usize].as_mut()?;
        let bps = a.bps;
        if !a.has_permission(now, peer.ip()) {
            return None;
        }
        let relay = a.relay_of_family(peer.ip())?.id;
        if bps > 0.0 && !a.bw_to_peer.spend(now, bps, data.len()) {
            return None;
        }
        a.to_peer.packets += 1;
        a.to_peer.bytes += data.len() as u64;
        Some(Forward { relay, peer, data })
    }

    /// Peer to client: a datagram from `from` on a relay socket, at `buf[start..start+len]`
    /// with [`PEER_HEADROOM`] before and [`PEER_TAILROOM`] after. Frames it
    /// in place as ChannelData (bound channel) or a Data indication.
    pub fn handle_peer(
        &mut self,
        now: Instant,
        relay: RelayId,
        from: SocketAddr,
        buf: &mut [u8],
        start: usize,
        len: usize,
    ) -> Option<Deliver> {
        if start < PEER_HEADROOM
            || buf.len() < start + len + PEER_TAILROOM
            || len > u16::MAX as usize - 48
        {
            return None;
        }
        let slot = (*self.relays.get(relay.0 as usize)?)?;
        let rand = self.next_random();
        let a = self.allocations[slot as usize].as_mut()?;
        let bps = a.bps;
        if !a.is_active() || !a.has_permission(now, from.ip()) {
            // RFC 8656 §10.3/§12.5: no permission → discard silently.
            return None;
        }
        if bps > 0.0 && !a.bw_to_client.spend(now, bps, len) {
            return None;
        }
        a.to_client.packets += 1;
        a.to_client.bytes += len as u64;
        let stream = a.tuple.transport.is_stream();
        let to = a.tuple;
        if let Some(ch) = a.channel_to(now, from) {
            let begin = start - 4;
            if let Ok(header) = <&mut [u8; 4]>::try_from(&mut buf[begin..start]) {
                ChannelData::write_header(ch.number, len as u16, header);
            }
            let mut end = start + len;
            // RFC 8656 §12.5: over TCP, ChannelData is padded to 4 bytes.
            if stream {
                let padded = (end - begin + 3) & !3;
                buf[end..begin + padded].fill(0);
                end = begin + padded;
            }
            return Some(Deliver {
                to,
                start: begin,
                end,
            });
        }
        // Data indication: header, XOR-PEER-ADDRESS, DATA header, payload, padding.
        let addr_len = attributes::address_len(&from);
        let begin = start - 4 - (4 + addr_len) - 20;
        let padded_len = (len + 3) & !3;
        let total = 20 + 4 + addr_len + 4 + padded_len;
        let mut txid = [0u8; 12];
        txid[..8].copy_from_slice(&rand.to_be_bytes());
        txid[8..].copy_from_slice(&(relay.0).to_be_bytes());
        let txid = TransactionId(txid);
        let header = MessageType::new(Method::DATA, Class::Indication).to_u16();
        buf[begin..begin + 2].copy_from_slice(&header.to_be_bytes());
        buf[begin + 2..begin + 4].copy_from_slice(&((total - 20) as u16).to_be_bytes());
        buf[begin + 4..begin + 8].copy_from_slice(&crate::stun::MAGIC_COOKIE.to_be_bytes());
        buf[begin + 8..begin + 20].copy_from_slice(&txid.0);
        let at = begin + 20;
        buf[at..at + 2].copy_from_slice(&AttributeType::XOR_PEER_ADDRESS.0.to_be_bytes());
        buf[at + 2..at + 4].copy_from_slice(&(addr_len as u16).to_be_bytes());
        attributes::encode_xor_address(&from, &txid, &mut buf[at + 4..at + 4 + addr_len]);
        let at = at + 4 + addr_len;
        buf[at..at + 2].copy_from_slice(&AttributeType::DATA.0.to_be_bytes());
        buf[at + 2..at + 4].copy_from_slice(&(len as u16).to_be_bytes());
        buf[start + len..start + padded_len].fill(0);
        Some(Deliver {
            to,
            start: begin,
            end: begin + total,
        })
    }
}
