//! RFC 5780 mode as one unit, sans-IO: which datagrams on the four sockets
//! are its own (Binding requests, and with backward compatibility RFC 3489
//! ones), the reply budget its answers spend, and the answer from
//! [`super::server`]. The shell only asks "is this one of the four
//! sockets?" and sends what comes back from the socket named.

use std::net::SocketAddr;
use std::time::Instant;

use super::server::{answer, Reply, ServerAddresses, ServerOptions};
use super::server::{DEFAULT_MAX_PADDING, RESPONSE_OVERHEAD};
use crate::auth::rate::ReplyBudget;
use crate::stun::{Message, ParseError, HEADER_LEN};

/// What became of one datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Handled {
    /// Not a Binding request: the TURN core takes it.
    NotMine,
    /// A Binding request that gets no answer (malformed, or over budget).
    Dropped,
    /// Send this, from the socket bound to `reply.from`.
    Reply(Reply),
}

/// The RFC 5780 service of one server.
#[derive(Clone)]
pub(crate) struct Service {
    addresses: ServerAddresses,
    software: Option<String>,
    classic: bool,
    budget: ReplyBudget,
}

impl Service {
    /// `budget` is the one every unauthenticated answer spends (a clone
    /// shares it); `classic` answers RFC 3489 clients.
    pub(crate) fn new(
        addresses: ServerAddresses,
        software: Option<String>,
        classic: bool,
        budget: ReplyBudget,
    ) -> Self {
        Service {
            addresses,
            software,
            classic,
            budget,
        }
    }

    pub(crate) fn addresses(&self) -> &ServerAddresses {
        &self.addresses
    }

    /// The answer buffer [`Service::handle`] needs.
    pub(crate) fn buffer_len(&self) -> usize {
        DEFAULT_MAX_PADDING + RESPONSE_OVERHEAD
    }

    /// A datagram from `from` that arrived on the local socket `local`.
    pub(crate) fn handle(
        &self,
        now: Instant,
        local: SocketAddr,
        from: SocketAddr,
        bytes: &[u8],
        out: &mut [u8],
    ) -> Handled {
        // Binding requests only (type 0x0001); Allocate and everything else
        // on these sockets is TURN's.
        if bytes.len() < HEADER_LEN || bytes[..2] != [0, 1] {
            return Handled::NotMine;
        }
        let msg = match Message::parse(bytes) {
            Ok(m) => m,
            // An RFC 3489 client runs its NAT-type tests here too.
            Err(ParseError::BadMagicCookie) if self.classic => {
                match Message::parse_classic(bytes) {
                    Ok(m) => m,
                    Err(_) => return Handled::Dropped,
                }
            }
            Err(_) => return Handled::NotMine,
        };
        // Each answer is an unauthenticated reflection, possibly toward
        // another port: it spends the source's budget, like a 401.
        if !self.budget.allow(now, from.ip()) {
            return Handled::Dropped;
        }
        let options = ServerOptions {
            software: self.software.as_deref(),
            ..ServerOptions::default()
        };
        match answer(&msg, from, local, &self.addresses, &options, out) {
            Some(reply) => Handled::Reply(reply),
            None => Handled::Dropped,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nat::tests::{a1p1, a2p2};
    use crate::stun::{Class, MessageBuilder, MessageType, Method, TransactionId};
    use std::time::Duration;

    fn service(rate: u32, classic: bool) -> Service {
        Service::new(
            ServerAddresses::with_alternate(a1p1(), a2p2()).unwrap(),
            None,
            classic,
            ReplyBudget::new(rate, [7; 32]),
        )
    }

    fn request(method: Method) -> Vec<u8> {
        let mut buf = [0u8; 64];
        let b = MessageBuilder::new(
            &mut buf,
            MessageType::new(method, Class::Request),
            TransactionId([1; 12]),
        );
        let n = b.finish().unwrap();
        buf[..n].to_vec()
    }

    fn client() -> SocketAddr {
        "203.0.113.7:40000".parse().unwrap()
    }

    #[test]
    fn binding_requests_are_its_own_and_everything_else_goes_to_turn() {
        let s = service(0, true);
        let mut out = vec![0u8; s.buffer_len()];
        let t0 = Instant::now();
        let h = s.handle(t0, a1p1(), client(), &request(Method::BINDING), &mut out);
        assert!(matches!(h, Handled::Reply(r) if r.from == a1p1() && r.to == client()));
        for other in [
            request(Method::ALLOCATE),
            vec![0x40, 0x00, 0x00, 0x04, 1, 2, 3, 4],
            b"garbage that is no STUN at all".to_vec(),
        ] {
            assert_eq!(
                s.handle(t0, a1p1(), client(), &other, &mut out),
                Handled::NotMine
            );
        }
    }

    #[test]
    fn classic_requests_are_answered_only_with_backward_compatibility() {
        let mut classic = request(Method::BINDING);
        classic[4..8].copy_from_slice(&[9, 9, 9, 9]);
        let t0 = Instant::now();
        let on = service(0, true);
        let mut out = vec![0u8; on.buffer_len()];
        let Handled::Reply(r) = on.handle(t0, a1p1(), client(), &classic, &mut out) else {
            panic!("a classic answer")
        };
        assert!(Message::parse_classic(&out[..r.len]).is_ok());
        let off = service(0, false);
        assert_eq!(
            off.handle(t0, a1p1(), client(), &classic, &mut out),
            Handled::NotMine
        );
    }

    #[test]
    fn answers_spend_the_shared_budget_and_it_refills_with_time() {
        let s = service(1, true);
        let twin = s.clone();
        let mut out = vec![0u8; s.buffer_len()];
        let req = request(Method::BINDING);
        let t0 = Instant::now();
        let answered = (0..5)
            .filter(|_| {
                matches!(
                    s.handle(t0, a1p1(), client(), &req, &mut out),
                    Handled::Reply(_)
                )
            })
            .count();
        assert_eq!(answered, 2, "a burst of two at rate 1");
        // A clone (another worker) shares the budget.
        assert_eq!(
            twin.handle(t0, a1p1(), client(), &req, &mut out),
            Handled::Dropped
        );
        let t1 = t0 + Duration::from_secs(1);
        assert!(matches!(
            twin.handle(t1, a1p1(), client(), &req, &mut out),
            Handled::Reply(_)
        ));
    }
}
