//! Connection caps for TCP and TLS, shared by every worker: per source
//! address (an IPv6 /64 counts as one, as for 401 rate limits) and in
//! total. Taken once per accepted connection, never per packet, so a
//! mutex is fine here.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

/// The per-source key: the address, or its /64 for IPv6.
fn source_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let mut o = v6.octets();
                o[8..].fill(0);
                IpAddr::from(o)
            }
        },
    }
}

#[derive(Default)]
struct Counts {
    per_source: HashMap<IpAddr, u32>,
    total: u32,
}

pub struct ConnLimits {
    per_ip: u32,
    total: u32,
    counts: Mutex<Counts>,
}

/// One open connection; dropping it gives the slot back.
pub struct ConnSlot {
    limits: Arc<ConnLimits>,
    key: IpAddr,
}

/// Which cap refused a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    PerSource,
    Total,
}

impl ConnLimits {
    pub fn new(per_ip: u32, total: u32) -> Arc<Self> {
        Arc::new(ConnLimits {
            per_ip,
            total,
            counts: Mutex::new(Counts::default()),
        })
    }

    pub fn acquire(self: &Arc<Self>, ip: IpAddr) -> Result<ConnSlot, Refused> {
        let key = source_key(ip);
        let mut c = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        if c.total >= self.total {
            return Err(Refused::Total);
        }
        let n = c.per_source.entry(key).or_insert(0);
        if *n >= self.per_ip {
            return Err(Refused::PerSource);
        }
        *n += 1;
        c.total += 1;
        Ok(ConnSlot {
            limits: self.clone(),
            key,
        })
    }

    /// Connections open now.
    pub fn open(&self) -> u32 {
        self.counts.lock().unwrap_or_else(|e| e.into_inner()).total
    }
}

impl Drop for ConnSlot {
    fn drop(&mut self) {
        let mut c = self.limits.counts.lock().unwrap_or_else(|e| e.into_inner());
        c.total -= 1;
        if let Some(n) = c.per_source.get_mut(&self.key) {
            *n -= 1;
            if *n == 0 {
                c.per_source.remove(&self.key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_source_and_total_caps_hold_and_slots_come_back() {
        let l = ConnLimits::new(2, 3);
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let s1 = l.acquire(a).unwrap();
        let _s2 = l.acquire(a).unwrap();
        assert_eq!(l.acquire(a).err(), Some(Refused::PerSource));
        let _s3 = l.acquire(b).unwrap();
        assert_eq!(l.acquire(b).err(), Some(Refused::Total));
        drop(s1);
        assert_eq!(l.open(), 2);
        assert!(l.acquire(a).is_ok());
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
