//! Authentication of TURN requests, sans-IO.
//!
//! * [`credentials`]: long-term users as keys (HA1), never passwords.
//! * [`rest`]: REST ephemeral credentials from shared secrets.
//! * [`oauth`]: RFC 7635 access tokens.
//! * [`directory`]: the snapshot of all of these that requests are checked
//!   against, swapped whole when the store changes.
//! * [`nonce`]: stateless nonces bound to the client IP and a time.
//! * [`rate`]: the per-source budget for 401 and 438 answers.
//!
//! [`Authenticator::authenticate`] runs the server side of the long-term
//! credential mechanism (RFC 8489 §9.2.4) including the password algorithm
//! negotiation and USERHASH, then finds the key: a long-term user, a REST
//! username under one of the secrets, or an OAuth token.

pub mod credentials;
pub mod directory;
pub mod nonce;
pub mod oauth;
pub mod rate;
pub mod rest;

use std::net::IpAddr;
use std::sync::{Arc, RwLock};
use std::time::Instant;

use crate::stun::attributes::{decode_text, decode_username, AttributeType, MAX_TEXT_CHARS};
use crate::stun::integrity::{
    long_term_key_md5, long_term_key_sha256, verify_sha1, verify_sha256, IntegrityError,
};
use crate::stun::{Message, MessageBuilder};

pub use credentials::{Credentials, UserKeys};
pub use directory::{Directory, Quota};
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
    /// An OAuth mac key, used as is (its first 16 bytes, as coturn does,
    /// or all 20).
    Mac {
        bytes: [u8; 20],
        len: u8,
    },
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
            Key::Mac { bytes, len } => &bytes[..*len as usize],
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
    pub origin: Origin,
}

/// An OAuth allocation's key, for requests its client signs without a
/// token: the mac key and the expiry of the token that delivered it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OAuthSession {
    pub signer: Signer,
    pub expires: Option<u64>,
}

/// Which kind of credential a request was verified with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// A long-term user (static or stored).
    LongTerm,
    /// A REST username, valid until this Unix second.
    Rest { expires: u64 },
    /// An OAuth access token (USERNAME is its key id), valid until this
    /// Unix second if it has a lifetime.
    OAuth { expires: Option<u64> },
}

impl Origin {
    /// When the credential stops being valid, if it does.
    pub fn expires(&self) -> Option<u64> {
        match *self {
            Origin::LongTerm => None,
            Origin::Rest { expires } => Some(expires),
            Origin::OAuth { expires } => expires,
        }
    }
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
    realm: String,
    directory: RwLock<Arc<Directory>>,
    nonces: NonceIssuer,
    rest_separator: char,
    /// The server name of RFC 7635 (THIRD-PARTY-AUTHORIZATION and the
    /// token's associated data); `None` = OAuth off.
    oauth: Option<String>,
    /// An instant and the Unix second it was: REST and OAuth expiry are
    /// wall-clock times, while the core only sees injected instants.
    clock: (Instant, u64),
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
    /// An authenticator for the directory's realm; REST separator `:`, OAuth
    /// off, and `nonces`' epoch taken as the Unix time now.
    pub fn new(directory: Directory, nonces: NonceIssuer) -> Self {
        let unix = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        Authenticator {
            realm: directory.realm().to_string(),
            directory: RwLock::new(Arc::new(directory)),
            clock: (nonces.epoch(), unix),
            nonces,
            rest_separator: ':',
            oauth: None,
        }
    }

    pub fn with_rest_separator(mut self, separator: char) -> Self {
        self.rest_separator = separator;
        self
    }

    /// Turns OAuth on with this server name.
    pub fn with_oauth(mut self, server_name: &str) -> Self {
        self.oauth = Some(server_name.to_string());
        self
    }

    /// Says which Unix second the instant `at` was.
    pub fn with_clock(mut self, at: Instant, unix: u64) -> Self {
        self.clock = (at, unix);
        self
    }

    /// The Unix second at `now`.
    pub fn unix_time(&self, now: Instant) -> u64 {
        let (at, unix) = self.clock;
        match now.checked_duration_since(at) {
            Some(d) => unix + d.as_secs(),
            None => unix.saturating_sub(at.duration_since(now).as_secs()),
        }
    }

    pub fn realm(&self) -> &str {
        &self.realm
    }

    pub fn nonces(&self) -> &NonceIssuer {
        &self.nonces
    }

    pub fn oauth_server_name(&self) -> Option<&str> {
        self.oauth.as_deref()
    }

    /// The current snapshot.
    pub fn directory(&self) -> Arc<Directory> {
        self.directory
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Swaps in a new snapshot (its realm must be this server's).
    pub fn replace(&self, directory: Directory) {
        debug_assert_eq!(directory.realm(), self.realm);
        *self.directory.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(directory);
    }

    /// Writes REALM, NONCE and (when advertised) PASSWORD-ALGORITHMS into a
    /// 401 or 438 answer.
    pub fn add_challenge(&self, now: Instant, ip: IpAddr, b: &mut MessageBuilder<'_>) {
        b.add_realm(self.realm());
        b.add_nonce(&self.nonces.issue(now, ip));
        if self.nonces.features() & nonce::FEATURE_PASSWORD_ALGORITHMS != 0 {
            b.add(AttributeType::PASSWORD_ALGORITHMS, &OFFERED_ALGORITHMS);
        }
        // RFC 7635 §4: the server name tells the client to fetch a token.
        if let Some(name) = &self.oauth {
            b.add(AttributeType::THIRD_PARTY_AUTHORIZATION, name.as_bytes());
        }
    }

    /// RFC 8489 §9.2.4 for one request from `ip`. `session` is the client's
    /// OAuth allocation, if it has one: coturn's client signs requests
    /// without a token with the last token's mac key.
    pub fn authenticate(
        &self,
        now: Instant,
        msg: &Message<'_>,
        ip: IpAddr,
        session: Option<&OAuthSession>,
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
        let dir = self.directory();
        if self.oauth.is_some() {
            if let Some(token) = msg.get(AttributeType::ACCESS_TOKEN) {
                return self.oauth_token(now, msg, &dir, username, token, sha256);
            }
            if let (Some(s), Some(u)) = (session, username) {
                let kid = decode_username(u).map_err(|_| Rejection::BadRequest)?;
                if matches!(s.signer.key, Key::Mac { .. })
                    && !sha256
                    && verify_sha1(msg, s.signer.key.as_bytes()).is_ok()
                {
                    // F9: the mac key is only as good as its token: the key
                    // id must still be configured, and the token's expiry
                    // travels with the answer (the caller refuses it once
                    // passed, as for a request carrying the token).
                    if !dir.oauth_keys.contains_key(kid) {
                        return Err(Rejection::Unauthorized);
                    }
                    return Ok(Authenticated {
                        username: kid.to_string(),
                        signer: s.signer.clone(),
                        origin: Origin::OAuth { expires: s.expires },
                    });
                }
            }
        }
        let name = match (username, userhash) {
            (Some(u), _) => decode_username(u).map_err(|_| Rejection::BadRequest)?,
            (None, Some(h)) => dir.users.by_userhash(h).ok_or(Rejection::Unauthorized)?,
            (None, None) => return Err(Rejection::BadRequest),
        };
        let (key, origin) = match dir.users.get(name) {
            Some(keys) => {
                let key = match algorithm {
                    ALGORITHM_SHA256 => Key::Sha256(keys.sha256.ok_or(Rejection::Unauthorized)?),
                    _ => Key::Md5(keys.md5),
                };
                (Some(key), Origin::LongTerm)
            }
            None => {
                let expires = rest::expiry(name, self.rest_separator)
                    .filter(|_| !dir.secrets.is_empty())
                    .ok_or(Rejection::Unauthorized)?;
                (None, Origin::Rest { expires })
            }
        };
        let verify = |key: &Key| -> Result<IntegrityKind, IntegrityError> {
            if sha256 {
                verify_sha256(msg, key.as_bytes()).map(|_| IntegrityKind::Sha256)
            } else {
                verify_sha1(msg, key.as_bytes()).map(|_| IntegrityKind::Sha1)
            }
        };
        let candidates: Vec<Key> = match key {
            Some(k) => vec![k],
            // Every live secret is tried (rotation): each check is
            // constant-time, and the count of secrets is not a secret.
            None => dir
                .secrets
                .iter()
                .map(|secret| {
                    let password = rest::password(&secret.0, name);
                    match algorithm {
                        ALGORITHM_SHA256 => {
                            Key::Sha256(long_term_key_sha256(name, &self.realm, &password))
                        }
                        _ => Key::Md5(long_term_key_md5(name, &self.realm, &password)),
                    }
                })
                .collect(),
        };
        for key in candidates {
            match verify(&key) {
                Ok(kind) => {
                    return Ok(Authenticated {
                        username: name.to_string(),
                        signer: Signer { key, kind },
                        origin,
                    })
                }
                Err(IntegrityError::BadLength) => return Err(Rejection::BadRequest),
                Err(_) => {}
            }
        }
        Err(Rejection::Unauthorized)
    }

    /// RFC 7635 §6: USERNAME names the key, the token carries the mac key
    /// that MESSAGE-INTEGRITY must verify with.
    fn oauth_token(
        &self,
        now: Instant,
        msg: &Message<'_>,
        dir: &Directory,
        username: Option<&[u8]>,
        token: &[u8],
        sha256: bool,
    ) -> Result<Authenticated, Rejection> {
        let kid = decode_username(username.ok_or(Rejection::BadRequest)?)
            .map_err(|_| Rejection::BadRequest)?;
        let shared = dir.oauth_keys.get(kid).ok_or(Rejection::Unauthorized)?;
        let server_name = self.oauth.as_deref().unwrap_or(&self.realm);
        let t = oauth::decode(shared, server_name, token, self.unix_time(now))
            .map_err(|_| Rejection::Unauthorized)?;
        if sha256 {
            return Err(Rejection::Unauthorized);
        }
        // coturn signs with the first 16 bytes of the mac key; RFC 7635
        // means all of it. Either verifies; answers use the one that did.
        for len in [16u8, oauth::MAC_KEY_LEN as u8] {
            let key = Key::Mac {
                bytes: t.mac_key,
                len,
            };
            match verify_sha1(msg, key.as_bytes()) {
                Ok(()) => {
                    return Ok(Authenticated {
                        username: kid.to_string(),
                        signer: Signer {
                            key,
                            kind: IntegrityKind::Sha1,
                        },
                        origin: Origin::OAuth {
                            expires: t.expires(shared),
                        },
                    })
                }
                Err(IntegrityError::BadLength) => return Err(Rejection::BadRequest),
                Err(_) => {}
            }
        }
        Err(Rejection::Unauthorized)
    }
}

#[cfg(test)]
mod tests;
