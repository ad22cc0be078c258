//! Ids the core hands out: relay ids (slots the shell names sockets by),
//! RESERVATION-TOKENs (keyed, unique across workers) and transaction ids
//! of indications the server originates.

use super::Server;
use crate::turn::RelayId;

impl Server {
    /// A fresh RESERVATION-TOKEN: SHA-256 over the shared key, this
    /// worker's seed and a counter. Workers share one reservation table, so
    /// tokens must never collide between them.
    pub(in crate::turn) fn reservation_token(&mut self) -> [u8; 8] {
        use sha2::{Digest, Sha256};
        self.tokens += 1;
        let mut h = Sha256::new();
        h.update(self.shared.token_key);
        h.update(self.seed.to_be_bytes());
        h.update(self.tokens.to_be_bytes());
        let d = h.finalize();
        let mut t = [0u8; 8];
        t.copy_from_slice(&d[..8]);
        t
    }

    /// A transaction id for an indication the server originates.
    pub(in crate::turn) fn random_txid(&mut self) -> [u8; 12] {
        let (a, b) = (self.next_random(), self.next_random());
        let mut id = [0u8; 12];
        id[..8].copy_from_slice(&a.to_be_bytes());
        id[8..].copy_from_slice(&b.to_be_bytes()[..4]);
        id
    }

    pub(super) fn next_random(&mut self) -> u64 {
        // xorshift64*: transaction ids of Data indications need only be
        // unique, not secret.
        self.rng ^= self.rng >> 12;
        self.rng ^= self.rng << 25;
        self.rng ^= self.rng >> 27;
        self.rng.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    pub(super) fn new_relay(&mut self, slot: u32) -> RelayId {
        match self.free_relays.pop() {
            Some(i) => {
                self.relays[i as usize] = Some(slot);
                RelayId(i)
            }
            None => {
                self.relays.push(Some(slot));
                RelayId((self.relays.len() - 1) as u32)
            }
        }
    }
}
