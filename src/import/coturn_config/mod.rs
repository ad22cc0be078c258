//! `turnpike import coturn-config`: coturn's turnserver.conf to
//! turnserver.toml, with a report line per coturn key.

use std::path::PathBuf;
use std::process::ExitCode;

/// `turnpike import coturn-config FILE [--out FILE]`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// coturn's config file (turnserver.conf, or /etc/default/coturn's flags)
    pub file: PathBuf,
    /// Where to write turnserver.toml [default: stdout]
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
}

/// Runs the import.
pub fn run(args: Args) -> ExitCode {
    let _ = args;
    eprintln!("error: import coturn-config is not built yet");
    ExitCode::from(2)
}
