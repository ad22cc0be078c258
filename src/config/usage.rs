//! Usage accounting and events (issue 18): interim records, retention,
//! the spill file, webhook receivers and their signing key.

use std::time::Duration;

use super::parse::{count, invalid};
use super::{Config, ConfigError, Options};
use crate::auth::rest::Secret;

/// A signing key shorter than this is guessable.
const MIN_WEBHOOK_SECRET: usize = 16;
/// Receivers at most: each has its own delivery task.
pub(crate) const MAX_WEBHOOK_URLS: usize = 8;
const MAX_INTERIM: u64 = 24 * 3600;
const MAX_RETENTION_DAYS: u64 = 100 * 365;
const MAX_WEBHOOK_AGE: u64 = 30 * 24 * 3600;

pub(super) fn resolve(o: &Options, c: &mut Config) -> Result<(), ConfigError> {
    let interim = count(
        "usage_interim_s",
        o.usage_interim_s,
        c.usage_interim.map_or(0, |d| d.as_secs()),
        MAX_INTERIM,
    )?;
    c.usage_interim = (interim > 0).then(|| Duration::from_secs(interim));
    c.usage_retention_days = count(
        "usage_retention_days",
        o.usage_retention_days,
        c.usage_retention_days.into(),
        MAX_RETENTION_DAYS,
    )? as u32;
    if let Some(path) = &o.usage_spill_file {
        if path.is_empty() {
            return Err(invalid("usage_spill_file", "must not be empty".into()));
        }
        c.usage_spill_file = path.into();
    }
    if o.webhook_url.len() > MAX_WEBHOOK_URLS {
        return Err(invalid(
            "webhook_url",
            format!("at most {MAX_WEBHOOK_URLS} receivers"),
        ));
    }
    for url in &o.webhook_url {
        let ok = url
            .strip_prefix("https://")
            .or_else(|| url.strip_prefix("http://"))
            .is_some_and(|rest| !rest.is_empty() && !rest.starts_with('/'));
        if !ok || url.chars().any(|ch| ch.is_whitespace() || ch.is_control()) {
            return Err(invalid(
                "webhook_url",
                format!("`{url}` is not an http:// or https:// URL"),
            ));
        }
    }
    c.webhook_urls = o.webhook_url.clone();
    let age = count(
        "webhook_max_age",
        o.webhook_max_age,
        c.webhook_max_age.as_secs(),
        MAX_WEBHOOK_AGE,
    )?;
    if age == 0 {
        return Err(invalid("webhook_max_age", "must be at least 1".into()));
    }
    c.webhook_max_age = Duration::from_secs(age);
    let secret = match (&o.webhook_secret, &o.webhook_secret_file) {
        (Some(_), Some(_)) => {
            return Err(invalid(
                "webhook_secret_file",
                "set webhook_secret or webhook_secret_file, not both".into(),
            ))
        }
        (None, Some(path)) => Some(super::secret_file(c, "webhook_secret_file", path)?),
        (s, None) => s.clone(),
    };
    c.webhook_secret = match secret {
        Some(s) if s.len() < MIN_WEBHOOK_SECRET => {
            return Err(invalid(
                "webhook_secret",
                format!("must be at least {MIN_WEBHOOK_SECRET} bytes"),
            ))
        }
        s => s.map(|s| Secret(s.into_bytes())),
    };
    if !c.webhook_urls.is_empty() && c.webhook_secret.is_none() {
        return Err(invalid(
            "webhook_secret",
            "webhook_url needs webhook_secret or webhook_secret_file (receivers check the signature)".into(),
        ));
    }
    Ok(())
}
