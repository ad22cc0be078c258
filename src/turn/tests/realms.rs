//! Tenant realms (issue 19) through the core: the connection's server name
//! or the request's ORIGIN picks the realm, the 401 names it, only its
//! users authenticate in it, and its quota counts its own allocations.

use super::*;
use crate::auth::{Quota, Tenant};

const A: &str = "a.realm";
const B: &str = "b.realm";

fn tenants() -> Vec<Tenant> {
    vec![
        Tenant {
            name: A.into(),
            sni: vec!["a.example".into()],
            origins: vec!["https://a.example".into()],
        },
        Tenant {
            name: B.into(),
            sni: vec!["b.example".into()],
            origins: vec![],
        },
    ]
}

/// A harness serving `REALM` (alice, bob), A (ann; quota 1) and B (ben;
/// quota 2).
fn realms_harness() -> Harness {
    let h = harness(Opts {
        tenants: tenants(),
        ..Default::default()
    });
    let auth = &h.server.shared().auth;
    for (realm, spec, quota) in [(A, "ann:apw", 1), (B, "ben:bpw", 2)] {
        let mut c = Credentials::new(realm);
        c.add_spec(spec).unwrap();
        let mut d = Directory::new(c);
        d.realm_quota = Quota {
            allocations: Some(quota),
            bps: None,
        };
        auth.replace(d);
    }
    h
}

fn tcp(client: &str) -> FiveTuple {
    FiveTuple {
        transport: Transport::Tcp,
        client: client.parse().unwrap(),
        server: "198.51.100.1:5349".parse().unwrap(),
    }
}

fn with_origin(origin: &'static str) -> impl Fn(&mut MessageBuilder<'_>) {
    move |b| {
        transport_udp(b);
        b.add(AttributeType::ORIGIN, origin.as_bytes());
    }
}

/// A new transaction id per request: a repeated one would be answered
/// from the retransmission cache.
fn next_txid() -> [u8; 12] {
    static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(1);
    let mut id = [7; 12];
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    id[..4].copy_from_slice(&n.to_be_bytes());
    id
}

/// A signed Allocate by `user` with `password` in `realm`.
fn signed(user: &str, password: &str, realm: &str, nonce: &[u8], attrs: Attrs<'_>) -> Vec<u8> {
    let mut buf = vec![0u8; 1500];
    let mut b = MessageBuilder::new(
        &mut buf,
        MessageType::new(Method::ALLOCATE, Class::Request),
        TransactionId(next_txid()),
    );
    attrs(&mut b);
    b.add_username(user);
    b.add_realm(realm);
    b.add_nonce(nonce);
    b.add_message_integrity(&long_term_key_md5(user, realm, password));
    let n = b.finish().unwrap();
    buf.truncate(n);
    buf
}

impl Harness {
    /// An unsigned Allocate's 401: (REALM, NONCE).
    fn challenge(&mut self, now: Instant, tuple: FiveTuple, attrs: Attrs<'_>) -> (String, Vec<u8>) {
        let req = request(Method::ALLOCATE, next_txid(), None, attrs);
        let answers = self.send(now, tuple, &req);
        let m = Message::parse(&answers[0]).unwrap();
        assert_eq!(code(&m), Some(401));
        let realm = m.get(AttributeType::REALM).unwrap();
        let nonce = m.get(AttributeType::NONCE).unwrap().to_vec();
        (String::from_utf8(realm.to_vec()).unwrap(), nonce)
    }

    fn signed_code(&mut self, now: Instant, tuple: FiveTuple, req: &[u8]) -> Option<u16> {
        let answers = self.send(now, tuple, req);
        code_of(&answers[0])
    }

    fn created_realms(&self) -> Vec<String> {
        self.events
            .iter()
            .filter_map(|e| match e {
                Event::AllocationCreated { realm, .. } => Some(realm.clone()),
                _ => None,
            })
            .collect()
    }
}

#[test]
fn an_origin_selects_its_realm_and_only_that_realms_users_get_in() {
    let mut h = realms_harness();
    let now = h.at(0);
    let ua = udp("203.0.113.5:40000");
    let a_origin = with_origin("https://a.example");
    // No ORIGIN: the default realm. An ORIGIN that is not exactly A's too.
    assert_eq!(h.challenge(now, ua, &|b| transport_udp(b)).0, REALM);
    let near = with_origin("https://a.example/");
    assert_eq!(h.challenge(now, ua, &near).0, REALM);
    let (realm, nonce) = h.challenge(now, ua, &a_origin);
    assert_eq!(realm, A);
    // alice of the default realm, signing for A with her password: 401.
    let req = signed("alice", "wonderland", A, &nonce, &a_origin);
    assert_eq!(h.signed_code(now, ua, &req), Some(401));
    // ann signing for A without the ORIGIN is served in the default,
    // where A's nonce is stale (438), and with the default's nonce: 401.
    let req = signed("ann", "apw", A, &nonce, &|b| transport_udp(b));
    assert_eq!(h.signed_code(now, ua, &req), Some(438));
    let (_, default_nonce) = h.challenge(now, ua, &|b| transport_udp(b));
    let req = signed("ann", "apw", A, &default_nonce, &|b| transport_udp(b));
    assert_eq!(h.signed_code(now, ua, &req), Some(401));
    // ann in the default realm: not a user there.
    let req = signed("ann", "apw", REALM, &default_nonce, &|b| transport_udp(b));
    assert_eq!(h.signed_code(now, ua, &req), Some(401));
    // ann with A's ORIGIN gets in, and her allocation is recorded in A.
    let req = signed("ann", "apw", A, &nonce, &a_origin);
    assert_eq!(h.signed_code(now, ua, &req), None);
    assert_eq!(h.created_realms(), [A]);
    // alice still gets in to the default realm.
    let other = udp("203.0.113.6:1");
    let (realm, nonce) = h.challenge(now, other, &|b| transport_udp(b));
    assert_eq!(realm, REALM);
    let req = signed("alice", "wonderland", REALM, &nonce, &|b| transport_udp(b));
    assert_eq!(h.signed_code(now, other, &req), None);
    assert_eq!(h.created_realms(), [A, REALM]);
}

#[test]
fn a_connections_server_name_selects_its_realm_before_any_origin() {
    let mut h = realms_harness();
    let now = h.at(0);
    let tb = tcp("203.0.113.7:40000");
    h.server.handle_server_name(tb, "B.Example.");
    // SNI first: A's ORIGIN on B's connection is still served in B.
    let a_origin = with_origin("https://a.example");
    let (realm, nonce) = h.challenge(now, tb, &a_origin);
    assert_eq!(realm, B);
    let req = signed("ann", "apw", A, &nonce, &a_origin);
    assert_eq!(h.signed_code(now, tb, &req), Some(401), "a user of A in B");
    let req = signed("ben", "bpw", B, &nonce, &|b| transport_udp(b));
    assert_eq!(h.signed_code(now, tb, &req), None);
    assert_eq!(h.created_realms(), [B]);
    // An unknown server name leaves the default; a closed connection
    // forgets its name.
    let other = tcp("203.0.113.8:40000");
    h.server.handle_server_name(other, "unknown.example");
    assert_eq!(h.challenge(now, other, &|b| transport_udp(b)).0, REALM);
    let again = tcp("203.0.113.9:40000");
    h.server.handle_server_name(again, "b.example");
    h.server.handle_client_closed(now, again);
    assert_eq!(h.challenge(now, again, &|b| transport_udp(b)).0, REALM);
}

#[test]
fn each_realm_quota_counts_its_own_allocations() {
    let mut h = realms_harness();
    let now = h.at(0);
    let a_origin = with_origin("https://a.example");
    let mut codes = vec![];
    for (i, (user, pw, realm)) in [
        ("ann", "apw", A),
        ("ann", "apw", A),
        ("ben", "bpw", B),
        ("ben", "bpw", B),
        ("ben", "bpw", B),
    ]
    .into_iter()
    .enumerate()
    {
        let tuple = tcp(&format!("203.0.113.10:{}", 1000 + i));
        if realm == B {
            h.server.handle_server_name(tuple, "b.example");
        }
        let (_, nonce) = h.challenge(now, tuple, &a_origin);
        let req = signed(user, pw, realm, &nonce, &a_origin);
        codes.push(h.signed_code(now, tuple, &req));
    }
    // A's quota is 1, B's 2; neither fills the other.
    assert_eq!(codes, [None, Some(486), None, None, Some(486)]);
    assert_eq!(h.server.shared().quotas.of_realm(A), 1);
    assert_eq!(h.server.shared().quotas.of_realm(B), 2);
}
