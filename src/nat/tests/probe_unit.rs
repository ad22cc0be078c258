//! The probe's own helpers (`nat::probe::tests`): OTHER-ADDRESS checks and
//! request bytes.

use super::*;

#[test]
fn other_address_must_differ_in_ip_and_port_and_share_the_family() {
    let server: SocketAddr = "192.0.2.1:3478".parse().unwrap();
    let ok: SocketAddr = "198.51.100.2:3479".parse().unwrap();
    assert_eq!(check_other_address(server, Some(ok)), Ok(ok));
    assert_eq!(
        check_other_address(server, None),
        Err(NoRfc5780Reason::NoOtherAddress)
    );
    assert_eq!(
        check_other_address(server, Some("192.0.2.1:3479".parse().unwrap())),
        Err(NoRfc5780Reason::OtherAddressSameIp)
    );
    assert_eq!(
        check_other_address(server, Some("198.51.100.2:3478".parse().unwrap())),
        Err(NoRfc5780Reason::OtherAddressSamePort)
    );
    assert_eq!(
        check_other_address(server, Some("[2001:db8::2]:3479".parse().unwrap())),
        Err(NoRfc5780Reason::OtherAddressFamily)
    );
}

#[test]
fn requests_carry_the_asked_attributes_and_a_fingerprint() {
    let id = TransactionId([3; 12]);
    let data = build_request(id, Some(ChangeRequest::PORT), None, Some(1500));
    let msg = Message::parse(&data).unwrap();
    assert_eq!(msg.class(), Class::Request);
    assert_eq!(msg.method(), Method::BINDING);
    assert_eq!(msg.transaction_id(), id);
    assert!(msg.has_fingerprint());
    assert_eq!(
        msg.get(AttributeType::CHANGE_REQUEST),
        Some(&ChangeRequest::PORT.encode()[..])
    );
    assert_eq!(msg.get(AttributeType::PADDING).map(|v| v.len()), Some(1500));
    assert_eq!(data.len(), 20 + 8 + 4 + 1500 + 8);
    let data = build_request(id, None, Some(ResponsePort(61001)), None);
    let msg = Message::parse(&data).unwrap();
    assert_eq!(
        msg.get(AttributeType::RESPONSE_PORT),
        Some(&ResponsePort(61001).encode()[..])
    );
}
