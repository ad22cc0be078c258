//! The credential snapshot every worker reads: users, REST secrets, OAuth
//! keys and quotas. The shell builds a new one from the configuration and
//! the store whenever either changes and swaps it in whole; requests never
//! wait for the store.

use std::collections::HashMap;

use super::credentials::Credentials;
use super::oauth::OAuthKey;
use super::rest::Secret;

/// Limits for a user or a realm; `None` = no limit set here.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Quota {
    pub allocations: Option<u32>,
    /// Bits per second per allocation and direction.
    pub bps: Option<u64>,
}

#[derive(Debug, Clone, Default)]
pub struct Directory {
    /// Long-term users of the server's realm (static and stored).
    pub users: Credentials,
    /// REST shared secrets, all accepted (rotation).
    pub secrets: Vec<Secret>,
    /// OAuth keys by key id.
    pub oauth_keys: HashMap<String, OAuthKey>,
    pub user_quotas: HashMap<String, Quota>,
    /// The quota of the server's realm.
    pub realm_quota: Quota,
}

impl Directory {
    pub fn new(users: Credentials) -> Self {
        Directory {
            users,
            ..Default::default()
        }
    }

    pub fn realm(&self) -> &str {
        self.users.realm()
    }

    pub fn quota_of(&self, user: &str) -> Quota {
        self.user_quotas.get(user).copied().unwrap_or_default()
    }
}
