//! Fleet quotas (issue 15): an Allocate that passed the local count waits
//! for the shell's fleet-wide answer, then succeeds, or ends like a local
//! refusal (486, relays closed, local count given back).

use super::quota::{FleetLimits, QuotaAnswer, QuotaKey};
use super::*;

fn fleet(user_quota: u32, total_quota: u32) -> Harness {
    harness(Opts {
        user_quota,
        total_quota,
        fleet: true,
        ..Default::default()
    })
}

impl Harness {
    /// A signed UDP Allocate from `tuple` (its own transaction).
    fn allocate_request(&mut self, now: Instant, tuple: FiveTuple, txid: u8) -> Vec<u8> {
        let nonce = self.nonce(now, tuple);
        request(
            Method::ALLOCATE,
            [txid; 12],
            Some(("alice", &nonce)),
            &|b| transport_udp(b),
        )
    }

    /// The shell answers the fleet question `key`; what the client gets.
    fn quota_answer(&mut self, now: Instant, key: QuotaKey, answer: QuotaAnswer) -> Vec<Vec<u8>> {
        self.server.quota_answered(now, key, answer);
        self.pump(now);
        let mut out = vec![];
        while let Some(t) = self.server.poll_transmit() {
            out.push(t.data);
        }
        out
    }

    fn created(&self) -> usize {
        self.events
            .iter()
            .filter(|e| matches!(e, Event::AllocationCreated { .. }))
            .count()
    }
}

#[test]
fn a_granted_allocate_succeeds_only_once_the_fleet_answers() {
    let mut h = fleet(2, 7);
    let now = h.at(0);
    let req = h.allocate_request(now, client(), 1);
    assert!(
        h.send(now, client(), &req).is_empty(),
        "waits for the fleet"
    );
    assert_eq!(h.opened.len(), 1, "the relay opens meanwhile");
    assert_eq!(h.created(), 0, "not active yet");
    assert_eq!(h.quota_asks.len(), 1);
    let (key, user, realm, limits) = h.quota_asks[0].clone();
    assert_eq!((user.as_str(), realm.as_str()), ("alice", REALM));
    assert_eq!(
        limits,
        FleetLimits {
            user: 2,
            realm: 0,
            total: 7
        }
    );
    let out = h.quota_answer(h.at(1), key, QuotaAnswer::Granted);
    assert_eq!(out.len(), 1);
    assert_eq!(code_of(&out[0]), None, "success");
    assert_eq!(relayed(&out[0]), vec![h.opened[0].1]);
    assert_eq!(h.created(), 1);
    assert!(h.quota_releases.is_empty());
    // Deleting it gives the fleet place back.
    let r = h.call(h.at(2), client(), Method::REFRESH, "alice", 2, &|b| {
        b.add_u32(AttributeType::LIFETIME, 0)
    });
    assert_eq!(code_of(&r), None);
    assert_eq!(h.quota_releases, vec![key]);
    assert_eq!(h.server.shared().quotas.total(), 0);
}

#[test]
fn a_fleet_refusal_answers_486_closes_the_relay_and_frees_the_local_count() {
    let mut h = fleet(2, 0);
    let now = h.at(0);
    let req = h.allocate_request(now, client(), 1);
    assert!(h.send(now, client(), &req).is_empty());
    let key = h.quota_asks[0].0;
    assert_eq!(h.server.shared().quotas.total(), 1, "counted locally first");
    let out = h.quota_answer(now, key, QuotaAnswer::Exceeded);
    assert_eq!(out.len(), 1);
    let m = Message::parse(&out[0]).unwrap();
    assert_eq!(code(&m), Some(486));
    assert_eq!(verify_sha1(&m, &super::key("alice")), Ok(()), "signed");
    assert_eq!(h.closed, vec![h.opened[0].0], "its relay is closed");
    assert_eq!(h.server.allocation_count(), 0);
    assert_eq!(h.server.shared().quotas.total(), 0);
    assert_eq!(h.server.stats().quota_refusals, 1);
    assert_eq!(h.created(), 0, "never announced");
    assert!(h.ended().is_empty(), "nor ended");
    // A second answer for it changes nothing; a retransmission gets 486.
    assert!(h.quota_answer(now, key, QuotaAnswer::Granted).is_empty());
    assert_eq!(h.send(h.at(1), client(), &req), out);
    // The next Allocate on the 5-tuple is a new one.
    let again = h.allocate_request(h.at(2), client(), 2);
    assert!(h.send(h.at(2), client(), &again).is_empty());
    assert_eq!(h.quota_asks.len(), 2);
    assert_ne!(
        h.quota_asks[1].0, key,
        "a new key: a late answer is told apart"
    );
}

#[test]
fn a_retransmitted_allocate_while_the_fleet_is_asked_is_answered_once_ready() {
    let mut h = fleet(2, 0);
    let now = h.at(0);
    let req = h.allocate_request(now, client(), 1);
    assert!(h.send(now, client(), &req).is_empty());
    // The client retransmits: no 437, no second relay, no second question.
    assert!(h.send(h.at(1), client(), &req).is_empty());
    assert_eq!(h.opened.len(), 1);
    assert_eq!(h.quota_asks.len(), 1);
    // Another transaction on the 5-tuple is another Allocate: 437.
    let other = h.allocate_request(h.at(1), client(), 2);
    assert_eq!(code_of(&h.send(h.at(1), client(), &other)[0]), Some(437));
    let key = h.quota_asks[0].0;
    let out = h.quota_answer(h.at(2), key, QuotaAnswer::Granted);
    assert_eq!(code_of(&out[0]), None);
    // From now on a retransmission gets the same answer from the cache.
    assert_eq!(h.send(h.at(3), client(), &req), out);
    assert_eq!(h.created(), 1);
}

#[test]
fn a_busy_store_answers_508_and_an_allocation_gone_meanwhile_ignores_its_answer() {
    let mut h = fleet(0, 0);
    let now = h.at(0);
    let req = h.allocate_request(now, client(), 1);
    assert!(h.send(now, client(), &req).is_empty());
    let out = h.quota_answer(now, h.quota_asks[0].0, QuotaAnswer::Busy);
    assert_eq!(code_of(&out[0]), Some(508));
    assert_eq!(h.server.stats().quota_refusals, 0, "not a quota refusal");
    // A TCP client that closes while the fleet is asked: the place is
    // given back, and the late grant changes nothing.
    let tcp = FiveTuple {
        transport: Transport::Tcp,
        ..udp("203.0.113.9:5000")
    };
    let req = h.allocate_request(now, tcp, 2);
    assert!(h.send(now, tcp, &req).is_empty());
    let key = h.quota_asks[1].0;
    h.server.handle_client_closed(now, tcp);
    h.pump(now);
    assert!(h.quota_releases.contains(&key));
    assert!(h.quota_answer(now, key, QuotaAnswer::Granted).is_empty());
    assert_eq!(h.server.allocation_count(), 0);
    assert_eq!(h.created(), 0);
    assert_eq!(h.server.shared().quotas.total(), 0);
}

#[test]
fn without_fleet_quotas_nothing_is_asked() {
    let mut h = harness(Opts {
        user_quota: 1,
        ..Default::default()
    });
    assert_eq!(h.allocate_code(h.at(0), "203.0.113.5:1"), None);
    assert_eq!(h.allocate_code(h.at(0), "203.0.113.5:2"), Some(486));
    assert!(h.quota_asks.is_empty());
    assert!(h.quota_releases.is_empty());
}
