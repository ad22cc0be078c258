//! Connection caps for TCP, TLS and DTLS, shared by every worker: per
//! source address (an IPv6 /64 counts as one, as for 401 rate limits) and
//! in total. Connections that own no allocation yet (nothing
//! authenticated) get a smaller per-source share, a quarter of the
//! per-source cap: the rest is kept for clients that allocate. Taken once
//! per connection and once when it gains an allocation, never per packet,
//! so a mutex is fine here.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

pub(crate) use crate::turn::policy::source_key;

/// Open connections of one source, and how many of them own no allocation.
#[derive(Default)]
struct Source {
    open: u32,
    unbound: u32,
}

#[derive(Default)]
struct Counts {
    per_source: HashMap<IpAddr, Source>,
    total: u32,
}

pub struct ConnLimits {
    /// The caps are atomics: a reload changes them for new connections.
    per_ip: AtomicU32,
    /// Connections without an allocation per source: `per_ip / 4`, at least 1.
    unbound_per_ip: AtomicU32,
    total: AtomicU32,
    counts: Mutex<Counts>,
}

/// One open connection; dropping it gives the slot back.
pub struct ConnSlot {
    limits: Arc<ConnLimits>,
    key: IpAddr,
    /// Owns an allocation: out of the smaller share.
    bound: bool,
}

/// Which cap refused a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    PerSource,
    /// The source's share for connections without an allocation is full.
    Unallocated,
    Total,
}

impl ConnLimits {
    pub fn new(per_ip: u32, total: u32) -> Arc<Self> {
        let l = Arc::new(ConnLimits {
            per_ip: AtomicU32::new(0),
            unbound_per_ip: AtomicU32::new(0),
            total: AtomicU32::new(0),
            counts: Mutex::new(Counts::default()),
        });
        l.set(per_ip, total);
        l
    }

    /// New caps for the next connections; open ones stay, even above them.
    pub fn set(&self, per_ip: u32, total: u32) {
        self.per_ip.store(per_ip, Ordering::Relaxed);
        self.unbound_per_ip
            .store((per_ip / 4).max(1), Ordering::Relaxed);
        self.total.store(total, Ordering::Relaxed);
    }

    fn counts(&self) -> std::sync::MutexGuard<'_, Counts> {
        self.counts.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A slot for a new connection, which owns no allocation yet.
    pub fn acquire(self: &Arc<Self>, ip: IpAddr) -> Result<ConnSlot, Refused> {
        let key = source_key(ip);
        let mut c = self.counts();
        if c.total >= self.total.load(Ordering::Relaxed) {
            return Err(Refused::Total);
        }
        let s = c.per_source.entry(key).or_default();
        if s.open >= self.per_ip.load(Ordering::Relaxed) {
            return Err(Refused::PerSource);
        }
        if s.unbound >= self.unbound_per_ip.load(Ordering::Relaxed) {
            return Err(Refused::Unallocated);
        }
        s.open += 1;
        s.unbound += 1;
        c.total += 1;
        Ok(ConnSlot {
            limits: self.clone(),
            key,
            bound: false,
        })
    }

    /// A slot for a connection from a trusted proxy whose PROXY header is
    /// not read yet: counted in the total only (which bounds such
    /// connections), until [`PendingSlot::admit`] names the client.
    pub fn acquire_pending(self: &Arc<Self>) -> Result<PendingSlot, Refused> {
        let mut c = self.counts();
        if c.total >= self.total.load(Ordering::Relaxed) {
            return Err(Refused::Total);
        }
        c.total += 1;
        Ok(PendingSlot {
            limits: Some(self.clone()),
        })
    }

    /// Connections open now.
    pub fn open(&self) -> u32 {
        self.counts().total
    }
}

/// A connection from a trusted proxy before its PROXY header is read: in
/// the total, in no source's count. Dropping it gives the slot back.
pub struct PendingSlot {
    /// `None` once admitted (the count moved into a [`ConnSlot`]).
    limits: Option<Arc<ConnLimits>>,
}

impl PendingSlot {
    /// The header named the client at `ip`: the connection now counts for
    /// it, under the per-source caps (the total is already counted).
    pub fn admit(mut self, ip: IpAddr) -> Result<ConnSlot, Refused> {
        let Some(limits) = self.limits.take() else {
            unreachable!("a pending slot is admitted once, by value")
        };
        let key = source_key(ip);
        let mut c = limits.counts();
        let (open, unbound) = c
            .per_source
            .get(&key)
            .map_or((0, 0), |s| (s.open, s.unbound));
        let refused = if open >= limits.per_ip.load(Ordering::Relaxed) {
            Some(Refused::PerSource)
        } else if unbound >= limits.unbound_per_ip.load(Ordering::Relaxed) {
            Some(Refused::Unallocated)
        } else {
            None
        };
        if let Some(why) = refused {
            c.total -= 1;
            return Err(why);
        }
        let s = c.per_source.entry(key).or_default();
        s.open += 1;
        s.unbound += 1;
        drop(c);
        Ok(ConnSlot {
            limits,
            key,
            bound: false,
        })
    }
}

impl Drop for PendingSlot {
    fn drop(&mut self) {
        if let Some(l) = &self.limits {
            l.counts().total -= 1;
        }
    }
}

impl std::fmt::Debug for PendingSlot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PendingSlot").finish_non_exhaustive()
    }
}

impl ConnSlot {
    /// The connection owns an allocation now (or, for an RFC 6062 data
    /// connection, belongs to one): it leaves the smaller share.
    pub fn bind(&mut self) {
        self.set_bound(true);
    }

    /// Its allocation is gone: back into the smaller share (even above
    /// it; such a connection is closed or expires soon).
    pub fn unbind(&mut self) {
        self.set_bound(false);
    }

    fn set_bound(&mut self, bound: bool) {
        if self.bound == bound {
            return;
        }
        self.bound = bound;
        let mut c = self.limits.counts();
        if let Some(s) = c.per_source.get_mut(&self.key) {
            if bound {
                s.unbound -= 1;
            } else {
                s.unbound += 1;
            }
        }
    }
}

impl Drop for ConnSlot {
    fn drop(&mut self) {
        let mut c = self.limits.counts();
        c.total -= 1;
        if let Some(s) = c.per_source.get_mut(&self.key) {
            s.open -= 1;
            if !self.bound {
                s.unbound -= 1;
            }
            if s.open == 0 {
                c.per_source.remove(&self.key);
            }
        }
    }
}

impl std::fmt::Debug for ConnLimits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnLimits")
            .field("per_ip", &self.per_ip)
            .field("unbound_per_ip", &self.unbound_per_ip)
            .field("total", &self.total)
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for ConnSlot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnSlot")
            .field("key", &self.key)
            .field("bound", &self.bound)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_source_and_total_caps_hold_and_slots_come_back() {
        let l = ConnLimits::new(8, 3);
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let mut s1 = l.acquire(a).unwrap();
        s1.bind();
        let _s2 = l.acquire(a).unwrap();
        let _s3 = l.acquire(b).unwrap();
        assert_eq!(l.acquire(b).err(), Some(Refused::Total));
        drop(s1);
        assert_eq!(l.open(), 2);
        assert!(l.acquire(a).is_ok());
    }

    #[test]
    fn connections_without_an_allocation_get_a_quarter_of_the_per_source_cap() {
        let l = ConnLimits::new(8, 100);
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let mut first = l.acquire(a).unwrap();
        let _second = l.acquire(a).unwrap();
        assert_eq!(l.acquire(a).err(), Some(Refused::Unallocated));
        // Another source has its own share.
        assert!(l.acquire("10.0.0.2".parse().unwrap()).is_ok());
        // Allocating moves a connection out of the share, up to the cap.
        first.bind();
        first.bind();
        let mut held = vec![first];
        for _ in 0..6 {
            let mut s = l.acquire(a).unwrap();
            s.bind();
            held.push(s);
        }
        assert_eq!(l.acquire(a).err(), Some(Refused::PerSource));
        // Unbinding counts it in the share again; dropping frees both.
        held[0].unbind();
        drop(held.pop());
        assert_eq!(l.acquire(a).err(), Some(Refused::Unallocated));
        drop(held.remove(0));
        assert!(l.acquire(a).is_ok());
        // Tiny caps still let one unallocated connection in.
        let one = ConnLimits::new(1, 10);
        let _s = one.acquire(a).unwrap();
        assert_eq!(one.acquire(a).err(), Some(Refused::PerSource));
    }

    #[test]
    fn a_proxied_connection_counts_in_the_total_then_for_its_real_client() {
        let l = ConnLimits::new(8, 3);
        let client: IpAddr = "192.0.2.5".parse().unwrap();
        // Before its header: the total only, so the pending ones are
        // bounded by it.
        let p1 = l.acquire_pending().unwrap();
        let p2 = l.acquire_pending().unwrap();
        let p3 = l.acquire_pending().unwrap();
        assert_eq!(l.acquire_pending().err(), Some(Refused::Total));
        assert_eq!(l.open(), 3);
        drop(p3);
        assert_eq!(l.open(), 2);
        // Admitted: the real client's share (a quarter of 8 = 2).
        let _a = p1.admit(client).unwrap();
        let _b = p2.admit(client).unwrap();
        assert_eq!(l.open(), 2);
        let p4 = l.acquire_pending().unwrap();
        assert_eq!(p4.admit(client).err(), Some(Refused::Unallocated));
        assert_eq!(l.open(), 2, "a refused admission gives the slot back");
        // Another client behind the same proxy has its own share.
        let p5 = l.acquire_pending().unwrap();
        let c = p5.admit("192.0.2.6".parse().unwrap()).unwrap();
        assert_eq!(l.open(), 3);
        drop(c);
        assert_eq!(l.open(), 2);
        assert!(l.counts().per_source.len() == 1, "no empty entry is left");
    }

    #[test]
    fn an_ipv6_slash_64_is_one_source() {
        let l = ConnLimits::new(1, 10);
        let _s = l.acquire("2001:db8::1".parse().unwrap()).unwrap();
        assert_eq!(
            l.acquire("2001:db8::ffff".parse().unwrap()).err(),
            Some(Refused::PerSource)
        );
        assert!(l.acquire("2001:db8:0:1::1".parse().unwrap()).is_ok());
        // A v4-mapped address counts as its IPv4 address.
        let _v4 = l.acquire("192.0.2.1".parse().unwrap()).unwrap();
        assert!(l.acquire("::ffff:192.0.2.1".parse().unwrap()).is_err());
    }
}
