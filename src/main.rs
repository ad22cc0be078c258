use clap::Parser;

fn main() -> std::process::ExitCode {
    turnpike::cli::run(turnpike::cli::Cli::parse())
}
