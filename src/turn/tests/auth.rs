//! Authentication through the TURN core: 401 with realm and nonce, 438,
//! and the per-source budget of unauthenticated answers.

use super::*;

#[test]
fn allocate_without_integrity_gets_401_with_realm_nonce_and_password_algorithms() {
    let mut h = harness(Opts::default());
    let now = h.at(0);
    let req = request(Method::ALLOCATE, [1; 12], None, &|b| transport_udp(b));
    let answers = h.send(now, client(), &req);
    let m = Message::parse(&answers[0]).unwrap();
    assert_eq!(m.class(), Class::ErrorResponse);
    assert_eq!(code(&m), Some(401));
    assert_eq!(m.get(AttributeType::REALM), Some(REALM.as_bytes()));
    assert!(m
        .get(AttributeType::NONCE)
        .unwrap()
        .starts_with(b"obMatJos2"));
    assert!(m.get(AttributeType::PASSWORD_ALGORITHMS).is_some());
    assert!(m.integrity_offset().is_none());
    assert!(
        m.get(AttributeType::SOFTWARE).is_none(),
        "no SOFTWARE unless configured"
    );
    assert_eq!(
        h.server.allocation_count(),
        0,
        "nothing stored before integrity verifies"
    );
}

#[test]
fn wrong_password_gets_401_and_stale_nonce_gets_438_with_a_fresh_nonce() {
    let mut h = harness(Opts::default());
    let now = h.at(0);
    let nonce = h.nonce(now, client());
    let mut req = request(Method::ALLOCATE, [2; 12], Some(("alice", &nonce)), &|b| {
        transport_udp(b)
    });
    let last = req.len() - 1;
    req[last] ^= 1; // breaks MESSAGE-INTEGRITY
    assert_eq!(code_of(&h.send(now, client(), &req)[0]), Some(401));

    let req = request(Method::ALLOCATE, [3; 12], Some(("alice", &nonce)), &|b| {
        transport_udp(b)
    });
    let later = h.at(600);
    let answer = h.send(later, client(), &req);
    let m = Message::parse(&answer[0]).unwrap();
    assert_eq!(code(&m), Some(438));
    let fresh = m.get(AttributeType::NONCE).unwrap().to_vec();
    assert_ne!(fresh, nonce);
    let req = request(Method::ALLOCATE, [4; 12], Some(("alice", &fresh)), &|b| {
        transport_udp(b)
    });
    assert_eq!(code_of(&h.send(later, client(), &req)[0]), None);
}

#[test]
fn unauthenticated_answers_are_rate_limited_per_source() {
    let mut h = harness(Opts {
        auth_reply_rate: 1,
        ..Default::default()
    });
    let now = h.at(0);
    let req = request(Method::ALLOCATE, [1; 12], None, &|b| transport_udp(b));
    let answered: usize = (0..10).map(|_| h.send(now, client(), &req).len()).sum();
    assert_eq!(answered, 2, "burst of two, then silence");
    assert_eq!(
        h.send(now, udp("203.0.113.6:1"), &req).len(),
        1,
        "another source is answered"
    );
    assert_eq!(
        h.send(h.at(1), client(), &req).len(),
        1,
        "the budget refills"
    );
}
