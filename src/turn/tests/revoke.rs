//! Revocation (issue 19) through the core: a revoked name gets 401, and
//! its live allocations end on the first tick after the snapshot that
//! revokes it, with `EndReason::Revoked`. Time is injected (`t0` is Unix
//! second `UNIX0`).

use super::credentials::{
    allocate_with_north_token, key_only_refresh, oauth_harness, rest_harness, rest_key, token,
    with_token, NORTH,
};
use super::*;
use crate::auth::oauth::Alg;

impl Harness {
    /// The store's next snapshot: the current one with `name` revoked
    /// until Unix second `until` (`None`: for good).
    fn revoke(&mut self, name: &str, until: Option<u64>) {
        let auth = &self.server.shared().auth;
        let mut dir = (*auth.directory()).clone();
        dir.revoked.insert(name.to_string(), until);
        auth.replace(dir);
    }

    fn revoked_ends(&self) -> Vec<String> {
        self.ended()
            .iter()
            .filter(|e| e.reason == EndReason::Revoked)
            .map(|e| e.username.clone())
            .collect()
    }
}

#[test]
fn a_revoked_user_gets_401_and_its_allocation_ends_on_the_next_tick_alone() {
    let mut h = harness(Opts::default());
    let alice = udp("203.0.113.5:40000");
    let bob = udp("203.0.113.6:40000");
    let a = h.call(h.at(0), alice, Method::ALLOCATE, "alice", 1, &|b| {
        transport_udp(b)
    });
    assert_eq!(code_of(&a), None);
    let b = h.call(h.at(0), bob, Method::ALLOCATE, "bob", 1, &|b| {
        transport_udp(b)
    });
    assert_eq!(code_of(&b), None);
    // A tick with no new snapshot ends nothing.
    h.server.handle_timeout(h.at(1));
    h.pump(h.at(1));
    assert!(h.ended().is_empty());

    h.revoke("alice", None);
    // Before the tick, her requests are refused already.
    let r = h.call(h.at(2), alice, Method::REFRESH, "alice", 2, &|_| {});
    assert_eq!(code_of(&r), Some(401));
    assert_eq!(h.server.stats().auth_revoked, 1);
    assert_eq!(h.server.allocation_count(), 2);
    // The tick ends her allocation (its relay closes) and not bob's.
    h.server.handle_timeout(h.at(2));
    h.pump(h.at(2));
    assert_eq!(h.revoked_ends(), ["alice"]);
    assert_eq!(h.ended().len(), 1);
    assert_eq!(h.ended()[0].end, h.at(2));
    assert_eq!(h.closed.len(), 1);
    assert_eq!(h.server.allocation_count(), 1);
    assert!(h.server.allocation(&bob).is_some());
    // A new Allocate is a 401 challenge, from the same or another address.
    for (i, from) in ["203.0.113.5:40000", "203.0.113.7:40000"]
        .iter()
        .enumerate()
    {
        let a = h.call(h.at(3), udp(from), Method::ALLOCATE, "alice", 3, &|b| {
            transport_udp(b)
        });
        let m = Message::parse(&a).unwrap();
        assert_eq!(code(&m), Some(401), "attempt {i}");
        assert!(m.get(AttributeType::NONCE).is_some(), "a challenge");
    }
    // The next snapshots (any store change) end nothing more.
    h.revoke("nobody", None);
    h.server.handle_timeout(h.at(4));
    h.pump(h.at(4));
    assert_eq!(h.ended().len(), 1);
    assert_eq!(EndReason::Revoked.as_str(), "revoked");
}

#[test]
fn a_rest_revocation_ends_its_allocation_and_expires_at_its_time() {
    let mut h = rest_harness(false);
    let user = format!("{}:carol", UNIX0 + 3600);
    let other = format!("{}:dave", UNIX0 + 3600);
    let key = rest_key("new-secret", &user);
    let a = h.signed_call(h.at(0), Method::ALLOCATE, 1, &user, &key, &|b| {
        transport_udp(b)
    });
    assert_eq!(code_of(&a), None);
    // Revoked until Unix second UNIX0 + 100 (a short one, to see it end).
    h.revoke(&user, Some(UNIX0 + 100));
    h.server.handle_timeout(h.at(1));
    h.pump(h.at(1));
    assert_eq!(h.revoked_ends(), std::slice::from_ref(&user));
    assert_eq!(h.ended()[0].credential, CredentialKind::Rest);
    let a = h.signed_call(h.at(99), Method::ALLOCATE, 2, &user, &key, &|b| {
        transport_udp(b)
    });
    assert_eq!(code_of(&a), Some(401), "revoked up to its last second");
    // Another REST username of the same user is not revoked.
    let a = h.signed_call(
        h.at(99),
        Method::ALLOCATE,
        3,
        &other,
        &rest_key("old-secret", &other),
        &|b| transport_udp(b),
    );
    assert_eq!(code_of(&a), None);
    let okey = rest_key("old-secret", &other);
    let r = h.signed_call(h.at(99), Method::REFRESH, 4, &other, &okey, &|b| {
        b.add_u32(AttributeType::LIFETIME, 0)
    });
    assert_eq!(code_of(&r), None);
    // From its end on, the name is accepted again (the credential's own
    // expiry then refuses it: the store sets the two equal).
    let a = h.signed_call(h.at(100), Method::ALLOCATE, 5, &user, &key, &|b| {
        transport_udp(b)
    });
    assert_eq!(code_of(&a), None);
}

#[test]
fn revoking_a_user_ends_and_refuses_the_rest_usernames_that_name_it() {
    let mut h = rest_harness(false);
    let user = format!("{}:carol", UNIX0 + 3600);
    let key = rest_key("new-secret", &user);
    let a = h.signed_call(h.at(0), Method::ALLOCATE, 1, &user, &key, &|b| {
        transport_udp(b)
    });
    assert_eq!(code_of(&a), None);
    h.revoke("carol", None);
    h.server.handle_timeout(h.at(1));
    h.pump(h.at(1));
    assert_eq!(h.revoked_ends(), std::slice::from_ref(&user));
    assert_eq!(h.server.allocation_count(), 0);
    // Every REST username of carol's, in either order, is refused; a
    // user whose name only starts with hers is not.
    let later = format!("{}:carol", UNIX0 + 7200);
    let reversed = format!("carol:{}", UNIX0 + 7200);
    let other = format!("{}:carolyn", UNIX0 + 7200);
    for (i, (name, want)) in [(&later, Some(401)), (&reversed, Some(401)), (&other, None)]
        .into_iter()
        .enumerate()
    {
        let key = rest_key("old-secret", name);
        let a = h.signed_call(h.at(2), Method::ALLOCATE, 2 + i as u8, name, &key, &|b| {
            transport_udp(b)
        });
        assert_eq!(code_of(&a), want, "{name}");
    }
    assert_eq!(h.server.stats().auth_revoked, 2);
}

#[test]
fn revoking_an_oauth_kid_ends_its_allocations_and_refuses_its_tokens() {
    let mut h = oauth_harness();
    allocate_with_north_token(&mut h, 3600);
    assert_eq!(key_only_refresh(&mut h, 10, 2), None);
    // The allocation's owner is the kid.
    assert_eq!(h.server.sessions()[0].username, "north");
    h.revoke("north", None);
    assert_eq!(key_only_refresh(&mut h, 11, 3), Some(401));
    h.server.handle_timeout(h.at(11));
    h.pump(h.at(11));
    assert_eq!(h.revoked_ends(), ["north"]);
    assert_eq!(h.server.allocation_count(), 0);
    let t = token(Alg::A256Gcm, NORTH, 8, UNIX0 + 12, 600);
    let a = h.signed_call(
        h.at(12),
        Method::ALLOCATE,
        4,
        "north",
        &[8; 16],
        &with_token(t, &|b| transport_udp(b)),
    );
    assert_eq!(code_of(&a), Some(401));
}
