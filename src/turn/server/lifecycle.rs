//! An allocation's life after its checks: relay sockets opened (or
//! retried), the success answer, and deletion, which gives back everything
//! at once.

use std::net::SocketAddr;
use std::time::Instant;

use super::{Answer, Ctx, Server};
use crate::stun::attributes::{self, AttributeType};
use crate::stun::{Class, MessageType, Method};
use crate::turn::error::{ADDRESS_FAMILY_NOT_SUPPORTED, INSUFFICIENT_CAPACITY};
use crate::turn::{
    AllocationEnd, EndReason, Event, Refusal, RelayError, RelayId, Request, SessionId,
};

/// Relay ports tried before an Allocate gets 508.
const RELAY_ATTEMPTS: u8 = 8;

impl Server {
    /// The shell's answer to [`Request::OpenUdpRelay`] and
    /// [`Request::ListenTcpRelay`]: the bound address, or why not.
    pub fn relay_opened(
        &mut self,
        now: Instant,
        relay: RelayId,
        result: Result<SocketAddr, RelayError>,
    ) {
        let Some(Some(slot)) = self.relays.get(relay.0 as usize).copied() else {
            return;
        };
        let Some(a) = self.allocations[slot as usize].as_mut() else {
            return;
        };
        let Some(pending) = a.pending.as_mut() else {
            return;
        };
        let Some(r) = a.relays.iter_mut().find(|r| r.id == relay) else {
            return;
        };
        match result {
            Ok(bound) => {
                debug_assert_eq!(bound, r.local, "the relay is bound where asked");
                r.open = true;
            }
            Err(RelayError::AddrInUse | RelayError::Other) => {
                // The port is taken outside our pool (another program), or
                // unusable: try another, a bounded number of times.
                let old = r.local;
                let next = if pending.attempts < RELAY_ATTEMPTS {
                    self.shared.ports().take(pending.even_port, false)
                } else {
                    None
                };
                self.shared.ports().release(old.port());
                pending.attempts += 1;
                match next {
                    Some(port) => {
                        r.local = SocketAddr::new(old.ip(), port);
                        r.advertised = self.shared.config().advertised(r.local);
                        let request = Self::open_relay(relay, r.local, a.dont_fragment, a.tcp);
                        self.requests.push_back(request);
                        return;
                    }
                    None => {
                        let ctx = Ctx {
                            tuple: a.tuple,
                            message_type: MessageType::new(Method::ALLOCATE, Class::Request),
                            txid: pending.txid,
                            fingerprint: pending.fingerprint,
                        };
                        let signer = a.signer.clone();
                        let username = a.username.clone();
                        // The failed relay's port is back in the pool already.
                        r.local = SocketAddr::new(old.ip(), 0);
                        // Still pending: it ends without an event.
                        self.delete(now, slot, EndReason::Deleted);
                        let code = INSUFFICIENT_CAPACITY;
                        self.refused(now, &ctx, &username, code, Refusal::Capacity);
                        return self.error(now, &ctx, code, &signer);
                    }
                }
            }
        }
        // With fleet quotas, the quota answer may still be outstanding.
        if a.relays.iter().all(|r| r.open) && self.quota_cleared(slot) {
            self.activate(now, slot);
        }
    }

    /// How the shell is asked for relay `relay`: a UDP socket, or a TCP
    /// listener for an RFC 6062 allocation.
    pub(super) fn open_relay(
        relay: RelayId,
        addr: SocketAddr,
        dont_fragment: bool,
        tcp: bool,
    ) -> Request {
        if tcp {
            Request::ListenTcpRelay { relay, addr }
        } else {
            Request::OpenUdpRelay {
                relay,
                addr,
                dont_fragment,
            }
        }
    }

    pub(super) fn activate(&mut self, now: Instant, slot: u32) {
        let a = self.allocations[slot as usize].as_mut().expect("live slot");
        let pending = a.pending.take().expect("pending");
        let ctx = Ctx {
            tuple: a.tuple,
            message_type: MessageType::new(Method::ALLOCATE, Class::Request),
            txid: pending.txid,
            fingerprint: pending.fingerprint,
        };
        let relayed: Vec<SocketAddr> = a.relays.iter().map(|r| r.advertised).collect();
        let (lifetime, signer, client) = (a.lifetime, a.signer.clone(), a.tuple.client);
        let created = Event::AllocationCreated {
            session: SessionId {
                slot,
                generation: a.generation,
            },
            tuple: a.tuple,
            username: a.username.clone(),
            realm: a.realm.to_string(),
            credential: a.credential,
            relayed: relayed.clone(),
            lifetime,
            at: now,
        };
        self.arm(slot);
        self.stats.allocations_created += 1;
        self.events.push_back(created);
        self.answer(now, &ctx, Answer::Success, Some(&signer), true, |b| {
            for addr in &relayed {
                b.add_xor_address(AttributeType::XOR_RELAYED_ADDRESS, addr);
            }
            if let Some(family) = pending.family_error {
                // ADDRESS-ERROR-CODE: family, reserved, then ERROR-CODE's layout.
                let reason = attributes::reason_phrase(ADDRESS_FAMILY_NOT_SUPPORTED);
                let attr = if pending.draft_code_points {
                    AttributeType::ADDRESS_ERROR_CODE_DRAFT
                } else {
                    AttributeType::ADDRESS_ERROR_CODE
                };
                b.add_with(attr, 4 + reason.len(), |out| {
                    attributes::ErrorCode::encode(ADDRESS_FAMILY_NOT_SUPPORTED, reason, out);
                    out[0] = family.wire();
                });
            }
            b.add_u32(AttributeType::LIFETIME, lifetime.as_secs() as u32);
            if let Some(token) = pending.token {
                b.add(AttributeType::RESERVATION_TOKEN, &token);
            }
            b.add_xor_mapped_address(&client);
        });
    }

    /// Ends an allocation: relay sockets, ports, quota, all at once. An
    /// active one ends with [`Event::AllocationDeleted`] (its counters and
    /// `reason`) and, for a stream client, [`Request::CloseStream`]; one
    /// still opening its relays was never announced and ends quietly.
    pub(super) fn delete(&mut self, now: Instant, slot: u32, reason: EndReason) {
        let Some(a) = self.allocations[slot as usize].take() else {
            return;
        };
        self.stats.to_peer += a.to_peer;
        self.stats.to_client += a.to_client;
        self.by_tuple.remove(&a.tuple);
        self.free_slots.push(slot);
        {
            let mut ports = self.shared.ports();
            for r in &a.relays {
                if r.local.port() != 0 {
                    ports.release(r.local.port());
                }
            }
        }
        for r in &a.relays {
            self.relays[r.id.0 as usize] = None;
            self.free_relays.push(r.id.0);
            self.requests.push_back(Request::CloseRelay { relay: r.id });
        }
        self.shared
            .quotas
            .release_in(&a.realm, &a.username, a.tuple.client.ip());
        self.release_fleet(slot);
        // F7: the EVEN-PORT `port + 1` held for this allocation goes with
        // it, so reservations are never a way around `user_quota`.
        if let Some(token) = a.reservation {
            if let Some(r) = self.shared.reservations().remove(&token) {
                self.shared.ports().release(r.addr.port());
            }
        }
        self.close_connections(&a.tcp_peers);
        if a.pending.is_none() {
            if a.tuple.transport.is_stream() {
                // The answer to a Refresh with LIFETIME 0 is queued before
                // this, and the stream closes after sending it.
                self.requests
                    .push_back(Request::CloseStream { tuple: a.tuple });
            }
            self.events
                .push_back(Event::AllocationDeleted(Box::new(AllocationEnd {
                    session: SessionId {
                        slot,
                        generation: a.generation,
                    },
                    tuple: a.tuple,
                    relayed: a.relays.iter().map(|r| r.advertised).collect(),
                    peers: a.peers.len() as u32,
                    username: a.username,
                    realm: a.realm.to_string(),
                    credential: a.credential,
                    start: a.created,
                    end: now,
                    to_peer: a.to_peer,
                    to_client: a.to_client,
                    reason,
                })));
        }
    }
}
