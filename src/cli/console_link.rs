//! `turnpike console-link`: a URL that opens the web console signed in.
//!
//! The short-lived admin token rides in the URL's fragment, which a
//! browser never sends to a server, so it reaches no access log or proxy;
//! the console moves it to `sessionStorage` and clears the address bar.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use crate::config::{Config, Options};

#[derive(Debug, clap::Args)]
pub struct ConsoleLinkArgs {
    /// The server's config file: its admin_listen, admin_tls, db and admin_jwt_secret
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// How long the link signs in for: seconds, or with a unit (15m, 1h)
    #[arg(long, default_value = "15m")]
    pub ttl: String,
    /// `admin` or `realm:NAME`
    #[arg(long, default_value = "admin")]
    pub scope: String,
    /// Who the token names (shown in the audit log)
    #[arg(long, default_value = "console")]
    pub subject: String,
    /// The admin listener as the browser reaches it, e.g. https://turn.example.com:9641 [default: from admin_listen]
    #[arg(long, value_name = "URL")]
    pub url: Option<String>,
}

/// Longer than a working day is what `admin-token` is for.
const MAX_TTL: u64 = 24 * 3600;

pub(super) fn run(a: ConsoleLinkArgs) -> ExitCode {
    match link(a) {
        Ok(url) => {
            println!("{url}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn link(a: ConsoleLinkArgs) -> Result<String, String> {
    let ttl = crate::admin::token::parse_ttl(&a.ttl)
        .filter(|t| (1..=MAX_TTL).contains(t))
        .ok_or_else(|| format!("--ttl `{}`: expected 1 s to 24h, e.g. 15m", a.ttl))?;
    let config =
        Config::load(a.config.as_deref(), Options::default()).map_err(|e| e.to_string())?;
    let base = match a.url {
        Some(u) => u.trim_end_matches('/').to_string(),
        None => base_url(&config)?,
    };
    let secret = match &config.admin_jwt_secret {
        Some(s) => s.0.clone(),
        None => stored_secret(&config.db)?,
    };
    let now = crate::store::unix_now().max(0) as u64;
    let token = crate::admin::token::mint(&secret, &a.subject, &a.scope, now, ttl)
        .map_err(|e| format!("--scope `{}`: {e}", a.scope))?;
    Ok(format!("{base}/console/#token={token}"))
}

/// The admin listener's URL; a wildcard address is reached on loopback
/// (or by `external_name`, when the node has one).
fn base_url(c: &Config) -> Result<String, String> {
    let addr: SocketAddr = c
        .admin_listen
        .ok_or("admin_listen is off: the console is served on the admin listener")?;
    let scheme = if c.admin_tls { "https" } else { "http" };
    let host = match (addr.ip().is_unspecified(), &c.external_name) {
        (true, Some(name)) => name.clone(),
        (true, None) if addr.is_ipv6() => "[::1]".into(),
        (true, None) => "127.0.0.1".into(),
        (false, _) if addr.is_ipv6() => format!("[{}]", addr.ip()),
        (false, _) => addr.ip().to_string(),
    };
    Ok(format!("{scheme}://{host}:{}", addr.port()))
}

fn stored_secret(db: &str) -> Result<Vec<u8>, String> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    rt.block_on(async {
        let store = crate::store::Store::open(db)
            .await
            .map_err(|e| e.to_string())?;
        let secret = store.admin_jwt_secret().await.map_err(|e| e.to_string());
        store.close().await;
        secret.map(|s| s.0)
    })
}
