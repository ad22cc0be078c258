//! `turnpike import coturn-db`: users, secrets, OAuth keys and realm
//! options from coturn's database into turnpike's store.

use std::process::ExitCode;

/// `turnpike import coturn-db URL [--db TARGET] [--dry-run]`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// coturn's database: sqlite:PATH, postgres://, mysql:// or redis://
    pub url: String,
    /// turnpike's store to import into [default: sqlite:turnpike.db]
    #[arg(long, value_name = "URL", env = "TURNPIKE_DB")]
    pub db: Option<String>,
    /// Print what would change and change nothing
    #[arg(long)]
    pub dry_run: bool,
}

/// Runs the import.
pub fn run(args: Args) -> ExitCode {
    let _ = args;
    eprintln!("error: import coturn-db is not built yet");
    ExitCode::from(2)
}
