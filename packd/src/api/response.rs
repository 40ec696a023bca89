//! Responses: snapd's envelope, and the one place daemon errors map to HTTP statuses.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use super::types::{Envelope, ErrorResult};
use crate::error::Error;

/// An error answer: status, stable kind, one clear sentence.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub kind: &'static str,
    pub message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, kind: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            kind,
            message: message.into(),
        }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad-request", message)
    }

    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "permission-denied", message)
    }
}

/// The one place a daemon error becomes an answer: its kind fixes the HTTP status.
impl<E: Into<Error>> From<E> for ApiError {
    fn from(e: E) -> Self {
        let e: Error = e.into();
        let kind = e.kind();
        let status =
            StatusCode::from_u16(kind.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        if status.is_server_error() {
            tracing::error!(error = %e, "request failed");
        }
        ApiError::new(status, kind.as_str(), e.to_string())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = Envelope {
            kind: "error".into(),
            status_code: self.status.as_u16(),
            status: self.status.canonical_reason().unwrap_or("").into(),
            result: serde_json::to_value(ErrorResult {
                message: self.message,
                kind: self.kind.into(),
            })
            .unwrap_or_default(),
            change: None,
        };
        (self.status, Json(body)).into_response()
    }
}

pub type ApiResult<T = Response> = Result<T, ApiError>;

/// `200 {"type": "sync", "result": …}`.
pub fn sync<T: Serialize>(result: T) -> Response {
    let body = Envelope {
        kind: "sync".into(),
        status_code: 200,
        status: "OK".into(),
        result: serde_json::to_value(result).unwrap_or_default(),
        change: None,
    };
    Json(body).into_response()
}

/// `202 {"type": "async", "change": ID}`.
pub fn accepted(change: u64) -> Response {
    let body = Envelope {
        kind: "async".into(),
        status_code: 202,
        status: "Accepted".into(),
        result: serde_json::Value::Null,
        change: Some(change.to_string()),
    };
    (StatusCode::ACCEPTED, Json(body)).into_response()
}
