//! Answers kept for retransmitted requests (RFC 8489 §6.3.4), per worker.
//!
//! The answers sit in arrival order in a ring (`VecDeque`) and are found
//! through a small index from a keyed hash of (5-tuple, method,
//! transaction id) to their place in the ring. Entries are dense, so
//! filling the cache touches memory in order; the index holds 16 bytes a
//! key, so even the one doubling a hash table does under churn (it
//! doubles, rather than rehash in place, when more than half full) costs
//! half a MiB, not the 3.6 MiB a table of full keys would.

use std::collections::hash_map::RandomState;
use std::collections::{HashMap, VecDeque};
use std::hash::BuildHasher;
use std::time::{Duration, Instant};

use super::FiveTuple;
use crate::stun::{Method, TransactionId};

/// RFC 8489 §6.3.4: keep answers for retransmissions for 40 s (Ti = 39.5 s).
const TRANSACTION_TTL: Duration = Duration::from_secs(40);
/// Cached answers per worker; the oldest go first.
const TRANSACTION_CACHE_MAX: usize = 16_384;

struct Cached {
    at: Instant,
    key: (FiveTuple, u16, [u8; 12]),
    answer: Vec<u8>,
}

pub(crate) struct TransactionCache {
    /// Hash of the key → sequence number of its entry.
    index: HashMap<u64, u64>,
    entries: VecDeque<Cached>,
    /// Sequence number of `entries[0]`.
    first: u64,
    hasher: RandomState,
}

impl Default for TransactionCache {
    fn default() -> Self {
        TransactionCache {
            index: HashMap::new(),
            entries: VecDeque::new(),
            first: 0,
            hasher: RandomState::new(),
        }
    }
}

impl TransactionCache {
    fn hash(&self, key: &(FiveTuple, u16, [u8; 12])) -> u64 {
        self.hasher.hash_one(key)
    }

    pub(crate) fn expire(&mut self, now: Instant) {
        while let Some(front) = self.entries.front() {
            if front.at + TRANSACTION_TTL > now && self.entries.len() <= TRANSACTION_CACHE_MAX {
                break;
            }
            let h = self.hash(&front.key);
            if self.index.get(&h) == Some(&self.first) {
                self.index.remove(&h);
            }
            self.entries.pop_front();
            self.first += 1;
        }
    }

    /// The method is part of the key so that a different request reusing a
    /// transaction id is never answered with another request's answer.
    pub(crate) fn get(
        &self,
        tuple: &FiveTuple,
        method: Method,
        id: &TransactionId,
    ) -> Option<&Vec<u8>> {
        let key = (*tuple, method.0, id.0);
        let seq = *self.index.get(&self.hash(&key))?;
        let e = self.entries.get(usize::try_from(seq - self.first).ok()?)?;
        // Two keys may share a hash: only the exact request is answered.
        (e.key == key).then_some(&e.answer)
    }

    pub(crate) fn insert(
        &mut self,
        now: Instant,
        tuple: FiveTuple,
        method: Method,
        id: TransactionId,
        answer: Vec<u8>,
    ) {
        self.expire(now);
        let key = (tuple, method.0, id.0);
        let seq = self.first + self.entries.len() as u64;
        self.index.insert(self.hash(&key), seq);
        self.entries.push_back(Cached {
            at: now,
            key,
            answer,
        });
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.entries.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::turn::Transport;

    fn tuple(port: u16) -> FiveTuple {
        FiveTuple {
            transport: Transport::Udp,
            client: std::net::SocketAddr::from(([203, 0, 113, 5], port)),
            server: "198.51.100.1:3478".parse().unwrap(),
        }
    }

    #[test]
    fn answers_are_found_by_exact_key_until_they_expire() {
        let t0 = Instant::now();
        let mut c = TransactionCache::default();
        c.insert(
            t0,
            tuple(1),
            Method::ALLOCATE,
            TransactionId([1; 12]),
            vec![1],
        );
        c.insert(
            t0,
            tuple(1),
            Method::REFRESH,
            TransactionId([1; 12]),
            vec![2],
        );
        assert_eq!(
            c.get(&tuple(1), Method::ALLOCATE, &TransactionId([1; 12])),
            Some(&vec![1])
        );
        assert_eq!(
            c.get(&tuple(1), Method::REFRESH, &TransactionId([1; 12])),
            Some(&vec![2])
        );
        assert_eq!(
            c.get(&tuple(2), Method::ALLOCATE, &TransactionId([1; 12])),
            None
        );
        assert_eq!(
            c.get(&tuple(1), Method::ALLOCATE, &TransactionId([2; 12])),
            None
        );
        c.expire(t0 + Duration::from_secs(39));
        assert!(c
            .get(&tuple(1), Method::ALLOCATE, &TransactionId([1; 12]))
            .is_some());
        c.expire(t0 + TRANSACTION_TTL);
        assert_eq!(
            c.get(&tuple(1), Method::ALLOCATE, &TransactionId([1; 12])),
            None
        );
        assert_eq!(c.len(), 0);
    }

    #[test]
    fn the_cache_keeps_the_newest_answers_up_to_its_bound() {
        let t0 = Instant::now();
        let mut c = TransactionCache::default();
        let n = TRANSACTION_CACHE_MAX as u32 + 100;
        for i in 0..n {
            let mut id = [0u8; 12];
            id[..4].copy_from_slice(&i.to_be_bytes());
            c.insert(
                t0,
                tuple(1),
                Method::REFRESH,
                TransactionId(id),
                i.to_be_bytes().to_vec(),
            );
        }
        c.expire(t0);
        assert_eq!(c.len(), TRANSACTION_CACHE_MAX);
        let id = |i: u32| {
            let mut id = [0u8; 12];
            id[..4].copy_from_slice(&i.to_be_bytes());
            TransactionId(id)
        };
        assert_eq!(
            c.get(&tuple(1), Method::REFRESH, &id(50)),
            None,
            "oldest gone"
        );
        assert_eq!(
            c.get(&tuple(1), Method::REFRESH, &id(n - 1)),
            Some(&(n - 1).to_be_bytes().to_vec())
        );
        // A re-sent answer replaces the old one for its key.
        c.insert(t0, tuple(1), Method::REFRESH, id(n - 1), vec![9]);
        assert_eq!(
            c.get(&tuple(1), Method::REFRESH, &id(n - 1)),
            Some(&vec![9])
        );
    }
}
