//! The `turnpike` command line (clap derive).

#![warn(unreachable_pub, missing_debug_implementations)]

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::config::{Config, Options, EXAMPLE_TOML};

mod console_link;
mod drain;
mod generate;
mod health;
mod nat_json;
mod probe;
mod probe_turn;
mod revoke;
mod sd_notify;
mod store;
mod usage;

#[derive(Debug, Parser)]
#[command(name = "turnpike", version, about = "STUN/TURN server")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the server (no config file needed)
    Serve(Box<ServeArgs>),
    /// Check or print configuration
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Long-term users in the store
    User {
        #[command(flatten)]
        db: store::StoreArgs,
        #[command(subcommand)]
        command: store::UserCommand,
    },
    /// REST API shared secrets in the store
    Secret {
        #[command(flatten)]
        db: store::StoreArgs,
        #[command(subcommand)]
        command: store::SecretCommand,
    },
    /// OAuth (RFC 7635) keys in the store
    OauthKey {
        #[command(flatten)]
        db: store::StoreArgs,
        #[command(subcommand)]
        command: store::OAuthKeyCommand,
    },
    /// Allocation and bandwidth quotas in the store
    Quota {
        #[command(flatten)]
        db: store::StoreArgs,
        #[command(subcommand)]
        command: store::QuotaCommand,
    },
    /// Usage records in the store, summed up (as GET /api/v1/usage)
    Usage(Box<usage::UsageArgs>),
    /// Print REST credentials as RTCIceServer JSON; revoke a name (REST
    /// username, user, OAuth kid) on every node
    Credentials(store::CredentialsArgs),
    /// Print a bearer token (JWT) for the admin API
    AdminToken {
        #[command(flatten)]
        db: store::StoreArgs,
        #[command(flatten)]
        args: store::AdminTokenArgs,
    },
    /// Print a URL that opens the web console signed in (a short-lived token in its fragment)
    ConsoleLink(console_link::ConsoleLinkArgs),
    /// Load generator for any TURN server (prints one JSON line)
    #[command(subcommand)]
    Bench(crate::bench::BenchCommand),
    /// Diagnose from this host: the NAT type (RFC 5780), or a TURN server's health
    #[command(subcommand)]
    Probe(probe::ProbeCommand),
    /// Exit 0 if the server of this config answers /livez (or /readyz with
    /// --ready; a STUN Binding when its HTTP listeners are off), else 1
    Health(health::HealthArgs),
    /// Drain the server of this config (new clients go to other nodes; it
    /// exits 0 when its allocations are gone); --wait until it has exited
    Drain(Box<drain::DrainArgs>),
    /// Move from coturn: translate its config, copy its user database
    #[command(subcommand)]
    Import(ImportCommand),
    /// Write the man pages or shell completions (for packagers)
    #[command(subcommand, hide = true)]
    Generate(generate::GenerateCommand),
}

#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// Read settings from this TOML file; flags override it
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    #[command(flatten)]
    pub options: Options,
}

#[derive(Debug, Subcommand)]
pub enum ImportCommand {
    /// Write turnserver.toml from coturn's turnserver.conf, reporting each key
    CoturnConfig(crate::import::coturn_config::Args),
    /// Copy users, secrets, OAuth keys and realm options from coturn's database
    CoturnDb(crate::import::coturn_db::Args),
}

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Validate a config file; exits non-zero with the key at fault
    Check { file: PathBuf },
    /// Print the documented defaults (the example turnserver.toml)
    Default,
}

/// Exit code for configuration and usage errors (as clap uses).
const EXIT_CONFIG: u8 = 2;

/// Runs a parsed command line.
pub fn run(cli: Cli) -> ExitCode {
    match cli.command {
        Command::Config(ConfigCommand::Default) => {
            print!("{EXAMPLE_TOML}");
            ExitCode::SUCCESS
        }
        Command::Config(ConfigCommand::Check { file }) => {
            match Config::load(Some(&file), Options::default()) {
                Ok(_) => {
                    println!("{}: ok", file.display());
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("error: {e}");
                    ExitCode::from(EXIT_CONFIG)
                }
            }
        }
        Command::User { db, command } => store::user(&db, command),
        Command::Secret { db, command } => store::secret(&db, command),
        Command::OauthKey { db, command } => store::oauth_key(&db, command),
        Command::Quota { db, command } => store::quota(&db, command),
        Command::Usage(args) => usage::run(*args),
        Command::Credentials(args) => store::credentials(args),
        Command::AdminToken { db, args } => store::admin_token(&db, args),
        Command::ConsoleLink(args) => console_link::run(args),
        Command::Probe(cmd) => probe::run(cmd),
        Command::Health(args) => health::run(args),
        Command::Import(ImportCommand::CoturnConfig(args)) => {
            crate::import::coturn_config::run(args)
        }
        Command::Import(ImportCommand::CoturnDb(args)) => crate::import::coturn_db::run(args),
        Command::Drain(args) => drain::run(*args),
        Command::Generate(cmd) => generate::run(cmd),
        Command::Bench(cmd) => match crate::bench::run(cmd) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: {e:#}");
                ExitCode::FAILURE
            }
        },
        Command::Serve(args) => {
            let args = *args;
            let flags = args.options.clone();
            let (config, layered) = match Config::load_layered(args.config.as_deref(), args.options)
            {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("error: {e}");
                    return ExitCode::from(EXIT_CONFIG);
                }
            };
            let log = init_tracing(&config.log_level, &config.log_format);
            for w in &config.warnings {
                tracing::warn!("{w}");
            }
            let source = (args.config.clone(), flags, layered);
            match serve_until_signal(config, source, log) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("error: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

/// The log subscriber: a level filter and a text or JSON formatter, each
/// behind a reload handle so that a reload can change both.
fn init_tracing(level: &str, format: &str) -> crate::net::reload::LogSetter {
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;
    use tracing_subscriber::{filter::LevelFilter, reload};
    let parse = |level: &str| level.parse().unwrap_or(LevelFilter::INFO);
    let (levels, level_handle) = reload::Layer::new(parse(level));
    let (fmt, fmt_handle) = reload::Layer::new(log_format(format));
    tracing_subscriber::registry().with(levels).with(fmt).init();
    Box::new(move |level, format| {
        level_handle
            .reload(parse(level))
            .and_then(|()| fmt_handle.reload(log_format(format)))
            .map_err(|e| format!("log_level: {e}"))
    })
}

type LevelLayer = tracing_subscriber::reload::Layer<
    tracing_subscriber::filter::LevelFilter,
    tracing_subscriber::Registry,
>;
type Leveled = tracing_subscriber::layer::Layered<LevelLayer, tracing_subscriber::Registry>;
type FormatLayer = Box<dyn tracing_subscriber::Layer<Leveled> + Send + Sync>;

/// The formatter for `format`: "json", or text.
fn log_format(format: &str) -> FormatLayer {
    let fmt = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    if format == "json" {
        // One flat object per line, for log shippers: the message and the
        // event's fields sit beside timestamp, level and target.
        Box::new(
            fmt.json()
                .flatten_event(true)
                .with_current_span(false)
                .with_span_list(false),
        )
    } else {
        // The `event` name is for machines (JSON); text lines stay as they
        // were, ending with what scripts read (an address, a reason).
        let fields =
            tracing_subscriber::fmt::format::debug_fn(|w, field, value| match field.name() {
                "event" => Ok(()),
                "message" => write!(w, "{value:?}"),
                name => write!(w, " {name}={value:?}"),
            });
        Box::new(
            fmt.with_target(false)
                .fmt_fields(fields)
                .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr())),
        )
    }
}

fn serve_until_signal(
    config: Config,
    (file, flags, layered): (Option<PathBuf>, Options, Options),
    log: crate::net::reload::LogSetter,
) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let notify = sd_notify::Notifier::from_env().map(std::sync::Arc::new);
    rt.block_on(async {
        // SIGHUP's default action ends the process: take it over first.
        let hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())?;
        // SIGUSR1's too: it drains (issue 15).
        let usr1 = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::user_defined1())?;
        let signal = shutdown_signal();
        let stopping = notify.clone();
        let shutdown = async move {
            signal.await;
            if let Some(n) = stopping {
                n.send("STOPPING=1");
            }
        };
        let running = crate::serve(config, shutdown).await?;
        running.reloader().set_source(file, flags, layered);
        running.reloader().set_log(log);
        if let Some(n) = &notify {
            // Every listener is bound and the store snapshot loaded.
            n.send("READY=1\nSTATUS=serving");
            tokio::spawn(feed_systemd(n.clone(), running.registry().clone()));
        }
        tokio::spawn(reload_on_hangup(
            hangup,
            running.reloader().clone(),
            notify.clone(),
        ));
        tokio::spawn(drain_on_usr1(usr1, running.drainer()));
        running.wait().await;
        tracing::info!("stopped");
        Ok(())
    })
}

/// SIGHUP reads the config file and the TLS certificate again (coturn
/// needs a restart for most keys); an invalid file changes nothing.
async fn reload_on_hangup(
    mut hangup: tokio::signal::unix::Signal,
    reloader: std::sync::Arc<crate::net::reload::Reloader>,
    notify: Option<std::sync::Arc<sd_notify::Notifier>>,
) {
    while hangup.recv().await.is_some() {
        if let Some(n) = &notify {
            n.send(&format!(
                "RELOADING=1\nMONOTONIC_USEC={}",
                sd_notify::monotonic_usec()
            ));
        }
        match reloader.reload() {
            Ok(r) => r.log("SIGHUP"),
            Err(e) => tracing::warn!(
                event = "reload",
                "SIGHUP: reload refused, nothing changed: {e}"
            ),
        }
        if let Some(n) = &notify {
            n.send("READY=1");
        }
    }
}

/// Feeds systemd's watchdog at half its period while every worker reports
/// (they do once a second; a stuck one stops), and keeps STATUS= current
/// with the allocations and the relayed rate.
async fn feed_systemd(
    notify: std::sync::Arc<sd_notify::Notifier>,
    registry: std::sync::Arc<crate::net::control::Registry>,
) {
    use std::time::{Duration, Instant};
    let watchdog = sd_notify::watchdog_every();
    let every = watchdog.unwrap_or(Duration::from_secs(10));
    let relayed = |r: &crate::net::control::Registry| {
        let s = r.stats();
        s.to_peer.bytes + s.to_client.bytes
    };
    let mut last = (Instant::now(), relayed(&registry));
    let mut stuck = false;
    loop {
        tokio::time::sleep(every).await;
        let (now, bytes) = (Instant::now(), relayed(&registry));
        let secs = now.duration_since(last.0).as_secs_f64().max(0.001);
        let mbps = bytes.saturating_sub(last.1) as f64 * 8.0 / secs / 1e6;
        last = (now, bytes);
        let allocations: usize = registry.sessions().len();
        let status = format!("STATUS={allocations} allocations, {mbps:.1} Mbit/s relayed");
        // Two report periods of slack before a worker counts as stuck.
        let alive = registry.workers_alive(Duration::from_secs(3));
        if alive && watchdog.is_some() {
            notify.send(&format!("WATCHDOG=1\n{status}"));
        } else {
            notify.send(&status);
        }
        if alive == stuck {
            stuck = !alive;
            if stuck {
                tracing::warn!("a worker has not reported for 3 s: the watchdog is not fed");
            } else {
                tracing::info!("every worker reports again");
            }
        }
    }
}

/// SIGUSR1 drains the node with the configured `drain_timeout`: new
/// Allocates go to other nodes, and the process exits 0 once its
/// allocations are down to `drain_min_allocations` or at the deadline.
async fn drain_on_usr1(mut usr1: tokio::signal::unix::Signal, drainer: crate::net::Drainer) {
    while usr1.recv().await.is_some() {
        tracing::info!(event = "drain", "SIGUSR1: draining");
        drainer.drain().await;
    }
}

/// Completes on SIGINT or SIGTERM. The handlers are installed now, before
/// the server logs that it listens: a signal sent as soon as the listening
/// lines appear must stop it cleanly, not kill it.
fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    use tokio::signal::unix::{signal, SignalKind};
    let term = signal(SignalKind::terminate());
    let int = signal(SignalKind::interrupt());
    async move {
        match (term, int) {
            (Ok(mut term), Ok(mut int)) => {
                tokio::select! {
                    _ = int.recv() => tracing::info!("SIGINT: shutting down"),
                    _ = term.recv() => tracing::info!("SIGTERM: shutting down"),
                }
            }
            _ => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
}
