//! What the core has done, for metrics ([`Stats`]), and the live
//! allocations as the admin API lists and ends them ([`SessionView`]).

use std::net::SocketAddr;
use std::time::Instant;

use super::Server;
use crate::turn::allocation::Counters;
use crate::turn::{CredentialKind, EndReason, FiveTuple, SessionGone, SessionId};

/// What this worker's core has done, for metrics. Plain counters: the
/// shell copies them out once a second.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Allocations that became active (relays open, success answered).
    pub allocations_created: u64,
    /// STUN Binding requests (with the magic cookie).
    pub binding_requests: u64,
    /// RFC 3489 Binding requests (no magic cookie) that reached the core.
    pub classic_binding_requests: u64,
    /// Authentication failures answered 401 (Unauthorized), counted even
    /// when the reply budget leaves them unanswered.
    pub auth_unauthorized: u64,
    /// Of those 401s, the ones to requests without integrity: the
    /// challenge every client gets first, not a failure.
    pub auth_challenges: u64,
    /// Authentication failures answered 438 (Stale Nonce), likewise.
    pub auth_stale_nonce: u64,
    /// Authentication failures answered 400 (Bad Request), likewise.
    pub auth_bad_request: u64,
    /// REST usernames refused for having expired (also counted as 401).
    pub auth_expired: u64,
    /// Requests of revoked names (also counted as 401).
    pub auth_revoked: u64,
    /// Allocates refused with 486 (Allocation Quota Reached).
    pub quota_refusals: u64,
    /// Relayed traffic client to peer, live allocations included.
    pub to_peer: Counters,
    /// Relayed traffic peer to client, live allocations included.
    pub to_client: Counters,
}

/// One active allocation, as the admin API lists it.
#[derive(Debug, Clone)]
pub struct SessionView {
    /// What [`Server::end_session`] takes to end it.
    pub id: SessionId,
    /// The owner.
    pub username: String,
    /// The realm it was allocated in.
    pub realm: String,
    /// The client's 5-tuple.
    pub tuple: FiveTuple,
    /// The relayed addresses told to the client.
    pub relayed: Vec<SocketAddr>,
    /// When the Allocate was accepted.
    pub created: Instant,
    /// Relayed traffic so far, client to peer.
    pub to_peer: Counters,
    /// Relayed traffic so far, peer to client.
    pub to_client: Counters,
    /// How the owner authenticated.
    pub credential: CredentialKind,
    /// Distinct peer IPs given permission so far (up to
    /// [`crate::turn::MAX_COUNTED_PEERS`]).
    pub peers: u32,
}

impl Server {
    /// Counters so far, relayed traffic of live allocations included.
    pub fn stats(&self) -> Stats {
        let mut s = self.stats;
        for a in self.allocations.iter().flatten() {
            s.to_peer += a.to_peer;
            s.to_client += a.to_client;
        }
        s
    }

    /// The active allocations.
    pub fn sessions(&self) -> Vec<SessionView> {
        self.allocations
            .iter()
            .enumerate()
            .filter_map(|(slot, a)| {
                let a = a.as_ref().filter(|a| a.is_active())?;
                Some(SessionView {
                    id: SessionId {
                        slot: slot as u32,
                        generation: a.generation,
                    },
                    username: a.username.clone(),
                    realm: a.realm.to_string(),
                    tuple: a.tuple,
                    relayed: a.relays.iter().map(|r| r.advertised).collect(),
                    created: a.created,
                    to_peer: a.to_peer,
                    to_client: a.to_client,
                    credential: a.credential,
                    peers: a.peers.len() as u32,
                })
            })
            .collect()
    }

    /// Ends an allocation at an admin's request (the session is killed):
    /// relays closed, ports and quota released now.
    pub fn end_session(&mut self, now: Instant, id: SessionId) -> Result<(), SessionGone> {
        let live = matches!(
            self.allocations.get(id.slot as usize),
            Some(Some(a)) if a.generation == id.generation && a.is_active()
        );
        if !live {
            return Err(SessionGone);
        }
        self.delete(now, id.slot, EndReason::Killed);
        Ok(())
    }

    /// Ends every allocation, active or opening, for `reason` (the node
    /// stops): each active one ends with its event, as any other end.
    pub fn end_all(&mut self, now: Instant, reason: EndReason) {
        for slot in 0..self.allocations.len() as u32 {
            self.delete(now, slot, reason);
        }
    }
}
