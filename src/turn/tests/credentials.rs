//! REST ephemeral credentials and OAuth tokens through the TURN core, with
//! the wall clock injected (`t0` is Unix second `UNIX0`).

use super::*;
use crate::auth::oauth::{self, Alg, OAuthKey, Token};
use crate::auth::rest;

/// A request signed with `key` as `user` (no credential lookup here).
pub(super) fn signed(
    method: Method,
    txid: u8,
    user: &str,
    key: &[u8],
    nonce: &[u8],
    attrs: Attrs<'_>,
) -> Vec<u8> {
    let mut buf = vec![0u8; 1500];
    let mut b = MessageBuilder::new(
        &mut buf,
        MessageType::new(method, Class::Request),
        TransactionId([txid; 12]),
    );
    attrs(&mut b);
    b.add_username(user);
    b.add_realm(REALM);
    b.add_nonce(nonce);
    b.add_message_integrity(key);
    let n = b.finish().unwrap();
    buf.truncate(n);
    buf
}

pub(super) fn rest_key(secret: &str, username: &str) -> [u8; 16] {
    long_term_key_md5(
        username,
        REALM,
        &rest::password(secret.as_bytes(), username),
    )
}

pub(super) fn rest_harness(strict: bool) -> Harness {
    harness(Opts {
        secrets: vec!["old-secret", "new-secret"],
        strict_expiry: strict,
        ..Opts::default()
    })
}

impl Harness {
    /// One request signed with `key`; its single answer.
    pub(super) fn signed_call(
        &mut self,
        now: Instant,
        method: Method,
        txid: u8,
        user: &str,
        key: &[u8],
        attrs: Attrs<'_>,
    ) -> Vec<u8> {
        let nonce = self.nonce(now, client());
        let mut answers = self.send(
            now,
            client(),
            &signed(method, txid, user, key, &nonce, attrs),
        );
        assert_eq!(answers.len(), 1);
        answers.pop().unwrap()
    }
}

#[test]
fn rest_username_under_any_live_secret_allocates_and_is_signed_with_its_key() {
    for secret in ["old-secret", "new-secret"] {
        let mut h = rest_harness(false);
        let user = format!("{}:carol", UNIX0 + 3600);
        let key = rest_key(secret, &user);
        let a = h.signed_call(h.at(0), Method::ALLOCATE, 1, &user, &key, &|b| {
            transport_udp(b)
        });
        assert_eq!(code_of(&a), None, "{secret}");
        verify_sha1(&Message::parse(&a).unwrap(), &key).expect("signed with the REST key");
        assert_eq!(relayed(&a).len(), 1);
    }
}

#[test]
fn rest_username_with_a_wrong_secret_or_no_expiry_gets_401() {
    let mut h = rest_harness(false);
    let user = format!("{}:carol", UNIX0 + 3600);
    let a = h.signed_call(
        h.at(0),
        Method::ALLOCATE,
        1,
        &user,
        &rest_key("guess", &user),
        &|b| transport_udp(b),
    );
    assert_eq!(code_of(&a), Some(401));
    let a = h.signed_call(
        h.at(0),
        Method::ALLOCATE,
        2,
        "carol",
        &rest_key("new-secret", "carol"),
        &|b| transport_udp(b),
    );
    assert_eq!(code_of(&a), Some(401));
}

#[test]
fn expired_rest_username_gets_401_at_allocate() {
    let mut h = rest_harness(false);
    let user = format!("{}:carol", UNIX0 + 60);
    let key = rest_key("new-secret", &user);
    // Valid up to the second before its expiry, refused from then on.
    let a = h.signed_call(h.at(61), Method::ALLOCATE, 1, &user, &key, &|b| {
        transport_udp(b)
    });
    assert_eq!(code_of(&a), Some(401));
    let m = Message::parse(&a).unwrap();
    assert!(m.get(AttributeType::NONCE).is_some(), "a 401 challenge");
    let a = h.signed_call(h.at(59), Method::ALLOCATE, 2, &user, &key, &|b| {
        transport_udp(b)
    });
    assert_eq!(code_of(&a), None);
}

#[test]
fn refresh_after_expiry_is_allowed_unless_strict() {
    for strict in [false, true] {
        let mut h = rest_harness(strict);
        let user = format!("{}", UNIX0 + 60);
        let key = rest_key("old-secret", &user);
        let a = h.signed_call(h.at(0), Method::ALLOCATE, 1, &user, &key, &|b| {
            transport_udp(b)
        });
        assert_eq!(code_of(&a), None);
        let r = h.signed_call(h.at(120), Method::REFRESH, 2, &user, &key, &|_| {});
        let expect = if strict { Some(401) } else { None };
        assert_eq!(code_of(&r), expect, "strict {strict}");
        // Permissions are not refreshes: they still work either way.
        let p = h.signed_call(
            h.at(121),
            Method::CREATE_PERMISSION,
            3,
            &user,
            &key,
            &peer_attr(sa(PEER)),
        );
        assert_eq!(code_of(&p), None);
    }
}

#[test]
fn static_users_and_rest_secrets_work_in_one_server() {
    let mut h = rest_harness(false);
    assert_eq!(h.allocate_code(h.at(0), "203.0.113.5:40001"), None);
    let user = format!("{}:alice", UNIX0 + 3600);
    let a = h.signed_call(
        h.at(0),
        Method::ALLOCATE,
        1,
        &user,
        &rest_key("new-secret", &user),
        &|b| transport_udp(b),
    );
    assert_eq!(code_of(&a), None);
}

pub(super) const NORTH: &[u8] = b"01234567890123456789012345678901\n";
const UNION: &[u8] = b"1234567890123456\n";

pub(super) fn oauth_opts() -> Opts {
    Opts {
        oauth: vec![
            ("north", OAuthKey::new(Alg::A256Gcm, NORTH, 0).unwrap()),
            ("union", OAuthKey::new(Alg::A128Gcm, UNION, 0).unwrap()),
        ],
        ..Opts::default()
    }
}

pub(super) fn oauth_harness() -> Harness {
    harness(oauth_opts())
}

/// A token as an authorization server would issue it at Unix second `at`.
pub(super) fn token(alg: Alg, raw: &[u8], mac: u8, at: u64, lifetime: u32) -> Vec<u8> {
    let key = OAuthKey::new(alg, raw, 0).unwrap();
    let t = Token {
        mac_key: [mac; 20],
        timestamp: at << 16,
        lifetime,
    };
    oauth::encode(&key, SERVER_NAME, &[mac; 12], &t)
}

pub(super) fn with_token(t: Vec<u8>, rest: Attrs<'_>) -> impl Fn(&mut MessageBuilder<'_>) + '_ {
    move |b| {
        rest(b);
        b.add(AttributeType::ACCESS_TOKEN, &t);
    }
}

#[test]
fn oauth_challenge_names_the_server() {
    let mut h = oauth_harness();
    let req = request(Method::ALLOCATE, [0; 12], None, &|b| transport_udp(b));
    let a = h.send(h.at(0), client(), &req);
    let m = Message::parse(&a[0]).unwrap();
    assert_eq!(code(&m), Some(401));
    assert_eq!(
        m.get(AttributeType::THIRD_PARTY_AUTHORIZATION),
        Some(SERVER_NAME.as_bytes())
    );
}

#[test]
fn oauth_token_allocates_and_its_mac_key_then_signs_without_a_token() {
    let mut h = oauth_harness();
    // coturn's client signs with the first 16 bytes of the mac key.
    let t = token(Alg::A256Gcm, NORTH, 7, UNIX0, 600);
    let a = h.signed_call(
        h.at(0),
        Method::ALLOCATE,
        1,
        "north",
        &[7; 16],
        &with_token(t, &|b| transport_udp(b)),
    );
    assert_eq!(code_of(&a), None);
    verify_sha1(&Message::parse(&a).unwrap(), &[7; 16]).expect("signed with the mac key");
    // CreatePermission carries no token: the allocation's key verifies it.
    let p = h.signed_call(
        h.at(1),
        Method::CREATE_PERMISSION,
        2,
        "north",
        &[7; 16],
        &peer_attr(sa(PEER)),
    );
    assert_eq!(code_of(&p), None);
    verify_sha1(&Message::parse(&p).unwrap(), &[7; 16]).unwrap();
    // A wrong key without a token is refused.
    let p = h.signed_call(
        h.at(1),
        Method::CREATE_PERMISSION,
        3,
        "north",
        &[8; 16],
        &peer_attr(sa(PEER)),
    );
    assert_eq!(code_of(&p), Some(401));
    // A Refresh with a new token under another key id keeps the allocation
    // (no 441) and switches to the new mac key.
    let t = token(Alg::A128Gcm, UNION, 9, UNIX0 + 10, 600);
    let r = h.signed_call(
        h.at(10),
        Method::REFRESH,
        4,
        "union",
        &[9; 16],
        &with_token(t, &|_| {}),
    );
    assert_eq!(code_of(&r), None);
    let p = h.signed_call(
        h.at(11),
        Method::CREATE_PERMISSION,
        5,
        "union",
        &[9; 16],
        &peer_attr(sa(PEER)),
    );
    assert_eq!(code_of(&p), None);
}

/// F9: a request signed with a token's mac key but carrying no token.
pub(super) fn key_only_refresh(h: &mut Harness, at: u64, txid: u8) -> Option<u16> {
    code_of(
        &h.signed_call(h.at(at), Method::REFRESH, txid, "north", &[7; 16], &|b| {
            b.add_u32(AttributeType::LIFETIME, 3600)
        }),
    )
}

/// Allocates at t0 with a "north" token of `lifetime` seconds, signed
/// with the first 16 bytes of its mac key ([7; 20]).
pub(super) fn allocate_with_north_token(h: &mut Harness, lifetime: u32) {
    let t = token(Alg::A256Gcm, NORTH, 7, UNIX0, lifetime);
    let a = h.signed_call(
        h.at(0),
        Method::ALLOCATE,
        1,
        "north",
        &[7; 16],
        &with_token(t, &|b| transport_udp(b)),
    );
    assert_eq!(code_of(&a), None);
}

#[test]
fn after_its_token_expires_the_mac_key_alone_refreshes_nothing_strict_or_not() {
    for strict in [false, true] {
        let mut h = harness(Opts {
            strict_expiry: strict,
            ..oauth_opts()
        });
        // Valid until UNIX0 + 60 + 5 s of slack.
        allocate_with_north_token(&mut h, 60);
        assert_eq!(key_only_refresh(&mut h, 30, 2), None, "inside the lifetime");
        assert_eq!(
            key_only_refresh(&mut h, 120, 3),
            Some(401),
            "strict={strict}"
        );
        assert_eq!(
            key_only_refresh(&mut h, 3000, 4),
            Some(401),
            "strict={strict}"
        );
        // The allocation then ends at the lifetime granted before expiry.
        h.server.handle_timeout(h.at(30 + 3600));
        assert_eq!(h.server.allocation_count(), 0);
    }
}

#[test]
fn removing_the_key_id_stops_its_mac_key_at_once() {
    let mut h = oauth_harness();
    allocate_with_north_token(&mut h, 3600);
    assert_eq!(key_only_refresh(&mut h, 10, 2), None);
    // The operator removes key id "north": the store's next snapshot.
    let mut creds = Credentials::new(REALM);
    creds.add_spec("alice:wonderland").unwrap();
    let mut dir = Directory::new(creds);
    dir.oauth_keys.insert(
        "union".into(),
        OAuthKey::new(Alg::A128Gcm, UNION, 0).unwrap(),
    );
    h.server.shared().auth.replace(dir);
    assert_eq!(key_only_refresh(&mut h, 20, 3), Some(401));
}

#[test]
fn oauth_full_length_mac_key_verifies_too() {
    let mut h = oauth_harness();
    let t = token(Alg::A256Gcm, NORTH, 7, UNIX0, 600);
    let a = h.signed_call(
        h.at(0),
        Method::ALLOCATE,
        1,
        "north",
        &[7; 20],
        &with_token(t, &|b| transport_udp(b)),
    );
    assert_eq!(code_of(&a), None);
    verify_sha1(&Message::parse(&a).unwrap(), &[7; 20]).unwrap();
}

#[test]
fn oauth_unknown_kid_wrong_key_and_expired_token_get_401() {
    let mut h = oauth_harness();
    let t = token(Alg::A256Gcm, NORTH, 7, UNIX0, 600);
    let cases: [(&str, Vec<u8>, u64); 4] = [
        // Key id the server does not hold.
        ("south", t.clone(), 0),
        // Key id of a different key than the token was sealed with.
        ("union", t.clone(), 0),
        // Past timestamp + lifetime + 5 s of slack.
        ("north", t.clone(), 605),
        // Garbage token.
        ("north", vec![0, 12, 1, 2, 3], 0),
    ];
    for (i, (kid, t, at)) in cases.into_iter().enumerate() {
        let a = h.signed_call(
            h.at(at),
            Method::ALLOCATE,
            i as u8,
            kid,
            &[7; 16],
            &with_token(t, &|b| transport_udp(b)),
        );
        assert_eq!(code_of(&a), Some(401), "case {i}");
    }
    // Just inside the slack it still works.
    let a = h.signed_call(
        h.at(604),
        Method::ALLOCATE,
        9,
        "north",
        &[7; 16],
        &with_token(t, &|b| transport_udp(b)),
    );
    assert_eq!(code_of(&a), None);
}

#[test]
fn oauth_tokens_are_refused_when_oauth_is_off() {
    let mut h = harness(Opts::default());
    let t = token(Alg::A256Gcm, NORTH, 7, UNIX0, 600);
    let a = h.signed_call(
        h.at(0),
        Method::ALLOCATE,
        1,
        "north",
        &[7; 16],
        &with_token(t, &|b| transport_udp(b)),
    );
    assert_eq!(code_of(&a), Some(401));
}
