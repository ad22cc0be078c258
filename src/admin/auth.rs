//! Who may call a route: the bearer token, its scope against the realm
//! acted on, and the lockout of addresses that guess tokens.

use std::time::Instant;

use axum::http::StatusCode;

use super::token::{self, Scope};
use super::{ApiError, Caller, Inner, State};

impl Inner {
    /// Checks the bearer token; returns who it names and its scope.
    ///
    /// A valid token is served even from a locked-out address: the lockout
    /// must not let a stranger sharing the admin's IP shut the admin out.
    /// A missing token is a plain 401 and does not count (it guesses
    /// nothing, and a browser page can send one cross-origin).
    pub(super) fn authorize(&self, caller: &Caller) -> Result<(String, Scope), ApiError> {
        self.claims(caller)
            .map(|(claims, scope)| (claims.sub, scope))
    }

    /// [`Inner::authorize`], with the whole of the token's claims.
    pub(super) fn claims(&self, caller: &Caller) -> Result<(token::Claims, Scope), ApiError> {
        let token = caller
            .headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim);
        let Some(token) = token else {
            return Err(ApiError::unauthorized());
        };
        // The signature check inside is a constant-time HMAC comparison.
        if let Ok(verified) = token::verify(&self.jwt_secret.0, token) {
            return Ok(verified);
        }
        let mut f = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        if f.bad_token(caller.from, token, Instant::now()) {
            Err(ApiError(
                StatusCode::TOO_MANY_REQUESTS,
                "too many bad tokens from this address; try again in 30 s".into(),
            ))
        } else {
            Err(ApiError::unauthorized())
        }
    }
}

/// Who is calling, checked against the realm acted on (`None`: admin only).
pub(super) fn guard(s: &State, caller: &Caller, realm: Option<&str>) -> Result<String, ApiError> {
    let (sub, scope) = s.0.authorize(caller)?;
    may(&sub, &scope, realm)
}

/// The audit actor for `sub`, if `scope` covers `realm` (`None`: admin
/// only). For routes that learn the realm from the body, after the token
/// was checked.
pub(super) fn may(sub: &str, scope: &Scope, realm: Option<&str>) -> Result<String, ApiError> {
    let allowed = match realm {
        Some(r) => scope.covers(r),
        None => *scope == Scope::Admin,
    };
    if !allowed {
        return Err(ApiError::forbidden());
    }
    Ok(format!("api:{sub}"))
}
