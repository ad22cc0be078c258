//! Where users, secrets and keys are stored.

use super::parse::invalid;
use super::{Config, ConfigError, Options};

pub(super) fn resolve(o: &Options, c: &mut Config) -> Result<(), ConfigError> {
    if let Some(db) = &o.db {
        c.db = db.clone();
    }
    if !(c.db.starts_with("sqlite:")
        || c.db.starts_with("postgres://")
        || c.db.starts_with("postgresql://"))
    {
        return Err(invalid(
            "db",
            "expected sqlite:PATH or postgres://USER@HOST/DB".into(),
        ));
    }
    Ok(())
}
