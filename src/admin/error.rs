//! The admin API's error answer: a status and a one-line JSON
//! `{"error": ..., "status": ...}`.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;

use crate::store::StoreError;

/// An error answer: status and a one-line JSON `{"error": ...}`.
#[derive(Debug)]
pub(crate) struct ApiError(pub(super) StatusCode, pub(super) String);

impl ApiError {
    pub(crate) fn bad_request(msg: impl Into<String>) -> Self {
        ApiError(StatusCode::BAD_REQUEST, msg.into())
    }
    pub(crate) fn not_found(msg: impl Into<String>) -> Self {
        ApiError(StatusCode::NOT_FOUND, msg.into())
    }
    pub(crate) fn forbidden() -> Self {
        ApiError(
            StatusCode::FORBIDDEN,
            "token scope does not cover this realm".into(),
        )
    }
    pub(super) fn unauthorized() -> Self {
        ApiError(
            StatusCode::UNAUTHORIZED,
            "missing, invalid or expired bearer token".into(),
        )
    }
    /// 503: the store cannot be reached (or is busy); nothing changed.
    pub(crate) fn store_unavailable() -> Self {
        ApiError(StatusCode::SERVICE_UNAVAILABLE, "store unavailable".into())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({"error": self.1, "status": self.0.as_u16()});
        (self.0, Json(body)).into_response()
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Exists { .. } => ApiError(StatusCode::CONFLICT, e.to_string()),
            StoreError::NotFound { .. } => ApiError(StatusCode::NOT_FOUND, e.to_string()),
            StoreError::Invalid { .. } => ApiError(StatusCode::BAD_REQUEST, e.to_string()),
            StoreError::Full { .. } => ApiError(StatusCode::INSUFFICIENT_STORAGE, e.to_string()),
            _ if unavailable(&e) => {
                tracing::warn!("admin api: {e}");
                ApiError::store_unavailable()
            }
            // A fault of ours (a query the schema does not fit, a row that
            // does not decode): the details go to the log, not the caller.
            _ => {
                tracing::error!("admin api: {e}");
                ApiError(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal store error".into(),
                )
            }
        }
    }
}

/// Whether `e` says the store cannot be reached or cannot serve now (a
/// 503 worth retrying: connection lost or refused, pool timed out, the
/// database gone, shutting down, out of connections, or a SQLite file
/// busy or unreadable), rather than a fault in the request or the server.
pub(crate) fn unavailable(e: &StoreError) -> bool {
    match e {
        StoreError::Open { .. } => true,
        StoreError::Db(e) => db_unavailable(e),
        _ => false,
    }
}

fn db_unavailable(e: &sqlx::Error) -> bool {
    use sqlx::Error as E;
    match e {
        E::Io(_)
        | E::Tls(_)
        | E::Protocol(_)
        | E::PoolTimedOut
        | E::PoolClosed
        | E::WorkerCrashed
        | E::BeginFailed => true,
        E::Database(db) => {
            if let Some(pg) = db.try_downcast_ref::<sqlx::postgres::PgDatabaseError>() {
                pg_unavailable(pg.code())
            } else if db.try_downcast_ref::<sqlx::sqlite::SqliteError>().is_some() {
                db.code().is_some_and(|c| sqlite_unavailable(&c))
            } else {
                false
            }
        }
        _ => false,
    }
}

/// PostgreSQL SQLSTATEs of a database that cannot serve: connection
/// exceptions (08), refused logins (28), the database gone (3D000),
/// insufficient resources (53: too many connections, disk full) and
/// operator intervention (57P: shutdown, cannot connect now, dropped).
fn pg_unavailable(code: &str) -> bool {
    ["08", "28", "3D", "53", "57P"]
        .iter()
        .any(|class| code.starts_with(class))
}

/// SQLite result codes (the primary code is the low byte of the extended
/// one) of a file that cannot serve now: BUSY (5), LOCKED (6), IOERR (10),
/// FULL (13), CANTOPEN (14).
fn sqlite_unavailable(code: &str) -> bool {
    code.parse::<i32>()
        .is_ok_and(|c| matches!(c & 0xff, 5 | 6 | 10 | 13 | 14))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(e: StoreError) -> StatusCode {
        ApiError::from(e).0
    }

    #[test]
    fn a_lost_or_timed_out_connection_is_503_and_a_fault_of_ours_is_500() {
        let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        for e in [
            sqlx::Error::Io(refused),
            sqlx::Error::PoolTimedOut,
            sqlx::Error::PoolClosed,
            sqlx::Error::Protocol("unexpected message".into()),
            sqlx::Error::Tls("handshake".into()),
        ] {
            assert_eq!(status(StoreError::Db(e)), StatusCode::SERVICE_UNAVAILABLE);
        }
        for e in [
            sqlx::Error::RowNotFound,
            sqlx::Error::ColumnNotFound("n".into()),
            sqlx::Error::Decode("bad utf-8".into()),
        ] {
            assert_eq!(status(StoreError::Db(e)), StatusCode::INTERNAL_SERVER_ERROR);
        }
        let body = ApiError::from(StoreError::Db(sqlx::Error::PoolTimedOut));
        assert_eq!(body.1, "store unavailable");
        let what = "user x".to_string();
        assert_eq!(status(StoreError::Exists { what }), StatusCode::CONFLICT);
    }

    #[test]
    fn sqlstates_and_sqlite_codes_of_a_store_that_cannot_serve() {
        for code in [
            "08006", "08001", "28P01", "3D000", "53300", "57P01", "57P04",
        ] {
            assert!(pg_unavailable(code), "{code}");
        }
        for code in ["23505", "42P01", "22001", "40001"] {
            assert!(!pg_unavailable(code), "{code}");
        }
        // BUSY, BUSY_SNAPSHOT (517), IOERR_READ (266), CANTOPEN.
        for code in ["5", "517", "266", "14"] {
            assert!(sqlite_unavailable(code), "{code}");
        }
        // CONSTRAINT_UNIQUE (2067), ERROR (1), not a number.
        for code in ["2067", "1", "x"] {
            assert!(!sqlite_unavailable(code), "{code}");
        }
    }
}
