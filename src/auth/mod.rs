//! Authentication of TURN requests, sans-IO: one room per credential kind.
//!
//! * [`long_term`]: long-term users, by USERNAME or USERHASH, checked with
//!   their HA1 key; [`credentials`] keeps them as keys, never passwords.
//! * [`rest`]: REST ephemeral credentials from shared secrets: parsing,
//!   expiry, minting and verification.
//! * [`oauth`]: RFC 7635 access tokens and the session key they leave.
//! * [`directory`]: the snapshot of all of these that requests are checked
//!   against, swapped whole when the store changes.
//! * [`clock`]: the Unix clock the shell hands in, for REST and OAuth expiry.
//! * [`nonce`]: stateless nonces bound to the client IP and a time.
//! * [`rate`]: the per-source budget for 401 and 438 answers.
//! * [`realms`]: which realm (tenant) a request is served in.
//!
//! [`Authenticator::authenticate`] runs the server side of the long-term
//! credential mechanism (RFC 8489 §9.2.4), including the password algorithm
//! negotiation, then hands the request to the credential kind it names.

#![warn(missing_docs, unreachable_pub, missing_debug_implementations)]

pub(crate) mod clock;
pub mod credentials;
pub(crate) mod directory;
pub(crate) mod long_term;
pub mod nonce;
pub mod oauth;
pub(crate) mod rate;
pub mod realms;
pub mod rest;

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Instant;

use crate::stun::attributes::{decode_text, AttributeType, MAX_TEXT_CHARS};
use crate::stun::integrity::{verify_sha1, verify_sha256, IntegrityError};
use crate::stun::{Message, MessageBuilder, Method};

pub use clock::UnixClock;
pub use credentials::{Credentials, UserKeys};
pub use directory::{Directory, Quota};
pub use nonce::{NonceCheck, NonceIssuer};
pub use realms::{RealmMap, Tenant};
pub use rest::ExpiryPolicy;

/// PASSWORD-ALGORITHM values (RFC 8489 §18.5).
pub const ALGORITHM_MD5: u16 = 0x0001;
/// SHA-256 (RFC 8489 §18.5).
pub const ALGORITHM_SHA256: u16 = 0x0002;

/// The PASSWORD-ALGORITHMS value this server offers: SHA-256 first, then MD5,
/// each with empty parameters.
pub const OFFERED_ALGORITHMS: [u8; 8] = [0x00, 0x02, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00];

/// Which integrity attribute signs a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IntegrityKind {
    /// MESSAGE-INTEGRITY (HMAC-SHA1).
    Sha1,
    /// MESSAGE-INTEGRITY-SHA256.
    Sha256,
}

/// The key a request was verified with; its responses are signed with it.
#[derive(Clone, PartialEq, Eq)]
pub enum Key {
    /// The MD5 long-term key (RFC 8489 §9.2.2).
    Md5([u8; 16]),
    /// The SHA-256 long-term key (RFC 8489 §9.2.2).
    Sha256([u8; 32]),
    /// An OAuth mac key, used as is (its first 16 bytes, as coturn does,
    /// or all 20).
    Mac {
        /// The key bytes, `len` of them used.
        bytes: [u8; 20],
        /// 16 or 20.
        len: u8,
    },
}

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Key(..)")
    }
}

impl Key {
    /// The key bytes the HMAC uses.
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
    /// The key the request was verified with.
    pub key: Key,
    /// The integrity attribute the request used.
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
    /// USERNAME as the client sent it (or as USERHASH resolved).
    pub username: String,
    /// Signs the responses.
    pub signer: Signer,
    /// The kind of credential, with its expiry.
    pub origin: Origin,
    /// The realm it was verified in.
    pub realm: Arc<str>,
}

/// An OAuth allocation's key, for requests its client signs without a
/// token: the mac key and the expiry of the token that delivered it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OAuthSession {
    /// Signs the client's later requests and our answers.
    pub signer: Signer,
    /// Unix second the token expires; `None`: no lifetime.
    pub expires: Option<u64>,
}

/// Which kind of credential a request was verified with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// A long-term user (static or stored).
    LongTerm,
    /// A REST username, valid until this Unix second.
    Rest {
        /// Unix second.
        expires: u64,
    },
    /// An OAuth access token (USERNAME is its key id), valid until this
    /// Unix second if it has a lifetime.
    OAuth {
        /// Unix second; `None`: no lifetime.
        expires: Option<u64>,
    },
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
    /// The default realm, and the tenant realms with what selects them.
    realms: RealmMap,
    /// Each realm's snapshot, by name.
    directories: RwLock<Arc<HashMap<Arc<str>, Arc<Directory>>>>,
    /// Bumped by every [`Self::replace`]: workers look for revoked
    /// owners of their allocations when it moves.
    generation: AtomicU64,
    nonces: NonceIssuer,
    rest_separator: char,
    /// The server name of RFC 7635 (THIRD-PARTY-AUTHORIZATION and the
    /// token's associated data); `None` = OAuth off.
    oauth: Option<String>,
    /// REST and OAuth expiry are wall-clock times, while the core only
    /// sees injected instants.
    clock: UnixClock,
    /// The self-test page's secret (issue 20): drawn per process, never
    /// stored, and good for self-test usernames only.
    selftest: Option<rest::Secret>,
}

// By hand: the nonce secret stays out of logs (NonceIssuer redacts it).
impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authenticator")
            .field("realms", &self.realms)
            .field("nonces", &self.nonces)
            .field("rest_separator", &self.rest_separator)
            .field("oauth", &self.oauth)
            .finish_non_exhaustive()
    }
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
    /// off. Its Unix clock takes `nonces`' epoch as Unix second 0 until the
    /// shell hands in the real one ([`Self::with_unix_clock`]): the core
    /// never reads the OS clock.
    pub fn new(directory: Directory, nonces: NonceIssuer) -> Self {
        let realms = RealmMap::new(directory.realm());
        let directories = HashMap::from([(realms.default_realm().clone(), Arc::new(directory))]);
        Authenticator {
            realms,
            directories: RwLock::new(Arc::new(directories)),
            generation: AtomicU64::new(0),
            clock: UnixClock::new(nonces.epoch(), 0),
            nonces,
            rest_separator: ':',
            oauth: None,
            selftest: None,
        }
    }

    /// Also serves these tenant realms; until [`Self::replace`] gives
    /// them a snapshot they have no credentials.
    pub fn with_realms(mut self, tenants: Vec<Tenant>) -> Self {
        self.realms = self.realms.with_tenants(tenants);
        let mut dirs = HashMap::new();
        for name in self.realms.names() {
            let dir = self
                .directory_in(name)
                .unwrap_or_else(|| Arc::new(Directory::new(Credentials::new(name))));
            dirs.insert(name.clone(), dir);
        }
        self.directories = RwLock::new(Arc::new(dirs));
        self
    }

    /// The character between expiry and user name in REST usernames (`:` by default).
    pub fn with_rest_separator(mut self, separator: char) -> Self {
        self.rest_separator = separator;
        self
    }

    /// The character between a REST username's expiry and its user.
    pub fn rest_separator(&self) -> char {
        self.rest_separator
    }

    /// Accepts self-test credentials (issue 20) signed with `secret`.
    pub fn with_selftest_secret(mut self, secret: rest::Secret) -> Self {
        self.selftest = Some(secret);
        self
    }

    /// Whether `username` is a self-test credential's (whatever signed
    /// it): one allocation at a time, living no longer than the credential.
    pub fn is_selftest(&self, username: &str) -> bool {
        rest::is_selftest(username, self.rest_separator)
    }

    /// A self-test credential for user `selftest-<id>`, valid `ttl` seconds
    /// from Unix second `unix_now`: the username and its password. `None`
    /// when self-tests are off (no secret).
    pub fn mint_selftest(&self, id: &str, ttl: u64, unix_now: u64) -> Option<(String, String)> {
        let secret = self.selftest.as_ref()?;
        let user = format!("{}{id}", rest::SELFTEST_PREFIX);
        Some(rest::mint(
            &secret.0,
            &user,
            ttl,
            self.rest_separator,
            unix_now,
        ))
    }

    /// Turns OAuth on with this server name.
    pub fn with_oauth(mut self, server_name: &str) -> Self {
        self.oauth = Some(server_name.to_string());
        self
    }

    /// Says which Unix second the instant `at` was.
    pub fn with_clock(self, at: Instant, unix: u64) -> Self {
        self.with_unix_clock(UnixClock::new(at, unix))
    }

    /// Takes the Unix clock the shell read.
    pub fn with_unix_clock(mut self, clock: UnixClock) -> Self {
        self.clock = clock;
        self
    }

    /// The Unix second at `now`.
    pub fn unix_time(&self, now: Instant) -> u64 {
        self.clock.unix_at(now)
    }

    /// The default realm: challenges name it unless a request selects
    /// a tenant realm.
    pub fn realm(&self) -> &str {
        self.realms.default_realm()
    }

    /// The realms served and what selects them.
    pub fn realms(&self) -> &RealmMap {
        &self.realms
    }

    /// Issues and checks this server's nonces.
    pub fn nonces(&self) -> &NonceIssuer {
        &self.nonces
    }

    /// RFC 7635 server name; `None` when OAuth is off.
    pub fn oauth_server_name(&self) -> Option<&str> {
        self.oauth.as_deref()
    }

    /// The default realm's current snapshot.
    pub fn directory(&self) -> Arc<Directory> {
        self.directory_in(self.realm())
            .expect("the default realm always has a snapshot")
    }

    /// The current snapshot of `realm`, if it is served.
    pub fn directory_in(&self, realm: &str) -> Option<Arc<Directory>> {
        let dirs = self
            .directories
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        dirs.get(realm).cloned()
    }

    /// Swaps in new snapshots, each for the realm it names; a realm not
    /// served is ignored.
    pub fn replace_all(&self, directories: impl IntoIterator<Item = Directory>) {
        let mut guard = self.directories.write().unwrap_or_else(|e| e.into_inner());
        let mut dirs = (**guard).clone();
        for d in directories {
            let Some(name) = self.realms.names().find(|n| ***n == *d.realm()) else {
                debug_assert!(false, "snapshot of a realm not served: {}", d.realm());
                continue;
            };
            dirs.insert(name.clone(), Arc::new(d));
        }
        *guard = Arc::new(dirs);
        self.generation.fetch_add(1, Ordering::Release);
    }

    /// Swaps in a new snapshot for the realm it names.
    pub fn replace(&self, directory: Directory) {
        self.replace_all([directory]);
    }

    /// How many snapshots have been swapped in: a worker that saw another
    /// number looks again at whose allocations it holds.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Whether the owner of an authenticated request (its USERNAME: a
    /// REST username, a user, an OAuth kid) is revoked at `now`.
    pub fn revoked(&self, now: Instant, auth: &Authenticated) -> bool {
        self.directory_in(&auth.realm)
            .is_some_and(|d| d.is_revoked(&auth.username, self.unix_time(now), self.rest_separator))
    }

    /// Writes REALM, NONCE and (when advertised) PASSWORD-ALGORITHMS into a
    /// 401 or 438 answer, in the default realm.
    pub fn add_challenge(&self, now: Instant, ip: IpAddr, b: &mut MessageBuilder<'_>) {
        self.add_challenge_in(self.realm(), now, ip, b)
    }

    /// [`Self::add_challenge`] naming `realm`, the one the request was
    /// served in.
    pub fn add_challenge_in(
        &self,
        realm: &str,
        now: Instant,
        ip: IpAddr,
        b: &mut MessageBuilder<'_>,
    ) {
        b.add_realm(realm);
        b.add_nonce(&self.nonces.issue(now, ip, realm));
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
        let realm = self.realms.default_realm().clone();
        self.authenticate_in(&realm, now, msg, ip, session)
    }

    /// [`Self::authenticate`] in `realm`, the one the request was served
    /// in ([`RealmMap::select`]): its REALM must name it and its users,
    /// secrets and keys are the only ones tried.
    pub fn authenticate_in(
        &self,
        served: &Arc<str>,
        now: Instant,
        msg: &Message<'_>,
        ip: IpAddr,
        session: Option<&OAuthSession>,
    ) -> Result<Authenticated, Rejection> {
        let mut a = self.verify_in(served, now, msg, ip, session)?;
        a.realm = served.clone();
        Ok(a)
    }

    fn verify_in(
        &self,
        served: &str,
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
        let NonceCheck::Valid { features } = self.nonces.check(now, ip, served, nonce) else {
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

        // A user of one realm never authenticates in another: the REALM
        // must be the one the request was served in.
        if realm != served {
            return Err(Rejection::Unauthorized);
        }
        let Some(dir) = self.directory_in(served) else {
            return Err(Rejection::Unauthorized);
        };
        if let Some(server_name) = &self.oauth {
            if let Some(token) = msg.get(AttributeType::ACCESS_TOKEN) {
                let unix = self.unix_time(now);
                return oauth::verify_token(msg, sha256, &dir, server_name, username, token, unix);
            }
            if let (Some(s), Some(u)) = (session, username) {
                if let Some(a) = oauth::verify_session(msg, sha256, &dir, s, u)? {
                    return Ok(a);
                }
            }
        }
        let name = long_term::name(&dir.users, username, userhash)?;
        match dir.users.get(name) {
            Some(keys) => long_term::verify(msg, sha256, name, keys, algorithm),
            None => rest::verify(
                msg,
                sha256,
                &dir.secrets,
                self.selftest.as_ref(),
                name,
                served,
                self.rest_separator,
                algorithm,
            ),
        }
    }

    /// Whether an authenticated request `method` is refused at `now` because
    /// its credential expired: a REST username by `policy` (see
    /// [`rest::expired`]), an OAuth token for every request.
    pub fn expired(
        &self,
        now: Instant,
        method: Method,
        origin: &Origin,
        policy: ExpiryPolicy,
    ) -> bool {
        let unix = self.unix_time(now);
        match *origin {
            Origin::LongTerm => false,
            Origin::Rest { expires } => rest::expired(policy, method, expires, unix),
            Origin::OAuth { expires } => oauth::expired(expires, unix),
        }
    }
}

/// The signer of the first key the request's integrity attribute verifies
/// with. Each check is constant-time; a length that cannot be right is a
/// 400, no key at all a 401.
fn signer_of(
    msg: &Message<'_>,
    sha256: bool,
    keys: impl IntoIterator<Item = Key>,
) -> Result<Signer, Rejection> {
    for key in keys {
        let checked = if sha256 {
            verify_sha256(msg, key.as_bytes()).map(|_| IntegrityKind::Sha256)
        } else {
            verify_sha1(msg, key.as_bytes()).map(|_| IntegrityKind::Sha1)
        };
        match checked {
            Ok(kind) => return Ok(Signer { key, kind }),
            Err(IntegrityError::BadLength) => return Err(Rejection::BadRequest),
            Err(_) => {}
        }
    }
    Err(Rejection::Unauthorized)
}

#[cfg(test)]
mod tests;
