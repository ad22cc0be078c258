//! `turnpike import coturn-db`: users, secrets, OAuth keys and realm
//! options from coturn's database into turnpike's store.
//!
//! * [`source`]: which backend a URL names.
//! * [`sql`] (SQLite, PostgreSQL, MySQL/MariaDB) and [`redis_db`]: readers,
//!   each into the one [`model`].
//! * [`plan`]: coturn's rows against the store: what to add, what is
//!   already there, what conflicts, what is reported instead.
//! * [`report`]: the lines printed.
//!
//! The source is read whole before the store is opened, so bad input
//! (an unreadable file, a wrong URL, a database that is not coturn's)
//! exits 2 with one line and leaves the store untouched, not even
//! created. The additions are written in one transaction that also reads
//! what it compares against ([`crate::store::Store::add_all`]).

mod model;
mod plan;
mod redis_db;
mod report;
mod source;
mod sql;

use std::process::ExitCode;
use std::time::Duration;

use crate::store::{Contents, Store};
use source::Source;

/// `turnpike import coturn-db URL [--db TARGET] [--dry-run]`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// coturn's database: sqlite:PATH, postgres://, mysql:// (MySQL or MariaDB) or redis://[:PASSWORD@]HOST[:PORT][/DB]; a URL with a password is better given in TURNPIKE_COTURN_DB
    #[arg(env = "TURNPIKE_COTURN_DB", hide_env_values = true)]
    pub url: String,
    /// turnpike's store to import into [default: sqlite:turnpike.db]
    #[arg(long, value_name = "URL", env = "TURNPIKE_DB", hide_env_values = true)]
    pub db: Option<String>,
    /// Print what would change and change nothing
    #[arg(long)]
    pub dry_run: bool,
}

/// Who the audit log says made the changes.
const ACTOR: &str = "import coturn-db";
/// Bad input: the source cannot be read, or the store cannot be opened.
const EXIT_INPUT: u8 = 2;
/// How long reading coturn's database may take (a host that never answers).
const READ_TIMEOUT: Duration = Duration::from_secs(30);

fn fail(code: u8, msg: impl std::fmt::Display) -> ExitCode {
    eprintln!("error: {msg}");
    ExitCode::from(code)
}

/// Runs the import.
pub fn run(args: Args) -> ExitCode {
    let source = match Source::parse(&args.url) {
        Ok(s) => s,
        Err(e) => return fail(EXIT_INPUT, e),
    };
    let target = args
        .db
        .clone()
        .unwrap_or_else(|| crate::config::DEFAULT_DB.to_string());
    let Ok(rt) = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    else {
        return fail(1, "cannot start a runtime");
    };
    rt.block_on(import(source, &target, args.dry_run))
}

async fn read(source: &Source) -> Result<model::CoturnDb, String> {
    let reading = async {
        match source {
            Source::Sqlite(path) => sql::read(&sql::sqlite_url(path)?).await,
            Source::Postgres(url) | Source::Mysql(url) => sql::read(url).await,
            Source::Redis(url) => redis_db::read(url).await,
        }
    };
    tokio::time::timeout(READ_TIMEOUT, reading)
        .await
        .unwrap_or_else(|_| Err(format!("no answer within {} s", READ_TIMEOUT.as_secs())))
}

/// Whether `target` is a SQLite file that does not exist yet (a dry run
/// then compares against an empty store rather than create one).
fn missing_sqlite(target: &str) -> bool {
    target
        .strip_prefix("sqlite:")
        .map(|p| p.trim_start_matches("//"))
        .map(|p| p.split('?').next().unwrap_or(p))
        .is_some_and(|p| p != ":memory:" && !std::path::Path::new(p).exists())
}

async fn import(source: Source, target: &str, dry_run: bool) -> ExitCode {
    let shown = source.shown();
    let db = match read(&source).await {
        Ok(db) => db,
        Err(e) => return fail(EXIT_INPUT, format!("{shown}: {e}")),
    };
    let now = crate::store::unix_now();
    let planned = if dry_run && missing_sqlite(target) {
        plan::plan(&db, &Contents::default(), now)
    } else {
        let store = match Store::open(target).await {
            Ok(s) => s,
            Err(e) => return fail(EXIT_INPUT, e),
        };
        let result = if dry_run {
            store
                .contents()
                .await
                .map(|have| plan::plan(&db, &have, now))
        } else {
            // The plan is made inside the write transaction, from what
            // the store holds then; it comes back out through `made`.
            let mut made = None;
            store
                .add_all(ACTOR, "import.coturn_db", &shown, |have| {
                    let p = plan::plan(&db, have, now);
                    let additions = p.additions.clone();
                    made = Some(p);
                    additions
                })
                .await
                .map(|_| made.expect("the plan ran"))
        };
        store.close().await;
        match result {
            Ok(p) => p,
            Err(e) => return fail(1, e),
        }
    };
    println!(
        "import coturn-db: {shown} into {}{}",
        crate::store::redact(target),
        if dry_run { " (dry run)" } else { "" }
    );
    for line in report::render(&planned, dry_run) {
        println!("{line}");
    }
    let conflicts = planned.count(plan::Outcome::Conflict);
    if conflicts > 0 {
        return fail(
            1,
            format!(
                "{conflicts} conflict{} left as {} (see the report)",
                if conflicts == 1 { "" } else { "s" },
                if conflicts == 1 {
                    "it was"
                } else {
                    "they were"
                }
            ),
        );
    }
    ExitCode::SUCCESS
}
