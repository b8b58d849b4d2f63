//! Errors in the `google.rpc.Status` JSON form Conduit's API answers with:
//! `{"code":5,"message":"…","details":[]}`, the HTTP status taken from the gRPC code.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// An error: a gRPC status code, what went wrong, and no details.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Status {
    /// The gRPC status code (3 invalid argument, 5 not found, 6 already exists, 9
    /// failed precondition, 12 unimplemented, 13 internal, 16 unauthenticated).
    pub code: i32,
    /// What went wrong, for a person.
    pub message: String,
    /// Always empty.
    #[schema(value_type = Vec<Object>)]
    pub details: Vec<serde_json::Value>,
}

impl Status {
    /// An error with gRPC `code`.
    pub fn new(code: i32, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            details: Vec::new(),
        }
    }

    /// The request is wrong (400).
    pub fn invalid_argument(message: impl Into<String>) -> Self {
        Self::new(3, message)
    }

    /// No such pipeline, connector, processor or plugin (404).
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(5, message)
    }

    /// It exists already (409).
    pub fn already_exists(message: impl Into<String>) -> Self {
        Self::new(6, message)
    }

    /// Not in this state: a running pipeline cannot be deleted, a file-provisioned one
    /// never (400, as grpc-gateway maps it).
    pub fn failed_precondition(message: impl Into<String>) -> Self {
        Self::new(9, message)
    }

    /// Not offered by this instance (501).
    pub fn unimplemented(message: impl Into<String>) -> Self {
        Self::new(12, message)
    }

    /// A failure of Funnel or its store (500).
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(13, message)
    }

    /// The request carries no valid token (401).
    pub fn unauthenticated(message: impl Into<String>) -> Self {
        Self::new(16, message)
    }

    /// The error an HTTP `status` stands for, as grpc-gateway reads one (400 invalid
    /// argument, 401 unauthenticated, 403 permission denied, 404 not found, 405 and
    /// 501 unimplemented, 408 and 504 deadline exceeded, 409 already exists, 413 and
    /// 429 resource exhausted, 503 unavailable; another 4xx is an invalid argument,
    /// another 5xx an internal error).
    pub fn from_http(status: StatusCode, message: impl Into<String>) -> Self {
        let code = match status.as_u16() {
            401 => 16,
            403 => 7,
            404 => 5,
            405 | 501 => 12,
            408 | 504 => 4,
            409 => 6,
            413 | 429 => 8,
            503 => 14,
            400..=499 => 3,
            _ => 13,
        };
        Self::new(code, message)
    }

    /// The HTTP status grpc-gateway answers this code with.
    pub fn http_status(&self) -> StatusCode {
        match self.code {
            3 | 9 | 11 => StatusCode::BAD_REQUEST,
            5 => StatusCode::NOT_FOUND,
            6 | 10 => StatusCode::CONFLICT,
            7 => StatusCode::FORBIDDEN,
            4 => StatusCode::GATEWAY_TIMEOUT,
            8 => StatusCode::TOO_MANY_REQUESTS,
            12 => StatusCode::NOT_IMPLEMENTED,
            14 => StatusCode::SERVICE_UNAVAILABLE,
            16 => StatusCode::UNAUTHORIZED,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl IntoResponse for Status {
    fn into_response(self) -> Response {
        (self.http_status(), Json(self)).into_response()
    }
}
