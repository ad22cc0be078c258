//! Long-term users (RFC 8489 §9.2): the user named by USERNAME or found by
//! USERHASH, and the HA1 key (MD5, or SHA-256 when negotiated) that the
//! request's integrity must verify with.

use crate::stun::attributes::decode_username;
use crate::stun::Message;

use super::credentials::{Credentials, UserKeys};
use super::{signer_of, Authenticated, Key, Origin, Rejection, ALGORITHM_SHA256};

/// The user name a request speaks for: its USERNAME, or the user whose
/// USERHASH it carries (RFC 8489 §14.4).
pub(super) fn name<'a>(
    users: &'a Credentials,
    username: Option<&'a [u8]>,
    userhash: Option<&[u8]>,
) -> Result<&'a str, Rejection> {
    match (username, userhash) {
        (Some(u), _) => decode_username(u).map_err(|_| Rejection::BadRequest),
        (None, Some(h)) => users.by_userhash(h).ok_or(Rejection::Unauthorized),
        (None, None) => Err(Rejection::BadRequest),
    }
}

/// Checks a request from the user `name` with its stored keys, in the
/// negotiated password `algorithm`. A user stored as an HA1 alone has no
/// SHA-256 key, so SHA-256 requests from it are refused.
pub(super) fn verify(
    msg: &Message<'_>,
    sha256: bool,
    name: &str,
    keys: &UserKeys,
    algorithm: u16,
) -> Result<Authenticated, Rejection> {
    let key = match algorithm {
        ALGORITHM_SHA256 => Key::Sha256(keys.sha256.ok_or(Rejection::Unauthorized)?),
        _ => Key::Md5(keys.md5),
    };
    Ok(Authenticated {
        username: name.to_string(),
        signer: signer_of(msg, sha256, [key])?,
        origin: Origin::LongTerm,
        // Set by the authenticator.
        realm: Default::default(),
    })
}
