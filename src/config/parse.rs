//! The value checks every section shares: ports, bounded counts, caps.

use std::time::Duration;

use super::ConfigError;

/// A [`ConfigError::Invalid`] for `key`.
pub(super) fn invalid(key: &'static str, reason: String) -> ConfigError {
    ConfigError::Invalid { key, reason }
}

/// A port number 1-65535, or `default` when unset.
pub(super) fn port(key: &'static str, v: Option<i64>, default: u16) -> Result<u16, ConfigError> {
    match v {
        None => Ok(default),
        Some(p) if (1..=65535).contains(&p) => Ok(p as u16),
        Some(p) => Err(invalid(key, format!("{p} is not a port number (1-65535)"))),
    }
}

/// A count 0-`max`, or `default` when unset. TOML integers are i64, so
/// negatives are refused here rather than wrapped.
pub(super) fn count(
    key: &'static str,
    v: Option<i64>,
    default: u64,
    max: u64,
) -> Result<u64, ConfigError> {
    match v {
        None => Ok(default),
        Some(n) if n >= 0 && (n as u64) <= max => Ok(n as u64),
        Some(n) => Err(invalid(key, format!("{n} is out of range 0-{max}"))),
    }
}

/// A duration in whole seconds, 1 to `max` (0 would mean "at once").
pub(super) fn seconds(
    key: &'static str,
    v: Option<i64>,
    default: Duration,
    max: u64,
) -> Result<Duration, ConfigError> {
    match count(key, v, default.as_secs(), max)? {
        0 => Err(invalid(key, "must be at least 1 second".into())),
        n => Ok(Duration::from_secs(n)),
    }
}

/// A [`count`] that fits a u32.
pub(super) fn count32(key: &'static str, v: Option<i64>, default: u32) -> Result<u32, ConfigError> {
    Ok(count(key, v, default.into(), u32::MAX.into())? as u32)
}

/// A connection or table cap: 1 to 2^24 (0 would refuse everyone).
pub(super) fn cap(key: &'static str, v: Option<i64>, default: u32) -> Result<u32, ConfigError> {
    match count(key, v, default.into(), 1 << 24)? {
        0 => Err(invalid(key, "must be at least 1".into())),
        n => Ok(n as u32),
    }
}
