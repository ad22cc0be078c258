//! Who may allocate: realm, static users, REST secrets (and their files),
//! OAuth, nonce lifetime and the unauthenticated-answer budget.

use super::parse::{count, invalid, seconds};
use super::{Config, ConfigError, Options};
use crate::auth::rest::Secret;
use crate::auth::{Credentials, UserKeys};

pub(super) fn resolve(o: &Options, c: &mut Config) -> Result<(), ConfigError> {
    if let Some(realm) = &o.realm {
        c.realm = realm.clone();
    }
    if c.realm.is_empty() || c.realm.chars().count() > 127 {
        return Err(invalid(
            "realm",
            format!("`{}` must be 1-127 characters", c.realm),
        ));
    }
    users(o, c)?;
    secrets(o, c)?;
    c.rest_api_separator = match o.rest_api_separator.as_deref() {
        None => c.rest_api_separator,
        Some(sep) => {
            let mut chars = sep.chars();
            match (chars.next(), chars.next()) {
                (Some(ch), None) if !ch.is_ascii_digit() && !ch.is_control() => ch,
                _ => {
                    return Err(invalid(
                        "rest_api_separator",
                        format!("`{sep}` must be one character, not a digit"),
                    ))
                }
            }
        }
    };
    c.strict_expiry = o.strict_expiry.unwrap_or(c.strict_expiry);
    c.oauth = o.oauth.unwrap_or(c.oauth);
    c.server_name = o.server_name.clone().unwrap_or_else(|| c.realm.clone());
    if c.server_name.is_empty() || c.server_name.len() > 255 {
        return Err(invalid("server_name", "must be 1-255 bytes".into()));
    }
    c.stale_nonce = seconds("stale_nonce", o.stale_nonce, c.stale_nonce, 86_400)?;
    c.auth_reply_rate = count(
        "auth_reply_rate",
        o.auth_reply_rate,
        c.auth_reply_rate.into(),
        1_000_000,
    )? as u32;
    Ok(())
}

/// `user = ["name:password", ...]`: kept as keys, the last entry of a name
/// wins.
fn users(o: &Options, c: &mut Config) -> Result<(), ConfigError> {
    let mut creds = Credentials::new(&c.realm);
    let mut users: Vec<(String, UserKeys)> = Vec::new();
    for spec in &o.user {
        // Never echo the spec: it holds a password.
        creds.add_spec(spec).map_err(|e| {
            invalid(
                "user",
                format!("{e} (entry for `{}`)", spec.split(':').next().unwrap_or("")),
            )
        })?;
        let name = spec.split_once(':').map(|(n, _)| n).unwrap_or_default();
        let Some(keys) = creds.get(name) else {
            continue;
        };
        let keys = keys.clone();
        users.retain(|(n, _)| n != name);
        users.push((name.to_string(), keys));
    }
    c.users = users;
    Ok(())
}

/// REST secrets, inline and from files (a file others can read is a
/// warning, logged once logging is up).
fn secrets(o: &Options, c: &mut Config) -> Result<(), ConfigError> {
    let mut secrets = Vec::new();
    for secret in &o.static_auth_secret {
        if secret.is_empty() {
            return Err(invalid(
                "static_auth_secret",
                "a secret must not be empty".into(),
            ));
        }
        secrets.push(Secret(secret.as_bytes().to_vec()));
    }
    for path in &o.static_auth_secret_file {
        let secret = super::secret_file(c, "static_auth_secret_file", path)?;
        secrets.push(Secret(secret.into_bytes()));
    }
    c.static_auth_secrets = secrets;
    Ok(())
}
