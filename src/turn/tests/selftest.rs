//! The self-test page's credentials (issue 20) through the TURN core, with
//! the wall clock injected: a per-process secret that signs `selftest-`
//! names only, valid 60 s, one allocation at a time, living no longer
//! than the credential.

use super::credentials::{rest_key, signed};
use super::*;
use crate::auth::rest;

const SELFTEST_SECRET: &str = "per-process-selftest-secret";

fn selftest_harness(user_quota: u32) -> Harness {
    harness(Opts {
        secrets: vec!["store-secret"],
        selftest_secret: Some(SELFTEST_SECRET),
        user_quota,
        ..Opts::default()
    })
}

/// A self-test credential minted at `UNIX0` as the server mints them.
fn credential(id: &str) -> (String, [u8; 16]) {
    let (user, _) = rest::mint(
        SELFTEST_SECRET.as_bytes(),
        &format!("selftest-{id}"),
        60,
        ':',
        UNIX0,
    );
    let key = rest_key(SELFTEST_SECRET, &user);
    (user, key)
}

impl Harness {
    /// One request from `from`, signed with `key` as `user`; its answer.
    fn signed_from(
        &mut self,
        now: Instant,
        from: FiveTuple,
        method: Method,
        user: &str,
        key: &[u8],
        attrs: Attrs<'_>,
    ) -> Vec<u8> {
        let nonce = self.nonce(now, from);
        self.calls += 1;
        let txid = self.calls as u8;
        let mut answers = self.send(now, from, &signed(method, txid, user, key, &nonce, attrs));
        assert_eq!(answers.len(), 1);
        answers.pop().unwrap()
    }
}

#[test]
fn selftest_credential_allocates_before_its_60_s_and_gets_401_after() {
    let mut h = selftest_harness(0);
    let (user, key) = credential("abcdefghij");
    let alloc = |b: &mut MessageBuilder<'_>| transport_udp(b);
    let a = h.signed_from(
        h.at(0),
        udp("203.0.113.5:1"),
        Method::ALLOCATE,
        &user,
        &key,
        &alloc,
    );
    assert_eq!(code_of(&a), None);
    verify_sha1(&Message::parse(&a).unwrap(), &key).expect("signed with its key");
    // The allocation lives no longer than the credential, not the
    // default 600 s.
    assert_eq!(lifetime_of(&a), 60);
    let r = h.signed_from(
        h.at(30),
        udp("203.0.113.5:1"),
        Method::REFRESH,
        &user,
        &key,
        &|_| {},
    );
    assert_eq!(code_of(&r), None);
    assert_eq!(lifetime_of(&r), 30, "a refresh is capped too");
    // Second 59 still works (a new allocation once the first is gone).
    let del = |b: &mut MessageBuilder<'_>| b.add_u32(AttributeType::LIFETIME, 0);
    let r = h.signed_from(
        h.at(59),
        udp("203.0.113.5:1"),
        Method::REFRESH,
        &user,
        &key,
        &del,
    );
    assert_eq!(code_of(&r), None);
    let a = h.signed_from(
        h.at(59),
        udp("203.0.113.5:2"),
        Method::ALLOCATE,
        &user,
        &key,
        &alloc,
    );
    assert_eq!(code_of(&a), None);
    assert_eq!(lifetime_of(&a), 1);
    // From second 60 on: 401, for a new allocation and for a refresh
    // (self-test credentials are strict whatever strict_expiry says).
    let a = h.signed_from(
        h.at(60),
        udp("203.0.113.5:3"),
        Method::ALLOCATE,
        &user,
        &key,
        &alloc,
    );
    assert_eq!(code_of(&a), Some(401));
    let r = h.signed_from(
        h.at(60),
        udp("203.0.113.5:2"),
        Method::REFRESH,
        &user,
        &key,
        &|_| {},
    );
    assert_eq!(code_of(&r), Some(401));
}

#[test]
fn a_second_allocate_with_one_selftest_credential_gets_486_while_the_first_lives() {
    // user_quota 5 does not lift a self-test credential's one allocation.
    let mut h = selftest_harness(5);
    let (user, key) = credential("0123456789");
    let alloc = |b: &mut MessageBuilder<'_>| transport_udp(b);
    let first = udp("203.0.113.5:1");
    let a = h.signed_from(h.at(0), first, Method::ALLOCATE, &user, &key, &alloc);
    assert_eq!(code_of(&a), None);
    let a = h.signed_from(
        h.at(1),
        udp("203.0.113.5:2"),
        Method::ALLOCATE,
        &user,
        &key,
        &alloc,
    );
    assert_eq!(code_of(&a), Some(486));
    // Another self-test credential is another user.
    let (other, other_key) = credential("zzzzzzzzzz");
    let a = h.signed_from(
        h.at(1),
        udp("203.0.113.5:3"),
        Method::ALLOCATE,
        &other,
        &other_key,
        &alloc,
    );
    assert_eq!(code_of(&a), None);
    // Once the first allocation is released, the credential allocates again.
    let del = |b: &mut MessageBuilder<'_>| b.add_u32(AttributeType::LIFETIME, 0);
    let r = h.signed_from(h.at(2), first, Method::REFRESH, &user, &key, &del);
    assert_eq!(code_of(&r), None);
    let a = h.signed_from(
        h.at(3),
        udp("203.0.113.5:2"),
        Method::ALLOCATE,
        &user,
        &key,
        &alloc,
    );
    assert_eq!(code_of(&a), None);
    // An ordinary REST user keeps user_quota (5): two at once are fine.
    let carol = format!("{}:carol", UNIX0 + 3600);
    let carol_key = rest_key("store-secret", &carol);
    for port in [10, 11] {
        let from = udp(&format!("203.0.113.5:{port}"));
        let a = h.signed_from(h.at(3), from, Method::ALLOCATE, &carol, &carol_key, &alloc);
        assert_eq!(code_of(&a), None);
    }
}

#[test]
fn the_selftest_secret_signs_selftest_names_only() {
    let mut h = selftest_harness(0);
    let alloc = |b: &mut MessageBuilder<'_>| transport_udp(b);
    let exp = UNIX0 + 60;
    for (i, user) in [
        format!("{exp}:alice"),
        format!("{exp}:carol"),
        format!("{exp}"),
        format!("selftest-abc:{exp}"),
    ]
    .iter()
    .enumerate()
    {
        let key = rest_key(SELFTEST_SECRET, user);
        let from = udp(&format!("203.0.113.5:{}", i + 1));
        let a = h.signed_from(h.at(0), from, Method::ALLOCATE, user, &key, &alloc);
        assert_eq!(code_of(&a), Some(401), "{user}");
    }
    // A store secret may sign a self-test name (it could mint anything).
    let user = format!("{exp}:selftest-fromstore");
    let key = rest_key("store-secret", &user);
    let a = h.signed_from(
        h.at(0),
        udp("203.0.113.5:9"),
        Method::ALLOCATE,
        &user,
        &key,
        &alloc,
    );
    assert_eq!(code_of(&a), None);
}

#[test]
fn without_a_selftest_secret_selftest_credentials_get_401() {
    let mut h = harness(Opts::default());
    let (user, key) = credential("abcdefghij");
    let a = h.signed_from(h.at(0), client(), Method::ALLOCATE, &user, &key, &|b| {
        transport_udp(b)
    });
    assert_eq!(code_of(&a), Some(401));
}

#[test]
fn a_selftest_allocation_reaches_this_servers_relay_addresses_only() {
    // Relay and peer addresses the default policy allows, so that only
    // the self-test rule can refuse.
    let mut h = harness(Opts {
        relay_ips: vec!["8.8.4.4"],
        secrets: vec!["store-secret"],
        selftest_secret: Some(SELFTEST_SECRET),
        ..Opts::default()
    });
    let (user, key) = credential("peerpolicy");
    let from = udp("203.0.113.5:1");
    let alloc = |b: &mut MessageBuilder<'_>| transport_udp(b);
    let a = h.signed_from(h.at(0), from, Method::ALLOCATE, &user, &key, &alloc);
    assert_eq!(code_of(&a), None);
    // Another host is refused for a permission and for a channel, so a
    // page's credential is no open relay.
    let elsewhere = sa(PEER);
    let r = h.signed_from(
        h.at(1),
        from,
        Method::CREATE_PERMISSION,
        &user,
        &key,
        &peer_attr(elsewhere),
    );
    assert_eq!(code_of(&r), Some(403));
    let bind = move |b: &mut MessageBuilder<'_>| {
        b.add_u32(AttributeType::CHANNEL_NUMBER, 0x4000 << 16);
        b.add_xor_address(AttributeType::XOR_PEER_ADDRESS, &elsewhere);
    };
    let r = h.signed_from(h.at(1), from, Method::CHANNEL_BIND, &user, &key, &bind);
    assert_eq!(code_of(&r), Some(403));
    // The other peer connection's relayed address, on this server: allowed.
    let relay = sa("8.8.4.4:50000");
    let r = h.signed_from(
        h.at(1),
        from,
        Method::CREATE_PERMISSION,
        &user,
        &key,
        &peer_attr(relay),
    );
    assert_eq!(code_of(&r), None);
    // An ordinary user still reaches any allowed peer.
    let carol = format!("{}:carol", UNIX0 + 3600);
    let carol_key = rest_key("store-secret", &carol);
    let from = udp("203.0.113.5:2");
    let a = h.signed_from(h.at(1), from, Method::ALLOCATE, &carol, &carol_key, &alloc);
    assert_eq!(code_of(&a), None);
    let r = h.signed_from(
        h.at(1),
        from,
        Method::CREATE_PERMISSION,
        &carol,
        &carol_key,
        &peer_attr(elsewhere),
    );
    assert_eq!(code_of(&r), None);
}
