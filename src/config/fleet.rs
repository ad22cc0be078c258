//! Who this node is in a fleet: its name (the registry's key) and region.

use super::parse::invalid;
use super::{Config, ConfigError, Options};

/// Longest node name or region.
const MAX_LEN: usize = 64;

pub(super) fn resolve(o: &Options, c: &mut Config) -> Result<(), ConfigError> {
    if let Some(name) = &o.node_name {
        if !valid_name(name) {
            return Err(invalid(
                "node_name",
                format!("`{name}` must be 1-{MAX_LEN} letters, digits, '.', '_' or '-'"),
            ));
        }
        c.node_name = name.clone();
    }
    if let Some(region) = &o.region {
        if region.chars().count() > MAX_LEN || region.chars().any(char::is_control) {
            return Err(invalid(
                "region",
                format!("must be at most {MAX_LEN} printable characters"),
            ));
        }
        c.region = region.clone();
    }
    Ok(())
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_LEN
        && name
            .chars()
            .all(|ch| ch.is_ascii_alphanumeric() || ".-_".contains(ch))
}

/// The host name, cut to a valid node name; "turnpike" if there is none.
pub(crate) fn host_name() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: gethostname writes at most buf.len() bytes into buf.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    let raw = if rc == 0 {
        let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
        String::from_utf8_lossy(&buf[..end]).into_owned()
    } else {
        String::new()
    };
    let name: String = raw
        .chars()
        .filter(|ch| ch.is_ascii_alphanumeric() || ".-_".contains(*ch))
        .take(MAX_LEN)
        .collect();
    if name.is_empty() {
        "turnpike".into()
    } else {
        name
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_names_are_checked_and_the_host_name_is_the_default() {
        let parse = |t: &str| Options::from_toml(t, "t").unwrap().resolve();
        let c = parse("").unwrap();
        assert!(valid_name(&c.node_name), "{}", c.node_name);
        assert_eq!(c.node_name, host_name());
        assert_eq!(c.region, "");
        let c = parse("node_name = \"turn-eu.1\"\nregion = \"eu west\"").unwrap();
        assert_eq!(
            (c.node_name.as_str(), c.region.as_str()),
            ("turn-eu.1", "eu west")
        );
        for bad in ["", "a b", "x/y", &"n".repeat(65)] {
            let e = parse(&format!("node_name = \"{bad}\""))
                .unwrap_err()
                .to_string();
            assert!(e.starts_with("node_name:"), "{e}");
        }
        let e = parse("region = \"a\\nb\"").unwrap_err().to_string();
        assert!(e.starts_with("region:"), "{e}");
    }

    #[test]
    fn the_flags_are_node_name_and_region_and_win_over_the_file() {
        use clap::Parser;
        #[derive(clap::Parser)]
        struct Probe {
            #[command(flatten)]
            o: Options,
        }
        let flags = Probe::try_parse_from(["t", "--node-name", "turn-2", "--region", "ap south"])
            .unwrap()
            .o;
        let file = Options::from_toml("node_name = \"turn-1\"\nregion = \"eu\"", "t").unwrap();
        let c = file.overlay(flags).resolve().unwrap();
        assert_eq!(
            (c.node_name.as_str(), c.region.as_str()),
            ("turn-2", "ap south")
        );
        let bad = Probe::try_parse_from(["t", "--node-name", "a b"])
            .unwrap()
            .o;
        let e = bad.resolve().unwrap_err().to_string();
        assert!(e.starts_with("node_name:"), "{e}");
    }
}
