//! `[[realms]]`: tenant realms beside the default `realm` (issue 19), each
//! picked by the TLS server name (SNI) or the STUN ORIGIN a request
//! carries. (TOML cannot have both `realm = "..."` and `[[realm]]`, hence
//! the plural.)

use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::parse::invalid;
use super::{Config, ConfigError, Options};
use crate::auth::realms::Tenant;

/// Most tenant realms: each costs a store snapshot per reload.
pub(crate) const MAX_REALMS: usize = 256;
/// Most SNI names or origins per realm.
const MAX_SELECTORS: usize = 64;

/// One `[[realms]]` table, or one `--realms` flag.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RealmTable {
    /// The realm's name, as in REALM and the store.
    pub name: String,
    /// TLS server names that select it.
    #[serde(default)]
    pub sni: Vec<String>,
    /// ORIGIN values (e.g. `https://a.example`) that select it, exactly.
    #[serde(default)]
    pub origins: Vec<String>,
}

/// The flag form: `NAME[;sni=A,B][;origins=O1,O2]` (`;` because origins
/// hold `:`).
impl FromStr for RealmTable {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut parts = s.split(';');
        let mut t = RealmTable {
            name: parts.next().unwrap_or_default().to_string(),
            ..Default::default()
        };
        for part in parts {
            let list = |v: &str| v.split(',').map(str::to_string).collect::<Vec<_>>();
            match part.split_once('=') {
                Some(("sni", v)) => t.sni.extend(list(v)),
                Some(("origins", v)) => t.origins.extend(list(v)),
                _ => return Err(format!("`{part}`: expected sni=NAMES or origins=ORIGINS")),
            }
        }
        Ok(t)
    }
}

pub(super) fn resolve(o: &Options, c: &mut Config) -> Result<(), ConfigError> {
    let bad = |reason: String| invalid("realms", reason);
    if o.realms.len() > MAX_REALMS {
        return Err(bad(format!("at most {MAX_REALMS} realms")));
    }
    let mut tenants: Vec<Tenant> = Vec::new();
    for t in &o.realms {
        let name = t.name.as_str();
        if name.is_empty() || name.chars().count() > 127 {
            return Err(bad(format!("name `{name}` must be 1-127 characters")));
        }
        if name == c.realm || tenants.iter().any(|x| &*x.name == name) {
            return Err(bad(format!("realm `{name}` is named twice")));
        }
        if t.sni.len() > MAX_SELECTORS || t.origins.len() > MAX_SELECTORS {
            return Err(bad(format!(
                "realm `{name}`: at most {MAX_SELECTORS} sni names and origins"
            )));
        }
        let sni: Vec<String> = t
            .sni
            .iter()
            .map(|s| s.trim_end_matches('.').to_ascii_lowercase())
            .collect();
        for s in &sni {
            if s.is_empty() || s.len() > 253 {
                return Err(bad(format!("realm `{name}`: sni `{s}` is not a DNS name")));
            }
        }
        for origin in &t.origins {
            if origin.is_empty() || origin.chars().count() > 763 {
                return Err(bad(format!("realm `{name}`: empty or overlong origin")));
            }
        }
        for x in &tenants {
            if let Some(s) = sni.iter().find(|s| x.sni.contains(s)) {
                return Err(bad(format!("sni `{s}` selects two realms")));
            }
            if let Some(o) = t.origins.iter().find(|o| x.origins.contains(o)) {
                return Err(bad(format!("origin `{o}` selects two realms")));
            }
        }
        tenants.push(Tenant {
            name: name.into(),
            sni,
            origins: t.origins.clone(),
        });
    }
    c.realms = tenants;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Options::from_toml(text, "t").unwrap().resolve()
    }

    #[test]
    fn realm_tables_and_flags_say_the_same() {
        let c = parse(
            "realm = \"d\"\n[[realms]]\nname = \"a\"\nsni = [\"A.example.\"]\n\
             origins = [\"https://a.example\"]\n[[realms]]\nname = \"b\"\n",
        )
        .unwrap();
        assert_eq!(c.realms.len(), 2);
        assert_eq!(&*c.realms[0].name, "a");
        assert_eq!(c.realms[0].sni, vec!["a.example".to_string()]);
        assert_eq!(c.realms[0].origins, vec!["https://a.example".to_string()]);
        let flag: RealmTable = "a;sni=A.example.;origins=https://a.example"
            .parse()
            .unwrap();
        let o = Options {
            realm: Some("d".into()),
            realms: vec![flag, "b".parse().unwrap()],
            ..Default::default()
        };
        assert_eq!(o.resolve().unwrap().realms, c.realms);
        assert!("a;colour=red".parse::<RealmTable>().is_err());
    }

    #[test]
    fn a_realm_named_twice_or_a_shared_selector_is_refused() {
        for text in [
            "realm = \"a\"\n[[realms]]\nname = \"a\"",
            "[[realms]]\nname = \"a\"\n[[realms]]\nname = \"a\"",
            "[[realms]]\nname = \"a\"\nsni = [\"x\"]\n[[realms]]\nname = \"b\"\nsni = [\"X\"]",
            "[[realms]]\nname = \"a\"\norigins = [\"o\"]\n[[realms]]\nname = \"b\"\norigins = [\"o\"]",
            "[[realms]]\nname = \"\"",
        ] {
            let e = parse(text).unwrap_err().to_string();
            assert!(e.starts_with("realms:"), "{text}: {e}");
        }
    }
}
