//! Authentication of TURN requests, sans-IO.
//!
//! * [`credentials`]: long-term users as keys (HA1), never passwords.
//! * [`nonce`]: stateless nonces bound to the client IP and a time.
//! * [`rate`]: the per-source budget for 401 and 438 answers.
//!
//! [`Authenticator::authenticate`] runs the server side of the long-term
//! credential mechanism (RFC 8489 §9.2.4) including the password algorithm
//! negotiation and USERHASH.

pub mod credentials;
pub mod nonce;
pub mod rate;

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

use crate::stun::attributes::{decode_text, decode_username, AttributeType, MAX_TEXT_CHARS};
use crate::stun::integrity::{verify_sha1, verify_sha256, IntegrityError};
use crate::stun::{Message, MessageBuilder};

pub use credentials::{Credentials, UserKeys};
pub use nonce::{NonceCheck, NonceIssuer};

/// PASSWORD-ALGORITHM values (RFC 8489 §18.5).
pub const ALGORITHM_MD5: u16 = 0x0001;
pub const ALGORITHM_SHA256: u16 = 0x0002;

/// The PASSWORD-ALGORITHMS value this server offers: SHA-256 first, then MD5,
/// each with empty parameters.
pub const OFFERED_ALGORITHMS: [u8; 8] = [0x00, 0x02, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00];

/// Which integrity attribute signs a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IntegrityKind {
    Sha1,
    Sha256,
}

/// The key a request was verified with; its responses are signed with it.
#[derive(Clone, PartialEq, Eq)]
pub enum Key {
    Md5([u8; 16]),
    Sha256([u8; 32]),
}

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Key(..)")
    }
}

impl Key {
    pub fn as_bytes(&self) -> &[u8] {
        match self {
            Key::Md5(k) => k,
            Key::Sha256(k) => k,
        }
    }
}

/// How to sign responses to an authenticated request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signer {
    pub key: Key,
    pub kind: IntegrityKind,
}

impl Signer {
    /// Adds the integrity attribute the request used.
    pub fn sign(&self, b: &mut MessageBuilder<'_>) {
        match self.kind {
            IntegrityKind::Sha1 => b.add_message_integrity(self.key.as_bytes()),
            IntegrityKind::Sha256 => b.add_message_integrity_sha256(self.key.as_bytes()),
        }
    }
}

/// A request whose MESSAGE-INTEGRITY verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authenticated {
    pub username: String,
    pub signer: Signer,
}

/// Why a request was not authenticated; each is an error response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejection {
    /// 401 with REALM and a fresh NONCE: no integrity, unknown user, or a
    /// MAC that does not verify.
    Unauthorized,
    /// 400: integrity without USERNAME/USERHASH, REALM or NONCE, bad lengths,
    /// or a password algorithm negotiation that does not follow the rules.
    BadRequest,
    /// 438 with REALM and a fresh NONCE.
    StaleNonce,
}

/// Verifies requests against a credential snapshot.
pub struct Authenticator {
    credentials: Arc<Credentials>,
    nonces: NonceIssuer,
}

fn parse_algorithm(value: &[u8]) -> Option<u16> {
    // Algorithm (2 bytes) + parameter length (2 bytes) + parameters.
    if value.len() < 4 {
        return None;
    }
    let params = u16::from_be_bytes([value[2], value[3]]) as usize;
    if value.len() != 4 + params {
        return None;
    }
    Some(u16::from_be_bytes([value[0], value[1]]))
}

impl Authenticator {
    pub fn new(credentials: Arc<Credentials>, nonces: NonceIssuer) -> Self {
        Authenticator {
            credentials,
            nonces,
        }
    }

    pub fn realm(&self) -> &str {
        self.credentials.realm()
    }

    pub fn nonces(&self) -> &NonceIssuer {
        &self.nonces
    }

    pub fn credentials(&self) -> &Credentials {
        &self.credentials
    }

    /// Writes REALM, NONCE and (when advertised) PASSWORD-ALGORITHMS into a
    /// 401 or 438 answer.
    pub fn add_challenge(&self, now: Instant, ip: IpAddr, b: &mut MessageBuilder<'_>) {
        b.add_realm(self.realm());
        b.add_nonce(&self.nonces.issue(now, ip));
        if self.nonces.features() & nonce::FEATURE_PASSWORD_ALGORITHMS != 0 {
            b.add(AttributeType::PASSWORD_ALGORITHMS, &OFFERED_ALGORITHMS);
        }
    }

    /// RFC 8489 §9.2.4 for one request from `ip`.
    pub fn authenticate(
        &self,
        now: Instant,
        msg: &Message<'_>,
        ip: IpAddr,
    ) -> Result<Authenticated, Rejection> {
        let sha256 = msg.integrity_sha256_offset().is_some();
        // "If the message does not contain a MESSAGE-INTEGRITY or
        // MESSAGE-INTEGRITY-SHA256 attribute, the server MUST generate an
        // error response with an error code of 401 (Unauthenticated)."
        if msg.integrity_offset().is_none() && !sha256 {
            return Err(Rejection::Unauthorized);
        }
        // "If the message contains a MESSAGE-INTEGRITY or a
        // MESSAGE-INTEGRITY-SHA256 attribute, but is missing either the
        // USERNAME or USERHASH, REALM, or NONCE attribute, the server MUST
        // generate an error response with an error code of 400 (Bad Request)."
        let username = msg.get(AttributeType::USERNAME);
        let userhash = msg.get(AttributeType::USERHASH);
        let (Some(realm), Some(nonce)) =
            (msg.get(AttributeType::REALM), msg.get(AttributeType::NONCE))
        else {
            return Err(Rejection::BadRequest);
        };
        if username.is_none() && userhash.is_none() {
            return Err(Rejection::BadRequest);
        }
        let realm = decode_text(realm, MAX_TEXT_CHARS).map_err(|_| Rejection::BadRequest)?;
        if nonce.len() > MAX_TEXT_CHARS * 4 {
            return Err(Rejection::BadRequest);
        }
        // "If the NONCE is no longer valid, the server MUST generate an error
        // response with an error code of 438 (Stale Nonce)."
        let NonceCheck::Valid { features } = self.nonces.check(now, ip, nonce) else {
            return Err(Rejection::StaleNonce);
        };

        // Bid-down protection (RFC 8489 §9.2.4 with the password algorithms
        // feature): either neither attribute (MD5), or both, the list
        // echoed exactly and the choice taken from it.
        let mut algorithm = ALGORITHM_MD5;
        if features & nonce::FEATURE_PASSWORD_ALGORITHMS != 0 {
            let list = msg.get(AttributeType::PASSWORD_ALGORITHMS);
            let chosen = msg.get(AttributeType::PASSWORD_ALGORITHM);
            match (list, chosen) {
                (None, None) => {}
                (Some(list), Some(chosen)) => {
                    if list != OFFERED_ALGORITHMS {
                        return Err(Rejection::BadRequest);
                    }
                    algorithm = parse_algorithm(chosen).ok_or(Rejection::BadRequest)?;
                    if algorithm != ALGORITHM_MD5 && algorithm != ALGORITHM_SHA256 {
                        return Err(Rejection::BadRequest);
                    }
                }
                _ => return Err(Rejection::BadRequest),
            }
        }

        if realm != self.realm() {
            return Err(Rejection::Unauthorized);
        }
        let name = match (username, userhash) {
            (Some(u), _) => decode_username(u).map_err(|_| Rejection::BadRequest)?,
            (None, Some(h)) => self
                .credentials
                .by_userhash(h)
                .ok_or(Rejection::Unauthorized)?,
            (None, None) => return Err(Rejection::BadRequest),
        };
        let keys = self.credentials.get(name).ok_or(Rejection::Unauthorized)?;
        let key = match algorithm {
            ALGORITHM_SHA256 => Key::Sha256(keys.sha256.ok_or(Rejection::Unauthorized)?),
            _ => Key::Md5(keys.md5),
        };
        let (kind, verified) = if sha256 {
            (IntegrityKind::Sha256, verify_sha256(msg, key.as_bytes()))
        } else {
            (IntegrityKind::Sha1, verify_sha1(msg, key.as_bytes()))
        };
        match verified {
            Ok(()) => Ok(Authenticated {
                username: name.to_string(),
                signer: Signer { key, kind },
            }),
            Err(IntegrityError::BadLength) => Err(Rejection::BadRequest),
            Err(_) => Err(Rejection::Unauthorized),
        }
    }
}

#[cfg(test)]
mod tests;
