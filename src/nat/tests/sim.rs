//! A simulated NAT in front of a simulated RFC 5780 server that answers with
//! [`crate::nat::server::answer`], and the loop that runs a probe against
//! them. Time only moves by jumping to `poll_timeout()`; nothing sleeps.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use crate::nat::report::*;
use crate::nat::*;
use crate::nat::{probe::*, server::*};
use crate::stun::{AttributeType, Message};

pub(crate) const SEED: [u8; 32] = [7; 32];

pub(crate) fn a1p1() -> SocketAddr {
    "192.0.2.1:3478".parse().unwrap()
}
pub(crate) fn a1p2() -> SocketAddr {
    "192.0.2.1:3479".parse().unwrap()
}
pub(crate) fn a2p1() -> SocketAddr {
    "198.51.100.2:3478".parse().unwrap()
}
pub(crate) fn a2p2() -> SocketAddr {
    "198.51.100.2:3479".parse().unwrap()
}
pub(crate) fn public_ip() -> IpAddr {
    "203.0.113.9".parse().unwrap()
}
pub(crate) fn nat_local(socket: SocketId) -> SocketAddr {
    match socket {
        SocketId::Primary => "10.0.0.2:50000".parse().unwrap(),
        SocketId::Secondary => "10.0.0.2:50001".parse().unwrap(),
    }
}
pub(crate) fn open_local(socket: SocketId) -> SocketAddr {
    match socket {
        SocketId::Primary => "203.0.113.50:50000".parse().unwrap(),
        SocketId::Secondary => "203.0.113.50:50001".parse().unwrap(),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ServerMode {
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
pub(crate) struct NatConfig {
    pub(crate) mapping: Behaviour,
    pub(crate) filtering: Behaviour,
    /// `false`: a stateful firewall that keeps addresses.
    pub(crate) translate: bool,
    pub(crate) hairpin: bool,
    pub(crate) lifetime: Option<Duration>,
}

impl NatConfig {
    pub(crate) fn new(mapping: Behaviour, filtering: Behaviour) -> Self {
        NatConfig {
            mapping,
            filtering,
            translate: true,
            hairpin: false,
            lifetime: None,
        }
    }
}

pub(crate) struct Binding {
    pub(crate) socket: SocketId,
    /// First destination, the mapping key for dependent mappings.
    pub(crate) key: SocketAddr,
    pub(crate) public: SocketAddr,
    pub(crate) contacted: Vec<SocketAddr>,
    pub(crate) last_out: Instant,
}

type Delivery = (SocketId, SocketAddr, Vec<u8>);

pub(crate) struct Sim {
    pub(crate) mode: ServerMode,
    pub(crate) nat: Option<NatConfig>,
    /// Datagrams above this size are dropped, both ways.
    pub(crate) max_datagram: Option<usize>,
    pub(crate) bindings: Vec<Binding>,
    pub(crate) next_port: u16,
    /// Every datagram the probe sent, with its time.
    pub(crate) sent: Vec<(Instant, ProbeTransmit)>,
}

impl Sim {
    pub(crate) fn new(mode: ServerMode, nat: Option<NatConfig>) -> Self {
        Sim {
            mode,
            nat,
            max_datagram: None,
            bindings: Vec::new(),
            next_port: 61000,
            sent: Vec::new(),
        }
    }

    pub(crate) fn local(&self, socket: SocketId) -> SocketAddr {
        if self.nat.is_some() {
            nat_local(socket)
        } else {
            open_local(socket)
        }
    }

    pub(crate) fn fits(&self, len: usize) -> bool {
        self.max_datagram.map_or(true, |m| len <= m)
    }

    pub(crate) fn expire(&mut self, now: Instant) {
        if let Some(lifetime) = self.nat.and_then(|n| n.lifetime) {
            self.bindings
                .retain(|b| now.duration_since(b.last_out) <= lifetime);
        }
    }

    /// The outbound binding for `socket` toward `to`, created on demand.
    pub(crate) fn outbound(
        &mut self,
        now: Instant,
        socket: SocketId,
        to: SocketAddr,
    ) -> SocketAddr {
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
    pub(crate) fn inbound(
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

    pub(crate) fn server_addresses(&self) -> ServerAddresses {
        match self.mode {
            ServerMode::Single => ServerAddresses::single(a1p1()),
            _ => ServerAddresses::with_alternate(a1p1(), a2p2()).unwrap(),
        }
    }

    /// The probe sends `t`; returns what arrives back on its sockets.
    pub(crate) fn send(&mut self, now: Instant, t: &ProbeTransmit) -> Vec<Delivery> {
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

    pub(crate) fn serve(
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

pub(crate) struct Run {
    pub(crate) verdict: Result<Report, ProbeError>,
    pub(crate) elapsed: Duration,
    pub(crate) sent: Vec<(Duration, ProbeTransmit)>,
}

pub(crate) fn run_with(sim: &mut Sim, options: ProbeOptions, seed: [u8; 32]) -> Run {
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

pub(crate) fn run(sim: &mut Sim, options: ProbeOptions) -> Run {
    run_with(sim, options, SEED)
}

pub(crate) fn report(sim: &mut Sim, options: ProbeOptions) -> Report {
    match run(sim, options).verdict {
        Ok(r) => r,
        Err(e) => panic!("expected a report, got {e}"),
    }
}

pub(crate) fn behind(mapping: Behaviour, filtering: Behaviour) -> Sim {
    Sim::new(ServerMode::Full, Some(NatConfig::new(mapping, filtering)))
}

pub(crate) fn classic(mapping: Behaviour, filtering: Behaviour) -> &'static str {
    use Behaviour::*;
    match (mapping, filtering) {
        (EndpointIndependent, EndpointIndependent) => "full cone",
        (EndpointIndependent, AddressDependent) => "restricted cone",
        (EndpointIndependent, AddressAndPortDependent) => "port-restricted cone",
        _ => "symmetric",
    }
}
