//! Stateless nonces (RFC 8489 §9.2): nothing is stored for a client before
//! its MESSAGE-INTEGRITY verifies.
//!
//! A nonce is `obMatJos2` + 4 base64 characters of the security feature set
//! (RFC 8489 §9.2.1) + 16 base64 characters of the issue time (4 bytes,
//! Unix seconds when the shell says what Unix time the epoch is, which lets
//! every node of a fleet sharing the secret check every other node's
//! nonces) and an HMAC-SHA1 over the client IP,
//! the feature set, the time and the realm it was issued in, truncated to
//! 8 bytes. The port is left out so that a client whose NAT rebinds keeps
//! its nonce; the realm is in, so that a nonce of one tenant realm is
//! stale in another (issue 19's realms).
//!
//! The MAC key rotates every [`KEY_PERIOD`]: it is derived from the
//! (fleet-shared) secret and the period the nonce was issued in, and a nonce
//! is checked with its own period's key, so rotation never cuts a nonce
//! short: the overlap is the nonce's whole life.
//!
//! 29 characters in all: every 401 and 438 carries one to whoever the
//! source address claims to be, so it is kept short (F5). 64 bits of MAC
//! are plenty: each wrong guess costs a 438 from the reply budget, and a
//! nonce lives `stale_nonce` seconds.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha1::Sha1;
use sha2::Sha256;
use subtle::ConstantTimeEq;

/// RFC 8489 §9.2: "the nonce cookie ... the string 'obMatJos2'".
pub const NONCE_COOKIE: &str = "obMatJos2";
/// Security feature bits (RFC 8489 §18.1 as corrected by erratum 6290: bit 0
/// is the least significant).
pub const FEATURE_PASSWORD_ALGORITHMS: u32 = 0x00_0001;
/// RFC 8489 §9.2: the server supports USERHASH.
pub const FEATURE_USERNAME_ANONYMITY: u32 = 0x00_0002;

const FEATURES_B64_LEN: usize = 4;
const MAC_BYTES: usize = 8;
/// Issue time and MAC, before base64.
const BODY_BYTES: usize = 4 + MAC_BYTES;
const BODY_B64_LEN: usize = BODY_BYTES / 3 * 4;
const NONCE_LEN: usize = NONCE_COOKIE.len() + FEATURES_B64_LEN + BODY_B64_LEN;
/// Seconds a nonce may appear to come from the future: the clock skew
/// allowed between the nodes of a fleet.
const CLOCK_SKEW: u32 = 5;
/// Seconds each nonce MAC key is used for before the next takes over.
pub const KEY_PERIOD: u32 = 3600;

/// Issues and checks nonces. Shared by every worker.
#[derive(Clone)]
pub struct NonceIssuer {
    secret: [u8; 32],
    epoch: Instant,
    /// The nonce clock's reading at `epoch` (Unix seconds, or 0).
    clock_at_epoch: u64,
    stale_after: Duration,
    features: u32,
}

// By hand: the secret would let anyone mint valid nonces.
impl std::fmt::Debug for NonceIssuer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NonceIssuer")
            .field("secret", &"<redacted>")
            .field("stale_after", &self.stale_after)
            .field("features", &self.features)
            .finish_non_exhaustive()
    }
}

/// What a presented nonce turned out to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NonceCheck {
    /// Issued by us, to this IP, not stale. Carries its feature set.
    Valid {
        /// The feature bits the nonce carries.
        features: u32,
    },
    /// Ours but older than `stale_nonce`, or not ours at all: 438.
    Stale,
}

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

fn features_b64(f: u32) -> [u8; 4] {
    let f = f & 0xFF_FFFF;
    [
        B64[(f >> 18) as usize & 63],
        B64[(f >> 12) as usize & 63],
        B64[(f >> 6) as usize & 63],
        B64[f as usize & 63],
    ]
}

fn features_from_b64(s: &[u8]) -> Option<u32> {
    s.iter().try_fold(0u32, |acc, c| {
        let v = B64.iter().position(|b| b == c)? as u32;
        Some((acc << 6) | v)
    })
}

impl NonceIssuer {
    /// `secret` keys the MAC (random per server start, or shared across
    /// nodes); `epoch` is the zero of the nonce clock.
    pub fn new(secret: [u8; 32], epoch: Instant, stale_after: Duration, features: u32) -> Self {
        NonceIssuer {
            secret,
            epoch,
            clock_at_epoch: 0,
            stale_after,
            features,
        }
    }

    /// Counts nonce times in Unix seconds: `unix` is the Unix time at the
    /// epoch. Nodes sharing the secret then agree on every nonce's age.
    pub fn with_unix_epoch(mut self, unix: u64) -> Self {
        self.clock_at_epoch = unix;
        self
    }

    /// The instant nonce times count from.
    pub fn epoch(&self) -> Instant {
        self.epoch
    }

    /// The feature bits advertised in every nonce.
    pub fn features(&self) -> u32 {
        self.features
    }

    /// The MAC key of the period `issued` falls in: HMAC-SHA256 of the
    /// secret over the period number.
    fn key_of(&self, issued: u32) -> [u8; 32] {
        let mut k = Hmac::<Sha256>::new_from_slice(&self.secret).expect("any key length");
        k.update(b"turnpike nonce key");
        k.update(&(issued / KEY_PERIOD).to_be_bytes());
        k.finalize().into_bytes().into()
    }

    fn mac(&self, ip: IpAddr, realm: &str, features: u32, issued: u32) -> [u8; MAC_BYTES] {
        let key = self.key_of(issued);
        let mut mac = Hmac::<Sha1>::new_from_slice(&key).expect("any key length");
        match ip {
            IpAddr::V4(v4) => mac.update(&v4.octets()),
            IpAddr::V6(v6) => mac.update(&v6.octets()),
        }
        mac.update(&features.to_be_bytes());
        mac.update(&issued.to_be_bytes());
        // Last, so its length needs no prefix: a nonce one realm issued
        // is stale in every other.
        mac.update(realm.as_bytes());
        let full = mac.finalize().into_bytes();
        let mut out = [0u8; MAC_BYTES];
        out.copy_from_slice(&full[..MAC_BYTES]);
        out
    }

    fn seconds(&self, now: Instant) -> u32 {
        (self.clock_at_epoch + now.saturating_duration_since(self.epoch).as_secs()) as u32
    }

    /// A fresh nonce for `ip` in `realm`, written as ASCII.
    pub fn issue(&self, now: Instant, ip: IpAddr, realm: &str) -> [u8; NONCE_LEN] {
        let issued = self.seconds(now);
        let mut out = [0u8; NONCE_LEN];
        let (cookie, rest) = out.split_at_mut(NONCE_COOKIE.len());
        cookie.copy_from_slice(NONCE_COOKIE.as_bytes());
        rest[..4].copy_from_slice(&features_b64(self.features));
        let mut body = [0u8; BODY_BYTES];
        body[..4].copy_from_slice(&issued.to_be_bytes());
        body[4..].copy_from_slice(&self.mac(ip, realm, self.features, issued));
        // 12 bytes are exactly 16 characters: no padding, cannot fail.
        let _ = STANDARD.encode_slice(body, &mut rest[4..]);
        out
    }

    /// Checks a nonce a client sent back in a request served in `realm`.
    pub fn check(&self, now: Instant, ip: IpAddr, realm: &str, nonce: &[u8]) -> NonceCheck {
        if nonce.len() != NONCE_LEN || !nonce.starts_with(NONCE_COOKIE.as_bytes()) {
            return NonceCheck::Stale;
        }
        let rest = &nonce[NONCE_COOKIE.len()..];
        let Some(features) = features_from_b64(&rest[..4]) else {
            return NonceCheck::Stale;
        };
        let mut body = [0u8; BODY_BYTES];
        if !matches!(STANDARD.decode_slice(&rest[4..], &mut body), Ok(BODY_BYTES)) {
            return NonceCheck::Stale;
        }
        let issued = u32::from_be_bytes([body[0], body[1], body[2], body[3]]);
        let want = self.mac(ip, realm, features, issued);
        if !bool::from(want.ct_eq(&body[4..])) {
            return NonceCheck::Stale;
        }
        // Another node's clock may run a little ahead of ours.
        let now = self.seconds(now).saturating_add(CLOCK_SKEW);
        let age = now
            .checked_sub(issued)
            .map(|a| a.saturating_sub(CLOCK_SKEW));
        match age {
            Some(age) if u64::from(age) < self.stale_after.as_secs() => {
                NonceCheck::Valid { features }
            }
            _ => NonceCheck::Stale,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn issuer(t0: Instant) -> NonceIssuer {
        NonceIssuer::new(
            [7; 32],
            t0,
            Duration::from_secs(600),
            FEATURE_PASSWORD_ALGORITHMS,
        )
    }

    #[test]
    fn nonce_is_valid_until_stale_nonce_seconds_pass() {
        let t0 = Instant::now();
        let n = issuer(t0);
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let nonce = n.issue(t0 + Duration::from_secs(5), ip, "r");
        assert!(nonce.starts_with(b"obMatJos2AAAB"));
        assert_eq!(nonce.len(), 29, "short: it is in every 401");
        assert_eq!(
            n.check(t0 + Duration::from_secs(604), ip, "r", &nonce),
            NonceCheck::Valid {
                features: FEATURE_PASSWORD_ALGORITHMS
            }
        );
        assert_eq!(
            n.check(t0 + Duration::from_secs(605), ip, "r", &nonce),
            NonceCheck::Stale
        );
    }

    #[test]
    fn nonce_from_another_ip_or_forged_or_other_server_is_stale() {
        let t0 = Instant::now();
        let n = issuer(t0);
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let nonce = n.issue(t0, ip, "r");
        assert_eq!(
            n.check(t0, "192.0.2.2".parse().unwrap(), "r", &nonce),
            NonceCheck::Stale
        );
        let mut forged = nonce;
        forged[20] = if forged[20] == b'0' { b'1' } else { b'0' };
        assert_eq!(n.check(t0, ip, "r", &forged), NonceCheck::Stale);
        let other = NonceIssuer::new([8; 32], t0, Duration::from_secs(600), 1);
        assert_eq!(other.check(t0, ip, "r", &nonce), NonceCheck::Stale);
        assert_eq!(
            n.check(t0, ip, "r2", &nonce),
            NonceCheck::Stale,
            "another realm"
        );
        assert_eq!(n.check(t0, ip, "", &nonce), NonceCheck::Stale);
        assert_eq!(n.check(t0, ip, "r", b"short"), NonceCheck::Stale);
        assert_eq!(n.check(t0, ip, "r", &[0xff; NONCE_LEN]), NonceCheck::Stale);
    }

    #[test]
    fn a_nonce_from_the_future_is_stale() {
        let t0 = Instant::now();
        let n = issuer(t0);
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let nonce = n.issue(t0 + Duration::from_secs(100), ip, "r");
        // Up to CLOCK_SKEW ahead is another node's clock, not a forgery.
        assert!(matches!(
            n.check(t0 + Duration::from_secs(95), ip, "r", &nonce),
            NonceCheck::Valid { .. }
        ));
        assert_eq!(
            n.check(t0 + Duration::from_secs(94), ip, "r", &nonce),
            NonceCheck::Stale
        );
    }

    /// Issue 15: nodes sharing the secret, each with its own monotonic
    /// clock but the same Unix time, accept each other's nonces.
    #[test]
    fn a_nonce_from_another_node_with_the_same_secret_is_valid() {
        // a0 and b0 are the same wall-clock moment on two hosts whose
        // monotonic clocks read differently.
        let (a0, b0) = (Instant::now(), Instant::now() + Duration::from_secs(5000));
        let unix = 1_700_000_000;
        let a = issuer(a0).with_unix_epoch(unix);
        let b = issuer(b0).with_unix_epoch(unix);
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let nonce = a.issue(a0 + Duration::from_secs(10), ip, "r");
        assert!(matches!(
            b.check(b0 + Duration::from_secs(12), ip, "r", &nonce),
            NonceCheck::Valid { .. }
        ));
        // It goes stale on B when it would on A.
        assert_eq!(
            b.check(b0 + Duration::from_secs(10 + 600), ip, "r", &nonce),
            NonceCheck::Stale
        );
        // A node with another secret does not accept it.
        let c = NonceIssuer::new([8; 32], b0, Duration::from_secs(600), 0).with_unix_epoch(unix);
        assert_eq!(
            c.check(b0 + Duration::from_secs(12), ip, "r", &nonce),
            NonceCheck::Stale
        );
    }

    /// The MAC key changes every KEY_PERIOD, and a nonce issued just
    /// before a change stays good for its whole life after it.
    #[test]
    fn the_mac_key_rotates_every_period_and_nonces_outlive_the_rotation() {
        let t0 = Instant::now();
        let period = u64::from(KEY_PERIOD);
        // The epoch is 10 s before a period boundary.
        let unix = 1_700_000_000 / period * period + period - 10;
        let n = issuer(t0).with_unix_epoch(unix);
        let boundary = (unix + 10) as u32;
        assert_ne!(n.key_of(boundary - 1), n.key_of(boundary));
        assert_eq!(n.key_of(boundary), n.key_of(boundary + KEY_PERIOD - 1));
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let before = n.issue(t0 + Duration::from_secs(5), ip, "r");
        assert!(matches!(
            n.check(t0 + Duration::from_secs(5 + 599), ip, "r", &before),
            NonceCheck::Valid { .. }
        ));
        // Last period's key cannot sign a nonce dated in this period.
        let issued = boundary + 1;
        let mut mac = Hmac::<Sha1>::new_from_slice(&n.key_of(boundary - 1)).unwrap();
        mac.update(&[192, 0, 2, 1]);
        mac.update(&FEATURE_PASSWORD_ALGORITHMS.to_be_bytes());
        mac.update(&issued.to_be_bytes());
        let full = mac.finalize().into_bytes();
        let mut body = [0u8; BODY_BYTES];
        body[..4].copy_from_slice(&issued.to_be_bytes());
        body[4..].copy_from_slice(&full[..MAC_BYTES]);
        let mut forged = n.issue(t0 + Duration::from_secs(11), ip, "r");
        let _ = STANDARD.encode_slice(body, &mut forged[NONCE_COOKIE.len() + 4..]);
        assert_eq!(
            n.check(t0 + Duration::from_secs(12), ip, "r", &forged),
            NonceCheck::Stale
        );
        // The same body signed with this period's key is valid.
        let good = n.issue(t0 + Duration::from_secs(11), ip, "r");
        assert!(matches!(
            n.check(t0 + Duration::from_secs(12), ip, "r", &good),
            NonceCheck::Valid { .. }
        ));
    }
}
