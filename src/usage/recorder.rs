//! Turns what the cores report into usage records and webhook events, and
//! queues them. Called on the workers' threads from their event loops (not
//! the relay path), and by the interim and drain tasks; it only formats
//! and pushes, never waits.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use super::queue::{Item, Queue};
use super::{OutboxEvent, UsageRecord, UsageStats};
use crate::turn::{AllocationEnd, CredentialKind, Event, FiveTuple, SessionId, SessionView};

/// `allocation.refused` events sent per second at most; the rest are
/// counted and the next one sent says how many were left out.
pub const REFUSALS_PER_SECOND: u32 = 10;

/// Converts monotonic instants to Unix milliseconds from one reading of
/// both clocks at start (the core's times are `Instant`s).
#[derive(Debug, Clone, Copy)]
pub struct WallClock {
    at: Instant,
    unix_ms: i64,
}

impl WallClock {
    pub fn now() -> Self {
        WallClock {
            at: Instant::now(),
            unix_ms: crate::store::unix_now_ms(),
        }
    }

    pub fn unix_ms(&self, t: Instant) -> i64 {
        match t.checked_duration_since(self.at) {
            Some(d) => self.unix_ms + d.as_millis() as i64,
            None => self.unix_ms - self.at.duration_since(t).as_millis() as i64,
        }
    }
}

#[derive(Debug, Default)]
struct Sampler {
    /// The Unix second being counted, how many were sent in it, and how
    /// many were left out since the last one sent.
    second: i64,
    sent: u32,
    left_out: u64,
}

#[derive(Debug)]
pub struct Recorder {
    node: String,
    /// Random per process: record ids of two runs never collide.
    boot: [u8; 16],
    clock: WallClock,
    rest_separator: char,
    queue: Arc<Queue>,
    /// Whether events are wanted (any webhook URL).
    events: bool,
    sampler: Mutex<Sampler>,
    stats: Arc<UsageStats>,
}

fn transport(t: &FiveTuple) -> String {
    t.transport.to_string().to_ascii_lowercase()
}

fn addrs(a: &[SocketAddr]) -> Vec<String> {
    a.iter().map(ToString::to_string).collect()
}

impl Recorder {
    pub fn new(
        node: &str,
        rest_separator: char,
        queue: Arc<Queue>,
        events: bool,
        stats: Arc<UsageStats>,
    ) -> Self {
        let mut boot = [0u8; 16];
        if getrandom::fill(&mut boot).is_err() {
            // Ids stay unique within the run (worker, slot, generation);
            // the time keeps runs apart.
            boot[..8].copy_from_slice(&crate::store::unix_now_ms().to_be_bytes());
        }
        Recorder {
            node: node.to_string(),
            boot,
            clock: WallClock::now(),
            rest_separator,
            queue,
            events,
            sampler: Mutex::default(),
            stats,
        }
    }

    /// The usage record id of worker `worker`'s allocation `id`: 32 hex
    /// digits, the same for its interim and final records.
    pub fn record_id(&self, worker: usize, id: SessionId) -> String {
        let mut h = Sha256::new();
        h.update(self.boot);
        h.update((worker as u64).to_be_bytes());
        h.update(id.slot.to_be_bytes());
        h.update(id.generation.to_be_bytes());
        h.finalize()[..16]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    fn event_id() -> String {
        let mut id = [0u8; 16];
        if getrandom::fill(&mut id).is_err() {
            id = fastrand::u128(..).to_be_bytes();
        }
        id.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// The app's user id in a REST username (`expiry:label`).
    fn label(&self, credential: CredentialKind, user: &str) -> Option<String> {
        (credential == CredentialKind::Rest)
            .then(|| {
                user.split_once(self.rest_separator)
                    .map(|(_, l)| l.to_string())
            })
            .flatten()
    }

    fn event(&self, kind: &str, time_ms: i64, data: Value) {
        let e = OutboxEvent::new(Self::event_id(), kind, &self.node, time_ms, data);
        self.queue.push(Item::Event(e));
    }

    /// One of a worker's core events.
    pub fn on_event(&self, worker: usize, event: &Event) {
        match event {
            Event::AllocationCreated {
                session,
                tuple,
                username,
                realm,
                credential,
                relayed,
                lifetime,
                at,
            } if self.events => {
                let start = self.clock.unix_ms(*at);
                self.event(
                    "allocation.created",
                    start,
                    json!({
                        "id": self.record_id(worker, *session),
                        "user": username,
                        "realm": realm,
                        "credential": credential.as_str(),
                        "label": self.label(*credential, username),
                        "client": tuple.client.to_string(),
                        "transport": transport(tuple),
                        "relayed": addrs(relayed),
                        "start": super::record::rfc3339(start),
                        "lifetime_s": lifetime.as_secs(),
                    }),
                );
            }
            Event::AllocationDeleted(end) => {
                let record = self.final_record(worker, end);
                if self.events {
                    let data = serde_json::to_value(&record).unwrap_or(Value::Null);
                    self.event("allocation.deleted", record.end_ms, data);
                }
                self.queue.push(Item::Record(Box::new(record)));
            }
            Event::AllocationRefused {
                tuple,
                username,
                code,
                reason,
                at,
            } if self.events => {
                let time_ms = self.clock.unix_ms(*at);
                let Some(left_out) = self.sample(time_ms / 1000) else {
                    return;
                };
                self.event(
                    "allocation.refused",
                    time_ms,
                    json!({
                        "user": username,
                        "client": tuple.client.to_string(),
                        "transport": transport(tuple),
                        "code": code,
                        "reason": reason.as_str(),
                        "left_out_before": left_out,
                    }),
                );
            }
            _ => {}
        }
    }

    /// Whether a refusal in Unix second `second` is sent; if so, how many
    /// were left out before it.
    fn sample(&self, second: i64) -> Option<u64> {
        let mut s = self.sampler.lock().unwrap_or_else(|e| e.into_inner());
        if s.second != second {
            s.second = second;
            s.sent = 0;
        }
        if s.sent >= REFUSALS_PER_SECOND {
            s.left_out += 1;
            UsageStats::add(&self.stats.refusals_sampled_out, 1);
            return None;
        }
        s.sent += 1;
        Some(std::mem::take(&mut s.left_out))
    }

    fn final_record(&self, worker: usize, e: &AllocationEnd) -> UsageRecord {
        UsageRecord {
            id: self.record_id(worker, e.session),
            node: self.node.clone(),
            user: e.username.clone(),
            realm: e.realm.clone(),
            credential: e.credential.as_str().into(),
            label: self.label(e.credential, &e.username),
            client: e.tuple.client.to_string(),
            transport: transport(&e.tuple),
            relayed: addrs(&e.relayed),
            start_ms: self.clock.unix_ms(e.start),
            end_ms: self.clock.unix_ms(e.end),
            end_reason: Some(e.reason.as_str().into()),
            bytes_to_peer: e.to_peer.bytes,
            packets_to_peer: e.to_peer.packets,
            bytes_to_client: e.to_client.bytes,
            packets_to_client: e.to_client.packets,
            peers: e.peers,
        }
    }

    /// Interim records of every live allocation as of `now` (each one's
    /// first comes at the first round after it began, so a crash loses at
    /// most one interval of it).
    pub fn interim(&self, sessions: &[(usize, SessionView)], now: Instant) {
        let now_ms = self.clock.unix_ms(now);
        for (worker, s) in sessions {
            self.queue.push(Item::Record(Box::new(UsageRecord {
                id: self.record_id(*worker, s.id),
                node: self.node.clone(),
                user: s.username.clone(),
                realm: s.realm.clone(),
                credential: s.credential.as_str().into(),
                label: self.label(s.credential, &s.username),
                client: s.tuple.client.to_string(),
                transport: transport(&s.tuple),
                relayed: addrs(&s.relayed),
                start_ms: self.clock.unix_ms(s.created),
                end_ms: now_ms,
                end_reason: None,
                bytes_to_peer: s.to_peer.bytes,
                packets_to_peer: s.to_peer.packets,
                bytes_to_client: s.to_client.bytes,
                packets_to_client: s.to_client.packets,
                peers: s.peers,
            })));
        }
    }

    /// `node.draining` or `node.ready`.
    pub fn node_event(&self, kind: &str, data: Value) {
        if self.events {
            self.event(kind, crate::store::unix_now_ms(), data);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::turn::allocation::Counters;
    use crate::turn::{EndReason, Refusal, Transport};
    use std::time::Duration;

    fn recorder(events: bool) -> (Recorder, Arc<Queue>) {
        let stats = Arc::new(UsageStats::default());
        let q = Arc::new(Queue::new(stats.clone()));
        (Recorder::new("n1", ':', q.clone(), events, stats), q)
    }

    fn tuple() -> FiveTuple {
        FiveTuple {
            transport: Transport::Udp,
            client: "203.0.113.5:40000".parse().unwrap(),
            server: "198.51.100.1:3478".parse().unwrap(),
        }
    }

    #[test]
    fn a_deleted_allocation_is_one_final_record_and_one_event_with_it() {
        let (r, q) = recorder(true);
        let t0 = Instant::now();
        let session = SessionId {
            slot: 3,
            generation: 9,
        };
        let end = AllocationEnd {
            session,
            tuple: tuple(),
            username: "1700000000:app-user-7".into(),
            realm: "example.org".into(),
            credential: CredentialKind::Rest,
            relayed: vec!["198.51.100.1:50000".parse().unwrap()],
            peers: 2,
            start: t0,
            end: t0 + Duration::from_millis(2500),
            to_peer: Counters {
                packets: 3,
                bytes: 300,
            },
            to_client: Counters {
                packets: 4,
                bytes: 400,
            },
            reason: EndReason::Deleted,
        };
        r.on_event(1, &Event::AllocationDeleted(Box::new(end)));
        let items = q.take(10);
        assert_eq!(items.len(), 2);
        let Item::Event(e) = &items[0] else {
            panic!("event first")
        };
        let Item::Record(rec) = &items[1] else {
            panic!("then the record")
        };
        assert_eq!(rec.id, r.record_id(1, session));
        assert_eq!(rec.id.len(), 32);
        assert_ne!(rec.id, r.record_id(0, session), "workers differ");
        assert_eq!(rec.label.as_deref(), Some("app-user-7"));
        assert_eq!(rec.credential, "rest");
        assert_eq!(rec.transport, "udp");
        assert_eq!(rec.end_ms - rec.start_ms, 2500);
        assert_eq!(rec.end_reason.as_deref(), Some("deleted"));
        assert_eq!(
            (rec.bytes_to_peer, rec.packets_to_client, rec.peers),
            (300, 4, 2)
        );
        let body: Value = serde_json::from_str(&e.body).unwrap();
        assert_eq!(body["type"], "allocation.deleted");
        assert_eq!(body["data"]["id"], rec.id.as_str());
        assert_eq!(body["data"]["bytes_to_client"], 400);
        // Without webhooks, only the record.
        let (r, q) = recorder(false);
        let end = AllocationEnd {
            session,
            tuple: tuple(),
            username: "alice".into(),
            realm: "r".into(),
            credential: CredentialKind::Static,
            relayed: vec![],
            peers: 0,
            start: t0,
            end: t0,
            to_peer: Counters::default(),
            to_client: Counters::default(),
            reason: EndReason::Shutdown,
        };
        r.on_event(0, &Event::AllocationDeleted(Box::new(end)));
        assert!(matches!(&q.take(10)[..], [Item::Record(rec)] if rec.label.is_none()));
    }

    #[test]
    fn refusals_are_sampled_to_ten_a_second_and_say_how_many_were_left_out() {
        let (r, q) = recorder(true);
        let refused = Event::AllocationRefused {
            tuple: tuple(),
            username: "alice".into(),
            code: 486,
            reason: Refusal::UserQuota,
            at: Instant::now(),
        };
        for _ in 0..1000 {
            r.on_event(0, &refused);
        }
        assert_eq!(q.len(), REFUSALS_PER_SECOND as usize);
        assert_eq!(UsageStats::get(&r.stats.refusals_sampled_out), 990);
        // The next second's first one carries the count.
        assert_eq!(r.sample(i64::MAX), Some(990));
        assert_eq!(r.sample(i64::MAX), Some(0));
    }
}
