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
            _ => {
                tracing::warn!("admin api: {e}");
                ApiError(StatusCode::SERVICE_UNAVAILABLE, "store unavailable".into())
            }
        }
    }
}
