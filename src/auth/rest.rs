//! REST ephemeral credentials (draft-uberti-behave-turn-rest-00, coturn's
//! `use-auth-secret`), the whole rule in one room: the username carries its
//! own expiry, `EXPIRY[:USER]` (coturn also takes `USER:EXPIRY`), and the
//! password is base64(HMAC-SHA1(shared secret, username)). Nothing is
//! stored per user.
//!
//! * [`mint`]: a username and password pair, for the admin API and the CLI.
//! * [`verify`]: a request's username checked against every live secret.
//! * [`expired`]: which requests a username past its expiry may still make.
//! * [`is_selftest`]: the names the self-test page's credentials carry
//!   (issue 20), which its per-process secret may sign and nothing else.

use base64::Engine;
use hmac::{Hmac, Mac};
use sha1::Sha1;

use crate::stun::integrity::{long_term_key_md5, long_term_key_sha256};
use crate::stun::{Message, Method};

use super::{signer_of, Authenticated, Key, Origin, Rejection, ALGORITHM_SHA256};

/// A shared secret; never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(pub Vec<u8>);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(..)")
    }
}

/// `s` read as an expiry: 1 to 20 ASCII digits that fit a u64.
fn digits(s: &str) -> Option<u64> {
    if s.is_empty() || s.len() > 20 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// The expiry (Unix seconds) a REST username carries, if it is one: all
/// digits, or digits on one side of the separator.
pub fn expiry(username: &str, separator: char) -> Option<u64> {
    match username.split_once(separator) {
        None => digits(username),
        Some((head, tail)) => digits(head).or_else(|| digits(tail)),
    }
}

/// The user a REST username names, `USER` in `EXPIRY<separator>USER` or
/// `USER<separator>EXPIRY` (read as [`expiry`] reads the expiry); `None`
/// for a bare expiry or a name that is not a REST one.
pub fn user_of(username: &str, separator: char) -> Option<&str> {
    let (head, tail) = username.split_once(separator)?;
    let user = if digits(head).is_some() {
        tail
    } else if digits(tail).is_some() {
        head
    } else {
        return None;
    };
    (!user.is_empty()).then_some(user)
}

/// The password a REST username has under `secret`.
pub fn password(secret: &[u8], username: &str) -> String {
    let mut mac = Hmac::<Sha1>::new_from_slice(secret).expect("HMAC takes any key length");
    mac.update(username.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

/// A REST username and its password under `secret`, valid for `ttl`
/// seconds from `unix_now`: `EXPIRY` alone for an empty `user`, else
/// `EXPIRY<separator>USER`.
pub fn mint(
    secret: &[u8],
    user: &str,
    ttl: u64,
    separator: char,
    unix_now: u64,
) -> (String, String) {
    let expiry = unix_now.saturating_add(ttl);
    let username = if user.is_empty() {
        expiry.to_string()
    } else {
        format!("{expiry}{separator}{user}")
    };
    let password = password(secret, &username);
    (username, password)
}

/// The user part the self-test page's credentials start with (issue 20).
pub const SELFTEST_PREFIX: &str = "selftest-";

/// Whether `username` is a self-test credential's: `EXPIRY<separator>
/// selftest-...`, the form [`mint`] makes for such a user. Only these may
/// be signed with the self-test secret, and each gets one allocation at a
/// time that lives no longer than the credential.
pub fn is_selftest(username: &str, separator: char) -> bool {
    match username.split_once(separator) {
        Some((head, user)) => {
            user.starts_with(SELFTEST_PREFIX)
                && !head.is_empty()
                && head.len() <= 20
                && head.bytes().all(|b| b.is_ascii_digit())
        }
        None => false,
    }
}

/// Checks a request signed by the REST username `name` against every live
/// secret, and the self-test secret when `name` is a self-test one; the
/// key is the long-term key of the derived password, in the negotiated
/// password `algorithm`.
#[allow(clippy::too_many_arguments)]
pub(super) fn verify(
    msg: &Message<'_>,
    sha256: bool,
    secrets: &[Secret],
    selftest: Option<&Secret>,
    name: &str,
    realm: &str,
    separator: char,
    algorithm: u16,
) -> Result<Authenticated, Rejection> {
    // The self-test secret signs self-test names only: it cannot mint
    // any other credential.
    let selftest = selftest.filter(|_| is_selftest(name, separator));
    let expires = expiry(name, separator)
        .filter(|_| !secrets.is_empty() || selftest.is_some())
        .ok_or(Rejection::Unauthorized)?;
    // Every live secret is tried (rotation): each check is constant-time,
    // and the count of secrets is not a secret.
    let candidates: Vec<Key> = secrets
        .iter()
        .chain(selftest)
        .map(|secret| {
            let password = password(&secret.0, name);
            match algorithm {
                ALGORITHM_SHA256 => Key::Sha256(long_term_key_sha256(name, realm, &password)),
                _ => Key::Md5(long_term_key_md5(name, realm, &password)),
            }
        })
        .collect();
    Ok(Authenticated {
        username: name.to_string(),
        signer: signer_of(msg, sha256, candidates)?,
        origin: Origin::Rest { expires },
        // Set by the authenticator.
        realm: Default::default(),
    })
}

/// Which requests of a REST username past its expiry are refused. The
/// allocation it made lives on: coturn checks the expiry at Allocate only,
/// unless told to check Refresh too.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExpiryPolicy {
    /// Allocate only (coturn's default).
    AtAllocate,
    /// Allocate and Refresh (`strict_expiry`).
    AtAllocateAndRefresh,
}

impl ExpiryPolicy {
    /// The policy the `strict_expiry` setting names.
    pub fn strict(strict_expiry: bool) -> Self {
        if strict_expiry {
            ExpiryPolicy::AtAllocateAndRefresh
        } else {
            ExpiryPolicy::AtAllocate
        }
    }
}

/// Whether a request `method` by a REST username valid until `expires`
/// is refused at Unix second `unix_now`.
pub fn expired(policy: ExpiryPolicy, method: Method, expires: u64, unix_now: u64) -> bool {
    let checked = method == Method::ALLOCATE
        || (method == Method::REFRESH && policy == ExpiryPolicy::AtAllocateAndRefresh);
    checked && unix_now >= expires
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
    fn the_user_is_the_side_that_is_not_the_expiry() {
        assert_eq!(user_of("1700000000:alice", ':'), Some("alice"));
        assert_eq!(user_of("alice:1700000000", ':'), Some("alice"));
        assert_eq!(user_of("1700000000-a:b", '-'), Some("a:b"));
        assert_eq!(user_of("1700000000:a:b", ':'), Some("a:b"));
        assert_eq!(user_of("1700000000", ':'), None);
        assert_eq!(user_of("1700000000:", ':'), None);
        assert_eq!(user_of("alice", ':'), None);
        assert_eq!(user_of("alice:bob", ':'), None);
        assert_eq!(user_of("x1:alice", ':'), None);
    }

    #[test]
    fn selftest_names_are_expiry_first_with_the_selftest_user() {
        assert!(is_selftest("1700000060:selftest-abcdefghij", ':'));
        assert!(is_selftest("1700000060-selftest-x", '-'));
        assert!(!is_selftest("1700000060:alice", ':'));
        assert!(!is_selftest("selftest-abc:1700000060", ':'));
        assert!(!is_selftest("selftest-abc", ':'));
        assert!(!is_selftest(":selftest-abc", ':'));
        assert!(!is_selftest("17x:selftest-abc", ':'));
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

    #[test]
    fn mint_puts_the_expiry_first_and_signs_the_whole_username() {
        let (user, pw) = mint(b"s3cret", "alice", 600, ':', 1_700_000_000);
        assert_eq!(user, "1700000600:alice");
        assert_eq!(pw, password(b"s3cret", "1700000600:alice"));
        assert_eq!(expiry(&user, ':'), Some(1_700_000_600));

        let (user, pw) = mint(b"s3cret", "", 600, ':', 1_700_000_000);
        assert_eq!(user, "1700000600");
        assert_eq!(pw, password(b"s3cret", "1700000600"));

        let (user, _) = mint(b"s3cret", "bob", 1, '-', 5);
        assert_eq!(user, "6-bob");
        // An absurd ttl saturates instead of wrapping into the past.
        let (user, _) = mint(b"s3cret", "", u64::MAX, ':', 5);
        assert_eq!(user, u64::MAX.to_string());
    }

    #[test]
    fn expired_username_may_not_allocate_nor_refresh_when_strict() {
        let lax = ExpiryPolicy::strict(false);
        let strict = ExpiryPolicy::strict(true);
        assert_eq!(lax, ExpiryPolicy::AtAllocate);
        assert_eq!(strict, ExpiryPolicy::AtAllocateAndRefresh);
        // Before its expiry: nothing is refused.
        for m in [Method::ALLOCATE, Method::REFRESH, Method::CREATE_PERMISSION] {
            assert!(!expired(strict, m, 100, 99));
        }
        // At and past it: Allocate always, Refresh only when strict.
        for now in [100, 101] {
            assert!(expired(lax, Method::ALLOCATE, 100, now));
            assert!(expired(strict, Method::ALLOCATE, 100, now));
            assert!(!expired(lax, Method::REFRESH, 100, now));
            assert!(expired(strict, Method::REFRESH, 100, now));
            // The allocation it made keeps working.
            for m in [Method::CREATE_PERMISSION, Method::CHANNEL_BIND] {
                assert!(!expired(strict, m, 100, now));
            }
        }
    }
}
