//! Allocate (RFC 8656 §7.2): the checks, in the RFC's order, then the
//! quota, the ports and the relay sockets asked of the shell. The success
//! answer waits for the sockets ([`super::lifecycle`]).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::{Ctx, Server};
use crate::auth::Authenticated;
use crate::auth::Origin;
use crate::stun::Message;
use crate::turn::allocation::{Allocation, Bandwidth, Counters, PendingAllocate, Relay};
use crate::turn::attributes::{
    self as attr, AdditionalAddressFamily, AddressFamily, DontFragment, EvenPort,
    RequestedAddressFamily, RequestedTransport, ReservationToken,
};
use crate::turn::error::{
    ADDRESS_FAMILY_NOT_SUPPORTED, ALLOCATION_MISMATCH, ALLOCATION_QUOTA_REACHED, BAD_REQUEST,
    INSUFFICIENT_CAPACITY, UNSUPPORTED_TRANSPORT_PROTOCOL,
};
use crate::turn::quota::{Limits, QuotaExceeded};
use crate::turn::shared::{Reservation, RESERVATION_TTL};
use crate::turn::{tcp_relay, RelayId};
use crate::turn::{CredentialKind, Event, Refusal};

impl Server {
    pub(super) fn allocate(
        &mut self,
        now: Instant,
        ctx: &Ctx,
        msg: &Message<'_>,
        auth: Authenticated,
    ) {
        let signer = auth.signer.clone();
        // "The server checks if the 5-tuple is currently in use by an
        // existing allocation. If yes, the server rejects the request with a
        // 437 (Allocation Mismatch) error." (A retransmission was answered
        // from the cache before this.)
        if let Some(&slot) = self.by_tuple.get(&ctx.tuple) {
            // A retransmission of the Allocate still waiting (for its relays
            // or the fleet's quota answer) gets that answer when it comes,
            // then from the cache: never a 437 for its own allocation.
            let pending = self.allocation_at(slot).pending.as_ref();
            if pending.is_some_and(|p| p.txid == ctx.txid) {
                return;
            }
            return self.error(now, ctx, ALLOCATION_MISMATCH, &signer);
        }
        if let Some(code) = self.drain_redirect(now, ctx, &signer) {
            return self.refused(now, ctx, &auth.username, code, Refusal::Draining);
        }
        match self.allocate_checks(now, ctx, msg) {
            Ok(mut plan) => {
                plan.lifetime = self.capped_lifetime(now, &auth, plan.lifetime);
                self.start_allocation(now, ctx, msg, auth, plan)
            }
            Err(code) => self.error(now, ctx, code, &signer),
        }
    }

    /// RFC 8656 §7.2's checks, in its order: the first failure answers.
    pub(super) fn allocate_checks(
        &self,
        now: Instant,
        ctx: &Ctx,
        msg: &Message<'_>,
    ) -> Result<Plan, u16> {
        let cfg = self.shared.config();
        // "If the REQUESTED-TRANSPORT attribute is not included or is
        // malformed, the server rejects the request with a 400 (Bad Request)
        // error. Otherwise, if the attribute is included but specifies a
        // protocol that is not supported by the server, the server rejects
        // the request with a 442 (Unsupported Transport Protocol) error."
        let RequestedTransport(protocol) = attr::require(msg)?;
        let tcp = protocol == RequestedTransport::TCP && cfg.tcp_relay;
        if protocol != RequestedTransport::UDP && !tcp {
            return Err(UNSUPPORTED_TRANSPORT_PROTOCOL);
        }
        let (additional_at, draft_code_points) = AdditionalAddressFamily::code_point(msg);
        let has_additional = msg.get(additional_at).is_some();
        // RFC 6062 §5.1: TCP relays for TCP/TLS clients only, and without
        // the UDP-only attributes.
        if tcp
            && (!ctx.tuple.transport.is_stream()
                || attr::has::<DontFragment>(msg)
                || attr::has::<EvenPort>(msg)
                || attr::has::<ReservationToken>(msg)
                || has_additional)
        {
            return Err(BAD_REQUEST);
        }
        // "The request may contain a DONT-FRAGMENT attribute": supported on
        // UDP relays, so passed to the relay socket.
        let dont_fragment = attr::has::<DontFragment>(msg);
        let has_even = attr::has::<EvenPort>(msg);
        let has_requested = attr::has::<RequestedAddressFamily>(msg);
        // RFC 8656 §7.2: LIFETIME 0 deletes on Refresh only; an Allocate
        // asking for 0 gets the default like any value below it.
        let lifetime = match self.lifetime(msg)? {
            l if l.is_zero() => cfg.default_lifetime,
            l => l,
        };

        // "If yes, and the request also contains an EVEN-PORT or
        // REQUESTED-ADDRESS-FAMILY or ADDITIONAL-ADDRESS-FAMILY attribute,
        // the server rejects the request with a 400 (Bad Request) error.
        // ... If the token is not valid for some reason, the server rejects
        // the request with a 508 (Insufficient Capacity) error."
        if attr::has::<ReservationToken>(msg) {
            if has_even || has_requested || has_additional {
                return Err(BAD_REQUEST);
            }
            let ReservationToken(token) = attr::require(msg)?;
            let reserved = self.shared.reservations().remove(&token);
            return match reserved {
                Some(r) if r.expires > now => Ok(Plan {
                    families: vec![AddressFamily::of(r.addr.ip())],
                    family_error: None,
                    draft_code_points,
                    reserved: Some(r.addr),
                    even: false,
                    pair: false,
                    dont_fragment,
                    lifetime,
                    tcp: false,
                }),
                Some(r) => {
                    self.shared.ports().release(r.addr.port());
                    Err(INSUFFICIENT_CAPACITY)
                }
                None => Err(INSUFFICIENT_CAPACITY),
            };
        }

        let (families, family_error) = match (has_requested, has_additional) {
            // "If yes [both families], then the server rejects the request
            // with a 400 (Bad Request) error."
            (true, true) => return Err(BAD_REQUEST),
            // "If the server does not support the address family requested
            // by the client in REQUESTED-ADDRESS-FAMILY ... 440 (Address
            // Family not Supported)".
            (true, false) => {
                let RequestedAddressFamily(f) = attr::require(msg)?;
                if cfg.relay_ip(f.is_v4()).is_none() {
                    return Err(ADDRESS_FAMILY_NOT_SUPPORTED);
                }
                (vec![f], None)
            }
            // "If yes, and the attribute value is 0x01 (IPv4 address
            // family), then the server rejects the request with a 400 (Bad
            // Request) error." One family served: success, with an
            // ADDRESS-ERROR-CODE for the other.
            (false, true) => {
                attr::get_at::<AdditionalAddressFamily>(msg, additional_at)?;
                match (cfg.relay_ip(true).is_some(), cfg.relay_ip(false).is_some()) {
                    (true, true) => (vec![AddressFamily::V4, AddressFamily::V6], None),
                    (true, false) => (vec![AddressFamily::V4], Some(AddressFamily::V6)),
                    (false, true) => (vec![AddressFamily::V6], Some(AddressFamily::V4)),
                    (false, false) => return Err(ADDRESS_FAMILY_NOT_SUPPORTED),
                }
            }
            // "If the REQUESTED-ADDRESS-FAMILY attribute is absent and the
            // server does not support the IPv4 address family, the server
            // MUST include an ERROR-CODE attribute with the 440 (Address
            // Family not Supported) response code."
            (false, false) => {
                if cfg.relay_ip(true).is_none() {
                    return Err(ADDRESS_FAMILY_NOT_SUPPORTED);
                }
                (vec![AddressFamily::V4], None)
            }
        };
        // EVEN-PORT: "If the server cannot satisfy the request, then the
        // server rejects the request with a 508 (Insufficient Capacity)
        // error" (when ports are taken, in `start_allocation`).
        let (even, pair) = match attr::get::<EvenPort>(msg)? {
            None => (false, false),
            Some(e) => (true, e.reserve),
        };
        Ok(Plan {
            families,
            family_error,
            draft_code_points,
            reserved: None,
            even,
            pair,
            dont_fragment,
            lifetime,
            tcp,
        })
    }

    pub(super) fn start_allocation(
        &mut self,
        now: Instant,
        ctx: &Ctx,
        msg: &Message<'_>,
        auth: Authenticated,
        plan: Plan,
    ) {
        let signer = auth.signer.clone();
        // "At any point, the server MAY choose to reject the request with a
        // 486 (Allocation Quota Reached) error if it feels the client is
        // trying to exceed some locally defined allocation quota."
        // The request was verified in its realm, so it has a snapshot.
        let auth_dir = self.shared.auth.directory_in(&auth.realm);
        let dir = auth_dir.unwrap_or_else(|| self.shared.auth.directory());
        // A self-test credential (issue 20) holds one allocation at a
        // time, whatever `user_quota` or a stored quota says.
        let selftest = matches!(auth.origin, Origin::Rest { .. })
            && self.shared.auth.is_selftest(&auth.username);
        let limits = Limits {
            user: match selftest {
                true => Some(1),
                false => dir.quota_of(&auth.username).allocations,
            },
            realm: dir.realm_quota.allocations,
        };
        // One snapshot serves both the quota and the bandwidth limit.
        let bps = self.bytes_per_sec(&dir, &auth.username);
        let credential = match auth.origin {
            Origin::LongTerm if dir.is_static(&auth.username) => CredentialKind::Static,
            Origin::LongTerm => CredentialKind::Stored,
            Origin::Rest { .. } => CredentialKind::Rest,
            Origin::OAuth { .. } => CredentialKind::OAuth,
        };
        drop(dir);
        let source = ctx.tuple.client.ip();
        let quotas = &self.shared.quotas;
        if let Err(full) = quotas.acquire_in(&auth.realm, &auth.username, source, limits) {
            if let Some(r) = plan.reserved {
                self.shared.ports().release(r.port());
            }
            self.stats.quota_refusals += 1;
            let reason = match full {
                QuotaExceeded::User => Refusal::UserQuota,
                QuotaExceeded::Realm => Refusal::RealmQuota,
                QuotaExceeded::Total => Refusal::TotalQuota,
                QuotaExceeded::Source => Refusal::SourceQuota,
            };
            self.refused(now, ctx, &auth.username, ALLOCATION_QUOTA_REACHED, reason);
            return self.error(now, ctx, ALLOCATION_QUOTA_REACHED, &signer);
        }
        // Ports for each family; none left: 508, "no more relayed transport
        // addresses available at that time".
        let mut relays = Vec::new();
        let mut token = None;
        for (i, &family) in plan.families.iter().enumerate() {
            let ip = self
                .shared
                .config()
                .relay_ip(family.is_v4())
                .expect("checked");
            let port = match plan.reserved {
                Some(addr) => Some(addr.port()),
                None => self.shared.ports().take(plan.even, plan.pair && i == 0),
            };
            let Some(port) = port else {
                for r in &relays {
                    let r: &Relay = r;
                    self.shared.ports().release(r.local.port());
                }
                self.shared
                    .quotas
                    .release_in(&auth.realm, &auth.username, source);
                self.refused(
                    now,
                    ctx,
                    &auth.username,
                    INSUFFICIENT_CAPACITY,
                    Refusal::Capacity,
                );
                return self.error(now, ctx, INSUFFICIENT_CAPACITY, &signer);
            };
            if plan.pair && i == 0 {
                let t = self.reservation_token();
                self.shared.reservations().insert(
                    t,
                    Reservation {
                        addr: SocketAddr::new(ip, port + 1),
                        expires: now + RESERVATION_TTL,
                    },
                );
                token = Some(t);
            }
            let local = SocketAddr::new(ip, port);
            relays.push(Relay {
                id: RelayId(0),
                local,
                advertised: self.shared.config().advertised(local),
                open: false,
            });
        }

        let slot = self.free_slots.pop().unwrap_or_else(|| {
            self.allocations.push(None);
            (self.allocations.len() - 1) as u32
        });
        for r in &mut relays {
            r.id = self.new_relay(slot);
            let request = Self::open_relay(r.id, r.local, plan.dont_fragment, plan.tcp);
            self.requests.push_back(request);
        }
        self.generation = self.generation.wrapping_add(1);
        self.allocations[slot as usize] = Some(Allocation {
            generation: self.generation,
            tuple: ctx.tuple,
            username: auth.username,
            realm: auth.realm,
            signer: auth.signer,
            created: now,
            expires: now + plan.lifetime,
            lifetime: plan.lifetime,
            armed: None,
            reservation: token,
            relays,
            permissions: Vec::new(),
            channels: Vec::new(),
            dont_fragment: plan.dont_fragment,
            tcp: plan.tcp,
            tcp_peers: Vec::new(),
            connects: Bandwidth::new(now, tcp_relay::CONNECT_RATE),
            to_peer: Counters::default(),
            to_client: Counters::default(),
            bw_to_peer: Bandwidth::new(now, bps),
            bw_to_client: Bandwidth::new(now, bps),
            bps,
            origin: auth.origin,
            credential,
            peers: Vec::new(),
            pending: Some(PendingAllocate {
                txid: ctx.txid,
                fingerprint: msg.has_fingerprint(),
                even_port: plan.even,
                token,
                family_error: plan.family_error,
                draft_code_points: plan.draft_code_points,
                attempts: 1,
            }),
        });
        self.by_tuple.insert(ctx.tuple, slot);
        self.ask_fleet(slot, limits);
    }

    /// Bytes per second per direction for `user`'s allocations: the user's
    /// stored quota, else the realm's, else `max_bps`.
    pub(super) fn bytes_per_sec(&self, dir: &crate::auth::Directory, user: &str) -> f64 {
        let bps = dir
            .quota_of(user)
            .bps
            .or(dir.realm_quota.bps)
            .unwrap_or(self.shared.config().max_bps);
        bps as f64 / 8.0
    }
}

/// What an accepted Allocate will get.
pub(super) struct Plan {
    families: Vec<AddressFamily>,
    family_error: Option<AddressFamily>,
    /// The client spoke draft code points (0x8032): answer in kind (0x8033).
    draft_code_points: bool,
    reserved: Option<SocketAddr>,
    even: bool,
    pair: bool,
    dont_fragment: bool,
    lifetime: Duration,
    tcp: bool,
}

impl Server {
    /// Tells the rest of the server an authenticated Allocate was refused.
    pub(super) fn refused(
        &mut self,
        now: Instant,
        ctx: &Ctx,
        username: &str,
        code: u16,
        reason: Refusal,
    ) {
        self.events.push_back(Event::AllocationRefused {
            tuple: ctx.tuple,
            username: username.to_string(),
            code,
            reason,
            at: now,
        });
    }
}
