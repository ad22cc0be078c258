//! Long-term users, kept as keys only (RFC 8489 §9.2.2): never a password.

use std::collections::HashMap;

use sha2::{Digest, Sha256};

use crate::stun::integrity::{long_term_key_md5, long_term_key_sha256};

/// The keys of one user in one realm.
#[derive(Clone, PartialEq, Eq)]
pub struct UserKeys {
    /// MD5(username:realm:password), the HA1 key coturn stores.
    pub md5: [u8; 16],
    /// SHA-256(username:realm:password); absent when only an HA1 was given.
    pub sha256: Option<[u8; 32]>,
}

impl std::fmt::Debug for UserKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("UserKeys(..)")
    }
}

/// A static user definition could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UserSpecError {
    #[error("expected NAME:PASSWORD or NAME:0xHA1KEY")]
    /// The line has no `name:` part.
    NoColon,
    #[error("user name is empty")]
    /// The user name is empty.
    EmptyName,
    #[error("0x key must be 32 hex digits (MD5 of name:realm:password)")]
    /// The 0x key is not the 32 hex digits of an MD5 key.
    BadKey,
}

/// The users of one realm, by name and by USERHASH.
#[derive(Debug, Clone, Default)]
pub struct Credentials {
    realm: String,
    users: HashMap<String, UserKeys>,
    by_hash: HashMap<[u8; 32], String>,
}

/// USERHASH = SHA-256(username ":" realm) (RFC 8489 §14.4).
pub fn userhash(username: &str, realm: &str) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(username.as_bytes());
    h.update(b":");
    h.update(realm.as_bytes());
    h.finalize().into()
}

impl Credentials {
    /// An empty set for `realm`; keys are only valid in the realm they were made for.
    pub fn new(realm: &str) -> Self {
        Credentials {
            realm: realm.to_string(),
            ..Default::default()
        }
    }

    /// The users of `realm` with their keys; a later name replaces an
    /// earlier one.
    pub fn from_users(realm: &str, users: impl IntoIterator<Item = (String, UserKeys)>) -> Self {
        let mut c = Credentials::new(realm);
        for (name, keys) in users {
            c.insert(&name, keys);
        }
        c
    }

    /// The realm every key was made for.
    pub fn realm(&self) -> &str {
        &self.realm
    }

    /// Adds a user from coturn's `--user` syntax: `NAME:PASSWORD`, or
    /// `NAME:0xKEY` with the 32-hex-digit HA1 key. The password is hashed
    /// here and dropped.
    pub fn add_spec(&mut self, spec: &str) -> Result<(), UserSpecError> {
        let (name, secret) = spec.split_once(':').ok_or(UserSpecError::NoColon)?;
        if name.is_empty() {
            return Err(UserSpecError::EmptyName);
        }
        let keys = match secret.strip_prefix("0x") {
            Some(hex) => {
                // Hex digits only: the byte slicing below needs ASCII, and
                // `from_str_radix` alone would also take a sign ("+f").
                if hex.len() != 32 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
                    return Err(UserSpecError::BadKey);
                }
                let mut md5 = [0u8; 16];
                for (i, b) in md5.iter_mut().enumerate() {
                    *b = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16)
                        .map_err(|_| UserSpecError::BadKey)?;
                }
                UserKeys { md5, sha256: None }
            }
            None => UserKeys {
                md5: long_term_key_md5(name, &self.realm, secret),
                sha256: Some(long_term_key_sha256(name, &self.realm, secret)),
            },
        };
        self.insert(name, keys);
        Ok(())
    }

    /// Adds or replaces one user.
    pub fn insert(&mut self, name: &str, keys: UserKeys) {
        self.by_hash
            .insert(userhash(name, &self.realm), name.to_string());
        self.users.insert(name.to_string(), keys);
    }

    /// The keys of `name`, if it is a user.
    pub fn get(&self, name: &str) -> Option<&UserKeys> {
        self.users.get(name)
    }

    /// Resolves a USERHASH to its user name.
    pub fn by_userhash(&self, hash: &[u8]) -> Option<&str> {
        let hash: [u8; 32] = hash.try_into().ok()?;
        self.by_hash.get(&hash).map(String::as_str)
    }

    /// Every user with its keys, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &UserKeys)> {
        self.users.iter().map(|(name, keys)| (name.as_str(), keys))
    }

    /// Number of users.
    pub fn len(&self) -> usize {
        self.users.len()
    }

    /// No users at all.
    pub fn is_empty(&self) -> bool {
        self.users.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn password_and_ha1_specs_give_the_same_md5_key() {
        let mut c = Credentials::new("example.org");
        c.add_spec("alice:secret").unwrap();
        let key = c.get("alice").unwrap().md5;
        let hex: String = key.iter().map(|b| format!("{b:02x}")).collect();
        c.add_spec(&format!("bob:0x{hex}")).unwrap();
        assert_eq!(c.get("bob").unwrap().md5, key);
        assert!(c.get("bob").unwrap().sha256.is_none());
        assert_eq!(
            c.by_userhash(&userhash("alice", "example.org")),
            Some("alice")
        );
    }

    #[test]
    fn bad_specs_are_refused() {
        let mut c = Credentials::new("r");
        assert_eq!(c.add_spec("nocolon"), Err(UserSpecError::NoColon));
        assert_eq!(c.add_spec(":pw"), Err(UserSpecError::EmptyName));
        assert_eq!(c.add_spec("u:0x1234"), Err(UserSpecError::BadKey));
        assert_eq!(
            c.add_spec(&format!("u:0x{}", "zz".repeat(16))),
            Err(UserSpecError::BadKey)
        );
        assert!(c.is_empty());
    }

    /// A 32-byte key with multi-byte characters panicked on a char
    /// boundary (from a config file, `--user`, anywhere a spec is read);
    /// found while writing the `config` fuzz target, which catches it.
    #[test]
    fn non_ascii_or_signed_hex_keys_are_refused_without_a_panic() {
        let mut c = Credentials::new("r");
        let spec = format!("u:0xa{}a", "\u{e9}".repeat(15));
        assert_eq!(spec.len(), 36);
        assert_eq!(c.add_spec(&spec), Err(UserSpecError::BadKey));
        assert_eq!(
            c.add_spec(&format!("u:0x{}", "+f".repeat(16))),
            Err(UserSpecError::BadKey)
        );
        assert!(c.is_empty());
    }

    #[test]
    fn keys_never_show_in_debug_output() {
        let mut c = Credentials::new("r");
        c.add_spec("alice:hunter2").unwrap();
        let shown = format!("{c:?}");
        assert!(!shown.contains("hunter2"));
        assert!(shown.contains("UserKeys(..)"));
    }
}
