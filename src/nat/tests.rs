//! The probe against a simulated NAT in front of a simulated server that
//! answers with [`super::server::answer`]. Time only moves by jumping to
//! `poll_timeout()`; nothing sleeps.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use super::*;
use crate::stun::{AttributeType, Message};

const SEED: [u8; 32] = [7; 32];

pub(super) fn a1p1() -> SocketAddr {
    "192.0.2.1:3478".parse().unwrap()
}
pub(super) fn a1p2() -> SocketAddr {
    "192.0.2.1:3479".parse().unwrap()
}
pub(super) fn a2p1() -> SocketAddr {
    "198.51.100.2:3478".parse().unwrap()
}
pub(super) fn a2p2() -> SocketAddr {
    "198.51.100.2:3479".parse().unwrap()
}
fn public_ip() -> IpAddr {
    "203.0.113.9".parse().unwrap()
}
fn nat_local(socket: SocketId) -> SocketAddr {
    match socket {
        SocketId::Primary => "10.0.0.2:50000".parse().unwrap(),
        SocketId::Secondary => "10.0.0.2:50001".parse().unwrap(),
    }
}
fn open_local(socket: SocketId) -> SocketAddr {
    match socket {
        SocketId::Primary => "203.0.113.50:50000".parse().unwrap(),
        SocketId::Secondary => "203.0.113.50:50001".parse().unwrap(),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ServerMode {
    /// Two IPs, two ports, RFC 5780 rules.
    Full,
    /// One address: no OTHER-ADDRESS, 420 to CHANGE-REQUEST.
    Single,
    /// Never answers.
    Silent,
    /// Sends OTHER-ADDRESS but answers every request from where it arrived.
    IgnoresChange,
    /// Sends OTHER-ADDRESS but answers CHANGE-REQUEST with 420.
    RefusesChange,
    /// The alternate IP is unreachable.
    AlternateDown,
}

#[derive(Debug, Clone, Copy)]
struct NatConfig {
    mapping: Behaviour,
    filtering: Behaviour,
    /// `false`: a stateful firewall that keeps addresses.
    translate: bool,
    hairpin: bool,
    lifetime: Option<Duration>,
}

impl NatConfig {
    fn new(mapping: Behaviour, filtering: Behaviour) -> Self {
        NatConfig {
            mapping,
            filtering,
            translate: true,
            hairpin: false,
            lifetime: None,
        }
    }
}

struct Binding {
    socket: SocketId,
    /// First destination, the mapping key for dependent mappings.
    key: SocketAddr,
    public: SocketAddr,
    contacted: Vec<SocketAddr>,
    last_out: Instant,
}

type Delivery = (SocketId, SocketAddr, Vec<u8>);

struct Sim {
    mode: ServerMode,
    nat: Option<NatConfig>,
    /// Datagrams above this size are dropped, both ways.
    max_datagram: Option<usize>,
    bindings: Vec<Binding>,
    next_port: u16,
    /// Every datagram the probe sent, with its time.
    sent: Vec<(Instant, ProbeTransmit)>,
}

impl Sim {
    fn new(mode: ServerMode, nat: Option<NatConfig>) -> Self {
        Sim {
            mode,
            nat,
            max_datagram: None,
            bindings: Vec::new(),
            next_port: 61000,
            sent: Vec::new(),
        }
    }

    fn local(&self, socket: SocketId) -> SocketAddr {
        if self.nat.is_some() {
            nat_local(socket)
        } else {
            open_local(socket)
        }
    }

    fn fits(&self, len: usize) -> bool {
        self.max_datagram.map_or(true, |m| len <= m)
    }

    fn expire(&mut self, now: Instant) {
        if let Some(lifetime) = self.nat.and_then(|n| n.lifetime) {
            self.bindings
                .retain(|b| now.duration_since(b.last_out) <= lifetime);
        }
    }

    /// The outbound binding for `socket` toward `to`, created on demand.
    fn outbound(&mut self, now: Instant, socket: SocketId, to: SocketAddr) -> SocketAddr {
        let nat = self.nat.expect("behind a NAT");
        let found = self.bindings.iter().position(|b| {
            b.socket == socket
                && match nat.mapping {
                    Behaviour::EndpointIndependent => true,
                    Behaviour::AddressDependent => b.key.ip() == to.ip(),
                    Behaviour::AddressAndPortDependent => b.key == to,
                }
        });
        let i = match found {
            Some(i) => i,
            None => {
                let public = if nat.translate {
                    self.next_port += 1;
                    SocketAddr::new(public_ip(), self.next_port)
                } else {
                    self.local(socket)
                };
                self.bindings.push(Binding {
                    socket,
                    key: to,
                    public,
                    contacted: Vec::new(),
                    last_out: now,
                });
                self.bindings.len() - 1
            }
        };
        let b = &mut self.bindings[i];
        b.contacted.push(to);
        b.last_out = now;
        b.public
    }

    /// A datagram from the Internet to `to`: through the NAT's filter, to a
    /// socket.
    fn inbound(
        &mut self,
        now: Instant,
        from: SocketAddr,
        to: SocketAddr,
        data: Vec<u8>,
    ) -> Option<Delivery> {
        if !self.fits(data.len()) {
            return None;
        }
        let Some(nat) = self.nat else {
            let socket = [SocketId::Primary, SocketId::Secondary]
                .into_iter()
                .find(|s| self.local(*s) == to)?;
            return Some((socket, from, data));
        };
        self.expire(now);
        let b = self.bindings.iter().find(|b| b.public == to)?;
        let allowed = match nat.filtering {
            Behaviour::EndpointIndependent => true,
            Behaviour::AddressDependent => b.contacted.iter().any(|c| c.ip() == from.ip()),
            Behaviour::AddressAndPortDependent => b.contacted.contains(&from),
        };
        allowed.then_some((b.socket, from, data))
    }

    fn server_addresses(&self) -> ServerAddresses {
        match self.mode {
            ServerMode::Single => ServerAddresses::single(a1p1()),
            _ => ServerAddresses::with_alternate(a1p1(), a2p2()).unwrap(),
        }
    }

    /// The probe sends `t`; returns what arrives back on its sockets.
    fn send(&mut self, now: Instant, t: &ProbeTransmit) -> Vec<Delivery> {
        self.sent.push((now, t.clone()));
        if !self.fits(t.data.len()) {
            return vec![];
        }
        let source = match self.nat {
            None => self.local(t.from_socket),
            Some(nat) => {
                self.expire(now);
                let hairpin_target = self
                    .bindings
                    .iter()
                    .find(|b| b.public == t.to)
                    .map(|b| b.socket);
                let source = self.outbound(now, t.from_socket, t.to);
                if t.to.ip() == public_ip() {
                    // Hairpinning: straight back in, or nowhere.
                    return match (nat.hairpin, hairpin_target) {
                        (true, Some(socket)) => vec![(socket, source, t.data.clone())],
                        _ => vec![],
                    };
                }
                source
            }
        };
        self.serve(now, source, t.to, &t.data).into_iter().collect()
    }

    fn serve(
        &mut self,
        now: Instant,
        source: SocketAddr,
        local: SocketAddr,
        data: &[u8],
    ) -> Option<Delivery> {
        let addrs = self.server_addresses();
        if self.mode == ServerMode::Silent
            || !addrs.local_addresses().contains(&local)
            || (self.mode == ServerMode::AlternateDown && local.ip() == a2p2().ip())
        {
            return None;
        }
        let msg = Message::parse(data).ok()?;
        let answering = match self.mode {
            ServerMode::RefusesChange if msg.get(AttributeType::CHANGE_REQUEST).is_some() => {
                ServerAddresses::single(a1p1())
            }
            _ => addrs,
        };
        let mut out = vec![0u8; 4096];
        let reply = answer(
            &msg,
            source,
            local,
            &answering,
            &ServerOptions::default(),
            &mut out,
        )?;
        out.truncate(reply.len);
        let from = match self.mode {
            ServerMode::IgnoresChange => local,
            ServerMode::AlternateDown if reply.from.ip() == a2p2().ip() => return None,
            _ => reply.from,
        };
        self.inbound(now, from, reply.to, out)
    }
}

struct Run {
    verdict: Result<Report, ProbeError>,
    elapsed: Duration,
    sent: Vec<(Duration, ProbeTransmit)>,
}

fn run_with(sim: &mut Sim, options: ProbeOptions, seed: [u8; 32]) -> Run {
    let t0 = Instant::now();
    let mut now = t0;
    let mut probe = Probe::new(a1p1(), sim.local(SocketId::Primary), options, seed, now);
    for _ in 0..100_000 {
        while let Some(t) = probe.poll_transmit() {
            for (socket, from, data) in sim.send(now, &t) {
                probe.handle_response(now, socket, from, &data);
            }
        }
        if let Some(verdict) = probe.verdict() {
            assert_eq!(
                probe.poll_timeout(),
                None,
                "a finished probe wants no timer"
            );
            assert_eq!(
                probe.poll_transmit(),
                None,
                "a finished probe sends nothing"
            );
            let sent = sim
                .sent
                .iter()
                .map(|(at, t)| (*at - t0, t.clone()))
                .collect();
            return Run {
                verdict,
                elapsed: now - t0,
                sent,
            };
        }
        let next = probe.poll_timeout().expect("a running probe has a timer");
        assert!(next >= now, "timers never go back in time");
        now = next;
        probe.handle_timeout(now);
    }
    panic!("the probe never finished");
}

fn run(sim: &mut Sim, options: ProbeOptions) -> Run {
    run_with(sim, options, SEED)
}

fn report(sim: &mut Sim, options: ProbeOptions) -> Report {
    match run(sim, options).verdict {
        Ok(r) => r,
        Err(e) => panic!("expected a report, got {e}"),
    }
}

fn behind(mapping: Behaviour, filtering: Behaviour) -> Sim {
    Sim::new(ServerMode::Full, Some(NatConfig::new(mapping, filtering)))
}

fn classic(mapping: Behaviour, filtering: Behaviour) -> &'static str {
    use Behaviour::*;
    match (mapping, filtering) {
        (EndpointIndependent, EndpointIndependent) => "full cone",
        (EndpointIndependent, AddressDependent) => "restricted cone",
        (EndpointIndependent, AddressAndPortDependent) => "port-restricted cone",
        _ => "symmetric",
    }
}

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

#[test]
fn report_serialises_to_json_with_the_verdict_and_addresses() {
    let mut nat = NatConfig::new(Behaviour::EndpointIndependent, Behaviour::AddressDependent);
    nat.hairpin = true;
    let r = report(
        &mut Sim::new(ServerMode::Full, Some(nat)),
        ProbeOptions::default(),
    );
    let j = r.to_json();
    assert_eq!(j["mapping"], "endpoint-independent");
    assert_eq!(j["filtering"], "address-dependent");
    assert_eq!(j["classic"], "restricted cone");
    assert_eq!(j["hairpinning"], true);
    assert_eq!(j["nat"], true);
    assert_eq!(j["large_packets"], true);
    assert_eq!(j["lifetime"], serde_json::Value::Null);
    assert_eq!(j["server"], "192.0.2.1:3478");
    assert_eq!(j["local"], "10.0.0.2:50000");
    assert_eq!(j["mapped"], "203.0.113.9:61001");
    assert_eq!(j["other_address"], "198.51.100.2:3479");
    assert_eq!(j["response_origin"], "192.0.2.1:3478");
    assert_eq!(j["tests"][0]["test"], "connectivity");
    assert_eq!(j["tests"][0]["outcome"], "answered");
    assert_eq!(j["tests"][0]["mapped"], "203.0.113.9:61001");
    assert_eq!(j["tests"][1]["outcome"], "no-answer");
    assert_eq!(j["tests"][1]["requests"], 3);
}

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
    assert_eq!(e.to_json()["error"], "no-rfc5780");
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
