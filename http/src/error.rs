//! The one place where failures become HTTP statuses.
//!
//! Every 4xx/5xx carries `{"error": "<kind>", "message": "<sentence>"}`
//! (SPEC §3). Handlers return [`ApiError`]; nothing else picks a status.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use dynamo_core::wire::OpError;
use serde_json::json;

/// A request that could not be served.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// Malformed input (context, quorum, empty key).
    #[error("{0}")]
    BadRequest(String),
    /// Missing or wrong bearer token.
    #[error("a valid bearer token is required")]
    Unauthorized,
    /// The key is longer than allowed.
    #[error("key is {0} bytes; the limit is {limit}", limit = dynamo_core::config::MAX_KEY_BYTES)]
    KeyTooLong(usize),
    /// The value is larger than `max_value_bytes`.
    #[error("value is larger than the limit of {0} bytes")]
    ValueTooLarge(usize),
    /// The client was too slow sending its request.
    #[error("{0}")]
    Timeout(String),
    /// Nothing at this path.
    #[error("{0}")]
    NotFound(String),
    /// Route exists, method does not.
    #[error("method {0} is not allowed here")]
    MethodNotAllowed(String),
    /// The request conflicts with the cluster's state (e.g. the last
    /// member asked to leave).
    #[error("{0}")]
    Conflict(String),
    /// Quorum not reached.
    #[error("{0}")]
    Unavailable(String),
    /// The node failed.
    #[error("{0}")]
    Internal(String),
}

impl ApiError {
    /// The machine-readable kind.
    pub fn kind(&self) -> &'static str {
        match self {
            ApiError::BadRequest(_) => "bad_request",
            ApiError::Unauthorized => "unauthorized",
            ApiError::KeyTooLong(_) => "key_too_long",
            ApiError::ValueTooLarge(_) => "value_too_large",
            ApiError::Timeout(_) => "request_timeout",
            ApiError::NotFound(_) => "not_found",
            ApiError::MethodNotAllowed(_) => "method_not_allowed",
            ApiError::Conflict(_) => "conflict",
            ApiError::Unavailable(_) => "unavailable",
            ApiError::Internal(_) => "internal",
        }
    }
}

impl From<OpError> for ApiError {
    fn from(e: OpError) -> Self {
        match e {
            OpError::Unavailable { .. } => ApiError::Unavailable(e.to_string()),
            OpError::BadRequest(m) => ApiError::BadRequest(m),
            OpError::Conflict(m) => ApiError::Conflict(m),
            OpError::Internal(m) => ApiError::Internal(m),
        }
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized => StatusCode::UNAUTHORIZED,
            ApiError::KeyTooLong(_) => StatusCode::URI_TOO_LONG,
            ApiError::ValueTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::Timeout(_) => StatusCode::REQUEST_TIMEOUT,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        HttpResponse::build(self.status_code()).json(json!({"error": self.kind(), "message": self.to_string()}))
    }
}
