//! The probe's tests (RFC 5780 §4.3-§4.6, §3.4, §3.5) against the simulator.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::sim::*;
use crate::nat::report::*;
use crate::nat::*;
use crate::nat::{probe::*, server::*};
use crate::stun::{AttributeType, Message};

#[test]
fn every_mapping_and_filtering_combination_is_identified() {
    for mapping in Behaviour::ALL {
        for filtering in Behaviour::ALL {
            let r = report(&mut behind(mapping, filtering), ProbeOptions::default());
            let case = format!("{mapping} mapping, {filtering} filtering");
            assert_eq!(r.mapping, mapping, "{case}");
            assert_eq!(r.filtering, filtering, "{case}");
            assert_eq!(r.classic_name(), classic(mapping, filtering), "{case}");
            assert!(r.nat, "{case}");
            assert_eq!(r.mapped.ip(), public_ip(), "{case}");
            assert_eq!(r.other_address, a2p2(), "{case}");
            assert_eq!(r.response_origin, Some(a1p1()), "{case}");
            assert_eq!(r.alg, Some(false), "{case}");
        }
    }
}

#[test]
fn mapped_addresses_of_each_mapping_test_are_reported() {
    let r = report(
        &mut behind(Behaviour::AddressDependent, Behaviour::EndpointIndependent),
        ProbeOptions::default(),
    );
    // One port toward 192.0.2.1, another toward 198.51.100.2 (both ports).
    assert_eq!(r.mapped, SocketAddr::new(public_ip(), 61001));
    assert_eq!(
        r.mapped_alternate_ip,
        Some(SocketAddr::new(public_ip(), 61002))
    );
    assert_eq!(
        r.mapped_alternate_address,
        Some(SocketAddr::new(public_ip(), 61002))
    );

    let r = report(
        &mut behind(
            Behaviour::EndpointIndependent,
            Behaviour::EndpointIndependent,
        ),
        ProbeOptions::default(),
    );
    assert_eq!(r.mapped_alternate_ip, Some(r.mapped));
    assert_eq!(r.mapped_alternate_address, None, "test II settled it");
}

#[test]
fn filtering_tests_run_before_any_packet_goes_to_the_alternate_ip() {
    let mut sim = behind(
        Behaviour::AddressAndPortDependent,
        Behaviour::AddressAndPortDependent,
    );
    let r = report(&mut sim, ProbeOptions::default());
    let order: Vec<&str> = r.tests.iter().map(|t| t.test.as_str()).collect();
    assert_eq!(
        order,
        [
            "connectivity",
            "filtering-change-ip-and-port",
            "filtering-change-port",
            "mapping-alternate-ip",
            "mapping-alternate-address",
            "hairpinning",
            "large-packet",
        ]
    );
    let first_to_alternate = sim
        .sent
        .iter()
        .position(|(_, t)| t.to.ip() == a2p2().ip())
        .unwrap();
    let filtering_requests = r.tests[1].requests + r.tests[2].requests;
    assert_eq!(first_to_alternate as u32, 1 + filtering_requests);
    assert_eq!(
        filtering_requests, 6,
        "both filtering tests went unanswered, 3 requests each"
    );
}

#[test]
fn no_nat_is_open_internet_and_skips_the_mapping_and_hairpinning_tests() {
    let r = report(
        &mut Sim::new(ServerMode::Full, None),
        ProbeOptions::default(),
    );
    assert!(!r.nat);
    assert_eq!(r.mapped, open_local(SocketId::Primary));
    assert_eq!(r.mapping, Behaviour::EndpointIndependent);
    assert_eq!(r.filtering, Behaviour::EndpointIndependent);
    assert_eq!(r.classic_name(), "open internet");
    assert_eq!(r.mapped_alternate_ip, None);
    assert_eq!(r.hairpinning, None);
    assert!(r
        .tests
        .iter()
        .all(|t| !matches!(t.test, Test::MappingAlternateIp | Test::Hairpinning)));
}

#[test]
fn a_firewall_without_translation_is_a_symmetric_udp_firewall() {
    let mut nat = NatConfig::new(
        Behaviour::EndpointIndependent,
        Behaviour::AddressAndPortDependent,
    );
    nat.translate = false;
    let mut sim = Sim::new(ServerMode::Full, Some(nat));
    let r = report(&mut sim, ProbeOptions::default());
    assert!(!r.nat);
    assert_eq!(r.filtering, Behaviour::AddressAndPortDependent);
    assert_eq!(r.classic_name(), "symmetric udp firewall");
}

#[test]
fn silent_server_is_no_answer_after_the_transaction_timeout() {
    let run = run(
        &mut Sim::new(ServerMode::Silent, None),
        ProbeOptions::default(),
    );
    assert_eq!(
        run.verdict,
        Err(ProbeError::NoAnswer {
            test: Test::Connectivity,
            to: a1p1()
        })
    );
    assert_eq!(run.elapsed, Duration::from_secs(3));
    let times: Vec<Duration> = run.sent.iter().map(|(at, _)| *at).collect();
    assert_eq!(
        times,
        [0, 500, 1500].map(Duration::from_millis),
        "RTO 500 ms, doubling"
    );
    assert!(run
        .sent
        .iter()
        .all(|(_, t)| t.to == a1p1() && t.from_socket == SocketId::Primary));
}

#[test]
fn rfc_8489_defaults_give_seven_requests_and_39_5_seconds() {
    let options = ProbeOptions {
        max_requests: 7,
        transaction_timeout: Duration::from_millis(39_500),
        ..ProbeOptions::default()
    };
    let run = run(&mut Sim::new(ServerMode::Silent, None), options);
    assert!(matches!(run.verdict, Err(ProbeError::NoAnswer { .. })));
    assert_eq!(run.elapsed, Duration::from_millis(39_500));
    let times: Vec<Duration> = run.sent.iter().map(|(at, _)| *at).collect();
    assert_eq!(
        times,
        [0, 500, 1500, 3500, 7500, 15500, 31500].map(Duration::from_millis)
    );
}

#[test]
fn server_without_other_address_is_no_rfc5780_with_the_mapped_address() {
    let mut sim = Sim::new(
        ServerMode::Single,
        Some(NatConfig::new(
            Behaviour::EndpointIndependent,
            Behaviour::EndpointIndependent,
        )),
    );
    let run = run(&mut sim, ProbeOptions::default());
    assert_eq!(
        run.verdict,
        Err(ProbeError::NoRfc5780 {
            reason: NoRfc5780Reason::NoOtherAddress,
            mapped: SocketAddr::new(public_ip(), 61001),
        })
    );
    assert_eq!(run.sent.len(), 1, "nothing after test I");
}

#[test]
fn server_refusing_change_request_is_no_rfc5780() {
    let mut sim = Sim::new(ServerMode::RefusesChange, None);
    let run = run(&mut sim, ProbeOptions::default());
    assert_eq!(
        run.verdict,
        Err(ProbeError::NoRfc5780 {
            reason: NoRfc5780Reason::ChangeRequestRefused,
            mapped: open_local(SocketId::Primary),
        })
    );
}

#[test]
fn server_ignoring_change_request_is_caught_instead_of_reported_as_open() {
    let mut sim = Sim::new(ServerMode::IgnoresChange, None);
    let run = run(&mut sim, ProbeOptions::default());
    assert_eq!(
        run.verdict,
        Err(ProbeError::UnexpectedSource {
            test: Test::FilteringChangeIpAndPort,
            expected: a2p2(),
            actual: a1p1(),
        })
    );
}

#[test]
fn unreachable_alternate_ip_is_no_answer_to_mapping_test_two() {
    let mut sim = Sim::new(
        ServerMode::AlternateDown,
        Some(NatConfig::new(
            Behaviour::EndpointIndependent,
            Behaviour::EndpointIndependent,
        )),
    );
    let run = run(&mut sim, ProbeOptions::default());
    assert_eq!(
        run.verdict,
        Err(ProbeError::NoAnswer {
            test: Test::MappingAlternateIp,
            to: a2p1(),
        })
    );
}

#[test]
fn hairpinning_nat_delivers_the_request_to_the_primary_socket() {
    let mut nat = NatConfig::new(
        Behaviour::EndpointIndependent,
        Behaviour::AddressAndPortDependent,
    );
    nat.hairpin = true;
    let mut sim = Sim::new(ServerMode::Full, Some(nat));
    let r = report(&mut sim, ProbeOptions::default());
    assert_eq!(r.hairpinning, Some(true));
    let rec = r
        .tests
        .iter()
        .find(|t| t.test == Test::Hairpinning)
        .unwrap();
    assert_eq!(rec.socket, SocketId::Secondary);
    assert_eq!(rec.to, r.mapped);
    assert!(matches!(
        rec.outcome,
        Outcome::Answered {
            received_on: SocketId::Primary,
            ..
        }
    ));
}

#[test]
fn nat_without_hairpinning_is_reported_as_such_after_the_timeout() {
    let r = report(
        &mut behind(
            Behaviour::EndpointIndependent,
            Behaviour::EndpointIndependent,
        ),
        ProbeOptions::default(),
    );
    assert_eq!(r.hairpinning, Some(false));
    let rec = r
        .tests
        .iter()
        .find(|t| t.test == Test::Hairpinning)
        .unwrap();
    assert_eq!(rec.outcome, Outcome::NoAnswer);
    assert_eq!(rec.requests, 3);
}

#[test]
fn hairpinning_is_skipped_when_disabled() {
    let options = ProbeOptions {
        hairpinning: false,
        ..ProbeOptions::default()
    };
    assert!(!options.needs_secondary());
    let mut sim = behind(
        Behaviour::EndpointIndependent,
        Behaviour::EndpointIndependent,
    );
    let r = report(&mut sim, options);
    assert_eq!(r.hairpinning, None);
    assert!(sim
        .sent
        .iter()
        .all(|(_, t)| t.from_socket == SocketId::Primary));
}

#[test]
fn large_packets_pass_when_the_path_carries_them() {
    let mut sim = behind(
        Behaviour::EndpointIndependent,
        Behaviour::EndpointIndependent,
    );
    let r = report(&mut sim, ProbeOptions::default());
    assert_eq!(r.large_packets, Some(true));
    let (_, large) = sim.sent.iter().find(|(_, t)| t.data.len() > 1500).unwrap();
    let msg = Message::parse(&large.data).unwrap();
    assert_eq!(msg.get(AttributeType::PADDING).map(|v| v.len()), Some(1500));
}

#[test]
fn large_packets_fail_when_the_path_drops_them() {
    let mut sim = behind(
        Behaviour::EndpointIndependent,
        Behaviour::EndpointIndependent,
    );
    sim.max_datagram = Some(1400);
    let r = report(&mut sim, ProbeOptions::default());
    assert_eq!(r.large_packets, Some(false));
    assert_eq!(
        r.mapping,
        Behaviour::EndpointIndependent,
        "small packets were fine"
    );
}

#[test]
fn large_packet_test_is_skipped_when_disabled() {
    let options = ProbeOptions {
        large_packet_padding: None,
        ..ProbeOptions::default()
    };
    let r = report(&mut Sim::new(ServerMode::Full, None), options);
    assert_eq!(r.large_packets, None);
}

fn lifetime_options(first: u64, max: u64, resolution: u64) -> ProbeOptions {
    ProbeOptions {
        lifetime: Some(LifetimeSearch {
            first: Duration::from_secs(first),
            max: Duration::from_secs(max),
            resolution: Duration::from_secs(resolution),
        }),
        ..ProbeOptions::default()
    }
}

#[test]
fn binding_lifetime_is_bracketed_by_the_search() {
    let mut nat = NatConfig::new(
        Behaviour::EndpointIndependent,
        Behaviour::AddressAndPortDependent,
    );
    nat.lifetime = Some(Duration::from_secs(40));
    let mut sim = Sim::new(ServerMode::Full, Some(nat));
    let r = report(&mut sim, lifetime_options(10, 120, 5));
    // Idle 10, 20, 40 survive; 80, 60, 50, 45 do not.
    assert_eq!(
        r.lifetime,
        Some(Lifetime {
            at_least: Duration::from_secs(40),
            less_than: Some(Duration::from_secs(45)),
        })
    );
    let idles: Vec<u64> = r
        .tests
        .iter()
        .filter(|t| t.test == Test::LifetimeCheck)
        .map(|t| t.idle.unwrap().as_secs())
        .collect();
    assert_eq!(idles, [10, 20, 40, 80, 60, 50, 45]);
    // Each check went from port Y with RESPONSE-PORT naming X's public port.
    let (_, check) = sim
        .sent
        .iter()
        .find(|(_, t)| t.from_socket == SocketId::Secondary && t.to == a1p1())
        .unwrap();
    let msg = Message::parse(&check.data).unwrap();
    assert_eq!(
        ResponsePort::decode(msg.get(AttributeType::RESPONSE_PORT).unwrap()),
        Ok(ResponsePort(r.mapped.port()))
    );
}

#[test]
fn binding_outliving_the_search_reports_only_a_lower_bound() {
    let mut sim = behind(
        Behaviour::EndpointIndependent,
        Behaviour::EndpointIndependent,
    );
    let r = report(&mut sim, lifetime_options(10, 30, 5));
    assert_eq!(
        r.lifetime,
        Some(Lifetime {
            at_least: Duration::from_secs(30),
            less_than: None,
        })
    );
}

#[test]
fn lifetime_search_is_skipped_by_default() {
    let r = report(
        &mut behind(
            Behaviour::EndpointIndependent,
            Behaviour::EndpointIndependent,
        ),
        ProbeOptions::default(),
    );
    assert_eq!(r.lifetime, None);
    assert!(
        ProbeOptions::default().needs_secondary(),
        "hairpinning needs it"
    );
}

#[test]
fn new_transactions_are_paced_at_most_ten_per_second() {
    let mut sim = behind(
        Behaviour::EndpointIndependent,
        Behaviour::EndpointIndependent,
    );
    let run = run(&mut sim, ProbeOptions::default());
    assert!(run.verdict.is_ok());
    let mut firsts: Vec<Duration> = Vec::new();
    let mut seen = Vec::new();
    for (at, t) in &run.sent {
        let id = Message::parse(&t.data).unwrap().transaction_id();
        if !seen.contains(&id) {
            seen.push(id);
            firsts.push(*at);
        }
    }
    // Connectivity, filtering II, mapping II, hairpinning, large packet.
    assert_eq!(firsts.len(), 5);
    for pair in firsts.windows(2) {
        assert!(
            pair[1] - pair[0] >= Duration::from_millis(100),
            "{firsts:?}"
        );
    }
}

#[test]
fn transaction_ids_are_distinct_and_come_from_the_seed() {
    let ids = |seed: [u8; 32]| -> Vec<[u8; 12]> {
        let mut sim = behind(
            Behaviour::AddressAndPortDependent,
            Behaviour::AddressAndPortDependent,
        );
        run_with(&mut sim, ProbeOptions::default(), seed)
            .sent
            .iter()
            .map(|(_, t)| Message::parse(&t.data).unwrap().transaction_id().0)
            .collect()
    };
    let a = ids(SEED);
    assert_eq!(a, ids(SEED), "same seed, same ids");
    let b = ids([8; 32]);
    assert!(
        a.iter().all(|id| !b.contains(id)),
        "another seed, other ids"
    );
    let mut distinct = a.clone();
    distinct.sort();
    distinct.dedup();
    // 7 transactions, retransmissions reuse their id.
    assert_eq!(distinct.len(), 7);
}

#[test]
fn stray_datagrams_change_nothing() {
    let now = Instant::now();
    let mut probe = Probe::new(
        a1p1(),
        open_local(SocketId::Primary),
        ProbeOptions::default(),
        SEED,
        now,
    );
    let first = probe.poll_transmit().unwrap();
    let deadline = probe.poll_timeout();
    // Garbage, our own request echoed as a request, a response with another
    // id, and the right answer on the wrong socket.
    probe.handle_response(now, SocketId::Primary, a1p1(), b"not stun at all");
    probe.handle_response(now, SocketId::Primary, a1p1(), &first.data);
    let msg = Message::parse(&first.data).unwrap();
    let mut out = vec![0u8; 512];
    let addrs = ServerAddresses::with_alternate(a1p1(), a2p2()).unwrap();
    let n = answer(
        &msg,
        open_local(SocketId::Primary),
        a1p1(),
        &addrs,
        &ServerOptions::default(),
        &mut out,
    )
    .unwrap()
    .len;
    let mut wrong_id = out[..n].to_vec();
    wrong_id[10] ^= 0xff;
    probe.handle_response(now, SocketId::Primary, a1p1(), &wrong_id);
    probe.handle_response(now, SocketId::Secondary, a1p1(), &out[..n]);
    assert!(!probe.is_done());
    assert_eq!(probe.poll_timeout(), deadline);
    assert_eq!(probe.poll_transmit(), None);
    // The right answer on the right socket moves on.
    probe.handle_response(now, SocketId::Primary, a1p1(), &out[..n]);
    assert_eq!(
        probe.poll_transmit(),
        None,
        "paced: the next test starts 100 ms later"
    );
    assert_eq!(probe.poll_timeout(), Some(now + Duration::from_millis(100)));
    probe.handle_timeout(now + Duration::from_millis(100));
    let next = probe.poll_transmit().unwrap();
    let msg = Message::parse(&next.data).unwrap();
    assert_eq!(
        ChangeRequest::decode(msg.get(AttributeType::CHANGE_REQUEST).unwrap()),
        Ok(ChangeRequest::IP_AND_PORT)
    );
    assert_eq!(next.to, a1p1());
}
