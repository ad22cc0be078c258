//! `turnpike drain`: drains the server of a config through its admin API
//! (the Kubernetes preStop hook and the rolling-restart recipe), and with
//! `--wait` waits for it to exit. Same settings as `serve`, so it finds the
//! admin listener and the token secret the server uses.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use super::health::{http, local};
use crate::config::{Config, Options};

#[derive(Debug, clap::Args)]
pub struct DrainArgs {
    /// The server's config file (the same one `serve` reads)
    #[arg(long, value_name = "FILE")]
    pub config: Option<std::path::PathBuf>,
    /// Seconds until the server exits even with allocations left
    /// [default: the server's drain_timeout]
    #[arg(long, value_name = "SECONDS")]
    pub deadline: Option<u64>,
    /// Wait until the server has exited (its admin API stops answering)
    #[arg(long)]
    pub wait: bool,
    #[command(flatten)]
    pub options: Options,
}

pub(super) fn run(args: DrainArgs) -> ExitCode {
    match drain(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn drain(args: DrainArgs) -> Result<(), String> {
    let config = Config::load(args.config.as_deref(), args.options).map_err(|e| e.to_string())?;
    let admin = config
        .admin_listen
        .map(local)
        .ok_or("admin_listen is off: nothing to ask")?;
    let token = token(&config)?;
    let body = match args.deadline {
        Some(s) => format!("{{\"deadline_s\": {s}}}"),
        None => "{}".into(),
    };
    let (status, answer) = http(admin, "POST", "/api/v1/drain", Some(&token), &body)?;
    if status != 200 {
        return Err(format!("the server answered {status}: {}", answer.trim()));
    }
    if !args.wait {
        return Ok(());
    }
    // The server exits at its deadline at the latest; a minute of slack.
    let deadline = args
        .deadline
        .map(Duration::from_secs)
        .or(config.drain_timeout)
        .unwrap_or(Duration::from_secs(24 * 3600));
    let give_up = Instant::now() + deadline + Duration::from_secs(60);
    while http(admin, "GET", "/livez", None, "").is_ok() {
        if Instant::now() > give_up {
            return Err("the server is still running after its drain deadline".into());
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    Ok(())
}

/// A short admin token from the configured secret, else the one generated
/// into the store.
fn token(config: &Config) -> Result<String, String> {
    let secret = match &config.admin_jwt_secret {
        Some(s) => s.0.clone(),
        None => {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| e.to_string())?;
            rt.block_on(async {
                let store = crate::store::Store::open(&config.db).await?;
                store.admin_jwt_secret().await
            })
            .map_err(|e| e.to_string())?
            .0
        }
    };
    crate::admin::token::mint(
        &secret,
        "turnpike drain",
        "admin",
        crate::store::unix_now() as u64,
        300,
    )
    .map_err(|e| e.to_string())
}
