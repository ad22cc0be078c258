//! Reads coturn's SQL schema (`/usr/share/coturn/schema.sql`) from SQLite,
//! PostgreSQL or MySQL/MariaDB: one set of plain SELECTs through sqlx's Any
//! driver, so the three backends cannot drift apart. Read-only: SQLite is
//! opened with `mode=ro`, the others are only queried.

use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Connection, Row};

use super::model::{AdminUser, CoturnDb, OAuthKey, Origin, PeerRange, RealmOption, Secret, User};

/// Reads every table of coturn's schema from `url` (an sqlx URL). A
/// database without `turnusers_lt` is not coturn's; other tables may be
/// absent (older schemas) and are listed in [`CoturnDb::absent`].
pub(super) async fn read(url: &str) -> Result<CoturnDb, String> {
    sqlx::any::install_default_drivers();
    let mut conn = AnyConnection::connect(url)
        .await
        .map_err(|e| format!("cannot connect: {}", one_line(&e)))?;
    let out = read_tables(&mut conn).await;
    let _ = conn.close().await;
    out
}

/// The sqlx URL of a coturn SQLite file, opened read-only. The file is
/// opened by hand first: a missing or unreadable one gets the system's
/// reason rather than SQLite's "unable to open database file".
pub(super) fn sqlite_url(path: &str) -> Result<String, String> {
    let file = std::fs::File::open(path).map_err(|e| format!("cannot read {path}: {e}"))?;
    if file.metadata().is_ok_and(|m| m.is_dir()) {
        return Err(format!("cannot read {path}: it is a directory"));
    }
    Ok(format!("sqlite://{path}?mode=ro"))
}

async fn read_tables(conn: &mut AnyConnection) -> Result<CoturnDb, String> {
    let mut db = CoturnDb::default();
    // The column is char(128): TRIM drops PostgreSQL's padding and makes
    // it text, which sqlx's Any driver reads (it has no char(n) mapping).
    let users = select(
        conn,
        "SELECT realm, name, TRIM(hmackey) AS hmackey FROM turnusers_lt",
    )
    .await
    .map_err(|e| match e {
        Missing::Table => "not coturn's database: it has no table turnusers_lt".to_string(),
        Missing::Other(e) => format!("not coturn's database: turnusers_lt: {e}"),
    })?;
    for r in &users {
        db.users.push(User {
            realm: txt(r, "realm")?,
            name: txt(r, "name")?,
            hmackey: txt(r, "hmackey")?.trim().to_string(),
        });
    }
    if let Some(rows) = optional(
        conn,
        &mut db,
        "turn_secret",
        "SELECT realm, value FROM turn_secret",
    )
    .await?
    {
        for r in &rows {
            db.secrets.push(Secret {
                realm: txt(r, "realm")?,
                value: txt(r, "value")?,
            });
        }
    }
    let sql = "SELECT kid, ikm_key, timestamp, lifetime, as_rs_alg, realm FROM oauth_key";
    if let Some(rows) = optional(conn, &mut db, "oauth_key", sql).await? {
        for r in &rows {
            db.oauth_keys.push(OAuthKey {
                kid: txt(r, "kid")?,
                ikm_key: txt(r, "ikm_key")?.trim().to_string(),
                timestamp: int(r, "timestamp")?,
                lifetime: int(r, "lifetime")?,
                as_rs_alg: txt(r, "as_rs_alg")?.trim().to_string(),
                realm: txt(r, "realm")?,
            });
        }
    }
    let sql = "SELECT realm, opt, value FROM turn_realm_option";
    if let Some(rows) = optional(conn, &mut db, "turn_realm_option", sql).await? {
        for r in &rows {
            db.realm_options.push(RealmOption {
                realm: txt(r, "realm")?,
                opt: txt(r, "opt")?.trim().to_string(),
                value: txt(r, "value")?.trim().to_string(),
            });
        }
    }
    for (table, list) in [("allowed_peer_ip", true), ("denied_peer_ip", false)] {
        let sql = format!("SELECT realm, ip_range FROM {table}");
        if let Some(rows) = optional(conn, &mut db, table, &sql).await? {
            for r in &rows {
                let range = PeerRange {
                    realm: txt(r, "realm")?,
                    range: txt(r, "ip_range")?.trim().to_string(),
                };
                if list {
                    db.allowed_peers.push(range);
                } else {
                    db.denied_peers.push(range);
                }
            }
        }
    }
    let sql = "SELECT origin, realm FROM turn_origin_to_realm";
    if let Some(rows) = optional(conn, &mut db, "turn_origin_to_realm", sql).await? {
        for r in &rows {
            db.origins.push(Origin {
                origin: txt(r, "origin")?,
                realm: txt(r, "realm")?,
            });
        }
    }
    if let Some(rows) = optional(
        conn,
        &mut db,
        "admin_user",
        "SELECT name, realm FROM admin_user",
    )
    .await?
    {
        for r in &rows {
            db.admin_users.push(AdminUser {
                name: txt(r, "name")?,
                realm: txt(r, "realm")?,
            });
        }
    }
    Ok(db)
}

enum Missing {
    Table,
    Other(String),
}

async fn select(conn: &mut AnyConnection, sql: &str) -> Result<Vec<AnyRow>, Missing> {
    sqlx::query(sql).fetch_all(&mut *conn).await.map_err(|e| {
        if no_such_table(&e) {
            Missing::Table
        } else {
            Missing::Other(one_line(&e))
        }
    })
}

/// The rows of a table that older schemas may lack: None (and the table
/// named in `absent`) if it is missing, an error if it cannot be read.
async fn optional(
    conn: &mut AnyConnection,
    db: &mut CoturnDb,
    table: &'static str,
    sql: &str,
) -> Result<Option<Vec<AnyRow>>, String> {
    match select(conn, sql).await {
        Ok(rows) => Ok(Some(rows)),
        Err(Missing::Table) => {
            db.absent.push(table);
            Ok(None)
        }
        Err(Missing::Other(e)) => Err(format!("not coturn's database: {table}: {e}")),
    }
}

/// "No such table" in each dialect: SQLite's message, PostgreSQL's
/// SQLSTATE 42P01, MySQL's and MariaDB's 42S02.
fn no_such_table(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Database(d) => {
            matches!(d.code().as_deref(), Some("42P01") | Some("42S02"))
                || d.message().contains("no such table")
        }
        _ => false,
    }
}

/// A text column; NULL reads as empty (coturn's columns default to '').
/// Some MySQL collations hand text over as bytes.
fn txt(r: &AnyRow, col: &str) -> Result<String, String> {
    if let Ok(v) = r.try_get::<Option<String>, _>(col) {
        return Ok(v.unwrap_or_default());
    }
    let bytes: Option<Vec<u8>> = r
        .try_get(col)
        .map_err(|e| format!("column {col}: {}", one_line(&e)))?;
    String::from_utf8(bytes.unwrap_or_default())
        .map_err(|_| format!("column {col}: a value is not UTF-8"))
}

/// An integer column, which SQLite may hold as text; NULL reads as 0.
fn int(r: &AnyRow, col: &str) -> Result<i64, String> {
    if let Ok(v) = r.try_get::<Option<i64>, _>(col) {
        return Ok(v.unwrap_or(0));
    }
    let s = txt(r, col)?;
    let s = s.trim();
    if s.is_empty() {
        return Ok(0);
    }
    s.parse()
        .map_err(|_| format!("column {col}: `{s}` is not a number"))
}

/// An sqlx error on one line (database messages may hold newlines).
fn one_line(e: &sqlx::Error) -> String {
    e.to_string()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}
