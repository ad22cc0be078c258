//! The report's names and the probe's errors, as people and scripts read them.

use super::sim::{a1p1, a1p2};
use crate::nat::report::*;

#[test]
fn errors_have_stable_kinds_and_readable_messages() {
    let e = ProbeError::NoAnswer {
        test: Test::Connectivity,
        to: a1p1(),
    };
    assert_eq!(e.kind(), "no-answer");
    assert_eq!(
        e.to_string(),
        "no answer from 192.0.2.1:3478 to the connectivity test"
    );
    let e = ProbeError::NoRfc5780 {
        reason: NoRfc5780Reason::OtherAddressSameIp,
        mapped: a1p2(),
    };
    assert_eq!(e.kind(), "no-rfc5780");
    assert!(e
        .to_string()
        .contains("OTHER-ADDRESS has the server's own IP"));
}

#[test]
fn behaviour_names_are_the_rfc_4787_terms() {
    assert_eq!(
        Behaviour::EndpointIndependent.as_str(),
        "endpoint-independent"
    );
    assert_eq!(Behaviour::AddressDependent.as_str(), "address-dependent");
    assert_eq!(
        Behaviour::AddressAndPortDependent.to_string(),
        "address-and-port-dependent"
    );
}
