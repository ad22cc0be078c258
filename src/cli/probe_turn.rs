//! `turnpike probe turn`: a TURN health check against any server.

use std::process::ExitCode;

/// Arguments of `turnpike probe turn`.
#[derive(Debug, clap::Args)]
pub struct TurnProbeArgs {
    /// turn:HOST[:PORT][?transport=udp|tcp]
    pub url: String,
}

/// Runs the check; prints the report, or one line with the reason.
pub fn run(args: TurnProbeArgs) -> ExitCode {
    eprintln!("error: probe turn {} is not built yet", args.url);
    ExitCode::FAILURE
}
