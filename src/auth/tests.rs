use std::time::Duration;

use super::credentials::userhash;
use super::*;
use crate::stun::integrity::{long_term_key_md5, long_term_key_sha256};
use crate::stun::{Class, MessageType, Method, TransactionId};

const REALM: &str = "example.org";

fn t0() -> Instant {
    Instant::now()
}

fn auth(t0: Instant) -> Authenticator {
    let mut c = Credentials::new(REALM);
    c.add_spec("alice:wonderland").unwrap();
    let n = NonceIssuer::new(
        [1; 32],
        t0,
        Duration::from_secs(600),
        nonce::FEATURE_PASSWORD_ALGORITHMS | nonce::FEATURE_USERNAME_ANONYMITY,
    );
    Authenticator::new(Directory::new(c), n)
}

fn ip() -> IpAddr {
    "203.0.113.9".parse().unwrap()
}

struct Req<'a> {
    user: Option<&'a str>,
    userhash: bool,
    realm: Option<&'a str>,
    nonce: Option<Vec<u8>>,
    password: &'a str,
    sha256: bool,
    algorithms: Option<&'a [u8]>,
    algorithm: Option<u16>,
    integrity: bool,
}

impl Default for Req<'_> {
    fn default() -> Self {
        Req {
            user: Some("alice"),
            userhash: false,
            realm: Some(REALM),
            nonce: None,
            password: "wonderland",
            sha256: false,
            algorithms: None,
            algorithm: None,
            integrity: true,
        }
    }
}

fn build(r: Req<'_>, nonce: &[u8]) -> Vec<u8> {
    let mut buf = vec![0u8; 1024];
    let mut b = MessageBuilder::new(
        &mut buf,
        MessageType::new(Method::ALLOCATE, Class::Request),
        TransactionId([4; 12]),
    );
    if let Some(u) = r.user {
        if r.userhash {
            b.add(AttributeType::USERHASH, &userhash(u, REALM));
        } else {
            b.add_username(u);
        }
    }
    if let Some(realm) = r.realm {
        b.add_realm(realm);
    }
    b.add_nonce(r.nonce.as_deref().unwrap_or(nonce));
    if let Some(list) = r.algorithms {
        b.add(AttributeType::PASSWORD_ALGORITHMS, list);
    }
    if let Some(a) = r.algorithm {
        b.add(
            AttributeType::PASSWORD_ALGORITHM,
            &[(a >> 8) as u8, a as u8, 0, 0],
        );
    }
    let user = r.user.unwrap_or("");
    if r.integrity {
        if r.sha256 {
            b.add_message_integrity_sha256(&long_term_key_sha256(user, REALM, r.password));
        } else {
            b.add_message_integrity(&long_term_key_md5(user, REALM, r.password));
        }
    }
    let n = b.finish().unwrap();
    buf.truncate(n);
    buf
}

fn run(a: &Authenticator, now: Instant, r: Req<'_>) -> Result<Authenticated, Rejection> {
    let nonce = a.nonces().issue(now, ip(), REALM);
    let bytes = build(r, &nonce);
    a.authenticate(now, &Message::parse(&bytes).unwrap(), ip(), None)
}

#[test]
fn request_without_integrity_gets_401() {
    let t = t0();
    let r = run(
        &auth(t),
        t,
        Req {
            integrity: false,
            ..Default::default()
        },
    );
    assert_eq!(r, Err(Rejection::Unauthorized));
}

#[test]
fn integrity_without_username_realm_or_nonce_gets_400() {
    let t = t0();
    let a = auth(t);
    assert_eq!(
        run(
            &a,
            t,
            Req {
                user: None,
                ..Default::default()
            }
        ),
        Err(Rejection::BadRequest)
    );
    assert_eq!(
        run(
            &a,
            t,
            Req {
                realm: None,
                ..Default::default()
            }
        ),
        Err(Rejection::BadRequest)
    );
}

#[test]
fn right_password_authenticates_with_md5_key_and_sha1_integrity() {
    let t = t0();
    let ok = run(&auth(t), t, Req::default()).unwrap();
    assert_eq!(ok.username, "alice");
    assert_eq!(ok.signer.kind, IntegrityKind::Sha1);
    assert_eq!(
        ok.signer.key,
        Key::Md5(long_term_key_md5("alice", REALM, "wonderland"))
    );
}

#[test]
fn wrong_password_or_unknown_user_or_other_realm_gets_401() {
    let t = t0();
    let a = auth(t);
    assert_eq!(
        run(
            &a,
            t,
            Req {
                password: "x",
                ..Default::default()
            }
        ),
        Err(Rejection::Unauthorized)
    );
    assert_eq!(
        run(
            &a,
            t,
            Req {
                user: Some("mallory"),
                ..Default::default()
            }
        ),
        Err(Rejection::Unauthorized)
    );
    assert_eq!(
        run(
            &a,
            t,
            Req {
                realm: Some("other.org"),
                ..Default::default()
            }
        ),
        Err(Rejection::Unauthorized)
    );
}

#[test]
fn stale_or_forged_nonce_gets_438() {
    let t = t0();
    let a = auth(t);
    let nonce = a.nonces().issue(t, ip(), REALM);
    let bytes = build(Req::default(), &nonce);
    let msg = Message::parse(&bytes).unwrap();
    assert!(a
        .authenticate(t + Duration::from_secs(599), &msg, ip(), None)
        .is_ok());
    assert_eq!(
        a.authenticate(t + Duration::from_secs(600), &msg, ip(), None),
        Err(Rejection::StaleNonce)
    );
    let forged = build(
        Req {
            nonce: Some(b"obMatJos2AAADnot-a-real-nonce".to_vec()),
            ..Default::default()
        },
        &nonce,
    );
    assert_eq!(
        a.authenticate(t, &Message::parse(&forged).unwrap(), ip(), None),
        Err(Rejection::StaleNonce)
    );
    // The nonce is bound to the client IP.
    assert_eq!(
        a.authenticate(t, &msg, "203.0.113.10".parse().unwrap(), None),
        Err(Rejection::StaleNonce)
    );
}

#[test]
fn sha256_is_negotiated_with_the_exact_offered_list() {
    let t = t0();
    let a = auth(t);
    let ok = run(
        &a,
        t,
        Req {
            sha256: true,
            algorithms: Some(&OFFERED_ALGORITHMS),
            algorithm: Some(ALGORITHM_SHA256),
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(ok.signer.kind, IntegrityKind::Sha256);
    assert_eq!(
        ok.signer.key,
        Key::Sha256(long_term_key_sha256("alice", REALM, "wonderland"))
    );
}

#[test]
fn tampered_algorithm_negotiation_gets_400() {
    let t = t0();
    let a = auth(t);
    // The list was stripped of SHA-256 by a man in the middle.
    let md5_only = [0x00, 0x01, 0x00, 0x00];
    assert_eq!(
        run(
            &a,
            t,
            Req {
                algorithms: Some(&md5_only),
                algorithm: Some(ALGORITHM_MD5),
                ..Default::default()
            }
        ),
        Err(Rejection::BadRequest)
    );
    // One attribute without the other.
    assert_eq!(
        run(
            &a,
            t,
            Req {
                algorithm: Some(ALGORITHM_MD5),
                ..Default::default()
            }
        ),
        Err(Rejection::BadRequest)
    );
    assert_eq!(
        run(
            &a,
            t,
            Req {
                algorithms: Some(&OFFERED_ALGORITHMS),
                ..Default::default()
            }
        ),
        Err(Rejection::BadRequest)
    );
    // A choice that is not on the list.
    assert_eq!(
        run(
            &a,
            t,
            Req {
                algorithms: Some(&OFFERED_ALGORITHMS),
                algorithm: Some(7),
                ..Default::default()
            }
        ),
        Err(Rejection::BadRequest)
    );
}

#[test]
fn userhash_identifies_the_user() {
    let t = t0();
    let ok = run(
        &auth(t),
        t,
        Req {
            userhash: true,
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(ok.username, "alice");
}

#[test]
fn integrity_of_the_wrong_length_gets_400() {
    let t = t0();
    let a = auth(t);
    let nonce = a.nonces().issue(t, ip(), REALM);
    let mut bytes = build(Req::default(), &nonce);
    // Shrink MESSAGE-INTEGRITY's value to 16 bytes and fix the header.
    let n = bytes.len();
    bytes[n - 22..n - 20].copy_from_slice(&16u16.to_be_bytes());
    bytes.truncate(n - 4);
    let len = (bytes.len() - 20) as u16;
    bytes[2..4].copy_from_slice(&len.to_be_bytes());
    let msg = Message::parse(&bytes).unwrap();
    assert_eq!(
        a.authenticate(t, &msg, ip(), None),
        Err(Rejection::BadRequest)
    );
}

fn with_secrets(t0: Instant, secrets: &[&[u8]]) -> Authenticator {
    let a = auth(t0);
    let mut d = (*a.directory()).clone();
    d.secrets = secrets.iter().map(|s| rest::Secret(s.to_vec())).collect();
    a.replace(d);
    a
}

#[test]
fn minted_rest_credential_verifies_under_any_live_secret() {
    let t = t0();
    let (user, password) = rest::mint(b"new", "bob", 600, ':', 1_700_000_000);
    let req = || Req {
        user: Some(&user),
        password: &password,
        ..Default::default()
    };
    // Rotation: the old secret first, the new one second.
    let ok = run(&with_secrets(t, &[b"old", b"new"]), t, req()).unwrap();
    assert_eq!(ok.username, user);
    assert_eq!(
        ok.origin,
        Origin::Rest {
            expires: 1_700_000_600
        }
    );
    assert_eq!(
        run(&with_secrets(t, &[b"old"]), t, req()),
        Err(Rejection::Unauthorized)
    );
    // No secret at all: REST is off.
    assert_eq!(run(&auth(t), t, req()), Err(Rejection::Unauthorized));
}

#[test]
fn expiry_is_judged_on_the_clock_the_shell_hands_in() {
    let t = t0();
    let a = auth(t).with_clock(t, 1_000);
    let rest = Origin::Rest { expires: 1_010 };
    let oauth = Origin::OAuth {
        expires: Some(1_010),
    };
    let lax = ExpiryPolicy::AtAllocate;
    let strict = ExpiryPolicy::AtAllocateAndRefresh;
    let before = t + Duration::from_secs(9);
    let after = t + Duration::from_secs(10);
    assert_eq!(a.unix_time(after), 1_010);
    for origin in [rest, oauth, Origin::LongTerm] {
        assert!(!a.expired(before, Method::ALLOCATE, &origin, strict));
    }
    assert!(a.expired(after, Method::ALLOCATE, &rest, lax));
    assert!(!a.expired(after, Method::REFRESH, &rest, lax));
    assert!(a.expired(after, Method::REFRESH, &rest, strict));
    assert!(!a.expired(after, Method::CREATE_PERMISSION, &rest, strict));
    // A token past its lifetime is refused for every request.
    assert!(a.expired(after, Method::CREATE_PERMISSION, &oauth, lax));
    let forever = Origin::OAuth { expires: None };
    assert!(!a.expired(after, Method::ALLOCATE, &forever, strict));
    assert!(!a.expired(after, Method::ALLOCATE, &Origin::LongTerm, strict));
}

#[test]
fn selftest_credentials_are_minted_only_with_a_selftest_secret() {
    let t0 = t0();
    assert_eq!(auth(t0).mint_selftest("abc", 60, 1_000), None);
    let a = auth(t0)
        .with_rest_separator('-')
        .with_selftest_secret(rest::Secret(b"s".to_vec()));
    let (user, password) = a.mint_selftest("abc", 60, 1_000).unwrap();
    assert_eq!(user, "1060-selftest-abc");
    assert_eq!(password, rest::password(b"s", "1060-selftest-abc"));
    assert!(a.is_selftest(&user));
    assert!(!a.is_selftest("1060-alice"));
}
