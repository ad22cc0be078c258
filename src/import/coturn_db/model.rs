//! coturn's user database in one shape, whichever backend it came from:
//! the rows of `/usr/share/coturn/schema.sql` (Redis keys map onto them as
//! `schema.userdb.redis` documents). Values are kept as coturn wrote them;
//! [`super::plan`] decides what they mean for turnpike.

/// A `turnusers_lt` row: the key is hex MD5(name:realm:password).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct User {
    pub realm: String,
    pub name: String,
    pub hmackey: String,
}

/// A `turn_secret` row (REST shared secret). The value stays out of `Debug`.
#[derive(Clone, PartialEq, Eq)]
pub(super) struct Secret {
    pub realm: String,
    pub value: String,
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Secret({:?}, ..)", self.realm)
    }
}

/// An `oauth_key` row. The key stays out of `Debug`.
#[derive(Clone, PartialEq, Eq)]
pub(super) struct OAuthKey {
    pub kid: String,
    /// Base64.
    pub ikm_key: String,
    /// Unix seconds the key's lifetime starts at.
    pub timestamp: i64,
    /// Seconds; 0: the key never expires.
    pub lifetime: i64,
    /// Empty means coturn's default, A256GCM.
    pub as_rs_alg: String,
    /// A realm the key's users belong to (coturn's multi-realm); may be empty.
    pub realm: String,
}

impl std::fmt::Debug for OAuthKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OAuthKey")
            .field("kid", &self.kid)
            .field("timestamp", &self.timestamp)
            .field("lifetime", &self.lifetime)
            .field("as_rs_alg", &self.as_rs_alg)
            .field("realm", &self.realm)
            .finish_non_exhaustive()
    }
}

/// A `turn_realm_option` row: `max-bps`, `total-quota` or `user-quota`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct RealmOption {
    pub realm: String,
    pub opt: String,
    pub value: String,
}

/// An `allowed_peer_ip` or `denied_peer_ip` row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct PeerRange {
    pub realm: String,
    pub range: String,
}

/// A `turn_origin_to_realm` row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Origin {
    pub origin: String,
    pub realm: String,
}

/// An `admin_user` row (coturn's web admin); the password is not read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct AdminUser {
    pub name: String,
    pub realm: String,
}

/// Everything read from one coturn database.
#[derive(Debug, Default, Clone)]
pub(super) struct CoturnDb {
    pub users: Vec<User>,
    pub secrets: Vec<Secret>,
    pub oauth_keys: Vec<OAuthKey>,
    pub realm_options: Vec<RealmOption>,
    pub allowed_peers: Vec<PeerRange>,
    pub denied_peers: Vec<PeerRange>,
    pub origins: Vec<Origin>,
    pub admin_users: Vec<AdminUser>,
    /// Tables this database lacks (an older coturn schema): nothing came
    /// from them.
    pub absent: Vec<&'static str>,
}
