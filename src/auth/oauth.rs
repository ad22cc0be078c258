//! Third-party authorization (RFC 7635): self-contained access tokens,
//! AEAD-encrypted by an authorization server with a key the TURN server
//! shares (found by the key id the client sends as USERNAME).
//!
//! The token layout is coturn's, so `turnutils_uclient -J` works:
//!
//! ```text
//! nonce length (2) | nonce (12) | AES-GCM( key length (2) | mac key |
//!                                         timestamp (8) | lifetime (4) ) | tag (16)
//! ```
//!
//! with the server name as the associated data. The timestamp's top 48 bits
//! are Unix seconds, the low 16 a fraction. The AES key is the first 16
//! (A128GCM) or 32 (A256GCM) bytes of the shared key, as coturn uses it.
//! Every length is checked before it is used.
//!
//! [`verify_token`] checks a request that carries a token, and
//! [`verify_session`] one signed with the mac key of the token its
//! allocation was made with.

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes128Gcm, Aes256Gcm, Nonce};

use crate::stun::attributes::decode_username;
use crate::stun::integrity::verify_sha1;
use crate::stun::Message;

use super::directory::Directory;
use super::{signer_of, Authenticated, Key, OAuthSession, Origin, Rejection};

/// AEAD nonce length; coturn always sends 12.
pub const NONCE_LEN: usize = 12;
const TAG_LEN: usize = 16;
/// coturn accepts a token this many seconds past its lifetime.
pub const CLOCK_SLACK: u64 = 5;
/// How far ahead of our clock a token's timestamp may be. Without a bound
/// a token stamped a day ahead would be good for a day more than its
/// lifetime says (review I4); a minute covers clocks that drift.
pub const MAX_CLOCK_AHEAD: u64 = 60;
/// HMAC-SHA1 mac keys only (coturn refuses any other length).
pub const MAC_KEY_LEN: usize = 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
/// The AEAD of a token (RFC 7635 §4.1: A256GCM or A128GCM).
pub enum Alg {
    /// AES-256-GCM.
    A256Gcm,
    /// AES-128-GCM.
    A128Gcm,
}

impl Alg {
    /// Reads an algorithm name as coturn does: case, spaces and `_` vs `-`
    /// do not matter.
    pub fn parse(name: &str) -> Option<Alg> {
        let n: String = name
            .chars()
            .filter(|c| !c.is_whitespace())
            .map(|c| {
                if c == '_' {
                    '-'
                } else {
                    c.to_ascii_uppercase()
                }
            })
            .collect();
        match n.as_str() {
            "A256GCM" => Some(Alg::A256Gcm),
            "A128GCM" => Some(Alg::A128Gcm),
            _ => None,
        }
    }

    /// The name as coturn writes it.
    pub fn name(self) -> &'static str {
        match self {
            Alg::A256Gcm => "A256GCM",
            Alg::A128Gcm => "A128GCM",
        }
    }

    /// Key length in bytes.
    pub fn key_len(self) -> usize {
        match self {
            Alg::A256Gcm => 32,
            Alg::A128Gcm => 16,
        }
    }
}

/// A shared key; never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct OAuthKey {
    /// The AEAD the key is for.
    pub alg: Alg,
    key: Vec<u8>,
    /// Longest token validity accepted, seconds; 0 = the token's own.
    pub lifetime: u32,
}

impl std::fmt::Debug for OAuthKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "OAuthKey({}, ..)", self.alg.name())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
/// Why a configured OAuth key cannot be used.
pub enum KeyError {
    #[error("key too short: {alg} needs at least {need} bytes, got {got}")]
    /// Fewer bytes than the algorithm needs.
    TooShort {
        /// The algorithm name.
        alg: &'static str,
        /// Bytes needed.
        need: usize,
        /// Bytes given.
        got: usize,
    },
}

impl OAuthKey {
    /// A key from its raw bytes (base64-decoded); the first 16 or 32 are
    /// the AES key.
    pub fn new(alg: Alg, raw: &[u8], lifetime: u32) -> Result<Self, KeyError> {
        if raw.len() < alg.key_len() {
            return Err(KeyError::TooShort {
                alg: alg.name(),
                need: alg.key_len(),
                got: raw.len(),
            });
        }
        Ok(OAuthKey {
            alg,
            key: raw[..alg.key_len()].to_vec(),
            lifetime,
        })
    }

    fn seal(&self, nonce: &[u8; NONCE_LEN], aad: &[u8], plain: &[u8]) -> Vec<u8> {
        let payload = Payload { msg: plain, aad };
        let n = Nonce::from_slice(nonce);
        let sealed = match self.alg {
            Alg::A256Gcm => Aes256Gcm::new_from_slice(&self.key).map(|c| c.encrypt(n, payload)),
            Alg::A128Gcm => Aes128Gcm::new_from_slice(&self.key).map(|c| c.encrypt(n, payload)),
        };
        // The key length is fixed by `new`, and GCM seals any short input.
        match sealed {
            Ok(Ok(v)) => v,
            _ => Vec::new(),
        }
    }

    fn open(&self, nonce: &[u8], aad: &[u8], sealed: &[u8]) -> Option<Vec<u8>> {
        let payload = Payload { msg: sealed, aad };
        let n = Nonce::from_slice(nonce);
        match self.alg {
            Alg::A256Gcm => Aes256Gcm::new_from_slice(&self.key)
                .ok()?
                .decrypt(n, payload)
                .ok(),
            Alg::A128Gcm => Aes128Gcm::new_from_slice(&self.key)
                .ok()?
                .decrypt(n, payload)
                .ok(),
        }
    }
}

/// What a token grants.
#[derive(Clone, PartialEq, Eq)]
pub struct Token {
    /// The HMAC-SHA1 key for MESSAGE-INTEGRITY.
    pub mac_key: [u8; MAC_KEY_LEN],
    /// 48 bits of Unix seconds, 16 bits of fraction.
    pub timestamp: u64,
    /// Seconds; 0 = no limit.
    pub lifetime: u32,
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Token(ts {}, lifetime {})",
            self.timestamp >> 16,
            self.lifetime
        )
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
/// Why a token is refused (401).
pub enum TokenError {
    #[error("token too short or its lengths do not add up")]
    /// Too short, or its lengths do not add up.
    Malformed,
    #[error("token does not decrypt with this key and server name")]
    /// Does not decrypt with this key and server name.
    Integrity,
    #[error("mac key length not supported")]
    /// The mac key length is not 20.
    MacKeyLength,
    #[error("token expired")]
    /// Older than its lifetime allows.
    Expired,
    #[error("token timestamp is ahead of this server's clock")]
    /// Timestamped ahead of this server's clock.
    FromTheFuture,
}

impl Token {
    /// Unix second the token stops being valid (with coturn's slack), if it
    /// has a lifetime.
    pub fn expires(&self, key: &OAuthKey) -> Option<u64> {
        let lifetime = match (self.lifetime, key.lifetime) {
            (0, 0) => return None,
            (0, k) | (k, 0) => k,
            (t, k) => t.min(k),
        };
        Some((self.timestamp >> 16) + lifetime as u64 + CLOCK_SLACK)
    }
}

/// Decrypts and checks a token at Unix time `now`.
pub fn decode(
    key: &OAuthKey,
    server_name: &str,
    token: &[u8],
    now: u64,
) -> Result<Token, TokenError> {
    let nonce_len = token
        .get(..2)
        .map(|b| u16::from_be_bytes([b[0], b[1]]) as usize)
        .ok_or(TokenError::Malformed)?;
    if nonce_len != NONCE_LEN {
        return Err(TokenError::Malformed);
    }
    let sealed = token.get(2 + NONCE_LEN..).ok_or(TokenError::Malformed)?;
    // Smallest plaintext: key length field, timestamp, lifetime.
    if sealed.len() < TAG_LEN + 2 + 8 + 4 {
        return Err(TokenError::Malformed);
    }
    let plain = key
        .open(&token[2..2 + NONCE_LEN], server_name.as_bytes(), sealed)
        .ok_or(TokenError::Integrity)?;
    let key_len = u16::from_be_bytes([plain[0], plain[1]]) as usize;
    if plain.len() != 2 + key_len + 8 + 4 {
        return Err(TokenError::Malformed);
    }
    let mac_key: [u8; MAC_KEY_LEN] = plain[2..2 + key_len]
        .try_into()
        .map_err(|_| TokenError::MacKeyLength)?;
    let rest = &plain[2 + key_len..];
    let t = Token {
        mac_key,
        timestamp: u64::from_be_bytes(rest[..8].try_into().expect("8 bytes")),
        lifetime: u32::from_be_bytes(rest[8..12].try_into().expect("4 bytes")),
    };
    if t.expires(key).is_some_and(|end| now >= end) {
        return Err(TokenError::Expired);
    }
    if (t.timestamp >> 16) > now.saturating_add(MAX_CLOCK_AHEAD) {
        return Err(TokenError::FromTheFuture);
    }
    Ok(t)
}

/// Encrypts a token (what an authorization server does; used by tests).
pub fn encode(key: &OAuthKey, server_name: &str, nonce: &[u8; NONCE_LEN], t: &Token) -> Vec<u8> {
    let mut plain = Vec::with_capacity(2 + MAC_KEY_LEN + 12);
    plain.extend_from_slice(&(MAC_KEY_LEN as u16).to_be_bytes());
    plain.extend_from_slice(&t.mac_key);
    plain.extend_from_slice(&t.timestamp.to_be_bytes());
    plain.extend_from_slice(&t.lifetime.to_be_bytes());
    let mut out = Vec::with_capacity(2 + NONCE_LEN + plain.len() + TAG_LEN);
    out.extend_from_slice(&(NONCE_LEN as u16).to_be_bytes());
    out.extend_from_slice(nonce);
    out.extend_from_slice(&key.seal(nonce, server_name.as_bytes(), &plain));
    out
}

/// RFC 7635 §6: USERNAME names the key, the token (ACCESS-TOKEN) carries
/// the mac key that MESSAGE-INTEGRITY must verify with; `unix_now` is the
/// Unix second the token's lifetime is checked at.
pub(super) fn verify_token(
    msg: &Message<'_>,
    sha256: bool,
    dir: &Directory,
    server_name: &str,
    username: Option<&[u8]>,
    token: &[u8],
    unix_now: u64,
) -> Result<Authenticated, Rejection> {
    let kid = decode_username(username.ok_or(Rejection::BadRequest)?)
        .map_err(|_| Rejection::BadRequest)?;
    let shared = dir.oauth_keys.get(kid).ok_or(Rejection::Unauthorized)?;
    let t = decode(shared, server_name, token, unix_now).map_err(|_| Rejection::Unauthorized)?;
    if sha256 {
        return Err(Rejection::Unauthorized);
    }
    // coturn signs with the first 16 bytes of the mac key; RFC 7635
    // means all of it. Either verifies; answers use the one that did.
    let candidates = [16u8, MAC_KEY_LEN as u8].map(|len| Key::Mac {
        bytes: t.mac_key,
        len,
    });
    Ok(Authenticated {
        username: kid.to_string(),
        signer: signer_of(msg, false, candidates)?,
        origin: Origin::OAuth {
            expires: t.expires(shared),
        },
        // Set by the authenticator.
        realm: Default::default(),
    })
}

/// A request without a token from a client with an OAuth allocation:
/// coturn's client signs it with the last token's mac key. `Ok(None)` when
/// that key does not verify it (the request may still be a user's).
pub(super) fn verify_session(
    msg: &Message<'_>,
    sha256: bool,
    dir: &Directory,
    session: &OAuthSession,
    username: &[u8],
) -> Result<Option<Authenticated>, Rejection> {
    let kid = decode_username(username).map_err(|_| Rejection::BadRequest)?;
    if !matches!(session.signer.key, Key::Mac { .. })
        || sha256
        || verify_sha1(msg, session.signer.key.as_bytes()).is_err()
    {
        return Ok(None);
    }
    // F9: the mac key is only as good as its token: the key id must still
    // be configured, and the token's expiry travels with the answer (the
    // caller refuses it once passed, as for a request carrying the token).
    if !dir.oauth_keys.contains_key(kid) {
        return Err(Rejection::Unauthorized);
    }
    Ok(Some(Authenticated {
        username: kid.to_string(),
        signer: session.signer.clone(),
        origin: Origin::OAuth {
            expires: session.expires,
        },
        realm: Default::default(),
    }))
}

/// Whether a request by a token valid until `expires` (Unix seconds) is
/// refused at `unix_now`: every request is (RFC 7635: the token's lifetime
/// bounds the use of its mac key), including those signed with its key
/// alone.
pub fn expired(expires: Option<u64>, unix_now: u64) -> bool {
    expires.is_some_and(|end| unix_now >= end)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        let s: String = s.split_whitespace().collect();
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    fn north() -> OAuthKey {
        OAuthKey::new(Alg::A256Gcm, b"01234567890123456789012345678901\n", 0).unwrap()
    }

    fn union() -> OAuthKey {
        OAuthKey::new(Alg::A128Gcm, b"1234567890123456\n", 0).unwrap()
    }

    fn vector_token() -> Token {
        Token {
            mac_key: (1..=20).collect::<Vec<u8>>().try_into().unwrap(),
            timestamp: 1_700_000_000 << 16,
            lifetime: 300,
        }
    }

    const NONCE: [u8; 12] = [
        0xa0, 0xa1, 0xa2, 0xa3, 0xa4, 0xa5, 0xa6, 0xa7, 0xa8, 0xa9, 0xaa, 0xab,
    ];

    // Made with coturn 4.6.1's libturnclient (encode_oauth_token).
    const COTURN_NORTH: &str = "000ca0a1a2a3a4a5a6a7a8a9aaab a584c37141b3439ea0b18de2436f9fbbef23ec7601d2a27dd8364ddde79aa4467402 591ef8972f6cd9429548d361ba15f028";
    const COTURN_UNION: &str = "000ca0a1a2a3a4a5a6a7a8a9aaab11855f96b3c3c657540ca4f7dbdc7301dc4b5a893184cd9cac88f56717cb65d127078b287f6d01a15351fd75ead48f658b0d";

    #[test]
    fn encodes_byte_identical_to_coturn() {
        assert_eq!(
            encode(&north(), "example.org", &NONCE, &vector_token()),
            hex(COTURN_NORTH)
        );
        assert_eq!(
            encode(&union(), "example.org", &NONCE, &vector_token()),
            hex(COTURN_UNION)
        );
    }

    #[test]
    fn decodes_coturn_tokens_within_their_lifetime() {
        let now = 1_700_000_100;
        assert_eq!(
            decode(&north(), "example.org", &hex(COTURN_NORTH), now),
            Ok(vector_token())
        );
        assert_eq!(
            decode(&union(), "example.org", &hex(COTURN_UNION), now),
            Ok(vector_token())
        );
    }

    #[test]
    fn refuses_wrong_server_name_wrong_key_and_expired_tokens() {
        let t = hex(COTURN_NORTH);
        let now = 1_700_000_100;
        assert_eq!(
            decode(&north(), "other.org", &t, now),
            Err(TokenError::Integrity)
        );
        let other = OAuthKey::new(Alg::A256Gcm, b"12345678901234567890123456789012", 0).unwrap();
        assert_eq!(
            decode(&other, "example.org", &t, now),
            Err(TokenError::Integrity)
        );
        // Valid until ts + 300 + 5 slack.
        assert!(decode(&north(), "example.org", &t, 1_700_000_304).is_ok());
        assert_eq!(
            decode(&north(), "example.org", &t, 1_700_000_305),
            Err(TokenError::Expired)
        );
        // A key lifetime shortens what the token claims.
        let short = OAuthKey::new(Alg::A256Gcm, b"01234567890123456789012345678901", 60).unwrap();
        assert_eq!(
            decode(&short, "example.org", &t, 1_700_000_065),
            Err(TokenError::Expired)
        );
        // Stamped more than a minute ahead of our clock: refused.
        assert!(decode(&north(), "example.org", &t, 1_700_000_000 - 60).is_ok());
        assert_eq!(
            decode(&north(), "example.org", &t, 1_700_000_000 - 61),
            Err(TokenError::FromTheFuture)
        );
    }

    #[test]
    fn every_truncation_and_bit_flip_is_refused_without_panic() {
        let t = hex(COTURN_NORTH);
        for n in 0..t.len() {
            assert!(
                decode(&north(), "example.org", &t[..n], 0).is_err(),
                "prefix {n}"
            );
        }
        for i in 0..t.len() {
            let mut bad = t.clone();
            bad[i] ^= 0x01;
            assert!(
                decode(&north(), "example.org", &bad, 0).is_err(),
                "flip {i}"
            );
        }
    }

    #[test]
    fn algorithm_names_are_read_as_coturn_does() {
        assert_eq!(Alg::parse("A256GCM"), Some(Alg::A256Gcm));
        assert_eq!(Alg::parse(" a128gcm "), Some(Alg::A128Gcm));
        assert_eq!(Alg::parse("HS256"), None);
        assert!(OAuthKey::new(Alg::A256Gcm, &[0; 31], 0).is_err());
    }
}
