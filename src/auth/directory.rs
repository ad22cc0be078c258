//! The credential snapshot every worker reads: users, REST secrets, OAuth
//! keys and quotas. The shell builds a new one from the configuration and
//! the store whenever either changes and swaps it in whole; requests never
//! wait for the store.

use std::collections::HashMap;

use super::credentials::Credentials;
use super::oauth::OAuthKey;
use super::rest::{self, Secret};

/// Limits for a user or a realm; `None` = no limit set here.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Quota {
    /// Most allocations at once; `None`: the global default.
    pub allocations: Option<u32>,
    /// Bits per second per allocation and direction.
    pub bps: Option<u64>,
}

#[derive(Debug, Clone, Default)]
/// Everything a credential check looks up: users, their quotas, REST secrets and OAuth keys. Swapped whole on reload.
pub struct Directory {
    /// Long-term users of the server's realm (static and stored).
    pub users: Credentials,
    /// REST shared secrets, all accepted (rotation).
    pub secrets: Vec<Secret>,
    /// OAuth keys by key id.
    pub oauth_keys: HashMap<String, OAuthKey>,
    /// Per-user quotas, by user name.
    pub user_quotas: HashMap<String, Quota>,
    /// The quota of the server's realm.
    pub realm_quota: Quota,
    /// Names of the users that came from the configuration (the rest
    /// are stored), for usage records.
    pub static_users: std::collections::HashSet<String>,
    /// Revoked names (a REST username, a user, an OAuth kid) and the Unix
    /// second each revocation ends (`None`: until removed). Only the
    /// store holds revocations.
    pub revoked: HashMap<String, Option<u64>>,
}

impl Directory {
    /// A directory of `users` alone (no quotas, secrets or keys).
    pub fn new(users: Credentials) -> Self {
        Directory {
            users,
            ..Default::default()
        }
    }

    /// The realm of the users.
    pub fn realm(&self) -> &str {
        self.users.realm()
    }

    /// The quota of `user` (the default when none is set).
    pub fn quota_of(&self, user: &str) -> Quota {
        self.user_quotas.get(user).copied().unwrap_or_default()
    }

    /// The snapshot requests are checked against, from the configuration's
    /// credentials (`statics`) and the store's: a static user wins a name
    /// clash, static secrets come first, and so do a static OAuth key or
    /// quota over a stored one of the same name. The realm is the static
    /// one's.
    pub fn merge(statics: Directory, stored: Directory) -> Directory {
        let static_users = statics.users.iter().map(|(n, _)| n.to_string()).collect();
        let mut users = Credentials::new(statics.realm());
        for (name, keys) in stored.users.iter().chain(statics.users.iter()) {
            users.insert(name, keys.clone());
        }
        let mut secrets = statics.secrets;
        secrets.extend(stored.secrets);
        let mut oauth_keys = stored.oauth_keys;
        oauth_keys.extend(statics.oauth_keys);
        let mut user_quotas = stored.user_quotas;
        user_quotas.extend(statics.user_quotas);
        let realm_quota = Quota {
            allocations: statics
                .realm_quota
                .allocations
                .or(stored.realm_quota.allocations),
            bps: statics.realm_quota.bps.or(stored.realm_quota.bps),
        };
        Directory {
            users,
            secrets,
            oauth_keys,
            user_quotas,
            realm_quota,
            static_users,
            revoked: stored.revoked,
        }
    }

    /// Whether `user` came from the configuration.
    pub fn is_static(&self, user: &str) -> bool {
        self.static_users.contains(user)
    }

    /// Whether `name` (as an allocation or a request names its owner:
    /// the REST username, the user, the OAuth kid) is revoked at Unix
    /// second `unix`. A REST username is also revoked with the user it
    /// names (`alice` revokes `EXPIRY:alice`), as an operator who bans a
    /// user means; a REST username alone revokes only itself.
    pub fn is_revoked(&self, name: &str, unix: u64, separator: char) -> bool {
        let one = |name: &str| match self.revoked.get(name) {
            Some(Some(until)) => unix < *until,
            Some(None) => true,
            None => false,
        };
        one(name) || rest::user_of(name, separator).is_some_and(one)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::oauth::Alg;

    fn users(specs: &[&str]) -> Credentials {
        let mut c = Credentials::new("example.org");
        for s in specs {
            c.add_spec(s).unwrap();
        }
        c
    }

    fn key(lifetime: u32) -> OAuthKey {
        OAuthKey::new(Alg::A128Gcm, &[7; 16], lifetime).unwrap()
    }

    #[test]
    fn static_users_and_secrets_win_over_stored_ones() {
        let mut statics = Directory::new(users(&["alice:from-config"]));
        statics.secrets = vec![Secret(b"static".to_vec())];
        let from_store = users(&["alice:from-store", "bob:stored"]);
        let listed = from_store.iter().map(|(n, k)| (n.to_string(), k.clone()));
        let mut stored = Directory::new(Credentials::from_users("example.org", listed));
        stored.secrets = vec![Secret(b"stored".to_vec())];
        stored.oauth_keys.insert("kid".into(), key(60));
        stored.user_quotas.insert(
            "bob".into(),
            Quota {
                allocations: Some(2),
                bps: None,
            },
        );
        stored.realm_quota = Quota {
            allocations: Some(9),
            bps: Some(1000),
        };
        let want_alice = users(&["alice:from-config"]).get("alice").cloned();

        let d = Directory::merge(statics, stored);
        assert_eq!(d.realm(), "example.org");
        assert_eq!(d.users.len(), 2);
        assert_eq!(d.users.get("alice").cloned(), want_alice);
        assert!(d.users.get("bob").is_some());
        // USERHASH finds the merged users too.
        let hash = crate::auth::credentials::userhash("bob", "example.org");
        assert_eq!(d.users.by_userhash(&hash), Some("bob"));
        assert_eq!(
            d.secrets,
            vec![Secret(b"static".to_vec()), Secret(b"stored".to_vec())]
        );
        // What only the store has is kept.
        assert_eq!(d.oauth_keys.get("kid"), Some(&key(60)));
        assert_eq!(d.quota_of("bob").allocations, Some(2));
        assert_eq!(d.realm_quota.bps, Some(1000));
        assert_eq!(d.realm_quota.allocations, Some(9));
    }

    #[test]
    fn static_oauth_keys_and_quotas_win_over_stored_ones() {
        let mut statics = Directory::new(users(&[]));
        statics.oauth_keys.insert("kid".into(), key(10));
        statics.user_quotas.insert(
            "bob".into(),
            Quota {
                allocations: Some(1),
                bps: None,
            },
        );
        statics.realm_quota.bps = Some(5);
        let mut stored = Directory::new(users(&[]));
        stored.oauth_keys.insert("kid".into(), key(20));
        stored.user_quotas.insert(
            "bob".into(),
            Quota {
                allocations: Some(3),
                bps: Some(7),
            },
        );
        stored.realm_quota = Quota {
            allocations: Some(4),
            bps: Some(6),
        };
        let d = Directory::merge(statics, stored);
        assert_eq!(d.oauth_keys.get("kid"), Some(&key(10)));
        assert_eq!(
            d.quota_of("bob"),
            Quota {
                allocations: Some(1),
                bps: None
            }
        );
        assert_eq!(
            d.realm_quota,
            Quota {
                allocations: Some(4),
                bps: Some(5)
            }
        );
    }
}
