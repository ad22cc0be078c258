//! The credential store: sqlx over SQLite (the default, a file created and
//! migrated on first open) or PostgreSQL (several nodes, one user base).
//!
//! One `AnyPool` serves both: every query is written once with `$N`
//! placeholders (which SQLite reads too) and bound, never formatted. Names
//! are stored as bytes and tables are keyed by a hash of them, so any name
//! an admin types round-trips verbatim. Every change bumps `revision` in
//! the same transaction; running servers poll it ([`Store::revision`]) and
//! reload a whole [`Snapshot`] when it moves. With PostgreSQL the bump is
//! also announced on [`REVISION_CHANNEL`], so they reload at once.
//!
//! * [`users`]: long-term users (HA1 keys only).
//! * [`keys`]: REST secrets, OAuth keys, the admin token secret.
//! * [`quotas`]: per-user and per-realm limits.
//! * [`revocations`]: revoked names (REST usernames, users, OAuth kids).
//! * [`contents`]: everything at once, and additions in one transaction
//!   (imports).

#![warn(unreachable_pub, missing_debug_implementations)]

pub(crate) mod contents;
pub(crate) mod fleet_quota;
pub(crate) mod fleet_sessions;
pub(crate) mod keys;
pub(crate) mod nodes;
pub(crate) mod outbox;
pub(crate) mod quotas;
pub(crate) mod revocations;
pub(crate) mod usage;
pub(crate) mod users;

use std::time::{SystemTime, UNIX_EPOCH};

use sha2::{Digest, Sha256};
use std::str::FromStr;

use sqlx::any::{AnyConnectOptions, AnyPoolOptions, AnyRow};
use sqlx::{AnyPool, ConnectOptions, Row};

pub use contents::{Addition, Contents, StoredOAuthKey, StoredSecret, StoredUser};
pub use keys::{OAuthKeyRow, SecretRow};
pub use quotas::QuotaRow;
pub use revocations::RevocationRow;
pub use users::UserRow;

/// A store operation that did not happen; nothing was changed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{what} already exists")]
    Exists { what: String },
    #[error("{what} does not exist")]
    NotFound { what: String },
    /// A bounded table is full: {what} says which and its bounds.
    #[error("table full: {what}")]
    Full { what: String },
    #[error("invalid {field}: {reason}")]
    Invalid { field: &'static str, reason: String },
    #[error("cannot open store {url}: {reason}")]
    Open { url: String, reason: String },
    #[error("store: {0}")]
    Db(#[from] sqlx::Error),
    #[error("store migration: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Sqlite,
    Postgres,
}

/// An open, migrated store.
#[derive(Clone)]
pub struct Store {
    pool: AnyPool,
    kind: Kind,
}

// By hand: the pool's options may hold the database password.
impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("kind", &self.kind)
            .finish_non_exhaustive()
    }
}

static SQLITE: sqlx::migrate::Migrator = sqlx::migrate!("migrations/sqlite");
static POSTGRES: sqlx::migrate::Migrator = sqlx::migrate!("migrations/postgres");

/// The NOTIFY channel of revision bumps (PostgreSQL).
pub(crate) const REVISION_CHANNEL: &str = "turnpike_revision";

/// Unix seconds now.
pub(crate) fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// Unix milliseconds now (heartbeats).
pub(crate) fn unix_now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// The row key of a tuple of names: SHA-256 over each name's length and
/// bytes, in hex (names may be any length; keys are fixed).
pub(crate) fn row_key(parts: &[&str]) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update((p.len() as u64).to_be_bytes());
        h.update(p.as_bytes());
    }
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// A stored name back as text (it went in as text).
pub(crate) fn text(row: &AnyRow, col: &str) -> Result<String, sqlx::Error> {
    let bytes: Vec<u8> = row.try_get(col)?;
    String::from_utf8(bytes).map_err(|e| sqlx::Error::Decode(Box::new(e)))
}

impl Store {
    /// Opens `url` (`sqlite:PATH` or `postgres://...`), creating a SQLite
    /// file and its directory if missing, and applies migrations.
    pub async fn open(url: &str) -> Result<Store, StoreError> {
        sqlx::any::install_default_drivers();
        let open_err = |reason: String| StoreError::Open {
            url: redact(url),
            reason,
        };
        let (kind, connect) = if let Some(path) = url.strip_prefix("sqlite:") {
            let path = path.trim_start_matches("//");
            let file = path.split('?').next().unwrap_or(path);
            if file.is_empty() {
                return Err(open_err("no file name".into()));
            }
            if let Some(dir) = std::path::Path::new(file).parent() {
                if !dir.as_os_str().is_empty() {
                    std::fs::create_dir_all(dir).map_err(|e| open_err(e.to_string()))?;
                }
            }
            if file != ":memory:" {
                create_private(std::path::Path::new(file))
                    .map_err(|e| open_err(format!("{file}: {e}")))?;
            }
            let sep = if path.contains('?') { '&' } else { '?' };
            (Kind::Sqlite, format!("sqlite://{path}{sep}mode=rwc"))
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            (Kind::Postgres, url.to_string())
        } else {
            return Err(open_err("expected sqlite:PATH or postgres://...".into()));
        };
        // The sync loop polls every second: statements are logged at trace
        // only, or a debug log would get a line a second.
        let options = AnyConnectOptions::from_str(&connect)
            .map_err(|e| open_err(e.to_string()))?
            .log_statements(log::LevelFilter::Trace);
        let pool = AnyPoolOptions::new()
            .max_connections(if kind == Kind::Sqlite { 4 } else { 8 })
            .acquire_timeout(acquire_timeout(kind))
            // No idle reaper: sqlx 0.8's maintenance task can spin forever
            // (a counter underflow, sqlx issue #3645, fixed by PR #4289 but
            // in no release yet), and a spinning task also hangs shutdown.
            // A handful of connections kept open costs nothing.
            .idle_timeout(None)
            .max_lifetime(None)
            .min_connections(0)
            .connect_lazy_with(options);
        first_connection(&pool)
            .await
            .map_err(|e| open_err(e.to_string()))?;
        if kind == Kind::Sqlite {
            // WAL lets the CLI write while a server reads.
            sqlx::query("PRAGMA journal_mode=WAL")
                .execute(&pool)
                .await?;
        }
        match kind {
            Kind::Sqlite => SQLITE.run(&pool).await?,
            Kind::Postgres => POSTGRES.run(&pool).await?,
        }
        Ok(Store { pool, kind })
    }

    /// Starts a transaction that will write. On SQLite it takes the write
    /// lock up front (`BEGIN IMMEDIATE`): a deferred transaction that reads
    /// and then writes cannot wait for another writer and fails at once
    /// with "database is locked", while an immediate one waits (busy
    /// timeout, 5 s) like any other writer.
    pub(crate) async fn write(&self) -> Result<sqlx::Transaction<'static, sqlx::Any>, StoreError> {
        Ok(match self.kind {
            Kind::Sqlite => self.pool.begin_with("BEGIN IMMEDIATE").await?,
            Kind::Postgres => self.pool.begin().await?,
        })
    }

    /// Closes the pool (the CLI calls this before exiting).
    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// The change counter.
    pub(crate) async fn revision(&self) -> Result<i64, StoreError> {
        let row = sqlx::query("SELECT n FROM revision WHERE id = 1")
            .fetch_one(&self.pool)
            .await?;
        Ok(row.try_get::<i64, _>("n")?)
    }

    /// [`Self::snapshot`] of each realm (issue 19: tenant realms).
    pub(crate) async fn snapshots(&self, realms: &[String]) -> Result<Snapshots, StoreError> {
        let mut out = Vec::with_capacity(realms.len());
        for realm in realms {
            out.push((realm.clone(), self.snapshot(realm).await?));
        }
        Ok(out)
    }

    /// Everything the server needs for one realm.
    pub(crate) async fn snapshot(&self, realm: &str) -> Result<Snapshot, StoreError> {
        Ok(Snapshot {
            users: self.user_keys(realm).await?,
            secrets: self.secret_values(realm).await?,
            oauth_keys: self.oauth_keys().await?,
            user_quotas: self.user_quotas(realm).await?,
            realm_quota: self.realm_quota(realm).await?,
            revoked: self.revoked_names(realm, unix_now()).await?,
        })
    }

    /// Commits a change: bumps the revision and writes the audit line in
    /// the same transaction. `actor` is who asked (`cli`, `api:SUBJECT`).
    pub(crate) async fn commit(
        &self,
        mut tx: sqlx::Transaction<'_, sqlx::Any>,
        actor: &str,
        action: &str,
        target: &str,
    ) -> Result<(), StoreError> {
        sqlx::query("UPDATE revision SET n = n + 1 WHERE id = 1")
            .execute(&mut *tx)
            .await?;
        sqlx::query("INSERT INTO audit_log (at, actor, action, target) VALUES ($1, $2, $3, $4)")
            .bind(unix_now())
            .bind(actor)
            .bind(action)
            .bind(target.as_bytes().to_vec())
            .execute(&mut *tx)
            .await?;
        self.notify(&mut tx, REVISION_CHANNEL, "").await?;
        tx.commit().await?;
        Ok(())
    }

    /// Whether this store is PostgreSQL (it can LISTEN).
    pub(crate) fn is_postgres(&self) -> bool {
        self.kind == Kind::Postgres
    }

    /// The last `limit` audit lines, newest first: (at, actor, action, target).
    /// Only tests read the log back; operators query the table.
    #[cfg(test)]
    pub(crate) async fn audit(
        &self,
        limit: i64,
    ) -> Result<Vec<(i64, String, String, String)>, StoreError> {
        let rows = sqlx::query(
            "SELECT at, actor, action, target FROM audit_log ORDER BY id DESC LIMIT $1",
        )
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok((
                    r.try_get("at")?,
                    r.try_get("actor")?,
                    r.try_get("action")?,
                    text(r, "target")?,
                ))
            })
            .collect()
    }
}

/// Each served realm's snapshot, by name, the default realm first.
pub type Snapshots = Vec<(String, Snapshot)>;

/// The store's content for one realm, as the server loads it.
#[derive(Debug, Default, Clone)]
pub struct Snapshot {
    pub users: Vec<(String, crate::auth::UserKeys)>,
    pub secrets: Vec<crate::auth::rest::Secret>,
    pub oauth_keys: Vec<(String, crate::auth::oauth::OAuthKey)>,
    pub user_quotas: Vec<(String, crate::auth::Quota)>,
    pub realm_quota: crate::auth::Quota,
    /// Live revoked names and when each revocation ends (Unix seconds).
    pub revoked: Vec<(String, Option<u64>)>,
}

/// Creates a missing SQLite file with mode 0600, whatever the umask: it
/// holds REST secrets, OAuth keys and the admin token secret. SQLite gives
/// the `-wal` and `-shm` files the database file's mode, so they are
/// private too. An existing file keeps its mode (an operator may share it
/// with a group on purpose) but gets a warning if others can read it.
fn create_private(path: &std::path::Path) -> std::io::Result<()> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let created = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path);
    match created {
        // The umask may have taken bits away (0o200 would make it
        // read-only): set the mode exactly.
        Ok(f) => f.set_permissions(std::fs::Permissions::from_mode(0o600)),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            if let Ok(m) = std::fs::metadata(path) {
                if m.permissions().mode() & 0o004 != 0 {
                    tracing::warn!(
                        "{} is readable by every local user (mode {:o}) and holds secrets: chmod 600 it",
                        path.display(),
                        m.permissions().mode() & 0o777
                    );
                }
            }
            Ok(())
        }
        Err(e) => Err(e),
    }
}

/// How long a statement waits for a connection. PostgreSQL's is short so
/// that with the database unreachable the admin API answers 503 within a
/// couple of seconds (a connection attempt is bounded by it too); a SQLite
/// file only waits for its own writers.
fn acquire_timeout(kind: Kind) -> std::time::Duration {
    std::time::Duration::from_secs(if kind == Kind::Sqlite { 10 } else { 2 })
}

/// At start a database that is still coming up (refused, timed out) gets
/// 10 s, as before the short acquire timeout; any other error ends at once.
async fn first_connection(pool: &AnyPool) -> Result<(), sqlx::Error> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        match pool.acquire().await {
            Ok(_) => return Ok(()),
            Err(sqlx::Error::PoolTimedOut) if std::time::Instant::now() < deadline => {}
            Err(e) => return Err(e),
        }
    }
}

/// A URL with any password removed, for messages: the `user:pass@` form
/// and query parameters such as `?password=` or `&sslpassword=`.
pub(crate) fn redact(url: &str) -> String {
    // A password may hold `?`: the query starts after the last `@`.
    let host_from = url.rfind('@').unwrap_or(0);
    let (base, query) = match url[host_from..].find('?') {
        Some(q) => (&url[..host_from + q], Some(&url[host_from + q + 1..])),
        None => (url, None),
    };
    let mut out = match (base.find("://"), base.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let creds = &base[s + 3..at];
            match creds.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &base[..s + 3], &base[at..]),
                None => base.to_string(),
            }
        }
        _ => base.to_string(),
    };
    if let Some(q) = query {
        let pairs: Vec<String> = q
            .split('&')
            .map(|pair| match pair.split_once('=') {
                Some((k, _)) if secret_param(k) => format!("{k}=***"),
                _ => pair.to_string(),
            })
            .collect();
        out.push('?');
        out.push_str(&pairs.join("&"));
    }
    out
}

/// Query parameters that carry a secret (libpq's `password`,
/// `sslpassword`; any spelling that contains one of these words).
fn secret_param(key: &str) -> bool {
    let k = key.to_ascii_lowercase();
    ["password", "passwd", "pwd", "secret", "token"]
        .iter()
        .any(|w| k.contains(w))
}

#[cfg(test)]
mod tests;
