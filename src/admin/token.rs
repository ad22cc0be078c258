//! Admin API bearer tokens: HS256 JWTs with a scope, `admin` (everything)
//! or `realm:NAME` (that realm's users, secrets and quotas).

use jsonwebtoken::{decode, encode, Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Claims {
    pub sub: String,
    pub scope: String,
    pub iat: u64,
    pub exp: u64,
}

/// What a token may touch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    Admin,
    Realm(String),
}

impl Scope {
    pub fn parse(s: &str) -> Option<Scope> {
        match s {
            "admin" => Some(Scope::Admin),
            _ => s
                .strip_prefix("realm:")
                .filter(|r| !r.is_empty())
                .map(|r| Scope::Realm(r.to_string())),
        }
    }

    /// May this scope act on `realm`?
    pub fn covers(&self, realm: &str) -> bool {
        match self {
            Scope::Admin => true,
            Scope::Realm(r) => r == realm,
        }
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BearerError {
    #[error("scope must be `admin` or `realm:NAME`")]
    BadScope,
    #[error("token does not verify or has expired")]
    Invalid,
}

/// Signs a token for `scope`, valid `ttl` seconds from `now` (Unix).
pub fn mint(
    secret: &[u8],
    sub: &str,
    scope: &str,
    now: u64,
    ttl: u64,
) -> Result<String, BearerError> {
    Scope::parse(scope).ok_or(BearerError::BadScope)?;
    let claims = Claims {
        sub: sub.to_string(),
        scope: scope.to_string(),
        iat: now,
        exp: now.saturating_add(ttl),
    };
    encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(secret),
    )
    .map_err(|_| BearerError::Invalid)
}

/// Verifies a token (signature, expiry, scope syntax).
pub fn verify(secret: &[u8], token: &str) -> Result<(Claims, Scope), BearerError> {
    let mut v = Validation::new(Algorithm::HS256);
    v.leeway = 0;
    v.set_required_spec_claims(&["exp"]);
    let data = decode::<Claims>(token, &DecodingKey::from_secret(secret), &v)
        .map_err(|_| BearerError::Invalid)?;
    let scope = Scope::parse(&data.claims.scope).ok_or(BearerError::BadScope)?;
    Ok((data.claims, scope))
}

/// Reads a duration like `3600`, `90s`, `15m`, `1h`, `7d` as seconds.
pub fn parse_ttl(s: &str) -> Option<u64> {
    let s = s.trim();
    let (num, unit) = match s.char_indices().last()? {
        (i, c) if c.is_ascii_alphabetic() => (&s[..i], c),
        _ => (s, 's'),
    };
    let n: u64 = num.parse().ok()?;
    let mult = match unit {
        's' => 1,
        'm' => 60,
        'h' => 3600,
        'd' => 86_400,
        _ => return None,
    };
    n.checked_mul(mult).filter(|&t| t > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs()
    }

    #[test]
    fn tokens_verify_with_their_secret_and_scope_only() {
        let t = mint(b"0123456789abcdef", "ops", "realm:example.org", now(), 60).unwrap();
        let (c, s) = verify(b"0123456789abcdef", &t).unwrap();
        assert_eq!(c.sub, "ops");
        assert_eq!(s, Scope::Realm("example.org".into()));
        assert!(s.covers("example.org") && !s.covers("other.org"));
        assert_eq!(verify(b"another secret!!", &t), Err(BearerError::Invalid));
        assert_eq!(
            verify(b"0123456789abcdef", "not.a.token"),
            Err(BearerError::Invalid)
        );
        assert_eq!(
            mint(b"k", "x", "root", now(), 60),
            Err(BearerError::BadScope)
        );
    }

    #[test]
    fn expired_tokens_are_refused() {
        let t = mint(b"0123456789abcdef", "ops", "admin", now() - 120, 60).unwrap();
        assert_eq!(verify(b"0123456789abcdef", &t), Err(BearerError::Invalid));
    }

    #[test]
    fn ttls_read_units() {
        assert_eq!(parse_ttl("3600"), Some(3600));
        assert_eq!(parse_ttl("1h"), Some(3600));
        assert_eq!(parse_ttl("15m"), Some(900));
        assert_eq!(parse_ttl("2d"), Some(172_800));
        assert_eq!(parse_ttl("0"), None);
        assert_eq!(parse_ttl("1y"), None);
        assert_eq!(parse_ttl("-5"), None);
    }
}
