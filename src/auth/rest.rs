//! REST ephemeral credentials (draft-uberti-behave-turn-rest-00), as coturn
//! reads them: the username carries its own expiry, `EXPIRY[:USER]` (coturn
//! also takes `USER:EXPIRY`), and the password is
//! base64(HMAC-SHA1(shared secret, username)). Nothing is stored per user.

use base64::Engine;
use hmac::{Hmac, Mac};
use sha1::Sha1;

/// A shared secret; never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(pub Vec<u8>);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(..)")
    }
}

/// The expiry (Unix seconds) a REST username carries, if it is one: all
/// digits, or digits on one side of the separator.
pub fn expiry(username: &str, separator: char) -> Option<u64> {
    let digits = |s: &str| -> Option<u64> {
        if s.is_empty() || s.len() > 20 || !s.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        s.parse().ok()
    };
    match username.split_once(separator) {
        None => digits(username),
        Some((head, tail)) => digits(head).or_else(|| digits(tail)),
    }
}

/// The password a REST username has under `secret`.
pub fn password(secret: &[u8], username: &str) -> String {
    let mut mac = Hmac::<Sha1>::new_from_slice(secret).expect("HMAC takes any key length");
    mac.update(username.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expiry_is_read_from_either_side_of_the_separator() {
        assert_eq!(expiry("1700000000", ':'), Some(1_700_000_000));
        assert_eq!(expiry("1700000000:alice", ':'), Some(1_700_000_000));
        assert_eq!(expiry("alice:1700000000", ':'), Some(1_700_000_000));
        assert_eq!(expiry("1700000000-alice", '-'), Some(1_700_000_000));
        assert_eq!(expiry("alice", ':'), None);
        assert_eq!(expiry("alice:bob", ':'), None);
        assert_eq!(expiry("", ':'), None);
        assert_eq!(expiry("17000000000000000000000000", ':'), None);
        assert_eq!(expiry("-5:alice", ':'), None);
    }

    #[test]
    fn password_is_base64_hmac_sha1_of_the_username() {
        // HMAC-SHA1("key", "The quick brown fox jumps over the lazy dog")
        // = de7c9b85b8b78aa6bc8a7a36f70a90701c9db4d9.
        assert_eq!(
            password(b"key", "The quick brown fox jumps over the lazy dog"),
            "3nybhbi3iqa8ino29wqQcBydtNk="
        );
    }
}
