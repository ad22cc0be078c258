//! Binding through the TURN core: RFC 8489 and classic RFC 3489 requests,
//! and SOFTWARE.

use super::*;

#[test]
fn software_is_sent_only_when_configured() {
    let mut h = harness(Opts {
        software: Some("turnpike-test"),
        ..Default::default()
    });
    let answer = h.allocate(h.at(0), client(), &|b| transport_udp(b));
    let m = Message::parse(&answer).unwrap();
    assert_eq!(m.get(AttributeType::SOFTWARE), Some(&b"turnpike-test"[..]));
}

#[test]
fn binding_still_works_through_the_turn_core() {
    let mut h = harness(Opts::default());
    let req = request(Method::BINDING, [1; 12], None, &|_| {});
    let answers = h.send(h.at(0), client(), &req);
    let m = Message::parse(&answers[0]).unwrap();
    assert_eq!(m.class(), Class::SuccessResponse);
    assert_eq!(
        decode_xor_address(
            m.get(AttributeType::XOR_MAPPED_ADDRESS).unwrap(),
            &m.transaction_id()
        )
        .unwrap(),
        client().client
    );
}

/// `req` with its magic cookie replaced: an RFC 3489 client's bytes.
fn without_cookie(mut req: Vec<u8>) -> Vec<u8> {
    req[4..8].copy_from_slice(&[0xc1, 0xa5, 0x51, 0xc0]);
    req
}

#[test]
fn classic_binding_is_answered_within_the_budget_and_classic_turn_methods_never() {
    let mut h = harness(Opts {
        auth_reply_rate: 1,
        ..Default::default()
    });
    let now = h.at(0);
    let binding = without_cookie(request(Method::BINDING, [1; 12], None, &|_| {}));
    let answers = h.send(now, client(), &binding);
    assert_eq!(answers.len(), 1);
    let m = Message::parse_classic(&answers[0]).unwrap();
    assert_eq!(m.class(), Class::SuccessResponse);
    assert_eq!(answers[0][4..20], binding[4..20], "the 16-byte id echoed");
    assert_eq!(
        decode_address(m.get(AttributeType::MAPPED_ADDRESS).unwrap()),
        Ok(client().client)
    );
    assert!(m.get(AttributeType::XOR_MAPPED_ADDRESS).is_none());
    // The budget (a burst of two at rate 1) is the one 401s spend.
    assert_eq!(h.send(now, client(), &binding).len(), 1);
    assert_eq!(h.send(now, client(), &binding).len(), 0, "budget spent");
    assert_eq!(h.send(h.at(1), client(), &binding).len(), 1, "refilled");
    // TURN methods without the cookie: nothing, not even a 401.
    let later = h.at(10);
    for method in [Method::ALLOCATE, Method::REFRESH, Method::CREATE_PERMISSION] {
        let req = without_cookie(request(method, [2; 12], None, &|b| transport_udp(b)));
        assert!(
            h.send(later, udp("203.0.113.9:1"), &req).is_empty(),
            "{method:?}"
        );
    }
    assert_eq!(h.server.stats().classic_binding_requests, 4);
    assert_eq!(h.server.stats().allocations_created, 0);
}

#[test]
fn without_backward_compatibility_classic_bindings_get_nothing() {
    let mut h = harness(Opts {
        stun_backward_compatibility: false,
        ..Default::default()
    });
    let binding = without_cookie(request(Method::BINDING, [1; 12], None, &|_| {}));
    assert!(h.send(h.at(0), client(), &binding).is_empty());
    // The modern Binding is still answered.
    let modern = request(Method::BINDING, [1; 12], None, &|_| {});
    assert_eq!(h.send(h.at(0), client(), &modern).len(), 1);
}

#[test]
fn classic_answers_and_401s_spend_one_bucket() {
    // Rate 1 gives a burst of two; whichever answer spends it, the other
    // kind finds it empty at the same instant.
    let binding = without_cookie(request(Method::BINDING, [1; 12], None, &|_| {}));
    // Distinct ids: a retransmission could be answered from a cache.
    let unsigned = |id: u8| request(Method::ALLOCATE, [id; 12], None, &|b| transport_udp(b));

    let mut h = harness(Opts {
        auth_reply_rate: 1,
        ..Default::default()
    });
    let now = h.at(0);
    for id in 3..5 {
        assert_eq!(code_of(&h.send(now, client(), &unsigned(id))[0]), Some(401));
    }
    assert!(
        h.send(now, client(), &binding).is_empty(),
        "two 401s left no classic answer"
    );

    let mut h = harness(Opts {
        auth_reply_rate: 1,
        ..Default::default()
    });
    let now = h.at(0);
    for _ in 0..2 {
        assert_eq!(h.send(now, client(), &binding).len(), 1);
    }
    assert!(
        h.send(now, client(), &unsigned(5)).is_empty(),
        "two classic answers left no 401"
    );
}
