//! Server configuration: `turnserver.toml` and the `serve` flags are one
//! schema ([`Options`]): every key is a flag of the same name (`min_port` is
//! `--min-port`). Flags override the file, the file overrides the defaults,
//! and [`Options::resolve`] validates the result into a [`Config`].

use std::net::SocketAddr;
use std::path::Path;

use serde::Deserialize;

/// The documented example configuration, every key at its default.
pub const EXAMPLE_TOML: &str = include_str!("../turnserver.toml");

/// A bad configuration, naming the key at fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {reason}")]
    Unreadable { path: String, reason: String },
    #[error("{path}: {key}: {reason}")]
    Syntax {
        path: String,
        key: String,
        reason: String,
    },
    #[error("{key}: {reason}")]
    Invalid { key: &'static str, reason: String },
}

/// The levels `log_level` accepts.
pub const LOG_LEVELS: [&str; 5] = ["error", "warn", "info", "debug", "trace"];

/// One schema for the file and the flags; every field optional so layers merge.
#[derive(Debug, Default, Clone, Deserialize, clap::Args)]
#[serde(deny_unknown_fields)]
pub struct Options {
    /// Address to listen on for UDP and TCP, repeatable [default: 0.0.0.0:3478 and [::]:3478]
    #[arg(long = "listen", value_name = "IP:PORT")]
    #[serde(default)]
    pub listen: Vec<String>,

    /// Log verbosity: error, warn, info, debug or trace [default: info]
    #[arg(long, value_name = "LEVEL")]
    pub log_level: Option<String>,

    /// Lowest relay port [default: 49152]
    #[arg(long, value_name = "PORT")]
    pub min_port: Option<i64>,

    /// Highest relay port [default: 65535]
    #[arg(long, value_name = "PORT")]
    pub max_port: Option<i64>,
}

/// A validated configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Each address gets a UDP and a TCP listener.
    pub listen: Vec<SocketAddr>,
    pub log_level: String,
    pub min_port: u16,
    pub max_port: u16,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: vec![
                SocketAddr::from(([0, 0, 0, 0], 3478)),
                SocketAddr::from(([0u16; 8], 3478)),
            ],
            log_level: "info".into(),
            min_port: 49152,
            max_port: 65535,
        }
    }
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

impl Options {
    /// Parses TOML text; `path` only names the source in errors.
    pub fn from_toml(text: &str, path: &str) -> Result<Options, ConfigError> {
        let de = toml::Deserializer::new(text);
        serde_path_to_error::deserialize(de).map_err(|e| {
            let key = e.path().to_string();
            let inner = e.into_inner();
            let reason = one_line(inner.message());
            // serde names unknown keys in its message, not in the path.
            let key = if key == "." || key.is_empty() {
                "(top level)".to_string()
            } else {
                key
            };
            ConfigError::Syntax {
                path: path.to_string(),
                key,
                reason,
            }
        })
    }

    /// Reads and parses a config file.
    pub fn from_file(path: &Path) -> Result<Options, ConfigError> {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Unreadable {
            path: shown.clone(),
            reason: e.to_string(),
        })?;
        Self::from_toml(&text, &shown)
    }

    /// Layers `over` (flags) on top of `self` (file).
    pub fn overlay(mut self, over: Options) -> Options {
        if !over.listen.is_empty() {
            self.listen = over.listen;
        }
        self.log_level = over.log_level.or(self.log_level);
        self.min_port = over.min_port.or(self.min_port);
        self.max_port = over.max_port.or(self.max_port);
        self
    }

    /// Fills defaults and validates.
    pub fn resolve(self) -> Result<Config, ConfigError> {
        let d = Config::default();
        let listen = if self.listen.is_empty() {
            d.listen
        } else {
            self.listen
                .iter()
                .map(|s| {
                    s.parse::<SocketAddr>().map_err(|_| ConfigError::Invalid {
                        key: "listen",
                        reason: format!("`{s}` is not IP:PORT (IPv6 as [ADDR]:PORT, port 0-65535)"),
                    })
                })
                .collect::<Result<_, _>>()?
        };
        let log_level = self.log_level.unwrap_or(d.log_level);
        if !LOG_LEVELS.contains(&log_level.as_str()) {
            return Err(ConfigError::Invalid {
                key: "log_level",
                reason: format!("`{log_level}` is not one of {}", LOG_LEVELS.join(", ")),
            });
        }
        let port = |key: &'static str, v: Option<i64>, default: u16| match v {
            None => Ok(default),
            Some(p) if (1..=65535).contains(&p) => Ok(p as u16),
            Some(p) => Err(ConfigError::Invalid {
                key,
                reason: format!("{p} is not a port number (1-65535)"),
            }),
        };
        let min_port = port("min_port", self.min_port, d.min_port)?;
        let max_port = port("max_port", self.max_port, d.max_port)?;
        if min_port > max_port {
            return Err(ConfigError::Invalid {
                key: "min_port",
                reason: format!("min_port {min_port} is above max_port {max_port}"),
            });
        }
        Ok(Config {
            listen,
            log_level,
            min_port,
            max_port,
        })
    }
}

impl Config {
    /// Loads an optional file, then applies flags.
    pub fn load(file: Option<&Path>, flags: Options) -> Result<Config, ConfigError> {
        let base = match file {
            Some(p) => Options::from_file(p)?,
            None => Options::default(),
        };
        base.overlay(flags).resolve()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Options::from_toml(text, "test.toml")?.resolve()
    }

    #[test]
    fn the_example_file_documents_exactly_the_defaults() {
        assert_eq!(parse(EXAMPLE_TOML), Ok(Config::default()));
    }

    #[test]
    fn every_flag_is_a_key_in_the_example_file() {
        use clap::CommandFactory;
        #[derive(clap::Parser)]
        struct Probe {
            #[command(flatten)]
            o: Options,
        }
        for arg in Probe::command().get_arguments() {
            let Some(long) = arg.get_long() else { continue };
            let key = long.replace('-', "_");
            assert!(
                EXAMPLE_TOML
                    .lines()
                    .any(|l| l.starts_with(&format!("{key} = "))),
                "turnserver.toml does not document `{key}`"
            );
        }
    }

    #[test]
    fn no_file_means_defaults() {
        assert_eq!(
            Config::load(None, Options::default()),
            Ok(Config::default())
        );
    }

    #[test]
    fn unknown_key_is_named() {
        let e = parse("listen = [\"127.0.0.1:3478\"]\nrelay_magic = 1\n").unwrap_err();
        let s = e.to_string();
        assert!(s.contains("relay_magic"), "{s}");
        assert!(!s.contains('\n'));
    }

    #[test]
    fn port_70000_is_refused_naming_the_key() {
        let e = parse("min_port = 70000").unwrap_err();
        assert!(e.to_string().starts_with("min_port:"), "{e}");
        let e = parse("listen = [\"0.0.0.0:70000\"]").unwrap_err();
        assert!(e.to_string().starts_with("listen:"), "{e}");
    }

    #[test]
    fn min_port_above_max_port_is_refused() {
        let e = parse("min_port = 60000\nmax_port = 50000").unwrap_err();
        assert!(e.to_string().starts_with("min_port:"), "{e}");
    }

    #[test]
    fn wrong_type_names_the_key() {
        let e = parse("log_level = 3").unwrap_err();
        assert!(e.to_string().contains("log_level"), "{e}");
        let e = parse("log_level = \"loud\"").unwrap_err();
        assert!(e.to_string().starts_with("log_level:"), "{e}");
    }

    #[test]
    fn flags_override_the_file() {
        let file = Options::from_toml("listen = [\"127.0.0.1:1\"]\nmin_port = 1000", "f").unwrap();
        let flags = Options {
            listen: vec!["127.0.0.1:2".into()],
            ..Default::default()
        };
        let c = file.overlay(flags).resolve().unwrap();
        assert_eq!(c.listen, vec!["127.0.0.1:2".parse().unwrap()]);
        assert_eq!(c.min_port, 1000);
    }

    #[test]
    fn unreadable_file_is_reported() {
        let e = Config::load(
            Some(Path::new("/nonexistent/turnpike.toml")),
            Options::default(),
        )
        .unwrap_err();
        assert!(matches!(e, ConfigError::Unreadable { .. }), "{e}");
    }
}
