//! The relay port range (`min_port`..=`max_port`), shared by all workers.
//! Ports return to the pool the moment an allocation ends.

use sha2::{Digest, Sha256};

/// A bitmap of ports in use. Each search starts at a random place (RFC 8656
/// §7.2 RECOMMENDS RFC 6056 port randomisation, so the next relayed
/// address cannot be guessed), which also makes a just-released port
/// unlikely to be handed out again at once (late peer packets then find
/// nobody).
#[derive(Debug)]
pub struct PortPool {
    min: u16,
    max: u16,
    used: Vec<u64>,
    free: u32,
    /// Secret the start points are drawn from (random in the shell).
    key: [u8; 32],
    draws: u64,
}

impl PortPool {
    /// All of `min..=max` free (`min` must not exceed `max`); the key is
    /// zero until [`PortPool::with_key`] sets one.
    pub fn new(min: u16, max: u16) -> Self {
        let n = (max - min) as usize + 1;
        PortPool {
            min,
            max,
            used: vec![0; n.div_ceil(64)],
            free: n as u32,
            key: [0; 32],
            draws: 0,
        }
    }

    /// Sets the secret the random start points derive from.
    pub fn with_key(mut self, key: [u8; 32]) -> Self {
        self.key = key;
        self
    }

    /// A start point: SHA-256 over the key and a counter (RFC 6056
    /// algorithm 1 with a keyed generator; one hash per Allocate).
    fn random_start(&mut self, n: u32) -> u32 {
        self.draws += 1;
        let mut h = Sha256::new();
        h.update(self.key);
        h.update(self.draws.to_be_bytes());
        let d = h.finalize();
        (u64::from_be_bytes([d[0], d[1], d[2], d[3], d[4], d[5], d[6], d[7]]) % u64::from(n)) as u32
    }

    fn len(&self) -> u32 {
        (self.max - self.min) as u32 + 1
    }

    fn is_used(&self, i: u32) -> bool {
        self.used[(i / 64) as usize] & (1 << (i % 64)) != 0
    }

    fn set(&mut self, i: u32, used: bool) {
        let (w, b) = ((i / 64) as usize, 1u64 << (i % 64));
        if used {
            self.used[w] |= b;
        } else {
            self.used[w] &= !b;
        }
    }

    /// How many ports are free.
    pub fn free(&self) -> u32 {
        self.free
    }

    /// Whether `port` is in the range, used or not.
    pub fn contains(&self, port: u16) -> bool {
        (self.min..=self.max).contains(&port)
    }

    /// Takes a free port; with `even`, an even one; with `pair`, also the
    /// next (odd) port, which is returned as held for a RESERVATION-TOKEN.
    pub fn take(&mut self, even: bool, pair: bool) -> Option<u16> {
        let n = self.len();
        if self.free == 0 {
            return None;
        }
        let start = self.random_start(n);
        for step in 0..n {
            let i = (start + step) % n;
            let port = self.min as u32 + i;
            if (even || pair) && port % 2 != 0 {
                continue;
            }
            if self.is_used(i) {
                continue;
            }
            if pair && (port + 1 > self.max as u32 || self.is_used(i + 1)) {
                continue;
            }
            self.set(i, true);
            self.free -= 1;
            if pair {
                self.set(i + 1, true);
                self.free -= 1;
            }
            return Some(port as u16);
        }
        None
    }

    /// Takes one specific port (a reserved one), if free.
    pub fn take_exact(&mut self, port: u16) -> bool {
        if !self.contains(port) || self.is_used((port - self.min) as u32) {
            return false;
        }
        self.set((port - self.min) as u32, true);
        self.free -= 1;
        true
    }

    /// Returns a port to the pool; one outside the range or already free
    /// is ignored.
    pub fn release(&mut self, port: u16) {
        if self.contains(port) && self.is_used((port - self.min) as u32) {
            self.set((port - self.min) as u32, false);
            self.free += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pool_hands_out_each_port_once_then_runs_dry_then_reuses() {
        let mut p = PortPool::new(50000, 50003);
        let mut got: Vec<u16> = (0..4).map(|_| p.take(false, false).unwrap()).collect();
        got.sort();
        assert_eq!(got, vec![50000, 50001, 50002, 50003]);
        assert_eq!(p.take(false, false), None);
        p.release(50002);
        assert_eq!(p.take(false, false), Some(50002));
    }

    #[test]
    fn ports_come_in_an_unpredictable_order() {
        let take_all = |key: [u8; 32]| {
            let mut p = PortPool::new(40000, 40999).with_key(key);
            (0..1000)
                .map(|_| p.take(false, false).unwrap())
                .collect::<Vec<_>>()
        };
        let a = take_all([1; 32]);
        let mut sorted = a.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted.len(), 1000, "every port once");
        // Not sequential: consecutive grants are rarely neighbours.
        let neighbours = a.windows(2).filter(|w| w[1] == w[0] + 1).count();
        assert!(neighbours < 100, "{neighbours} sequential steps");
        // Another key, another order.
        assert_ne!(a[..20], take_all([2; 32])[..20]);
    }

    #[test]
    fn even_and_paired_ports() {
        let mut p = PortPool::new(50001, 50010);
        let e = p.take(true, false).unwrap();
        assert_eq!(e % 2, 0);
        let pair = p.take(false, true).unwrap();
        assert_eq!(pair % 2, 0);
        assert!(!p.take_exact(pair + 1), "the odd half is held");
        p.release(pair + 1);
        assert!(p.take_exact(pair + 1));
        assert_eq!(p.free(), 10 - 3);
    }
}
