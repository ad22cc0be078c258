//! Realms per tenant (issue 19): which realm a request is served in.
//!
//! The TLS server name (SNI) of the connection is looked at first: it was
//! chosen by the client's configuration (the `turns:` URL), before any
//! page could put words in the request. Then the STUN ORIGIN attribute
//! (RFC 7635 §6.3), compared exactly as coturn compares origins with its
//! origin-to-realm table. Else the default realm.

use std::sync::Arc;

use crate::stun::attributes::AttributeType;
use crate::stun::Message;

/// A tenant realm and what selects it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tenant {
    /// The realm's name.
    pub name: Arc<str>,
    /// Server names (lower case, no trailing dot) that select it.
    pub sni: Vec<String>,
    /// ORIGIN values that select it, compared exactly.
    pub origins: Vec<String>,
}

/// The default realm and the tenant realms, fixed at start.
#[derive(Debug, Clone)]
pub struct RealmMap {
    default: Arc<str>,
    tenants: Vec<Tenant>,
}

impl RealmMap {
    /// The default realm alone.
    pub fn new(default: &str) -> Self {
        RealmMap {
            default: default.into(),
            tenants: Vec::new(),
        }
    }

    /// With these tenant realms.
    pub fn with_tenants(mut self, tenants: Vec<Tenant>) -> Self {
        self.tenants = tenants;
        self
    }

    /// The default realm.
    pub fn default_realm(&self) -> &Arc<str> {
        &self.default
    }

    /// Every realm's name, the default first.
    pub fn names(&self) -> impl Iterator<Item = &Arc<str>> {
        std::iter::once(&self.default).chain(self.tenants.iter().map(|t| &t.name))
    }

    /// Whether `name` is one of the realms.
    pub fn contains(&self, name: &str) -> bool {
        self.names().any(|n| &**n == name)
    }

    /// The tenant realm a TLS server name selects.
    pub fn by_sni(&self, sni: &str) -> Option<&Arc<str>> {
        let sni = sni.trim_end_matches('.');
        self.tenants
            .iter()
            .find(|t| t.sni.iter().any(|s| s.eq_ignore_ascii_case(sni)))
            .map(|t| &t.name)
    }

    /// The tenant realm an ORIGIN value selects.
    pub fn by_origin(&self, origin: &[u8]) -> Option<&Arc<str>> {
        self.tenants
            .iter()
            .find(|t| t.origins.iter().any(|o| o.as_bytes() == origin))
            .map(|t| &t.name)
    }

    /// The realm a request is served in: the one `sni_realm` (what the
    /// connection's SNI selected) names, else the one an ORIGIN attribute
    /// of `msg` selects, else the default.
    pub fn select(&self, sni_realm: Option<&Arc<str>>, msg: &Message<'_>) -> Arc<str> {
        if let Some(r) = sni_realm {
            return r.clone();
        }
        if !self.tenants.is_empty() {
            if let Some(r) = msg
                .get(AttributeType::ORIGIN)
                .and_then(|o| self.by_origin(o))
            {
                return r.clone();
            }
        }
        self.default.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stun::{Class, MessageBuilder, MessageType, Method, TransactionId};

    fn map() -> RealmMap {
        RealmMap::new("default").with_tenants(vec![
            Tenant {
                name: "a".into(),
                sni: vec!["a.example".into()],
                origins: vec!["https://a.example".into()],
            },
            Tenant {
                name: "b".into(),
                sni: vec!["b.example".into()],
                origins: vec!["https://b.example:8443".into()],
            },
        ])
    }

    fn with_origin(origin: Option<&str>) -> Vec<u8> {
        let mut buf = vec![0u8; 256];
        let mut b = MessageBuilder::new(
            &mut buf,
            MessageType::new(Method::ALLOCATE, Class::Request),
            TransactionId([1; 12]),
        );
        if let Some(o) = origin {
            b.add(AttributeType::ORIGIN, o.as_bytes());
        }
        let n = b.finish().unwrap();
        buf.truncate(n);
        buf
    }

    fn select(sni: Option<&str>, origin: Option<&str>) -> String {
        let m = map();
        let bytes = with_origin(origin);
        let msg = Message::parse(&bytes).unwrap();
        let sni = sni.and_then(|s| m.by_sni(s)).cloned();
        m.select(sni.as_ref(), &msg).to_string()
    }

    /// An Authenticator of realm `d` (alice, gone) and tenant `a` (ann,
    /// gone, the REST secret `sa`; gone revoked in `a` only).
    fn authenticator(now: std::time::Instant) -> crate::auth::Authenticator {
        use crate::auth::{Credentials, Directory, NonceIssuer};
        let mut d = Credentials::new("d");
        d.add_spec("alice:pw").unwrap();
        d.add_spec("gone:pw").unwrap();
        let nonces = NonceIssuer::new([3; 32], now, std::time::Duration::from_secs(60), 0);
        let auth = crate::auth::Authenticator::new(Directory::new(d), nonces)
            .with_clock(now, 1_700_000_000)
            .with_realms(map().tenants);
        let mut a = Credentials::new("a");
        a.add_spec("ann:apw").unwrap();
        a.add_spec("gone:pw").unwrap();
        let mut dir = Directory::new(a);
        dir.secrets = vec![crate::auth::rest::Secret(b"sa".to_vec())];
        dir.revoked.insert("gone".into(), None);
        auth.replace(dir);
        auth
    }

    fn signed(user: &str, password: &str, realm: &str, nonce: &[u8]) -> Vec<u8> {
        let mut buf = vec![0u8; 512];
        let mut b = MessageBuilder::new(
            &mut buf,
            MessageType::new(Method::ALLOCATE, Class::Request),
            TransactionId([2; 12]),
        );
        b.add_username(user);
        b.add_realm(realm);
        b.add_nonce(nonce);
        let key = crate::stun::integrity::long_term_key_md5(user, realm, password);
        b.add_message_integrity(&key);
        let n = b.finish().unwrap();
        buf.truncate(n);
        buf
    }

    #[test]
    fn a_request_is_checked_against_its_realms_credentials_only() {
        use crate::auth::Rejection::Unauthorized;
        let now = std::time::Instant::now();
        let auth = authenticator(now);
        let ip = "192.0.2.1".parse().unwrap();
        let (d, a): (Arc<str>, Arc<str>) = ("d".into(), "a".into());
        // Each request carries a nonce of the realm it is served in.
        let check = |served: &Arc<str>, user: &str, pw: &str, realm: &str| {
            let nonce = auth.nonces().issue(now, ip, served);
            let bytes = signed(user, pw, realm, &nonce);
            let msg = Message::parse(&bytes).unwrap();
            auth.authenticate_in(served, now, &msg, ip, None)
        };
        let ann = check(&a, "ann", "apw", "a").unwrap();
        assert_eq!((&*ann.realm, ann.username.as_str()), ("a", "ann"));
        // A nonce of realm d is stale in a, however good the rest is.
        let d_nonce = auth.nonces().issue(now, ip, "d");
        let msg_bytes = signed("ann", "apw", "a", &d_nonce);
        let msg = Message::parse(&msg_bytes).unwrap();
        assert_eq!(
            auth.authenticate_in(&a, now, &msg, ip, None),
            Err(crate::auth::Rejection::StaleNonce)
        );
        assert_eq!(&*check(&d, "alice", "pw", "d").unwrap().realm, "d");
        // A user of one realm is nobody in the other, whatever REALM says.
        assert_eq!(check(&d, "ann", "apw", "a"), Err(Unauthorized));
        assert_eq!(check(&d, "ann", "apw", "d"), Err(Unauthorized));
        assert_eq!(check(&a, "alice", "pw", "a"), Err(Unauthorized));
        assert_eq!(check(&a, "alice", "pw", "d"), Err(Unauthorized));
        // REST secrets are the realm's: a's secret mints for a only.
        let (user, pw) = crate::auth::rest::mint(b"sa", "web", 600, ':', 1_700_000_000);
        assert!(check(&a, &user, &pw, "a").is_ok());
        assert_eq!(check(&d, &user, &pw, "d"), Err(Unauthorized));
        // Revocations are the realm's too.
        let gone_a = check(&a, "gone", "pw", "a").unwrap();
        let gone_d = check(&d, "gone", "pw", "d").unwrap();
        assert!(auth.revoked(now, &gone_a) && !auth.revoked(now, &gone_d));
        // The challenge names the realm it is given.
        let mut buf = vec![0u8; 256];
        let mut b = MessageBuilder::new(
            &mut buf,
            MessageType::new(Method::ALLOCATE, Class::ErrorResponse),
            TransactionId([2; 12]),
        );
        auth.add_challenge_in("a", now, ip, &mut b);
        let n = b.finish().unwrap();
        let m = Message::parse(&buf[..n]).unwrap();
        assert_eq!(m.get(AttributeType::REALM), Some(&b"a"[..]));
    }

    #[test]
    fn sni_then_exact_origin_then_the_default() {
        assert_eq!(select(None, None), "default");
        assert_eq!(select(None, Some("https://a.example")), "a");
        assert_eq!(select(None, Some("https://b.example:8443")), "b");
        // Exact: another port, a path or another scheme is no match.
        assert_eq!(select(None, Some("https://b.example")), "default");
        assert_eq!(select(None, Some("https://a.example/")), "default");
        assert_eq!(select(None, Some("http://a.example")), "default");
        // SNI, in any case and with a trailing dot, wins over ORIGIN.
        assert_eq!(select(Some("B.EXAMPLE."), Some("https://a.example")), "b");
        assert_eq!(select(Some("c.example"), Some("https://a.example")), "a");
        assert!(map().contains("b") && !map().contains("c"));
    }
}
