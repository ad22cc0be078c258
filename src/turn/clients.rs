//! Which clients are served at all (`allowed_client_ip`,
//! `denied_client_ip`, as eturnal's client lists): judged before any
//! answer, even to Binding, on every transport. The shell asks at its
//! entry points (a UDP datagram, a stream's accept or its PROXY header);
//! an address refused gets nothing back.
//!
//! A client is judged as written and, when it is IPv4-mapped (a dual-stack
//! socket), as its IPv4 address too: a range of either form catches it.
//! Deny wins over allow; a non-empty allow list admits only its ranges.

use std::net::IpAddr;
use std::sync::Arc;

use super::policy::IpRange;

/// The client lists; cheap to clone, and empty lists cost one branch.
#[derive(Debug, Clone, Default)]
pub struct ClientList(Option<Arc<Lists>>);

#[derive(Debug)]
struct Lists {
    allowed: Vec<IpRange>,
    denied: Vec<IpRange>,
}

impl ClientList {
    /// Lists from `allowed_client_ip` and `denied_client_ip`.
    pub fn new(allowed: Vec<IpRange>, denied: Vec<IpRange>) -> Self {
        if allowed.is_empty() && denied.is_empty() {
            return ClientList(None);
        }
        ClientList(Some(Arc::new(Lists { allowed, denied })))
    }

    /// Whether both lists are empty (everyone is served).
    pub fn is_empty(&self) -> bool {
        self.0.is_none()
    }

    /// Whether a client at `ip` may be answered at all.
    #[inline]
    pub fn admits(&self, ip: IpAddr) -> bool {
        match &self.0 {
            None => true,
            Some(l) => l.admits(ip),
        }
    }
}

impl Lists {
    fn admits(&self, ip: IpAddr) -> bool {
        let mapped = ip.to_canonical();
        let hit = |list: &[IpRange]| list.iter().any(|r| r.contains(ip) || r.contains(mapped));
        if hit(&self.denied) {
            return false;
        }
        self.allowed.is_empty() || hit(&self.allowed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(allowed: &[&str], denied: &[&str]) -> ClientList {
        let r = |v: &[&str]| v.iter().map(|s| IpRange::parse(s).unwrap()).collect();
        ClientList::new(r(allowed), r(denied))
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn empty_lists_admit_everyone() {
        let l = list(&[], &[]);
        assert!(l.is_empty());
        for a in ["192.0.2.1", "::1", "::ffff:10.0.0.1", "0.0.0.0"] {
            assert!(l.admits(ip(a)), "{a}");
        }
    }

    #[test]
    fn a_deny_list_refuses_its_ranges_only() {
        let l = list(&[], &["198.51.100.0/24", "2001:db8::/32"]);
        assert!(!l.is_empty());
        assert!(!l.admits(ip("198.51.100.7")));
        assert!(!l.admits(ip("2001:db8::1")));
        assert!(l.admits(ip("198.51.101.1")));
        assert!(l.admits(ip("2001:db9::1")));
    }

    #[test]
    fn an_allow_list_admits_only_its_ranges() {
        let l = list(&["10.0.0.0/8", "2001:db8::/48"], &[]);
        assert!(l.admits(ip("10.1.2.3")));
        assert!(l.admits(ip("2001:db8:0:1::5")));
        assert!(!l.admits(ip("11.0.0.1")));
        assert!(!l.admits(ip("2001:db8:1::1")));
        assert!(!l.admits(ip("::1")));
    }

    #[test]
    fn deny_wins_over_allow() {
        let l = list(&["10.0.0.0/8"], &["10.9.0.0/16"]);
        assert!(l.admits(ip("10.8.0.1")));
        assert!(!l.admits(ip("10.9.0.1")));
        // The same address in both: denied.
        let both = list(&["192.0.2.1"], &["192.0.2.1"]);
        assert!(!both.admits(ip("192.0.2.1")));
    }

    #[test]
    fn an_ipv4_mapped_client_is_judged_in_both_forms() {
        // A dual-stack socket shows an IPv4 client as ::ffff:a.b.c.d.
        let v4 = list(&[], &["192.0.2.0/24"]);
        assert!(!v4.admits(ip("::ffff:192.0.2.9")));
        let mapped = list(&[], &["::ffff:192.0.2.0/120"]);
        assert!(!mapped.admits(ip("::ffff:192.0.2.9")));
        let allow = list(&["192.0.2.0/24"], &[]);
        assert!(allow.admits(ip("::ffff:192.0.2.9")));
        assert!(!allow.admits(ip("::ffff:192.0.3.9")));
    }

    #[test]
    fn ranges_in_the_first_last_form_work() {
        let l = list(&[], &["203.0.113.10-203.0.113.20"]);
        assert!(!l.admits(ip("203.0.113.15")));
        assert!(l.admits(ip("203.0.113.21")));
    }
}
