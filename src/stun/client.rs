//! The client side of a STUN transaction, sans-IO: the RFC 8489 §6.2.1
//! retransmission schedule ([`Transaction`]), transaction ids
//! ([`TxIds`]) and long-term credentials learned from a 401 or 438
//! ([`ClientCredentials`]). Time comes in as `now`; nothing here reads a
//! clock or touches a socket. The TURN client (`crate::turn_client`) and the RFC 5780
//! probe (`crate::nat`) are built on it.

use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use super::attributes::AttributeType;
use super::integrity::{long_term_key_md5, long_term_key_sha256};
use super::{Message, MessageBuilder, TransactionId};

/// When to send a request again and when to give up (RFC 8489 §6.2.1):
/// "starting with an interval of RTO [...], doubling after each
/// retransmission" until Rc requests are sent, then Rm × RTO of silence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Schedule {
    /// RTO: the wait after the first request.
    pub rto: Duration,
    /// Cap on the doubled wait; `Some(rto)` keeps it constant.
    pub max_rto: Option<Duration>,
    /// Rc: most requests sent.
    pub rc: u32,
    /// Rm: after the last request, wait this many initial RTOs; `None` waits
    /// for `timeout` alone.
    pub rm: Option<u32>,
    /// Bound on the whole transaction from its start; over a reliable
    /// transport it is the one deadline (RFC 8489: Ti, 39.5 s by default).
    pub timeout: Option<Duration>,
}

impl Schedule {
    /// RFC 8489's defaults: RTO 500 ms, Rc 7, Rm 16 (39.5 s in all).
    pub const RFC8489: Schedule = Schedule {
        rto: Duration::from_millis(500),
        max_rto: None,
        rc: 7,
        rm: Some(16),
        timeout: None,
    };
    /// RFC 8489 §6.2.2 Ti: a reliable transport's one deadline by default.
    pub const TI: Duration = Duration::from_millis(39_500);
}

/// Where a [`Transaction`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransactionState {
    /// Waiting for an answer; retransmitting on schedule.
    Pending,
    /// Answered.
    Answered,
    /// No answer by the deadline.
    TimedOut,
}

/// One request in flight: when to (re)send it and when it has failed. Over
/// a reliable transport (TCP, TLS) it is sent once and has one deadline.
#[derive(Debug, Clone)]
pub struct Transaction {
    id: TransactionId,
    request: Vec<u8>,
    schedule: Schedule,
    reliable: bool,
    sent: u32,
    interval: Duration,
    next_send: Option<Instant>,
    /// `start + timeout`, if bounded.
    deadline: Option<Instant>,
    /// Last request + Rm × RTO, once Rc requests are out.
    last_wait: Option<Instant>,
    state: TransactionState,
}

impl Transaction {
    /// A transaction whose first request goes out at `start` (which may be
    /// later than the caller's now, to pace transactions).
    pub fn new(
        id: TransactionId,
        request: Vec<u8>,
        schedule: Schedule,
        reliable: bool,
        start: Instant,
    ) -> Self {
        let timeout = match (reliable, schedule.timeout) {
            (_, Some(t)) => Some(t),
            (true, None) => Some(Schedule::TI),
            (false, None) => None,
        };
        Transaction {
            id,
            request,
            schedule,
            reliable,
            sent: 0,
            interval: schedule.rto,
            next_send: Some(start),
            deadline: timeout.and_then(|t| start.checked_add(t)),
            last_wait: None,
            state: TransactionState::Pending,
        }
    }

    /// The transaction id of every (re)transmission.
    pub fn id(&self) -> TransactionId {
        self.id
    }

    /// The request's bytes.
    pub fn request(&self) -> &[u8] {
        &self.request
    }

    /// How many times the request was sent.
    pub fn sent(&self) -> u32 {
        self.sent
    }

    /// Where the transaction is.
    pub fn state(&self) -> TransactionState {
        self.state
    }

    /// The request if a (re)transmission is due at `now`.
    pub fn poll_transmit(&mut self, now: Instant) -> Option<&[u8]> {
        self.handle_timeout(now);
        if self.state != TransactionState::Pending || !self.next_send.is_some_and(|at| at <= now) {
            return None;
        }
        self.sent += 1;
        let next = now + self.interval;
        self.interval *= 2;
        if let Some(cap) = self.schedule.max_rto {
            self.interval = self.interval.min(cap);
        }
        let more = !self.reliable
            && self.sent < self.schedule.rc
            && self.deadline.map_or(true, |d| next < d);
        self.next_send = more.then_some(next);
        if !more && !self.reliable {
            self.last_wait = self
                .schedule
                .rm
                .and_then(|rm| self.schedule.rto.checked_mul(rm))
                .and_then(|w| now.checked_add(w));
        }
        Some(&self.request)
    }

    /// When [`Self::poll_transmit`] or [`Self::handle_timeout`] has work;
    /// `None` once answered or failed.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.state != TransactionState::Pending {
            return None;
        }
        [self.next_send, self.deadline, self.last_wait]
            .into_iter()
            .flatten()
            .min()
    }

    /// Fails the transaction once its deadline has passed.
    pub fn handle_timeout(&mut self, now: Instant) {
        let over = |t: Option<Instant>| t.is_some_and(|t| now >= t);
        if self.state == TransactionState::Pending && (over(self.deadline) || over(self.last_wait))
        {
            self.state = TransactionState::TimedOut;
            self.next_send = None;
        }
    }

    /// Whether `msg` is this transaction's (same id); if so the
    /// transaction is over. The caller judges its class.
    pub fn handle_response(&mut self, msg: &Message<'_>) -> bool {
        let ours = self.state == TransactionState::Pending && msg.transaction_id() == self.id;
        if ours {
            self.state = TransactionState::Answered;
            self.next_send = None;
        }
        ours
    }
}

/// Transaction ids, "uniformly and randomly chosen" (RFC 8489 §6): a
/// SHA-256 of a secret seed and a counter. The shell passes 32 random
/// bytes; tests pass a constant for determinism.
#[derive(Debug, Clone)]
pub struct TxIds {
    seed: [u8; 32],
    next: u64,
}

impl TxIds {
    /// Ids drawn from `seed`: reproducible in tests, random in use.
    pub fn new(seed: [u8; 32]) -> Self {
        TxIds { seed, next: 0 }
    }

    /// A seed from a number, for loads whose ids need not be secret.
    pub fn from_u64(seed: u64) -> Self {
        let mut s = [0u8; 32];
        s[..8].copy_from_slice(&seed.to_be_bytes());
        TxIds::new(s)
    }

    /// The next id.
    pub fn next_id(&mut self) -> TransactionId {
        let digest = Sha256::new()
            .chain_update(self.seed)
            .chain_update(self.next.to_be_bytes())
            .finalize();
        self.next += 1;
        let mut id = [0u8; 12];
        id.copy_from_slice(&digest[..12]);
        TransactionId(id)
    }
}

/// Which MESSAGE-INTEGRITY a signed request carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Integrity {
    /// MESSAGE-INTEGRITY (HMAC-SHA1, MD5 key): what every server accepts.
    #[default]
    Sha1,
    /// MESSAGE-INTEGRITY-SHA256 with PASSWORD-ALGORITHM SHA-256 (RFC 8489
    /// §9.2.4); needs the server's PASSWORD-ALGORITHMS from the challenge.
    Sha256,
}

/// PASSWORD-ALGORITHM number of SHA-256 (RFC 8489 §18.5).
const ALGORITHM_SHA256: u16 = 0x0002;

/// Long-term credentials (RFC 8489 §9.2) and the realm and nonce the server
/// gave in its last 401 or 438.
#[derive(Clone)]
pub struct ClientCredentials {
    /// USERNAME.
    pub user: String,
    password: String,
    /// The realm of the last challenge.
    pub realm: String,
    /// The nonce of the last challenge.
    pub nonce: Vec<u8>,
    integrity: Integrity,
    /// PASSWORD-ALGORITHMS of the challenge, echoed in SHA-256 requests.
    algorithms: Vec<u8>,
    key: Vec<u8>,
}

impl std::fmt::Debug for ClientCredentials {
    // The password and key stay out of logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientCredentials")
            .field("user", &self.user)
            .field("realm", &self.realm)
            .field("integrity", &self.integrity)
            .finish_non_exhaustive()
    }
}

impl ClientCredentials {
    /// Credentials before the first challenge (no realm or nonce yet).
    pub fn new(user: &str, password: &str) -> Self {
        ClientCredentials {
            user: user.into(),
            password: password.into(),
            realm: String::new(),
            nonce: Vec::new(),
            integrity: Integrity::Sha1,
            algorithms: Vec::new(),
            key: Vec::new(),
        }
    }

    /// Signs with `integrity` once a challenge allows it.
    pub fn with_integrity(mut self, integrity: Integrity) -> Self {
        self.integrity = integrity;
        self
    }

    /// Whether a nonce is known, so requests go out signed.
    pub fn ready(&self) -> bool {
        !self.nonce.is_empty()
    }

    /// Takes REALM and NONCE (and PASSWORD-ALGORITHMS) from a 401 or 438;
    /// false if it lacks them (the server does not use long-term
    /// credentials).
    pub fn learn(&mut self, challenge: &Message<'_>) -> bool {
        let (Some(realm), Some(nonce)) = (
            challenge.get(AttributeType::REALM),
            challenge.get(AttributeType::NONCE),
        ) else {
            return false;
        };
        self.realm = String::from_utf8_lossy(realm).into_owned();
        self.nonce = nonce.to_vec();
        self.algorithms = challenge
            .get(AttributeType::PASSWORD_ALGORITHMS)
            .unwrap_or_default()
            .to_vec();
        self.key = match self.integrity {
            Integrity::Sha1 => long_term_key_md5(&self.user, &self.realm, &self.password).to_vec(),
            Integrity::Sha256 => {
                long_term_key_sha256(&self.user, &self.realm, &self.password).to_vec()
            }
        };
        true
    }

    /// Adds USERNAME, REALM, NONCE and the integrity attribute (last before
    /// a FINGERPRINT); nothing before a nonce is known.
    pub fn sign(&self, b: &mut MessageBuilder<'_>) {
        if !self.ready() {
            return;
        }
        b.add_username(&self.user);
        b.add_realm(&self.realm);
        b.add_nonce(&self.nonce);
        match self.integrity {
            Integrity::Sha1 => b.add_message_integrity(&self.key),
            Integrity::Sha256 => {
                b.add(AttributeType::PASSWORD_ALGORITHMS, &self.algorithms);
                let [hi, lo] = ALGORITHM_SHA256.to_be_bytes();
                b.add(AttributeType::PASSWORD_ALGORITHM, &[hi, lo, 0, 0]);
                b.add_message_integrity_sha256(&self.key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stun::{Class, MessageType, Method};

    fn ms(t0: Instant, t: Instant) -> u64 {
        (t - t0).as_millis() as u64
    }

    /// Runs a silent transaction to its end: the send times and the end.
    fn silent(schedule: Schedule, reliable: bool) -> (Vec<u64>, u64) {
        let t0 = Instant::now();
        let mut tx = Transaction::new(TransactionId([1; 12]), vec![0; 20], schedule, reliable, t0);
        let mut sends = vec![];
        let mut now = t0;
        loop {
            while tx.poll_transmit(now).is_some() {
                sends.push(ms(t0, now));
            }
            match tx.poll_timeout() {
                Some(t) => now = t,
                None => break,
            }
            tx.handle_timeout(now);
        }
        assert_eq!(tx.state(), TransactionState::TimedOut);
        assert_eq!(tx.sent() as usize, sends.len());
        (sends, ms(t0, now))
    }

    #[test]
    fn rfc_8489_schedule_is_seven_requests_in_39_5_seconds() {
        let (sends, end) = silent(Schedule::RFC8489, false);
        assert_eq!(sends, [0, 500, 1500, 3500, 7500, 15500, 31500]);
        assert_eq!(end, 39_500, "Rm x RTO = 8 s after the last request");
    }

    #[test]
    fn a_timeout_cuts_the_schedule_short() {
        let s = Schedule {
            timeout: Some(Duration::from_secs(3)),
            rm: None,
            ..Schedule::RFC8489
        };
        assert_eq!(silent(s, false), (vec![0, 500, 1500], 3000));
    }

    #[test]
    fn a_capped_rto_stops_doubling() {
        let s = Schedule {
            rto: Duration::from_millis(300),
            max_rto: Some(Duration::from_millis(300)),
            rc: 4,
            rm: Some(1),
            timeout: None,
        };
        assert_eq!(silent(s, false), (vec![0, 300, 600, 900], 1200));
    }

    #[test]
    fn reliable_transports_send_once_and_wait_ti() {
        assert_eq!(silent(Schedule::RFC8489, true), (vec![0], 39_500));
        let s = Schedule {
            timeout: Some(Duration::from_secs(5)),
            ..Schedule::RFC8489
        };
        assert_eq!(silent(s, true), (vec![0], 5000));
    }

    #[test]
    fn only_an_answer_with_the_id_ends_it() {
        let t0 = Instant::now();
        let id = TransactionId([7; 12]);
        let mut tx = Transaction::new(id, vec![0; 20], Schedule::RFC8489, false, t0);
        assert!(tx.poll_transmit(t0).is_some());
        let mut buf = [0u8; 64];
        let answer = |buf: &mut [u8], id| {
            let t = MessageType::new(Method::BINDING, Class::SuccessResponse);
            let n = MessageBuilder::new(buf, t, id).finish().unwrap();
            n
        };
        let n = answer(&mut buf, TransactionId([8; 12]));
        assert!(!tx.handle_response(&Message::parse(&buf[..n]).unwrap()));
        assert_eq!(tx.state(), TransactionState::Pending);
        let n = answer(&mut buf, id);
        assert!(tx.handle_response(&Message::parse(&buf[..n]).unwrap()));
        assert_eq!(tx.state(), TransactionState::Answered);
        assert_eq!(tx.poll_timeout(), None);
        assert!(tx.poll_transmit(t0 + Duration::from_secs(1)).is_none());
    }

    #[test]
    fn ids_differ_and_follow_the_seed() {
        let mut a = TxIds::new([1; 32]);
        let mut b = TxIds::new([1; 32]);
        let (x, y) = (a.next_id(), a.next_id());
        assert_ne!(x, y);
        assert_eq!(b.next_id(), x);
        assert_ne!(TxIds::new([2; 32]).next_id(), x);
    }
}
