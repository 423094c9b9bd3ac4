//! The HTTP layer's one error type. Every error is a JSON body
//! `{"error": {"code", "message", "request_id"}}` with the right status; a 5xx body never
//! carries internal detail, which goes to the log with the request id instead.

use axum::Json;
use axum::response::{IntoResponse, Response};
use http::StatusCode;
pub use kindling_node::{ErrorBody, ErrorDetail};
use kindling_node::{Fault, INTERNAL_MESSAGE, InvokeFailure, NodeError};

use crate::request_id::REQUEST_ID;

/// An error answered to a client.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
    request_id: Option<String>,
    retry_after: Option<u32>,
}

impl ApiError {
    /// An error with a status, a code and a message for the client.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            request_id: None,
            retry_after: None,
        }
    }

    /// A 500 whose detail is logged, not shown.
    pub fn internal(detail: impl std::fmt::Display, request_id: Option<&str>) -> Self {
        tracing::error!(request_id = request_id.unwrap_or("-"), error = %detail, "internal error");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            INTERNAL_MESSAGE,
        )
        .with_request_id(request_id)
    }

    /// Attaches the request id.
    pub fn with_request_id(mut self, request_id: Option<&str>) -> Self {
        self.request_id = request_id.map(str::to_string);
        self
    }

    /// The status code.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// An invocation the node could not answer with the function's response. The node has
    /// logged it with the request id.
    pub fn from_failure(failure: &InvokeFailure, request_id: &str) -> Self {
        let status =
            StatusCode::from_u16(failure.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        Self {
            status,
            code: failure.code(),
            message: failure.public_message(),
            request_id: Some(request_id.to_string()),
            retry_after: failure.retry_after(),
        }
    }
}

impl From<NodeError> for ApiError {
    fn from(err: NodeError) -> Self {
        let (status, code) = match err.fault() {
            Fault::NotFound => (StatusCode::NOT_FOUND, "not_found"),
            Fault::Client => (StatusCode::BAD_REQUEST, "invalid"),
            Fault::Conflict => (StatusCode::CONFLICT, "conflict"),
            _ => return Self::internal(err, None),
        };
        Self::new(status, code, err.to_string())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let response_id = self.request_id.clone();
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code.to_string(),
                message: self.message,
                request_id: self.request_id,
            },
        };
        let mut response = (self.status, Json(body)).into_response();
        if let Some(id) = response_id.and_then(|id| http::HeaderValue::from_str(&id).ok()) {
            response.headers_mut().insert(REQUEST_ID, id);
        }
        if let Some(seconds) = self.retry_after {
            response
                .headers_mut()
                .insert(http::header::RETRY_AFTER, seconds.into());
        }
        response
    }
}
