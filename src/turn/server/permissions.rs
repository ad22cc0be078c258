//! CreatePermission and ChannelBind, and the judgement of a peer address
//! they share with RFC 6062 Connect (400, 403, 443).

use std::net::{IpAddr, SocketAddr};
use std::time::Instant;

use super::{Answer, Ctx, Server};
use crate::auth::Authenticated;
use crate::stun::Message;
use crate::turn::allocation::{Channel, CHANNEL_LIFETIME};
use crate::turn::attributes::{self as attr, ChannelNumber, XorPeerAddress};
use crate::turn::error::{
    BAD_REQUEST, FORBIDDEN, INSUFFICIENT_CAPACITY, PEER_ADDRESS_FAMILY_MISMATCH,
};

impl Server {
    /// Judges one decoded XOR-PEER-ADDRESS (a malformed one is already a
    /// 400): 403 by policy, 443 for a family the allocation lacks.
    pub(in crate::turn) fn peer_checked(
        &self,
        slot: u32,
        peer: SocketAddr,
    ) -> Result<SocketAddr, u16> {
        // Policy first: a denied address is refused as such whatever the
        // family it is written in (::ffff:127.0.0.1 on an IPv4 allocation).
        // RFC 8656: "The server MAY impose restrictions on the IP address
        // ... if a value is not allowed, the server rejects the request with
        // a 403 (Forbidden) error."
        if !self.shared.config().policy.allows(peer) {
            return Err(FORBIDDEN);
        }
        // A self-test credential (issue 20) is handed to anyone who loads
        // a public page: its allocation may reach this server's own relay
        // addresses only (the page relays between two of them), or it
        // would be an open relay.
        if self
            .shared
            .auth
            .is_selftest(&self.allocation_at(slot).username)
            && !self.is_relay_ip(peer.ip())
        {
            return Err(FORBIDDEN);
        }
        // RFC 8656: an XOR-PEER-ADDRESS of another address family than the
        // allocation's relayed address gets 443 (Peer Address Family
        // Mismatch).
        if !self.allocation_at(slot).has_family_of(peer.ip()) {
            return Err(PEER_ADDRESS_FAMILY_MISMATCH);
        }
        Ok(peer)
    }

    /// Whether `ip` is an address this server relays from, as bound or as
    /// told to clients (`external_ip`).
    fn is_relay_ip(&self, ip: IpAddr) -> bool {
        let c = self.shared.config();
        c.relay_ips
            .iter()
            .any(|r| *r == ip || c.advertised(SocketAddr::new(*r, 0)).ip() == ip)
    }

    pub(super) fn create_permission(
        &mut self,
        now: Instant,
        ctx: &Ctx,
        msg: &Message<'_>,
        auth: Authenticated,
    ) {
        let Some(slot) = self.own_allocation(now, ctx, &auth) else {
            return;
        };
        let signer = auth.signer;
        // All or nothing (RFC 8656 §8.2): judge every address first. "The
        // CreatePermission request MUST contain at least one XOR-PEER-ADDRESS
        // attribute ... If no such attribute exists, or if any of these
        // attributes are invalid, then a 400 (Bad Request) error is
        // returned."
        let mut peers: Vec<IpAddr> = Vec::new();
        for peer in XorPeerAddress::all(msg) {
            match peer.and_then(|p| self.peer_checked(slot, p)) {
                Ok(p) => peers.push(p.ip()),
                Err(code) => return self.error(now, ctx, code, &signer),
            }
        }
        if peers.is_empty() {
            return self.error(now, ctx, BAD_REQUEST, &signer);
        }
        let max = self.shared.config().max_permissions;
        let a = self.allocations[slot as usize].as_mut().expect("live");
        a.sweep(now);
        let new = peers
            .iter()
            .enumerate()
            .filter(|(i, ip)| {
                !peers[..*i].contains(ip) && !a.permissions.iter().any(|p| p.ip == **ip)
            })
            .count();
        // "If the request is valid, but the server is unable to satisfy the
        // request due to some capacity limit or similar, then a 508
        // (Insufficient Capacity) error is returned."
        if a.permissions.len() + new > max {
            return self.error(now, ctx, INSUFFICIENT_CAPACITY, &signer);
        }
        for ip in peers {
            a.permit(now, ip, max);
        }
        self.answer(now, ctx, Answer::Success, Some(&signer), true, |_| {});
    }

    pub(super) fn channel_bind(
        &mut self,
        now: Instant,
        ctx: &Ctx,
        msg: &Message<'_>,
        auth: Authenticated,
    ) {
        let Some(slot) = self.own_allocation(now, ctx, &auth) else {
            return;
        };
        let signer = auth.signer;
        if self.allocation_at(slot).tcp {
            // RFC 6062 §5: channels are for UDP relays.
            return self.error(now, ctx, BAD_REQUEST, &signer);
        }
        // RFC 8656 §11.2: "The request contains both a CHANNEL-NUMBER and
        // an XOR-PEER-ADDRESS attribute" and the number is a channel's,
        // else 400.
        let checked = attr::require::<ChannelNumber>(msg).and_then(|ChannelNumber(n)| {
            let peer = XorPeerAddress::require(msg)?;
            Ok((n, self.peer_checked(slot, peer)?))
        });
        let (number, peer) = match checked {
            Ok(c) => c,
            Err(code) => return self.error(now, ctx, code, &signer),
        };
        let (max_channels, max_permissions) = (
            self.shared.config().max_channels,
            self.shared.config().max_permissions,
        );
        let a = self.allocations[slot as usize].as_mut().expect("live");
        a.sweep(now);
        // "The channel number is currently bound to a different transport
        // address" or "the transport address is currently bound to a
        // different channel number" → 400; the cool-down counts as bound.
        if a.channels
            .iter()
            .any(|c| (c.number == number) != (c.peer == peer))
        {
            return self.error(now, ctx, BAD_REQUEST, &signer);
        }
        let exists = a.channels.iter().any(|c| c.number == number);
        let needs_permission = !a.permissions.iter().any(|p| p.ip == peer.ip());
        if (!exists && a.channels.len() >= max_channels)
            || (needs_permission && a.permissions.len() >= max_permissions)
        {
            // Beyond `max_channels` or `max_permissions`: "the server is
            // unable to satisfy the request due to some capacity limit".
            return self.error(now, ctx, INSUFFICIENT_CAPACITY, &signer);
        }
        match a.channels.iter_mut().find(|c| c.number == number) {
            Some(c) => c.expires = now + CHANNEL_LIFETIME,
            None => a.channels.push(Channel {
                number,
                peer,
                expires: now + CHANNEL_LIFETIME,
            }),
        }
        // RFC 8656 §11.2: binding a channel also installs or refreshes the
        // permission for the peer's IP.
        a.permit(now, peer.ip(), max_permissions);
        self.answer(now, ctx, Answer::Success, Some(&signer), true, |_| {});
    }
}
